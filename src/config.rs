//! Validated settings: what the exporter runs with, checked once, from the
//! raw command-line flags.

use std::net::SocketAddr;
use std::path::PathBuf;

use crate::capture::af_packet::{
    DEFAULT_BLOCK_COUNT, DEFAULT_BLOCK_SIZE, DEFAULT_BLOCK_TIMEOUT_MS,
};
use crate::capture::routes::Routes;
use crate::capture::{XdpAttach, DEFAULT_XDP_RING_MIB};
use crate::cli::{Args, BackendArg, XdpModeArg};
use crate::decode::tunnel::MAX_TUNNEL_PORTS;
use crate::decode::TunnelPorts;
use crate::flow::Nanos;
use crate::flowlog;
use crate::http::webconfig::{self, WebConfig, WebConfigError};
use crate::metrics::istio::IstioOptions;
use crate::metrics::labels::{parse_rules, CidrRule, Label, LabelError, LabelSet, PortNames};
use crate::otlp::OtlpConfig;
use crate::supervisor::{glob_pattern, is_glob};

/// What to capture from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    Live { interfaces: Vec<String> },
    File { path: PathBuf, print: bool },
}

/// The live capture backend.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Backend {
    Pcap,
    AfPacket {
        workers: usize,
        block_size: u32,
        block_count: u32,
        block_timeout_ms: u32,
    },
    /// eBPF programs on each interface (cargo feature `xdp`).
    Xdp {
        attach: XdpAttach,
        ring_bytes: u32,
        /// Count steady segments in the kernel (`--xdp-count`).
        count: bool,
    },
}

#[derive(Clone, Debug)]
pub struct Config {
    pub backend: Backend,
    pub source: Source,
    pub listen: SocketAddr,
    /// BPF expression; empty for none.
    pub filter: String,
    pub snaplen: u32,
    pub max_flows: usize,
    /// `--max-interfaces`: captured at once.
    pub max_interfaces: usize,
    pub idle_timeout: Nanos,
    pub max_series: usize,
    pub promisc: bool,
    pub buffer_bytes: u32,
    pub labels: LabelSet,
    /// `--kubernetes`: the kubeconfig to use, if one is named.
    pub kubernetes: Option<Kubernetes>,
    /// `--istio-metrics`, with `--cluster-name` and `--node-name`.
    pub istio: Option<IstioOptions>,
    /// `--otlp-*`.
    pub otlp: Option<OtlpConfig>,
    pub cidr_rules: Vec<CidrRule>,
    pub port_names: PortNames,
    /// `--vxlan-ports`, `--geneve-ports`.
    pub tunnel_ports: TunnelPorts,
    pub series_ttl: Nanos,
    /// `--long-connections`: the age from which connections get series.
    pub long_connections: Option<Nanos>,
    pub max_long_connections: usize,
    pub flow_log: Option<flowlog::Target>,
    pub flow_log_interval: Nanos,
    /// The live connection table (`/connections`): on whenever HTTP is
    /// served, unless `--no-connection-table`.
    pub connection_table: bool,
    /// `--web.config.file`, read and checked (its certificates are loaded
    /// when the server starts).
    pub web: WebConfig,
}

/// `--otlp-*`, checked, with the resource that names this exporter.
fn otlp_config(args: &Args, endpoint: &str) -> Result<OtlpConfig, ConfigError> {
    if args.otlp_interval.as_millis() == 0 {
        return Err(ConfigError::Zero("otlp-interval"));
    }
    if args.otlp_timeout.as_millis() == 0 {
        return Err(ConfigError::Zero("otlp-timeout"));
    }
    let mut headers = Vec::new();
    for h in &args.otlp_header {
        match h.split_once('=') {
            Some((name, value)) if !name.trim().is_empty() => {
                headers.push((name.trim().to_string(), value.to_string()))
            }
            _ => {
                return Err(ConfigError::Otlp(format!(
                    "--otlp-header {h:?}: use NAME=VALUE"
                )))
            }
        }
    }
    let mut resource = vec![
        ("service.name".to_string(), "tcp-exporter".to_string()),
        (
            "service.version".to_string(),
            env!("CARGO_PKG_VERSION").to_string(),
        ),
    ];
    if let Some(host) = crate::otlp::host_name() {
        resource.push(("host.name".into(), host));
    }
    if let Some(node) = args.node_name.as_ref().filter(|n| !n.is_empty()) {
        resource.push(("k8s.node.name".into(), node.clone()));
    }
    if args.cluster_name != crate::metrics::istio::DEFAULT_CLUSTER {
        resource.push(("k8s.cluster.name".into(), args.cluster_name.clone()));
    }
    let config = OtlpConfig {
        endpoint: endpoint.to_string(),
        protocol: args.otlp_protocol,
        interval: args.otlp_interval,
        timeout: args.otlp_timeout,
        headers,
        resource,
        logs: args.otlp_logs,
        log_queue: args.otlp_log_queue,
        tls: None,
    };
    let https = endpoint.starts_with("https://");
    let files = crate::otlp::tls::TlsFiles {
        ca: args.otlp_ca.clone(),
        identity: args.otlp_cert.clone().zip(args.otlp_key.clone()),
    };
    let config = OtlpConfig {
        tls: if https || files != Default::default() {
            Some(crate::otlp::tls::load(&files).map_err(|e| ConfigError::Otlp(format!("{e:#}")))?)
        } else {
            None
        },
        ..config
    };
    config
        .check()
        .map_err(|e| ConfigError::Otlp(format!("{e:#}")))?;
    Ok(config)
}

impl Config {
    /// Whether connections need to know whose pod interface saw them:
    /// for the `reporter` label, or for Istio's reporters.
    pub fn wants_reporter(&self) -> bool {
        self.labels.has(Label::Reporter) || self.istio.is_some()
    }
}

/// `--kubernetes`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Kubernetes {
    pub kubeconfig: Option<PathBuf>,
}

/// A flag value that cannot work, with the reason.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("--snaplen {0} is too small to hold the headers; use at least {MIN_SNAPLEN}")]
    SnaplenTooSmall(u32),
    #[error("--snaplen {0} is above the {MAX_SNAPLEN}-byte maximum")]
    SnaplenTooLarge(u32),
    #[error("--{0} must be at least 1")]
    Zero(&'static str),
    #[error("--buffer-size {0} MiB is above the 2047 MiB maximum")]
    BufferTooLarge(u32),
    #[error("interface {0:?} is given twice")]
    DuplicateInterface(String),
    #[error("{0}")]
    Otlp(String),
    #[error("--labels {0}: names come from the cluster; add --kubernetes")]
    IdentityWithoutKubernetes(&'static str),
    #[error("-i {0:?}: not a valid glob (an unclosed `[`?)")]
    BadGlob(String),
    #[error("{0} interfaces named with -i, more than --max-interfaces {1}")]
    TooManyInterfaces(usize, usize),
    #[error("--ring-block-size {0} KiB must be a multiple of the {1}-byte page size")]
    RingBlockSize(u32, usize),
    #[error("--workers and --ring-* apply to --backend af-packet only")]
    NotAfPacket,
    #[error("--workers {0}: at most {MAX_WORKERS}")]
    TooManyWorkers(usize),
    #[error("--xdp-mode, --xdp-ring-size and --xdp-count apply to --backend xdp only")]
    NotXdp,
    #[error(
        "--xdp-ring-size {0} MiB must be a power of two from {MIN_XDP_RING_MIB} to {MAX_XDP_RING_MIB}"
    )]
    XdpRingSize(u32),
    #[error(
        "--backend xdp takes no -f: its programs hand over every TCP segment, \
         and nothing else"
    )]
    XdpFilter,
    #[error(
        "--backend xdp attaches to named interfaces, not `any`: list them with -i \
         (each may be given once)"
    )]
    XdpAny,
    #[error("--backend xdp captures live interfaces; -r reads files with libpcap")]
    XdpFile,
    #[error(transparent)]
    Labels(#[from] LabelError),
    #[error("--port-names {0}: cannot read it: {1} (or give `istio` for the built-in preset)")]
    PortNamesRead(String, String),
    #[error("--flow-log - and --print both write to standard output; give --flow-log a file")]
    FlowLogStdoutPrint,
    #[error("--flow-log-interval must be at least 1ms")]
    FlowLogInterval,
    #[error(transparent)]
    WebConfig(#[from] WebConfigError),
    #[error("-i uplink: this host has no IPv4 default route to take the uplink from; name it")]
    NoUplink,
    #[error(
        "--vxlan-ports {0:?} --geneve-ports {1:?}: give at most {max} port numbers \
         each, comma-separated, none in both",
        max = MAX_TUNNEL_PORTS
    )]
    TunnelPorts(String, String),
}

/// The smallest BPF ring buffer per interface, in MiB: 30 ms of a million
/// records a second, three times the reader's longest sleep.
pub const MIN_XDP_RING_MIB: u32 = 4;
/// The largest BPF ring buffer per interface, in MiB.
pub const MAX_XDP_RING_MIB: u32 = 1024;

/// Worker threads per interface, at most.
pub const MAX_WORKERS: usize = 64;

/// `-i pods`: the host sides of pods' interfaces, as the CNIs name them:
/// Calico, Cilium, bridge CNIs (Flannel, the bridge plugin, kindnet), the
/// AWS VPC CNI, GKE, Azure.
pub const POD_INTERFACES: [&str; 6] = ["cali*", "lxc*", "veth*", "eni*", "gke*", "azv*"];

/// The capture filter of live interfaces when -f is not given: TCP, and
/// the overlays it may travel in (IP in IP, GRE, and UDP to the VXLAN and
/// Geneve ports).
pub fn default_live_filter(ports: &TunnelPorts) -> String {
    let mut filter = String::from("tcp");
    for v in ["ip", "ip6"] {
        for proto in [4, 41, 47] {
            filter.push_str(&format!(" or {v} proto {proto}"));
        }
    }
    for (port, _) in ports.iter() {
        filter.push_str(&format!(" or udp dst port {port}"));
    }
    filter
}

/// Ethernet + IPv4 + TCP, no options: anything less decodes nothing.
pub const MIN_SNAPLEN: u32 = 54;
pub const MAX_SNAPLEN: u32 = 262_144;

impl Config {
    pub fn from_args(args: Args) -> Result<Config, ConfigError> {
        let otlp = match &args.otlp_endpoint {
            None => None,
            Some(endpoint) => Some(otlp_config(&args, endpoint)?),
        };
        if args.snaplen < MIN_SNAPLEN {
            return Err(ConfigError::SnaplenTooSmall(args.snaplen));
        }
        if args.snaplen > MAX_SNAPLEN {
            return Err(ConfigError::SnaplenTooLarge(args.snaplen));
        }
        if args.max_flows == 0 {
            return Err(ConfigError::Zero("max-flows"));
        }
        if args.max_series == 0 {
            return Err(ConfigError::Zero("max-series"));
        }
        if args.max_interfaces == 0 {
            return Err(ConfigError::Zero("max-interfaces"));
        }
        if args.flow_idle_timeout == 0 {
            return Err(ConfigError::Zero("flow-idle-timeout"));
        }
        if args.buffer_size == 0 {
            return Err(ConfigError::Zero("buffer-size"));
        }
        if args.buffer_size > 2047 {
            return Err(ConfigError::BufferTooLarge(args.buffer_size));
        }
        if args.backend != BackendArg::Xdp
            && (args.xdp_mode.is_some() || args.xdp_ring_size.is_some() || args.xdp_count)
        {
            return Err(ConfigError::NotXdp);
        }
        let af_packet_flags = args.workers.is_some()
            || args.ring_block_size != DEFAULT_BLOCK_SIZE / 1024
            || args.ring_blocks != DEFAULT_BLOCK_COUNT
            || args.ring_timeout != DEFAULT_BLOCK_TIMEOUT_MS;
        if args.backend != BackendArg::AfPacket && af_packet_flags {
            return Err(ConfigError::NotAfPacket);
        }
        let backend = match args.backend {
            BackendArg::Xdp => {
                if args.filter.is_some() {
                    return Err(ConfigError::XdpFilter);
                }
                if args.read.is_some() {
                    return Err(ConfigError::XdpFile);
                }
                if args.interfaces.is_empty() || args.interfaces.iter().any(|i| i == "any") {
                    return Err(ConfigError::XdpAny);
                }
                let mib = args.xdp_ring_size.unwrap_or(DEFAULT_XDP_RING_MIB);
                if !mib.is_power_of_two() || !(MIN_XDP_RING_MIB..=MAX_XDP_RING_MIB).contains(&mib) {
                    return Err(ConfigError::XdpRingSize(mib));
                }
                Backend::Xdp {
                    attach: match args.xdp_mode.unwrap_or(XdpModeArg::Auto) {
                        XdpModeArg::Auto => XdpAttach::Auto,
                        XdpModeArg::Native => XdpAttach::Native,
                        XdpModeArg::Generic => XdpAttach::Generic,
                    },
                    ring_bytes: mib * 1024 * 1024,
                    count: args.xdp_count,
                }
            }
            BackendArg::Pcap => Backend::Pcap,
            BackendArg::AfPacket => {
                let workers = args
                    .workers
                    .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
                if workers == 0 {
                    return Err(ConfigError::Zero("workers"));
                }
                if workers > MAX_WORKERS {
                    return Err(ConfigError::TooManyWorkers(workers));
                }
                if args.ring_blocks == 0 {
                    return Err(ConfigError::Zero("ring-blocks"));
                }
                let page = page_size();
                let block_size = args.ring_block_size.saturating_mul(1024);
                if block_size == 0 || !(block_size as usize).is_multiple_of(page) {
                    return Err(ConfigError::RingBlockSize(args.ring_block_size, page));
                }
                Backend::AfPacket {
                    workers,
                    block_size,
                    block_count: args.ring_blocks,
                    block_timeout_ms: args.ring_timeout.max(1),
                }
            }
        };
        let tunnel_ports = tunnel_ports(&args.vxlan_ports, &args.geneve_ports)?;
        let filter = match (&args.filter, &args.read) {
            (Some(f), _) => f.clone(),
            (None, Some(_)) => String::new(),
            (None, None) => default_live_filter(&tunnel_ports),
        };
        let source = match args.read {
            Some(path) => Source::File {
                path,
                print: args.print,
            },
            None => {
                let mut interfaces = Vec::new();
                for name in args.interfaces {
                    match name.as_str() {
                        "pods" => interfaces.extend(POD_INTERFACES.iter().map(|g| g.to_string())),
                        "uplink" => {
                            let v4 = std::fs::read_to_string("/proc/net/route").unwrap_or_default();
                            interfaces
                                .push(Routes::default_interface(&v4).ok_or(ConfigError::NoUplink)?);
                        }
                        _ => interfaces.push(name),
                    }
                }
                if interfaces.is_empty() {
                    interfaces.push("any".to_string());
                }
                for (i, name) in interfaces.iter().enumerate() {
                    if interfaces[..i].contains(name) {
                        return Err(ConfigError::DuplicateInterface(name.clone()));
                    }
                }
                if let Some(bad) = interfaces
                    .iter()
                    .find(|i| is_glob(i) && glob_pattern(i).is_none())
                {
                    return Err(ConfigError::BadGlob(bad.clone()));
                }
                let named = interfaces.iter().filter(|i| !is_glob(i)).count();
                if named > args.max_interfaces {
                    return Err(ConfigError::TooManyInterfaces(named, args.max_interfaces));
                }
                Source::Live { interfaces }
            }
        };
        let mut port_names = PortNames::default();
        for source in &args.port_names {
            if !port_names.add_preset(source) {
                let text = std::fs::read_to_string(source)
                    .map_err(|e| ConfigError::PortNamesRead(source.clone(), e.to_string()))?;
                port_names.add_yaml(source, &text)?;
            }
        }
        let flow_log = args.flow_log.as_deref().map(flowlog::Target::parse);
        if flow_log == Some(flowlog::Target::Stdout) && args.print {
            return Err(ConfigError::FlowLogStdoutPrint);
        }
        if args.flow_log_interval.as_millis() == 0 {
            return Err(ConfigError::FlowLogInterval);
        }
        if args.long_connections.is_some() && args.max_long_connections == 0 {
            return Err(ConfigError::Zero("max-long-connections"));
        }
        let web = match &args.web_config_file {
            Some(path) => webconfig::load(path)?,
            None => WebConfig::default(),
        };
        let labels = match (&args.labels, args.kubernetes) {
            (Some(list), _) => list.parse()?,
            (None, true) => LabelSet::KUBERNETES,
            (None, false) => LabelSet::DEFAULT,
        };
        if let Some(label) = labels.iter().find(|l| l.is_identity()) {
            if !args.kubernetes {
                return Err(ConfigError::IdentityWithoutKubernetes(label.as_str()));
            }
        }
        let nanos = |d: std::time::Duration| d.as_nanos().min(u64::MAX as u128) as Nanos;
        Ok(Config {
            web,
            labels,
            kubernetes: args.kubernetes.then(|| Kubernetes {
                kubeconfig: args.kubeconfig.clone(),
            }),
            otlp,
            istio: args.istio_metrics.then(|| IstioOptions {
                cluster: args.cluster_name.clone(),
                node: args.node_name.clone().filter(|n| !n.is_empty()),
            }),
            cidr_rules: parse_rules(&args.aggregate_cidr)?,
            port_names,
            tunnel_ports,
            series_ttl: nanos(args.series_ttl),
            long_connections: args.long_connections.map(nanos),
            max_long_connections: args.max_long_connections,
            flow_log,
            flow_log_interval: nanos(args.flow_log_interval),
            connection_table: !args.no_connection_table && !args.print,
            backend,
            source,
            listen: SocketAddr::new(args.listen, args.port),
            filter,
            snaplen: args.snaplen,
            max_flows: args.max_flows,
            max_interfaces: args.max_interfaces,
            idle_timeout: args.flow_idle_timeout.saturating_mul(1_000_000_000),
            max_series: args.max_series,
            promisc: args.promisc,
            buffer_bytes: args.buffer_size * 1024 * 1024,
        })
    }
}

fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if n > 0 {
        n as usize
    } else {
        4096
    }
}

/// `--vxlan-ports` and `--geneve-ports`: comma-separated port numbers.
fn tunnel_ports(vxlan: &str, geneve: &str) -> Result<TunnelPorts, ConfigError> {
    let error = || ConfigError::TunnelPorts(vxlan.to_string(), geneve.to_string());
    let list = |text: &str| -> Result<Vec<u16>, ConfigError> {
        text.split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(|p| p.parse::<u16>().ok().filter(|p| *p != 0).ok_or_else(error))
            .collect()
    };
    TunnelPorts::new(&list(vxlan)?, &list(geneve)?).ok_or_else(error)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn parse(argv: &[&str]) -> Result<Config, ConfigError> {
        let mut full = vec!["tcp-exporter"];
        full.extend_from_slice(argv);
        Config::from_args(Args::try_parse_from(full).expect("flags parse"))
    }

    #[test]
    fn otlp_needs_a_plain_http_endpoint_and_names_headers() {
        let c = parse(&[
            "--otlp-endpoint",
            "http://127.0.0.1:4318",
            "--otlp-protocol",
            "http",
        ])
        .unwrap()
        .otlp
        .unwrap();
        assert_eq!(c.protocol, crate::otlp::Protocol::Http);
        assert_eq!(c.interval, std::time::Duration::from_secs(5));
        assert!(c
            .resource
            .contains(&("service.name".to_string(), "tcp-exporter".to_string())));
        let h = parse(&[
            "--otlp-endpoint",
            "http://c:4317",
            "--otlp-header",
            "x-token=a=b",
        ]);
        assert_eq!(
            h.unwrap().otlp.unwrap().headers,
            [("x-token".to_string(), "a=b".to_string())]
        );
        // https: the system's roots, or --otlp-ca's.
        let tls = parse(&["--otlp-endpoint", "https://c:4317"])
            .unwrap()
            .otlp
            .unwrap();
        assert!(tls.tls.is_some_and(|t| t.ca_pem.is_none()));
        for bad in [
            &[
                "--otlp-endpoint",
                "http://c:4317",
                "--otlp-ca",
                "/etc/hostname",
            ][..],
            &[
                "--otlp-endpoint",
                "https://c:4317",
                "--otlp-ca",
                "/nonexistent",
            ],
            &["--otlp-endpoint", "c:4317"],
            &[
                "--otlp-endpoint",
                "http://c:4317",
                "--otlp-header",
                "novalue",
            ],
            &["--otlp-endpoint", "http://c:4317", "--otlp-interval", "0s"],
        ] {
            assert!(
                matches!(parse(bad), Err(ConfigError::Otlp(_) | ConfigError::Zero(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn no_interface_and_no_file_captures_on_any() {
        let c = parse(&[]).unwrap();
        assert_eq!(
            c.source,
            Source::Live {
                interfaces: vec!["any".into()]
            }
        );
        assert_eq!(c.listen, "0.0.0.0:9090".parse().unwrap());
        assert_eq!(
            c.filter,
            "tcp or ip proto 4 or ip proto 41 or ip proto 47 or ip6 proto 4 or ip6 proto 41 \
             or ip6 proto 47 or udp dst port 4789 or udp dst port 8472 or udp dst port 6081"
        );
        assert_eq!(c.tunnel_ports, TunnelPorts::default());
        let none = parse(&["--vxlan-ports", "", "--geneve-ports", ""]).unwrap();
        assert_eq!(
            none.filter,
            "tcp or ip proto 4 or ip proto 41 or ip proto 47 or ip6 proto 4 or ip6 proto 41 \
             or ip6 proto 47"
        );
        assert!(parse(&["--vxlan-ports", "4789,x"]).is_err());
        assert!(
            parse(&["--geneve-ports", "4789"]).is_err(),
            "a port in both lists"
        );
    }

    #[test]
    fn pods_names_the_cnis_interfaces_and_uplink_the_default_route_s() {
        let c = parse(&["-i", "pods", "-i", "eth9"]).unwrap();
        let mut want: Vec<String> = POD_INTERFACES.iter().map(|g| g.to_string()).collect();
        want.push("eth9".into());
        assert_eq!(c.source, Source::Live { interfaces: want });
        // This machine's default route, as `ip route` shows it.
        let route = std::process::Command::new("ip")
            .args(["-4", "route", "show", "default"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        let dev = route
            .split_whitespace()
            .skip_while(|w| *w != "dev")
            .nth(1)
            .map(String::from);
        match (parse(&["-i", "uplink"]), dev) {
            (Ok(c), Some(dev)) => assert_eq!(
                c.source,
                Source::Live {
                    interfaces: vec![dev]
                }
            ),
            (Err(e), None) => assert!(matches!(e, ConfigError::NoUplink)),
            (got, dev) => panic!("-i uplink gave {got:?}, ip route says {dev:?}"),
        }
    }

    #[test]
    fn interfaces_repeat_and_port_and_listen_combine() {
        let c = parse(&[
            "-i",
            "eth0",
            "-i",
            "eth1",
            "-p",
            "9100",
            "--listen",
            "127.0.0.1",
        ])
        .unwrap();
        assert_eq!(
            c.source,
            Source::Live {
                interfaces: vec!["eth0".into(), "eth1".into()]
            }
        );
        assert_eq!(c.listen, "127.0.0.1:9100".parse().unwrap());
    }

    #[test]
    fn print_needs_read_and_read_excludes_interfaces() {
        let argv = |a: &[&str]| {
            let mut full = vec!["tcp-exporter"];
            full.extend_from_slice(a);
            Args::try_parse_from(full)
        };
        assert!(argv(&["--print"]).is_err());
        assert!(argv(&["-r", "x.pcap", "-i", "eth0"]).is_err());
        let c = parse(&["-r", "x.pcap", "--print"]).unwrap();
        assert_eq!(c.filter, "", "files are not filtered unless -f says so");
        assert_eq!(
            c.source,
            Source::File {
                path: "x.pcap".into(),
                print: true
            }
        );
    }

    #[test]
    fn af_packet_takes_workers_and_ring_geometry() {
        let c = parse(&[
            "--backend",
            "af-packet",
            "--workers",
            "3",
            "--ring-blocks",
            "4",
        ])
        .unwrap();
        assert_eq!(
            c.backend,
            Backend::AfPacket {
                workers: 3,
                block_size: DEFAULT_BLOCK_SIZE,
                block_count: 4,
                block_timeout_ms: DEFAULT_BLOCK_TIMEOUT_MS
            }
        );
        assert_eq!(
            parse(&["--workers", "2"]).unwrap_err(),
            ConfigError::NotAfPacket
        );
        assert!(matches!(
            parse(&["--backend", "af-packet", "--ring-block-size", "3"]).unwrap_err(),
            ConfigError::RingBlockSize(3, _)
        ));
        assert_eq!(
            parse(&["--backend", "af-packet", "--workers", "0"]).unwrap_err(),
            ConfigError::Zero("workers")
        );
    }

    #[test]
    fn xdp_takes_a_mode_and_ring_size_on_named_interfaces() {
        let c = parse(&[
            "--backend",
            "xdp",
            "-i",
            "eth0",
            "--xdp-mode",
            "generic",
            "--xdp-ring-size",
            "4",
            "--xdp-count",
        ])
        .unwrap();
        assert_eq!(
            c.backend,
            Backend::Xdp {
                attach: XdpAttach::Generic,
                ring_bytes: 4 << 20,
                count: true,
            }
        );
        let c = parse(&["--backend", "xdp", "-i", "eth0"]).unwrap();
        assert_eq!(
            c.backend,
            Backend::Xdp {
                attach: XdpAttach::Auto,
                ring_bytes: DEFAULT_XDP_RING_MIB << 20,
                count: false,
            }
        );
        let refused = [
            (&["--backend", "xdp"][..], ConfigError::XdpAny),
            (&["--backend", "xdp", "-i", "any"], ConfigError::XdpAny),
            (
                &["--backend", "xdp", "-i", "eth0", "-f", "port 80"],
                ConfigError::XdpFilter,
            ),
            (
                &["--backend", "xdp", "-i", "eth0", "--xdp-ring-size", "3"],
                ConfigError::XdpRingSize(3),
            ),
            (
                &["--backend", "xdp", "-i", "eth0", "--xdp-ring-size", "2"],
                ConfigError::XdpRingSize(2),
            ),
            (
                &["--backend", "xdp", "-i", "eth0", "--workers", "2"],
                ConfigError::NotAfPacket,
            ),
            (&["-i", "eth0", "--xdp-mode", "native"], ConfigError::NotXdp),
            (&["-i", "eth0", "--xdp-count"], ConfigError::NotXdp),
            (
                &["--backend", "af-packet", "--xdp-ring-size", "4"],
                ConfigError::NotXdp,
            ),
            (&["--backend", "xdp", "-r", "x.pcap"], ConfigError::XdpFile),
        ];
        for (argv, want) in refused {
            assert_eq!(parse(argv).unwrap_err(), want, "{argv:?}");
        }
    }

    #[test]
    fn impossible_values_are_refused_with_the_flag_named() {
        assert_eq!(
            parse(&["--snaplen", "20"]).unwrap_err(),
            ConfigError::SnaplenTooSmall(20)
        );
        assert_eq!(
            parse(&["--max-flows", "0"]).unwrap_err(),
            ConfigError::Zero("max-flows")
        );
        assert_eq!(
            parse(&["-i", "eth0", "-i", "eth0"]).unwrap_err(),
            ConfigError::DuplicateInterface("eth0".into())
        );
        assert!(parse(&["--flow-idle-timeout", "0"])
            .unwrap_err()
            .to_string()
            .contains("--flow-idle-timeout"));
    }
}
