#!/usr/bin/env bash
# Builds the control-plane binaries the end-to-end harness runs (etcd,
# kube-apiserver, kubectl) from the versions pinned in this directory's go.mod,
# into ${FLOWLENS_CACHE:-/var/cache/flowlens}/kube/v1.37.2/bin/.
#
# Idempotent: binaries already there are not rebuilt. Safe to run from several
# processes at once (a lock serialises them). Prints the bin directory on its
# last line of stdout; progress goes to stderr.
#
# A cold build of kube-apiserver takes several minutes and ~2 GB of Go build
# cache on a 2-core machine.
set -euo pipefail

KUBE_VERSION=v1.37.2
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache="${FLOWLENS_CACHE:-/var/cache/flowlens}"
bin="$cache/kube/$KUBE_VERSION/bin"

declare -A pkgs=(
	[etcd]=go.etcd.io/etcd/server/v3
	[kube-apiserver]=k8s.io/kubernetes/cmd/kube-apiserver
	[kubectl]=k8s.io/kubernetes/cmd/kubectl
)

missing() {
	local name
	for name in "${!pkgs[@]}"; do
		[[ -x "$bin/$name" ]] || echo "$name"
	done
}

mkdir -p "$bin"
if [[ -n "$(missing)" ]]; then
	# Serialise concurrent builds; re-check after taking the lock because
	# another process may have finished the work meanwhile.
	exec 9>"$bin/.build.lock"
	flock 9
	# Without these the binaries report v0.0.0-master; kubectl and client-go
	# compare versions, so stamp the real release.
	ldflags="-s -w"
	for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
		ldflags+=" -X $p.gitVersion=$KUBE_VERSION -X $p.gitMajor=1 -X $p.gitMinor=37"
		ldflags+=" -X $p.gitTreeState=clean -X $p.buildDate=1970-01-01T00:00:00Z"
	done
	for name in $(missing); do
		echo "building $name (${pkgs[$name]})..." >&2
		start=$SECONDS
		tmp="$bin/.$name.tmp"
		(cd "$here" && GOWORK=off CGO_ENABLED=0 go build -buildvcs=false -trimpath -ldflags "$ldflags" -o "$tmp" "${pkgs[$name]}")
		mv -f "$tmp" "$bin/$name" # atomic: readers never see a partial binary
		echo "built $name in $((SECONDS - start))s" >&2
	done
fi
echo "$bin"
