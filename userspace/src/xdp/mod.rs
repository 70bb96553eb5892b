//! The XDP datapath, in one folder: what `fanout run` starts when XDP is
//! available.
//!
//! Contract: [`XdpEngine::start`] climbs the mode ladder (architecture.md decision 6)
//! for every ingress interface of the plan and either returns a running
//! [`Engine`] whose rung ([`Engine::name`], e.g. `xdp native copy`) and
//! skipped rungs ([`XdpEngine::notes`]) the caller says aloud once, or a
//! [`Refused`] naming the rung that failed and why (the caller falls back
//! to the socket engine or refuses to start). Per ingress interface: the
//! program is loaded and attached ([`ladder`]: native, generic when
//! refused), every flow on it is written to `FLOWS` ([`program`]); per rx
//! queue: one UMEM, the AF_XDP socket bound with zero-copy asked and copy
//! taken when refused, one TX socket per egress interface sharing the UMEM
//! ([`queue`], over [`xsk`]), the socket put in `XSKS`, and a
//! [`worker::Worker`] on its own thread ([`thread`]). Groups are joined
//! through kernel sockets ([`crate::membership::join`]) held for the
//! engine's life; they receive nothing while the program redirects. A VLAN
//! flow needs no VLAN sub-interface (the program matches the tag), but
//! without one its group is not joined (said in the log). Unicast outputs
//! get their next hop's MAC through [`nexthops`]. The workers count in the
//! one vocabulary of [`crate::stats`]; [`Engine::snapshot`] adds the
//! program's counters, the workers' frame counters and the sockets' kernel
//! statistics.
//!
//! While it runs ([`Engine::apply`]), outputs and flows are added and
//! removed between two polls of every worker concerned: a flow's keys
//! leave `FLOWS` before its workers forget it and enter it after they know
//! it (ids are not reused, so its program counters stay its own), a flow
//! changed in place keeps its keys throughout. An output on an egress
//! interface a worker has no TX socket for gets one first: the worker binds
//! it on its UMEM between two polls (header slots are sized at start for
//! [`queue::SPARE_PORTS`] such ports; on its own ingress, the receiving
//! socket's TX ring, made at start for this, serves). It receives only on
//! the ingress interfaces it had at start: attaching needs capabilities
//! the running engine has dropped ([`crate::privileges`]), so a change that
//! needs another ingress is refused whole.
//!
//! Stopping the engine stops every thread; dropping it closes the sockets
//! (they leave `XSKS`: fail-open) and detaches the programs.
//!
//! Which flows it serves is judged first, flow by flow ([`judge`]): the
//! runtime starts it on those it can serve and, under `mode = "auto"`,
//! the socket engine on the rest ([`crate::runtime`]).
//!
//! The rooms: [`fit`] (which flows it can serve), [`program`] (the loader
//! and its maps), [`ladder`] (object, attach policy, refusals, rung names),
//! [`spec`] (plan to worker specs), [`queue`] (one rx queue's UMEM, sockets
//! and worker), [`thread`] (the worker's thread), [`nexthops`], [`worker`]
//! (the fan-out loop over the ring seam, testable in memory) and [`xsk`]
//! (AF_XDP rings and UMEM: the only `unsafe` ring code).

mod fit;
mod ladder;
mod nexthops;
pub mod pinned;
pub mod program;
mod queue;
mod spec;
mod thread;
pub mod worker;
pub mod xsk;

use std::collections::BTreeMap;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};

use fanout_common::{Counter, FlowCounter, MAX_FLOWS};
use log::{info, warn};

pub use self::fit::{VlanView, judge, touched_by, vlan_view, vlan_warnings};
pub use self::ladder::{ObjectSource, Refused};
use self::ladder::{attach_name, rung_name};
use self::nexthops::{HopChange, NeighUser, NextHops, resolve_now, routed_egress, unicast_spec};
use self::program::{AttachMode, FlowsUpdate, XdpProgram};
use self::queue::{XdpWorker, build_worker, egress_list, queue_count};
use self::thread::{Command, WorkerCtx, run_worker};
use self::xsk::BindMode;
use crate::config::{VlanOffload, XdpAttach};
use crate::engine::{APPLY_WAIT, ApplyError, Engine, Threads};
use crate::plan::{FlowPlan, Interface, Plan};
use crate::stats::{
    FlowXdpSnapshot, Heartbeat, Snapshot, Stats, XdpInterfaceSnapshot, XdpQueueSnapshot,
    XdpSnapshot,
};

/// One ingress interface: its program and the snapshots of its queues.
#[derive(Debug)]
struct Ingress {
    ifname: String,
    program: XdpProgram,
    attach: AttachMode,
    bind: BindMode,
    /// Its interface index.
    index: u32,
    /// Each flow on the interface by its id in `FLOWS` (ids are not
    /// reused: a removed flow keeps its id and its program counters).
    flows: Vec<IngressFlow>,
    /// The rx queues with a socket in `XSKS`.
    queue_ids: Vec<u32>,
    queues: Vec<Arc<Mutex<XdpQueueSnapshot>>>,
    /// The VLAN receive offload turned off for the engine's life.
    _vlan_offload: Option<VlanOffloadOff>,
}

/// One flow of an ingress interface.
#[derive(Debug)]
struct IngressFlow {
    /// Its stats slot.
    slot: usize,
    /// `None` once removed.
    plan: Option<FlowPlan>,
}

/// The flows in `FLOWS` now, with their ids.
fn live(flows: &[IngressFlow]) -> Vec<(u32, &FlowPlan)> {
    (0u32..)
        .zip(flows)
        .filter_map(|(id, f)| f.plan.as_ref().map(|p| (id, p)))
        .collect()
}

/// A flow added while running, checked: its ingress (position in the
/// engine's) and its id in that ingress's `FLOWS`.
#[derive(Debug)]
struct NewFlow<'a> {
    ingress: usize,
    id: u32,
    flow: &'a FlowPlan,
}

/// The flows a change removes and adds, checked, with the group
/// memberships of the added ones already joined.
#[derive(Debug, Default)]
struct FlowsChange<'a> {
    /// (ingress, id) of each flow removed.
    removed: Vec<(usize, u32)>,
    added: Vec<NewFlow<'a>>,
    joined: Vec<(String, socket2::Socket)>,
}

impl FlowsChange<'_> {
    fn touches(&self, ingress: usize) -> bool {
        self.removed.iter().any(|r| r.0 == ingress)
            || self.added.iter().any(|a| a.ingress == ingress)
    }

    /// The `FLOWS` of ingress `ingress`, whose flows are `flows`, after
    /// the change.
    fn after<'b>(&'b self, ingress: usize, flows: &'b [IngressFlow]) -> Vec<(u32, &'b FlowPlan)> {
        let mut after: Vec<(u32, &FlowPlan)> = live(flows)
            .into_iter()
            .filter(|(id, _)| !self.removed.contains(&(ingress, *id)))
            .collect();
        after.extend(
            self.added
                .iter()
                .filter(|a| a.ingress == ingress)
                .map(|a| (a.id, a.flow)),
        );
        after
    }
}

/// The VLAN receive offload of an interface, turned off while the engine
/// runs (`[engine] vlan_offload = "off"`) and back on when dropped.
#[derive(Debug)]
struct VlanOffloadOff {
    ifname: String,
}

impl VlanOffloadOff {
    /// Turns the offload of `ifname` off, if it is on; `None` when it was
    /// off already (nothing to restore).
    fn turn_off(ifname: &str) -> Result<Option<VlanOffloadOff>, Refused> {
        let io = |what: &str| {
            let what =
                format!("{what} the VLAN receive offload of {ifname} (vlan_offload = \"off\")");
            move |source| Refused::Io { what, source }
        };
        if !crate::ethtool::vlan_rx_offload(ifname)
            .map_err(io("reading"))?
            .any()
        {
            return Ok(None);
        }
        let after =
            crate::ethtool::set_vlan_rx_offload(ifname, false).map_err(io("turning off"))?;
        // From here on, dropping the guard (on the error below too) turns
        // the offload back on.
        let guard = VlanOffloadOff {
            ifname: ifname.to_owned(),
        };
        if after.any() {
            let kept_on = std::io::Error::other(format!("the driver keeps it on: {after:?}"));
            return Err(io("turning off")(kept_on));
        }
        info!(
            "{ifname}: VLAN receive offload (rx-vlan-hw-parse, rx-vlan-stag-hw-parse) turned off, \
             so that XDP sees every frame's 802.1Q tags; it is turned back on at exit"
        );
        Ok(Some(guard))
    }
}

impl Drop for VlanOffloadOff {
    fn drop(&mut self) {
        match crate::ethtool::set_vlan_rx_offload(&self.ifname, true) {
            Ok(_) => info!("{}: VLAN receive offload turned back on", self.ifname),
            Err(e) => warn!(
                "{}: turning the VLAN receive offload back on: {e} (run `ethtool -K {} rxvlan on`)",
                self.ifname, self.ifname
            ),
        }
    }
}

/// One rx queue, built and waiting for its thread.
#[derive(Debug)]
struct Queue {
    ifname: String,
    /// The ingress interface's index.
    ingress: u32,
    queue: u32,
    /// Plan index of each of the worker's flows.
    flows: Vec<usize>,
    worker: XdpWorker,
    /// The ingress socket's TX ring, when no port uses it.
    own_tx: Option<xsk::TxSocket>,
    snap: Arc<Mutex<XdpQueueSnapshot>>,
}

/// An output added while running, as every worker of its flow gets it.
#[derive(Debug)]
struct Added<'a> {
    /// Its counter slot in the flow.
    slot: usize,
    /// `None` while its next hop is unresolved.
    template: Option<crate::wire::ReplicaTemplate>,
    mac: Option<[u8; 6]>,
    /// Its headers but the next hop's MAC, for the next-hop thread (unicast).
    hop: Option<crate::wire::ReplicaSpec>,
    output: &'a crate::plan::OutputPlan,
}

/// The egress interface's name of a routed output (empty: none, which
/// `apply` refuses).
fn egress_name(o: &crate::plan::OutputPlan) -> String {
    o.interface
        .as_ref()
        .map(|i| i.name.clone())
        .unwrap_or_default()
}

/// What the engine keeps of each worker, for live changes.
#[derive(Debug)]
struct WorkerHandle {
    /// Its ingress interface (index) and name, and its rx queue.
    ingress: u32,
    ifname: String,
    queue: u32,
    /// The TX ports its header-slot pool is sized for.
    slot_ports: usize,
    /// The stats slot (plan index at start) of each of its flows, in its
    /// order.
    flows: Vec<usize>,
    /// The egress interface (index) of each of its TX ports.
    ports: Vec<u32>,
    commands: Sender<Command>,
}

/// A running XDP datapath.
#[derive(Debug)]
pub struct XdpEngine {
    plan: Plan,
    rung: String,
    notes: Vec<String>,
    stats: Arc<Stats>,
    ingress: Vec<Ingress>,
    /// The queues' workers and the next-hop thread.
    threads: Threads,
    workers: Vec<WorkerHandle>,
    /// The next-hop thread's live changes.
    hops: Sender<HopChange>,
    /// The kernel sockets holding each flow's group membership, by flow
    /// name.
    membership: Vec<(String, socket2::Socket)>,
}

impl XdpEngine {
    /// Climbs the ladder and starts every worker; see the module
    /// documentation. `plan.flows` must not be empty.
    pub fn start(plan: &Plan) -> Result<XdpEngine, Refused> {
        let object = ObjectSource::find(plan.engine.xdp_object.as_deref())?;
        let policy = plan.engine.xdp_attach;
        let plan = routed_egress(plan)?;
        info!("XDP object: {}", object.describe());
        // Templates that need no neighbour first: refuse early on outputs
        // the XDP engine cannot run (no interface, no MAC, no address).
        for f in &plan.flows {
            for o in &f.outputs {
                spec::replica_spec(f, o, Some([0; 6]))?;
            }
        }

        let mut notes = Vec::new();
        let mut ingress = Vec::new();
        let mut queues = Vec::new();
        for iface in ingress_interfaces(&plan) {
            let (one, built) = attach(&plan, iface, &object, policy, &mut notes)?;
            ingress.push(one);
            queues.extend(built);
        }
        let membership = plan
            .flows
            .iter()
            .filter_map(|flow| {
                join_membership(flow)
                    .map(|joined| joined.map(|sock| (flow.name.clone(), sock)))
                    .transpose()
            })
            .collect::<Result<Vec<_>, _>>()?;

        let each: Vec<_> = ingress
            .iter()
            .map(|i| (i.ifname.as_str(), i.attach, i.bind))
            .collect();
        let rung = rung_name(&each);
        let stats = Arc::new(Stats::for_plan(&plan, &rung));

        let mut hops = NextHops::default();
        let (senders, receivers): (Vec<Sender<Command>>, Vec<Receiver<Command>>) =
            queues.iter().map(|_| channel()).unzip();
        for (w, q) in queues.iter().enumerate() {
            hops.add_worker(&plan, w, &q.flows);
        }
        // A bounded wait, so that the first datagrams find their next hops.
        hops.wait(&senders);
        let workers = queues
            .iter()
            .zip(&senders)
            .map(|(q, commands)| {
                let ports: Vec<u32> = egress_list(&plan, &q.flows)
                    .iter()
                    .map(|i| i.index)
                    .collect();
                WorkerHandle {
                    ingress: q.ingress,
                    ifname: q.ifname.clone(),
                    queue: q.queue,
                    slot_ports: ports.len() + queue::SPARE_PORTS as usize,
                    flows: q.flows.clone(),
                    ports,
                    commands: commands.clone(),
                }
            })
            .collect();
        let (hop_changes, hop_rx) = channel();

        let mut engine = XdpEngine {
            plan,
            rung,
            notes,
            stats,
            ingress,
            threads: Threads::default(),
            workers,
            hops: hop_changes,
            membership,
        };
        // On an error below, dropping `engine` stops what already runs.
        for (q, commands) in queues.into_iter().zip(receivers) {
            engine.spawn_worker(q, commands)?;
        }
        hops.spawn(&mut engine.threads, senders, hop_rx)?;
        Ok(engine)
    }

    /// Every rung skipped on the way, with its reason.
    pub fn notes(&self) -> &[String] {
        &self.notes
    }

    /// Tells every worker of the flow in stats slot `slot` to remove the
    /// outputs in slots `removed` and add `added`, and the next-hop thread
    /// to follow them; waits up to [`APPLY_WAIT`] for the workers.
    fn change_outputs(&self, name: &str, slot: usize, removed: &[usize], added: &[Added<'_>]) {
        let mut acks = Vec::new();
        for (w, handle) in self.workers.iter().enumerate() {
            let Some(local) = handle.flows.iter().position(|&f| f == slot) else {
                continue;
            };
            let add = added
                .iter()
                .map(|a| {
                    let egress = a.output.interface.as_ref();
                    let tx = egress.and_then(|e| handle.ports.iter().position(|&p| p == e.index));
                    let spec = worker::OutputSpec {
                        // Checked by apply: every worker has the port.
                        tx: tx.unwrap_or(0),
                        template: a.template.clone(),
                        mtu: egress.map_or(1500, |e| e.mtu),
                    };
                    (a.slot, spec)
                })
                .collect();
            for a in added {
                if let Some(spec) = a.hop {
                    let user = NeighUser {
                        worker: w,
                        flow: local,
                        slot: a.slot,
                        spec,
                    };
                    let _ = self.hops.send(HopChange::Add {
                        dst: a.output.dest.ip(),
                        ifname: egress_name(a.output),
                        mac: a.mac,
                        user,
                    });
                }
            }
            for &out_slot in removed {
                let _ = self.hops.send(HopChange::Remove {
                    worker: w,
                    flow: local,
                    slot: out_slot,
                });
            }
            let (done, acked) = std::sync::mpsc::sync_channel(1);
            let command = Command::Outputs {
                flow: local,
                remove: removed.to_vec(),
                add,
                done,
            };
            if handle.commands.send(command).is_ok() {
                acks.push(acked);
            }
        }
        self.wait_acks(acks, &format!("flow {name:?}'s outputs"));
    }

    /// Checks the flows `change` removes and adds (on the ingress
    /// interfaces the engine runs on, transmitting on the egress interfaces
    /// their workers have) and joins the added ones' groups; changes
    /// nothing else.
    fn check_flows<'a>(
        &self,
        routed: &'a Plan,
        change: &crate::plan::PlanChange,
        ports: &mut Vec<(usize, Interface)>,
    ) -> Result<FlowsChange<'a>, ApplyError> {
        let unsupported = |what: String| ApplyError::Unsupported {
            engine: self.rung.clone(),
            what,
        };
        let mut out = FlowsChange::default();
        for name in &change.removed_flows {
            let found = self.ingress.iter().enumerate().find_map(|(i, g)| {
                let at = live(&g.flows).into_iter().find(|(_, p)| &p.name == name)?;
                Some((i, at.0))
            });
            out.removed
                .push(found.ok_or_else(|| unsupported(format!("flow {name:?} is not running")))?);
        }
        let added: Vec<&FlowPlan> = change
            .added_flows
            .iter()
            .filter_map(|f| routed.flows.iter().find(|r| r.name == f.name))
            .collect();
        let judged = judge(&Plan {
            engine: routed.engine.clone(),
            flows: added.iter().map(|&f| f.clone()).collect(),
        });
        for (&flow, verdict) in added.iter().zip(judged) {
            verdict.map_err(|e| unsupported(e.to_string()))?;
            let Some(i) = self
                .ingress
                .iter()
                .position(|g| g.index == flow.ingress.index)
            else {
                let running: Vec<&str> = self.ingress.iter().map(|g| g.ifname.as_str()).collect();
                return Err(unsupported(format!(
                    "flow {:?} added on {}: the XDP engine attaches to its ingress interfaces \
                     ({}) only at start (loading the program needs CAP_BPF, dropped once it \
                     runs); restart fanout, or use mode = \"auto\", which runs such a flow on \
                     the socket engine",
                    flow.name,
                    flow.ingress.name,
                    running.join(", ")
                )));
            };
            let id =
                self.ingress[i].flows.len() + out.added.iter().filter(|a| a.ingress == i).count();
            if id >= MAX_FLOWS as usize {
                return Err(unsupported(format!(
                    "flow {:?} added on {}: {MAX_FLOWS} flows have run on it since start (their \
                     program ids are not reused until fanout restarts)",
                    flow.name, flow.ingress.name
                )));
            }
            for o in &flow.outputs {
                let what = format!("flow {:?} added: output {:?}", flow.name, o.name);
                self.ports_needed(|w| w.ingress == flow.ingress.index, o, &what, ports)
                    .map_err(unsupported)?;
            }
            out.added.push(NewFlow {
                ingress: i,
                id: id as u32,
                flow,
            });
        }
        for (i, g) in self.ingress.iter().enumerate() {
            if out.touches(i) {
                program::flow_entries(&out.after(i, &g.flows))
                    .map_err(|e| ApplyError::Failed(e.to_string()))?;
            }
        }
        for a in &out.added {
            if let Some(sock) =
                join_membership(a.flow).map_err(|e| ApplyError::Failed(e.to_string()))?
            {
                out.joined.push((a.flow.name.clone(), sock));
            }
        }
        Ok(out)
    }

    /// Adds to `need` the (worker, egress interface) of each TX port that
    /// the workers `serving` lack for output `o` (`what`, for the
    /// message); an error for an output without an egress interface.
    fn ports_needed(
        &self,
        serving: impl Fn(&WorkerHandle) -> bool,
        o: &crate::plan::OutputPlan,
        what: &str,
        need: &mut Vec<(usize, Interface)>,
    ) -> Result<(), String> {
        let Some(e) = o.interface.as_ref() else {
            return Err(format!("{what}: no egress interface"));
        };
        for (w, h) in self.workers.iter().enumerate().filter(|(_, h)| serving(h)) {
            if h.ports.contains(&e.index) || need.iter().any(|(n, i)| *n == w && i == e) {
                continue;
            }
            need.push((w, e.clone()));
        }
        Ok(())
    }

    /// Binds a TX socket on each (worker, egress interface) of `need`, one
    /// at a time, each acknowledged by its worker between two polls. The
    /// first failure refuses the change; the ports bound before it stay
    /// (unused until an output needs them).
    fn add_ports(&mut self, need: &[(usize, Interface)]) -> Result<(), ApplyError> {
        let sizes = queue::ring_sizes(&self.plan);
        for (w, egress) in need {
            let h = &mut self.workers[*w];
            let failed = |why: String| {
                ApplyError::Failed(format!(
                    "{} queue {}: binding an AF_XDP TX socket on {}: {why}",
                    h.ifname, h.queue, egress.name
                ))
            };
            // Opened here: the worker keeps no capability. On its own
            // ingress, the receiving socket's TX ring serves.
            let socket = if egress.index == h.ingress {
                None
            } else {
                Some(xsk::open_socket(egress.index, h.queue).map_err(|e| failed(e.to_string()))?)
            };
            let (done, acked) = std::sync::mpsc::sync_channel(1);
            let command = Command::AddPort {
                ingress: h.ifname.clone(),
                queue: h.queue,
                egress: egress.clone(),
                socket,
                sizes,
                port: h.ports.len(),
                done,
            };
            if h.commands.send(command).is_err() {
                return Err(failed("its worker has stopped".into()));
            }
            match acked.recv_timeout(APPLY_WAIT) {
                Ok(Ok(())) => {}
                Ok(Err(why)) => return Err(failed(why)),
                Err(_) => {
                    return Err(failed(format!(
                        "its worker did not answer within {} s",
                        APPLY_WAIT.as_secs()
                    )));
                }
            }
            h.ports.push(egress.index);
            info!(
                "{} queue {}: TX port {} added on {} for a live change",
                h.ifname,
                h.queue,
                h.ports.len() - 1,
                egress.name
            );
            if h.ports.len() > h.slot_ports {
                warn!(
                    "{} queue {}: {} TX ports share header slots sized for {} at start: under \
                     overload a replica may find none (counted no_slot); a restart sizes them \
                     for every port",
                    h.ifname,
                    h.queue,
                    h.ports.len(),
                    h.slot_ports
                );
            }
        }
        Ok(())
    }

    /// Carries out a checked [`FlowsChange`], taking the MACs of the added
    /// flows' unicast outputs from `macs` (in order): the removed flows
    /// leave `FLOWS` (their traffic goes to the kernel), every worker of
    /// their ingress takes the change between two polls, then the added
    /// ones enter `FLOWS`. A flow changed in place keeps its keys in
    /// `FLOWS` throughout: no window passes its traffic to the kernel.
    fn change_flows(
        &mut self,
        mut change: FlowsChange<'_>,
        macs: &mut impl Iterator<Item = Option<[u8; 6]>>,
    ) -> Result<(), ApplyError> {
        if change.removed.is_empty() && change.added.is_empty() {
            return Ok(());
        }
        let map_failed = |ifname: &str, e: program::Error| {
            ApplyError::Failed(format!("{ifname}: updating FLOWS: {e}"))
        };
        for (i, g) in self.ingress.iter_mut().enumerate() {
            if change.touches(i) {
                let (before, after) = (live(&g.flows), change.after(i, &g.flows));
                g.program
                    .update_flows(&before, &after, FlowsUpdate::Drop)
                    .map_err(|e| map_failed(&g.ifname, e))?;
            }
        }
        let slots: Vec<usize> = change
            .added
            .iter()
            .map(|a| self.stats.add_flow(a.flow))
            .collect();
        let hops: Vec<Vec<Option<[u8; 6]>>> = change
            .added
            .iter()
            .map(|a| {
                a.flow
                    .outputs
                    .iter()
                    .map(|o| match o.kind {
                        crate::config::OutputKind::Unicast => macs.next().flatten(),
                        crate::config::OutputKind::Multicast => None,
                    })
                    .collect()
            })
            .collect();
        let limiters: Vec<_> = change
            .added
            .iter()
            .map(|a| crate::rate::shared(a.flow.cap))
            .collect();
        let mut acks = Vec::new();
        for (w, handle) in self.workers.iter_mut().enumerate() {
            let Some(i) = self.ingress.iter().position(|g| g.index == handle.ingress) else {
                continue;
            };
            if !change.touches(i) {
                continue;
            }
            let remove: Vec<usize> = change
                .removed
                .iter()
                .filter(|r| r.0 == i)
                .map(|r| r.1 as usize)
                .collect();
            for &flow in &remove {
                let _ = self.hops.send(HopChange::RemoveFlow { worker: w, flow });
            }
            let mut add = Vec::new();
            for (k, a) in change.added.iter().enumerate() {
                if a.ingress != i {
                    continue;
                }
                let mut next_hop = hops[k].iter().copied();
                let spec = spec::flow_spec(
                    a.flow,
                    |e| handle.ports.iter().position(|&p| p == e.index).unwrap_or(0),
                    |_| next_hop.next().flatten(),
                );
                // Checked by judge: the templates need only a MAC.
                let mut spec = match spec {
                    Ok(spec) => spec,
                    Err(e) => return Err(ApplyError::Failed(e.to_string())),
                };
                spec.limiter = limiters[k].clone();
                add.push((a.id as usize, slots[k], spec));
                // Its index in the worker is its id.
                handle.flows.push(slots[k]);
                for (o, (output, &mac)) in a.flow.outputs.iter().zip(&hops[k]).enumerate() {
                    let Some(spec) = unicast_spec(a.flow, output) else {
                        continue;
                    };
                    let user = NeighUser {
                        worker: w,
                        flow: a.id as usize,
                        slot: o,
                        spec,
                    };
                    let _ = self.hops.send(HopChange::Add {
                        dst: output.dest.ip(),
                        ifname: egress_name(output),
                        mac,
                        user,
                    });
                }
            }
            let (done, acked) = std::sync::mpsc::sync_channel(1);
            let command = Command::Flows { remove, add, done };
            if handle.commands.send(command).is_ok() {
                acks.push(acked);
            }
        }
        self.wait_acks(acks, "the flows");
        for &(i, id) in &change.removed {
            let f = &mut self.ingress[i].flows[id as usize];
            self.stats.remove_flow(f.slot);
            if let Some(p) = &f.plan {
                self.membership.retain(|(name, _)| name != &p.name);
            }
        }
        self.membership.append(&mut change.joined);
        let mut failed = None;
        for (i, g) in self.ingress.iter_mut().enumerate() {
            if !change.touches(i) {
                continue;
            }
            let (before, after) = (live(&g.flows), change.after(i, &g.flows));
            if let Err(e) = g.program.update_flows(&before, &after, FlowsUpdate::Write) {
                failed.get_or_insert(map_failed(&g.ifname, e));
            }
        }
        let FlowsChange { removed, added, .. } = change;
        for &(i, id) in &removed {
            self.ingress[i].flows[id as usize].plan = None;
        }
        for (a, slot) in added.iter().zip(slots) {
            self.ingress[a.ingress].flows.push(IngressFlow {
                slot,
                plan: Some(a.flow.clone()),
            });
        }
        failed.map_or(Ok(()), Err)
    }

    /// Waits up to [`APPLY_WAIT`] in all for the workers' acknowledgements
    /// of a change of `what`.
    fn wait_acks(&self, acks: Vec<std::sync::mpsc::Receiver<()>>, what: &str) {
        let deadline = std::time::Instant::now() + APPLY_WAIT;
        for acked in acks {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if acked.recv_timeout(left).is_err() {
                warn!(
                    "{}: a worker did not take the change of {what} within {} s; it takes it \
                     between its next two polls",
                    self.rung,
                    APPLY_WAIT.as_secs()
                );
            }
        }
    }

    /// Starts the thread of one rx queue.
    fn spawn_worker(&mut self, q: Queue, commands: Receiver<Command>) -> Result<(), Refused> {
        let Queue {
            ifname,
            queue,
            flows,
            mut worker,
            own_tx,
            snap,
            ..
        } = q;
        let mut ports = thread::Ports {
            egress: egress_list(&self.plan, &flows)
                .into_iter()
                .map(|i| i.name.clone())
                .collect(),
            own_tx,
        };
        // Templates resolved during the start-up wait.
        thread::apply_commands(&mut worker, &commands, None, &mut ports);
        let name = format!("{ifname} queue {queue}");
        let ctx = WorkerCtx {
            publisher: self.stats.publisher(&name, &flows),
            name,
            ports,
            stop: self.threads.stop_flag(),
            commands,
            snap,
        };
        let name = format!("fanout-xdp-{ifname}-{queue}");
        self.threads
            .spawn(name.clone(), move || run_worker(worker, ctx))
            .map_err(|source| Refused::Io {
                what: format!("starting thread {name}"),
                source,
            })
    }
}

impl Engine for XdpEngine {
    fn name(&self) -> &str {
        &self.rung
    }

    /// The counters, with the XDP section (program, workers, sockets).
    fn snapshot(&self) -> Snapshot {
        // Flows by slot, those removed last after the program's counters.
        let mut snap = self.stats.snapshot_by_slot();
        for i in &self.ingress {
            let counts = match i.program.flow_counters(i.flows.len() as u32) {
                Ok(c) => c,
                Err(e) => {
                    warn!("reading the XDP flow counters of {}: {e}", i.ifname);
                    continue;
                }
            };
            for (f, c) in i.flows.iter().zip(counts) {
                let Some(flow) = snap.flows.get_mut(f.slot) else {
                    continue;
                };
                let redirected = c.get(FlowCounter::Redirected);
                flow.xdp = Some(FlowXdpSnapshot {
                    redirected,
                    lost_before_worker: redirected.saturating_sub(flow.seen_by_worker()),
                    passed: FlowCounter::ALL[1..]
                        .iter()
                        .map(|&k| (k.name().to_owned(), c.get(k)))
                        .collect(),
                });
            }
        }
        let interfaces = self
            .ingress
            .iter()
            .map(|i| {
                let program = match i.program.counters() {
                    Ok(c) => Counter::ALL
                        .iter()
                        .map(|&k| (k.name().to_owned(), c.get(k)))
                        .collect(),
                    Err(e) => {
                        warn!("reading the XDP counters of {}: {e}", i.ifname);
                        BTreeMap::new()
                    }
                };
                XdpInterfaceSnapshot {
                    interface: i.ifname.clone(),
                    attach: attach_name(i.attach).to_owned(),
                    bind: i.bind.to_string(),
                    program,
                    queues: i
                        .queues
                        .iter()
                        .map(|q| q.lock().unwrap_or_else(|e| e.into_inner()).clone())
                        .collect(),
                }
            })
            .collect();
        snap.xdp = Some(XdpSnapshot { interfaces });
        snap.removed_last();
        snap
    }

    fn failed(&self) -> Option<String> {
        self.threads.failed()
    }

    fn heartbeats(&self) -> Vec<Heartbeat> {
        self.stats.heartbeats()
    }

    fn fail_open(&mut self, worker: &str) -> Option<String> {
        for i in &mut self.ingress {
            let Some(at) = i
                .queue_ids
                .iter()
                .position(|q| worker == format!("{} queue {q}", i.ifname))
            else {
                continue;
            };
            let q = i.queue_ids[at];
            return Some(match i.program.remove_socket(q) {
                Ok(()) => {
                    i.queue_ids.remove(at);
                    format!(
                        "{worker}: its socket is out of XSKS: the flows of {} queue {q} go to \
                         the kernel (fail-open) until fanout restarts",
                        i.ifname
                    )
                }
                Err(e) => format!("{worker}: taking its socket out of XSKS: {e}"),
            });
        }
        None
    }

    /// Outputs and flows are added and removed live, between two polls of
    /// every worker concerned, on the ingress interfaces the program runs
    /// on (attached at start); a worker gets a TX socket on each egress
    /// interface it lacks first. Everything is checked before anything
    /// changes.
    fn apply(&mut self, plan: &Plan) -> Result<(), ApplyError> {
        let unsupported = |what: String| ApplyError::Unsupported {
            engine: self.rung.clone(),
            what,
        };
        // The running plan has every output's egress fixed by its route.
        let routed = routed_egress(plan).map_err(|e| unsupported(e.to_string()))?;
        let change = self.plan.change_to(&routed).map_err(unsupported)?;
        if change.is_empty() {
            self.plan = routed;
            return Ok(());
        }
        // Checked whole first: the flows, then the outputs' templates and a
        // TX port on every worker.
        let mut ports = Vec::new();
        let flows = self.check_flows(&routed, &change, &mut ports)?;
        let mut planned = Vec::with_capacity(change.outputs.len());
        for c in &change.outputs {
            let Some(flow) = routed.flows.iter().find(|f| f.name == c.flow) else {
                continue;
            };
            let slot = self
                .stats
                .flow_slot(&c.flow)
                .ok_or_else(|| unsupported(format!("flow {:?} is not running", c.flow)))?;
            for o in &c.added {
                spec::output_template(flow, o, Some([0; 6]))
                    .map_err(|e| ApplyError::Failed(e.to_string()))?;
                let what = format!("flow {:?}: output {:?} added", c.flow, o.name);
                self.ports_needed(|w| w.flows.contains(&slot), o, &what, &mut ports)
                    .map_err(unsupported)?;
            }
            planned.push((c, flow, slot));
        }
        // Every check passed: the TX ports the change needs, then the change.
        self.add_ports(&ports)?;
        // The next hops of the unicast outputs added, so that they start
        // with their templates.
        let targets: Vec<(std::net::IpAddr, String)> = flows
            .added
            .iter()
            .flat_map(|a| &a.flow.outputs)
            .chain(planned.iter().flat_map(|(c, _, _)| &c.added))
            .filter(|o| o.kind == crate::config::OutputKind::Unicast)
            .map(|o| (o.dest.ip(), egress_name(o)))
            .collect();
        let mut macs = resolve_now(&targets).into_iter();
        self.change_flows(flows, &mut macs)?;

        for (c, flow, slot) in planned {
            let removed: Vec<usize> = c
                .removed
                .iter()
                .filter_map(|o| self.stats.output_slot(slot, o))
                .collect();
            let added: Vec<Added> = c
                .added
                .iter()
                .map(|o| {
                    let mac = match o.kind {
                        crate::config::OutputKind::Unicast => macs.next().flatten(),
                        crate::config::OutputKind::Multicast => None,
                    };
                    Added {
                        slot: self.stats.add_output(slot, o),
                        // Checked above, with any MAC.
                        template: spec::output_template(flow, o, mac).ok().flatten(),
                        mac,
                        hop: unicast_spec(flow, o),
                        output: o,
                    }
                })
                .collect();
            self.change_outputs(&c.flow, slot, &removed, &added);
            for out_slot in removed {
                self.stats.remove_output(slot, out_slot);
            }
        }
        self.plan = routed;
        Ok(())
    }

    /// The main thread turns VLAN receive offloads back on and detaches
    /// the program where no BPF link holds it.
    fn kept(&self) -> &'static [crate::privileges::Capability] {
        crate::privileges::XDP_CONTROL
    }

    /// Takes the sockets out of `XSKS` first (the streams go back to the
    /// kernel: fail-open, and nothing more enters the RX rings), then waits
    /// for every thread (they stop on the stop flag): each worker takes
    /// what is left in its RX ring, lets its replicas complete and
    /// publishes its last counters, so the final account is exact.
    fn stop(&mut self) -> Result<(), String> {
        for i in &mut self.ingress {
            for &q in &i.queue_ids {
                if let Err(e) = i.program.remove_socket(q) {
                    warn!("{} queue {q}: taking the socket out of XSKS: {e}", i.ifname);
                }
            }
        }
        self.threads.stop()
    }
}

impl Drop for XdpEngine {
    fn drop(&mut self) {
        // Stopped already, or dropped on an error path: the threads stop
        // before the sockets and programs they use are dropped.
        let _ = self.threads.stop();
    }
}

/// The ingress interfaces of the plan, in plan order, once each.
fn ingress_interfaces(plan: &Plan) -> Vec<&Interface> {
    let mut order: Vec<&Interface> = Vec::new();
    for f in &plan.flows {
        if !order.iter().any(|i| i.index == f.ingress.index) {
            order.push(&f.ingress);
        }
    }
    order
}

/// Loads and attaches the program on `iface`, writes its flows, and builds
/// the worker of each of its rx queues (their sockets in `XSKS`); every
/// rung skipped goes into `notes`.
fn attach(
    plan: &Plan,
    iface: &Interface,
    object: &ObjectSource,
    policy: XdpAttach,
    notes: &mut Vec<String>,
) -> Result<(Ingress, Vec<Queue>), Refused> {
    let map_err = |source| Refused::Map {
        ifname: iface.name.clone(),
        source,
    };
    // Before the program sees a frame: tags stay in the frames.
    let vlan_offload = if plan.engine.vlan_offload == VlanOffload::Off {
        VlanOffloadOff::turn_off(&iface.name)?
    } else {
        None
    };
    let mut program = object.load()?;
    let refused = |source| Refused::Attach {
        ifname: iface.name.clone(),
        source,
    };
    // A program pinned for this interface (`fanout xdp attach`) is driven,
    // not collided with.
    let pins = plan.engine.xdp_pin_dir.join(&iface.name);
    let attached = match program.adopt(&pins, &iface.name).map_err(refused)? {
        Some(a) => {
            if policy == XdpAttach::Native && a.mode == AttachMode::Generic {
                return Err(Refused::NativeRequired {
                    ifname: iface.name.clone(),
                    reason: format!(
                        "the program pinned under {} is attached in generic mode",
                        pins.display()
                    ),
                });
            }
            notes.push(format!(
                "{}: attach skipped: driving the program pinned under {} ({})",
                iface.name,
                pins.display(),
                attach_name(a.mode)
            ));
            a
        }
        None => program
            .attach_with(&iface.name, policy == XdpAttach::Generic)
            .map_err(refused)?,
    };
    if let Some(why) = &attached.native_refused {
        if policy == XdpAttach::Native {
            return Err(Refused::NativeRequired {
                ifname: iface.name.clone(),
                reason: why.clone(),
            });
        }
        notes.push(format!("{}: native XDP skipped: {why}", iface.name));
    }
    let flows: Vec<usize> = plan
        .flows
        .iter()
        .enumerate()
        .filter(|(_, f)| f.ingress.index == iface.index)
        .map(|(i, _)| i)
        .collect();
    // Ids are positions among the interface's flows: below MAX_FLOWS, the
    // index of each flow's FLOW_COUNTERS.
    let entries: Vec<(u32, &crate::plan::FlowPlan)> = (0u32..)
        .zip(&flows)
        .map(|(id, &f)| (id, &plan.flows[f]))
        .collect();
    program.insert_flows(&entries).map_err(map_err)?;
    // One limiter per capped flow, shared by the workers of every rx queue.
    let limiters: Vec<_> = flows
        .iter()
        .map(|&f| crate::rate::shared(plan.flows[f].cap))
        .collect();
    program.set_ingress(iface.mac).map_err(map_err)?;
    let count = queue_count(&iface.name, "rx").map_err(|source| Refused::Io {
        what: format!("counting the rx queues of {}", iface.name),
        source,
    })?;
    let mut bind = None;
    let mut queues = Vec::new();
    for queue in 0..count {
        let queue::Built {
            worker,
            mode,
            own_tx,
        } = build_worker(plan, iface, &flows, &limiters, queue)?;
        if bind.is_none() && mode == BindMode::Copy {
            notes.push(format!(
                "{} queue {queue}: AF_XDP zero-copy skipped: the driver refused it (EOPNOTSUPP)",
                iface.name
            ));
        }
        bind.get_or_insert(mode);
        program.insert_socket(queue, worker.rx()).map_err(map_err)?;
        queues.push(Queue {
            ifname: iface.name.clone(),
            ingress: iface.index,
            queue,
            flows: flows.clone(),
            worker,
            own_tx,
            snap: Arc::new(Mutex::new(XdpQueueSnapshot {
                queue,
                ..XdpQueueSnapshot::default()
            })),
        });
    }
    let ingress = Ingress {
        ifname: iface.name.clone(),
        index: iface.index,
        program,
        attach: attached.mode,
        bind: bind.unwrap_or(BindMode::Copy),
        flows: flows
            .iter()
            .map(|&f| IngressFlow {
                slot: f,
                plan: Some(plan.flows[f].clone()),
            })
            .collect(),
        queue_ids: queues.iter().map(|q| q.queue).collect(),
        queues: queues.iter().map(|q| q.snap.clone()).collect(),
        _vlan_offload: vlan_offload,
    };
    Ok((ingress, queues))
}

/// Joins `flow`'s group through a kernel socket, for the switches' and
/// routers' sake (architecture.md decision 7), as the socket engine does: a VLAN
/// flow on its VLAN sub-interface, so that the report leaves tagged. A VLAN
/// flow whose parent has no such sub-interface still runs here (the
/// program matches the tag on the parent, unlike the socket engine, which
/// cannot receive it): no kernel socket can send its report tagged, so it
/// runs without membership, said once in the log.
fn join_membership(flow: &FlowPlan) -> Result<Option<socket2::Socket>, Refused> {
    match crate::membership::join(flow) {
        Ok(joined) => Ok(Some(joined.sock)),
        Err(crate::membership::Error::NoVlanInterface { flow, parent, vlan }) => {
            warn!(
                "flow {flow:?}: VLAN {vlan} on {parent} has no sub-interface: the program matches \
                 the tag on {parent}, but no IGMP/MLD membership is announced for the group on \
                 VLAN {vlan} (the network must deliver the stream without it, or create \
                 {parent}.{vlan})"
            );
            Ok(None)
        }
        Err(e @ crate::membership::Error::NoQinqInterface { .. }) => {
            warn!(
                "{e}: the program matches both tags on {}, but no IGMP/MLD membership is \
                 announced for the group (the network must deliver the stream without it, or \
                 create the sub-interfaces)",
                flow.ingress.name
            );
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
}
