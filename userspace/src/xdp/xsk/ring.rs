//! The four AF_XDP rings (fill, completion, RX, TX) as two distinct types
//! over one generic core.
//!
//! A ring is a power-of-two array shared with the kernel, a producer index
//! and a consumer index (free-running `u32`s that wrap), and a flags word
//! (`XDP_RING_NEED_WAKEUP`). Userspace produces on the fill and TX rings
//! ([`ProducerRing`]) and consumes on the RX and completion rings
//! ([`ConsumerRing`]). Both work as transactions: a [`WriteBatch`] reserves
//! slots, is written, and becomes visible to the kernel only on
//! [`WriteBatch::commit`]; dropping it rolls back. A [`ReadBatch`] gives
//! entries back to the kernel only on [`ReadBatch::release`].
//!
//! Ordering: entries are written before a release-store of the producer
//! index and read after an acquire-load of it; the consumer index is
//! release-stored after the entries are read, as the kernel's
//! `xsk_queue.h` pairs them.

use std::fmt;
use std::ptr::NonNull;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use super::sys::Mmap;

/// Where the producer, consumer, flags and entries lie inside a mapping
/// (`struct xdp_ring_offset`).
#[derive(Debug, Clone, Copy)]
pub struct Layout {
    pub producer: usize,
    pub consumer: usize,
    pub flags: usize,
    pub desc: usize,
}

impl From<&libc::xdp_ring_offset> for Layout {
    fn from(o: &libc::xdp_ring_offset) -> Self {
        Layout {
            producer: o.producer as usize,
            consumer: o.consumer as usize,
            flags: o.flags as usize,
            desc: o.desc as usize,
        }
    }
}

/// The shared core: pointers into the mapping and the cached indices.
struct Core<T> {
    producer: NonNull<AtomicU32>,
    consumer: NonNull<AtomicU32>,
    flags: NonNull<AtomicU32>,
    entries: NonNull<T>,
    size: u32,
    /// Our copy of the index we own, and the last seen value of the other.
    cached_prod: u32,
    cached_cons: u32,
    /// Keeps the mapping alive as long as the pointers above.
    _map: Arc<Mmap>,
}

// SAFETY: the core owns (a share of) its mapping; the pointers are only
// dereferenced through `&mut self`, so moving it to another thread moves
// the only user. It is deliberately not `Sync`.
unsafe impl<T: Send> Send for Core<T> {}

impl<T> fmt::Debug for Core<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ring")
            .field("size", &self.size)
            .field("cached_prod", &self.cached_prod)
            .field("cached_cons", &self.cached_cons)
            .finish()
    }
}

impl<T: Copy> Core<T> {
    /// # Safety
    ///
    /// `map` must hold a ring laid out as `layout` says, with `size`
    /// (a power of two) entries of type `T` from `layout.desc`, and the
    /// index words 4-byte aligned.
    unsafe fn new(map: Arc<Mmap>, layout: Layout, size: u32) -> Self {
        assert!(
            size.is_power_of_two(),
            "ring size {size} is not a power of two"
        );
        let end = layout.desc + size as usize * size_of::<T>();
        assert!(
            end <= map.len(),
            "ring of {size} entries exceeds its mapping"
        );
        let base = map.as_ptr();
        // SAFETY: the offsets lie inside the mapping (caller contract and the
        // assertion above), and the mapping is non-null.
        let at = |off: usize| unsafe { NonNull::new_unchecked(base.add(off)) };
        let producer = at(layout.producer).cast::<AtomicU32>();
        let consumer = at(layout.consumer).cast::<AtomicU32>();
        let flags = at(layout.flags).cast::<AtomicU32>();
        let entries = at(layout.desc).cast::<T>();
        // SAFETY: valid, aligned index words (caller contract).
        let (p, c) = unsafe {
            (
                producer.as_ref().load(Ordering::Acquire),
                consumer.as_ref().load(Ordering::Acquire),
            )
        };
        Core {
            producer,
            consumer,
            flags,
            entries,
            size,
            cached_prod: p,
            cached_cons: c,
            _map: map,
        }
    }

    fn producer(&self) -> &AtomicU32 {
        // SAFETY: points into the mapping `self` keeps alive; the kernel
        // accesses it atomically too.
        unsafe { self.producer.as_ref() }
    }

    fn consumer(&self) -> &AtomicU32 {
        // SAFETY: as for `producer`.
        unsafe { self.consumer.as_ref() }
    }

    fn needs_wakeup(&self) -> bool {
        // SAFETY: as for `producer`.
        let flags = unsafe { self.flags.as_ref() };
        flags.load(Ordering::Relaxed) & libc::XDP_RING_NEED_WAKEUP != 0
    }

    fn read(&self, idx: u32) -> T {
        let slot = (idx & (self.size - 1)) as usize;
        // SAFETY: `slot < size`, inside the entry array; the entry belongs to
        // userspace between the producer's release and our consumer release.
        unsafe { self.entries.as_ptr().add(slot).read_volatile() }
    }

    fn write(&mut self, idx: u32, value: T) {
        let slot = (idx & (self.size - 1)) as usize;
        // SAFETY: `slot < size`; the slot is reserved (free per the consumer
        // index) and the kernel does not read it before our producer release.
        unsafe { self.entries.as_ptr().add(slot).write_volatile(value) }
    }
}

/// A ring mapped from a socket: its entry type, and how it is built on its
/// mapping (the one trait both ring directions share, so that the mapping's
/// length is computed from the very type the ring reads and writes).
pub trait MappedRing: Sized {
    /// The entries: `u64` addresses (fill, completion) or descriptors (RX, TX).
    type Entry: Copy;

    /// # Safety
    ///
    /// `map` holds a ring laid out as `layout` says with `size` entries of
    /// [`Self::Entry`] (see [`ProducerRing::new`], [`ConsumerRing::new`]).
    unsafe fn from_map(map: Arc<Mmap>, layout: Layout, size: u32) -> Self;
}

impl<T: Copy> MappedRing for ProducerRing<T> {
    type Entry = T;

    unsafe fn from_map(map: Arc<Mmap>, layout: Layout, size: u32) -> Self {
        // SAFETY: forwarded caller contract.
        unsafe { ProducerRing::new(map, layout, size) }
    }
}

impl<T: Copy> MappedRing for ConsumerRing<T> {
    type Entry = T;

    unsafe fn from_map(map: Arc<Mmap>, layout: Layout, size: u32) -> Self {
        // SAFETY: forwarded caller contract.
        unsafe { ConsumerRing::new(map, layout, size) }
    }
}

/// A ring userspace writes: fill (`u64` addresses) or TX ([`Desc`](crate::xdp::worker::ring::Desc)).
#[derive(Debug)]
pub struct ProducerRing<T>(Core<T>);

/// A ring userspace reads: RX ([`Desc`](crate::xdp::worker::ring::Desc)) or completion (`u64`).
#[derive(Debug)]
pub struct ConsumerRing<T>(Core<T>);

impl<T: Copy> ProducerRing<T> {
    /// # Safety
    ///
    /// As for the core: `map` holds a ring laid out as `layout` says with
    /// `size` entries of `T`, produced by userspace.
    pub unsafe fn new(map: Arc<Mmap>, layout: Layout, size: u32) -> Self {
        // SAFETY: forwarded caller contract.
        ProducerRing(unsafe { Core::new(map, layout, size) })
    }

    /// Number of entries.
    pub fn size(&self) -> u32 {
        self.0.size
    }

    /// Free slots (refreshes the kernel's consumer index).
    pub fn free(&mut self) -> u32 {
        let c = &mut self.0;
        c.cached_cons = c.consumer().load(Ordering::Acquire);
        c.size - c.cached_prod.wrapping_sub(c.cached_cons)
    }

    /// Entries produced but not yet consumed by the kernel.
    pub fn pending(&self) -> u32 {
        let c = &self.0;
        c.cached_prod
            .wrapping_sub(c.consumer().load(Ordering::Acquire))
    }

    /// Reserves up to `n` slots; the batch may be shorter (the ring is full).
    pub fn reserve(&mut self, n: u32) -> WriteBatch<'_, T> {
        let len = n.min(self.free());
        let start = self.0.cached_prod;
        WriteBatch {
            core: &mut self.0,
            start,
            len,
        }
    }

    /// Whether the kernel asked to be woken up for this ring.
    pub fn needs_wakeup(&self) -> bool {
        self.0.needs_wakeup()
    }
}

/// Reserved slots of a [`ProducerRing`]; visible to the kernel on commit.
#[derive(Debug)]
pub struct WriteBatch<'a, T: Copy> {
    core: &'a mut Core<T>,
    start: u32,
    len: u32,
}

impl<T: Copy> WriteBatch<'_, T> {
    /// Number of reserved slots.
    pub fn len(&self) -> u32 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Writes slot `i` of the batch.
    ///
    /// # Panics
    ///
    /// When `i >= len()` (a slot that was not reserved).
    pub fn set(&mut self, i: u32, value: T) {
        assert!(i < self.len, "slot {i} outside a batch of {}", self.len);
        self.core.write(self.start.wrapping_add(i), value);
    }

    /// Publishes the first `n` slots (all written) to the kernel; the rest
    /// of the reservation is rolled back.
    pub fn commit(self, n: u32) {
        assert!(
            n <= self.len,
            "commit of {n} slots in a batch of {}",
            self.len
        );
        let end = self.start.wrapping_add(n);
        self.core.cached_prod = end;
        self.core.producer().store(end, Ordering::Release);
    }
}

impl<T: Copy> ConsumerRing<T> {
    /// # Safety
    ///
    /// As for the core: `map` holds a ring laid out as `layout` says with
    /// `size` entries of `T`, produced by the kernel.
    pub unsafe fn new(map: Arc<Mmap>, layout: Layout, size: u32) -> Self {
        // SAFETY: forwarded caller contract.
        ConsumerRing(unsafe { Core::new(map, layout, size) })
    }

    /// Entries ready to read (refreshes the kernel's producer index).
    pub fn available(&mut self) -> u32 {
        let c = &mut self.0;
        c.cached_prod = c.producer().load(Ordering::Acquire);
        c.cached_prod.wrapping_sub(c.cached_cons)
    }

    /// Up to `n` ready entries; they stay in the ring until released.
    pub fn peek(&mut self, n: u32) -> ReadBatch<'_, T> {
        let len = n.min(self.available());
        let start = self.0.cached_cons;
        ReadBatch {
            core: &mut self.0,
            start,
            len,
        }
    }

    /// Whether the kernel asked to be woken up for this ring.
    pub fn needs_wakeup(&self) -> bool {
        self.0.needs_wakeup()
    }
}

/// Ready entries of a [`ConsumerRing`]; handed back to the kernel on release.
#[derive(Debug)]
pub struct ReadBatch<'a, T: Copy> {
    core: &'a mut Core<T>,
    start: u32,
    len: u32,
}

impl<T: Copy> ReadBatch<'_, T> {
    pub fn len(&self) -> u32 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Entry `i` of the batch.
    ///
    /// # Panics
    ///
    /// When `i >= len()`.
    pub fn get(&self, i: u32) -> T {
        assert!(i < self.len, "entry {i} outside a batch of {}", self.len);
        self.core.read(self.start.wrapping_add(i))
    }

    /// Hands the first `n` entries back to the kernel; the others stay
    /// ready for the next peek.
    pub fn release(self, n: u32) {
        assert!(
            n <= self.len,
            "release of {n} entries in a batch of {}",
            self.len
        );
        let end = self.start.wrapping_add(n);
        self.core.cached_cons = end;
        self.core.consumer().store(end, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A producer and a consumer over one anonymous mapping, as the kernel
    /// and userspace see one ring, starting at index `start` to exercise
    /// wrap-around of the free-running `u32` indices.
    fn pair(size: u32, start: u32) -> (ProducerRing<u64>, ConsumerRing<u64>) {
        let map = Arc::new(Mmap::anonymous(4096).unwrap());
        // SAFETY: offsets 0/64 are aligned index words in the fresh mapping.
        unsafe {
            map.as_ptr().cast::<u32>().write(start);
            map.as_ptr().add(64).cast::<u32>().write(start);
        }
        let layout = Layout {
            producer: 0,
            consumer: 64,
            flags: 128,
            desc: 192,
        };
        // SAFETY: the layout fits the mapping for `size` u64 entries.
        unsafe {
            (
                ProducerRing::new(map.clone(), layout, size),
                ConsumerRing::new(map, layout, size),
            )
        }
    }

    #[test]
    fn wraps_around_and_rolls_back() {
        let (mut p, mut c) = pair(8, u32::MAX - 5);
        assert_eq!(p.free(), 8);
        let mut next = 0u64;
        let mut expect = 0u64;
        for round in 0..10 {
            let mut b = p.reserve(5);
            assert_eq!(b.len(), 5, "round {round}");
            for i in 0..5 {
                b.set(i, next + u64::from(i));
            }
            b.commit(5);
            next += 5;
            // An abandoned reservation is invisible to the consumer.
            {
                let mut abandoned = p.reserve(3);
                assert_eq!(abandoned.len(), 3);
                abandoned.set(0, 999);
            }
            assert_eq!(p.pending(), 5);
            let r = c.peek(8);
            assert_eq!(r.len(), 5);
            for i in 0..5 {
                assert_eq!(r.get(i), expect + u64::from(i));
            }
            r.release(5);
            expect += 5;
            assert_eq!(p.pending(), 0);
        }
    }

    #[test]
    fn full_ring_reserves_nothing_and_partial_release_keeps_the_rest() {
        let (mut p, mut c) = pair(4, 0);
        let mut b = p.reserve(10);
        assert_eq!(b.len(), 4);
        for i in 0..4 {
            b.set(i, u64::from(i));
        }
        b.commit(4);
        assert_eq!(p.reserve(1).len(), 0);
        c.peek(4).release(1);
        assert_eq!(p.free(), 1);
        let r = c.peek(4);
        assert_eq!(r.len(), 3);
        assert_eq!(r.get(0), 1);
        r.release(0);
        assert_eq!(c.available(), 3);
    }

    #[test]
    #[should_panic(expected = "outside a batch")]
    fn writing_an_unreserved_slot_panics() {
        let (mut p, _c) = pair(2, 0);
        let mut b = p.reserve(1);
        b.set(1, 0);
    }
}
