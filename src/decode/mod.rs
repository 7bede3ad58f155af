//! Decode: turns one captured frame into a [`Segment`], or a [`DecodeError`]
//! that names the layer and the reason.
//!
//! This module owns every read of raw packet bytes. Each layer is a borrowed
//! view checked once on construction (`link`, `ip`, `tcp`); after that no
//! accessor can panic, whatever the input. What comes out is a small `Copy`
//! value with exactly the header fields the flow analysis needs: nothing
//! above this module touches bytes, and nothing here keeps state.
//!
//! The frame nearly every capture is made of (Ethernet, IPv4, TCP with at
//! most timestamps; `plain`) is read in one pass before any of that, and
//! [`decode_then`] hands the segment on where it was built.
//!
//! An overlay (VXLAN, Geneve, IP in IP, GRE; `tunnel`) is unwrapped and the
//! segment inside decoded, at most two levels down; the segment says what
//! it was found in, and its sizes are the inner packet's.
//!
//! Truncated frames (a small snap length) still decode as long as the IP
//! header and the fixed 20 bytes of the TCP header were captured: sizes come
//! from the IP length fields and the TCP data offset, not from the captured
//! length, and options cut off are unknown (`TcpOptions::cut`).

mod ip;
mod link;
mod plain;
pub mod summary;
mod tcp;
pub mod tunnel;

pub use link::LinkType;
pub use tcp::{parse_options, TcpFlags, TcpOptions, MAX_SACK_BLOCKS, MAX_TCP_OPTIONS};
pub use tunnel::{TunnelKind, TunnelPorts, Tunnels};

use std::net::{IpAddr, Ipv6Addr};

/// An IP address as one 128-bit number, held as two 64-bit halves (so that
/// flow keys align to 8 bytes, not 16): IPv6 as it is, IPv4 mapped into
/// `::ffff:0:0/96`. Cheap to compare and hash on the per-packet path; `ip()`
/// gives the std type back when a label is made. Ordered as the number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Addr {
    hi: u64,
    lo: u64,
}

impl Addr {
    pub fn from_u128(n: u128) -> Addr {
        Addr {
            hi: (n >> 64) as u64,
            lo: n as u64,
        }
    }

    pub fn as_u128(self) -> u128 {
        (self.hi as u128) << 64 | self.lo as u128
    }

    pub fn v4(octets: [u8; 4]) -> Addr {
        Addr::from_u128(0xffff_0000_0000 | u32::from_be_bytes(octets) as u128)
    }

    pub fn v6(octets: [u8; 16]) -> Addr {
        Addr::from_u128(u128::from_be_bytes(octets))
    }

    /// The address; an IPv4-mapped IPv6 address reads as IPv4.
    pub fn ip(self) -> IpAddr {
        let v6 = Ipv6Addr::from(self.as_u128());
        match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        }
    }
}

impl From<IpAddr> for Addr {
    fn from(ip: IpAddr) -> Addr {
        match ip {
            IpAddr::V4(v4) => Addr::v4(v4.octets()),
            IpAddr::V6(v6) => Addr::v6(v6.octets()),
        }
    }
}

/// One decoded TCP segment: the header fields the analysis needs, by value,
/// and the TCP option bytes, borrowed from the frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment<'a> {
    pub src: Addr,
    pub dst: Addr,
    /// Bytes of the IP packet as its header states them (IPv4 total length,
    /// IPv6 payload length + 40), never more than the frame's wire length.
    pub ip_len: u32,
    /// IPv4 "don't fragment" bit; always false for IPv6.
    pub dont_fragment: bool,
    pub src_port: u16,
    pub dst_port: u16,
    pub seq: u32,
    pub ack: u32,
    pub flags: TcpFlags,
    /// The raw, unscaled window field.
    pub window: u16,
    /// TCP payload bytes: IP payload less the TCP header.
    pub payload_len: u32,
    pub options: TcpOptions,
    /// The TCP option bytes as captured.
    pub raw_options: &'a [u8],
    /// The overlays it was found inside (none, mostly).
    pub tunnels: Tunnels,
}

impl<'a> Segment<'a> {
    /// The SACK blocks (left, right edges) the segment carries.
    pub fn sack_blocks(&self) -> impl Iterator<Item = (u32, u32)> + 'a {
        tcp::sack_blocks(self.raw_options)
    }
}

/// Why a frame did not become a segment. Each kind is one value of the
/// `reason` label of `tcp_exporter_decode_errors_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DecodeErrorKind {
    /// The link-layer header (Ethernet, VLAN tags, cooked header) was cut short.
    TruncatedLink,
    /// The IP header (or an IPv6 extension header) was cut short.
    TruncatedIp,
    /// The fixed 20-byte TCP header was cut short (cut options are not an
    /// error: the segment counts, its options marked cut).
    TruncatedTcp,
    /// The version nibble is neither 4 nor 6, or disagrees with the link layer.
    BadIpVersion,
    /// IPv4 IHL below 5.
    BadIpHeaderLength,
    /// The IP length fields are smaller than the headers they must hold.
    BadIpLength,
    /// TCP data offset below 5, or a TCP header longer than the IP payload.
    BadTcpHeaderLength,
    /// An IPv6 extension header chain longer than we follow.
    Ipv6ExtensionChain,
    /// An IP fragment: a TCP segment split by IP is not reassembled.
    IpFragment,
    /// The frame holds something other than IPv4 or IPv6 (ARP, LLDP, ...).
    NotIp,
    /// An IP packet whose payload is not TCP: another protocol, TCP inside
    /// ESP, or (IPv4 only; IPv6's AH is followed) TCP behind AH; also an
    /// overlay that holds something other than TCP, or overlays nested
    /// deeper than we unwrap.
    NotTcp,
    /// An overlay's header (VXLAN, Geneve, GRE) was cut short.
    TruncatedTunnel,
    /// The xdp backend only: an overlay packet, which its kernel programs
    /// do not open (counted, not analysed).
    UnopenedTunnel,
    /// Capture files only, found by the capture layer before decode: the
    /// file ends inside a record (a capture cut short). Reading stops there.
    TruncatedRecord,
    /// Capture files only: a record whose captured length exceeds its wire
    /// length or any frame's (262,144 bytes). The record is skipped; past
    /// an impossible length the file cannot be framed and reading stops.
    BadRecordLength,
    /// Capture files only: a pcapng packet of an interface whose link type
    /// is not the file's, or whose clock is finer than nanoseconds
    /// (skipped); a packet of an undescribed interface, a section header
    /// that cannot be read, or a record libpcap refused (a file read with a
    /// filter): reading stops there.
    UnreadableRecord,
}

impl DecodeErrorKind {
    pub const ALL: [DecodeErrorKind; 16] = [
        Self::TruncatedLink,
        Self::TruncatedIp,
        Self::TruncatedTcp,
        Self::BadIpVersion,
        Self::BadIpHeaderLength,
        Self::BadIpLength,
        Self::BadTcpHeaderLength,
        Self::Ipv6ExtensionChain,
        Self::IpFragment,
        Self::NotIp,
        Self::NotTcp,
        Self::TruncatedTunnel,
        Self::UnopenedTunnel,
        Self::TruncatedRecord,
        Self::BadRecordLength,
        Self::UnreadableRecord,
    ];
    pub const COUNT: usize = Self::ALL.len();

    /// The `reason` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TruncatedLink => "truncated_link",
            Self::TruncatedIp => "truncated_ip",
            Self::TruncatedTcp => "truncated_tcp",
            Self::BadIpVersion => "bad_ip_version",
            Self::BadIpHeaderLength => "bad_ip_header_length",
            Self::BadIpLength => "bad_ip_length",
            Self::BadTcpHeaderLength => "bad_tcp_header_length",
            Self::Ipv6ExtensionChain => "ipv6_extension_chain",
            Self::IpFragment => "ip_fragment",
            Self::NotIp => "not_ip",
            Self::NotTcp => "not_tcp",
            Self::TruncatedTunnel => "truncated_tunnel",
            Self::UnopenedTunnel => "unopened_tunnel",
            Self::TruncatedRecord => "truncated_record",
            Self::BadRecordLength => "bad_record_length",
            Self::UnreadableRecord => "unreadable_record",
        }
    }

    /// Dense index, for counter arrays.
    pub fn index(self) -> usize {
        self as usize
    }
}

/// A frame that could not be decoded: which check failed, and where.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{kind:?} at byte {offset}: needed {needed} bytes, had {had}")]
pub struct DecodeError {
    pub kind: DecodeErrorKind,
    /// Offset in the frame of the header that failed.
    pub offset: usize,
    /// Bytes that header needed (0 where the failure is not about length).
    pub needed: usize,
    /// Bytes that were there.
    pub had: usize,
}

impl DecodeError {
    pub(crate) fn new(kind: DecodeErrorKind, offset: usize, needed: usize, had: usize) -> Self {
        DecodeError {
            kind,
            offset,
            needed,
            had,
        }
    }

    /// The error of a frame found `base` bytes into another.
    fn shifted(self, base: usize) -> Self {
        DecodeError {
            offset: self.offset + base,
            ..self
        }
    }
}

/// Decodes one frame of the given link type.
///
/// `wire_len` is the frame's length on the wire (pcap's `len`), which may be
/// larger than `frame.len()` when the snap length cut it.
pub fn decode(link: LinkType, frame: &[u8], wire_len: u32) -> Result<Segment<'_>, DecodeError> {
    decode_with(link, frame, wire_len, &tunnel::DEFAULT_PORTS)
}

/// Decodes one frame, with `ports` the UDP ports that carry overlays.
pub fn decode_with<'a>(
    link: LinkType,
    frame: &'a [u8],
    wire_len: u32,
    ports: &TunnelPorts,
) -> Result<Segment<'a>, DecodeError> {
    decode_then(link, frame, wire_len, ports, |segment| *segment)
}

/// Decodes one frame and hands its segment to `then`, by reference: the
/// common frame's segment is built in place, in the caller's frame, and
/// never copied (on the per-packet path a copy of a freshly built segment
/// costs more than building it). Any other frame goes down the layers.
#[inline(always)]
pub fn decode_then<'a, R>(
    link: LinkType,
    frame: &'a [u8],
    wire_len: u32,
    ports: &TunnelPorts,
    then: impl FnOnce(&Segment<'a>) -> R,
) -> Result<R, DecodeError> {
    // The frame may be longer on the wire than what was captured.
    let wire_len = (wire_len as usize).max(frame.len());
    match link {
        LinkType::Ethernet => {
            if let Some(plain) = plain::ethernet_ipv4_tcp(frame, wire_len) {
                return Ok(then(&plain::segment(frame, plain)));
            }
        }
        LinkType::KernelSummary => return summary::decode(frame).map(|segment| then(&segment)),
        _ => {}
    }
    decode_layered(link, frame, wire_len, ports).map(|segment| then(&segment))
}

/// Decodes one frame layer by layer (`wire_len` at least the captured
/// length): every link type (kernel summaries have their own decode),
/// overlay and error.
#[inline(never)]
fn decode_layered<'a>(
    link: LinkType,
    frame: &'a [u8],
    wire_len: usize,
    ports: &TunnelPorts,
) -> Result<Segment<'a>, DecodeError> {
    decode_layer(link, frame, 0, wire_len, ports, Tunnels::default())
}

/// Decodes the frame that starts `base` bytes into `frame` (an overlay's
/// inner frame when `tunnels` is not empty), `wire_len` bytes long on the
/// wire from there.
fn decode_layer<'a>(
    link: LinkType,
    frame: &'a [u8],
    base: usize,
    wire_len: usize,
    ports: &TunnelPorts,
    tunnels: Tunnels,
) -> Result<Segment<'a>, DecodeError> {
    let here = frame.get(base..).unwrap_or(&[]);
    let (l3, rel) = link::strip(link, here).map_err(|e| e.shifted(base))?;
    let offset = base + rel;
    let ip_wire_len = wire_len.saturating_sub(rel);
    let packet = ip::IpPacket::parse(l3, ip_wire_len, offset)?;
    let payload_offset = offset + packet.header_len;
    if packet.protocol != ip::PROTO_TCP {
        // The overlay's headers within the packet's own length, not in the
        // Ethernet padding after it.
        let payload = &l3[packet.header_len..packet.total_len.min(l3.len())];
        let found = tunnel::unwrap(payload, packet.protocol, ports, tunnels, payload_offset)?;
        let Some((inner, tunnels)) = found else {
            return Err(DecodeError::new(DecodeErrorKind::NotTcp, offset, 0, 0));
        };
        // The inner packet ends where the outer one does by its lengths.
        let inner_wire_len = packet
            .total_len
            .saturating_sub(packet.header_len + inner.start);
        return decode_layer(
            inner.link,
            frame,
            payload_offset + inner.start,
            inner_wire_len,
            ports,
            tunnels,
        );
    }
    let tcp_offset = payload_offset;
    let tcp_bytes = &l3[packet.header_len..];
    // A TCP header (by its data offset when captured, else the 20-byte
    // minimum) longer than what the IP length field leaves is the packet's
    // own error, whether or not the header was all captured.
    let needed = match tcp_bytes.get(12) {
        Some(&b) if b >> 4 >= 5 => (b >> 4) as usize * 4,
        _ => 20,
    };
    if needed > packet.stated_payload_len {
        return Err(DecodeError::new(
            DecodeErrorKind::BadTcpHeaderLength,
            tcp_offset,
            needed,
            packet.stated_payload_len,
        ));
    }
    let on_wire = ip_wire_len.saturating_sub(packet.header_len);
    let tcp = tcp::TcpView::parse(tcp_bytes, on_wire, tcp_offset)?;
    let mut segment = assemble(packet, tcp.fields(), tcp_offset)?;
    segment.tunnels = tunnels;
    Ok(segment)
}

/// The TCP header fields a segment is made of, read from a frame or from a
/// kernel summary.
struct TcpFields<'a> {
    src_port: u16,
    dst_port: u16,
    seq: u32,
    ack: u32,
    flags: TcpFlags,
    window: u16,
    /// The header with its options, in bytes.
    header_len: usize,
    /// The option bytes as captured.
    raw_options: &'a [u8],
    /// The snap length cut the options short.
    options_cut: bool,
}

/// Puts an IP packet and its TCP header together into a segment, once the
/// header is known to fit in what the IP lengths leave for it.
#[inline(always)]
fn assemble<'a>(
    packet: ip::IpPacket,
    tcp: TcpFields<'a>,
    tcp_offset: usize,
) -> Result<Segment<'a>, DecodeError> {
    let tcp_len = packet.payload_len;
    if tcp.header_len > tcp_len {
        return Err(DecodeError::new(
            DecodeErrorKind::BadTcpHeaderLength,
            tcp_offset,
            tcp.header_len,
            tcp_len,
        ));
    }
    Ok(Segment {
        src: packet.src,
        dst: packet.dst,
        ip_len: packet.total_len as u32,
        dont_fragment: packet.dont_fragment,
        src_port: tcp.src_port,
        dst_port: tcp.dst_port,
        seq: tcp.seq,
        ack: tcp.ack,
        flags: tcp.flags,
        window: tcp.window,
        payload_len: (tcp_len - tcp.header_len) as u32,
        options: TcpOptions {
            cut: tcp.options_cut,
            ..parse_options(tcp.raw_options)
        },
        raw_options: tcp.raw_options,
        tunnels: Tunnels::default(),
    })
}

#[cfg(test)]
pub(crate) mod fixtures;

#[cfg(test)]
mod tests {
    use super::fixtures::*;
    use super::*;

    #[test]
    fn ethernet_ipv4_tcp_decodes_every_field() {
        let frame = eth_ipv4_tcp(&TcpSpec::default());
        let seg = decode(LinkType::Ethernet, &frame, frame.len() as u32).unwrap();
        assert_eq!(seg.src.ip(), "10.0.0.1".parse::<IpAddr>().unwrap());
        assert_eq!(seg.dst.ip(), "10.0.0.2".parse::<IpAddr>().unwrap());
        assert_eq!(seg.src_port, 40000);
        assert_eq!(seg.dst_port, 80);
        assert_eq!(seg.seq, 1000);
        assert_eq!(seg.ack, 2000);
        assert_eq!(seg.window, 512);
        assert!(seg.flags.ack() && seg.flags.psh() && !seg.flags.syn());
        assert_eq!(seg.payload_len, 10);
        assert_eq!(seg.ip_len, 20 + 20 + 10);
        assert!(seg.dont_fragment);
    }

    #[test]
    fn addresses_round_trip_through_addr() {
        for text in ["10.1.2.3", "0.0.0.0", "fd00::1", "::1", "2001:db8::ffff:1"] {
            let ip: IpAddr = text.parse().unwrap();
            assert_eq!(Addr::from(ip).ip(), ip, "{text}");
        }
        assert!(
            Addr::from("10.0.0.1".parse::<IpAddr>().unwrap())
                < Addr::from("10.0.0.2".parse::<IpAddr>().unwrap())
        );
    }

    #[test]
    fn truncated_frame_takes_sizes_from_ip_header() {
        let spec = TcpSpec {
            payload: 1000,
            ..TcpSpec::default()
        };
        let frame = eth_ipv4_tcp(&spec);
        let wire = frame.len() as u32;
        let seg = decode(LinkType::Ethernet, &frame[..64], wire).unwrap();
        assert_eq!(seg.payload_len, 1000);
        assert_eq!(seg.ip_len, 1040);
    }

    #[test]
    fn ethernet_padding_is_not_payload() {
        // A bare ACK is padded to the 60-byte Ethernet minimum.
        let spec = TcpSpec {
            payload: 0,
            ..TcpSpec::default()
        };
        let mut frame = eth_ipv4_tcp(&spec);
        frame.resize(60, 0);
        let seg = decode(LinkType::Ethernet, &frame, 60).unwrap();
        assert_eq!(seg.payload_len, 0);
        assert_eq!(seg.ip_len, 40);
    }

    #[test]
    fn options_cut_by_snaplen_still_make_a_segment() {
        let spec = TcpSpec {
            options: vec![2, 4, 5, 0xb4, 1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0],
            payload: 100,
            ..TcpSpec::default()
        };
        let frame = eth_ipv4_tcp(&spec);
        let wire = frame.len() as u32;
        // 64 bytes: the fixed TCP header and 10 of its 16 option bytes.
        let seg = decode(LinkType::Ethernet, &frame[..64], wire).unwrap();
        assert_eq!(seg.payload_len, 100);
        assert_eq!(seg.ip_len, 20 + 36 + 100);
        assert_eq!(seg.raw_options.len(), 10);
        assert!(seg.options.cut);
        assert_eq!(
            (seg.options.mss, seg.options.timestamps),
            (Some(1460), None)
        );
        let whole = decode(LinkType::Ethernet, &frame, wire).unwrap();
        assert!(!whole.options.cut);
        assert_eq!(whole.options.timestamps, Some((1, 0)));
    }

    #[test]
    fn tcp_header_cut_by_snaplen_is_truncated_tcp() {
        let frame = eth_ipv4_tcp(&TcpSpec::default());
        let err = decode(
            LinkType::Ethernet,
            &frame[..14 + 20 + 10],
            frame.len() as u32,
        )
        .unwrap_err();
        assert_eq!(err.kind, DecodeErrorKind::TruncatedTcp);
        assert_eq!(err.offset, 34);
        assert_eq!(err.needed, 20);
        assert_eq!(err.had, 10);
    }

    #[test]
    fn tcp_header_longer_than_ip_payload_is_rejected() {
        let mut frame = eth_ipv4_tcp(&TcpSpec {
            payload: 0,
            ..TcpSpec::default()
        });
        // IPv4 total length 30: only 10 bytes for a 20-byte TCP header.
        frame[16..18].copy_from_slice(&30u16.to_be_bytes());
        let err = decode(LinkType::Ethernet, &frame, frame.len() as u32).unwrap_err();
        assert_eq!(err.kind, DecodeErrorKind::BadTcpHeaderLength);
    }

    #[test]
    fn bad_tcp_data_offset_is_rejected() {
        let mut frame = eth_ipv4_tcp(&TcpSpec::default());
        frame[14 + 20 + 12] = 4 << 4;
        let err = decode(LinkType::Ethernet, &frame, frame.len() as u32).unwrap_err();
        assert_eq!(err.kind, DecodeErrorKind::BadTcpHeaderLength);
    }

    #[test]
    fn vlan_and_qinq_tags_are_skipped() {
        let plain = eth_ipv4_tcp(&TcpSpec::default());
        for tags in [&[0x8100u16][..], &[0x88a8, 0x8100][..]] {
            let frame = with_vlan_tags(&plain, tags);
            let seg = decode(LinkType::Ethernet, &frame, frame.len() as u32).unwrap();
            assert_eq!(seg.payload_len, 10, "tags {tags:x?}");
            assert_eq!(seg.dst_port, 80);
        }
    }

    #[test]
    fn linux_cooked_v1_and_v2_decode() {
        let plain = eth_ipv4_tcp(&TcpSpec::default());
        let ip = &plain[14..];
        let sll = sll_v1(ip, 0x0800);
        let seg = decode(LinkType::LinuxSll, &sll, sll.len() as u32).unwrap();
        assert_eq!(seg.dst_port, 80);
        let sll2 = sll_v2(ip, 0x0800);
        let seg = decode(LinkType::LinuxSll2, &sll2, sll2.len() as u32).unwrap();
        assert_eq!(seg.src_port, 40000);
    }

    #[test]
    fn raw_ip_link_types_decode_v4_and_v6() {
        let v4 = eth_ipv4_tcp(&TcpSpec::default());
        let seg = decode(LinkType::RawIp, &v4[14..], (v4.len() - 14) as u32).unwrap();
        assert_eq!(seg.dst_port, 80);
        let v6 = eth_ipv6_tcp(&TcpSpec::default(), &[]);
        let seg = decode(LinkType::RawIp, &v6[14..], (v6.len() - 14) as u32).unwrap();
        assert_eq!(seg.dst.ip(), "fd00::2".parse::<IpAddr>().unwrap());
        let seg = decode(LinkType::Ipv6, &v6[14..], (v6.len() - 14) as u32).unwrap();
        assert_eq!(seg.payload_len, 10);
        let err = decode(LinkType::Ipv4, &v6[14..], (v6.len() - 14) as u32).unwrap_err();
        assert_eq!(err.kind, DecodeErrorKind::BadIpVersion);
    }

    #[test]
    fn ipv6_extension_chain_is_followed() {
        // hop-by-hop, routing, destination options, then TCP.
        let exts = [(0u8, 8usize), (43, 24), (60, 16)];
        let frame = eth_ipv6_tcp(&TcpSpec::default(), &exts);
        let seg = decode(LinkType::Ethernet, &frame, frame.len() as u32).unwrap();
        assert_eq!(seg.payload_len, 10);
        assert_eq!(seg.ip_len as usize, frame.len() - 14);
    }

    #[test]
    fn ipv6_extension_chain_too_long_is_rejected() {
        let exts = [(60u8, 8usize); 12];
        let frame = eth_ipv6_tcp(&TcpSpec::default(), &exts);
        let err = decode(LinkType::Ethernet, &frame, frame.len() as u32).unwrap_err();
        assert_eq!(err.kind, DecodeErrorKind::Ipv6ExtensionChain);
    }

    #[test]
    fn ipv6_extension_cut_short_is_truncated_ip() {
        let frame = eth_ipv6_tcp(&TcpSpec::default(), &[(60, 16)]);
        let err = decode(
            LinkType::Ethernet,
            &frame[..14 + 40 + 8],
            frame.len() as u32,
        )
        .unwrap_err();
        assert_eq!(err.kind, DecodeErrorKind::TruncatedIp);
    }

    #[test]
    fn non_tcp_and_non_ip_frames_are_named() {
        let mut frame = eth_ipv4_tcp(&TcpSpec::default());
        frame[14 + 9] = 17; // UDP
        let err = decode(LinkType::Ethernet, &frame, frame.len() as u32).unwrap_err();
        assert_eq!(err.kind, DecodeErrorKind::NotTcp);
        let mut arp = eth_ipv4_tcp(&TcpSpec::default());
        arp[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
        let err = decode(LinkType::Ethernet, &arp, arp.len() as u32).unwrap_err();
        assert_eq!(err.kind, DecodeErrorKind::NotIp);
    }

    #[test]
    fn mutated_frames_never_panic_and_sizes_stay_consistent() {
        let seeds = [
            eth_ipv4_tcp(&TcpSpec {
                options: vec![
                    2, 4, 5, 0xb4, 1, 3, 3, 7, 4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0,
                ],
                ip_options: 4,
                ..TcpSpec::default()
            }),
            eth_ipv6_tcp(&TcpSpec::default(), &[(0, 8), (44, 8), (60, 16)]),
            with_vlan_tags(&eth_ipv4_tcp(&TcpSpec::default()), &[0x88a8, 0x8100]),
        ];
        let mut rng = 0x9e37_79b9_7f4a_7c15u64;
        let mut decoded = 0;
        for i in 0..200_000 {
            let mut frame = seeds[i % seeds.len()].clone();
            for _ in 0..(1 + xorshift(&mut rng) % 4) {
                let at = (xorshift(&mut rng) as usize) % frame.len();
                frame[at] = xorshift(&mut rng) as u8;
            }
            let cut = (xorshift(&mut rng) as usize) % (frame.len() + 1);
            let wire = frame.len() as u32 + (xorshift(&mut rng) % 3000) as u32;
            for link in LinkType::SUPPORTED {
                if let Ok(seg) = decode(link, &frame[..cut], wire) {
                    decoded += 1;
                    assert!(seg.payload_len + 20 <= seg.ip_len, "{seg:?}");
                    // (A kernel summary states its own wire length.)
                    if link != LinkType::KernelSummary {
                        assert!(seg.ip_len <= wire, "{seg:?}");
                    }
                }
            }
        }
        assert!(
            decoded > 1000,
            "mutations should leave many frames decodable"
        );
    }

    #[test]
    fn empty_and_tiny_frames_never_panic() {
        for link in LinkType::SUPPORTED {
            for len in 0..80 {
                let frame = vec![0x45u8; len];
                let _ = decode(link, &frame, len as u32);
                let _ = decode(link, &frame, u32::MAX);
            }
        }
    }
}
