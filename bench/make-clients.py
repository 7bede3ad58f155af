#!/usr/bin/env python3
"""Write a pcap of N complete TCP connections, each from a distinct client
address, for the cardinality benchmark (bench/cardinality.sh). Stdlib only.

Connection i goes from client 10.1.0.1 + i (counting up through 10.0.0.0/8)
and an ephemeral port (32768-60999) to server 192.0.2.(1 + i % 4) on port
443, 80, 5432 or 8080 (by (i // 4) % 4): N distinct (client, server,
server_port) label sets over 16 (server, port) pairs. Each connection is ten
segments: SYN and SYN/ACK (MSS 1460, window scale 7, SACK permitted), ACK,
a 100-byte request, its ACK, a 1000-byte response, its ACK, FIN/ACK from the
client, FIN/ACK from the server, the last ACK. IPv4 with DF, correct lengths
and IP/TCP checksums, Ethernet framing, classic pcap with nanosecond
timestamps (as bench/syn-flood.py). Connections start 10 us apart and each
one's segments are 20 us apart, so about 20 are open at once and a million
connections span about 10 s of capture time (well under the default
300 s flow idle timeout and 5 min series TTL). Segment k of connection i is
at 10 us * (i + 2k) + k ns, so timestamps are strictly increasing.

Usage: make-clients.py N OUT.pcap
"""
import struct
import sys

SERVER_PORTS = (443, 80, 5432, 8080)
CLIENT_BASE = 0x0A010001  # 10.1.0.1
SEGMENTS = 10
START_GAP_NS = 10_000
STEP_NS = 20_000

# TCP flags
FIN, SYN, PSH, ACK = 0x01, 0x02, 0x08, 0x10
# MSS 1460, NOP, window scale 7, NOP, NOP, SACK permitted: 12 bytes
SYN_OPTIONS = b'\x02\x04\x05\xb4' + b'\x01' + b'\x03\x03\x07' + b'\x01\x01' + b'\x04\x02'
REQUEST = bytes((i * 7 + 1) & 0xff for i in range(100))
RESPONSE = bytes((i * 13 + 5) & 0xff for i in range(1000))

IP = struct.Struct('!BBHHHBBH4s4s')
TCP = struct.Struct('!HHIIBBHHH')
REC = struct.Struct('<IIII')
MAC_CLIENT = b'\x02\x00\x00\x00\x00\x01'
MAC_SERVER = b'\x02\x00\x00\x00\x00\x02'
ETH_C2S = MAC_SERVER + MAC_CLIENT + b'\x08\x00'
ETH_S2C = MAC_CLIENT + MAC_SERVER + b'\x08\x00'


def word_sum(data):
    if len(data) % 2:
        data += b'\x00'
    return sum(struct.unpack('!%dH' % (len(data) // 2), data))


def fold(s):
    while s >> 16:
        s = (s & 0xffff) + (s >> 16)
    return ~s & 0xffff


PAYLOAD_SUM = {0: 0, len(REQUEST): word_sum(REQUEST), len(RESPONSE): word_sum(RESPONSE)}
PAYLOAD = {0: b'', len(REQUEST): REQUEST, len(RESPONSE): RESPONSE}
OPTIONS_SUM = word_sum(SYN_OPTIONS)


def segment(src, dst, sport, dport, seq, ack, flags, window, options, plen, ip_id):
    """Ethernet-less IPv4 + TCP bytes of one segment with correct checksums."""
    thl = 20 + len(options)
    total = 20 + thl + plen
    ip_hdr = IP.pack(0x45, 0, total, ip_id, 0x4000, 64, 6, 0, src, dst)
    ip_hdr = ip_hdr[:10] + struct.pack('!H', fold(word_sum(ip_hdr))) + ip_hdr[12:]
    tcp_hdr = TCP.pack(sport, dport, seq, ack, (thl // 4) << 4, flags, window, 0, 0)
    s = word_sum(src + dst) + 6 + thl + plen + word_sum(tcp_hdr) + PAYLOAD_SUM[plen]
    if options:
        s += OPTIONS_SUM
    tcp_hdr = tcp_hdr[:16] + struct.pack('!H', fold(s)) + tcp_hdr[18:]
    return ip_hdr + tcp_hdr + options + PAYLOAD[plen]


def frame(i, k):
    """Frame of segment k (0..9) of connection i."""
    client = (CLIENT_BASE + i).to_bytes(4, 'big')
    server = bytes((192, 0, 2, 1 + i % 4))
    cport = 32768 + (i * 7919) % 28232
    sport = SERVER_PORTS[(i // 4) % 4]
    c = (i * 2654435761 + 0x1234567) & 0xffffffff  # client ISN
    s = (i * 40503 * 65537 + 0x89abcdef) & 0xffffffff  # server ISN
    m = 0xffffffff
    cid = (i * 16 + k) & 0xffff
    sid = (i * 16 + 8 + k) & 0xffff
    # (from client?, seq, ack, flags, window, options, payload length)
    if k == 0:
        spec = (True, c, 0, SYN, 64240, SYN_OPTIONS, 0)
    elif k == 1:
        spec = (False, s, (c + 1) & m, SYN | ACK, 65160, SYN_OPTIONS, 0)
    elif k == 2:
        spec = (True, (c + 1) & m, (s + 1) & m, ACK, 502, b'', 0)
    elif k == 3:
        spec = (True, (c + 1) & m, (s + 1) & m, PSH | ACK, 502, b'', 100)
    elif k == 4:
        spec = (False, (s + 1) & m, (c + 101) & m, ACK, 509, b'', 0)
    elif k == 5:
        spec = (False, (s + 1) & m, (c + 101) & m, PSH | ACK, 509, b'', 1000)
    elif k == 6:
        spec = (True, (c + 101) & m, (s + 1001) & m, ACK, 501, b'', 0)
    elif k == 7:
        spec = (True, (c + 101) & m, (s + 1001) & m, FIN | ACK, 501, b'', 0)
    elif k == 8:
        spec = (False, (s + 1001) & m, (c + 102) & m, FIN | ACK, 509, b'', 0)
    else:
        spec = (True, (c + 102) & m, (s + 1002) & m, ACK, 501, b'', 0)
    out, seq, ack, flags, window, options, plen = spec
    if out:
        return ETH_C2S + segment(client, server, cport, sport, seq, ack, flags, window,
                                 options, plen, cid)
    return ETH_S2C + segment(server, client, sport, cport, seq, ack, flags, window,
                             options, plen, sid)


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    n, out = int(sys.argv[1]), sys.argv[2]
    if not 0 < n <= 0x0AFFFFFF - CLIENT_BASE + 1:
        sys.exit('N must be between 1 and %d (clients stay in 10.0.0.0/8)'
                 % (0x0AFFFFFF - CLIENT_BASE + 1))
    t0 = 1_700_000_000 * 10**9
    with open(out, 'wb') as f:
        f.write(struct.pack('<IHHiIII', 0xa1b23c4d, 2, 4, 0, 0, 65535, 1))
        # Slot q holds segment k of connection q - 2k; within a slot, k ascending.
        last = n - 1 + 2 * (SEGMENTS - 1)
        for q in range(last + 1):
            for k in range(SEGMENTS):
                i = q - 2 * k
                if i < 0:
                    break
                if i >= n:
                    continue
                fr = frame(i, k)
                ts = t0 + q * START_GAP_NS + k
                f.write(REC.pack(ts // 10**9, ts % 10**9, len(fr), len(fr)))
                f.write(fr)


if __name__ == '__main__':
    main()
