// Command peer is the traffic endpoint of flowlens' end-to-end tests and
// benchmarks: servers and clients that count exactly what they move and
// print it as one JSON line, so a test can compare flowlens' numbers with
// the truth. Every mode is bounded in count and time.
//
//	peer tcp-serve   -listen ADDR [-reply N]          accept, read to EOF, reply N bytes
//	peer tcp-connect -addr ADDR -count N [-bytes B] [-rate R] [-concurrency C] [-timeout D] [-trace FILE]
//	peer tcp-stream  -addr ADDR -duration D [-chunk B]
//	peer dns-serve   -listen ADDR                      answer A queries with 192.0.2.1
//	peer http-serve  -listen ADDR [-body N]            HTTP/1.1 keep-alive server
//	peer http-load   -addr ADDR [-connections C] [-requests N] [-duration D]
//	peer dns-load    -addr ADDR -count N [-rate R] [-concurrency C]
//	peer tcp-hold    -addr ADDR -count N [-before B] [-after A]   hold N connections until a line on stdin
//	peer tcp-hold-serve -listen ADDR [-max-connections N]      read many held connections (epoll)
//	peer tcp-hold-load  -addr ADDR -count N [-bytes B] [-rate R]  hold N connections; "send"/"close" on stdin
//	peer udp-send    -addr ADDR -count N [-size S] [-ports P] [-gso K] [-hopopts]
//	peer udp-sink    -listen ADDR                      count datagrams, no answer
//
// The load modes (load.go) are what the benchmarks (bench/) drive.
//
// Servers print {"ready":true} once listening and a summary when they get
// SIGTERM or their -duration ends; clients print a summary when done.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/flowlens/flowlens/test/peer/result"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: peer tcp-serve|tcp-connect|tcp-stream|dns-serve|http-serve|http-load|dns-load|tcp-hold|tcp-hold-serve|tcp-hold-load|udp-send|udp-sink [flags]")
		os.Exit(2)
	}
	modes := map[string]func([]string) (any, error){
		"tcp-serve":      tcpServe,
		"tcp-connect":    tcpConnect,
		"tcp-stream":     tcpStream,
		"dns-serve":      dnsServe,
		"http-serve":     httpServe,
		"http-load":      httpLoad,
		"dns-load":       dnsLoad,
		"tcp-hold":       tcpHold,
		"tcp-hold-serve": holdServe,
		"tcp-hold-load":  holdLoad,
		"udp-send":       udpSend,
		"udp-sink":       udpSink,
	}
	run, ok := modes[os.Args[1]]
	if !ok {
		fmt.Fprintf(os.Stderr, "peer: unknown mode %q\n", os.Args[1])
		os.Exit(2)
	}
	res, err := run(os.Args[2:])
	if err != nil {
		fmt.Fprintf(os.Stderr, "peer %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
	emit(res)
}

func emit(v any) {
	b, _ := json.Marshal(v)
	fmt.Println(string(b))
}

// until returns a context ended by SIGTERM/SIGINT or after d (0: never).
func until(d time.Duration) (context.Context, context.CancelFunc) {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	if d <= 0 {
		return ctx, stop
	}
	tctx, cancel := context.WithTimeout(ctx, d)
	return tctx, func() { cancel(); stop() }
}

func tcpServe(args []string) (any, error) {
	fs := flag.NewFlagSet("tcp-serve", flag.ExitOnError)
	listen := fs.String("listen", "127.0.0.1:0", "address to listen on")
	reply := fs.Int("reply", 0, "bytes to send back on each connection after reading to EOF")
	maxTime := fs.Duration("duration", 10*time.Minute, "stop after this long")
	_ = fs.Parse(args)

	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return nil, err
	}
	ctx, cancel := until(*maxTime)
	defer cancel()
	emit(map[string]any{"ready": true, "addr": ln.Addr().String()})
	go func() { <-ctx.Done(); ln.Close() }()

	var res result.Serve
	var wg sync.WaitGroup
	payload := make([]byte, *reply)
	for {
		c, err := ln.Accept()
		if err != nil {
			break
		}
		atomic.AddInt64(&res.Connections, 1)
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer c.Close()
			n, _ := io.Copy(io.Discard, c)
			atomic.AddInt64(&res.BytesIn, n)
			if len(payload) > 0 {
				m, _ := c.Write(payload)
				atomic.AddInt64(&res.BytesOut, int64(m))
			}
		}()
	}
	wg.Wait()
	return res, nil
}

// tcpConnect makes -count connections (at -rate per second, -concurrency at
// once), each sending -bytes, half-closing and reading to EOF. With -trace
// it writes "start_unix_ns source_port" per successful connection.
func tcpConnect(args []string) (any, error) {
	fs := flag.NewFlagSet("tcp-connect", flag.ExitOnError)
	addr := fs.String("addr", "", "server address")
	count := fs.Int("count", 1, "connections to make")
	size := fs.Int("bytes", 0, "bytes to send on each connection")
	rate := fs.Float64("rate", 0, "connections per second, by schedule (0: as fast as possible)")
	conc := fs.Int("concurrency", 1, "connections in flight at once")
	timeout := fs.Duration("timeout", 5*time.Second, "connect timeout")
	maxTime := fs.Duration("duration", 10*time.Minute, "stop after this long")
	trace := fs.String("trace", "", "file to write one \"start_unix_ns source_port\" line per connection to")
	_ = fs.Parse(args)
	if *addr == "" {
		return nil, errors.New("-addr is required")
	}
	if err := checkBounds(*count, *maxTime); err != nil {
		return nil, err
	}
	workers := min(max(*conc, 1), 4096)
	ctx, cancel := until(*maxTime)
	defer cancel()

	var res result.Connect
	payload := make([]byte, *size)
	var remaining atomic.Int64
	remaining.Store(int64(*count))
	traces := make([][]traceEntry, workers)
	pace := newPacer(*rate)
	var wg sync.WaitGroup
	start := time.Now()
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d := net.Dialer{Timeout: *timeout}
			for remaining.Add(-1) >= 0 {
				if !pace.wait(ctx) {
					return
				}
				now := time.Now().UnixNano()
				atomic.CompareAndSwapInt64(&res.FirstStart, 0, now)
				atomic.StoreInt64(&res.LastStart, now)
				c, err := d.DialContext(ctx, "tcp", *addr)
				if err != nil {
					classify(&res, err)
					continue
				}
				if *trace != "" {
					traces[w] = append(traces[w], traceEntry{now, uint16(c.LocalAddr().(*net.TCPAddr).Port)})
				}
				n, _ := c.Write(payload)
				atomic.AddInt64(&res.BytesOut, int64(n))
				_ = c.(*net.TCPConn).CloseWrite()
				m, _ := io.Copy(io.Discard, c)
				atomic.AddInt64(&res.BytesIn, m)
				c.Close()
				atomic.AddInt64(&res.OK, 1)
			}
		}()
	}
	wg.Wait()
	res.Seconds = time.Since(start).Seconds()
	if *trace != "" {
		if err := writeTrace(*trace, traces); err != nil {
			return nil, fmt.Errorf("write trace: %w", err)
		}
	}
	return res, nil
}

func classify(res *result.Connect, err error) {
	var ne net.Error
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		atomic.AddInt64(&res.Refused, 1)
	case errors.As(err, &ne) && ne.Timeout(), errors.Is(err, syscall.ETIMEDOUT):
		atomic.AddInt64(&res.TimedOut, 1)
	default:
		atomic.AddInt64(&res.Failed, 1)
	}
}

func tcpStream(args []string) (any, error) {
	fs := flag.NewFlagSet("tcp-stream", flag.ExitOnError)
	addr := fs.String("addr", "", "server address")
	duration := fs.Duration("duration", 3*time.Second, "how long to stream")
	chunk := fs.Int("chunk", 64<<10, "bytes per write")
	pause := fs.Duration("pause", 0, "pause between writes (0: full speed)")
	_ = fs.Parse(args)
	if *duration > 10*time.Minute {
		return nil, errors.New("-duration is capped at 10m")
	}
	c, err := net.Dial("tcp", *addr)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	var res result.Connect
	buf := make([]byte, *chunk)
	start := time.Now()
	for time.Since(start) < *duration {
		n, err := c.Write(buf)
		res.BytesOut += int64(n)
		if err != nil {
			return nil, err
		}
		if *pause > 0 {
			time.Sleep(*pause)
		}
	}
	_ = c.(*net.TCPConn).CloseWrite()
	n, _ := io.Copy(io.Discard, c)
	res.BytesIn = n
	res.OK = 1
	res.Seconds = time.Since(start).Seconds()
	return res, nil
}
