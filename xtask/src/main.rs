//! `cargo xtask`: setup, lab, demo, test. xtask orchestrates; cargo builds.

mod ebpf;

fn main() -> anyhow::Result<()> {
    let _ = ebpf::build;
    anyhow::bail!("xtask: not implemented yet")
}
