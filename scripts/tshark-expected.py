#!/usr/bin/env python3
"""Compute the expected TCP counts of a capture with tshark (stdlib only).

Usage: tshark-expected.py FILE [FILE...]   writes FILE.expected beside each
       tshark-expected.py --stdout FILE    prints the counts instead
       tshark-expected.py --per-connection FILE
                                           prints each connection's counts

One tshark pass per file:
  tshark -n -r FILE -o tcp.relative_sequence_numbers:FALSE
         -o tcp.analyze_sequence_numbers:TRUE -Y 'tcp && !icmp && !icmpv6'
         -T fields -E separator=/t -E occurrence=l -d udp.port==8472,vxlan -e ...
(occurrence=l: the last of a field, so an overlay's inner IP header)
(tshark's TCP analysis runs in frame order on the first pass, and the
tcp.analysis.* fields printed by -T fields are its results; a second pass,
-2, gives the same flags on these captures: scripts/tshark-expected.sh
--check-two-pass compares them.)

Orientation: for each tcp.stream, the endpoint (address, port) that sent the
first SYN without ACK is the client, the other the server; if the stream has
no such SYN, the endpoint with the lower port is the server (equal ports: the
lower address). The sender of a segment is client or server accordingly.

Output: one line per key, `name{labels} value`, sorted (plain string sort),
integers only, every key present even when 0, for both senders:

  packets{sender}            TCP segments (frames with tcp, excluding TCP
                             inside ICMP/ICMPv6 errors)
  payload_bytes{sender}      sum of tcp.len
  ip_bytes{sender}           IPv4: ip.len; IPv6: ipv6.plen + 40
  resets{sender}             segments with tcp.flags.reset == 1
  dont_fragment{sender}      IPv4 packets with ip.flags.df == 1
  syn_wscale{sender,shift}   per segment with SYN set (SYN from the client,
                             SYN/ACK from the server, retransmitted SYNs
                             included): the window-scale shift in its options,
                             or shift="none" when it has no window-scale
                             option; only shifts that occur are listed, but
                             shift="none" always is, for both senders
  connections_opened         SYN/ACK segments that tshark does not flag
                             tcp.analysis.retransmission
  connections_opened_reused_isn
                             those of them that tshark flags
                             tcp.analysis.reused_ports: a SYN/ACK with an
                             ISN other than the one its sender used before
                             in the same stream (tcp-exporter counts one
                             handshake per connection: docs/analysis.md)
  analysis_retransmission{sender}
                             tcp.analysis.retransmission set, and neither
                             fast_retransmission nor spurious_retransmission
  analysis_fast_retransmission{sender}
                             tcp.analysis.fast_retransmission set, and not
                             spurious_retransmission
  analysis_spurious_retransmission{sender}
                             tcp.analysis.spurious_retransmission set
     (tshark sets tcp.analysis.retransmission as well on every fast and every
     spurious retransmission; the three keys above are disjoint: each
     retransmitted segment is counted once, by its most specific kind,
     spurious > fast > plain)
  analysis_out_of_order{sender}            tcp.analysis.out_of_order
  analysis_duplicate_ack{sender}           tcp.analysis.duplicate_ack
  analysis_lost_segment{sender}            tcp.analysis.lost_segment
  analysis_zero_window{sender}             tcp.analysis.zero_window
  analysis_zero_window_probe{sender}       tcp.analysis.zero_window_probe
  analysis_window_full{sender}             tcp.analysis.window_full
  analysis_keep_alive{sender}              tcp.analysis.keep_alive

Labels are written in this order and form: {sender="client",shift="7"}.
"""

import ipaddress
import subprocess
import sys
from collections import Counter

FIELDS = [
    "frame.number",
    "tcp.stream",
    "ip.src",
    "ip.dst",
    "ipv6.src",
    "ipv6.dst",
    "tcp.srcport",
    "tcp.dstport",
    "tcp.flags.syn",
    "tcp.flags.ack",
    "tcp.flags.reset",
    "tcp.len",
    "ip.len",
    "ipv6.plen",
    "ip.flags.df",
    "tcp.options.wscale.shift",
    "tcp.analysis.retransmission",
    "tcp.analysis.fast_retransmission",
    "tcp.analysis.spurious_retransmission",
    "tcp.analysis.out_of_order",
    "tcp.analysis.duplicate_ack",
    "tcp.analysis.lost_segment",
    "tcp.analysis.zero_window",
    "tcp.analysis.zero_window_probe",
    "tcp.analysis.window_full",
    "tcp.analysis.keep_alive",
    "tcp.analysis.reused_ports",
]

# key name -> tshark flag field, for the flags that are counted as they are
PLAIN_FLAGS = {
    "analysis_out_of_order": "tcp.analysis.out_of_order",
    "analysis_duplicate_ack": "tcp.analysis.duplicate_ack",
    "analysis_lost_segment": "tcp.analysis.lost_segment",
    "analysis_zero_window": "tcp.analysis.zero_window",
    "analysis_zero_window_probe": "tcp.analysis.zero_window_probe",
    "analysis_window_full": "tcp.analysis.window_full",
    "analysis_keep_alive": "tcp.analysis.keep_alive",
}
SENDER_KEYS = [
    "packets",
    "payload_bytes",
    "ip_bytes",
    "resets",
    "dont_fragment",
    "analysis_retransmission",
    "analysis_fast_retransmission",
    "analysis_spurious_retransmission",
] + list(PLAIN_FLAGS)
SENDERS = ("client", "server")


def tshark_cmd(path, two_pass=False):
    cmd = ["tshark", "-n", "-r", path,
           "-o", "tcp.relative_sequence_numbers:FALSE",
           "-o", "tcp.analyze_sequence_numbers:TRUE"]
    if two_pass:
        cmd.append("-2")
    cmd += ["-Y", "tcp && !icmp && !icmpv6",
            "-T", "fields", "-E", "separator=/t", "-E", "occurrence=l",
            # Flannel's VXLAN port (IANA's 4789 and Geneve's 6081 are known).
            "-d", "udp.port==8472,vxlan"]
    for f in FIELDS:
        cmd += ["-e", f]
    return cmd


def tshark_rows(path, two_pass=False):
    proc = subprocess.run(tshark_cmd(path, two_pass), capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{path}: tshark failed ({proc.returncode}):\n{proc.stderr}")
    out = proc.stdout
    rows = []
    for line in out.splitlines():
        vals = line.split("\t")
        if len(vals) != len(FIELDS):
            raise SystemExit(f"{path}: unexpected tshark line: {line!r}")
        rows.append(dict(zip(FIELDS, vals)))
    return rows


def is_set(v):
    """FT_NONE flags print as "1" when present, "" when absent; booleans 1/0."""
    return v not in ("", "0", "False")


def endpoints(r):
    if r["ip.src"]:
        src, dst = r["ip.src"], r["ip.dst"]
    else:
        src, dst = r["ipv6.src"], r["ipv6.dst"]
    return (src, int(r["tcp.srcport"])), (dst, int(r["tcp.dstport"]))


def server_without_syn(a, b):
    """No SYN seen: the lower port is the server; equal ports: lower address."""
    if a[1] != b[1]:
        return a if a[1] < b[1] else b
    return a if ipaddress.ip_address(a[0]) < ipaddress.ip_address(b[0]) else b


def compute(rows, per_connection=False):
    """The counts; with per_connection, each connection's own, its keys
    labelled connection="CLIENT:PORT>SERVER:PORT" (an IPv6 address in
    brackets) before sender."""
    # Orientation per stream: the sender of the first SYN without ACK.
    client_of = {}
    pair_of = {}
    for r in rows:
        st = r["tcp.stream"]
        src, dst = endpoints(r)
        pair_of.setdefault(st, (src, dst))
        if st not in client_of and is_set(r["tcp.flags.syn"]) and not is_set(r["tcp.flags.ack"]):
            client_of[st] = src
    for st, (a, b) in pair_of.items():
        if st not in client_of:
            server = server_without_syn(a, b)
            client_of[st] = b if server == a else a

    def name(stream):
        if not per_connection:
            return ""
        a, b = pair_of[stream]
        client = client_of[stream]
        server = b if client == a else a
        text = [f"[{h}]:{p}" if ":" in h else f"{h}:{p}" for h, p in (client, server)]
        return f'connection="{text[0]}>{text[1]}",'

    c = Counter()
    for conn in sorted({name(st) for st in pair_of} or {""}):
        for s in SENDERS:
            for k in SENDER_KEYS:
                c[f'{k}{{{conn}sender="{s}"}}'] = 0
            c[f'syn_wscale{{{conn}sender="{s}",shift="none"}}'] = 0
    c["connections_opened"] = 0
    c["connections_opened_reused_isn"] = 0

    for r in rows:
        src, _dst = endpoints(r)
        sender = "client" if src == client_of[r["tcp.stream"]] else "server"
        conn = name(r["tcp.stream"])
        lab = f'{{{conn}sender="{sender}"}}'
        c["packets" + lab] += 1
        c["payload_bytes" + lab] += int(r["tcp.len"] or 0)
        if r["ip.src"]:
            c["ip_bytes" + lab] += int(r["ip.len"])
            if is_set(r["ip.flags.df"]):
                c["dont_fragment" + lab] += 1
        else:
            c["ip_bytes" + lab] += int(r["ipv6.plen"]) + 40
        if is_set(r["tcp.flags.reset"]):
            c["resets" + lab] += 1
        syn = is_set(r["tcp.flags.syn"])
        if syn:
            shift = r["tcp.options.wscale.shift"] or "none"
            c[f'syn_wscale{{{conn}sender="{sender}",shift="{shift}"}}'] += 1
        retrans = is_set(r["tcp.analysis.retransmission"])
        fast = is_set(r["tcp.analysis.fast_retransmission"])
        spurious = is_set(r["tcp.analysis.spurious_retransmission"])
        if syn and is_set(r["tcp.flags.ack"]) and not retrans:
            c["connections_opened"] += 1
            if is_set(r["tcp.analysis.reused_ports"]):
                c["connections_opened_reused_isn"] += 1
        if spurious:
            c["analysis_spurious_retransmission" + lab] += 1
        elif fast:
            c["analysis_fast_retransmission" + lab] += 1
        elif retrans:
            c["analysis_retransmission" + lab] += 1
        for key, field in PLAIN_FLAGS.items():
            if is_set(r[field]):
                c[key + lab] += 1
    return c


def render(c):
    return "".join(f"{k} {v}\n" for k, v in sorted(c.items()))


def main(argv):
    to_stdout = False
    two_pass = False
    per_connection = False
    files = []
    for a in argv:
        if a == "--stdout":
            to_stdout = True
        elif a == "--per-connection":
            per_connection = to_stdout = True
        elif a == "--two-pass":
            two_pass = True  # for comparison only: the .expected files use one pass
        else:
            files.append(a)
    if not files:
        print(__doc__, file=sys.stderr)
        return 2
    for path in files:
        text = render(compute(tshark_rows(path, two_pass), per_connection))
        if to_stdout:
            sys.stdout.write(text)
        else:
            with open(path + ".expected", "w") as f:
                f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
