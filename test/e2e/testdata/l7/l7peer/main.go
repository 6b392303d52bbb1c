// Command l7peer is the HTTP server and client of the L7 end-to-end tests
// (test/e2e/l7_*_test.go): a real net/http server and client, over plain
// TCP or Go's crypto/tls, speaking HTTP/1.1 only (flowlens parses HTTP/1.x),
// that report exactly what they did.
//
//	l7peer serve -listen ADDR [-tls]
//	l7peer load  -url BASE -plan FILE [-conns C] [-timeout D]
//	l7peer get   -url URL
//
// serve answers every request with the status its query parameter `s`
// names (200 without it), after reading the whole body; it prints
// {"ready":true} once listening and {"requests":N} after SIGTERM.
//
// load makes the plan's requests (a JSON array of {method, path, header,
// body}) in order over at most C keep-alive connections, and prints the
// status of each in plan order, how many connections it opened, and the
// largest latency it measured from before sending a request to its
// response's headers, in µs rounded up: an upper bound of what any
// observer of its sockets can measure.
//
// get makes one GET and prints its status.
package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptrace"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: l7peer serve|load [flags]")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "serve":
		err = serve(os.Args[2:])
	case "load":
		err = load(os.Args[2:])
	case "get":
		err = get(os.Args[2:])
	default:
		err = fmt.Errorf("unknown mode %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "l7peer %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
}

func emit(v any) {
	b, _ := json.Marshal(v)
	fmt.Println(string(b))
}

func serve(args []string) error {
	fs := flag.NewFlagSet("serve", flag.ExitOnError)
	listen := fs.String("listen", "", "address to listen on")
	useTLS := fs.Bool("tls", false, "serve HTTPS with a self-signed certificate")
	_ = fs.Parse(args)
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("listen %s: %w", *listen, err)
	}
	if *useTLS {
		cert, err := selfSigned()
		if err != nil {
			return err
		}
		ln = tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"http/1.1"}})
	}
	var requests atomic.Int64
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body)
			status := http.StatusOK
			if s := r.URL.Query().Get("s"); s != "" {
				if n, err := strconv.Atoi(s); err == nil && n >= 200 && n <= 599 {
					status = n
				}
			}
			requests.Add(1)
			w.WriteHeader(status)
			_, _ = io.WriteString(w, "done\n")
		}),
		ReadHeaderTimeout: 10 * time.Second,
		// No HTTP/2: a non-nil empty map turns off the upgrade.
		TLSNextProto: map[string]func(*http.Server, *tls.Conn, http.Handler){},
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	emit(map[string]bool{"ready": true})
	select {
	case <-ctx.Done():
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	}
	shut, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(shut)
	emit(map[string]int64{"requests": requests.Load()})
	return nil
}

// selfSigned makes a certificate for the test server; clients skip
// verification (the test is about what flowlens reads, not about trust).
func selfSigned() (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("generate key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "l7peer.test"},
		DNSNames:     []string{"l7peer.test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("create certificate: %w", err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}

// Request is one request of a load plan.
type Request struct {
	Method string            `json:"method"`
	Path   string            `json:"path"` // with its query string
	Header map[string]string `json:"header,omitempty"`
	Body   string            `json:"body,omitempty"`
}

// LoadResult is what load prints.
type LoadResult struct {
	Statuses    []int  `json:"statuses"` // in plan order; 0: failed
	Errors      int    `json:"errors"`
	Connections int64  `json:"connections"` // opened
	MaxMicros   uint64 `json:"max_us"`
}

func load(args []string) error {
	fs := flag.NewFlagSet("load", flag.ExitOnError)
	base := fs.String("url", "", "http://host:port or https://host:port")
	planFile := fs.String("plan", "", "JSON array of requests")
	conns := fs.Int("conns", 4, "keep-alive connections (and concurrent requests)")
	timeout := fs.Duration("timeout", 60*time.Second, "bound on the whole run")
	_ = fs.Parse(args)
	b, err := os.ReadFile(*planFile)
	if err != nil {
		return fmt.Errorf("read plan: %w", err)
	}
	var plan []Request
	if err := json.Unmarshal(b, &plan); err != nil {
		return fmt.Errorf("decode plan %s: %w", *planFile, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	client := newClient(*conns)
	res := LoadResult{Statuses: make([]int, len(plan))}
	var mu sync.Mutex
	var opened atomic.Int64
	trace := &httptrace.ClientTrace{GotConn: func(info httptrace.GotConnInfo) {
		if !info.Reused {
			opened.Add(1)
		}
	}}
	next := make(chan int)
	var wg sync.WaitGroup
	for range *conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				status, took, err := do(httptrace.WithClientTrace(ctx, trace), client, *base, plan[i])
				mu.Lock()
				res.Statuses[i] = status
				if err != nil {
					res.Errors++
					fmt.Fprintf(os.Stderr, "l7peer load: request %d: %v\n", i, err)
				}
				if us := uint64((took + time.Microsecond - 1) / time.Microsecond); us > res.MaxMicros {
					res.MaxMicros = us
				}
				mu.Unlock()
			}
		}()
	}
	for i := range plan {
		next <- i
	}
	close(next)
	wg.Wait()
	res.Connections = opened.Load()
	emit(res)
	if res.Errors > 0 {
		return errors.New("some requests failed")
	}
	return nil
}

// newClient is an HTTP/1.1 client keeping up to conns connections alive,
// trusting any server certificate.
func newClient(conns int) *http.Client {
	return &http.Client{Transport: &http.Transport{
		MaxConnsPerHost:     conns,
		MaxIdleConnsPerHost: conns,
		TLSClientConfig:     &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}},
		TLSNextProto:        map[string]func(string, *tls.Conn) http.RoundTripper{},
		DisableCompression:  true,
	}}
}

func get(args []string) error {
	fs := flag.NewFlagSet("get", flag.ExitOnError)
	url := fs.String("url", "", "what to get")
	_ = fs.Parse(args)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	status, _, err := do(ctx, newClient(1), *url, Request{Method: http.MethodGet})
	if err != nil {
		return err
	}
	emit(map[string]int{"status": status})
	return nil
}

// do makes one request and reads its whole response, so that the
// connection goes back to the pool for the next.
func do(ctx context.Context, c *http.Client, base string, r Request) (int, time.Duration, error) {
	req, err := http.NewRequestWithContext(ctx, r.Method, base+r.Path, strings.NewReader(r.Body))
	if err != nil {
		return 0, 0, fmt.Errorf("new request: %w", err)
	}
	for k, v := range r.Header {
		req.Header.Set(k, v)
	}
	start := time.Now()
	resp, err := c.Do(req)
	took := time.Since(start)
	if err != nil {
		return 0, took, err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return 0, took, fmt.Errorf("read body: %w", err)
	}
	return resp.StatusCode, took, nil
}
