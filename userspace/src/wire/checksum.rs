//! The Internet checksum (RFC 1071) and its incremental update (RFC 1624).
//!
//! Sums are one's-complement sums of big-endian 16-bit words. [`data`] sums a
//! byte slice 4 bytes at a time in native byte order into a 64-bit
//! accumulator (the sum is byte-order independent, RFC 1071 section 2(B)) and
//! byte-swaps once at the end; an odd trailing byte is padded with zero, so
//! only the last of several concatenated slices may have an odd length.
//! Unfolded `u64` accumulators ([`sum_v4`], [`sum_v6`]) can be added freely
//! (far below overflow for any realistic input) and folded once with [`fold`].
//!
//! [`update`] is RFC 1624 eqn. 3, `HC' = ~(~HC + ~m + m')`, where `m` and
//! `m'` may be single words or the folded sums of all old and all new words.
//! [`udp_update`] adds the UDP rules: over IPv4 a checksum of 0 means "none"
//! and stays 0; a computed 0 is sent as `0xffff` (for both families).

use std::net::{Ipv4Addr, Ipv6Addr};

use super::ip::{IPPROTO_UDP, IpPair};

/// Folds a 64-bit one's-complement accumulator to 16 bits (no complement).
#[inline]
pub const fn fold(mut acc: u64) -> u16 {
    acc = (acc & 0xffff_ffff) + (acc >> 32);
    acc = (acc & 0xffff_ffff) + (acc >> 32);
    acc = (acc & 0xffff) + (acc >> 16);
    acc = (acc & 0xffff) + (acc >> 16);
    acc as u16
}

/// One's-complement addition of two 16-bit values.
/// [`fold`] for a sum that fits in 32 bits (a few 16-bit words).
#[inline]
pub const fn fold32(acc: u32) -> u16 {
    let acc = (acc & 0xffff) + (acc >> 16);
    ((acc & 0xffff) + (acc >> 16)) as u16
}

#[inline]
pub const fn add(a: u16, b: u16) -> u16 {
    fold(a as u64 + b as u64)
}

/// Folded one's-complement sum of `bytes` (not complemented).
#[inline]
pub fn data(bytes: &[u8]) -> u16 {
    let (words, rest) = bytes.as_chunks::<4>();
    let mut acc: u64 = 0;
    for w in words {
        acc += u64::from(u32::from_ne_bytes(*w));
    }
    match *rest {
        [] => {}
        [a] => acc += u64::from(u16::from_ne_bytes([a, 0])),
        [a, b] => acc += u64::from(u16::from_ne_bytes([a, b])),
        [a, b, c, ..] => {
            acc += u64::from(u16::from_ne_bytes([a, b]));
            acc += u64::from(u16::from_ne_bytes([c, 0]));
        }
    }
    // Native-order words were summed: swap back to network order.
    u16::from_be(fold(acc))
}

/// Folded sum of several slices; all but the last must have an even length.
pub fn combine(sums: &[u16]) -> u16 {
    fold(sums.iter().map(|&s| u64::from(s)).sum())
}

/// Unfolded sum of the two 16-bit words of an IPv4 address.
#[inline]
pub const fn sum_v4(addr: Ipv4Addr) -> u64 {
    let b = addr.to_bits();
    (b >> 16) as u64 + (b & 0xffff) as u64
}

/// Unfolded sum of the eight 16-bit words of an IPv6 address.
#[inline]
pub const fn sum_v6(addr: Ipv6Addr) -> u64 {
    let b = addr.to_bits();
    // Four 32-bit quarters; `fold` later folds each into 16 bits.
    (b >> 96) as u32 as u64 + (b >> 64) as u32 as u64 + (b >> 32) as u32 as u64 + b as u32 as u64
}

/// Folded sum of the UDP pseudo-header (addresses, protocol, UDP length).
#[inline]
pub fn pseudo_header(addrs: &IpPair, udp_len: u32) -> u16 {
    // The v4 length is 16 bits and the v6 one 32 bits; both sum the same.
    fold(addrs.sum() + u64::from(IPPROTO_UDP) + u64::from(udp_len))
}

/// A one's-complement sum over consecutive pieces of one byte stream, of
/// any lengths: a piece that starts at an odd offset of the stream has its
/// sum byte-swapped (RFC 1071 section 2(B)).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sum {
    acc: u64,
    odd: bool,
}

impl Sum {
    /// Adds the next piece of the stream.
    #[inline]
    pub fn add(&mut self, bytes: &[u8]) {
        let s = data(bytes);
        self.acc += u64::from(if self.odd { s.swap_bytes() } else { s });
        self.odd ^= bytes.len() % 2 == 1;
    }

    /// The folded sum so far (not complemented).
    #[inline]
    pub fn folded(&self) -> u16 {
        fold(self.acc)
    }
}

/// Whether a received UDP checksum is one a sender left for its NIC to
/// finish (Linux `CHECKSUM_PARTIAL`: the field holds the folded
/// pseudo-header sum, not complemented, `~csum_tcpudp_magic(.., 0)`). A
/// local sender over veth, a container or a VM's tap put such datagrams on
/// the "wire"; a real NIC would have completed them.
///
/// A complete checksum equals this value for 1 datagram in 65 536: then
/// [`complete_partial`] recomputes the same value, so both readings agree.
#[inline]
pub fn is_partial(addrs: &IpPair, udp_len: u16, check: u16) -> bool {
    check != 0 && check == pseudo_header(addrs, u32::from(udp_len))
}

/// The complete UDP checksum of a datagram whose checksum field holds the
/// pseudo-header sum ([`is_partial`]), from `segment`, the folded sum of
/// its UDP header (checksum field as received) and payload: what the
/// sender's NIC would have written (`~sum`, and `0xffff` for 0).
#[inline]
pub const fn complete_partial(segment: u16) -> u16 {
    match !segment {
        0 => 0xffff,
        c => c,
    }
}

/// RFC 1624 eqn. 3: the checksum `hc` after the words summing to `old` were
/// replaced by words summing to `new` (both folded sums, or single words).
#[inline]
pub const fn update(hc: u16, old: u16, new: u16) -> u16 {
    !fold(!hc as u64 + !old as u64 + new as u64)
}

/// [`update`] for a UDP checksum: over IPv4 (`ipv4 == true`) a received 0
/// means "no checksum" and stays 0; a result of 0 is returned as `0xffff`.
#[inline]
pub const fn udp_update(ipv4: bool, hc: u16, old: u16, new: u16) -> u16 {
    if ipv4 && hc == 0 {
        return 0;
    }
    match update(hc, old, new) {
        0 => 0xffff,
        c => c,
    }
}

impl IpPair {
    /// Unfolded one's-complement sum of both addresses (see [`fold`]).
    #[inline]
    pub(crate) fn sum(&self) -> u64 {
        match *self {
            Self::V4 { src, dst } => sum_v4(src) + sum_v4(dst),
            Self::V6 { src, dst } => sum_v6(src) + sum_v6(dst),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::testutil::ref_sum;
    use proptest::prelude::*;

    #[test]
    fn rfc1071_example() {
        // RFC 1071 section 3: 00 01 f2 03 f4 f5 f6 f7 sums to 0xddf2.
        let b = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(data(&b), 0xddf2);
        assert_eq!(ref_sum(&[&b]), 0xddf2);
    }

    #[test]
    fn odd_lengths() {
        assert_eq!(data(&[]), 0);
        assert_eq!(data(&[0xab]), 0xab00);
        assert_eq!(data(&[0xab, 0xcd]), 0xabcd);
        assert_eq!(data(&[0xab, 0xcd, 0x12]), 0xbdcd);
        assert_eq!(data(&[0xff; 5]), 0xff00); // ffff + ffff + ff00, carries folded
        assert_eq!(data(&[0xff; 7]), fold(0xffff * 3 + 0xff00));
    }

    #[test]
    fn fold_carries() {
        assert_eq!(fold(0), 0);
        assert_eq!(fold(0xffff), 0xffff);
        assert_eq!(fold(0x1_0000), 1);
        assert_eq!(fold(u64::MAX), 0xffff);
        assert_eq!(fold(0x1_ffff_fffe), 0xffff);
        assert_eq!(add(0xffff, 1), 1);
        for x in [
            0,
            1,
            0xffff,
            0x1_0000,
            0x1_fffe,
            0x2_fffd,
            0xffff_ffff,
            0x8000_8000,
        ] {
            assert_eq!(fold32(x), fold(u64::from(x)), "{x:#x}");
        }
        assert_eq!(add(0x8000, 0x8000), 1);
    }

    #[test]
    fn rfc1624_example() {
        // RFC 1624 section 4: HC = 0xdd2f, m = 0x5555 -> m' = 0x3285, HC' = 0x0000.
        assert_eq!(update(0xdd2f, 0x5555, 0x3285), 0x0000);
    }

    #[test]
    fn udp_update_rules() {
        assert_eq!(udp_update(true, 0, 0x1234, 0x4321), 0);
        assert_eq!(udp_update(false, 0xdd2f, 0x5555, 0x3285), 0xffff);
        assert_eq!(udp_update(true, 0xdd2f, 0x5555, 0x3285), 0xffff);
    }

    #[test]
    fn address_sums() {
        let a = Ipv4Addr::new(192, 168, 0, 1);
        assert_eq!(fold(sum_v4(a)), ref_sum(&[&a.octets()]));
        let b: Ipv6Addr = "ff02::fb:ffff:ffff:ffff".parse().unwrap();
        assert_eq!(fold(sum_v6(b)), ref_sum(&[&b.octets()]));
    }

    #[test]
    fn partial_checksums_are_completed_like_a_nic() {
        use crate::wire::testutil::ref_udp_checksum;
        let addrs = IpPair::V4 {
            src: Ipv4Addr::new(10, 0, 0, 1),
            dst: Ipv4Addr::new(239, 1, 1, 1),
        };
        let mut udp = vec![0x13, 0x88, 0x13, 0x88, 0, 13, 0, 0, 1, 2, 3, 4, 5];
        let pseudo = pseudo_header(&addrs, 13);
        // What Linux leaves in the field for the NIC.
        udp[6..8].copy_from_slice(&pseudo.to_be_bytes());
        assert!(is_partial(&addrs, 13, pseudo));
        let c = complete_partial(data(&udp));
        assert_eq!(c, ref_udp_checksum(&addrs, &udp));
        // A complete checksum is not partial (unless it equals the sum).
        assert!(!is_partial(&addrs, 13, c));
        assert!(!is_partial(&addrs, 13, 0));
    }

    /// The one ambiguity: a complete, valid checksum that happens to equal
    /// the pseudo-header sum looks partial. Completing it gives it back
    /// unchanged, so no replica is harmed by the mistake.
    #[test]
    fn a_complete_checksum_equal_to_the_pseudo_header_sum_survives_completion() {
        use crate::wire::testutil::ref_udp_checksum;
        let addrs = IpPair::V4 {
            src: Ipv4Addr::new(10, 0, 0, 1),
            dst: Ipv4Addr::new(239, 1, 1, 1),
        };
        let len = 14u16;
        let pseudo = pseudo_header(&addrs, u32::from(len));
        let mut udp = vec![0x13, 0x88, 0x13, 0x88, 0, len as u8, 0, 0, 1, 2, 3, 4, 0, 0];
        udp[6..8].copy_from_slice(&pseudo.to_be_bytes());
        // Choose the last payload word so that the datagram's checksum,
        // verified with `pseudo` in its field, is valid.
        let w = !fold(u64::from(pseudo) + u64::from(data(&udp)));
        udp[12..14].copy_from_slice(&w.to_be_bytes());
        let verified = fold(u64::from(pseudo) + u64::from(data(&udp)));
        assert_eq!(verified, 0xffff, "valid as received");
        assert_eq!(
            ref_udp_checksum(&addrs, &{
                let mut z = udp.clone();
                z[6..8].copy_from_slice(&[0, 0]);
                z
            }),
            pseudo
        );
        assert!(is_partial(&addrs, len, pseudo));
        assert_eq!(complete_partial(data(&udp)), pseudo);
    }

    proptest! {
        #[test]
        fn data_matches_reference(bytes in proptest::collection::vec(any::<u8>(), 0..2000)) {
            prop_assert_eq!(data(&bytes), ref_sum(&[&bytes]));
        }

        #[test]
        fn sum_of_pieces_matches_the_whole(
            bytes in proptest::collection::vec(any::<u8>(), 0..3000),
            cuts in proptest::collection::vec(0usize..3000, 0..6),
        ) {
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(bytes.len())).collect();
            cuts.sort_unstable();
            let mut sum = Sum::default();
            let mut at = 0;
            for c in cuts.into_iter().chain([bytes.len()]) {
                sum.add(&bytes[at..c]);
                at = c;
            }
            prop_assert_eq!(sum.folded(), fold(u64::from(ref_sum(&[&bytes]))));
        }

        #[test]
        fn combine_matches_concatenation(
            a in proptest::collection::vec(any::<u8>(), 0..200),
            b in proptest::collection::vec(any::<u8>(), 0..200),
        ) {
            let mut a = a;
            if a.len() % 2 == 1 { a.pop(); }
            prop_assert_eq!(combine(&[data(&a), data(&b)]), ref_sum(&[&a, &b]));
        }

        #[test]
        fn update_matches_recompute(
            words in proptest::collection::vec(any::<u16>(), 1..64),
            idx in any::<prop::sample::Index>(),
            new in any::<u16>(),
        ) {
            let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_be_bytes()).collect();
            let hc = !data(&bytes);
            let i = idx.index(words.len());
            let mut words2 = words.clone();
            words2[i] = new;
            let bytes2: Vec<u8> = words2.iter().flat_map(|w| w.to_be_bytes()).collect();
            let full = !data(&bytes2);
            let inc = update(hc, words[i], new);
            // Equal as values; eqn. 3 keeps the representation too unless
            // the data is all zero.
            prop_assert_eq!(fold(u64::from(inc)) % 0xffff, fold(u64::from(full)) % 0xffff);
            if bytes2.iter().any(|&b| b != 0) {
                prop_assert_eq!(inc, full);
            }
        }
    }
}
