package agent

import (
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/cilium/ebpf/ringbuf"

	"github.com/flowlens/flowlens/internal/datapath"
	"github.com/flowlens/flowlens/internal/flow"
)

// minQueuedEnds is the least bound on the end events read off the ring and
// not yet taken by the table's goroutine: a close storm of 131,072
// connections with both ends on the node (48 MiB of events, held only
// while they wait). The bound is the socket map's capacity when that is
// larger: each tracked socket has one end event, so a storm of every
// socket the map holds fits (a million held connections closing at once
// are two million events; the table's goroutine, busy with the records
// of the first ones, takes them in seconds, not in one flush). Past it
// the reader stops and the ring fills; what the kernel then cannot submit
// it counts as lost, and the next interval reads the whole socket map to
// find those sockets.
const minQueuedEnds = 1 << 18

// endQueue reads socket end events off the ring as the kernel wakes it,
// in a goroutine of its own, so that the ring keeps draining while the
// table's goroutine is busy with an interval or a flush: 100,000
// connections closing at once are 200,000 events, ≈21,000 of which fit
// the default 4 MiB ring.
type endQueue struct {
	dp  *datapath.Datapath
	log *slog.Logger
	max int // events queued at most

	mu      sync.Mutex // guards the ring's reads and evs
	evs     []flow.TCPEnd
	bad     uint64        // records that did not decode, not yet taken
	room    chan struct{} // a take made room in a full queue
	stopped chan struct{} // closed when run returns
}

func newEndQueue(dp *datapath.Datapath, log *slog.Logger) *endQueue {
	tcpCap, _ := dp.MapCapacity()
	return &endQueue{dp: dp, log: log, max: max(minQueuedEnds, int(tcpCap)),
		room: make(chan struct{}, 1), stopped: make(chan struct{})}
}

// run reads the ring whenever the kernel wakes its readers (once a quarter
// of it is full), until the ring is closed or done is.
func (q *endQueue) run(done <-chan struct{}) {
	defer close(q.stopped)
	for {
		switch err := q.fill(); {
		case errors.Is(err, ringbuf.ErrClosed):
			return
		case errors.Is(err, errFull):
			select {
			case <-q.room:
				continue
			case <-done:
				return
			}
		}
		switch err := q.dp.WaitEnd(time.Time{}); {
		case errors.Is(err, ringbuf.ErrClosed):
			return
		case err != nil:
			q.log.Warn("wait for end events", "err", err)
		}
	}
}

var errFull = errors.New("end queue full")

// fillChunk is how many events fill reads per hold of the lock: a take
// waits for one chunk at most, not for a storm to end.
const fillChunk = 4096

// fill moves what the ring holds into the queue: until it is empty (nil),
// the queue is full (errFull) or the ring is closed.
func (q *endQueue) fill() error {
	for {
		q.mu.Lock()
		err := q.fillSome()
		q.mu.Unlock()
		if err != errChunk {
			return err
		}
	}
}

var errChunk = errors.New("chunk read")

func (q *endQueue) fillSome() error {
	for n := 0; n < fillChunk; n++ {
		if len(q.evs) >= q.max {
			return errFull
		}
		ev, err := q.dp.ReadEnd(time.Time{})
		switch {
		case err == nil:
			q.evs = append(q.evs, ev)
		case errors.Is(err, datapath.ErrTimeout):
			return nil
		case errors.Is(err, ringbuf.ErrClosed):
			return err
		default:
			// A malformed record is counted and skipped; the reader goes on.
			q.bad++
			q.log.Debug("ring buffer record", "err", err)
		}
	}
	return errChunk
}

// take returns every end event submitted so far (the ring is read to its
// end first, so an event the kernel submitted before the call is among
// them) and how many records did not decode. The returned slice is the
// caller's until its next take, which reuses it.
func (q *endQueue) take(spare []flow.TCPEnd) ([]flow.TCPEnd, uint64) {
	err := q.fill()
	q.mu.Lock()
	evs, bad := q.evs, q.bad
	q.evs, q.bad = spare[:0], 0
	q.mu.Unlock()
	if errors.Is(err, errFull) {
		// The ring may hold more: they are the next take's.
		select {
		case q.room <- struct{}{}:
		default:
		}
	}
	return evs, bad
}
