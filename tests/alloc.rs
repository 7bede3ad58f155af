//! The per-packet path never allocates: a counting global allocator
//! watches the thread that runs decode, flow analysis and the shard's
//! counting over real captures, once the flow table, the series and the
//! connection records have been made (the first pass over the frames).
//! With the flow log on, connection events travel to the writer by value
//! in the queue's own slots.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::path::Path;
use std::sync::{Arc, Mutex};

use tcp_exporter::capture::{Frame, Next, PacketSource, PcapFile};
use tcp_exporter::decode::LinkType;
use tcp_exporter::flowlog::{self, Target};
use tcp_exporter::metrics::conns::{ConnOptions, LongBudget};
use tcp_exporter::metrics::{Exporter, Shard, ShardConfig};
use tcp_exporter::pipeline::Worker;

/// Counts the allocations of the thread that asks (`allocations`).
struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

fn count() {
    // try_with: a thread's allocations while its locals are torn down.
    let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
}

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

// SAFETY: every call goes to the system allocator unchanged; only a
// thread-local counter is added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        System.alloc(layout)
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        System.alloc_zeroed(layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        System.realloc(ptr, layout, new_size)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

struct Owned {
    ts: u64,
    data: Vec<u8>,
    wire_len: u32,
}

fn frames(name: &str) -> (LinkType, Vec<Owned>) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata/pcaps")
        .join(name);
    let mut file = PcapFile::open(&path, "").expect("a test capture opens");
    let link = file.link_type();
    let mut out = Vec::new();
    loop {
        match file.next().expect("the capture reads") {
            Next::Frame(f) => out.push(Owned {
                ts: f.ts,
                data: f.data.to_vec(),
                wire_len: f.wire_len,
            }),
            Next::Skipped(_) | Next::Idle(_) | Next::Run(_) => {}
            Next::End => break,
        }
    }
    (link, out)
}

/// Allocations made on this thread by a second pass over the frames
/// (the same connections again, later), after a first that made the
/// table's flows, the series and the records; and the packets counted in
/// that second pass.
fn second_pass_allocations(capture: &str, flow_log: bool) -> (u64, u64) {
    let (link, frames) = frames(capture);
    let (sink, writer) =
        flowlog::start(Some(&Target::File("/dev/null".into())), false, None).unwrap();
    let mut config = ShardConfig::plain(2000);
    // Series outlive the gap between the passes.
    config.series_ttl = u64::MAX / 4;
    config.conns = Some(ConnOptions {
        table: None,
        long_age: None,
        long_budget: Arc::new(LongBudget::new(10)),
        log: flow_log.then(|| sink.clone()),
        log_interval: 1_000_000_000,
    });
    let exporter = Exporter::new("alloc", &config);
    let shard = Arc::new(Mutex::new(Shard::new(
        "alloc0".into(),
        exporter.interface_id("alloc0"),
        config,
    )));
    exporter.add_shard(Arc::clone(&shard));
    let idle = 300_000_000_000;
    let mut worker = Worker::new(link, 131_072, idle);
    let mut s = shard.lock().unwrap();
    // The second pass starts after every flow of the first timed out: the
    // same connections again, as new ones (flows, records, flow-log
    // events), under the series the first made.
    let span = frames.last().unwrap().ts - frames[0].ts + idle + 1_000_000_000;
    let pass = |worker: &mut Worker, shift: u64, s: &mut Shard| {
        for f in &frames {
            worker.process(
                s,
                &Frame {
                    ts: f.ts + shift,
                    data: &f.data,
                    wire_len: f.wire_len,
                    gso_size: 0,
                },
            );
        }
    };
    pass(&mut worker, 0, &mut s);
    worker.tick(&mut s, frames[0].ts + span - 500_000_000);
    drop(s);
    let opened = |e: &Exporter| -> u64 {
        let text = e.render();
        text.lines()
            .filter(|l| l.starts_with("tcp_connections_opened_total{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum()
    };
    let first = opened(&exporter);
    let mut s = shard.lock().unwrap();
    let before_packets = s.capture.packets;
    let before = allocations();
    pass(&mut worker, span, &mut s);
    worker.settle(&mut s);
    let made = allocations() - before;
    let counted = s.capture.packets - before_packets;
    s.finish();
    drop(s);
    drop(sink);
    writer.finish();
    assert!(first > 0, "{capture}: connections in the first pass");
    assert_eq!(
        opened(&exporter),
        2 * first,
        "{capture}: the second pass opens them again"
    );
    (made, counted)
}

#[test]
fn counting_a_packet_allocates_nothing() {
    for capture in ["bulk_loss.pcap", "short_conns.pcap", "zero_window.pcap"] {
        let (made, counted) = second_pass_allocations(capture, false);
        assert!(counted > 100, "{capture}: {counted} packets");
        assert_eq!(
            made, 0,
            "{capture}: {made} allocations over {counted} packets"
        );
    }
}

#[test]
fn counting_a_packet_allocates_nothing_with_the_flow_log_on() {
    for capture in ["bulk_loss.pcap", "short_conns.pcap", "zero_window.pcap"] {
        let (made, counted) = second_pass_allocations(capture, true);
        assert!(counted > 100, "{capture}: {counted} packets");
        assert_eq!(
            made, 0,
            "{capture}: {made} allocations over {counted} packets with the flow log on"
        );
    }
}

/// The counter sees what this thread allocates: the test can fail.
#[test]
fn the_counting_allocator_counts() {
    let before = allocations();
    let v: Vec<u64> = std::hint::black_box(Vec::with_capacity(10));
    assert_eq!(allocations() - before, 1);
    drop(v);
}
