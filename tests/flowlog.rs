//! The flow log and long-lived connections end to end (issue 7): every
//! capture replayed with `--flow-log`, whose records must sum to the same
//! totals as the metrics of the same run; interval records on the capture
//! clock; a full disk; and `--long-connections` series, which appear for
//! connections open and old enough and go when they close, with counts
//! checked against tshark's reading of the same file.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::{pcap, print_with, promtool_check, samples, sum_metric_where, tool, TempDir};
use serde_json::Value;

/// Every capture with tshark's expected counts beside it.
fn captures() -> Vec<std::path::PathBuf> {
    let mut found: Vec<_> = std::fs::read_dir(pcap(""))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "expected"))
        .map(|p| p.with_extension(""))
        .collect();
    found.sort();
    assert!(found.len() >= 8, "the test captures are missing");
    found
}

/// The flow log's records, parsed.
fn records(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l:?}: {e}")))
        .collect()
}

/// A connection's identity in the log: its endpoints and start.
type ConnId = (String, u64, String, u64, String);

fn conn_id(r: &Value) -> ConnId {
    (
        r["client"].as_str().unwrap().to_string(),
        r["client_port"].as_u64().unwrap(),
        r["server"].as_str().unwrap().to_string(),
        r["server_port"].as_u64().unwrap(),
        r["start"].as_str().unwrap().to_string(),
    )
}

/// The records of each connection, in the order written.
fn by_connection(records: &[Value]) -> BTreeMap<ConnId, Vec<&Value>> {
    let mut conns: BTreeMap<_, Vec<&Value>> = BTreeMap::new();
    for r in records {
        conns.entry(conn_id(r)).or_default().push(r);
    }
    conns
}

/// A count from each connection's last record, summed: the flow log's
/// total of it.
fn log_total(conns: &BTreeMap<ConnId, Vec<&Value>>, sender: &str, field: &[&str]) -> f64 {
    conns
        .values()
        .map(|recs| {
            let mut v = &recs.last().unwrap()[format!("{sender}_sent")];
            for f in field {
                v = &v[*f];
            }
            v.as_u64().unwrap_or_else(|| panic!("{field:?} missing")) as f64
        })
        .sum()
}

/// A label that picks some series of a metric, e.g. `kind="retransmission"`.
type Select = Option<(&'static str, &'static str)>;

/// (metric, labels that select it, the flow log's field under `*_sent`).
const SAME: [(&str, Select, &[&str]); 15] = [
    ("tcp_packets_total", None, &["packets"]),
    ("tcp_payload_bytes_total", None, &["payload_bytes"]),
    ("tcp_ip_bytes_total", None, &["ip_bytes"]),
    ("tcp_resets_total", None, &["resets"]),
    (
        "tcp_retransmitted_segments_total",
        Some(("kind", "retransmission")),
        &["retransmissions", "retransmission"],
    ),
    (
        "tcp_retransmitted_segments_total",
        Some(("kind", "fast_retransmission")),
        &["retransmissions", "fast_retransmission"],
    ),
    (
        "tcp_retransmitted_segments_total",
        Some(("kind", "spurious_retransmission")),
        &["retransmissions", "spurious_retransmission"],
    ),
    (
        "tcp_retransmitted_bytes_total",
        None,
        &["retransmitted_bytes"],
    ),
    ("tcp_out_of_order_segments_total", None, &["out_of_order"]),
    ("tcp_duplicate_acks_total", None, &["duplicate_acks"]),
    ("tcp_lost_segments_total", None, &["lost_segments"]),
    ("tcp_zero_window_segments_total", None, &["zero_windows"]),
    (
        "tcp_zero_window_probes_total",
        None,
        &["zero_window_probes"],
    ),
    ("tcp_window_full_segments_total", None, &["window_full"]),
    ("tcp_keepalives_total", None, &["keepalives"]),
];

fn metric_total(text: &str, metric: &str, select: Select, sender: &str) -> f64 {
    samples(text)
        .iter()
        .filter(|s| s.name == metric && s.label("sender") == Some(sender))
        .filter(|s| select.is_none_or(|(k, v)| s.label(k) == Some(v)))
        .map(|s| s.value)
        .sum()
}

#[test]
fn flow_log_records_sum_to_the_same_totals_as_the_metrics() {
    let dir = TempDir::new("flowlog");
    for capture in captures() {
        let name = capture.file_name().unwrap().to_string_lossy().to_string();
        let log = dir.path(&format!("{name}.jsonl"));
        let text = print_with(&capture, &["--flow-log", log.to_str().unwrap()]);
        promtool_check(&text, &name);
        let records = records(&log);
        let written: f64 = samples(&text)
            .iter()
            .filter(|s| s.name == "tcp_exporter_flow_log_records_total")
            .map(|s| s.value)
            .sum();
        assert_eq!(
            written,
            records.len() as f64,
            "{name}: every record counted"
        );
        let conns = by_connection(&records);
        for (metric, select, field) in SAME {
            for sender in ["client", "server"] {
                assert_eq!(
                    log_total(&conns, sender, field),
                    metric_total(&text, metric, select, sender),
                    "{name}: {metric} {select:?} sender={sender}"
                );
            }
        }
        // Each connection: one open record first, then updates, and at the
        // end a close, or an update for one still open when the file ended.
        let mut still_open = 0.0;
        let mut ended: BTreeMap<String, f64> = BTreeMap::new();
        for (id, recs) in &conns {
            assert_eq!(recs[0]["event"], "open", "{name} {id:?}");
            assert_eq!(
                recs.iter().filter(|r| r["event"] == "open").count(),
                1,
                "{name} {id:?}"
            );
            let times: Vec<&str> = recs.iter().map(|r| r["time"].as_str().unwrap()).collect();
            assert!(
                times.windows(2).all(|w| w[0] <= w[1]),
                "{name} {id:?}: {times:?}"
            );
            let last = recs.last().unwrap();
            match last["event"].as_str().unwrap() {
                "close" => {
                    *ended
                        .entry(last["reason"].as_str().unwrap().into())
                        .or_default() += 1.0
                }
                "update" => still_open += 1.0,
                other => panic!("{name} {id:?}: ends with {other}"),
            }
        }
        let sum = |metric: &str| -> f64 {
            samples(&text)
                .iter()
                .filter(|s| s.name == metric)
                .map(|s| s.value)
                .sum()
        };
        assert_eq!(still_open, sum("tcp_connections_active"), "{name}");
        for reason in ["fin", "rst", "timeout"] {
            assert_eq!(
                ended.get(reason).copied().unwrap_or(0.0),
                sum_metric_where(&text, "tcp_connections_closed_total", "reason", reason),
                "{name}: closed by {reason}"
            );
        }
        for reason in ["refused", "unanswered"] {
            assert_eq!(
                ended.get(reason).copied().unwrap_or(0.0),
                sum_metric_where(&text, "tcp_connections_failed_total", "reason", reason),
                "{name}: failed, {reason}"
            );
        }
    }
}

#[test]
fn flow_log_records_carry_endpoints_state_rtt_and_window_scales() {
    let dir = TempDir::new("fields");
    let log = dir.path("short.jsonl");
    print_with(
        &pcap("short_conns.pcap"),
        &["--flow-log", log.to_str().unwrap()],
    );
    let records = records(&log);
    let closes: Vec<&Value> = records.iter().filter(|r| r["event"] == "close").collect();
    assert_eq!(closes.len(), 30);
    // The client offered window scale 10, 1 and none, ten connections each
    // (testdata/pcaps/README.md); the server answers none to none.
    let mut scales = BTreeMap::new();
    for r in &closes {
        assert_eq!(r["interface"], "short_conns.pcap");
        assert_eq!(r["server"], "10.250.0.2");
        assert_eq!(r["server_port"], 8080);
        assert_eq!(r["state"], "closed");
        assert_eq!(r["reason"], "fin");
        assert_eq!(r["client_sent"]["payload_bytes"], 120);
        assert_eq!(r["server_sent"]["payload_bytes"], 4000);
        assert!(r["duration"].as_f64().unwrap() > 0.0);
        assert!(r["handshake_rtt"]["server"].as_f64().is_some());
        let rtt = &r["rtt"]["server"];
        assert!(rtt["min"].as_f64().unwrap() <= rtt["mean"].as_f64().unwrap());
        assert!(rtt["samples"].as_u64().unwrap() >= 1);
        let key = (
            r["client_sent"]["window_scale"].to_string(),
            r["server_sent"]["window_scale"].to_string(),
        );
        *scales.entry(key).or_insert(0) += 1;
        assert!(r["time"].as_str().unwrap().ends_with('Z'));
    }
    let expected: BTreeMap<(String, String), i32> = [
        (("10".to_string(), "10".to_string()), 10),
        (("1".to_string(), "10".to_string()), 10),
        (("null".to_string(), "null".to_string()), 10),
    ]
    .into_iter()
    .collect();
    assert_eq!(scales, expected);
}

#[test]
fn interval_records_follow_the_capture_clock() {
    let dir = TempDir::new("interval");
    let log = dir.path("bulk.jsonl");
    print_with(
        &pcap("bulk_loss.pcap"),
        &[
            "--flow-log",
            log.to_str().unwrap(),
            "--flow-log-interval",
            "250ms",
        ],
    );
    let records = records(&log);
    let conns = by_connection(&records);
    let mut long_ones = 0;
    for recs in conns.values() {
        let duration = recs.last().unwrap()["duration"].as_f64().unwrap();
        let updates: Vec<f64> = recs
            .iter()
            .filter(|r| r["event"] == "update")
            .map(|r| r["duration"].as_f64().unwrap())
            .collect();
        for w in updates.windows(2) {
            assert!(
                w[1] - w[0] >= 0.25 - 1e-6,
                "updates 250 ms apart at least: {updates:?}"
            );
        }
        if duration > 0.8 {
            long_ones += 1;
            // One every 250 ms, each up to one 100 ms housekeeping round late.
            assert!(
                updates.len() >= 2,
                "{duration} s and {} updates",
                updates.len()
            );
        } else if duration < 0.25 {
            assert!(updates.is_empty(), "{duration} s and updates {updates:?}");
        }
    }
    assert_eq!(
        long_ones, 2,
        "the connections to ports 5002 and 5003 last 1-2 s"
    );
}

#[test]
fn a_full_disk_drops_flow_log_records_and_counts_them_without_stopping_the_capture() {
    let dir = TempDir::new("full");
    let log = dir.path("ok.jsonl");
    let capture = pcap("short_conns.pcap");
    let good = print_with(&capture, &["--flow-log", log.to_str().unwrap()]);
    let events = records(&log).len() as f64;
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tcp-exporter"))
        .arg("-r")
        .arg(&capture)
        .args(["--print", "--flow-log", "/dev/full"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("flow log: cannot write to /dev/full"), "{err}");
    assert_eq!(err.matches("cannot write").count(), 1, "said once: {err}");
    let text = String::from_utf8(out.stdout).unwrap();
    let sum = |t: &str, m: &str| -> f64 {
        samples(t)
            .iter()
            .filter(|s| s.name == m)
            .map(|s| s.value)
            .sum()
    };
    assert_eq!(sum(&text, "tcp_exporter_flow_log_records_total"), 0.0);
    assert_eq!(
        sum_metric_where(
            &text,
            "tcp_exporter_flow_log_drops_total",
            "reason",
            "write_error"
        ),
        events
    );
    assert_eq!(
        sum(&text, "tcp_packets_total"),
        sum(&good, "tcp_packets_total")
    );
}

#[test]
fn flow_log_to_standard_output_with_print_is_refused() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tcp-exporter"))
        .args(["-r", "x.pcap", "--print", "--flow-log", "-"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("both write to standard output"));
}

/// Per (client port, sender): packets and payload bytes, as tshark counts
/// them in `capture` for connections from 10.250.0.1.
fn tshark_by_port(capture: &Path) -> BTreeMap<(u16, &'static str), (f64, f64)> {
    let text = tool(
        "tshark",
        &[
            "-r",
            capture.to_str().unwrap(),
            "-Y",
            "tcp",
            "-T",
            "fields",
            "-e",
            "ip.src",
            "-e",
            "tcp.srcport",
            "-e",
            "tcp.dstport",
            "-e",
            "tcp.len",
        ],
    );
    let mut out: BTreeMap<(u16, &str), (f64, f64)> = BTreeMap::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split('\t').collect();
        let (sender, port) = if f[0] == "10.250.0.1" {
            ("client", f[1])
        } else {
            ("server", f[2])
        };
        let e = out.entry((port.parse().unwrap(), sender)).or_default();
        e.0 += 1.0;
        e.1 += f[3].parse::<f64>().unwrap();
    }
    out
}

#[test]
fn long_connections_get_series_while_open_and_lose_them_when_closed() {
    // bulk_loss cut 2.0 s in (its last frame then is at 1.62 s): the
    // connections to ports 5002 (from 1.21 s) and 5003 (from 1.25 s) are
    // open at the end; the bulk ones (2.49 s) have not started.
    let dir = TempDir::new("long");
    let cut = dir.path("cut.pcap");
    let full = pcap("bulk_loss.pcap");
    let frames = tool(
        "tshark",
        &[
            "-r",
            full.to_str().unwrap(),
            "-Y",
            "frame.time_relative < 2.0",
            "-T",
            "fields",
            "-e",
            "frame.number",
        ],
    );
    let last = frames.lines().last().unwrap().trim().to_string();
    tool(
        "editcap",
        &[
            "-r",
            full.to_str().unwrap(),
            cut.to_str().unwrap(),
            &format!("1-{last}"),
        ],
    );

    let text = print_with(&cut, &["--long-connections", "300ms"]);
    promtool_check(&text, "--long-connections");
    let reference = tshark_by_port(&cut);
    // Age: from a connection's first frame to the last frame of the file.
    let times = tool(
        "tshark",
        &[
            "-r",
            cut.to_str().unwrap(),
            "-T",
            "fields",
            "-e",
            "frame.time_epoch",
            "-e",
            "tcp.srcport",
            "-e",
            "tcp.dstport",
        ],
    );
    let end: f64 = times
        .lines()
        .last()
        .unwrap()
        .split('\t')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let first_seen = |port: &str| -> f64 {
        times
            .lines()
            .find(|l| l.split('\t').skip(1).any(|p| p == port))
            .and_then(|l| l.split('\t').next())
            .unwrap()
            .parse()
            .unwrap()
    };
    let ages: Vec<_> = samples(&text)
        .into_iter()
        .filter(|s| s.name == "tcp_long_connection_age_seconds")
        .collect();
    let ports: Vec<&str> = ages
        .iter()
        .map(|s| s.label("server_port").unwrap())
        .collect();
    assert_eq!(ports, vec!["5002", "5003"]);
    for s in &ages {
        let expected = end - first_seen(s.label("server_port").unwrap());
        assert!(
            (s.value - expected).abs() < 1e-6,
            "age {} vs {expected}",
            s.value
        );
        assert_eq!(s.label("interface"), Some("cut.pcap"));
        let client_port: u16 = s.label("client_port").unwrap().parse().unwrap();
        for sender in ["client", "server"] {
            let (packets, payload) = reference[&(client_port, sender)];
            let pick = |metric: &str| -> f64 {
                samples(&text)
                    .iter()
                    .filter(|x| x.name == metric)
                    .filter(|x| x.label("client_port") == Some(&client_port.to_string()))
                    .filter(|x| x.label("sender") == Some(sender))
                    .map(|x| x.value)
                    .sum()
            };
            assert_eq!(
                pick("tcp_long_connection_packets"),
                packets,
                "{client_port} {sender}"
            );
            assert_eq!(
                pick("tcp_long_connection_payload_bytes"),
                payload,
                "{client_port} {sender}"
            );
        }
    }
    let shown: f64 = samples(&text)
        .iter()
        .filter(|s| s.name == "tcp_exporter_long_connections")
        .map(|s| s.value)
        .sum();
    assert_eq!(shown, 2.0);

    // Their own cap: one shown, one turned away and counted.
    let text = print_with(
        &cut,
        &["--long-connections", "300ms", "--max-long-connections", "1"],
    );
    let shown: Vec<_> = samples(&text)
        .into_iter()
        .filter(|s| s.name == "tcp_long_connection_age_seconds")
        .collect();
    assert_eq!(shown.len(), 1);
    let overflow: f64 = samples(&text)
        .iter()
        .filter(|s| s.name == "tcp_exporter_long_connections_overflow_total")
        .map(|s| s.value)
        .sum();
    assert_eq!(overflow, 1.0);

    // Older than both: none qualifies.
    let text = print_with(&cut, &["--long-connections", "1s"]);
    assert!(!text.contains("tcp_long_connection_age_seconds{"));

    // The whole capture: both closed by the end, their series gone.
    let text = print_with(&full, &["--long-connections", "300ms"]);
    assert!(
        !text.contains("tcp_long_connection_age_seconds{"),
        "closed connections keep no series"
    );
    let shown: f64 = samples(&text)
        .iter()
        .filter(|s| s.name == "tcp_exporter_long_connections")
        .map(|s| s.value)
        .sum();
    assert_eq!(shown, 0.0);
}

#[test]
fn a_file_read_waits_for_the_flow_log_writer_and_loses_nothing() {
    // 20,000 SYNs: 40,000 records (an open each, and an update each when
    // the file ends), more than the writer's queue holds at once.
    let dir = TempDir::new("nodrop");
    let flood = dir.path("flood.pcap");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/bench/syn-flood.py");
    tool("python3", &[script, "20000", flood.to_str().unwrap()]);
    let log = dir.path("flood.jsonl");
    let text = print_with(&flood, &["--flow-log", log.to_str().unwrap()]);
    let sum = |m: &str| -> f64 {
        samples(&text)
            .iter()
            .filter(|s| s.name == m)
            .map(|s| s.value)
            .sum()
    };
    assert_eq!(sum("tcp_exporter_flow_log_drops_total"), 0.0);
    assert_eq!(sum("tcp_exporter_flow_log_records_total"), 40_000.0);
    assert_eq!(records(&log).len(), 40_000);
}

#[test]
fn a_taken_port_stops_the_exporter_with_the_reason_even_with_a_flow_log() {
    // Regression: the flow-log writer waited for capture threads that
    // nothing told to stop, and the exporter hung instead of exiting.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let dir = TempDir::new("taken");
    let log = dir.path("flows.jsonl");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_tcp-exporter"))
        .arg("-r")
        .arg(pcap("short_conns.pcap"))
        .args(["-p", &port, "--listen", "127.0.0.1", "--flow-log"])
        .arg(&log)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the exporter did not exit after failing to listen");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(err.contains("cannot listen on 127.0.0.1:"), "{err}");
}
