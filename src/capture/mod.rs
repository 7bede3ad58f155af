//! Capture: where frames come from. A `PacketSource` per interface (or per
//! file) hands out frames with their capture timestamps; everything above
//! it is the same whatever the backend.
//!
//! This is the only layer that may read the wall clock: a live source says
//! what time it is when no frame comes (`Next::Idle`), so that idle flows
//! expire on a quiet interface.

pub mod af_packet;
#[cfg(feature = "xdp")]
mod bpf_ring;
#[cfg(feature = "xdp")]
mod kernel_count;
mod netlink;
mod pcap_file;
mod pcap_live;
mod pcap_reader;
mod pcapng_reader;
mod peers;
mod prefetch;
pub mod ring;
pub mod routes;
mod socket_filter;
#[cfg(feature = "xdp")]
pub mod xdp;

pub use af_packet::{AfPacket, AfPacketOptions};
pub use pcap_file::PcapFile;
pub use pcap_live::{LiveOptions, PcapLive};
#[cfg(feature = "xdp")]
pub use xdp::XdpCapture;

use crate::decode::{DecodeErrorKind, LinkType};
use crate::flow::Nanos;

/// One captured frame, borrowed from the backend's buffer.
#[derive(Clone, Copy, Debug)]
pub struct Frame<'a> {
    /// Capture time, nanoseconds since the Unix epoch.
    pub ts: Nanos,
    /// The captured bytes (at most the snap length).
    pub data: &'a [u8],
    /// The frame's length on the wire.
    pub wire_len: u32,
    /// For a segmentation-offload super-packet whose backend can tell: the
    /// segment size it stands for on the wire (0: one wire segment, or
    /// unknown).
    pub gso_size: u16,
}

/// How the xdp backend attaches its XDP program.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XdpAttach {
    /// Native (in the driver) where the driver supports it, else generic;
    /// generic on virtual interfaces (veth, bridge, loopback).
    Auto,
    /// In the driver, before an skb is built; fails where unsupported.
    Native,
    /// In the kernel's generic path, after the skb is built; works on any
    /// interface.
    Generic,
}

impl XdpAttach {
    pub fn as_str(self) -> &'static str {
        match self {
            XdpAttach::Auto => "auto",
            XdpAttach::Native => "native",
            XdpAttach::Generic => "generic",
        }
    }
}

/// Settings of the xdp backend (available when built with the `xdp`
/// feature; the types exist in every build so that flags parse the same).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct XdpOptions {
    pub attach: XdpAttach,
    /// Size of the BPF ring buffer per interface: a power of two, at least
    /// a page.
    pub ring_bytes: u32,
    /// How long a read waits for records before reporting Idle.
    pub read_timeout_ms: u32,
    /// Count steady segments in the kernel (`--xdp-count`, bpf/count.h).
    pub count: bool,
}

/// The default ring buffer: 16 MiB, about 120,000 records of 136 bytes.
pub const DEFAULT_XDP_RING_MIB: u32 = 16;

/// What a source has next.
pub enum Next<'a> {
    Frame(Frame<'a>),
    /// Nothing arrived within the read timeout; the time now.
    Idle(Nanos),
    /// A record of a file that could not be handed on, by reason (counted
    /// with the decode errors); `next` goes on after it, or ends.
    Skipped(DecodeErrorKind),
    /// A file has been read to its end.
    End,
    /// Segments the kernel counted instead of handing them up (the xdp
    /// backend with `--xdp-count`).
    Run(KernelRun<'a>),
}

/// A run record (`decode::summary::run_record`) and what turns its times,
/// the kernel's monotonic clock, into capture time.
pub struct KernelRun<'a> {
    pub data: &'a [u8],
    /// Nanoseconds to add to the run's times.
    pub clock_offset: i64,
}

/// What the analysis says of the connection of the frame a source handed
/// out last, for a source that counts its steady segments in the kernel
/// (see `PacketSource::wants_arm`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Arm {
    /// The connection's endpoints (address as 16 bytes, IPv4 mapped into
    /// IPv6; port), the lower first as `FlowKey` orders them, so that the
    /// source can tell it is the connection of its last frame.
    pub lo: ([u8; 16], u16),
    pub hi: ([u8; 16], u16),
    /// The client is the `lo` endpoint.
    pub client_is_lo: bool,
    /// The connection's mirror, a `struct tcpx_mirror` (bpf/steady.h).
    pub mirror: [u8; 64],
    /// The connection's generation, handed back with its runs.
    pub generation: u32,
}

/// Drops and deliveries as the kernel and the interface report them,
/// counted since the source opened.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CaptureStats {
    /// Frames the kernel dropped for want of buffer or ring space.
    pub kernel_drops: u64,
    /// Frames the interface or its driver dropped (libpcap only).
    pub interface_drops: u64,
    /// Times an AF_PACKET ring was full and froze (its drops are in
    /// `kernel_drops`).
    pub ring_freezes: u64,
    /// Frames skipped because a ring block did not hold together.
    pub ring_errors: u64,
    /// Counting steady segments in the kernel (xdp `--xdp-count`).
    pub kernel_count: KernelCountStats,
}

/// What counting steady segments in the kernel (xdp `--xdp-count`) did,
/// since the source opened.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelCountStats {
    /// Connections armed: mirrors written for the kernel to count with.
    pub arms: u64,
    /// Arms the kernel's map had no room for (`tcpx_arms`), and segments
    /// of connections its connection map had no room for (`tcpx_flows`),
    /// which are handed up one by one.
    pub arms_refused: u64,
    pub flows_refused: u64,
    /// Arms the analysis gave for another connection than the last
    /// record's (it did not take that record's segment); not written.
    pub arm_mismatches: u64,
    /// Records handed on after waiting 1 ms for one numbered before them
    /// that did not come (lost to a full ring, counted there as kernel
    /// drops; or written that late).
    pub gaps: u64,
    /// Times the kernel could not be asked for the runs it holds.
    pub flush_errors: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("cannot open {what}: {message}{hint}")]
    Open {
        what: String,
        message: String,
        hint: &'static str,
    },
    #[error("{what} has link type {dlt} ({name}), which tcp-exporter cannot decode")]
    UnsupportedLink {
        what: String,
        dlt: i32,
        name: String,
    },
    #[error("invalid capture filter {filter:?}: {message}")]
    Filter { filter: String, message: String },
    #[error("reading {what}: {message}")]
    Read { what: String, message: String },
}

/// A source of frames: a live interface or a capture file.
pub trait PacketSource: Send {
    /// What `-i` or `-r` named; the `interface` label.
    fn name(&self) -> &str;
    fn link_type(&self) -> LinkType;
    /// The next frame, an idle tick, or the end of a file.
    fn next(&mut self) -> Result<Next<'_>, CaptureError>;
    /// Drop counters, where the backend has them.
    fn stats(&mut self) -> Option<CaptureStats>;
    /// Frames worth handling under one lock of the metric shard: many for a
    /// file, one for a live source (which may block between frames).
    fn batch(&self) -> usize;
    /// Whether the connection of the frame handed out last could have its
    /// steady segments counted in the kernel, once armed with what the
    /// analysis makes of it after that frame (`arm`). Only the xdp backend
    /// with `--xdp-count` says yes.
    fn wants_arm(&self) -> bool {
        false
    }
    /// Arms the connection of the frame handed out last (see `wants_arm`).
    fn arm(&mut self, _arm: &Arm) {}
}

/// A number sysfs holds about an interface (`type`, `ifindex`, ...).
pub fn sysfs_number(interface: &str, attribute: &str) -> Option<u32> {
    std::fs::read_to_string(format!("/sys/class/net/{interface}/{attribute}"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// The interface's ARPHRD_* type, from sysfs.
fn hardware_type(interface: &str) -> Option<u32> {
    sysfs_number(interface, "type")
}

/// What to do about a permission error when opening a capture.
const PERMISSION_HINT: &str = "; run as root or grant CAP_NET_RAW";

/// Now, on the wall clock: what a live source reports when no frame comes.
fn wall_clock() -> Nanos {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as Nanos)
        .unwrap_or(0)
}

fn link_type_of(what: &str, dlt: pcap::Linktype) -> Result<LinkType, CaptureError> {
    LinkType::from_dlt(dlt.0).ok_or_else(|| CaptureError::UnsupportedLink {
        what: what.to_string(),
        dlt: dlt.0,
        name: dlt.get_name().unwrap_or_else(|_| "unknown".into()),
    })
}
