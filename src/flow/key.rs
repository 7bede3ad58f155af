//! Flow keys: one key for both directions of a connection, and which side of
//! it sent a given segment.

use std::net::IpAddr;

use crate::decode::{Addr, Segment};

/// Both endpoints of a connection, the lower (address, port) first, so that
/// both directions give the same key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FlowKey {
    pub lo: (Addr, u16),
    pub hi: (Addr, u16),
}

impl FlowKey {
    /// The key of a segment, and whether its sender is `lo`.
    pub fn of(seg: &Segment) -> (FlowKey, bool) {
        let src = (seg.src, seg.src_port);
        let dst = (seg.dst, seg.dst_port);
        if src <= dst {
            (FlowKey { lo: src, hi: dst }, true)
        } else {
            (FlowKey { lo: dst, hi: src }, false)
        }
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
    pub server: IpAddr,
    pub server_port: u16,
}
