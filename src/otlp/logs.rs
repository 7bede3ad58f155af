//! The flow log's records as OTLP log records (`--otlp-logs`): the flow
//! log's writer thread hands each record here (`LogQueue::push`), and the
//! OTLP thread sends what waits at every interval.
//!
//! Each record's body is the flow log's JSON line for it (the record, as
//! `--flow-log` writes it); its attributes name the connection as the
//! metrics do (`network.transport`, `network.interface.name`,
//! `client.address`, `client.port`, `server.address`, `server.port`, and
//! with `--kubernetes` both ends' `k8s.*` names), its event name is
//! `tcp.connection.open`, `.update` or `.close`, its time the capture's.
//!
//! The queue is bounded (`--otlp-log-queue`, `MAX_QUEUED` records by default): a record that finds it full is
//! dropped and counted; records whose export fails go back to its front
//! and are sent again with the next export, as far as the bound allows.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::logs::v1::LogRecord;

use crate::metrics::collector::ExportStats;
use crate::metrics::conns::FlowEvent;

use super::convert::string;

/// Records waiting for the receiver, at most, unless `--otlp-log-queue`
/// says otherwise.
pub const MAX_QUEUED: usize = 16_384;

/// The records waiting, and what became of the others.
#[derive(Debug)]
pub struct LogQueue {
    queue: Mutex<VecDeque<LogRecord>>,
    /// Records waiting, at most.
    bound: usize,
    /// Where sent and dropped records are counted.
    pub stats: Arc<ExportStats>,
}

impl LogQueue {
    pub fn new(stats: Arc<ExportStats>, bound: usize) -> LogQueue {
        LogQueue {
            queue: Mutex::new(VecDeque::new()),
            bound,
            stats,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<LogRecord>> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues the record of `event`, whose flow-log line is `json` (without
    /// its newline); drops and counts it when the queue is full.
    pub fn push(&self, event: &FlowEvent, json: &[u8]) {
        let mut queue = self.lock();
        if queue.len() >= self.bound {
            self.stats
                .log_records_dropped
                .fetch_add(1, Ordering::Relaxed);
            return;
        }
        queue.push_back(record(event, json));
    }

    /// The oldest records, as many as fit `bytes` encoded (at least one,
    /// if any waits).
    pub fn take(&self, bytes: usize) -> Vec<LogRecord> {
        let mut queue = self.lock();
        let n = super::split::records_that_fit(queue.iter(), bytes);
        queue.drain(..n).collect()
    }

    /// Records whose export failed, back in front of the others; those the
    /// bound has no room for are dropped and counted.
    pub fn put_back(&self, records: Vec<LogRecord>) {
        let mut queue = self.lock();
        let room = self.bound.saturating_sub(queue.len());
        let dropped = records.len().saturating_sub(room);
        self.stats
            .log_records_dropped
            .fetch_add(dropped as u64, Ordering::Relaxed);
        // The newest of them are the ones left out.
        for r in records.into_iter().take(room).rev() {
            queue.push_front(r);
        }
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn int(key: &str, value: i64) -> KeyValue {
    KeyValue {
        key_strindex: 0,
        key: key.to_string(),
        value: Some(AnyValue {
            value: Some(any_value::Value::IntValue(value)),
        }),
    }
}

/// One event as a log record.
fn record(e: &FlowEvent, json: &[u8]) -> LogRecord {
    let r = &e.record;
    let mut attributes = vec![
        string("network.transport", "tcp"),
        string("network.interface.name", &e.interface),
        string("client.address", &r.client.to_string()),
        int("client.port", i64::from(r.client_port)),
        string("server.address", &r.server.to_string()),
        int("server.port", i64::from(r.server_port)),
    ];
    if let Some(peers) = &r.peers {
        for (side, who) in [("client", &peers.client), ("server", &peers.server)] {
            for (name, value) in [
                ("k8s.namespace.name", &who.namespace),
                ("k8s.workload.name", &who.workload),
                ("k8s.workload.kind", &who.kind),
                ("k8s.pod.name", &who.pod),
            ] {
                if !value.is_empty() {
                    attributes.push(string(&format!("{side}.{name}"), value));
                }
            }
        }
        if !peers.server.service.is_empty() {
            attributes.push(string("server.k8s.service.name", &peers.server.service));
        }
    }
    LogRecord {
        time_unix_nano: e.at,
        observed_time_unix_nano: 0,
        severity_number: 9, // INFO
        severity_text: "INFO".into(),
        body: Some(AnyValue {
            value: Some(any_value::Value::StringValue(
                String::from_utf8_lossy(json).into_owned(),
            )),
        }),
        attributes,
        dropped_attributes_count: 0,
        flags: 0,
        trace_id: Vec::new(),
        span_id: Vec::new(),
        event_name: format!("tcp.connection.{}", e.kind.as_str()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queued(n: usize) -> Vec<LogRecord> {
        (0..n)
            .map(|i| LogRecord {
                time_unix_nano: i as u64,
                ..LogRecord::default()
            })
            .collect()
    }

    #[test]
    fn failed_records_go_back_in_front_within_the_bound() {
        let q = LogQueue::new(Arc::default(), MAX_QUEUED);
        q.put_back(queued(3));
        let first = q.take(usize::MAX);
        assert_eq!(
            first.iter().map(|r| r.time_unix_nano).collect::<Vec<_>>(),
            [0, 1, 2]
        );
        q.put_back(queued(MAX_QUEUED - 1));
        q.put_back(first);
        assert_eq!(q.len(), MAX_QUEUED);
        let dropped = q.stats.log_records_dropped.load(Ordering::Relaxed);
        assert_eq!(dropped, 2, "two had no room");
        assert_eq!(q.take(1)[0].time_unix_nano, 0, "the oldest in front");
        assert_eq!(q.take(usize::MAX).len(), MAX_QUEUED - 1);
    }
}
