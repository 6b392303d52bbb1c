package server

import (
	"bytes"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/pflag"
)

// DefaultListen is where `flowlens up` serves and `flowlens observe` asks
// unless told otherwise: a unix socket only root can connect to, because
// flows carry pids, commands and pod labels.
const DefaultListen = "unix:/run/flowlens/flowlens.sock"

// Config is where and how the API is served.
type Config struct {
	// Listen are the API's addresses: host:port (TCP) or unix:/path.
	Listen []string
	// MetricsListen, if set, serves only /metrics, /healthz and /readyz,
	// so metrics can be exposed without exposing flows.
	MetricsListen string
	// PprofListen, if set, serves only Go's runtime profiles
	// (/debug/pprof/), to find where the process spends its CPU and
	// memory. Off by default: a profile shows the process's code.
	PprofListen string
	// TLSCert and TLSKey make TCP API listeners serve TLS; TLSClientCA
	// then asks every client for a certificate signed by it.
	TLSCert, TLSKey, TLSClientCA string
	// TokenFile holds a bearer token TCP API listeners ask of every
	// request but health checks.
	TokenFile string
	Limits    Limits
}

// Limits bound what one client can cost the agent.
type Limits struct {
	MaxFollowers    int           // concurrent ?follow=1 streams
	MaxFilterValues int           // filter values in one request
	WriteTimeout    time.Duration // longest wait for a client to take a write
	// MaxHistoryRecords bounds the records one ?since= read returns from a
	// hub's history (they are held in memory while written).
	MaxHistoryRecords int
}

// DefaultConfig serves on DefaultListen with default limits.
func DefaultConfig() Config {
	return Config{Listen: []string{DefaultListen}, Limits: Limits{MaxFollowers: 64, MaxFilterValues: 256, WriteTimeout: 30 * time.Second,
		MaxHistoryRecords: 1 << 16}}
}

// Flags registers the API's flags.
func (c *Config) Flags(fs *pflag.FlagSet) {
	fs.StringSliceVar(&c.Listen, "listen", c.Listen, "addresses of the HTTP API: host:port (TCP) or unix:/path (mode 0600); repeat or comma-separate for several")
	fs.StringVar(&c.MetricsListen, "metrics-listen", c.MetricsListen, "address (host:port or unix:/path) serving only /metrics, /healthz and /readyz")
	c.PprofFlag(fs)
	fs.StringVar(&c.TLSCert, "tls-cert", c.TLSCert, "certificate (PEM) for TLS on the API's TCP listeners")
	fs.StringVar(&c.TLSKey, "tls-key", c.TLSKey, "private key (PEM) of --tls-cert")
	fs.StringVar(&c.TLSClientCA, "tls-client-ca", c.TLSClientCA, "CA bundle (PEM): API clients on TCP must present a certificate it signed")
	fs.StringVar(&c.TokenFile, "token-file", c.TokenFile, "file holding a bearer token API clients on TCP must send")
	fs.IntVar(&c.Limits.MaxFollowers, "max-followers", c.Limits.MaxFollowers, "concurrent ?follow=1 streams the API serves")
	fs.IntVar(&c.Limits.MaxFilterValues, "max-filter-values", c.Limits.MaxFilterValues, "filter values one API request may carry")
	fs.IntVar(&c.Limits.MaxHistoryRecords, "max-history-records", c.Limits.MaxHistoryRecords, "records one ?since= flows read returns at most (the newest; ask with ?last for fewer)")
	fs.DurationVar(&c.Limits.WriteTimeout, "api-write-timeout", c.Limits.WriteTimeout, "how long the API waits for a client to take a write before dropping it")
}

// PprofFlag registers --pprof-listen: every command has it, an agent's
// only API being its metrics.
func (c *Config) PprofFlag(fs *pflag.FlagSet) {
	fs.StringVar(&c.PprofListen, "pprof-listen", c.PprofListen, "address (host:port or unix:/path) serving Go's runtime profiles at /debug/pprof/; keep it on loopback or a unix socket")
}

// Listener is one opened address and what it serves.
type Listener struct {
	net.Listener
	MetricsOnly bool        // only /metrics and health
	PprofOnly   bool        // only /debug/pprof/
	Token       []byte      // bearer token every request but health must carry; nil: none
	tlsConfig   *tls.Config // the TLS listener's, where HTTP/2 is offered (grpc.go); nil: no TLS
}

// Address is a parsed listen or server address.
type Address struct {
	Network string // "tcp" or "unix"
	Addr    string // host:port or a path
}

// ParseAddress reads host:port as TCP and unix:/path (or an absolute path)
// as a unix socket.
func ParseAddress(s string) (Address, error) {
	if path, ok := strings.CutPrefix(s, "unix:"); ok || strings.HasPrefix(s, "/") {
		if !ok {
			path = s
		}
		if !filepath.IsAbs(path) {
			return Address{}, fmt.Errorf("address %q: a unix socket needs an absolute path", s)
		}
		return Address{"unix", filepath.Clean(path)}, nil
	}
	if _, _, err := net.SplitHostPort(s); err != nil {
		return Address{}, fmt.Errorf("address %q: want host:port or unix:/path: %w", s, err)
	}
	return Address{"tcp", s}, nil
}

func (a Address) String() string {
	if a.Network == "unix" {
		return "unix:" + a.Addr
	}
	return a.Addr
}

// Open opens every listener the config names; on error it closes those
// already open. TLS and the token guard TCP API listeners; a unix socket is
// guarded by its mode (0600: root only). With no Listen it serves the
// metrics listener alone (an agent, whose flows its hub serves).
func (c Config) Open(log *slog.Logger) ([]Listener, error) {
	if len(c.Listen) == 0 && c.MetricsListen == "" {
		return nil, errors.New("no address: --listen is empty")
	}
	tlsCfg, err := c.serverTLS()
	if err != nil {
		return nil, err
	}
	var token []byte
	if c.TokenFile != "" {
		if token, err = ReadToken(c.TokenFile); err != nil {
			return nil, err
		}
	}
	var out []Listener
	fail := func(err error) ([]Listener, error) {
		for _, l := range out {
			l.Close()
		}
		return nil, err
	}
	for _, s := range c.Listen {
		a, err := ParseAddress(s)
		if err != nil {
			return fail(err)
		}
		ln, err := listen(a)
		if err != nil {
			return fail(err)
		}
		l := Listener{Listener: ln}
		if a.Network == "tcp" {
			if tlsCfg != nil {
				l.Listener, l.tlsConfig = tls.NewListener(ln, tlsCfg), tlsCfg
			}
			l.Token = token
			if !isLoopback(ln.Addr()) && token == nil && (tlsCfg == nil || tlsCfg.ClientCAs == nil) {
				log.Warn("the flow API is open to anyone who reaches this address: use --tls-client-ca or --token-file", "listen", ln.Addr().String())
			}
		}
		out = append(out, l)
	}
	for _, o := range []struct {
		addr, name string
		l          Listener
	}{{c.MetricsListen, "metrics", Listener{MetricsOnly: true}}, {c.PprofListen, "pprof", Listener{PprofOnly: true}}} {
		if o.addr == "" {
			continue
		}
		a, err := ParseAddress(o.addr)
		if err != nil {
			return fail(fmt.Errorf("%s listener: %w", o.name, err))
		}
		if o.l.Listener, err = listen(a); err != nil {
			return fail(err)
		}
		out = append(out, o.l)
	}
	return out, nil
}

func isLoopback(a net.Addr) bool {
	t, ok := a.(*net.TCPAddr)
	return ok && t.IP.IsLoopback()
}

func (c Config) serverTLS() (*tls.Config, error) {
	switch {
	case c.TLSCert == "" && c.TLSKey == "" && c.TLSClientCA == "":
		return nil, nil
	case c.TLSCert == "" || c.TLSKey == "":
		return nil, errors.New("TLS needs both --tls-cert and --tls-key")
	}
	cert, err := tls.LoadX509KeyPair(c.TLSCert, c.TLSKey)
	if err != nil {
		return nil, fmt.Errorf("load TLS key pair: %w", err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if c.TLSClientCA != "" {
		if cfg.ClientCAs, err = LoadCertPool(c.TLSClientCA); err != nil {
			return nil, err
		}
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return cfg, nil
}

// LoadCertPool reads a PEM bundle of CA certificates.
func LoadCertPool(path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read CA bundle: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("CA bundle %s: no PEM certificate in it", path)
	}
	return pool, nil
}

// ReadToken reads a bearer token file: its content without surrounding
// whitespace, never empty.
func ReadToken(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read token: %w", err)
	}
	if b = bytes.TrimSpace(b); len(b) == 0 {
		return nil, fmt.Errorf("token file %s is empty", path)
	}
	return b, nil
}

func listen(a Address) (net.Listener, error) {
	if a.Network == "unix" {
		return listenUnix(a.Addr)
	}
	ln, err := net.Listen("tcp", a.Addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", a.Addr, err)
	}
	return ln, nil
}

// listenUnix binds a socket of mode 0600 at path. It binds in a private
// directory and renames the socket into place, so no one can connect while
// it still has the umask's mode. A live socket at path is another agent's
// and is left alone; a dead one is replaced.
func listenUnix(path string) (net.Listener, error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create socket directory: %w", err)
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode().Type() != os.ModeSocket {
			return nil, fmt.Errorf("listen on %s: exists and is not a socket", path)
		}
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close()
			return nil, fmt.Errorf("listen on %s: another process serves there", path)
		}
	}
	tmp, err := os.MkdirTemp(dir, ".flowlens-")
	if err != nil {
		return nil, fmt.Errorf("create socket directory: %w", err)
	}
	defer os.RemoveAll(tmp)
	bound := filepath.Join(tmp, "s")
	ln, err := net.Listen("unix", bound)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	ul := ln.(*net.UnixListener)
	ul.SetUnlinkOnClose(false) // it is unlinked under its final name
	if err := os.Chmod(bound, 0o600); err != nil {
		ul.Close()
		return nil, fmt.Errorf("chmod socket: %w", err)
	}
	if err := os.Rename(bound, path); err != nil {
		ul.Close()
		return nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	return &unixListener{UnixListener: ul, path: path}, nil
}

// unixListener removes its socket file when closed.
type unixListener struct {
	*net.UnixListener
	path string
}

func (l *unixListener) Close() error {
	err := l.UnixListener.Close()
	if rerr := os.Remove(l.path); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
		err = errors.Join(err, rerr)
	}
	return err
}

func (l *unixListener) Addr() net.Addr { return &net.UnixAddr{Name: l.path, Net: "unix"} }

// requireToken answers 401 to any request without the bearer token.
func requireToken(token []byte, stats *stats, next http.Handler) http.Handler {
	want := append([]byte("Bearer "), token...)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got := []byte(r.Header.Get("Authorization"))
		if subtle.ConstantTimeCompare(got, want) != 1 {
			stats.reject(rejectUnauthorized)
			w.Header().Set("WWW-Authenticate", `Bearer realm="flowlens"`)
			http.Error(w, "missing or wrong bearer token", http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r)
	})
}
