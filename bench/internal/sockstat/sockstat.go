// Package sockstat reads what the usual tools without eBPF see of TCP
// connections — `ss -tin` and `conntrack -L` — as the set of client source
// ports seen talking to a server port, so that polling them can be compared
// with the connections a load generator made.
package sockstat

import (
	"bufio"
	"io"
	"strconv"
	"strings"
)

// Ports is a set of client source ports.
type Ports map[uint16]struct{}

// Add merges o into p.
func (p Ports) Add(o Ports) {
	for k := range o {
		p[k] = struct{}{}
	}
}

func port(addr string) (uint16, bool) {
	i := strings.LastIndexByte(addr, ':')
	if i < 0 {
		return 0, false
	}
	n, err := strconv.ParseUint(addr[i+1:], 10, 16)
	return uint16(n), err == nil
}

// SS returns the client ports of the connections to server port in `ss -tn`
// output (with or without -i), from either end: on the client the local
// address carries the client port, on the server the peer address does.
func SS(r io.Reader, server uint16) Ports {
	out := Ports{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == ' ' || line[0] == '\t' {
			continue // -i detail lines
		}
		f := strings.Fields(line)
		if len(f) < 5 || f[0] == "State" {
			continue
		}
		lp, ok1 := port(f[3])
		pp, ok2 := port(f[4])
		switch {
		case !ok1 || !ok2:
		case pp == server && lp != server:
			out[lp] = struct{}{}
		case lp == server && pp != server:
			out[pp] = struct{}{}
		}
	}
	return out
}

// Conntrack returns the client ports of the entries to server port in
// `conntrack -L` output, and the bytes of the original direction when
// accounting is on (nf_conntrack_acct), else 0.
func Conntrack(r io.Reader, server uint16) (Ports, uint64) {
	out := Ports{}
	var bytes uint64
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var sport, dport string
		var b string
		for _, tok := range strings.Fields(sc.Text()) {
			k, v, ok := strings.Cut(tok, "=")
			if !ok {
				continue
			}
			switch {
			case k == "sport" && sport == "":
				sport = v
			case k == "dport" && dport == "":
				dport = v
			case k == "bytes" && b == "":
				b = v
			}
		}
		d, err := strconv.ParseUint(dport, 10, 16)
		if err != nil || uint16(d) != server {
			continue
		}
		s, err := strconv.ParseUint(sport, 10, 16)
		if err != nil {
			continue
		}
		out[uint16(s)] = struct{}{}
		if n, err := strconv.ParseUint(b, 10, 64); err == nil {
			bytes += n
		}
	}
	return out, bytes
}
