package server

import (
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	grpcstatus "google.golang.org/grpc/status"

	pb "github.com/flowlens/flowlens/api/flowlens/v1"
	"github.com/flowlens/flowlens/internal/ingest"
	"github.com/flowlens/flowlens/internal/ring"
	"github.com/flowlens/flowlens/internal/server/servertest"
)

// counting is a Receiver that counts batches.
type counting struct {
	mu      sync.Mutex
	batches int
}

func (c *counting) Receive(context.Context, *ingest.Batch) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.batches++
	return nil
}

func (*counting) Disconnected(ingest.Agent, error) {}

func (c *counting) n() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.batches
}

// serveGRPC serves cfg's listeners with the ingest service beside the API.
func serveGRPC(t *testing.T, cfg Config) ([]Listener, *counting) {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	lns, err := cfg.Open(log)
	if err != nil {
		t.Fatal(err)
	}
	recv := &counting{}
	icfg := ingest.DefaultConfig()
	g := grpc.NewServer(icfg.ServerOptions()...)
	ingest.New(icfg, recv, log).Register(g)
	s := newServer(ring.New(10), testLimits)
	s.SetGRPC(g)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, lns...) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return lns, recv
}

// pushOne sends a Hello and an empty batch 1 and returns the ack's seq.
func pushOne(t *testing.T, target string, creds credentials.TransportCredentials, token string) (uint64, error) {
	t.Helper()
	conn, err := grpc.NewClient(target, grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if token != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
	}
	st, err := pb.NewIngestClient(conn).Push(ctx)
	if err != nil {
		return 0, err
	}
	_ = st.Send(&pb.PushRequest{Msg: &pb.PushRequest_Hello{Hello: &pb.Hello{AgentId: "a", Incarnation: 1}}})
	_ = st.Send(&pb.PushRequest{Msg: &pb.PushRequest_Batch{Batch: &pb.Batch{Seq: 1}}})
	resp, err := st.Recv()
	if err != nil {
		return 0, err
	}
	return resp.GetAck().GetSeq(), nil
}

func TestGRPCAndJSONOnOneUnixSocket(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "hub.sock")
	_, recv := serveGRPC(t, Config{Listen: []string{"unix:" + sock}, Limits: testLimits})
	if seq, err := pushOne(t, "unix://"+sock, insecure.NewCredentials(), ""); err != nil || seq != 1 {
		t.Fatalf("gRPC over the socket: ack %d, %v", seq, err)
	}
	if code, body := status(t, unixClient(sock), "http://flowlens/api/v1/flows"); code != 200 {
		t.Fatalf("JSON over the same socket: %d %s", code, body)
	}
	if n := recv.n(); n != 1 {
		t.Fatalf("received %d batches", n)
	}
}

func TestGRPCNeedsTheToken(t *testing.T) {
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	lns, recv := serveGRPC(t, Config{Listen: []string{"127.0.0.1:0"}, TokenFile: tokenFile, Limits: testLimits})
	addr := lns[0].Addr().String()
	for token, want := range map[string]codes.Code{"": codes.Unauthenticated, "wrong": codes.Unauthenticated, "s3cret": codes.OK} {
		_, err := pushOne(t, "passthrough:///"+addr, insecure.NewCredentials(), token)
		if got := grpcstatus.Code(err); got != want {
			t.Errorf("token %q: %v, want %s", token, err, want)
		}
	}
	if code, _ := status(t, http.DefaultClient, "http://"+addr+"/api/v1/flows"); code != http.StatusUnauthorized {
		t.Errorf("JSON without the token: %d", code)
	}
	if code, _ := status(t, http.DefaultClient, "http://"+addr+"/healthz"); code != 200 {
		t.Errorf("health: %d", code)
	}
	if n := recv.n(); n != 1 {
		t.Fatalf("received %d batches, want the one with the token", n)
	}
}

func TestGRPCOverTLS(t *testing.T) {
	p := servertest.NewPKI(t)
	lns, _ := serveGRPC(t, Config{Listen: []string{"127.0.0.1:0"}, TLSCert: p.ServerCert, TLSKey: p.ServerKey, TLSClientCA: p.CA, Limits: testLimits})
	addr := lns[0].Addr().String()
	pool, err := LoadCertPool(p.CA)
	if err != nil {
		t.Fatal(err)
	}
	kp, err := tls.LoadX509KeyPair(p.ClientCert, p.ClientKey)
	if err != nil {
		t.Fatal(err)
	}
	creds := credentials.NewTLS(&tls.Config{RootCAs: pool, Certificates: []tls.Certificate{kp}})
	if seq, err := pushOne(t, "passthrough:///"+addr, creds, ""); err != nil || seq != 1 {
		t.Fatalf("gRPC over TLS: ack %d, %v", seq, err)
	}
	// The JSON API still answers HTTP/1 clients on the same port.
	if code, body := status(t, tlsClient(t, p, p.ClientCert, p.ClientKey), "https://"+addr+"/healthz"); code != 200 {
		t.Fatalf("JSON over TLS: %d %s", code, body)
	}
	// Without a client certificate, gRPC fails like HTTP does.
	if _, err := pushOne(t, "passthrough:///"+addr, credentials.NewTLS(&tls.Config{RootCAs: pool}), ""); grpcstatus.Code(err) != codes.Unavailable {
		t.Fatalf("without a client certificate: %v", err)
	}
}

func TestMetricsListenerServesNoGRPC(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "api.sock")
	metrics := filepath.Join(t.TempDir(), "metrics.sock")
	serveGRPC(t, Config{Listen: []string{"unix:" + sock}, MetricsListen: "unix:" + metrics, Limits: testLimits})
	if _, err := pushOne(t, "unix://"+metrics, insecure.NewCredentials(), ""); err == nil {
		t.Fatal("the metrics-only listener accepted gRPC")
	}
}
