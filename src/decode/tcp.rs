//! The TCP header and the options the analysis uses: MSS, window scale,
//! SACK permitted, SACK blocks and timestamps.
//!
//! A segment is a segment once its fixed 20-byte header is captured; a snap
//! length that cuts the options leaves them unknown past the cut (as
//! Wireshark's analysis does with a short capture), and says so in
//! [`TcpOptions::cut`].

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
    /// The snap length cut the options: an option not found above may
    /// have been there.
    pub cut: bool,
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
    if let Some(timestamps) = timestamps_only(raw) {
        return TcpOptions {
            timestamps: Some(timestamps),
            ..TcpOptions::default()
        };
    }
    parse_walked(raw)
}

/// (TSval, TSecr) when the options are NOP, NOP, timestamps and nothing
/// else: what Linux sends on every segment after the handshake.
#[inline(always)]
pub(super) fn timestamps_only(raw: &[u8]) -> Option<(u32, u32)> {
    match *raw {
        [KIND_NOP, KIND_NOP, KIND_TIMESTAMPS, 10, a0, a1, a2, a3, b0, b1, b2, b3] => Some((
            u32::from_be_bytes([a0, a1, a2, a3]),
            u32::from_be_bytes([b0, b1, b2, b3]),
        )),
        _ => None,
    }
}

/// Parses the options by walking them, whatever their layout.
fn parse_walked(raw: &[u8]) -> TcpOptions {
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

/// A TCP header whose fixed 20 bytes were captured. Its options may have
/// been cut by the snap length: what was captured of them is kept, and the
/// header's length (for the payload length) comes from its data offset.
pub(super) struct TcpView<'a> {
    /// The fixed header: its fields are read with no bounds check.
    fixed: &'a [u8; FIXED_HEADER],
    /// The fixed header and the captured part of the options.
    bytes: &'a [u8],
    /// The header's length by its data offset (20 to 60).
    header_len: usize,
}

/// Bytes of the TCP header without options.
const FIXED_HEADER: usize = 20;

impl<'a> TcpView<'a> {
    /// `bytes` as captured from the TCP header on; `on_wire` how many
    /// bytes of the segment the frame had on the wire. Options are cut by
    /// the snap length only if the wire carried them: a header that runs
    /// past the frame itself is truncated.
    pub fn parse(
        bytes: &'a [u8],
        on_wire: usize,
        offset: usize,
    ) -> Result<TcpView<'a>, DecodeError> {
        let Some(fixed) = bytes.first_chunk::<FIXED_HEADER>() else {
            return Err(DecodeError::new(
                DecodeErrorKind::TruncatedTcp,
                offset,
                FIXED_HEADER,
                bytes.len(),
            ));
        };
        let header_len = (fixed[12] >> 4) as usize * 4;
        if header_len < FIXED_HEADER {
            return Err(DecodeError::new(
                DecodeErrorKind::BadTcpHeaderLength,
                offset,
                FIXED_HEADER,
                header_len,
            ));
        }
        if header_len > bytes.len() && header_len > on_wire {
            return Err(DecodeError::new(
                DecodeErrorKind::TruncatedTcp,
                offset,
                header_len,
                bytes.len(),
            ));
        }
        let captured = header_len.min(bytes.len());
        Ok(TcpView {
            fixed,
            bytes: &bytes[..captured],
            header_len,
        })
    }

    #[inline(always)]
    pub fn fields(&self) -> TcpFields<'a> {
        let h = self.fixed;
        TcpFields {
            src_port: u16::from_be_bytes([h[0], h[1]]),
            dst_port: u16::from_be_bytes([h[2], h[3]]),
            seq: u32::from_be_bytes([h[4], h[5], h[6], h[7]]),
            ack: u32::from_be_bytes([h[8], h[9], h[10], h[11]]),
            // Byte 13 holds CWR ECE URG ACK PSH RST SYN FIN.
            flags: TcpFlags(h[13]),
            window: u16::from_be_bytes([h[14], h[15]]),
            header_len: self.header_len,
            raw_options: &self.bytes[FIXED_HEADER..],
            options_cut: self.bytes.len() < self.header_len,
        }
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
        let tcp = TcpView::parse(&bytes, bytes.len(), 0).unwrap().fields();
        let o = parse_options(tcp.raw_options);
        assert_eq!(o.mss, Some(1460));
        assert_eq!(o.window_scale, Some(7));
        assert!(o.sack_permitted);
        assert_eq!(o.timestamps, Some((1, 0)));
        assert_eq!(tcp.header_len, 40);
        assert!(!tcp.options_cut);
    }

    #[test]
    fn sack_blocks_are_read() {
        let mut opts = vec![1, 1, 5, 18];
        for v in [100u32, 200, 300, 400] {
            opts.extend_from_slice(&v.to_be_bytes());
        }
        let bytes = view_of(&opts);
        let raw = TcpView::parse(&bytes, bytes.len(), 0)
            .unwrap()
            .fields()
            .raw_options;
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
    fn the_timestamps_layout_is_read_as_the_walk_reads_it() {
        let mut state = 0x1234_5678_9abc_def1u64;
        let mut fast = 0;
        for _ in 0..100_000 {
            let len = (xorshift(&mut state) % 16) as usize;
            let mut raw: Vec<u8> = (0..len).map(|_| xorshift(&mut state) as u8).collect();
            // Mostly the layout itself, now and then one byte off.
            let layout = [KIND_NOP, KIND_NOP, KIND_TIMESTAMPS, 10];
            for (i, b) in layout.iter().enumerate().take(len) {
                if !xorshift(&mut state).is_multiple_of(8) {
                    raw[i] = *b;
                }
            }
            fast += (len == 12 && raw[..4] == layout) as usize;
            assert_eq!(parse_options(&raw), parse_walked(&raw), "{raw:?}");
        }
        assert!(fast > 1_000, "the layout came up only {fast} times");
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
        let o = parse_options(
            TcpView::parse(&bytes, bytes.len(), 0)
                .unwrap()
                .fields()
                .raw_options,
        );
        assert_eq!(o.mss, Some(1460));
        assert_eq!(o.window_scale, None);
    }

    #[test]
    fn options_cut_by_the_snap_length_keep_what_was_captured() {
        // MSS, SACK permitted, timestamps, NOP, window scale: cut after 10
        // option bytes, inside the timestamps.
        let opts = [
            2, 4, 0x05, 0xb4, 4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0, 1, 3, 3, 7,
        ];
        let bytes = view_of(&opts);
        let tcp = TcpView::parse(&bytes[..30], bytes.len(), 0)
            .unwrap()
            .fields();
        assert_eq!(tcp.header_len, 40);
        assert!(tcp.options_cut);
        assert_eq!(tcp.raw_options.len(), 10);
        let o = parse_options(tcp.raw_options);
        assert_eq!((o.mss, o.sack_permitted), (Some(1460), true));
        assert_eq!((o.timestamps, o.window_scale), (None, None));
        // The same bytes as a whole frame: the header runs past its end.
        let err = TcpView::parse(&bytes[..30], 30, 0).err().unwrap();
        assert_eq!(err.kind, DecodeErrorKind::TruncatedTcp);
        assert_eq!((err.needed, err.had), (40, 30));
    }

    #[test]
    fn a_cut_inside_the_fixed_header_is_truncated_tcp() {
        let bytes = view_of(&[]);
        let err = TcpView::parse(&bytes[..19], bytes.len(), 34).err().unwrap();
        assert_eq!(err.kind, DecodeErrorKind::TruncatedTcp);
        assert_eq!((err.offset, err.needed, err.had), (34, 20, 19));
    }
}
