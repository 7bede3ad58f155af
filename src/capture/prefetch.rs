//! Cache hints for reading memory the kernel wrote from another CPU: the
//! af-packet backend's ring blocks and the xdp backend's ring buffer. In
//! both, what comes next lies just after what is being read, so it can be
//! asked for well ahead of the reader without reading anything. A hint
//! only: it cannot fault, and does nothing on other architectures.

/// How far ahead of the reader lines are asked for, in bytes: about 15
/// af-packet packets at the default snap length. Live, with 2,048 bytes
/// or 4,096 the first read of a packet stopped being the largest stall
/// (docs/performance.md).
pub const AHEAD: u64 = 4096;

const LINE: u64 = 64;

/// How far lines have been asked for in memory read front to back.
#[derive(Clone, Copy, Debug, Default)]
pub struct Frontier {
    asked: u64,
}

impl Frontier {
    /// The stretch to ask for with the reader at `reader` and the memory
    /// written up to `end` (for a ring buffer, the producer's position,
    /// which may include a record still being written): from where the
    /// last one stopped (or the reader, if it jumped past that) to `AHEAD`
    /// bytes past the reader, but not past `end`. `None` when there is
    /// nothing new. Stretches given one after another meet end to end, so
    /// each line is asked for once (the last line of a stretch may reach
    /// past `end`: lines are asked for where they start).
    #[inline(always)]
    pub fn advance(&mut self, reader: u64, end: u64) -> Option<(u64, u64)> {
        let from = self.asked.max(reader);
        let to = reader.saturating_add(AHEAD).min(end);
        (from < to).then(|| {
            self.asked = to;
            (from, to)
        })
    }

    /// Asks the CPU for the stretch `advance` gives, in memory whose
    /// offset 0 is at `base`.
    #[inline(always)]
    pub fn ask(&mut self, base: *const u8, reader: u64, end: u64) {
        if let Some((from, to)) = self.advance(reader, end) {
            lines(base, from, to);
        }
    }
}

/// The offsets, from an address `base`, of the cache lines that start in
/// `from..to` past it.
fn line_starts(base: usize, from: u64, to: u64) -> impl Iterator<Item = u64> {
    // Wrapping: a ring's `base` may lie below its memory's real start.
    let first = (base as u64)
        .wrapping_add(from)
        .next_multiple_of(LINE)
        .wrapping_sub(base as u64);
    (first..to).step_by(LINE as usize)
}

/// Asks the CPU for the cache lines that start in `from..to` past `base`.
/// Nothing is read there.
#[inline(always)]
fn lines(base: *const u8, from: u64, to: u64) {
    for offset in line_starts(base as usize, from, to) {
        hint(base.wrapping_add(offset as usize));
    }
}

#[inline(always)]
fn hint(at: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: SSE is part of x86_64; a prefetch reads nothing and cannot
    // fault, whatever the address.
    unsafe {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        _mm_prefetch::<_MM_HINT_T0>(at as *const i8);
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = at;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reader_asks_for_every_line_once_and_never_past_what_was_written() {
        let mut rng = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = |n: u64| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng % n
        };
        for _ in 0..300 {
            // Memory at a random alignment, written in bursts, read in
            // records of random lengths (as a ring is): the stretches asked
            // for cover every line up to what was written, once each, and
            // none past it.
            let base = 4096 + next(64) as usize;
            let start = next(512);
            let mut frontier = Frontier::default();
            let (mut reader, mut written) = (start, start);
            let mut asked = Vec::new();
            for _ in 0..next(200) {
                if next(4) == 0 {
                    written += next(1 << 14);
                }
                if let Some((from, to)) = frontier.advance(reader, written) {
                    assert!(to <= written && from >= reader, "{from}..{to}");
                    asked.extend(line_starts(base, from, to));
                }
                reader = (reader + 1 + next(2000)).min(written);
            }
            if let Some((from, to)) = frontier.advance(reader, written) {
                asked.extend(line_starts(base, from, to));
            }
            let every: Vec<u64> = line_starts(base, start, (reader + AHEAD).min(written)).collect();
            assert_eq!(asked, every, "{base} {start}..{reader}");
        }
    }

    #[test]
    fn a_reader_that_skips_ahead_is_asked_for_from_where_it_lands() {
        let mut frontier = Frontier::default();
        assert_eq!(frontier.advance(0, 100_000), Some((0, AHEAD)));
        assert_eq!(frontier.advance(100, 100_000), Some((AHEAD, AHEAD + 100)));
        // A reader that skips what it cannot read (the ring's bad record).
        assert_eq!(
            frontier.advance(10_000, 100_000),
            Some((10_000, 10_000 + AHEAD))
        );
        assert_eq!(frontier.advance(10_000, 100_000), None);
        assert_eq!(frontier.advance(99_000, 100_000), Some((99_000, 100_000)));
    }

    #[test]
    fn a_line_is_asked_for_where_it_starts() {
        let starts = |base, from, to| line_starts(base, from, to).collect::<Vec<_>>();
        assert_eq!(starts(0, 0, 64), [0]);
        assert_eq!(starts(0, 1, 64), [0u64; 0]);
        assert_eq!(starts(0, 1, 129), [64, 128]);
        assert_eq!(starts(60, 0, 10), [4], "the line at 64 is 4 past 60");
        // A hint reads nothing: any address will do.
        lines(std::ptr::null(), 0, 4096);
    }
}
