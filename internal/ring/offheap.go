package ring

import (
	"fmt"
	"runtime"

	"golang.org/x/sys/unix"
)

// mapped is memory for the ring's encodings outside the Go heap. In the
// heap, a full ring's ≈10 MB of encoded records, which the collector never
// scans and frees only with the ring, counted twice: GOGC=100 sizes the next
// cycle at twice the heap found live. And the ring fills during the first
// burst a fresh agent sees, growing a quarter at a time: each grow left the
// old buffer, megabytes, as garbage for the next cycle, while the heap
// grew for the new one. Mapped apart, the records count once and an old
// buffer is gone when grow has copied it (issue 17: burst-100k peak RSS
// ≈123 → ≈94 MiB). The cost: the collector's cycles come as often as a
// heap without the ring makes them. Only the ring's lock holder touches the
// bytes, and every read copies out under the lock, so no slice of an old
// mapping outlives it.
type mapped struct{ b []byte }

// newMapped returns n zero bytes outside the heap, unmapped when the ring is
// no longer reachable.
func newMapped(owner *Ring, n int) *mapped {
	m := &mapped{b: mapBytes(n)}
	runtime.AddCleanup(owner, func(m *mapped) { unmapBytes(m.b) }, m)
	return m
}

// resize replaces the bytes with n new zero ones and returns the old ones,
// for the caller to copy from and then unmap.
func (m *mapped) resize(n int) (old []byte) {
	old, m.b = m.b, mapBytes(n)
	return old
}

func mapBytes(n int) []byte {
	b, err := unix.Mmap(-1, 0, n, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		// As make does when the heap cannot grow.
		panic(fmt.Sprintf("ring: map %d bytes: %v", n, err))
	}
	return b
}

func unmapBytes(b []byte) {
	if err := unix.Munmap(b); err != nil {
		panic(fmt.Sprintf("ring: unmap %d bytes: %v", len(b), err))
	}
}
