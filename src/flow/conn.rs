//! One connection's life: who is client and server, the handshake, the close.
//! A pure state machine over (state, segment, capture time).

use crate::decode::Segment;

use super::analysis::{Analyzer, Flags, Mirror, SteadyRun};
use super::key::Side;
use super::seq::SeqNum;
use super::{Nanos, ShortTime};

/// Where a connection is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// A SYN seen, no SYN/ACK yet.
    SynSent,
    /// SYN/ACK seen, the client's ACK of it not yet.
    SynReceived,
    Established,
    /// First seen after its handshake (the capture started late, or the flow
    /// was evicted and came back).
    Midstream,
    /// Ended by FIN from both sides, RST, or a refusal; kept for a short
    /// linger so that late segments (the last ACK) still belong to it.
    Closed,
}

impl Phase {
    pub const ALL: [Phase; 5] = [
        Phase::SynSent,
        Phase::SynReceived,
        Phase::Established,
        Phase::Midstream,
        Phase::Closed,
    ];

    /// The `state` of a flow-log record.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::SynSent => "syn_sent",
            Phase::SynReceived => "syn_received",
            Phase::Established => "established",
            Phase::Midstream => "midstream",
            Phase::Closed => "closed",
        }
    }
}

/// What a segment did to the connection's life, for the counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lifecycle {
    /// The first SYN/ACK.
    Opened,
    /// The server answered the SYN with RST.
    Refused,
    /// No SYN/ACK came: the SYN timed out, or its own sender reset it.
    Unanswered,
    Closed(CloseReason),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseReason {
    Fin,
    Rst,
    Timeout,
}

impl CloseReason {
    pub const ALL: [CloseReason; 3] = [CloseReason::Fin, CloseReason::Rst, CloseReason::Timeout];

    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::Fin => "fin",
            CloseReason::Rst => "rst",
            CloseReason::Timeout => "timeout",
        }
    }
}

/// What one segment changed, beyond the plain counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Step {
    pub lifecycle: Option<Lifecycle>,
    /// A handshake RTT sample: the leg (server: SYN to SYN/ACK; client:
    /// SYN/ACK to its ACK) and the time in nanoseconds.
    pub handshake_rtt: Option<(Side, Nanos)>,
    /// Lifetime of a connection that just closed, when its SYN was seen.
    pub duration: Option<Nanos>,
    /// The sequence analysis of the segment.
    pub flags: Flags,
    /// A data RTT sample: the leg (the side whose ACK completed it) and the
    /// time in nanoseconds.
    pub data_rtt: Option<(Side, Nanos)>,
}

impl Step {
    /// Nothing happened: no step in the connection's life, no flag, no
    /// RTT sample.
    #[inline(always)]
    pub fn is_empty(&self) -> bool {
        self.lifecycle.is_none()
            && self.handshake_rtt.is_none()
            && self.duration.is_none()
            && self.flags.0 == 0
            && self.data_rtt.is_none()
    }
}

/// Which connection a flow slot holds: a number its `FlowTable` gives
/// every new connection, from 1 (0 is a connection no table has taken
/// yet). It wraps after 2^32 connections, which is taken to be longer than
/// any run can wait to be applied. Unlike the table owner's tag, it tells
/// apart two connections on the same addresses whatever the owner keeps.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Generation(pub(super) u32);

impl Generation {
    /// As the kernel keeps it with the connection's runs (bpf/count.h),
    /// and back.
    pub fn number(self) -> u32 {
        self.0
    }

    pub fn from_number(n: u32) -> Generation {
        Generation(n)
    }
}

#[derive(Clone, Copy, Debug)]
pub struct Conn {
    /// Whether the client is the flow key's `lo` endpoint.
    pub client_is_lo: bool,
    pub phase: Phase,
    /// Time of the first SYN, when seen: the connection's start (0: not seen).
    start: Nanos,
    syn_count: u8,
    synack_count: u8,
    last_syn: ShortTime,
    last_synack: ShortTime,
    server_isn: SeqNum,
    fin_seen: [bool; 2],
    /// Which connection this is, among all its table has held: set by the
    /// table, kept here because the connection's own fields leave room for
    /// it (a slot stays at 256 bytes).
    pub(super) generation: Generation,
    analyzer: Analyzer,
}

impl Conn {
    /// A connection seen first with `seg`, sent by the key's `lo` endpoint
    /// when `sender_is_lo`. Orientation comes from the handshake when the
    /// segment is part of it; otherwise the lower port is the server.
    pub fn new(seg: &Segment, sender_is_lo: bool) -> Conn {
        let sender_is_client = if seg.flags.syn() {
            !seg.flags.ack()
        } else {
            // Mid-stream: the lower port serves; on equal ports, the lower
            // address (the key orders by address first).
            match seg.src_port.cmp(&seg.dst_port) {
                std::cmp::Ordering::Less => false,
                std::cmp::Ordering::Greater => true,
                std::cmp::Ordering::Equal => !sender_is_lo,
            }
        };
        let phase = if seg.flags.syn() {
            Phase::SynSent
        } else {
            Phase::Midstream
        };
        Conn {
            client_is_lo: sender_is_lo == sender_is_client,
            phase,
            start: 0,
            syn_count: 0,
            synack_count: 0,
            last_syn: ShortTime::default(),
            last_synack: ShortTime::default(),
            server_isn: SeqNum(0),
            fin_seen: [false; 2],
            generation: Generation::default(),
            analyzer: Analyzer::default(),
        }
    }

    pub fn sender(&self, sender_is_lo: bool) -> Side {
        if sender_is_lo == self.client_is_lo {
            Side::Client
        } else {
            Side::Server
        }
    }

    pub fn is_closed(&self) -> bool {
        self.phase == Phase::Closed
    }

    /// Whether `seg`, from `side`, opens a new connection on this flow's
    /// addresses and ports instead of continuing this one: a SYN whose ISN
    /// is not the one this side used before (as tshark starts a new
    /// tcp.stream). A SYN with the same ISN is a retransmission, even after
    /// the close.
    pub fn is_superseded_by(&self, seg: &Segment, side: Side) -> bool {
        self.analyzer.is_new_connection(seg, side)
    }

    /// What the connection ends as when it is dropped for idleness.
    pub fn on_idle(&mut self, now: Nanos) -> Step {
        let lifecycle = match self.phase {
            Phase::Closed => return Step::default(),
            Phase::SynSent => Lifecycle::Unanswered,
            _ => Lifecycle::Closed(CloseReason::Timeout),
        };
        self.close(lifecycle, now)
    }

    /// Runs the sequence analysis and the lifecycle over one segment.
    #[inline]
    pub fn on_segment(&mut self, seg: &Segment, side: Side, now: Nanos) -> Step {
        let verdict = self.analyzer.on_segment(seg, side, now);
        let mut step = self.lifecycle(seg, side, now);
        step.flags = verdict.flags;
        step.data_rtt = verdict.rtt;
        step
    }

    /// The connection as a mirror of its steady path (see [`Mirror`]),
    /// when one describes it: established or picked up mid-stream. Not
    /// before: in the handshake the client's ACK establishes the
    /// connection, a step in its life a counted segment would miss; and
    /// not once closed, when only late segments are expected.
    pub fn mirror(&self) -> Option<Mirror> {
        self.takes_runs().then(|| self.analyzer.mirror()).flatten()
    }

    /// Whether the connection is in a phase that gives a mirror, and so
    /// takes the runs one counted.
    pub fn takes_runs(&self) -> bool {
        matches!(self.phase, Phase::Established | Phase::Midstream)
    }

    /// Applies a run of steady segments from `side` that a mirror counted
    /// (see `Analyzer::on_steady_run`). Such segments change nothing in the
    /// connection's life.
    pub fn on_steady_run(&mut self, side: Side, run: &SteadyRun) {
        self.analyzer.on_steady_run(side, run);
    }

    /// Inlined, so that the step is built in registers: returned through
    /// memory and copied into the outcome, it was read back with a stalled
    /// load on every packet (perf, live af-packet capture).
    #[inline(always)]
    fn lifecycle(&mut self, seg: &Segment, side: Side, now: Nanos) -> Step {
        let flags = seg.flags;
        // Most segments take no step in the connection's life: no SYN, FIN
        // or RST, and no handshake for their ACK to finish.
        let quiet =
            !(flags.syn() || flags.fin() || flags.rst()) && self.phase != Phase::SynReceived;
        if quiet || self.phase == Phase::Closed {
            return Step::default();
        }
        if flags.rst() {
            let lifecycle = match (self.phase, side) {
                (Phase::SynSent, Side::Server) => Lifecycle::Refused,
                (Phase::SynSent, Side::Client) => Lifecycle::Unanswered,
                _ => Lifecycle::Closed(CloseReason::Rst),
            };
            return self.close(lifecycle, now);
        }
        let mut step = Step::default();
        match (flags.syn(), flags.ack(), side) {
            (true, false, Side::Client) => {
                if self.syn_count == 0 {
                    self.start = now;
                }
                self.syn_count = self.syn_count.saturating_add(1);
                self.last_syn = ShortTime::at(now);
            }
            (true, true, Side::Server) => {
                if self.synack_count == 0 {
                    step.lifecycle = Some(Lifecycle::Opened);
                    // Karn: a retransmitted SYN makes the sample ambiguous.
                    if self.syn_count == 1 {
                        step.handshake_rtt = Some((Side::Server, self.last_syn.elapsed(now)));
                    }
                    self.server_isn = SeqNum(seg.seq);
                    self.phase = Phase::SynReceived;
                }
                self.synack_count = self.synack_count.saturating_add(1);
                self.last_synack = ShortTime::at(now);
            }
            (false, true, Side::Client) if self.phase == Phase::SynReceived => {
                if SeqNum(seg.ack) == self.server_isn.plus(1) && self.synack_count == 1 {
                    step.handshake_rtt = Some((Side::Client, self.last_synack.elapsed(now)));
                }
                self.phase = Phase::Established;
            }
            _ => {}
        }
        if flags.fin() {
            self.fin_seen[side.index()] = true;
            if self.fin_seen == [true, true] {
                let closed = self.close(Lifecycle::Closed(CloseReason::Fin), now);
                step.lifecycle = closed.lifecycle;
                step.duration = closed.duration;
            }
        }
        step
    }

    fn close(&mut self, lifecycle: Lifecycle, now: Nanos) -> Step {
        self.phase = Phase::Closed;
        let duration = match lifecycle {
            Lifecycle::Closed(_) if self.start != 0 => Some(now.saturating_sub(self.start)),
            _ => None,
        };
        Step {
            lifecycle: Some(lifecycle),
            duration,
            ..Step::default()
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::decode::{Addr, TcpFlags, TcpOptions};
    use crate::flow::Admission;

    /// A segment between 10.0.0.1 (ports from 1024) and 10.0.0.2 (ports
    /// below 1024), so that both directions of a test connection agree.
    pub fn seg(src_port: u16, dst_port: u16, flags: u8, seq: u32, ack: u32) -> Segment<'static> {
        let host = |port: u16| {
            if port < 1024 {
                Addr::v4([10, 0, 0, 2])
            } else {
                Addr::v4([10, 0, 0, 1])
            }
        };
        Segment {
            src: host(src_port),
            dst: host(dst_port),
            ip_len: 40,
            dont_fragment: true,
            src_port,
            dst_port,
            seq,
            ack,
            flags: TcpFlags(flags),
            window: 1000,
            payload_len: 0,
            options: TcpOptions::default(),
            raw_options: &[],
            tunnels: Default::default(),
        }
    }

    const SYN: u8 = TcpFlags::SYN;
    const SYNACK: u8 = TcpFlags::SYN | TcpFlags::ACK;
    const ACK: u8 = TcpFlags::ACK;
    const FINACK: u8 = TcpFlags::FIN | TcpFlags::ACK;
    const RST: u8 = TcpFlags::RST;

    #[test]
    fn syn_sender_is_client_even_from_the_lower_port() {
        let s = seg(80, 40000, SYN, 1, 0);
        let c = Conn::new(&s, true);
        assert_eq!(c.sender(true), Side::Client);
    }

    #[test]
    fn midstream_lower_port_is_server() {
        let s = seg(40000, 443, ACK, 1, 1);
        let c = Conn::new(&s, true);
        assert_eq!(c.sender(true), Side::Client);
        assert_eq!(c.phase, Phase::Midstream);
        let s = seg(443, 40000, ACK, 1, 1);
        let c = Conn::new(&s, true);
        assert_eq!(c.sender(true), Side::Server);
    }

    #[test]
    fn synack_first_makes_its_sender_the_server() {
        let s = seg(40000, 80, SYNACK, 1, 1);
        let mut c = Conn::new(&s, true);
        assert_eq!(c.sender(true), Side::Server);
        let step = c.on_segment(&s, Side::Server, 10);
        assert_eq!(step.lifecycle, Some(Lifecycle::Opened));
        assert_eq!(step.handshake_rtt, None, "no SYN seen, no RTT");
    }

    #[test]
    fn handshake_gives_both_rtt_legs_and_fin_close_gives_duration() {
        let syn = seg(40000, 80, SYN, 100, 0);
        let mut c = Conn::new(&syn, true);
        assert_eq!(c.on_segment(&syn, Side::Client, 1_000), Step::default());
        let step = c.on_segment(&seg(80, 40000, SYNACK, 500, 101), Side::Server, 301_000);
        assert_eq!(step.lifecycle, Some(Lifecycle::Opened));
        assert_eq!(step.handshake_rtt, Some((Side::Server, 300_000)));
        let step = c.on_segment(&seg(40000, 80, ACK, 101, 501), Side::Client, 351_000);
        assert_eq!(step.handshake_rtt, Some((Side::Client, 50_000)));
        assert_eq!(c.phase, Phase::Established);
        let step = c.on_segment(&seg(40000, 80, FINACK, 101, 501), Side::Client, 5_000_000);
        assert_eq!(step.lifecycle, None);
        let step = c.on_segment(&seg(80, 40000, FINACK, 501, 102), Side::Server, 6_000_001);
        assert_eq!(step.lifecycle, Some(Lifecycle::Closed(CloseReason::Fin)));
        assert_eq!(step.duration, Some(5_999_001), "durations keep nanoseconds");
        assert!(c.is_closed());
    }

    #[test]
    fn retransmitted_syn_gives_no_server_leg_sample() {
        let syn = seg(40000, 80, SYN, 100, 0);
        let mut c = Conn::new(&syn, true);
        c.on_segment(&syn, Side::Client, 0);
        c.on_segment(&syn, Side::Client, 1_000_000_000);
        let step = c.on_segment(
            &seg(80, 40000, SYNACK, 500, 101),
            Side::Server,
            1_000_000_100,
        );
        assert_eq!(step.lifecycle, Some(Lifecycle::Opened));
        assert_eq!(step.handshake_rtt, None);
    }

    #[test]
    fn repeated_synack_opens_once() {
        let syn = seg(40000, 80, SYN, 100, 0);
        let mut c = Conn::new(&syn, true);
        c.on_segment(&syn, Side::Client, 0);
        let synack = seg(80, 40000, SYNACK, 500, 101);
        assert_eq!(
            c.on_segment(&synack, Side::Server, 10).lifecycle,
            Some(Lifecycle::Opened)
        );
        assert_eq!(c.on_segment(&synack, Side::Server, 20).lifecycle, None);
        // The client's ACK now answers a SYN/ACK sent twice: no sample.
        let step = c.on_segment(&seg(40000, 80, ACK, 101, 501), Side::Client, 30);
        assert_eq!(step.handshake_rtt, None);
    }

    #[test]
    fn rst_answering_syn_is_refused() {
        let syn = seg(40000, 81, SYN, 100, 0);
        let mut c = Conn::new(&syn, true);
        c.on_segment(&syn, Side::Client, 0);
        let step = c.on_segment(&seg(81, 40000, RST | ACK, 0, 101), Side::Server, 5);
        assert_eq!(step.lifecycle, Some(Lifecycle::Refused));
        assert_eq!(step.duration, None);
    }

    #[test]
    fn rst_after_open_closes_with_rst() {
        let syn = seg(40000, 80, SYN, 100, 0);
        let mut c = Conn::new(&syn, true);
        // Capture time 0 means "no time" (as in tshark): start later.
        c.on_segment(&syn, Side::Client, 1_000);
        c.on_segment(&seg(80, 40000, SYNACK, 500, 101), Side::Server, 1_010);
        let step = c.on_segment(&seg(40000, 80, RST, 101, 0), Side::Client, 1_050);
        assert_eq!(step.lifecycle, Some(Lifecycle::Closed(CloseReason::Rst)));
        assert_eq!(step.duration, Some(50));
        // Late segments change nothing.
        assert_eq!(
            c.on_segment(&seg(80, 40000, RST, 501, 0), Side::Server, 1_060),
            Step::default()
        );
    }

    #[test]
    fn idle_syn_is_abandoned_and_idle_open_times_out() {
        let syn = seg(40000, 80, SYN, 100, 0);
        let mut c = Conn::new(&syn, true);
        c.on_segment(&syn, Side::Client, 0);
        assert_eq!(c.on_idle(99).lifecycle, Some(Lifecycle::Unanswered));
        let mut m = Conn::new(&seg(40000, 80, ACK, 1, 1), true);
        let step = m.on_idle(99);
        assert_eq!(
            step.lifecycle,
            Some(Lifecycle::Closed(CloseReason::Timeout))
        );
        assert_eq!(step.duration, None, "start unknown mid-stream");
    }

    #[test]
    fn syn_with_a_new_isn_supersedes_the_connection() {
        let first = seg(40000, 80, ACK, 1, 1);
        let mut c = Conn::new(&first, true);
        c.on_segment(&first, Side::Client, 0);
        let syn = seg(40000, 80, SYN, 100, 0);
        assert!(c.is_superseded_by(&syn, Side::Client));
        let mut d = Conn::new(&syn, true);
        d.on_segment(&syn, Side::Client, 0);
        assert!(
            !d.is_superseded_by(&syn, Side::Client),
            "a retransmitted SYN"
        );
        assert!(d.is_superseded_by(&seg(40000, 80, SYN, 999, 0), Side::Client));
        c.on_segment(&seg(40000, 80, RST, 1, 0), Side::Client, 5);
        assert!(c.is_superseded_by(&syn, Side::Client));
    }

    #[test]
    fn a_connection_has_a_mirror_only_while_steady_segments_change_nothing_in_its_life() {
        let syn = seg(40000, 80, SYN, 100, 0);
        let mut c = Conn::new(&syn, true);
        c.on_segment(&syn, Side::Client, 1_000);
        c.on_segment(&seg(80, 40000, SYNACK, 500, 101), Side::Server, 2_000);
        // The server's ACK measures the handshake RTT: the analysis alone
        // would give a mirror, but the client's ACK has yet to establish
        // the connection.
        c.on_segment(&seg(80, 40000, ACK, 501, 101), Side::Server, 2_500);
        assert_eq!(c.phase, Phase::SynReceived);
        assert!(c.analyzer.mirror().is_some());
        assert_eq!(c.mirror(), None, "the client's ACK establishes it");
        let step = c.on_segment(&seg(40000, 80, ACK, 101, 501), Side::Client, 3_000);
        assert_eq!(step.handshake_rtt, Some((Side::Client, 1_000)));
        assert!(c.mirror().is_some(), "established");
        c.on_segment(&seg(40000, 80, RST, 101, 0), Side::Client, 4_000);
        assert_eq!(c.mirror(), None, "closed");
        // Picked up mid-stream: from the first ACK, which gives both
        // sides' sequence numbers; the server's next one is not known yet,
        // so nothing it sends is steady.
        let mut m = Conn::new(&seg(40000, 80, ACK, 1, 1), true);
        assert_eq!(m.mirror(), None, "nothing seen");
        m.on_segment(&seg(40000, 80, ACK, 1, 1), Side::Client, 1_000);
        let mut mirror = m.mirror().expect("mid-stream");
        let reply = seg(80, 40000, ACK, 1, 1);
        let mut run = SteadyRun::default();
        let admission = mirror.admit(&reply, Side::Server, 2_000, &mut run);
        assert_eq!(admission, Admission::Other);
    }
}
