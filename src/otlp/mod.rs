//! OpenTelemetry export (`--otlp-endpoint`): every `--otlp-interval`, what
//! a scrape of `/metrics` would serve, sent to an OTLP receiver (an
//! OpenTelemetry Collector) as OTLP metrics, over gRPC (`grpc`, port 4317)
//! or HTTP with protobuf bodies (`http`, port 4318, `/v1/metrics`).
//!
//! A thread of its own does it, on a runtime of its own: the capture never
//! waits for the receiver. The metrics are cumulative, so an export that
//! fails loses nothing the next one does not carry: a failure is counted
//! (`tcp_exporter_otlp_exports_total{result="failed"}`) and the next try
//! waits twice as long, up to `MAX_BACKOFF`, then the interval again once
//! one succeeds.
//!
//! The messages are built with opentelemetry-proto's types (`convert`),
//! not the OpenTelemetry SDK's instruments: the SDK records values and
//! aggregates them itself, and has no way to hand over histograms that are
//! aggregated already, as the exporter's are.

pub mod convert;
pub mod logs;
pub mod split;
pub mod tls;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{ResourceMetrics, ScopeMetrics};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;

use crate::metrics::collector::ExportStats;
use crate::metrics::Exporter;

/// Default `--otlp-interval`, in seconds.
pub const DEFAULT_INTERVAL_SECS: u64 = 5;
/// Default `--otlp-timeout`, in seconds.
pub const DEFAULT_TIMEOUT_SECS: u64 = 10;
/// The longest wait after failures before the next try.
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// How the receiver is spoken to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Protocol {
    /// OTLP/gRPC.
    Grpc,
    /// OTLP/HTTP, protobuf bodies.
    Http,
}

/// `--otlp-*`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OtlpConfig {
    /// `http://HOST:PORT` (gRPC) or `http://HOST:PORT[/PATH]` (HTTP: the
    /// signal's path, `/v1/metrics`, is added to it).
    pub endpoint: String,
    pub protocol: Protocol,
    pub interval: Duration,
    pub timeout: Duration,
    /// `--otlp-header NAME=VALUE`, sent with every export.
    pub headers: Vec<(String, String)>,
    /// The resource's attributes: `service.name`, `service.version`,
    /// `host.name`, `k8s.node.name`, `k8s.cluster.name` where known.
    pub resource: Vec<(String, String)>,
    /// `--otlp-logs`: the flow log's records as OTLP logs too.
    pub logs: bool,
    /// `--otlp-log-queue`: most log records waiting to be sent.
    pub log_queue: usize,
    /// With an `https://` endpoint: what checks the receiver, and what it
    /// may check of us.
    pub tls: Option<tls::TlsMaterial>,
}

impl PartialEq for tls::TlsMaterial {
    fn eq(&self, o: &Self) -> bool {
        self.ca_pem == o.ca_pem && self.identity_pem == o.identity_pem
    }
}

impl Eq for tls::TlsMaterial {}

impl OtlpConfig {
    /// Checks the endpoint: a plain `http://` URL with a host and a port.
    pub fn check(&self) -> Result<()> {
        let uri: hyper::Uri = self
            .endpoint
            .parse()
            .with_context(|| format!("--otlp-endpoint {:?} is not a URL", self.endpoint))?;
        match (uri.scheme_str(), &self.tls) {
            (Some("http"), None) | (Some("https"), Some(_)) => {}
            (Some("http"), Some(_)) => bail!(
                "--otlp-endpoint {:?}: --otlp-ca, --otlp-cert and --otlp-key are for an \
                 https:// endpoint",
                self.endpoint
            ),
            _ => bail!(
                "--otlp-endpoint {:?}: use http://HOST:PORT or https://HOST:PORT",
                self.endpoint
            ),
        }
        if uri.host().is_none() {
            bail!("--otlp-endpoint {:?} has no host", self.endpoint);
        }
        Ok(())
    }
}

/// This machine's name (`host.name`), if it has one.
pub fn host_name() -> Option<String> {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname(2) writes at most buf.len() bytes into buf.
    let r = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if r != 0 {
        return None;
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    std::str::from_utf8(&buf[..end])
        .ok()
        .filter(|s| !s.is_empty())
        .map(String::from)
}

fn now_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

fn resource(config: &OtlpConfig) -> Resource {
    Resource {
        attributes: config
            .resource
            .iter()
            .map(|(k, v)| convert::string(k, v))
            .collect(),
        ..Resource::default()
    }
}

fn scope() -> InstrumentationScope {
    InstrumentationScope {
        name: "tcp-exporter".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        ..InstrumentationScope::default()
    }
}

/// One export request of flow-log records.
fn logs_request(config: &OtlpConfig, log_records: Vec<LogRecord>) -> ExportLogsServiceRequest {
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(resource(config)),
            scope_logs: vec![ScopeLogs {
                scope: Some(scope()),
                log_records,
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    }
}

/// Starts the thread that exports every interval, for as long as the
/// exporter runs.
pub fn start(
    exporter: Arc<Exporter>,
    config: OtlpConfig,
    stats: Arc<ExportStats>,
    logs: Option<Arc<logs::LogQueue>>,
) -> Result<()> {
    config.check()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the OTLP exporter's runtime")?;
    let start = now_nanos();
    std::thread::Builder::new()
        .name("otlp".into())
        .spawn(move || runtime.block_on(run(exporter, config, stats, logs, start)))
        .context("cannot start the OTLP exporter's thread")?;
    Ok(())
}

/// Exports every interval, for ever: the metrics, then the flow log's
/// records waiting, over one connection. A failure of either is counted
/// (by signal), said once, and doubles the wait before the next try, up to
/// `MAX_BACKOFF`.
async fn run(
    exporter: Arc<Exporter>,
    config: OtlpConfig,
    stats: Arc<ExportStats>,
    logs: Option<Arc<logs::LogQueue>>,
    start: u64,
) {
    use std::sync::atomic::Ordering::Relaxed;
    let mut wait = config.interval;
    let mut failing = false;
    loop {
        tokio::time::sleep(wait).await;
        let mut connection = within(&config, Connection::open(&config)).await;
        let mut result = match &mut connection {
            Ok(c) => send_metrics(&config, c, &exporter.render(), start).await,
            Err(e) => Err(anyhow::anyhow!("{e:#}")),
        };
        match &result {
            Ok(()) => stats.metrics_ok.fetch_add(1, Relaxed),
            Err(_) => stats.metrics_failed.fetch_add(1, Relaxed),
        };
        if let (Ok(()), Ok(c), Some(queue)) = (&result, &mut connection, &logs) {
            result = send_logs(&config, c, queue, &stats).await;
        }
        match result {
            Ok(()) => {
                if failing {
                    eprintln!(
                        "tcp-exporter: OTLP export to {} works again",
                        config.endpoint
                    );
                }
                failing = false;
                wait = config.interval;
            }
            Err(e) => {
                if !failing {
                    eprintln!(
                        "tcp-exporter: OTLP export to {} failed: {e:#}; retrying, waiting up \
                         to {:?} between tries",
                        config.endpoint, MAX_BACKOFF
                    );
                }
                failing = true;
                wait = (wait * 2).min(MAX_BACKOFF).max(config.interval);
            }
        }
    }
}

/// `step`, or a failure once `--otlp-timeout` has passed.
async fn within<T>(
    config: &OtlpConfig,
    step: impl std::future::Future<Output = Result<T>>,
) -> Result<T> {
    tokio::time::timeout(config.timeout, step)
        .await
        .unwrap_or_else(|_| Err(anyhow::anyhow!("no answer within {:?}", config.timeout)))
}

/// One export's metrics, the exposition `text` converted a family at a
/// time and sent as each request fills (so that only a family's data
/// points and a request are held at once, not the whole export's); the
/// first request that fails ends it (the next export carries every total
/// again).
async fn send_metrics(
    config: &OtlpConfig,
    connection: &mut Connection,
    text: &str,
    start: u64,
) -> Result<()> {
    let now = now_nanos();
    let mut requests = split::Requests::new(split::MAX_REQUEST_BYTES);
    for family in convert::families(text) {
        for metric in convert::metrics(family, start, now) {
            for full in requests.push(metric) {
                send_metrics_request(config, connection, full).await?;
            }
        }
    }
    if let Some(last) = requests.finish() {
        send_metrics_request(config, connection, last).await?;
    }
    Ok(())
}

async fn send_metrics_request(
    config: &OtlpConfig,
    connection: &mut Connection,
    metrics: Vec<opentelemetry_proto::tonic::metrics::v1::Metric>,
) -> Result<()> {
    let request = ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(resource(config)),
            scope_metrics: vec![ScopeMetrics {
                scope: Some(scope()),
                metrics,
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    };
    within(config, connection.metrics(config, request)).await
}

/// Sends what the log queue holds, a request at a time; a request that
/// fails puts its records back in the queue.
async fn send_logs(
    config: &OtlpConfig,
    connection: &mut Connection,
    queue: &logs::LogQueue,
    stats: &ExportStats,
) -> Result<()> {
    use std::sync::atomic::Ordering::Relaxed;
    loop {
        let batch = queue.take(split::MAX_REQUEST_BYTES);
        if batch.is_empty() {
            return Ok(());
        }
        let n = batch.len() as u64;
        let request = logs_request(config, batch.clone());
        match within(config, connection.logs(config, request)).await {
            Ok(()) => {
                stats.logs_ok.fetch_add(1, Relaxed);
                stats.log_records_sent.fetch_add(n, Relaxed);
            }
            Err(e) => {
                stats.logs_failed.fetch_add(1, Relaxed);
                queue.put_back(batch);
                return Err(e.context("sending the flow log's records"));
            }
        }
    }
}

/// A connection to the receiver, opened for one export and used for all
/// of its requests.
enum Connection {
    Grpc(tonic::transport::Channel),
    Http(HttpConnection),
}

impl Connection {
    async fn open(config: &OtlpConfig) -> Result<Connection> {
        Ok(match config.protocol {
            Protocol::Grpc => Connection::Grpc(channel(config).await?),
            Protocol::Http => Connection::Http(HttpConnection::open(config).await?),
        })
    }

    async fn metrics(
        &mut self,
        config: &OtlpConfig,
        request: ExportMetricsServiceRequest,
    ) -> Result<()> {
        match self {
            Connection::Grpc(channel) => {
                let mut client = MetricsServiceClient::new(channel.clone());
                let answer = client
                    .export(with_headers(config, request)?)
                    .await
                    .context("the receiver refused")?;
                if let Some(partial) = answer.into_inner().partial_success {
                    if partial.rejected_data_points > 0 {
                        bail!(
                            "the receiver rejected {} data points: {}",
                            partial.rejected_data_points,
                            partial.error_message
                        );
                    }
                }
                Ok(())
            }
            Connection::Http(http) => {
                http.post(config, "/v1/metrics", request.encode_to_vec())
                    .await
            }
        }
    }

    async fn logs(&mut self, config: &OtlpConfig, request: ExportLogsServiceRequest) -> Result<()> {
        match self {
            Connection::Grpc(channel) => {
                let mut client = LogsServiceClient::new(channel.clone());
                let answer = client
                    .export(with_headers(config, request)?)
                    .await
                    .context("the receiver refused")?;
                if let Some(partial) = answer.into_inner().partial_success {
                    if partial.rejected_log_records > 0 {
                        bail!(
                            "the receiver rejected {} log records: {}",
                            partial.rejected_log_records,
                            partial.error_message
                        );
                    }
                }
                Ok(())
            }
            Connection::Http(http) => http.post(config, "/v1/logs", request.encode_to_vec()).await,
        }
    }
}

async fn channel(config: &OtlpConfig) -> Result<tonic::transport::Channel> {
    use tonic::transport::{Certificate, ClientTlsConfig, Identity};
    let mut endpoint = tonic::transport::Endpoint::from_shared(config.endpoint.clone())?
        .connect_timeout(config.timeout);
    if let Some(tls) = &config.tls {
        let mut c = ClientTlsConfig::new();
        c = match &tls.ca_pem {
            Some(pem) => c.ca_certificate(Certificate::from_pem(pem)),
            None => c.with_native_roots(),
        };
        if let Some((cert, key)) = &tls.identity_pem {
            c = c.identity(Identity::from_pem(cert, key));
        }
        endpoint = endpoint.tls_config(c).context("TLS")?;
    }
    endpoint.connect().await.context("cannot connect")
}

/// A gRPC request with the configured headers.
fn with_headers<T>(config: &OtlpConfig, message: T) -> Result<tonic::Request<T>> {
    let mut request = tonic::Request::new(message);
    for (name, value) in &config.headers {
        let name: tonic::metadata::MetadataKey<tonic::metadata::Ascii> =
            name.parse().context("a header name")?;
        request
            .metadata_mut()
            .insert(name, value.parse().context("a header value")?);
    }
    Ok(request)
}

/// An HTTP/1.1 connection to the receiver (kept alive between requests).
struct HttpConnection {
    sender: hyper::client::conn::http1::SendRequest<http_body_util::Full<hyper::body::Bytes>>,
    /// `HOST:PORT`, for the `Host` header.
    authority: String,
    /// The endpoint's path, before the signal's.
    prefix: String,
}

impl HttpConnection {
    async fn open(config: &OtlpConfig) -> Result<HttpConnection> {
        let base: hyper::Uri = config.endpoint.parse()?;
        let host = base.host().context("no host")?.to_string();
        let port = base.port_u16().unwrap_or(match config.tls {
            Some(_) => 443,
            None => 80,
        });
        // An IPv6 literal comes in brackets, which connecting does not want.
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let stream = tokio::net::TcpStream::connect((bare, port))
            .await
            .context("cannot connect")?;
        let sender = match &config.tls {
            None => {
                let io = hyper_util::rt::TokioIo::new(stream);
                let (sender, connection) = hyper::client::conn::http1::handshake(io).await?;
                tokio::spawn(connection);
                sender
            }
            Some(tls) => {
                let name = rustls::pki_types::ServerName::try_from(bare.to_string())
                    .context("the endpoint's host as a TLS name")?;
                let stream = tokio_rustls::TlsConnector::from(std::sync::Arc::clone(&tls.client))
                    .connect(name, stream)
                    .await
                    .context("TLS handshake")?;
                let io = hyper_util::rt::TokioIo::new(stream);
                let (sender, connection) = hyper::client::conn::http1::handshake(io).await?;
                tokio::spawn(connection);
                sender
            }
        };
        Ok(HttpConnection {
            sender,
            authority: format!("{host}:{port}"),
            prefix: base.path().trim_end_matches('/').to_string(),
        })
    }

    /// POSTs a protobuf body to the endpoint's `path`, and reads the whole
    /// answer (so the connection can take the next request).
    async fn post(&mut self, config: &OtlpConfig, path: &str, body: Vec<u8>) -> Result<()> {
        use http_body_util::{BodyExt, Full};
        let mut request = hyper::Request::post(format!("{}{path}", self.prefix))
            .header(hyper::header::HOST, self.authority.as_str())
            .header(hyper::header::CONTENT_TYPE, "application/x-protobuf");
        for (name, value) in &config.headers {
            request = request.header(name.as_str(), value.as_str());
        }
        let body: Full<hyper::body::Bytes> = Full::new(body.into());
        self.sender.ready().await.context("the connection closed")?;
        let answer = self.sender.send_request(request.body(body)?).await?;
        let status = answer.status();
        let body = answer.into_body().collect().await.map(|b| b.to_bytes());
        if !status.is_success() {
            let text = body
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default();
            bail!("the receiver answered {status}: {}", text.trim());
        }
        body.context("reading the answer")?;
        Ok(())
    }
}
