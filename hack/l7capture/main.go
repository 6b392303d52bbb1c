// Command l7capture is a recording proxy on loopback: it forwards clients
// to a real server and writes what each side wrote (each read one message,
// timestamped), encoded by l7test.Encode, for the l7 parsers' tests, and
// the same bytes as a seed of their fuzz target. record.sh beside it
// drives real servers and clients through it.
//
//	l7capture -listen 127.0.0.1:15432 -to 127.0.0.1:5432 -o testdata/pg -corpus testdata/fuzz/FuzzParser -conns 1
//
// writes testdata/pg-1.samples and the seed testdata/fuzz/FuzzParser/pg-1
// per TCP connection, and exits once that many are done; with -udp, one
// file of all datagrams (a conversation) once none came for -idle.
// l7test.Recorder does the same inside a Go test; this records servers and
// clients that are programs (dnsmasq, psql, redis-cli).
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/flowlens/flowlens/internal/l7"
	"github.com/flowlens/flowlens/internal/l7/l7test"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "loopback address to accept clients on")
	to := flag.String("to", "", "the server's loopback address")
	out := flag.String("o", "capture", "output path prefix")
	corpus := flag.String("corpus", "", "fuzz corpus directory for seeds (none if empty)")
	conns := flag.Int("conns", 1, "TCP connections to record before exiting")
	udp := flag.Bool("udp", false, "proxy UDP datagrams")
	idle := flag.Duration("idle", time.Second, "UDP: a client silent this long is done")
	limit := flag.Duration("timeout", 60*time.Second, "give up after this long")
	flag.Parse()
	for _, a := range []string{*listen, *to} {
		ap, err := netip.ParseAddrPort(a)
		if err != nil || !ap.Addr().IsLoopback() {
			fatal(fmt.Errorf("address %q: loopback addresses only", a))
		}
	}
	time.AfterFunc(*limit, func() { fatal(errors.New("timed out")) })
	var err error
	if *udp {
		err = proxyUDP(*listen, *to, *out, *corpus, *idle)
	} else {
		err = proxyTCP(*listen, *to, *out, *corpus, *conns)
	}
	if err != nil {
		fatal(err)
	}
}

func fatal(err error) {
	slog.Error("l7capture", "err", err)
	os.Exit(1)
}

// recorder collects one exchange's reads in order.
type recorder struct {
	mu      sync.Mutex
	start   time.Time
	samples []l7.Sample
}

func newRecorder() *recorder { return &recorder{start: time.Now()} }

func (r *recorder) add(dir l7.Dir, b []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	ns := uint64(time.Since(r.start)) + 1e9
	r.samples = append(r.samples, l7.Sample{Msg: l7.Message{Dir: dir, NS: ns, Len: len(b), Data: append([]byte(nil), b...)}})
}

// save writes prefix-n.samples, and the seed n in corpus if set.
func (r *recorder) save(prefix string, n int, corpus string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	b := l7test.Encode(r.samples)
	path := fmt.Sprintf("%s-%d.samples", prefix, n)
	if err := os.WriteFile(path, b, 0o644); err != nil {
		return fmt.Errorf("save samples: %w", err)
	}
	if corpus != "" {
		if err := l7test.WriteCorpusFile(corpus, fmt.Sprintf("%s-%d", filepath.Base(prefix), n), b); err != nil {
			return err
		}
	}
	slog.Info("saved", "path", path, "reads", len(r.samples))
	return nil
}

func proxyTCP(listen, to, out, corpus string, conns int) error {
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	defer ln.Close()
	for n := 1; n <= conns; n++ {
		c, err := ln.Accept()
		if err != nil {
			return fmt.Errorf("accept: %w", err)
		}
		s, err := net.Dial("tcp", to)
		if err != nil {
			c.Close()
			return fmt.Errorf("dial server: %w", err)
		}
		r := newRecorder()
		var wg sync.WaitGroup
		wg.Add(2)
		go pipe(&wg, r, l7.FromClient, c, s)
		go pipe(&wg, r, l7.FromServer, s, c)
		wg.Wait()
		c.Close()
		s.Close()
		if err := r.save(out, n, corpus); err != nil {
			return err
		}
	}
	return nil
}

// pipe copies src to dst, recording each read as one write of dir's side,
// and half-closes dst when src ends.
func pipe(wg *sync.WaitGroup, r *recorder, dir l7.Dir, src, dst net.Conn) {
	defer wg.Done()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			r.add(dir, buf[:n])
			if _, werr := dst.Write(buf[:n]); werr != nil {
				break
			}
		}
		if err != nil {
			if !errors.Is(err, io.EOF) {
				slog.Debug("pipe", "err", err)
			}
			break
		}
	}
	if tc, ok := dst.(*net.TCPConn); ok {
		tc.CloseWrite()
	}
}

// proxyUDP relays datagrams between clients and the server (one upstream
// socket per client address) and records them all as one exchange, ended
// when no datagram came for idle: the server's view of its clients.
func proxyUDP(listen, to, out, corpus string, idle time.Duration) error {
	pc, err := net.ListenPacket("udp", listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	defer pc.Close()
	server, err := net.ResolveUDPAddr("udp", to)
	if err != nil {
		return fmt.Errorf("server address: %w", err)
	}
	r := newRecorder()
	var wg sync.WaitGroup
	ups := map[string]*net.UDPConn{}
	defer func() {
		for _, up := range ups {
			up.Close()
		}
		wg.Wait()
	}()
	buf := make([]byte, 32<<10)
	for first := true; ; first = false {
		if !first {
			pc.SetReadDeadline(time.Now().Add(idle))
		}
		k, from, err := pc.ReadFrom(buf)
		if err != nil {
			break
		}
		up := ups[from.String()]
		if up == nil {
			if up, err = net.DialUDP("udp", nil, server); err != nil {
				return fmt.Errorf("dial server: %w", err)
			}
			ups[from.String()] = up
			wg.Add(1)
			go func() {
				defer wg.Done()
				rb := make([]byte, 32<<10)
				for {
					k, err := up.Read(rb)
					if err != nil {
						return
					}
					r.add(l7.FromServer, rb[:k])
					pc.WriteTo(rb[:k], from)
				}
			}()
		}
		r.add(l7.FromClient, buf[:k])
		if _, err := up.Write(buf[:k]); err != nil {
			return fmt.Errorf("relay: %w", err)
		}
	}
	return r.save(out, 1, corpus)
}
