package datapath

import (
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/ringbuf"
	"golang.org/x/sys/unix"
)

// Both rings are read without blocking (ringReader) and waited for in Go's
// poller, parked: cilium/ebpf's ringbuf.Reader waiting holds a thread in
// epoll_wait, and a goroutine that enters a blocking system call
// ten or more times a second keeps the runtime's sysmon thread waking every
// 20 µs — a tenth of the agent's CPU at 5,000 connections/s, a quarter
// under HTTP load with L7.

// pollable opens a ring buffer map once more, non-blocking, as a file in
// Go's poller, for waitReadable.
func pollable(m *ebpf.Map, name string) (*os.File, error) {
	fd, err := unix.FcntlInt(uintptr(m.FD()), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("duplicate the %s ring's descriptor: %w", name, err)
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("make the %s ring's descriptor non-blocking: %w", name, err)
	}
	return os.NewFile(uintptr(fd), name), nil
}

// waitReadable blocks until the kernel wakes the ring's readers, deadline
// passes (ErrTimeout; the zero time is none) or the file is closed
// (ringbuf.ErrClosed). It reads nothing.
func waitReadable(f *os.File, deadline time.Time) error {
	err := f.SetReadDeadline(deadline)
	if err == nil {
		var rc syscall.RawConn
		if rc, err = f.SyscallConn(); err == nil {
			woke := false
			err = rc.Read(func(uintptr) bool {
				done := woke // called once before waiting, once after each wakeup
				woke = true
				return done
			})
		}
	}
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ErrTimeout):
		return ErrTimeout
	}
	// Closed before or while it waited: a raw read on a closed file says
	// so in an unexported error; Stat's is os.ErrClosed.
	if _, serr := f.Stat(); errors.Is(serr, os.ErrClosed) {
		return fmt.Errorf("wait for %s: %w", f.Name(), ringbuf.ErrClosed)
	}
	return fmt.Errorf("wait for %s: %w", f.Name(), err)
}

// waitPrograms waits until every program running now has returned. For
// TouchedTCP, every one that may have read the old touch_gen, so that the
// set the reader empties gets no mark after the read: a socket marked there
// and changed again would otherwise look marked, be in no set, and wait for
// its end (or a whole-map read) to be reported. For ChangedUDP, every one
// that counted into a conversation before the read's start. Programs run
// under RCU, and MEMBARRIER_CMD_GLOBAL waits for an RCU grace period (synchronize_rcu); it costs wall time, not CPU.
func (d *Datapath) waitPrograms() {
	if d.noBarrier {
		return
	}
	const membarrierCmdGlobal = 1
	if _, _, errno := unix.Syscall(unix.SYS_MEMBARRIER, membarrierCmdGlobal, 0, 0); errno != 0 {
		d.noBarrier = true
		d.log.Warn("cannot wait for running eBPF programs (membarrier): a socket or UDP conversation changed while the agent reads may be reported only at its next change, its end or the next whole-map read (UDP: its release)",
			"err", errno)
	}
}
