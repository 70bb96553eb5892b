//! The thread that runs one rx queue's [`super::worker::Worker`].
//!
//! Contract: the thread polls while there is work (received packets,
//! completions, replicas in flight) and waits on its socket only when idle,
//! looking at the stop flag and its [`Command`]s at least every
//! [`STOP_POLL`]. Commands (a next hop's template, the live plan changes,
//! a TX socket bound on another egress interface) are applied between two
//! polls, never inside one. The worker's counters are published whole
//! ([`crate::stats::Publisher`]) at least every [`PUBLISH_EVERY`] while
//! busy, whenever it goes idle, and last when it stops; the queue's frame
//! counters and the sockets' kernel statistics go to its
//! [`XdpQueueSnapshot`] every [`KERNEL_STATS_EVERY`].
//! On stop (its socket already out of `XSKS`) it keeps polling up to
//! [`DRAIN`] while its RX ring holds frames and for the completions of what
//! it handed to the TX rings, so that those replicas leave and the final
//! counters account for every frame redirected to it.
//!
//! Wakeups follow `need_wakeup`, unless busy polling was asked for
//! ([`super::xsk::BusyPoll`]): then every poll's `recvfrom` runs the ingress
//! NAPI in this thread, and an idle worker keeps polling that many
//! microseconds before it sleeps; when the first packets show that the
//! socket has no NAPI to poll (copy mode on Linux 6.13+: veth), the thread
//! says so and goes back to `need_wakeup`.

use std::collections::BTreeMap;
use std::io;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use log::{info, warn};

use super::queue::XdpWorker;
use super::worker::{FlowSpec, OutputSpec};
use super::xsk::{RingSizes, TxSocket};
use crate::engine::{PUBLISH_EVERY, STOP_POLL};
use crate::plan::Interface;
use crate::stats::{Publisher, XdpQueueSnapshot};
use crate::wire::ReplicaTemplate;

/// How often a worker reads its sockets' kernel statistics.
const KERNEL_STATS_EVERY: Duration = Duration::from_millis(200);

/// Longest a stopping worker keeps polling for the completions of the
/// replicas it already handed to TX rings.
const DRAIN: Duration = Duration::from_millis(500);

/// A change for one worker, applied between two polls.
#[derive(Debug)]
pub(super) enum Command {
    /// A next hop resolved or changed: the output's new template (`None`:
    /// unresolved again).
    Template {
        /// The flow's index in the worker.
        flow: usize,
        output: usize,
        template: Option<ReplicaTemplate>,
    },
    /// A live change of one flow's outputs (by counter slot), taken whole
    /// between two polls; `done` hears when it is carried out and the
    /// counters published.
    Outputs {
        /// The flow's index in the worker.
        flow: usize,
        remove: Vec<usize>,
        add: Vec<(usize, OutputSpec)>,
        done: SyncSender<()>,
    },
    /// An egress interface a live change needs: bind a TX socket on it
    /// (on the worker's UMEM) and add it as TX port `port`, which must be
    /// the next one; `done` hears the outcome.
    AddPort {
        /// The worker's ingress interface and queue, for the log.
        ingress: String,
        queue: u32,
        egress: Interface,
        /// The AF_XDP socket to bind, opened by the engine's thread;
        /// `None`: the egress is the worker's ingress, whose socket's own
        /// TX ring ([`Ports::own_tx`]) becomes the port.
        socket: Option<OwnedFd>,
        sizes: RingSizes,
        port: usize,
        done: SyncSender<Result<(), String>>,
    },
    /// A live change of the worker's flows, taken whole between two polls
    /// (removals first, so that a flow changed in place hands its traffic
    /// over within one gap); `done` hears when it is carried out and the
    /// counters published.
    Flows {
        /// Flow ids (indices in the worker) removed.
        remove: Vec<usize>,
        /// Each added flow's id (the next ones) and its stats slot.
        add: Vec<(usize, usize, FlowSpec)>,
        done: SyncSender<()>,
    },
}

/// A worker's TX ports as its thread names them, and the ingress socket's
/// own TX ring while no port uses it.
#[derive(Debug)]
pub(super) struct Ports {
    /// The egress interface's name of each TX port.
    pub(super) egress: Vec<String>,
    pub(super) own_tx: Option<TxSocket>,
}

/// Applies every command waiting for `w`; after a change of outputs, the
/// counters are published (when `publisher` is given) before it is
/// acknowledged. A TX port added goes into `ports`.
pub(super) fn apply_commands(
    w: &mut XdpWorker,
    commands: &Receiver<Command>,
    publisher: Option<&Publisher>,
    ports: &mut Ports,
) {
    while let Ok(c) = commands.try_recv() {
        match c {
            Command::Template {
                flow,
                output,
                template,
            } => w.set_template(flow, output, template),
            Command::Outputs {
                flow,
                remove,
                add,
                done,
            } => {
                for slot in remove {
                    w.remove_output(flow, slot);
                }
                for (slot, spec) in add {
                    if let Err(e) = w.add_output(flow, slot, spec) {
                        warn!("XDP worker: adding an output: {e}");
                    }
                }
                if let Some(p) = publisher {
                    p.publish(w.flow_counters());
                }
                let _ = done.send(());
            }
            Command::AddPort {
                ingress,
                queue,
                egress: e,
                socket,
                sizes,
                port,
                done,
            } => {
                let added = if w.tx().len() == port {
                    add_port(w, socket, &mut ports.own_tx, &ingress, queue, &e, sizes)
                } else {
                    Err(format!(
                        "the worker has {} TX ports, {port} were expected",
                        w.tx().len()
                    ))
                };
                if added.is_ok() {
                    ports.egress.push(e.name);
                }
                let _ = done.send(added);
            }
            Command::Flows { remove, add, done } => {
                for id in remove {
                    w.remove_flow(id);
                }
                for (id, slot, spec) in add {
                    match w.add_flow(id, spec) {
                        Ok(()) => {
                            if let Some(p) = publisher {
                                p.add_flow(slot);
                            }
                        }
                        Err(e) => warn!("XDP worker: adding a flow: {e}"),
                    }
                }
                if let Some(p) = publisher {
                    p.publish(w.flow_counters());
                }
                let _ = done.send(());
            }
        }
    }
}

/// Binds a TX socket on `egress` (`socket`; `None`: the ingress socket's
/// own TX ring, `own_tx`) and adds it as the worker's next port, on busy
/// polling when the worker's socket is.
fn add_port(
    w: &mut XdpWorker,
    socket: Option<OwnedFd>,
    own_tx: &mut Option<TxSocket>,
    ingress: &str,
    queue: u32,
    egress: &Interface,
    sizes: RingSizes,
) -> Result<(), String> {
    let mut tx = match socket {
        Some(fd) => super::queue::bind_port(w.umem(), Some(fd), ingress, queue, egress, sizes)
            .map_err(|e| e.to_string())?,
        None => own_tx
            .take()
            .ok_or("the ingress socket's TX ring is a port already")?,
    };
    if let Some(bp) = w.rx().busy_poll()
        && let Err(e) = tx.set_busy_poll(bp)
    {
        warn!(
            "AF_XDP {ingress} queue {queue}: busy polling refused on the TX socket of {} ({e}); \
             it stays on need_wakeup",
            egress.name
        );
    }
    w.add_port(tx);
    Ok(())
}

/// What a worker thread needs besides its worker.
pub(super) struct WorkerCtx {
    /// `in0 queue 0`, for the log.
    pub(super) name: String,
    pub(super) stop: Arc<AtomicBool>,
    /// Changes applied between two polls.
    pub(super) commands: Receiver<Command>,
    /// Where the worker's flow counters go.
    pub(super) publisher: Publisher,
    pub(super) snap: Arc<Mutex<XdpQueueSnapshot>>,
    /// Its TX ports' names, and the ingress socket's spare TX ring.
    pub(super) ports: Ports,
}

/// Runs `w` until the stop flag; see the module documentation.
pub(super) fn run_worker(mut w: XdpWorker, mut ctx: WorkerCtx) {
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
        crate::engine::stall_on_purpose(&ctx.stop);
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
            ctx.publisher.publish(w.flow_counters());
            apply_commands(&mut w, &ctx.commands, Some(&ctx.publisher), &mut ctx.ports);
            if stopping || last_kernel.elapsed() >= KERNEL_STATS_EVERY {
                kernel_snapshot(&w, &ctx);
                last_kernel = Instant::now();
            }
            last_publish = Instant::now();
        }
        if stopping {
            // The socket is out of XSKS by now: take what is left in the
            // RX ring, and the replicas counted as sent are in TX rings:
            // let the kernel send them (copy mode sends from the wakeup)
            // before the sockets close.
            let deadline = Instant::now() + DRAIN;
            while Instant::now() < deadline {
                let r = w.poll();
                if r.received == 0 && w.replicas_in_flight() == 0 {
                    break;
                }
                if r.received == 0 && r.completed == 0 {
                    std::thread::sleep(Duration::from_micros(200));
                }
            }
            w.finish_health();
            ctx.publisher.publish(w.flow_counters());
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
    let in_flight = ("replicas_in_flight", w.replicas_in_flight() as u64);
    let worker: BTreeMap<String, u64> = w
        .counters()
        .fields()
        .into_iter()
        .chain([in_flight])
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
    let rx_socket = xdp_stats(w.rx().kernel_stats());
    let tx_sockets = w
        .tx()
        .iter()
        .zip(&ctx.ports.egress)
        .map(|(t, name)| (name.clone(), xdp_stats(t.kernel_stats())))
        .collect();
    let mut snap = ctx.snap.lock().unwrap_or_else(|e| e.into_inner());
    snap.worker = worker;
    snap.rx_socket = rx_socket;
    snap.tx_sockets = tx_sockets;
}
