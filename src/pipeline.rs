//! One worker's pipeline: a captured frame goes through decode and the flow
//! table, and its outcome into the worker's metric shard. This is the glue
//! between the layers; it holds no logic of its own beyond routing, and
//! holding back segments that change nothing but counts, to count them in
//! runs: those the mirror of the last connection analysed admits skip the
//! flow table and the analysis too (`Armed`), and those the analysis found
//! quiet skip the shard's per-segment path (`QuietRuns`).
//!
//! The caller holds the shard's lock around calls (per batch of frames)
//! and settles the worker (`Worker::settle`) before it lets go, so a
//! scrape sees whole packets only.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;

use crate::capture::{Arm, CaptureError, CaptureStats, Frame, KernelRun, Next, PacketSource};
use crate::decode::summary::run_record;
use crate::decode::{decode_then, DecodeErrorKind, LinkType, Segment, TunnelPorts};
use crate::flow::{steady_layout, Conn, FlowHooks, FlowKey, FlowTable, Generation, Nanos};
use crate::flow::{Admission, Mirror, Outcome, Removal, Side, SteadyRun, Step};
use crate::metrics::shard::CaptureCounters;
use crate::metrics::{SeriesIds, Shard};

pub struct Worker {
    link: LinkType,
    tunnel_ports: TunnelPorts,
    flows: FlowTable<SeriesIds>,
    /// Quiet segments processed and not yet counted in the shard.
    quiet: QuietRuns,
    /// The connection of the last segment analysed, while its mirror
    /// counts its steady segments (see `Armed` for when it is armed);
    /// `None` otherwise, and when it gives no mirror.
    armed: Option<Armed>,
    /// The last two segments the flow table took were quiet
    /// (`Outcome::quiet`) and gathered into the same quiet runs: of one
    /// connection (of one series under `--print`, where a run's tag names
    /// no connection; the mirror armed then is still the last flow's).
    /// Never set in the tests' reference, which gathers no runs; cleared
    /// when the worker disarms.
    steady: bool,
}

impl Worker {
    pub fn new(link: LinkType, max_flows: usize, idle_timeout: Nanos) -> Worker {
        Worker {
            link,
            tunnel_ports: TunnelPorts::default(),
            flows: FlowTable::new(max_flows, idle_timeout),
            quiet: QuietRuns::default(),
            armed: None,
            steady: false,
        }
    }

    /// Counts every segment in the shard as it comes, none in runs (the
    /// reference the runs are tested against).
    #[cfg(test)]
    fn one_by_one(mut self) -> Worker {
        self.quiet.one_by_one = true;
        self
    }

    /// The UDP ports whose datagrams are overlays (default: IANA's VXLAN
    /// and Geneve ports, and Flannel's VXLAN port).
    pub fn with_tunnel_ports(self, tunnel_ports: TunnelPorts) -> Worker {
        Worker {
            tunnel_ports,
            ..self
        }
    }

    /// Counts one frame. Its segment may reach the flow table and the
    /// shard only later, at the latest at the next `settle` (or the next
    /// call that is not `process`): call `settle` before the shard is
    /// read.
    #[inline(always)]
    pub fn process(&mut self, shard: &mut Shard, frame: &Frame<'_>) {
        shard.capture.packets += 1;
        let (flows, quiet) = (&mut self.flows, &mut self.quiet);
        let (armed, steady) = (&mut self.armed, &mut self.steady);
        let decoded = decode_then(
            self.link,
            frame.data,
            frame.wire_len,
            &self.tunnel_ports,
            |seg| {
                let segments = wire_segments(seg.payload_len, frame.gso_size);
                // A segment of the flow the table took last, after two
                // quiet ones of it, arms its mirror: not a segment of
                // every conversation, only of one that has gone steady.
                if armed.is_none()
                    && *steady
                    && flows.last_key().is_some_and(|k| k.sender_of(seg).is_some())
                {
                    *armed = Armed::of_last(flows);
                }
                if let Some(a) = armed {
                    if a.counts(seg, segments, frame.ts, shard, flows) {
                        return;
                    }
                    a.apply(flows, shard, quiet);
                    *armed = None;
                }
                let out = flows.on_segment(seg, frame.ts, &mut Hooks(shard, quiet));
                // Quiet, after a quiet segment of the same connection still
                // waiting in the runs: a conversation gone steady.
                *steady = out.quiet && quiet.ids == Some(out.tag);
                if !quiet.gather(shard, &out, seg, segments, frame.ts) {
                    quiet.settle(shard);
                    shard.on_segment(&out, seg, segments, frame.ts);
                }
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
        self.disarm(shard);
        shard.capture.packets += run.segments as u64;
        shard.capture.kernel_counted += run.segments as u64;
        let to = (&key, generation, sender);
        apply_steady_run(&mut self.flows, shard, &mut self.quiet, to, &run);
        shard.flows_tracked = self.flows.len() as u64;
    }

    /// What the source needs to count the steady segments of the flow of
    /// the last segment processed in the kernel: `None` when that flow's
    /// connection gives no mirror (see `FlowTable::mirror`). The mirror
    /// counts on from the segments this worker's own mirror counted.
    pub fn arm_last(&self) -> Option<Arm> {
        let (key, mirror, lo_side, generation) = match &self.armed {
            Some(a) => (a.key, a.mirror, a.lo_side, a.generation),
            None => self.flows.last_mirror()?,
        };
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
        self.disarm(shard);
        self.flows.expire_all(&mut Hooks(shard, &mut self.quiet));
        shard.flows_tracked = 0;
    }

    /// Lets capture time pass with no frame: idle flows expire, series
    /// expire, flow-log intervals come.
    pub fn tick(&mut self, shard: &mut Shard, now: Nanos) {
        self.disarm(shard);
        self.flows.expire(now, &mut Hooks(shard, &mut self.quiet));
        shard.flows_tracked = self.flows.len() as u64;
        shard.advance(now);
    }

    /// Counts the segments `process` left for later: every frame
    /// processed is then in the flow table and the shard's counts. The
    /// armed mirror stays armed: it is where its connection now stands.
    pub fn settle(&mut self, shard: &mut Shard) {
        if let Some(a) = &mut self.armed {
            a.apply(&mut self.flows, shard, &mut self.quiet);
        }
        self.quiet.settle(shard);
    }

    /// `settle`, and lets the mirror go, before the flow table is touched
    /// other than by `process`.
    fn disarm(&mut self, shard: &mut Shard) {
        self.settle(shard);
        self.armed = None;
        self.steady = false;
    }
}

/// The connection of the last segment the flow table took, armed when that
/// segment and the one before were quiet and of it, and the next is of it
/// too, with the mirror it gave
/// (`FlowTable::last_mirror`) and the runs that mirror counted since: as
/// long as segments of this connection come one after another, those the
/// mirror admits as counted skip the flow table and the analysis, as the
/// xdp backend's kernel program skips handing them up. The first segment
/// the mirror does not count disarms it (after the analysis the mirror
/// would have to be taken again; it is, once the connection has again
/// given two quiet segments in a row); traffic of many connections
/// interleaved, or of short ones, costs a test or two a segment.
/// The runs go through the flow table (`FlowTable::on_steady_run`) and
/// into the shard (`Shard::on_steady_run`) before anything else touches
/// either: another connection's segment, one the mirror does not count,
/// a tick, the end of a batch. The segments it counts are a subset of the
/// quiet ones (`Outcome::quiet`), and the same conditions keep the
/// shard's and the table's upkeep from falling due while they wait.
/// On bulk traffic most segments take this path (docs/performance.md).
struct Armed {
    key: FlowKey,
    /// The side of the key's `lo` end.
    lo_side: Side,
    generation: Generation,
    /// The connection as it stands after the runs.
    mirror: Mirror,
    runs: [SteadyRun; 2],
}

impl Armed {
    fn of_last(flows: &FlowTable<SeriesIds>) -> Option<Armed> {
        let (key, mirror, lo_side, generation) = flows.last_mirror()?;
        Some(Armed {
            key,
            lo_side,
            generation,
            mirror,
            runs: [SteadyRun::default(); 2],
        })
    }

    /// Whether `seg`, standing for `segments` wire segments and captured
    /// at `now`, was counted in a run: it is of this connection, the
    /// mirror admits it as counted, it carries nothing the shard counts
    /// beyond packets and bytes (a cut option list, a tunnel; the mirror
    /// counts no SYN or RST), neither the shard's upkeep nor the flow
    /// table's falls due by its time, and its time is not before the
    /// runs' or the table's latest (`FlowTable::upkeep_due`). When it is
    /// not, the mirror may have moved on with it: the
    /// caller applies the runs, and has the segment analysed.
    #[inline(always)]
    fn counts(
        &mut self,
        seg: &Segment,
        segments: u32,
        now: Nanos,
        shard: &Shard,
        flows: &FlowTable<SeriesIds>,
    ) -> bool {
        let plain = !seg.options.cut
            && seg.tunnels.is_empty()
            && now >= self.runs[0].last.max(self.runs[1].last)
            && !shard.due_by(now)
            && !flows.upkeep_due(now);
        if !plain {
            return false;
        }
        let Some(sender_is_lo) = self.key.sender_of(seg) else {
            return false;
        };
        let side = if sender_is_lo {
            self.lo_side
        } else {
            self.lo_side.peer()
        };
        let run = &mut self.runs[side.index()];
        if self.mirror.admit(seg, side, now, run) != Admission::Counted {
            return false;
        }
        if segments > 1 {
            run.add_wire_segments(seg, segments - 1);
        }
        true
    }

    /// Applies the runs to the connection in the flow table and counts
    /// them in the shard, and empties them. Neither upkeep is due by
    /// their times (see `counts`), so the table takes them (a run it
    /// refused would be counted as such, as the kernel's are).
    #[inline(always)]
    fn apply(
        &mut self,
        flows: &mut FlowTable<SeriesIds>,
        shard: &mut Shard,
        quiet: &mut QuietRuns,
    ) {
        if self.runs[0].segments == 0 && self.runs[1].segments == 0 {
            return;
        }
        self.apply_runs(flows, shard, quiet);
    }

    #[cold]
    #[inline(never)]
    fn apply_runs(
        &mut self,
        flows: &mut FlowTable<SeriesIds>,
        shard: &mut Shard,
        quiet: &mut QuietRuns,
    ) {
        for side in Side::BOTH {
            let run = std::mem::take(&mut self.runs[side.index()]);
            if run.segments == 0 {
                continue;
            }
            let to = (&self.key, self.generation, side);
            apply_steady_run(flows, shard, quiet, to, &run);
        }
    }
}

/// Applies `run`, segments a mirror counted from one side of the
/// connection `generation` on `key`, through the flow table, and counts it
/// in the shard; a run the table refuses (its connection left the table,
/// or another took its place) is counted as such. The worker's own armed
/// mirror never gives one the table refuses (see `Armed::counts`); the
/// kernel's may.
fn apply_steady_run(
    flows: &mut FlowTable<SeriesIds>,
    shard: &mut Shard,
    quiet: &mut QuietRuns,
    (key, generation, sender): (&FlowKey, Generation, Side),
    run: &SteadyRun,
) {
    match flows.on_steady_run(key, generation, sender, run, &mut Hooks(shard, quiet)) {
        Some(out) => shard.on_steady_run(out.tag, out.sender, run),
        None => shard.capture.runs_refused += run.segments as u64,
    }
}

/// Quiet segments (`Outcome::quiet`) of one connection, one run per
/// direction, gathered by `process` while they come one after another and
/// counted in the shard as runs (`Shard::on_steady_run`) before anything
/// else touches it. Such a segment then costs a few sums instead of the
/// shard's whole path (its series, its connection record, the shard's
/// clock): about 60 instructions a packet less on bulk traffic with the
/// connection table (docs/performance.md).
#[derive(Default)]
struct QuietRuns {
    /// Gathers nothing (the tests' reference).
    #[cfg(test)]
    one_by_one: bool,
    /// The connection the runs belong to; `None` while there are none.
    ids: Option<SeriesIds>,
    runs: [SteadyRun; 2],
}

impl QuietRuns {
    /// Adds `seg` to the runs if it may wait: it is quiet, carries nothing
    /// the shard counts beyond packets and bytes (a SYN's window scale, an
    /// RST, a cut option list, a tunnel), and no time-driven work in the
    /// shard falls due by its time (which would then run with the
    /// segment's counts missing). A segment of another connection settles
    /// the runs first. `false`: the caller settles and counts `seg` itself.
    #[inline(always)]
    fn gather(
        &mut self,
        shard: &Shard,
        out: &Outcome<SeriesIds>,
        seg: &Segment,
        segments: u32,
        now: Nanos,
    ) -> bool {
        #[cfg(test)]
        if self.one_by_one {
            return false;
        }
        let plain = out.quiet
            && !(seg.flags.syn() || seg.flags.rst() || seg.options.cut)
            && seg.tunnels.is_empty()
            && !shard.due_by(now);
        if !plain {
            return false;
        }
        if self.ids != Some(out.tag) {
            if self.ids.is_some() {
                return false;
            }
            self.ids = Some(out.tag);
        }
        self.runs[out.sender.index()].add(seg, segments, now);
        true
    }

    /// Counts the runs in `shard` and empties them. Their order does not
    /// matter: no upkeep falls due in either (see `gather`).
    fn settle(&mut self, shard: &mut Shard) {
        let Some(ids) = self.ids.take() else {
            return;
        };
        for side in Side::BOTH {
            let run = std::mem::take(&mut self.runs[side.index()]);
            if run.segments > 0 {
                shard.on_steady_run(ids, side, &run);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{wire_segments, Hooks, Nanos, Worker};
    use crate::capture::{Frame, Next, PacketSource, PcapFile};
    use crate::decode::decode;
    use crate::decode::LinkType;
    use crate::flow::{Admission, FlowKey, Mirror, Side, SteadyRun};
    use crate::metrics::conns::FlowLogSink;
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
    struct MirrorRuns {
        mirror: Mirror,
        lo_side: Side,
        generation: crate::flow::Generation,
        runs: [SteadyRun; 2],
    }

    /// Applies every armed flow's runs, in the order their last segments
    /// came, and empties them.
    fn apply_all_runs(
        worker: &mut Worker,
        shard: &mut Shard,
        armed: &mut HashMap<FlowKey, MirrorRuns>,
    ) {
        worker.settle(shard);
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
            let applied = worker.flows.on_steady_run(
                &key,
                a.generation,
                side,
                &run,
                &mut Hooks(shard, &mut worker.quiet),
            );
            let out = applied.expect("a run of a flow the table lost");
            shard.on_steady_run(out.tag, out.sender, &run);
            shard.flows_tracked = worker.flows.len() as u64;
        }
    }

    /// A frame's time, bytes, wire length and GSO size.
    type OwnedFrame = (Nanos, Vec<u8>, u32, u16);

    /// Segments counted in runs, by the armed mirror or gathered quiet,
    /// count as they would have one by one: over every test capture and
    /// synthetic bulk transfers (`bulk_transfer`), with room for every flow
    /// and for three, a worker that analyses and counts every segment as
    /// it comes and one that counts in runs and settles every 256 frames
    /// (as the capture loop does after an af-packet batch) keep the same
    /// connection records each time the second settles, render the same
    /// metrics with the same records at the end, and write the same
    /// flow-log events; and without a connection table (`--print`), the
    /// same metrics. Series expire after a second, the flow log writes
    /// every second, and flows expire after 2 s idle, so that the shard's
    /// and the table's upkeep fall due while runs wait; both workers tick
    /// when a second passes with no frame.
    #[test]
    fn segments_counted_in_runs_count_as_they_would_one_by_one() {
        let dir = format!("{}/testdata/pcaps", env!("CARGO_MANIFEST_DIR"));
        let mut paths: Vec<_> = std::fs::read_dir(&dir)
            .expect("the test captures")
            .map(|e| e.expect("a directory entry").path())
            .filter(|p| p.extension().is_some_and(|x| x == "pcap" || x == "pcapng"))
            .collect();
        paths.sort();
        assert!(paths.len() >= 10, "{paths:?}");
        let mut captures: Vec<(String, LinkType, Vec<OwnedFrame>)> = paths
            .iter()
            .map(|path| {
                let mut source = PcapFile::open(path, "").expect("a test capture");
                let mut frames = Vec::new();
                loop {
                    match source.next().expect("the capture reads") {
                        Next::Frame(f) => {
                            frames.push((f.ts, f.data.to_vec(), f.wire_len, f.gso_size))
                        }
                        Next::End => break,
                        _ => continue,
                    }
                }
                (path.display().to_string(), source.link_type(), frames)
            })
            .collect();
        captures.push((
            "a clean bulk transfer".into(),
            LinkType::Ethernet,
            bulk_transfer(),
        ));
        let (mut held_all, mut total_all) = ([0u64; 2], 0u64);
        for (path, link, capture) in &captures {
            for (max_flows, table) in [(1000, true), (3, true), (1000, false)] {
                let name = format!("{path}, {max_flows} flows, connection table {table}");
                let logs = [(); 2].map(|_| std::sync::mpsc::sync_channel(200_000));
                let configs = logs.each_ref().map(|(tx, _)| {
                    let mut config = ShardConfig {
                        series_ttl: 1_000_000_000,
                        ..ShardConfig::plain(10_000)
                    };
                    if table {
                        config.conns = ShardConfig::with_connection_table(10_000).conns;
                        let conns = config.conns.as_mut().expect("a connection table");
                        conns.log = Some(FlowLogSink::new(tx.clone(), Arc::default(), false));
                        conns.log_interval = 1_000_000_000;
                    }
                    config
                });
                let exporters = configs.each_ref().map(|c| Exporter::new("test", c));
                let mut shards = [0, 1].map(|i| {
                    let id = exporters[i].interface_id("eth0");
                    Shard::new("eth0".into(), id, configs[i].clone())
                });
                let worker = || Worker::new(*link, max_flows, 2_000_000_000);
                let mut workers = [worker().one_by_one(), worker()];
                let records = |s: &Shard| format!("{:?}", s.conns.as_ref().map(|c| c.records()));
                let (mut frames, mut held_before) = (0u64, [0u32; 2]);
                let mut latest = capture.first().map_or(0, |f| f.0);
                for (ts, data, wire_len, gso_size) in capture {
                    // A live capture's loop ticks when no frame comes.
                    if *ts > latest + 1_000_000_000 {
                        for (w, s) in workers.iter_mut().zip(shards.iter_mut()) {
                            w.tick(s, *ts - 1);
                        }
                    }
                    latest = latest.max(*ts);
                    let frame = Frame {
                        ts: *ts,
                        data,
                        wire_len: *wire_len,
                        gso_size: *gso_size,
                    };
                    frames += 1;
                    for (w, s) in workers.iter_mut().zip(shards.iter_mut()) {
                        w.process(s, &frame);
                    }
                    // Whether the frame was counted by the mirror, or
                    // gathered quiet (a run grew).
                    let w = &workers[1];
                    let held = [
                        w.armed
                            .as_ref()
                            .map_or(0, |a| a.runs[0].segments + a.runs[1].segments),
                        w.quiet.runs[0].segments + w.quiet.runs[1].segments,
                    ];
                    for k in 0..2 {
                        held_all[k] += (held[k] > held_before[k]) as u64;
                    }
                    held_before = held;
                    if frames.is_multiple_of(256) {
                        workers[1].settle(&mut shards[1]);
                        held_before = [0; 2];
                        assert_eq!(
                            records(&shards[1]),
                            records(&shards[0]),
                            "{name}: frame {frames}"
                        );
                    }
                }
                total_all += frames;
                // A tick settles too.
                let last = capture.last().map_or(0, |f| f.0);
                for (w, s) in workers.iter_mut().zip(shards.iter_mut()) {
                    w.tick(s, last);
                }
                assert_eq!(records(&shards[1]), records(&shards[0]), "{name}: records");
                let [one, gathered] = exporters;
                for ((w, s), x) in workers.iter_mut().zip(shards).zip([&one, &gathered]) {
                    let mut s = s;
                    w.release(&mut s);
                    x.add_shard(Arc::new(Mutex::new(s)));
                }
                let (want, got) = (one.render(), gathered.render());
                assert!(want.contains("tcp_packets_total{"), "{name}: {want}");
                assert_eq!(got, want, "{name}");
                // Every flow-log event, with the counts and times it had
                // when it was written.
                let [want, got] =
                    logs.map(|(_, rx)| rx.try_iter().map(|e| format!("{e:?}")).collect::<Vec<_>>());
                assert_eq!(want.is_empty(), !table, "{name}: flow-log events");
                assert_eq!(got, want, "{name}: flow log");
            }
        }
        // Most segments of the captures' bulk transfers are counted by a
        // mirror, and of the others many are gathered quiet.
        let [counted, gathered] = held_all;
        assert!(
            counted * 2 > total_all && gathered * 50 > total_all,
            "of {total_all} frames, {counted} counted by a mirror, {gathered} gathered quiet"
        );
    }

    /// Bulk transfers on Ethernet, each segment of 1,000 bytes, the
    /// client's segments 370 us apart within the server's window, each
    /// round of them acknowledged at once by the server:
    /// - one from port 40000 of 300 rounds of 50 segments, where in every
    ///   seventh round the 1st and the 26th are offload super-packets of
    ///   three, in every eleventh the last is captured 500 us before the
    ///   one ahead of it (capture times go back), and a pause of 3 s
    ///   comes in the middle of round 150; it ends with FINs both ways, and 10 ms
    ///   later an RST from the server to the closed connection;
    /// - one from port 40001 of a round of 3 before it, left open, so that
    ///   it expires (idle) while the first runs;
    /// - after the first's last round, one from port 40002 and one from
    ///   port 40003 with TCP timestamps, each of 10 rounds of 20, from
    ///   the middle of the sixth round on those of the first carried in
    ///   VXLAN, those of the second cut inside the timestamps option.
    ///
    /// Most segments change nothing but the counts: runs of 18.5 ms across
    /// the shard's upkeep every 100 ms (not in step with it).
    fn bulk_transfer() -> Vec<OwnedFrame> {
        use crate::decode::fixtures::{eth_ipv4_tcp, in_vxlan, TcpSpec};
        use crate::decode::TcpFlags as F;
        const US: Nanos = 1000;
        const TIMESTAMPS: [u8; 12] = [1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2];
        let (client, server) = (7_000u32, 900_000u32);
        let mut frames = Vec::new();
        let mut now: Nanos = 1_700_000_000 * 1_000_000_000;
        // One segment of the connection from `port`; `late` in its
        // transfer (the second half).
        let mut send = |(port, late): (u16, bool),
                        from_client: bool,
                        (seq, ack): (u32, u32),
                        flags: u8,
                        payload: usize,
                        at: Nanos| {
            let gso_size = if payload > 1000 { 1000 } else { 0 };
            let (src_port, dst_port) = if from_client { (port, 80) } else { (80, port) };
            let options = if port == 40003 {
                TIMESTAMPS.to_vec()
            } else {
                Vec::new()
            };
            let spec = TcpSpec {
                src_port,
                dst_port,
                seq,
                ack,
                flags,
                window: 64_000,
                payload,
                options,
                ..TcpSpec::default()
            };
            let mut f = eth_ipv4_tcp(&spec);
            if !from_client {
                // The fixture's addresses are the client's, 10.0.0.1 to
                // 10.0.0.2.
                let (src, dst) = f[26..34].split_at_mut(4);
                src.swap_with_slice(dst);
            }
            if port == 40002 && late {
                f = in_vxlan(&f);
            }
            let len = f.len() as u32;
            if port == 40003 && late {
                // Ethernet, IPv4 and the first 4 bytes of the options.
                f.truncate(14 + 20 + 24);
            }
            frames.push((at, f, len, gso_size));
        };
        // A handshake on `port`, then `rounds` of `n` segments from the
        // client, each round acknowledged; where the client is after them.
        let mut transfer = |port: u16, now: &mut Nanos, rounds: u32, n: u32| {
            let early = (port, false);
            send(early, true, (client, 0), F::SYN, 0, *now);
            let synack = (server, client + 1);
            send(early, false, synack, F::SYN | F::ACK, 0, *now + 100 * US);
            let ack = (client + 1, server + 1);
            send(early, true, ack, F::ACK, 0, *now + 200 * US);
            let mut seq = client + 1;
            for round in 0..rounds {
                for i in 0..n {
                    // From the middle of the middle round on.
                    let late = (round, i) >= (rounds / 2, n / 2);
                    if port == 40000 && round == 150 && i == 25 {
                        *now += 3_000_000 * US;
                    }
                    *now += 370 * US;
                    let big = port == 40000 && round % 7 == 0 && (i == 0 || i == 25);
                    let len = if big { 3000 } else { 1000 };
                    let back = port == 40000 && round % 11 == 0 && i == n - 1;
                    let at = if back { *now - 870 * US } else { *now };
                    send((port, late), true, (seq, server + 1), F::ACK, len, at);
                    seq += len as u32;
                }
                let ack = (server + 1, seq);
                let late = round >= rounds / 2;
                send((port, late), false, ack, F::ACK, 0, *now + 100 * US);
            }
            seq
        };
        transfer(40001, &mut now, 1, 3);
        let seq = transfer(40000, &mut now, 300, 50);
        transfer(40002, &mut now, 10, 20);
        transfer(40003, &mut now, 10, 20);
        now += 1000 * US;
        let bulk = (40000, false);
        send(bulk, true, (seq, server + 1), F::FIN | F::ACK, 0, now);
        let fin = (server + 1, seq + 1);
        send(bulk, false, fin, F::FIN | F::ACK, 0, now + 100 * US);
        send(bulk, true, (seq + 1, server + 2), F::ACK, 0, now + 200 * US);
        let rst = (server + 2, seq + 1);
        send(bulk, false, rst, F::RST, 0, now + 10_000 * US);
        frames
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
            let (mut every, mut split) = (
                Worker::new(link, 1000, idle).one_by_one(),
                Worker::new(link, 1000, idle).one_by_one(),
            );
            let mut armed: HashMap<FlowKey, MirrorRuns> = HashMap::new();
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
                every.settle(&mut every_shard);
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
                    apply_all_runs(&mut split, &mut split_shard, &mut armed);
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
                        e.insert(MirrorRuns {
                            mirror,
                            lo_side,
                            generation,
                            runs: [SteadyRun::default(); 2],
                        });
                    }
                }
            }
            apply_all_runs(&mut split, &mut split_shard, &mut armed);
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

/// Connects the flow table's connections to the shard's series. It
/// settles the worker's quiet runs before it touches the shard, so that a
/// connection's record is closed, or a series let go, with every segment
/// before counted.
struct Hooks<'a>(&'a mut Shard, &'a mut QuietRuns);

impl FlowHooks<SeriesIds> for Hooks<'_> {
    fn start(&mut self, key: &FlowKey, conn: &Conn, now: Nanos) -> SeriesIds {
        self.1.settle(self.0);
        self.0.start_connection(&conn.orientation(key), now)
    }

    fn removed(&mut self, ids: SeriesIds, removal: Removal, step: Step, now: Nanos) {
        self.1.settle(self.0);
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
        if let Some(s) = &mut guard {
            worker.settle(s);
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
