// Package metrics exposes flowlens' own health in Prometheus form. Every
// metric has the flowlens_ prefix, base units, and a label set declared up
// front; collectors read a snapshot at scrape time, so nothing is registered
// globally and nothing on the data path touches a metric.
package metrics

import (
	"cmp"
	"slices"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/flowlens/flowlens/internal/agent"
	"github.com/flowlens/flowlens/internal/flow"
)

// AgentSource is what the agent collector reads on each scrape.
type AgentSource interface {
	Stats() agent.Stats
}

// RingSource is what the flow ring collector reads.
type RingSource interface {
	Len() int
	Cap() int
	Next() uint64
}

var (
	eventsRead = prometheus.NewDesc("flowlens_agent_events_read_total",
		"Socket end events read from the kernel ring buffer.", nil, nil)
	lost = prometheus.NewDesc("flowlens_agent_lost_total",
		"Things the agent could not record, by where and why.", []string{"stage", "reason"}, nil)
	mapEntries = prometheus.NewDesc("flowlens_datapath_map_entries",
		"Entries in a kernel map at the last interval.", []string{"map"}, nil)
	mapCapacity = prometheus.NewDesc("flowlens_datapath_map_capacity",
		"Maximum entries of a kernel map.", []string{"map"}, nil)
	tableEntries = prometheus.NewDesc("flowlens_agent_table_entries",
		"Sockets and conversations the connection table remembers.", []string{"kind"}, nil)
	adopted = prometheus.NewDesc("flowlens_agent_adopted_sockets_total",
		"TCP sockets first seen already established (open before the agent started): counted from then on, never as opened.", nil, nil)
	refused = prometheus.NewDesc("flowlens_agent_refused_total",
		"What the kernel side refused a cgroup because it held its share of a map (sockets for tcp_socks, datagrams for udp_flows): the sources of overload, the 10 noisiest.",
		[]string{"map", "cgroup"}, nil)
	drops = prometheus.NewDesc("flowlens_drops_total",
		"Packets the kernel dropped on this node, by its drop reason (enum skb_drop_reason, snake_case), attributed to a flow or not.",
		[]string{"reason"}, nil)
	dropsUnattributed = prometheus.NewDesc("flowlens_drops_unattributed_total",
		"Dropped packets (counted by reason in flowlens_drops_total) put on no flow: no socket and no header to read (cause no_header), or no record of their flow within 130 s (cause no_record).",
		[]string{"cause"}, nil)
	listenQueue = prometheus.NewDesc("flowlens_listen_queue",
		"Connections waiting in a listener's accept queue (v4 and v6 listeners of a port added), the 256 listeners with the most drops, then the fullest.",
		[]string{"netns", "port"}, nil)
	listenQueueLimit = prometheus.NewDesc("flowlens_listen_queue_limit",
		"A listener's accept queue size: the backlog listen() asked for, capped by somaxconn.",
		[]string{"netns", "port"}, nil)
	listenDrops = prometheus.NewDesc("flowlens_listen_drops_total",
		"Handshakes a listener dropped since it began to listen: its accept queue was full (ListenOverflows), or rarely no memory or SYN-queue room.",
		[]string{"netns", "port"}, nil)
	tcpReads = prometheus.NewDesc("flowlens_agent_tcp_reads_total",
		"Intervals by how they read the kernel's TCP sockets: changed (only those the kernel marked as changed) or whole (the whole map: at start, every 60 intervals, and when an end event or a mark was lost).",
		[]string{"kind"}, nil)
	touchedUnmarked = prometheus.NewDesc("flowlens_datapath_touched_unmarked_total",
		"Changes to tracked TCP sockets the kernel could not mark for the agent's next read (its set was full): the agent reads the whole map instead.", nil, nil)
	flowsEmitted = prometheus.NewDesc("flowlens_agent_flows_emitted_total",
		"Flow records emitted.", nil, nil)
	hook = prometheus.NewDesc("flowlens_datapath_hook_attached",
		"1 if the eBPF program is attached, 0 if this kernel lacks its hook.", []string{"program", "target"}, nil)
	ringRecords = prometheus.NewDesc("flowlens_flow_ring_records",
		"Flow records held in the API ring.", nil, nil)
	ringCapacity = prometheus.NewDesc("flowlens_flow_ring_capacity",
		"Capacity of the API ring.", nil, nil)
	ringWritten = prometheus.NewDesc("flowlens_flow_ring_written_total",
		"Flow records written to the API ring.", nil, nil)
)

// AgentCollector reports an agent's health.
type AgentCollector struct {
	Agent AgentSource
	// CgroupName names a cgroup id in the refusal metrics (its path, or
	// its pod); nil names it by id.
	CgroupName func(id uint64) string
}

// maxRefusers bounds the cgroups named in flowlens_agent_refused_total:
// the noisiest ones, so the label set stays small.
const maxRefusers = 10

func (c AgentCollector) cgroupName(id uint64) string {
	if c.CgroupName != nil {
		if n := c.CgroupName(id); n != "" {
			return n
		}
	}
	return strconv.FormatUint(id, 10)
}

// Describe implements prometheus.Collector.
func (AgentCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{eventsRead, lost, adopted, refused, mapEntries, mapCapacity, tableEntries, flowsEmitted, hook, tcpReads, touchedUnmarked,
		drops, dropsUnattributed, listenQueue, listenQueueLimit, listenDrops} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c AgentCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.Agent.Stats()
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter(eventsRead, s.EventsRead)
	counter(tcpReads, s.WholeReads, "whole")
	counter(tcpReads, s.Ticks-min(s.WholeReads, s.Ticks), "changed")
	counter(touchedUnmarked, s.Kernel.TouchedFull)
	counter(lost, s.Kernel.RingbufFull, "kernel", "ring_buffer_full")
	counter(lost, s.Kernel.TCPMapFull, "kernel", "tcp_map_full")
	counter(lost, s.Kernel.UDPMapFull, "kernel", "udp_map_full")
	counter(lost, s.Kernel.ListenerMapFull, "kernel", "listener_map_full")
	counter(lost, s.Kernel.UDPUnparsed, "kernel", "udp_unparsed")
	counter(lost, s.Kernel.TCPCgroupQuota, "kernel", "tcp_cgroup_share")
	counter(lost, s.Kernel.UDPCgroupQuota, "kernel", "udp_cgroup_share")
	// Not losses of the agent: the packets are counted by reason; only
	// which flow they belonged to is unknown.
	counter(dropsUnattributed, s.Kernel.DropsUnattributed, "no_header")
	counter(dropsUnattributed, s.Table.DropsUnmatched, "no_record")
	counter(adopted, s.Kernel.Adopted)
	for reason, n := range s.DropReasons {
		counter(drops, n, reason)
	}
	for _, l := range topListeners(s.Listeners) {
		labels := []string{strconv.FormatUint(uint64(l.Netns), 10), strconv.Itoa(int(l.Port))}
		gauge(listenQueue, float64(l.Queue), labels...)
		gauge(listenQueueLimit, float64(l.QueueMax), labels...)
		counter(listenDrops, uint64(l.Drops), labels...)
	}
	for i, r := range s.Refusals {
		if i == maxRefusers {
			break
		}
		name := c.cgroupName(r.Cgroup)
		counter(refused, r.TCP, "tcp_socks", name)
		counter(refused, r.UDP, "udp_flows", name)
	}
	counter(lost, s.DecodeErrors, "userspace", "decode_error")
	counter(lost, s.ReadErrors, "userspace", "map_read_error")
	counter(lost, s.Table.SocketsUntracked, "userspace", "table_full_tcp")
	counter(lost, s.Table.ConversationsReleasedEarly, "userspace", "table_full_udp_released_early")
	counter(lost, s.Table.ConversationsForgottenEarly, "userspace", "table_full_udp_forgotten_early")
	counter(lost, s.Table.SocketsVanished, "userspace", "socket_vanished")
	gauge(mapEntries, float64(s.TCPSockets), "tcp_socks")
	gauge(mapEntries, float64(s.UDPConversations), "udp_flows")
	gauge(mapCapacity, float64(s.TCPCapacity), "tcp_socks")
	gauge(mapCapacity, float64(s.UDPCapacity), "udp_flows")
	gauge(tableEntries, float64(s.Table.Sockets), "tcp")
	gauge(tableEntries, float64(s.Table.Conversations), "udp")
	counter(flowsEmitted, s.Table.Records)
	for _, h := range s.Hooks {
		v := 0.0
		if h.Attached {
			v = 1
		}
		gauge(hook, v, h.Program, h.Target)
	}

}

// maxListeners bounds the listeners with series of their own.
const maxListeners = 256

// topListeners merges the v4 and v6 listeners of a (netns, port), which
// share its labels, and keeps the maxListeners with the most drops, then
// the fullest queues, then by netns and port so that the set is stable.
func topListeners(ls []flow.Listener) []flow.Listener {
	type key struct {
		netns uint32
		port  uint16
	}
	merged := make(map[key]*flow.Listener, len(ls))
	out := make([]flow.Listener, 0, len(ls))
	for _, l := range ls {
		k := key{l.Netns, l.Port}
		if m, ok := merged[k]; ok {
			m.Queue += l.Queue
			m.QueueMax += l.QueueMax
			m.Drops += l.Drops
			continue
		}
		l.IPv6 = false
		out = append(out, l) // within its capacity: merged's pointers stay valid
		merged[k] = &out[len(out)-1]
	}
	slices.SortFunc(out, func(a, b flow.Listener) int {
		return cmp.Or(cmp.Compare(b.Drops, a.Drops), cmp.Compare(b.Queue, a.Queue),
			cmp.Compare(a.Netns, b.Netns), cmp.Compare(a.Port, b.Port))
	})
	return out[:min(len(out), maxListeners)]
}

// RingCollector reports the API ring's fill.
type RingCollector struct{ Ring RingSource }

// Describe implements prometheus.Collector.
func (RingCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- ringRecords
	ch <- ringCapacity
	ch <- ringWritten
}

// Collect implements prometheus.Collector.
func (c RingCollector) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(ringRecords, prometheus.GaugeValue, float64(c.Ring.Len()))
	ch <- prometheus.MustNewConstMetric(ringCapacity, prometheus.GaugeValue, float64(c.Ring.Cap()))
	ch <- prometheus.MustNewConstMetric(ringWritten, prometheus.CounterValue, float64(c.Ring.Next()))
}
