//! Linux AF_PACKET capture: a TPACKET_V3 memory-mapped receive ring per
//! socket, written directly on libc. Sockets of one interface join one
//! PACKET_FANOUT hash group, so each worker thread owns a socket, its ring,
//! and (above this layer) its flow table and counters; the kernel's flow
//! hash is symmetric, so both directions of a connection reach one worker.
//!
//! On an Ethernet (or loopback) interface, sockets are SOCK_RAW with
//! PACKET_VNET_HDR: each frame comes with the kernel's virtio-net header, so
//! a segmentation-offload super-packet (GRO on receive, TSO/GSO on send)
//! says how many wire segments it stands for. On `-i any` and other link
//! types, sockets are SOCK_DGRAM: frames start at the network header (the
//! kernel allows no virtio-net header there), and a super-packet counts as
//! one segment, as it does for libpcap and tcpdump. The BPF filter is
//! compiled by libpcap for the frames' link type and attached to each
//! socket, with a plain TCP segment's accept length cut at the end of its
//! TCP header and every other frame's at the snap length
//! (capture::socket_filter), so the kernel copies only headers into the
//! ring.

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicU32, Ordering};

use super::prefetch::Frontier;
use super::ring::{self, PACKET_OUTGOING, TP_STATUS_KERNEL, TP_STATUS_USER};
use super::socket_filter::compile_filter;
use super::{
    hardware_type, wall_clock, CaptureError, CaptureStats, Frame, Next, PacketSource,
    PERMISSION_HINT,
};
use crate::decode::LinkType;
use crate::flow::Nanos;

/// Default ring geometry: 16 blocks of 1 MiB per worker. A frame kept to
/// the default snap length takes about 288 bytes of ring, a TCP data
/// segment kept to its headers about 160, so a ring holds about 60,000
/// packets (60 ms of a 1 Mpps burst), or about 100,000 data segments.
pub const DEFAULT_BLOCK_SIZE: u32 = 1 << 20;
pub const DEFAULT_BLOCK_COUNT: u32 = 16;
/// The kernel hands a block over when full or after this many ms.
pub const DEFAULT_BLOCK_TIMEOUT_MS: u32 = 50;

/// How to build each socket's ring.
#[derive(Clone, Debug)]
pub struct AfPacketOptions {
    pub snaplen: u32,
    /// BPF expression; empty for none.
    pub filter: String,
    pub block_size: u32,
    pub block_count: u32,
    pub block_timeout_ms: u32,
    /// How long `next` waits in poll(2) before reporting `Next::Idle`.
    pub read_timeout_ms: u32,
}

/// Where the reader is inside the block it holds.
#[derive(Clone, Copy, Debug)]
struct Cursor {
    remaining: u32,
    offset: usize,
    /// Where the block's packets end, and how far ahead of the reader
    /// their lines have been asked for.
    end: usize,
    frontier: Frontier,
}

pub struct AfPacket {
    name: String,
    fd: OwnedFd,
    ring: *mut u8,
    ring_len: usize,
    block_size: usize,
    block_count: usize,
    current: usize,
    cursor: Option<Cursor>,
    read_timeout_ms: i32,
    /// Frames are Ethernet with a virtio-net header before each (SOCK_RAW),
    /// or start at the IP header (SOCK_DGRAM).
    link: LinkType,
    vnet: bool,
    /// The last call found no block ready and said so: this one waits.
    drained: bool,
    /// The loopback interface's index: what this host sends on it is seen
    /// twice (out and in), so the outgoing copy is skipped, as libpcap does.
    loopback: i32,
    stats: CaptureStats,
}

// SAFETY: the mapping is owned by this value alone (no copies of the pointer
// escape except borrowed frames tied to `&mut self`); moving it to the
// capture thread that then uses it exclusively is sound.
unsafe impl Send for AfPacket {}

const ETH_P_ALL: u16 = 0x0003;
/// ARPHRD_ETHER and ARPHRD_LOOPBACK (whose frames carry an Ethernet header).
const ARPHRD_ETHER: u32 = 1;
const ARPHRD_LOOPBACK: u32 = 772;

fn os_error(what: &str, step: &str) -> CaptureError {
    let err = std::io::Error::last_os_error();
    let hint = if err.raw_os_error() == Some(libc::EPERM) {
        PERMISSION_HINT
    } else {
        ""
    };
    CaptureError::Open {
        what: what.to_string(),
        message: format!("{step}: {err}"),
        hint,
    }
}

fn setsockopt<T>(fd: &OwnedFd, level: i32, name: i32, value: &T) -> bool {
    // SAFETY: `value` is a live, properly sized value for this option.
    unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            value as *const T as *const libc::c_void,
            std::mem::size_of::<T>() as libc::socklen_t,
        ) == 0
    }
}

impl AfPacket {
    /// Opens one socket with its ring on `interface` (`any` for all), joined
    /// to fanout group `group` when given.
    pub fn open(
        interface: &str,
        opts: &AfPacketOptions,
        group: Option<u16>,
    ) -> Result<AfPacket, CaptureError> {
        let ifindex = if interface == "any" {
            0
        } else {
            let name = CString::new(interface).map_err(|_| CaptureError::Open {
                what: interface.to_string(),
                message: "interface name holds a NUL byte".into(),
                hint: "",
            })?;
            // SAFETY: a valid NUL-terminated string.
            match unsafe { libc::if_nametoindex(name.as_ptr()) } {
                0 => return Err(os_error(interface, "no such interface")),
                i => i as i32,
            }
        };
        let ethernet = interface != "any"
            && matches!(
                hardware_type(interface),
                Some(ARPHRD_ETHER | ARPHRD_LOOPBACK)
            );
        let kind = if ethernet {
            libc::SOCK_RAW
        } else {
            libc::SOCK_DGRAM
        };
        // Protocol 0: the socket receives nothing until `bind` names the
        // interface and ETH_P_ALL. Opened with ETH_P_ALL, it would take
        // every interface's frames into its ring until then (a live test
        // saw loopback packets counted on a veth).
        // SAFETY: plain socket(2); the result is checked before use.
        let raw = unsafe { libc::socket(libc::AF_PACKET, kind, 0) };
        if raw < 0 {
            return Err(os_error(interface, "socket(AF_PACKET)"));
        }
        // SAFETY: `raw` is a fresh descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        if !setsockopt(
            &fd,
            libc::SOL_PACKET,
            libc::PACKET_VERSION,
            &(libc::tpacket_versions::TPACKET_V3 as i32),
        ) {
            return Err(os_error(interface, "PACKET_VERSION TPACKET_V3"));
        }
        // Must come before the ring. A kernel that refuses it still
        // captures; super-packets then count as one segment.
        let vnet = ethernet && setsockopt(&fd, libc::SOL_PACKET, libc::PACKET_VNET_HDR, &1i32);
        let link = if ethernet {
            LinkType::Ethernet
        } else {
            LinkType::RawIp
        };
        let mut program = compile_filter(&opts.filter, opts.snaplen, link)?;
        let fprog = libc::sock_fprog {
            len: program.len() as u16,
            filter: program.as_mut_ptr(),
        };
        if !setsockopt(&fd, libc::SOL_SOCKET, libc::SO_ATTACH_FILTER, &fprog) {
            return Err(os_error(interface, "SO_ATTACH_FILTER"));
        }
        let frame_size = 2048u32;
        let req = libc::tpacket_req3 {
            tp_block_size: opts.block_size,
            tp_block_nr: opts.block_count,
            tp_frame_size: frame_size,
            tp_frame_nr: opts.block_size / frame_size * opts.block_count,
            tp_retire_blk_tov: opts.block_timeout_ms,
            tp_sizeof_priv: 0,
            tp_feature_req_word: 0,
        };
        if !setsockopt(&fd, libc::SOL_PACKET, libc::PACKET_RX_RING, &req) {
            return Err(os_error(interface, "PACKET_RX_RING (ring geometry)"));
        }
        let ring_len = opts.block_size as usize * opts.block_count as usize;
        // SAFETY: maps the ring the kernel just made for this socket.
        let ring = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                ring_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_POPULATE,
                fd.as_raw_fd(),
                0,
            )
        };
        if ring == libc::MAP_FAILED {
            return Err(os_error(interface, "mmap of the ring"));
        }
        let source = AfPacket {
            name: interface.to_string(),
            fd,
            ring: ring as *mut u8,
            ring_len,
            block_size: opts.block_size as usize,
            block_count: opts.block_count as usize,
            current: 0,
            cursor: None,
            read_timeout_ms: opts.read_timeout_ms as i32,
            link,
            vnet,
            drained: false,
            loopback: loopback_index(),
            stats: CaptureStats::default(),
        };
        // SAFETY: zeroed sockaddr_ll is valid; fields set below.
        let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_protocol = ETH_P_ALL.to_be();
        addr.sll_ifindex = ifindex;
        // SAFETY: binds with a fully initialised sockaddr_ll of its own size.
        let bound = unsafe {
            libc::bind(
                source.fd.as_raw_fd(),
                &addr as *const libc::sockaddr_ll as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if bound != 0 {
            return Err(os_error(interface, "bind"));
        }
        if let Some(group) = group {
            let mode = libc::PACKET_FANOUT_HASH | libc::PACKET_FANOUT_FLAG_DEFRAG;
            let arg = group as u32 | (mode << 16);
            if !setsockopt(&source.fd, libc::SOL_PACKET, libc::PACKET_FANOUT, &arg) {
                return Err(os_error(interface, "PACKET_FANOUT"));
            }
        }
        Ok(source)
    }

    /// The status word of block `i`, shared with the kernel.
    fn status(&self, i: usize) -> &AtomicU32 {
        // SAFETY: block i lies inside the mapping, its status word is
        // 4-aligned (blocks are page-aligned), and the kernel accesses it
        // atomically too.
        unsafe {
            &*(self
                .ring
                .add(i * self.block_size + ring::block::BLOCK_STATUS)
                as *const AtomicU32)
        }
    }

    /// The bytes of block `i`, for as long as the caller holds `self`.
    fn block<'a>(&self, i: usize) -> &'a [u8] {
        // SAFETY: the block lies inside the mapping, which lives as long as
        // `self`; it is read only while its status says it is ours (the
        // kernel does not write it until we hand it back), and the returned
        // borrow is tied to `&mut self` by `next`'s signature.
        unsafe { std::slice::from_raw_parts(self.ring.add(i * self.block_size), self.block_size) }
    }

    fn release_current(&mut self) {
        self.status(self.current)
            .store(TP_STATUS_KERNEL, Ordering::Release);
        self.current = (self.current + 1) % self.block_count;
        self.cursor = None;
    }

    fn wait(&self) -> bool {
        let mut fds = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLIN | libc::POLLERR,
            revents: 0,
        };
        // SAFETY: one valid pollfd for the duration of the call.
        unsafe { libc::poll(&mut fds, 1, self.read_timeout_ms) > 0 }
    }
}

impl Drop for AfPacket {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping made in `open`; no borrow of it
        // can outlive `self`.
        unsafe {
            libc::munmap(self.ring as *mut libc::c_void, self.ring_len);
        }
    }
}

/// The index of `lo`, or -1 (no interface has it) when there is none.
fn loopback_index() -> i32 {
    // SAFETY: a valid NUL-terminated string.
    match unsafe { libc::if_nametoindex(c"lo".as_ptr()) } {
        0 => -1,
        i => i as i32,
    }
}

impl PacketSource for AfPacket {
    fn name(&self) -> &str {
        &self.name
    }

    fn link_type(&self) -> LinkType {
        self.link
    }

    // Inlined into the capture loop: returned through memory, the frame
    // was read back with a stalled load on every packet (perf).
    #[inline(always)]
    fn next(&mut self) -> Result<Next<'_>, CaptureError> {
        // Waiting happens only on the call after one that reported Idle, so
        // the caller can let go of its locks between the two.
        let mut may_wait = std::mem::take(&mut self.drained);
        loop {
            match self.cursor {
                Some(c) if c.remaining > 0 => {
                    let block = self.block(self.current);
                    match ring::packet_at(block, c.offset) {
                        Ok(p) => {
                            let next = c.offset + p.next_offset as usize;
                            // The kernel wrote the block from another CPU:
                            // a packet's first read was the largest stall
                            // of a live capture until asked for ahead.
                            let mut frontier = c.frontier;
                            frontier.ask(block.as_ptr(), next as u64, c.end as u64);
                            self.cursor = Some(Cursor {
                                remaining: c.remaining - 1,
                                offset: next,
                                frontier,
                                ..c
                            });
                            if p.pkttype == PACKET_OUTGOING && p.ifindex == self.loopback {
                                continue;
                            }
                            let gso_size = if self.vnet {
                                ring::vnet_gso_size(block, p.data_at)
                            } else {
                                0
                            };
                            return Ok(Next::Frame(Frame {
                                ts: p.sec as Nanos * 1_000_000_000 + p.nsec as Nanos,
                                data: p.data,
                                wire_len: p.len,
                                gso_size,
                            }));
                        }
                        Err(_) => {
                            self.stats.ring_errors += c.remaining as u64;
                            self.release_current();
                        }
                    }
                }
                Some(_) => self.release_current(),
                None => {
                    if self.status(self.current).load(Ordering::Acquire) & TP_STATUS_USER != 0 {
                        let block = self.block(self.current);
                        match ring::block_header(block) {
                            Ok(h) => {
                                let end = h.len.min(block.len());
                                let mut frontier = Frontier::default();
                                frontier.ask(block.as_ptr(), h.first as u64, end as u64);
                                self.cursor = Some(Cursor {
                                    remaining: h.num_pkts,
                                    offset: h.first,
                                    end,
                                    frontier,
                                })
                            }
                            Err(_) => {
                                self.stats.ring_errors += 1;
                                self.release_current();
                            }
                        }
                    } else if may_wait && self.wait() {
                        may_wait = false;
                    } else {
                        self.drained = true;
                        return Ok(Next::Idle(wall_clock()));
                    }
                }
            }
        }
    }

    fn stats(&mut self) -> Option<CaptureStats> {
        // SAFETY: zeroed tpacket_stats_v3 is valid; getsockopt fills it.
        let mut s: libc::tpacket_stats_v3 = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::tpacket_stats_v3>() as libc::socklen_t;
        // SAFETY: `s` and `len` are live and sized for PACKET_STATISTICS.
        let ok = unsafe {
            libc::getsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_PACKET,
                libc::PACKET_STATISTICS,
                &mut s as *mut _ as *mut libc::c_void,
                &mut len,
            )
        } == 0;
        if ok {
            // The kernel resets these on every read: add them up.
            self.stats.kernel_drops += s.tp_drops as u64;
            self.stats.ring_freezes += s.tp_freeze_q_cnt as u64;
        }
        Some(self.stats)
    }

    fn batch(&self) -> usize {
        // Frames of a retired block come without blocking.
        256
    }
}

#[cfg(test)]
mod tests {
    use super::super::socket_filter::link_of;
    use super::*;
    use crate::decode::decode;
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};

    /// In the kernel (as root): a socket on loopback keeps each data
    /// segment's headers and none of its payload (or the snap length, where
    /// that is shorter), over IPv4 and IPv6, with the cut alone and behind
    /// a user's filter, and the decoder still reads the payload's length
    /// from the IP header.
    #[test]
    fn the_kernel_keeps_a_data_segments_headers_and_not_its_payload() {
        if std::env::var("TCPX_SKIP_LIVE").as_deref() == Ok("1") {
            eprintln!("af-packet on loopback: skipped (TCPX_SKIP_LIVE=1)");
            return;
        }
        const SENT: usize = 3000;
        // At 80 bytes, IPv6 headers with timestamps (86 bytes) are cut by
        // the snap length, IPv4 ones (66) are not.
        // On `any`, frames start at the IP header (SOCK_DGRAM).
        let cases = [
            ("lo", "", 192),
            ("lo", "tcp", 192),
            ("lo", "", 80),
            ("any", "", 192),
        ];
        for ((interface, filter, snaplen), address) in cases
            .into_iter()
            .flat_map(|c| ["127.0.0.1", "::1"].map(|a| (c, a)))
        {
            let opts = AfPacketOptions {
                snaplen,
                filter: filter.into(),
                block_size: 1 << 16,
                block_count: 4,
                block_timeout_ms: 10,
                read_timeout_ms: 10,
            };
            let mut socket = AfPacket::open(interface, &opts, None).expect(
                "an AF_PACKET socket on lo (this test needs root; TCPX_SKIP_LIVE=1 skips it)",
            );
            let listener = TcpListener::bind((address, 0)).expect("a listening socket");
            let port = listener.local_addr().expect("its address").port();
            let mut client = TcpStream::connect((address, port)).expect("connects");
            let (mut server, _) = listener.accept().expect("accepts");
            client.write_all(&[7u8; SENT]).expect("writes");
            let mut got = vec![0u8; SENT];
            server.read_exact(&mut got).expect("reads");
            let (mut payload, mut frames) = (0usize, 0);
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
            let case = format!("{interface}, {address}, filter {filter:?}, snap length {snaplen}");
            let link = socket.link_type();
            let link_len = link_of(link).1;
            while payload < SENT && std::time::Instant::now() < deadline {
                let Next::Frame(frame) = socket.next().expect("reads the ring") else {
                    continue;
                };
                let Ok(seg) = decode(link, frame.data, frame.wire_len) else {
                    continue;
                };
                if seg.dst_port != port || seg.payload_len == 0 {
                    continue;
                }
                frames += 1;
                payload += seg.payload_len as usize;
                let headers = link_len + seg.ip_len - seg.payload_len;
                assert_eq!(frame.data.len() as u32, headers.min(snaplen), "{case}");
            }
            assert_eq!(payload, SENT, "{case}: payload in {frames} frames");
        }
    }
}
