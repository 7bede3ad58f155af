//! Live capture over time: which interfaces are captured (names given
//! with `-i`, globs such as `veth*`, or `any`), and keeping each captured
//! as interfaces come and go.
//!
//! Every `SCAN_INTERVAL` the interface list (/sys/class/net) is read:
//! - a captured interface that is gone, or came back under a new index
//!   (deleted and made again), has its capture stopped, its flows let go
//!   (as timed out), and `tcp_exporter_interface_up` set to 0;
//! - a capture that failed by itself is handled the same way;
//! - a wanted interface that exists and is not captured is opened: at
//!   once when it appears, then, while opening fails, after
//!   `FIRST_RETRY` doubling up to `MAX_RETRY` (one message per failure
//!   streak);
//! - a new interface matching a glob is opened.
//!
//! An interface keeps its metric shards across its captures, so counters
//! never go back, until it is forgotten: a glob-matched interface gone for
//! `--series-ttl` gives back its shards, its series and its id (its
//! counters start again from zero if it ever comes back, which Prometheus
//! reads as a counter reset). At most `--max-interfaces` are captured at
//! once; what matches beyond is counted and said once. `any` is one capture that the kernel feeds from every
//! interface, new ones included: it is never reopened. Opening raises the
//! capabilities a capture takes (`Captures::open`, with
//! `privileges::with_these`).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::capture::PacketSource;
use crate::metrics::Shard;
use crate::pipeline::{spawn, CaptureThread, SourceLoop, Worker};

/// How often the interface list is read.
pub const SCAN_INTERVAL: Duration = Duration::from_millis(250);
/// The wait after a failed open, doubling...
pub const FIRST_RETRY: Duration = Duration::from_millis(100);
/// ...up to this.
pub const MAX_RETRY: Duration = Duration::from_secs(5);

/// Hands the heap's free pages back to the system. glibc keeps what the
/// threads of forgotten captures freed in its per-thread arenas; on a node
/// whose pod interfaces come and go, that would read as a leak.
fn trim_heap() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim has no preconditions; it only releases free
    // memory.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Whether an `-i` value is a glob (`*`, `?`, `[...]`).
pub fn is_glob(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

/// An `-i` glob as a pattern (the glob crate: `*`, `?`, `[abc]`, `[a-z]`,
/// `[!x]`, matching the whole name); `None` for one that does not parse
/// (an unclosed `[`), which the configuration refuses.
pub fn glob_pattern(glob: &str) -> Option<glob::Pattern> {
    glob::Pattern::new(glob).ok()
}

/// The interfaces that exist now, with their indexes.
pub fn interfaces() -> HashMap<String, u32> {
    let mut out = HashMap::new();
    if let Ok(dir) = std::fs::read_dir("/sys/class/net") {
        for entry in dir.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(index) = ifindex(&name) {
                out.insert(name, index);
            }
        }
    }
    out
}

fn ifindex(name: &str) -> Option<u32> {
    crate::capture::sysfs_number(name, "ifindex")
}

/// What the supervisor asks of the program that runs it.
pub trait Captures: Send {
    /// Opens the capture sources of one interface (one, or a fanout group
    /// of several), raising the capabilities that takes for the moment.
    fn open(&mut self, name: &str) -> Result<Vec<Box<dyn SourceLoop>>, anyhow::Error>;
    /// The metric shard for the `worker`th source of an interface, made
    /// (and registered with the exporter) the first time.
    fn shard(&mut self, name: &str, worker: usize) -> Arc<Mutex<Shard>>;
    /// A worker (flow table) for one of `of` sources of an interface.
    fn worker(&self, source: &dyn PacketSource, of: usize) -> Worker;
    /// Every shard made so far, of interfaces captured now or before.
    fn shards(&self) -> Vec<Arc<Mutex<Shard>>>;
    /// An interface gone for good: its shards finished and dropped, its
    /// series and id given back.
    fn forget(&mut self, name: &str);
    /// An interface turned away by `--max-interfaces`, counted.
    fn refused(&mut self, name: &str);
}

/// The supervisor's bounds.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Interfaces captured at once (`--max-interfaces`).
    pub max_interfaces: usize,
    /// How long a glob-matched interface stays gone before it is forgotten
    /// (`--series-ttl`: its series would have expired by then, had its
    /// capture clock gone on).
    pub forget_after: Duration,
}

/// One interface being captured.
struct Capture {
    /// Its index when opened; `None` for `any`.
    index: Option<u32>,
    stop: Arc<AtomicBool>,
    threads: Vec<(CaptureThread, Arc<Mutex<Shard>>)>,
}

/// When an interface may be tried again, and how long the wait after that.
struct Retry {
    at: Instant,
    delay: Duration,
    reported: bool,
}

pub struct Supervisor<C: Captures> {
    captures: C,
    names: Vec<String>,
    globs: Vec<glob::Pattern>,
    limits: Limits,
    running: HashMap<String, Capture>,
    retry: HashMap<String, Retry>,
    /// Glob-matched interfaces taken down and not back, since when.
    gone: HashMap<String, Instant>,
    /// Interfaces turned away by `--max-interfaces` and still there (each
    /// counted once while it stays).
    refused: HashSet<String>,
    refusal_said: bool,
}

impl<C: Captures> Supervisor<C> {
    /// `specs` are the `-i` values; `opened` what was opened at start (by
    /// interface name, in `specs` order), before privileges were dropped.
    pub fn new(
        captures: C,
        specs: &[String],
        opened: Vec<(String, Vec<Box<dyn SourceLoop>>)>,
        limits: Limits,
    ) -> Result<Supervisor<C>, anyhow::Error> {
        let (globs, names): (Vec<String>, Vec<String>) =
            specs.iter().cloned().partition(|s| is_glob(s));
        let globs = globs
            .iter()
            .map(|g| glob_pattern(g).ok_or_else(|| anyhow::anyhow!("-i {g:?}: not a valid glob")))
            .collect::<Result<_, _>>()?;
        let mut sup = Supervisor {
            captures,
            names,
            globs,
            limits,
            running: HashMap::new(),
            retry: HashMap::new(),
            gone: HashMap::new(),
            refused: HashSet::new(),
            refusal_said: false,
        };
        let now = interfaces();
        for (name, sources) in opened {
            let index = now.get(&name).copied();
            sup.start(&name, index, sources)?;
        }
        Ok(sup)
    }

    /// The interfaces wanted now: the names, and what matches the globs.
    fn wanted(&self, now: &HashMap<String, u32>) -> Vec<String> {
        let mut wanted: Vec<String> = self.names.clone();
        let mut matched: Vec<&String> = now
            .keys()
            .filter(|n| self.globs.iter().any(|g| g.matches(n)))
            .filter(|n| !self.names.contains(n))
            .collect();
        matched.sort();
        wanted.extend(matched.into_iter().cloned());
        wanted
    }

    fn start(
        &mut self,
        name: &str,
        index: Option<u32>,
        sources: Vec<Box<dyn SourceLoop>>,
    ) -> Result<(), anyhow::Error> {
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        let of = sources.len();
        for (i, source) in sources.into_iter().enumerate() {
            let shard = self.captures.shard(name, i);
            let worker = self.captures.worker(source.as_ref(), of);
            let thread = spawn(source, worker, Arc::clone(&shard), Arc::clone(&stop))?;
            threads.push((thread, shard));
        }
        self.running.insert(
            name.to_string(),
            Capture {
                index,
                stop,
                threads,
            },
        );
        self.gone.remove(name);
        self.refused.remove(name);
        Ok(())
    }

    /// Stops interfaces' captures (or collects those that failed): their
    /// flows are let go and they read as down. Every capture is told to
    /// stop before any is waited for, so that a batch of pod interfaces
    /// deleted at once costs one read timeout, not one each.
    fn take_down(&mut self, names: &[String]) {
        let captures: Vec<(&String, Capture)> = names
            .iter()
            .filter_map(|name| Some((name, self.running.remove(name)?)))
            .collect();
        for (_, capture) in &captures {
            capture.stop.store(true, Ordering::Relaxed);
        }
        for (name, capture) in captures {
            self.stop_capture(name, capture);
        }
    }

    fn stop_capture(&mut self, name: &str, capture: Capture) {
        for (thread, shard) in capture.threads {
            let worker = thread.join().ok().map(|(_, w)| w);
            let mut s = shard.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(mut worker) = worker {
                worker.release(&mut s);
            }
            s.interface_up = false;
        }
        if !self.names.iter().any(|n| n == name) {
            self.gone.insert(name.to_string(), Instant::now());
        }
    }

    /// Forgets the glob-matched interfaces that have been gone (absent
    /// from `now`) for `forget_after`: a node that makes and deletes pod
    /// interfaces all day holds only those that exist.
    fn forget_gone(&mut self, now: &HashMap<String, u32>) {
        let due: Vec<String> = self
            .gone
            .iter()
            .filter(|(name, since)| {
                !now.contains_key(*name) && since.elapsed() >= self.limits.forget_after
            })
            .map(|(name, _)| name.clone())
            .collect();
        let forgot = !due.is_empty();
        for name in due {
            self.gone.remove(&name);
            self.retry.remove(&name);
            self.captures.forget(&name);
        }
        if forgot {
            trim_heap();
        }
        self.refused.retain(|name| now.contains_key(name));
        // A glob-matched interface that failed to open and went away
        // before it was ever captured leaves a retry behind: drop it.
        let names = &self.names;
        self.retry
            .retain(|name, _| now.contains_key(name) || names.contains(name));
    }

    /// One look at the interfaces: takes down what is gone or failed,
    /// opens what is wanted and missing.
    pub fn scan(&mut self) {
        let now = interfaces();
        self.forget_gone(&now);
        let gone: Vec<String> = self
            .running
            .iter()
            .filter(|(name, c)| {
                let failed = c.threads.iter().any(|(t, _)| t.is_finished());
                let moved = c.index.is_some() && now.get(*name).copied() != c.index;
                failed || moved
            })
            .map(|(name, _)| name.clone())
            .collect();
        self.take_down(&gone);
        for name in gone {
            eprintln!("tcp-exporter: {name}: capture stopped (the interface went away or failed); reopening when it is back");
            self.retry.insert(
                name,
                Retry {
                    at: Instant::now(),
                    delay: FIRST_RETRY,
                    reported: false,
                },
            );
        }
        for name in self.wanted(&now) {
            if self.running.contains_key(&name) {
                continue;
            }
            let Some(&index) = now.get(&name) else {
                // Not there: tried as soon as it appears.
                if let Some(r) = self.retry.get_mut(&name) {
                    r.at = Instant::now();
                    r.delay = FIRST_RETRY;
                }
                continue;
            };
            if self.running.len() >= self.limits.max_interfaces {
                if self.refused.insert(name.clone()) {
                    self.captures.refused(&name);
                    if !self.refusal_said {
                        eprintln!(
                            "tcp-exporter: {name}: not captured: {} interfaces are captured \
                             already (--max-interfaces); this and later refusals are counted \
                             in tcp_exporter_interfaces_refused_total",
                            self.limits.max_interfaces
                        );
                        self.refusal_said = true;
                    }
                }
                continue;
            }
            let retry = self.retry.entry(name.clone()).or_insert(Retry {
                at: Instant::now(),
                delay: FIRST_RETRY,
                reported: false,
            });
            if Instant::now() < retry.at {
                continue;
            }
            let captures = &mut self.captures;
            match captures.open(&name) {
                Ok(sources) => {
                    self.retry.remove(&name);
                    match self.start(&name, Some(index), sources) {
                        Ok(()) => eprintln!("tcp-exporter: {name}: capturing"),
                        Err(e) => {
                            eprintln!("tcp-exporter: {name}: cannot start its capture: {e:#}")
                        }
                    }
                }
                Err(e) => {
                    if !retry.reported {
                        eprintln!("tcp-exporter: {name}: cannot open it ({e:#}); trying again, waiting up to {}s", MAX_RETRY.as_secs());
                        retry.reported = true;
                    }
                    retry.at = Instant::now() + retry.delay;
                    retry.delay = (retry.delay * 2).min(MAX_RETRY);
                }
            }
        }
    }

    /// Scans until `stop` is set; then stops every capture and finishes
    /// every shard, those of interfaces gone by then included (the flow
    /// log's last records; its writer ends once every shard let go of it).
    pub fn run(mut self, stop: &AtomicBool) {
        while !stop.load(Ordering::Relaxed) {
            std::thread::sleep(SCAN_INTERVAL);
            if !stop.load(Ordering::Relaxed) {
                self.scan();
            }
        }
        let captures: Vec<Capture> = self.running.drain().map(|(_, c)| c).collect();
        for capture in &captures {
            capture.stop.store(true, Ordering::Relaxed);
        }
        for capture in captures {
            for (thread, _) in capture.threads {
                let _ = thread.join();
            }
        }
        for shard in self.captures.shards() {
            shard.lock().unwrap_or_else(|e| e.into_inner()).finish();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_whole_names_as_a_shell_does() {
        for (p, n, m) in [
            ("veth*", "veth1a2b", true),
            ("veth*", "veth", true),
            ("veth*", "xveth1", false),
            ("*", "eth0", true),
            ("eth?", "eth0", true),
            ("eth?", "eth10", false),
            ("eth[0-3]", "eth2", true),
            ("eth[0-3]", "eth4", false),
            ("eth[!0]", "eth0", false),
            ("eth[!0]", "eth1", true),
            ("cali*[ab]", "cali12a", true),
            ("cali*[ab]", "cali12c", false),
            ("*-*-x", "a-b-c-x", true),
            ("lo", "lo", true),
        ] {
            assert_eq!(glob_pattern(p).unwrap().matches(n), m, "{p} vs {n}");
        }
        assert!(is_glob("veth*") && is_glob("eth[01]") && !is_glob("eth0"));
        assert!(glob_pattern("a[").is_none(), "an unclosed class is refused");
    }
}
