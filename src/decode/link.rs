//! Link layers: Ethernet II with 802.1Q/802.1ad tags, Linux cooked capture
//! v1 and v2, BSD loopback, and raw IP. Strips the link header and says
//! where the IP packet starts.

use super::{DecodeError, DecodeErrorKind};

/// The link types we decode, from pcap's DLT/LINKTYPE numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkType {
    /// LINKTYPE_ETHERNET (1).
    Ethernet,
    /// LINKTYPE_LINUX_SLL (113): `-i any`, cooked v1.
    LinuxSll,
    /// LINKTYPE_LINUX_SLL2 (276): `-i any`, cooked v2.
    LinuxSll2,
    /// LINKTYPE_RAW (101) and DLT_RAW (12/14): IPv4 or IPv6 by version nibble.
    RawIp,
    /// LINKTYPE_IPV4 (228).
    Ipv4,
    /// LINKTYPE_IPV6 (229).
    Ipv6,
    /// LINKTYPE_NULL (0, host byte order) and LINKTYPE_LOOP (108, network order).
    Loopback { big_endian: bool },
    /// Not a pcap link type: the records of the xdp backend, headers already
    /// summarised by the kernel (`summary`).
    KernelSummary,
}

const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86dd;
const ETHERTYPE_VLAN: u16 = 0x8100;
const ETHERTYPE_QINQ: u16 = 0x88a8;
const ETHERTYPE_QINQ_OLD: u16 = 0x9100;
/// Stacked VLAN tags we follow before calling the frame malformed.
const MAX_VLAN_TAGS: usize = 4;

/// Which IP version the link layer announced, if it said.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Announced {
    V4,
    V6,
    Either,
}

impl LinkType {
    pub const SUPPORTED: [LinkType; 9] = [
        LinkType::Ethernet,
        LinkType::LinuxSll,
        LinkType::LinuxSll2,
        LinkType::RawIp,
        LinkType::Ipv4,
        LinkType::Ipv6,
        LinkType::Loopback { big_endian: false },
        LinkType::Loopback { big_endian: true },
        LinkType::KernelSummary,
    ];

    /// The pcap link-type number a capture of this type is written with;
    /// `None` for kernel summaries, which are no pcap link type.
    pub fn dlt(self) -> Option<i32> {
        Some(match self {
            LinkType::Loopback { big_endian: false } => 0,
            LinkType::Ethernet => 1,
            LinkType::RawIp => 101,
            LinkType::Loopback { big_endian: true } => 108,
            LinkType::LinuxSll => 113,
            LinkType::Ipv4 => 228,
            LinkType::Ipv6 => 229,
            LinkType::LinuxSll2 => 276,
            LinkType::KernelSummary => return None,
        })
    }

    /// Maps a pcap link-type number; `None` when we cannot decode it.
    pub fn from_dlt(dlt: i32) -> Option<LinkType> {
        Some(match dlt {
            0 => LinkType::Loopback { big_endian: false },
            1 => LinkType::Ethernet,
            12 | 14 | 101 => LinkType::RawIp,
            108 => LinkType::Loopback { big_endian: true },
            113 => LinkType::LinuxSll,
            228 => LinkType::Ipv4,
            229 => LinkType::Ipv6,
            276 => LinkType::LinuxSll2,
            _ => return None,
        })
    }
}

/// Returns the IP packet inside the frame and its offset in the frame.
pub(super) fn strip(link: LinkType, frame: &[u8]) -> Result<(&[u8], usize), DecodeError> {
    let (offset, announced) = match link {
        LinkType::Ethernet => ethernet(frame)?,
        LinkType::LinuxSll => (16, ethertype(be16(frame, 14, 16)?)?),
        LinkType::LinuxSll2 => (20, ethertype(be16(frame, 0, 20)?)?),
        LinkType::RawIp => (0, Announced::Either),
        LinkType::Ipv4 => (0, Announced::V4),
        LinkType::Ipv6 => (0, Announced::V6),
        LinkType::Loopback { big_endian } => (4, loopback_family(frame, big_endian)?),
        // `decode` hands summaries to `summary` before this; they have no
        // link header to strip.
        LinkType::KernelSummary => (0, Announced::Either),
    };
    let l3 = frame.get(offset..).unwrap_or(&[]);
    let version = l3.first().map(|b| b >> 4);
    let ok = match (announced, version) {
        (_, None) => return Err(DecodeError::new(DecodeErrorKind::TruncatedIp, offset, 1, 0)),
        (Announced::V4, Some(v)) => v == 4,
        (Announced::V6, Some(v)) => v == 6,
        (Announced::Either, Some(v)) => v == 4 || v == 6,
    };
    if !ok {
        return Err(DecodeError::new(
            DecodeErrorKind::BadIpVersion,
            offset,
            0,
            0,
        ));
    }
    Ok((l3, offset))
}

fn ethernet(frame: &[u8]) -> Result<(usize, Announced), DecodeError> {
    let mut offset = 12;
    let mut kind = be16(frame, offset, 14)?;
    let mut tags = 0;
    while matches!(kind, ETHERTYPE_VLAN | ETHERTYPE_QINQ | ETHERTYPE_QINQ_OLD) {
        tags += 1;
        if tags > MAX_VLAN_TAGS {
            return Err(DecodeError::new(DecodeErrorKind::NotIp, offset, 0, 0));
        }
        offset += 4;
        kind = be16(frame, offset, offset + 2)?;
    }
    Ok((offset + 2, ethertype(kind)?))
}

fn ethertype(kind: u16) -> Result<Announced, DecodeError> {
    match kind {
        ETHERTYPE_IPV4 => Ok(Announced::V4),
        ETHERTYPE_IPV6 => Ok(Announced::V6),
        _ => Err(DecodeError::new(DecodeErrorKind::NotIp, 0, 0, 0)),
    }
}

fn loopback_family(frame: &[u8], big_endian: bool) -> Result<Announced, DecodeError> {
    let bytes: [u8; 4] = frame
        .get(..4)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| truncated_link(4, frame.len()))?;
    let family = if big_endian {
        u32::from_be_bytes(bytes)
    } else {
        // LINKTYPE_NULL is in the capturing host's byte order: accept either.
        let le = u32::from_le_bytes(bytes);
        if le < 256 {
            le
        } else {
            u32::from_be_bytes(bytes)
        }
    };
    match family {
        2 => Ok(Announced::V4),
        // AF_INET6 differs between BSDs, Darwin and Linux.
        10 | 24 | 28 | 30 => Ok(Announced::V6),
        _ => Err(DecodeError::new(DecodeErrorKind::NotIp, 0, 0, 0)),
    }
}

/// Reads a big-endian u16 at `at`, or reports the link header (of
/// `header_len` bytes) as truncated.
fn be16(frame: &[u8], at: usize, header_len: usize) -> Result<u16, DecodeError> {
    match frame.get(at..at + 2) {
        Some(b) => Ok(u16::from_be_bytes([b[0], b[1]])),
        None => Err(truncated_link(header_len, frame.len())),
    }
}

fn truncated_link(needed: usize, had: usize) -> DecodeError {
    DecodeError::new(DecodeErrorKind::TruncatedLink, 0, needed, had)
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_link_type_but_summaries_round_trips_through_its_dlt() {
        for link in super::LinkType::SUPPORTED {
            match link.dlt() {
                Some(dlt) => assert_eq!(super::LinkType::from_dlt(dlt), Some(link)),
                None => assert_eq!(link, super::LinkType::KernelSummary),
            }
        }
    }

    use super::*;

    #[test]
    fn short_ethernet_header_is_truncated_link() {
        let err = strip(LinkType::Ethernet, &[0u8; 13]).unwrap_err();
        assert_eq!(err.kind, DecodeErrorKind::TruncatedLink);
        assert_eq!((err.needed, err.had), (14, 13));
    }

    #[test]
    fn vlan_tag_cut_short_is_truncated_link() {
        let mut frame = vec![0u8; 16];
        frame[12..14].copy_from_slice(&ETHERTYPE_VLAN.to_be_bytes());
        let err = strip(LinkType::Ethernet, &frame).unwrap_err();
        assert_eq!(err.kind, DecodeErrorKind::TruncatedLink);
    }

    #[test]
    fn endless_vlan_tags_are_not_followed() {
        let mut frame = vec![0u8; 12];
        for _ in 0..20 {
            frame.extend_from_slice(&ETHERTYPE_VLAN.to_be_bytes());
            frame.extend_from_slice(&[0, 1]);
        }
        let err = strip(LinkType::Ethernet, &frame).unwrap_err();
        assert_eq!(err.kind, DecodeErrorKind::NotIp);
    }

    #[test]
    fn ethertype_and_version_must_agree() {
        let mut frame = vec![0u8; 14];
        frame[12..14].copy_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
        frame.push(0x60);
        let err = strip(LinkType::Ethernet, &frame).unwrap_err();
        assert_eq!(err.kind, DecodeErrorKind::BadIpVersion);
    }

    #[test]
    fn loopback_family_in_either_byte_order() {
        let mut frame = vec![2, 0, 0, 0, 0x45];
        assert!(strip(LinkType::Loopback { big_endian: false }, &frame).is_ok());
        frame[..4].copy_from_slice(&2u32.to_be_bytes());
        assert!(strip(LinkType::Loopback { big_endian: true }, &frame).is_ok());
        assert!(strip(LinkType::Loopback { big_endian: false }, &frame).is_ok());
    }

    #[test]
    fn dlt_numbers_map_to_link_types() {
        assert_eq!(LinkType::from_dlt(1), Some(LinkType::Ethernet));
        assert_eq!(LinkType::from_dlt(276), Some(LinkType::LinuxSll2));
        assert_eq!(LinkType::from_dlt(113), Some(LinkType::LinuxSll));
        assert_eq!(LinkType::from_dlt(101), Some(LinkType::RawIp));
        assert_eq!(LinkType::from_dlt(105), None); // 802.11
    }
}
