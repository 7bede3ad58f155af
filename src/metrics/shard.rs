//! A worker's counters: plain integers, updated per segment by the worker
//! that owns the shard, read by the collector when Prometheus scrapes.
//!
//! Series are found once per connection (when it starts: labels chosen,
//! addresses aggregated, the series cap consulted) and then addressed by
//! index, so the per-segment path is array arithmetic: no hashing of
//! labels, no allocation, no formatting. Housekeeping (series expiry,
//! flow-log intervals, long connections) runs at most every
//! `MAINTENANCE_INTERVAL` of capture time.

use std::sync::Arc;

use crate::decode::{DecodeErrorKind, Segment, TunnelKind};
use crate::flow::{CloseReason, Lifecycle, Nanos, Orientation, Outcome, Removal, Side, SteadyRun};

use super::conns::{ConnOptions, Conns, NO_CONN};
use super::counters::{wscale_slot, DirCounters, Histogram, WSCALE_SLOTS};
use super::labels::{Labeler, SeriesKey};
use super::names::{DURATION_BUCKETS, RTT_BUCKETS};
use super::series::{SeriesBudget, SeriesTable};

/// How often, in capture time, a shard expires series and runs what its
/// connection records have due.
pub const MAINTENANCE_INTERVAL: Nanos = 100_000_000;
/// Expired series whose last counts wait for the next scrape, at most, of
/// each kind per shard; more are dropped and counted
/// (`tcp_exporter_series_retired_dropped_total`).
pub const MAX_RETIRED: usize = 4_096;

/// The series of one connection, as an index into its shard (its
/// histograms are the counter series' `histograms`), and its record
/// (`NO_CONN` when records are off). 8 bytes of every flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SeriesIds {
    pub pair: u32,
    pub conn: u32,
}

/// Counts of one label set.
#[derive(Clone, Copy, Debug, Default)]
pub struct PairCounters {
    /// Indexed by sender: [client, server].
    pub dir: [DirCounters; 2],
    /// Window-scale shifts offered in SYNs, by sender.
    pub syn_window_scale: [[u64; WSCALE_SLOTS]; 2],
    pub opened: u64,
    pub refused: u64,
    pub unanswered: u64,
    pub closed: [u64; 3],
    /// Connections of this series tracked and not closed.
    pub active: u64,
}

impl PairCounters {
    /// Adds another series' counts into this one.
    pub fn merge(&mut self, o: &PairCounters) {
        for side in 0..2 {
            self.dir[side].merge(&o.dir[side]);
            for (a, b) in self.syn_window_scale[side]
                .iter_mut()
                .zip(o.syn_window_scale[side])
            {
                *a += b;
            }
        }
        self.opened += o.opened;
        self.refused += o.refused;
        self.unanswered += o.unanswered;
        for (a, b) in self.closed.iter_mut().zip(o.closed) {
            *a += b;
        }
        self.active += o.active;
    }
}

pub type RttHistogram = Histogram<{ RTT_BUCKETS.len() }>;
pub type DurationHistogram = Histogram<{ DURATION_BUCKETS.len() }>;

/// Histograms of one label set (without client).
#[derive(Clone, Copy, Debug, Default)]
pub struct ServerHistograms {
    /// Indexed by leg: [client, server].
    pub handshake_rtt: [RttHistogram; 2],
    /// Data RTT, indexed by leg.
    pub rtt: [RttHistogram; 2],
    pub duration: DurationHistogram,
}

impl ServerHistograms {
    pub fn merge(&mut self, o: &ServerHistograms) {
        for leg in 0..2 {
            self.handshake_rtt[leg].merge(&o.handshake_rtt[leg]);
            self.rtt[leg].merge(&o.rtt[leg]);
        }
        self.duration.merge(&o.duration);
    }
}

/// Capture statistics of the interface, as its backend reports them.
#[derive(Clone, Copy, Debug, Default)]
pub struct CaptureCounters {
    pub packets: u64,
    pub kernel_drops: u64,
    pub interface_drops: u64,
    pub ring_freezes: u64,
    pub ring_errors: u64,
    /// Segments the kernel counted (xdp `--xdp-count`) whose run the flow
    /// table refused: their connection had left it or been replaced.
    pub runs_refused: u64,
    /// Segments the kernel counted and handed up in runs (in `packets`).
    pub kernel_counted: u64,
    /// What the counting in the kernel did, by `KERNEL_COUNT_EVENTS`.
    pub kernel_count_events: [u64; KERNEL_COUNT_EVENTS.len()],
}

/// The `event` label values of `tcp_exporter_kernel_count_events_total`.
pub const KERNEL_COUNT_EVENTS: [&str; 6] = [
    "arm",
    "arm_refused",
    "flow_refused",
    "arm_mismatch",
    "gap",
    "flush_error",
];

/// Why flows left the table early, for `tcp_exporter_flow_evictions_total`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Evictions {
    pub idle_timeout: u64,
    pub table_full: u64,
}

/// What every shard of the exporter shares: how labels are made, the
/// series cap, how long idle series live, and what connection records are
/// for.
#[derive(Clone)]
pub struct ShardConfig {
    pub labeler: Arc<Labeler>,
    pub budget: Arc<SeriesBudget>,
    pub series_ttl: Nanos,
    pub conns: Option<ConnOptions>,
}

impl ShardConfig {
    /// `plain`, with the connection table (its records hold each flow's
    /// times and counts), for tests that compare records.
    #[cfg(test)]
    pub fn with_connection_table(max_series: usize) -> ShardConfig {
        use super::conns::{ConnOptions, LongBudget};
        ShardConfig {
            conns: Some(ConnOptions {
                table: Some(Arc::new(std::sync::atomic::AtomicU64::new(0))),
                long_age: None,
                long_budget: Arc::new(LongBudget::new(0)),
                log: None,
                log_interval: 10_000_000_000,
            }),
            ..ShardConfig::plain(max_series)
        }
    }

    /// Default labels, `max_series` label sets, the default TTL, no
    /// connection records.
    pub fn plain(max_series: usize) -> ShardConfig {
        ShardConfig {
            labeler: Arc::new(Labeler::plain()),
            budget: Arc::new(SeriesBudget::new(max_series)),
            series_ttl: super::series::DEFAULT_SERIES_TTL_SECS * 1_000_000_000,
            conns: None,
        }
    }
}

/// Everything a scrape reads of one worker.
pub struct Shard {
    pub interface: Arc<str>,
    /// The interface's index in the exporter (the `interface` of its keys).
    pub interface_id: u16,
    pub pairs: SeriesTable<PairCounters>,
    pub servers: SeriesTable<ServerHistograms>,
    /// The histogram series of each counter series, by index; a counter
    /// series holds its histogram series until it expires.
    histograms: Vec<u32>,
    pub conns: Option<Conns>,
    pub decode_errors: [u64; DecodeErrorKind::COUNT],
    /// Segments found inside overlays, by kind.
    pub tunnel_packets: [u64; TunnelKind::COUNT],
    /// Segments counted whose TCP options the snap length cut.
    pub options_cut: u64,
    pub capture: CaptureCounters,
    pub flows_tracked: u64,
    pub evictions: Evictions,
    pub series_overflow: u64,
    pub series_expired: u64,
    /// Expired series and their last counts, until a scrape takes them:
    /// a sum of several series (a label left out, Istio's label sets) keeps
    /// what one of them counted after it expires, so that it never goes
    /// down while the others live.
    pub retired_pairs: Vec<(SeriesKey, PairCounters)>,
    pub retired_servers: Vec<(SeriesKey, ServerHistograms)>,
    /// Expired series beyond `MAX_RETIRED` between two scrapes.
    pub retired_dropped: u64,
    pub interface_up: bool,
    /// The latest capture time seen.
    pub clock: Nanos,
    next_maintenance: Nanos,
    config: ShardConfig,
    rtt_bounds: [u64; RTT_BUCKETS.len()],
    duration_bounds: [u64; DURATION_BUCKETS.len()],
}

fn nanos<const N: usize>(seconds: &[f64; N]) -> [u64; N] {
    seconds.map(|s| (s * 1e9).round() as u64)
}

impl Shard {
    pub fn new(interface: Arc<str>, interface_id: u16, mut config: ShardConfig) -> Shard {
        // The records keep the connection options (and the flow log's
        // sink, which they let go of when the capture stops).
        let conns = config
            .conns
            .take()
            .filter(|c| c.enabled())
            .map(|c| Conns::new(c, Arc::clone(&interface)));
        Shard {
            interface,
            interface_id,
            pairs: SeriesTable::new(),
            servers: SeriesTable::new(),
            histograms: Vec::new(),
            conns,
            decode_errors: [0; DecodeErrorKind::COUNT],
            tunnel_packets: [0; TunnelKind::COUNT],
            options_cut: 0,
            capture: CaptureCounters::default(),
            flows_tracked: 0,
            evictions: Evictions::default(),
            series_overflow: 0,
            series_expired: 0,
            retired_pairs: Vec::new(),
            retired_servers: Vec::new(),
            retired_dropped: 0,
            interface_up: false,
            clock: 0,
            next_maintenance: 0,
            config,
            rtt_bounds: nanos(&RTT_BUCKETS),
            duration_bounds: nanos(&DURATION_BUCKETS),
        }
    }

    /// The series of a new connection first seen at `now`, counted as
    /// active from now on. Label sets beyond `--max-series` fold into
    /// `other`.
    pub fn start_connection(&mut self, o: &Orientation, now: Nanos) -> SeriesIds {
        // With a record, both ends are resolved once, for the record and
        // the series alike.
        let peers = match (&self.conns, &self.config.labeler.identities) {
            (Some(_), Some(ids)) => Some(ids.peers(o.client, o.server, o.server_port)),
            _ => None,
        };
        let key =
            self.config
                .labeler
                .key_with((self.interface_id, &self.interface), o, peers.as_deref());
        let pair = match self.pairs.get(&key) {
            Some(id) => id,
            None => {
                let pairs = &self.pairs;
                let (granted, folded) = self.config.budget.admit(key, |k| pairs.get(k).is_some());
                if folded {
                    self.series_overflow += 1;
                }
                match self.pairs.get(&granted) {
                    Some(id) => id,
                    None => self.new_pair(granted, now),
                }
            }
        };
        self.pairs.hold(pair);
        self.pairs.at(pair).value.active += 1;
        let conn = match &mut self.conns {
            Some(c) => {
                let reporter = self.config.labeler.reporter(&self.interface, o).0;
                c.start(o, peers, reporter, now)
            }
            None => NO_CONN,
        };
        SeriesIds { pair, conn }
    }

    /// A new counter series, holding its histogram series.
    fn new_pair(&mut self, key: SeriesKey, now: Nanos) -> u32 {
        let pair = self.pairs.insert(key, now);
        let server = self.servers.get_or_insert(key.histogram(), now);
        self.servers.hold(server);
        let i = pair as usize;
        if self.histograms.len() <= i {
            self.histograms.resize(i + 1, 0);
        }
        self.histograms[i] = server;
        pair
    }

    /// Counts one segment of a connection, which stands for `segments` wire
    /// segments (more than one for an offload super-packet).
    #[inline]
    pub fn on_segment(
        &mut self,
        out: &Outcome<SeriesIds>,
        seg: &Segment,
        segments: u32,
        now: Nanos,
    ) {
        let ids = out.tag;
        let sender = out.sender.index();
        let step = &out.step;
        let e = self.pairs.at(ids.pair);
        e.last = e.last.max(now);
        e.value.dir[sender].count(seg, segments, step.flags);
        if seg.flags.syn() {
            e.value.syn_window_scale[sender][wscale_slot(&seg.options)] += 1;
        }
        self.options_cut += seg.options.cut as u64;
        for kind in seg.tunnels.iter() {
            self.tunnel_packets[kind.index()] += 1;
        }
        self.apply(ids, step, now);
        if let Some(c) = &mut self.conns {
            c.on_segment(ids.conn, out.sender, seg, segments, step, out.phase, now);
        }
        self.advance(now);
    }

    /// Counts `run`, segments from `sender` on the connection `ids` that
    /// carry no flag, RTT or step in the connection's life, as `on_segment`
    /// would have counted each, at the time of the run's last segment: the
    /// sender's packets and bytes in the series and the connection record.
    /// Either a connection's mirror counted them and the flow table
    /// applied them (`FlowTable::on_steady_run`), or the worker gathered
    /// them (`Outcome::quiet`).
    pub fn on_steady_run(&mut self, ids: SeriesIds, sender: Side, run: &SteadyRun) {
        let now = run.last;
        // Later segments of the series' other connections may have been
        // counted before this run is applied.
        let e = self.pairs.at(ids.pair);
        e.last = e.last.max(now);
        e.value.dir[sender.index()].count_run(run);
        if let Some(c) = &mut self.conns {
            c.on_steady_run(ids.conn, sender, run);
        }
        self.advance(now);
    }

    /// Whether time-driven work (series expiry, the connection table's
    /// upkeep, flow-log intervals) is due by capture time `now`: a run
    /// gathered past it would be counted after that work, not before.
    #[inline]
    pub fn due_by(&self, now: Nanos) -> bool {
        now >= self.next_maintenance
    }

    /// Counts a flow that left the table at `now`.
    pub fn on_removed(
        &mut self,
        ids: SeriesIds,
        removal: Removal,
        step: &crate::flow::Step,
        now: Nanos,
    ) {
        match removal {
            Removal::Idle => self.evictions.idle_timeout += 1,
            Removal::Evicted => self.evictions.table_full += 1,
            Removal::Released | Removal::Superseded => {}
        }
        if removal == Removal::Evicted {
            // Still alive as far as we know: no longer tracked, but not
            // counted as closed or failed either.
            if step.lifecycle.is_some() {
                let p = &mut self.pairs.at(ids.pair).value;
                debug_assert!(p.active > 0, "an evicted connection was never active");
                p.active = p.active.saturating_sub(1);
            }
        } else {
            self.apply(ids, step, now);
        }
        if let Some(c) = &mut self.conns {
            c.on_removed(ids.conn, removal, step, now);
        }
        self.pairs.release(ids.pair);
    }

    pub fn on_decode_error(&mut self, kind: DecodeErrorKind) {
        self.decode_errors[kind.index()] += 1;
    }

    /// Capture time passed: runs housekeeping when due.
    #[inline]
    pub fn advance(&mut self, now: Nanos) {
        self.clock = self.clock.max(now);
        if self.clock >= self.next_maintenance {
            self.maintain();
        }
    }

    #[cold]
    fn maintain(&mut self) {
        let now = self.clock;
        self.next_maintenance = now + MAINTENANCE_INTERVAL;
        let ttl = self.config.series_ttl;
        let (budget, servers, histograms) =
            (&self.config.budget, &mut self.servers, &self.histograms);
        let (retired, dropped) = (&mut self.retired_pairs, &mut self.retired_dropped);
        self.series_expired += self.pairs.expire(now, ttl, |id, key, last| {
            budget.release(key);
            servers.release(histograms[id as usize]);
            retire(retired, dropped, *key, last);
        });
        let (retired, dropped) = (&mut self.retired_servers, &mut self.retired_dropped);
        self.servers.expire(now, ttl, |_, key, last| {
            retire(retired, dropped, *key, last)
        });
        if let Some(c) = &mut self.conns {
            c.maintain(now);
        }
    }

    /// The interface is forgotten (gone for good): every label set this
    /// shard holds goes back to the exporter-wide budget. How many.
    pub fn forget(&mut self) -> u64 {
        let mut n = 0;
        for e in self.pairs.iter() {
            self.config.budget.release(&e.key);
            n += 1;
        }
        n
    }

    /// The capture stopped: housekeeping brought up to the last capture
    /// time, then the last flow-log records.
    pub fn finish(&mut self) {
        self.maintain();
        if let Some(c) = &mut self.conns {
            c.finish(self.clock);
        }
    }

    #[inline]
    fn apply(&mut self, ids: SeriesIds, step: &crate::flow::Step, now: Nanos) {
        if step.lifecycle.is_none()
            && step.handshake_rtt.is_none()
            && step.duration.is_none()
            && step.data_rtt.is_none()
        {
            return;
        }
        let e = self.pairs.at(ids.pair);
        e.last = e.last.max(now);
        let p = &mut e.value;
        let ended = match step.lifecycle {
            None => false,
            Some(Lifecycle::Opened) => {
                p.opened += 1;
                false
            }
            Some(Lifecycle::Refused) => {
                p.refused += 1;
                true
            }
            Some(Lifecycle::Unanswered) => {
                p.unanswered += 1;
                true
            }
            Some(Lifecycle::Closed(reason)) => {
                p.closed[close_index(reason)] += 1;
                true
            }
        };
        if ended {
            // Saturating in release builds; the fuzz profile's debug
            // assertions make an unbalanced end a crash.
            debug_assert!(p.active > 0, "a connection ended that never started");
            p.active = p.active.saturating_sub(1);
        }
        if step.handshake_rtt.is_none() && step.data_rtt.is_none() && step.duration.is_none() {
            return;
        }
        let e = self.servers.at(self.histograms[ids.pair as usize]);
        e.last = e.last.max(now);
        let h = &mut e.value;
        if let Some((leg, rtt)) = step.handshake_rtt {
            h.handshake_rtt[leg.index()].observe(&self.rtt_bounds, rtt);
        }
        if let Some((leg, rtt)) = step.data_rtt {
            h.rtt[leg.index()].observe(&self.rtt_bounds, rtt);
        }
        if let Some(d) = step.duration {
            h.duration.observe(&self.duration_bounds, d);
        }
    }
}

/// Keeps an expired series' last counts for the next scrape, within
/// `MAX_RETIRED`.
fn retire<V>(retired: &mut Vec<(SeriesKey, V)>, dropped: &mut u64, key: SeriesKey, last: V) {
    if retired.len() < MAX_RETIRED {
        retired.push((key, last));
    } else {
        *dropped += 1;
    }
}

pub fn close_index(reason: CloseReason) -> usize {
    match reason {
        CloseReason::Fin => 0,
        CloseReason::Rst => 1,
        CloseReason::Timeout => 2,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::{Phase, Step};
    use crate::metrics::labels::Peer;
    use crate::metrics::series::OVERFLOW_PORTS;

    const SEC: Nanos = 1_000_000_000;

    use crate::flow::test_orientation as orient;

    fn shard(max_series: usize) -> Shard {
        Shard::new("eth0".into(), 0, ShardConfig::plain(max_series))
    }

    fn ended(ids: SeriesIds, lifecycle: Lifecycle) -> (Outcome<SeriesIds>, Segment<'static>) {
        let out = Outcome {
            tag: ids,
            sender: Side::Client,
            step: Step {
                lifecycle: Some(lifecycle),
                ..Step::default()
            },
            phase: Phase::Closed,
            quiet: false,
        };
        let seg = crate::flow::test_segment(40000, 80, crate::decode::TcpFlags::RST, 1, 0);
        (out, seg)
    }

    #[test]
    fn same_labels_share_a_series() {
        let mut s = shard(10);
        let a = s.start_connection(&orient("10.0.0.1", "10.0.0.2", 80), 0);
        let b = s.start_connection(&orient("10.0.0.1", "10.0.0.2", 80), 0);
        assert_eq!(a, b);
        assert_eq!(s.pairs.at(a.pair).value.active, 2);
    }

    #[test]
    fn series_beyond_the_cap_fold_into_other_and_are_counted() {
        let mut s = shard(2);
        s.start_connection(&orient("10.0.0.1", "10.0.0.9", 80), 0);
        s.start_connection(&orient("10.0.0.2", "10.0.0.9", 80), 0);
        let c = s.start_connection(&orient("10.0.0.3", "10.0.0.9", 80), 0);
        let d = s.start_connection(&orient("10.0.0.4", "10.0.0.9", 80), 0);
        assert_eq!(c, d);
        assert_eq!(s.series_overflow, 2);
        let e = s.pairs.at(c.pair);
        assert_eq!((e.key.client, e.key.server), (Peer::Other, Peer::Other));
        assert_eq!(e.value.active, 2);
        let h = s.histograms[c.pair as usize];
        assert_eq!(s.servers.at(h).key.server, Peer::Other);
    }

    #[test]
    fn the_cap_is_shared_by_every_shard() {
        let config = ShardConfig::plain(2);
        let mut a = Shard::new("eth0".into(), 0, config.clone());
        let mut b = Shard::new("eth0".into(), 0, config.clone());
        a.start_connection(&orient("10.0.0.1", "10.0.0.9", 80), 0);
        b.start_connection(&orient("10.0.0.1", "10.0.0.9", 80), 0);
        b.start_connection(&orient("10.0.0.2", "10.0.0.9", 80), 0);
        let folded = a.start_connection(&orient("10.0.0.3", "10.0.0.9", 80), 0);
        assert_eq!(a.pairs.at(folded.pair).key.client, Peer::Other);
        assert_eq!(config.budget.len(), (2, 1));
    }

    #[test]
    fn folded_ports_are_bounded_too() {
        let mut s = shard(1);
        for port in 1..=(OVERFLOW_PORTS as u16 + 100) {
            s.start_connection(&orient("10.0.0.1", "10.0.0.9", port), 0);
        }
        assert!(s.pairs.len() <= 1 + OVERFLOW_PORTS + 1);
    }

    #[test]
    fn ended_connections_leave_the_active_gauge() {
        let mut s = shard(10);
        let ids = s.start_connection(&orient("10.0.0.1", "10.0.0.2", 80), 0);
        let step = Step {
            lifecycle: Some(Lifecycle::Refused),
            ..Step::default()
        };
        s.on_removed(ids, Removal::Superseded, &step, 0);
        let p = &s.pairs.at(ids.pair).value;
        assert_eq!((p.active, p.refused), (0, 1));
    }

    #[test]
    fn series_expire_after_their_flows_leave_and_the_ttl_passes_freeing_the_cap() {
        let mut config = ShardConfig::plain(1);
        config.series_ttl = 60 * SEC;
        let mut s = Shard::new("eth0".into(), 0, config.clone());
        let a = s.start_connection(&orient("10.0.0.1", "10.0.0.2", 80), 0);
        let (out, seg) = ended(a, Lifecycle::Closed(CloseReason::Rst));
        s.on_segment(&out, &seg, 1, SEC);
        s.advance(50 * SEC);
        assert_eq!(
            s.pairs.len(),
            1,
            "its flow is still in the table (lingering)"
        );
        // Released late (the table noticed at 55 s): not a change.
        s.on_removed(a, Removal::Released, &Step::default(), 55 * SEC);
        s.advance(60 * SEC);
        assert_eq!(s.pairs.len(), 1, "last changed at 1 s: not yet");
        s.advance(61 * SEC + MAINTENANCE_INTERVAL);
        assert_eq!(s.pairs.len(), 0);
        assert_eq!(s.servers.len(), 0, "its histograms go with it");
        assert_eq!(s.series_expired, 1);
        assert_eq!(config.budget.len(), (0, 0));
        let b = s.start_connection(&orient("10.0.0.7", "10.0.0.2", 80), 72 * SEC);
        assert_eq!(
            s.pairs.at(b.pair).key.client,
            Peer::Ip("10.0.0.7".parse().unwrap()),
            "room again under the cap"
        );
    }
}
