package filter

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/flowlens/flowlens/internal/flow"
)

// groupFilter reports whether one request group is selected.
type groupFilter func(*flow.Requests) bool

func anyGroupOf(fs []groupFilter) groupFilter {
	return func(g *flow.Requests) bool {
		for _, f := range fs {
			if f(g) {
				return true
			}
		}
		return false
	}
}

// someGroup matches a record when one of its request groups matches every
// request filter: --http-status 5xx --http-path '/orders*' asks for
// failing requests to the orders, not for a record with some failure and
// some order.
func someGroup(fs []groupFilter) Filter {
	return func(r *flow.Record) bool {
	groups:
		for i := range r.Requests {
			for _, f := range fs {
				if !f(&r.Requests[i]) {
					continue groups
				}
			}
			return true
		}
		return false
	}
}

func httpStatusParam(v string) (groupFilter, error) {
	if len(v) == 3 && v[0] >= '1' && v[0] <= '5' && strings.EqualFold(v[1:], "xx") {
		class := int(v[0] - '0')
		return func(g *flow.Requests) bool { return g.Protocol == flow.HTTP && g.Status/100 == class }, nil
	}
	code, err := strconv.Atoi(v)
	if err != nil || code < 100 || code > 999 {
		return nil, fmt.Errorf("want a status code (404) or a class (1xx to 5xx)")
	}
	return func(g *flow.Requests) bool { return g.Protocol == flow.HTTP && g.Status == code }, nil
}

func httpMethodParam(v string) (groupFilter, error) {
	return func(g *flow.Requests) bool { return g.Protocol == flow.HTTP && strings.EqualFold(g.Method, v) }, nil
}

func httpPathParam(v string) (groupFilter, error) {
	return func(g *flow.Requests) bool { return g.Protocol == flow.HTTP && glob(v, g.Path) }, nil
}

func dnsRCodeParam(v string) (groupFilter, error) {
	v = strings.ToLower(v)
	return func(g *flow.Requests) bool { return g.Protocol == flow.DNS && g.RCode == v }, nil
}

func dnsQueryParam(v string) (groupFilter, error) {
	v = strings.ToLower(strings.TrimSuffix(v, "."))
	return func(g *flow.Requests) bool { return g.Protocol == flow.DNS && glob(v, strings.ToLower(g.Query)) }, nil
}

// glob reports whether s matches pattern, where * matches any run of
// bytes, '/' and '.' included, and every other byte itself. It runs in
// O(len(pattern)·len(s)) at worst: a pattern from a query cannot make it
// backtrack without bound.
func glob(pattern, s string) bool {
	p, i := 0, 0
	star, mark := -1, 0 // the last * seen, and where in s it started matching
	for i < len(s) {
		switch {
		case p < len(pattern) && pattern[p] == '*':
			star, mark = p, i
			p++
		case p < len(pattern) && pattern[p] == s[i]:
			p++
			i++
		case star >= 0: // let the last * take one more byte
			mark++
			p, i = star+1, mark
		default:
			return false
		}
	}
	for p < len(pattern) && pattern[p] == '*' {
		p++
	}
	return p == len(pattern)
}
