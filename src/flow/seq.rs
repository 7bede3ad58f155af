//! Sequence numbers: 32-bit values compared in wrapping (RFC 1982) order.

use std::cmp::Ordering;

/// A TCP sequence or acknowledgement number.
///
/// Ordering is serial-number arithmetic: `a < b` when `b` is less than 2^31
/// ahead of `a`, so comparisons stay right across the wrap at 2^32. That
/// order is not total (it goes round: a < b < c < a for numbers spread over
/// the circle), so the type is `PartialOrd` only, never `Ord`: it cannot be
/// sorted or put in an ordered map by mistake. Two numbers exactly 2^31
/// apart are incomparable by RFC 1982; here the difference reads as
/// negative (`Less`), as smoltcp's `TcpSeqNumber` and Wireshark's `LT_SEQ`
/// read it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct SeqNum(pub u32);

impl SeqNum {
    /// This number moved forward by `n` (wrapping).
    pub fn plus(self, n: u32) -> SeqNum {
        SeqNum(self.0.wrapping_add(n))
    }

    /// Signed distance from `other` to `self`.
    pub fn diff(self, other: SeqNum) -> i32 {
        self.0.wrapping_sub(other.0) as i32
    }
}

impl PartialOrd for SeqNum {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.diff(*other).cmp(&0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_holds_across_the_wrap() {
        let before = SeqNum(u32::MAX - 10);
        let after = before.plus(20);
        assert_eq!(after, SeqNum(9));
        assert!(before < after);
        assert!(after > before);
        assert_eq!(after.diff(before), 20);
        assert_eq!(before.diff(after), -20);
    }

    #[test]
    fn plain_order_without_wrap() {
        assert!(SeqNum(5) < SeqNum(6));
        assert!(SeqNum(6) > SeqNum(5));
        assert_eq!(SeqNum(7).partial_cmp(&SeqNum(7)), Some(Ordering::Equal));
    }

    #[test]
    fn the_order_goes_round_the_circle() {
        // Each is less than 2^31 ahead of the one before: a < b < c < a.
        // This is why SeqNum is not Ord.
        let (a, b, c) = (SeqNum(0), SeqNum(0x6000_0000), SeqNum(0xc000_0000));
        assert!(a < b && b < c && c < a);
    }

    #[test]
    fn numbers_half_the_space_apart_read_as_less_either_way() {
        let (a, b) = (SeqNum(0), SeqNum(0x8000_0000));
        assert_eq!(a.partial_cmp(&b), Some(Ordering::Less));
        assert_eq!(b.partial_cmp(&a), Some(Ordering::Less));
    }
}
