#!/usr/bin/env python3
"""Real-socket TCP traffic helpers for scripts/gen-pcaps.sh (stdlib only).

Every subcommand is bounded in count and time and exits by itself. They are
meant to run inside the network namespaces that gen-pcaps.sh creates, and
talk only to the address given on the command line.

Servers (run in the server namespace, in the background):
  serve   --addr A --port P --mode MODE --conns N [--rcvbuf B] [--stall S]
          MODE: sink     read until EOF, then close
                reqresp  read a request (until b"\\n"), send --resp bytes, close
                abort    read a request, send --resp bytes, then reset (SO_LINGER 0)
                stall    set SO_RCVBUF small, do not read for --stall seconds,
                         then read until EOF (makes zero windows)
                hold     read until EOF, sending nothing (for keep-alives)
          The server prints "ready" on stdout once listening and exits after
          N connections or --timeout seconds.

Clients (run in the client namespace):
  bulk     --addr A --port P --conns N --bytes B     send B bytes per connection
  reqresp  --addr A --port P --conns N [--req B]     small request, read reply
  abort    --addr A --port P --conns N --bytes B     send B bytes then reset
                                                     (SO_LINGER 0) mid-stream
  refused  --addr A --port P --conns N               connect to a closed port
  spurious --addr A --port P --hold S                send a request, keep the
                                                     connection open S seconds
  keepalive --addr A --port P --idle S               idle connection with
                                                     SO_KEEPALIVE (1 s probes)
Common client options: --rcvbuf B (set before connect: changes the window
scale offered in the SYN), --no-df (IP_PMTUDISC_DONT: IPv4 packets without DF).
"""

import argparse
import socket
import struct
import sys
import time

CHUNK = 16384


def family_of(addr):
    return socket.AF_INET6 if ":" in addr else socket.AF_INET


def linger0(sock):
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def client_socket(args):
    s = socket.socket(family_of(args.addr), socket.SOCK_STREAM)
    if args.rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, args.rcvbuf)
    if args.no_df and family_of(args.addr) == socket.AF_INET:
        # IP_MTU_DISCOVER = 10, IP_PMTUDISC_DONT = 0
        s.setsockopt(socket.IPPROTO_IP, getattr(socket, "IP_MTU_DISCOVER", 10), 0)
    s.settimeout(args.timeout)
    return s


def connect(args):
    s = client_socket(args)
    s.connect((args.addr, args.port))
    return s


def read_all(sock, limit=None):
    total = 0
    while True:
        data = sock.recv(CHUNK)
        if not data:
            return total
        total += len(data)
        if limit is not None and total >= limit:
            return total


def payload(n):
    pattern = b"tcp-exporter test payload 0123456789abcdefghijklmnopqrstuvwxyz\n"
    reps = n // len(pattern) + 1
    return (pattern * reps)[:n]


# --------------------------------------------------------------------- server


def serve(args):
    fam = family_of(args.addr)
    ls = socket.socket(fam, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if args.rcvbuf:
        # Set on the listener so accepted sockets inherit it (and the SYN/ACK
        # offers the matching window scale).
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, args.rcvbuf)
    ls.bind((args.addr, args.port))
    ls.listen(64)
    ls.settimeout(args.timeout)
    print("ready", flush=True)
    deadline = time.monotonic() + args.timeout
    resp = payload(args.resp)
    for _ in range(args.conns):
        if time.monotonic() > deadline:
            break
        try:
            c, _peer = ls.accept()
        except socket.timeout:
            break
        c.settimeout(args.timeout)
        try:
            if args.mode == "sink" or args.mode == "hold":
                read_all(c)
                c.close()
            elif args.mode == "reqresp":
                read_request(c)
                c.sendall(resp)
                c.shutdown(socket.SHUT_WR)
                read_all(c)  # wait for the client's FIN
                c.close()
            elif args.mode == "abort":
                read_request(c)
                c.sendall(resp)
                time.sleep(0.05)
                linger0(c)
                c.close()
            elif args.mode == "stall":
                time.sleep(args.stall)
                read_all(c)
                c.close()
        except (ConnectionError, socket.timeout) as e:
            print(f"serve: {e}", file=sys.stderr)
            c.close()
    ls.close()


def read_request(c):
    buf = b""
    while b"\n" not in buf:
        data = c.recv(4096)
        if not data:
            break
        buf += data
    return buf


# --------------------------------------------------------------------- clients


def bulk(args):
    data = payload(args.bytes)
    for _ in range(args.conns):
        s = connect(args)
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        read_all(s)
        s.close()


def reqresp(args):
    for i in range(args.conns):
        s = connect(args)
        s.sendall(payload(args.req - 1) + b"\n")
        try:
            n = read_all(s)
        except ConnectionResetError:
            n = -1  # the server aborted (serve --mode abort)
        s.close()
        if args.gap:
            time.sleep(args.gap)
        if n == 0:
            print(f"reqresp: connection {i} got no reply", file=sys.stderr)


def abort(args):
    data = payload(args.bytes)
    for _ in range(args.conns):
        s = connect(args)
        s.sendall(data)
        time.sleep(0.05)
        linger0(s)
        s.close()
        time.sleep(0.02)


def refused(args):
    for _ in range(args.conns):
        s = client_socket(args)
        try:
            s.connect((args.addr, args.port))
            print("refused: connection unexpectedly accepted", file=sys.stderr)
        except ConnectionRefusedError:
            pass
        s.close()
        time.sleep(0.02)


def spurious(args):
    s = connect(args)
    s.sendall(payload(99) + b"\n")
    time.sleep(args.hold)
    s.shutdown(socket.SHUT_WR)
    read_all(s)
    s.close()


def keepalive(args):
    s = client_socket(args)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 1)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, 1)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 5)
    s.connect((args.addr, args.port))
    s.sendall(b"hello\n")
    time.sleep(args.idle)
    s.sendall(b"bye\n")
    s.shutdown(socket.SHUT_WR)
    read_all(s)
    s.close()


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)

    def common(sp):
        sp.add_argument("--addr", required=True)
        sp.add_argument("--port", type=int, required=True)
        sp.add_argument("--conns", type=int, default=1)
        sp.add_argument("--rcvbuf", type=int, default=0)
        sp.add_argument("--timeout", type=float, default=20.0)
        sp.add_argument("--no-df", action="store_true")
        return sp

    sp = common(sub.add_parser("serve"))
    sp.add_argument("--mode", required=True,
                    choices=["sink", "reqresp", "abort", "stall", "hold"])
    sp.add_argument("--resp", type=int, default=4000)
    sp.add_argument("--stall", type=float, default=2.0)
    sp.set_defaults(func=serve)

    sp = common(sub.add_parser("bulk"))
    sp.add_argument("--bytes", type=int, default=300_000)
    sp.set_defaults(func=bulk)

    sp = common(sub.add_parser("reqresp"))
    sp.add_argument("--req", type=int, default=120)
    sp.add_argument("--gap", type=float, default=0.0)
    sp.set_defaults(func=reqresp)

    sp = common(sub.add_parser("abort"))
    sp.add_argument("--bytes", type=int, default=20_000)
    sp.set_defaults(func=abort)

    sp = common(sub.add_parser("refused"))
    sp.set_defaults(func=refused)

    sp = common(sub.add_parser("spurious"))
    sp.add_argument("--hold", type=float, default=2.0)
    sp.set_defaults(func=spurious)

    sp = common(sub.add_parser("keepalive"))
    sp.add_argument("--idle", type=float, default=3.5)
    sp.set_defaults(func=keepalive)

    args = p.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()
