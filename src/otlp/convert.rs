//! The Prometheus exposition, as OpenTelemetry metrics: what the scrape
//! serves, read back family by family, so that an OTLP receiver gets the
//! very numbers `/metrics` shows.
//!
//! - counters are monotonic cumulative sums (integers), named without
//!   `_total`; gauges are gauges; histograms are cumulative explicit-bucket
//!   histograms with the same bounds (OTLP counts per bucket, the text
//!   format up to each bound).
//! - labels become attributes by `ATTRIBUTES` (OpenTelemetry's semantic
//!   conventions where they name the thing: `client.address`,
//!   `server.port`, `network.interface.name`, ...); a label they have no
//!   name for keeps its own. Traffic metrics (`tcp_*`) carry
//!   `network.transport="tcp"` too. Istio's families keep Istio's labels.
//! - `_seconds` metrics have unit `s`, `_bytes` ones `By`.

use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{
    metric, number_data_point, AggregationTemporality, Gauge, Histogram, HistogramDataPoint,
    Metric, NumberDataPoint, Sum,
};

/// Prometheus label, and the attribute it becomes. Workload names have a
/// kind of their own in a label beside; the attribute names both ends
/// (`client.`, `server.`) as the semantic conventions name one.
pub const ATTRIBUTES: [(&str, &str); 17] = [
    ("interface", "network.interface.name"),
    ("client", "client.address"),
    ("server", "server.address"),
    ("server_port", "server.port"),
    ("ip_family", "network.type"),
    ("port_name", "server.port.name"),
    ("client_namespace", "client.k8s.namespace.name"),
    ("client_workload", "client.k8s.workload.name"),
    ("client_workload_kind", "client.k8s.workload.kind"),
    ("client_pod", "client.k8s.pod.name"),
    ("server_namespace", "server.k8s.namespace.name"),
    ("server_workload", "server.k8s.workload.name"),
    ("server_workload_kind", "server.k8s.workload.kind"),
    ("server_pod", "server.k8s.pod.name"),
    ("server_service", "server.k8s.service.name"),
    ("reporter", "tcp.reporter"),
    ("sender", "tcp.sender"),
];

/// The attribute of a label.
fn attribute_name(family: &str, label: &str) -> String {
    if family.starts_with("istio_") {
        return label.to_string();
    }
    ATTRIBUTES
        .iter()
        .find(|(l, _)| *l == label)
        .map_or_else(|| label.to_string(), |(_, a)| a.to_string())
}

/// A string attribute.
pub fn string(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key_strindex: 0,
        key: key.to_string(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.to_string())),
        }),
    }
}

/// A label as an attribute: ports as integers, `ip_family`'s `ipv4` and
/// `ipv6` as `network.type`'s.
fn attribute(family: &str, label: &str, value: &str) -> KeyValue {
    let key = attribute_name(family, label);
    if key == "server.port" {
        if let Ok(port) = value.parse::<i64>() {
            return KeyValue {
                key_strindex: 0,
                key,
                value: Some(AnyValue {
                    value: Some(any_value::Value::IntValue(port)),
                }),
            };
        }
    }
    string(&key, value)
}

/// One sample line of the text format.
#[derive(Debug, PartialEq)]
struct Sample<'a> {
    name: &'a str,
    labels: Vec<(&'a str, String)>,
    value: f64,
}

/// A sample line: `name{l="v",...} value`; `None` if it does not parse.
fn sample(line: &str) -> Option<Sample<'_>> {
    let (name, rest) = match line.find('{') {
        Some(i) => (&line[..i], &line[i + 1..]),
        None => {
            let (name, value) = line.split_once(' ')?;
            return Some(Sample {
                name,
                labels: Vec::new(),
                value: value.trim().parse().ok()?,
            });
        }
    };
    let mut labels = Vec::new();
    let mut rest = rest;
    loop {
        if let Some(after) = rest.strip_prefix('}') {
            return Some(Sample {
                name,
                labels,
                value: after.trim().parse().ok()?,
            });
        }
        rest = rest.strip_prefix(',').unwrap_or(rest);
        let (label, after) = rest.split_once("=\"")?;
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next()? {
                (i, '"') => break i,
                (_, '\\') => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    c => value.push(c),
                },
                (_, c) => value.push(c),
            }
        };
        labels.push((label, value));
        rest = &after[end + 1..];
    }
}

/// The metrics of an exposition, stamped `now` and counted from `start`
/// (nanoseconds since the epoch).
pub fn metrics(text: &str, start: u64, now: u64) -> Vec<Metric> {
    let mut out: Vec<Metric> = Vec::new();
    let mut help = "";
    let mut family = "";
    let mut kind = "";
    // A histogram's points by label set (without `le`), in order.
    let mut points: Vec<(Vec<(&str, String)>, HistogramDataPoint)> = Vec::new();
    let finish = |out: &mut Vec<Metric>,
                  family: &str,
                  help: &str,
                  points: &mut Vec<(Vec<(&str, String)>, HistogramDataPoint)>| {
        if points.is_empty() {
            return;
        }
        let data_points = points
            .drain(..)
            .map(|(_, mut p)| {
                // Cumulative counts up to each bound, to counts per bucket.
                let mut below = 0;
                for c in p.bucket_counts.iter_mut() {
                    let cumulative = *c;
                    *c = cumulative.saturating_sub(below);
                    below = cumulative;
                }
                p
            })
            .collect();
        out.push(Metric {
            name: family.to_string(),
            description: help.to_string(),
            unit: unit(family).to_string(),
            metadata: Vec::new(),
            data: Some(metric::Data::Histogram(Histogram {
                data_points,
                aggregation_temporality: AggregationTemporality::Cumulative as i32,
            })),
        });
    };
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            finish(&mut out, family, help, &mut points);
            let (name, text) = rest.split_once(' ').unwrap_or((rest, ""));
            family = name;
            help = text;
            kind = "";
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            kind = rest.rsplit(' ').next().unwrap_or("");
            continue;
        }
        let Some(s) = sample(line) else { continue };
        let traffic = family.starts_with("tcp_") && !family.starts_with("tcp_exporter_");
        let attributes = |labels: &[(&str, String)]| {
            let mut a: Vec<KeyValue> = labels
                .iter()
                .filter(|(l, _)| *l != "le")
                .map(|(l, v)| attribute(family, l, v))
                .collect();
            if traffic {
                a.push(string("network.transport", "tcp"));
            }
            a
        };
        match kind {
            "counter" | "gauge" => {
                let point = NumberDataPoint {
                    attributes: attributes(&s.labels),
                    start_time_unix_nano: if kind == "counter" { start } else { 0 },
                    time_unix_nano: now,
                    exemplars: Vec::new(),
                    flags: 0,
                    value: Some(if s.value.fract() == 0.0 && s.value.abs() < 9.0e15 {
                        number_data_point::Value::AsInt(s.value as i64)
                    } else {
                        number_data_point::Value::AsDouble(s.value)
                    }),
                };
                let name = family.strip_suffix("_total").unwrap_or(family);
                match out.last_mut() {
                    Some(m) if m.name == name => match &mut m.data {
                        Some(metric::Data::Sum(sum)) => sum.data_points.push(point),
                        Some(metric::Data::Gauge(g)) => g.data_points.push(point),
                        _ => {}
                    },
                    _ => out.push(Metric {
                        name: name.to_string(),
                        description: help.to_string(),
                        unit: unit(family).to_string(),
                        metadata: Vec::new(),
                        data: Some(if kind == "counter" {
                            metric::Data::Sum(Sum {
                                data_points: vec![point],
                                aggregation_temporality: AggregationTemporality::Cumulative as i32,
                                is_monotonic: true,
                            })
                        } else {
                            metric::Data::Gauge(Gauge {
                                data_points: vec![point],
                            })
                        }),
                    }),
                }
            }
            "histogram" => {
                let without_le: Vec<(&str, String)> = s
                    .labels
                    .iter()
                    .filter(|(l, _)| *l != "le")
                    .cloned()
                    .collect();
                // A label set's samples come together: the last point, most
                // often.
                let found = match points.last() {
                    Some((l, _)) if *l == without_le => Some(points.len() - 1),
                    _ => points.iter().position(|(l, _)| *l == without_le),
                };
                let at = match found {
                    Some(i) => i,
                    None => {
                        points.push((
                            without_le.clone(),
                            HistogramDataPoint {
                                attributes: attributes(&without_le),
                                start_time_unix_nano: start,
                                time_unix_nano: now,
                                ..HistogramDataPoint::default()
                            },
                        ));
                        points.len() - 1
                    }
                };
                let p = &mut points[at].1;
                let suffix = &s.name[family.len().min(s.name.len())..];
                match suffix {
                    "_bucket" => {
                        let le = s.labels.iter().find(|(l, _)| *l == "le").map(|(_, v)| v);
                        match le.map(|v| v.parse::<f64>()) {
                            Some(Ok(bound)) if bound.is_finite() => {
                                p.explicit_bounds.push(bound);
                                p.bucket_counts.push(s.value as u64);
                            }
                            // +Inf: the last bucket, whose cumulative count
                            // is the count.
                            _ => p.bucket_counts.push(s.value as u64),
                        }
                    }
                    "_sum" => p.sum = Some(s.value),
                    "_count" => p.count = s.value as u64,
                    _ => {}
                }
            }
            _ => {}
        }
    }
    finish(&mut out, family, help, &mut points);
    out
}

/// The exposition's families, one at a time (each from its `# HELP`
/// line to the next), so that an export converts one family at a time
/// rather than holding every data point at once.
pub fn families(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = text;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let end = rest.find("\n# HELP ").map_or(rest.len(), |i| i + 1);
        let (family, after) = rest.split_at(end);
        rest = after;
        Some(family)
    })
}

fn unit(family: &str) -> &'static str {
    let base = family.strip_suffix("_total").unwrap_or(family);
    if base.ends_with("_seconds") {
        "s"
    } else if base.ends_with("_bytes") {
        "By"
    } else {
        ""
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "\
# HELP tcp_packets_total TCP segments seen.
# TYPE tcp_packets_total counter
tcp_packets_total{interface=\"eth0\",client=\"10.0.0.1\",server=\"10.0.0.2\",server_port=\"80\",sender=\"client\"} 7
tcp_packets_total{interface=\"eth0\",client=\"10.0.0.1\",server=\"10.0.0.2\",server_port=\"80\",sender=\"server\"} 5
# HELP tcp_rtt_seconds RTT.
# TYPE tcp_rtt_seconds histogram
tcp_rtt_seconds_bucket{server=\"a\\\"b\",le=\"0.001\"} 1
tcp_rtt_seconds_bucket{server=\"a\\\"b\",le=\"0.01\"} 3
tcp_rtt_seconds_bucket{server=\"a\\\"b\",le=\"+Inf\"} 4
tcp_rtt_seconds_sum{server=\"a\\\"b\"} 0.5
tcp_rtt_seconds_count{server=\"a\\\"b\"} 4
# HELP tcp_exporter_interface_up Up.
# TYPE tcp_exporter_interface_up gauge
tcp_exporter_interface_up{interface=\"eth0\"} 1
# HELP tcp_exporter_build_info Build.
# TYPE tcp_exporter_build_info gauge
tcp_exporter_build_info 1
";

    fn attrs(a: &[KeyValue]) -> Vec<(String, String)> {
        a.iter()
            .map(|kv| {
                let v = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                    Some(any_value::Value::StringValue(s)) => s.clone(),
                    Some(any_value::Value::IntValue(i)) => format!("int {i}"),
                    other => format!("{other:?}"),
                };
                (kv.key.clone(), v)
            })
            .collect()
    }

    #[test]
    fn family_by_family_converts_to_the_same_as_all_at_once() {
        let each: Vec<&str> = families(TEXT).collect();
        assert_eq!(each.len(), 4);
        assert!(each.iter().all(|f| f.starts_with("# HELP ")));
        assert_eq!(each.concat(), TEXT);
        let one_by_one: Vec<Metric> = each.iter().flat_map(|f| metrics(f, 1, 2)).collect();
        assert_eq!(one_by_one, metrics(TEXT, 1, 2));
        assert_eq!(families("").count(), 0);
    }

    #[test]
    fn counters_gauges_and_histograms_keep_their_values() {
        let m = metrics(TEXT, 10, 20);
        let names: Vec<&str> = m.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "tcp_packets",
                "tcp_rtt_seconds",
                "tcp_exporter_interface_up",
                "tcp_exporter_build_info"
            ]
        );
        let Some(metric::Data::Sum(sum)) = &m[0].data else {
            panic!("{:?}", m[0])
        };
        assert!(sum.is_monotonic);
        assert_eq!(
            sum.aggregation_temporality,
            AggregationTemporality::Cumulative as i32
        );
        let values: Vec<_> = sum.data_points.iter().map(|p| p.value).collect();
        assert_eq!(
            values,
            [
                Some(number_data_point::Value::AsInt(7)),
                Some(number_data_point::Value::AsInt(5))
            ]
        );
        assert_eq!(sum.data_points[0].start_time_unix_nano, 10);
        assert_eq!(
            attrs(&sum.data_points[0].attributes),
            [
                ("network.interface.name".into(), "eth0".into()),
                ("client.address".into(), "10.0.0.1".into()),
                ("server.address".into(), "10.0.0.2".into()),
                ("server.port".into(), "int 80".into()),
                ("tcp.sender".into(), "client".into()),
                ("network.transport".into(), "tcp".into()),
            ]
        );
        let Some(metric::Data::Histogram(h)) = &m[1].data else {
            panic!("{:?}", m[1])
        };
        assert_eq!(m[1].unit, "s");
        let p = &h.data_points[0];
        assert_eq!(p.explicit_bounds, [0.001, 0.01]);
        assert_eq!(
            p.bucket_counts,
            [1, 2, 1],
            "per bucket, not up to each bound"
        );
        assert_eq!((p.count, p.sum), (4, Some(0.5)));
        assert_eq!(
            attrs(&p.attributes)[0],
            ("server.address".into(), "a\"b".into())
        );
        let Some(metric::Data::Gauge(g)) = &m[2].data else {
            panic!("{:?}", m[2])
        };
        // The exporter's own metrics are not traffic.
        assert_eq!(
            attrs(&g.data_points[0].attributes),
            [("network.interface.name".into(), "eth0".into())]
        );
    }

    #[test]
    fn istio_s_families_keep_istio_s_labels() {
        let text =
            "# HELP istio_tcp_sent_bytes_total x\n# TYPE istio_tcp_sent_bytes_total counter\n\
                    istio_tcp_sent_bytes_total{reporter=\"source\",source_workload=\"a\"} 3\n";
        let m = metrics(text, 0, 1);
        assert_eq!(m[0].name, "istio_tcp_sent_bytes");
        assert_eq!(m[0].unit, "By");
        let Some(metric::Data::Sum(sum)) = &m[0].data else {
            panic!()
        };
        assert_eq!(
            attrs(&sum.data_points[0].attributes),
            [
                ("reporter".into(), "source".into()),
                ("source_workload".into(), "a".into())
            ]
        );
    }

    #[test]
    fn lines_that_do_not_parse_are_skipped() {
        let text = "# HELP x y\n# TYPE x counter\nx{a=\"1\" 3\nx{a=\"\\\n";
        assert!(metrics(text, 0, 1).is_empty());
        assert_eq!(sample("x 1.5").map(|s| s.value), Some(1.5));
    }
}
