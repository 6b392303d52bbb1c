// Package agent runs a node's data path: it reads socket end events and the
// kernel's socket maps, feeds them to the connection table, and hands each
// interval's flow records to a sink.
//
//	datapath.ReadEnd ─▶ endQueue ─▶ EndTCP ┐
//	every interval:                        ├─▶ Flush ─▶ sink (names, join, ring)
//	datapath.TouchedTCP ─▶ TouchedTCP      │
//	(now and then TCPSockets ─▶ SyncTCP)   │
//	datapath.ChangedUDP ───────▶ SyncUDP ──┘
//
// One goroutine owns the table. Another reads end events off the ring as
// the kernel wakes it (once a quarter of the ring is full) into a bounded
// queue, so a close storm drains while the table's goroutine is busy; the
// table's goroutine takes the queue, the ring's rest with it, at every
// flush.
//
// Connections that ended leave sooner: every EndedFlush the table's
// goroutine takes the end events and hands the records of flows whose
// sockets all ended to the sink (conntable.FlushEnded); their counts are
// final. Open sockets keep the interval.
package agent

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	flag "github.com/spf13/pflag"

	"golang.org/x/sys/unix"

	"github.com/flowlens/flowlens/internal/conntable"
	"github.com/flowlens/flowlens/internal/datapath"
	"github.com/flowlens/flowlens/internal/dnsnames"
	"github.com/flowlens/flowlens/internal/flow"
	"github.com/flowlens/flowlens/internal/l7"
	"github.com/flowlens/flowlens/internal/tlsprobe"
)

// Config is the agent's configuration.
type Config struct {
	Node     string
	Interval time.Duration
	// EndedFlush is how often the records of connections that ended are
	// handed out ahead of the interval (0: at the interval's end only).
	EndedFlush time.Duration
	Datapath   datapath.Config
	Table      conntable.Config
	L7         L7Config
}

// DefaultConfig returns the defaults `flowlens up` starts with.
func DefaultConfig() Config {
	host, _ := os.Hostname()
	return Config{Node: host, Interval: time.Second, EndedFlush: 100 * time.Millisecond, Datapath: datapath.DefaultConfig(),
		Table: conntable.Config{UDPIdle: 5 * time.Second, UDPForget: time.Minute}}
}

// Flags registers the agent's flags on fs.
func (c *Config) Flags(fs *flag.FlagSet) {
	fs.StringVar(&c.Node, "node", c.Node, "node name written on every flow")
	fs.DurationVar(&c.Interval, "interval", c.Interval, "flow record interval")
	fs.DurationVar(&c.EndedFlush, "ended-flush", c.EndedFlush, "how often the records of connections that ended are sent ahead of their interval (0: at the interval's end; up with --data-dir defaults to 0: each flush is a write to the history log)")
	fs.IntVar(&c.Datapath.TCPSockets, "max-tcp-sockets", c.Datapath.TCPSockets, "TCP sockets tracked in the kernel")
	fs.IntVar(&c.Datapath.UDPFlows, "max-udp-flows", c.Datapath.UDPFlows, "UDP conversations counted in the kernel")
	fs.IntVar(&c.Datapath.RingBytes, "ring-buffer-bytes", c.Datapath.RingBytes, "kernel ring buffer for socket end events (power of two; 0: 16 bytes per --max-tcp-sockets, at least 2 MiB)")
	fs.IntVar(&c.Datapath.TCPPerCgroup, "max-tcp-sockets-per-cgroup", c.Datapath.TCPPerCgroup, "TCP sockets one cgroup may hold in the kernel map (0: a quarter of it, -1: no limit)")
	fs.IntVar(&c.Datapath.UDPPerCgroup, "max-udp-flows-per-cgroup", c.Datapath.UDPPerCgroup, "UDP conversations one cgroup may hold in the kernel map (0: a quarter of it, -1: no limit)")
	fs.IntVar(&c.Table.MaxSockets, "max-tcp-table-sockets", c.Table.MaxSockets, "TCP sockets the connection table remembers between reads (0: sized from --max-tcp-sockets)")
	fs.IntVar(&c.Table.MaxConversations, "max-udp-conversations", c.Table.MaxConversations, "UDP conversations the connection table remembers, live and released (0: sized from --max-udp-flows, --udp-idle, --udp-remember and --interval)")
	fs.DurationVar(&c.Table.UDPIdle, "udp-idle", c.Table.UDPIdle, "silence after which a UDP conversation's kernel entry is released")
	fs.DurationVar(&c.Table.UDPForget, "udp-remember", c.Table.UDPForget, "how long after its last datagram a released UDP conversation's role is remembered")
	fs.BoolVar(&c.L7.Off, "no-l7", c.L7.Off, "capture no payload: no HTTP, DNS, PostgreSQL or Redis requests")
	fs.IntVar(&c.Datapath.L7CaptureBytes, "l7-capture-bytes", c.Datapath.L7CaptureBytes, fmt.Sprintf("bytes of each message the kernel captures for L7 parsing (at most %d)", datapath.L7MaxCapture))
	fs.IntVar(&c.Datapath.L7BudgetBytes, "l7-budget-bytes", c.Datapath.L7BudgetBytes, "L7 capture budget per second for the node, in bytes; past it messages are not captured, counted in flowlens_l7_samples_lost_total{reason=\"budget\"}")
	fs.IntVar(&c.Datapath.L7RingBytes, "l7-ring-buffer-bytes", c.Datapath.L7RingBytes, "kernel ring buffer for L7 samples (power of two)")
	fs.IntVar(&c.L7.MaxConns, "l7-max-connections", c.L7.MaxConns, "connections whose requests are followed at once (0: the default)")
	fs.StringSliceVar(&c.L7.HTTPHeaders, "l7-http-headers", c.L7.HTTPHeaders, "HTTP request headers whose values are kept on requests (none by default; credentials never)")
	fs.BoolVar(&c.Datapath.SkipDrops, "skip-drops", c.Datapath.SkipDrops, "leave the drop hook (tp_btf/kfree_skb) unattached: no drops by reason")
	fs.StringVar(&c.Datapath.CgroupMount, "cgroup-root", c.Datapath.CgroupMount, "the host's cgroup2 root, where the cgroup programs attach (default: this process's cgroup2 mount, outside a cgroup namespace)")
}

// Validate reports an unusable configuration, and sizes the connection
// table's bounds left at zero from the kernel maps they mirror.
func (c *Config) Validate() error {
	if c.Interval < 100*time.Millisecond {
		return fmt.Errorf("interval %s is below 100ms", c.Interval)
	}
	if c.EndedFlush < 0 || c.EndedFlush > 0 && c.EndedFlush < minEndedFlush {
		return fmt.Errorf("ended-flush %s: 0, or at least %s", c.EndedFlush, minEndedFlush)
	}
	if c.L7.Off {
		c.Datapath.L7CaptureBytes = -1
	}
	if err := c.Datapath.Validate(); err != nil {
		return err
	}
	if _, err := c.L7.protocols(); err != nil {
		return fmt.Errorf("l7: %w", err)
	}
	// The kernel side takes its defaults for sizes left at zero.
	kernel := datapath.DefaultConfig()
	if c.Datapath.TCPSockets > 0 {
		kernel.TCPSockets = c.Datapath.TCPSockets
	}
	if c.Datapath.UDPFlows > 0 {
		kernel.UDPFlows = c.Datapath.UDPFlows
	}
	if err := c.Table.Fit(kernel.TCPSockets, kernel.UDPFlows, c.Interval); err != nil {
		return fmt.Errorf("connection table: %w", err)
	}
	return nil
}

// minEndedFlush bounds how often the reader wakes for ended connections.
const minEndedFlush = 10 * time.Millisecond

// FlushesPerInterval is how many times an interval the sink may be called:
// the ended flushes and the interval's end. Whatever counts the sink's
// calls as intervals (a hold, a linger) counts this many per interval.
func (c Config) FlushesPerInterval() int {
	if c.EndedFlush <= 0 || c.EndedFlush >= c.Interval {
		return 1
	}
	return int((c.Interval + c.EndedFlush - 1) / c.EndedFlush)
}

// Sink receives each interval's records at its end, and before it, in
// batches of their own, those of connections that ended: it is called
// Config.FlushesPerInterval times an interval, at regular times, an ended
// batch also when it is empty, so that whatever counts its calls (a hold,
// a linger) counts time. It must not keep the slice.
type Sink func([]flow.Record)

// Agent is one node's data path.
type Agent struct {
	cfg   Config
	log   *slog.Logger
	dp    *datapath.Datapath
	table *conntable.Table
	sink  Sink
	// finals holds what released UDP entries held when deleted; reused.
	finals []flow.UDPConversation
	drops  []flow.Drop // reused
	names  *dnsnames.Cache
	whole  wholeReads    // when to read the whole tcp_socks map
	ends   *endQueue     // end events read off the ring, set by Run
	endBuf []flow.TCPEnd // the last take's, reused by the next

	tls *tlsprobe.Prober // nil with L7 off, or without uprobes

	// l7 is fed by readSamples and taken from by tick; nil with L7 off.
	l7      *l7.Tracker
	l7mu    sync.Mutex // guards l7 and l7Stats
	l7Stats l7.Stats

	stats statCounters
	mu    sync.Mutex // guards snap
	snap  Stats
	ready atomic.Bool
}

type statCounters struct {
	eventsRead     atomic.Uint64
	decodeErrors   atomic.Uint64
	l7Read         atomic.Uint64
	l7DecodeErrors atomic.Uint64
	readErrors     atomic.Uint64
	ticks          atomic.Uint64
	wholeReads     atomic.Uint64 // intervals that read the whole tcp_socks map
}

// Stats is a snapshot of the agent's health for metrics.
type Stats struct {
	EventsRead, DecodeErrors, ReadErrors uint64
	// WholeReads counts intervals that read the whole tcp_socks map, not
	// only the sockets that changed (Ticks all intervals).
	WholeReads, Ticks            uint64
	Kernel                       datapath.Counters
	Table                        conntable.Stats
	TCPSockets, UDPConversations int // kernel map entries at the last tick
	TCPCapacity, UDPCapacity     uint32
	Hooks                        []datapath.Hook
	DropReasons                  map[string]uint64 // packets the kernel dropped, by reason, since the start
	Listeners                    []flow.Listener   // accept queues and drops at the last tick
	// Refusals name the cgroups refused for holding their share of the
	// kernel maps, most refused first.
	Refusals []datapath.Refusal
	// L7: samples read and undecodable, what the parsers made of them,
	// and the DNS names held for naming peers.
	L7Read, L7DecodeErrors uint64
	L7                     l7.Stats
	TLS                    tlsprobe.Stats // nil maps: no TLS probing
	DNSNames               int
	DNSNamesEvicted        uint64
}

// New loads and attaches the data path.
func New(cfg Config, log *slog.Logger, sink Sink) (*Agent, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	dp, err := datapath.Open(cfg.Datapath, log)
	if err != nil {
		return nil, err
	}
	cfg.Table.Node = cfg.Node
	cfg.Table.BootTime = time.Now().Add(-time.Duration(monotonicNow()))
	a := &Agent{cfg: cfg, log: log, dp: dp, table: conntable.New(cfg.Table), sink: sink,
		names: dnsnames.New(dnsnames.DefaultConfig()), whole: newWholeReads()}
	if dp.L7On() {
		if a.l7, err = newTracker(cfg.L7); err != nil {
			dp.Close()
			return nil, err
		}
		if progs, err := tlsprobe.ProgramsOf(dp.Uprobes()); err != nil {
			log.Warn("no TLS plaintext: HTTPS and other TLS traffic is counted, not parsed", "err", err)
		} else {
			// Before the agent is ready: a process that starts after it
			// with a library of the host (a curl) is probed already.
			a.tls = tlsprobe.New(progs, log)
			began := time.Now()
			if err := a.tls.Scan(); err != nil {
				log.Warn("tls probe scan", "err", err)
			}
			log.Info("probed TLS libraries", "took", time.Since(began), "stats", a.tls.Stats())
		}
	}
	for _, h := range dp.Hooks() {
		log.Info("hook", "program", h.Program, "target", h.Target, "attached", h.Attached, "reason", h.Reason)
	}
	// After the hooks are attached, so a socket is either walked or hooked.
	switch w, err := dp.WalkTCP(); {
	case err != nil:
		log.Warn("could not learn every socket open before the agent: their roles and first counts may be wrong", "namespaces", w.Namespaces, "err", err)
	case w.Namespaces == 0:
		log.Warn("kernel has no iter/tcp: sockets open before the agent are adopted at their first I/O, their roles guessed from listeners seen since")
	case w.Unreadable > 0:
		log.Warn("learnt the sockets open before the agent, but not in the network namespaces of processes whose /proc/<pid>/ns/net it may not open (needs CAP_SYS_PTRACE, or another user namespace)",
			"namespaces", w.Namespaces, "unreadable_processes", w.Unreadable)
	default:
		log.Info("learnt the sockets open before the agent", "namespaces", w.Namespaces)
	}
	return a, nil
}

// Ready reports whether the agent has completed its first interval.
func (a *Agent) Ready() bool { return a.ready.Load() }

// Stats returns the health snapshot taken at the last interval.
func (a *Agent) Stats() Stats {
	a.mu.Lock()
	defer a.mu.Unlock()
	s := a.snap
	s.EventsRead = a.stats.eventsRead.Load()
	s.DecodeErrors = a.stats.decodeErrors.Load()
	s.WholeReads, s.Ticks = a.stats.wholeReads.Load(), a.stats.ticks.Load()
	s.ReadErrors = a.stats.readErrors.Load()
	s.L7Read = a.stats.l7Read.Load()
	s.L7DecodeErrors = a.stats.l7DecodeErrors.Load()
	if a.tls != nil {
		s.TLS = a.tls.Stats()
	}
	return s
}

// Run processes events until ctx ends, then detaches everything.
func (a *Agent) Run(ctx context.Context) error {
	stop := context.AfterFunc(ctx, func() { _ = a.dp.Close() })
	defer stop()
	a.ends = newEndQueue(a.dp, a.log)
	go a.ends.run(ctx.Done())
	defer func() {
		_ = a.dp.Close() // ends run, if ctx's did not yet
		<-a.ends.stopped
	}()

	var (
		socks []flow.TCPSocket
		convs []flow.UDPConversation
	)
	if a.l7 != nil {
		go a.readSamples()
	}
	if a.tls != nil {
		go a.tls.Run(ctx)
		defer a.tls.Close()
	}
	start := time.Now()
	next := start.Add(a.cfg.Interval)
	ended := a.nextEnded(start, next)
	timer := time.NewTimer(time.Until(ended))
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-timer.C:
		}
		now := time.Now()
		if !now.Before(next) {
			socks, convs = a.tick(socks[:0], convs[:0], start, now)
			start, next = now, now.Add(a.cfg.Interval)
			ended = a.nextEnded(start, next)
		} else {
			a.flushEnded(start, now)
			ended = a.nextEnded(now, next)
		}
		timer.Reset(time.Until(ended))
	}
}

// nextEnded is when the next ended flush is due after one at now: never
// past the interval's end, which flushes everything.
func (a *Agent) nextEnded(now, next time.Time) time.Time {
	if a.cfg.EndedFlush <= 0 {
		return next
	}
	if at := now.Add(a.cfg.EndedFlush); at.Before(next) {
		return at
	}
	return next
}

// drainEnds feeds the table every end event submitted so far.
func (a *Agent) drainEnds() {
	evs, bad := a.ends.take(a.endBuf)
	a.stats.eventsRead.Add(uint64(len(evs)))
	a.stats.decodeErrors.Add(bad)
	for i := range evs {
		a.table.EndTCP(evs[i])
		a.l7Closed(&evs[i])
	}
	// A storm's queue is not kept: a quiet node holds a small one.
	if cap(evs) <= keptEndBuf {
		a.endBuf = evs
	} else {
		a.endBuf = nil
	}
}

// keptEndBuf is the largest end-event buffer kept between takes.
const keptEndBuf = 16384

// flushEnded hands the sink the records of connections that ended since
// the last flush. The kernel wakes the reader only once a quarter of the
// ring is full, so the ring is drained here first. The drops counted so
// far are read for those records to carry theirs (a refused connect's SYN
// dropped for want of a listener is counted before the connect fails),
// and their connections' requests taken; requests of open connections
// wait for the interval, with their records.
func (a *Agent) flushEnded(start, now time.Time) {
	a.drainEnds()
	if !a.table.Ended() {
		// Called all the same: what counts calls as intervals (a hold
		// for a pod's names, the hub's tick) must see them regularly.
		a.emit(nil, now)
		return
	}
	a.readDrops()
	a.takeEndedRequests(monotonicNow())
	a.emit(a.table.FlushEnded(start, now), now)
}

// readDrops gives the table the drops the kernel counted since the last read.
func (a *Agent) readDrops() {
	var err error
	if a.drops, err = a.dp.Drops(a.drops[:0]); err != nil {
		a.stats.readErrors.Add(1)
		a.log.Warn("read drops", "err", err)
	}
	a.table.Drops(a.drops)
}

// emit learns the DNS answers recs carry and hands them to the sink.
func (a *Agent) emit(recs []flow.Record, now time.Time) {
	a.names.Learn(recs, now)
	a.sink(recs)
}

// tick closes an interval: drain what the ring buffer holds, read the maps,
// flush records. Draining first matters: the kernel deletes a socket from
// the map before it submits the socket's end event, so any event consumed
// here can no longer appear as live in the map read that follows.
func (a *Agent) tick(socks []flow.TCPSocket, convs []flow.UDPConversation, start, now time.Time) ([]flow.TCPSocket, []flow.UDPConversation) {
	a.drainEnds()
	kc, err := a.dp.Counters()
	if err != nil {
		a.log.Warn("read kernel counters", "err", err)
	}
	socks = a.readTCP(socks, kc)
	a.endedUDP()
	if convs, err = a.dp.ChangedUDP(convs, a.table.UDPIdle()); err != nil {
		a.stats.readErrors.Add(1)
		a.log.Warn("read UDP conversations", "err", err)
	} else {
		expired := a.table.SyncUDP(convs, monotonicNow())
		a.finals, err = a.dp.DeleteUDP(expired, a.finals[:0])
		if err != nil {
			a.stats.readErrors.Add(1)
			a.log.Warn("release UDP conversations", "err", err)
		}
		for k, i := range expired[:len(a.finals)] {
			a.table.ReleasedUDP(&convs[i], &a.finals[k])
		}
	}
	a.readDrops()
	a.takeRequests(monotonicNow())
	a.emit(a.table.Flush(start, now), now)
	a.ticks(kc, a.dp.UDPEntries())
	return socks, convs
}

// endedUDP accounts the UDP conversations that ended with their socket,
// before the read of the others (see conntable.EndedUDP), and tells the
// L7 tracker they ended.
func (a *Agent) endedUDP() {
	var err error
	if a.finals, err = a.dp.EndedUDP(a.finals[:0]); err != nil {
		a.stats.readErrors.Add(1)
		a.log.Warn("read ended UDP conversations", "err", err)
	}
	for i := range a.finals {
		a.table.EndedUDP(&a.finals[i])
	}
	a.l7ClosedUDP(a.finals)
}

// readTCP reads the TCP sockets that changed since the last interval into
// the table, and the whole map when a.whole says so.
func (a *Agent) readTCP(socks []flow.TCPSocket, kc datapath.Counters) []flow.TCPSocket {
	socks, err := a.dp.TouchedTCP(socks)
	if err != nil {
		a.stats.readErrors.Add(1)
		a.log.Warn("read changed TCP sockets", "err", err)
	}
	a.table.TouchedTCP(socks)
	// A failed read may have left marks unread: the whole map has them.
	whole := err != nil || a.whole.due(kc, a.table.MissingTCP(), a.dp.CanReadTouched())
	if whole {
		if socks, err = a.dp.TCPSockets(socks[:0]); err != nil {
			a.stats.readErrors.Add(1)
			a.log.Warn("read TCP sockets", "err", err)
			whole = false
		} else {
			a.logVanished(a.table.SyncTCP(socks))
		}
	}
	a.whole.done(kc, whole)
	if whole {
		a.stats.wholeReads.Add(1)
	}
	return socks
}

func (a *Agent) ticks(kc datapath.Counters, udp int) {
	var err error
	tcpCap, udpCap := a.dp.MapCapacity()
	reasons := make(map[string]uint64)
	if err := a.dp.DropReasons(reasons); err != nil {
		a.log.Warn("read drop reasons", "err", err)
	}
	listeners, err := a.dp.Listeners(nil)
	if err != nil {
		a.log.Warn("read listeners", "err", err)
	}
	a.l7mu.Lock()
	l7s := a.l7Stats
	a.l7mu.Unlock()
	s := Stats{
		L7: l7s, DNSNames: a.names.Len(), DNSNamesEvicted: a.names.Evicted(),
		DropReasons: reasons, Listeners: listeners,
		Kernel: kc, Table: a.table.Stats(), Hooks: a.dp.Hooks(),
		TCPSockets: kc.TCPEntries(), UDPConversations: udp, TCPCapacity: tcpCap, UDPCapacity: udpCap,
	}
	a.mu.Lock()
	prev := a.snap
	a.mu.Unlock()
	// The refused map is walked only when a refusal was counted since.
	s.Refusals = prev.Refusals
	if kc.TCPCgroupQuota != prev.Kernel.TCPCgroupQuota || kc.UDPCgroupQuota != prev.Kernel.UDPCgroupQuota {
		if s.Refusals, err = a.dp.Refusals(); err != nil {
			a.log.Warn("read refused cgroups", "err", err)
		}
	}
	a.mu.Lock()
	a.snap = s
	a.mu.Unlock()
	a.stats.ticks.Add(1)
	a.ready.Store(true)
}

func monotonicNow() uint64 {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return uint64(ts.Nano())
}
