//! The per-flow loop of the socket engine: one `recvmmsg` batch (UDP GRO
//! trains split back into datagrams), the sender check, then one
//! [`super::send`] batch per output. The loop allocates per batch, never per
//! datagram; it counts into its own [`FlowCounters`] and publishes them.

use std::io::{IoSlice, IoSliceMut};
use std::net::IpAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError};
use std::time::{Duration, Instant};

use log::{debug, info, warn};
use nix::errno::Errno;
use nix::sys::socket::{ControlMessageOwned, MsgFlags, MultiHeaders, SockaddrStorage, recvmmsg};

use super::batch::{self, GSO_MAX_BYTES, GSO_MAX_SEGMENTS};
use super::open::{OutputSocket, ReceiveSocket};
use super::send::{Tx, TxHeaders};
use crate::engine::PUBLISH_EVERY;
use crate::health::{HealthMode, Payload, StreamHealth};
use crate::plan::FlowPlan;
use crate::rate::Limiter;
use crate::stats::{FlowCounters, OutputCounters, Publisher};

/// One receive slot: room for any UDP datagram, or a full GRO train.
const SLOT: usize = 65_536;

/// What one receive slot held.
#[derive(Debug, Clone, Copy)]
struct RecvMeta {
    len: usize,
    src: Option<IpAddr>,
    gro_seg: Option<usize>,
    /// The received TTL (hop limit); `None` if the kernel did not say.
    ttl: Option<u8>,
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
pub(super) struct Worker {
    flow_name: String,
    source: Option<IpAddr>,
    /// The flow's rate cap (this worker is the flow's only receiver).
    limiter: Option<Limiter>,
    /// The flow's stream-health check (this worker sees all of it).
    health: StreamHealth,
    rx: ReceiveSocket,
    /// Each configured output by its slot (the index of its counters in
    /// `counters.outputs`, which keeps the removed ones' too).
    outputs: Vec<(usize, OutputSocket)>,
    /// Changes from [`super::SocketEngine::apply`], taken between batches.
    commands: Receiver<Command>,
    /// Where to hand the receive socket over when the worker ends on
    /// [`Command::Stop`].
    stopped: Option<SyncSender<ReceiveSocket>>,
    batch: usize,
    /// The flow's counters, this thread's own; published through `publisher`.
    counters: FlowCounters,
    publisher: Publisher,
    stop: Arc<AtomicBool>,
    bufs: Vec<u8>,
    no_addrs: Vec<Option<()>>,
}

/// A change of the running plan for one worker, taken between two
/// batches, acknowledged on `done` once in effect.
#[derive(Debug)]
pub(super) enum Command {
    /// Outputs removed (by slot) and added (with their slot, the next ones
    /// in order), in one step.
    Outputs {
        remove: Vec<usize>,
        add: Vec<(usize, OutputSocket)>,
        done: SyncSender<()>,
    },
    /// The flow was removed: publish the last counters, end, and hand the
    /// receive socket over on `done` (with what is queued in it), for a
    /// flow changed in place to go on from the next datagram.
    Stop { done: SyncSender<ReceiveSocket> },
}

/// The `sendmmsg`/`recvmmsg` headers of a worker (not `Send`: they hold raw
/// pointers, so each worker thread builds its own).
struct Headers {
    rx: MultiHeaders<SockaddrStorage>,
    tx: TxHeaders,
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
    /// Per datagram of `dgrams`: the hops it has left (received TTL - 1).
    ttls: Vec<u8>,
    lens: Vec<usize>,
    msgs: Vec<batch::Msg>,
    outcome: Vec<Option<Errno>>,
}

/// Receive headers with room for the TTL and, with GRO, the segment size.
fn rx_headers(batch: usize, gro: bool) -> MultiHeaders<SockaddrStorage> {
    let space = if gro {
        nix::cmsg_space!(i32, libc::c_int)
    } else {
        nix::cmsg_space!(libc::c_int)
    };
    MultiHeaders::preallocate(batch, Some(space))
}

impl Worker {
    pub(super) fn new(
        flow: &FlowPlan,
        rx: ReceiveSocket,
        outputs: Vec<OutputSocket>,
        batch: usize,
        (publisher, commands): (Publisher, Receiver<Command>),
        stop: Arc<AtomicBool>,
    ) -> Self {
        Worker {
            flow_name: flow.name.clone(),
            source: flow.source,
            limiter: flow.cap.limiter(),
            health: StreamHealth::new(flow.health),
            rx,
            outputs: outputs.into_iter().enumerate().collect(),
            commands,
            stopped: None,
            batch,
            // One flow per worker (the publisher was made for it alone).
            counters: publisher.counters().swap_remove(0),
            publisher,
            stop,
            bufs: vec![0; batch * SLOT],
            no_addrs: vec![None; batch],
        }
    }

    /// Runs until the stop flag; publishes the counters at least every
    /// [`PUBLISH_EVERY`] while busy, whenever a receive times out, and last
    /// when it stops.
    pub(super) fn run(mut self) {
        let mut s = Scratch::default();
        let mut h = Headers {
            rx: rx_headers(self.batch, self.rx.gro),
            tx: TxHeaders::new(self.batch),
        };
        let mut tx_iov: Vec<IoSlice<'static>> = Vec::new();
        let mut tx_msgs: Vec<&'static [IoSlice<'static>]> = Vec::new();
        let mut tx_singles: Vec<&'static [IoSlice<'static>]> = Vec::new();
        let mut last_rx_error: Option<Errno> = None;
        let mut gro_seen = false;
        let mut published = Instant::now();
        while !self.stop.load(Ordering::Relaxed) {
            crate::engine::stall_on_purpose(&self.stop);
            if !self.take_commands() {
                break;
            }
            if published.elapsed() >= PUBLISH_EVERY {
                self.publisher.publish(std::slice::from_ref(&self.counters));
                published = Instant::now();
            }
            s.metas.clear();
            match self.receive(&mut h.rx, &mut s.metas) {
                Ok(()) => {}
                Err(Errno::EAGAIN) => {
                    // Idle for STOP_POLL: what is counted shows now.
                    self.publisher.publish(std::slice::from_ref(&self.counters));
                    published = Instant::now();
                    continue;
                }
                Err(Errno::EINTR) => continue,
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
            let flow = &mut self.counters;
            let limit = self.limiter.as_mut().map(|l| (l, Instant::now()));
            let health = (self.health.mode() != HealthMode::Off)
                .then_some((&mut self.health, &self.bufs[..]));
            classify(
                &s.metas,
                self.source,
                limit,
                health,
                flow,
                &mut s.dgrams,
                &mut s.ttls,
            );
            // One send per run of datagrams with the same hops left (a
            // stream's TTL rarely changes), so a replica's TTL is
            // min(configured, received - 1) datagram by datagram.
            let mut start = 0;
            while start < s.dgrams.len() {
                let ttl_left = s.ttls[start];
                let end = start
                    + s.ttls[start..]
                        .iter()
                        .take_while(|t| **t == ttl_left)
                        .count();
                let run = &s.dgrams[start..end];
                start = end;
                s.lens.clear();
                s.lens.extend(run.iter().map(|r| r.len()));
                batch::plan_messages(&s.lens, GSO_MAX_SEGMENTS, GSO_MAX_BYTES, &mut s.msgs);

                let mut iov: Vec<IoSlice<'_>> = recycle(std::mem::take(&mut tx_iov));
                iov.extend(run.iter().map(|r| IoSlice::new(&self.bufs[r.clone()])));
                let mut msgs: Vec<&[IoSlice<'_>]> = recycle(std::mem::take(&mut tx_msgs));
                msgs.extend(s.msgs.iter().map(|m| &iov[m.datagrams()]));
                let mut singles: Vec<&[IoSlice<'_>]> = recycle(std::mem::take(&mut tx_singles));
                singles.extend(iov.chunks(1));

                let mut tx = Tx {
                    hdrs: &mut h.tx,
                    no_addrs: &self.no_addrs,
                    outcome: &mut s.outcome,
                };
                for (slot, out) in &mut self.outputs {
                    let counters = &mut flow.outputs[*slot];
                    tx.send_batch(out, counters, &s.msgs, &s.lens, &msgs, &singles, ttl_left);
                }
                tx_singles = recycle(singles);
                tx_msgs = recycle(msgs);
                tx_iov = recycle(iov);
            }
        }
        self.health.finish(&mut self.counters.health);
        self.publisher.publish(std::slice::from_ref(&self.counters));
        if let Some(done) = self.stopped.take() {
            let _ = done.send(self.rx);
        }
        debug!("socket engine: flow {:?}: worker stopped", self.flow_name);
    }

    /// Carries out every change waiting in the mailbox (between two
    /// batches: every datagram received so far went to the outputs of
    /// before), publishes, acknowledges. False when the worker is to end.
    fn take_commands(&mut self) -> bool {
        loop {
            match self.commands.try_recv() {
                Ok(Command::Outputs { remove, add, done }) => {
                    let received = self.counters.received;
                    self.outputs.retain(|(slot, _)| !remove.contains(slot));
                    for slot in remove {
                        if let Some(c) = self.counters.outputs.get_mut(slot) {
                            c.left_at = Some(received);
                        }
                    }
                    for (slot, out) in add {
                        // Slots are handed out in order; one never seen
                        // here (a bug) is offered nothing.
                        while self.counters.outputs.len() < slot {
                            let mut gap = OutputCounters::joining_at(received);
                            gap.left_at = Some(received);
                            self.counters.outputs.push(gap);
                        }
                        self.counters
                            .outputs
                            .push(OutputCounters::joining_at(received));
                        self.outputs.push((slot, out));
                    }
                    self.publisher.publish(std::slice::from_ref(&self.counters));
                    let _ = done.send(());
                }
                Ok(Command::Stop { done }) => {
                    self.stopped = Some(done);
                    return false;
                }
                // The engine dropped its end: it is going away.
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => return true,
            }
        }
    }

    /// One `recvmmsg` (blocks up to [`crate::engine::STOP_POLL`] for the first datagram,
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
        // Every batch: the TTL (and GRO) control messages shrink
        // `msg_controllen`.
        *hdrs = rx_headers(self.batch, self.rx.gro);
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
                    let (mut gro_seg, mut ttl) = (None, None);
                    if let Ok(cmsgs) = m.cmsgs() {
                        for c in cmsgs {
                            match c {
                                ControlMessageOwned::UdpGroSegments(seg) => {
                                    gro_seg = usize::try_from(seg).ok();
                                }
                                ControlMessageOwned::Ipv4Ttl(t)
                                | ControlMessageOwned::Ipv6HopLimit(t) => {
                                    ttl = u8::try_from(t).ok();
                                }
                                _ => {}
                            }
                        }
                    }
                    metas.push(RecvMeta {
                        len: m.bytes,
                        src,
                        gro_seg,
                        ttl,
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
/// ranges of the datagrams to replicate and the hops each has left
/// (`ttls`: received TTL - 1), counting the rejected ones in `flow`:
/// truncated slots are malformed, with a configured `source` every
/// datagram from another sender is source-rejected, and one received with
/// TTL (hop limit) <= 1 is TTL-expired (a GRO train shares one TTL); then
/// with a rate cap, each datagram over it (a GRO train's segments one by
/// one) is rate-limited, judged at `now`, the batch's time. With `health`
/// (the checker and the receive buffer), every datagram from the right
/// sender is checked once, TTL-expired and rate-limited ones included.
fn classify(
    metas: &[RecvMeta],
    source: Option<IpAddr>,
    mut limit: Option<(&mut Limiter, Instant)>,
    mut health: Option<(&mut StreamHealth, &[u8])>,
    flow: &mut FlowCounters,
    dgrams: &mut Vec<std::ops::Range<usize>>,
    ttls: &mut Vec<u8>,
) {
    dgrams.clear();
    ttls.clear();
    let (mut rejected, mut malformed, mut expired, mut limited, mut bytes) =
        (0u64, 0u64, 0u64, 0u64, 0u64);
    for (slot, m) in metas.iter().enumerate() {
        let base = slot * SLOT;
        if m.truncated || m.len > SLOT {
            malformed += 1;
            continue;
        }
        // A GRO train comes from one sender with one TTL.
        let datagrams = m
            .gro_seg
            .filter(|s| *s > 0)
            .map_or(1, |seg| m.len.div_ceil(seg).max(1)) as u64;
        if source.is_some_and(|want| m.src != Some(want)) {
            rejected += datagrams;
            continue;
        }
        let first = dgrams.len();
        batch::split_gro(base, m.len, m.gro_seg, dgrams);
        if let Some((checker, buf)) = health.as_mut() {
            for r in &dgrams[first..] {
                if checker.wants() {
                    checker.observe(&Payload::one(&buf[r.clone()]), &mut flow.health);
                }
            }
        }
        if m.ttl.is_some_and(|t| t <= 1) {
            expired += datagrams;
            dgrams.truncate(first);
            continue;
        }
        if let Some((limiter, now)) = limit.as_mut() {
            // Keep the admitted ones, in order.
            let mut kept = first;
            for i in first..dgrams.len() {
                if limiter.admit(*now, dgrams[i].len()) {
                    dgrams.swap(kept, i);
                    kept += 1;
                } else {
                    limited += 1;
                }
            }
            dgrams.truncate(kept);
        }
        ttls.resize(dgrams.len(), m.ttl.map_or(u8::MAX, |t| t - 1));
        bytes += dgrams[first..].iter().map(|r| r.len() as u64).sum::<u64>();
    }
    flow.source_rejected += rejected;
    flow.malformed += malformed;
    flow.ttl_expired += expired;
    flow.rate_limited += limited;
    flow.received += dgrams.len() as u64;
    flow.received_bytes += bytes;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classify_counts_rejected_malformed_and_splits_gro() {
        let good: IpAddr = "10.0.0.1".parse().unwrap();
        let bad: IpAddr = "10.0.0.9".parse().unwrap();
        let meta = |len, src, gro_seg, truncated| RecvMeta {
            len,
            src: Some(src),
            gro_seg,
            ttl: Some(64),
            truncated,
        };
        let metas = [
            meta(100, good, None, false),
            meta(3000, bad, Some(1000), false), // a GRO train of 3 from the wrong sender
            meta(65_536, good, None, true),     // truncated
            meta(2500, good, Some(1000), false), // a GRO train of 3 (1000, 1000, 500)
            meta(7, bad, None, false),
        ];
        let mut f = FlowCounters::default();
        let mut dgrams = Vec::new();
        let mut ttls = Vec::new();
        classify(
            &metas,
            Some(good),
            None,
            None,
            &mut f,
            &mut dgrams,
            &mut ttls,
        );
        assert_eq!(ttls, vec![63; 4]);
        assert_eq!(
            dgrams,
            vec![
                0..100,
                3 * SLOT..3 * SLOT + 1000,
                3 * SLOT + 1000..3 * SLOT + 2000,
                3 * SLOT + 2000..3 * SLOT + 2500
            ]
        );
        assert_eq!(
            (f.received, f.received_bytes, f.source_rejected, f.malformed),
            (4, 2600, 4, 1)
        );

        // Without a configured source every sender is accepted.
        let mut f = FlowCounters::default();
        classify(
            &metas[..2],
            None,
            None,
            None,
            &mut f,
            &mut dgrams,
            &mut ttls,
        );
        assert_eq!(dgrams.len(), 4);

        // TTL like a router: 1 and 0 leave no hop (a train of 3 counts 3);
        // the others carry what they have left; unknown caps nothing.
        let with_ttl = |len, gro_seg, ttl| RecvMeta {
            len,
            src: Some(good),
            gro_seg,
            ttl,
            truncated: false,
        };
        let metas = [
            with_ttl(100, None, Some(1)),
            with_ttl(3000, Some(1000), Some(0)),
            with_ttl(200, None, Some(2)),
            with_ttl(2000, Some(1000), Some(16)),
            with_ttl(50, None, None),
        ];
        let mut f = FlowCounters::default();
        classify(&metas, None, None, None, &mut f, &mut dgrams, &mut ttls);
        assert_eq!(ttls, vec![1, 15, 15, 255]);
        assert_eq!(dgrams.len(), 4);
        assert_eq!((f.received, f.ttl_expired), (4, 4));
    }

    /// A cap judges datagram by datagram, a GRO train's segments too, and
    /// keeps the admitted ones in order; only admitted bytes are received.
    #[test]
    fn classify_limits_each_datagram_of_a_train() {
        let meta = |len, gro_seg, ttl| RecvMeta {
            len,
            src: None,
            gro_seg,
            ttl: Some(ttl),
            truncated: false,
        };
        // A burst of 5 datagrams (max_pps 50: 100 ms holds 5).
        let mut limiter = Limiter::new(crate::rate::RateCap {
            max_pps: Some(50),
            max_bps: None,
        });
        let now = Instant::now();
        let metas = [
            meta(100, None, 1),        // expired: costs no token
            meta(3000, Some(1000), 9), // 3 admitted
            meta(2500, Some(1000), 9), // 2 admitted, the 500 B one not
            meta(10, None, 9),         // limited
        ];
        let (mut f, mut dgrams, mut ttls) = (FlowCounters::default(), Vec::new(), Vec::new());
        classify(
            &metas,
            None,
            Some((&mut limiter, now)),
            None,
            &mut f,
            &mut dgrams,
            &mut ttls,
        );
        assert_eq!(
            dgrams,
            vec![
                SLOT..SLOT + 1000,
                SLOT + 1000..SLOT + 2000,
                SLOT + 2000..SLOT + 3000,
                2 * SLOT..2 * SLOT + 1000,
                2 * SLOT + 1000..2 * SLOT + 2000,
            ]
        );
        assert_eq!(ttls, vec![8; 5]);
        assert_eq!(
            (f.received, f.received_bytes, f.ttl_expired, f.rate_limited),
            (5, 5000, 1, 2)
        );
    }

    /// Stream health sees every datagram from the right sender once, each
    /// segment of a GRO train on its own, TTL-expired ones included; never
    /// a source-rejected or truncated one.
    #[test]
    fn classify_checks_the_health_of_every_datagram_from_the_source() {
        let good: IpAddr = "10.0.0.1".parse().unwrap();
        let bad: IpAddr = "10.0.0.9".parse().unwrap();
        let mut buf = vec![0u8; 5 * SLOT];
        let rtp = |seq: u16| {
            let mut d = vec![0x80, 96];
            d.extend_from_slice(&seq.to_be_bytes());
            d.extend_from_slice(&[0; 4]);
            d.extend_from_slice(&7u32.to_be_bytes());
            d.extend_from_slice(&[0xAB; 88]);
            d
        };
        // Slot 0: a GRO train of seqs 0, 1, 2 (100 bytes each); slot 1: 3
        // with TTL 1; slot 2: 4 from another sender; slot 3: truncated;
        // slot 4: 6 (so 4 and 5 are lost).
        for (slot, seqs) in [
            (0usize, &[0u16, 1, 2][..]),
            (1, &[3]),
            (2, &[4]),
            (3, &[5]),
            (4, &[6]),
        ] {
            let mut at = slot * SLOT;
            for &q in seqs {
                buf[at..at + 100].copy_from_slice(&rtp(q));
                at += 100;
            }
        }
        let meta = |len, src, gro_seg, ttl, truncated| RecvMeta {
            len,
            src: Some(src),
            gro_seg,
            ttl: Some(ttl),
            truncated,
        };
        let metas = [
            meta(300, good, Some(100), 64, false),
            meta(100, good, None, 1, false),
            meta(100, bad, None, 64, false),
            meta(100, good, None, 64, true),
            meta(100, good, None, 64, false),
        ];
        let mut health = StreamHealth::new(HealthMode::Rtp);
        let (mut f, mut dgrams, mut ttls) = (FlowCounters::default(), Vec::new(), Vec::new());
        classify(
            &metas,
            Some(good),
            None,
            Some((&mut health, &buf)),
            &mut f,
            &mut dgrams,
            &mut ttls,
        );
        health.finish(&mut f.health);
        assert_eq!(
            (f.received, f.ttl_expired, f.source_rejected, f.malformed),
            (4, 1, 1, 1)
        );
        assert_eq!(
            (
                f.health.rtp_packets,
                f.health.rtp_lost,
                f.health.rtp_reordered
            ),
            (5, 2, 0)
        );
    }
}
