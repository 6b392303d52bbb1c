package agent

import (
	"strings"
	"testing"

	flag "github.com/spf13/pflag"
)

// The connection table's sizes follow the kernel maps' unless set, and an
// explicit size that cannot hold what the kernel map reports is refused.
func TestTableSizedFromKernelMaps(t *testing.T) {
	for _, tc := range []struct {
		args                 []string
		wantSockets, wantUDP int
		wantErr              string
	}{
		{nil, 2 * 65536, 13 * 65536, ""},
		{[]string{"--max-tcp-sockets=1000", "--max-udp-flows=100"}, 2000, 1300, ""},
		{[]string{"--max-udp-flows=100", "--udp-remember=10s"}, 2 * 65536, 300, ""},
		{[]string{"--max-udp-flows=100", "--max-udp-conversations=5000"}, 2 * 65536, 5000, ""},
		{[]string{"--max-udp-flows=100", "--max-udp-conversations=1000"}, 0, 0, "fewer than the 1300 a kernel map of 100"},
		{[]string{"--max-tcp-sockets=1000", "--max-tcp-table-sockets=1500"}, 0, 0, "fewer than the 2000 a kernel map of 1000"},
		{[]string{"--udp-idle=10s", "--udp-remember=5s"}, 0, 0, "remembered 5s, less than the 10s idle"},
	} {
		cfg, err := validated(t, tc.args)
		switch {
		case tc.wantErr != "":
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%v: error %v, want %q", tc.args, err, tc.wantErr)
			}
		case err != nil:
			t.Errorf("%v: %v", tc.args, err)
		case cfg.Table.MaxSockets != tc.wantSockets || cfg.Table.MaxConversations != tc.wantUDP:
			t.Errorf("%v: table %d sockets %d conversations, want %d %d", tc.args, cfg.Table.MaxSockets, cfg.Table.MaxConversations, tc.wantSockets, tc.wantUDP)
		}
	}
}

// The sink is called at most FlushesPerInterval times an interval: the
// ended flushes that fit before the interval's end, and the end.
func TestFlushesPerInterval(t *testing.T) {
	for _, tc := range []struct {
		args    []string
		want    int
		wantErr string
	}{
		{nil, 10, ""},
		{[]string{"--ended-flush=0"}, 1, ""},
		{[]string{"--ended-flush=300ms"}, 4, ""},
		{[]string{"--ended-flush=1s"}, 1, ""},
		{[]string{"--ended-flush=5s"}, 1, ""},
		{[]string{"--interval=2s", "--ended-flush=250ms"}, 8, ""},
		{[]string{"--ended-flush=5ms"}, 0, "ended-flush 5ms: 0, or at least 10ms"},
		{[]string{"--ended-flush=-1s"}, 0, "ended-flush -1s"},
	} {
		cfg, err := validated(t, tc.args)
		switch {
		case tc.wantErr != "":
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%v: error %v, want %q", tc.args, err, tc.wantErr)
			}
		case err != nil:
			t.Errorf("%v: %v", tc.args, err)
		case cfg.FlushesPerInterval() != tc.want:
			t.Errorf("%v: %d flushes an interval, want %d", tc.args, cfg.FlushesPerInterval(), tc.want)
		}
	}
}

// validated is the default configuration with args parsed into it, and
// what Validate says of it.
func validated(t *testing.T, args []string) (Config, error) {
	t.Helper()
	cfg := DefaultConfig()
	fs := flag.NewFlagSet("up", flag.ContinueOnError)
	cfg.Flags(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	return cfg, cfg.Validate()
}
