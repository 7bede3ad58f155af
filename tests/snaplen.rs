//! Short snap lengths: every test capture cut with `editcap -s N` at the
//! lengths people capture with (54, 64, 68, 96 bytes), read with `-r`, and
//! compared with tshark's counts on the full-length original.
//!
//! A segment whose fixed 20-byte TCP header was captured counts: every
//! count the fixed header decides must equal tshark's on the whole capture.
//! Only the window-full check needs a window scale, which a cut SYN may
//! hide: it may count fewer, never more. A frame cut inside its IP header
//! or fixed TCP header is a decode error, and nothing else is.

mod common;

use common::agreement::{assert_agree, compared_captures, differences};
use common::{pcap, print_with, samples, sum_metric, sum_metric_where, tool, Sample, TempDir};

const SNAP_LENGTHS: [u32; 4] = [54, 64, 68, 96];

/// Decode errors by reason.
fn decode_errors(text: &str) -> Vec<(String, f64)> {
    samples(text)
        .into_iter()
        .filter(|s| s.name == "tcp_exporter_decode_errors_total")
        .map(|s: Sample| (s.label("reason").unwrap_or("").to_string(), s.value))
        .collect()
}

#[test]
fn short_snap_lengths_count_what_tshark_counts_on_the_whole_capture() {
    let tmp = TempDir::new("snaplen");
    let mut failures = Vec::new();
    let mut compared = 0;
    let mut cut_seen = 0.0;
    for capture in compared_captures() {
        let name = capture.file_name().unwrap().to_string_lossy().into_owned();
        let expected = std::fs::read_to_string(format!("{}.expected", capture.display()))
            .expect("read .expected");
        let whole = print_with(&capture, &[]);
        let whole_errors = decode_errors(&whole);
        for snap in SNAP_LENGTHS {
            let cut = tmp.path(&format!("{snap}-{name}"));
            let (from, to) = (capture.to_str().unwrap(), cut.to_str().unwrap());
            tool("editcap", &["-s", &snap.to_string(), from, to]);
            let text = print_with(&cut, &[]);
            let label = format!("{name} -s {snap}");
            let frames = sum_metric(&text, "tcp_exporter_capture_packets_total");
            assert_eq!(
                frames,
                sum_metric(&whole, "tcp_exporter_capture_packets_total"),
                "{label}: every frame is read"
            );
            let errors = decode_errors(&text);
            if errors == whole_errors {
                // Every TCP header's fixed part was captured: the counts
                // are tshark's on the original.
                failures.extend(differences(
                    &label,
                    &expected,
                    &text,
                    &["analysis_window_full", "syn_wscale"],
                ));
                // A SYN whose shift was cut still counts, as `unknown`.
                for sender in ["client", "server"] {
                    let syns = |text: &str, name: &str| {
                        samples(text)
                            .iter()
                            .filter(|s| s.name == name && s.label("sender") == Some(sender))
                            .map(|s| s.value)
                            .sum::<f64>()
                    };
                    let (want, have) = (
                        syns(&expected, "syn_wscale"),
                        syns(&text, "tcp_syn_window_scale_total"),
                    );
                    if want != have {
                        failures.push(format!(
                            "{label}: {sender} SYNs: tshark {want} exporter {have}"
                        ));
                    }
                }
                compared += 1;
                cut_seen += sum_metric(&text, "tcp_exporter_truncated_segments_total");
                continue;
            }
            // Frames cut inside the IP or fixed TCP header: decode errors
            // of those two reasons, as many more as segments went missing
            // (frames that were errors before may change reason: a cut
            // IPv6 header hides that its payload was not TCP).
            let missing =
                sum_metric(&whole, "tcp_packets_total") - sum_metric(&text, "tcp_packets_total");
            for ((reason, n), (_, n_whole)) in errors.iter().zip(&whole_errors) {
                if n > n_whole {
                    assert!(
                        reason == "truncated_tcp" || reason == "truncated_ip",
                        "{label}: {reason} {n_whole} -> {n}"
                    );
                }
            }
            let total = |e: &[(String, f64)]| e.iter().map(|(_, n)| n).sum::<f64>();
            assert_eq!(
                total(&errors) - total(&whole_errors),
                missing,
                "{label}: segments lost = frames cut in headers"
            );
        }
    }
    assert_agree(&failures);
    // The Ethernet IPv4 captures fit at every length, the others at the
    // longer ones: most runs compare, and many segments had options cut.
    assert!(
        compared >= 20,
        "only {compared} capture/length pairs compared"
    );
    assert!(
        cut_seen > 1000.0,
        "only {cut_seen} segments with cut options"
    );
}

/// A SYN cut before its window-scale option counts as shift="unknown",
/// not "none", and nothing is counted as "none" that tshark saw offered.
#[test]
fn a_syn_cut_before_its_window_scale_counts_as_unknown() {
    let tmp = TempDir::new("snaplen-wscale");
    let capture = pcap("bulk_loss.pcap");
    let cut = tmp.path("cut.pcap");
    tool(
        "editcap",
        &["-s", "64", capture.to_str().unwrap(), cut.to_str().unwrap()],
    );
    let whole = print_with(&capture, &[]);
    let text = print_with(&cut, &[]);
    let syns = sum_metric(&whole, "tcp_syn_window_scale_total");
    assert!(syns > 0.0);
    assert_eq!(
        sum_metric_where(&text, "tcp_syn_window_scale_total", "shift", "unknown"),
        syns,
        "Linux puts the window scale last in a SYN: cut at 64 bytes, every one is unknown"
    );
    assert_eq!(
        sum_metric(&text, "tcp_window_full_segments_total"),
        0.0,
        "no scale known, no window-full judged"
    );
    assert!(sum_metric(&whole, "tcp_window_full_segments_total") > 0.0);
    common::promtool_check(&text, "bulk_loss cut at 64 bytes");
}
