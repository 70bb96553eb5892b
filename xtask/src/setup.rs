//! `cargo xtask setup`: makes a fresh Debian 12 ready to build, test and
//! demo fanout. Idempotent and fast when done: it checks first (dpkg-query,
//! rustup, `bpf-linker --version`, `cargo deb --version`) and installs only
//! what is missing, and mounts a BPF filesystem on `/sys/fs/bpf` when none
//! is there (as root), so that `cargo xtask load` can pin.

use std::process::Command;

use std::path::Path;

use anyhow::{Context as _, Result, bail};

use crate::cmd::{is_root, output_of, run_status};

/// Debian packages: iproute2 for the lab; clang/LLVM 22, libelf, zlib,
/// pkg-config and m4 for bpf-linker and for the vendored libbpf that
/// libbpf-rs builds (tests/xdp_program.rs); smcroute (the kernel's multicast
/// routing in `cargo xtask bench`) and ethtool (lab offloads); for the
/// package (`cargo xtask package` and its test): systemd (`systemd-analyze
/// verify` of the unit), dpkg-dev (`dpkg-shlibdeps`, which cargo-deb's
/// `$auto` dependencies need, and objcopy through binutils for the debug
/// symbols) and man-db (the unit's `Documentation=man:fanout(1)`); ffmpeg
/// (the real RTP and MPEG-TS streams of the stream-health tests) and
/// python3-prometheus-client (the reference parser of `/metrics` in the
/// metrics test, run with Debian's `/usr/bin/python3`); tmux (`fanout top`
/// tested as a person sees it).
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
    "systemd",
    "dpkg-dev",
    "man-db",
    "ffmpeg",
    "python3-prometheus-client",
    "tmux",
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

    if !crate::package::cargo_deb_installed() {
        let version = crate::package::CARGO_DEB_VERSION;
        println!("setup: installing cargo-deb {version} (about a minute)");
        run_status(Command::new("cargo").args([
            "install",
            &format!("cargo-deb@{version}"),
            "--locked",
        ]))?;
        did.push(format!("cargo install cargo-deb@{version} --locked"));
    }

    if is_root() && mount_bpffs()? {
        did.push(format!("mount -t bpf -o mode=0700 bpf {BPFFS}"));
    }

    if did.is_empty() {
        println!(
            "setup: everything present ({} packages, nightly + rust-src, bpf-linker {BPF_LINKER_VERSION}, cargo-deb {})",
            PACKAGES.len(),
            crate::package::CARGO_DEB_VERSION
        );
    } else {
        println!("setup: done: {}", did.join("; "));
    }
    Ok(did)
}

/// Where the BPF filesystem is expected (pins of `cargo xtask load`).
pub const BPFFS: &str = "/sys/fs/bpf";

/// Whether `dir` is the root or inside of a mounted BPF filesystem.
fn is_bpffs(dir: &Path) -> bool {
    nix::sys::statfs::statfs(dir)
        .is_ok_and(|fs| fs.filesystem_type() == nix::sys::statfs::BPF_FS_MAGIC)
}

/// Mounts a BPF filesystem on [`BPFFS`] unless one is there already;
/// returns whether it mounted one. Idempotent; needs root to mount.
pub fn mount_bpffs() -> Result<bool> {
    let dir = Path::new(BPFFS);
    if is_bpffs(dir) {
        return Ok(false);
    }
    if !is_root() {
        bail!("{BPFFS} is not a BPF filesystem and mounting one needs root");
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {BPFFS}"))?;
    // Root's only: whoever opens the pins controls the datapath.
    run_status(Command::new("mount").args(["-t", "bpf", "-o", "mode=0700", "bpf", BPFFS]))?;
    if !is_bpffs(dir) {
        bail!("mounted a BPF filesystem on {BPFFS} but statfs does not see it");
    }
    println!("setup: mounted a BPF filesystem on {BPFFS}");
    Ok(true)
}
