// Package gobench parses `go test -bench` output.
package gobench

import (
	"bufio"
	"io"
	"regexp"
	"strconv"
	"strings"
)

// Result is one benchmark line.
type Result struct {
	Package string             `json:"package"`
	Name    string             `json:"name"`  // without the -GOMAXPROCS suffix
	Procs   int                `json:"procs"` // GOMAXPROCS it ran with
	N       int64              `json:"n"`
	Metrics map[string]float64 `json:"metrics"` // unit → value: ns/op, B/op, allocs/op, custom
}

var procsSuffix = regexp.MustCompile(`-(\d+)$`)

// Parse reads benchmark lines; "pkg:" lines set the package of the lines after them.
func Parse(r io.Reader) ([]Result, error) {
	var out []Result
	pkg := ""
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		if p, ok := strings.CutPrefix(line, "pkg: "); ok {
			pkg = strings.TrimSpace(p)
			continue
		}
		if !strings.HasPrefix(line, "Benchmark") {
			continue
		}
		f := strings.Fields(line)
		if len(f) < 4 || len(f)%2 != 0 {
			continue // a benchmark's own log line, or a failure
		}
		n, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil {
			continue
		}
		res := Result{Package: pkg, Name: f[0], Procs: 1, N: n, Metrics: map[string]float64{}}
		if m := procsSuffix.FindStringSubmatch(f[0]); m != nil {
			res.Procs, _ = strconv.Atoi(m[1])
			res.Name = strings.TrimSuffix(f[0], m[0])
		}
		ok := true
		for i := 2; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				ok = false
				break
			}
			res.Metrics[f[i+1]] = v
		}
		if ok {
			out = append(out, res)
		}
	}
	return out, sc.Err()
}
