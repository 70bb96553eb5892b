//! The payload of a lab datagram: a 24-byte header followed by a pattern
//! derived from the stream and sequence number, so that a receiver can tell
//! which datagram it holds and whether any byte of it changed.
//!
//! Layout (big-endian):
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | magic `FOLB` |
//! | 4 | 4 | stream id |
//! | 8 | 8 | sequence number |
//! | 16 | 4 | total payload length |
//! | 20 | 4 | FNV-1a of bytes 0..20 (detects any single changed header byte) |
//! | 24.. | | pattern: SplitMix64 keyed by (stream, seq), 8 bytes per step |

/// Magic at offset 0.
pub const MAGIC: [u8; 4] = *b"FOLB";
/// Header length; also the smallest valid payload.
pub const HEADER_LEN: usize = 24;

/// Why a buffer is not an intact lab payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    /// Shorter than the header.
    #[error("payload of {len} bytes is shorter than the {HEADER_LEN}-byte header")]
    TooShort {
        /// The buffer's length.
        len: usize,
    },
    /// The magic is wrong: not a lab datagram, or its first bytes changed.
    #[error("bad magic {found:02x?}")]
    BadMagic {
        /// The first four bytes.
        found: [u8; 4],
    },
    /// The header check value does not match the header.
    #[error("header check mismatch")]
    HeaderCheck,
    /// The length field disagrees with the buffer's length (truncated or padded).
    #[error("length field says {header} bytes, datagram has {actual}")]
    Length {
        /// The length field.
        header: u32,
        /// The buffer's length.
        actual: usize,
    },
    /// A pattern byte differs from what (stream, seq) predicts.
    #[error("pattern mismatch at byte {offset}")]
    Pattern {
        /// Offset of the first bad byte.
        offset: usize,
    },
}

/// FNV-1a over `bytes`: any single changed byte changes the result, because
/// each step (xor then multiply by an odd prime) is a bijection of the state.
fn fnv1a(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5, |h: u32, &b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

/// SplitMix64 step: the pattern word number `i` of datagram (stream, seq).
fn pattern_word(stream: u32, seq: u64, i: u64) -> u64 {
    let mut z = seq
        .wrapping_mul(0x9e37_79b9_7f4a_7c15)
        .wrapping_add(u64::from(stream) << 32)
        .wrapping_add(i.wrapping_mul(0xbf58_476d_1ce4_e5b9));
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Fills `buf` with datagram `seq` of `stream`.
///
/// # Panics
///
/// If `buf` is shorter than [`HEADER_LEN`] or longer than `u32::MAX` bytes.
pub fn fill(stream: u32, seq: u64, buf: &mut [u8]) {
    assert!(
        buf.len() >= HEADER_LEN,
        "lab payloads are at least {HEADER_LEN} bytes"
    );
    let len = u32::try_from(buf.len()).expect("payload length fits in u32");
    let (header, body) = buf.split_at_mut(HEADER_LEN);
    header[0..4].copy_from_slice(&MAGIC);
    header[4..8].copy_from_slice(&stream.to_be_bytes());
    header[8..16].copy_from_slice(&seq.to_be_bytes());
    header[16..20].copy_from_slice(&len.to_be_bytes());
    let check = fnv1a(&header[0..20]);
    header[20..24].copy_from_slice(&check.to_be_bytes());
    for (i, chunk) in body.chunks_mut(8).enumerate() {
        let word = pattern_word(stream, seq, i as u64).to_be_bytes();
        chunk.copy_from_slice(&word[..chunk.len()]);
    }
}

/// Checks that `buf` is an intact lab datagram; returns its (stream, seq).
pub fn check(buf: &[u8]) -> Result<(u32, u64), PayloadError> {
    let Some((header, body)) = buf.split_first_chunk::<HEADER_LEN>() else {
        return Err(PayloadError::TooShort { len: buf.len() });
    };
    let word = |at: usize| [header[at], header[at + 1], header[at + 2], header[at + 3]];
    if word(0) != MAGIC {
        return Err(PayloadError::BadMagic { found: word(0) });
    }
    if u32::from_be_bytes(word(20)) != fnv1a(&header[0..20]) {
        return Err(PayloadError::HeaderCheck);
    }
    let stream = u32::from_be_bytes(word(4));
    let mut seq = [0u8; 8];
    seq.copy_from_slice(&header[8..16]);
    let seq = u64::from_be_bytes(seq);
    let len = u32::from_be_bytes(word(16));
    if usize::try_from(len).ok() != Some(buf.len()) {
        return Err(PayloadError::Length {
            header: len,
            actual: buf.len(),
        });
    }
    for (i, chunk) in body.chunks(8).enumerate() {
        let word = pattern_word(stream, seq, i as u64).to_be_bytes();
        if chunk != &word[..chunk.len()] {
            let bad = chunk
                .iter()
                .zip(word)
                .position(|(a, b)| *a != b)
                .unwrap_or(0);
            return Err(PayloadError::Pattern {
                offset: HEADER_LEN + i * 8 + bad,
            });
        }
    }
    Ok((stream, seq))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn golden_header() {
        let mut buf = [0u8; 32];
        fill(0x0102_0304, 0x1122_3344_5566_7788, &mut buf);
        assert_eq!(&buf[0..4], b"FOLB");
        assert_eq!(&buf[4..8], &[1, 2, 3, 4]);
        assert_eq!(
            &buf[8..16],
            &[0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88]
        );
        assert_eq!(&buf[16..20], &[0, 0, 0, 32]);
        assert_eq!(&buf[20..24], &fnv1a(&buf[0..20]).to_be_bytes());
        assert_eq!(check(&buf), Ok((0x0102_0304, 0x1122_3344_5566_7788)));
    }

    #[test]
    fn sizes_round_trip() {
        for len in [24, 25, 31, 32, 64, 1472, 8972] {
            let mut buf = vec![0u8; len];
            fill(9, len as u64 * 3, &mut buf);
            assert_eq!(check(&buf), Ok((9, len as u64 * 3)), "len {len}");
        }
    }

    #[test]
    fn neighbouring_datagrams_differ() {
        let (mut a, mut b) = ([0u8; 64], [0u8; 64]);
        fill(1, 7, &mut a);
        fill(1, 8, &mut b);
        assert!(a[24..].iter().zip(&b[24..]).filter(|(x, y)| x != y).count() > 30);
        fill(2, 7, &mut b);
        assert!(a[24..].iter().zip(&b[24..]).filter(|(x, y)| x != y).count() > 30);
    }

    #[test]
    fn errors_are_precise() {
        assert_eq!(check(&[0; 23]), Err(PayloadError::TooShort { len: 23 }));
        let mut buf = vec![0u8; 100];
        fill(1, 2, &mut buf);
        let mut bad = buf.clone();
        bad[0] = b'X';
        assert!(matches!(check(&bad), Err(PayloadError::BadMagic { .. })));
        let mut bad = buf.clone();
        bad[9] ^= 1;
        assert_eq!(check(&bad), Err(PayloadError::HeaderCheck));
        assert_eq!(
            check(&buf[..99]),
            Err(PayloadError::Length {
                header: 100,
                actual: 99
            })
        );
        let mut bad = buf.clone();
        bad[77] ^= 0x80;
        assert_eq!(check(&bad), Err(PayloadError::Pattern { offset: 77 }));
    }

    #[test]
    fn every_single_byte_corruption_is_detected() {
        let mut buf = vec![0u8; 1472];
        fill(3, 1234, &mut buf);
        for at in 0..buf.len() {
            for flip in [0x01u8, 0x80, 0xff] {
                let mut bad = buf.clone();
                bad[at] ^= flip;
                assert!(check(&bad).is_err(), "byte {at} ^ {flip:#x} undetected");
            }
        }
    }

    proptest! {
        #[test]
        fn check_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = check(&bytes);
        }

        #[test]
        fn any_corruption_is_detected(
            stream in any::<u32>(),
            seq in any::<u64>(),
            len in 24usize..600,
            at in any::<prop::sample::Index>(),
            flip in 1u8..=255,
        ) {
            let mut buf = vec![0u8; len];
            fill(stream, seq, &mut buf);
            prop_assert_eq!(check(&buf), Ok((stream, seq)));
            buf[at.index(len)] ^= flip;
            prop_assert!(check(&buf).is_err());
        }
    }
}
