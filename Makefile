SHELL := /bin/bash
# weft: the whole set-up on a fresh Debian machine, as root, is
#   make demo   and   make test
# Each installs what it needs (Debian packages, Go modules from the module proxy).

GO        ?= go
BIN       := $(CURDIR)/bin
PKGS_DEB  := iproute2 iputils-ping iperf3 nftables ethtool tcpdump wireguard-tools util-linux curl
TOOLS     := ip ping iperf3 nft ethtool tcpdump wg unshare curl
TEST_TIMEOUT ?= 25m
# Tools built from their own modules (defined early: make expands prerequisites as it reads).
HELM      := $(CURDIR)/.cache/tools/helm

.PHONY: all build controlplane deps test unit lint demo bench bench-policy gobench manifests image e2e-kind clean sweep

all: build

# deps installs the Debian packages the lab and demo drive, only when missing.
deps:
	@missing=""; for t in $(TOOLS); do command -v $$t >/dev/null 2>&1 || missing="$$missing $$t"; done; \
	if [ -n "$$missing" ]; then \
		echo ">> installing Debian packages (missing:$$missing)"; \
		if [ "$$(id -u)" != 0 ]; then echo "need root to apt-get install: run as root"; exit 1; fi; \
		DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(PKGS_DEB) >/dev/null; \
	fi
	@command -v $(GO) >/dev/null || { echo "Go is not installed (need Go 1.26)"; exit 1; }
	@$(GO) mod download

# The reference plugins weft ships beside weft-cni (portmap, loopback) and the
# bench baseline (ptp, host-local), built from github.com/containernetworking/plugins.
CNI_PLUGINS := github.com/containernetworking/plugins/plugins/meta/portmap \
	github.com/containernetworking/plugins/plugins/main/loopback \
	github.com/containernetworking/plugins/plugins/main/ptp \
	github.com/containernetworking/plugins/plugins/ipam/host-local

build:
	$(GO) build -o $(BIN)/ ./cmd/... $(CNI_PLUGINS)
	$(GO) build -o $(BIN)/wireguard-go golang.zx2c4.com/wireguard

# The lab's real control plane (etcd, kube-apiserver, kube-proxy, CoreDNS) comes from
# its own module in tools/controlplane; a cold build takes ~7 min on 2 cores,
# a warm one (Go build cache) seconds.
CP_DIR := $(CURDIR)/.cache/controlplane
COREDNS_VERSION := v1.13.1
controlplane:
	cd tools/controlplane && $(GO) build -o $(CP_DIR)/ ./cmd/...
	@test -x $(CP_DIR)/coredns || { echo ">> building CoreDNS $(COREDNS_VERSION) (about 3 minutes cold)"; \
		GOBIN=$(CP_DIR) $(GO) install github.com/coredns/coredns@$(COREDNS_VERSION); }

lint:
	@echo ">> gofmt"; out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
		if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	@echo ">> go vet"; $(GO) vet ./...

# unit runs the tests that need no root.
unit:
	$(GO) test -short -count=1 ./...

# test runs everything: unit tests and the lab tests (root, network namespaces).
test: deps lint build controlplane $(HELM)
	@set -o pipefail; WEFT_BIN_DIR=$(BIN) WEFT_CONTROLPLANE_DIR=$(CP_DIR) WEFT_HELM=$(HELM) $(GO) test -count=1 -p 1 -timeout $(TEST_TIMEOUT) -v ./... 2>&1 | tee /tmp/weft-test.log; \
		status=$$?; \
		echo "tests: $$(grep -c -- '--- PASS' /tmp/weft-test.log) passed, $$(grep -c -- '--- FAIL' /tmp/weft-test.log) failed, $$(grep -c -- '--- SKIP' /tmp/weft-test.log) skipped"; \
		exit $$status

demo: deps build
	$(BIN)/weft-demo --bin-dir $(BIN)

# bench measures weft against the raw underlay, kernel VXLAN and upstream
# wireguard-go in one lab and one run (BENCH_FLAGS, e.g. --reps 5), and
# writes bench/results/. Go micro-benchmarks: make gobench.
BENCH_FLAGS ?=
bench: deps build
	$(BIN)/weft-bench --bin-dir $(BIN) --out bench/results $(BENCH_FLAGS)

# NetworkPolicy cost: throughput and new connections per second with 0 and
# 100 policies selecting the server pod (a lab with the real API server).
bench-policy: deps build controlplane
	WEFT_BIN_DIR=$(BIN) WEFT_CONTROLPLANE_DIR=$(CP_DIR) $(GO) test -run '^$$' -bench NetworkPolicy -benchtime 3x -timeout 15m ./e2e/ | tee /tmp/weft-bench-policy.log

# Go micro-benchmarks; the lab benchmarks have their own targets.
gobench:
	$(GO) test -run '^$$' -bench . -benchmem $$($(GO) list ./... | grep -v /e2e)

# manifests renders the Helm chart's defaults into deploy/weft.yaml, with the
# Helm CLI built from tools/helm (make test checks the two match).
$(HELM): tools/helm/go.mod
	cd tools/helm && $(GO) build -o $(HELM) helm.sh/helm/v3/cmd/helm

manifests: $(HELM)
	$(HELM) template weft deploy/helm/weft > deploy/weft.yaml

IMAGE ?= ghcr.io/weftnet/weft:0.1.0
image:
	@command -v docker >/dev/null && docker info >/dev/null 2>&1 || { echo "make image needs a running Docker engine (none here)"; exit 1; }
	docker build -t $(IMAGE) .

# e2e-kind creates a kind cluster (deploy/kind/cluster.yaml), loads the image,
# applies deploy/weft.yaml and checks pods, Services, DNS and iperf3 across
# nodes. It needs docker and kind; without them it says so and skips.
e2e-kind: build
	$(GO) test -tags kind -count=1 -v -timeout 30m ./e2e/kind/

sweep:
	$(GO) run ./cmd/weft-demo --sweep

clean:
	rm -rf $(BIN)
