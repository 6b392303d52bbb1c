// Package l7test records real traffic as the kernel would sample it and
// encodes message sequences for fuzz corpora, for the tests of the l7
// parsers and tracker; it replays them (Replay, Shapes, Bench), and its
// Fuzz is every parser's fuzz harness, with the invariants all keep.
//
// A Recorder is a TCP proxy on 127.0.0.1 in front of a real server: each
// Read on either side is one message, timestamped when it returned, as a
// send/recv tracepoint sees the calls of the side it watches.
package l7test

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/flowlens/flowlens/internal/flow"
	"github.com/flowlens/flowlens/internal/l7"
)

// Encode writes samples as fuzz input: per message a header (flags: bit 0
// from the server, bit 1 gap, bits 2-3 the connection, bit 4 early; the NS
// delta in µs; the visible and the hidden byte counts, 16 bits each) and
// the visible bytes. Connections are Key.Cookie 0 to 3, each a client's
// socket: its sends are the client's messages, and their Seq follows from
// their lengths (Decode).
func Encode(samples []l7.Sample) []byte {
	var out []byte
	var last uint64
	for _, s := range samples {
		flags := byte(s.Key.Cookie&3) << 2
		if s.Msg.Dir == l7.FromServer {
			flags |= 1
		}
		if s.Msg.Gap {
			flags |= 2
		}
		if s.Early {
			flags |= 16
		}
		delta := min((s.Msg.NS-min(last, s.Msg.NS))/1000, 0xffff)
		last = s.Msg.NS
		data := s.Msg.Data[:min(len(s.Msg.Data), 0xffff)]
		hidden := min(s.Msg.Len-len(data), 0xffff)
		out = append(out, flags)
		out = binary.BigEndian.AppendUint16(out, uint16(delta))
		out = binary.BigEndian.AppendUint16(out, uint16(len(data)))
		out = binary.BigEndian.AppendUint16(out, uint16(hidden))
		out = append(out, data...)
	}
	return out
}

// Decode reads what Encode wrote, as far as it is whole; any input
// decodes to something, so fuzzers can feed it. Data alias b. A send's Seq
// is its connection's bytes sent up to its end; a receive's is those sent
// before it, and as many again as it holds when it is early (it answers a
// send still to come).
func Decode(b []byte) []l7.Sample {
	var out []l7.Sample
	var sent [4]uint32
	ns := uint64(1e9)
	for len(b) >= 7 {
		flags := b[0]
		ns += uint64(binary.BigEndian.Uint16(b[1:])) * 1000
		n := int(binary.BigEndian.Uint16(b[3:]))
		hidden := int(binary.BigEndian.Uint16(b[5:]))
		b = b[7:]
		n = min(n, len(b))
		conn := flags >> 2 & 3
		s := l7.Sample{
			Key:  l7.ConnKey{Cookie: uint64(conn), Role: flow.RoleClient},
			Send: flags&1 == 0,
			Msg:  l7.Message{Dir: l7.FromClient, NS: ns, Len: n + hidden, Data: b[:n:n], Gap: flags&2 != 0},
		}
		if s.Send {
			sent[conn] += uint32(s.Msg.Len)
			s.Seq = sent[conn]
		} else {
			s.Msg.Dir, s.Seq, s.Early = l7.FromServer, sent[conn], flags&16 != 0
			if s.Early {
				s.Seq += uint32(s.Msg.Len)
			}
		}
		out = append(out, s)
		b = b[n:]
	}
	return out
}

// WriteCorpusFile writes data as a seed of the fuzz target whose corpus
// directory is dir (testdata/fuzz/FuzzX).
func WriteCorpusFile(dir, name string, data []byte) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("corpus dir: %w", err)
	}
	body := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", data)
	if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
		return fmt.Errorf("corpus file: %w", err)
	}
	return nil
}

// Recorder is a loopback proxy that records both sides' bytes.
type Recorder struct {
	ln     net.Listener
	target string
	start  time.Time
	wg     sync.WaitGroup

	mu      sync.Mutex
	conns   int
	samples []recorded
}

type recorded struct {
	conn int
	dir  l7.Dir
	ns   uint64
	data []byte
}

// NewRecorder listens on 127.0.0.1 and forwards each connection to
// target; it stops when the test ends.
func NewRecorder(t testing.TB, target string) *Recorder {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("recorder listen: %v", err)
	}
	r := &Recorder{ln: ln, target: target, start: time.Now()}
	r.wg.Add(1)
	go r.accept(t)
	t.Cleanup(r.Close)
	return r
}

// Addr is where clients connect.
func (r *Recorder) Addr() string { return r.ln.Addr().String() }

// Close stops accepting and waits for the connections to end (their
// clients must close them; each is bounded to a minute).
func (r *Recorder) Close() {
	r.ln.Close()
	r.wg.Wait()
}

func (r *Recorder) accept(t testing.TB) {
	defer r.wg.Done()
	for {
		c, err := r.ln.Accept()
		if err != nil {
			return
		}
		s, err := net.DialTimeout("tcp", r.target, 5*time.Second)
		if err != nil {
			t.Errorf("recorder dial: %v", err)
			c.Close()
			return
		}
		deadline := time.Now().Add(time.Minute)
		c.SetDeadline(deadline)
		s.SetDeadline(deadline)
		r.mu.Lock()
		id := r.conns
		r.conns++
		r.mu.Unlock()
		var pipes sync.WaitGroup
		pipes.Add(2)
		go r.pipe(&pipes, id, l7.FromClient, c, s)
		go r.pipe(&pipes, id, l7.FromServer, s, c)
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			pipes.Wait()
			c.Close()
			s.Close()
		}()
	}
}

// pipe copies src to dst, recording each read; at src's end it ends dst's
// writing side, so each side sees the other close as it did.
func (r *Recorder) pipe(done *sync.WaitGroup, id int, dir l7.Dir, src, dst net.Conn) {
	defer done.Done()
	buf := make([]byte, 64<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			ns := uint64(time.Since(r.start)) + 1e9
			r.mu.Lock()
			r.samples = append(r.samples, recorded{conn: id, dir: dir, ns: ns, data: append([]byte(nil), buf[:n]...)})
			r.mu.Unlock()
			if _, werr := dst.Write(buf[:n]); werr != nil {
				err = werr
			}
		}
		if err != nil {
			if tc, ok := dst.(*net.TCPConn); ok && errors.Is(err, io.EOF) {
				tc.CloseWrite()
			} else {
				dst.Close()
				src.Close()
			}
			return
		}
	}
}

// Samples returns what was recorded, in order, as the kernel would sample
// it: Data the first capBytes bytes of each read, Len all of them. The
// connection's number is Key.Cookie.
func (r *Recorder) Samples(capBytes int) []l7.Sample {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]l7.Sample, 0, len(r.samples))
	for _, s := range r.samples {
		out = append(out, l7.Sample{
			Key: l7.ConnKey{Cookie: uint64(s.conn)},
			Msg: l7.Message{Dir: s.dir, NS: s.ns, Len: len(s.data), Data: s.data[:min(len(s.data), capBytes)]},
		})
	}
	return out
}
