package gobench

import (
	"strings"
	"testing"
)

const output = `goos: linux
goarch: amd64
pkg: github.com/flowlens/flowlens/internal/datapath
cpu: AMD EPYC
BenchmarkDecode         	 5000000	       240.5 ns/op	   4158000 events/s	       0 B/op	       0 allocs/op
PASS
ok  	github.com/flowlens/flowlens/internal/datapath	1.5s
pkg: github.com/flowlens/flowlens/internal/conntable
BenchmarkConntableSyncTCP/sockets=10000-2  	     100	  12000000 ns/op	       1200 ns/event	 833333 events/s
BenchmarkBroken some log line
--- FAIL: BenchmarkOther
`

func TestParse(t *testing.T) {
	rs, err := Parse(strings.NewReader(output))
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 2 {
		t.Fatalf("got %d results: %+v", len(rs), rs)
	}
	d := rs[0]
	if d.Package != "github.com/flowlens/flowlens/internal/datapath" || d.Name != "BenchmarkDecode" || d.Procs != 1 ||
		d.N != 5000000 || d.Metrics["ns/op"] != 240.5 || d.Metrics["events/s"] != 4158000 || d.Metrics["allocs/op"] != 0 {
		t.Errorf("decode %+v", d)
	}
	s := rs[1]
	if s.Name != "BenchmarkConntableSyncTCP/sockets=10000" || s.Procs != 2 || s.Metrics["ns/event"] != 1200 ||
		!strings.HasSuffix(s.Package, "conntable") {
		t.Errorf("sync %+v", s)
	}
}
