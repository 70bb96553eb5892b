//! The resolved plan: what an engine runs.
//!
//! A [`Plan`] is built from a validated [`crate::config::Config`] by resolving
//! every interface name against the running system (index, MTU, MAC and
//! addresses). Engines never look at the configuration file; they consume a
//! plan. A plan is plain data: it holds no sockets and no file descriptors.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// How the engine should move packets (`[engine] mode` in the configuration).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// XDP where the interface and kernel allow it, the socket engine otherwise.
    Auto,
    /// XDP only: refuse to start without it.
    Xdp,
    /// The socket engine only.
    Socket,
}

/// A network interface as found on the running system.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    pub name: String,
    pub index: u32,
    pub mtu: u32,
    /// `None` for interfaces without a link-layer address (e.g. `lo`, tun).
    pub mac: Option<[u8; 6]>,
    pub ipv4: Vec<Ipv4Addr>,
    pub ipv6: Vec<Ipv6Addr>,
}

/// Everything an engine needs to run.
#[derive(Debug, Clone)]
pub struct Plan {
    pub mode: Mode,
    /// Datagrams received (and replicated) per batch.
    pub batch_size: usize,
    pub flows: Vec<FlowPlan>,
}

/// One multicast stream taken in on one interface.
#[derive(Debug, Clone)]
pub struct FlowPlan {
    pub name: String,
    pub ingress: Interface,
    /// The multicast group (IPv4 or IPv6).
    pub group: IpAddr,
    pub port: u16,
    /// 802.1Q VLAN id the stream arrives on, if any.
    pub vlan: Option<u16>,
    /// Source-specific: only datagrams from this sender are forwarded.
    pub source: Option<IpAddr>,
    pub outputs: Vec<OutputPlan>,
}

/// Unicast receiver or multicast re-emission.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputKind {
    Unicast,
    Multicast,
}

/// One destination every datagram of a flow is replicated to.
#[derive(Debug, Clone)]
pub struct OutputPlan {
    /// Unique within its flow: the configured name, or `unicast <ip:port>` /
    /// `multicast <group:port>`.
    pub name: String,
    pub kind: OutputKind,
    /// Receiver (unicast) or group (multicast), with its UDP port.
    pub dest: SocketAddr,
    /// Egress interface: required for multicast, optional for unicast (the
    /// kernel's route decides when absent).
    pub interface: Option<Interface>,
    /// UDP source port of the replicas; `None` lets the engine choose
    /// (the socket engine uses an ephemeral port).
    pub source_port: Option<u16>,
    /// IPv4 TTL or IPv6 hop limit of the replicas.
    pub ttl: u8,
}
