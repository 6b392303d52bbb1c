package datapath

import (
	"errors"
	"fmt"
	"log/slog"
	"math/bits"
	"os"
	"sort"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/rlimit"

	"github.com/flowlens/flowlens/internal/flow"
)

// Config sizes the kernel side. Zero values take the defaults.
type Config struct {
	TCPSockets int // live TCP sockets tracked in the kernel
	UDPFlows   int // UDP conversations counted in the kernel
	// RingBytes is the ring buffer for socket end events, a power of two;
	// 0 sizes it by TCPSockets (ringBytesFor).
	RingBytes int
	// TCPPerCgroup and UDPPerCgroup bound what one cgroup may hold of
	// TCPSockets and UDPFlows, so a noisy pod cannot fill the node-wide
	// maps for every other. 0 takes a quarter of the map; -1 is no limit.
	TCPPerCgroup int
	UDPPerCgroup int
	CgroupMount  string // cgroup2 directory the cgroup programs attach to; "" skips them
	// SkipDrops leaves the drop hook (tp_btf/kfree_skb) unattached: to
	// measure what it costs, or where its cost is not wanted.
	SkipDrops bool
	// L7CaptureBytes is how much of each message an L7 sample keeps
	// (at most L7MaxCapture); negative switches L7 capture off.
	L7CaptureBytes int
	// L7BudgetBytes bounds what L7 samples (with their headers) may move
	// per second on the node; past it samples are not taken, counted.
	L7BudgetBytes int
	L7RingBytes   int // ring buffer for L7 samples; a power of two
}

// L7MaxCapture is the most of a message an L7 sample can hold.
const L7MaxCapture = int(unsafe.Sizeof(flowlensL7Event{}.Data))

// DefaultConfig is what `flowlens up` uses unless told otherwise.
func DefaultConfig() Config {
	return Config{TCPSockets: 65536, UDPFlows: 65536,
		L7CaptureBytes: 256, L7BudgetBytes: 16 << 20, L7RingBytes: 4 << 20}
}

// ringBytesFor sizes the end-event ring by the sockets tracked: 16 bytes a
// socket (an event is 200 with its header) rounded up to a power of two, at
// least 2 MiB. The ring is what absorbs a close storm while the agent's
// reader waits for a CPU; when the load holds every core (a million held
// connections closing at once on two cores) the reader can wait seconds.
// The least is ≈10,000 events, 0.65 s of the bench's 100k burst closing
// ≈16,000 sockets a second on two busy cores; more is resident in the
// agent's RSS too, as the reader maps it (issue 17). 2 MiB up to 131,072 sockets, 32 MiB
// for two million, whose sockets hold ≈20 GiB of kernel memory themselves
// and tcp_socks ≈600 MiB.
func ringBytesFor(sockets int) int {
	const least = 2 << 20
	want := 16 * sockets
	if want <= least {
		return least
	}
	return 1 << bits.Len(uint(want-1))
}

func (c *Config) defaults() {
	d := DefaultConfig()
	if c.TCPSockets <= 0 {
		c.TCPSockets = d.TCPSockets
	}
	if c.UDPFlows <= 0 {
		c.UDPFlows = d.UDPFlows
	}
	if c.RingBytes <= 0 {
		c.RingBytes = ringBytesFor(c.TCPSockets)
	}
	if c.L7CaptureBytes == 0 {
		c.L7CaptureBytes = d.L7CaptureBytes
	}
	if c.L7BudgetBytes <= 0 {
		c.L7BudgetBytes = d.L7BudgetBytes
	}
	if c.L7RingBytes <= 0 {
		c.L7RingBytes = d.L7RingBytes
	}
	if c.TCPPerCgroup == 0 {
		c.TCPPerCgroup = c.TCPSockets / 4
	}
	if c.UDPPerCgroup == 0 {
		c.UDPPerCgroup = c.UDPFlows / 4
	}
}

// share is a per-cgroup limit as the kernel side takes it: 0 is none.
func share(n int) uint32 {
	if n < 0 {
		return 0
	}
	return uint32(n)
}

// Validate reports a configuration the kernel would refuse.
func (c Config) Validate() error {
	for _, r := range []struct {
		what string
		n    int
	}{{"ring buffer", c.RingBytes}, {"L7 ring buffer", c.L7RingBytes}} {
		if r.n > 0 && r.n&(r.n-1) != 0 {
			return fmt.Errorf("%s size %d is not a power of two", r.what, r.n)
		}
	}
	if c.L7CaptureBytes > L7MaxCapture {
		return fmt.Errorf("L7 capture of %d bytes exceeds the sample's %d", c.L7CaptureBytes, L7MaxCapture)
	}
	if c.TCPPerCgroup > 0 && c.TCPSockets > 0 && c.TCPPerCgroup > c.TCPSockets {
		return fmt.Errorf("TCP sockets per cgroup (%d) exceed the TCP socket map (%d)", c.TCPPerCgroup, c.TCPSockets)
	}
	if c.UDPPerCgroup > 0 && c.UDPFlows > 0 && c.UDPPerCgroup > c.UDPFlows {
		return fmt.Errorf("UDP conversations per cgroup (%d) exceed the UDP map (%d)", c.UDPPerCgroup, c.UDPFlows)
	}
	return nil
}

// Hook is one program and where it is attached.
type Hook struct {
	Program  string
	Target   string // tracepoint name or cgroup path
	Attached bool
	Reason   string // why not attached

	attach ebpf.AttachType
}

// Datapath owns the loaded programs, their links and the ring buffer reader.
type Datapath struct {
	log   *slog.Logger
	coll  *ebpf.Collection
	maps  flowlensMaps
	vars  flowlensVariables
	links []link.Link
	walk  *ebpf.Program // iter/tcp; nil where the kernel lacks it
	// readListeners iterates the listeners map; nil where the kernel
	// lacks map element iterators.
	readListeners *ebpf.Program
	ring          *ringReader
	l7ring        *ringReader // nil: L7 capture off
	uprobes       map[string]*ebpf.Program
	hooks         []Hook
	touched       *touched   // nil: the kernel cannot mark changed sockets
	udp           *udpReader // nil: the kernel cannot iterate map elements
	// noBarrier is set once the kernel refused the wait for running
	// programs (membarrier with nohz_full): reads go on without it.
	noBarrier bool
	comms     comms

	l7ev       flowlensL7Event
	l7wake     *os.File // the L7 ring in Go's poller (l7.go: WaitL7)
	endWake    *os.File // the events ring in Go's poller (ReadEnd)
	tcpKeys    []uint64
	tcpVals    []flowlensTcpState
	udpKeys    []flowlensUdpKey
	udpVals    []flowlensUdpStats
	udpLoaded  []flowlensUdpKey        // keys of the last ChangedUDP result
	udpRead    []flowlensUdpStats      // and their values, in the same order
	udpEntries int                     // udp_flows entries at the last ChangedUDP
	udpShare   uint32                  // per-cgroup UDP share; 0: none
	reasons    [dropReasonSlots]string // drop_reasons slot → name
	dropKeys   []flowlensDropKey
	dropVals   []uint64
}

// Open loads, configures and attaches the programs. Hooks the kernel lacks
// are skipped and logged; the datapath fails only if nothing useful attaches.
func Open(cfg Config, log *slog.Logger) (*Datapath, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.defaults()
	if err := rlimit.RemoveMemlock(); err != nil {
		return nil, fmt.Errorf("remove memlock limit (needs root, or CAP_BPF): %w", err)
	}
	if cfg.CgroupMount != "" {
		if err := checkCgroup2(cfg.CgroupMount); err != nil {
			return nil, err
		}
	}
	spec, err := loadFlowlens()
	if err != nil {
		return nil, fmt.Errorf("load eBPF spec: %w", err)
	}
	spec.Maps["tcp_socks"].MaxEntries = uint32(cfg.TCPSockets)
	// A set holds at most the sockets of tcp_socks, and those of them
	// that left it within one interval.
	spec.Maps["touched0"].MaxEntries = uint32(cfg.TCPSockets)
	spec.Maps["touched1"].MaxEntries = uint32(cfg.TCPSockets)
	spec.Maps["udp_flows"].MaxEntries = uint32(cfg.UDPFlows)
	// Open UDP sockets, each holding at least one conversation while it
	// sends or receives.
	spec.Maps["udp_socks"].MaxEntries = uint32(cfg.UDPFlows)
	// Conversations ended between two reads. An eighth of udp_flows (8,192
	// UDP sockets closed within an interval by default): preallocated, it
	// would hold 12.5 MiB of kernel memory at udp_flows' size, and one that
	// does not fit loses nothing, it stays in udp_flows and is released when
	// idle, as before udp_ended.
	spec.Maps["udp_ended"].MaxEntries = uint32(max(cfg.UDPFlows/8, 1024))
	spec.Maps["events"].MaxEntries = uint32(cfg.RingBytes)
	spec.Maps["l7_events"].MaxEntries = uint32(cfg.L7RingBytes)
	cpus, err := ebpf.PossibleCPU()
	if err != nil {
		return nil, fmt.Errorf("count CPUs: %w", err)
	}
	for name, v := range map[string]any{
		"self_pid":         uint32(os.Getpid()),
		"tcp_per_cgroup":   share(cfg.TCPPerCgroup),
		"udp_per_cgroup":   share(cfg.UDPPerCgroup),
		"l7_capture_bytes": uint32(max(cfg.L7CaptureBytes, 0)),
		// The budget is kept per CPU, so that taking it needs no lock.
		"l7_budget_bytes": uint64(cfg.L7BudgetBytes / cpus),
		"l7_wakeup_bytes": uint64(cfg.L7RingBytes / 4),
	} {
		if err := spec.Variables[name].Set(v); err != nil {
			return nil, fmt.Errorf("set %s: %w", name, err)
		}
	}
	// A quarter full: room for the agent to wake up and drain before
	// anything is dropped, and no wakeup at all in a quiet interval.
	if err := spec.Variables["wakeup_bytes"].Set(uint64(cfg.RingBytes / 4)); err != nil {
		return nil, fmt.Errorf("set wakeup_bytes: %w", err)
	}

	d := &Datapath{log: log, udpShare: share(cfg.UDPPerCgroup)}
	defer kernelBTF.release()
	if err := requireTracingHelpers(); err != nil {
		return nil, err
	}
	d.hooks = plan(spec, cfg.CgroupMount, kernelHasType, kernelTracepointArgs)
	for i := range d.hooks {
		if h := &d.hooks[i]; h.Program == dropProgram && h.Attached && cfg.SkipDrops {
			h.Attached, h.Reason = false, "drops switched off"
		}
	}
	d.reasons = dropReasonNames(kernelDropReasons)
	for _, h := range d.hooks {
		if !h.Attached {
			delete(spec.Programs, h.Program)
		}
	}

	d.coll, err = ebpf.NewCollectionWithOptions(spec, ebpf.CollectionOptions{})
	if err != nil {
		var verr *ebpf.VerifierError
		if errors.As(err, &verr) {
			log.Error("verifier rejected a program", "log", fmt.Sprintf("%+v", verr))
		}
		return nil, fmt.Errorf("load eBPF objects: %w", err)
	}
	if err := d.coll.Assign(&d.maps); err != nil {
		d.Close()
		return nil, fmt.Errorf("assign maps: %w", err)
	}
	if err := d.coll.Assign(&d.vars); err != nil {
		d.Close()
		return nil, fmt.Errorf("assign variables: %w", err)
	}
	if err := d.attach(cfg.CgroupMount); err != nil {
		d.Close()
		return nil, err
	}
	if err := d.openTouched(); err != nil {
		d.Close()
		return nil, err
	}
	if err := d.openUDPReader(); err != nil {
		d.Close()
		return nil, err
	}
	if d.ring, err = newRingReader(d.maps.Events); err != nil {
		d.Close()
		return nil, fmt.Errorf("open the end-event ring: %w", err)
	}
	if d.endWake, err = pollable(d.maps.Events, "events"); err != nil {
		d.Close()
		return nil, err
	}
	if cfg.L7CaptureBytes > 0 {
		if d.l7ring, err = newRingReader(d.maps.L7Events); err != nil {
			d.Close()
			return nil, fmt.Errorf("open the L7 ring: %w", err)
		}
		if d.l7wake, err = pollable(d.maps.L7Events, "l7_events"); err != nil {
			d.Close()
			return nil, err
		}
	}
	return d, nil
}

func (d *Datapath) attach(cgroupMount string) error {
	for i := range d.hooks {
		h := &d.hooks[i]
		if !h.Attached {
			d.log.Warn("hook not available on this kernel", "program", h.Program, "target", h.Target, "reason", h.Reason)
			continue
		}
		prog := d.coll.Programs[h.Program]
		switch {
		case prog.Type() == ebpf.Kprobe:
			// Uprobes: attached to each TLS library found, by tlsprobe.
			if d.uprobes == nil {
				d.uprobes = make(map[string]*ebpf.Program)
			}
			d.uprobes[h.Program] = prog
			continue
		case h.attach == ebpf.AttachTraceIter && h.Program == "walk_tcp":
			// Run on demand by WalkTCP, not attached.
			d.walk = prog
			continue
		case h.attach == ebpf.AttachTraceIter && h.Program == "read_touched":
			// Attached to each set by openTouched.
			continue
		case h.attach == ebpf.AttachTraceIter && h.Program == "read_udp":
			// Attached to udp_flows by openUDPReader.
			continue
		case h.attach == ebpf.AttachTraceIter:
			// Run on demand by Listeners.
			d.readListeners = prog
			continue
		}
		l, err := attachHook(prog, *h, cgroupMount)
		if err != nil {
			return err
		}
		d.links = append(d.links, l)
	}
	if len(d.links) == 0 {
		return errors.New("no eBPF hook could be attached")
	}
	return nil
}

// attachHook links a tracepoint or cgroup program to its hook.
func attachHook(prog *ebpf.Program, h Hook, cgroupMount string) (link.Link, error) {
	var (
		l   link.Link
		err error
	)
	switch prog.Type() {
	case ebpf.Tracing:
		l, err = link.AttachTracing(link.TracingOptions{Program: prog, AttachType: ebpf.AttachTraceRawTp})
	case ebpf.CGroupSKB, ebpf.CGroupSockAddr, ebpf.CGroupSock:
		l, err = link.AttachCgroup(link.CgroupOptions{Path: cgroupMount, Attach: h.attach, Program: prog})
	default:
		err = fmt.Errorf("unexpected program type %s", prog.Type())
	}
	if err != nil {
		return nil, fmt.Errorf("attach %s to %s: %w", h.Program, h.Target, err)
	}
	return l, nil
}

// Hooks reports what was attached and what was skipped.
func (d *Datapath) Hooks() []Hook { return d.hooks }

// Close detaches every program and frees the maps. Links are not pinned, so
// nothing stays attached after the agent exits, even if Close never runs.
func (d *Datapath) Close() error {
	var errs []error
	if d.ring != nil {
		errs = append(errs, d.ring.close())
	}
	if d.l7ring != nil {
		errs = append(errs, d.l7ring.close())
	}
	if d.l7wake != nil {
		errs = append(errs, d.l7wake.Close())
	}
	if d.endWake != nil {
		errs = append(errs, d.endWake.Close())
	}
	for _, l := range d.links {
		errs = append(errs, l.Close())
	}
	d.links = nil
	if d.touched != nil {
		d.touched.close()
		d.touched = nil
	}
	if d.udp != nil {
		errs = append(errs, d.udp.iter.Close())
		d.udp = nil
	}
	if d.coll != nil {
		d.coll.Close()
	}
	return errors.Join(errs...)
}

// ErrTimeout is returned by ReadEnd when the deadline passes with no event.
var ErrTimeout = os.ErrDeadlineExceeded

// ReadEnd returns the next TCP socket end event, waiting for one until
// deadline (ErrTimeout). The kernel wakes the reader only once a quarter of
// the ring is full: with less waiting, ReadEnd returns at the deadline.
func (d *Datapath) ReadEnd(deadline time.Time) (flow.TCPEnd, error) {
	raw, err := readRing(d.ring, d.endWake, deadline)
	if err != nil {
		return flow.TCPEnd{}, err
	}
	return d.decodeEnd(raw)
}

// readRing returns r's next record, waiting for the kernel to wake wake's
// readers until deadline (ErrTimeout): a ring is looked at once more when
// the wait ends, as the kernel wakes its readers only once it is a quarter
// full.
func readRing(r *ringReader, wake *os.File, deadline time.Time) ([]byte, error) {
	for {
		raw, err := r.next()
		if raw != nil || err != nil {
			return raw, err
		}
		if !time.Now().Before(deadline) {
			return nil, ErrTimeout
		}
		if err := waitReadable(wake, deadline); err != nil && !errors.Is(err, ErrTimeout) {
			return nil, err
		}
	}
}

// WaitEnd blocks until the kernel wakes the end-event ring's readers (once
// a quarter of it is full), deadline passes (ErrTimeout; the zero time is
// none) or Close (ringbuf.ErrClosed). It reads nothing: ReadEnd does, and
// ReadEnd with the zero deadline never waits.
func (d *Datapath) WaitEnd(deadline time.Time) error { return waitReadable(d.endWake, deadline) }

// Pending reports the bytes waiting in the ring buffer.
func (d *Datapath) Pending() int { return d.ring.available() }

// decodeEnd turns a ring-buffer record into an end event. A record the
// kernel side could not have written (wrong size, unknown kind, role or
// address family) is an error: the caller counts it and reads on.
func (d *Datapath) decodeEnd(raw []byte) (flow.TCPEnd, error) {
	var ev flowlensConnEvent
	size := int(unsafe.Sizeof(ev))
	if len(raw) < size {
		return flow.TCPEnd{}, fmt.Errorf("short ring buffer record: %d bytes, want %d", len(raw), size)
	}
	// Copy into an aligned value: the sample is only guaranteed to be
	// 8-byte aligned by the kernel, not by every caller.
	copy(unsafe.Slice((*byte)(unsafe.Pointer(&ev)), size), raw)
	kind := flowlensEventKind(ev.Kind)
	if kind != flowlensEventKindEVENT_CLOSE && kind != flowlensEventKindEVENT_CONNECT_FAIL {
		return flow.TCPEnd{}, fmt.Errorf("ring buffer record of unknown kind %d", ev.Kind)
	}
	if err := checkState(&ev.State); err != nil {
		return flow.TCPEnd{}, fmt.Errorf("ring buffer record: %w", err)
	}
	return flow.TCPEnd{
		Socket: d.tcpSocket(&ev.State),
		EndNS:  ev.State.EndNs,
		Failed: kind == flowlensEventKindEVENT_CONNECT_FAIL,
		Errno:  ev.State.SkErr,
	}, nil
}

// checkState rejects socket state the kernel side never writes.
func checkState(s *flowlensTcpState) error {
	if f := s.Tuple.Family; f != afInet && f != afInet6 {
		return fmt.Errorf("address family %d", f)
	}
	if r := flowlensRole(s.Role); r > flowlensRoleROLE_SERVER {
		return fmt.Errorf("role %d", s.Role)
	}
	return nil
}

func (d *Datapath) tcpSocket(s *flowlensTcpState) flow.TCPSocket {
	local, remote := tuple(&s.Tuple)
	return flow.TCPSocket{
		Cookie:        s.Cookie,
		Local:         local,
		Remote:        remote,
		Owner:         d.owner(&s.Owner),
		Role:          flow.Role(s.Role),
		Established:   s.Established != 0,
		Closed:        s.EndNs != 0,
		Adopted:       s.Adopted != 0,
		StartNS:       s.StartNs,
		EstablishedNS: s.EstablishedNs,
		SYNRetrans:    s.SynRetrans,
		BytesSent:     s.BytesSent,
		BytesRecv:     s.BytesRecv,
		// Modular: the kernel's counters are 32 bits and may wrap
		// between adoption and now.
		SegsOut:    s.SegsOut - s.BaseSegsOut,
		SegsIn:     s.SegsIn - s.BaseSegsIn,
		Retrans:    s.Retrans - s.BaseRetrans,
		RSTSent:    s.RstSent,
		RSTRecv:    s.RstRecv,
		SRTTMicros: s.SrttUs,
	}
}

func (d *Datapath) owner(o *flowlensOwner) flow.Owner {
	return flow.Owner{PID: o.Pid, Netns: o.Netns, CgroupID: o.Cgroup, Command: d.comms.intern(o.Comm)}
}

// batchSize bounds each batch syscall; hash maps need room for a bucket.
const batchSize = 4096

// TCPSockets appends every TCP socket the kernel tracks to dst.
func (d *Datapath) TCPSockets(dst []flow.TCPSocket) ([]flow.TCPSocket, error) {
	if d.tcpKeys == nil {
		d.tcpKeys = make([]uint64, batchSize)
		d.tcpVals = make([]flowlensTcpState, batchSize)
	}
	var cursor ebpf.MapBatchCursor
	for {
		n, err := d.maps.TcpSocks.BatchLookup(&cursor, d.tcpKeys, d.tcpVals, nil)
		for i := range n {
			dst = append(dst, d.tcpSocket(&d.tcpVals[i]))
		}
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return dst, nil
		}
		if err != nil {
			return dst, fmt.Errorf("read tcp_socks: %w", err)
		}
	}
}

func (d *Datapath) conversation(k *flowlensUdpKey, v *flowlensUdpStats) flow.UDPConversation {
	local, remote := tuple(&k.Tuple)
	return flow.UDPConversation{
		Cookie: k.Cookie, Local: local, Remote: remote,
		Owner:     d.owner(&v.Owner),
		Initiator: v.Initiator != 0,
		FirstNS:   v.FirstNs, LastNS: v.LastNs,
		TxBytes: v.TxBytes, RxBytes: v.RxBytes,
		TxDatagrams: v.TxDatagrams, RxDatagrams: v.RxDatagrams,
	}
}

// allUDP appends every UDP conversation the kernel counts to dst.
func (d *Datapath) allUDP(dst []flow.UDPConversation) ([]flow.UDPConversation, error) {
	if d.udpKeys == nil {
		d.udpKeys = make([]flowlensUdpKey, batchSize)
		d.udpVals = make([]flowlensUdpStats, batchSize)
	}
	var cursor ebpf.MapBatchCursor
	for {
		n, err := d.maps.UdpFlows.BatchLookup(&cursor, d.udpKeys, d.udpVals, nil)
		for i := range n {
			dst = d.loadedUDP(dst, &d.udpKeys[i], &d.udpVals[i])
		}
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			d.udpEntries = len(dst)
			return dst, nil
		}
		if err != nil {
			return dst, fmt.Errorf("read udp_flows: %w", err)
		}
	}
}

// DeleteUDP releases the kernel entries of the conversations at the given
// indexes of the last ChangedUDP result, and appends to final what each
// entry held when it was deleted (in idx's order; a datagram may have
// landed since the read). It then takes them off their cgroups' counts,
// for the per-cgroup share.
func (d *Datapath) DeleteUDP(idx []int, final []flow.UDPConversation) ([]flow.UDPConversation, error) {
	var errs []error
	freed := map[uint64]uint32{}
	for _, i := range idx {
		k := &d.udpLoaded[i]
		var v flowlensUdpStats
		err := d.maps.UdpFlows.LookupAndDelete(k, &v)
		if errors.Is(err, ebpf.ErrNotSupported) {
			// Before Linux 5.14: a datagram between the read and the
			// delete is lost with the entry.
			err = d.maps.UdpFlows.Delete(k)
			v = d.udpRead[i]
		}
		switch {
		case err == nil:
			if v.Cgroup != 0 {
				freed[v.Cgroup]++
			}
		case errors.Is(err, ebpf.ErrKeyNotExist):
			v = d.udpRead[i]
		default:
			errs = append(errs, err)
			v = d.udpRead[i]
		}
		final = append(final, d.conversation(k, &v))
	}
	if err := errors.Join(errs...); err != nil {
		return final, fmt.Errorf("delete udp_flows: %w", err)
	}
	if d.udpShare == 0 {
		return final, nil
	}
	return final, d.uncharge(freed)
}

// uncharge takes the conversations just deleted off their cgroups' counts
// in udp_usage, which the kernel side adds to as it creates them. A count
// the kernel side adds to between this read and write loses that entry:
// its cgroup may then hold one more than its share, never fewer. A count
// down to zero goes, so that the map holds only cgroups with conversations.
func (d *Datapath) uncharge(freed map[uint64]uint32) error {
	var errs []error
	for cg, n := range freed {
		var have uint32
		err := d.maps.UdpUsage.Lookup(cg, &have)
		switch {
		case err != nil:
		case have <= n:
			err = d.maps.UdpUsage.Delete(cg)
		default:
			err = d.maps.UdpUsage.Put(cg, have-n)
		}
		if err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("write udp_usage: %w", err)
	}
	return nil
}

// Counters are the kernel side's own loss and activity counters.
type Counters struct {
	RingbufFull     uint64 // end events not delivered
	TCPMapFull      uint64 // sockets not tracked
	UDPMapFull      uint64 // datagrams not counted
	ListenerMapFull uint64
	UDPUnparsed     uint64
	Events          uint64 // end events submitted
	TCPCgroupQuota  uint64 // sockets not tracked: their cgroup held its share
	UDPCgroupQuota  uint64 // datagrams not counted: their cgroup held its share
	Adopted         uint64 // sockets adopted already established
	// DropsUnattributed are drops counted by reason only: no inet socket
	// and no IPv4/IPv6 TCP/UDP header to name a flow by.
	DropsUnattributed uint64
	L7Samples         uint64 // L7 samples submitted
	L7OverBudget      uint64 // L7 samples not taken: over the per-second budget
	L7RingFull        uint64 // L7 samples lost: their ring was full
	// L7Paired counts TCP connections whose two ends are on this node,
	// sampled on the client's end for both.
	L7Paired uint64
	// TLSUnattributed is TLS plaintext seen with no tracked socket to
	// put it on.
	TLSUnattributed uint64
	// TouchedFull counts changes not marked for the agent's read: it
	// must read the whole map to find them.
	TouchedFull uint64
	// TCPTracked and TCPUntracked count tcp_socks entries made and
	// deleted since the start.
	TCPTracked, TCPUntracked uint64
}

// TCPEntries is how many entries tcp_socks holds, from the counts of those
// made and deleted (read CPU by CPU, not at one instant).
func (c Counters) TCPEntries() int {
	if c.TCPUntracked > c.TCPTracked {
		return 0
	}
	return int(c.TCPTracked - c.TCPUntracked)
}

// Counters sums the per-CPU counters.
func (d *Datapath) Counters() (Counters, error) {
	var c Counters
	fields := map[flowlensCounter]*uint64{
		flowlensCounterCNT_RINGBUF_FULL:      &c.RingbufFull,
		flowlensCounterCNT_TCP_MAP_FULL:      &c.TCPMapFull,
		flowlensCounterCNT_UDP_MAP_FULL:      &c.UDPMapFull,
		flowlensCounterCNT_LISTENER_MAP_FULL: &c.ListenerMapFull,
		flowlensCounterCNT_UDP_UNPARSED:      &c.UDPUnparsed,
		flowlensCounterCNT_EVENTS:            &c.Events,
		flowlensCounterCNT_TCP_CGROUP_QUOTA:  &c.TCPCgroupQuota,
		flowlensCounterCNT_UDP_CGROUP_QUOTA:  &c.UDPCgroupQuota,
		flowlensCounterCNT_ADOPTED:           &c.Adopted,
		flowlensCounterCNT_DROP_UNATTRIBUTED: &c.DropsUnattributed,
		flowlensCounterCNT_L7SAMPLES:         &c.L7Samples,
		flowlensCounterCNT_L7BUDGET:          &c.L7OverBudget,
		flowlensCounterCNT_L7RING_FULL:       &c.L7RingFull,
		flowlensCounterCNT_L7PAIRED:          &c.L7Paired,
		flowlensCounterCNT_TLS_UNATTRIBUTED:  &c.TLSUnattributed,
		flowlensCounterCNT_TOUCHED_FULL:      &c.TouchedFull,
		flowlensCounterCNT_TCP_TRACKED:       &c.TCPTracked,
		flowlensCounterCNT_TCP_UNTRACKED:     &c.TCPUntracked,
	}
	var perCPU []uint64
	for idx, dst := range fields {
		if err := d.maps.Counters.Lookup(uint32(idx), &perCPU); err != nil {
			return c, fmt.Errorf("read counter %d: %w", idx, err)
		}
		for _, v := range perCPU {
			*dst += v
		}
	}
	return c, nil
}

// MapCapacity reports the size limits of the tracked-socket maps.
func (d *Datapath) MapCapacity() (tcp, udp uint32) {
	return d.maps.TcpSocks.MaxEntries(), d.maps.UdpFlows.MaxEntries()
}

// Refusal is what the kernel side refused one cgroup for holding its share.
type Refusal struct {
	Cgroup uint64
	TCP    uint64 // sockets not tracked
	UDP    uint64 // datagrams not counted
}

// Refusals lists the cgroups refused so far (the kernel keeps the most
// recently refused 1,024), most refused first.
func (d *Datapath) Refusals() ([]Refusal, error) {
	var (
		out []Refusal
		cg  uint64
		v   flowlensCgroupRefused
	)
	it := d.maps.Refused.Iterate()
	for it.Next(&cg, &v) {
		out = append(out, Refusal{Cgroup: cg, TCP: v.Tcp, UDP: v.Udp})
	}
	if err := it.Err(); err != nil {
		return out, fmt.Errorf("read refused: %w", err)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].TCP+out[i].UDP > out[j].TCP+out[j].UDP })
	return out, nil
}
