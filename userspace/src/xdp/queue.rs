//! One rx queue of an ingress interface: its UMEM, its AF_XDP sockets and
//! the [`Worker`] that serves it.
//!
//! Contract: [`build_worker`] maps one UMEM per queue (header-slot frames
//! for every descriptor that can be in flight on its TX rings and on
//! [`SPARE_PORTS`] more added while running ([`bind_port`]), then
//! [`RX_FRAMES`] receive frames that all fit in the fill ring), binds the
//! receiving socket to the queue (zero-copy asked, copy taken when refused,
//! said as [`BindMode`]) with a TX ring of its own, adds one TX socket per
//! egress interface of the queue's flows on the same UMEM (the ingress
//! socket's TX ring when the ingress is also an egress; otherwise that ring
//! is returned aside, for a port added on the ingress while running), sets
//! the wakeup strategy, and builds the worker from
//! the flows' specs with their templates not yet resolved. Every error
//! names the interface and queue.

use std::io;
use std::os::fd::OwnedFd;
use std::path::Path;

use log::{info, warn};

use super::ladder::Refused;
use super::spec as setup;
use super::worker::{self, MAX_INLINE, Worker, WorkerConfig};
use super::xsk::{self, BindMode, BusyPoll, RingSizes, RxSocket, TxSocket, XskUmem};
use crate::plan::{FlowPlan, Interface, Plan};
use crate::rate::SharedLimiter;

/// Receive frames per rx queue (4096 bytes each: 16 MiB), and the fill
/// ring's size: every free receive frame fits in it. The UMEM adds the
/// header-slot frames.
const RX_FRAMES: u32 = 4096;

/// The worker of one rx queue, over the kernel's rings.
pub(super) type XdpWorker = Worker<XskUmem, RxSocket, TxSocket>;

/// The kernel's `kind` (`rx` or `tx`) queues of `ifname`
/// (`/sys/class/net/IF/queues/rx-*`), at least one.
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

/// The egress interfaces of the flows on `ingress`, in TX port order.
pub(super) fn egress_list<'a>(plan: &'a Plan, flows: &[usize]) -> Vec<&'a Interface> {
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

/// Header-slot room for this many egress interfaces beyond those a worker
/// starts with: TX ports added while running ([`bind_port`]) find their
/// slots (4 MiB of UMEM per rx queue). Past it they share the pool, and a
/// replica that finds no slot under overload is counted `no_slot`.
pub(super) const SPARE_PORTS: u32 = 4;

/// The ring sizes of a worker's sockets.
pub(super) fn ring_sizes(plan: &Plan) -> RingSizes {
    RingSizes {
        tx_budget: plan.engine.tx_budget,
        // Room in the fill ring for every receive frame, so that a frame
        // never waits in userspace for a slot there (`fill_short` stays a
        // signal).
        fill: RX_FRAMES,
        ..RingSizes::default()
    }
}

fn xsk_err(ifname: &str, queue: u32) -> impl FnOnce(xsk::Error) -> Refused {
    let ifname = ifname.to_owned();
    move |source| Refused::Xsk {
        ifname,
        queue,
        source,
    }
}

/// A TX socket on `egress` for the worker of `ingress` queue `queue`, on
/// its UMEM (already bound to the ingress queue): on the egress's tx
/// queue `queue` modulo its count. Used at start, and for a port added
/// while running on the `socket` the engine's thread opened
/// ([`xsk::open_socket`]: the worker has no `CAP_NET_RAW`).
pub(super) fn bind_port(
    umem: &XskUmem,
    socket: Option<OwnedFd>,
    ingress: &str,
    queue: u32,
    egress: &Interface,
    sizes: RingSizes,
) -> Result<TxSocket, Refused> {
    let txq = queue_count(&egress.name, "tx").map_err(|source| Refused::Io {
        what: format!("counting the tx queues of {}", egress.name),
        source,
    })?;
    let q = queue % txq;
    let fd = match socket {
        Some(fd) => fd,
        None => xsk::open_socket(egress.index, q).map_err(xsk_err(&egress.name, q))?,
    };
    let t = umem
        .bind_tx(fd, egress.index, q, sizes)
        .map_err(xsk_err(&egress.name, q))?;
    if umem.mode() != Some(BindMode::ZeroCopy) {
        info!(
            "AF_XDP TX {} (from {ingress} queue {queue}): copy mode sends {} descriptors per wakeup{}",
            egress.name,
            t.budget(),
            if t.budget() == xsk::KERNEL_TX_BUDGET {
                " (the kernel's default)"
            } else {
                " (XDP_MAX_TX_SKB_BUDGET)"
            }
        );
    }
    Ok(t)
}

/// One rx queue's worker, as [`build_worker`] makes it.
pub(super) struct Built {
    pub(super) worker: XdpWorker,
    pub(super) mode: BindMode,
    /// The ingress socket's TX ring when no port uses it yet.
    pub(super) own_tx: Option<TxSocket>,
}

/// The UMEM, the sockets and the worker of one rx queue.
pub(super) fn build_worker(
    plan: &Plan,
    iface: &Interface,
    flows: &[usize],
    limiters: &[Option<SharedLimiter>],
    queue: u32,
) -> Result<Built, Refused> {
    let egress = egress_list(plan, flows);
    let sizes = ring_sizes(plan);
    let ports = egress.len() as u32 + SPARE_PORTS;
    // Header slots for every descriptor that can be in a TX ring or its
    // completion ring at once, per port (a slot per replica at most).
    let per_frame = xsk::FRAME_SIZE / worker::DEFAULT_SLOT_SIZE;
    let slot_frames = (ports * (sizes.tx + sizes.completion)).div_ceil(per_frame);
    let mut umem = XskUmem::new(slot_frames + RX_FRAMES).map_err(xsk_err(&iface.name, queue))?;
    let (mut rx, mut own_tx) = umem
        .bind_rx(iface.index, queue, sizes, true)
        .map_err(xsk_err(&iface.name, queue))?;
    let mode = umem.mode().unwrap_or(BindMode::Copy);
    let mut tx = Vec::with_capacity(egress.len());
    for e in &egress {
        if e.index == iface.index {
            tx.push(own_tx.take().ok_or_else(|| Refused::Io {
                what: format!("{}: no TX ring on the ingress socket", e.name),
                source: io::Error::other("missing"),
            })?);
            continue;
        }
        tx.push(bind_port(&umem, None, &iface.name, queue, e, sizes)?);
    }
    let batch = plan.engine.batch_size.clamp(1, 1024);
    set_wakeup(
        &iface.name,
        queue,
        BusyPoll::new(
            plan.engine.busy_poll_us,
            plan.engine.busy_poll_budget,
            batch as u16,
        ),
        &mut rx,
        &mut tx,
        &egress,
    );
    let mut specs = Vec::with_capacity(flows.len());
    for (&f, limiter) in flows.iter().zip(limiters) {
        let flow: &FlowPlan = &plan.flows[f];
        let mut spec = setup::flow_spec(
            flow,
            |i| egress.iter().position(|e| e.index == i.index).unwrap_or(0),
            |_| None,
        )?;
        spec.limiter = limiter.clone();
        specs.push(spec);
    }
    let mut cfg = WorkerConfig::new(batch, slot_frames);
    cfg.inline_max = plan.engine.inline_max.min(MAX_INLINE);
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
    Ok(Built {
        worker,
        mode,
        own_tx,
    })
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
            "AF_XDP {ifname} queue {queue}: wakeups by need_wakeup (busy polling off; [engine] busy_poll_us turns it on)"
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
