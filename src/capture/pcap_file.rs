//! Reading capture files: classic pcap and pcapng with our own chunked
//! readers (`pcap_reader`, `pcapng_reader`), a file read with `-f` through
//! libpcap (which applies the filter), with nanosecond timestamps whatever
//! the file's own precision.

use std::path::Path;

use pcap::{Capture, Offline, Precision};

use super::pcap_reader::{bad_header, PcapReader};
use super::pcapng_reader::PcapngReader;
use super::{link_type_of, CaptureError, CaptureStats, Frame, Next, PacketSource};
use crate::decode::{DecodeErrorKind, LinkType};

pub struct PcapFile {
    name: String,
    inner: Inner,
    link: LinkType,
    /// libpcap refused a record: the reading has ended.
    broken: bool,
}

enum Inner {
    Own(PcapReader),
    Ng(PcapngReader),
    Libpcap(Capture<Offline>),
}

impl PcapFile {
    /// Opens a capture file; `filter` is a BPF expression applied as libpcap
    /// would on a live capture (empty for none).
    pub fn open(path: &Path, filter: &str) -> Result<PcapFile, CaptureError> {
        let what = path.display().to_string();
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| what.clone());
        if filter.is_empty() {
            if let Some(reader) = PcapReader::open(path, &name)? {
                let dlt = pcap::Linktype(reader.header().link_type as i32);
                let link = link_type_of(&what, dlt)?;
                return Ok(PcapFile {
                    name,
                    inner: Inner::Own(reader),
                    link,
                    broken: false,
                });
            }
            if let Some(reader) = PcapngReader::open(path, &name)? {
                let dlt = pcap::Linktype(reader.link_type() as i32);
                let link = link_type_of(&what, dlt)?;
                return Ok(PcapFile {
                    name,
                    inner: Inner::Ng(reader),
                    link,
                    broken: false,
                });
            }
        }
        let mut cap = Capture::from_file_with_precision(path, Precision::Nano).map_err(|e| {
            let head = first_bytes(path);
            CaptureError::Open {
                what: what.clone(),
                message: bad_header(&head).unwrap_or_else(|| e.to_string()),
                hint: "",
            }
        })?;
        let link = link_type_of(&what, cap.get_datalink())?;
        if !filter.is_empty() {
            cap.filter(filter, true).map_err(|e| CaptureError::Filter {
                filter: filter.to_string(),
                message: e.to_string(),
            })?;
        }
        Ok(PcapFile {
            name,
            inner: Inner::Libpcap(cap),
            link,
            broken: false,
        })
    }
}

/// The first bytes of a file (up to a pcap file header), for explaining
/// why it is not a capture.
fn first_bytes(path: &Path) -> Vec<u8> {
    use std::io::Read;
    let mut head = Vec::new();
    if let Ok(f) = std::fs::File::open(path) {
        let _ = f.take(24).read_to_end(&mut head);
    }
    head
}

impl PacketSource for PcapFile {
    fn name(&self) -> &str {
        &self.name
    }

    fn link_type(&self) -> LinkType {
        self.link
    }

    // Inlined into the capture loop compiled for files (pipeline's
    // `SourceLoop`), with the readers' own `next`.
    #[inline(always)]
    fn next(&mut self) -> Result<Next<'_>, CaptureError> {
        if self.broken {
            return Ok(Next::End);
        }
        let cap = match &mut self.inner {
            Inner::Own(reader) => return reader.next(),
            Inner::Ng(reader) => return reader.next(),
            Inner::Libpcap(cap) => cap,
        };
        match cap.next_packet() {
            Ok(p) => Ok(Next::Frame(Frame {
                ts: super::pcap_live::timeval_nanos(&p.header.ts),
                data: p.data,
                wire_len: p.header.len,
                gso_size: 0,
            })),
            Err(pcap::Error::NoMorePackets) => Ok(Next::End),
            Err(e) => {
                // libpcap cannot go past a record it refuses.
                eprintln!(
                    "tcp-exporter: {}: {e}; the frames before it are counted, the rest of \
                     the file is not read (decode_errors reason unreadable_record)",
                    self.name
                );
                self.broken = true;
                Ok(Next::Skipped(DecodeErrorKind::UnreadableRecord))
            }
        }
    }

    fn stats(&mut self) -> Option<CaptureStats> {
        None
    }

    fn batch(&self) -> usize {
        4096
    }
}
