#!/usr/bin/env bash
# A live SYN flood: one million SYNs from distinct sources (bench/syn-flood.py)
# replayed at top speed with tcpreplay into one end of a veth pair; on the
# other end, in a network namespace this script creates, tcp-exporter with
# the default --max-flows (131,072) and --max-series, while a loop scrapes
# /metrics every 100 ms. Reports, per backend: packets counted and dropped,
# flows tracked and evicted, peak RSS (VmHWM), and the scrape latency
# (curl's time_total) during the flood: median, 99th percentile, max.
#
#   bench/flood.sh [N]       default 1000000 SYNs
#
# BENCH_BACKENDS="pcap af-packet" picks the backends.
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-1000000}
bin=target/release/tcp-exporter
backends=${BENCH_BACKENDS:-pcap af-packet}
ns=tcpx-bench-flood-$$
port=19411
[ -x "$bin" ] || cargo build --release --locked
mkdir -p target/bench
file=target/bench/syn-$n.pcap
[ -f "$file" ] || python3 bench/syn-flood.py "$n" "$file"
tmp=$(mktemp -d)

pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  ip netns del "$ns" 2>/dev/null || true
  ip link del tfl-out 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT

ip netns add "$ns"
ip link add tfl-out type veth peer name tfl-in
ip link set tfl-in netns "$ns"
ip link set tfl-out up
ip -n "$ns" link set tfl-in up
ip -n "$ns" link set lo up

metric() { awk -v m="$1" '$1 ~ "^"m"({|$)" {s += $2} END {printf "%d", s}' "$2"; }

printf "| backend | replayed | counted | dropped | flows tracked | evicted (table_full) | peak RSS | scrapes | scrape median | p99 | max |\n"
printf "|---|---|---|---|---|---|---|---|---|---|---|\n"
for backend in $backends; do
  ip netns exec "$ns" "$bin" --backend "$backend" -i tfl-in -p "$port" --listen 127.0.0.1 \
    2>"$tmp/$backend.log" &
  pid=$!
  pids+=("$pid")
  for _ in $(seq 100); do
    ip netns exec "$ns" curl -sf "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break
    sleep 0.1
  done
  : >"$tmp/lat"
  (
    while :; do
      ip netns exec "$ns" curl -s -o /dev/null -w '%{time_total}\n' \
        "http://127.0.0.1:$port/metrics" >>"$tmp/lat" || true
      sleep 0.1
    done
  ) &
  scraper=$!
  pids+=("$scraper")
  tcpreplay -q --topspeed -i tfl-out "$file" >"$tmp/replay.txt" 2>&1
  sleep 1
  kill "$scraper"; wait "$scraper" 2>/dev/null || true
  ip netns exec "$ns" curl -s "http://127.0.0.1:$port/metrics" >"$tmp/final.txt"
  hwm=$(awk '/^VmHWM/ {print $2}' "/proc/$pid/status")
  kill -TERM "$pid"; wait "$pid" || true
  sort -n "$tmp/lat" | awk -v b="$backend" -v n="$n" -v hwm="$hwm" \
    -v counted="$(metric tcp_exporter_capture_packets_total "$tmp/final.txt")" \
    -v dropped="$(metric tcp_exporter_capture_drops_total "$tmp/final.txt")" \
    -v tracked="$(metric tcp_exporter_flows_tracked "$tmp/final.txt")" \
    -v evicted="$(grep 'flow_evictions_total.*table_full' "$tmp/final.txt" | awk '{s += $2} END {printf "%d", s}')" '
    { v[NR] = $1 * 1000 }
    END {
      p99 = v[int(NR * 0.99) > 0 ? int(NR * 0.99) : 1]
      printf "| %s | %d | %d | %d | %d | %d | %.1f MiB | %d | %.1f ms | %.1f ms | %.1f ms |\n",
        b, n, counted, dropped, tracked, evicted, hwm / 1024, NR, v[int((NR + 1) / 2)], p99, v[NR]
    }'
done
