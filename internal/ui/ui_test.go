package ui

import (
	"bytes"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"testing"
)

func get(t *testing.T, h http.Handler, method, target string) *http.Response {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(method, target, nil))
	return rec.Result()
}

// assetRef finds what index.html loads.
var assetRef = regexp.MustCompile(`(?:src|href)="(/[^"]+)"`)

func TestServesIndexAndAssets(t *testing.T) {
	h := Handler(Dist())
	index, err := fs.ReadFile(Dist(), "index.html")
	if err != nil {
		t.Fatal(err)
	}
	for _, target := range []string{"/", "/?level=pod&sel=workload%3Ashop%2FDeployment%2Fapi", "/index.html"} {
		resp := get(t, h, http.MethodGet, target)
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK || !bytes.Equal(body, index) {
			t.Fatalf("GET %s: %s, %d bytes; want 200 with index.html's %d", target, resp.Status, len(body), len(index))
		}
		if got := resp.Header.Get("Content-Type"); got != "text/html; charset=utf-8" {
			t.Errorf("GET %s: Content-Type %q", target, got)
		}
		if got := resp.Header.Get("Cache-Control"); got != "no-cache" {
			t.Errorf("GET %s: Cache-Control %q, want no-cache", target, got)
		}
		if got := resp.Header.Get("Content-Security-Policy"); got != CSP {
			t.Errorf("GET %s: CSP %q", target, got)
		}
	}

	// Every asset index.html names is served, hashed ones cached for a year.
	refs := assetRef.FindAllStringSubmatch(string(index), -1)
	var hashed int
	for _, m := range refs {
		resp := get(t, h, http.MethodGet, m[1])
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s (named by index.html): %s", m[1], resp.Status)
		}
		if regexp.MustCompile(`^/assets/index-[A-Za-z0-9_-]{8}\.(js|css)$`).MatchString(m[1]) {
			hashed++
			if got := resp.Header.Get("Cache-Control"); got != cacheImmutable {
				t.Errorf("GET %s: Cache-Control %q, want %q", m[1], got, cacheImmutable)
			}
		}
	}
	if hashed != 2 {
		t.Errorf("index.html names %d content-hashed assets (%v), want the script and the stylesheet", hashed, refs)
	}
}

func TestRefusesWhatIsNotTheBundle(t *testing.T) {
	h := Handler(Dist())
	for _, target := range []string{"/nope", "/assets/", "/assets", "/../ui.go", "/assets/../../ui.go", "/api/v1/nothing"} {
		if resp := get(t, h, http.MethodGet, target); resp.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s: %s, want 404", target, resp.Status)
		}
	}
	resp := get(t, h, http.MethodHead, "/")
	if body, _ := io.ReadAll(resp.Body); resp.StatusCode != http.StatusOK || len(body) != 0 {
		t.Errorf("HEAD /: %s with %d bytes", resp.Status, len(body))
	}
}

// The bundle holds nothing that ties it to a machine: no absolute path
// (a build elsewhere would differ), no address beyond the page's origin.
func TestBundleIsPortable(t *testing.T) {
	err := fs.WalkDir(Dist(), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(Dist(), p)
		if err != nil {
			return err
		}
		wd, _ := os.Getwd()
		for _, bad := range [][]byte{[]byte(filepath.Dir(filepath.Dir(wd))), []byte("node_modules"), []byte("sourceMappingURL")} {
			if bytes.Contains(b, bad) {
				t.Errorf("%s holds %q", p, bad)
			}
		}
		if m := regexp.MustCompile(`(?:src|href|url\()=?"?(https?:)?//[a-z]`).Find(b); m != nil {
			t.Errorf("%s loads from another host: %q", p, m)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestBundleMatchesSource rebuilds ui/ (npm ci from the committed lockfile
// if node_modules is missing, then vite build into a temporary folder) and
// compares every file with the embedded bundle: a change to ui/ committed
// without its build fails here and in hack/check-generated.sh.
func TestBundleMatchesSource(t *testing.T) {
	if testing.Short() {
		t.Skip("rebuilds the bundle with npm: not in -short")
	}
	src, err := filepath.Abs("../../ui")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(src, "node_modules")); err != nil {
		run(t, src, "npm", "ci", "--no-audit", "--no-fund")
	}
	out := t.TempDir()
	run(t, src, "npx", "--no-install", "vite", "build", "--logLevel", "warn", "--emptyOutDir", "--outDir", out)
	built := files(t, os.DirFS(out))
	embedded := files(t, Dist())
	for name, b := range built {
		if e, ok := embedded[name]; !ok {
			t.Errorf("ui/ builds %s, which internal/ui/dist lacks: run make ui and commit", name)
		} else if !bytes.Equal(e, b) {
			t.Errorf("%s differs from what ui/ builds: run make ui and commit", name)
		}
	}
	for name := range embedded {
		if _, ok := built[name]; !ok {
			t.Errorf("internal/ui/dist holds %s, which ui/ no longer builds: run make ui and commit", name)
		}
	}
}

func run(t *testing.T, dir, name string, args ...string) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
}

func files(t *testing.T, fsys fs.FS) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	err := fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		out[p], err = fs.ReadFile(fsys, p)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(out) == 0 {
		t.Fatal("no files")
	}
	names := make([]string, 0, len(out))
	for n := range out {
		names = append(names, n)
	}
	slices.Sort(names)
	t.Logf("%d files: %v", len(names), names)
	return out
}
