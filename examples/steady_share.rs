//! How much of a capture the xdp backend's kernel program could count
//! instead of handing up (issue 20): every TCP segment of a capture file
//! goes through its connection's [`Mirror`], and the segments are tallied
//! by what the mirror made of them. After a segment the mirror cannot
//! follow, the first segment of the connection DELAY microseconds of
//! capture time later (default 0: the next) takes a new mirror from the
//! connection first, for the time user space would take to see the
//! segment and confirm the kernel's state. (Optimistic: the new mirror is
//! the connection as it stands then, not as user space would have
//! confirmed it earlier; a SYN with a new ISN and idle expiry are not
//! modelled.)
//!
//!     cargo run --release --example steady_share -- CAPTURE [DELAY]

use std::collections::HashMap;
use std::path::Path;
use std::process::ExitCode;

use tcp_exporter::capture::{Next, PacketSource, PcapFile};
use tcp_exporter::decode::decode;
use tcp_exporter::flow::{Admission, Conn, FlowKey, Mirror, Side, SteadyRun};

struct Flow {
    conn: Conn,
    mirror: Option<Mirror>,
    /// When the last segment the mirror could not follow was seen.
    lost_at: u64,
    runs: [SteadyRun; 2],
}

fn main() -> ExitCode {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: steady_share CAPTURE [DELAY]");
        return ExitCode::FAILURE;
    };
    let delay: u64 = match std::env::args().nth(2).map(|d| d.parse::<u64>()) {
        None => 0,
        Some(Ok(us)) => us * 1_000,
        Some(Err(e)) => {
            eprintln!("DELAY: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut file = match PcapFile::open(Path::new(&path), "") {
        Ok(f) => f,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let link = file.link_type();
    let mut flows: HashMap<FlowKey, Flow> = HashMap::new();
    // The analysis's flags on the segments a mirror could not follow.
    let mut others: HashMap<u16, u64> = HashMap::new();
    let (mut counted, mut followed, mut other, mut unmirrored, mut undecoded) = (0u64, 0, 0, 0, 0);
    loop {
        let frame = match file.next() {
            Ok(Next::Frame(frame)) => frame,
            Ok(Next::End) => break,
            Ok(Next::Idle(_) | Next::Skipped(_) | Next::Run(_)) => continue,
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::FAILURE;
            }
        };
        let Ok(seg) = decode(link, frame.data, frame.wire_len) else {
            undecoded += 1;
            continue;
        };
        let (key, sender_is_lo) = FlowKey::of(&seg);
        let flow = flows.entry(key).or_insert_with(|| Flow {
            conn: Conn::new(&seg, sender_is_lo),
            mirror: None,
            lost_at: 0,
            runs: [SteadyRun::default(); 2],
        });
        let side = flow.conn.sender(sender_is_lo);
        if flow.mirror.is_none() && frame.ts >= flow.lost_at + delay {
            flow.mirror = flow.conn.mirror();
        }
        let run = &mut flow.runs[side.index()];
        let mut lost = false;
        match flow
            .mirror
            .as_mut()
            .map(|m| m.admit(&seg, side, frame.ts, run))
        {
            Some(Admission::Counted) => {
                counted += 1;
                continue;
            }
            Some(Admission::Followed) => followed += 1,
            Some(Admission::Other) => {
                other += 1;
                flow.mirror = None;
                lost = true;
                flow.lost_at = frame.ts;
            }
            None => unmirrored += 1,
        }
        for s in [Side::Client, Side::Server] {
            flow.conn.on_steady_run(s, &flow.runs[s.index()]);
        }
        flow.runs = [SteadyRun::default(); 2];
        let step = flow.conn.on_segment(&seg, side, frame.ts);
        if lost {
            *others.entry(step.flags.0).or_insert(0u64) += 1;
        }
    }
    let total = (counted + followed + other + unmirrored).max(1);
    let share = |n: u64| 100.0 * n as f64 / total as f64;
    println!("{total} TCP segments in {} connections", flows.len());
    println!(
        "counted in a run        {counted:>10} {:6.2}%",
        share(counted)
    );
    println!(
        "followed, handed up     {followed:>10} {:6.2}%",
        share(followed)
    );
    println!("other, handed up        {other:>10} {:6.2}%", share(other));
    println!(
        "no mirror, handed up    {unmirrored:>10} {:6.2}%",
        share(unmirrored)
    );
    println!("not TCP or undecodable  {undecoded:>10}");
    let mut others: Vec<_> = others.into_iter().collect();
    others.sort_by_key(|&(_, n)| std::cmp::Reverse(n));
    for (flags, n) in others {
        println!("  other with analysis flags {flags:#06x}: {n}");
    }
    ExitCode::SUCCESS
}
