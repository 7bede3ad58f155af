#!/usr/bin/env bash
# Series counts and scrape size with many distinct clients, with and without
# the series cap. The capture (bench/make-clients.py) holds N complete TCP
# connections (10 segments each), every one from its own client address, to
# 4 servers on 4 ports: N label sets (client, server, server_port) if nothing
# caps or aggregates them. For each configuration below, one run of
# `tcp-exporter -r FILE --print` under /usr/bin/time: label sets of the
# traffic metrics (the tcp_connections_active samples, own and folded),
# tcp_exporter_series_overflow_total, tcp_exporter_series_tracked (own /
# folded), samples in the exposition (lines not starting with #), its size,
# the run's wall time and peak RSS. For the default cap and the uncapped
# configuration, also the scrape alone: the exporter reads the file and
# serves it on a free loopback port; once /readyz says ready, three GETs of
# /metrics with curl, median time and size. The capture is written once, to
# target/bench/clients-N.pcap (N = 100,000: 1,000,000 packets, 182 MB); each
# exposition goes to a temporary file (549 MiB uncapped at N = 100,000).
#
#   bench/cardinality.sh [N]      default 100000
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-100000}
bin=target/release/tcp-exporter
[ -x "$bin" ] || cargo build --release --locked
mkdir -p target/bench
pcap=target/bench/clients-$n.pcap
if [ ! -f "$pcap" ]; then
  python3 bench/make-clients.py "$n" "$pcap.tmp"
  mv "$pcap.tmp" "$pcap"
fi

work=$(mktemp -d)
pid=
cleanup() {
  if [ -n "$pid" ]; then
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

cat "$pcap" >/dev/null # into the page cache, so the first run does not pay for the disk

names=(
  "default (--max-series 2000)"
  "--max-series 1000000"
  "--max-series 1000000 --labels interface,server,server_port"
  "--max-series 1000000 --aggregate-cidr 0.0.0.0/0=/16"
  "--max-series 10000"
)
flags=(
  ""
  "--max-series 1000000"
  "--max-series 1000000 --labels interface,server,server_port"
  "--max-series 1000000 --aggregate-cidr 0.0.0.0/0=/16"
  "--max-series 10000"
)
scraped=(1 1 0 0 0)

# Counts over an exposition: label sets, overflow, own, folded, samples, opened.
counts() {
  LC_ALL=C awk '
    /^#/ || NF == 0 { next }
    { samples++ }
    /^tcp_connections_active[{ ]/ { sets++ }
    /^tcp_connections_opened_total[{ ]/ { opened += $NF }
    /^tcp_exporter_series_overflow_total[{ ]/ { overflow += $NF }
    /^tcp_exporter_series_tracked\{kind="own"\}/ { own += $NF }
    /^tcp_exporter_series_tracked\{kind="folded"\}/ { folded += $NF }
    END { printf "%d %d %d %d %d %d\n", sets, overflow, own, folded, samples, opened }' "$1"
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Serve the file with the given flags, GET /metrics three times once ready;
# writes "size seconds" of the median GET to $work/median. Runs in this shell
# (not in a subshell), so that the EXIT trap knows the exporter's PID.
scrape() {
  local port tries=0
  port=$(free_port)
  "$bin" -r "$pcap" -p "$port" --listen 127.0.0.1 "$@" >"$work/serve.log" 2>&1 &
  pid=$!
  until curl -sf -o /dev/null "http://127.0.0.1:$port/readyz"; do
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "the exporter exited before it was ready:" >&2
      cat "$work/serve.log" >&2
      exit 1
    fi
    tries=$((tries + 1))
    if [ "$tries" -gt 6000 ]; then
      echo "the exporter was not ready after 600 s" >&2
      exit 1
    fi
    sleep 0.1
  done
  for _ in 1 2 3; do
    curl -s -o /dev/null -w '%{size_download} %{time_total}\n' "http://127.0.0.1:$port/metrics"
  done >"$work/scrape"
  kill "$pid"
  wait "$pid" || true
  pid=
  sort -k2,2n "$work/scrape" | sed -n 2p >"$work/median"
}

echo "capture: $pcap, $n connections, $((n * 10)) packets; $(nproc) cores"
echo
printf '| configuration | label sets | series_overflow_total | series_tracked own / folded | samples | exposition | wall time | peak RSS |\n'
printf '|---|---|---|---|---|---|---|---|\n'
scrape_rows=()
for i in "${!names[@]}"; do
  read -ra args <<<"${flags[$i]}"
  out=$work/out.prom
  /usr/bin/time -o "$work/time" -f '%e %M' "$bin" -r "$pcap" --print "${args[@]}" >"$out"
  read -r sets overflow own folded samples opened < <(counts "$out")
  bytes=$(stat -c %s "$out")
  read -r wall rss <"$work/time"
  if [ "$opened" -ne "$n" ]; then
    echo "warning: ${names[$i]}: tcp_connections_opened_total is $opened, not $n" >&2
  fi
  LC_ALL=C awk -v name="${names[$i]}" -v sets="$sets" -v o="$overflow" -v own="$own" \
    -v f="$folded" -v s="$samples" -v b="$bytes" -v w="$wall" -v r="$rss" 'BEGIN {
    printf "| `%s` | %d | %d | %d / %d | %d | %d B (%.1f MiB) | %.2f s | %.1f MiB |\n",
      name, sets, o, own, f, s, b, b / 1048576, w, r / 1024
  }'
  rm -f "$out"
  if [ "${scraped[$i]}" = 1 ]; then
    scrape "${args[@]}"
    read -r size secs <"$work/median"
    scrape_rows+=("$(LC_ALL=C awk -v name="${names[$i]}" -v b="$size" -v t="$secs" 'BEGIN {
      printf "| `%s` | %d B (%.1f MiB) | %.3f s |", name, b, b / 1048576, t
    }')")
  fi
done
echo
printf '| configuration | scrape size | scrape time (median of 3) |\n|---|---|---|\n'
printf '%s\n' "${scrape_rows[@]}"
