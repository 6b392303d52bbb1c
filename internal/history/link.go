package history

// DuckDB's Go bindings link with -rdynamic, which puts every symbol of the
// static DuckDB library into the binary's dynamic symbol table: ≈60,000
// C++ names, ≈6.5 MiB of .dynsym, .dynstr and .gnu.hash that the dynamic
// loader reads at every start and so stay resident. Nothing looks them up:
// the only symbols a loader needs are cgo's exports, which Go's linker
// names one by one (--export-dynamic-symbol), and the extensions the
// history's queries use are linked in, none loaded from a file. This flag
// undoes -rdynamic wherever it stands on the link line (the compiler
// driver puts -export-dynamic before every -Wl option), is on cgo's list
// of allowed flags, and so holds for every build, go run and go test
// included, with no flags.

// #cgo LDFLAGS: -Wl,--no-export-dynamic
import "C"
