// Package browser drives Debian's headless Chromium for the UI's
// end-to-end tests (through the DevTools protocol, with chromedp), and
// records what the page did: every request it made, every console error,
// exception and CSP violation. Tests read the page's model, not pixels.
package browser

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
)

// ExecPath is Debian's Chromium (apt-get install chromium: hack/setup.sh).
const ExecPath = "/usr/bin/chromium"

// Browser is one headless Chromium with one tab.
type Browser struct {
	ctx context.Context
	mu  sync.Mutex
	// requests are the URLs the page asked for, in order.
	requests []string
	// problems are console errors, uncaught exceptions and CSP violations.
	problems []string
}

// Start runs Chromium with a fresh profile, closed when the test ends. The
// flags are those that work headless as root on these machines; the
// background-networking ones keep Chromium itself from calling Google.
func Start(t testing.TB) *Browser {
	t.Helper()
	if _, err := exec.LookPath(ExecPath); err != nil {
		t.Fatalf("no Chromium at %s (apt-get install chromium; make setup): %v", ExecPath, err)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(ExecPath),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1440, 900),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() {
		cancel()
		cancelAlloc()
	})
	b := &Browser{ctx: ctx}
	err := chromedp.Listen(ctx, func(ev any) {
		b.mu.Lock()
		defer b.mu.Unlock()
		switch e := ev.(type) {
		case *network.EventRequestWillBeSent:
			b.requests = append(b.requests, e.Request.URL)
		case *runtime.EventExceptionThrown:
			b.problems = append(b.problems, "exception: "+describe(e.ExceptionDetails))
		case *runtime.EventConsoleAPICalled:
			if e.Type == runtime.ConsoleAPICalledTypeError {
				b.problems = append(b.problems, fmt.Sprintf("console.error: %v", args(e.Args)))
			}
		case *log.EventEntryAdded:
			// CSP violations and failed loads are browser log entries.
			if e.Entry.Level == log.EntryLevelError || e.Entry.Source == log.EntrySourceSecurity {
				b.problems = append(b.problems, fmt.Sprintf("log %s/%s: %s %s", e.Entry.Source, e.Entry.Level, e.Entry.Text, e.Entry.URL))
			}
		}
	})
	if err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return b
}

func describe(d *runtime.ExceptionDetails) string {
	if d == nil {
		return "?"
	}
	if d.Exception != nil && d.Exception.Description != "" {
		return d.Exception.Description
	}
	return d.Text
}

func args(as []*runtime.RemoteObject) []string {
	out := make([]string, 0, len(as))
	for _, a := range as {
		if len(a.Value) > 0 {
			out = append(out, string(a.Value))
		} else {
			out = append(out, a.Description)
		}
	}
	return out
}

// Do runs actions in the tab, failing the test on error.
func (b *Browser) Do(t testing.TB, what string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// Open loads a page.
func (b *Browser) Open(t testing.TB, u string) {
	t.Helper()
	b.Do(t, "open "+u, chromedp.Navigate(u))
}

// Eval evaluates a JavaScript expression (awaiting a promise) into out.
func (b *Browser) Eval(t testing.TB, expr string, out any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	raw, err := chromedp.Run(ctx, chromedp.Evaluate[json.RawMessage](expr, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatalf("eval %s: %v", expr, err)
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			t.Fatalf("eval %s: decode %s: %v", expr, raw, err)
		}
	}
}

// WaitFor polls a JavaScript expression until it is true, failing the test
// after timeout with what last reads (another expression) says.
func (b *Browser) WaitFor(t testing.TB, what, expr, last string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		var ok bool
		b.Eval(t, "!!("+expr+")", &ok)
		if ok {
			return
		}
		if time.Now().After(deadline) {
			var state any
			b.Eval(t, last, &state)
			t.Fatalf("%s: not within %s; %s = %v; page problems: %v", what, timeout, last, state, b.Problems())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Screenshot writes a PNG of the viewport to dir/name.
func (b *Browser) Screenshot(t testing.TB, dir, name string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot %s", p)
}

// Requests returns the URLs the page requested so far.
func (b *Browser) Requests() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.requests...)
}

// Problems returns the console errors, exceptions and CSP violations so far.
func (b *Browser) Problems() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.problems...)
}

// Foreign returns the requests to any host but host (host:port). data:
// and blob: URLs (Chromium's own icons of form controls) leave nothing
// and are not counted.
func (b *Browser) Foreign(host string) []string {
	var out []string
	for _, r := range b.Requests() {
		u, err := url.Parse(r)
		if err == nil && (u.Scheme == "data" || u.Scheme == "blob") {
			continue
		}
		if err != nil || u.Host != host || (u.Scheme != "http" && u.Scheme != "https") {
			out = append(out, r)
		}
	}
	return out
}

// Context is the tab's context, for chromedp actions the helpers lack.
func (b *Browser) Context() context.Context { return b.ctx }
