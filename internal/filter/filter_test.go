package filter

import (
	"fmt"
	"net/netip"
	"net/url"
	"strings"
	"testing"

	"github.com/flowlens/flowlens/internal/flow"
)

// selected returns the indexes of the records the query selects.
func selected(t *testing.T, recs []flow.Record, query string) []int {
	t.Helper()
	q, _ := url.ParseQuery(query)
	f, err := Parse(q)
	if err != nil {
		t.Fatalf("%q: %v", query, err)
	}
	var got []int
	for i := range recs {
		if f(&recs[i]) {
			got = append(got, i)
		}
	}
	return got
}

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
		if got := selected(t, recs, tc.query); fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("%q selected %v, want %v", tc.query, got, tc.want)
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

func TestParseDrops(t *testing.T) {
	recs := []flow.Record{
		{Verdict: flow.VerdictTimeout, Drops: map[string]uint64{"netfilter_drop": 20}},
		{Verdict: flow.VerdictRefused, Drops: map[string]uint64{"no_socket": 1}},
		{Verdict: flow.VerdictClosed, Drops: map[string]uint64{"tcp_ofo_drop": 2, "socket_rcvbuff": 1}},
		{Verdict: flow.VerdictTimeout},
	}
	for _, tc := range []struct {
		query string
		want  []int
	}{
		{"verdict=dropped", []int{0, 1, 2}},
		{"verdict=dropped&verdict=timeout", []int{0, 1, 2, 3}},
		{"verdict=timeout", []int{0, 3}},
		{"drop-reason=netfilter", []int{0}},
		{"drop-reason=netfilter_drop", []int{0}},
		{"drop-reason=netfilter_dro", nil}, // a part matches only up to a _
		{"drop-reason=NO_SOCKET", []int{1}},
		{"drop-reason=tcp", []int{2}},
		{"drop-reason=socket", []int{2}},
		{"drop-reason=no_socket,socket_rcvbuff", []int{1, 2}},
		{"verdict=dropped&drop-reason=no_socket", []int{1}},
	} {
		if got := selected(t, recs, tc.query); fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("%q selected %v, want %v", tc.query, got, tc.want)
		}
	}
	for _, q := range []string{"drop-reason=netfilter-drop", "drop-reason=a b"} {
		v, _ := url.ParseQuery(q)
		if _, err := Parse(v); err == nil {
			t.Errorf("%q: no error", q)
		}
	}
}

func TestParseKubernetes(t *testing.T) {
	front := flow.Endpoint{IP: netip.MustParseAddr("10.244.1.10"), Port: 43122, Kind: flow.KindPod,
		Namespace: "shop", Pod: "frontend-7d9f-abcde", Labels: map[string]string{"app": "frontend", "tier": "web"},
		Workload: &flow.Workload{Kind: "Deployment", Name: "frontend"}}
	api := flow.Endpoint{IP: netip.MustParseAddr("10.96.0.20"), Port: 80, Kind: flow.KindPod,
		Namespace: "backend", Pod: "api-5c-xyz", Labels: map[string]string{"app": "api"},
		Workload: &flow.Workload{Kind: "Deployment", Name: "api"},
		Service:  &flow.ServiceRef{Namespace: "backend", Name: "api"}}
	db := flow.Endpoint{IP: netip.MustParseAddr("10.244.2.7"), Port: 5432, Kind: flow.KindPod,
		Namespace: "backend", Pod: "db-0", Workload: &flow.Workload{Kind: "StatefulSet", Name: "db"}}
	world := flow.Endpoint{IP: netip.MustParseAddr("192.0.2.1"), Port: 443, Kind: flow.KindWorld}
	recs := []flow.Record{
		{Source: front, Destination: api},
		{Source: api, Destination: db},
		{Source: api, Destination: world},
	}
	for _, tc := range []struct {
		query string
		want  []int
	}{
		{"from-pod=shop/frontend", []int{0}},
		{"from-pod=shop/frontend-7d9f-abcde", []int{0}},
		{"from-pod=backend/frontend", nil},
		{"to-pod=backend/", []int{0, 1}},
		{"to-pod=db-0", []int{1}},
		{"from-workload=deploy/frontend", []int{0}},
		{"from-workload=shop/deploy/frontend", []int{0}},
		{"from-workload=backend/deploy/frontend", nil},
		{"from-workload=sts/frontend", nil},
		{"to-workload=sts/db", []int{1}},
		{"to-workload=db", []int{1}},
		{"to-service=backend/api", []int{0}},
		{"to-service=api", []int{0}},
		{"to-service=shop/api", nil},
		{"namespace=shop", []int{0}},
		{"namespace=backend", []int{0, 1, 2}},
		{"from-label=app=frontend", []int{0}},
		{"from-label=tier", []int{0}},
		{"to-label=app", []int{0}},
		{"to-label=app=db", nil},
		{"to-kind=world", []int{2}},
		{"from-kind=pod&to-kind=pod", []int{0, 1}},
	} {
		if got := selected(t, recs, tc.query); fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("%q selected %v, want %v", tc.query, got, tc.want)
		}
	}
	for _, q := range []string{"from-workload=thing/x", "from-workload=a/b/c/d", "to-kind=planet", "from-label==v", "from-pod=/"} {
		v, _ := url.ParseQuery(q)
		if _, err := Parse(v); err == nil {
			t.Errorf("%q: no error", q)
		}
	}
}

// FuzzParseDropReason: any value parses without a panic; one accepted
// selects a record counting exactly that reason.
func FuzzParseDropReason(f *testing.F) {
	for _, s := range []string{"netfilter", "no_socket", "tcp", "", "a-b", "Ü"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		filt, err := dropReasonParam(v)
		if err != nil {
			return
		}
		r := flow.Record{Drops: map[string]uint64{strings.ToLower(v): 1}}
		if !filt(&r) {
			t.Errorf("drop-reason=%q does not select a record with that reason", v)
		}
	})
}
