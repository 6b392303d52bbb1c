package filter

import (
	"net/netip"
	"net/url"
	"testing"

	"github.com/flowlens/flowlens/internal/flow"
)

func TestParse(t *testing.T) {
	recs := []flow.Record{
		{Protocol: flow.TCP, Verdict: flow.VerdictClosed,
			Source:      flow.Endpoint{IP: netip.MustParseAddr("10.1.0.2"), Port: 40000, PID: 10, Netns: 5},
			Destination: flow.Endpoint{IP: netip.MustParseAddr("10.1.0.3"), Port: 80}},
		{Protocol: flow.TCP, Verdict: flow.VerdictRefused,
			Source:      flow.Endpoint{IP: netip.MustParseAddr("10.1.0.2"), Port: 40001, PID: 11},
			Destination: flow.Endpoint{IP: netip.MustParseAddr("10.1.0.4"), Port: 81}},
		{Protocol: flow.UDP, Verdict: flow.VerdictAnswered,
			Source:      flow.Endpoint{IP: netip.MustParseAddr("fd00::2"), Port: 5353},
			Destination: flow.Endpoint{IP: netip.MustParseAddr("fd00::3"), Port: 53, PID: 12, Command: "dns"}},
	}
	for _, tc := range []struct {
		query string
		want  []int
	}{
		{"", []int{0, 1, 2}},
		{"protocol=tcp", []int{0, 1}},
		{"verdict=refused,answered", []int{1, 2}},
		{"verdict=refused&verdict=closed", []int{0, 1}},
		{"to-ip=10.1.0.0/24", []int{0, 1}},
		{"to-ip=10.1.0.4", []int{1}},
		{"ip=fd00::/64", []int{2}},
		{"port=80", []int{0}},
		{"port=5353", []int{2}},
		{"to-port=53&protocol=udp", []int{2}},
		{"to-port=53&protocol=tcp", nil},
		{"from-pid=11", []int{1}},
		{"to-pid=12&to-command=dns", []int{2}},
		{"from-netns=5", []int{0}},
		{"last=3&follow=1", []int{0, 1, 2}}, // not filters: ignored
	} {
		q, _ := url.ParseQuery(tc.query)
		f, err := Parse(q)
		if err != nil {
			t.Fatalf("%q: %v", tc.query, err)
		}
		var got []int
		for i := range recs {
			if f(&recs[i]) {
				got = append(got, i)
			}
		}
		if len(got) != len(tc.want) {
			t.Errorf("%q selected %v, want %v", tc.query, got, tc.want)
			continue
		}
		for i := range got {
			if got[i] != tc.want[i] {
				t.Errorf("%q selected %v, want %v", tc.query, got, tc.want)
			}
		}
	}
}

func TestParseRejectsBadValues(t *testing.T) {
	for _, q := range []string{"port=70000", "protocol=sctp", "verdict=maybe", "from-ip=10.0.0.300", "to-pid=-1", "to-ip=10.0.0.0/33"} {
		v, _ := url.ParseQuery(q)
		if _, err := Parse(v); err == nil {
			t.Errorf("%q: no error", q)
		}
	}
}
