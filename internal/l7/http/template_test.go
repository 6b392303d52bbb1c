package http

import (
	"strings"
	"testing"
)

func TestTemplate(t *testing.T) {
	for _, tt := range []struct {
		target string
		cut    bool
		want   string
	}{
		{"/", false, "/"},
		{"", false, "/"},
		{"*", false, "*"},
		{"/users/42", false, "/users/{id}"},
		{"/users/42/", false, "/users/{id}/"},
		{"/users/42?x=1&token=secret", false, "/users/{id}"},
		{"/a#frag", false, "/a"},
		{"/orders/0B8E6A6E-7D3C-4C39-9D0F-3F1A2B4C5D6E", false, "/orders/{id}"},
		{"/commits/9fceb02d0ae598e95dc970b74767f19372d61af8", false, "/commits/{id}"},
		{"/blob/deadbeef12", false, "/blob/{id}"},
		{"/t/eyJhbGciOiJIUzI1NiJ9abc1", false, "/t/{id}"},
		{"/t/dGhpcyBpcyBhIHRva2Vu==1", false, "/t/{id}"},
		{"/api/v1/users", false, "/api/v1/users"},
		{"/deadbeef", false, "/deadbeef"},                             // hex, but no digit: a word
		{"/documentation-index", false, "/documentation-index"},       // long, but no digit
		{"/static/app.3f9a1c2b.js", false, "/static/app.3f9a1c2b.js"}, // dots: a file name
		{"http://example.com:8080/users/7?q", false, "/users/{id}"},
		{"http://example.com", false, "/"},
		{"/files/abc", true, "/files/..."},
		{"/files/abc?q=1", true, "/files/abc"},
		{"/" + strings.Repeat("segment/", 30), false, "/" + strings.Repeat("segment/", 16) + "..."},
	} {
		got := string(appendTemplate(nil, []byte(tt.target), tt.cut))
		if got != tt.want {
			t.Errorf("template(%q, cut %v) = %q, want %q", tt.target, tt.cut, got, tt.want)
		}
		if len(got) > maxPath+4 {
			t.Errorf("template(%q) is %d bytes", tt.target, len(got))
		}
	}
}

func TestHost(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"api.example.com", "api.example.com"},
		{"API.Example.com:8443", "api.example.com"},
		{"[::1]:8080", "::1"},
		{"[fe80::1]", "fe80::1"},
		{"10.0.0.1:80", "10.0.0.1"},
		{"bad host", ""},
		{"evil\x00.com", ""},
		{"[::1", ""},
		{strings.Repeat("a", 300), ""},
	} {
		if got := string(appendHost(nil, []byte(tt.in))); got != tt.want {
			t.Errorf("host(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
