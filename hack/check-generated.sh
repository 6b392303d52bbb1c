#!/usr/bin/env bash
# Regenerates the committed eBPF objects from bpf/ with Debian's clang and
# fails if they differ from what is committed: `go build` needs no clang
# only as long as the committed output is exactly what the source makes.
# Only bpf2go's output is compared: other uncommitted work in
# internal/datapath is not a stale generated file.
set -euo pipefail
cd "$(dirname "$0")/.."
generated=(internal/datapath/flowlens_bpfel.go internal/datapath/flowlens_bpfel.o)
go generate ./internal/datapath
if ! git diff --quiet -- "${generated[@]}"; then
  git --no-pager diff --stat -- "${generated[@]}"
  echo "generated eBPF files are stale: run 'make generate' and commit the result" >&2
  exit 1
fi
echo "generated eBPF files match bpf/"
