//! Live capture on an interface through libpcap.

use std::os::unix::io::AsRawFd;

use pcap::{Active, Capture};

use super::{
    link_type_of, wall_clock, CaptureError, CaptureStats, Frame, Next, PacketSource,
    PERMISSION_HINT,
};
use crate::decode::LinkType;
use crate::flow::Nanos;

/// How to open a live capture.
#[derive(Clone, Debug)]
pub struct LiveOptions {
    pub snaplen: u32,
    pub filter: String,
    pub promisc: bool,
    /// Kernel capture buffer, bytes.
    pub buffer_bytes: u32,
    /// How long a read waits before the source reports `Next::Idle`.
    pub read_timeout_ms: u32,
}

pub struct PcapLive {
    name: String,
    cap: Capture<Active>,
    link: LinkType,
    read_timeout_ms: i32,
    /// The last read found nothing: wait in poll(2) before reading again.
    drained: bool,
    /// Last raw (32-bit, wrapping) drop counters from pcap_stats, and the
    /// 64-bit totals built from their deltas.
    last_raw: (u32, u32),
    totals: CaptureStats,
}

impl PcapLive {
    pub fn open(interface: &str, opts: &LiveOptions) -> Result<PcapLive, CaptureError> {
        let open_err = |e: pcap::Error| {
            let message = e.to_string();
            let hint = if message.contains("ermission") || message.contains("not permitted") {
                PERMISSION_HINT
            } else {
                ""
            };
            CaptureError::Open {
                what: interface.to_string(),
                message,
                hint,
            }
        };
        let mut cap = Capture::from_device(interface)
            .map_err(open_err)?
            .snaplen(opts.snaplen as i32)
            .promisc(opts.promisc)
            .timeout(opts.read_timeout_ms as i32)
            .buffer_size(opts.buffer_bytes as i32)
            .precision(pcap::Precision::Nano)
            .open()
            .map_err(open_err)?;
        let link = link_type_of(interface, cap.get_datalink())?;
        if !opts.filter.is_empty() {
            cap.filter(&opts.filter, true)
                .map_err(|e| CaptureError::Filter {
                    filter: opts.filter.clone(),
                    message: e.to_string(),
                })?;
        }
        // libpcap's own timeout does not fire on an idle interface with
        // TPACKET_V3 (it waits for the kernel to retire a block, which
        // needs a packet), so read without blocking and wait in poll(2).
        let cap = cap.setnonblock().map_err(open_err)?;
        Ok(PcapLive {
            name: interface.to_string(),
            cap,
            link,
            read_timeout_ms: opts.read_timeout_ms as i32,
            drained: false,
            last_raw: (0, 0),
            totals: CaptureStats::default(),
        })
    }
}

/// A pcap timestamp in nanoseconds. Every handle is opened with
/// nanosecond precision, so `tv_usec` holds nanoseconds.
pub(super) fn timeval_nanos(tv: &libc::timeval) -> Nanos {
    (tv.tv_sec as u64)
        .wrapping_mul(1_000_000_000)
        .wrapping_add(tv.tv_usec as u64)
}

impl PacketSource for PcapLive {
    fn name(&self) -> &str {
        &self.name
    }

    fn link_type(&self) -> LinkType {
        self.link
    }

    fn next(&mut self) -> Result<Next<'_>, CaptureError> {
        if self.drained {
            let mut fds = libc::pollfd {
                fd: self.cap.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd, owned by this frame, for the call.
            let ready = unsafe { libc::poll(&mut fds, 1, self.read_timeout_ms) };
            if ready <= 0 {
                // Timed out, or interrupted by a signal: either way, idle.
                return Ok(Next::Idle(wall_clock()));
            }
            self.drained = false;
        }
        match self.cap.next_packet() {
            Ok(p) => Ok(Next::Frame(Frame {
                ts: timeval_nanos(&p.header.ts),
                data: p.data,
                wire_len: p.header.len,
                gso_size: 0,
            })),
            // Non-blocking: nothing buffered now.
            Err(pcap::Error::TimeoutExpired) => {
                self.drained = true;
                Ok(Next::Idle(wall_clock()))
            }
            Err(e) => Err(CaptureError::Read {
                what: self.name.clone(),
                message: e.to_string(),
            }),
        }
    }

    fn stats(&mut self) -> Option<CaptureStats> {
        let s = self.cap.stats().ok()?;
        // pcap's counters are 32-bit and wrap on a busy interface.
        self.totals.kernel_drops += s.dropped.wrapping_sub(self.last_raw.0) as u64;
        self.totals.interface_drops += s.if_dropped.wrapping_sub(self.last_raw.1) as u64;
        self.last_raw = (s.dropped, s.if_dropped);
        Some(self.totals)
    }

    fn batch(&self) -> usize {
        1
    }
}
