//! Helpers shared by the integration tests: reading the Prometheus text the
//! exporter serves, checking it with promtool, plain HTTP/1.0 over
//! `std::net`, free local ports, running the exporter on a file, and
//! temporary directories. Std only.
//!
//! Each test crate uses a different subset of these helpers.
#![allow(dead_code)]

pub mod agreement;

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

pub type Labels = Vec<(String, String)>;

/// The labels that group traffic series (`--labels`), as opposed to those
/// that split a series' counts (sender, kind, reason, shift, leg, le).
pub const GROUPING_LABELS: [&str; 6] = [
    "interface",
    "client",
    "server",
    "server_port",
    "port_name",
    "ip_family",
];

/// One sample line of the Prometheus text format.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: Labels,
    pub value: f64,
}

impl Sample {
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Every sample in an exposition, in order. `#` lines (HELP, TYPE, comments)
/// and blank lines are skipped. Panics on a malformed line, naming it: the
/// exposition is an output under test.
pub fn samples(text: &str) -> Vec<Sample> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| parse_sample(l).unwrap_or_else(|e| panic!("bad metric line {l:?}: {e}")))
        .collect()
}

fn parse_sample(line: &str) -> Result<Sample, String> {
    let name_end = line
        .find(|c: char| c == '{' || c.is_ascii_whitespace())
        .ok_or("no value")?;
    let name = &line[..name_end];
    if name.is_empty() {
        return Err("no metric name".into());
    }
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(body) = rest.strip_prefix('{') {
        let (parsed, after) = parse_labels(body)?;
        labels = parsed;
        rest = after;
    }
    // The value, then an optional timestamp.
    let value = rest.split_ascii_whitespace().next().ok_or("no value")?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().map_err(|e| format!("value {v:?}: {e}"))?,
    };
    Ok(Sample {
        name: name.to_string(),
        labels,
        value,
    })
}

/// Parses `a="x",b="y"}` (the text after `{`); returns the labels and the
/// text after `}`. Label values may hold `\\`, `\"`, `\n`, `,` and `}`.
fn parse_labels(mut s: &str) -> Result<(Labels, &str), String> {
    let mut labels = Vec::new();
    loop {
        s = s.trim_start();
        if let Some(after) = s.strip_prefix('}') {
            return Ok((labels, after));
        }
        let eq = s.find('=').ok_or("label without '='")?;
        let key = s[..eq].trim().to_string();
        s = s[eq + 1..]
            .trim_start()
            .strip_prefix('"')
            .ok_or("label value not quoted")?;
        let mut value = String::new();
        let mut chars = s.char_indices();
        let end = loop {
            match chars.next() {
                None => return Err("unterminated label value".into()),
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c)) => value.push(c),
                    None => return Err("unterminated escape".into()),
                },
                Some((_, c)) => value.push(c),
            }
        };
        labels.push((key, value));
        s = s[end + 1..].trim_start();
        s = s.strip_prefix(',').unwrap_or(s);
    }
}

/// Sum of the values of every series of the metric `name` (exact name:
/// `tcp_packets_total` does not match `tcp_packets_total_x`).
pub fn sum_metric(text: &str, name: &str) -> f64 {
    samples(text)
        .iter()
        .filter(|s| s.name == name)
        .map(|s| s.value)
        .sum()
}

/// Like [`sum_metric`], over the series whose label `label` equals `value`.
pub fn sum_metric_where(text: &str, name: &str, label: &str, value: &str) -> f64 {
    samples(text)
        .iter()
        .filter(|s| s.name == name && s.label(label) == Some(value))
        .map(|s| s.value)
        .sum()
}

/// `GET path` over HTTP/1.0; returns the status code and the body. Errors
/// when nothing answers (e.g. the server is not listening yet).
pub fn try_http_get(addr: SocketAddr, path: &str) -> io::Result<(u16, String)> {
    let timeout = Duration::from_secs(5);
    let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n")?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let bad =
        |what: &str| io::Error::new(io::ErrorKind::InvalidData, format!("GET {path}: {what}"));
    let head_end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| bad("no end of headers"))?;
    let head = String::from_utf8_lossy(&raw[..head_end]).into_owned();
    let status = head
        .split_ascii_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("no status code"))?;
    let mut body = raw[head_end + 4..].to_vec();
    let chunked = head.lines().any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    if chunked {
        body = dechunk(&body).ok_or_else(|| bad("bad chunked body"))?;
    }
    let body = String::from_utf8(body).map_err(|_| bad("body is not UTF-8"))?;
    Ok((status, body))
}

/// Like [`try_http_get`], panicking when the request fails.
pub fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    try_http_get(addr, path).unwrap_or_else(|e| panic!("GET http://{addr}{path}: {e}"))
}

fn dechunk(mut s: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let eol = s.windows(2).position(|w| w == b"\r\n")?;
        let size = std::str::from_utf8(&s[..eol]).ok()?;
        let size = size.split(';').next()?.trim();
        let size = usize::from_str_radix(size, 16).ok()?;
        s = &s[eol + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(s.get(..size)?);
        s = s.get(size + 2..)?;
    }
}

/// The exporter reading a capture and serving it on 127.0.0.1 (`-r FILE
/// -p PORT ARGS...`); killed when dropped.
pub struct Served {
    pub child: std::process::Child,
    pub addr: SocketAddr,
}

impl Served {
    /// Started, and listening.
    pub fn start(capture: &std::path::Path, args: &[&str]) -> Served {
        use std::process::{Command, Stdio};
        let port = free_port();
        let child = Command::new(env!("CARGO_BIN_EXE_tcp-exporter"))
            .arg("-r")
            .arg(capture)
            .args(["--listen", "127.0.0.1", "-p", &port.to_string()])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start tcp-exporter");
        let served = Served {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
        };
        let until = std::time::Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(served.addr).is_err() {
            assert!(
                std::time::Instant::now() < until,
                "the exporter did not listen"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        served
    }

    /// Started, and done reading the file (`/readyz` says so).
    pub fn read(capture: &std::path::Path, args: &[&str]) -> Served {
        let served = Served::start(capture, args);
        let until = std::time::Instant::now() + Duration::from_secs(60);
        while http_get(served.addr, "/readyz").0 != 200 {
            assert!(std::time::Instant::now() < until, "the file was not read");
            std::thread::sleep(Duration::from_millis(50));
        }
        served
    }

    pub fn url(&self, scheme: &str, path: &str) -> String {
        format!("{scheme}://127.0.0.1:{}{path}", self.addr.port())
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A veth pair of the test's own (`tx{tag}{pid}` and its peer, `...p`), up,
/// removed when dropped (also on failure).
pub struct Veth {
    pub name: String,
    pub peer: String,
}

impl Veth {
    pub fn new(tag: &str) -> Veth {
        let name = format!("tx{tag}{}", std::process::id());
        let peer = format!("{name}p");
        let _ = std::process::Command::new("ip")
            .args(["link", "del", &name])
            .output();
        tool(
            "ip",
            &["link", "add", &name, "type", "veth", "peer", "name", &peer],
        );
        let veth = Veth { name, peer };
        for dev in [&veth.name, &veth.peer] {
            tool("ip", &["link", "set", dev, "up"]);
        }
        veth
    }
}

impl Drop for Veth {
    fn drop(&mut self) {
        // Deleting one end deletes both, with any program attached.
        let _ = std::process::Command::new("ip")
            .args(["link", "del", &self.name])
            .output();
    }
}

/// A local TCP port that was free a moment ago (bound to port 0,
/// released), and never handed out before in this test process: the
/// kernel may give port 0's bind the same port twice, and two exporters
/// started on it by tests running side by side would leave one test
/// talking to the other's exporter (the likely cause of a flake seen
/// once: the kept-alive test's first request reset, as the exporter of
/// the connection-limit test would reset it).
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("bind 127.0.0.1:0")
            .port();
        let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}

/// `promtool check metrics` on an exposition; panics with what promtool
/// said, naming `what`.
pub fn promtool_check(text: &str, what: &str) {
    use std::process::{Command, Stdio};
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool is installed (make test-deps installs prometheus)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool check metrics on {what}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A test capture in testdata/pcaps.
pub fn pcap(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata/pcaps")
        .join(name)
}

/// `tcp-exporter -r CAPTURE --print ARGS...`: the exposition; panics with
/// the exporter's message if it fails.
pub fn print_with(capture: &std::path::Path, args: &[&str]) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tcp-exporter"))
        .arg("-r")
        .arg(capture)
        .arg("--print")
        .args(args)
        .output()
        .expect("run tcp-exporter");
    assert!(
        out.status.success(),
        "tcp-exporter -r {} --print {args:?} failed: {}",
        capture.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 exposition")
}

/// A directory under the system's temporary directory, removed when
/// dropped (also when the test fails).
pub struct TempDir(pub std::path::PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("tcpx-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("make a temporary directory");
        TempDir(dir)
    }

    pub fn path(&self, name: &str) -> std::path::PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs a tool that must succeed (editcap, mergecap, tshark...); its
/// standard output.
pub fn tool(program: &str, args: &[&str]) -> String {
    let out = std::process::Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {program}: {e} (make test-deps installs it)"));
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A Python echo server on ports 5001 and 5002 of every address, a thread
/// per connection; prints `ready` once listening.
pub const ECHO_SERVER: &str = r#"
import socket, sys, threading
def echo(c):
    while True:
        data = c.recv(65536)
        if not data:
            break
        c.sendall(data)
    c.close()
def serve(s):
    while True:
        c, _ = s.accept()
        threading.Thread(target=echo, args=(c,), daemon=True).start()
for port in (5001, 5002):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port))
    s.listen(64)
    threading.Thread(target=serve, args=(s,), daemon=True).start()
print("ready", flush=True)
threading.Event().wait()
"#;

/// How many frames of `capture` tshark's display filter `filter` keeps.
pub fn tshark_frames(capture: &std::path::Path, filter: &str) -> f64 {
    let path = capture.to_str().expect("a UTF-8 path");
    let args = [
        "-nr",
        path,
        "-Y",
        filter,
        "-T",
        "fields",
        "-e",
        "frame.number",
    ];
    tool("tshark", &args).lines().count() as f64
}
