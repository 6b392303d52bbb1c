package topology

import (
	"fmt"
	"time"
)

// Diff is what changed between two windows of one length: the JSON of
// GET /api/v1/topology?since=….
type Diff struct {
	Level         Level     `json:"level"`
	WindowSeconds float64   `json:"window_seconds"`
	At            time.Time `json:"at"`     // end of the window now
	Since         time.Time `json:"since"`  // end of the window compared with
	Factor        float64   `json:"factor"` // a rate changed when it grew or shrank by at least this
	Nodes         NodeDiff  `json:"nodes"`
	Edges         EdgeDiff  `json:"edges"`
}

// NodeDiff lists the nodes only one window has, sorted by id.
type NodeDiff struct {
	Appeared []Node `json:"appeared"`
	Vanished []Node `json:"vanished"`
}

// EdgeDiff lists the edges only one window has, and those in both whose
// rates changed by Factor or more, sorted by id.
type EdgeDiff struct {
	Appeared []Edge       `json:"appeared"`
	Vanished []Edge       `json:"vanished"`
	Changed  []EdgeChange `json:"changed"`
}

// EdgeChange is an edge in both windows whose rates moved by the factor.
type EdgeChange struct {
	ID      string   `json:"id"`
	Before  Edge     `json:"before"`
	After   Edge     `json:"after"`
	Changed []string `json:"changed"` // the rates that moved: connections_opened_per_second, failures_per_second
}

// Diff compares q's window with the window of the same length ending at
// since. factor must exceed 1: a rate changed when one window's is at
// least factor times the other's (from zero to anything is a change).
func (s *Store) Diff(q Query, since time.Time, factor float64) (Diff, error) {
	if !(factor > 1) {
		return Diff{}, fmt.Errorf("diff factor %v: want more than 1", factor)
	}
	now, err := s.Query(q)
	if err != nil {
		return Diff{}, err
	}
	q.At = since
	then, err := s.Query(q)
	if err != nil {
		return Diff{}, err
	}
	d := Diff{Level: q.Level, WindowSeconds: now.WindowSeconds, At: now.WindowEnd, Since: then.WindowEnd, Factor: factor,
		Nodes: NodeDiff{Appeared: []Node{}, Vanished: []Node{}},
		Edges: EdgeDiff{Appeared: []Edge{}, Vanished: []Edge{}, Changed: []EdgeChange{}}}
	d.Nodes.Appeared, d.Nodes.Vanished = only(now.Nodes, then.Nodes, nodeID), only(then.Nodes, now.Nodes, nodeID)
	d.Edges.Appeared, d.Edges.Vanished = only(now.Edges, then.Edges, edgeID), only(then.Edges, now.Edges, edgeID)
	before := map[string]Edge{}
	for _, e := range then.Edges {
		before[e.ID] = e
	}
	for _, after := range now.Edges { // sorted by id, so Changed is too
		b, ok := before[after.ID]
		if !ok {
			continue
		}
		var changed []string
		if moved(b.ConnectionsOpenedPerSecond, after.ConnectionsOpenedPerSecond, factor) {
			changed = append(changed, "connections_opened_per_second")
		}
		if moved(b.FailuresPerSecond, after.FailuresPerSecond, factor) {
			changed = append(changed, "failures_per_second")
		}
		if changed != nil {
			d.Edges.Changed = append(d.Edges.Changed, EdgeChange{ID: after.ID, Before: b, After: after, Changed: changed})
		}
	}
	return d, nil
}

func nodeID(n Node) string { return n.ID }
func edgeID(e Edge) string { return e.ID }

// only returns the elements of a (sorted by id) whose id b lacks.
func only[T any](a, b []T, id func(T) string) []T {
	in := map[string]bool{}
	for _, x := range b {
		in[id(x)] = true
	}
	out := []T{}
	for _, x := range a {
		if !in[id(x)] {
			out = append(out, x)
		}
	}
	return out
}

// moved reports whether a rate changed by factor or more either way.
func moved(before, after, factor float64) bool {
	if before == after {
		return false
	}
	lo, hi := min(before, after), max(before, after)
	return lo == 0 || hi >= factor*lo
}
