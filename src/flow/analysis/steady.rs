//! Steady segments counted outside the analysis (issue 20): what a capture
//! point that sees every segment before user space does (the xdp backend's
//! kernel program) must keep of a connection to tell which segments the
//! analysis would take its steady path for without timing or ending an RTT
//! sample, so that it may count them instead of handing them up; and how a
//! run of such segments, counted there, is applied here as if each had been
//! analysed.
//!
//! [`Mirror`] is that state and its rules, written as the kernel program is
//! to keep them. An analyzer gives a mirror ([`Analyzer::mirror`]) only in
//! a state the mirror describes whole. From there, each segment the mirror
//! admits as [`Admission::Counted`] is one the steady path takes with no
//! RTT sample started or ended; one it admits as [`Admission::Followed`]
//! must be analysed (it times or ends a sample, or is not steady but an
//! ACK whose effect on the mirror is known without the analysis's
//! timing rules), and the mirror moves as the analysis will;
//! anything else leaves the mirror unknown until the analyzer gives a new
//! one. The tests hold these claims to the full analysis on random
//! conversations.
//!
//! The same rules in C (bpf/steady.h) are held to these by the tests in
//! steady/kernel.rs, which run them in the kernel; kernel.rs also reads and
//! writes the mirror and the run as the kernel lays them out. What a run
//! changes beyond the analysis (the flow
//! table's last-seen time, the packet and byte counts) is applied by
//! `FlowTable::on_steady_run` and `Shard::on_steady_run`.

use crate::decode::Segment;
use crate::flow::key::Side;
use crate::flow::rtt::RTT_SLOTS;
use crate::flow::seq::SeqNum;
use crate::flow::Nanos;

use super::{is_steady, pair, Analyzer, DirState, Scale, SteadyView};

pub mod kernel;

/// What the steady path reads of one direction, and the ends of its timed
/// segments (the RTT samples it waits on).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct MirrorDir {
    /// Next expected sequence number; 0 means unknown (nothing is steady).
    next_seq: SeqNum,
    /// Highest sequence number reached without a gap; 0 means unknown.
    max_seq_to_be_acked: SeqNum,
    last_ack: SeqNum,
    /// The raw window of this direction's last segment.
    window: u32,
    scale: Scale,
    first_ack_pending: bool,
    /// Ends of the timed segments, oldest first: `rtt_ends[..rtt_len]`.
    rtt_ends: [SeqNum; RTT_SLOTS],
    rtt_len: u8,
}

impl MirrorDir {
    fn of(dir: &DirState) -> MirrorDir {
        let (rtt_ends, rtt_len) = dir.rtt.ends();
        MirrorDir {
            next_seq: dir.next_seq,
            max_seq_to_be_acked: dir.max_seq_to_be_acked,
            last_ack: dir.last_ack,
            window: dir.window,
            scale: dir.scale,
            first_ack_pending: dir.first_ack_pending,
            rtt_ends,
            rtt_len,
        }
    }

    /// The analysis's RTT sampler on new data ending at `end`: timed if a
    /// slot is free.
    fn rtt_time(&mut self, end: SeqNum) {
        if !self.rtt_is_full() {
            self.rtt_ends[self.rtt_len as usize] = end;
            self.rtt_len += 1;
        }
    }

    /// The analysis's RTT sampler on a retransmission: every timed segment
    /// is dropped.
    fn rtt_drop_all(&mut self) {
        self.rtt_ends = [SeqNum(0); RTT_SLOTS];
        self.rtt_len = 0;
    }

    fn rtt_is_full(&self) -> bool {
        self.rtt_len as usize == RTT_SLOTS
    }

    #[inline(always)]
    fn rtt_covered_by(&self, ack: SeqNum) -> bool {
        self.rtt_ends[..self.rtt_len as usize]
            .iter()
            .any(|&end| end <= ack)
    }

    /// The analysis's RTT sampler on an ACK that covers a timed segment:
    /// every covered one is done with. The slots past the last are zero,
    /// as `RttSampler::ends` gives them.
    fn rtt_on_ack(&mut self, ack: SeqNum) {
        let mut kept = [SeqNum(0); RTT_SLOTS];
        let mut len = 0;
        for &end in &self.rtt_ends[..self.rtt_len as usize] {
            if end > ack {
                kept[len] = end;
                len += 1;
            }
        }
        self.rtt_ends = kept;
        self.rtt_len = len as u8;
    }
}

impl SteadyView for MirrorDir {
    /// A mirror is only taken once both sides' bases are known.
    fn has_base(&self) -> bool {
        true
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

/// Both directions of a connection as the steady path reads them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mirror {
    dir: [MirrorDir; 2],
}

/// What a mirror makes of one segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// Steady, and it neither starts nor ends an RTT sample: it may be
    /// counted in a [`SteadyRun`] instead of analysed.
    Counted,
    /// One the mirror can follow but which must be analysed: steady but
    /// for an RTT sample it times or ends, or any other ACK the mirror
    /// can follow (see `is_followed`: retransmissions, out of order,
    /// duplicate ACKs, window full, zero windows...). The mirror moved as
    /// the analysis will move.
    Followed,
    /// Anything else (a SYN, FIN or RST, no ACK, a window-scale option, an
    /// ACK of data unseen, a sender whose next sequence number is not yet
    /// known): it must be analysed, and the mirror no longer describes the
    /// connection.
    Other,
}

impl Mirror {
    /// The direction `side` sends, as it stands.
    #[cfg(test)]
    fn dir(&self, side: Side) -> &MirrorDir {
        &self.dir[side.index()]
    }

    /// What `seg` from `side`, captured at `now`, is (see [`Admission`]);
    /// the mirror moves on with it unless the answer is `Other` (then
    /// nothing changed), and a `Counted` one is counted in `run`, the run
    /// of `side`. Both directions' runs must be applied to the connection
    /// (`Conn::on_steady_run`) before any segment that was not counted is
    /// analysed.
    ///
    /// Inlined: user space asks it of nearly every segment of bulk
    /// traffic (the worker's armed mirror), where a counted one must cost
    /// far less than the analysis it stands in for.
    #[inline(always)]
    pub fn admit(
        &mut self,
        seg: &Segment,
        side: Side,
        now: Nanos,
        run: &mut SteadyRun,
    ) -> Admission {
        let [client, server] = &mut self.dir;
        let (fwd, rev) = match side {
            Side::Client => (client, server),
            Side::Server => (server, client),
        };
        let ack = SeqNum(seg.ack);
        let len = seg.payload_len;
        // Steady, and neither timing new data nor ending a timed segment.
        let counted =
            is_steady(seg, fwd, rev) && (len == 0 || fwd.rtt_is_full()) && !rev.rtt_covered_by(ack);
        if !counted {
            if !is_followed(seg, fwd, rev) {
                return Admission::Other;
            }
            follow(fwd, rev, seg);
            return Admission::Followed;
        }
        let ack_moved = ack != fwd.last_ack;
        follow_steady(fwd, seg);
        run.segments += 1;
        run.payload_bytes += len as u64;
        run.ip_bytes += seg.ip_len as u64;
        run.dont_fragment += seg.dont_fragment as u32;
        run.last = now;
        if len > 0 {
            run.last_data = Some(now);
        }
        run.ack_moved |= ack_moved;
        run.next_seq = fwd.next_seq;
        run.max_seq_to_be_acked = fwd.max_seq_to_be_acked;
        run.last_ack = fwd.last_ack;
        run.window = fwd.window;
        Admission::Counted
    }
}

/// Whether the mirror can follow `seg`, sent by `fwd`: any ACK without
/// SYN, FIN or RST, without a window-scale option (which would set the
/// scale), that does not acknowledge data the peer was not seen to send
/// (which moves the peer's state on), from a direction whose next
/// sequence number is known. What
/// the analysis flags on such a segment (a retransmission of any kind, out
/// of order, a lost segment before it, a duplicate ACK, a window update, a
/// zero window, a keep-alive, a probe, window full) depends on times the
/// mirror does not keep, but what it changes of the mirror does not.
fn is_followed(seg: &Segment, fwd: &MirrorDir, rev: &MirrorDir) -> bool {
    let f = seg.flags;
    let ack = SeqNum(seg.ack);
    f.ack()
        && !(f.syn() || f.fin() || f.rst())
        && seg.options.window_scale.is_none()
        && fwd.next_seq.0 != 0
        && (rev.max_seq_to_be_acked.0 == 0 || ack <= rev.max_seq_to_be_acked)
}

/// `follow` on a steady segment that times no new data (its RTT slots are
/// full, or it has none) and ends no timed segment of the peer: of all
/// `follow` tells apart, such a segment is no probe, keep-alive or
/// repeat, its data (if any) is new and moves the next sequence number
/// to its end, and the peer's timed segments stay as they are.
#[inline(always)]
fn follow_steady(fwd: &mut MirrorDir, seg: &Segment) {
    let seq = SeqNum(seg.seq);
    if seg.payload_len > 0 {
        fwd.next_seq = seq.plus(seg.payload_len);
    }
    if seq == fwd.max_seq_to_be_acked || fwd.max_seq_to_be_acked.0 == 0 {
        fwd.max_seq_to_be_acked = fwd.next_seq;
    }
    carry(fwd, seg);
}

/// What every followed segment leaves of itself: its window and ACK, and
/// that the sender's first ACK is seen.
#[inline(always)]
fn carry(fwd: &mut MirrorDir, seg: &Segment) {
    fwd.window = seg.window as u32;
    fwd.last_ack = SeqNum(seg.ack);
    fwd.first_ack_pending = false;
}

/// Moves the mirror on with a segment `is_followed` accepts, as the full
/// rules (`Analyzer::on_any_segment`) move what it keeps (and, on a steady
/// segment, as the steady path does): a zero-window probe moves the
/// sequence numbers nothing on, a keep-alive is never a retransmission,
/// data that repeats what was sent or acknowledged (a retransmission of
/// any kind, or out of order) drops every timed segment, new data beyond
/// the next sequence number is timed; the window and ACK are the
/// segment's, and the peer's timed segments the ACK covers are done with.
fn follow(fwd: &mut MirrorDir, rev: &mut MirrorDir, seg: &Segment) {
    let seq = SeqNum(seg.seq);
    let len = seg.payload_len;
    let end = seq.plus(len);
    let before_next = fwd.next_seq.plus(u32::MAX);
    let probe = len == 1 && seq == fwd.next_seq && rev.window == 0;
    let keepalive = !probe && len <= 1 && seq == before_next;
    let spurious = rev.last_ack.0 != 0 && end <= rev.last_ack;
    let behind = seq < fwd.next_seq && !(len > 1 && seq == before_next);
    let repeats = len > 0 && !keepalive && (spurious || behind);
    if end > fwd.next_seq && !probe {
        if len > 0 {
            fwd.rtt_time(end);
        }
        fwd.next_seq = end;
    }
    if repeats {
        fwd.rtt_drop_all();
    }
    if (seq == fwd.max_seq_to_be_acked || fwd.max_seq_to_be_acked.0 == 0) && !probe {
        fwd.max_seq_to_be_acked = fwd.next_seq;
    }
    let ack = SeqNum(seg.ack);
    carry(fwd, seg);
    if rev.rtt_covered_by(ack) {
        rev.rtt_on_ack(ack);
    }
}

/// Segments of one direction that a mirror admitted as `Counted`, one
/// after another, and never analysed: how many, and where the last left
/// the direction. Applied with the other direction's run before the
/// connection's next segment that was not counted. A run gathered with
/// `add` (segments that were analysed, counted later) has only the counts
/// and the last time: only the metric shard may take it, not the flow
/// table.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SteadyRun {
    pub segments: u32,
    /// Their payload bytes, IP bytes and segments with IPv4's DF bit, for
    /// the counts of whoever applies the run.
    pub payload_bytes: u64,
    pub ip_bytes: u64,
    pub dont_fragment: u32,
    /// Capture time of the run's last segment.
    pub last: Nanos,
    /// Capture time of its last segment with data, if any had data.
    pub last_data: Option<Nanos>,
    /// Some segment's ACK differed from the one before it.
    pub ack_moved: bool,
    /// The direction after the last segment.
    next_seq: SeqNum,
    max_seq_to_be_acked: SeqNum,
    last_ack: SeqNum,
    window: u32,
}

impl SteadyRun {
    /// Counts `seg`, which stands for `segments` wire segments (more than
    /// one for an offload super-packet; each carried its own headers and
    /// its own DF bit), captured at `now`; the run's last time is its
    /// latest segment's. For runs a connection's owner gathers itself
    /// (`Outcome::quiet`), and for `DirCounters::count`: the direction's
    /// state after them is not kept.
    #[inline(always)]
    pub fn add(&mut self, seg: &Segment, segments: u32, now: Nanos) {
        let n = segments as u64;
        let headers = seg.ip_len.saturating_sub(seg.payload_len) as u64;
        self.segments += segments;
        self.payload_bytes += seg.payload_len as u64;
        self.ip_bytes += seg.payload_len as u64 + headers * n;
        self.dont_fragment += seg.dont_fragment as u32 * segments;
        self.last = self.last.max(now);
    }

    /// Counts the wire segments beyond the first of an offload
    /// super-packet a mirror counted (`Mirror::admit` counts one): each
    /// carried its own headers and its own DF bit.
    pub fn add_wire_segments(&mut self, seg: &Segment, extra: u32) {
        let headers = seg.ip_len.saturating_sub(seg.payload_len) as u64;
        self.segments += extra;
        self.ip_bytes += headers * extra as u64;
        self.dont_fragment += seg.dont_fragment as u32 * extra;
    }
}

impl Analyzer {
    /// This connection as a mirror, when the mirror describes all the
    /// steady path reads and writes: both directions' bases (ISNs) known,
    /// and the handshake RTT not waiting for the next ACK.
    pub fn mirror(&self) -> Option<Mirror> {
        let known = self.dir.iter().all(|d| d.has_base);
        let handshake_waits = self.last_syn != 0 && self.initial_rtt == 0;
        (known && !handshake_waits).then(|| Mirror {
            dir: [MirrorDir::of(&self.dir[0]), MirrorDir::of(&self.dir[1])],
        })
    }

    /// Applies `run`, segments from `side` a mirror counted, as the steady
    /// path would have applied each.
    pub fn on_steady_run(&mut self, side: Side, run: &SteadyRun) {
        if run.segments == 0 {
            return;
        }
        let (fwd, _) = pair(&mut self.dir, side);
        fwd.next_seq = run.next_seq;
        if let Some(t) = run.last_data {
            fwd.next_seq_time = t;
        }
        fwd.max_seq_to_be_acked = run.max_seq_to_be_acked;
        if run.ack_moved {
            fwd.dupack_count = 0;
        }
        fwd.window = run.window;
        fwd.last_ack = run.last_ack;
        fwd.last_ack_time = run.last;
        fwd.last_was_keepalive = false;
        fwd.last_was_zwp = false;
        fwd.first_ack_pending = false;
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{random_conversations, segment};
    use super::super::{Flags, Verdict};
    use super::*;
    use crate::decode::TcpFlags;

    const SYN: u8 = TcpFlags::SYN;
    const ACK: u8 = TcpFlags::ACK;

    /// Random conversations with every kind of trouble: a mirror taken
    /// whenever the analyzer gives one counts the segments it admits as
    /// `Counted`; every other segment is analysed after the runs before
    /// it are applied. Against the full rules alone over every segment:
    /// each counted segment has no verdict, the analyzer is the same right
    /// after the runs are applied and after the segment, with the same
    /// verdict; and after a `Followed` segment the mirror is the one the
    /// analyzer gives.
    #[test]
    fn runs_a_mirror_counted_leave_the_analysis_as_analysing_each_would() {
        let (mut counted, mut followed, mut other, mut total) = (0u32, 0u32, 0u32, 0u32);
        // The analysis's flags on the segments the mirror followed.
        let mut flags_followed = 0u16;
        for conversation in random_conversations(0x5eed_0020, 300) {
            let mut every = Analyzer::default();
            let mut split = Analyzer::default();
            let mut mirror: Option<Mirror> = None;
            let mut runs = [SteadyRun::default(); 2];
            for (side, seg, now) in conversation {
                total += 1;
                let before = every;
                let want = every.on_any_segment(&seg, side, now);
                let run = &mut runs[side.index()];
                let admission = mirror.as_mut().map(|m| m.admit(&seg, side, now, run));
                if admission == Some(Admission::Counted) {
                    counted += 1;
                    assert_eq!(want, Verdict::default(), "counted {seg:?}");
                    continue;
                }
                for side in [Side::Client, Side::Server] {
                    split.on_steady_run(side, &runs[side.index()]);
                }
                runs = [SteadyRun::default(); 2];
                assert_eq!(split, before, "state after the runs before {seg:?}");
                let got = split.on_segment(&seg, side, now);
                assert_eq!(got, want, "verdict of {seg:?}");
                assert_eq!(split, every, "state after {seg:?}");
                match admission {
                    Some(Admission::Followed) => {
                        followed += 1;
                        flags_followed |= want.flags.0;
                        assert_eq!(mirror, split.mirror(), "mirror after {seg:?}");
                    }
                    _ => {
                        other += admission.is_some() as u32;
                        mirror = split.mirror();
                    }
                }
            }
            for side in [Side::Client, Side::Server] {
                split.on_steady_run(side, &runs[side.index()]);
            }
            assert_eq!(split, every, "state at the end");
        }
        // Each kind was seen, and often.
        assert!(
            counted > total / 8 && followed > total / 50 && other > total / 20,
            "{counted} counted, {followed} followed, {other} other of {total}"
        );
        // It followed every kind of trouble but the fast retransmission,
        // which needs a third duplicate ACK within 20 ms of the peer's
        // last segment (the same change of the mirror as any other).
        let every_kind = (1u16 << 14) - 1;
        let want = every_kind & !Flags::FAST_RETRANSMISSION & !Flags::ACKED_UNSEEN;
        assert_eq!(flags_followed, want, "{flags_followed:#06x} of {want:#06x}");
    }

    #[test]
    fn a_connection_waiting_for_its_handshake_rtt_has_no_mirror() {
        let mut a = Analyzer::default();
        let syn = segment(SYN, 1000, 0, 64240, 0, None, false);
        let synack = segment(SYN | ACK, 5000, 1001, 65160, 0, None, false);
        a.on_segment(&syn, Side::Client, 1_000);
        a.on_segment(&synack, Side::Server, 2_000);
        assert_eq!(
            a.mirror(),
            None,
            "the client's ACK would set the handshake RTT"
        );
        let ack = segment(ACK, 1001, 5001, 502, 0, None, false);
        a.on_segment(&ack, Side::Client, 3_000);
        let m = a.mirror().expect("established: a mirror");
        assert_eq!(m.dir(Side::Client).next_seq, SeqNum(1001));
        assert_eq!(m.dir(Side::Server).next_seq, SeqNum(5001));
    }
}
