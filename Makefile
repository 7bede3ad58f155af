# tcp-exporter: set up, build, run and test.
#
#   make run ARGS='-i eth0'   install what building needs, build, run the exporter
#   make test                 install the test tools, run every test and lint
#
# FEATURES=xdp adds the xdp capture backend (eBPF, built with clang) to
# `make deps`, `make build` and `make run`:
#   make run FEATURES=xdp ARGS='--backend xdp -i eth0'
# `make test` always builds and tests it.
#
# Installing Debian packages needs root; everything else does not.

SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.ONESHELL:
.DEFAULT_GOAL := build

CARGO ?= cargo
# Arguments for `make run`. Empty: capture on `any`, serve on :9090.
ARGS ?=

# What building needs (libpcap headers, found by pkg-config, linked by gcc).
BUILD_PKGS := libpcap-dev pkg-config gcc
# Cargo features to build with (space- or comma-separated): `xdp`.
FEATURES ?=
CARGO_FEATURES := $(if $(strip $(FEATURES)),--features '$(strip $(FEATURES))',)
# What the xdp feature needs besides: clang for `-target bpf` (llvm with it),
# libbpf's headers (bpf_helpers.h), the kernel's UAPI headers.
XDP_PKGS := clang llvm libbpf-dev linux-libc-dev
WANT_XDP_PKGS := $(if $(findstring xdp,$(FEATURES)),$(XDP_PKGS),)
# What the tests need besides: reference analysis (tshark; its
# wireshark-common brings editcap and mergecap), capture and replay (tcpdump,
# tcpreplay, which brings tcprewrite), test networks with loss (iproute2, nftables, ethtool),
# traffic (iperf3, python3), `promtool check metrics` (prometheus), curl.
# bpftool lists the xdp backend's programs (tests/xdp.rs) and their run
# time (bench/live.sh). openssl makes certificates and htpasswd (apache2-utils)
# bcrypt hashes for the HTTP tests (tests/http.rs); GNU time measures peak RSS
# (tests/flood.rs); chromium with chromium-driver shows the connection page
# headless and tmux runs `tcp-exporter top` (tests/connections.rs).
# scripts/kube-test-cluster.sh (a real kube-apiserver and
# etcd on 127.0.0.1 for the Kubernetes tests) needs openssl, curl and python3
# from this list, and the machine's Go toolchain (Debian's Go is too old for
# Kubernetes), which builds the two once into /var/cache/tcp-exporter.
TEST_PKGS := tshark tcpdump tcpreplay nftables iproute2 ethtool iperf3 \
             python3 prometheus curl bpftool openssl apache2-utils time \
             chromium chromium-driver tmux

# need_cargo: fails with a message when there is no Rust toolchain.
# ensure_pkgs PKG...: install the Debian packages that are missing, with one
# `apt-get update`. A machine that has them all never runs apt. Services that
# packages ship (prometheus) are not started: a temporary policy-rc.d says no,
# unless the machine has its own.
define ENSURE_PKGS
need_cargo() {
  if ! command -v $(CARGO) >/dev/null; then
    echo "make: no cargo: install a Rust toolchain first (https://rustup.rs); this Makefile assumes one" >&2
    return 1
  fi
}
ensure_pkgs() {
  if ! command -v dpkg-query >/dev/null; then
    echo "make: no dpkg-query: not a Debian machine; install these yourself: $$*" >&2
    return 1
  fi
  local p missing=()
  for p in "$$@"; do
    [[ "$$(dpkg-query -W -f='$${Status}' "$$p" 2>/dev/null)" == "install ok installed" ]] \
      || missing+=("$$p")
  done
  if (( $${#missing[@]} == 0 )); then
    echo "make: Debian packages already installed: $$*"
    return 0
  fi
  if (( EUID != 0 )); then
    echo "make: missing Debian packages: $${missing[*]}" >&2
    echo "make: run 'make $@' as root, or: sudo apt-get install $${missing[*]}" >&2
    return 1
  fi
  echo "make: installing Debian packages: $${missing[*]}"
  local policy=/usr/sbin/policy-rc.d
  if [[ ! -e $$policy ]]; then
    printf '#!/bin/sh\nexit 101\n' > "$$policy"
    chmod +x "$$policy"
    trap "rm -f $$policy" EXIT
  fi
  apt-get update
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$${missing[@]}"
}
endef

# The cargo-deny release `make test` checks the dependency tree with.
CARGO_DENY_VERSION := 0.19.0

# What the deployment tests need besides (tests/deploy, `make test-deploy`):
# a virtualenv for helm-sdkpy and kubernetes-validate; `prometheus` and
# `promtool` come with TEST_PKGS.
DEPLOY_PKGS := python3-venv
DEPLOY_VENV := target/deploy-venv
# The container image `make image` builds; the tag is the crate's version.
IMAGE ?= tcp-exporter
IMAGE_TAG ?= $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
# docker or podman; empty: the first of them whose engine answers.
CONTAINER_ENGINE ?=

# The deployment tests, run by `make test` after the cargo tests and by
# `make test-deploy` alone: a virtualenv made again only when
# tests/deploy/requirements.txt changes, then tests/deploy/run.py. (A shell
# snippet rather than a sub-make, so that `make -n test` runs nothing.)
define DEPLOY_TESTS
req=tests/deploy/requirements.txt
if ! cmp -s "$$req" $(DEPLOY_VENV)/requirements.txt; then
  rm -rf $(DEPLOY_VENV)
  python3 -m venv $(DEPLOY_VENV)
  # helm-sdkpy declares Python >= 3.12; what the tests use works on 3.11.
  $(DEPLOY_VENV)/bin/pip install --quiet --disable-pip-version-check --no-cache-dir \
    --ignore-requires-python -r "$$req"
  cp "$$req" $(DEPLOY_VENV)/requirements.txt
fi
$(DEPLOY_VENV)/bin/python tests/deploy/run.py
endef

.PHONY: deps test-deps build run test fuzz golden pcaps test-deploy image bench

deps:
	@$(ENSURE_PKGS)
	need_cargo
	ensure_pkgs $(BUILD_PKGS) $(WANT_XDP_PKGS)

# One package list, so that apt-get update runs at most once. The tests
# build the xdp feature too.
test-deps:
	@$(ENSURE_PKGS)
	need_cargo
	ensure_pkgs $(BUILD_PKGS) $(XDP_PKGS) $(TEST_PKGS) $(DEPLOY_PKGS)
	# cargo-deny (deny.toml), built once from the crate registry into
	# cargo's bin folder, at one version; a machine that has it skips this.
	if ! $(CARGO) deny --version 2>/dev/null | grep -qx "cargo-deny $(CARGO_DENY_VERSION)"; then
	  $(CARGO) install --locked cargo-deny@$(CARGO_DENY_VERSION)
	fi

build: deps
	$(CARGO) build --release --locked $(CARGO_FEATURES)

run: build
	./target/release/tcp-exporter $(ARGS)

# Tests build with the release profile, so dependencies compile once, shared
# with `make build`. They run with the xdp feature, so that all three capture
# backends are tested; the live capture tests need root (see tests/live.rs
# and tests/xdp.rs). Lints cover both builds. The last build, without the
# feature, is what the deployment tests run, and shows that a plain build
# never calls clang.
test: test-deps
	if ! $(CARGO) clippy --version >/dev/null 2>&1 || ! $(CARGO) fmt --version >/dev/null 2>&1; then
	  rustup component add clippy rustfmt
	fi
	# A real kube-apiserver and etcd for tests/kubernetes.rs, and a real
	# OpenTelemetry Collector for tests/otlp.rs, built once into
	# /var/cache/tcp-exporter (several minutes on a fresh machine).
	bash scripts/kube-test-cluster.sh build
	bash scripts/otel-collector.sh build
	$(CARGO) test --release --locked --features xdp
	# The fuzz smoke run, with overflow checks (a fixed seed: tests/fuzz.rs).
	$(CARGO) test --profile fuzz --locked --test fuzz -- --nocapture
	# The xdp build, kept for the deployment tests' capability check.
	cp target/release/tcp-exporter target/tcp-exporter-xdp
	$(CARGO) fmt --check
	$(CARGO) clippy --release --all-targets --locked --features xdp -- -D warnings
	$(CARGO) clippy --release --all-targets --locked -- -D warnings
	# Licenses, sources and duplicate versions (advisories need a network
	# these machines do not have: see deny.toml).
	$(CARGO) deny --locked check licenses bans sources
	CLANG=/bin/false $(CARGO) build --release --locked
	export TCPX_XDP_EXPORTER=$$PWD/target/tcp-exporter-xdp
	$(DEPLOY_TESTS)

# A long fuzz run (tests/fuzz.rs): each target for FUZZ_SECONDS, from a
# random seed that it prints; crashes go to target/fuzz-crashes/.
FUZZ_SECONDS ?= 600
fuzz:
	TCPX_FUZZ_SECONDS=$(FUZZ_SECONDS) TCPX_FUZZ_SEED=$${TCPX_FUZZ_SEED:-random} \
	  $(CARGO) test --profile fuzz --locked --test fuzz -- --nocapture

# Rewrites the golden expositions (testdata/golden, tests/golden.rs) from
# the current build: read `git diff testdata/golden` before committing.
golden:
	TCPX_GOLDEN_WRITE=1 $(CARGO) test --release --locked --test golden printed_metrics_equal
	git --no-pager diff --stat -- testdata/golden

# Regenerates testdata/pcaps from real traffic between network namespaces.
pcaps: test-deps
	bash scripts/gen-pcaps.sh

# Deployment tests (tests/deploy): the dashboard and alerting rules against a
# real Prometheus scraping the exporter, with and without --kubernetes on a
# real kube-apiserver (scripts/kube-test-cluster.sh, built once as for
# `make test`) and a real OpenTelemetry Collector (scripts/otel-collector.sh,
# likewise), the Helm chart through Helm's own library (helm-sdkpy) and
# the Kubernetes schemas (kubernetes-validate), the image's runtime
# libraries. The Python packages go into target/deploy-venv.
test-deploy: test-deps
	$(CARGO) build --release --locked
	bash scripts/kube-test-cluster.sh build
	bash scripts/otel-collector.sh build
	$(DEPLOY_TESTS)

# The container image (Dockerfile). No engine runs on the CI machine: build
# it where docker or podman does. CONTAINER_ENGINE=podman picks one.
image:
	@engine="$(CONTAINER_ENGINE)"
	installed=()
	if [[ -z $$engine ]]; then
	  for e in docker podman; do
	    command -v "$$e" >/dev/null || continue
	    installed+=("$$e")
	    if "$$e" info >/dev/null 2>&1; then engine=$$e; break; fi
	  done
	fi
	if [[ -z $$engine ]]; then
	  if (( $${#installed[@]} )); then
	    echo "make image: $${installed[*]} installed, but no container engine answers ('$${installed[0]} info' fails)" >&2
	  else
	    echo "make image: no container engine: neither docker nor podman is installed" >&2
	  fi
	  echo "make image: build the image where one runs (CI has none): make image, or docker build -t $(IMAGE):$(IMAGE_TAG) ." >&2
	  exit 1
	fi
	echo "make image: $$engine build -t $(IMAGE):$(IMAGE_TAG)"
	"$$engine" build --build-arg VERSION=$(IMAGE_TAG) -t $(IMAGE):$(IMAGE_TAG) .

# Every benchmark of docs/performance.md, printing its tables (as root:
# the live ones make network namespaces). About 10 minutes; never part of
# `make test`.
# valgrind (callgrind) counts instructions per packet (bench/callgrind.sh).
bench: test-deps
	@$(ENSURE_PKGS)
	ensure_pkgs valgrind
	bash bench/run.sh
