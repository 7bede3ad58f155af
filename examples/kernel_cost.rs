//! What the kernel programs cost per frame, measured by the kernel itself
//! (BPF_PROG_TEST_RUN, one frame run `REPEAT` times, the mean time per
//! run): `tcpx_xdp`, which summarises the frame into a record in the ring
//! buffer (today's xdp backend), and the check of the steady rules
//! (bpf/steady_check.bpf.c: summarise, one array-map lookup, the rules).
//! The frame is a full-sized data segment with timestamps, as bulk traffic
//! sends. The check's mirror is set once: the first run counts the
//! segment; the repeats see it again, behind the next sequence number, and
//! follow it as a retransmission, which stops the steady test at its
//! second clause and skips the run's updates: the figure is a lower bound
//! for a counted segment. The check also reads its time from the map,
//! where a capture program calls bpf_ktime_get_ns() as `tcpx_xdp` does.
//!
//! Run as root, with the `xdp` feature:
//!
//!     cargo run --release --features xdp --example kernel_cost [REPEAT]

use aya::maps::{Array, MapData, PerCpuArray};
use aya::programs::{TestRun, TestRunOptions, Xdp};
use aya::{Ebpf, EbpfLoader};

static TCPX: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/tcpx.bpf.o"));
static CHECK: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/steady_check.bpf.o"));

/// Sequence and acknowledgement numbers of the frame.
const SEQ: u32 = 1_000_000;
const ACK: u32 = 5_000_000;
const PAYLOAD: usize = 1448;
/// Runs whose records fit a ring of 1 GiB (136 bytes each with the ring's
/// header).
const MAX_REPEAT: u32 = 7_000_000;

fn main() {
    let repeat: u32 = match std::env::args().nth(1).map(|a| a.parse()) {
        None => 100_000,
        Some(Ok(n)) if n > 0 && n <= MAX_REPEAT => n,
        Some(_) => {
            eprintln!("usage: kernel_cost [REPEAT], REPEAT from 1 to {MAX_REPEAT}");
            std::process::exit(2);
        }
    };
    let frame = frame();
    let ring = (repeat as u64 * 136).next_power_of_two().max(1 << 22) as u32;
    let mut tcpx = EbpfLoader::new()
        .map_max_entries("tcpx_events", ring)
        .load(TCPX)
        .unwrap_or_else(|e| fail("loading tcpx.bpf.o (as root?)", e));
    let xdp = program(&mut tcpx, "tcpx_xdp");
    let record_ns = run(xdp, &frame, repeat);
    let drops: PerCpuArray<&MapData, u64> = tcpx
        .map("tcpx_drops")
        .expect("tcpx_drops")
        .try_into()
        .expect("a per-CPU array");
    let lost: u64 = drops.get(&0, 0).map(|v| v.iter().sum()).unwrap_or(0);

    let mut check = Ebpf::load(CHECK).unwrap_or_else(|e| fail("loading steady_check.bpf.o", e));
    {
        let mut map: Array<&mut MapData, [u8; 208]> = check
            .map_mut("tcpx_check")
            .expect("tcpx_check")
            .try_into()
            .expect("an array");
        map.set(0, armed(), 0)
            .unwrap_or_else(|e| fail("setting the mirror", e));
    }
    let rules = program(&mut check, "tcpx_steady_check");
    let rules_ns = run(rules, &frame, repeat);

    println!(
        "frame: {} bytes, {PAYLOAD} of payload; {repeat} runs each",
        frame.len()
    );
    println!("tcpx_xdp (summary into the ring):          {record_ns:.1} ns per frame ({lost} lost to a full ring)");
    println!("steady check (summary, lookup, the rules): {rules_ns:.1} ns per frame");
}

fn program<'a>(ebpf: &'a mut Ebpf, name: &str) -> &'a Xdp {
    let p: &mut Xdp = ebpf
        .program_mut(name)
        .expect("the program is in the object")
        .try_into()
        .expect("an XDP program");
    p.load().unwrap_or_else(|e| fail(name, e));
    p
}

/// Mean nanoseconds per run of `p` over `frame`.
fn run(p: &Xdp, frame: &[u8], repeat: u32) -> f64 {
    let opts = TestRunOptions {
        data_in: Some(frame),
        repeat,
        ..TestRunOptions::default()
    };
    let result = p
        .test_run(opts)
        .unwrap_or_else(|e| fail("BPF_PROG_TEST_RUN", e));
    result.duration.as_nanos() as f64
}

/// Ethernet / IPv4 (DF) / TCP ACK with NOP NOP timestamps / payload.
fn frame() -> Vec<u8> {
    let tcp_len = 32 + PAYLOAD;
    let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00];
    f.extend_from_slice(&[0x45, 0]);
    f.extend_from_slice(&((20 + tcp_len) as u16).to_be_bytes());
    f.extend_from_slice(&[0, 1, 0x40, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2]);
    f.extend_from_slice(&40000u16.to_be_bytes());
    f.extend_from_slice(&5201u16.to_be_bytes());
    f.extend_from_slice(&SEQ.to_be_bytes());
    f.extend_from_slice(&ACK.to_be_bytes());
    f.extend_from_slice(&[8 << 4, 0x10]);
    f.extend_from_slice(&502u16.to_be_bytes());
    f.extend_from_slice(&[0, 0, 0, 0]);
    f.extend_from_slice(&[1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2]);
    f.resize(f.len() + PAYLOAD, 0xab);
    f
}

/// `struct tcpx_check` with a mirror that counts the frame from the
/// client: both directions steady, two segments timed by the client (so
/// new data is not timed), the server's window wide open.
fn armed() -> [u8; 208] {
    let mut c = [0u8; 208];
    let dir = |c: &mut [u8], next: u32, last_ack: u32, timed: [u32; 2]| {
        c[0..4].copy_from_slice(&next.to_ne_bytes());
        c[4..8].copy_from_slice(&next.to_ne_bytes());
        c[8..12].copy_from_slice(&last_ack.to_ne_bytes());
        c[12..16].copy_from_slice(&3000u32.to_ne_bytes());
        c[16..20].copy_from_slice(&timed[0].to_ne_bytes());
        c[20..24].copy_from_slice(&timed[1].to_ne_bytes());
        c[24] = 2; // scale: a shift
        c[25] = 7;
        c[27] = (timed[0] != 0) as u8 + (timed[1] != 0) as u8;
    };
    dir(&mut c[0..32], SEQ, ACK, [SEQ - 100, SEQ - 50]);
    dir(&mut c[32..64], ACK, SEQ - 200, [0, 0]);
    c
}

fn fail(what: &str, e: impl std::fmt::Display) -> ! {
    eprintln!("kernel_cost: {what}: {e}");
    std::process::exit(1)
}
