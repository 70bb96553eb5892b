//! What privileged tests share: whether they may run, where the XDP object
//! is, unique namespace prefixes, and loud skips.
//!
//! Contract: as root with a usable `ip netns` a privileged test runs; with
//! `FANOUT_REQUIRE_PRIVILEGED=1` (what `cargo xtask test` sets as root) a
//! test that cannot run fails instead of skipping; otherwise it skips
//! loudly, on the process's stderr and in the file [`SKIP_LOG_ENV`] names,
//! which `cargo xtask test` lists in its summary.

use std::{
    path::PathBuf,
    sync::{
        OnceLock,
        atomic::{AtomicU32, Ordering},
    },
};

use super::netns::{NAME_PREFIX, ip};

/// A lab prefix unique to this process and call: `fo-{tag}{pid}-{n}`.
/// Tests use `unique_prefix("t")`.
pub fn unique_prefix(tag: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{NAME_PREFIX}{tag}{}-{n}", std::process::id())
}

/// Whether a privileged (root + `ip netns`) test can run.
///
/// Returns `true` when running as root with a usable `ip netns`. Otherwise,
/// with `FANOUT_REQUIRE_PRIVILEGED=1` in the environment, it panics with the
/// reason (the test fails); without it, it prints `SKIPPED {test_name}: {reason}`
/// to stderr and returns `false` (the test should return early).
pub fn privileged(test_name: &str) -> bool {
    static PROBE: OnceLock<Result<(), String>> = OnceLock::new();
    let probe = PROBE.get_or_init(|| {
        if !nix::unistd::geteuid().is_root() {
            return Err("not running as root".to_owned());
        }
        ip(&["netns", "list"])
            .map(drop)
            .map_err(|err| format!("`ip netns` is not usable: {err}"))
    });
    match probe {
        Ok(()) => true,
        Err(reason) => {
            if std::env::var("FANOUT_REQUIRE_PRIVILEGED").is_ok_and(|v| v == "1") {
                panic!("{test_name}: FANOUT_REQUIRE_PRIVILEGED=1 but {reason}");
            }
            skip_loudly(test_name, reason);
            false
        }
    }
}

/// Where tests and tools find the XDP object: `FANOUT_EBPF_OBJ` when set,
/// else the release build of `cargo xtask build-ebpf` in this checkout.
pub fn xdp_object_path() -> PathBuf {
    match std::env::var_os("FANOUT_EBPF_OBJ") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../xdp-ebpf/target/bpfel-unknown-none/release/fanout-ebpf"),
    }
}

/// [`privileged`], and the XDP object ([`xdp_object_path`]) exists: its
/// path. Otherwise the test fails under `FANOUT_REQUIRE_PRIVILEGED=1`, or
/// skips loudly and gets `None`.
pub fn xdp_ready(test_name: &str) -> Option<PathBuf> {
    if !privileged(test_name) {
        return None;
    }
    let obj = xdp_object_path();
    if obj.is_file() {
        return Some(obj);
    }
    let reason = format!(
        "no XDP object at {} (set FANOUT_EBPF_OBJ or run cargo xtask build-ebpf --release)",
        obj.display()
    );
    if std::env::var("FANOUT_REQUIRE_PRIVILEGED").is_ok_and(|v| v == "1") {
        panic!("{test_name}: {reason}");
    }
    skip_loudly(test_name, &reason);
    None
}

/// Environment variable naming a file to which [`skip_loudly`] appends one
/// line per skipped test (`cargo xtask test` sets it and lists the skips
/// in its summary: a skipped test counts as passed for libtest).
pub const SKIP_LOG_ENV: &str = "FANOUT_SKIP_LOG";

/// Prints `SKIPPED {test_name}: {reason}` straight to the process's stderr,
/// and appends `{test_name}: {reason}` to the file `FANOUT_SKIP_LOG` names.
///
/// `eprintln!` inside a test is captured by the test harness and shown only
/// when the test fails, which would hide the skip of a passing test; a write
/// to the stderr handle itself is not captured.
pub fn skip_loudly(test_name: &str, reason: &str) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr().lock(), "SKIPPED {test_name}: {reason}");
    if let Some(path) = std::env::var_os(SKIP_LOG_ENV)
        && let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
    {
        let _ = writeln!(f, "{test_name}: {reason}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lab::netns::check_name;

    #[test]
    fn unique_prefixes_differ_and_are_valid() {
        let a = unique_prefix("t");
        let b = unique_prefix("t");
        assert_ne!(a, b);
        assert!(check_name(&a).is_ok());
        assert!(a.starts_with(&format!("fo-t{}", std::process::id())));
    }
}
