//! Two nodes as CNIs build them, each a network namespace, joined by a
//! VXLAN overlay (VNI 78, UDP 4789) over a veth "wire". Each node has two
//! pods, each a namespace behind a veth: one routed (the host side carries
//! the pod's address as a host route, as Calico, the AWS VPC CNI and GKE
//! do), one behind a bridge (as Flannel and the bridge plugin do: no host
//! route, the pod found by its veth peer's namespace). Three groups of
//! connections: node 1's routed pod A to its bridged pod C, C to node 2's
//! routed pod D, node 2's bridged pod E to A.
//!
//! On node 1, captured on the pods' interfaces (`-i 'tp*'`, as the chart's
//! `pods` mode), each connection is counted once per reporter: as the
//! client's on the client pod's interface, as the server's on the server
//! pod's, each equal to tshark on that interface, with the pcap, af-packet
//! and xdp backends alike. On the uplink (the wire), the connections that
//! cross nodes, unwrapped, as `node`. On `any`, once per interface each
//! crosses: the multiples the README states.
//!
//! Needs root, iproute2, ethtool, tcpdump, tshark, curl, python3;
//! `TCPX_SKIP_LIVE=1` skips.

mod common;

use std::io::BufRead;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use common::agreement::{assert_agree, live_differences, tshark_counts};
use common::{sum_metric_where, TempDir};

/// Node 1's routed pod, its bridged pod; node 2's.
const POD_A: &str = "10.78.1.2";
const POD_C: &str = "10.78.2.2";
const POD_D: &str = "10.79.1.2";
const POD_E: &str = "10.79.2.2";
const CONNECTIONS: usize = 6;
/// The wire's and the overlay's interfaces on node 1 (names of node 2's
/// differ only in their digit).
const WIRE: &str = "wire1";
const OVERLAY: &str = "tvx1";

/// Runs `ip` with `args`, which must succeed.
fn ip(args: &[&str]) {
    common::tool("ip", args);
}

/// `program args` in namespace `ns`, which must succeed.
fn exec(ns: &str, program: &str, args: &[&str]) {
    let out = Command::new("ip")
        .args(["netns", "exec", ns, program])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{program} {args:?} in {ns}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Segments of wire size: a veth would pass 64 KB ones.
fn offloads_off(ns: &str, dev: &str) {
    exec(
        ns,
        "ethtool",
        &["-K", dev, "tso", "off", "gso", "off", "gro", "off"],
    );
}

/// How a pod is attached to its node.
#[derive(Clone, Copy)]
enum Attach {
    /// A host route to the pod's address on its veth; the host side has
    /// the gateway's address (as Calico's 169.254.1.1).
    Routed,
    /// The veth is a port of the node's bridge, which has the gateway's
    /// address on the pod's /24.
    Bridged,
}

/// The namespaces of both nodes and their pods, removed when dropped, with
/// every process started in them.
struct Cluster {
    namespaces: Vec<String>,
    children: Vec<Child>,
}

impl Cluster {
    fn new() -> Cluster {
        let mut cluster = Cluster {
            namespaces: Vec::new(),
            children: Vec::new(),
        };
        let n1 = cluster.namespace("n1");
        let n2 = cluster.namespace("n2");
        for n in [&n1, &n2] {
            exec(n, "sysctl", &["-qw", "net.ipv4.ip_forward=1"]);
        }
        // The wire, and the overlay over it; a larger MTU on the wire so
        // that the overlay carries 1500-byte packets unfragmented.
        ip(&[
            "-n", &n1, "link", "add", WIRE, "type", "veth", "peer", "name", "wire2", "netns", &n2,
        ]);
        for (n, wire, vx, own, other, overlay_ip) in [
            (
                &n1,
                WIRE,
                OVERLAY,
                "192.168.78.1",
                "192.168.78.2",
                "10.77.0.1",
            ),
            (
                &n2,
                "wire2",
                "tvx2",
                "192.168.78.2",
                "192.168.78.1",
                "10.77.0.2",
            ),
        ] {
            ip(&["-n", n, "link", "set", wire, "mtu", "1600", "up"]);
            ip(&["-n", n, "addr", "add", &format!("{own}/24"), "dev", wire]);
            ip(&[
                "-n", n, "link", "add", vx, "type", "vxlan", "id", "78", "dstport", "4789",
                "local", own, "remote", other, "dev", wire,
            ]);
            ip(&["-n", n, "link", "set", vx, "mtu", "1500", "up"]);
            ip(&[
                "-n",
                n,
                "addr",
                "add",
                &format!("{overlay_ip}/24"),
                "dev",
                vx,
            ]);
            offloads_off(n, wire);
            offloads_off(n, vx);
        }
        ip(&[
            "-n",
            &n1,
            "route",
            "add",
            "10.79.0.0/16",
            "via",
            "10.77.0.2",
        ]);
        ip(&[
            "-n",
            &n2,
            "route",
            "add",
            "10.78.0.0/16",
            "via",
            "10.77.0.1",
        ]);
        cluster.pod(&n1, "pa", "tpa", POD_A, Attach::Routed);
        cluster.pod(&n1, "pc", "tpc", POD_C, Attach::Bridged);
        cluster.pod(&n2, "pd", "tpd", POD_D, Attach::Routed);
        cluster.pod(&n2, "pe", "tpe", POD_E, Attach::Bridged);
        cluster
    }

    /// A new namespace, `tcpx-NAME-PID`, with its loopback up.
    fn namespace(&mut self, name: &str) -> String {
        let ns = format!("tcpx-{name}-{}", std::process::id());
        ip(&["netns", "add", &ns]);
        self.namespaces.push(ns.clone());
        ip(&["-n", &ns, "link", "set", "lo", "up"]);
        ns
    }

    /// A pod `name` with address `addr` on `node`, behind the veth
    /// `host_if`.
    fn pod(&mut self, node: &str, name: &str, host_if: &str, addr: &str, attach: Attach) {
        let pod = self.namespace(name);
        ip(&[
            "-n", node, "link", "add", host_if, "type", "veth", "peer", "name", "eth0", "netns",
            &pod,
        ]);
        let gateway = match attach {
            Attach::Routed => {
                let gateway = "10.78.0.1";
                ip(&[
                    "-n",
                    node,
                    "addr",
                    "add",
                    &format!("{gateway}/32"),
                    "dev",
                    host_if,
                ]);
                ip(&["-n", node, "link", "set", host_if, "up"]);
                // The CNI's host route: the pod's address, on its veth.
                ip(&[
                    "-n",
                    node,
                    "route",
                    "add",
                    &format!("{addr}/32"),
                    "dev",
                    host_if,
                ]);
                ip(&[
                    "-n",
                    &pod,
                    "addr",
                    "add",
                    &format!("{addr}/32"),
                    "dev",
                    "eth0",
                ]);
                ip(&["-n", &pod, "link", "set", "eth0", "up"]);
                ip(&["-n", &pod, "route", "add", gateway, "dev", "eth0"]);
                gateway.to_string()
            }
            Attach::Bridged => {
                // A bridge of the pod's own (one bridged pod a node
                // here), with the first address of the pod's /24.
                let bridge = format!("tbr{}", &host_if[2..]);
                let prefix = addr.rsplit_once('.').unwrap().0;
                let gateway = format!("{prefix}.1");
                ip(&["-n", node, "link", "add", &bridge, "type", "bridge"]);
                ip(&[
                    "-n",
                    node,
                    "addr",
                    "add",
                    &format!("{gateway}/24"),
                    "dev",
                    &bridge,
                ]);
                ip(&["-n", node, "link", "set", &bridge, "up"]);
                ip(&["-n", node, "link", "set", host_if, "master", &bridge, "up"]);
                ip(&[
                    "-n",
                    &pod,
                    "addr",
                    "add",
                    &format!("{addr}/24"),
                    "dev",
                    "eth0",
                ]);
                ip(&["-n", &pod, "link", "set", "eth0", "up"]);
                gateway
            }
        };
        ip(&["-n", &pod, "route", "add", "default", "via", &gateway]);
        offloads_off(node, host_if);
        offloads_off(&pod, "eth0");
    }

    fn spawn_in(&mut self, ns: &str, program: &str, args: &[&str], stdout: Stdio) -> usize {
        let child = Command::new("ip")
            .args(["netns", "exec", ns, program])
            .args(args)
            .stdout(stdout)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        self.children.push(child);
        self.children.len() - 1
    }

    fn ns(&self, name: &str) -> String {
        format!("tcpx-{name}-{}", std::process::id())
    }

    /// The exporter in node 1's namespace, on `interfaces` (its -i
    /// values), with `backend`'s arguments; returns once it captures on
    /// each of `up`.
    fn exporter(&mut self, interfaces: &[&str], backend: &[&str], up: &[&str], port: u16) {
        let node = self.ns("n1");
        let port_text = port.to_string();
        let mut args = vec!["-p", &port_text, "--listen", "127.0.0.1"];
        args.extend(["--labels", "interface,reporter,client,server,server_port"]);
        for i in interfaces {
            args.extend(["-i", i]);
        }
        args.extend(backend);
        self.spawn_in(
            &node,
            env!("CARGO_BIN_EXE_tcp-exporter"),
            &args,
            Stdio::null(),
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        while !up.iter().all(|i| {
            sum_metric_where(
                &self.metrics(port),
                "tcp_exporter_interface_up",
                "interface",
                i,
            ) == 1.0
        }) {
            assert!(
                Instant::now() < deadline,
                "the exporter on {interfaces:?} did not start"
            );
            sleep(Duration::from_millis(100));
        }
    }

    fn metrics(&self, port: u16) -> String {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.ns("n1"), "curl", "-sf"])
            .arg(format!("http://127.0.0.1:{port}/metrics"))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Scrapes until `ready` holds of the text or 10 s have passed.
    fn metrics_once(&self, port: u16, ready: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let text = self.metrics(port);
            if ready(&text) || Instant::now() > deadline {
                return text;
            }
            sleep(Duration::from_millis(100));
        }
    }

    /// tcpdump writing node 1's `dev` to a file in `dir`, once it listens.
    fn tcpdump(&mut self, dev: &str, dir: &TempDir) -> (usize, PathBuf) {
        let file = dir.path(&format!("{dev}.pcap"));
        let path = file.to_str().unwrap();
        let args = ["-i", dev, "-n", "--immediate-mode", "-U", "-w", path];
        let i = self.spawn_in(&self.ns("n1"), "tcpdump", &args, Stdio::null());
        let mut line = String::new();
        std::io::BufReader::new(self.children[i].stderr.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert!(line.contains("listening"), "tcpdump on {dev}: {line}");
        (i, file)
    }

    /// An echo server in pod `name`, on ports 5001 and 5002.
    fn echo_server(&mut self, name: &str) {
        let i = self.spawn_in(
            &self.ns(name),
            "python3",
            &["-c", common::ECHO_SERVER],
            Stdio::piped(),
        );
        let mut ready = String::new();
        std::io::BufReader::new(self.children[i].stdout.take().unwrap())
            .read_line(&mut ready)
            .unwrap();
        assert_eq!(ready.trim(), "ready");
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        // Pods first: their veths go with them.
        for ns in self.namespaces.iter().rev() {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}

/// The lines of an exposition whose `reporter` is `reporter`.
fn reported_by(text: &str, reporter: &str) -> String {
    let want = format!("reporter=\"{reporter}\"");
    text.lines()
        .filter(|l| l.contains(&want))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The lines of an exposition whose `interface` is `interface`.
fn on_interface(text: &str, interface: &str) -> String {
    let want = format!("interface=\"{interface}\"");
    text.lines()
        .filter(|l| l.contains(&want))
        .collect::<Vec<_>>()
        .join("\n")
}

/// TCP packets of the series with `label` = `value`.
fn packets_where(text: &str, label: &str, value: &str) -> f64 {
    sum_metric_where(text, "tcp_packets_total", label, value)
}

/// Connections to `server` port `port`, `count` of them, each sending
/// 64 KiB and reading it back.
const CLIENT: &str = r#"
import socket, sys
data = bytes(range(256)) * 256
for _ in range(int(sys.argv[3])):
    s = socket.create_connection((sys.argv[1], int(sys.argv[2])))
    s.sendall(data)
    got = 0
    while got < len(data):
        got += len(s.recv(65536))
    s.close()
print("done", flush=True)
"#;

#[test]
fn pod_interfaces_count_each_connection_once_per_reporter() {
    if std::env::var("TCPX_SKIP_LIVE").as_deref() == Ok("1") {
        eprintln!("topology test: skipped (TCPX_SKIP_LIVE=1)");
        return;
    }
    let dir = TempDir::new("topology");
    let mut cluster = Cluster::new();
    for pod in ["pa", "pc", "pd"] {
        cluster.echo_server(pod);
    }
    let captures: Vec<(usize, PathBuf)> = ["tpa", "tpc"]
        .iter()
        .map(|dev| cluster.tcpdump(dev, &dir))
        .collect();
    // The pods' interfaces with each backend (xdp attaches to named
    // interfaces, not globs), the uplink, and `any`.
    let mut pods = vec![
        ("pcap", common::free_port()),
        ("af-packet", common::free_port()),
    ];
    let both = ["tpa", "tpc"];
    cluster.exporter(&["tp*"], &[], &both, pods[0].1);
    cluster.exporter(&["tp*"], &["--backend", "af-packet"], &both, pods[1].1);
    if cfg!(feature = "xdp") {
        pods.push(("xdp", common::free_port()));
        let xdp = ["--backend", "xdp", "--xdp-mode", "native"];
        cluster.exporter(&both, &xdp, &both, pods[2].1);
    }
    let uplink_port = common::free_port();
    cluster.exporter(&[WIRE], &[], &[WIRE], uplink_port);
    let any_port = common::free_port();
    cluster.exporter(&["any"], &[], &["any"], any_port);

    // A to C on node 1; C to D across the overlay; E on node 2 to A.
    for (pod, server, port) in [
        ("pa", POD_C, "5001"),
        ("pc", POD_D, "5001"),
        ("pe", POD_A, "5002"),
    ] {
        let client = Command::new("ip")
            .args(["netns", "exec", &cluster.ns(pod), "python3", "-c", CLIENT])
            .args([server, port, &CONNECTIONS.to_string()])
            .output()
            .unwrap();
        assert!(
            client.status.success(),
            "client in {pod}: {}",
            String::from_utf8_lossy(&client.stderr)
        );
    }
    sleep(Duration::from_millis(300));
    for (i, _) in &captures {
        let pid = cluster.children[*i].id() as i32;
        // SAFETY: kill(2) on a child this test started.
        unsafe { libc::kill(pid, libc::SIGINT) };
        cluster.children[*i].wait().unwrap();
    }

    // tshark on each pod interface: all of it, and each group of
    // connections (by the other pod's address).
    let (tpa, tpc) = (&captures[0].1, &captures[1].1);
    let tshark = [tshark_counts(tpa), tshark_counts(tpc)];
    let frames = |file: &PathBuf, other: &str| {
        common::tshark_frames(file, &format!("tcp && ip.addr == {other}"))
    };
    let a_to_c = frames(tpa, POD_C);
    let e_to_a = frames(tpa, POD_E);
    let c_to_d = frames(tpc, POD_D);
    assert!(a_to_c > 100.0 && e_to_a > 100.0 && c_to_d > 100.0);
    assert_eq!(a_to_c, frames(tpc, POD_A), "both veths carry A to C");

    // Pod interfaces: on each, the local pod's connections as client
    // reported as client, as server as server, each group exactly what
    // tshark counted there; nothing as node.
    let mut failures = Vec::new();
    for (backend, port) in pods {
        let text = cluster.metrics_once(port, |t| {
            packets_where(t, "interface", "tpa") + packets_where(t, "interface", "tpc")
                >= 2.0 * a_to_c + e_to_a + c_to_d
        });
        // Live: what depends on neither order nor time must be equal.
        for (i, dev) in ["tpa", "tpc"].iter().enumerate() {
            failures.extend(live_differences(
                &format!("{backend} on {dev}"),
                &tshark[i],
                &on_interface(&text, dev),
            ));
        }
        for (reporter, dev, other_is, other, want) in [
            ("client", "tpa", "server", POD_C, a_to_c),
            ("server", "tpa", "client", POD_E, e_to_a),
            ("server", "tpc", "client", POD_A, a_to_c),
            ("client", "tpc", "server", POD_D, c_to_d),
        ] {
            let seen = on_interface(&reported_by(&text, reporter), dev);
            assert_eq!(
                packets_where(&seen, other_is, other),
                want,
                "{backend}: on {dev} as {reporter}, with {other_is} {other}"
            );
        }
        assert_eq!(packets_where(&text, "reporter", "node"), 0.0, "{backend}");
        assert_eq!(
            sum_metric_where(&text, "tcp_connections_opened_total", "reporter", "client"),
            2.0 * CONNECTIONS as f64,
            "{backend}: A's and C's connections, as their clients"
        );
    }
    assert_agree(&failures);

    // The uplink: the two groups that cross nodes, once, unwrapped, as
    // the node's.
    let uplink = cluster.metrics_once(uplink_port, |t| {
        packets_where(t, "interface", WIRE) >= c_to_d + e_to_a
    });
    assert_eq!(packets_where(&uplink, "interface", WIRE), c_to_d + e_to_a);
    assert_eq!(packets_where(&uplink, "reporter", "node"), c_to_d + e_to_a);
    assert_eq!(
        sum_metric_where(
            &uplink,
            "tcp_exporter_tunnel_packets_total",
            "kind",
            "vxlan"
        ),
        c_to_d + e_to_a
    );

    // `any`: once per interface crossed. A to C: tpa, the bridge, tpc (3);
    // C to D: tpc, the bridge, the overlay device, the wire (4); E to A:
    // the wire, the overlay device, tpa (3). (The scrapes cross `lo`:
    // only the pods' traffic is summed.)
    let multiples = [
        (POD_C, a_to_c, 3.0),
        (POD_D, c_to_d, 4.0),
        (POD_A, e_to_a, 3.0),
    ];
    let want: f64 = multiples.iter().map(|(_, n, k)| n * k).sum();
    let pods_only = |t: &str| {
        multiples
            .iter()
            .map(|(server, _, _)| packets_where(t, "server", server))
            .sum::<f64>()
    };
    let any = cluster.metrics_once(any_port, |t| pods_only(t) >= want);
    for (server, n, k) in multiples {
        assert_eq!(
            packets_where(&any, "server", server),
            k * n,
            "-i any counts the connections to {server} once per interface they cross"
        );
    }
    assert_eq!(
        packets_where(&any, "reporter", "node"),
        packets_where(&any, "interface", "any"),
    );
}
