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

/// What the crate's tests read of bpf/'s C headers.
#[cfg(test)]
pub(crate) mod c_header {
    /// `(field, offset)` of every `MACRO(field, offset);` line of `header`:
    /// the offsets a header states, for clang to check and a test to hold
    /// the Rust side to.
    pub fn stated<'a>(header: &'a str, macro_name: &str) -> Vec<(&'a str, usize)> {
        header
            .lines()
            .filter_map(|l| {
                l.strip_prefix(macro_name)?
                    .strip_prefix('(')?
                    .strip_suffix(");")
            })
            .map(|l| {
                let (field, offset) = l.split_once(", ").expect("MACRO(field, offset)");
                (field, offset.parse().expect("a number"))
            })
            .collect()
    }
}

/// What the crate's own tests share (those that load eBPF programs, with
/// the `xdp` feature).
#[cfg(all(test, feature = "xdp"))]
pub(crate) mod test_support {
    /// Whether a test that loads eBPF programs should return at once:
    /// `TCPX_SKIP_LIVE=1` skips it; otherwise it needs root, and says so.
    pub fn skip_bpf_tests() -> bool {
        if std::env::var("TCPX_SKIP_LIVE").as_deref() == Ok("1") {
            return true;
        }
        // SAFETY: geteuid has no preconditions.
        let euid = unsafe { libc::geteuid() };
        assert_eq!(
            euid, 0,
            "loading eBPF programs needs root; TCPX_SKIP_LIVE=1 skips"
        );
        false
    }
}
