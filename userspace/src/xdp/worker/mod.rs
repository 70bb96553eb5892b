//! The AF_XDP fan-out worker: the batch loop and frame accounting.
//!
//! A [`Worker`] serves one ingress queue. It owns the UMEM, the ingress
//! socket's RX and fill rings ([`ring::RxPort`]) and one TX socket per egress
//! interface ([`ring::TxPort`], sharing the UMEM). Each [`Worker::poll`]:
//!
//! 1. reaps every completion ring: a header slot goes back to the slot pool,
//!    a received frame loses one reference and, at zero, goes back to the
//!    fill queue;
//! 2. takes a batch from the RX ring and, per packet (a chain of
//!    descriptors), parses the headers in the first buffer
//!    ([`crate::wire::parse_head`]), finds the flow (group, port, innermost
//!    VLAN, then the source for source-specific flows) and, for every output,
//!    writes the replica headers into a header slot (a small slot carved out
//!    of the first `slot_frames` UMEM frames) and stages the chain
//!    `[slot] + payload pieces` pointing into the received frames, taking one
//!    reference per piece; a tiny payload (up to
//!    [`WorkerConfig::inline_max`], and only what fits in the slot behind
//!    the flow's longest header) is instead copied behind the headers, one
//!    descriptor per replica, and its frame is free again at once;
//! 3. hands each TX port its chains and flushes every port once (also those
//!    with nothing new: copy mode sends a bounded number of descriptors per
//!    kick, so a port may still hold descriptors from an earlier poll);
//! 4. gives the free frames to the fill ring and wakes the kernel.
//!
//! Promises: payload bytes are never copied or read, except a tiny payload
//! copied into the header slots as above (architecture.md decision 3); a frame goes back to
//! the fill ring exactly once, after the last descriptor pointing into it has
//! completed (or was refused); a malformed or unmatched packet is counted and
//! its frames recycled in the same poll; a full or refusing TX ring costs
//! only its own replicas (counted as [`DropReason::RingFull`]), never a wait;
//! per output, `sent + dropped == received` after every poll
//! ([`crate::stats`]: the worker counts in the engines' one vocabulary).
//! The loop allocates nothing after [`Worker::new`] and never panics on
//! packet contents or on bad descriptors from the kernel (they are counted).
//!
//! Its parts: [`config`] (geometry, specs, refusals), `frames` (frame and
//! slot accounting), `stage` (chains waiting for a TX port), `replicate`
//! (the per-packet path), `index` (the flow lookup) and [`ring`] (the seam).
//!
//! The worker sees the kernel only through the traits in [`ring`]: one
//! implementation maps real AF_XDP rings and UMEM (`crate::xdp::xsk`), one lives in
//! memory ([`ring::mem`]), so replication, batching and frame recycling are
//! tested and benchmarked without root.

mod config;
mod frames;
mod index;
pub use self::index::{Claim, layout};
mod replicate;
pub mod ring;
mod stage;

pub use self::config::{
    DEFAULT_INLINE_MAX, DEFAULT_SLOT_SIZE, FlowSpec, MAX_INLINE, MAX_RX_CHAIN, MAX_TX_CHAIN,
    OutputSpec, WorkerConfig, WorkerError,
};
pub use self::frames::FrameCensus;
use self::frames::Frames;
use self::index::FlowIndex;
use self::ring::{Desc, RxPort, TxPort, Umem};
use self::stage::Stage;
use std::time::Instant;

use crate::health::StreamHealth;
use crate::rate::SharedLimiter;
use crate::stats::{FlowCounters, FrameCounters};
use crate::wire::{ReplicaTemplate, replica::MAX_HEADER_LEN};

/// Completions reaped per ring read.
const COMPLETION_BATCH: usize = 256;

/// What one [`Worker::poll`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PollResult {
    /// Packets taken from the RX ring.
    pub received: usize,
    /// Addresses reaped from the completion rings.
    pub completed: usize,
}

/// One output as the loop sees it.
#[derive(Debug)]
struct Output {
    /// Where its counters are in the flow's (`FlowCounters::outputs`):
    /// its position at start, the next free one when added while running.
    slot: usize,
    tx: usize,
    /// The egress MTU (see [`OutputSpec::mtu`]).
    mtu: u32,
    /// The longest payload whose replica fits `mtu` with this template's
    /// IP and UDP headers (kept with the template; checked per replica only
    /// for a datagram longer than its flow's `fits_every_mtu`).
    max_payload: u32,
    template: Option<ReplicaTemplate>,
}

impl Output {
    fn new(slot: usize, tx: usize, mtu: u32, template: Option<ReplicaTemplate>) -> Output {
        let mut out = Output {
            slot,
            tx,
            mtu,
            max_payload: 0,
            template: None,
        };
        out.set_template(template);
        out
    }

    fn set_template(&mut self, template: Option<ReplicaTemplate>) {
        self.max_payload = template.as_ref().map_or(0, |t| {
            let headers = u32::try_from(t.ip_len(0)).unwrap_or(u32::MAX);
            self.mtu.saturating_sub(headers)
        });
        self.template = template;
    }
}

#[derive(Debug)]
struct Flow {
    outputs: Vec<Output>,
    /// Longest payload copied behind the headers: `inline_max`, and what
    /// fits in a slot behind the longest header of the flow's outputs.
    inline_limit: u32,
    /// The longest payload every output's egress MTU takes: a datagram up
    /// to it skips the per-replica MTU check (the common case).
    fits_every_mtu: u32,
    /// The rate cap, checked before a datagram is replicated.
    limiter: Option<SharedLimiter>,
    /// The stream-health check, once per datagram before the TTL and the
    /// rate cap.
    health: StreamHealth,
}

impl Flow {
    fn new(
        outputs: Vec<Output>,
        limiter: Option<SharedLimiter>,
        health: crate::health::HealthMode,
        cfg: &WorkerConfig,
    ) -> Self {
        let mut run = Flow {
            outputs,
            inline_limit: 0,
            fits_every_mtu: 0,
            limiter,
            health: StreamHealth::new(health),
        };
        run.derive_limits(cfg);
        run
    }

    /// Recomputes what depends on the outputs' templates.
    fn derive_limits(&mut self, cfg: &WorkerConfig) {
        self.fits_every_mtu = self
            .outputs
            .iter()
            .filter(|o| o.template.is_some())
            .map(|o| o.max_payload)
            .min()
            .unwrap_or(u32::MAX);
        let longest = self
            .outputs
            .iter()
            .filter_map(|o| o.template.as_ref())
            .map(|t| t.header_len() as u32)
            .max()
            .unwrap_or(0);
        self.inline_limit = cfg.inline_max.min(cfg.slot_size - longest);
    }
}

/// The fan-out loop of one ingress queue, generic over the ring seam.
///
/// Owns the UMEM, the ingress [`RxPort`], one [`TxPort`] per egress
/// interface, the frame and header-slot accounting and the counters. Not
/// `Sync`: one thread polls it.
#[derive(Debug)]
pub struct Worker<U, R, T> {
    umem: U,
    rx: R,
    tx: Vec<T>,
    cfg: WorkerConfig,
    frames: Frames,
    flows: Vec<Flow>,
    /// What each flow claims of the traffic, `None` once removed (its id
    /// stays taken: ids are the program's `FLOWS` ids).
    claims: Vec<Option<Claim>>,
    index: FlowIndex,
    counters: Vec<FlowCounters>,
    frame_counters: FrameCounters,
    // Per-poll scratch, allocated once.
    rx_descs: Vec<Desc>,
    held: Vec<u64>,
    payload: Vec<Desc>,
    completions: Vec<u64>,
    stages: Vec<Stage>,
    /// Whether any flow has a rate cap: only then is the clock read, once
    /// per RX batch, into `now`.
    capped: bool,
    clock: fn() -> Instant,
    now: Instant,
}

impl<U: Umem, R: RxPort, T: TxPort> Worker<U, R, T> {
    /// Builds the worker and hands every receive frame to the fill ring
    /// (those that do not fit wait for the next poll).
    pub fn new(
        umem: U,
        rx: R,
        tx: Vec<T>,
        flows: Vec<FlowSpec>,
        cfg: WorkerConfig,
    ) -> Result<Self, WorkerError> {
        let frame_size = umem.frame_size();
        let frame_count = umem.frame_count();
        if cfg.batch_size == 0 {
            return Err(WorkerError::ZeroBatch);
        }
        if !frame_size.is_power_of_two() {
            return Err(WorkerError::BadFrameSize(frame_size));
        }
        if (cfg.slot_size as usize) < MAX_HEADER_LEN
            || cfg.slot_size > frame_size
            || !frame_size.is_multiple_of(cfg.slot_size)
        {
            return Err(WorkerError::BadSlotSize {
                slot_size: cfg.slot_size,
                frame_size,
            });
        }
        if !(1..=MAX_TX_CHAIN).contains(&cfg.max_tx_chain) {
            return Err(WorkerError::BadMaxTxChain(cfg.max_tx_chain));
        }
        if cfg.inline_max > MAX_INLINE {
            return Err(WorkerError::BadInlineMax(cfg.inline_max));
        }
        if cfg.slot_frames == 0 || cfg.slot_frames >= frame_count {
            return Err(WorkerError::BadSlotFrames {
                slot_frames: cfg.slot_frames,
                frame_count,
            });
        }
        let claims: Vec<Claim> = (0u32..)
            .zip(&flows)
            .map(|(id, f)| Claim {
                id,
                group: f.group,
                port: f.port,
                vlan: f.vlan,
                outer_vlan: f.outer_vlan,
                source: f.source,
            })
            .collect();
        let entries = layout(&claims).map_err(|(f, other)| {
            let flow = &flows[f as usize];
            WorkerError::DuplicateFlow {
                flow: f as usize,
                other: other as usize,
                group: flow.group,
                port: flow.port,
                vlan: flow.vlan,
            }
        })?;
        let index = index_of(&entries);
        let mut counters = Vec::with_capacity(flows.len());
        let mut runs = Vec::with_capacity(flows.len());
        let mut capped = false;
        for (f, flow) in flows.into_iter().enumerate() {
            let mut outputs = Vec::with_capacity(flow.outputs.len());
            for (o, out) in flow.outputs.into_iter().enumerate() {
                if out.tx >= tx.len() {
                    return Err(WorkerError::NoSuchPort {
                        flow: f,
                        output: o,
                        tx: out.tx,
                        ports: tx.len(),
                    });
                }
                outputs.push(Output::new(o, out.tx, out.mtu, out.template));
            }
            counters.push(FlowCounters::with_outputs(outputs.len()));
            capped |= flow.limiter.is_some();
            runs.push(Flow::new(outputs, flow.limiter, flow.health, &cfg));
        }
        let stages = (0..tx.len()).map(|_| Stage::for_port(&cfg)).collect();
        let rx_len = cfg.batch_size.max(MAX_RX_CHAIN);
        let mut worker = Self {
            umem,
            rx,
            tx,
            cfg,
            frames: Frames::new(frame_size, frame_count, cfg.slot_frames, cfg.slot_size),
            flows: runs,
            claims: claims.into_iter().map(Some).collect(),
            index,
            counters,
            frame_counters: FrameCounters::default(),
            rx_descs: vec![Desc::default(); rx_len],
            held: Vec::with_capacity(rx_len),
            payload: Vec::with_capacity(rx_len),
            completions: vec![0; COMPLETION_BATCH],
            stages,
            capped,
            clock: Instant::now,
            now: Instant::now(),
        };
        worker.refill();
        Ok(worker)
    }

    /// One turn of the loop: reap completions, receive a batch, replicate
    /// it, transmit, flush every TX port once, refill, wake the RX side. Never blocks, never
    /// allocates.
    pub fn poll(&mut self) -> PollResult {
        let completed = self.reap();
        let received = self.receive();
        self.transmit();
        self.refill();
        self.rx.wake();
        PollResult {
            received,
            completed,
        }
    }

    /// Replicas handed to TX rings whose completion has not come back
    /// (O(1)): while non-zero, the loop must keep polling (completions to
    /// reap, TX rings to kick) rather than sleep.
    pub fn replicas_in_flight(&self) -> usize {
        self.frames.slot_owner.len() - self.frames.free_slots.len()
    }

    /// Replaces the template of the output in counter slot `slot` of
    /// `flow` (a next hop resolved or changed; `None`: unresolved). An
    /// unknown flow or slot (an output removed meanwhile) is ignored.
    pub fn set_template(&mut self, flow: usize, slot: usize, template: Option<ReplicaTemplate>) {
        if let Some(f) = self.flows.get_mut(flow)
            && let Some(out) = f.outputs.iter_mut().find(|o| o.slot == slot)
        {
            out.set_template(template);
            f.derive_limits(&self.cfg);
        }
    }

    /// Adds a TX port between two polls (an egress interface a live change
    /// needs, its socket on this worker's UMEM) and returns its index for
    /// [`OutputSpec::tx`]. It shares the header-slot pool of the others.
    /// Allocates (outside the loop).
    pub fn add_port(&mut self, tx: T) -> usize {
        self.tx.push(tx);
        self.stages.push(Stage::for_port(&self.cfg));
        self.tx.len() - 1
    }

    /// Adds an output to `flow` between two polls, its counters in slot
    /// `slot` (the next one of the flow: slots skipped on the way, which
    /// this worker never ran, are offered nothing). It is offered every
    /// datagram received from now on. Allocates (outside the loop).
    pub fn add_output(
        &mut self,
        flow: usize,
        slot: usize,
        spec: OutputSpec,
    ) -> Result<(), WorkerError> {
        let (Some(f), Some(c)) = (self.flows.get_mut(flow), self.counters.get_mut(flow)) else {
            return Err(WorkerError::NoSuchFlow(flow));
        };
        if spec.tx >= self.tx.len() {
            return Err(WorkerError::NoSuchPort {
                flow,
                output: slot,
                tx: spec.tx,
                ports: self.tx.len(),
            });
        }
        if slot < c.outputs.len() || f.outputs.iter().any(|o| o.slot == slot) {
            return Err(WorkerError::SlotTaken { flow, slot });
        }
        let received = c.received;
        while c.outputs.len() < slot {
            let mut gap = crate::stats::OutputCounters::joining_at(received);
            gap.left_at = Some(received);
            c.outputs.push(gap);
        }
        c.outputs
            .push(crate::stats::OutputCounters::joining_at(received));
        f.outputs
            .push(Output::new(slot, spec.tx, spec.mtu, spec.template));
        f.derive_limits(&self.cfg);
        Ok(())
    }

    /// Removes the output in slot `slot` from `flow` between two polls: it
    /// is offered nothing from now on; its replicas already in TX rings
    /// complete as usual (their frames come back), its counters stay.
    /// Unknown ones are ignored.
    pub fn remove_output(&mut self, flow: usize, slot: usize) {
        let (Some(f), Some(c)) = (self.flows.get_mut(flow), self.counters.get_mut(flow)) else {
            return;
        };
        let Some(at) = f.outputs.iter().position(|o| o.slot == slot) else {
            return;
        };
        f.outputs.remove(at);
        if let Some(oc) = c.outputs.get_mut(slot) {
            oc.left_at = Some(c.received);
        }
        f.derive_limits(&self.cfg);
    }

    /// Adds a flow between two polls as flow `id`, which must be the next
    /// one ([`Worker::flow_counters`]' length: ids of removed flows stay
    /// taken, as in the program's `FLOWS`). It is offered every datagram
    /// received from now on. Allocates (outside the loop).
    pub fn add_flow(&mut self, id: usize, flow: FlowSpec) -> Result<(), WorkerError> {
        if id != self.flows.len() {
            return Err(WorkerError::NotNextFlow {
                id,
                next: self.flows.len(),
            });
        }
        if let Some((o, out)) = flow
            .outputs
            .iter()
            .enumerate()
            .find(|(_, o)| o.tx >= self.tx.len())
        {
            return Err(WorkerError::NoSuchPort {
                flow: id,
                output: o,
                tx: out.tx,
                ports: self.tx.len(),
            });
        }
        let claim = Claim {
            id: id as u32,
            group: flow.group,
            port: flow.port,
            vlan: flow.vlan,
            outer_vlan: flow.outer_vlan,
            source: flow.source,
        };
        let mut claims: Vec<Claim> = self.claims.iter().flatten().copied().collect();
        claims.push(claim);
        let entries = layout(&claims).map_err(|(_, other)| WorkerError::DuplicateFlow {
            flow: id,
            other: other as usize,
            group: flow.group,
            port: flow.port,
            vlan: flow.vlan,
        })?;
        let outputs: Vec<Output> = flow
            .outputs
            .into_iter()
            .enumerate()
            .map(|(o, out)| Output::new(o, out.tx, out.mtu, out.template))
            .collect();
        self.counters
            .push(FlowCounters::with_outputs(outputs.len()));
        self.capped |= flow.limiter.is_some();
        self.flows
            .push(Flow::new(outputs, flow.limiter, flow.health, &self.cfg));
        self.claims.push(Some(claim));
        self.index = index_of(&entries);
        Ok(())
    }

    /// Removes flow `id` between two polls: its datagrams are no longer
    /// recognised (those still in the RX ring count as `no_flow`), its
    /// replicas already in TX rings complete as usual, its counters stay
    /// (every output marked left, its stream health settled). Unknown or
    /// removed ones are ignored.
    pub fn remove_flow(&mut self, id: usize) {
        let (Some(claim), Some(f), Some(c)) = (
            self.claims.get_mut(id),
            self.flows.get_mut(id),
            self.counters.get_mut(id),
        ) else {
            return;
        };
        if claim.take().is_none() {
            return;
        }
        f.outputs.clear();
        f.derive_limits(&self.cfg);
        // Settled once: the final `finish_health` finds it off.
        std::mem::replace(
            &mut f.health,
            StreamHealth::new(crate::health::HealthMode::Off),
        )
        .finish(&mut c.health);
        let received = c.received;
        for o in &mut c.outputs {
            o.left_at.get_or_insert(received);
        }
        let claims: Vec<Claim> = self.claims.iter().flatten().copied().collect();
        // A part of a layout that had no conflict has none.
        if let Ok(entries) = layout(&claims) {
            self.index = index_of(&entries);
        }
    }

    /// Counters of every flow, in the order the flows were given.
    pub fn flow_counters(&self) -> &[FlowCounters] {
        &self.counters
    }

    /// The engine stops: the stream-health checks settle what they still
    /// wait for (RTP numbers missing in the window count as lost).
    pub fn finish_health(&mut self) {
        for (flow, c) in self.flows.iter_mut().zip(&mut self.counters) {
            flow.health.finish(&mut c.health);
        }
    }

    /// Counters of frames that belong to no flow, and ring anomalies.
    pub fn counters(&self) -> &FrameCounters {
        &self.frame_counters
    }

    /// Replaces the clock the rate caps read (tests: a clock they move).
    #[cfg(test)]
    pub(crate) fn set_clock(&mut self, clock: fn() -> Instant) {
        self.clock = clock;
    }

    pub fn config(&self) -> &WorkerConfig {
        &self.cfg
    }

    pub fn umem(&self) -> &U {
        &self.umem
    }

    pub fn rx(&self) -> &R {
        &self.rx
    }

    pub fn tx(&self) -> &[T] {
        &self.tx
    }

    /// The UMEM, the RX port and the TX ports, for whoever plays the kernel
    /// (tests) or must reach the sockets (wakeups, statistics).
    pub fn parts_mut(&mut self) -> (&mut U, &mut R, &mut [T]) {
        (&mut self.umem, &mut self.rx, &mut self.tx)
    }

    /// Counts where every receive frame and header slot is. O(frames): for
    /// tests and diagnostics, not for the loop.
    pub fn census(&self) -> FrameCensus {
        let f = &self.frames;
        let mut conflicts = 0;
        let mut in_kernel = 0;
        let mut referenced = 0;
        let mut queued = vec![0u32; f.frame_count as usize];
        for &addr in &f.to_fill {
            queued[f.frame_of(addr)] += 1;
        }
        let first = f.slot_frames as usize;
        let states = f.in_kernel[first..]
            .iter()
            .zip(&f.refs[first..])
            .zip(&queued[first..]);
        for ((&kernel, &refs), &queued) in states {
            in_kernel += usize::from(kernel);
            referenced += usize::from(refs > 0);
            if usize::from(kernel) + usize::from(refs > 0) + queued as usize > 1 {
                conflicts += 1;
            }
        }
        conflicts += queued[..f.slot_frames as usize]
            .iter()
            .filter(|&&q| q > 0)
            .count();
        let slots = f.slot_owner.len();
        FrameCensus {
            rx_frames: (f.frame_count - f.slot_frames) as usize,
            in_kernel,
            to_fill: f.to_fill.len(),
            referenced,
            conflicts,
            slots,
            slots_in_flight: f.slot_owner.iter().filter(|o| o.busy).count(),
        }
    }

    /// References held on the frame that contains `addr` (tests).
    pub fn frame_refs(&self, addr: u64) -> u32 {
        self.frames
            .refs
            .get(self.frames.frame_of(addr))
            .copied()
            .unwrap_or(0)
    }

    /// Capacities of every buffer the loop writes to: they never change
    /// after [`Self::new`] if the loop never allocates.
    #[cfg(test)]
    pub(crate) fn buffer_capacities(&self) -> Vec<usize> {
        let mut caps = vec![
            self.rx_descs.capacity(),
            self.held.capacity(),
            self.payload.capacity(),
            self.completions.capacity(),
            self.frames.to_fill.capacity(),
            self.frames.free_slots.capacity(),
            self.index.capacity(),
        ];
        for stage in &self.stages {
            caps.push(stage.buf.len());
        }
        caps
    }

    fn reap(&mut self) -> usize {
        let mut total = 0;
        for tx in &mut self.tx {
            loop {
                let n = tx.completions(&mut self.completions);
                let n = n.min(self.completions.len());
                self.frame_counters.bad_completion +=
                    self.frames.release_all(&self.completions[..n]);
                total += n;
                if n < self.completions.len() {
                    break;
                }
            }
        }
        total
    }

    fn refill(&mut self) {
        if self.frames.to_fill.is_empty() {
            return;
        }
        let n = self.rx.fill(&self.frames.to_fill);
        for i in 0..n {
            let frame = self.frames.frame_of(self.frames.to_fill[i]);
            self.frames.in_kernel[frame] = true;
        }
        self.frames.to_fill.drain(..n);
        if !self.frames.to_fill.is_empty() {
            self.frame_counters.fill_short += 1;
        }
    }
}

#[cfg(test)]
mod tests;

/// The flow index over `entries` ([`layout`]).
fn index_of(entries: &[(fanout_common::FlowKey, fanout_common::FlowValue)]) -> FlowIndex {
    let mut index = FlowIndex::with_capacity(entries.len());
    for (key, value) in entries {
        index.insert(key, *value);
    }
    index
}
