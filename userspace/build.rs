//! Embeds the XDP object into the `fanout` library when it has been built.
//!
//! The object comes from `FANOUT_EBPF_OBJ` when set, else from the default
//! output of `cargo xtask build-ebpf --release`
//! (`xdp-ebpf/target/bpfel-unknown-none/release/fanout-ebpf`). When it
//! exists it is copied to `OUT_DIR/fanout-ebpf.o` and the cfg
//! `fanout_embedded_ebpf` is set ([`fanout::xdp::embedded_object`] then
//! returns it). When it does not, the build goes on without it: a plain
//! `cargo build` on stable never needs the eBPF toolchain.

use std::path::{Path, PathBuf};

const ENV: &str = "FANOUT_EBPF_OBJ";
const CFG: &str = "fanout_embedded_ebpf";

fn main() {
    println!("cargo::rustc-check-cfg=cfg({CFG})");
    println!("cargo::rerun-if-env-changed={ENV}");
    println!("cargo::rerun-if-changed=build.rs");
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
    } else {
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

/// The nearest existing ancestor of `path` that is `root` or inside it.
fn nearest_existing<'a>(path: &'a Path, root: &Path) -> Option<&'a Path> {
    path.ancestors()
        .skip(1)
        .take_while(|p| p.starts_with(root))
        .find(|p| p.is_dir())
}
