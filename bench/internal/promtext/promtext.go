// Package promtext reads the Prometheus text exposition format, enough to
// compare an agent's counters before and after a run: every sample becomes
// "name{label="value",...}" (labels sorted) → value.
package promtext

import (
	"bufio"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
)

// Samples maps a series key to its value.
type Samples map[string]float64

// Parse reads an exposition. Comments, blank lines and timestamps are
// ignored.
func Parse(r io.Reader) (Samples, error) {
	out := Samples{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		key, rest, err := series(line)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
		f := strings.Fields(rest)
		if len(f) < 1 {
			return nil, fmt.Errorf("line %d: no value", n)
		}
		v, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
		out[key] = v
	}
	return out, sc.Err()
}

// series splits a sample line into its canonical key and what follows.
func series(line string) (key, rest string, err error) {
	i := strings.IndexAny(line, "{ \t")
	if i < 0 {
		return "", "", fmt.Errorf("no value in %q", line)
	}
	name := line[:i]
	if line[i] != '{' {
		return name, line[i:], nil
	}
	var labels []string
	s := line[i+1:]
	for {
		s = strings.TrimLeft(s, " ,")
		if strings.HasPrefix(s, "}") {
			s = s[1:]
			break
		}
		eq := strings.IndexByte(s, '=')
		if eq < 0 || eq+1 >= len(s) || s[eq+1] != '"' {
			return "", "", fmt.Errorf("bad label in %q", line)
		}
		lname := strings.TrimSpace(s[:eq])
		var val strings.Builder
		j := eq + 2
		for ; j < len(s) && s[j] != '"'; j++ {
			if s[j] == '\\' && j+1 < len(s) {
				j++
				switch s[j] {
				case 'n':
					val.WriteByte('\n')
				default:
					val.WriteByte(s[j])
				}
				continue
			}
			val.WriteByte(s[j])
		}
		if j >= len(s) {
			return "", "", fmt.Errorf("unterminated label value in %q", line)
		}
		labels = append(labels, lname+`="`+val.String()+`"`)
		s = s[j+1:]
	}
	slices.Sort(labels)
	if len(labels) == 0 {
		return name, s, nil
	}
	return name + "{" + strings.Join(labels, ",") + "}", s, nil
}

// Sum adds every series of the metric name.
func (s Samples) Sum(name string) float64 {
	var t float64
	for k, v := range s {
		if k == name || strings.HasPrefix(k, name+"{") {
			t += v
		}
	}
	return t
}

// Series returns the series of the metric name, key → value.
func (s Samples) Series(name string) map[string]float64 {
	out := map[string]float64{}
	for k, v := range s {
		if k == name || strings.HasPrefix(k, name+"{") {
			out[k] = v
		}
	}
	return out
}

// Delta returns after - before for every series of name in after that
// changed (a series missing before counts from zero).
func Delta(before, after Samples, name string) map[string]float64 {
	out := map[string]float64{}
	for k, v := range after.Series(name) {
		if d := v - before[k]; d != 0 {
			out[k] = d
		}
	}
	return out
}
