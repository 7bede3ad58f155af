//! The HTTP server end to end: the exporter serving a capture file, spoken
//! to by curl, openssl and raw sockets. Certificates come from openssl and
//! password hashes from htpasswd (bcrypt), made fresh by each test.
//!
//! Covers `--web.config.file` (TLS, client certificates, basic auth,
//! certificate reload, errors at start) and the bounds on what a client can
//! hold: methods and paths, request bodies, header size, the header
//! timeout, the connection limit. Each bound's count in
//! `tcp_exporter_http_rejections_total` is checked.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{free_port, pcap, samples, Served, TempDir};

/// `tcp_exporter_http_rejections_total` by reason, read over plain HTTP.
fn rejections_plain(s: &Served) -> Vec<(String, f64)> {
    let (code, body) = curl(&[&s.url("http", "/metrics")]);
    assert_eq!(code, 200);
    rejections(&body)
}

fn rejections(body: &str) -> Vec<(String, f64)> {
    samples(body)
        .into_iter()
        .filter(|s| s.name == "tcp_exporter_http_rejections_total" && s.value > 0.0)
        .map(|s| (s.label("reason").unwrap().to_string(), s.value))
        .collect()
}

/// curl's status code (0 when no HTTP answer came) and body.
fn curl(args: &[&str]) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-s", "-m", "20", "-w", "\n%{http_code}"])
        .args(args)
        .output()
        .expect("run curl (make test-deps installs it)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

fn run(program: &str, args: &[&str], dir: &Path) {
    let out = Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("run {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `openssl ARGS` in `dir`, the arguments split at spaces.
fn openssl(dir: &Path, args: &str) {
    run("openssl", &args.split(' ').collect::<Vec<_>>(), dir);
}

/// A CA (`CA.crt`, `CA.key`), a server certificate for 127.0.0.1 signed by
/// it (`tls.crt`, `tls.key`), and a client certificate (`client.crt`,
/// `client.key`). Keys are P-256.
fn certificates(dir: &Path, ca: &str) {
    let ec = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
    openssl(
        dir,
        &format!("req -x509 {ec} -keyout {ca}.key -out {ca}.crt -subj /CN=tcpx-test-CA -days 2"),
    );
    std::fs::write(
        dir.join("tls.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )
    .unwrap();
    std::fs::write(dir.join("client.ext"), "extendedKeyUsage=clientAuth\n").unwrap();
    for (name, cn) in [("tls", "127.0.0.1"), ("client", "prometheus")] {
        openssl(
            dir,
            &format!("req {ec} -keyout {name}.key -out {name}.csr -subj /CN={cn}"),
        );
        openssl(
            dir,
            &format!(
                "x509 -req -in {name}.csr -CA {ca}.crt -CAkey {ca}.key -CAcreateserial \
                 -out {name}.crt -days 2 -extfile {name}.ext"
            ),
        );
    }
}

/// A bcrypt hash of `password`, as htpasswd writes it.
fn bcrypt(user: &str, password: &str) -> String {
    let out = Command::new("htpasswd")
        .args(["-nbBC", "10", user, password])
        .output()
        .expect("run htpasswd (apache2-utils; make test-deps installs it)");
    assert!(out.status.success());
    let line = String::from_utf8(out.stdout).unwrap();
    line.trim().split_once(':').unwrap().1.to_string()
}

#[test]
fn only_get_and_head_on_known_paths_without_a_body_are_served() {
    let s = Served::start(&pcap("short_conns.pcap"), &[]);
    let url = |p: &str| s.url("http", p);
    assert_eq!(curl(&[&url("/metrics")]).0, 200);
    assert_eq!(curl(&[&url("/healthz")]), (200, "ok\n".into()));
    assert_eq!(curl(&[&url("/readyz")]).0, 200);
    assert_eq!(curl(&[&url("/")]).0, 200);
    assert_eq!(curl(&[&url("/connections")]).0, 200);
    let (code, page) = curl(&[&url("/connections.html")]);
    assert_eq!(code, 200);
    assert!(
        !page.contains("http://") && !page.contains("https://"),
        "the page loads nothing from elsewhere"
    );
    let (code, body) = curl(&["-I", &url("/connections")]);
    assert_eq!(code, 200, "HEAD");
    assert!(body.contains("application/json"), "{body}");
    let (code, body) = curl(&["-I", &url("/metrics")]);
    assert_eq!(code, 200, "HEAD");
    assert!(body.contains("text/plain; version=0.0.4"), "{body}");
    for method in ["POST", "PUT", "DELETE", "OPTIONS", "PATCH"] {
        let (code, body) = curl(&["-X", method, "-i", &url("/metrics")]);
        assert_eq!(code, 405, "{method}");
        assert!(
            body.to_ascii_lowercase().contains("allow: get, head"),
            "{body}"
        );
    }
    for path in [
        "/metricsx",
        "/metrics/",
        "/connections/",
        "/admin",
        "/../etc/passwd",
        "/favicon.ico",
    ] {
        assert_eq!(curl(&["--path-as-is", &url(path)]).0, 404, "{path}");
    }
    assert_eq!(curl(&["-X", "GET", "-d", "x=1", &url("/metrics")]).0, 413);
    let big = format!("X-Big: {}", "a".repeat(20_000));
    assert_eq!(curl(&["-H", &big, &url("/metrics")]).0, 431);
    let many: Vec<String> = (0..120).map(|i| format!("X-{i}: v")).collect();
    let mut args: Vec<&str> = many.iter().flat_map(|h| ["-H", h.as_str()]).collect();
    let u = url("/metrics");
    args.push(&u);
    assert_eq!(curl(&args).0, 431, "more headers than hyper parses");
    assert_eq!(
        rejections_plain(&s),
        [
            ("header_too_large".to_string(), 2.0),
            ("method_not_allowed".to_string(), 5.0),
            ("not_found".to_string(), 6.0),
            ("request_body".to_string(), 1.0),
        ]
    );
}

#[test]
fn silent_and_slow_clients_are_cut_after_the_header_timeout() {
    let s = Served::start(&pcap("short_conns.pcap"), &[]);
    let opened = Instant::now();
    let silent = TcpStream::connect(s.addr).unwrap();
    let mut slow = TcpStream::connect(s.addr).unwrap();
    slow.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    // The bound is 10 s from the server's accept, which follows the
    // connect: the close comes no earlier, and not long after (a reader
    // gives up 4 s past the bound).
    let bound = Duration::from_secs(10);
    for mut c in [silent, slow] {
        c.set_read_timeout(Some(bound + Duration::from_secs(4) - opened.elapsed()))
            .unwrap();
        let mut buf = [0u8; 1024];
        // The server closes it: end of stream, or a reset.
        match c.read(&mut buf) {
            Ok(n) => assert_eq!(n, 0, "{:?}", String::from_utf8_lossy(&buf[..n])),
            Err(e) => assert_eq!(
                e.kind(),
                std::io::ErrorKind::ConnectionReset,
                "{e}: not closed within 4 s of the header timeout"
            ),
        }
        assert!(
            opened.elapsed() >= bound,
            "closed after {:?}, before the {bound:?} header timeout",
            opened.elapsed()
        );
    }
    // The count may follow the close by a moment (hyper closes, then
    // reports its timeout).
    let until = Instant::now() + Duration::from_secs(5);
    while rejections_plain(&s) != [("header_timeout".to_string(), 2.0)] {
        assert!(
            Instant::now() < until,
            "header timeouts: {:?}",
            rejections_plain(&s)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Whether the server has closed a connection (end of stream or reset),
/// without waiting.
fn closed_by_server(c: &TcpStream) -> bool {
    c.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 1];
    let closed = match c.peek(&mut buf) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
    };
    c.set_nonblocking(false).unwrap();
    closed
}

#[test]
fn connections_beyond_the_limit_are_closed_and_counted() {
    let s = Served::start(&pcap("short_conns.pcap"), &[]);
    // Only the scrape that reads it is open: the start-up check's bare
    // connection has been let go.
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let (code, body) = curl(&[&s.url("http", "/metrics")]);
        assert_eq!(code, 200);
        if common::sum_metric(&body, "tcp_exporter_http_connections") == 1.0 {
            break;
        }
        assert!(
            Instant::now() < until,
            "connections left open before the test"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // (and that scrape's own connection, closed by curl as it ends.)
    std::thread::sleep(Duration::from_millis(300));
    // 70 connections that each send a request's first line and wait: the
    // server holds exactly 64 and closes the rest at once, unanswered.
    let conns: Vec<TcpStream> = (0..70)
        .map(|_| {
            let mut c = TcpStream::connect(s.addr).unwrap();
            c.write_all(b"GET /metrics HTTP/1.1\r\n").unwrap();
            c
        })
        .collect();
    let count = || conns.iter().filter(|c| closed_by_server(c)).count();
    let until = Instant::now() + Duration::from_secs(10);
    while count() < 70 - 64 {
        assert!(Instant::now() < until, "only {} closed", count());
        std::thread::sleep(Duration::from_millis(100));
    }
    // The closes are made at accept time: let the last ones arrive.
    std::thread::sleep(Duration::from_millis(500));
    let closed = count();
    assert_eq!(70 - closed, 64, "connections held open at the limit");
    drop(conns);
    // The server sees them close; then a scrape gets through.
    let until = Instant::now() + Duration::from_secs(10);
    let body = loop {
        let (code, body) = curl(&[&s.url("http", "/metrics")]);
        if code == 200 {
            break body;
        }
        assert!(
            Instant::now() < until,
            "no scrape after the held connections closed"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(
        rejections(&body),
        [("connection_limit".to_string(), closed as f64)]
    );
}

#[test]
fn tls_and_basic_auth_let_in_the_right_password_only() {
    let dir = TempDir::new("http-tls-auth");
    certificates(&dir.0, "ca");
    let hash = bcrypt("prometheus", "s3cret:with colon");
    std::fs::write(
        dir.path("web.yml"),
        format!(
            "tls_server_config:\n  cert_file: tls.crt\n  key_file: tls.key\n\
             basic_auth_users:\n  prometheus: '{hash}'\n  other: '{}'\n\
             http_server_config:\n  headers:\n    X-Frame-Options: deny\n",
            bcrypt("other", "x")
        ),
    )
    .unwrap();
    let s = Served::start(
        &pcap("short_conns.pcap"),
        &["--web.config.file", dir.path("web.yml").to_str().unwrap()],
    );
    let ca = dir.path("ca.crt");
    let ca = ca.to_str().unwrap();
    let https = s.url("https", "/metrics");
    let (code, body) = curl(&["--cacert", ca, "-u", "prometheus:s3cret:with colon", &https]);
    assert_eq!(code, 200);
    assert!(body.contains("tcp_packets_total"));
    // Once more: the remembered credential.
    assert_eq!(
        curl(&["--cacert", ca, "-u", "prometheus:s3cret:with colon", &https]).0,
        200
    );
    for wrong in [
        "prometheus:s3cret",
        "prometheus:",
        "other:s3cret:with colon",
        "nobody:x",
    ] {
        assert_eq!(
            curl(&["--cacert", ca, "-u", wrong, &https]).0,
            401,
            "{wrong}"
        );
    }
    let (code, head) = curl(&["--cacert", ca, "-i", &https]);
    assert_eq!(code, 401, "no credentials");
    let head = head.to_ascii_lowercase();
    assert!(head.contains("www-authenticate: basic"), "{head}");
    assert!(head.contains("x-frame-options: deny"), "{head}");
    assert_eq!(curl(&["--cacert", ca, &s.url("https", "/")]).0, 401);
    for path in ["/connections", "/connections.html"] {
        assert_eq!(
            curl(&["--cacert", ca, &s.url("https", path)]).0,
            401,
            "{path}"
        );
    }
    // tcp-exporter top, over TLS and with the password.
    let top = Command::new(env!("CARGO_BIN_EXE_tcp-exporter"))
        .args(["top", "--once", "--ca", ca, "--user", "prometheus"])
        .arg(s.url("https", ""))
        .env("TCP_EXPORTER_PASSWORD", "s3cret:with colon")
        .output()
        .unwrap();
    assert!(
        top.status.success(),
        "{}",
        String::from_utf8_lossy(&top.stderr)
    );
    assert!(
        String::from_utf8_lossy(&top.stdout).contains("10.250.0.2:8080"),
        "{}",
        String::from_utf8_lossy(&top.stdout)
    );
    // Health probes need no password (the kubelet has none).
    assert_eq!(curl(&["--cacert", ca, &s.url("https", "/healthz")]).0, 200);
    assert_eq!(curl(&["--cacert", ca, &s.url("https", "/readyz")]).0, 200);
    // Plain HTTP to the TLS port, and a client that does not trust the
    // certificate: no HTTP answer at all.
    assert_eq!(curl(&[&s.url("http", "/healthz")]).0, 0);
    assert_eq!(curl(&[&s.url("https", "/healthz")]).0, 0);
    // TLS 1.2 and 1.3 both work by default.
    assert_eq!(
        curl(&[
            "--cacert",
            ca,
            "--tls-max",
            "1.2",
            &s.url("https", "/healthz")
        ])
        .0,
        200
    );
    let (code, body) = curl(&["--cacert", ca, "-u", "prometheus:s3cret:with colon", &https]);
    assert_eq!(code, 200);
    // Handshakes: the two above, and the start-up check's bare connect.
    assert_eq!(
        rejections(&body),
        [
            ("tls_handshake".to_string(), 3.0),
            ("unauthorized".to_string(), 8.0)
        ]
    );
}

#[test]
fn client_certificates_are_required_and_verified() {
    let dir = TempDir::new("http-mtls");
    certificates(&dir.0, "ca");
    // A second CA whose client certificate the server must not accept.
    let other = TempDir::new("http-mtls-other");
    certificates(&other.0, "ca");
    std::fs::write(
        dir.path("web.yml"),
        "tls_server_config:\n  cert_file: tls.crt\n  key_file: tls.key\n  \
         client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.crt\n  \
         min_version: TLS13\n",
    )
    .unwrap();
    let s = Served::start(
        &pcap("short_conns.pcap"),
        &["--web.config.file", dir.path("web.yml").to_str().unwrap()],
    );
    let p = |d: &TempDir, f: &str| d.path(f).to_str().unwrap().to_string();
    let url = s.url("https", "/metrics");
    let ca = p(&dir, "ca.crt");
    let (cert, key) = (p(&dir, "client.crt"), p(&dir, "client.key"));
    assert_eq!(
        curl(&["--cacert", &ca, "--cert", &cert, "--key", &key, &url]).0,
        200
    );
    assert_eq!(curl(&["--cacert", &ca, &url]).0, 0, "no client certificate");
    let (bad_cert, bad_key) = (p(&other, "client.crt"), p(&other, "client.key"));
    assert_eq!(
        curl(&["--cacert", &ca, "--cert", &bad_cert, "--key", &bad_key, &url]).0,
        0,
        "a client certificate from another CA"
    );
    assert_eq!(
        curl(&[
            "--cacert",
            &ca,
            "--cert",
            &cert,
            "--key",
            &key,
            "--tls-max",
            "1.2",
            &url
        ])
        .0,
        0,
        "TLS 1.2 below min_version TLS13"
    );
    let (code, body) = curl(&["--cacert", &ca, "--cert", &cert, "--key", &key, &url]);
    assert_eq!(code, 200);
    // The three above, and the start-up check's bare connect.
    assert_eq!(rejections(&body), [("tls_handshake".to_string(), 4.0)]);
}

/// The serial number of the certificate the server presents.
fn served_serial(addr: SocketAddr) -> String {
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "openssl s_client -connect {addr} </dev/null 2>/dev/null | openssl x509 -noout -serial"
        ))
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn file_serial(path: &Path) -> String {
    let out = Command::new("openssl")
        .args(["x509", "-noout", "-serial", "-in"])
        .arg(path)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn a_renewed_certificate_is_served_without_a_restart() {
    let dir = TempDir::new("http-reload");
    certificates(&dir.0, "ca");
    std::fs::write(
        dir.path("web.yml"),
        "tls_server_config:\n  cert_file: tls.crt\n  key_file: tls.key\n",
    )
    .unwrap();
    let s = Served::start(
        &pcap("short_conns.pcap"),
        &["--web.config.file", dir.path("web.yml").to_str().unwrap()],
    );
    let first = file_serial(&dir.path("tls.crt"));
    assert!(first.starts_with("serial="), "{first}");
    assert_eq!(served_serial(s.addr), first);
    // A renewal writes a new key and certificate (a new serial).
    let renewed = TempDir::new("http-reload-new");
    certificates(&renewed.0, "ca");
    let second = file_serial(&renewed.path("tls.crt"));
    assert_ne!(first, second);
    // A half-written renewal (the certificate without its key) is not
    // taken: the old pair stays in service.
    std::fs::copy(renewed.path("tls.crt"), dir.path("tls.crt")).unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        served_serial(s.addr),
        first,
        "a mismatched pair is not served"
    );
    std::fs::copy(renewed.path("tls.key"), dir.path("tls.key")).unwrap();
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        std::thread::sleep(Duration::from_millis(500));
        if served_serial(s.addr) == second {
            break;
        }
        assert!(
            Instant::now() < until,
            "the renewed certificate was not served"
        );
    }
}

#[test]
fn a_web_config_that_cannot_work_stops_the_start_with_the_reason() {
    let dir = TempDir::new("http-bad-config");
    certificates(&dir.0, "ca");
    let other = TempDir::new("http-bad-config-other");
    certificates(&other.0, "ca");
    let cases = [
        (
            "tls_server_config:\n  cert_file: tls.crt\n  key_file: missing.key\n",
            "missing.key",
        ),
        (
            &format!(
                "tls_server_config:\n  cert_file: tls.crt\n  key_file: {}\n",
                other.path("tls.key").display()
            ),
            "cert_file and key_file",
        ),
        (
            "basic_auth_users:\n  prometheus: plaintext\n",
            "not a bcrypt hash",
        ),
        (
            "tls_server_config:\n  cert_file: tls.crt\n",
            "missing field `key_file` at line 2",
        ),
        ("tls_config: {}\n", "unknown field `tls_config`"),
        (
            "tls_server_config:\n  cert_file: tls.crt\n  key_file: tls.key\n  cert_fil: x\n",
            "unknown field `cert_fil`",
        ),
    ];
    for (text, why) in cases {
        std::fs::write(dir.path("web.yml"), text).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_tcp-exporter"))
            .arg("-r")
            .arg(pcap("short_conns.pcap"))
            .args(["--listen", "127.0.0.1", "-p", &free_port().to_string()])
            .args(["--web.config.file", dir.path("web.yml").to_str().unwrap()])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{text:?}: {stderr}");
        assert!(stderr.contains(why), "{text:?}: {stderr}");
        assert!(stderr.contains("--web.config.file"), "{stderr}");
    }
    let out = Command::new(env!("CARGO_BIN_EXE_tcp-exporter"))
        .args([
            "-r",
            "x.pcap",
            "--print",
            "--web.config.file",
            "/nonexistent/web.yml",
        ])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/web.yml"));
}

/// `GET /metrics` over HTTP/1.0 with extra request headers; the response
/// head (lowercased) and the body's bytes.
fn get_raw(addr: SocketAddr, headers: &str) -> (String, Vec<u8>) {
    let mut c = TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(c, "GET /metrics HTTP/1.0\r\nHost: x\r\n{headers}\r\n").unwrap();
    let mut raw = Vec::new();
    c.read_to_end(&mut raw).unwrap();
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
    (head, raw[end + 4..].to_vec())
}

#[test]
fn metrics_are_gzipped_for_clients_that_take_it_and_say_the_same() {
    use std::io::Read as _;
    let s = Served::start(&pcap("short_conns.pcap"), &[]);
    let (plain_head, plain) = get_raw(s.addr, "");
    assert!(plain_head.starts_with("http/1.0 200"), "{plain_head}");
    assert!(!plain_head.contains("content-encoding"), "{plain_head}");
    // As Prometheus asks.
    let (head, gz) = get_raw(s.addr, "Accept-Encoding: gzip\r\n");
    assert!(head.contains("content-encoding: gzip"), "{head}");
    assert!(head.contains("vary: accept-encoding"), "{head}");
    assert!(
        gz.len() * 5 < plain.len(),
        "{} bytes gzipped, {} plain",
        gz.len(),
        plain.len()
    );
    let mut unzipped = Vec::new();
    flate2::read::GzDecoder::new(&gz[..])
        .read_to_end(&mut unzipped)
        .expect("a gzip stream");
    assert_eq!(
        String::from_utf8(unzipped).unwrap(),
        String::from_utf8(plain).unwrap(),
        "the same exposition"
    );
    // Refused by q=0, or not offered: plain text.
    for refused in [
        "Accept-Encoding: gzip;q=0\r\n",
        "Accept-Encoding: br, identity\r\n",
    ] {
        let (head, _) = get_raw(s.addr, refused);
        assert!(!head.contains("content-encoding"), "{refused}: {head}");
    }
}

/// A connection kept alive after a request waits for the next one for the
/// idle timeout (120 s), not the header timeout: Prometheus scrapes every
/// 15 s or more over one connection.
#[test]
fn a_kept_alive_connection_outlives_the_header_timeout() {
    let s = Served::start(&pcap("short_conns.pcap"), &[]);
    let mut c = TcpStream::connect(s.addr).unwrap();
    c.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut buf = [0u8; 1024];
    let n = c.read(&mut buf).unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    std::thread::sleep(Duration::from_secs(12));
    // Still open: the next request on it is answered.
    c.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let n = c.read(&mut buf).unwrap();
    assert!(
        buf[..n].starts_with(b"HTTP/1.1 200"),
        "{:?}",
        String::from_utf8_lossy(&buf[..n])
    );
    assert_eq!(rejections_plain(&s), []);
}
