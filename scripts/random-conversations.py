#!/usr/bin/env python3
"""Write a pcap of random TCP conversations, for differential tests of the
TCP analysis against tshark (stdlib only).

Usage: random-conversations.py --seed N --count C OUT.pcap

Each conversation is between 10.0.0.1:(40000+i) and 10.0.0.2:80 (one flow
each) and is a random mix of what the analysis must classify: handshakes
(with retransmitted SYNs and SYN/ACKs, window scale on or off), mid-stream
starts, data with holes, repeats of earlier segments, pure ACKs, keep-alive
shaped segments, 1-byte segments into zero windows, FINs, RSTs, new SYNs on
the same ports (port reuse), sequence numbers near the 2^32 wrap, and
inter-segment gaps around the 3 ms and 20 ms thresholds. A conversation
lasts at most a few seconds of capture time, so no flow idles out.
Conversations follow each other in time; the same seed gives the same file.
"""
import argparse
import random
import struct

FIN, SYN, RST, PSH, ACK = 1, 2, 4, 8, 16
GAPS_NS = [0, 1_000, 500_000, 2_000_000, 2_999_999, 3_000_000, 5_000_000,
           19_000_000, 25_000_000, 80_000_000]


def checksum(b):
    if len(b) % 2:
        b += b'\0'
    s = sum(struct.unpack('!%dH' % (len(b) // 2), b))
    while s >> 16:
        s = (s & 0xffff) + (s >> 16)
    return (~s) & 0xffff


def frame(src, dst, seq, ack, flags, win, payload_len, wscale):
    opts = b'' if wscale is None else b'\x01\x03\x03' + bytes([wscale])
    tcp = struct.pack('!HHIIBBHHH', src[1], dst[1], seq & 0xffffffff, ack & 0xffffffff,
                      ((20 + len(opts)) // 4) << 4, flags, win, 0, 0) + opts + b'z' * payload_len
    pseudo = bytes(src[0]) + bytes(dst[0]) + struct.pack('!BBH', 0, 6, len(tcp))
    tcp = tcp[:16] + struct.pack('!H', checksum(pseudo + tcp)) + tcp[18:]
    ip = struct.pack('!BBHHHBBH4s4s', 0x45, 0, 20 + len(tcp), 1, 0x4000, 64, 6, 0,
                     bytes(src[0]), bytes(dst[0]))
    ip = ip[:10] + struct.pack('!H', checksum(ip)) + ip[12:]
    return b'\x02' * 6 + b'\x04' * 6 + b'\x08\x00' + ip + tcp


def conversation(rng, port, t):
    """Returns the segments of one conversation and the time after it."""
    a, b = ((10, 0, 0, 1), port), ((10, 0, 0, 2), 80)
    out = []
    isn = {a: rng.choice([rng.randrange(1 << 32), (1 << 32) - rng.randrange(1, 3000)]),
           b: rng.randrange(1 << 32)}
    nxt = dict(isn)
    win = {a: rng.choice([0, 100, 502, 65535]), b: rng.choice([0, 100, 500, 8])}
    sent = {a: [], b: []}

    def emit(src, seq, ack, flags, w, n, wscale=None):
        nonlocal t
        t += rng.choice(GAPS_NS)
        dst = b if src == a else a
        out.append((t, frame(src, dst, seq, ack, flags, w, n, wscale)))

    if rng.random() < 0.25:  # mid-stream start
        nxt[a] += 1
        nxt[b] += 1
    else:
        ws_a = rng.choice([None, None, 0, 2, 7, 15])
        ws_b = rng.choice([None, 0, 3, 7])
        emit(a, isn[a], 0, SYN, 64240, 0, ws_a)
        if rng.random() < 0.2:
            emit(a, isn[a], 0, SYN, 64240, 0, ws_a)
        nxt[a] = isn[a] + 1
        emit(b, isn[b], nxt[a], SYN | ACK, 65160, 0, ws_b)
        nxt[b] = isn[b] + 1
        if rng.random() < 0.1:
            emit(b, isn[b] + rng.choice([0, 7]), nxt[a], SYN | ACK, 65160, 0, ws_b)
        emit(a, nxt[a], nxt[b], ACK, win[a], 0)
    for _ in range(rng.randrange(5, 60)):
        src = rng.choice([a, b])
        dst = b if src == a else a
        ack = nxt[dst] - rng.choice([0, 0, 0, 0, 1, 50, 100]) + rng.choice([0, 0, 0, 0, 0, 100])
        if rng.random() < 0.15:
            win[src] = rng.choice([0, 1, 100, 502, 8, 65535])
        w = win[src]
        r = rng.random()
        if r < 0.35:  # new data, sometimes after a hole
            n = rng.choice([1, 2, 100, 100, 100, 500])
            if rng.random() < 0.1:
                nxt[src] += 100
            emit(src, nxt[src], ack, ACK | (PSH if rng.random() < 0.3 else 0), w, n)
            sent[src].append((nxt[src], n))
            nxt[src] += n
        elif r < 0.5 and sent[src]:  # an earlier segment again
            seq, n = rng.choice(sent[src])
            emit(src, seq, ack, ACK, w, n)
        elif r < 0.75:  # pure ACK
            emit(src, nxt[src], ack, ACK, w, 0)
        elif r < 0.82:  # keep-alive shaped
            emit(src, nxt[src] - 1, ack, ACK, w, rng.choice([0, 1]))
        elif r < 0.86:
            emit(src, nxt[src], ack, ACK | FIN, w, 0)
            if rng.random() < 0.5:
                nxt[src] += 1
        elif r < 0.88:
            emit(src, nxt[src] + rng.choice([0, 0, 10]), ack,
                 RST | (ACK if rng.random() < 0.5 else 0), 0, 0)
        elif r < 0.90 and src == a:  # SYN again: same ISN, or port reuse
            if rng.random() < 0.5:
                isn[a] = rng.randrange(1 << 32)
            emit(a, isn[a], 0, SYN, 64240, 0, rng.choice([None, 7]))
            nxt[a] = isn[a] + 1
        elif r < 0.93:  # small segments at the edge: probes
            emit(src, nxt[src], ack, ACK, w, rng.choice([0, 1, 2]))
        else:
            emit(src, nxt[src] + rng.choice([-100, 100, 1]), ack, ACK, w, rng.choice([0, 100]))
    return out, t


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--seed', type=int, required=True)
    p.add_argument('--count', type=int, required=True)
    p.add_argument('out')
    args = p.parse_args()
    rng = random.Random(args.seed)
    t = 1_700_000_000 * 10**9
    records = []
    for i in range(args.count):
        segments, t = conversation(rng, 40000 + i, t)
        records.extend(segments)
        t += 1_000_000_000
    with open(args.out, 'wb') as f:
        f.write(struct.pack('<IHHiIII', 0xa1b23c4d, 2, 4, 0, 0, 65535, 1))
        for ts, data in records:
            f.write(struct.pack('<IIII', ts // 10**9, ts % 10**9, len(data), len(data)) + data)


if __name__ == '__main__':
    main()
