//! The layouts the kernel's counting (bpf/steady.h, bpf/count.h) shares
//! with the analysis: a mirror as user space writes it to arm a connection
//! (`struct tcpx_mirror`), and a run as the kernel hands it up (`struct
//! tcpx_run`). The capture layer moves them as bytes; they are read and
//! written here, beside the types they hold.
//!
//! The tests hold the kernel's copy of the steady rules to these: the
//! layouts as bpf/steady.h states them, and (with the `xdp` feature, as
//! root) the rules run in the kernel through BPF_PROG_TEST_RUN on the
//! frames of random conversations, beside [`Mirror::admit`] on the segments
//! the frame decoder makes of the same frames.

#[cfg(test)]
use super::MirrorDir;
use super::{Mirror, Scale, SteadyRun};
#[cfg(test)]
use crate::flow::rtt::RTT_SLOTS;
use crate::flow::seq::SeqNum;

/// Bytes of `struct tcpx_mirror` and of `struct tcpx_run`.
pub const MIRROR_LEN: usize = 64;
pub const RUN_LEN: usize = 64;

/// Offsets in `struct tcpx_mirror_dir` (32 bytes; the client's first).
mod dir_at {
    pub const NEXT_SEQ: usize = 0;
    pub const MAX_SEQ_TO_BE_ACKED: usize = 4;
    pub const LAST_ACK: usize = 8;
    pub const WINDOW: usize = 12;
    pub const RTT_ENDS: usize = 16;
    pub const SCALE: usize = 24;
    pub const SHIFT: usize = 25;
    pub const FIRST_ACK_PENDING: usize = 26;
    pub const RTT_LEN: usize = 27;
    pub const LEN: usize = 32;
}

/// Offsets in `struct tcpx_run`.
mod run_at {
    pub const LAST: usize = 0;
    pub const LAST_DATA: usize = 8;
    pub const PAYLOAD_BYTES: usize = 16;
    pub const IP_BYTES: usize = 24;
    pub const SEGMENTS: usize = 32;
    pub const DONT_FRAGMENT: usize = 36;
    pub const NEXT_SEQ: usize = 40;
    pub const MAX_SEQ_TO_BE_ACKED: usize = 44;
    pub const LAST_ACK: usize = 48;
    pub const WINDOW: usize = 52;
    pub const HAS_DATA: usize = 56;
    pub const ACK_MOVED: usize = 57;
}

/// `enum tcpx_scale`.
const SCALE_UNKNOWN: u8 = 0;
const SCALE_OFF: u8 = 1;
const SCALE_SHIFT: u8 = 2;

fn put(b: &mut [u8], at: usize, v: &[u8]) {
    b[at..at + v.len()].copy_from_slice(v);
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_ne_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// `m` as `struct tcpx_mirror`.
pub fn mirror_bytes(m: &Mirror) -> [u8; MIRROR_LEN] {
    let mut b = [0u8; MIRROR_LEN];
    for (i, d) in m.dir.iter().enumerate() {
        let b = &mut b[i * dir_at::LEN..(i + 1) * dir_at::LEN];
        put(b, dir_at::NEXT_SEQ, &d.next_seq.0.to_ne_bytes());
        put(
            b,
            dir_at::MAX_SEQ_TO_BE_ACKED,
            &d.max_seq_to_be_acked.0.to_ne_bytes(),
        );
        put(b, dir_at::LAST_ACK, &d.last_ack.0.to_ne_bytes());
        put(b, dir_at::WINDOW, &d.window.to_ne_bytes());
        for (k, end) in d.rtt_ends.iter().enumerate() {
            put(b, dir_at::RTT_ENDS + 4 * k, &end.0.to_ne_bytes());
        }
        (b[dir_at::SCALE], b[dir_at::SHIFT]) = match d.scale {
            Scale::Unknown => (SCALE_UNKNOWN, 0),
            Scale::Off => (SCALE_OFF, 0),
            Scale::Shift(s) => (SCALE_SHIFT, s),
        };
        b[dir_at::FIRST_ACK_PENDING] = d.first_ack_pending as u8;
        b[dir_at::RTT_LEN] = d.rtt_len;
    }
    b
}

/// The mirror in `b`; `None` for bytes no mirror is written as (a scale
/// kind unknown, or a flag that is neither 0 nor 1).
#[cfg(test)]
fn mirror_of(b: &[u8]) -> Option<Mirror> {
    let dir = |b: &[u8]| -> Option<MirrorDir> {
        let mut rtt_ends = [SeqNum(0); RTT_SLOTS];
        for (k, end) in rtt_ends.iter_mut().enumerate() {
            *end = SeqNum(u32_at(b, dir_at::RTT_ENDS + 4 * k));
        }
        Some(MirrorDir {
            next_seq: SeqNum(u32_at(b, dir_at::NEXT_SEQ)),
            max_seq_to_be_acked: SeqNum(u32_at(b, dir_at::MAX_SEQ_TO_BE_ACKED)),
            last_ack: SeqNum(u32_at(b, dir_at::LAST_ACK)),
            window: u32_at(b, dir_at::WINDOW),
            scale: match (b[dir_at::SCALE], b[dir_at::SHIFT]) {
                (SCALE_UNKNOWN, 0) => Scale::Unknown,
                (SCALE_OFF, 0) => Scale::Off,
                (SCALE_SHIFT, s) => Scale::Shift(s),
                _ => return None,
            },
            first_ack_pending: match b[dir_at::FIRST_ACK_PENDING] {
                0 => false,
                1 => true,
                _ => return None,
            },
            rtt_ends,
            rtt_len: b[dir_at::RTT_LEN],
        })
    };
    Some(Mirror {
        dir: [dir(&b[..dir_at::LEN])?, dir(&b[dir_at::LEN..MIRROR_LEN])?],
    })
}

#[cfg(test)]
fn run_bytes(r: &SteadyRun) -> [u8; RUN_LEN] {
    let mut b = [0u8; RUN_LEN];
    put(&mut b, run_at::LAST, &r.last.to_ne_bytes());
    put(
        &mut b,
        run_at::LAST_DATA,
        &r.last_data.unwrap_or(0).to_ne_bytes(),
    );
    put(
        &mut b,
        run_at::PAYLOAD_BYTES,
        &r.payload_bytes.to_ne_bytes(),
    );
    put(&mut b, run_at::IP_BYTES, &r.ip_bytes.to_ne_bytes());
    put(&mut b, run_at::SEGMENTS, &r.segments.to_ne_bytes());
    put(
        &mut b,
        run_at::DONT_FRAGMENT,
        &r.dont_fragment.to_ne_bytes(),
    );
    put(&mut b, run_at::NEXT_SEQ, &r.next_seq.0.to_ne_bytes());
    let max_seq = r.max_seq_to_be_acked.0.to_ne_bytes();
    put(&mut b, run_at::MAX_SEQ_TO_BE_ACKED, &max_seq);
    put(&mut b, run_at::LAST_ACK, &r.last_ack.0.to_ne_bytes());
    put(&mut b, run_at::WINDOW, &r.window.to_ne_bytes());
    b[run_at::HAS_DATA] = r.last_data.is_some() as u8;
    b[run_at::ACK_MOVED] = r.ack_moved as u8;
    b
}

/// The run in `b`, a `struct tcpx_run` (at least [`RUN_LEN`] bytes);
/// `None` for bytes no run is written as.
pub fn run_of(b: &[u8]) -> Option<SteadyRun> {
    if b.len() < RUN_LEN {
        return None;
    }
    let flag = |v: u8| match v {
        0 => Some(false),
        1 => Some(true),
        _ => None,
    };
    Some(SteadyRun {
        segments: u32_at(b, run_at::SEGMENTS),
        payload_bytes: u64_at(b, run_at::PAYLOAD_BYTES),
        ip_bytes: u64_at(b, run_at::IP_BYTES),
        dont_fragment: u32_at(b, run_at::DONT_FRAGMENT),
        last: u64_at(b, run_at::LAST),
        last_data: match (flag(b[run_at::HAS_DATA])?, u64_at(b, run_at::LAST_DATA)) {
            (true, t) => Some(t),
            (false, 0) => None,
            // A time written for no data.
            (false, _) => return None,
        },
        ack_moved: flag(b[run_at::ACK_MOVED])?,
        next_seq: SeqNum(u32_at(b, run_at::NEXT_SEQ)),
        max_seq_to_be_acked: SeqNum(u32_at(b, run_at::MAX_SEQ_TO_BE_ACKED)),
        last_ack: SeqNum(u32_at(b, run_at::LAST_ACK)),
        window: u32_at(b, run_at::WINDOW),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stated(macro_name: &str) -> Vec<(&'static str, usize)> {
        crate::c_header::stated(include_str!("../../../../bpf/steady.h"), macro_name)
    }

    #[test]
    fn offsets_match_the_c_header() {
        use dir_at as d;
        use run_at as r;
        let dir = [
            ("next_seq", d::NEXT_SEQ),
            ("max_seq_to_be_acked", d::MAX_SEQ_TO_BE_ACKED),
            ("last_ack", d::LAST_ACK),
            ("window", d::WINDOW),
            ("rtt_ends", d::RTT_ENDS),
            ("scale", d::SCALE),
            ("shift", d::SHIFT),
            ("first_ack_pending", d::FIRST_ACK_PENDING),
            ("rtt_len", d::RTT_LEN),
        ];
        assert_eq!(stated("TCPX_MIRROR_AT"), dir);
        let run = [
            ("last", r::LAST),
            ("last_data", r::LAST_DATA),
            ("payload_bytes", r::PAYLOAD_BYTES),
            ("ip_bytes", r::IP_BYTES),
            ("segments", r::SEGMENTS),
            ("dont_fragment", r::DONT_FRAGMENT),
            ("next_seq", r::NEXT_SEQ),
            ("max_seq_to_be_acked", r::MAX_SEQ_TO_BE_ACKED),
            ("last_ack", r::LAST_ACK),
            ("window", r::WINDOW),
            ("has_data", r::HAS_DATA),
            ("ack_moved", r::ACK_MOVED),
        ];
        assert_eq!(stated("TCPX_RUN_AT"), run);
        let header = include_str!("../../../../bpf/steady.h");
        assert!(header.contains("sizeof(struct tcpx_mirror) == 64"));
        assert!(header.contains("sizeof(struct tcpx_run) == 64"));
        assert!(header.contains(&format!("#define TCPX_RTT_SLOTS {RTT_SLOTS}")));
    }

    #[test]
    fn mirrors_and_runs_read_back_as_written() {
        let mut m = Mirror {
            dir: [MirrorDir {
                next_seq: SeqNum(1),
                max_seq_to_be_acked: SeqNum(2),
                last_ack: SeqNum(3),
                window: u32::MAX,
                scale: Scale::Shift(14),
                first_ack_pending: true,
                rtt_ends: [SeqNum(5), SeqNum(6)],
                rtt_len: 2,
            }; 2],
        };
        m.dir[1].scale = Scale::Off;
        m.dir[1].rtt_len = 1;
        assert_eq!(mirror_of(&mirror_bytes(&m)), Some(m));
        let run = SteadyRun {
            segments: 7,
            payload_bytes: 1 << 40,
            ip_bytes: (1 << 40) + 280,
            dont_fragment: 7,
            last: 9,
            last_data: Some(8),
            ack_moved: true,
            next_seq: SeqNum(10),
            max_seq_to_be_acked: SeqNum(11),
            last_ack: SeqNum(12),
            window: 13,
        };
        assert_eq!(run_of(&run_bytes(&run)), Some(run));
        let empty = SteadyRun::default();
        assert_eq!(run_of(&run_bytes(&empty)), Some(empty));
        let mut bad = run_bytes(&run);
        bad[run_at::HAS_DATA] = 2;
        assert_eq!(run_of(&bad), None);
        let mut stray = run_bytes(&empty);
        stray[run_at::LAST_DATA] = 1;
        assert_eq!(run_of(&stray), None, "a time of data with none");
    }
}

#[cfg(all(test, feature = "xdp"))]
mod in_the_kernel {
    use super::super::super::tests::random_conversations;
    use super::super::{Admission, Analyzer};
    use super::*;
    use crate::decode::fixtures::{eth_ipv4_tcp, eth_ipv6_tcp, with_vlan_tags, xorshift, TcpSpec};
    use crate::decode::{decode, LinkType, Segment};
    use crate::flow::key::Side;
    use crate::flow::Nanos;
    use aya::maps::{Array, MapData};
    use aya::programs::{TestRun, TestRunOptions, Xdp};
    use aya::Ebpf;

    /// The object build.rs compiles from bpf/steady_check.bpf.c.
    static OBJECT: &[u8] =
        aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/steady_check.bpf.o"));

    /// `struct tcpx_check`: the mirror, the runs by side, the time and the
    /// side in; the mirror, the runs and the admission out.
    const CHECK_LEN: usize = 208;
    const AT_RUNS: usize = 64;
    const AT_NOW: usize = 192;
    const AT_SIDE: usize = 200;
    const AT_ADMISSION: usize = 204;
    /// The admissions of `enum tcpx_admission`, and what the check program
    /// says of a frame it could not read.
    const OTHER: u32 = 0;
    const FOLLOWED: u32 = 1;
    const COUNTED: u32 = 2;
    const NOT_SUMMARISED: u32 = 0xff;

    /// The check program, loaded.
    struct Check {
        ebpf: Ebpf,
    }

    impl Check {
        fn load() -> Check {
            let mut ebpf = Ebpf::load(OBJECT).expect("the check object loads (as root)");
            let program: &mut Xdp = ebpf
                .program_mut("tcpx_steady_check")
                .expect("the check program")
                .try_into()
                .expect("an XDP program");
            program
                .load()
                .expect("the verifier accepts the check program");
            Check { ebpf }
        }

        /// What the kernel's rules make of `frame` from `side` at `now`,
        /// starting from `mirror` and `runs`: the admission, and the
        /// mirror and runs after it.
        fn admit(
            &mut self,
            frame: &[u8],
            side: Side,
            now: Nanos,
            mirror: &Mirror,
            runs: &[SteadyRun; 2],
        ) -> (u32, Mirror, [SteadyRun; 2]) {
            let mut input = [0u8; CHECK_LEN];
            put(&mut input, 0, &mirror_bytes(mirror));
            for (i, run) in runs.iter().enumerate() {
                put(&mut input, AT_RUNS + i * RUN_LEN, &run_bytes(run));
            }
            put(&mut input, AT_NOW, &now.to_ne_bytes());
            put(&mut input, AT_SIDE, &(side.index() as u32).to_ne_bytes());
            put(&mut input, AT_ADMISSION, &u32::MAX.to_ne_bytes());
            let mut map: Array<&mut MapData, [u8; CHECK_LEN]> = self
                .ebpf
                .map_mut("tcpx_check")
                .expect("the check map")
                .try_into()
                .expect("an array");
            map.set(0, input, 0).expect("the check is written");
            let program: &Xdp = self
                .ebpf
                .program("tcpx_steady_check")
                .expect("the check program")
                .try_into()
                .expect("an XDP program");
            let opts = TestRunOptions {
                data_in: Some(frame),
                ..TestRunOptions::default()
            };
            let result = program.test_run(opts).expect("the check runs");
            assert_eq!(result.return_value, 2, "XDP_PASS");
            let map: Array<&MapData, [u8; CHECK_LEN]> = self
                .ebpf
                .map("tcpx_check")
                .expect("the check map")
                .try_into()
                .expect("an array");
            let out = map.get(&0, 0).expect("the check is read");
            let run = |i: usize| {
                let at = AT_RUNS + i * RUN_LEN;
                run_of(&out[at..at + RUN_LEN]).expect("a run")
            };
            (
                u32_at(&out, AT_ADMISSION),
                mirror_of(&out[..MIRROR_LEN]).expect("a mirror"),
                [run(0), run(1)],
            )
        }
    }

    fn code(a: Admission) -> u32 {
        match a {
            Admission::Other => OTHER,
            Admission::Followed => FOLLOWED,
            Admission::Counted => COUNTED,
        }
    }

    /// Option bytes for a segment: a window-scale option if it has one,
    /// among what Linux and others send (timestamps, SACK blocks), or
    /// among options the decoder stops its walk at (an end of list, a
    /// length too short or too long), which hide a window-scale option
    /// behind them, or kind 3 of the wrong length.
    fn options(window_scale: Option<u8>, rng: &mut u64) -> Vec<u8> {
        let ts = [1, 1, 8, 10, 0, 0, 0, 7, 0, 0, 0, 9];
        let sack = [1, 1, 5, 18, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 4, 0];
        let mut o = match xorshift(rng) % 10 {
            0 | 1 => Vec::new(),
            2 | 3 => ts.to_vec(),
            4 => sack.to_vec(),
            5 => [&ts[..], &sack[..]].concat(),
            // An end of list, then what would read as an option.
            6 => vec![0, 2, 1, 1],
            // A length too short, or past the end.
            7 => vec![1, 5, [0, 1, 30][(xorshift(rng) % 3) as usize], 0],
            // Kind 3 of a length other than 3: not a window-scale option.
            8 => vec![3, 4, 7, 0],
            _ => vec![1, 3, 2, 1],
        };
        if let Some(shift) = window_scale {
            // Before or after the rest.
            let ws = [1, 3, 3, shift];
            if xorshift(rng).is_multiple_of(2) {
                o.splice(0..0, ws);
            } else {
                o.extend_from_slice(&ws);
            }
        }
        o.truncate(40);
        o
    }

    /// The frame of `seg` (IPv4, or IPv6 for `v6`), with the option bytes
    /// `options`, and now and then: IPv4 options or the DF bit clear,
    /// IPv6 extension headers, VLAN tags, no stated length (0, as
    /// segmentation offload leaves it), Ethernet padding past the IP
    /// length.
    fn frame_of(seg: &Segment, options: Vec<u8>, v6: bool, rng: &mut u64) -> Vec<u8> {
        let mut r = |n: u64| xorshift(rng) % n;
        let spec = TcpSpec {
            seq: seg.seq,
            ack: seg.ack,
            flags: seg.flags.0,
            window: seg.window,
            payload: seg.payload_len as usize,
            options,
            ip_options: [0, 0, 4, 8][r(4) as usize],
            ..TcpSpec::default()
        };
        // Where the IP header starts, and its length field.
        let (mut f, length_at) = if v6 {
            let exts: &[(u8, usize)] = match r(4) {
                0 => &[(0, 8)],
                1 => &[(0, 8), (60, 16)],
                _ => &[],
            };
            (eth_ipv6_tcp(&spec, exts), 14 + 4)
        } else {
            let mut f = eth_ipv4_tcp(&spec);
            if r(4) == 0 {
                f[14 + 6] &= !0x40;
            }
            (f, 14 + 2)
        };
        if r(8) == 0 {
            f[length_at] = 0;
            f[length_at + 1] = 0;
        } else if r(4) == 0 {
            f.resize(f.len() + r(20) as usize, 0);
        }
        match r(8) {
            0 => with_vlan_tags(&f, &[0x8100]),
            1 => with_vlan_tags(&f, &[0x88a8, 0x8100]),
            _ => f,
        }
    }

    /// The kernel's answer for `seg` beside the Rust rules' (admission,
    /// mirror after, runs after), from the mirror `before`.
    fn compare(
        got: (u32, Mirror, [SteadyRun; 2]),
        want: (Admission, Mirror, [SteadyRun; 2]),
        seg: &Segment,
        before: &Mirror,
    ) {
        assert_ne!(got.0, NOT_SUMMARISED, "frame of {seg:?}");
        assert_eq!(got.0, code(want.0), "admission of {seg:?} from {before:?}");
        assert_eq!(got.1, want.1, "mirror after {seg:?} from {before:?}");
        assert_eq!(got.2, want.2, "runs after {seg:?} from {before:?}");
    }

    /// `m` changed at random where the rules read it, around `seg` from
    /// `side`: sequence numbers unknown or half the sequence space from the
    /// segment's, a zero window, the SYN marks flipped, another scale, the
    /// peer's window edge put at the segment's end (as the scale and mark read it, so
    /// that the segment fills it), timed segments made up around the ACK
    /// and the end.
    fn perturbed(m: Mirror, side: Side, seg: &Segment, rng: &mut u64) -> Mirror {
        let mut r = |n: u64| xorshift(rng) % n;
        let mut m = m;
        let end = SeqNum(seg.seq).plus(seg.payload_len);
        let ack = SeqNum(seg.ack);
        for d in m.dir.iter_mut() {
            if r(2) == 0 {
                d.first_ack_pending = !d.first_ack_pending;
            }
            if r(3) == 0 {
                d.scale = match r(4) {
                    0 => Scale::Unknown,
                    1 => Scale::Off,
                    _ => Scale::Shift(r(15) as u8),
                };
            }
            // Unknown (0) where the analysis may not know them yet.
            if r(8) == 0 {
                d.max_seq_to_be_acked = SeqNum(0);
            }
            if r(8) == 0 {
                d.last_ack = SeqNum(0);
            }
            if r(16) == 0 {
                d.next_seq = SeqNum(0);
            }
            if r(8) == 0 {
                d.window = 0;
            }
            if r(3) == 0 {
                d.rtt_len = r(RTT_SLOTS as u64 + 1) as u8;
                d.rtt_ends = [SeqNum(0); RTT_SLOTS];
                for k in 0..d.rtt_len as usize {
                    let near = if r(2) == 0 { ack } else { end };
                    d.rtt_ends[k] = near.plus((r(3) as u32).wrapping_sub(1));
                }
            }
        }
        // Half the sequence space away, where the order reads as less
        // either way.
        let half = |x: SeqNum| SeqNum(x.0 ^ 0x8000_0000);
        for d in m.dir.iter_mut() {
            match r(12) {
                0 => d.last_ack = half(ack),
                1 => d.max_seq_to_be_acked = half(ack),
                2 => d.next_seq = half(end),
                3 if d.rtt_len > 0 => d.rtt_ends[0] = half(ack),
                4 => d.last_ack = half(end),
                _ => {}
            }
        }
        let rev = &mut m.dir[1 - side.index()];
        if r(2) == 0 {
            let shift = match (rev.first_ack_pending, rev.scale) {
                (false, Scale::Shift(s)) => s as u32,
                _ => 0,
            };
            rev.window = r(1 << 16) as u32;
            rev.last_ack = SeqNum(end.0.wrapping_sub(rev.window.wrapping_shl(shift)));
        }
        m
    }

    /// Payloads longer than this make no test frame (BPF_PROG_TEST_RUN
    /// takes an XDP frame of at most a page, less its head and tail room).
    const MAX_TEST_PAYLOAD: u32 = 3000;

    /// The random conversations of the analysis's tests (every kind of
    /// trouble), framed with all sorts of options: wherever the analyzer
    /// gives a mirror, the kernel's rules, on the frame, give the same
    /// admission, mirror and runs as `Mirror::admit` on the segment the
    /// frame decoder makes of it; so they do on that mirror changed at
    /// random. Segments too long for a test frame are analysed without a
    /// mirror, as if handed up.
    #[test]
    fn the_kernels_rules_admit_every_segment_as_the_mirror_does() {
        if crate::test_support::skip_bpf_tests() {
            return;
        }
        let mut check = Check::load();
        let mut rng = 0x5eed_0021u64;
        let mut seen = [0u32; 3];
        let mut compared = 0u32;
        for (n, conversation) in random_conversations(0x5eed_0021, 120)
            .into_iter()
            .enumerate()
        {
            let v6 = n % 3 == 0;
            let mut analyzer = Analyzer::default();
            let mut mirror: Option<Mirror> = None;
            let mut runs = [SteadyRun::default(); 2];
            for (side, generated, now) in conversation {
                if generated.payload_len > MAX_TEST_PAYLOAD {
                    // Analysed, as a segment the kernel handed up.
                    for side in [Side::Client, Side::Server] {
                        analyzer.on_steady_run(side, &runs[side.index()]);
                    }
                    runs = [SteadyRun::default(); 2];
                    analyzer.on_segment(&generated, side, now);
                    mirror = analyzer.mirror();
                    continue;
                }
                let options = options(generated.options.window_scale, &mut rng);
                let frame = frame_of(&generated, options, v6, &mut rng);
                let seg = decode(LinkType::Ethernet, &frame, frame.len() as u32)
                    .expect("the test frame decodes");
                // The rules agree on any mirror, not only on those the
                // analysis reaches: each segment is also tried on a mirror
                // changed at random, and that one is then dropped.
                if let Some(m) = mirror {
                    let changed = perturbed(m, side, &seg, &mut rng);
                    let got = check.admit(&frame, side, now, &changed, &runs);
                    let (mut after, mut after_runs) = (changed, runs);
                    let want = after.admit(&seg, side, now, &mut after_runs[side.index()]);
                    compare(got, (want, after, after_runs), &seg, &changed);
                    seen[code(want) as usize] += 1;
                    compared += 1;
                }
                let admission = match &mut mirror {
                    Some(m) => {
                        let (before, runs_before) = (*m, runs);
                        let want = m.admit(&seg, side, now, &mut runs[side.index()]);
                        let got = check.admit(&frame, side, now, &before, &runs_before);
                        compare(got, (want, *m, runs), &seg, &before);
                        seen[code(want) as usize] += 1;
                        compared += 1;
                        Some(want)
                    }
                    None => None,
                };
                if admission == Some(Admission::Counted) {
                    continue;
                }
                for side in [Side::Client, Side::Server] {
                    analyzer.on_steady_run(side, &runs[side.index()]);
                }
                runs = [SteadyRun::default(); 2];
                analyzer.on_segment(&seg, side, now);
                if admission != Some(Admission::Followed) {
                    mirror = analyzer.mirror();
                }
            }
        }
        let [other, followed, counted] = seen;
        assert!(
            counted > compared / 8 && followed > compared / 50 && other > compared / 20,
            "{counted} counted, {followed} followed, {other} other of {compared}"
        );
    }
}
