//! Per-connection records, kept when the connection table
//! (`/connections`, on whenever HTTP is served, off with
//! `--no-connection-table`), `--long-connections` or `--flow-log` asks for
//! them (otherwise a connection costs nothing here).
//!
//! A record holds what one connection added to its series, counted by the
//! same code as the series (`DirCounters::count`), plus its endpoints, start,
//! state, RTT statistics and window scales. From the records come the
//! flow-log events (open, every interval, close) and the series of
//! long-lived connections. Both run on the capture clock: a due time is
//! checked in FIFO queues (every connection has the same interval and age,
//! so due times arrive in order), never by scanning every connection.
//!
//! Flow-log events go to the writer thread (`crate::flowlog`) through a
//! bounded queue; a full queue drops the event and counts it. Capture never
//! waits for the disk.
//!
//! For the connection table, a connection that left the flow table stays
//! shown, marked closed, for `CLOSED_SHOWN` of capture time, at most
//! `MAX_CLOSED_SHOWN` of them per worker; one dropped sooner to make room is
//! counted (`tcp_exporter_connection_table_closed_dropped_total`).

use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::Arc;

use crate::decode::Segment;
use crate::flow::{
    CloseReason, Lifecycle, Nanos, Orientation, Phase, Removal, Side, SteadyRun, Step,
};
use crate::identity::Peers;

use super::counters::DirCounters;
use super::labels::Reporter;

/// No record: the tag of a connection when records are off.
pub const NO_CONN: u32 = u32::MAX;

/// Flow-log events waiting for the writer, at most. Events travel by value
/// in the channel's own slots, allocated once when the flow log starts
/// (about 500 bytes each: 8 MiB in all), so that the capture thread never
/// allocates for an event.
pub const FLOW_LOG_QUEUE: usize = 16_384;
/// Default `--flow-log-interval`, in seconds.
pub const DEFAULT_FLOW_LOG_INTERVAL_SECS: u64 = 5;
/// Default `--max-long-connections`.
pub const DEFAULT_MAX_LONG_CONNECTIONS: usize = 1_000;
/// How long (capture clock) a connection stays in the connection table
/// after it left the flow table, marked closed: a closed connection already
/// lingered there `flow::CLOSED_LINGER_NANOS`, so one that failed is
/// listed for 70 s after its last segment.
pub const CLOSED_SHOWN: Nanos = 60_000_000_000;
/// Closed connections shown at most, per worker; the oldest goes first.
pub const MAX_CLOSED_SHOWN: usize = 4_096;

/// What a flow-log record reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// The first segment of a connection.
    Open,
    /// Every `--flow-log-interval` while the connection is open, and once
    /// for each open connection when the capture stops.
    Update,
    /// The connection left the flow table (after its close's linger, or
    /// idle, or evicted).
    Close,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Open => "open",
            EventKind::Update => "update",
            EventKind::Close => "close",
        }
    }
}

/// How a connection ended, for the flow log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EndReason {
    Fin,
    Rst,
    Timeout,
    Refused,
    Unanswered,
    /// Dropped from a full flow table while still open.
    Evicted,
}

impl EndReason {
    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::Fin => "fin",
            EndReason::Rst => "rst",
            EndReason::Timeout => "timeout",
            EndReason::Refused => "refused",
            EndReason::Unanswered => "unanswered",
            EndReason::Evicted => "evicted",
        }
    }

    fn of(lifecycle: Lifecycle) -> Option<EndReason> {
        match lifecycle {
            Lifecycle::Opened => None,
            Lifecycle::Refused => Some(EndReason::Refused),
            Lifecycle::Unanswered => Some(EndReason::Unanswered),
            Lifecycle::Closed(CloseReason::Fin) => Some(EndReason::Fin),
            Lifecycle::Closed(CloseReason::Rst) => Some(EndReason::Rst),
            Lifecycle::Closed(CloseReason::Timeout) => Some(EndReason::Timeout),
        }
    }
}

/// RTT samples of one leg.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RttStats {
    pub count: u32,
    pub min: Nanos,
    pub sum: Nanos,
    pub last: Nanos,
    /// Smoothed as TCP does (RFC 6298: 7/8 old, 1/8 new).
    pub smoothed: Nanos,
}

impl RttStats {
    pub fn observe(&mut self, rtt: Nanos) {
        if self.count == 0 {
            self.min = rtt;
            self.smoothed = rtt;
        } else {
            self.min = self.min.min(rtt);
            self.smoothed = (self.smoothed * 7 + rtt) / 8;
        }
        self.count += 1;
        self.sum = self.sum.saturating_add(rtt);
        self.last = rtt;
    }

    pub fn mean(&self) -> Option<Nanos> {
        (self.count > 0).then(|| self.sum / self.count as Nanos)
    }
}

/// Window-scale shift each side offered in its SYN: 0..=14, or one of these
/// (unseen: no SYN, or one whose options the snap length cut).
pub const WSCALE_UNSEEN: u8 = 0xff;
pub const WSCALE_NOT_OFFERED: u8 = 0xfe;

/// One connection, as the flow log and the long-connection series see it.
#[derive(Clone, Debug)]
pub struct ConnRecord {
    /// Who both ends are (with `--kubernetes`), fixed when it started.
    pub peers: Option<Arc<Peers>>,
    pub client: IpAddr,
    pub client_port: u16,
    pub server: IpAddr,
    pub server_port: u16,
    /// Capture time of its first segment.
    pub start: Nanos,
    /// Capture time of its last segment.
    pub last: Nanos,
    pub phase: Phase,
    /// How and when it ended, once it has.
    pub end: Option<(EndReason, Nanos)>,
    /// Indexed by sender: [client, server].
    pub dir: [DirCounters; 2],
    /// Indexed by sender; see `WSCALE_UNSEEN`.
    pub window_scale: [u8; 2],
    /// Data RTT, indexed by leg: [client, server].
    pub rtt: [RttStats; 2],
    /// Handshake RTT, indexed by leg.
    pub handshake_rtt: [Option<Nanos>; 2],
    /// Whose side the capture point is on.
    pub reporter: Reporter,
    generation: u32,
    /// In the flow table.
    live: bool,
    /// Shown in the connection table: live, or closed within `CLOSED_SHOWN`.
    shown: bool,
    announced: bool,
    long: bool,
}

impl ConnRecord {
    pub(crate) fn new(
        o: &Orientation,
        peers: Option<Arc<Peers>>,
        reporter: Reporter,
        now: Nanos,
        generation: u32,
    ) -> ConnRecord {
        ConnRecord {
            peers,
            client: o.client,
            client_port: o.client_port,
            server: o.server,
            server_port: o.server_port,
            start: now,
            last: now,
            phase: Phase::Midstream,
            end: None,
            dir: [DirCounters::default(); 2],
            window_scale: [WSCALE_UNSEEN; 2],
            rtt: [RttStats::default(); 2],
            handshake_rtt: [None; 2],
            reporter,
            generation,
            live: true,
            shown: true,
            announced: false,
            long: false,
        }
    }

    /// Whether it is still open (not closed, not ended).
    pub fn is_open(&self) -> bool {
        self.end.is_none() && self.phase != Phase::Closed
    }

    /// Whether its flow is still tracked (else it is shown closed).
    pub fn is_tracked(&self) -> bool {
        self.live
    }

    /// Retransmitted segments of every kind, both directions.
    pub fn retransmissions(&self) -> u64 {
        self.dir.iter().flat_map(|d| d.retransmitted).sum()
    }

    /// Segments, both directions.
    pub fn packets(&self) -> u64 {
        self.dir.iter().map(|d| d.packets).sum()
    }

    /// Payload bytes, both directions.
    pub fn payload_bytes(&self) -> u64 {
        self.dir.iter().map(|d| d.payload_bytes).sum()
    }
}

/// A flow-log event, for the writer.
#[derive(Clone, Debug)]
pub struct FlowEvent {
    pub kind: EventKind,
    /// Capture time the event is about.
    pub at: Nanos,
    pub interface: Arc<str>,
    pub record: ConnRecord,
}

/// What became of flow-log records: counted by the workers (a full queue)
/// and by the writer, read by the scrape.
#[derive(Debug, Default)]
pub struct FlowLogStats {
    pub written: AtomicU64,
    /// Dropped because the queue to the writer was full.
    pub queue_full: AtomicU64,
    /// Lost because writing them failed (a full disk, a closed pipe).
    pub write_errors: AtomicU64,
}

/// The sending side of the flow log's queue.
#[derive(Clone)]
pub struct FlowLogSink {
    tx: SyncSender<FlowEvent>,
    pub stats: Arc<FlowLogStats>,
    /// Wait for room instead of dropping: for a file read with -r, where
    /// nothing is lost by waiting (no kernel ring fills meanwhile).
    wait: bool,
}

impl FlowLogSink {
    pub fn new(tx: SyncSender<FlowEvent>, stats: Arc<FlowLogStats>, wait: bool) -> FlowLogSink {
        FlowLogSink { tx, stats, wait }
    }

    fn send(&self, event: FlowEvent) {
        if self.wait {
            if self.tx.send(event).is_err() {
                self.stats.queue_full.fetch_add(1, Ordering::Relaxed);
            }
            return;
        }
        match self.tx.try_send(event) {
            Ok(()) => {}
            // The writer is gone only when the exporter stops: count it
            // as a drop all the same, nothing is lost silently.
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.stats.queue_full.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// The exporter-wide cap on long-connection series (`--max-long-connections`).
pub struct LongBudget {
    max: usize,
    held: AtomicUsize,
    /// Connections old enough that found the cap full.
    pub overflow: AtomicU64,
}

impl LongBudget {
    pub fn new(max: usize) -> LongBudget {
        LongBudget {
            max,
            held: AtomicUsize::new(0),
            overflow: AtomicU64::new(0),
        }
    }

    fn take(&self) -> bool {
        self.held
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < self.max).then_some(n + 1)
            })
            .is_ok()
    }

    fn give_back(&self) {
        self.held.fetch_sub(1, Ordering::Relaxed);
    }

    /// Long-connection series shown now.
    pub fn held(&self) -> usize {
        self.held.load(Ordering::Relaxed)
    }
}

/// What the records are for.
#[derive(Clone)]
pub struct ConnOptions {
    /// The connection table (`/connections`): counts closed connections
    /// dropped from it early; `None` when it is off.
    pub table: Option<Arc<AtomicU64>>,
    /// `--long-connections`: the age from which a connection gets series.
    pub long_age: Option<Nanos>,
    pub long_budget: Arc<LongBudget>,
    /// `--flow-log`.
    pub log: Option<FlowLogSink>,
    pub log_interval: Nanos,
}

impl ConnOptions {
    pub fn enabled(&self) -> bool {
        self.table.is_some() || self.long_age.is_some() || self.log.is_some()
    }
}

/// A due time in a queue: (due, record, generation of the record).
type Due = (Nanos, u32, u32);

/// One worker's connection records. At most one per flow in its flow
/// table, so bounded by `--max-flows`.
pub struct Conns {
    records: Vec<ConnRecord>,
    free: Vec<u32>,
    reports: VecDeque<Due>,
    promotions: VecDeque<Due>,
    /// Closed connections shown in the table, by when they stop being.
    closed: VecDeque<Due>,
    opts: ConnOptions,
    interface: Arc<str>,
}

impl Conns {
    pub fn new(opts: ConnOptions, interface: Arc<str>) -> Conns {
        Conns {
            records: Vec::new(),
            free: Vec::new(),
            reports: VecDeque::new(),
            promotions: VecDeque::new(),
            closed: VecDeque::new(),
            opts,
            interface,
        }
    }

    /// Every record slot, live or free, for tests to compare.
    #[cfg(test)]
    pub(crate) fn records(&self) -> &[ConnRecord] {
        &self.records
    }

    /// A record for a new connection; `peers`: who its ends are.
    pub fn start(
        &mut self,
        o: &Orientation,
        peers: Option<Arc<Peers>>,
        reporter: Reporter,
        now: Nanos,
    ) -> u32 {
        let id = match self.free.pop() {
            Some(id) => {
                let generation = self.records[id as usize].generation.wrapping_add(1);
                self.records[id as usize] = ConnRecord::new(o, peers, reporter, now, generation);
                id
            }
            None => {
                self.records
                    .push(ConnRecord::new(o, peers, reporter, now, 0));
                (self.records.len() - 1) as u32
            }
        };
        let generation = self.records[id as usize].generation;
        if self.opts.log.is_some() {
            self.reports
                .push_back((now + self.opts.log_interval, id, generation));
        }
        if let Some(age) = self.opts.long_age {
            self.promotions.push_back((now + age, id, generation));
        }
        id
    }

    /// Counts one segment into the record, as the series counted it.
    #[allow(clippy::too_many_arguments)]
    pub fn on_segment(
        &mut self,
        id: u32,
        sender: Side,
        seg: &Segment,
        segments: u32,
        step: &Step,
        phase: Phase,
        now: Nanos,
    ) {
        let Some(r) = self.records.get_mut(id as usize) else {
            return;
        };
        r.dir[sender.index()].count(seg, segments, step.flags);
        r.last = r.last.max(now);
        r.phase = phase;
        if seg.flags.syn() {
            r.window_scale[sender.index()] = match seg.options.window_scale {
                Some(shift) => shift.min(14),
                None if seg.options.cut => WSCALE_UNSEEN,
                None => WSCALE_NOT_OFFERED,
            };
        }
        if let Some((leg, rtt)) = step.data_rtt {
            r.rtt[leg.index()].observe(rtt);
        }
        if let Some((leg, rtt)) = step.handshake_rtt {
            r.handshake_rtt[leg.index()] = Some(rtt);
        }
        if let Some(reason) = step.lifecycle.and_then(EndReason::of) {
            self.end(id, reason, now);
        }
        let r = &mut self.records[id as usize];
        if !r.announced {
            r.announced = true;
            let record = r.clone();
            self.emit(EventKind::Open, now, record);
        }
    }

    /// Counts a run of steady segments from `sender` (see
    /// `Shard::on_steady_run`): they change nothing but the counts and the
    /// time last seen, and come only after the connection was announced.
    pub fn on_steady_run(&mut self, id: u32, sender: Side, run: &SteadyRun) {
        if let Some(r) = self.records.get_mut(id as usize) {
            r.dir[sender.index()].count_run(run);
            r.last = r.last.max(run.last);
        }
    }

    fn end(&mut self, id: u32, reason: EndReason, now: Nanos) {
        let r = &mut self.records[id as usize];
        if r.end.is_none() {
            r.end = Some((reason, now));
        }
        if r.long {
            r.long = false;
            self.opts.long_budget.give_back();
        }
    }

    /// The connection's flow left the table: its close record.
    pub fn on_removed(&mut self, id: u32, removal: Removal, step: &Step, now: Nanos) {
        if self.records.get(id as usize).is_none_or(|r| !r.live) {
            return;
        }
        let reason = match removal {
            Removal::Evicted if self.records[id as usize].is_open() => Some(EndReason::Evicted),
            _ => step.lifecycle.and_then(EndReason::of),
        };
        self.end(id, reason.unwrap_or(EndReason::Timeout), now);
        let r = &mut self.records[id as usize];
        r.live = false;
        if self.opts.table.is_none() {
            // The last event takes the identities: a free record holds none.
            let record = ConnRecord {
                peers: r.peers.take(),
                ..r.clone()
            };
            self.emit(EventKind::Close, now, record);
            self.release(id);
            return;
        }
        let (record, generation) = (r.clone(), r.generation);
        self.emit(EventKind::Close, now, record);
        if self.closed.len() >= MAX_CLOSED_SHOWN {
            if let Some((_, oldest, g)) = self.closed.pop_front() {
                self.release_closed(oldest, g);
                if let Some(dropped) = &self.opts.table {
                    dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        self.closed
            .push_back((now.saturating_add(CLOSED_SHOWN), id, generation));
    }

    /// A record no longer shown goes back to the free list.
    fn release(&mut self, id: u32) {
        let r = &mut self.records[id as usize];
        r.shown = false;
        r.peers = None;
        self.free.push(id);
    }

    /// A closed record whose time in the table is over, if it is still that
    /// connection's.
    fn release_closed(&mut self, id: u32, generation: u32) {
        let r = &self.records[id as usize];
        if r.shown && !r.live && r.generation == generation {
            self.release(id);
        }
    }

    /// Runs what is due at capture time `now`: interval records, and
    /// connections that became long.
    pub fn maintain(&mut self, now: Nanos) {
        while let Some(&(due, id, generation)) = self.closed.front() {
            if due > now {
                break;
            }
            self.closed.pop_front();
            self.release_closed(id, generation);
        }
        while let Some(&(due, id, generation)) = self.reports.front() {
            if due > now {
                break;
            }
            self.reports.pop_front();
            let r = &self.records[id as usize];
            if r.live && r.generation == generation && r.is_open() {
                self.emit(EventKind::Update, now, r.clone());
                // From now, not from the due time: due times stay in order.
                self.reports
                    .push_back((now + self.opts.log_interval, id, generation));
            }
        }
        while let Some(&(due, id, generation)) = self.promotions.front() {
            if due > now {
                break;
            }
            self.promotions.pop_front();
            let r = &mut self.records[id as usize];
            if !(r.live && r.generation == generation && r.is_open()) {
                continue;
            }
            if self.opts.long_budget.take() {
                r.long = true;
            } else {
                self.opts
                    .long_budget
                    .overflow
                    .fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// The capture stopped: a last record for every connection still
    /// tracked (an update for open ones, the close of closed ones, whose
    /// linger will not end now). The records stay, so that the final scrape
    /// still shows long-lived connections; nothing is logged after this.
    pub fn finish(&mut self, now: Nanos) {
        for r in self.records.iter().filter(|r| r.live) {
            let kind = if r.is_open() {
                EventKind::Update
            } else {
                EventKind::Close
            };
            self.emit(kind, now, r.clone());
        }
        // Nothing is logged after this, and the writer stops once every
        // worker has let go of its sink.
        self.opts.log = None;
        self.reports.clear();
        self.promotions.clear();
    }

    /// Connections shown as long-lived now.
    pub fn long(&self) -> impl Iterator<Item = &ConnRecord> {
        self.records.iter().filter(|r| r.live && r.long)
    }

    /// The connection table's records: tracked, or closed within
    /// `CLOSED_SHOWN`, each with its index for `record`.
    pub fn shown(&self) -> impl Iterator<Item = (u32, &ConnRecord)> {
        (0u32..).zip(&self.records).filter(|(_, r)| r.shown)
    }

    pub fn record(&self, id: u32) -> Option<&ConnRecord> {
        self.records.get(id as usize)
    }

    /// Records held now.
    pub fn len(&self) -> usize {
        self.records.len() - self.free.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn emit(&self, kind: EventKind, at: Nanos, record: ConnRecord) {
        if let Some(sink) = &self.opts.log {
            sink.send(FlowEvent {
                kind,
                at,
                interface: Arc::clone(&self.interface),
                record,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::TcpFlags;
    use crate::flow::{Flags, Lifecycle};
    use std::sync::mpsc::{sync_channel, Receiver};

    const SEC: Nanos = 1_000_000_000;

    fn orient() -> Orientation {
        Orientation {
            client: [10, 0, 0, 1].into(),
            client_port: 40000,
            server: [10, 0, 0, 2].into(),
            server_port: 80,
        }
    }

    fn conns(
        long_age: Option<Nanos>,
        max_long: usize,
        queue: usize,
    ) -> (Conns, Receiver<FlowEvent>) {
        let (tx, rx) = sync_channel(queue);
        let opts = ConnOptions {
            table: None,
            long_age,
            long_budget: Arc::new(LongBudget::new(max_long)),
            log: Some(FlowLogSink::new(tx, Arc::default(), false)),
            log_interval: 5 * SEC,
        };
        (Conns::new(opts, "eth0".into()), rx)
    }

    fn data_segment() -> Segment<'static> {
        let mut s = crate::flow::test_segment(40000, 80, TcpFlags::ACK, 1, 1);
        s.payload_len = 100;
        s.ip_len = 152;
        s
    }

    /// A 100-byte data segment from `sender`, counted once.
    fn data(c: &mut Conns, id: u32, sender: Side, step: &Step, phase: Phase, now: Nanos) {
        c.on_segment(id, sender, &data_segment(), 1, step, phase, now);
    }

    fn kinds(rx: &Receiver<FlowEvent>) -> Vec<(EventKind, Nanos)> {
        rx.try_iter().map(|e| (e.kind, e.at)).collect()
    }

    #[test]
    fn a_connection_logs_open_then_every_interval_then_close() {
        let (mut c, rx) = conns(None, 0, 100);
        let id = c.start(&orient(), None, Reporter::Node, 0);
        let step = Step::default();
        data(&mut c, id, Side::Client, &step, Phase::Established, 0);
        data(&mut c, id, Side::Client, &step, Phase::Established, SEC);
        c.maintain(4 * SEC);
        c.maintain(5 * SEC);
        c.maintain(9 * SEC);
        c.maintain(10 * SEC);
        let fin = Step {
            lifecycle: Some(Lifecycle::Closed(CloseReason::Fin)),
            ..Step::default()
        };
        data(&mut c, id, Side::Server, &fin, Phase::Closed, 11 * SEC);
        c.maintain(16 * SEC);
        c.on_removed(id, Removal::Released, &Step::default(), 21 * SEC);
        let events: Vec<_> = rx.try_iter().collect();
        let got: Vec<_> = events.iter().map(|e| (e.kind, e.at)).collect();
        assert_eq!(
            got,
            vec![
                (EventKind::Open, 0),
                (EventKind::Update, 5 * SEC),
                (EventKind::Update, 10 * SEC),
                (EventKind::Close, 21 * SEC),
            ]
        );
        let last = &events[3].record;
        assert_eq!(last.end, Some((EndReason::Fin, 11 * SEC)));
        assert_eq!(last.dir[0].packets, 2);
        assert_eq!(last.dir[1].payload_bytes, 100);
        assert!(c.is_empty());
    }

    #[test]
    fn a_full_queue_drops_events_and_counts_them() {
        let (mut c, rx) = conns(None, 0, 1);
        for _ in 0..3 {
            let id = c.start(&orient(), None, Reporter::Node, 0);
            data(
                &mut c,
                id,
                Side::Client,
                &Step::default(),
                Phase::Established,
                0,
            );
        }
        assert_eq!(kinds(&rx).len(), 1);
        let dropped = c
            .opts
            .log
            .as_ref()
            .unwrap()
            .stats
            .queue_full
            .load(Ordering::Relaxed);
        assert_eq!(dropped, 2);
    }

    #[test]
    fn connections_become_long_at_their_age_within_the_cap_and_leave_when_closed() {
        let (mut c, _rx) = conns(Some(30 * SEC), 1, 100);
        let a = c.start(&orient(), None, Reporter::Node, 0);
        let b = c.start(&orient(), None, Reporter::Node, SEC);
        c.maintain(29 * SEC);
        assert_eq!(c.long().count(), 0);
        c.maintain(31 * SEC);
        assert_eq!(c.long().count(), 1, "the cap is 1");
        assert_eq!(c.opts.long_budget.overflow.load(Ordering::Relaxed), 1);
        assert_eq!(c.long().next().unwrap().start, 0, "the older one");
        let rst = Step {
            lifecycle: Some(Lifecycle::Closed(CloseReason::Rst)),
            flags: Flags::default(),
            ..Step::default()
        };
        data(&mut c, a, Side::Client, &rst, Phase::Closed, 32 * SEC);
        assert_eq!(c.long().count(), 0, "closed: its series go");
        assert_eq!(c.opts.long_budget.held(), 0);
        c.on_removed(b, Removal::Evicted, &Step::default(), 33 * SEC);
        assert_eq!(c.len(), 1);
    }

    fn shown(c: &Conns) -> Vec<(Nanos, bool)> {
        c.shown().map(|(_, r)| (r.start, r.is_tracked())).collect()
    }

    #[test]
    fn closed_connections_stay_in_the_table_for_their_time_within_the_bound() {
        let (mut c, rx) = conns(None, 0, 100_000);
        let dropped = Arc::new(AtomicU64::new(0));
        c.opts.table = Some(Arc::clone(&dropped));
        let a = c.start(&orient(), None, Reporter::Node, 0);
        let b = c.start(&orient(), None, Reporter::Node, SEC);
        c.on_removed(a, Removal::Released, &Step::default(), 2 * SEC);
        assert_eq!(shown(&c), vec![(0, false), (SEC, true)]);
        assert_eq!(
            rx.try_iter().count(),
            1,
            "the close record is written all the same"
        );
        c.maintain(2 * SEC + CLOSED_SHOWN - 1);
        assert_eq!(shown(&c).len(), 2);
        c.maintain(2 * SEC + CLOSED_SHOWN);
        assert_eq!(shown(&c), vec![(SEC, true)]);
        assert_eq!(c.len(), 1);

        // Beyond the bound, the oldest closed one makes room, counted.
        c.on_removed(b, Removal::Released, &Step::default(), 3 * SEC);
        for i in 0..MAX_CLOSED_SHOWN as u64 {
            let id = c.start(&orient(), None, Reporter::Node, 10 * SEC + i);
            c.on_removed(id, Removal::Released, &Step::default(), 10 * SEC + i);
        }
        assert_eq!(dropped.load(Ordering::Relaxed), 1);
        assert_eq!(shown(&c).len(), MAX_CLOSED_SHOWN);
        assert!(shown(&c).iter().all(|&(start, _)| start >= 10 * SEC));
        // The dropped one's record went to a new connection.
        let fresh = c.start(&orient(), None, Reporter::Node, 20 * SEC);
        assert!(c.record(fresh).unwrap().is_tracked());
        assert_eq!(shown(&c).len(), MAX_CLOSED_SHOWN + 1);
    }

    #[test]
    fn rtt_stats_keep_min_mean_last_and_a_smoothed_value() {
        let mut r = RttStats::default();
        for v in [800, 1600, 800] {
            r.observe(v);
        }
        assert_eq!((r.min, r.last, r.count), (800, 800, 3));
        assert_eq!(r.mean(), Some(1066));
        assert_eq!(r.smoothed, ((800 * 7 + 1600) / 8 * 7 + 800) / 8);
    }
}
