# flowlens — `make help` lists the targets. CI runs `make test` (.ci/run), as root.
SHELL := /usr/bin/env bash
GO ?= go
# Budgets are counts, not durations: Go 1.26's fuzz coordinator can fail a
# duration-bounded run with "context deadline exceeded" and no crasher at
# the deadline (golang/go#75804, fixed in 1.27); a count has no deadline.
# 10,000 runs is about 10 s of the slowest target here.
FUZZTIME ?= 10000x
# Minimising each new interesting input by time can eat a whole run (seen
# with the wire decoder); bounded by count, fuzzing goes on.
FUZZMINIMIZE ?= 100x
# The packages with unit tests: all but the end-to-end suites, whose every
# test is privileged (test/e2e starts an agent in TestMain). In -short mode
# their privileged tests skip themselves: testutil.RequirePrivileged and
# cluster.StartControlPlane honour it.
UNIT_PKGS = $(shell $(GO) list ./... | grep -v '/test/e2e')

.PHONY: help setup kube generate proto ui build up test unit race fuzz bench validate root
help: ## Show this help
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

setup: ## Install Debian packages the tests need (idempotent)
	@./hack/setup.sh

kube: ## Build etcd, kube-apiserver, kubectl for the end-to-end cluster (cached)
	@./hack/kube/build.sh >/dev/null

generate: ## Rebuild the eBPF objects from bpf/ (needs clang)
	$(GO) generate ./internal/datapath

proto: setup ## Rebuild the protobuf Go from api/ (Debian's protoc, generators pinned in go.mod)
	$(GO) generate ./api/...

ui: ## Rebuild the web UI's bundle (internal/ui/dist) from ui/ with the committed lockfile
	cd ui && npm ci --no-audit --no-fund && npm test && npm run build

build: ## Build bin/flowlens
	$(GO) build -o bin/flowlens ./cmd/flowlens

up: ## Run flowlens up on this host (root)
	$(GO) run ./cmd/flowlens up

validate: setup ## gofmt, go vet, generated files up to date
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt needed"; exit 1; }
	$(GO) vet ./...
	./hack/check-generated.sh

unit: ## Tests that need no root: no eBPF, namespaces, cgroups or API server (-short)
	$(GO) test -short -count=1 $(UNIT_PKGS)

race: ## The unit tests under the race detector (as CI runs them)
	$(GO) test -race -short -count=1 $(UNIT_PKGS)

fuzz: ## Run each fuzz target for FUZZTIME
	@set -e; for pkg in $$($(GO) list ./... ); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
	    echo "fuzz $$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMINIMIZE) $$pkg; \
	  done; done

# -p 1: packages run one at a time. The privileged ones share one kernel, and
# every agent sees every test's traffic: a benchmark's flood in one package
# would overwrite the flow ring another package's test is about to read.
test: root validate kube race ## Everything CI runs, as root: validate, race, all tests, fuzz
	$(GO) test -count=1 -p 1 -timeout 20m ./...
	$(MAKE) --no-print-directory fuzz

bench: setup ## Benchmarks: results in bench/results/
	$(GO) run ./bench -o bench/results

# Without root every privileged test would skip and the run would pass having
# checked none of what needs the kernel: refuse instead.
root:
	@[[ $$(id -u) -eq 0 ]] || { echo "make test: needs root, or every privileged test (eBPF, namespaces, API server) skips; run 'sudo make test', or 'make unit' for the tests that need no root" >&2; exit 1; }
