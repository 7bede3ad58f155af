//! Kernel summaries: the fixed-size records that the xdp backend's eBPF
//! programs (bpf/tcpx.bpf.c) write for each TCP segment, in the layout of
//! bpf/record.h. The kernel only finds the headers and copies their fields;
//! the length rules, the option parser and the segment built from them are
//! the frame decoder's own, so a summary and the frame it came from give
//! the same [`Segment`]. (bpf/steady.h copies the length rule and the
//! option walk into C for the kernel's steady rules;
//! flow/analysis/steady/kernel.rs holds the C copy to this code.)

use super::{assemble, ip, ip::IpPacket, Addr, DecodeError, DecodeErrorKind, Segment, TcpFields};
use super::{TcpFlags, MAX_TCP_OPTIONS};

/// Bytes of one record (`sizeof(struct tcpx_record)`).
pub const RECORD_LEN: usize = 128;

/// Field offsets in `struct tcpx_record`; a test reads them back out of
/// bpf/record.h.
mod at {
    pub const TS_NS: usize = 0;
    pub const IFINDEX: usize = 8;
    pub const L3_LEN: usize = 12;
    pub const IP_STATED_LEN: usize = 16;
    pub const SEQ: usize = 20;
    pub const ACK: usize = 24;
    pub const IP_HEADER_LEN: usize = 28;
    pub const TCP_HEADER_LEN: usize = 30;
    pub const SRC_PORT: usize = 32;
    pub const DST_PORT: usize = 34;
    pub const WINDOW: usize = 36;
    pub const GSO_SIZE: usize = 38;
    pub const GSO_SEGS: usize = 40;
    pub const FLAGS: usize = 42;
    pub const IP_VERSION: usize = 43;
    pub const DONT_FRAGMENT: usize = 44;
    pub const STATUS: usize = 45;
    pub const HOOK: usize = 46;
    pub const OPTIONS_LEN: usize = 47;
    pub const SRC: usize = 48;
    pub const DST: usize = 64;
    pub const OPTIONS: usize = 80;
    pub const FLOW_SEQ: usize = 120;
    pub const ARMED: usize = 124;
}

/// Bytes of a run record (`sizeof(struct tcpx_run_record)`, bpf/count.h):
/// segments the kernel counted instead of handing them up.
pub const RUN_RECORD_LEN: usize = 192;

/// Offsets in `struct tcpx_run_record` of the fields a segment's record
/// does not have; the others sit where they sit in `struct tcpx_record`
/// (a test reads both back out of bpf/count.h).
mod run_at {
    pub const GENERATION: usize = 12;
    pub const SIDE: usize = 16;
    pub const RUN: usize = 128;
}

/// `TCPX_STEADY_RUN` of `enum tcpx_hook`: a run record.
const HOOK_STEADY_RUN: u8 = 2;

/// Where in the kernel a record was taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hook {
    /// XDP, on the interface's ingress.
    XdpIngress,
    /// TC (clsact) egress.
    TcEgress,
}

/// What the capture layer needs of a record besides the segment: when and
/// where it was taken, and how many wire segments it stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordMeta {
    /// `bpf_ktime_get_ns()`: CLOCK_MONOTONIC nanoseconds.
    pub monotonic_ns: u64,
    pub ifindex: u32,
    /// Bytes on the wire from the IP header on.
    pub l3_len: u32,
    /// The skb's GSO segment size on TC egress (0: not a super-packet).
    pub gso_size: u16,
    /// ...and the number of segments it stands for (0: not a super-packet).
    pub gso_segs: u16,
    pub hook: Option<Hook>,
    /// The record's number among its connection's when the kernel counts
    /// steady segments (bpf/count.h), from 1; 0 when it does not.
    pub flow_seq: u32,
    /// With a `flow_seq`: the kernel goes on counting the connection's
    /// steady segments after this one.
    pub armed: bool,
}

/// The meta fields of a record; `None` when it is not a whole record.
pub fn record_meta(record: &[u8]) -> Option<RecordMeta> {
    let r: &[u8; RECORD_LEN] = record.try_into().ok()?;
    Some(RecordMeta {
        monotonic_ns: u64::from_ne_bytes(bytes(r, at::TS_NS)),
        ifindex: u32_at(r, at::IFINDEX),
        l3_len: u32_at(r, at::L3_LEN),
        gso_size: u16_at(r, at::GSO_SIZE),
        gso_segs: u16_at(r, at::GSO_SEGS),
        hook: match r[at::HOOK] {
            0 => Some(Hook::XdpIngress),
            1 => Some(Hook::TcEgress),
            _ => None,
        },
        flow_seq: u32_at(r, at::FLOW_SEQ),
        armed: r[at::ARMED] != 0,
    })
}

/// A record's connection and its number among the connection's records,
/// when the kernel counts steady segments and numbers what it hands up
/// (bpf/count.h): for a segment's record and a run record alike.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Numbered {
    pub ifindex: u32,
    /// The sender's address (IPv4 mapped into IPv6) and port, then the
    /// receiver's.
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub src_port: u16,
    pub dst_port: u16,
    /// From 1; 0: not numbered.
    pub flow_seq: u32,
    /// A segment after which the kernel goes on counting the connection's
    /// steady segments (always false for a run).
    pub armed: bool,
    /// A run record.
    pub is_run: bool,
}

/// The numbering of a record of either kind; `None` when it is neither.
pub fn numbered(record: &[u8]) -> Option<Numbered> {
    let is_run = match record.len() {
        RECORD_LEN => false,
        RUN_RECORD_LEN => true,
        _ => return None,
    };
    let r: &[u8; RECORD_LEN] = record[..RECORD_LEN].try_into().ok()?;
    Some(Numbered {
        ifindex: u32_at(r, at::IFINDEX),
        src: bytes(r, at::SRC),
        dst: bytes(r, at::DST),
        src_port: u16_at(r, at::SRC_PORT),
        dst_port: u16_at(r, at::DST_PORT),
        flow_seq: u32_at(r, at::FLOW_SEQ),
        armed: !is_run && r[at::ARMED] != 0,
        is_run,
    })
}

/// Whether `record` is a run record rather than a segment's.
pub fn is_run_record(record: &[u8]) -> bool {
    record.len() == RUN_RECORD_LEN && record[at::HOOK] == HOOK_STEADY_RUN
}

/// A run record: segments of one side of a connection that the kernel
/// counted, from its sender to its receiver.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RunRecord<'a> {
    pub src: Addr,
    pub dst: Addr,
    pub src_port: u16,
    pub dst_port: u16,
    /// The sender is the connection's client.
    pub client_sent: bool,
    /// The connection's generation, as user space gave it when it armed
    /// the connection.
    pub generation: u32,
    /// The run, a `struct tcpx_run` (read by the flow analysis).
    pub run: &'a [u8],
}

/// The run record in `record`; `None` when it is not one.
pub fn run_record(record: &[u8]) -> Option<RunRecord<'_>> {
    if !is_run_record(record) {
        return None;
    }
    let r: &[u8; RECORD_LEN] = record[..RECORD_LEN].try_into().ok()?;
    let client_sent = match r[run_at::SIDE] {
        0 => true,
        1 => false,
        _ => return None,
    };
    Some(RunRecord {
        src: Addr::v6(bytes(r, at::SRC)),
        dst: Addr::v6(bytes(r, at::DST)),
        src_port: u16_at(r, at::SRC_PORT),
        dst_port: u16_at(r, at::DST_PORT),
        client_sent,
        generation: u32_at(r, run_at::GENERATION),
        run: &record[run_at::RUN..],
    })
}

/// Turns a record into a segment, or into the reason the kernel (or the
/// length rules) refused it.
#[inline(always)]
pub(super) fn decode(record: &[u8]) -> Result<Segment<'_>, DecodeError> {
    let Ok(r) = <&[u8; RECORD_LEN]>::try_from(record) else {
        return Err(DecodeError::new(
            DecodeErrorKind::TruncatedLink,
            0,
            RECORD_LEN,
            record.len(),
        ));
    };
    if let Some(kind) = status_kind(r[at::STATUS]) {
        return Err(DecodeError::new(kind, 0, 0, 0));
    }
    let (src, dst) = match r[at::IP_VERSION] {
        4 | 6 => (Addr::v6(bytes(r, at::SRC)), Addr::v6(bytes(r, at::DST))),
        _ => return Err(DecodeError::new(DecodeErrorKind::BadIpVersion, 0, 0, 0)),
    };
    let ip_header_len = u16_at(r, at::IP_HEADER_LEN) as usize;
    let packet = IpPacket::new(
        src,
        dst,
        r[at::DONT_FRAGMENT] != 0,
        ip::PROTO_TCP,
        ip_header_len,
        u32_at(r, at::IP_STATED_LEN) as usize,
        u32_at(r, at::L3_LEN) as usize,
        0,
    )?;
    let header_len = u16_at(r, at::TCP_HEADER_LEN) as usize;
    let options_len = r[at::OPTIONS_LEN] as usize;
    if header_len < 20 || header_len - 20 != options_len || options_len > MAX_TCP_OPTIONS {
        return Err(DecodeError::new(
            DecodeErrorKind::BadTcpHeaderLength,
            ip_header_len,
            20 + options_len,
            header_len,
        ));
    }
    let tcp = TcpFields {
        src_port: u16_at(r, at::SRC_PORT),
        dst_port: u16_at(r, at::DST_PORT),
        seq: u32_at(r, at::SEQ),
        ack: u32_at(r, at::ACK),
        flags: TcpFlags(r[at::FLAGS]),
        window: u16_at(r, at::WINDOW),
        header_len,
        raw_options: &record[at::OPTIONS..at::OPTIONS + options_len],
        options_cut: false,
    };
    assemble(packet, tcp, ip_header_len)
}

/// The decode error a record's status stands for; `None` for a good one.
/// (Values of `enum tcpx_status`.)
fn status_kind(status: u8) -> Option<DecodeErrorKind> {
    Some(match status {
        0 => return None,
        1 => DecodeErrorKind::TruncatedIp,
        2 => DecodeErrorKind::TruncatedTcp,
        3 => DecodeErrorKind::BadIpVersion,
        4 => DecodeErrorKind::BadIpHeaderLength,
        5 => DecodeErrorKind::BadTcpHeaderLength,
        6 => DecodeErrorKind::Ipv6ExtensionChain,
        7 => DecodeErrorKind::IpFragment,
        8 => DecodeErrorKind::BadIpLength,
        9 => DecodeErrorKind::UnopenedTunnel,
        // A program newer than this reader: say what can be said.
        _ => DecodeErrorKind::NotIp,
    })
}

fn bytes<const N: usize>(r: &[u8; RECORD_LEN], at: usize) -> [u8; N] {
    let mut out = [0; N];
    out.copy_from_slice(&r[at..at + N]);
    out
}

fn u16_at(r: &[u8; RECORD_LEN], at: usize) -> u16 {
    u16::from_ne_bytes(bytes(r, at))
}

fn u32_at(r: &[u8; RECORD_LEN], at: usize) -> u32 {
    u32::from_ne_bytes(bytes(r, at))
}

/// Records as the kernel programs write them, for tests and benchmarks:
/// what `summarise()` in bpf/summarise.h makes of a frame.
pub mod encode {
    use super::{at, RECORD_LEN};

    /// `record` numbered as the counting programs number it (bpf/count.h).
    pub fn numbered(mut record: [u8; RECORD_LEN], flow_seq: u32, armed: bool) -> [u8; RECORD_LEN] {
        record[at::FLOW_SEQ..at::FLOW_SEQ + 4].copy_from_slice(&flow_seq.to_ne_bytes());
        record[at::ARMED] = armed as u8;
        record
    }

    /// The record of an untagged Ethernet frame holding IPv4 or IPv6 (no
    /// extension headers) and TCP, whole, as the XDP program would write
    /// it; `None` for any other frame.
    /// `wire_len` is the frame's length on the wire.
    pub fn record_of_frame(frame: &[u8], wire_len: u32, ts: u64) -> Option<[u8; RECORD_LEN]> {
        let ethertype = u16::from_be_bytes([*frame.get(12)?, *frame.get(13)?]);
        let l3 = frame.get(14..)?;
        let version = l3.first()? >> 4;
        let ip_len = match (ethertype, version) {
            (0x0800, 4) => (l3[0] & 0xf) as usize * 4,
            (0x86dd, 6) if l3.get(6) == Some(&6) => 40,
            _ => return None,
        };
        let proto_tcp = version == 6 || l3.get(9) == Some(&6);
        let t = l3.get(ip_len..)?;
        let doff = (*t.get(12)? >> 4) as usize * 4;
        if !proto_tcp || doff < 20 || t.len() < doff {
            return None;
        }
        Some(encode(frame, wire_len.max(frame.len() as u32) - 14, ts))
    }

    fn encode(frame: &[u8], l3_wire_len: u32, ts: u64) -> [u8; RECORD_LEN] {
        let mut r = [0u8; RECORD_LEN];
        let l3 = &frame[14..];
        let put =
            |r: &mut [u8; RECORD_LEN], at: usize, b: &[u8]| r[at..at + b.len()].copy_from_slice(b);
        put(&mut r, at::TS_NS, &ts.to_ne_bytes());
        put(&mut r, at::IFINDEX, &7u32.to_ne_bytes());
        put(&mut r, at::L3_LEN, &l3_wire_len.to_ne_bytes());
        let (ip_len, stated) = match l3[0] >> 4 {
            4 => {
                r[at::IP_VERSION] = 4;
                r[at::DONT_FRAGMENT] = (l3[6] & 0x40 != 0) as u8;
                r[at::SRC + 10] = 0xff;
                r[at::SRC + 11] = 0xff;
                r[at::DST + 10] = 0xff;
                r[at::DST + 11] = 0xff;
                put(&mut r, at::SRC + 12, &l3[12..16]);
                put(&mut r, at::DST + 12, &l3[16..20]);
                let ihl = (l3[0] & 0xf) as usize * 4;
                (ihl, u16::from_be_bytes([l3[2], l3[3]]) as u32)
            }
            _ => {
                r[at::IP_VERSION] = 6;
                put(&mut r, at::SRC, &l3[8..24]);
                put(&mut r, at::DST, &l3[24..40]);
                let payload = u16::from_be_bytes([l3[4], l3[5]]) as u32;
                (40, if payload == 0 { 0 } else { payload + 40 })
            }
        };
        put(&mut r, at::IP_STATED_LEN, &stated.to_ne_bytes());
        put(&mut r, at::IP_HEADER_LEN, &(ip_len as u16).to_ne_bytes());
        let t = &l3[ip_len..];
        let be16 = |i: usize| u16::from_be_bytes([t[i], t[i + 1]]);
        let be32 = |i: usize| u32::from_be_bytes([t[i], t[i + 1], t[i + 2], t[i + 3]]);
        let doff = (t[12] >> 4) as usize * 4;
        put(&mut r, at::SRC_PORT, &be16(0).to_ne_bytes());
        put(&mut r, at::DST_PORT, &be16(2).to_ne_bytes());
        put(&mut r, at::SEQ, &be32(4).to_ne_bytes());
        put(&mut r, at::ACK, &be32(8).to_ne_bytes());
        r[at::FLAGS] = t[13];
        put(&mut r, at::WINDOW, &be16(14).to_ne_bytes());
        put(&mut r, at::TCP_HEADER_LEN, &(doff as u16).to_ne_bytes());
        r[at::OPTIONS_LEN] = (doff - 20) as u8;
        put(&mut r, at::OPTIONS, &t[20..doff]);
        r
    }
}

#[cfg(test)]
mod tests {
    use super::at::{IP_STATED_LEN, L3_LEN, OPTIONS_LEN, TCP_HEADER_LEN};
    use super::encode::record_of_frame;
    use super::*;
    use crate::decode::fixtures::*;
    use crate::decode::{decode as decode_frame, LinkType};

    fn frames() -> Vec<Vec<u8>> {
        let syn = syn_with_options();
        let sack = TcpSpec {
            // NOP, NOP, SACK with one block.
            options: vec![1, 1, 5, 10, 0, 0, 0, 1, 0, 0, 0, 9],
            ..TcpSpec::default()
        };
        vec![
            eth_ipv4_tcp(&TcpSpec::default()),
            eth_ipv4_tcp(&syn),
            eth_ipv4_tcp(&sack),
            eth_ipv6_tcp(&TcpSpec::default(), &[]),
            eth_ipv6_tcp(&syn, &[]),
        ]
    }

    /// A record whose status says the kernel refused the packet.
    fn refused(status: u8) -> [u8; RECORD_LEN] {
        let mut r = [0u8; RECORD_LEN];
        r[at::STATUS] = status;
        r
    }

    fn set_u16(r: &mut [u8; RECORD_LEN], field: usize, v: u16) {
        r[field..field + 2].copy_from_slice(&v.to_ne_bytes());
    }

    #[test]
    fn a_record_decodes_to_the_segment_of_its_frame() {
        for frame in frames() {
            let want = decode_frame(LinkType::Ethernet, &frame, frame.len() as u32).unwrap();
            let record = record_of_frame(&frame, frame.len() as u32, 5).unwrap();
            let got = decode(&record).unwrap();
            assert_eq!(got, want, "frame {frame:02x?}");
            assert_eq!(
                got.sack_blocks().collect::<Vec<_>>(),
                want.sack_blocks().collect::<Vec<_>>()
            );
        }
    }

    #[test]
    fn record_meta_reads_time_interface_and_length() {
        let frame = eth_ipv4_tcp(&TcpSpec::default());
        let record = record_of_frame(&frame, frame.len() as u32, 123_456_789).unwrap();
        let meta = record_meta(&record).unwrap();
        assert_eq!(meta.monotonic_ns, 123_456_789);
        assert_eq!(meta.ifindex, 7);
        assert_eq!(meta.l3_len as usize, frame.len() - 14);
        assert_eq!((meta.gso_size, meta.gso_segs), (0, 0));
        assert_eq!(meta.hook, Some(Hook::XdpIngress));
        assert_eq!(record_meta(&record[..100]), None);
    }

    #[test]
    fn kernel_refusals_count_under_the_decoder_reasons() {
        let cases = [
            (1, DecodeErrorKind::TruncatedIp),
            (2, DecodeErrorKind::TruncatedTcp),
            (3, DecodeErrorKind::BadIpVersion),
            (4, DecodeErrorKind::BadIpHeaderLength),
            (5, DecodeErrorKind::BadTcpHeaderLength),
            (6, DecodeErrorKind::Ipv6ExtensionChain),
            (7, DecodeErrorKind::IpFragment),
            (8, DecodeErrorKind::BadIpLength),
            (9, DecodeErrorKind::UnopenedTunnel),
            (200, DecodeErrorKind::NotIp),
        ];
        for (status, kind) in cases {
            assert_eq!(decode(&refused(status)).unwrap_err().kind, kind, "{status}");
        }
    }

    #[test]
    fn lengths_are_judged_as_for_frames() {
        let frame = eth_ipv4_tcp(&TcpSpec::default());
        let good = record_of_frame(&frame, frame.len() as u32, 0).unwrap();

        // An IP total length shorter than the IP header.
        let mut r = good;
        r[IP_STATED_LEN..IP_STATED_LEN + 4].copy_from_slice(&10u32.to_ne_bytes());
        assert_eq!(decode(&r).unwrap_err().kind, DecodeErrorKind::BadIpLength);

        // A TCP header longer than what the IP length leaves for it.
        let mut r = good;
        r[IP_STATED_LEN..IP_STATED_LEN + 4].copy_from_slice(&30u32.to_ne_bytes());
        assert_eq!(
            decode(&r).unwrap_err().kind,
            DecodeErrorKind::BadTcpHeaderLength
        );

        // Option bytes that disagree with the data offset.
        let mut r = good;
        r[OPTIONS_LEN] = 4;
        assert_eq!(
            decode(&r).unwrap_err().kind,
            DecodeErrorKind::BadTcpHeaderLength
        );
        let mut r = good;
        set_u16(&mut r, TCP_HEADER_LEN, 100);
        r[OPTIONS_LEN] = 80;
        assert_eq!(
            decode(&r).unwrap_err().kind,
            DecodeErrorKind::BadTcpHeaderLength
        );

        // A stated length of 0 (an offloaded super-packet) takes the wire's.
        let mut r = good;
        r[IP_STATED_LEN..IP_STATED_LEN + 4].copy_from_slice(&0u32.to_ne_bytes());
        r[L3_LEN..L3_LEN + 4].copy_from_slice(&9000u32.to_ne_bytes());
        let seg = decode(&r).unwrap();
        assert_eq!(seg.ip_len, 9000);
        assert_eq!(seg.payload_len, 9000 - 40);
    }

    #[test]
    fn corrupted_records_never_panic_and_keep_lengths_consistent() {
        let mut rng = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || crate::decode::fixtures::xorshift(&mut rng);
        let mut decoded = 0;
        for frame in frames() {
            let good = record_of_frame(&frame, frame.len() as u32, 1).unwrap();
            for _ in 0..20_000 {
                let mut r = good;
                for _ in 0..1 + next() % 4 {
                    let i = (next() % RECORD_LEN as u64) as usize;
                    r[i] = next() as u8;
                }
                if let Ok(seg) = decode(&r) {
                    decoded += 1;
                    let meta = record_meta(&r).unwrap();
                    assert!(seg.payload_len + 20 <= seg.ip_len, "{seg:?}");
                    assert!(seg.ip_len <= meta.l3_len, "{seg:?}");
                    assert!(seg.raw_options.len() <= MAX_TCP_OPTIONS);
                }
            }
        }
        assert!(decoded > 10_000, "most corruptions still decode: {decoded}");
    }

    #[test]
    fn a_record_cut_short_is_truncated_link() {
        let frame = eth_ipv4_tcp(&TcpSpec::default());
        let record = record_of_frame(&frame, frame.len() as u32, 0).unwrap();
        let err = decode(&record[..RECORD_LEN - 1]).unwrap_err();
        assert_eq!(err.kind, DecodeErrorKind::TruncatedLink);
    }

    #[test]
    fn offsets_match_the_c_header() {
        // bpf/record.h states each offset as `TCPX_AT(field, offset);`, a
        // static assertion clang checks when it builds the programs.
        let header = include_str!("../../bpf/record.h");
        let stated = crate::c_header::stated(header, "TCPX_AT");
        let ours = [
            ("ts_ns", at::TS_NS),
            ("ifindex", at::IFINDEX),
            ("l3_len", at::L3_LEN),
            ("ip_stated_len", at::IP_STATED_LEN),
            ("seq", at::SEQ),
            ("ack", at::ACK),
            ("ip_header_len", at::IP_HEADER_LEN),
            ("tcp_header_len", at::TCP_HEADER_LEN),
            ("src_port", at::SRC_PORT),
            ("dst_port", at::DST_PORT),
            ("window", at::WINDOW),
            ("gso_size", at::GSO_SIZE),
            ("gso_segs", at::GSO_SEGS),
            ("flags", at::FLAGS),
            ("ip_version", at::IP_VERSION),
            ("dont_fragment", at::DONT_FRAGMENT),
            ("status", at::STATUS),
            ("hook", at::HOOK),
            ("options_len", at::OPTIONS_LEN),
            ("src", at::SRC),
            ("dst", at::DST),
            ("options", at::OPTIONS),
            ("flow_seq", at::FLOW_SEQ),
            ("armed", at::ARMED),
            ("reserved", at::ARMED + 1),
        ];
        assert_eq!(stated, ours);
        assert!(header.contains("sizeof(struct tcpx_record) == 128"));
        assert!(header.contains("#define TCPX_MAX_OPTIONS 40"));
        assert_eq!(MAX_TCP_OPTIONS, 40);
        assert_eq!(at::OPTIONS + MAX_TCP_OPTIONS, at::FLOW_SEQ);
    }

    #[test]
    fn run_record_offsets_match_the_c_header() {
        // bpf/count.h states them as `TCPX_RUN_RECORD_AT(field, offset);`.
        let header = include_str!("../../bpf/count.h");
        let stated = crate::c_header::stated(header, "TCPX_RUN_RECORD_AT");
        let ours = [
            ("ts_ns", at::TS_NS),
            ("ifindex", at::IFINDEX),
            ("generation", run_at::GENERATION),
            ("side", run_at::SIDE),
            ("src_port", at::SRC_PORT),
            ("dst_port", at::DST_PORT),
            ("status", at::STATUS),
            ("hook", at::HOOK),
            ("src", at::SRC),
            ("dst", at::DST),
            ("flow_seq", at::FLOW_SEQ),
            ("run", run_at::RUN),
        ];
        assert_eq!(stated, ours);
        assert!(header.contains("sizeof(struct tcpx_run_record) == 192"));
        assert_eq!(RUN_RECORD_LEN, run_at::RUN + 64);
        assert!(include_str!("../../bpf/record.h").contains("TCPX_STEADY_RUN = 2,"));
    }

    #[test]
    fn run_records_read_back_their_connection_side_and_number() {
        let mut r = [0u8; RUN_RECORD_LEN];
        r[at::HOOK] = HOOK_STEADY_RUN;
        r[at::SRC + 15] = 1;
        r[at::DST + 15] = 2;
        r[at::SRC_PORT..at::SRC_PORT + 2].copy_from_slice(&80u16.to_ne_bytes());
        r[at::DST_PORT..at::DST_PORT + 2].copy_from_slice(&5000u16.to_ne_bytes());
        r[at::FLOW_SEQ..at::FLOW_SEQ + 4].copy_from_slice(&9u32.to_ne_bytes());
        r[run_at::GENERATION..run_at::GENERATION + 4].copy_from_slice(&3u32.to_ne_bytes());
        r[run_at::SIDE] = 1;
        r[run_at::RUN] = 0xaa;
        let run = run_record(&r).expect("a run record");
        assert_eq!((run.src_port, run.dst_port), (80, 5000));
        assert_eq!((run.client_sent, run.generation), (false, 3));
        assert_eq!((run.run.len(), run.run[0]), (64, 0xaa));
        let n = numbered(&r).expect("numbered");
        assert_eq!(
            (n.flow_seq, n.armed, n.src[15], n.dst[15]),
            (9, false, 1, 2)
        );
        r[run_at::SIDE] = 2;
        assert_eq!(run_record(&r), None, "a side that is neither");
        r[run_at::SIDE] = 0;
        r[at::HOOK] = 0;
        assert_eq!(run_record(&r), None, "another hook");
        assert!(run_record(&r[..RECORD_LEN]).is_none() && numbered(&r[..100]).is_none());
    }
}
