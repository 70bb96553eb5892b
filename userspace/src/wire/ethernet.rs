//! Ethernet II frames and 802.1Q / 802.1ad VLAN tags.
//!
//! [`Frame`] views the 14-byte Ethernet II header and its payload;
//! [`VlanTag`] views the 4 bytes that follow a VLAN TPID (the TCI and the
//! encapsulated ethertype); [`Tags::walk`] walks at most two tags (an outer
//! 802.1ad or 802.1Q tag, then an 802.1Q tag) and says where layer 3 starts;
//! [`multicast_mac`] maps a group to its Ethernet address.

use std::net::IpAddr;

use super::error::ParseError;
use super::field::{Field, Rest};

/// Ethertypes fanout knows about.
pub mod ethertype {
    pub const IPV4: u16 = 0x0800;
    pub const IPV6: u16 = 0x86dd;
    /// 802.1Q customer tag (C-tag).
    pub const VLAN: u16 = 0x8100;
    /// 802.1ad service tag (S-tag, "QinQ").
    pub const QINQ: u16 = 0x88a8;
}

/// Length of the Ethernet II header.
pub const HEADER_LEN: usize = 14;
/// Length of one VLAN tag (TPID + TCI).
pub const VLAN_TAG_LEN: usize = 4;

mod field {
    use super::{Field, Rest};
    pub const DESTINATION: Field = 0..6;
    pub const SOURCE: Field = 6..12;
    pub const ETHERTYPE: Field = 12..14;
    pub const PAYLOAD: Rest = 14..;
}

#[inline]
fn read_u16(b: &[u8], f: Field) -> u16 {
    let b = &b[f];
    u16::from_be_bytes([b[0], b[1]])
}

/// A view over an Ethernet II frame.
#[derive(Debug, Clone)]
pub struct Frame<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Frame<T> {
    /// Wraps `buffer` without checking its length.
    pub const fn new_unchecked(buffer: T) -> Self {
        Self { buffer }
    }

    /// Wraps `buffer`, checking it holds a whole header.
    pub fn new_checked(buffer: T) -> Result<Self, ParseError> {
        let f = Self::new_unchecked(buffer);
        f.check_len()?;
        Ok(f)
    }

    /// `Truncated` unless the buffer holds the 14-byte header.
    pub fn check_len(&self) -> Result<(), ParseError> {
        if self.buffer.as_ref().len() < HEADER_LEN {
            Err(ParseError::Truncated)
        } else {
            Ok(())
        }
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    pub fn dst_addr(&self) -> [u8; 6] {
        let mut a = [0; 6];
        a.copy_from_slice(&self.buffer.as_ref()[field::DESTINATION]);
        a
    }

    pub fn src_addr(&self) -> [u8; 6] {
        let mut a = [0; 6];
        a.copy_from_slice(&self.buffer.as_ref()[field::SOURCE]);
        a
    }

    pub fn ethertype(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::ETHERTYPE)
    }

    /// Everything after the header (VLAN tags included, if any).
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[field::PAYLOAD]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Frame<T> {
    pub fn set_dst_addr(&mut self, addr: [u8; 6]) {
        self.buffer.as_mut()[field::DESTINATION].copy_from_slice(&addr);
    }

    pub fn set_src_addr(&mut self, addr: [u8; 6]) {
        self.buffer.as_mut()[field::SOURCE].copy_from_slice(&addr);
    }

    pub fn set_ethertype(&mut self, value: u16) {
        self.buffer.as_mut()[field::ETHERTYPE].copy_from_slice(&value.to_be_bytes());
    }

    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::PAYLOAD]
    }
}

mod tag_field {
    use super::{Field, Rest};
    pub const TCI: Field = 0..2;
    pub const ETHERTYPE: Field = 2..4;
    pub const PAYLOAD: Rest = 4..;
}

/// A view over the body of a VLAN tag: the 2-byte TCI (PCP, DEI, VLAN id)
/// and the encapsulated ethertype, i.e. the 4 bytes after a TPID of
/// `0x8100` or `0x88a8`.
#[derive(Debug, Clone)]
pub struct VlanTag<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> VlanTag<T> {
    pub const fn new_unchecked(buffer: T) -> Self {
        Self { buffer }
    }

    pub fn new_checked(buffer: T) -> Result<Self, ParseError> {
        let t = Self::new_unchecked(buffer);
        t.check_len()?;
        Ok(t)
    }

    pub fn check_len(&self) -> Result<(), ParseError> {
        if self.buffer.as_ref().len() < VLAN_TAG_LEN {
            Err(ParseError::Truncated)
        } else {
            Ok(())
        }
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    pub fn tci(&self) -> u16 {
        read_u16(self.buffer.as_ref(), tag_field::TCI)
    }

    /// Priority code point (3 bits).
    pub fn pcp(&self) -> u8 {
        (self.tci() >> 13) as u8
    }

    /// Drop eligible indicator.
    pub fn dei(&self) -> bool {
        self.tci() & 0x1000 != 0
    }

    /// VLAN id (12 bits).
    pub fn vid(&self) -> u16 {
        self.tci() & 0x0fff
    }

    /// The encapsulated ethertype (another TPID, or the L3 protocol).
    pub fn ethertype(&self) -> u16 {
        read_u16(self.buffer.as_ref(), tag_field::ETHERTYPE)
    }

    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[tag_field::PAYLOAD]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> VlanTag<T> {
    pub fn set_tci(&mut self, value: u16) {
        self.buffer.as_mut()[tag_field::TCI].copy_from_slice(&value.to_be_bytes());
    }

    /// Sets the priority code point (3 bits; higher bits are ignored).
    pub fn set_pcp(&mut self, pcp: u8) {
        let tci = (self.tci() & 0x1fff) | (u16::from(pcp & 7) << 13);
        self.set_tci(tci);
    }

    pub fn set_dei(&mut self, dei: bool) {
        let tci = (self.tci() & !0x1000) | if dei { 0x1000 } else { 0 };
        self.set_tci(tci);
    }

    /// Sets the VLAN id (12 bits; higher bits are ignored).
    pub fn set_vid(&mut self, vid: u16) {
        let tci = (self.tci() & 0xf000) | (vid & 0x0fff);
        self.set_tci(tci);
    }

    pub fn set_ethertype(&mut self, value: u16) {
        self.buffer.as_mut()[tag_field::ETHERTYPE].copy_from_slice(&value.to_be_bytes());
    }

    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[tag_field::PAYLOAD]
    }
}

/// The link layer of a frame, as found by [`Tags::walk`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Tags {
    /// VLAN id of the first (outer) tag, if any.
    pub outer_vlan: Option<u16>,
    /// VLAN id of the second (inner, 802.1Q) tag, if any.
    pub inner_vlan: Option<u16>,
    /// The ethertype after the tags (the L3 protocol).
    pub ethertype: u16,
    /// Offset of the L3 header in the frame.
    pub l3_offset: usize,
}

impl Tags {
    /// Walks the Ethernet header and up to two VLAN tags: the first may be
    /// 802.1ad or 802.1Q, the second must be 802.1Q. A third tag (or an S-tag
    /// inside a tag) is [`ParseError::BadVlan`]. Never panics.
    pub fn walk(frame: &[u8]) -> Result<Self, ParseError> {
        let eth = Frame::new_checked(frame)?;
        let mut tags = Tags {
            outer_vlan: None,
            inner_vlan: None,
            ethertype: eth.ethertype(),
            l3_offset: HEADER_LEN,
        };
        if !is_tpid(tags.ethertype) {
            return Ok(tags);
        }
        let outer = VlanTag::new_checked(eth.payload())?;
        tags.outer_vlan = Some(outer.vid());
        tags.ethertype = outer.ethertype();
        tags.l3_offset += VLAN_TAG_LEN;
        if tags.ethertype == ethertype::QINQ {
            return Err(ParseError::BadVlan);
        }
        if tags.ethertype != ethertype::VLAN {
            return Ok(tags);
        }
        let inner = VlanTag::new_checked(outer.payload())?;
        tags.inner_vlan = Some(inner.vid());
        tags.ethertype = inner.ethertype();
        tags.l3_offset += VLAN_TAG_LEN;
        if is_tpid(tags.ethertype) {
            return Err(ParseError::BadVlan);
        }
        Ok(tags)
    }
}

/// The Ethernet address a multicast group is sent to: `01:00:5e` and the
/// low 23 bits of an IPv4 group (RFC 1112), `33:33` and the low 32 bits of
/// an IPv6 group (RFC 2464). `None` for a unicast address.
pub fn multicast_mac(group: IpAddr) -> Option<[u8; 6]> {
    match group {
        IpAddr::V4(g) if g.is_multicast() => {
            let o = g.octets();
            Some([0x01, 0x00, 0x5e, o[1] & 0x7f, o[2], o[3]])
        }
        IpAddr::V6(g) if g.is_multicast() => {
            let o = g.octets();
            Some([0x33, 0x33, o[12], o[13], o[14], o[15]])
        }
        _ => None,
    }
}

#[inline]
fn is_tpid(ethertype: u16) -> bool {
    ethertype == ethertype::VLAN || ethertype == ethertype::QINQ
}

#[cfg(test)]
mod tests {
    use super::*;

    // dst 01:00:5e:00:00:fb (mDNS group), src 02:00:00:00:00:01, IPv4.
    const FRAME: [u8; 16] = [
        0x01, 0x00, 0x5e, 0x00, 0x00, 0xfb, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x08, 0x00, 0xaa,
        0xbb,
    ];

    #[test]
    fn multicast_macs() {
        let mac = |s: &str| multicast_mac(s.parse().unwrap());
        assert_eq!(
            mac("224.0.0.251"),
            Some([0x01, 0x00, 0x5e, 0x00, 0x00, 0xfb])
        );
        // 32 groups share a MAC: the high bit of the second octet is dropped.
        assert_eq!(
            mac("239.129.2.3"),
            Some([0x01, 0x00, 0x5e, 0x01, 0x02, 0x03])
        );
        assert_eq!(
            mac("ff02::1:ff00:1234"),
            Some([0x33, 0x33, 0xff, 0x00, 0x12, 0x34])
        );
        assert_eq!(mac("192.168.1.1"), None);
        assert_eq!(mac("fd00::1"), None);
    }

    #[test]
    fn deconstruct() {
        let f = Frame::new_checked(&FRAME[..]).unwrap();
        assert_eq!(f.dst_addr(), [0x01, 0x00, 0x5e, 0x00, 0x00, 0xfb]);
        assert_eq!(f.src_addr(), [0x02, 0, 0, 0, 0, 0x01]);
        assert_eq!(f.ethertype(), ethertype::IPV4);
        assert_eq!(f.payload(), &[0xaa, 0xbb]);
    }

    #[test]
    fn construct() {
        let mut buf = [0xffu8; 16];
        let mut f = Frame::new_checked(&mut buf[..]).unwrap();
        f.set_dst_addr([0x01, 0x00, 0x5e, 0x00, 0x00, 0xfb]);
        f.set_src_addr([0x02, 0, 0, 0, 0, 0x01]);
        f.set_ethertype(ethertype::IPV4);
        f.payload_mut().copy_from_slice(&[0xaa, 0xbb]);
        assert_eq!(buf, FRAME);
    }

    #[test]
    fn truncated() {
        for n in 0..HEADER_LEN {
            assert_eq!(
                Frame::new_checked(&FRAME[..n]).unwrap_err(),
                ParseError::Truncated
            );
        }
        assert!(
            Frame::new_checked(&FRAME[..14])
                .unwrap()
                .payload()
                .is_empty()
        );
    }

    #[test]
    fn vlan_tag_fields() {
        // PCP 5, DEI 1, VID 0xabc, then IPv6.
        let bytes = [0xba, 0xbc, 0x86, 0xdd];
        let t = VlanTag::new_checked(&bytes[..]).unwrap();
        assert_eq!((t.pcp(), t.dei(), t.vid()), (5, true, 0xabc));
        assert_eq!(t.ethertype(), ethertype::IPV6);
        let mut out = [0u8; 4];
        let mut t = VlanTag::new_unchecked(&mut out[..]);
        t.set_vid(0xabc);
        t.set_pcp(5);
        t.set_dei(true);
        t.set_ethertype(ethertype::IPV6);
        assert_eq!(out, bytes);
        assert_eq!(
            VlanTag::new_checked(&bytes[..3]).unwrap_err(),
            ParseError::Truncated
        );
    }

    fn tagged(tpids: &[u16], inner: u16) -> Vec<u8> {
        let mut f = FRAME[..12].to_vec();
        for (i, &tpid) in tpids.iter().enumerate() {
            f.extend_from_slice(&tpid.to_be_bytes());
            f.extend_from_slice(&(100 + i as u16).to_be_bytes());
        }
        f.extend_from_slice(&inner.to_be_bytes());
        f.extend_from_slice(&[0x45, 0]);
        f
    }

    #[test]
    fn walk_tags() {
        let t = Tags::walk(&tagged(&[], ethertype::IPV4)).unwrap();
        assert_eq!(
            t,
            Tags {
                outer_vlan: None,
                inner_vlan: None,
                ethertype: 0x0800,
                l3_offset: 14
            }
        );
        let t = Tags::walk(&tagged(&[ethertype::VLAN], ethertype::IPV6)).unwrap();
        assert_eq!(
            t,
            Tags {
                outer_vlan: Some(100),
                inner_vlan: None,
                ethertype: 0x86dd,
                l3_offset: 18
            }
        );
        let t = Tags::walk(&tagged(&[ethertype::QINQ], ethertype::IPV4)).unwrap();
        assert_eq!(
            (t.outer_vlan, t.inner_vlan, t.l3_offset),
            (Some(100), None, 18)
        );
        for outer in [ethertype::QINQ, ethertype::VLAN] {
            let f = tagged(&[outer, ethertype::VLAN], ethertype::IPV4);
            let t = Tags::walk(&f).unwrap();
            assert_eq!(
                t,
                Tags {
                    outer_vlan: Some(100),
                    inner_vlan: Some(101),
                    ethertype: 0x0800,
                    l3_offset: 22
                }
            );
            assert_eq!(&f[t.l3_offset..], &[0x45, 0]);
            // Every truncation inside the tags is reported.
            for n in 0..20 {
                assert_eq!(
                    Tags::walk(&f[..n]).unwrap_err(),
                    ParseError::Truncated,
                    "{n}"
                );
            }
        }
        // Unsupported stacks.
        for stack in [
            &[ethertype::VLAN, ethertype::QINQ][..],
            &[ethertype::QINQ, ethertype::QINQ],
            &[ethertype::VLAN, ethertype::VLAN, ethertype::VLAN],
            &[ethertype::QINQ, ethertype::VLAN, ethertype::VLAN],
        ] {
            let f = tagged(stack, ethertype::IPV4);
            assert_eq!(
                Tags::walk(&f).unwrap_err(),
                ParseError::BadVlan,
                "{stack:x?}"
            );
        }
    }
}
