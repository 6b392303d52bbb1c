package history

import (
	"fmt"
	"time"

	flag "github.com/spf13/pflag"
)

// Config places and bounds the history. Zero values take the defaults.
type Config struct {
	// Dir holds the database file (history.duckdb and its .wal).
	Dir string
	// DiskBudget bounds the bytes the database uses: past it the oldest
	// flows are deleted first, then the oldest edge buckets. Default 1 GiB.
	DiskBudget int64
	// FlowRetention is how long flow records are kept. Default 1 h.
	FlowRetention time.Duration
	// EdgeRetention is how long topology buckets are kept: the Store's
	// MaxBuckets*Resolution. Default 24 h.
	EdgeRetention time.Duration
	// Resolution is the topology's bucket width. Default 10 s.
	Resolution time.Duration
	// LogWindow is how much of the log before the last checkpoint is
	// kept, for the replay to relearn which side each connection was
	// counted from. Default 2 min.
	LogWindow time.Duration
	// MemoryLimitMiB bounds DuckDB's buffer memory. Default 256.
	MemoryLimitMiB int
}

// Default values.
const (
	DefaultDiskBudget    = 1 << 30
	DefaultFlowRetention = time.Hour
	DefaultEdgeRetention = 24 * time.Hour
	DefaultLogWindow     = 2 * time.Minute
)

// Flags registers the history's flags on fs.
func (c *Config) Flags(fs *flag.FlagSet) {
	fs.StringVar(&c.Dir, "data-dir", c.Dir, "directory of the hub's database (the ingest log, topology checkpoints and flow history)")
	fs.Int64Var(&c.DiskBudget, "history-disk-budget", c.DiskBudget, "bytes the database may use; past them the oldest flows, then the oldest topology buckets, are deleted (0: 1 GiB)")
	fs.DurationVar(&c.FlowRetention, "flow-retention", c.FlowRetention, "how long flow records are kept for GET /api/v1/flows?since= (0: 1h)")
}

func (c *Config) defaults() {
	if c.DiskBudget <= 0 {
		c.DiskBudget = DefaultDiskBudget
	}
	if c.FlowRetention <= 0 {
		c.FlowRetention = DefaultFlowRetention
	}
	if c.EdgeRetention <= 0 {
		c.EdgeRetention = DefaultEdgeRetention
	}
	if c.Resolution <= 0 {
		c.Resolution = 10 * time.Second
	}
	if c.LogWindow <= 0 {
		c.LogWindow = DefaultLogWindow
	}
	if c.MemoryLimitMiB <= 0 {
		c.MemoryLimitMiB = 256
	}
}

// Validate reports an unusable configuration, defaults filled in.
func (c *Config) Validate() error {
	c.defaults()
	if c.Dir == "" {
		return fmt.Errorf("history: --data-dir is empty")
	}
	if c.DiskBudget < minDiskBudget {
		return fmt.Errorf("history disk budget %d bytes: want at least %d (DuckDB's blocks are 256 KiB)", c.DiskBudget, minDiskBudget)
	}
	return nil
}

// minDiskBudget fits the empty tables (768 KiB) and a few blocks of each.
const minDiskBudget = 4 << 20
