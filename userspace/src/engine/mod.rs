//! The AF_XDP fan-out engine: the batch loop and frame accounting.
//!
//! The engine sees the kernel only through the traits in [`ring`]: one
//! implementation maps real AF_XDP rings and UMEM (`crate::xsk`), one lives in
//! memory ([`ring::mem`]), so replication, batching and frame recycling are
//! tested and benchmarked without root.

pub mod ring;
