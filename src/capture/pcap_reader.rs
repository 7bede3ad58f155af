//! A reader of classic pcap files (the format tcpdump writes), for `-r`
//! without a filter: it reads the file in large chunks and hands out frames
//! borrowed from its buffer, with none of libpcap's per-record stdio calls.
//! pcapng files have their own reader (`pcapng_reader`, on the same
//! `Chunks`); files read with `-f` go through libpcap instead.
//!
//! A broken global header is an error. A broken record is not: it is
//! reported as `Next::Skipped` with its reason, and reading goes on where
//! the framing allows (a record whose lengths disagree) or ends (a file cut
//! short, a length no frame can have), with one message on stderr.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use super::{CaptureError, Frame, Next};
use crate::decode::DecodeErrorKind;
use crate::flow::Nanos;

const MAGIC_MICRO: u32 = 0xa1b2_c3d4;
const MAGIC_NANO: u32 = 0xa1b2_3c4d;
const GLOBAL_HEADER: usize = 24;
const RECORD_HEADER: usize = 16;
/// Bytes read from the file at a time.
const CHUNK: usize = 1 << 20;
/// A record larger than this is not a frame (libpcap's own limit).
const MAX_RECORD: usize = 262_144;

/// What a file's global header says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileHeader {
    pub link_type: u32,
    pub nanos: bool,
    pub swapped: bool,
    /// The format version (2.4 for every file written since 1998).
    pub version: (u16, u16),
}

/// Reads a classic pcap global header; `None` for anything else (pcapng,
/// or not a capture at all: libpcap then gives the error, as it does for
/// a header cut short).
pub fn file_header(head: &[u8]) -> Option<FileHeader> {
    let word = |at: usize, swapped: bool| {
        let b: [u8; 4] = head.get(at..at + 4)?.try_into().ok()?;
        Some(if swapped {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        })
    };
    let (nanos, swapped) = match (word(0, false)?, word(0, true)?) {
        (MAGIC_MICRO, _) => (false, false),
        (MAGIC_NANO, _) => (true, false),
        (_, MAGIC_MICRO) => (false, true),
        (_, MAGIC_NANO) => (true, true),
        _ => return None,
    };
    let link_type = word(20, swapped)? & 0x0fff_ffff;
    let version = word(4, swapped)?;
    let version = if swapped {
        ((version >> 16) as u16, version as u16)
    } else {
        (version as u16, (version >> 16) as u16)
    };
    (head.len() >= GLOBAL_HEADER).then_some(FileHeader {
        link_type,
        nanos,
        swapped,
        version,
    })
}

/// Why a file that libpcap refused is not a capture, when its first bytes
/// tell: a header cut short, or a magic number of no capture format.
/// `None` leaves the explaining to libpcap (a pcapng file's own errors).
pub fn bad_header(head: &[u8]) -> Option<String> {
    const PCAPNG: [u8; 4] = [0x0a, 0x0d, 0x0d, 0x0a];
    let known = head.len() >= 4
        && (head[..4] == PCAPNG
            || [MAGIC_MICRO, MAGIC_NANO]
                .iter()
                .any(|m| head[..4] == m.to_le_bytes() || head[..4] == m.to_be_bytes()));
    if known && head[..4] != PCAPNG && head.len() < GLOBAL_HEADER {
        Some(format!(
            "the file header is cut short: {} bytes, where a pcap file header has {GLOBAL_HEADER}",
            head.len()
        ))
    } else if known {
        None
    } else if head.len() < 4 {
        Some(format!(
            "not a pcap or pcapng capture: the file has only {} bytes",
            head.len()
        ))
    } else {
        Some(format!(
            "not a pcap or pcapng capture: it starts with {:02x} {:02x} {:02x} {:02x}",
            head[0], head[1], head[2], head[3]
        ))
    }
}

/// A capture file read in large chunks (`CHUNK`), for the pcap and pcapng
/// readers: records are framed in `buf` from `at` and handed out borrowed.
pub(super) struct Chunks {
    pub(super) name: String,
    file: File,
    pub(super) buf: Vec<u8>,
    /// Valid bytes in `buf`, and where the next record starts.
    pub(super) filled: usize,
    pub(super) at: usize,
    /// File offset of `buf[0]`, for error messages.
    base: u64,
    eof: bool,
    /// A record ended the reading early (`Next::Skipped` was the last).
    pub(super) broken: bool,
}

impl Chunks {
    /// The rest of `file`, whose first `offset` bytes have been read.
    pub(super) fn new(name: &str, file: File, offset: u64) -> Chunks {
        Chunks {
            name: name.to_string(),
            file,
            buf: vec![0; CHUNK],
            filled: 0,
            at: 0,
            base: offset,
            eof: false,
            broken: false,
        }
    }

    /// Makes sure `need` bytes from `at` are in the buffer, reading more of
    /// the file; false when the file ends first.
    #[inline]
    pub(super) fn fill(&mut self, need: usize) -> Result<bool, CaptureError> {
        if self.filled - self.at >= need {
            return Ok(true);
        }
        self.refill(need)
    }

    #[cold]
    fn refill(&mut self, need: usize) -> Result<bool, CaptureError> {
        while self.filled - self.at < need {
            if self.eof {
                return Ok(false);
            }
            if self.at > 0 {
                self.buf.copy_within(self.at..self.filled, 0);
                self.base += self.at as u64;
                self.filled -= self.at;
                self.at = 0;
            }
            if self.buf.len() < need {
                self.buf.resize(need.max(CHUNK), 0);
            }
            let n = read_full(&mut self.file, &mut self.buf[self.filled..]).map_err(|e| {
                CaptureError::Read {
                    what: self.name.clone(),
                    message: e.to_string(),
                }
            })?;
            self.eof = self.filled + n < self.buf.len();
            self.filled += n;
        }
        Ok(true)
    }

    /// Bytes the buffer holds (for tests of what a file made it grow to).
    #[cfg(test)]
    pub(super) fn buffer_len(&self) -> usize {
        self.buf.len()
    }

    /// Ends the reading at a record that cannot be framed: says why once,
    /// on stderr, and reports the record as skipped.
    pub(super) fn give_up<'a>(&mut self, reason: DecodeErrorKind, why: &str) -> Next<'a> {
        eprintln!(
            "tcp-exporter: {}: {why} at byte {}; the frames before it are counted, \
             the rest of the file is not read (decode_errors reason {})",
            self.name,
            self.base + self.at as u64,
            reason.as_str()
        );
        self.broken = true;
        Next::Skipped(reason)
    }
}

pub struct PcapReader {
    c: Chunks,
    header: FileHeader,
}

impl PcapReader {
    /// Opens a classic pcap file, or returns `None` if it is not one.
    pub fn open(path: &Path, name: &str) -> Result<Option<PcapReader>, CaptureError> {
        let open_err = |e: std::io::Error| open_error(path, e.to_string());
        let mut file = File::open(path).map_err(open_err)?;
        let mut head = [0u8; GLOBAL_HEADER];
        let n = read_full(&mut file, &mut head).map_err(open_err)?;
        let Some(header) = file_header(&head[..n]) else {
            return Ok(None);
        };
        if header.version.0 != 2 {
            return Err(open_error(
                path,
                format!(
                    "pcap format version {}.{} in the file header; only version 2 exists",
                    header.version.0, header.version.1
                ),
            ));
        }
        Ok(Some(PcapReader {
            c: Chunks::new(name, file, GLOBAL_HEADER as u64),
            header,
        }))
    }

    pub fn header(&self) -> FileHeader {
        self.header
    }

    /// A 32-bit field of the record header at `at`; `fill` made sure the
    /// header is in the buffer.
    #[inline]
    fn u32_at(&self, at: usize) -> u32 {
        let b: [u8; 4] = self.c.buf[at..at + 4].try_into().unwrap_or_default();
        if self.header.swapped {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        }
    }

    // Inlined into the capture loop for files, through `PcapFile::next`.
    #[inline(always)]
    pub fn next(&mut self) -> Result<Next<'_>, CaptureError> {
        if self.c.broken {
            return Ok(Next::End);
        }
        if !self.c.fill(RECORD_HEADER)? {
            return Ok(if self.c.filled == self.c.at {
                Next::End
            } else {
                self.c.give_up(
                    DecodeErrorKind::TruncatedRecord,
                    "the file ends inside a record header",
                )
            });
        }
        let h = self.c.at;
        let sec = self.u32_at(h) as Nanos;
        let frac = self.u32_at(h + 4) as Nanos;
        let caplen = self.u32_at(h + 8) as usize;
        let wire_len = self.u32_at(h + 12);
        if caplen > MAX_RECORD {
            return Ok(self.c.give_up(
                DecodeErrorKind::BadRecordLength,
                &format!(
                    "a record claims {caplen} captured bytes (a frame has at most {MAX_RECORD})"
                ),
            ));
        }
        if !self.c.fill(RECORD_HEADER + caplen)? {
            return Ok(self.c.give_up(
                DecodeErrorKind::TruncatedRecord,
                "the file ends inside a record",
            ));
        }
        let start = self.c.at + RECORD_HEADER;
        self.c.at = start + caplen;
        if caplen > wire_len as usize {
            // More bytes captured than were on the wire: the header is
            // wrong, so the frame is not trusted; the next record is where
            // the captured length says.
            return Ok(Next::Skipped(DecodeErrorKind::BadRecordLength));
        }
        let scale = if self.header.nanos { 1 } else { 1000 };
        Ok(Next::Frame(Frame {
            ts: sec
                .wrapping_mul(1_000_000_000)
                .wrapping_add(frac.wrapping_mul(scale)),
            data: &self.c.buf[start..start + caplen],
            wire_len,
            gso_size: 0,
        }))
    }
}

/// Why a capture file could not be opened as one.
pub(super) fn open_error(path: &Path, message: String) -> CaptureError {
    CaptureError::Open {
        what: path.display().to_string(),
        message,
        hint: "",
    }
}

/// Reads until `buf` is full or the file ends; returns the bytes read.
pub(super) fn read_full(file: &mut File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pcap(nanos: bool, swapped: bool, records: &[(u32, u32, &[u8], u32)]) -> Vec<u8> {
        let w = |v: u32| {
            if swapped {
                v.to_be_bytes()
            } else {
                v.to_le_bytes()
            }
        };
        let mut f = Vec::new();
        f.extend_from_slice(&w(if nanos { MAGIC_NANO } else { MAGIC_MICRO }));
        f.extend_from_slice(&if swapped {
            2u16.to_be_bytes()
        } else {
            2u16.to_le_bytes()
        });
        f.extend_from_slice(&if swapped {
            4u16.to_be_bytes()
        } else {
            4u16.to_le_bytes()
        });
        f.extend_from_slice(&[0; 8]);
        f.extend_from_slice(&w(65535));
        f.extend_from_slice(&w(1));
        for (sec, frac, data, wire) in records {
            f.extend_from_slice(&w(*sec));
            f.extend_from_slice(&w(*frac));
            f.extend_from_slice(&w(data.len() as u32));
            f.extend_from_slice(&w(*wire));
            f.extend_from_slice(data);
        }
        f
    }

    /// What reading a file gives: frames, skipped records by reason.
    type Read = (Vec<(Nanos, Vec<u8>, u32)>, Vec<DecodeErrorKind>);

    fn read_all(bytes: &[u8]) -> Result<Read, CaptureError> {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("tcpx-reader-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("t.pcap");
        std::fs::write(&path, bytes).unwrap();
        let result = PcapReader::open(&path, "t.pcap").and_then(|r| {
            let mut r = r.expect("a classic pcap");
            let (mut frames, mut skipped) = (Vec::new(), Vec::new());
            loop {
                match r.next()? {
                    Next::Frame(f) => frames.push((f.ts, f.data.to_vec(), f.wire_len)),
                    Next::Skipped(kind) => skipped.push(kind),
                    Next::End => return Ok((frames, skipped)),
                    Next::Idle(_) | Next::Run(_) => panic!("a file is never idle, nor counts"),
                }
            }
        });
        std::fs::remove_dir_all(&dir).unwrap();
        result
    }

    #[test]
    fn reads_micro_and_nano_files_in_either_byte_order() {
        for nanos in [false, true] {
            for swapped in [false, true] {
                let f = pcap(nanos, swapped, &[(10, 5, b"abc", 60), (11, 0, b"", 0)]);
                let (got, skipped) = read_all(&f).unwrap();
                assert!(skipped.is_empty());
                let ts = 10_000_000_000 + if nanos { 5 } else { 5000 };
                assert_eq!(
                    got,
                    vec![(ts, b"abc".to_vec(), 60), (11_000_000_000, vec![], 0)]
                );
            }
        }
    }

    /// What reading `bytes` through a named pipe gives: the reader reads
    /// whatever `read` hands it, however little at a time.
    fn read_through_a_pipe(bytes: Vec<u8>) -> Read {
        let dir = std::env::temp_dir().join(format!("tcpx-pipe-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("p.pcap");
        let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
        // SAFETY: a NUL-terminated path; mkfifo only reads it.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let writer = {
            let path = path.clone();
            std::thread::spawn(move || std::fs::write(path, bytes).unwrap())
        };
        let mut r = PcapReader::open(&path, "p.pcap")
            .unwrap()
            .expect("a classic pcap");
        let (mut frames, mut skipped) = (Vec::new(), Vec::new());
        loop {
            match r.next().unwrap() {
                Next::Frame(f) => frames.push((f.ts, f.data.to_vec(), f.wire_len)),
                Next::Skipped(kind) => skipped.push(kind),
                Next::End => break,
                Next::Idle(_) | Next::Run(_) => panic!("a file is never idle, nor counts"),
            }
        }
        writer.join().unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        (frames, skipped)
    }

    #[test]
    fn a_pipe_reads_as_a_file_does() {
        let big = vec![7u8; 70_000];
        let records: Vec<(u32, u32, &[u8], u32)> =
            (0..40).map(|i| (i, i, &big[..], 70_000)).collect();
        let f = pcap(false, false, &records);
        let piped = read_through_a_pipe(f.clone());
        assert_eq!(piped.0.len(), 40);
        assert_eq!(piped, read_all(&f).unwrap());
    }

    #[test]
    fn records_across_chunk_boundaries_are_whole() {
        let big = vec![7u8; 70_000];
        let records: Vec<(u32, u32, &[u8], u32)> =
            (0..40).map(|i| (i, 0, &big[..], 70_000)).collect();
        let (got, _) = read_all(&pcap(false, false, &records)).unwrap();
        assert_eq!(got.len(), 40);
        assert!(got
            .iter()
            .all(|(_, d, _)| d.len() == 70_000 && d.iter().all(|&b| b == 7)));
    }

    #[test]
    fn a_file_cut_inside_a_record_keeps_the_frames_before_it() {
        let whole = pcap(false, false, &[(1, 0, b"abc", 3), (2, 0, b"abcdef", 6)]);
        for cut in [2, 8, 16 + 5] {
            let (got, skipped) = read_all(&whole[..whole.len() - cut]).unwrap();
            assert_eq!(got.len(), 1, "cut {cut}");
            assert_eq!(skipped, [DecodeErrorKind::TruncatedRecord], "cut {cut}");
        }
    }

    #[test]
    fn a_record_longer_than_its_wire_length_is_skipped_and_reading_goes_on() {
        let f = pcap(false, false, &[(1, 0, b"abcdef", 4), (2, 0, b"xyz", 3)]);
        let (got, skipped) = read_all(&f).unwrap();
        assert_eq!(got, vec![(2_000_000_000, b"xyz".to_vec(), 3)]);
        assert_eq!(skipped, [DecodeErrorKind::BadRecordLength]);
    }

    #[test]
    fn an_impossible_record_length_ends_the_reading() {
        let mut f = pcap(false, false, &[(1, 0, b"abc", 3), (2, 0, b"abcdef", 6)]);
        f[24 + 16 + 3 + 8..24 + 16 + 3 + 12].copy_from_slice(&u32::MAX.to_le_bytes());
        let (got, skipped) = read_all(&f).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(skipped, [DecodeErrorKind::BadRecordLength]);
    }

    #[test]
    fn a_version_other_than_2_is_refused_with_the_version() {
        let mut f = pcap(false, false, &[]);
        f[4..6].copy_from_slice(&9u16.to_le_bytes());
        let err = read_all(&f).unwrap_err().to_string();
        assert!(err.contains("version 9.4"), "{err}");
    }

    #[test]
    fn a_broken_file_header_is_explained() {
        let f = pcap(false, false, &[]);
        assert!(bad_header(&f[..10])
            .unwrap()
            .contains("cut short: 10 bytes"));
        assert!(bad_header(b"GIF89a..")
            .unwrap()
            .contains("starts with 47 49 46 38"));
        assert!(bad_header(b"").unwrap().contains("only 0 bytes"));
        assert_eq!(bad_header(&[0x0a, 0x0d, 0x0d, 0x0a, 0, 0]), None);
        assert_eq!(bad_header(&f), None);
    }

    #[test]
    fn pcapng_and_garbage_are_not_classic_pcap() {
        assert_eq!(file_header(&[0x0a, 0x0d, 0x0d, 0x0a, 0, 0, 0, 0]), None);
        assert_eq!(file_header(b"hello, this is not a capture"), None);
        assert_eq!(file_header(&[]), None);
    }
}
