//! End-to-end over the test captures: `tcp-exporter -r FILE --print` on every
//! capture in testdata/pcaps, compared with what tshark says about the same
//! file (the `.expected` files, made by scripts/tshark-expected.py from
//! tshark's own output and committed beside the captures).

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::{samples, Sample};

/// tshark's name for a count (in the .expected files) and the exporter's
/// metric that must equal it, summed over every series with the same
/// `sender` (and `shift`) labels.
const EXACT: [(&str, &str); 7] = [
    ("packets", "tcp_packets_total"),
    ("payload_bytes", "tcp_payload_bytes_total"),
    ("ip_bytes", "tcp_ip_bytes_total"),
    ("resets", "tcp_resets_total"),
    ("dont_fragment", "tcp_dont_fragment_packets_total"),
    ("syn_wscale", "tcp_syn_window_scale_total"),
    ("connections_opened", "tcp_connections_opened_total"),
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
    let out = Command::new(env!("CARGO_BIN_EXE_tcp-exporter"))
        .arg("-r")
        .arg(capture)
        .arg("--print")
        .output()
        .expect("run tcp-exporter");
    assert!(
        out.status.success(),
        "tcp-exporter -r {} --print failed: {}",
        capture.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 exposition")
}

/// Sum of `metric` over the series that carry every label of `want`.
fn sum_matching(got: &[Sample], metric: &str, want: &[(String, String)]) -> f64 {
    got.iter()
        .filter(|s| s.name == metric)
        .filter(|s| want.iter().all(|(k, v)| s.label(k) == Some(v.as_str())))
        .map(|s| s.value)
        .sum()
}

#[test]
fn every_capture_matches_tshark_counts_exactly() {
    let mut failures = Vec::new();
    let mut compared = 0;
    for capture in captures() {
        let name = capture.file_name().unwrap().to_string_lossy().into_owned();
        let expected_text = std::fs::read_to_string(capture.with_extension(format!(
            "{}.expected",
            capture.extension().unwrap().to_string_lossy()
        )))
        .expect("read .expected");
        let expected = samples(&expected_text);
        let got = samples(&print_metrics(&capture));
        for (key, metric) in EXACT {
            let rows: Vec<&Sample> = expected.iter().filter(|s| s.name == key).collect();
            assert!(!rows.is_empty(), "{name}: no {key} in .expected");
            for row in rows {
                compared += 1;
                let have = sum_matching(&got, metric, &row.labels);
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
    }
    assert!(compared > 0);
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn printed_metrics_pass_promtool_check() {
    for capture in captures() {
        let text = print_metrics(&capture);
        let mut child = Command::new("promtool")
            .args(["check", "metrics"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("promtool is installed (make test-deps installs prometheus)");
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
            "promtool check metrics on {}: {}{}",
            capture.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
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
