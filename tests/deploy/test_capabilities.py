"""The capabilities the chart grants, measured: the exporter runs as the
chart runs it in Kubernetes (uid 0 with only the added capabilities in its
bounding, permitted and effective sets, none inheritable or ambient, and
no_new_privs for allowPrivilegeEscalation: false).

The xdp backend (an exporter built with the xdp feature), on one end of a
veth pair this test makes:

- with exactly XDP_CAPABILITIES (what the chart adds; no NET_RAW) it becomes
  ready, attaches XDP to the interface and TC to its egress, and counts the
  frames sent to it;
- without any one of them it exits with an error before it is ready, and
  leaves nothing attached.

The pcap backend (the chart's default), on lo: with NET_RAW alone it
captures; without it it stops at start.

The pcap backend with the reporter label, on the host end of a veth pair
whose other end is in a network namespace this test makes (a pod as a
bridge CNI leaves it: no host route to its address): with NET_RAW and
NET_ADMIN (what the chart adds for reporter) it reads the pod's address
behind the veth and a connection from the pod reads reporter="client";
with NET_RAW alone the kernel refuses that read (EACCES), and the exporter
still runs, says so once, and reads reporter="node".

Once ready, every thread of the exporter holds the capabilities it kept
only in its permitted set, none effective, inheritable or ambient, and
no_new_privs is set (by the exporter itself: the pcap test does not ask
setpriv for it); started as root with every capability, it also empties its
bounding set of the others.

test_chart.py checks that the chart adds exactly XDP_CAPABILITIES, and
REPORTER_CAPABILITIES for pcap and af-packet with reporter, so a
change to the eBPF programs that needs another capability, or one fewer,
fails here. Needs root, setpriv (util-linux), ip (iproute2), and an exporter
built with the xdp feature: the one TCPX_XDP_EXPORTER names, else
target/release/tcp-exporter if it has the feature (`make test-deploy` builds
it without, so these tests are skipped there unless TCPX_XDP_EXPORTER is set).
The veth pairs and the namespace are removed and every exporter stopped by
PID, also when a test fails.
"""

import os
import re
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
import unittest

from common import REPORTER_CAPABILITIES, EXPORTER, XDP_CAPABILITIES, free_port, http_get, start, stop, tool, wait_for

# Bit numbers in /proc/PID/status CapEff (linux/capability.h).
CAP_BITS = {"SETPCAP": 8, "NET_ADMIN": 12, "NET_RAW": 13, "SYS_ADMIN": 21, "SYS_RESOURCE": 24, "PERFMON": 38,
            "BPF": 39}
FRAMES = 5
# What the exporter prints once it has given up the rest.
KEPT_MESSAGE = "capabilities kept (permitted, raised only to open a capture): "
# The pcap and af-packet backends with the reporter label: NET_RAW for the
# capture, NET_ADMIN to read the addresses of each veth's other end in the
# pod's namespace (the chart's, test_chart.py). The exporter names NET_ADMIN
# on a line of its own then, and says once when it cannot read them.
REPORTER_KEPT_MESSAGE = ("and cap_net_admin, raised only to read the addresses of the pods behind veths "
                         "(the reporter label) once a second")
NO_PEERS_MESSAGE = "cannot read the addresses of the pods behind veths ("
NO_PEERS_REASON = "it needs CAP_NET_ADMIN): `reporter` finds only pods with a host route"
# The pod's side of the veth and the host's, on a /30 of their own: the
# host reaches the pod by the connected route, not a host route.
POD_IP, HOST_IP = "10.98.0.2", "10.98.0.1"


def has_xdp(path):
    """Whether the exporter at `path` was built with the xdp feature. Without
    it, --backend xdp fails before touching anything, and says so."""
    if not path or not os.access(path, os.X_OK):
        return False
    r = subprocess.run([path, "--backend", "xdp", "-i", "tcpx-no-such0", "-p", str(free_port()),
                        "--listen", "127.0.0.1"], capture_output=True, text=True, timeout=30)
    return r.returncode != 0 and "built without the xdp backend" not in r.stderr + r.stdout


def xdp_exporter():
    named = os.environ.get("TCPX_XDP_EXPORTER")
    if named:
        if not has_xdp(named):
            raise unittest.SkipTest("TCPX_XDP_EXPORTER=%s is not an exporter built with the xdp feature" % named)
        return named
    if has_xdp(str(EXPORTER)):
        return str(EXPORTER)
    raise unittest.SkipTest("%s was built without the xdp feature: set TCPX_XDP_EXPORTER to an exporter "
                            "built with it (cargo build --release --features xdp)" % EXPORTER)


def capability_names(mask):
    names = {bit: name for name, bit in CAP_BITS.items()}
    return sorted(names.get(bit, "cap%d" % bit) for bit in range(64) if mask >> bit & 1)


def thread_privileges(pid):
    """For each thread of the process: its capability sets (names) and
    no_new_privs, from /proc/PID/task/TID/status."""
    out = {}
    for tid in os.listdir("/proc/%d/task" % pid):
        try:
            with open("/proc/%d/task/%s/status" % (pid, tid)) as f:
                status = f.read()
        except OSError:
            continue  # a thread that has just ended
        sets = {key: capability_names(int(re.search(r"(?m)^%s:\s*([0-9a-f]+)$" % key, status).group(1), 16))
                for key in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")}
        sets["NoNewPrivs"] = int(re.search(r"(?m)^NoNewPrivs:\s*(\d+)$", status).group(1))
        out[tid] = sets
    return out


class KeptOnlyPermitted:
    """Checks shared by the backends' tests."""

    def ready_or_exited(self, proc, port):
        """Waits until the exporter started as `proc` is ready ("ready") or
        has exited ("exited"); stops it when the test ends."""
        self.addCleanup(stop, proc)

        def outcome():
            if proc.poll() is not None:
                return "exited"
            status, _ = http_get("http://127.0.0.1:%d/readyz" % port, timeout=1)
            return "ready" if status == 200 else None
        return wait_for("the exporter to become ready or exit", outcome, timeout=30)

    def log_of(self, log):
        with open(log) as f:
            return f.read()

    def assertKeptOnlyPermitted(self, pid, kept, bounding):
        """Every thread: `kept` permitted, nothing effective, inheritable or
        ambient, `bounding` as the bounding set, no_new_privs on. A thread
        raises its permitted set for the moment it opens a capture or, with
        the reporter label, reads the veths' other ends once a second: a
        snapshot that differs is taken again, up to 5 times 0.1 s apart,
        so only sets that stay so fail."""
        expected = {"CapInh": [], "CapPrm": sorted(kept), "CapEff": [], "CapBnd": sorted(bounding), "CapAmb": [],
                    "NoNewPrivs": 1}
        for _ in range(5):
            threads = thread_privileges(pid)
            if all(sets == expected for sets in threads.values()):
                break
            time.sleep(0.1)
        self.assertGreater(len(threads), 1, "a capture thread and the HTTP thread at least")
        for tid, sets in threads.items():
            with self.subTest(thread=tid):
                self.assertEqual(sets, expected)


def links(pid):
    """The bpf links the process holds, as (link_type, ifindex, attach_type)."""
    out = []
    fd_dir = "/proc/%d/fdinfo" % pid
    for fd in os.listdir(fd_dir):
        try:
            with open(os.path.join(fd_dir, fd)) as f:
                info = dict(line.split(":", 1) for line in f.read().splitlines() if ":" in line)
        except OSError:
            continue
        if "link_type" in info:
            out.append((info["link_type"].strip(), info.get("ifindex", "").strip(),
                        info.get("attach_type", "").strip()))
    return out


def tcp_syn_frame(dst_mac, src_mac):
    """Ethernet + IPv4 + TCP SYN, 10.99.0.1:40000 -> 10.99.0.2:80, checksums right."""
    def checksum(b):
        if len(b) % 2:
            b += b"\0"
        s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
        s = (s >> 16) + (s & 0xFFFF)
        s += s >> 16
        return ~s & 0xFFFF
    src, dst = socket.inet_aton("10.99.0.1"), socket.inet_aton("10.99.0.2")
    tcp = struct.pack("!HHIIBBHHH", 40000, 80, 1000, 0, 5 << 4, 0x02, 64240, 0, 0)
    tcp = tcp[:16] + struct.pack("!H", checksum(src + dst + struct.pack("!BBH", 0, 6, len(tcp)) + tcp)) + tcp[18:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 1, 0x4000, 64, 6, 0, src, dst)
    ip = ip[:10] + struct.pack("!H", checksum(ip)) + ip[12:]
    mac = lambda m: bytes.fromhex(m.replace(":", ""))  # noqa: E731
    return mac(dst_mac) + mac(src_mac) + b"\x08\x00" + ip + tcp


class XdpCapabilities(unittest.TestCase, KeptOnlyPermitted):
    @classmethod
    def setUpClass(cls):
        if os.geteuid() != 0:
            raise unittest.SkipTest("needs root (a veth pair, XDP programs)")
        cls.setpriv, cls.ip = tool("setpriv"), tool("ip") or shutil.which("ip", path="/usr/sbin:/sbin")
        if not cls.setpriv or not cls.ip:
            raise unittest.SkipTest("needs setpriv (util-linux) and ip (iproute2)")
        cls.exporter = xdp_exporter()
        cls.tmp = tempfile.mkdtemp(prefix="tcp-exporter-caps-")
        cls.addClassCleanup(shutil.rmtree, cls.tmp, ignore_errors=True)
        # Names of at most 15 bytes, this run's own.
        cls.dev, cls.peer = "tcpxcap%da" % (os.getpid() % 10000), "tcpxcap%db" % (os.getpid() % 10000)
        subprocess.run([cls.ip, "link", "add", cls.dev, "type", "veth", "peer", "name", cls.peer],
                       check=True, capture_output=True)
        cls.addClassCleanup(subprocess.run, [cls.ip, "link", "del", cls.dev], capture_output=True)
        for dev in (cls.dev, cls.peer):
            subprocess.run([cls.ip, "link", "set", dev, "up"], check=True, capture_output=True)
        with open("/sys/class/net/%s/ifindex" % cls.dev) as f:
            cls.ifindex = f.read().strip()

    def run_with(self, caps):
        """Starts the exporter under setpriv with only `caps`; returns
        (process, port, log path, "ready" or "exited")."""
        port = free_port()
        bounding = ",".join(["-all"] + ["+" + c.lower() for c in caps])
        log = os.path.join(self.tmp, "exporter-%s.log" % ("-".join(caps) or "none"))
        proc = start([self.setpriv, "--no-new-privs", "--inh-caps=-all", "--ambient-caps=-all",
                      "--bounding-set=" + bounding, self.exporter, "--backend", "xdp", "-i", self.dev,
                      "-p", port, "--listen", "127.0.0.1"], log)
        return proc, port, log, self.ready_or_exited(proc, port)

    def xdp_attached(self):
        out = subprocess.run([self.ip, "-d", "link", "show", "dev", self.dev], capture_output=True, text=True,
                             check=True).stdout
        return re.search(r"prog/xdp id \d+ name (\w+)", out)

    def test_chart_capabilities_suffice(self):
        proc, port, log, outcome = self.run_with(XDP_CAPABILITIES)
        self.assertEqual(outcome, "ready", self.log_of(log))
        # The three were needed to attach; afterwards they are only
        # permitted (the bounding set is setpriv's: no SETPCAP to drop from it).
        self.assertKeptOnlyPermitted(proc.pid, XDP_CAPABILITIES, XDP_CAPABILITIES)
        self.assertIn(KEPT_MESSAGE + "cap_bpf,cap_net_admin,cap_perfmon", self.log_of(log))
        attached = self.xdp_attached()
        self.assertIsNotNone(attached, "no XDP program on %s" % self.dev)
        self.assertEqual(attached.group(1), "tcpx_xdp")
        held = links(proc.pid)
        self.assertTrue(any(t == "xdp" and i == self.ifindex for t, i, _ in held), held)
        # TCX (a bpf link) where the kernel has it, else a clsact filter.
        tc = subprocess.run([tool("tc") or "tc", "filter", "show", "dev", self.dev, "egress"],
                            capture_output=True, text=True).stdout
        tcx = any(t == "tcx" and i == self.ifindex and "egress" in a for t, i, a in held)
        self.assertTrue(tcx or "tcpx_tc_egress" in tc,
                        "no TC egress program on %s: links %s, tc %r" % (self.dev, held, tc))
        # Records come through the ring buffer with no more than these.
        with open("/sys/class/net/%s/address" % self.dev) as f:
            dst = f.read().strip()
        with open("/sys/class/net/%s/address" % self.peer) as f:
            src = f.read().strip()
        with socket.socket(socket.AF_PACKET, socket.SOCK_RAW) as s:
            s.bind((self.peer, 0))
            for _ in range(FRAMES):
                s.send(tcp_syn_frame(dst, src))
        pattern = re.compile(r'(?m)^tcp_exporter_capture_packets_total\{interface="%s"\} (\d+)' % self.dev)

        def counted():
            m = pattern.search(http_get("http://127.0.0.1:%d/metrics" % port)[1])
            return m and int(m.group(1)) >= FRAMES
        wait_for("%d frames counted on %s" % (FRAMES, self.dev), counted, timeout=10)
        stop(proc)
        self.assertEqual(proc.returncode, 0, self.log_of(log))
        self.assertIsNone(self.xdp_attached(), "XDP left on %s after a clean stop" % self.dev)

    def test_each_chart_capability_is_needed(self):
        for dropped in XDP_CAPABILITIES:
            with self.subTest(without=dropped):
                caps = [c for c in XDP_CAPABILITIES if c != dropped]
                proc, _, log, outcome = self.run_with(caps)
                self.assertEqual(outcome, "exited", "started without %s" % dropped)
                self.assertNotEqual(proc.returncode, 0)
                self.assertIn("cannot open %s (xdp)" % self.dev, self.log_of(log))
                self.assertIsNone(self.xdp_attached(), "XDP left on %s" % self.dev)


class PcapCapabilities(unittest.TestCase, KeptOnlyPermitted):
    """The pcap backend (the chart's default) on lo, under setpriv as the
    chart runs it but without --no-new-privs, so that no_new_privs is seen
    to be the exporter's own doing."""

    @classmethod
    def setUpClass(cls):
        if os.geteuid() != 0:
            raise unittest.SkipTest("needs root (capabilities to give and take)")
        cls.setpriv = tool("setpriv")
        if not cls.setpriv:
            raise unittest.SkipTest("needs setpriv (util-linux)")
        if not EXPORTER.exists():
            raise AssertionError("%s missing: run `cargo build --release`" % EXPORTER)
        cls.tmp = tempfile.mkdtemp(prefix="tcp-exporter-caps-pcap-")
        cls.addClassCleanup(shutil.rmtree, cls.tmp, ignore_errors=True)

    def run_with(self, caps, name):
        """The exporter on lo with only `caps` (None: as root with every
        capability, no setpriv); returns (process, port, log, outcome)."""
        port = free_port()
        log = os.path.join(self.tmp, "exporter-%s.log" % name)
        command = [EXPORTER, "-i", "lo", "-p", port, "--listen", "127.0.0.1"]
        if caps is not None:
            bounding = ",".join(["-all"] + ["+" + c.lower() for c in caps])
            command = [self.setpriv, "--inh-caps=-all", "--ambient-caps=-all", "--bounding-set=" + bounding] + command
        proc = start(command, log)
        return proc, port, log, self.ready_or_exited(proc, port)

    def test_net_raw_suffices_and_is_kept_only_permitted(self):
        proc, port, log, outcome = self.run_with(["NET_RAW"], "net_raw")
        self.assertEqual(outcome, "ready", self.log_of(log))
        self.assertKeptOnlyPermitted(proc.pid, ["NET_RAW"], ["NET_RAW"])
        self.assertIn(KEPT_MESSAGE + "cap_net_raw", self.log_of(log))
        # It captures: the HTTP requests to it are TCP on lo.
        pattern = re.compile(r'(?m)^tcp_exporter_capture_packets_total\{interface="lo"\} (\d+)')

        def counted():
            m = pattern.search(http_get("http://127.0.0.1:%d/metrics" % port)[1])
            return m and int(m.group(1)) > 0
        wait_for("packets counted on lo", counted, timeout=10)
        stop(proc)
        self.assertEqual(proc.returncode, 0, self.log_of(log))

    def test_without_net_raw_it_stops_at_start(self):
        proc, _, log, outcome = self.run_with([], "none")
        self.assertEqual(outcome, "exited")
        self.assertNotEqual(proc.returncode, 0)
        self.assertIn("CAP_NET_RAW", self.log_of(log))

    def test_as_root_with_every_capability_the_bounding_set_is_emptied_too(self):
        proc, _, log, outcome = self.run_with(None, "root")
        self.assertEqual(outcome, "ready", self.log_of(log))
        # With SETPCAP the exporter drops the others from its bounding set.
        self.assertKeptOnlyPermitted(proc.pid, ["NET_RAW"], ["NET_RAW"])


class ReporterCapabilities(unittest.TestCase, KeptOnlyPermitted):
    """The pcap backend with --labels reporter,client,server on the host
    end of a veth pair whose other end is a pod's eth0 in a namespace of
    its own, under setpriv as PcapCapabilities runs it."""

    @classmethod
    def setUpClass(cls):
        if os.geteuid() != 0:
            raise unittest.SkipTest("needs root (a network namespace, a veth pair, capabilities to give and take)")
        cls.setpriv, cls.ip = tool("setpriv"), tool("ip") or shutil.which("ip", path="/usr/sbin:/sbin")
        if not cls.setpriv or not cls.ip:
            raise unittest.SkipTest("needs setpriv (util-linux) and ip (iproute2)")
        if not EXPORTER.exists():
            raise AssertionError("%s missing: run `cargo build --release`" % EXPORTER)
        cls.tmp = tempfile.mkdtemp(prefix="tcp-exporter-caps-reporter-")
        cls.addClassCleanup(shutil.rmtree, cls.tmp, ignore_errors=True)
        # Names of at most 15 bytes, this run's own.
        tag = os.getpid() % 10000
        cls.netns, cls.dev, peer = "tcpxpod%d" % tag, "tcpxrep%da" % tag, "tcpxrep%db" % tag

        def ip(*args):
            subprocess.run([cls.ip] + list(args), check=True, capture_output=True)
        ip("netns", "add", cls.netns)
        cls.addClassCleanup(subprocess.run, [cls.ip, "netns", "del", cls.netns], capture_output=True)
        ip("link", "add", cls.dev, "type", "veth", "peer", "name", peer, "netns", cls.netns)
        cls.addClassCleanup(subprocess.run, [cls.ip, "link", "del", cls.dev], capture_output=True)
        ip("addr", "add", HOST_IP + "/30", "dev", cls.dev)
        ip("link", "set", cls.dev, "up")
        ip("-n", cls.netns, "addr", "add", POD_IP + "/30", "dev", peer)
        ip("-n", cls.netns, "link", "set", peer, "up")

    def run_with(self, caps, name):
        """The exporter on the veth's host end with only `caps`; returns
        (process, port, log, outcome)."""
        port = free_port()
        log = os.path.join(self.tmp, "exporter-%s.log" % name)
        bounding = ",".join(["-all"] + ["+" + c.lower() for c in caps])
        proc = start([self.setpriv, "--inh-caps=-all", "--ambient-caps=-all", "--bounding-set=" + bounding,
                      EXPORTER, "-i", self.dev, "-p", port, "--listen", "127.0.0.1",
                      "--labels", "reporter,client,server"], log)
        return proc, port, log, self.ready_or_exited(proc, port)

    def reporter_of_a_connection_from_the_pod(self, port):
        """Connects from the pod to a listener of the host's, through the
        veth, and returns the reporter of the series the exporter counts it
        in (the pod is the client)."""
        client = ("import socket\n"
                  "s = socket.create_connection((%r, %%d), timeout=10)\n"
                  "s.sendall(b'x'); s.recv(1); s.close()\n" % HOST_IP)
        with socket.socket() as server:
            server.bind((HOST_IP, 0))
            server.listen()
            server.settimeout(10)
            proc = subprocess.Popen([self.ip, "netns", "exec", self.netns, sys.executable, "-c",
                                     client % server.getsockname()[1]])
            try:
                conn, _ = server.accept()
                with conn:
                    conn.recv(1)
                    conn.sendall(b"y")
            finally:
                self.assertEqual(proc.wait(timeout=10), 0, "the pod's client failed")
        pattern = re.compile(r'(?m)^tcp_packets_total\{([^}]*client="%s"[^}]*)\}' % re.escape(POD_IP))

        def reporters():
            found = {re.search(r'reporter="([^"]*)"', labels).group(1)
                     for labels in pattern.findall(http_get("http://127.0.0.1:%d/metrics" % port)[1])}
            return found or None
        return wait_for("the pod's connection counted on %s" % self.dev, reporters, timeout=10)

    def test_net_admin_finds_the_pod_behind_the_veth_and_is_kept_only_permitted(self):
        proc, port, log, outcome = self.run_with(REPORTER_CAPABILITIES, "net_raw-net_admin")
        self.assertEqual(outcome, "ready", self.log_of(log))
        self.assertKeptOnlyPermitted(proc.pid, REPORTER_CAPABILITIES, REPORTER_CAPABILITIES)
        self.assertEqual(self.reporter_of_a_connection_from_the_pod(port), {"client"})
        # NET_ADMIN on a line of its own, after the capture's.
        lines = self.log_of(log).splitlines()
        self.assertIn("tcp-exporter: " + KEPT_MESSAGE + "cap_net_raw", lines)
        self.assertIn("tcp-exporter: " + REPORTER_KEPT_MESSAGE, lines)
        self.assertNotIn(NO_PEERS_MESSAGE, self.log_of(log))
        stop(proc)
        self.assertEqual(proc.returncode, 0, self.log_of(log))

    def test_without_net_admin_it_runs_says_so_once_and_reporter_reads_node(self):
        proc, port, log, outcome = self.run_with(["NET_RAW"], "net_raw")
        self.assertEqual(outcome, "ready", self.log_of(log))
        self.assertKeptOnlyPermitted(proc.pid, ["NET_RAW"], ["NET_RAW"])
        # No host route to the pod: without its address behind the veth
        # the connection is the node's.
        self.assertEqual(self.reporter_of_a_connection_from_the_pod(port), {"node"})
        text = self.log_of(log)
        self.assertIn("tcp-exporter: " + KEPT_MESSAGE + "cap_net_raw", text.splitlines())
        self.assertNotIn(REPORTER_KEPT_MESSAGE, text)
        # The kernel's answer, once, though the exporter tries every second.
        self.assertEqual(text.count(NO_PEERS_MESSAGE), 1, text)
        self.assertIn(NO_PEERS_MESSAGE + "Permission denied (os error 13); " + NO_PEERS_REASON, text)
        self.assertIsNone(proc.poll(), text)


if __name__ == "__main__":
    unittest.main()
