//! `cargo xtask bench --callgrind`: instructions per replica of the
//! in-memory engine (`benches/engine.rs` in its `FANOUT_CALLGRIND` mode)
//! under valgrind's callgrind, no lab and no root. Each cell runs twice
//! with different round counts; the difference in instructions over the
//! extra replicas cancels start-up and set-up. It prints its table and
//! writes no file.

use std::{path::PathBuf, process::Command};

use anyhow::{Context as _, Result, bail};

use super::plan::{Args, PAYLOADS};
use crate::cmd::cargo;

/// Instructions per replica of the in-memory engine (`benches/engine.rs`
/// in its `FANOUT_CALLGRIND` mode): two runs of one cell with different
/// round counts under callgrind; the difference over the extra replicas.
pub(super) fn run(args: &Args) -> Result<()> {
    let out = cargo()
        .args([
            "bench",
            "-p",
            "fanout",
            "--bench",
            "engine",
            "--no-run",
            "--message-format=json",
        ])
        .output()
        .context("cargo bench --no-run")?;
    if !out.status.success() {
        bail!(
            "building the engine bench failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let exe = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["target"]["name"] == "engine")
        .find_map(|v| v["executable"].as_str().map(PathBuf::from))
        .context("no engine bench executable in cargo's output")?;
    let batch = args.batch.map_or(64, usize::from);
    let (r1, r2) = (20usize, 120usize);
    let payloads = args.payloads.clone().unwrap_or_else(|| PAYLOADS.to_vec());
    let outputs_list = args.outputs.clone().unwrap_or_else(|| vec![8]);
    println!("instructions per replica (valgrind callgrind, batch {batch}, rounds {r2} - {r1}):");
    for (outputs, payload) in outputs_list
        .iter()
        .flat_map(|&o| payloads.iter().map(move |&p| (o, p)))
    {
        let ir = |rounds: usize| -> Result<u64> {
            let out = Command::new("valgrind")
                .args(["--tool=callgrind", "--callgrind-out-file=/dev/null"])
                .arg(&exe)
                .env(
                    "FANOUT_CALLGRIND",
                    format!("{batch},{payload},{outputs},{rounds}"),
                )
                .output()
                .context("valgrind")?;
            let err = String::from_utf8_lossy(&out.stderr);
            if !out.status.success() {
                bail!("valgrind failed: {err}");
            }
            err.lines()
                .find_map(|l| l.split("Collected :").nth(1))
                .and_then(|n| n.trim().parse().ok())
                .with_context(|| format!("no 'Collected :' line in {err}"))
        };
        let (a, b) = (ir(r1)?, ir(r2)?);
        let replicas = ((r2 - r1) * batch * outputs) as f64;
        println!(
            "  {outputs:>2} outputs, payload {payload:>4}: {:.1} instructions per replica ({} - {} Ir over {} replicas)",
            (b - a) as f64 / replicas,
            b,
            a,
            replicas
        );
    }
    Ok(())
}
