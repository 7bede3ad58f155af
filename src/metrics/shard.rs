//! A worker's counters: plain integers, updated per segment by the worker
//! that owns the shard, read by the collector when Prometheus scrapes.
//!
//! Series are found once per connection (when it starts) and then addressed
//! by index, so the per-segment path is array arithmetic: no hashing of
//! labels, no allocation, no formatting.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use ahash::RandomState;

use crate::decode::{DecodeErrorKind, Segment};
use crate::flow::{CloseReason, Flags, Lifecycle, Nanos, Orientation, Removal, Side, Step};

use super::names::{DURATION_BUCKETS, RTT_BUCKETS};

/// Default `--max-series`: connection label sets (client, server,
/// server_port) kept per interface before new ones fold into `other`.
pub const DEFAULT_MAX_SERIES: usize = 10_000;
/// Beyond the cap, folded series keep their server port as long as there
/// are fewer than this many of them; then the port folds to 0 too, so the
/// total stays bounded by `max_series + OVERFLOW_PORTS + 1`.
pub const OVERFLOW_PORTS: usize = 256;

/// An address label: a real address, or `other` for what the series cap
/// folded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Peer {
    Ip(IpAddr),
    Other,
}

/// The labels of a connection's counters, the interface aside (a shard
/// belongs to one interface).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PairKey {
    pub client: Peer,
    pub server: Peer,
    pub server_port: u16,
}

/// The labels of a histogram series: histograms leave out the client, since
/// their buckets multiply series.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ServerKey {
    pub server: Peer,
    pub server_port: u16,
}

/// The series of one connection, as indices into its shard.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SeriesIds {
    pub pair: u32,
    pub server: u32,
}

/// Shift values 0..=14 and one slot for "no window-scale option".
pub const WSCALE_SLOTS: usize = 16;
pub const WSCALE_NONE: usize = 15;

/// Counts of one direction (client to server, or back) of a series.
#[derive(Clone, Copy, Debug, Default)]
pub struct DirCounters {
    pub packets: u64,
    pub payload_bytes: u64,
    pub ip_bytes: u64,
    pub resets: u64,
    pub dont_fragment: u64,
    pub syn_window_scale: [u64; WSCALE_SLOTS],
    /// By kind: [retransmission, fast_retransmission, spurious_retransmission].
    pub retransmitted: [u64; 3],
    pub retransmitted_bytes: u64,
    pub out_of_order: u64,
    pub duplicate_acks: u64,
    pub lost_segments: u64,
    pub zero_window: u64,
    pub zero_window_probes: u64,
    pub window_full: u64,
    pub keepalives: u64,
}

/// The `kind` label values of tcp_retransmitted_segments_total, in the
/// order of `DirCounters::retransmitted`.
pub const RETRANSMISSION_KINDS: [&str; 3] = [
    "retransmission",
    "fast_retransmission",
    "spurious_retransmission",
];

/// Counts of one (client, server, server_port) series.
#[derive(Clone, Copy, Debug, Default)]
pub struct PairCounters {
    pub dir: [DirCounters; 2],
    pub opened: u64,
    pub refused: u64,
    pub unanswered: u64,
    pub closed: [u64; 3],
    /// Connections of this series tracked and not closed.
    pub active: u64,
}

/// A histogram with fixed bucket bounds, in nanoseconds.
#[derive(Clone, Copy, Debug)]
pub struct Histogram<const N: usize> {
    /// Non-cumulative counts; index N is the +Inf bucket.
    pub counts: [u64; N],
    pub overflow: u64,
    pub sum_nanos: u128,
}

impl<const N: usize> Default for Histogram<N> {
    fn default() -> Self {
        Histogram {
            counts: [0; N],
            overflow: 0,
            sum_nanos: 0,
        }
    }
}

impl<const N: usize> Histogram<N> {
    fn observe(&mut self, bounds_nanos: &[u64; N], value: Nanos) {
        self.sum_nanos += value as u128;
        match bounds_nanos.iter().position(|&b| value <= b) {
            Some(i) => self.counts[i] += 1,
            None => self.overflow += 1,
        }
    }

    pub fn count(&self) -> u64 {
        self.counts.iter().sum::<u64>() + self.overflow
    }

    /// Adds another histogram's counts into this one.
    pub fn merge(&mut self, other: &Self) {
        for (a, b) in self.counts.iter_mut().zip(other.counts.iter()) {
            *a += b;
        }
        self.overflow += other.overflow;
        self.sum_nanos += other.sum_nanos;
    }
}

pub type RttHistogram = Histogram<{ RTT_BUCKETS.len() }>;
pub type DurationHistogram = Histogram<{ DURATION_BUCKETS.len() }>;

/// Histograms of one (server, server_port) series.
#[derive(Clone, Copy, Debug, Default)]
pub struct ServerHistograms {
    /// Indexed by leg: [client, server].
    pub handshake_rtt: [RttHistogram; 2],
    /// Data RTT, indexed by leg.
    pub rtt: [RttHistogram; 2],
    pub duration: DurationHistogram,
}

/// Capture statistics of the interface, as its backend reports them.
#[derive(Clone, Copy, Debug, Default)]
pub struct CaptureCounters {
    pub packets: u64,
    pub kernel_drops: u64,
    pub interface_drops: u64,
    pub ring_freezes: u64,
    pub ring_errors: u64,
}

/// Why flows left the table early, for `tcp_exporter_flow_evictions_total`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Evictions {
    pub idle_timeout: u64,
    pub table_full: u64,
}

/// A table of series: a key's index never changes once given, so the flow
/// table can hold it.
pub struct SeriesTable<K, V> {
    index: HashMap<K, u32, RandomState>,
    entries: Vec<(K, V)>,
}

impl<K: Copy + Eq + std::hash::Hash, V: Default> SeriesTable<K, V> {
    fn new() -> Self {
        SeriesTable {
            index: HashMap::with_hasher(RandomState::new()),
            entries: Vec::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn get(&self, key: &K) -> Option<u32> {
        self.index.get(key).copied()
    }

    fn insert(&mut self, key: K) -> u32 {
        let id = self.entries.len() as u32;
        self.entries.push((key, V::default()));
        self.index.insert(key, id);
        id
    }

    pub fn iter(&self) -> impl Iterator<Item = &(K, V)> {
        self.entries.iter()
    }
}

/// Everything a scrape reads of one worker.
pub struct Shard {
    pub interface: Arc<str>,
    pub pairs: SeriesTable<PairKey, PairCounters>,
    pub servers: SeriesTable<ServerKey, ServerHistograms>,
    pub decode_errors: [u64; DecodeErrorKind::COUNT],
    pub capture: CaptureCounters,
    pub flows_tracked: u64,
    pub evictions: Evictions,
    pub series_overflow: u64,
    pub interface_up: bool,
    max_series: usize,
    rtt_bounds: [u64; RTT_BUCKETS.len()],
    duration_bounds: [u64; DURATION_BUCKETS.len()],
}

fn nanos<const N: usize>(seconds: &[f64; N]) -> [u64; N] {
    seconds.map(|s| (s * 1e9).round() as u64)
}

impl Shard {
    pub fn new(interface: Arc<str>, max_series: usize) -> Shard {
        Shard {
            interface,
            pairs: SeriesTable::new(),
            servers: SeriesTable::new(),
            decode_errors: [0; DecodeErrorKind::COUNT],
            capture: CaptureCounters::default(),
            flows_tracked: 0,
            evictions: Evictions::default(),
            series_overflow: 0,
            interface_up: false,
            max_series: max_series.max(1),
            rtt_bounds: nanos(&RTT_BUCKETS),
            duration_bounds: nanos(&DURATION_BUCKETS),
        }
    }

    /// The series of a new connection, counted as active from now on. Label
    /// sets beyond `--max-series` fold into `other`.
    pub fn start_connection(&mut self, o: &Orientation) -> SeriesIds {
        let key = PairKey {
            client: Peer::Ip(o.client),
            server: Peer::Ip(o.server),
            server_port: o.server_port,
        };
        let (pair, folded) = match self.pairs.get(&key) {
            Some(id) => (id, None),
            None if self.pairs.len() < self.max_series => (self.pairs.insert(key), None),
            None => {
                self.series_overflow += 1;
                let port = if self.pairs.len() < self.max_series + OVERFLOW_PORTS {
                    o.server_port
                } else {
                    0
                };
                let other = PairKey {
                    client: Peer::Other,
                    server: Peer::Other,
                    server_port: port,
                };
                let id = self
                    .pairs
                    .get(&other)
                    .unwrap_or_else(|| self.pairs.insert(other));
                (id, Some(port))
            }
        };
        let server_key = match folded {
            None => ServerKey {
                server: Peer::Ip(o.server),
                server_port: o.server_port,
            },
            Some(port) => ServerKey {
                server: Peer::Other,
                server_port: port,
            },
        };
        let server = self
            .servers
            .get(&server_key)
            .unwrap_or_else(|| self.servers.insert(server_key));
        self.pairs.entries[pair as usize].1.active += 1;
        SeriesIds { pair, server }
    }

    /// Counts one segment of a connection, which stands for `segments` wire
    /// segments (more than one for an offload super-packet: each carried
    /// its own headers, and its own DF bit).
    pub fn on_segment(
        &mut self,
        ids: SeriesIds,
        sender: Side,
        seg: &Segment,
        segments: u32,
        step: &Step,
    ) {
        let d = &mut self.pairs.entries[ids.pair as usize].1.dir[sender.index()];
        let n = segments as u64;
        let headers = seg.ip_len.saturating_sub(seg.payload_len) as u64;
        d.packets += n;
        d.payload_bytes += seg.payload_len as u64;
        d.ip_bytes += seg.payload_len as u64 + headers * n;
        d.resets += seg.flags.rst() as u64;
        d.dont_fragment += seg.dont_fragment as u64 * n;
        if seg.flags.syn() {
            let slot = match seg.options.window_scale {
                // RFC 7323 2.3: a shift above 14 is used as 14.
                Some(shift) => (shift as usize).min(14),
                None => WSCALE_NONE,
            };
            d.syn_window_scale[slot] += 1;
        }
        let f = step.flags;
        if f.0 != 0 {
            let kind = if f.has(Flags::SPURIOUS_RETRANSMISSION) {
                Some(2)
            } else if f.has(Flags::FAST_RETRANSMISSION) {
                Some(1)
            } else if f.has(Flags::RETRANSMISSION) {
                Some(0)
            } else {
                None
            };
            if let Some(kind) = kind {
                d.retransmitted[kind] += 1;
                d.retransmitted_bytes += seg.payload_len as u64;
            }
            d.out_of_order += f.has(Flags::OUT_OF_ORDER) as u64;
            d.duplicate_acks += f.has(Flags::DUPLICATE_ACK) as u64;
            d.lost_segments += f.has(Flags::LOST_SEGMENT) as u64;
            d.zero_window += f.has(Flags::ZERO_WINDOW) as u64;
            d.zero_window_probes += f.has(Flags::ZERO_WINDOW_PROBE) as u64;
            d.window_full += f.has(Flags::WINDOW_FULL) as u64;
            d.keepalives += f.has(Flags::KEEP_ALIVE) as u64;
        }
        if step.lifecycle.is_some()
            || step.handshake_rtt.is_some()
            || step.duration.is_some()
            || step.data_rtt.is_some()
        {
            self.apply(ids, step);
        }
    }

    /// Counts a flow that left the table.
    pub fn on_removed(&mut self, ids: SeriesIds, removal: Removal, step: &Step) {
        match removal {
            Removal::Idle => self.evictions.idle_timeout += 1,
            Removal::Evicted => self.evictions.table_full += 1,
            Removal::Released | Removal::Superseded => {}
        }
        if removal == Removal::Evicted {
            // Still alive as far as we know: no longer tracked, but not
            // counted as closed or failed either.
            if step.lifecycle.is_some() {
                let p = &mut self.pairs.entries[ids.pair as usize].1;
                p.active = p.active.saturating_sub(1);
            }
            return;
        }
        self.apply(ids, step);
    }

    pub fn on_decode_error(&mut self, kind: DecodeErrorKind) {
        self.decode_errors[kind.index()] += 1;
    }

    fn apply(&mut self, ids: SeriesIds, step: &Step) {
        let p = &mut self.pairs.entries[ids.pair as usize].1;
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
            p.active = p.active.saturating_sub(1);
        }
        let h = &mut self.servers.entries[ids.server as usize].1;
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

    fn orient(client: &str, server: &str, port: u16) -> Orientation {
        Orientation {
            client: client.parse().unwrap(),
            server: server.parse().unwrap(),
            server_port: port,
        }
    }

    #[test]
    fn same_labels_share_a_series() {
        let mut s = Shard::new("eth0".into(), 10);
        let a = s.start_connection(&orient("10.0.0.1", "10.0.0.2", 80));
        let b = s.start_connection(&orient("10.0.0.1", "10.0.0.2", 80));
        assert_eq!(a, b);
        assert_eq!(s.pairs.entries[a.pair as usize].1.active, 2);
    }

    #[test]
    fn series_beyond_the_cap_fold_into_other_and_are_counted() {
        let mut s = Shard::new("eth0".into(), 2);
        s.start_connection(&orient("10.0.0.1", "10.0.0.9", 80));
        s.start_connection(&orient("10.0.0.2", "10.0.0.9", 80));
        let c = s.start_connection(&orient("10.0.0.3", "10.0.0.9", 80));
        let d = s.start_connection(&orient("10.0.0.4", "10.0.0.9", 80));
        assert_eq!(c, d);
        assert_eq!(s.series_overflow, 2);
        let (key, counters) = &s.pairs.entries[c.pair as usize];
        assert_eq!(key.client, Peer::Other);
        assert_eq!(key.server, Peer::Other);
        assert_eq!(counters.active, 2);
        assert_eq!(s.servers.entries[c.server as usize].0.server, Peer::Other);
    }

    #[test]
    fn folded_ports_are_bounded_too() {
        let mut s = Shard::new("eth0".into(), 1);
        for port in 1..=(OVERFLOW_PORTS as u16 + 100) {
            s.start_connection(&orient("10.0.0.1", "10.0.0.9", port));
        }
        assert!(s.pairs.len() <= 1 + OVERFLOW_PORTS + 1);
    }

    #[test]
    fn histogram_puts_values_in_the_first_bucket_that_holds_them() {
        let bounds = [10u64, 100, 1000];
        let mut h = Histogram::<3>::default();
        for v in [0, 10, 11, 1000, 1001] {
            h.observe(&bounds, v);
        }
        assert_eq!(h.counts, [2, 1, 1]);
        assert_eq!(h.overflow, 1);
        assert_eq!(h.count(), 5);
        assert_eq!(h.sum_nanos, 2022);
    }

    #[test]
    fn ended_connections_leave_the_active_gauge() {
        let mut s = Shard::new("eth0".into(), 10);
        let ids = s.start_connection(&orient("10.0.0.1", "10.0.0.2", 80));
        let step = Step {
            lifecycle: Some(Lifecycle::Refused),
            ..Step::default()
        };
        s.on_removed(ids, Removal::Superseded, &step);
        let p = &s.pairs.entries[ids.pair as usize].1;
        assert_eq!((p.active, p.refused), (0, 1));
    }
}
