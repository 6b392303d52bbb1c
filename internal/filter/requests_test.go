package filter

import (
	"net/url"
	"reflect"
	"strings"
	"testing"

	"github.com/flowlens/flowlens/internal/flow"
)

func TestRequestFilters(t *testing.T) {
	recs := []flow.Record{
		{Protocol: flow.TCP, Requests: []flow.Requests{
			{Protocol: flow.HTTP, Method: "GET", Path: "/users/{id}", Status: 200, Count: 900},
			{Protocol: flow.HTTP, Method: "POST", Path: "/orders", Status: 503, Count: 40, Failed: 40},
		}},
		{Protocol: flow.TCP, Requests: []flow.Requests{
			{Protocol: flow.HTTP, Method: "GET", Path: "/orders/{id}/items", Status: 404, Count: 60},
		}},
		{Protocol: flow.UDP, Requests: []flow.Requests{
			{Protocol: flow.DNS, Query: "api.example.com", QType: "A", RCode: "noerror", Count: 3},
			{Protocol: flow.DNS, Query: "nope.Example.COM", QType: "A", RCode: "nxdomain", Count: 1},
		}},
		{Protocol: flow.TCP, Requests: []flow.Requests{{Protocol: flow.Redis, Method: "GET", Error: "WRONGTYPE", Count: 1, Failed: 1}}},
		{Protocol: flow.TCP}, // no requests
	}
	for _, tc := range []struct {
		query string
		want  []int
	}{
		{"protocol=http", []int{0, 1}},
		{"protocol=dns,redis", []int{2, 3}},
		{"protocol=tcp", []int{0, 1, 3, 4}},
		{"protocol=tcp&protocol=dns", []int{0, 1, 2, 3, 4}},
		{"protocol=postgres", nil},
		{"http-status=5xx", []int{0}},
		{"http-status=404", []int{1}},
		{"http-status=2XX,404", []int{0, 1}},
		{"http-method=get", []int{0, 1}},
		{"http-path=/orders*", []int{0, 1}},
		{"http-path=/orders/*/items", []int{1}},
		{"http-path=/users/{id}", []int{0}},
		// One group must match every request filter: the GET of record 0
		// is a 200, its 503 is a POST.
		{"http-status=5xx&http-method=GET", nil},
		{"http-status=5xx&http-method=POST&http-path=/orders", []int{0}},
		{"dns-rcode=NXDOMAIN", []int{2}},
		{"dns-query=*.example.com", []int{2}},
		{"dns-query=api.example.com.", []int{2}},
		{"dns-query=*.example.com&dns-rcode=servfail", nil},
		{"dns-query=nope.*&dns-rcode=nxdomain&protocol=udp", []int{2}},
		{"dns-rcode=noerror&http-status=200", nil}, // no group is both
	} {
		if got := selected(t, recs, tc.query); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: got %v, want %v", tc.query, got, tc.want)
		}
	}
	for _, bad := range []string{"protocol=ftp", "http-status=6xx", "http-status=abc", "http-status=99"} {
		q, _ := url.ParseQuery(bad)
		if _, err := Parse(q); err == nil {
			t.Errorf("%s: accepted", bad)
		}
	}
}

func TestGlob(t *testing.T) {
	for _, tc := range []struct {
		pattern, s string
		want       bool
	}{
		{"", "", true},
		{"*", "", true},
		{"*", "/a/b", true},
		{"/a", "/a", true},
		{"/a", "/ab", false},
		{"/a*", "/ab/c", true},
		{"*.example.com", "example.com", false},
		{"*.example.com", "a.b.example.com", true},
		{"a*b*c", "aXXbYYc", true},
		{"a*b*c", "aXXbYY", false},
		{"**", "x", true},
		{"a*a*a*a*b", strings.Repeat("a", 64), false},
	} {
		if got := glob(tc.pattern, tc.s); got != tc.want {
			t.Errorf("glob(%q, %q) = %v, want %v", tc.pattern, tc.s, got, tc.want)
		}
	}
}

// FuzzGlob checks glob against a plain recursive definition on short
// inputs, and that it never panics.
func FuzzGlob(f *testing.F) {
	f.Add("*.example.com", "api.example.com")
	f.Add("/users/*/x*", "/users/{id}/xy")
	f.Add("a*a*b", "aaaaab")
	f.Fuzz(func(t *testing.T, pattern, s string) {
		got := glob(pattern, s)
		if len(pattern) <= 12 && len(s) <= 16 {
			if want := globSlow(pattern, s); got != want {
				t.Fatalf("glob(%q, %q) = %v, want %v", pattern, s, got, want)
			}
		}
	})
}

func globSlow(p, s string) bool {
	if p == "" {
		return s == ""
	}
	if p[0] == '*' {
		for i := 0; i <= len(s); i++ {
			if globSlow(p[1:], s[i:]) {
				return true
			}
		}
		return false
	}
	return s != "" && p[0] == s[0] && globSlow(p[1:], s[1:])
}
