//! Overlays: test captures wrapped by scripts/wrap-pcap.py in VXLAN (both
//! ports), Geneve with options, IPv4/IPv6 in IPv4 and in IPv6, GRE with key
//! and sequence number, GRE carrying Ethernet, and VXLAN inside GRE must
//! give exactly tshark's counts of the same traffic unwrapped (the
//! `.expected` files), and say what they unwrapped. tshark itself is run on
//! the wrapped files once per kind, as the reference that wrapping changes
//! nothing of the TCP analysis.

mod common;

use std::path::Path;
use std::process::Command;

use common::agreement::{assert_agree, differences, tshark_counts};
use common::{pcap, print_with, samples, TempDir};

/// (wrap-pcap.py's kind, the `kind` labels counted, once per level).
const KINDS: [(&str, &[&str]); 8] = [
    ("vxlan", &["vxlan"]),
    ("vxlan-flannel", &["vxlan"]),
    ("geneve", &["geneve"]),
    ("ipip", &["ip_in_ip"]),
    ("ip6ip", &["ip_in_ip"]),
    ("gre", &["gre"]),
    ("gre-eth", &["gre"]),
    ("vxlan-in-gre", &["vxlan", "gre"]),
];

/// Ethernet captures with tshark's counts beside them: IPv4 with loss,
/// IPv6, VLAN tags, zero windows, refused and aborted connections.
const CAPTURES: [&str; 5] = [
    "bulk_loss.pcap",
    "ipv6.pcap",
    "vlan.pcap",
    "zero_window.pcap",
    "refused_aborted.pcap",
];

fn wrap(kind: &str, capture: &Path, out: &Path) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/wrap-pcap.py");
    let made = Command::new("python3")
        .arg(script)
        .arg(kind)
        .arg(capture)
        .arg(out)
        .output()
        .expect("python3 runs");
    assert!(
        made.status.success(),
        "wrap-pcap.py {kind}: {}",
        String::from_utf8_lossy(&made.stderr)
    );
}

fn expected(capture: &Path) -> String {
    let path = format!("{}.expected", capture.display());
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn sum(text: &str, metric: &str, label: Option<(&str, &str)>) -> f64 {
    samples(text)
        .iter()
        .filter(|s| s.name == metric)
        .filter(|s| label.is_none_or(|(k, v)| s.label(k) == Some(v)))
        .map(|s| s.value)
        .sum()
}

#[test]
fn wrapped_traffic_counts_exactly_as_unwrapped_by_tshark() {
    let dir = TempDir::new("tunnels");
    let mut failures = Vec::new();
    for (kind, levels) in KINDS {
        for name in CAPTURES {
            let capture = pcap(name);
            let wrapped = dir.path(&format!("{kind}-{name}"));
            wrap(kind, &capture, &wrapped);
            let text = print_with(&wrapped, &[]);
            failures.extend(differences(
                &format!("{kind} {name}"),
                &expected(&capture),
                &text,
                &[],
            ));
            // Every segment was found inside each level, and nothing was
            // left undecoded that the bare capture decoded.
            let packets = sum(&text, "tcp_packets_total", None);
            assert!(packets > 0.0, "{kind} {name}: no segments");
            for level in levels {
                let unwrapped = sum(
                    &text,
                    "tcp_exporter_tunnel_packets_total",
                    Some(("kind", level)),
                );
                assert_eq!(unwrapped, packets, "{kind} {name}: {level}");
            }
            let levels_counted = sum(&text, "tcp_exporter_tunnel_packets_total", None);
            assert_eq!(
                levels_counted,
                packets * levels.len() as f64,
                "{kind} {name}"
            );
        }
    }
    assert_agree(&failures);
}

#[test]
fn tshark_reads_each_wrapping_as_the_traffic_inside() {
    let dir = TempDir::new("tunnels-tshark");
    let capture = pcap("bulk_loss.pcap");
    for (kind, _) in KINDS {
        let wrapped = dir.path(&format!("{kind}.pcap"));
        wrap(kind, &capture, &wrapped);
        assert_eq!(
            tshark_counts(&wrapped),
            expected(&capture),
            "tshark on {kind}-wrapped bulk_loss.pcap"
        );
    }
}

#[test]
fn vxlan_ports_are_what_the_user_names() {
    let dir = TempDir::new("tunnels-ports");
    let capture = pcap("bulk_loss.pcap");
    let wrapped = dir.path("flannel.pcap");
    wrap("vxlan-flannel", &capture, &wrapped);
    // 8472 no longer a VXLAN port: the datagrams are UDP, not TCP.
    let text = print_with(&wrapped, &["--vxlan-ports", "4789"]);
    assert_eq!(sum(&text, "tcp_packets_total", None), 0.0);
    let not_tcp = sum(
        &text,
        "tcp_exporter_decode_errors_total",
        Some(("reason", "not_tcp")),
    );
    assert!(not_tcp > 0.0, "{text}");
    // A port of the user's own.
    let text = print_with(&wrapped, &["--vxlan-ports", "8472"]);
    assert!(sum(&text, "tcp_packets_total", None) > 0.0);
}
