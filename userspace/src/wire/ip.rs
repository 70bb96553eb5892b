//! What IPv4 and IPv6 share for fanout: the UDP protocol number and a
//! datagram's address pair of one family.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// IP protocol number of UDP (IPv4 `protocol`, IPv6 `next header`).
pub const IPPROTO_UDP: u8 = 17;

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
}
