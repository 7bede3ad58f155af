#!/usr/bin/env python3
"""Write a pcap of N SYNs, each from a distinct source (address and port) to
one server port, 1 µs apart: a million of them is a million flows for the
memory benchmark (and a SYN flood for robustness tests). Stdlib only.

Usage: syn-flood.py N OUT.pcap
"""
import struct
import sys


def main():
    n, out = int(sys.argv[1]), sys.argv[2]
    eth = b'\x02' * 6 + b'\x04' * 6 + b'\x08\x00'
    dst = bytes([192, 0, 2, 1])
    with open(out, 'wb') as f:
        f.write(struct.pack('<IHHiIII', 0xa1b23c4d, 2, 4, 0, 0, 65535, 1))
        rec = struct.Struct('<IIII')
        ip = struct.Struct('!BBHHHBBH4s4s')
        tcp = struct.Struct('!HHIIBBHHH')
        t = 1_700_000_000 * 10**9
        for i in range(n):
            src = (0x0a000000 + i // 16).to_bytes(4, 'big')  # 10.0.0.0/8
            sport = 1024 + (i % 16) * 4000 + (i * 7919) % 4000
            hdr = ip.pack(0x45, 0, 40, i & 0xffff, 0x4000, 64, 6, 0, src, dst)
            seg = tcp.pack(sport, 443, (i * 2654435761) & 0xffffffff, 0, 5 << 4, 0x02, 64240, 0, 0)
            frame = eth + hdr + seg
            ts = t + i * 1000
            f.write(rec.pack(ts // 10**9, ts % 10**9, len(frame), len(frame)) + frame)


if __name__ == '__main__':
    main()
