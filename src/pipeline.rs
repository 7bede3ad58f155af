//! One worker's pipeline: a captured frame goes through decode and the flow
//! table, and its outcome into the worker's metric shard. This is the glue
//! between the layers; it holds no logic of its own beyond routing.
//!
//! The caller holds the shard's lock around calls (per frame for live
//! captures, per batch for files), so a scrape sees whole packets only.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;

use crate::capture::{Arm, CaptureError, CaptureStats, Frame, KernelRun, Next, PacketSource};
use crate::decode::summary::run_record;
use crate::decode::{decode_then, DecodeErrorKind, LinkType, TunnelPorts};
use crate::flow::{steady_layout, Conn, FlowHooks, FlowKey, FlowTable, Generation, Nanos};
use crate::flow::{Removal, Side, Step};
use crate::metrics::shard::CaptureCounters;
use crate::metrics::{SeriesIds, Shard};

pub struct Worker {
    link: LinkType,
    tunnel_ports: TunnelPorts,
    flows: FlowTable<SeriesIds>,
}

impl Worker {
    pub fn new(link: LinkType, max_flows: usize, idle_timeout: Nanos) -> Worker {
        Worker {
            link,
            tunnel_ports: TunnelPorts::default(),
            flows: FlowTable::new(max_flows, idle_timeout),
        }
    }

    /// The UDP ports whose datagrams are overlays (default: IANA's VXLAN
    /// and Geneve ports, and Flannel's VXLAN port).
    pub fn with_tunnel_ports(self, tunnel_ports: TunnelPorts) -> Worker {
        Worker {
            tunnel_ports,
            ..self
        }
    }

    /// Counts one frame.
    #[inline(always)]
    pub fn process(&mut self, shard: &mut Shard, frame: &Frame<'_>) {
        shard.capture.packets += 1;
        let flows = &mut self.flows;
        let decoded = decode_then(
            self.link,
            frame.data,
            frame.wire_len,
            &self.tunnel_ports,
            |seg| {
                let out = flows.on_segment(seg, frame.ts, &mut Hooks(shard));
                let segments = wire_segments(seg.payload_len, frame.gso_size);
                shard.on_segment(&out, seg, segments, frame.ts);
                shard.flows_tracked = flows.len() as u64;
            },
        );
        if let Err(e) = decoded {
            shard.on_decode_error(e.kind);
        }
    }

    /// Applies segments the kernel counted (xdp `--xdp-count`) as if each
    /// had been processed: their connection takes the run, and the shard
    /// counts them. A run the flow table refuses (its connection left the
    /// table, or another took its place) is counted as dropped; one that
    /// does not read as a run, as a record the decoder could not read.
    pub fn apply_run(&mut self, shard: &mut Shard, kernel: &KernelRun<'_>) {
        let parsed = run_record(kernel.data).and_then(|r| Some((r, steady_layout::run_of(r.run)?)));
        let Some((record, mut run)) = parsed else {
            shard.on_decode_error(DecodeErrorKind::TruncatedLink);
            return;
        };
        let offset = kernel.clock_offset;
        run.last = (run.last as i64).saturating_add(offset) as Nanos;
        run.last_data = run
            .last_data
            .map(|t| (t as i64).saturating_add(offset) as Nanos);
        let src = (record.src, record.src_port);
        let (key, _) = FlowKey::of_endpoints(src, (record.dst, record.dst_port));
        let sender = if record.client_sent {
            Side::Client
        } else {
            Side::Server
        };
        let generation = Generation::from_number(record.generation);
        shard.capture.packets += run.segments as u64;
        shard.capture.kernel_counted += run.segments as u64;
        let applied = self
            .flows
            .on_steady_run(&key, generation, sender, &run, &mut Hooks(shard));
        match applied {
            Some(out) => shard.on_steady_run(&out, &run),
            None => shard.capture.runs_refused += run.segments as u64,
        }
        shard.flows_tracked = self.flows.len() as u64;
    }

    /// What the source needs to count the steady segments of the flow of
    /// the last segment processed in the kernel: `None` when that flow's
    /// connection gives no mirror (see `FlowTable::mirror`).
    pub fn arm_last(&self) -> Option<Arm> {
        let (key, mirror, lo_side, generation) = self.flows.last_mirror()?;
        let octets = |a: crate::decode::Addr| a.as_u128().to_be_bytes();
        Some(Arm {
            lo: (octets(key.lo_addr), key.lo_port),
            hi: (octets(key.hi_addr), key.hi_port),
            client_is_lo: lo_side == Side::Client,
            mirror: steady_layout::mirror_bytes(&mirror),
            generation: generation.number(),
        })
    }

    /// The capture has ended for good (its interface went away): every
    /// flow leaves the table as if it had timed out, so its series and
    /// connection record are let go.
    pub fn release(&mut self, shard: &mut Shard) {
        self.flows.expire_all(&mut Hooks(shard));
        shard.flows_tracked = 0;
    }

    /// Lets capture time pass with no frame: idle flows expire, series
    /// expire, flow-log intervals come.
    pub fn tick(&mut self, shard: &mut Shard, now: Nanos) {
        self.flows.expire(now, &mut Hooks(shard));
        shard.flows_tracked = self.flows.len() as u64;
        shard.advance(now);
    }
}

#[cfg(test)]
mod tests {
    use super::{wire_segments, Hooks, Worker};
    use crate::capture::{Next, PacketSource, PcapFile};
    use crate::decode::decode;
    use crate::flow::{Admission, FlowKey, Mirror, Side, SteadyRun};
    use crate::metrics::{Exporter, Shard, ShardConfig};
    use std::collections::hash_map::Entry;
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};

    #[test]
    fn super_packets_count_as_their_wire_segments() {
        assert_eq!(wire_segments(14_480, 1448), 10);
        assert_eq!(wire_segments(14_481, 1448), 11);
        assert_eq!(wire_segments(1000, 1448), 1);
        assert_eq!(wire_segments(0, 1448), 1);
        assert_eq!(wire_segments(64_000, 0), 1, "no offload information");
    }

    /// A flow whose connection's mirror counts segments: the mirror, the
    /// side of the key's lo end, the connection's generation, and the runs
    /// counted since they were last applied.
    struct Armed {
        mirror: Mirror,
        lo_side: Side,
        generation: crate::flow::Generation,
        runs: [SteadyRun; 2],
    }

    /// Applies every armed flow's runs, in the order their last segments
    /// came, and empties them.
    fn apply_runs(worker: &mut Worker, shard: &mut Shard, armed: &mut HashMap<FlowKey, Armed>) {
        let mut due: Vec<(u64, FlowKey, Side)> = armed
            .iter()
            .flat_map(|(key, a)| Side::BOTH.map(|side| (a.runs[side.index()].last, *key, side)))
            .filter(|&(_, key, side)| armed[&key].runs[side.index()].segments > 0)
            .collect();
        due.sort_by_key(|d| d.0);
        for (_, key, side) in due {
            let a = armed.get_mut(&key).expect("armed");
            let run = std::mem::take(&mut a.runs[side.index()]);
            shard.capture.packets += run.segments as u64;
            let applied =
                worker
                    .flows
                    .on_steady_run(&key, a.generation, side, &run, &mut Hooks(shard));
            let out = applied.expect("a run of a flow the table lost");
            shard.on_steady_run(&out, &run);
            shard.flows_tracked = worker.flows.len() as u64;
        }
    }

    /// Runs of steady segments, counted by each connection's mirror and
    /// applied through the flow table and the shard, count as those
    /// segments would have: over the test captures (loss, reordering, zero
    /// windows, mid-stream, refusals), a worker that analyses every segment
    /// and one that analyses only those the mirrors did not count (after
    /// applying every flow's runs before them) keep the same connection
    /// records right after each time runs are applied, and render the same
    /// metrics with the same records at the end.
    #[test]
    fn runs_a_mirror_counted_count_as_their_segments_would() {
        let captures = [
            "bulk_loss",
            "router_loss",
            "zero_window",
            "midstream",
            "refused_aborted",
        ];
        let mut counted_all = 0u64;
        for name in captures {
            let path = format!("{}/testdata/pcaps/{name}.pcap", env!("CARGO_MANIFEST_DIR"));
            let config = ShardConfig::with_connection_table(10_000);
            let (every_x, split_x) = (
                Exporter::new("test", &config),
                Exporter::new("test", &config),
            );
            let mut every_shard =
                Shard::new(name.into(), every_x.interface_id(name), config.clone());
            let mut split_shard =
                Shard::new(name.into(), split_x.interface_id(name), config.clone());
            let mut source = PcapFile::open(path.as_ref(), "").expect("a test capture");
            let link = source.link_type();
            let idle = 300_000_000_000;
            let (mut every, mut split) =
                (Worker::new(link, 1000, idle), Worker::new(link, 1000, idle));
            let mut armed: HashMap<FlowKey, Armed> = HashMap::new();
            let records = |s: &Shard| format!("{:?}", s.conns.as_ref().map(|c| c.records()));
            let (mut counted, mut total) = (0u64, 0u64);
            loop {
                let frame = match source.next().expect("the capture reads") {
                    Next::Frame(frame) => frame,
                    Next::End => break,
                    _ => continue,
                };
                total += 1;
                let before = records(&every_shard);
                every.process(&mut every_shard, &frame);
                let Ok(seg) = decode(link, frame.data, frame.wire_len) else {
                    split.process(&mut split_shard, &frame);
                    continue;
                };
                let (key, sender_is_lo) = FlowKey::of(&seg);
                let admission = armed.get_mut(&key).map(|a| {
                    let side = if sender_is_lo {
                        a.lo_side
                    } else {
                        a.lo_side.peer()
                    };
                    a.mirror
                        .admit(&seg, side, frame.ts, &mut a.runs[side.index()])
                });
                if admission == Some(Admission::Counted) {
                    counted += 1;
                    continue;
                }
                if admission.is_some() {
                    // Every flow's runs, so that all segments before this
                    // one are counted on both sides.
                    apply_runs(&mut split, &mut split_shard, &mut armed);
                    let after_runs = records(&split_shard);
                    assert_eq!(
                        after_runs, before,
                        "{name}: records after the runs before {seg:?}"
                    );
                }
                if admission != Some(Admission::Followed) {
                    armed.remove(&key);
                }
                split.process(&mut split_shard, &frame);
                if let Entry::Vacant(e) = armed.entry(key) {
                    if let Some((mirror, lo_side, generation)) = split.flows.mirror(&key) {
                        e.insert(Armed {
                            mirror,
                            lo_side,
                            generation,
                            runs: [SteadyRun::default(); 2],
                        });
                    }
                }
            }
            apply_runs(&mut split, &mut split_shard, &mut armed);
            counted_all += counted;
            assert_eq!(every_shard.capture.packets, total, "{name}");
            assert_eq!(split_shard.capture.packets, total, "{name}");
            assert_eq!(
                records(&split_shard),
                records(&every_shard),
                "{name}: records"
            );
            every.release(&mut every_shard);
            split.release(&mut split_shard);
            every_x.add_shard(Arc::new(Mutex::new(every_shard)));
            split_x.add_shard(Arc::new(Mutex::new(split_shard)));
            let (want, got) = (every_x.render(), split_x.render());
            assert!(want.contains("tcp_packets_total{"), "{want}");
            assert_eq!(
                got, want,
                "{name}: {counted} of {total} segments counted in runs"
            );
        }
        assert!(counted_all > 1000, "{counted_all} segments counted in runs");
    }
}

/// Connects the flow table's connections to the shard's series.
struct Hooks<'a>(&'a mut Shard);

impl FlowHooks<SeriesIds> for Hooks<'_> {
    fn start(&mut self, key: &FlowKey, conn: &Conn, now: Nanos) -> SeriesIds {
        self.0.start_connection(&conn.orientation(key), now)
    }

    fn removed(&mut self, ids: SeriesIds, removal: Removal, step: Step, now: Nanos) {
        self.0.on_removed(ids, removal, &step, now)
    }
}

/// How many wire segments a frame stands for: a segmentation-offload
/// super-packet of `payload` bytes cut at `gso_size` is that many segments;
/// anything else is one. (The analysis sees one segment either way, as
/// tshark does reading the same capture.)
fn wire_segments(payload: u32, gso_size: u16) -> u32 {
    if gso_size == 0 || payload <= gso_size as u32 {
        1
    } else {
        payload.div_ceil(gso_size as u32)
    }
}

/// How often (in frames) a live source's drop counters are read...
const STATS_EVERY: u64 = 1 << 16;
/// ...and at least this often (capture clock) when the source is idle.
const STATS_INTERVAL: Nanos = 1_000_000_000;

/// Why a capture loop stopped.
#[derive(Debug)]
pub enum Stopped {
    /// A file was read to its end.
    End,
    /// `stop` was set.
    Asked,
}

/// A capture loop's thread: how it ended, and its worker (whose flows the
/// caller may let go).
pub type CaptureThread = JoinHandle<(Result<Stopped, CaptureError>, Worker)>;

/// A capture source with the capture loop compiled for it: the loop calls
/// the source's `next` directly, where the compiler can inline it, not
/// through a vtable once per frame. Every `PacketSource` is one.
pub trait SourceLoop: PacketSource {
    fn run(
        &mut self,
        worker: &mut Worker,
        shard: &Mutex<Shard>,
        stop: &AtomicBool,
    ) -> Result<Stopped, CaptureError>;
}

impl<S: PacketSource> SourceLoop for S {
    fn run(
        &mut self,
        worker: &mut Worker,
        shard: &Mutex<Shard>,
        stop: &AtomicBool,
    ) -> Result<Stopped, CaptureError> {
        run_source(self, worker, shard, stop)
    }
}

/// Runs the source's capture loop on a thread of its own, named after the
/// source; a failure is said once on stderr.
pub fn spawn(
    mut source: Box<dyn SourceLoop>,
    mut worker: Worker,
    shard: Arc<Mutex<Shard>>,
    stop: Arc<AtomicBool>,
) -> std::io::Result<CaptureThread> {
    let name = source.name().to_string();
    std::thread::Builder::new()
        .name(format!("capture-{name}"))
        .spawn(move || {
            let result = source.run(&mut worker, &shard, &stop);
            if let Err(e) = &result {
                eprintln!("tcp-exporter: capture on {name} stopped: {e}");
            }
            (result, worker)
        })
}

/// Runs frames from `source` through `worker` into `shard` until the file
/// ends, the source fails, or `stop` is set.
fn run_source<S: PacketSource>(
    source: &mut S,
    worker: &mut Worker,
    shard: &Mutex<Shard>,
    stop: &AtomicBool,
) -> Result<Stopped, CaptureError> {
    let batch = source.batch().max(1);
    let mut since_stats = 0u64;
    let mut stats_at: Nanos = 0;
    let base = {
        let mut s = lock(shard);
        s.interface_up = true;
        s.capture
    };
    let result = loop {
        if stop.load(Ordering::Relaxed) {
            break Ok(Stopped::Asked);
        }
        let mut guard = None;
        let mut done = None;
        for _ in 0..batch {
            match source.next() {
                Ok(Next::Frame(frame)) => {
                    let s = guard.get_or_insert_with(|| lock(shard));
                    worker.process(s, &frame);
                    since_stats += 1;
                    if source.wants_arm() {
                        if let Some(arm) = worker.arm_last() {
                            source.arm(&arm);
                        }
                    }
                }
                Ok(Next::Run(run)) => {
                    let s = guard.get_or_insert_with(|| lock(shard));
                    worker.apply_run(s, &run);
                }
                Ok(Next::Idle(now)) => {
                    let s = guard.get_or_insert_with(|| lock(shard));
                    worker.tick(s, now);
                    if now.saturating_sub(stats_at) >= STATS_INTERVAL {
                        stats_at = now;
                        since_stats = STATS_EVERY;
                    }
                    break;
                }
                Ok(Next::Skipped(kind)) => {
                    guard
                        .get_or_insert_with(|| lock(shard))
                        .on_decode_error(kind);
                }
                Ok(Next::End) => {
                    done = Some(Ok(Stopped::End));
                    break;
                }
                Err(e) => {
                    done = Some(Err(e));
                    break;
                }
            }
        }
        drop(guard);
        if since_stats >= STATS_EVERY {
            since_stats = 0;
            if let Some(stats) = source.stats() {
                copy_stats(&mut lock(shard), &base, &stats);
            }
        }
        if let Some(done) = done {
            break done;
        }
    };
    if let Some(stats) = source.stats() {
        copy_stats(&mut lock(shard), &base, &stats);
    }
    // The shard is not finished here (`Shard::finish`): the capture of an
    // interface that went away is opened again into the same shard.
    if result.is_err() {
        lock(shard).interface_up = false;
    }
    result
}

/// The source's counts since it opened, on top of what the shard had
/// counted before (`base`: earlier captures of the same interface), so
/// that the counters never go back when an interface is opened again.
fn copy_stats(shard: &mut Shard, base: &CaptureCounters, stats: &CaptureStats) {
    shard.capture.kernel_drops = base.kernel_drops + stats.kernel_drops;
    shard.capture.interface_drops = base.interface_drops + stats.interface_drops;
    shard.capture.ring_freezes = base.ring_freezes + stats.ring_freezes;
    shard.capture.ring_errors = base.ring_errors + stats.ring_errors;
    let k = &stats.kernel_count;
    let events = [
        k.arms,
        k.arms_refused,
        k.flows_refused,
        k.arm_mismatches,
        k.gaps,
        k.flush_errors,
    ];
    for ((total, before), now) in shard
        .capture
        .kernel_count_events
        .iter_mut()
        .zip(base.kernel_count_events)
        .zip(events)
    {
        *total = before + now;
    }
}

/// A poisoned shard lock only means a panic mid-update elsewhere; the
/// counters are still worth keeping.
fn lock(m: &Mutex<Shard>) -> MutexGuard<'_, Shard> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
