//! The exposition as a tested output: the exact `--print` text of fixed
//! captures, compared byte for byte with the golden files in
//! testdata/golden (as node_exporter does with its fixtures). A change to
//! names, labels, help text, order or formatting shows here as a diff.
//!
//! The golden files are written only by `make golden`, whose `git diff` a
//! person reads before committing. They are checked besides: their counts
//! against tshark's for the same capture, and their text by promtool.

mod common;

use common::agreement::{assert_agree, differences};
use common::{pcap, print_with, promtool_check};

/// (golden file, capture, flags).
const GOLDEN: [(&str, &str, &[&str]); 2] = [
    ("bulk_loss.prom", "bulk_loss.pcap", &[]),
    (
        "zero_window-by-family.prom",
        "zero_window.pcap",
        &["--labels", "server,server_port,ip_family"],
    ),
];

fn golden(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata/golden")
        .join(name)
}

#[test]
fn printed_metrics_equal_the_golden_files_byte_for_byte() {
    let regenerate = std::env::var("TCPX_GOLDEN_WRITE").as_deref() == Ok("1");
    for (file, capture, flags) in GOLDEN {
        let got = print_with(&pcap(capture), flags);
        if regenerate {
            std::fs::write(golden(file), &got).unwrap();
            continue;
        }
        let want = std::fs::read_to_string(golden(file))
            .unwrap_or_else(|e| panic!("{file}: {e}; `make golden` writes it"));
        if got != want {
            let diff: Vec<String> = want
                .lines()
                .zip(got.lines())
                .enumerate()
                .filter(|(_, (w, g))| w != g)
                .take(10)
                .map(|(i, (w, g))| format!("line {}:\n  golden: {w}\n  now:    {g}", i + 1))
                .collect();
            panic!(
                "{file}: the output of -r {capture} {flags:?} changed ({} lines golden, {} now):\n{}\n\
                 if the change is meant, run `make golden` and read its diff",
                want.lines().count(),
                got.lines().count(),
                diff.join("\n")
            );
        }
    }
}

#[test]
fn golden_files_agree_with_tshark_and_pass_promtool() {
    let (file, capture, _) = GOLDEN[0];
    let text = std::fs::read_to_string(golden(file)).expect("golden file");
    let expected = std::fs::read_to_string(format!("{}.expected", pcap(capture).display()))
        .expect("tshark's counts");
    assert_agree(&differences(file, &expected, &text, &[]));
    for (file, _, _) in GOLDEN {
        let text = std::fs::read_to_string(golden(file)).expect("golden file");
        promtool_check(&text, file);
    }
}
