//! Zero-copy header views, the frame parser, checksums and replica headers.
//!
//! `wire` owns the byte layout of everything fanout reads or writes on the
//! wire: Ethernet II with up to two VLAN tags (802.1ad / 802.1Q), IPv4 (with
//! options on receive), the IPv6 fixed header and UDP.
//!
//! It works at two levels:
//!
//! * typed views ([`ethernet::Frame`], [`ethernet::VlanTag`], [`ipv4::Packet`],
//!   [`ipv6::Packet`], [`udp::Packet`]) over any `T: AsRef<[u8]>`: named field
//!   ranges, getters after the field names, `set_*` setters for
//!   `T: AsMut<[u8]>`. `new_checked` validates the buffer once; after it, no
//!   getter panics. `new_unchecked` skips the check: its getters and setters
//!   panic when the buffer is too short (that is the caller's contract);
//! * the hot-path pair the engines call per packet: [`parse`] turns a received
//!   frame into a small [`Datagram`] (or a [`ParseError`] to count), and
//!   [`ReplicaTemplate::write`] writes the Ethernet/IP/UDP headers of one
//!   replica, adjusting the received UDP checksum incrementally (RFC 1624, see
//!   [`checksum`]) so that the payload is never read.
//!
//! Promises: nothing in this module allocates, and [`parse`] never panics,
//! whatever the input. Nothing here logs: errors are small `Copy` values that
//! the caller counts.
//!
//! Non-goals: IPv4 fragments and IPv6 extension headers are rejected, not
//! reassembled or walked; replicas carry no IPv4 options; a replica has the
//! same IP family as the datagram it copies.

pub mod checksum;
pub mod ethernet;
pub mod ipv4;
pub mod ipv6;
mod parse;
pub mod replica;
pub mod udp;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

pub use parse::{Datagram, parse, parse_head};
pub use replica::{Received, ReplicaSpec, ReplicaTemplate, TemplateError, TosPolicy, WriteError};

/// IP protocol number of UDP (IPv4 `protocol`, IPv6 `next header`).
pub const IPPROTO_UDP: u8 = 17;

mod field {
    pub type Field = core::ops::Range<usize>;
    pub type Rest = core::ops::RangeFrom<usize>;
}

/// Why a buffer is not a datagram fanout can replicate.
///
/// Returned by the views' `new_checked` and by [`parse`]; the engine counts
/// it (one counter per variant) and passes or drops the frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum ParseError {
    /// The buffer ends before a header, or before the length a header claims.
    #[error("truncated: the buffer is shorter than a header or a length field claims")]
    Truncated,
    /// More than two VLAN tags, or a second tag that is not 802.1Q.
    #[error("unsupported VLAN tag stack")]
    BadVlan,
    /// The (inner) ethertype is neither IPv4 nor IPv6.
    #[error("not IP: ethertype {0:#06x}")]
    NotIp(u16),
    /// The IP version field does not match the ethertype.
    #[error("bad IP version {0}")]
    BadVersion(u8),
    /// IPv4 IHL below 5.
    #[error("bad IPv4 IHL {0}")]
    BadIhl(u8),
    /// A length field is inconsistent (IPv4 total length below the header
    /// length, UDP length below 8 or beyond the IP payload).
    #[error("inconsistent length field")]
    BadLength,
    /// The IPv4 header checksum does not verify.
    #[error("bad IPv4 header checksum")]
    BadChecksum,
    /// An IPv4 fragment (MF set or a non-zero offset), or an IPv6 packet
    /// whose next header is a fragment header.
    #[error("IP fragment")]
    Fragment,
    /// Not UDP (IPv4 protocol or IPv6 next header, which includes every
    /// IPv6 extension header but the fragment header).
    #[error("not UDP: protocol {0}")]
    NotUdp(u8),
    /// UDP over IPv6 with a zero checksum (RFC 8200 section 8.1: discard).
    #[error("UDP over IPv6 without checksum")]
    ZeroChecksumV6,
}

/// The source and destination addresses of a datagram, of one family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IpPair {
    V4 { src: Ipv4Addr, dst: Ipv4Addr },
    V6 { src: Ipv6Addr, dst: Ipv6Addr },
}

impl IpPair {
    /// Pairs two addresses, or `None` when their families differ.
    pub fn new(src: IpAddr, dst: IpAddr) -> Option<Self> {
        match (src, dst) {
            (IpAddr::V4(src), IpAddr::V4(dst)) => Some(Self::V4 { src, dst }),
            (IpAddr::V6(src), IpAddr::V6(dst)) => Some(Self::V6 { src, dst }),
            _ => None,
        }
    }

    pub fn src(&self) -> IpAddr {
        match *self {
            Self::V4 { src, .. } => src.into(),
            Self::V6 { src, .. } => src.into(),
        }
    }

    pub fn dst(&self) -> IpAddr {
        match *self {
            Self::V4 { dst, .. } => dst.into(),
            Self::V6 { dst, .. } => dst.into(),
        }
    }

    pub fn is_ipv4(&self) -> bool {
        matches!(self, Self::V4 { .. })
    }

    /// Unfolded one's-complement sum of both addresses (see [`checksum::fold`]).
    #[inline]
    pub(crate) fn sum(&self) -> u64 {
        match *self {
            Self::V4 { src, dst } => checksum::sum_v4(src) + checksum::sum_v4(dst),
            Self::V6 { src, dst } => checksum::sum_v6(src) + checksum::sum_v6(dst),
        }
    }
}

#[cfg(test)]
mod differential;
#[cfg(test)]
pub(crate) mod testutil;
