//! Measuring: a cell is one (mode, payload, output count); it is warmed up
//! until every sink receives, then repeated, each repetition a bounded
//! generator run between two [`Sample`]s of every counter taken once the
//! sinks' counters stood still. It owns the raw results ([`Rep`], [`Cell`],
//! [`ModeResult`]), the generator's ceiling (no engine), and the `--perf`
//! pass (unmeasured, after a cell's repetitions). Nothing here is timed by
//! a test and every wait has a deadline; a mode that cannot start or warm
//! up is an [`Outcome::Unavailable`], not an error.

use std::{
    fs,
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};

use crate::children::spawn;

use super::{
    cpu::{idle_us, task_ns},
    plan::{Ctx, Mode},
    programs::{generate, start},
    stats::{Cell, Rep, Stats},
};

/// Everything read before and after a repetition.
struct Sample {
    at: Instant,
    sink: Vec<u64>,
    in0: u64,
    idle: Vec<u64>,
    engine_ns: u64,
    napi_ns: u64,
}

fn sample(ctx: &Ctx, k: usize, engine: Option<u32>, napi: &[u32]) -> Result<Sample> {
    Ok(Sample {
        sink: ctx.bench.sink_rx(k)?,
        in0: ctx.bench.in0_rx()?,
        idle: idle_us(ctx.layout.idle, ctx.layout.cpus)?,
        engine_ns: engine.map_or(0, task_ns),
        napi_ns: napi.iter().map(|&p| task_ns(p)).sum(),
        at: Instant::now(),
    })
}

#[derive(Debug)]
pub(super) enum Outcome {
    Unavailable(String),
    Cells(Vec<Cell>),
}

#[derive(Debug)]
pub(super) struct ModeResult {
    pub(super) mode: Mode,
    pub(super) outcome: Outcome,
    /// Unavailable because this kernel lacks what the mode needs (said in
    /// the report), not because it failed.
    pub(super) kernel_lacks: bool,
}

impl ModeResult {
    fn unavailable(mode: Mode, why: String) -> ModeResult {
        ModeResult {
            mode,
            outcome: Outcome::Unavailable(why),
            kernel_lacks: false,
        }
    }

    fn kernel_lacks(mode: Mode, why: String) -> ModeResult {
        ModeResult {
            kernel_lacks: true,
            ..ModeResult::unavailable(mode, why)
        }
    }
}

/// Waits until the sinks' counters stop moving (the queues drained).
fn settle(ctx: &Ctx, k: usize) -> Result<()> {
    let mut last = ctx.bench.sink_rx(k)?.iter().sum::<u64>();
    let mut stable = 0;
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline && stable < 2 {
        std::thread::sleep(Duration::from_millis(30));
        let now = ctx.bench.sink_rx(k)?.iter().sum::<u64>();
        stable = if now == last { stable + 1 } else { 0 };
        last = now;
    }
    Ok(())
}

fn one_rep(ctx: &Ctx, payload: usize, k: usize, engine: Option<u32>, napi: &[u32]) -> Result<Rep> {
    settle(ctx, k)?;
    let before = sample(ctx, k, engine, napi)?;
    let (offered, gen_secs) =
        generate(ctx, payload, u64::MAX / 2, ctx.plan.seconds, ctx.plan.rate)?;
    settle(ctx, k)?;
    let after = sample(ctx, k, engine, napi)?;
    let window = after.at.duration_since(before.at).as_secs_f64();
    let busy = |cpu: usize| {
        let idle = after.idle[cpu].saturating_sub(before.idle[cpu]) as f64 * 1e3;
        (window * 1e9 - idle).max(0.0)
    };
    let machine_ns: f64 = (0..ctx.layout.cpus).map(busy).sum();
    let delivered: u64 = after
        .sink
        .iter()
        .zip(&before.sink)
        .map(|(a, b)| a - b)
        .sum();
    Ok(Rep {
        offered,
        gen_secs,
        arrived: after.in0 - before.in0,
        delivered,
        machine_ns,
        edge_cpu_ns: busy(ctx.layout.edge_cpu),
        engine_ns: engine.map(|_| (after.engine_ns - before.engine_ns) as f64),
        napi_ns: (after.napi_ns - before.napi_ns) as f64,
    })
}

/// The plan's repetitions of one cell, one after the other.
fn repetitions(
    ctx: &Ctx,
    payload: usize,
    k: usize,
    engine: Option<u32>,
    napi: &[u32],
) -> Result<Vec<Rep>> {
    (0..ctx.plan.reps)
        .map(|_| one_rep(ctx, payload, k, engine, napi))
        .collect()
}

/// The generator's ceiling: no engine, in0 drops the stream (not joined).
pub(super) fn measure_ceiling(ctx: &Ctx) -> Result<Vec<Cell>> {
    let mut cells = Vec::new();
    let napi = ctx.bench.kernel_threads()?;
    for &payload in &ctx.plan.payloads {
        let c = Cell {
            payload,
            outputs: 0,
            reps: repetitions(ctx, payload, 1, None, &napi)?,
        };
        println!(
            "  generator alone, payload {payload}: {:.0} datagrams/s offered",
            Stats::of(&c).offered.0
        );
        cells.push(c);
    }
    Ok(cells)
}

/// Sends a short burst until every output delivers (routes resolved, caches
/// warm); false when nothing arrives within the deadline.
fn warm_up(ctx: &Ctx, k: usize) -> Result<bool> {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        let before = ctx.bench.sink_rx(k)?;
        generate(ctx, 1472, 2000, 0.5, Some(100_000))?;
        settle(ctx, k)?;
        let after = ctx.bench.sink_rx(k)?;
        if after.iter().zip(&before).all(|(a, b)| a > b) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// The kernel's IPv4 multicast routing (`CONFIG_IP_MROUTE`), which the
/// kernel baseline needs: its `/proc/net/ip_mr_vif` exists exactly when
/// the kernel has it.
fn kernel_has_mroute() -> bool {
    std::path::Path::new("/proc/net/ip_mr_vif").exists()
}

pub(super) fn measure_mode(ctx: &Ctx, mode: Mode) -> Result<ModeResult> {
    if mode == Mode::Kernel && !kernel_has_mroute() {
        let why = "this kernel has no IPv4 multicast routing (CONFIG_IP_MROUTE unset: no \
                   /proc/net/ip_mr_vif), so the kernel baseline cannot run on this machine"
            .to_owned();
        println!("  {}: SKIPPED: {why}", mode.name());
        return Ok(ModeResult::kernel_lacks(mode, why));
    }
    let mut cells = Vec::new();
    for &k in &ctx.plan.outputs {
        let mut engine = match start(ctx, mode, k)? {
            Ok(p) => p,
            Err(why) => {
                println!("  {}: not available: {why}", mode.name());
                return Ok(ModeResult::unavailable(mode, why));
            }
        };
        let napi = ctx.bench.kernel_threads()?;
        if !warm_up(ctx, k)? {
            let _ = engine.terminate();
            let done = engine.finish(Duration::from_secs(5))?;
            let why = format!(
                "no replica reached all {k} sinks during the warm-up; {}",
                done.stderr.lines().last().unwrap_or("").trim()
            );
            println!("  {}: {why}", mode.name());
            return Ok(ModeResult::unavailable(mode, why));
        }
        let pid = (mode != Mode::Kernel).then(|| engine.id());
        for &payload in &ctx.plan.payloads {
            let reps = repetitions(ctx, payload, k, pid, &napi)?;
            if ctx.plan.perf {
                profile(ctx, mode, payload, k)?;
            }
            let cell = Cell {
                payload,
                outputs: k,
                reps,
            };
            let s = Stats::of(&cell);
            println!(
                "  {:<13} payload {payload:>4} x{k:>2}: {:>10.0} replicas/s, loss {:>5.1} %, {:>6.0} ns machine CPU/replica",
                mode.name(),
                s.replicas.0,
                s.loss.0 * 100.0,
                s.machine.0
            );
            cells.push(cell);
        }
        if engine.is_running() {
            engine.terminate()?;
            let done = engine.finish(Duration::from_secs(10))?;
            // The engine's log (its rung, wakeup strategy, final report)
            // next to the other outputs.
            let log = ctx.work.join(format!("{}-{k}.log", mode.slug()));
            let _ = fs::write(&log, format!("{}{}", done.stdout, done.stderr));
            if mode != Mode::Kernel && !done.status.success() {
                bail!(
                    "{} exited with {} when stopped: {}",
                    mode.name(),
                    done.status,
                    done.stderr.trim()
                );
            }
        } else {
            let done = engine.finish(Duration::from_secs(1))?;
            bail!(
                "{} died during the measurement ({}): {}",
                mode.name(),
                done.status,
                done.stderr.trim()
            );
        }
    }
    Ok(ModeResult {
        mode,
        outcome: Outcome::Cells(cells),
        kernel_lacks: false,
    })
}

/// One unmeasured pass under `perf record -C <edge CPU> -g`; writes the
/// top symbols (self time) next to the other outputs.
fn profile(ctx: &Ctx, mode: Mode, payload: usize, k: usize) -> Result<()> {
    let name = format!("perf-{}-{payload}-{k}", mode.slug());
    let data = ctx.work.join(format!("{name}.data"));
    let secs = ctx.plan.seconds;
    let mut perf = Command::new("perf");
    perf.args([
        "record",
        "-q",
        "-g",
        "-C",
        &ctx.layout.edge_cpu.to_string(),
        "-o",
    ])
    .arg(&data)
    .args(["--", "sleep", &(secs + 0.5).to_string()]);
    let mut recorder = spawn("perf record", &mut perf)?;
    generate(ctx, payload, u64::MAX / 2, secs, ctx.plan.rate)?;
    let done = recorder.finish(Duration::from_secs_f64(secs + 30.0))?;
    if !done.status.success() {
        bail!(
            "perf record failed ({}): {}",
            done.status,
            done.stderr.trim()
        );
    }
    let report = Command::new("perf")
        .args([
            "report",
            "--no-children",
            "--sort",
            "comm,dso,sym",
            "--stdio",
            "-g",
            "none",
            "-i",
        ])
        .arg(&data)
        .output()
        .context("perf report")?;
    let text: String = String::from_utf8_lossy(&report.stdout)
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .take(40)
        .map(|l| format!("{l}\n"))
        .collect();
    let out = ctx.work.join(format!("{name}.txt"));
    fs::write(&out, &text).with_context(|| format!("write {}", out.display()))?;
    println!("    perf: {}", out.display());
    Ok(())
}
