#!/usr/bin/env bash
# Offline throughput: `tcp-exporter -r FILE --print` beside tshark's TCP
# analysis on the same file, in the same run.
#
#   scripts/bench-offline.sh [FILE]
#
# Without FILE, makes target/bench/bulk.pcap (kept between runs, not in git):
# real kernel traffic, iperf3 between two network namespaces this script
# creates over a veth pair, MSS 1000, 4 streams, 0.5% random loss on the
# server's input (nftables), offloads off so segments are wire-sized,
# captured with tcpdump at a 96-byte snap length. Prints one line per tool:
# packets, seconds (best of 3; tshark: 1 run), packets per second, peak RSS.
set -euo pipefail
cd "$(dirname "$0")/.."

file=${1:-target/bench/bulk.pcap}
bin=target/release/tcp-exporter
seconds=${BENCH_SECONDS:-12}

make_capture() {
  local ns_c=tcpx-bench-c ns_s=tcpx-bench-s pids=()
  cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    ip netns del "$ns_c" 2>/dev/null || true
    ip netns del "$ns_s" 2>/dev/null || true
  }
  trap cleanup EXIT
  cleanup
  ip netns add "$ns_c"
  ip netns add "$ns_s"
  ip link add tbc0 netns "$ns_c" type veth peer name tbs0 netns "$ns_s"
  ip -n "$ns_c" addr add 10.252.0.1/24 dev tbc0
  ip -n "$ns_s" addr add 10.252.0.2/24 dev tbs0
  for ns in "$ns_c" "$ns_s"; do
    ip -n "$ns" link set lo up
  done
  ip -n "$ns_c" link set tbc0 up
  ip -n "$ns_s" link set tbs0 up
  ip netns exec "$ns_c" ethtool -K tbc0 tso off gso off gro off >/dev/null
  ip netns exec "$ns_s" ethtool -K tbs0 tso off gso off gro off >/dev/null
  ip netns exec "$ns_s" nft -f - <<'NFT'
table inet loss {
  chain input {
    type filter hook input priority 0; policy accept;
    tcp dport 5201 numgen random mod 1000 < 5 drop
  }
}
NFT
  mkdir -p "$(dirname "$file")"
  ip netns exec "$ns_s" tcpdump -i tbs0 -s 96 -U -w "$file.tmp" tcp 2>/dev/null &
  pids+=($!)
  ip netns exec "$ns_s" iperf3 -s -1 >/dev/null &
  pids+=($!)
  sleep 1
  ip netns exec "$ns_c" iperf3 -c 10.252.0.2 -M 1000 -P 4 -t "$seconds" >/dev/null
  sleep 1
  kill -INT "${pids[0]}"
  wait "${pids[0]}" || true
  mv "$file.tmp" "$file"
  cleanup
  trap - EXIT
}

if [ ! -f "$file" ]; then
  echo "making $file (iperf3 for ${seconds}s)..." >&2
  make_capture
fi
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
