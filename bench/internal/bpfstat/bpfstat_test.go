package bpfstat

import (
	"os"
	"testing"

	"github.com/flowlens/flowlens/internal/bpffd"
)

const progFdinfo = "pos:\t0\nflags:\t02000002\nprog_type:\t26\nprog_jited:\t1\nprog_tag:\t7ffd544cd6a52c52\nmemlock:\t4096\nprog_id:\t53\nrun_time_ns:\t1500\nrun_cnt:\t10\nrecursion_misses:\t0\n"
const mapFdinfo = "pos:\t0\nmap_type:\t1\nkey_size:\t8\nvalue_size:\t144\nmax_entries:\t65536\nmemlock:\t14157088\nmap_id:\t78\n"

func TestSnapshotDiffAndNames(t *testing.T) {
	before := Snapshot{Progs: map[uint32]Prog{}, Maps: map[uint32]Map{}}
	before.FromFdinfo(bpffd.Prog, bpffd.Parse(progFdinfo))
	before.FromFdinfo(bpffd.Map, bpffd.Parse(mapFdinfo))
	before.FromFdinfo(bpffd.Prog, bpffd.Info{"pos": "0"}) // no id: ignored
	after := Snapshot{Progs: map[uint32]Prog{
		53: {ID: 53, RunTimeNS: 101500, RunCnt: 510},
		54: {ID: 54, RunTimeNS: 900, RunCnt: 3},     // new: not in before
		60: {ID: 60, RunTimeNS: 5000, RunCnt: 1000}, // loaded before, unused
	}, Maps: before.Maps}
	before.Progs[60] = Prog{ID: 60, RunTimeNS: 5000, RunCnt: 1000}

	err := after.Names([]byte(`[{"id":53,"name":"on_set_state","type":"tracing"},{"id":99,"name":"other"}]`),
		[]byte(`[{"id":78,"name":"tcp_socks","type":"hash","bytes_memlock":14157088}]`))
	if err != nil {
		t.Fatal(err)
	}
	c := Diff(before, after)
	if c.Runs != 500 || c.TimeNS != 100000 || c.NSPerRun != 200 || len(c.Progs) != 2 {
		t.Fatalf("cost %+v", c)
	}
	if c.Progs[0].Name != "on_set_state" || c.Progs[0].NSPerRun != 200 || c.Progs[1].Name != "prog 60" || c.Progs[1].Runs != 0 {
		t.Errorf("progs %+v", c.Progs)
	}
	total, maps := after.MapMemory()
	if total != 14157088 || maps[0].Name != "tcp_socks" || maps[0].MaxEntries != 65536 {
		t.Errorf("maps %d %+v", total, maps)
	}
	if err := after.Names([]byte("not json"), nil); err == nil {
		t.Error("bad bpftool output accepted")
	}
}

// Reading our own descriptors works (and finds nothing without eBPF).
func TestReadSelf(t *testing.T) {
	s, err := Read(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Progs) != 0 {
		t.Errorf("test process holds programs: %+v", s.Progs)
	}
}
