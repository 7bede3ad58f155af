#!/usr/bin/env python3
"""Print the agreement table: tshark's counts (the .expected files) beside
tcp-exporter's on every capture in testdata/pcaps, as a Markdown table with
one row per capture and one column per count (client+server summed; each
cell `tshark/exporter`, or a single number where they agree).

Usage: scripts/agreement.py [BINARY]   (default target/release/tcp-exporter)
"""
import pathlib
import re
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
KEYS = [  # (column, .expected key, metric, extra label filter)
    ("packets", "packets", "tcp_packets_total", None),
    ("payload B", "payload_bytes", "tcp_payload_bytes_total", None),
    ("RST", "resets", "tcp_resets_total", None),
    ("DF", "dont_fragment", "tcp_dont_fragment_packets_total", None),
    ("SYN wscale", "syn_wscale", "tcp_syn_window_scale_total", None),
    ("opened", "connections_opened", "tcp_connections_opened_total", None),
    ("retrans", "analysis_retransmission", "tcp_retransmitted_segments_total", 'kind="retransmission"'),
    ("fast", "analysis_fast_retransmission", "tcp_retransmitted_segments_total", 'kind="fast_retransmission"'),
    ("spurious", "analysis_spurious_retransmission", "tcp_retransmitted_segments_total", 'kind="spurious_retransmission"'),
    ("out of order", "analysis_out_of_order", "tcp_out_of_order_segments_total", None),
    ("dup ACK", "analysis_duplicate_ack", "tcp_duplicate_acks_total", None),
    ("lost", "analysis_lost_segment", "tcp_lost_segments_total", None),
    ("zero win", "analysis_zero_window", "tcp_zero_window_segments_total", None),
    ("ZW probe", "analysis_zero_window_probe", "tcp_zero_window_probes_total", None),
    ("win full", "analysis_window_full", "tcp_window_full_segments_total", None),
    ("keep-alive", "analysis_keep_alive", "tcp_keepalives_total", None),
]
LINE = re.compile(r'^([a-z_]+)(\{[^}]*\})? (\S+)$')


def totals(text, name, select=None):
    total = 0.0
    for line in text.splitlines():
        m = LINE.match(line)
        if m and m.group(1) == name and (select is None or select in (m.group(2) or "")):
            total += float(m.group(3))
    return int(total)


def main():
    binary = sys.argv[1] if len(sys.argv) > 1 else str(ROOT / "target/release/tcp-exporter")
    print("| capture | " + " | ".join(k[0] for k in KEYS) + " |")
    print("|---" * (len(KEYS) + 1) + "|")
    disagree = 0
    for exp in sorted((ROOT / "testdata/pcaps").glob("*.expected")):
        capture = exp.with_suffix("")
        expected = exp.read_text()
        got = subprocess.run([binary, "-r", str(capture), "--print"],
                             capture_output=True, text=True, check=True).stdout
        cells = []
        for _, key, metric, select in KEYS:
            t = totals(expected, key)
            e = totals(got, metric, select)
            cells.append(str(t) if t == e else f"**{t}/{e}**")
            disagree += t != e
        print(f"| {capture.name} | " + " | ".join(cells) + " |")
    print(f"\n{disagree} cells differ (tshark/exporter in bold).")
    return 1 if disagree else 0


if __name__ == "__main__":
    sys.exit(main())
