//! IPv4 headers, options included.
//!
//! [`Packet::new_checked`] accepts any valid IHL (5..=15) and guarantees
//! `20 <= header_len <= total_len <= buffer length`, so that no getter, nor
//! [`Packet::options`] nor [`Packet::payload`], panics afterwards. The
//! setters do not re-check: a buffer edited through them may need
//! [`Packet::check_len`] again before its payload is taken.

use std::net::Ipv4Addr;

use super::checksum;
use super::error::ParseError;
use super::field::Field;

/// Length of a header without options.
pub const HEADER_LEN: usize = 20;
/// Longest header (IHL 15).
pub const MAX_HEADER_LEN: usize = 60;

mod field {
    use super::Field;
    pub const VER_IHL: usize = 0;
    pub const TOS: usize = 1;
    pub const LENGTH: Field = 2..4;
    pub const IDENT: Field = 4..6;
    pub const FLG_OFF: Field = 6..8;
    pub const TTL: usize = 8;
    pub const PROTOCOL: usize = 9;
    pub const CHECKSUM: Field = 10..12;
    pub const SRC_ADDR: Field = 12..16;
    pub const DST_ADDR: Field = 16..20;
}

const FLAG_DF: u16 = 0x4000;
const FLAG_MF: u16 = 0x2000;
const OFFSET_MASK: u16 = 0x1fff;

/// A view over an IPv4 packet.
#[derive(Debug, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps `buffer` without any check.
    pub const fn new_unchecked(buffer: T) -> Self {
        Self { buffer }
    }

    /// Wraps `buffer`, checking the header and the total length once.
    pub fn new_checked(buffer: T) -> Result<Self, ParseError> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// [`Self::check_header`], then `Truncated` if the total length exceeds
    /// the buffer.
    pub fn check_len(&self) -> Result<(), ParseError> {
        self.check_header()?;
        if usize::from(self.total_len()) > self.buffer.as_ref().len() {
            return Err(ParseError::Truncated);
        }
        Ok(())
    }

    /// Checks what can be checked from the header alone: it is in the
    /// buffer (`Truncated`), version 4 (`BadVersion`), IHL >= 5 (`BadIhl`),
    /// total length >= header length (`BadLength`). The total length is not
    /// compared with the buffer, which may hold only the first segment of a
    /// multi-buffer frame.
    pub fn check_header(&self) -> Result<(), ParseError> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(ParseError::Truncated);
        }
        if self.version() != 4 {
            return Err(ParseError::BadVersion(self.version()));
        }
        if self.ihl() < 5 {
            return Err(ParseError::BadIhl(self.ihl()));
        }
        if self.header_len() > len {
            return Err(ParseError::Truncated);
        }
        if usize::from(self.total_len()) < self.header_len() {
            return Err(ParseError::BadLength);
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

    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_IHL] >> 4
    }

    /// The raw IHL field (header length in 32-bit words).
    pub fn ihl(&self) -> u8 {
        self.buffer.as_ref()[field::VER_IHL] & 0x0f
    }

    /// Header length in bytes (options included).
    pub fn header_len(&self) -> usize {
        usize::from(self.ihl()) * 4
    }

    /// The whole TOS byte (DSCP and ECN).
    pub fn tos(&self) -> u8 {
        self.buffer.as_ref()[field::TOS]
    }

    pub fn dscp(&self) -> u8 {
        self.tos() >> 2
    }

    pub fn ecn(&self) -> u8 {
        self.tos() & 0x03
    }

    pub fn total_len(&self) -> u16 {
        self.u16_at(field::LENGTH)
    }

    pub fn ident(&self) -> u16 {
        self.u16_at(field::IDENT)
    }

    pub fn dont_frag(&self) -> bool {
        self.u16_at(field::FLG_OFF) & FLAG_DF != 0
    }

    pub fn more_frags(&self) -> bool {
        self.u16_at(field::FLG_OFF) & FLAG_MF != 0
    }

    /// Fragment offset in bytes.
    pub fn frag_offset(&self) -> u16 {
        (self.u16_at(field::FLG_OFF) & OFFSET_MASK) << 3
    }

    /// MF set or a non-zero fragment offset.
    pub fn is_fragment(&self) -> bool {
        self.u16_at(field::FLG_OFF) & (FLAG_MF | OFFSET_MASK) != 0
    }

    pub fn ttl(&self) -> u8 {
        self.buffer.as_ref()[field::TTL]
    }

    pub fn protocol(&self) -> u8 {
        self.buffer.as_ref()[field::PROTOCOL]
    }

    pub fn checksum(&self) -> u16 {
        self.u16_at(field::CHECKSUM)
    }

    pub fn src_addr(&self) -> Ipv4Addr {
        let b = &self.buffer.as_ref()[field::SRC_ADDR];
        Ipv4Addr::new(b[0], b[1], b[2], b[3])
    }

    pub fn dst_addr(&self) -> Ipv4Addr {
        let b = &self.buffer.as_ref()[field::DST_ADDR];
        Ipv4Addr::new(b[0], b[1], b[2], b[3])
    }

    /// True when the header checksum (options included) verifies.
    pub fn verify_checksum(&self) -> bool {
        checksum::data(&self.buffer.as_ref()[..self.header_len()]) == 0xffff
    }

    /// The option bytes (empty for IHL 5).
    pub fn options(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..self.header_len()]
    }

    /// The payload, up to the total length (any link-layer padding excluded).
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..usize::from(self.total_len())]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    fn set_u16_at(&mut self, f: Field, value: u16) {
        self.buffer.as_mut()[f].copy_from_slice(&value.to_be_bytes());
    }

    pub fn set_version(&mut self, version: u8) {
        let b = &mut self.buffer.as_mut()[field::VER_IHL];
        *b = (*b & 0x0f) | (version << 4);
    }

    /// Sets the IHL from a header length in bytes (a multiple of 4, 20..=60).
    pub fn set_header_len(&mut self, len: usize) {
        let b = &mut self.buffer.as_mut()[field::VER_IHL];
        *b = (*b & 0xf0) | ((len / 4) as u8 & 0x0f);
    }

    pub fn set_tos(&mut self, tos: u8) {
        self.buffer.as_mut()[field::TOS] = tos;
    }

    pub fn set_dscp(&mut self, dscp: u8) {
        let ecn = self.ecn();
        self.set_tos((dscp << 2) | ecn);
    }

    pub fn set_ecn(&mut self, ecn: u8) {
        let tos = (self.tos() & 0xfc) | (ecn & 0x03);
        self.set_tos(tos);
    }

    pub fn set_total_len(&mut self, len: u16) {
        self.set_u16_at(field::LENGTH, len);
    }

    pub fn set_ident(&mut self, ident: u16) {
        self.set_u16_at(field::IDENT, ident);
    }

    /// Clears DF, MF and the fragment offset.
    pub fn clear_flags(&mut self) {
        self.set_u16_at(field::FLG_OFF, 0);
    }

    pub fn set_dont_frag(&mut self, value: bool) {
        let v = self.u16_at(field::FLG_OFF) & !FLAG_DF;
        self.set_u16_at(field::FLG_OFF, v | if value { FLAG_DF } else { 0 });
    }

    pub fn set_more_frags(&mut self, value: bool) {
        let v = self.u16_at(field::FLG_OFF) & !FLAG_MF;
        self.set_u16_at(field::FLG_OFF, v | if value { FLAG_MF } else { 0 });
    }

    /// Sets the fragment offset, in bytes (a multiple of 8).
    pub fn set_frag_offset(&mut self, bytes: u16) {
        let v = self.u16_at(field::FLG_OFF) & !OFFSET_MASK;
        self.set_u16_at(field::FLG_OFF, v | (bytes >> 3));
    }

    pub fn set_ttl(&mut self, ttl: u8) {
        self.buffer.as_mut()[field::TTL] = ttl;
    }

    pub fn set_protocol(&mut self, protocol: u8) {
        self.buffer.as_mut()[field::PROTOCOL] = protocol;
    }

    pub fn set_checksum(&mut self, value: u16) {
        self.set_u16_at(field::CHECKSUM, value);
    }

    pub fn set_src_addr(&mut self, addr: Ipv4Addr) {
        self.buffer.as_mut()[field::SRC_ADDR].copy_from_slice(&addr.octets());
    }

    pub fn set_dst_addr(&mut self, addr: Ipv4Addr) {
        self.buffer.as_mut()[field::DST_ADDR].copy_from_slice(&addr.octets());
    }

    /// Computes and stores the header checksum (options included).
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let sum = checksum::data(&self.buffer.as_ref()[..self.header_len()]);
        self.set_checksum(!sum);
    }

    pub fn options_mut(&mut self) -> &mut [u8] {
        let end = self.header_len();
        &mut self.buffer.as_mut()[HEADER_LEN..end]
    }

    pub fn payload_mut(&mut self) -> &mut [u8] {
        let range = self.header_len()..usize::from(self.total_len());
        &mut self.buffer.as_mut()[range]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::testutil::ref_sum;

    // The classic example (Wikipedia, "Internet checksum"): 192.168.0.1 ->
    // 192.168.0.199, UDP, TTL 64, DF, total length 0x73, checksum 0xb861.
    const HEADER: [u8; 20] = [
        0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8, 0x00,
        0x01, 0xc0, 0xa8, 0x00, 0xc7,
    ];

    fn packet_bytes() -> Vec<u8> {
        let mut v = HEADER.to_vec();
        v.resize(0x73, 0x5a);
        v
    }

    #[test]
    fn deconstruct() {
        let bytes = packet_bytes();
        let p = Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(p.version(), 4);
        assert_eq!(p.ihl(), 5);
        assert_eq!(p.header_len(), 20);
        assert_eq!((p.tos(), p.dscp(), p.ecn()), (0, 0, 0));
        assert_eq!(p.total_len(), 0x73);
        assert_eq!(p.ident(), 0);
        assert!(p.dont_frag());
        assert!(!p.more_frags());
        assert_eq!(p.frag_offset(), 0);
        assert!(!p.is_fragment());
        assert_eq!(p.ttl(), 64);
        assert_eq!(p.protocol(), 17);
        assert_eq!(p.checksum(), 0xb861);
        assert_eq!(p.src_addr(), Ipv4Addr::new(192, 168, 0, 1));
        assert_eq!(p.dst_addr(), Ipv4Addr::new(192, 168, 0, 199));
        assert!(p.verify_checksum());
        assert!(p.options().is_empty());
        assert_eq!(p.payload(), &[0x5a; 0x73 - 20][..]);
    }

    #[test]
    fn construct() {
        let mut bytes = vec![0xffu8; 0x73];
        let mut p = Packet::new_unchecked(&mut bytes[..]);
        p.set_version(4);
        p.set_header_len(20);
        p.set_tos(0);
        p.set_total_len(0x73);
        p.set_ident(0);
        p.clear_flags();
        p.set_dont_frag(true);
        p.set_ttl(64);
        p.set_protocol(17);
        p.set_src_addr(Ipv4Addr::new(192, 168, 0, 1));
        p.set_dst_addr(Ipv4Addr::new(192, 168, 0, 199));
        p.fill_checksum();
        p.payload_mut().fill(0x5a);
        assert_eq!(bytes, packet_bytes());
    }

    #[test]
    fn options_and_fields() {
        // IHL 7 (two option words: NOP NOP NOP EOL, router alert 94 04 00 00),
        // DSCP 46 (EF) ECN 1, MF with offset 1480.
        let mut bytes = vec![
            0x47, 0xb9, 0x00, 0x20, 0xab, 0xcd, 0x20, 0xb9, 0x01, 0x11, 0x00, 0x00, 0x0a, 0x00,
            0x00, 0x01, 0xe0, 0x00, 0x00, 0x01, 0x01, 0x01, 0x01, 0x00, 0x94, 0x04, 0x00, 0x00,
            0xde, 0xad, 0xbe, 0xef,
        ];
        let expected = !ref_sum(&[&bytes[..28]]);
        let mut p = Packet::new_checked(&mut bytes[..]).unwrap();
        assert_eq!((p.ihl(), p.header_len()), (7, 28));
        assert_eq!((p.dscp(), p.ecn()), (46, 1));
        assert_eq!(p.ident(), 0xabcd);
        assert!(p.more_frags() && !p.dont_frag());
        assert_eq!(p.frag_offset(), 1480);
        assert!(p.is_fragment());
        assert_eq!(p.options(), &[1, 1, 1, 0, 0x94, 4, 0, 0]);
        assert_eq!(p.payload(), &[0xde, 0xad, 0xbe, 0xef]);
        assert!(!p.verify_checksum());
        p.fill_checksum();
        assert_eq!(p.checksum(), expected);
        assert!(p.verify_checksum());
        p.set_more_frags(false);
        assert!(p.is_fragment(), "offset alone makes a fragment");
        p.set_frag_offset(0);
        assert!(!p.is_fragment());
        p.set_more_frags(true);
        assert!(p.is_fragment(), "MF alone makes a fragment");
        p.set_dscp(10);
        p.set_ecn(2);
        assert_eq!(p.tos(), (10 << 2) | 2);
    }

    #[test]
    fn rejects() {
        let good = packet_bytes();
        let with = |i: usize, v: u8| {
            let mut b = good.clone();
            b[i] = v;
            b
        };
        let check = |b: &[u8]| Packet::new_checked(b).map(|_| ());
        assert_eq!(check(&good), Ok(()));
        assert_eq!(check(&with(0, 0x65)), Err(ParseError::BadVersion(6)));
        for ihl in 0..5 {
            assert_eq!(check(&with(0, 0x40 | ihl)), Err(ParseError::BadIhl(ihl)));
        }
        // Every valid IHL is accepted when the total length allows it.
        for ihl in 5..=15u8 {
            assert_eq!(check(&with(0, 0x40 | ihl)), Ok(()), "ihl {ihl}");
        }
        // total_len < header_len
        let mut b = with(3, 19);
        b[2] = 0;
        assert_eq!(check(&b), Err(ParseError::BadLength));
        // total_len > buffer
        assert_eq!(check(&good[..0x72]), Err(ParseError::Truncated));
        // header beyond buffer
        let b = with(0, 0x4f);
        assert_eq!(check(&b[..59]), Err(ParseError::Truncated));
        for n in 0..20 {
            assert_eq!(check(&good[..n]), Err(ParseError::Truncated));
        }
        // check_header ignores the buffer end for the total length.
        assert_eq!(Packet::new_unchecked(&good[..20]).check_header(), Ok(()));
    }
}
