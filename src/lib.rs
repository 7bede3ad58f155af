//! tcp-exporter: passive, Wireshark-grade TCP analysis as Prometheus
//! metrics.
//!
//! Data flows one way through the modules:
//! `capture` (frames) -> `decode` (segments) -> `flow` (connections and
//! what each segment did) -> `metrics` (per-worker counters, labelled at
//! scrape time) -> `http`, `flowlog` and `otlp`. `pipeline` joins the first four for one worker;
//! `supervisor` keeps interfaces captured as they come and go;
//! `privileges` gives up capabilities once the captures are open;
//! `identity` says whose an address is on Kubernetes (read when a
//! connection starts);
//! `cli` and `config` turn flags into settings (serde_norway reads their files);
//! `main` starts it all. `top` is the terminal client of the connection
//! table (`tcp-exporter top URL`), a reader of the HTTP API only.

pub mod capture;
pub mod cli;
pub mod config;
pub mod decode;
pub mod flow;
pub mod flowlog;
pub mod http;
pub mod identity;
pub mod metrics;
pub mod otlp;
pub mod pipeline;
pub mod privileges;
pub mod supervisor;
pub mod top;
