//! Segmentation offload, end to end: with TSO/GSO on, a veth carries
//! super-packets of many segments each. The af-packet backend reads the
//! kernel's virtio-net header of every frame, and the xdp backend (in a
//! build with that feature) the skb's GSO size on TC egress, and both count
//! wire segments, so each one's tcp_packets_total must equal what the two TCP stacks say they sent
//! (TcpOutSegs + TcpRetransSegs of both namespaces, which count segments,
//! not buffers; a retransmission is only in the second), while it received
//! fewer frames than that.
//!
//! Needs root and `ip`, `ethtool`, `nstat`, `curl`, `python3` (`make
//! test-deps`); `TCPX_SKIP_LIVE=1` skips it, as it does the other live test.

use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

const EXPORTER: &str = env!("CARGO_BIN_EXE_tcp-exporter");
const BYTES: usize = 4 << 20;
const SERVER_PORT: u16 = 5001;

/// Two namespaces joined by a veth pair, and the processes started in them;
/// all removed on drop, also when an assertion fails.
struct Net {
    client_ns: String,
    server_ns: String,
    children: Vec<Child>,
}

impl Drop for Net {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        for ns in [&self.client_ns, &self.server_ns] {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}

fn run(args: &[&str]) -> String {
    let out = Command::new(args[0])
        .args(&args[1..])
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run `{}`: {e}", args.join(" ")));
    assert!(
        out.status.success(),
        "`{}` failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Segments a namespace's TCP sent since the namespace was made: TcpOutSegs
/// (new data and control) plus TcpRetransSegs (retransmissions).
fn out_segments(ns: &str) -> u64 {
    let text = run(&[
        "ip",
        "netns",
        "exec",
        ns,
        "nstat",
        "-a",
        "-s",
        "-z",
        "TcpOutSegs",
        "TcpRetransSegs",
    ]);
    let field = |name: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in nstat output:\n{text}"))
    };
    field("TcpOutSegs") + field("TcpRetransSegs")
}

fn sum(text: &str, name: &str) -> u64 {
    text.lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|r| r.starts_with('{') || r.starts_with(' '))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

#[test]
fn af_packet_and_xdp_count_offload_super_packets_as_wire_segments() {
    if std::env::var("TCPX_SKIP_LIVE").as_deref() == Ok("1") {
        eprintln!("offload test: skipped (TCPX_SKIP_LIVE=1)");
        return;
    }
    let pid = std::process::id();
    let x = (pid % 250 + 1) as u8;
    let mut net = Net {
        client_ns: format!("tcpx-gso-{pid}-c"),
        server_ns: format!("tcpx-gso-{pid}-s"),
        children: Vec::new(),
    };
    let (c, s) = (net.client_ns.clone(), net.server_ns.clone());
    let (c_if, s_if) = (format!("tg{pid}c"), format!("tg{pid}s"));
    let (c_ip, s_ip) = (format!("10.253.{x}.1"), format!("10.253.{x}.2"));
    run(&["ip", "netns", "add", &c]);
    run(&["ip", "netns", "add", &s]);
    run(&[
        "ip", "link", "add", &c_if, "netns", &c, "type", "veth", "peer", "name", &s_if, "netns", &s,
    ]);
    run(&[
        "ip",
        "-n",
        &c,
        "addr",
        "add",
        &format!("{c_ip}/30"),
        "dev",
        &c_if,
    ]);
    run(&[
        "ip",
        "-n",
        &s,
        "addr",
        "add",
        &format!("{s_ip}/30"),
        "dev",
        &s_if,
    ]);
    for (ns, dev) in [(&c, &c_if), (&s, &s_if)] {
        run(&["ip", "-n", ns, "link", "set", dev, "up"]);
        run(&["ip", "-n", ns, "link", "set", "lo", "up"]);
        run(&[
            "ip", "netns", "exec", ns, "ethtool", "-K", dev, "tso", "on", "gso", "on",
        ]);
    }

    // Each backend on its own port of the client namespace's loopback.
    let mut backends: Vec<(&str, u16, &[&str])> = vec![(
        "af-packet",
        9090,
        &["--backend", "af-packet", "--workers", "1"],
    )];
    if cfg!(feature = "xdp") {
        backends.push(("xdp", 9091, &["--backend", "xdp"]));
    }
    for (_, port, args) in &backends {
        let exporter = Command::new("ip")
            .args(["netns", "exec", &c, EXPORTER, "-i", &c_if])
            .args(*args)
            .args(["-p", &port.to_string(), "--listen", "127.0.0.1"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start tcp-exporter");
        net.children.push(exporter);
    }
    let scrape = |port: u16, path: &str| {
        Command::new("ip")
            .args(["netns", "exec", &c, "curl", "-s", "-f"])
            .arg(format!("http://127.0.0.1:{port}{path}"))
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    for (name, port, _) in &backends {
        while scrape(*port, "/readyz").is_none() {
            assert!(
                Instant::now() < deadline,
                "the {name} exporter did not become ready"
            );
            sleep(Duration::from_millis(100));
        }
    }
    let server = Command::new("ip")
        .args(["netns", "exec", &s, "python3", "-c"])
        .arg(format!(
            "import socket\n\
             l = socket.socket(); l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
             l.bind(('{s_ip}', {SERVER_PORT})); l.listen(1); print('ready', flush=True)\n\
             c, _ = l.accept()\n\
             while c.recv(1 << 16): pass\n\
             c.close()\n"
        ))
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the server");
    net.children.push(server);
    let mut ready = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(net.children.last_mut().unwrap().stdout.take().unwrap()),
        &mut ready,
    )
    .unwrap();
    assert_eq!(ready.trim(), "ready");

    // What the stacks sent before the transfer: the readiness probes are
    // TCP too, over the client namespace's loopback.
    let before = out_segments(&c) + out_segments(&s);
    run(&[
        "ip",
        "netns",
        "exec",
        &c,
        "python3",
        "-c",
        &format!(
            "import socket\n\
             s = socket.create_connection(('{s_ip}', {SERVER_PORT}))\n\
             s.sendall(b'x' * {BYTES}); s.shutdown(socket.SHUT_WR)\n\
             while s.recv(1 << 16): pass\n\
             s.close()\n"
        ),
    ]);
    sleep(Duration::from_millis(200)); // the last ACK
    let sent = out_segments(&c) + out_segments(&s) - before;

    for (name, port, _) in &backends {
        check_backend(name, || scrape(*port, "/metrics"), sent);
    }
}

/// Waits (10 s at most) until a backend's exporter has counted `sent`
/// segments, then checks its counts.
fn check_backend(name: &str, scrape: impl Fn() -> Option<String>, sent: u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut text = scrape().unwrap_or_default();
    while sum(&text, "tcp_packets_total") != sent && Instant::now() < deadline {
        sleep(Duration::from_millis(100));
        text = scrape().unwrap_or_default();
    }
    let packets = sum(&text, "tcp_packets_total");
    let frames = sum(&text, "tcp_exporter_capture_packets_total");
    assert_eq!(
        packets, sent,
        "{name}: wire segments counted by the exporter vs segments both stacks sent \
         ({frames} frames captured)"
    );
    assert!(
        frames < packets / 2,
        "{name}: only {frames} frames for {packets} segments: no super-packets were made, \
         so this test proved nothing (is TSO off on the veth?)"
    );
    let payload = text
        .lines()
        .filter(|l| l.starts_with("tcp_payload_bytes_total{") && l.contains("sender=\"client\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as usize;
    // Retransmissions (the veth's queue does overflow at times) repeat
    // payload: what was sent is a floor, not an equality.
    assert!(
        payload >= BYTES,
        "{name}: client payload bytes {payload} < {BYTES} sent"
    );
}
