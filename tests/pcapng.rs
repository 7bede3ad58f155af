//! pcapng through the exporter's own reader (src/capture/pcapng_reader.rs)
//! against libpcap's: every test capture, written as pcapng by editcap
//! (Wireshark's, microsecond timestamps) and a nanosecond one (a
//! nanosecond pcap converted, so its interface says `if_tsresol` 9), read
//! with `-r --print` gives exactly what the same file gives through libpcap,
//! which reads it when a filter is set (`-f "len >= 0"` keeps every frame).
//! The counts of pcapng_mixed.pcapng against tshark are the golden test's.

mod common;

use std::path::Path;

use common::{pcap, print_with, tool, TempDir};

/// The exposition of `capture` through our reader and through libpcap.
fn both(capture: &Path) -> (String, String) {
    (
        print_with(capture, &[]),
        print_with(capture, &["-f", "len >= 0"]),
    )
}

#[test]
fn every_test_capture_as_pcapng_reads_as_libpcap_reads_it() {
    let dir = TempDir::new("pcapng-same");
    let mut names: Vec<String> = std::fs::read_dir(pcap(""))
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".pcap") || n.ends_with(".pcapng"))
        .collect();
    names.sort();
    assert!(names.len() >= 12, "{names:?}");
    let clients = dir.path("clients-ns.pcap");
    tool(
        "python3",
        &[
            concat!(env!("CARGO_MANIFEST_DIR"), "/bench/make-clients.py"),
            "200",
            clients.to_str().unwrap(),
        ],
    );
    let mut captures: Vec<std::path::PathBuf> = names.iter().map(|n| pcap(n)).collect();
    captures.push(clients);
    for capture in captures {
        let name = capture.file_name().unwrap().to_string_lossy().into_owned();
        // The same file name, so the interface label is the same.
        let ng = dir.path(&format!("{name}.ng"));
        tool(
            "editcap",
            &[
                "-F",
                "pcapng",
                capture.to_str().unwrap(),
                ng.to_str().unwrap(),
            ],
        );
        let head = std::fs::read(&ng).unwrap();
        assert_eq!(
            head[..4],
            [0x0a, 0x0d, 0x0d, 0x0a],
            "{name}: editcap wrote pcapng"
        );
        let (ours, libpcap) = both(&ng);
        assert!(
            ours.contains("tcp_packets_total{"),
            "{name}: no traffic read"
        );
        if ours != libpcap {
            let diff: Vec<String> = ours
                .lines()
                .zip(libpcap.lines())
                .filter(|(a, b)| a != b)
                .take(5)
                .map(|(a, b)| format!("  ours:    {a}\n  libpcap: {b}"))
                .collect();
            panic!(
                "{name}: our pcapng reader and libpcap differ:\n{}",
                diff.join("\n")
            );
        }
    }
}
