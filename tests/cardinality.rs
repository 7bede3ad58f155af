//! Cardinality control end to end, over the test captures (issue 7):
//! `--labels`, the series cap and its overflow count, series expiry on the
//! capture clock, `--aggregate-cidr` and `--port-names`. Every option only
//! regroups what is counted, so each test also checks that the totals of
//! every traffic metric equal those of the default labels; where the
//! expected grouping depends on the capture, tshark reads it from the same
//! file.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::{
    pcap, print_with, promtool_check, samples, sum_metric, sum_metric_where, tool, TempDir,
};

/// Total of every traffic metric (`tcp_*`, histogram series included) by
/// name: what any regrouping of labels must leave unchanged. Rounded to the
/// nanosecond: histogram sums are seconds, added in another order.
fn traffic_totals(text: &str) -> BTreeMap<String, f64> {
    let mut totals = BTreeMap::new();
    for s in samples(text) {
        if s.name.starts_with("tcp_") && !s.name.starts_with("tcp_exporter_") {
            *totals.entry(s.name).or_insert(0.0) += s.value;
        }
    }
    for v in totals.values_mut() {
        *v = (*v * 1e9).round() / 1e9;
    }
    totals
}

/// The label sets of `metric`'s series, each as a sorted list of
/// `name=value`.
fn series_of(text: &str, metric: &str) -> BTreeSet<Vec<String>> {
    samples(text)
        .into_iter()
        .filter(|s| s.name == metric)
        .map(|s| {
            let mut l: Vec<String> = s.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
            l.sort();
            l
        })
        .collect()
}

fn label_names(text: &str, metric: &str) -> BTreeSet<String> {
    samples(text)
        .into_iter()
        .filter(|s| s.name == metric)
        .flat_map(|s| s.labels.into_iter().map(|(k, _)| k))
        .collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

#[test]
fn labels_left_out_are_summed_over_and_totals_do_not_change() {
    let capture = pcap("pcapng_mixed.pcapng");
    let default = print_with(&capture, &[]);
    let totals = traffic_totals(&default);
    assert!(totals["tcp_packets_total"] > 0.0);
    let cases: [(&str, &[&str], usize); 4] = [
        ("none", &[], 1),
        ("server,ip_family", &["server", "ip_family"], 2),
        (
            "interface,server_port,port_name",
            &["interface", "server_port", "port_name"],
            3,
        ),
        (
            "interface,client,server,server_port,port_name,ip_family",
            &common::GROUPING_LABELS,
            3,
        ),
    ];
    for (labels, names, label_sets) in cases {
        let text = print_with(&capture, &["--labels", labels]);
        promtool_check(&text, labels);
        assert_eq!(traffic_totals(&text), totals, "--labels {labels}");
        assert_eq!(
            label_names(&text, "tcp_connections_active"),
            set(names),
            "--labels {labels}"
        );
        let mut with_sender = set(names);
        with_sender.insert("sender".into());
        assert_eq!(label_names(&text, "tcp_packets_total"), with_sender);
        // Histograms never carry client.
        let mut histogram = set(names);
        histogram.remove("client");
        histogram.insert("leg".into());
        histogram.insert("le".into());
        assert_eq!(label_names(&text, "tcp_rtt_seconds_bucket"), histogram);
        assert_eq!(
            series_of(&text, "tcp_connections_active").len(),
            label_sets,
            "--labels {labels}: one IPv4 server (port 8080), one IPv6 server (ports 5001, 8443)"
        );
    }
    let v6 = print_with(&capture, &["--labels", "ip_family"]);
    let v6_packets = sum_metric_where(&v6, "tcp_packets_total", "ip_family", "ipv6");
    let tshark_v6 = common::tshark_frames(&capture, "ipv6 && tcp");
    assert_eq!(
        v6_packets, tshark_v6,
        "IPv6 segments, as tshark counts them"
    );
}

#[test]
fn a_bad_label_name_is_refused_with_the_choices() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tcp-exporter"))
        .args(["-r", "x.pcap", "--print", "--labels", "server,pod"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unknown label \"pod\""), "{err}");
    assert!(err.contains("port_name, ip_family"), "{err}");
}

/// (tcp.stream, server port) of every connection whose SYN the capture
/// holds, in the order of the first SYN.
fn connections_by_syn(capture: &std::path::Path) -> Vec<(u32, u16)> {
    let text = tool(
        "tshark",
        &[
            "-r",
            capture.to_str().unwrap(),
            "-Y",
            "tcp.flags.syn == 1 && tcp.flags.ack == 0",
            "-T",
            "fields",
            "-e",
            "tcp.stream",
            "-e",
            "tcp.dstport",
        ],
    );
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for line in text.lines() {
        let mut f = line.split('\t');
        let stream: u32 = f.next().unwrap().parse().unwrap();
        let port: u16 = f.next().unwrap().parse().unwrap();
        if seen.insert(stream) {
            out.push((stream, port));
        }
    }
    out
}

#[test]
fn label_sets_beyond_the_cap_fold_into_other_and_are_counted() {
    // bulk_loss: one client, one server, ports 5001 (3 uploads), 5002, 5003.
    let capture = pcap("bulk_loss.pcap");
    let default = print_with(&capture, &[]);
    let text = print_with(&capture, &["--max-series", "1"]);
    promtool_check(&text, "--max-series 1");
    assert_eq!(traffic_totals(&text), traffic_totals(&default));
    let conns = connections_by_syn(&capture);
    let first_port = conns[0].1;
    let folded_conns = conns.iter().filter(|(_, p)| *p != first_port).count();
    let folded_ports: BTreeSet<u16> = conns
        .iter()
        .map(|(_, p)| *p)
        .filter(|p| *p != first_port)
        .collect();
    assert!(folded_conns > 0, "the capture has more than one port");
    assert_eq!(
        sum_metric(&text, "tcp_exporter_series_overflow_total"),
        folded_conns as f64
    );
    let active = samples(&text)
        .into_iter()
        .filter(|s| s.name == "tcp_connections_active")
        .collect::<Vec<_>>();
    assert_eq!(active.len(), 1 + folded_ports.len());
    for s in &active {
        let port: u16 = s.label("server_port").unwrap().parse().unwrap();
        if port == first_port {
            assert_eq!(s.label("client"), Some("10.250.0.1"));
        } else {
            assert_eq!(
                (s.label("client"), s.label("server")),
                (Some("other"), Some("other"))
            );
            assert!(folded_ports.contains(&port));
        }
    }
    assert_eq!(
        sum_metric_where(&text, "tcp_exporter_series_tracked", "kind", "own"),
        1.0
    );
    assert_eq!(
        sum_metric_where(&text, "tcp_exporter_series_tracked", "kind", "folded"),
        folded_ports.len() as f64
    );
}

#[test]
fn the_cap_bounds_the_output_whatever_the_number_of_clients() {
    // 5,000 SYNs from 313 addresses (16 ports each) to one server port.
    let dir = TempDir::new("cap");
    let flood = dir.path("flood.pcap");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/bench/syn-flood.py");
    tool("python3", &[script, "5000", flood.to_str().unwrap()]);
    let uncapped = print_with(&flood, &["--max-series", "100000"]);
    assert_eq!(series_of(&uncapped, "tcp_connections_active").len(), 313);
    assert_eq!(
        sum_metric(&uncapped, "tcp_exporter_series_overflow_total"),
        0.0
    );
    let text = print_with(&flood, &["--max-series", "100"]);
    promtool_check(&text, "--max-series 100");
    assert_eq!(traffic_totals(&text), traffic_totals(&uncapped));
    // 100 own label sets and one `other` (one server port).
    assert_eq!(series_of(&text, "tcp_connections_active").len(), 101);
    // The first 100 addresses' 16 connections each kept their series.
    assert_eq!(
        sum_metric(&text, "tcp_exporter_series_overflow_total"),
        (5000 - 100 * 16) as f64
    );
    assert_eq!(
        sum_metric_where(&text, "tcp_connections_failed_total", "client", "other"),
        0.0,
        "still open: none failed yet"
    );
    assert_eq!(
        sum_metric_where(&text, "tcp_connections_active", "client", "other"),
        3400.0
    );
    assert!(
        text.len() * 3 < uncapped.len(),
        "the capped output is smaller"
    );
}

#[test]
fn series_of_closed_connections_expire_on_the_capture_clock() {
    // short_conns (IPv4, all closed within a second), then 120 s later on
    // the capture clock ipv6's connections.
    let dir = TempDir::new("expiry");
    let later = dir.path("ipv6-later.pcap");
    let merged = dir.path("merged.pcap");
    tool(
        "editcap",
        &[
            "-t",
            "120",
            pcap("ipv6.pcap").to_str().unwrap(),
            later.to_str().unwrap(),
        ],
    );
    tool(
        "mergecap",
        &[
            "-F",
            "pcap",
            "-w",
            merged.to_str().unwrap(),
            pcap("short_conns.pcap").to_str().unwrap(),
            later.to_str().unwrap(),
        ],
    );
    let kept = print_with(&merged, &[]);
    let servers = |text: &str| -> BTreeSet<String> {
        samples(text)
            .into_iter()
            .filter(|s| s.name == "tcp_connections_active")
            .map(|s| s.label("server").unwrap().to_string())
            .collect()
    };
    assert_eq!(
        servers(&kept),
        set(&["10.250.0.2", "fd00:250::2"]),
        "default TTL: 5 minutes"
    );
    assert_eq!(sum_metric(&kept, "tcp_exporter_series_expired_total"), 0.0);

    let text = print_with(&merged, &["--series-ttl", "60s"]);
    promtool_check(&text, "--series-ttl 60s");
    assert_eq!(servers(&text), set(&["fd00:250::2"]));
    assert_eq!(sum_metric(&text, "tcp_exporter_series_expired_total"), 1.0);
    let alone = print_with(&pcap("ipv6.pcap"), &[]);
    assert_eq!(
        sum_metric(&text, "tcp_exporter_series_tracked"),
        series_of(&alone, "tcp_connections_active").len() as f64,
        "the budget let go of the expired label set"
    );
    // The histograms of the expired series went with it.
    let rtt_servers: BTreeSet<String> = samples(&text)
        .into_iter()
        .filter(|s| s.name == "tcp_connection_duration_seconds_count")
        .map(|s| s.label("server").unwrap().to_string())
        .collect();
    assert_eq!(rtt_servers, set(&["fd00:250::2"]));
    // What remains is exactly the IPv6 capture's own counts.
    assert_eq!(traffic_totals(&text), traffic_totals(&alone));

    // A TTL longer than the gap keeps them.
    let text = print_with(&merged, &["--series-ttl", "3m"]);
    assert_eq!(servers(&text).len(), 2);
}

/// The (client, server) labels of every label set.
fn client_server(text: &str) -> BTreeSet<(String, String)> {
    samples(text)
        .into_iter()
        .filter(|s| s.name == "tcp_connections_active")
        .map(|s| {
            (
                s.label("client").unwrap().into(),
                s.label("server").unwrap().into(),
            )
        })
        .collect()
}

fn pairs(items: &[(&str, &str)]) -> BTreeSet<(String, String)> {
    items
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

#[test]
fn cidr_rules_collapse_addresses_into_prefixes_and_names() {
    let capture = pcap("pcapng_mixed.pcapng");
    let default = print_with(&capture, &[]);
    let text = print_with(
        &capture,
        &[
            "--aggregate-cidr",
            "10.250.0.0/16=lab",
            "--aggregate-cidr",
            "::/0=/32",
        ],
    );
    promtool_check(&text, "--aggregate-cidr");
    assert_eq!(traffic_totals(&text), traffic_totals(&default));
    assert_eq!(
        client_server(&text),
        pairs(&[("lab", "lab"), ("fd00:250::/32", "fd00:250::/32")])
    );

    // A client-only rule leaves servers as they are.
    let text = print_with(
        &capture,
        &["--aggregate-cidr", "client:0.0.0.0/0=/8,client:::/0=/16"],
    );
    assert_eq!(
        client_server(&text),
        pairs(&[("10.0.0.0/8", "10.250.0.2"), ("fd00::/16", "fd00:250::2")])
    );
}

#[test]
fn a_bad_cidr_rule_is_refused_with_the_reason() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tcp-exporter"))
        .args([
            "-r",
            "x.pcap",
            "--print",
            "--aggregate-cidr",
            "10.1.2.3/8=/16",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("did you mean 10.0.0.0/8"), "{err}");
}

#[test]
fn server_ports_get_names_from_the_istio_preset_and_from_files() {
    // short_conns with its server port 8080 rewritten to 15006, Istio's
    // inbound capture port.
    let dir = TempDir::new("ports");
    let istio = dir.path("istio.pcap");
    tool(
        "tcprewrite",
        &[
            "--portmap=8080:15006",
            "--fixcsum",
            "-i",
            pcap("short_conns.pcap").to_str().unwrap(),
            "-o",
            istio.to_str().unwrap(),
        ],
    );
    let text = print_with(
        &istio,
        &["--port-names", "istio", "--labels", "server_port,port_name"],
    );
    promtool_check(&text, "--port-names istio");
    assert_eq!(
        series_of(&text, "tcp_connections_opened_total"),
        [vec![
            "port_name=envoy-inbound".to_string(),
            "server_port=15006".to_string()
        ]]
        .into_iter()
        .collect()
    );
    assert_eq!(
        sum_metric(&text, "tcp_connections_opened_total"),
        sum_metric(
            &print_with(&pcap("short_conns.pcap"), &[]),
            "tcp_connections_opened_total"
        )
    );

    // A file after the preset overrides it; a port with no name reads "".
    let names = dir.path("ports.yaml");
    std::fs::write(&names, "# ours\n15006: 'inbound \"mesh\"'\n").unwrap();
    let text = print_with(
        &istio,
        &[
            "--port-names",
            "istio",
            "--port-names",
            names.to_str().unwrap(),
            "--labels",
            "port_name",
        ],
    );
    promtool_check(&text, "--port-names FILE");
    assert!(
        text.contains("tcp_connections_opened_total{port_name=\"inbound \\\"mesh\\\"\"} 30\n"),
        "{text}"
    );
    let text = print_with(
        &pcap("short_conns.pcap"),
        &["--port-names", "istio", "--labels", "port_name"],
    );
    assert!(text.contains("tcp_connections_opened_total{port_name=\"\"} 30\n"));
}
