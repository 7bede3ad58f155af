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

use std::fmt::Write as _;
use std::fs::OpenOptions;
use std::io::{self, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;
use std::thread::JoinHandle;

use crate::flow::Nanos;
use crate::metrics::conns::{
    EventKind, FlowEvent, FlowLogSink, FlowLogStats, RttStats, FLOW_LOG_QUEUE, WSCALE_NOT_OFFERED,
    WSCALE_UNSEEN,
};
use crate::metrics::counters::{DirCounters, RETRANSMISSION_KINDS};

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
pub fn start(target: &Target, wait: bool) -> io::Result<(FlowLogSink, FlowLogWriter)> {
    let out: Box<dyn Write + Send> = match target {
        Target::Stdout => Box::new(io::stdout()),
        Target::File(path) => Box::new(OpenOptions::new().create(true).append(true).open(path)?),
    };
    let (tx, rx) = sync_channel(FLOW_LOG_QUEUE);
    let stats = Arc::new(FlowLogStats::default());
    let sink = FlowLogSink::new(tx, Arc::clone(&stats), wait);
    let name = target.describe();
    let handle = std::thread::Builder::new()
        .name("flow-log".into())
        .spawn(move || write_loop(rx, out, &stats, &name))?;
    Ok((sink, FlowLogWriter { handle }))
}

fn write_loop(
    rx: Receiver<FlowEvent>,
    mut out: Box<dyn Write + Send>,
    stats: &FlowLogStats,
    name: &str,
) {
    let mut batch = String::with_capacity(BATCH_BYTES + 4096);
    let mut records = 0u64;
    let mut failing = false;
    let mut flush = |batch: &mut String, records: &mut u64| {
        if *records == 0 {
            return;
        }
        match out.write_all(batch.as_bytes()).and_then(|()| out.flush()) {
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
    while let Ok(event) = rx.recv() {
        format_event(&mut batch, &event);
        records += 1;
        while let Ok(event) = rx.try_recv() {
            format_event(&mut batch, &event);
            records += 1;
            if batch.len() >= BATCH_BYTES {
                flush(&mut batch, &mut records);
            }
        }
        flush(&mut batch, &mut records);
    }
}

/// Appends one event as a line of JSON.
pub fn format_event(out: &mut String, e: &FlowEvent) {
    let r = &e.record;
    out.push_str("{\"time\":\"");
    rfc3339(out, e.at);
    let _ = write!(out, "\",\"event\":\"{}\",\"interface\":", e.kind.as_str());
    json_string(out, &e.interface);
    out.push_str(",\"client\":");
    ip(out, r.client);
    let _ = write!(out, ",\"client_port\":{},\"server\":", r.client_port);
    ip(out, r.server);
    let _ = write!(out, ",\"server_port\":{},\"start\":\"", r.server_port);
    rfc3339(out, r.start);
    let end = r.end.map_or(e.at, |(_, at)| at);
    let _ = write!(
        out,
        "\",\"duration\":{},\"state\":\"{}\"",
        Secs(end.saturating_sub(r.start)),
        r.phase.as_str()
    );
    if e.kind == EventKind::Close {
        if let Some((reason, _)) = r.end {
            let _ = write!(out, ",\"reason\":\"{}\"", reason.as_str());
        }
    }
    for (name, i) in [("client_sent", 0), ("server_sent", 1)] {
        let _ = write!(out, ",\"{name}\":");
        direction(out, &r.dir[i], r.window_scale[i]);
    }
    out.push_str(",\"rtt\":{");
    for (n, (leg, i)) in [("client", 0), ("server", 1)].into_iter().enumerate() {
        if n > 0 {
            out.push(',');
        }
        let _ = write!(out, "\"{leg}\":");
        rtt(out, &r.rtt[i]);
    }
    out.push_str("},\"handshake_rtt\":{");
    for (n, (leg, i)) in [("client", 0), ("server", 1)].into_iter().enumerate() {
        if n > 0 {
            out.push(',');
        }
        let _ = match r.handshake_rtt[i] {
            Some(t) => write!(out, "\"{leg}\":{}", Secs(t)),
            None => write!(out, "\"{leg}\":null"),
        };
    }
    out.push_str("}}\n");
}

fn direction(out: &mut String, d: &DirCounters, window_scale: u8) {
    let _ = write!(
        out,
        "{{\"packets\":{},\"payload_bytes\":{},\"ip_bytes\":{},\"retransmissions\":{{",
        d.packets, d.payload_bytes, d.ip_bytes
    );
    for (n, (kind, count)) in RETRANSMISSION_KINDS.iter().zip(d.retransmitted).enumerate() {
        if n > 0 {
            out.push(',');
        }
        let _ = write!(out, "\"{kind}\":{count}");
    }
    let _ = write!(
        out,
        "}},\"retransmitted_bytes\":{},\"out_of_order\":{},\"duplicate_acks\":{},\
         \"lost_segments\":{},\"zero_windows\":{},\"zero_window_probes\":{},\
         \"window_full\":{},\"keepalives\":{},\"resets\":{}",
        d.retransmitted_bytes,
        d.out_of_order,
        d.duplicate_acks,
        d.lost_segments,
        d.zero_window,
        d.zero_window_probes,
        d.window_full,
        d.keepalives,
        d.resets
    );
    // Absent: this side's SYN was not seen, or its options were cut by the
    // snap length; null: it offered no scaling.
    match window_scale {
        WSCALE_UNSEEN => {}
        WSCALE_NOT_OFFERED => out.push_str(",\"window_scale\":null"),
        shift => {
            let _ = write!(out, ",\"window_scale\":{shift}");
        }
    }
    out.push('}');
}

fn rtt(out: &mut String, r: &RttStats) {
    match r.mean() {
        None => out.push_str("null"),
        Some(mean) => {
            let _ = write!(
                out,
                "{{\"min\":{},\"mean\":{},\"last\":{},\"samples\":{}}}",
                Secs(r.min),
                Secs(mean),
                Secs(r.last),
                r.count
            );
        }
    }
}

fn ip(out: &mut String, ip: IpAddr) {
    let _ = write!(out, "\"{ip}\"");
}

/// Seconds with microseconds, from nanoseconds.
struct Secs(Nanos);

impl std::fmt::Display for Secs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}.{:06}",
            self.0 / 1_000_000_000,
            self.0 % 1_000_000_000 / 1_000
        )
    }
}

fn json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// A capture time as RFC 3339 UTC with microseconds.
pub fn rfc3339(out: &mut String, t: Nanos) {
    let secs = t / 1_000_000_000;
    let micros = t % 1_000_000_000 / 1_000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    let _ = write!(
        out,
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{micros:06}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    );
}

/// Days since 1970-01-01 to (year, month, day), in the proleptic Gregorian
/// calendar (Howard Hinnant's days-from-civil algorithm, inverted).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capture_times_are_written_as_rfc3339_utc() {
        let mut s = String::new();
        rfc3339(&mut s, 0);
        assert_eq!(s, "1970-01-01T00:00:00.000000Z");
        s.clear();
        // date -u -d @1700000000 gives Tue Nov 14 22:13:20 UTC 2023.
        rfc3339(&mut s, 1_700_000_000_123_456_789);
        assert_eq!(s, "2023-11-14T22:13:20.123456Z");
        s.clear();
        // 2024-02-29 (a leap day): 1709164800.
        rfc3339(&mut s, 1_709_164_800 * 1_000_000_000);
        assert_eq!(s, "2024-02-29T00:00:00.000000Z");
    }

    #[test]
    fn strings_are_escaped_for_json() {
        let mut s = String::new();
        json_string(&mut s, "a\"b\\c\u{1}");
        assert_eq!(s, "\"a\\\"b\\\\c\\u0001\"");
    }
}
