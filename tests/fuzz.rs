//! Fuzzing on stable Rust: mutation-based random testing of decode, and of
//! decode + flow analysis + metrics over sequences of frames, seeded with
//! every frame of testdata/pcaps. It is not coverage-guided (cargo-fuzz
//! needs nightly); it makes up for that with mutations aimed at the
//! headers (length fields, nibbles, option kinds) and with volume.
//!
//! Three targets, each run for a number of inputs or a time:
//! - `decode`: one mutated frame, decoded under every link type.
//! - `pipeline`: a mutated run of consecutive frames (bytes, lengths,
//!   timestamps, order), through a worker with a tiny flow table into a
//!   shard with connection records and a flow log, then rendered; the
//!   exposition must parse, hold no more active connections than tracked
//!   flows and no more label sets than the cap, and (in half the runs)
//!   give the same totals when every label is left out.
//! - `file`: the start of a seed capture file with its bytes mutated (the
//!   file header and record headers above all), read to its end by the
//!   capture layer's file reader.
//!
//! A panic is a crash: the input is written to `target/fuzz-crashes/`
//! (a pcap for `pipeline`, replayable with `tcp-exporter -r`), and the test
//! fails listing them. Inputs tried and crashes are printed.
//!
//! `make test` runs a short, fixed-seed run; `make fuzz` a long one:
//!   TCPX_FUZZ_SECONDS  run each target this long (instead of a count)
//!   TCPX_FUZZ_INPUTS   inputs per target (default 200000 decode, 20000 pipeline,
//!                      5000 file)
//!   TCPX_FUZZ_SEED     the random seed (default fixed; `random` for the clock)
//!
//! Built with the `fuzz` profile (release with overflow checks and debug
//! assertions), so arithmetic overflow is a crash too.

mod common;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tcp_exporter::capture::{Next, PacketSource, PcapFile};
use tcp_exporter::decode::{decode, LinkType};
use tcp_exporter::flowlog::{self, Target};
use tcp_exporter::metrics::conns::{ConnOptions, LongBudget};
use tcp_exporter::metrics::labels::{LabelSet, Labeler, PortNames};
use tcp_exporter::metrics::{Exporter, Shard, ShardConfig};
use tcp_exporter::pipeline::Worker;

/// One frame as read from a capture.
#[derive(Clone)]
struct Seed {
    ts: u64,
    data: Vec<u8>,
    wire_len: u32,
}

/// The frames of one capture, with its link type.
struct Capture {
    link: LinkType,
    frames: Vec<Seed>,
}

fn seeds() -> Vec<Capture> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/pcaps");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("testdata/pcaps")
        .map(|e| e.unwrap().path())
        .filter(|p| {
            matches!(
                p.extension().and_then(|e| e.to_str()),
                Some("pcap" | "pcapng")
            )
        })
        .collect();
    paths.sort();
    let mut captures = Vec::new();
    for path in paths {
        let mut file = PcapFile::open(&path, "").expect("a seed capture opens");
        let link = file.link_type();
        let mut frames = Vec::new();
        while let Ok(next) = file.next() {
            match next {
                Next::Frame(f) => frames.push(Seed {
                    ts: f.ts,
                    data: f.data.to_vec(),
                    wire_len: f.wire_len,
                }),
                Next::Skipped(_) | Next::Idle(_) | Next::Run(_) => {}
                Next::End => break,
            }
        }
        assert!(!frames.is_empty(), "{} has frames", path.display());
        captures.push(Capture { link, frames });
    }
    assert!(captures.len() >= 10, "the seed captures are found");
    // Overlays too: the Ethernet captures' frames inside VXLAN inside GRE,
    // so that mutations reach the overlay decoder at both levels.
    let wrapped: Vec<Capture> = captures
        .iter()
        .filter(|c| c.link == LinkType::Ethernet)
        .map(|c| Capture {
            link: LinkType::Ethernet,
            frames: c.frames.iter().map(in_overlays).collect(),
        })
        .collect();
    let unwrapped_twice = wrapped.iter().flat_map(|c| &c.frames).any(|f| {
        decode(LinkType::Ethernet, &f.data, f.wire_len).is_ok_and(|s| s.tunnels.depth() == 2)
    });
    assert!(
        unwrapped_twice,
        "the overlay seeds decode through both levels"
    );
    captures.extend(wrapped);
    captures
}

/// A frame inside VXLAN (UDP 4789) inside GRE, behind Ethernet and IPv4;
/// the outer lengths state the frame's wire length.
fn in_overlays(seed: &Seed) -> Seed {
    let ipv4 = |protocol: u8, payload: usize| {
        let len = ((20 + payload) as u16).to_be_bytes();
        let mut h = vec![0x45, 0, len[0], len[1], 0, 0, 0, 0, 64, protocol, 0, 0];
        h.extend_from_slice(&[192, 168, 100, 1, 192, 168, 100, 2]);
        h
    };
    let inner = seed.wire_len as usize;
    let vxlan_len = 8 + 8 + inner;
    let mut udp = vec![0xc0, 0x07, 0x12, 0xb5];
    udp.extend_from_slice(&(vxlan_len as u16).to_be_bytes());
    udp.extend_from_slice(&[0, 0, 0x08, 0, 0, 0, 0, 0, 42, 0]);
    let middle = [ipv4(17, vxlan_len), udp].concat();
    let gre = [0, 0, 0x08, 0];
    let mut out = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0];
    out.extend(ipv4(47, gre.len() + middle.len() + inner));
    out.extend_from_slice(&gre);
    out.extend(middle);
    let headers = out.len();
    out.extend_from_slice(&seed.data);
    Seed {
        ts: seed.ts,
        data: out,
        wire_len: (headers + inner) as u32,
    }
}

/// xorshift64*: small, fast, and the same on every machine for a seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }
}

/// The latest capture time a pcap record can carry (32-bit seconds).
const MAX_TS: u64 = (u32::MAX as u64 + 1) * 1_000_000_000;

/// Values that sit on the edges of header fields.
const INTERESTING_U8: [u8; 12] = [0, 1, 4, 5, 6, 15, 0x40, 0x45, 0x4f, 0x7f, 0x80, 0xff];
const INTERESTING_U16: [u16; 10] = [0, 1, 20, 40, 0x7fff, 0x8000, 0xfffe, 0xffff, 0x0800, 0x86dd];
/// IPv6 next-header values that start extension headers, and TCP/UDP.
const NEXT_HEADERS: [u8; 8] = [0, 43, 44, 50, 51, 60, 6, 17];

/// Mutates one frame in place: 1 to 8 mutations, some aimed at where
/// headers keep their lengths (bytes 12..80 cover Ethernet/VLAN, IP and
/// the start of TCP in every seed).
fn mutate(rng: &mut Rng, data: &mut Vec<u8>, wire_len: &mut u32, donor: &[u8]) {
    for _ in 0..1 + rng.below(8) {
        let len = data.len();
        let at = if len > 0 && rng.chance(2) {
            (12 + rng.below(68)).min(len - 1)
        } else {
            rng.below(len)
        };
        match rng.below(11) {
            0 if len > 0 => data[at] ^= 1 << rng.below(8),
            1 if len > 0 => data[at] = INTERESTING_U8[rng.below(INTERESTING_U8.len())],
            2 if len > 0 => data[at] = rng.next() as u8,
            3 if len > 1 => {
                let v = INTERESTING_U16[rng.below(INTERESTING_U16.len())].to_be_bytes();
                let at = at.min(len - 2);
                data[at..at + 2].copy_from_slice(&v);
            }
            4 if len > 0 => {
                // A length field one off, or doubled.
                let at = at.min(len.saturating_sub(2));
                let v = u16::from_be_bytes([data[at], *data.get(at + 1).unwrap_or(&0)]);
                let v = match rng.below(3) {
                    0 => v.wrapping_add(1),
                    1 => v.wrapping_sub(1),
                    _ => v.wrapping_mul(2),
                };
                data[at] = (v >> 8) as u8;
                if at + 1 < len {
                    data[at + 1] = v as u8;
                }
            }
            5 if len > 0 => {
                // A header-length nibble (IPv4 IHL, TCP data offset).
                let v = rng.below(16) as u8;
                data[at] = if rng.chance(2) {
                    (data[at] & 0xf0) | v
                } else {
                    (data[at] & 0x0f) | (v << 4)
                };
            }
            6 if len > 0 => data[at] = NEXT_HEADERS[rng.below(NEXT_HEADERS.len())],
            7 => data.truncate(rng.below(len + 1)),
            8 => {
                let n = 1 + rng.below(64);
                let extra: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
                let at = rng.below(len + 1);
                data.splice(at..at, extra);
            }
            9 if !donor.is_empty() => {
                // Splice a piece of another frame.
                let from = rng.below(donor.len());
                let n = 1 + rng.below((donor.len() - from).min(64));
                let at = rng.below(len + 1);
                data.splice(at..(at + n).min(len), donor[from..from + n].iter().copied());
            }
            _ => {
                *wire_len = match rng.below(4) {
                    0 => data.len() as u32,
                    1 => rng.next() as u32,
                    2 => wire_len.wrapping_add(rng.below(3000) as u32),
                    _ => 0,
                };
            }
        }
    }
}

const LINKS: [LinkType; 9] = LinkType::SUPPORTED;

/// How long, or how many inputs, a target runs.
struct Budget {
    inputs: u64,
    until: Option<Instant>,
}

impl Budget {
    fn from_env(default_inputs: u64) -> Budget {
        let seconds = std::env::var("TCPX_FUZZ_SECONDS").ok();
        let seconds = seconds.map(|s| s.parse::<u64>().expect("TCPX_FUZZ_SECONDS: seconds"));
        let inputs = std::env::var("TCPX_FUZZ_INPUTS")
            .ok()
            .map(|s| s.parse().expect("TCPX_FUZZ_INPUTS: a count"));
        Budget {
            inputs: inputs.unwrap_or(if seconds.is_some() {
                u64::MAX
            } else {
                default_inputs
            }),
            until: seconds.map(|s| Instant::now() + Duration::from_secs(s)),
        }
    }

    fn more(&self, tried: u64) -> bool {
        tried < self.inputs
            && self
                .until
                .is_none_or(|t| !tried.is_multiple_of(64) || Instant::now() < t)
    }
}

fn seed_from_env(target: &str) -> u64 {
    let base = match std::env::var("TCPX_FUZZ_SEED").ok().as_deref() {
        None => 0x7c9e_57a1_0000_0001,
        Some("random") => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64,
        Some(s) => s.parse().expect("TCPX_FUZZ_SEED: a number or `random`"),
    };
    let seed = base
        ^ target
            .bytes()
            .fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(b as u64));
    eprintln!("fuzz {target}: seed {base} (TCPX_FUZZ_SEED={base} repeats this run)");
    seed | 1
}

fn crash_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/fuzz-crashes");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Writes frames as a classic pcap (nanosecond magic) of the given DLT.
fn write_pcap(path: &Path, dlt: u32, frames: &[Seed]) {
    let mut f = Vec::new();
    f.extend_from_slice(&0xa1b2_3c4du32.to_le_bytes());
    f.extend_from_slice(&2u16.to_le_bytes());
    f.extend_from_slice(&4u16.to_le_bytes());
    f.extend_from_slice(&[0; 8]);
    f.extend_from_slice(&262_144u32.to_le_bytes());
    f.extend_from_slice(&dlt.to_le_bytes());
    for s in frames {
        f.extend_from_slice(&((s.ts / 1_000_000_000) as u32).to_le_bytes());
        f.extend_from_slice(&((s.ts % 1_000_000_000) as u32).to_le_bytes());
        f.extend_from_slice(&(s.data.len() as u32).to_le_bytes());
        f.extend_from_slice(&s.wire_len.max(s.data.len() as u32).to_le_bytes());
        f.extend_from_slice(&s.data);
    }
    std::fs::write(path, f).unwrap();
}

/// The DLT a crash file is written with (kernel summaries under a user
/// DLT: not readable back, but kept).
fn dlt_of(link: LinkType) -> u32 {
    link.dlt().unwrap_or(147) as u32
}

/// Quiet panics: a crash is reported once, with its input file, not with
/// a backtrace per input.
fn quiet_panics() {
    std::panic::set_hook(Box::new(|info| {
        eprintln!("fuzz: panic: {info}");
    }));
}

#[test]
fn decode_never_panics_on_mutated_frames() {
    quiet_panics();
    let captures = seeds();
    let all: Vec<&Seed> = captures.iter().flat_map(|c| &c.frames).collect();
    let mut rng = Rng(seed_from_env("decode"));
    let budget = Budget::from_env(200_000);
    let (mut tried, mut decoded) = (0u64, 0u64);
    let mut crashes = Vec::new();
    let start = Instant::now();
    while budget.more(tried) {
        let base = all[rng.below(all.len())];
        let donor = &all[rng.below(all.len())].data;
        let mut data = base.data.clone();
        let mut wire_len = base.wire_len;
        mutate(&mut rng, &mut data, &mut wire_len, donor);
        let result = catch_unwind(|| {
            let mut ok = 0;
            for link in LINKS {
                if let Ok(seg) = decode(link, &data, wire_len) {
                    // Reading every view of the segment must not panic either.
                    let _ = seg.sack_blocks().count();
                    ok += 1;
                }
            }
            ok
        });
        match result {
            Ok(ok) => decoded += ok,
            Err(_) => {
                let path = crash_dir().join(format!("decode-{tried}.bin"));
                std::fs::write(&path, &data).unwrap();
                crashes.push(format!("{} (wire length {wire_len})", path.display()));
            }
        }
        tried += 1;
    }
    eprintln!(
        "fuzz decode: {tried} inputs x {} link types in {:.1?}, {decoded} decoded to a segment, \
         {} crashes",
        LINKS.len(),
        start.elapsed(),
        crashes.len()
    );
    assert!(
        decoded > 0,
        "some mutated frames still decode: the seeds were read"
    );
    assert!(crashes.is_empty(), "decode panicked on: {crashes:#?}");
}

/// One pipeline run's input and bounds.
struct Run<'a> {
    link: LinkType,
    frames: &'a [Seed],
    max_series: usize,
    max_flows: usize,
    idle: u64,
    ttl: u64,
}

impl Run<'_> {
    /// The frames through a worker and a shard labelled by `labels`, then
    /// every flow timed out; the exposition.
    fn render(&self, labels: LabelSet, conns: Option<ConnOptions>) -> String {
        let mut config = ShardConfig::plain(self.max_series);
        config.labeler = Arc::new(Labeler::new(labels, Vec::new(), &PortNames::default()));
        config.series_ttl = self.ttl;
        config.conns = conns;
        let exporter = Exporter::new("fuzz", &config);
        let shard = Arc::new(std::sync::Mutex::new(Shard::new(
            "fuzz0".into(),
            exporter.interface_id("fuzz0"),
            config,
        )));
        exporter.add_shard(Arc::clone(&shard));
        let mut worker = Worker::new(self.link, self.max_flows, self.idle);
        let mut s = shard.lock().unwrap();
        for f in self.frames {
            worker.process(
                &mut s,
                &tcp_exporter::capture::Frame {
                    ts: f.ts,
                    data: &f.data,
                    wire_len: f.wire_len,
                    gso_size: 0,
                },
            );
        }
        let last = self.frames.iter().map(|f| f.ts).max().unwrap_or(0);
        worker.tick(&mut s, last.wrapping_add(self.idle));
        s.finish();
        drop(s);
        exporter.render()
    }
}

/// What must hold of an exposition whatever went in: it parses; no more
/// connections are active than flows are tracked; label sets of its own
/// are within the cap (the rest folded into `other`). Counters never go
/// below zero unnoticed: the shard's decrements assert in this profile.
fn invariants(text: &str, max_series: usize) -> Result<(), String> {
    let samples = common::samples(text);
    let sum = |name: &str| -> f64 {
        samples
            .iter()
            .filter(|s| s.name == name)
            .map(|s| s.value)
            .sum()
    };
    let (active, tracked) = (
        sum("tcp_connections_active"),
        sum("tcp_exporter_flows_tracked"),
    );
    if active > tracked {
        return Err(format!("{active} active connections, {tracked} flows"));
    }
    let own = samples
        .iter()
        .find(|s| s.name == "tcp_exporter_series_tracked" && s.label("kind") == Some("own"))
        .map_or(0.0, |s| s.value);
    if own > max_series as f64 {
        return Err(format!("{own} label sets under a cap of {max_series}"));
    }
    let shown: std::collections::BTreeSet<_> = samples
        .iter()
        .filter(|s| s.name == "tcp_connections_active" && s.label("client") != Some("other"))
        .map(|s| s.labels.clone())
        .collect();
    if shown.len() > max_series {
        return Err(format!(
            "{} label sets shown, cap {max_series}",
            shown.len()
        ));
    }
    Ok(())
}

/// The total of every traffic counter and gauge, by metric name and the
/// labels that are not grouping labels (sender, kind, reason, shift, leg,
/// bucket bound); histogram sums, in float seconds, are left out.
fn traffic_totals(text: &str) -> std::collections::BTreeMap<String, u64> {
    let mut totals = std::collections::BTreeMap::new();
    for s in common::samples(text) {
        if !s.name.starts_with("tcp_")
            || s.name.starts_with("tcp_exporter_")
            || s.name.starts_with("tcp_long_")
            || s.name.ends_with("_sum")
        {
            continue;
        }
        let rest: Vec<String> = s
            .labels
            .iter()
            .filter(|(k, _)| !common::GROUPING_LABELS.contains(&k.as_str()))
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        *totals
            .entry(format!("{}{{{}}}", s.name, rest.join(",")))
            .or_default() += s.value as u64;
    }
    totals
}

#[test]
fn pipeline_never_panics_on_mutated_frame_sequences() {
    quiet_panics();
    let captures = seeds();
    let mut rng = Rng(seed_from_env("pipeline"));
    let budget = Budget::from_env(20_000);
    let (mut tried, mut frames_in) = (0u64, 0u64);
    let mut crashes = Vec::new();
    let start = Instant::now();
    // One flow log for the whole run: records are written, not checked.
    let (sink, writer) =
        flowlog::start(Some(&Target::File("/dev/null".into())), true, None).unwrap();
    while budget.more(tried) {
        let capture = &captures[rng.below(captures.len())];
        let n = 1 + rng.below(64);
        let from = rng.below(capture.frames.len());
        let mut frames: Vec<Seed> =
            capture.frames[from..(from + n).min(capture.frames.len())].to_vec();
        for i in 0..frames.len() {
            if rng.chance(3) {
                let donor = capture.frames[rng.below(capture.frames.len())].data.clone();
                let s = &mut frames[i];
                mutate(&mut rng, &mut s.data, &mut s.wire_len, &donor);
            }
            match rng.below(12) {
                0 => frames[i].ts = frames[i].ts.wrapping_sub(rng.next() % 5_000_000_000),
                1 => frames[i].ts = frames[i].ts.wrapping_add(rng.next() % 600_000_000_000),
                2 => frames[i].ts = rng.next() % MAX_TS,
                3 if i > 0 => frames.swap(i, rng.below(i)),
                4 => {
                    let again = frames[rng.below(i + 1)].clone();
                    frames.push(again);
                }
                _ => {}
            }
        }
        frames_in += frames.len() as u64;
        let conns = rng.chance(2).then(|| ConnOptions {
            table: rng
                .chance(2)
                .then(|| Arc::new(std::sync::atomic::AtomicU64::new(0))),
            long_age: Some(rng.next() % 2_000_000_000),
            long_budget: Arc::new(LongBudget::new(1 + rng.below(4))),
            log: rng.chance(2).then(|| sink.clone()),
            log_interval: 1 + rng.next() % 1_000_000_000,
        });
        let max_series = 1 + rng.below(4);
        let max_flows = 1 + rng.below(8);
        let idle = 1 + rng.next() % 30_000_000_000;
        // Half the runs keep every series (no expiry), so that the totals
        // of two label groupings can be compared.
        let keep = rng.chance(2);
        let ttl = if keep {
            u64::MAX / 4
        } else {
            rng.next() % 60_000_000_000
        };
        let link = capture.link;
        let run = Run {
            link,
            frames: &frames,
            max_series,
            max_flows,
            idle,
            ttl,
        };
        let result = catch_unwind(AssertUnwindSafe(|| {
            let text = run.render(LabelSet::DEFAULT, conns.clone());
            invariants(&text, max_series)?;
            if keep {
                // The same frames with every label left out: one series,
                // never folded, and the same totals.
                let none = run.render("none".parse().unwrap(), None);
                invariants(&none, max_series)?;
                let (a, b) = (traffic_totals(&text), traffic_totals(&none));
                if a != b {
                    return Err(format!("totals differ by grouping: {a:?} vs {b:?}"));
                }
            }
            Ok(())
        }));
        let failure = match result {
            Ok(Ok(())) => None,
            Ok(Err(broken)) => Some(broken),
            Err(_) => Some("panic".to_string()),
        };
        if let Some(what) = failure {
            let path = crash_dir().join(format!("pipeline-{tried}.pcap"));
            write_pcap(&path, dlt_of(link), &frames);
            crashes.push(format!(
                "{} (max flows {max_flows}, max series {max_series}, idle {idle} ns, ttl {ttl} ns): {what}",
                path.display()
            ));
        }
        tried += 1;
    }
    drop(sink);
    writer.finish();
    eprintln!(
        "fuzz pipeline: {tried} sequences ({frames_in} frames) in {:.1?}, {} crashes",
        start.elapsed(),
        crashes.len()
    );
    assert!(
        crashes.is_empty(),
        "the pipeline panicked or broke an invariant on: {crashes:#?}"
    );
}

#[test]
fn the_file_reader_never_panics_on_mutated_capture_files() {
    quiet_panics();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/pcaps");
    let mut files: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            matches!(
                p.extension().and_then(|e| e.to_str()),
                Some("pcap" | "pcapng")
            )
        })
        .map(|p| {
            let mut bytes = std::fs::read(p).unwrap();
            bytes.truncate(4096);
            bytes
        })
        .collect();
    files.sort();
    let mut rng = Rng(seed_from_env("file"));
    let budget = Budget::from_env(5_000);
    let scratch = crash_dir().join(format!("scratch-{}.pcap", std::process::id()));
    let (mut tried, mut frames) = (0u64, 0u64);
    let mut crashes = Vec::new();
    let start = Instant::now();
    while budget.more(tried) {
        let mut bytes = files[rng.below(files.len())].clone();
        for _ in 0..1 + rng.below(6) {
            let len = bytes.len().max(1);
            // Most mutations at the file header and the first records' headers.
            let at = if rng.chance(2) {
                rng.below(64.min(len))
            } else {
                rng.below(len)
            };
            match rng.below(5) {
                0 if at < bytes.len() => bytes[at] ^= 1 << rng.below(8),
                1 if at < bytes.len() => {
                    bytes[at] = INTERESTING_U8[rng.below(INTERESTING_U8.len())]
                }
                2 if at + 4 <= bytes.len() => {
                    let v = [0u32, 1, 0xffff, 0x40000, 0x7fff_ffff, u32::MAX][rng.below(6)];
                    bytes[at..at + 4].copy_from_slice(&v.to_le_bytes());
                }
                3 => bytes.truncate(rng.below(len + 1)),
                _ => {
                    let n = 1 + rng.below(32);
                    bytes.splice(
                        at.min(bytes.len())..at.min(bytes.len()),
                        (0..n).map(|_| rng.next() as u8),
                    );
                }
            }
        }
        std::fs::write(&scratch, &bytes).unwrap();
        let result = catch_unwind(|| {
            let mut n = 0u64;
            if let Ok(mut file) = PcapFile::open(&scratch, "") {
                while let Ok(next) = file.next() {
                    match next {
                        Next::End => break,
                        _ => n += 1,
                    }
                }
            }
            n
        });
        match result {
            Ok(n) => frames += n,
            Err(_) => {
                let path = crash_dir().join(format!("file-{tried}.pcap"));
                std::fs::write(&path, &bytes).unwrap();
                crashes.push(path.display().to_string());
            }
        }
        tried += 1;
    }
    let _ = std::fs::remove_file(&scratch);
    eprintln!(
        "fuzz file: {tried} files in {:.1?}, {frames} records read, {} crashes",
        start.elapsed(),
        crashes.len()
    );
    assert!(frames > 0, "mutated files still hold records");
    assert!(
        crashes.is_empty(),
        "the file reader panicked on: {crashes:#?}"
    );
}
