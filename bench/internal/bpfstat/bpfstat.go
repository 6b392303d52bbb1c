// Package bpfstat finds the eBPF programs and maps a process holds and what
// they cost: run time and run count (with BPF stats enabled) and locked
// memory. Ownership comes from the process's own file descriptors
// (internal/bpffd), which is exact even when other agents load programs
// with the same names; bpftool's JSON adds the names.
package bpfstat

import (
	"encoding/json"
	"fmt"
	"sort"

	"github.com/flowlens/flowlens/internal/bpffd"
)

// Prog is one program's counters.
type Prog struct {
	ID        uint32 `json:"id"`
	Name      string `json:"name,omitempty"`
	Type      string `json:"type,omitempty"`
	RunTimeNS uint64 `json:"run_time_ns"`
	RunCnt    uint64 `json:"run_cnt"`
	Memlock   uint64 `json:"memlock"`
}

// Map is one map's size.
type Map struct {
	ID         uint32 `json:"id"`
	Name       string `json:"name,omitempty"`
	Type       string `json:"type,omitempty"`
	MaxEntries uint32 `json:"max_entries"`
	Memlock    uint64 `json:"memlock"`
}

// Snapshot is what a process holds at one moment, by id.
type Snapshot struct {
	Progs map[uint32]Prog
	Maps  map[uint32]Map
}

// FromFdinfo adds one descriptor's fdinfo to s; links are not counted.
func (s *Snapshot) FromFdinfo(kind bpffd.Kind, info bpffd.Info) {
	switch kind {
	case bpffd.Prog:
		if id, err := info.ID("prog_id"); err == nil {
			s.Progs[id] = Prog{ID: id, RunTimeNS: info.Uint("run_time_ns"), RunCnt: info.Uint("run_cnt"), Memlock: info.Uint("memlock")}
		}
	case bpffd.Map:
		if id, err := info.ID("map_id"); err == nil {
			s.Maps[id] = Map{ID: id, MaxEntries: uint32(info.Uint("max_entries")), Memlock: info.Uint("memlock")}
		}
	}
}

// Read walks the descriptors of pid.
func Read(pid int) (Snapshot, error) {
	s := Snapshot{Progs: map[uint32]Prog{}, Maps: map[uint32]Map{}}
	err := bpffd.Walk(pid, func(kind bpffd.Kind, info bpffd.Info) error {
		s.FromFdinfo(kind, info)
		return nil
	})
	return s, err
}

// Names fills program and map names and types from `bpftool prog show -j`
// and `bpftool map show -j` output (either may be nil).
func (s *Snapshot) Names(progJSON, mapJSON []byte) error {
	if len(progJSON) > 0 {
		var ps []struct {
			ID   uint32 `json:"id"`
			Name string `json:"name"`
			Type string `json:"type"`
		}
		if err := json.Unmarshal(progJSON, &ps); err != nil {
			return fmt.Errorf("bpftool prog show: %w", err)
		}
		for _, p := range ps {
			if q, ok := s.Progs[p.ID]; ok {
				q.Name, q.Type = p.Name, p.Type
				s.Progs[p.ID] = q
			}
		}
	}
	if len(mapJSON) > 0 {
		var ms []struct {
			ID      uint32 `json:"id"`
			Name    string `json:"name"`
			Type    string `json:"type"`
			Memlock uint64 `json:"bytes_memlock"`
		}
		if err := json.Unmarshal(mapJSON, &ms); err != nil {
			return fmt.Errorf("bpftool map show: %w", err)
		}
		for _, m := range ms {
			if q, ok := s.Maps[m.ID]; ok {
				q.Name, q.Type = m.Name, m.Type
				s.Maps[m.ID] = q
			}
		}
	}
	return nil
}

// ProgCost is what one program cost between two snapshots.
type ProgCost struct {
	Name     string  `json:"name"`
	Runs     uint64  `json:"runs"`
	TimeNS   uint64  `json:"time_ns"`
	NSPerRun float64 `json:"ns_per_run"`
}

// Cost is the programs' cost between two snapshots, most expensive first.
type Cost struct {
	Progs    []ProgCost `json:"progs"`
	Runs     uint64     `json:"runs"`
	TimeNS   uint64     `json:"time_ns"`
	NSPerRun float64    `json:"ns_per_run"`
}

// Diff returns after - before for the programs present in both.
func Diff(before, after Snapshot) Cost {
	var c Cost
	for id, a := range after.Progs {
		b, ok := before.Progs[id]
		if !ok {
			continue
		}
		name := a.Name
		if name == "" {
			name = fmt.Sprintf("prog %d", id)
		}
		pc := ProgCost{Name: name, Runs: a.RunCnt - b.RunCnt, TimeNS: a.RunTimeNS - b.RunTimeNS}
		if pc.Runs > 0 {
			pc.NSPerRun = float64(pc.TimeNS) / float64(pc.Runs)
		}
		c.Progs = append(c.Progs, pc)
		c.Runs += pc.Runs
		c.TimeNS += pc.TimeNS
	}
	if c.Runs > 0 {
		c.NSPerRun = float64(c.TimeNS) / float64(c.Runs)
	}
	sort.Slice(c.Progs, func(i, j int) bool {
		if c.Progs[i].TimeNS != c.Progs[j].TimeNS {
			return c.Progs[i].TimeNS > c.Progs[j].TimeNS
		}
		return c.Progs[i].Name < c.Progs[j].Name
	})
	return c
}

// MapMemory sums the locked memory of the maps, and returns them largest first.
func (s Snapshot) MapMemory() (total uint64, maps []Map) {
	for _, m := range s.Maps {
		total += m.Memlock
		maps = append(maps, m)
	}
	sort.Slice(maps, func(i, j int) bool {
		if maps[i].Memlock != maps[j].Memlock {
			return maps[i].Memlock > maps[j].Memlock
		}
		return maps[i].ID < maps[j].ID
	})
	return total, maps
}
