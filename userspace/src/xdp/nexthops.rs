//! Next hops of the unicast outputs: the egress interface a route gives an
//! output configured without one, and the MAC address of each
//! (destination, egress) pair, followed while the engine runs.
//!
//! Contract: [`routed_egress`] fixes every output's egress interface at
//! start-up (said in the log). [`NextHops`] knows which output of which
//! worker needs which next hop; [`NextHops::wait`] resolves them for a
//! bounded time before the workers start (so the first datagrams find
//! them), then [`NextHops::spawn`] follows them on a thread of its own:
//! every [`NEIGH_REFRESH`] (every [`STOP_POLL`] while one is unresolved),
//! each changed MAC becomes a new template sent to the workers that use it
//! ([`Command::Template`], applied between two polls). A known MAC is kept
//! while the kernel re-resolves it. Replicas without a template are counted
//! as `next_hop_unresolved` by the worker.

use std::io;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::time::{Duration, Instant};

use log::{info, warn};

use super::ladder::Refused;
use super::spec as setup;
use super::thread::Command;
use crate::config::OutputKind;
use crate::engine::{STOP_POLL, Threads};
use crate::plan::{FlowPlan, Plan};
use crate::wire::ReplicaTemplate;

/// Longest wait at start-up for unicast next hops to resolve.
pub const NEIGH_STARTUP_WAIT: Duration = Duration::from_secs(3);
/// How often resolved next hops are checked again.
pub const NEIGH_REFRESH: Duration = Duration::from_secs(1);

/// `plan` with an egress interface for every output: a unicast output
/// configured without one leaves by the interface the kernel's routing
/// table gives for its destination at start-up (said in the log); the
/// XDP engine transmits on a fixed interface per output.
pub(super) fn routed_egress(plan: &Plan) -> Result<Plan, Refused> {
    Ok(Plan {
        engine: plan.engine.clone(),
        flows: plan
            .flows
            .iter()
            .map(routed_flow)
            .collect::<Result<_, _>>()?,
    })
}

/// [`routed_egress`] for one flow: the error names its output.
pub(super) fn routed_flow(flow: &FlowPlan) -> Result<FlowPlan, Refused> {
    let mut routed = flow.clone();
    for output in &mut routed.outputs {
        if output.interface.is_some() {
            continue;
        }
        let dst = output.dest.ip();
        let route_err = |source| Refused::Route {
            flow: flow.name.clone(),
            output: output.name.clone(),
            dst,
            source,
        };
        let dev = crate::neigh::route_dev(dst).map_err(route_err)?;
        let iface = crate::plan::lookup_interface(&dev)
            .map_err(|source| Refused::Io {
                what: format!("looking up interface {dev} (the route to {dst})"),
                source,
            })?
            .ok_or_else(|| Refused::Io {
                what: format!("looking up interface {dev} (the route to {dst})"),
                source: io::Error::new(io::ErrorKind::NotFound, "no such interface"),
            })?;
        info!(
            "flow {:?} output {:?}: no interface configured; the route to {dst} leaves by {dev}",
            flow.name, output.name
        );
        output.interface = Some(iface);
    }
    Ok(routed)
}

/// One output of one worker that needs a next hop.
#[derive(Debug, Clone)]
struct NeighUser {
    worker: usize,
    /// Flow index in the worker / in the plan.
    flow: usize,
    plan_flow: usize,
    output: usize,
}

/// A next hop to follow: (destination, egress interface).
#[derive(Debug)]
struct NeighTarget {
    dst: IpAddr,
    ifname: String,
    mac: Option<[u8; 6]>,
    users: Vec<NeighUser>,
    logged_unresolved: bool,
}

/// Every next hop the workers need, and who needs it.
#[derive(Debug, Default)]
pub(super) struct NextHops {
    targets: Vec<NeighTarget>,
}

impl NextHops {
    /// Registers the unicast outputs of worker `worker`, which serves the
    /// plan's flows `flows` (plan indices, in the worker's order).
    pub(super) fn add_worker(&mut self, plan: &Plan, worker: usize, flows: &[usize]) {
        for (local, &pf) in flows.iter().enumerate() {
            for (o, out) in plan.flows[pf].outputs.iter().enumerate() {
                if out.kind != OutputKind::Unicast {
                    continue;
                }
                let ifname = out
                    .interface
                    .as_ref()
                    .map(|i| i.name.clone())
                    .unwrap_or_default();
                let user = NeighUser {
                    worker,
                    flow: local,
                    plan_flow: pf,
                    output: o,
                };
                let dst = out.dest.ip();
                match self
                    .targets
                    .iter_mut()
                    .find(|t| t.dst == dst && t.ifname == ifname)
                {
                    Some(t) => t.users.push(user),
                    None => self.targets.push(NeighTarget {
                        dst,
                        ifname,
                        mac: None,
                        users: vec![user],
                        logged_unresolved: false,
                    }),
                }
            }
        }
    }

    /// Resolves for up to [`NEIGH_STARTUP_WAIT`], sending the templates
    /// found; says which next hops are still unresolved after it.
    pub(super) fn wait(&mut self, plan: &Plan, senders: &[Sender<Command>]) {
        let deadline = Instant::now() + NEIGH_STARTUP_WAIT;
        loop {
            self.refresh(plan, senders);
            if self.targets.iter().all(|t| t.mac.is_some()) || Instant::now() >= deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        for t in &self.targets {
            if t.mac.is_none() {
                warn!(
                    "next hop of {} via {} unresolved after {:?}: its replicas are counted as next_hop_unresolved until it resolves",
                    t.dst, t.ifname, NEIGH_STARTUP_WAIT
                );
            }
        }
    }

    /// Follows the next hops on the thread `fanout-neigh` of `threads`
    /// until their stop flag; nothing when no output needs a next hop.
    pub(super) fn spawn(
        self,
        threads: &mut Threads,
        plan: Plan,
        senders: Vec<Sender<Command>>,
    ) -> Result<(), Refused> {
        if self.targets.is_empty() {
            return Ok(());
        }
        let stop = threads.stop_flag();
        // `ip neigh replace ... use` needs CAP_NET_ADMIN.
        threads
            .spawn_keeping(
                "fanout-neigh".into(),
                crate::privileges::XDP_CONTROL,
                move || self.follow(&plan, &senders, &stop),
            )
            .map_err(|source| Refused::Io {
                what: "starting the next-hop thread".into(),
                source,
            })
    }

    fn follow(mut self, plan: &Plan, senders: &[Sender<Command>], stop: &AtomicBool) {
        let mut next = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            if Instant::now() >= next {
                self.refresh(plan, senders);
                let pending = self.targets.iter().any(|t| t.mac.is_none());
                next = Instant::now() + if pending { STOP_POLL } else { NEIGH_REFRESH };
            }
            std::thread::sleep(
                STOP_POLL
                    .min(next.saturating_duration_since(Instant::now()))
                    .max(Duration::from_millis(10)),
            );
        }
    }

    /// One pass over the next hops: resolve, and send changed templates.
    fn refresh(&mut self, plan: &Plan, senders: &[Sender<Command>]) {
        for t in self.targets.iter_mut() {
            let mac = match crate::neigh::resolve(t.dst, &t.ifname) {
                Ok(r) => r.mac,
                Err(e) => {
                    if !t.logged_unresolved {
                        warn!("next hop of {} via {}: {e}", t.dst, t.ifname);
                        t.logged_unresolved = true;
                    }
                    None
                }
            };
            // A known MAC is kept while the kernel re-resolves it (None after
            // a trigger); only a different MAC replaces it.
            let Some(mac) = mac else { continue };
            if t.mac == Some(mac) {
                continue;
            }
            info!(
                "next hop of {} via {}: {}",
                t.dst,
                t.ifname,
                mac.iter()
                    .map(|b| format!("{b:02x}"))
                    .collect::<Vec<_>>()
                    .join(":")
            );
            t.mac = Some(mac);
            t.logged_unresolved = false;
            for u in &t.users {
                let flow = &plan.flows[u.plan_flow];
                let template = setup::replica_spec(flow, &flow.outputs[u.output], Some(mac))
                    .ok()
                    .flatten()
                    .and_then(|spec| ReplicaTemplate::new(spec).ok());
                let _ = senders[u.worker].send(Command::Template {
                    flow: u.flow,
                    output: u.output,
                    template,
                });
            }
        }
    }
}
