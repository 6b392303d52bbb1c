package cli

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/flowlens/flowlens/internal/filter"
	"github.com/flowlens/flowlens/internal/flow"
	"github.com/flowlens/flowlens/internal/server"
)

// maxLine bounds one line of the API's answer.
const maxLine = 1 << 20

func newObserveCmd() *cobra.Command {
	var (
		client clientConfig
		follow bool
		last   int
		output string
		since  string
		until  string
	)
	client.Server = server.DefaultListen
	filters := map[string]*[]string{}
	cmd := &cobra.Command{
		Use:   "observe",
		Short: "Print flows from a running flowlens, like hubble observe",
		Example: `  flowlens observe --last 20
  flowlens observe --follow --protocol tcp --verdict refused,timeout
  flowlens observe -o json --to-port 53
  flowlens observe --protocol http --http-status 5xx --http-path '/api/*'
  flowlens observe --dns-rcode nxdomain --dns-query '*.example.com'
  flowlens observe --since 10m --verdict reset --server hub:4245
  flowlens observe --server node-1:4245 --tls-ca ca.pem --tls-cert me.pem --tls-key me-key.pem`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			p, err := newPrinter(output, cmd.OutOrStdout())
			if err != nil {
				return err
			}
			q := url.Values{}
			for name, vals := range filters {
				if len(*vals) > 0 {
					q[name] = *vals
				}
			}
			// Validate here for a clear error before any request.
			if _, err := filter.Parse(q); err != nil {
				return err
			}
			if follow {
				q.Set("follow", "1")
			}
			if since != "" {
				q.Set("since", since)
			}
			if until != "" {
				q.Set("until", until)
			}
			// A time window is the selection: --last 20 applies to it only when asked.
			inWindow := since != "" || until != ""
			if last >= 0 && (!follow && !inWindow || cmd.Flags().Changed("last")) {
				q.Set("last", strconv.Itoa(last))
			}
			c, err := client.open()
			if err != nil {
				return err
			}
			return observe(cmd.Context(), c, "/api/v1/flows?"+q.Encode(), p)
		},
	}
	client.Flags(cmd.Flags())
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing new flows")
	cmd.Flags().IntVar(&last, "last", 20, "print the last N matching flows (-1: all held)")
	cmd.Flags().StringVarP(&output, "output", "o", "compact", "compact, json or table")
	cmd.Flags().StringVar(&since, "since", "", "only flows that ended since this time: RFC 3339, or a duration ago (10m); a hub with --data-dir answers from its history")
	cmd.Flags().StringVar(&until, "until", "", "only flows that ended before this time: RFC 3339, or a duration ago")
	for _, p := range filter.Params {
		filters[p.Name] = cmd.Flags().StringSlice(p.Name, nil, p.Usage)
	}
	return cmd
}

// clientConfig is how observe reaches the API: the flags matching up's.
type clientConfig struct {
	Server                 string
	TLS                    bool
	TLSCA, TLSCert, TLSKey string
	TLSServerName          string
	TokenFile              string
}

// Flags registers the client's flags.
func (c *clientConfig) Flags(fs *pflag.FlagSet) {
	fs.StringVar(&c.Server, "server", c.Server, "flowlens' API: host:port or unix:/path")
	fs.BoolVar(&c.TLS, "tls", c.TLS, "speak TLS to a host:port server (implied by the other --tls flags)")
	fs.StringVar(&c.TLSCA, "tls-ca", c.TLSCA, "CA bundle (PEM) the server's certificate must chain to (default: the system's)")
	fs.StringVar(&c.TLSCert, "tls-cert", c.TLSCert, "client certificate (PEM) for a server started with --tls-client-ca")
	fs.StringVar(&c.TLSKey, "tls-key", c.TLSKey, "private key (PEM) of --tls-cert")
	fs.StringVar(&c.TLSServerName, "tls-server-name", c.TLSServerName, "name the server's certificate must carry (default: the host of --server)")
	fs.StringVar(&c.TokenFile, "token-file", c.TokenFile, "file holding the bearer token the server asks for")
}

// apiClient asks one flowlens API.
type apiClient struct {
	http  *http.Client
	base  string // scheme://host
	token string // "Bearer …", or ""
}

func (c clientConfig) open() (*apiClient, error) {
	addr, err := server.ParseAddress(c.Server)
	if err != nil {
		return nil, fmt.Errorf("--server: %w", err)
	}
	tr := &http.Transport{}
	out := &apiClient{http: &http.Client{Transport: tr}, base: "http://" + addr.Addr}
	useTLS := c.TLS || c.TLSCA != "" || c.TLSCert != "" || c.TLSKey != "" || c.TLSServerName != ""
	switch {
	case addr.Network == "unix":
		if useTLS {
			return nil, errors.New("--tls flags are for a host:port server; a unix socket is guarded by its mode")
		}
		out.base = "http://flowlens"
		tr.DialContext = func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", addr.Addr)
		}
	case useTLS:
		cfg := &tls.Config{ServerName: c.TLSServerName, MinVersion: tls.VersionTLS12}
		if c.TLSCA != "" {
			if cfg.RootCAs, err = server.LoadCertPool(c.TLSCA); err != nil {
				return nil, err
			}
		}
		if c.TLSCert != "" || c.TLSKey != "" {
			kp, err := tls.LoadX509KeyPair(c.TLSCert, c.TLSKey)
			if err != nil {
				return nil, fmt.Errorf("load client certificate: %w", err)
			}
			cfg.Certificates = []tls.Certificate{kp}
		}
		tr.TLSClientConfig = cfg
		out.base = "https://" + addr.Addr
	}
	if c.TokenFile != "" {
		tok, err := server.ReadToken(c.TokenFile)
		if err != nil {
			return nil, err
		}
		out.token = "Bearer " + string(tok)
	}
	return out, nil
}

func (c *apiClient) get(ctx context.Context, path string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+path, nil)
	if err != nil {
		return nil, err
	}
	if c.token != "" {
		req.Header.Set("Authorization", c.token)
	}
	resp, err := c.http.Do(req)
	if errors.Is(err, os.ErrPermission) {
		return nil, fmt.Errorf("ask flowlens: %w (the socket is root's, as flows name processes: run as root)", err)
	}
	if err != nil {
		return nil, fmt.Errorf("ask flowlens: %w", err)
	}
	return resp, nil
}

// apiLine is one line of /api/v1/flows: a flow, or a lost-records marker.
type apiLine struct {
	flow.Record
	Lost *server.LostRecords `json:"lost_records"`
}

func observe(ctx context.Context, c *apiClient, path string, p printer) error {
	resp, err := c.get(ctx, path)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("flowlens answered %s: %s", resp.Status, clean(string(b)))
	}
	br := bufio.NewReaderSize(resp.Body, maxLine)
	for {
		raw, rerr := br.ReadSlice('\n')
		if errors.Is(rerr, bufio.ErrBufferFull) {
			return fmt.Errorf("read flows: a line longer than %d bytes", maxLine)
		}
		if raw = trimNewline(raw); len(raw) > 0 {
			var l apiLine
			if err := json.Unmarshal(raw, &l); err != nil {
				return fmt.Errorf("decode flow: %w", err)
			}
			if l.Lost != nil {
				err = p.lost(l.Lost, raw)
			} else {
				err = p.print(&l.Record, raw)
			}
			if err != nil {
				return err
			}
		}
		// Nothing more at hand: show what was read before waiting.
		if br.Buffered() == 0 || rerr != nil {
			if err := p.flush(); err != nil {
				return err
			}
		}
		switch {
		case rerr == nil:
		case errors.Is(rerr, io.EOF) || ctx.Err() != nil:
			return nil
		default:
			return fmt.Errorf("read flows: %w", rerr)
		}
	}
}

func trimNewline(b []byte) []byte {
	if n := len(b); n > 0 && b[n-1] == '\n' {
		return b[:n-1]
	}
	return b
}
