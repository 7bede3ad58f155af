//! End-to-end over the test captures: `tcp-exporter -r FILE --print` on every
//! capture in testdata/pcaps, compared with what tshark says about the same
//! file (the `.expected` files, made by scripts/tshark-expected.py from
//! tshark's own output and committed beside the captures).

mod common;

use std::path::Path;
use std::process::{Command, Stdio};

use common::agreement::{assert_agree, compared_captures, differences, tshark_counts};

fn print_metrics(capture: &Path) -> String {
    common::print_with(capture, &[])
}

#[test]
fn every_capture_matches_tshark_counts_exactly() {
    let mut failures = Vec::new();
    for capture in compared_captures() {
        let name = capture.file_name().unwrap().to_string_lossy().into_owned();
        let expected = std::fs::read_to_string(format!("{}.expected", capture.display()))
            .expect("read .expected");
        failures.extend(differences(&name, &expected, &print_metrics(&capture), &[]));
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
        let expected = tshark_counts(&capture);
        failures.extend(differences(
            &format!("seed {seed}"),
            &expected,
            &print_metrics(&capture),
            &[],
        ));
    }
    std::fs::remove_dir_all(&dir).unwrap();
    assert_agree(&failures);
}

#[test]
fn printed_metrics_pass_promtool_check() {
    for capture in compared_captures() {
        let text = print_metrics(&capture);
        common::promtool_check(&text, &capture.display().to_string());
    }
}

#[test]
fn printing_twice_gives_identical_output() {
    // The capture clock, not the wall clock, drives the analysis.
    let capture = &compared_captures()[0];
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
    let capture = common::pcap("short_conns.pcap");
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
