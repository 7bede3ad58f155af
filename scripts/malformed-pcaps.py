#!/usr/bin/env python3
"""Write a corpus of deliberately malformed classic pcap files (stdlib only).

Usage: malformed-pcaps.py [SOURCE.pcap] [OUTDIR]
       (defaults: testdata/pcaps/short_conns.pcap, testdata/pcaps/malformed)

What it makes: one capture per kind of damage (a file cut inside a record, a
record whose lengths lie or cannot be framed, IPv4 header lengths and TCP
data offsets out of range, IPv6 extension chains that go on and on, frames
of zero bytes, IP length fields that disagree with the headers, a global
header whose snap length or link type lies, random garbage, and three
global headers that are broken), and beside each `NAME.pcap` a manifest
`NAME.pcap.json` with what tcp-exporter must count reading it with
`-r NAME.pcap --print`:

  {"description": ..., "frames_read": N, "tcp_segments": M,
   "decode_errors": {"reason": count, ...}, "error": null}

frames_read is tcp_exporter_capture_packets_total (records handed on to
decode, whether or not they decode; records refused at the record level are
not frames), tcp_segments the frames that decode to TCP segments (the sum of
tcp_packets_total), decode_errors every non-zero reason of
tcp_exporter_decode_errors_total (frame-level and record-level). For a file
whose global header is broken the exporter must refuse it: "error" is a
substring of the message and the other fields are null.

Why: so that the capture and decode layers are tested on input no capture
tool writes, with the valid frames around the damaged ones real traffic
(every file starts from the frames of SOURCE, 429 frames of 30 TCP
connections), so the counts of the undamaged part are known too.

How the expected counts are made: every frame written is classified by
`classify` below, a line-by-line model of src/decode (link.rs, ip.rs, tcp.rs,
mod.rs and the etherparse checks they call). Each hand-made bad frame states
the reason it deserves and the script checks that against the model. Like
the decoder, the model judges a header against the packet's own length field
before the captured bytes: an IPv4 header longer than its total length, an
IPv6 extension header running past the payload length, or a TCP header
longer than what the IP length leaves for it is bad_ip_length /
bad_tcp_header_length (the packet's fields disagree, as tshark's "Bogus ...
length"), even where the capture also cut it; truncated_ip / truncated_tcp
is left for a header that fits its length field but was not all captured
(for TCP: its fixed 20 bytes; options cut by the capture leave a segment).

Deterministic: no clock, no randomness but a fixed-seed xorshift64.
"""

import json
import os
import struct
import sys
from collections import Counter

MAGIC_USEC_LE = b"\xd4\xc3\xb2\xa1"
LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101
MAX_RECORD = 262144  # libpcap's and the exporter's largest record

ETH_IPV4, ETH_IPV6 = 0x0800, 0x86DD
VLAN_TPIDS = (0x8100, 0x88A8, 0x9100)
MAX_VLAN_TAGS = 4  # src/decode/link.rs
MAX_IPV6_EXTENSIONS = 8  # src/decode/ip.rs
HBH, ROUTING, FRAGMENT, AH, DSTOPTS = 0, 43, 44, 51, 60

V6_CLIENT = bytes.fromhex("fd000250000000000000000000000001")  # fd00:250::1
V6_SERVER = bytes.fromhex("fd000250000000000000000000000002")  # fd00:250::2
V4_CLIENT = bytes([10, 250, 0, 1])


# ---------------------------------------------------------------- pcap I/O

def read_source(path):
    """Records of a little-endian microsecond classic pcap: (sec, usec, data, orig_len)."""
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 24 or data[:4] != MAGIC_USEC_LE:
        sys.exit(f"{path}: not a little-endian microsecond classic pcap")
    linktype = struct.unpack("<I", data[20:24])[0]
    if linktype != LINKTYPE_ETHERNET:
        sys.exit(f"{path}: link type {linktype}, need Ethernet")
    out, off = [], 24
    while off + 16 <= len(data):
        sec, usec, incl, orig = struct.unpack("<IIII", data[off:off + 16])
        pkt = data[off + 16:off + 16 + incl]
        if len(pkt) < incl:
            sys.exit(f"{path}: truncated record at byte {off}")
        out.append((sec, usec, pkt, orig))
        off += 16 + incl
    return out


def global_header(snaplen=MAX_RECORD, linktype=LINKTYPE_ETHERNET, vmaj=2, vmin=4):
    return MAGIC_USEC_LE + struct.pack("<HHiIII", vmaj, vmin, 0, 0, snaplen, linktype)


def record_header(sec, usec, incl, orig):
    return struct.pack("<IIII", sec, usec, incl, orig)


# ------------------------------------------------------- model of src/decode

def be16(b, at):
    return (b[at] << 8) | b[at + 1]


def classify(link, frame, wire_len):
    """What src/decode makes of a frame: None for a TCP segment, else the
    reason label. link is "eth" or "raw"."""
    n = len(frame)
    if link == "eth":
        if n < 14:
            return "truncated_link"
        off, kind, tags = 12, be16(frame, 12), 0
        while kind in VLAN_TPIDS:
            tags += 1
            if tags > MAX_VLAN_TAGS:
                return "not_ip"
            off += 4
            if n < off + 2:
                return "truncated_link"
            kind = be16(frame, off)
        off += 2
        if kind == ETH_IPV4:
            announced = (4,)
        elif kind == ETH_IPV6:
            announced = (6,)
        else:
            return "not_ip"
    else:
        off, announced = 0, (4, 6)
    l3 = frame[off:]
    if not l3:
        return "truncated_ip"
    version = l3[0] >> 4
    if version not in announced:
        return "bad_ip_version"
    wire = max(max(wire_len, n) - off, 0)
    if version == 4:
        return _ipv4(l3, wire)
    return _ipv6(l3, wire)


def _ipv4(l3, wire):
    # A total length below the header's (IHL) length is the packet's own
    # error, whether or not the header was all captured.
    if len(l3) >= 4:
        hlen, stated = (l3[0] & 0x0F) * 4, be16(l3, 2)
        if hlen >= 20 and 0 < stated < hlen:
            return "bad_ip_length"
    if len(l3) < 20:
        return "truncated_ip"
    ihl = l3[0] & 0x0F
    if ihl < 5:
        return "bad_ip_header_length"
    hlen = ihl * 4
    if len(l3) < hlen:
        return "truncated_ip"
    stated = be16(l3, 2)
    total = wire if stated == 0 else min(stated, wire)
    if total < hlen:
        return "bad_ip_length"
    if l3[6] & 0x20 or ((l3[6] & 0x1F) << 8 | l3[7]):
        return "ip_fragment"
    if l3[9] != 6:
        return "not_tcp"
    return _tcp(l3[hlen:], total - hlen, (stated or wire) - hlen, wire - hlen)


def _ipv6(l3, wire):
    if len(l3) < 40:
        return "truncated_ip"
    stated = be16(l3, 4)
    end = 40 + stated if stated else None  # where the payload length ends it
    nxt, at = l3[6], 40
    for _ in range(MAX_IPV6_EXTENSIONS + 1):
        if nxt == 6:
            break
        if nxt in (HBH, ROUTING, DSTOPTS, 135, 139, 140):
            if len(l3) < at + 2:
                return "truncated_ip"
            length = (l3[at + 1] + 1) * 8
        elif nxt == FRAGMENT:
            if len(l3) < at + 4:
                return "truncated_ip"
            if be16(l3, at + 2) & 0xFFF9:
                return "ip_fragment"
            length = 8
        elif nxt == AH:
            if len(l3) < at + 2:
                return "truncated_ip"
            length = (l3[at + 1] + 2) * 4
        else:
            return "not_tcp"
        # Past the payload length: the packet's own error, whether or not
        # the header was all captured.
        if end is not None and end < at + length:
            return "bad_ip_length"
        if len(l3) < at + length:
            return "truncated_ip"
        nxt = l3[at]
        at += length
    else:
        return "ipv6_extension_chain"
    wire = max(wire, 40)
    total = wire if stated == 0 else min(40 + stated, wire)
    if total < at:
        return "bad_ip_length"
    return _tcp(l3[at:], total - at, (end if stated else total) - at, wire - at)


def _tcp(t, payload, stated_payload, on_wire):
    """t: the captured bytes from the TCP header on; payload: what the IP
    lengths, clamped to the wire length, leave for the segment;
    stated_payload: what the IP length field leaves (the wire length's
    share when the field is 0); on_wire: the frame's bytes from the TCP
    header on, on the wire."""
    # The header's length: its data offset when that byte was captured and
    # is valid, else the 20-byte minimum. Longer than what the length field
    # leaves is the packet's own error, whether or not it was all captured.
    needed = (t[12] >> 4) * 4 if len(t) >= 13 and t[12] >> 4 >= 5 else 20
    if needed > stated_payload:
        return "bad_tcp_header_length"
    if len(t) < 20:
        return "truncated_tcp"
    doff = (t[12] >> 4) * 4
    if doff < 20:
        return "bad_tcp_header_length"
    # Options cut by the capture (the wire had them) leave a segment; a
    # header running past the frame itself is truncated.
    if len(t) < doff and doff > on_wire:
        return "truncated_tcp"
    if doff > payload:
        return "bad_tcp_header_length"
    return None


# ------------------------------------------------------------ the captures

SEGMENT = "segment"


class Capture:
    """A pcap being written, with the counts the exporter must find in it."""

    def __init__(self, name, description, snaplen=MAX_RECORD, linktype=LINKTYPE_ETHERNET):
        self.name = name
        self.description = description
        self.link = "raw" if linktype == LINKTYPE_RAW else "eth"
        self.out = [global_header(snaplen, linktype)]
        self.records = 0
        self.frames_read = 0
        self.segments = 0
        self.errors = Counter()
        self.stopped = False

    def _count(self, reason):
        if self.stopped:
            return
        if reason is None:
            self.segments += 1
        else:
            self.errors[reason] += 1

    def frame(self, rec, data=None, orig_len=None, expect="model", what=""):
        """A record of a frame the exporter hands on to decode. `rec` gives
        the timestamp (and the data, unless `data` is given); orig_len
        defaults to the data length. expect: "model" for an undamaged real
        frame, SEGMENT or a reason for a made one (checked against the model)."""
        sec, usec = rec[0], rec[1]
        if data is None:
            data = rec[2]
            orig_len = rec[3] if orig_len is None else orig_len
        orig_len = len(data) if orig_len is None else orig_len
        assert len(data) <= orig_len and len(data) <= MAX_RECORD, (self.name, what)
        self.out.append(record_header(sec, usec, len(data), orig_len) + data)
        self.records += 1
        got = classify(self.link, data, orig_len)
        if expect != "model":
            want = None if expect == SEGMENT else expect
            assert want == got, (self.name, self.records, what, want, got)
        if not self.stopped:
            self.frames_read += 1
        self._count(got)
        return got

    def bad_record(self, rec, data, orig_len, what=""):
        """A record whose captured length exceeds its original length: framed
        but skipped (bad_record_length); reading goes on."""
        assert orig_len < len(data) <= MAX_RECORD
        self.out.append(record_header(rec[0], rec[1], len(data), orig_len) + data)
        self.records += 1
        if not self.stopped:
            self.errors["bad_record_length"] += 1

    def raw(self, data, stop_reason=None):
        """Bytes as they are. stop_reason: the record-level reason at which
        reading stops here (counted once); nothing after it is read."""
        self.out.append(data)
        if stop_reason is not None:
            assert not self.stopped
            self.errors[stop_reason] += 1
            self.stopped = True

    def write(self, outdir):
        path = os.path.join(outdir, self.name)
        with open(path, "wb") as f:
            f.write(b"".join(self.out))
        manifest = {
            "description": self.description,
            "frames_read": self.frames_read,
            "tcp_segments": self.segments,
            "decode_errors": dict(sorted(self.errors.items())),
            "error": None,
        }
        write_json(path + ".json", manifest)
        print(f"{self.name}: {self.records} records, frames_read {self.frames_read}, "
              f"tcp_segments {self.segments}, {dict(sorted(self.errors.items()))}")


def write_json(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, indent=2)
        f.write("\n")


def broken_header(outdir, name, data, description, error):
    path = os.path.join(outdir, name)
    with open(path, "wb") as f:
        f.write(data)
    write_json(path + ".json", {
        "description": description, "frames_read": None, "tcp_segments": None,
        "decode_errors": None, "error": error,
    })
    print(f"{name}: {len(data)} bytes, refused ({error!r})")


# ------------------------------------------------------------ frame surgery

def checksum(b):
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack(f"!{len(b) // 2}H", b))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def put16(b, at, v):
    b[at:at + 2] = struct.pack("!H", v)


def ip4_fix_checksum(frame):
    """Recomputes the IPv4 header checksum of an Ethernet frame, where the
    header (by its IHL) is there to sum."""
    hlen = (frame[14] & 0x0F) * 4
    if hlen >= 20 and len(frame) >= 14 + hlen:
        put16(frame, 24, 0)
        put16(frame, 24, checksum(bytes(frame[14:14 + hlen])))


def ip4_edit(rec, ihl=None, total_len=None, data_offset=None):
    """A copy of a real Ethernet/IPv4/TCP frame with header fields changed."""
    f = bytearray(rec[2])
    assert be16(f, 12) == ETH_IPV4 and f[14] == 0x45 and f[23] == 6
    if data_offset is not None:
        f[14 + 20 + 12] = (data_offset << 4) | (f[14 + 20 + 12] & 0x0F)
    if total_len is not None:
        put16(f, 16, total_len)
    if ihl is not None:
        f[14] = 0x40 | ihl
    ip4_fix_checksum(f)
    return bytes(f)


def ext_header(next_header, length):
    """An IPv6 hop-by-hop or destination options header of `length` bytes
    (a multiple of 8), its options PadN padding."""
    assert length % 8 == 0 and 8 <= length <= 2048
    opts, left = b"", length - 2
    while left:
        if left == 1:
            opts += b"\x00"  # Pad1
            left = 0
            continue
        n = min(left, 257)
        if left - n == 1:
            n -= 1
        opts += bytes([1, n - 2]) + bytes(n - 2)  # PadN
        left -= n
    return bytes([next_header, length // 8 - 1]) + opts


def ext_chain(kinds, last_next=6):
    """8-byte extension headers of the given kinds, in order; the last one
    points at last_next. Returns (first next-header value, bytes)."""
    out = b""
    for i, _ in enumerate(kinds):
        nxt = kinds[i + 1] if i + 1 < len(kinds) else last_next
        out += ext_header(nxt, 8)
    return kinds[0], out


def to_ipv6(rec, exts=None, payload_len=None):
    """The IPv4 TCP segment of a real Ethernet frame carried over IPv6
    instead (fd00:250::1 for 10.250.0.1, fd00:250::2 for 10.250.0.2): same
    MAC addresses, same TCP header and payload, a correct TCP checksum.
    exts: (first next header, extension header bytes) between the fixed
    header and TCP. payload_len: the IPv6 payload length to state (default:
    what follows the fixed header)."""
    f = rec[2]
    assert be16(f, 12) == ETH_IPV4 and f[23] == 6
    hlen = (f[14] & 0x0F) * 4
    total = be16(f, 16)
    tcp = bytearray(f[14 + hlen:14 + total])
    client = f[26:30] == V4_CLIENT
    src, dst = (V6_CLIENT, V6_SERVER) if client else (V6_SERVER, V6_CLIENT)
    put16(tcp, 16, 0)
    pseudo = src + dst + struct.pack("!IxxxB", len(tcp), 6)
    put16(tcp, 16, checksum(pseudo + bytes(tcp)))
    first, ext = exts if exts else (6, b"")
    plen = len(ext) + len(tcp) if payload_len is None else payload_len
    ip6 = struct.pack("!IHBB", 6 << 28, plen, first, 64) + src + dst
    return f[:12] + struct.pack("!H", ETH_IPV6) + ip6 + ext + bytes(tcp)


class XorShift:
    """xorshift64, so the garbage is the same with any Python."""

    def __init__(self, seed):
        self.s = seed

    def next(self):
        s = self.s
        s ^= (s << 13) & 0xFFFFFFFFFFFFFFFF
        s ^= s >> 7
        s ^= (s << 17) & 0xFFFFFFFFFFFFFFFF
        self.s = s
        return s

    def below(self, n):
        return self.next() % n

    def bytes(self, n):
        return bytes(self.next() & 0xFF for _ in range(n))


# ------------------------------------------------------------ the scenarios
# Frame numbers below are SOURCE's (1-based, as tshark numbers them). In
# short_conns.pcap: 1-4 ICMPv6 (neighbour solicitation, MLD report with a
# hop-by-hop header), 5-6 ARP, then 30 connections of 14 frames each
# (7-20, 21-34, ...): SYN, SYN/ACK, ACK, 120-byte request (186-byte frame),
# ACK, 1514, 1514, 1170 (reply), ACKs, FINs; frames 287, 428, 429 MLD.

def s_truncated_record_data(src):
    c = Capture("truncated_record_data.pcap",
                "The first 50 frames of short_conns.pcap; the 50th record's header is whole "
                "(74 captured bytes) but the file ends after 30 of them: truncated_record, "
                "counted once, the 49 frames before it read normally.")
    for r in src[:49]:
        c.frame(r)
    last = src[49]
    c.raw(record_header(last[0], last[1], len(last[2]), last[3]) + last[2][:30],
          stop_reason="truncated_record")
    return c


def s_truncated_record_header(src):
    c = Capture("truncated_record_header.pcap",
                "The first 50 frames of short_conns.pcap whole, then the first 7 bytes of the "
                "51st record's 16-byte header: truncated_record, counted once.")
    for r in src[:50]:
        c.frame(r)
    nxt = src[50]
    c.raw(record_header(nxt[0], nxt[1], len(nxt[2]), nxt[3])[:7], stop_reason="truncated_record")
    return c


def s_bad_record_length(src):
    c = Capture("bad_record_length.pcap",
                "Frames 1-100 of short_conns.pcap, and 5 extra records (copies of real frames) "
                "whose captured length is larger than their original length: 1514 captured/1513 "
                "original, 66/0, 1514/60, 186/185 and one of exactly 262144 captured bytes "
                "(a real frame, zero-filled) with original length 65535. Framing is intact: "
                "each is skipped (bad_record_length) and reading goes on with the next record.")
    bad = {
        20: (src[11][2], 1513, "copy of frame 12 (1514 bytes), orig_len 1513"),
        40: (src[38][2], 0, "copy of frame 39 (66 bytes), orig_len 0"),
        60: (src[53][2], 60, "copy of frame 54 (1514 bytes), orig_len 60"),
        80: (src[65][2], 185, "copy of frame 66 (186 bytes), orig_len 185"),
        90: (src[81][2] + bytes(MAX_RECORD - len(src[81][2])), 65535,
             "copy of frame 82 zero-filled to 262144 bytes, orig_len 65535"),
    }
    for i, r in enumerate(src[:100], start=1):
        c.frame(r)
        if i in bad:
            data, orig, what = bad[i]
            c.bad_record(r, data, orig, what)
    return c


def s_huge_record_length(src):
    c = Capture("huge_record_length.pcap",
                "Frames 1-60 of short_conns.pcap, then a record header claiming 0x7fffffff "
                "captured (and original) bytes, then the records of frames 61-100 as they are. "
                "No frame is that large and the rest cannot be framed: bad_record_length, "
                "counted once, reading stops.")
    for r in src[:60]:
        c.frame(r)
    r = src[60]
    c.raw(record_header(r[0], r[1], 0x7FFFFFFF, 0x7FFFFFFF), stop_reason="bad_record_length")
    for r in src[60:100]:
        c.raw(record_header(r[0], r[1], len(r[2]), r[3]) + r[2])
    return c


def s_ihl_out_of_range(src):
    c = Capture("ihl_out_of_range.pcap",
                "Frames 1-120 of short_conns.pcap with 8 extra IPv4 frames (copies of real ones) "
                "whose IHL is out of range: IHL 0-4 on a 66-byte ACK (bad_ip_header_length x5); "
                "IHL 15 (a 60-byte header) on a whole 66-byte ACK whose total length says 52 "
                "(the header runs past both the total length and the frame: bad_ip_length); IHL 15 "
                "on a 186-byte frame whose total length is set to 40 (header within the frame, "
                "past the total length: bad_ip_length); IHL 15 on a 1514-byte frame captured to "
                "54 bytes (original 1514; the header is cut by the capture: truncated_ip). "
                "The decoder judges the header against the packet's own total length before "
                "the captured length (as tshark's \"Bogus IP length\").")
    for i, r in enumerate(src[:120], start=1):
        c.frame(r)
        if i == 30:
            ack = src[8]  # frame 9, ACK, 66 bytes
            for ihl in range(5):
                c.frame(r, ip4_edit(ack, ihl=ihl), expect="bad_ip_header_length",
                        what=f"frame 9 with IHL {ihl}")
        if i == 60:
            c.frame(r, ip4_edit(src[8], ihl=15), expect="bad_ip_length",
                    what="frame 9 (66-byte ACK, total length 52) with IHL 15")
        if i == 80:
            c.frame(r, ip4_edit(src[9], ihl=15, total_len=40), expect="bad_ip_length",
                    what="frame 10 (186 bytes) with IHL 15 and total length 40")
        if i == 100:
            big = src[11]  # frame 12, 1514 bytes
            c.frame(r, ip4_edit(big, ihl=15)[:54], orig_len=1514, expect="truncated_ip",
                    what="frame 12 with IHL 15, captured to 54 of 1514 bytes")
    return c


def s_tcp_data_offset(src):
    c = Capture("tcp_data_offset_out_of_range.pcap",
                "Frames 1-120 of short_conns.pcap with 8 extra IPv4/TCP frames (copies of real "
                "ones) whose TCP data offset is out of range: 0-4 on a 66-byte ACK "
                "(bad_tcp_header_length x5); 15 (a 60-byte header) on a whole 66-byte ACK whose "
                "IP payload is 32 bytes (bad_tcp_header_length); 15 on a 186-byte frame whose IP "
                "total length is set to 60 (40 bytes of IP payload, 152 captured: "
                "bad_tcp_header_length); 15 on a 1514-byte frame captured to 74 bytes (original "
                "1514; the options are cut by the capture, the fixed header is whole: a segment, "
                "counted with its options cut). The decoder judges "
                "the TCP header against what the packet's own IP length leaves for it before "
                "the captured length.")
    for i, r in enumerate(src[:120], start=1):
        c.frame(r)
        if i == 30:
            for doff in range(5):
                c.frame(r, ip4_edit(src[8], data_offset=doff), expect="bad_tcp_header_length",
                        what=f"frame 9 with data offset {doff}")
        if i == 60:
            c.frame(r, ip4_edit(src[8], data_offset=15), expect="bad_tcp_header_length",
                    what="frame 9 (66-byte ACK, 32 bytes of IP payload) with data offset 15")
        if i == 80:
            c.frame(r, ip4_edit(src[9], data_offset=15, total_len=60),
                    expect="bad_tcp_header_length",
                    what="frame 10 (186 bytes) with data offset 15 and IP total length 60")
        if i == 100:
            c.frame(r, ip4_edit(src[11], data_offset=15)[:74], orig_len=1514,
                    what="frame 12 with data offset 15, captured to 74 of 1514 bytes "
                         "(a segment whose options the capture cut)")
    return c


# The connection carried over IPv6 in the IPv6 files: short_conns' third
# (frames 35-48, client port 41982); its request (frame 38) carries 8
# extension headers, the most src/decode follows.
V6_CONN = range(35, 49)
V6_REQUEST = 38


def eight_extensions():
    return ext_chain([HBH] + [DSTOPTS, HBH] * 3 + [DSTOPTS])


def v6_connection(c, src, i, r):
    """Writes frame i of SOURCE, as IPv6 if it is one of V6_CONN's."""
    if i not in V6_CONN:
        c.frame(r)
    elif i == V6_REQUEST:
        c.frame(r, to_ipv6(r, exts=eight_extensions()), expect=SEGMENT,
                what="the request over IPv6 with 8 extension headers")
    else:
        c.frame(r, to_ipv6(r), expect=SEGMENT, what=f"frame {i} over IPv6")


def s_ipv6_extension_loop(src):
    c = Capture("ipv6_extension_loop.pcap",
                "Frames 1-100 of short_conns.pcap, the third connection (frames 35-48) carried "
                "over IPv6 (fd00:250::1 -> fd00:250::2, correct checksums; its request with 8 "
                "extension headers, the most src/decode follows: a segment), and 7 extra IPv6 "
                "frames: 9 options headers then TCP (ipv6_extension_chain, one over the limit); "
                "100 hop-by-hop/destination-options headers pointing at each other, then TCP "
                "(ipv6_extension_chain); such headers to the end of the frame, the last pointing "
                "at one more past it (ipv6_extension_chain); a destination-options header "
                "claiming 2048 bytes in a whole 94-byte frame whose payload length says 40 "
                "(bad_ip_length); a 24-byte one where the payload length says 16, frame long "
                "enough (bad_ip_length); a 2048-byte one with the payload length saying 2080, "
                "captured to 100 of 2134 bytes (truncated_ip); an 8-byte one in a whole frame "
                "that ends 4 bytes into it with the payload length saying 40 (truncated_ip). "
                "The decoder judges an extension header against the packet's own payload "
                "length before the captured length.")
    for i, r in enumerate(src[:100], start=1):
        v6_connection(c, src, i, r)
        if i == 48:
            ack = src[38]  # frame 39, the server's ACK of the request
            nine = ext_chain([HBH] + [DSTOPTS, HBH] * 4)
            c.frame(r, to_ipv6(ack, exts=nine), expect="ipv6_extension_chain",
                    what="frame 39 over IPv6 with 9 extension headers")
            hundred = ext_chain([HBH, DSTOPTS] * 50)
            c.frame(r, to_ipv6(ack, exts=hundred), expect="ipv6_extension_chain",
                    what="frame 39 over IPv6 with 100 extension headers")
            endless = ext_chain([HBH, DSTOPTS] * 20, last_next=HBH)
            f = to_ipv6(ack, exts=endless, payload_len=len(endless[1]))
            c.frame(r, f[:14 + 40 + len(endless[1])], expect="ipv6_extension_chain",
                    what="40 extension headers to the end of the frame, the last pointing at "
                         "one more")
            # A 2048-byte destination options header in a whole frame.
            head = bytes([6, 255]) + bytes(6)
            f = to_ipv6(ack, exts=(DSTOPTS, head))
            c.frame(r, f, expect="bad_ip_length",
                    what="whole 94-byte frame, payload length 40, an extension header "
                         "claiming 2048 bytes")
            # 24-byte header, payload length 16: the header is captured.
            f = to_ipv6(ack, exts=(DSTOPTS, ext_header(6, 24)), payload_len=16)
            c.frame(r, f, expect="bad_ip_length",
                    what="24-byte extension header, payload length 16")
            # Cut by the capture inside a 2048-byte header.
            f = to_ipv6(ack, exts=(DSTOPTS, ext_header(6, 2048)))
            c.frame(r, f[:100], orig_len=len(f), expect="truncated_ip",
                    what="2048-byte extension header, captured to 100 bytes")
            # The packet says 40 bytes follow, the frame has 12: cut short
            # on its way, not by its fields.
            f = to_ipv6(ack, exts=(DSTOPTS, ext_header(6, 8)))
            c.frame(r, f[:14 + 40 + 4], expect="truncated_ip",
                    what="whole frame ending 4 bytes into an 8-byte extension header, "
                         "payload length 40")
    return c


def s_zero_length(src):
    c = Capture("zero_length_frames.pcap",
                "Frames 1-60 of short_conns.pcap with 5 extra records of no captured bytes: 2 "
                "with original length 0, 2 with original length 60, 1 with 1514. Each is a "
                "frame (read, handed on) without even an Ethernet header: truncated_link.")
    extra = {10: [0], 20: [0, 60], 40: [60], 50: [1514]}
    for i, r in enumerate(src[:60], start=1):
        c.frame(r)
        for orig in extra.get(i, []):
            c.frame(r, b"", orig_len=orig, expect="truncated_link",
                    what=f"no bytes, orig_len {orig}")
    return c


def s_bad_ip_lengths(src):
    c = Capture("bad_ip_lengths.pcap",
                "Frames 1-100 of short_conns.pcap, the third connection (frames 35-48) carried "
                "over IPv6 as in ipv6_extension_loop.pcap. Length fields the decoder accepts, "
                "on real frames in place: IPv4 total length 0 (frame 23; TSO, the wire length "
                "is used) and 9000 (frame 25; longer than the frame: clamped to it), IPv6 "
                "payload length 4000 (frame 39; past the frame: clamped) and 0 (frame 43; "
                "jumbogram/offload, the wire length is used); these are segments. Extra copies "
                "that are errors: IPv4 total length 19 and 12 (below the 20-byte header: "
                "bad_ip_length x2); IPv4 total length 30 and 51 on a 66-byte ACK (its 32-byte "
                "TCP header does not fit: bad_tcp_header_length x2); IPv6 payload length 16 "
                "under a 24-byte extension header (bad_ip_length); IPv6 payload length 8 and 31 "
                "under a 32-byte TCP header (bad_tcp_header_length x2).")
    for i, r in enumerate(src[:100], start=1):
        if i == 23:
            c.frame(r, ip4_edit(r, total_len=0), expect=SEGMENT, what="frame 23, total length 0")
        elif i == 25:
            c.frame(r, ip4_edit(r, total_len=9000), expect=SEGMENT,
                    what="frame 25, total length 9000")
        elif i == 39:
            c.frame(r, to_ipv6(r, payload_len=4000), expect=SEGMENT,
                    what="frame 39 over IPv6, payload length 4000")
        elif i == 43:
            c.frame(r, to_ipv6(r, payload_len=0), expect=SEGMENT,
                    what="frame 43 over IPv6, payload length 0")
        else:
            v6_connection(c, src, i, r)
        if i == 60:
            ack = src[58]  # frame 59, 66-byte ACK
            for tl in (19, 12):
                c.frame(r, ip4_edit(ack, total_len=tl), expect="bad_ip_length",
                        what=f"frame 59, total length {tl}")
            for tl in (30, 51):
                c.frame(r, ip4_edit(ack, total_len=tl), expect="bad_tcp_header_length",
                        what=f"frame 59, total length {tl}")
        if i == 80:
            ack = src[38]  # frame 39
            f = to_ipv6(ack, exts=(DSTOPTS, ext_header(6, 24)), payload_len=16)
            c.frame(r, f, expect="bad_ip_length",
                    what="frame 39 over IPv6, 24-byte extension header, payload length 16")
            for pl in (8, 31):
                c.frame(r, to_ipv6(ack, payload_len=pl), expect="bad_tcp_header_length",
                        what=f"frame 39 over IPv6, payload length {pl}")
    return c


def s_lying_snaplen(src):
    c = Capture("lying_snaplen.pcap",
                "All 429 frames of short_conns.pcap, whole (up to 1514 bytes), under a global "
                "header whose snap length says 64. Records are read whole: the counts of "
                "short_conns.pcap.", snaplen=64)
    for r in src:
        c.frame(r)
    return c


def s_lying_linktype(src):
    c = Capture("lying_linktype.pcap",
                "All 429 Ethernet frames of short_conns.pcap under a global header that says "
                "LINKTYPE_RAW (101). Each frame is read as an IP packet starting at the "
                "destination MAC address, whose first nibble (8, 3 or f here) is not an IP "
                "version: bad_ip_version x429, no segment.", linktype=LINKTYPE_RAW)
    for r in src:
        c.frame(r)
    return c


def garbage_frame(rng, src):
    """One random frame and its original length, from one of 10 recipes."""
    kind = rng.below(10)
    macs = rng.bytes(12)
    if kind == 0:  # bytes, any length
        data = rng.bytes(rng.below(80))
    elif kind == 1:  # an Ethernet header with any ethertype
        data = macs + rng.bytes(2 + rng.below(70))
    elif kind == 2:  # "IPv4", the rest random
        data = macs + b"\x08\x00" + bytes([0x40 | rng.below(16)]) + rng.bytes(rng.below(90))
    elif kind == 3:  # "IPv6", the rest random
        data = macs + b"\x86\xdd" + bytes([0x60 | rng.below(16)]) + rng.bytes(rng.below(130))
    elif kind == 4:  # VLAN tags, 0-7 of them, then IPv4 or random
        data = macs
        for _ in range(rng.below(8)):
            data += struct.pack("!H", VLAN_TPIDS[rng.below(3)]) + rng.bytes(2)
        data += (b"\x08\x00\x45" if rng.below(2) else b"") + rng.bytes(rng.below(60))
    elif kind == 5:  # IPv6 with a random chain of extension-ish headers
        nxt = [HBH, ROUTING, FRAGMENT, AH, DSTOPTS, 6, 17, 58][rng.below(8)]
        body = b""
        for _ in range(rng.below(12)):
            body += bytes([[HBH, DSTOPTS, FRAGMENT, AH, 6, 59][rng.below(6)], rng.below(3)])
            body += rng.bytes(6)
        ip6 = struct.pack("!IHBB", 6 << 28, rng.below(200), nxt, 64) + rng.bytes(32)
        data = macs + b"\x86\xdd" + ip6 + body + rng.bytes(rng.below(40))
    elif kind == 6:  # IPv6, a long chain of options/routing headers
        body = b""
        for _ in range(9 + rng.below(8)):
            length = 8 * (1 + rng.below(2))
            body += bytes([[HBH, DSTOPTS, ROUTING][rng.below(3)], length // 8 - 1])
            body += rng.bytes(length - 2)
        ip6 = struct.pack("!IHBB", 6 << 28, len(body) + 20, [HBH, DSTOPTS][rng.below(2)], 64)
        data = macs + b"\x86\xdd" + ip6 + rng.bytes(32) + body + rng.bytes(20)
    elif kind == 7:  # IPv4, a total length shorter than its IHL says
        ihl = 5 + rng.below(11)
        head = bytearray(bytes([0x40 | ihl]) + rng.bytes(ihl * 4 - 1 + rng.below(40)))
        put16(head, 2, 1 + rng.below(ihl * 4 - 1))
        data = macs + b"\x08\x00" + bytes(head)
    else:  # a real frame (TCP but for one MLD) with 1-4 bytes changed, perhaps cut
        r = src[6 + rng.below(400)]
        f = bytearray(r[2])
        for _ in range(1 + rng.below(4)):
            f[14 + rng.below(min(len(f) - 14, 60))] = rng.below(256)
        cut = len(f) if rng.below(2) else rng.below(len(f) + 1)
        return bytes(f[:cut]), len(f)
    orig = len(data) if rng.below(3) else len(data) + rng.below(1500)
    return data, orig


def s_mixed_garbage(src):
    c = Capture("mixed_garbage.pcap", "")
    rng = XorShift(0x5EED3)  # a seed under which all 11 frame-level reasons occur
    placed = 0
    for i, r in enumerate(src[:150], start=1):
        c.frame(r)
        if rng.below(3) != 0:
            while True:
                data, orig = garbage_frame(rng, src)
                reason = classify("eth", data, orig)
                if reason is not None:  # keep only garbage that is an error
                    break
            c.frame(r, data, orig_len=orig, expect=reason, what="garbage")
            placed += 1
    frame_reasons = {"truncated_link", "truncated_ip", "truncated_tcp", "not_ip", "not_tcp",
                     "bad_ip_version", "bad_ip_header_length", "bad_ip_length",
                     "bad_tcp_header_length", "ip_fragment", "ipv6_extension_chain"}
    missing = frame_reasons - set(c.errors)
    assert not missing, f"mixed_garbage: no garbage frame is {sorted(missing)}"
    c.description = (
        f"Frames 1-150 of short_conns.pcap with {placed} frames of garbage between them "
        "(xorshift64 seed 0x5eed3, reproducible; every frame-level reason occurs): random "
        "bytes, random Ethernet headers, "
        "random IPv4/IPv6 behind a right ethertype, piles of VLAN tags, random and long IPv6 "
        "extension chains, IPv4 total lengths below the header, real frames with 1-4 bytes "
        "changed (some cut short by a smaller captured length, some with an original length "
        "larger than the captured one). None of the garbage decodes to a segment.")
    return c


def broken_headers(outdir):
    good = global_header()
    broken_header(outdir, "header_short.pcap", good[:10],
                  "The first 10 bytes of a valid global header (little-endian microsecond magic, "
                  "version 2.4) and nothing else: the 24-byte header is cut short. Refused, "
                  "non-zero exit, no metrics.", "cut short")
    rng = XorShift(0xBAD)
    while True:
        junk = rng.bytes(24)
        # Not a classic pcap magic in either byte order, nor pcapng's.
        if junk[:4] not in (b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4", b"\x4d\x3c\xb2\xa1",
                            b"\xa1\xb2\x3c\x4d", b"\x0a\x0d\x0d\x0a"):
            break
    broken_header(outdir, "header_bad_magic.pcap", junk,
                  "24 random bytes (xorshift64 seed 0xbad) where the global header should be: "
                  "no known magic number. Refused, non-zero exit, no metrics.", "not a pcap")
    return junk


def s_header_bad_version(src, outdir):
    data = global_header(vmaj=9, vmin=9)
    for r in src[:10]:
        data += record_header(r[0], r[1], len(r[2]), r[3]) + r[2]
    broken_header(outdir, "header_bad_version.pcap", data,
                  "A little-endian microsecond magic number but format version 9.9 (only 2.x "
                  "exists), followed by the first 10 records of short_conns.pcap. Refused, "
                  "non-zero exit, no metrics.", "version")


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    root = os.path.dirname(here)
    args = sys.argv[1:]
    if len(args) > 2 or any(a.startswith("-") for a in args):
        sys.exit(__doc__)
    source = args[0] if args else os.path.join(root, "testdata/pcaps/short_conns.pcap")
    outdir = args[1] if len(args) > 1 else os.path.join(root, "testdata/pcaps/malformed")
    src = read_source(source)
    if len(src) != 429:
        sys.exit(f"{source}: {len(src)} records; the scenarios are written for the 429 of "
                 "short_conns.pcap")
    os.makedirs(outdir, exist_ok=True)
    for make in (s_truncated_record_data, s_truncated_record_header, s_bad_record_length,
                 s_huge_record_length, s_ihl_out_of_range, s_tcp_data_offset,
                 s_ipv6_extension_loop, s_zero_length, s_bad_ip_lengths, s_lying_snaplen,
                 s_lying_linktype, s_mixed_garbage):
        make(src).write(outdir)
    broken_headers(outdir)
    s_header_bad_version(src, outdir)


if __name__ == "__main__":
    main()
