//! Live capture, end to end: real TCP traffic between the root network
//! namespace and a namespace of the test's own, over a veth pair; exporters
//! with each backend (pcap; af-packet with two fanout workers; xdp, in a
//! build with that feature) and tcpdump capture the root end at the same
//! time. Each exporter must count every packet that tcpdump wrote, and all
//! must serve the same traffic metrics, sample for sample. In an xdp build
//! it runs twice: the second time the xdp exporter counts steady segments
//! in the kernel (`--xdp-count`).
//!
//! Needs root and the `ip`, `tcpdump`, `ethtool`, `taskset` and `python3` commands
//! (`make test-deps`). Without root the test fails, unless `TCPX_SKIP_LIVE=1`
//! says to skip it. `TCPX_LIVE_KEEP=1` keeps the capture and logs (the
//! directory is printed) for a look after a failure.

mod common;

use common::{http_get, sum_metric, sum_metric_where, try_http_get};
use std::fs::{self, File};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream};
use std::path::PathBuf;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

const EXPORTER: &str = env!("CARGO_BIN_EXE_tcp-exporter");
/// Connections the client makes to the server, each a request and a response.
const CONNECTIONS: usize = 10;
const RESPONSE_BYTES: usize = 20_000;
/// ...but the last one's, long enough (tens of milliseconds) for the
/// exporter to read the connection's start and arm it while it lasts, for
/// the kernel to count its steady segments with `--xdp-count`.
const LAST_RESPONSE_BYTES: usize = 16_000_000;
const SERVER_PORT: u16 = 8080;
/// Nothing listens here: a SYN to it is answered by a RST.
const CLOSED_PORT: u16 = 8081;

#[test]
fn live_capture_counts_every_packet_tcpdump_sees_with_every_backend() {
    if std::env::var("TCPX_SKIP_LIVE").as_deref() == Ok("1") {
        eprintln!("live capture test: skipped (TCPX_SKIP_LIVE=1)");
        return;
    }
    let euid = effective_uid();
    assert!(
        euid == 0,
        "the live capture test needs root (network namespaces, veth, packet capture), \
         it runs as uid {euid}; run it as root, or set TCPX_SKIP_LIVE=1 to skip it"
    );
    for tool in ["ip", "tcpdump", "ethtool", "taskset", "python3"] {
        assert!(
            on_path(tool),
            "the live capture test needs `{tool}` on PATH; `make test-deps` installs it"
        );
    }

    check_backends(&[]);
    if cfg!(feature = "xdp") {
        check_backends(&["--xdp-count"]);
    }
}

/// One run of the test: traffic, tcpdump, and an exporter with each
/// backend, the xdp one with `xdp_flags`.
fn check_backends(xdp_flags: &[&str]) {
    let counting = xdp_flags.contains(&"--xdp-count");
    let mut lab = Lab::new();
    lab.create_network();
    let iface = lab.root_if.clone();
    let server_ip = lab.netns_ip;

    // Both capturers on the root end, before any traffic.
    let pcap_path = lab.dir.join("live.pcap");
    let tcpdump_log = lab.dir.join("tcpdump.log");
    let tcpdump = lab.spawn(
        "tcpdump",
        Command::new("tcpdump")
            // -Z root: keep root, so the output file can be written anywhere.
            .args([
                "-i",
                &iface,
                "-n",
                "-U",
                "--immediate-mode",
                "-Z",
                "root",
                // Only its count of packets is read: headers are enough,
                // and a large buffer keeps up with the last connection.
                "-s",
                "128",
                "-B",
                "65536",
                "-w",
            ])
            .arg(&pcap_path)
            .arg("tcp")
            .stdout(Stdio::null())
            .stderr(File::create(&tcpdump_log).unwrap()),
    );
    let port = common::free_port();
    let http = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let exporter_log = lab.dir.join("exporter.log");
    let log = File::create(&exporter_log).unwrap();
    let exporter = lab.spawn(
        "tcp-exporter",
        Command::new(EXPORTER)
            .args([
                "-i",
                &iface,
                "-p",
                &port.to_string(),
                "--listen",
                "127.0.0.1",
            ])
            .stdout(log.try_clone().unwrap())
            .stderr(log),
    );
    let af_port = common::free_port();
    let af_http = SocketAddr::from((Ipv4Addr::LOCALHOST, af_port));
    let af_log = File::create(lab.dir.join("exporter-af-packet.log")).unwrap();
    let af_exporter = lab.spawn(
        "tcp-exporter --backend af-packet",
        Command::new(EXPORTER)
            .args([
                "-i",
                &iface,
                "-p",
                &af_port.to_string(),
                "--listen",
                "127.0.0.1",
            ])
            .args(["--backend", "af-packet", "--workers", "2"])
            .stdout(af_log.try_clone().unwrap())
            .stderr(af_log),
    );
    // The xdp backend, when built: its programs on the same interface.
    let xdp_http = if cfg!(feature = "xdp") {
        let xdp_port = common::free_port();
        let xdp_log = File::create(lab.dir.join("exporter-xdp.log")).unwrap();
        let xdp_exporter = lab.spawn(
            "tcp-exporter --backend xdp",
            Command::new(EXPORTER)
                .args([
                    "-i",
                    &iface,
                    "-p",
                    &xdp_port.to_string(),
                    "--listen",
                    "127.0.0.1",
                ])
                // Native XDP (auto picks generic on a veth); offloads are
                // off here, so the peer losing TSO changes nothing.
                .args(["--backend", "xdp", "--xdp-mode", "native"])
                .args(xdp_flags)
                .stdout(xdp_log.try_clone().unwrap())
                .stderr(xdp_log),
        );
        let xdp_http = SocketAddr::from((Ipv4Addr::LOCALHOST, xdp_port));
        lab.wait_until(
            "the xdp exporter is ready",
            Duration::from_secs(20),
            |lab| {
                lab.check_alive(xdp_exporter);
                matches!(try_http_get(xdp_http, "/readyz"), Ok((200, _)))
            },
        );
        Some(xdp_http)
    } else {
        None
    };
    lab.wait_until(
        "the af-packet exporter is ready",
        Duration::from_secs(20),
        |lab| {
            lab.check_alive(af_exporter);
            matches!(try_http_get(af_http, "/readyz"), Ok((200, _)))
        },
    );
    lab.wait_until("tcpdump is listening", Duration::from_secs(10), |lab| {
        lab.check_alive(tcpdump);
        fs::read_to_string(&tcpdump_log).is_ok_and(|s| s.contains("listening on"))
    });
    lab.wait_until("the exporter is ready", Duration::from_secs(20), |lab| {
        lab.check_alive(exporter);
        matches!(try_http_get(http, "/readyz"), Ok((200, _)))
    });

    // Traffic: requests and responses, then a connection refused. Client and
    // server run on one CPU, and with them the veth's softirqs: the xdp
    // backend's two hooks write a record on the CPU that handles the packet,
    // so two segments crossing at once on two CPUs may reach its ring in the
    // other order than a tap point sees them (README, "The xdp backend"),
    // which the sample-for-sample comparison below would take for a fault.
    let cpu = pin_to_one_cpu();
    let (server, server_out) = lab.start_server(server_ip, cpu);
    let mut ready = String::new();
    BufReader::new(server_out).read_line(&mut ready).unwrap();
    assert_eq!(
        ready.trim(),
        "ready",
        "the server in the namespace did not start"
    );
    for i in 0..CONNECTIONS {
        let want = match i + 1 {
            CONNECTIONS => LAST_RESPONSE_BYTES,
            _ => RESPONSE_BYTES,
        };
        let n = request(SocketAddrV4::new(server_ip, SERVER_PORT), want);
        assert_eq!(n, want, "connection {i}: short response");
    }
    let refused = TcpStream::connect_timeout(
        &SocketAddrV4::new(server_ip, CLOSED_PORT).into(),
        Duration::from_secs(5),
    );
    assert!(
        refused.is_err(),
        "port {CLOSED_PORT} in the namespace should be closed"
    );
    lab.wait_until("the server exits", Duration::from_secs(10), |lab| {
        lab.exited(server)
    });

    // The last ACKs cross the veth in well under a millisecond; wait until the
    // capture file stops growing, then stop tcpdump so that it is complete.
    let mut last = (usize::MAX, Instant::now());
    lab.wait_until("the capture file settles", Duration::from_secs(10), |_| {
        let n = count_pcap_records(&fs::read(&pcap_path).unwrap_or_default()).0;
        if n != last.0 {
            last = (n, Instant::now());
        }
        last.1.elapsed() >= Duration::from_millis(300)
    });
    lab.interrupt(tcpdump);
    lab.wait_until("tcpdump exits", Duration::from_secs(10), |lab| {
        lab.exited(tcpdump)
    });
    let stats = fs::read_to_string(&tcpdump_log).unwrap();
    let dropped = stats
        .lines()
        .find_map(|l| l.strip_suffix(" packets dropped by kernel"))
        .unwrap_or_else(|| panic!("no statistics from tcpdump:\n{stats}"));
    assert_eq!(
        dropped.trim(),
        "0",
        "tcpdump dropped packets, so it is no reference:\n{stats}"
    );
    let (packets, trailing) = count_pcap_records(&fs::read(&pcap_path).unwrap());
    assert_eq!(
        trailing,
        0,
        "{}: truncated last record",
        pcap_path.display()
    );
    // Each connection alone is a handshake, a request, 14 data segments and
    // their ACKs, and two FINs.
    assert!(
        packets > CONNECTIONS * 20,
        "tcpdump saw only {packets} packets:\n{stats}"
    );

    let text = counted_like_tcpdump(http, &iface, packets);
    let af_text = counted_like_tcpdump(af_http, &iface, packets);
    let (pcap_view, af_view) = (traffic_samples(&text), traffic_samples(&af_text));
    let only_pcap: Vec<_> = pcap_view.iter().filter(|l| !af_view.contains(l)).collect();
    let only_af: Vec<_> = af_view.iter().filter(|l| !pcap_view.contains(l)).collect();
    assert!(
        only_pcap.is_empty() && only_af.is_empty(),
        "the pcap and af-packet backends disagree on the same traffic:\n\
         pcap only: {only_pcap:#?}\naf-packet only: {only_af:#?}"
    );
    assert!(
        pcap_view.len() > 50,
        "too few samples compared: {pcap_view:?}"
    );
    for stage in ["kernel", "ring_freeze", "ring_error"] {
        assert_eq!(
            sum_metric_where(&af_text, "tcp_exporter_capture_drops_total", "stage", stage),
            0.0,
            "af-packet reported {stage} drops where tcpdump saw none:\n{}",
            metric_lines(&af_text, "tcp_exporter_capture_drops_total"),
        );
    }
    assert_eq!(
        sum_metric(&text, "tcp_exporter_capture_drops_total"),
        0.0,
        "pcap reported drops where tcpdump saw none:\n{}",
        metric_lines(&text, "tcp_exporter_capture_drops_total"),
    );

    if let Some(xdp_http) = xdp_http {
        let xdp_text = counted_like_tcpdump(xdp_http, &iface, packets);
        let xdp_view = traffic_samples(&xdp_text);
        let only_pcap: Vec<_> = pcap_view.iter().filter(|l| !xdp_view.contains(l)).collect();
        let only_xdp: Vec<_> = xdp_view.iter().filter(|l| !pcap_view.contains(l)).collect();
        assert!(
            only_pcap.is_empty() && only_xdp.is_empty(),
            "the pcap and xdp backends disagree on the same traffic:\n\
             pcap only: {only_pcap:#?}\nxdp only: {only_xdp:#?}"
        );
        assert_eq!(
            sum_metric(&xdp_text, "tcp_exporter_capture_drops_total"),
            0.0,
            "xdp reported drops where tcpdump saw none:\n{}",
            metric_lines(&xdp_text, "tcp_exporter_capture_drops_total"),
        );
        // With --xdp-count the comparison above holds segments the kernel
        // counted, as long as it counted some.
        let counted = sum_metric(&xdp_text, "tcp_exporter_kernel_counted_segments_total");
        eprintln!("xdp {xdp_flags:?}: {counted} of {packets} segments counted in the kernel");
        assert_eq!(
            counted > 0.0,
            counting,
            "xdp {xdp_flags:?}: {counted} segments counted in the kernel:\n{}",
            metric_lines(&xdp_text, "tcp_exporter_kernel_count_events_total"),
        );
    }

    let server_ip = server_ip.to_string();
    assert_eq!(
        sum_metric_where(&text, "tcp_exporter_interface_up", "interface", &iface),
        1.0,
        "tcp_exporter_interface_up{{interface=\"{iface}\"}} 1 missing:\n{}",
        metric_lines(&text, "tcp_exporter_interface_up"),
    );
    assert_eq!(
        sum_metric_where(&text, "tcp_packets_total", "server", &server_ip),
        packets as f64,
        "every packet belongs to a connection whose server is {server_ip}:\n{}",
        metric_lines(&text, "tcp_packets_total"),
    );
    assert!(
        sum_metric(&text, "tcp_resets_total") >= 1.0,
        "the refused connection's RST was not counted:\n{}",
        metric_lines(&text, "tcp_resets_total"),
    );
    assert_eq!(
        sum_metric(&text, "tcp_connections_opened_total"),
        CONNECTIONS as f64,
        "{}",
        metric_lines(&text, "tcp_connections_opened_total"),
    );
    assert_eq!(
        sum_metric_where(
            &text,
            "tcp_connections_opened_total",
            "server_port",
            &SERVER_PORT.to_string()
        ),
        CONNECTIONS as f64,
        "{}",
        metric_lines(&text, "tcp_connections_opened_total"),
    );
}

/// Polls the exporter at `http` until it has counted as many TCP packets as
/// tcpdump wrote (it reads its capture every ~100 ms), or fails after 10 s;
/// returns its exposition.
fn counted_like_tcpdump(http: SocketAddr, iface: &str, packets: usize) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, text) = http_get(http, "/metrics");
        assert_eq!(status, 200, "GET /metrics:\n{text}");
        let counted = sum_metric(&text, "tcp_packets_total");
        if counted == packets as f64 {
            return text;
        }
        if Instant::now() >= deadline {
            panic!(
                "the exporter counted {counted} TCP packets on {iface}, tcpdump wrote {packets}\n\
                 exporter's view: capture_packets_total {} capture_drops_total {} \
                 decode_errors_total {}\n{}",
                sum_metric(&text, "tcp_exporter_capture_packets_total"),
                sum_metric(&text, "tcp_exporter_capture_drops_total"),
                sum_metric(&text, "tcp_exporter_decode_errors_total"),
                metric_lines(&text, "tcp_packets_total"),
            );
        }
        sleep(Duration::from_millis(100));
    }
}

/// The traffic samples (`tcp_*`, not the exporter's own `tcp_exporter_*`),
/// one line each, sorted: what two backends seeing the same packets must
/// agree on exactly. Times are left out (the sums and buckets of the
/// `_seconds` histograms; their counts stay): each socket timestamps a packet
/// when it copies it, so two captures of one packet differ by microseconds.
fn traffic_samples(text: &str) -> Vec<String> {
    let timed = |l: &str| l.contains("_seconds_sum") || l.contains("_seconds_bucket");
    let mut lines: Vec<String> = text
        .lines()
        .filter(|l| l.starts_with("tcp_") && !l.starts_with("tcp_exporter_") && !timed(l))
        .map(String::from)
        .collect();
    lines.sort();
    lines
}

/// Binds the calling thread to the first CPU it may run on, and returns
/// that CPU.
fn pin_to_one_cpu() -> usize {
    // SAFETY: cpu_set_t is plain bits; the calls write only into `set`, whose
    // size they are given, and affect only this thread (pid 0).
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        let size = std::mem::size_of::<libc::cpu_set_t>();
        assert_eq!(libc::sched_getaffinity(0, size, &mut set), 0);
        let cpu = (0..libc::CPU_SETSIZE as usize)
            .find(|&c| libc::CPU_ISSET(c, &set))
            .expect("the test thread may run on no CPU");
        libc::CPU_ZERO(&mut set);
        libc::CPU_SET(cpu, &mut set);
        let pinned = libc::sched_setaffinity(0, size, &set);
        assert_eq!(pinned, 0, "binding the test thread to CPU {cpu}");
        cpu
    }
}

/// One request to the server for `bytes` bytes; returns the length of the
/// response.
fn request(addr: SocketAddrV4, bytes: usize) -> usize {
    let mut stream = TcpStream::connect_timeout(&addr.into(), Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
        .write_all(format!("GET {bytes}\n").as_bytes())
        .unwrap();
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .unwrap_or_else(|e| panic!("read from {addr}: {e}"));
    response.len()
}

/// The sample lines of one metric, for failure messages.
fn metric_lines(text: &str, name: &str) -> String {
    text.lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(['{', ' ']))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The test's network, processes and files; dropping it removes them all,
/// also when an assertion fails (unwinding runs `Drop`).
struct Lab {
    netns: String,
    root_if: String,
    netns_if: String,
    root_ip: Ipv4Addr,
    netns_ip: Ipv4Addr,
    dir: PathBuf,
    /// Processes started, by name; `None` once waited for.
    children: Vec<(&'static str, Option<Child>)>,
}

/// Index of a child process in `Lab::children`.
#[derive(Clone, Copy)]
struct Proc(usize);

impl Lab {
    fn new() -> Lab {
        let pid = std::process::id();
        // Names stay within the 15 bytes Linux allows an interface name.
        let x = (pid % 254 + 1) as u8;
        let dir = std::env::temp_dir().join(format!("tcpx-live-{pid}"));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let lab = Lab {
            netns: format!("tcpx-live-{pid}"),
            root_if: format!("tl{pid}a"),
            netns_if: format!("tl{pid}b"),
            root_ip: Ipv4Addr::new(10, 251, x, 1),
            netns_ip: Ipv4Addr::new(10, 251, x, 2),
            dir,
            children: Vec::new(),
        };
        // Leftovers of an earlier run killed with the same pid.
        lab.remove_network();
        lab
    }

    fn create_network(&self) {
        let (ns, a, b) = (
            self.netns.as_str(),
            self.root_if.as_str(),
            self.netns_if.as_str(),
        );
        run(&["ip", "netns", "add", ns]);
        run(&["ip", "link", "add", a, "type", "veth", "peer", "name", b]);
        run(&["ip", "link", "set", b, "netns", ns]);
        run(&[
            "ip",
            "addr",
            "add",
            &format!("{}/30", self.root_ip),
            "dev",
            a,
        ]);
        run(&[
            "ip",
            "-n",
            ns,
            "addr",
            "add",
            &format!("{}/30", self.netns_ip),
            "dev",
            b,
        ]);
        run(&["ip", "-n", ns, "link", "set", "lo", "up"]);
        run(&["ip", "-n", ns, "link", "set", b, "up"]);
        run(&["ip", "link", "set", a, "up"]);
        // Wire-sized segments in the capture, not 64 KB super-packets.
        let offloads = ["tso", "off", "gso", "off", "gro", "off"];
        run(&[&["ethtool", "-K", a][..], &offloads].concat());
        run(&[
            &["ip", "netns", "exec", ns, "ethtool", "-K", b][..],
            &offloads,
        ]
        .concat());
    }

    fn remove_network(&self) {
        // Deleting one end of a veth pair deletes both.
        let _ = quiet(&["ip", "link", "del", &self.root_if]);
        let _ = quiet(&["ip", "netns", "del", &self.netns]);
    }

    /// A server in the namespace: accepts `CONNECTIONS` connections, reads a
    /// request line (`GET n`) from each, answers n bytes and closes it.
    /// It prints `ready` once listening.
    fn start_server(&mut self, ip: Ipv4Addr, cpu: usize) -> (Proc, ChildStdout) {
        let script = format!(
            r#"
import socket
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("{ip}", {SERVER_PORT}))
s.listen(16)
print("ready", flush=True)
for _ in range({CONNECTIONS}):
    c, _ = s.accept()
    c.settimeout(10)
    f = c.makefile("rb")
    n = int(f.readline().split()[1])
    c.sendall(b"x" * n)
    f.close()
    c.close()
"#
        );
        let server = self.spawn(
            "server",
            Command::new("taskset")
                .args(["-c", &cpu.to_string(), "ip", "netns", "exec"])
                .args([&self.netns, "python3", "-c", &script])
                .stdout(Stdio::piped())
                .stderr(File::create(self.dir.join("server.log")).unwrap()),
        );
        let out = self.child(server).stdout.take().unwrap();
        (server, out)
    }

    fn spawn(&mut self, name: &'static str, cmd: &mut Command) -> Proc {
        let child = cmd
            .stdin(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        self.children.push((name, Some(child)));
        Proc(self.children.len() - 1)
    }

    fn child(&mut self, p: Proc) -> &mut Child {
        let (name, child) = &mut self.children[p.0];
        child
            .as_mut()
            .unwrap_or_else(|| panic!("{name} has already exited"))
    }

    /// Whether the process has exited; panics if it failed.
    fn exited(&mut self, p: Proc) -> bool {
        let Some(status) = self.child(p).try_wait().unwrap() else {
            return false;
        };
        let name = self.children[p.0].0;
        self.children[p.0].1 = None;
        assert!(
            status.success(),
            "{name} failed ({status}); logs in {}:\n{}",
            self.dir.display(),
            self.logs()
        );
        true
    }

    fn check_alive(&mut self, p: Proc) {
        let name = self.children[p.0].0;
        if let Some(status) = self.child(p).try_wait().unwrap() {
            panic!("{name} exited early ({status}):\n{}", self.logs());
        }
    }

    /// SIGINT, so that tcpdump flushes its file and prints its statistics.
    /// Through `sh`'s builtin `kill`: the crate has no libc binding.
    fn interrupt(&mut self, p: Proc) {
        let pid = self.child(p).id().to_string();
        run(&["sh", "-c", "kill -INT \"$1\"", "sh", &pid]);
    }

    /// Polls `done` every 50 ms; fails after `limit`.
    fn wait_until(&mut self, what: &str, limit: Duration, mut done: impl FnMut(&mut Lab) -> bool) {
        let deadline = Instant::now() + limit;
        while !done(self) {
            if Instant::now() >= deadline {
                panic!(
                    "timed out after {limit:?} waiting until {what}:\n{}",
                    self.logs()
                );
            }
            sleep(Duration::from_millis(50));
        }
    }

    fn logs(&self) -> String {
        let mut out = String::new();
        for name in [
            "exporter.log",
            "exporter-af-packet.log",
            "exporter-xdp.log",
            "tcpdump.log",
            "server.log",
        ] {
            let text = fs::read_to_string(self.dir.join(name)).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(30).collect();
            out += &format!("--- {name} (last lines)\n");
            for line in tail.into_iter().rev() {
                out += line;
                out.push('\n');
            }
        }
        out
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for (_, child) in &mut self.children {
            if let Some(mut child) = child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        self.remove_network();
        if std::env::var("TCPX_LIVE_KEEP").as_deref() == Ok("1") {
            eprintln!("live test files kept in {}", self.dir.display());
        } else {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// Runs a command; panics with its output if it fails.
fn run(args: &[&str]) {
    let out = quiet(args).unwrap_or_else(|e| panic!("cannot run `{}`: {e}", args.join(" ")));
    assert!(
        out.status.success(),
        "`{}` failed ({}): {}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
}

fn quiet(args: &[&str]) -> std::io::Result<std::process::Output> {
    Command::new(args[0])
        .args(&args[1..])
        .stdin(Stdio::null())
        .output()
}

/// The effective user id, from /proc (the crate has no libc binding).
fn effective_uid() -> u32 {
    let status = fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        .and_then(|euid| euid.parse().ok())
        .expect("no Uid line in /proc/self/status")
}

fn on_path(tool: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).any(|dir| {
        fs::metadata(dir.join(tool))
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    })
}

/// Counts the records of a pcap file (not pcapng): a 24-byte file header,
/// then per packet a 16-byte header whose third field is the captured
/// length. Returns the count of complete records and the bytes after them
/// (a record tcpdump is writing now). A file shorter than its header holds
/// no records yet.
fn count_pcap_records(data: &[u8]) -> (usize, usize) {
    let Some(magic) = data.get(..4) else {
        return (0, 0);
    };
    let magic = u32::from_le_bytes(magic.try_into().unwrap());
    let little_endian = match magic {
        0xa1b2_c3d4 | 0xa1b2_3c4d => true,
        0xd4c3_b2a1 | 0x4d3c_b2a1 => false,
        _ => panic!("not a pcap file (magic {magic:#010x})"),
    };
    let u32_at = |at: usize| {
        let b: [u8; 4] = data[at..at + 4].try_into().unwrap();
        if little_endian {
            u32::from_le_bytes(b)
        } else {
            u32::from_be_bytes(b)
        }
    };
    let mut at = 24;
    let mut records = 0;
    while data.len() >= at + 16 {
        let end = at + 16 + u32_at(at + 8) as usize;
        if end > data.len() {
            break;
        }
        records += 1;
        at = end;
    }
    (records, data.len().saturating_sub(at))
}

#[test]
fn pcap_counter_counts_complete_records_in_either_byte_order() {
    let record = |len: u32, le: bool| {
        let mut r = vec![0u8; 8];
        let b = if le {
            len.to_le_bytes()
        } else {
            len.to_be_bytes()
        };
        r.extend_from_slice(&b);
        r.extend_from_slice(&b);
        r.resize(r.len() + len as usize, 0xab);
        r
    };
    for le in [true, false] {
        let magic: u32 = 0xa1b2_c3d4;
        let mut file = if le {
            magic.to_le_bytes().to_vec()
        } else {
            magic.to_be_bytes().to_vec()
        };
        file.resize(24, 0);
        assert_eq!(count_pcap_records(&file), (0, 0));
        file.extend(record(60, le));
        file.extend(record(0, le));
        file.extend(record(1514, le));
        assert_eq!(count_pcap_records(&file), (3, 0));
        let partial = record(100, le);
        file.extend_from_slice(&partial[..50]);
        assert_eq!(count_pcap_records(&file), (3, 50));
    }
    assert_eq!(count_pcap_records(&[0xd4, 0xc3]), (0, 0));
}

#[test]
fn metric_sums_match_exact_names_and_labels() {
    let text = r#"# HELP tcp_packets_total TCP segments seen.
# TYPE tcp_packets_total counter
tcp_packets_total{interface="a",client="10.0.0.1",server="10.0.0.2",server_port="80",sender="client"} 5
tcp_packets_total{interface="a",client="10.0.0.1",server="10.0.0.2",server_port="80",sender="server"} 7
tcp_packets_total_extra 100
tcp_packets_totalx{sender="client"} 100
odd{v="a \"quoted\", {braced} value",sender="client"} 2.5 1700000000000
tcp_exporter_series_overflow_total 3
"#;
    assert_eq!(sum_metric(text, "tcp_packets_total"), 12.0);
    assert_eq!(
        sum_metric_where(text, "tcp_packets_total", "sender", "server"),
        7.0
    );
    assert_eq!(
        sum_metric_where(text, "tcp_packets_total", "nope", "x"),
        0.0
    );
    assert_eq!(sum_metric(text, "tcp_exporter_series_overflow_total"), 3.0);
    assert_eq!(sum_metric_where(text, "odd", "sender", "client"), 2.5);
    assert_eq!(
        sum_metric_where(text, "odd", "v", r#"a "quoted", {braced} value"#),
        2.5
    );
    assert_eq!(sum_metric(text, "missing"), 0.0);
}
