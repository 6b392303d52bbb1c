// Package report renders result tables as aligned text (for the terminal)
// and as Markdown, and formats the numbers in them.
package report

import (
	"fmt"
	"math"
	"strings"
	"unicode/utf8"
)

// Table is a titled grid of cells with optional notes under it.
type Table struct {
	Title  string
	Header []string
	Rows   [][]string
	Notes  []string
}

// Add appends a row.
func (t *Table) Add(cells ...string) { t.Rows = append(t.Rows, cells) }

func (t Table) widths() []int {
	w := make([]int, len(t.Header))
	for i, h := range t.Header {
		w[i] = utf8.RuneCountInString(h)
	}
	for _, r := range t.Rows {
		for i, c := range r {
			if i < len(w) {
				w[i] = max(w[i], utf8.RuneCountInString(c))
			}
		}
	}
	return w
}

// numeric cells are right-aligned.
func numeric(s string) bool {
	if s == "" {
		return false
	}
	c := s[0]
	return c >= '0' && c <= '9' || (c == '-' || c == '+' || c == '.' || c == '<' || c == '>' || c == '~') && len(s) > 1
}

func pad(s string, w int, right bool) string {
	n := w - utf8.RuneCountInString(s)
	if n <= 0 {
		return s
	}
	if right {
		return strings.Repeat(" ", n) + s
	}
	return s + strings.Repeat(" ", n)
}

// Text renders the table with aligned columns.
func (t Table) Text() string {
	var b strings.Builder
	w := t.widths()
	if t.Title != "" {
		b.WriteString(t.Title + "\n")
	}
	line := func(cells []string, header bool) {
		for i := range w {
			c := ""
			if i < len(cells) {
				c = cells[i]
			}
			if i > 0 {
				b.WriteString("  ")
			}
			last := i == len(w)-1
			s := pad(c, w[i], !header && numeric(c))
			if last {
				s = strings.TrimRight(s, " ")
			}
			b.WriteString(s)
		}
		b.WriteString("\n")
	}
	line(t.Header, true)
	seps := make([]string, len(w))
	for i := range w {
		seps[i] = strings.Repeat("-", w[i])
	}
	line(seps, true)
	for _, r := range t.Rows {
		line(r, false)
	}
	for _, n := range t.Notes {
		b.WriteString("  " + n + "\n")
	}
	return b.String()
}

// numericColumn reports whether every non-empty cell of column i is a number.
func (t Table) numericColumn(i int) bool {
	seen := false
	for _, r := range t.Rows {
		if i >= len(r) || r[i] == "" || r[i] == NA {
			continue
		}
		if !numeric(r[i]) {
			return false
		}
		seen = true
	}
	return seen
}

func mdEscape(s string) string { return strings.ReplaceAll(s, "|", `\|`) }

// Markdown renders the table as a GitHub-flavoured Markdown table.
func (t Table) Markdown() string {
	var b strings.Builder
	if t.Title != "" {
		b.WriteString("### " + t.Title + "\n\n")
	}
	row := func(cells []string) {
		b.WriteString("|")
		for i := range t.Header {
			c := ""
			if i < len(cells) {
				c = cells[i]
			}
			b.WriteString(" " + mdEscape(c) + " |")
		}
		b.WriteString("\n")
	}
	row(t.Header)
	b.WriteString("|")
	for i := range t.Header {
		align := "---"
		if t.numericColumn(i) {
			align = "--:"
		}
		b.WriteString(align + "|")
	}
	b.WriteString("\n")
	for _, r := range t.Rows {
		row(r)
	}
	if len(t.Notes) > 0 {
		b.WriteString("\n")
		for _, n := range t.Notes {
			b.WriteString("- " + n + "\n")
		}
	}
	return b.String()
}

// NA is shown for a value that was not measured.
const NA = "–"

// Num formats x with about three significant digits and thousands
// separators for large values; NaN and Inf show as NA.
func Num(x float64) string {
	switch {
	case math.IsNaN(x) || math.IsInf(x, 0):
		return NA
	case x == 0:
		return "0"
	}
	a := math.Abs(x)
	switch {
	case a >= 1000:
		return Int(int64(math.Round(x)))
	case a >= 100:
		return fmt.Sprintf("%.0f", x)
	case a >= 10:
		return fmt.Sprintf("%.1f", x)
	case a >= 1:
		return fmt.Sprintf("%.2f", x)
	case a >= 0.01:
		return fmt.Sprintf("%.3f", x)
	}
	return fmt.Sprintf("%.2g", x)
}

// Int formats n with thousands separators.
func Int(n int64) string {
	s := fmt.Sprint(n)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

// Pct formats a fraction as a percentage.
func Pct(f float64) string {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return NA
	}
	return Num(f*100) + "%"
}

// Bytes formats a byte count in binary units.
func Bytes(n float64) string {
	if math.IsNaN(n) {
		return NA
	}
	units := []string{"B", "KiB", "MiB", "GiB"}
	i := 0
	for math.Abs(n) >= 1024 && i < len(units)-1 {
		n /= 1024
		i++
	}
	if i == 0 {
		return fmt.Sprintf("%.0f B", n)
	}
	return Num(n) + " " + units[i]
}

// Seconds formats a duration in seconds with a suitable unit.
func Seconds(s float64) string {
	switch {
	case math.IsNaN(s):
		return NA
	case s == 0:
		return "0"
	case math.Abs(s) >= 1:
		return Num(s) + " s"
	case math.Abs(s) >= 1e-3:
		return Num(s*1e3) + " ms"
	}
	return Num(s*1e6) + " µs"
}
