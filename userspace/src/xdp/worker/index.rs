//! The flow index of one worker: exact match of a [`FlowKey`] (group, port,
//! innermost VLAN) to the flow's number, once per received datagram.
//!
//! A `HashMap` over the key's three 64-bit words with an Fx-style hasher
//! (one multiply-rotate per word): the keys are configured by the operator,
//! not chosen by senders, and a probe for an unknown key costs the same as
//! for a known one, so SipHash's flooding resistance buys nothing here and
//! costs about 500 instructions per datagram. Allocates only in
//! [`FlowIndex::with_capacity`] and [`FlowIndex::insert`].

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hash, Hasher};

use fanout_common::{FLOW_KEY_LEN, FlowKey};

/// A [`FlowKey`] as three native words: cheap to hash and to compare.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Words([u64; FLOW_KEY_LEN / 8]);

impl From<&FlowKey> for Words {
    #[inline]
    fn from(key: &FlowKey) -> Self {
        let b = key.to_ne_bytes();
        let (words, _) = b.as_chunks::<8>();
        Self([
            u64::from_ne_bytes(words[0]),
            u64::from_ne_bytes(words[1]),
            u64::from_ne_bytes(words[2]),
        ])
    }
}

impl Hash for Words {
    #[inline]
    fn hash<H: Hasher>(&self, state: &mut H) {
        for &w in &self.0 {
            state.write_u64(w);
        }
    }
}

/// The Fx hash (rustc's): `h = (h.rotate_left(5) ^ word) * K` per word.
#[derive(Debug, Default, Clone, Copy)]
struct FxHasher(u64);

const FX_K: u64 = 0xf135_7aea_2e62_a9c5;

impl Hasher for FxHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }

    #[inline]
    fn write_u64(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(FX_K);
    }

    #[inline]
    fn finish(&self) -> u64 {
        // hashbrown takes the top 7 bits as the tag and the low bits as the
        // bucket: spread the multiply's high bits down.
        self.0.rotate_left(26)
    }
}

/// Flow keys to flow numbers.
#[derive(Debug)]
pub(super) struct FlowIndex(HashMap<Words, u32, BuildHasherDefault<FxHasher>>);

impl FlowIndex {
    pub(super) fn with_capacity(n: usize) -> Self {
        Self(HashMap::with_capacity_and_hasher(n, Default::default()))
    }

    #[inline]
    pub(super) fn get(&self, key: &FlowKey) -> Option<u32> {
        self.0.get(&Words::from(key)).copied()
    }

    pub(super) fn insert(&mut self, key: &FlowKey, flow: u32) {
        self.0.insert(Words::from(key), flow);
    }

    #[cfg(test)]
    pub(super) fn capacity(&self) -> usize {
        self.0.capacity()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::IpAddr;

    #[test]
    fn finds_exactly_the_inserted_keys() {
        let mut index = FlowIndex::with_capacity(300);
        let key = |i: u32, vlan: u16| {
            let group: IpAddr = if i.is_multiple_of(2) {
                format!("239.1.{}.{}", i / 256, i % 256).parse().unwrap()
            } else {
                format!("ff3e::{i:x}").parse().unwrap()
            };
            FlowKey::new(group, 5000 + (i % 7) as u16, vlan)
        };
        for i in 0..300 {
            index.insert(&key(i, 0), i);
        }
        for i in 0..300 {
            assert_eq!(index.get(&key(i, 0)), Some(i));
            assert_eq!(index.get(&key(i, 1)), None);
        }
    }
}
