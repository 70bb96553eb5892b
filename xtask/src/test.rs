//! `cargo xtask test`: the CI tiers, in order: setup, the eBPF build, `cargo
//! fmt --check`, clippy with warnings denied (the workspace, then the product
//! build without the lab), the Debian package (`cargo xtask package`, its
//! path given to the tests as `FANOUT_DEB`), then `cargo test --workspace`,
//! then the benchmarks' short modes (criterion `--test`, `xtask bench --quick`).
//! As root the privileged tests must run (`FANOUT_REQUIRE_PRIVILEGED=1`: a
//! privileged test that cannot run fails instead of skipping), and the
//! package must build. Every step runs even after a failure; a summary
//! lists them all, and any failure makes the command fail.

use std::time::Instant;

use std::process::{Command, Stdio};

use anyhow::{Context as _, Result, bail};

use crate::cmd::{cargo, is_root, run_status};
use crate::{ebpf, package, setup};

/// Environment variable through which tests find the built XDP object.
const EBPF_OBJECT_ENV: &str = ebpf::OBJECT_ENV;

/// Environment variable through which `tests/package.rs` finds the `.deb`.
const DEB_ENV: &str = "FANOUT_DEB";

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

    // The product build, without the lab (the workspace build above turns it
    // on for the tests): what a package ships must be lint-clean too.
    let t = Instant::now();
    let product = run_status(cargo().args([
        "clippy", "-p", "fanout", "--lib", "--bins", "--", "-D", "warnings",
    ]));
    summary.step("clippy-product", t, false, product.map(|()| String::new()));

    // The package (a release build of its own, about two minutes from
    // cold): required as root, where setup has installed cargo-deb and the
    // eBPF toolchain; without root its tests skip loudly.
    let t = Instant::now();
    let deb = package::build();
    let note = match &deb {
        Ok(path) => Ok(format!("{DEB_ENV}={}", path.display())),
        Err(err) => Err(anyhow::anyhow!("{err:#}; tests run without {DEB_ENV}")),
    };
    summary.step("package", t, !is_root(), note);

    let t = Instant::now();
    let mut tests = cargo();
    tests.args(["test", "--workspace", "--no-fail-fast"]);
    if let Ok(path) = &deb {
        tests.env(DEB_ENV, path);
    }
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
    // A test that skips at run time (a kernel feature this machine lacks)
    // passes for libtest: the skips are collected here and said below.
    let skip_log = crate::cmd::target_dir().join("xtask-test-skips.txt");
    let _ = std::fs::remove_file(&skip_log);
    tests.env(fanout::lab::SKIP_LOG_ENV, &skip_log);
    let mut totals = Totals::default();
    let result = run_counting(&mut tests, &mut totals);
    let skips: Vec<String> = std::fs::read_to_string(&skip_log)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect();
    let result = result.map(|()| {
        format!(
            "{tier}; {} passed ({} of them skipped at run time), {} failed, {} ignored",
            totals.passed,
            skips.len(),
            totals.failed,
            totals.ignored
        )
    });
    summary.step("test", t, false, result);

    // The benchmarks' short mode, so they keep compiling and working.
    let t = Instant::now();
    summary.step("bench-test", t, false, crate::bench::criterion_short());
    let t = Instant::now();
    summary.step("bench-quick", t, !is_root(), crate::bench::lab_quick());

    println!();
    println!("xtask test summary:");
    for (name, line, secs) in &summary.lines {
        println!("  {name:<14} {secs:>7.1} s  {line}");
    }
    // The plain closing line CI reads: the tests of every binary added up.
    println!();
    println!(
        "tests: {} passed, {} failed, {} ignored, {} skipped at run time",
        totals.passed,
        totals.failed,
        totals.ignored,
        skips.len()
    );
    for skip in &skips {
        println!("  skipped: {skip}");
    }
    if summary.failed {
        bail!("some steps failed");
    }
    println!("all steps passed");
    Ok(())
}

/// Tests counted over every `test result:` line of a `cargo test` run.
#[derive(Debug, Default, PartialEq, Eq)]
struct Totals {
    passed: u64,
    failed: u64,
    ignored: u64,
}

impl Totals {
    /// Adds one libtest summary line (`test result: ok. 9 passed; 0 failed; 1 ignored; ...`).
    fn add_line(&mut self, line: &str) {
        let Some(rest) = line.trim().strip_prefix("test result: ") else {
            return;
        };
        for part in rest.split(['.', ';']) {
            let mut words = part.split_whitespace();
            let (Some(n), Some(what)) = (words.next(), words.next()) else {
                continue;
            };
            let Ok(n) = n.parse::<u64>() else { continue };
            match what {
                "passed" => self.passed += n,
                "failed" => self.failed += n,
                "ignored" => self.ignored += n,
                _ => {}
            }
        }
    }
}

/// Runs `cmd` with its stdout passed through line by line and counted.
fn run_counting(cmd: &mut Command, totals: &mut Totals) -> Result<()> {
    use std::io::{BufRead as _, BufReader, Write as _};
    let mut child = cmd
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("could not start {cmd:?}"))?;
    let stdout = child.stdout.take().context("no stdout pipe")?;
    let mut out = std::io::stdout().lock();
    for line in BufReader::new(stdout).lines() {
        let line = line.context("reading the test output")?;
        totals.add_line(&line);
        let _ = writeln!(out, "{line}");
    }
    drop(out);
    let status = child.wait().context("waiting for cargo test")?;
    if !status.success() {
        bail!("{cmd:?} failed: {status}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::Totals;

    #[test]
    fn totals_add_up_libtest_summaries() {
        let mut t = Totals::default();
        t.add_line("test result: ok. 132 passed; 0 failed; 2 ignored; 0 measured; 0 filtered out; finished in 1.60s");
        t.add_line(
            "test result: FAILED. 3 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out",
        );
        t.add_line("running 3 tests");
        t.add_line("test lab::x ... ok");
        assert_eq!(
            t,
            Totals {
                passed: 135,
                failed: 1,
                ignored: 2
            }
        );
    }
}
