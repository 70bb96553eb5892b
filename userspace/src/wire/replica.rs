//! Replica headers: one [`ReplicaTemplate`] per output, built once.
//!
//! A template holds the finished Ethernet (+ one 802.1Q tag) / IP / UDP
//! header of the output's replicas with the per-datagram fields zeroed, the
//! constant part of the IPv4 header sum, and the sum of the replica's
//! addresses and ports. [`ReplicaTemplate::write`] copies it and patches the
//! per-datagram fields: lengths, TOS / traffic class, the IPv4 header
//! checksum (constant sum + TOS + total length), and the UDP checksum, which
//! is the received one adjusted incrementally (RFC 1624) for the changed
//! addresses and ports. The payload is never read: the replica's payload
//! must be the received one, byte for byte. What depends on the received
//! datagram alone (its checks, lengths, the received half of the checksum
//! update) is a [`Received`], computed once per datagram when it has many
//! replicas ([`ReplicaTemplate::write_image`]).
//!
//! Choices, stated once:
//! - the replica has the family of the received datagram (a template only
//!   accepts datagrams of its own family: [`WriteError::FamilyMismatch`]);
//! - IPv4 replicas carry no options, identification 0 and DF set (atomic
//!   datagrams, RFC 6864); IPv6 replicas carry flow label 0;
//! - a received IPv4 UDP checksum of 0 ("none") stays 0; a computed 0 is
//!   sent as `0xffff`;
//! - TOS / traffic class follow [`TosPolicy`]: by default the DSCP is copied
//!   and ECN is cleared (a congestion mark from the ingress path says
//!   nothing about the N egress paths).

use std::net::IpAddr;

use super::checksum::{self, fold};
use super::ethernet::{self, VlanTag, ethertype};
use super::ip::{IPPROTO_UDP, IpPair};
use super::parse::Datagram;
use super::{ipv4, ipv6, udp};

/// The longest replica header: Ethernet, one VLAN tag, IPv6, UDP.
pub const MAX_HEADER_LEN: usize =
    ethernet::HEADER_LEN + ethernet::VLAN_TAG_LEN + ipv6::HEADER_LEN + udp::HEADER_LEN;

/// How a replica's IPv4 TOS / IPv6 traffic class is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum TosPolicy {
    /// Copy the received DSCP, set ECN to Not-ECT.
    #[default]
    CopyDscp,
    /// Use this whole byte (DSCP << 2 | ECN) for every replica.
    Set(u8),
}

/// What an output's replicas look like.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ReplicaSpec {
    /// Next hop (unicast) or the group's multicast MAC.
    pub dst_mac: [u8; 6],
    /// The egress interface's MAC.
    pub src_mac: [u8; 6],
    /// 802.1Q VLAN id (1..=4094) to tag replicas with (PCP 0).
    pub vlan: Option<u16>,
    /// Source address (the egress interface's).
    pub src: IpAddr,
    /// Destination: the receiver, or the group.
    pub dst: IpAddr,
    /// IPv4 TTL or IPv6 hop limit.
    pub ttl: u8,
    /// UDP source port; `None` keeps the received one.
    pub src_port: Option<u16>,
    pub dst_port: u16,
    pub tos: TosPolicy,
}

/// A [`ReplicaSpec`] that cannot be built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("source {src} and destination {dst} are of different IP families")]
    FamilyMismatch { src: IpAddr, dst: IpAddr },
    #[error("VLAN id {0} is outside 1..=4094")]
    BadVlanId(u16),
}

/// Why one replica could not be written (count it, drop the replica).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum WriteError {
    #[error("output buffer of {have} bytes, the header needs {need}")]
    BufferTooSmall { need: usize, have: usize },
    #[error("received datagram and replica are of different IP families")]
    FamilyMismatch,
    #[error("UDP length {0} below 8, or too long for an IPv4 packet")]
    BadLength(u16),
    #[error("UDP over IPv6 without checksum: cannot be adjusted")]
    ZeroChecksumV6,
    #[error("received with TTL (hop limit) {0}: none left for another hop")]
    TtlExpired(u8),
}

/// The precomputed headers of one output's replicas.
#[derive(Debug, Clone)]
pub struct ReplicaTemplate {
    spec: ReplicaSpec,
    addrs: IpPair,
    header: [u8; MAX_HEADER_LEN],
    len: usize,
    layout: Layout,
    /// TOS / traffic class of a replica: `(received & tos_keep) | tos_set`
    /// ([`TosPolicy`] without a branch).
    tos_keep: u8,
    tos_set: u8,
    /// IPv4: folded sum of the IP header with TOS, total length and
    /// checksum zero.
    ip_sum: u16,
    /// Folded sum of the replica's addresses, destination port and (when
    /// set) source port: the `m'` of RFC 1624.
    new_sum: u16,
}

/// Where the IP header starts and which it is: the four header shapes,
/// so that [`ReplicaTemplate::write_image`] patches at constant offsets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    V4,
    V4Vlan,
    V6,
    V6Vlan,
}

/// The IP header's offset without and with the VLAN tag.
const IP_AT: usize = ethernet::HEADER_LEN;
const IP_AT_VLAN: usize = ethernet::HEADER_LEN + ethernet::VLAN_TAG_LEN;

impl ReplicaTemplate {
    /// Builds the template of an output.
    pub fn new(spec: ReplicaSpec) -> Result<Self, TemplateError> {
        let addrs = IpPair::new(spec.src, spec.dst).ok_or(TemplateError::FamilyMismatch {
            src: spec.src,
            dst: spec.dst,
        })?;
        if let Some(vid) = spec.vlan
            && !(1..=4094).contains(&vid)
        {
            return Err(TemplateError::BadVlanId(vid));
        }
        let mut header = [0u8; MAX_HEADER_LEN];
        let l3_type = if addrs.is_ipv4() {
            ethertype::IPV4
        } else {
            ethertype::IPV6
        };

        let mut eth = ethernet::Frame::new_unchecked(&mut header[..]);
        eth.set_dst_addr(spec.dst_mac);
        eth.set_src_addr(spec.src_mac);
        let ip_offset = match spec.vlan {
            None => {
                eth.set_ethertype(l3_type);
                ethernet::HEADER_LEN
            }
            Some(vid) => {
                eth.set_ethertype(ethertype::VLAN);
                let mut tag = VlanTag::new_unchecked(eth.payload_mut());
                tag.set_tci(vid);
                tag.set_ethertype(l3_type);
                ethernet::HEADER_LEN + ethernet::VLAN_TAG_LEN
            }
        };

        let (udp_offset, ip_sum) = match addrs {
            IpPair::V4 { src, dst } => {
                let end = ip_offset + ipv4::HEADER_LEN;
                let mut ip = ipv4::Packet::new_unchecked(&mut header[ip_offset..end]);
                ip.set_version(4);
                ip.set_header_len(ipv4::HEADER_LEN);
                ip.set_dont_frag(true);
                ip.set_protocol(IPPROTO_UDP);
                ip.set_src_addr(src);
                ip.set_dst_addr(dst);
                ip.set_ttl(spec.ttl);
                (end, checksum::data(&header[ip_offset..end]))
            }
            IpPair::V6 { src, dst } => {
                let end = ip_offset + ipv6::HEADER_LEN;
                let mut ip = ipv6::Packet::new_unchecked(&mut header[ip_offset..end]);
                ip.set_version(6);
                ip.set_next_header(IPPROTO_UDP);
                ip.set_hop_limit(spec.ttl);
                ip.set_src_addr(src);
                ip.set_dst_addr(dst);
                (end, 0)
            }
        };

        let len = udp_offset + udp::HEADER_LEN;
        let mut udp = udp::Packet::new_unchecked(&mut header[udp_offset..len]);
        udp.set_src_port(spec.src_port.unwrap_or(0));
        udp.set_dst_port(spec.dst_port);

        let new_sum =
            fold(addrs.sum() + u64::from(spec.dst_port) + u64::from(spec.src_port.unwrap_or(0)));
        let layout = match (addrs.is_ipv4(), spec.vlan.is_some()) {
            (true, false) => Layout::V4,
            (true, true) => Layout::V4Vlan,
            (false, false) => Layout::V6,
            (false, true) => Layout::V6Vlan,
        };
        debug_assert_eq!(
            ip_offset,
            if spec.vlan.is_some() {
                IP_AT_VLAN
            } else {
                IP_AT
            }
        );
        let (tos_keep, tos_set) = match spec.tos {
            TosPolicy::CopyDscp => (0xfc, 0),
            TosPolicy::Set(tos) => (0, tos),
        };
        Ok(Self {
            spec,
            addrs,
            header,
            len,
            layout,
            tos_keep,
            tos_set,
            ip_sum,
            new_sum,
        })
    }

    pub fn spec(&self) -> &ReplicaSpec {
        &self.spec
    }

    /// The replica's addresses.
    pub fn addrs(&self) -> IpPair {
        self.addrs
    }

    /// Length of the headers [`Self::write`] writes.
    pub fn header_len(&self) -> usize {
        self.len
    }

    /// Length of the IP packet of a replica with `payload_len` payload
    /// bytes (IP and UDP headers and payload, no Ethernet or VLAN header):
    /// what the egress interface's MTU bounds.
    #[inline]
    pub fn ip_len(&self, payload_len: usize) -> usize {
        let ip_at = match self.layout {
            Layout::V4 | Layout::V6 => IP_AT,
            Layout::V4Vlan | Layout::V6Vlan => IP_AT_VLAN,
        };
        self.len - ip_at + payload_len
    }

    /// Writes the headers of the replica of `rx` into the start of `out`
    /// and returns their length; the caller appends the received UDP
    /// payload (`rx.payload_len` bytes) unchanged. Never panics, never
    /// allocates, never reads a payload.
    #[inline]
    pub fn write(&self, rx: &Datagram, out: &mut [u8]) -> Result<usize, WriteError> {
        let have = out.len();
        let out = out.get_mut(..self.len).ok_or(WriteError::BufferTooSmall {
            need: self.len,
            have,
        })?;
        if rx.addrs.is_ipv4() != self.addrs.is_ipv4() {
            return Err(WriteError::FamilyMismatch);
        }
        let rx = Received::new(rx)?;
        out.copy_from_slice(&self.header[..self.len]);
        self.patch(&rx, out)?;
        Ok(self.len)
    }

    /// [`Self::write`] for a datagram whose per-datagram part was computed
    /// once ([`Received::new`]) for all its replicas, into a buffer of
    /// [`MAX_HEADER_LEN`] bytes: the whole header image is copied (a fixed
    /// size: no call to `memcpy`) and patched at constant offsets; the
    /// bytes past [`Self::header_len`] are scratch. The same bytes as
    /// [`Self::write`] in `out[..header_len]`.
    #[inline(always)]
    pub fn write_image(
        &self,
        rx: &Received,
        out: &mut [u8; MAX_HEADER_LEN],
    ) -> Result<usize, WriteError> {
        *out = self.header;
        self.patch(rx, out)?;
        Ok(self.len)
    }

    /// Patches the per-datagram fields into a copy of the header image
    /// (at least [`Self::header_len`] bytes) at the constant offsets of its
    /// shape; over the fixed-size image the range checks fold away.
    #[inline(always)]
    fn patch(&self, rx: &Received, out: &mut [u8]) -> Result<(), WriteError> {
        match (self.layout, rx.ipv4) {
            (Layout::V4, true) => self.patch_v4::<IP_AT>(rx, out),
            (Layout::V4Vlan, true) => self.patch_v4::<IP_AT_VLAN>(rx, out),
            (Layout::V6, false) => self.patch_v6::<IP_AT>(rx, out),
            (Layout::V6Vlan, false) => self.patch_v6::<IP_AT_VLAN>(rx, out),
            _ => return Err(WriteError::FamilyMismatch),
        }
        Ok(())
    }

    #[inline(always)]
    fn patch_v4<const IP: usize>(&self, rx: &Received, out: &mut [u8]) {
        const L: usize = ipv4::HEADER_LEN;
        let tos = (rx.tos & self.tos_keep) | self.tos_set;
        if let Some(ip) = out.get_mut(IP..IP + L) {
            let mut ip = ipv4::Packet::new_unchecked(ip);
            ip.set_tos(tos);
            ip.set_total_len(rx.ip_total);
            let mut sum = u32::from(self.ip_sum) + u32::from(tos) + u32::from(rx.ip_total);
            if rx.ttl_left < self.spec.ttl {
                // A router's rule, min(configured, received - 1): the
                // image's TTL (in `ip_sum`) replaced by the lower one.
                ip.set_ttl(rx.ttl_left);
                sum += u32::from(!(u16::from(self.spec.ttl) << 8)) + (u32::from(rx.ttl_left) << 8);
            }
            ip.set_checksum(!checksum::fold32(sum));
        }
        if let Some(udp) = out.get_mut(IP + L..IP + L + udp::HEADER_LEN) {
            self.patch_udp(rx, udp);
        }
    }

    #[inline(always)]
    fn patch_v6<const IP: usize>(&self, rx: &Received, out: &mut [u8]) {
        const L: usize = ipv6::HEADER_LEN;
        let tos = (rx.tos & self.tos_keep) | self.tos_set;
        if let Some(ip) = out.get_mut(IP..IP + L) {
            let mut ip = ipv6::Packet::new_unchecked(ip);
            ip.set_traffic_class(tos);
            ip.set_payload_len(rx.udp_len);
            if rx.ttl_left < self.spec.ttl {
                ip.set_hop_limit(rx.ttl_left);
            }
        }
        if let Some(udp) = out.get_mut(IP + L..IP + L + udp::HEADER_LEN) {
            self.patch_udp(rx, udp);
        }
    }

    #[inline(always)]
    fn patch_udp(&self, rx: &Received, udp: &mut [u8]) {
        let mut udp = udp::Packet::new_unchecked(udp);
        let partial = match self.spec.src_port {
            Some(_) => rx.partial_set,
            None => {
                udp.set_src_port(rx.src_port);
                rx.partial_kept
            }
        };
        udp.set_len(rx.udp_len);
        udp.set_checksum(rx.udp_checksum(partial, self.new_sum));
    }
}

/// The per-datagram half of every replica's headers: what
/// [`ReplicaTemplate::write`] derives from the received datagram, computed
/// once and shared by all its outputs ([`ReplicaTemplate::write_image`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Received {
    ipv4: bool,
    tos: u8,
    src_port: u16,
    udp_len: u16,
    /// IPv4 total length (`udp_len` + 20); 0 for IPv6.
    ip_total: u16,
    /// The received TTL (hop limit) less this hop: a replica's is at most
    /// this ([`Received::new`] refuses a datagram with none left).
    ttl_left: u8,
    /// A received IPv4 UDP checksum of 0 ("none"), which stays 0.
    no_checksum: bool,
    /// RFC 1624, eqn. 3 without `m'`: `~HC + ~m`, `m` the received
    /// addresses and destination port (for an output that keeps the source
    /// port) ...
    partial_kept: u32,
    /// ... and with the source port (for one that replaces it).
    partial_set: u32,
}

impl Received {
    /// Checks the datagram once for all its replicas: the errors of
    /// [`ReplicaTemplate::write`] that do not depend on the output.
    #[inline]
    pub fn new(rx: &Datagram) -> Result<Self, WriteError> {
        if usize::from(rx.udp_len) < udp::HEADER_LEN {
            return Err(WriteError::BadLength(rx.udp_len));
        }
        if rx.ttl <= 1 {
            return Err(WriteError::TtlExpired(rx.ttl));
        }
        let ipv4 = rx.addrs.is_ipv4();
        if !ipv4 && rx.udp_checksum == 0 {
            return Err(WriteError::ZeroChecksumV6);
        }
        let ip_total = if ipv4 {
            rx.udp_len
                .checked_add(ipv4::HEADER_LEN as u16)
                .ok_or(WriteError::BadLength(rx.udp_len))?
        } else {
            0
        };
        // RFC 1624: m = received addresses and ports, m' = the replica's.
        // A kept source port is in neither.
        let m = rx.addrs.sum() + u64::from(rx.dst_port);
        let not_hc = u32::from(!rx.udp_checksum);
        Ok(Self {
            ipv4,
            tos: rx.tos,
            src_port: rx.src_port,
            udp_len: rx.udp_len,
            ip_total,
            ttl_left: rx.ttl - 1,
            no_checksum: ipv4 && rx.udp_checksum == 0,
            partial_kept: not_hc + u32::from(!fold(m)),
            partial_set: not_hc + u32::from(!fold(m + u64::from(rx.src_port))),
        })
    }

    /// The replica's UDP checksum: [`checksum::udp_update`] with the
    /// received part summed already.
    #[inline]
    fn udp_checksum(&self, partial: u32, new_sum: u16) -> u16 {
        if self.no_checksum {
            return 0;
        }
        match !checksum::fold32(partial + u32::from(new_sum)) {
            0 => 0xffff,
            c => c,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::parse;
    use crate::wire::testutil::{FrameSpec, build_frame, ref_sum, ref_udp_checksum};
    use proptest::prelude::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    const DST_MAC: [u8; 6] = [0x02, 0xdd, 0, 0, 0, 0x02];
    const SRC_MAC: [u8; 6] = [0x02, 0x55, 0, 0, 0, 0x01];

    fn v4_rx() -> FrameSpec {
        FrameSpec {
            tags: vec![],
            addrs: IpPair::V4 {
                src: Ipv4Addr::new(10, 0, 0, 1),
                dst: Ipv4Addr::new(239, 1, 2, 3),
            },
            tos: 0xb9, // EF, ECT(1)
            ttl: 16,
            ipv4_options: vec![],
            src_port: 5000,
            dst_port: 5004,
            zero_checksum: false,
        }
    }

    fn v4_spec() -> ReplicaSpec {
        ReplicaSpec {
            dst_mac: DST_MAC,
            src_mac: SRC_MAC,
            vlan: Some(42),
            src: Ipv4Addr::new(192, 168, 1, 1).into(),
            dst: Ipv4Addr::new(192, 168, 1, 2).into(),
            ttl: 64,
            src_port: Some(7000),
            dst_port: 6000,
            tos: TosPolicy::CopyDscp,
        }
    }

    #[test]
    fn golden_v4_replica() {
        let payload = b"fan-out!!";
        let (rx_frame, _) = build_frame(&v4_rx(), payload);
        let rx = parse(&rx_frame).unwrap();
        let t = ReplicaTemplate::new(v4_spec()).unwrap();
        let mut out = [0xeeu8; 64];
        assert_eq!(t.write(&rx, &mut out), Ok(46));
        // Written out by hand; the two checksums are recomputed in full below.
        #[rustfmt::skip]
        let mut expected: [u8; 46] = [
            0x02, 0xdd, 0, 0, 0, 0x02, 0x02, 0x55, 0, 0, 0, 0x01, 0x81, 0x00, 0x00, 42, 0x08, 0x00,
            // TTL: min(configured 64, received 16 - 1).
            0x45, 0xb8, 0x00, 20 + 8 + 9, 0x00, 0x00, 0x40, 0x00, 15, 17, 0xff, 0xff,
            192, 168, 1, 1, 192, 168, 1, 2,
            0x1b, 0x58, 0x17, 0x70, 0x00, 8 + 9, 0xff, 0xff,
        ];
        expected[28..30].fill(0);
        let ip_c = !ref_sum(&[&expected[18..38]]);
        expected[28..30].copy_from_slice(&ip_c.to_be_bytes());
        let mut udp = expected[38..46].to_vec();
        udp.extend_from_slice(payload);
        let udp_c = ref_udp_checksum(&t.addrs(), &udp);
        expected[44..46].copy_from_slice(&udp_c.to_be_bytes());
        assert_eq!(&out[..46], &expected[..]);
        assert_eq!(&out[46..], &[0xee; 18], "nothing written past the header");
    }

    #[test]
    fn golden_v6_replica_keeps_source_port() {
        let rx_spec = FrameSpec {
            addrs: IpPair::V6 {
                src: "fd00::1".parse().unwrap(),
                dst: "ff3e::1".parse().unwrap(),
            },
            tags: vec![(ethertype::QINQ, 7), (ethertype::VLAN, 8)],
            ..v4_rx()
        };
        let payload = [0xa5u8; 101];
        let (rx_frame, _) = build_frame(&rx_spec, &payload);
        let rx = parse(&rx_frame).unwrap();
        let spec = ReplicaSpec {
            vlan: None,
            src: "fd00::2".parse::<Ipv6Addr>().unwrap().into(),
            dst: "fd00::3".parse::<Ipv6Addr>().unwrap().into(),
            ttl: 5,
            src_port: None,
            tos: TosPolicy::Set(0x28),
            ..v4_spec()
        };
        let t = ReplicaTemplate::new(spec).unwrap();
        let mut out = [0u8; MAX_HEADER_LEN];
        assert_eq!(t.write(&rx, &mut out), Ok(62));
        let mut expected = vec![
            0x02, 0xdd, 0, 0, 0, 0x02, 0x02, 0x55, 0, 0, 0, 0x01, 0x86, 0xdd,
        ];
        expected.extend_from_slice(&[0x62, 0x80, 0, 0, 0, 109, 17, 5]);
        expected.extend_from_slice(&"fd00::2".parse::<Ipv6Addr>().unwrap().octets());
        expected.extend_from_slice(&"fd00::3".parse::<Ipv6Addr>().unwrap().octets());
        expected.extend_from_slice(&[0x13, 0x88, 0x17, 0x70, 0, 109, 0, 0]);
        let mut udp = expected[54..62].to_vec();
        udp.extend_from_slice(&payload);
        let c = ref_udp_checksum(&t.addrs(), &udp);
        expected[60..62].copy_from_slice(&c.to_be_bytes());
        assert_eq!(&out[..62], &expected[..]);
    }

    #[test]
    fn zero_checksum_stays_zero() {
        let (f, _) = build_frame(
            &FrameSpec {
                zero_checksum: true,
                ..v4_rx()
            },
            b"abc",
        );
        let rx = parse(&f).unwrap();
        let t = ReplicaTemplate::new(v4_spec()).unwrap();
        let mut out = [0u8; 64];
        let n = t.write(&rx, &mut out).unwrap();
        assert_eq!(&out[n - 2..n], &[0, 0]);
    }

    #[test]
    fn computed_zero_is_sent_as_ffff() {
        let v6_rx = FrameSpec {
            addrs: IpPair::V6 {
                src: "fd00::1".parse().unwrap(),
                dst: "ff3e::1".parse().unwrap(),
            },
            ..v4_rx()
        };
        let v6_spec = ReplicaSpec {
            src: "fd00::2".parse::<Ipv6Addr>().unwrap().into(),
            dst: "fd00::3".parse::<Ipv6Addr>().unwrap().into(),
            ..v4_spec()
        };
        for (rx_spec, spec) in [(v4_rx(), v4_spec()), (v6_rx, v6_spec)] {
            let (f, _) = build_frame(&rx_spec, b"zero");
            let rx = parse(&f).unwrap();
            let mut out = [0u8; MAX_HEADER_LEN];
            // With destination port 0 the checksum is ~S; port ~S makes the
            // sum 0xffff, i.e. a computed checksum of 0.
            let t = ReplicaTemplate::new(ReplicaSpec {
                dst_port: 0,
                ..spec
            })
            .unwrap();
            let n = t.write(&rx, &mut out).unwrap();
            let port = u16::from_be_bytes([out[n - 2], out[n - 1]]);
            let t = ReplicaTemplate::new(ReplicaSpec {
                dst_port: port,
                ..spec
            })
            .unwrap();
            let n = t.write(&rx, &mut out).unwrap();
            assert_eq!(&out[n - 2..n], &[0xff, 0xff]);
            let mut udp = out[n - 8..n].to_vec();
            udp.extend_from_slice(b"zero");
            assert_eq!(ref_udp_checksum(&t.addrs(), &udp), 0xffff);
        }
    }

    #[test]
    fn errors() {
        assert_eq!(
            ReplicaTemplate::new(ReplicaSpec {
                dst: Ipv6Addr::LOCALHOST.into(),
                ..v4_spec()
            })
            .unwrap_err(),
            TemplateError::FamilyMismatch {
                src: Ipv4Addr::new(192, 168, 1, 1).into(),
                dst: Ipv6Addr::LOCALHOST.into()
            }
        );
        for vid in [0, 4095, 5000] {
            assert_eq!(
                ReplicaTemplate::new(ReplicaSpec {
                    vlan: Some(vid),
                    ..v4_spec()
                })
                .unwrap_err(),
                TemplateError::BadVlanId(vid)
            );
        }
        let t = ReplicaTemplate::new(v4_spec()).unwrap();
        let (f, _) = build_frame(&v4_rx(), b"abc");
        let rx = parse(&f).unwrap();
        let mut out = [0u8; MAX_HEADER_LEN];
        assert_eq!(
            t.write(&rx, &mut out[..45]),
            Err(WriteError::BufferTooSmall { need: 46, have: 45 })
        );
        let v6 = Datagram {
            addrs: IpPair::V6 {
                src: Ipv6Addr::LOCALHOST,
                dst: Ipv6Addr::LOCALHOST,
            },
            ..rx
        };
        assert_eq!(t.write(&v6, &mut out), Err(WriteError::FamilyMismatch));
        assert_eq!(
            t.write(&Datagram { udp_len: 7, ..rx }, &mut out),
            Err(WriteError::BadLength(7))
        );
        assert_eq!(
            t.write(
                &Datagram {
                    udp_len: 65530,
                    ..rx
                },
                &mut out
            ),
            Err(WriteError::BadLength(65530))
        );
        let t6 = ReplicaTemplate::new(ReplicaSpec {
            src: Ipv6Addr::LOCALHOST.into(),
            dst: Ipv6Addr::LOCALHOST.into(),
            ..v4_spec()
        })
        .unwrap();
        assert_eq!(
            t6.write(
                &Datagram {
                    udp_checksum: 0,
                    ..v6
                },
                &mut out
            ),
            Err(WriteError::ZeroChecksumV6)
        );
    }

    fn arb_template(v4: bool) -> impl Strategy<Value = ReplicaSpec> {
        (
            any::<[u8; 6]>(),
            proptest::option::of(1..=4094u16),
            any::<(u128, u128)>(),
            any::<u8>(),
            proptest::option::of(any::<u16>()),
            any::<u16>(),
            proptest::option::of(any::<u8>()),
        )
            .prop_map(move |(mac, vlan, (s, d), ttl, sp, dp, tos)| {
                let (src, dst): (IpAddr, IpAddr) = if v4 {
                    (
                        Ipv4Addr::from_bits(s as u32).into(),
                        Ipv4Addr::from_bits(d as u32).into(),
                    )
                } else {
                    (Ipv6Addr::from_bits(s).into(), Ipv6Addr::from_bits(d).into())
                };
                ReplicaSpec {
                    dst_mac: mac,
                    src_mac: SRC_MAC,
                    vlan,
                    src,
                    dst,
                    ttl,
                    src_port: sp,
                    dst_port: dp,
                    tos: tos.map_or(TosPolicy::CopyDscp, TosPolicy::Set),
                }
            })
    }

    fn arb_case() -> impl Strategy<Value = (FrameSpec, Vec<u8>, ReplicaSpec)> {
        crate::wire::testutil::arb_frame().prop_flat_map(|(rx, payload)| {
            let v4 = rx.addrs.is_ipv4();
            (Just(rx), Just(payload), arb_template(v4))
        })
    }

    proptest! {
        /// The replica's UDP checksum (incremental) equals a full recompute
        /// over its pseudo-header, header and the whole payload; round trip
        /// through `parse` gives back the template's fields.
        #[test]
        fn incremental_equals_full_and_round_trip((rx_spec, payload, spec) in arb_case()) {
            let (rx_frame, _) = build_frame(&rx_spec, &payload);
            let rx = parse(&rx_frame).unwrap();
            let t = ReplicaTemplate::new(spec).unwrap();
            if rx.ttl <= 1 {
                // No hop left: refused for every output, whatever it is.
                prop_assert_eq!(Received::new(&rx).err(), Some(WriteError::TtlExpired(rx.ttl)));
                prop_assert_eq!(
                    t.write(&rx, &mut [0u8; MAX_HEADER_LEN]),
                    Err(WriteError::TtlExpired(rx.ttl))
                );
                return Ok(());
            }
            let mut frame = vec![0u8; MAX_HEADER_LEN];
            let n = t.write(&rx, &mut frame).unwrap();
            prop_assert_eq!(n, t.header_len());
            let mut image = [0x5au8; MAX_HEADER_LEN];
            let received = Received::new(&rx).unwrap();
            prop_assert_eq!(t.write_image(&received, &mut image), Ok(n));
            prop_assert_eq!(&image[..n], &frame[..n]);
            frame.truncate(n);
            frame.extend_from_slice(&rx_frame[rx.payload_range()]);

            let d = parse(&frame).unwrap();
            prop_assert_eq!(d.outer_vlan, spec.vlan);
            prop_assert_eq!(d.inner_vlan, None);
            prop_assert_eq!(d.addrs, t.addrs());
            prop_assert_eq!(d.ttl, spec.ttl.min(rx.ttl - 1));
            let tos = match spec.tos { TosPolicy::CopyDscp => rx_spec.tos & 0xfc, TosPolicy::Set(v) => v };
            prop_assert_eq!(d.tos, tos);
            prop_assert_eq!(d.src_port, spec.src_port.unwrap_or(rx_spec.src_port));
            prop_assert_eq!(d.dst_port, spec.dst_port);
            prop_assert_eq!(d.udp_len, rx.udp_len);
            prop_assert_eq!(&frame[d.payload_range()], &payload[..]);
            prop_assert_eq!(&frame[..6], &spec.dst_mac);
            prop_assert_eq!(&frame[6..12], &spec.src_mac);

            let udp_bytes = &frame[d.payload_offset - 8..];
            if rx_spec.zero_checksum {
                prop_assert_eq!(d.udp_checksum, 0);
            } else {
                prop_assert_eq!(d.udp_checksum, ref_udp_checksum(&d.addrs, udp_bytes));
            }
            prop_assert!(udp::Packet::new_checked(udp_bytes).unwrap().verify_checksum(&d.addrs));
            if d.addrs.is_ipv4() {
                // The IPv4 header checksum covers the TTL each replica sets.
                let ip = d.payload_offset - 8 - ipv4::HEADER_LEN;
                prop_assert_eq!(ref_sum(&[&frame[ip..ip + ipv4::HEADER_LEN]]), 0xffff);
            }
        }
    }
}
