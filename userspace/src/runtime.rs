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
    let why = match plan.engine.mode {
        Mode::Socket => "mode = \"socket\"".to_owned(),
        Mode::Xdp | Mode::Auto => match XdpEngine::start(plan) {
            Ok(engine) => {
                let skipped = if engine.notes().is_empty() {
                    String::new()
                } else {
                    format!(" (skipped: {})", engine.notes().join("; "))
                };
                return Ok(Started {
                    announce: format!("engine {}{skipped}", engine.name()),
                    engine: Box::new(engine),
                });
            }
            Err(e) if plan.engine.mode == Mode::Xdp => {
                return Err(StartError::XdpRequired(Box::new(e)));
            }
            Err(e) => format!("mode = \"auto\"; XDP refused: {e}"),
        },
    };
    let engine = SocketEngine::start(plan)?;
    Ok(Started {
        announce: format!("engine {} ({why})", engine.name()),
        engine: Box::new(engine),
    })
}
