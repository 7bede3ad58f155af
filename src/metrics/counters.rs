//! The counts themselves: what one direction of traffic adds up to, and
//! fixed-bucket histograms. A series and a connection's record count with
//! the same code (`DirCounters::count`), so the flow log and the metrics
//! cannot drift apart.

use crate::decode::{Segment, TcpOptions};
use crate::flow::{Flags, Nanos, SteadyRun};

/// Counts of one direction (client to server, or back).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DirCounters {
    pub packets: u64,
    pub payload_bytes: u64,
    pub ip_bytes: u64,
    pub resets: u64,
    pub dont_fragment: u64,
    /// By kind: [retransmission, fast_retransmission, spurious_retransmission].
    pub retransmitted: [u64; 3],
    pub retransmitted_bytes: u64,
    pub out_of_order: u64,
    pub duplicate_acks: u64,
    pub lost_segments: u64,
    pub zero_window: u64,
    pub zero_window_probes: u64,
    pub window_full: u64,
    pub keepalives: u64,
}

/// The `kind` label values of tcp_retransmitted_segments_total, in the
/// order of `DirCounters::retransmitted`.
pub const RETRANSMISSION_KINDS: [&str; 3] = [
    "retransmission",
    "fast_retransmission",
    "spurious_retransmission",
];

impl DirCounters {
    /// Counts a run of segments without flags (`flow::SteadyRun`: a
    /// connection's mirror counted them, or the worker gathered them, or
    /// `count` makes one of a single segment): their packets (wire
    /// segments: a super-packet is several), bytes and DF bits. Resets and
    /// flags are `count`'s; no run holds a reset.
    pub fn count_run(&mut self, run: &SteadyRun) {
        self.packets += run.segments as u64;
        self.payload_bytes += run.payload_bytes;
        self.ip_bytes += run.ip_bytes;
        self.dont_fragment += run.dont_fragment as u64;
    }

    /// Counts one segment that stands for `segments` wire segments (more
    /// than one for an offload super-packet: each carried its own headers,
    /// and its own DF bit), with the analysis flags `f` it got.
    #[inline]
    pub fn count(&mut self, seg: &Segment, segments: u32, f: Flags) {
        let mut one = SteadyRun::default();
        one.add(seg, segments, 0);
        self.count_run(&one);
        self.resets += seg.flags.rst() as u64;
        if f.0 == 0 {
            return;
        }
        let kind = if f.has(Flags::SPURIOUS_RETRANSMISSION) {
            Some(2)
        } else if f.has(Flags::FAST_RETRANSMISSION) {
            Some(1)
        } else if f.has(Flags::RETRANSMISSION) {
            Some(0)
        } else {
            None
        };
        if let Some(kind) = kind {
            self.retransmitted[kind] += 1;
            self.retransmitted_bytes += seg.payload_len as u64;
        }
        self.out_of_order += f.has(Flags::OUT_OF_ORDER) as u64;
        self.duplicate_acks += f.has(Flags::DUPLICATE_ACK) as u64;
        self.lost_segments += f.has(Flags::LOST_SEGMENT) as u64;
        self.zero_window += f.has(Flags::ZERO_WINDOW) as u64;
        self.zero_window_probes += f.has(Flags::ZERO_WINDOW_PROBE) as u64;
        self.window_full += f.has(Flags::WINDOW_FULL) as u64;
        self.keepalives += f.has(Flags::KEEP_ALIVE) as u64;
    }

    /// Adds another direction's counts into this one.
    pub fn merge(&mut self, o: &DirCounters) {
        self.packets += o.packets;
        self.payload_bytes += o.payload_bytes;
        self.ip_bytes += o.ip_bytes;
        self.resets += o.resets;
        self.dont_fragment += o.dont_fragment;
        for (a, b) in self.retransmitted.iter_mut().zip(o.retransmitted) {
            *a += b;
        }
        self.retransmitted_bytes += o.retransmitted_bytes;
        self.out_of_order += o.out_of_order;
        self.duplicate_acks += o.duplicate_acks;
        self.lost_segments += o.lost_segments;
        self.zero_window += o.zero_window;
        self.zero_window_probes += o.zero_window_probes;
        self.window_full += o.window_full;
        self.keepalives += o.keepalives;
    }

    /// Retransmitted segments of every kind.
    pub fn retransmissions(&self) -> u64 {
        self.retransmitted.iter().sum()
    }
}

/// Shift values 0..=14, one slot for "no window-scale option" and one for
/// "options cut by the snap length before a window-scale option was seen".
pub const WSCALE_SLOTS: usize = 17;
pub const WSCALE_NONE: usize = 15;
pub const WSCALE_UNKNOWN: usize = 16;

/// The slot of the window-scale option a SYN carried: RFC 7323 2.3, a
/// shift above 14 is used as 14.
pub fn wscale_slot(options: &TcpOptions) -> usize {
    match options.window_scale {
        Some(shift) => (shift as usize).min(14),
        None if options.cut => WSCALE_UNKNOWN,
        None => WSCALE_NONE,
    }
}

/// The `shift` label of a slot.
pub fn wscale_label(slot: usize) -> String {
    match slot {
        WSCALE_NONE => "none".to_string(),
        WSCALE_UNKNOWN => "unknown".to_string(),
        shift => shift.to_string(),
    }
}

/// A histogram with fixed bucket bounds, in nanoseconds.
#[derive(Clone, Copy, Debug)]
pub struct Histogram<const N: usize> {
    /// Non-cumulative counts; index N is the +Inf bucket.
    pub counts: [u64; N],
    pub overflow: u64,
    pub sum_nanos: u128,
}

impl<const N: usize> Default for Histogram<N> {
    fn default() -> Self {
        Histogram {
            counts: [0; N],
            overflow: 0,
            sum_nanos: 0,
        }
    }
}

impl<const N: usize> Histogram<N> {
    pub fn observe(&mut self, bounds_nanos: &[u64; N], value: Nanos) {
        self.sum_nanos += value as u128;
        match bounds_nanos.iter().position(|&b| value <= b) {
            Some(i) => self.counts[i] += 1,
            None => self.overflow += 1,
        }
    }

    pub fn count(&self) -> u64 {
        self.counts.iter().sum::<u64>() + self.overflow
    }

    /// Adds another histogram's counts into this one.
    pub fn merge(&mut self, other: &Self) {
        for (a, b) in self.counts.iter_mut().zip(other.counts.iter()) {
            *a += b;
        }
        self.overflow += other.overflow;
        self.sum_nanos += other.sum_nanos;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An offload super-packet counts as its wire segments, each with its
    /// own headers and DF bit; a reset counts once.
    #[test]
    fn a_super_packet_counts_as_its_wire_segments_and_a_reset_once() {
        use crate::decode::TcpFlags;
        let mut data = crate::flow::test_segment(40000, 80, TcpFlags::ACK, 1, 1);
        data.payload_len = 3000;
        data.ip_len = 3052;
        let mut c = DirCounters::default();
        c.count(&data, 3, Flags(0));
        let sums = |c: &DirCounters| {
            (
                c.packets,
                c.payload_bytes,
                c.ip_bytes,
                c.dont_fragment,
                c.resets,
            )
        };
        assert_eq!(sums(&c), (3, 3000, 3000 + 3 * 52, 3, 0));
        let rst = crate::flow::test_segment(40000, 80, TcpFlags::RST, 3001, 0);
        c.count(&rst, 1, Flags(0));
        assert_eq!(sums(&c), (4, 3000, 3156 + 40, 4, 1));
    }

    #[test]
    fn histogram_puts_values_in_the_first_bucket_that_holds_them() {
        let bounds = [10u64, 100, 1000];
        let mut h = Histogram::<3>::default();
        for v in [0, 10, 11, 1000, 1001] {
            h.observe(&bounds, v);
        }
        assert_eq!(h.counts, [2, 1, 1]);
        assert_eq!(h.overflow, 1);
        assert_eq!(h.count(), 5);
        assert_eq!(h.sum_nanos, 2022);
    }

    #[test]
    fn window_scale_shifts_above_14_count_as_14() {
        let offer = |shift, cut| TcpOptions {
            window_scale: shift,
            cut,
            ..TcpOptions::default()
        };
        assert_eq!(wscale_slot(&offer(Some(7), false)), 7);
        assert_eq!(wscale_slot(&offer(Some(15), false)), 14);
        assert_eq!(wscale_slot(&offer(None, false)), WSCALE_NONE);
        // Options cut before any window scale: not "none", unknown.
        assert_eq!(wscale_slot(&offer(None, true)), WSCALE_UNKNOWN);
        assert_eq!(wscale_slot(&offer(Some(7), true)), 7);
        assert_eq!(wscale_label(WSCALE_UNKNOWN), "unknown");
    }
}
