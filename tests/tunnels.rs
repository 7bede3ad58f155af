//! Overlays: test captures wrapped by scripts/wrap-pcap.py in VXLAN (both
//! ports), Geneve with options, IPv4/IPv6 in IPv4 and in IPv6, GRE with key
//! and sequence number, GRE carrying Ethernet, and VXLAN inside GRE must
//! give exactly tshark's counts of the same traffic unwrapped (the
//! `.expected` files), and say what they unwrapped. tshark itself is run on
//! the wrapped files once per kind, as the reference that wrapping changes
//! nothing of the TCP analysis. And real VXLAN traffic: two network
//! namespaces (this one and one of the test's own) joined by a veth "wire"
//! with a Linux vxlan device on each end, TCP over the vxlan devices; the
//! exporter capturing the wire live (its default filter) and from
//! tcpdump's capture of it must count what tshark counts of that capture,
//! and the vxlan device must show tshark the same packets bare. Needs root, iproute2, ethtool,
//! tcpdump, python3; `TCPX_SKIP_LIVE=1` skips it.

mod common;

use std::io::{BufRead, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use common::agreement::{assert_agree, differences, live_differences, tshark_counts};
use common::{pcap, print_with, samples, try_http_get, TempDir};

/// (wrap-pcap.py's kind, the `kind` labels counted, once per level).
const KINDS: [(&str, &[&str]); 8] = [
    ("vxlan", &["vxlan"]),
    ("vxlan-flannel", &["vxlan"]),
    ("geneve", &["geneve"]),
    ("ipip", &["ip_in_ip"]),
    ("ip6ip", &["ip_in_ip"]),
    ("gre", &["gre"]),
    ("gre-eth", &["gre"]),
    ("vxlan-in-gre", &["vxlan", "gre"]),
];

/// Ethernet captures with tshark's counts beside them: IPv4 with loss,
/// IPv6, VLAN tags, zero windows, refused and aborted connections.
const CAPTURES: [&str; 5] = [
    "bulk_loss.pcap",
    "ipv6.pcap",
    "vlan.pcap",
    "zero_window.pcap",
    "refused_aborted.pcap",
];

fn wrap(kind: &str, capture: &Path, out: &Path) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/wrap-pcap.py");
    let made = Command::new("python3")
        .arg(script)
        .arg(kind)
        .arg(capture)
        .arg(out)
        .output()
        .expect("python3 runs");
    assert!(
        made.status.success(),
        "wrap-pcap.py {kind}: {}",
        String::from_utf8_lossy(&made.stderr)
    );
}

fn expected(capture: &Path) -> String {
    let path = format!("{}.expected", capture.display());
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn sum(text: &str, metric: &str, label: Option<(&str, &str)>) -> f64 {
    match label {
        Some((k, v)) => common::sum_metric_where(text, metric, k, v),
        None => common::sum_metric(text, metric),
    }
}

#[test]
fn wrapped_traffic_counts_exactly_as_unwrapped_by_tshark() {
    let dir = TempDir::new("tunnels");
    let mut failures = Vec::new();
    for (kind, levels) in KINDS {
        for name in CAPTURES {
            let capture = pcap(name);
            let wrapped = dir.path(&format!("{kind}-{name}"));
            wrap(kind, &capture, &wrapped);
            let text = print_with(&wrapped, &[]);
            failures.extend(differences(
                &format!("{kind} {name}"),
                &expected(&capture),
                &text,
                &[],
            ));
            // Every segment was found inside each level, and nothing was
            // left undecoded that the bare capture decoded.
            let packets = sum(&text, "tcp_packets_total", None);
            assert!(packets > 0.0, "{kind} {name}: no segments");
            for level in levels {
                let unwrapped = sum(
                    &text,
                    "tcp_exporter_tunnel_packets_total",
                    Some(("kind", level)),
                );
                assert_eq!(unwrapped, packets, "{kind} {name}: {level}");
            }
            let levels_counted = sum(&text, "tcp_exporter_tunnel_packets_total", None);
            assert_eq!(
                levels_counted,
                packets * levels.len() as f64,
                "{kind} {name}"
            );
        }
    }
    assert_agree(&failures);
}

#[test]
fn tshark_reads_each_wrapping_as_the_traffic_inside() {
    let dir = TempDir::new("tunnels-tshark");
    let capture = pcap("bulk_loss.pcap");
    for (kind, _) in KINDS {
        let wrapped = dir.path(&format!("{kind}.pcap"));
        wrap(kind, &capture, &wrapped);
        assert_eq!(
            tshark_counts(&wrapped),
            expected(&capture),
            "tshark on {kind}-wrapped bulk_loss.pcap"
        );
    }
}

#[test]
fn vxlan_ports_are_what_the_user_names() {
    let dir = TempDir::new("tunnels-ports");
    let capture = pcap("bulk_loss.pcap");
    let wrapped = dir.path("flannel.pcap");
    wrap("vxlan-flannel", &capture, &wrapped);
    // 8472 no longer a VXLAN port: the datagrams are UDP, not TCP.
    let text = print_with(&wrapped, &["--vxlan-ports", "4789"]);
    assert_eq!(sum(&text, "tcp_packets_total", None), 0.0);
    let not_tcp = sum(
        &text,
        "tcp_exporter_decode_errors_total",
        Some(("reason", "not_tcp")),
    );
    assert!(not_tcp > 0.0, "{text}");
    // A port of the user's own.
    let text = print_with(&wrapped, &["--vxlan-ports", "8472"]);
    assert!(sum(&text, "tcp_packets_total", None) > 0.0);
}

/// Two "nodes" joined by a veth wire, a vxlan device (VNI 42, UDP 4789) on
/// each: this namespace is one (`WIRE_A`, `OVERLAY_A`), a namespace of the
/// test's own the other. Removed when dropped, also when the test fails.
struct VxlanNet {
    ns: String,
    wire: String,
    overlay: String,
    children: Vec<Child>,
}

const WIRE_A: &str = "192.168.77.1";
const WIRE_B: &str = "192.168.77.2";
const OVERLAY_A: &str = "10.77.9.1";
const OVERLAY_B: &str = "10.77.9.2";

/// Runs a command that must succeed.
fn run(args: &[&str]) {
    common::tool(args[0], &args[1..]);
}

/// Gives `dev` (in namespace `ns`, or this one) the address `cidr`, and
/// brings it up without IPv6: no neighbour discovery or MLD report comes
/// by itself, before or between the captures' starts, to be counted by
/// some and not others.
fn address(ns: Option<&str>, dev: &str, cidr: &str) {
    let mut ip = vec!["ip"];
    let mut exec = vec![];
    if let Some(ns) = ns {
        ip.extend(["-n", ns]);
        exec.extend(["ip", "netns", "exec", ns]);
    }
    let no_v6 = format!("net.ipv6.conf.{dev}.disable_ipv6=1");
    run(&[&exec[..], &["sysctl", "-qw", &no_v6]].concat());
    run(&[&ip[..], &["addr", "add", cidr, "dev", dev]].concat());
    run(&[&ip[..], &["link", "set", dev, "up"]].concat());
}

impl VxlanNet {
    fn new() -> VxlanNet {
        let pid = std::process::id();
        let net = VxlanNet {
            ns: format!("tcpx-vxlan-{pid}"),
            wire: format!("tw{pid}a"),
            overlay: format!("tx{pid}a"),
            children: Vec::new(),
        };
        let (ns, wa, xa) = (net.ns.as_str(), net.wire.as_str(), net.overlay.as_str());
        let (wb, xb) = (format!("tw{pid}b"), format!("tx{pid}b"));
        run(&["ip", "netns", "add", ns]);
        run(&["ip", "link", "add", wa, "type", "veth", "peer", "name", &wb]);
        run(&["ip", "link", "set", &wb, "netns", ns]);
        address(None, wa, &format!("{WIRE_A}/30"));
        address(Some(ns), &wb, &format!("{WIRE_B}/30"));
        run(&["ip", "-n", ns, "link", "set", "lo", "up"]);
        let vxlan = |dev: &str, local: &str, remote: &str, lower: &str| {
            [
                "link", "add", dev, "type", "vxlan", "id", "42", "dstport", "4789", "local", local,
                "remote", remote, "dev", lower,
            ]
            .map(String::from)
        };
        let a = vxlan(xa, WIRE_A, WIRE_B, wa);
        run(&[&["ip"][..], &a.each_ref().map(String::as_str)].concat());
        let b = vxlan(&xb, WIRE_B, WIRE_A, &wb);
        run(&[&["ip", "-n", ns][..], &b.each_ref().map(String::as_str)].concat());
        address(None, xa, &format!("{OVERLAY_A}/24"));
        address(Some(ns), &xb, &format!("{OVERLAY_B}/24"));
        // Wire-sized segments on both, so that each packet on the overlay
        // is one on the wire.
        let off = ["tso", "off", "gso", "off", "gro", "off"];
        for dev in [wa, xa] {
            run(&[&["ethtool", "-K", dev][..], &off].concat());
        }
        for dev in [wb.as_str(), xb.as_str()] {
            run(&[&["ip", "netns", "exec", ns, "ethtool", "-K", dev][..], &off].concat());
        }
        net
    }

    fn spawn(&mut self, cmd: &mut Command) -> usize {
        self.children.push(cmd.spawn().expect("spawn"));
        self.children.len() - 1
    }
}

impl Drop for VxlanNet {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = Command::new("ip")
            .args(["link", "del", &self.overlay])
            .output();
        let _ = Command::new("ip")
            .args(["link", "del", &self.wire])
            .output();
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).output();
    }
}

/// tcpdump writing `iface` to `file`, started once it says it listens.
fn tcpdump(net: &mut VxlanNet, iface: &str, file: &Path) -> usize {
    let i = net.spawn(
        Command::new("tcpdump")
            // Immediate mode: nothing waits in a kernel block when it stops.
            .args(["-i", iface, "-n", "--immediate-mode", "-U", "-s", "0", "-w"])
            .arg(file)
            .stderr(Stdio::piped()),
    );
    let stderr = net.children[i].stderr.take().unwrap();
    let mut line = String::new();
    std::io::BufReader::new(stderr)
        .read_line(&mut line)
        .unwrap();
    assert!(line.contains("listening"), "tcpdump on {iface}: {line}");
    i
}

#[test]
fn real_vxlan_traffic_between_namespaces_counts_as_tshark_counts_it_inside() {
    if std::env::var("TCPX_SKIP_LIVE").as_deref() == Ok("1") {
        eprintln!("live vxlan test: skipped (TCPX_SKIP_LIVE=1)");
        return;
    }
    let dir = TempDir::new("tunnels-live");
    let mut net = VxlanNet::new();
    let server = net.spawn(
        Command::new("ip")
            .args([
                "netns",
                "exec",
                &net.ns,
                "python3",
                "-c",
                common::ECHO_SERVER,
            ])
            .stdout(Stdio::piped()),
    );
    let mut ready = String::new();
    std::io::BufReader::new(net.children[server].stdout.take().unwrap())
        .read_line(&mut ready)
        .unwrap();
    assert_eq!(ready.trim(), "ready");

    let (wire, overlay) = (net.wire.clone(), net.overlay.clone());
    let on_wire = dir.path("wire.pcap");
    let inside = dir.path("overlay.pcap");
    let dumps = [
        tcpdump(&mut net, &wire, &on_wire),
        tcpdump(&mut net, &overlay, &inside),
    ];
    // The exporter on the wire with each backend, its default filter.
    let mut backends: Vec<(&str, SocketAddr)> = Vec::new();
    let mut kinds = vec![
        ("pcap", vec![]),
        ("af-packet", vec!["--backend", "af-packet"]),
    ];
    if cfg!(feature = "xdp") {
        kinds.push(("xdp", vec!["--backend", "xdp", "--xdp-mode", "native"]));
    }
    for (name, args) in kinds {
        let port = common::free_port();
        net.spawn(
            Command::new(env!("CARGO_BIN_EXE_tcp-exporter"))
                .args([
                    "-i",
                    &wire,
                    "-p",
                    &port.to_string(),
                    "--listen",
                    "127.0.0.1",
                ])
                .args(args)
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        );
        let http = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let deadline = Instant::now() + Duration::from_secs(20);
        while !matches!(try_http_get(http, "/readyz"), Ok((200, _))) {
            assert!(
                Instant::now() < deadline,
                "the {name} exporter did not start"
            );
            sleep(Duration::from_millis(50));
        }
        backends.push((name, http));
    }

    // Ten connections over the overlay, each 64 KiB echoed.
    let to: SocketAddr = format!("{OVERLAY_B}:5001").parse().unwrap();
    let data: Vec<u8> = (0..65_536u32).map(|i| (i % 251) as u8).collect();
    for _ in 0..10 {
        let mut s = TcpStream::connect_timeout(&to, Duration::from_secs(5)).unwrap();
        let reader = s.try_clone().unwrap();
        let expect = data.len();
        let echo = std::thread::spawn(move || {
            let mut back = Vec::new();
            reader.take(expect as u64).read_to_end(&mut back).unwrap();
            back
        });
        s.write_all(&data).unwrap();
        assert_eq!(echo.join().unwrap(), data);
        drop(s);
    }
    // The closes' last packets, then the captures stop.
    sleep(Duration::from_millis(500));
    for i in dumps {
        let pid = net.children[i].id() as i32;
        // SAFETY: kill(2) on a child this test started.
        unsafe { libc::kill(pid, libc::SIGINT) };
        net.children[i].wait().unwrap();
    }

    // tshark reads the wire's VXLAN: the reference, on the same packets in
    // the same order (the TCP analysis depends on order, and the wire and
    // the overlay device see the two directions interleave differently).
    let tshark = tshark_counts(&on_wire);
    let packets: f64 = samples(&tshark)
        .iter()
        .filter(|s| s.name == "packets")
        .map(|s| s.value)
        .sum();
    assert!(
        packets > 400.0,
        "tshark saw {packets} TCP packets on the wire"
    );
    // The overlay device has the same packets bare: what does not depend on
    // order is equal.
    let bare = samples(&tshark_counts(&inside));
    for s in samples(&tshark).iter().filter(|s| {
        [
            "packets",
            "payload_bytes",
            "ip_bytes",
            "syn_wscale",
            "resets",
        ]
        .contains(&s.name.as_str())
    }) {
        let same = bare
            .iter()
            .find(|b| b.name == s.name && b.labels == s.labels);
        assert_eq!(
            same.map(|b| b.value),
            Some(s.value),
            "{}{:?} on the overlay",
            s.name,
            s.labels
        );
    }
    // The exporter, from the wire's capture file...
    let mut failures = differences("wire.pcap", &tshark, &print_with(&on_wire, &[]), &[]);
    // ...and live on the wire, once it has counted every packet: pcap
    // and af-packet open the overlay; the xdp backend's kernel programs do
    // not, and count each VXLAN packet as unopened.
    let vxlan_packets = common::tshark_frames(&on_wire, "udp.dstport == 4789");
    for (name, http) in backends {
        let (metric, label, want) = match name {
            "xdp" => (
                "tcp_exporter_decode_errors_total",
                Some(("reason", "unopened_tunnel")),
                vxlan_packets,
            ),
            _ => ("tcp_packets_total", None, packets),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        let live = loop {
            let text = match try_http_get(http, "/metrics") {
                Ok((200, text)) => text,
                _ => String::new(),
            };
            if sum(&text, metric, label) >= want || Instant::now() > deadline {
                break text;
            }
            sleep(Duration::from_millis(100));
        };
        if name == "xdp" {
            assert_eq!(
                sum(&live, metric, label),
                want,
                "xdp: unopened VXLAN packets"
            );
            assert_eq!(sum(&live, "tcp_packets_total", None), 0.0, "xdp");
            continue;
        }
        failures.extend(live_differences(
            &format!("{name} on the wire"),
            &tshark,
            &live,
        ));
        let unwrapped = sum(
            &live,
            "tcp_exporter_tunnel_packets_total",
            Some(("kind", "vxlan")),
        );
        assert_eq!(unwrapped, packets, "{name}");
    }
    assert_agree(&failures);
}
