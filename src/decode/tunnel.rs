//! Overlay encapsulations around a TCP segment, unwrapped so that the
//! connection inside is analysed: VXLAN and Geneve (over UDP, by
//! destination port), IPv4 and IPv6 in IP, and GRE (checksum, key and
//! sequence fields; carrying IP or Ethernet). This module only reads an
//! overlay's own header and says where the packet inside starts and what it
//! is (an Ethernet frame or an IP packet); `decode` takes it from there, at
//! most `MAX_TUNNEL_DEPTH` levels down.

use super::{DecodeError, DecodeErrorKind, LinkType};

/// Encapsulations unwrapped, one inside the other, at most.
pub const MAX_TUNNEL_DEPTH: usize = 2;

const PROTO_IPIP: u8 = 4;
const PROTO_UDP: u8 = 17;
const PROTO_IPV6: u8 = 41;
const PROTO_GRE: u8 = 47;

const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86dd;
/// Transparent Ethernet bridging: an Ethernet frame inside.
const ETHERTYPE_ETHERNET: u16 = 0x6558;

const UDP_HEADER: usize = 8;
const VXLAN_HEADER: usize = 8;
const GENEVE_HEADER: usize = 8;
const GRE_HEADER: usize = 4;

/// An overlay encapsulation: the `kind` label of
/// `tcp_exporter_tunnel_packets_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TunnelKind {
    Vxlan,
    Geneve,
    /// IPv4 or IPv6 directly in IPv4 or IPv6 (protocols 4 and 41).
    IpInIp,
    Gre,
}

impl TunnelKind {
    pub const ALL: [TunnelKind; 4] = [Self::Vxlan, Self::Geneve, Self::IpInIp, Self::Gre];
    pub const COUNT: usize = Self::ALL.len();

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Vxlan => "vxlan",
            Self::Geneve => "geneve",
            Self::IpInIp => "ip_in_ip",
            Self::Gre => "gre",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

/// The encapsulations a segment was found inside, outermost first.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tunnels([Option<TunnelKind>; MAX_TUNNEL_DEPTH]);

impl Tunnels {
    pub fn iter(&self) -> impl Iterator<Item = TunnelKind> + '_ {
        self.0.iter().flatten().copied()
    }

    pub fn depth(&self) -> usize {
        self.iter().count()
    }

    /// Found in no encapsulation (they fill from the outermost).
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.0[0].is_none()
    }

    /// With `kind` inside the ones there are; `None` at the depth limit.
    fn inside(mut self, kind: TunnelKind) -> Option<Tunnels> {
        let free = self.0.iter_mut().find(|k| k.is_none())?;
        *free = Some(kind);
        Some(self)
    }
}

/// Most UDP ports of each kind (`--vxlan-ports`, `--geneve-ports`).
pub const MAX_TUNNEL_PORTS: usize = 8;

/// The UDP destination ports that carry VXLAN and Geneve. By default the
/// IANA ports (VXLAN 4789, Geneve 6081) and Flannel's VXLAN port (8472, the
/// Linux kernel's default before IANA's).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TunnelPorts {
    ports: [(u16, TunnelKind); MAX_TUNNEL_PORTS * 2],
    len: usize,
}

/// VXLAN on 4789 and 8472, Geneve on 6081.
pub const DEFAULT_PORTS: TunnelPorts = {
    let mut ports = [(0, TunnelKind::Vxlan); MAX_TUNNEL_PORTS * 2];
    ports[0] = (4789, TunnelKind::Vxlan);
    ports[1] = (8472, TunnelKind::Vxlan);
    ports[2] = (6081, TunnelKind::Geneve);
    TunnelPorts { ports, len: 3 }
};

impl Default for TunnelPorts {
    fn default() -> TunnelPorts {
        DEFAULT_PORTS
    }
}

impl TunnelPorts {
    /// `None` when a list is longer than `MAX_TUNNEL_PORTS`, or one port is
    /// in both.
    pub fn new(vxlan: &[u16], geneve: &[u16]) -> Option<TunnelPorts> {
        if vxlan.len() > MAX_TUNNEL_PORTS
            || geneve.len() > MAX_TUNNEL_PORTS
            || vxlan.iter().any(|p| geneve.contains(p))
        {
            return None;
        }
        let mut t = TunnelPorts {
            ports: [(0, TunnelKind::Vxlan); MAX_TUNNEL_PORTS * 2],
            len: 0,
        };
        let all = vxlan
            .iter()
            .map(|p| (*p, TunnelKind::Vxlan))
            .chain(geneve.iter().map(|p| (*p, TunnelKind::Geneve)));
        for entry in all {
            t.ports[t.len] = entry;
            t.len += 1;
        }
        Some(t)
    }

    /// The ports, with the kind each carries.
    pub fn iter(&self) -> impl Iterator<Item = (u16, TunnelKind)> + '_ {
        self.ports[..self.len].iter().copied()
    }

    fn kind_of(&self, port: u16) -> Option<TunnelKind> {
        self.ports[..self.len]
            .iter()
            .find(|(p, _)| *p == port)
            .map(|(_, k)| *k)
    }
}

/// What an overlay holds: its kind, where the packet inside starts (from
/// the start of `payload`), and how to read that packet.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Inner {
    pub kind: TunnelKind,
    pub start: usize,
    pub link: LinkType,
}

/// If `payload`, an IP packet's payload of protocol `protocol`, is an
/// overlay that `tunnels` leaves room for, what it holds. `Ok(None)`: not
/// an overlay (the caller says `not_tcp`). `offset` is `payload`'s place in
/// the frame, for errors: an overlay header cut short by the snap length
/// is `truncated_tunnel`.
pub(super) fn unwrap(
    payload: &[u8],
    protocol: u8,
    ports: &TunnelPorts,
    tunnels: Tunnels,
    offset: usize,
) -> Result<Option<(Inner, Tunnels)>, DecodeError> {
    let inner = match protocol {
        PROTO_IPIP => Some(inner(TunnelKind::IpInIp, 0, LinkType::Ipv4)),
        PROTO_IPV6 => Some(inner(TunnelKind::IpInIp, 0, LinkType::Ipv6)),
        PROTO_GRE => gre(payload, offset)?,
        PROTO_UDP => udp(payload, ports, offset)?,
        _ => None,
    };
    Ok(inner.and_then(|i| tunnels.inside(i.kind).map(|t| (i, t))))
}

fn inner(kind: TunnelKind, start: usize, link: LinkType) -> Inner {
    Inner { kind, start, link }
}

/// How a protocol type (an EtherType) inside GRE or Geneve is read; `None`
/// for anything but IP and Ethernet.
fn link_of(ethertype: u16) -> Option<LinkType> {
    match ethertype {
        ETHERTYPE_IPV4 => Some(LinkType::Ipv4),
        ETHERTYPE_IPV6 => Some(LinkType::Ipv6),
        ETHERTYPE_ETHERNET => Some(LinkType::Ethernet),
        _ => None,
    }
}

fn header(payload: &[u8], len: usize, offset: usize) -> Result<&[u8], DecodeError> {
    payload.get(..len).ok_or(DecodeError::new(
        DecodeErrorKind::TruncatedTunnel,
        offset,
        len,
        payload.len(),
    ))
}

/// GRE (RFC 2784, with RFC 2890's key and sequence number): version 0, no
/// routing (RFC 1701's, long deprecated).
fn gre(payload: &[u8], offset: usize) -> Result<Option<Inner>, DecodeError> {
    let h = header(payload, GRE_HEADER, offset)?;
    let flags = u16::from_be_bytes([h[0], h[1]]);
    let (checksum, routing, key, sequence) = (
        flags & 0x8000 != 0,
        flags & 0x4000 != 0,
        flags & 0x2000 != 0,
        flags & 0x1000 != 0,
    );
    if routing || flags & 0x0007 != 0 {
        return Ok(None);
    }
    let Some(link) = link_of(u16::from_be_bytes([h[2], h[3]])) else {
        return Ok(None);
    };
    let len = GRE_HEADER + 4 * (checksum as usize + key as usize + sequence as usize);
    header(payload, len, offset)?;
    Ok(Some(inner(TunnelKind::Gre, len, link)))
}

/// VXLAN (RFC 7348) or Geneve (RFC 8926), by the UDP destination port.
fn udp(payload: &[u8], ports: &TunnelPorts, offset: usize) -> Result<Option<Inner>, DecodeError> {
    let Some(dst) = payload.get(2..4) else {
        return Ok(None);
    };
    let Some(kind) = ports.kind_of(u16::from_be_bytes([dst[0], dst[1]])) else {
        return Ok(None);
    };
    let at = UDP_HEADER;
    match kind {
        TunnelKind::Vxlan => {
            let h = &header(payload, at + VXLAN_HEADER, offset)?[at..];
            // RFC 7348: the I flag says the VNI is valid; without it this
            // is not VXLAN (8472 is also IANA's port for OTV).
            if h[0] & 0x08 == 0 {
                return Ok(None);
            }
            Ok(Some(inner(kind, at + VXLAN_HEADER, LinkType::Ethernet)))
        }
        _ => {
            let h = &header(payload, at + GENEVE_HEADER, offset)?[at..];
            // Version 0 only; options in 4-byte units.
            if h[0] >> 6 != 0 {
                return Ok(None);
            }
            let Some(link) = link_of(u16::from_be_bytes([h[2], h[3]])) else {
                return Ok(None);
            };
            let len = at + GENEVE_HEADER + (h[0] & 0x3f) as usize * 4;
            header(payload, len, offset)?;
            Ok(Some(inner(kind, len, link)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unwrapped(payload: &[u8], protocol: u8) -> Result<Option<Inner>, DecodeError> {
        unwrap(
            payload,
            protocol,
            &TunnelPorts::default(),
            Tunnels::default(),
            34,
        )
        .map(|found| found.map(|(inner, _)| inner))
    }

    fn udp_to(port: u16, rest: &[u8]) -> Vec<u8> {
        let mut p = vec![0x9c, 0x40];
        p.extend_from_slice(&port.to_be_bytes());
        p.extend_from_slice(&[0, 0, 0, 0]);
        p.extend_from_slice(rest);
        p
    }

    #[test]
    fn vxlan_on_its_ports_holds_an_ethernet_frame_after_16_bytes() {
        for port in [4789, 8472] {
            let p = udp_to(port, &[0x08, 0, 0, 0, 0, 0, 42, 0]);
            assert_eq!(
                unwrapped(&p, PROTO_UDP).unwrap(),
                Some(inner(TunnelKind::Vxlan, 16, LinkType::Ethernet))
            );
        }
        let dns = udp_to(53, &[0; 8]);
        assert_eq!(unwrapped(&dns, PROTO_UDP).unwrap(), None);
        let no_vni = udp_to(4789, &[0, 0, 0, 0, 0, 0, 42, 0]);
        assert_eq!(unwrapped(&no_vni, PROTO_UDP).unwrap(), None);
    }

    #[test]
    fn geneve_options_move_the_inner_packet() {
        // Two 4-byte words of options, an Ethernet frame inside.
        let mut g = vec![0x02, 0, 0x65, 0x58, 0, 0, 1, 0];
        g.extend_from_slice(&[0; 8]);
        let p = udp_to(6081, &g);
        assert_eq!(
            unwrapped(&p, PROTO_UDP).unwrap(),
            Some(inner(TunnelKind::Geneve, 8 + 8 + 8, LinkType::Ethernet))
        );
        // Options past the capture: the overlay's header was cut.
        let cut = udp_to(6081, &g[..12]);
        let err = unwrapped(&cut, PROTO_UDP).unwrap_err();
        assert_eq!(err.kind, DecodeErrorKind::TruncatedTunnel);
        assert_eq!((err.offset, err.needed, err.had), (34, 24, 20));
        // A version other than 0 is not read.
        let mut v1 = g.clone();
        v1[0] |= 0x40;
        assert_eq!(unwrapped(&udp_to(6081, &v1), PROTO_UDP).unwrap(), None);
    }

    #[test]
    fn gre_fields_each_add_four_bytes() {
        let plain = [0x00, 0x00, 0x08, 0x00];
        assert_eq!(
            unwrapped(&plain, PROTO_GRE).unwrap(),
            Some(inner(TunnelKind::Gre, 4, LinkType::Ipv4))
        );
        let mut all = vec![0xb0, 0x00, 0x65, 0x58];
        all.extend_from_slice(&[0; 12]);
        assert_eq!(
            unwrapped(&all, PROTO_GRE).unwrap(),
            Some(inner(TunnelKind::Gre, 16, LinkType::Ethernet))
        );
        let err = unwrapped(&all[..12], PROTO_GRE).unwrap_err();
        assert_eq!(err.kind, DecodeErrorKind::TruncatedTunnel);
        // PPTP's enhanced GRE (version 1) and routing are not followed.
        assert_eq!(
            unwrapped(&[0x00, 0x01, 0x08, 0x00], PROTO_GRE).unwrap(),
            None
        );
        assert_eq!(
            unwrapped(&[0x40, 0x00, 0x08, 0x00], PROTO_GRE).unwrap(),
            None
        );
    }

    #[test]
    fn ip_in_ip_starts_at_once() {
        assert_eq!(
            unwrapped(&[0x45], PROTO_IPIP).unwrap(),
            Some(inner(TunnelKind::IpInIp, 0, LinkType::Ipv4))
        );
        assert_eq!(
            unwrapped(&[0x60], PROTO_IPV6).unwrap(),
            Some(inner(TunnelKind::IpInIp, 0, LinkType::Ipv6))
        );
    }

    #[test]
    fn nesting_stops_at_the_depth_limit() {
        let ports = TunnelPorts::default();
        let mut tunnels = Tunnels::default();
        for _ in 0..MAX_TUNNEL_DEPTH {
            let (_, t) = unwrap(&[0x45], PROTO_IPIP, &ports, tunnels, 0)
                .unwrap()
                .unwrap();
            tunnels = t;
        }
        assert_eq!(tunnels.depth(), MAX_TUNNEL_DEPTH);
        assert!(unwrap(&[0x45], PROTO_IPIP, &ports, tunnels, 0)
            .unwrap()
            .is_none());
    }

    #[test]
    fn the_default_ports_are_what_new_makes_of_them() {
        assert_eq!(
            DEFAULT_PORTS,
            TunnelPorts::new(&[4789, 8472], &[6081]).unwrap()
        );
    }

    #[test]
    fn port_lists_are_bounded_and_disjoint() {
        assert!(TunnelPorts::new(&[4789], &[4789]).is_none());
        assert!(TunnelPorts::new(&[1; MAX_TUNNEL_PORTS + 1], &[]).is_none());
        let none = TunnelPorts::new(&[], &[]).unwrap();
        let p = udp_to(4789, &[0x08, 0, 0, 0, 0, 0, 42, 0]);
        assert!(unwrap(&p, PROTO_UDP, &none, Tunnels::default(), 0)
            .unwrap()
            .is_none());
    }
}
