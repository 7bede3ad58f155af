//! Privileges: once the captures are open, the process gives up every
//! Linux capability it will not need again.
//!
//! What is kept is what opening a capture takes, because an interface that
//! goes away and comes back is opened again: `CAP_NET_RAW` for the pcap and
//! af-packet backends, `CAP_BPF`, `CAP_NET_ADMIN` and `CAP_PERFMON` for
//! xdp, nothing for a file. Even those are kept only in the permitted set,
//! not the effective one: a thread raises them for the moment of an open
//! (`with_raised`) and lowers them again. Everything else leaves the
//! effective, permitted and inheritable sets, the ambient set is cleared,
//! the bounding set loses what the process may drop from it, and
//! `no_new_privs` is set, so no exec can gain privileges back.
//!
//! Capabilities are per thread in Linux: `keep_only` must run before the
//! threads that should not have them are started (they inherit the caller's
//! sets).

use std::io;

/// A capability, by its number in `linux/capability.h`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cap(pub u32);

pub const CAP_NET_ADMIN: Cap = Cap(12);
pub const CAP_NET_RAW: Cap = Cap(13);
pub const CAP_SETPCAP: Cap = Cap(8);
pub const CAP_PERFMON: Cap = Cap(38);
pub const CAP_BPF: Cap = Cap(39);

impl Cap {
    pub fn name(self) -> &'static str {
        match self.0 {
            12 => "cap_net_admin",
            13 => "cap_net_raw",
            38 => "cap_perfmon",
            39 => "cap_bpf",
            _ => "cap_other",
        }
    }
}

// linux/capability.h: version 3, two 32-bit words per set.
const VERSION_3: u32 = 0x2008_0522;

#[repr(C)]
struct Header {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct Data {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// The calling thread's capability sets, as 64-bit masks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sets {
    pub effective: u64,
    pub permitted: u64,
    pub inheritable: u64,
}

fn mask(caps: &[Cap]) -> u64 {
    caps.iter().fold(0, |m, c| m | 1u64 << c.0)
}

/// The calling thread's sets.
pub fn current() -> io::Result<Sets> {
    let mut header = Header {
        version: VERSION_3,
        pid: 0,
    };
    let mut data = [Data::default(); 2];
    // SAFETY: capget writes two `Data` structs (version 3) into `data`,
    // which has room for them, and reads `header`.
    let rc = unsafe { libc::syscall(libc::SYS_capget, &mut header, data.as_mut_ptr()) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    let join = |f: fn(&Data) -> u32| f(&data[0]) as u64 | (f(&data[1]) as u64) << 32;
    Ok(Sets {
        effective: join(|d| d.effective),
        permitted: join(|d| d.permitted),
        inheritable: join(|d| d.inheritable),
    })
}

fn set(sets: Sets) -> io::Result<()> {
    let mut header = Header {
        version: VERSION_3,
        pid: 0,
    };
    let split = |m: u64| [m as u32, (m >> 32) as u32];
    let (e, p, i) = (
        split(sets.effective),
        split(sets.permitted),
        split(sets.inheritable),
    );
    let data = [
        Data {
            effective: e[0],
            permitted: p[0],
            inheritable: i[0],
        },
        Data {
            effective: e[1],
            permitted: p[1],
            inheritable: i[1],
        },
    ];
    // SAFETY: capset reads `header` and two `Data` structs (version 3).
    let rc = unsafe { libc::syscall(libc::SYS_capset, &mut header, data.as_ptr()) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn prctl(option: libc::c_int, arg: libc::c_ulong) -> io::Result<()> {
    // SAFETY: prctl with integer arguments only.
    let rc = unsafe {
        libc::prctl(
            option,
            arg,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The highest capability number this kernel knows.
fn last_cap() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(40)
        .min(63)
}

/// Gives up every capability but `keep`, which stays permitted but not
/// effective; returns what is kept (`keep` less what the process did not
/// have).
pub fn keep_only(keep: &[Cap]) -> io::Result<Vec<Cap>> {
    let now = current()?;
    let kept: Vec<Cap> = keep
        .iter()
        .copied()
        .filter(|c| now.permitted & mask(&[*c]) != 0)
        .collect();
    let keep_mask = mask(&kept);
    // The bounding set first: dropping from it needs CAP_SETPCAP, which is
    // about to go. Without it (a non-root user with file capabilities),
    // the bounding set stays, and no_new_privs keeps it unused.
    if now.effective & mask(&[CAP_SETPCAP]) != 0 {
        for cap in 0..=last_cap() {
            if keep_mask & (1 << cap) == 0 {
                // EINVAL: a number this kernel does not have.
                let _ = prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong);
            }
        }
    }
    // Not fatal on kernels before 4.3, which have no ambient set.
    let _ = prctl(
        libc::PR_CAP_AMBIENT,
        libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
    );
    set(Sets {
        effective: 0,
        permitted: keep_mask,
        inheritable: 0,
    })?;
    prctl(libc::PR_SET_NO_NEW_PRIVS, 1)?;
    Ok(kept)
}

/// Runs `f` with the permitted capabilities raised into the calling
/// thread's effective set, and lowers them again after.
pub fn with_raised<T>(f: impl FnOnce() -> T) -> T {
    let before = current().ok();
    if let Some(s) = before {
        let _ = set(Sets {
            effective: s.permitted,
            ..s
        });
    }
    let out = f();
    if let Some(s) = before {
        let _ = set(s);
    }
    out
}

/// The names of the capabilities in a mask, for messages.
pub fn names(caps: &[Cap]) -> String {
    if caps.is_empty() {
        return "none".to_string();
    }
    caps.iter().map(|c| c.name()).collect::<Vec<_>>().join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sets_round_trip_through_the_kernel() {
        let now = current().unwrap();
        // Setting what we have is always allowed.
        set(now).unwrap();
        assert_eq!(current().unwrap(), now);
    }

    #[test]
    fn raising_puts_permitted_into_effective_for_the_call_only() {
        // On a thread of its own: capability sets are per thread.
        std::thread::spawn(|| {
            let now = current().unwrap();
            set(Sets {
                effective: 0,
                ..now
            })
            .unwrap();
            let inside = with_raised(|| current().unwrap().effective);
            assert_eq!(inside, now.permitted);
            assert_eq!(current().unwrap().effective, 0);
        })
        .join()
        .unwrap();
    }
}
