//! `fanout run --config FILE`: load the plan, choose the engine (said once,
//! on stderr), run until SIGINT/SIGTERM, then print the final counter table
//! on stdout and write the JSON snapshot.
//!
//! Exit codes: 2 for a bad configuration (the config error's own message),
//! 1 when the engine cannot start or fails, 0 after a clean stop on SIGINT
//! or SIGTERM. SIGHUP (the unit's `ExecReload`) and `fanout ctl reload`
//! read the configuration again ([`reload`]): a bad file is refused with
//! its own message and the running plan stays; an unchanged one changes
//! nothing; a change the engine cannot apply while running (today every
//! change: live changes are their own issue) stops with the final counters
//! and [`EXIT_RESTART`] (3), so that the supervisor starts fanout again on
//! the new file (`RestartForceExitStatus=3`). A control socket ([`super::control`],
//! `--control`, `[engine] control`) serves `fanout ctl` and `fanout top`.
//! Under systemd the notify protocol
//! is spoken ([`super::notify`]): `READY=1` with the ready file, `STATUS=`,
//! `WATCHDOG=1` while every worker moves, `STOPPING=1`. The ready
//! file (`--ready-file`) appears, complete, only once every socket is bound
//! and every group joined: tests and supervisors wait on it. It holds the
//! same announcement line as stderr (`engine xdp native copy (skipped: ...)`)
//! and is removed when the engine has stopped. Every file fanout writes
//! (the ready file, `--stats-json`) is written whole through an
//! exclusively created sibling that follows no link ([`write_atomically`]).
//!
//! The engine is chosen by [`fanout::runtime::start`] (architecture.md decision 6):
//! `mode = "xdp"` and `"auto"` climb the XDP ladder ([`fanout::xdp`]); the
//! rung reached is said once on stderr (`fanout: engine xdp native copy
//! ...`) with every skipped rung and its reason, and is the `engine` of the
//! stats. When a rung fails, `auto` says why and runs the socket engine,
//! `xdp` refuses with exit 1 and the reason. Whatever runs is driven through
//! the one [`fanout::engine::Engine`] interface by one supervision loop.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use fanout::config::edit::Edit;
use fanout::engine::{ApplyError, Engine};
use fanout::plan::Plan;
use fanout::runtime::{self, StartError, Started};
use fanout::stats::Snapshot;

use super::control::{self, Pending};
use super::journal;
use super::metrics::Server;
use super::notify::Notifier;
use fanout::control::{Request, Response};

/// How often `/metrics` gets a fresh snapshot.
const METRICS_EVERY: Duration = Duration::from_secs(1);

/// Where the package installs the configuration; what `--config` defaults to.
pub const DEFAULT_CONFIG: &str = "/etc/fanout/fanout.toml";

/// The exit status after a stop on SIGHUP: start me again.
pub const EXIT_RESTART: u8 = 3;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The TOML configuration to run.
    #[arg(long, short, value_name = "FILE", default_value = DEFAULT_CONFIG)]
    pub config: PathBuf,
    /// Write the final counters as JSON here (and refresh it every
    /// --stats-interval while running).
    #[arg(long, value_name = "PATH")]
    pub stats_json: Option<PathBuf>,
    /// Create this file once every socket is bound and every group joined.
    #[arg(long, value_name = "PATH")]
    pub ready_file: Option<PathBuf>,
    /// Log one line of totals and rates every SECS seconds, and refresh
    /// --stats-json (0: only at the end).
    #[arg(long, value_name = "SECS", default_value_t = 0)]
    pub stats_interval: u64,
    /// Serve /metrics (Prometheus text format) on ADDR:PORT; overrides
    /// [engine] metrics_listen.
    #[arg(long, value_name = "ADDR:PORT")]
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// Serve the control socket (fanout ctl, fanout top) at PATH, or "off";
    /// overrides [engine] control (the last one given counts).
    #[arg(long, value_name = "PATH", overrides_with = "control")]
    pub control: Option<String>,
}

pub fn main(args: Args) -> ExitCode {
    let plan = match Plan::load(&args.config) {
        Ok(plan) => plan,
        Err(e) => {
            eprintln!("{}", journal::line(journal::ERR, &e.to_string()));
            return ExitCode::from(e.exit_code());
        }
    };
    for w in plan.warnings() {
        log::warn!("{w}");
    }
    if !plan.engine.overrides.is_empty() {
        log::info!(
            "environment overrides in force: {}",
            plan.engine.overrides.join(" ")
        );
    }
    let stop = Arc::new(AtomicBool::new(false));
    let hangup = Arc::new(AtomicBool::new(false));
    for (signal, flag) in [
        (signal_hook::consts::SIGINT, &stop),
        (signal_hook::consts::SIGTERM, &stop),
        (signal_hook::consts::SIGHUP, &hangup),
    ] {
        if let Err(e) = signal_hook::flag::register(signal, flag.clone()) {
            let why = format!("error: installing the handler for signal {signal}: {e}");
            eprintln!("{}", journal::line(journal::ERR, &why));
            return ExitCode::from(1);
        }
    }
    // Bound before anything starts: a busy address attaches nothing.
    let mut metrics = match args.metrics_listen.or(plan.engine.metrics_listen) {
        None => None,
        Some(addr) => match Server::bind(addr, super::metrics::build_info()) {
            Ok(server) => Some(server),
            Err(e) => {
                let why = format!("error: metrics: cannot listen on {addr}: {e}");
                eprintln!("{}", journal::line(journal::ERR, &why));
                return ExitCode::from(1);
            }
        },
    };
    let mut control = match bind_control(&args, &plan) {
        Ok(control) => control,
        Err(why) => {
            eprintln!("{}", journal::line(journal::ERR, &why));
            return ExitCode::from(1);
        }
    };
    let started = match runtime::start(&plan) {
        Ok(started) => started,
        Err(StartError::XdpRequired(e)) => {
            let why = format!(
                "error: {}: [engine] mode = \"xdp\", but the XDP datapath cannot start: {e}; \
                 refusing to start (use mode = \"auto\" or \"socket\" for the socket engine)",
                args.config.display()
            );
            eprintln!("{}", journal::line(journal::ERR, &why));
            return ExitCode::from(1);
        }
        Err(e) => {
            eprintln!("{}", journal::line(journal::ERR, &format!("error: {e}")));
            return ExitCode::from(1);
        }
    };
    // The announcement goes to stderr and into the ready file, so that a
    // supervisor (the demo, an init system) can show which engine runs.
    let announce = format!("fanout: {}", started.announce);
    eprintln!("{}", journal::line(journal::NOTICE, &announce));
    // The servers' threads start while this thread may still drop
    // capabilities from the bounding set: theirs go with them.
    if let Err(e) = start_servers(&plan, &started, metrics.as_mut(), control.as_mut()) {
        let why = format!("error: {e:#}");
        eprintln!("{}", journal::line(journal::ERR, &why));
        return ExitCode::from(1);
    }
    // Everything is open and bound: from here on each thread keeps only
    // what it still uses (the engine's threads dropped theirs already).
    let kept = started.engine.kept();
    match fanout::privileges::drop_thread(kept) {
        Ok(()) => log::info!(
            "privileges: workers hold no capability; the main thread keeps {} (every other \
             capability dropped, from the bounding set too)",
            fanout::privileges::names(kept)
        ),
        Err(e) => log::warn!("privileges: dropping capabilities: {e}"),
    }
    let result = run(
        &args,
        &plan,
        started,
        (&stop, &hangup),
        (metrics.as_mut(), control.as_mut()),
    );
    if let Some(server) = metrics {
        server.stop();
    }
    if let Some(server) = control {
        server.stop();
    }
    match result {
        Ok(true) => ExitCode::from(EXIT_RESTART),
        Ok(false) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{}", journal::line(journal::ERR, &format!("error: {e:#}")));
            ExitCode::from(1)
        }
    }
}

/// The control socket `fanout run` serves, bound before anything starts:
/// `--control` over `[engine] control`. A socket configured on purpose
/// that cannot be served stops the start (the reason); the default one
/// (`/run/fanout/fanout.sock`) is only warned about, so that a `fanout run`
/// by hand beside the service, or without the rights for `/run`, still
/// runs.
fn bind_control(args: &Args, plan: &Plan) -> Result<Option<control::Server>, String> {
    let path = match args.control.as_deref() {
        Some("off") => None,
        Some(p) => Some(PathBuf::from(p)),
        None => plan.engine.control.clone(),
    };
    let Some(path) = path else {
        return Ok(None);
    };
    let default =
        args.control.is_none() && path.as_path() == Path::new(fanout::control::DEFAULT_SOCKET);
    match control::Server::bind(&path, plan.engine.control_group.as_deref(), &args.config) {
        Ok(server) => Ok(Some(server)),
        Err(e) if default => {
            log::warn!(
                "control: {e}: fanout ctl and fanout top cannot reach this engine (set [engine] \
                 control or --control to serve another path)"
            );
            Ok(None)
        }
        Err(e) => Err(format!("error: control: {e}")),
    }
}

/// Starts the `/metrics` and control threads (each drops every
/// capability) on the started engine's first counters.
fn start_servers(
    plan: &Plan,
    started: &Started,
    metrics: Option<&mut Server>,
    control: Option<&mut control::Server>,
) -> anyhow::Result<()> {
    if let Some(server) = metrics {
        server
            .start(started.engine.snapshot())
            .context("starting the metrics thread")?;
        log::info!("metrics: http://{}/metrics", server.addr());
    }
    if let Some(server) = control {
        server
            .start(plan, started.engine.snapshot())
            .context("starting the control thread")?;
        log::info!(
            "control: {} (fanout ctl, fanout top)",
            server.path().display()
        );
    }
    Ok(())
}

/// What a reload did.
#[derive(Debug)]
enum Reloaded {
    /// The file is bad (or a socket of the change could not be opened):
    /// the message and exit status; the plan stays.
    Refused(String, u8),
    /// Nothing to change.
    Unchanged,
    /// Applied while running: what changed, one line each.
    Applied(Vec<String>),
    /// The engine cannot apply it while running: stop to be restarted.
    Restart(String),
}

/// The running configuration: the file's text with the changes made with
/// `fanout ctl` (runtime-only), the plan the engine runs, and the plan of
/// the file as last read.
#[derive(Debug)]
struct Running {
    text: String,
    plan: Plan,
    file: Plan,
}

impl Running {
    /// How the running plan differs from the file, one line each.
    fn runtime_changes(&self) -> Vec<String> {
        self.file
            .change_to(&self.plan)
            .map(|c| c.describe())
            .unwrap_or_default()
    }
}

/// Reads the configuration again and hands it to the engine (SIGHUP,
/// `fanout ctl reload`), logging what came of it. The file replaces every
/// change made with `fanout ctl`.
fn reload(config: &Path, running: &mut Running, engine: &mut dyn Engine) -> Reloaded {
    let loaded = std::fs::read_to_string(config)
        .map_err(|source| fanout::config::Error::Read {
            path: config.to_owned(),
            source,
        })
        .and_then(|text| {
            let c = fanout::config::Config::from_text(&text, config)?;
            Ok((text, Plan::resolve(&c)?))
        });
    let (text, next) = match loaded {
        Ok(loaded) => loaded,
        Err(e) => {
            log::error!("reload: {e}; the running plan stays");
            return Reloaded::Refused(e.to_string(), e.exit_code());
        }
    };
    let change = running.plan.change_to(&next);
    if change.as_ref().is_ok_and(|c| c.is_empty()) {
        log::info!(
            "reload: {} is unchanged: nothing to apply",
            config.display()
        );
        *running = Running {
            text,
            plan: next.clone(),
            file: next,
        };
        return Reloaded::Unchanged;
    }
    match engine.apply(&next) {
        Ok(()) => {
            let lines = change.map(|c| c.describe()).unwrap_or_default();
            for line in &lines {
                log::info!("reload: {line}");
            }
            *running = Running {
                text,
                plan: next.clone(),
                file: next,
            };
            Reloaded::Applied(lines)
        }
        Err(e @ ApplyError::Failed(_)) => {
            log::error!("reload: {e}; the running plan stays");
            Reloaded::Refused(format!("error: {e}"), 1)
        }
        Err(e) => {
            log::warn!(
                "reload: {e}: stopping so that the supervisor starts fanout again on {} (exit \
                 {EXIT_RESTART})",
                config.display()
            );
            Reloaded::Restart(e.to_string())
        }
    }
}

/// Carries out a change asked for with `fanout ctl` (runtime-only),
/// validated as the file would be; refused whole, the running plan staying,
/// on any error.
fn change(config: &Path, running: &mut Running, engine: &mut dyn Engine, edit: &Edit) -> Response {
    let at = fanout::config::Location {
        path: PathBuf::from(edit.command()),
        line: None,
        column: None,
    };
    let edited = edit.apply(&running.text, config).and_then(|(text, c)| {
        let plan = Plan::resolve(&c).map_err(|e| e.relocated(&at))?;
        Ok((text, plan))
    });
    let (text, next) = match edited {
        Ok(edited) => edited,
        Err(e) => {
            log::warn!("{}: refused: {e}", edit.command());
            return Response::error(e.exit_code(), e.to_string());
        }
    };
    let lines = match running.plan.change_to(&next) {
        Ok(c) if c.is_empty() => return Response::done("nothing to change"),
        Ok(c) => c.describe(),
        Err(what) => return Response::error(2, format!("error: {}: {what}", edit.command())),
    };
    match engine.apply(&next) {
        Ok(()) => {
            for line in &lines {
                log::info!("{}: {line} (runtime-only)", edit.command());
            }
            running.text = text;
            running.plan = next;
            Response::done(format!(
                "{}\n(runtime-only: {} is unchanged; fanout ctl reload or SIGHUP returns to it)",
                lines.join("\n"),
                config.display()
            ))
        }
        Err(e) => {
            log::warn!("{}: refused: {e}", edit.command());
            Response::error(1, format!("error: {e}; the running plan stays"))
        }
    }
}

/// How the supervision loop ended.
#[derive(Debug)]
enum Outcome {
    /// SIGINT or SIGTERM.
    Signal,
    /// A reload that needs a restart (the reason).
    Restart(String),
    /// A worker ended on its own (its name).
    Failed(String),
}

/// Drives a started engine until the stop flag or a reload that needs a
/// restart: the ready file, systemd's notifications, the periodic line,
/// the final report. The one supervision loop of every engine. True when
/// fanout is to be started again ([`EXIT_RESTART`]).
fn run(
    args: &Args,
    plan: &Plan,
    started: Started,
    (stop, hangup): (&AtomicBool, &AtomicBool),
    (metrics, mut control): (Option<&mut Server>, Option<&mut control::Server>),
) -> anyhow::Result<bool> {
    let Started {
        mut engine,
        announce,
    } = started;
    if let Some(path) = &args.ready_file
        && let Err(e) = write_atomically(path, format!("{announce}\n").as_bytes())
    {
        let _ = engine.stop();
        return Err(e.context(format!("writing the ready file {}", path.display())));
    }
    let mut notifier = Notifier::new(engine.snapshot(), engine.heartbeats());
    notifier.ready();
    log::info!(
        "running {} flow(s) on {}; stop with SIGINT or SIGTERM (SIGHUP: read {} again; a \
         change that cannot be applied live stops it to be restarted, exit {EXIT_RESTART})",
        plan.flows.len(),
        engine.name(),
        args.config.display()
    );
    if let Some(d) = notifier.describe() {
        log::info!("{d}");
    }
    let requests = control.as_deref_mut().and_then(|s| s.requests());
    let mut watch = Watch::new(engine.snapshot());
    let outcome = supervise(
        args,
        plan,
        (stop, hangup),
        engine.as_mut(),
        (&mut watch, &mut notifier),
        (metrics.as_deref(), control.as_deref(), requests.as_ref()),
    );
    let why = match &outcome {
        Outcome::Failed(why) => why.clone(),
        Outcome::Restart(why) => format!("reload ({why}), to be restarted"),
        Outcome::Signal => "signal".to_owned(),
    };
    notifier.stopping(&why);
    let stopped = engine.stop();
    remove_ready(args);
    let last = engine.snapshot();
    watch.finish(&last);
    final_report(args, &last)?;
    stopped.map_err(anyhow::Error::msg)?;
    match outcome {
        Outcome::Failed(why) => Err(anyhow::anyhow!("{why} before the stop")),
        Outcome::Restart(_) => Ok(true),
        Outcome::Signal => Ok(false),
    }
}

/// Waits for the stop flag, logging one line of totals and rates and
/// writing (`--stats-json`) the counters every `--stats-interval`, feeding
/// `/metrics` and the control socket every second, and carrying out
/// reloads (SIGHUP, `fanout ctl reload`); returns how it ended.
fn supervise(
    args: &Args,
    plan: &Plan,
    (stop, hangup): (&AtomicBool, &AtomicBool),
    engine: &mut dyn Engine,
    (watch, notifier): (&mut Watch, &mut Notifier),
    (metrics, control, requests): (
        Option<&Server>,
        Option<&control::Server>,
        Option<&std::sync::mpsc::Receiver<Pending>>,
    ),
) -> Outcome {
    let interval = (args.stats_interval > 0).then(|| Duration::from_secs(args.stats_interval));
    let mut last = Instant::now();
    let mut metrics_at = Instant::now();
    let mut reported = engine.snapshot();
    let mut running = Running {
        // What the plan was loaded from; a file that cannot be read again
        // leaves fanout ctl's changes to fail with its message.
        text: std::fs::read_to_string(&args.config).unwrap_or_default(),
        plan: plan.clone(),
        file: plan.clone(),
    };
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(100));
        if let Some(why) = engine.failed() {
            log::error!("{why}: stopping the engine");
            return Outcome::Failed(why);
        }
        let mut changed = false;
        if hangup.swap(false, Ordering::Relaxed) {
            log::info!("SIGHUP: reading {} again", args.config.display());
            match reload(&args.config, &mut running, engine) {
                Reloaded::Restart(why) => return Outcome::Restart(why),
                Reloaded::Applied(_) => changed = true,
                Reloaded::Refused(..) | Reloaded::Unchanged => {}
            }
        }
        while let Some(p) = requests.and_then(|r| r.try_recv().ok()) {
            let (answer, restart) = match p.request {
                Request::Reload => match reload(&args.config, &mut running, engine) {
                    Reloaded::Refused(why, status) => (Response::error(status, why), None),
                    Reloaded::Unchanged => (
                        Response::done(format!(
                            "{} is unchanged: nothing to apply",
                            args.config.display()
                        )),
                        None,
                    ),
                    Reloaded::Applied(lines) => {
                        changed = true;
                        (
                            Response::done(format!(
                                "{}\napplied from {}",
                                lines.join("\n"),
                                args.config.display()
                            )),
                            None,
                        )
                    }
                    Reloaded::Restart(why) => (
                        Response::done(format!(
                            "{why}: fanout run stops (exit {EXIT_RESTART}) to be started again \
                             on {}",
                            args.config.display()
                        )),
                        Some(why),
                    ),
                },
                Request::Change(edit) => {
                    let answer = change(&args.config, &mut running, engine, &edit);
                    changed |= answer.error.is_none();
                    (answer, None)
                }
                Request::Show => (
                    Response::error(1, "error: show is answered by the control thread"),
                    None,
                ),
            };
            if changed && let Some(server) = control {
                server.set_plan(&running.plan, running.runtime_changes());
                server.update(engine.snapshot());
            }
            let _ = p.reply.send(answer);
            if let Some(why) = restart {
                return Outcome::Restart(why);
            }
        }
        if changed && let Some(server) = control {
            server.set_plan(&running.plan, running.runtime_changes());
        }
        for worker in notifier.tick(&engine.heartbeats(), || engine.snapshot()) {
            if let Some(done) = engine.fail_open(&worker) {
                log::warn!("{done}");
            }
        }
        watch.poll(engine);
        if (metrics.is_some() || control.is_some()) && metrics_at.elapsed() >= METRICS_EVERY {
            let snap = engine.snapshot();
            if let Some(server) = control {
                server.update(snap.clone());
            }
            if let Some(server) = metrics {
                server.update(snap);
            }
            metrics_at = Instant::now();
        }
        if let Some(every) = interval
            && last.elapsed() >= every
        {
            let secs = last.elapsed().as_secs_f64();
            last = Instant::now();
            let snap = engine.snapshot();
            log::info!("{}", snap.summary_since(&reported, secs));
            if let Some(path) = &args.stats_json
                && let Err(e) = write_json(path, &snap)
            {
                log::warn!("{e:#}");
            }
            reported = snap;
        }
    }
    Outcome::Signal
}

/// Looks at the counters once a second for losses an operator must be told
/// about ([`Snapshot::warnings_since`]) and logs them: the first at once,
/// then at most once per [`Watch::QUIET`] while they last.
struct Watch {
    told: Snapshot,
    told_at: Option<Instant>,
    looked_at: Instant,
}

impl Watch {
    const EVERY: Duration = Duration::from_secs(1);
    const QUIET: Duration = Duration::from_secs(10);

    fn new(start: Snapshot) -> Self {
        Self {
            told: start,
            told_at: None,
            looked_at: Instant::now(),
        }
    }

    fn poll(&mut self, engine: &dyn Engine) {
        if self.looked_at.elapsed() < Self::EVERY
            || self.told_at.is_some_and(|t| t.elapsed() < Self::QUIET)
        {
            return;
        }
        self.looked_at = Instant::now();
        self.tell(engine.snapshot());
    }

    /// At the stop: what the last look did not see yet, whatever the time.
    fn finish(&mut self, last: &Snapshot) {
        self.tell(last.clone());
    }

    fn tell(&mut self, snap: Snapshot) {
        let warnings = snap.warnings_since(&self.told);
        if warnings.is_empty() {
            return;
        }
        for w in &warnings {
            log::warn!("{w}");
        }
        self.told = snap;
        self.told_at = Some(Instant::now());
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

fn write_json(path: &Path, snap: &Snapshot) -> anyhow::Result<()> {
    let mut json = serde_json::to_vec_pretty(snap).context("serialising the counters")?;
    json.push(b'\n');
    write_atomically(path, &json).with_context(|| format!("writing {}", path.display()))
}

/// Writes `bytes` to a fresh sibling file, then renames it over `path`, so
/// a reader never sees a partial file. The sibling's name is unpredictable
/// and it is created exclusively without following links (`O_CREAT |
/// O_EXCL | O_NOFOLLOW`), mode 0644: a link or file planted in the
/// directory is never written through, and the rename replaces a link at
/// `path` itself rather than the file it points to.
fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::hash::{BuildHasher, Hasher};
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let name = path
        .file_name()
        .with_context(|| format!("{} names no file", path.display()))?;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    for attempt in 0u32.. {
        // A per-process random key (std's hash seed), mixed with the try.
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u32(attempt);
        h.write_u32(std::process::id());
        let tmp = dir.join(format!(
            ".{}.{:016x}.tmp",
            name.to_string_lossy(),
            h.finish()
        ));
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&tmp);
        let mut file = match file {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && attempt < 16 => continue,
            Err(e) => return Err(e).with_context(|| format!("creating {}", tmp.display())),
        };
        let written = file.write_all(bytes).and_then(|()| file.sync_data());
        drop(file);
        if let Err(e) = written.and_then(|()| std::fs::rename(&tmp, path)) {
            let _ = std::fs::remove_file(&tmp);
            return Err(e)
                .with_context(|| format!("writing {} over {}", tmp.display(), path.display()));
        }
        return Ok(());
    }
    unreachable!("the loop returns")
}

/// Removes the ready file at exit (it says the engine runs): a missing
/// one is fine, another failure is said.
fn remove_ready(args: &Args) {
    if let Some(path) = &args.ready_file
        && let Err(e) = std::fs::remove_file(path)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        log::warn!("removing the ready file {}: {e}", path.display());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, symlink};

    fn scratch(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("fanout-run-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn a_link_at_the_path_is_replaced_not_written_through() {
        let dir = scratch("link");
        let victim = dir.join("victim");
        std::fs::write(&victim, b"precious").unwrap();
        let stats = dir.join("stats.json");
        symlink(&victim, &stats).unwrap();
        write_atomically(&stats, b"{}\n").unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
        let meta = std::fs::symlink_metadata(&stats).unwrap();
        assert!(meta.file_type().is_file(), "a regular file now");
        assert_eq!(meta.mode() & 0o777, 0o644);
        assert_eq!(std::fs::read(&stats).unwrap(), b"{}\n");
        // The old predictable sibling name is just another file.
        let planted = dir.join(format!("stats.json.tmp{}", std::process::id()));
        symlink(&victim, &planted).unwrap();
        write_atomically(&stats, b"[]\n").unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
        assert_eq!(std::fs::read(&stats).unwrap(), b"[]\n");
        // Nothing left behind but what was there.
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        let planted_name = planted.file_name().unwrap().to_string_lossy().into_owned();
        assert_eq!(
            names,
            ["stats.json".to_owned(), planted_name, "victim".to_owned()]
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_directory_that_cannot_be_written_is_an_error_naming_the_file() {
        let err = write_atomically(Path::new("/proc/fanout-no/stats.json"), b"x").unwrap_err();
        assert!(
            format!("{err:#}").contains("/proc/fanout-no/.stats.json."),
            "{err:#}"
        );
    }
}
