#!/usr/bin/env python3
"""Small rewrites of classic pcap files (stdlib only), for scripts/gen-pcaps.sh.

  pcaptool.py vlan IN OUT [--vid 100] [--qinq-frame N] [--outer-vid 200]
      Insert an 802.1Q tag (TPID 0x8100, VID --vid, PCP 0) after the two MAC
      addresses of every Ethernet frame. Frames N and N+1 (1-based, as tshark
      numbers them) get a double tag instead: 802.1ad (TPID 0x88a8, VID
      --outer-vid) then 802.1Q (VID --vid) (QinQ).
  pcaptool.py raw IN OUT
      Strip the Ethernet header (and any VLAN tags) and write link type RAW
      (101): each packet starts with its IPv4 or IPv6 header. Frames that do
      not carry IPv4/IPv6 (ARP, ...) are left out.
  pcaptool.py info FILE
      Print the link type, snap length and number of records.

Caplen and original length grow (or shrink) by the bytes inserted (removed);
timestamps and everything else are kept. Input must be classic pcap (either
byte order, microsecond or nanosecond magic); the output keeps its format.
"""

import argparse
import struct
import sys

LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101
MAGICS = {
    b"\xd4\xc3\xb2\xa1": "<",  # usec, little endian
    b"\xa1\xb2\xc3\xd4": ">",  # usec, big endian
    b"\x4d\x3c\xb2\xa1": "<",  # nsec, little endian
    b"\xa1\xb2\x3c\x4d": ">",  # nsec, big endian
}
VLAN_TPIDS = (0x8100, 0x88A8, 0x9100)


def read_pcap(path):
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 24 or data[:4] not in MAGICS:
        sys.exit(f"{path}: not a classic pcap file")
    end = MAGICS[data[:4]]
    vmaj, vmin, thiszone, sigfigs, snaplen, linktype = struct.unpack(end + "HHiIII", data[4:24])
    header = dict(magic=data[:4], end=end, vmaj=vmaj, vmin=vmin, thiszone=thiszone,
                  sigfigs=sigfigs, snaplen=snaplen, linktype=linktype & 0x0FFFFFFF)
    records = []
    off = 24
    while off + 16 <= len(data):
        ts_sec, ts_frac, caplen, origlen = struct.unpack(end + "IIII", data[off:off + 16])
        off += 16
        pkt = data[off:off + caplen]
        if len(pkt) < caplen:
            sys.exit(f"{path}: truncated record at byte {off}")
        off += caplen
        records.append((ts_sec, ts_frac, origlen, pkt))
    return header, records


def write_pcap(path, header, records, linktype=None, snaplen=None):
    end = header["end"]
    out = [header["magic"], struct.pack(end + "HHiIII", header["vmaj"], header["vmin"],
                                        header["thiszone"], header["sigfigs"],
                                        snaplen if snaplen is not None else header["snaplen"],
                                        linktype if linktype is not None else header["linktype"])]
    for ts_sec, ts_frac, origlen, pkt in records:
        out.append(struct.pack(end + "IIII", ts_sec, ts_frac, len(pkt), origlen))
        out.append(pkt)
    with open(path, "wb") as f:
        f.write(b"".join(out))


def tag(tpid, vid, pcp=0):
    return struct.pack("!HH", tpid, (pcp << 13) | (vid & 0x0FFF))


def cmd_vlan(args):
    header, records = read_pcap(args.input)
    if header["linktype"] != LINKTYPE_ETHERNET:
        sys.exit(f"{args.input}: link type {header['linktype']} is not Ethernet")
    qinq = set()
    if args.qinq_frame:
        qinq = {args.qinq_frame, args.qinq_frame + 1}
    out = []
    for i, (ts_sec, ts_frac, origlen, pkt) in enumerate(records, start=1):
        if len(pkt) < 14:
            out.append((ts_sec, ts_frac, origlen, pkt))
            continue
        if i in qinq:
            ins = tag(0x88A8, args.outer_vid) + tag(0x8100, args.vid)
        else:
            ins = tag(0x8100, args.vid)
        out.append((ts_sec, ts_frac, origlen + len(ins), pkt[:12] + ins + pkt[12:]))
    snaplen = header["snaplen"] + 8 if header["snaplen"] < 262144 else header["snaplen"]
    write_pcap(args.output, header, out, snaplen=snaplen)
    print(f"{args.output}: {len(out)} frames tagged (QinQ on {sorted(qinq) or 'none'})")


def cmd_raw(args):
    header, records = read_pcap(args.input)
    if header["linktype"] != LINKTYPE_ETHERNET:
        sys.exit(f"{args.input}: link type {header['linktype']} is not Ethernet")
    out = []
    skipped = 0
    for ts_sec, ts_frac, origlen, pkt in records:
        off = 12
        ethertype = struct.unpack("!H", pkt[off:off + 2])[0] if len(pkt) >= 14 else 0
        while ethertype in VLAN_TPIDS and len(pkt) >= off + 6:
            off += 4
            ethertype = struct.unpack("!H", pkt[off:off + 2])[0]
        off += 2
        if ethertype not in (0x0800, 0x86DD):
            skipped += 1
            continue
        out.append((ts_sec, ts_frac, origlen - off, pkt[off:]))
    write_pcap(args.output, header, out, linktype=LINKTYPE_RAW)
    print(f"{args.output}: {len(out)} packets, {skipped} non-IP frames left out")


def cmd_info(args):
    header, records = read_pcap(args.input)
    print(f"linktype={header['linktype']} snaplen={header['snaplen']} records={len(records)}")


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    sp = sub.add_parser("vlan")
    sp.add_argument("input")
    sp.add_argument("output")
    sp.add_argument("--vid", type=int, default=100)
    sp.add_argument("--outer-vid", type=int, default=200)
    sp.add_argument("--qinq-frame", type=int, default=0)
    sp.set_defaults(func=cmd_vlan)
    sp = sub.add_parser("raw")
    sp.add_argument("input")
    sp.add_argument("output")
    sp.set_defaults(func=cmd_raw)
    sp = sub.add_parser("info")
    sp.add_argument("input")
    sp.set_defaults(func=cmd_info)
    args = p.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()
