package cli

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/flowlens/flowlens/internal/filter"
	"github.com/flowlens/flowlens/internal/flow"
	"github.com/flowlens/flowlens/internal/server"
)

// printer writes what `observe` reads. raw is the line as the API sent it.
// flush is called whenever no more input is at hand, before observe waits
// for the network, so nothing is held back from the terminal while it waits.
type printer interface {
	print(r *flow.Record, raw []byte) error
	lost(l *server.LostRecords, raw []byte) error
	flush() error
}

func newPrinter(format string, w io.Writer) (printer, error) {
	switch format {
	case "compact":
		return compact{w}, nil
	case "json":
		return jsonLines{w}, nil
	case "table":
		return &table{w: w}, nil
	}
	return nil, fmt.Errorf("unknown output %q: want compact, json or table", format)
}

// jsonLines passes the API's lines through, lost-records lines included.
type jsonLines struct{ w io.Writer }

func (p jsonLines) print(_ *flow.Record, raw []byte) error { return p.line(raw) }

func (p jsonLines) lost(_ *server.LostRecords, raw []byte) error { return p.line(raw) }

func (p jsonLines) line(raw []byte) error {
	_, err := fmt.Fprintf(p.w, "%s\n", raw)
	return err
}

func (jsonLines) flush() error { return nil }

type compact struct{ w io.Writer }

// print writes one line per flow:
//
//	06:30:01.000 [client] 10.0.0.1:40000 (peer 1234) -> 10.0.0.2:80 tcp closed opened=1 closed=1 bytes=1000/5000 rtt=80µs
//	06:30:04.000 [client] 10.0.0.1:40002 (peer 1234) -> 10.0.0.2:80 tcp TIMEOUT timeout=1 syn_retrans=1 bytes=0/0 drops=netfilter_drop:2
func (p compact) print(r *flow.Record, _ []byte) error {
	var b strings.Builder
	fmt.Fprintf(&b, "%s [%s] %s -> %s %s %s", r.Time.Local().Format("15:04:05.000"), r.Observer,
		endpoint(&r.Source), endpoint(&r.Destination), r.Protocol, strings.ToUpper(string(r.Verdict)))
	for _, c := range []struct {
		name string
		v    uint32
	}{{"opened", r.Opened}, {"closed", r.Closed}, {"refused", r.Refused}, {"timeout", r.TimedOut},
		{"failed", r.FailedOther}, {"rst_src", r.ResetsBySrc}, {"rst_dst", r.ResetsByDst},
		{"retrans", r.RetransToDst + r.RetransToSrc}, {"syn_retrans", r.SYNRetrans},
		{"dgrams_out", r.DatagramsToDst}, {"dgrams_in", r.DatagramsToSrc}} {
		if c.v > 0 {
			fmt.Fprintf(&b, " %s=%d", c.name, c.v)
		}
	}
	fmt.Fprintf(&b, " bytes=%d/%d", r.BytesToDst, r.BytesToSrc)
	if r.RTT != nil {
		fmt.Fprintf(&b, " rtt=%dµs", r.RTT.AvgMicros)
	}
	if r.ConnectLatency != nil {
		fmt.Fprintf(&b, " connect=%dµs", r.ConnectLatency.AvgMicros)
	}
	if len(r.Drops) > 0 {
		b.WriteString(" drops=" + drops(r))
	}
	for i := range r.Requests {
		sep := " | "
		if i > 0 {
			sep = "; "
		}
		b.WriteString(sep + requests(&r.Requests[i]))
	}
	_, err := fmt.Fprintln(p.w, clean(b.String()))
	return err
}

// requests renders one request group: what identifies the requests, the
// outcome, how many, and their average latency (~):
//
//	http GET /users/{id} 200 ×12 ~3.1ms
//	https POST /orders 503 ×2 failed=2 ~12ms
//	dns A api.example.com noerror → 10.0.0.5,10.0.0.6 ×3 ~210µs
//	postgres INSERT error 23505 ×1 failed=1 ~800µs
//	redis GET ×1 unanswered failed=1
func requests(g *flow.Requests) string {
	proto := string(g.Protocol)
	if g.TLS {
		proto += "+tls"
		if g.Protocol == flow.HTTP {
			proto = "https"
		}
	}
	parts := []string{proto}
	add := func(s ...string) {
		for _, x := range s {
			if x != "" {
				parts = append(parts, x)
			}
		}
	}
	switch g.Protocol {
	case flow.HTTP:
		add(g.Method, g.Host+g.Path)
		if g.Status != 0 {
			add(strconv.Itoa(g.Status))
		}
	case flow.DNS:
		add(g.QType, g.Query, g.RCode)
		if len(g.Answers) > 0 {
			answers := make([]string, len(g.Answers))
			for i, a := range g.Answers {
				answers[i] = a.String()
			}
			add("→ " + strings.Join(answers, ","))
		}
	default:
		add(g.Method)
		if g.Error != "" {
			add("error", g.Error)
		}
	}
	add(fmt.Sprintf("×%d", g.Count))
	if g.Latency == nil {
		add("unanswered")
	}
	if g.Failed > 0 {
		add(fmt.Sprintf("failed=%d", g.Failed))
	}
	if g.Latency != nil {
		add("~" + micros(g.Latency.AvgMicros))
	}
	return strings.Join(parts, " ")
}

// micros renders a latency in µs, ms or s, to two or three significant
// digits.
func micros(us uint32) string {
	switch {
	case us < 1000:
		return fmt.Sprintf("%dµs", us)
	case us < 1_000_000:
		return strconv.FormatFloat(float64(us)/1e3, 'f', decimals(us/1000), 64) + "ms"
	}
	return strconv.FormatFloat(float64(us)/1e6, 'f', decimals(us/1_000_000), 64) + "s"
}

// decimals keeps one decimal below 10 of a unit, none above.
func decimals(whole uint32) int {
	if whole < 10 {
		return 1
	}
	return 0
}

// lost writes a line no one can take for a flow:
//
//	06:30:02.000 LOST 1536 records: this reader fell behind the agent's ring, which overwrote them (reader_behind_ring)
func (p compact) lost(l *server.LostRecords, _ []byte) error {
	_, err := fmt.Fprintln(p.w, lostLine(l))
	return err
}

func (compact) flush() error { return nil }

// drops lists a record's drops by reason, in reason order: "netfilter_drop:2,no_socket:1".
func drops(r *flow.Record) string {
	parts := make([]string, 0, len(r.Drops))
	for _, reason := range slices.Sorted(maps.Keys(r.Drops)) {
		parts = append(parts, fmt.Sprintf("%s:%d", reason, r.Drops[reason]))
	}
	return strings.Join(parts, ",")
}

func lostLine(l *server.LostRecords) string {
	why := "records were lost"
	if l.Reason == server.ReasonBehindRing {
		why = "this reader fell behind the agent's ring, which overwrote them"
	}
	return clean(fmt.Sprintf("%s LOST %d records: %s (%s)", l.Time.Local().Format("15:04:05.000"), l.Count, why, l.Reason))
}

// table prints aligned columns as rows come: the rows at hand are aligned
// together when observe runs out of input, and a column only ever widens,
// so a stream stays aligned unless a wider value arrives.
type table struct {
	w       io.Writer
	widths  []int
	pending []tableRow
	started bool // header written
}

// tableRow is a flow's cells, or a note (a lost-records line) printed as is.
type tableRow struct {
	cells []string
	note  string
}

var tableHeader = []string{"TIME", "OBSERVER", "SOURCE", "DESTINATION", "PROTO", "VERDICT", "OPENED", "CLOSED", "FAILED", "BYTES→", "BYTES←", "RTT", "DROPS"}

func (p *table) print(r *flow.Record, _ []byte) error {
	rtt := "-"
	if r.RTT != nil {
		rtt = fmt.Sprintf("%dµs", r.RTT.AvgMicros)
	}
	dropped := "-"
	if len(r.Drops) > 0 {
		dropped = drops(r)
	}
	cells := []string{r.Time.Local().Format("15:04:05.000"), r.Observer, endpoint(&r.Source), endpoint(&r.Destination),
		string(r.Protocol), string(r.Verdict), fmt.Sprint(r.Opened), fmt.Sprint(r.Closed),
		fmt.Sprint(r.Refused + r.TimedOut + r.FailedOther), fmt.Sprint(r.BytesToDst), fmt.Sprint(r.BytesToSrc), rtt, dropped}
	for i := range cells {
		cells[i] = clean(cells[i])
	}
	p.pending = append(p.pending, tableRow{cells: cells})
	return nil
}

func (p *table) lost(l *server.LostRecords, _ []byte) error {
	p.pending = append(p.pending, tableRow{note: "--- " + lostLine(l) + " ---"})
	return nil
}

func (p *table) flush() error {
	if p.started && len(p.pending) == 0 {
		return nil
	}
	if p.widths == nil {
		p.widths = make([]int, len(tableHeader))
	}
	rows := p.pending
	if !p.started {
		rows = append([]tableRow{{cells: tableHeader}}, rows...)
	}
	for _, r := range rows {
		for i, c := range r.cells {
			p.widths[i] = max(p.widths[i], utf8.RuneCountInString(c))
		}
	}
	var b strings.Builder
	for _, r := range rows {
		if r.cells == nil {
			b.WriteString(r.note)
		}
		for i, c := range r.cells {
			b.WriteString(c)
			if i < len(r.cells)-1 {
				b.WriteString(strings.Repeat(" ", p.widths[i]-utf8.RuneCountInString(c)+2))
			}
		}
		b.WriteByte('\n')
	}
	p.started, p.pending = true, p.pending[:0]
	_, err := io.WriteString(p.w, b.String())
	return err
}

// clean makes text from the kernel (process names are anyone's to choose)
// or the API server safe for a terminal: every rune that is not printable
// (ESC and other controls, bidirectional overrides, invalid UTF-8) is shown
// escaped, as Go quotes it, instead of being interpreted.
func clean(s string) string {
	i := strings.IndexFunc(s, func(r rune) bool { return r == utf8.RuneError || !unicode.IsPrint(r) })
	if i < 0 {
		return s
	}
	var b strings.Builder
	b.WriteString(s[:i])
	for s = s[i:]; s != ""; {
		r, n := utf8.DecodeRuneInString(s)
		switch {
		case r == utf8.RuneError && n == 1:
			fmt.Fprintf(&b, `\x%02x`, s[0])
		case !unicode.IsPrint(r):
			q := strconv.QuoteRune(r)
			b.WriteString(q[1 : len(q)-1])
		default:
			b.WriteString(s[:n])
		}
		s = s[n:]
	}
	return b.String()
}

// endpoint renders an endpoint by the most meaningful name known, its port,
// and in parentheses what stands behind it:
//
//	10.0.0.1:4000 (curl 1234)                          a plain host
//	shop/frontend-7d9f:43122 (deploy/frontend curl 1234) a pod
//	backend/api:80 (svc/api → pod api-5c-xyz)          a Service and the backend it reached
//	node/worker-1:10250, apiserver:6443, 192.0.2.1:443 (world)
//	api.example.com:443 (192.0.2.1 world)             named by a DNS answer the observer saw
//
// Its names are raw: printers clean the line they make of it.
func endpoint(e *flow.Endpoint) string {
	host := e.IP.String()
	if e.IP.Is6() {
		host = "[" + host + "]"
	}
	var detail []string
	switch {
	case e.Kind == flow.KindAPIServer:
		host = "apiserver"
	case e.Service != nil:
		host = e.Service.Namespace + "/" + e.Service.Name
		d := "svc/" + e.Service.Name
		if e.Pod != "" {
			d += " → pod " + e.Pod
		}
		detail = append(detail, d)
	case e.Pod != "":
		host = e.Namespace + "/" + e.Pod
		if e.Workload != nil && e.Workload.Kind != "Pod" {
			detail = append(detail, filter.WorkloadShortName(e.Workload.Kind)+"/"+e.Workload.Name)
		}
	case e.Kind == flow.KindNode && e.NodeName != "":
		host = "node/" + e.NodeName
	case e.Kind == flow.KindWorld:
		detail = append(detail, "world")
	}
	if e.DNSName != "" && e.Pod == "" && e.Service == nil && e.Kind != flow.KindAPIServer && e.Kind != flow.KindNode {
		// Named by what the observing side resolved: the name, its address after.
		detail = append([]string{host}, detail...)
		host = e.DNSName
	}
	if e.PID != 0 {
		detail = append(detail, fmt.Sprintf("%s %d", e.Command, e.PID))
	}
	s := fmt.Sprintf("%s:%d", host, e.Port)
	if len(detail) > 0 {
		s += " (" + strings.Join(detail, " ") + ")"
	}
	return s
}
