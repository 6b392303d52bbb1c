package http

import (
	"fmt"
	"math"
	"strings"
	"testing"

	"github.com/flowlens/flowlens/internal/l7"
)

// msg is a message whose Data is its first capBytes bytes (all when 0),
// as the kernel captures it.
func msg(dir l7.Dir, ns uint64, payload string, capBytes int) l7.Message {
	data := []byte(payload)
	if capBytes > 0 && len(data) > capBytes {
		data = data[:capBytes]
	}
	return l7.Message{Dir: dir, NS: ns, Len: len(payload), Data: data}
}

func cli(ns uint64, payload string) l7.Message { return msg(l7.FromClient, ns, payload, 0) }
func srv(ns uint64, payload string) l7.Message { return msg(l7.FromServer, ns, payload, 0) }

// show prints a request as "METHOD path host status start-respon[ failed]".
func show(r l7.Request) string {
	s := fmt.Sprintf("%s %s %s %d %d-%d", r.Info.Method, r.Info.Path, r.Info.Host, r.Info.Status, r.StartNS, r.ResponNS)
	if r.Failed {
		s += " failed"
	}
	for _, k := range []string{"user-agent", "x-tenant"} {
		if v, ok := r.Info.Headers[k]; ok {
			s += " " + k + "=" + v
		}
	}
	return s
}

// feed runs messages through a new parser; it expires what is pending at
// the end when expireAt is not 0.
func feed(t *testing.T, cfg Config, msgs []l7.Message, expireAt uint64) ([]string, error) {
	t.Helper()
	proto, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	p := proto.New()
	var done []l7.Request
	for _, m := range msgs {
		if done, err = p.Feed(m, done); err != nil {
			break
		}
	}
	if expireAt != 0 {
		done = p.Expire(expireAt, done)
	}
	var got []string
	for _, r := range done {
		got = append(got, show(r))
	}
	return got, err
}

const (
	getUser  = "GET /users/42?token=s3cret HTTP/1.1\r\nHost: api.example.com:8080\r\nUser-Agent: curl/8.5\r\nCookie: session=abc\r\nAuthorization: Bearer xyz\r\n\r\n"
	ok5      = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n\r\nhello"
	notFound = "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"
	oops     = "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n\r\noops"
)

func TestParser(t *testing.T) {
	longHeaders := "GET /orders/0b8e6a6e-7d3c-4c39-9d0f-3f1a2b4c5d6e/items HTTP/1.1\r\nHost: shop.local\r\n" +
		"X-Padding: " + strings.Repeat("p", 400) + "\r\n\r\n"
	bigBody := "HTTP/1.1 200 OK\r\nContent-Length: 10000\r\n\r\n" + strings.Repeat("b", 10000)
	chunked := "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n1a;ext=1\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nX-Trailer: t\r\n\r\n"
	post := "POST /upload HTTP/1.1\r\nHost: h\r\nContent-Length: 1000\r\n\r\n" + strings.Repeat("x", 1000)
	tests := []struct {
		name     string
		cfg      Config
		msgs     []l7.Message
		expireAt uint64
		want     []string
		wantErr  error
	}{{
		name: "keep-alive: three requests, secrets and query dropped, port dropped",
		msgs: []l7.Message{
			cli(100, getUser), srv(150, ok5),
			cli(200, getUser), srv(260, notFound),
			cli(300, getUser), srv(370, oops),
		},
		want: []string{
			"GET /users/{id} api.example.com 200 100-150",
			"GET /users/{id} api.example.com 404 200-260",
			"GET /users/{id} api.example.com 503 300-370 failed",
		},
	}, {
		name: "pipelined: two requests in one write, responses in one read",
		msgs: []l7.Message{
			cli(100, getUser+"DELETE /users/7 HTTP/1.1\r\nHost: api.example.com\r\n\r\n"),
			srv(200, ok5+notFound),
		},
		want: []string{
			"GET /users/{id} api.example.com 200 100-200",
			"DELETE /users/{id} api.example.com 404 100-200",
		},
	}, {
		name: "split: headers across three writes, response across two reads",
		msgs: []l7.Message{
			cli(100, "GET /a HT"), cli(110, "TP/1.1\r\nHost: h\r\n"), cli(120, "\r\n"),
			srv(200, "HTTP/1.1 200 OK\r\nContent-Le"), srv(210, "ngth: 3\r\n\r\nab"), srv(220, "c"),
			cli(300, "GET /b HTTP/1.1\r\n\r\n"), srv(400, "HTTP/1.1 204 No Content\r\n\r\n"),
		},
		want: []string{"GET /a h 200 100-200", "GET /b  204 300-400"},
	}, {
		name: "an empty line after a POST body, in its write or the next (RFC 9112 2.2), is not a request",
		msgs: []l7.Message{
			cli(100, "POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\nhi\r\n"), srv(150, notFound),
			cli(200, "POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\nhi\r"), cli(210, "\nGET /b HTTP/1.1\r\n\r\n"),
			srv(250, notFound+notFound),
			cli(300, "\nGET /c HTTP/1.1\r\n\r\n"), srv(350, notFound),
		},
		want: []string{"POST /a h 404 100-150", "POST /a h 404 200-250", "GET /b  404 200-250", "GET /c  404 300-350"},
	}, {
		name: "capped sample of long headers: method and path kept, framing resynchronised",
		msgs: []l7.Message{
			msg(l7.FromClient, 100, longHeaders, 256), srv(200, ok5),
			msg(l7.FromClient, 300, longHeaders, 256), srv(400, notFound),
		},
		want: []string{
			"GET /orders/{id}/items shop.local 200 100-200",
			"GET /orders/{id}/items shop.local 404 300-400",
		},
	}, {
		name: "capped request line: the cut segment is not kept",
		msgs: []l7.Message{
			msg(l7.FromClient, 100, "GET /files/"+strings.Repeat("name", 80)+" HTTP/1.1\r\n\r\n", 64),
			srv(200, notFound),
		},
		want: []string{"GET /files/...  404 100-200"},
	}, {
		name: "large body skipped by count though only 256 bytes are seen",
		msgs: []l7.Message{
			cli(100, getUser), msg(l7.FromServer, 200, bigBody, 256),
			cli(300, getUser), srv(400, ok5),
		},
		want: []string{
			"GET /users/{id} api.example.com 200 100-200",
			"GET /users/{id} api.example.com 200 300-400",
		},
	}, {
		name: "request body skipped by count, in its own capped write",
		msgs: []l7.Message{
			cli(100, post[:strings.Index(post, "\r\n\r\n")+4]),
			msg(l7.FromClient, 110, strings.Repeat("x", 1000), 256),
			srv(200, "HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n"),
			cli(300, getUser), srv(400, ok5),
		},
		want: []string{"POST /upload h 201 100-200", "GET /users/{id} api.example.com 200 300-400"},
	}, {
		name: "chunked response with extension and trailer, then the next request",
		msgs: []l7.Message{
			cli(100, getUser), srv(200, chunked),
			cli(300, getUser), srv(400, notFound),
		},
		want: []string{
			"GET /users/{id} api.example.com 200 100-200",
			"GET /users/{id} api.example.com 404 300-400",
		},
	}, {
		name: "chunked body not visible: resynchronised at the next status line",
		msgs: []l7.Message{
			cli(100, getUser), msg(l7.FromServer, 200, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2000\r\n"+strings.Repeat("c", 0x2000)+"\r\n0\r\n\r\n", 256),
			cli(300, getUser), srv(400, notFound),
		},
		want: []string{
			"GET /users/{id} api.example.com 200 100-200",
			"GET /users/{id} api.example.com 404 300-400",
		},
	}, {
		name: "100-continue is not the final response",
		msgs: []l7.Message{
			cli(100, "PUT /blob/abcdef0123456789 HTTP/1.1\r\nHost: s3\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n"),
			srv(150, "HTTP/1.1 100 Continue\r\n\r\n"),
			cli(160, "data"),
			srv(250, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
		},
		want: []string{"PUT /blob/{id} s3 200 100-250"},
	}, {
		name: "HEAD response has no body though it gives a length",
		msgs: []l7.Message{
			cli(100, "HEAD /x HTTP/1.1\r\n\r\n"), srv(200, "HTTP/1.1 200 OK\r\nContent-Length: 999\r\n\r\n"),
			cli(300, "GET /x HTTP/1.1\r\n\r\n"), srv(400, notFound),
		},
		want: []string{"HEAD /x  200 100-200", "GET /x  404 300-400"},
	}, {
		name: "304 has no body",
		msgs: []l7.Message{
			cli(100, "GET /x HTTP/1.1\r\n\r\n"), srv(200, "HTTP/1.1 304 Not Modified\r\nContent-Length: 50\r\n\r\n"),
			cli(300, "GET /x HTTP/1.1\r\n\r\n"), srv(400, notFound),
		},
		want: []string{"GET /x  304 100-200", "GET /x  404 300-400"},
	}, {
		name: "gap: the other side's framing is lost, resynchronised on the next start lines",
		msgs: []l7.Message{
			cli(100, getUser), msg(l7.FromServer, 200, bigBody, 256),
			{Dir: l7.FromServer, NS: 250, Len: 300, Data: []byte(strings.Repeat("b", 300)), Gap: true},
			cli(300, getUser), srv(400, ok5),
		},
		want: []string{
			"GET /users/{id} api.example.com 200 100-200",
			"GET /users/{id} api.example.com 200 300-400",
		},
	}, {
		name: "never answered: expired as failed, status 0",
		msgs: []l7.Message{cli(100, getUser), cli(200, getUser), srv(300, ok5)},
		// the first is answered at 300; the second expires
		expireAt: math.MaxUint64,
		want: []string{
			"GET /users/{id} api.example.com 200 100-300",
			"GET /users/{id} api.example.com 0 200-0 failed",
		},
	}, {
		name:     "expiry takes only what was sent before its time",
		msgs:     []l7.Message{cli(100, getUser), cli(200, getUser)},
		expireAt: 150,
		want:     []string{"GET /users/{id} api.example.com 0 100-0 failed"},
	}, {
		name: "101 switching protocols: what follows is not HTTP and not an error",
		msgs: []l7.Message{
			cli(100, "GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"),
			srv(200, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n"),
			cli(300, "\x81\x85binary frame"), srv(400, "\x81\x05hello"),
		},
		want: []string{"GET /ws  101 100-200"},
	}, {
		name: "response body until close (HTTP/1.0, no length)",
		msgs: []l7.Message{
			cli(100, "GET / HTTP/1.0\r\n\r\n"), srv(200, "HTTP/1.0 200 OK\r\n\r\n<html>"), srv(210, "more body GET / HTTP/1.1\r\n"),
		},
		want: []string{"GET /  200 100-200"},
	}, {
		name: "allow-listed headers kept, credentials never",
		cfg:  Config{Headers: []string{"User-Agent", "X-Tenant"}},
		msgs: []l7.Message{cli(100, getUser), srv(150, ok5)},
		want: []string{"GET /users/{id} api.example.com 200 100-150 user-agent=curl/8.5"},
	}, {
		name: "a response with no request seen is not counted, and framing goes on",
		msgs: []l7.Message{srv(50, ok5), cli(100, getUser), srv(150, notFound)},
		want: []string{"GET /users/{id} api.example.com 404 100-150"},
	}, {
		name:    "garbage where a request starts is an error",
		msgs:    []l7.Message{cli(100, getUser), srv(150, ok5), cli(200, "\x16\x03\x01\x02\x00 not http")},
		want:    []string{"GET /users/{id} api.example.com 200 100-150"},
		wantErr: errRequestLine,
	}, {
		name:    "garbage where a response starts is an error",
		msgs:    []l7.Message{cli(100, getUser), srv(150, "SSH-2.0-OpenSSH_9.6\r\n")},
		wantErr: errStatusLine,
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := feed(t, tt.cfg, tt.msgs, tt.expireAt)
			if err != tt.wantErr {
				t.Fatalf("error %v, want %v", err, tt.wantErr)
			}
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}

func TestPendingBound(t *testing.T) {
	// MaxPending+10 pipelined requests, then as many responses: the ones
	// past the bound are dropped (counted), and no response pairs with
	// the wrong request: the last kept request gets response MaxPending.
	p := (&Protocol{}).New()
	var done []l7.Request
	var err error
	n := l7.MaxPending + 10
	for i := range n {
		if done, err = p.Feed(cli(uint64(i+1), fmt.Sprintf("GET /r%d HTTP/1.1\r\n\r\n", i)), done); err != nil {
			t.Fatal(err)
		}
	}
	if got := p.(l7.Dropper).TakeDropped(); got != 10 {
		t.Fatalf("dropped %d, want 10", got)
	}
	for i := range n {
		status := 200 + i%100
		if done, err = p.Feed(srv(uint64(1000+i), fmt.Sprintf("HTTP/1.1 %d X\r\nContent-Length: 0\r\n\r\n", status)), done); err != nil {
			t.Fatal(err)
		}
	}
	if len(done) != l7.MaxPending {
		t.Fatalf("%d answered, want %d", len(done), l7.MaxPending)
	}
	for i, r := range done {
		if want := fmt.Sprintf("/r%d", i); r.Info.Path != want || r.Info.Status != 200+i%100 {
			t.Fatalf("answer %d: %s %d, want %s %d", i, r.Info.Path, r.Info.Status, want, 200+i%100)
		}
	}
	// Drained: the next request is kept and answered again.
	done, _ = p.Feed(cli(5000, "GET /again HTTP/1.1\r\n\r\n"), done[:0])
	done, _ = p.Feed(srv(5001, notFound), done)
	if len(done) != 1 || done[0].Info.Path != "/again" {
		t.Fatalf("after draining: %v", done)
	}
}

func TestDetect(t *testing.T) {
	proto := &Protocol{}
	for _, tt := range []struct {
		data string
		want bool
	}{
		{"GET / HTTP/1.1\r\n", true},
		{"OPTIONS * HTTP/1.0\n", true},
		{"HTTP/1.1 200 OK\r\n", true},
		{"HTTP/1.0 404\r\n", true},
		{"GET / HTTP/2.0\r\n", false},
		{"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", false},
		{"GET foo\r\n", false}, // a Redis inline command
		{"*2\r\n$3\r\nGET\r\n$3\r\nfoo\r\n", false},
		{"GET /very/long/target/cut/by/the/cap", false},
		{"HTTP/1.1 99 X\r\n", false},
		{"\x16\x03\x01\x00\xa5\x01", false},
		{"", false},
	} {
		if got := proto.Detect(l7.Message{Data: []byte(tt.data), Len: len(tt.data)}); got != tt.want {
			t.Errorf("Detect(%q) = %v, want %v", tt.data, got, tt.want)
		}
	}
}

func TestNewRefusesCredentials(t *testing.T) {
	for _, h := range []string{"Cookie", "authorization", "Set-Cookie", "Proxy-Authorization"} {
		if _, err := New(Config{Headers: []string{h}}); err == nil {
			t.Errorf("New accepted %q", h)
		}
	}
	if _, err := New(Config{Headers: []string{"bad name"}}); err == nil {
		t.Error("New accepted a header name with a space")
	}
	if _, err := New(Config{Headers: []string{"User-Agent"}}); err != nil {
		t.Error(err)
	}
}
