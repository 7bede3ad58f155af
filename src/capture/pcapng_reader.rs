//! A reader of pcapng files (what Wireshark, dumpcap and editcap write by
//! default), for `-r` without a filter, on the same chunked buffer as the
//! classic pcap reader (`pcap_reader::Chunks`): frames are handed out
//! borrowed from it, with none of libpcap's per-block stdio calls.
//!
//! What it reads: Section Header Blocks (either byte order, a new section
//! resets the interfaces), Interface Description Blocks (link type, snap
//! length, `if_tsresol` in powers of 10 or 2, `if_tsoffset`), Enhanced and
//! obsolete Packet Blocks, and Simple Packet Blocks (no timestamp: the
//! interface's `if_tsoffset`, as libpcap gives them; their captured length
//! the first interface's snap length at most, 262,144 where it has none). Every other block (name resolution, statistics,
//! decryption secrets, custom) is skipped.
//!
//! The file's link type is its first interface's. A packet of an interface
//! with another link type is skipped and counted (`unreadable_record`), with
//! one message when that interface is described; libpcap refuses such a
//! file at that point. A block that cannot be framed (a length too small,
//! not a multiple of 4, larger than any block, past the file's end, a packet
//! of an interface never described) ends the reading, with one message, as
//! for classic pcap.

use std::fs::File;
use std::path::Path;

use super::pcap_reader::{open_error, read_full, Chunks};
use super::{CaptureError, Frame, Next};
use crate::decode::DecodeErrorKind;
use crate::flow::Nanos;

const SHB: u32 = 0x0a0d_0d0a;
const IDB: u32 = 1;
const OBSOLETE_PB: u32 = 2;
const SPB: u32 = 3;
const EPB: u32 = 6;
const BYTE_ORDER_MAGIC: u32 = 0x1a2b_3c4d;
/// A block's type and total length, and the length again at its end.
const FRAMING: usize = 12;
/// A block larger than this is not one we could need (a frame has at most
/// 262,144 bytes; this leaves room for names and comments).
const MAX_BLOCK: usize = 16 << 20;
/// A frame larger than this is not a frame (libpcap's own limit).
const MAX_RECORD: usize = 262_144;
const OPT_TSRESOL: u16 = 9;
const OPT_TSOFFSET: u16 = 14;

/// Link type 1, the file's when it describes no interface before a packet.
const ETHERNET: u32 = 1;

/// Whether `len` can be a block's total length.
fn block_length(len: usize) -> bool {
    (FRAMING..=MAX_BLOCK).contains(&len) && len.is_multiple_of(4)
}

/// How an interface's timestamps become nanoseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Resolution {
    /// Units of 10^-n seconds, n <= 9: times 10^(9-n).
    Times(u64),
    /// Units of 10^-n seconds, n > 9: divided by 10^(n-9).
    Divided(u64),
    /// Units of 2^-n seconds.
    Binary(u32),
}

impl Resolution {
    /// From an `if_tsresol` byte.
    fn of(byte: u8) -> Option<Resolution> {
        let n = u32::from(byte & 0x7f);
        if byte & 0x80 != 0 {
            return (n <= 63).then_some(Resolution::Binary(n));
        }
        match n {
            0..=9 => Some(Resolution::Times(10u64.pow(9 - n))),
            10..=19 => Some(Resolution::Divided(10u64.pow(n - 9))),
            _ => None,
        }
    }

    #[inline]
    fn nanos(self, units: u64) -> Nanos {
        match self {
            Resolution::Times(k) => units.wrapping_mul(k),
            Resolution::Divided(k) => units / k,
            Resolution::Binary(n) => ((u128::from(units) * 1_000_000_000) >> n) as u64,
        }
    }
}

/// What an Interface Description Block said.
#[derive(Clone, Copy, Debug)]
struct Interface {
    /// Its link type is the file's: its packets are handed on.
    readable: bool,
    snaplen: u32,
    resolution: Resolution,
    /// `if_tsoffset`, in nanoseconds.
    offset: Nanos,
}

pub struct PcapngReader {
    c: Chunks,
    /// The current section's byte order is not this machine's reading
    /// (little-endian) one.
    swapped: bool,
    /// The current section's interfaces, by id.
    interfaces: Vec<Interface>,
    /// The file's link type: its first interface's (Ethernet when none is
    /// described before the first packet: then none can be read).
    link_type: u32,
}

impl PcapngReader {
    /// Opens a pcapng file and reads up to its first interface (whose
    /// link type is the file's), or returns `None` if it is not pcapng.
    pub fn open(path: &Path, name: &str) -> Result<Option<PcapngReader>, CaptureError> {
        let open_err = |e: std::io::Error| open_error(path, e.to_string());
        let mut file = File::open(path).map_err(open_err)?;
        let mut head = [0u8; 4];
        if read_full(&mut file, &mut head).map_err(open_err)? < 4 || head != SHB.to_le_bytes() {
            return Ok(None);
        }
        let file = File::open(path).map_err(open_err)?;
        let mut r = PcapngReader {
            c: Chunks::new(name, file, 0),
            swapped: false,
            interfaces: Vec::new(),
            link_type: ETHERNET,
        };
        let bad = |message: String| open_error(path, message);
        // The first block is the section header; its byte order and
        // version must be readable, or this is no pcapng file of ours.
        if !r.c.fill(FRAMING + 12)? {
            return Err(bad("the pcapng section header is cut short".into()));
        }
        r.section()
            .map_err(|why| bad(format!("the pcapng section header: {why}")))?;
        // The blocks before the first interface (names, statistics, other
        // sections' headers) are read and passed here, as `next` would;
        // `next` goes on from that interface, or from whatever stopped the
        // looking (a packet, a broken block), which it then reports.
        loop {
            if !r.c.fill(8)? {
                break;
            }
            let kind = r.u32_at(r.c.at);
            if kind == SHB && (!r.c.fill(FRAMING + 12)? || r.section().is_err()) {
                break;
            }
            let len = r.u32_at(r.c.at + 4) as usize;
            if !block_length(len) || [EPB, SPB, OBSOLETE_PB].contains(&kind) {
                break;
            }
            if kind == IDB {
                if len >= FRAMING + 8 && r.c.fill(FRAMING + 8)? {
                    r.link_type = u32::from(r.u16_at(r.c.at + 8));
                }
                break;
            }
            if !r.c.fill(len)? {
                break;
            }
            r.c.at += len;
        }
        Ok(Some(r))
    }

    /// The file's link type.
    pub fn link_type(&self) -> u32 {
        self.link_type
    }

    #[inline]
    fn u32_at(&self, at: usize) -> u32 {
        self.words::<1>(at)[0]
    }

    /// `N` 32-bit fields from `at`, with one bounds check.
    #[inline]
    fn words<const N: usize>(&self, at: usize) -> [u32; N] {
        let mut out = [0u32; N];
        if let Some(b) = self.c.buf.get(at..at + 4 * N) {
            for (w, b) in out.iter_mut().zip(b.chunks_exact(4)) {
                let b = [b[0], b[1], b[2], b[3]];
                *w = if self.swapped {
                    u32::from_be_bytes(b)
                } else {
                    u32::from_le_bytes(b)
                };
            }
        }
        out
    }

    #[inline]
    fn u16_at(&self, at: usize) -> u16 {
        let b: [u8; 2] = self.c.buf[at..at + 2].try_into().unwrap_or_default();
        if self.swapped {
            u16::from_be_bytes(b)
        } else {
            u16::from_le_bytes(b)
        }
    }

    /// Reads the Section Header Block at `at` (its first 20 bytes are in
    /// the buffer): its byte order, and a new, empty list of interfaces.
    fn section(&mut self) -> Result<(), String> {
        let at = self.c.at;
        let magic: [u8; 4] = self.c.buf[at + 8..at + 12].try_into().unwrap_or_default();
        self.swapped = match u32::from_le_bytes(magic) {
            BYTE_ORDER_MAGIC => false,
            m if m.swap_bytes() == BYTE_ORDER_MAGIC => true,
            m => {
                return Err(format!(
                    "byte-order magic {m:#010x}, not {BYTE_ORDER_MAGIC:#010x}"
                ))
            }
        };
        let major = self.u16_at(at + 12);
        if major != 1 {
            return Err(format!(
                "version {major}.{}; only 1 exists",
                self.u16_at(at + 14)
            ));
        }
        self.interfaces.clear();
        Ok(())
    }

    /// Reads the Interface Description Block at `at`, `len` bytes.
    fn interface(&mut self, len: usize) {
        let at = self.c.at;
        let link = u32::from(self.u16_at(at + 8));
        let mut interface = Interface {
            readable: true,
            snaplen: self.u32_at(at + 12),
            resolution: Resolution::Times(1000),
            offset: 0,
        };
        let end = at + len - 4;
        let mut o = at + 16;
        while o + 4 <= end {
            let (code, olen) = (self.u16_at(o), usize::from(self.u16_at(o + 2)));
            let value = o + 4;
            if code == 0 || value + olen > end {
                break;
            }
            match (code, olen) {
                (OPT_TSRESOL, 1) => match Resolution::of(self.c.buf[value]) {
                    Some(r) => interface.resolution = r,
                    None => {
                        eprintln!(
                            "tcp-exporter: {}: interface {} has a timestamp resolution \
                             ({:#04x}) finer than any clock; its packets are skipped \
                             (decode_errors reason unreadable_record)",
                            self.c.name,
                            self.interfaces.len(),
                            self.c.buf[value]
                        );
                        interface.readable = false;
                    }
                },
                (OPT_TSOFFSET, 8) => {
                    let (a, b) = (self.u32_at(value), self.u32_at(value + 4));
                    let seconds = if self.swapped {
                        (u64::from(a) << 32) | u64::from(b)
                    } else {
                        (u64::from(b) << 32) | u64::from(a)
                    };
                    interface.offset = seconds.wrapping_mul(1_000_000_000);
                }
                _ => {}
            }
            o = value + olen.div_ceil(4) * 4;
        }
        let file = self.link_type;
        if link != file {
            eprintln!(
                "tcp-exporter: {}: interface {} has link type {link}, the file's first \
                 interface {file}; its packets are skipped (decode_errors reason \
                 unreadable_record)",
                self.c.name,
                self.interfaces.len()
            );
            interface.readable = false;
        }
        self.interfaces.push(interface);
    }

    // Inlined into the capture loop for files, through `PcapFile::next`.
    #[inline(always)]
    pub fn next(&mut self) -> Result<Next<'_>, CaptureError> {
        loop {
            if self.c.broken {
                return Ok(Next::End);
            }
            if !self.c.fill(8)? {
                return Ok(if self.c.filled == self.c.at {
                    Next::End
                } else {
                    self.c.give_up(
                        DecodeErrorKind::TruncatedRecord,
                        "the file ends inside a block header",
                    )
                });
            }
            let kind = self.u32_at(self.c.at);
            if kind == SHB {
                // Its byte order may differ from the last section's: read
                // it before the length.
                if !self.c.fill(FRAMING + 12)? {
                    return Ok(self.c.give_up(
                        DecodeErrorKind::TruncatedRecord,
                        "the file ends inside a section header",
                    ));
                }
                if let Err(why) = self.section() {
                    let why = format!("a section header: {why}");
                    return Ok(self.c.give_up(DecodeErrorKind::UnreadableRecord, &why));
                }
            }
            let [_, len] = self.words::<2>(self.c.at);
            let len = len as usize;
            if !block_length(len) || (kind == SHB && len < FRAMING + 16) {
                let why = format!("a block (type {kind:#x}) of {len} bytes");
                return Ok(self.c.give_up(DecodeErrorKind::BadRecordLength, &why));
            }
            if !self.c.fill(len)? {
                return Ok(self.c.give_up(
                    DecodeErrorKind::TruncatedRecord,
                    "the file ends inside a block",
                ));
            }
            // Filling may have moved the block to the buffer's start.
            let at = self.c.at;
            // The packet's interface, timestamp (in the interface's units),
            // captured and original lengths, and where its bytes start.
            let (id, units, caplen, wire_len, data) = match kind {
                EPB | OBSOLETE_PB if len >= FRAMING + 20 => {
                    let [id, high, low, caplen, wire_len] = self.words::<5>(at + 8);
                    let id = if kind == EPB {
                        id as usize
                    } else {
                        usize::from(self.u16_at(at + 8))
                    };
                    let units = (u64::from(high) << 32) | u64::from(low);
                    (id, units, caplen as usize, wire_len, at + 28)
                }
                SPB if len >= FRAMING + 4 => {
                    // libpcap's rule: the first interface's snap length at
                    // most, the largest frame where it has none.
                    let wire_len = self.u32_at(at + 8);
                    let snaplen = match self.interfaces.first().map_or(0, |i| i.snaplen) {
                        0 => MAX_RECORD,
                        s => (s as usize).min(MAX_RECORD),
                    };
                    let caplen = (wire_len as usize).min(snaplen);
                    if caplen > len - FRAMING - 4 {
                        let why = format!(
                            "a simple packet block of {len} bytes, too short for its {caplen}"
                        );
                        return Ok(self.c.give_up(DecodeErrorKind::BadRecordLength, &why));
                    }
                    (0, 0, caplen, wire_len, at + 12)
                }
                EPB | OBSOLETE_PB | SPB => {
                    let why = format!("a packet block of {len} bytes");
                    return Ok(self.c.give_up(DecodeErrorKind::BadRecordLength, &why));
                }
                IDB if len >= FRAMING + 8 => {
                    self.interface(len);
                    self.c.at += len;
                    continue;
                }
                _ => {
                    self.c.at += len;
                    continue;
                }
            };
            let Some(&interface) = self.interfaces.get(id) else {
                let why = format!("a packet of interface {id}, which no block described");
                return Ok(self.c.give_up(DecodeErrorKind::UnreadableRecord, &why));
            };
            if caplen > MAX_RECORD || data + caplen > at + len - 4 {
                let why = format!("a packet claims {caplen} captured bytes in a block of {len}");
                return Ok(self.c.give_up(DecodeErrorKind::BadRecordLength, &why));
            }
            self.c.at += len;
            if !interface.readable {
                return Ok(Next::Skipped(DecodeErrorKind::UnreadableRecord));
            }
            if caplen > wire_len as usize {
                return Ok(Next::Skipped(DecodeErrorKind::BadRecordLength));
            }
            let ts = interface
                .resolution
                .nanos(units)
                .wrapping_add(interface.offset);
            return Ok(Next::Frame(Frame {
                ts,
                data: &self.c.buf[data..data + caplen],
                wire_len,
                gso_size: 0,
            }));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pcapng file, little- or big-endian, built block by block.
    struct Builder {
        be: bool,
        bytes: Vec<u8>,
    }

    impl Builder {
        fn new(be: bool) -> Builder {
            let mut b = Builder {
                be,
                bytes: Vec::new(),
            };
            b.section();
            b
        }

        fn u32(&self, v: u32) -> [u8; 4] {
            if self.be {
                v.to_be_bytes()
            } else {
                v.to_le_bytes()
            }
        }

        fn u16(&self, v: u16) -> [u8; 2] {
            if self.be {
                v.to_be_bytes()
            } else {
                v.to_le_bytes()
            }
        }

        fn block(&mut self, kind: u32, body: &[u8]) -> &mut Builder {
            let mut body = body.to_vec();
            while !body.len().is_multiple_of(4) {
                body.push(0);
            }
            let len = (body.len() + FRAMING) as u32;
            let (k, l) = (self.u32(kind), self.u32(len));
            self.bytes.extend_from_slice(&k);
            self.bytes.extend_from_slice(&l);
            self.bytes.extend_from_slice(&body);
            self.bytes.extend_from_slice(&l);
            self
        }

        fn section(&mut self) -> &mut Builder {
            let mut body = self.u32(BYTE_ORDER_MAGIC).to_vec();
            body.extend_from_slice(&self.u16(1));
            body.extend_from_slice(&self.u16(0));
            body.extend_from_slice(&[0xff; 8]);
            self.block(SHB, &body)
        }

        fn interface(&mut self, link: u16, options: &[(u16, &[u8])]) -> &mut Builder {
            let mut body = self.u16(link).to_vec();
            body.extend_from_slice(&[0, 0]);
            body.extend_from_slice(&self.u32(0));
            for (code, value) in options {
                body.extend_from_slice(&self.u16(*code));
                body.extend_from_slice(&self.u16(value.len() as u16));
                body.extend_from_slice(value);
                while !body.len().is_multiple_of(4) {
                    body.push(0);
                }
            }
            body.extend_from_slice(&[0; 4]);
            self.block(IDB, &body)
        }

        fn packet(&mut self, id: u32, units: u64, data: &[u8], wire: u32) -> &mut Builder {
            let mut body = self.u32(id).to_vec();
            body.extend_from_slice(&self.u32((units >> 32) as u32));
            body.extend_from_slice(&self.u32(units as u32));
            body.extend_from_slice(&self.u32(data.len() as u32));
            body.extend_from_slice(&self.u32(wire));
            body.extend_from_slice(data);
            self.block(EPB, &body)
        }
    }

    type Read = (u32, Vec<(Nanos, Vec<u8>, u32)>, Vec<DecodeErrorKind>);

    fn read_all(bytes: &[u8]) -> Result<Read, CaptureError> {
        let dir = std::env::temp_dir().join(format!(
            "tcpx-ng-reader-{}-{}-{:x}",
            std::process::id(),
            bytes.len(),
            bytes
                .iter()
                .fold(0u64, |h, &b| h.wrapping_mul(31).wrapping_add(u64::from(b)))
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("t.pcapng");
        std::fs::write(&path, bytes).unwrap();
        let result = PcapngReader::open(&path, "t.pcapng").and_then(|r| {
            let mut r = r.expect("a pcapng file");
            let link = r.link_type();
            let (mut frames, mut skipped) = (Vec::new(), Vec::new());
            loop {
                match r.next()? {
                    Next::Frame(f) => frames.push((f.ts, f.data.to_vec(), f.wire_len)),
                    Next::Skipped(kind) => skipped.push(kind),
                    Next::End => return Ok((link, frames, skipped)),
                    Next::Idle(_) | Next::Run(_) => panic!("a file is never idle, nor counts"),
                }
            }
        });
        std::fs::remove_dir_all(&dir).unwrap();
        result
    }

    #[test]
    fn reads_packets_in_either_byte_order_with_the_interface_s_resolution() {
        for be in [false, true] {
            let mut f = Builder::new(be);
            f.interface(1, &[])
                .interface(1, &[(OPT_TSRESOL, &[9])])
                .interface(
                    1,
                    &[
                        (OPT_TSRESOL, &[0x80 | 10]),
                        (OPT_TSOFFSET, &{
                            let mut v = [0u8; 8];
                            let s = 100u64;
                            if be {
                                v[..4].copy_from_slice(&((s >> 32) as u32).to_be_bytes());
                                v[4..].copy_from_slice(&(s as u32).to_be_bytes());
                            } else {
                                v[..4].copy_from_slice(&(s as u32).to_le_bytes());
                                v[4..].copy_from_slice(&((s >> 32) as u32).to_le_bytes());
                            }
                            v
                        }),
                    ],
                )
                .block(4, b"names, skipped")
                .packet(0, 1_500_000, b"abc", 60)
                .packet(1, 1_500_000_001, b"", 0)
                .packet(2, 3 * 1024, b"xy", 2);
            let (link, got, skipped) = read_all(&f.bytes).unwrap();
            assert_eq!(link, 1);
            assert!(skipped.is_empty());
            assert_eq!(
                got,
                vec![
                    (1_500_000_000, b"abc".to_vec(), 60),
                    (1_500_000_001, vec![], 0),
                    (103_000_000_000, b"xy".to_vec(), 2),
                ],
                "big-endian: {be}"
            );
        }
    }

    #[test]
    fn a_new_section_may_change_byte_order_and_describes_its_own_interfaces() {
        let mut f = Builder::new(false);
        f.interface(1, &[]).packet(0, 7, b"a", 1);
        let mut g = Builder::new(true);
        g.interface(1, &[(OPT_TSRESOL, &[9])]).packet(0, 8, b"b", 1);
        let mut bytes = f.bytes.clone();
        bytes.extend_from_slice(&g.bytes);
        let (_, got, skipped) = read_all(&bytes).unwrap();
        assert!(skipped.is_empty());
        assert_eq!(got, vec![(7000, b"a".to_vec(), 1), (8, b"b".to_vec(), 1)]);
    }

    #[test]
    fn packets_of_an_interface_with_another_link_type_are_skipped_and_counted() {
        let mut f = Builder::new(false);
        f.interface(1, &[])
            .interface(101, &[])
            .packet(1, 1, b"raw", 3)
            .packet(0, 2, b"eth", 3);
        let (link, got, skipped) = read_all(&f.bytes).unwrap();
        assert_eq!(link, 1);
        assert_eq!(got, vec![(2000, b"eth".to_vec(), 3)]);
        assert_eq!(skipped, [DecodeErrorKind::UnreadableRecord]);
    }

    #[test]
    fn broken_blocks_end_the_reading_after_the_frames_before_them() {
        let mut f = Builder::new(false);
        f.interface(1, &[])
            .packet(0, 1, b"abc", 3)
            .packet(0, 2, b"abcdef", 6);
        let whole = f.bytes.clone();
        // Cut inside the last block, and inside its header.
        for cut in [2, 30, 36] {
            let (_, got, skipped) = read_all(&whole[..whole.len() - cut]).unwrap();
            assert_eq!(got.len(), 1, "cut {cut}");
            assert_eq!(skipped, [DecodeErrorKind::TruncatedRecord], "cut {cut}");
        }
        // A packet of an interface never described.
        let mut f = Builder::new(false);
        f.interface(1, &[])
            .packet(0, 1, b"a", 1)
            .packet(3, 2, b"b", 1);
        let (_, got, skipped) = read_all(&f.bytes).unwrap();
        assert_eq!(
            (got.len(), skipped),
            (1, vec![DecodeErrorKind::UnreadableRecord])
        );
        // A block length that is no block's.
        let mut bytes = whole.clone();
        let last = bytes.len() - 40;
        bytes[last + 4..last + 8].copy_from_slice(&7u32.to_le_bytes());
        let (_, got, skipped) = read_all(&bytes).unwrap();
        assert_eq!(
            (got.len(), skipped),
            (1, vec![DecodeErrorKind::BadRecordLength])
        );
    }

    #[test]
    fn a_packet_longer_than_its_wire_length_is_skipped_and_reading_goes_on() {
        let mut f = Builder::new(false);
        f.interface(1, &[])
            .packet(0, 1, b"abcdef", 4)
            .packet(0, 2, b"xyz", 3);
        let (_, got, skipped) = read_all(&f.bytes).unwrap();
        assert_eq!(got, vec![(2000, b"xyz".to_vec(), 3)]);
        assert_eq!(skipped, [DecodeErrorKind::BadRecordLength]);
    }

    #[test]
    fn a_file_without_interfaces_has_no_packets() {
        let f = Builder::new(false);
        let (link, got, skipped) = read_all(&f.bytes).unwrap();
        assert_eq!((link, got.len(), skipped.len()), (ETHERNET, 0, 0));
    }

    #[test]
    fn a_huge_block_before_the_first_interface_is_refused_not_allocated() {
        // An interface block claiming 4 GiB: nothing is allocated for it
        // (the look for the file's link type once filled the buffer up to
        // a block's claimed end), and reading stops there, said.
        let mut f = Builder::new(false);
        f.block(IDB, &[1, 0, 0, 0, 0, 0, 0, 0]);
        let at = f.bytes.len() - 20;
        f.bytes[at + 4..at + 8].copy_from_slice(&0xffff_fff0u32.to_le_bytes());
        // More file than one chunk, so that the buffer could grow.
        f.bytes.resize(f.bytes.len() + (3 << 20), 0);
        let (_, got, skipped) = read_all(&f.bytes).unwrap();
        assert_eq!(
            (got.len(), skipped),
            (0, vec![DecodeErrorKind::BadRecordLength])
        );
        let dir = std::env::temp_dir().join(format!("tcpx-ng-huge-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("huge.pcapng");
        std::fs::write(&path, &f.bytes).unwrap();
        let mut r = PcapngReader::open(&path, "huge.pcapng").unwrap().unwrap();
        while !matches!(r.next().unwrap(), Next::End) {}
        let held = r.c.buffer_len();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(held <= 1 << 20, "the buffer grew to {held} bytes");
    }

    #[test]
    fn the_first_interface_of_a_later_section_in_the_other_byte_order_sets_the_link_type() {
        let f = Builder::new(false);
        let mut g = Builder::new(true);
        g.interface(101, &[]).packet(0, 1, b"raw", 3);
        let mut bytes = f.bytes.clone();
        bytes.extend_from_slice(&g.bytes);
        let (link, got, skipped) = read_all(&bytes).unwrap();
        assert_eq!(link, 101);
        assert_eq!((got.len(), skipped.len()), (1, 0));
    }

    #[test]
    fn a_simple_packet_takes_the_snap_length_and_the_interface_s_offset() {
        let mut f = Builder::new(false);
        let offset = 7u64.to_le_bytes();
        let idb = f.bytes.len();
        f.interface(1, &[(OPT_TSOFFSET, &offset)]);
        // The interface's snap length (bytes 12..16 of its block): 4.
        f.bytes[idb + 12..idb + 16].copy_from_slice(&4u32.to_le_bytes());
        let mut body = 10u32.to_le_bytes().to_vec();
        body.extend_from_slice(b"abcdefghij");
        f.block(SPB, &body);
        let (link, got, skipped) = read_all(&f.bytes).unwrap();
        assert_eq!(link, 1);
        assert!(skipped.is_empty());
        assert_eq!(got, vec![(7_000_000_000, b"abcd".to_vec(), 10)]);
        // One whose packet does not fit its block (no snap length limits
        // it): libpcap stops there too.
        let mut g = Builder::new(false);
        g.interface(1, &[]);
        let mut body = 100u32.to_le_bytes().to_vec();
        body.extend_from_slice(b"abcd");
        g.block(SPB, &body);
        let (_, got, skipped) = read_all(&g.bytes).unwrap();
        assert_eq!(
            (got.len(), skipped),
            (0, vec![DecodeErrorKind::BadRecordLength])
        );
    }

    #[test]
    fn a_section_header_too_short_to_be_one_ends_the_reading() {
        let mut f = Builder::new(false);
        f.interface(1, &[]).packet(0, 1, b"a", 1);
        f.block(SHB, &[0x4d, 0x3c, 0x2b, 0x1a, 1, 0, 0, 0]);
        f.packet(0, 2, b"b", 1);
        let (_, got, skipped) = read_all(&f.bytes).unwrap();
        assert_eq!(
            (got.len(), skipped),
            (1, vec![DecodeErrorKind::BadRecordLength])
        );
    }

    #[test]
    fn a_broken_section_header_is_explained() {
        let mut f = Builder::new(false);
        f.bytes[8..12].copy_from_slice(b"nope");
        let err = read_all(&f.bytes).unwrap_err().to_string();
        assert!(err.contains("byte-order magic"), "{err}");
        let mut f = Builder::new(false);
        f.bytes[12..14].copy_from_slice(&2u16.to_le_bytes());
        let err = read_all(&f.bytes).unwrap_err().to_string();
        assert!(err.contains("version 2.0"), "{err}");
    }

    #[test]
    fn resolutions_convert_to_nanoseconds() {
        assert_eq!(Resolution::of(6).unwrap().nanos(5), 5000);
        assert_eq!(Resolution::of(9).unwrap().nanos(5), 5);
        assert_eq!(Resolution::of(12).unwrap().nanos(5000), 5);
        assert_eq!(
            Resolution::of(0x80 | 20).unwrap().nanos(1 << 20),
            1_000_000_000
        );
        assert_eq!(Resolution::of(0).unwrap().nanos(2), 2_000_000_000);
        assert_eq!(Resolution::of(20), None);
    }
}
