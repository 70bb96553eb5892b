//! UDP headers and checksums.
//!
//! [`Packet::new_checked`] guarantees `8 <= length field <= buffer length`,
//! so that no getter, nor [`Packet::payload`], panics afterwards. Checksums
//! cover the pseudo-header of either family ([`IpPair`]): over IPv4 a zero
//! checksum means "none" (it verifies, and is never produced by
//! [`Packet::fill_checksum`], which sends a computed 0 as `0xffff`); over
//! IPv6 the checksum is mandatory and 0 never verifies.

use super::checksum;
use super::error::ParseError;
use super::field::Field;
use super::ip::IpPair;

/// Length of the UDP header.
pub const HEADER_LEN: usize = 8;

mod field {
    use super::Field;
    pub const SRC_PORT: Field = 0..2;
    pub const DST_PORT: Field = 2..4;
    pub const LENGTH: Field = 4..6;
    pub const CHECKSUM: Field = 6..8;
}

/// A view over a UDP datagram.
#[derive(Debug, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    pub const fn new_unchecked(buffer: T) -> Self {
        Self { buffer }
    }

    /// Wraps `buffer`, checking the header and the length field once.
    pub fn new_checked(buffer: T) -> Result<Self, ParseError> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// `Truncated` if the header or the length claimed is beyond the
    /// buffer, `BadLength` if the length field is below 8.
    pub fn check_len(&self) -> Result<(), ParseError> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(ParseError::Truncated);
        }
        if usize::from(self.len()) < HEADER_LEN {
            return Err(ParseError::BadLength);
        }
        if usize::from(self.len()) > len {
            return Err(ParseError::Truncated);
        }
        Ok(())
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    fn u16_at(&self, f: Field) -> u16 {
        let b = &self.buffer.as_ref()[f];
        u16::from_be_bytes([b[0], b[1]])
    }

    pub fn src_port(&self) -> u16 {
        self.u16_at(field::SRC_PORT)
    }

    pub fn dst_port(&self) -> u16 {
        self.u16_at(field::DST_PORT)
    }

    /// The length field (header and payload).
    #[expect(
        clippy::len_without_is_empty,
        reason = "a UDP length field, not a container"
    )]
    pub fn len(&self) -> u16 {
        self.u16_at(field::LENGTH)
    }

    pub fn checksum(&self) -> u16 {
        self.u16_at(field::CHECKSUM)
    }

    /// The payload, up to the length field.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..usize::from(self.len())]
    }

    /// The one's-complement sum of the whole datagram (up to the length
    /// field) and its pseudo-header, checksum field included.
    fn full_sum(&self, addrs: &IpPair) -> u16 {
        let data = &self.buffer.as_ref()[..usize::from(self.len())];
        checksum::combine(&[
            checksum::pseudo_header(addrs, u32::from(self.len())),
            checksum::data(data),
        ])
    }

    /// True when the checksum verifies, or is 0 over IPv4 ("none").
    pub fn verify_checksum(&self, addrs: &IpPair) -> bool {
        match (addrs, self.checksum()) {
            (IpPair::V4 { .. }, 0) => true,
            (IpPair::V6 { .. }, 0) => false,
            _ => self.full_sum(addrs) == 0xffff,
        }
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    fn set_u16_at(&mut self, f: Field, value: u16) {
        self.buffer.as_mut()[f].copy_from_slice(&value.to_be_bytes());
    }

    pub fn set_src_port(&mut self, port: u16) {
        self.set_u16_at(field::SRC_PORT, port);
    }

    pub fn set_dst_port(&mut self, port: u16) {
        self.set_u16_at(field::DST_PORT, port);
    }

    pub fn set_len(&mut self, len: u16) {
        self.set_u16_at(field::LENGTH, len);
    }

    pub fn set_checksum(&mut self, value: u16) {
        self.set_u16_at(field::CHECKSUM, value);
    }

    /// Computes and stores the checksum over the pseudo-header, header and
    /// payload (a computed 0 is stored as `0xffff`).
    pub fn fill_checksum(&mut self, addrs: &IpPair) {
        self.set_checksum(0);
        let c = match !self.full_sum(addrs) {
            0 => 0xffff,
            c => c,
        };
        self.set_checksum(c);
    }

    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = usize::from(self.len());
        &mut self.buffer.as_mut()[HEADER_LEN..end]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::testutil::ref_udp_checksum;
    use std::net::Ipv4Addr;

    // 192.168.1.1:48896 -> 192.168.1.2:53, payload aa 00 00 ff: 0x124d
    // (the example of smoltcp's udp.rs, recomputed by hand and by
    // `ref_udp_checksum` below).
    const V4: [u8; 12] = [
        0xbf, 0x00, 0x00, 0x35, 0x00, 0x0c, 0x12, 0x4d, 0xaa, 0x00, 0x00, 0xff,
    ];
    const V4_ADDRS: IpPair = IpPair::V4 {
        src: Ipv4Addr::new(192, 168, 1, 1),
        dst: Ipv4Addr::new(192, 168, 1, 2),
    };

    // [fe80::1]:5353 -> [ff02::fb]:5353, payload de ad be ef: 0x39e7.
    const V6: [u8; 12] = [
        0x14, 0xe9, 0x14, 0xe9, 0x00, 0x0c, 0x39, 0xe7, 0xde, 0xad, 0xbe, 0xef,
    ];
    fn v6_addrs() -> IpPair {
        IpPair::V6 {
            src: "fe80::1".parse().unwrap(),
            dst: "ff02::fb".parse().unwrap(),
        }
    }

    #[test]
    fn deconstruct() {
        let p = Packet::new_checked(&V4[..]).unwrap();
        assert_eq!(
            (p.src_port(), p.dst_port(), p.len(), p.checksum()),
            (48896, 53, 12, 0x124d)
        );
        assert_eq!(p.payload(), &[0xaa, 0x00, 0x00, 0xff]);
        assert!(p.verify_checksum(&V4_ADDRS));
        assert_eq!(ref_udp_checksum(&V4_ADDRS, &V4), 0x124d);

        let p = Packet::new_checked(&V6[..]).unwrap();
        assert_eq!(
            (p.src_port(), p.dst_port(), p.len(), p.checksum()),
            (5353, 5353, 12, 0x39e7)
        );
        assert!(p.verify_checksum(&v6_addrs()));
        assert_eq!(ref_udp_checksum(&v6_addrs(), &V6), 0x39e7);
        // The v4 pseudo-header does not verify the v6 datagram.
        assert!(!p.verify_checksum(&V4_ADDRS));
    }

    #[test]
    fn construct() {
        for (golden, addrs) in [(V4, V4_ADDRS), (V6, v6_addrs())] {
            let mut bytes = [0xffu8; 12];
            let mut p = Packet::new_unchecked(&mut bytes[..]);
            p.set_src_port(u16::from_be_bytes([golden[0], golden[1]]));
            p.set_dst_port(u16::from_be_bytes([golden[2], golden[3]]));
            p.set_len(12);
            p.payload_mut().copy_from_slice(&golden[8..]);
            p.fill_checksum(&addrs);
            assert_eq!(bytes, golden);
        }
    }

    #[test]
    fn zero_checksum() {
        let mut b = V4;
        b[6] = 0;
        b[7] = 0;
        assert!(
            Packet::new_checked(&b[..])
                .unwrap()
                .verify_checksum(&V4_ADDRS)
        );
        let mut b = V6;
        b[6] = 0;
        b[7] = 0;
        assert!(
            !Packet::new_checked(&b[..])
                .unwrap()
                .verify_checksum(&v6_addrs())
        );
        // A datagram whose checksum computes to 0 is sent as 0xffff: pick
        // the v4 payload so that the sum is 0xffff.
        let mut b = V4;
        b[6] = 0;
        b[7] = 0;
        b[10] = 0;
        b[11] = 0;
        let sum = !0x124du16; // sum with checksum field 0, payload aa 00 00 ff
        let without_ff = crate::wire::checksum::add(sum, !0x00ff);
        let fill = !without_ff; // the last payload word that makes the sum 0xffff
        b[10..12].copy_from_slice(&fill.to_be_bytes());
        let mut p = Packet::new_checked(&mut b[..]).unwrap();
        p.fill_checksum(&V4_ADDRS);
        assert_eq!(p.checksum(), 0xffff);
        assert!(p.verify_checksum(&V4_ADDRS));
        assert_eq!(ref_udp_checksum(&V4_ADDRS, &b), 0xffff);
    }

    #[test]
    fn rejects() {
        let check = |b: &[u8]| Packet::new_checked(b).map(|_| ());
        for n in 0..12 {
            assert_eq!(check(&V4[..n]), Err(ParseError::Truncated), "{n}");
        }
        let mut b = V4;
        b[5] = 7;
        assert_eq!(check(&b), Err(ParseError::BadLength));
        // Trailing bytes beyond the length field are not payload.
        let mut long = V4.to_vec();
        long.push(0x99);
        assert_eq!(Packet::new_checked(&long[..]).unwrap().payload().len(), 4);
    }
}
