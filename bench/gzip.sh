#!/usr/bin/env bash
# Scrape size and cost with and without gzip, at 2,000 and 10,000 label
# sets. The capture (bench/make-clients.py, N distinct clients) is served
# with `-r FILE --max-series N`; once ready, /metrics is fetched ROUNDS
# times plain and ROUNDS times with `Accept-Encoding: gzip` (as Prometheus
# asks). For each: the bytes on the wire, the median wall time of a GET,
# and the exporter's CPU per scrape (utime + stime from /proc/PID/stat,
# summed over the rounds, divided by them).
#
#   bench/gzip.sh [ROUNDS]      default 20
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-20}
bin=target/release/tcp-exporter
[ -x "$bin" ] || cargo build --release --locked
mkdir -p target/bench
work=$(mktemp -d)
pid=
cleanup() {
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
ticks=$(getconf CLK_TCK)
cpu() { awk -v t="$ticks" '{ print ($14 + $15) / t }' "/proc/$1/stat"; }

printf '| label sets | encoding | bytes | median GET | exporter CPU per scrape |\n|---|---|---|---|---|\n'
for n in 2000 10000; do
  pcap=target/bench/clients-$n.pcap
  if [ ! -f "$pcap" ]; then
    python3 bench/make-clients.py "$n" "$pcap.tmp" >/dev/null
    mv "$pcap.tmp" "$pcap"
  fi
  port=$(free_port)
  "$bin" -r "$pcap" --max-series "$n" --listen 127.0.0.1 -p "$port" 2>"$work/log" &
  pid=$!
  for _ in $(seq 200); do
    curl -sf "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break
    sleep 0.05
  done
  for enc in identity gzip; do
    header=()
    [ "$enc" = gzip ] && header=(-H 'Accept-Encoding: gzip')
    curl -s "${header[@]}" -o /dev/null "http://127.0.0.1:$port/metrics" # warm
    before=$(cpu "$pid")
    : >"$work/times"
    for _ in $(seq "$rounds"); do
      curl -s "${header[@]}" -o "$work/body" -w '%{time_total}\n' \
        "http://127.0.0.1:$port/metrics" >>"$work/times"
    done
    after=$(cpu "$pid")
    bytes=$(stat -c %s "$work/body")
    median=$(sort -n "$work/times" | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }')
    per=$(awk -v a="$after" -v b="$before" -v r="$rounds" 'BEGIN { printf "%.1f ms", (a - b) / r * 1000 }')
    printf '| %s | %s | %s | %.1f ms | %s |\n' "$n" "$enc" "$bytes" "$(awk -v m="$median" 'BEGIN { print m * 1000 }')" "$per"
  done
  kill "$pid"; wait "$pid" 2>/dev/null || true; pid=
done
