//! `cargo xtask test`: the CI tiers, in order: setup, `cargo fmt --check`,
//! clippy with warnings denied, the eBPF build, then `cargo test --workspace`.
//! As root the privileged tests must run (`FANOUT_REQUIRE_PRIVILEGED=1`: a
//! privileged test that cannot run fails instead of skipping). Every step
//! runs even after a failure; a summary lists them all, and any failure
//! makes the command fail.

use std::time::Instant;

use anyhow::{Result, bail};

use crate::{cargo, ebpf, is_root, run_status, setup};

/// Environment variable through which tests find the built XDP object.
const EBPF_OBJECT_ENV: &str = ebpf::OBJECT_ENV;

/// The outcome of the steps so far.
#[derive(Debug, Default)]
struct Summary {
    lines: Vec<(&'static str, String, f64)>,
    failed: bool,
}

impl Summary {
    /// Records a step; a failing step fails the run unless it is `optional`.
    fn step(&mut self, name: &'static str, start: Instant, optional: bool, result: Result<String>) {
        let line = match result {
            Ok(note) if note.is_empty() => "ok".to_owned(),
            Ok(note) => format!("ok ({note})"),
            Err(err) if optional => format!("skipped: {err:#}"),
            Err(err) => {
                self.failed = true;
                format!("FAILED: {err:#}")
            }
        };
        println!("xtask test: {name}: {line}");
        self.lines.push((name, line, start.elapsed().as_secs_f64()));
    }
}

pub fn run() -> Result<()> {
    let mut summary = Summary::default();

    let t = Instant::now();
    summary.step("setup", t, false, setup::run().map(|did| did.join("; ")));

    // The eBPF object comes first: clippy and the test build embed it. As
    // root, where setup has installed the toolchain, it is required; without
    // root, tests that need it skip loudly.
    let t = Instant::now();
    let object = ebpf::build(true);
    let note = match &object {
        Ok(path) => Ok(format!("{EBPF_OBJECT_ENV}={}", path.display())),
        Err(err) => Err(anyhow::anyhow!(
            "{err:#}; tests run without {EBPF_OBJECT_ENV}"
        )),
    };
    summary.step("build-ebpf", t, !is_root(), note);

    let t = Instant::now();
    let fmt = run_status(cargo().args(["fmt", "--all", "--check"]));
    summary.step("fmt", t, false, fmt.map(|()| String::new()));

    let t = Instant::now();
    let clippy = run_status(cargo().args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]));
    summary.step("clippy", t, false, clippy.map(|()| String::new()));

    let t = Instant::now();
    let mut tests = cargo();
    tests.args(["test", "--workspace"]);
    if is_root() {
        tests.env("FANOUT_REQUIRE_PRIVILEGED", "1");
    }
    if let Ok(path) = &object {
        tests.env(EBPF_OBJECT_ENV, path);
    }
    let tier = if is_root() {
        "root: privileged tests required"
    } else {
        "not root: privileged tests skipped"
    };
    summary.step(
        "test",
        t,
        false,
        run_status(&mut tests).map(|()| tier.to_owned()),
    );

    println!();
    println!("xtask test summary:");
    for (name, line, secs) in &summary.lines {
        println!("  {name:<11} {secs:>7.1} s  {line}");
    }
    if summary.failed {
        bail!("some steps failed");
    }
    println!("all steps passed");
    Ok(())
}
