package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/flowlens/flowlens/internal/agent"
	"github.com/flowlens/flowlens/internal/tlsprobe"
)

var (
	l7Samples = prometheus.NewDesc("flowlens_l7_samples_total",
		"Payload samples the kernel captured for L7 parsing.", nil, nil)
	l7Lost = prometheus.NewDesc("flowlens_l7_samples_lost_total",
		"Payload samples not taken or not read: over the per-second capture budget (flowlens samples instead of slowing the node), their ring full, or undecodable. The next sample of the connection reports a gap.",
		[]string{"reason"}, nil)
	l7Early = prometheus.NewDesc("flowlens_l7_samples_early_total",
		"Receives sampled before the send they answer (the sending thread was preempted after its bytes left, before the send's hook ran), by outcome: reordered (parsed after that send's sample) or unordered (parsed without it: its sample was lost or came too late, and the request it answers may be paired wrongly).",
		[]string{"outcome"}, nil)
	l7Paired = prometheus.NewDesc("flowlens_l7_connections_paired_total",
		"TCP connections whose two ends are sockets on this node, sampled on the client's end only: its samples count the requests on both ends' flows.",
		nil, nil)
	l7Requests = prometheus.NewDesc("flowlens_l7_requests_total",
		"Requests parsed, by protocol, answered or not.", []string{"protocol"}, nil)
	l7Failed = prometheus.NewDesc("flowlens_l7_requests_failed_total",
		"Requests that failed (HTTP 5xx, DNS errors other than nxdomain, PostgreSQL errors, Redis error replies) or were never answered.", []string{"protocol"}, nil)
	l7Unparsed = prometheus.NewDesc("flowlens_l7_unparsed_total",
		"What a protocol's parser could not handle: connections whose bytes it rejected (then no longer parsed), and requests let go without an outcome (capture gaps, bounds).",
		[]string{"protocol", "what"}, nil)
	l7Conns = prometheus.NewDesc("flowlens_l7_connections",
		"Connections the L7 parsers follow now.", nil, nil)
	l7ConnsLost = prometheus.NewDesc("flowlens_l7_connections_not_followed_total",
		"Connections whose requests are not counted: refused at the bound (--l7-max-connections), or of no protocol flowlens parses.", []string{"reason"}, nil)
	tlsUnattributed = prometheus.NewDesc("flowlens_tls_plaintext_unattributed_total",
		"TLS library calls whose socket was not known: their plaintext is not parsed.", nil, nil)
	tlsFiles = prometheus.NewDesc("flowlens_tls_probed_files",
		"Files whose TLS library calls are probed (uprobes), by kind: openssl (a libssl), gotls (a Go executable's crypto/tls).", []string{"kind"}, nil)
	tlsSkipped = prometheus.NewDesc("flowlens_tls_skipped_files",
		"TLS library files found but not probed, by reason.", []string{"reason"}, nil)
	dnsNames = prometheus.NewDesc("flowlens_dns_names",
		"Addresses named by a DNS answer seen on this node.", nil, nil)
	dnsNamesEvicted = prometheus.NewDesc("flowlens_dns_names_evicted_total",
		"DNS names forgotten before they expired, to stay within the cache's bound.", nil, nil)
)

// L7Collector exports what the agent's L7 capture and parsers did.
type L7Collector struct{ Agent *agent.Agent }

// Describe implements prometheus.Collector.
func (L7Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{l7Samples, l7Lost, l7Early, l7Paired, l7Requests, l7Failed, l7Unparsed, l7Conns, l7ConnsLost,
		tlsUnattributed, tlsFiles, tlsSkipped, dnsNames, dnsNamesEvicted} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c L7Collector) Collect(ch chan<- prometheus.Metric) {
	s := c.Agent.Stats()
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	counter(l7Samples, s.Kernel.L7Samples)
	counter(l7Lost, s.Kernel.L7OverBudget, "budget")
	counter(l7Lost, s.Kernel.L7RingFull, "ring_full")
	counter(l7Lost, s.L7DecodeErrors, "decode_error")
	counter(l7Early, s.L7.Reordered, "reordered")
	counter(l7Early, s.L7.Unordered, "unordered")
	counter(l7Paired, s.Kernel.L7Paired)
	for _, p := range s.L7.Protocols {
		name := string(p.Protocol)
		counter(l7Requests, p.Requests, name)
		counter(l7Failed, p.Failed, name)
		counter(l7Unparsed, p.Unparsed, name, "connection")
		counter(l7Unparsed, p.Dropped, name, "request")
	}
	ch <- prometheus.MustNewConstMetric(l7Conns, prometheus.GaugeValue, float64(s.L7.Conns))
	counter(l7ConnsLost, s.L7.Refused, "bound")
	counter(l7ConnsLost, s.L7.Opaque, "opaque")
	counter(tlsUnattributed, s.Kernel.TLSUnattributed)
	if s.TLS.Attached != nil {
		for _, k := range tlsprobe.Kinds {
			ch <- prometheus.MustNewConstMetric(tlsFiles, prometheus.GaugeValue, float64(s.TLS.Attached[k]), string(k))
		}
		for _, r := range tlsprobe.Reasons {
			ch <- prometheus.MustNewConstMetric(tlsSkipped, prometheus.GaugeValue, float64(s.TLS.Skipped[r]), string(r))
		}
	}
	ch <- prometheus.MustNewConstMetric(dnsNames, prometheus.GaugeValue, float64(s.DNSNames))
	counter(dnsNamesEvicted, s.DNSNamesEvicted)
}
