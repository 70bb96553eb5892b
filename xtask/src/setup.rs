//! `cargo xtask setup`: makes a fresh Debian 12 ready to build, test and
//! demo fanout. Idempotent and fast when done: it checks first (dpkg-query,
//! rustup, `bpf-linker --version`) and installs only what is missing.

use std::process::Command;

use anyhow::{Result, bail};

use crate::{is_root, output_of, run_status};

/// Debian packages: iproute2 for the lab, clang/LLVM 22 and friends for
/// xsk-rs (libxdp) and bpf-linker, smcroute and ethtool for lab experiments.
const PACKAGES: &[&str] = &[
    "iproute2",
    "clang-22",
    "llvm-22",
    "llvm-22-dev",
    "libclang1-22",
    "libelf-dev",
    "zlib1g-dev",
    "pkg-config",
    "m4",
    "smcroute",
    "ethtool",
];
const BPF_LINKER_VERSION: &str = "0.13.0";
const LLVM_PREFIX: &str = "/usr/lib/llvm-22";

fn installed(package: &str) -> bool {
    output_of(Command::new("dpkg-query").args(["-W", "-f=${Status}", package]))
        .is_some_and(|s| s.trim() == "install ok installed")
}

/// Checks and installs; returns what it did (empty when nothing was needed).
pub fn run() -> Result<Vec<String>> {
    let mut did = Vec::new();

    let missing: Vec<&str> = PACKAGES.iter().copied().filter(|p| !installed(p)).collect();
    if !missing.is_empty() {
        if !is_root() {
            bail!(
                "missing Debian packages: {} (run `cargo xtask setup` as root)",
                missing.join(" ")
            );
        }
        println!("setup: installing {}", missing.join(" "));
        run_status(Command::new("apt-get").args(["update", "-q"]))?;
        run_status(
            Command::new("apt-get")
                .args(["install", "-y", "-q", "--no-install-recommends"])
                .args(&missing)
                .env("DEBIAN_FRONTEND", "noninteractive"),
        )?;
        did.push(format!("apt-get install {}", missing.join(" ")));
    }

    let toolchains = output_of(Command::new("rustup").args(["toolchain", "list"]));
    let Some(toolchains) = toolchains else {
        bail!("rustup is not available: install it from https://rustup.rs");
    };
    if !toolchains.lines().any(|l| l.starts_with("nightly")) {
        println!("setup: installing the nightly toolchain");
        run_status(Command::new("rustup").args([
            "toolchain",
            "install",
            "nightly",
            "--profile",
            "minimal",
        ]))?;
        did.push("rustup toolchain install nightly".to_owned());
    }
    let components = output_of(Command::new("rustup").args([
        "component",
        "list",
        "--toolchain",
        "nightly",
        "--installed",
    ]))
    .unwrap_or_default();
    if !components.lines().any(|l| l.starts_with("rust-src")) {
        println!("setup: adding rust-src to nightly");
        run_status(Command::new("rustup").args([
            "component",
            "add",
            "rust-src",
            "--toolchain",
            "nightly",
        ]))?;
        did.push("rustup component add rust-src --toolchain nightly".to_owned());
    }

    let linker = output_of(Command::new("bpf-linker").arg("--version")).unwrap_or_default();
    if !linker.contains(BPF_LINKER_VERSION) {
        println!("setup: installing bpf-linker {BPF_LINKER_VERSION} (about a minute)");
        run_status(
            Command::new("cargo")
                .args(["install", &format!("bpf-linker@{BPF_LINKER_VERSION}")])
                .args(["--no-default-features", "--features", "llvm-22"])
                .env("LLVM_PREFIX", LLVM_PREFIX),
        )?;
        did.push(format!("cargo install bpf-linker@{BPF_LINKER_VERSION}"));
    }

    if did.is_empty() {
        println!(
            "setup: everything present ({} packages, nightly + rust-src, bpf-linker {BPF_LINKER_VERSION})",
            PACKAGES.len()
        );
    } else {
        println!("setup: done: {}", did.join("; "));
    }
    Ok(did)
}
