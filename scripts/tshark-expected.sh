#!/usr/bin/env bash
# Regenerate testdata/pcaps/*.expected from the captures with tshark
# (definitions: scripts/tshark-expected.py and testdata/pcaps/README.md).
#
#   scripts/tshark-expected.sh [DIR]                   write DIR/FILE.expected
#   scripts/tshark-expected.sh --check-two-pass [DIR]  also check that tshark -2
#                                                      gives the same counts
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PY=${PYTHON:-python3}
check=0
if [[ ${1:-} == --check-two-pass ]]; then
    check=1
    shift
fi
DIR=${1:-$(dirname "$HERE")/testdata/pcaps}
command -v tshark >/dev/null || { echo "tshark-expected.sh: tshark not found" >&2; exit 1; }

shopt -s nullglob
files=("$DIR"/*.pcap "$DIR"/*.pcapng)
((${#files[@]})) || { echo "tshark-expected.sh: no captures in $DIR" >&2; exit 1; }

rc=0
for f in "${files[@]}"; do
    "$PY" "$HERE/tshark-expected.py" "$f"
    echo "$f.expected" >&2
    if ((check)); then
        if ! diff -u "$f.expected" <("$PY" "$HERE/tshark-expected.py" --stdout --two-pass "$f") >&2; then
            echo "tshark-expected.sh: $f: one pass and two passes differ" >&2
            rc=1
        fi
    fi
done
exit "$rc"
