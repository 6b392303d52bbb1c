package http_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	nethttp "net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flowlens/flowlens/internal/flow"
	"github.com/flowlens/flowlens/internal/l7"
	"github.com/flowlens/flowlens/internal/l7/http"
	"github.com/flowlens/flowlens/internal/l7/l7test"
)

var rewrite = flag.Bool("rewrite", false, "write the fuzz seed corpora from the recorded traffic")

// capBytes is what the kernel keeps of each call (l7_capture_bytes).
const capBytes = 256

// schedule is request i of the mix: 900×200, 60×404, 40×500 over
// /users/{id} and /orders/{id}/items; every tenth one a POST with a body.
func schedule(i int) (method, path, template string, status int) {
	status = 200
	switch {
	case i%50 >= 48:
		status = 500
	case i%50 >= 45:
		status = 404
	}
	method, path, template = "GET", fmt.Sprintf("/users/%d", 1000+i), "/users/{id}"
	if i%2 == 1 {
		path, template = fmt.Sprintf("/orders/%08x-1111-4222-8333-%012x/items", i, i*7919), "/orders/{id}/items"
	}
	if i%10 == 0 {
		method = "POST"
	}
	return method, path, template, status
}

// TestRealTraffic runs a net/http server and client on 127.0.0.1 through
// a recording proxy: 1,000 requests on four keep-alive connections, the
// capture capped at capBytes per call, must come out as exactly the
// requests sent, with no secret in them.
func TestRealTraffic(t *testing.T) {
	srv := httptest.NewServer(nethttp.HandlerFunc(func(w nethttp.ResponseWriter, r *nethttp.Request) {
		io.Copy(io.Discard, r.Body)
		status, _ := strconv.Atoi(r.URL.Query().Get("s"))
		if strings.HasPrefix(r.URL.Path, "/orders/") {
			// No length and more than net/http buffers: chunked.
			w.WriteHeader(status)
			w.Write(bytes.Repeat([]byte("order-line secret-body\n"), 200))
			return
		}
		w.Header().Set("Set-Cookie", "session=secret-set-cookie")
		w.WriteHeader(status)
		fmt.Fprintf(w, `{"user":%q,"secret":"secret-body"}`, r.URL.Path)
	}))
	defer srv.Close()
	rec := l7test.NewRecorder(t, srv.Listener.Addr().String())

	tr := &nethttp.Transport{MaxIdleConnsPerHost: 4, MaxConnsPerHost: 4}
	client := &nethttp.Client{Transport: tr, Timeout: 10 * time.Second}
	const workers, n = 4, 1000
	var mu sync.Mutex
	var maxClientUS int64
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += workers {
				method, path, _, status := schedule(i)
				var body io.Reader
				if method == "POST" {
					body = strings.NewReader(strings.Repeat("secret-body ", 40))
				}
				req, err := nethttp.NewRequest(method, "http://"+rec.Addr()+path+"?s="+strconv.Itoa(status)+"&token=secret-query", body)
				if err != nil {
					t.Error(err)
					return
				}
				req.Header.Set("Authorization", "Bearer secret-auth")
				req.Header.Set("Cookie", "session=secret-cookie")
				start := time.Now()
				resp, err := client.Do(req)
				if err != nil {
					t.Error(err)
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				us := time.Since(start).Microseconds() + 1
				mu.Lock()
				maxClientUS = max(maxClientUS, us)
				mu.Unlock()
				if resp.StatusCode != status {
					t.Errorf("request %d: status %d, want %d", i, resp.StatusCode, status)
				}
			}
		}()
	}
	wg.Wait()
	tr.CloseIdleConnections()
	rec.Close()
	if t.Failed() {
		t.FailNow()
	}
	samples := rec.Samples(capBytes)

	proto, err := http.New(http.Config{})
	if err != nil {
		t.Fatal(err)
	}
	tracker := l7.NewTracker(l7.Config{Protocols: []l7.Protocol{proto}})
	conns := map[uint64]bool{}
	for _, s := range samples {
		tracker.Sample(s)
		conns[s.Key.Cookie] = true
	}
	for c := range conns {
		tracker.Closed(l7.ConnKey{Cookie: c}, samples[len(samples)-1].Msg.NS)
	}
	got := map[string]uint32{}
	var failed uint32
	var out []flow.Requests
	tracker.Take(samples[len(samples)-1].Msg.NS, func(_ l7.ConnKey, rs []flow.Requests) {
		for _, r := range rs {
			got[fmt.Sprintf("%s %s %s %d", r.Method, r.Path, r.Host, r.Status)] += r.Count
			failed += r.Failed
			if r.Latency == nil || int64(r.Latency.MaxMicros) > maxClientUS {
				t.Errorf("%s %s: latency %+v, the client's slowest took %d µs", r.Method, r.Path, r.Latency, maxClientUS)
			}
			out = append(out, r)
		}
	})
	want := map[string]uint32{}
	for i := range n {
		method, _, template, status := schedule(i)
		want[fmt.Sprintf("%s %s 127.0.0.1 %d", method, template, status)]++
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("groups\n%v\nwant\n%v", got, want)
	}
	if failed != 40 {
		t.Errorf("failed %d, want 40", failed)
	}
	st := tracker.Stats()
	if p := st.Protocols[0]; p.Requests != n || p.Unparsed != 0 || p.Dropped != 0 || p.Unanswered != 0 || p.Conns != uint64(len(conns)) {
		t.Errorf("stats %+v (%d connections)", p, len(conns))
	}
	js, _ := json.Marshal(out)
	if bytes.Contains(js, []byte("secret")) {
		t.Errorf("a secret reached the output: %s", js)
	}

	if *rewrite {
		writeSeeds(t, samples)
	}
}

// writeSeeds writes the first requests of each recorded connection as
// seeds for FuzzHTTP (one connection each) and FuzzTracker (all of them
// interleaved, cookies 0-3).
func writeSeeds(t *testing.T, samples []l7.Sample) {
	perConn := map[uint64][]l7.Sample{}
	var mixed []l7.Sample
	for _, s := range samples {
		c := s.Key.Cookie
		if c > 3 || len(perConn[c]) >= 40 {
			continue
		}
		perConn[c] = append(perConn[c], s)
		mixed = append(mixed, s)
	}
	for c, ss := range perConn {
		if err := l7test.WriteCorpusFile("testdata/fuzz/FuzzHTTP", fmt.Sprintf("nethttp-conn%d", c), l7test.Encode(ss)); err != nil {
			t.Fatal(err)
		}
	}
	if err := l7test.WriteCorpusFile("../testdata/fuzz/FuzzTracker", "nethttp-4conns", l7test.Encode(mixed)); err != nil {
		t.Fatal(err)
	}
}
