//! The comparison of the exporter's counts with tshark's (the `.expected`
//! files of testdata/pcaps, or scripts/tshark-expected.py run on a capture):
//! which tshark count each metric must equal, and the differences the
//! exporter documents.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::{samples, Sample};

/// Fewer captures than this means the generator did not run: the test must
/// not pass on an empty directory.
const MIN_CAPTURES: usize = 8;

fn pcap_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/pcaps")
}

/// Every capture that has tshark's expected counts beside it.
pub fn compared_captures() -> Vec<PathBuf> {
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

/// tshark's name for a count (in the .expected files), the exporter's
/// metric that must equal it, and labels that select the metric's series;
/// the metric is summed over every series with those labels and the
/// `sender` (and `shift`) labels of the expected row.
/// A label that picks some series of a metric, e.g. `kind="retransmission"`.
type Select = Option<(&'static str, &'static str)>;

pub const EXACT: [(&str, &str, Select); 17] = [
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

/// Sum of `metric` over the series that carry every label of `want`.
pub fn sum_matching(got: &[Sample], metric: &str, want: &[(String, String)]) -> f64 {
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
pub fn documented(expected: Vec<Sample>) -> Vec<Sample> {
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
///
/// The keys in `at_most` are checked as "no more than tshark" rather than
/// exactly (counts that need what a short snap length cuts off), and a
/// window-scale shift of `unknown` (options cut) is not a difference.
pub fn differences(
    name: &str,
    expected_text: &str,
    exporter_text: &str,
    at_most: &[&str],
) -> Vec<String> {
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
            let agrees = if at_most.contains(&key) {
                have <= row.value
            } else {
                have == row.value
            };
            if !agrees {
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
        .filter(|s| s.label("shift") != Some("unknown"))
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

/// The differences between tshark's counts of one capture and a live
/// exporter's on the same interface in what depends neither on order nor
/// on time: the live socket's timestamps differ from tcpdump's by
/// microseconds (which moves the analysis' 3 ms thresholds), and two
/// sockets may see the two directions interleave differently.
pub fn live_differences(name: &str, expected_text: &str, exporter_text: &str) -> Vec<String> {
    let got = samples(exporter_text);
    let mut failures = Vec::new();
    for (key, metric) in [
        ("packets", "tcp_packets_total"),
        ("payload_bytes", "tcp_payload_bytes_total"),
        ("ip_bytes", "tcp_ip_bytes_total"),
        ("resets", "tcp_resets_total"),
        ("syn_wscale", "tcp_syn_window_scale_total"),
        ("connections_opened", "tcp_connections_opened_total"),
    ] {
        for row in samples(expected_text).iter().filter(|s| s.name == key) {
            let have = sum_matching(&got, metric, &row.labels);
            if have != row.value {
                failures.push(format!(
                    "{name}: {key}{:?}: tshark {} exporter {have}",
                    row.labels, row.value
                ));
            }
        }
    }
    failures
}

/// tshark's counts of a capture (scripts/tshark-expected.py --stdout), in
/// the form of the `.expected` files.
pub fn tshark_counts(capture: &Path) -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/tshark-expected.py");
    let tshark = std::process::Command::new("python3")
        .arg(script)
        .arg("--stdout")
        .arg(capture)
        .output()
        .expect("tshark-expected.py runs");
    assert!(
        tshark.status.success(),
        "tshark-expected.py (needs tshark: make test-deps): {}",
        String::from_utf8_lossy(&tshark.stderr)
    );
    String::from_utf8(tshark.stdout).expect("UTF-8 counts")
}

pub fn assert_agree(failures: &[String]) {
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
