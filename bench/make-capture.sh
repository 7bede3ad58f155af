#!/usr/bin/env bash
# Makes the benchmark capture: real kernel traffic, iperf3 between two
# network namespaces this script creates over a veth pair, MSS 1000, 4
# streams, 0.5% random loss on the server's input (nftables), offloads off
# so segments are wire-sized, captured with tcpdump at a 96-byte snap length.
# About 5 million packets in 12 s of traffic (BENCH_SECONDS).
#
#   bench/make-capture.sh [FILE]     default target/bench/bulk.pcap
#
# The file stays out of git (target/); the script is the source of truth.
set -euo pipefail
cd "$(dirname "$0")/.."
file=${1:-target/bench/bulk.pcap}
seconds=${BENCH_SECONDS:-12}
echo "making $file (iperf3 for ${seconds}s)..." >&2
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


make_capture
