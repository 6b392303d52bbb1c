#!/usr/bin/env bash
# Regenerates the committed generated code and fails if it differs from what
# is committed: the eBPF objects from bpf/ with Debian's clang, the protobuf
# Go from api/ with Debian's protoc and the generators pinned in go.mod, the
# web UI's bundle from ui/ with npm.
# `go build` needs neither clang nor protoc only as long as the committed
# output is exactly what the source makes.
# Only the generators' output is compared: other uncommitted work in those
# folders is not a stale generated file.
set -euo pipefail
cd "$(dirname "$0")/.."
status=0

check() { # name, then the generated files; after their generator ran
  local name=$1; shift
  # A generated file that is new (not yet committed) is drift too.
  if ! git diff --quiet -- "$@" || [[ -n $(git ls-files --others --exclude-standard -- "$@") ]]; then
    git --no-pager diff --stat -- "$@"
    git ls-files --others --exclude-standard -- "$@"
    echo "generated $name files are stale: run '${fix:-make generate proto}' and commit the result" >&2
    status=1
  else
    echo "generated $name files match their source"
  fi
}

go generate ./internal/datapath
check eBPF internal/datapath/flowlens_x86_bpfel.go internal/datapath/flowlens_x86_bpfel.o

go generate ./api/...
mapfile -t protos < <(git ls-files 'api/*.proto')
generated=()
for p in "${protos[@]}"; do generated+=("${p%.proto}.pb.go" "${p%.proto}_grpc.pb.go"); done
check protobuf "${generated[@]}"

# The web UI's bundle, rebuilt from the committed lockfile (Vite's output
# is content-hashed and holds no path or time).
(cd ui && npm ci --no-audit --no-fund --loglevel=error >/dev/null && npm run --silent build >/dev/null)
fix="make ui" check "web UI" internal/ui/dist
exit $status
