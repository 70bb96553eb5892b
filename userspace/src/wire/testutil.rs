//! Reference implementations and frame builders for the tests: written
//! the slow, obvious way, independent of the code under test.

use super::ethernet::ethertype;
use super::ip::{IPPROTO_UDP, IpPair};
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

/// Rewrites the UDP checksum of `frame` (built by [`build_frame`]) to what
/// a Linux sender leaves for its NIC to finish (`CHECKSUM_PARTIAL`): the
/// folded pseudo-header sum, not complemented.
pub fn make_partial(frame: &mut [u8]) {
    let d = crate::wire::parse(frame).unwrap();
    let pseudo = crate::wire::checksum::pseudo_header(&d.addrs, u32::from(d.udp_len));
    let at = d.payload_offset - 2;
    frame[at..at + 2].copy_from_slice(&pseudo.to_be_bytes());
}

/// VLAN tag stacks for tests: none, one C-tag, or S-tag + C-tag.
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
