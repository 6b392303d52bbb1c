package cluster

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// KubeVersion is the Kubernetes release hack/kube/build.sh builds.
const KubeVersion = "v1.37.2"

// ControlPlane is a real etcd and kube-apiserver on 127.0.0.1, started by
// StartControlPlane and stopped at t.Cleanup. No controller, scheduler or
// kubelet runs: tests create every object, including status, themselves.
type ControlPlane struct {
	// Kubeconfig is the path of an admin (system:masters) kubeconfig.
	Kubeconfig string
	// Client and RESTConfig talk to the apiserver as that admin.
	Client     kubernetes.Interface
	RESTConfig *rest.Config
	// URL is the apiserver's https://127.0.0.1:<port>; EtcdURL etcd's client URL.
	URL     string
	EtcdURL string
	// ServiceCIDR is --service-cluster-ip-range.
	ServiceCIDR string
	// BinDir holds etcd, kube-apiserver and kubectl.
	BinDir string
	// Dir holds certificates, kubeconfigs, etcd data and process logs.
	Dir string

	ca            *ca
	apiserverArgs []string

	mu        sync.Mutex
	etcd      *process
	apiserver *process
}

// StartControlPlane builds (once, cached) or finds the binaries, starts etcd
// and kube-apiserver on free loopback ports and waits until the apiserver is
// ready. Set FLOWLENS_KUBE_BIN to a directory holding etcd, kube-apiserver
// and kubectl to skip hack/kube/build.sh.
func StartControlPlane(t testing.TB) *ControlPlane {
	t.Helper()
	if testing.Short() {
		t.Skip("-short (make unit): starts a real etcd and kube-apiserver; `sudo make test` runs it")
	}
	start := time.Now()
	bin, err := kubeBinaries(t)
	if err != nil {
		t.Fatalf("cluster: control plane binaries: %v", err)
	}
	cp := &ControlPlane{BinDir: bin, Dir: t.TempDir(), ServiceCIDR: "10.96.0.0/16"}
	onTeardown(t, func() {
		if t.Failed() {
			cp.dumpLogs(t)
		}
		cp.stopAll()
		// t.TempDir would remove it too, but not when a signal ends the run.
		os.RemoveAll(cp.Dir)
	})
	if err := cp.startEtcd(); err != nil {
		t.Fatalf("cluster: %v", err)
	}
	etcdUp := time.Now()
	if err := cp.prepareAPIServer(); err != nil {
		t.Fatalf("cluster: %v", err)
	}
	if err := cp.Start(); err != nil {
		t.Fatalf("cluster: %v", err)
	}
	t.Logf("cluster: control plane ready at %s in %v (etcd %v)", cp.URL, time.Since(start).Round(time.Millisecond), etcdUp.Sub(start).Round(time.Millisecond))
	return cp
}

// kubeBinaries runs hack/kube/build.sh, which builds only what is missing and
// prints the bin directory on its last line.
func kubeBinaries(t testing.TB) (string, error) {
	if dir := os.Getenv("FLOWLENS_KUBE_BIN"); dir != "" {
		return dir, nil
	}
	script, err := findRepoFile("hack/kube/build.sh")
	if err != nil {
		return "", err
	}
	var stdout bytes.Buffer
	cmd := exec.Command("bash", script)
	// Progress goes straight to stderr: a cold build takes minutes, and a
	// silent test would look hung.
	cmd.Stdout, cmd.Stderr = &stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("%s: %w", script, err)
	}
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	return lines[len(lines)-1], nil
}

// findRepoFile looks for rel in the working directory and its parents (go
// test runs in the package directory, somewhere below the repository root).
func findRepoFile(rel string) (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		p := filepath.Join(dir, rel)
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("%s not found above the working directory", rel)
		}
		dir = parent
	}
}

// freePort asks the kernel for a free loopback port. Another process could
// take it before we bind it; on this single-tenant test machine that is rare
// enough not to retry.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func (cp *ControlPlane) startEtcd() error {
	clientPort, err := freePort()
	if err != nil {
		return err
	}
	peerPort, err := freePort()
	if err != nil {
		return err
	}
	cp.EtcdURL = fmt.Sprintf("http://127.0.0.1:%d", clientPort)
	peer := fmt.Sprintf("http://127.0.0.1:%d", peerPort)
	data := filepath.Join(cp.Dir, "etcd")
	p, err := startProcess("etcd", filepath.Join(cp.Dir, "etcd.log"), filepath.Join(cp.BinDir, "etcd"),
		"--name=e2e",
		"--data-dir="+data,
		"--listen-client-urls="+cp.EtcdURL,
		"--advertise-client-urls="+cp.EtcdURL,
		"--listen-peer-urls="+peer,
		"--initial-advertise-peer-urls="+peer,
		"--initial-cluster=e2e="+peer,
		"--log-level=warn",
		// Test data need not survive a power cut; fsync dominates write
		// latency on a VM disk.
		"--unsafe-no-fsync",
	)
	if err != nil {
		return err
	}
	cp.etcd = p
	err = waitFor(30*time.Second, p, func() error {
		resp, err := http.Get(cp.EtcdURL + "/health")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("status %s", resp.Status)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("etcd not healthy: %w\n%s", err, tail(p.logPath, 20))
	}
	return nil
}

// prepareAPIServer writes certificates and the admin kubeconfig and fixes the
// apiserver's flags, so that Start can (re)start it on the same port.
func (cp *ControlPlane) prepareAPIServer() error {
	port, err := freePort()
	if err != nil {
		return err
	}
	cp.URL = fmt.Sprintf("https://127.0.0.1:%d", port)
	if cp.ca, err = newCA(); err != nil {
		return err
	}
	pki := filepath.Join(cp.Dir, "pki")
	if err := os.MkdirAll(pki, 0o700); err != nil {
		return err
	}
	caFile := filepath.Join(pki, "ca.crt")
	if err := os.WriteFile(caFile, cp.ca.certPEM, 0o644); err != nil {
		return err
	}
	// The first service IP is what in-cluster clients use for
	// kubernetes.default; include it so the certificate also fits them.
	servingCert, servingKey, err := cp.ca.issue("kube-apiserver", nil,
		[]net.IP{net.IPv4(127, 0, 0, 1), net.IPv4(10, 96, 0, 1)},
		[]string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"}, true)
	if err != nil {
		return err
	}
	servingCertFile, servingKeyFile := filepath.Join(pki, "apiserver.crt"), filepath.Join(pki, "apiserver.key")
	if err := os.WriteFile(servingCertFile, servingCert, 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(servingKeyFile, servingKey, 0o600); err != nil {
		return err
	}
	saKey, saPub := filepath.Join(pki, "sa.key"), filepath.Join(pki, "sa.pub")
	if err := writeServiceAccountKeys(saKey, saPub); err != nil {
		return err
	}

	cp.apiserverArgs = []string{
		"--etcd-servers=" + cp.EtcdURL,
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		fmt.Sprintf("--secure-port=%d", port),
		"--tls-cert-file=" + servingCertFile,
		"--tls-private-key-file=" + servingKeyFile,
		"--client-ca-file=" + caFile,
		"--authorization-mode=RBAC",
		// No controller-manager creates service account tokens or default
		// service accounts, so the admission plugin would reject every pod.
		"--disable-admission-plugins=ServiceAccount",
		// Nothing else may write the kubernetes Service's endpoints, and
		// 127.0.0.1 is no address a pod could reach anyway.
		"--endpoint-reconciler-type=none",
		"--service-cluster-ip-range=" + cp.ServiceCIDR,
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file=" + saPub,
		"--service-account-signing-key-file=" + saKey,
		"--profiling=false",
		"--v=1",
	}

	cp.Kubeconfig = filepath.Join(cp.Dir, "admin.kubeconfig")
	if err := cp.writeCertKubeconfig(cp.Kubeconfig, "flowlens-e2e-admin", []string{"system:masters"}); err != nil {
		return err
	}
	if cp.RESTConfig, err = clientcmd.BuildConfigFromFlags("", cp.Kubeconfig); err != nil {
		return fmt.Errorf("load admin kubeconfig: %w", err)
	}
	cp.RESTConfig.QPS, cp.RESTConfig.Burst = 100, 200
	if cp.Client, err = kubernetes.NewForConfig(cp.RESTConfig); err != nil {
		return fmt.Errorf("admin client: %w", err)
	}
	return nil
}

// Start starts the apiserver (again) with the same flags and port, against
// the same etcd, and waits until /readyz answers ok and Service
// default/kubernetes exists: the apiserver's bootstrap controller creates it
// only after /readyz first answers ok, and every real cluster has it.
func (cp *ControlPlane) Start() error {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	if cp.apiserver != nil && !cp.apiserver.exited() {
		return errors.New("kube-apiserver is already running")
	}
	// Appends, so that the log of a restarted apiserver keeps the first run.
	p, err := startProcess("kube-apiserver", filepath.Join(cp.Dir, "kube-apiserver.log"),
		filepath.Join(cp.BinDir, "kube-apiserver"), cp.apiserverArgs...)
	if err != nil {
		return err
	}
	cp.apiserver = p
	rc := cp.Client.Discovery().RESTClient()
	err = waitFor(90*time.Second, p, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		body, err := rc.Get().AbsPath("/readyz").DoRaw(ctx)
		if err != nil {
			return fmt.Errorf("%w: %s", err, body)
		}
		_, err = cp.Client.CoreV1().Services(metav1.NamespaceDefault).Get(ctx, "kubernetes", metav1.GetOptions{})
		return err
	})
	if err != nil {
		return fmt.Errorf("kube-apiserver not ready: %w\n%s", err, tail(p.logPath, 30))
	}
	return nil
}

// Stop stops the apiserver alone (etcd keeps running and keeps the data):
// SIGTERM, then SIGKILL after 3 s. It stops listening at once, but with
// watches open it would drain them for 20 s more before exiting; tests stop
// it to simulate an outage, which must last as long as they say.
func (cp *ControlPlane) Stop() error {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	if cp.apiserver == nil || cp.apiserver.exited() {
		return errors.New("kube-apiserver is not running")
	}
	cp.apiserver.stop(3 * time.Second)
	return nil
}

func (cp *ControlPlane) stopAll() {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	if cp.apiserver != nil {
		cp.apiserver.stop(10 * time.Second)
	}
	if cp.etcd != nil {
		cp.etcd.stop(10 * time.Second)
	}
}

func (cp *ControlPlane) dumpLogs(t testing.TB) {
	for _, name := range []string{"etcd.log", "kube-apiserver.log"} {
		t.Logf("cluster: last lines of %s:\n%s", name, tail(filepath.Join(cp.Dir, name), 40))
	}
}

// Kubectl returns a kubectl command using the admin kubeconfig; pass
// "--kubeconfig=..." in args to act as someone else.
func (cp *ControlPlane) Kubectl(args ...string) *exec.Cmd {
	cmd := exec.Command(filepath.Join(cp.BinDir, "kubectl"), args...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+cp.Kubeconfig)
	return cmd
}

// UserKubeconfig writes a kubeconfig that authenticates with a client
// certificate for user and groups, signed by the cluster CA. A user named
// "system:serviceaccount:<ns>:<name>" matches RBAC subjects of kind
// ServiceAccount, so this also stands in for a service account.
func (cp *ControlPlane) UserKubeconfig(t testing.TB, user string, groups ...string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "user.kubeconfig")
	if err := cp.writeCertKubeconfig(path, user, groups); err != nil {
		t.Fatalf("cluster: kubeconfig for %s: %v", user, err)
	}
	return path
}

// ServiceAccountKubeconfig creates the service account if needed and writes a
// kubeconfig holding a bound token for it, obtained from the TokenRequest API
// as a kubelet would. The token is valid for an hour.
func (cp *ControlPlane) ServiceAccountKubeconfig(t testing.TB, namespace, name string) string {
	t.Helper()
	ctx := context.Background()
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name}}
	if _, err := cp.Client.CoreV1().ServiceAccounts(namespace).Create(ctx, sa, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatalf("cluster: create service account %s/%s: %v", namespace, name, err)
	}
	exp := int64(3600)
	tr, err := cp.Client.CoreV1().ServiceAccounts(namespace).CreateToken(ctx, name,
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &exp}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("cluster: token for %s/%s: %v", namespace, name, err)
	}
	cfg := cp.kubeconfig("system:serviceaccount:"+namespace+":"+name, &clientcmdapi.AuthInfo{Token: tr.Status.Token})
	path := filepath.Join(t.TempDir(), "sa.kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		t.Fatalf("cluster: write kubeconfig: %v", err)
	}
	return path
}

func (cp *ControlPlane) writeCertKubeconfig(path, user string, groups []string) error {
	cert, key, err := cp.ca.issue(user, groups, nil, nil, false)
	if err != nil {
		return err
	}
	cfg := cp.kubeconfig(user, &clientcmdapi.AuthInfo{ClientCertificateData: cert, ClientKeyData: key})
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		return fmt.Errorf("write kubeconfig %s: %w", path, err)
	}
	return nil
}

func (cp *ControlPlane) kubeconfig(user string, auth *clientcmdapi.AuthInfo) *clientcmdapi.Config {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["e2e"] = &clientcmdapi.Cluster{Server: cp.URL, CertificateAuthorityData: cp.ca.certPEM}
	cfg.AuthInfos[user] = auth
	cfg.Contexts["e2e"] = &clientcmdapi.Context{Cluster: "e2e", AuthInfo: user}
	cfg.CurrentContext = "e2e"
	return cfg
}

// process is a child process of the harness, logging to a file.
type process struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	done    chan struct{}
	err     error
}

func startProcess(name, logPath, bin string, args ...string) (*process, error) {
	log, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = log, log
	// Dies with the test process even if no cleanup runs (test timeout).
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		log.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &process{name: name, cmd: cmd, logPath: logPath, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		log.Close()
		close(p.done)
	}()
	return p, nil
}

func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop signals our own child by pid: SIGTERM, then SIGKILL after grace.
func (p *process) stop(grace time.Duration) {
	if p.exited() {
		return
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		p.cmd.Process.Kill()
		<-p.done
	}
}

// waitFor polls check until it succeeds, the process exits, or timeout.
func waitFor(timeout time.Duration, p *process, check func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := check()
		if err == nil {
			return nil
		}
		if p.exited() {
			return fmt.Errorf("%s exited: %v", p.name, p.err)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("after %v: %w", timeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// tail returns the last n lines of a log file.
func tail(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return err.Error()
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if len(lines) > n {
			lines = lines[1:]
		}
	}
	return strings.Join(lines, "\n")
}
