package tlsprobe

import (
	"bytes"
	"debug/elf"
	"debug/gosym"
	"encoding/binary"
	"errors"
	"testing"
)

// gosymFuncs is what debug/gosym, the reader findFuncs replaces, says of
// every function of pcln: the first function of each name.
func gosymFuncs(t *testing.T, pcln []byte, textStart uint64) map[string]funcBounds {
	t.Helper()
	tab, err := gosym.NewTable(nil, gosym.NewLineTable(pcln, textStart))
	if err != nil {
		t.Fatalf("gosym: %v", err)
	}
	want := map[string]funcBounds{}
	for _, fn := range tab.Funcs {
		if _, dup := want[fn.Name]; !dup {
			want[fn.Name] = funcBounds{name: fn.Name, entry: fn.Entry, end: fn.End}
		}
	}
	return want
}

func compareFuncs(t *testing.T, pcln []byte, textStart uint64) {
	t.Helper()
	want := gosymFuncs(t, pcln, textStart)
	names := make([]string, 0, len(want))
	for name := range want {
		names = append(names, name)
	}
	got, err := findFuncs(bytes.NewReader(pcln), uint64(len(pcln)), textStart, append(names, "no.such.func")...)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Errorf("found %d functions, gosym %d", len(got), len(want))
	}
	for name, w := range want {
		if got[name] != w {
			t.Errorf("%s: %+v, gosym %+v", name, got[name], w)
		}
	}
}

func TestFindFuncsAgreesWithGosym(t *testing.T) {
	f, err := elf.Open(buildGo(t, "gotls"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	pcln, err := f.Section(".gopclntab").Data()
	if err != nil {
		t.Fatal(err)
	}
	compareFuncs(t, pcln, f.Section(".text").Addr)
}

// go116Pclntab lays out a Go 1.16 pclntab (what Go 1.17, the oldest Go
// probed, writes) of functions at entries (names[i] from entries[i] to
// entries[i+1]): no binary of that Go is at hand in the tests.
func go116Pclntab(names []string, entries []uint64) []byte {
	le := binary.LittleEndian
	var funcNames []byte
	nameOffs := make([]uint32, len(names))
	for i, n := range names {
		nameOffs[i] = uint32(len(funcNames))
		funcNames = append(append(funcNames, n...), 0)
	}
	const headSize = 8 + 7*8
	namesAt := uint64(headSize)
	functabAt := namesAt + uint64(len(funcNames)) // no cu, file or pc tables
	nfunc := uint64(len(names))
	recsAt := (2*nfunc + 1) * 8 // records follow the table, relative to it
	const recSize = go116RecSize
	b := le.AppendUint32(nil, pclnGo116)
	b = append(b, 0, 0, 1, 8)
	for _, w := range []uint64{nfunc, 0, namesAt, functabAt, functabAt, functabAt, functabAt} {
		b = le.AppendUint64(b, w)
	}
	b = append(b, funcNames...)
	for i := range names {
		b = le.AppendUint64(b, entries[i])
		b = le.AppendUint64(b, recsAt+uint64(i)*recSize)
	}
	b = le.AppendUint64(b, entries[nfunc])
	for i := range names {
		b = le.AppendUint64(b, entries[i])
		b = le.AppendUint32(b, nameOffs[i])
		b = append(b, make([]byte, recSize-8-4)...)
	}
	return b
}

// go116RecSize is a function's record in go116Pclntab: its entry, then
// nine uint32 fields.
const go116RecSize = 8 + 4*9

func TestFindFuncsGo116Layout(t *testing.T) {
	pcln := go116Pclntab([]string{"main.main", goWriteFunc, goReadFunc, "main.after"},
		[]uint64{0x401000, 0x401200, 0x401500, 0x401580, 0x401600})
	compareFuncs(t, pcln, 0x401000)
	got, err := findFuncs(bytes.NewReader(pcln), uint64(len(pcln)), 0x401000, goReadFunc)
	if err != nil {
		t.Fatal(err)
	}
	if want := (funcBounds{goReadFunc, 0x401500, 0x401580}); got[goReadFunc] != want {
		t.Errorf("%+v, want %+v", got[goReadFunc], want)
	}
}

// A file that only looks like a Go executable is refused, not read out of
// bounds: the agent inspects every executable it finds running.
func TestFindFuncsMalformed(t *testing.T) {
	le := binary.LittleEndian
	const rec = go116RecSize
	good := go116Pclntab([]string{"main.main", goWriteFunc}, []uint64{0x401000, 0x401200, 0x401500})
	for name, corrupt := range map[string]func(b []byte) []byte{
		"magic":                  func(b []byte) []byte { le.PutUint32(b, 0xfffffffb); return b },
		"pointer size":           func(b []byte) []byte { b[7] = 4; return b },
		"function count":         func(b []byte) []byte { le.PutUint64(b[8:], 1<<40); return b },
		"names past the end":     func(b []byte) []byte { le.PutUint64(b[8+3*8:], 1<<20); return b },
		"table past the end":     func(b []byte) []byte { le.PutUint64(b[8+6*8:], 1<<20); return b },
		"record past the end":    func(b []byte) []byte { le.PutUint64(b[len(b)-2*rec-2*8:], 1<<20); return b },
		"name past the names":    func(b []byte) []byte { le.PutUint32(b[len(b)-rec+8:], 1<<20); return b },
		"cut short in the table": func(b []byte) []byte { return b[:len(b)-2*rec-8] },
	} {
		b := corrupt(bytes.Clone(good))
		if _, err := findFuncs(bytes.NewReader(b), uint64(len(b)), 0x401000, goWriteFunc); !errors.Is(err, errPclntab) {
			t.Errorf("%s: %v, want errPclntab", name, err)
		}
	}
	if _, err := findFuncs(bytes.NewReader(good), uint64(len(good)), 0x401000, goWriteFunc); err != nil {
		t.Errorf("uncorrupted: %v", err)
	}
	if _, err := findFuncs(bytes.NewReader(good[:5]), 5, 0x401000, goWriteFunc); err == nil {
		t.Error("a 5-byte section read without error")
	}
}
