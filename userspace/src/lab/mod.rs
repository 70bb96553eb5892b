//! The lab: network namespaces that the project creates for itself, so the
//! engine, the demo, the tests and the benchmarks have interfaces and a
//! multicast source on any Linux machine.
//!
//! Contract: everything the lab creates lives inside namespaces whose names
//! start with `fo-`; only private addresses ([`addr`]) are configured, only
//! inside them; interfaces are created directly inside their namespaces (never
//! in the caller's); every namespace is owned by a [`Netns`] guard that deletes
//! it on drop, also while a test panics. [`Lab::down`] removes what a crashed
//! run left behind. The lab never touches the host's own interfaces, routes or
//! sysctls. It drives `ip(8)` (iproute2) and `setns(2)`; it needs root.
//! [`Process`] runs the lab's programs (engine, `fanout lab gen`, `fanout lab sink`)
//! inside it and kills them if dropped while running; [`privileged`] decides
//! whether a privileged test runs, fails or skips loudly.
//!
//! Topology of [`Lab::up`] (MTU 9000 on every link, `lo` up everywhere):
//!
//! ```text
//!  {prefix}-src          {prefix}-edge                 {prefix}-sink
//!  src0 10.201.0.1 ----- in0  10.201.0.2
//!       fd00:201::1           fd00:201::2
//!                        out0 10.202.0.1 ------------- snk0 10.202.0.2
//!                             fd00:202::1                   fd00:202::2
//!                        out1 10.203.0.1 ------------- snk1 10.203.0.2
//!                             fd00:203::1                   fd00:203::2
//! ```
//!
//! In the source namespace 224.0.0.0/4 and ff00::/8 route via `src0`, so a
//! generator's multicast stream reaches `in0`; `rp_filter` is strict (1)
//! everywhere, as on a hardened host.

//!
//! The lab is a developer's tool, not part of the product: it is built only
//! with the cargo feature `lab` (the tests, the benchmarks and xtask turn it
//! on; `cargo build -p fanout` leaves it out), and so are the `fanout lab`
//! commands. Its parts: [`netns`] (namespaces, links, the topology),
//! [`process`] (children and deadlines), [`harness`] (privileged tests),
//! [`icmp`] (ping), [`snmp`] (the kernel's counters of what receivers
//! accepted), and the numbered datagrams of `fanout lab gen` /
//! `fanout lab sink`: [`payload`] (the self-checking format), [`SeqTracker`]
//! (what arrived against what was sent) and [`SinkReport`] (the JSON a sink
//! writes).

pub mod harness;
pub mod icmp;
pub mod netns;
pub mod payload;
pub mod process;
mod report;
mod seq;
pub mod snmp;

pub use harness::{
    SKIP_LOG_ENV, privileged, skip_loudly, unique_prefix, xdp_object_path, xdp_ready,
};
pub use icmp::{echo_request, ping};
pub use netns::{Lab, LabError, MTU, NAME_PREFIX, Netns, STRICT_RP_FILTER, addr, iface, veth};
pub use payload::PayloadError;
pub use process::{Finished, Process, wait_until};
pub use report::{OutputReport, SinkReport};
pub use seq::SeqTracker;
