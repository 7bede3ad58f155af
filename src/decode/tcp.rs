//! The TCP header and the options the analysis uses: MSS, window scale,
//! SACK permitted, SACK blocks and timestamps.

use etherparse::err::tcp::HeaderSliceError;
use etherparse::TcpHeaderSlice;

use super::{DecodeError, DecodeErrorKind, TcpFields};

/// TCP option bytes in a header, at most (a data offset of 15 words).
pub const MAX_TCP_OPTIONS: usize = 40;

/// A TCP segment carries at most four SACK blocks (three with timestamps).
pub const MAX_SACK_BLOCKS: usize = 4;

/// The TCP flag bits, as on the wire (the low byte of the flags field).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpFlags(pub u8);

impl TcpFlags {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;

    pub fn fin(self) -> bool {
        self.0 & Self::FIN != 0
    }
    pub fn syn(self) -> bool {
        self.0 & Self::SYN != 0
    }
    pub fn rst(self) -> bool {
        self.0 & Self::RST != 0
    }
    pub fn psh(self) -> bool {
        self.0 & Self::PSH != 0
    }
    pub fn ack(self) -> bool {
        self.0 & Self::ACK != 0
    }
}

/// The options of one segment that the analysis reads, parsed once. The
/// option bytes themselves stay borrowed in the segment
/// (`Segment::sack_blocks` walks them again when asked).
///
/// An option whose length byte runs past the end, or is below 2, ends the
/// parse: what came before it is kept, as Wireshark does. A known option of
/// the wrong length is skipped by its length and not used.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpOptions {
    pub mss: Option<u16>,
    /// The shift as sent; RFC 7323 caps its use at 14, which the flow
    /// analysis applies.
    pub window_scale: Option<u8>,
    pub sack_permitted: bool,
    /// How many SACK blocks the segment carries.
    pub sack_blocks: u8,
    /// (TSval, TSecr)
    pub timestamps: Option<(u32, u32)>,
}

const KIND_END: u8 = 0;
const KIND_NOP: u8 = 1;
const KIND_MSS: u8 = 2;
const KIND_WINDOW_SCALE: u8 = 3;
const KIND_SACK_PERMITTED: u8 = 4;
const KIND_SACK: u8 = 5;
const KIND_TIMESTAMPS: u8 = 8;

/// Walks TCP option bytes: (kind, body) for every option with a length.
fn walk(mut o: &[u8]) -> impl Iterator<Item = (u8, &[u8])> {
    std::iter::from_fn(move || loop {
        let (&kind, rest) = o.split_first()?;
        match kind {
            KIND_END => return None,
            KIND_NOP => o = rest,
            _ => {
                let len = *rest.first()? as usize;
                if len < 2 || len > o.len() {
                    return None;
                }
                let body = &o[2..len];
                o = &o[len..];
                return Some((kind, body));
            }
        }
    })
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Parses the options the analysis needs.
pub fn parse_options(raw: &[u8]) -> TcpOptions {
    let mut out = TcpOptions::default();
    for (kind, body) in walk(raw) {
        match (kind, body.len()) {
            (KIND_MSS, 2) => out.mss = Some(u16::from_be_bytes([body[0], body[1]])),
            (KIND_WINDOW_SCALE, 1) => out.window_scale = Some(body[0]),
            (KIND_SACK_PERMITTED, 0) => out.sack_permitted = true,
            (KIND_SACK, n) if n % 8 == 0 => {
                out.sack_blocks = out
                    .sack_blocks
                    .saturating_add((n / 8).min(MAX_SACK_BLOCKS) as u8)
            }
            (KIND_TIMESTAMPS, 8) => out.timestamps = Some((be32(body, 0), be32(body, 4))),
            _ => {}
        }
    }
    out
}

/// The SACK blocks (left, right edges) in option bytes.
pub fn sack_blocks(raw: &[u8]) -> impl Iterator<Item = (u32, u32)> + '_ {
    walk(raw)
        .filter(|(kind, body)| *kind == KIND_SACK && body.len() % 8 == 0)
        .flat_map(|(_, body)| body.chunks_exact(8).map(|b| (be32(b, 0), be32(b, 4))))
}

/// A TCP header whose full length (options included) was captured.
pub(super) struct TcpView<'a> {
    header: TcpHeaderSlice<'a>,
}

impl<'a> TcpView<'a> {
    pub fn parse(bytes: &'a [u8], offset: usize) -> Result<TcpView<'a>, DecodeError> {
        let header = TcpHeaderSlice::from_slice(bytes).map_err(|e| match e {
            HeaderSliceError::Len(len) => DecodeError::new(
                DecodeErrorKind::TruncatedTcp,
                offset,
                len.required_len,
                len.len,
            ),
            HeaderSliceError::Content(_) => {
                DecodeError::new(DecodeErrorKind::BadTcpHeaderLength, offset, 20, 0)
            }
        })?;
        Ok(TcpView { header })
    }

    pub fn header_len(&self) -> usize {
        self.header.slice().len()
    }

    #[inline(always)]
    pub fn fields(&self) -> TcpFields<'a> {
        TcpFields {
            src_port: self.header.source_port(),
            dst_port: self.header.destination_port(),
            seq: self.header.sequence_number(),
            ack: self.header.acknowledgment_number(),
            // Byte 13 holds CWR ECE URG ACK PSH RST SYN FIN; the slice is
            // at least 20 bytes long.
            flags: TcpFlags(self.header.slice()[13]),
            window: self.header.window_size(),
            header_len: self.header_len(),
            raw_options: self.raw_options(),
        }
    }

    /// The option bytes, after the fixed 20-byte header.
    pub fn raw_options(&self) -> &'a [u8] {
        // The header slice is at least 20 bytes long (checked in `parse`).
        self.header.slice().get(20..).unwrap_or(&[])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::fixtures::*;

    fn view_of(options: &[u8]) -> Vec<u8> {
        let spec = TcpSpec {
            options: options.to_vec(),
            ..TcpSpec::default()
        };
        eth_ipv4_tcp(&spec)[34..].to_vec()
    }

    #[test]
    fn syn_options_are_read() {
        // MSS 1460, SACK permitted, timestamps, NOP, window scale 7.
        let opts = [
            2, 4, 0x05, 0xb4, 4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0, 1, 3, 3, 7,
        ];
        let bytes = view_of(&opts);
        let tcp = TcpView::parse(&bytes, 0).unwrap();
        let o = parse_options(tcp.raw_options());
        assert_eq!(o.mss, Some(1460));
        assert_eq!(o.window_scale, Some(7));
        assert!(o.sack_permitted);
        assert_eq!(o.timestamps, Some((1, 0)));
        assert_eq!(tcp.header_len(), 40);
    }

    #[test]
    fn sack_blocks_are_read() {
        let mut opts = vec![1, 1, 5, 18];
        for v in [100u32, 200, 300, 400] {
            opts.extend_from_slice(&v.to_be_bytes());
        }
        let bytes = view_of(&opts);
        let raw = TcpView::parse(&bytes, 0).unwrap().raw_options();
        assert_eq!(parse_options(raw).sack_blocks, 2);
        assert_eq!(
            sack_blocks(raw).collect::<Vec<_>>(),
            vec![(100, 200), (300, 400)]
        );
    }

    #[test]
    fn known_option_of_the_wrong_length_is_skipped() {
        // Window scale with length 4, then MSS.
        let o = parse_options(&[3, 4, 7, 7, 2, 4, 0x05, 0xb4]);
        assert_eq!((o.window_scale, o.mss), (None, Some(1460)));
    }

    #[test]
    fn end_of_options_and_zero_length_stop_the_walk() {
        assert_eq!(parse_options(&[0, 3, 3, 7]).window_scale, None);
        assert_eq!(parse_options(&[8, 0, 3, 3, 7]).window_scale, None);
        assert_eq!(parse_options(&[1, 1, 3, 3, 7]).window_scale, Some(7));
    }

    #[test]
    fn malformed_option_keeps_what_came_before() {
        // MSS, then a window-scale option claiming length 9.
        let opts = [2, 4, 0x05, 0xb4, 3, 9, 7, 0];
        let bytes = view_of(&opts);
        let o = parse_options(TcpView::parse(&bytes, 0).unwrap().raw_options());
        assert_eq!(o.mss, Some(1460));
        assert_eq!(o.window_scale, None);
    }
}
