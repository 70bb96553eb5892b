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
//! as `next_hop_unresolved` by the worker. Outputs added and removed while
//! the engine runs reach the thread as [`HopChange`]s; the engine resolves
//! an added one's next hop first ([`resolve_now`]).

use std::io;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender};
use std::time::{Duration, Instant};

use log::{info, warn};

use super::ladder::Refused;
use super::spec as setup;
use super::thread::Command;
use crate::config::OutputKind;
use crate::engine::{STOP_POLL, Threads};
use crate::plan::{FlowPlan, OutputPlan, Plan};
use crate::wire::{ReplicaSpec, ReplicaTemplate};

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
pub(super) struct NeighUser {
    pub(super) worker: usize,
    /// The flow's index in the worker.
    pub(super) flow: usize,
    /// The output's counter slot in the flow.
    pub(super) slot: usize,
    /// Its replica headers but the next hop's MAC.
    pub(super) spec: ReplicaSpec,
}

/// A live change for the next-hop thread.
#[derive(Debug)]
pub(super) enum HopChange {
    /// An output added while running, with the MAC of its next hop when
    /// the engine resolved it already (its template has it).
    Add {
        dst: IpAddr,
        ifname: String,
        mac: Option<[u8; 6]>,
        user: NeighUser,
    },
    /// An output removed while running.
    Remove {
        worker: usize,
        flow: usize,
        slot: usize,
    },
    /// A flow removed while running: every output of it in `worker`.
    RemoveFlow { worker: usize, flow: usize },
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

/// The replica headers of a unicast `output` of `flow` but its next hop's
/// MAC; `None` for a multicast output (or one the engine refused at start).
pub(super) fn unicast_spec(flow: &FlowPlan, output: &OutputPlan) -> Option<ReplicaSpec> {
    if output.kind != OutputKind::Unicast {
        return None;
    }
    setup::replica_spec(flow, output, Some([0; 6]))
        .ok()
        .flatten()
}

/// The template of `user` with the next hop's MAC `mac`.
fn template(user: &NeighUser, mac: [u8; 6]) -> Option<ReplicaTemplate> {
    ReplicaTemplate::new(ReplicaSpec {
        dst_mac: mac,
        ..user.spec
    })
    .ok()
}

impl NextHops {
    /// Registers the unicast outputs of worker `worker`, which serves the
    /// plan's flows `flows` (plan indices, in the worker's order).
    pub(super) fn add_worker(&mut self, plan: &Plan, worker: usize, flows: &[usize]) {
        for (local, &pf) in flows.iter().enumerate() {
            let flow = &plan.flows[pf];
            for (o, out) in flow.outputs.iter().enumerate() {
                let Some(spec) = unicast_spec(flow, out) else {
                    continue;
                };
                let ifname = out
                    .interface
                    .as_ref()
                    .map(|i| i.name.clone())
                    .unwrap_or_default();
                let user = NeighUser {
                    worker,
                    flow: local,
                    slot: o,
                    spec,
                };
                self.add(out.dest.ip(), ifname, None, user);
            }
        }
    }

    /// Adds `user` to the target (dst, ifname); returns the template to
    /// send it when the target's MAC is known and differs from `mac`.
    fn add(
        &mut self,
        dst: IpAddr,
        ifname: String,
        mac: Option<[u8; 6]>,
        user: NeighUser,
    ) -> Option<(NeighUser, [u8; 6])> {
        match self
            .targets
            .iter_mut()
            .find(|t| t.dst == dst && t.ifname == ifname)
        {
            Some(t) => {
                t.users.push(user.clone());
                match t.mac {
                    Some(known) if Some(known) != mac => Some((user, known)),
                    _ => None,
                }
            }
            None => {
                self.targets.push(NeighTarget {
                    dst,
                    ifname,
                    mac,
                    users: vec![user],
                    logged_unresolved: false,
                });
                None
            }
        }
    }

    fn apply(&mut self, change: HopChange, senders: &[Sender<Command>]) {
        match change {
            HopChange::Add {
                dst,
                ifname,
                mac,
                user,
            } => {
                if let Some((user, known)) = self.add(dst, ifname, mac, user) {
                    let _ = senders[user.worker].send(Command::Template {
                        flow: user.flow,
                        output: user.slot,
                        template: template(&user, known),
                    });
                }
            }
            HopChange::Remove { worker, flow, slot } => {
                for t in &mut self.targets {
                    t.users
                        .retain(|u| !(u.worker == worker && u.flow == flow && u.slot == slot));
                }
                self.targets.retain(|t| !t.users.is_empty());
            }
            HopChange::RemoveFlow { worker, flow } => {
                for t in &mut self.targets {
                    t.users.retain(|u| !(u.worker == worker && u.flow == flow));
                }
                self.targets.retain(|t| !t.users.is_empty());
            }
        }
    }

    /// Resolves for up to [`NEIGH_STARTUP_WAIT`], sending the templates
    /// found; says which next hops are still unresolved after it.
    pub(super) fn wait(&mut self, senders: &[Sender<Command>]) {
        let deadline = Instant::now() + NEIGH_STARTUP_WAIT;
        loop {
            self.refresh(senders);
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
    /// until their stop flag, taking the live changes from `changes`.
    pub(super) fn spawn(
        self,
        threads: &mut Threads,
        senders: Vec<Sender<Command>>,
        changes: Receiver<HopChange>,
    ) -> Result<(), Refused> {
        let stop = threads.stop_flag();
        // `ip neigh replace ... use` needs CAP_NET_ADMIN.
        threads
            .spawn_keeping(
                "fanout-neigh".into(),
                crate::privileges::XDP_NEIGH,
                move || self.follow(&senders, &changes, &stop),
            )
            .map_err(|source| Refused::Io {
                what: "starting the next-hop thread".into(),
                source,
            })
    }

    fn follow(
        mut self,
        senders: &[Sender<Command>],
        changes: &Receiver<HopChange>,
        stop: &AtomicBool,
    ) {
        let mut next = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            while let Ok(c) = changes.try_recv() {
                self.apply(c, senders);
            }
            if Instant::now() >= next {
                self.refresh(senders);
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
    fn refresh(&mut self, senders: &[Sender<Command>]) {
        for t in self.targets.iter_mut() {
            let Some(mac) = resolve_logged(t.dst, &t.ifname, &mut t.logged_unresolved) else {
                continue;
            };
            // A known MAC is kept while the kernel re-resolves it (None after
            // a trigger); only a different MAC replaces it.
            if t.mac == Some(mac) {
                continue;
            }
            info!("next hop of {} via {}: {}", t.dst, t.ifname, mac_text(mac));
            t.mac = Some(mac);
            t.logged_unresolved = false;
            for u in &t.users {
                let _ = senders[u.worker].send(Command::Template {
                    flow: u.flow,
                    output: u.slot,
                    template: template(u, mac),
                });
            }
        }
    }
}

/// The MAC of the next hop of `dst` via `ifname`, when known (a failure is
/// said once, `logged` remembering it).
fn resolve_logged(dst: IpAddr, ifname: &str, logged: &mut bool) -> Option<[u8; 6]> {
    match crate::neigh::resolve(dst, ifname) {
        Ok(r) => r.mac,
        Err(e) => {
            if !*logged {
                warn!("next hop of {dst} via {ifname}: {e}");
                *logged = true;
            }
            None
        }
    }
}

fn mac_text(mac: [u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Resolves the next hops `(dst, ifname)` of outputs added while running,
/// for up to [`NEIGH_STARTUP_WAIT`] in all, so that they start with their
/// templates: the MAC of each, `None` where still unresolved (said in the
/// log; the next-hop thread goes on).
pub(super) fn resolve_now(targets: &[(IpAddr, String)]) -> Vec<Option<[u8; 6]>> {
    let deadline = Instant::now() + NEIGH_STARTUP_WAIT;
    let mut macs = vec![None; targets.len()];
    let mut logged = vec![false; targets.len()];
    loop {
        for ((dst, ifname), (mac, logged)) in targets.iter().zip(macs.iter_mut().zip(&mut logged)) {
            if mac.is_none() {
                *mac = resolve_logged(*dst, ifname, logged);
            }
        }
        if macs.iter().all(Option::is_some) || Instant::now() >= deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    for ((dst, ifname), mac) in targets.iter().zip(&macs) {
        match mac {
            Some(m) => info!("next hop of {dst} via {ifname}: {}", mac_text(*m)),
            None => warn!(
                "next hop of {dst} via {ifname} unresolved after {NEIGH_STARTUP_WAIT:?}: its \
                 replicas are counted as next_hop_unresolved until it resolves"
            ),
        }
    }
    macs
}
