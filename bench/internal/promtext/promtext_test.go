package promtext

import (
	"strings"
	"testing"
)

const exposition = `# HELP flowlens_agent_lost_total Things the agent could not record.
# TYPE flowlens_agent_lost_total counter
flowlens_agent_lost_total{stage="kernel",reason="ring_buffer_full"} 3
flowlens_agent_lost_total{reason="tcp_map_full",stage="kernel"} 0
flowlens_agent_events_read_total 12345
flowlens_datapath_map_entries{map="tcp_socks"} 1.5e+03 1700000000000
weird{path="a\"b\\c",x="1"} 7
`

func TestParse(t *testing.T) {
	s, err := Parse(strings.NewReader(exposition))
	if err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]float64{
		`flowlens_agent_lost_total{reason="ring_buffer_full",stage="kernel"}`: 3,
		`flowlens_agent_lost_total{reason="tcp_map_full",stage="kernel"}`:     0,
		`flowlens_agent_events_read_total`:                                    12345,
		`flowlens_datapath_map_entries{map="tcp_socks"}`:                      1500,
		`weird{path="a"b\c",x="1"}`:                                           7,
	} {
		if got, ok := s[k]; !ok || got != want {
			t.Errorf("%s = %v (present %v), want %v", k, got, ok, want)
		}
	}
	if s.Sum("flowlens_agent_lost_total") != 3 {
		t.Errorf("sum %v", s.Sum("flowlens_agent_lost_total"))
	}
	if s.Sum("flowlens_agent_lost") != 0 {
		t.Error("sum matched a prefix of another metric")
	}
}

func TestDelta(t *testing.T) {
	before := Samples{`lost{r="a"}`: 1, `lost{r="b"}`: 2}
	after := Samples{`lost{r="a"}`: 1, `lost{r="b"}`: 5, `lost{r="c"}`: 1, `other`: 9}
	d := Delta(before, after, "lost")
	if len(d) != 2 || d[`lost{r="b"}`] != 3 || d[`lost{r="c"}`] != 1 {
		t.Errorf("delta %v", d)
	}
}

func TestParseRejectsGarbage(t *testing.T) {
	for _, in := range []string{"novalue\n", `m{a="x} 1` + "\n", "m{a=1} 2\n", "m abc\n"} {
		if _, err := Parse(strings.NewReader(in)); err == nil {
			t.Errorf("%q accepted", in)
		}
	}
}
