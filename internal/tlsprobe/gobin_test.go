package tlsprobe

import (
	"bufio"
	"bytes"
	"debug/elf"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"golang.org/x/arch/x86/x86asm"
)

// built caches buildGo's executables for the whole test binary: each
// build costs seconds of a shared machine.
var built struct {
	sync.Mutex
	dir   string
	paths map[string]string
}

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "tlsprobe-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	built.dir, built.paths = dir, map[string]string{}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// buildGo builds testdata/<pkg> with flags, once per test binary.
func buildGo(t *testing.T, pkg string, flags ...string) string {
	t.Helper()
	built.Lock()
	defer built.Unlock()
	key := pkg + " " + strings.Join(flags, " ")
	if p, ok := built.paths[key]; ok {
		return p
	}
	out := filepath.Join(built.dir, fmt.Sprintf("%s-%d", pkg, len(built.paths)))
	args := append([]string{"build", "-o", out}, flags...)
	cmd := exec.Command("go", append(args, "./testdata/"+pkg)...)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", pkg, err, b)
	}
	built.paths[key] = out
	return out
}

func inspectFile(t *testing.T, path string) (goTarget, error) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	return inspectGo(f)
}

var objdumpRET = regexp.MustCompile(`\s0x([0-9a-f]+)\s+c3\s+RET`)

// objdumpRets lists fn's RET addresses as go tool objdump disassembles them:
// a decoder independent of the one under test.
func objdumpRets(t *testing.T, bin, fn string) []uint64 {
	t.Helper()
	out, err := exec.Command("go", "tool", "objdump", "-s", "^"+regexp.QuoteMeta(fn)+"$", bin).Output()
	if err != nil {
		t.Fatalf("go tool objdump: %v", err)
	}
	var addrs []uint64
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		if m := objdumpRET.FindStringSubmatch(sc.Text()); m != nil {
			a, _ := strconv.ParseUint(m[1], 16, 64)
			addrs = append(addrs, a)
		}
	}
	return addrs
}

// fileToAddr maps file offsets back to addresses through the executable segment.
func fileToAddr(t *testing.T, bin string, offs []uint64) []uint64 {
	t.Helper()
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var addrs []uint64
	for _, off := range offs {
		for _, p := range f.Progs {
			if p.Type == elf.PT_LOAD && p.Flags&elf.PF_X != 0 && p.Off <= off && off < p.Off+p.Filesz {
				addrs = append(addrs, off-p.Off+p.Vaddr)
			}
		}
	}
	return addrs
}

func TestInspectGoFindsEveryRET(t *testing.T) {
	bin := buildGo(t, "gotls")
	got, err := inspectFile(t, bin)
	if err != nil {
		t.Fatalf("inspect: %v", err)
	}
	if got.goVersion != runtime.Version() {
		t.Errorf("go version %q, want %q", got.goVersion, runtime.Version())
	}
	code, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	for _, fn := range []struct {
		name string
		at   goFunc
	}{{goWriteFunc, got.write}, {goReadFunc, got.read}, {goHandshakeFunc, got.handshake}} {
		want := objdumpRets(t, bin, fn.name)
		if len(want) == 0 {
			t.Fatalf("objdump shows no RET in %s", fn.name)
		}
		if rets := fileToAddr(t, bin, fn.at.rets); !slices.Equal(rets, want) {
			t.Errorf("%s: RETs at %#x, objdump says %#x", fn.name, rets, want)
		}
		for _, off := range fn.at.rets {
			if code[off] != 0xc3 {
				t.Errorf("%s: byte at RET offset %#x is %#x", fn.name, off, code[off])
			}
		}
		if entry := fileToAddr(t, bin, []uint64{fn.at.entry}); len(entry) != 1 || entry[0] > want[0] {
			t.Errorf("%s: entry %#x after its first RET %#x", fn.name, entry, want[0])
		}
	}
	if got.read.entry == got.write.entry {
		t.Error("Read and Write at one entry")
	}
}

func TestInspectGoStrippedBinary(t *testing.T) {
	full, err := inspectFile(t, buildGo(t, "gotls"))
	if err != nil {
		t.Fatal(err)
	}
	// -s -w drops the symbol table and DWARF, not the pclntab.
	stripped, err := inspectFile(t, buildGo(t, "gotls", "-ldflags=-s -w"))
	if err != nil {
		t.Fatalf("inspect stripped: %v", err)
	}
	if stripped.read.entry != full.read.entry || !slices.Equal(stripped.read.rets, full.read.rets) ||
		stripped.write.entry != full.write.entry || !slices.Equal(stripped.write.rets, full.write.rets) ||
		stripped.handshake.entry != full.handshake.entry || !slices.Equal(stripped.handshake.rets, full.handshake.rets) {
		t.Errorf("stripped %+v, unstripped %+v", stripped, full)
	}
}

func TestInspectGoNotTargets(t *testing.T) {
	for name, path := range map[string]string{
		"go without crypto/tls": buildGo(t, "notls"),
		"C executable":          "/bin/sh",
		"not ELF":               "testdata/gotls/main.go",
	} {
		if _, err := inspectFile(t, path); !errors.Is(err, errNoTLS) {
			t.Errorf("%s: %v, want errNoTLS", name, err)
		}
	}
}

func TestRetOffsets(t *testing.T) {
	code := []byte{
		0x48, 0x89, 0xc3, // MOVQ AX, BX: c3 as a ModRM byte
		0xb8, 0xc3, 0, 0, 0, // MOVL $0xc3, AX: c3 as an immediate
		0xc3,       // RET at 8
		0xc2, 8, 0, // RET $8 at 9
		0xcc, // INT3 padding
	}
	got, err := retOffsets(code)
	if err != nil {
		t.Fatal(err)
	}
	if want := []uint64{8, 9}; !slices.Equal(got, want) {
		t.Errorf("RETs at %v, want %v", got, want)
	}
	// MOVL with two bytes of its four-byte immediate.
	if _, err := retOffsets([]byte{0xb8, 0xc3, 0}); err == nil {
		t.Error("a truncated instruction decoded")
	}
}

func FuzzRetOffsets(f *testing.F) {
	f.Add([]byte{0x48, 0x89, 0xc3, 0xc3})
	f.Add([]byte{0xb8, 0xc3, 0})
	f.Fuzz(func(t *testing.T, code []byte) {
		rets, err := retOffsets(code)
		if err != nil {
			return
		}
		for i, r := range rets {
			if i > 0 && r <= rets[i-1] {
				t.Fatalf("RET offsets not increasing: %v", rets)
			}
			if r >= uint64(len(code)) {
				t.Fatalf("RET at %d of %d bytes", r, len(code))
			}
			if inst, err := x86asm.Decode(code[r:], 64); err != nil || inst.Op != x86asm.RET {
				t.Fatalf("offset %d decodes as %v (%v), not RET", r, inst, err)
			}
		}
	})
}
