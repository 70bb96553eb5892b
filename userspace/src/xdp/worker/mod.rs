//! The AF_XDP fan-out engine: the batch loop and frame accounting.
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
//! copied into the header slots as above (DESIGN decision 3); a frame goes back to
//! the fill ring exactly once, after the last descriptor pointing into it has
//! completed (or was refused); a malformed or unmatched packet is counted and
//! its frames recycled in the same poll; a full or refusing TX ring costs
//! only its own replicas (counted as [`DropReason::RingFull`]), never a wait;
//! per output, `sent + dropped == received` after every poll ([`counters`]).
//! The loop allocates nothing after [`Worker::new`] and never panics on
//! packet contents or on bad descriptors from the kernel (they are counted).
//!
//! The engine sees the kernel only through the traits in [`ring`]: one
//! implementation maps real AF_XDP rings and UMEM (`crate::xdp::xsk`), one lives in
//! memory ([`ring::mem`]), so replication, batching and frame recycling are
//! tested and benchmarked without root.

pub mod counters;
mod index;
pub mod ring;
mod worker;

pub use counters::{DropReason, FlowCounters, OutputCounters, WorkerCounters};
pub use worker::{
    DEFAULT_INLINE_MAX, DEFAULT_SLOT_SIZE, FlowSpec, FrameCensus, MAX_INLINE, MAX_RX_CHAIN,
    MAX_TX_CHAIN, OutputSpec, PollResult, Worker, WorkerConfig, WorkerError,
};

#[cfg(test)]
mod tests;
