//! The flow log (`--flow-log PATH|-`): a thread that takes connection
//! events from the workers' bounded queue (`metrics::conns`) and writes
//! them as JSON lines, one object per line, to a file (appended to) or to
//! standard output.
//!
//! Records are written in batches: what is queued when the writer wakes,
//! flushed as soon as the queue is empty. A batch that cannot be written (a full
//! disk, a closed pipe) is lost and counted, record by record, in
//! `tcp_exporter_flow_log_drops_total{reason="write_error"}`. Live capture
//! never waits for this thread (a full queue drops and counts); a file read
//! with -r does, so that its log is complete.

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;
use std::thread::JoinHandle;

use serde::Serialize;

use crate::flow::Nanos;
use crate::identity::Peers;
use crate::metrics::conns::{
    ConnRecord, EventKind, FlowEvent, FlowLogSink, FlowLogStats, RttStats, FLOW_LOG_QUEUE,
    WSCALE_NOT_OFFERED, WSCALE_UNSEEN,
};
use crate::metrics::counters::{DirCounters, RETRANSMISSION_KINDS};
use crate::otlp::logs::LogQueue;

/// A batch is written once it holds this many bytes.
const BATCH_BYTES: usize = 256 * 1024;

/// Where the log goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    Stdout,
    File(PathBuf),
}

impl Target {
    pub fn parse(value: &Path) -> Target {
        if value == Path::new("-") {
            Target::Stdout
        } else {
            Target::File(value.to_path_buf())
        }
    }

    fn describe(&self) -> String {
        match self {
            Target::Stdout => "standard output".into(),
            Target::File(p) => p.display().to_string(),
        }
    }
}

/// The running writer; `finish` waits until it has written what the
/// workers sent (they must have dropped their sinks).
pub struct FlowLogWriter {
    handle: JoinHandle<()>,
}

impl FlowLogWriter {
    pub fn finish(self) {
        let _ = self.handle.join();
    }
}

/// Opens the target (a file is created if needed and appended to) and
/// starts the writer. The sink goes to the workers; with `wait` (reading a
/// file) they wait for room in the queue instead of dropping records.
///
/// Without a target the records go only to `otlp` (`--otlp-logs` without
/// `--flow-log`); with `otlp`, each record goes there too.
pub fn start(
    target: Option<&Target>,
    wait: bool,
    otlp: Option<Arc<LogQueue>>,
) -> io::Result<(FlowLogSink, FlowLogWriter)> {
    let out: Option<Box<dyn Write + Send>> = match target {
        None => None,
        Some(Target::Stdout) => Some(Box::new(io::stdout())),
        Some(Target::File(path)) => Some(Box::new(
            OpenOptions::new().create(true).append(true).open(path)?,
        )),
    };
    let (tx, rx) = sync_channel(FLOW_LOG_QUEUE);
    let stats = Arc::new(FlowLogStats::default());
    let sink = FlowLogSink::new(tx, Arc::clone(&stats), wait);
    let name = target.map_or_else(|| "OTLP".into(), Target::describe);
    let handle = std::thread::Builder::new()
        .name("flow-log".into())
        .spawn(move || write_loop(rx, out, otlp.as_deref(), &stats, &name))?;
    Ok((sink, FlowLogWriter { handle }))
}

fn write_loop(
    rx: Receiver<FlowEvent>,
    mut out: Option<Box<dyn Write + Send>>,
    otlp: Option<&LogQueue>,
    stats: &FlowLogStats,
    name: &str,
) {
    let mut batch: Vec<u8> = Vec::with_capacity(BATCH_BYTES + 4096);
    let mut records = 0u64;
    let mut failing = false;
    let mut flush = |batch: &mut Vec<u8>, records: &mut u64| {
        if *records == 0 {
            return;
        }
        let Some(out) = out.as_mut() else {
            // Only OTLP: the records went there.
            stats.written.fetch_add(*records, Ordering::Relaxed);
            batch.clear();
            *records = 0;
            return;
        };
        match out.write_all(batch).and_then(|()| out.flush()) {
            Ok(()) => {
                stats.written.fetch_add(*records, Ordering::Relaxed);
                failing = false;
            }
            Err(e) => {
                stats.write_errors.fetch_add(*records, Ordering::Relaxed);
                if !failing {
                    eprintln!(
                        "tcp-exporter: flow log: cannot write to {name}: {e}; records are \
                         dropped and counted in tcp_exporter_flow_log_drops_total\
                         {{reason=\"write_error\"}}"
                    );
                }
                failing = true;
            }
        }
        batch.clear();
        *records = 0;
    };
    // A burst is written as one batch: whatever is queued when the first
    // event comes, then flushed.
    let format = |batch: &mut Vec<u8>, event: &FlowEvent| {
        let mark = batch.len();
        format_event(batch, event);
        if let (Some(q), Some((_, line))) = (otlp, batch[mark..].split_last()) {
            q.push(event, line);
        }
    };
    while let Ok(event) = rx.recv() {
        format(&mut batch, &event);
        records += 1;
        while let Ok(event) = rx.try_recv() {
            format(&mut batch, &event);
            records += 1;
            if batch.len() >= BATCH_BYTES {
                flush(&mut batch, &mut records);
            }
        }
        flush(&mut batch, &mut records);
    }
}

/// One record as written: serialised by serde_json. The connection
/// table (`/connections`) shows each connection as this too, without
/// `time` and `event`, so that its numbers and a close record's are the
/// same by construction.
#[derive(Serialize)]
pub struct Record<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    time: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    event: Option<&'static str>,
    interface: &'a str,
    client: IpAddr,
    client_port: u16,
    server: IpAddr,
    server_port: u16,
    /// With `--kubernetes`: who both ends are, named as the labels are.
    #[serde(flatten)]
    peers: Option<Names<'a>>,
    start: Timestamp,
    duration: Secs,
    state: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'static str>,
    client_sent: Direction<'a>,
    server_sent: Direction<'a>,
    rtt: Legs<Option<Rtt>>,
    handshake_rtt: Legs<Option<Secs>>,
}

/// Both ends' identities, as flat fields named like the identity labels.
#[derive(Serialize)]
struct Names<'a> {
    client_namespace: &'a str,
    client_workload: &'a str,
    client_workload_kind: &'a str,
    client_pod: &'a str,
    client_service: &'a str,
    server_namespace: &'a str,
    server_workload: &'a str,
    server_workload_kind: &'a str,
    server_pod: &'a str,
    server_service: &'a str,
}

impl<'a> Names<'a> {
    fn of(p: &'a Peers) -> Names<'a> {
        Names {
            client_namespace: &p.client.namespace,
            client_workload: &p.client.workload,
            client_workload_kind: &p.client.kind,
            client_pod: &p.client.pod,
            client_service: &p.client.service,
            server_namespace: &p.server.namespace,
            server_workload: &p.server.workload,
            server_workload_kind: &p.server.kind,
            server_pod: &p.server.pod,
            server_service: &p.server.service,
        }
    }
}

#[derive(Serialize)]
struct Direction<'a> {
    packets: u64,
    payload_bytes: u64,
    ip_bytes: u64,
    retransmissions: Retransmissions<'a>,
    retransmitted_bytes: u64,
    out_of_order: u64,
    duplicate_acks: u64,
    lost_segments: u64,
    zero_windows: u64,
    zero_window_probes: u64,
    window_full: u64,
    keepalives: u64,
    resets: u64,
    /// Absent: this side's SYN was not seen, or its options were cut by
    /// the snap length; null: it offered no scaling.
    #[serde(skip_serializing_if = "Option::is_none")]
    window_scale: Option<Option<u8>>,
}

/// Retransmitted segments by kind, named as the metric's `kind` label.
struct Retransmissions<'a>(&'a [u64; 3]);

impl Serialize for Retransmissions<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(Some(RETRANSMISSION_KINDS.len()))?;
        for (kind, count) in RETRANSMISSION_KINDS.iter().zip(self.0) {
            map.serialize_entry(kind, count)?;
        }
        map.end()
    }
}

#[derive(Serialize)]
struct Legs<T> {
    client: T,
    server: T,
}

#[derive(Serialize)]
struct Rtt {
    min: Secs,
    mean: Secs,
    last: Secs,
    /// As TCP smooths it (RFC 6298's 7/8 and 1/8).
    smoothed: Secs,
    samples: u32,
}

/// Seconds, to the microsecond, from nanoseconds; a JSON number.
#[derive(Clone, Copy)]
pub struct Secs(pub Nanos);

impl Serialize for Secs {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64((self.0 / 1_000) as f64 / 1e6)
    }
}

/// A capture time, written as RFC 3339 UTC with microseconds.
pub struct Timestamp(pub Nanos);

const RFC3339_MICROS: &[time::format_description::FormatItem<'static>] = time::macros::format_description!(
    "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z"
);

impl Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::Error as _;
        time::OffsetDateTime::from_unix_timestamp_nanos(self.0 as i128)
            .map_err(S::Error::custom)?
            .format(RFC3339_MICROS)
            .map_err(S::Error::custom)
            .and_then(|text| s.serialize_str(&text))
    }
}

fn direction(d: &DirCounters, window_scale: u8) -> Direction<'_> {
    Direction {
        packets: d.packets,
        payload_bytes: d.payload_bytes,
        ip_bytes: d.ip_bytes,
        retransmissions: Retransmissions(&d.retransmitted),
        retransmitted_bytes: d.retransmitted_bytes,
        out_of_order: d.out_of_order,
        duplicate_acks: d.duplicate_acks,
        lost_segments: d.lost_segments,
        zero_windows: d.zero_window,
        zero_window_probes: d.zero_window_probes,
        window_full: d.window_full,
        keepalives: d.keepalives,
        resets: d.resets,
        window_scale: match window_scale {
            WSCALE_UNSEEN => None,
            WSCALE_NOT_OFFERED => Some(None),
            shift => Some(Some(shift)),
        },
    }
}

fn rtt(r: &RttStats) -> Option<Rtt> {
    r.mean().map(|mean| Rtt {
        min: Secs(r.min),
        mean: Secs(mean),
        last: Secs(r.last),
        smoothed: Secs(r.smoothed),
        samples: r.count,
    })
}

/// Appends one event as a line of JSON.
pub fn format_event(out: &mut Vec<u8>, e: &FlowEvent) {
    let record = Record {
        time: Some(Timestamp(e.at)),
        event: Some(e.kind.as_str()),
        ..record(&e.record, &e.interface, e.at, Some(e.kind))
    };
    // Serialising plain numbers, strings and addresses into a Vec cannot
    // fail (a time beyond year 9999 could; such a record is not written).
    let mark = out.len();
    if serde_json::to_writer(&mut *out, &record).is_ok() {
        out.push(b'\n');
    } else {
        out.truncate(mark);
    }
}

/// A connection's record as of capture time `at`, without `time` and
/// `event`; a close event's says why it ended, and so does the table's
/// (`kind` None) once it has.
pub fn record<'a>(
    r: &'a ConnRecord,
    interface: &'a str,
    at: Nanos,
    kind: Option<EventKind>,
) -> Record<'a> {
    let end = r.end.map_or(at, |(_, at)| at);
    Record {
        time: None,
        event: None,
        interface,
        client: r.client,
        client_port: r.client_port,
        server: r.server,
        server_port: r.server_port,
        peers: r.peers.as_deref().map(Names::of),
        start: Timestamp(r.start),
        duration: Secs(end.saturating_sub(r.start)),
        state: r.phase.as_str(),
        reason: match (kind, r.end) {
            (Some(EventKind::Close) | None, Some((reason, _))) => Some(reason.as_str()),
            _ => None,
        },
        client_sent: direction(&r.dir[0], r.window_scale[0]),
        server_sent: direction(&r.dir[1], r.window_scale[1]),
        rtt: Legs {
            client: rtt(&r.rtt[0]),
            server: rtt(&r.rtt[1]),
        },
        handshake_rtt: Legs {
            client: r.handshake_rtt[0].map(Secs),
            server: r.handshake_rtt[1].map(Secs),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text<T: Serialize>(v: T) -> String {
        serde_json::to_string(&v).unwrap()
    }

    #[test]
    fn capture_times_are_written_as_rfc3339_utc() {
        assert_eq!(text(Timestamp(0)), "\"1970-01-01T00:00:00.000000Z\"");
        // date -u -d @1700000000 gives Tue Nov 14 22:13:20 UTC 2023.
        assert_eq!(
            text(Timestamp(1_700_000_000_123_456_789)),
            "\"2023-11-14T22:13:20.123456Z\""
        );
        // 2024-02-29 (a leap day): 1709164800.
        assert_eq!(
            text(Timestamp(1_709_164_800 * 1_000_000_000)),
            "\"2024-02-29T00:00:00.000000Z\""
        );
    }

    fn event(peers: Option<Arc<Peers>>) -> serde_json::Value {
        use crate::flow::Orientation;
        use crate::metrics::conns::ConnRecord;
        let o = Orientation {
            client: [10, 244, 1, 5].into(),
            client_port: 40_000,
            server: [10, 96, 0, 10].into(),
            server_port: 53,
        };
        let e = FlowEvent {
            kind: EventKind::Open,
            at: 0,
            interface: "eth0".into(),
            record: ConnRecord::new(&o, peers, crate::metrics::labels::Reporter::Node, 0, 0),
        };
        let mut out = Vec::new();
        format_event(&mut out, &e);
        serde_json::from_slice(&out).unwrap()
    }

    #[test]
    fn records_name_both_ends_with_kubernetes_and_only_then() {
        use crate::identity::test_identity;
        let who = test_identity;
        let peers = Peers {
            client: who(
                "shop",
                "checkout",
                "Deployment",
                "checkout-7d9f-x2x9q",
                "checkout",
            ),
            server: who("kube-system", "kube-dns", "Service", "", "kube-dns"),
        };
        let named = event(Some(Arc::new(peers)));
        let field = |k: &str| named[k].as_str().unwrap_or_else(|| panic!("{k}: {named}"));
        assert_eq!(field("client_namespace"), "shop");
        assert_eq!(field("client_workload"), "checkout");
        assert_eq!(field("client_workload_kind"), "Deployment");
        assert_eq!(field("client_pod"), "checkout-7d9f-x2x9q");
        assert_eq!(field("client_service"), "checkout");
        assert_eq!(field("server_namespace"), "kube-system");
        assert_eq!(field("server_workload"), "kube-dns");
        assert_eq!(field("server_workload_kind"), "Service");
        assert_eq!(field("server_pod"), "");
        assert_eq!(field("server_service"), "kube-dns");
        assert_eq!(named["client"], "10.244.1.5");

        let bare = event(None);
        assert_eq!(bare["server"], "10.96.0.10");
        let keys: Vec<&String> = bare.as_object().unwrap().keys().collect();
        assert!(
            keys.iter()
                .all(|k| !k.contains("namespace") && !k.contains("workload")),
            "{keys:?}"
        );
    }

    #[test]
    fn durations_are_seconds_to_the_microsecond() {
        assert_eq!(text(Secs(1_500_000_999)), "1.5");
        assert_eq!(text(Secs(123_456)), "0.000123");
        assert_eq!(text(Secs(0)), "0.0");
    }
}
