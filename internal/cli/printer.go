package cli

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/flowlens/flowlens/internal/filter"
	"github.com/flowlens/flowlens/internal/flow"
)

type printer interface {
	print(r *flow.Record, raw []byte) error
	flush() error
}

func newPrinter(format string, w io.Writer) (printer, error) {
	switch format {
	case "compact":
		return compact{w}, nil
	case "json":
		return jsonLines{w}, nil
	case "table":
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "TIME\tOBSERVER\tSOURCE\tDESTINATION\tPROTO\tVERDICT\tOPENED\tCLOSED\tFAILED\tBYTES→\tBYTES←\tRTT")
		return table{tw}, nil
	}
	return nil, fmt.Errorf("unknown output %q: want compact, json or table", format)
}

type jsonLines struct{ w io.Writer }

func (p jsonLines) print(_ *flow.Record, raw []byte) error {
	_, err := fmt.Fprintf(p.w, "%s\n", raw)
	return err
}
func (jsonLines) flush() error { return nil }

type compact struct{ w io.Writer }

// print writes one line per flow:
//
//	06:30:01.000 [client] 10.0.0.1:40000 (peer 1234) -> 10.0.0.2:80 tcp closed opened=1 closed=1 bytes=1000/5000 rtt=80µs
func (p compact) print(r *flow.Record, _ []byte) error {
	var b strings.Builder
	fmt.Fprintf(&b, "%s [%s] %s -> %s %s %s", r.Time.Local().Format("15:04:05.000"), r.Observer,
		endpoint(&r.Source), endpoint(&r.Destination), r.Protocol, strings.ToUpper(string(r.Verdict)))
	for _, c := range []struct {
		name string
		v    uint32
	}{{"opened", r.Opened}, {"closed", r.Closed}, {"refused", r.Refused}, {"timeout", r.TimedOut},
		{"failed", r.FailedOther}, {"rst_src", r.ResetsBySrc}, {"rst_dst", r.ResetsByDst},
		{"retrans", r.RetransToDst + r.RetransToSrc}, {"dgrams_out", r.DatagramsToDst}, {"dgrams_in", r.DatagramsToSrc}} {
		if c.v > 0 {
			fmt.Fprintf(&b, " %s=%d", c.name, c.v)
		}
	}
	fmt.Fprintf(&b, " bytes=%d/%d", r.BytesToDst, r.BytesToSrc)
	if r.RTT != nil {
		fmt.Fprintf(&b, " rtt=%dµs", r.RTT.AvgMicros)
	}
	_, err := fmt.Fprintln(p.w, b.String())
	return err
}
func (compact) flush() error { return nil }

type table struct{ w *tabwriter.Writer }

func (p table) print(r *flow.Record, _ []byte) error {
	rtt := "-"
	if r.RTT != nil {
		rtt = fmt.Sprintf("%dµs", r.RTT.AvgMicros)
	}
	_, err := fmt.Fprintf(p.w, "%s\t%s\t%s\t%s\t%s\t%s\t%d\t%d\t%d\t%d\t%d\t%s\n",
		r.Time.Local().Format("15:04:05.000"), r.Observer, endpoint(&r.Source), endpoint(&r.Destination),
		r.Protocol, r.Verdict, r.Opened, r.Closed, r.Refused+r.TimedOut+r.FailedOther, r.BytesToDst, r.BytesToSrc, rtt)
	return err
}
func (p table) flush() error { return p.w.Flush() }

// endpoint renders an endpoint by the most meaningful name known, its port,
// and in parentheses what stands behind it:
//
//	10.0.0.1:4000 (curl 1234)                          a plain host
//	shop/frontend-7d9f:43122 (deploy/frontend curl 1234) a pod
//	backend/api:80 (svc/api → pod api-5c-xyz)          a Service and the backend it reached
//	node/worker-1:10250, apiserver:6443, 192.0.2.1:443 (world)
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
	if e.PID != 0 {
		detail = append(detail, fmt.Sprintf("%s %d", e.Command, e.PID))
	}
	s := fmt.Sprintf("%s:%d", host, e.Port)
	if len(detail) > 0 {
		s += " (" + strings.Join(detail, " ") + ")"
	}
	return s
}
