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
pub use replica::{ReplicaSpec, ReplicaTemplate, TemplateError, TosPolicy, WriteError};

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
    /// An IPv4 fragment (MF set or a non-zero offset).
    #[error("IPv4 fragment")]
    Fragment,
    /// Not UDP (IPv4 protocol or IPv6 next header, which includes every
    /// IPv6 extension header).
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
pub(crate) mod testutil {
    //! Reference implementations and frame builders for the tests: written
    //! the slow, obvious way, independent of the code under test.

    use super::ethernet::ethertype;
    use super::{IPPROTO_UDP, IpPair};
    use proptest::prelude::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    /// One's-complement sum, 16 bits at a time, big-endian, odd byte padded.
    pub fn ref_sum(chunks: &[&[u8]]) -> u16 {
        let mut bytes = Vec::new();
        for c in chunks {
            bytes.extend_from_slice(c);
        }
        if bytes.len() % 2 == 1 {
            bytes.push(0);
        }
        let mut acc: u32 = 0;
        for w in bytes.chunks(2) {
            acc += u32::from(u16::from_be_bytes([w[0], w[1]]));
            acc = (acc & 0xffff) + (acc >> 16);
        }
        acc as u16
    }

    /// Full UDP checksum (with the "0 is sent as 0xffff" rule) over the
    /// pseudo-header, `udp` (header + payload) with its checksum field zeroed.
    pub fn ref_udp_checksum(addrs: &IpPair, udp: &[u8]) -> u16 {
        let mut hdr = udp[..8].to_vec();
        hdr[6] = 0;
        hdr[7] = 0;
        let len = udp.len() as u32;
        let sum = match addrs {
            IpPair::V4 { src, dst } => ref_sum(&[
                &src.octets(),
                &dst.octets(),
                &[0, IPPROTO_UDP],
                &(len as u16).to_be_bytes(),
                &hdr,
                &udp[8..],
            ]),
            IpPair::V6 { src, dst } => ref_sum(&[
                &src.octets(),
                &dst.octets(),
                &len.to_be_bytes(),
                &[0, 0, 0, IPPROTO_UDP],
                &hdr,
                &udp[8..],
            ]),
        };
        match !sum {
            0 => 0xffff,
            c => c,
        }
    }

    /// Knobs of [`build_frame`].
    #[derive(Debug, Clone)]
    pub struct FrameSpec {
        pub tags: Vec<(u16, u16)>, // (TPID, VLAN id), outermost first
        pub addrs: IpPair,
        pub tos: u8,
        pub ttl: u8,
        pub ipv4_options: Vec<u8>, // multiple of 4, at most 40 bytes
        pub src_port: u16,
        pub dst_port: u16,
        pub zero_checksum: bool, // IPv4 only: send "no checksum"
    }

    /// Builds a valid Ethernet/VLAN*/IP/UDP frame the slow way, with correct
    /// checksums. Returns the frame and the payload offset.
    pub fn build_frame(spec: &FrameSpec, payload: &[u8]) -> (Vec<u8>, usize) {
        let mut f = vec![0x02, 0, 0, 0, 0, 0xbb, 0x02, 0, 0, 0, 0, 0xaa];
        for &(tpid, vid) in &spec.tags {
            f.extend_from_slice(&tpid.to_be_bytes());
            f.extend_from_slice(&(0x2000 | vid).to_be_bytes()); // PCP 1
        }
        let udp_len = 8 + payload.len();
        let mut udp = Vec::new();
        udp.extend_from_slice(&spec.src_port.to_be_bytes());
        udp.extend_from_slice(&spec.dst_port.to_be_bytes());
        udp.extend_from_slice(&(udp_len as u16).to_be_bytes());
        udp.extend_from_slice(&[0, 0]);
        udp.extend_from_slice(payload);
        if !spec.zero_checksum {
            let c = ref_udp_checksum(&spec.addrs, &udp);
            udp[6..8].copy_from_slice(&c.to_be_bytes());
        }
        match spec.addrs {
            IpPair::V4 { src, dst } => {
                f.extend_from_slice(&0x0800u16.to_be_bytes());
                let hl = 20 + spec.ipv4_options.len();
                let mut ip = vec![0x40 | (hl / 4) as u8, spec.tos];
                ip.extend_from_slice(&((hl + udp_len) as u16).to_be_bytes());
                ip.extend_from_slice(&[0x12, 0x34, 0x40, 0x00, spec.ttl, IPPROTO_UDP, 0, 0]);
                ip.extend_from_slice(&src.octets());
                ip.extend_from_slice(&dst.octets());
                ip.extend_from_slice(&spec.ipv4_options);
                let c = !ref_sum(&[&ip]);
                ip[10..12].copy_from_slice(&c.to_be_bytes());
                f.extend_from_slice(&ip);
            }
            IpPair::V6 { src, dst } => {
                f.extend_from_slice(&0x86ddu16.to_be_bytes());
                let w0 = (6u32 << 28) | (u32::from(spec.tos) << 20) | 0x12345;
                f.extend_from_slice(&w0.to_be_bytes());
                f.extend_from_slice(&(udp_len as u16).to_be_bytes());
                f.extend_from_slice(&[IPPROTO_UDP, spec.ttl]);
                f.extend_from_slice(&src.octets());
                f.extend_from_slice(&dst.octets());
            }
        }
        let off = f.len() + 8;
        f.extend_from_slice(&udp);
        (f, off)
    }

    pub fn tags_for(n: usize) -> Vec<(u16, u16)> {
        match n {
            0 => vec![],
            1 => vec![(ethertype::VLAN, 42)],
            _ => vec![(ethertype::QINQ, 100), (ethertype::VLAN, 4094)],
        }
    }

    pub fn arb_spec() -> impl Strategy<Value = FrameSpec> {
        let v4 = (any::<u32>(), any::<u32>()).prop_map(|(s, d)| IpPair::V4 {
            src: Ipv4Addr::from_bits(s),
            dst: Ipv4Addr::from_bits(d),
        });
        let v6 = (any::<u128>(), any::<u128>()).prop_map(|(s, d)| IpPair::V6 {
            src: Ipv6Addr::from_bits(s),
            dst: Ipv6Addr::from_bits(d),
        });
        (
            0..3usize,
            prop_oneof![v4, v6],
            any::<u8>(),
            any::<u8>(),
            proptest::collection::vec(any::<u8>(), 0..=10),
            any::<u16>(),
            any::<u16>(),
            any::<bool>(),
        )
            .prop_map(
                |(ntags, addrs, tos, ttl, opt_words, sp, dp, zero)| FrameSpec {
                    tags: tags_for(ntags),
                    addrs,
                    tos,
                    ttl,
                    ipv4_options: if addrs.is_ipv4() {
                        opt_words.repeat(4)
                    } else {
                        vec![]
                    },
                    src_port: sp,
                    dst_port: dp,
                    zero_checksum: zero && addrs.is_ipv4(),
                },
            )
    }

    pub fn arb_frame() -> impl Strategy<Value = (FrameSpec, Vec<u8>)> {
        (arb_spec(), proptest::collection::vec(any::<u8>(), 0..600))
    }
}
