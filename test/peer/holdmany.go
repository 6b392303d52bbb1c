package main

// Many held connections, for the benchmark's hold scenarios (bench/hold.go):
// open TCP connections between two namespaces, silent or sending a few
// bytes on command. The server reads every connection from one epoll loop
// (no goroutine or buffer per connection); the client keeps one descriptor
// per connection. Each holds at most RLIMIT_NOFILE's hard limit of them (a
// root without CAP_SYS_RESOURCE cannot raise it): the benchmark runs as
// many pairs as it needs, one server port each. Both are bounded in count
// and time.

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/flowlens/flowlens/test/peer/result"
)

// maxHeld caps the connections one side holds: fs.nr_open's default is
// 1,048,576 descriptors per process.
const maxHeld = 1_040_000

// holdFileSlack is what a peer keeps of its descriptors for itself.
const holdFileSlack = 256

// raiseFileLimit lets the process hold n descriptors besides a few of its
// own, within the hard limit (Go's runtime raised the soft one to it).
func raiseFileLimit(n int) error {
	want := uint64(n) + holdFileSlack
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		return fmt.Errorf("read RLIMIT_NOFILE: %w", err)
	}
	if lim.Cur >= want {
		return nil
	}
	lim.Cur = want
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		return fmt.Errorf("%d connections need RLIMIT_NOFILE %d, the hard limit is %d: run several peers: %w", n, want, lim.Max, err)
	}
	return nil
}

// holdSummary is what tcp-hold-serve prints at the end: Open counts the
// connections that had not ended when it stopped, Rejected those closed at
// once because -max-connections were open.
type holdSummary struct {
	result.Serve
	Open     int64 `json:"open"`
	Rejected int64 `json:"rejected"`
}

// holdServe accepts on -listen, reads every connection to EOF and then
// closes it. On SIGTERM (or after -duration) it
// stops accepting, waits up to -drain for the open connections to end and
// prints what it moved.
func holdServe(args []string) (any, error) {
	fs := flag.NewFlagSet("tcp-hold-serve", flag.ExitOnError)
	listen := fs.String("listen", "", "address to listen on (IPv4:port)")
	maxConns := fs.Int("max-connections", 1000, "connections held at once; more are closed at once and counted as rejected")
	maxTime := fs.Duration("duration", 10*time.Minute, "stop after this long")
	drain := fs.Duration("drain", 10*time.Second, "after the stop, how long to wait for open connections to end")
	_ = fs.Parse(args)
	at, err := netip.ParseAddrPort(*listen)
	if err != nil || !at.Addr().Is4() {
		return nil, fmt.Errorf("-listen %q: need IPv4:port", *listen)
	}
	if err := checkBounds(*maxConns, *maxTime); err != nil {
		return nil, err
	}
	if *maxConns > maxHeld || *drain > time.Minute {
		return nil, fmt.Errorf("-max-connections is capped at %d, -drain at 1m", maxHeld)
	}
	if err := raiseFileLimit(*maxConns); err != nil {
		return nil, err
	}
	ep, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("epoll_create1: %w", err)
	}
	defer unix.Close(ep)
	lfd, err := listenTCP4(at.Addr().As4(), int(at.Port()))
	if err != nil {
		return nil, err
	}
	defer unix.Close(lfd)
	if err := unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, lfd, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(lfd)}); err != nil {
		return nil, fmt.Errorf("epoll_ctl listener: %w", err)
	}
	ctx, cancel := until(*maxTime)
	defer cancel()
	emit(map[string]any{"ready": true})

	s := &holdServer{ep: ep, max: int64(*maxConns), buf: make([]byte, 64<<10)}
	events := make([]unix.EpollEvent, 1024)
	var stopAt time.Time
	for {
		if stopAt.IsZero() && ctx.Err() != nil {
			stopAt = time.Now().Add(*drain)
			_ = unix.EpollCtl(ep, unix.EPOLL_CTL_DEL, lfd, nil)
		}
		if !stopAt.IsZero() && (s.open == 0 || time.Now().After(stopAt)) {
			break
		}
		n, err := unix.EpollWait(ep, events, 100)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("epoll_wait: %w", err)
		}
		for _, ev := range events[:n] {
			if int(ev.Fd) == lfd {
				if err := s.accept(lfd); err != nil {
					return nil, err
				}
			} else {
				s.read(int(ev.Fd))
			}
		}
	}
	return holdSummary{Serve: s.res, Open: s.open, Rejected: s.rejected}, nil
}

func listenTCP4(addr [4]byte, port int) (int, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("socket: %w", err)
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("SO_REUSEADDR: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrInet4{Port: port, Addr: addr}); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("bind port %d: %w", port, err)
	}
	// The backlog is capped by net.core.somaxconn.
	if err := unix.Listen(fd, 65535); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("listen port %d: %w", port, err)
	}
	return fd, nil
}

// holdServer is the epoll loop's state; one goroutine owns it.
type holdServer struct {
	ep             int
	max            int64
	open, rejected int64
	res            result.Serve
	buf            []byte
}

// accept takes every connection the listener has queued.
func (s *holdServer) accept(lfd int) error {
	for {
		fd, _, err := unix.Accept4(lfd, unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
		switch {
		case errors.Is(err, unix.EAGAIN), errors.Is(err, unix.ECONNABORTED), errors.Is(err, unix.EINTR):
			return nil
		case err != nil:
			return fmt.Errorf("accept: %w", err)
		}
		s.res.Connections++
		if s.open >= s.max {
			s.rejected++
			unix.Close(fd)
			continue
		}
		if err := unix.EpollCtl(s.ep, unix.EPOLL_CTL_ADD, fd, &unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP, Fd: int32(fd)}); err != nil {
			unix.Close(fd)
			return fmt.Errorf("epoll_ctl connection: %w", err)
		}
		s.open++
	}
}

// read takes what a connection has and closes it at EOF or on an error.
func (s *holdServer) read(fd int) {
	for {
		n, err := unix.Read(fd, s.buf)
		if n > 0 {
			s.res.BytesIn += int64(n)
			continue
		}
		if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
			return
		}
		unix.Close(fd) // EOF or a reset; closing also leaves the epoll set
		s.open--
		return
	}
}

// holdReady is what tcp-hold-load prints once its connections are open.
type holdReady struct {
	Held        int64   `json:"held"`
	Failed      int64   `json:"failed"`
	BytesOut    int64   `json:"bytes_out"`
	OpenSeconds float64 `json:"open_seconds"`
}

// holdLoad opens -count connections to -addr at -rate per second with
// -concurrency connects in flight, sending -bytes on each. It prints {"ready":true} when it starts
// and a holdReady line once they are open, then obeys one command per stdin
// line: "send" writes -bytes on every connection and answers {"sent":B};
// "close" closes them all at -rate per second and ends with the summary.
// -duration bounds the whole run.
func holdLoad(args []string) (any, error) {
	fs := flag.NewFlagSet("tcp-hold-load", flag.ExitOnError)
	addr := fs.String("addr", "", "server address")
	count := fs.Int("count", 1, "connections to hold")
	size := fs.Int("bytes", 8, "bytes sent on each connection when opened and on each send")
	rate := fs.Float64("rate", 10000, "connects (and closes) per second")
	conc := fs.Int("concurrency", 32, "connects in flight at once")
	maxTime := fs.Duration("duration", 10*time.Minute, "give up after this long")
	_ = fs.Parse(args)
	if *addr == "" {
		return nil, errors.New("-addr is required")
	}
	if err := checkBounds(*count, *maxTime); err != nil {
		return nil, err
	}
	if *count > maxHeld || *rate <= 0 || *size < 0 || *size > 1<<16 {
		return nil, fmt.Errorf("-count is capped at %d, -rate must be positive, -bytes at most 64 KiB", maxHeld)
	}
	if err := raiseFileLimit(*count); err != nil {
		return nil, err
	}
	ctx, cancel := until(*maxTime)
	defer cancel()
	emit(map[string]any{"ready": true})

	var res result.Connect
	payload := make([]byte, *size)
	start := time.Now()
	conns, err := holdOpen(ctx, *addr, *count, *rate, min(max(*conc, 1), 4096), payload, &res)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	if err != nil {
		return nil, err
	}
	res.Seconds = time.Since(start).Seconds()
	emit(holdReady{Held: res.OK, Failed: res.Refused + res.TimedOut + res.Failed, BytesOut: res.BytesOut, OpenSeconds: res.Seconds})

	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(os.Stdin)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	for {
		var cmd string
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("no close command within -duration: %w", ctx.Err())
		case l, ok := <-lines:
			if !ok {
				return nil, errors.New("stdin ended before a close command")
			}
			cmd = l
		}
		switch cmd {
		case "send":
			var sent int64
			for _, c := range conns {
				n, err := c.Write(payload)
				sent += int64(n)
				if err != nil {
					return nil, fmt.Errorf("send: %w", err)
				}
			}
			res.BytesOut += sent
			emit(map[string]int64{"sent": sent})
		case "close":
			pace := newPacer(*rate)
			for i, c := range conns {
				if !pace.wait(ctx) {
					return nil, fmt.Errorf("close: %w", ctx.Err())
				}
				if err := c.Close(); err != nil {
					return nil, fmt.Errorf("close: %w", err)
				}
				conns[i] = nil
			}
			conns = nil
			return res, nil
		default:
			return nil, fmt.Errorf("unknown command %q (send, close)", cmd)
		}
	}
}

// holdOpen makes the connections, returning those that opened; res counts
// them, the failures and the bytes sent.
func holdOpen(ctx context.Context, addr string, count int, rate float64, workers int, payload []byte, res *result.Connect) ([]net.Conn, error) {
	var (
		mu      sync.Mutex
		conns   = make([]net.Conn, 0, count)
		next    atomic.Int64
		sendErr error
		wg      sync.WaitGroup
	)
	pace := newPacer(rate)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// No keep-alive probes: an idle connection stays silent.
			d := net.Dialer{Timeout: 5 * time.Second, KeepAlive: -1}
			for {
				i := next.Add(1) - 1
				if i >= int64(count) || !pace.wait(ctx) {
					return
				}
				c, err := d.DialContext(ctx, "tcp4", addr)
				if err != nil {
					classify(res, err)
					continue
				}
				n, err := c.Write(payload)
				atomic.AddInt64(&res.BytesOut, int64(n))
				mu.Lock()
				conns = append(conns, c)
				if err != nil && sendErr == nil {
					sendErr = fmt.Errorf("send on open: %w", err)
				}
				mu.Unlock()
				atomic.AddInt64(&res.OK, 1)
			}
		}()
	}
	wg.Wait()
	if sendErr != nil {
		return conns, sendErr
	}
	return conns, ctx.Err()
}
