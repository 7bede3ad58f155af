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

    /// What `of` gives of `seg` against this key, without ordering its
    /// endpoints: `Some(sender_is_lo)` when `seg` is of this flow.
    #[inline(always)]
    pub fn sender_of(&self, seg: &Segment) -> Option<bool> {
        let (src, dst) = ((seg.src, seg.src_port), (seg.dst, seg.dst_port));
        if src == self.lo() && dst == self.hi() {
            Some(true)
        } else if dst == self.lo() && src == self.hi() {
            Some(false)
        } else {
            None
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::test_segment;

    #[test]
    fn a_segment_is_of_a_key_as_its_own_key_says() {
        let a = Addr::v4([10, 0, 0, 1]);
        let mut octets = [0; 16];
        (octets[0], octets[15]) = (0xfd, 2);
        let b = Addr::v6(octets);
        let endpoints = [(a, 80), (a, 40000), (b, 80), (b, 40000)];
        let mut keys: Vec<FlowKey> = Vec::new();
        for x in endpoints {
            for y in endpoints {
                let key = FlowKey::of_endpoints(x, y).0;
                if !keys.contains(&key) {
                    keys.push(key);
                }
            }
        }
        let mut matched = 0;
        // Both ends the same too: a connection to itself.
        for &(src, src_port) in &endpoints {
            for &(dst, dst_port) in &endpoints {
                let mut seg = test_segment(src_port, dst_port, 0x10, 1, 1);
                (seg.src, seg.dst) = (src, dst);
                let (own, sender_is_lo) = FlowKey::of(&seg);
                for key in &keys {
                    let got = key.sender_of(&seg);
                    assert_eq!(
                        got,
                        (own == *key).then_some(sender_is_lo),
                        "{seg:?} against {key:?}"
                    );
                    matched += got.is_some() as u32;
                }
            }
        }
        assert_eq!(matched, 16, "each segment is of its own key only");
    }
}
