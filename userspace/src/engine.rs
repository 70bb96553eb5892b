//! The one interface every engine offers.
//!
//! Contract: an engine is started by [`crate::runtime::start`], which
//! returns it running (every socket bound and every group joined by then).
//! Whoever drives an engine (`fanout run`) sees only this trait: it reads
//! [`Engine::snapshot`] while the engine runs, watches [`Engine::failed`],
//! hands a changed plan to [`Engine::apply`] and finally calls
//! [`Engine::stop`], after which the snapshot is the final account.
//!
//! Every engine runs its workers on threads of its own, polls its rings or
//! sockets in batches, and looks at its stop flag at least every
//! [`STOP_POLL`]. A plan change reaches the workers between two batches
//! ([`Engine::apply`]), never in the middle of one.

use std::fmt;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::plan::Plan;
use crate::stats::{Heartbeat, Snapshot};

/// Longest an idle worker of any engine waits before it looks at its stop
/// flag and its mailbox again.
pub const STOP_POLL: Duration = Duration::from_millis(100);

/// How long an engine's `apply` waits for a worker to take a live change
/// (an idle one looks at its mailbox every [`STOP_POLL`]).
pub const APPLY_WAIT: Duration = Duration::from_secs(5);

/// How often a busy worker of any engine publishes its counters (they are
/// also published when it goes idle and when it stops).
pub const PUBLISH_EVERY: Duration = Duration::from_millis(10);

/// A running engine, as `fanout run` drives it.
pub trait Engine: fmt::Debug + Send {
    /// What runs, as the stats name it: `socket`, `xdp native copy`,
    /// `xdp in0=native copy, in1=generic copy`.
    fn name(&self) -> &str;

    /// The counters as the workers last published them (every 10 ms or so
    /// while they run), with the engine's own section (the XDP program's
    /// and sockets' counters); exact once [`Engine::stop`] has returned.
    fn snapshot(&self) -> Snapshot;

    /// A worker that ended on its own before [`Engine::stop`] (only a panic
    /// does that): its name. The driver then stops the engine.
    fn failed(&self) -> Option<String>;

    /// Every worker's heartbeat ([`Heartbeat`]): a count that stands still
    /// for much longer than [`STOP_POLL`] is a worker stuck inside its loop
    /// (what the systemd watchdog of `fanout run` watches).
    fn heartbeats(&self) -> Vec<Heartbeat>;

    /// Takes the traffic of the worker named `worker` (a
    /// [`Heartbeat::worker`] that stands still) away from it, where the
    /// engine can, so that a stuck worker costs no datagram while it stays
    /// stuck: the XDP engine takes its socket out of `XSKS` and its flows
    /// go to the kernel (fail-open) until fanout restarts. Returns what it
    /// did, for the log; `None` when it cannot (the socket engine's kernel
    /// sockets take nothing away from the kernel).
    fn fail_open(&mut self, worker: &str) -> Option<String> {
        let _ = worker;
        None
    }

    /// Applies `plan`, a new version of the running plan, between two
    /// batches of every worker, or refuses it whole and keeps running the
    /// old one ([`Plan::change_to`] says what changes). Outputs the change
    /// does not touch lose nothing; an added output's counters start with
    /// the first datagram after the change, a removed one's stay in the
    /// snapshot, marked removed. Returns once every worker runs the new
    /// plan.
    fn apply(&mut self, plan: &Plan) -> Result<(), ApplyError>;

    /// Stops every worker (each finishes its batch, lets what it handed to
    /// the kernel complete for a bounded time and publishes its last
    /// counters) and waits for them; names the ones that panicked.
    fn stop(&mut self) -> Result<(), String>;

    /// The capabilities the thread that drives the engine still needs once
    /// it runs (its own threads keep theirs, [`Threads::spawn_keeping`]);
    /// `fanout run` drops every other ([`crate::privileges`]).
    fn kept(&self) -> &'static [crate::privileges::Capability] {
        &[]
    }
}

/// A plan change an engine did not apply (the old plan keeps running).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    #[error("the {engine} engine cannot apply this change while running ({what}); restart fanout")]
    Unsupported { engine: String, what: String },
    /// A socket of the change could not be opened (or another system
    /// call failed) before any part of it was applied.
    #[error("{0}; nothing changed")]
    Failed(String),
}

/// The threads of one engine and the flag that stops them: what both
/// engines run their workers on, so that failure and stop read the same.
/// Dropping it stops and joins every thread.
#[derive(Debug, Default)]
pub(crate) struct Threads {
    stop: Arc<AtomicBool>,
    running: Vec<(String, JoinHandle<()>)>,
}

impl Threads {
    /// The flag every thread looks at (at least every [`STOP_POLL`]).
    pub(crate) fn stop_flag(&self) -> Arc<AtomicBool> {
        self.stop.clone()
    }

    /// Starts `f` on a thread named `name` that holds no capability
    /// ([`crate::privileges::drop_thread`]): a worker needs none once its
    /// sockets and rings are open.
    pub(crate) fn spawn(
        &mut self,
        name: String,
        f: impl FnOnce() + Send + 'static,
    ) -> io::Result<()> {
        self.spawn_keeping(name, &[], f)
    }

    /// [`Threads::spawn`], the thread keeping `keep`. Returns once the
    /// thread runs under its name with only `keep`: an engine that has
    /// started has no thread that still holds more.
    pub(crate) fn spawn_keeping(
        &mut self,
        name: String,
        keep: &'static [crate::privileges::Capability],
        f: impl FnOnce() + Send + 'static,
    ) -> io::Result<()> {
        let thread = name.clone();
        let (dropped, narrowed) = std::sync::mpsc::channel::<()>();
        let handle = std::thread::Builder::new()
            .name(name.clone())
            .spawn(move || {
                if let Err(e) = crate::privileges::drop_thread(keep) {
                    log::warn!("{thread}: dropping capabilities: {e}");
                }
                let _ = dropped.send(());
                f()
            })?;
        // Only a thread that died before sending fails this: `failed`
        // reports it.
        let _ = narrowed.recv();
        self.running.push((name, handle));
        Ok(())
    }

    /// Waits for the thread named `name`, told to end on its own (a flow
    /// removed while running), and forgets it; false if it panicked.
    pub(crate) fn retire(&mut self, name: &str) -> bool {
        match self.running.iter().position(|(n, _)| n == name) {
            Some(i) => self.running.swap_remove(i).1.join().is_ok(),
            None => true,
        }
    }

    /// A thread that ended before [`Threads::stop`]: `thread NAME ended`.
    pub(crate) fn failed(&self) -> Option<String> {
        self.running
            .iter()
            .find(|(_, h)| h.is_finished())
            .map(|(name, _)| format!("thread {name} ended"))
    }

    /// Sets the stop flag and waits for every thread; names those that
    /// panicked.
    pub(crate) fn stop(&mut self) -> Result<(), String> {
        self.stop.store(true, Ordering::Relaxed);
        let panicked: Vec<String> = self
            .running
            .drain(..)
            .filter_map(|(name, h)| h.join().is_err().then(|| format!("thread {name} panicked")))
            .collect();
        if panicked.is_empty() {
            Ok(())
        } else {
            Err(panicked.join("; "))
        }
    }
}

impl Drop for Threads {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

/// The lab's stalled worker (built with the feature `lab` only): with
/// `FANOUT_LAB_STALL_WORKER_AFTER_MS=N` in the environment, the first worker
/// that calls this at least N ms after the first call stops working (no
/// batch, no publish, no heartbeat) until the stop flag: how the tests show
/// that a stuck worker stops the systemd watchdog. Every worker loop calls
/// it once per turn; without the feature it is nothing.
#[inline]
pub(crate) fn stall_on_purpose(stop: &AtomicBool) {
    #[cfg(feature = "lab")]
    lab_stall::maybe(stop);
    #[cfg(not(feature = "lab"))]
    let _ = stop;
}

#[cfg(feature = "lab")]
mod lab_stall {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::{Duration, Instant};

    const ENV: &str = "FANOUT_LAB_STALL_WORKER_AFTER_MS";

    /// When to stall, if asked.
    static AT: OnceLock<Option<Instant>> = OnceLock::new();
    /// Whether a worker stalled already (only one does).
    static TAKEN: AtomicBool = AtomicBool::new(false);

    pub(super) fn maybe(stop: &AtomicBool) {
        let at = AT.get_or_init(|| {
            let ms: u64 = std::env::var(ENV).ok()?.parse().ok()?;
            Some(Instant::now() + Duration::from_millis(ms))
        });
        let Some(at) = *at else { return };
        if Instant::now() < at || TAKEN.swap(true, Ordering::Relaxed) {
            return;
        }
        let thread = std::thread::current();
        log::warn!(
            "lab: worker thread {} stalls on purpose ({ENV}) until the stop",
            thread.name().unwrap_or("?")
        );
        while !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
