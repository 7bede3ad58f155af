//! Reading a TPACKET_V3 receive block: its header, and the packets chained
//! in it. Pure functions over the block's bytes, checked against the block's
//! length at every step, so a malformed block (or a test's synthetic one)
//! ends the walk with an error instead of a read out of bounds.
//!
//! Layouts are the kernel's UAPI (linux/if_packet.h), x86_64 and aarch64
//! alike: `struct tpacket_block_desc` (48 bytes with `tpacket_hdr_v1`), then
//! packets, each a `struct tpacket3_hdr` (48 bytes), padding to 16, a
//! `struct sockaddr_ll`, and the packet bytes at `tp_mac`.

/// `TP_STATUS_USER`: the block is ours to read.
pub const TP_STATUS_USER: u32 = 1;
/// `TP_STATUS_KERNEL`: give the block back.
pub const TP_STATUS_KERNEL: u32 = 0;

/// Byte offsets in `struct tpacket_block_desc` / `tpacket_hdr_v1`.
pub mod block {
    pub const BLOCK_STATUS: usize = 8;
    pub const NUM_PKTS: usize = 12;
    pub const OFFSET_TO_FIRST_PKT: usize = 16;
    pub const BLK_LEN: usize = 20;
    pub const HEADER_LEN: usize = 48;
}

/// Byte offsets in `struct tpacket3_hdr`, and of the `sockaddr_ll` after it.
pub mod packet {
    pub const NEXT_OFFSET: usize = 0;
    pub const SEC: usize = 4;
    pub const NSEC: usize = 8;
    pub const SNAPLEN: usize = 12;
    pub const LEN: usize = 16;
    pub const MAC: usize = 24;
    pub const HEADER_LEN: usize = 48;
    /// `sockaddr_ll.sll_protocol` (big-endian), after the 16-aligned header.
    pub const SLL_PROTOCOL: usize = 48 + 2;
    /// `sockaddr_ll.sll_ifindex`.
    pub const SLL_IFINDEX: usize = 48 + 4;
    /// `sockaddr_ll.sll_pkttype`.
    pub const SLL_PKTTYPE: usize = 48 + 10;
}

/// `PACKET_OUTGOING`: a packet this host sent.
pub const PACKET_OUTGOING: u8 = 4;

/// What is wrong with a block.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RingError {
    #[error("block header beyond the block")]
    Header,
    #[error("packet header at {0} beyond the block")]
    PacketHeader(usize),
    #[error("packet data at {offset}+{len} beyond the block")]
    PacketData { offset: usize, len: usize },
}

/// The fields of a block header we use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockHeader {
    pub status: u32,
    pub num_pkts: u32,
    pub first: usize,
    /// Where the block's last packet ends (`blk_len`).
    pub len: usize,
}

/// One packet in a block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RingPacket<'a> {
    pub sec: u32,
    pub nsec: u32,
    /// Length on the wire (from the network header with SOCK_DGRAM).
    pub len: u32,
    /// Link-layer protocol (ETH_P_*), from `sockaddr_ll`.
    pub protocol: u16,
    /// Interface the packet came through, and its PACKET_* type.
    pub ifindex: i32,
    pub pkttype: u8,
    pub data: &'a [u8],
    /// Where `data` starts in the block.
    pub data_at: usize,
    /// Offset of the next packet from this one's start; 0 for the last.
    pub next_offset: u32,
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    b.get(at..at + 4)
        .map(|s| u32::from_ne_bytes([s[0], s[1], s[2], s[3]]))
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    b.get(at..at + 2).map(|s| u16::from_ne_bytes([s[0], s[1]]))
}

/// Reads a block's header.
pub fn block_header(b: &[u8]) -> Result<BlockHeader, RingError> {
    if b.len() < block::HEADER_LEN {
        return Err(RingError::Header);
    }
    let field = |at| u32_at(b, at).ok_or(RingError::Header);
    Ok(BlockHeader {
        status: field(block::BLOCK_STATUS)?,
        num_pkts: field(block::NUM_PKTS)?,
        first: field(block::OFFSET_TO_FIRST_PKT)? as usize,
        len: field(block::BLK_LEN)? as usize,
    })
}

/// Reads the packet whose header starts at `offset` in the block.
pub fn packet_at(b: &[u8], offset: usize) -> Result<RingPacket<'_>, RingError> {
    let h = b
        .get(offset..)
        .filter(|h| h.len() > packet::SLL_PKTTYPE)
        .ok_or(RingError::PacketHeader(offset))?;
    let field = |at| u32_at(h, at).ok_or(RingError::PacketHeader(offset));
    let mac = u16_at(h, packet::MAC).ok_or(RingError::PacketHeader(offset))? as usize;
    let snaplen = field(packet::SNAPLEN)? as usize;
    let data = h
        .get(mac..mac.saturating_add(snaplen))
        .ok_or(RingError::PacketData {
            offset: offset + mac,
            len: snaplen,
        })?;
    Ok(RingPacket {
        data_at: offset + mac,
        sec: field(packet::SEC)?,
        nsec: field(packet::NSEC)?,
        len: field(packet::LEN)?,
        protocol: u16::from_be(
            u16_at(h, packet::SLL_PROTOCOL).ok_or(RingError::PacketHeader(offset))?,
        ),
        ifindex: field(packet::SLL_IFINDEX)? as i32,
        pkttype: h[packet::SLL_PKTTYPE],
        data,
        next_offset: field(packet::NEXT_OFFSET)?,
    })
}

/// `struct virtio_net_hdr`, which a socket with PACKET_VNET_HDR finds just
/// before each frame: `gso_type` at 1, `gso_size` at 4 (little-endian).
pub const VNET_HDR_LEN: usize = 10;

/// The segment size of a segmentation-offload super-packet, from the
/// virtio-net header before the frame at `data_at`; 0 for a plain packet
/// (GSO type none) or when the header is not there.
pub fn vnet_gso_size(block: &[u8], data_at: usize) -> u16 {
    let Some(h) = data_at
        .checked_sub(VNET_HDR_LEN)
        .and_then(|at| block.get(at..data_at))
    else {
        return 0;
    };
    if h[1] == 0 {
        0
    } else {
        u16::from_le_bytes([h[4], h[5]])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A block the way the kernel lays it out, with the given packets.
    fn synthetic_block(size: usize, packets: &[&[u8]]) -> Vec<u8> {
        let mut b = vec![0u8; size];
        let put32 =
            |b: &mut Vec<u8>, at: usize, v: u32| b[at..at + 4].copy_from_slice(&v.to_ne_bytes());
        put32(&mut b, 0, 3); // version
        put32(&mut b, block::BLOCK_STATUS, TP_STATUS_USER);
        put32(&mut b, block::NUM_PKTS, packets.len() as u32);
        put32(&mut b, block::OFFSET_TO_FIRST_PKT, block::HEADER_LEN as u32);
        let mut at = block::HEADER_LEN;
        for (i, p) in packets.iter().enumerate() {
            let mac = 80usize; // header, sockaddr_ll, alignment
            let total = (mac + p.len()).next_multiple_of(16);
            let next = if i + 1 == packets.len() {
                0
            } else {
                total as u32
            };
            put32(&mut b, at + packet::NEXT_OFFSET, next);
            put32(&mut b, at + packet::SEC, 1_700_000_000 + i as u32);
            put32(&mut b, at + packet::NSEC, 500);
            put32(&mut b, at + packet::SNAPLEN, p.len() as u32);
            put32(&mut b, at + packet::LEN, p.len() as u32 + 1000);
            b[at + packet::MAC..at + packet::MAC + 2].copy_from_slice(&(mac as u16).to_ne_bytes());
            b[at + packet::SLL_PROTOCOL..at + packet::SLL_PROTOCOL + 2]
                .copy_from_slice(&0x0800u16.to_be_bytes());
            b[at + mac..at + mac + p.len()].copy_from_slice(p);
            at += total;
        }
        put32(&mut b, block::BLK_LEN, at as u32);
        b
    }

    fn walk(b: &[u8]) -> Result<Vec<RingPacket<'_>>, RingError> {
        let h = block_header(b)?;
        let mut out = Vec::new();
        let mut at = h.first;
        for _ in 0..h.num_pkts {
            let p = packet_at(b, at)?;
            at += p.next_offset as usize;
            out.push(p);
        }
        Ok(out)
    }

    #[test]
    fn offsets_match_the_kernel_structs() {
        assert_eq!(
            std::mem::size_of::<libc::tpacket3_hdr>(),
            packet::HEADER_LEN
        );
        assert_eq!(
            std::mem::offset_of!(libc::tpacket3_hdr, tp_snaplen),
            packet::SNAPLEN
        );
        assert_eq!(
            std::mem::offset_of!(libc::tpacket3_hdr, tp_mac),
            packet::MAC
        );
        assert_eq!(
            std::mem::offset_of!(libc::tpacket3_hdr, tp_nsec),
            packet::NSEC
        );
        assert_eq!(std::mem::offset_of!(libc::sockaddr_ll, sll_protocol), 2);
        assert_eq!(std::mem::offset_of!(libc::sockaddr_ll, sll_ifindex), 4);
        assert_eq!(std::mem::offset_of!(libc::sockaddr_ll, sll_pkttype), 10);
        let hv1 = std::mem::offset_of!(libc::tpacket_block_desc, hdr);
        assert_eq!(
            hv1 + std::mem::offset_of!(libc::tpacket_hdr_v1, block_status),
            block::BLOCK_STATUS
        );
        assert_eq!(
            hv1 + std::mem::offset_of!(libc::tpacket_hdr_v1, num_pkts),
            block::NUM_PKTS
        );
        assert_eq!(
            hv1 + std::mem::offset_of!(libc::tpacket_hdr_v1, offset_to_first_pkt),
            block::OFFSET_TO_FIRST_PKT
        );
    }

    #[test]
    fn walks_every_packet_of_a_block_in_order() {
        let a = [0x45u8; 60];
        let b = [0x60u8; 33];
        let c = [0x45u8; 1];
        let block = synthetic_block(4096, &[&a, &b, &c]);
        let got = walk(&block).unwrap();
        assert_eq!(got.len(), 3);
        assert_eq!(got[0].data, &a[..]);
        assert_eq!(got[1].data, &b[..]);
        assert_eq!(got[2].data, &c[..]);
        assert_eq!(got[1].sec, 1_700_000_001);
        assert_eq!(got[2].len, 1001);
        assert_eq!(got[0].protocol, 0x0800);
    }

    #[test]
    fn a_packet_ending_exactly_at_the_block_end_is_read() {
        let p = [7u8; 32];
        let block = synthetic_block(48 + 80 + 32, &[&p]);
        assert_eq!(walk(&block).unwrap()[0].data, &p[..]);
    }

    #[test]
    fn vnet_header_before_the_frame_gives_the_gso_size() {
        let mut block = vec![0u8; 64];
        // GSO TCPv4 (1), gso_size 1448, right before data at 40.
        block[30 + 1] = 1;
        block[30 + 4..30 + 6].copy_from_slice(&1448u16.to_le_bytes());
        assert_eq!(vnet_gso_size(&block, 40), 1448);
        block[31] = 0; // GSO none
        assert_eq!(vnet_gso_size(&block, 40), 0);
        assert_eq!(vnet_gso_size(&block, 5), 0, "no room for a header");
    }

    #[test]
    fn offsets_beyond_the_block_are_errors_not_reads() {
        let p = [7u8; 32];
        let mut block = synthetic_block(4096, &[&p, &p]);
        // The first packet claims its successor starts past the end.
        block[48..52].copy_from_slice(&10_000u32.to_ne_bytes());
        assert_eq!(walk(&block), Err(RingError::PacketHeader(10_048)));
        // A snap length past the end.
        let mut block = synthetic_block(4096, &[&p]);
        block[48 + packet::SNAPLEN..48 + packet::SNAPLEN + 4]
            .copy_from_slice(&9_000u32.to_ne_bytes());
        assert!(matches!(walk(&block), Err(RingError::PacketData { .. })));
        assert_eq!(block_header(&block[..20]), Err(RingError::Header));
    }
}
