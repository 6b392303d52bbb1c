package publish

import (
	"fmt"
	"log/slog"
	"sync"

	"github.com/flowlens/flowlens/internal/flow"
)

// SourceCap keeps one source from crowding every other out of the API
// ring. The ring is shared: one pod opening thousands of connections per
// interval would evict every other pod's records. So at most Max records
// of one source (the observing socket's cgroup, or its network namespace
// where it has no cgroup) enter the ring per interval, the first ones. The
// excess is counted (exported as
// flowlens_agent_lost_total{stage="api",reason="source_cap"}) and the
// source is logged, rather than folded into a summary record: a summary
// would be a record no socket observed (no peer, mixed protocols and
// verdicts) that every reader would have to tell from a real one. Only
// the ring is capped: the topology, the edge metrics and the history take
// every record.
type SourceCap struct {
	max  int // -1: no cap
	log  *slog.Logger
	path func(cgroup uint64) string // names a capped cgroup in the log; may be nil

	mu       sync.Mutex
	capped   uint64
	interval uint64
	logged   uint64 // the interval capped sources were last logged
	counts   map[source]int
}

// capLogEvery is how many intervals apart capped sources are logged: the
// metric counts every record, the log names who, and a flood lasts.
const capLogEvery = 60

// NewSourceCap caps each source at max records per interval: 0 means half
// of ringSize (a source past it would turn the whole ring over within two
// intervals; no cap without a ring size), -1 no cap. Half, not less: the
// cap is a loss for the source it holds back, and one busy pod's 10,000
// short connections per second (20,000 records, both sides on the node)
// must stay exact by default. path, if set, names capped cgroups in the log.
func NewSourceCap(max, ringSize int, path func(cgroup uint64) string, log *slog.Logger) (*SourceCap, error) {
	if max < -1 {
		return nil, fmt.Errorf("max-records-per-source %d: -1 is no cap", max)
	}
	if max == 0 {
		max = ringSize / 2
		if max == 0 { // no ring size given, or a ring too small to share
			max = -1
		}
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &SourceCap{max: max, log: log, path: path, counts: map[source]int{}}, nil
}

// Keep keeps, in place and in order, the first Max records of each source
// of one interval's records, and counts the rest.
func (c *SourceCap) Keep(recs []flow.Record) []flow.Record {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.interval++
	if c.max < 0 || len(recs) <= c.max {
		return recs
	}
	clear(c.counts)
	kept := recs[:0]
	for i := range recs {
		s := sourceOf(&recs[i])
		c.counts[s]++
		if c.counts[s] > c.max {
			c.capped++
			continue
		}
		kept = append(kept, recs[i])
	}
	clear(recs[len(kept):])
	if len(kept) < len(recs) && (c.logged == 0 || c.interval-c.logged >= capLogEvery) {
		c.logged = c.interval
		for s, n := range c.counts {
			if n <= c.max {
				continue
			}
			attrs := []any{"source", s.String(), "records", n, "kept", c.max}
			if s.cgroup != 0 && c.path != nil {
				attrs = append(attrs, "cgroup_path", c.path(s.cgroup))
			}
			c.log.Warn("a source put more records in one interval than the flow buffer takes from one source: the excess is counted, not kept", attrs...)
		}
	}
	return kept
}

// Capped is how many records were kept out.
func (c *SourceCap) Capped() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.capped
}

type source struct {
	cgroup uint64
	netns  uint32
}

func sourceOf(r *flow.Record) source {
	ep := r.Observing()
	if ep.CgroupID != 0 {
		return source{cgroup: ep.CgroupID}
	}
	return source{netns: ep.Netns}
}

func (s source) String() string {
	if s.cgroup != 0 {
		return fmt.Sprintf("cgroup %d", s.cgroup)
	}
	return fmt.Sprintf("netns %d", s.netns)
}
