package datapath

import (
	"errors"
	"fmt"
	"io"
	"unsafe"
)

// readRecords reads an iterator's fixed-size records of type T through
// buf (a multiple of T's size) and hands each, copied into an aligned
// value, to each as it comes. A trailing partial record is an error.
func readRecords[T any](r io.Reader, buf []byte, what string, each func(*T) error) error {
	var rec T
	size := int(unsafe.Sizeof(rec))
	have := 0
	for {
		n, err := r.Read(buf[have:])
		have += n
		whole := have - have%size
		for off := 0; off < whole; off += size {
			copy(unsafe.Slice((*byte)(unsafe.Pointer(&rec)), size), buf[off:off+size])
			if eerr := each(&rec); eerr != nil {
				return eerr
			}
		}
		have = copy(buf, buf[whole:have])
		switch {
		case errors.Is(err, io.EOF):
			if have != 0 {
				return fmt.Errorf("%s: %d trailing bytes", what, have)
			}
			return nil
		case err != nil:
			return fmt.Errorf("read %s: %w", what, err)
		}
	}
}
