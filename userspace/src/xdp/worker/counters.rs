//! The worker's counters: plain integers owned by the one thread that runs
//! the worker, read by whoever holds it (a snapshot is a `clone`).
//!
//! Contract (DESIGN decision 11): a datagram that matches a flow is counted
//! once in that flow's `received`, and then, for every output of the flow,
//! exactly once in `sent` or in one `dropped` reason, within the same
//! [`super::Worker::poll`]: `sent + dropped == received` per output after
//! every poll. A replica is `sent` when the TX ring took its whole chain;
//! what the wire does after that is the kernel's business (its completion
//! only frees frames). Frames that never became a flow's datagram are
//! counted once in the worker's [`WorkerCounters`].
//!
//! Names follow `fanout::stats` of the socket engine (`received`,
//! `received_bytes`, `source_rejected`, `sent`, `sent_bytes`, `dropped` by
//! reason) so that the two can be unified.

/// Why a replica was not sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DropReason {
    /// The egress TX ring was full or refused the chain.
    RingFull,
    /// The output has no template yet: the next hop's MAC is unknown.
    NextHopUnresolved,
    /// Every header slot is in flight (completions are late).
    NoSlot,
    /// The template refused the datagram (`wire::WriteError`), e.g. an IPv6
    /// datagram for an IPv4 output.
    HeaderError,
    /// The chain would have more descriptors than the kernel sends per
    /// packet ([`super::WorkerConfig::max_tx_chain`]).
    ChainTooLong,
}

impl DropReason {
    /// Number of reasons (size of the per-output array).
    pub const COUNT: usize = 5;
    /// Every reason, in array order.
    pub const ALL: [DropReason; Self::COUNT] = [
        DropReason::RingFull,
        DropReason::NextHopUnresolved,
        DropReason::NoSlot,
        DropReason::HeaderError,
        DropReason::ChainTooLong,
    ];

    /// snake_case name, as in `fanout::stats`.
    pub fn name(self) -> &'static str {
        match self {
            DropReason::RingFull => "ring_full",
            DropReason::NextHopUnresolved => "next_hop_unresolved",
            DropReason::NoSlot => "no_slot",
            DropReason::HeaderError => "header_error",
            DropReason::ChainTooLong => "chain_too_long",
        }
    }
}

/// Counters of one output.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutputCounters {
    /// Replicas whose whole chain the TX ring took.
    pub sent: u64,
    /// Their bytes on the wire (headers + payload).
    pub sent_bytes: u64,
    /// Replicas dropped, by [`DropReason`] (index = `reason as usize`).
    pub dropped: [u64; DropReason::COUNT],
}

impl OutputCounters {
    /// Replicas dropped for `reason`.
    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.dropped[reason as usize]
    }

    /// Replicas dropped for any reason.
    pub fn dropped_total(&self) -> u64 {
        self.dropped.iter().sum()
    }
}

/// Counters of one flow and its outputs (in the flow's output order).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FlowCounters {
    /// Datagrams accepted for replication.
    pub received: u64,
    /// Their UDP payload bytes.
    pub received_bytes: u64,
    /// Datagrams of the flow's group, port and VLAN from another source.
    pub source_rejected: u64,
    pub outputs: Vec<OutputCounters>,
}

impl FlowCounters {
    /// Whether `sent + dropped == received` holds for every output.
    pub fn balanced(&self) -> bool {
        self.outputs
            .iter()
            .all(|o| o.sent + o.dropped_total() == self.received)
    }
}

/// Frames that are nobody's datagram, and ring anomalies.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkerCounters {
    /// Packets (chains) taken from the RX ring.
    pub rx_packets: u64,
    /// Frames `wire::parse_head` refused (frames recycled at once).
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
