# tcp-exporter: set up, build, run and test.
#
#   make run ARGS='-i eth0'   install what building needs, build, run the exporter
#   make test                 install the test tools, run every test and lint
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
# What the tests need besides: reference analysis (tshark), capture and replay
# (tcpdump, tcpreplay), test networks with loss (iproute2, nftables, ethtool),
# traffic (iperf3, python3), `promtool check metrics` (prometheus), curl.
TEST_PKGS := tshark tcpdump tcpreplay nftables iproute2 ethtool iperf3 \
             python3 prometheus curl

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

.PHONY: deps test-deps build run test pcaps

deps:
	@$(ENSURE_PKGS)
	need_cargo
	ensure_pkgs $(BUILD_PKGS)

# One package list, so that apt-get update runs at most once.
test-deps:
	@$(ENSURE_PKGS)
	need_cargo
	ensure_pkgs $(BUILD_PKGS) $(TEST_PKGS)

build:
	$(CARGO) build --release --locked

run: deps build
	./target/release/tcp-exporter $(ARGS)

# Tests build with the release profile, so dependencies compile once, shared
# with `make build`. The live capture test needs root (see tests/live.rs).
test: test-deps
	if ! $(CARGO) clippy --version >/dev/null 2>&1 || ! $(CARGO) fmt --version >/dev/null 2>&1; then
	  rustup component add clippy rustfmt
	fi
	$(CARGO) test --release --locked
	$(CARGO) fmt --check
	$(CARGO) clippy --release --all-targets --locked -- -D warnings

# Regenerates testdata/pcaps from real traffic between network namespaces.
pcaps: test-deps
	bash scripts/gen-pcaps.sh
