//! The xdp backend (cargo feature `xdp`): eBPF programs on an interface's
//! ingress (XDP) and egress (TC clsact) summarise each TCP segment's headers
//! in the kernel, before an skb is built on XDP-capable drivers, and hand
//! the records to user space through a BPF ring buffer. Every packet passes
//! on unchanged.
//!
//! This module owns loading and attaching the programs (with aya, through
//! bpf links, so they go away with the process), reading the ring buffer,
//! and the kernel's count of records lost to a full ring. The records are
//! decoded by `decode::summary`, so nothing above capture changes. With
//! `--xdp-count` it loads the counting programs instead (bpf/count.h) and
//! hands the ring's records through `kernel_count`, which orders them,
//! arms connections and asks for runs; runs come out as `Next::Run`.

use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd};

use aya::maps::{Map, MapData, PerCpuArray};
use aya::programs::tc::{self, NlOptions, TcAttachOptions};
use aya::programs::{LinkOrder, ProgramError, SchedClassifier, TcAttachType, Xdp, XdpMode};
use aya::{Ebpf, EbpfLoader};

use super::bpf_ring::BpfRing;
use super::kernel_count::{KernelCount, Turn, FLUSH_PROGRAM};
use super::netlink::{self, Attributes, Netlink, RTM_GETLINK, RTM_NEWLINK};
use super::{
    hardware_type, wall_clock, Arm, CaptureError, CaptureStats, Frame, KernelCountStats, KernelRun,
    Next, PacketSource, XdpAttach, XdpOptions,
};
use crate::decode::summary::{is_run_record, record_meta};
use crate::decode::LinkType;
use crate::flow::Nanos;

/// The object build.rs compiles from bpf/tcpx.bpf.c.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/tcpx.bpf.o"));

/// Program and map names in bpf/tcpx.bpf.c.
const XDP_PROGRAM: &str = "tcpx_xdp";
const TC_PROGRAM: &str = "tcpx_tc_egress";
/// ...and the two that count steady segments (`--xdp-count`).
const XDP_COUNT_PROGRAM: &str = "tcpx_xdp_count";
const TC_COUNT_PROGRAM: &str = "tcpx_tc_egress_count";
const EVENTS_MAP: &str = "tcpx_events";
const DROPS_MAP: &str = "tcpx_drops";
const COUNT_STATS_MAP: &str = "tcpx_count_stats";

const PRIVILEGE_HINT: &str =
    "; the xdp backend needs root, or CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON";

/// Records handled under one lock of the metric shard.
const BATCH: usize = 256;
/// How often the ring is looked at when it is empty, in milliseconds. The
/// programs never wake the reader (see emit() in bpf/tcpx.bpf.c), so this
/// bounds how long a record may wait, and how much of the ring it fills
/// meanwhile: at a million records a second, 1.4 MB in 10 ms (the ring's
/// smallest size, 4 MiB, holds 30 ms of that).
const POLL_MS: u32 = 10;
/// With `--xdp-count`: how often the kernel is asked for the runs of every
/// connection (tcpx_flush), in nanoseconds; what a connection that only
/// counts has counted reaches the metrics at most this late.
pub(super) const FLUSH_EVERY: Nanos = 100_000_000;

/// ARPHRD_* types whose frames start with an Ethernet header.
const ARPHRD_ETHER: u32 = 1;
const ARPHRD_LOOPBACK: u32 = 772;

/// One interface's programs, links and ring buffer.
pub struct XdpCapture {
    name: String,
    ring: BpfRing,
    /// The ring buffer map, whose fd says when records wait.
    events: MapData,
    drops: PerCpuArray<MapData, u64>,
    /// The links live as long as this: dropping it detaches the programs.
    ebpf: Ebpf,
    /// With `--xdp-count`: order, arming and flushing; when it last
    /// flushed (CLOCK_MONOTONIC); the record it hands out from its own
    /// memory (one that waited for its turn).
    count: Option<KernelCount>,
    /// bpf/count.h's count, per CPU, of segments of connections it had no
    /// room for.
    count_stats: Option<PerCpuArray<MapData, u64>>,
    flushed_at: Nanos,
    handing_out: Vec<u8>,
    /// CLOCK_REALTIME minus CLOCK_MONOTONIC, in nanoseconds: turns the
    /// kernel's timestamps into capture time.
    clock_offset: i64,
    /// How long a read waits for records: `POLL_MS`, or less.
    read_timeout_ms: i32,
    /// The last call returned Idle: the next may wait for records.
    drained: bool,
    mode: XdpAttach,
    egress: bool,
}

impl XdpCapture {
    pub fn open(name: &str, opts: &XdpOptions) -> Result<XdpCapture, CaptureError> {
        let open_error = |message: String, hint: &'static str| CaptureError::Open {
            what: format!("{name} (xdp)"),
            message,
            hint,
        };
        let ifindex = if_index(name).ok_or_else(|| open_error("no such interface".into(), ""))?;
        let loopback = match hardware_type(name) {
            Some(ARPHRD_ETHER) => false,
            Some(ARPHRD_LOOPBACK) => true,
            other => {
                return Err(open_error(
                    format!(
                        "the xdp backend reads Ethernet frames, and this interface has \
                         hardware type {}; use --backend af-packet or pcap for it",
                        other.map_or("unknown".to_string(), |t| t.to_string())
                    ),
                    "",
                ))
            }
        };
        if let Some(attached) = attached_xdp(ifindex).map_err(|e| {
            open_error(
                format!("cannot ask the kernel about XDP programs on it: {e}"),
                "",
            )
        })? {
            return Err(open_error(describe_attached(name, &attached), ""));
        }

        let mut ebpf = EbpfLoader::new()
            .map_max_entries(EVENTS_MAP, opts.ring_bytes)
            .load(OBJECT)
            .map_err(|e| open_error(format!("cannot load the eBPF programs: {e}"), hint_for(&e)))?;

        let (xdp_program, tc_program) = match opts.count {
            true => (XDP_COUNT_PROGRAM, TC_COUNT_PROGRAM),
            false => (XDP_PROGRAM, TC_PROGRAM),
        };
        let xdp: &mut Xdp = program(&mut ebpf, xdp_program)
            .and_then(|p| p.try_into().map_err(|e: ProgramError| e.to_string()))
            .map_err(|m| open_error(m, ""))?;
        xdp.load()
            .map_err(|e| open_error(describe_load(xdp_program, &e), hint_for(&e)))?;
        let mode = attach_xdp(xdp, ifindex, opts.attach, is_virtual(name))
            .map_err(|e| open_error(format!("cannot attach XDP: {e}"), hint_for(&e)))?;

        // On loopback every packet is sent and received on the same device:
        // ingress alone sees each once, as libpcap does.
        let egress = !loopback;
        if egress {
            let tc: &mut SchedClassifier = program(&mut ebpf, tc_program)
                .and_then(|p| p.try_into().map_err(|e: ProgramError| e.to_string()))
                .map_err(|m| open_error(m, ""))?;
            tc.load()
                .map_err(|e| open_error(describe_load(tc_program, &e), hint_for(&e)))?;
            attach_egress(tc, name)
                .map_err(|e| open_error(format!("cannot attach TC egress: {e}"), hint_for(&e)))?;
        }

        let events = match ebpf.take_map(EVENTS_MAP) {
            Some(Map::RingBuf(data)) => data,
            _ => return Err(open_error(format!("no ring buffer {EVENTS_MAP}"), "")),
        };
        let ring = BpfRing::map(events.fd().as_fd(), opts.ring_bytes as usize)
            .map_err(|e| open_error(format!("cannot map the ring buffer: {e}"), hint_for(&e)))?;
        let drops = ebpf
            .take_map(DROPS_MAP)
            .ok_or_else(|| format!("no map {DROPS_MAP}"))
            .and_then(|m| PerCpuArray::try_from(m).map_err(|e| e.to_string()))
            .map_err(|m| open_error(m, ""))?;
        let count = match opts.count {
            true => {
                let flush: &mut Xdp = program(&mut ebpf, FLUSH_PROGRAM)
                    .and_then(|p| p.try_into().map_err(|e: ProgramError| e.to_string()))
                    .map_err(|m| open_error(m, ""))?;
                flush
                    .load()
                    .map_err(|e| open_error(describe_load(FLUSH_PROGRAM, &e), hint_for(&e)))?;
                Some(KernelCount::new(&mut ebpf).map_err(|m| open_error(m, ""))?)
            }
            false => None,
        };
        let count_stats = match opts.count {
            true => Some(
                ebpf.take_map(COUNT_STATS_MAP)
                    .ok_or_else(|| format!("no map {COUNT_STATS_MAP}"))
                    .and_then(|m| PerCpuArray::try_from(m).map_err(|e| e.to_string()))
                    .map_err(|m| open_error(m, ""))?,
            ),
            false => None,
        };
        Ok(XdpCapture {
            name: name.to_string(),
            ring,
            events,
            drops,
            ebpf,
            count,
            count_stats,
            flushed_at: 0,
            handing_out: Vec::new(),
            clock_offset: clock_offset(),
            read_timeout_ms: opts.read_timeout_ms.min(POLL_MS) as i32,
            drained: false,
            mode,
            egress,
        })
    }

    /// The XDP mode the program runs in (native or generic).
    pub fn mode(&self) -> XdpAttach {
        self.mode
    }

    /// Whether a TC program watches egress too (not on loopback).
    pub fn watches_egress(&self) -> bool {
        self.egress
    }

    /// Waits up to the read timeout for records; true when some came.
    fn wait(&self) -> bool {
        let mut fds = libc::pollfd {
            fd: self.events.fd().as_fd().as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd for the duration of the call.
        unsafe { libc::poll(&mut fds, 1, self.read_timeout_ms) > 0 }
    }
}

impl PacketSource for XdpCapture {
    fn name(&self) -> &str {
        &self.name
    }

    fn link_type(&self) -> LinkType {
        LinkType::KernelSummary
    }

    fn next(&mut self) -> Result<Next<'_>, CaptureError> {
        if let Some(count) = &mut self.count {
            let now = monotonic_ns();
            if now.saturating_sub(self.flushed_at) >= FLUSH_EVERY {
                self.flushed_at = now;
                count.flush(&mut self.ebpf, 0);
            }
            if let Some(record) = count.ready() {
                self.handing_out = record;
                return Ok(next_of(&self.handing_out, self.clock_offset));
            }
        }
        // Waiting happens only on the call after one that reported Idle, so
        // the caller can let go of its locks between the two.
        let mut may_wait = std::mem::take(&mut self.drained);
        loop {
            while !self.ring.has_record() {
                if may_wait && self.wait() {
                    may_wait = false;
                    continue;
                }
                self.drained = true;
                if let Some(count) = &mut self.count {
                    count.on_empty(monotonic_ns());
                }
                // Follows a step of the wall clock, as the idle tick does.
                self.clock_offset = clock_offset();
                return Ok(Next::Idle(wall_clock()));
            }
            let Some(count) = &mut self.count else {
                let Some(data) = self.ring.next() else {
                    // A record still being written: it is read on the next
                    // call, which may wait for it rather than spin.
                    self.drained = true;
                    return Ok(Next::Idle(wall_clock()));
                };
                return Ok(next_of(data, self.clock_offset));
            };
            let held = match self.ring.next() {
                Some(data) => count.order(data, monotonic_ns()) == Turn::Held,
                None => {
                    self.drained = true;
                    return Ok(Next::Idle(wall_clock()));
                }
            };
            if !held {
                return Ok(next_of(self.ring.current(), self.clock_offset));
            }
        }
    }
    fn stats(&mut self) -> Option<CaptureStats> {
        let lost = self.drops.get(&0, 0).ok()?;
        let mut kernel_count = KernelCountStats::default();
        if let Some(count) = &self.count {
            kernel_count = count.stats();
            let refused = self.count_stats.as_ref().and_then(|m| m.get(&0, 0).ok());
            kernel_count.flows_refused = refused.map_or(0, |n| n.iter().sum());
        }
        Some(CaptureStats {
            kernel_drops: lost.iter().sum(),
            kernel_count,
            ..CaptureStats::default()
        })
    }

    fn batch(&self) -> usize {
        BATCH
    }

    fn wants_arm(&self) -> bool {
        self.count.as_ref().is_some_and(KernelCount::wants_arm)
    }

    fn arm(&mut self, arm: &Arm) {
        if let Some(count) = &mut self.count {
            count.arm(arm);
        }
    }
}

/// What a record from the ring is: a run, or a segment's frame.
/// `clock_offset` turns the kernel's times into capture time.
pub(super) fn next_of(data: &[u8], clock_offset: i64) -> Next<'_> {
    if is_run_record(data) {
        return Next::Run(KernelRun { data, clock_offset });
    }
    let (ts, wire_len, gso_size) = match record_meta(data) {
        Some(m) => (
            (m.monotonic_ns as i64).saturating_add(clock_offset) as Nanos,
            m.l3_len,
            m.gso_size,
        ),
        // A record of another size (a program out of step with this
        // reader): decode counts it.
        None => (wall_clock(), data.len() as u32, 0),
    };
    Next::Frame(Frame {
        ts,
        data,
        wire_len,
        gso_size,
    })
}

fn program<'a>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut aya::programs::Program, String> {
    ebpf.program_mut(name)
        .ok_or_else(|| format!("the eBPF object has no program {name}"))
}

/// Attaches in the mode asked for. `Auto` tries native XDP first, then
/// generic, on interfaces backed by a device; virtual ones (veth, bridges,
/// loopback) get generic: native XDP on a veth takes TSO/GSO away from its
/// peer and caps the peer's MTU, and a passive observer must not change how
/// a pod sends. Says which mode it got.
fn attach_xdp(
    xdp: &mut Xdp,
    ifindex: u32,
    want: XdpAttach,
    virtual_if: bool,
) -> Result<XdpAttach, ProgramError> {
    let mut attach = |mode: XdpMode| xdp.attach_to_if_index(ifindex, mode).map(|_| ());
    match want {
        XdpAttach::Native => attach(XdpMode::Driver).map(|_| want),
        XdpAttach::Generic => attach(XdpMode::Skb).map(|_| want),
        XdpAttach::Auto if virtual_if => attach(XdpMode::Skb).map(|_| XdpAttach::Generic),
        XdpAttach::Auto => match attach(XdpMode::Driver) {
            Ok(()) => Ok(XdpAttach::Native),
            Err(_) => attach(XdpMode::Skb).map(|_| XdpAttach::Generic),
        },
    }
}

/// Attaches the egress program first in the interface's TCX chain (kernel
/// 6.6 and later: a bpf link, gone with the process), so that no other
/// program's verdict hides a packet from it; on older kernels, as a clsact
/// filter through netlink (which aya removes on a clean exit only).
fn attach_egress(tc: &mut SchedClassifier, name: &str) -> Result<(), ProgramError> {
    let tcx = tc.attach_with_options(
        name,
        TcAttachType::Egress,
        TcAttachOptions::TcxOrder(LinkOrder::first()),
    );
    if tcx.is_ok() {
        return Ok(());
    }
    // An existing clsact qdisc is fine.
    let _ = tc::qdisc_add_clsact(name);
    tc.attach_with_options(
        name,
        TcAttachType::Egress,
        TcAttachOptions::Netlink(NlOptions::default()),
    )
    .map(|_| ())
}

/// What to do about an error, by the OS error under it: privileges for
/// EPERM/EACCES, the mode for EOPNOTSUPP (a driver without native XDP),
/// memory for ENOMEM (the ring buffer is charged to the memory cgroup).
fn hint_for(e: &(dyn std::error::Error + 'static)) -> &'static str {
    let mut cause = Some(e);
    while let Some(c) = cause {
        if let Some(io) = c.downcast_ref::<std::io::Error>() {
            return match io.raw_os_error() {
                Some(libc::EPERM | libc::EACCES) => PRIVILEGE_HINT,
                Some(libc::EOPNOTSUPP) => {
                    "; the driver has no native XDP: use --xdp-mode auto or generic"
                }
                Some(libc::ENOMEM) => {
                    "; out of memory: a smaller --xdp-ring-size, or a higher memory limit"
                }
                _ => "",
            };
        }
        cause = c.source();
    }
    ""
}

/// A load failure with the end of the verifier's log, where it says why.
fn describe_load(program: &str, e: &ProgramError) -> String {
    match e {
        ProgramError::LoadError {
            io_error,
            verifier_log,
        } => {
            let log = verifier_log.to_string();
            let tail: Vec<&str> = log.lines().rev().take(8).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            if tail.is_empty() {
                format!("the kernel refused program {program}: {io_error}")
            } else {
                format!(
                    "the kernel refused program {program}: {io_error}; verifier: {}",
                    tail.join(" | ")
                )
            }
        }
        other => format!("cannot load program {program}: {other}"),
    }
}

/// An XDP program found on an interface before ours.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttachedXdp {
    pub prog_id: u32,
    /// "native", "generic", "offloaded" or "several".
    pub mode: &'static str,
}

fn describe_attached(name: &str, attached: &AttachedXdp) -> String {
    let program = aya::programs::loaded_programs()
        .filter_map(Result::ok)
        .find(|p| p.id() == attached.prog_id)
        .and_then(|p| p.name_as_str().map(str::to_string));
    let whose = match program.as_deref() {
        Some(own @ (XDP_PROGRAM | XDP_COUNT_PROGRAM)) => format!(
            "{own} (id {}), tcp-exporter's own: in use by another tcp-exporter, or \
             left behind by one that did not exit cleanly (attached without a bpf link)",
            attached.prog_id
        ),
        Some(other) => format!("{other} (id {})", attached.prog_id),
        None => format!("id {}", attached.prog_id),
    };
    let off = match attached.mode {
        "generic" => "xdpgeneric off",
        "native" => "xdpdrv off",
        "offloaded" => "xdpoffload off",
        _ => "xdp off",
    };
    format!(
        "an XDP program is already attached in {} mode: {whose}. An interface runs one \
         XDP program at a time: if nothing needs it, remove it with \
         `ip link set dev {name} {off}`; or capture this interface with --backend af-packet",
        attached.mode
    )
}

fn if_index(name: &str) -> Option<u32> {
    let c = CString::new(name).ok()?;
    // SAFETY: a valid NUL-terminated string.
    let index = unsafe { libc::if_nametoindex(c.as_ptr()) };
    (index != 0).then_some(index)
}

/// Whether no device backs the interface (veth, bridge, loopback, ...).
fn is_virtual(name: &str) -> bool {
    !std::path::Path::new(&format!("/sys/class/net/{name}/device")).exists()
}

/// CLOCK_REALTIME minus CLOCK_MONOTONIC, now.
fn clock_offset() -> i64 {
    clock_ns(libc::CLOCK_REALTIME) - clock_ns(libc::CLOCK_MONOTONIC)
}

/// The time on `clock`, in nanoseconds.
fn clock_ns(clock: libc::clockid_t) -> i64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid timespec to write into.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    // time_t and c_long are narrower than i64 on 32-bit targets.
    #[allow(clippy::useless_conversion)]
    let (sec, nsec) = (i64::from(ts.tv_sec), i64::from(ts.tv_nsec));
    sec * 1_000_000_000 + nsec
}

/// CLOCK_MONOTONIC, the kernel programs' clock, in nanoseconds.
fn monotonic_ns() -> u64 {
    clock_ns(libc::CLOCK_MONOTONIC) as u64
}

/// Route netlink: the XDP program attached to an interface, if any
/// (`IFLA_XDP` of RTM_GETLINK), whether through a link or not.
fn attached_xdp(ifindex: u32) -> std::io::Result<Option<AttachedXdp>> {
    let (kind, body) = Netlink::open()?.get(RTM_GETLINK, &netlink::ifinfomsg(ifindex))?;
    if kind != RTM_NEWLINK {
        return Err(std::io::Error::other(format!(
            "unexpected netlink message type {kind}"
        )));
    }
    Ok(parse_link_xdp(&body))
}

const IFLA_XDP: u16 = 43;
const IFLA_XDP_ATTACHED: u16 = 2;
const IFLA_XDP_PROG_ID: u16 = 4;
const IFLA_XDP_DRV_PROG_ID: u16 = 5;
const IFLA_XDP_SKB_PROG_ID: u16 = 6;
const IFLA_XDP_HW_PROG_ID: u16 = 7;

/// Reads IFLA_XDP out of an RTM_NEWLINK message's body.
fn parse_link_xdp(body: &[u8]) -> Option<AttachedXdp> {
    let attrs = body.get(netlink::IFINFOMSG..)?;
    let (_, xdp) = Attributes(attrs).find(|(t, _)| *t == IFLA_XDP)?;
    let mut mode = 0u8;
    let mut prog_id = 0u32;
    for (t, value) in Attributes(xdp) {
        match t {
            IFLA_XDP_ATTACHED => mode = value.first().copied().unwrap_or(0),
            IFLA_XDP_PROG_ID | IFLA_XDP_DRV_PROG_ID | IFLA_XDP_SKB_PROG_ID
            | IFLA_XDP_HW_PROG_ID
                if prog_id == 0 =>
            {
                prog_id = value
                    .get(..4)
                    .map_or(0, |v| u32::from_ne_bytes([v[0], v[1], v[2], v[3]]))
            }
            _ => {}
        }
    }
    let mode = match mode {
        0 => return None,
        1 => "native",
        2 => "generic",
        3 => "offloaded",
        _ => "several",
    };
    Some(AttachedXdp { prog_id, mode })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::DecodeErrorKind;

    fn attr(kind: u16, value: &[u8]) -> Vec<u8> {
        let mut a = Vec::new();
        netlink::push_attribute(&mut a, kind, value);
        a
    }

    /// An RTM_NEWLINK body: an ifinfomsg, then `attrs`.
    fn link(attrs: &[u8]) -> Vec<u8> {
        let mut m = netlink::ifinfomsg(3).to_vec();
        m.extend_from_slice(attrs);
        m
    }

    #[test]
    fn getlink_reply_names_the_attached_program_and_mode() {
        let mut nested = attr(IFLA_XDP_ATTACHED, &[2]);
        nested.extend(attr(IFLA_XDP_PROG_ID, &77u32.to_ne_bytes()));
        let mut attrs = attr(3, b"veth0\0"); // IFLA_IFNAME first
        attrs.extend(attr(IFLA_XDP | 0x8000, &nested)); // NLA_F_NESTED
        assert_eq!(
            parse_link_xdp(&link(&attrs)),
            Some(AttachedXdp {
                prog_id: 77,
                mode: "generic"
            })
        );
    }

    #[test]
    fn getlink_reply_without_a_program_is_none() {
        let attrs = attr(IFLA_XDP, &attr(IFLA_XDP_ATTACHED, &[0]));
        assert_eq!(parse_link_xdp(&link(&attrs)), None);
        assert_eq!(parse_link_xdp(&link(&attr(3, b"lo\0"))), None);
    }

    #[test]
    fn getlink_garbage_is_no_program_not_a_panic() {
        for n in 0..40 {
            assert_eq!(parse_link_xdp(&vec![0xff; n]), None);
        }
    }

    /// Runs a program once on `frame` (BPF_PROG_TEST_RUN); checks that it
    /// returned `verdict`. False when the kernel would not run it: for a TC
    /// program it refuses IP frames shorter than their IP header, which no
    /// interface would hand it.
    fn test_run(prog_fd: i32, frame: &[u8], verdict: u32) -> bool {
        // union bpf_attr's `test` member: prog_fd, retval, data_size_in,
        // data_size_out, data_in, data_out, repeat, duration, ... (80 bytes).
        let mut attr = [0u64; 10];
        attr[0] = prog_fd as u32 as u64;
        attr[1] = frame.len() as u64;
        attr[2] = frame.as_ptr() as u64;
        attr[4] = 1; // repeat
        const BPF_PROG_TEST_RUN: libc::c_long = 10;
        // SAFETY: a valid attr of the size passed; the kernel reads
        // `frame.len()` bytes from `frame` and writes only into attr.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                BPF_PROG_TEST_RUN,
                attr.as_mut_ptr(),
                std::mem::size_of_val(&attr),
            )
        };
        let error = std::io::Error::last_os_error();
        if rc != 0
            && verdict != 2
            && frame.len() < 14 + 40
            && error.raw_os_error() == Some(libc::EINVAL)
        {
            return false;
        }
        assert_eq!(
            rc,
            0,
            "BPF_PROG_TEST_RUN on {} bytes ({:02x?}...): {error}",
            frame.len(),
            &frame[..frame.len().min(20)],
        );
        assert_eq!(attr[0] >> 32, verdict as u64, "the program's verdict");
        true
    }

    /// Frames for the comparison: the decoder's fixtures, every TCP frame
    /// of the Ethernet test captures, and many mutations of both.
    fn comparison_frames() -> Vec<Vec<u8>> {
        use crate::decode::fixtures::*;
        let syn = syn_with_options();
        let ipopt = TcpSpec {
            ip_options: 8,
            ..TcpSpec::default()
        };
        let mut frames = vec![
            eth_ipv4_tcp(&TcpSpec::default()),
            eth_ipv4_tcp(&syn),
            eth_ipv4_tcp(&ipopt),
            eth_ipv6_tcp(&TcpSpec::default(), &[]),
            eth_ipv6_tcp(&syn, &[(0, 8), (60, 16), (43, 24)]),
            eth_ipv6_tcp(&syn, &[(44, 8)]),
            eth_ipv6_tcp(&TcpSpec::default(), &[(0, 8); 9]),
            with_vlan_tags(&eth_ipv4_tcp(&syn), &[0x8100]),
            with_vlan_tags(&eth_ipv6_tcp(&syn, &[]), &[0x88a8, 0x8100]),
            with_vlan_tags(&eth_ipv4_tcp(&syn), &[0x8100; 5]),
        ];
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/pcaps");
        for name in [
            "bulk_loss.pcap",
            "ipv6.pcap",
            "refused_aborted.pcap",
            "vlan.pcap",
        ] {
            let mut file = crate::capture::PcapFile::open(&dir.join(name), "").unwrap();
            assert_eq!(file.link_type(), LinkType::Ethernet, "{name}");
            while let Ok(Next::Frame(f)) = file.next() {
                if f.data.len() as u32 == f.wire_len {
                    frames.push(f.data.to_vec());
                }
            }
        }
        let mut rng = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || crate::decode::fixtures::xorshift(&mut rng);
        let originals = frames.len();
        for i in 0..20_000 {
            let mut f = frames[i % originals].clone();
            for _ in 0..1 + next() % 3 {
                // Mostly the headers: the first 80 bytes.
                let at = (next() % f.len().min(80) as u64) as usize;
                f[at] = next() as u8;
            }
            if next() % 4 == 0 {
                let cut = 14 + (next() as usize) % (f.len() - 13);
                f.truncate(cut);
            }
            frames.push(f);
        }
        frames
    }

    /// Whether the frame is IPv4 or IPv6 (without extension headers) of
    /// an overlay's protocol: IP in IP, GRE, or UDP to port 4789, 8472 or
    /// 6081.
    fn is_overlay(frame: &[u8]) -> bool {
        let mut at = 12;
        while matches!(
            frame.get(at..at + 2),
            Some([0x81, 0x00] | [0x88, 0xa8] | [0x91, 0x00])
        ) {
            at += 4;
        }
        let l3 = frame.get(at + 2..).unwrap_or(&[]);
        let (protocol, l4) = match frame.get(at..at + 2) {
            Some([0x08, 0x00]) => {
                // A whole header, and no fragment.
                let ihl = l3.first().map_or(0, |b| (b & 0x0f) as usize * 4);
                let fragment = l3
                    .get(6..8)
                    .is_none_or(|f| u16::from_be_bytes([f[0], f[1]]) & 0x3fff != 0);
                if ihl < 20 || l3.len() < 20 || fragment {
                    return false;
                }
                (l3.get(9).copied(), l3.get(ihl..))
            }
            Some([0x86, 0xdd]) => {
                // Through the extension headers, as the program follows them.
                let (mut next, mut at) = (l3.get(6).copied(), 40);
                for _ in 0..=8 {
                    let (Some(n), Some(h)) = (next, l3.get(at..at + 2)) else {
                        break;
                    };
                    let len = match n {
                        0 | 43 | 60 | 135 | 139 | 140 => (h[1] as usize + 1) * 8,
                        44 => 8,
                        51 => (h[1] as usize + 2) * 4,
                        _ => break,
                    };
                    next = Some(h[0]);
                    at += len;
                }
                (next, l3.get(at..))
            }
            _ => (None, None),
        };
        let port = l4
            .and_then(|u| u.get(2..4))
            .map(|p| u16::from_be_bytes([p[0], p[1]]));
        match protocol {
            Some(4 | 41 | 47) => true,
            Some(17) => matches!(port, Some(4789 | 8472 | 6081)),
            _ => false,
        }
    }

    /// Whether the frame's IP header says TCP follows (directly, or for
    /// IPv6 possibly after extension headers).
    fn claims_tcp(frame: &[u8]) -> bool {
        let mut at = 12;
        let mut tags = 0;
        while matches!(
            frame.get(at..at + 2),
            Some([0x81, 0x00] | [0x88, 0xa8] | [0x91, 0x00])
        ) {
            at += 4;
            tags += 1;
        }
        if tags > 4 {
            return false;
        }
        let l3 = frame.get(at + 2..).unwrap_or(&[]);
        match frame.get(at..at + 2) {
            Some([0x08, 0x00]) => l3.get(9) == Some(&6),
            Some([0x86, 0xdd]) => {
                matches!(l3.get(6), Some(6 | 0 | 43 | 44 | 51 | 60 | 135 | 139 | 140))
            }
            _ => false,
        }
    }

    #[test]
    fn the_kernel_program_summarises_frames_as_the_decoder_decodes_them() {
        // A differential test of bpf/tcpx.bpf.c: each program (XDP, TC)
        // runs on each frame through BPF_PROG_TEST_RUN, its record is
        // decoded, and the result must be what the frame decoder makes of
        // the frame.
        if crate::test_support::skip_bpf_tests() {
            return;
        }
        let ring_bytes = 4 << 20;
        let mut ebpf = EbpfLoader::new()
            .map_max_entries(EVENTS_MAP, ring_bytes)
            .load(OBJECT)
            .unwrap();
        let xdp: &mut Xdp = ebpf.program_mut(XDP_PROGRAM).unwrap().try_into().unwrap();
        xdp.load().unwrap();
        let xdp_fd = xdp.fd().unwrap().as_fd().as_raw_fd();
        let tc: &mut SchedClassifier = ebpf.program_mut(TC_PROGRAM).unwrap().try_into().unwrap();
        tc.load().unwrap();
        let tc_fd = tc.fd().unwrap().as_fd().as_raw_fd();
        // XDP_PASS; TC_ACT_UNSPEC (-1).
        let programs = [(xdp_fd, 2u32), (tc_fd, u32::MAX)];
        let events = match ebpf.take_map(EVENTS_MAP) {
            Some(Map::RingBuf(data)) => data,
            _ => panic!("no ring buffer"),
        };
        let mut ring = BpfRing::map(events.fd().as_fd(), ring_bytes as usize).unwrap();

        let (mut compared, mut ok, mut refused) = (0, 0, 0);
        for (frame, (prog_fd, verdict)) in comparison_frames()
            .into_iter()
            .flat_map(|f| programs.map(|p| (f.clone(), p)))
        {
            let want = crate::decode::decode(LinkType::Ethernet, &frame, frame.len() as u32);
            if !test_run(prog_fd, &frame, verdict) {
                continue;
            }
            let record = ring.has_record().then(|| ring.next().unwrap().to_vec());
            assert!(!ring.has_record(), "one record per frame at most");
            let got = record
                .as_deref()
                .map(|r| crate::decode::decode(LinkType::KernelSummary, r, 0));
            compared += 1;
            match (&want, got) {
                // An overlay: the decoder opens it (or finds it broken
                // inside), the program only says it is one.
                (_, Some(Err(e))) if e.kind == DecodeErrorKind::UnopenedTunnel => {
                    refused += 1;
                    assert!(
                        is_overlay(&frame),
                        "unopened_tunnel for a frame that is no overlay: {:02x?}",
                        &frame[..frame.len().min(96)]
                    );
                }
                (Ok(seg), Some(Ok(from_record))) => {
                    ok += 1;
                    assert_eq!(
                        &from_record,
                        seg,
                        "frame {:02x?}",
                        &frame[..frame.len().min(96)]
                    );
                }
                (Err(e), Some(Err(from_record))) => {
                    refused += 1;
                    assert_eq!(
                        from_record.kind,
                        e.kind,
                        "frame {:02x?}",
                        &frame[..frame.len().min(96)]
                    );
                }
                // Only TCP is reported: no record for what is not, or
                // cannot be seen to be, TCP (docs/analysis.md).
                (Err(e), None) => assert!(
                    !claims_tcp(&frame)
                        || matches!(
                            e.kind,
                            DecodeErrorKind::NotIp
                                | DecodeErrorKind::NotTcp
                                | DecodeErrorKind::TruncatedLink
                                | DecodeErrorKind::TruncatedIp
                                | DecodeErrorKind::BadIpVersion
                                | DecodeErrorKind::IpFragment
                        ),
                    "no record for a frame the decoder refuses with {e}: {:02x?}",
                    &frame[..frame.len().min(96)]
                ),
                (want, got) => panic!(
                    "decoder: {want:?}, program: {got:?}, frame {:02x?}",
                    &frame[..frame.len().min(96)]
                ),
            }
        }
        assert!(
            ok > 5_000 && refused > 100,
            "{compared} frames: {ok} segments, {refused} refused alike"
        );
    }

    #[test]
    fn the_kernel_answers_for_loopback() {
        // Loopback exists everywhere and never has an XDP program here.
        let lo = if_index("lo").expect("lo");
        assert_eq!(attached_xdp(lo).unwrap(), None);
    }
}
