//! IPv4 (with options) and IPv6 (with its extension-header chain): where the
//! payload starts, what protocol it is, and how long the packet is by its
//! own length fields.

use etherparse::err::ipv6;
use etherparse::Ipv6HeaderSlice;

use super::{Addr, DecodeError, DecodeErrorKind};

pub(super) const PROTO_TCP: u8 = 6;
/// IPv6 extension headers followed before the chain is called malformed.
/// Real stacks send two or three; RFC 8200 gives no bound, so we set one.
const MAX_IPV6_EXTENSIONS: usize = 8;

/// An IP packet whose headers were all captured and are consistent.
#[derive(Debug)]
pub(super) struct IpPacket {
    pub src: Addr,
    pub dst: Addr,
    pub dont_fragment: bool,
    /// What the payload is: IPv4's protocol, or the header IPv6's
    /// extension chain leads to.
    pub protocol: u8,
    /// IP header bytes, IPv6 extension headers included.
    pub header_len: usize,
    /// Packet bytes by the length fields, clamped to the wire length.
    pub total_len: usize,
    /// `total_len - header_len`: what the TCP segment occupies.
    pub payload_len: usize,
    /// What the length field leaves for the TCP segment, before the clamp
    /// to the wire length (`payload_len` when no length is stated).
    pub stated_payload_len: usize,
}

impl IpPacket {
    /// A packet whose headers take `header_len` bytes, `stated_len` long by
    /// its length field (0: not stated) and `wire_len` on the wire; fails
    /// when the length cannot hold the headers. The one place where IP
    /// lengths are judged, for frames and kernel summaries alike.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        src: Addr,
        dst: Addr,
        dont_fragment: bool,
        protocol: u8,
        header_len: usize,
        stated_len: usize,
        wire_len: usize,
        offset: usize,
    ) -> Result<IpPacket, DecodeError> {
        let total_len = stated_or_wire(stated_len, wire_len);
        if total_len < header_len {
            return Err(DecodeError::new(
                DecodeErrorKind::BadIpLength,
                offset,
                header_len,
                total_len,
            ));
        }
        Ok(IpPacket {
            src,
            dst,
            dont_fragment,
            protocol,
            header_len,
            total_len,
            payload_len: total_len - header_len,
            stated_payload_len: match stated_len {
                0 => total_len - header_len,
                n => n.saturating_sub(header_len),
            },
        })
    }

    /// `l3` is what was captured from the IP header on; `wire_len` is how
    /// long the IP packet was on the wire; `offset` is `l3`'s place in the
    /// frame, for error reports.
    #[inline]
    pub fn parse(l3: &[u8], wire_len: usize, offset: usize) -> Result<IpPacket, DecodeError> {
        match l3.first().map(|b| b >> 4) {
            Some(4) => parse_v4(l3, wire_len, offset),
            Some(6) => parse_v6(l3, wire_len, offset),
            _ => Err(DecodeError::new(
                DecodeErrorKind::BadIpVersion,
                offset,
                0,
                0,
            )),
        }
    }
}

/// A total length too short for the header is the packet's own error,
/// whether or not the header was all captured: say that, not that the
/// capture cut it.
fn check_v4_total_len(l3: &[u8], offset: usize) -> Result<(), DecodeError> {
    if let [_, _, hi, lo, ..] = *l3 {
        let header_len = (l3[0] & 0x0f) as usize * 4;
        let stated = u16::from_be_bytes([hi, lo]) as usize;
        if header_len >= 20 && stated != 0 && stated < header_len {
            return Err(DecodeError::new(
                DecodeErrorKind::BadIpLength,
                offset,
                header_len,
                stated,
            ));
        }
    }
    Ok(())
}

fn parse_v4(l3: &[u8], wire_len: usize, offset: usize) -> Result<IpPacket, DecodeError> {
    check_v4_total_len(l3, offset)?;
    // The header by hand, with etherparse's checks in its order (the
    // version is 4 here): 20 bytes, a header length of 20 or more, all of
    // it captured. One bounds check for the fixed part.
    let Some(h) = l3.first_chunk::<20>() else {
        return Err(DecodeError::new(
            DecodeErrorKind::TruncatedIp,
            offset,
            20,
            l3.len(),
        ));
    };
    let header_len = (h[0] & 0x0f) as usize * 4;
    if header_len < 20 {
        return Err(DecodeError::new(
            DecodeErrorKind::BadIpHeaderLength,
            offset,
            20,
            header_len,
        ));
    }
    if header_len > l3.len() {
        return Err(DecodeError::new(
            DecodeErrorKind::TruncatedIp,
            offset,
            header_len,
            l3.len(),
        ));
    }
    let flags = h[6];
    let packet = IpPacket::new(
        Addr::v4([h[12], h[13], h[14], h[15]]),
        Addr::v4([h[16], h[17], h[18], h[19]]),
        flags & 0x40 != 0,
        h[9],
        header_len,
        u16::from_be_bytes([h[2], h[3]]) as usize,
        wire_len,
        offset,
    )?;
    // More fragments, or a fragment offset.
    if flags & 0x20 != 0 || u16::from_be_bytes([flags & 0x1f, h[7]]) != 0 {
        return Err(DecodeError::new(DecodeErrorKind::IpFragment, offset, 0, 0));
    }
    Ok(packet)
}

fn parse_v6(l3: &[u8], wire_len: usize, offset: usize) -> Result<IpPacket, DecodeError> {
    let header = Ipv6HeaderSlice::from_slice(l3).map_err(|e| match e {
        ipv6::HeaderSliceError::Len(len) => DecodeError::new(
            DecodeErrorKind::TruncatedIp,
            offset,
            len.required_len,
            len.len,
        ),
        ipv6::HeaderSliceError::Content(_) => {
            DecodeError::new(DecodeErrorKind::BadIpVersion, offset, 0, 0)
        }
    })?;
    let fixed = header.slice().len();
    let stated = header.payload_length() as usize;
    let stated_end = (stated != 0).then_some(fixed + stated);
    let (header_len, protocol) =
        walk_extensions(l3, header.next_header().0, fixed, stated_end, offset)?;
    IpPacket::new(
        Addr::v6(header.source()),
        Addr::v6(header.destination()),
        false,
        protocol,
        header_len,
        // A payload length of 0 is a jumbogram or an offloaded
        // super-packet: the wire length is all we know.
        if stated == 0 { 0 } else { fixed + stated },
        wire_len.max(fixed),
        offset,
    )
}

/// Follows the extension-header chain from `next` at `at`; returns where the
/// payload starts and its protocol. `stated_end` is where the payload
/// length says the packet ends (`None`: not stated).
fn walk_extensions(
    l3: &[u8],
    mut next: u8,
    mut at: usize,
    stated_end: Option<usize>,
    offset: usize,
) -> Result<(usize, u8), DecodeError> {
    for _ in 0..=MAX_IPV6_EXTENSIONS {
        let len = match next {
            // Hop-by-hop, routing, destination options, mobility, HIP, shim6:
            // length in 8-octet units, not counting the first 8.
            0 | 43 | 60 | 135 | 139 | 140 => {
                let b = ext_head(l3, at, offset)?;
                (b[1] as usize + 1) * 8
            }
            // Fragment: fixed 8 bytes. Only an atomic fragment (offset 0, no
            // more fragments) holds a whole segment.
            44 => {
                ext_head(l3, at, offset)?;
                let frag = l3
                    .get(at + 2..at + 4)
                    .ok_or_else(|| truncated(offset + at, 8, l3.len() - at))?;
                if u16::from_be_bytes([frag[0], frag[1]]) & 0xfff9 != 0 {
                    return Err(DecodeError::new(DecodeErrorKind::IpFragment, offset, 0, 0));
                }
                8
            }
            // Authentication header: length in 4-octet units, minus 2.
            51 => {
                let b = ext_head(l3, at, offset)?;
                (b[1] as usize + 2) * 4
            }
            // Not an extension header: the payload (ESP, which hides
            // what it carries, among them).
            _ => return Ok((at, next)),
        };
        if let Some(end) = stated_end.filter(|&end| end < at + len) {
            return Err(DecodeError::new(
                DecodeErrorKind::BadIpLength,
                offset + at,
                len,
                end.saturating_sub(at),
            ));
        }
        if l3.len() < at + len {
            return Err(truncated(offset + at, len, l3.len() - at));
        }
        next = l3[at];
        at += len;
    }
    Err(DecodeError::new(
        DecodeErrorKind::Ipv6ExtensionChain,
        offset,
        MAX_IPV6_EXTENSIONS,
        MAX_IPV6_EXTENSIONS + 1,
    ))
}

/// The first two bytes of an extension header: next header and length.
fn ext_head(l3: &[u8], at: usize, offset: usize) -> Result<[u8; 2], DecodeError> {
    match l3.get(at..at + 2) {
        Some(b) => Ok([b[0], b[1]]),
        None => Err(truncated(offset + at, 2, l3.len().saturating_sub(at))),
    }
}

fn truncated(offset: usize, needed: usize, had: usize) -> DecodeError {
    DecodeError::new(DecodeErrorKind::TruncatedIp, offset, needed, had)
}

/// The stated length, unless it is 0 (TCP segmentation offload leaves an
/// IPv4 total length so in captures on the sending host; an IPv6 jumbogram
/// or super-packet states no payload length); never beyond the wire.
fn stated_or_wire(stated: usize, wire_len: usize) -> usize {
    if stated == 0 {
        wire_len
    } else {
        stated.min(wire_len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::fixtures::*;

    /// IPv4 as etherparse reads it, after the total-length check
    /// `parse_v4` makes first: the reference for the header by hand.
    fn v4_by_etherparse(l3: &[u8], wire_len: usize) -> Result<IpPacket, DecodeError> {
        use etherparse::err::ipv4;
        check_v4_total_len(l3, 0)?;
        let header = etherparse::Ipv4HeaderSlice::from_slice(l3).map_err(|e| match e {
            ipv4::HeaderSliceError::Len(len) => {
                DecodeError::new(DecodeErrorKind::TruncatedIp, 0, len.required_len, len.len)
            }
            ipv4::HeaderSliceError::Content(ipv4::HeaderError::UnexpectedVersion { .. }) => {
                DecodeError::new(DecodeErrorKind::BadIpVersion, 0, 0, 0)
            }
            ipv4::HeaderSliceError::Content(ipv4::HeaderError::HeaderLengthSmallerThanHeader {
                ihl,
            }) => DecodeError::new(DecodeErrorKind::BadIpHeaderLength, 0, 20, ihl as usize * 4),
        })?;
        let packet = IpPacket::new(
            Addr::v4(header.source()),
            Addr::v4(header.destination()),
            header.dont_fragment(),
            header.protocol().0,
            header.slice().len(),
            header.total_len() as usize,
            wire_len,
            0,
        )?;
        if header.more_fragments() || header.fragments_offset().value() != 0 {
            return Err(DecodeError::new(DecodeErrorKind::IpFragment, 0, 0, 0));
        }
        Ok(packet)
    }

    #[test]
    fn ipv4_by_hand_reads_what_etherparse_reads_on_any_bytes() {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = || xorshift(&mut state);
        let summary = |r: Result<IpPacket, DecodeError>| {
            r.map(|p| {
                let fields = (p.src, p.dst, p.dont_fragment, p.protocol);
                format!(
                    "{fields:?} {} {} {}",
                    p.header_len, p.total_len, p.payload_len
                )
            })
        };
        let mut packets = 0;
        for _ in 0..200_000 {
            let len = (next() % 70) as usize;
            let mut l3: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            if let Some(b) = l3.first_mut() {
                *b = 0x40 | (*b & 0x0f);
            }
            // Mostly plausible lengths and no fragments, so that the good
            // path is taken often too.
            if len >= 8 && next() % 2 == 0 {
                l3[0] = 0x45;
                l3[2..4].copy_from_slice(&(len as u16).to_be_bytes());
                l3[6] &= 0x40;
                l3[7] = 0;
            }
            let wire = len + (next() % 3) as usize * 10;
            let ours = summary(parse_v4(&l3, wire, 0));
            packets += ours.is_ok() as usize;
            assert_eq!(ours, summary(v4_by_etherparse(&l3, wire)), "{l3:02x?}");
        }
        assert!(packets > 10_000, "only {packets} parsed");
    }

    fn v4(spec: &TcpSpec) -> Vec<u8> {
        eth_ipv4_tcp(spec)[14..].to_vec()
    }

    #[test]
    fn ipv4_options_move_the_tcp_header() {
        let spec = TcpSpec {
            ip_options: 8,
            ..TcpSpec::default()
        };
        let p = v4(&spec);
        let ip = IpPacket::parse(&p, p.len(), 14).unwrap();
        assert_eq!(ip.header_len, 28);
        assert_eq!(ip.payload_len, 20 + 10);
    }

    #[test]
    fn ihl_below_five_is_bad_header_length() {
        let mut p = v4(&TcpSpec::default());
        p[0] = 0x44;
        let err = IpPacket::parse(&p, p.len(), 0).unwrap_err();
        assert_eq!(err.kind, DecodeErrorKind::BadIpHeaderLength);
    }

    #[test]
    fn ihl_beyond_capture_is_truncated_ip() {
        let mut p = v4(&TcpSpec::default());
        p[0] = 0x4f; // 60-byte header, only 50 bytes captured of 80
        p[2..4].copy_from_slice(&80u16.to_be_bytes());
        let err = IpPacket::parse(&p, 80, 0).unwrap_err();
        assert_eq!(err.kind, DecodeErrorKind::TruncatedIp);
        assert_eq!((err.needed, err.had), (60, 50));
    }

    #[test]
    fn ihl_beyond_its_own_total_length_is_bad_length_even_when_cut() {
        let mut p = v4(&TcpSpec::default());
        p[0] = 0x4f; // 60-byte header in a packet that says it has 50
        let err = IpPacket::parse(&p, p.len(), 0).unwrap_err();
        assert_eq!(err.kind, DecodeErrorKind::BadIpLength);
        assert_eq!((err.needed, err.had), (60, 50));
    }

    #[test]
    fn total_length_below_header_is_bad_length() {
        let mut p = v4(&TcpSpec::default());
        p[2..4].copy_from_slice(&12u16.to_be_bytes());
        let err = IpPacket::parse(&p, p.len(), 0).unwrap_err();
        assert_eq!(err.kind, DecodeErrorKind::BadIpLength);
    }

    #[test]
    fn zero_total_length_falls_back_to_wire_length() {
        let mut p = v4(&TcpSpec::default());
        p[2..4].copy_from_slice(&0u16.to_be_bytes());
        let ip = IpPacket::parse(&p, 5000, 0).unwrap();
        assert_eq!(ip.total_len, 5000);
    }

    #[test]
    fn total_length_beyond_wire_is_clamped() {
        let mut p = v4(&TcpSpec::default());
        p[2..4].copy_from_slice(&9000u16.to_be_bytes());
        let ip = IpPacket::parse(&p, p.len(), 0).unwrap();
        assert_eq!(ip.total_len, p.len());
    }

    #[test]
    fn ipv4_fragments_are_named() {
        let mut p = v4(&TcpSpec::default());
        p[6] |= 0x20; // more fragments
        let err = IpPacket::parse(&p, p.len(), 0).unwrap_err();
        assert_eq!(err.kind, DecodeErrorKind::IpFragment);
    }

    #[test]
    fn ipv6_atomic_fragment_is_followed_but_real_fragment_is_not() {
        let atomic = eth_ipv6_tcp(&TcpSpec::default(), &[(44, 8)]);
        let p = &atomic[14..];
        assert!(IpPacket::parse(p, p.len(), 0).is_ok());
        let mut frag = p.to_vec();
        frag[40 + 3] = 1; // more fragments
        let err = IpPacket::parse(&frag, frag.len(), 0).unwrap_err();
        assert_eq!(err.kind, DecodeErrorKind::IpFragment);
    }

    #[test]
    fn ipv6_esp_ends_the_chain_as_the_payload() {
        let mut p = eth_ipv6_tcp(&TcpSpec::default(), &[])[14..].to_vec();
        p[6] = 50;
        let ip = IpPacket::parse(&p, p.len(), 0).unwrap();
        assert_eq!((ip.protocol, ip.header_len), (50, 40));
    }

    #[test]
    fn ipv6_extensions_longer_than_payload_are_bad_length() {
        let mut p = eth_ipv6_tcp(&TcpSpec::default(), &[(60, 16)])[14..].to_vec();
        p[4..6].copy_from_slice(&8u16.to_be_bytes());
        let err = IpPacket::parse(&p, p.len(), 0).unwrap_err();
        assert_eq!(err.kind, DecodeErrorKind::BadIpLength);
    }
}
