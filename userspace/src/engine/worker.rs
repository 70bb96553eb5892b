//! One ingress queue's worker: receive, classify, replicate by reference,
//! recycle frames. See the module documentation of [`crate::engine`].

use std::net::IpAddr;

use fanout_common::FlowKey;

use super::counters::{DropReason, FlowCounters, OutputCounters, WorkerCounters};
use super::index::FlowIndex;
use super::ring::{Desc, RxPort, TxPort, Umem, XDP_PKT_CONTD};
use crate::wire::{self, ReplicaTemplate, replica::MAX_HEADER_LEN};

/// Most descriptors of one received packet (the kernel's `MAX_SKB_FRAGS + 1`).
pub const MAX_RX_CHAIN: usize = 18;
/// Most descriptors of one transmitted packet in copy mode (the kernel's
/// `MAX_SKB_FRAGS + 1`): a header slot and up to 17 payload pieces. Zero-copy
/// drivers may take fewer (`xdp_zc_max_segs`): see
/// [`WorkerConfig::max_tx_chain`].
pub const MAX_TX_CHAIN: usize = 18;
/// Default size of a header slot (a replica header is at most
/// [`MAX_HEADER_LEN`] = 66 bytes).
pub const DEFAULT_SLOT_SIZE: u32 = 128;
/// Default [`WorkerConfig::inline_max`]: every payload that fits in a
/// default header slot behind the shortest replica header (Ethernet, IPv4,
/// UDP: 42 bytes), so 86 bytes behind IPv4 and 66 behind IPv6 headers.
/// Measured in the lab (BENCHMARKS.md, "Tiny payloads"): in AF_XDP copy
/// mode a 64-byte payload copied costs about a fifth less CPU per replica
/// than a two-descriptor chain, which the kernel turns into an skb plus a
/// page per extra descriptor.
pub const DEFAULT_INLINE_MAX: u32 = DEFAULT_SLOT_SIZE - 42;
/// Largest [`WorkerConfig::inline_max`] (the stack buffer a tiny payload is
/// read into once per datagram).
pub const MAX_INLINE: u32 = 128;
/// Completions reaped per ring read.
const COMPLETION_BATCH: usize = 256;

/// How a [`Worker`] divides its UMEM and sizes its batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkerConfig {
    /// Descriptors taken from the RX ring per poll (one descriptor per
    /// datagram without multi-buffer). A poll always takes at least one whole
    /// packet, however long its chain.
    pub batch_size: usize,
    /// Bytes per header slot; divides the frame size, at least
    /// [`MAX_HEADER_LEN`].
    pub slot_size: u32,
    /// UMEM frames carved into header slots: frames `0..slot_frames`. The
    /// others receive.
    pub slot_frames: u32,
    /// Descriptors staged per TX port before they are handed to its ring
    /// (at least [`MAX_TX_CHAIN`]); a poll flushes every port once.
    pub tx_batch: usize,
    /// Most descriptors per transmitted chain (1..=[`MAX_TX_CHAIN`]); a
    /// replica that would need more is dropped as
    /// [`DropReason::ChainTooLong`]. [`MAX_TX_CHAIN`] in copy mode; the
    /// device's `xdp_zc_max_segs` in zero-copy mode.
    pub max_tx_chain: usize,
    /// Payloads of at most this many bytes that arrived in one buffer are
    /// copied into each replica's header slot, behind the headers: one
    /// descriptor per replica instead of a chain, and the received frame
    /// goes back to the fill ring at once (DESIGN decision 3: "for tiny
    /// payloads a single copied descriptor may be cheaper than a chain").
    /// At most [`MAX_INLINE`]; only what fits in a slot behind the longest
    /// header of the flow's outputs is copied; 0 never copies.
    pub inline_max: u32,
}

impl WorkerConfig {
    /// `batch_size` from the plan, 128-byte slots in `slot_frames` frames,
    /// `tx_batch` of four RX batches, payloads up to
    /// [`DEFAULT_INLINE_MAX`] copied behind the headers.
    pub fn new(batch_size: usize, slot_frames: u32) -> Self {
        Self {
            batch_size,
            slot_size: DEFAULT_SLOT_SIZE,
            slot_frames,
            tx_batch: (batch_size * 4).max(MAX_TX_CHAIN),
            max_tx_chain: MAX_TX_CHAIN,
            inline_max: DEFAULT_INLINE_MAX,
        }
    }
}

/// A flow as one worker runs it.
#[derive(Debug, Clone)]
pub struct FlowSpec {
    /// The multicast group (destination address of the datagrams).
    pub group: IpAddr,
    /// UDP destination port.
    pub port: u16,
    /// VLAN id of the innermost tag; `None` for untagged frames.
    pub vlan: Option<u16>,
    /// Source-specific: only datagrams from this sender are replicated.
    pub source: Option<IpAddr>,
    pub outputs: Vec<OutputSpec>,
}

/// An output as one worker runs it.
#[derive(Debug, Clone)]
pub struct OutputSpec {
    /// Index of the TX port (egress interface) in the worker's ports.
    pub tx: usize,
    /// The replica headers; `None` while the next hop is unresolved (the
    /// replicas are dropped and counted as [`DropReason::NextHopUnresolved`]).
    pub template: Option<ReplicaTemplate>,
}

/// A worker that cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WorkerError {
    #[error("batch size must be at least 1")]
    ZeroBatch,
    #[error("UMEM frame size {0}: must be a power of two (the kernel's aligned mode)")]
    BadFrameSize(u32),
    #[error(
        "header slot of {slot_size} bytes: must be {MAX_HEADER_LEN}..={frame_size} bytes and divide the frame size {frame_size}"
    )]
    BadSlotSize { slot_size: u32, frame_size: u32 },
    #[error(
        "UMEM of {frame_count} frames: {slot_frames} header-slot frames must leave at least one receive frame, and there must be at least one"
    )]
    BadSlotFrames { slot_frames: u32, frame_count: u32 },
    #[error("at most {0} descriptors per TX chain: must be 1..={MAX_TX_CHAIN}")]
    BadMaxTxChain(usize),
    #[error("payloads up to {0} bytes copied behind the headers: at most {MAX_INLINE}")]
    BadInlineMax(u32),
    #[error("flow {flow} output {output}: TX port {tx} does not exist ({ports} ports)")]
    NoSuchPort {
        flow: usize,
        output: usize,
        tx: usize,
        ports: usize,
    },
    #[error("flow {flow} ({group} port {port} vlan {vlan:?}) duplicates flow {other}")]
    DuplicateFlow {
        flow: usize,
        other: usize,
        group: IpAddr,
        port: u16,
        vlan: Option<u16>,
    },
}

/// What one [`Worker::poll`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PollResult {
    /// Packets taken from the RX ring.
    pub received: usize,
    /// Addresses reaped from the completion rings.
    pub completed: usize,
}

/// Where every receive frame is, at a quiet moment (see [`Worker::census`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameCensus {
    /// Frames that receive (`frame_count - slot_frames`).
    pub rx_frames: usize,
    /// Handed to the kernel through the fill ring and not received back.
    pub in_kernel: usize,
    /// Free, waiting for room on the fill ring.
    pub to_fill: usize,
    /// Referenced by replicas in flight.
    pub referenced: usize,
    /// Frames found in more than one of the three states (a bug: 0).
    pub conflicts: usize,
    /// Header slots in all.
    pub slots: usize,
    /// Header slots in flight.
    pub slots_in_flight: usize,
}

impl FrameCensus {
    /// Every frame in exactly one state, and nothing in flight.
    pub fn is_idle(&self) -> bool {
        self.conflicts == 0
            && self.referenced == 0
            && self.slots_in_flight == 0
            && self.in_kernel + self.to_fill == self.rx_frames
    }

    /// Every frame in exactly one state.
    pub fn is_consistent(&self) -> bool {
        self.conflicts == 0 && self.in_kernel + self.to_fill + self.referenced == self.rx_frames
    }
}

/// The frame and slot accounting of one UMEM.
#[derive(Debug)]
struct Frames {
    frame_size: u32,
    /// `log2(frame_size)`: the frame of an address is `addr >> frame_shift`.
    frame_shift: u32,
    frame_count: u32,
    slot_frames: u32,
    slot_size: u32,
    /// `log2(slot_size)`: slots tile frames `0..slot_frames` from address
    /// 0, so the slot of an address is `addr >> slot_shift`.
    slot_shift: u32,
    /// References per frame: in-flight TX descriptors pointing into it,
    /// plus the worker's hold while a received packet is processed.
    refs: Vec<u32>,
    /// On the fill ring or being received into.
    in_kernel: Vec<bool>,
    /// Free receive frames (base addresses) waiting for the fill ring.
    to_fill: Vec<u64>,
    /// Free header slots (addresses), a stack. A slot popped from it is
    /// either staged (and marked busy in `slot_owner`) or pushed back in
    /// the same replica's turn.
    free_slots: Vec<u64>,
    /// Per slot: whether it is in flight and whose replica it heads,
    /// written when the replica is staged (one store for both): what a
    /// completion checks and a refused chain is counted against.
    slot_owner: Vec<SlotOwner>,
}

/// The replica a header slot heads.
#[derive(Debug, Clone, Copy, Default)]
struct SlotOwner {
    flow: u32,
    output: u32,
    /// Header and payload bytes.
    bytes: u32,
    /// Staged or in flight: its completion (or refusal) is expected.
    busy: bool,
}

impl Frames {
    fn new(frame_size: u32, frame_count: u32, slot_frames: u32, slot_size: u32) -> Self {
        let per_frame = frame_size / slot_size;
        let slots = (slot_frames * per_frame) as usize;
        // Pushed so that the lowest address is popped first.
        let free_slots = (0..slots as u64)
            .rev()
            .map(|i| {
                let frame = i / u64::from(per_frame);
                let k = i % u64::from(per_frame);
                frame * u64::from(frame_size) + k * u64::from(slot_size)
            })
            .collect();
        let to_fill = (slot_frames..frame_count)
            .map(|f| u64::from(f) * u64::from(frame_size))
            .collect();
        Self {
            frame_size,
            frame_shift: frame_size.trailing_zeros(),
            frame_count,
            slot_frames,
            slot_size,
            slot_shift: slot_size.trailing_zeros(),
            refs: vec![0; frame_count as usize],
            in_kernel: vec![false; frame_count as usize],
            to_fill,
            free_slots,
            slot_owner: vec![SlotOwner::default(); slots],
        }
    }

    #[inline]
    fn frame_of(&self, addr: u64) -> usize {
        (addr >> self.frame_shift) as usize
    }

    /// Takes the worker's hold on a received descriptor's frame, after
    /// checking that it is a receive frame the kernel held and that the
    /// descriptor stays inside it.
    #[inline]
    fn hold_rx(&mut self, d: &Desc) -> bool {
        let frame = self.frame_of(d.addr);
        let end = (frame as u64 + 1) * u64::from(self.frame_size);
        if frame < self.slot_frames as usize
            || frame >= self.frame_count as usize
            || d.addr + u64::from(d.len) > end
            || !self.in_kernel[frame]
        {
            return false;
        }
        self.in_kernel[frame] = false;
        self.refs[frame] += 1;
        true
    }

    /// `n` more in-flight descriptors in the frame of each piece (held
    /// already).
    #[inline]
    fn take_refs(&mut self, pieces: &[Desc], n: u32) {
        for piece in pieces {
            let frame = self.frame_of(piece.addr);
            if let Some(r) = self.refs.get_mut(frame) {
                *r += n;
            }
        }
    }

    /// Gives back `n` references taken by [`Self::take_refs`] and not used
    /// (the worker's hold keeps each count above zero meanwhile).
    #[inline]
    fn drop_refs(&mut self, pieces: &[Desc], n: u32) {
        for piece in pieces {
            let frame = self.frame_of(piece.addr);
            if let Some(r) = self.refs.get_mut(frame) {
                *r -= n;
            }
        }
    }

    #[inline]
    fn slot_index(&self, addr: u64) -> usize {
        (addr >> self.slot_shift) as usize
    }

    /// Drops one reference through `addr` (a completion, a refused
    /// descriptor or the end of a hold): a slot goes back to the pool, a
    /// frame whose last reference this was to the fill queue. `false` when
    /// nothing held that reference.
    #[inline]
    fn release(&mut self, addr: u64) -> bool {
        let frame = self.frame_of(addr);
        if frame < self.slot_frames as usize {
            if addr & u64::from(self.slot_size - 1) != 0 {
                return false;
            }
            let i = self.slot_index(addr);
            return match self.slot_owner.get_mut(i) {
                Some(owner) if owner.busy => {
                    owner.busy = false;
                    self.free_slots.push(addr);
                    true
                }
                _ => false,
            };
        }
        match self.refs.get_mut(frame) {
            None | Some(0) => false,
            Some(1) => {
                self.refs[frame] = 0;
                self.to_fill.push((frame as u64) << self.frame_shift);
                true
            }
            Some(r) => {
                *r -= 1;
                true
            }
        }
    }

    /// [`Self::release`] for a batch of completions; returns how many
    /// released nothing. The geometry is read once into locals, and the
    /// payload-frame case, the common one, comes first.
    #[inline]
    fn release_all(&mut self, addrs: &[u64]) -> u64 {
        let frame_shift = self.frame_shift;
        let slot_frames = self.slot_frames as usize;
        let slot_mask = u64::from(self.slot_size - 1);
        let slot_shift = self.slot_shift;
        let Self {
            refs,
            to_fill,
            slot_owner,
            free_slots,
            ..
        } = self;
        let mut bad = 0;
        for &addr in addrs {
            let frame = (addr >> frame_shift) as usize;
            if frame >= slot_frames {
                match refs.get_mut(frame) {
                    Some(r) if *r > 1 => *r -= 1,
                    Some(r) if *r == 1 => {
                        *r = 0;
                        to_fill.push((frame as u64) << frame_shift);
                    }
                    _ => bad += 1,
                }
            } else {
                match slot_owner.get_mut((addr >> slot_shift) as usize) {
                    Some(owner) if owner.busy && addr & slot_mask == 0 => {
                        owner.busy = false;
                        free_slots.push(addr);
                    }
                    _ => bad += 1,
                }
            }
        }
        bad
    }
}

/// One output as the loop sees it.
#[derive(Debug)]
struct Output {
    tx: usize,
    template: Option<ReplicaTemplate>,
}

#[derive(Debug)]
struct Flow {
    source: Option<IpAddr>,
    outputs: Vec<Output>,
    /// Longest payload copied behind the headers: `inline_max`, and what
    /// fits in a slot behind the longest header of the flow's outputs.
    inline_limit: u32,
}

impl Flow {
    fn set_inline_limit(&mut self, cfg: &WorkerConfig) {
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

/// Descriptors waiting to be handed to one TX port.
#[derive(Debug)]
struct Stage {
    /// Whole chains in `buf[..len]`, each headed by its header slot
    /// ([`SlotOwner`]); a fixed array, filled without `Vec` growth checks.
    buf: Box<[Desc]>,
    len: usize,
}

impl Stage {
    fn new(cap: usize) -> Self {
        Self {
            buf: vec![Desc::default(); cap].into_boxed_slice(),
            len: 0,
        }
    }

    #[inline]
    fn descs(&self) -> &[Desc] {
        &self.buf[..self.len]
    }

    /// Appends the chain `header` + `payload`; `false` (nothing appended)
    /// without room. The usual chains are written element by element: no
    /// memcpy call for two to four descriptors.
    #[inline]
    fn push_chain(&mut self, header: Desc, payload: &[Desc]) -> bool {
        let at = self.len;
        let n = 1 + payload.len();
        let Some(dst) = self.buf.get_mut(at..at + n) else {
            return false;
        };
        match (dst, payload) {
            ([h, d0], [p0]) => {
                *h = header;
                *d0 = *p0;
            }
            ([h, d0, d1], [p0, p1]) => {
                *h = header;
                *d0 = *p0;
                *d1 = *p1;
            }
            ([h, d0, d1, d2], [p0, p1, p2]) => {
                *h = header;
                *d0 = *p0;
                *d1 = *p1;
                *d2 = *p2;
            }
            (dst, payload) => {
                if let Some((h, rest)) = dst.split_first_mut() {
                    *h = header;
                    rest.copy_from_slice(payload);
                }
            }
        }
        self.len = at + n;
        true
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
    index: FlowIndex,
    counters: Vec<FlowCounters>,
    worker_counters: WorkerCounters,
    // Per-poll scratch, allocated once.
    rx_descs: Vec<Desc>,
    held: Vec<u64>,
    payload: Vec<Desc>,
    completions: Vec<u64>,
    stages: Vec<Stage>,
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
        let mut index = FlowIndex::with_capacity(flows.len());
        let mut counters = Vec::with_capacity(flows.len());
        let mut runs = Vec::with_capacity(flows.len());
        for (f, flow) in flows.into_iter().enumerate() {
            let key = FlowKey::new(flow.group, flow.port, flow.vlan.unwrap_or(0));
            if let Some(other) = index.get(&key) {
                return Err(WorkerError::DuplicateFlow {
                    flow: f,
                    other: other as usize,
                    group: flow.group,
                    port: flow.port,
                    vlan: flow.vlan,
                });
            }
            index.insert(&key, f as u32);
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
                outputs.push(Output {
                    tx: out.tx,
                    template: out.template,
                });
            }
            counters.push(FlowCounters {
                outputs: vec![OutputCounters::default(); outputs.len()],
                ..FlowCounters::default()
            });
            let mut run = Flow {
                source: flow.source,
                outputs,
                inline_limit: 0,
            };
            run.set_inline_limit(&cfg);
            runs.push(run);
        }
        let tx_batch = cfg.tx_batch.max(MAX_TX_CHAIN);
        let stages = (0..tx.len()).map(|_| Stage::new(tx_batch)).collect();
        let rx_len = cfg.batch_size.max(MAX_RX_CHAIN);
        let mut worker = Self {
            umem,
            rx,
            tx,
            cfg,
            frames: Frames::new(frame_size, frame_count, cfg.slot_frames, cfg.slot_size),
            flows: runs,
            index,
            counters,
            worker_counters: WorkerCounters::default(),
            rx_descs: vec![Desc::default(); rx_len],
            held: Vec::with_capacity(rx_len),
            payload: Vec::with_capacity(rx_len),
            completions: vec![0; COMPLETION_BATCH],
            stages,
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
        for p in 0..self.tx.len() {
            submit(
                &mut self.tx[p],
                &mut self.stages[p],
                &mut self.frames,
                &mut self.counters,
            );
            // Every port, every poll: what a port took on an earlier poll
            // may still wait for a kick (copy mode sends a bounded number
            // of descriptors per system call); the port decides whether
            // the kernel needs one.
            self.tx[p].flush();
        }
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

    /// Replaces the template of an output (a next hop resolved or changed;
    /// `None`: unresolved). Out-of-range indices are ignored.
    pub fn set_template(&mut self, flow: usize, output: usize, template: Option<ReplicaTemplate>) {
        if let Some(f) = self.flows.get_mut(flow)
            && let Some(out) = f.outputs.get_mut(output)
        {
            out.template = template;
            f.set_inline_limit(&self.cfg);
        }
    }

    /// Counters of every flow, in the order the flows were given.
    pub fn flow_counters(&self) -> &[FlowCounters] {
        &self.counters
    }

    /// Counters of frames that belong to no flow, and ring anomalies.
    pub fn counters(&self) -> &WorkerCounters {
        &self.worker_counters
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
                self.worker_counters.bad_completion +=
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
            self.worker_counters.fill_short += 1;
        }
    }

    /// Takes a batch from the RX ring and replicates it; returns the number
    /// of packets.
    fn receive(&mut self) -> usize {
        let batch = self.cfg.batch_size.min(self.rx_descs.len());
        let mut n = self.rx.receive(&mut self.rx_descs[..batch]);
        if n == 0 && batch < self.rx_descs.len() {
            // A chain longer than the batch would never fit: take it whole.
            n = self.rx.receive(&mut self.rx_descs);
        }
        let n = n.min(self.rx_descs.len());
        let mut packets = 0;
        let mut start = 0;
        while start < n {
            let end = match self.rx_descs[start..n].iter().position(|d| !d.continues()) {
                Some(i) => start + i + 1,
                None => n, // a chain without its end: broken, dropped below
            };
            self.packet(start, end);
            packets += 1;
            start = end;
        }
        self.worker_counters.rx_packets += packets as u64;
        packets
    }

    /// Replicates the packet `rx_descs[lo..hi]` to every output of its flow.
    fn packet(&mut self, lo: usize, hi: usize) {
        self.held.clear();
        let mut bad = self.rx_descs[hi - 1].continues() || hi - lo > MAX_RX_CHAIN;
        let mut total = 0usize;
        for d in &self.rx_descs[lo..hi] {
            if self.frames.hold_rx(d) {
                self.held.push(d.addr);
                total += d.len as usize;
            } else {
                bad = true;
            }
        }
        if bad {
            self.worker_counters.bad_rx_desc += 1;
        } else {
            self.replicate(lo, hi, total);
        }
        for &addr in &self.held {
            self.frames.release(addr);
        }
    }

    fn replicate(&mut self, lo: usize, hi: usize, total: usize) {
        let first = self.rx_descs[lo];
        let head = self.umem.bytes(first.addr, first.len);
        let dg = match wire::parse_head(head, total) {
            Ok(dg) => dg,
            Err(_) => {
                self.worker_counters.malformed += 1;
                return;
            }
        };
        let Some(f) = self.index.get(&dg.flow_key()) else {
            self.worker_counters.no_flow += 1;
            return;
        };
        let flow = &self.flows[f as usize];
        let fc = &mut self.counters[f as usize];
        if flow.source.is_some_and(|s| s != dg.addrs.src()) {
            fc.source_rejected += 1;
            return;
        }
        fc.received += 1;
        fc.received_bytes += dg.payload_len as u64;

        // The payload's pieces: the first buffer from the payload offset,
        // the following ones whole, nothing past the UDP length (padding).
        self.payload.clear();
        let (start, end) = (dg.payload_offset, dg.payload_offset + dg.payload_len);
        let mut pos = 0usize;
        for d in &self.rx_descs[lo..hi] {
            let (a, b) = (pos, pos + d.len as usize);
            pos = b;
            let (s, e) = (a.max(start), b.min(end));
            if s < e {
                self.payload.push(Desc {
                    addr: d.addr + (s - a) as u64,
                    len: (e - s) as u32,
                    options: XDP_PKT_CONTD,
                });
            }
        }
        if let Some(last) = self.payload.last_mut() {
            last.options = 0;
        }

        // Once per datagram, for all its replicas: the received half of
        // the headers, whether a chain fits, and a reference per replica
        // on every payload frame (those not used are given back below; the
        // worker's hold keeps every count above zero meanwhile, so a chain
        // refused by a submit in the loop never frees a frame early).
        let Self {
            umem,
            tx,
            frames,
            stages,
            counters,
            payload,
            cfg,
            flows,
            ..
        } = self;
        let flow = &flows[f as usize];
        let chain_fits = payload.len() < cfg.max_tx_chain;
        let Ok(rx) = wire::Received::new(&dg) else {
            let fc = &mut counters[f as usize];
            return drop_unwritable(flow, fc, chain_fits, !frames.free_slots.is_empty());
        };
        let payload_bytes = dg.payload_len as u32;
        let outputs = flow.outputs.len() as u32;
        let dgram = |chain, tiny| Fanned {
            flow: f,
            rx: &rx,
            chain,
            tiny,
            chain_fits,
            payload_bytes,
        };
        // Two copies of the loop, so that the usual one (by reference)
        // carries nothing of the inline one.
        match payload.as_slice() {
            // A tiny payload in one buffer is read once here and copied
            // behind each replica's headers: no chain, no reference on its
            // frame.
            [p] if p.len <= flow.inline_limit => {
                let mut buf = [0u8; MAX_INLINE as usize];
                let tiny = &mut buf[..p.len as usize];
                tiny.copy_from_slice(umem.bytes(p.addr, p.len));
                let dg = dgram(&[], tiny);
                fan_out::<true, _, _>(umem, tx, frames, stages, counters, flow, &dg);
            }
            _ => {
                frames.take_refs(payload, outputs);
                let dg = dgram(payload, &[]);
                let replicas =
                    fan_out::<false, _, _>(umem, tx, frames, stages, counters, flow, &dg);
                if replicas < outputs {
                    frames.drop_refs(payload, outputs - replicas);
                }
            }
        }
    }
}

/// One datagram as [`fan_out`] replicates it.
struct Fanned<'a> {
    /// Its flow's index.
    flow: u32,
    /// The received half of the replica headers.
    rx: &'a wire::Received,
    /// The payload pieces each replica chains to (empty when inline).
    chain: &'a [Desc],
    /// The payload copied behind each replica's headers (inline only).
    tiny: &'a [u8],
    chain_fits: bool,
    payload_bytes: u32,
}

/// Stages one replica of `dg` per output of `flow` (header slot, then the
/// chain, or the headers and the tiny payload in the slot when `INLINE`)
/// and counts each as sent or dropped by reason; returns the replicas
/// staged. Generic over `INLINE` so that each loop is compiled on its own.
fn fan_out<const INLINE: bool, U: Umem, T: TxPort>(
    umem: &mut U,
    tx: &mut [T],
    frames: &mut Frames,
    stages: &mut [Stage],
    counters: &mut [FlowCounters],
    flow: &Flow,
    dg: &Fanned<'_>,
) -> u32 {
    let f = dg.flow;
    let (rx, chain, tiny, chain_fits, payload_bytes) =
        (dg.rx, dg.chain, dg.tiny, dg.chain_fits, dg.payload_bytes);
    let tiny_len = if INLINE { tiny.len() } else { 0 };
    // The whole slot for an inline replica (it holds the headers and the
    // payload), the header image's length otherwise.
    let buf_len = if INLINE {
        frames.slot_size
    } else {
        MAX_HEADER_LEN as u32
    };
    let header_options = if chain.is_empty() { 0 } else { XDP_PKT_CONTD };
    let slot_shift = frames.slot_shift;
    let mut replicas = 0;
    // This flow's output counters; taken again after a submit, which may
    // count a refused chain of any flow.
    let mut ocs = &mut counters[f as usize].outputs[..];
    for (o, out) in flow.outputs.iter().enumerate() {
        let Some(oc) = ocs.get_mut(o) else {
            continue; // one counter per output, made in new()
        };
        let Some(template) = &out.template else {
            oc.dropped[DropReason::NextHopUnresolved as usize] += 1;
            continue;
        };
        if !chain_fits {
            oc.dropped[DropReason::ChainTooLong as usize] += 1;
            continue;
        }
        let Some(slot) = frames.free_slots.pop() else {
            oc.dropped[DropReason::NoSlot as usize] += 1;
            continue;
        };
        // A header slot is at least MAX_HEADER_LEN bytes (checked in
        // new()): the image is written whole, the length known here.
        // A tiny payload fits behind the longest header of the flow
        // (inline_limit), so this stays inside the slot.
        let buf = umem.bytes_mut(slot, buf_len);
        let written = match buf.first_chunk_mut() {
            Some(image) => template.write_image(rx, image),
            None => Err(wire::WriteError::BufferTooSmall {
                need: MAX_HEADER_LEN,
                have: 0,
            }),
        };
        let Ok(header_len) = written else {
            frames.free_slots.push(slot);
            oc.dropped[DropReason::HeaderError as usize] += 1;
            continue;
        };
        if INLINE && let Some(dst) = buf.get_mut(header_len..header_len + tiny_len) {
            dst.copy_from_slice(tiny);
        }
        let header_len = header_len as u32;
        let Some(stage) = stages.get_mut(out.tx) else {
            frames.free_slots.push(slot);
            continue; // checked in new()
        };
        let header = Desc {
            addr: slot,
            len: header_len + tiny_len as u32,
            options: header_options,
        };
        // A full stage is handed to its port and the chain staged
        // again (a stage holds at least one longest chain).
        let mut oc = oc;
        if !stage.push_chain(header, chain) {
            submit(&mut tx[out.tx], stage, frames, counters);
            ocs = &mut counters[f as usize].outputs[..];
            let Some(again) = ocs.get_mut(o) else {
                continue;
            };
            oc = again;
            if !stage.push_chain(header, chain) {
                frames.free_slots.push(slot);
                oc.dropped[DropReason::RingFull as usize] += 1;
                continue;
            }
        }
        let bytes = header_len + payload_bytes;
        if let Some(owner) = frames.slot_owner.get_mut((slot >> slot_shift) as usize) {
            *owner = SlotOwner {
                flow: f,
                output: o as u32,
                bytes,
                busy: true,
            };
        }
        // Counted as sent now; submit takes it back if the ring refuses.
        oc.sent += 1;
        oc.sent_bytes += u64::from(bytes);
        replicas += 1;
    }
    replicas
}

/// A datagram whose replica headers cannot be written for any output
/// ([`wire::Received::new`] refused it): every output counts a drop, for
/// the first reason that applies, in the order of the replica loop.
#[cold]
#[inline(never)]
fn drop_unwritable(flow: &Flow, fc: &mut FlowCounters, chain_fits: bool, slots: bool) {
    for (out, oc) in flow.outputs.iter().zip(&mut fc.outputs) {
        let reason = if out.template.is_none() {
            DropReason::NextHopUnresolved
        } else if !chain_fits {
            DropReason::ChainTooLong
        } else if !slots {
            DropReason::NoSlot
        } else {
            DropReason::HeaderError
        };
        oc.dropped[reason as usize] += 1;
    }
}

/// Hands a port's staged chains to its TX ring. A chain the ring did not
/// take whole is a replica dropped as [`DropReason::RingFull`] (staging
/// counted it as sent; this takes it back); its untaken descriptors are
/// released at once (taken ones come back as completions).
fn submit<T: TxPort>(
    tx: &mut T,
    stage: &mut Stage,
    frames: &mut Frames,
    counters: &mut [FlowCounters],
) {
    if stage.len == 0 {
        return;
    }
    let descs = stage.descs();
    let taken = tx.transmit(descs).min(descs.len());
    if taken < descs.len() {
        // Staged replicas were counted as sent: the refused ones move to
        // RingFull. The rare path: find the chains from the start.
        let mut start = 0;
        while start < descs.len() {
            let end = descs[start..]
                .iter()
                .position(|d| !d.continues())
                .map_or(descs.len(), |i| start + i + 1);
            if end > taken {
                let owner = frames
                    .slot_owner
                    .get(frames.slot_index(descs[start].addr))
                    .copied()
                    .unwrap_or_default();
                for d in &descs[start.max(taken)..end] {
                    frames.release(d.addr);
                }
                let oc = &mut counters[owner.flow as usize].outputs[owner.output as usize];
                oc.sent -= 1;
                oc.sent_bytes -= u64::from(owner.bytes);
                oc.dropped[DropReason::RingFull as usize] += 1;
            }
            start = end;
        }
    }
    stage.len = 0;
}
