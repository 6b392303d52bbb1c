#!/usr/bin/env bash
# Installs what building, testing and benchmarking flowlens need on a Debian
# machine, only what is missing: safe to run every time.
set -euo pipefail

packages=(
  clang llvm libbpf-dev   # regenerate the eBPF objects (bpf2go) to check they match bpf/
  gcc libc6-dev           # cgo, which go test -race needs
  bpftool                 # tests check that nothing stays attached
  iptables iproute2       # namespaces, veths, DROP rules, Service DNAT in tests
  dnsutils                # dig: real DNS clients in tests
  procps                  # sysctl inside test namespaces
  conntrack               # the benchmark's no-eBPF baseline (conntrack -L)
  protobuf-compiler       # protoc: regenerate api/ (make proto) to check it matches the .proto
  prometheus              # a real Prometheus scrapes the hub in e2e; promtool checks the exposition and the dashboard's PromQL
  chromium                # the web UI's browser tests (test/e2e/ui_test.go) drive Debian's Chromium headless
  postgresql redis-server # real L7 servers in e2e (test/e2e/l7_db_test.go), started by the tests in namespaces
  dnsmasq-base            # the real DNS server of test/e2e/l7_dns_test.go; -base: the binary without a system service
  curl                    # an OpenSSL-linked HTTPS client (test/e2e/l7_http_test.go)
)
missing=()
for p in "${packages[@]}"; do
  [[ $p == \#* ]] && continue
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# Rebuild the web UI's bundle (make ui) to check it matches ui/: the
# machine's Node.js and npm when it has them (NodeSource's nodejs carries its
# own npm, which Debian's npm package would conflict with), else Debian's.
command -v npm >/dev/null || missing+=(nodejs npm)
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  if [[ $(id -u) -ne 0 ]]; then SUDO=sudo; else SUDO=; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

echo "setup: ok"
