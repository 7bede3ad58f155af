//! The binary: flags to settings, capture threads (one per interface), the
//! HTTP server, and a clean stop on SIGINT or SIGTERM.

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;

use std::collections::HashMap;
use tcp_exporter::capture::routes::HostRoutes;
use tcp_exporter::capture::{
    AfPacket, AfPacketOptions, LiveOptions, PacketSource, PcapFile, PcapLive, XdpOptions,
};
use tcp_exporter::cli::Args;
use tcp_exporter::config::{Backend, Config, Source};
use tcp_exporter::flowlog::{self, FlowLogWriter};
use tcp_exporter::http::{self, HttpState};
use tcp_exporter::identity::{watch, Identities};
use tcp_exporter::metrics::conns::{ConnOptions, LongBudget};
use tcp_exporter::metrics::labels::Labeler;
use tcp_exporter::metrics::series::SeriesBudget;
use tcp_exporter::metrics::{Exporter, Shard, ShardConfig};
use tcp_exporter::otlp::logs::LogQueue;
use tcp_exporter::pipeline::{self, CaptureThread, SourceLoop, Worker};
use tcp_exporter::privileges;
use tcp_exporter::supervisor::{self, Captures, Limits, Supervisor};

/// How long a live read waits before the capture loop looks at the clock
/// and the stop flag.
const READ_TIMEOUT_MS: u32 = 100;

fn main() -> ExitCode {
    // `tcp-exporter top URL`: the terminal client of /connections.
    let mut argv = std::env::args();
    if argv.nth(1).as_deref() == Some("top") {
        return match tcp_exporter::top::run(argv) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("tcp-exporter top: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    let args = Args::parse();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tcp-exporter: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> Result<()> {
    let config = Config::from_args(args)?;
    // Everything that needs privileges happens first: the captures are
    // opened and the HTTP port bound. Then the process keeps only what
    // opening a capture again takes, before any other thread starts.
    let sources = open_sources(&config)?;
    let listener = match config.source {
        Source::File { print: true, .. } => None,
        _ => Some(
            std::net::TcpListener::bind(config.listen)
                .with_context(|| format!("cannot listen on {}", config.listen))?,
        ),
    };
    drop_privileges(&config)?;
    // The OTLP export's counts, and the queue of flow-log records it
    // sends, made before the flow log that fills it.
    let otlp_stats = config.otlp.as_ref().map(|o| {
        Arc::new(tcp_exporter::metrics::collector::ExportStats {
            logs: o.logs,
            ..Default::default()
        })
    });
    let log_queue = match (&config.otlp, &otlp_stats) {
        (Some(o), Some(stats)) if o.logs => {
            Some(Arc::new(LogQueue::new(Arc::clone(stats), o.log_queue)))
        }
        _ => None,
    };
    let (shards, writer) = shard_config(&config, log_queue.clone())?;
    let exporter = Exporter::new(env!("CARGO_PKG_VERSION"), &shards);
    if let (Some(otlp), Some(stats)) = (&config.otlp, otlp_stats) {
        let _ = exporter.otlp.set(Arc::clone(&stats));
        tcp_exporter::otlp::start(Arc::clone(&exporter), otlp.clone(), stats, log_queue)?;
    }
    let stop = Arc::new(AtomicBool::new(false));
    let result = capture(&config, sources, listener, shards, &exporter, &stop);
    // Every worker has let go of its flow-log sink: the writer ends once it
    // has written what they sent, so that --print shows its final counts.
    if let Some(writer) = writer {
        writer.finish();
    }
    result?;
    if let Source::File { print: true, .. } = config.source {
        print!("{}", exporter.render());
    }
    Ok(())
}

/// The capabilities opening a capture again needs, by backend.
fn capture_capabilities(config: &Config) -> Vec<privileges::Cap> {
    use privileges::{CAP_BPF, CAP_NET_ADMIN, CAP_NET_RAW, CAP_PERFMON};
    match (&config.source, &config.backend) {
        (Source::File { .. }, _) => vec![],
        (Source::Live { .. }, Backend::Xdp { .. }) => vec![CAP_BPF, CAP_NET_ADMIN, CAP_PERFMON],
        (Source::Live { .. }, _) => vec![CAP_NET_RAW],
    }
}

/// The capabilities kept after start: a capture's, and NET_ADMIN to read
/// the addresses in the pods' namespaces when whose pod interface saw a
/// connection matters.
fn capabilities_to_keep(config: &Config) -> Vec<privileges::Cap> {
    let mut caps = capture_capabilities(config);
    let live = matches!(config.source, Source::Live { .. });
    if live && config.wants_reporter() && !caps.contains(&privileges::CAP_NET_ADMIN) {
        caps.push(privileges::CAP_NET_ADMIN);
    }
    caps
}

fn drop_privileges(config: &Config) -> Result<()> {
    let kept =
        privileges::keep_only(&capabilities_to_keep(config)).context("dropping capabilities")?;
    if let Source::Live { .. } = config.source {
        let for_capture = capture_capabilities(config);
        let (capture, reporter): (Vec<_>, Vec<_>) =
            kept.iter().copied().partition(|c| for_capture.contains(c));
        eprintln!(
            "tcp-exporter: capabilities kept (permitted, raised only to open a capture): {}",
            privileges::names(&capture)
        );
        if !reporter.is_empty() {
            eprintln!(
                "tcp-exporter: and {}, raised only to read the addresses of the pods behind \
                 veths (the reporter label) once a second",
                privileges::names(&reporter)
            );
        }
    }
    Ok(())
}

/// What every worker shares: labels, the series cap, connection records,
/// and the flow log's writer when there is one.
fn shard_config(
    config: &Config,
    otlp_logs: Option<Arc<LogQueue>>,
) -> Result<(ShardConfig, Option<FlowLogWriter>)> {
    let mut labeler = Labeler::new(config.labels, config.cidr_rules.clone(), &config.port_names);
    labeler.identities = watch_kubernetes(config)?;
    labeler.istio = config.istio.clone();
    if matches!(config.source, Source::Live { .. }) && config.wants_reporter() {
        labeler.routes =
            Some(HostRoutes::new().context("cannot start the thread that reads the routes")?);
    }
    let (sink, writer) = match (&config.flow_log, otlp_logs) {
        (None, None) => (None, None),
        (target, otlp) => {
            // A file's reader waits for the writer: nothing is lost by it.
            let wait = matches!(config.source, Source::File { .. });
            let (sink, writer) = flowlog::start(target.as_ref(), wait, otlp)
                .with_context(|| format!("cannot open the flow log {target:?}"))?;
            (Some(sink), Some(writer))
        }
    };
    let conns = ConnOptions {
        table: config
            .connection_table
            .then(|| Arc::new(std::sync::atomic::AtomicU64::new(0))),
        long_age: config.long_connections,
        long_budget: Arc::new(LongBudget::new(config.max_long_connections)),
        log: sink,
        log_interval: config.flow_log_interval,
    };
    let shards = ShardConfig {
        labeler: Arc::new(labeler),
        budget: Arc::new(SeriesBudget::new(config.max_series)),
        series_ttl: config.series_ttl,
        conns: conns.enabled().then_some(conns),
    };
    Ok((shards, writer))
}

/// How long `-r FILE --kubernetes` waits for the first lists of pods,
/// services and nodes before it reads the file.
const KUBERNETES_SYNC_WAIT: Duration = Duration::from_secs(30);

/// With `--kubernetes`: the cluster's identities, fed by a watch on a
/// thread (and runtime) of its own. A configuration that cannot work stops
/// the start; an API server that does not answer does not (identities read
/// `unknown` while the watch retries). Reading a file waits for the first
/// lists, so that the capture is named as the cluster is now.
fn watch_kubernetes(config: &Config) -> Result<Option<Arc<Identities>>> {
    let Some(k) = &config.kubernetes else {
        return Ok(None);
    };
    let identities = Identities::with_istio_names(config.istio.is_some());
    let feed = Arc::clone(&identities);
    let kubeconfig = k.kubeconfig.clone();
    let (started, client_made) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("kubernetes".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(r) => r,
                Err(e) => {
                    let _ = started.send(Err(anyhow::anyhow!(e)));
                    return;
                }
            };
            runtime.block_on(async move {
                match watch::client(kubeconfig.as_deref()).await {
                    Ok(client) => {
                        let _ = started.send(Ok(()));
                        watch::run(client, feed).await;
                    }
                    Err(e) => {
                        let _ = started.send(Err(e));
                    }
                }
            });
        })
        .context("cannot start the Kubernetes watch")?;
    client_made
        .recv()
        .context("the Kubernetes watch ended at start")?
        .context("--kubernetes")?;
    if let Source::File { .. } = config.source {
        let deadline = std::time::Instant::now() + KUBERNETES_SYNC_WAIT;
        while !identities.with_index(|i| i.synced()) {
            if std::time::Instant::now() > deadline {
                eprintln!(
                    "tcp-exporter: kubernetes: the first lists did not complete in {}s; \
                     addresses read `unknown`",
                    KUBERNETES_SYNC_WAIT.as_secs()
                );
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    Ok(Some(identities))
}

/// What `-r` or `-i` opened: the file, or each named interface's sources
/// (globs are opened by the supervisor as they match).
enum Sources {
    File(PcapFile),
    Live(Vec<(String, Vec<Box<dyn SourceLoop>>)>),
}

fn open_sources(config: &Config) -> Result<Sources> {
    Ok(match &config.source {
        Source::File { path, .. } => Sources::File(PcapFile::open(path, &config.filter)?),
        Source::Live { interfaces } => {
            let opts = live_options(config);
            // Every named interface is opened before anything runs: a bad
            // name or a missing privilege fails the start, with the reason.
            let mut opened = Vec::new();
            for name in interfaces.iter().filter(|n| !supervisor::is_glob(n)) {
                opened.push((name.clone(), open_interface(name, config, &opts)?));
            }
            Sources::Live(opened)
        }
    })
}

/// Runs the capture (a file, or live interfaces) and the HTTP server until
/// the file ends (with --print: the caller prints) or a signal comes.
fn capture(
    config: &Config,
    sources: Sources,
    listener: Option<std::net::TcpListener>,
    shards: ShardConfig,
    exporter: &Arc<Exporter>,
    stop: &Arc<AtomicBool>,
) -> Result<()> {
    let start = |source: Box<dyn SourceLoop>| start(source, config, &shards, exporter, stop);
    match (sources, listener) {
        (Sources::File(source), None) => {
            let handle = start(Box::new(source))?;
            join(handle)
        }
        (Sources::File(source), Some(listener)) => {
            let ready = Arc::new(AtomicBool::new(false));
            let handle = start(Box::new(source))?;
            let marker = Arc::clone(&ready);
            let reader = std::thread::spawn(move || {
                let result = join(handle);
                marker.store(true, Ordering::Relaxed);
                result
            });
            let served = serve(config, listener, exporter, ready, stop);
            let read = reader.join();
            served?;
            match read {
                Ok(result) => result,
                Err(_) => anyhow::bail!("the file reader panicked"),
            }
        }
        (Sources::Live(opened), Some(listener)) => {
            let Source::Live { interfaces } = &config.source else {
                unreachable!("live sources come from -i")
            };
            let captures = LiveCaptures {
                config: config.clone(),
                shards: shards.clone(),
                exporter: Arc::clone(exporter),
                made: HashMap::new(),
            };
            let limits = Limits {
                max_interfaces: config.max_interfaces,
                forget_after: Duration::from_nanos(config.series_ttl),
            };
            let sup = Supervisor::new(captures, interfaces, opened, limits)?;
            let sup_stop = Arc::clone(stop);
            let supervisor = std::thread::Builder::new()
                .name("supervisor".into())
                .spawn(move || sup.run(&sup_stop))
                .context("cannot start the interface supervisor")?;
            let served = serve(
                config,
                listener,
                exporter,
                Arc::new(AtomicBool::new(true)),
                stop,
            );
            if supervisor.join().is_err() {
                anyhow::bail!("the interface supervisor panicked");
            }
            served
        }
        (Sources::Live(_), None) => unreachable!("live capture always serves HTTP"),
    }
}

/// Opens the capture sources of one interface: one libpcap handle or
/// eBPF attachment, or `workers` AF_PACKET sockets joined in a fanout
/// group of their own (`group`).
fn open_sources_of(
    name: &str,
    config: &Config,
    opts: &LiveOptions,
    group: u16,
) -> Result<Vec<Box<dyn SourceLoop>>> {
    let mut sources: Vec<Box<dyn SourceLoop>> = Vec::new();
    match &config.backend {
        Backend::Pcap => sources.push(Box::new(PcapLive::open(name, opts)?)),
        Backend::AfPacket {
            workers,
            block_size,
            block_count,
            block_timeout_ms,
        } => {
            let ring = AfPacketOptions {
                snaplen: opts.snaplen,
                filter: opts.filter.clone(),
                block_size: *block_size,
                block_count: *block_count,
                block_timeout_ms: *block_timeout_ms,
                read_timeout_ms: opts.read_timeout_ms,
            };
            for _ in 0..*workers {
                sources.push(Box::new(AfPacket::open(name, &ring, Some(group))?));
            }
        }
        Backend::Xdp {
            attach,
            ring_bytes,
            count,
        } => {
            let xdp = XdpOptions {
                attach: *attach,
                ring_bytes: *ring_bytes,
                read_timeout_ms: opts.read_timeout_ms,
                count: *count,
            };
            sources.push(open_xdp(name, &xdp)?);
        }
    }
    Ok(sources)
}

/// A fanout group id of this process's own (distinct from other
/// processes' as far as the PID makes it so), the `n`th.
fn fanout_group(n: u16) -> u16 {
    (std::process::id() as u16).wrapping_mul(64).wrapping_add(n)
}

fn open_interface(
    name: &str,
    config: &Config,
    opts: &LiveOptions,
) -> Result<Vec<Box<dyn SourceLoop>>> {
    static GROUPS: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(0);
    let group = fanout_group(GROUPS.fetch_add(1, Ordering::Relaxed));
    open_sources_of(name, config, opts, group)
}

fn live_options(config: &Config) -> LiveOptions {
    LiveOptions {
        snaplen: config.snaplen,
        filter: config.filter.clone(),
        promisc: config.promisc,
        buffer_bytes: config.buffer_bytes,
        read_timeout_ms: READ_TIMEOUT_MS,
    }
}

/// What the supervisor needs: opening interfaces, and their shards.
struct LiveCaptures {
    config: Config,
    shards: ShardConfig,
    exporter: Arc<Exporter>,
    /// Shards by interface and worker, kept across reopens.
    made: HashMap<(String, usize), Arc<Mutex<Shard>>>,
}

impl Captures for LiveCaptures {
    fn open(&mut self, name: &str) -> Result<Vec<Box<dyn SourceLoop>>> {
        let caps = capture_capabilities(&self.config);
        privileges::with_these(&caps, || {
            open_interface(name, &self.config, &live_options(&self.config))
        })
    }

    fn shard(&mut self, name: &str, worker: usize) -> Arc<Mutex<Shard>> {
        let exporter = &self.exporter;
        let shards = &self.shards;
        Arc::clone(
            self.made
                .entry((name.to_string(), worker))
                .or_insert_with(|| {
                    let shard = Arc::new(Mutex::new(Shard::new(
                        name.into(),
                        exporter.interface_id(name),
                        shards.clone(),
                    )));
                    exporter.add_shard(Arc::clone(&shard));
                    shard
                }),
        )
    }

    fn shards(&self) -> Vec<Arc<Mutex<Shard>>> {
        self.made.values().cloned().collect()
    }

    fn forget(&mut self, name: &str) {
        self.made.retain(|(made, _), shard| {
            if made != name {
                return true;
            }
            // Its flows were let go when it went away: the flow log's last
            // records are written now.
            shard.lock().unwrap_or_else(|e| e.into_inner()).finish();
            false
        });
        self.exporter.forget_interface(name);
    }

    fn refused(&mut self, _name: &str) {
        self.exporter.count_refused_interface();
    }

    /// `--max-flows` is per interface: a fanout group's workers share it
    /// (the kernel spreads flows evenly over them).
    fn worker(&self, source: &dyn PacketSource, of: usize) -> Worker {
        let max_flows = self.config.max_flows.div_ceil(of.max(1));
        Worker::new(source.link_type(), max_flows, self.config.idle_timeout)
            .with_tunnel_ports(self.config.tunnel_ports)
    }
}

/// Loads and attaches the eBPF programs on one interface.
#[cfg(feature = "xdp")]
fn open_xdp(name: &str, opts: &XdpOptions) -> Result<Box<dyn SourceLoop>> {
    let source = tcp_exporter::capture::XdpCapture::open(name, opts)?;
    eprintln!(
        "tcp-exporter: {name}: XDP attached in {} mode{}",
        source.mode().as_str(),
        if source.watches_egress() {
            ", TC on egress"
        } else {
            " (loopback: ingress sees every packet once)"
        }
    );
    Ok(Box::new(source))
}

#[cfg(not(feature = "xdp"))]
fn open_xdp(_name: &str, _opts: &XdpOptions) -> Result<Box<dyn SourceLoop>> {
    anyhow::bail!(
        "this tcp-exporter was built without the xdp backend: build it with \
         `cargo build --release --features xdp` (`make build FEATURES=xdp` installs clang \
         and the headers it needs), or use --backend af-packet"
    )
}

/// Starts the capture loop of a file on its own thread, with its shard.
fn start(
    source: Box<dyn SourceLoop>,
    config: &Config,
    shards: &ShardConfig,
    exporter: &Arc<Exporter>,
    stop: &Arc<AtomicBool>,
) -> Result<(CaptureThread, Arc<Mutex<Shard>>)> {
    let name = source.name().to_string();
    let shard = Arc::new(Mutex::new(Shard::new(
        name.as_str().into(),
        exporter.interface_id(&name),
        shards.clone(),
    )));
    exporter.add_shard(Arc::clone(&shard));
    let worker = Worker::new(source.link_type(), config.max_flows, config.idle_timeout)
        .with_tunnel_ports(config.tunnel_ports);
    let thread = pipeline::spawn(source, worker, Arc::clone(&shard), Arc::clone(stop))
        .with_context(|| format!("cannot start the capture thread of {name}"))?;
    Ok((thread, shard))
}

/// Waits for a file's capture loop, then finishes its shard (the last
/// flow-log records of connections still tracked).
fn join((thread, shard): (CaptureThread, Arc<Mutex<Shard>>)) -> Result<()> {
    let joined = thread.join();
    shard.lock().unwrap_or_else(|e| e.into_inner()).finish();
    match joined {
        Ok((result, _)) => result.map(|_| ()).map_err(Into::into),
        Err(_) => anyhow::bail!("a capture thread panicked"),
    }
}

/// Serves HTTP until SIGINT or SIGTERM, or until it fails to start; then
/// sets `stop` either way, so that the capture threads end and can be
/// joined (and with them the flow log's writer).
fn serve(
    config: &Config,
    listener: std::net::TcpListener,
    exporter: &Arc<Exporter>,
    ready: Arc<AtomicBool>,
    stop: &Arc<AtomicBool>,
) -> Result<()> {
    let result = serve_until_signal(config, listener, exporter, ready);
    stop.store(true, Ordering::Relaxed);
    result
}

fn serve_until_signal(
    config: &Config,
    listener: std::net::TcpListener,
    exporter: &Arc<Exporter>,
    ready: Arc<AtomicBool>,
) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the HTTP runtime")?;
    let state = HttpState {
        exporter: Arc::clone(exporter),
        ready,
        web: config.web.clone(),
    };
    runtime.block_on(async {
        let (addr, server) = http::serve(listener, state, shutdown_signal()?)?;
        let scheme = if config.web.tls.is_some() {
            "https"
        } else {
            "http"
        };
        eprintln!("tcp-exporter: serving {scheme}://{addr}/metrics");
        server.await;
        Ok::<(), anyhow::Error>(())
    })
}

/// How long the exporter may take to stop after SIGINT or SIGTERM before
/// it exits anyway (with status 1, saying so).
const STOP_DEADLINE: std::time::Duration = std::time::Duration::from_secs(5);

/// Resolves on SIGINT or SIGTERM. The handlers are installed when this is
/// called, not when the future is first polled, so a signal that comes
/// right after start is not lost to the default action. Once a signal has
/// come, a watchdog ends the process if stopping takes longer than
/// `STOP_DEADLINE`: the handlers stay installed, so nothing else would.
fn shutdown_signal() -> Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("watching SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("watching SIGINT")?;
    Ok(async move {
        let name = tokio::select! {
            _ = int.recv() => "SIGINT",
            _ = term.recv() => "SIGTERM",
        };
        eprintln!("tcp-exporter: {name}: stopping");
        std::thread::spawn(|| {
            std::thread::sleep(STOP_DEADLINE);
            eprintln!(
                "tcp-exporter: did not stop within {}s of the signal; exiting",
                STOP_DEADLINE.as_secs()
            );
            std::process::exit(1);
        });
    })
}
