//! The one counter vocabulary of every engine, from the worker to the JSON.
//!
//! Contract: a worker thread owns plain counters ([`FlowCounters`], one per
//! flow it serves, each with one [`OutputCounters`] per output, and in the
//! XDP engine the [`FrameCounters`] of its queue): no atomics and no locks on
//! the hot path. It publishes them whole, now and then and when it stops,
//! through its [`Publisher`] (a copy under a lock that only readers
//! contend for). [`Stats`] knows every flow and output of the plan and every
//! publisher; [`Stats::snapshot`] adds up what was published, per flow and
//! output, into a [`Snapshot`] (serde, JSON-ready, printed as a table by its
//! `Display`). The same names run from the counters to the JSON, the table
//! and future metrics; nothing translates between them.
//!
//! Accounting contract (architecture.md decision 11): `received` counts the datagrams
//! a flow accepted for replication (after the source check and the sanity
//! checks, which are counted in `source_rejected` and `malformed` instead).
//! Every accepted datagram ends, for every output, either in `sent` or in
//! exactly one `dropped` reason, within the worker's same batch, so
//! `sent + sum(dropped) == received` for each output in every published copy
//! ([`Snapshot::check_accounting`]). `sent_bytes` and `received_bytes` count
//! UDP payload bytes in every engine.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use serde::{Deserialize, Serialize};

use crate::health::{HealthCounters, HealthMode};
use crate::plan::Plan;

/// Why a replica was not sent: the one list for every engine. The socket
/// engine's reasons come from `sendmmsg` errors ([`DropReason::from_errno`]);
/// the XDP engine's from its rings and slots; a snapshot reads the same
/// whichever engine ran. A new reason is a new variant here (and in
/// [`DropReason::ALL`] and [`DropReason::name`]): nothing else to change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DropReason {
    /// The egress socket or queue was full (EAGAIN): the engine never waits.
    WouldBlock,
    /// The receiver or its network is unreachable (ECONNREFUSED,
    /// EHOSTUNREACH, ENETUNREACH).
    Unreachable,
    /// The replica does not fit the egress path (EMSGSIZE).
    MessageTooBig,
    /// The kernel ran out of buffers (ENOBUFS).
    NoBuffer,
    /// XDP engine: the MAC address of the next hop is not known (yet).
    NextHopUnresolved,
    /// XDP engine: the TX ring of the egress interface was full.
    RingFull,
    /// Anything else.
    Other,
    /// XDP engine: every header slot was in flight (completions late).
    NoSlot,
    /// XDP engine: the replica headers could not be written (e.g. an IPv6
    /// datagram for an IPv4 output).
    HeaderError,
    /// XDP engine: the replica would need more descriptors than the device
    /// sends per packet.
    ChainTooLong,
}

impl DropReason {
    /// Number of reasons (size of the per-output counter array).
    pub const COUNT: usize = 10;
    /// Every reason, in counter-array order.
    pub const ALL: [DropReason; Self::COUNT] = [
        DropReason::WouldBlock,
        DropReason::Unreachable,
        DropReason::MessageTooBig,
        DropReason::NoBuffer,
        DropReason::NextHopUnresolved,
        DropReason::RingFull,
        DropReason::Other,
        DropReason::NoSlot,
        DropReason::HeaderError,
        DropReason::ChainTooLong,
    ];

    /// The reason for a failed send, from its errno.
    pub fn from_errno(errno: i32) -> Self {
        match errno {
            libc::EAGAIN => DropReason::WouldBlock,
            libc::ECONNREFUSED | libc::EHOSTUNREACH | libc::ENETUNREACH => DropReason::Unreachable,
            libc::EMSGSIZE => DropReason::MessageTooBig,
            libc::ENOBUFS => DropReason::NoBuffer,
            _ => DropReason::Other,
        }
    }

    /// The snake_case name used in JSON and in the table.
    pub fn name(self) -> &'static str {
        match self {
            DropReason::WouldBlock => "would_block",
            DropReason::Unreachable => "unreachable",
            DropReason::MessageTooBig => "message_too_big",
            DropReason::NoBuffer => "no_buffer",
            DropReason::NextHopUnresolved => "next_hop_unresolved",
            DropReason::RingFull => "ring_full",
            DropReason::Other => "other",
            DropReason::NoSlot => "no_slot",
            DropReason::HeaderError => "header_error",
            DropReason::ChainTooLong => "chain_too_long",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Counters of one output, owned by the worker that sends its replicas.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutputCounters {
    /// Replicas handed to the kernel (socket engine) or taken whole by a TX
    /// ring (XDP engine).
    pub sent: u64,
    /// Their UDP payload bytes.
    pub sent_bytes: u64,
    /// Replicas dropped, by [`DropReason`] (index: `reason as usize`).
    pub dropped: [u64; DropReason::COUNT],
    /// The flow's `received` (this worker's count) when the output was
    /// added to the running engine: 0 for an output of the starting plan.
    pub joined_at: u64,
    /// The flow's `received` when the output was removed from the running
    /// engine; `None` while it is configured.
    pub left_at: Option<u64>,
}

impl OutputCounters {
    /// `n` replicas dropped for `reason`.
    #[inline]
    pub fn drop(&mut self, reason: DropReason, n: u64) {
        self.dropped[reason.index()] += n;
    }

    /// Replicas dropped for `reason`.
    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.dropped[reason.index()]
    }

    /// Replicas dropped for any reason.
    pub fn dropped_total(&self) -> u64 {
        self.dropped.iter().sum()
    }

    /// The datagrams offered to this output, by a worker whose flow has
    /// received `received`: those received while it was configured. Each
    /// ends in `sent` or in one drop reason.
    pub fn offered(&self, received: u64) -> u64 {
        self.left_at
            .unwrap_or(received)
            .saturating_sub(self.joined_at)
    }

    /// An output added while the flow has received `received` datagrams.
    pub fn joining_at(received: u64) -> Self {
        OutputCounters {
            joined_at: received,
            ..OutputCounters::default()
        }
    }

    fn add(&mut self, other: &OutputCounters) {
        self.sent += other.sent;
        self.sent_bytes += other.sent_bytes;
        for (d, o) in self.dropped.iter_mut().zip(&other.dropped) {
            *d += o;
        }
    }
}

/// Counters of one flow and of its outputs (in the flow's output order),
/// owned by the worker that receives it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FlowCounters {
    /// Datagrams accepted for replication.
    pub received: u64,
    /// Their UDP payload bytes.
    pub received_bytes: u64,
    /// Datagrams from a sender other than the configured source.
    pub source_rejected: u64,
    /// Datagrams of the flow that were truncated or malformed.
    pub malformed: u64,
    /// Received datagrams whose UDP checksum the sender left unfinished
    /// (`CHECKSUM_PARTIAL`) and the XDP worker completed (replicated).
    pub checksum_completed: u64,
    /// Datagrams received with TTL (hop limit) 1 or 0: none left for the
    /// replicas' hop, so not replicated, as a router would not forward them.
    pub ttl_expired: u64,
    /// Datagrams over the flow's rate cap (`max_pps`, `max_mbps`): not
    /// replicated.
    pub rate_limited: u64,
    /// The stream's damage as it arrived ([`crate::health`]).
    pub health: HealthCounters,
    pub outputs: Vec<OutputCounters>,
}

impl FlowCounters {
    /// Zeroed counters for a flow with `outputs` outputs.
    pub fn with_outputs(outputs: usize) -> Self {
        FlowCounters {
            outputs: vec![OutputCounters::default(); outputs],
            ..FlowCounters::default()
        }
    }

    /// Whether `sent + dropped == offered` holds for every output (offered:
    /// [`OutputCounters::offered`], `received` for an output that was
    /// there all along).
    pub fn balanced(&self) -> bool {
        self.outputs
            .iter()
            .all(|o| o.sent + o.dropped_total() == o.offered(self.received))
    }

    fn add(&mut self, other: &FlowCounters) {
        self.received += other.received;
        self.received_bytes += other.received_bytes;
        self.source_rejected += other.source_rejected;
        self.malformed += other.malformed;
        self.checksum_completed += other.checksum_completed;
        self.ttl_expired += other.ttl_expired;
        self.rate_limited += other.rate_limited;
        self.health.add(&other.health);
        for (o, other) in self.outputs.iter_mut().zip(&other.outputs) {
            o.add(other);
        }
    }
}

/// Frames an XDP worker took from its RX ring that are nobody's datagram,
/// and ring anomalies: the counters of one rx queue, beside its flows'.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FrameCounters {
    /// Packets (chains) taken from the RX ring.
    pub rx_packets: u64,
    /// Frames the parser refused (frames recycled at once).
    pub malformed: u64,
    /// Well-formed datagrams that match no flow of this worker.
    pub no_flow: u64,
    /// RX descriptors outside this worker's receive frames, crossing a frame,
    /// for a frame the kernel did not hold, or a chain without its end: the
    /// packet is dropped, its valid frames recycled.
    pub bad_rx_desc: u64,
    /// Completions for an address with nothing in flight (ignored).
    pub bad_completion: u64,
    /// Polls on which the fill ring took fewer frames than were waiting.
    pub fill_short: u64,
}

impl FrameCounters {
    /// Every counter with its name (as in the JSON and the table).
    pub fn fields(&self) -> [(&'static str, u64); 6] {
        [
            ("rx_packets", self.rx_packets),
            ("malformed", self.malformed),
            ("no_flow", self.no_flow),
            ("bad_rx_desc", self.bad_rx_desc),
            ("bad_completion", self.bad_completion),
            ("fill_short", self.fill_short),
        ]
    }
}

/// The names of one output, for reports.
#[derive(Debug, Clone)]
struct OutputName {
    name: String,
    dest: String,
    /// Removed from the running engine: its counters stay in the report.
    removed: bool,
}

impl OutputName {
    fn of(o: &crate::plan::OutputPlan) -> Self {
        OutputName {
            name: o.name.clone(),
            dest: o.dest.to_string(),
            removed: false,
        }
    }
}

/// The names of one flow and its outputs, for reports.
#[derive(Debug, Clone)]
struct FlowName {
    name: String,
    health: HealthMode,
    /// Every output the flow ever had, by slot: those of the starting plan
    /// in its order, then those added while running.
    outputs: Vec<OutputName>,
    /// Removed from the running engine: its counters stay in the report.
    removed: bool,
}

impl FlowName {
    fn of(f: &crate::plan::FlowPlan) -> Self {
        FlowName {
            name: f.name.clone(),
            health: f.health,
            outputs: f.outputs.iter().map(OutputName::of).collect(),
            removed: false,
        }
    }
}

/// What one worker published: its flows (slots) and their counters.
#[derive(Debug)]
struct Part {
    /// The worker, for the log (`flow "tv"`, `in0 queue 0`).
    worker: String,
    published: Mutex<Published>,
    /// How many times the worker published: its heartbeat.
    beats: AtomicU64,
}

/// A worker's published copy.
#[derive(Debug)]
struct Published {
    /// Slot of each of the worker's flows ([`Stats`]: the plan index for
    /// the flows of the starting plan).
    flows: Vec<usize>,
    /// Their counters, in that order; a flow's outputs by output slot.
    counters: Vec<FlowCounters>,
}

/// One worker's heartbeat ([`Stats::heartbeats`]): how many times it has
/// published its counters. A worker publishes at least every
/// [`crate::engine::STOP_POLL`] (idle) or [`crate::engine::PUBLISH_EVERY`]
/// (busy) while its loop runs, so a count that stands still for longer is
/// a stalled worker (the systemd watchdog of `fanout run` stops then).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heartbeat {
    /// `flow "tv"` (socket engine), `in0 queue 0` (XDP).
    pub worker: String,
    pub beats: u64,
}

/// A worker's handle for publishing its counters into [`Stats`].
#[derive(Debug, Clone)]
pub struct Publisher {
    part: Arc<Part>,
    /// Zeroed counters shaped like the worker's flows.
    blank: Vec<FlowCounters>,
}

impl Publisher {
    /// Zeroed counters for the worker's flows, in its order: the worker's
    /// own copy to count in.
    pub fn counters(&self) -> Vec<FlowCounters> {
        self.blank.clone()
    }

    /// Replaces the published copy with `counters` (the worker's, in the
    /// order of [`Publisher::counters`], then of [`Publisher::add_flow`];
    /// a flow's outputs by slot, those added while running at the end).
    pub fn publish(&self, counters: &[FlowCounters]) {
        let mut published = self
            .part
            .published
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let copy = &mut published.counters;
        copy.truncate(counters.len());
        let have = copy.len();
        for (to, from) in copy.iter_mut().zip(counters) {
            to.clone_from(from);
        }
        copy.extend_from_slice(&counters[have..]);
        self.part.beats.fetch_add(1, Ordering::Relaxed);
    }

    /// The worker serves one more flow, `slot` ([`Stats::add_flow`]): its
    /// counters come next in what it publishes.
    pub fn add_flow(&self, slot: usize) {
        self.part
            .published
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .flows
            .push(slot);
    }
}

/// Every counter of a running engine: the plan's flows and outputs, and what
/// each worker published. Shared between the workers (through their
/// [`Publisher`]s) and whoever reads [`Stats::snapshot`].
///
/// Flows and outputs are known by slot: those of the starting plan by
/// their plan index, those added while running after them
/// ([`Stats::add_flow`], [`Stats::add_output`]). A removed one keeps its
/// slot and its counters, marked removed in the snapshot.
#[derive(Debug)]
pub struct Stats {
    engine: String,
    flows: Mutex<Vec<FlowName>>,
    parts: Mutex<Vec<Arc<Part>>>,
}

impl Stats {
    /// Stats for every flow and output of `plan`, with no publisher yet;
    /// `engine` names what runs (`socket`, `xdp native copy`).
    pub fn for_plan(plan: &Plan, engine: &str) -> Self {
        Stats {
            engine: engine.to_owned(),
            flows: Mutex::new(plan.flows.iter().map(FlowName::of).collect()),
            parts: Mutex::new(Vec::new()),
        }
    }

    fn names(&self) -> std::sync::MutexGuard<'_, Vec<FlowName>> {
        self.flows.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A flow added to the running engine: its slot.
    pub fn add_flow(&self, flow: &crate::plan::FlowPlan) -> usize {
        let mut flows = self.names();
        flows.push(FlowName::of(flow));
        flows.len() - 1
    }

    /// The flow in `slot` was removed from the running engine.
    pub fn remove_flow(&self, slot: usize) {
        if let Some(f) = self.names().get_mut(slot) {
            f.removed = true;
        }
    }

    /// An output added to the flow in `flow` (a slot): the output's slot.
    ///
    /// # Panics
    ///
    /// If `flow` is not a slot (a bug of the caller).
    pub fn add_output(&self, flow: usize, output: &crate::plan::OutputPlan) -> usize {
        let mut flows = self.names();
        let outputs = &mut flows[flow].outputs;
        outputs.push(OutputName::of(output));
        outputs.len() - 1
    }

    /// The output in slot `output` of the flow in `flow` was removed.
    pub fn remove_output(&self, flow: usize, output: usize) {
        if let Some(o) = self
            .names()
            .get_mut(flow)
            .and_then(|f| f.outputs.get_mut(output))
        {
            o.removed = true;
        }
    }

    /// The slot of the configured (not removed) flow named `name`.
    pub fn flow_slot(&self, name: &str) -> Option<usize> {
        self.names()
            .iter()
            .position(|f| !f.removed && f.name == name)
    }

    /// The slot of the configured output named `name` of the flow in
    /// `flow`.
    pub fn output_slot(&self, flow: usize, name: &str) -> Option<usize> {
        self.names()
            .get(flow)?
            .outputs
            .iter()
            .position(|o| !o.removed && o.name == name)
    }

    /// What runs (`socket`, `xdp native copy`).
    pub fn engine(&self) -> &str {
        &self.engine
    }

    /// Registers the worker named `worker` (for the log: `flow "tv"`, `in0
    /// queue 0`) that serves the plan's flows `flows` (plan indices, in the
    /// worker's order) and returns its publisher.
    ///
    /// # Panics
    ///
    /// If a flow index is not in the plan (a bug of the caller).
    pub fn publisher(&self, worker: &str, flows: &[usize]) -> Publisher {
        let blank: Vec<FlowCounters> = {
            let names = self.names();
            flows
                .iter()
                .map(|&f| FlowCounters::with_outputs(names[f].outputs.len()))
                .collect()
        };
        let part = Arc::new(Part {
            worker: worker.to_owned(),
            published: Mutex::new(Published {
                flows: flows.to_vec(),
                counters: blank.clone(),
            }),
            beats: AtomicU64::new(0),
        });
        self.parts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(part.clone());
        Publisher { part, blank }
    }

    /// Every worker's heartbeat, in the order they were registered.
    pub fn heartbeats(&self) -> Vec<Heartbeat> {
        let parts = self.parts.lock().unwrap_or_else(PoisonError::into_inner);
        parts
            .iter()
            .map(|p| Heartbeat {
                worker: p.worker.clone(),
                beats: p.beats.load(Ordering::Relaxed),
            })
            .collect()
    }

    /// The flows' counters summed over every publisher, by slot, each
    /// output's with what it was offered ([`OutputCounters::offered`]).
    pub fn totals(&self) -> Vec<(FlowCounters, Vec<u64>)> {
        let shape: Vec<usize> = self.names().iter().map(|f| f.outputs.len()).collect();
        let mut totals: Vec<(FlowCounters, Vec<u64>)> = shape
            .iter()
            .map(|&n| (FlowCounters::with_outputs(n), vec![0; n]))
            .collect();
        let parts = self.parts.lock().unwrap_or_else(PoisonError::into_inner);
        for part in parts.iter() {
            let p = part
                .published
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            for (&f, c) in p.flows.iter().zip(&p.counters) {
                let Some((total, offered)) = totals.get_mut(f) else {
                    continue;
                };
                total.add(c);
                // An output the worker has and the names not yet (or the
                // other way round) for the moment of a change: ignored.
                for (o, oc) in offered.iter_mut().zip(&c.outputs) {
                    *o += oc.offered(c.received);
                }
            }
        }
        totals
    }

    /// Every counter as published (each worker's copy is consistent in
    /// itself; take it after the engine stopped for the final account).
    pub fn snapshot(&self) -> Snapshot {
        let mut snap = self.snapshot_by_slot();
        snap.removed_last();
        snap
    }

    /// [`Stats::snapshot`] with every flow and output in its slot (removed
    /// ones too, where they were): for an engine that adds to it by slot
    /// before [`Snapshot::removed_last`].
    pub fn snapshot_by_slot(&self) -> Snapshot {
        let totals = self.totals();
        let names = self.names();
        Snapshot {
            engine: self.engine.clone(),
            flows: names
                .iter()
                .zip(totals)
                .map(|(f, (c, offered))| FlowSnapshot {
                    name: f.name.clone(),
                    removed: f.removed,
                    engine: self.engine.clone(),
                    engine_reason: None,
                    received: c.received,
                    received_bytes: c.received_bytes,
                    source_rejected: c.source_rejected,
                    malformed: c.malformed,
                    checksum_completed: c.checksum_completed,
                    ttl_expired: c.ttl_expired,
                    rate_limited: c.rate_limited,
                    health: FlowHealth {
                        mode: f.health,
                        counters: c.health,
                    },
                    xdp: None,
                    outputs: f
                        .outputs
                        .iter()
                        .zip(c.outputs)
                        .zip(offered)
                        .map(|((o, c), offered)| OutputSnapshot {
                            name: o.name.clone(),
                            dest: o.dest.clone(),
                            removed: o.removed,
                            offered,
                            sent: c.sent,
                            sent_bytes: c.sent_bytes,
                            dropped: DropReason::ALL.iter().map(|&r| (r, c.dropped(r))).collect(),
                        })
                        .collect(),
                })
                .collect(),
            xdp: None,
        }
    }
}

/// Plain copy of [`Stats`], serialisable (`--stats-json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Which engine produced the numbers (`socket`, `xdp`).
    pub engine: String,
    pub flows: Vec<FlowSnapshot>,
    /// The XDP datapath's own counters (program, AF_XDP sockets, workers);
    /// absent when the socket engine ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub xdp: Option<XdpSnapshot>,
}

/// The XDP datapath's counters, per ingress interface.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct XdpSnapshot {
    pub interfaces: Vec<XdpInterfaceSnapshot>,
}

/// One ingress interface of the XDP datapath.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct XdpInterfaceSnapshot {
    pub interface: String,
    /// `native` or `generic` XDP.
    pub attach: String,
    /// `zero-copy` or `copy` AF_XDP.
    pub bind: String,
    /// The program's `COUNTERS` (seen, matched, redirected, passed, ...),
    /// summed over the CPUs.
    pub program: BTreeMap<String, u64>,
    pub queues: Vec<XdpQueueSnapshot>,
}

/// One rx queue of an ingress interface: its worker and its sockets.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct XdpQueueSnapshot {
    pub queue: u32,
    /// The worker's frame counters (rx_packets, malformed, no_flow, ...).
    pub worker: BTreeMap<String, u64>,
    /// The kernel's `XDP_STATISTICS` of the receiving socket.
    pub rx_socket: BTreeMap<String, u64>,
    /// The kernel's `XDP_STATISTICS` of each transmitting socket, by egress
    /// interface.
    pub tx_sockets: BTreeMap<String, BTreeMap<String, u64>>,
}

/// One flow in a [`Snapshot`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowSnapshot {
    pub name: String,
    /// Removed from the running engine (`fanout ctl`, a reload): its last
    /// counters, listed after the configured flows.
    #[serde(default, skip_serializing_if = "is_false")]
    pub removed: bool,
    /// The engine that serves the flow (`xdp native copy`, `socket`): the
    /// snapshot's own, unless `mode = "auto"` split the flows between the
    /// engines (the snapshot's is then `xdp native copy + socket`).
    #[serde(default)]
    pub engine: String,
    /// Why `mode = "auto"` runs the flow on the socket engine (what the XDP
    /// datapath refused); absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine_reason: Option<String>,
    /// Datagrams accepted for replication.
    pub received: u64,
    pub received_bytes: u64,
    /// Datagrams from a sender other than the configured source (not replicated).
    pub source_rejected: u64,
    /// Malformed or truncated datagrams (not replicated).
    pub malformed: u64,
    /// Datagrams received with the sender's unfinished UDP checksum
    /// (`CHECKSUM_PARTIAL`: a local sender over veth, a container, a VM),
    /// completed once by the XDP worker before replication (replicated;
    /// 0 in the socket engine, where the kernel completes them).
    #[serde(default)]
    pub checksum_completed: u64,
    /// Datagrams received with TTL (hop limit) <= 1 (not replicated): a
    /// replica's TTL is min(configured, received - 1), as a router's.
    #[serde(default)]
    pub ttl_expired: u64,
    /// Datagrams over the flow's rate cap (`max_pps`, `max_mbps`), not
    /// replicated.
    #[serde(default)]
    pub rate_limited: u64,
    /// The stream's damage as it arrived: RTP sequence and MPEG-TS
    /// continuity ([`crate::health`]), counted over every datagram from the
    /// right sender (TTL-expired and rate-limited ones included).
    #[serde(default)]
    pub health: FlowHealth,
    /// XDP engine: what the program did with the flow's datagrams and what
    /// became of those it redirected; absent on the socket engine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub xdp: Option<FlowXdpSnapshot>,
    pub outputs: Vec<OutputSnapshot>,
}

/// One flow's stream health in a [`Snapshot`]: the configured check and
/// what it counted (`kind` is what was found: `none`, `ts`, `rtp`,
/// `rtp+ts`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct FlowHealth {
    pub mode: HealthMode,
    #[serde(flatten)]
    pub counters: HealthCounters,
}

impl fmt::Display for FlowHealth {
    /// `rtp+ts (auto): rtp_packets=10 ... ` with the counters that apply
    /// to the kind found, zeros included; `off` or `none (auto)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use crate::health::StreamKind;
        let c = &self.counters;
        if self.mode == HealthMode::Off {
            return write!(f, "off");
        }
        write!(f, "{} ({})", c.kind.name(), self.mode.name())?;
        let fields = c.fields();
        let shown = fields.iter().filter(|(name, _)| match c.kind {
            StreamKind::None => false,
            StreamKind::Ts => name.starts_with("ts_"),
            StreamKind::Rtp => name.starts_with("rtp_"),
            StreamKind::RtpTs => true,
        });
        let mut sep = ": ";
        for (name, n) in shown {
            write!(f, "{sep}{name}={n}")?;
            sep = " ";
        }
        Ok(())
    }
}

/// What the XDP program did with one flow's datagrams (its
/// `FLOW_COUNTERS`), so that every datagram of the flow that reached the
/// interface is accounted for:
/// `redirected = received + source_rejected + malformed + ttl_expired +
/// rate_limited + lost_before_worker` ([`FlowSnapshot::seen_by_worker`]),
/// and every datagram the program passed is in `passed`, by reason.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct FlowXdpSnapshot {
    /// Handed by the program to the AF_XDP socket of its rx queue.
    pub redirected: u64,
    /// Redirected, but never received by a worker: dropped by the kernel at
    /// the socket (its RX ring full, no fill frame: the queue's
    /// `rx_ring_full` and `rx_dropped`). Exact once the engine has stopped;
    /// while it runs, it also counts those still waiting in the RX ring.
    pub lost_before_worker: u64,
    /// Passed to the kernel and not replicated, by reason, zeros included:
    /// `fragment` (a first fragment: the kernel reassembles; XDP replicates
    /// whole datagrams only), `ext_headers` (behind IPv6 extension
    /// headers), `oversize` (longer than the ingress MTU: a GSO train),
    /// `other_host` (to another host's MAC), `no_socket` (no AF_XDP socket
    /// on the rx queue: fail-open).
    pub passed: BTreeMap<String, u64>,
}

impl FlowXdpSnapshot {
    /// Datagrams passed for `reason` (`fragment`, `ext_headers`, ...).
    pub fn passed(&self, reason: &str) -> u64 {
        self.passed.get(reason).copied().unwrap_or(0)
    }
}

/// One output in a [`Snapshot`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputSnapshot {
    pub name: String,
    pub dest: String,
    /// Removed from the running engine: its last counters, listed after
    /// the configured outputs.
    #[serde(default, skip_serializing_if = "is_false")]
    pub removed: bool,
    /// The flow's datagrams offered to this output: those received while
    /// it was configured (the flow's `received` for an output there from
    /// the start); each ends in `sent` or in one drop reason.
    #[serde(default)]
    pub offered: u64,
    pub sent: u64,
    /// UDP payload bytes of the replicas sent (headers not counted), in
    /// every engine: comparable with the flow's `received_bytes`.
    pub sent_bytes: u64,
    /// Every reason, zeros included.
    pub dropped: BTreeMap<DropReason, u64>,
}

impl OutputSnapshot {
    /// Replicas dropped, all reasons together.
    pub fn dropped_total(&self) -> u64 {
        self.dropped.values().sum()
    }

    /// Replicas dropped for `reason`.
    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.dropped.get(&reason).copied().unwrap_or(0)
    }
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl Snapshot {
    /// Checks `sent + dropped == offered` for every output, and `offered
    /// == received` for an output that was there all along (no change
    /// while running: then every output's); the error names every output
    /// that does not balance.
    pub fn check_accounting(&self) -> Result<(), String> {
        let mut bad = Vec::new();
        for f in &self.flows {
            for o in &f.outputs {
                let accounted = o.sent + o.dropped_total();
                if accounted != o.offered || o.offered > f.received {
                    bad.push(format!(
                        "flow {:?} output {:?}: sent {} + dropped {} = {} != offered {} \
                         (received {})",
                        f.name,
                        o.name,
                        o.sent,
                        o.dropped_total(),
                        accounted,
                        o.offered,
                        f.received
                    ));
                }
            }
        }
        if bad.is_empty() {
            Ok(())
        } else {
            Err(bad.join("; "))
        }
    }

    /// The flow named `name` (the configured one, before a removed one of
    /// the same name).
    pub fn flow(&self, name: &str) -> Option<&FlowSnapshot> {
        self.flows.iter().find(|f| f.name == name)
    }

    /// Puts the removed flows after the configured ones, and in each flow
    /// the removed outputs after the configured ones, each in its order.
    pub fn removed_last(&mut self) {
        self.flows.sort_by_key(|f| f.removed);
        for f in &mut self.flows {
            f.outputs.sort_by_key(|o| o.removed);
        }
    }
}

impl Snapshot {
    /// What an operator must be told about the counters' change since
    /// `before` (an earlier snapshot of the same engine): losses with a
    /// known cause that no output's drop counters show. Empty when nothing
    /// of the kind happened.
    pub fn warnings_since(&self, before: &Snapshot) -> Vec<String> {
        let mut out = Vec::new();
        for f in &self.flows {
            let was = before.flow(&f.name).map_or(0, |b| b.ttl_expired);
            if f.ttl_expired > was {
                out.push(format!(
                    "flow {}: {} datagram(s) arrived with TTL (hop limit) 1 or 0 and were \
                     not replicated ({} in all): like a router, fanout replicates only a \
                     datagram with a hop left; have the sender use a multicast TTL of 2 or more",
                    f.name,
                    f.ttl_expired - was,
                    f.ttl_expired
                ));
            }
            let was = before.flow(&f.name).map_or(0, |b| b.rate_limited);
            if f.rate_limited > was {
                out.push(format!(
                    "flow {}: {} datagram(s) over the flow's rate cap were not replicated \
                     ({} in all): the stream runs faster than max_pps or max_mbps allow",
                    f.name,
                    f.rate_limited - was,
                    f.rate_limited
                ));
            }
        }
        for f in &self.flows {
            let was = before
                .flow(&f.name)
                .map(|b| b.health.counters)
                .unwrap_or_default();
            let now = &f.health.counters;
            let new: Vec<String> = now
                .fields()
                .iter()
                .zip(was.fields())
                .filter(|((name, n), (_, w))| {
                    n > w && !matches!(*name, "rtp_packets" | "ts_packets" | "ts_duplicates")
                })
                .map(|((name, n), (_, w))| format!("{name} +{}", n - w))
                .collect();
            if !new.is_empty() {
                out.push(format!(
                    "flow {}: the {} stream arrived damaged: {} (in all: {} error(s) over {} RTP \
                     and {} TS packets)",
                    f.name,
                    now.kind.name(),
                    new.join(", "),
                    now.errors(),
                    now.rtp_packets,
                    now.ts_packets
                ));
            }
        }
        for f in &self.flows {
            let Some(x) = &f.xdp else {
                continue;
            };
            let was = |reason: &str| {
                before
                    .flow(&f.name)
                    .and_then(|b| b.xdp.as_ref())
                    .map_or(0, |b| b.passed(reason))
            };
            for (reason, what, fix) in [
                (
                    "fragment",
                    "fragmented datagram(s)",
                    "XDP replicates whole datagrams only: have the sender keep its datagrams \
                     within the path MTU, or run the flow with mode = \"socket\"",
                ),
                (
                    "ext_headers",
                    "datagram(s) behind IPv6 extension headers",
                    "XDP replicates plain UDP over IPv6 only: have the sender not add \
                     extension headers, or run the flow with mode = \"socket\"",
                ),
            ] {
                let (now, was) = (x.passed(reason), was(reason));
                if now > was {
                    out.push(format!(
                        "flow {}: {} {what} were passed to the kernel, not replicated ({now} in \
                         all): {fix}",
                        f.name,
                        now - was
                    ));
                }
            }
        }
        let Some(xdp) = &self.xdp else {
            return out;
        };
        for i in &xdp.interfaces {
            for q in &i.queues {
                let drops = |q: &XdpQueueSnapshot| {
                    ["rx_ring_full", "rx_dropped"].map(|k| q.rx_socket.get(k).copied().unwrap_or(0))
                };
                let [full, dropped] = drops(q);
                let [full_was, dropped_was] = before
                    .xdp
                    .as_ref()
                    .and_then(|x| x.interfaces.iter().find(|b| b.interface == i.interface))
                    .and_then(|b| b.queues.iter().find(|b| b.queue == q.queue))
                    .map_or([0, 0], drops);
                let new = (full + dropped).saturating_sub(full_was + dropped_was);
                if new > 0 {
                    out.push(format!(
                        "{} queue {}: {new} datagram(s) redirected to AF_XDP were dropped by the \
                         kernel before the worker saw them (RX ring full {full}, no fill frame or \
                         other {dropped} in all; per flow: lost_before_worker): the worker cannot \
                         keep up with the stream",
                        i.interface, q.queue
                    ));
                }
            }
        }
        for i in &xdp.interfaces {
            let was = before
                .xdp
                .as_ref()
                .and_then(|x| x.interfaces.iter().find(|b| b.interface == i.interface))
                .and_then(|b| b.program.get("oversize").copied())
                .unwrap_or(0);
            let now = i.program.get("oversize").copied().unwrap_or(0);
            if now > was {
                out.push(format!(
                    "{}: {} datagram(s) of configured flows were longer than the \
                     interface's MTU and were passed to the kernel, not replicated \
                     (XDP counter oversize, {now} in all): a local sender's UDP GSO \
                     trains, which {} XDP sees unsegmented; attach XDP natively, or \
                     have the sender not use UDP_SEGMENT",
                    i.interface,
                    now - was,
                    i.attach
                ));
            }
        }
        out
    }
}

impl Snapshot {
    /// One line for the periodic report (`--stats-interval`): the totals
    /// over every flow and output, and their rates since `before`, taken
    /// `secs` seconds earlier. The details are in `--stats-json` and in the
    /// final table.
    pub fn summary_since(&self, before: &Snapshot, secs: f64) -> String {
        let totals = |s: &Snapshot| {
            let mut t = [0u64; 4];
            for f in &s.flows {
                t[0] += f.received;
                t[3] += f.source_rejected + f.malformed + f.ttl_expired + f.rate_limited;
                for o in &f.outputs {
                    t[1] += o.sent;
                    t[2] += o.dropped_total();
                }
            }
            t
        };
        let (now, was) = (totals(self), totals(before));
        let rate = |i: usize| {
            let d = now[i].saturating_sub(was[i]) as f64;
            if secs > 0.0 { d / secs } else { 0.0 }
        };
        format!(
            "stats: {} flow(s) on {}: received {} ({:.0}/s), replicas sent {} ({:.0}/s), \
             dropped {} ({:.0}/s), not replicated {} ({:.0}/s)",
            self.flows.len(),
            self.engine,
            now[0],
            rate(0),
            now[1],
            rate(1),
            now[2],
            rate(2),
            now[3],
            rate(3)
        )
    }
}

impl FlowSnapshot {
    /// Datagrams a worker received for the flow, whatever it then did with
    /// them: `received + source_rejected + malformed + ttl_expired +
    /// rate_limited`.
    pub fn seen_by_worker(&self) -> u64 {
        self.received + self.source_rejected + self.malformed + self.ttl_expired + self.rate_limited
    }

    /// The output named `name`.
    pub fn output(&self, name: &str) -> Option<&OutputSnapshot> {
        self.outputs.iter().find(|o| o.name == name)
    }
}

/// The human-readable counter table.
impl fmt::Display for Snapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "engine: {}", self.engine)?;
        for flow in &self.flows {
            writeln!(
                f,
                "flow {}{}: received {} datagrams ({} bytes), source-rejected {}, malformed {}, \
                 ttl-expired {}, rate-limited {}, checksums completed {}",
                flow.name,
                if flow.removed { " (removed)" } else { "" },
                flow.received,
                flow.received_bytes,
                flow.source_rejected,
                flow.malformed,
                flow.ttl_expired,
                flow.rate_limited,
                flow.checksum_completed
            )?;
            if flow.health.mode != HealthMode::Off {
                writeln!(f, "  health: {}", flow.health)?;
            }
            if let Some(x) = &flow.xdp {
                write!(
                    f,
                    "  xdp: redirected {}, lost before the worker {}, passed to the kernel ",
                    x.redirected, x.lost_before_worker
                )?;
                let mut any = false;
                for (reason, n) in x.passed.iter().filter(|(_, n)| **n > 0) {
                    write!(f, "{}{reason}={n}", if any { " " } else { "" })?;
                    any = true;
                }
                writeln!(f, "{}", if any { "" } else { "-" })?;
            }
            if flow.engine != self.engine || flow.engine_reason.is_some() {
                write!(f, "  engine: {}", flow.engine)?;
                match &flow.engine_reason {
                    Some(why) => writeln!(f, " ({why})")?,
                    None => writeln!(f)?,
                }
            }
            let label = |o: &OutputSnapshot| {
                if o.removed {
                    format!("{} (removed)", o.name)
                } else {
                    o.name.clone()
                }
            };
            let name_w = flow
                .outputs
                .iter()
                .map(|o| label(o).len())
                .max()
                .unwrap_or(0)
                .max("output".len());
            writeln!(
                f,
                "  {:<name_w$}  {:>12}  {:>14}  {:>10}  reasons",
                "output", "sent", "bytes", "dropped"
            )?;
            for o in &flow.outputs {
                write!(
                    f,
                    "  {:<name_w$}  {:>12}  {:>14}  {:>10}  ",
                    label(o),
                    o.sent,
                    o.sent_bytes,
                    o.dropped_total()
                )?;
                let mut any = false;
                for (reason, n) in o.dropped.iter().filter(|(_, n)| **n > 0) {
                    write!(f, "{}{}={}", if any { " " } else { "" }, reason.name(), n)?;
                    any = true;
                }
                if !any {
                    write!(f, "-")?;
                }
                writeln!(f)?;
            }
        }
        if let Some(xdp) = &self.xdp {
            let join = |m: &BTreeMap<String, u64>| {
                m.iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            };
            for i in &xdp.interfaces {
                writeln!(
                    f,
                    "xdp {} ({} {}): program {}",
                    i.interface,
                    i.attach,
                    i.bind,
                    join(&i.program)
                )?;
                for q in &i.queues {
                    writeln!(f, "  queue {}: worker {}", q.queue, join(&q.worker))?;
                    writeln!(f, "  queue {}: rx socket {}", q.queue, join(&q.rx_socket))?;
                    for (dev, st) in &q.tx_sockets {
                        writeln!(f, "  queue {}: tx socket {dev} {}", q.queue, join(st))?;
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::EngineConfig;
    use crate::plan::{FlowPlan, Interface, Mode, OutputKind, OutputPlan};

    fn plan() -> Plan {
        let lo = Interface {
            name: "lo".into(),
            index: 1,
            mtu: 65536,
            mac: None,
            ipv4: vec![],
            ipv6: vec![],
        };
        let out = |name: &str, port| OutputPlan {
            name: name.into(),
            kind: OutputKind::Unicast,
            dest: format!("10.0.0.1:{port}").parse().unwrap(),
            interface: None,
            vlan: None,
            source_port: None,
            ttl: 16,
        };
        Plan {
            engine: EngineConfig {
                mode: Mode::Socket,
                batch_size: 32,
                ..EngineConfig::default()
            },
            flows: vec![FlowPlan {
                name: "tv".into(),
                ingress: lo,
                group: "239.1.1.1".parse().unwrap(),
                port: 5000,
                vlan: None,
                outer_vlan: None,
                source: None,
                cap: Default::default(),
                health: Default::default(),
                outputs: vec![out("a", 1), out("b", 2)],
            }],
        }
    }

    #[test]
    fn snapshot_counts_and_balances() {
        let stats = Stats::for_plan(&plan(), "socket");
        let publisher = stats.publisher("w", &[0]);
        let mut c = publisher.counters();
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].outputs.len(), 2);
        let f = &mut c[0];
        (f.received, f.received_bytes, f.source_rejected, f.malformed) = (10, 1000, 3, 1);
        (f.outputs[0].sent, f.outputs[0].sent_bytes) = (10, 1000);
        (f.outputs[1].sent, f.outputs[1].sent_bytes) = (7, 700);
        f.outputs[1].drop(DropReason::WouldBlock, 2);
        f.outputs[1].drop(DropReason::Unreachable, 1);
        assert!(f.balanced());
        // Nothing shows before it is published.
        assert_eq!(stats.snapshot().flow("tv").unwrap().received, 0);
        publisher.publish(&c);
        let s = stats.snapshot();
        assert_eq!(s.engine, "socket");
        let fs = s.flow("tv").unwrap();
        assert_eq!(
            (
                fs.received,
                fs.received_bytes,
                fs.source_rejected,
                fs.malformed
            ),
            (10, 1000, 3, 1)
        );
        let b = fs.output("b").unwrap();
        assert_eq!((b.sent, b.sent_bytes, b.dropped_total()), (7, 700, 3));
        assert_eq!(b.dropped(DropReason::WouldBlock), 2);
        assert_eq!(b.dropped(DropReason::Unreachable), 1);
        assert_eq!(b.dropped(DropReason::RingFull), 0);
        assert_eq!(b.dropped.len(), DropReason::COUNT);
        s.check_accounting().unwrap();

        c[0].outputs[0].drop(DropReason::Other, 1);
        assert!(!c[0].balanced());
        publisher.publish(&c);
        let err = stats.snapshot().check_accounting().unwrap_err();
        assert!(err.contains("output \"a\""), "{err}");
        assert!(err.contains("11 != offered 10 (received 10)"), "{err}");
    }

    /// Outputs and flows added and removed while running: each keeps its
    /// slot and counters; an added output is offered what came after it;
    /// the removed ones are listed last, marked, and still balance.
    #[test]
    fn outputs_added_and_removed_while_running_keep_their_counters() {
        let p = plan();
        let stats = Stats::for_plan(&p, "socket");
        let publisher = stats.publisher("w", &[0]);
        let mut c = publisher.counters();
        c[0].received = 10;
        c[0].outputs[0].sent = 10;
        c[0].outputs[1].sent = 10;
        // "a" leaves at 10; "c" joins at 10 and is sent 5 of the next 5.
        let mut o = p.flows[0].outputs[0].clone();
        o.name = "c".into();
        let slot = stats.add_output(0, &o);
        assert_eq!(slot, 2);
        assert_eq!(stats.output_slot(0, "c"), Some(2));
        c[0].outputs[0].left_at = Some(10);
        stats.remove_output(0, 0);
        assert_eq!(stats.output_slot(0, "a"), None);
        c[0].outputs.push(OutputCounters::joining_at(10));
        c[0].received = 15;
        c[0].outputs[1].sent = 15;
        c[0].outputs[2].sent = 4;
        c[0].outputs[2].drop(DropReason::WouldBlock, 1);
        assert!(c[0].balanced());
        publisher.publish(&c);
        let snap = stats.snapshot();
        let each: Vec<(&str, bool, u64, u64)> = snap.flows[0]
            .outputs
            .iter()
            .map(|o| (o.name.as_str(), o.removed, o.offered, o.sent))
            .collect();
        assert_eq!(
            each,
            [
                ("b", false, 15, 15),
                ("c", false, 5, 4),
                ("a", true, 10, 10)
            ]
        );
        snap.check_accounting().unwrap();
        assert!(snap.to_string().contains("a (removed)"), "{snap}");

        // A flow added gets the next slot; a removed one stays, last.
        let mut g = p.flows[0].clone();
        g.name = "g".into();
        assert_eq!(stats.add_flow(&g), 1);
        stats.remove_flow(0);
        assert_eq!(stats.flow_slot("tv"), None);
        assert_eq!(stats.flow_slot("g"), Some(1));
        let snap = stats.snapshot();
        let flows: Vec<(&str, bool)> = snap
            .flows
            .iter()
            .map(|f| (f.name.as_str(), f.removed))
            .collect();
        assert_eq!(flows, [("g", false), ("tv", true)]);
        assert_eq!(
            snap.flows[1].received, 15,
            "a removed flow keeps its counters"
        );
        assert!(snap.to_string().contains("flow tv (removed):"), "{snap}");
        let json = serde_json::to_string(&snap).unwrap();
        let back: Snapshot = serde_json::from_str(&json).unwrap();
        assert_eq!(back, snap);
    }

    #[test]
    fn the_periodic_line_sums_every_flow_and_output_with_rates() {
        let stats = Stats::for_plan(&plan(), "socket");
        let before = stats.snapshot();
        let mut now = before.clone();
        let f = &mut now.flows[0];
        (f.received, f.rate_limited, f.ttl_expired) = (100, 4, 1);
        f.outputs[0].sent = 100;
        f.outputs[1].sent = 90;
        f.outputs[1].dropped.insert(DropReason::WouldBlock, 10);
        assert_eq!(
            now.summary_since(&before, 2.0),
            "stats: 1 flow(s) on socket: received 100 (50/s), replicas sent 190 (95/s), \
             dropped 10 (5/s), not replicated 5 (2/s)"
        );
        assert!(now.summary_since(&now, 0.0).contains("received 100 (0/s)"));
    }

    /// What `fanout run` tells an operator: each increase of a loss with a
    /// known cause that no output shows, once, with the numbers.
    #[test]
    fn warnings_name_each_new_loss_once() {
        let stats = Stats::for_plan(&plan(), "xdp generic copy");
        let before = stats.snapshot();
        assert!(before.warnings_since(&before).is_empty());
        let mut now = before.clone();
        now.flows[0].ttl_expired = 3;
        now.xdp = Some(XdpSnapshot {
            interfaces: vec![XdpInterfaceSnapshot {
                interface: "in0".into(),
                attach: "generic".into(),
                program: [("oversize".to_owned(), 2)].into(),
                ..XdpInterfaceSnapshot::default()
            }],
        });
        let w = now.warnings_since(&before);
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(
            w[0].starts_with("flow tv: 3 datagram(s) arrived with TTL (hop limit) 1 or 0"),
            "{w:?}"
        );
        assert!(
            w[1].starts_with("in0: 2 datagram(s) of configured flows were longer than"),
            "{w:?}"
        );
        assert!(w[1].contains("generic XDP sees unsegmented"), "{w:?}");
        // Told once: nothing new, nothing said.
        assert!(now.warnings_since(&now).is_empty());
        let mut later = now.clone();
        later.flows[0].ttl_expired = 5;
        assert_eq!(
            later.warnings_since(&now),
            [
                "flow tv: 2 datagram(s) arrived with TTL (hop limit) 1 or 0 and were not \
              replicated (5 in all): like a router, fanout replicates only a datagram with a \
              hop left; have the sender use a multicast TTL of 2 or more"
            ]
        );
        let mut capped = later.clone();
        capped.flows[0].rate_limited = 7;
        assert_eq!(
            capped.warnings_since(&later),
            [
                "flow tv: 7 datagram(s) over the flow's rate cap were not replicated (7 in \
              all): the stream runs faster than max_pps or max_mbps allow"
            ]
        );
    }

    /// Two workers serving the same flow (two rx queues): the snapshot is
    /// their sum, and a publish replaces a worker's copy, never adds to it.
    #[test]
    fn snapshot_sums_the_publishers_of_a_flow() {
        let stats = Stats::for_plan(&plan(), "xdp");
        let q0 = stats.publisher("in0 queue 0", &[0]);
        let q1 = stats.publisher("in0 queue 1", &[0]);
        let mut c0 = q0.counters();
        let mut c1 = q1.counters();
        c0[0].received = 4;
        c0[0].outputs[0].sent = 4;
        c0[0].outputs[1].drop(DropReason::NoSlot, 4);
        c1[0].received = 6;
        c1[0].outputs[0].sent = 5;
        c1[0].outputs[0].drop(DropReason::RingFull, 1);
        c1[0].outputs[1].sent = 6;
        q0.publish(&c0);
        q1.publish(&c1);
        q1.publish(&c1);
        let s = stats.snapshot();
        let f = s.flow("tv").unwrap();
        assert_eq!(f.received, 10);
        let (a, b) = (f.output("a").unwrap(), f.output("b").unwrap());
        assert_eq!((a.sent, a.dropped(DropReason::RingFull)), (9, 1));
        assert_eq!((b.sent, b.dropped(DropReason::NoSlot)), (6, 4));
        s.check_accounting().unwrap();
        assert_eq!(stats.totals()[0].0.received, 10);
        // Each publish is one heartbeat of its worker.
        let beat = |worker: &str, beats| Heartbeat {
            worker: worker.to_owned(),
            beats,
        };
        assert_eq!(
            stats.heartbeats(),
            [beat("in0 queue 0", 1), beat("in0 queue 1", 2)]
        );
    }

    #[test]
    fn snapshot_json_round_trip() {
        let stats = Stats::for_plan(&plan(), "socket");
        let publisher = stats.publisher("w", &[0]);
        let mut c = publisher.counters();
        c[0].outputs[0].drop(DropReason::MessageTooBig, 5);
        publisher.publish(&c);
        let s = stats.snapshot();
        let json = serde_json::to_string(&s).unwrap();
        assert!(json.contains("\"message_too_big\":5"), "{json}");
        assert!(json.contains("\"next_hop_unresolved\":0"), "{json}");
        let back: Snapshot = serde_json::from_str(&json).unwrap();
        assert_eq!(back, s);
    }

    #[test]
    fn table_names_flows_outputs_and_reasons() {
        let stats = Stats::for_plan(&plan(), "socket");
        let publisher = stats.publisher("w", &[0]);
        let mut c = publisher.counters();
        (c[0].received, c[0].received_bytes) = (4, 400);
        (c[0].outputs[0].sent, c[0].outputs[0].sent_bytes) = (4, 400);
        (c[0].outputs[1].sent, c[0].outputs[1].sent_bytes) = (1, 100);
        c[0].outputs[1].drop(DropReason::NoBuffer, 3);
        publisher.publish(&c);
        let table = stats.snapshot().to_string();
        assert!(
            table.contains("flow tv: received 4 datagrams (400 bytes)"),
            "{table}"
        );
        assert!(table.contains("no_buffer=3"), "{table}");
        let line_a = table
            .lines()
            .find(|l| l.trim_start().starts_with("a "))
            .unwrap();
        assert!(line_a.trim_end().ends_with('-'), "{table}");
    }

    #[test]
    fn errno_maps_to_reasons() {
        assert_eq!(DropReason::from_errno(libc::EAGAIN), DropReason::WouldBlock);
        assert_eq!(
            DropReason::from_errno(libc::ECONNREFUSED),
            DropReason::Unreachable
        );
        assert_eq!(
            DropReason::from_errno(libc::EHOSTUNREACH),
            DropReason::Unreachable
        );
        assert_eq!(
            DropReason::from_errno(libc::ENETUNREACH),
            DropReason::Unreachable
        );
        assert_eq!(
            DropReason::from_errno(libc::EMSGSIZE),
            DropReason::MessageTooBig
        );
        assert_eq!(DropReason::from_errno(libc::ENOBUFS), DropReason::NoBuffer);
        assert_eq!(DropReason::from_errno(libc::EPERM), DropReason::Other);
        for (i, r) in DropReason::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
        }
    }

    #[test]
    fn frame_counters_are_named_once() {
        let c = FrameCounters {
            rx_packets: 1,
            malformed: 2,
            no_flow: 3,
            bad_rx_desc: 4,
            bad_completion: 5,
            fill_short: 6,
        };
        let names: Vec<&str> = c.fields().iter().map(|(n, _)| *n).collect();
        assert_eq!(
            names,
            [
                "rx_packets",
                "malformed",
                "no_flow",
                "bad_rx_desc",
                "bad_completion",
                "fill_short"
            ]
        );
        let values: Vec<u64> = c.fields().iter().map(|(_, v)| *v).collect();
        assert_eq!(values, [1, 2, 3, 4, 5, 6]);
    }
}
