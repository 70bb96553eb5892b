//! `fanout run --config FILE`: load the plan, choose the engine (said once,
//! on stderr), run until SIGINT/SIGTERM, then print the final counter table
//! on stdout and write the JSON snapshot.
//!
//! Exit codes: 2 for a bad configuration (the config error's own message),
//! 1 when the engine cannot start or fails, 0 after a clean stop. The ready
//! file (`--ready-file`) appears, complete, only once every socket is bound
//! and every group joined: tests and supervisors wait on it.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use fanout::plan::{Mode, Plan};
use fanout::socket::SocketEngine;
use fanout::stats::{Snapshot, Stats};

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
    match plan.mode {
        Mode::Xdp => {
            eprintln!(
                "error: {}: [engine] mode = \"xdp\", but the XDP datapath is not available in this build; \
                 refusing to start (use mode = \"auto\" or \"socket\" for the socket engine)",
                args.config.display()
            );
            return ExitCode::from(1);
        }
        Mode::Auto => {
            eprintln!("fanout: XDP datapath not available in this build; using the socket engine")
        }
        Mode::Socket => eprintln!("fanout: mode = \"socket\": using the socket engine"),
    }
    match run(&args, &plan) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn run(args: &Args, plan: &Plan) -> anyhow::Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, stop.clone())
            .with_context(|| format!("installing the handler for signal {signal}"))?;
    }
    let stats = Arc::new(Stats::for_plan(plan, "socket"));
    let engine = SocketEngine::start(plan, stats.clone(), stop.clone())?;

    if let Some(path) = &args.ready_file
        && let Err(e) = write_atomically(path, b"ready\n")
    {
        stop.store(true, Ordering::Relaxed);
        let _ = engine.join();
        return Err(e.context(format!("writing the ready file {}", path.display())));
    }
    log::info!(
        "running {} flow(s); stop with SIGINT or SIGTERM",
        plan.flows.len()
    );

    let interval = (args.stats_interval > 0).then(|| Duration::from_secs(args.stats_interval));
    let mut last = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(100));
        if engine.any_finished() {
            // A worker died (join reports which): stop the others.
            stop.store(true, Ordering::Relaxed);
        }
        if let Some(every) = interval
            && last.elapsed() >= every
        {
            last = Instant::now();
            let snap = stats.snapshot();
            eprint!("{snap}");
            if let Some(path) = &args.stats_json
                && let Err(e) = write_json(path, &snap)
            {
                log::warn!("{e:#}");
            }
        }
    }
    let joined = engine.join();
    let snap = stats.snapshot();
    print!("{snap}");
    if let Some(path) = &args.stats_json {
        write_json(path, &snap)?;
    }
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
