//! The scrape: sums the workers' shards by label set, attaches label
//! strings, and writes the Prometheus text exposition (format 0.0.4),
//! sorted by labels within each family. This is the only place where
//! addresses become strings.
//!
//! It writes text directly: one label string per series, made once and
//! reused by every family, and no tree of metric objects in between, so a
//! scrape's memory is the merged counters, their label strings and the
//! output.

use std::collections::{BTreeMap, HashMap};
use std::fmt::{Display, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use ahash::RandomState;

use crate::decode::{DecodeErrorKind, TunnelKind};
use crate::flow::{CloseReason, Nanos, Side};

use super::conns::{ConnRecord, FlowLogStats, LongBudget};
use super::counters::{wscale_label, DirCounters, Histogram, RETRANSMISSION_KINDS, WSCALE_SLOTS};
use super::istio::IstioSeries;
use super::labels::{escape_into, Label, Labeler, SeriesKey, NO_IDENTITY, NO_INTERFACE};
use super::names::{self, Def, Kind, DURATION_BUCKETS, RTT_BUCKETS};
use super::series::SeriesBudget;
use super::shard::{
    close_index, CaptureCounters, Evictions, PairCounters, ServerHistograms, Shard, ShardConfig,
    KERNEL_COUNT_EVENTS,
};
use super::table::{Query, Table};

/// What the scrape reads: every worker's shard, and what they share.
pub struct Exporter {
    shards: Mutex<Vec<Arc<Mutex<Shard>>>>,
    /// Interface names by id; a forgotten interface leaves its id free
    /// for the next new one.
    interfaces: Mutex<Vec<Option<Arc<str>>>>,
    /// Interfaces that matched `-i` and were not captured because
    /// `--max-interfaces` were already.
    interfaces_refused: AtomicU64,
    /// What forgotten shards had counted into the exporter-wide counters
    /// (folded connections; series expired, and those they still held), so
    /// that those never go back.
    retired_overflow: AtomicU64,
    retired_expired: AtomicU64,
    retired_dropped: AtomicU64,
    /// The last counts of expired series, by the label strings they
    /// rendered to, kept while a live series renders to the same string
    /// (see `Shard::retired_pairs`). Held for a whole scrape: scrapes are
    /// one at a time.
    retired: Mutex<Retired>,
    /// With `--otlp-endpoint`, what the export did.
    pub otlp: std::sync::OnceLock<Arc<ExportStats>>,
    version: &'static str,
    labeler: Arc<Labeler>,
    budget: Arc<SeriesBudget>,
    long: Option<Arc<LongBudget>>,
    flow_log: Option<Arc<FlowLogStats>>,
    /// The connection table's count of closed connections dropped early,
    /// when the table is on.
    table: Option<Arc<AtomicU64>>,
}

/// The identity index's size and the watch's faults, by kind.
fn write_kubernetes(out: &mut Text, identities: &crate::identity::Identities) {
    use crate::identity::ObjectKind;
    let (held, synced) = identities.with_index(|i| {
        (
            ObjectKind::ALL.map(|k| i.len(k) as u64),
            ObjectKind::ALL.map(|k| i.listed(k) as u64),
        )
    });
    let stats = &identities.stats;
    let per_kind: [(Def, [u64; 3]); 4] = [
        (names::KUBERNETES_OBJECTS, held),
        (names::KUBERNETES_SYNCED, synced),
        (
            names::KUBERNETES_WATCH_ERRORS,
            ObjectKind::ALL.map(|k| stats.errors[k as usize].load(Ordering::Relaxed)),
        ),
        (
            names::KUBERNETES_RELISTS,
            ObjectKind::ALL.map(|k| stats.relists[k as usize].load(Ordering::Relaxed)),
        ),
    ];
    for (def, values) in per_kind {
        out.header(def);
        for (kind, n) in ObjectKind::ALL.iter().zip(values) {
            out.sample(def.name, "", &[("kind", kind.as_str())], n);
        }
    }
    let def = names::KUBERNETES_IDENTITIES_OVERFLOW;
    out.header(def);
    out.sample(def.name, "", &[], stats.table_full.load(Ordering::Relaxed));
}

/// A poisoned lock only means a worker panicked mid-update; its counters are
/// still worth serving.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The exporter's own counts of one interface, summed over its workers.
#[derive(Default)]
struct InterfaceStats {
    capture: CaptureCounters,
    decode_errors: [u64; DecodeErrorKind::COUNT],
    tunnel_packets: [u64; TunnelKind::COUNT],
    options_cut: u64,
    flows: u64,
    evictions: Evictions,
    /// Up only while every worker on it is.
    up: bool,
}

/// What the OTLP export did (`crate::otlp`), for the exporter's own
/// metrics.
#[derive(Debug, Default)]
pub struct ExportStats {
    pub metrics_ok: AtomicU64,
    pub metrics_failed: AtomicU64,
    pub logs_ok: AtomicU64,
    pub logs_failed: AtomicU64,
    /// Flow-log records sent as OTLP logs, and dropped (their queue full).
    pub log_records_sent: AtomicU64,
    pub log_records_dropped: AtomicU64,
    /// With `--otlp-logs`.
    pub logs: bool,
}

/// What expired series had counted, by label string.
#[derive(Default)]
struct Retired {
    pairs: HashMap<String, PairCounters>,
    servers: HashMap<String, ServerHistograms>,
    istio: IstioSeries,
}

/// Adds to each live series what expired ones of the same label string had
/// counted, and forgets those of strings no live series has any more (that
/// series is gone: not a decrease, but its end).
fn add_retired<V>(
    live: &mut [(String, V)],
    retired: &mut HashMap<String, V>,
    merge: fn(&mut V, &V),
) {
    if retired.is_empty() {
        return;
    }
    let mut kept = HashMap::with_capacity(retired.len());
    for (labels, v) in live.iter_mut() {
        if let Some((labels, r)) = retired.remove_entry(labels.as_str()) {
            merge(v, &r);
            kept.insert(labels, r);
        }
    }
    *retired = kept;
}

/// A long-lived connection as the scrape shows it.
struct Long {
    labels: String,
    age: Nanos,
    record: ConnRecord,
}

impl Exporter {
    pub fn new(version: &'static str, config: &ShardConfig) -> Arc<Exporter> {
        let conns = config.conns.as_ref();
        Arc::new(Exporter {
            shards: Mutex::new(Vec::new()),
            interfaces: Mutex::new(Vec::new()),
            interfaces_refused: AtomicU64::new(0),
            retired_overflow: AtomicU64::new(0),
            retired_expired: AtomicU64::new(0),
            retired_dropped: AtomicU64::new(0),
            retired: Mutex::new(Retired::default()),
            otlp: std::sync::OnceLock::new(),
            version,
            labeler: Arc::clone(&config.labeler),
            budget: Arc::clone(&config.budget),
            long: conns
                .filter(|c| c.long_age.is_some())
                .map(|c| Arc::clone(&c.long_budget)),
            flow_log: conns
                .and_then(|c| c.log.as_ref())
                .map(|l| Arc::clone(&l.stats)),
            table: conns.and_then(|c| c.table.clone()),
        })
    }

    /// The id of an interface, for the keys of its series: its own while
    /// it is known, else the lowest free one.
    pub fn interface_id(&self, name: &str) -> u16 {
        let mut names = lock(&self.interfaces);
        if let Some(i) = names.iter().position(|n| n.as_deref() == Some(name)) {
            return i as u16;
        }
        let i = match names.iter().position(Option::is_none) {
            Some(free) => free,
            None => {
                names.push(None);
                names.len() - 1
            }
        };
        names[i] = Some(name.into());
        i.min(NO_INTERFACE as usize - 1) as u16
    }

    pub fn add_shard(&self, shard: Arc<Mutex<Shard>>) {
        lock(&self.shards).push(shard);
    }

    /// An interface that is gone for good: its shards leave the exposition
    /// (their label sets go back to `--max-series`, their exporter series
    /// go) and its id is free for another.
    pub fn forget_interface(&self, name: &str) {
        let mut shards = lock(&self.shards);
        shards.retain(|shard| {
            let mut s = lock(shard);
            if &*s.interface != name {
                return true;
            }
            let held = s.forget();
            self.retired_overflow
                .fetch_add(s.series_overflow, Ordering::Relaxed);
            self.retired_expired
                .fetch_add(s.series_expired + held, Ordering::Relaxed);
            self.retired_dropped
                .fetch_add(s.retired_dropped, Ordering::Relaxed);
            false
        });
        let mut names = lock(&self.interfaces);
        if let Some(slot) = names.iter_mut().find(|n| n.as_deref() == Some(name)) {
            *slot = None;
        }
        while names.last().is_some_and(Option::is_none) {
            names.pop();
        }
        drop(shards);
    }

    /// An interface turned away by `--max-interfaces`.
    pub fn count_refused_interface(&self) {
        self.interfaces_refused.fetch_add(1, Ordering::Relaxed);
    }

    /// The connection table's answer to `q`, or `None` when the table is
    /// off (`--no-connection-table`). Each worker's shard is locked while
    /// its best `q.limit` records are picked and copied.
    pub fn connections(&self, q: &Query) -> Option<Table> {
        if !self.has_table() {
            return None;
        }
        let shards = lock(&self.shards).clone();
        let mut table = Table::default();
        for shard in shards {
            let s = lock(&shard);
            if let Some(conns) = &s.conns {
                table.add(conns, &s.interface, s.clock, q);
            }
        }
        Some(table)
    }

    /// Whether the connection table is on.
    pub fn has_table(&self) -> bool {
        self.table.is_some()
    }

    /// The text exposition of everything now.
    pub fn render(&self) -> String {
        self.render_with(|_| {})
    }

    /// The text exposition, with families of the caller's own (the HTTP
    /// server's) written at the end.
    pub fn render_with(&self, extra: impl FnOnce(&mut Text)) -> String {
        let mut retired = lock(&self.retired);
        let mut retired_pairs = Vec::new();
        let mut retired_servers = Vec::new();
        let mut dropped = self.retired_dropped.load(Ordering::Relaxed);
        let mut pairs: HashMap<SeriesKey, PairCounters, RandomState> = HashMap::default();
        let mut servers: HashMap<SeriesKey, ServerHistograms, RandomState> = HashMap::default();
        let mut interfaces: BTreeMap<Arc<str>, InterfaceStats> = BTreeMap::new();

        let mut long = Vec::new();
        let mut held = 0;
        // One moment for the shard list, the counts of forgotten shards and
        // the interface names: `forget_interface` changes all three under
        // the shards lock, so a scrape never sees a forgotten shard's
        // counts twice or not at all, nor its series under a reused id.
        let (shards, mut overflow, mut expired, interface_names) = {
            let shards = lock(&self.shards);
            (
                shards.clone(),
                self.retired_overflow.load(Ordering::Relaxed),
                self.retired_expired.load(Ordering::Relaxed),
                lock(&self.interfaces).clone(),
            )
        };
        for shard in shards {
            let mut s = lock(&shard);
            retired_pairs.append(&mut s.retired_pairs);
            retired_servers.append(&mut s.retired_servers);
            dropped += s.retired_dropped;
            for e in s.pairs.iter() {
                pairs.entry(e.key).or_default().merge(&e.value);
            }
            for e in s.servers.iter() {
                servers.entry(e.key).or_default().merge(&e.value);
            }
            let i = interfaces
                .entry(Arc::clone(&s.interface))
                .or_insert_with(|| InterfaceStats {
                    up: true,
                    ..InterfaceStats::default()
                });
            let c = &mut i.capture;
            c.packets += s.capture.packets;
            c.kernel_drops += s.capture.kernel_drops;
            c.interface_drops += s.capture.interface_drops;
            c.ring_freezes += s.capture.ring_freezes;
            c.ring_errors += s.capture.ring_errors;
            c.runs_refused += s.capture.runs_refused;
            c.kernel_counted += s.capture.kernel_counted;
            let events = c.kernel_count_events.iter_mut();
            for (a, b) in events.zip(s.capture.kernel_count_events) {
                *a += b;
            }
            for (a, b) in i.decode_errors.iter_mut().zip(s.decode_errors) {
                *a += b;
            }
            i.options_cut += s.options_cut;
            for (a, b) in i.tunnel_packets.iter_mut().zip(s.tunnel_packets) {
                *a += b;
            }
            i.flows += s.flows_tracked;
            i.evictions.idle_timeout += s.evictions.idle_timeout;
            i.evictions.table_full += s.evictions.table_full;
            i.up &= s.interface_up;
            overflow += s.series_overflow;
            expired += s.series_expired;
            if let Some(conns) = &s.conns {
                held += conns.len();
                for r in conns.long() {
                    long.push(Long {
                        labels: long_labels(&s.interface, r),
                        age: s.clock.saturating_sub(r.start),
                        record: r.clone(),
                    });
                }
            }
        }
        let mut istio = self.istio_series(pairs.iter());
        let label = |key: &SeriesKey| self.labels(key, &interface_names);
        // What expired since the last scrape joins what had before.
        if let Some(gone) = self.istio_series(retired_pairs.iter().map(|(k, v)| (k, v))) {
            retired.istio.absorb(gone);
        }
        for (k, v) in retired_pairs {
            retired.pairs.entry(label(&k)).or_default().merge(&v);
        }
        for (k, v) in retired_servers {
            retired.servers.entry(label(&k)).or_default().merge(&v);
        }
        // Keys that differ only in what is not a label (Istio's reporters,
        // names Istio has that the chosen labels do not show) are one
        // series.
        let mut pairs = coalesce(
            pairs.into_iter().map(|(k, v)| (label(&k), v)),
            PairCounters::merge,
        );
        let mut servers = coalesce(
            servers.into_iter().map(|(k, v)| (label(&k), v)),
            ServerHistograms::merge,
        );
        add_retired(&mut pairs, &mut retired.pairs, PairCounters::merge);
        add_retired(&mut servers, &mut retired.servers, ServerHistograms::merge);
        if let Some(istio) = &mut istio {
            istio.add_retired(&mut retired.istio);
        }
        drop(retired);
        long.sort_unstable_by(|a, b| a.labels.cmp(&b.labels));

        // About 41 lines of ~140 bytes per label set.
        let mut out = Text(String::with_capacity(4096 + pairs.len() * 6000));
        self.write_traffic(&mut out, &pairs, &servers);
        if let Some(istio) = istio {
            istio.write(&mut out);
        }
        self.write_long(&mut out, &long);
        self.write_own(&mut out, &interfaces, overflow, expired, dropped);
        if let Some(closed_dropped) = &self.table {
            let def = names::CONNECTION_TABLE;
            out.header(def);
            out.sample(def.name, "", &[], held);
            let def = names::CONNECTION_TABLE_CLOSED_DROPPED;
            out.header(def);
            let n = closed_dropped.load(Ordering::Relaxed);
            out.sample(def.name, "", &[], n);
        }
        extra(&mut out);
        out.0
    }

    /// Istio's series (with `--istio-metrics`), summed from the native ones.
    fn istio_series<'a>(
        &self,
        pairs: impl Iterator<Item = (&'a SeriesKey, &'a PairCounters)>,
    ) -> Option<IstioSeries> {
        let options = self.labeler.istio.as_ref()?;
        let identities = self.labeler.identities.as_ref()?;
        let mut istio = IstioSeries::default();
        for (key, c) in pairs.filter(|(k, _)| k.istio != 0) {
            let (client, server) = (identities.get(key.client_id), identities.get(key.server_id));
            istio.add(options, key.istio, &client, &server, c);
        }
        Some(istio)
    }

    /// The label string of a series key: each label it carries, in the
    /// order of `Label::ALL`.
    fn labels(&self, key: &SeriesKey, interfaces: &[Option<Arc<str>>]) -> String {
        use super::labels::Peer;
        let mut s = String::with_capacity(96);
        let sep = |s: &mut String, name: &str| {
            if !s.is_empty() {
                s.push(',');
            }
            s.push_str(name);
            s.push_str("=\"");
        };
        if key.interface != NO_INTERFACE {
            sep(&mut s, "interface");
            let name = interfaces
                .get(key.interface as usize)
                .and_then(Option::as_deref)
                .unwrap_or("");
            escape_into(&mut s, name);
            s.push('"');
        }
        if let Some(reporter) = key.reporter {
            sep(&mut s, "reporter");
            s.push_str(reporter.as_str());
            s.push('"');
        }
        for (name, peer) in [("client", key.client), ("server", key.server)] {
            if peer != Peer::Absent {
                sep(&mut s, name);
                self.labeler.write_peer(&mut s, peer);
                s.push('"');
            }
        }
        if let Some(port) = key.server_port {
            sep(&mut s, "server_port");
            let _ = write!(s, "{port}\"");
        }
        if let Some(id) = key.port_name {
            sep(&mut s, "port_name");
            escape_into(&mut s, self.labeler.name(id));
            s.push('"');
        }
        if let Some(family) = key.family {
            sep(&mut s, "ip_family");
            s.push_str(family.as_str());
            s.push('"');
        }
        if let Some(identities) = &self.labeler.identities {
            let chosen = self.labeler.labels;
            for (id, labels) in [
                (key.client_id, &Label::CLIENT_IDENTITY[..]),
                (key.server_id, &Label::SERVER_IDENTITY[..]),
            ] {
                if id == NO_IDENTITY {
                    continue;
                }
                let who = identities.get(id);
                for label in labels.iter().filter(|l| chosen.has(**l)) {
                    sep(&mut s, label.as_str());
                    escape_into(&mut s, label.identity_value(&who));
                    s.push('"');
                }
            }
        }
        s
    }

    fn write_traffic(
        &self,
        out: &mut Text,
        pairs: &[(String, PairCounters)],
        servers: &[(String, ServerHistograms)],
    ) {
        let directional: [(Def, Field); 5] = [
            (names::PACKETS, |d| d.packets),
            (names::PAYLOAD_BYTES, |d| d.payload_bytes),
            (names::IP_BYTES, |d| d.ip_bytes),
            (names::RESETS, |d| d.resets),
            (names::DONT_FRAGMENT, |d| d.dont_fragment),
        ];
        by_sender(out, pairs, &directional);
        let def = names::SYN_WINDOW_SCALE;
        out.header(def);
        for (labels, c) in pairs {
            for side in Side::BOTH {
                for slot in 0..WSCALE_SLOTS {
                    let n = c.syn_window_scale[side.index()][slot];
                    if n > 0 {
                        let shift = wscale_label(slot);
                        let extra = [("sender", side.as_str()), ("shift", shift.as_str())];
                        out.sample(def.name, labels, &extra, n);
                    }
                }
            }
        }
        let def = names::OPENED;
        out.header(def);
        for (labels, c) in pairs {
            out.sample(def.name, labels, &[], c.opened);
        }
        let def = names::FAILED;
        out.header(def);
        for (labels, c) in pairs {
            out.sample(def.name, labels, &[("reason", "refused")], c.refused);
            out.sample(def.name, labels, &[("reason", "unanswered")], c.unanswered);
        }
        let def = names::CLOSED;
        out.header(def);
        for (labels, c) in pairs {
            for reason in CloseReason::ALL {
                let n = c.closed[close_index(reason)];
                out.sample(def.name, labels, &[("reason", reason.as_str())], n);
            }
        }
        let def = names::ACTIVE;
        out.header(def);
        for (labels, c) in pairs {
            out.sample(def.name, labels, &[], c.active);
        }
        let def = names::RETRANSMITTED_SEGMENTS;
        out.header(def);
        for (labels, c) in pairs {
            for side in Side::BOTH {
                let d = &c.dir[side.index()];
                for (kind, n) in RETRANSMISSION_KINDS.iter().zip(d.retransmitted) {
                    let extra = [("sender", side.as_str()), ("kind", kind)];
                    out.sample(def.name, labels, &extra, n);
                }
            }
        }
        let analysis: [(Def, Field); 8] = [
            (names::RETRANSMITTED_BYTES, |d| d.retransmitted_bytes),
            (names::OUT_OF_ORDER, |d| d.out_of_order),
            (names::DUPLICATE_ACKS, |d| d.duplicate_acks),
            (names::LOST_SEGMENTS, |d| d.lost_segments),
            (names::ZERO_WINDOW, |d| d.zero_window),
            (names::ZERO_WINDOW_PROBES, |d| d.zero_window_probes),
            (names::WINDOW_FULL, |d| d.window_full),
            (names::KEEPALIVES, |d| d.keepalives),
        ];
        by_sender(out, pairs, &analysis);
        let family = HistogramFamily::new(names::RTT, &RTT_BUCKETS);
        out.header(names::RTT);
        for (labels, h) in servers {
            for leg in Side::BOTH {
                let extra = [("leg", leg.as_str())];
                out.histogram(&family, labels, &extra, &h.rtt[leg.index()]);
            }
        }
        let family = HistogramFamily::new(names::DURATION, &DURATION_BUCKETS);
        out.header(names::DURATION);
        for (labels, h) in servers {
            out.histogram(&family, labels, &[], &h.duration);
        }
        let family = HistogramFamily::new(names::HANDSHAKE_RTT, &RTT_BUCKETS);
        out.header(names::HANDSHAKE_RTT);
        for (labels, h) in servers {
            for leg in Side::BOTH {
                let extra = [("leg", leg.as_str())];
                out.histogram(&family, labels, &extra, &h.handshake_rtt[leg.index()]);
            }
        }
    }

    fn write_long(&self, out: &mut Text, long: &[Long]) {
        if self.long.is_none() {
            return;
        }
        let def = names::LONG_AGE;
        out.header(def);
        for l in long {
            out.sample(def.name, &l.labels, &[], Seconds(l.age));
        }
        let fields: [(Def, Field); 3] = [
            (names::LONG_PAYLOAD_BYTES, |d| d.payload_bytes),
            (names::LONG_PACKETS, |d| d.packets),
            (names::LONG_RETRANSMITTED, |d| d.retransmissions()),
        ];
        for (def, field) in fields {
            out.header(def);
            for l in long {
                for side in Side::BOTH {
                    let v = field(&l.record.dir[side.index()]);
                    out.sample(def.name, &l.labels, &[("sender", side.as_str())], v);
                }
            }
        }
        let def = names::LONG_RTT;
        out.header(def);
        for l in long {
            for leg in Side::BOTH {
                let rtt = &l.record.rtt[leg.index()];
                if rtt.count > 0 {
                    let extra = [("leg", leg.as_str())];
                    out.sample(def.name, &l.labels, &extra, Seconds(rtt.smoothed));
                }
            }
        }
    }

    fn write_own(
        &self,
        out: &mut Text,
        interfaces: &BTreeMap<Arc<str>, InterfaceStats>,
        overflow: u64,
        expired: u64,
        retired_dropped: u64,
    ) {
        let def = names::BUILD_INFO;
        out.header(def);
        let mut version = String::from("version=\"");
        escape_into(&mut version, self.version);
        version.push('"');
        out.sample(def.name, &version, &[], 1);
        let per_interface: Vec<(String, &InterfaceStats)> = interfaces
            .iter()
            .map(|(name, stats)| {
                let mut l = String::from("interface=\"");
                escape_into(&mut l, name);
                l.push('"');
                (l, stats)
            })
            .collect();
        let def = names::CAPTURE_PACKETS;
        out.header(def);
        for (l, i) in &per_interface {
            out.sample(def.name, l, &[], i.capture.packets);
        }
        let def = names::CAPTURE_DROPS;
        out.header(def);
        for (l, i) in &per_interface {
            out.sample(
                def.name,
                l,
                &[("stage", "interface")],
                i.capture.interface_drops,
            );
            out.sample(def.name, l, &[("stage", "kernel")], i.capture.kernel_drops);
            let c = &i.capture;
            out.sample(def.name, l, &[("stage", "ring_freeze")], c.ring_freezes);
            out.sample(def.name, l, &[("stage", "ring_error")], c.ring_errors);
            out.sample(def.name, l, &[("stage", "run_refused")], c.runs_refused);
        }
        let def = names::DECODE_ERRORS;
        out.header(def);
        for (l, i) in &per_interface {
            let mut kinds: Vec<_> = DecodeErrorKind::ALL.iter().collect();
            kinds.sort_by_key(|k| k.as_str());
            for kind in kinds {
                let n = i.decode_errors[kind.index()];
                out.sample(def.name, l, &[("reason", kind.as_str())], n);
            }
        }
        let def = names::TRUNCATED_SEGMENTS;
        out.header(def);
        for (l, i) in &per_interface {
            out.sample(def.name, l, &[], i.options_cut);
        }
        let def = names::KERNEL_COUNTED;
        out.header(def);
        for (l, i) in &per_interface {
            out.sample(def.name, l, &[], i.capture.kernel_counted);
        }
        let def = names::KERNEL_COUNT_EVENTS;
        out.header(def);
        for (l, i) in &per_interface {
            let events = KERNEL_COUNT_EVENTS
                .iter()
                .zip(i.capture.kernel_count_events);
            for (event, n) in events {
                out.sample(def.name, l, &[("event", event)], n);
            }
        }
        let def = names::TUNNEL_PACKETS;
        out.header(def);
        for (l, i) in &per_interface {
            for kind in TunnelKind::ALL {
                let n = i.tunnel_packets[kind.index()];
                out.sample(def.name, l, &[("kind", kind.as_str())], n);
            }
        }
        let def = names::FLOWS_TRACKED;
        out.header(def);
        for (l, i) in &per_interface {
            out.sample(def.name, l, &[], i.flows);
        }
        let def = names::FLOW_EVICTIONS;
        out.header(def);
        for (l, i) in &per_interface {
            let e = i.evictions;
            out.sample(def.name, l, &[("reason", "idle_timeout")], e.idle_timeout);
            out.sample(def.name, l, &[("reason", "table_full")], e.table_full);
        }
        // Unlabelled, as the contract names it: one total for the exporter.
        let def = names::SERIES_OVERFLOW;
        out.header(def);
        out.sample(def.name, "", &[], overflow);
        let (own, folded) = self.budget.len();
        let def = names::SERIES_TRACKED;
        out.header(def);
        out.sample(def.name, "", &[("kind", "folded")], folded);
        out.sample(def.name, "", &[("kind", "own")], own);
        let def = names::SERIES_EXPIRED;
        out.header(def);
        out.sample(def.name, "", &[], expired);
        let def = names::SERIES_RETIRED_DROPPED;
        out.header(def);
        out.sample(def.name, "", &[], retired_dropped);
        if let Some(otlp) = self.otlp.get() {
            let def = names::OTLP_EXPORTS;
            out.header(def);
            let mut exports = vec![
                ("metrics", "ok", &otlp.metrics_ok),
                ("metrics", "failed", &otlp.metrics_failed),
            ];
            if otlp.logs {
                exports.push(("logs", "ok", &otlp.logs_ok));
                exports.push(("logs", "failed", &otlp.logs_failed));
            }
            for (signal, result, n) in exports {
                let extra = [("signal", signal), ("result", result)];
                out.sample(def.name, "", &extra, n.load(Ordering::Relaxed));
            }
            if otlp.logs {
                let def = names::OTLP_LOG_RECORDS;
                out.header(def);
                for (result, n) in [
                    ("sent", &otlp.log_records_sent),
                    ("dropped", &otlp.log_records_dropped),
                ] {
                    out.sample(
                        def.name,
                        "",
                        &[("result", result)],
                        n.load(Ordering::Relaxed),
                    );
                }
            }
        }
        if let Some(identities) = &self.labeler.identities {
            write_kubernetes(out, identities);
        }
        let def = names::INTERFACES_REFUSED;
        out.header(def);
        let refused = self.interfaces_refused.load(Ordering::Relaxed);
        out.sample(def.name, "", &[], refused);
        if let Some(long) = &self.long {
            let def = names::LONG_CONNECTIONS;
            out.header(def);
            out.sample(def.name, "", &[], long.held());
            let def = names::LONG_OVERFLOW;
            out.header(def);
            out.sample(def.name, "", &[], long.overflow.load(Ordering::Relaxed));
        }
        if let Some(log) = &self.flow_log {
            let def = names::FLOW_LOG_RECORDS;
            out.header(def);
            out.sample(def.name, "", &[], log.written.load(Ordering::Relaxed));
            let def = names::FLOW_LOG_DROPS;
            out.header(def);
            let full = log.queue_full.load(Ordering::Relaxed);
            let errors = log.write_errors.load(Ordering::Relaxed);
            out.sample(def.name, "", &[("reason", "queue_full")], full);
            out.sample(def.name, "", &[("reason", "write_error")], errors);
        }
        let def = names::INTERFACE_UP;
        out.header(def);
        for (l, i) in &per_interface {
            out.sample(def.name, l, &[], i.up as u8);
        }
    }
}

/// A counter of one direction's counts, and how to read it.
type Field = fn(&DirCounters) -> u64;

/// Families of per-direction counters: one sample per label set and sender.
fn by_sender(out: &mut Text, pairs: &[(String, PairCounters)], families: &[(Def, Field)]) {
    for (def, field) in families {
        out.header(*def);
        for (labels, c) in pairs {
            for side in Side::BOTH {
                let v = field(&c.dir[side.index()]);
                out.sample(def.name, labels, &[("sender", side.as_str())], v);
            }
        }
    }
}

/// The labels of a long-lived connection: always these five, whatever
/// `--labels` says (it is one connection), and with `--kubernetes` every
/// identity label of both ends, pods included.
fn long_labels(interface: &str, r: &ConnRecord) -> String {
    let mut s = String::from("interface=\"");
    escape_into(&mut s, interface);
    let _ = write!(
        s,
        "\",client=\"{}\",client_port=\"{}\",server=\"{}\",server_port=\"{}\"",
        r.client, r.client_port, r.server, r.server_port
    );
    if let Some(peers) = &r.peers {
        for (who, labels) in [
            (&peers.client, &Label::CLIENT_IDENTITY[..]),
            (&peers.server, &Label::SERVER_IDENTITY[..]),
        ] {
            for label in labels {
                let _ = write!(s, ",{}=\"", label.as_str());
                escape_into(&mut s, label.identity_value(who));
                s.push('"');
            }
        }
    }
    s
}

/// Nanoseconds written as seconds.
struct Seconds(Nanos);

impl Display for Seconds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0 as f64 / 1e9)
    }
}

/// The exposition being written.
pub struct Text(String);

/// Series by label string, sorted, those with equal strings merged.
fn coalesce<V>(
    series: impl Iterator<Item = (String, V)>,
    merge: fn(&mut V, &V),
) -> Vec<(String, V)> {
    let mut series: Vec<(String, V)> = series.collect();
    series.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    let mut out: Vec<(String, V)> = Vec::with_capacity(series.len());
    for (labels, v) in series {
        match out.last_mut() {
            Some(last) if last.0 == labels => merge(&mut last.1, &v),
            _ => out.push((labels, v)),
        }
    }
    out
}

impl Text {
    pub fn header(&mut self, def: Def) {
        let kind = match def.kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        };
        let _ = write!(self.0, "# HELP {} ", def.name);
        for c in def.help.chars() {
            match c {
                '\\' => self.0.push_str("\\\\"),
                '\n' => self.0.push_str("\\n"),
                c => self.0.push(c),
            }
        }
        let _ = writeln!(self.0, "\n# TYPE {} {kind}", def.name);
    }

    /// `name{labels,extra...} value`; `labels` is a label string (may be
    /// empty), `extra` values need no escaping.
    pub fn sample(
        &mut self,
        name: &str,
        labels: &str,
        extra: &[(&str, &str)],
        value: impl Display,
    ) {
        let s = &mut self.0;
        s.push_str(name);
        if !labels.is_empty() || !extra.is_empty() {
            s.push('{');
            s.push_str(labels);
            let mut first = labels.is_empty();
            for (k, v) in extra {
                if !first {
                    s.push(',');
                }
                first = false;
                let _ = write!(s, "{k}=\"{v}\"");
            }
            s.push('}');
        }
        let _ = writeln!(s, " {value}");
    }

    /// A histogram series, unless it has no observation.
    fn histogram<const N: usize>(
        &mut self,
        family: &HistogramFamily,
        labels: &str,
        extra: &[(&str, &str)],
        h: &Histogram<N>,
    ) {
        if h.count() == 0 {
            return;
        }
        let mut cumulative = 0;
        let mut with_le: Vec<(&str, &str)> = extra.to_vec();
        for (le, count) in family.les.iter().zip(h.counts) {
            cumulative += count;
            with_le.push(("le", le));
            self.sample(&family.bucket, labels, &with_le, cumulative);
            with_le.pop();
        }
        with_le.push(("le", "+Inf"));
        self.sample(&family.bucket, labels, &with_le, h.count());
        let sum = h.sum_nanos as f64 / 1e9;
        self.sample(&family.sum, labels, extra, sum);
        self.sample(&family.count, labels, extra, h.count());
    }
}

/// The sample names and bucket bounds of a histogram family, written once
/// per scrape, not once per series.
struct HistogramFamily {
    bucket: String,
    sum: String,
    count: String,
    les: Vec<String>,
}

impl HistogramFamily {
    fn new(def: Def, bounds: &[f64]) -> HistogramFamily {
        HistogramFamily {
            bucket: format!("{}_bucket", def.name),
            sum: format!("{}_sum", def.name),
            count: format!("{}_count", def.name),
            les: bounds.iter().map(f64::to_string).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::flow::test_orientation as orient;

    #[test]
    fn series_with_equal_label_strings_are_one() {
        let one = |opened| PairCounters {
            opened,
            ..PairCounters::default()
        };
        let merged = coalesce(
            [("b", one(1)), ("a", one(2)), ("b", one(4))]
                .into_iter()
                .map(|(l, c)| (l.to_string(), c)),
            PairCounters::merge,
        );
        let got: Vec<(&str, u64)> = merged.iter().map(|(l, c)| (l.as_str(), c.opened)).collect();
        assert_eq!(got, [("a", 2), ("b", 5)]);
    }

    /// The `tcp_connections_active` samples of an exposition.
    fn active_lines(text: &str) -> Vec<&str> {
        text.lines()
            .filter(|l| l.starts_with("tcp_connections_active{"))
            .collect()
    }

    #[test]
    fn a_sum_keeps_what_an_expired_part_counted_while_another_lives() {
        use crate::flow::{CloseReason, Lifecycle, Outcome, Phase, Removal, Side, Step};
        use crate::metrics::labels::LabelSet;
        const SEC: Nanos = 1_000_000_000;
        // Without the interface label, two interfaces' series are one.
        let config = ShardConfig {
            labeler: Arc::new(Labeler::new(
                "server".parse::<LabelSet>().unwrap(),
                vec![],
                &Default::default(),
            )),
            series_ttl: 60 * SEC,
            ..ShardConfig::plain(100)
        };
        let exporter = Exporter::new("test", &config);
        let mut shards = Vec::new();
        for name in ["veth1", "veth2"] {
            let mut shard = Shard::new(name.into(), exporter.interface_id(name), config.clone());
            let ids = shard.start_connection(&orient("10.0.0.1", "10.0.0.2", 80), 0);
            let out = Outcome {
                tag: ids,
                sender: Side::Client,
                step: Step {
                    lifecycle: Some(Lifecycle::Closed(CloseReason::Fin)),
                    ..Step::default()
                },
                phase: Phase::Closed,
                quiet: false,
            };
            let seg = crate::flow::test_segment(40000, 80, crate::decode::TcpFlags::FIN, 1, 0);
            shard.on_segment(&out, &seg, 1, SEC);
            shard.on_removed(ids, Removal::Released, &Step::default(), SEC);
            let shard = Arc::new(Mutex::new(shard));
            exporter.add_shard(Arc::clone(&shard));
            shards.push(shard);
        }
        let packets = |text: &str| -> Vec<String> {
            text.lines()
                .filter(|l| l.starts_with("tcp_packets_total{"))
                .map(String::from)
                .collect()
        };
        let closed = "tcp_connections_closed_total{server=\"10.0.0.2\",reason=\"fin\"} 2";
        let before = exporter.render();
        assert!(before.contains(closed), "{before}");
        // veth1's series expires; veth2's lives on (it counts on).
        lock(&shards[0]).advance(62 * SEC);
        lock(&shards[1]).advance(30 * SEC);
        assert_eq!(lock(&shards[0]).series_expired, 1);
        let after = exporter.render();
        assert!(after.contains(closed), "{after}");
        assert_eq!(packets(&after), packets(&before));
        // A scrape later, still there; once veth2's goes too, the series
        // is gone, and with it what was kept.
        assert!(exporter.render().contains(closed));
        lock(&shards[1]).advance(62 * SEC);
        let gone = exporter.render();
        assert!(packets(&gone).is_empty(), "{gone}");
        assert!(lock(&exporter.retired).pairs.is_empty());
        assert!(gone.contains("tcp_exporter_series_retired_dropped_total 0\n"));
    }

    #[test]
    fn shards_of_one_interface_merge_into_one_series() {
        let config = ShardConfig::plain(100);
        let exporter = Exporter::new("test", &config);
        for _ in 0..2 {
            let id = exporter.interface_id("eth0");
            let mut shard = Shard::new("eth0".into(), id, config.clone());
            shard.start_connection(&orient("10.0.0.1", "10.0.0.2", 80), 0);
            exporter.add_shard(Arc::new(Mutex::new(shard)));
        }
        let text = exporter.render();
        let active = active_lines(&text);
        assert_eq!(
            active,
            vec![
                "tcp_connections_active{interface=\"eth0\",client=\"10.0.0.1\",server=\"10.0.0.2\",server_port=\"80\"} 2"
            ]
        );
    }

    #[test]
    fn labels_left_out_aggregate_and_port_names_and_families_show() {
        use crate::metrics::labels::{LabelSet, PortNames};
        let mut names = PortNames::default();
        names.add_preset("istio");
        let labels: LabelSet = "server,port_name,ip_family".parse().unwrap();
        let config = ShardConfig {
            labeler: Arc::new(Labeler::new(labels, vec![], &names)),
            ..ShardConfig::plain(100)
        };
        let exporter = Exporter::new("test", &config);
        let mut shard = Shard::new("eth0".into(), exporter.interface_id("eth0"), config);
        shard.start_connection(&orient("10.0.0.1", "10.0.0.2", 15006), 0);
        shard.start_connection(&orient("10.0.0.3", "10.0.0.2", 15006), 0);
        shard.start_connection(&orient("10.0.0.3", "10.0.0.2", 8080), 0);
        exporter.add_shard(Arc::new(Mutex::new(shard)));
        let text = exporter.render();
        let active = active_lines(&text);
        assert_eq!(
            active,
            vec![
                "tcp_connections_active{server=\"10.0.0.2\",port_name=\"\",ip_family=\"ipv4\"} 1",
                "tcp_connections_active{server=\"10.0.0.2\",port_name=\"envoy-inbound\",ip_family=\"ipv4\"} 2",
            ]
        );
    }

    #[test]
    fn a_long_connection_names_both_ends_pods_included_with_kubernetes() {
        use crate::identity::{test_identity, Peers};
        let o = orient("10.244.1.5", "10.244.2.9", 5432);
        let plain = ConnRecord::new(&o, None, crate::metrics::labels::Reporter::Node, 0, 0);
        assert_eq!(
            long_labels("eth0", &plain),
            "interface=\"eth0\",client=\"10.244.1.5\",client_port=\"40000\",\
             server=\"10.244.2.9\",server_port=\"5432\""
        );
        let who = test_identity;
        let peers = Peers {
            client: who("shop", "checkout", "Deployment", "checkout-7d9f-x2x9q", ""),
            server: who("data", "db", "StatefulSet", "db-0", "db\"main"),
        };
        let named = ConnRecord::new(
            &o,
            Some(Arc::new(peers)),
            crate::metrics::labels::Reporter::Node,
            0,
            0,
        );
        assert_eq!(
            long_labels("eth0", &named),
            "interface=\"eth0\",client=\"10.244.1.5\",client_port=\"40000\",\
             server=\"10.244.2.9\",server_port=\"5432\",client_namespace=\"shop\",\
             client_workload=\"checkout\",client_workload_kind=\"Deployment\",\
             client_pod=\"checkout-7d9f-x2x9q\",server_namespace=\"data\",\
             server_workload=\"db\",server_workload_kind=\"StatefulSet\",server_pod=\"db-0\",\
             server_service=\"db\\\"main\""
        );
    }

    #[test]
    fn help_and_type_come_before_each_family_once() {
        let config = ShardConfig::plain(100);
        let exporter = Exporter::new("test", &config);
        let text = exporter.render();
        let types = text.lines().filter(|l| l.starts_with("# TYPE ")).count();
        let helps = text.lines().filter(|l| l.starts_with("# HELP ")).count();
        assert_eq!(types, helps);
        assert!(text.contains("# TYPE tcp_packets_total counter\n"));
        assert!(text.contains("tcp_exporter_build_info{version=\"test\"} 1\n"));
        assert!(
            !text.contains("tcp_long_connection"),
            "off unless asked for"
        );
    }

    #[test]
    fn a_forgotten_interface_leaves_the_output_and_gives_back_its_id_and_series() {
        let config = ShardConfig::plain(1);
        let exporter = Exporter::new("test", &config);
        let add = |name: &str, client: &str| {
            let id = exporter.interface_id(name);
            let mut shard = Shard::new(name.into(), id, config.clone());
            shard.start_connection(&orient(client, "10.0.0.2", 80), 0);
            exporter.add_shard(Arc::new(Mutex::new(shard)));
            id
        };
        assert_eq!(add("veth1", "10.0.0.1"), 0);
        // The cap of one label set is taken: veth2's folds.
        assert_eq!(add("veth2", "10.0.0.3"), 1);
        assert_eq!(
            exporter.interface_id("veth1"),
            0,
            "a known name keeps its id"
        );
        exporter.forget_interface("veth1");
        let text = exporter.render();
        assert!(!text.contains("veth1"), "{text}");
        assert!(text.contains("tcp_exporter_series_expired_total 1\n"));
        // The id and the label set are free again.
        assert_eq!(add("veth3", "10.0.0.4"), 0);
        let text = exporter.render();
        assert!(
            text.contains("tcp_connections_active{interface=\"veth3\",client=\"10.0.0.4\""),
            "{text}"
        );
        exporter.forget_interface("veth2");
        exporter.forget_interface("veth3");
        let text = exporter.render();
        assert!(active_lines(&text).is_empty(), "{text}");
        assert!(
            text.contains("tcp_exporter_series_overflow_total 1\n"),
            "counts of forgotten shards stay: {text}"
        );
        assert_eq!(exporter.interface_id("veth4"), 0);
    }
}
