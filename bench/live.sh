#!/usr/bin/env bash
# Live capture: replay the benchmark capture at top speed into one end of a
# veth pair with tcpreplay; on the other end, in a network namespace this
# script creates, run tcp-exporter (one backend per run) and, at the same
# time, `tcpdump -w /dev/null`. Reports the share of the replayed packets
# each accounted for, and the CPU each used per replayed packet (user +
# system time from /proc, all threads; and the user-space part alone). For
# the xdp backend, whose programs run in the kernel's receive path and are
# not charged to the exporter's process, it also reports their own run time
# per packet (kernel.bpf_stats_enabled, read with bpftool). Kernel work on
# a packet's receive path is charged to whatever runs when it happens, so the
# last column is the machine's: all CPUs' busy time during the replay, per
# packet, above a first run with tcpdump alone (the "system" column).
#
#   bench/live.sh [FILE]     default target/bench/bulk.pcap (made if missing)
#
# BENCH_BACKENDS="pcap af-packet xdp-native xdp-generic" picks the backends
# (the xdp ones build the exporter with --features xdp); BENCH_WORKERS (2)
# the af-packet workers; BENCH_FLAGS more flags for every exporter (e.g.
# --no-connection-table). BENCH_PERF=DIR records a profile of each exporter
# during its replay (perf record -e cpu-clock -g) into DIR/BACKEND.data.
# BENCH_SAVE=DIR keeps each exporter's last scrape as DIR/BACKEND.prom (to
# compare what two runs counted).
# BENCH_BIN=PATH runs that binary, not rebuilt by the script (to compare two
# builds in turns; a path from the repository's root, or absolute; for xdp
# it must have been built with --features xdp).
#
# The capture keeps 96 bytes of each frame. Replayed as they are, those cut
# frames would be the wire: a 1,000-byte segment would arrive as 30 bytes
# of payload, and the analysis would rightly see a gap before nearly every
# data segment (a lost segment each), a path real traffic rarely takes.
# So the frames are first padded with zeros to the length their IP headers
# give (tcprewrite --fixlen=pad, once, into FILE's name with -wire), and
# the wire carries whole segments as it did when the capture was made.
# BENCH_CUT=1 replays the cut frames instead (the figures before
# 2026-12-06 late evening were taken that way).
set -euo pipefail
cd "$(dirname "$0")/.."
file=${1:-target/bench/bulk.pcap}
bin=${BENCH_BIN:-target/release/tcp-exporter}
backends=${BENCH_BACKENDS:-pcap af-packet xdp-native xdp-generic}
workers=${BENCH_WORKERS:-2}
ns=tcpx-bench-live-$$
port=19311
[ -f "$file" ] || bench/make-capture.sh "$file"
if [ "${BENCH_CUT:-0}" != 1 ]; then
  wire=${file%.pcap}-wire.pcap
  if [ ! -f "$wire" ] || [ "$wire" -ot "$file" ]; then
    tcprewrite --fixlen=pad -i "$file" -o "$wire.tmp" && mv "$wire.tmp" "$wire"
  fi
  file=$wire
fi
if [ -n "${BENCH_BIN:-}" ]; then
  [ -x "$bin" ] || { echo "BENCH_BIN=$bin: no such program" >&2; exit 1; }
elif [[ $backends == *xdp* ]]; then
  cargo build --release --locked --features xdp
else
  [ -x "$bin" ] || cargo build --release --locked
fi

pids=()
bpf_stats=$(sysctl -n kernel.bpf_stats_enabled)
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  ip link del tbl0 2>/dev/null || true
  ip netns del "$ns" 2>/dev/null || true
  sysctl -qw kernel.bpf_stats_enabled="$bpf_stats"
}
trap cleanup EXIT

ip netns add "$ns"
ip link add tbl0 type veth peer name tbl1 netns "$ns"
ip link set tbl0 up
ip -n "$ns" link set tbl1 up
ip -n "$ns" link set lo up
ethtool -K tbl0 tso off gso off gro off >/dev/null
ip netns exec "$ns" ethtool -K tbl1 tso off gso off gro off >/dev/null

# utime + stime of a process and all its threads, in clock ticks; utime alone.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
user_ticks() { awk '{print $14}' "/proc/$1/stat"; }
# Run time (ns) of the xdp backend's programs so far, all of them.
bpf_run_ns() {
  bpftool -j prog show | python3 -c '
import json, sys
print(sum(p.get("run_time_ns", 0) for p in json.load(sys.stdin)
          if p.get("name", "").startswith("tcpx_")))'
}
# Busy time of all CPUs (user, nice, system, irq, softirq), in clock ticks.
sys_ticks() { awk '/^cpu / {print $2 + $3 + $4 + $7 + $8}' /proc/stat; }
hz=$(getconf CLK_TCK)
base_ns=0

# tcpdump -w /dev/null on the capture end, in the background ($! is its pid).
start_tcpdump() {
  ip netns exec "$ns" tcpdump -i tbl1 -n -s 192 -w /dev/null tcp 2>"$tmp/tcpdump.err" &
  pids+=("$!")
}

# tcpdump alone: the machine's busy time per packet that the exporter's
# rows are measured above.
baseline() {
  start_tcpdump
  local dump=$!
  for _ in $(seq 100); do
    grep -q "listening on" "$tmp/tcpdump.err" && break
    sleep 0.1
  done
  local s0 s1 sent
  s0=$(sys_ticks)
  sent=$(tcpreplay --topspeed -i tbl0 "$file" 2>&1 | awk '/Actual:/ {print $2; exit}')
  sleep 0.6
  s1=$(sys_ticks)
  kill -INT "$dump"; wait "$dump" 2>/dev/null || true
  pids=()
  local dumped
  dumped=$(awk '/packets captured/ {print $1}' "$tmp/tcpdump.err")
  base_ns=$(awk -v st="$((s1 - s0))" -v hz="$hz" -v s="$sent" 'BEGIN {printf "%.1f", 1e9 * st / hz / s}')
  printf "| tcpdump alone (baseline)                  | %9d | %9d | %8.3f%% |        |          |          |          | | system %s ns |\n" \
    "$sent" "$dumped" "$(awk -v d="$dumped" -v s="$sent" 'BEGIN {print 100 * d / s}')" "$base_ns"
}

scrape() { ip netns exec "$ns" curl -s "http://127.0.0.1:$port/metrics"; }
sum_metric() { awk -v m="$1" '$1 ~ "^"m"({|$)" {s += $2} END {printf "%d", s}'; }

run_one() {
  local backend=$1 label=$2 args=()
  case $backend in
    af-packet) args=(--backend af-packet --workers "$workers") ;;
    xdp-native) args=(--backend xdp --xdp-mode native) ;;
    xdp-generic) args=(--backend xdp --xdp-mode generic) ;;
  esac
  # shellcheck disable=SC2086 # BENCH_FLAGS is a list of flags
  ip netns exec "$ns" "$bin" -i tbl1 -p "$port" --listen 127.0.0.1 "${args[@]}" ${BENCH_FLAGS:-} 2>/dev/null &
  local exp=$!
  pids+=("$exp")
  start_tcpdump
  local dump=$!
  for _ in $(seq 100); do
    [ "$(ip netns exec "$ns" curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/readyz")" = 200 ] \
      && grep -q "listening on" "$tmp/tcpdump.err" && break
    sleep 0.1
  done
  local e0 d0 e1 d1 u0 u1 b0=0 b1=0
  e0=$(cpu_ticks "$exp"); d0=$(cpu_ticks "$dump"); u0=$(user_ticks "$exp")
  [[ $backend == xdp* ]] && b0=$(bpf_run_ns)
  local sent perf=
  if [ -n "${BENCH_PERF:-}" ]; then
    mkdir -p "$BENCH_PERF"
    perf record -q -e cpu-clock -F 4999 -g -p "$exp" -o "$BENCH_PERF/$backend.data" 2>/dev/null &
    perf=$!
  fi
  local s0 s1
  s0=$(sys_ticks)
  sent=$(tcpreplay --topspeed -i tbl0 "$file" 2>&1 | awk '/Actual:/ {print $2; exit}')
  # Let both drain: the exporter's count stops moving.
  local last=-1 now=0
  for _ in $(seq 100); do
    now=$(scrape | sum_metric tcp_exporter_capture_packets_total)
    [ "$now" = "$last" ] && break
    last=$now
    sleep 0.3
  done
  e1=$(cpu_ticks "$exp"); d1=$(cpu_ticks "$dump"); u1=$(user_ticks "$exp")
  s1=$(sys_ticks)
  if [ -n "$perf" ]; then kill -INT "$perf"; wait "$perf" 2>/dev/null || true; fi
  [[ $backend == xdp* ]] && b1=$(bpf_run_ns)
  local text
  text=$(scrape)
  if [ -n "${BENCH_SAVE:-}" ]; then
    mkdir -p "$BENCH_SAVE"
    echo "$text" > "$BENCH_SAVE/$backend.prom"
  fi
  local counted drops
  counted=$(echo "$text" | sum_metric tcp_packets_total)
  drops=$(echo "$text" | awk '/^tcp_exporter_capture_drops_total.*stage="kernel"/ {s += $2} END {printf "%d", s}')
  kill -INT "$dump"; wait "$dump" 2>/dev/null || true
  kill -TERM "$exp"; wait "$exp" 2>/dev/null || true
  pids=()
  local dumped
  dumped=$(awk '/packets captured/ {print $1}' "$tmp/tcpdump.err")
  awk -v b="$label" -v s="$sent" -v c="$counted" -v k="$drops" -v et="$((e1 - e0))" \
      -v ut="$((u1 - u0))" -v bpf="$((b1 - b0))" -v x="${backend%%-*}" \
      -v d="$dumped" -v dt="$((d1 - d0))" -v hz="$hz" -v st="$((s1 - s0))" -v base="$base_ns" 'BEGIN {
    kernel = x == "xdp" && bpf > 0 ? sprintf("%5.1f ns", bpf / s) : "-"
    printf "| tcp-exporter %-28s | %9d | %9d | %8.3f%% | %6d | %6.2f s | %5.1f ns | %5.1f ns | %s | %5.1f ns |\n", b, s, c, 100 * c / s, k, et / hz, 1e9 * et / hz / s, 1e9 * ut / hz / s, kernel, 1e9 * st / hz / s - base
    printf "| tcpdump -w /dev/null (same run)          | %9d | %9d | %8.3f%% |        | %6.2f s | %5.1f ns | | | |\n", s, d, 100 * d / s, dt / hz, 1e9 * dt / hz / s
  }'
}

tmp=$(mktemp -d)
# BENCH_BPF_STATS=0 leaves the programs' run time unmeasured (the
# measurement itself costs two clock reads per run).
[[ $backends == *xdp* && ${BENCH_BPF_STATS:-1} == 1 ]] && sysctl -qw kernel.bpf_stats_enabled=1
echo "| capturer | replayed | accounted | share | kernel drops | CPU | CPU/packet | user/packet | BPF programs/packet | system/packet above baseline |"
echo "|---|---|---|---|---|---|---|---|---|---|"
baseline
for b in $backends; do
  label=$b
  case $b in
    af-packet) label="af-packet ($workers workers)" ;;
    xdp-native) label="xdp (native)" ;;
    xdp-generic) label="xdp (generic)" ;;
  esac
  run_one "$b" "$label"
done
rm -rf "$tmp"
