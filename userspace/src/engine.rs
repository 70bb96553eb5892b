//! The one interface every engine offers, and the choice between engines.
//!
//! Contract: [`start`] takes a resolved [`Plan`] and returns a running
//! [`Engine`] (every socket bound and every group joined by then) together
//! with the line that says which engine runs and why (DESIGN decision 6:
//! a silent fallback is a bug): `mode = "socket"` runs the socket engine;
//! `"xdp"` climbs the XDP ladder and refuses to start when no rung holds;
//! `"auto"` climbs it and falls back to the socket engine, saying why.
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
use std::time::Duration;

use crate::config::Mode;
use crate::plan::Plan;
use crate::socket::{self, SocketEngine};
use crate::stats::Snapshot;
use crate::xdp::{self, XdpEngine};

/// Longest an idle worker of any engine waits before it looks at its stop
/// flag and its mailbox again.
pub const STOP_POLL: Duration = Duration::from_millis(100);

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

    /// Applies `plan`, a new version of the running plan, between two
    /// batches of every worker, or refuses it whole and keeps running the
    /// old one. The seam for live changes: today only an unchanged plan is
    /// accepted (live changes are their own issue).
    fn apply(&mut self, plan: &Plan) -> Result<(), ApplyError>;

    /// Stops every worker (each finishes its batch, lets what it handed to
    /// the kernel complete for a bounded time and publishes its last
    /// counters) and waits for them; names the ones that panicked.
    fn stop(&mut self) -> Result<(), String>;
}

/// A plan change an engine did not apply (the old plan keeps running).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    #[error("the {engine} engine cannot apply this change while running ({what}); restart fanout")]
    Unsupported { engine: String, what: String },
}

/// What [`start`] started.
#[derive(Debug)]
pub struct Started {
    pub engine: Box<dyn Engine>,
    /// The line that says which engine runs and which rungs were skipped,
    /// e.g. `engine xdp native copy (skipped: in0 queue 0: ...)` or
    /// `engine socket (mode = "auto"; XDP refused: ...)`.
    pub announce: String,
}

/// Why no engine started.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// `mode = "xdp"`, and a rung of the XDP ladder could not be climbed.
    #[error("the XDP datapath cannot start: {0}")]
    XdpRequired(#[source] Box<xdp::Refused>),
    /// The socket engine could not open, bind or join a socket.
    #[error(transparent)]
    Socket(#[from] socket::Error),
}

/// Starts the engine `plan.engine.mode` asks for; see the module
/// documentation. `plan.flows` must not be empty.
pub fn start(plan: &Plan) -> Result<Started, StartError> {
    let xdp = match plan.engine.mode {
        Mode::Socket => None,
        Mode::Xdp | Mode::Auto => Some(XdpEngine::start(plan)),
    };
    let (fallback, why) = match xdp {
        None => (None, "mode = \"socket\"".to_owned()),
        Some(Ok(engine)) => {
            let skipped = if engine.notes().is_empty() {
                String::new()
            } else {
                format!(" (skipped: {})", engine.notes().join("; "))
            };
            let announce = format!("engine {}{skipped}", engine.name());
            return Ok(Started {
                engine: Box::new(engine),
                announce,
            });
        }
        Some(Err(e)) if plan.engine.mode == Mode::Xdp => {
            return Err(StartError::XdpRequired(Box::new(e)));
        }
        Some(Err(e)) => (Some(e), String::new()),
    };
    let why = match fallback {
        Some(e) => format!("mode = \"auto\"; XDP refused: {e}"),
        None => why,
    };
    let engine = SocketEngine::start(plan)?;
    Ok(Started {
        announce: format!("engine {} ({why})", engine.name()),
        engine: Box::new(engine),
    })
}

/// [`Engine::apply`] for an engine that cannot change while running: an
/// unchanged plan is fine, any other names the first difference.
pub(crate) fn apply_unchanged(engine: &str, running: &Plan, next: &Plan) -> Result<(), ApplyError> {
    match running.first_difference(next) {
        None => Ok(()),
        Some(what) => Err(ApplyError::Unsupported {
            engine: engine.to_owned(),
            what,
        }),
    }
}
