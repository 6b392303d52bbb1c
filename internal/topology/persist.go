package topology

import (
	"maps"
	"net/netip"
	"slices"

	"github.com/flowlens/flowlens/internal/flow"
)

// Persistence. The store stays pure: it hands out what changed as plain
// rows (Dirty) and takes rows back (Restore); the hub writes them where it
// likes (internal/history). A bucket is the unit: Dirty returns every edge
// of each bucket whose counts changed, so the writer replaces whole
// buckets and never merges counts, and a resent bucket is idempotent.
//
//	Ingest ─▶ counts change in bucket b ─▶ b marked dirty
//	Dirty()  ─▶ rows of every dirty bucket (whole), marks cleared
//	Restore(rows of retained buckets, oldest first) into a fresh store
//	         ─▶ answers Query and Diff as the store that wrote them

// EdgeRow is one edge of one bucket at the finest naming, with all its
// counts: everything a bucket holds of that edge.
type EdgeRow struct {
	Bucket   int64 // the bucket's index: it holds ends in (Bucket*Resolution, (Bucket+1)*Resolution]
	Src, Dst Ident
	Counts   Counts
}

// Ident is the exported mirror of an edge end's ident: what any level may
// name the end by.
type Ident struct {
	Kind             flow.Kind
	Namespace        string
	Pod              string
	WorkloadKind     string
	WorkloadName     string
	ServiceNamespace string // destinations only: the Service the client dialed
	ServiceName      string
	NodeName         string
	Command          string
	ContainerID      string
	Addr             netip.Addr // only when nothing else names the end
	DNSName          string     // with Addr: the name it was resolved from
}

// Counts is the exported mirror of an edge's counts in one bucket.
type Counts struct {
	Opened, Closed                                uint64
	Refused, TimedOut, Reset, Unreachable, Failed uint64
	Unanswered                                    uint64
	RetransToDst, RetransToSrc                    uint64
	BytesToDst, BytesToSrc                        uint64
	RTTMax                                        uint32
	RTTBins                                       []RTTBin // the RTT summary's occupied bins, by index
	Records                                       uint64
	SYNRetrans                                    uint64
	ConnectMax                                    uint32
	ConnectBins                                   []RTTBin // the connect latency summary's, likewise
	Drops                                         map[string]uint64
	Requests                                      []RequestCounts // by protocol and class
}

// RTTBin is one occupied bin of an RTT summary (rtt.go): Count samples in
// the log-spaced bin Index.
type RTTBin struct {
	Index uint16
	Count uint32
}

func (id *ident) export() Ident {
	return Ident{Kind: id.kind, Namespace: id.namespace, Pod: id.pod, WorkloadKind: id.workloadKind,
		WorkloadName: id.workloadName, ServiceNamespace: id.serviceNS, ServiceName: id.serviceName,
		NodeName: id.nodeName, Command: id.command, ContainerID: id.containerID, Addr: id.addr, DNSName: id.dnsName}
}

func (x *Ident) ident() ident {
	return ident{kind: x.Kind, namespace: x.Namespace, pod: x.Pod, workloadKind: x.WorkloadKind,
		workloadName: x.WorkloadName, serviceNS: x.ServiceNamespace, serviceName: x.ServiceName,
		nodeName: x.NodeName, command: x.Command, containerID: x.ContainerID, addr: x.Addr, dnsName: x.DNSName}
}

func (c *counts) export() Counts {
	out := Counts{Opened: c.opened, Closed: c.closed, Refused: c.refused, TimedOut: c.timedOut, Reset: c.reset,
		Unreachable: c.unreachable, Failed: c.failed, Unanswered: c.unanswered,
		RetransToDst: c.retransToDst, RetransToSrc: c.retransToSrc, BytesToDst: c.bytesToDst, BytesToSrc: c.bytesToSrc,
		RTTMax: c.rttMax, Records: c.records, SYNRetrans: c.synRetrans, ConnectMax: c.connectMax,
		RTTBins: c.rtt.export(), ConnectBins: c.connect.export(), Drops: maps.Clone(c.drops),
		Requests: c.exportRequests()}
	return out
}

func (s *summary) export() []RTTBin {
	if len(s.bins) == 0 {
		return nil
	}
	out := make([]RTTBin, len(s.bins))
	for i, b := range s.bins {
		out[i] = RTTBin{Index: b.index, Count: b.count}
	}
	return out
}

func summaryOf(bins []RTTBin) summary {
	var s summary
	for _, b := range bins {
		s.addBin(b.Index, b.Count) // sorts, and sums a bin given twice
	}
	return s
}

func (x *Counts) counts() counts {
	c := counts{opened: x.Opened, closed: x.Closed, refused: x.Refused, timedOut: x.TimedOut, reset: x.Reset,
		unreachable: x.Unreachable, failed: x.Failed, unanswered: x.Unanswered,
		retransToDst: x.RetransToDst, retransToSrc: x.RetransToSrc, bytesToDst: x.BytesToDst, bytesToSrc: x.BytesToSrc,
		rttMax: x.RTTMax, records: x.Records, synRetrans: x.SYNRetrans, connectMax: x.ConnectMax,
		rtt: summaryOf(x.RTTBins), connect: summaryOf(x.ConnectBins), drops: maps.Clone(x.Drops)}
	c.restoreRequests(x.Requests)
	return c
}

// Dirty returns the rows of every retained bucket whose counts changed
// since the last call, whole, oldest bucket first, and forgets the marks.
// The caller replaces those buckets wherever it keeps them.
func (s *Store) Dirty() []EdgeRow {
	idxs := make([]int64, 0, len(s.dirty))
	for idx := range s.dirty {
		idxs = append(idxs, idx)
	}
	clear(s.dirty)
	slices.Sort(idxs)
	var rows []EdgeRow
	for _, idx := range idxs {
		b := s.ring[s.slotOf(idx)]
		if b == nil || b.index != idx || idx <= s.head-int64(s.cfg.MaxBuckets) {
			continue // evicted since it changed
		}
		for i := range b.entries {
			e := &b.entries[i]
			k := &s.edges[e.edge].key
			rows = append(rows, EdgeRow{Bucket: idx, Src: k.src.export(), Dst: k.dst.export(), Counts: e.counts.export()})
		}
	}
	return rows
}

// Restore adds rows that Dirty returned (of this store's Resolution) to a
// fresh store, before any Tick; it may be called several times, oldest
// buckets first. A bucket older than the retention that the newest row
// sets is dropped, as is a row over MaxEdgesPerBucket: Restore returns how
// many rows it dropped. Restored buckets are not dirty: they are where
// they came from. The dedup index is not restored: the hub replays the
// records after its checkpoint with counting off for that.
func (s *Store) Restore(rows []EdgeRow) (dropped int) {
	for i := range rows {
		r := &rows[i]
		if r.Bucket <= s.head-int64(s.cfg.MaxBuckets) {
			dropped++
			continue
		}
		b := s.ring[s.slotOf(r.Bucket)]
		if b == nil || b.index != r.Bucket {
			b = s.bucketAt(r.Bucket)
		}
		k := edgeKey{src: r.Src.ident(), dst: r.Dst.ident()}
		c := s.entry(b, &k)
		if c == nil {
			dropped++
			continue
		}
		restored := r.Counts.counts()
		c.merge(&restored)
	}
	return dropped
}

// slotOf is the ring slot of bucket index idx.
func (s *Store) slotOf(idx int64) int {
	n := int64(s.cfg.MaxBuckets)
	return int((idx%n + n) % n)
}
