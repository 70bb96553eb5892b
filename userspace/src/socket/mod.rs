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

use worker::Command;

use std::sync::Arc;
use std::sync::mpsc::{Sender, SyncSender, channel, sync_channel};

use log::{info, warn};

use crate::engine::{ApplyError, Engine, Threads};
use crate::plan::{FlowPlan, Plan};
use crate::stats::{Heartbeat, Snapshot, Stats};

pub use batch::{GSO_MAX_BYTES, GSO_MAX_SEGMENTS};
pub use open::{Capabilities, Error};

/// A running socket engine: one worker thread per flow.
#[derive(Debug)]
pub struct SocketEngine {
    plan: Plan,
    stats: Arc<Stats>,
    threads: Threads,
    caps: Capabilities,
    batch: usize,
    /// Each running flow's mailbox, by flow name.
    mailboxes: Vec<(String, Sender<Command>)>,
}

/// A flow's sockets, open and ready to run.
struct Prepared {
    flow: FlowPlan,
    /// `None`: handed over by the flow's previous worker (a flow changed
    /// in place), or opened when it starts.
    rx: Option<open::ReceiveSocket>,
    outputs: Vec<open::OutputSocket>,
}

impl SocketEngine {
    /// Opens, binds and joins every socket of `plan`, then starts the
    /// workers. When this returns `Ok`, every membership is in place.
    pub fn start(plan: &Plan) -> Result<Self, Error> {
        let mut engine = SocketEngine {
            plan: plan.clone(),
            stats: Arc::new(Stats::for_plan(plan, "socket")),
            // Dropped on an error below, it stops the workers already started.
            threads: Threads::default(),
            caps: Capabilities::probe(),
            batch: plan.engine.batch_size.clamp(1, 1024),
            mailboxes: Vec::new(),
        };
        let mut gro_logged = false;
        let mut prepared = Vec::with_capacity(plan.flows.len());
        for flow in &plan.flows {
            let p = engine.prepare(flow, true)?;
            if p.rx.as_ref().is_some_and(|rx| !rx.gro) && !gro_logged {
                info!(
                    "socket engine: UDP GRO not accepted by the kernel; receiving one datagram per slot"
                );
                gro_logged = true;
            }
            prepared.push(p);
        }
        for (slot, p) in prepared.into_iter().enumerate() {
            engine.spawn(p, slot)?;
        }
        Ok(engine)
    }

    /// Opens the sockets of `flow`: its outputs', and its receive socket
    /// when `open_rx` (otherwise the previous worker of a flow changed in
    /// place hands its own over).
    fn prepare(&self, flow: &FlowPlan, open_rx: bool) -> Result<Prepared, Error> {
        let rx = if open_rx {
            Some(open::open_receive(flow)?)
        } else {
            None
        };
        let outputs = flow
            .outputs
            .iter()
            .map(|o| open::open_output(flow, o, self.caps))
            .collect::<Result<Vec<_>, _>>()?;
        if let Some(rx) = &rx {
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
        }
        Ok(Prepared {
            flow: flow.clone(),
            rx,
            outputs,
        })
    }

    /// Starts the worker of `p`, its counters in flow slot `slot`.
    fn spawn(&mut self, p: Prepared, slot: usize) -> Result<(), Error> {
        let rx = match p.rx {
            Some(rx) => rx,
            None => open::open_receive(&p.flow)?,
        };
        let (mailbox, commands) = channel();
        let publisher = self
            .stats
            .publisher(&format!("flow {:?}", p.flow.name), &[slot]);
        let w = worker::Worker::new(
            &p.flow,
            rx,
            p.outputs,
            self.batch,
            (publisher, commands),
            self.threads.stop_flag(),
        );
        let flow = p.flow.name;
        self.threads
            .spawn(format!("fanout-{flow}"), move || w.run())
            .map_err(|source| Error::Spawn {
                flow: flow.clone(),
                source,
            })?;
        self.mailboxes.push((flow, mailbox));
        Ok(())
    }

    fn mailbox(&self, flow: &str) -> Option<&Sender<Command>> {
        self.mailboxes
            .iter()
            .find(|(name, _)| name == flow)
            .map(|(_, m)| m)
    }

    /// Sends `command` (made with its acknowledgement) to the worker of
    /// `flow` and waits for it to be carried out.
    fn tell(&self, flow: &str, command: impl FnOnce(SyncSender<()>) -> Command) {
        let (done, acked) = sync_channel(1);
        let sent = self
            .mailbox(flow)
            .is_some_and(|m| m.send(command(done)).is_ok());
        if sent && acked.recv_timeout(crate::engine::APPLY_WAIT).is_err() {
            warn!(
                "socket engine: flow {flow:?}: the worker did not take the change within {} s; \
                 it takes it with its next batch",
                crate::engine::APPLY_WAIT.as_secs()
            );
        }
    }

    fn unsupported(what: String) -> ApplyError {
        ApplyError::Unsupported {
            engine: "socket".into(),
            what,
        }
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

    /// Every socket the change needs is opened first (a failure changes
    /// nothing); then removed flows end, each flow's outputs change in one
    /// step between two of its batches, and added flows start.
    fn apply(&mut self, plan: &Plan) -> Result<(), ApplyError> {
        let change = self.plan.change_to(plan).map_err(Self::unsupported)?;
        if change.is_empty() {
            self.plan = plan.clone();
            return Ok(());
        }
        let failed = |e: Error| ApplyError::Failed(e.to_string());
        let mut opened = Vec::with_capacity(change.outputs.len());
        for c in &change.outputs {
            let flow = plan
                .flows
                .iter()
                .find(|f| f.name == c.flow)
                .filter(|_| self.mailbox(&c.flow).is_some())
                .ok_or_else(|| Self::unsupported(format!("flow {:?} is not running", c.flow)))?;
            let sockets = c
                .added
                .iter()
                .map(|o| open::open_output(flow, o, self.caps))
                .collect::<Result<Vec<_>, _>>()
                .map_err(failed)?;
            opened.push(sockets);
        }
        // A flow changed in place that receives the same datagrams keeps
        // its receive socket: no datagram is lost or taken twice between
        // its two workers, and its membership never lapses.
        let keeps_rx = |f: &FlowPlan| {
            change.removed_flows.contains(&f.name)
                && self
                    .plan
                    .flows
                    .iter()
                    .any(|old| old.name == f.name && same_receive(old, f))
        };
        let mut flows = change
            .added_flows
            .iter()
            .map(|f| self.prepare(f, !keeps_rx(f)))
            .collect::<Result<Vec<_>, _>>()
            .map_err(failed)?;

        for name in &change.removed_flows {
            let (done, stopped) = sync_channel(1);
            let sent = self
                .mailbox(name)
                .is_some_and(|m| m.send(Command::Stop { done }).is_ok());
            let rx = if sent {
                stopped.recv_timeout(crate::engine::APPLY_WAIT).ok()
            } else {
                None
            };
            if !self.threads.retire(&format!("fanout-{name}")) {
                warn!("socket engine: flow {name:?}: its worker panicked");
            }
            self.mailboxes.retain(|(n, _)| n != name);
            if let Some(slot) = self.stats.flow_slot(name) {
                self.stats.remove_flow(slot);
            }
            match flows
                .iter_mut()
                .find(|p| p.flow.name == *name && p.rx.is_none())
            {
                Some(next) => {
                    info!(
                        "socket engine: flow {name:?} changed: its receive socket (and what is \
                         queued in it) goes on in the new worker"
                    );
                    next.rx = rx;
                }
                None => info!("socket engine: flow {name:?} removed: its group left"),
            }
        }
        for (c, sockets) in change.outputs.iter().zip(opened) {
            let Some(flow) = self.stats.flow_slot(&c.flow) else {
                continue;
            };
            let remove: Vec<usize> = c
                .removed
                .iter()
                .filter_map(|o| self.stats.output_slot(flow, o))
                .collect();
            let add: Vec<(usize, _)> = c
                .added
                .iter()
                .zip(sockets)
                .map(|(o, sock)| (self.stats.add_output(flow, o), sock))
                .collect();
            let removed = remove.clone();
            self.tell(&c.flow, move |done| Command::Outputs { remove, add, done });
            for slot in removed {
                self.stats.remove_output(flow, slot);
            }
        }
        // Added flows get the next slots; a replaced flow's old counters
        // stay in its old one.
        let mut running = plan.clone();
        for p in flows {
            let slot = self.stats.add_flow(&p.flow);
            let name = p.flow.name.clone();
            if let Err(e) = self.spawn(p, slot) {
                // The rest of the change stands: this flow is not running.
                log::error!("socket engine: {e}: the flow does not run");
                self.stats.remove_flow(slot);
                running.flows.retain(|f| f.name != name);
            }
        }
        self.plan = running;
        Ok(())
    }

    fn stop(&mut self) -> Result<(), String> {
        self.threads.stop()
    }
}

/// Whether `a` and `b` receive the same datagrams on the same socket: same
/// ingress, group, port, VLAN tags and source.
fn same_receive(a: &FlowPlan, b: &FlowPlan) -> bool {
    (
        a.ingress.index,
        a.group,
        a.port,
        a.vlan,
        a.outer_vlan,
        a.source,
    ) == (
        b.ingress.index,
        b.group,
        b.port,
        b.vlan,
        b.outer_vlan,
        b.source,
    )
}
