//! Command-line flags as typed (clap). `config` validates them into a
//! `Config`; nothing else reads these.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::builder::TypedValueParser as _;
use clap::Parser;

use crate::capture::af_packet::{
    DEFAULT_BLOCK_COUNT, DEFAULT_BLOCK_SIZE, DEFAULT_BLOCK_TIMEOUT_MS,
};
use crate::flow::{DEFAULT_IDLE_TIMEOUT_SECS, DEFAULT_MAX_FLOWS};

/// Default `--max-interfaces`: a node's pod interfaces (the kubelet runs at
/// most 110 pods by default, 250 where raised) with room to spare.
pub const DEFAULT_MAX_INTERFACES: usize = 512;
use crate::metrics::conns::DEFAULT_MAX_LONG_CONNECTIONS;
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
    /// Interface to capture on; repeat for several; globs (`veth*`) take
    /// interfaces as they come. `any` captures on all interfaces (Linux
    /// cooked capture); `pods` on pods' interfaces as CNIs name them
    /// (cali*, lxc*, veth*, eni*, gke*, azv*); `uplink` on the interface of
    /// the default route. Default: `any` unless -r is given.
    #[arg(short = 'i', long = "interface", value_name = "IFACE")]
    pub interfaces: Vec<String>,

    /// TCP port for the HTTP server (/metrics, /healthz, /readyz).
    #[arg(short = 'p', long, default_value_t = 9090)]
    pub port: u16,

    /// Address the HTTP server listens on.
    #[arg(long, value_name = "ADDR", default_value = "0.0.0.0")]
    pub listen: IpAddr,

    /// TLS and basic authentication for the HTTP server, in the file format
    /// of the Prometheus exporter-toolkit: `tls_server_config` (cert_file,
    /// key_file, client_auth_type, client_ca_file, min/max_version),
    /// `basic_auth_users` (user: bcrypt hash), `http_server_config.headers`.
    /// Certificate files are read again when they change. /healthz and
    /// /readyz need no password. Without it: plain HTTP, no authentication.
    #[arg(long = "web.config.file", value_name = "FILE")]
    pub web_config_file: Option<std::path::PathBuf>,

    /// BPF capture filter (libpcap syntax). Live interfaces default to
    /// `tcp` and the overlays TCP travels in (IP in IP, GRE, UDP to the
    /// --vxlan-ports and --geneve-ports), applied in the kernel. Files read with -r are filtered only
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
    /// extension headers, and a TCP header with full options. With
    /// af-packet, a plain TCP segment is kept only up to the end of its
    /// TCP header.
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

    /// Most interfaces captured at once. Interfaces that match -i beyond it
    /// are not captured, and counted in
    /// tcp_exporter_interfaces_refused_total. Each costs its capture
    /// buffer (--buffer-size; af-packet: a ring per worker; xdp:
    /// --xdp-ring-size), a thread per worker and its flow table.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_INTERFACES)]
    pub max_interfaces: usize,

    /// Labels of the traffic metrics, comma-separated, from: interface,
    /// reporter, client, server, server_port, port_name, ip_family, and
    /// with --kubernetes client_namespace, client_workload,
    /// client_workload_kind, client_pod, server_namespace, server_workload,
    /// server_workload_kind, server_pod, server_service (or `none`). A label
    /// left out is summed over. Histograms never carry the client's.
    /// Default: interface,client,server,server_port; with --kubernetes
    /// reporter,client_namespace,client_workload,server_namespace,server_workload,server_service,server_port.
    #[arg(long, value_name = "LIST")]
    pub labels: Option<String>,

    /// Name both ends of each connection from the Kubernetes API: pods,
    /// workloads, Services and nodes (watched; read once per connection).
    /// In a pod the service account is used; elsewhere --kubeconfig,
    /// KUBECONFIG or ~/.kube/config. With -r, the capture is named as the
    /// cluster is now.
    #[arg(long)]
    pub kubernetes: bool,

    /// The kubeconfig file for --kubernetes.
    #[arg(long, value_name = "FILE", requires = "kubernetes")]
    pub kubeconfig: Option<std::path::PathBuf>,

    /// Also serve Istio's TCP metrics (istio_tcp_connections_opened_total,
    /// _closed_total, istio_tcp_sent_bytes_total, _received_bytes_total)
    /// with Istio's labels, as a proxy beside each pod would report them.
    #[arg(long, requires = "kubernetes")]
    pub istio_metrics: bool,

    /// The cluster's name in Istio's source_cluster and destination_cluster.
    #[arg(
        long,
        value_name = "NAME",
        default_value = crate::metrics::istio::DEFAULT_CLUSTER,
        requires = "istio_metrics"
    )]
    pub cluster_name: String,

    /// The node this exporter runs on (or a capture read with -r was taken
    /// on): with --istio-metrics, connections seen where no pod interface
    /// says whose they are (the uplink, any, a file) are reported for the
    /// pods of this node; without it, for every pod.
    #[arg(long, value_name = "NAME", env = "NODE_NAME")]
    pub node_name: Option<String>,

    /// Most label sets of the traffic metrics across the exporter (each is
    /// about 41 samples); connections with new ones beyond it are counted
    /// under client="other", server="other" and in
    /// tcp_exporter_series_overflow_total.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_SERIES)]
    pub max_series: usize,

    /// A label set whose connections have all left the flow table and
    /// that has not changed for this long (capture clock) is removed from
    /// the output, and its room under --max-series freed. E.g. 300, 90s,
    /// 5m, 1h.
    #[arg(long, value_name = "DURATION", value_parser = duration, default_value = "5m")]
    pub series_ttl: Duration,

    /// Collapse addresses before they become labels: RULE is
    /// [client:|server:]CIDR=/LENGTH (to that prefix) or
    /// [client:|server:]CIDR=NAME (to one name); the most specific CIDR
    /// wins. Repeat, or separate with commas. E.g. 0.0.0.0/0=/24,::/0=/64
    /// or 10.0.0.0/8=cluster.
    #[arg(long, value_name = "RULE")]
    pub aggregate_cidr: Vec<String>,

    /// Names of server ports for the port_name label: `istio` (Istio's
    /// well-known ports) or a YAML file of `PORT: NAME` lines. Repeat to
    /// combine; later ones win.
    #[arg(long, value_name = "istio|FILE")]
    pub port_names: Vec<String>,

    /// UDP destination ports whose datagrams are VXLAN (an Ethernet frame
    /// inside, whose TCP is analysed). Comma-separated, at most 8; empty
    /// for none.
    #[arg(long, value_name = "PORTS", default_value = "4789,8472")]
    pub vxlan_ports: String,

    /// UDP destination ports whose datagrams are Geneve. Comma-separated,
    /// at most 8; empty for none.
    #[arg(long, value_name = "PORTS", default_value = "6081")]
    pub geneve_ports: String,

    /// Give connections older than this their own series
    /// (tcp_long_connection_*: client, client_port, server, server_port,
    /// interface; with --kubernetes both ends' identity too) while they
    /// stay open. E.g. 30s. Off by default.
    #[arg(long, value_name = "AGE", value_parser = duration)]
    pub long_connections: Option<Duration>,

    /// Most connections shown with --long-connections series at once; more
    /// are counted in tcp_exporter_long_connections_overflow_total.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_LONG_CONNECTIONS)]
    pub max_long_connections: usize,

    /// Write a JSON line per connection event to PATH (appended), or to
    /// standard output with `-`: when it opens, every --flow-log-interval
    /// while open, and when it closes.
    #[arg(long, value_name = "PATH|-")]
    pub flow_log: Option<PathBuf>,

    /// How often (capture clock) an open connection gets a flow-log record.
    #[arg(long, value_name = "DURATION", value_parser = duration, default_value = "5s")]
    pub flow_log_interval: Duration,

    /// Keep no live connection table: `/connections` and its page answer
    /// 404, and a connection costs no record (about 500 bytes) unless
    /// --flow-log or --long-connections keeps one.
    #[arg(long)]
    pub no_connection_table: bool,

    /// Send the metrics to an OpenTelemetry receiver (a Collector) every
    /// --otlp-interval: http://HOST:4317 for gRPC, http://HOST:4318 for HTTP.
    #[arg(long, value_name = "URL")]
    pub otlp_endpoint: Option<String>,

    /// grpc (OTLP/gRPC) or http (OTLP/HTTP, protobuf).
    #[arg(
        long,
        value_name = "PROTOCOL",
        value_enum,
        default_value = "grpc",
        requires = "otlp_endpoint"
    )]
    pub otlp_protocol: crate::otlp::Protocol,

    /// How often the metrics are sent.
    #[arg(long, value_name = "DURATION", value_parser = duration, default_value = "5s", requires = "otlp_endpoint")]
    pub otlp_interval: Duration,

    /// How long one export may take (connecting included).
    #[arg(long, value_name = "DURATION", value_parser = duration, default_value = "10s", requires = "otlp_endpoint")]
    pub otlp_timeout: Duration,

    /// With an https:// --otlp-endpoint: the CA certificates (PEM) that
    /// check the receiver's; without, the system's.
    #[arg(long, value_name = "FILE", requires = "otlp_endpoint")]
    pub otlp_ca: Option<PathBuf>,

    /// With an https:// --otlp-endpoint: a client certificate chain (PEM)
    /// for a receiver that asks for one, with --otlp-key.
    #[arg(long, value_name = "FILE", requires = "otlp_key")]
    pub otlp_cert: Option<PathBuf>,

    /// The key of --otlp-cert (PEM).
    #[arg(long, value_name = "FILE", requires = "otlp_cert")]
    pub otlp_key: Option<PathBuf>,

    /// Send the flow log's records (open, every --flow-log-interval, close)
    /// to the receiver as OTLP logs too; with or without --flow-log.
    #[arg(long, requires = "otlp_endpoint")]
    pub otlp_logs: bool,

    /// Most flow-log records waiting for the receiver (--otlp-logs); those
    /// that find it full are dropped and counted in
    /// tcp_exporter_otlp_log_records_total{result="dropped"}.
    #[arg(long, value_name = "N", default_value_t = crate::otlp::logs::MAX_QUEUED, value_parser = clap::value_parser!(u32).range(1..).map(|n| n as usize), requires = "otlp_logs")]
    pub otlp_log_queue: usize,

    /// A header sent with every export, NAME=VALUE (e.g. an authorization);
    /// repeatable.
    #[arg(long, value_name = "NAME=VALUE", requires = "otlp_endpoint")]
    pub otlp_header: Vec<String>,

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

    /// xdp: count the segments that change nothing the analysis looks at
    /// (in sequence, ACK only, window unchanged, no RTT sample started or
    /// ended) in the kernel, per connection, and hand them up as runs
    /// instead of one record each. Counts stay those of the analysis;
    /// runs reach the metrics up to 100 ms late. Off by default.
    #[arg(long)]
    pub xdp_count: bool,
}

/// A duration: a number with a unit (`ms`, `s`, `m`, `h`), or a bare
/// number of seconds.
pub fn duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration; write e.g. 30s, 5m, 1h, 500ms or 300"))?;
    let millis = match unit {
        "ms" => Some(n),
        "" | "s" => n.checked_mul(1_000),
        "m" => n.checked_mul(60_000),
        "h" => n.checked_mul(3_600_000),
        _ => {
            return Err(format!(
                "{text:?}: unknown unit {unit:?}; use ms, s, m or h"
            ))
        }
    };
    millis
        .map(Duration::from_millis)
        .ok_or_else(|| format!("{text:?} is too long"))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::conns::DEFAULT_FLOW_LOG_INTERVAL_SECS;
    use crate::metrics::DEFAULT_SERIES_TTL_SECS;

    #[test]
    fn durations_take_units_or_bare_seconds() {
        assert_eq!(duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(duration("300"), Ok(Duration::from_secs(300)));
        assert_eq!(duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(duration("250ms"), Ok(Duration::from_millis(250)));
        assert!(duration("5 min").is_err());
        assert!(duration("m").is_err());
        assert!(duration("-1s").is_err());
        assert!(duration("99999999999999999h").is_err());
    }

    #[test]
    fn the_default_durations_are_the_documented_constants() {
        let args = Args::try_parse_from(["tcp-exporter"]).unwrap();
        assert_eq!(args.series_ttl.as_secs(), DEFAULT_SERIES_TTL_SECS);
        assert_eq!(
            args.flow_log_interval.as_secs(),
            DEFAULT_FLOW_LOG_INTERVAL_SECS
        );
    }
}
