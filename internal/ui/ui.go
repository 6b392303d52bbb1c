// Package ui embeds flowlens' web UI (built from ui/ by Vite into dist/,
// committed, so `go build` needs no npm) and serves it: index.html at /,
// the content-hashed assets with a year-long cache, everything under a
// strict Content-Security-Policy.
package ui

import (
	"bytes"
	"embed"
	"io/fs"
	"net/http"
	"path"
	"strings"
	"time"
)

//go:embed dist
var dist embed.FS

// Dist is the built bundle: index.html, favicon.svg and assets/.
func Dist() fs.FS {
	sub, err := fs.Sub(dist, "dist")
	if err != nil {
		panic(err) // the embed directive guarantees dist exists
	}
	return sub
}

// CSP lets the page load only what the flowlens port serves: its own
// script and stylesheet, no inline code, no other host (fonts included).
const CSP = "default-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'; object-src 'none'"

// Cache lifetimes: assets are named by their content's hash, so a new
// build has new names and they never need revalidating; index.html and
// the rest are revalidated on every load.
const (
	cacheImmutable  = "public, max-age=31536000, immutable"
	cacheRevalidate = "no-cache"
)

// Handler serves the bundle in fsys (Dist() in production).
func Handler(fsys fs.FS) http.Handler {
	return &handler{fsys: fsys}
}

type handler struct{ fsys fs.FS }

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	name := strings.TrimPrefix(path.Clean("/"+r.URL.Path), "/")
	if name == "" {
		name = "index.html"
	}
	b, err := fs.ReadFile(h.fsys, name)
	if err != nil {
		// A directory, or nothing: a deep link carries its state in the
		// query, so no other path is the page.
		http.NotFound(w, r)
		return
	}
	hd := w.Header()
	hd.Set("Content-Security-Policy", CSP)
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("Referrer-Policy", "no-referrer")
	if strings.HasPrefix(name, "assets/") {
		hd.Set("Cache-Control", cacheImmutable)
	} else {
		hd.Set("Cache-Control", cacheRevalidate)
	}
	// ServeContent sets the type from the extension and answers HEAD and
	// ranges; the zero time leaves Last-Modified out (embedded files
	// have none).
	http.ServeContent(w, r, name, time.Time{}, bytes.NewReader(b))
}
