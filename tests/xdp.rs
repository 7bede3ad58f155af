//! The xdp backend's life cycle on a real interface (a veth pair the test
//! makes and removes): the programs attach on start (generic XDP on a veth,
//! leaving the peer's TSO as it was), and on SIGTERM the exporter exits 0
//! with its XDP and TC programs gone from the kernel; an
//! XDP program left attached without a bpf link (as a crash on a kernel
//! without XDP links would leave it) stops the start with a message that
//! says what it is and how to remove it; and records that find the ring
//! buffer full are counted as kernel drops, so that records plus drops add
//! up to the TCP packets sent.
//!
//! Built with the `xdp` feature only. Needs root, `ip` (iproute2, with
//! libbpf), `ethtool`, `bpftool` and `tcpreplay`; `TCPX_SKIP_LIVE=1` skips it, as for tests/live.rs.
#![cfg(feature = "xdp")]

mod common;

use common::{try_http_get, Veth};
use std::net::{Ipv4Addr, SocketAddr};
use std::process::{Child, Command, Output, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

const EXPORTER: &str = env!("CARGO_BIN_EXE_tcp-exporter");
/// One test at a time (see `start_test`).
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
/// The programs' object, as build.rs compiled it.
const OBJECT: &str = concat!(env!("OUT_DIR"), "/tcpx.bpf.o");

#[test]
fn programs_attach_on_start_and_are_gone_after_sigterm() {
    let Some(_serial) = start_test() else {
        return;
    };
    let veth = Veth::new("s");
    let tso = |dev: &str| {
        let out = String::from_utf8(tool(&["ethtool", "-k", dev]).stdout).unwrap();
        out.lines()
            .find_map(|l| l.strip_prefix("tcp-segmentation-offload: "))
            .map(|v| v.starts_with("on"))
            .expect("ethtool -k shows tcp-segmentation-offload")
    };
    let peer_tso = tso(&veth.peer);
    let port = common::free_port();
    let log = std::env::temp_dir().join(format!("tcpx-xdp-{}.log", std::process::id()));
    let mut exporter = start(&veth.name, port, &[], &log);
    let ids = wait_for_programs(&mut exporter, port);
    let text = std::fs::read_to_string(&log).unwrap();
    let _ = std::fs::remove_file(&log);
    assert_eq!(ids.len(), 2, "an XDP and a TC program: {ids:?}");
    assert!(
        text.contains("XDP attached in generic mode, TC on egress"),
        "auto mode on a veth should be generic:\n{text}"
    );
    assert_eq!(tso(&veth.peer), peer_tso, "the peer's TSO changed");
    assert!(
        link_show(&veth.name).contains("prog/xdp"),
        "no XDP program on {}:\n{}",
        veth.name,
        link_show(&veth.name)
    );

    let pid = exporter.id().to_string();
    sh(&["kill", "-TERM", &pid]);
    let status = wait_exit(&mut exporter, Duration::from_secs(10));
    assert!(status.success(), "exit after SIGTERM: {status}");
    assert!(
        !link_show(&veth.name).contains("prog/xdp"),
        "the XDP program stayed attached after exit:\n{}",
        link_show(&veth.name)
    );
    for (id, name) in &ids {
        assert!(
            !tool(&["bpftool", "prog", "show", "id", id])
                .status
                .success(),
            "program {name} (id {id}) is still loaded after exit"
        );
    }
}

#[test]
fn an_xdp_program_left_attached_is_reported_with_how_to_remove_it() {
    let Some(_serial) = start_test() else {
        return;
    };
    let veth = Veth::new("l");
    // Attached through netlink, without a link: it outlives its loader.
    let out = tool(&[
        "ip",
        "link",
        "set",
        "dev",
        &veth.name,
        "xdpgeneric",
        "obj",
        OBJECT,
        "sec",
        "xdp",
    ]);
    assert!(out.status.success(), "ip could not attach: {out:?}");

    let port = common::free_port();
    let out = exporter(&veth.name, port, &[]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let remove = format!("ip link set dev {} xdpgeneric off", veth.name);
    for needle in [
        "already attached in generic mode",
        "tcpx_xdp",
        "tcp-exporter's own",
        &remove,
    ] {
        assert!(stderr.contains(needle), "{needle:?} not in: {stderr}");
    }
    // The advice works.
    let words: Vec<&str> = remove.split(' ').collect();
    assert!(tool(&words).status.success());
    assert!(!link_show(&veth.name).contains("prog/xdp"));
}

#[test]
fn records_lost_to_a_full_ring_are_counted_as_kernel_drops() {
    let Some(_serial) = start_test() else {
        return;
    };
    // The capture's TCP frames (it has a few others, which the programs
    // pass without a record), replayed LOOPS times: more than the smallest
    // ring holds (4 MiB / 136 bytes = 30,840 records) while the exporter is
    // stopped and cannot read it.
    const TCP_FRAMES: u64 = 809;
    const LOOPS: u64 = 60;
    let capture = concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/pcaps/bulk_loss.pcap");
    let veth = Veth::new("d");
    let port = common::free_port();
    let log = std::env::temp_dir().join(format!("tcpx-xdp-drops-{}.log", std::process::id()));
    let mut exporter = start(&veth.name, port, &["--xdp-ring-size", "4"], &log);
    wait_for_programs(&mut exporter, port);
    let pid = exporter.id().to_string();
    sh(&["kill", "-STOP", &pid]);
    let out = tool(&[
        "tcpreplay",
        "--topspeed",
        "--loop",
        &LOOPS.to_string(),
        "-i",
        &veth.peer,
        capture,
    ]);
    sh(&["kill", "-CONT", &pid]);
    assert!(out.status.success(), "tcpreplay: {out:?}");

    let http = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let sent = TCP_FRAMES * LOOPS;
    let deadline = Instant::now() + Duration::from_secs(15);
    let (records, drops) = loop {
        let text = match try_http_get(http, "/metrics") {
            Ok((200, text)) => text,
            _ => String::new(),
        };
        let records = common::sum_metric(&text, "tcp_exporter_capture_packets_total") as u64;
        let drops =
            common::sum_metric_where(&text, "tcp_exporter_capture_drops_total", "stage", "kernel")
                as u64;
        if records + drops >= sent || Instant::now() >= deadline {
            break (records, drops);
        }
        sleep(Duration::from_millis(100));
    };
    let _ = exporter.kill();
    let _ = exporter.wait();
    let _ = std::fs::remove_file(&log);
    assert!(
        drops > 0,
        "no drops: the ring held {records} of {sent} records"
    );
    assert_eq!(
        records + drops,
        sent,
        "{records} records and {drops} drops for {sent} TCP packets sent"
    );
    assert!(
        records >= 30_000,
        "the ring should have held about 30,840 records, it gave {records}"
    );
}

/// Takes the lock that keeps these tests apart (each lists the tcpx
/// programs loaded on the machine), after checking for root; `None` when
/// `TCPX_SKIP_LIVE=1` says to skip.
fn start_test() -> Option<std::sync::MutexGuard<'static, ()>> {
    if std::env::var("TCPX_SKIP_LIVE").as_deref() == Ok("1") {
        eprintln!("xdp test: skipped (TCPX_SKIP_LIVE=1)");
        return None;
    }
    let uid = String::from_utf8(tool(&["id", "-u"]).stdout).unwrap();
    assert_eq!(
        uid.trim(),
        "0",
        "the xdp tests need root; set TCPX_SKIP_LIVE=1 to skip them"
    );
    Some(SERIAL.lock().unwrap_or_else(|e| e.into_inner()))
}

/// The exporter with the xdp backend on `iface`, serving on loopback at
/// `port`, with `extra` flags.
fn exporter(iface: &str, port: u16, extra: &[&str]) -> Command {
    let mut cmd = Command::new(EXPORTER);
    cmd.args(["--backend", "xdp", "-i", iface, "-p", &port.to_string()])
        .args(["--listen", "127.0.0.1"])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    cmd
}

/// Starts the exporter on `iface` with its stderr in `log`.
fn start(iface: &str, port: u16, extra: &[&str], log: &std::path::Path) -> Child {
    exporter(iface, port, extra)
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .expect("start the exporter")
}

/// Waits until the exporter is ready; returns the ids and names of the
/// tcpx programs then loaded.
fn wait_for_programs(exporter: &mut Child, port: u16) -> Vec<(String, String)> {
    let http = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let deadline = Instant::now() + Duration::from_secs(20);
    while !matches!(try_http_get(http, "/readyz"), Ok((200, _))) {
        if let Some(status) = exporter.try_wait().unwrap() {
            panic!("the exporter exited early: {status}");
        }
        assert!(Instant::now() < deadline, "the exporter is not ready");
        sleep(Duration::from_millis(50));
    }
    // `bpftool prog show` lines read `ID: TYPE  name NAME  tag ...`.
    let out = String::from_utf8(tool(&["bpftool", "prog", "show"]).stdout).unwrap();
    out.lines()
        .filter_map(|l| {
            let (id, rest) = l.split_once(':')?;
            let name = rest
                .split_whitespace()
                .skip_while(|w| *w != "name")
                .nth(1)?;
            name.starts_with("tcpx_")
                .then(|| (id.trim().to_string(), name.to_string()))
        })
        .collect()
}

fn wait_exit(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            panic!("no exit within {limit:?} of SIGTERM");
        }
        sleep(Duration::from_millis(20));
    }
}

fn link_show(iface: &str) -> String {
    String::from_utf8_lossy(&tool(&["ip", "link", "show", "dev", iface]).stdout).into_owned()
}

fn tool(args: &[&str]) -> Output {
    Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", args[0]))
}

fn sh(args: &[&str]) {
    // Through the shell's builtin `kill`: the tests have no libc binding.
    let out = tool(&[&["sh", "-c", "\"$@\"", "sh"][..], args].concat());
    assert!(out.status.success(), "{args:?}: {out:?}");
}
