#!/usr/bin/env bash
# Offline throughput: `tcp-exporter -r FILE --print` beside tshark's TCP
# analysis on the same file, in the same run.
#
#   bench/offline.sh [FILE]
#
# Without FILE, uses target/bench/bulk.pcap, made by bench/make-capture.sh
# when missing. Prints one line per tool: packets, seconds (best of 3;
# tshark: 1 run), packets per second, peak RSS. BENCH_TSHARK=0 skips tshark.
set -euo pipefail
cd "$(dirname "$0")/.."

file=${1:-target/bench/bulk.pcap}
bin=target/release/tcp-exporter

[ -f "$file" ] || bench/make-capture.sh "$file"
[ -x "$bin" ] || cargo build --release --locked

packets=$(capinfos -c -M "$file" | awk -F: '/Number of packets/ {gsub(/ /, "", $2); print $2}')
size=$(du -h "$file" | cut -f1)
echo "capture: $file, $packets packets, $size"

# Best wall time of RUNS runs (3 by default), and the peak RSS of that run.
measure() {
  local runs=$1; shift
  local best="" rss="" tmp
  tmp=$(mktemp)
  for _ in $(seq "$runs"); do
    /usr/bin/time -o "$tmp" -f '%e %M' "$@" >/dev/null 2>&1
    local t m
    read -r t m < "$tmp"
    if [ -z "$best" ] || awk "BEGIN {exit !($t < $best)}"; then best=$t; rss=$m; fi
  done
  rm -f "$tmp"
  echo "$best $rss"
}

report() {
  local name=$1 runs=$2; shift 2
  read -r t rss < <(measure "$runs" "$@")
  awk -v n="$name" -v p="$packets" -v t="$t" -v r="$rss" \
    'BEGIN { pps = (t > 0) ? p / t : 0; printf "%-26s %10d packets %8.2f s %14.0f packets/s %8.1f MiB peak RSS\n", n, p, t, pps, r / 1024 }'
}

report "tcp-exporter --print" 3 "$bin" -r "$file" --print
# tshark is slow on a file this size: one run.
[ "${BENCH_TSHARK:-1}" = 0 ] || report "tshark (TCP analysis)" 1 tshark -n -r "$file" -q -z io,stat,0,"COUNT(tcp.analysis.flags)tcp.analysis.flags"
