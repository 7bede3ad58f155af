//! The user-space half of counting steady segments in the kernel (the xdp
//! backend with `--xdp-count`; bpf/count.h). This module owns three things:
//!
//! - order: the kernel numbers each connection's records (runs included)
//!   under the connection's lock, but writes them to the ring after it, so
//!   two CPUs may write one connection's records in the other order. They
//!   are handed on in the order they were numbered: a record that comes
//!   before its turn is held until the ones before it have come. A record
//!   that never comes (lost to a full ring, counted there) is given up on
//!   when the ring has been found empty twice with records held: those are
//!   then handed on in order, and the gap is counted.
//! - arming: after a record the kernel did not go on counting after, the
//!   analysis may give the connection's mirror (`Arm`); it is written to
//!   `tcpx_arms` with the number of records handed on, which the kernel
//!   adopts only if it has handed up no more than those.
//! - flushing: `tcpx_flush` hands up the runs of every connection, for
//!   connections that only count (bulk one way, pure ACKs back).
//!
//! Mirrors and runs pass through as bytes; the flow analysis reads and
//! writes them (flow::steady_layout).

use std::collections::{BTreeMap, HashMap, VecDeque};

use aya::maps::{HashMap as BpfHashMap, MapData};
use aya::programs::{TestRun, TestRunOptions, Xdp};
use aya::Ebpf;

use super::{Arm, KernelCountStats};
use crate::decode::summary::{numbered, Numbered};

/// Bytes of `struct tcpx_flow_key` and of `struct tcpx_arm`.
const KEY_LEN: usize = 40;
const ARM_LEN: usize = 88;

/// Offsets in `struct tcpx_flow_key` and `struct tcpx_arm`; a test reads
/// them back out of bpf/count.h.
mod key_at {
    pub const IFINDEX: usize = 0;
    pub const LO_PORT: usize = 4;
    pub const HI_PORT: usize = 6;
    pub const LO: usize = 8;
    pub const HI: usize = 24;
}
mod arm_at {
    pub const TOKEN: usize = 0;
    pub const ARMED_AT: usize = 8;
    pub const GENERATION: usize = 12;
    pub const CLIENT_LO: usize = 16;
    pub const MIRROR: usize = 24;
}

/// How long a connection may go without a segment before the kernel (and
/// this module) forget it, in nanoseconds: its entry in the kernel's map is
/// deleted at a flush once it has no run waiting.
pub const FORGET_AFTER: u64 = 60_000_000_000;
/// Flushes between two prunes of what this module keeps by connection.
const PRUNE_EVERY: u32 = (FORGET_AFTER / super::xdp::FLUSH_EVERY) as u32;

/// Program and map names in bpf/count.h.
pub const FLUSH_PROGRAM: &str = "tcpx_flush";
const ARMS_MAP: &str = "tcpx_arms";

/// Records held at most, waiting for one numbered before them; past this
/// all are handed on, in order, as if their gaps had been given up on.
const MAX_HELD: usize = 4096;
/// How long records may wait for one numbered before them, in
/// nanoseconds: one being written by another CPU takes well under a
/// microsecond. Past this (looked at when the ring is empty) they are
/// handed on, in order, and each that skips a number counts as a gap.
const HOLD_FOR: u64 = 1_000_000;

/// A connection as bpf/count.h keys it.
type Key = [u8; KEY_LEN];

/// The connection of a numbered record as key_of() in bpf/count.h makes
/// it: the lower endpoint first (addresses compare as bytes, then ports).
fn key_of(n: &Numbered) -> Key {
    let src_lo = (n.src, n.src_port) <= (n.dst, n.dst_port);
    let (lo, hi) = if src_lo {
        ((n.src, n.src_port), (n.dst, n.dst_port))
    } else {
        ((n.dst, n.dst_port), (n.src, n.src_port))
    };
    let mut k = [0u8; KEY_LEN];
    k[key_at::IFINDEX..key_at::IFINDEX + 4].copy_from_slice(&n.ifindex.to_ne_bytes());
    k[key_at::LO_PORT..key_at::LO_PORT + 2].copy_from_slice(&lo.1.to_ne_bytes());
    k[key_at::HI_PORT..key_at::HI_PORT + 2].copy_from_slice(&hi.1.to_ne_bytes());
    k[key_at::LO..key_at::LO + 16].copy_from_slice(&lo.0);
    k[key_at::HI..key_at::HI + 16].copy_from_slice(&hi.0);
    k
}

/// The bytes of `struct tcpx_arm`.
fn arm_bytes(arm: &Arm, token: u64, armed_at: u32) -> [u8; ARM_LEN] {
    let mut v = [0u8; ARM_LEN];
    v[arm_at::TOKEN..arm_at::TOKEN + 8].copy_from_slice(&token.to_ne_bytes());
    v[arm_at::ARMED_AT..arm_at::ARMED_AT + 4].copy_from_slice(&armed_at.to_ne_bytes());
    v[arm_at::GENERATION..arm_at::GENERATION + 4].copy_from_slice(&arm.generation.to_ne_bytes());
    v[arm_at::CLIENT_LO] = arm.client_is_lo as u8;
    v[arm_at::MIRROR..arm_at::MIRROR + arm.mirror.len()].copy_from_slice(&arm.mirror);
    v
}

/// Where a record read from the ring goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Turn {
    /// Hand it on now.
    Now,
    /// Held (copied): one numbered before it has not come yet.
    Held,
}

/// Records handed on in the order the kernel numbered each connection's.
#[derive(Default)]
pub struct Order {
    /// By connection: what was handed on (looked up for every record).
    read: HashMap<Key, Read, ahash::RandomState>,
    /// The prune period (see `prune`).
    period: u32,
    /// Records that came before their turn, by connection and number.
    held: BTreeMap<(Key, u32), Vec<u8>>,
    /// Records whose turn has come, to hand on before any from the ring.
    ready: VecDeque<Vec<u8>>,
    /// The connection of the record handed on last, and whether it may be
    /// armed after it.
    last: Option<Key>,
    last_wants_arm: bool,
    /// Since when records have been held (CLOCK_MONOTONIC; `None`: none
    /// is).
    held_since: Option<u64>,
    /// Records handed on after ones numbered before them that never came.
    gaps: u64,
}

/// What was handed on of a connection.
#[derive(Clone, Copy, Debug)]
struct Read {
    /// The number of the last record.
    seq: u32,
    /// The prune period it was handed on in.
    period: u32,
}

impl Order {
    /// A record from the ring, read at `now` (CLOCK_MONOTONIC): whether to
    /// hand it on now or later (then it is copied). Records the kernel did
    /// not number go on at once.
    pub fn order(&mut self, record: &[u8], now: u64) -> Turn {
        let Some(n) = numbered(record).filter(|n| n.flow_seq != 0) else {
            self.last = None;
            self.last_wants_arm = false;
            return Turn::Now;
        };
        let key = key_of(&n);
        let read = self.read_of(&key);
        // 1 starts the kernel's count of a connection (its entry is new,
        // and every entry starts at 1: the maps are new when the programs
        // load). Numbers wrap after 2^32 records, past 0, which is never
        // given.
        if n.flow_seq == 1 || n.flow_seq == next_after(read) || seq_before(n.flow_seq, read) {
            self.handed_on(key, &n);
            return Turn::Now;
        }
        self.held.insert((key, n.flow_seq), record.to_vec());
        self.held_since.get_or_insert(now);
        if self.held.len() > MAX_HELD {
            self.release_held();
        }
        Turn::Held
    }

    /// The number of the last record of `key` handed on (0: none known).
    fn read_of(&self, key: &Key) -> u32 {
        self.read.get(key).map_or(0, |r| r.seq)
    }

    /// Notes `n` as handed on, and readies the record after it if held.
    fn handed_on(&mut self, key: Key, n: &Numbered) {
        let period = self.period;
        let read = self.read.entry(key).or_insert(Read { seq: 0, period });
        if n.flow_seq == 1 || !seq_before(n.flow_seq, read.seq) {
            read.seq = n.flow_seq;
        }
        read.period = period;
        self.last = Some(key);
        self.last_wants_arm = !n.armed && !n.is_run;
        if let Some(next) = self.held.remove(&(key, next_after(n.flow_seq))) {
            self.ready.push_back(next);
        }
        if self.held.is_empty() {
            self.held_since = None;
        }
    }

    /// The next held record whose turn has come (or that is given up
    /// waiting for), noted as handed on.
    pub fn ready(&mut self) -> Option<Vec<u8>> {
        let record = self.ready.pop_front()?;
        if let Some(n) = numbered(&record) {
            let key = key_of(&n);
            if n.flow_seq != 1 && n.flow_seq != next_after(self.read_of(&key)) {
                self.gaps += 1;
            }
            self.handed_on(key, &n);
        }
        Some(record)
    }

    /// The ring is empty at `now`: records held for `HOLD_FOR` or longer
    /// are given up waiting for, and readied in order with any held after
    /// them.
    pub fn on_empty(&mut self, now: u64) {
        if self
            .held_since
            .is_some_and(|since| now.saturating_sub(since) >= HOLD_FOR)
        {
            self.release_held();
        }
    }

    fn release_held(&mut self) {
        let held = std::mem::take(&mut self.held);
        self.ready.extend(held.into_values());
        self.held_since = None;
    }

    /// The connection of the record handed on last, and the number of
    /// records of it handed on, when it may be armed after that record.
    /// Measured: an arm after every such record (1,564-3,191 on the bulk
    /// replay) counted 94% of it in the kernel; one at most every 8
    /// records of a connection, or a millisecond, or only once the reader
    /// had caught up with the ring, counted less, or nothing of the live
    /// test's bulk connection (the kernel takes an arm only if it has
    /// handed up nothing since). The cost: a connection whose every segment
    /// disarms the kernel takes a map update per record.
    fn armable(&self) -> Option<(Key, u32)> {
        let key = self.last.filter(|_| self.last_wants_arm)?;
        Some((key, self.read.get(&key)?.seq))
    }

    /// Forgets connections none of whose records was handed on in this
    /// prune period, and starts the next. Called once a `FORGET_AFTER`, as
    /// the kernel forgets a connection after that long idle: one that comes
    /// back is numbered from 1 again.
    fn prune(&mut self) {
        let period = self.period;
        self.read.retain(|_, r| r.period == period);
        self.period = period.wrapping_add(1);
    }
}

/// The number after `seq`: numbers run from 1 and wrap past 0.
fn next_after(seq: u32) -> u32 {
    match seq.wrapping_add(1) {
        0 => 1,
        n => n,
    }
}

/// Whether `a` comes before `b` (serial numbers: less than 2^31 behind).
fn seq_before(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}

/// Order, arming and flushing for one ring (see the module's doc).
pub struct KernelCount {
    arms: BpfHashMap<MapData, Key, [u8; ARM_LEN]>,
    order: Order,
    token: u64,
    flushes: u32,
    stats: KernelCountStats,
}

impl KernelCount {
    /// Takes the arms map out of `ebpf`, whose programs count.
    pub fn new(ebpf: &mut Ebpf) -> Result<KernelCount, String> {
        let map = ebpf
            .take_map(ARMS_MAP)
            .ok_or_else(|| format!("no map {ARMS_MAP}"))?;
        let arms = BpfHashMap::try_from(map).map_err(|e| format!("map {ARMS_MAP}: {e}"))?;
        Ok(KernelCount {
            arms,
            order: Order::default(),
            token: 0,
            flushes: 0,
            stats: KernelCountStats::default(),
        })
    }

    /// What it did; the kernel's own count of connections refused is
    /// the caller's to add.
    pub fn stats(&self) -> KernelCountStats {
        KernelCountStats {
            gaps: self.order.gaps,
            ..self.stats
        }
    }

    /// See `Order::order`.
    pub fn order(&mut self, record: &[u8], now: u64) -> Turn {
        self.order.order(record, now)
    }

    /// See `Order::ready`.
    pub fn ready(&mut self) -> Option<Vec<u8>> {
        self.order.ready()
    }

    /// See `Order::on_empty`.
    pub fn on_empty(&mut self, now: u64) {
        self.order.on_empty(now)
    }

    /// Whether the record handed on last may arm its connection.
    pub fn wants_arm(&self) -> bool {
        self.order.last_wants_arm
    }

    /// Arms the connection of the record handed on last, if `arm` is of
    /// that connection (else counts a mismatch).
    pub fn arm(&mut self, arm: &Arm) {
        let Some((key, armed_at)) = self.order.armable() else {
            return;
        };
        // Once per record: the next says whether the kernel took it.
        self.order.last_wants_arm = false;
        let same = key[key_at::LO..key_at::LO + 16] == arm.lo.0
            && key[key_at::HI..key_at::HI + 16] == arm.hi.0
            && key[key_at::LO_PORT..key_at::LO_PORT + 2] == arm.lo.1.to_ne_bytes()
            && key[key_at::HI_PORT..key_at::HI_PORT + 2] == arm.hi.1.to_ne_bytes();
        if !same {
            self.stats.arm_mismatches += 1;
            return;
        }
        self.token += 1;
        let value = arm_bytes(arm, self.token, armed_at);
        match self.arms.insert(key, value, 0) {
            Ok(()) => self.stats.arms += 1,
            Err(_) => self.stats.arms_refused += 1,
        }
    }

    /// Runs `tcpx_flush` in `ebpf`: the runs of every connection come up
    /// through the ring, and connections idle for `FORGET_AFTER` are
    /// forgotten. `now` is the time in the kernel's clock, or 0 for the
    /// clock's own.
    pub fn flush(&mut self, ebpf: &mut Ebpf, now: u64) {
        self.flushes = self.flushes.wrapping_add(1);
        if self.flushes.is_multiple_of(PRUNE_EVERY) {
            self.order.prune();
        }
        let program: Option<&mut Xdp> = ebpf
            .program_mut(FLUSH_PROGRAM)
            .and_then(|p| p.try_into().ok());
        // struct tcpx_flush_args; XDP's test runs want at least an
        // Ethernet header's bytes.
        let mut frame = [0u8; 16];
        frame[..8].copy_from_slice(&now.to_ne_bytes());
        frame[8..].copy_from_slice(&FORGET_AFTER.to_ne_bytes());
        let opts = TestRunOptions {
            data_in: Some(&frame),
            ..TestRunOptions::default()
        };
        match program.map(|p| p.test_run(opts)) {
            Some(Ok(_)) => {}
            _ => self.stats.flush_errors += 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::fixtures::{eth_ipv4_tcp, TcpSpec};
    use crate::decode::summary::encode;

    /// A segment's record from port `src_port` to 80, numbered `seq`.
    fn record(src_port: u16, seq: u32, armed: bool) -> Vec<u8> {
        let frame = eth_ipv4_tcp(&TcpSpec {
            src_port,
            dst_port: 80,
            ..TcpSpec::default()
        });
        let r = encode::record_of_frame(&frame, frame.len() as u32, 1).expect("a TCP frame");
        encode::numbered(r, seq, armed).to_vec()
    }

    fn seq_of(record: &[u8]) -> (u16, u32) {
        let n = numbered(record).expect("a record");
        (n.src_port, n.flow_seq)
    }

    #[test]
    fn a_connections_records_go_on_in_the_order_they_were_numbered() {
        let mut o = Order::default();
        assert_eq!(o.order(&record(1000, 1, false), 0), Turn::Now);
        assert_eq!(o.order(&record(1000, 3, false), 0), Turn::Held);
        assert_eq!(o.order(&record(1000, 4, false), 0), Turn::Held);
        // Another connection is not held up by this one's.
        assert_eq!(o.order(&record(2000, 1, false), 0), Turn::Now);
        assert!(o.ready().is_none(), "3 waits for 2");
        assert_eq!(o.order(&record(1000, 2, false), 0), Turn::Now);
        assert_eq!(o.ready().as_deref().map(seq_of), Some((1000, 3)));
        assert_eq!(o.ready().as_deref().map(seq_of), Some((1000, 4)));
        assert!(o.ready().is_none());
        assert_eq!(o.order(&record(1000, 5, false), 0), Turn::Now);
        assert_eq!(o.gaps, 0);
    }

    #[test]
    fn a_connection_first_seen_past_number_one_waits_for_it() {
        let mut o = Order::default();
        // Its first two records, written by two CPUs in the other order.
        assert_eq!(o.order(&record(1000, 2, false), 0), Turn::Held);
        assert_eq!(o.order(&record(1000, 1, false), 0), Turn::Now);
        assert_eq!(o.ready().as_deref().map(seq_of), Some((1000, 2)));
        assert_eq!(o.order(&record(1000, 3, false), 0), Turn::Now);
        assert_eq!(o.gaps, 0);
    }

    #[test]
    fn a_record_that_never_comes_is_given_up_once_its_successors_waited_long_enough() {
        let mut o = Order::default();
        assert_eq!(o.order(&record(1000, 1, false), 0), Turn::Now);
        assert_eq!(o.order(&record(1000, 3, false), 10), Turn::Held);
        o.on_empty(10 + HOLD_FOR - 1);
        assert!(o.ready().is_none(), "one being written may still come");
        o.on_empty(10 + HOLD_FOR);
        assert_eq!(o.ready().as_deref().map(seq_of), Some((1000, 3)));
        assert_eq!(o.gaps, 1);
        assert_eq!(o.order(&record(1000, 4, false), 20), Turn::Now);
    }

    #[test]
    fn the_wait_starts_when_records_are_held_again() {
        let mut o = Order::default();
        o.order(&record(1000, 1, false), 0);
        assert_eq!(o.order(&record(1000, 3, false), 0), Turn::Held);
        o.on_empty(HOLD_FOR / 2);
        assert_eq!(o.order(&record(1000, 2, false), HOLD_FOR / 2), Turn::Now);
        assert_eq!(o.ready().as_deref().map(seq_of), Some((1000, 3)));
        // Held again: it waits its own HOLD_FOR, whatever waited before.
        assert_eq!(o.order(&record(1000, 5, false), HOLD_FOR), Turn::Held);
        o.on_empty(HOLD_FOR + 1);
        assert!(o.ready().is_none(), "5 was only just held");
        assert_eq!(o.order(&record(1000, 4, false), HOLD_FOR + 2), Turn::Now);
        assert_eq!(o.ready().as_deref().map(seq_of), Some((1000, 5)));
        assert_eq!(o.gaps, 0);
    }

    #[test]
    fn number_one_starts_a_connections_count_again() {
        let mut o = Order::default();
        for seq in 1..=5 {
            assert_eq!(o.order(&record(1000, seq, false), 0), Turn::Now);
        }
        // The kernel's entry went and came back: its count starts over.
        assert_eq!(o.order(&record(1000, 1, false), 0), Turn::Now);
        assert_eq!(o.order(&record(1000, 3, false), 0), Turn::Held);
        assert_eq!(o.order(&record(1000, 2, false), 0), Turn::Now);
        assert_eq!(o.ready().as_deref().map(seq_of), Some((1000, 3)));
    }

    #[test]
    fn numbers_wrap_past_zero() {
        assert_eq!(next_after(u32::MAX), 1);
        assert!(seq_before(u32::MAX, 1) && !seq_before(1, u32::MAX));
        let mut o = Order::default();
        o.order(&record(1000, 1, false), 0);
        o.read.get_mut(&o.last.unwrap()).unwrap().seq = u32::MAX - 1;
        assert_eq!(o.order(&record(1000, u32::MAX, false), 0), Turn::Now);
        assert_eq!(o.order(&record(1000, 2, false), 0), Turn::Held);
        assert_eq!(o.order(&record(1000, 1, false), 0), Turn::Now);
        assert_eq!(o.ready().as_deref().map(seq_of), Some((1000, 2)));
    }

    #[test]
    fn connections_untouched_for_a_whole_prune_period_are_forgotten() {
        let mut o = Order::default();
        o.order(&record(1000, 1, false), 0);
        o.order(&record(2000, 1, false), 0);
        o.prune();
        o.order(&record(2000, 2, false), 0);
        o.prune();
        // 1000 is forgotten: past 1, its records wait for 1.
        assert_eq!(o.order(&record(1000, 9, false), 0), Turn::Held);
        assert_eq!(
            o.order(&record(2000, 3, false), 0),
            Turn::Now,
            "2000 is kept"
        );
    }

    #[test]
    fn held_records_past_the_bound_go_on_in_order() {
        let mut o = Order::default();
        assert_eq!(o.order(&record(1000, 1, false), 0), Turn::Now);
        for seq in 3..MAX_HELD as u32 + 4 {
            let turn = o.order(&record(1000, seq, false), 0);
            assert_eq!(turn, Turn::Held, "{seq}");
        }
        let released: Vec<u32> = std::iter::from_fn(|| o.ready())
            .map(|r| seq_of(&r).1)
            .collect();
        let want: Vec<u32> = (3..MAX_HELD as u32 + 4).collect();
        assert_eq!(released, want);
        assert_eq!(o.gaps, 1, "only 2 was missing");
    }

    #[test]
    fn only_a_numbered_segment_the_kernel_stopped_counting_after_may_arm() {
        let mut o = Order::default();
        o.order(&record(1000, 1, false), 0);
        let (key, read) = o.armable().expect("not counting after it");
        assert_eq!(
            (key, read),
            (key_of(&numbered(&record(1000, 1, false)).unwrap()), 1)
        );
        o.order(&record(1000, 2, true), 0);
        assert_eq!(o.armable(), None, "the kernel goes on counting");
        o.order(&record(1000, 0, false), 0);
        assert_eq!(o.armable(), None, "not numbered");
        let mut run = vec![0u8; crate::decode::summary::RUN_RECORD_LEN];
        run[..128].copy_from_slice(&record(1000, 3, false));
        run[46] = 2; // TCPX_STEADY_RUN
        assert!(crate::decode::summary::is_run_record(&run));
        o.order(&run, 0);
        assert_eq!(o.armable(), None, "a run");
    }

    #[test]
    fn keys_order_endpoints_as_the_kernel_and_the_flow_table_do() {
        let a = numbered(&record(1000, 1, false)).unwrap();
        let mut b = a;
        (b.src, b.dst, b.src_port, b.dst_port) = (a.dst, a.src, a.dst_port, a.src_port);
        assert_eq!(key_of(&a), key_of(&b), "both directions, one key");
        let header = include_str!("../../bpf/count.h");
        let stated = |m: &str| crate::c_header::stated(header, m);
        use key_at as k;
        let key = [("ifindex", k::IFINDEX), ("lo_port", k::LO_PORT)];
        let key = [
            &key[..],
            &[("hi_port", k::HI_PORT), ("lo", k::LO), ("hi", k::HI)],
        ]
        .concat();
        assert_eq!(stated("TCPX_KEY_AT"), key);
        use arm_at as a;
        let arm = [
            ("token", a::TOKEN),
            ("armed_at", a::ARMED_AT),
            ("generation", a::GENERATION),
            ("client_lo", a::CLIENT_LO),
            ("mirror", a::MIRROR),
        ];
        assert_eq!(stated("TCPX_ARM_AT"), arm);
        assert!(header.contains("sizeof(struct tcpx_flow_key) == 40"));
        assert!(header.contains("sizeof(struct tcpx_arm) == 88"));
        assert_eq!(ARM_LEN, a::MIRROR + 64);
    }
}

/// The counting in the kernel (bpf/count.h, through tcpx_count_check in
/// bpf/steady_check.bpf.c, which counts as tcpx_xdp_count does with the
/// time the test gives) with this module's order and arming and the
/// pipeline's worker above it, held to the same kernel code handing up
/// every segment.
#[cfg(test)]
mod in_the_kernel {
    use super::*;
    use crate::capture::bpf_ring::BpfRing;
    use crate::capture::xdp::next_of;
    use crate::capture::{Next, PacketSource, PcapFile};
    use crate::decode::LinkType;
    use crate::metrics::{Exporter, Shard, ShardConfig};
    use crate::pipeline::Worker;
    use aya::maps::{Array, Map};
    use aya::EbpfLoader;
    use std::os::fd::AsFd;
    use std::sync::{Arc, Mutex};

    static CHECK: &[u8] =
        aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/steady_check.bpf.o"));
    const RING_BYTES: u32 = 4 << 20;

    /// One loaded copy of the check object (its own maps) and a worker
    /// taking what its ring hands up.
    struct Counter {
        ebpf: Ebpf,
        ring: BpfRing,
        _events: MapData,
        count: KernelCount,
        /// Whether to arm connections when the kernel asks.
        arming: bool,
        /// Frames run before the ring is drained: past 1, arms are written
        /// with records of later frames already in the ring, which the
        /// kernel must not take.
        drain_every: usize,
        fed: usize,
        worker: Worker,
        shard: Shard,
    }

    impl Counter {
        fn load(
            arming: bool,
            drain_every: usize,
            name: &str,
            exporter: &Exporter,
            config: &ShardConfig,
        ) -> Counter {
            let mut ebpf = EbpfLoader::new()
                .map_max_entries("tcpx_events", RING_BYTES)
                .load(CHECK)
                .expect("the check object loads (as root)");
            for program in ["tcpx_count_check", FLUSH_PROGRAM] {
                let p: &mut Xdp = ebpf.program_mut(program).unwrap().try_into().unwrap();
                p.load().expect("the verifier accepts the program");
            }
            let events = match ebpf.take_map("tcpx_events") {
                Some(Map::RingBuf(data)) => data,
                _ => panic!("no ring buffer"),
            };
            let ring = BpfRing::map(events.fd().as_fd(), RING_BYTES as usize).unwrap();
            let count = KernelCount::new(&mut ebpf).unwrap();
            let idle = 300_000_000_000;
            Counter {
                ebpf,
                ring,
                _events: events,
                count,
                arming,
                drain_every,
                fed: 0,
                worker: Worker::new(LinkType::KernelSummary, 1000, idle),
                shard: Shard::new(name.into(), exporter.interface_id(name), config.clone()),
            }
        }

        /// Runs the counting program on `frame` at time `ts`, then hands on
        /// what it handed up.
        fn feed(&mut self, frame: &[u8], ts: u64) {
            let mut now: Array<&mut MapData, u64> = self
                .ebpf
                .map_mut("tcpx_count_now")
                .unwrap()
                .try_into()
                .unwrap();
            now.set(0, ts, 0).unwrap();
            let program: &mut Xdp = self
                .ebpf
                .program_mut("tcpx_count_check")
                .unwrap()
                .try_into()
                .unwrap();
            let opts = TestRunOptions {
                data_in: Some(frame),
                ..TestRunOptions::default()
            };
            assert_eq!(program.test_run(opts).unwrap().return_value, 2, "XDP_PASS");
            self.fed += 1;
            if self.fed.is_multiple_of(self.drain_every) {
                self.drain();
            }
        }

        /// Hands every record and run in the ring to the worker, in order,
        /// arming as the worker says when `arming`.
        fn drain(&mut self) {
            let mut empty = 0;
            while empty < 2 {
                if let Some(record) = self.count.ready() {
                    self.hand_on(&record);
                    continue;
                }
                if !self.ring.has_record() {
                    // Nothing is written after the test run: whatever is
                    // held is given up on.
                    self.count.on_empty(u64::MAX);
                    empty += 1;
                    continue;
                }
                empty = 0;
                let held = match self.ring.next() {
                    Some(data) => self.count.order(data, 0) == Turn::Held,
                    None => panic!("a record not committed after the test run"),
                };
                if !held {
                    let data = self.ring.current().to_vec();
                    self.hand_on(&data);
                }
            }
        }

        fn hand_on(&mut self, data: &[u8]) {
            match next_of(data, 0) {
                Next::Run(run) => self.worker.apply_run(&mut self.shard, &run),
                Next::Frame(frame) => {
                    self.worker.process(&mut self.shard, &frame);
                    if self.arming && self.count.wants_arm() {
                        if let Some(arm) = self.worker.arm_last() {
                            self.count.arm(&arm);
                        }
                    }
                }
                _ => panic!("a record is a run or a segment"),
            }
        }

        fn flush(&mut self, now: u64) {
            self.count.flush(&mut self.ebpf, now);
            self.drain();
        }

        /// Connections the kernel keeps.
        fn kept(&self) -> usize {
            let flows: BpfHashMap<&MapData, Key, [u8; 224]> =
                self.ebpf.map("tcpx_flows").unwrap().try_into().unwrap();
            flows.keys().count()
        }
    }

    #[test]
    fn segments_counted_in_the_kernel_give_the_metrics_of_every_segment_handed_up() {
        if crate::test_support::skip_bpf_tests() {
            return;
        }
        let captures = [
            "bulk_loss",
            "router_loss",
            "zero_window",
            "midstream",
            "refused_aborted",
            "ipv6",
            "vlan",
            "short_conns",
        ];
        let mut counted_all = 0;
        for name in captures {
            let path = format!("{}/testdata/pcaps/{name}.pcap", env!("CARGO_MANIFEST_DIR"));
            // With the connection table: its records hold each flow's
            // times, which runs move.
            let config = ShardConfig::with_connection_table(10_000);
            // Every segment handed up; counted, drained after each frame;
            // counted, drained after every third.
            let kinds = [(false, 1), (true, 1), (true, 3)];
            let exporters = kinds.map(|_| Exporter::new("test", &config));
            let mut counters: Vec<Counter> = kinds
                .iter()
                .zip(&exporters)
                .map(|(&(arming, every), x)| Counter::load(arming, every, name, x, &config))
                .collect();
            let mut source = PcapFile::open(path.as_ref(), "").expect("a test capture");
            assert_eq!(source.link_type(), LinkType::Ethernet, "{name}");
            let (mut frames, mut last_ts) = (0, 0);
            loop {
                let frame = match source.next().expect("the capture reads") {
                    Next::Frame(frame) => frame,
                    Next::End => break,
                    _ => continue,
                };
                // The captures keep 128 bytes of each frame: the program
                // sees the frame at its length on the wire.
                let mut bytes = frame.data.to_vec();
                bytes.resize((frame.wire_len as usize).max(bytes.len()), 0);
                frames += 1;
                for c in &mut counters {
                    c.feed(&bytes, frame.ts);
                    // Now and then, as the backend does every 100 ms.
                    if frames % 64 == 0 {
                        c.flush(frame.ts);
                    }
                }
                last_ts = frame.ts;
            }
            let mut renders = Vec::new();
            for (mut c, x) in counters.into_iter().zip(&exporters) {
                c.flush(last_ts);
                assert!(c.kept() > 0, "{name}");
                // Long after, the kernel forgets every connection (nothing
                // waits: the flush before handed up every run).
                c.flush(last_ts + FORGET_AFTER + 1);
                assert_eq!(c.kept(), 0, "{name}: connections kept after idle");
                let stats = c.count.stats();
                let trouble = (
                    stats.gaps,
                    stats.arms_refused,
                    stats.arm_mismatches,
                    stats.flush_errors,
                );
                assert_eq!(trouble, (0, 0, 0, 0), "{name}: {stats:?}");
                assert_eq!(c.shard.capture.runs_refused, 0, "{name}");
                let kernel = c.shard.capture.kernel_counted;
                if !c.arming {
                    assert_eq!(kernel, 0, "{name}: counted unarmed");
                }
                if c.arming && c.drain_every == 1 {
                    counted_all += kernel;
                }
                eprintln!(
                    "{name}, drained every {} frames: {kernel} of {frames} segments counted",
                    c.drain_every
                );
                c.worker.settle(&mut c.shard);
                let records = format!("{:?}", c.shard.conns.as_ref().map(|c| c.records()));
                c.worker.release(&mut c.shard);
                x.add_shard(Arc::new(Mutex::new(c.shard)));
                let render: Vec<String> = x
                    .render()
                    .lines()
                    .filter(|l| !l.starts_with("tcp_exporter_kernel_counted_segments_total{"))
                    .map(String::from)
                    .collect();
                renders.push((records, render.join("\n")));
            }
            let (want_records, want) = &renders[0];
            assert!(want.contains("tcp_packets_total{"), "{want}");
            for (i, (records, got)) in renders.iter().enumerate().skip(1) {
                assert_eq!(records, want_records, "{name}: records, counter {i}");
                assert_eq!(got, want, "{name}: metrics, counter {i}");
            }
        }
        assert!(
            counted_all > 1000,
            "{counted_all} segments counted in the kernel"
        );
    }
}
