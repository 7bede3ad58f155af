#!/usr/bin/env bash
# Memory per flow: peak RSS of `tcp-exporter -r FILE --print` over a capture
# of N distinct SYNs (bench/syn-flood.py; every SYN is a new flow, none is
# answered, none idles out), less the peak RSS over a capture of 10 SYNs,
# divided by the flows tracked. The flow table is sized to hold them all.
# Measured twice: with --max-series 10, so that the flow table is what is
# measured, and with 10,000 series, where the rendering of the
# final scrape (label strings for every series) adds its own peak.
#
#   bench/memory.sh [N]      default 1000000
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-1000000}
bin=target/release/tcp-exporter
[ -x "$bin" ] || cargo build --release --locked
mkdir -p target/bench
big=target/bench/syn-$n.pcap
[ -f "$big" ] || python3 bench/syn-flood.py "$n" "$big"
python3 bench/syn-flood.py 10 target/bench/syn-10.pcap

peak_kib() {
  local tmp; tmp=$(mktemp)
  /usr/bin/time -o "$tmp" -f '%M' "$bin" -r "$1" --print --max-flows "$((n + 1000))" \
    --flow-idle-timeout 3600 --max-series "$2" >/dev/null
  cat "$tmp"; rm -f "$tmp"
}
flows=$("$bin" -r "$big" --print --max-flows "$((n + 1000))" --flow-idle-timeout 3600 \
  | awk '/^tcp_exporter_flows_tracked/ {s += $2} END {printf "%d", s}')
printf "| --max-series | flows tracked | peak RSS | baseline RSS | bytes per flow |\n|---|---|---|---|---|\n"
for series in 10 10000; do
  base=$(peak_kib target/bench/syn-10.pcap "$series")
  full=$(peak_kib "$big" "$series")
  awk -v s="$series" -v f="$flows" -v b="$base" -v p="$full" 'BEGIN {
    printf "| %d | %d | %.1f MiB | %.1f MiB | %.0f |\n", s, f, p / 1024, b / 1024, (p - b) * 1024 / f
  }'
done
