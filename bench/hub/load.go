package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"time"

	"github.com/flowlens/flowlens/internal/flow"
	"github.com/flowlens/flowlens/internal/ship"
)

// fleet is the synthetic agents: one shipper each, with its own agent id,
// streaming to the hub over gRPC on loopback as `flowlens agent` does.
type fleet struct {
	shippers []*ship.Shipper
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	next     uint64 // records made so far: each gets its own source port and start
}

// fleetBacklog bounds what one synthetic agent holds; push waits below it
// rather than let the backlog drop its oldest.
const fleetBacklog = 200_000

func startFleet(ctx context.Context, hubAddr string, agents int) (*fleet, error) {
	ctx, cancel := context.WithCancel(ctx)
	f := &fleet{cancel: cancel}
	for i := range agents {
		cfg := ship.DefaultConfig()
		cfg.Hub, cfg.AgentID, cfg.Node, cfg.Version = hubAddr, fmt.Sprintf("bench-agent-%d", i), fmt.Sprintf("bench-node-%d", i), "bench"
		cfg.MaxBacklog = fleetBacklog + cfg.MaxBatch
		if err := cfg.Validate(); err != nil {
			cancel()
			return nil, err
		}
		s := ship.New(cfg, slog.New(slog.DiscardHandler))
		f.shippers = append(f.shippers, s)
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			_ = s.Run(ctx)
		}()
	}
	return f, nil
}

func (f *fleet) stop() {
	f.cancel()
	f.wg.Wait()
}

// push sends the records of edges first to first+edges-1 at the times
// given by when(edge, k), k from 0 to perEdge, edge i from agent i mod
// agents, in chunks of at most one batch per agent, waiting whenever an
// agent's backlog is full.
func (f *fleet) push(ctx context.Context, first, edges, perEdge int, when func(edge, k int) time.Time) error {
	const chunk = ship.DefaultMaxBatch
	bufs := make([][]flow.Record, len(f.shippers))
	flush := func(a int) error {
		s := f.shippers[a]
		for s.Stats().Backlog > fleetBacklog-chunk {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(2 * time.Millisecond):
			}
		}
		s.Send(bufs[a])
		bufs[a] = bufs[a][:0]
		return nil
	}
	for k := range perEdge {
		for e := first; e < first+edges; e++ {
			a := e % len(f.shippers)
			f.next++
			bufs[a] = append(bufs[a], syntheticRecord(e, when(e, k), f.next))
			if len(bufs[a]) == chunk {
				if err := flush(a); err != nil {
					return err
				}
			}
		}
	}
	for a := range bufs {
		if len(bufs[a]) > 0 {
			if err := flush(a); err != nil {
				return err
			}
		}
	}
	return nil
}

// dropped is what the agents' backlogs dropped or refused: zero when the
// hub got everything.
func (f *fleet) dropped() (n uint64) {
	for _, s := range f.shippers {
		st := s.Stats()
		n += st.Dropped + st.Invalid + st.Rejected
	}
	return n
}

var (
	apiWorkload = &flow.Workload{Kind: "Deployment", Name: "api"}
	apiAddr     = netip.MustParseAddr("10.9.255.1")
)

// syntheticRecord is one short closed TCP connection, ended at t, of edge
// e: from pod client-<e> of Deployment load/client-<e> (its own cgroup, so
// the hub's cap per source never applies) to load/api, as an agent names
// it with Kubernetes. seq makes its source port and start its own, so
// every record is a connection of its own to the hub's dedup.
func syntheticRecord(e int, t time.Time, seq uint64) flow.Record {
	src := flow.Endpoint{IP: netip.AddrFrom4([4]byte{10, 9, byte(e >> 8), byte(e)}), Port: uint16(1024 + seq%64000),
		Kind: flow.KindPod, Namespace: "load", Pod: fmt.Sprintf("client-%d-x7k2p", e), Container: "client",
		Workload: &flow.Workload{Kind: "Deployment", Name: fmt.Sprintf("client-%d", e)}, NodeName: fmt.Sprintf("node-%d", e%16),
		PID: 4711, Command: "client", CgroupID: uint64(100_000 + e)}
	dst := flow.Endpoint{IP: apiAddr, Port: 8080, Kind: flow.KindPod, Namespace: "load", Pod: "api-5c7b9d-a1b2c",
		Workload: apiWorkload, NodeName: "node-0"}
	rtt := uint32(100 + e%400)
	start := t.Add(-time.Duration(seq%900) * time.Millisecond)
	return flow.Record{Time: t, Start: t.Add(-time.Second), ConnStart: start, Node: src.NodeName, Observer: "client",
		Protocol: flow.TCP, IPVersion: 4, Verdict: flow.VerdictClosed, Opened: 1, Closed: 1,
		RTT: &flow.RTT{MinMicros: rtt, AvgMicros: rtt, MaxMicros: rtt}, BytesToDst: 1000, BytesToSrc: 5000,
		SegmentsToDst: 5, SegmentsToSrc: 6, Source: src, Destination: dst}
}

// pushAndWait pushes the records and waits until the hub's topology took
// every one in (counted, or dropped with a reason) or the hub's cap per
// source kept it out, returning what those outcomes moved by.
func pushAndWait(ctx context.Context, h *hubProc, f *fleet, first, edges, perEdge int, when func(edge, k int) time.Time) (map[string]float64, error) {
	before, err := h.metrics()
	if err != nil {
		return nil, err
	}
	base := topologyRecords(before)
	if err := f.push(ctx, first, edges, perEdge, when); err != nil {
		return nil, err
	}
	want := float64(edges * perEdge)
	var moved map[string]float64
	err = poll(ctx, 10*time.Minute, func() (bool, error) {
		s, err := h.metrics()
		if err != nil {
			return false, err
		}
		moved = map[string]float64{}
		for k, v := range topologyRecords(s) {
			if d := v - base[k]; d != 0 {
				moved[k] = d
			}
		}
		return total(moved) >= want, nil
	})
	if err != nil {
		return moved, fmt.Errorf("the hub's topology took %v of %v records: %w", moved, want, err)
	}
	if d := f.dropped(); d > 0 {
		return moved, fmt.Errorf("the synthetic agents dropped %d records", d)
	}
	return moved, nil
}
