//! `cargo xtask bench`: the lab benchmark. fanout (socket mode, XDP mode)
//! against the kernel's own multicast routing (smcroute static routes), with
//! the same generator and the same sinks, over payload sizes and output counts.
//!
//! Contract: everything runs inside namespaces named `fo-bench<pid>-*`
//! (private addresses only, deleted by guards, also on error or Ctrl-C);
//! every cell is bounded in time (the generator's `--max-seconds`, deadlines
//! on every wait) and repeated; nothing is timed by a test. The full run
//! rewrites its section of `BENCHMARKS.md` (one per offered load: unpaced
//! or `--rate N`) and `docs/benchmarks-<load>.svg`;
//! `--quick` (CI) writes under `target/fanout-bench/` and fails unless every
//! available mode produced numbers. A mode that cannot start (XDP in a build
//! without the datapath) is reported as "not available", not as a failure.
//!
//! Topology (MTU 9000 everywhere; K = the largest output count):
//!
//! ```text
//!  src: src0 10.210.0.1 ---- in0 10.210.0.2  :edge   out{k} 10.211.k.1 ---- snk{k} 10.211.k.2 :sink
//! ```
//!
//! The generator (`fanout lab gen --fast`: GSO trains through sendmmsg) sends
//! 239.1.1.1:5004 with TTL 8 from `src0`; `src0` and every `out{k}` segment
//! in software (`tx-udp-segmentation off`), so every datagram crosses the
//! links as its own frame, as from a NIC. The sinks count per output with
//! the kernel's own interface counters (`rx_packets` of `snk{k}`, no socket,
//! no XDP); the frames then die in the sink's IP layer (group not joined).
//! `in0` has GRO on, hence a NAPI instance, made threaded and pinned.
//!
//! CPU: whole-machine and per-CPU busy time from the cpuidle residency
//! counters (`/sys/devices/system/cpu/cpu*/cpuidle/state*/time`, exact,
//! unlike the tick-sampled `/proc/stat`, read instead on a host without a
//! cpuidle driver and said so in the report); the engine's and the NAPI thread's
//! own time from `/proc/PID/task/*/schedstat` (nanoseconds on CPU).
//!
//! The parts, one concept each: [`lab`] builds that topology and owns its
//! cleanup; [`programs`] builds and starts what runs in it (the generator,
//! fanout, smcrouted) and speaks their command lines and configs; [`cpu`]
//! says which CPU does what and reads their clocks; [`measure`] runs the
//! cells (warm-up, repetitions, the generator's ceiling, `--perf`);
//! [`stats`] reduces repetitions to median and spread; [`report`] renders
//! Markdown and SVG and owns the BENCHMARKS.md markers; [`callgrind`] is the
//! separate `--callgrind` mode. [`plan`] holds the command line and the
//! plan; this file the order in which things run.

mod callgrind;
mod cpu;
mod lab;
mod measure;
mod plan;
mod programs;
mod report;
mod stats;

use std::{fs, time::Instant};

use anyhow::{Context as _, Result, bail};

use crate::cmd::{cargo, is_root, run_status, target_dir};
use cpu::Layout;
use lab::{BenchLab, In0Napi};
use measure::{ModeResult, Outcome};
pub(crate) use plan::Args;
use plan::{Ctx, Mode, Plan};
use report::Report;

/// The short mode of the criterion benchmarks that `cargo xtask test` runs:
/// every bench target compiled and each cell run once.
pub(crate) fn criterion_short() -> Result<String> {
    run_status(cargo().args(["bench", "-p", "fanout", "--bench", "*", "--", "--test"]))?;
    Ok("cargo bench -p fanout --bench '*' -- --test".to_owned())
}

/// The lab benchmark's short mode that `cargo xtask test` runs (root only).
pub(crate) fn lab_quick() -> Result<String> {
    if !is_root() {
        bail!("the lab benchmark needs root");
    }
    run(Args {
        quick: true,
        no_write: true,
        ..Args::default()
    })?;
    Ok("cargo xtask bench --quick".to_owned())
}

/// `cargo xtask bench`: the callgrind mode, or the lab benchmark in this
/// order: build fanout, bring the lab up, the generator's ceiling, each
/// mode's cells, the lab down, the report written, then the check that
/// every available mode produced numbers.
pub(crate) fn run(args: Args) -> Result<()> {
    if args.callgrind {
        return callgrind::run(&args);
    }
    if !is_root() {
        bail!("the lab benchmark creates network namespaces: run it as root");
    }
    let plan = Plan::from(&args)?;
    let started = Instant::now();
    let (bin, ebpf_object) = programs::build_fanout(plan.modes.contains(&Mode::Xdp))?;
    let work = target_dir().join("fanout-bench");
    fs::create_dir_all(&work).with_context(|| format!("create {}", work.display()))?;

    let cpus = cpu::online_cpus()?;
    let layout = Layout {
        gen_cpu: cpus[0],
        edge_cpu: *cpus.get(1).unwrap_or(&cpus[0]),
        cpus: cpus.len(),
        idle: cpu::IdleClock::detect(),
    };
    let prefix = lab::prefix();
    crate::children::on_interrupt("benchmark", prefix.clone())?;
    let load_before = loadavg();
    let napi = In0Napi {
        defer_hard_irqs: args.in0_napi_defer,
        gro_flush_timeout: args.in0_gro_flush_timeout,
    };
    let bench = BenchLab::up(&prefix, plan.max_outputs(), layout, napi)?;
    println!(
        "xtask bench: lab {prefix} up ({} egress veths, MTU 9000); layout: {}",
        plan.max_outputs(),
        layout.describe()
    );
    let ctx = Ctx {
        bench: &bench,
        bin: &bin,
        work: &work,
        ebpf_object: ebpf_object.as_deref(),
        plan: &plan,
        layout,
        batch: args.batch,
    };
    let ceiling = measure::measure_ceiling(&ctx)?;
    let mut results: Vec<ModeResult> = Vec::new();
    for &mode in &plan.modes {
        results.push(measure::measure_mode(&ctx, mode)?);
    }
    drop(bench);
    let load_after = loadavg();

    let command = report::command_line();
    let report = Report {
        plan: &plan,
        layout,
        ceiling: &ceiling,
        results: &results,
        command: &command,
        load: format!("loadavg before {load_before} / after {load_after}"),
    };
    let markdown = report.markdown();
    let svg = report.svg();
    println!("{markdown}");
    if args.quick || args.no_write {
        let md = work.join("quick.md");
        fs::write(&md, &markdown).with_context(|| format!("write {}", md.display()))?;
        let sv = work.join("quick.svg");
        fs::write(&sv, &svg).with_context(|| format!("write {}", sv.display()))?;
        println!("written: {} and {}", md.display(), sv.display());
    } else {
        let tag = plan
            .rate
            .map_or("unpaced".to_owned(), |r| format!("rate-{r}"));
        let svg_name = format!("benchmarks-{tag}.svg");
        report::write_benchmarks_md(&markdown, &tag, &svg_name)?;
        let sv = crate::cmd::repo_root().join("docs").join(&svg_name);
        fs::write(&sv, &svg).with_context(|| format!("write {}", sv.display()))?;
        println!(
            "written: BENCHMARKS.md (generated section) and {}",
            sv.display()
        );
    }
    // The short mode proves the machinery: every available mode delivered.
    let mut problems = Vec::new();
    for r in &results {
        match &r.outcome {
            // XDP may be unavailable on a host, and a baseline whose kernel
            // feature is missing (said in the report) cannot run.
            Outcome::Unavailable(_) if r.mode == Mode::Xdp || r.kernel_lacks => {}
            Outcome::Unavailable(why) => problems.push(format!("{}: {why}", r.mode.name())),
            Outcome::Cells(cells) => {
                for c in cells {
                    if c.reps
                        .iter()
                        .any(|rep| rep.delivered == 0 || rep.offered == 0)
                    {
                        problems.push(format!(
                            "{} payload {} x{}: nothing delivered",
                            r.mode.name(),
                            c.payload,
                            c.outputs
                        ));
                    }
                }
            }
        }
    }
    if ceiling
        .iter()
        .any(|c| c.reps.iter().any(|r| r.offered == 0))
    {
        problems.push("the generator offered nothing".to_owned());
    }
    println!(
        "xtask bench: done in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    if !problems.is_empty() {
        bail!("benchmark produced no numbers for: {}", problems.join("; "));
    }
    Ok(())
}

/// The 1, 5 and 15 minute load averages (empty when unreadable).
fn loadavg() -> String {
    fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}
