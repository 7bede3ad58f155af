//! Cuts an export into requests a receiver takes: at most
//! `MAX_REQUEST_BYTES` of encoded metrics or log records each.
//!
//! A receiver refuses what is larger than its limit: an OpenTelemetry
//! Collector's OTLP/gRPC receiver takes 4 MiB at most by default (gRPC's
//! own default), and the exposition of the default `--max-series` (2000
//! label sets) is about 17 MB as OTLP. A metric whose data points do not
//! fit is cut between data points, each piece keeping the metric's name,
//! type and unit; a piece is never empty, so a single data point or record
//! larger than the limit still goes, alone.

use opentelemetry_proto::tonic::logs::v1::LogRecord;
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use opentelemetry_proto::tonic::metrics::v1::{Gauge, Histogram, Metric, Sum};
use prost::Message;

/// The most encoded bytes of metrics or log records in one request: a
/// quarter of gRPC's default limit, leaving room for the resource and for
/// receivers with smaller limits.
pub const MAX_REQUEST_BYTES: usize = 1 << 20;

/// Bytes an element of a repeated field takes in its message: its own
/// length, the field's tag and the length's varint (at most 1 + 5).
fn framed(len: usize) -> usize {
    len + 6
}

/// Items gathered, in order, into runs of at most `limit` framed bytes
/// each; a run has at least one item, so one larger than `limit` goes alone.
struct Runs<T> {
    limit: usize,
    run: Vec<T>,
    size: usize,
}

impl<T: Message> Runs<T> {
    fn new(limit: usize) -> Runs<T> {
        Runs {
            limit,
            run: Vec::new(),
            size: 0,
        }
    }

    /// Adds `item`; returns the run it closed, if it did not fit.
    fn push(&mut self, item: T) -> Option<Vec<T>> {
        let len = framed(item.encoded_len());
        let full = (self.size + len > self.limit && !self.run.is_empty()).then(|| {
            self.size = 0;
            std::mem::take(&mut self.run)
        });
        self.size += len;
        self.run.push(item);
        full
    }

    /// The last run, if anything is left.
    fn finish(self) -> Option<Vec<T>> {
        Some(self.run).filter(|r| !r.is_empty())
    }
}

/// `items` in runs of at most `limit` framed bytes each.
fn runs<T: Message>(items: Vec<T>, limit: usize) -> Vec<Vec<T>> {
    let mut runs = Runs::new(limit);
    let mut out: Vec<Vec<T>> = items.into_iter().filter_map(|i| runs.push(i)).collect();
    out.extend(runs.finish());
    out
}

/// `metric` cut between data points into pieces of at most `limit` bytes.
fn pieces(metric: Metric, limit: usize) -> Vec<Metric> {
    if framed(metric.encoded_len()) <= limit {
        return vec![metric];
    }
    let Metric {
        name,
        description,
        unit,
        metadata,
        data,
    } = metric;
    // The room a piece's data points have, next to its name and the rest.
    let shell = Metric {
        name,
        description,
        unit,
        metadata,
        data: None,
    };
    let room = limit.saturating_sub(framed(shell.encoded_len()) + 16);
    let with = |data: Data| Metric {
        data: Some(data),
        ..shell.clone()
    };
    match data {
        Some(Data::Sum(s)) => runs(s.data_points, room)
            .into_iter()
            .map(|data_points| {
                with(Data::Sum(Sum {
                    data_points,
                    aggregation_temporality: s.aggregation_temporality,
                    is_monotonic: s.is_monotonic,
                }))
            })
            .collect(),
        Some(Data::Gauge(g)) => runs(g.data_points, room)
            .into_iter()
            .map(|data_points| with(Data::Gauge(Gauge { data_points })))
            .collect(),
        Some(Data::Histogram(h)) => runs(h.data_points, room)
            .into_iter()
            .map(|data_points| {
                with(Data::Histogram(Histogram {
                    data_points,
                    aggregation_temporality: h.aggregation_temporality,
                }))
            })
            .collect(),
        // Kinds the conversion never makes go whole.
        data => vec![Metric { data, ..shell }],
    }
}

/// Metrics gathered into requests of at most `limit` bytes, as they come.
pub struct Requests(Runs<Metric>);

impl Requests {
    pub fn new(limit: usize) -> Requests {
        Requests(Runs::new(limit))
    }

    /// Adds `metric` (cut if it is larger than a request); returns the
    /// requests it filled, ready to send.
    pub fn push(&mut self, metric: Metric) -> Vec<Vec<Metric>> {
        let limit = self.0.limit;
        pieces(metric, limit)
            .into_iter()
            .filter_map(|piece| self.0.push(piece))
            .collect()
    }

    /// The last request, if anything is left.
    pub fn finish(self) -> Option<Vec<Metric>> {
        self.0.finish()
    }
}

/// How many of `records`, from the front, fit one request of at most
/// `limit` bytes (at least one, if there is one).
pub fn records_that_fit<'a>(
    records: impl IntoIterator<Item = &'a LogRecord>,
    limit: usize,
) -> usize {
    let mut size = 0;
    let mut n = 0;
    for r in records {
        size += framed(r.encoded_len());
        if size > limit && n > 0 {
            break;
        }
        n += 1;
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
    use opentelemetry_proto::tonic::metrics::v1::{
        number_data_point, HistogramDataPoint, NumberDataPoint,
    };

    /// The metrics of one export, in requests of at most `limit` bytes.
    fn metrics(metrics: Vec<Metric>, limit: usize) -> Vec<Vec<Metric>> {
        let mut requests = Requests::new(limit);
        let mut out: Vec<Vec<Metric>> =
            metrics.into_iter().flat_map(|m| requests.push(m)).collect();
        out.extend(requests.finish());
        out
    }

    fn attribute(i: usize) -> Vec<KeyValue> {
        vec![KeyValue {
            key: "client.address".into(),
            value: Some(AnyValue {
                value: Some(any_value::Value::StringValue(format!(
                    "10.0.{}.{}",
                    i / 256,
                    i % 256
                ))),
            }),
            ..KeyValue::default()
        }]
    }

    fn sum(points: usize) -> Metric {
        Metric {
            name: "tcp_packets".into(),
            unit: "1".into(),
            data: Some(Data::Sum(Sum {
                data_points: (0..points)
                    .map(|i| NumberDataPoint {
                        attributes: attribute(i),
                        value: Some(number_data_point::Value::AsInt(i as i64)),
                        ..NumberDataPoint::default()
                    })
                    .collect(),
                aggregation_temporality: 2,
                is_monotonic: true,
            })),
            ..Metric::default()
        }
    }

    fn histogram(points: usize) -> Metric {
        Metric {
            name: "tcp_rtt_seconds".into(),
            data: Some(Data::Histogram(Histogram {
                data_points: (0..points)
                    .map(|i| HistogramDataPoint {
                        attributes: attribute(i),
                        count: i as u64,
                        bucket_counts: vec![1; 20],
                        explicit_bounds: vec![0.5; 19],
                        ..HistogramDataPoint::default()
                    })
                    .collect(),
                aggregation_temporality: 2,
            })),
            ..Metric::default()
        }
    }

    fn request_len(metrics: &[Metric]) -> usize {
        metrics.iter().map(|m| framed(m.encoded_len())).sum()
    }

    fn points(m: &Metric) -> Vec<i64> {
        match &m.data {
            Some(Data::Sum(s)) => s
                .data_points
                .iter()
                .map(|p| match p.value {
                    Some(number_data_point::Value::AsInt(v)) => v,
                    _ => -1,
                })
                .collect(),
            Some(Data::Histogram(h)) => h.data_points.iter().map(|p| p.count as i64).collect(),
            _ => Vec::new(),
        }
    }

    #[test]
    fn small_exports_go_in_one_request_untouched() {
        let all = vec![sum(10), histogram(3)];
        let requests = metrics(all.clone(), MAX_REQUEST_BYTES);
        assert_eq!(requests, vec![all]);
    }

    #[test]
    fn large_metrics_are_cut_between_data_points_within_the_limit_and_nothing_is_lost() {
        let limit = 4096;
        let all = vec![sum(1000), histogram(200), sum(3)];
        let requests = metrics(all.clone(), limit);
        assert!(requests.len() > 10, "{} requests", requests.len());
        for r in &requests {
            assert!(request_len(r) <= limit, "{} bytes", request_len(r));
            assert!(!r.is_empty());
        }
        // Every data point once, in order, under its metric's name, type
        // and temporality.
        let flat: Vec<&Metric> = requests.iter().flatten().collect();
        let mut got: Vec<(String, i64)> = Vec::new();
        for m in &flat {
            match (
                &m.data,
                &all.iter().find(|o| o.name == m.name).unwrap().data,
            ) {
                (Some(Data::Sum(a)), Some(Data::Sum(b))) => {
                    assert_eq!(
                        (a.is_monotonic, a.aggregation_temporality),
                        (b.is_monotonic, b.aggregation_temporality)
                    );
                }
                (Some(Data::Histogram(a)), Some(Data::Histogram(b))) => {
                    assert_eq!(a.aggregation_temporality, b.aggregation_temporality);
                }
                other => panic!("type changed: {other:?}"),
            }
            got.extend(points(m).into_iter().map(|p| (m.name.clone(), p)));
        }
        let want: Vec<(String, i64)> = all
            .iter()
            .flat_map(|m| points(m).into_iter().map(|p| (m.name.clone(), p)))
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn a_data_point_larger_than_the_limit_still_goes_alone() {
        let requests = metrics(vec![sum(5)], 10);
        assert_eq!(requests.len(), 5);
        assert!(requests
            .iter()
            .all(|r| r.len() == 1 && points(&r[0]).len() == 1));
    }

    #[test]
    fn log_records_are_taken_as_far_as_they_fit() {
        let record = |n: usize| LogRecord {
            body: Some(AnyValue {
                value: Some(any_value::Value::StringValue("x".repeat(n))),
            }),
            ..LogRecord::default()
        };
        let records: Vec<LogRecord> = (0..10).map(|_| record(1000)).collect();
        let one = framed(records[0].encoded_len());
        assert_eq!(records_that_fit(&records, 3 * one), 3);
        assert_eq!(records_that_fit(&records, 3 * one - 1), 2);
        assert_eq!(records_that_fit(&records, 1), 1, "at least one");
        assert_eq!(records_that_fit(&records, usize::MAX), 10);
        assert_eq!(records_that_fit(&[], 100), 0);
    }
}
