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
//! RTT sample started or ended; one it admits as [`Admission::Timed`] is
//! steady too, but times or ends a sample, so it must be analysed, and the
//! mirror moves as the analysis will; anything else leaves the mirror
//! unknown until the analyzer gives a new one. The tests hold these claims
//! to the full analysis on random conversations.

use crate::decode::Segment;
use crate::flow::key::Side;
use crate::flow::rtt::RTT_SLOTS;
use crate::flow::seq::SeqNum;
use crate::flow::Nanos;

use super::{is_steady, pair, Analyzer, DirState, Position, Scale};

/// What the steady path reads of one direction, and the ends of its timed
/// segments (the RTT samples it waits on).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MirrorDir {
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

    fn rtt_is_full(&self) -> bool {
        self.rtt_len as usize == RTT_SLOTS
    }

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

// A mirror is only taken once both sides' bases are known.
impl_position!(MirrorDir, |_dir| true);

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
    /// Steady, but it starts or ends an RTT sample: it must be analysed.
    /// The mirror moved as the analysis will move.
    Timed,
    /// Anything else: it must be analysed, and the mirror no longer
    /// describes the connection.
    Other,
}

impl Mirror {
    /// The direction `side` sends, as it stands.
    pub fn dir(&self, side: Side) -> &MirrorDir {
        &self.dir[side.index()]
    }

    /// Whether `seg` from `side` is steady, as `Analyzer::on_steady_segment`
    /// decides, and whether it times or ends an RTT sample; the mirror moves
    /// on with it unless the answer is `Other`.
    pub fn admit(&mut self, seg: &Segment, side: Side) -> Admission {
        let [client, server] = &mut self.dir;
        let (fwd, rev) = match side {
            Side::Client => (client, server),
            Side::Server => (server, client),
        };
        if !is_steady(seg, fwd, rev) {
            return Admission::Other;
        }
        let seq = SeqNum(seg.seq);
        let ack = SeqNum(seg.ack);
        let len = seg.payload_len;
        let end = seq.plus(len);
        let times = len > 0 && !fwd.rtt_is_full();
        let ends = rev.rtt_covered_by(ack);
        if len > 0 {
            if times {
                fwd.rtt_ends[fwd.rtt_len as usize] = end;
                fwd.rtt_len += 1;
            }
            fwd.next_seq = end;
        }
        if seq == fwd.max_seq_to_be_acked || fwd.max_seq_to_be_acked.0 == 0 {
            fwd.max_seq_to_be_acked = fwd.next_seq;
        }
        fwd.window = seg.window as u32;
        fwd.last_ack = ack;
        fwd.first_ack_pending = false;
        if ends {
            rev.rtt_on_ack(ack);
        }
        if times || ends {
            Admission::Timed
        } else {
            Admission::Counted
        }
    }
}

/// Segments of one direction that a mirror admitted as `Counted`, one
/// after another, and never analysed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SteadyRun {
    pub segments: u32,
    pub payload_bytes: u64,
    /// Capture time of the run's last segment.
    pub last: Nanos,
    /// Capture time of its last segment with data, if any had data.
    pub last_data: Option<Nanos>,
    /// Some segment's ACK differed from the one before it.
    pub ack_moved: bool,
}

impl SteadyRun {
    /// Counts `seg`, admitted at `now` by a mirror whose direction stood at
    /// `before` (the mirror as it was before admitting it).
    pub fn count(&mut self, seg: &Segment, before: &MirrorDir, now: Nanos) {
        self.segments += 1;
        self.payload_bytes += seg.payload_len as u64;
        self.last = now;
        if seg.payload_len > 0 {
            self.last_data = Some(now);
        }
        self.ack_moved |= SeqNum(seg.ack) != before.last_ack;
    }
}

impl Analyzer {
    /// This connection as a mirror, when the mirror describes all the
    /// steady path reads and writes: both directions' sequence numbers
    /// known, and the handshake RTT not waiting for a steady segment.
    pub fn mirror(&self) -> Option<Mirror> {
        let known = self.dir.iter().all(|d| d.has_base);
        let handshake_waits = self.last_syn != 0 && self.initial_rtt == 0;
        (known && !handshake_waits).then(|| Mirror {
            dir: [MirrorDir::of(&self.dir[0]), MirrorDir::of(&self.dir[1])],
        })
    }

    /// Applies `run`, segments from `side` a mirror counted, as the steady
    /// path would have applied each; `end` is the mirror's direction after
    /// the run.
    pub fn on_steady_run(&mut self, side: Side, run: &SteadyRun, end: &MirrorDir) {
        if run.segments == 0 {
            return;
        }
        let (fwd, _) = pair(&mut self.dir, side);
        fwd.next_seq = end.next_seq;
        if let Some(t) = run.last_data {
            fwd.next_seq_time = t;
        }
        fwd.max_seq_to_be_acked = end.max_seq_to_be_acked;
        if run.ack_moved {
            fwd.dupack_count = 0;
        }
        fwd.window = end.window;
        fwd.last_ack = end.last_ack;
        fwd.last_ack_time = run.last;
        fwd.last_was_keepalive = false;
        fwd.last_was_zwp = false;
        fwd.first_ack_pending = false;
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{random_conversations, segment};
    use super::super::Verdict;
    use super::*;
    use crate::decode::TcpFlags;

    const SYN: u8 = TcpFlags::SYN;
    const ACK: u8 = TcpFlags::ACK;

    /// Random conversations with every kind of trouble: a mirror taken
    /// whenever the analyzer gives one counts the segments it admits as
    /// `Counted`; every other segment is analysed after the runs before
    /// it are applied. The analyzer then has the verdicts and the state of
    /// one that analysed every segment, and after a `Timed` segment the
    /// mirror is the one the analyzer gives.
    #[test]
    fn runs_a_mirror_counted_leave_the_analysis_as_analysing_each_would() {
        let (mut counted, mut timed, mut other, mut total) = (0u32, 0u32, 0u32, 0u32);
        for conversation in random_conversations(0x5eed_0020, 300) {
            let mut every = Analyzer::default();
            let mut split = Analyzer::default();
            let mut mirror: Option<Mirror> = None;
            let mut runs = [SteadyRun::default(); 2];
            let flush = |split: &mut Analyzer, runs: &mut [SteadyRun; 2], at: &Mirror| {
                for side in [Side::Client, Side::Server] {
                    split.on_steady_run(side, &runs[side.index()], at.dir(side));
                }
                *runs = [SteadyRun::default(); 2];
            };
            for (side, seg, now) in conversation {
                total += 1;
                let want = every.on_segment(&seg, side, now);
                let before = mirror;
                let admission = mirror.as_mut().map(|m| m.admit(&seg, side));
                if admission == Some(Admission::Counted) {
                    counted += 1;
                    let before = before.unwrap();
                    runs[side.index()].count(&seg, before.dir(side), now);
                    assert_eq!(want, Verdict::default(), "counted {seg:?}");
                    continue;
                }
                if let Some(before) = before {
                    flush(&mut split, &mut runs, &before);
                }
                let got = split.on_segment(&seg, side, now);
                assert_eq!(got, want, "verdict of {seg:?}");
                assert_eq!(split, every, "state after {seg:?}");
                match admission {
                    Some(Admission::Timed) => {
                        timed += 1;
                        assert_eq!(mirror, split.mirror(), "mirror after {seg:?}");
                    }
                    _ => {
                        other += admission.is_some() as u32;
                        mirror = split.mirror();
                    }
                }
            }
            if let Some(at) = mirror {
                flush(&mut split, &mut runs, &at);
            }
            assert_eq!(split, every, "state at the end");
        }
        // Each kind was seen, and often.
        assert!(
            counted > total / 8 && timed > total / 50 && other > total / 20,
            "{counted} counted, {timed} timed, {other} other of {total}"
        );
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
