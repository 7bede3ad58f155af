//! A reader of classic pcap files (the format tcpdump writes), for `-r`
//! without a filter: it reads the file in large chunks and hands out frames
//! borrowed from its buffer, with none of libpcap's per-record stdio calls.
//! pcapng files, and files read with `-f`, go through libpcap instead.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use super::{CaptureError, Frame, Next};
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
}

/// Reads a classic pcap global header; `None` for anything else (pcapng,
/// or not a capture at all: libpcap then gives the error).
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
    (head.len() >= GLOBAL_HEADER).then_some(FileHeader {
        link_type,
        nanos,
        swapped,
    })
}

pub struct PcapReader {
    name: String,
    file: File,
    header: FileHeader,
    buf: Vec<u8>,
    /// Valid bytes in `buf`, and where the next record starts.
    filled: usize,
    at: usize,
    /// File offset of `buf[0]`, for error messages.
    base: u64,
    eof: bool,
}

impl PcapReader {
    /// Opens a classic pcap file, or returns `None` if it is not one.
    pub fn open(path: &Path, name: &str) -> Result<Option<PcapReader>, CaptureError> {
        let open_err = |e: std::io::Error| CaptureError::Open {
            what: path.display().to_string(),
            message: e.to_string(),
            hint: "",
        };
        let mut file = File::open(path).map_err(open_err)?;
        let mut head = [0u8; GLOBAL_HEADER];
        let n = read_full(&mut file, &mut head).map_err(open_err)?;
        let Some(header) = file_header(&head[..n]) else {
            return Ok(None);
        };
        Ok(Some(PcapReader {
            name: name.to_string(),
            file,
            header,
            buf: vec![0; CHUNK],
            filled: 0,
            at: 0,
            base: GLOBAL_HEADER as u64,
            eof: false,
        }))
    }

    pub fn header(&self) -> FileHeader {
        self.header
    }

    /// A 32-bit field of the record header at `at`; `fill` made sure the
    /// header is in the buffer.
    #[inline]
    fn u32_at(&self, at: usize) -> u32 {
        let b: [u8; 4] = self.buf[at..at + 4].try_into().unwrap_or_default();
        if self.header.swapped {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        }
    }

    /// Makes sure `need` bytes from `at` are in the buffer, reading more of
    /// the file; false when the file ends first.
    #[inline]
    fn fill(&mut self, need: usize) -> Result<bool, CaptureError> {
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

    fn truncated(&self, what: &str) -> CaptureError {
        CaptureError::Read {
            what: self.name.clone(),
            message: format!(
                "{what} cut short at byte {} (truncated file)",
                self.base + self.at as u64
            ),
        }
    }

    pub fn next(&mut self) -> Result<Next<'_>, CaptureError> {
        if !self.fill(RECORD_HEADER)? {
            return if self.filled == self.at {
                Ok(Next::End)
            } else {
                Err(self.truncated("record header"))
            };
        }
        let h = self.at;
        let sec = self.u32_at(h) as Nanos;
        let frac = self.u32_at(h + 4) as Nanos;
        let caplen = self.u32_at(h + 8) as usize;
        let wire_len = self.u32_at(h + 12);
        if caplen > MAX_RECORD {
            return Err(CaptureError::Read {
                what: self.name.clone(),
                message: format!(
                    "record at byte {} claims {caplen} captured bytes (at most {MAX_RECORD})",
                    self.base + h as u64
                ),
            });
        }
        if !self.fill(RECORD_HEADER + caplen)? {
            return Err(self.truncated("record"));
        }
        let start = self.at + RECORD_HEADER;
        self.at = start + caplen;
        let scale = if self.header.nanos { 1 } else { 1000 };
        Ok(Next::Frame(Frame {
            ts: sec * 1_000_000_000 + frac * scale,
            data: &self.buf[start..start + caplen],
            wire_len,
            gso_size: 0,
        }))
    }
}

/// Reads until `buf` is full or the file ends; returns the bytes read.
fn read_full(file: &mut File, buf: &mut [u8]) -> std::io::Result<usize> {
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

    fn read_all(bytes: &[u8]) -> Result<Vec<(Nanos, Vec<u8>, u32)>, CaptureError> {
        let dir = std::env::temp_dir().join(format!(
            "tcpx-reader-{}-{}",
            std::process::id(),
            bytes.len()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("t.pcap");
        std::fs::write(&path, bytes).unwrap();
        let mut r = PcapReader::open(&path, "t.pcap")
            .unwrap()
            .expect("a classic pcap");
        let mut out = Vec::new();
        let result = loop {
            match r.next() {
                Ok(Next::Frame(f)) => out.push((f.ts, f.data.to_vec(), f.wire_len)),
                Ok(_) => break Ok(out),
                Err(e) => break Err(e),
            }
        };
        std::fs::remove_dir_all(&dir).unwrap();
        result
    }

    #[test]
    fn reads_micro_and_nano_files_in_either_byte_order() {
        for nanos in [false, true] {
            for swapped in [false, true] {
                let f = pcap(nanos, swapped, &[(10, 5, b"abc", 60), (11, 0, b"", 0)]);
                let got = read_all(&f).unwrap();
                let ts = 10_000_000_000 + if nanos { 5 } else { 5000 };
                assert_eq!(
                    got,
                    vec![(ts, b"abc".to_vec(), 60), (11_000_000_000, vec![], 0)]
                );
            }
        }
    }

    #[test]
    fn records_across_chunk_boundaries_are_whole() {
        let big = vec![7u8; 70_000];
        let records: Vec<(u32, u32, &[u8], u32)> =
            (0..40).map(|i| (i, 0, &big[..], 70_000)).collect();
        let got = read_all(&pcap(false, false, &records)).unwrap();
        assert_eq!(got.len(), 40);
        assert!(got
            .iter()
            .all(|(_, d, _)| d.len() == 70_000 && d.iter().all(|&b| b == 7)));
    }

    #[test]
    fn truncated_last_record_is_an_error_that_says_where() {
        let mut f = pcap(false, false, &[(1, 0, b"abcdef", 6)]);
        f.truncate(f.len() - 2);
        let err = read_all(&f).unwrap_err().to_string();
        assert!(err.contains("truncated"), "{err}");
    }

    #[test]
    fn absurd_record_length_is_an_error() {
        let mut f = pcap(false, false, &[(1, 0, b"abcdef", 6)]);
        f[24 + 8..24 + 12].copy_from_slice(&10_000_000u32.to_le_bytes());
        assert!(read_all(&f).unwrap_err().to_string().contains("claims"));
    }

    #[test]
    fn pcapng_and_garbage_are_not_classic_pcap() {
        assert_eq!(file_header(&[0x0a, 0x0d, 0x0d, 0x0a, 0, 0, 0, 0]), None);
        assert_eq!(file_header(b"hello, this is not a capture"), None);
        assert_eq!(file_header(&[]), None);
    }
}
