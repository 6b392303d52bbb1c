package k8smeta

import (
	"cmp"
	"fmt"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	flag "github.com/spf13/pflag"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// Config says how to reach the API server.
type Config struct {
	// Kubeconfig is a kubeconfig path, or several separated like
	// $KUBECONFIG. Empty means in-cluster: the pod's service account.
	Kubeconfig string
	// ProbeInterval is how often the API server is asked whether it is
	// there; the cache is marked stale within about two intervals of it
	// going away. Default 2s.
	ProbeInterval time.Duration
}

const defaultProbeInterval = 2 * time.Second

// Flags registers --kubeconfig on fs, defaulting to $KUBECONFIG.
func (c *Config) Flags(fs *flag.FlagSet) {
	fs.StringVar(&c.Kubeconfig, "kubeconfig", cmp.Or(c.Kubeconfig, os.Getenv("KUBECONFIG")),
		"kubeconfig for Kubernetes metadata (in a pod, the service account is used without it)")
}

// Enabled reports whether there is a cluster to watch: a kubeconfig, or a
// pod's in-cluster environment.
func (c Config) Enabled() bool {
	return c.Kubeconfig != "" || os.Getenv("KUBERNETES_SERVICE_HOST") != ""
}

// restConfig loads the client configuration: the kubeconfig if set,
// otherwise the in-cluster service account.
func (c Config) restConfig() (*rest.Config, error) {
	if c.Kubeconfig == "" {
		rc, err := rest.InClusterConfig()
		if err != nil {
			return nil, fmt.Errorf("in-cluster kubernetes config: %w", err)
		}
		return rc, nil
	}
	rules := &clientcmd.ClientConfigLoadingRules{}
	// One path must exist (a typo should fail loudly); a list merges like
	// kubectl's $KUBECONFIG, where missing files are skipped.
	if paths := filepath.SplitList(c.Kubeconfig); len(paths) == 1 {
		rules.ExplicitPath = paths[0]
	} else {
		rules.Precedence = paths
	}
	rc, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{}).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("kubeconfig %s: %w", c.Kubeconfig, err)
	}
	return rc, nil
}

// apiServerHost splits a rest.Config Host ("https://host:port", or a bare
// "host[:port]") into host name and port, defaulting the port by scheme.
func apiServerHost(host string) (string, uint16, error) {
	if !strings.Contains(host, "://") {
		host = "https://" + host // rest.Config accepts a bare host[:port]
	}
	u, err := url.Parse(host)
	if err != nil {
		return "", 0, fmt.Errorf("API server address %q: %w", host, err)
	}
	port := u.Port()
	if port == "" {
		port = "443"
		if u.Scheme == "http" {
			port = "80"
		}
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil || u.Hostname() == "" {
		return "", 0, fmt.Errorf("API server address %q: no host or bad port", host)
	}
	return u.Hostname(), uint16(p), nil
}

// addrPorts pairs every address with port.
func addrPorts(addrs []netip.Addr, port uint16) []netip.AddrPort {
	out := make([]netip.AddrPort, 0, len(addrs))
	for _, a := range addrs {
		out = append(out, netip.AddrPortFrom(a, port))
	}
	return out
}
