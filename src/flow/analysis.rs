//! Wireshark's TCP sequence analysis, per connection and direction: which
//! segments are retransmissions (plain, fast, spurious), out of order, after
//! a gap, duplicate ACKs, keep-alives, zero windows, probes, or fill the
//! peer's window. A pure function of (state, segment, capture time): no
//! allocation, no I/O, no clock.
//!
//! The rules and their order follow tshark 4.0 (see docs/analysis.md, which
//! also lists where this differs on purpose). Numbers are compared as
//! tshark compares them: raw 32-bit sequence numbers in wrapping order, raw
//! 16-bit windows except in the window-full check, and 0 read as "unknown"
//! for the next expected sequence number.

use crate::decode::Segment;

use super::key::Side;
use super::rtt::RttSampler;
use super::seq::SeqNum;
use super::Nanos;

mod steady;

pub use steady::kernel as steady_layout;
pub use steady::{Admission, Mirror, SteadyRun};

/// What the analysis says of one segment. At most one of the four
/// retransmission-family flags (RETRANSMISSION, FAST_RETRANSMISSION,
/// SPURIOUS_RETRANSMISSION, OUT_OF_ORDER) is set.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Flags(pub u16);

impl Flags {
    pub const RETRANSMISSION: u16 = 1 << 0;
    pub const FAST_RETRANSMISSION: u16 = 1 << 1;
    pub const SPURIOUS_RETRANSMISSION: u16 = 1 << 2;
    pub const OUT_OF_ORDER: u16 = 1 << 3;
    pub const LOST_SEGMENT: u16 = 1 << 4;
    pub const ACKED_UNSEEN: u16 = 1 << 5;
    pub const DUPLICATE_ACK: u16 = 1 << 6;
    pub const ZERO_WINDOW: u16 = 1 << 7;
    pub const ZERO_WINDOW_PROBE: u16 = 1 << 8;
    pub const ZERO_WINDOW_PROBE_ACK: u16 = 1 << 9;
    pub const WINDOW_FULL: u16 = 1 << 10;
    pub const WINDOW_UPDATE: u16 = 1 << 11;
    pub const KEEP_ALIVE: u16 = 1 << 12;
    pub const KEEP_ALIVE_ACK: u16 = 1 << 13;

    pub fn has(self, flag: u16) -> bool {
        self.0 & flag != 0
    }

    fn set(&mut self, flag: u16) {
        self.0 |= flag;
    }

    /// Whether the segment repeats data, by any of the three kinds.
    pub fn is_retransmission(self) -> bool {
        self.has(Self::RETRANSMISSION | Self::FAST_RETRANSMISSION | Self::SPURIOUS_RETRANSMISSION)
    }
}

/// A window-scale shift as the analysis knows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scale {
    /// No handshake seen, no option seen.
    Unknown,
    /// The handshake shows scaling is off.
    Off,
    Shift(u8),
}

/// tshark's "no window seen yet": no real 16-bit window equals it.
const NO_WINDOW: u32 = u32::MAX;
/// A duplicate-ACK count that tshark sets after an ACK of unseen data; it
/// passes the "two or more duplicate ACKs" test of a fast retransmission.
const DUPACK_SENTINEL: u32 = u32::MAX;
/// Fast retransmissions follow the peer's last segment by less than this.
const FAST_RETRANSMISSION_WINDOW: Nanos = 20_000_000;
/// Out-of-order threshold while the handshake RTT is unknown.
const DEFAULT_OOO_THRESHOLD: Nanos = 3_000_000;

/// What one direction of a connection has shown so far.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DirState {
    /// The sequence number before this side's first byte (its ISN), once
    /// known (`has_base`): a SYN without ACK that disagrees opens a new
    /// connection.
    base_seq: SeqNum,
    has_base: bool,
    /// The raw window of this side's last segment.
    window: u32,
    scale: Scale,
    /// This side's last segment was its SYN or SYN/ACK (whose window is
    /// never scaled).
    first_ack_pending: bool,
    /// Next expected sequence number; 0 means unknown, as in tshark.
    next_seq: SeqNum,
    next_seq_time: Nanos,
    /// Highest sequence number reached without a gap; 0 means unknown.
    max_seq_to_be_acked: SeqNum,
    /// The ACK field of this side's last segment, ACK flag or not.
    last_ack: SeqNum,
    last_ack_time: Nanos,
    dupack_count: u32,
    /// This side's last segment was a keep-alive / a zero-window probe.
    last_was_keepalive: bool,
    last_was_zwp: bool,
    rtt: RttSampler,
}

impl Default for DirState {
    fn default() -> Self {
        DirState {
            base_seq: SeqNum(0),
            has_base: false,
            window: NO_WINDOW,
            scale: Scale::Unknown,
            first_ack_pending: false,
            next_seq: SeqNum(0),
            next_seq_time: 0,
            max_seq_to_be_acked: SeqNum(0),
            last_ack: SeqNum(0),
            last_ack_time: 0,
            dupack_count: 0,
            last_was_keepalive: false,
            last_was_zwp: false,
            rtt: RttSampler::default(),
        }
    }
}

/// The analysis of one segment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Verdict {
    pub flags: Flags,
    /// A data RTT sample completed by this segment's ACK: the leg (the side
    /// that answered) and the time.
    pub rtt: Option<(Side, Nanos)>,
}

/// Sequence-analysis state of one connection, both directions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Analyzer {
    dir: [DirState; 2],
    /// Time of the most recent SYN without ACK; 0 for none (as tshark).
    last_syn: Nanos,
    /// Handshake RTT (tshark's iRTT): most recent SYN to the first non-SYN
    /// ACK after it. Negative when timestamps run backwards.
    /// 0 until measured (as tshark: an iRTT of exactly 0 is "not yet").
    initial_rtt: i64,
}

impl Analyzer {
    /// Whether `seg` from `side` is a SYN that opens a new connection on
    /// these addresses and ports: its ISN differs from the one this side
    /// used (tshark starts a new tcp.stream then).
    pub fn is_new_connection(&self, seg: &Segment, side: Side) -> bool {
        let dir = &self.dir[side.index()];
        seg.flags.syn() && !seg.flags.ack() && dir.has_base && dir.base_seq != SeqNum(seg.seq)
    }

    #[inline]
    pub fn on_segment(&mut self, seg: &Segment, side: Side, now: Nanos) -> Verdict {
        match self.on_steady_segment(seg, side, now) {
            Some(verdict) => verdict,
            None => self.on_any_segment(seg, side, now),
        }
    }

    /// The segments of a connection in its steady state, which most are:
    /// an ACK without SYN, FIN or RST, at the next expected sequence
    /// number, with a window that is not zero, that neither fills the
    /// peer's window, nor acknowledges data unseen or repeats data already
    /// acknowledged, and (without data) moves the ACK on, so that it cannot
    /// be a duplicate ACK, a window update or an answer to a probe. None of
    /// the analysis's flags can be set on such a segment; it only moves
    /// the direction on. Any other segment is `None`, for
    /// [`on_any_segment`](Self::on_any_segment), which would do the same
    /// to this one: the two are checked against each other on random
    /// conversations (`the_steady_path_agrees_with_the_full_analysis`).
    #[inline(always)]
    fn on_steady_segment(&mut self, seg: &Segment, side: Side, now: Nanos) -> Option<Verdict> {
        let (fwd, rev) = pair(&mut self.dir, side);
        if !is_steady(seg, fwd, rev) {
            return None;
        }
        let seq = SeqNum(seg.seq);
        let ack = SeqNum(seg.ack);
        let len = seg.payload_len;
        let end = seq.plus(len);
        if len > 0 {
            fwd.rtt.on_new_data(end, now);
            fwd.next_seq = end;
            fwd.next_seq_time = now;
        }
        if seq == fwd.max_seq_to_be_acked || fwd.max_seq_to_be_acked.0 == 0 {
            fwd.max_seq_to_be_acked = fwd.next_seq;
        }
        if ack != fwd.last_ack {
            fwd.dupack_count = 0;
        }
        fwd.window = seg.window as u32;
        fwd.last_ack = ack;
        fwd.last_ack_time = now;
        fwd.last_was_keepalive = false;
        fwd.last_was_zwp = false;
        fwd.first_ack_pending = false;
        let rtt = rev.rtt.on_ack(ack, now).map(|t| (side, t));
        if self.last_syn != 0 && self.initial_rtt == 0 {
            self.initial_rtt = now as i64 - self.last_syn as i64;
        }
        Some(Verdict {
            flags: Flags::default(),
            rtt,
        })
    }

    /// Every rule, in tshark's order, for any segment. Kept out of line,
    /// so that the steady path is small enough to be inlined where it is
    /// called.
    #[inline(never)]
    fn on_any_segment(&mut self, seg: &Segment, side: Side, now: Nanos) -> Verdict {
        let (fwd, rev) = pair(&mut self.dir, side);
        let f = seg.flags;
        let seq = SeqNum(seg.seq);
        let ack = SeqNum(seg.ack);
        let win = seg.window as u32;
        let len = seg.payload_len;
        let sfr = f.syn() || f.fin() || f.rst();
        let mut flags = Flags::default();

        // A SYN with the ISN already known: a retransmitted SYN.
        if f.syn() && !f.ack() && fwd.has_base && fwd.base_seq == seq {
            fwd.next_seq = fwd.max_seq_to_be_acked;
        }
        if f.syn() && f.ack() && fwd.has_base && fwd.base_seq != seq {
            fwd.base_seq = seq;
        }
        if !fwd.has_base {
            fwd.base_seq = if f.syn() { seq } else { seq.plus(u32::MAX) };
            fwd.has_base = true;
        }
        if !rev.has_base && f.ack() {
            rev.base_seq = ack.plus(u32::MAX);
            rev.has_base = true;
        }

        let same_position = len == 0 && seq == fwd.next_seq && ack == fwd.last_ack && !sfr;
        if len == 1 && seq == fwd.next_seq && rev.window == 0 {
            flags.set(Flags::ZERO_WINDOW_PROBE);
        } else {
            if win == 0 && !sfr {
                flags.set(Flags::ZERO_WINDOW);
            }
            if fwd.next_seq.0 != 0 && seq > fwd.next_seq && !f.rst() {
                flags.set(Flags::LOST_SEGMENT);
            }
            if len <= 1 && seq == fwd.next_seq.plus(u32::MAX) && !sfr {
                flags.set(Flags::KEEP_ALIVE);
            }
            if same_position && win != 0 && win != fwd.window {
                flags.set(Flags::WINDOW_UPDATE);
            }
            if !sfr && fills_window(seg, rev) {
                flags.set(Flags::WINDOW_FULL);
            }
            if same_position && win != 0 && win == fwd.window && rev.last_was_keepalive {
                flags.set(Flags::KEEP_ALIVE_ACK);
            } else if same_position && win == 0 && fwd.window == 0 && rev.last_was_zwp {
                flags.set(Flags::ZERO_WINDOW_PROBE_ACK);
            } else if same_position && win != 0 && win == fwd.window {
                fwd.dupack_count = if fwd.dupack_count == DUPACK_SENTINEL {
                    1
                } else {
                    fwd.dupack_count.wrapping_add(1)
                };
                flags.set(Flags::DUPLICATE_ACK);
            }
        }
        if ack != fwd.last_ack {
            fwd.dupack_count = 0;
        }

        // An ACK beyond what the peer was seen to send.
        if f.ack() && rev.max_seq_to_be_acked.0 != 0 && ack > rev.max_seq_to_be_acked {
            if rev.max_seq_to_be_acked < rev.next_seq {
                rev.max_seq_to_be_acked = rev.next_seq;
                flags.set(Flags::ACKED_UNSEEN);
            } else {
                if rev.dupack_count == 0 {
                    flags.set(Flags::ACKED_UNSEEN);
                }
                rev.dupack_count = DUPACK_SENTINEL;
            }
        }

        let occupies = len > 0 || f.syn() || f.fin();
        if occupies && !flags.has(Flags::KEEP_ALIVE) {
            let syn_fin = (f.syn() || f.fin()) as u32;
            let mut not_advanced = fwd.next_seq.0 != 0 && seq < fwd.next_seq;
            if len > 1 && seq == fwd.next_seq.plus(u32::MAX) {
                not_advanced = false;
            }
            let since = |t: Nanos| now.checked_sub(t).unwrap_or(Nanos::MAX);
            let ooo_threshold = match self.initial_rtt {
                0 => DEFAULT_OOO_THRESHOLD,
                rtt if rtt < 0 => Nanos::MAX,
                rtt => rtt as Nanos,
            };
            if len > 0 && rev.last_ack.0 != 0 && seq.plus(len) <= rev.last_ack {
                flags.set(Flags::SPURIOUS_RETRANSMISSION);
            } else if not_advanced
                && rev.dupack_count >= 2
                && rev.last_ack == seq
                && since(rev.last_ack_time) < FAST_RETRANSMISSION_WINDOW
            {
                flags.set(Flags::FAST_RETRANSMISSION);
            } else if not_advanced
                && since(fwd.next_seq_time) < ooo_threshold
                && fwd.next_seq != seq.plus(len + syn_fin)
            {
                flags.set(Flags::OUT_OF_ORDER);
            } else if not_advanced {
                flags.set(Flags::RETRANSMISSION);
            }
        }

        // Where this direction stands now.
        let end = seq.plus(
            len + if occupies {
                (f.syn() || f.fin()) as u32
            } else {
                0
            },
        );
        let probe = flags.has(Flags::ZERO_WINDOW_PROBE);
        if (end > fwd.next_seq || fwd.next_seq.0 == 0) && !probe {
            if len > 0 && !flags.is_retransmission() {
                fwd.rtt.on_new_data(end, now);
            }
            fwd.next_seq = end;
            fwd.next_seq_time = now;
        }
        if flags.is_retransmission() || flags.has(Flags::OUT_OF_ORDER) {
            fwd.rtt.on_retransmission();
        }
        if (seq == fwd.max_seq_to_be_acked || fwd.max_seq_to_be_acked.0 == 0) && !probe {
            fwd.max_seq_to_be_acked = fwd.next_seq;
        }
        fwd.window = win;
        fwd.last_ack = ack;
        fwd.last_ack_time = now;
        fwd.last_was_keepalive = flags.has(Flags::KEEP_ALIVE);
        fwd.last_was_zwp = probe;

        // The peer's data this segment acknowledges, for the data RTT.
        let rtt = if f.ack() {
            rev.rtt.on_ack(ack, now).map(|t| (side, t))
        } else {
            None
        };

        // After the analysis, as tshark does: handshake bookkeeping.
        if f.syn() {
            if !f.ack() {
                self.last_syn = now;
            }
            fwd.first_ack_pending = true;
        } else if f.ack() {
            // tshark reads an iRTT of exactly 0 as "not yet measured".
            if self.last_syn != 0 && self.initial_rtt == 0 {
                self.initial_rtt = now as i64 - self.last_syn as i64;
            }
            fwd.first_ack_pending = false;
        }
        if let Some(shift) = seg.options.window_scale {
            fwd.scale = Scale::Shift(shift.min(14));
        }
        // A SYN whose options the snap length cut may have offered a shift
        // nobody saw: the scale stays unknown (tshark's "-1 (unknown)").
        // A SYN/ACK's offer (RFC 7323: sent only in answer to one) implies
        // the SYN's, but a SYN/ACK whose option was cut leaves both unknown.
        let scale_unseen = seg.options.cut && seg.options.window_scale.is_none();
        if f.syn() && scale_unseen {
            if f.ack() {
                rev.scale = Scale::Unknown;
            }
        } else if f.syn() {
            if fwd.scale == Scale::Unknown {
                fwd.scale = Scale::Off;
                rev.scale = Scale::Off;
            } else if f.ack() && rev.scale == Scale::Off {
                fwd.scale = Scale::Off;
            }
        }
        Verdict { flags, rtt }
    }
}

/// The sequence number just past the window `dir` last offered: its ACK
/// plus its window, scaled unless that was the handshake's window.
fn window_edge(dir: &impl SteadyView) -> SeqNum {
    let shift = match (dir.first_ack_pending(), dir.scale()) {
        (false, Scale::Shift(s)) => s as u32,
        _ => 0,
    };
    dir.last_ack().plus(dir.window().wrapping_shl(shift))
}

/// What the steady test reads of a direction: the analysis's own state, or
/// a mirror of it (`steady::MirrorDir`), so that the test is written once
/// for both.
trait SteadyView {
    fn has_base(&self) -> bool;
    fn next_seq(&self) -> SeqNum;
    fn max_seq_to_be_acked(&self) -> SeqNum;
    fn last_ack(&self) -> SeqNum;
    fn window(&self) -> u32;
    fn scale(&self) -> Scale;
    fn first_ack_pending(&self) -> bool;
}

impl SteadyView for DirState {
    fn has_base(&self) -> bool {
        self.has_base
    }
    fn next_seq(&self) -> SeqNum {
        self.next_seq
    }
    fn max_seq_to_be_acked(&self) -> SeqNum {
        self.max_seq_to_be_acked
    }
    fn last_ack(&self) -> SeqNum {
        self.last_ack
    }
    fn window(&self) -> u32 {
        self.window
    }
    fn scale(&self) -> Scale {
        self.scale
    }
    fn first_ack_pending(&self) -> bool {
        self.first_ack_pending
    }
}

/// Whether `seg` carries data up to the edge of the window `rev` offered
/// (tshark's window full), once the scale is known.
#[inline(always)]
fn fills_window(seg: &Segment, rev: &impl SteadyView) -> bool {
    let end = SeqNum(seg.seq).plus(seg.payload_len);
    seg.payload_len > 0 && rev.scale() != Scale::Unknown && end == window_edge(rev)
}

/// Whether `seg`, sent by `fwd` to `rev`, takes the steady path (see
/// `Analyzer::on_steady_segment`).
#[inline(always)]
fn is_steady(seg: &Segment, fwd: &impl SteadyView, rev: &impl SteadyView) -> bool {
    let f = seg.flags;
    if !f.ack() || f.syn() || f.fin() || f.rst() || seg.window == 0 {
        return false;
    }
    let seq = SeqNum(seg.seq);
    let ack = SeqNum(seg.ack);
    let len = seg.payload_len;
    let end = seq.plus(len);
    fwd.next_seq().0 != 0
        && seq == fwd.next_seq()
        && fwd.has_base()
        && rev.has_base()
        && seg.options.window_scale.is_none()
        // Without data: not the same position (duplicate ACK, window
        // update, answer to a keep-alive or a probe).
        && (len > 0 || ack != fwd.last_ack())
        // With data: it moves the direction on (a length of 2^31 or
        // more reads as a step back in sequence order).
        && (len == 0 || end > fwd.next_seq())
        // One byte into a zero window is a probe.
        && (len != 1 || rev.window() != 0)
        // Data already acknowledged is a spurious retransmission.
        && (len == 0 || rev.last_ack().0 == 0 || end > rev.last_ack())
        // An ACK beyond what the peer was seen to send.
        && (rev.max_seq_to_be_acked().0 == 0 || ack <= rev.max_seq_to_be_acked())
        // Data up to the edge of the peer's window fills it.
        && !fills_window(seg, rev)
}

/// The sender's and the peer's state, both mutable.
fn pair(dir: &mut [DirState; 2], side: Side) -> (&mut DirState, &mut DirState) {
    let [client, server] = dir;
    match side {
        Side::Client => (client, server),
        Side::Server => (server, client),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::{parse_options, Addr, TcpFlags, TcpOptions};

    const S: u8 = TcpFlags::SYN;
    const A: u8 = TcpFlags::ACK;
    const F: u8 = TcpFlags::FIN;
    const MS: Nanos = 1_000_000;
    const US: Nanos = 1_000;

    /// Feeds one connection segment by segment, on its own clock.
    struct Conv {
        a: Analyzer,
        now: Nanos,
    }

    struct Seg {
        flags: u8,
        seq: u32,
        ack: u32,
        win: u16,
        len: u32,
        wscale: Option<u8>,
        options: &'static [u8],
        /// The snap length cut the options.
        cut: bool,
    }

    fn seg(flags: u8, seq: u32, ack: u32, win: u16, len: u32) -> Seg {
        Seg {
            flags,
            seq,
            ack,
            win,
            len,
            wscale: None,
            options: &[],
            cut: false,
        }
    }

    impl Seg {
        /// Raw option bytes for the segment (parsed as the decoder would).
        fn options(mut self, raw: &'static [u8]) -> Seg {
            self.options = raw;
            self
        }
    }

    impl Conv {
        fn new() -> Conv {
            Conv {
                a: Analyzer::default(),
                now: 1_700_000_000 * 1_000_000_000,
            }
        }

        fn send(&mut self, side: Side, after: Nanos, s: Seg) -> Verdict {
            self.now += after;
            let mut options = parse_options(s.options);
            if s.wscale.is_some() {
                options.window_scale = s.wscale;
            }
            options.cut = s.cut;
            let segment = Segment {
                src: Addr::v4([10, 0, 0, 1]),
                dst: Addr::v4([10, 0, 0, 2]),
                ip_len: 40 + s.len,
                dont_fragment: true,
                src_port: 40000,
                dst_port: 80,
                seq: s.seq,
                ack: s.ack,
                flags: TcpFlags(s.flags),
                window: s.win,
                payload_len: s.len,
                options,
                raw_options: s.options,
                tunnels: Default::default(),
            };
            self.a.on_segment(&segment, side, self.now)
        }

        fn c(&mut self, after: Nanos, s: Seg) -> Flags {
            self.send(Side::Client, after, s).flags
        }

        fn s(&mut self, after: Nanos, s: Seg) -> Flags {
            self.send(Side::Server, after, s).flags
        }

        /// SYN (ISN 1000) / SYN-ACK (ISN 5000) / ACK with a 100 µs
        /// handshake RTT; window scale as given.
        fn handshake(ws_client: Option<u8>, ws_server: Option<u8>) -> Conv {
            let mut t = Conv::new();
            let mut syn = seg(S, 1000, 0, 64240, 0);
            syn.wscale = ws_client;
            let mut synack = seg(S | A, 5000, 1001, 65160, 0);
            synack.wscale = ws_server;
            assert_eq!(t.c(0, syn), Flags::default());
            assert_eq!(t.s(50 * US, synack), Flags::default());
            assert_eq!(t.c(50 * US, seg(A, 1001, 5001, 502, 0)), Flags::default());
            t
        }
    }

    fn only(flag: u16) -> Flags {
        Flags(flag)
    }

    #[test]
    fn in_order_data_and_acks_carry_no_flags() {
        let mut t = Conv::handshake(Some(7), Some(7));
        assert_eq!(t.c(MS, seg(A, 1001, 5001, 502, 100)), Flags::default());
        assert_eq!(t.c(MS, seg(A, 1101, 5001, 502, 100)), Flags::default());
        assert_eq!(t.s(MS, seg(A, 5001, 1201, 509, 0)), Flags::default());
    }

    #[test]
    fn repeated_data_later_than_the_handshake_rtt_is_a_retransmission() {
        let mut t = Conv::handshake(None, None);
        t.c(MS, seg(A, 1001, 5001, 502, 100));
        t.c(MS, seg(A, 1101, 5001, 502, 100));
        let f = t.c(200 * MS, seg(A, 1001, 5001, 502, 100));
        assert_eq!(f, only(Flags::RETRANSMISSION));
    }

    #[test]
    fn retransmission_after_three_duplicate_acks_is_fast() {
        let mut t = Conv::handshake(None, None);
        for i in 0..4 {
            t.c(100 * US, seg(A, 1001 + 100 * i, 5001, 502, 100));
        }
        // 1101..1201 was lost after the capture point: the server ACKs 1101
        // once, then three duplicates.
        assert_eq!(t.s(100 * US, seg(A, 5001, 1101, 500, 0)), Flags::default());
        for _ in 0..3 {
            assert_eq!(
                t.s(100 * US, seg(A, 5001, 1101, 500, 0)),
                only(Flags::DUPLICATE_ACK)
            );
        }
        let f = t.c(5 * MS, seg(A, 1101, 5001, 502, 100));
        assert_eq!(f, only(Flags::FAST_RETRANSMISSION));
    }

    #[test]
    fn fast_retransmission_needs_the_last_dup_ack_under_20_ms_ago() {
        let mut t = Conv::handshake(None, None);
        for i in 0..3 {
            t.c(100 * US, seg(A, 1001 + 100 * i, 5001, 502, 100));
        }
        for _ in 0..3 {
            t.s(100 * US, seg(A, 5001, 1101, 500, 0));
        }
        let f = t.c(20 * MS, seg(A, 1101, 5001, 502, 100));
        assert_eq!(f, only(Flags::RETRANSMISSION));
    }

    #[test]
    fn data_already_acknowledged_is_spurious() {
        let mut t = Conv::handshake(None, None);
        t.c(MS, seg(A, 1001, 5001, 502, 100));
        t.s(MS, seg(A, 5001, 1101, 500, 0));
        let f = t.c(300 * MS, seg(A, 1001, 5001, 502, 100));
        assert_eq!(f, only(Flags::SPURIOUS_RETRANSMISSION));
    }

    #[test]
    fn earlier_data_soon_after_later_data_is_out_of_order() {
        let mut t = Conv::handshake(None, None);
        t.c(MS, seg(A, 1001, 5001, 502, 100));
        // 1101..1201 overtaken by 1201..1301, then arrives 10 µs later,
        // within the 100 µs handshake RTT.
        assert_eq!(
            t.c(MS, seg(A, 1201, 5001, 502, 100)),
            only(Flags::LOST_SEGMENT)
        );
        let f = t.c(10 * US, seg(A, 1101, 5001, 502, 100));
        assert_eq!(f, only(Flags::OUT_OF_ORDER));
        // The same late arrival after the handshake RTT is a retransmission.
        let mut t = Conv::handshake(None, None);
        t.c(MS, seg(A, 1001, 5001, 502, 100));
        t.c(MS, seg(A, 1201, 5001, 502, 100));
        let f = t.c(150 * US, seg(A, 1101, 5001, 502, 100));
        assert_eq!(f, only(Flags::RETRANSMISSION));
    }

    #[test]
    fn without_a_handshake_the_out_of_order_threshold_is_3_ms() {
        let mut t = Conv::new();
        t.c(0, seg(A, 1001, 5001, 502, 100));
        t.c(MS, seg(A, 1201, 5001, 502, 100));
        assert_eq!(
            t.c(2_999 * US, seg(A, 1101, 5001, 502, 100)),
            only(Flags::OUT_OF_ORDER)
        );
        let mut t = Conv::new();
        t.c(0, seg(A, 1001, 5001, 502, 100));
        t.c(MS, seg(A, 1201, 5001, 502, 100));
        assert_eq!(
            t.c(3 * MS, seg(A, 1101, 5001, 502, 100)),
            only(Flags::RETRANSMISSION)
        );
    }

    #[test]
    fn a_gap_is_a_lost_segment() {
        let mut t = Conv::handshake(None, None);
        t.c(MS, seg(A, 1001, 5001, 502, 100));
        assert_eq!(
            t.c(MS, seg(A, 1501, 5001, 502, 100)),
            only(Flags::LOST_SEGMENT)
        );
        assert_eq!(t.c(MS, seg(A, 1601, 5001, 502, 100)), Flags::default());
    }

    #[test]
    fn keepalive_is_a_byte_before_next_seq_and_never_a_retransmission() {
        let mut t = Conv::handshake(None, None);
        t.c(MS, seg(A, 1001, 5001, 502, 100));
        t.s(MS, seg(A, 5001, 1101, 500, 0));
        // Linux sends its keep-alive with no data, one below next seq; some
        // stacks send one garbage byte there.
        assert_eq!(
            t.c(2 * MS, seg(A, 1100, 5001, 502, 0)),
            only(Flags::KEEP_ALIVE)
        );
        assert_eq!(
            t.s(MS, seg(A, 5001, 1101, 500, 0)),
            only(Flags::KEEP_ALIVE_ACK)
        );
        assert_eq!(
            t.c(2 * MS, seg(A, 1100, 5001, 502, 1)),
            only(Flags::KEEP_ALIVE)
        );
    }

    #[test]
    fn zero_window_then_a_probe_at_next_seq() {
        let mut t = Conv::handshake(None, None);
        t.c(MS, seg(A, 1001, 5001, 502, 100));
        assert_eq!(t.s(MS, seg(A, 5001, 1101, 0, 0)), only(Flags::ZERO_WINDOW));
        assert_eq!(
            t.c(200 * MS, seg(A, 1101, 5001, 502, 1)),
            only(Flags::ZERO_WINDOW_PROBE)
        );
        let ack = t.s(MS, seg(A, 5001, 1101, 0, 0));
        assert_eq!(
            ack,
            Flags(Flags::ZERO_WINDOW | Flags::ZERO_WINDOW_PROBE_ACK)
        );
        // A probe does not move next seq: the next one is a probe too.
        assert_eq!(
            t.c(400 * MS, seg(A, 1101, 5001, 502, 1)),
            only(Flags::ZERO_WINDOW_PROBE)
        );
    }

    #[test]
    fn linux_zero_window_probe_is_a_keepalive_to_wireshark() {
        // Linux probes a zero window with an empty segment one byte below
        // next seq; by Wireshark's rules that is a keep-alive.
        let mut t = Conv::handshake(None, None);
        t.c(MS, seg(A, 1001, 5001, 502, 100));
        t.s(MS, seg(A, 5001, 1101, 0, 0));
        assert_eq!(
            t.c(200 * MS, seg(A, 1100, 5001, 502, 0)),
            only(Flags::KEEP_ALIVE)
        );
    }

    #[test]
    fn window_full_uses_the_negotiated_scale() {
        // The server scales by 2^7: a raw window of 2 is 256 bytes.
        let mut t = Conv::handshake(Some(7), Some(7));
        t.s(MS, seg(A, 5001, 1001, 2, 0));
        assert_eq!(t.c(MS, seg(A, 1001, 5001, 502, 200)), Flags::default());
        assert_eq!(
            t.c(MS, seg(A, 1201, 5001, 502, 56)),
            only(Flags::WINDOW_FULL)
        );
    }

    #[test]
    fn window_is_not_scaled_when_either_side_did_not_offer_scaling() {
        let mut t = Conv::handshake(Some(7), None);
        t.s(MS, seg(A, 5001, 1001, 256, 0));
        assert_eq!(
            t.c(MS, seg(A, 1001, 5001, 502, 256)),
            only(Flags::WINDOW_FULL)
        );
    }

    /// A handshake whose SYN or SYN/ACK lost its options to the snap
    /// length (no window scale seen in it).
    fn handshake_cut(client_cut: bool, ws_server: Option<u8>, server_cut: bool) -> Conv {
        let mut t = Conv::new();
        let mut syn = seg(S, 1000, 0, 64240, 0);
        syn.cut = client_cut;
        syn.wscale = (!client_cut).then_some(7);
        let mut synack = seg(S | A, 5000, 1001, 65160, 0);
        synack.wscale = ws_server;
        synack.cut = server_cut;
        t.c(0, syn);
        t.s(50 * US, synack);
        t.c(50 * US, seg(A, 1001, 5001, 502, 0));
        t
    }

    #[test]
    fn a_syn_with_cut_options_leaves_its_window_scale_unknown() {
        // The SYN/ACK's shift holds (it answers an offer), so the client's
        // data is judged against the server's window...
        let mut t = handshake_cut(true, Some(7), false);
        t.s(MS, seg(A, 5001, 1001, 2, 0));
        assert_eq!(
            t.c(MS, seg(A, 1001, 5001, 502, 256)),
            only(Flags::WINDOW_FULL)
        );
        // ...but the client's own shift is unknown: the server's data is
        // not judged, rather than judged unscaled.
        t.c(MS, seg(A, 1257, 5001, 2, 0));
        assert_eq!(t.s(MS, seg(A, 5001, 1257, 2, 2)), Flags::default());
    }

    #[test]
    fn a_syn_ack_with_cut_options_leaves_both_scales_unknown() {
        let mut t = handshake_cut(false, None, true);
        t.s(MS, seg(A, 5001, 1001, 256, 0));
        assert_eq!(t.c(MS, seg(A, 1001, 5001, 502, 256)), Flags::default());
        // Whole options without the option: scaling is off, as before.
        let mut t = handshake_cut(false, None, false);
        t.s(MS, seg(A, 5001, 1001, 256, 0));
        assert_eq!(
            t.c(MS, seg(A, 1001, 5001, 502, 256)),
            only(Flags::WINDOW_FULL)
        );
    }

    #[test]
    fn window_full_is_not_judged_without_the_handshake() {
        let mut t = Conv::new();
        t.s(0, seg(A, 5001, 1001, 256, 0));
        assert_eq!(t.c(MS, seg(A, 1001, 5001, 502, 256)), Flags::default());
    }

    #[test]
    fn sequence_numbers_wrap_past_2_pow_32() {
        let mut t = Conv::new();
        let isn = u32::MAX - 150;
        t.c(0, seg(S, isn, 0, 64240, 0));
        t.s(50 * US, seg(S | A, 5000, isn.wrapping_add(1), 65160, 0));
        t.c(50 * US, seg(A, isn.wrapping_add(1), 5001, 502, 0));
        for i in 0..4u32 {
            let f = t.c(MS, seg(A, isn.wrapping_add(1 + 100 * i), 5001, 502, 100));
            assert_eq!(f, Flags::default(), "segment {i} across the wrap");
        }
        let again = t.c(200 * MS, seg(A, isn.wrapping_add(101), 5001, 502, 100));
        assert_eq!(again, only(Flags::RETRANSMISSION));
        let gap = t.c(MS, seg(A, isn.wrapping_add(601), 5001, 502, 100));
        assert_eq!(gap, only(Flags::LOST_SEGMENT));
    }

    #[test]
    fn duplicate_ack_needs_the_same_window_and_sack_blocks_do_not_matter() {
        let mut t = Conv::handshake(None, None);
        t.c(MS, seg(A, 1001, 5001, 502, 100));
        t.s(MS, seg(A, 5001, 1101, 500, 0));
        // NOP NOP SACK 1201-1301
        const SACK: &[u8] = &[1, 1, 5, 10, 0, 0, 4, 0xb1, 0, 0, 5, 0x15];
        let dup = t.s(MS, seg(A, 5001, 1101, 500, 0).options(SACK));
        assert_eq!(dup, only(Flags::DUPLICATE_ACK));
        assert_eq!(
            t.s(MS, seg(A, 5001, 1101, 600, 0)),
            only(Flags::WINDOW_UPDATE)
        );
        assert_eq!(
            t.s(MS, seg(A, 5001, 1101, 600, 0)),
            only(Flags::DUPLICATE_ACK)
        );
    }

    #[test]
    fn fin_counts_as_one_sequence_number() {
        let mut t = Conv::handshake(None, None);
        t.c(MS, seg(A | F, 1001, 5001, 502, 0));
        // A segment right after the FIN's sequence number is no gap (as
        // tshark has it, this pure ACK repeating the FIN's ACK and window is
        // a duplicate ACK)...
        assert_eq!(
            t.c(MS, seg(A, 1002, 5001, 502, 0)),
            only(Flags::DUPLICATE_ACK)
        );
        // ...and the FIN again is a retransmission.
        assert_eq!(
            t.c(300 * MS, seg(A | F, 1001, 5001, 502, 0)),
            only(Flags::RETRANSMISSION)
        );
    }

    #[test]
    fn data_rtt_times_new_data_to_its_ack_but_never_retransmitted_data() {
        let mut t = Conv::handshake(None, None);
        t.send(Side::Client, MS, seg(A, 1001, 5001, 502, 100));
        let v = t.send(Side::Server, 250 * US, seg(A, 5001, 1101, 500, 0));
        assert_eq!(v.rtt, Some((Side::Server, 250 * US)));
        t.send(Side::Client, MS, seg(A, 1101, 5001, 502, 100));
        t.send(Side::Client, 300 * MS, seg(A, 1101, 5001, 502, 100));
        let v = t.send(Side::Server, 250 * US, seg(A, 5001, 1201, 500, 0));
        assert_eq!(v.rtt, None, "Karn: the data was sent twice");
    }

    #[test]
    fn a_syn_with_another_isn_is_a_new_connection() {
        let t = Conv::handshake(None, None);
        let mut syn = Segment {
            src: Addr::v4([10, 0, 0, 1]),
            dst: Addr::v4([10, 0, 0, 2]),
            ip_len: 40,
            dont_fragment: true,
            src_port: 40000,
            dst_port: 80,
            seq: 1000,
            ack: 0,
            flags: TcpFlags(S),
            window: 64240,
            payload_len: 0,
            options: TcpOptions::default(),
            raw_options: &[],
            tunnels: Default::default(),
        };
        assert!(!t.a.is_new_connection(&syn, Side::Client), "same ISN");
        syn.seq = 777;
        assert!(t.a.is_new_connection(&syn, Side::Client));
        syn.flags = TcpFlags(S | A);
        assert!(
            !t.a.is_new_connection(&syn, Side::Client),
            "SYN/ACK never is"
        );
    }

    /// `count` random conversations from `seed`, most of them steady data
    /// and ACKs, with every kind of trouble mixed in: each a list of
    /// (sender, segment, capture time), a handshake first in three of four.
    pub(super) fn random_conversations(
        seed: u64,
        count: usize,
    ) -> Vec<Vec<(Side, Segment<'static>, Nanos)>> {
        let mut rng = seed;
        let mut r = |n: u64| crate::decode::fixtures::xorshift(&mut rng) % n;
        let mut all = Vec::with_capacity(count);
        for _ in 0..count {
            let mut conversation = Vec::with_capacity(302);
            let isn = [r(1 << 32) as u32, (u32::MAX - r(3000) as u32)];
            // What each side has sent (next), acknowledged, and offers.
            let mut next = isn;
            let mut acked = [0u32; 2];
            let mut win = [r(65536) as u16, r(65536) as u16];
            let mut now: Nanos = 1_700_000_000 * 1_000_000_000;
            // The shift each side's windows are scaled by, once known.
            let mut shift = [0u32; 2];
            if r(4) != 0 {
                let ws = |x: u64| if x < 15 { Some(x as u8) } else { None };
                let (c, sv) = (ws(r(20)), ws(r(20)));
                if let (Some(c), Some(sv)) = (c, sv) {
                    shift = [c as u32, sv as u32];
                }
                let (syn_ack, cut) = (isn[0].wrapping_add(1), [r(8) == 0, r(8) == 0]);
                let syn = segment(S, isn[0], 0, win[0], 0, c, cut[0]);
                conversation.push((Side::Client, syn, now));
                now += 100 * US;
                let syn_ack = segment(S | A, isn[1], syn_ack, win[1], 0, sv, cut[1]);
                conversation.push((Side::Server, syn_ack, now));
                now += 100 * US;
                next = [isn[0].wrapping_add(1), isn[1].wrapping_add(1)];
                acked = [next[1], next[0]];
            }
            for _ in 0..300 {
                let i = r(2) as usize;
                let peer = 1 - i;
                let mut flags = A;
                let mut seq = next[i];
                let mut len = 0;
                let mut ws = None;
                match r(100) {
                    0..=44 => len = 1 + r(1460) as u32,
                    45..=64 => acked[i] = next[peer].wrapping_sub(r(3) as u32 * 500),
                    65..=69 => {}
                    70..=74 => {
                        seq = next[i].wrapping_sub(r(5000) as u32);
                        len = r(1460) as u32;
                    }
                    75..=77 => seq = next[i].wrapping_add(1 + r(5000) as u32),
                    78..=79 => {
                        seq = next[i].wrapping_sub(1);
                        len = r(2) as u32;
                    }
                    80..=82 => win[i] = 0,
                    83..=86 => win[i] = r(65536) as u16,
                    87..=88 => flags |= [S, F, TcpFlags::RST][r(3) as usize],
                    // A window-scale option outside the handshake, at
                    // the next sequence number, on data or an ACK alone.
                    89 => {
                        ws = Some(r(15) as u8);
                        len = r(2) as u32 * r(1460) as u32;
                    }
                    90..=91 => acked[i] = next[peer].wrapping_add(1 + r(3000) as u32),
                    92..=94 => len = 1,
                    // Up to the edge of the peer's window.
                    95..=96 => {
                        let edge = acked[peer].wrapping_add((win[peer] as u32) << shift[peer]);
                        len = edge.wrapping_sub(seq).min(1 << 24);
                    }
                    // A length of 2^31 or more (a record's wire length
                    // is not bounded): a step back in sequence order.
                    97 => len = (1 << 31) + r(1 << 31) as u32,
                    _ => len = r(3) as u32,
                }
                if r(50) == 0 {
                    flags &= !A;
                }
                if r(100) == 0 {
                    win[i] = 1 + r(65535) as u16;
                }
                let seg = segment(flags, seq, acked[i], win[i], len, ws, false);
                let side = if i == 0 { Side::Client } else { Side::Server };
                conversation.push((side, seg, now));
                if SeqNum(seq.wrapping_add(len)) > SeqNum(next[i]) {
                    next[i] = seq.wrapping_add(len);
                }
                now = match r(20) {
                    0 => now - r(1000) * US,
                    1..=3 => now + r(40) * MS,
                    4..=7 => now + r(4) * MS,
                    _ => now + r(300) * US,
                };
            }
            all.push(conversation);
        }
        all
    }

    /// Random conversations: after each segment, the analysis with its
    /// steady path and the full rules alone have the same verdict and the
    /// same state.
    #[test]
    fn the_steady_path_agrees_with_the_full_analysis() {
        let (mut steady, mut total) = (0u32, 0u32);
        for conversation in random_conversations(0x5eed, 400) {
            let mut full = Analyzer::default();
            let mut fast = Analyzer::default();
            for (side, seg, now) in conversation {
                let mut probe = fast;
                steady += probe.on_steady_segment(&seg, side, now).is_some() as u32;
                total += 1;
                let want = full.on_any_segment(&seg, side, now);
                let got = fast.on_segment(&seg, side, now);
                let (flags, seq, len) = (seg.flags.0, seg.seq, seg.payload_len);
                assert_eq!(got, want, "verdict of {flags:#x} seq {seq} len {len}");
                assert_eq!(fast, full, "state after {flags:#x} seq {seq} len {len}");
            }
        }
        // Both paths were taken, and often.
        assert!(
            steady > total / 3 && steady < total * 9 / 10,
            "{steady} steady of {total}"
        );
    }

    pub(super) fn segment(
        flags: u8,
        seq: u32,
        ack: u32,
        window: u16,
        len: u32,
        window_scale: Option<u8>,
        cut: bool,
    ) -> Segment<'static> {
        Segment {
            src: Addr::v4([10, 0, 0, 1]),
            dst: Addr::v4([10, 0, 0, 2]),
            ip_len: 40 + len,
            dont_fragment: true,
            src_port: 40000,
            dst_port: 80,
            seq,
            ack,
            flags: TcpFlags(flags),
            window,
            payload_len: len,
            options: TcpOptions {
                window_scale,
                cut,
                ..TcpOptions::default()
            },
            raw_options: &[],
            tunnels: Default::default(),
        }
    }
}
