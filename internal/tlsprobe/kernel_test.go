package tlsprobe

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/flowlens/flowlens/internal/cgroup"
	"github.com/flowlens/flowlens/internal/datapath"
	"github.com/flowlens/flowlens/internal/flow"
	"github.com/flowlens/flowlens/internal/testutil"
)

const (
	goRequests     = 20 // by the Go client, on one keep-alive connection
	curlRequests   = 7  // by one curl (SSL_write/SSL_read), on one connection
	pythonRequests = 5  // by Python's http.client (SSL_write_ex/SSL_read_ex), on one connection
)

// pythonClient makes pythonRequests GETs of /py/<i> on one connection.
const pythonClient = `
import http.client, ssl, sys
c = http.client.HTTPSConnection(sys.argv[1], int(sys.argv[2]), context=ssl._create_unverified_context())
for i in range(int(sys.argv[3])):
    c.request("GET", "/py/%d" % i)
    c.getresponse().read()
`

// startGoServer runs the gotls server and returns its address.
func startGoServer(t *testing.T, bin string) netip.AddrPort {
	t.Helper()
	cmd := exec.Command(bin, "-serve", "127.0.0.1:0")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("server: %v", err)
	}
	addr, err := netip.ParseAddrPort(strings.TrimSpace(strings.TrimPrefix(line, "listening ")))
	if err != nil {
		t.Fatalf("server said %q: %v", line, err)
	}
	return addr
}

// tlsStreams are the TLS plaintext samples of one server port: message
// starts on the client sockets, and every socket's stream joined (Go's
// server reads one byte ahead, so a request may come in two reads).
type tlsStreams struct {
	clientSends map[datapath.L7Source][]string // first line of each message a client wrote
	joined      map[string]*bytes.Buffer       // by "<role> <send|recv>"
	roles       map[flow.Role]int
}

func (s *tlsStreams) add(x *datapath.L7Sample) {
	dir := "recv"
	if x.Send {
		dir = "send"
	}
	key := fmt.Sprintf("%s %s", x.Role, dir)
	if s.joined[key] == nil {
		s.joined[key] = &bytes.Buffer{}
	}
	s.joined[key].Write(x.Data)
	s.roles[x.Role]++
	if x.Role == flow.RoleClient && x.Send {
		line, _, _ := bytes.Cut(x.Data, []byte("\r\n"))
		s.clientSends[x.Source] = append(s.clientSends[x.Source], string(line))
	}
}

// readTLS reads samples until the ring is momentarily empty: every sample
// of the clients, which have exited, was written before they did.
func readTLS(t *testing.T, d *datapath.Datapath, port uint16) *tlsStreams {
	t.Helper()
	s := &tlsStreams{clientSends: map[datapath.L7Source][]string{}, joined: map[string]*bytes.Buffer{}, roles: map[flow.Role]int{}}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		x, err := d.ReadL7(time.Now().Add(500 * time.Millisecond))
		if errors.Is(err, datapath.ErrTimeout) {
			return s
		}
		if err != nil {
			t.Fatal(err)
		}
		if x.Source.TLS() && x.Local.Addr().IsLoopback() && (x.Local.Port() == port || x.Remote.Port() == port) {
			s.add(&x)
		}
	}
	t.Fatal("the L7 ring never ran empty")
	return nil
}

// The whole kernel path: uprobes attached by a Prober to a Go executable
// (crypto/tls) and to the host's libssl (curl), sampled by the datapath:
// every request line the clients wrote, exactly once, as plaintext.
func TestKernelSamplesTLSPlaintext(t *testing.T) {
	testutil.RequirePrivileged(t)
	curl, err := exec.LookPath("curl")
	if err != nil {
		t.Fatal("curl is required (apt-get install -y curl)")
	}
	bin := buildGo(t, "gotls")
	mount, err := cgroup.ReadMount()
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	d, err := datapath.Open(datapath.Config{CgroupMount: mount.Dir}, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	progs, err := ProgramsOf(d.Uprobes())
	if err != nil {
		t.Fatal(err)
	}
	p := New(progs, log)
	t.Cleanup(func() { p.Close() })
	if err := p.Scan(); err != nil { // the host's libssl, for curl
		t.Fatal(err)
	}
	addr := startGoServer(t, bin)
	if err := p.Scan(); err != nil { // the server's executable, also the client's
		t.Fatal(err)
	}
	if st := p.Stats(); st.Attached[KindGoTLS] < 1 || st.Attached[KindOpenSSL] < 1 {
		t.Fatalf("attached %v, skipped %v: want the Go executable and libssl", st.Attached, st.Skipped)
	}

	url := fmt.Sprintf("https://%s", addr)
	if out, err := exec.Command(bin, "-get", url+"/go/items", "-n", fmt.Sprint(goRequests)).CombinedOutput(); err != nil {
		t.Fatalf("go client: %v\n%s", err, out)
	}
	args := []string{"--http1.1", "-k", "-sS", "-o", "/dev/null", "--max-time", "30"}
	for i := range curlRequests {
		args = append(args, fmt.Sprintf("%s/curl/%d", url, i))
	}
	if out, err := exec.Command(curl, args...).CombinedOutput(); err != nil {
		t.Fatalf("curl: %v\n%s", err, out)
	}
	// Python's ssl module calls the _ex functions, curl does not. Not a
	// declared dependency of the tests: without it, they go untested.
	pyRequests := 0
	if python, err := exec.LookPath("python3"); err != nil {
		t.Log("no python3: SSL_write_ex/SSL_read_ex not exercised")
	} else {
		cmd := exec.Command(python, "-c", pythonClient, addr.Addr().String(), fmt.Sprint(addr.Port()), fmt.Sprint(pythonRequests))
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("python: %v\n%s", err, out)
		}
		pyRequests = pythonRequests
	}

	s := readTLS(t, d, addr.Port())
	wantGo := strings.Repeat("GET /go/items HTTP/1.1\n", goRequests)
	if got := strings.Join(s.clientSends[datapath.L7GoTLS], "\n") + "\n"; got != wantGo {
		t.Errorf("Go client wrote (crypto/tls samples):\n%s\nwant %d× GET /go/items", got, goRequests)
	}
	var wantSSL []string
	for i := range curlRequests {
		wantSSL = append(wantSSL, fmt.Sprintf("GET /curl/%d HTTP/1.1", i))
	}
	for i := range pyRequests {
		wantSSL = append(wantSSL, fmt.Sprintf("GET /py/%d HTTP/1.1", i))
	}
	if got := s.clientSends[datapath.L7OpenSSL]; !slices.Equal(got, wantSSL) {
		t.Errorf("curl and python wrote (OpenSSL samples):\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(wantSSL, "\n"))
	}
	count := func(key, what string) int {
		if b := s.joined[key]; b != nil {
			return strings.Count(b.String(), what)
		}
		return 0
	}
	for _, c := range []struct {
		key, what string
		want      int
	}{
		{"server recv", "GET /go/items HTTP/1.1\r\n", goRequests},
		{"server recv", "GET /curl/", curlRequests},
		{"server recv", "GET /py/", pyRequests},
		{"server send", "HTTP/1.1 200 OK\r\n", goRequests + curlRequests + pyRequests},
		{"client recv", "HTTP/1.1 200 OK\r\n", goRequests + curlRequests + pyRequests},
	} {
		if got := count(c.key, c.what); got != c.want {
			t.Errorf("%s: %d× %q, want %d", c.key, got, c.what, c.want)
		}
	}
	if s.roles[flow.RoleUnknown] != 0 {
		t.Errorf("%d samples of sockets with no role", s.roles[flow.RoleUnknown])
	}
}
