#!/usr/bin/env bash
# Every benchmark of docs/performance.md, from a fresh clone, as root:
# installs the tools (make test-deps), builds in release, makes the
# benchmark capture (real iperf3 traffic between namespaces), then prints
# the offline (pcap and pcapng), instruction-count, live, memory,
# connection-table and OTLP tables. About 10 minutes (tshark's runs on the
# capture alone take three).
# `cargo bench --bench pipeline` gives the per-function figures.
set -euo pipefail
cd "$(dirname "$0")/.."
make --no-print-directory test-deps >/dev/null
cargo build --release --locked
[ -f target/bench/bulk.pcap ] || bench/make-capture.sh target/bench/bulk.pcap
[ -f target/bench/bulk.pcapng ] || editcap -F pcapng target/bench/bulk.pcap target/bench/bulk.pcapng
echo "## Offline: -r FILE --print, one core, beside tshark (classic pcap, then pcapng)"
echo
echo '```'
bench/offline.sh target/bench/bulk.pcap
bench/offline.sh target/bench/bulk.pcapng
echo '```'
echo
echo "## Instructions per packet (callgrind)"
echo
bench/callgrind.sh
echo
echo "## Live: tcpreplay --topspeed into a veth, each backend beside tcpdump"
echo
bench/live.sh target/bench/bulk.pcap
echo
echo "## Memory: a million flows"
echo
bench/memory.sh 1000000
echo
echo "## The live connection table at 100,000 connections"
echo
bench/connections.sh 100000
echo
echo "## OTLP export at the default --max-series"
echo
bench/otlp.sh grpc
bench/otlp.sh http | tail -1
