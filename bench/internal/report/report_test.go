package report

import (
	"math"
	"strings"
	"testing"
)

func TestTableText(t *testing.T) {
	tb := Table{Title: "T", Header: []string{"name", "value"}, Notes: []string{"a note"}}
	tb.Add("short", "1")
	tb.Add("a-longer-name", "12,345")
	want := "T\n" +
		"name           value\n" +
		"-------------  ------\n" +
		"short               1\n" +
		"a-longer-name  12,345\n" +
		"  a note\n"
	if got := tb.Text(); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

func TestTableMarkdown(t *testing.T) {
	tb := Table{Title: "T", Header: []string{"a", "b"}}
	tb.Add("x|y", "2")
	got := tb.Markdown()
	if !strings.Contains(got, "### T\n\n| a | b |\n|---|--:|\n| x\\|y | 2 |\n") {
		t.Errorf("got\n%s", got)
	}
}

func TestFormat(t *testing.T) {
	for _, c := range []struct {
		got, want string
	}{
		{Num(1234567.4), "1,234,567"}, {Num(123.4), "123"}, {Num(12.34), "12.3"}, {Num(1.234), "1.23"},
		{Num(0.01234), "0.012"}, {Num(0.001234), "0.0012"}, {Num(math.NaN()), NA}, {Num(0), "0"},
		{Int(-1234), "-1,234"}, {Int(999), "999"}, {Pct(0.00567), "0.567%"},
		{Bytes(512), "512 B"}, {Bytes(1536), "1.50 KiB"}, {Bytes(14157088), "13.5 MiB"},
		{Seconds(0.512), "512 ms"}, {Seconds(2.5), "2.50 s"}, {Seconds(0.0000421), "42.1 µs"},
	} {
		if c.got != c.want {
			t.Errorf("got %q, want %q", c.got, c.want)
		}
	}
}
