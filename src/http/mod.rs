//! HTTP: `/metrics` (Prometheus text format, rendered when scraped, gzip
//! when the client takes it), the live connection table (`/connections`
//! as JSON, `/connections.html` as a page: `connections`), `/healthz`,
//! `/readyz`, and a landing page at `/`, over HTTP/1.1, plain or with TLS
//! and basic authentication from `--web.config.file` (`webconfig`, `tls`,
//! `auth`).
//!
//! Connections are this module's own (an accept loop and hyper 1's HTTP/1
//! connection, with the bounds below); the routes are warp filters
//! (`routes`), run as each connection's service.
//!
//! It owns the exporter's exposure to the network, so every resource a
//! client can hold is bounded, and what a bound turns away is counted in
//! `tcp_exporter_http_rejections_total{reason}`:
//! - at most `MAX_CONNECTIONS` connections (more are closed at once);
//! - a TLS handshake, and a new connection's first request, must come
//!   within `HEADER_TIMEOUT`; headers are at most `MAX_HEADER_BYTES`;
//! - a connection with no request for `IDLE_TIMEOUT` is closed (hyper's
//!   header timer, which runs while a kept-alive connection waits, is set
//!   to it, so a later request's headers have that long too);
//! - a request must be answered within `RESPONSE_TIMEOUT` (a client that
//!   then takes the body too slowly is cut by the idle timeout, counted as
//!   `idle_timeout`);
//! - only GET and HEAD, only the six paths, and no request body;
//! - one pass over the connection table at a time, passes at least
//!   `connections::TABLE_GAP` apart; a request without a turn within
//!   `connections::TABLE_WAIT` is answered 503 (`busy`);
//! - at most `AUTH_SLOTS` bcrypt checks at once, waited for at most
//!   `AUTH_WAIT` (a credential verified before needs none).
//!
//! A scrape is rendered on the blocking pool, one at a time, so /healthz
//! answers while a large exposition is written.

pub mod auth;
pub mod connections;
pub mod tls;
pub mod webconfig;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::Empty;
use hyper::body::{Bytes, Incoming};
use hyper::header::{
    HeaderMap, HeaderName, HeaderValue, ACCEPT_ENCODING, ALLOW, AUTHORIZATION, CONNECTION,
    CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER, TRANSFER_ENCODING, VARY,
    WWW_AUTHENTICATE,
};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use tokio::time::{sleep, timeout, Instant};
use tower_service::Service as _;
use warp::filters::BoxedFilter;
use warp::reject::MethodNotAllowed;
use warp::reply::Response;
use warp::Filter;

use crate::metrics::collector::Text;
use crate::metrics::{names, Exporter};
use auth::BasicAuth;
use tls::Tls;
use webconfig::WebConfig;

/// Connections served at once; one more is closed when accepted.
pub const MAX_CONNECTIONS: usize = 64;
/// Time for a TLS handshake, and for a request's headers once begun (and
/// for the first request of a connection).
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// A request's headers, at most (hyper answers 431 beyond).
pub const MAX_HEADER_BYTES: usize = 16 * 1024;
/// A keep-alive connection with no request for this long is closed
/// (Prometheus reconnects at its next scrape).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(120);
/// Time to answer a request (a scrape's render included). The body is
/// written after: a client slow to take it is cut by `IDLE_TIMEOUT`.
pub const RESPONSE_TIMEOUT: Duration = Duration::from_secs(60);
/// bcrypt checks of credentials not verified before, at once (each takes
/// one core for tens of milliseconds): wrong passwords from anyone who can
/// reach the port cannot take more than this from capture.
pub const AUTH_SLOTS: usize = 1;
/// How long a request waits for a bcrypt slot before it is answered 429
/// (`auth_throttled`).
pub const AUTH_WAIT: Duration = Duration::from_secs(1);
/// On shutdown, time for requests in flight to finish.
const SHUTDOWN_GRACE: Duration = Duration::from_millis(500);

/// What the routes read.
pub struct HttpState {
    pub exporter: Arc<Exporter>,
    /// Set once every capture is open (or the file has been read).
    pub ready: Arc<AtomicBool>,
    pub web: WebConfig,
}

/// Why a connection or a request was turned away: the `reason` label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rejection {
    ConnectionLimit,
    TlsHandshake,
    HeaderTimeout,
    HeaderTooLarge,
    BadRequest,
    IdleTimeout,
    ResponseTimeout,
    Unauthorized,
    AuthThrottled,
    MethodNotAllowed,
    NotFound,
    RequestBody,
    Busy,
}

impl Rejection {
    const ALL: [Rejection; 13] = [
        Self::ConnectionLimit,
        Self::TlsHandshake,
        Self::HeaderTimeout,
        Self::HeaderTooLarge,
        Self::BadRequest,
        Self::IdleTimeout,
        Self::ResponseTimeout,
        Self::Unauthorized,
        Self::AuthThrottled,
        Self::MethodNotAllowed,
        Self::NotFound,
        Self::RequestBody,
        Self::Busy,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::ConnectionLimit => "connection_limit",
            Self::TlsHandshake => "tls_handshake",
            Self::HeaderTimeout => "header_timeout",
            Self::HeaderTooLarge => "header_too_large",
            Self::BadRequest => "bad_request",
            Self::IdleTimeout => "idle_timeout",
            Self::ResponseTimeout => "response_timeout",
            Self::Unauthorized => "unauthorized",
            Self::AuthThrottled => "auth_throttled",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::NotFound => "not_found",
            Self::RequestBody => "request_body",
            Self::Busy => "busy",
        }
    }
}

/// The server's own counts, written after the exporter's families.
struct Stats {
    rejections: [AtomicU64; Rejection::ALL.len()],
}

impl Stats {
    fn count(&self, r: Rejection) {
        self.rejections[r as usize].fetch_add(1, Ordering::Relaxed);
    }

    fn write(&self, out: &mut Text, open: usize) {
        out.header(names::HTTP_CONNECTIONS);
        out.sample(names::HTTP_CONNECTIONS.name, "", &[], open);
        out.header(names::HTTP_REJECTIONS);
        let mut all = Rejection::ALL;
        all.sort_by_key(|r| r.as_str());
        for r in all {
            let n = self.rejections[r as usize].load(Ordering::Relaxed);
            out.sample(
                names::HTTP_REJECTIONS.name,
                "",
                &[("reason", r.as_str())],
                n,
            );
        }
    }
}

/// Everything a connection needs.
struct Server {
    state: HttpState,
    auth: Option<BasicAuth>,
    tls: Option<Tls>,
    /// `http_server_config.headers`, added to every response.
    headers: Vec<(HeaderName, HeaderValue)>,
    stats: Stats,
    connections: Arc<Semaphore>,
    /// Places for bcrypt checks (`AUTH_SLOTS`).
    auth_slots: Arc<Semaphore>,
    /// The connection table's turn, and when its last pass ended.
    table_turn: Arc<tokio::sync::Mutex<Option<Instant>>>,
    /// One render at a time: concurrent scrapes wait rather than each
    /// holding a whole exposition in memory.
    render: Mutex<()>,
}

impl Server {
    fn open_connections(&self) -> usize {
        MAX_CONNECTIONS - self.connections.available_permits()
    }
}

const LANDING: &str = "<!doctype html>
<html><head><title>tcp-exporter</title></head>
<body><h1>tcp-exporter</h1>
<p>Passive TCP analysis as Prometheus metrics.</p>
<ul><li><a href=\"metrics\">metrics</a></li>
<li><a href=\"connections.html\">connections</a> (the live connection table;
<a href=\"connections\">as JSON</a>)</li>
<li><a href=\"healthz\">healthz</a></li>
<li><a href=\"readyz\">readyz</a></li></ul>
</body></html>
";

/// Serves on a bound listener (bound early, before the process gives up
/// its privileges), with the TLS files loaded first when the web config has
/// them, so that a bad certificate fails the start. Returns the address and
/// the server, which runs until `shutdown` resolves. Call it within a tokio
/// runtime.
pub fn serve(
    listener: std::net::TcpListener,
    state: HttpState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<(SocketAddr, impl Future<Output = ()>)> {
    let tls = match &state.web.tls {
        Some(settings) => Some(
            Tls::load(settings.clone())
                .map_err(|e| anyhow::anyhow!("--web.config.file: TLS: {e}"))?,
        ),
        None => None,
    };
    let auth = (!state.web.users.is_empty()).then(|| BasicAuth::new(state.web.users.clone()));
    let mut headers = Vec::new();
    for (name, value) in &state.web.headers {
        match (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            (Ok(n), Ok(v)) => headers.push((n, v)),
            _ => anyhow::bail!("--web.config.file: header {name:?}: not a valid header value"),
        }
    }
    listener.set_nonblocking(true)?;
    let listener = TcpListener::from_std(listener)?;
    let bound = listener.local_addr()?;
    let server = Arc::new(Server {
        state,
        auth,
        tls,
        headers,
        stats: Stats {
            rejections: Default::default(),
        },
        connections: Arc::new(Semaphore::new(MAX_CONNECTIONS)),
        auth_slots: Arc::new(Semaphore::new(AUTH_SLOTS)),
        table_turn: Arc::new(tokio::sync::Mutex::new(None)),
        render: Mutex::new(()),
    });
    Ok((bound, accept_loop(listener, server, shutdown)))
}

async fn accept_loop(
    listener: TcpListener,
    server: Arc<Server>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let mut shutdown = pin!(shutdown);
    let routes = routes(&server);
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        // Out of descriptors, most likely: wait, do not spin.
                        eprintln!("tcp-exporter: http: accept: {e}");
                        sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let Ok(permit) = Arc::clone(&server.connections).try_acquire_owned() else {
                    server.stats.count(Rejection::ConnectionLimit);
                    drop(stream);
                    continue;
                };
                let server = Arc::clone(&server);
                let routes = routes.clone();
                let stop = stop_rx.clone();
                connections.spawn(async move {
                    connection(stream, &server, &routes, stop).await;
                    drop(permit);
                });
            }
        }
    }
    // Requests in flight get a moment to finish; then everything is cut.
    let _ = stop_tx.send(true);
    let _ = timeout(SHUTDOWN_GRACE, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    connections.abort_all();
}

async fn connection(
    stream: TcpStream,
    server: &Arc<Server>,
    routes: &Routes,
    stop: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    match &server.tls {
        None => serve_connection(stream, server, routes, stop).await,
        Some(tls) => match timeout(HEADER_TIMEOUT, tls.acceptor().accept(stream)).await {
            Ok(Ok(stream)) => serve_connection(stream, server, routes, stop).await,
            // A failed handshake (a plain-HTTP client, an untrusted client
            // certificate) or one that took too long.
            Ok(Err(_)) | Err(_) => server.stats.count(Rejection::TlsHandshake),
        },
    }
}

/// Requests of one connection, as the service records them.
#[derive(Default)]
struct Activity {
    /// Requests begun.
    requests: AtomicU64,
    in_flight: AtomicBool,
    /// Start of the request in flight, or end of the last one; ms since
    /// the connection opened.
    since_ms: AtomicU64,
}

#[derive(Clone, Copy, PartialEq, Eq)]
struct Snapshot {
    requests: u64,
    in_flight: bool,
    since: Duration,
}

impl Activity {
    fn mark(&self, opened: Instant, in_flight: bool) {
        if in_flight {
            self.requests.fetch_add(1, Ordering::Relaxed);
        }
        self.since_ms
            .store(opened.elapsed().as_millis() as u64, Ordering::Relaxed);
        self.in_flight.store(in_flight, Ordering::Relaxed);
    }

    fn snapshot(&self) -> Snapshot {
        Snapshot {
            requests: self.requests.load(Ordering::Relaxed),
            in_flight: self.in_flight.load(Ordering::Relaxed),
            since: Duration::from_millis(self.since_ms.load(Ordering::Relaxed)),
        }
    }
}

impl Snapshot {
    /// How long the connection may stay as it is, and what it is called
    /// when it stays longer.
    fn limit(&self) -> (Duration, Rejection) {
        if self.in_flight {
            (RESPONSE_TIMEOUT, Rejection::ResponseTimeout)
        } else if self.requests == 0 {
            (HEADER_TIMEOUT, Rejection::HeaderTimeout)
        } else {
            (IDLE_TIMEOUT, Rejection::IdleTimeout)
        }
    }
}

async fn serve_connection<I>(
    io: I,
    server: &Arc<Server>,
    routes: &Routes,
    mut stop: watch::Receiver<bool>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let opened = Instant::now();
    let activity = Arc::new(Activity::default());
    let service = {
        let server = Arc::clone(server);
        let activity = Arc::clone(&activity);
        let routes = warp::service(routes.clone());
        service_fn(move |req: Request<Incoming>| {
            let server = Arc::clone(&server);
            let activity = Arc::clone(&activity);
            let mut routes = routes.clone();
            async move {
                activity.mark(opened, true);
                let mut response = match refused_before_routing(&server, &req) {
                    Some(r) => r,
                    None => {
                        // No body gets this far (refused above): the routes
                        // see an empty one.
                        let req = req.map(|_| Empty::<Bytes>::new());
                        match routes.call(req).await {
                            Ok(r) => r,
                            Err(never) => match never {},
                        }
                    }
                };
                for (name, value) in &server.headers {
                    response.headers_mut().insert(name, value.clone());
                }
                activity.mark(opened, false);
                Ok::<_, Infallible>(response)
            }
        })
    };
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .keep_alive(true)
        // hyper's header timer also runs while a kept-alive connection
        // waits for its next request: at the idle timeout it bounds both.
        // A new connection's first request is held to HEADER_TIMEOUT by the
        // loop below.
        .header_read_timeout(IDLE_TIMEOUT)
        .max_buf_size(MAX_HEADER_BYTES.max(8192));
    let mut conn = pin!(builder.serve_connection(TokioIo::new(io), service));
    // Once closing: the time by which the connection is cut if the close
    // has not finished.
    let mut cut_at: Option<Instant> = None;
    loop {
        let snap = activity.snapshot();
        let (limit, reason) = snap.limit();
        let deadline = cut_at.unwrap_or(opened + snap.since + limit);
        tokio::select! {
            result = conn.as_mut() => {
                // One count per connection: none if this loop counted
                // already (it set `cut_at`), or the server is stopping.
                let counted = cut_at.is_some();
                match result {
                    _ if counted => {}
                    Err(e) if e.is_timeout() => server.stats.count(
                        if activity.snapshot().requests == 0 {
                            Rejection::HeaderTimeout
                        } else {
                            Rejection::IdleTimeout
                        },
                    ),
                    Err(e) if e.is_parse_too_large() => server.stats.count(Rejection::HeaderTooLarge),
                    Err(e) if e.is_parse() => server.stats.count(Rejection::BadRequest),
                    // hyper's own header timer, on a connection that never
                    // sent a byte, may end it quietly: when that happens
                    // before this loop's deadline is seen, count it here.
                    Ok(()) if activity.snapshot().requests == 0
                        && opened.elapsed() >= HEADER_TIMEOUT => {
                        server.stats.count(Rejection::HeaderTimeout);
                    }
                    _ => {}
                }
                return;
            }
            _ = tokio::time::sleep_until(deadline) => {
                if cut_at.is_some() {
                    return;
                }
                if activity.snapshot() != snap {
                    // A request began or ended while this slept.
                    continue;
                }
                server.stats.count(reason);
                if snap.in_flight || reason == Rejection::HeaderTimeout {
                    // A client that does not take its response, or that
                    // has not sent its first request in time: cut it.
                    return;
                }
                conn.as_mut().graceful_shutdown();
                cut_at = Some(Instant::now() + HEADER_TIMEOUT);
            }
            Ok(()) = stop.changed(), if cut_at.is_none() => {
                conn.as_mut().graceful_shutdown();
                cut_at = Some(Instant::now() + SHUTDOWN_GRACE);
            }
        }
    }
}

/// A response with a plain-text body.
fn plain(status: StatusCode, body: impl Into<String>) -> Response {
    let body: String = body.into();
    let mut r = Response::new(body.into());
    *r.status_mut() = status;
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// The bounds that act on the request as it came, before any route is
/// looked at: its headers' size and its body.
fn refused_before_routing(server: &Server, req: &Request<Incoming>) -> Option<Response> {
    let stats = &server.stats;
    // hyper bounds its read buffer, but a request read in one go may pass
    // it: the limit is checked on what was read as well.
    let header_bytes: usize = req.uri().to_string().len()
        + req
            .headers()
            .iter()
            .map(|(n, v)| n.as_str().len() + v.len() + 4)
            .sum::<usize>();
    if header_bytes > MAX_HEADER_BYTES {
        stats.count(Rejection::HeaderTooLarge);
        let mut r = plain(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "request headers too large\n",
        );
        r.headers_mut()
            .insert(CONNECTION, HeaderValue::from_static("close"));
        return Some(r);
    }
    let has_body = req.headers().contains_key(TRANSFER_ENCODING)
        || req
            .headers()
            .get(CONTENT_LENGTH)
            .is_some_and(|v| v.as_bytes() != b"0");
    if has_body {
        stats.count(Rejection::RequestBody);
        let mut r = plain(
            StatusCode::PAYLOAD_TOO_LARGE,
            "a request body is not accepted\n",
        );
        r.headers_mut()
            .insert(CONNECTION, HeaderValue::from_static("close"));
        return Some(r);
    }
    None
}

/// The routes, as warp filters: six paths, GET and HEAD, the password
/// where one is needed, and every refusal turned into its answer and
/// counted (`answer_refusal`).
type Routes = BoxedFilter<(Response,)>;

/// Why a route refused a request, beyond what warp knows.
#[derive(Debug)]
enum Refusal {
    Unauthorized,
    AuthThrottled,
    RenderFailed,
}

impl warp::reject::Reject for Refusal {}

fn routes(server: &Arc<Server>) -> Routes {
    let with_server = {
        let server = Arc::clone(server);
        warp::any().map(move || Arc::clone(&server))
    };
    let read = warp::get().or(warp::head()).unify();
    // Health probes carry no data and must work for the kubelet, which has
    // no credentials: only the metrics and the landing page need them.
    let authorized = with_server
        .clone()
        .and(warp::header::headers_cloned())
        .and_then(authorize)
        .untuple_one();
    let healthz = warp::path!("healthz")
        .and(read)
        .map(|| plain(StatusCode::OK, "ok\n"));
    let readyz = warp::path!("readyz")
        .and(read)
        .and(with_server.clone())
        .map(|server: Arc<Server>| {
            if server.state.ready.load(Ordering::Relaxed) {
                plain(StatusCode::OK, "ready\n")
            } else {
                plain(StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
            }
        });
    let metrics = warp::path!("metrics")
        .and(read)
        .and(authorized.clone())
        .and(with_server.clone())
        .and(warp::method())
        .and(warp::header::headers_cloned())
        .and_then(metrics);
    let table = warp::path!("connections")
        .and(read)
        .and(authorized.clone())
        .and(with_server.clone())
        .and(warp::method())
        .and(warp::query::raw().or(warp::any().map(String::new)).unify())
        .and_then(connection_table);
    let page = warp::path!("connections.html")
        .and(read)
        .and(authorized.clone())
        .and(with_server.clone())
        .map(|server: Arc<Server>| {
            if server.state.exporter.has_table() {
                html(connections::PAGE)
            } else {
                table_off(&server)
            }
        });
    let landing = warp::path::end()
        .and(read)
        .and(authorized)
        .map(|| html(LANDING));
    // warp's paths take a trailing slash as the same path; the paths here
    // are exact.
    let exact = warp::path::full()
        .and_then(|path: warp::path::FullPath| async move {
            match path.as_str() {
                "/" => Ok(()),
                p if p.ends_with('/') => Err(warp::reject::not_found()),
                _ => Ok(()),
            }
        })
        .untuple_one();
    exact
        .and(
            healthz
                .or(readyz)
                .unify()
                .or(metrics)
                .unify()
                .or(table)
                .unify()
                .or(page)
                .unify()
                .or(landing)
                .unify(),
        )
        .recover({
            let server = Arc::clone(server);
            move |refused| answer_refusal(Arc::clone(&server), refused)
        })
        .unify()
        .boxed()
}

fn html(page: &'static str) -> Response {
    let mut r = Response::new(page.into());
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    r
}

/// The answer of the table's paths when it is off.
fn table_off(server: &Server) -> Response {
    server.stats.count(Rejection::NotFound);
    plain(
        StatusCode::NOT_FOUND,
        "the connection table is off (--no-connection-table)\n",
    )
}

/// The connection table as JSON: the query checked first (a bad one is
/// answered 400 with why), then the table's turn waited for (at most
/// `TABLE_WAIT`) and the selection made off the runtime, `TABLE_GAP` after
/// the last.
async fn connection_table(
    server: Arc<Server>,
    method: Method,
    query: String,
) -> Result<Response, warp::Rejection> {
    if !server.state.exporter.has_table() {
        return Ok(table_off(&server));
    }
    let q = match crate::metrics::table::Query::parse(&query) {
        Ok(q) => q,
        Err(why) => {
            server.stats.count(Rejection::BadRequest);
            return Ok(plain(StatusCode::BAD_REQUEST, format!("{why}\n")));
        }
    };
    let turn = timeout(
        connections::TABLE_WAIT,
        Arc::clone(&server.table_turn).lock_owned(),
    )
    .await;
    let Ok(mut turn) = turn else {
        server.stats.count(Rejection::Busy);
        let mut r = plain(
            StatusCode::SERVICE_UNAVAILABLE,
            "the connection table is answering other requests; try again\n",
        );
        r.headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from_static("1"));
        return Ok(r);
    };
    let s = Arc::clone(&server);
    let body = tokio::task::spawn_blocking(move || {
        if let Some(last) = *turn {
            std::thread::sleep(connections::TABLE_GAP.saturating_sub(last.elapsed()));
        }
        let table = s.state.exporter.connections(&q);
        *turn = Some(Instant::now());
        table.map(|t| connections::json(&t, &q))
    })
    .await;
    let mut r = match body {
        Ok(None) => return Ok(table_off(&server)),
        Ok(Some(Ok(_))) if method == Method::HEAD => Response::new(Default::default()),
        Ok(Some(Ok(body))) => Response::new(body.into()),
        _ => return Err(warp::reject::custom(Refusal::RenderFailed)),
    };
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(r)
}

/// Lets a request through when it carries a password that matches, or
/// when none is configured.
async fn authorize(server: Arc<Server>, headers: HeaderMap) -> Result<(), warp::Rejection> {
    let Some(auth) = &server.auth else {
        return Ok(());
    };
    let header = headers.get(AUTHORIZATION).map(|v| v.as_bytes().to_vec());
    if auth.remembered(header.as_deref()) {
        return Ok(());
    }
    // A credential not seen before costs a bcrypt run: at most AUTH_SLOTS
    // at once, so that wrong passwords cannot take the cores from capture;
    // a request that finds no place in AUTH_WAIT is turned away.
    let slot = timeout(AUTH_WAIT, Arc::clone(&server.auth_slots).acquire_owned()).await;
    let Ok(Ok(slot)) = slot else {
        return Err(warp::reject::custom(Refusal::AuthThrottled));
    };
    let checked = Arc::clone(&server);
    let ok = tokio::task::spawn_blocking(move || {
        let _slot = slot;
        checked
            .auth
            .as_ref()
            .is_some_and(|a| a.check(header.as_deref()))
    })
    .await
    .unwrap_or(false);
    if ok {
        Ok(())
    } else {
        Err(warp::reject::custom(Refusal::Unauthorized))
    }
}

/// Whether the client takes gzip (`Accept-Encoding`, with a q-value
/// above 0 if it gives one).
fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|coding| {
            let mut parts = coding.split(';').map(str::trim);
            let name = parts.next().unwrap_or("");
            let q = parts
                .find_map(|p| p.strip_prefix("q="))
                .map_or(1.0, |q| q.parse::<f32>().unwrap_or(0.0));
            (name.eq_ignore_ascii_case("gzip") || name == "*") && q > 0.0
        })
}

/// The exposition: rendered off the runtime, one scrape at a time, and
/// gzip-compressed there too when the client takes it.
async fn metrics(
    server: Arc<Server>,
    method: Method,
    headers: HeaderMap,
) -> Result<Response, warp::Rejection> {
    let gzip = accepts_gzip(&headers);
    let mut r = if method == Method::HEAD {
        Response::new(Default::default())
    } else {
        let s = Arc::clone(&server);
        let body = tokio::task::spawn_blocking(move || {
            let text = {
                let _one = s.render.lock().unwrap_or_else(|e| e.into_inner());
                let open = s.open_connections();
                s.state.exporter.render_with(|out| s.stats.write(out, open))
            };
            if gzip {
                compress(text.as_bytes())
            } else {
                Ok(text.into_bytes())
            }
        })
        .await;
        match body {
            Ok(Ok(body)) => Response::new(body.into()),
            _ => return Err(warp::reject::custom(Refusal::RenderFailed)),
        }
    };
    let h = r.headers_mut();
    h.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    h.insert(VARY, HeaderValue::from_static("Accept-Encoding"));
    if gzip {
        h.insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    Ok(r)
}

/// gzip at level 1: a scrape is compressed once and read once, so speed
/// matters more than the last few percent (docs/performance.md).
fn compress(text: &[u8]) -> std::io::Result<Vec<u8>> {
    use std::io::Write as _;
    let mut out = flate2::write::GzEncoder::new(
        Vec::with_capacity(text.len() / 8 + 64),
        flate2::Compression::fast(),
    );
    out.write_all(text)?;
    out.finish()
}

/// Turns what the routes refused into its answer, counted by reason.
async fn answer_refusal(
    server: Arc<Server>,
    refused: warp::Rejection,
) -> Result<Response, warp::Rejection> {
    let stats = &server.stats;
    let r = match refused.find::<Refusal>() {
        Some(Refusal::Unauthorized) => {
            stats.count(Rejection::Unauthorized);
            let mut r = plain(StatusCode::UNAUTHORIZED, "unauthorized\n");
            r.headers_mut().insert(
                WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"tcp-exporter\""),
            );
            r
        }
        Some(Refusal::AuthThrottled) => {
            stats.count(Rejection::AuthThrottled);
            let mut r = plain(
                StatusCode::TOO_MANY_REQUESTS,
                "too many password checks at once; try again\n",
            );
            r.headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from_static("1"));
            r
        }
        Some(Refusal::RenderFailed) => {
            plain(StatusCode::INTERNAL_SERVER_ERROR, "rendering failed\n")
        }
        None if refused.find::<MethodNotAllowed>().is_some() => {
            stats.count(Rejection::MethodNotAllowed);
            let mut r = plain(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD\n");
            r.headers_mut()
                .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
            r
        }
        None if refused.is_not_found() => {
            stats.count(Rejection::NotFound);
            plain(StatusCode::NOT_FOUND, "not found\n")
        }
        None => {
            stats.count(Rejection::BadRequest);
            plain(StatusCode::BAD_REQUEST, "bad request\n")
        }
    };
    Ok(r)
}
