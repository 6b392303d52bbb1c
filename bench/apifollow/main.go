// Command apifollow measures flowlens' flow API under many followers: a
// server process (the API over a ring, as `flowlens up` serves it) has
// records written to its ring at a fixed rate while N clients in this
// process follow /api/v1/flows?follow=1 over real HTTP on loopback. It
// reports the server's CPU seconds and peak heap, each follower's lag from
// the write to the receipt of a record (p50, p99, max), what followers were
// told they lost, and what caching each record's JSON costs in memory.
//
//	go run ./bench/apifollow [-followers 50] [-rate 5000] [-batch 1s] [-duration 30s]
//
// No privileges needed; all traffic stays on 127.0.0.1.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/flowlens/flowlens/internal/flow"
	"github.com/flowlens/flowlens/internal/ring"
	"github.com/flowlens/flowlens/internal/server"
)

type options struct {
	followers int
	rate      int
	batch     time.Duration
	duration  time.Duration
	ringSize  int
}

// serverReport is what the server process prints when its run ends.
type serverReport struct {
	CPUUserSeconds, CPUSysSeconds float64
	PeakHeapBytes                 uint64
	Written                       uint64
	LostAnnounced                 uint64
	// Memory of the ring full of records, before and after a read of
	// everything made every record's JSON (the newest keep theirs).
	RingHeapBytes, RingHeapWithJSONBytes uint64
	RingRecords                          int
}

func main() {
	var o options
	serve := flag.Bool("serve", false, "internal: run the server process")
	flag.IntVar(&o.followers, "followers", 50, "concurrent followers")
	flag.IntVar(&o.rate, "rate", 5000, "records written per second")
	flag.DurationVar(&o.batch, "batch", time.Second, "how often the writer writes (the agent writes once per interval)")
	flag.DurationVar(&o.duration, "duration", 30*time.Second, "how long records are written")
	flag.IntVar(&o.ringSize, "ring", 1<<16, "ring capacity (--flow-buffer)")
	flag.Parse()
	var err error
	if *serve {
		err = runServer(o)
	} else {
		err = run(o)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "apifollow:", err)
		os.Exit(1)
	}
}

// Names are shared between records, as identity's index shares them.
var (
	frontendLabels = map[string]string{"app": "frontend", "pod-template-hash": "7d9f8c6b5"}
	apiLabels      = map[string]string{"app": "api"}
	frontend       = &flow.Workload{Kind: "Deployment", Name: "frontend"}
	api            = &flow.Workload{Kind: "Deployment", Name: "api"}
	apiService     = &flow.ServiceRef{Namespace: "backend", Name: "api"}
)

// sample is a record as the agent makes it with Kubernetes names: what a
// busy node's API carries.
func sample(i int) flow.Record {
	now := time.Now()
	return flow.Record{
		Time: now, Start: now.Add(-time.Second), Node: "worker-1", Observer: "client", Protocol: flow.TCP, IPVersion: 4,
		Verdict: flow.VerdictClosed, ConnStart: now.Add(-time.Second),
		Source: flow.Endpoint{IP: netip.MustParseAddr("10.244.1.17"), Port: uint16(30000 + i%30000), Netns: 4026532890,
			PID: 4711, Command: "frontend", CgroupID: 8123, ContainerID: "4f1c2a9e8b7d6c5f4e3d2c1b0a9f8e7d6c5b4a3f2e1d0c9b8a7f6e5d4c3b2a1f",
			Kind: flow.KindPod, Namespace: "shop", Pod: "frontend-7d9f8c6b5-x7k2p", Container: "frontend",
			Workload: frontend, Labels: frontendLabels, NodeName: "worker-1"},
		Destination: flow.Endpoint{IP: netip.MustParseAddr("10.96.0.20"), Port: 80, Kind: flow.KindPod, Namespace: "backend",
			Pod: "api-5c7b9d-a1b2c", Workload: api, Labels: apiLabels, NodeName: "worker-2", Service: apiService},
		Opened: 1, Closed: 1, RTT: &flow.RTT{MinMicros: 41, AvgMicros: 52, MaxMicros: 61},
		BytesToDst: 1000, BytesToSrc: 5000, SegmentsToDst: 5, SegmentsToSrc: 6,
	}
}

// runServer serves the API on a loopback port it prints, waits for the
// followers, writes for the duration, and prints its report as JSON.
func runServer(o options) error {
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	// First, alone in the heap: what keeping encodings costs.
	var rep serverReport
	rep.RingRecords, rep.RingHeapBytes, rep.RingHeapWithJSONBytes = jsonTradeoff(o.ringSize, log)

	r := ring.New(o.ringSize)
	limits := server.DefaultConfig().Limits
	limits.MaxFollowers = max(limits.MaxFollowers, o.followers)
	s := server.New(r, prometheus.NewRegistry(), func() error { return nil }, log, limits)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = s.Serve(ctx, server.Listener{Listener: ln}) }()
	fmt.Println(ln.Addr().String())

	for deadline := time.Now().Add(30 * time.Second); s.Stats().Followers < o.followers; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			return fmt.Errorf("%d of %d followers connected", s.Stats().Followers, o.followers)
		}
	}
	var peak uint64
	var peakMu sync.Mutex
	stopSampling := make(chan struct{})
	sampled := make(chan struct{})
	go func() { // heap, every 20 ms
		defer close(sampled)
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			peakMu.Lock()
			peak = max(peak, ms.HeapAlloc)
			peakMu.Unlock()
			select {
			case <-stopSampling:
				return
			case <-t.C:
			}
		}
	}()
	var ru0 syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
	per := max(1, int(float64(o.rate)*o.batch.Seconds()))
	var written uint64
	tick := time.NewTicker(o.batch)
	for range max(1, int(o.duration/o.batch)) {
		<-tick.C
		batch := make([]flow.Record, per)
		for i := range batch {
			batch[i] = sample(int(written) + i)
		}
		r.Write(batch)
		written += uint64(per)
	}
	tick.Stop()
	// Let followers drain (bounded), then stop measuring.
	time.Sleep(2 * time.Second)
	var ru1 syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru1)
	close(stopSampling)
	<-sampled
	cancel()

	rep.CPUUserSeconds, rep.CPUSysSeconds = tv(ru1.Utime)-tv(ru0.Utime), tv(ru1.Stime)-tv(ru0.Stime)
	rep.PeakHeapBytes, rep.Written, rep.LostAnnounced = peak, written, s.Stats().LostRecords
	return json.NewEncoder(os.Stdout).Encode(rep)
}

// jsonTradeoff fills a fresh ring and measures the live heap before and
// after a read of everything encoded each record (the newest keep theirs).
func jsonTradeoff(size int, log *slog.Logger) (records int, before, after uint64) {
	r := ring.New(size)
	batch := make([]flow.Record, size)
	for i := range batch {
		batch[i] = sample(i)
	}
	r.Write(batch)
	batch = nil
	before = liveHeap()
	s := server.New(r, prometheus.NewRegistry(), func() error { return nil }, log, server.DefaultConfig().Limits)
	ts := &http.Server{Handler: s.Handler()}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, 0, 0
	}
	go func() { _ = ts.Serve(ln) }()
	defer ts.Close()
	resp, err := http.Get("http://" + ln.Addr().String() + "/api/v1/flows")
	if err == nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	after = liveHeap()
	runtime.KeepAlive(r)
	return r.Len(), before, after
}

func liveHeap() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

func tv(t syscall.Timeval) float64 { return float64(t.Sec) + float64(t.Usec)/1e6 }

// follower reads one stream and notes each record's lag from its write.
type follower struct {
	lags    []time.Duration
	records uint64
	lost    uint64
	err     error
}

func follow(ctx context.Context, addr string, f *follower) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/api/v1/flows?follow=1", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		f.err = err
		return
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		f.err = fmt.Errorf("follow: %s", resp.Status)
		return
	}
	// Only the time is read, from the line's head, so that the clients'
	// JSON decoding does not become what is measured: a record's line
	// starts {"time":"<RFC 3339>", a lost-records line {"lost_records":.
	br := bufio.NewReaderSize(resp.Body, 1<<20)
	timePrefix, lostPrefix := []byte(`{"time":"`), []byte(`{"lost_records":`)
	for {
		b, err := br.ReadSlice('\n')
		if err != nil {
			return
		}
		now := time.Now()
		switch {
		case bytes.HasPrefix(b, lostPrefix):
			var l server.Lost
			if err := json.Unmarshal(b, &l); err != nil {
				f.err = err
				return
			}
			f.lost += l.LostRecords.Count
		case bytes.HasPrefix(b, timePrefix):
			rest := b[len(timePrefix):]
			end := bytes.IndexByte(rest, '"')
			t, err := time.Parse(time.RFC3339Nano, string(rest[:max(end, 0)]))
			if err != nil {
				f.err = fmt.Errorf("record time in %q: %w", b, err)
				return
			}
			f.records++
			f.lags = append(f.lags, now.Sub(t))
		default:
			f.err = fmt.Errorf("unexpected line %q", b)
			return
		}
	}
}

func run(o options) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	cmd := exec.Command(self, "-serve", "-followers", fmt.Sprint(o.followers), "-rate", fmt.Sprint(o.rate),
		"-batch", o.batch.String(), "-duration", o.duration.String(), "-ring", fmt.Sprint(o.ringSize))
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	br := bufio.NewReader(out)
	addr, err := br.ReadString('\n')
	if err != nil {
		return fmt.Errorf("server address: %w", err)
	}
	addr = addr[:len(addr)-1]

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	fs := make([]*follower, o.followers)
	var wg sync.WaitGroup
	for i := range fs {
		fs[i] = &follower{}
		wg.Add(1)
		go func() { defer wg.Done(); follow(ctx, addr, fs[i]) }()
	}
	var rep serverReport
	if err := json.NewDecoder(br).Decode(&rep); err != nil {
		return fmt.Errorf("server report: %w", err)
	}
	cancel()
	wg.Wait()

	var lags []time.Duration
	var records, lost uint64
	for _, f := range fs {
		if f.err != nil && ctx.Err() == nil {
			return f.err
		}
		lags = append(lags, f.lags...)
		records += f.records
		lost += f.lost
	}
	slices.Sort(lags)
	q := func(p float64) time.Duration {
		if len(lags) == 0 {
			return 0
		}
		return lags[min(len(lags)-1, int(p*float64(len(lags))))]
	}
	cpu := rep.CPUUserSeconds + rep.CPUSysSeconds
	fmt.Printf("followers %d, %d records/s in batches every %s for %s, ring %d\n", o.followers, o.rate, o.batch, o.duration, o.ringSize)
	fmt.Printf("server CPU: %.2f s (user %.2f, sys %.2f) = %.1f%% of a core; %.1f µs per record delivered\n",
		cpu, rep.CPUUserSeconds, rep.CPUSysSeconds, 100*cpu/(o.duration.Seconds()+2), 1e6*cpu/float64(max(records, 1)))
	fmt.Printf("server peak heap: %.1f MiB\n", float64(rep.PeakHeapBytes)/(1<<20))
	fmt.Printf("delivered %d of %d×%d = %d records; lost (announced) %d, server counted %d\n",
		records, rep.Written, o.followers, rep.Written*uint64(o.followers), lost, rep.LostAnnounced)
	fmt.Printf("lag write→receipt: p50 %s, p99 %s, max %s\n", q(0.50).Round(time.Microsecond), q(0.99).Round(time.Microsecond), lags[len(lags)-1].Round(time.Microsecond))
	fmt.Printf("ring of %d records: live heap %.1f MiB; after a read of everything %.1f MiB (+%.0f B per held record for kept encodings)\n",
		rep.RingRecords, float64(rep.RingHeapBytes)/(1<<20), float64(rep.RingHeapWithJSONBytes)/(1<<20),
		(float64(rep.RingHeapWithJSONBytes)-float64(rep.RingHeapBytes))/float64(max(rep.RingRecords, 1)))
	return nil
}
