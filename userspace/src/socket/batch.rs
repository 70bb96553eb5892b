//! Pure batch arithmetic of the socket engine: splitting a GRO-coalesced
//! buffer back into datagrams, and grouping a batch into send messages
//! (one datagram each, or a UDP GSO run of equal-size datagrams).
//! No system calls here, so every rule is unit-tested.

use std::ops::Range;

/// Most segments the kernel accepts in one GSO send (`UDP_MAX_SEGMENTS`).
pub const GSO_MAX_SEGMENTS: usize = 64;
/// Most payload bytes in one GSO send: the IPv6 bound (65535 - 40 - 8),
/// which also satisfies IPv4's 65507.
pub const GSO_MAX_BYTES: usize = 65_487;

/// Pushes the datagram ranges of a received buffer `[base, base + len)`
/// onto `out`: the whole buffer, or consecutive `seg`-byte pieces (the last
/// may be shorter) when the kernel coalesced it with GRO. Returns how many.
pub fn split_gro(
    base: usize,
    len: usize,
    seg: Option<usize>,
    out: &mut Vec<Range<usize>>,
) -> usize {
    match seg {
        Some(seg) if seg > 0 && len > seg => {
            let mut off = 0;
            let mut n = 0;
            while off < len {
                let end = (off + seg).min(len);
                out.push(base + off..base + end);
                off = end;
                n += 1;
            }
            n
        }
        _ => {
            out.push(base..base + len);
            1
        }
    }
}

/// One send message: `count` consecutive datagrams starting at `first`.
/// With `count > 1` it is a GSO run: every datagram is `seg` bytes except
/// possibly the last, which is shorter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Msg {
    pub first: usize,
    pub count: usize,
    pub seg: usize,
    pub bytes: usize,
}

impl Msg {
    pub fn datagrams(&self) -> Range<usize> {
        self.first..self.first + self.count
    }
}

/// Groups datagrams of lengths `lens` into messages, in order: runs of equal
/// size (plus at most one shorter tail) up to `max_segs` datagrams and
/// `max_bytes` bytes; empty datagrams always travel alone.
pub fn plan_messages(lens: &[usize], max_segs: usize, max_bytes: usize, out: &mut Vec<Msg>) {
    out.clear();
    let mut i = 0;
    while i < lens.len() {
        let seg = lens[i];
        let mut msg = Msg {
            first: i,
            count: 1,
            seg,
            bytes: seg,
        };
        if seg > 0 {
            let mut j = i + 1;
            while j < lens.len() && msg.count < max_segs {
                let l = lens[j];
                if l == 0 || l > seg || msg.bytes + l > max_bytes {
                    break;
                }
                msg.count += 1;
                msg.bytes += l;
                j += 1;
                if l < seg {
                    break;
                }
            }
        }
        i += msg.count;
        out.push(msg);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gro_split_by_segment() {
        let mut v = Vec::new();
        assert_eq!(split_gro(100, 3000, Some(1400), &mut v), 3);
        assert_eq!(v, vec![100..1500, 1500..2900, 2900..3100]);
        v.clear();
        assert_eq!(split_gro(0, 1400, Some(1400), &mut v), 1);
        assert_eq!(split_gro(0, 500, None, &mut v), 1);
        assert_eq!(split_gro(7, 0, Some(0), &mut v), 1);
        assert_eq!(v, vec![0..1400, 0..500, 7..7]);
    }

    fn plan(lens: &[usize], segs: usize, bytes: usize) -> Vec<(usize, usize, usize)> {
        let mut out = Vec::new();
        plan_messages(lens, segs, bytes, &mut out);
        // every datagram appears exactly once, in order
        let mut next = 0;
        for m in &out {
            assert_eq!(m.first, next);
            assert_eq!(m.bytes, lens[m.datagrams()].iter().sum::<usize>());
            next += m.count;
        }
        assert_eq!(next, lens.len());
        out.iter().map(|m| (m.first, m.count, m.seg)).collect()
    }

    #[test]
    fn equal_sizes_form_one_run() {
        assert_eq!(plan(&[1472; 5], 64, GSO_MAX_BYTES), vec![(0, 5, 1472)]);
    }

    #[test]
    fn shorter_tail_joins_then_ends_run() {
        assert_eq!(
            plan(&[100, 100, 40, 100, 100], 64, GSO_MAX_BYTES),
            vec![(0, 3, 100), (3, 2, 100)]
        );
    }

    #[test]
    fn larger_datagram_starts_a_new_run() {
        assert_eq!(
            plan(&[100, 200, 200], 64, GSO_MAX_BYTES),
            vec![(0, 1, 100), (1, 2, 200)]
        );
    }

    #[test]
    fn limits_on_segments_and_bytes() {
        assert_eq!(
            plan(&[64; 130], 64, GSO_MAX_BYTES),
            vec![(0, 64, 64), (64, 64, 64), (128, 2, 64)]
        );
        // 8972-byte jumbo payloads: 7 fit under the byte bound
        assert_eq!(
            plan(&[8972; 10], 64, GSO_MAX_BYTES),
            vec![(0, 7, 8972), (7, 3, 8972)]
        );
        // 1472: 44 * 1472 = 64768
        assert_eq!(
            plan(&[1472; 50], 64, GSO_MAX_BYTES),
            vec![(0, 44, 1472), (44, 6, 1472)]
        );
    }

    #[test]
    fn empty_datagrams_travel_alone() {
        assert_eq!(
            plan(&[0, 0, 5, 0], 64, GSO_MAX_BYTES),
            vec![(0, 1, 0), (1, 1, 0), (2, 1, 5), (3, 1, 0)]
        );
        assert_eq!(plan(&[], 64, GSO_MAX_BYTES), vec![]);
    }
}
