//! The fallback engine on ordinary UDP sockets.
//!
//! Contract: [`SocketEngine::start`] opens, binds and joins every socket of
//! the plan before it returns (an error names the flow, output, interface
//! and call), then runs one worker thread per flow until it is stopped
//! (the stop flag is looked at at least every
//! [`crate::engine::STOP_POLL`]). Per flow: the
//! flow's joined socket ([`crate::membership::join`]: bound to `group:port`
//! on the ingress interface or its VLAN sub-interface, exact group,
//! any-source or source-specific membership) and a userspace check of the
//! sender. Datagrams come in by `recvmmsg` batches (UDP GRO when the kernel
//! accepts it) and go out by `sendmmsg` on one connected, non-blocking
//! socket per output, as UDP GSO runs where possible.
//!
//! It never blocks on an output and never lets one output's trouble reach
//! another: every replica ends in `sent` or in one drop reason of its own
//! output ([`crate::stats`]). Per-packet trouble is counted, not logged;
//! capability downgrades are logged once.
//!
//! Its parts: `open` (the sockets of a flow), `worker` (the per-flow loop:
//! receive, classify), `send` (one batch to one output, counted by reason)
//! and `batch` (which datagrams can leave as one GSO send).

mod batch;
mod open;
mod send;
mod worker;

use std::sync::Arc;

use log::info;

use crate::engine::{ApplyError, Engine, Threads};
use crate::plan::Plan;
use crate::stats::{Heartbeat, Snapshot, Stats};

pub use batch::{GSO_MAX_BYTES, GSO_MAX_SEGMENTS};
pub use open::{Capabilities, Error};

/// A running socket engine: one worker thread per flow.
#[derive(Debug)]
pub struct SocketEngine {
    plan: Plan,
    stats: Arc<Stats>,
    threads: Threads,
}

impl SocketEngine {
    /// Opens, binds and joins every socket of `plan`, then starts the
    /// workers. When this returns `Ok`, every membership is in place.
    pub fn start(plan: &Plan) -> Result<Self, Error> {
        let stats = Arc::new(Stats::for_plan(plan, "socket"));
        // Dropped on an error below, it stops the workers already started.
        let mut threads = Threads::default();
        let caps = Capabilities::probe();
        let batch = plan.engine.batch_size.clamp(1, 1024);
        let mut gro_logged = false;
        let mut prepared = Vec::with_capacity(plan.flows.len());
        for (index, flow) in plan.flows.iter().enumerate() {
            let rx = open::open_receive(flow)?;
            if !rx.gro && !gro_logged {
                info!(
                    "socket engine: UDP GRO not accepted by the kernel; receiving one datagram per slot"
                );
                gro_logged = true;
            }
            let outputs = flow
                .outputs
                .iter()
                .map(|o| open::open_output(flow, o, caps))
                .collect::<Result<Vec<_>, _>>()?;
            info!(
                "socket engine: flow {:?}: {}:{} joined on {}{}, {} output(s)",
                flow.name,
                flow.group,
                flow.port,
                rx.iface,
                flow.source
                    .map(|s| format!(" from source {s}"))
                    .unwrap_or_default(),
                outputs.len()
            );
            prepared.push(worker::Worker::new(
                flow,
                rx,
                outputs,
                batch,
                stats.publisher(&format!("flow {:?}", flow.name), &[index]),
                threads.stop_flag(),
            ));
        }
        for w in prepared {
            let flow = w.flow_name().to_owned();
            threads
                .spawn(format!("fanout-{flow}"), move || w.run())
                .map_err(|source| Error::Spawn { flow, source })?;
        }
        Ok(SocketEngine {
            plan: plan.clone(),
            stats,
            threads,
        })
    }
}

impl Engine for SocketEngine {
    fn name(&self) -> &str {
        self.stats.engine()
    }

    fn snapshot(&self) -> Snapshot {
        self.stats.snapshot()
    }

    fn failed(&self) -> Option<String> {
        self.threads.failed()
    }

    fn heartbeats(&self) -> Vec<Heartbeat> {
        self.stats.heartbeats()
    }

    fn apply(&mut self, plan: &Plan) -> Result<(), ApplyError> {
        crate::engine::apply_unchanged("socket", &self.plan, plan)
    }

    fn stop(&mut self) -> Result<(), String> {
        self.threads.stop()
    }
}
