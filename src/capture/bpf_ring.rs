//! A reader of a BPF ring buffer (BPF_MAP_TYPE_RINGBUF) mapped into this
//! process, for the xdp backend. Records are read in place, and the
//! consumer position, a cache line the kernel's producers read on every
//! record, is written back once per batch rather than once per record.
//!
//! Layout (kernel/bpf/ringbuf.c): page 0 holds the consumer position, which
//! the reader writes; page 1 the producer position; the data area follows,
//! mapped twice in a row so that a record that wraps around the end reads
//! as one slice. Each record starts with an 8-byte header (length with a
//! busy and a discard bit, then a page offset) and is padded to 8 bytes.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

use super::prefetch::Frontier;

const BUSY_BIT: u32 = 1 << 31;
const DISCARD_BIT: u32 = 1 << 30;
const HEADER_LEN: u64 = 8;
/// Bytes read before the consumer position is written back, at most.
const RELEASE_BYTES: u64 = 64 * 1024;

pub struct BpfRing {
    /// Page 0: the consumer position (read-write).
    consumer: *mut u8,
    /// Page 1 onwards: the producer position, then the data twice.
    producer: *const u8,
    page: usize,
    size: u64,
    /// Where the reader is: everything before it has been handed out.
    pos: u64,
    /// What the kernel was last told (the consumer position).
    released: u64,
    /// The producer position as last read.
    end: u64,
    /// How far ahead of the reader records' lines have been asked for.
    frontier: Frontier,
    /// Where the record `next` handed out last lies (offset from `producer`,
    /// length), for `current`.
    last: (usize, usize),
}

// SAFETY: the mappings belong to this value alone; the kernel synchronises
// through the two positions, which are accessed atomically.
unsafe impl Send for BpfRing {}

impl BpfRing {
    /// Maps the ring buffer of map `fd`, `size` bytes of data (a power of
    /// two, a multiple of the page size: what the map was created with).
    pub fn map(fd: BorrowedFd<'_>, size: usize) -> io::Result<BpfRing> {
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize;
        if !size.is_power_of_two() || !size.is_multiple_of(page) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("a ring buffer of {size} bytes is not a power of two of whole pages"),
            ));
        }
        // SAFETY: fresh shared mappings of the map's fd at the offsets the
        // kernel defines; failures are checked.
        let consumer = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                page,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if consumer == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: as above.
        let producer = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                page + 2 * size,
                libc::PROT_READ,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                page as libc::off_t,
            )
        };
        if producer == libc::MAP_FAILED {
            let e = io::Error::last_os_error();
            // SAFETY: unmaps the mapping made just above.
            unsafe { libc::munmap(consumer, page) };
            return Err(e);
        }
        let mut ring = BpfRing {
            consumer: consumer.cast(),
            producer: producer.cast(),
            page,
            size: size as u64,
            pos: 0,
            released: 0,
            end: 0,
            frontier: Frontier::default(),
            last: (0, 0),
        };
        ring.pos = ring.consumer_pos().load(Ordering::Acquire) as u64;
        ring.released = ring.pos;
        ring.end = ring.pos;
        Ok(ring)
    }

    /// The positions are the kernel's `unsigned long`s.
    fn consumer_pos(&self) -> &AtomicUsize {
        // SAFETY: page 0 is mapped for the life of self, aligned, and the
        // kernel reads it only atomically.
        unsafe { &*(self.consumer as *const AtomicUsize) }
    }

    fn producer_pos(&self) -> &AtomicUsize {
        // SAFETY: as for consumer_pos, on the producer page.
        unsafe { &*(self.producer as *const AtomicUsize) }
    }

    /// Whether the producer has written past the reader (the record there
    /// may still be uncommitted for a moment). When not, all that was read
    /// is released: the kernel's poll reports data until it is.
    pub fn has_record(&mut self) -> bool {
        if self.pos == self.end {
            self.end = self.producer_pos().load(Ordering::Acquire) as u64;
        }
        if self.pos == self.end {
            self.release();
            return false;
        }
        true
    }

    /// The next committed record, or `None` when there is none yet. The
    /// record stays valid until the next call: only then may the kernel
    /// reuse its place.
    pub fn next(&mut self) -> Option<&[u8]> {
        if self.pos - self.released >= RELEASE_BYTES {
            self.release();
        }
        loop {
            if self.pos == self.end {
                self.end = self.producer_pos().load(Ordering::Acquire) as u64;
                if self.pos == self.end {
                    self.release();
                    return None;
                }
            }
            let at = (self.pos & (self.size - 1)) as usize;
            // SAFETY: the header lies in the data area (at < size, and the
            // area is mapped twice, so 8 bytes past `at` are mapped); it is
            // 8-byte aligned, and the kernel writes its length atomically.
            let header = unsafe { &*(self.producer.add(self.page + at) as *const AtomicU32) };
            let word = header.load(Ordering::Acquire);
            if word & BUSY_BIT != 0 {
                // Reserved, not yet committed: read it next time.
                return None;
            }
            let len = (word & !(BUSY_BIT | DISCARD_BIT)) as u64;
            let stride = (len + HEADER_LEN).next_multiple_of(8);
            if len > self.size || stride > self.end - self.pos {
                // Not a record the kernel could have written: skip to what
                // the producer has, rather than read out of bounds.
                self.pos = self.end;
                continue;
            }
            // Position `here` is at `at` in the data area, which is mapped
            // twice in a row: the positions after it, up to a ring's length
            // on, lie in one piece from there. `base` is where position 0
            // would be in that piece (an address never used itself).
            let here = self.pos;
            self.pos += stride;
            let base = self
                .producer
                .wrapping_add(self.page + at)
                .wrapping_sub(here as usize);
            self.frontier.ask(base, self.pos, self.end);
            if word & DISCARD_BIT != 0 {
                continue;
            }
            // SAFETY: `len <= size` bytes from `at + 8`, within the doubled
            // data area; committed, so the kernel leaves them alone until
            // the consumer position passes them, which `release` does only
            // once this borrow has ended.
            self.last = (self.page + at + HEADER_LEN as usize, len as usize);
            return Some(unsafe {
                std::slice::from_raw_parts(self.producer.add(self.last.0), self.last.1)
            });
        }
    }

    /// The record `next` handed out last (empty before the first). Valid,
    /// as that one is, until the next call to `next`.
    pub fn current(&self) -> &[u8] {
        // SAFETY: as in `next`, which set `last` to a record it handed out;
        // releasing (which needs `&mut self`, so not while this borrow
        // lives) sets it to zero bytes.
        unsafe { std::slice::from_raw_parts(self.producer.add(self.last.0), self.last.1) }
    }

    /// Tells the kernel that everything handed out may be overwritten.
    fn release(&mut self) {
        self.last = (0, 0);
        if self.released != self.pos {
            self.consumer_pos()
                .store(self.pos as usize, Ordering::Release);
            self.released = self.pos;
        }
    }
}

impl Drop for BpfRing {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the two mappings made in `map`; no borrow
        // of them outlives self.
        unsafe {
            libc::munmap(self.consumer.cast(), self.page);
            libc::munmap(
                self.producer as *mut libc::c_void,
                self.page + 2 * self.size as usize,
            );
        }
    }
}
