// Command l7capture is a recording proxy on loopback: it forwards a client
// to a real server and writes what each side wrote, one transcript
// (internal/l7/transcript) per TCP connection or per UDP client, for the
// l7 parsers' tests and seed corpora. record.sh beside it drives real
// servers and clients through it.
//
//	l7capture -listen 127.0.0.1:15432 -to 127.0.0.1:5432 -o out/pg -conns 1
//
// writes out/pg-1.transcript and exits once that many connections are
// done; with -udp, it writes one transcript of all datagrams once none came
// for -idle.
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
	"sync"
	"time"

	"github.com/flowlens/flowlens/internal/l7"
	"github.com/flowlens/flowlens/internal/l7/transcript"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "loopback address to accept clients on")
	to := flag.String("to", "", "the server's loopback address")
	out := flag.String("o", "capture", "output path prefix")
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
		err = proxyUDP(*listen, *to, *out, *idle)
	} else {
		err = proxyTCP(*listen, *to, *out, *conns)
	}
	if err != nil {
		fatal(err)
	}
}

func fatal(err error) {
	slog.Error("l7capture", "err", err)
	os.Exit(1)
}

// recorder collects one exchange's writes in order.
type recorder struct {
	mu sync.Mutex
	ms []l7.Message
}

func (r *recorder) add(dir l7.Dir, b []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ms = append(r.ms, l7.Message{Dir: dir, Len: len(b), Data: append([]byte(nil), b...)})
}

func (r *recorder) save(path string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	b, err := transcript.Encode(r.ms)
	if err != nil {
		return fmt.Errorf("encode %s: %w", path, err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		return fmt.Errorf("save transcript: %w", err)
	}
	slog.Info("saved", "path", path, "writes", len(r.ms))
	return nil
}

func proxyTCP(listen, to, out string, conns int) error {
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
		var r recorder
		var wg sync.WaitGroup
		wg.Add(2)
		go pipe(&wg, &r, l7.FromClient, c, s)
		go pipe(&wg, &r, l7.FromServer, s, c)
		wg.Wait()
		c.Close()
		s.Close()
		if err := r.save(fmt.Sprintf("%s-%d.transcript", out, n)); err != nil {
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
func proxyUDP(listen, to, out string, idle time.Duration) error {
	pc, err := net.ListenPacket("udp", listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	defer pc.Close()
	server, err := net.ResolveUDPAddr("udp", to)
	if err != nil {
		return fmt.Errorf("server address: %w", err)
	}
	var r recorder
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
	return r.save(out + "-1.transcript")
}
