//! The frame and header-slot accounting of one UMEM: which receive frames
//! the kernel holds, which wait for the fill ring, how many in-flight
//! descriptors point into each, and which header slots are free.
//!
//! Contract: a receive frame is in exactly one state (in the kernel,
//! waiting to be filled, or referenced); it goes back to the fill queue
//! exactly once, when its last reference is released; a header slot is
//! free or heads exactly one replica ([`SlotOwner`]). Releasing an address
//! nothing holds changes nothing and says so (`false`, counted by the
//! caller). O(1) per descriptor; nothing allocates after [`Frames::new`].

use super::ring::Desc;

/// Where every receive frame is, at a quiet moment (see [`Worker::census`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameCensus {
    /// Frames that receive (`frame_count - slot_frames`).
    pub rx_frames: usize,
    /// Handed to the kernel through the fill ring and not received back.
    pub in_kernel: usize,
    /// Free, waiting for room on the fill ring.
    pub to_fill: usize,
    /// Referenced by replicas in flight.
    pub referenced: usize,
    /// Frames found in more than one of the three states (a bug: 0).
    pub conflicts: usize,
    /// Header slots in all.
    pub slots: usize,
    /// Header slots in flight.
    pub slots_in_flight: usize,
}

impl FrameCensus {
    /// Every frame in exactly one state, and nothing in flight.
    pub fn is_idle(&self) -> bool {
        self.conflicts == 0
            && self.referenced == 0
            && self.slots_in_flight == 0
            && self.in_kernel + self.to_fill == self.rx_frames
    }

    /// Every frame in exactly one state.
    pub fn is_consistent(&self) -> bool {
        self.conflicts == 0 && self.in_kernel + self.to_fill + self.referenced == self.rx_frames
    }
}

/// The frame and slot accounting of one UMEM.
#[derive(Debug)]
pub(super) struct Frames {
    pub(super) frame_size: u32,
    /// `log2(frame_size)`: the frame of an address is `addr >> frame_shift`.
    pub(super) frame_shift: u32,
    pub(super) frame_count: u32,
    pub(super) slot_frames: u32,
    pub(super) slot_size: u32,
    /// `log2(slot_size)`: slots tile frames `0..slot_frames` from address
    /// 0, so the slot of an address is `addr >> slot_shift`.
    pub(super) slot_shift: u32,
    /// References per frame: in-flight TX descriptors pointing into it,
    /// plus the worker's hold while a received packet is processed.
    pub(super) refs: Vec<u32>,
    /// On the fill ring or being received into.
    pub(super) in_kernel: Vec<bool>,
    /// Free receive frames (base addresses) waiting for the fill ring.
    pub(super) to_fill: Vec<u64>,
    /// Free header slots (addresses), a stack. A slot popped from it is
    /// either staged (and marked busy in `slot_owner`) or pushed back in
    /// the same replica's turn.
    pub(super) free_slots: Vec<u64>,
    /// Per slot: whether it is in flight and whose replica it heads,
    /// written when the replica is staged (one store for both): what a
    /// completion checks and a refused chain is counted against.
    pub(super) slot_owner: Vec<SlotOwner>,
}

/// The replica a header slot heads.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct SlotOwner {
    pub(super) flow: u32,
    pub(super) output: u32,
    /// UDP payload bytes of the replica (what `sent_bytes` counted).
    pub(super) bytes: u32,
    /// Staged or in flight: its completion (or refusal) is expected.
    pub(super) busy: bool,
}

impl Frames {
    pub(super) fn new(frame_size: u32, frame_count: u32, slot_frames: u32, slot_size: u32) -> Self {
        let per_frame = frame_size / slot_size;
        let slots = (slot_frames * per_frame) as usize;
        // Pushed so that the lowest address is popped first.
        let free_slots = (0..slots as u64)
            .rev()
            .map(|i| {
                let frame = i / u64::from(per_frame);
                let k = i % u64::from(per_frame);
                frame * u64::from(frame_size) + k * u64::from(slot_size)
            })
            .collect();
        let to_fill = (slot_frames..frame_count)
            .map(|f| u64::from(f) * u64::from(frame_size))
            .collect();
        Self {
            frame_size,
            frame_shift: frame_size.trailing_zeros(),
            frame_count,
            slot_frames,
            slot_size,
            slot_shift: slot_size.trailing_zeros(),
            refs: vec![0; frame_count as usize],
            in_kernel: vec![false; frame_count as usize],
            to_fill,
            free_slots,
            slot_owner: vec![SlotOwner::default(); slots],
        }
    }

    #[inline]
    pub(super) fn frame_of(&self, addr: u64) -> usize {
        (addr >> self.frame_shift) as usize
    }

    /// Takes the worker's hold on a received descriptor's frame, after
    /// checking that it is a receive frame the kernel held and that the
    /// descriptor stays inside it.
    #[inline]
    pub(super) fn hold_rx(&mut self, d: &Desc) -> bool {
        let frame = self.frame_of(d.addr);
        let end = (frame as u64 + 1) * u64::from(self.frame_size);
        if frame < self.slot_frames as usize
            || frame >= self.frame_count as usize
            || d.addr + u64::from(d.len) > end
            || !self.in_kernel[frame]
        {
            return false;
        }
        self.in_kernel[frame] = false;
        self.refs[frame] += 1;
        true
    }

    /// `n` more in-flight descriptors in the frame of each piece (held
    /// already).
    #[inline]
    pub(super) fn take_refs(&mut self, pieces: &[Desc], n: u32) {
        for piece in pieces {
            let frame = self.frame_of(piece.addr);
            if let Some(r) = self.refs.get_mut(frame) {
                *r += n;
            }
        }
    }

    /// Gives back `n` references taken by [`Self::take_refs`] and not used
    /// (the worker's hold keeps each count above zero meanwhile).
    #[inline]
    pub(super) fn drop_refs(&mut self, pieces: &[Desc], n: u32) {
        for piece in pieces {
            let frame = self.frame_of(piece.addr);
            if let Some(r) = self.refs.get_mut(frame) {
                *r -= n;
            }
        }
    }

    #[inline]
    pub(super) fn slot_index(&self, addr: u64) -> usize {
        (addr >> self.slot_shift) as usize
    }

    /// Drops one reference through `addr` (a completion, a refused
    /// descriptor or the end of a hold): a slot goes back to the pool, a
    /// frame whose last reference this was to the fill queue. `false` when
    /// nothing held that reference.
    #[inline]
    pub(super) fn release(&mut self, addr: u64) -> bool {
        let frame = self.frame_of(addr);
        if frame < self.slot_frames as usize {
            if addr & u64::from(self.slot_size - 1) != 0 {
                return false;
            }
            let i = self.slot_index(addr);
            return match self.slot_owner.get_mut(i) {
                Some(owner) if owner.busy => {
                    owner.busy = false;
                    self.free_slots.push(addr);
                    true
                }
                _ => false,
            };
        }
        match self.refs.get_mut(frame) {
            None | Some(0) => false,
            Some(1) => {
                self.refs[frame] = 0;
                self.to_fill.push((frame as u64) << self.frame_shift);
                true
            }
            Some(r) => {
                *r -= 1;
                true
            }
        }
    }

    /// [`Self::release`] for a batch of completions; returns how many
    /// released nothing. The geometry is read once into locals, and the
    /// payload-frame case, the common one, comes first.
    #[inline]
    pub(super) fn release_all(&mut self, addrs: &[u64]) -> u64 {
        let frame_shift = self.frame_shift;
        let slot_frames = self.slot_frames as usize;
        let slot_mask = u64::from(self.slot_size - 1);
        let slot_shift = self.slot_shift;
        let Self {
            refs,
            to_fill,
            slot_owner,
            free_slots,
            ..
        } = self;
        let mut bad = 0;
        for &addr in addrs {
            let frame = (addr >> frame_shift) as usize;
            if frame >= slot_frames {
                match refs.get_mut(frame) {
                    Some(r) if *r > 1 => *r -= 1,
                    Some(r) if *r == 1 => {
                        *r = 0;
                        to_fill.push((frame as u64) << frame_shift);
                    }
                    _ => bad += 1,
                }
            } else {
                match slot_owner.get_mut((addr >> slot_shift) as usize) {
                    Some(owner) if owner.busy && addr & slot_mask == 0 => {
                        owner.busy = false;
                        free_slots.push(addr);
                    }
                    _ => bad += 1,
                }
            }
        }
        bad
    }
}
