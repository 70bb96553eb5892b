//! The XDP program's frame decoder (no_std; also built for userspace tests).
//!
//! [`classify`] reads Ethernet, up to two VLAN tags (an outer 802.1ad
//! `0x88a8` or 802.1Q `0x8100` tag, then an 802.1Q tag), IPv4 (any valid IHL)
//! or IPv6, then UDP, and returns a [`Verdict`]: a [`Datagram`] with its
//! [`FlowKey`] and source, or the reason it is not one. It reads the frame
//! only through [`Frame::load`], which bounds-checks every access (the
//! kernel's verifier demands exactly that), and it checks the IP and UDP
//! length fields against [`Frame::total_len`], so a truncated frame is
//! `Malformed`, never a datagram. It never panics.
//!
//! What it deliberately leaves to the kernel: IPv4 fragments and IPv6
//! fragment headers (`Fragment`: the kernel reassembles), UDP behind other
//! IPv6 extension headers (hop-by-hop, routing, destination options, up to
//! [`MAX_EXT_HEADERS`]: `ExtHeaders`; anything else behind them `NotUdp`),
//! any other tag stack (an
//! 802.1ad tag inside a tag, three tags: `NotIp`), UDP over IPv6 with a zero
//! checksum (`Malformed`: RFC 8200 forbids it, the kernel's stack judges).
//! Checksums are not verified here. A first fragment and a datagram behind
//! extension headers say which stream they belong to ([`Passed`]), so that
//! the program counts them for their flow; later fragments carry no ports
//! and belong to none.
//!
//! One decoder story: the engine does not call this function; it classifies
//! what the program redirects with its own parser, `fanout::wire::parse_head`
//! (typed views and a fast path for untagged IPv4). A differential property
//! test in `userspace/src/wire/differential.rs` checks that the two agree on
//! every input it generates (structured frames with any tag stack, IPv4
//! options, flags, lengths and checksums, IPv6 extension headers, padding,
//! cut at every byte and split into buffers anywhere; mutated and random
//! bytes): every frame this redirects, the engine takes with the same key,
//! source and payload, and every frame this passes, the engine would refuse,
//! for a reason the test maps to this verdict. The one exception: the engine
//! also verifies the IPv4 header checksum, so a frame with a bad one is
//! redirected, then refused and counted (`malformed`), where the kernel's
//! stack would have dropped it too.

use crate::{FAMILY_IPV4, FAMILY_IPV6, FlowKey};

/// Ethernet header length (no FCS).
pub const ETH_HLEN: usize = 14;
/// EtherType of IPv4.
pub const ETHERTYPE_IPV4: u16 = 0x0800;
/// EtherType of IPv6.
pub const ETHERTYPE_IPV6: u16 = 0x86dd;
/// EtherType of an 802.1Q VLAN tag.
pub const ETHERTYPE_VLAN: u16 = 0x8100;
/// EtherType of an 802.1ad (QinQ service) VLAN tag.
pub const ETHERTYPE_QINQ: u16 = 0x88a8;
/// IP protocol number of UDP.
pub const IPPROTO_UDP: u8 = 17;
/// IPv6 next-header value of the fragment header.
pub const IPV6_FRAGMENT: u8 = 44;
/// IPv6 next-header value of the hop-by-hop options header.
pub const IPV6_HOP_BY_HOP: u8 = 0;
/// IPv6 next-header value of the routing header.
pub const IPV6_ROUTING: u8 = 43;
/// IPv6 next-header value of the destination options header.
pub const IPV6_DEST_OPTS: u8 = 60;
/// Extension headers walked to find UDP behind them.
pub const MAX_EXT_HEADERS: usize = 3;

const IPV4_MIN_HLEN: usize = 20;
const IPV6_HLEN: usize = 40;
const UDP_HLEN: usize = 8;
const VLAN_HLEN: usize = 4;

/// Read access to a frame, bounds-checked on every call.
pub trait Frame {
    /// Length of the whole frame in bytes, including the parts of a
    /// multi-buffer frame that [`Frame::load`] cannot reach.
    fn total_len(&self) -> usize;

    /// The `N` bytes at `offset`, or `None` when they are not all within the
    /// directly readable part of the frame.
    fn load<const N: usize>(&self, offset: usize) -> Option<[u8; N]>;
}

impl Frame for [u8] {
    fn total_len(&self) -> usize {
        self.len()
    }

    fn load<const N: usize>(&self, offset: usize) -> Option<[u8; N]> {
        let end = offset.checked_add(N)?;
        self.get(offset..end)?.try_into().ok()
    }
}

/// A well-formed, unfragmented UDP datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Datagram {
    /// Group (destination address), destination port and VLAN.
    pub key: FlowKey,
    /// Source address in the same 16-byte layout as [`FlowKey::group`].
    pub source: [u8; 16],
    /// UDP source port.
    pub source_port: u16,
    /// Offset of the UDP payload from the start of the frame.
    pub payload_offset: usize,
    /// Length of the UDP payload (UDP length minus 8).
    pub payload_len: usize,
    /// Length of the IP packet as its header says (IPv4 total length, IPv6
    /// 40 + payload length): what the ingress MTU bounds.
    pub ip_len: usize,
}

/// The stream of a UDP datagram that is passed, not redirected: its key
/// (as [`Datagram::key`]) and source, for its flow's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Passed {
    pub key: FlowKey,
    pub source: [u8; 16],
}

/// What a frame is, as far as the flow table is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// A UDP datagram: look its key up.
    Udp(Datagram),
    /// Broken or truncated headers: pass it and count it.
    Malformed,
    /// A fragment: the kernel reassembles it. The first fragment of a UDP
    /// datagram says its stream (when its UDP header is in the first
    /// buffer); later ones cannot.
    Fragment(Option<Passed>),
    /// Not IPv4 or IPv6.
    NotIp,
    /// IP, but not UDP.
    NotUdp,
    /// UDP behind IPv6 extension headers (hop-by-hop, routing,
    /// destination options): left to the kernel.
    ExtHeaders(Passed),
}

#[inline(always)]
fn be16(hi: u8, lo: u8) -> u16 {
    u16::from_be_bytes([hi, lo])
}

/// The VLAN ids of a frame's tags: the innermost, and the outer one of
/// two (0 when absent).
#[derive(Debug, Clone, Copy)]
struct Vlans {
    inner: u16,
    outer: u16,
}

#[inline(always)]
fn is_vlan(ethertype: u16) -> bool {
    ethertype == ETHERTYPE_VLAN || ethertype == ETHERTYPE_QINQ
}

/// Classifies a frame. See the module documentation for the rules.
#[inline(always)]
pub fn classify<F: Frame + ?Sized>(frame: &F) -> Verdict {
    let Some(eth) = frame.load::<ETH_HLEN>(0) else {
        return Verdict::Malformed;
    };
    let mut ethertype = be16(eth[12], eth[13]);
    let mut l3 = ETH_HLEN;
    let mut vlan = 0;
    let mut outer_vlan = 0;
    // Two tags at most, written out rather than looped so the verifier sees
    // constant offsets: an outer 802.1ad or 802.1Q tag, then an 802.1Q tag.
    // The innermost tag's VID is the key's VLAN, the outer one's (of two)
    // its outer VLAN. Any other TPID after a tag (an S-tag inside a tag, a
    // third tag) is not IP.
    if is_vlan(ethertype) {
        let Some(tag) = frame.load::<VLAN_HLEN>(l3) else {
            return Verdict::Malformed;
        };
        vlan = be16(tag[0], tag[1]) & 0x0fff;
        ethertype = be16(tag[2], tag[3]);
        l3 += VLAN_HLEN;
        if ethertype == ETHERTYPE_VLAN {
            let Some(tag) = frame.load::<VLAN_HLEN>(l3) else {
                return Verdict::Malformed;
            };
            outer_vlan = vlan;
            vlan = be16(tag[0], tag[1]) & 0x0fff;
            ethertype = be16(tag[2], tag[3]);
            l3 += VLAN_HLEN;
        }
    }
    let vlan = Vlans {
        inner: vlan,
        outer: outer_vlan,
    };
    match ethertype {
        ETHERTYPE_IPV4 => ipv4(frame, l3, vlan),
        ETHERTYPE_IPV6 => ipv6(frame, l3, vlan),
        _ => Verdict::NotIp,
    }
}

#[inline(always)]
fn ipv4<F: Frame + ?Sized>(frame: &F, l3: usize, vlan: Vlans) -> Verdict {
    let Some(h) = frame.load::<IPV4_MIN_HLEN>(l3) else {
        return Verdict::Malformed;
    };
    if h[0] >> 4 != 4 {
        return Verdict::Malformed;
    }
    let hlen = usize::from(h[0] & 0x0f) * 4;
    if hlen < IPV4_MIN_HLEN {
        return Verdict::Malformed;
    }
    let total = usize::from(be16(h[2], h[3]));
    if total < hlen || l3 + total > frame.total_len() {
        return Verdict::Malformed;
    }
    let mut group = [0u8; 16];
    group[..4].copy_from_slice(&h[16..20]);
    let mut source = [0u8; 16];
    source[..4].copy_from_slice(&h[12..16]);
    // More-fragments flag or a fragment offset: not a whole datagram. The
    // first fragment (offset 0) of a UDP datagram has its UDP header.
    let frag = be16(h[6], h[7]);
    if frag & 0x3fff != 0 {
        let first = frag & 0x1fff == 0 && h[9] == IPPROTO_UDP;
        return Verdict::Fragment(if first {
            passed(frame, l3 + hlen, FAMILY_IPV4, group, source, vlan)
        } else {
            None
        });
    }
    if h[9] != IPPROTO_UDP {
        return Verdict::NotUdp;
    }
    udp(
        frame,
        l3,
        l3 + hlen,
        total - hlen,
        FAMILY_IPV4,
        group,
        source,
        vlan,
    )
}

#[inline(always)]
fn ipv6<F: Frame + ?Sized>(frame: &F, l3: usize, vlan: Vlans) -> Verdict {
    let Some(h) = frame.load::<IPV6_HLEN>(l3) else {
        return Verdict::Malformed;
    };
    if h[0] >> 4 != 6 {
        return Verdict::Malformed;
    }
    let payload = usize::from(be16(h[4], h[5]));
    if l3 + IPV6_HLEN + payload > frame.total_len() {
        return Verdict::Malformed;
    }
    let mut source = [0u8; 16];
    source.copy_from_slice(&h[8..24]);
    let mut group = [0u8; 16];
    group.copy_from_slice(&h[24..40]);
    match h[6] {
        IPPROTO_UDP => {}
        IPV6_FRAGMENT => {
            // The fragment header: next header, reserved, offset and flags.
            let first = frame
                .load::<4>(l3 + IPV6_HLEN)
                .filter(|f| f[0] == IPPROTO_UDP && be16(f[2], f[3]) & 0xfff8 == 0);
            return Verdict::Fragment(first.and_then(|_| {
                passed(frame, l3 + IPV6_HLEN + 8, FAMILY_IPV6, group, source, vlan)
            }));
        }
        IPV6_HOP_BY_HOP | IPV6_ROUTING | IPV6_DEST_OPTS => {
            return behind_ext_headers(frame, l3 + IPV6_HLEN, h[6], group, source, vlan);
        }
        _ => return Verdict::NotUdp,
    }
    udp(
        frame,
        l3,
        l3 + IPV6_HLEN,
        payload,
        FAMILY_IPV6,
        group,
        source,
        vlan,
    )
}

/// Walks up to [`MAX_EXT_HEADERS`] hop-by-hop, routing and destination
/// options headers from `at` (`next` is the first one's type): UDP behind
/// them is [`Verdict::ExtHeaders`], anything else (a fragment header
/// included) [`Verdict::NotUdp`].
#[inline(always)]
fn behind_ext_headers<F: Frame + ?Sized>(
    frame: &F,
    mut at: usize,
    mut next: u8,
    group: [u8; 16],
    source: [u8; 16],
    vlan: Vlans,
) -> Verdict {
    for _ in 0..MAX_EXT_HEADERS {
        if !matches!(next, IPV6_HOP_BY_HOP | IPV6_ROUTING | IPV6_DEST_OPTS) {
            break;
        }
        // Next header, and the length in 8-byte units after the first 8.
        let Some(e) = frame.load::<2>(at) else {
            return Verdict::NotUdp;
        };
        next = e[0];
        at += (usize::from(e[1]) + 1) * 8;
    }
    if next != IPPROTO_UDP {
        return Verdict::NotUdp;
    }
    match passed(frame, at, FAMILY_IPV6, group, source, vlan) {
        Some(p) => Verdict::ExtHeaders(p),
        None => Verdict::NotUdp,
    }
}

/// The stream of a passed UDP datagram whose UDP header is at `l4`: `None`
/// when its destination port is not in the first buffer.
#[inline(always)]
fn passed<F: Frame + ?Sized>(
    frame: &F,
    l4: usize,
    family: u8,
    group: [u8; 16],
    source: [u8; 16],
    vlan: Vlans,
) -> Option<Passed> {
    let u = frame.load::<4>(l4)?;
    Some(Passed {
        key: stream_key(group, be16(u[2], u[3]), family, vlan),
        source,
    })
}

/// The stream key of a datagram to `group:port` with `vlan`'s tags.
#[inline(always)]
fn stream_key(group: [u8; 16], port: u16, family: u8, vlan: Vlans) -> FlowKey {
    FlowKey {
        group,
        source: [0; 16],
        port,
        vlan: vlan.inner,
        family,
        pad: 0,
        outer_vlan: vlan.outer,
    }
}

/// `l3`, `l4`: offsets of the IP and UDP headers; `ip_payload`: bytes the
/// IP header says follow it (already checked against the frame length).
#[inline(always)]
#[allow(
    clippy::too_many_arguments,
    reason = "inlined: the parser's state, spelled out"
)]
fn udp<F: Frame + ?Sized>(
    frame: &F,
    l3: usize,
    l4: usize,
    ip_payload: usize,
    family: u8,
    group: [u8; 16],
    source: [u8; 16],
    vlan: Vlans,
) -> Verdict {
    let Some(u) = frame.load::<UDP_HLEN>(l4) else {
        return Verdict::Malformed;
    };
    let udp_len = usize::from(be16(u[4], u[5]));
    if udp_len < UDP_HLEN || udp_len > ip_payload {
        return Verdict::Malformed;
    }
    // Over IPv6 the checksum is mandatory (RFC 8200, section 8.1): a zero one
    // is the kernel's to judge (UDP_NO_CHECK6_RX), not a datagram to replicate.
    if family == FAMILY_IPV6 && be16(u[6], u[7]) == 0 {
        return Verdict::Malformed;
    }
    Verdict::Udp(Datagram {
        key: stream_key(group, be16(u[2], u[3]), family, vlan),
        source,
        source_port: be16(u[0], u[1]),
        payload_offset: l4 + UDP_HLEN,
        payload_len: udp_len - UDP_HLEN,
        ip_len: l4 - l3 + ip_payload,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};
    use std::vec::Vec;

    /// Ethernet (+ tags) + IPv4/IPv6 + UDP with `payload` bytes.
    fn frame(tags: &[(u16, u16)], v6: bool, ihl: u8, payload: usize) -> Vec<u8> {
        let mut f = Vec::new();
        f.extend_from_slice(&[0x01, 0x00, 0x5e, 0x01, 0x01, 0x01]);
        f.extend_from_slice(&[0x02, 0, 0, 0, 0, 1]);
        for &(tpid, vid) in tags {
            f.extend_from_slice(&tpid.to_be_bytes());
            f.extend_from_slice(&vid.to_be_bytes());
        }
        let udp_len = (8 + payload) as u16;
        if v6 {
            f.extend_from_slice(&ETHERTYPE_IPV6.to_be_bytes());
            f.extend_from_slice(&[0x60, 0, 0, 0]);
            f.extend_from_slice(&udp_len.to_be_bytes());
            f.extend_from_slice(&[IPPROTO_UDP, 8]);
            f.extend_from_slice(&Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1).octets());
            f.extend_from_slice(&Ipv6Addr::new(0xff3e, 0, 0, 0, 0, 0, 0, 0x10).octets());
        } else {
            let hlen = usize::from(ihl) * 4;
            f.extend_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
            f.push(0x40 | ihl);
            f.push(0);
            f.extend_from_slice(&((hlen as u16) + udp_len).to_be_bytes());
            f.extend_from_slice(&[0, 1, 0x40, 0, 64, IPPROTO_UDP, 0, 0]);
            f.extend_from_slice(&[10, 0, 0, 1, 239, 1, 1, 1]);
            f.resize(f.len() + hlen.saturating_sub(20), 1); // options (NOPs)
        }
        f.extend_from_slice(&4000u16.to_be_bytes());
        f.extend_from_slice(&5000u16.to_be_bytes());
        f.extend_from_slice(&udp_len.to_be_bytes());
        f.extend_from_slice(&[0x12, 0x34]); // checksum: not verified, not 0
        f.extend((0..payload).map(|i| i as u8));
        f
    }

    fn datagram(v: Verdict) -> Datagram {
        match v {
            Verdict::Udp(d) => d,
            other => panic!("expected a datagram, got {other:?}"),
        }
    }

    #[test]
    fn ipv4_with_options_and_two_tags() {
        let f = frame(
            &[(ETHERTYPE_QINQ, 0x2064), (ETHERTYPE_VLAN, 0x0007)],
            false,
            7,
            10,
        );
        let d = datagram(classify(&f[..]));
        // S-VLAN 100 (PCP 1) / C-VLAN 7: not plain VLAN 7.
        let plain = FlowKey::new(IpAddr::V4(Ipv4Addr::new(239, 1, 1, 1)), 5000, 7);
        assert_eq!(d.key, plain.with_outer_vlan(100));
        assert_ne!(d.key, plain);
        let one = frame(&[(ETHERTYPE_VLAN, 0x0007)], false, 5, 10);
        assert_eq!(datagram(classify(&one[..])).key, plain);
        assert_eq!(&d.source[..4], &[10, 0, 0, 1]);
        assert_eq!(d.source[4..], [0; 12]);
        assert_eq!(d.source_port, 4000);
        assert_eq!(d.payload_offset, 14 + 8 + 28 + 8);
        assert_eq!(d.payload_len, 10);
    }

    #[test]
    fn ipv6_untagged() {
        let f = frame(&[], true, 0, 3);
        let d = datagram(classify(&f[..]));
        let g = Ipv6Addr::new(0xff3e, 0, 0, 0, 0, 0, 0, 0x10);
        assert_eq!(d.key, FlowKey::new(IpAddr::V6(g), 5000, 0));
        assert_eq!(d.payload_offset, 14 + 40 + 8);
        assert_eq!(d.payload_len, 3);
    }

    #[test]
    fn every_truncation_is_malformed() {
        for f in [
            frame(&[], false, 5, 5),
            frame(&[(ETHERTYPE_VLAN, 5)], false, 15, 0),
            frame(&[(ETHERTYPE_VLAN, 5), (ETHERTYPE_VLAN, 6)], true, 0, 5),
        ] {
            assert!(matches!(classify(&f[..]), Verdict::Udp(_)));
            for len in 0..f.len() {
                assert_eq!(classify(&f[..len]), Verdict::Malformed, "len {len}");
            }
        }
    }

    #[test]
    fn bad_ihl_fragments_and_others() {
        for ihl in 0..5 {
            assert_eq!(classify(&frame(&[], false, ihl, 8)[..]), Verdict::Malformed);
        }
        let mut f = frame(&[], false, 5, 8);
        f[14 + 6] = 0x20; // more fragments, offset 0: the first fragment
        let stream = Passed {
            key: FlowKey::new(IpAddr::V4(Ipv4Addr::new(239, 1, 1, 1)), 5000, 0),
            source: datagram(classify(&frame(&[], false, 5, 8)[..])).source,
        };
        assert_eq!(classify(&f[..]), Verdict::Fragment(Some(stream)));
        // Its UDP port beyond the first buffer: no stream.
        assert_eq!(
            classify(&Split(&f[..14 + 20 + 2], f.len())),
            Verdict::Fragment(None)
        );
        f[14 + 6] = 0x00;
        f[14 + 7] = 0x01; // offset 8: a later fragment, no ports
        assert_eq!(classify(&f[..]), Verdict::Fragment(None));
        let mut f = frame(&[], false, 5, 8);
        f[14 + 9] = 6; // TCP
        assert_eq!(classify(&f[..]), Verdict::NotUdp);
        let mut f = frame(&[], false, 5, 8);
        f[14 + 9] = 6; // a first fragment of TCP: no stream
        f[14 + 6] = 0x20;
        assert_eq!(classify(&f[..]), Verdict::Fragment(None));
        let mut f = frame(&[], true, 0, 8);
        f[14 + 6] = IPV6_FRAGMENT; // what follows is no fragment header of UDP
        assert_eq!(classify(&f[..]), Verdict::Fragment(None));
        let mut f = frame(&[], false, 5, 8);
        f[12..14].copy_from_slice(&0x0806u16.to_be_bytes()); // ARP
        assert_eq!(classify(&f[..]), Verdict::NotIp);
        let mut f = frame(&[], false, 5, 8);
        f[14 + 20 + 4..14 + 20 + 6].copy_from_slice(&7u16.to_be_bytes()); // UDP len < 8
        assert_eq!(classify(&f[..]), Verdict::Malformed);
        // Three tags: left to the kernel.
        let three = [
            (ETHERTYPE_QINQ, 1),
            (ETHERTYPE_VLAN, 2),
            (ETHERTYPE_VLAN, 3),
        ];
        assert_eq!(classify(&frame(&three, false, 5, 8)[..]), Verdict::NotIp);
    }

    /// A frame whose first `.0.len()` bytes are readable of `.1`.
    struct Split<'a>(&'a [u8], usize);

    impl Frame for Split<'_> {
        fn total_len(&self) -> usize {
            self.1
        }
        fn load<const N: usize>(&self, offset: usize) -> Option<[u8; N]> {
            self.0.load(offset)
        }
    }

    /// The IPv6 frame of [`frame`] with `ext` (whole extension headers,
    /// each starting with its next-header byte) between the IPv6 and UDP
    /// headers: the IPv6 next header becomes `first`, the payload length
    /// grows.
    fn with_ext(first: u8, ext: &[u8]) -> Vec<u8> {
        let mut f = frame(&[], true, 0, 8);
        let l4 = 14 + 40;
        let payload = u16::from_be_bytes([f[18], f[19]]) + ext.len() as u16;
        f[18..20].copy_from_slice(&payload.to_be_bytes());
        f[14 + 6] = first;
        f.splice(l4..l4, ext.iter().copied());
        f
    }

    #[test]
    fn udp_behind_ipv6_extension_headers_says_its_stream() {
        let g = Ipv6Addr::new(0xff3e, 0, 0, 0, 0, 0, 0, 0x10);
        let stream = Passed {
            key: FlowKey::new(IpAddr::V6(g), 5000, 0),
            source: Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1).octets(),
        };
        // Hop-by-hop (8 bytes), then destination options (16 bytes).
        let mut ext = vec![IPV6_DEST_OPTS, 0, 1, 4, 0, 0, 0, 0];
        ext.extend_from_slice(&[IPPROTO_UDP, 1, 1, 12]);
        ext.extend_from_slice(&[0; 12]);
        let f = with_ext(IPV6_HOP_BY_HOP, &ext);
        assert_eq!(classify(&f[..]), Verdict::ExtHeaders(stream));
        // Routing header, then TCP: not UDP.
        let f = with_ext(IPV6_ROUTING, &[6, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(classify(&f[..]), Verdict::NotUdp);
        // More headers than the walk takes: not UDP as far as it knows.
        let one = |next: u8| [next, 0, 1, 4, 0, 0, 0, 0];
        let many: Vec<u8> = [IPV6_DEST_OPTS, IPV6_DEST_OPTS, IPV6_DEST_OPTS, IPPROTO_UDP]
            .iter()
            .flat_map(|&n| one(n))
            .collect();
        assert_eq!(
            classify(&with_ext(IPV6_DEST_OPTS, &many)[..]),
            Verdict::NotUdp
        );
        let three: Vec<u8> = [IPV6_DEST_OPTS, IPV6_DEST_OPTS, IPPROTO_UDP]
            .iter()
            .flat_map(|&n| one(n))
            .collect();
        assert_eq!(
            classify(&with_ext(IPV6_DEST_OPTS, &three)[..]),
            Verdict::ExtHeaders(stream)
        );
        // A header cut off by the frame: not UDP.
        let f = with_ext(IPV6_HOP_BY_HOP, &ext);
        assert_eq!(
            classify(&Split(&f[..14 + 40 + 1], f.len())),
            Verdict::NotUdp
        );
        // The first fragment of UDP behind a fragment header says its
        // stream; a later one does not.
        let first = with_ext(IPV6_FRAGMENT, &[IPPROTO_UDP, 0, 0, 1, 0, 0, 0, 7]);
        assert_eq!(classify(&first[..]), Verdict::Fragment(Some(stream)));
        let later = with_ext(IPV6_FRAGMENT, &[IPPROTO_UDP, 0, 0, 8, 0, 0, 0, 7]);
        assert_eq!(classify(&later[..]), Verdict::Fragment(None));
    }

    #[test]
    fn an_s_tag_inside_a_tag_is_not_ip() {
        // The second tag must be 802.1Q, as userspace requires: with an
        // 802.1ad TPID there the frame is left to the kernel.
        for inner in [ETHERTYPE_QINQ, 0x9100] {
            for outer in [ETHERTYPE_VLAN, ETHERTYPE_QINQ] {
                let f = frame(&[(outer, 10), (inner, 20)], false, 5, 8);
                assert_eq!(classify(&f[..]), Verdict::NotIp, "{outer:#x}/{inner:#x}");
            }
        }
        for outer in [ETHERTYPE_VLAN, ETHERTYPE_QINQ] {
            let f = frame(&[(outer, 10), (ETHERTYPE_VLAN, 20)], true, 0, 8);
            assert_eq!(datagram(classify(&f[..])).key.vlan, 20);
        }
    }

    #[test]
    fn a_zero_udp_checksum_is_malformed_over_ipv6_only() {
        let zero = |mut f: Vec<u8>| {
            let at = f.len() - 8 - 2;
            f[at..at + 2].fill(0);
            f
        };
        let v6 = zero(frame(&[], true, 0, 8));
        assert_eq!(classify(&v6[..]), Verdict::Malformed);
        let v4 = zero(frame(&[], false, 5, 8));
        assert_eq!(datagram(classify(&v4[..])).payload_len, 8);
    }

    #[test]
    fn trailing_ethernet_padding_is_fine() {
        let mut f = frame(&[], false, 5, 1);
        f.resize(60, 0);
        assert_eq!(datagram(classify(&f[..])).payload_len, 1);
    }

    proptest::proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
            if let Verdict::Udp(d) = classify(&bytes[..]) {
                proptest::prop_assert!(d.payload_offset + d.payload_len <= bytes.len());
            }
        }
    }
}
