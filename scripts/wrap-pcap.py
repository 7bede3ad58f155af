#!/usr/bin/env python3
"""Wrap every frame of an Ethernet capture in an overlay encapsulation
(stdlib only), as a node between two overlay endpoints would capture it.

Usage: wrap-pcap.py KIND IN.pcap OUT.pcap

KIND:
  vxlan          outer Ethernet/IPv4/UDP to 4789/VXLAN (VNI 42)/the frame
  vxlan-flannel  the same to UDP 8472 (Flannel's and Linux's old port)
  geneve         outer Ethernet/IPv4/UDP to 6081/Geneve with 8 bytes of
                 options (one TLV)/the frame
  ipip           outer Ethernet/IPv4/the IP packet (protocol 4, or 41 for
                 IPv6 inside)
  ip6ip          outer Ethernet/IPv6/the IP packet (next header 4 or 41)
  gre            outer Ethernet/IPv4/GRE with key and sequence number/the IP
                 packet
  gre-eth        outer Ethernet/IPv4/GRE with checksum, protocol 0x6558/the
                 frame
  vxlan-in-gre   two levels: outer IPv4/GRE/IPv4/UDP/VXLAN/the frame

Frames that are not IP (ARP, ...) are wrapped too where the kind carries
Ethernet, and left out where it carries IP. Lengths: the outer headers
state the lengths of what the original frame was on the wire, so a frame
the snap length cut stays cut by the same bytes, inside.
"""

import struct
import sys

PCAP_MAGIC = 0xA1B2C3D4
DLT_EN10MB = 1
OUTER_SRC = bytes([192, 168, 100, 1])
OUTER_DST = bytes([192, 168, 100, 2])
OUTER6_SRC = bytes.fromhex("fd000000000000000000000000000001")
OUTER6_DST = bytes.fromhex("fd000000000000000000000000000002")
MACS = bytes.fromhex("020000000002" "020000000001")


def checksum(data):
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def ipv4(protocol, payload_wire_len):
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + payload_wire_len, 0x1234, 0,
                         64, protocol, 0, OUTER_SRC, OUTER_DST)
    return header[:10] + struct.pack("!H", checksum(header)) + header[12:]


def ipv6(next_header, payload_wire_len):
    return struct.pack("!IHBB16s16s", 6 << 28, payload_wire_len, next_header, 64,
                       OUTER6_SRC, OUTER6_DST)


def ethernet(ethertype):
    return MACS + struct.pack("!H", ethertype)


def udp(dst_port, payload_wire_len):
    return struct.pack("!HHHH", 49152 + 7, dst_port, 8 + payload_wire_len, 0)


def vxlan():
    return struct.pack("!BBHI", 0x08, 0, 0, 42 << 8)


def geneve():
    # Version 0, 2 words of options; protocol Ethernet; VNI 7; one option:
    # class 0x0102, type 0x80, 1 word of data.
    return struct.pack("!BBHI", 2, 0, 0x6558, 7 << 8) + struct.pack("!HBB", 0x0102, 0x80, 1) + b"\xde\xad\xbe\xef"


def gre(protocol, key=False, seq=False, csum=False):
    flags = (0x8000 if csum else 0) | (0x2000 if key else 0) | (0x1000 if seq else 0)
    out = struct.pack("!HH", flags, protocol)
    if csum:
        out += struct.pack("!HH", 0, 0)
    if key:
        out += struct.pack("!I", 0xC0FFEE)
    if seq:
        out += struct.pack("!I", 1)
    return out


def ip_of(frame):
    """(offset of the IP header, IP version) of an Ethernet frame, or None."""
    at = 12
    for _ in range(5):
        if len(frame) < at + 2:
            return None
        ethertype = struct.unpack("!H", frame[at:at + 2])[0]
        if ethertype in (0x8100, 0x88A8, 0x9100):
            at += 4
            continue
        if ethertype == 0x0800:
            return at + 2, 4
        if ethertype == 0x86DD:
            return at + 2, 6
        return None
    return None


def wrap(kind, frame, wire_len):
    """(headers to put before the inner part, the inner part, its wire length), or None."""
    if kind in ("vxlan", "vxlan-flannel", "geneve", "gre-eth", "vxlan-in-gre"):
        inner, inner_len = frame, wire_len
    else:
        found = ip_of(frame)
        if found is None:
            return None
        at, version = found
        inner, inner_len = frame[at:], wire_len - at
        proto_in_ip = 4 if version == 4 else 41
        ethertype_in = 0x0800 if version == 4 else 0x86DD
    if kind in ("vxlan", "vxlan-flannel"):
        port = 4789 if kind == "vxlan" else 8472
        rest = udp(port, 8 + inner_len) + vxlan()
        return ethernet(0x0800) + ipv4(17, len(rest) + inner_len) + rest, inner, inner_len
    if kind == "geneve":
        g = geneve()
        rest = udp(6081, len(g) + inner_len) + g
        return ethernet(0x0800) + ipv4(17, len(rest) + inner_len) + rest, inner, inner_len
    if kind == "ipip":
        return ethernet(0x0800) + ipv4(proto_in_ip, inner_len), inner, inner_len
    if kind == "ip6ip":
        return ethernet(0x86DD) + ipv6(proto_in_ip, inner_len), inner, inner_len
    if kind == "gre":
        g = gre(ethertype_in, key=True, seq=True)
        return ethernet(0x0800) + ipv4(47, len(g) + inner_len) + g, inner, inner_len
    if kind == "gre-eth":
        g = gre(0x6558, csum=True)
        return ethernet(0x0800) + ipv4(47, len(g) + inner_len) + g, inner, inner_len
    if kind == "vxlan-in-gre":
        rest = udp(4789, 8 + inner_len) + vxlan()
        middle = ipv4(17, len(rest) + inner_len) + rest
        g = gre(0x0800, key=True)
        return (ethernet(0x0800) + ipv4(47, len(g) + len(middle) + inner_len) + g + middle,
                inner, inner_len)
    raise SystemExit("wrap-pcap.py: unknown kind %r (see --help)" % kind)


def main(argv):
    if len(argv) != 4 or argv[1] in ("-h", "--help"):
        print(__doc__, file=sys.stderr)
        return 2
    kind, src, dst = argv[1:]
    with open(src, "rb") as f:
        data = f.read()
    magic = struct.unpack("<I", data[:4])[0]
    if magic == PCAP_MAGIC:
        endian = "<"
    elif struct.unpack(">I", data[:4])[0] == PCAP_MAGIC:
        endian = ">"
    else:
        raise SystemExit("wrap-pcap.py: %s: not a classic pcap with microseconds" % src)
    _, _, _, _, _, snaplen, link = struct.unpack(endian + "IHHiIII", data[:24])
    if link != DLT_EN10MB:
        raise SystemExit("wrap-pcap.py: %s: link type %d, not Ethernet" % (src, link))
    out = [struct.pack("<IHHiIII", PCAP_MAGIC, 2, 4, 0, 0, 262144, DLT_EN10MB)]
    at = 24
    while at + 16 <= len(data):
        sec, usec, caplen, wire_len = struct.unpack(endian + "IIII", data[at:at + 16])
        frame = data[at + 16:at + 16 + caplen]
        at += 16 + caplen
        wrapped = wrap(kind, frame, wire_len)
        if wrapped is None:
            continue
        headers, inner, inner_len = wrapped
        body = headers + inner
        out.append(struct.pack("<IIII", sec, usec, len(body), len(headers) + inner_len) + body)
    with open(dst, "wb") as f:
        f.write(b"".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
