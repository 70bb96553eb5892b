//! Embeds the XDP object into the `fanout` library when it has been built.
//!
//! The object comes from `FANOUT_EBPF_OBJ` when set, else from the default
//! output of `cargo xtask build-ebpf --release`
//! (`xdp-ebpf/target/bpfel-unknown-none/release/fanout-ebpf`). When it
//! exists it is copied to `OUT_DIR/fanout-ebpf.o` and the cfg
//! `fanout_embedded_ebpf` is set ([`fanout::xdp::embedded_object`] then
//! returns it). When it does not, the build goes on without it: a plain
//! `cargo build` on stable never needs the eBPF toolchain.
//!
//! It also says what `fanout --version` reports: `FANOUT_EBPF_SHA256` (the
//! SHA-256 of the embedded object, empty when none is) and
//! `FANOUT_REVISION`, the source revision: the variable of that name when
//! set (`cargo xtask package` sets it), else `git describe --always
//! --dirty` of the checkout when the build script last ran (it runs again
//! when HEAD moves), else `unknown`.

use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

const ENV: &str = "FANOUT_EBPF_OBJ";
const CFG: &str = "fanout_embedded_ebpf";
const REVISION: &str = "FANOUT_REVISION";

fn main() {
    println!("cargo::rustc-check-cfg=cfg({CFG})");
    println!("cargo::rerun-if-env-changed={ENV}");
    println!("cargo::rerun-if-changed=build.rs");
    revision();
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let default_dir = manifest.join("../xdp-ebpf");
    let (object, from_env) = match std::env::var_os(ENV) {
        Some(p) if !p.is_empty() => (PathBuf::from(p), true),
        _ => (
            default_dir.join("target/bpfel-unknown-none/release/fanout-ebpf"),
            false,
        ),
    };
    let out =
        PathBuf::from(std::env::var_os("OUT_DIR").expect("set by cargo")).join("fanout-ebpf.o");
    if object.is_file() {
        println!("cargo::rerun-if-changed={}", object.display());
        if let Err(e) = std::fs::copy(&object, &out) {
            panic!(
                "copying the XDP object {} to {}: {e}",
                object.display(),
                out.display()
            );
        }
        println!("cargo::rustc-cfg={CFG}");
        let bytes = std::fs::read(&out).expect("reading the copied XDP object");
        let hex: String = Sha256::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        println!("cargo::rustc-env=FANOUT_EBPF_SHA256={hex}");
    } else {
        println!("cargo::rustc-env=FANOUT_EBPF_SHA256=");
        // Watch the nearest existing ancestor inside `xdp-ebpf/` (never
        // higher: cargo scans a watched directory recursively), so that
        // building the object later makes cargo embed it. A path given in
        // the environment is watched through the variable only.
        let _ = std::fs::remove_file(&out);
        if !from_env && let Some(dir) = nearest_existing(&object, &default_dir) {
            println!("cargo::rerun-if-changed={}", dir.display());
        }
        println!(
            "cargo::warning=XDP object {} not found: building without it (run cargo xtask build-ebpf --release)",
            object.display()
        );
    }
}

/// `FANOUT_REVISION` for the crate: see the module documentation.
fn revision() {
    println!("cargo::rerun-if-env-changed={REVISION}");
    let given = std::env::var(REVISION).ok().filter(|r| !r.is_empty());
    let rev = given.unwrap_or_else(|| {
        let git = |args: &[&str]| {
            Command::new("git")
                .args(args)
                .output()
                .ok()
                .filter(|o| o.status.success())
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        };
        // Run again when HEAD moves: HEAD itself and the branch it names.
        if let Some(dir) = git(&["rev-parse", "--absolute-git-dir"]) {
            let dir = PathBuf::from(dir);
            println!("cargo::rerun-if-changed={}", dir.join("HEAD").display());
            if let Some(head) = git(&["symbolic-ref", "-q", "HEAD"]) {
                println!("cargo::rerun-if-changed={}", dir.join(head).display());
            }
        }
        git(&["describe", "--always", "--dirty", "--abbrev=12"])
            .unwrap_or_else(|| "unknown".to_owned())
    });
    println!("cargo::rustc-env={REVISION}={rev}");
}

/// The nearest existing ancestor of `path` that is `root` or inside it.
fn nearest_existing<'a>(path: &'a Path, root: &Path) -> Option<&'a Path> {
    path.ancestors()
        .skip(1)
        .take_while(|p| p.starts_with(root))
        .find(|p| p.is_dir())
}
