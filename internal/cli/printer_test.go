package cli

import (
	"net/netip"
	"testing"

	"github.com/flowlens/flowlens/internal/flow"
)

func TestEndpointNames(t *testing.T) {
	ip := netip.MustParseAddr
	for _, tc := range []struct {
		ep   flow.Endpoint
		want string
	}{
		{flow.Endpoint{IP: ip("10.0.0.1"), Port: 4000, PID: 1234, Command: "curl"}, "10.0.0.1:4000 (curl 1234)"},
		{flow.Endpoint{IP: ip("fd00::1"), Port: 53}, "[fd00::1]:53"},
		{flow.Endpoint{IP: ip("10.244.1.10"), Port: 43122, Kind: flow.KindPod, Namespace: "shop", Pod: "frontend-7d9f",
			Workload: &flow.Workload{Kind: "Deployment", Name: "frontend"}, PID: 7, Command: "peer"},
			"shop/frontend-7d9f:43122 (deploy/frontend peer 7)"},
		{flow.Endpoint{IP: ip("10.244.1.11"), Port: 80, Kind: flow.KindPod, Namespace: "shop", Pod: "bare",
			Workload: &flow.Workload{Kind: "Pod", Name: "bare"}}, "shop/bare:80"},
		{flow.Endpoint{IP: ip("10.96.0.20"), Port: 80, Kind: flow.KindPod, Namespace: "backend", Pod: "api-5c",
			Service: &flow.ServiceRef{Namespace: "backend", Name: "api"}}, "backend/api:80 (svc/api → pod api-5c)"},
		{flow.Endpoint{IP: ip("10.96.0.20"), Port: 80, Kind: flow.KindService,
			Service: &flow.ServiceRef{Namespace: "backend", Name: "api"}}, "backend/api:80 (svc/api)"},
		{flow.Endpoint{IP: ip("172.30.0.11"), Port: 10250, Kind: flow.KindNode, NodeName: "a"}, "node/a:10250"},
		{flow.Endpoint{IP: ip("127.0.0.1"), Port: 6443, Kind: flow.KindAPIServer}, "apiserver:6443"},
		{flow.Endpoint{IP: ip("192.0.2.1"), Port: 443, Kind: flow.KindWorld}, "192.0.2.1:443 (world)"},
	} {
		if got := endpoint(&tc.ep); got != tc.want {
			t.Errorf("endpoint = %q, want %q", got, tc.want)
		}
	}
}
