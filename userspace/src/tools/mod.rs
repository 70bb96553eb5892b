//! Lab tools: the numbered, self-checking datagrams that `fanout gen` sends and
//! `fanout sink` verifies, and the per-output accounting of what arrived.
//!
//! Contract: pure logic, no I/O and no privileges. [`payload`] defines the
//! datagram format (any corrupted byte is detected); [`SeqTracker`] turns a
//! stream of received datagrams into received / missing / duplicated /
//! reordered / corrupted counts against an expected count; [`SinkReport`] is
//! the JSON document `fanout sink --report` writes and the demo and tests read.
//! Per-datagram work never allocates.

pub mod payload;
mod report;
mod seq;

pub use payload::PayloadError;
pub use report::{OutputReport, SinkReport};
pub use seq::SeqTracker;
