//! Builds the eBPF programs of the `xdp` feature with clang into OUT_DIR:
//! bpf/tcpx.bpf.c, which src/capture/xdp.rs includes, and
//! bpf/steady_check.bpf.c, which only a test runs. Without the
//! feature it does nothing: a plain build needs neither clang nor libbpf.
//!
//! `CLANG` names the compiler (default `clang`); `TCPX_BPF_CFLAGS` adds
//! flags (say, another include directory).

use std::env;
use std::path::PathBuf;
use std::process::{exit, Command};

/// (source, object) of each program file.
const PROGRAMS: [(&str, &str); 2] = [
    ("bpf/tcpx.bpf.c", "tcpx.bpf.o"),
    ("bpf/steady_check.bpf.c", "steady_check.bpf.o"),
];
const HEADERS: [&str; 5] = [
    "bpf/record.h",
    "bpf/ring.h",
    "bpf/summarise.h",
    "bpf/steady.h",
    "bpf/count.h",
];
const INSTALL_HINT: &str = "the xdp feature needs clang, llvm, libbpf-dev and linux-libc-dev: \
     `make deps FEATURES=xdp` installs them (Debian), or \
     apt-get install clang llvm libbpf-dev linux-libc-dev";

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    if env::var_os("CARGO_FEATURE_XDP").is_none() {
        return;
    }
    for path in PROGRAMS.map(|p| p.0).iter().chain(&HEADERS) {
        println!("cargo:rerun-if-changed={path}");
    }
    println!("cargo:rerun-if-env-changed=CLANG");
    println!("cargo:rerun-if-env-changed=TCPX_BPF_CFLAGS");

    let clang = env::var("CLANG").unwrap_or_else(|_| "clang".to_string());
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    // Debian keeps asm/types.h under the multiarch directory, which clang
    // does not search for `-target bpf`.
    let arch = env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_else(|_| "x86_64".to_string());
    let multiarch = format!("/usr/include/{arch}-linux-gnu");
    let extra = env::var("TCPX_BPF_CFLAGS").unwrap_or_default();

    // The records are read in the target's byte order.
    let target = match env::var("CARGO_CFG_TARGET_ENDIAN").as_deref() {
        Ok("big") => "bpfeb",
        _ => "bpfel",
    };
    for (source, object) in PROGRAMS {
        let mut cmd = Command::new(&clang);
        cmd.args(["-O2", "-g", "-Wall", "-Werror", "-target", target])
            .arg(format!("-I{multiarch}"))
            .args(extra.split_whitespace())
            .args(["-c", source, "-o"])
            .arg(out_dir.join(object));
        match cmd.status() {
            Ok(status) if status.success() => {}
            Ok(status) => fail(&format!(
                "{clang} failed to compile {source} ({status}); {INSTALL_HINT}"
            )),
            Err(e) => fail(&format!("cannot run {clang}: {e}; {INSTALL_HINT}")),
        }
    }
}

fn fail(message: &str) -> ! {
    eprintln!("error: {message}");
    exit(1)
}
