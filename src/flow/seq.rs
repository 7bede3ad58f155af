//! Sequence numbers: 32-bit values compared in wrapping (RFC 1982) order.

use std::cmp::Ordering;

/// A TCP sequence or acknowledgement number.
///
/// Ordering is serial-number arithmetic: `a < b` when `b` is less than 2^31
/// ahead of `a`, so comparisons stay right across the wrap at 2^32. Two
/// numbers exactly 2^31 apart are incomparable by RFC 1982; here the
/// difference is read as negative, which keeps the order total for a sort
/// but is never relied on.
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
        Some(self.cmp(other))
    }
}

impl Ord for SeqNum {
    fn cmp(&self, other: &Self) -> Ordering {
        self.diff(*other).cmp(&0)
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
        assert_eq!(SeqNum(7).cmp(&SeqNum(7)), Ordering::Equal);
    }
}
