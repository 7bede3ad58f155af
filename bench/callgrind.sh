#!/usr/bin/env bash
# Instructions per packet of `tcp-exporter -r FILE --print`, counted by
# valgrind's callgrind: the same on any machine for the same build and
# capture, so a change in the per-packet path shows whatever the machine's
# noise. Two fixed captures made by scripts/random-conversations.py (seed 1:
# the same bytes every time), a large one and a small one; the small one's
# count (start-up, printing) is taken from the large one's, and the rest
# divided by the difference in packets. Also as pcapng (editcap), read by
# our own reader. Prints a table, and the functions with the most
# instructions on the large capture.
#
#   bench/callgrind.sh [CONVERSATIONS]     default 3000
#
# BENCH_BIN=PATH counts that binary instead of target/release/tcp-exporter
# (to compare two builds).
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-3000}
bin=${BENCH_BIN:-target/release/tcp-exporter}
[ -n "${BENCH_BIN:-}" ] || [ -x "$bin" ] || cargo build --release --locked
command -v valgrind >/dev/null || { echo "callgrind.sh: needs valgrind (Debian package valgrind)" >&2; exit 1; }
dir=target/bench/callgrind
mkdir -p "$dir"
for count in "$n" 10; do
  f=$dir/conv-$count.pcap
  [ -f "$f" ] || python3 scripts/random-conversations.py --seed 1 --count "$count" "$f"
  [ -f "${f}ng" ] || editcap -F pcapng "$f" "${f}ng"
done

# Instructions executed (Ir) reading FILE.
instructions() {
  local out=$dir/callgrind.out.$(basename "$1")
  valgrind --tool=callgrind --callgrind-out-file="$out" "$bin" -r "$1" --print >/dev/null 2>"$out.log"
  awk '/^summary:/ {print $2}' "$out"
}
packets() {
  capinfos -c -M "$1" | awk -F: '/Number of packets/ {gsub(/ /, "", $2); print $2}'
}

printf "| file | packets | instructions | instructions per packet |\n|---|---|---|---|\n"
for ext in pcap pcapng; do
  big=$dir/conv-$n.$ext small=$dir/conv-10.$ext
  pb=$(packets "$big") ps=$(packets "$small")
  ib=$(instructions "$big") is=$(instructions "$small")
  awk -v f="conv-$n.$ext" -v pb="$pb" -v ps="$ps" -v ib="$ib" -v is="$is" 'BEGIN {
    printf "| %s | %d | %d | %.0f |\n", f, pb, ib, (ib - is) / (pb - ps) }'
done
echo
echo "Where the instructions of conv-$n.pcap go (by source file and function, callees not included):"
echo
echo '```'
callgrind_annotate --threshold=90 "$dir/callgrind.out.conv-$n.pcap" 2>/dev/null \
  | awk '/file:function/ {f = 1; getline; next} f && NF' | head -15 | sed 's/ *\[[^]]*\]$//'
echo '```'
