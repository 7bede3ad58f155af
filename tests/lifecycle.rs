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

/// Veth pairs (by one end's name) deleted when dropped, whatever is left
/// of them: a failing test leaves none behind.
struct Links(Vec<String>);

impl Drop for Links {
    fn drop(&mut self) {
        if self.0.is_empty() {
            return;
        }
        let script: String = self.0.iter().map(|n| format!("link del {n}\n")).collect();
        let _ = sh(&format!("printf '{script}' | ip -force -batch -"));
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

/// `GET /metrics` with basic-auth credentials `user_pass`; the status code
/// and the body.
fn get_with_password(http: SocketAddr, user_pass: &str) -> (u16, String) {
    use base64::Engine;
    let token = base64::engine::general_purpose::STANDARD.encode(user_pass);
    let mut c = TcpStream::connect(http).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(
        c,
        "GET /metrics HTTP/1.0\r\nHost: x\r\nAuthorization: Basic {token}\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    let _ = c.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text
        .split_ascii_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (status, body.to_string())
}

/// Wrong passwords cost a bcrypt run each; the server runs one at a time
/// and turns away (429) what waits too long, so a storm of them from many
/// connections neither shuts out the scraper whose password was verified
/// before nor takes the cores from capture.
#[test]
fn a_storm_of_wrong_passwords_leaves_scrapes_answered_and_capture_whole() {
    if skip() {
        return;
    }
    let dir = TempDir::new("lc-storm");
    let hash = Command::new("htpasswd")
        .args(["-nbBC", "10", "prometheus", "s3cret"])
        .output()
        .expect("htpasswd (apache2-utils; make test-deps installs it)");
    let hash = String::from_utf8(hash.stdout).unwrap();
    let hash = hash.trim().split_once(':').unwrap().1.to_string();
    std::fs::write(
        dir.path("web.yml"),
        format!("basic_auth_users:\n  prometheus: '{hash}'\n"),
    )
    .unwrap();
    let veth = Veth::new("tcpxstorm", 40);
    let pcap = dir.path("storm.pcap");
    let mut tcpdump = Command::new("tcpdump")
        .args([
            "-i",
            &veth.name,
            "-n",
            "-U",
            "--immediate-mode",
            "-Z",
            "root",
            "-w",
        ])
        .arg(&pcap)
        .arg("tcp")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("tcpdump (make test-deps installs it)");
    // tcpdump says "listening on" once its capture is open.
    let mut said = std::io::BufReader::new(tcpdump.stderr.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut said, &mut line).unwrap();
    assert!(line.contains("listening on"), "tcpdump: {line}");
    let web = dir.path("web.yml");
    let exporter = Running::start(
        &["-i", &veth.name, "--web.config.file", web.to_str().unwrap()],
        &dir.path("exporter.log"),
    );
    let http = exporter.http;
    // Prometheus's first scrape: verified once, remembered after.
    assert_eq!(get_with_password(http, "prometheus:s3cret").0, 200);

    // 48 connections at a time send wrong passwords for 4 s.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let storm: Vec<_> = (0..48)
        .map(|i| {
            let stop = std::sync::Arc::clone(&stop);
            std::thread::spawn(move || {
                let mut answers = std::collections::BTreeMap::<u16, u64>::new();
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let (status, _) = get_with_password(http, &format!("prometheus:wrong{i}"));
                    *answers.entry(status).or_default() += 1;
                }
                answers
            })
        })
        .collect();
    let until = Instant::now() + Duration::from_secs(4);
    let mut scrapes = 0;
    while Instant::now() < until {
        veth.traffic(200_000);
        let (status, _) = get_with_password(http, "prometheus:s3cret");
        assert_eq!(
            status, 200,
            "a scrape with the right password during the storm"
        );
        scrapes += 1;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut answers = std::collections::BTreeMap::<u16, u64>::new();
    for t in storm {
        for (status, n) in t.join().unwrap() {
            *answers.entry(status).or_default() += n;
        }
    }
    assert!(scrapes >= 3, "{scrapes} scrapes");
    eprintln!("storm: {answers:?} wrong-password answers by status, {scrapes} scrapes answered");
    let statuses: Vec<u16> = answers.keys().copied().collect();
    assert_eq!(
        statuses,
        [401, 429],
        "every wrong password refused: {answers:?}"
    );

    // tcpdump's count of the same interface, once it has written all.
    sleep(Duration::from_millis(500));
    sh_ok(&format!("kill -INT {}", tcpdump.id()));
    tcpdump.wait().unwrap();
    let written = common::tool("tcpdump", &["-r", pcap.to_str().unwrap(), "-n"]);
    let written = written.lines().count() as f64;
    let (status, text) = get_with_password(http, "prometheus:s3cret");
    assert_eq!(status, 200);
    let counted = common::sum_metric_where(&text, "tcp_packets_total", "interface", &veth.name);
    assert!(written > 200.0, "{written} packets of test traffic");
    assert_eq!(counted, written, "the exporter counts what tcpdump wrote");
    let drops = common::sum_metric(&text, "tcp_exporter_capture_drops_total");
    assert_eq!(drops, 0.0);
    let rejected = |reason| {
        common::sum_metric_where(
            &text,
            "tcp_exporter_http_rejections_total",
            "reason",
            reason,
        )
    };
    assert_eq!(rejected("unauthorized"), answers[&401] as f64);
    assert_eq!(rejected("auth_throttled"), answers[&429] as f64);
}

/// Resident memory of a process, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap()
}

/// The series an exposition holds (name and labels, not values), less the
/// HTTP server's own counts.
fn series_of(text: &str) -> std::collections::BTreeSet<String> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.contains("tcp_exporter_http_"))
        .filter_map(|l| l.rsplit_once(' ').map(|(series, _)| series.to_string()))
        .collect()
}

/// Pod interfaces come and go all day: thousands of glob-matched veths,
/// made and deleted a batch at a time, each captured (some with traffic
/// replayed into them), then forgotten once gone for --series-ttl. The
/// exposition and the exporter's memory come back to where they were.
#[test]
fn thousands_of_interfaces_made_and_deleted_give_back_what_they_held() {
    if skip() {
        return;
    }
    const BATCHES: usize = 10;
    const PER_BATCH: usize = 200;
    /// Interfaces of a batch that get traffic.
    const WITH_TRAFFIC: usize = 10;
    let dir = TempDir::new("lifecycle-churn");
    let tag = format!("tc{}", std::process::id() % 10_000);
    let log = dir.path("churn.log");
    let running = Running::start(
        &[
            "-i",
            &format!("{tag}c*"),
            "--series-ttl",
            "1s",
            "--buffer-size",
            "1",
        ],
        &log,
    );
    let http = running.http;
    let capture = common::pcap("short_conns.pcap");
    let packets_each = common::sum_metric(&common::print_with(&capture, &[]), "tcp_packets_total");
    let scrape = || try_http_get(http, "/metrics").unwrap().1;
    let mut baseline: Option<(std::collections::BTreeSet<String>, u64)> = None;
    let mut rss = Vec::new();
    for batch in 0..BATCHES {
        let names: Vec<String> = (0..PER_BATCH)
            .map(|i| format!("{tag}c{}", batch * PER_BATCH + i))
            .collect();
        let mut script = String::new();
        for (i, n) in names.iter().enumerate() {
            let peer = format!("{tag}p{}", batch * PER_BATCH + i);
            script += &format!(
                "link add {n} type veth peer name {peer}\nlink set {n} up\nlink set {peer} up\n"
            );
        }
        let made = Command::new("sh")
            .args(["-c", &format!("printf '{script}' | ip -batch -")])
            .output()
            .unwrap();
        // Deletes the batch's pairs if the test fails before it does.
        let mut made_here = Links(names.clone());
        assert!(
            made.status.success(),
            "{}",
            String::from_utf8_lossy(&made.stderr)
        );
        let up = |text: &str| {
            names
                .iter()
                .filter(|n| {
                    common::sum_metric_where(text, "tcp_exporter_interface_up", "interface", n)
                        == 1.0
                })
                .count()
        };
        let t0 = Instant::now();
        wait_until("a batch of interfaces captured", || {
            up(&scrape()) == PER_BATCH
        });
        let t1 = Instant::now();
        for i in 0..WITH_TRAFFIC {
            let peer = format!("{tag}p{}", batch * PER_BATCH + i);
            common::tool(
                "tcpreplay",
                &["-q", "-t", "-i", &peer, capture.to_str().unwrap()],
            );
        }
        wait_until("the replayed traffic counted", || {
            let text = scrape();
            let counted: f64 = names
                .iter()
                .map(|n| common::sum_metric_where(&text, "tcp_packets_total", "interface", n))
                .sum();
            counted == packets_each * WITH_TRAFFIC as f64
        });
        let t2 = Instant::now();
        let mut script = String::new();
        for n in &names {
            script += &format!("link del {n}\n");
        }
        let deleted = Command::new("sh")
            .args(["-c", &format!("printf '{script}' | ip -batch -")])
            .output()
            .unwrap();
        assert!(
            deleted.status.success(),
            "{}",
            String::from_utf8_lossy(&deleted.stderr)
        );
        made_here.0.clear();
        let t3 = Instant::now();
        // Gone for 1 s (--series-ttl): forgotten, every series with it.
        wait_until("the batch forgotten", || {
            !scrape().contains(&format!("interface=\"{tag}c"))
        });
        eprintln!(
            "churn: batch {batch}: captured in {:?}, replayed in {:?}, deleted in {:?}, forgotten in {:?}",
            t1 - t0,
            t2 - t1,
            t3 - t2,
            t3.elapsed()
        );
        let text = scrape();
        assert_eq!(
            common::sum_metric_where(&text, "tcp_exporter_series_tracked", "kind", "own"),
            0.0,
            "their label sets went back to --max-series"
        );
        let kib = rss_kib(running.pid());
        rss.push(kib);
        // The first batches set up what stays (thread stacks, libpcap's
        // state, the allocator's pools): the baseline is taken after them.
        if batch == 2 {
            baseline = Some((series_of(&text), kib));
        }
        if let Some((series, _)) = &baseline {
            assert_eq!(
                &series_of(&text),
                series,
                "batch {batch}: the exposition is back to its baseline"
            );
        }
    }
    let (_, base) = baseline.unwrap();
    let last = *rss.last().unwrap();
    eprintln!("churn: RSS KiB after each batch of {PER_BATCH}: {rss:?}");
    assert!(
        last <= base + 2048,
        "{} interfaces later the exporter holds {last} KiB, {base} KiB after the first {}",
        (BATCHES - 3) * PER_BATCH,
        3 * PER_BATCH
    );
    // Every label set of every interface with traffic left, counted.
    let printed = common::print_with(&capture, &[]);
    let sets_each = printed
        .lines()
        .filter(|l| l.starts_with("tcp_connections_active{"))
        .count();
    assert_eq!(
        common::sum_metric(&scrape(), "tcp_exporter_series_expired_total"),
        (BATCHES * WITH_TRAFFIC * sets_each) as f64
    );
}

/// `--max-interfaces` bounds the captures: what matches beyond it is not
/// captured, counted once and said once, and captured when room frees.
#[test]
fn interfaces_beyond_the_maximum_are_refused_counted_and_taken_when_room_frees() {
    if skip() {
        return;
    }
    let dir = TempDir::new("lifecycle-max");
    let tag = format!("tm{}", std::process::id() % 10_000);
    let log = dir.path("max.log");
    let mut running = Running::start(&["-i", &format!("{tag}c*"), "--max-interfaces", "2"], &log);
    let http = running.http;
    let names: Vec<String> = (0..3).map(|i| format!("{tag}c{i}")).collect();
    for (i, n) in names.iter().enumerate() {
        sh_ok(&format!("ip link add {n} type veth peer name {tag}p{i}"));
        sh_ok(&format!("ip link set {n} up"));
    }
    let captured = || {
        let (_, text) = try_http_get(http, "/metrics").unwrap();
        let up: Vec<&String> = names
            .iter()
            .filter(|n| {
                common::sum_metric_where(&text, "tcp_exporter_interface_up", "interface", n) == 1.0
            })
            .collect();
        let refused = sum_metric(&text, "tcp_exporter_interfaces_refused_total");
        (up.len(), refused)
    };
    wait_until("two captured, one refused", || captured() == (2, 1.0));
    // Scans go on: the refusal is counted once while the interface stays.
    sleep(Duration::from_millis(800));
    assert_eq!(captured(), (2, 1.0));
    let (_, text) = try_http_get(http, "/metrics").unwrap();
    let taken: Vec<&String> = names
        .iter()
        .filter(|n| {
            common::sum_metric_where(&text, "tcp_exporter_interface_up", "interface", n) == 1.0
        })
        .collect();
    let left = names.iter().find(|n| !taken.contains(n)).unwrap().clone();
    sh_ok(&format!("ip link del {}", taken[0]));
    wait_until("the refused one captured once there is room", || {
        let (_, text) = try_http_get(http, "/metrics").unwrap();
        common::sum_metric_where(&text, "tcp_exporter_interface_up", "interface", &left) == 1.0
    });
    assert_eq!(captured().1, 1.0, "refused once, all told");
    for n in &names {
        let _ = sh(&format!("ip link del {n}"));
    }
    let (status, _) = running.stop("TERM");
    assert!(status.success());
    let said = std::fs::read_to_string(&log).unwrap();
    assert_eq!(said.matches("--max-interfaces").count(), 1, "{said}");
}
