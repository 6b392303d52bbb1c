package tlsprobe

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// Programs are the kernel programs of bpf/tls.h, loaded by the datapath.
type Programs struct {
	// OpenSSL: SSL_write/SSL_read entries and their shared uretprobe.
	SSLWriteEntry, SSLReadEntry, SSLReturn *ebpf.Program
	// OpenSSL 1.1.1+: SSL_write_ex/SSL_read_ex entries and uretprobe.
	SSLWriteExEntry, SSLReadExEntry, SSLExReturn *ebpf.Program
	// Go crypto/tls: (*Conn).Write/Read entries, and the program put on
	// each of their RET instructions.
	GoWriteEntry, GoReadEntry, GoReturn *ebpf.Program
	// Go crypto/tls: (*Conn).handshakeContext's entry and RETs.
	GoHandshakeEntry, GoHandshakeReturn *ebpf.Program
}

// ProgramsOf picks the programs of bpf/tls.h out of a collection's
// programs by their C names (datapath's Uprobes()).
func ProgramsOf(progs map[string]*ebpf.Program) (Programs, error) {
	var p Programs
	var missing []string
	for name, field := range map[string]**ebpf.Program{
		"ssl_write_entry":         &p.SSLWriteEntry,
		"ssl_read_entry":          &p.SSLReadEntry,
		"ssl_return":              &p.SSLReturn,
		"ssl_write_ex_entry":      &p.SSLWriteExEntry,
		"ssl_read_ex_entry":       &p.SSLReadExEntry,
		"ssl_ex_return":           &p.SSLExReturn,
		"go_tls_write_entry":      &p.GoWriteEntry,
		"go_tls_read_entry":       &p.GoReadEntry,
		"go_tls_return":           &p.GoReturn,
		"go_tls_handshake_entry":  &p.GoHandshakeEntry,
		"go_tls_handshake_return": &p.GoHandshakeReturn,
	} {
		if *field = progs[name]; *field == nil {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		slices.Sort(missing)
		return Programs{}, fmt.Errorf("TLS uprobe programs not loaded: %s", strings.Join(missing, ", "))
	}
	return p, nil
}

// Kind is a kind of TLS library probed.
type Kind string

const (
	KindOpenSSL Kind = "openssl" // a libssl.so file
	KindGoTLS   Kind = "gotls"   // a Go executable's crypto/tls
)

// Kinds lists every Kind, for metrics' declared labels.
var Kinds = []Kind{KindOpenSSL, KindGoTLS}

// Reason is why a target was not probed.
type Reason string

const (
	ReasonRead        Reason = "read"           // the file could not be opened or read
	ReasonArch        Reason = "arch"           // a Go executable not for amd64
	ReasonGoVersion   Reason = "go_version"     // built by Go before 1.17 (stack ABI), or unknown
	ReasonNoPclntab   Reason = "no_pclntab"     // a Go executable without its function table
	ReasonDisassemble Reason = "disassemble"    // Read or Write could not be decoded
	ReasonNoSymbol    Reason = "no_symbol"      // a libssl without SSL_read and SSL_write
	ReasonAttach      Reason = "attach"         // the kernel refused a uprobe
	ReasonTooMany     Reason = "too_many_files" // past maxFiles; not inspected
)

// Reasons lists every Reason, for metrics' declared labels.
var Reasons = []Reason{ReasonRead, ReasonArch, ReasonGoVersion, ReasonNoPclntab,
	ReasonDisassemble, ReasonNoSymbol, ReasonAttach, ReasonTooMany}

// Stats are the prober's counts since New.
type Stats struct {
	Attached map[Kind]int   // files probed
	Skipped  map[Reason]int // target files not probed
	Uprobes  int            // uprobes attached, over all files
}

const (
	scanEvery = 2 * time.Second // new processes
	fullEvery = 15              // every 15th scan (30 s) rereads every process's maps: dlopen, exec
	maxFiles  = 1 << 16         // files remembered; beyond, new ones are not inspected
)

// hostLibDirs are where a host's libssl lives, probed at the first scan so
// that a process too short-lived for the periodic scan (a curl) is seen:
// a uprobe on a file fires in every process that maps it, later ones too.
// Containers' own libssl are found only once a process maps them.
var hostLibDirs = []string{"/lib", "/lib64", "/usr/lib", "/usr/lib64", "/usr/local/lib",
	"/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu"}

// fileID is a file as the kernel keys uprobes, by device and inode: two
// paths to one file (a symlink, one image layer in two containers) are one
// target, probed once, else each call would be sampled twice.
type fileID struct{ dev, ino uint64 }

// Prober finds the TLS libraries processes use and attaches the kernel
// programs to them, without restarting anything.
type Prober struct {
	progs Programs
	log   *slog.Logger
	proc  string // procfs mount; a field for tests
	root  string // this process's root, where host libraries are when /proc/1/root is not readable

	mu      sync.Mutex
	scans   int
	files   map[fileID]bool  // inspected: true when probed
	pids    map[int]struct{} // processes whose maps were read
	links   []link.Link
	targets Stats
}

// New returns a prober that attaches p; nothing happens before Scan or Run.
func New(p Programs, log *slog.Logger) *Prober {
	return &Prober{
		progs: p,
		log:   log,
		proc:  "/proc",
		root:  "/",
		files: make(map[fileID]bool),
		pids:  make(map[int]struct{}),
		targets: Stats{
			Attached: make(map[Kind]int),
			Skipped:  make(map[Reason]int),
		},
	}
}

// Run scans every scanEvery until ctx ends.
func (p *Prober) Run(ctx context.Context) {
	tick := time.NewTicker(scanEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if err := p.Scan(); err != nil {
			p.log.Warn("tls probe scan", "err", err)
		}
	}
}

// Scan attaches to the TLS libraries of processes started since the last
// scan (every process, on every fullEvery-th scan) and, on the first, of
// the host's library directories. A target that cannot be probed is
// logged once and counted; the error is only for an unreadable procfs.
func (p *Prober) Scan() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.scans == 0 {
		p.skipSelf()
		p.scanHostLibs()
	}
	full := p.scans%fullEvery == 0
	p.scans++

	entries, err := os.ReadDir(p.proc)
	if err != nil {
		return fmt.Errorf("list processes: %w", err)
	}
	live := make(map[int]struct{}, len(entries))
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid <= 0 {
			continue
		}
		live[pid] = struct{}{}
		if _, seen := p.pids[pid]; seen && !full {
			continue
		}
		p.scanProcess(pid)
	}
	p.pids = live
	return nil
}

// Stats returns a copy of the counts.
func (p *Prober) Stats() Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := Stats{Attached: make(map[Kind]int), Skipped: make(map[Reason]int), Uprobes: len(p.links)}
	for k, v := range p.targets.Attached {
		s.Attached[k] = v
	}
	for k, v := range p.targets.Skipped {
		s.Skipped[k] = v
	}
	return s
}

// Close detaches every uprobe, the entries first (attached last), so no
// call is begun that its return probe would not end.
func (p *Prober) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	var errs []error
	for i := len(p.links) - 1; i >= 0; i-- {
		if err := p.links[i].Close(); err != nil {
			errs = append(errs, err)
		}
	}
	p.links = nil
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("detach tls uprobes: %w", err)
	}
	return nil
}

// skipSelf marks the agent's own executable as inspected: its sockets are
// not traffic, and its TLS calls would only cost.
func (p *Prober) skipSelf() {
	p.eachTarget(os.Getpid(), func(kind Kind, open, name string) {
		if id, err := statID(open); err == nil && kind == KindGoTLS {
			p.files[id] = false
		}
	})
}

// scanHostLibs probes the libssl files of the host's library directories,
// seen through init's root (an agent in a container with the host's pid
// namespace), else through its own (an agent on the host, or where init's
// root is not open to it, as in some sandboxes).
func (p *Prober) scanHostLibs() {
	root := filepath.Join(p.proc, "1", "root")
	if _, err := os.ReadDir(root); err != nil {
		p.log.Debug("tls probe: host libraries from this process's root", "err", err)
		root = p.root
	}
	for _, dir := range hostLibDirs {
		libs, _ := filepath.Glob(filepath.Join(root, dir, "libssl.so*"))
		for _, lib := range libs {
			p.inspect(KindOpenSSL, lib, filepath.Join("/", strings.TrimPrefix(lib, root)))
		}
	}
}

func (p *Prober) scanProcess(pid int) {
	p.eachTarget(pid, p.inspect)
}

// eachTarget calls f with the files pid maps that may be targets: its
// executable and its libssl, once each. Each is opened through
// /proc/<pid>/map_files: the file the process maps, whichever mount
// namespace it sees and even when since deleted, and on overlayfs the
// underlying file, which is what uprobes key on.
func (p *Prober) eachTarget(pid int, f func(kind Kind, open, name string)) {
	dir := filepath.Join(p.proc, strconv.Itoa(pid))
	exe, err := os.Readlink(filepath.Join(dir, "exe"))
	if err != nil {
		return // a kernel thread, or gone
	}
	exe = strings.TrimSuffix(exe, " (deleted)")
	file, err := os.Open(filepath.Join(dir, "maps"))
	if err != nil {
		return
	}
	defer file.Close()
	done := make(map[string]bool)
	sc := bufio.NewScanner(file)
	for sc.Scan() {
		m, ok := parseMapsLine(sc.Text())
		if !ok || done[m.path] {
			continue
		}
		open := filepath.Join(dir, "map_files", m.addrs)
		switch {
		case m.path == exe:
			done[m.path] = true
			f(KindGoTLS, open, m.path)
		case isLibSSL(m.path):
			done[m.path] = true
			f(KindOpenSSL, open, m.path)
		}
	}
}

func statID(path string) (fileID, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return fileID{}, fmt.Errorf("stat %s: %w", path, err)
	}
	return fileID{dev: st.Dev, ino: st.Ino}, nil
}

// inspect probes the file at open (a path this process can open: a
// map_files link, a host path) once per file; name is for the logs.
func (p *Prober) inspect(kind Kind, open, name string) {
	id, err := statID(open)
	if err != nil {
		return // the process ended: nothing to probe
	}
	if _, seen := p.files[id]; seen {
		return
	}
	if len(p.files) >= maxFiles {
		p.targets.Skipped[ReasonTooMany]++
		return
	}
	var links []link.Link
	var goVersion string
	switch kind {
	case KindOpenSSL:
		links, err = p.attachOpenSSL(open)
	case KindGoTLS:
		links, goVersion, err = p.attachGo(open)
	}
	if errors.Is(err, errNoTLS) {
		p.files[id] = false
		return
	}
	if err != nil {
		p.files[id] = false
		reason := ReasonAttach
		var se *skipError
		if errors.As(err, &se) {
			reason = se.reason
		}
		p.targets.Skipped[reason]++
		p.log.Warn("tls probe skipped", "kind", kind, "path", name, "reason", reason, "err", err)
		return
	}
	p.files[id] = true
	p.links = append(p.links, links...)
	p.targets.Attached[kind]++
	p.log.Info("tls probe attached", "kind", kind, "path", name, "go_version", goVersion, "uprobes", len(links))
}

// attacher collects one target's uprobes, all or none.
type attacher struct {
	ex    *link.Executable
	links []link.Link
}

func (a *attacher) add(prog *ebpf.Program, symbol string, addr uint64, ret bool) error {
	opts := &link.UprobeOptions{Address: addr}
	attach := a.ex.Uprobe
	if ret {
		attach = a.ex.Uretprobe
	}
	l, err := attach(symbol, prog, opts)
	if err != nil {
		return fmt.Errorf("uprobe %s+%#x: %w", symbol, addr, err)
	}
	a.links = append(a.links, l)
	return nil
}

func (a *attacher) abort() {
	for _, l := range a.links {
		l.Close()
	}
}

// sslFunc is an OpenSSL function with its entry and return programs.
type sslFunc struct {
	symbol      string
	entry, exit *ebpf.Program
	required    bool
}

// attachOpenSSL probes a libssl. Return probes go first: a return without
// its entry is ignored, an entry without its return would leave its call
// in tls_calls.
func (p *Prober) attachOpenSSL(path string) ([]link.Link, error) {
	ex, err := link.OpenExecutable(path)
	if err != nil {
		return nil, skip(ReasonRead, "open: %w", err)
	}
	funcs := []sslFunc{
		{"SSL_write", p.progs.SSLWriteEntry, p.progs.SSLReturn, true},
		{"SSL_read", p.progs.SSLReadEntry, p.progs.SSLReturn, true},
		// Since OpenSSL 1.1.1; neither calls the other.
		{"SSL_write_ex", p.progs.SSLWriteExEntry, p.progs.SSLExReturn, false},
		{"SSL_read_ex", p.progs.SSLReadExEntry, p.progs.SSLExReturn, false},
	}
	a := &attacher{ex: ex}
	for _, f := range funcs {
		err := a.add(f.exit, f.symbol, 0, true)
		if errors.Is(err, link.ErrNoSymbol) && !f.required {
			continue
		}
		if errors.Is(err, link.ErrNoSymbol) {
			a.abort()
			return nil, skip(ReasonNoSymbol, "%w", err)
		}
		if err == nil {
			err = a.add(f.entry, f.symbol, 0, false)
		}
		if err != nil {
			a.abort()
			return nil, err
		}
	}
	return a.links, nil
}

// attachGo probes a Go executable's crypto/tls, if it has one.
func (p *Prober) attachGo(path string) ([]link.Link, string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, "", skip(ReasonRead, "open: %w", err)
	}
	t, err := inspectGo(f)
	f.Close()
	if err != nil {
		return nil, t.goVersion, err
	}
	ex, err := link.OpenExecutable(path)
	if err != nil {
		return nil, t.goVersion, skip(ReasonRead, "open: %w", err)
	}
	a := &attacher{ex: ex}
	type probe struct {
		name        string
		at          goFunc
		entry, exit *ebpf.Program
	}
	funcs := []probe{
		{goWriteFunc, t.write, p.progs.GoWriteEntry, p.progs.GoReturn},
		{goReadFunc, t.read, p.progs.GoReadEntry, p.progs.GoReturn},
	}
	if t.handshake.entry != 0 {
		funcs = append(funcs, probe{goHandshakeFunc, t.handshake, p.progs.GoHandshakeEntry, p.progs.GoHandshakeReturn})
	}
	for _, fn := range funcs {
		for _, ret := range fn.at.rets {
			if err := a.add(fn.exit, "", ret, false); err != nil {
				a.abort()
				return nil, t.goVersion, fmt.Errorf("%s: %w", fn.name, err)
			}
		}
		if err := a.add(fn.entry, "", fn.at.entry, false); err != nil {
			a.abort()
			return nil, t.goVersion, fmt.Errorf("%s: %w", fn.name, err)
		}
	}
	return a.links, t.goVersion, nil
}
