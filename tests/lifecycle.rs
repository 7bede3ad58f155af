//! The exporter's life as a process: the capabilities it keeps once
//! started (read from /proc/PID/task/*/status, every thread), and a clean
//! stop on SIGTERM and SIGINT with the flow log finished. Live captures on
//! `lo`, with traffic between two loopback sockets of the test's own.
//!
//! Needs root. `TCPX_SKIP_LIVE=1` skips (as the other live tests).

mod common;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use common::{free_port, sum_metric, try_http_get, TempDir};

const EXPORTER: &str = env!("CARGO_BIN_EXE_tcp-exporter");

// Capability bit numbers (linux/capability.h).
const NET_ADMIN: u64 = 1 << 12;
const NET_RAW: u64 = 1 << 13;
const PERFMON: u64 = 1 << 38;
const BPF: u64 = 1 << 39;

/// Held by the tests that attach the xdp backend to `lo`: an interface
/// takes one XDP program at a time.
static LO_XDP: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn lo_xdp() -> std::sync::MutexGuard<'static, ()> {
    LO_XDP.lock().unwrap_or_else(|e| e.into_inner())
}

fn skip() -> bool {
    if std::env::var("TCPX_SKIP_LIVE").as_deref() == Ok("1") {
        eprintln!("lifecycle test: skipped (TCPX_SKIP_LIVE=1)");
        return true;
    }
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let uid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap();
    assert_eq!(
        uid, "0",
        "the lifecycle tests need root; TCPX_SKIP_LIVE=1 skips them"
    );
    false
}

/// An exporter, killed if the test ends without stopping it.
struct Running {
    child: Child,
    http: SocketAddr,
}

impl Running {
    fn start(args: &[&str], log: &std::path::Path) -> Running {
        let port = free_port();
        let child = Command::new(EXPORTER)
            .args(["-p", &port.to_string(), "--listen", "127.0.0.1"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .expect("start the exporter");
        let mut running = Running {
            child,
            http: SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !matches!(try_http_get(running.http, "/readyz"), Ok((200, _))) {
            if let Some(status) = running.child.try_wait().unwrap() {
                panic!(
                    "the exporter exited early ({status}): {}",
                    std::fs::read_to_string(log).unwrap_or_default()
                );
            }
            assert!(Instant::now() < deadline, "the exporter is not ready");
            sleep(Duration::from_millis(50));
        }
        running
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` (by the PID this test started) and waits for the exit.
    fn stop(&mut self, signal: &str) -> (std::process::ExitStatus, Duration) {
        let sent = Instant::now();
        let out = Command::new("kill")
            .args([&format!("-{signal}"), &self.pid().to_string()])
            .output()
            .unwrap();
        assert!(out.status.success(), "kill -{signal}: {out:?}");
        // The exporter's own watchdog ends it (status 1) 5 s after the
        // signal; past 20 s something else is wrong.
        let deadline = sent + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return (status, sent.elapsed());
            }
            assert!(Instant::now() < deadline, "no exit after SIG{signal}");
            sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The capability sets and no_new_privs of every thread of a process.
fn thread_capabilities(pid: u32) -> Vec<(String, [u64; 5], bool)> {
    let mut out = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let task = task.unwrap().path();
        let Ok(status) = std::fs::read_to_string(task.join("status")) else {
            continue; // a thread that just ended
        };
        let field = |name: &str| {
            let v = status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .unwrap_or_else(|| panic!("{name} in {status}"))
                .trim();
            u64::from_str_radix(v, 16).unwrap_or_else(|_| v.parse().unwrap())
        };
        let name = status
            .lines()
            .find_map(|l| l.strip_prefix("Name:"))
            .unwrap()
            .trim()
            .to_string();
        out.push((
            name,
            [
                field("CapInh:"),
                field("CapPrm:"),
                field("CapEff:"),
                field("CapBnd:"),
                field("CapAmb:"),
            ],
            field("NoNewPrivs:") == 1,
        ));
    }
    assert!(!out.is_empty(), "the process has threads");
    out
}

/// A loopback connection that sends `n` bytes and stays open; returns the
/// client's port, and the sockets to keep.
fn loopback_connection(n: usize) -> (u16, TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (mut server, _) = listener.accept().unwrap();
    client.write_all(&vec![b'x'; n]).unwrap();
    let mut buf = vec![0u8; n];
    server.read_exact(&mut buf).unwrap();
    let port = client.local_addr().unwrap().port();
    (port, client, server)
}

/// Waits until the exporter has counted some TCP packets.
fn wait_counted(http: SocketAddr) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, text) = try_http_get(http, "/metrics").unwrap();
        if sum_metric(&text, "tcp_packets_total") > 0.0 {
            return text;
        }
        assert!(Instant::now() < deadline, "nothing counted on lo:\n{text}");
        sleep(Duration::from_millis(100));
    }
}

#[test]
fn once_started_the_exporter_keeps_only_what_reopening_a_capture_needs() {
    if skip() {
        return;
    }
    let _lo = lo_xdp();
    let dir = TempDir::new("lifecycle-caps");
    let mut cases: Vec<(&str, Vec<&str>, u64)> = vec![
        ("pcap", vec!["-i", "lo"], NET_RAW),
        (
            "af-packet",
            vec!["--backend", "af-packet", "-i", "lo", "--workers", "2"],
            NET_RAW,
        ),
    ];
    let file = common::pcap("short_conns.pcap");
    cases.push(("file", vec!["-r", file.to_str().unwrap()], 0));
    if cfg!(feature = "xdp") {
        cases.push((
            "xdp",
            vec!["--backend", "xdp", "-i", "lo"],
            BPF | NET_ADMIN | PERFMON,
        ));
    }
    for (backend, args, keep) in cases {
        let log = dir.path(&format!("{backend}.log"));
        let mut running = Running::start(&args, &log);
        for (thread, [inh, prm, eff, bnd, amb], no_new_privs) in thread_capabilities(running.pid())
        {
            let what = format!("{backend}, thread {thread}");
            assert_eq!(eff, 0, "{what}: nothing effective between opens");
            assert_eq!(prm, keep, "{what}: permitted");
            assert_eq!(bnd, keep, "{what}: bounding");
            assert_eq!((inh, amb), (0, 0), "{what}: inheritable, ambient");
            assert!(no_new_privs, "{what}: no_new_privs");
        }
        if backend != "file" {
            // Capture goes on with nothing effective.
            let _conn = loopback_connection(1000);
            wait_counted(running.http);
            let text = std::fs::read_to_string(&log).unwrap();
            assert!(text.contains("capabilities kept"), "{text}");
        }
        let (status, _) = running.stop("TERM");
        assert!(status.success(), "{backend}: {status}");
    }
}

#[test]
fn sigterm_and_sigint_stop_the_capture_finish_the_flow_log_and_exit_0() {
    if skip() {
        return;
    }
    let dir = TempDir::new("lifecycle-stop");
    for (backend, signal) in [
        ("pcap", "TERM"),
        ("af-packet", "INT"),
        ("pcap", "INT"),
        ("af-packet", "TERM"),
    ] {
        let flow_log = dir.path(&format!("{backend}-{signal}.jsonl"));
        let log = dir.path(&format!("{backend}-{signal}.log"));
        let mut running = Running::start(
            &[
                "--backend",
                backend,
                "-i",
                "lo",
                "--flow-log",
                flow_log.to_str().unwrap(),
            ],
            &log,
        );
        // A connection still open when the signal comes.
        let (client_port, _c, _s) = loopback_connection(5000);
        wait_counted(running.http);
        let (status, took) = running.stop(signal);
        let stderr = std::fs::read_to_string(&log).unwrap();
        assert_eq!(status.code(), Some(0), "{backend} SIG{signal}: {stderr}");
        assert!(
            stderr.contains(&format!("SIG{signal}: stopping")),
            "{stderr}"
        );
        eprintln!("{backend}: exit 0 {took:?} after SIG{signal}");
        // The flow log is whole: every line a JSON record, the last one
        // ended, and the open connection has its final update.
        let text = std::fs::read_to_string(&flow_log).unwrap();
        assert!(text.ends_with('\n'), "{backend}: the last record is cut");
        let records: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect();
        let ours: Vec<&serde_json::Value> = records
            .iter()
            .filter(|r| r["client_port"] == client_port)
            .collect();
        let kinds: Vec<&str> = ours.iter().map(|r| r["event"].as_str().unwrap()).collect();
        assert_eq!(kinds.first(), Some(&"open"), "{backend}: {kinds:?}\n{text}");
        assert_eq!(
            kinds.last(),
            Some(&"update"),
            "{backend}: the final update: {kinds:?}"
        );
        assert_eq!(
            ours.last().unwrap()["client_sent"]["payload_bytes"],
            5000,
            "{text}"
        );
    }
}

/// A veth pair: `name` in the root namespace (10.251.N.1/30), its peer in
/// a namespace of its own (10.251.N.2/30). Deleted, with the namespace,
/// when dropped.
struct Veth {
    name: String,
    netns: String,
    net: u8,
}

impl Veth {
    fn new(name: &str, net: u8) -> Veth {
        let veth = Veth {
            name: name.to_string(),
            netns: format!("tcpx-lc-{}-{net}", std::process::id()),
            net,
        };
        let _ = sh(&format!("ip netns del {}", veth.netns));
        sh_ok(&format!("ip netns add {}", veth.netns));
        veth.make();
        veth
    }

    /// (Re)makes the pair and its addresses.
    fn make(&self) {
        let (n, ns, net) = (&self.name, &self.netns, self.net);
        sh_ok(&format!("ip link add {n} type veth peer name {n}p"));
        sh_ok(&format!("ip link set {n}p netns {ns}"));
        sh_ok(&format!("ip addr add 10.251.{net}.1/30 dev {n}"));
        sh_ok(&format!("ip link set {n} up"));
        sh_ok(&format!("ip -n {ns} addr add 10.251.{net}.2/30 dev {n}p"));
        sh_ok(&format!("ip -n {ns} link set {n}p up"));
        sh_ok(&format!("ip -n {ns} link set lo up"));
    }

    fn delete(&self) {
        sh_ok(&format!("ip link del {}", self.name));
    }

    /// A connection from the namespace to a listener of the test's on the
    /// root end, sending `n` bytes.
    fn traffic(&self, n: usize) {
        let listener = TcpListener::bind(format!("10.251.{}.1:0", self.net)).unwrap();
        let port = listener.local_addr().unwrap().port();
        let accept = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut buf = Vec::new();
            s.read_to_end(&mut buf).unwrap();
            buf.len()
        });
        let script = format!(
            "import socket; s = socket.create_connection(('10.251.{}.1', {port}), timeout=5); \
             s.sendall(b'x' * {n}); s.close()",
            self.net
        );
        sh_ok(&format!(
            "ip netns exec {} python3 -c \"{script}\"",
            self.netns
        ));
        assert_eq!(accept.join().unwrap(), n);
    }
}

impl Drop for Veth {
    fn drop(&mut self) {
        let _ = sh(&format!("ip link del {}", self.name));
        let _ = sh(&format!("ip netns del {}", self.netns));
    }
}

fn sh(cmd: &str) -> std::process::Output {
    Command::new("sh").args(["-c", cmd]).output().unwrap()
}

fn sh_ok(cmd: &str) {
    let out = sh(cmd);
    assert!(
        out.status.success(),
        "{cmd}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A metric's value for one interface (0 when absent).
fn on(http: SocketAddr, metric: &str, iface: &str) -> f64 {
    let (_, text) = try_http_get(http, "/metrics").unwrap();
    common::sum_metric_where(&text, metric, "interface", iface)
}

/// Waits until `check` holds; how long it took.
fn wait_until(what: &str, mut check: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !check() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "timed out waiting for {what}"
        );
        sleep(Duration::from_millis(20));
    }
    start.elapsed()
}

#[test]
fn an_interface_deleted_and_made_again_is_captured_again_and_others_carry_on() {
    if skip() {
        return;
    }
    let _lo = lo_xdp();
    let dir = TempDir::new("lifecycle-churn");
    let mut backends = vec!["pcap", "af-packet"];
    if cfg!(feature = "xdp") {
        backends.push("xdp");
    }
    for (i, backend) in backends.into_iter().enumerate() {
        let name = format!("tlc{}x{i}", std::process::id() % 10_000);
        let veth = Veth::new(&name, 10 + i as u8);
        let log = dir.path(&format!("{backend}.log"));
        // With a flow log: its writer must still end when an interface
        // that went away is not captured at the stop.
        let flow_log = dir.path(&format!("{backend}.jsonl"));
        let mut running = Running::start(
            &[
                "--backend",
                backend,
                "-i",
                &name,
                "-i",
                "lo",
                "--flow-log",
                flow_log.to_str().unwrap(),
            ],
            &log,
        );
        let http = running.http;
        veth.traffic(2000);
        wait_until("traffic on the veth", || {
            on(http, "tcp_packets_total", &name) > 0.0
        });
        assert_eq!(on(http, "tcp_exporter_interface_up", &name), 1.0);
        let before = on(http, "tcp_packets_total", &name);

        veth.delete();
        let down = wait_until("interface_up 0", || {
            on(http, "tcp_exporter_interface_up", &name) == 0.0
        });
        // Its flows are let go (as timed out): nothing tracked or active.
        // (A capture that failed by itself reads as down a moment before
        // the supervisor collects it.)
        wait_until("the gone interface's flows let go", || {
            on(http, "tcp_exporter_flows_tracked", &name) == 0.0
                && on(http, "tcp_connections_active", &name) == 0.0
        });
        // The other interface carries on meanwhile.
        let lo_before = on(http, "tcp_packets_total", "lo");
        let _conn = loopback_connection(1000);
        wait_until("lo traffic while the veth is gone", || {
            on(http, "tcp_packets_total", "lo") > lo_before
        });
        assert_eq!(on(http, "tcp_exporter_interface_up", "lo"), 1.0);

        veth.make();
        let up = wait_until("interface_up 1 again", || {
            on(http, "tcp_exporter_interface_up", &name) == 1.0
        });
        veth.traffic(3000);
        wait_until("traffic on the made-again veth", || {
            on(http, "tcp_packets_total", &name) > before
        });
        eprintln!("{backend}: down seen in {down:?}, capturing again {up:?} after the veth was made again");
        let (status, _) = running.stop("TERM");
        let text = std::fs::read_to_string(&log).unwrap();
        assert!(status.success(), "{backend}: {text}");
        assert!(text.contains(&format!("{name}: capturing")), "{text}");
    }
}

#[test]
fn interfaces_matching_a_glob_are_picked_up_as_they_appear() {
    if skip() {
        return;
    }
    let dir = TempDir::new("lifecycle-glob");
    let prefix = format!("tlg{}", std::process::id() % 10_000);
    let pattern = format!("{prefix}*");
    let log = dir.path("glob.log");
    let flow_log = dir.path("glob.jsonl");
    let mut running = Running::start(
        &["-i", &pattern, "--flow-log", flow_log.to_str().unwrap()],
        &log,
    );
    let http = running.http;
    for (n, net) in [("a", 20u8), ("b", 21)] {
        let name = format!("{prefix}{n}");
        let veth = Veth::new(&name, net);
        let took = wait_until("the new interface captured", || {
            on(http, "tcp_exporter_interface_up", &name) == 1.0
        });
        veth.traffic(1500);
        wait_until("its traffic counted", || {
            on(http, "tcp_packets_total", &name) > 0.0
        });
        eprintln!("{name}: captured {took:?} after it was made");
        drop(veth);
        wait_until("interface_up 0 once deleted", || {
            on(http, "tcp_exporter_interface_up", &name) == 0.0
        });
    }
    let (status, _) = running.stop("TERM");
    assert!(
        status.success(),
        "{}",
        std::fs::read_to_string(&log).unwrap()
    );
}

#[test]
fn capture_on_any_counts_interfaces_made_after_the_start() {
    if skip() {
        return;
    }
    let dir = TempDir::new("lifecycle-any");
    let log = dir.path("any.log");
    let mut running = Running::start(&["-i", "any", "-f", "tcp and net 10.251.30.0/30"], &log);
    let http = running.http;
    let veth = Veth::new(&format!("tla{}", std::process::id() % 10_000), 30);
    veth.traffic(2500);
    wait_until("traffic of the new interface on any", || {
        on(http, "tcp_payload_bytes_total", "any") >= 2500.0
    });
    let (status, _) = running.stop("TERM");
    assert!(
        status.success(),
        "{}",
        std::fs::read_to_string(&log).unwrap()
    );
}
