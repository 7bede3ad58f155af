#!/usr/bin/env bash
# Every benchmark of docs/performance.md, from a fresh clone, as root:
# installs the tools (make test-deps), builds in release, makes the
# benchmark capture (real iperf3 traffic between namespaces), then prints
# the offline, live and memory tables. About 5 minutes (tshark's run on the
# capture alone is over a minute). `cargo bench --bench pipeline` gives the
# per-function figures.
set -euo pipefail
cd "$(dirname "$0")/.."
make --no-print-directory test-deps >/dev/null
cargo build --release --locked
[ -f target/bench/bulk.pcap ] || bench/make-capture.sh target/bench/bulk.pcap
echo "## Offline: -r FILE --print, one core, beside tshark"
echo
echo '```'
bench/offline.sh target/bench/bulk.pcap
echo '```'
echo
echo "## Live: tcpreplay --topspeed into a veth, each backend beside tcpdump"
echo
bench/live.sh target/bench/bulk.pcap
echo
echo "## Memory: a million flows"
echo
bench/memory.sh 1000000
