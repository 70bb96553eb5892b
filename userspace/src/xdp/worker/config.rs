//! How a [`super::Worker`] is built: its geometry and batch sizes
//! ([`WorkerConfig`]), the flows and outputs it runs ([`FlowSpec`],
//! [`OutputSpec`]), and why it can refuse them ([`WorkerError`]).

use std::net::IpAddr;

use crate::wire::{ReplicaTemplate, replica::MAX_HEADER_LEN};

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
    /// [`crate::stats::DropReason::ChainTooLong`]. [`MAX_TX_CHAIN`] in copy mode; the
    /// device's `xdp_zc_max_segs` in zero-copy mode.
    pub max_tx_chain: usize,
    /// Payloads of at most this many bytes that arrived in one buffer are
    /// copied into each replica's header slot, behind the headers: one
    /// descriptor per replica instead of a chain, and the received frame
    /// goes back to the fill ring at once (architecture.md decision 3: "for tiny
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
    /// VLAN id of the outer tag of a double-tagged (QinQ) stream.
    pub outer_vlan: Option<u16>,
    /// Source-specific: only datagrams from this sender are replicated.
    pub source: Option<IpAddr>,
    /// The flow's rate cap, shared by every worker that receives the flow
    /// (one per rx queue); `None` without a cap.
    pub limiter: Option<crate::rate::SharedLimiter>,
    /// The stream-health check of the flow's datagrams this worker sees.
    pub health: crate::health::HealthMode,
    pub outputs: Vec<OutputSpec>,
}

/// An output as one worker runs it.
#[derive(Debug, Clone)]
pub struct OutputSpec {
    /// Index of the TX port (egress interface) in the worker's ports.
    pub tx: usize,
    /// The replica headers; `None` while the next hop is unresolved (the
    /// replicas are dropped and counted as [`crate::stats::DropReason::NextHopUnresolved`]).
    pub template: Option<ReplicaTemplate>,
    /// The egress interface's MTU: a replica whose IP packet would be
    /// longer is not handed to the kernel (which would drop it unseen) but
    /// counted [`crate::stats::DropReason::MessageTooBig`].
    pub mtu: u32,
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
    #[error("flow {0}: no such flow in the worker")]
    NoSuchFlow(usize),
    /// A flow added under an id other than the next one.
    #[error("flow {id} added: the next flow id is {next}")]
    NotNextFlow { id: usize, next: usize },
    #[error("flow {flow}: output slot {slot} is taken")]
    SlotTaken { flow: usize, slot: usize },
    #[error("flow {flow} ({group} port {port} vlan {vlan:?}) duplicates flow {other}")]
    DuplicateFlow {
        flow: usize,
        other: usize,
        group: IpAddr,
        port: u16,
        vlan: Option<u16>,
    },
}
