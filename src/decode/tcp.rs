//! The TCP header and the options the analysis uses: MSS, window scale,
//! SACK permitted, SACK blocks and timestamps.

use etherparse::err::tcp::HeaderSliceError;
use etherparse::{TcpHeaderSlice, TcpOptionElement};

use super::{DecodeError, DecodeErrorKind};

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

/// The options of one segment. Malformed options end the parse: what came
/// before them is kept, as Wireshark does.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpOptions {
    pub mss: Option<u16>,
    /// The shift as sent; RFC 7323 caps its use at 14, which the flow
    /// analysis applies.
    pub window_scale: Option<u8>,
    pub sack_permitted: bool,
    pub sack_count: u8,
    pub sack: [(u32, u32); MAX_SACK_BLOCKS],
    /// (TSval, TSecr)
    pub timestamps: Option<(u32, u32)>,
}

impl TcpOptions {
    /// The SACK blocks present, left and right edges.
    pub fn sack_blocks(&self) -> &[(u32, u32)] {
        &self.sack[..(self.sack_count as usize).min(MAX_SACK_BLOCKS)]
    }

    fn push_sack(&mut self, block: (u32, u32)) {
        if let Some(slot) = self.sack.get_mut(self.sack_count as usize) {
            *slot = block;
            self.sack_count += 1;
        }
    }
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
    pub fn src_port(&self) -> u16 {
        self.header.source_port()
    }
    pub fn dst_port(&self) -> u16 {
        self.header.destination_port()
    }
    pub fn seq(&self) -> u32 {
        self.header.sequence_number()
    }
    pub fn ack(&self) -> u32 {
        self.header.acknowledgment_number()
    }
    pub fn window(&self) -> u16 {
        self.header.window_size()
    }
    pub fn flags(&self) -> TcpFlags {
        // Byte 13 holds CWR ECE URG ACK PSH RST SYN FIN; the slice is at
        // least 20 bytes long.
        TcpFlags(self.header.slice()[13])
    }

    pub fn options(&self) -> TcpOptions {
        let mut out = TcpOptions::default();
        if self.header.options().is_empty() {
            return out;
        }
        for option in self.header.options_iterator() {
            match option {
                Ok(TcpOptionElement::MaximumSegmentSize(mss)) => out.mss = Some(mss),
                Ok(TcpOptionElement::WindowScale(shift)) => out.window_scale = Some(shift),
                Ok(TcpOptionElement::SelectiveAcknowledgementPermitted) => {
                    out.sack_permitted = true
                }
                Ok(TcpOptionElement::SelectiveAcknowledgement(first, rest)) => {
                    out.push_sack(first);
                    for block in rest.into_iter().flatten() {
                        out.push_sack(block);
                    }
                }
                Ok(TcpOptionElement::Timestamp(val, ecr)) => out.timestamps = Some((val, ecr)),
                Ok(TcpOptionElement::Noop) => {}
                Err(_) => break,
            }
        }
        out
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
        let o = tcp.options();
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
        let o = TcpView::parse(&bytes, 0).unwrap().options();
        assert_eq!(o.sack_blocks(), &[(100, 200), (300, 400)]);
    }

    #[test]
    fn malformed_option_keeps_what_came_before() {
        // MSS, then a window-scale option claiming length 9.
        let opts = [2, 4, 0x05, 0xb4, 3, 9, 7, 0];
        let bytes = view_of(&opts);
        let o = TcpView::parse(&bytes, 0).unwrap().options();
        assert_eq!(o.mss, Some(1460));
        assert_eq!(o.window_scale, None);
    }
}
