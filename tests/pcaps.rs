//! End-to-end over the test captures: `tcp-exporter -r FILE --print` on every
//! capture in testdata/pcaps, compared with what tshark says about the same
//! file (the `.expected` files, made by scripts/tshark-expected.py from
//! tshark's own output and committed beside the captures).

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::{samples, Sample};

/// tshark's name for a count (in the .expected files), the exporter's
/// metric that must equal it, and labels that select the metric's series;
/// the metric is summed over every series with those labels and the
/// `sender` (and `shift`) labels of the expected row.
/// A label that picks some series of a metric, e.g. `kind="retransmission"`.
type Select = Option<(&'static str, &'static str)>;

const EXACT: [(&str, &str, Select); 17] = [
    ("packets", "tcp_packets_total", None),
    ("payload_bytes", "tcp_payload_bytes_total", None),
    ("ip_bytes", "tcp_ip_bytes_total", None),
    ("resets", "tcp_resets_total", None),
    ("dont_fragment", "tcp_dont_fragment_packets_total", None),
    ("syn_wscale", "tcp_syn_window_scale_total", None),
    ("connections_opened", "tcp_connections_opened_total", None),
    (
        "analysis_retransmission",
        "tcp_retransmitted_segments_total",
        Some(("kind", "retransmission")),
    ),
    (
        "analysis_fast_retransmission",
        "tcp_retransmitted_segments_total",
        Some(("kind", "fast_retransmission")),
    ),
    (
        "analysis_spurious_retransmission",
        "tcp_retransmitted_segments_total",
        Some(("kind", "spurious_retransmission")),
    ),
    (
        "analysis_out_of_order",
        "tcp_out_of_order_segments_total",
        None,
    ),
    ("analysis_duplicate_ack", "tcp_duplicate_acks_total", None),
    ("analysis_lost_segment", "tcp_lost_segments_total", None),
    (
        "analysis_zero_window",
        "tcp_zero_window_segments_total",
        None,
    ),
    (
        "analysis_zero_window_probe",
        "tcp_zero_window_probes_total",
        None,
    ),
    (
        "analysis_window_full",
        "tcp_window_full_segments_total",
        None,
    ),
    ("analysis_keep_alive", "tcp_keepalives_total", None),
];

/// Fewer captures than this means the generator did not run: the test must
/// not pass on an empty directory.
const MIN_CAPTURES: usize = 8;

fn pcap_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/pcaps")
}

/// Every capture that has tshark's expected counts beside it.
fn captures() -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(pcap_dir())
        .expect("testdata/pcaps exists")
        .map(|e| e.expect("readable directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "expected"))
        .map(|p| p.with_extension(""))
        .collect();
    found.sort();
    assert!(
        found.len() >= MIN_CAPTURES,
        "only {} captures with .expected files in {}; run `make pcaps`",
        found.len(),
        pcap_dir().display()
    );
    for capture in &found {
        assert!(
            capture.exists(),
            "{} has .expected but no capture",
            capture.display()
        );
    }
    found
}

fn print_metrics(capture: &Path) -> String {
    common::print_with(capture, &[])
}

/// Sum of `metric` over the series that carry every label of `want`.
fn sum_matching(got: &[Sample], metric: &str, want: &[(String, String)]) -> f64 {
    got.iter()
        .filter(|s| s.name == metric)
        .filter(|s| want.iter().all(|(k, v)| s.label(k) == Some(v.as_str())))
        .map(|s| s.value)
        .sum()
}

/// tshark's counts turned into what the exporter documents it counts where
/// it differs on purpose (docs/analysis.md, "Where we differ"):
/// - a window-scale shift above 14 is counted as 14 (RFC 7323, and the
///   contract's shift=0..14);
/// - a second SYN/ACK with another ISN in the same handshake (tshark's
///   "reused ports") is not a second opened connection.
fn documented(expected: Vec<Sample>) -> Vec<Sample> {
    let reused = expected
        .iter()
        .find(|s| s.name == "connections_opened_reused_isn")
        .map_or(0.0, |s| s.value);
    let mut out: Vec<Sample> = Vec::new();
    for mut s in expected {
        if s.name == "connections_opened" {
            s.value -= reused;
        }
        if s.name == "syn_wscale" {
            for (k, v) in s.labels.iter_mut() {
                if k == "shift" && v.parse::<u8>().is_ok_and(|n| n > 14) {
                    *v = "14".to_string();
                }
            }
            if let Some(same) = out
                .iter_mut()
                .find(|o| o.name == s.name && o.labels == s.labels)
            {
                same.value += s.value;
                continue;
            }
        }
        out.push(s);
    }
    out
}

/// Every difference between tshark's counts and the exporter's output for
/// one capture; empty when they agree on every key.
fn differences(name: &str, expected_text: &str, exporter_text: &str) -> Vec<String> {
    let expected = documented(samples(expected_text));
    let got = samples(exporter_text);
    let mut failures = Vec::new();
    for (key, metric, select) in EXACT {
        let rows: Vec<&Sample> = expected.iter().filter(|s| s.name == key).collect();
        assert!(!rows.is_empty(), "{name}: no {key} in tshark's counts");
        for row in rows {
            let mut want = row.labels.clone();
            if let Some((k, v)) = select {
                want.push((k.to_string(), v.to_string()));
            }
            let have = sum_matching(&got, metric, &want);
            if have != row.value {
                failures.push(format!(
                    "{name}: {key}{:?}: tshark {} exporter {have}",
                    row.labels, row.value
                ));
            }
        }
    }
    // And no window-scale value that tshark did not see.
    let seen: BTreeMap<_, _> = expected
        .iter()
        .filter(|s| s.name == "syn_wscale")
        .map(|s| {
            (
                (
                    s.label("sender").map(String::from),
                    s.label("shift").map(String::from),
                ),
                s.value,
            )
        })
        .collect();
    for s in got
        .iter()
        .filter(|s| s.name == "tcp_syn_window_scale_total" && s.value > 0.0)
    {
        let key = (
            s.label("sender").map(String::from),
            s.label("shift").map(String::from),
        );
        if !seen.contains_key(&key) {
            failures.push(format!("{name}: exporter has {key:?}, tshark does not"));
        }
    }
    failures
}

fn assert_agree(failures: &[String]) {
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn every_capture_matches_tshark_counts_exactly() {
    let mut failures = Vec::new();
    for capture in captures() {
        let name = capture.file_name().unwrap().to_string_lossy().into_owned();
        let expected = std::fs::read_to_string(format!("{}.expected", capture.display()))
            .expect("read .expected");
        failures.extend(differences(&name, &expected, &print_metrics(&capture)));
    }
    assert_agree(&failures);
}

/// Random conversations (scripts/random-conversations.py) reach the corners
/// real traffic seldom does: out-of-order data, zero-window probes, keep-alive
/// ACKs, port reuse, gaps at the 3 ms and 20 ms thresholds, sequence wrap.
/// tshark runs here, on the same file, as the reference.
#[test]
fn random_conversations_match_tshark_exactly() {
    let dir = std::env::temp_dir().join(format!("tcpx-random-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let scripts = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts");
    let mut failures = Vec::new();
    for seed in 1..=4 {
        let capture = dir.join(format!("random-{seed}.pcap"));
        let made = Command::new("python3")
            .arg(scripts.join("random-conversations.py"))
            .args(["--seed", &seed.to_string(), "--count", "250"])
            .arg(&capture)
            .status()
            .expect("python3 runs (make test-deps installs it)");
        assert!(made.success());
        let tshark = Command::new("python3")
            .arg(scripts.join("tshark-expected.py"))
            .arg("--stdout")
            .arg(&capture)
            .output()
            .expect("tshark-expected.py runs");
        assert!(
            tshark.status.success(),
            "tshark-expected.py (needs tshark: make test-deps): {}",
            String::from_utf8_lossy(&tshark.stderr)
        );
        let expected = String::from_utf8(tshark.stdout).unwrap();
        failures.extend(differences(
            &format!("seed {seed}"),
            &expected,
            &print_metrics(&capture),
        ));
    }
    std::fs::remove_dir_all(&dir).unwrap();
    assert_agree(&failures);
}

#[test]
fn printed_metrics_pass_promtool_check() {
    for capture in captures() {
        let text = print_metrics(&capture);
        common::promtool_check(&text, &capture.display().to_string());
    }
}

#[test]
fn printing_twice_gives_identical_output() {
    // The capture clock, not the wall clock, drives the analysis.
    let capture = &captures()[0];
    assert_eq!(print_metrics(capture), print_metrics(capture));
}

#[test]
fn unreadable_file_is_a_clear_error_not_a_panic() {
    let dir = std::env::temp_dir().join(format!("tcpx-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("not-a-capture.pcap");
    std::fs::write(&bad, b"this is not a pcap file at all").unwrap();
    for path in [bad.as_path(), Path::new("/nonexistent/capture.pcap")] {
        let out = Command::new(env!("CARGO_BIN_EXE_tcp-exporter"))
            .arg("-r")
            .arg(path)
            .arg("--print")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains("cannot open"), "{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_file_without_print_is_served_until_sigterm_then_exits_zero() {
    let capture = pcap_dir().join("short_conns.pcap");
    let port = common::free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_tcp-exporter"))
        .arg("-r")
        .arg(&capture)
        .args(["-p", &port.to_string(), "--listen", "127.0.0.1"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !matches!(common::try_http_get(addr, "/readyz"), Ok((200, _))) {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("the exporter never became ready");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let (status, text) = common::http_get(addr, "/metrics");
    assert_eq!(status, 200);
    let served = common::sum_metric(&text, "tcp_packets_total");
    let printed = common::sum_metric(&print_metrics(&capture), "tcp_packets_total");
    assert!(
        served > 0.0 && served == printed,
        "served {served}, printed {printed}"
    );
    // The shell's own kill: a minimal image may have no /bin/kill.
    let killed = Command::new("sh")
        .args(["-c", &format!("kill -TERM {}", child.id())])
        .status()
        .unwrap();
    assert!(killed.success());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("no exit within 5 s of SIGTERM");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(0));
}
