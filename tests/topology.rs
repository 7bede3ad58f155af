//! A node as routed CNIs (Calico, the AWS VPC CNI, GKE) build it: a
//! network namespace for the node, two more for pods, each pod behind a
//! veth whose host side has the pod's address as a host route. Traffic
//! between the two pods crosses both veths. Captured on the pods'
//! interfaces (`-i 'tp*'`, as the chart's `pods` mode), each connection is
//! counted once per reporter: as the client's on the client pod's
//! interface, as the server's on the server pod's, each equal to tshark on
//! that interface, with the pcap, af-packet and xdp backends alike;
//! captured on `any`, twice, as the README says.
//!
//! Needs root, iproute2, tcpdump, curl, python3; `TCPX_SKIP_LIVE=1` skips.

mod common;

use std::io::BufRead;
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use common::agreement::{assert_agree, live_differences, tshark_counts};
use common::{samples, sum_metric_where, TempDir};

const POD_A: &str = "10.78.1.2";
const POD_B: &str = "10.78.1.3";
/// The host side's address on every pod veth (as Calico's 169.254.1.1).
const GATEWAY: &str = "10.78.0.1";
const CONNECTIONS: usize = 8;

/// Runs `ip` with `args`, which must succeed.
fn ip(args: &[&str]) {
    common::tool("ip", args);
}

/// The node's namespace and its pods', removed when dropped.
struct Node {
    node: String,
    pods: [String; 2],
    children: Vec<Child>,
}

impl Node {
    fn new() -> Node {
        let pid = std::process::id();
        let node = Node {
            node: format!("tcpx-node-{pid}"),
            pods: [format!("tcpx-pa-{pid}"), format!("tcpx-pb-{pid}")],
            children: Vec::new(),
        };
        let n = node.node.as_str();
        ip(&["netns", "add", n]);
        ip(&["-n", n, "link", "set", "lo", "up"]);
        let forward = Command::new("ip")
            .args(["netns", "exec", n, "sysctl", "-qw", "net.ipv4.ip_forward=1"])
            .status()
            .unwrap();
        assert!(forward.success());
        for (pod, (addr, host_if)) in node.pods.iter().zip([(POD_A, "tpa"), (POD_B, "tpb")]) {
            ip(&["netns", "add", pod]);
            ip(&[
                "-n", n, "link", "add", host_if, "type", "veth", "peer", "name", "eth0", "netns",
                pod,
            ]);
            ip(&[
                "-n",
                n,
                "addr",
                "add",
                &format!("{GATEWAY}/32"),
                "dev",
                host_if,
            ]);
            ip(&["-n", n, "link", "set", host_if, "up"]);
            // The CNI's host route: the pod's address, on its veth.
            ip(&[
                "-n",
                n,
                "route",
                "add",
                &format!("{addr}/32"),
                "dev",
                host_if,
            ]);
            ip(&[
                "-n",
                pod,
                "addr",
                "add",
                &format!("{addr}/32"),
                "dev",
                "eth0",
            ]);
            ip(&["-n", pod, "link", "set", "eth0", "up"]);
            ip(&["-n", pod, "link", "set", "lo", "up"]);
            ip(&["-n", pod, "route", "add", GATEWAY, "dev", "eth0"]);
            ip(&["-n", pod, "route", "add", "default", "via", GATEWAY]);
            // Wire-sized segments: a veth would pass 64 KB ones.
            for (ns, dev) in [(n, host_if), (pod.as_str(), "eth0")] {
                let off = Command::new("ip")
                    .args(["netns", "exec", ns, "ethtool", "-K", dev])
                    .args(["tso", "off", "gso", "off", "gro", "off"])
                    .output()
                    .unwrap();
                assert!(off.status.success());
            }
        }
        node
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

    /// The exporter in the node's namespace, on `interface`.
    /// The exporter in the node's namespace, on `interfaces` (its -i
    /// values), with `backend`'s arguments.
    fn exporter(&mut self, interfaces: &[&str], backend: &[&str], port: u16) {
        let node = self.node.clone();
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
        let interface = interfaces.join(" ");
        // Up on every interface it is to capture.
        let up: &[&str] = if interface == "any" {
            &["any"]
        } else {
            &["tpa", "tpb"]
        };
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
                "the exporter on {interface} did not start"
            );
            sleep(Duration::from_millis(100));
        }
    }

    fn metrics(&self, port: u16) -> String {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.node, "curl", "-sf"])
            .arg(format!("http://127.0.0.1:{port}/metrics"))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        for ns in self.pods.iter().chain([&self.node]) {
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

const CLIENT: &str = r#"
import socket, sys
data = bytes(range(256)) * 256
for _ in range(int(sys.argv[2])):
    s = socket.create_connection((sys.argv[1], 5001))
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
    let mut node = Node::new();
    let (n, pa, pb) = (
        node.node.clone(),
        node.pods[0].clone(),
        node.pods[1].clone(),
    );
    let server = node.spawn_in(&pb, "python3", &["-c", common::ECHO_SERVER], Stdio::piped());
    let mut ready = String::new();
    std::io::BufReader::new(node.children[server].stdout.take().unwrap())
        .read_line(&mut ready)
        .unwrap();
    assert_eq!(ready.trim(), "ready");

    let captures: Vec<(usize, std::path::PathBuf)> = ["tpa", "tpb"]
        .iter()
        .map(|dev| {
            let file = dir.path(&format!("{dev}.pcap"));
            let args = [
                "-i",
                dev,
                "-n",
                "--immediate-mode",
                "-U",
                "-w",
                file.to_str().unwrap(),
            ];
            let i = node.spawn_in(&n, "tcpdump", &args, Stdio::null());
            let mut line = String::new();
            std::io::BufReader::new(node.children[i].stderr.take().unwrap())
                .read_line(&mut line)
                .unwrap();
            assert!(line.contains("listening"), "tcpdump on {dev}: {line}");
            (i, file)
        })
        .collect();
    // The pods' interfaces with each backend (xdp attaches to named
    // interfaces, not globs), and `any`.
    let mut pods = vec![
        ("pcap", common::free_port()),
        ("af-packet", common::free_port()),
    ];
    node.exporter(&["tp*"], &[], pods[0].1);
    node.exporter(&["tp*"], &["--backend", "af-packet"], pods[1].1);
    if cfg!(feature = "xdp") {
        pods.push(("xdp", common::free_port()));
        let xdp = ["--backend", "xdp", "--xdp-mode", "native"];
        node.exporter(&["tpa", "tpb"], &xdp, pods[2].1);
    }
    let any_port = common::free_port();
    node.exporter(&["any"], &[], any_port);

    let client = Command::new("ip")
        .args(["netns", "exec", &pa, "python3", "-c", CLIENT, POD_B])
        .arg(CONNECTIONS.to_string())
        .output()
        .unwrap();
    assert!(
        client.status.success(),
        "client: {}",
        String::from_utf8_lossy(&client.stderr)
    );
    sleep(Duration::from_millis(300));
    for (i, _) in &captures {
        let pid = node.children[*i].id() as i32;
        // SAFETY: kill(2) on a child this test started.
        unsafe { libc::kill(pid, libc::SIGINT) };
        node.children[*i].wait().unwrap();
    }

    // Each pod's interface, as tshark counts it.
    let tshark: Vec<String> = captures.iter().map(|(_, f)| tshark_counts(f)).collect();
    let packets = |text: &str| -> f64 {
        samples(text)
            .iter()
            .filter(|s| s.name == "packets")
            .map(|s| s.value)
            .sum()
    };
    let on_a = packets(&tshark[0]);
    assert!(on_a > 100.0, "tshark saw {on_a} TCP packets on tpa");
    assert_eq!(on_a, packets(&tshark[1]), "both veths carry every packet");

    // Pod interfaces: the client's veth reports as client, the server's as
    // server, each exactly what tshark counted there; nothing as node.
    let mut failures = Vec::new();
    for (backend, port) in pods {
        let deadline = Instant::now() + Duration::from_secs(10);
        let text = loop {
            let text = node.metrics(port);
            let counted = sum_metric_where(&text, "tcp_packets_total", "interface", "tpb");
            if counted >= on_a || Instant::now() > deadline {
                break text;
            }
            sleep(Duration::from_millis(100));
        };
        // Live: what depends on neither order nor time must be equal.
        failures.extend(live_differences(
            &format!("{backend}: client on tpa"),
            &tshark[0],
            &reported_by(&text, "client"),
        ));
        failures.extend(live_differences(
            &format!("{backend}: server on tpb"),
            &tshark[1],
            &reported_by(&text, "server"),
        ));
        assert_eq!(
            sum_metric_where(&text, "tcp_packets_total", "reporter", "node"),
            0.0,
            "{backend}"
        );
        assert_eq!(
            sum_metric_where(&text, "tcp_connections_opened_total", "reporter", "client"),
            CONNECTIONS as f64,
            "{backend}"
        );
        assert_eq!(
            sum_metric_where(&text, "tcp_packets_total", "interface", "tpa"),
            sum_metric_where(&text, "tcp_packets_total", "reporter", "client"),
            "{backend}"
        );
    }
    assert_agree(&failures);

    // `any`: every packet twice (once per veth), the multiple the README
    // states for pod-to-pod traffic on one node.
    // (The scrapes themselves cross `lo`: only the pods' traffic counts.)
    let total = |text: &str| sum_metric_where(text, "tcp_packets_total", "server", POD_B);
    let deadline = Instant::now() + Duration::from_secs(10);
    let any = loop {
        let any = node.metrics(any_port);
        if total(&any) >= 2.0 * on_a || Instant::now() > deadline {
            break any;
        }
        sleep(Duration::from_millis(100));
    };
    assert_eq!(
        total(&any),
        2.0 * on_a,
        "-i any counts each packet once per veth"
    );
    assert_eq!(
        sum_metric_where(&any, "tcp_packets_total", "reporter", "node"),
        sum_metric_where(&any, "tcp_packets_total", "interface", "any"),
    );
}
