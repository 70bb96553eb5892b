//! `cargo xtask build-ebpf`: builds the XDP program in `xdp-ebpf/program/` for
//! `bpfel-unknown-none` with nightly, `-Z build-std=core` and bpf-linker, and
//! returns the path of the object file.
//!
//! The program is its own cargo workspace with its own target directory
//! (`xdp-ebpf/target`), so this never disturbs the stable build of the root
//! workspace. Before building, [`check_toolchain`] verifies that nightly, its
//! `rust-src` component and `bpf-linker` are there, and says "run
//! `cargo xtask setup`" when one is missing instead of failing deep in cargo.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

/// Environment variable through which tests (and `fanout`) are given the
/// object file; `cargo xtask test` sets it to [`object_path`].
pub const OBJECT_ENV: &str = "FANOUT_EBPF_OBJ";

/// The BPF target the program is built for.
pub const TARGET: &str = "bpfel-unknown-none";

/// The toolchain that builds the program (`-Z build-std` is nightly-only).
pub const TOOLCHAIN: &str = "nightly";

const PACKAGE: &str = "fanout-ebpf";

/// The program's crate directory.
pub fn program_dir() -> PathBuf {
    crate::cmd::repo_root().join("xdp-ebpf").join("program")
}

/// The program's own target directory (ignored by git).
pub fn target_dir() -> PathBuf {
    crate::cmd::repo_root().join("xdp-ebpf").join("target")
}

/// Where [`build`] leaves the object file.
pub fn object_path(release: bool) -> PathBuf {
    let profile = if release { "release" } else { "debug" };
    target_dir().join(TARGET).join(profile).join(PACKAGE)
}

/// Builds the XDP program and returns the path of the object file.
pub fn build(release: bool) -> anyhow::Result<PathBuf> {
    check_toolchain()?;
    let dir = program_dir();
    let mut cmd = Command::new("cargo");
    cmd.current_dir(&dir)
        .arg(format!("+{TOOLCHAIN}"))
        .args(["build", "--target", TARGET, "-Z", "build-std=core"])
        .arg("--target-dir")
        .arg(target_dir());
    if release {
        cmd.arg("--release");
    }
    // BTF for the `.maps` section (libbpf and aya read map definitions from
    // it) and for the verifier's line info.
    cmd.env(
        "CARGO_ENCODED_RUSTFLAGS",
        ["-Cdebuginfo=2", "-Clink-arg=--btf"].join("\x1f"),
    );
    // Inherited from the stable `cargo run` that started xtask, these would
    // point the nightly build at the wrong compiler or flags.
    for var in [
        "RUSTC",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "RUSTFLAGS",
        "RUSTUP_TOOLCHAIN",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
    ] {
        cmd.env_remove(var);
    }
    let status = cmd
        .status()
        .with_context(|| format!("running cargo +{TOOLCHAIN} build in {}", dir.display()))?;
    if !status.success() {
        bail!(
            "building the XDP program in {} failed ({status})",
            dir.display()
        );
    }
    let obj = object_path(release);
    if !obj.is_file() {
        bail!(
            "cargo reported success but {} does not exist",
            obj.display()
        );
    }
    Ok(obj)
}

/// Checks that nightly, its `rust-src` component and `bpf-linker` are
/// installed; the error says what is missing and to run `cargo xtask setup`.
pub fn check_toolchain() -> anyhow::Result<()> {
    let sysroot = output(
        "rustc",
        [format!("+{TOOLCHAIN}"), "--print".into(), "sysroot".into()],
    )
    .with_context(|| {
        format!("the {TOOLCHAIN} toolchain is not installed: run `cargo xtask setup`")
    })?;
    let core_src = Path::new(sysroot.trim()).join("lib/rustlib/src/rust/library/core");
    if !core_src.is_dir() {
        bail!(
            "rust-src is missing from the {TOOLCHAIN} toolchain ({} not found): \
             run `cargo xtask setup`",
            core_src.display()
        );
    }
    output("bpf-linker", ["--version"])
        .context("bpf-linker is not installed or does not run: run `cargo xtask setup`")?;
    Ok(())
}

/// Runs `program args` (outside any rustup toolchain override), returns its
/// stdout; an error when it cannot start or exits non-zero.
fn output<I, S>(program: &str, args: I) -> anyhow::Result<String>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    crate::cmd::captured(
        Command::new(program)
            .args(args)
            .env_remove("RUSTUP_TOOLCHAIN"),
    )
}
