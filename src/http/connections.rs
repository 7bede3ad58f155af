//! `/connections`: the live connection table as JSON, and
//! `/connections.html`, the page that shows it (one file, no external
//! assets: clusters are often air-gapped).
//!
//! A request is answered from `Exporter::connections`, which locks each
//! worker's shard only to pick and copy its best `limit` records: a pass
//! over all of them. One pass runs at a time, on the blocking pool, and
//! passes are at least `TABLE_GAP` apart, so that however many clients ask,
//! the capture threads hold their locks most of the time; a request that
//! finds no turn within `TABLE_WAIT` is answered 503 and counted
//! (`reason="busy"`). Every connection is the flow log's record of it
//! (`flowlog::record`), with what the table adds.

use std::time::Duration;

use serde::Serialize;

use crate::flowlog::{self, Secs, Timestamp};
use crate::metrics::table::{self, Query, Row, Table};

/// How long a request waits for its turn.
pub const TABLE_WAIT: Duration = Duration::from_secs(2);
/// The least time between the end of a pass and the start of the next.
pub const TABLE_GAP: Duration = Duration::from_millis(100);

/// The page, served as is.
pub const PAGE: &str = include_str!("connections.html");

#[derive(Serialize)]
struct Answer<'a> {
    /// The latest capture time.
    time: Timestamp,
    sort: &'static str,
    limit: usize,
    /// Connections that passed the filters (more than shown when over the
    /// limit).
    matched: usize,
    /// Connections in the table, in all.
    held: usize,
    connections: Vec<Entry<'a>>,
}

#[derive(Serialize)]
struct Entry<'a> {
    #[serde(flatten)]
    record: flowlog::Record<'a>,
    reporter: &'static str,
    /// Its flow left the flow table, or it ended.
    closed: bool,
    last_activity: Timestamp,
    /// Seconds since its last segment, on its worker's capture clock.
    idle: Secs,
    /// Retransmitted segments of every kind, both directions.
    retransmissions: u64,
    /// Those per segment, both directions.
    retransmission_rate: f64,
    /// The RTT the table sorts by: the larger smoothed data RTT of the two
    /// legs, or the handshake's.
    rtt_seconds: Option<Secs>,
}

fn entry(row: &Row) -> Entry<'_> {
    let r = &row.record;
    let packets = r.packets();
    Entry {
        record: flowlog::record(r, &row.interface, row.clock, None),
        reporter: r.reporter.as_str(),
        closed: !(r.is_open() && r.is_tracked()),
        last_activity: Timestamp(r.last),
        idle: Secs(row.clock.saturating_sub(r.last)),
        retransmissions: r.retransmissions(),
        retransmission_rate: match packets {
            0 => 0.0,
            n => r.retransmissions() as f64 / n as f64,
        },
        rtt_seconds: table::rtt(r).map(Secs),
    }
}

/// The JSON answer.
pub fn json(t: &Table, q: &Query) -> serde_json::Result<Vec<u8>> {
    let answer = Answer {
        time: Timestamp(t.clock),
        sort: q.sort.as_str(),
        limit: q.limit,
        matched: t.matched,
        held: t.held,
        connections: t.rows.iter().map(entry).collect(),
    };
    serde_json::to_vec(&answer)
}
