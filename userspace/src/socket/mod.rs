//! The fallback engine on ordinary UDP sockets.
//!
//! Contract: [`SocketEngine::start`] opens, binds and joins every socket of
//! the plan before it returns (an error names the flow, output, interface
//! and call), then runs one worker thread per flow until the stop flag is
//! set (checked at least every 100 ms). Per flow: one receive socket bound
//! to `group:port` on the ingress interface (or its VLAN sub-interface),
//! `IP(V6)_MULTICAST_ALL` off so only the exact group on that interface
//! reaches it, any-source or source-specific membership, and a userspace
//! check of the sender. Datagrams come in by `recvmmsg` batches (UDP GRO
//! when the kernel accepts it) and go out by `sendmmsg` on one connected,
//! non-blocking socket per output, as UDP GSO runs where possible.
//!
//! It never blocks on an output and never lets one output's trouble reach
//! another: every replica ends in `sent` or in one drop reason of its own
//! output ([`crate::stats`]). Per-packet trouble is counted, not logged;
//! capability downgrades are logged once.

mod batch;

use std::io::{self, IoSlice, IoSliceMut};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use log::{debug, info, warn};
use nix::errno::Errno;
use nix::sys::socket::{
    ControlMessage, ControlMessageOwned, MsgFlags, MultiHeaders, SockaddrStorage, recvmmsg,
    sendmmsg, setsockopt, sockopt,
};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use crate::membership::{self, v6_scope};
use crate::plan::{FlowPlan, OutputKind, OutputPlan, Plan};
use crate::stats::{DropReason, FlowCounters, FlowStats, OutputCounters, Stats};

pub use batch::{GSO_MAX_BYTES, GSO_MAX_SEGMENTS};

/// How often a worker wakes up to look at the stop flag when no traffic comes.
pub const STOP_POLL: Duration = Duration::from_millis(100);
/// One receive slot: room for any UDP datagram, or a full GRO train.
const SLOT: usize = 65_536;
/// Receive buffer requested per flow (forced when privileged).
const RCVBUF: usize = 8 << 20;
/// Send buffer requested per output (forced when privileged).
const SNDBUF: usize = 4 << 20;

/// Why the engine could not start or stopped abnormally.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Join(#[from] membership::Error),
    #[error("flow {flow:?}, output {output:?} ({dest}): {op}: {source}")]
    Output {
        flow: String,
        output: String,
        dest: SocketAddr,
        op: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("flow {flow:?}: starting its worker thread: {source}")]
    Spawn {
        flow: String,
        #[source]
        source: io::Error,
    },
    #[error("flow {flow:?}: worker thread panicked")]
    Panicked { flow: String },
}

/// Kernel capabilities probed once per engine.
#[derive(Debug, Clone, Copy)]
pub struct Capabilities {
    /// `UDP_SEGMENT` is known to the kernel.
    pub gso: bool,
}

impl Capabilities {
    /// Probes on a throw-away socket and logs the outcome once.
    pub fn probe() -> Self {
        let gso = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).and_then(|s| {
            nix::sys::socket::getsockopt(&s, sockopt::UdpGsoSegment).map_err(io::Error::from)
        });
        match gso {
            Ok(_) => {
                info!(
                    "socket engine: UDP GSO available: equal-size datagrams leave as one send per output"
                );
                Capabilities { gso: true }
            }
            Err(e) => {
                warn!(
                    "socket engine: UDP GSO not available ({e}); sending one datagram per message"
                );
                Capabilities { gso: false }
            }
        }
    }
}

/// A running socket engine: one worker thread per flow.
#[derive(Debug)]
pub struct SocketEngine {
    workers: Vec<(String, JoinHandle<()>)>,
}

impl SocketEngine {
    /// Opens, binds and joins every socket of `plan`, then starts the
    /// workers. When this returns `Ok`, every membership is in place.
    /// `stats` must have been built from the same plan.
    pub fn start(plan: &Plan, stats: Arc<Stats>, stop: Arc<AtomicBool>) -> Result<Self, Error> {
        assert_eq!(
            plan.flows.len(),
            stats.flows.len(),
            "stats built from another plan"
        );
        let caps = Capabilities::probe();
        let batch = plan.batch_size.clamp(1, 1024);
        let mut gro_logged = false;
        let mut prepared = Vec::with_capacity(plan.flows.len());
        for (index, flow) in plan.flows.iter().enumerate() {
            let rx = open_receive(flow)?;
            if !rx.gro && !gro_logged {
                info!(
                    "socket engine: UDP GRO not accepted by the kernel; receiving one datagram per slot"
                );
                gro_logged = true;
            }
            let outputs = flow
                .outputs
                .iter()
                .map(|o| open_output(flow, o, caps))
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
            prepared.push(Worker::new(
                index,
                flow,
                rx,
                outputs,
                batch,
                stats.clone(),
                stop.clone(),
            ));
        }
        let mut workers = Vec::with_capacity(prepared.len());
        for w in prepared {
            let name = w.flow_name.clone();
            let handle = std::thread::Builder::new()
                .name(format!("fanout-{}", name))
                .spawn(move || w.run())
                .map_err(|source| Error::Spawn {
                    flow: name.clone(),
                    source,
                })?;
            workers.push((name, handle));
        }
        Ok(SocketEngine { workers })
    }

    /// Whether a worker has ended (normally only after the stop flag; before
    /// it, a worker ends only by panicking, and the caller should stop).
    pub fn any_finished(&self) -> bool {
        self.workers.iter().any(|(_, h)| h.is_finished())
    }

    /// Waits for every worker (they stop when the stop flag is set).
    pub fn join(self) -> Result<(), Error> {
        let mut result = Ok(());
        for (flow, handle) in self.workers {
            if handle.join().is_err() && result.is_ok() {
                result = Err(Error::Panicked { flow });
            }
        }
        result
    }
}

/// The receive side of a flow, ready to run.
#[derive(Debug)]
struct ReceiveSocket {
    sock: Socket,
    iface: String,
    gro: bool,
}

/// Opens `flow`'s joined socket ([`membership::join`]) and makes it a
/// receive socket: a large receive buffer, a timeout of [`STOP_POLL`] so
/// the worker sees the stop flag, and UDP GRO where the kernel accepts it.
fn open_receive(flow: &FlowPlan) -> Result<ReceiveSocket, Error> {
    let membership::Joined { sock, iface, .. } = membership::join(flow)?;
    if setsockopt(&sock, sockopt::RcvBufForce, &RCVBUF).is_err() {
        let _ = sock.set_recv_buffer_size(RCVBUF);
    }
    sock.set_read_timeout(Some(STOP_POLL))
        .map_err(|source| membership::Error::Receive {
            flow: flow.name.clone(),
            iface: iface.clone(),
            op: "SO_RCVTIMEO",
            source,
        })?;
    let gro = setsockopt(&sock, sockopt::UdpGroSegment, &true).is_ok();
    Ok(ReceiveSocket { sock, iface, gro })
}

/// One output's socket and its send-side state.
#[derive(Debug)]
struct OutputSocket {
    sock: Socket,
    name: String,
    /// Largest GSO segment this output may use; 0 when GSO is off for it.
    gso_max_seg: usize,
    gso_logged: bool,
}

fn open_output(flow: &FlowPlan, o: &OutputPlan, caps: Capabilities) -> Result<OutputSocket, Error> {
    let err = |op: &'static str| {
        let flow = flow.name.clone();
        let output = o.name.clone();
        let dest = o.dest;
        move |source: io::Error| Error::Output {
            flow,
            output,
            dest,
            op,
            source,
        }
    };
    let domain = if o.dest.is_ipv4() {
        Domain::IPV4
    } else {
        Domain::IPV6
    };
    let sock = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP)).map_err(err("socket"))?;
    sock.set_nonblocking(true).map_err(err("O_NONBLOCK"))?;
    if let Some(iface) = &o.interface {
        sock.bind_device(Some(iface.name.as_bytes()))
            .map_err(err("SO_BINDTODEVICE"))?;
    }
    match o.dest.ip() {
        IpAddr::V4(_) => {
            sock.set_ttl_v4(u32::from(o.ttl)).map_err(err("IP_TTL"))?;
            if o.kind == OutputKind::Multicast || o.dest.ip().is_multicast() {
                sock.set_multicast_ttl_v4(u32::from(o.ttl))
                    .map_err(err("IP_MULTICAST_TTL"))?;
                sock.set_multicast_loop_v4(false)
                    .map_err(err("IP_MULTICAST_LOOP=0"))?;
                // SO_BINDTODEVICE above already fixes the egress interface;
                // IP_MULTICAST_IF is said too where the interface has an address.
                if let Some(addr) = o.interface.as_ref().and_then(|i| i.ipv4.first()) {
                    sock.set_multicast_if_v4(addr)
                        .map_err(err("IP_MULTICAST_IF"))?;
                }
            }
        }
        IpAddr::V6(_) => {
            sock.set_only_v6(true).map_err(err("IPV6_V6ONLY"))?;
            sock.set_unicast_hops_v6(u32::from(o.ttl))
                .map_err(err("IPV6_UNICAST_HOPS"))?;
            if o.kind == OutputKind::Multicast || o.dest.ip().is_multicast() {
                sock.set_multicast_hops_v6(u32::from(o.ttl))
                    .map_err(err("IPV6_MULTICAST_HOPS"))?;
                sock.set_multicast_loop_v6(false)
                    .map_err(err("IPV6_MULTICAST_LOOP=0"))?;
                if let Some(iface) = &o.interface {
                    sock.set_multicast_if_v6(iface.index)
                        .map_err(err("IPV6_MULTICAST_IF"))?;
                }
            }
        }
    }
    if let Some(port) = o.source_port {
        // Several outputs may share a source port; each is connected to its
        // own destination, so the kernel keeps them apart.
        sock.set_reuse_address(true).map_err(err("SO_REUSEADDR"))?;
        let any: IpAddr = if o.dest.is_ipv4() {
            Ipv4Addr::UNSPECIFIED.into()
        } else {
            Ipv6Addr::UNSPECIFIED.into()
        };
        sock.bind(&SockAddr::from(SocketAddr::new(any, port)))
            .map_err(err("bind to the source port"))?;
    }
    if setsockopt(&sock, sockopt::SndBufForce, &SNDBUF).is_err() {
        let _ = sock.set_send_buffer_size(SNDBUF);
    }
    let dest = match o.dest {
        SocketAddr::V6(d) => {
            let index = o.interface.as_ref().map_or(0, |i| i.index);
            SocketAddr::V6(SocketAddrV6::new(
                *d.ip(),
                d.port(),
                0,
                v6_scope(d.ip(), index),
            ))
        }
        d => d,
    };
    sock.connect(&SockAddr::from(dest))
        .map_err(err("connect"))?;
    Ok(OutputSocket {
        sock,
        name: o.name.clone(),
        gso_max_seg: if caps.gso { usize::MAX } else { 0 },
        gso_logged: false,
    })
}

/// What one receive slot held.
#[derive(Debug, Clone, Copy)]
struct RecvMeta {
    len: usize,
    src: Option<IpAddr>,
    gro_seg: Option<usize>,
    truncated: bool,
}

/// Reuses a vector's allocation for another element type of the same size
/// (the standard library collects in place): keeps borrowed `IoSlice`s out
/// of the per-batch allocation budget without `unsafe`.
fn recycle<T, U>(mut v: Vec<T>) -> Vec<U> {
    v.clear();
    v.into_iter()
        .map(|_| -> U { unreachable!("the vector was cleared") })
        .collect()
}

/// The per-flow loop and its preallocated state.
struct Worker {
    flow_index: usize,
    flow_name: String,
    source: Option<IpAddr>,
    rx: ReceiveSocket,
    outputs: Vec<OutputSocket>,
    batch: usize,
    stats: Arc<Stats>,
    stop: Arc<AtomicBool>,
    bufs: Vec<u8>,
    no_addrs: Vec<Option<()>>,
}

/// The `sendmmsg`/`recvmmsg` headers of a worker (not `Send`: they hold raw
/// pointers, so each worker thread builds its own).
struct Headers {
    rx: MultiHeaders<SockaddrStorage>,
    tx_plain: MultiHeaders<()>,
    tx_gso: MultiHeaders<()>,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("flow", &self.flow_name)
            .finish_non_exhaustive()
    }
}

/// Storage reused from batch to batch (vectors of borrowed slices are
/// recycled through [`recycle`]).
#[derive(Default)]
struct Scratch {
    metas: Vec<RecvMeta>,
    dgrams: Vec<std::ops::Range<usize>>,
    lens: Vec<usize>,
    msgs: Vec<batch::Msg>,
    outcome: Vec<Option<Errno>>,
}

fn rx_headers(batch: usize, gro: bool) -> MultiHeaders<SockaddrStorage> {
    MultiHeaders::preallocate(batch, gro.then(|| nix::cmsg_space!(i32)))
}

impl Worker {
    fn new(
        flow_index: usize,
        flow: &FlowPlan,
        rx: ReceiveSocket,
        outputs: Vec<OutputSocket>,
        batch: usize,
        stats: Arc<Stats>,
        stop: Arc<AtomicBool>,
    ) -> Self {
        Worker {
            flow_index,
            flow_name: flow.name.clone(),
            source: flow.source,
            rx,
            outputs,
            batch,
            stats,
            stop,
            bufs: vec![0; batch * SLOT],
            no_addrs: vec![None; batch],
        }
    }

    fn flow_stats(&self) -> &FlowStats {
        &self.stats.flows[self.flow_index]
    }

    fn run(mut self) {
        let mut s = Scratch::default();
        let mut h = Headers {
            rx: rx_headers(self.batch, self.rx.gro),
            tx_plain: MultiHeaders::preallocate(self.batch, None),
            tx_gso: MultiHeaders::preallocate(self.batch, Some(nix::cmsg_space!(u16))),
        };
        let mut tx_iov: Vec<IoSlice<'static>> = Vec::new();
        let mut tx_msgs: Vec<&'static [IoSlice<'static>]> = Vec::new();
        let mut tx_singles: Vec<&'static [IoSlice<'static>]> = Vec::new();
        let mut last_rx_error: Option<Errno> = None;
        let mut gro_seen = false;
        while !self.stop.load(Ordering::Relaxed) {
            s.metas.clear();
            match self.receive(&mut h.rx, &mut s.metas) {
                Ok(()) => {}
                Err(Errno::EAGAIN | Errno::EINTR) => continue,
                Err(e) => {
                    if last_rx_error != Some(e) {
                        warn!(
                            "socket engine: flow {:?}: recvmmsg failed: {e}",
                            self.flow_name
                        );
                        last_rx_error = Some(e);
                    }
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                }
            }
            if !gro_seen
                && let Some(m) = s
                    .metas
                    .iter()
                    .find(|m| m.gro_seg.is_some_and(|g| m.len > g))
            {
                info!(
                    "socket engine: flow {:?}: the kernel coalesces with UDP GRO \
                     (first train: {} bytes in {}-byte datagrams); splitting trains back",
                    self.flow_name,
                    m.len,
                    m.gro_seg.unwrap_or(0)
                );
                gro_seen = true;
            }
            classify(
                &s.metas,
                self.source,
                &self.flow_stats().counters,
                &mut s.dgrams,
            );
            if s.dgrams.is_empty() {
                continue;
            }
            s.lens.clear();
            s.lens.extend(s.dgrams.iter().map(|r| r.len()));
            batch::plan_messages(&s.lens, GSO_MAX_SEGMENTS, GSO_MAX_BYTES, &mut s.msgs);

            let mut iov: Vec<IoSlice<'_>> = recycle(std::mem::take(&mut tx_iov));
            iov.extend(s.dgrams.iter().map(|r| IoSlice::new(&self.bufs[r.clone()])));
            let mut msgs: Vec<&[IoSlice<'_>]> = recycle(std::mem::take(&mut tx_msgs));
            msgs.extend(s.msgs.iter().map(|m| &iov[m.datagrams()]));
            let mut singles: Vec<&[IoSlice<'_>]> = recycle(std::mem::take(&mut tx_singles));
            singles.extend(iov.chunks(1));

            let flow = &self.stats.flows[self.flow_index];
            let mut tx = Tx {
                plain: &mut h.tx_plain,
                gso: &mut h.tx_gso,
                no_addrs: &self.no_addrs,
                outcome: &mut s.outcome,
            };
            for (out, stats) in self.outputs.iter_mut().zip(&flow.outputs) {
                tx.send_batch(out, &stats.counters, &s.msgs, &s.lens, &msgs, &singles);
            }
            tx_singles = recycle(singles);
            tx_msgs = recycle(msgs);
            tx_iov = recycle(iov);
        }
        debug!("socket engine: flow {:?}: worker stopped", self.flow_name);
    }

    /// One `recvmmsg` (blocks up to [`STOP_POLL`] for the first datagram,
    /// then takes what is queued, up to the batch size).
    ///
    /// Allocates per batch (never per datagram): the iovec list, and with
    /// GRO fresh headers, because nix's `recvmmsg` does not restore
    /// `msg_controllen`, which the kernel shrinks to what it wrote.
    fn receive(
        &mut self,
        hdrs: &mut MultiHeaders<SockaddrStorage>,
        metas: &mut Vec<RecvMeta>,
    ) -> Result<(), Errno> {
        if self.rx.gro {
            *hdrs = rx_headers(self.batch, true);
        }
        let mut iovs: Vec<[IoSliceMut<'_>; 1]> = self
            .bufs
            .chunks_mut(SLOT)
            .map(|c| [IoSliceMut::new(c)])
            .collect();
        let fd: RawFd = self.rx.sock.as_raw_fd();
        let result = recvmmsg(fd, hdrs, iovs.iter_mut(), MsgFlags::MSG_WAITFORONE, None);
        match result {
            Ok(msgs) => {
                for m in msgs {
                    let src = m.address.and_then(|a| {
                        a.as_sockaddr_in()
                            .map(|a| IpAddr::V4(a.ip()))
                            .or_else(|| a.as_sockaddr_in6().map(|a| IpAddr::V6(a.ip())))
                    });
                    let mut gro_seg = None;
                    if let Ok(cmsgs) = m.cmsgs() {
                        for c in cmsgs {
                            if let ControlMessageOwned::UdpGroSegments(seg) = c {
                                gro_seg = usize::try_from(seg).ok();
                            }
                        }
                    }
                    metas.push(RecvMeta {
                        len: m.bytes,
                        src,
                        gro_seg,
                        truncated: m
                            .flags
                            .intersects(MsgFlags::MSG_TRUNC | MsgFlags::MSG_CTRUNC),
                    });
                }
                Ok(())
            }
            Err(e) => Err(e),
        }
    }
}

/// Turns received slots (slot `i` at `i * SLOT` in the buffer) into the
/// ranges of the datagrams to replicate, counting the rejected ones in
/// `flow`: truncated slots are malformed, and with a configured `source`
/// every datagram from another sender is source-rejected.
fn classify(
    metas: &[RecvMeta],
    source: Option<IpAddr>,
    flow: &FlowCounters,
    dgrams: &mut Vec<std::ops::Range<usize>>,
) {
    dgrams.clear();
    let (mut rejected, mut malformed, mut bytes) = (0u64, 0u64, 0u64);
    for (slot, m) in metas.iter().enumerate() {
        let base = slot * SLOT;
        if m.truncated || m.len > SLOT {
            malformed += 1;
            continue;
        }
        if source.is_some_and(|want| m.src != Some(want)) {
            // A GRO train comes from one sender: all its datagrams go.
            let datagrams = m
                .gro_seg
                .filter(|s| *s > 0)
                .map_or(1, |seg| m.len.div_ceil(seg).max(1));
            rejected += datagrams as u64;
            continue;
        }
        batch::split_gro(base, m.len, m.gro_seg, dgrams);
        bytes += m.len as u64;
    }
    if rejected > 0 {
        flow.add_source_rejected(rejected);
    }
    if malformed > 0 {
        flow.add_malformed(malformed);
    }
    if !dgrams.is_empty() {
        flow.add_received(dgrams.len() as u64, bytes);
    }
}

/// The send-side scratch of one worker, borrowed for one batch.
struct Tx<'w> {
    plain: &'w mut MultiHeaders<()>,
    gso: &'w mut MultiHeaders<()>,
    no_addrs: &'w [Option<()>],
    outcome: &'w mut Vec<Option<Errno>>,
}

impl Tx<'_> {
    /// Sends one batch to one output and accounts for every replica.
    fn send_batch(
        &mut self,
        out: &mut OutputSocket,
        counters: &OutputCounters,
        msgs: &[batch::Msg],
        lens: &[usize],
        msg_iovs: &[&[IoSlice<'_>]],
        singles: &[&[IoSlice<'_>]],
    ) {
        let fd = out.sock.as_raw_fd();
        let mut i = 0;
        while i < msgs.len() {
            let gso_key =
                |m: &batch::Msg| (m.count > 1 && m.seg <= out.gso_max_seg).then_some(m.seg);
            let key = gso_key(&msgs[i]);
            let mut j = i + 1;
            while j < msgs.len() && gso_key(&msgs[j]) == key {
                j += 1;
            }
            match key {
                None => {
                    let dg = msgs[i].first..msgs[j - 1].datagrams().end;
                    self.send_plain(fd, counters, lens, dg, singles);
                }
                Some(seg) => {
                    let seg16 = u16::try_from(seg).unwrap_or(u16::MAX);
                    sendmmsg_all(
                        fd,
                        self.gso,
                        &msg_iovs[i..j],
                        Some(seg16),
                        self.no_addrs,
                        self.outcome,
                    );
                    for k in 0..self.outcome.len() {
                        let m = msgs[i + k];
                        match self.outcome[k] {
                            None => counters.add_sent(m.count as u64, m.bytes as u64),
                            Some(
                                e @ (Errno::EIO
                                | Errno::EINVAL
                                | Errno::EMSGSIZE
                                | Errno::EOPNOTSUPP),
                            ) => {
                                // GSO refused for this output: degrade once, loudly,
                                // and send these datagrams one by one.
                                out.gso_max_seg = if e == Errno::EMSGSIZE { m.seg - 1 } else { 0 };
                                if !out.gso_logged {
                                    warn!(
                                        "socket engine: output {:?}: UDP GSO send of {}-byte segments refused ({e}); \
                                         {}",
                                        out.name,
                                        m.seg,
                                        if e == Errno::EMSGSIZE {
                                            "sending datagrams of that size and larger one by one"
                                        } else {
                                            "sending one datagram per message from now on"
                                        }
                                    );
                                    out.gso_logged = true;
                                }
                                let mut saved = std::mem::take(self.outcome);
                                self.send_plain(fd, counters, lens, m.datagrams(), singles);
                                std::mem::swap(self.outcome, &mut saved);
                            }
                            Some(e) => counters
                                .add_dropped(DropReason::from_errno(e as i32), m.count as u64),
                        }
                    }
                }
            }
            i = j;
        }
    }

    /// Sends datagrams `dg` one per message.
    fn send_plain(
        &mut self,
        fd: RawFd,
        counters: &OutputCounters,
        lens: &[usize],
        dg: std::ops::Range<usize>,
        singles: &[&[IoSlice<'_>]],
    ) {
        sendmmsg_all(
            fd,
            self.plain,
            &singles[dg.clone()],
            None,
            self.no_addrs,
            self.outcome,
        );
        let (mut sent, mut bytes) = (0u64, 0u64);
        for (k, r) in self.outcome.iter().enumerate() {
            match r {
                None => {
                    sent += 1;
                    bytes += lens[dg.start + k] as u64;
                }
                Some(e) => counters.add_dropped(DropReason::from_errno(*e as i32), 1),
            }
        }
        if sent > 0 {
            counters.add_sent(sent, bytes);
        }
    }
}

/// Sends every message of `iovs` on the connected socket `fd` with
/// `sendmmsg(MSG_DONTWAIT)`, in chunks of the header capacity, recording one
/// outcome per message in `outcome` (`None` = sent). A failed message is
/// skipped and the rest retried; on EAGAIN the remaining messages are
/// recorded as would-block without further calls: the loop never waits.
fn sendmmsg_all(
    fd: RawFd,
    hdrs: &mut MultiHeaders<()>,
    iovs: &[&[IoSlice<'_>]],
    gso: Option<u16>,
    no_addrs: &[Option<()>],
    outcome: &mut Vec<Option<Errno>>,
) {
    outcome.clear();
    let cap = no_addrs.len().max(1);
    let mut idx = 0;
    while idx < iovs.len() {
        let end = (idx + cap).min(iovs.len());
        let chunk = &iovs[idx..end];
        let addrs = &no_addrs[..end - idx];
        let result = match gso {
            Some(seg) => {
                let cmsg = [ControlMessage::UdpGsoSegments(&seg)];
                sendmmsg(fd, hdrs, chunk.iter(), addrs, cmsg, MsgFlags::MSG_DONTWAIT)
                    .map(|r| r.count())
            }
            None => {
                let cmsg: [ControlMessage<'_>; 0] = [];
                sendmmsg(fd, hdrs, chunk.iter(), addrs, cmsg, MsgFlags::MSG_DONTWAIT)
                    .map(|r| r.count())
            }
        };
        match result {
            Ok(0) => {
                outcome.push(Some(Errno::UnknownErrno));
                idx += 1;
            }
            Ok(n) => {
                outcome.extend(std::iter::repeat_n(None, n));
                idx += n;
            }
            Err(Errno::EINTR) => {}
            Err(Errno::EAGAIN) => {
                outcome.extend(std::iter::repeat_n(Some(Errno::EAGAIN), iovs.len() - idx));
                idx = iovs.len();
            }
            Err(e) => {
                outcome.push(Some(e));
                idx += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{Interface, Mode};
    use std::net::UdpSocket;

    fn lo() -> Interface {
        Interface {
            name: "lo".into(),
            index: nix::net::if_::if_nametoindex("lo").unwrap(),
            mtu: 65536,
            mac: None,
            ipv4: vec![Ipv4Addr::LOCALHOST],
            ipv6: vec![],
        }
    }

    #[test]
    fn classify_counts_rejected_malformed_and_splits_gro() {
        let good: IpAddr = "10.0.0.1".parse().unwrap();
        let bad: IpAddr = "10.0.0.9".parse().unwrap();
        let meta = |len, src, gro_seg, truncated| RecvMeta {
            len,
            src: Some(src),
            gro_seg,
            truncated,
        };
        let metas = [
            meta(100, good, None, false),
            meta(3000, bad, Some(1000), false), // a GRO train of 3 from the wrong sender
            meta(65_536, good, None, true),     // truncated
            meta(2500, good, Some(1000), false), // a GRO train of 3 (1000, 1000, 500)
            meta(7, bad, None, false),
        ];
        let counters = FlowCounters::default();
        let mut dgrams = Vec::new();
        classify(&metas, Some(good), &counters, &mut dgrams);
        assert_eq!(
            dgrams,
            vec![
                0..100,
                3 * SLOT..3 * SLOT + 1000,
                3 * SLOT + 1000..3 * SLOT + 2000,
                3 * SLOT + 2000..3 * SLOT + 2500
            ]
        );
        let mut stats = Stats::for_plan(
            &Plan {
                mode: Mode::Socket,
                batch_size: 1,
                flows: vec![],
            },
            "socket",
        );
        stats.flows.push(FlowStats {
            name: "f".into(),
            counters,
            outputs: vec![],
        });
        let snap = stats.snapshot();
        let f = &snap.flows[0];
        assert_eq!(
            (f.received, f.received_bytes, f.source_rejected, f.malformed),
            (4, 2600, 4, 1)
        );

        // Without a configured source every sender is accepted.
        let counters = FlowCounters::default();
        classify(&metas[..2], None, &counters, &mut dgrams);
        assert_eq!(dgrams.len(), 4);
    }

    /// Unprivileged: the send path over loopback, two outputs, one of which
    /// has no receiver (ECONNREFUSED after the first ICMP): the other output
    /// gets every datagram, and both balance.
    #[test]
    fn send_path_accounts_every_replica() {
        let rx_a = UdpSocket::bind("127.0.0.1:0").unwrap();
        rx_a.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let gone = UdpSocket::bind("127.0.0.1:0").unwrap();
        let gone_addr = gone.local_addr().unwrap();
        drop(gone);
        let out = |name: &str, dest| OutputPlan {
            name: name.into(),
            kind: OutputKind::Unicast,
            dest,
            interface: None,
            source_port: None,
            ttl: 8,
        };
        let flow = FlowPlan {
            name: "f".into(),
            ingress: lo(),
            group: "239.1.1.1".parse().unwrap(),
            port: 1,
            vlan: None,
            source: None,
            outputs: vec![out("a", rx_a.local_addr().unwrap()), out("gone", gone_addr)],
        };
        let plan = Plan {
            mode: Mode::Socket,
            batch_size: 8,
            flows: vec![flow.clone()],
        };
        let stats = Stats::for_plan(&plan, "socket");
        let caps = Capabilities::probe();
        let mut outs: Vec<OutputSocket> = flow
            .outputs
            .iter()
            .map(|o| open_output(&flow, o, caps).unwrap())
            .collect();

        let mut plain = MultiHeaders::preallocate(4, None);
        let mut gso = MultiHeaders::preallocate(4, Some(nix::cmsg_space!(u16)));
        let no_addrs = vec![None; 4];
        let mut outcome = Vec::new();
        let mut expected = Vec::new();
        for round in 0..5u8 {
            // a batch of 6 equal datagrams plus a short tail, then singles
            let payloads: Vec<Vec<u8>> = (0..7u8)
                .map(|i| vec![round * 10 + i; if i == 6 { 30 } else { 100 }])
                .collect();
            let lens: Vec<usize> = payloads.iter().map(Vec::len).collect();
            let mut msgs = Vec::new();
            batch::plan_messages(&lens, 4, GSO_MAX_BYTES, &mut msgs);
            let iov: Vec<IoSlice<'_>> = payloads.iter().map(|p| IoSlice::new(p)).collect();
            let msg_iovs: Vec<&[IoSlice<'_>]> = msgs.iter().map(|m| &iov[m.datagrams()]).collect();
            let singles: Vec<&[IoSlice<'_>]> = iov.chunks(1).collect();
            stats.flows[0]
                .counters
                .add_received(7, lens.iter().sum::<usize>() as u64);
            let mut tx = Tx {
                plain: &mut plain,
                gso: &mut gso,
                no_addrs: &no_addrs,
                outcome: &mut outcome,
            };
            for (o, st) in outs.iter_mut().zip(&stats.flows[0].outputs) {
                tx.send_batch(o, &st.counters, &msgs, &lens, &msg_iovs, &singles);
            }
            expected.extend(payloads);
            std::thread::sleep(Duration::from_millis(5));
        }
        let mut buf = [0u8; 2048];
        for (i, want) in expected.iter().enumerate() {
            let n = rx_a
                .recv(&mut buf)
                .unwrap_or_else(|e| panic!("datagram {i}: {e}"));
            assert_eq!(&buf[..n], &want[..], "datagram {i}");
        }
        let snap = stats.snapshot();
        snap.check_accounting().unwrap();
        let f = &snap.flows[0];
        assert_eq!(f.outputs[0].sent, 35);
        assert_eq!(f.outputs[0].sent_bytes, 5 * 630);
        assert_eq!(f.outputs[0].dropped_total(), 0);
        assert!(f.outputs[1].dropped(DropReason::Unreachable) > 0, "{snap}");
    }
}
