package topology

import (
	"time"

	"github.com/flowlens/flowlens/internal/flow"
	"github.com/flowlens/flowlens/internal/join"
)

// Config bounds a Store. Zero values take the defaults.
type Config struct {
	// Resolution is the width of a time bucket. Default 10s.
	Resolution time.Duration
	// MaxBuckets is how many buckets are retained: the history is
	// MaxBuckets*Resolution long. Default 8640 (24 h at 10 s).
	MaxBuckets int
	// MaxEdgesPerBucket bounds the distinct edges (at the finest naming)
	// one bucket holds; a record of a further edge is dropped and counted
	// in Stats.RecordsOverEdgeLimit. Default 10,000.
	MaxEdgesPerBucket int
	// MaxConnections bounds the dedup index of connections; a record whose
	// connection does not fit is counted without dedup, and counted in
	// Stats.RecordsUndeduplicated. Default 1<<18.
	MaxConnections int
	// Hold is how many further batches a server record waits for its
	// connection's client record before its connection is counted from the
	// server side. Default 2.
	Hold int
	// Remember is how many batches a connection stays in the dedup index
	// after its last record while it is open; Linger, once it ended.
	// Defaults 60 and 2.
	Remember, Linger int
	// Sides is the join's tolerance between a client's and its server's
	// connection_start.
	Sides join.Window
	// Observe, when set, is told of every record as it is counted: whole
	// when its connection is counted from its side, else only its
	// retransmits. The hub's per-edge metrics are fed from it, so they
	// count exactly what the graph counts.
	Observe func(r *flow.Record, e EdgeRef, whole bool)
}

// DefaultRemember is Config.Remember's default, in batches.
const DefaultRemember = 60

// EdgeRef is the edge a record was counted on, at the finest naming.
type EdgeRef struct{ k *edgeKey }

// Names names the edge's two ends at level l.
func (e EdgeRef) Names(l Level) (src, dst Node) { return e.k.src.name(l), e.k.dst.name(l) }

func (c *Config) defaults() {
	if c.Resolution <= 0 {
		c.Resolution = 10 * time.Second
	}
	if c.MaxBuckets <= 0 {
		c.MaxBuckets = 8640
	}
	if c.MaxEdgesPerBucket <= 0 {
		c.MaxEdgesPerBucket = 10_000
	}
	if c.MaxConnections <= 0 {
		c.MaxConnections = 1 << 18
	}
	if c.Hold <= 0 {
		c.Hold = 2
	}
	if c.Remember <= 0 {
		c.Remember = DefaultRemember
	}
	if c.Linger <= 0 {
		c.Linger = 2
	}
	c.Sides.Defaults()
}

// Stats counts what the store did and holds. Every record ingested while
// counting (SetCounting) ends in exactly one of Counted, Deduplicated,
// TooOld, TooNew, OverEdgeLimit, or is still Held.
type Stats struct {
	Records              uint64 // ingested
	RecordsCounted       uint64 // their counts are on an edge
	RecordsDeduplicated  uint64 // the other side's record of a connection counted from one side: only its own retransmits were taken
	RecordsHeld          int    // server records waiting for their client now
	RecordsTooOld        uint64 // dropped: before the retained buckets
	RecordsTooNew        uint64 // dropped: ending after the bucket after now's
	RecordsOverEdgeLimit uint64 // dropped: their bucket held MaxEdgesPerBucket edges
	// RecordsUndeduplicated were counted with no dedup (among Counted):
	// the connection index was full, so both sides may count.
	RecordsUndeduplicated uint64
	Connections           int    // in the dedup index now
	Buckets               int    // retained now
	BucketsEvicted        uint64 // aged out
	Edges                 int    // distinct edges, at the finest naming, in the retained buckets
}

// edgeKey is an edge at the finest naming; every level's edge is a
// function of it.
type edgeKey struct {
	src, dst ident
}

type edgeInfo struct {
	key  edgeKey
	refs int // buckets holding it; 0: the slot is free
}

// bucket holds the edges' counts of one Resolution-wide span of time,
// (index*Resolution, (index+1)*Resolution], by the records' end time.
type bucket struct {
	index   int64
	slot    map[uint32]int32 // edge id → entries index
	entries []entry
}

type entry struct {
	edge uint32
	counts
}

// Store folds flow records into a time-bucketed topology. It is a pure
// core: no clock, no I/O, no goroutines; the caller calls Tick once per
// interval with the time, then Ingest with that interval's records, and
// queries in between. It is not safe for concurrent use.
type Store struct {
	cfg  Config
	tick uint64
	now  int64 // bucket index of the time Tick was last given
	head int64 // newest bucket index accepted
	ring []*bucket

	edgeIDs map[edgeKey]uint32
	edges   []edgeInfo
	free    []uint32
	// lastEdge is the edge entry met last: a connection's two records
	// are folded one after the other onto one edge, and comparing the key
	// costs less than hashing it again (lookupEdge).
	lastEdge uint32

	conns connIndex
	stats Stats
	// dirty holds the index of every bucket whose counts changed since
	// the last Dirty (persist.go).
	dirty map[int64]struct{}
	// learning: records only teach the dedup index who was counted from
	// which side, and are not counted (SetCounting).
	learning bool
}

// New returns an empty store.
func New(cfg Config) *Store {
	cfg.defaults()
	return &Store{cfg: cfg, ring: make([]*bucket, cfg.MaxBuckets), edgeIDs: map[edgeKey]uint32{},
		conns: connIndex{byKey: map[connKey][]*conn{}, due: map[uint64][]*conn{}, edges: map[edgeKey]*sharedEdge{}}, now: -1 << 62, head: -1 << 62,
		dirty: map[int64]struct{}{}}
}

// Config returns the configuration in force, defaults filled in.
func (s *Store) Config() Config { return s.cfg }

// Stats reports counters and sizes.
func (s *Store) Stats() Stats {
	st := s.stats
	st.Connections = s.conns.count
	st.Edges = len(s.edgeIDs)
	for _, b := range s.ring {
		if b != nil {
			st.Buckets++
		}
	}
	return st
}

func (s *Store) bucketIndex(t time.Time) int64 {
	return floorDiv(t.UnixNano()-1, int64(s.cfg.Resolution))
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && a < 0 {
		q--
	}
	return q
}

// Tick starts the next interval at now: buckets older than the retention
// are evicted, connections not heard of for long are forgotten, and server
// records that waited Hold batches for their client are counted.
func (s *Store) Tick(now time.Time) {
	s.tick++
	s.now = max(s.now, s.bucketIndex(now))
	s.head = max(s.head, s.now)
	for i, b := range s.ring {
		if b != nil && b.index <= s.head-int64(s.cfg.MaxBuckets) {
			s.evict(i)
		}
	}
	s.conns.expire(s)
}

func (s *Store) evict(slot int) {
	for _, e := range s.ring[slot].entries {
		info := &s.edges[e.edge]
		if info.refs--; info.refs == 0 {
			delete(s.edgeIDs, info.key)
			info.key = edgeKey{}
			s.free = append(s.free, e.edge)
		}
	}
	delete(s.dirty, s.ring[slot].index) // so dirty stays within the ring
	s.ring[slot] = nil
	s.stats.BucketsEvicted++
}

// bucket returns the bucket r's end time falls in, creating it, or nil
// (counted) when that time is outside what is retained.
func (s *Store) bucket(t time.Time) *bucket {
	idx := s.bucketIndex(t)
	switch {
	case idx > s.now+1:
		s.stats.RecordsTooNew++
		return nil
	case idx <= s.head-int64(s.cfg.MaxBuckets):
		s.stats.RecordsTooOld++
		return nil
	}
	return s.bucketAt(idx)
}

// bucketAt returns the bucket of index idx, creating it in its slot (and
// evicting the older bucket there).
func (s *Store) bucketAt(idx int64) *bucket {
	slot := s.slotOf(idx)
	if b := s.ring[slot]; b != nil && b.index == idx {
		return b
	} else if b != nil {
		s.evict(slot)
	}
	s.head = max(s.head, idx)
	b := &bucket{index: idx, slot: map[uint32]int32{}}
	s.ring[slot] = b
	return b
}

// counts returns the counts of edge k in the bucket of time t, or nil
// (counted) when the record cannot be kept.
func (s *Store) counts(t time.Time, k *edgeKey) *counts {
	b := s.bucket(t)
	if b == nil {
		return nil
	}
	c := s.entry(b, k)
	if c == nil {
		s.stats.RecordsOverEdgeLimit++
		return nil
	}
	s.dirty[b.index] = struct{}{}
	return c
}

// entry returns the counts of edge k in bucket b, adding the edge, or nil
// when b holds MaxEdgesPerBucket edges already.
func (s *Store) entry(b *bucket, k *edgeKey) *counts {
	id, known := s.lookupEdge(k)
	if known {
		if i, ok := b.slot[id]; ok {
			return &b.entries[i].counts
		}
	}
	if len(b.entries) >= s.cfg.MaxEdgesPerBucket {
		return nil
	}
	if !known {
		if n := len(s.free); n > 0 {
			id, s.free = s.free[n-1], s.free[:n-1]
		} else {
			id = uint32(len(s.edges))
			s.edges = append(s.edges, edgeInfo{})
		}
		s.edges[id].key = *k
		s.edgeIDs[*k] = id
	}
	s.edges[id].refs++
	s.lastEdge = id
	b.slot[id] = int32(len(b.entries))
	b.entries = append(b.entries, entry{edge: id})
	return &b.entries[len(b.entries)-1].counts
}

// lookupEdge returns k's edge id, if k is an edge. The edge met last is
// compared before the index is asked; a freed or reused id fails the
// comparison.
func (s *Store) lookupEdge(k *edgeKey) (uint32, bool) {
	if id := s.lastEdge; int(id) < len(s.edges) && s.edges[id].refs > 0 && s.edges[id].key == *k {
		return id, true
	}
	id, ok := s.edgeIDs[*k]
	if ok {
		s.lastEdge = id
	}
	return id, ok
}

// SetCounting turns counting off (false) or back on. With it off, records
// go through the dedup index and the wait for their other side as ever,
// but nothing is counted: the hub replays the records that follow its
// last checkpoint's, so that the index and the waiting records are what
// they were when it stopped, while the counts come from the checkpoint.
func (s *Store) SetCounting(on bool) { s.learning = !on }

// countAll folds r whole into edge k: the side its connection is counted from.
func (s *Store) countAll(r *flow.Record, k *edgeKey) {
	if s.learning {
		return
	}
	if c := s.counts(r.Time, k); c != nil {
		c.addRecord(r)
		c.addOwn(r)
		s.stats.RecordsCounted++
		if s.cfg.Observe != nil {
			s.cfg.Observe(r, EdgeRef{k}, true)
		}
	}
}

// countRetransmits folds only what r's observer counts of its own
// (retransmits, drops) into edge k: r is the other side of a connection
// counted from one side.
func (s *Store) countRetransmits(r *flow.Record, k *edgeKey) {
	if s.learning {
		return
	}
	if c := s.counts(r.Time, k); c != nil {
		c.addOwn(r)
		s.stats.RecordsDeduplicated++
		if s.cfg.Observe != nil {
			s.cfg.Observe(r, EdgeRef{k}, false)
		}
	}
}

// Ingest folds one batch of records in (an interval's, from any number of
// observers, in any order). Records of a batch are matched with each
// other before any is counted, so both sides of a connection in one batch
// count once whatever their order.
func (s *Store) Ingest(records []flow.Record) {
	s.stats.Records += uint64(len(records))
	found := make([]*conn, len(records))
	for i := range records {
		found[i] = s.conns.learn(&records[i], s)
	}
	for i := range records {
		s.fold(&records[i], found[i])
	}
}

// keyOf names r's edge at the finest naming.
func keyOf(r *flow.Record) edgeKey {
	return edgeKey{src: identOf(&r.Source, r.Node, false), dst: identOf(&r.Destination, r.Node, true)}
}
