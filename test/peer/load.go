package main

// Load modes for the benchmarks (bench/): like tcp-connect and dns-serve, they
// count exactly what they move, but they also pace by schedule (a late
// connection does not lower the rate of the ones after it), can record when
// each connection started and from which source port (-trace), and cover
// HTTP/1.1 keep-alive and DNS clients. Every mode is bounded in count and time.

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/dns/dnsmessage"
)

// maxLoadDuration caps every load mode: a benchmark must not run away.
const maxLoadDuration = 10 * time.Minute

// maxLoadCount caps connections, requests and queries per run.
const maxLoadCount = 10_000_000

func checkBounds(count int, d time.Duration) error {
	if count < 0 || count > maxLoadCount {
		return fmt.Errorf("count %d out of range (0..%d)", count, maxLoadCount)
	}
	if d <= 0 || d > maxLoadDuration {
		return fmt.Errorf("-duration %s out of range (0..%s]", d, maxLoadDuration)
	}
	return nil
}

// pacer hands out start times i/rate after the first; 0 rate: no pacing.
type pacer struct {
	start    time.Time
	interval time.Duration
	next     atomic.Int64
}

// wait blocks until the next slot (or ctx ends) and reports whether to go on.
func (p *pacer) wait(ctx context.Context) bool {
	if p.interval <= 0 {
		return ctx.Err() == nil
	}
	i := p.next.Add(1) - 1
	d := time.Until(p.start.Add(time.Duration(i) * p.interval))
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

func newPacer(rate float64) *pacer {
	p := &pacer{start: time.Now()}
	if rate > 0 {
		p.interval = time.Duration(float64(time.Second) / rate)
	}
	return p
}

// traceEntry is one connection: when connect() began and the source port.
type traceEntry struct {
	startNS int64
	port    uint16
}

func writeTrace(path string, per [][]traceEntry) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	for _, es := range per {
		for _, e := range es {
			fmt.Fprintf(w, "%d %d\n", e.startNS, e.port)
		}
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// countingConn counts the bytes each read and write moved.
type countingConn struct {
	net.Conn
	in, out *atomic.Int64
}

func (c countingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.in.Add(int64(n))
	return n, err
}

func (c countingConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.out.Add(int64(n))
	return n, err
}

type countingListener struct {
	net.Listener
	conns, in, out *atomic.Int64
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.conns.Add(1)
	return countingConn{c, l.in, l.out}, nil
}

// HTTPResult is what an HTTP server or client moved, counted at the socket.
type HTTPResult struct {
	Connections int64   `json:"connections"`
	Requests    int64   `json:"requests"`
	Errors      int64   `json:"errors,omitempty"`
	BytesIn     int64   `json:"bytes_in"`
	BytesOut    int64   `json:"bytes_out"`
	Seconds     float64 `json:"seconds,omitempty"`
}

// httpServe answers every request with -body bytes, keeping connections alive.
func httpServe(args []string) (any, error) {
	fs := flag.NewFlagSet("http-serve", flag.ExitOnError)
	listen := fs.String("listen", "127.0.0.1:0", "address to listen on")
	body := fs.Int("body", 1024, "response body bytes")
	maxTime := fs.Duration("duration", 10*time.Minute, "stop after this long")
	_ = fs.Parse(args)
	if err := checkBounds(0, *maxTime); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return nil, err
	}
	var conns, in, out, reqs atomic.Int64
	payload := make([]byte, *body)
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			reqs.Add(1)
			_, _ = io.Copy(io.Discard, r.Body)
			w.Header().Set("Content-Length", strconv.Itoa(len(payload)))
			_, _ = w.Write(payload)
		}),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       time.Minute,
	}
	ctx, cancel := until(*maxTime)
	defer cancel()
	emit(map[string]any{"ready": true, "addr": ln.Addr().String()})
	done := make(chan error, 1)
	go func() { done <- srv.Serve(countingListener{ln, &conns, &in, &out}) }()
	<-ctx.Done()
	sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer scancel()
	_ = srv.Shutdown(sctx)
	<-done
	return HTTPResult{Connections: conns.Load(), Requests: reqs.Load(), BytesIn: in.Load(), BytesOut: out.Load()}, nil
}

// httpLoad keeps -connections keep-alive connections busy with GET requests
// until -requests were made or -duration passed, then closes them.
func httpLoad(args []string) (any, error) {
	fs := flag.NewFlagSet("http-load", flag.ExitOnError)
	addr := fs.String("addr", "", "server address")
	conns := fs.Int("connections", 8, "keep-alive connections, one request in flight on each")
	requests := fs.Int("requests", 100000, "requests in total")
	maxTime := fs.Duration("duration", 5*time.Second, "stop after this long")
	_ = fs.Parse(args)
	if *addr == "" {
		return nil, errors.New("-addr is required")
	}
	if err := checkBounds(*requests, *maxTime); err != nil {
		return nil, err
	}
	ctx, cancel := until(*maxTime)
	defer cancel()
	var dialed, in, out, reqs, errs atomic.Int64
	var remaining atomic.Int64
	remaining.Store(int64(*requests))
	url := "http://" + *addr + "/"
	var wg sync.WaitGroup
	start := time.Now()
	for range min(max(*conns, 1), 1024) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tr := &http.Transport{
				MaxIdleConnsPerHost: 1,
				MaxConnsPerHost:     1,
				DisableCompression:  true,
				DialContext: func(ctx context.Context, network, a string) (net.Conn, error) {
					var d net.Dialer
					c, err := d.DialContext(ctx, network, a)
					if err != nil {
						return nil, err
					}
					dialed.Add(1)
					return countingConn{c, &in, &out}, nil
				},
			}
			defer tr.CloseIdleConnections()
			client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
			for ctx.Err() == nil && remaining.Add(-1) >= 0 {
				resp, err := client.Get(url)
				if err != nil {
					errs.Add(1)
					continue
				}
				_, err = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if err != nil || resp.StatusCode != http.StatusOK {
					errs.Add(1)
					continue
				}
				reqs.Add(1)
			}
		}()
	}
	wg.Wait()
	return HTTPResult{Connections: dialed.Load(), Requests: reqs.Load(), Errors: errs.Load(),
		BytesIn: in.Load(), BytesOut: out.Load(), Seconds: time.Since(start).Seconds()}, nil
}

// DNSLoadResult is what a DNS client sent and got back.
type DNSLoadResult struct {
	Queries      int64   `json:"queries"`
	Answers      int64   `json:"answers"`
	Timeouts     int64   `json:"timeouts"`
	Errors       int64   `json:"errors,omitempty"`
	BytesOut     int64   `json:"bytes_out"`
	BytesIn      int64   `json:"bytes_in"`
	DatagramsOut int64   `json:"datagrams_out"`
	DatagramsIn  int64   `json:"datagrams_in"`
	Seconds      float64 `json:"seconds"`
}

// dnsLoad sends -count A queries, each from a new UDP socket as stub
// resolvers do, at -rate per second, and waits for each answer.
func dnsLoad(args []string) (any, error) {
	fs := flag.NewFlagSet("dns-load", flag.ExitOnError)
	addr := fs.String("addr", "", "server address")
	count := fs.Int("count", 1, "queries to send")
	rate := fs.Float64("rate", 0, "queries per second, by schedule (0: as fast as possible)")
	conc := fs.Int("concurrency", 4, "queries in flight at once")
	timeout := fs.Duration("timeout", 2*time.Second, "how long to wait for an answer")
	maxTime := fs.Duration("duration", 2*time.Minute, "stop after this long")
	_ = fs.Parse(args)
	if *addr == "" {
		return nil, errors.New("-addr is required")
	}
	if err := checkBounds(*count, *maxTime); err != nil {
		return nil, err
	}
	ctx, cancel := until(*maxTime)
	defer cancel()
	var res DNSLoadResult
	var remaining, seq atomic.Int64
	remaining.Store(int64(*count))
	pace := newPacer(*rate)
	var wg sync.WaitGroup
	start := time.Now()
	for range min(max(*conc, 1), 1024) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 1500)
			for remaining.Add(-1) >= 0 {
				if !pace.wait(ctx) {
					return
				}
				i := seq.Add(1)
				name := dnsmessage.MustNewName(fmt.Sprintf("q%d.bench.flowlens.test.", i))
				q := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: uint16(i), RecursionDesired: true})
				_ = q.StartQuestions()
				_ = q.Question(dnsmessage.Question{Name: name, Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET})
				msg, err := q.Finish()
				if err != nil {
					atomic.AddInt64(&res.Errors, 1)
					continue
				}
				c, err := net.Dial("udp", *addr)
				if err != nil {
					atomic.AddInt64(&res.Errors, 1)
					continue
				}
				n, err := c.Write(msg)
				if err != nil {
					atomic.AddInt64(&res.Errors, 1)
					c.Close()
					continue
				}
				atomic.AddInt64(&res.Queries, 1)
				atomic.AddInt64(&res.DatagramsOut, 1)
				atomic.AddInt64(&res.BytesOut, int64(n))
				_ = c.SetReadDeadline(time.Now().Add(*timeout))
				m, err := c.Read(buf)
				c.Close()
				if err != nil {
					atomic.AddInt64(&res.Timeouts, 1)
					continue
				}
				atomic.AddInt64(&res.Answers, 1)
				atomic.AddInt64(&res.DatagramsIn, 1)
				atomic.AddInt64(&res.BytesIn, int64(m))
			}
		}()
	}
	wg.Wait()
	res.Seconds = time.Since(start).Seconds()
	return res, nil
}
