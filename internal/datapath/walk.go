package datapath

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"syscall"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// WalkTCP learns the TCP sockets that existed before the programs were
// attached: listeners, so that connections they accepted keep their server
// role, and live connections, adopted with their counters as a baseline.
// Call it once, after Open. An iter/tcp iterator sees only the network
// namespace it is opened in, so it is opened in every namespace a process
// on this host is in (which needs the host's /proc: hostPID in a pod). It
// reports how many namespaces were walked (none where the kernel lacks the
// iterator) and how many it was not allowed to open.
func (d *Datapath) WalkTCP() (Walk, error) {
	if d.walk == nil {
		return Walk{}, nil
	}
	if err := d.markOwnSockets(); err != nil {
		return Walk{}, err
	}
	it, err := link.AttachIter(link.IterOptions{Program: d.walk})
	if err != nil {
		return Walk{}, fmt.Errorf("attach iter/tcp: %w", err)
	}
	defer it.Close()
	// setns changes the calling thread only: keep this goroutine on it,
	// and if it cannot be put back, let it die with the goroutine rather
	// than serve the runtime in a foreign namespace.
	runtime.LockOSThread()
	home, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		runtime.UnlockOSThread()
		return Walk{}, fmt.Errorf("open own network namespace: %w", err)
	}
	defer home.Close()
	var w Walk
	paths, unreadable := netnsPaths()
	w.Unreadable = unreadable
	var errs []error
	for _, path := range paths {
		if err := walkIn(it, path); err != nil {
			errs = append(errs, err)
			continue
		}
		w.Namespaces++
	}
	if err := unix.Setns(int(home.Fd()), unix.CLONE_NEWNET); err != nil {
		return w, fmt.Errorf("return to own network namespace: %w", err)
	}
	runtime.UnlockOSThread()
	return w, errors.Join(errs...)
}

// Walk is what the start-up walk covered.
type Walk struct {
	Namespaces int // network namespaces walked
	// Unreadable counts processes whose /proc/<pid>/ns/net could not be
	// opened: another user namespace's, or any other's without
	// CAP_SYS_PTRACE. Their namespaces are walked only if another process
	// shares them.
	Unreadable int
}

// walkIn runs the iterator once inside the network namespace at path.
func walkIn(it *link.Iter, path string) error {
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ESRCH) {
			return nil // the process left meanwhile
		}
		return fmt.Errorf("open %s: %w", path, err)
	}
	defer f.Close()
	if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
		return fmt.Errorf("enter %s: %w", path, err)
	}
	r, err := it.Open()
	if err != nil {
		return fmt.Errorf("open iter/tcp in %s: %w", path, err)
	}
	defer r.Close()
	// The program writes nothing; reading to the end runs it over every socket.
	if _, err := io.Copy(io.Discard, r); err != nil {
		return fmt.Errorf("run iter/tcp in %s: %w", path, err)
	}
	return nil
}

// netnsPaths returns one path for each network namespace that a process,
// or a bind mount under /run/netns, holds; the namespaces are told apart by
// inode. It also says how many paths it was not allowed to read: a walk
// that silently skipped them would look complete.
func netnsPaths() (paths []string, unreadable int) {
	seen := map[uint64]bool{}
	add := func(path string) {
		var st unix.Stat_t
		if err := unix.Stat(path, &st); err != nil {
			if errors.Is(err, unix.EACCES) || errors.Is(err, unix.EPERM) {
				unreadable++
			}
			return // or the process left meanwhile
		}
		if seen[st.Ino] {
			return
		}
		seen[st.Ino] = true
		paths = append(paths, path)
	}
	add("/proc/self/ns/net")
	procs, _ := filepath.Glob("/proc/[0-9]*/ns/net")
	for _, p := range procs {
		add(p)
	}
	mounts, _ := filepath.Glob("/run/netns/*")
	for _, p := range mounts {
		add(p)
	}
	return paths, unreadable
}

// markOwnSockets tells the kernel side the cookies of this process's own
// sockets (an API server connection made before the programs were
// attached), so that neither the walk nor a handshake completing later
// takes them for traffic, and its listeners (flowlens up opens its API
// first), so that the connections they accept are not taken for traffic
// either. Sockets opened afterwards are known by the pid.
func (d *Datapath) markOwnSockets() error {
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return fmt.Errorf("list own descriptors: %w", err)
	}
	var netns unix.Stat_t
	if err := unix.Stat("/proc/thread-self/ns/net", &netns); err != nil {
		return fmt.Errorf("read own network namespace: %w", err)
	}
	for _, e := range fds {
		fd, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cookie, err := unix.GetsockoptUint64(fd, unix.SOL_SOCKET, unix.SO_COOKIE)
		if err != nil {
			continue // not a socket, or closed since the listing
		}
		if err := d.maps.SelfSocks.Put(cookie, uint8(1)); err != nil {
			return fmt.Errorf("mark own socket: %w", err)
		}
		if err := d.markOwnListener(fd, uint32(netns.Ino)); err != nil {
			return err
		}
	}
	return nil
}

// markOwnListener enters fd in the listeners map as this process's, if it
// is a TCP listener. The walk counts the socket in (listen_info.sockets
// starts at 0 here); what tells the kernel side the listener is the
// agent's is its owner's pid. By cookie it could not be told: Go listens
// with MPTCP, whose TCP subflow listener, the socket the walk and the
// handshakes see, has a cookie of its own that no descriptor shows.
func (d *Datapath) markOwnListener(fd int, netns uint32) error {
	if on, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ACCEPTCONN); err != nil || on == 0 {
		return nil
	}
	if proto, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_PROTOCOL); err != nil ||
		proto != unix.IPPROTO_TCP && proto != unix.IPPROTO_MPTCP {
		return nil
	}
	key := flowlensListenerKey{Netns: netns}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		return nil // closed since the listing
	}
	switch sa := sa.(type) {
	case *unix.SockaddrInet4:
		key.Port, key.Family = uint16(sa.Port), afInet
	case *unix.SockaddrInet6:
		key.Port, key.Family = uint16(sa.Port), afInet6
	default:
		return nil
	}
	own := flowlensListenInfo{Owner: flowlensOwner{Pid: uint32(os.Getpid()), Netns: netns}}
	err = d.maps.Listeners.Update(&key, &own, ebpf.UpdateNoExist)
	if err != nil && !errors.Is(err, ebpf.ErrKeyExist) {
		return fmt.Errorf("mark own listener on port %d: %w", key.Port, err)
	}
	return nil
}
