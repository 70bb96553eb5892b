//! The flow index of one worker: exact match of a [`FlowKey`] (group, port,
//! innermost VLAN) to the flow's number, once per received datagram, and a
//! second time under the datagram's source for a stream of source-specific
//! channels; and the layout of those keys ([`layout`]), which the XDP
//! program's `FLOWS` map shares, so that the program and the worker find
//! the same flow for every datagram.
//!
//! A `HashMap` over the key's five 64-bit words with an Fx-style hasher
//! (one multiply-rotate per word): the keys are configured by the operator,
//! not chosen by senders, and a probe for an unknown key costs the same as
//! for a known one, so SipHash's flooding resistance buys nothing here and
//! costs about 500 instructions per datagram. Allocates only in
//! [`FlowIndex::with_capacity`] and [`FlowIndex::insert`].

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hash, Hasher};

use std::net::IpAddr;

use fanout_common::{FLOW_KEY_LEN, FlowKey, FlowValue};

/// What one flow claims of the traffic: its id and its datagrams.
#[derive(Debug, Clone, Copy)]
pub struct Claim {
    pub id: u32,
    pub group: IpAddr,
    pub port: u16,
    pub vlan: Option<u16>,
    /// The outer tag of a double-tagged stream.
    pub outer_vlan: Option<u16>,
    pub source: Option<IpAddr>,
}

/// The flow table's entries for `claims`: an any-source flow under its
/// stream key (group, port, VLAN); a source-specific channel under its
/// channel key (the stream key with its source), and once per stream of
/// channels the stream key marked [`FlowValue::by_source`], pointing at its
/// lowest flow id. So `(S1, G)` and `(S2, G)` on one port are two flows.
/// Two claims on the same datagrams (an any-source flow and a channel of
/// one stream, or twice the same key) are refused as `Err((flow, other))`,
/// the later claim's id first.
pub fn layout(claims: &[Claim]) -> Result<Vec<(FlowKey, FlowValue)>, (u32, u32)> {
    // (key, value, the id of the claim that made the entry), in claim
    // order, and where each key stands: linear in the flows, not quadratic.
    let mut entries: Vec<(FlowKey, FlowValue, u32)> = Vec::with_capacity(claims.len() * 2);
    let mut at: HashMap<FlowKey, usize> = HashMap::with_capacity(claims.len() * 2);
    for c in claims {
        let stream = FlowKey::new(c.group, c.port, c.vlan.unwrap_or(0))
            .with_outer_vlan(c.outer_vlan.unwrap_or(0));
        let mut claim = |key: FlowKey, value: FlowValue| match at.get(&key) {
            None => {
                at.insert(key, entries.len());
                entries.push((key, value, c.id));
                Ok(())
            }
            Some(&i) => match &mut entries[i] {
                // The channels of one stream share its marker.
                (_, v, _) if value.is_by_source() && v.is_by_source() => {
                    v.flow_id = v.flow_id.min(c.id);
                    Ok(())
                }
                (_, _, other) => Err((c.id, *other)),
            },
        };
        match c.source {
            None => claim(stream, FlowValue::flow(c.id))?,
            Some(src) => {
                claim(stream, FlowValue::by_source(c.id))?;
                claim(stream.with_source_ip(src), FlowValue::flow(c.id))?;
            }
        }
    }
    Ok(entries.into_iter().map(|(k, v, _)| (k, v)).collect())
}

/// A [`FlowKey`] as five native words: cheap to hash and to compare.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Words([u64; FLOW_KEY_LEN / 8]);

impl From<&FlowKey> for Words {
    #[inline]
    fn from(key: &FlowKey) -> Self {
        let b = key.to_ne_bytes();
        let (words, _) = b.as_chunks::<8>();
        Self(std::array::from_fn(|i| u64::from_ne_bytes(words[i])))
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

/// Flow keys to their entries (as in the program's `FLOWS`).
#[derive(Debug)]
pub(super) struct FlowIndex(HashMap<Words, FlowValue, BuildHasherDefault<FxHasher>>);

impl FlowIndex {
    pub(super) fn with_capacity(n: usize) -> Self {
        Self(HashMap::with_capacity_and_hasher(n, Default::default()))
    }

    #[inline]
    pub(super) fn get(&self, key: &FlowKey) -> Option<FlowValue> {
        self.0.get(&Words::from(key)).copied()
    }

    pub(super) fn insert(&mut self, key: &FlowKey, value: FlowValue) {
        self.0.insert(Words::from(key), value);
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
            index.insert(&key(i, 0), FlowValue::flow(i));
        }
        let src: IpAddr = "10.0.0.1".parse().unwrap();
        for i in 0..300 {
            assert_eq!(index.get(&key(i, 0)), Some(FlowValue::flow(i)));
            assert_eq!(index.get(&key(i, 1)), None);
            assert_eq!(index.get(&key(i, 0).with_source_ip(src)), None);
        }
    }
}
