package topology

// EdgeKey is an edge at the finest naming as a comparable value: records
// counted on the same edge have equal keys. An observer keeps its own
// state per edge in a map keyed by it, and names the edge (Names, which
// builds strings) only when it meets a key it does not know.
type EdgeKey struct{ k edgeKey }

// Key returns the edge's comparable key. It copies and does not allocate.
func (e EdgeRef) Key() EdgeKey { return EdgeKey{*e.k} }
