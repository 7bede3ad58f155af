#!/usr/bin/env bash
# Generate the test captures in testdata/pcaps/ from real Linux TCP traffic
# between network namespaces, then regenerate their .expected files with
# tshark (scripts/tshark-expected.sh).
#
# Needs root, iproute2, ethtool, nftables, tcpdump, tshark (editcap,
# mergecap), python3. Run: sudo scripts/gen-pcaps.sh [OUTDIR]
#
# Every namespace it makes is named tcpx-gen-<pid>-<role>; all addresses live
# only inside those namespaces (10.250.0.0/16, fd00:250::/32) and all traffic
# stays between them. The EXIT trap deletes the namespaces and kills only the
# processes this script started. The numbers in the captures differ from run
# to run (real kernel traffic); the structure does not, and the .expected
# files are recomputed from whatever was captured.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$HERE")
OUT=${1:-$ROOT/testdata/pcaps}
PY=${PYTHON:-python3}
TRAFFIC=$HERE/traffic.py
PCAPTOOL=$HERE/pcaptool.py

NS_PREFIX=tcpx-gen-$$
TMP=$(mktemp -d /tmp/tcpx-gen.XXXXXX)
PIDS=()        # every background process started by this script
NAMESPACES=()  # namespaces that currently exist (made by this script)

log() { printf '[gen-pcaps %s] %s\n' "$(date +%T)" "$*" >&2; }

cleanup() {
    local rc=$?
    set +e
    # Only PIDs this shell started that are still its running jobs (a PID of
    # a job that already ended may belong to someone else by now).
    local pid running
    running=" $(jobs -pr | tr '\n' ' ') "
    for pid in "${PIDS[@]}"; do
        if [[ $running == *" $pid "* ]]; then
            kill -TERM "$pid" 2>/dev/null
        fi
    done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null; done
    topo_down
    rm -rf "$TMP"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

[[ $(id -u) -eq 0 ]] || { echo "gen-pcaps.sh: must run as root" >&2; exit 1; }
for tool in ip ethtool nft tcpdump tshark editcap mergecap capinfos "$PY"; do
    command -v "$tool" >/dev/null || { echo "gen-pcaps.sh: $tool not found" >&2; exit 1; }
done
mkdir -p "$OUT"

# Namespaces left by an earlier run of this script that was killed hard (its
# PID, in the name, is gone): delete them.
for ns in $(ip netns list | awk '{print $1}' | grep '^tcpx-gen-[0-9]*-' || true); do
    pid=${ns#tcpx-gen-}
    pid=${pid%%-*}
    if ! kill -0 "$pid" 2>/dev/null; then
        echo "gen-pcaps.sh: deleting stale namespace $ns" >&2
        ip netns del "$ns" || true
    fi
done

# ------------------------------------------------------------------ topology
# A topology function sets: NS_C (client ns), NS_S (server ns), SRV_DEV (the
# server's interface, where captures run), C4/S4/C6/S6 (client and server
# addresses). Add a new topology by writing another topo_* function with the
# same outputs; the capture functions below do not care which one is up.

nsx() { local ns=$1; shift; ip netns exec "$ns" "$@"; }

ns_add() {
    local ns=$1
    ip netns add "$ns"
    NAMESPACES+=("$ns")
    ip -n "$ns" link set lo up
    # Quiet IPv6 autoconfiguration noise (router solicitations) a little.
    nsx "$ns" sysctl -qw net.ipv6.conf.all.accept_ra=0 net.ipv6.conf.default.accept_ra=0
}

# veth NS_A DEV_A NS_B DEV_B: a veth pair born directly inside the two
# namespaces (no name is ever used in the root namespace), offloads off so
# captures show wire-sized segments, checksums computed in software.
veth() {
    local ns_a=$1 dev_a=$2 ns_b=$3 dev_b=$4
    ip link add "$dev_a" netns "$ns_a" type veth peer name "$dev_b" netns "$ns_b"
    local pair
    for pair in "$ns_a:$dev_a" "$ns_b:$dev_b"; do
        nsx "${pair%%:*}" ethtool -K "${pair#*:}" tso off gso off gro off tx off >/dev/null
        ip -n "${pair%%:*}" link set "${pair#*:}" up
    done
}

addr() { # addr NS DEV CIDR...
    local ns=$1 dev=$2 cidr
    shift 2
    for cidr in "$@"; do
        if [[ $cidr == *:* ]]; then
            ip -n "$ns" addr add "$cidr" dev "$dev" nodad
        else
            ip -n "$ns" addr add "$cidr" dev "$dev"
        fi
    done
}

# client <-> server on one veth pair
topo_direct() {
    NS_C=$NS_PREFIX-c NS_S=$NS_PREFIX-s
    ns_add "$NS_C"
    ns_add "$NS_S"
    veth "$NS_C" veth-c "$NS_S" veth-s
    C4=10.250.0.1 S4=10.250.0.2 C6=fd00:250::1 S6=fd00:250::2
    addr "$NS_C" veth-c "$C4/24" "$C6/64"
    addr "$NS_S" veth-s "$S4/24" "$S6/64"
    SRV_DEV=veth-s
}

# client <-> router <-> server: drops in the router's forward chain make gaps
# that a capture on the server side misses (lost segments).
topo_routed() {
    NS_C=$NS_PREFIX-c NS_R=$NS_PREFIX-r NS_S=$NS_PREFIX-s
    ns_add "$NS_C"
    ns_add "$NS_R"
    ns_add "$NS_S"
    veth "$NS_C" veth-c "$NS_R" veth-rc
    veth "$NS_R" veth-rs "$NS_S" veth-s
    C4=10.250.1.1 S4=10.250.2.2 C6=fd00:250:1::1 S6=fd00:250:2::2
    addr "$NS_C" veth-c "$C4/24" "$C6/64"
    addr "$NS_R" veth-rc 10.250.1.254/24 fd00:250:1::fe/64
    addr "$NS_R" veth-rs 10.250.2.254/24 fd00:250:2::fe/64
    addr "$NS_S" veth-s "$S4/24" "$S6/64"
    nsx "$NS_R" sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1
    ip -n "$NS_C" route add default via 10.250.1.254
    ip -n "$NS_C" -6 route add default via fd00:250:1::fe
    ip -n "$NS_S" route add default via 10.250.2.254
    ip -n "$NS_S" -6 route add default via fd00:250:2::fe
    SRV_DEV=veth-s
}

topo_down() {
    local ns
    for ns in "${NAMESPACES[@]}"; do
        ip netns del "$ns" 2>/dev/null || true
    done
    NAMESPACES=()
}

# ------------------------------------------------------------------ processes

# bg NAME NS CMD...: start CMD (a program, not a shell function) in namespace
# NS in the background; its PID (ip netns exec execs CMD, so this is the PID
# of CMD itself, and signals reach it) goes to LAST_PID and PIDS.
bg() {
    local name=$1 ns=$2
    shift 2
    rm -f "$TMP/$name.out" "$TMP/$name.err" # no stale "ready" from an earlier capture
    ip netns exec "$ns" "$@" >"$TMP/$name.out" 2>"$TMP/$name.err" &
    LAST_PID=$!
    PIDS+=("$LAST_PID")
}

wait_for() { # wait_for FILE PATTERN: up to 5 s
    local i
    for i in $(seq 1 100); do
        grep -q "$2" "$1" 2>/dev/null && return 0
        sleep 0.05
    done
    echo "gen-pcaps.sh: timed out waiting for '$2' in $1" >&2
    cat "$1" >&2 || true
    return 1
}

# wait_pid PID: wait for a background process started by bg; fail on error.
wait_pid() {
    local pid=$1 rc=0
    wait "$pid" || rc=$?
    if ((rc != 0)); then
        echo "gen-pcaps.sh: process $pid exited with $rc" >&2
        cat "$TMP"/*.err >&2 || true
        return "$rc"
    fi
}

# server NS NAME ARGS...: start a traffic.py server, wait until it listens.
server() {
    local ns=$1 name=$2
    shift 2
    bg "$name" "$ns" timeout 60 "$PY" "$TRAFFIC" serve "$@"
    wait_for "$TMP/$name.out" ready
}

# client NS ARGS...: run a traffic.py client in the foreground.
client() {
    local ns=$1
    shift
    nsx "$ns" timeout 60 "$PY" "$TRAFFIC" "$@"
}

# cap_start FILE NS IFACE [tcpdump options...]: start tcpdump -U -w, wait
# until it listens. Sets CAP_PIDS+=(pid).
CAP_PIDS=()
cap_start() {
    local file=$1 ns=$2 iface=$3
    shift 3
    rm -f "$OUT/$file"
    # --immediate-mode: nothing waits in the ring when tcpdump is stopped. In
    # that mode libpcap gives every ring slot the full snap length, so a
    # full-length capture needs a big buffer (-B, KiB) to take bursts.
    bg "tcpdump-$file" "$ns" tcpdump -Z root -U --immediate-mode -B 65536 -n -i "$iface" \
        -w "$OUT/$file" "$@"
    CAP_PIDS+=("$LAST_PID")
    wait_for "$TMP/tcpdump-$file.err" "listening on"
}

# cap_stop: let the last segments settle, then stop every running tcpdump.
cap_stop() {
    sleep 0.5
    local pid
    for pid in "${CAP_PIDS[@]}"; do kill -INT "$pid"; done
    for pid in "${CAP_PIDS[@]}"; do wait "$pid" || true; done
    CAP_PIDS=()
    # tcpdump reports its drops on exit: a capture that lost packets is no use.
    local f
    for f in "$TMP"/tcpdump-*.err; do
        if grep -Eq '^[1-9][0-9]* packets dropped by (kernel|interface)' "$f"; then
            echo "gen-pcaps.sh: capture dropped packets:" >&2
            cat "$f" >&2
            return 1
        fi
    done
    rm -f "$TMP"/tcpdump-*.err
}

# nft_loss NS CHAIN(input|output|forward) PERCENT MATCH...: random drop rule.
nft_loss() {
    local ns=$1 hook=$2 pct=$3
    shift 3
    nsx "$ns" nft -f - <<EOF
table inet tcpxgen_loss {
    chain c {
        type filter hook $hook priority 0; policy accept;
        $* numgen random mod 100 < $pct drop
    }
}
EOF
}

# ------------------------------------------------------------------ captures

# Bulk transfers with 2% random loss of client->server data on the server's
# input (captured before the drop, so the client's TCP retransmits what the
# capture already saw), snap length 128. Before them, at the same time:
#  - port 5002: the server's pure ACKs are dropped on the client's input for
#    ~1.2 s, so the client retransmits data the server had already
#    acknowledged (spurious retransmissions);
#  - port 5003: the first SYN/ACK is dropped on the client's input, so the
#    SYN and the SYN/ACK are retransmitted (after 1 s).
gen_bulk_loss() {
    log "bulk_loss.pcap"
    topo_direct
    nft_loss "$NS_S" input 2 "tcp dport 5001"
    nsx "$NS_C" nft -f - <<EOF
table inet tcpxgen_synackdrop {
    chain c {
        type filter hook input priority 0; policy accept;
        tcp sport 5003 tcp flags & (syn|ack|fin|rst) == syn|ack drop
    }
}
table inet tcpxgen_ackdrop {
    chain c {
        type filter hook input priority 0; policy accept;
        tcp sport 5002 tcp flags == ack drop
    }
}
EOF
    cap_start bulk_loss.pcap "$NS_S" "$SRV_DEV" -s 128
    server "$NS_S" srv-bulk --addr "$S4" --port 5001 --mode sink --conns 3
    server "$NS_S" srv-hold --addr "$S4" --port 5002 --mode hold --conns 1
    server "$NS_S" srv-rr --addr "$S4" --port 5003 --mode reqresp --conns 1 --resp 2000
    bg cli-spurious "$NS_C" timeout 60 "$PY" "$TRAFFIC" spurious --addr "$S4" --port 5002 --hold 2
    local spur=$LAST_PID
    bg cli-synloss "$NS_C" timeout 60 "$PY" "$TRAFFIC" reqresp --addr "$S4" --port 5003 --conns 1
    local synloss=$LAST_PID
    sleep 0.5 # the SYN is retransmitted after 1 s, and answered then
    nsx "$NS_C" nft delete table inet tcpxgen_synackdrop
    sleep 0.7 # the client's RTO fires a few times (~0.2, 0.6 s) meanwhile
    nsx "$NS_C" nft delete table inet tcpxgen_ackdrop
    client "$NS_C" bulk --addr "$S4" --port 5001 --conns 3 --bytes 300000
    wait_pid "$synloss"
    wait_pid "$spur"
    cap_stop
    topo_down
}

# ~30 short request/response connections, full snap length. The client offers
# the default window scale for 10, a smaller one (SO_RCVBUF 64 KiB) for 10,
# and none (tcp_window_scaling=0) for the last 10, so those SYN/ACKs carry
# none either.
gen_short_conns() {
    log "short_conns.pcap"
    topo_direct
    cap_start short_conns.pcap "$NS_S" "$SRV_DEV"
    server "$NS_S" srv --addr "$S4" --port 8080 --mode reqresp --conns 30 --resp 4000
    client "$NS_C" reqresp --addr "$S4" --port 8080 --conns 10
    client "$NS_C" reqresp --addr "$S4" --port 8080 --conns 10 --rcvbuf 65536
    nsx "$NS_C" sysctl -qw net.ipv4.tcp_window_scaling=0
    client "$NS_C" reqresp --addr "$S4" --port 8080 --conns 10
    wait_pid "$LAST_PID"
    cap_stop
    topo_down
}

# Resets: connections to a closed port (answered by RST), connections the
# client aborts mid-stream with SO_LINGER 0 (sent without DF), connections the
# server aborts after its reply. Full snap length.
gen_refused_aborted() {
    log "refused_aborted.pcap"
    topo_direct
    cap_start refused_aborted.pcap "$NS_S" "$SRV_DEV"
    server "$NS_S" srv-sink --addr "$S4" --port 5001 --mode sink --conns 5
    local sink=$LAST_PID
    server "$NS_S" srv-abort --addr "$S4" --port 5002 --mode abort --conns 5 --resp 3000
    local abrt=$LAST_PID
    client "$NS_C" refused --addr "$S4" --port 5009 --conns 5
    client "$NS_C" abort --addr "$S4" --port 5001 --conns 5 --bytes 20000 --no-df
    client "$NS_C" reqresp --addr "$S4" --port 5002 --conns 5
    wait_pid "$sink"
    wait_pid "$abrt"
    cap_stop
    topo_down
}

# IPv6: request/response with data both ways (2 KB requests, 20 KB replies)
# and one 100 KB upload. Full snap length.
gen_ipv6() {
    log "ipv6.pcap"
    topo_direct
    cap_start ipv6.pcap "$NS_S" "$SRV_DEV"
    server "$NS_S" srv-rr --addr "$S6" --port 8443 --mode reqresp --conns 4 --resp 20000
    local rr=$LAST_PID
    server "$NS_S" srv-sink --addr "$S6" --port 5001 --mode sink --conns 1
    client "$NS_C" reqresp --addr "$S6" --port 8443 --conns 4 --req 2000
    client "$NS_C" bulk --addr "$S6" --port 5001 --conns 1 --bytes 100000 --rcvbuf 32768
    wait_pid "$rr"
    cap_stop
    topo_down
}

# tcpdump -i any in the server namespace, two captures of the same traffic at
# once: any_sll2.pcap (LINUX_SLL2, full snap length) and any_sll.pcap
# (LINUX_SLL, cooked v1, snap length 128). IPv4 and IPv6.
gen_any() {
    log "any_sll2.pcap, any_sll.pcap"
    topo_direct
    cap_start any_sll2.pcap "$NS_S" any -y LINUX_SLL2
    cap_start any_sll.pcap "$NS_S" any -y LINUX_SLL -s 128
    server "$NS_S" srv4 --addr "$S4" --port 8080 --mode reqresp --conns 3 --resp 6000
    server "$NS_S" srv6 --addr "$S6" --port 8080 --mode reqresp --conns 2 --resp 6000
    client "$NS_C" reqresp --addr "$S4" --port 8080 --conns 3
    client "$NS_C" reqresp --addr "$S6" --port 8080 --conns 2
    cap_stop
    topo_down
}

# Stalls: a receiver with a tiny SO_RCVBUF that does not read for 2 s (zero
# windows, window full, zero-window probes), and an idle connection with
# SO_KEEPALIVE at 1 s intervals (keep-alives). Snap length 128.
gen_zero_window() {
    log "zero_window.pcap"
    topo_direct
    cap_start zero_window.pcap "$NS_S" "$SRV_DEV" -s 128
    server "$NS_S" srv-stall --addr "$S4" --port 5001 --mode stall --stall 2 --rcvbuf 4096 --conns 1
    server "$NS_S" srv-hold --addr "$S4" --port 5002 --mode hold --conns 1
    bg cli-ka "$NS_C" timeout 60 "$PY" "$TRAFFIC" keepalive --addr "$S4" --port 5002 --idle 3.5
    local ka=$LAST_PID
    client "$NS_C" bulk --addr "$S4" --port 5001 --conns 1 --bytes 150000
    wait_pid "$ka"
    cap_stop
    topo_down
}

# Bulk transfers through a router namespace that drops 3% of the client's
# segments in its forward chain: the capture on the server side never sees
# them (lost segments, then the retransmissions). Snap length 128.
gen_router_loss() {
    log "router_loss.pcap"
    topo_routed
    nft_loss "$NS_R" forward 3 "ip saddr $C4 tcp dport 5001"
    cap_start router_loss.pcap "$NS_S" "$SRV_DEV" -s 128
    server "$NS_S" srv --addr "$S4" --port 5001 --mode sink --conns 2
    client "$NS_C" bulk --addr "$S4" --port 5001 --conns 2 --bytes 200000
    cap_stop
    topo_down
}

# Files made from the captures above.
gen_derived() {
    log "vlan.pcap, raw_ip.pcap, pcapng_mixed.pcapng, midstream.pcap"
    # 802.1Q on every frame; QinQ on the third handshake's SYN and the frame
    # after it (its SYN/ACK).
    local syn
    syn=$(tshark -n -r "$OUT/short_conns.pcap" -Y 'tcp.flags.syn == 1 && tcp.flags.ack == 0' \
        -T fields -e frame.number 2>/dev/null | sed -n 3p)
    [[ -n $syn ]] || { echo "gen-pcaps.sh: no third SYN in short_conns.pcap" >&2; exit 1; }
    "$PY" "$PCAPTOOL" vlan "$OUT/short_conns.pcap" "$OUT/vlan.pcap" --vid 100 \
        --qinq-frame "$syn" --outer-vid 200 >/dev/null
    # Raw IP (link type 101) from IPv4 (resets) and IPv6 traffic together.
    mergecap -F pcap -w "$TMP/v4v6.pcap" "$OUT/refused_aborted.pcap" "$OUT/ipv6.pcap"
    "$PY" "$PCAPTOOL" raw "$TMP/v4v6.pcap" "$OUT/raw_ip.pcap" >/dev/null
    # pcapng (one Ethernet interface) holding IPv4 and IPv6 connections.
    mergecap -F pcap -w "$TMP/mixed.pcap" "$OUT/short_conns.pcap" "$OUT/ipv6.pcap"
    editcap -F pcapng "$TMP/mixed.pcap" "$OUT/pcapng_mixed.pcapng"
    # A capture that starts mid-connection: bulk_loss without its first 60
    # frames (the first transfers' handshakes and early data).
    local frames
    frames=$(capinfos -c -M "$OUT/bulk_loss.pcap" | awk -F: '/Number of packets/ {gsub(/ /, "", $2); print $2}')
    editcap -r "$OUT/bulk_loss.pcap" "$OUT/midstream.pcap" "61-$frames"
}

start=$SECONDS
if [[ -n ${GEN_ONLY:-} ]]; then
    # For debugging one capture: GEN_ONLY="bulk_loss zero_window" (function
    # names without gen_); the .expected files are regenerated for all files.
    for g in $GEN_ONLY; do "gen_$g"; done
else
    gen_bulk_loss
    gen_short_conns
    gen_refused_aborted
    gen_ipv6
    gen_any
    gen_zero_window
    gen_router_loss
    gen_derived
fi
log "captures done in $((SECONDS - start)) s"

"$HERE/tshark-expected.sh" "$OUT"
log "done in $((SECONDS - start)) s"
ls -l "$OUT" >&2
