//! The XDP datapath assembled: what `fanout run` starts when XDP is
//! available.
//!
//! Contract: [`XdpEngine::start`] climbs the mode ladder (DESIGN decision 6)
//! for every ingress interface of the plan and either returns a running
//! engine whose rung ([`XdpEngine::rung`], e.g. `xdp native copy`) and
//! skipped rungs ([`XdpEngine::notes`]) the caller says aloud once, or a
//! [`Refused`] naming the rung that failed and why (the caller falls back
//! to the socket engine or refuses to start). Per ingress interface: the
//! program is loaded (`FANOUT_EBPF_OBJ` at run time, else the object
//! embedded at build time) and attached (native, generic when refused, or
//! generic at once with `FANOUT_XDP_MODE=generic`), every flow on it is
//! written to `FLOWS`; per rx queue (`/sys/class/net/IF/queues/rx-*`): one
//! UMEM, the AF_XDP socket bound with zero-copy asked and copy taken when
//! refused, one TX socket per egress interface sharing the UMEM, the socket
//! put in `XSKS`, and an [`worker::Worker`] on its own thread. Groups are
//! joined through kernel sockets ([`crate::membership::join`]) held
//! for the engine's life; they receive nothing while the program redirects.
//! A VLAN flow needs no VLAN sub-interface (the program matches the tag),
//! but without one its group is not joined (said in the log).
//!
//! Unicast outputs get their next hop's MAC from [`crate::neigh`]; start-up
//! waits a bounded time for them, then a side thread refreshes them every
//! second (every 100 ms while one is unresolved) and hands changed
//! templates to the workers; replicas without one are counted as
//! `next_hop_unresolved`. Workers poll while there is work (received
//! packets, completions, replicas in flight) and wait on their socket only
//! when idle, looking at the stop flag at least every 100 ms. Wakeups
//! follow `need_wakeup`, unless `FANOUT_XSK_BUSY_POLL=<usecs>` asks for
//! preferred busy polling ([`xsk::BusyPoll`], said once per queue at
//! start; a refused option leaves `need_wakeup`): then every poll's
//! `recvfrom` runs the ingress NAPI in the worker's thread, and an idle
//! worker keeps polling that many microseconds before it sleeps; when the
//! first packets show that the socket has no NAPI to poll (copy mode on
//! Linux 6.13+: veth), the worker says so and goes back to `need_wakeup`. Their
//! counters are bridged into [`crate::stats::Stats`] (deltas, at least every
//! 10 ms and at the end) so that the table, `--stats-json` and
//! [`crate::stats::Snapshot::check_accounting`] read as with the socket
//! engine; [`XdpEngine::snapshot`] adds the program's counters, the
//! workers' frame counters and the sockets' kernel statistics.
//!
//! Dropping the engine (after [`XdpEngine::join`]) closes the sockets
//! (they leave `XSKS`: fail-open) and detaches the programs.

use std::collections::BTreeMap;
use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use fanout_common::Counter;
use log::{info, warn};

pub mod program;
pub mod spec;
pub mod worker;
pub mod xsk;

use self::program::{self as xdp, AttachMode, XdpProgram};
use self::spec::{self as setup, SetupError};
use self::worker::{
    DropReason as EngineDrop, FlowCounters as EngineFlow, MAX_INLINE, Worker, WorkerConfig,
};
use self::xsk::{BindMode, BusyPoll, RingSizes, RxSocket, TxSocket, XskUmem};
use crate::plan::{FlowPlan, Interface, OutputKind, Plan};
use crate::stats::{
    DropReason, Snapshot, Stats, XdpInterfaceSnapshot, XdpQueueSnapshot, XdpSnapshot,
};
use crate::wire::ReplicaTemplate;

/// Run-time path of the XDP object; overrides the embedded one.
pub const OBJECT_ENV: &str = "FANOUT_EBPF_OBJ";
/// `generic` forces generic (skb) XDP; `native` refuses generic;
/// unset or `auto` climbs the ladder.
pub const MODE_ENV: &str = "FANOUT_XDP_MODE";
/// Longest wait at start-up for unicast next hops to resolve.
pub const NEIGH_STARTUP_WAIT: Duration = Duration::from_secs(3);
/// How often resolved next hops are checked again.
pub const NEIGH_REFRESH: Duration = Duration::from_secs(1);
/// Longest a worker sleeps before it looks at the stop flag again.
pub const STOP_POLL: Duration = Duration::from_millis(100);
/// How often a busy worker publishes its counters.
const PUBLISH_EVERY: Duration = Duration::from_millis(10);
/// How often a worker reads its sockets' kernel statistics.
const KERNEL_STATS_EVERY: Duration = Duration::from_millis(200);
/// Receive frames per rx queue (4096 bytes each: 16 MiB), and the fill
/// ring's size: every free receive frame fits in it. The UMEM adds the
/// header-slot frames.
const RX_FRAMES: u32 = 4096;

/// A rung of the ladder that could not be climbed, and why.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    #[error("XDP program not built into this binary (run cargo xtask build-ebpf)")]
    NotBuilt,
    #[error("{MODE_ENV}={0:?}: expected auto, native or generic")]
    BadModeEnv(String),
    #[error("loading the XDP program: {0}")]
    Load(#[source] xdp::Error),
    #[error("interface {ifname}: {source}")]
    Attach {
        ifname: String,
        #[source]
        source: xdp::Error,
    },
    #[error("interface {ifname}: native XDP refused ({reason}) and {MODE_ENV}=native")]
    NativeRequired { ifname: String, reason: String },
    #[error("interface {ifname}: writing the XDP maps: {source}")]
    Map {
        ifname: String,
        #[source]
        source: xdp::Error,
    },
    #[error("interface {ifname} queue {queue}: AF_XDP: {source}")]
    Xsk {
        ifname: String,
        queue: u32,
        #[source]
        source: xsk::Error,
    },
    #[error("{0}")]
    Setup(#[from] SetupError),
    #[error("interface {ifname} queue {queue}: {source}")]
    Worker {
        ifname: String,
        queue: u32,
        #[source]
        source: worker::WorkerError,
    },
    #[error("joining the groups: {0}")]
    Join(#[from] crate::membership::Error),
    #[error("flow {flow:?} output {output:?}: no interface set, and the route to {dst}: {source}")]
    Route {
        flow: String,
        output: String,
        dst: IpAddr,
        #[source]
        source: crate::neigh::Error,
    },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
}

/// `plan` with an egress interface for every output: a unicast output
/// configured without one leaves by the interface the kernel's routing
/// table gives for its destination at start-up (said in the log); the
/// XDP engine transmits on a fixed interface per output.
fn routed_egress(plan: &Plan) -> Result<Plan, Refused> {
    let mut routed = plan.clone();
    for flow in &mut routed.flows {
        for output in &mut flow.outputs {
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
    }
    Ok(routed)
}

/// How the operator asked to attach (`FANOUT_XDP_MODE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttachPolicy {
    /// Native, generic when refused.
    Auto,
    /// Native or nothing.
    Native,
    /// Generic straight away.
    Generic,
}

impl AttachPolicy {
    /// From `FANOUT_XDP_MODE` (unset: [`AttachPolicy::Auto`]).
    pub fn from_env() -> Result<Self, Refused> {
        match std::env::var(MODE_ENV) {
            Err(_) => Ok(AttachPolicy::Auto),
            Ok(v) => match v.as_str() {
                "" | "auto" => Ok(AttachPolicy::Auto),
                "native" => Ok(AttachPolicy::Native),
                "generic" => Ok(AttachPolicy::Generic),
                _ => Err(Refused::BadModeEnv(v)),
            },
        }
    }
}

/// Where the XDP object comes from.
#[derive(Debug, Clone)]
pub enum ObjectSource {
    File(PathBuf),
    Embedded(&'static [u8]),
}

impl ObjectSource {
    /// `FANOUT_EBPF_OBJ` when set, else the embedded object.
    pub fn find() -> Result<Self, Refused> {
        match std::env::var_os(OBJECT_ENV) {
            Some(p) if !p.is_empty() => Ok(ObjectSource::File(p.into())),
            _ => xdp::embedded_object()
                .map(ObjectSource::Embedded)
                .ok_or(Refused::NotBuilt),
        }
    }

    fn load(&self) -> Result<XdpProgram, Refused> {
        match self {
            ObjectSource::File(p) => XdpProgram::load_file(p),
            ObjectSource::Embedded(b) => XdpProgram::load_bytes(b),
        }
        .map_err(Refused::Load)
    }

    fn describe(&self) -> String {
        match self {
            ObjectSource::File(p) => format!("{} ({OBJECT_ENV})", p.display()),
            ObjectSource::Embedded(b) => format!("embedded ({} bytes)", b.len()),
        }
    }
}

/// A template change for one output of one worker.
#[derive(Debug)]
struct TemplateUpdate {
    flow: usize,
    output: usize,
    template: Option<ReplicaTemplate>,
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

/// One ingress interface.
#[derive(Debug)]
struct Ingress {
    ifname: String,
    program: XdpProgram,
    attach: AttachMode,
    bind: BindMode,
    queues: Vec<Arc<Mutex<XdpQueueSnapshot>>>,
}

/// A running XDP datapath.
#[derive(Debug)]
pub struct XdpEngine {
    rung: String,
    notes: Vec<String>,
    stats: Arc<Stats>,
    ingress: Vec<Ingress>,
    workers: Vec<(String, JoinHandle<()>)>,
    neigh: Option<JoinHandle<()>>,
    _membership: Vec<socket2::Socket>,
}

/// The kernel's rx queues of `ifname` (`/sys/class/net/IF/queues/rx-*`).
pub fn queue_count(ifname: &str, kind: &str) -> io::Result<u32> {
    let dir = Path::new("/sys/class/net").join(ifname).join("queues");
    let mut n = 0;
    for e in std::fs::read_dir(&dir)? {
        if e?
            .file_name()
            .to_string_lossy()
            .starts_with(&format!("{kind}-"))
        {
            n += 1;
        }
    }
    Ok(n.max(1))
}

impl XdpEngine {
    /// Climbs the ladder and starts every worker; see the module
    /// documentation. `plan.flows` must not be empty.
    pub fn start(plan: &Plan, stop: Arc<AtomicBool>) -> Result<XdpEngine, Refused> {
        let object = ObjectSource::find()?;
        let policy = AttachPolicy::from_env()?;
        let routed = routed_egress(plan)?;
        let plan = &routed;
        let mut notes = Vec::new();
        info!("XDP object: {}", object.describe());

        // Ingress interfaces in plan order, with their flows.
        let mut order: Vec<&Interface> = Vec::new();
        for f in &plan.flows {
            if !order.iter().any(|i| i.index == f.ingress.index) {
                order.push(&f.ingress);
            }
        }

        // Templates that need no neighbour first: refuse early on outputs
        // the XDP engine cannot run (no interface, no MAC, no address).
        for f in &plan.flows {
            for o in &f.outputs {
                setup::replica_spec(f, o, Some([0; 6]))?;
            }
        }

        let mut ingress = Vec::new();
        let mut prepared = Vec::new();
        let mut neigh: Vec<NeighTarget> = Vec::new();
        for iface in order {
            let mut program = object.load()?;
            let attached = program
                .attach_with(&iface.name, policy == AttachPolicy::Generic)
                .map_err(|source| Refused::Attach {
                    ifname: iface.name.clone(),
                    source,
                })?;
            if let Some(why) = &attached.native_refused {
                if policy == AttachPolicy::Native {
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
            for &f in &flows {
                program
                    .insert_flow(f as u32, &plan.flows[f])
                    .map_err(|source| Refused::Map {
                        ifname: iface.name.clone(),
                        source,
                    })?;
            }
            let queues = queue_count(&iface.name, "rx").map_err(|source| Refused::Io {
                what: format!("counting the rx queues of {}", iface.name),
                source,
            })?;
            let mut bind = None;
            let mut snaps = Vec::new();
            for queue in 0..queues {
                let (worker, mode) = build_worker(plan, iface, &flows, queue)?;
                if bind.is_none() && mode == BindMode::Copy {
                    notes.push(format!(
                        "{} queue {queue}: AF_XDP zero-copy skipped: the driver refused it (EOPNOTSUPP)",
                        iface.name
                    ));
                }
                bind.get_or_insert(mode);
                program
                    .insert_socket(queue, worker.rx())
                    .map_err(|source| Refused::Map {
                        ifname: iface.name.clone(),
                        source,
                    })?;
                let snap = Arc::new(Mutex::new(XdpQueueSnapshot {
                    queue,
                    ..XdpQueueSnapshot::default()
                }));
                snaps.push(snap.clone());
                let w = prepared.len();
                for (local, &pf) in flows.iter().enumerate() {
                    for (o, out) in plan.flows[pf].outputs.iter().enumerate() {
                        if out.kind != OutputKind::Unicast {
                            continue;
                        }
                        let ifname = out.interface.as_ref().map(|i| i.name.clone());
                        let ifname = ifname.unwrap_or_default();
                        let user = NeighUser {
                            worker: w,
                            flow: local,
                            plan_flow: pf,
                            output: o,
                        };
                        let dst = out.dest.ip();
                        match neigh
                            .iter_mut()
                            .find(|t| t.dst == dst && t.ifname == ifname)
                        {
                            Some(t) => t.users.push(user),
                            None => neigh.push(NeighTarget {
                                dst,
                                ifname,
                                mac: None,
                                users: vec![user],
                                logged_unresolved: false,
                            }),
                        }
                    }
                }
                prepared.push((iface.name.clone(), queue, flows.clone(), worker, snap));
            }
            ingress.push(Ingress {
                ifname: iface.name.clone(),
                program,
                attach: attached.mode,
                bind: bind.unwrap_or(BindMode::Copy),
                queues: snaps,
            });
        }

        let membership = plan
            .flows
            .iter()
            .filter_map(|flow| join_membership(flow).transpose())
            .collect::<Result<Vec<_>, _>>()?;

        let rung = rung_name(&ingress);
        let stats = Arc::new(Stats::for_plan(plan, &rung));

        // Next hops: a bounded wait at start, so the first datagrams find them.
        let mut senders: Vec<Sender<TemplateUpdate>> = Vec::new();
        let mut receivers: Vec<Receiver<TemplateUpdate>> = Vec::new();
        for _ in &prepared {
            let (tx, rx) = channel();
            senders.push(tx);
            receivers.push(rx);
        }
        let deadline = Instant::now() + NEIGH_STARTUP_WAIT;
        loop {
            refresh_neigh(plan, &mut neigh, &senders);
            if neigh.iter().all(|t| t.mac.is_some()) || Instant::now() >= deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        for t in &neigh {
            if t.mac.is_none() {
                warn!(
                    "next hop of {} via {} unresolved after {:?}: its replicas are counted as next_hop_unresolved until it resolves",
                    t.dst, t.ifname, NEIGH_STARTUP_WAIT
                );
            }
        }

        let mut workers = Vec::new();
        for (((ifname, queue, flows, mut worker, snap), updates), _) in
            prepared.into_iter().zip(receivers).zip(0..)
        {
            // Templates resolved during the wait above.
            while let Ok(u) = updates.try_recv() {
                worker.set_template(u.flow, u.output, u.template);
            }
            let egress = egress_list(plan, &flows)
                .into_iter()
                .map(|i| i.name.clone())
                .collect();
            // Header bytes of every replica, per flow and output: the
            // stats count UDP payload bytes, as the socket engine does.
            let headers = flows
                .iter()
                .map(|&f| {
                    plan.flows[f]
                        .outputs
                        .iter()
                        .map(|o| replica_header_len(o.dest.ip()))
                        .collect()
                })
                .collect();
            let ctx = WorkerCtx {
                name: format!("{ifname} queue {queue}"),
                headers,
                flows,
                stats: stats.clone(),
                stop: stop.clone(),
                updates,
                snap,
                egress,
            };
            let name = format!("fanout-xdp-{ifname}-{queue}");
            let handle = std::thread::Builder::new()
                .name(name.clone())
                .spawn(move || run_worker(worker, ctx))
                .map_err(|source| Refused::Io {
                    what: format!("starting thread {name}"),
                    source,
                })?;
            workers.push((name, handle));
        }

        let neigh = if neigh.is_empty() {
            None
        } else {
            let plan = plan.clone();
            let stop = stop.clone();
            Some(
                std::thread::Builder::new()
                    .name("fanout-neigh".into())
                    .spawn(move || neigh_loop(&plan, neigh, senders, &stop))
                    .map_err(|source| Refused::Io {
                        what: "starting the next-hop thread".into(),
                        source,
                    })?,
            )
        };

        Ok(XdpEngine {
            rung,
            notes,
            stats,
            ingress,
            workers,
            neigh,
            _membership: membership,
        })
    }

    /// The rung reached, e.g. `xdp native copy` (the `engine` of the stats).
    pub fn rung(&self) -> &str {
        &self.rung
    }

    /// Every rung skipped on the way, with its reason.
    pub fn notes(&self) -> &[String] {
        &self.notes
    }

    /// The counters the workers publish into.
    pub fn stats(&self) -> Arc<Stats> {
        self.stats.clone()
    }

    /// Whether a thread has ended (before the stop flag: it panicked).
    pub fn any_finished(&self) -> bool {
        self.workers.iter().any(|(_, h)| h.is_finished())
    }

    /// The counters, with the XDP section (program, workers, sockets).
    pub fn snapshot(&self) -> Snapshot {
        let mut snap = self.stats.snapshot();
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
        snap
    }

    /// Waits for every thread (they stop on the stop flag); the workers
    /// publish their last counters first.
    pub fn join(&mut self) -> Result<(), String> {
        let mut bad = Vec::new();
        for (name, h) in self.workers.drain(..) {
            if h.join().is_err() {
                bad.push(format!("thread {name} panicked"));
            }
        }
        if let Some(h) = self.neigh.take()
            && h.join().is_err()
        {
            bad.push("thread fanout-neigh panicked".into());
        }
        if bad.is_empty() {
            Ok(())
        } else {
            Err(bad.join("; "))
        }
    }
}

fn attach_name(m: AttachMode) -> &'static str {
    match m {
        AttachMode::Native => "native",
        AttachMode::Generic => "generic",
    }
}

/// Joins `flow`'s group through a kernel socket, for the switches' and
/// routers' sake (DESIGN decision 7), as the socket engine does: a VLAN
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
        Err(e) => Err(e.into()),
    }
}

/// `xdp native copy` when every interface reached the same rung, else
/// `xdp in0=native copy, in1=generic copy`.
fn rung_name(ingress: &[Ingress]) -> String {
    let each: Vec<String> = ingress
        .iter()
        .map(|i| format!("{} {}", attach_name(i.attach), i.bind))
        .collect();
    if each.windows(2).all(|w| w[0] == w[1]) {
        format!("xdp {}", each.first().map_or("", String::as_str))
    } else {
        let named: Vec<String> = ingress
            .iter()
            .zip(&each)
            .map(|(i, r)| format!("{}={r}", i.ifname))
            .collect();
        format!("xdp {}", named.join(", "))
    }
}

/// The egress interfaces of the flows on `ingress`, in TX port order.
fn egress_list<'a>(plan: &'a Plan, flows: &[usize]) -> Vec<&'a Interface> {
    let mut out: Vec<&Interface> = Vec::new();
    for &f in flows {
        for o in &plan.flows[f].outputs {
            if let Some(i) = &o.interface
                && !out.iter().any(|e| e.index == i.index)
            {
                out.push(i);
            }
        }
    }
    out
}

type XdpWorker = Worker<XskUmem, RxSocket, TxSocket>;

/// The UMEM, the sockets and the worker of one rx queue.
fn build_worker(
    plan: &Plan,
    iface: &Interface,
    flows: &[usize],
    queue: u32,
) -> Result<(XdpWorker, BindMode), Refused> {
    let xsk_err = |ifname: &str, queue: u32| {
        let ifname = ifname.to_owned();
        move |source| Refused::Xsk {
            ifname,
            queue,
            source,
        }
    };
    let egress = egress_list(plan, flows);
    let mut sizes = RingSizes::default();
    let ports = egress.len() as u32;
    // Header slots for every descriptor that can be in a TX ring or its
    // completion ring at once, per port (a slot per replica at most).
    let per_frame = xsk::FRAME_SIZE / worker::DEFAULT_SLOT_SIZE;
    let slot_frames = (ports.max(1) * (sizes.tx + sizes.completion)).div_ceil(per_frame);
    // Room in the fill ring for every receive frame, so that a frame never
    // waits in userspace for a slot there (`fill_short` stays a signal).
    sizes.fill = RX_FRAMES;
    let mut umem = XskUmem::new(slot_frames + RX_FRAMES).map_err(xsk_err(&iface.name, queue))?;
    let ingress_is_egress = egress.iter().any(|e| e.index == iface.index);
    let (mut rx, own_tx) = umem
        .bind_rx(iface.index, queue, sizes, ingress_is_egress)
        .map_err(xsk_err(&iface.name, queue))?;
    let mode = umem.mode().unwrap_or(BindMode::Copy);
    let mut own_tx = own_tx;
    let mut tx = Vec::with_capacity(egress.len());
    for e in &egress {
        if e.index == iface.index {
            tx.push(own_tx.take().ok_or_else(|| Refused::Io {
                what: format!("{}: no TX ring on the ingress socket", e.name),
                source: io::Error::other("missing"),
            })?);
            continue;
        }
        let txq = queue_count(&e.name, "tx").map_err(|source| Refused::Io {
            what: format!("counting the tx queues of {}", e.name),
            source,
        })?;
        tx.push(
            umem.bind_tx(e.index, queue % txq, sizes)
                .map_err(xsk_err(&e.name, queue % txq))?,
        );
    }
    if mode == BindMode::Copy {
        for (e, t) in egress.iter().zip(&tx) {
            info!(
                "AF_XDP TX {} (from {} queue {queue}): copy mode sends {} descriptors per wakeup{}",
                e.name,
                iface.name,
                t.budget(),
                if t.budget() == xsk::KERNEL_TX_BUDGET {
                    " (the kernel's default)"
                } else {
                    " (XDP_MAX_TX_SKB_BUDGET)"
                }
            );
        }
    }
    let batch = plan.batch_size.clamp(1, 1024);
    set_wakeup(
        &iface.name,
        queue,
        BusyPoll::from_env(batch as u16),
        &mut rx,
        &mut tx,
        &egress,
    );
    let mut specs = Vec::with_capacity(flows.len());
    for &f in flows {
        let flow: &FlowPlan = &plan.flows[f];
        specs.push(setup::flow_spec(
            flow,
            |i| egress.iter().position(|e| e.index == i.index).unwrap_or(0),
            |_| None,
        )?);
    }
    let mut cfg = WorkerConfig::new(batch, slot_frames);
    if let Ok(v) = std::env::var(INLINE_ENV) {
        match v.trim().parse::<u32>() {
            Ok(n) => cfg.inline_max = n.min(MAX_INLINE),
            Err(_) if queue == 0 => warn!(
                "{INLINE_ENV}={v:?} is not a byte count: the default {} stays",
                cfg.inline_max
            ),
            Err(_) => {}
        }
    }
    if queue == 0 {
        info!(
            "{}: payloads up to {} bytes that fit in a {}-byte header slot behind the headers are copied there (one descriptor per replica); longer ones are chained by reference",
            iface.name, cfg.inline_max, cfg.slot_size
        );
    }
    let worker = Worker::new(umem, rx, tx, specs, cfg).map_err(|source| Refused::Worker {
        ifname: iface.name.clone(),
        queue,
        source,
    })?;
    Ok((worker, mode))
}

/// Puts a worker's sockets on `busy` (preferred busy polling) or leaves
/// them on `need_wakeup`, and says which once. A refused option is logged
/// and costs only busy polling, never the start.
fn set_wakeup(
    ifname: &str,
    queue: u32,
    busy: Option<BusyPoll>,
    rx: &mut RxSocket,
    tx: &mut [TxSocket],
    egress: &[&Interface],
) {
    let Some(bp) = busy else {
        info!(
            "AF_XDP {ifname} queue {queue}: wakeups by need_wakeup (busy polling off; {}=<usecs> turns it on)",
            xsk::BUSY_POLL_ENV
        );
        return;
    };
    if let Err(e) = rx.set_busy_poll(bp) {
        warn!("AF_XDP {ifname} queue {queue}: busy polling refused ({e}); wakeups by need_wakeup");
        return;
    }
    let refused: Vec<String> = tx
        .iter_mut()
        .zip(egress)
        .filter_map(|(t, e)| {
            t.set_busy_poll(bp)
                .err()
                .map(|err| format!("{} ({err})", e.name))
        })
        .collect();
    info!(
        "AF_XDP {ifname} queue {queue}: wakeups by {bp}: recvfrom on every poll, an idle worker \
         polls {} us before it sleeps{}",
        bp.usecs,
        if refused.is_empty() {
            String::new()
        } else {
            format!("; TX sockets left on need_wakeup: {}", refused.join(", "))
        }
    );
}

/// Environment override of [`WorkerConfig::inline_max`] (bytes; 0: every
/// payload by reference).
pub const INLINE_ENV: &str = "FANOUT_XSK_INLINE";

/// Longest a stopping worker keeps polling for the completions of the
/// replicas it already handed to TX rings.
const DRAIN: Duration = Duration::from_millis(500);

/// What a worker thread needs besides its worker.
struct WorkerCtx {
    /// `in0 queue 0`, for the log.
    name: String,
    /// Plan index of each of the worker's flows.
    flows: Vec<usize>,
    stats: Arc<Stats>,
    stop: Arc<AtomicBool>,
    updates: Receiver<TemplateUpdate>,
    snap: Arc<Mutex<XdpQueueSnapshot>>,
    /// Egress interface name of each TX port.
    egress: Vec<String>,
    /// Header bytes (Ethernet, IP, UDP) of each replica, per flow and
    /// output, taken off the worker's frame bytes when published.
    headers: Vec<Vec<u64>>,
}

/// Ethernet + IP + UDP header bytes of a replica to `dst` (replicas carry
/// no VLAN tag and no IP options).
fn replica_header_len(dst: IpAddr) -> u64 {
    match dst {
        IpAddr::V4(_) => 14 + 20 + 8,
        IpAddr::V6(_) => 14 + 40 + 8,
    }
}

fn run_worker(mut w: XdpWorker, ctx: WorkerCtx) {
    let mut published: Vec<EngineFlow> = w.flow_counters().to_vec();
    for p in &mut published {
        *p = EngineFlow {
            outputs: vec![Default::default(); p.outputs.len()],
            ..EngineFlow::default()
        };
    }
    let mut last_publish = Instant::now();
    let mut last_kernel = Instant::now() - KERNEL_STATS_EVERY;
    // Busy polling: how long an idle worker keeps polling (each poll runs
    // the ingress NAPI through `recvfrom`) before it sleeps on the socket.
    let mut spin = w
        .rx()
        .busy_poll()
        .map(|bp| Duration::from_micros(bp.usecs.into()));
    let mut idle_since: Option<Instant> = None;
    // Checked once, after the first packets: which NAPI the busy polls
    // drive; none, and busy polling is turned off again.
    let mut napi_checked = spin.is_none();
    loop {
        let r = w.poll();
        if !napi_checked && r.received > 0 {
            napi_checked = true;
            if !check_napi(&mut w, &ctx) {
                spin = None;
            }
        }
        let busy = r.received > 0 || r.completed > 0 || w.replicas_in_flight() > 0;
        let stopping = ctx.stop.load(Ordering::Relaxed);
        let sleep = !busy
            && match spin {
                None => true,
                Some(spin) => idle_since.get_or_insert_with(Instant::now).elapsed() >= spin,
            };
        if busy {
            idle_since = None;
        }
        if sleep || stopping || last_publish.elapsed() >= PUBLISH_EVERY {
            publish(&w, &ctx, &mut published);
            while let Ok(u) = ctx.updates.try_recv() {
                w.set_template(u.flow, u.output, u.template);
            }
            if stopping || last_kernel.elapsed() >= KERNEL_STATS_EVERY {
                kernel_snapshot(&w, &ctx);
                last_kernel = Instant::now();
            }
            last_publish = Instant::now();
        }
        if stopping {
            // Replicas counted as sent are in TX rings: let the kernel
            // send them (copy mode sends from the wakeup) before the
            // sockets close.
            let deadline = Instant::now() + DRAIN;
            while w.replicas_in_flight() > 0 && Instant::now() < deadline {
                if w.poll().completed == 0 {
                    std::thread::sleep(Duration::from_micros(200));
                }
            }
            publish(&w, &ctx, &mut published);
            kernel_snapshot(&w, &ctx);
            break;
        }
        if sleep {
            // Idle: sleep on the socket, but look at the stop flag and the
            // template updates at least every STOP_POLL.
            let _ = w.rx().wait(STOP_POLL);
            idle_since = None;
        }
    }
}

/// Busy polling polls the NAPI instance the socket is marked with. Without
/// one (copy mode on Linux 6.13+, or a driver that links no NAPI to its
/// queues) each poll's `recvfrom` and the idle spin are pure cost: says
/// so, puts the sockets back on `need_wakeup` and returns false.
fn check_napi(w: &mut XdpWorker, ctx: &WorkerCtx) -> bool {
    match w.rx().napi_id() {
        Ok(id) if id != 0 => {
            info!("AF_XDP {}: busy polling drives NAPI id {id}", ctx.name);
            true
        }
        other => {
            let why = match other {
                Err(e) => format!("SO_INCOMING_NAPI_ID: {e}"),
                _ => {
                    "SO_INCOMING_NAPI_ID is 0: on Linux 6.13+ only zero-copy sockets get one".into()
                }
            };
            warn!(
                "AF_XDP {}: busy polling has no NAPI to poll ({why}); back to need_wakeup",
                ctx.name
            );
            let (_, rx, tx) = w.parts_mut();
            rx.clear_busy_poll();
            for t in tx {
                t.clear_busy_poll();
            }
            false
        }
    }
}

fn map_reason(r: EngineDrop) -> DropReason {
    match r {
        EngineDrop::RingFull => DropReason::RingFull,
        EngineDrop::NextHopUnresolved => DropReason::NextHopUnresolved,
        EngineDrop::NoSlot => DropReason::NoSlot,
        EngineDrop::HeaderError => DropReason::HeaderError,
        EngineDrop::ChainTooLong => DropReason::ChainTooLong,
    }
}

/// Adds what the worker counted since the last call to the shared stats.
fn publish(w: &XdpWorker, ctx: &WorkerCtx, published: &mut [EngineFlow]) {
    for (((now, last), &pf), headers) in w
        .flow_counters()
        .iter()
        .zip(published.iter_mut())
        .zip(&ctx.flows)
        .zip(&ctx.headers)
    {
        let fs = &ctx.stats.flows[pf];
        if now.received != last.received {
            fs.counters.add_received(
                now.received - last.received,
                now.received_bytes - last.received_bytes,
            );
        }
        if now.source_rejected != last.source_rejected {
            fs.counters
                .add_source_rejected(now.source_rejected - last.source_rejected);
        }
        for (((o_now, o_last), os), &header) in now
            .outputs
            .iter()
            .zip(&last.outputs)
            .zip(&fs.outputs)
            .zip(headers)
        {
            if o_now.sent != o_last.sent {
                let sent = o_now.sent - o_last.sent;
                let frame_bytes = o_now.sent_bytes - o_last.sent_bytes;
                os.counters
                    .add_sent(sent, frame_bytes.saturating_sub(sent * header));
            }
            for r in EngineDrop::ALL {
                let d = o_now.dropped(r) - o_last.dropped(r);
                if d > 0 {
                    os.counters.add_dropped(map_reason(r), d);
                }
            }
        }
        last.clone_from(now);
    }
}

fn xdp_stats(st: io::Result<libc::xdp_statistics>) -> BTreeMap<String, u64> {
    let mut m = BTreeMap::new();
    match st {
        Ok(s) => {
            for (k, v) in [
                ("rx_dropped", s.rx_dropped),
                ("rx_invalid_descs", s.rx_invalid_descs),
                ("tx_invalid_descs", s.tx_invalid_descs),
                ("rx_ring_full", s.rx_ring_full),
                ("rx_fill_ring_empty_descs", s.rx_fill_ring_empty_descs),
                ("tx_ring_empty_descs", s.tx_ring_empty_descs),
            ] {
                m.insert(k.to_owned(), v);
            }
        }
        Err(_) => {
            m.insert("unavailable".to_owned(), 1);
        }
    }
    m
}

/// Refreshes the queue's snapshot: worker counters and kernel statistics.
fn kernel_snapshot(w: &XdpWorker, ctx: &WorkerCtx) {
    let c = w.counters();
    let worker: BTreeMap<String, u64> = [
        ("rx_packets", c.rx_packets),
        ("malformed", c.malformed),
        ("no_flow", c.no_flow),
        ("bad_rx_desc", c.bad_rx_desc),
        ("bad_completion", c.bad_completion),
        ("fill_short", c.fill_short),
        ("replicas_in_flight", w.replicas_in_flight() as u64),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let rx_socket = xdp_stats(w.rx().kernel_stats());
    let tx_sockets = w
        .tx()
        .iter()
        .zip(&ctx.egress)
        .map(|(t, name)| (name.clone(), xdp_stats(t.kernel_stats())))
        .collect();
    let mut snap = ctx.snap.lock().unwrap_or_else(|e| e.into_inner());
    snap.worker = worker;
    snap.rx_socket = rx_socket;
    snap.tx_sockets = tx_sockets;
}

/// One pass over the next hops: resolve, and send changed templates.
fn refresh_neigh(plan: &Plan, targets: &mut [NeighTarget], senders: &[Sender<TemplateUpdate>]) {
    for t in targets.iter_mut() {
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
            let _ = senders[u.worker].send(TemplateUpdate {
                flow: u.flow,
                output: u.output,
                template,
            });
        }
    }
}

fn neigh_loop(
    plan: &Plan,
    mut targets: Vec<NeighTarget>,
    senders: Vec<Sender<TemplateUpdate>>,
    stop: &AtomicBool,
) {
    let mut next = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        if Instant::now() >= next {
            refresh_neigh(plan, &mut targets, &senders);
            let pending = targets.iter().any(|t| t.mac.is_none());
            next = Instant::now() + if pending { STOP_POLL } else { NEIGH_REFRESH };
        }
        std::thread::sleep(
            STOP_POLL
                .min(next.saturating_duration_since(Instant::now()))
                .max(Duration::from_millis(10)),
        );
    }
}
