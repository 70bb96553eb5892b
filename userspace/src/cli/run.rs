//! `fanout run --config FILE`: load the plan, choose the engine (said once,
//! on stderr), run until SIGINT/SIGTERM, then print the final counter table
//! on stdout and write the JSON snapshot.
//!
//! Exit codes: 2 for a bad configuration (the config error's own message),
//! 1 when the engine cannot start or fails, 0 after a clean stop. The ready
//! file (`--ready-file`) appears, complete, only once every socket is bound
//! and every group joined: tests and supervisors wait on it. It holds the
//! same announcement line as stderr (`engine xdp native copy (skipped: ...)`).
//!
//! The engine (DESIGN decision 6): `mode = "xdp"` and `"auto"` climb the
//! XDP ladder ([`fanout::xdp`]); the rung reached is said once on
//! stderr (`fanout: engine xdp native copy ...`) with every skipped rung and
//! its reason, and is the `engine` of the stats. When a rung fails, `auto`
//! says why and runs the socket engine, `xdp` refuses with exit 1 and the
//! reason. The XDP object is `FANOUT_EBPF_OBJ` when set, else the one built
//! into the binary; `FANOUT_XDP_MODE=generic` forces generic XDP,
//! `FANOUT_XDP_MODE=native` refuses generic.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use fanout::plan::{Mode, Plan};
use fanout::socket::SocketEngine;
use fanout::stats::{Snapshot, Stats};
use fanout::xdp::XdpEngine;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The TOML configuration to run.
    #[arg(long, short, value_name = "FILE")]
    pub config: PathBuf,
    /// Write the final counters as JSON here (and refresh it every
    /// --stats-interval while running).
    #[arg(long, value_name = "PATH")]
    pub stats_json: Option<PathBuf>,
    /// Create this file once every socket is bound and every group joined.
    #[arg(long, value_name = "PATH")]
    pub ready_file: Option<PathBuf>,
    /// Print the counter table to stderr every SECS seconds (0: only at the end).
    #[arg(long, value_name = "SECS", default_value_t = 0)]
    pub stats_interval: u64,
}

pub fn main(args: Args) -> ExitCode {
    let plan = match Plan::load(&args.config) {
        Ok(plan) => plan,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(e.exit_code());
        }
    };
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        if let Err(e) = signal_hook::flag::register(signal, stop.clone()) {
            eprintln!("error: installing the handler for signal {signal}: {e}");
            return ExitCode::from(1);
        }
    }
    // The announcement goes to stderr and into the ready file, so that a
    // supervisor (the demo, an init system) can show which rung runs.
    let (xdp, announce) = match plan.mode {
        Mode::Socket => (None, "engine socket (mode = \"socket\")".to_string()),
        Mode::Xdp | Mode::Auto => match XdpEngine::start(&plan, stop.clone()) {
            Ok(engine) => {
                let skipped = if engine.notes().is_empty() {
                    String::new()
                } else {
                    format!(" (skipped: {})", engine.notes().join("; "))
                };
                let announce = format!("engine {}{skipped}", engine.rung());
                (Some(engine), announce)
            }
            Err(e) if plan.mode == Mode::Xdp => {
                eprintln!(
                    "error: {}: [engine] mode = \"xdp\", but the XDP datapath cannot start: {e}; \
                     refusing to start (use mode = \"auto\" or \"socket\" for the socket engine)",
                    args.config.display()
                );
                return ExitCode::from(1);
            }
            Err(e) => (
                None,
                format!("engine socket (mode = \"auto\"; XDP refused: {e})"),
            ),
        },
    };
    eprintln!("fanout: {announce}");
    let ready = format!("{announce}\n");
    let result = match xdp {
        Some(engine) => run_xdp(&args, &plan, engine, &stop, &ready),
        None => run(&args, &plan, stop, &ready),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// Runs the XDP engine until the stop flag: the same ready file, periodic
/// table and final snapshot as [`run`], with the XDP section.
fn run_xdp(
    args: &Args,
    plan: &Plan,
    mut engine: XdpEngine,
    stop: &AtomicBool,
    ready: &str,
) -> anyhow::Result<()> {
    if let Some(path) = &args.ready_file
        && let Err(e) = write_atomically(path, ready.as_bytes())
    {
        stop.store(true, Ordering::Relaxed);
        let _ = engine.join();
        return Err(e.context(format!("writing the ready file {}", path.display())));
    }
    log::info!(
        "running {} flow(s) on {}; stop with SIGINT or SIGTERM",
        plan.flows.len(),
        engine.rung()
    );
    supervise(args, stop, || engine.any_finished(), || engine.snapshot());
    let joined = engine.join();
    final_report(args, &engine.snapshot())?;
    joined.map_err(anyhow::Error::msg)?;
    Ok(())
}

/// Waits for the stop flag, printing (stderr) and writing (`--stats-json`)
/// the counters every `--stats-interval`; a dead worker (`any_finished`)
/// stops the others (the engine's join reports which).
fn supervise(
    args: &Args,
    stop: &AtomicBool,
    mut any_finished: impl FnMut() -> bool,
    snapshot: impl Fn() -> Snapshot,
) {
    let interval = (args.stats_interval > 0).then(|| Duration::from_secs(args.stats_interval));
    let mut last = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(100));
        if any_finished() {
            stop.store(true, Ordering::Relaxed);
        }
        if let Some(every) = interval
            && last.elapsed() >= every
        {
            last = Instant::now();
            let snap = snapshot();
            eprint!("{snap}");
            if let Some(path) = &args.stats_json
                && let Err(e) = write_json(path, &snap)
            {
                log::warn!("{e:#}");
            }
        }
    }
}

/// The final counters: the table on stdout, the JSON file.
fn final_report(args: &Args, snap: &Snapshot) -> anyhow::Result<()> {
    print!("{snap}");
    if let Some(path) = &args.stats_json {
        write_json(path, snap)?;
    }
    Ok(())
}

fn run(args: &Args, plan: &Plan, stop: Arc<AtomicBool>, ready: &str) -> anyhow::Result<()> {
    let stats = Arc::new(Stats::for_plan(plan, "socket"));
    let engine = SocketEngine::start(plan, stats.clone(), stop.clone())?;

    if let Some(path) = &args.ready_file
        && let Err(e) = write_atomically(path, ready.as_bytes())
    {
        stop.store(true, Ordering::Relaxed);
        let _ = engine.join();
        return Err(e.context(format!("writing the ready file {}", path.display())));
    }
    log::info!(
        "running {} flow(s); stop with SIGINT or SIGTERM",
        plan.flows.len()
    );

    supervise(args, &stop, || engine.any_finished(), || stats.snapshot());
    let joined = engine.join();
    final_report(args, &stats.snapshot())?;
    joined?;
    Ok(())
}

fn write_json(path: &Path, snap: &Snapshot) -> anyhow::Result<()> {
    let mut json = serde_json::to_vec_pretty(snap).context("serialising the counters")?;
    json.push(b'\n');
    write_atomically(path, &json).with_context(|| format!("writing {}", path.display()))
}

/// Writes `bytes` to a sibling temporary file, then renames it over `path`,
/// so a reader never sees a partial file.
fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".tmp{}", std::process::id()));
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path)
        .with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))?;
    Ok(())
}
