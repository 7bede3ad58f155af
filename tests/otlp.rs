//! OTLP export against a real OpenTelemetry Collector (built once by
//! scripts/otel-collector.sh from the collector's Go modules, with the OTLP
//! receiver and the file exporter): the exporter serves a capture read
//! with `-r` and sends it every half second, over gRPC and over HTTP; the
//! collector writes what it received as OTLP JSON. For each metric, the
//! sum over its data points (a histogram's: its counts and sums) equals
//! the same run's `/metrics`, and every family of `/metrics` is there (but
//! the HTTP server's own, which are its scrapes'), for a small capture (one
//! request per export) and for 3,000 clients at the default --max-series
//! (an export cut into some twenty requests under the collector's 4 MiB
//! limit, put back together by their time). The collector stopped and
//! started again on the same ports: the exports that fail are counted, and
//! the next one carries the same totals again. The flow log's records as
//! log records: each line of the file once; with the collector away, what
//! the queue bound (--otlp-log-queue) turns away is counted and the rest
//! arrives once it is back. TLS with client certificates.
//!
//! Needs the collector (`bash scripts/otel-collector.sh build`, which
//! `make test` runs); `TCPX_SKIP_LIVE=1` skips.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use common::{free_port, http_get, pcap, samples, TempDir};

const EXPORTER: &str = env!("CARGO_BIN_EXE_tcp-exporter");

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/otel-collector.sh")
}

/// The collector of `dir`, stopped (by its PID, through the script) when
/// dropped; and an exporter, killed.
struct Run {
    dir: TempDir,
    exporter: Option<Child>,
    restarted: Option<Child>,
    tls: bool,
}

impl Run {
    fn start(tag: &str) -> Run {
        Run::start_with(tag, &[])
    }

    /// With `tls`: the collector's certificate, key and the CA its clients'
    /// certificates must come from.
    fn start_with(tag: &str, tls: &[&Path]) -> Run {
        let dir = TempDir::new(tag);
        let mut command = Command::new("bash");
        command.arg(script()).arg("start").arg(dir.path(""));
        if !tls.is_empty() {
            command.arg("--tls").args(tls);
        }
        let out = command.output().unwrap();
        assert!(
            out.status.success(),
            "otel-collector.sh start: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Run {
            dir,
            exporter: None,
            restarted: None,
            tls: !tls.is_empty(),
        }
    }

    /// The receiver's address for `protocol` (`grpc` or `http`).
    fn endpoint(&self, protocol: &str) -> String {
        let text = std::fs::read_to_string(self.dir.path("endpoints")).unwrap();
        let line = text
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{protocol}=")))
            .unwrap();
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{line}")
    }

    /// The exporter on `capture`, serving on `port`, exporting by
    /// `protocol` every 500 ms.
    fn exporter(&mut self, capture: &Path, port: u16, protocol: &str) {
        self.exporter_with(capture, port, protocol, &[]);
    }

    fn exporter_with(&mut self, capture: &Path, port: u16, protocol: &str, args: &[&str]) {
        let child = Command::new(EXPORTER)
            .arg("-r")
            .arg(capture)
            .args(["-p", &port.to_string(), "--listen", "127.0.0.1"])
            .args(["--otlp-endpoint", &self.endpoint(protocol)])
            .args(["--otlp-protocol", protocol, "--otlp-interval", "500ms"])
            .args(["--otlp-timeout", "2s"])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.exporter = Some(child);
    }

    /// The requests of the newest export the collector has whole, once one
    /// has the traffic: an export may take several requests (its data
    /// points all have the time of the export), and one is whole once a
    /// request of the next has arrived (they come in order, on one
    /// connection).
    fn last_export(&self) -> Vec<serde_json::Value> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let text = std::fs::read_to_string(self.dir.path("metrics.json")).unwrap_or_default();
            let mut exports: BTreeMap<u64, Vec<serde_json::Value>> = BTreeMap::new();
            for line in text.lines() {
                let request: serde_json::Value = serde_json::from_str(line).expect("OTLP JSON");
                exports
                    .entry(export_time(&request))
                    .or_default()
                    .push(request);
            }
            let whole = exports.into_values().rev().nth(1);
            if let Some(requests) = whole.filter(|r| totals(r).contains_key("tcp_packets")) {
                return requests;
            }
            assert!(
                Instant::now() < deadline,
                "nothing received: {}",
                std::fs::read_to_string(self.dir.path("otelcol.log")).unwrap_or_default()
            );
            sleep(Duration::from_millis(100));
        }
    }

    /// The collector started again, on the same ports (its own config);
    /// what it wrote before is removed, so what is read after is what it
    /// received since.
    fn restart_collector(&mut self) {
        let collector = Command::new("bash")
            .arg(script())
            .arg("path")
            .output()
            .unwrap();
        let binary = String::from_utf8(collector.stdout).unwrap();
        let config = self.dir.path("config.yaml");
        for file in ["metrics.json", "logs.json"] {
            let _ = std::fs::remove_file(self.dir.path(file));
        }
        self.restarted = Some(
            Command::new(binary.trim())
                .arg(format!("--config={}", config.display()))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
    }

    fn stop_collector(&self) {
        let status = Command::new("bash")
            .arg(script())
            .arg("stop")
            .arg(self.dir.path(""))
            .status()
            .unwrap();
        assert!(status.success());
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        for child in [&mut self.exporter, &mut self.restarted]
            .into_iter()
            .flatten()
        {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = Command::new("bash")
            .arg(script())
            .arg("stop")
            .arg(self.dir.path(""))
            .output();
    }
}

fn skip() -> bool {
    if std::env::var("TCPX_SKIP_LIVE").as_deref() == Ok("1") {
        eprintln!("otlp test: skipped (TCPX_SKIP_LIVE=1)");
        return true;
    }
    false
}

/// A number of OTLP JSON: integers come as strings.
fn number(v: &serde_json::Value) -> f64 {
    match v {
        serde_json::Value::String(s) => s.parse().unwrap(),
        v => v.as_f64().unwrap(),
    }
}

/// The time of a request's data points (the export's).
fn export_time(request: &serde_json::Value) -> u64 {
    let metric = &request["resourceMetrics"][0]["scopeMetrics"][0]["metrics"][0];
    let body = ["sum", "gauge", "histogram"]
        .iter()
        .find_map(|k| metric.get(*k))
        .unwrap_or_else(|| panic!("{metric}"));
    number(&body["dataPoints"][0]["timeUnixNano"]) as u64
}

/// Each metric of an export (its requests): its kind and the sum over its
/// data points (for a histogram, of their counts, and of their sums).
fn totals(export: &[serde_json::Value]) -> BTreeMap<String, (String, f64, f64)> {
    let mut out: BTreeMap<String, (String, f64, f64)> = BTreeMap::new();
    let metrics = export
        .iter()
        .flat_map(|r| r["resourceMetrics"].as_array().unwrap())
        .flat_map(|rm| rm["scopeMetrics"].as_array().unwrap())
        .flat_map(|sm| sm["metrics"].as_array().unwrap());
    for m in metrics {
        let name = m["name"].as_str().unwrap().to_string();
        let (kind, body) = ["sum", "gauge", "histogram"]
            .iter()
            .find_map(|k| m.get(*k).map(|b| (k.to_string(), b)))
            .unwrap_or_else(|| panic!("{m}"));
        let entry = out.entry(name).or_insert((kind.clone(), 0.0, 0.0));
        assert_eq!(entry.0, kind, "one metric, two kinds: {m}");
        for p in body["dataPoints"].as_array().unwrap() {
            if kind == "histogram" {
                entry.1 += number(&p["count"]);
                entry.2 += number(&p["sum"]);
            } else if let Some(v) = p.get("asInt") {
                entry.1 += number(v);
            } else if let Some(v) = p.get("asDouble") {
                entry.1 += number(v);
            }
        }
    }
    out
}

/// The same sums from the text exposition: counters by their name less
/// `_total`, histograms by their `_count` and `_sum`. Leaves out the HTTP
/// server's own families.
fn exposition_totals(text: &str) -> BTreeMap<String, (String, f64, f64)> {
    let all = samples(text);
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("# TYPE ") else {
            continue;
        };
        let (family, kind) = rest.split_once(' ').unwrap();
        if family.starts_with("tcp_exporter_http_") {
            continue;
        }
        let sum =
            |name: &str| -> f64 { all.iter().filter(|s| s.name == name).map(|s| s.value).sum() };
        let entry = match kind {
            "counter" => (
                family.strip_suffix("_total").unwrap_or(family).to_string(),
                ("sum".to_string(), sum(family), 0.0),
            ),
            "gauge" => (family.to_string(), ("gauge".to_string(), sum(family), 0.0)),
            "histogram" => (
                family.to_string(),
                (
                    "histogram".to_string(),
                    sum(&format!("{family}_count")),
                    sum(&format!("{family}_sum")),
                ),
            ),
            other => panic!("{other}"),
        };
        out.insert(entry.0, entry.1);
    }
    out
}

/// The exporter's exposition, once it has read the capture.
fn metrics(port: u16) -> String {
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok((200, text)) = common::try_http_get(addr, "/metrics") {
            if text.contains("tcp_packets_total{") {
                return text;
            }
        }
        assert!(Instant::now() < deadline, "the exporter did not serve");
        sleep(Duration::from_millis(100));
    }
}

fn assert_same(export: &[serde_json::Value], text: &str, what: &str) {
    let got = totals(export);
    let want = exposition_totals(text);
    // The exporter's counts of its own OTLP work move on between the two
    // reads: exports every interval, log records as their queue drains.
    // The large test checks the log records' count once they have all
    // arrived.
    let moving = ["tcp_exporter_otlp_exports", "tcp_exporter_otlp_log_records"];
    let mut differences = Vec::new();
    for (name, w) in &want {
        if moving.contains(&name.as_str()) {
            continue;
        }
        match got.get(name) {
            None => differences.push(format!("{name}: not exported")),
            Some(g) if (g.1 - w.1).abs() > 1e-9 || (g.2 - w.2).abs() > 1e-6 || g.0 != w.0 => {
                differences.push(format!("{name}: OTLP {g:?}, /metrics {w:?}"))
            }
            _ => {}
        }
    }
    assert!(
        got.len() >= want.len() - moving.len(),
        "{what}: OTLP has {} metrics, /metrics {}",
        got.len(),
        want.len()
    );
    assert!(
        differences.is_empty(),
        "{what}:\n{}",
        differences.join("\n")
    );
}

#[test]
fn the_collector_receives_what_metrics_serves_over_grpc_and_http() {
    if skip() {
        return;
    }
    for protocol in ["grpc", "http"] {
        let mut run = Run::start(&format!("otlp-{protocol}"));
        let port = free_port();
        run.exporter(&pcap("bulk_loss.pcap"), port, protocol);
        let text = metrics(port);
        let export = run.last_export();
        assert_same(&export, &text, protocol);
        // The resource names the exporter.
        assert_eq!(export.len(), 1, "a small export is one request");
        let export = &export[0];
        let resource = &export["resourceMetrics"][0]["resource"]["attributes"];
        let service = resource
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["key"] == "service.name")
            .unwrap();
        assert_eq!(service["value"]["stringValue"], "tcp-exporter");
        // Semantic conventions' attributes on a traffic metric.
        let packets = export["resourceMetrics"][0]["scopeMetrics"][0]["metrics"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["name"] == "tcp_packets")
            .unwrap();
        assert_eq!(packets["sum"]["isMonotonic"], true);
        let point = &packets["sum"]["dataPoints"][0]["attributes"];
        let keys: Vec<&str> = point
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["key"].as_str().unwrap())
            .collect();
        for key in [
            "network.interface.name",
            "client.address",
            "server.address",
            "server.port",
            "network.transport",
        ] {
            assert!(keys.contains(&key), "{key} in {keys:?}");
        }
    }
}

#[test]
fn a_large_exposition_goes_in_requests_the_collector_takes() {
    if skip() {
        return;
    }
    // 3,000 clients fill the default --max-series (2,000 label sets): about
    // 11 MB of exposition, 17 MB as one OTLP request, four times the
    // collector's gRPC limit (4 MiB). Over both protocols, the export is
    // cut into requests it takes, and their sums are /metrics' sums; the
    // 6,000 flow-log records (about 7 MB) arrive, each once.
    let dir = TempDir::new("otlp-large-capture");
    let capture = dir.path("clients.pcap");
    common::tool(
        "python3",
        &[
            concat!(env!("CARGO_MANIFEST_DIR"), "/bench/make-clients.py"),
            "3000",
            capture.to_str().unwrap(),
        ],
    );
    for protocol in ["grpc", "http"] {
        let mut run = Run::start(&format!("otlp-large-{protocol}"));
        let port = free_port();
        run.exporter_with(&capture, port, protocol, &["--otlp-logs"]);
        let text = metrics(port);
        assert!(text.len() > 8 << 20, "{} bytes of exposition", text.len());
        let export = run.last_export();
        assert!(export.len() > 4, "{protocol}: {} requests", export.len());
        assert_same(&export, &text, protocol);
        let failed: f64 = samples(&metrics(port))
            .iter()
            .filter(|s| s.name == "tcp_exporter_otlp_exports_total")
            .filter(|s| s.label("result") == Some("failed"))
            .map(|s| s.value)
            .sum();
        assert_eq!(failed, 0.0, "{protocol}");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let records = log_records(&run.dir);
            if records.len() >= 6000 {
                let mut bodies: Vec<&str> = records.iter().map(|r| r.1.as_str()).collect();
                bodies.sort_unstable();
                bodies.dedup();
                assert_eq!((records.len(), bodies.len()), (6000, 6000), "{protocol}");
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{protocol}: {} log records of 6000",
                records.len()
            );
            sleep(Duration::from_millis(200));
        }
        // The exporter counts what the collector received, and dropped none.
        let records = |result: &str| -> f64 {
            samples(&metrics(port))
                .iter()
                .filter(|s| s.name == "tcp_exporter_otlp_log_records_total")
                .filter(|s| s.label("result") == Some(result))
                .map(|s| s.value)
                .sum()
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while records("sent") < 6000.0 {
            assert!(
                Instant::now() < deadline,
                "{protocol}: {} log records counted as sent",
                records("sent")
            );
            sleep(Duration::from_millis(100));
        }
        assert_eq!(
            (records("sent"), records("dropped")),
            (6000.0, 0.0),
            "{protocol}"
        );
    }
}

#[test]
fn a_collector_that_goes_away_and_comes_back_gets_the_same_totals() {
    if skip() {
        return;
    }
    let mut run = Run::start("otlp-restart");
    let port = free_port();
    run.exporter(&pcap("bulk_loss.pcap"), port, "grpc");
    let before = run.last_export();
    let text = metrics(port);
    assert_same(&before, &text, "before");
    run.stop_collector();
    // Exports fail while it is away, and say so.
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let failed = |text: &str| -> f64 {
        samples(text)
            .iter()
            .filter(|s| s.name == "tcp_exporter_otlp_exports_total")
            .filter(|s| s.label("result") == Some("failed"))
            .map(|s| s.value)
            .sum()
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while failed(&http_get(addr, "/metrics").1) < 2.0 {
        assert!(Instant::now() < deadline, "no failed export counted");
        sleep(Duration::from_millis(200));
    }
    // Back, on the same ports: the next export carries every total again.
    run.restart_collector();
    let after = run.last_export();
    assert_same(&after, &metrics(port), "after the collector came back");
}

/// Every log record the collector wrote: (event name, body, attribute
/// keys).
fn log_records(dir: &TempDir) -> Vec<(String, String, Vec<String>)> {
    let text = std::fs::read_to_string(dir.path("logs.json")).unwrap_or_default();
    let mut out = Vec::new();
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect("OTLP JSON");
        for rl in v["resourceLogs"].as_array().unwrap() {
            for sl in rl["scopeLogs"].as_array().unwrap() {
                for r in sl["logRecords"].as_array().unwrap() {
                    let keys = r["attributes"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|a| a["key"].as_str().unwrap().to_string())
                        .collect();
                    out.push((
                        r["eventName"].as_str().unwrap_or("").to_string(),
                        r["body"]["stringValue"].as_str().unwrap().to_string(),
                        keys,
                    ));
                }
            }
        }
    }
    out
}

#[test]
fn the_flow_log_s_records_arrive_as_log_records_over_grpc_and_http() {
    if skip() {
        return;
    }
    for protocol in ["grpc", "http"] {
        let mut run = Run::start(&format!("otlp-logs-{protocol}"));
        let flow_log = run.dir.path("flow.jsonl");
        let port = free_port();
        let flow_log_arg = flow_log.to_str().unwrap().to_string();
        run.exporter_with(
            &pcap("bulk_loss.pcap"),
            port,
            protocol,
            &["--otlp-logs", "--flow-log", &flow_log_arg],
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        let (records, lines) = loop {
            let lines: Vec<String> = std::fs::read_to_string(&flow_log)
                .unwrap_or_default()
                .lines()
                .map(String::from)
                .collect();
            let records = log_records(&run.dir);
            if !lines.is_empty() && records.len() >= lines.len() {
                break (records, lines);
            }
            assert!(
                Instant::now() < deadline,
                "{protocol}: {} log records for {} flow-log lines",
                records.len(),
                lines.len()
            );
            sleep(Duration::from_millis(200));
        };
        // The same records, each once, the flow log's line as the body.
        let mut bodies: Vec<&str> = records.iter().map(|r| r.1.as_str()).collect();
        let mut want: Vec<&str> = lines.iter().map(String::as_str).collect();
        bodies.sort_unstable();
        want.sort_unstable();
        assert_eq!(bodies, want, "{protocol}");
        for (event, body, keys) in &records {
            let kind: serde_json::Value = serde_json::from_str(body).unwrap();
            assert_eq!(
                *event,
                format!("tcp.connection.{}", kind["event"].as_str().unwrap())
            );
            for key in [
                "client.address",
                "client.port",
                "server.address",
                "server.port",
            ] {
                assert!(keys.iter().any(|k| k == key), "{key} in {keys:?}");
            }
        }
        let text = metrics(port);
        let sent: f64 = samples(&text)
            .iter()
            .filter(|s| s.name == "tcp_exporter_otlp_log_records_total")
            .filter(|s| s.label("result") == Some("sent"))
            .map(|s| s.value)
            .sum();
        assert_eq!(sent, lines.len() as f64, "{protocol}");
    }
}

#[test]
fn without_a_flow_log_file_the_records_go_to_the_receiver_only() {
    if skip() {
        return;
    }
    let mut run = Run::start("otlp-logs-only");
    let port = free_port();
    run.exporter_with(&pcap("bulk_loss.pcap"), port, "grpc", &["--otlp-logs"]);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = metrics(port);
        let count = |name: &str, label: Option<(&str, &str)>| -> f64 {
            samples(&text)
                .iter()
                .filter(|s| s.name == name)
                .filter(|s| label.is_none_or(|(k, v)| s.label(k) == Some(v)))
                .map(|s| s.value)
                .sum()
        };
        let made = count("tcp_exporter_flow_log_records_total", None);
        let sent = count(
            "tcp_exporter_otlp_log_records_total",
            Some(("result", "sent")),
        );
        let received = log_records(&run.dir).len() as f64;
        if made > 0.0 && sent == made && received == made {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "records made {made}, sent {sent}, received {received}"
        );
        sleep(Duration::from_millis(200));
    }
}

#[test]
fn records_beyond_the_queue_bound_are_counted_and_the_rest_arrive_once_the_collector_is_back() {
    if skip() {
        return;
    }
    const BOUND: usize = 20;
    let mut run = Run::start("otlp-logs-bound");
    run.stop_collector();
    let flow_log = run.dir.path("flow.jsonl");
    let flow_log_arg = flow_log.to_str().unwrap().to_string();
    let port = free_port();
    let bound = BOUND.to_string();
    run.exporter_with(
        &pcap("short_conns.pcap"),
        port,
        "grpc",
        &[
            "--otlp-logs",
            "--otlp-log-queue",
            &bound,
            "--flow-log",
            &flow_log_arg,
        ],
    );
    let count = |text: &str, name: &str, result: &str| -> f64 {
        samples(text)
            .iter()
            .filter(|s| s.name == name && s.label("result") == Some(result))
            .map(|s| s.value)
            .sum()
    };
    // While the collector is away: every record made is either waiting
    // (at most the bound) or dropped and counted; exports fail.
    let deadline = Instant::now() + Duration::from_secs(20);
    let (lines, dropped) = loop {
        let text = metrics(port);
        let made = samples(&text)
            .iter()
            .filter(|s| s.name == "tcp_exporter_flow_log_records_total")
            .map(|s| s.value)
            .sum::<f64>();
        let lines = std::fs::read_to_string(&flow_log)
            .unwrap_or_default()
            .lines()
            .map(String::from)
            .collect::<Vec<_>>();
        let failed = count(&text, "tcp_exporter_otlp_exports_total", "failed");
        let dropped = count(&text, "tcp_exporter_otlp_log_records_total", "dropped");
        if made > 0.0 && lines.len() as f64 == made && failed >= 2.0 && dropped > 0.0 {
            break (lines, dropped);
        }
        assert!(
            Instant::now() < deadline,
            "made {made}, written {}, failed exports {failed}, dropped {dropped}",
            lines.len()
        );
        sleep(Duration::from_millis(200));
    };
    assert!(
        lines.len() > 2 * BOUND,
        "the capture makes {} records: too few to fill the queue",
        lines.len()
    );
    assert_eq!(
        dropped,
        (lines.len() - BOUND) as f64,
        "all but the bound dropped"
    );
    assert_eq!(
        count(
            &metrics(port),
            "tcp_exporter_otlp_log_records_total",
            "sent"
        ),
        0.0
    );
    // Back: what waited arrives, each once, and nothing else.
    run.restart_collector();
    let deadline = Instant::now() + Duration::from_secs(20);
    while log_records(&run.dir).len() < BOUND {
        assert!(
            Instant::now() < deadline,
            "the waiting records did not arrive"
        );
        sleep(Duration::from_millis(200));
    }
    sleep(Duration::from_secs(1)); // two more exports: nothing more arrives
    let records = log_records(&run.dir);
    assert_eq!(records.len(), BOUND);
    let mut bodies: Vec<&str> = records.iter().map(|r| r.1.as_str()).collect();
    bodies.sort_unstable();
    bodies.dedup();
    assert_eq!(bodies.len(), BOUND, "each once");
    for body in bodies {
        assert!(
            lines.iter().any(|l| l == body),
            "not a flow-log line: {body}"
        );
    }
    let text = metrics(port);
    assert_eq!(
        count(&text, "tcp_exporter_otlp_log_records_total", "sent"),
        BOUND as f64
    );
    assert_eq!(
        count(&text, "tcp_exporter_otlp_log_records_total", "dropped"),
        (lines.len() - BOUND) as f64
    );
}

/// A CA, a certificate for 127.0.0.1 and one for a client, both of it,
/// made with openssl in `dir`: (ca, server cert, server key, client cert,
/// client key).
fn certificates(dir: &TempDir) -> [PathBuf; 5] {
    let p = |name: &str| dir.path(name);
    let s = |path: &PathBuf| path.to_str().unwrap().to_string();
    let (ca, ca_key) = (p("ca.crt"), p("ca.key"));
    // A new P-256 key, unencrypted.
    let new_key = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    let (ca_key_s, ca_s) = (s(&ca_key), s(&ca));
    let tail = [
        "-keyout",
        &ca_key_s,
        "-out",
        &ca_s,
        "-days",
        "1",
        "-subj",
        "/CN=tcpx test CA",
    ];
    common::tool(
        "openssl",
        &[&["req", "-x509"][..], &new_key, &tail].concat(),
    );
    let mut made = Vec::new();
    for (name, ext) in [
        ("server", "subjectAltName=IP:127.0.0.1"),
        ("client", "extendedKeyUsage=clientAuth"),
    ] {
        let (crt, key, csr) = (
            p(&format!("{name}.crt")),
            p(&format!("{name}.key")),
            p(&format!("{name}.csr")),
        );
        let ext_file = p(&format!("{name}.ext"));
        std::fs::write(&ext_file, format!("{ext}\n")).unwrap();
        let (key_s, csr_s, subject) = (s(&key), s(&csr), format!("/CN=tcpx test {name}"));
        let tail = ["-keyout", &key_s, "-out", &csr_s, "-subj", &subject];
        common::tool("openssl", &[&["req"][..], &new_key, &tail].concat());
        common::tool(
            "openssl",
            &[
                "x509",
                "-req",
                "-in",
                &s(&csr),
                "-CA",
                &s(&ca),
                "-CAkey",
                &s(&ca_key),
                "-CAcreateserial",
                "-out",
                &s(&crt),
                "-days",
                "1",
                "-extfile",
                &s(&ext_file),
            ],
        );
        made.push((crt, key));
    }
    let [(server, server_key), (client, client_key)]: [(PathBuf, PathBuf); 2] =
        made.try_into().unwrap();
    [ca, server, server_key, client, client_key]
}

#[test]
fn over_tls_with_a_client_certificate_the_totals_arrive_and_without_one_nothing_does() {
    if skip() {
        return;
    }
    let certs = TempDir::new("otlp-certs");
    let [ca, server, server_key, client, client_key] = certificates(&certs);
    for protocol in ["grpc", "http"] {
        let mut run = Run::start_with(
            &format!("otlp-tls-{protocol}"),
            &[server.as_path(), server_key.as_path(), ca.as_path()],
        );
        let port = free_port();
        let s = |p: &PathBuf| p.to_str().unwrap().to_string();
        run.exporter_with(
            &pcap("bulk_loss.pcap"),
            port,
            protocol,
            &[
                "--otlp-ca",
                &s(&ca),
                "--otlp-cert",
                &s(&client),
                "--otlp-key",
                &s(&client_key),
            ],
        );
        let text = metrics(port);
        assert_same(&run.last_export(), &text, &format!("{protocol} over TLS"));
        // Without a client certificate the collector refuses: counted.
        let mut child = run.exporter.take().unwrap();
        let _ = child.kill();
        let _ = child.wait();
        let port = free_port();
        run.exporter_with(
            &pcap("bulk_loss.pcap"),
            port,
            protocol,
            &["--otlp-ca", &s(&ca)],
        );
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let text = metrics(port);
            let count = |result: &str| -> f64 {
                samples(&text)
                    .iter()
                    .filter(|s| s.name == "tcp_exporter_otlp_exports_total")
                    .filter(|s| s.label("result") == Some(result))
                    .map(|s| s.value)
                    .sum()
            };
            if count("failed") >= 1.0 {
                assert_eq!(
                    count("ok"),
                    0.0,
                    "{protocol}: accepted without a client certificate"
                );
                break;
            }
            assert!(Instant::now() < deadline, "{protocol}: no failure counted");
            let _ = http_get(addr, "/metrics");
            sleep(Duration::from_millis(200));
        }
    }
}
