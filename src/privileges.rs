//! Privileges: once the captures are open, the process gives up every
//! Linux capability it will not need again.
//!
//! What is kept is what opening a capture takes, because an interface that
//! goes away and comes back is opened again: `CAP_NET_RAW` for the pcap and
//! af-packet backends, `CAP_BPF`, `CAP_NET_ADMIN` and `CAP_PERFMON` for
//! xdp, nothing for a file; and `CAP_NET_ADMIN` where the pods behind
//! veths are read in their namespaces (`capture::peers`), once a second.
//! Even those are kept only in the permitted set, not the effective one: a
//! thread raises what it needs for the moment of an open or a read
//! (`with_these`) and lowers it again. Everything else leaves the
//! effective, permitted and inheritable sets, the ambient set is cleared,
//! the bounding set loses what the process may drop from it, and
//! `no_new_privs` is set, so no exec can gain privileges back.
//!
//! Capabilities are per thread in Linux: `keep_only` must run before the
//! threads that should not have them are started (they inherit the caller's
//! sets). The sets are read and written with the caps crate; only
//! `no_new_privs`, which it does not cover, is a prctl of our own.

use std::io;

use caps::{CapSet, Capability, CapsHashSet};

/// A capability the exporter may keep.
pub type Cap = Capability;

pub const CAP_NET_ADMIN: Cap = Capability::CAP_NET_ADMIN;
pub const CAP_NET_RAW: Cap = Capability::CAP_NET_RAW;
pub const CAP_SETPCAP: Cap = Capability::CAP_SETPCAP;
pub const CAP_PERFMON: Cap = Capability::CAP_PERFMON;
pub const CAP_BPF: Cap = Capability::CAP_BPF;

/// The calling thread's capability sets, as 64-bit masks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sets {
    pub effective: u64,
    pub permitted: u64,
    pub inheritable: u64,
}

fn mask(caps: &CapsHashSet) -> u64 {
    caps.iter().fold(0, |m, c| m | c.bitmask())
}

fn os(e: caps::errors::CapsError) -> io::Error {
    io::Error::other(e.to_string())
}

/// The calling thread's sets.
pub fn current() -> io::Result<Sets> {
    Ok(Sets {
        effective: mask(&caps::read(None, CapSet::Effective).map_err(os)?),
        permitted: mask(&caps::read(None, CapSet::Permitted).map_err(os)?),
        inheritable: mask(&caps::read(None, CapSet::Inheritable).map_err(os)?),
    })
}

/// Gives up every capability but `keep`, which stays permitted but not
/// effective; returns what is kept (`keep` less what the process did not
/// have).
pub fn keep_only(keep: &[Cap]) -> io::Result<Vec<Cap>> {
    let permitted = caps::read(None, CapSet::Permitted).map_err(os)?;
    let kept: Vec<Cap> = keep
        .iter()
        .copied()
        .filter(|c| permitted.contains(c))
        .collect();
    // The bounding set first: dropping from it needs CAP_SETPCAP, which is
    // about to go. Without it (a non-root user with file capabilities),
    // the bounding set stays, and no_new_privs keeps it unused.
    if caps::has_cap(None, CapSet::Effective, CAP_SETPCAP).map_err(os)? {
        for cap in caps::all() {
            if !kept.contains(&cap) {
                // An error: a capability this kernel does not have.
                let _ = caps::drop(None, CapSet::Bounding, cap);
            }
        }
    }
    // Not fatal on kernels before 4.3, which have no ambient set.
    let _ = caps::clear(None, CapSet::Ambient);
    let kept_set: CapsHashSet = kept.iter().copied().collect();
    // Effective first: it must stay within the permitted set.
    caps::clear(None, CapSet::Effective).map_err(os)?;
    caps::clear(None, CapSet::Inheritable).map_err(os)?;
    caps::set(None, CapSet::Permitted, &kept_set).map_err(os)?;
    no_new_privs()?;
    Ok(kept)
}

/// No exec can gain privileges back (the caps crate has no call for it).
fn no_new_privs() -> io::Result<()> {
    // SAFETY: prctl with integer arguments only.
    let rc = unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1 as libc::c_ulong, 0, 0, 0) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Runs `f` with `caps` raised into the calling thread's effective set
/// (those of them that are permitted), and lowers them again after.
pub fn with_these<T>(caps: &[Cap], f: impl FnOnce() -> T) -> T {
    let permitted = caps::read(None, CapSet::Permitted).unwrap_or_default();
    let raise = caps
        .iter()
        .copied()
        .filter(|c| permitted.contains(c))
        .collect();
    raised(Some(raise), f)
}

/// Runs `f` with `cap` alone raised, if it is permitted.
pub fn with_one_raised<T>(cap: Cap, f: impl FnOnce() -> T) -> T {
    with_these(&[cap], f)
}

fn raised<T>(raise: Option<CapsHashSet>, f: impl FnOnce() -> T) -> T {
    let before = caps::read(None, CapSet::Effective).ok();
    if let Some(raise) = raise {
        let _ = caps::set(None, CapSet::Effective, &raise);
    }
    let out = f();
    if let Some(before) = before {
        let _ = caps::set(None, CapSet::Effective, &before);
    }
    out
}

/// The names of the capabilities kept, for messages: `cap_net_raw`, ...
pub fn names(caps: &[Cap]) -> String {
    if caps.is_empty() {
        return "none".to_string();
    }
    caps.iter()
        .map(|c| c.to_string().to_ascii_lowercase())
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_as_the_kernel_and_getpcaps_write_them() {
        assert_eq!(names(&[CAP_NET_RAW]), "cap_net_raw");
        assert_eq!(
            names(&[CAP_BPF, CAP_NET_ADMIN, CAP_PERFMON]),
            "cap_bpf,cap_net_admin,cap_perfmon"
        );
        assert_eq!(names(&[]), "none");
    }

    #[test]
    fn raising_puts_what_is_asked_and_permitted_into_effective_for_the_call_only() {
        // On a thread of its own: capability sets are per thread. The
        // tests run as root: NET_RAW and NET_ADMIN are permitted.
        std::thread::spawn(|| {
            caps::clear(None, CapSet::Effective).unwrap();
            let bit = |c: Cap| 1u64 << c.index();
            let inside = with_these(&[CAP_NET_RAW], || current().unwrap().effective);
            assert_eq!(inside, bit(CAP_NET_RAW));
            let inside = with_one_raised(CAP_NET_ADMIN, || current().unwrap().effective);
            assert_eq!(inside, bit(CAP_NET_ADMIN));
            assert_eq!(current().unwrap().effective, 0);
            // Not permitted: not raised.
            caps::drop(None, CapSet::Permitted, CAP_NET_ADMIN).unwrap();
            let inside = with_one_raised(CAP_NET_ADMIN, || current().unwrap().effective);
            assert_eq!(inside, 0);
        })
        .join()
        .unwrap();
    }
}
