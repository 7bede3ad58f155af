//! A SYN flood: one million SYNs, each from a distinct source address and
//! port (bench/syn-flood.py), read with `-r`. The flow table must stay
//! within `--max-flows`, every flow turned away must be counted as an
//! eviction, the label sets within `--max-series` with the rest counted as
//! overflow, and the peak RSS within the documented per-flow budget
//! (docs/performance.md: 266 bytes per flow) over the same run on 10 SYNs.
//! The bound checked is on memory and counts, never on time.

mod common;

use std::process::Command;

use common::{sum_metric, sum_metric_where, TempDir};

const SYNS: usize = 1_000_000;
const MAX_FLOWS: usize = 100_000;
/// The documented resident cost of a flow, and the margin this test gives
/// it (fixed costs that a million flows would amortise, allocator slack).
const BYTES_PER_FLOW: f64 = 266.0;
const MARGIN: f64 = 1.15;

fn flood(dir: &TempDir, n: usize) -> std::path::PathBuf {
    let path = dir.path(&format!("syn-{n}.pcap"));
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/syn-flood.py");
    let out = Command::new("python3")
        .arg(script)
        .arg(n.to_string())
        .arg(&path)
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    path
}

/// The exposition and the peak RSS in KiB (GNU time's %M) of one run.
fn run(capture: &std::path::Path, max_series: &str) -> (String, f64) {
    let rss = capture.with_extension("rss");
    let out = Command::new("/usr/bin/time")
        .arg("-o")
        .arg(&rss)
        .args(["-f", "%M", env!("CARGO_BIN_EXE_tcp-exporter"), "-r"])
        .arg(capture)
        .args(["--print", "--max-flows", &MAX_FLOWS.to_string()])
        .args(["--max-series", max_series])
        .output()
        .expect("run /usr/bin/time (Debian's time package)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let kib: f64 = std::fs::read_to_string(&rss)
        .unwrap()
        .lines()
        .last()
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    (String::from_utf8(out.stdout).unwrap(), kib)
}

#[test]
fn a_million_syns_stay_within_max_flows_and_the_per_flow_memory_budget() {
    let dir = TempDir::new("flood");
    let big = flood(&dir, SYNS);
    let small = flood(&dir, 10);

    // Default label cap: the counts.
    let (text, _) = run(&big, "2000");
    assert_eq!(
        sum_metric(&text, "tcp_exporter_capture_packets_total"),
        SYNS as f64
    );
    assert_eq!(
        sum_metric(&text, "tcp_packets_total"),
        SYNS as f64,
        "every SYN counted"
    );
    let tracked = sum_metric(&text, "tcp_exporter_flows_tracked");
    assert_eq!(tracked, MAX_FLOWS as f64, "the table is full, not over");
    let evicted = sum_metric_where(
        &text,
        "tcp_exporter_flow_evictions_total",
        "reason",
        "table_full",
    );
    assert_eq!(
        evicted,
        (SYNS - MAX_FLOWS) as f64,
        "each flow turned away is counted"
    );
    assert_eq!(
        sum_metric_where(&text, "tcp_exporter_series_tracked", "kind", "own"),
        2000.0
    );
    // 62,500 source addresses: all beyond the first 2,000 fold.
    assert_eq!(
        sum_metric(&text, "tcp_exporter_series_overflow_total"),
        (SYNS - 2000 * 16) as f64
    );

    // Memory, with the series out of the way: the flow table's cost.
    let (_, base) = run(&small, "10");
    let (_, peak) = run(&big, "10");
    let per_flow = (peak - base) * 1024.0 / MAX_FLOWS as f64;
    eprintln!(
        "flood: peak RSS {:.1} MiB, baseline {:.1} MiB, {per_flow:.0} bytes per flow",
        peak / 1024.0,
        base / 1024.0
    );
    assert!(
        per_flow <= BYTES_PER_FLOW * MARGIN,
        "{per_flow:.0} bytes per flow, over the documented {BYTES_PER_FLOW} (+{:.0}%)",
        (MARGIN - 1.0) * 100.0
    );
}
