//! Least privilege: once an engine runs, each of its threads keeps only the
//! capabilities it still uses, and what it execs gets no more.
//!
//! Contract: [`drop_thread`] narrows the calling thread (capabilities are
//! per thread in Linux) to `keep`: its bounding set first (so that a
//! program it execs as root gets at most `keep`), then its inheritable,
//! effective and permitted sets, and its ambient set is cleared. The
//! engines call it at the start of every thread they spawn
//! ([`crate::engine::Threads`]), and `fanout run` for the main thread once
//! the engine has started. What remains, and why:
//!
//! - workers (XDP and socket): nothing. Their sockets, rings and maps are
//!   open already; no system call they make checks a capability.
//! - the XDP next-hop thread: `CAP_NET_ADMIN`, for `ip neigh replace ...
//!   use` (asking the kernel to resolve a next hop);
//! - the main thread of an XDP engine: `CAP_NET_ADMIN`, for turning a VLAN
//!   receive offload back on at exit and for detaching the program where
//!   no BPF link holds it, and `CAP_NET_RAW`, for the AF_XDP socket of a
//!   TX port a live change adds (the main thread opens it, the worker binds
//!   it).
//!
//! Dropping needs `CAP_SETPCAP` for the bounding set; without it, only the
//! sets the thread has are narrowed.
//!
//! Started as another user with ambient capabilities (systemd's `User=` and
//! `AmbientCapabilities=`, README "Privileges and kernel features"), a
//! thread's kept capabilities are also put back in its ambient set: what it
//! executes (`ip neigh`) runs as that user too, and only the ambient set
//! crosses `execve` for a user other than root.

pub use caps::Capability;
use caps::{CapSet, CapsHashSet};

/// What an XDP engine's main thread keeps.
pub const XDP_CONTROL: &[Capability] = &[Capability::CAP_NET_ADMIN, Capability::CAP_NET_RAW];

/// What an XDP engine's next-hop thread keeps.
pub const XDP_NEIGH: &[Capability] = &[Capability::CAP_NET_ADMIN];

/// Narrows the calling thread to `keep`; see the module documentation.
pub fn drop_thread(keep: &[Capability]) -> Result<(), caps::errors::CapsError> {
    let keep: CapsHashSet = keep.iter().copied().collect();
    if caps::has_cap(None, CapSet::Effective, Capability::CAP_SETPCAP)? {
        let bounding = caps::read(None, CapSet::Bounding)?;
        for cap in bounding.difference(&keep) {
            caps::drop(None, CapSet::Bounding, *cap)?;
        }
    }
    let permitted = caps::read(None, CapSet::Permitted)?;
    let kept: CapsHashSet = permitted.intersection(&keep).copied().collect();
    // The ambient set must be a subset of the others: clear it first. A
    // kernel without ambient capabilities has none to clear.
    let _ = caps::clear(None, CapSet::Ambient);
    caps::set(None, CapSet::Inheritable, &kept)?;
    caps::set(None, CapSet::Effective, &kept)?;
    caps::set(None, CapSet::Permitted, &kept)?;
    if !nix::unistd::geteuid().is_root() {
        for cap in &kept {
            caps::raise(None, CapSet::Ambient, *cap)?;
        }
    }
    Ok(())
}

/// The names of `caps`, for the log (`CAP_NET_ADMIN`), or `none`.
pub fn names(caps: &[Capability]) -> String {
    if caps.is_empty() {
        return "none".to_owned();
    }
    caps.iter()
        .map(|c| c.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// On a thread of its own (capabilities are per thread), so that the
    /// rest of the test binary keeps its own.
    #[test]
    fn a_thread_keeps_only_what_it_asks_for() {
        std::thread::spawn(|| {
            let before = caps::read(None, CapSet::Permitted).unwrap();
            drop_thread(XDP_CONTROL).unwrap();
            let eff = caps::read(None, CapSet::Effective).unwrap();
            let prm = caps::read(None, CapSet::Permitted).unwrap();
            let want: CapsHashSet = before
                .intersection(&XDP_CONTROL.iter().copied().collect())
                .copied()
                .collect();
            assert_eq!((eff.clone(), prm), (want.clone(), want));
            if before.contains(&Capability::CAP_SETPCAP) {
                let bnd = caps::read(None, CapSet::Bounding).unwrap();
                assert_eq!(bnd, XDP_CONTROL.iter().copied().collect());
            }
            // Nothing to keep: nothing left.
            drop_thread(&[]).unwrap();
            assert!(caps::read(None, CapSet::Effective).unwrap().is_empty());
        })
        .join()
        .unwrap();
    }

    #[test]
    fn names_are_the_kernels() {
        assert_eq!(names(XDP_CONTROL), "CAP_NET_ADMIN, CAP_NET_RAW");
        assert_eq!(names(XDP_NEIGH), "CAP_NET_ADMIN");
        assert_eq!(names(&[]), "none");
    }
}
