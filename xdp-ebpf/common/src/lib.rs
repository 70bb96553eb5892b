//! Map key and value types shared by the XDP program (`xdp-ebpf/program`) and
//! the userspace loader, and the program's frame decoder, which the engine's
//! own parser is tested to agree with (see [`parse`]).
//!
//! Contract: everything stored in a map is `#[repr(C)]`, `Copy`, `no_std` and
//! has its padding spelled out as named zero fields, so both sides agree on
//! every byte (a hash map compares keys byte by byte: stray padding would make
//! a configured flow silently miss). Multi-byte fields are in host byte order;
//! addresses are in network order. [`parse`] turns a frame into a [`FlowKey`]
//! or the reason it is not one; it never panics and never reads out of bounds.
//!
//! The map names and sizes below are the ones the program declares; the
//! loader and the tests look the maps up by these names.
#![cfg_attr(not(test), no_std)]

pub mod parse;

use core::net::IpAddr;

/// Name of the XDP program (the function carrying `#[xdp(frags)]`).
pub const PROGRAM_NAME: &str = "fanout_xdp";
/// `HashMap<FlowKey, FlowValue>`: the configured flows.
pub const FLOWS_MAP: &str = "FLOWS";
/// `XskMap`: AF_XDP socket per rx queue (key = queue index).
pub const XSKS_MAP: &str = "XSKS";
/// `PerCpuArray<u64>` indexed by [`Counter`].
pub const COUNTERS_MAP: &str = "COUNTERS";
/// `Array<Ingress>` of one entry: the ingress interface the program serves.
pub const INGRESS_MAP: &str = "INGRESS";
/// `PerCpuArray<u64>` of [`MAX_FLOWS`] x [`FlowCounter::COUNT`]: what the
/// program did with each flow's datagrams ([`FlowCounter::slot`]).
pub const FLOW_COUNTERS_MAP: &str = "FLOW_COUNTERS";

/// Capacity of [`FLOWS_MAP`].
pub const MAX_FLOWS: u32 = 1024;
/// Capacity of [`XSKS_MAP`]: the highest rx queue index served, plus one.
pub const MAX_QUEUES: u32 = 256;

/// [`FlowKey::family`] of an IPv4 flow.
pub const FAMILY_IPV4: u8 = 4;
/// [`FlowKey::family`] of an IPv6 flow.
pub const FAMILY_IPV6: u8 = 6;

/// [`FlowValue::flags`]: the entry is a stream of source-specific channels
/// (every flow on it has a `source`), not a flow: the datagram's flow is
/// the entry under the same key with the datagram's source
/// ([`FlowKey::with_source`]); no such entry means no channel of the
/// stream has that source (`SourceRejected`).
pub const FLOW_BY_SOURCE: u32 = 1;

/// Key of the flows map: which datagrams belong to a configured flow.
///
/// `vlan` is the VLAN id of the innermost 802.1Q/802.1ad tag (the one next to
/// the IP header), 0 for an untagged frame (a priority tag, VID 0, counts as
/// untagged); `outer_vlan` the outer tag's of a double-tagged (QinQ) frame,
/// 0 otherwise. Matching is exact: an entry with `vlan = 0` does not match
/// tagged frames, and S-VLAN 7 / C-VLAN 100 is not VLAN 100, because the
/// same group on two VLANs is two different streams and merging them would
/// corrupt both.
///
/// `source` is zero in the key of a stream (group, port, VLAN), which is the
/// key the decoder gives; a source-specific channel is found under the same
/// key with its source, after the stream's entry said [`FLOW_BY_SOURCE`].
/// IPTV SSM channels commonly share one group and port and differ by source:
/// `(S1, G)` and `(S2, G)` are two flows with two outputs lists.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FlowKey {
    /// Group address in network order; IPv4 uses the first 4 bytes, the rest
    /// stays zero.
    pub group: [u8; 16],
    /// Source address (same layout as `group`) of a channel's key; zero in
    /// a stream's key.
    pub source: [u8; 16],
    /// UDP destination port, host order.
    pub port: u16,
    /// VLAN id (12 bits), 0 when untagged.
    pub vlan: u16,
    /// [`FAMILY_IPV4`] or [`FAMILY_IPV6`].
    pub family: u8,
    /// Explicit padding: always zero.
    pub pad: u8,
    /// Outer VLAN id of a double-tagged frame (12 bits), 0 otherwise.
    pub outer_vlan: u16,
}

/// Size of a [`FlowKey`] in a map.
pub const FLOW_KEY_LEN: usize = 40;
const _: () = assert!(core::mem::size_of::<FlowKey>() == FLOW_KEY_LEN);

impl FlowKey {
    /// The stream key for `group`, `port` and `vlan` (0 = untagged).
    pub const fn new(group: IpAddr, port: u16, vlan: u16) -> Self {
        let (family, group) = ip_bytes(group);
        Self {
            group,
            source: [0; 16],
            port,
            vlan,
            family,
            pad: 0,
            outer_vlan: 0,
        }
    }

    /// This key inside the outer (802.1ad S-VLAN, or outer 802.1Q) tag
    /// `outer`: the key of a double-tagged stream.
    #[inline(always)]
    pub const fn with_outer_vlan(mut self, outer: u16) -> Self {
        self.outer_vlan = outer;
        self
    }

    /// The key of this stream's channel from `source` (16-byte layout, as
    /// in [`parse::Datagram::source`]).
    #[inline(always)]
    pub const fn with_source(mut self, source: [u8; 16]) -> Self {
        self.source = source;
        self
    }

    /// The key of this stream's channel from the address `source`.
    pub const fn with_source_ip(self, source: IpAddr) -> Self {
        self.with_source(ip_bytes(source).1)
    }

    /// The key's bytes as the map stores them (host byte order for `port`
    /// and `vlan`), for map APIs that take raw bytes.
    pub fn to_ne_bytes(&self) -> [u8; FLOW_KEY_LEN] {
        let mut b = [0u8; FLOW_KEY_LEN];
        b[..16].copy_from_slice(&self.group);
        b[16..32].copy_from_slice(&self.source);
        b[32..34].copy_from_slice(&self.port.to_ne_bytes());
        b[34..36].copy_from_slice(&self.vlan.to_ne_bytes());
        b[36] = self.family;
        b[37] = self.pad;
        b[38..40].copy_from_slice(&self.outer_vlan.to_ne_bytes());
        b
    }
}

/// Value of the flows map: which flow a key is, or that its channels are
/// told apart by source.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FlowValue {
    /// The engine's index of the flow (position in the plan); for a
    /// [`FLOW_BY_SOURCE`] stream, the index of its first channel (to which
    /// the stream's rejected sources are attributed).
    pub flow_id: u32,
    /// Bit set of `FLOW_*` flags.
    pub flags: u32,
}

/// Size of a [`FlowValue`] in a map.
pub const FLOW_VALUE_LEN: usize = 8;
const _: () = assert!(core::mem::size_of::<FlowValue>() == FLOW_VALUE_LEN);

impl FlowValue {
    /// The entry of flow `flow_id`: an any-source flow under its stream
    /// key, a source-specific channel under its channel key.
    pub const fn flow(flow_id: u32) -> Self {
        Self { flow_id, flags: 0 }
    }

    /// The entry of a stream whose flows are source-specific channels;
    /// `first` is the lowest flow index among them.
    pub const fn by_source(first: u32) -> Self {
        Self {
            flow_id: first,
            flags: FLOW_BY_SOURCE,
        }
    }

    /// Whether the datagram's flow is found again under its source.
    #[inline(always)]
    pub const fn is_by_source(&self) -> bool {
        self.flags & FLOW_BY_SOURCE != 0
    }

    /// The value's bytes as the map stores them (host byte order).
    pub fn to_ne_bytes(&self) -> [u8; FLOW_VALUE_LEN] {
        let mut b = [0u8; FLOW_VALUE_LEN];
        b[..4].copy_from_slice(&self.flow_id.to_ne_bytes());
        b[4..8].copy_from_slice(&self.flags.to_ne_bytes());
        b
    }
}

/// [`Ingress::flags`]: [`Ingress::mac`] holds the interface's address.
pub const INGRESS_HAS_MAC: u16 = 1;

/// What the program knows of the interface it is attached to (written by
/// userspace at attach time).
///
/// With a MAC, a frame whose destination MAC is neither multicast (group
/// bit set, broadcast included) nor this one is another host's (a NIC in
/// promiscuous mode, a bridge flooding an unknown unicast): the kernel
/// would drop it (`PACKET_OTHERHOST`), so it is passed to the kernel, not
/// replicated (`OtherHost`). Without one (flags 0, as a fresh map has it)
/// no frame is judged by its MAC.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Ingress {
    /// The interface's own MAC.
    pub mac: [u8; 6],
    /// Bit set of `INGRESS_*` flags.
    pub flags: u16,
}

const _: () = assert!(core::mem::size_of::<Ingress>() == 8);

impl Ingress {
    /// The entry of an interface with `mac` (`None`: no link address).
    pub const fn new(mac: Option<[u8; 6]>) -> Self {
        match mac {
            Some(mac) => Self {
                mac,
                flags: INGRESS_HAS_MAC,
            },
            None => Self {
                mac: [0; 6],
                flags: 0,
            },
        }
    }

    /// Whether a frame to `dst` is for this host: a multicast (or
    /// broadcast) destination, or this interface's own MAC when it is known.
    #[inline(always)]
    pub fn accepts(&self, dst: &[u8; 6]) -> bool {
        dst[0] & 1 != 0 || self.flags & INGRESS_HAS_MAC == 0 || *dst == self.mac
    }
}

/// Family and 16-byte network-order form of an address (IPv4 in the first 4).
const fn ip_bytes(ip: IpAddr) -> (u8, [u8; 16]) {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            let mut b = [0u8; 16];
            b[0] = o[0];
            b[1] = o[1];
            b[2] = o[2];
            b[3] = o[3];
            (FAMILY_IPV4, b)
        }
        IpAddr::V6(v6) => (FAMILY_IPV6, v6.octets()),
    }
}

/// Index of a per-CPU counter in [`COUNTERS_MAP`].
///
/// Every frame the program sees lands in exactly one verdict counter, and
/// leaves by exactly one action:
///
/// - `seen = matched + other_host + source_rejected + no_flow + malformed + fragment + not_ip + not_udp + ext_headers`
/// - `matched = redirected + no_socket + oversize`
/// - `seen = redirected + passed`
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Counter {
    /// Every frame the program ran on.
    Seen = 0,
    /// A configured flow (and its source, if any) matched.
    Matched = 1,
    /// Handed to the AF_XDP socket of the rx queue (`XDP_REDIRECT`).
    Redirected = 2,
    /// Returned `XDP_PASS` (to the kernel, untouched).
    Passed = 3,
    /// Broken or truncated headers (bad version, IHL, lengths).
    Malformed = 4,
    /// A source-specific stream (`FLOW_BY_SOURCE`) from a source that none
    /// of its channels has.
    SourceRejected = 5,
    /// An IPv4 fragment or an IPv6 fragment header: left to the kernel.
    Fragment = 6,
    /// Neither IPv4 nor IPv6 (ARP, LLDP, three VLAN tags, ...).
    NotIp = 7,
    /// IP but not UDP (or behind more IPv6 extension headers than the
    /// program walks).
    NotUdp = 8,
    /// A well-formed UDP datagram of no configured flow.
    NoFlow = 9,
    /// Matched, but no AF_XDP socket on that queue: passed (fail-open).
    NoSocket = 10,
    /// Matched, but the IP packet is longer than the ingress interface's
    /// MTU: no single datagram that crossed a wire is, so it is a GSO or GRO
    /// train (a local sender's UDP GSO over veth or a tap, seen by generic
    /// XDP, which runs on the kernel's unsegmented skb). Its segment size is
    /// not in the packet, so it cannot be split: passed to the kernel.
    Oversize = 11,
    /// A configured flow's datagram in a frame to another host's MAC
    /// (neither multicast nor the ingress interface's): the kernel drops
    /// it, and so is it not replicated; passed (see [`Ingress`]).
    OtherHost = 12,
    /// UDP behind IPv6 extension headers (hop-by-hop, routing, destination
    /// options): left to the kernel.
    ExtHeaders = 13,
}

impl Counter {
    /// Number of counters (entries of [`COUNTERS_MAP`]).
    pub const COUNT: u32 = 14;

    /// Every counter, in index order.
    pub const ALL: [Counter; Self::COUNT as usize] = [
        Counter::Seen,
        Counter::Matched,
        Counter::Redirected,
        Counter::Passed,
        Counter::Malformed,
        Counter::SourceRejected,
        Counter::Fragment,
        Counter::NotIp,
        Counter::NotUdp,
        Counter::NoFlow,
        Counter::NoSocket,
        Counter::Oversize,
        Counter::OtherHost,
        Counter::ExtHeaders,
    ];

    /// Stable snake_case name, for metrics and logs.
    pub const fn name(self) -> &'static str {
        match self {
            Counter::Seen => "seen",
            Counter::Matched => "matched",
            Counter::Redirected => "redirected",
            Counter::Passed => "passed",
            Counter::Malformed => "malformed",
            Counter::SourceRejected => "source_rejected",
            Counter::Fragment => "fragment",
            Counter::NotIp => "not_ip",
            Counter::NotUdp => "not_udp",
            Counter::NoFlow => "no_flow",
            Counter::NoSocket => "no_socket",
            Counter::Oversize => "oversize",
            Counter::OtherHost => "other_host",
            Counter::ExtHeaders => "ext_headers",
        }
    }

    /// The map index.
    pub const fn index(self) -> u32 {
        self as u32
    }
}

/// What the program did with one flow's datagrams: a counter of
/// [`FLOW_COUNTERS_MAP`] per flow, the flow being the [`FlowValue::flow_id`]
/// of its entry (its position among the flows of the interface, below
/// [`MAX_FLOWS`]).
///
/// Per flow: `redirected` datagrams reach the AF_XDP socket's RX ring (or
/// are dropped by the kernel there, ring full or no fill frame: the worker
/// never sees them); every other counter is a datagram of the flow passed
/// to the kernel and not replicated.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FlowCounter {
    /// Handed to the AF_XDP socket (`XDP_REDIRECT`).
    Redirected = 0,
    /// The first fragment of one of its datagrams (the kernel reassembles).
    Fragment = 1,
    /// One of its datagrams behind IPv6 extension headers.
    ExtHeaders = 2,
    /// Longer than the ingress MTU (see [`Counter::Oversize`]).
    Oversize = 3,
    /// In a frame to another host's MAC (see [`Counter::OtherHost`]).
    OtherHost = 4,
    /// No AF_XDP socket on the rx queue (fail-open).
    NoSocket = 5,
}

impl FlowCounter {
    /// Counters per flow.
    pub const COUNT: u32 = 6;

    /// Every counter, in index order.
    pub const ALL: [FlowCounter; Self::COUNT as usize] = [
        FlowCounter::Redirected,
        FlowCounter::Fragment,
        FlowCounter::ExtHeaders,
        FlowCounter::Oversize,
        FlowCounter::OtherHost,
        FlowCounter::NoSocket,
    ];

    /// Stable snake_case name, for metrics and logs.
    pub const fn name(self) -> &'static str {
        match self {
            FlowCounter::Redirected => "redirected",
            FlowCounter::Fragment => "fragment",
            FlowCounter::ExtHeaders => "ext_headers",
            FlowCounter::Oversize => "oversize",
            FlowCounter::OtherHost => "other_host",
            FlowCounter::NoSocket => "no_socket",
        }
    }

    /// The index in [`FLOW_COUNTERS_MAP`] of this counter of flow `flow`,
    /// `None` for a flow id the map has no room for.
    #[inline(always)]
    pub const fn slot(self, flow: u32) -> Option<u32> {
        if flow < MAX_FLOWS {
            Some(flow * Self::COUNT + self as u32)
        } else {
            None
        }
    }
}

// SAFETY: both types are `#[repr(C)]`, `Copy`, made only of integers and byte
// arrays, and have no implicit padding (the sizes are asserted above), so
// every bit pattern is a valid value and every byte is initialised.
#[cfg(feature = "user")]
#[expect(unsafe_code, reason = "aya::Pod is an unsafe marker trait")]
mod pod {
    unsafe impl aya::Pod for super::FlowKey {}
    unsafe impl aya::Pod for super::FlowValue {}
    unsafe impl aya::Pod for super::Ingress {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::net::{Ipv4Addr, Ipv6Addr};

    #[test]
    fn key_bytes_are_laid_out_as_documented() {
        let k = FlowKey::new(IpAddr::V4(Ipv4Addr::new(239, 1, 2, 3)), 5000, 100);
        let b = k.to_ne_bytes();
        let mut want = [0u8; FLOW_KEY_LEN];
        want[..4].copy_from_slice(&[239, 1, 2, 3]);
        want[32..34].copy_from_slice(&5000u16.to_ne_bytes());
        want[34..36].copy_from_slice(&100u16.to_ne_bytes());
        want[36] = FAMILY_IPV4;
        assert_eq!(b, want);

        let s = k.with_source_ip(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)));
        want[16..20].copy_from_slice(&[10, 0, 0, 1]);
        assert_eq!(s.to_ne_bytes(), want);
        assert_ne!(s, k);
        assert_eq!(s.with_source([0; 16]), k);
        let q = k.with_outer_vlan(7);
        want[16..20].fill(0);
        want[38..40].copy_from_slice(&7u16.to_ne_bytes());
        assert_eq!(q.to_ne_bytes(), want);
        assert_ne!(q, k);

        let g6 = Ipv6Addr::new(0xff3e, 0, 0, 0, 0, 0, 0, 0x1234);
        let k6 = FlowKey::new(IpAddr::V6(g6), 1, 0);
        assert_eq!(k6.family, FAMILY_IPV6);
        assert_eq!(&k6.to_ne_bytes()[..16], &g6.octets());
        let s6 = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1);
        assert_eq!(
            &k6.with_source_ip(IpAddr::V6(s6)).to_ne_bytes()[16..32],
            &s6.octets()
        );
    }

    #[test]
    fn value_bytes_and_flags() {
        let v = FlowValue::flow(7);
        assert_eq!(v.to_ne_bytes()[..4], 7u32.to_ne_bytes());
        assert_eq!(v.to_ne_bytes()[4..], [0; 4]);
        assert!(!v.is_by_source());
        let s = FlowValue::by_source(3);
        assert_eq!(s.to_ne_bytes()[..4], 3u32.to_ne_bytes());
        assert_eq!(s.to_ne_bytes()[4..], FLOW_BY_SOURCE.to_ne_bytes());
        assert!(s.is_by_source());
    }

    #[test]
    fn ingress_accepts_multicast_and_its_own_mac() {
        let own = [0x02, 0, 0, 0, 0, 0x10];
        let other = [0x02, 0, 0, 0, 0, 0x99];
        let mcast = [0x01, 0, 0x5e, 1, 1, 1];
        let v6 = [0x33, 0x33, 0, 0, 0, 1];
        let bcast = [0xff; 6];
        let i = Ingress::new(Some(own));
        assert_eq!(
            [own, other, mcast, v6, bcast].map(|m| i.accepts(&m)),
            [true, false, true, true, true]
        );
        // Without a MAC, nothing is judged by it.
        let none = Ingress::new(None);
        assert!(none.accepts(&other) && none.accepts(&own));
        assert_eq!(Ingress::default(), none);
    }

    #[test]
    fn counters_are_indexed_in_order() {
        for (i, c) in Counter::ALL.iter().enumerate() {
            assert_eq!(c.index() as usize, i);
        }
        assert_eq!(Counter::ALL.len(), Counter::COUNT as usize);
    }

    #[test]
    fn flow_counters_have_a_slot_per_flow() {
        for (i, c) in FlowCounter::ALL.iter().enumerate() {
            assert_eq!(c.slot(0), Some(i as u32));
            assert_eq!(c.slot(2), Some(2 * FlowCounter::COUNT + i as u32));
        }
        let last = FlowCounter::NoSocket.slot(MAX_FLOWS - 1).unwrap();
        assert_eq!(last, MAX_FLOWS * FlowCounter::COUNT - 1);
        assert_eq!(FlowCounter::Redirected.slot(MAX_FLOWS), None);
    }
}
