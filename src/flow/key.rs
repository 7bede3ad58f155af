//! Flow keys: one key for both directions of a connection, and which side of
//! it sent a given segment.

use std::net::IpAddr;

use crate::decode::{Addr, Segment};

/// Both endpoints of a connection, the lower (address, port) first, so that
/// both directions give the same key. 40 bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FlowKey {
    pub lo_addr: Addr,
    pub hi_addr: Addr,
    pub lo_port: u16,
    pub hi_port: u16,
}

impl FlowKey {
    /// The key of a segment, and whether its sender is the `lo` endpoint.
    pub fn of(seg: &Segment) -> (FlowKey, bool) {
        FlowKey::of_endpoints((seg.src, seg.src_port), (seg.dst, seg.dst_port))
    }

    /// The key of a segment from `src` to `dst`, and whether `src` is the
    /// `lo` endpoint. Endpoints order by address (as its 16 bytes, IPv4
    /// mapped into IPv6), then port, as bpf/count.h orders them too.
    pub fn of_endpoints(src: (Addr, u16), dst: (Addr, u16)) -> (FlowKey, bool) {
        let (lo, hi, sender_is_lo) = if src <= dst {
            (src, dst, true)
        } else {
            (dst, src, false)
        };
        let key = FlowKey {
            lo_addr: lo.0,
            hi_addr: hi.0,
            lo_port: lo.1,
            hi_port: hi.1,
        };
        (key, sender_is_lo)
    }

    pub fn lo(&self) -> (Addr, u16) {
        (self.lo_addr, self.lo_port)
    }

    pub fn hi(&self) -> (Addr, u16) {
        (self.hi_addr, self.hi_port)
    }
}

/// Who sent a segment: the side that opened the connection, or the other.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Side {
    Client = 0,
    Server = 1,
}

impl Side {
    pub const BOTH: [Side; 2] = [Side::Client, Side::Server];

    pub fn index(self) -> usize {
        self as usize
    }

    pub fn peer(self) -> Side {
        match self {
            Side::Client => Side::Server,
            Side::Server => Side::Client,
        }
    }

    /// The `sender` (or `leg`) label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Client => "client",
            Side::Server => "server",
        }
    }
}

/// Client and server of a connection, as label material.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Orientation {
    pub client: IpAddr,
    pub client_port: u16,
    pub server: IpAddr,
    pub server_port: u16,
}
