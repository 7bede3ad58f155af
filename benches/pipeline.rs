//! Per-packet cost of decode, and of decode + flow analysis + counting, on
//! the frames of a real capture (testdata/pcaps/bulk_loss.pcap: bulk
//! transfers with loss, so retransmissions, duplicate ACKs and window-full
//! segments are on the path), and the same for the xdp backend's kernel
//! summaries of those frames (the user-space side of `--backend xdp`);
//! and frames again with the live connection table's records kept (what
//! serving `/connections` adds per packet). `cargo bench --bench pipeline`.

use std::path::Path;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};

use tcp_exporter::capture::{Next, PacketSource, PcapFile};
use tcp_exporter::decode::summary::encode::record_of_frame;
use tcp_exporter::decode::{decode, LinkType};
use tcp_exporter::metrics::conns::{ConnOptions, LongBudget};
use tcp_exporter::metrics::{Shard, ShardConfig};
use tcp_exporter::pipeline::Worker;

/// The capture's frames, owned: (capture time, bytes, wire length).
fn frames() -> (LinkType, Frames) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/pcaps/bulk_loss.pcap");
    let mut source = PcapFile::open(&path, "").expect("the test capture opens");
    let link = source.link_type();
    let mut out = Vec::new();
    while let Ok(Next::Frame(f)) = source.next() {
        out.push((f.ts, f.data.to_vec(), f.wire_len));
    }
    (link, out)
}

type Frames = Vec<(u64, Vec<u8>, u32)>;

fn bench(c: &mut Criterion) {
    let (link, mut frames) = frames();
    // The TCP frames only (the capture has a few others), so that both
    // inputs are the same segments.
    frames.retain(|(ts, data, wire)| record_of_frame(data, *wire, *ts).is_some());
    // What the XDP program writes for each frame, in its ring buffer's
    // stead: (capture time, record, wire length from the IP header on).
    let records: Frames = frames
        .iter()
        .filter_map(|(ts, data, wire)| {
            let record = record_of_frame(data, *wire, *ts)?;
            Some((*ts, record.to_vec(), wire - 14))
        })
        .collect();
    let mut group = c.benchmark_group("per_packet");
    group.throughput(Throughput::Elements(frames.len() as u64));
    let plain = ShardConfig::plain(10_000);
    let mut table = ShardConfig::plain(10_000);
    table.conns = Some(ConnOptions {
        table: Some(Arc::default()),
        long_age: None,
        long_budget: Arc::new(LongBudget::new(0)),
        log: None,
        log_interval: 5_000_000_000,
    });
    // (name, link, input, shard config, whether decode alone is timed too)
    for (name, link, input, config, decode_alone) in [
        ("frame", link, &frames, &plain, true),
        ("summary", LinkType::KernelSummary, &records, &plain, true),
        ("frame_with_table", link, &frames, &table, false),
    ] {
        if decode_alone {
            group.bench_function(format!("{name}/decode"), |b| {
                b.iter(|| {
                    let mut payload = 0u64;
                    for (_, data, wire) in input {
                        if let Ok(seg) = decode(link, data, *wire) {
                            payload += seg.payload_len as u64;
                        }
                    }
                    payload
                })
            });
        }
        group.bench_function(format!("{name}/decode_analyse_count"), |b| {
            // A fresh worker and shard for each pass (made outside the
            // timing), as if the capture were replayed.
            let setup = || {
                (
                    Worker::new(link, 131_072, 300_000_000_000),
                    Shard::new(Arc::from("bench"), 0, config.clone()),
                )
            };
            b.iter_batched(
                setup,
                |(mut worker, mut shard)| {
                    for (ts, data, wire) in input {
                        let frame = tcp_exporter::capture::Frame {
                            ts: *ts,
                            data,
                            wire_len: *wire,
                            gso_size: 0,
                        };
                        worker.process(&mut shard, &frame);
                    }
                    worker.settle(&mut shard);
                    (worker, shard)
                },
                BatchSize::LargeInput,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
