package tlsprobe

import (
	"debug/buildinfo"
	"debug/elf"
	"errors"
	"fmt"
	"go/version"
	"io"

	"golang.org/x/arch/x86/x86asm"
)

// The functions probed in a Go executable. Every HTTPS request through
// net/http, gRPC or any other Go client or server passes through them.
const (
	goWriteFunc = "crypto/tls.(*Conn).Write"
	goReadFunc  = "crypto/tls.(*Conn).Read"
	// The handshake, probed so that the socket of a connection is known
	// when its first Read is served from what the handshake read.
	goHandshakeFunc = "crypto/tls.(*Conn).handshakeContext"
)

// minGoVersion is the first Go with the register ABI on amd64, which the
// kernel programs read arguments and the goroutine pointer by.
const minGoVersion = "go1.17"

// errNoTLS: the executable is not Go, or does not contain crypto/tls.
// Not a failure: most executables are not targets.
var errNoTLS = errors.New("not a Go executable with crypto/tls")

// skipError is a target that cannot be probed, with the reason counted.
type skipError struct {
	reason Reason
	err    error
}

func (e *skipError) Error() string { return fmt.Sprintf("%s: %v", e.reason, e.err) }
func (e *skipError) Unwrap() error { return e.err }

func skip(reason Reason, format string, args ...any) error {
	return &skipError{reason: reason, err: fmt.Errorf(format, args...)}
}

// goFunc is where one function is probed: file offsets of its first
// instruction and of each RET instruction in it.
type goFunc struct {
	entry uint64
	rets  []uint64
}

// goTarget is a Go executable's probe points.
type goTarget struct {
	goVersion   string
	write, read goFunc
	handshake   goFunc // zero when the executable has none
}

// inspectGo finds the crypto/tls probe points of the ELF file r. Function
// bounds come from the pclntab, which the Go runtime itself needs and so
// is kept by stripped binaries (-ldflags=-s) too.
func inspectGo(r io.ReaderAt) (goTarget, error) {
	f, err := elf.NewFile(r)
	if err != nil {
		return goTarget{}, errNoTLS
	}
	defer f.Close()
	info, err := buildinfo.Read(r)
	if err != nil {
		return goTarget{}, errNoTLS
	}
	t := goTarget{goVersion: info.GoVersion}
	if f.Machine != elf.EM_X86_64 {
		return t, skip(ReasonArch, "machine %s: only amd64 is probed", f.Machine)
	}
	if !version.IsValid(info.GoVersion) || version.Compare(info.GoVersion, minGoVersion) < 0 {
		return t, skip(ReasonGoVersion, "built by %q: the register ABI needs %s or later", info.GoVersion, minGoVersion)
	}
	funcs, err := pclnFuncs(f, goWriteFunc, goReadFunc, goHandshakeFunc)
	if err != nil {
		return t, err
	}
	write, okW := funcs[goWriteFunc]
	read, okR := funcs[goReadFunc]
	if !okW || !okR {
		return t, errNoTLS
	}
	if t.write, err = locate(f, r, write); err != nil {
		return t, err
	}
	if t.read, err = locate(f, r, read); err != nil {
		return t, err
	}
	if hs, ok := funcs[goHandshakeFunc]; ok {
		if t.handshake, err = locate(f, r, hs); err != nil {
			return t, err
		}
	}
	return t, nil
}

// maxFuncBytes bounds what is read of one function: Read and Write are a
// few hundred bytes; more means the table is not what it seems.
const maxFuncBytes = 1 << 16

// locate turns fn's addresses into file offsets, which is what a uprobe
// takes, and finds its RET instructions.
func locate(f *elf.File, r io.ReaderAt, fn funcBounds) (goFunc, error) {
	size := fn.end - fn.entry
	if fn.end <= fn.entry || size > maxFuncBytes {
		return goFunc{}, skip(ReasonDisassemble, "%s: bounds %#x-%#x", fn.name, fn.entry, fn.end)
	}
	var seg *elf.Prog
	for _, p := range f.Progs {
		if p.Type == elf.PT_LOAD && p.Flags&elf.PF_X != 0 && p.Vaddr <= fn.entry && fn.end <= p.Vaddr+p.Filesz {
			seg = p
			break
		}
	}
	if seg == nil {
		return goFunc{}, skip(ReasonDisassemble, "%s: no executable segment holds %#x-%#x", fn.name, fn.entry, fn.end)
	}
	off := fn.entry - seg.Vaddr + seg.Off
	code := make([]byte, size)
	if _, err := r.ReadAt(code, int64(off)); err != nil {
		return goFunc{}, skip(ReasonRead, "read %s: %w", fn.name, err)
	}
	rets, err := retOffsets(code)
	if err != nil {
		return goFunc{}, skip(ReasonDisassemble, "%s: %w", fn.name, err)
	}
	if len(rets) == 0 {
		return goFunc{}, skip(ReasonDisassemble, "%s: no RET instruction", fn.name)
	}
	g := goFunc{entry: off, rets: make([]uint64, len(rets))}
	for i, r := range rets {
		g.rets[i] = off + r
	}
	return g, nil
}

// retOffsets decodes code, one function's machine code from its first
// byte, and returns the offsets of its RET instructions. Go puts no data
// between a function's instructions, so a linear decode sees every one.
func retOffsets(code []byte) ([]uint64, error) {
	var rets []uint64
	for pc := 0; pc < len(code); {
		inst, err := x86asm.Decode(code[pc:], 64)
		if err != nil {
			return nil, fmt.Errorf("decode at +%#x: %w", pc, err)
		}
		// x86asm returns a lone prefix, no error, for an instruction
		// cut short: the bytes after it would be misread.
		if inst.Op == 0 {
			return nil, fmt.Errorf("decode at +%#x: truncated instruction % x", pc, code[pc:min(pc+4, len(code))])
		}
		if inst.Op == x86asm.RET {
			rets = append(rets, uint64(pc))
		}
		pc += inst.Len
	}
	return rets, nil
}
