#!/usr/bin/env bash
# What the OTLP export costs at the default --max-series, full: the exporter
# serves a capture of 3,000 clients (bench/make-clients.py; 2,000 label
# sets, about 11 MB of exposition) read with -r, and exports it every 2 s
# to a real OpenTelemetry Collector (scripts/otel-collector.sh, built once)
# for 20 s. Prints the OTLP thread's CPU time per export, the requests per
# export, and the exporter's peak resident memory, against the same run
# scraped three times without OTLP.
#
#   bench/otlp.sh [grpc|http]      default grpc
set -euo pipefail
cd "$(dirname "$0")/.."
protocol=${1:-grpc}
bin=target/release/tcp-exporter
[ -x "$bin" ] || cargo build --release --locked
mkdir -p target/bench
capture=target/bench/clients-3000.pcap
[ -f "$capture" ] || python3 bench/make-clients.py 3000 "$capture"
dir=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  bash scripts/otel-collector.sh stop "$dir/otelcol" >/dev/null 2>&1 || true
  rm -rf "$dir"
}
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
kib() { awk -v k="$2" '$1 == k":" {print $2}' "/proc/$1/status"; }

# Without OTLP: three scrapes.
p=$(port)
"$bin" -r "$capture" -p "$p" --listen 127.0.0.1 >/dev/null 2>&1 & pid=$!; pids+=("$pid")
until curl -sf "127.0.0.1:$p/readyz" >/dev/null; do sleep 0.1; done
for _ in 1 2 3; do curl -s "127.0.0.1:$p/metrics" >/dev/null; done
bytes=$(curl -s "127.0.0.1:$p/metrics" | wc -c)
plain=$(kib "$pid" VmHWM)
kill "$pid"

bash scripts/otel-collector.sh start "$dir/otelcol" >/dev/null
endpoint=$(sed -n "s/^$protocol=//p" "$dir/otelcol/endpoints")
p=$(port)
"$bin" -r "$capture" -p "$p" --listen 127.0.0.1 --otlp-endpoint "http://$endpoint" \
  --otlp-protocol "$protocol" --otlp-interval 2s >/dev/null 2>&1 & pid=$!; pids+=("$pid")
sleep 20
ticks=0
for t in /proc/"$pid"/task/*; do
  [ "$(cat "$t/comm")" = otlp ] && ticks=$(awk '{print $14 + $15}' "$t/stat")
done
exports=$(curl -s "127.0.0.1:$p/metrics" \
  | awk '/^tcp_exporter_otlp_exports_total\{signal="metrics",result="ok"\}/ {print $2}')
failed=$(curl -s "127.0.0.1:$p/metrics" \
  | awk '/^tcp_exporter_otlp_exports_total\{signal="metrics",result="failed"\}/ {print $2}')
otlp=$(kib "$pid" VmHWM)
kill "$pid"
requests=$(wc -l < "$dir/otelcol/metrics.json")
hz=$(getconf CLK_TCK)
printf "| protocol | exposition | exports (failed) | requests per export | CPU per export | peak RSS with OTLP | without |\n|---|---|---|---|---|---|---|\n"
awk -v pr="$protocol" -v b="$bytes" -v e="$exports" -v f="$failed" -v r="$requests" -v t="$ticks" \
    -v hz="$hz" -v o="$otlp" -v n="$plain" 'BEGIN {
  printf "| %s | %.1f MB | %d (%d) | %.0f | %.0f ms | %.0f MB | %.0f MB |\n",
    pr, b / 1e6, e, f, r / e, t / hz / e * 1000, o / 1024, n / 1024 }'
