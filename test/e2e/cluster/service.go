package cluster

import (
	"crypto/sha256"
	"encoding/base32"
	"fmt"
	"net/netip"
	"strings"
)

// LBMode is how a Service's iptables rules pick a backend for a new
// connection.
type LBMode int

const (
	// Random is kube-proxy's own choice: `-m statistic --mode random
	// --probability 1/(n-i)` on backend i, the last one unconditional.
	Random LBMode = iota
	// RoundRobin uses `-m statistic --mode nth --every n-i --packet 0`, which
	// spreads consecutive connections from one node exactly evenly; tests
	// use it to predict where each connection lands.
	RoundRobin
)

// ServiceDNAT describes one Service port as kube-proxy would program it.
type ServiceDNAT struct {
	// Protocol is "tcp" (default) or "udp".
	Protocol  string
	ClusterIP netip.Addr
	Port      uint16
	// Backends are the endpoint addresses (pod IP and target port). With
	// none, connections are rejected, as kube-proxy does.
	Backends []netip.AddrPort
	Mode     LBMode
}

// AddServiceDNAT installs the service's nat rules in every node (and in nodes
// added later), the way kube-proxy's iptables mode does:
//
//	PREROUTING, OUTPUT -> KUBE-SERVICES
//	KUBE-SERVICES: -d <clusterIP> -p tcp --dport <port> -> KUBE-SVC-<hash>
//	KUBE-SVC-<hash>: statistic match per backend -> KUBE-SEP-<hash>
//	KUBE-SEP-<hash>: from the backend itself -> KUBE-MARK-MASQ (hairpin); DNAT to backend
//	POSTROUTING -> KUBE-POSTROUTING: marked -> MASQUERADE
//
// Because pods route all traffic through their node namespace, a connection
// is DNAT-ed in the client's node and the reply is un-DNAT-ed there by
// conntrack, wherever the backend runs.
func (n *Network) AddServiceDNAT(s ServiceDNAT) {
	n.t.Helper()
	if s.Protocol == "" {
		s.Protocol = "tcp"
	}
	if s.Protocol != "tcp" && s.Protocol != "udp" {
		n.t.Fatalf("cluster: service %s: protocol %q", s.ClusterIP, s.Protocol)
	}
	n.mu.Lock()
	n.services = append(n.services, s)
	nodes := append([]*Node(nil), n.nodes...)
	n.mu.Unlock()
	for _, node := range nodes {
		if err := node.installService(s); err != nil {
			n.t.Fatalf("cluster: service %s:%d on node %s: %v", s.ClusterIP, s.Port, node.Name, err)
		}
	}
}

// chainHash names a chain after what it matches, like kube-proxy's
// KUBE-SVC-XXXXXXXXXXXXXXXX (16 base32 characters).
func chainHash(parts ...string) string {
	sum := sha256.Sum256([]byte(strings.Join(parts, "/")))
	return base32.StdEncoding.EncodeToString(sum[:])[:16]
}

func (node *Node) iptables(args ...string) error {
	return inNetns(node.NetnsPath, "iptables", append([]string{"-w"}, args...)...)
}

// initIptables creates the fixed kube-proxy chains once per node.
func (node *Node) initIptables() error {
	if node.iptInit {
		return nil
	}
	for _, r := range [][]string{
		{"-t", "nat", "-N", "KUBE-SERVICES"},
		{"-t", "nat", "-N", "KUBE-MARK-MASQ"},
		{"-t", "nat", "-N", "KUBE-POSTROUTING"},
		{"-t", "nat", "-A", "PREROUTING", "-m", "comment", "--comment", "kubernetes service portals", "-j", "KUBE-SERVICES"},
		{"-t", "nat", "-A", "OUTPUT", "-m", "comment", "--comment", "kubernetes service portals", "-j", "KUBE-SERVICES"},
		{"-t", "nat", "-A", "POSTROUTING", "-j", "KUBE-POSTROUTING"},
		{"-t", "nat", "-A", "KUBE-MARK-MASQ", "-j", "MARK", "--or-mark", "0x4000"},
		{"-t", "nat", "-A", "KUBE-POSTROUTING", "-m", "mark", "--mark", "0x4000/0x4000", "-j", "MASQUERADE"},
		{"-t", "filter", "-N", "KUBE-SERVICES"},
		{"-t", "filter", "-A", "FORWARD", "-j", "KUBE-SERVICES"},
		{"-t", "filter", "-A", "OUTPUT", "-j", "KUBE-SERVICES"},
	} {
		if err := node.iptables(r...); err != nil {
			return err
		}
	}
	node.iptInit = true
	return nil
}

func (node *Node) installService(s ServiceDNAT) error {
	if err := node.initIptables(); err != nil {
		return err
	}
	vip, port := s.ClusterIP.String()+"/32", fmt.Sprint(s.Port)
	match := []string{"-d", vip, "-p", s.Protocol, "-m", s.Protocol, "--dport", port}
	if len(s.Backends) == 0 {
		// kube-proxy answers a Service without endpoints with an ICMP
		// port unreachable (a refused connection), in the filter table.
		rule := append([]string{"-t", "filter", "-A", "KUBE-SERVICES"}, match...)
		return node.iptables(append(rule, "-j", "REJECT", "--reject-with", "icmp-port-unreachable")...)
	}
	svc := "KUBE-SVC-" + chainHash(s.Protocol, vip, port)
	rules := [][]string{{"-t", "nat", "-N", svc}}
	nb := len(s.Backends)
	for i, b := range s.Backends {
		sep := "KUBE-SEP-" + chainHash(s.Protocol, vip, port, b.String())
		rules = append(rules,
			[]string{"-t", "nat", "-N", sep},
			// A pod reaching itself through its Service: masquerade so
			// the reply comes back through the node and is un-DNAT-ed.
			[]string{"-t", "nat", "-A", sep, "-s", b.Addr().String() + "/32", "-j", "KUBE-MARK-MASQ"},
			[]string{"-t", "nat", "-A", sep, "-p", s.Protocol, "-m", s.Protocol, "-j", "DNAT", "--to-destination", b.String()},
		)
		jump := []string{"-t", "nat", "-A", svc}
		if left := nb - i; left > 1 {
			switch s.Mode {
			case RoundRobin:
				jump = append(jump, "-m", "statistic", "--mode", "nth", "--every", fmt.Sprint(left), "--packet", "0")
			default:
				jump = append(jump, "-m", "statistic", "--mode", "random", "--probability", fmt.Sprintf("%.10f", 1/float64(left)))
			}
		}
		rules = append(rules, append(jump, "-j", sep))
	}
	rules = append(rules, append(append([]string{"-t", "nat", "-A", "KUBE-SERVICES"}, match...), "-j", svc))
	for _, r := range rules {
		if err := node.iptables(r...); err != nil {
			return err
		}
	}
	return nil
}
