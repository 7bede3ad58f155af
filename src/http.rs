//! HTTP: `/metrics` (Prometheus text format, rendered when scraped),
//! `/healthz`, `/readyz`, and a landing page at `/`. Only GET and HEAD.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use warp::http::{Response, StatusCode};
use warp::Filter;

use crate::metrics::Exporter;

/// What the routes read.
pub struct HttpState {
    pub exporter: Arc<Exporter>,
    /// Set once every capture is open (or the file has been read).
    pub ready: Arc<AtomicBool>,
}

const LANDING: &str = "<!doctype html>
<html><head><title>tcp-exporter</title></head>
<body><h1>tcp-exporter</h1>
<p>Passive TCP analysis as Prometheus metrics.</p>
<ul><li><a href=\"metrics\">metrics</a></li>
<li><a href=\"healthz\">healthz</a></li>
<li><a href=\"readyz\">readyz</a></li></ul>
</body></html>
";

/// Binds `addr` and serves until `shutdown` resolves. Binding happens
/// before this returns, so a taken port is an error here, not later.
pub fn bind(
    addr: SocketAddr,
    state: Arc<HttpState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(SocketAddr, impl Future<Output = ()>), warp::Error> {
    let get = warp::get().or(warp::head()).unify();

    let metrics_state = Arc::clone(&state);
    let metrics = warp::path!("metrics").map(move || {
        let body = metrics_state.exporter.render();
        Response::builder()
            .header("content-type", "text/plain; version=0.0.4; charset=utf-8")
            .body(body)
            .expect("static headers are valid")
    });
    let healthz = warp::path!("healthz").map(|| "ok\n");
    let ready_state = Arc::clone(&state);
    let readyz = warp::path!("readyz").map(move || {
        if ready_state.ready.load(Ordering::Relaxed) {
            warp::reply::with_status("ready\n", StatusCode::OK)
        } else {
            warp::reply::with_status("not ready\n", StatusCode::SERVICE_UNAVAILABLE)
        }
    });
    let landing = warp::path::end().map(|| warp::reply::html(LANDING));

    let routes = get.and(metrics.or(healthz).or(readyz).or(landing));
    warp::serve(routes).try_bind_with_graceful_shutdown(addr, shutdown)
}
