#!/usr/bin/env bash
# The live connection table at scale: the exporter reads a capture of N
# distinct SYNs (bench/syn-flood.py: N connections tracked, none closes)
# and serves it; then
# - the time of a /connections request (curl's total, the median of 20,
#   150 ms apart: the exporter keeps passes 100 ms apart) at
#   limit 100 and 1000, sorted by retransmissions (a full pass over the N
#   records under the worker's lock, a heap of `limit`, the copy, the JSON);
# - peak RSS with the table and with --no-connection-table, and the
#   difference per connection.
#
#   bench/connections.sh [N]      default 100000
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-100000}
bin=target/release/tcp-exporter
[ -x "$bin" ] || cargo build --release --locked
mkdir -p target/bench
capture=target/bench/syn-$n.pcap
[ -f "$capture" ] || python3 bench/syn-flood.py "$n" "$capture"
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')

pid=
stop() { [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; pid=; }
trap stop EXIT

# Starts the exporter on the capture with flags "$@" and waits for the read.
serve() {
  "$bin" -r "$capture" --listen 127.0.0.1 -p "$port" --max-flows "$((n + 1000))" \
    --flow-idle-timeout 3600 "$@" 2>/dev/null &
  pid=$!
  until curl -sf "http://127.0.0.1:$port/readyz" >/dev/null; do sleep 0.1; done
}

peak_kib() { awk '/^VmHWM/ {print $2}' "/proc/$pid/status"; }

median_ms() {
  for _ in $(seq 20); do
    # Past the 100 ms the exporter keeps between two passes.
    sleep 0.15
    curl -s -o /dev/null -w '%{time_total}\n' "http://127.0.0.1:$port/connections?$1"
  done | sort -n | awk '{a[NR] = $1} END {printf "%.1f", a[int((NR + 1) / 2)] * 1000}'
}

serve
held=$(curl -s "http://127.0.0.1:$port/connections?limit=1" | python3 -c 'import json, sys; print(json.load(sys.stdin)["held"])')
t100=$(median_ms "sort=retransmissions&limit=100")
t1000=$(median_ms "sort=retransmissions&limit=1000")
bytes1000=$(curl -s "http://127.0.0.1:$port/connections?limit=1000" | wc -c)
with=$(peak_kib)
stop
serve --no-connection-table
without=$(peak_kib)
stop

printf "| connections held | /connections limit=100 | limit=1000 (%s bytes) | peak RSS with the table | without | per connection |\n" "$bytes1000"
printf "|---|---|---|---|---|---|\n"
printf "| %s | %s ms | %s ms | %s MiB | %s MiB | %s bytes |\n" "$held" "$t100" "$t1000" \
  "$((with / 1024))" "$((without / 1024))" "$(( (with - without) * 1024 / n ))"
