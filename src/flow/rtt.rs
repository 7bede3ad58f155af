//! Data RTT: time from a data segment to the ACK that first covers it, as
//! seen from the capture point, with a fixed number of outstanding samples
//! per direction and Karn's rule (a retransmission voids what it overlaps).

use super::seq::SeqNum;
use super::{Nanos, ShortTime};

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
    sent: ShortTime,
}

/// The timed, unacknowledged segments of one direction.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RttSampler {
    slots: [Sample; RTT_SLOTS],
    len: u8,
}

impl RttSampler {
    /// Times a segment of new data ending at `end`, sent at `now`.
    pub fn on_new_data(&mut self, end: SeqNum, now: Nanos) {
        let len = self.len as usize;
        if len < RTT_SLOTS {
            self.slots[len] = Sample {
                end,
                sent: ShortTime::at(now),
            };
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
    #[inline]
    pub fn on_ack(&mut self, ack: SeqNum, now: Nanos) -> Option<Nanos> {
        // The newest covered sample is the shortest time ago.
        let mut rtt: Option<Nanos> = None;
        for s in &self.slots[..self.len as usize] {
            if s.end <= ack {
                let t = s.sent.elapsed(now);
                rtt = Some(rtt.map_or(t, |r| r.min(t)));
            }
        }
        if rtt.is_some() {
            self.retain(|s| s.end > ack);
        }
        rtt
    }

    /// The ends of the timed segments, oldest first, and how many there
    /// are (the rest of the array is zero).
    pub fn ends(&self) -> ([SeqNum; RTT_SLOTS], u8) {
        let mut ends = [SeqNum(0); RTT_SLOTS];
        for (end, s) in ends.iter_mut().zip(&self.slots[..self.len as usize]) {
            *end = s.end;
        }
        (ends, self.len)
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

    const US: Nanos = 1_000;

    #[test]
    fn ack_covering_a_segment_gives_its_rtt() {
        let mut r = RttSampler::default();
        r.on_new_data(SeqNum(1100), 1_000 * US);
        assert_eq!(
            r.on_ack(SeqNum(1000), 1_200 * US),
            None,
            "does not cover it"
        );
        assert_eq!(r.on_ack(SeqNum(1100), 1_250 * US), Some(250 * US));
        assert_eq!(
            r.on_ack(SeqNum(1100), 1_300 * US),
            None,
            "first covering ACK only"
        );
    }

    #[test]
    fn delayed_ack_over_two_segments_times_the_newest() {
        let mut r = RttSampler::default();
        r.on_new_data(SeqNum(1100), 1_000 * US);
        r.on_new_data(SeqNum(1200), 1_010 * US);
        assert_eq!(r.on_ack(SeqNum(1200), 1_100 * US), Some(90 * US));
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
        r.on_new_data(SeqNum(1300), 3_000 * US);
        assert_eq!(
            r.on_ack(SeqNum(1300), 3_040 * US),
            Some(40 * US),
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
        r.on_new_data(SeqNum(u32::MAX - 10).plus(100), 5 * US);
        assert_eq!(r.on_ack(SeqNum(89), 25 * US), Some(20 * US));
    }

    #[test]
    fn samples_survive_the_wrap_of_the_short_clock() {
        let mut r = RttSampler::default();
        let before_wrap = (u32::MAX as Nanos - 5) * US;
        r.on_new_data(SeqNum(1100), before_wrap);
        assert_eq!(r.on_ack(SeqNum(1100), before_wrap + 30 * US), Some(30 * US));
    }

    #[test]
    fn a_clock_running_backwards_gives_zero_not_an_hour() {
        let mut r = RttSampler::default();
        r.on_new_data(SeqNum(1100), 5_000 * US);
        assert_eq!(r.on_ack(SeqNum(1100), 4_000 * US), Some(0));
    }
}
