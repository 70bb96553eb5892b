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
//! generator's multicast stream reaches `in0`; `rp_filter` is off everywhere.

//!
//! The lab is a developer's tool, not part of the product: it is built only
//! with the cargo feature `lab` (the tests, the benchmarks and xtask turn it
//! on; `cargo build -p fanout` leaves it out), and so are the `fanout lab`
//! commands. Its parts: [`netns`] (namespaces, links, the topology),
//! [`process`] (children and deadlines), [`harness`] (privileged tests),
//! [`icmp`] (ping), and the numbered datagrams of `fanout lab gen` /
//! `fanout lab sink`: [`payload`] (the self-checking format), [`SeqTracker`]
//! (what arrived against what was sent) and [`SinkReport`] (the JSON a sink
//! writes).

use std::{io, path::PathBuf};

pub mod harness;
pub mod icmp;
pub mod netns;
pub mod payload;
pub mod process;
mod report;
mod seq;

pub use harness::{
    SKIP_LOG_ENV, privileged, skip_loudly, unique_prefix, xdp_object_path, xdp_ready,
};
pub use icmp::{echo_request, ping};
pub use netns::{Lab, Netns, veth};
pub use payload::PayloadError;
pub use process::{Finished, Process, wait_until};
pub use report::{OutputReport, SinkReport};
pub use seq::SeqTracker;

/// Every namespace the lab creates starts with this.
pub const NAME_PREFIX: &str = "fo-";

/// The MTU of every lab link.
pub const MTU: u32 = 9000;

/// Interface names inside the lab namespaces.
pub mod iface {
    /// Source side of the ingress link (source namespace).
    pub const SRC0: &str = "src0";
    /// Edge side of the ingress link (edge namespace).
    pub const IN0: &str = "in0";
    /// Edge side of the first egress link (edge namespace).
    pub const OUT0: &str = "out0";
    /// Sink side of the first egress link (sink namespace).
    pub const SNK0: &str = "snk0";
    /// Edge side of the second egress link (edge namespace).
    pub const OUT1: &str = "out1";
    /// Sink side of the second egress link (sink namespace).
    pub const SNK1: &str = "snk1";
}

/// The private addresses of the lab (IPv4 /24, IPv6 /64 with `nodad`).
pub mod addr {
    use std::net::{Ipv4Addr, Ipv6Addr};

    /// IPv4 prefix length of every lab link.
    pub const PREFIX_V4: u8 = 24;
    /// IPv6 prefix length of every lab link.
    pub const PREFIX_V6: u8 = 64;

    pub const SRC0_V4: Ipv4Addr = Ipv4Addr::new(10, 201, 0, 1);
    pub const SRC0_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x201, 0, 0, 0, 0, 0, 1);
    pub const IN0_V4: Ipv4Addr = Ipv4Addr::new(10, 201, 0, 2);
    pub const IN0_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x201, 0, 0, 0, 0, 0, 2);
    pub const OUT0_V4: Ipv4Addr = Ipv4Addr::new(10, 202, 0, 1);
    pub const OUT0_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x202, 0, 0, 0, 0, 0, 1);
    pub const SNK0_V4: Ipv4Addr = Ipv4Addr::new(10, 202, 0, 2);
    pub const SNK0_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x202, 0, 0, 0, 0, 0, 2);
    pub const OUT1_V4: Ipv4Addr = Ipv4Addr::new(10, 203, 0, 1);
    pub const OUT1_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x203, 0, 0, 0, 0, 0, 1);
    pub const SNK1_V4: Ipv4Addr = Ipv4Addr::new(10, 203, 0, 2);
    pub const SNK1_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x203, 0, 0, 0, 0, 0, 2);
}

/// Errors of the lab. Each names the command or namespace involved.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// A command ran and exited unsuccessfully.
    #[error("`{command}` failed ({status}): {stderr}")]
    Command {
        /// The command line, as run.
        command: String,
        /// Its exit status.
        status: String,
        /// Its standard error, trimmed.
        stderr: String,
    },
    /// A command could not be started at all.
    #[error("could not start `{command}`: {source}")]
    Spawn {
        /// The command line.
        command: String,
        /// Why it could not start.
        #[source]
        source: io::Error,
    },
    /// A namespace name or lab prefix the lab refuses to use.
    #[error("invalid lab name {name:?}: {reason}")]
    Name {
        /// The rejected name.
        name: String,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// The namespace file could not be opened.
    #[error("open network namespace {}: {source}", path.display())]
    Open {
        /// The namespace file.
        path: PathBuf,
        /// Why it could not be opened.
        #[source]
        source: io::Error,
    },
    /// `setns(CLONE_NEWNET)` into the namespace failed.
    #[error("setns(CLONE_NEWNET) into {name}: {source}")]
    Setns {
        /// The namespace.
        name: String,
        /// The errno.
        #[source]
        source: nix::Error,
    },
    /// A signal could not be sent to a lab process.
    #[error("signal {name}: {source}")]
    Signal {
        /// The process's label.
        name: String,
        /// The errno.
        #[source]
        source: nix::Error,
    },
    /// Something did not happen in time.
    #[error("timed out after {timeout:?} waiting for {what}")]
    Timeout {
        /// What was awaited.
        what: String,
        /// How long.
        timeout: std::time::Duration,
    },
    /// A sysctl inside a namespace could not be written.
    #[error("write {key} in namespace {name}: {source}")]
    Sysctl {
        /// The namespace.
        name: String,
        /// The /proc/sys path.
        key: String,
        /// Why the write failed.
        #[source]
        source: io::Error,
    },
}
