//! Descriptors waiting to be handed to one TX port: whole chains, each
//! headed by its header slot, in a fixed array.

use super::config::{MAX_TX_CHAIN, WorkerConfig};
use super::ring::Desc;

/// Descriptors waiting to be handed to one TX port.
#[derive(Debug)]
pub(super) struct Stage {
    /// Whole chains in `buf[..len]`, each headed by its header slot
    /// ([`SlotOwner`]); a fixed array, filled without `Vec` growth checks.
    pub(super) buf: Box<[Desc]>,
    pub(super) len: usize,
}

impl Stage {
    /// The stage of one TX port: room for a TX batch, and at least one
    /// whole chain.
    pub(super) fn for_port(cfg: &WorkerConfig) -> Self {
        let cap = cfg.tx_batch.max(MAX_TX_CHAIN);
        Self {
            buf: vec![Desc::default(); cap].into_boxed_slice(),
            len: 0,
        }
    }

    #[inline]
    pub(super) fn descs(&self) -> &[Desc] {
        &self.buf[..self.len]
    }

    /// Appends the chain `header` + `payload`; `false` (nothing appended)
    /// without room. The usual chains are written element by element: no
    /// memcpy call for two to four descriptors.
    #[inline]
    pub(super) fn push_chain(&mut self, header: Desc, payload: &[Desc]) -> bool {
        let at = self.len;
        let n = 1 + payload.len();
        let Some(dst) = self.buf.get_mut(at..at + n) else {
            return false;
        };
        match (dst, payload) {
            ([h, d0], [p0]) => {
                *h = header;
                *d0 = *p0;
            }
            ([h, d0, d1], [p0, p1]) => {
                *h = header;
                *d0 = *p0;
                *d1 = *p1;
            }
            ([h, d0, d1, d2], [p0, p1, p2]) => {
                *h = header;
                *d0 = *p0;
                *d1 = *p1;
                *d2 = *p2;
            }
            (dst, payload) => {
                if let Some((h, rest)) = dst.split_first_mut() {
                    *h = header;
                    rest.copy_from_slice(payload);
                }
            }
        }
        self.len = at + n;
        true
    }
}
