//! Data RTT: time from a data segment to the ACK that first covers it, as
//! seen from the capture point, with a fixed number of outstanding samples
//! per direction and Karn's rule (a retransmission voids what it overlaps).

use super::seq::SeqNum;
use super::Nanos;

/// Outstanding samples kept per direction. A bulk sender has far more
/// segments in flight; one timed segment per round trip is what TCP itself
/// does (RFC 6298 without timestamps), two give a sample per delayed ACK
/// pair. When both are taken, new segments are not timed until an ACK
/// frees one. (Each slot is 16 bytes of every flow.)
pub const RTT_SLOTS: usize = 2;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Sample {
    /// Sequence number just past the segment.
    end: SeqNum,
    sent: Nanos,
}

/// The timed, unacknowledged segments of one direction.
#[derive(Clone, Copy, Debug, Default)]
pub struct RttSampler {
    slots: [Sample; RTT_SLOTS],
    len: u8,
}

impl RttSampler {
    /// Times a segment of new data ending at `end`, sent at `now`.
    pub fn on_new_data(&mut self, end: SeqNum, now: Nanos) {
        let len = self.len as usize;
        if len < RTT_SLOTS {
            self.slots[len] = Sample { end, sent: now };
            self.len += 1;
        }
    }

    /// A retransmission (or data out of order): every timed segment is
    /// dropped. Those it repeats are ambiguous (Karn); those after it would
    /// be timed through the loss recovery, not the path.
    pub fn on_retransmission(&mut self) {
        self.len = 0;
    }

    /// An ACK from the peer at `now`: the newest timed segment it covers
    /// gives the sample; every covered one is done with.
    pub fn on_ack(&mut self, ack: SeqNum, now: Nanos) -> Option<Nanos> {
        let mut newest: Option<Nanos> = None;
        for s in &self.slots[..self.len as usize] {
            if s.end <= ack {
                newest = Some(newest.map_or(s.sent, |n| n.max(s.sent)));
            }
        }
        if newest.is_some() {
            self.retain(|s| s.end > ack);
        }
        newest.map(|sent| now.saturating_sub(sent))
    }

    fn retain(&mut self, keep: impl Fn(&Sample) -> bool) {
        let mut kept = 0;
        for i in 0..self.len as usize {
            if keep(&self.slots[i]) {
                self.slots[kept] = self.slots[i];
                kept += 1;
            }
        }
        self.len = kept as u8;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ack_covering_a_segment_gives_its_rtt() {
        let mut r = RttSampler::default();
        r.on_new_data(SeqNum(1100), 1_000);
        assert_eq!(r.on_ack(SeqNum(1000), 1_200), None, "does not cover it");
        assert_eq!(r.on_ack(SeqNum(1100), 1_250), Some(250));
        assert_eq!(
            r.on_ack(SeqNum(1100), 1_300),
            None,
            "first covering ACK only"
        );
    }

    #[test]
    fn delayed_ack_over_two_segments_times_the_newest() {
        let mut r = RttSampler::default();
        r.on_new_data(SeqNum(1100), 1_000);
        r.on_new_data(SeqNum(1200), 1_010);
        assert_eq!(r.on_ack(SeqNum(1200), 1_100), Some(90));
        assert_eq!(r.len, 0);
    }

    #[test]
    fn retransmitted_data_is_never_timed() {
        let mut r = RttSampler::default();
        r.on_new_data(SeqNum(1100), 1_000);
        r.on_new_data(SeqNum(1200), 1_010);
        r.on_retransmission();
        assert_eq!(r.on_ack(SeqNum(1100), 2_000), None);
        assert_eq!(r.on_ack(SeqNum(1200), 2_010), None);
        r.on_new_data(SeqNum(1300), 3_000);
        assert_eq!(
            r.on_ack(SeqNum(1300), 3_040),
            Some(40),
            "new data is timed again"
        );
    }

    #[test]
    fn slots_are_bounded() {
        let mut r = RttSampler::default();
        for i in 0..(RTT_SLOTS as u32 + 5) {
            r.on_new_data(SeqNum(1000 + 100 * (i + 1)), i as Nanos);
        }
        assert_eq!(r.len as usize, RTT_SLOTS);
    }

    #[test]
    fn samples_survive_the_sequence_wrap() {
        let mut r = RttSampler::default();
        r.on_new_data(SeqNum(u32::MAX - 10).plus(100), 5);
        assert_eq!(r.on_ack(SeqNum(89), 25), Some(20));
    }
}
