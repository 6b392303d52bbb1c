package tlsprobe

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// A pclntab is read here rather than by debug/gosym, which decodes every
// function of the executable into a Func of its own: for a 147 MB Go
// binary (flowlens' own) that is the whole 20 MB section read plus 31 MB
// of Funcs, the agent's largest allocation, made in the scan at start,
// where it set the peak RSS. Only the function names and the function
// table with its per-function records are read here (6 and 10 MB of that
// binary's 20), and nothing is kept per function.
//
// The layout is the one debug/gosym reads (Go 1.16 on; 1.17 is the
// oldest probed): a header of 8 bytes and 8 words, the names table, …,
// and last the function table, pairs of (entry, offset of the function's
// record), whose record's second field is the offset of its name.

// The pclntab magic numbers of the layouts read.
const (
	pclnGo116 = 0xfffffffa
	pclnGo118 = 0xfffffff0
	pclnGo120 = 0xfffffff1
)

// funcBounds is where one function's code lies: [entry, end).
type funcBounds struct {
	name       string
	entry, end uint64
}

var errPclntab = errors.New("malformed pclntab")

// findFuncs returns the bounds of the functions named, in the little-endian
// pclntab section pcln of an executable whose text starts at textStart. A
// name not found is absent from the map.
func findFuncs(pcln io.ReaderAt, size, textStart uint64, names ...string) (map[string]funcBounds, error) {
	var head [8]byte
	if _, err := pcln.ReadAt(head[:], 0); err != nil {
		return nil, fmt.Errorf("read header: %w", err)
	}
	magic, ptrSize := binary.LittleEndian.Uint32(head[:]), uint64(head[7])
	if ptrSize != 8 || head[4] != 0 || head[5] != 0 {
		return nil, fmt.Errorf("%w: header % x", errPclntab, head)
	}
	// Word i of the header, and which words name the tables.
	entrySize, nameWord, functabWord := uint64(4), uint64(3), uint64(7) // Go 1.18 on
	switch magic {
	case pclnGo118, pclnGo120:
	case pclnGo116:
		entrySize, nameWord, functabWord = ptrSize, 2, 6
	default:
		return nil, fmt.Errorf("%w: magic %#x", errPclntab, magic)
	}
	words := make([]byte, 8*ptrSize)
	if _, err := pcln.ReadAt(words, 8); err != nil {
		return nil, fmt.Errorf("read header: %w", err)
	}
	word := func(i uint64) uint64 { return binary.LittleEndian.Uint64(words[i*ptrSize:]) }
	nfunc, namesAt, namesEnd, functabAt := word(0), word(nameWord), word(nameWord+1), word(functabWord)
	if namesAt > namesEnd || namesEnd > size || functabAt > size || nfunc >= (size-functabAt)/(2*entrySize) {
		return nil, fmt.Errorf("%w: tables out of the section's %d bytes", errPclntab, size)
	}
	funcNames, err := readAt(pcln, namesAt, namesEnd-namesAt)
	if err != nil {
		return nil, fmt.Errorf("read function names: %w", err)
	}
	// The function table and the records after it, to the section's end.
	tab, err := readAt(pcln, functabAt, size-functabAt)
	if err != nil {
		return nil, fmt.Errorf("read function table: %w", err)
	}
	field := func(b []byte, at uint64) uint64 {
		if entrySize == 4 {
			return uint64(binary.LittleEndian.Uint32(b[at:]))
		}
		return binary.LittleEndian.Uint64(b[at:])
	}
	pc := func(i uint64) uint64 {
		if magic == pclnGo116 {
			return field(tab, 2*i*entrySize)
		}
		return textStart + field(tab, 2*i*entrySize)
	}
	found := make(map[string]funcBounds, len(names))
	for i := uint64(0); i < nfunc && len(found) < len(names); i++ {
		// A record starts with the entry (a word before 1.18, 4 bytes
		// since); its name's offset follows.
		rec := field(tab, (2*i+1)*entrySize)
		if rec > uint64(len(tab))-entrySize-4 {
			return nil, fmt.Errorf("%w: function %d's record at %#x", errPclntab, i, rec)
		}
		nameOff := uint64(binary.LittleEndian.Uint32(tab[rec+entrySize:]))
		if nameOff >= uint64(len(funcNames)) {
			return nil, fmt.Errorf("%w: function %d's name at %#x", errPclntab, i, nameOff)
		}
		name := funcNames[nameOff:]
		if end := bytes.IndexByte(name, 0); end >= 0 {
			name = name[:end]
		}
		for _, want := range names {
			// The first of a name, as debug/gosym's LookupFunc.
			if _, dup := found[want]; !dup && string(name) == want {
				found[want] = funcBounds{name: want, entry: pc(i), end: pc(i + 1)}
			}
		}
	}
	return found, nil
}

// readAt reads n bytes at off.
func readAt(r io.ReaderAt, off, n uint64) ([]byte, error) {
	b := make([]byte, n)
	if _, err := r.ReadAt(b, int64(off)); err != nil {
		return nil, err
	}
	return b, nil
}

// pclnFuncs finds the named functions in f's .gopclntab.
func pclnFuncs(f *elf.File, names ...string) (map[string]funcBounds, error) {
	pcln, text := f.Section(".gopclntab"), f.Section(".text")
	if pcln == nil || text == nil || pcln.Type == elf.SHT_NOBITS {
		return nil, skip(ReasonNoPclntab, "no .gopclntab or .text section")
	}
	funcs, err := findFuncs(pcln, pcln.Size, text.Addr, names...)
	switch {
	case errors.Is(err, errPclntab):
		return nil, skip(ReasonNoPclntab, "parse .gopclntab: %w", err)
	case err != nil:
		return nil, skip(ReasonRead, "read .gopclntab: %w", err)
	}
	return funcs, nil
}
