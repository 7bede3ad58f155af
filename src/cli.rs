//! Command-line flags as typed (clap). `config` validates them into a
//! `Config`; nothing else reads these.

use std::net::IpAddr;
use std::path::PathBuf;

use clap::Parser;

use crate::capture::af_packet::{
    DEFAULT_BLOCK_COUNT, DEFAULT_BLOCK_SIZE, DEFAULT_BLOCK_TIMEOUT_MS,
};
use crate::flow::{DEFAULT_IDLE_TIMEOUT_SECS, DEFAULT_MAX_FLOWS};
use crate::metrics::DEFAULT_MAX_SERIES;

/// Watches TCP traffic passively, analyses each connection the way
/// Wireshark does, and serves the results as Prometheus metrics.
///
/// Examples:
///   tcp-exporter -i eth0 -p 9090            capture on eth0, serve :9090/metrics
///   tcp-exporter -r capture.pcap --print    analyse a file, print the metrics
#[derive(Parser, Debug)]
#[command(name = "tcp-exporter", version, verbatim_doc_comment)]
pub struct Args {
    /// Interface to capture on; repeat for several. `any` captures on all
    /// interfaces (Linux cooked capture). Default: `any` unless -r is given.
    #[arg(short = 'i', long = "interface", value_name = "IFACE")]
    pub interfaces: Vec<String>,

    /// TCP port for the HTTP server (/metrics, /healthz, /readyz).
    #[arg(short = 'p', long, default_value_t = 9090)]
    pub port: u16,

    /// Address the HTTP server listens on.
    #[arg(long, value_name = "ADDR", default_value = "0.0.0.0")]
    pub listen: IpAddr,

    /// BPF capture filter (libpcap syntax). Live interfaces default to
    /// `tcp`, applied in the kernel. Files read with -r are filtered only
    /// when -f is given: every frame of a file is accounted for, and what is
    /// not TCP shows in tcp_exporter_decode_errors_total.
    #[arg(short = 'f', long, value_name = "EXPR")]
    pub filter: Option<String>,

    /// Read a pcap or pcapng file instead of capturing. Without --print the
    /// final metrics are served over HTTP until the exporter is stopped.
    #[arg(
        short = 'r',
        long = "read",
        value_name = "FILE",
        conflicts_with = "interfaces"
    )]
    pub read: Option<PathBuf>,

    /// With -r: analyse the whole file, print the metrics in Prometheus text
    /// format to stdout, and exit.
    #[arg(long, requires = "read")]
    pub print: bool,

    /// Bytes captured of each frame. Only headers are needed: the default
    /// holds Ethernet with two VLAN tags, IPv4 or IPv6 with options or
    /// extension headers, and a TCP header with full options.
    #[arg(long, value_name = "BYTES", default_value_t = 192)]
    pub snaplen: u32,

    /// Most connections tracked at once per interface. When full, the least
    /// recently active flow is evicted (counted in
    /// tcp_exporter_flow_evictions_total{reason="table_full"}). About 270
    /// bytes of memory each, used only as flows come.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_FLOWS)]
    pub max_flows: usize,

    /// Seconds without a segment, on the capture clock, after which a
    /// connection is dropped (counted as closed with reason="timeout", or
    /// failed with reason="unanswered" if its SYN was never answered).
    #[arg(long, value_name = "SECONDS", default_value_t = DEFAULT_IDLE_TIMEOUT_SECS)]
    pub flow_idle_timeout: u64,

    /// Most (client, server, server_port) label sets per interface; new ones
    /// beyond it are counted under client="other", server="other" and in
    /// tcp_exporter_series_overflow_total.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_SERIES)]
    pub max_series: usize,

    /// Put live interfaces in promiscuous mode (for mirror ports; a node's
    /// own and its pods' traffic is seen without it).
    #[arg(long)]
    pub promisc: bool,

    /// Kernel capture buffer per interface, in MiB (pcap backend).
    #[arg(long, value_name = "MIB", default_value_t = 8)]
    pub buffer_size: u32,

    /// Capture backend: `pcap` (libpcap, portable), `af-packet` (Linux
    /// TPACKET_V3 rings, one per worker thread, joined by PACKET_FANOUT), or
    /// `xdp` (eBPF programs on XDP ingress and TC egress summarise headers
    /// in the kernel; needs a build with `--features xdp`, named Ethernet
    /// or loopback interfaces, and no -f).
    #[arg(long, value_enum, default_value_t = BackendArg::Pcap)]
    pub backend: BackendArg,

    /// af-packet: worker threads (each with its own socket, ring, flow
    /// table and counters) per interface. Default: the number of cores.
    #[arg(long, value_name = "N")]
    pub workers: Option<usize>,

    /// af-packet: ring block size in KiB (a multiple of the page size).
    #[arg(long, value_name = "KIB", default_value_t = DEFAULT_BLOCK_SIZE / 1024)]
    pub ring_block_size: u32,

    /// af-packet: ring blocks per worker.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_BLOCK_COUNT)]
    pub ring_blocks: u32,

    /// af-packet: milliseconds after which the kernel hands over a block
    /// that is not full.
    #[arg(long, value_name = "MS", default_value_t = DEFAULT_BLOCK_TIMEOUT_MS)]
    pub ring_timeout: u32,

    /// xdp: how the XDP program attaches: `auto` (native where the driver
    /// supports it, else generic; always generic on virtual interfaces such
    /// as veth, where native XDP would turn off the peer's TSO/GSO),
    /// `native`, or `generic`.
    #[arg(long, value_enum, value_name = "MODE")]
    pub xdp_mode: Option<XdpModeArg>,

    /// xdp: BPF ring buffer per interface, in MiB (a power of two, 4 to
    /// 1024; default 16, about 120,000 records). Records that find it full
    /// are counted as kernel drops. The kernel charges it to the process's
    /// memory cgroup.
    #[arg(long, value_name = "MIB")]
    pub xdp_ring_size: Option<u32>,
}

/// `--xdp-mode` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum XdpModeArg {
    Auto,
    Native,
    Generic,
}

/// `--backend` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum BackendArg {
    Pcap,
    AfPacket,
    Xdp,
}
