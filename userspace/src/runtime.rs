//! What `fanout run` drives: the choice of the engine for a plan.
//!
//! Contract: [`start`] takes a resolved [`Plan`] and returns a running
//! [`Engine`] together with the line that says which engine runs and why
//! (architecture.md decision 6: a silent fallback is a bug): `mode = "socket"` runs
//! the socket engine; `"xdp"` climbs the XDP ladder and refuses to start
//! when a rung cannot be climbed; `"auto"` climbs it and falls back to the
//! socket engine, saying why. The one place that knows both engines.

use crate::config::Mode;
use crate::engine::Engine;
use crate::plan::Plan;
use crate::socket::{self, SocketEngine};
use crate::xdp::{self, XdpEngine};

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
