//! The scrape-time collector: sums the workers' shards, attaches label
//! strings, and hands Prometheus metric families to the registry. This is
//! the only place where addresses become strings.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use prometheus::core::{Collector, Desc};
use prometheus::proto::{self, MetricFamily, MetricType};
use prometheus::{Encoder, Registry, TextEncoder};

use crate::decode::DecodeErrorKind;
use crate::flow::{CloseReason, Side};

use super::names::{self, Def, Kind, DURATION_BUCKETS, RTT_BUCKETS};
use super::shard::{
    close_index, Histogram, Peer, Shard, RETRANSMISSION_KINDS, WSCALE_NONE, WSCALE_SLOTS,
};

type Labels = Vec<(&'static str, String)>;

/// What the scrape reads: every worker's shard.
pub struct Exporter {
    shards: Mutex<Vec<Arc<Mutex<Shard>>>>,
    version: &'static str,
    descs: Vec<Desc>,
}

impl Exporter {
    pub fn new(version: &'static str) -> Arc<Exporter> {
        let descs = ALL
            .iter()
            .map(|d| Desc::new(d.name.into(), d.help.into(), Vec::new(), HashMap::new()))
            .collect::<Result<Vec<_>, _>>()
            .expect("metric names in names.rs are valid");
        Arc::new(Exporter {
            shards: Mutex::new(Vec::new()),
            version,
            descs,
        })
    }

    pub fn add_shard(&self, shard: Arc<Mutex<Shard>>) {
        lock(&self.shards).push(shard);
    }

    /// A registry holding this exporter, for `gather()`.
    pub fn registry(self: &Arc<Self>) -> Registry {
        let registry = Registry::new();
        registry
            .register(Box::new(Shared(Arc::clone(self))))
            .expect("one collector with unique descriptors");
        registry
    }

    /// The Prometheus text exposition of everything now.
    pub fn render(registry: &Registry) -> String {
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&registry.gather(), &mut out)
            .expect("text encoding into a Vec cannot fail");
        String::from_utf8(out).expect("the text encoder writes UTF-8")
    }
}

/// The registry owns its collectors; this lets it share the exporter.
struct Shared(Arc<Exporter>);

impl Collector for Shared {
    fn desc(&self) -> Vec<&Desc> {
        self.0.desc()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        self.0.collect()
    }
}

/// A poisoned lock only means a worker panicked mid-update; its counters are
/// still worth serving.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

const ALL: [Def; 30] = [
    names::RETRANSMITTED_SEGMENTS,
    names::RETRANSMITTED_BYTES,
    names::OUT_OF_ORDER,
    names::DUPLICATE_ACKS,
    names::LOST_SEGMENTS,
    names::ZERO_WINDOW,
    names::ZERO_WINDOW_PROBES,
    names::WINDOW_FULL,
    names::KEEPALIVES,
    names::RTT,
    names::PACKETS,
    names::PAYLOAD_BYTES,
    names::IP_BYTES,
    names::RESETS,
    names::DONT_FRAGMENT,
    names::SYN_WINDOW_SCALE,
    names::OPENED,
    names::FAILED,
    names::CLOSED,
    names::ACTIVE,
    names::DURATION,
    names::HANDSHAKE_RTT,
    names::BUILD_INFO,
    names::CAPTURE_PACKETS,
    names::CAPTURE_DROPS,
    names::DECODE_ERRORS,
    names::FLOWS_TRACKED,
    names::FLOW_EVICTIONS,
    names::SERIES_OVERFLOW,
    names::INTERFACE_UP,
];

/// Samples of one family, summed by label set.
struct Scalars {
    def: Def,
    samples: BTreeMap<Labels, f64>,
}

impl Scalars {
    fn new(def: Def) -> Self {
        Scalars {
            def,
            samples: BTreeMap::new(),
        }
    }

    fn add(&mut self, labels: Labels, value: f64) {
        *self.samples.entry(labels).or_default() += value;
    }

    fn with(&mut self, base: &Labels, extra: &[(&'static str, &str)], value: f64) {
        let mut labels = base.clone();
        labels.extend(extra.iter().map(|(k, v)| (*k, v.to_string())));
        self.add(labels, value);
    }

    fn family(self) -> MetricFamily {
        let metrics = self
            .samples
            .into_iter()
            .map(|(labels, value)| {
                let mut m = metric(labels);
                match self.def.kind {
                    Kind::Counter => {
                        let mut c = proto::Counter::default();
                        c.set_value(value);
                        m.set_counter(c);
                    }
                    Kind::Gauge | Kind::Histogram => {
                        let mut g = proto::Gauge::default();
                        g.set_value(value);
                        m.set_gauge(g);
                    }
                }
                m
            })
            .collect();
        family(self.def, metrics)
    }
}

/// Histogram samples of one family, merged by label set.
struct Histograms<const N: usize> {
    def: Def,
    bounds: &'static [f64; N],
    samples: BTreeMap<Labels, Histogram<N>>,
}

impl<const N: usize> Histograms<N> {
    fn new(def: Def, bounds: &'static [f64; N]) -> Self {
        Histograms {
            def,
            bounds,
            samples: BTreeMap::new(),
        }
    }

    fn add(&mut self, labels: Labels, h: &Histogram<N>) {
        self.samples.entry(labels).or_default().merge(h);
    }

    fn family(self) -> MetricFamily {
        let metrics = self
            .samples
            .into_iter()
            .map(|(labels, h)| {
                let mut cumulative = 0;
                let buckets = self
                    .bounds
                    .iter()
                    .zip(h.counts.iter())
                    .map(|(&bound, &count)| {
                        cumulative += count;
                        let mut b = proto::Bucket::default();
                        b.set_upper_bound(bound);
                        b.set_cumulative_count(cumulative);
                        b
                    })
                    .collect();
                let mut p = proto::Histogram::default();
                p.set_bucket(buckets);
                p.set_sample_count(h.count());
                p.set_sample_sum(h.sum_nanos as f64 / 1e9);
                let mut m = metric(labels);
                m.set_histogram(p);
                m
            })
            .collect();
        family(self.def, metrics)
    }
}

fn metric(labels: Labels) -> proto::Metric {
    let pairs = labels
        .into_iter()
        .map(|(name, value)| {
            let mut l = proto::LabelPair::default();
            l.set_name(name.to_string());
            l.set_value(value);
            l
        })
        .collect();
    let mut m = proto::Metric::default();
    m.set_label(pairs);
    m
}

fn family(def: Def, metrics: Vec<proto::Metric>) -> MetricFamily {
    let mut f = MetricFamily::default();
    f.set_name(def.name.to_string());
    f.set_help(def.help.to_string());
    f.set_field_type(match def.kind {
        Kind::Counter => MetricType::COUNTER,
        Kind::Gauge => MetricType::GAUGE,
        Kind::Histogram => MetricType::HISTOGRAM,
    });
    f.set_metric(metrics);
    f
}

fn peer(p: Peer) -> String {
    match p {
        Peer::Ip(ip) => ip.to_string(),
        Peer::Other => "other".to_string(),
    }
}

fn shift_label(slot: usize) -> String {
    if slot == WSCALE_NONE {
        "none".to_string()
    } else {
        slot.to_string()
    }
}

impl Collector for Exporter {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let mut packets = Scalars::new(names::PACKETS);
        let mut payload = Scalars::new(names::PAYLOAD_BYTES);
        let mut ip_bytes = Scalars::new(names::IP_BYTES);
        let mut resets = Scalars::new(names::RESETS);
        let mut dont_fragment = Scalars::new(names::DONT_FRAGMENT);
        let mut wscale = Scalars::new(names::SYN_WINDOW_SCALE);
        let mut opened = Scalars::new(names::OPENED);
        let mut failed = Scalars::new(names::FAILED);
        let mut closed = Scalars::new(names::CLOSED);
        let mut active = Scalars::new(names::ACTIVE);
        let mut retransmitted = Scalars::new(names::RETRANSMITTED_SEGMENTS);
        let mut retransmitted_bytes = Scalars::new(names::RETRANSMITTED_BYTES);
        let mut out_of_order = Scalars::new(names::OUT_OF_ORDER);
        let mut duplicate_acks = Scalars::new(names::DUPLICATE_ACKS);
        let mut lost = Scalars::new(names::LOST_SEGMENTS);
        let mut zero_window = Scalars::new(names::ZERO_WINDOW);
        let mut zero_window_probes = Scalars::new(names::ZERO_WINDOW_PROBES);
        let mut window_full = Scalars::new(names::WINDOW_FULL);
        let mut keepalives = Scalars::new(names::KEEPALIVES);
        let mut rtt = Histograms::new(names::RTT, &RTT_BUCKETS);
        let mut duration = Histograms::new(names::DURATION, &DURATION_BUCKETS);
        let mut handshake = Histograms::new(names::HANDSHAKE_RTT, &RTT_BUCKETS);
        let mut build = Scalars::new(names::BUILD_INFO);
        let mut capture_packets = Scalars::new(names::CAPTURE_PACKETS);
        let mut capture_drops = Scalars::new(names::CAPTURE_DROPS);
        let mut decode_errors = Scalars::new(names::DECODE_ERRORS);
        let mut flows = Scalars::new(names::FLOWS_TRACKED);
        let mut evictions = Scalars::new(names::FLOW_EVICTIONS);
        let mut overflow = Scalars::new(names::SERIES_OVERFLOW);
        // An interface is up only while every worker on it is.
        let mut up: BTreeMap<String, bool> = BTreeMap::new();

        build.add(vec![("version", self.version.to_string())], 1.0);
        let shards: Vec<_> = lock(&self.shards).clone();
        for shard in shards {
            let s = lock(&shard);
            let iface = s.interface.to_string();
            let at = vec![("interface", iface.clone())];
            for (key, c) in s.pairs.iter() {
                let base: Labels = vec![
                    ("interface", iface.clone()),
                    ("client", peer(key.client)),
                    ("server", peer(key.server)),
                    ("server_port", key.server_port.to_string()),
                ];
                for side in Side::BOTH {
                    let d = &c.dir[side.index()];
                    let sender = [("sender", side.as_str())];
                    packets.with(&base, &sender, d.packets as f64);
                    payload.with(&base, &sender, d.payload_bytes as f64);
                    ip_bytes.with(&base, &sender, d.ip_bytes as f64);
                    resets.with(&base, &sender, d.resets as f64);
                    dont_fragment.with(&base, &sender, d.dont_fragment as f64);
                    for (kind, n) in RETRANSMISSION_KINDS.iter().zip(d.retransmitted) {
                        retransmitted.with(
                            &base,
                            &[("sender", side.as_str()), ("kind", kind)],
                            n as f64,
                        );
                    }
                    retransmitted_bytes.with(&base, &sender, d.retransmitted_bytes as f64);
                    out_of_order.with(&base, &sender, d.out_of_order as f64);
                    duplicate_acks.with(&base, &sender, d.duplicate_acks as f64);
                    lost.with(&base, &sender, d.lost_segments as f64);
                    zero_window.with(&base, &sender, d.zero_window as f64);
                    zero_window_probes.with(&base, &sender, d.zero_window_probes as f64);
                    window_full.with(&base, &sender, d.window_full as f64);
                    keepalives.with(&base, &sender, d.keepalives as f64);
                    for slot in 0..WSCALE_SLOTS {
                        if d.syn_window_scale[slot] > 0 {
                            let shift = shift_label(slot);
                            wscale.with(
                                &base,
                                &[("sender", side.as_str()), ("shift", &shift)],
                                d.syn_window_scale[slot] as f64,
                            );
                        }
                    }
                }
                opened.add(base.clone(), c.opened as f64);
                failed.with(&base, &[("reason", "refused")], c.refused as f64);
                failed.with(&base, &[("reason", "unanswered")], c.unanswered as f64);
                for reason in CloseReason::ALL {
                    let n = c.closed[close_index(reason)] as f64;
                    closed.with(&base, &[("reason", reason.as_str())], n);
                }
                active.add(base, c.active as f64);
            }
            for (key, h) in s.servers.iter() {
                let base: Labels = vec![
                    ("interface", iface.clone()),
                    ("server", peer(key.server)),
                    ("server_port", key.server_port.to_string()),
                ];
                if h.duration.count() > 0 {
                    duration.add(base.clone(), &h.duration);
                }
                for leg in Side::BOTH {
                    let mut labels = base.clone();
                    labels.push(("leg", leg.as_str().to_string()));
                    let h_rtt = &h.handshake_rtt[leg.index()];
                    if h_rtt.count() > 0 {
                        handshake.add(labels.clone(), h_rtt);
                    }
                    let d_rtt = &h.rtt[leg.index()];
                    if d_rtt.count() > 0 {
                        rtt.add(labels, d_rtt);
                    }
                }
            }
            capture_packets.add(at.clone(), s.capture.packets as f64);
            capture_drops.with(&at, &[("stage", "kernel")], s.capture.kernel_drops as f64);
            capture_drops.with(
                &at,
                &[("stage", "interface")],
                s.capture.interface_drops as f64,
            );
            for kind in DecodeErrorKind::ALL {
                let n = s.decode_errors[kind.index()] as f64;
                decode_errors.with(&at, &[("reason", kind.as_str())], n);
            }
            flows.add(at.clone(), s.flows_tracked as f64);
            evictions.with(
                &at,
                &[("reason", "idle_timeout")],
                s.evictions.idle_timeout as f64,
            );
            evictions.with(
                &at,
                &[("reason", "table_full")],
                s.evictions.table_full as f64,
            );
            // Unlabelled, as the contract names it: one total for the exporter.
            overflow.add(Vec::new(), s.series_overflow as f64);
            let entry = up.entry(iface).or_insert(true);
            *entry &= s.interface_up;
        }
        let mut interface_up = Scalars::new(names::INTERFACE_UP);
        for (iface, is_up) in up {
            interface_up.add(vec![("interface", iface)], is_up as u8 as f64);
        }
        vec![
            packets.family(),
            payload.family(),
            ip_bytes.family(),
            resets.family(),
            dont_fragment.family(),
            wscale.family(),
            opened.family(),
            failed.family(),
            closed.family(),
            active.family(),
            retransmitted.family(),
            retransmitted_bytes.family(),
            out_of_order.family(),
            duplicate_acks.family(),
            lost.family(),
            zero_window.family(),
            zero_window_probes.family(),
            window_full.family(),
            keepalives.family(),
            rtt.family(),
            duration.family(),
            handshake.family(),
            build.family(),
            capture_packets.family(),
            capture_drops.family(),
            decode_errors.family(),
            flows.family(),
            evictions.family(),
            overflow.family(),
            interface_up.family(),
        ]
    }
}
