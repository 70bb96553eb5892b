//! The frame parser: Ethernet -> VLAN tags (0..=2) -> IPv4 | IPv6 -> UDP.
//!
//! [`parse`] never panics and never reads the UDP payload; it returns a
//! [`Datagram`] only when every header is whole, every length field is
//! consistent with the frame and the IPv4 header checksum verifies, so a
//! frame cut anywhere before its end is always an error.
//!
//! One decoder story: this is the engine's parser for what the XDP program
//! redirects, and the program decides with its own no_std decoder,
//! `fanout_common::parse::classify`. A differential property test in
//! `userspace/src/wire/differential.rs` checks that the two agree on every
//! input it generates (structured frames with any tag stack, IPv4 options,
//! flags, lengths and checksums, IPv6 extension headers, padding, cut at
//! every byte and split into buffers anywhere; mutated and random bytes):
//! what the program redirects, this accepts with the same flow key
//! ([`Datagram::flow_key`]), source and payload, and what it passes, this
//! refuses, with a [`ParseError`] the test maps to the program's verdict.
//! The one exception: this also verifies the IPv4 header checksum, so a
//! frame with a bad one is redirected, then refused here and counted
//! (`malformed`), where the kernel's stack would have dropped it too.

use super::error::ParseError;
use super::ethernet::{self, Tags, ethertype};
use super::ip::{IPPROTO_UDP, IpPair};
use super::{ipv4, ipv6, udp};
use fanout_common::FlowKey;

/// IPv6 next header of the fragment header.
const IPV6_FRAGMENT: u8 = 44;

/// What the engine needs to know about a received UDP datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Datagram {
    /// VLAN id of the outer (or only) tag.
    pub outer_vlan: Option<u16>,
    /// VLAN id of the inner 802.1Q tag of a double-tagged frame.
    pub inner_vlan: Option<u16>,
    pub addrs: IpPair,
    /// IPv4 TOS byte or IPv6 traffic class (DSCP and ECN).
    pub tos: u8,
    /// IPv4 TTL or IPv6 hop limit.
    pub ttl: u8,
    pub src_port: u16,
    pub dst_port: u16,
    /// The UDP length field (header and payload, at least 8).
    pub udp_len: u16,
    /// The UDP checksum field as received (0 over IPv4: none).
    pub udp_checksum: u16,
    /// Offset of the UDP payload in the frame.
    pub payload_offset: usize,
    /// `udp_len - 8`.
    pub payload_len: usize,
}

impl Datagram {
    /// The key of the flow this datagram belongs to: group, destination port
    /// and the innermost VLAN id (0 untagged) inside the outer one of two
    /// tags (QinQ), as the XDP program computes it.
    #[inline]
    pub fn flow_key(&self) -> FlowKey {
        let (vlan, outer) = match (self.outer_vlan, self.inner_vlan) {
            (Some(outer), Some(inner)) => (inner, outer),
            (one, _) => (one.unwrap_or(0), 0),
        };
        FlowKey::new(self.addrs.dst(), self.dst_port, vlan).with_outer_vlan(outer)
    }

    /// The UDP payload's range in the frame.
    pub fn payload_range(&self) -> core::ops::Range<usize> {
        self.payload_offset..self.payload_offset + self.payload_len
    }
}

/// Parses a whole frame held in one buffer. See [`parse_head`].
#[inline]
pub fn parse(frame: &[u8]) -> Result<Datagram, ParseError> {
    parse_head(frame, frame.len())
}

/// Parses a frame of `frame_len` bytes of which `head` holds the first ones
/// (the first buffer of a multi-buffer AF_XDP frame): every header must be
/// in `head`, the length fields are checked against `frame_len`. A `head`
/// longer than `frame_len` is cut to it.
///
/// Checks, in order: Ethernet and VLAN tags, ethertype IPv4 or IPv6, IP
/// version, IHL, lengths, IPv4 header checksum, IPv4 fragments, protocol
/// UDP (IPv6: next header UDP; a fragment header is `Fragment`, any other
/// extension header `NotUdp`), UDP length (`8 <= udp_len <=` IP payload
/// length), IPv6 zero UDP checksum.
pub fn parse_head(head: &[u8], frame_len: usize) -> Result<Datagram, ParseError> {
    let head = head.get(..frame_len).unwrap_or(head);
    match parse_plain_v4(head, frame_len) {
        Some(dg) => Ok(dg),
        None => parse_general(head, frame_len),
    }
}

/// [`parse_head`] for any frame, `head` already cut to `frame_len`.
fn parse_general(head: &[u8], frame_len: usize) -> Result<Datagram, ParseError> {
    let tags = Tags::walk(head)?;
    let l3 = head.get(tags.l3_offset..).ok_or(ParseError::Truncated)?;
    let l3_avail = frame_len - tags.l3_offset;

    let (addrs, tos, ttl, l4_offset, ip_payload_len) = match tags.ethertype {
        ethertype::IPV4 => {
            let ip = ipv4::Packet::new_unchecked(l3);
            ip.check_header()?;
            if usize::from(ip.total_len()) > l3_avail {
                return Err(ParseError::Truncated);
            }
            if !ip.verify_checksum() {
                return Err(ParseError::BadChecksum);
            }
            if ip.is_fragment() {
                return Err(ParseError::Fragment);
            }
            if ip.protocol() != IPPROTO_UDP {
                return Err(ParseError::NotUdp(ip.protocol()));
            }
            let addrs = IpPair::V4 {
                src: ip.src_addr(),
                dst: ip.dst_addr(),
            };
            let hl = ip.header_len();
            (
                addrs,
                ip.tos(),
                ip.ttl(),
                tags.l3_offset + hl,
                usize::from(ip.total_len()) - hl,
            )
        }
        ethertype::IPV6 => {
            let ip = ipv6::Packet::new_unchecked(l3);
            ip.check_header()?;
            if ipv6::HEADER_LEN + usize::from(ip.payload_len()) > l3_avail {
                return Err(ParseError::Truncated);
            }
            match ip.next_header() {
                IPPROTO_UDP => {}
                IPV6_FRAGMENT => return Err(ParseError::Fragment),
                other => return Err(ParseError::NotUdp(other)),
            }
            let addrs = IpPair::V6 {
                src: ip.src_addr(),
                dst: ip.dst_addr(),
            };
            let l4 = tags.l3_offset + ipv6::HEADER_LEN;
            (
                addrs,
                ip.traffic_class(),
                ip.hop_limit(),
                l4,
                usize::from(ip.payload_len()),
            )
        }
        other => return Err(ParseError::NotIp(other)),
    };

    if ip_payload_len < udp::HEADER_LEN {
        return Err(ParseError::BadLength);
    }
    let l4 = head.get(l4_offset..).ok_or(ParseError::Truncated)?;
    if l4.len() < udp::HEADER_LEN {
        return Err(ParseError::Truncated);
    }
    let udp = udp::Packet::new_unchecked(l4);
    let udp_len = udp.len();
    if usize::from(udp_len) < udp::HEADER_LEN || usize::from(udp_len) > ip_payload_len {
        return Err(ParseError::BadLength);
    }
    if !addrs.is_ipv4() && udp.checksum() == 0 {
        return Err(ParseError::ZeroChecksumV6);
    }
    Ok(Datagram {
        outer_vlan: tags.outer_vlan,
        inner_vlan: tags.inner_vlan,
        addrs,
        tos,
        ttl,
        src_port: udp.src_port(),
        dst_port: udp.dst_port(),
        udp_len,
        udp_checksum: udp.checksum(),
        payload_offset: l4_offset + udp::HEADER_LEN,
        payload_len: usize::from(udp_len) - udp::HEADER_LEN,
    })
}

/// The usual frame in one pass: untagged Ethernet, IPv4 without options,
/// UDP, every header in the first 42 bytes. The same checks as the general
/// path over views of fixed size, so that their bounds checks fold away;
/// `None` for any other frame, or one the checks refuse, which the general
/// path then parses or refuses with its precise error. What this accepts,
/// the general path accepts with the same [`Datagram`] (tested).
#[inline(always)]
fn parse_plain_v4(head: &[u8], frame_len: usize) -> Option<Datagram> {
    const IP: usize = ethernet::HEADER_LEN;
    const L4: usize = IP + ipv4::HEADER_LEN;
    const PAYLOAD: usize = L4 + udp::HEADER_LEN;
    let h: &[u8; PAYLOAD] = head.first_chunk()?;
    let (eth, rest) = h.split_at(IP);
    let (ip, l4) = rest.split_at(ipv4::HEADER_LEN);
    if ethernet::Frame::new_unchecked(eth).ethertype() != ethertype::IPV4 {
        return None;
    }
    let ip = ipv4::Packet::new_unchecked(ip);
    let total = usize::from(ip.total_len());
    // Version 4, IHL 5 (no options); `head` is cut to `frame_len`, so
    // `frame_len >= PAYLOAD` here.
    if ip.version() != 4
        || ip.header_len() != ipv4::HEADER_LEN
        || total < ipv4::HEADER_LEN + udp::HEADER_LEN
        || total > frame_len - IP
        || !ip.verify_checksum()
        || ip.is_fragment()
        || ip.protocol() != IPPROTO_UDP
    {
        return None;
    }
    let udp = udp::Packet::new_unchecked(l4);
    let udp_len = udp.len();
    if usize::from(udp_len) < udp::HEADER_LEN || usize::from(udp_len) > total - ipv4::HEADER_LEN {
        return None;
    }
    Some(Datagram {
        outer_vlan: None,
        inner_vlan: None,
        addrs: IpPair::V4 {
            src: ip.src_addr(),
            dst: ip.dst_addr(),
        },
        tos: ip.tos(),
        ttl: ip.ttl(),
        src_port: udp.src_port(),
        dst_port: udp.dst_port(),
        udp_len,
        udp_checksum: udp.checksum(),
        payload_offset: PAYLOAD,
        payload_len: usize::from(udp_len) - udp::HEADER_LEN,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::testutil::{FrameSpec, arb_frame, build_frame, tags_for};
    use proptest::prelude::*;
    use std::net::Ipv4Addr;

    fn v4_spec() -> FrameSpec {
        FrameSpec {
            tags: vec![],
            addrs: IpPair::V4 {
                src: Ipv4Addr::new(10, 0, 0, 1),
                dst: Ipv4Addr::new(239, 1, 2, 3),
            },
            tos: 0xb8,
            ttl: 16,
            ipv4_options: vec![],
            src_port: 5000,
            dst_port: 5004,
            zero_checksum: false,
        }
    }

    fn v6_spec() -> FrameSpec {
        FrameSpec {
            addrs: IpPair::V6 {
                src: "fd00::1".parse().unwrap(),
                dst: "ff3e::8000:1".parse().unwrap(),
            },
            ..v4_spec()
        }
    }

    #[test]
    fn golden_v4_frame() {
        // Built by hand, byte by byte: no VLAN, IPv4 10.0.0.1 -> 239.1.2.3,
        // TOS 0xb8, TTL 16, UDP 5000 -> 5004, payload "hi!".
        #[rustfmt::skip]
        let frame = [
            0x01, 0x00, 0x5e, 0x01, 0x02, 0x03, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x08, 0x00,
            0x45, 0xb8, 0x00, 0x1f, 0x00, 0x00, 0x40, 0x00, 0x10, 0x11, 0x6f, 0x11,
            0x0a, 0x00, 0x00, 0x01, 0xef, 0x01, 0x02, 0x03,
            0x13, 0x88, 0x13, 0x8c, 0x00, 0x0b, 0x54, 0x55, b'h', b'i', b'!',
        ];
        let d = parse(&frame).unwrap();
        assert_eq!(
            d,
            Datagram {
                outer_vlan: None,
                inner_vlan: None,
                addrs: v4_spec().addrs,
                tos: 0xb8,
                ttl: 16,
                src_port: 5000,
                dst_port: 5004,
                udp_len: 11,
                udp_checksum: 0x5455,
                payload_offset: 42,
                payload_len: 3,
            }
        );
        assert_eq!(&frame[d.payload_range()], b"hi!");
        // The testutil builder agrees with the hand-made bytes (other MACs).
        let (built, off) = build_frame(&v4_spec(), b"hi!");
        let mut hand = frame.to_vec();
        hand[18..20].copy_from_slice(&[0x12, 0x34]); // builder's IP ident
        hand[24..26].fill(0);
        let c = !crate::wire::testutil::ref_sum(&[&hand[14..34]]);
        hand[24..26].copy_from_slice(&c.to_be_bytes());
        assert_eq!(&built[12..], &hand[12..]);
        assert_eq!(off, 42);
    }

    #[test]
    fn vlans_options_v6() {
        for ntags in 0..3 {
            for (spec, opts) in [(v4_spec(), 0), (v4_spec(), 40), (v6_spec(), 0)] {
                let spec = FrameSpec {
                    tags: tags_for(ntags),
                    ipv4_options: vec![1; opts],
                    ..spec
                };
                let (frame, off) = build_frame(&spec, &[7; 33]);
                let d = parse(&frame).unwrap();
                assert_eq!(d.outer_vlan, spec.tags.first().map(|t| t.1));
                assert_eq!(d.inner_vlan, spec.tags.get(1).map(|t| t.1));
                assert_eq!(d.addrs, spec.addrs);
                assert_eq!(
                    (d.tos, d.ttl, d.src_port, d.dst_port),
                    (0xb8, 16, 5000, 5004)
                );
                assert_eq!((d.udp_len, d.payload_offset, d.payload_len), (41, off, 33));
                assert_eq!(frame.len(), off + 33);
            }
        }
    }

    /// Builds a frame, lets `edit` change it (offsets relative to the IP
    /// header), refreshes the IPv4 header checksum and parses it.
    fn parse_edited(
        spec: &FrameSpec,
        edit: impl FnOnce(&mut Vec<u8>, usize),
    ) -> Result<Datagram, ParseError> {
        let (mut f, _) = build_frame(spec, &[1, 2, 3, 4, 5]);
        let l3 = 14 + 4 * spec.tags.len();
        edit(&mut f, l3);
        if spec.addrs.is_ipv4() && f.len() >= l3 + 20 {
            let hl = (usize::from(f[l3] & 0xf) * 4).clamp(20, f.len() - l3);
            let mut ip = ipv4::Packet::new_unchecked(&mut f[l3..l3 + hl]);
            if ip.ihl() >= 5 {
                ip.fill_checksum();
            }
        }
        parse(&f)
    }

    #[test]
    fn errors() {
        use ParseError::*;
        let v4 = v4_spec();
        let v6 = v6_spec();
        assert!(parse_edited(&v4, |_, _| {}).is_ok());
        assert!(parse_edited(&v6, |_, _| {}).is_ok());
        assert_eq!(
            parse_edited(&v4, |f, _| f[12..14].copy_from_slice(&[0x08, 0x06])),
            Err(NotIp(0x0806))
        );
        assert_eq!(parse_edited(&v4, |f, l3| f[l3] = 0x65), Err(BadVersion(6)));
        assert_eq!(parse_edited(&v6, |f, l3| f[l3] = 0x45), Err(BadVersion(4)));
        assert_eq!(parse_edited(&v4, |f, l3| f[l3] = 0x44), Err(BadIhl(4)));
        // IHL 6 without options: the UDP header is read as an option and
        // the IP payload is 4 bytes too short for the UDP length.
        assert_eq!(parse_edited(&v4, |f, l3| f[l3] = 0x46), Err(BadLength));
        assert_eq!(
            parse_edited(&v4, |f, l3| f[l3 + 2..l3 + 4].copy_from_slice(&[0, 19])),
            Err(BadLength)
        );
        assert_eq!(parse_edited(&v4, |f, l3| f[l3 + 3] += 1), Err(Truncated));
        assert_eq!(parse_edited(&v6, |f, l3| f[l3 + 5] += 1), Err(Truncated));
        assert_eq!(parse_edited(&v4, |f, l3| f[l3 + 6] = 0x20), Err(Fragment)); // MF
        assert_eq!(parse_edited(&v4, |f, l3| f[l3 + 7] = 0x01), Err(Fragment)); // offset 8
        assert_eq!(parse_edited(&v4, |f, l3| f[l3 + 9] = 6), Err(NotUdp(6)));
        assert_eq!(parse_edited(&v6, |f, l3| f[l3 + 6] = 0), Err(NotUdp(0))); // hop-by-hop
        assert_eq!(parse_edited(&v6, |f, l3| f[l3 + 6] = 44), Err(Fragment));
        // UDP length below 8, and beyond the IP payload.
        assert_eq!(parse_edited(&v4, |f, l3| f[l3 + 25] = 7), Err(BadLength));
        assert_eq!(parse_edited(&v6, |f, l3| f[l3 + 45] = 7), Err(BadLength));
        assert_eq!(parse_edited(&v4, |f, l3| f[l3 + 25] = 14), Err(BadLength));
        // A shorter UDP length inside the IP payload is fine.
        assert_eq!(
            parse_edited(&v4, |f, l3| f[l3 + 25] = 12)
                .unwrap()
                .payload_len,
            4
        );
        assert_eq!(
            parse_edited(&v6, |f, l3| f[l3 + 46..l3 + 48].fill(0)),
            Err(ZeroChecksumV6)
        );
        // An IP payload too short for a UDP header (IPv6 jumbograms too).
        assert_eq!(parse_edited(&v4, |f, l3| f[l3 + 3] = 27), Err(BadLength));
        assert_eq!(parse_edited(&v6, |f, l3| f[l3 + 5] = 0), Err(BadLength));
        // IPv4 header checksum.
        let (mut f, _) = build_frame(&v4, &[1, 2, 3]);
        f[14 + 8] -= 1; // TTL
        assert_eq!(parse(&f), Err(BadChecksum));
        // Over IPv4 a zero UDP checksum is "none" and is accepted.
        let (f, _) = build_frame(
            &FrameSpec {
                zero_checksum: true,
                ..v4
            },
            &[1, 2, 3],
        );
        assert_eq!(parse(&f).unwrap().udp_checksum, 0);
    }

    #[test]
    fn head_and_frame_len() {
        for spec in [v4_spec(), v6_spec()] {
            let (f, off) = build_frame(&spec, &[9; 8000]);
            let whole = parse(&f).unwrap();
            // Only the first 3840 bytes are in the head: same result.
            assert_eq!(parse_head(&f[..3840], f.len()), Ok(whole));
            // The headers alone suffice.
            assert_eq!(parse_head(&f[..off], f.len()), Ok(whole));
            // A head cut inside the headers, or a frame too short, are errors.
            assert_eq!(
                parse_head(&f[..off - 1], f.len()),
                Err(ParseError::Truncated)
            );
            assert_eq!(
                parse_head(&f[..3840], f.len() - 1),
                Err(ParseError::Truncated)
            );
            // A head longer than the frame is cut to it.
            assert_eq!(parse_head(&f, 3840), Err(ParseError::Truncated));
        }
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..10000), cut in any::<usize>()) {
            let _ = parse(&bytes);
            let _ = parse_head(&bytes, cut % 10001);
        }

        #[test]
        fn mutated_frames_never_panic(
            (spec, payload) in arb_frame(),
            flips in proptest::collection::vec((0..120usize, any::<u8>()), 1..8),
            cut in any::<usize>(),
        ) {
            let (mut f, _) = build_frame(&spec, &payload);
            for (i, v) in flips {
                if let Some(b) = f.get_mut(i) { *b = v; }
            }
            let _ = parse(&f);
            let _ = parse_head(&f, cut % (f.len() + 10));
        }

        #[test]
        fn valid_frames_parse_and_every_truncation_fails((spec, payload) in arb_frame()) {
            let (f, off) = build_frame(&spec, &payload);
            let d = parse(&f).unwrap();
            prop_assert_eq!(d.addrs, spec.addrs);
            prop_assert_eq!(d.outer_vlan, spec.tags.first().map(|t| t.1));
            prop_assert_eq!(d.inner_vlan, spec.tags.get(1).map(|t| t.1));
            prop_assert_eq!((d.tos, d.ttl), (spec.tos, spec.ttl));
            prop_assert_eq!((d.src_port, d.dst_port), (spec.src_port, spec.dst_port));
            prop_assert_eq!(usize::from(d.udp_len), payload.len() + 8);
            prop_assert_eq!(d.udp_checksum, u16::from_be_bytes([f[off - 2], f[off - 1]]));
            prop_assert_eq!(&f[d.payload_range()], &payload[..]);
            for n in 0..f.len() {
                prop_assert!(parse(&f[..n]).is_err(), "prefix {} of {} parsed", n, f.len());
                prop_assert!(parse_head(&f, n).is_err());
            }
        }

        /// The fast path accepts only what the general path accepts, with
        /// the same result, and takes every valid untagged IPv4 frame
        /// without options; over valid, mutated and cut frames.
        #[test]
        fn fast_path_agrees_with_the_general_path(
            (spec, payload) in arb_frame(),
            flips in proptest::collection::vec((0..64usize, any::<u8>()), 0..4),
            cut in any::<usize>(),
        ) {
            let (mut f, _) = build_frame(&spec, &payload);
            let plain = spec.tags.is_empty() && spec.addrs.is_ipv4() && spec.ipv4_options.is_empty();
            if flips.is_empty() {
                prop_assert_eq!(parse_plain_v4(&f, f.len()).is_some(), plain);
            }
            for (i, v) in flips {
                if let Some(b) = f.get_mut(i) { *b = v; }
            }
            for frame_len in [f.len(), cut % (f.len() + 10)] {
                let head = f.get(..frame_len).unwrap_or(&f);
                if let Some(fast) = parse_plain_v4(head, frame_len) {
                    prop_assert_eq!(Ok(fast), parse_general(head, frame_len));
                }
            }
        }
    }
}
