//! `tcp-exporter top URL`: a terminal client of the connection table
//! (`GET /connections`), for an engineer on a node over SSH. It shows the
//! worst connections, refreshed in place like `top`: q quits, s takes the
//! next order, p pauses, r refreshes now. `--once` prints the table once
//! and exits (for scripts, and when the output is not a terminal).
//!
//! It is a plain HTTP/1.1 client (one request per refresh, the connection
//! closed after it), with TLS when the URL is `https://` and basic
//! authentication with `--user` (the password from
//! `TCP_EXPORTER_PASSWORD`), as `--web.config.file` may ask for.

use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use base64::Engine as _;
use clap::Parser;
use serde_json::Value;

use crate::cli::duration;
use crate::metrics::table::Sort;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const READ_TIMEOUT: Duration = Duration::from_secs(30);
/// An answer larger than this is refused (1,000 connections are ~2 MB).
const MAX_ANSWER: u64 = 32 << 20;

/// `tcp-exporter top`.
#[derive(Parser, Debug)]
#[command(
    name = "tcp-exporter top",
    about = "The worst connections an exporter sees now, refreshed in place (q quits, s changes \
             the order, p pauses, r refreshes)"
)]
pub struct TopArgs {
    /// The exporter: http://HOST:PORT or https://HOST:PORT.
    pub url: String,

    /// How often the table is refreshed.
    #[arg(long, value_name = "DURATION", value_parser = duration, default_value = "2s")]
    pub interval: Duration,

    /// The first order: retransmissions, retransmission_rate, rtt, bytes,
    /// age or last_activity.
    #[arg(long, default_value = "retransmissions")]
    pub sort: String,

    /// Filters, as /connections takes them, e.g. namespace=shop&port=443.
    #[arg(long, value_name = "QUERY", default_value = "")]
    pub filter: String,

    /// Connections shown; by default as many as the terminal has rows.
    #[arg(long)]
    pub limit: Option<usize>,

    /// Print the table once and exit.
    #[arg(long)]
    pub once: bool,

    /// Basic-authentication user; the password is read from
    /// TCP_EXPORTER_PASSWORD.
    #[arg(long)]
    pub user: Option<String>,

    /// With https://: the CA certificates (PEM) that check the exporter's;
    /// without, the system's.
    #[arg(long, value_name = "FILE")]
    pub ca: Option<PathBuf>,
}

/// Runs `top` with the arguments after `top`.
pub fn run(argv: impl IntoIterator<Item = String>) -> Result<()> {
    let args = TopArgs::parse_from(std::iter::once("tcp-exporter top".to_string()).chain(argv));
    let client = Client::new(&args)?;
    let sort = Sort::ALL
        .into_iter()
        .position(|s| s.as_str() == args.sort)
        .ok_or_else(|| anyhow!("--sort {:?}: not an order /connections knows", args.sort))?;
    let tty = is_terminal();
    if args.once || !tty {
        let (_, rows) = terminal_size().unwrap_or((200, 50));
        let limit = args
            .limit
            .unwrap_or((rows as usize).saturating_sub(3).max(10));
        let answer = client.table(Sort::ALL[sort], limit)?;
        let width = if tty {
            terminal_size().map_or(200, |s| s.0)
        } else {
            400
        };
        print!(
            "{}",
            render(&args.url, &answer, width, None, false).join("\n") + "\n"
        );
        return Ok(());
    }
    let _screen = Screen::enter()?;
    interactive(args, client, sort)
}

/// What the interactive loop waits for.
enum Event {
    Key(u8),
    /// The answer to a request for this order.
    Answer(usize, Result<Value>),
}

/// The table refreshed in place until q: requests go to a thread of their
/// own, so that keys work while one is on its way.
fn interactive(args: TopArgs, client: Client, mut sort: usize) -> Result<()> {
    let (events, inbox) = mpsc::channel();
    read_keys(events.clone());
    let (requests, asked) = mpsc::channel::<(usize, usize)>();
    std::thread::spawn(move || {
        for (order, limit) in asked {
            let answer = client.table(Sort::ALL[order], limit);
            if events.send(Event::Answer(order, answer)).is_err() {
                break;
            }
        }
    });
    let mut paused = false;
    let mut last: Option<Value> = None;
    let mut error: Option<String> = None;
    let mut waiting = false;
    let mut due = Instant::now();
    loop {
        let (width, height) = terminal_size().unwrap_or((120, 40));
        if !paused && !waiting && Instant::now() >= due {
            let limit = args
                .limit
                .unwrap_or((height as usize).saturating_sub(4).max(1));
            if requests.send((sort, limit)).is_err() {
                bail!("the request thread stopped");
            }
            waiting = true;
        }
        let lines = match &last {
            Some(answer) => render(&args.url, answer, width, error.as_deref(), paused),
            None => vec![cut(
                &format!(
                    "tcp-exporter top {}: {}",
                    args.url,
                    error.as_deref().unwrap_or("waiting for the first answer")
                ),
                width as usize,
            )],
        };
        draw(&lines, height as usize)?;
        let wait = if waiting {
            args.interval
        } else {
            due.saturating_duration_since(Instant::now())
        };
        match inbox.recv_timeout(wait.max(Duration::from_millis(10))) {
            Ok(Event::Key(b'q' | 3)) | Err(mpsc::RecvTimeoutError::Disconnected) => return Ok(()),
            Ok(Event::Key(b's')) => {
                sort = (sort + 1) % Sort::ALL.len();
                due = Instant::now();
            }
            Ok(Event::Key(b'p')) => paused = !paused,
            Ok(Event::Key(b'r')) => due = Instant::now(),
            Ok(Event::Answer(order, answer)) => {
                waiting = false;
                // An answer in an order given up meanwhile is not shown.
                if order == sort {
                    match answer {
                        Ok(a) => {
                            last = Some(a);
                            error = None;
                        }
                        Err(e) => error = Some(format!("{e:#}")),
                    }
                    due = Instant::now() + args.interval;
                }
            }
            Ok(Event::Key(_)) | Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
    }
}

/// Where the exporter is, and how to ask it.
struct Client {
    host: String,
    port: u16,
    /// A path the exporter is served under (behind a proxy), without the
    /// trailing slash.
    base: String,
    tls: Option<Arc<rustls::ClientConfig>>,
    authorization: Option<String>,
    /// `--filter`, its values %-encoded.
    filter: String,
}

impl Client {
    fn new(args: &TopArgs) -> Result<Client> {
        let (https, rest) = if let Some(rest) = args.url.strip_prefix("http://") {
            (false, rest)
        } else if let Some(rest) = args.url.strip_prefix("https://") {
            (true, rest)
        } else {
            bail!(
                "{}: give the exporter as http://HOST:PORT or https://HOST:PORT",
                args.url
            );
        };
        let (authority, base) = match rest.find('/') {
            Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
            None => (rest, ""),
        };
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !p.contains(']') => (
                h,
                p.parse::<u16>()
                    .map_err(|_| anyhow!("{}: {p:?} is not a port", args.url))?,
            ),
            _ => (authority, if https { 443 } else { 80 }),
        };
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        if host.is_empty() {
            bail!("{}: no host", args.url);
        }
        let tls = match (https, &args.ca) {
            (false, Some(_)) => bail!("--ca is for an https:// URL"),
            (false, None) => None,
            (true, ca) => {
                let files = crate::otlp::tls::TlsFiles {
                    ca: ca.clone(),
                    identity: None,
                };
                Some(crate::otlp::tls::load_for(&files, "-")?.client)
            }
        };
        let authorization = match &args.user {
            Some(user) => {
                let password = std::env::var("TCP_EXPORTER_PASSWORD")
                    .context("--user: set the password in TCP_EXPORTER_PASSWORD")?;
                let token =
                    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
                Some(format!("Basic {token}"))
            }
            None => None,
        };
        Ok(Client {
            host,
            port,
            base: base.to_string(),
            tls,
            authorization,
            filter: encode_filter(&args.filter)?,
        })
    }

    /// `/connections` in this order, with the filters, at most `limit`,
    /// parsed.
    fn table(&self, sort: Sort, limit: usize) -> Result<Value> {
        let mut query = format!("sort={}&limit={limit}", sort.as_str());
        if !self.filter.is_empty() {
            query.push('&');
            query.push_str(&self.filter);
        }
        let (status, body) = self.get(&format!("{}/connections?{query}", self.base))?;
        let text = String::from_utf8_lossy(&body);
        if status != 200 {
            bail!("HTTP {status}: {}", printable(text.trim()));
        }
        serde_json::from_str(&text).context("the answer is not the table's JSON")
    }

    fn get(&self, path: &str) -> Result<(u16, Vec<u8>)> {
        let addrs: Vec<_> = (self.host.as_str(), self.port)
            .to_socket_addrs()
            .with_context(|| format!("{}: cannot resolve", self.host))?
            .collect();
        let mut stream = None;
        let mut failure = None;
        for addr in &addrs {
            match TcpStream::connect_timeout(addr, CONNECT_TIMEOUT) {
                Ok(s) => {
                    stream = Some(s);
                    break;
                }
                Err(e) => failure = Some(anyhow!("{addr}: {e}")),
            }
        }
        let stream = match stream {
            Some(s) => s,
            None => return Err(failure.unwrap_or_else(|| anyhow!("{}: no address", self.host))),
        };
        stream.set_read_timeout(Some(READ_TIMEOUT))?;
        stream.set_write_timeout(Some(READ_TIMEOUT))?;
        let host = if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        };
        let mut request = format!(
            "GET {path} HTTP/1.1\r\nHost: {host}\r\nAccept: application/json\r\nConnection: close\r\n"
        );
        if let Some(a) = &self.authorization {
            request.push_str(&format!("Authorization: {a}\r\n"));
        }
        request.push_str("\r\n");
        let mut answer = Vec::new();
        match &self.tls {
            None => exchange(stream, &request, &mut answer)?,
            Some(config) => {
                let name = rustls::pki_types::ServerName::try_from(self.host.clone())
                    .map_err(|e| anyhow!("{}: {e}", self.host))?;
                let conn = rustls::ClientConnection::new(Arc::clone(config), name)?;
                exchange(
                    rustls::StreamOwned::new(conn, stream),
                    &request,
                    &mut answer,
                )?;
            }
        }
        parse_response(&answer)
    }
}

/// `--filter`'s `NAME=VALUE` pairs, each value %-encoded; the order and
/// the limit have flags of their own.
fn encode_filter(filter: &str) -> Result<String> {
    let mut pairs = Vec::new();
    for pair in filter
        .trim_start_matches('?')
        .split('&')
        .filter(|p| !p.is_empty())
    {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            bail!("--filter: {name:?} is not a parameter name");
        }
        if name == "sort" || name == "limit" {
            bail!("--filter: give {name} with --{name}");
        }
        let mut encoded = String::new();
        for b in value.bytes() {
            if b.is_ascii_alphanumeric() || b"-._~:/".contains(&b) {
                encoded.push(b as char);
            } else {
                encoded.push_str(&format!("%{b:02X}"));
            }
        }
        pairs.push(format!("{name}={encoded}"));
    }
    Ok(pairs.join("&"))
}

fn exchange(mut stream: impl Read + Write, request: &str, answer: &mut Vec<u8>) -> Result<()> {
    stream.write_all(request.as_bytes())?;
    stream.flush()?;
    let read = stream.take(MAX_ANSWER + 1).read_to_end(answer);
    // A TLS peer that closes without close_notify ends the body all the
    // same: Connection: close delimits it, and Content-Length is checked.
    if let Err(e) = read {
        if answer.is_empty() || e.kind() != io::ErrorKind::UnexpectedEof {
            return Err(e.into());
        }
    }
    if answer.len() as u64 > MAX_ANSWER {
        bail!("the answer is larger than {MAX_ANSWER} bytes");
    }
    Ok(())
}

/// Status and body of an HTTP/1.1 response read to its end.
fn parse_response(raw: &[u8]) -> Result<(u16, Vec<u8>)> {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| anyhow!("the answer has no end of headers"))?;
    let head = std::str::from_utf8(&raw[..end]).context("headers not UTF-8")?;
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| anyhow!("not an HTTP response"))?;
    let mut chunked = false;
    let mut length = None;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.eq_ignore_ascii_case("chunked");
        } else if name.eq_ignore_ascii_case("content-length") {
            length = value.parse::<usize>().ok();
        }
    }
    let body = &raw[end + 4..];
    let body = if chunked {
        dechunk(body)?
    } else {
        match length {
            Some(n) if body.len() < n => {
                bail!("the answer ended after {} of {n} bytes", body.len())
            }
            Some(n) => body[..n].to_vec(),
            None => body.to_vec(),
        }
    };
    Ok((status, body))
}

fn dechunk(mut body: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = body
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or_else(|| anyhow!("a chunk without its size line"))?;
        let size = std::str::from_utf8(&body[..line_end])
            .ok()
            .and_then(|l| usize::from_str_radix(l.split(';').next()?.trim(), 16).ok())
            .ok_or_else(|| anyhow!("a bad chunk size"))?;
        body = &body[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        if body.len().saturating_sub(2) < size {
            bail!("the answer ended inside a chunk");
        }
        out.extend_from_slice(&body[..size]);
        body = &body[size + 2..];
    }
}

/// The screen's lines: a header, the column names, a row per connection,
/// each cut to `width` characters.
fn render(url: &str, a: &Value, width: u16, error: Option<&str>, paused: bool) -> Vec<String> {
    let conns = a["connections"].as_array().map_or(&[][..], Vec::as_slice);
    let mut lines = vec![format!(
        "tcp-exporter top {url}  sort: {}  showing {} of {} matching ({} in the table)  capture time {}{}",
        a["sort"].as_str().unwrap_or("?"),
        conns.len(),
        a["matched"],
        a["held"],
        a["time"].as_str().unwrap_or("?"),
        if paused { "  PAUSED" } else { "" },
    )];
    lines.push(match error {
        Some(e) => format!("error: {e} (showing the last answer)"),
        None => "q quit  s next order  p pause  r refresh".to_string(),
    });
    lines.push(format!(
        "{:<18} {:<30} {:<30} {:<10} {:>8} {:>8} {:>15} {:>9} {:>7} {:>7} {:>6} {:>5} {:>5} {:>9} {:>9} {:>9}",
        "STATE", "CLIENT", "SERVER", "IFACE", "AGE", "IDLE", "PKTS C/S", "BYTES", "RETRANS",
        "RATE", "DUPACK", "LOST", "ZWIN", "RTT", "MIN RTT", "HANDSHAKE"
    ));
    for c in conns {
        let sum = |field: &str| {
            c["client_sent"][field].as_u64().unwrap_or(0)
                + c["server_sent"][field].as_u64().unwrap_or(0)
        };
        let state = match c["reason"].as_str() {
            Some(reason) => format!("{} ({reason})", c["state"].as_str().unwrap_or("?")),
            None => c["state"].as_str().unwrap_or("?").to_string(),
        };
        let min_rtt = ["client", "server"]
            .iter()
            .filter_map(|leg| c["rtt"][leg]["min"].as_f64())
            .reduce(f64::min);
        let handshake = match (
            c["handshake_rtt"]["client"].as_f64(),
            c["handshake_rtt"]["server"].as_f64(),
        ) {
            (None, None) => None,
            (a, b) => Some(a.unwrap_or(0.0) + b.unwrap_or(0.0)),
        };
        lines.push(format!(
            "{:<18} {:<30} {:<30} {:<10} {:>8} {:>8} {:>15} {:>9} {:>7} {:>6.2}% {:>6} {:>5} {:>5} {:>9} {:>9} {:>9}",
            cut(&state, 18),
            cut(&endpoint(c, "client"), 30),
            cut(&endpoint(c, "server"), 30),
            cut(c["interface"].as_str().unwrap_or(""), 10),
            seconds(c["duration"].as_f64()),
            seconds(c["idle"].as_f64()),
            format!("{}/{}", c["client_sent"]["packets"], c["server_sent"]["packets"]),
            bytes(sum("payload_bytes")),
            c["retransmissions"].as_u64().unwrap_or(0),
            c["retransmission_rate"].as_f64().unwrap_or(0.0) * 100.0,
            sum("duplicate_acks"),
            sum("lost_segments"),
            sum("zero_windows"),
            seconds(c["rtt_seconds"].as_f64()),
            seconds(min_rtt),
            seconds(handshake),
        ));
    }
    lines.iter().map(|l| cut(l, width as usize)).collect()
}

/// An end as a person reads it: its workload when the exporter knows it,
/// else its address and port.
fn endpoint(c: &Value, side: &str) -> String {
    let addr = c[side].as_str().unwrap_or("?");
    let port = &c[format!("{side}_port")];
    let workload = c[format!("{side}_workload")].as_str().unwrap_or("");
    let namespace = c[format!("{side}_namespace")].as_str().unwrap_or("");
    match (workload, namespace) {
        ("", _) if addr.contains(':') => format!("[{addr}]:{port}"),
        ("", _) => format!("{addr}:{port}"),
        (w, "") => format!("{w}:{port}"),
        (w, ns) => format!("{ns}/{w}:{port}"),
    }
}

/// `text` fit to `width` characters, control characters (which could
/// move the cursor or change the terminal) shown as `?`.
fn cut(text: &str, width: usize) -> String {
    let text = printable(text);
    if text.chars().count() <= width {
        text
    } else {
        let mut s: String = text.chars().take(width.saturating_sub(1)).collect();
        s.push('~');
        s
    }
}

/// What the server said, safe to print on a terminal.
fn printable(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

fn seconds(s: Option<f64>) -> String {
    match s {
        None => "-".into(),
        Some(s) if s < 0.001 => format!("{:.0}us", s * 1e6),
        Some(s) if s < 1.0 => format!("{:.1}ms", s * 1e3),
        Some(s) if s < 120.0 => format!("{s:.1}s"),
        Some(s) if s < 7200.0 => format!("{:.1}m", s / 60.0),
        Some(s) => format!("{:.1}h", s / 3600.0),
    }
}

fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "K", "M", "G", "T"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1000.0 && i < UNITS.len() - 1 {
        v /= 1000.0;
        i += 1;
    }
    if i == 0 {
        format!("{n}B")
    } else {
        format!("{v:.1}{}", UNITS[i])
    }
}

/// Redraws in place: each line cleared to its end, and what is below.
fn draw(lines: &[String], height: usize) -> io::Result<()> {
    let mut out = String::from("\x1b[H");
    for line in lines.iter().take(height.max(1)) {
        out.push_str(line);
        out.push_str("\x1b[K\r\n");
    }
    out.push_str("\x1b[J");
    let mut stdout = io::stdout().lock();
    stdout.write_all(out.as_bytes())?;
    stdout.flush()
}

fn is_terminal() -> bool {
    // SAFETY: isatty only reads the descriptor's state.
    unsafe { libc::isatty(libc::STDOUT_FILENO) == 1 && libc::isatty(libc::STDIN_FILENO) == 1 }
}

/// Columns and rows of the terminal.
fn terminal_size() -> Option<(u16, u16)> {
    // SAFETY: TIOCGWINSZ writes a winsize into the struct given.
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    let ok = unsafe { libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut ws) } == 0;
    (ok && ws.ws_col > 0 && ws.ws_row > 0).then_some((ws.ws_col, ws.ws_row))
}

/// The terminal in raw mode on the alternate screen, restored on drop
/// (a quit, an error, or a panic).
struct Screen {
    saved: libc::termios,
}

impl Screen {
    fn enter() -> Result<Screen> {
        // SAFETY: tcgetattr/tcsetattr read and write a termios struct.
        let mut saved: libc::termios = unsafe { std::mem::zeroed() };
        if unsafe { libc::tcgetattr(libc::STDIN_FILENO, &mut saved) } != 0 {
            bail!(
                "cannot read the terminal's mode: {}",
                io::Error::last_os_error()
            );
        }
        let mut raw = saved;
        // Keys one at a time, not echoed; Ctrl-C is a key (3) so that the
        // terminal is restored when it quits.
        raw.c_lflag &= !(libc::ICANON | libc::ECHO | libc::ISIG);
        raw.c_cc[libc::VMIN] = 1;
        raw.c_cc[libc::VTIME] = 0;
        if unsafe { libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, &raw) } != 0 {
            bail!(
                "cannot set the terminal's mode: {}",
                io::Error::last_os_error()
            );
        }
        print!("\x1b[?1049h\x1b[?25l");
        io::stdout().flush()?;
        Ok(Screen { saved })
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        // The mode first: writing may fail (a closed terminal).
        // SAFETY: restores the mode read in `enter`.
        unsafe { libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, &self.saved) };
        let mut out = io::stdout();
        let _ = out.write_all(b"\x1b[?25h\x1b[?1049l");
        let _ = out.flush();
    }
}

/// Sends the keys pressed, from a thread that reads standard input.
fn read_keys(events: mpsc::Sender<Event>) {
    std::thread::spawn(move || {
        let mut byte = [0u8; 1];
        while let Ok(1) = io::stdin().read(&mut byte) {
            if events.send(Event::Key(byte[0])).is_err() {
                break;
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_are_read_by_length_or_by_chunks() {
        let plain = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello";
        assert_eq!(parse_response(plain).unwrap(), (200, b"hello".to_vec()));
        let chunked = b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
        assert_eq!(parse_response(chunked).unwrap(), (404, b"abcde".to_vec()));
        let short = b"HTTP/1.1 200 OK\r\ncontent-length: 50\r\n\r\nhello";
        assert!(parse_response(short)
            .unwrap_err()
            .to_string()
            .contains("ended after 5 of 50"));
        assert!(parse_response(b"garbage").is_err());
        let huge = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\nab";
        assert!(
            parse_response(huge).is_err(),
            "a chunk larger than the answer"
        );
    }

    #[test]
    fn urls_give_host_port_and_base_path() {
        let args = |url: &str| TopArgs::parse_from(["top", url]);
        let c = Client::new(&args("http://10.0.0.1:9090")).unwrap();
        assert_eq!(
            (c.host.as_str(), c.port, c.base.as_str()),
            ("10.0.0.1", 9090, "")
        );
        let c = Client::new(&args("http://[fd00::1]:9090/exporter/")).unwrap();
        assert_eq!(
            (c.host.as_str(), c.port, c.base.as_str()),
            ("fd00::1", 9090, "/exporter")
        );
        let c = Client::new(&args("http://node")).unwrap();
        assert_eq!(c.port, 80);
        assert!(Client::new(&args("node:9090")).is_err());
        assert!(Client::new(&args("http://node:http")).is_err());
    }

    #[test]
    fn rows_name_workloads_when_known_and_fit_the_width() {
        let answer: Value = serde_json::from_str(
            r#"{"sort":"retransmissions","matched":1,"held":3,"time":"2026-12-06T00:00:00.000000Z",
                "connections":[{"state":"closed","reason":"rst","client":"10.0.0.1","client_port":40000,
                "server":"fd00::9","server_port":443,"server_namespace":"shop","server_workload":"cart",
                "interface":"eth0","duration":1.5,"idle":0.25,"retransmissions":4,"retransmission_rate":0.04,
                "client_sent":{"packets":60,"payload_bytes":5000,"duplicate_acks":0,"lost_segments":1,"zero_windows":0},
                "server_sent":{"packets":40,"payload_bytes":100,"duplicate_acks":3,"lost_segments":0,"zero_windows":2},
                "rtt":{"client":{"min":0.002},"server":null},"handshake_rtt":{"client":0.001,"server":0.0005},
                "rtt_seconds":0.003}]}"#,
        )
        .unwrap();
        let lines = render("http://x:9090", &answer, 400, None, false);
        let row = &lines[3];
        for want in [
            "closed (rst)",
            "10.0.0.1:40000",
            "shop/cart:443",
            "60/40",
            "5.1K",
            "4.00%",
            "3.0ms",
            "2.0ms",
            "1.5ms",
        ] {
            assert!(row.contains(want), "{want:?} not in {row:?}");
        }
        assert!(render("u", &answer, 40, None, false)
            .iter()
            .all(|l| l.chars().count() <= 40));
        assert_eq!(
            cut("eth\u{1b}[2J0", 20),
            "eth?[2J0",
            "no escape reaches the terminal"
        );
    }

    #[test]
    fn filters_are_encoded_and_the_order_has_its_own_flag() {
        assert_eq!(
            encode_filter("?namespace=my ns&address=10.0.0.0/8").unwrap(),
            "namespace=my%20ns&address=10.0.0.0/8"
        );
        assert_eq!(
            encode_filter("port=1\r\nX: y").unwrap(),
            "port=1%0D%0AX:%20y"
        );
        assert!(encode_filter("sort=rtt")
            .unwrap_err()
            .to_string()
            .contains("--sort"));
        assert!(encode_filter("a b=1").is_err());
    }
}
