//! The in-memory implementation of the ring seam: a `Vec<u8>` UMEM and rings
//! as bounded queues, with the kernel's side played by the test.
//!
//! [`MemUmem`], [`MemRx`] and [`MemTx`] implement [`Umem`], [`RxPort`] and
//! [`TxPort`] with the kernel's observable behaviour: the fill ring, the RX
//! ring, every TX ring and every completion ring have a fixed capacity (so a
//! test can make any of them full); the RX and TX rings move whole packets
//! only. The test plays the kernel: [`MemRx::deliver`] receives a frame into
//! frames the engine filled (split into buffers of `frame_size - headroom`
//! bytes, linked with [`XDP_PKT_CONTD`], as `XDP_USE_SG` does),
//! [`MemTx::take`] takes a transmitted chain off the wire and
//! [`MemTx::complete`] returns descriptor addresses on the completion ring,
//! in any order, at any time.
//!
//! The fakes check the contract the kernel relies on and panic when the
//! engine breaks it (a frame filled twice, an address outside the UMEM, a
//! chain that crosses a frame boundary): they are test doubles, and a panic
//! is the loudest failure a test can report. Nothing here is on a hot path
//! of the real engine; [`MemTx::set_auto_complete`] makes a port complete
//! on flush, for benchmarks.

use std::collections::VecDeque;

use super::{Desc, RxPort, TxPort, Umem, XDP_PKT_CONTD};

/// `dst.copy_from_slice(src)` in pieces of at most 1 KiB. glibc's `memcpy`
/// switches to `rep movsb` above 2 KiB, which valgrind counts once per
/// iteration: one 16 KiB ring copy would show as thousands of
/// "instructions" in `cargo xtask bench --callgrind` and hide the engine's
/// own count. The pieces keep it in the vector loop; the work is the same.
#[inline]
fn copy<T: Copy>(dst: &mut [T], src: &[T]) {
    let piece = (1024 / size_of::<T>().max(1)).max(1);
    for (d, s) in dst.chunks_mut(piece).zip(src.chunks(piece)) {
        d.copy_from_slice(s);
    }
}

/// A bounded FIFO in a fixed array, as the kernel's rings are: moves are
/// one or two slice copies, never an allocation (except [`Self::force_push`],
/// which plays a kernel that ignores the ring's size).
#[derive(Debug)]
struct Fifo<T> {
    buf: Box<[T]>,
    head: usize,
    len: usize,
}

impl<T: Copy + Default> Fifo<T> {
    fn new(cap: usize) -> Self {
        Self {
            buf: vec![T::default(); cap].into_boxed_slice(),
            head: 0,
            len: 0,
        }
    }

    #[inline]
    fn len(&self) -> usize {
        self.len
    }

    #[inline]
    fn room(&self) -> usize {
        self.buf.len() - self.len
    }

    /// The `i`-th element from the front (`i < len`).
    #[inline]
    fn get(&self, i: usize) -> T {
        let at = self.head + i;
        let cap = self.buf.len();
        self.buf[if at >= cap { at - cap } else { at }]
    }

    /// The occupied part as two slices, front first.
    #[inline]
    fn as_slices(&self) -> (&[T], &[T]) {
        let cap = self.buf.len();
        if self.head + self.len <= cap {
            (&self.buf[self.head..self.head + self.len], &[])
        } else {
            (
                &self.buf[self.head..],
                &self.buf[..self.head + self.len - cap],
            )
        }
    }

    /// Appends all of `items` (`items.len() <= room`).
    #[inline]
    fn push_slice(&mut self, items: &[T]) {
        debug_assert!(items.len() <= self.room());
        let cap = self.buf.len();
        let tail = (self.head + self.len) % cap.max(1);
        let first = items.len().min(cap - tail);
        copy(&mut self.buf[tail..tail + first], &items[..first]);
        copy(&mut self.buf[..items.len() - first], &items[first..]);
        self.len += items.len();
    }

    /// Moves the first `out.len()` elements (`<= len`) into `out`.
    #[inline]
    fn pop_into(&mut self, out: &mut [T]) {
        debug_assert!(out.len() <= self.len);
        let cap = self.buf.len();
        let first = out.len().min(cap - self.head);
        copy(&mut out[..first], &self.buf[self.head..self.head + first]);
        let rest = out.len() - first;
        copy(&mut out[first..], &self.buf[..rest]);
        self.head = if rest > 0 { rest } else { self.head + first };
        if self.head == cap {
            self.head = 0;
        }
        self.len -= out.len();
    }

    /// The free slots after the tail, contiguous, at most `n` (at least
    /// one when `n > 0` and there is room); the caller writes them and
    /// adds what it wrote to `len`.
    #[inline]
    fn free_run(&mut self, n: usize) -> &mut [T] {
        let cap = self.buf.len();
        let at = self.head + self.len;
        let tail = if at >= cap { at - cap } else { at };
        let contiguous = if at >= cap {
            self.head - tail
        } else {
            cap - tail
        };
        let k = n.min(contiguous).min(self.room());
        &mut self.buf[tail..tail + k]
    }

    /// Appends one element (`room > 0`).
    #[inline]
    fn push(&mut self, item: T) {
        debug_assert!(self.room() > 0);
        let cap = self.buf.len();
        let at = self.head + self.len;
        self.buf[if at >= cap { at - cap } else { at }] = item;
        self.len += 1;
    }

    /// Removes and returns the first element (`len > 0`).
    #[inline]
    fn take_front(&mut self) -> T {
        debug_assert!(self.len > 0);
        let item = self.buf[self.head];
        let next = self.head + 1;
        self.head = if next == self.buf.len() { 0 } else { next };
        self.len -= 1;
        item
    }

    #[inline]
    fn pop(&mut self) -> Option<T> {
        if self.len == 0 {
            return None;
        }
        let item = self.buf[self.head];
        self.head += 1;
        if self.head == self.buf.len() {
            self.head = 0;
        }
        self.len -= 1;
        Some(item)
    }

    /// Drops the first `n` elements (`<= len`).
    #[inline]
    fn discard(&mut self, n: usize) {
        debug_assert!(n <= self.len);
        let cap = self.buf.len();
        if n > 0 {
            self.head = (self.head + n) % cap;
            self.len -= n;
        }
    }

    /// Appends one element even when full, growing the array (a kernel
    /// that ignores the ring's size, for tests of a misbehaving one).
    fn force_push(&mut self, item: T) {
        if self.room() == 0 {
            let (a, b) = self.as_slices();
            let mut grown = Vec::with_capacity((self.buf.len() * 2).max(1));
            grown.extend_from_slice(a);
            grown.extend_from_slice(b);
            grown.resize(grown.capacity(), T::default());
            self.buf = grown.into_boxed_slice();
            self.head = 0;
        }
        self.push(item);
    }
}

/// `XDP_PACKET_HEADROOM`: where the kernel puts received data in a frame.
pub const DEFAULT_HEADROOM: u32 = 256;

/// A UMEM in a `Vec<u8>`.
#[derive(Debug, Clone)]
pub struct MemUmem {
    bytes: Vec<u8>,
    frame_size: u32,
    frame_count: u32,
    /// `frame_size - 1` when it is a power of two (the offset in a frame
    /// is then a mask).
    frame_mask: Option<u64>,
}

impl MemUmem {
    /// `frame_count` zeroed frames of `frame_size` bytes.
    pub fn new(frame_size: u32, frame_count: u32) -> Self {
        assert!(frame_size > 0 && frame_count > 0);
        Self {
            bytes: vec![0; frame_size as usize * frame_count as usize],
            frame_size,
            frame_count,
            frame_mask: frame_size
                .is_power_of_two()
                .then(|| u64::from(frame_size) - 1),
        }
    }

    /// The offset of `addr .. addr + len` in `bytes` after checking that it
    /// starts inside the UMEM and stays in one frame, which also keeps it
    /// inside the UMEM (a whole number of frames): the caller slices
    /// `len` bytes from there, a check the optimizer can fold when `len` is
    /// a constant.
    #[inline]
    fn check(&self, addr: u64, len: u32) -> usize {
        let fs = u64::from(self.frame_size);
        let offset = match self.frame_mask {
            Some(mask) => addr & mask,
            None => addr % fs,
        };
        if addr >= self.bytes.len() as u64 || offset + u64::from(len) > fs {
            bad_access(addr, len);
        }
        addr as usize
    }
}

impl Umem for MemUmem {
    fn frame_size(&self) -> u32 {
        self.frame_size
    }

    fn frame_count(&self) -> u32 {
        self.frame_count
    }

    #[inline]
    fn bytes(&self, addr: u64, len: u32) -> &[u8] {
        let start = self.check(addr, len);
        match self.bytes[start..].get(..len as usize) {
            Some(b) => b,
            None => bad_access(addr, len),
        }
    }

    #[inline]
    fn bytes_mut(&mut self, addr: u64, len: u32) -> &mut [u8] {
        let start = self.check(addr, len);
        match self.bytes[start..].get_mut(..len as usize) {
            Some(b) => b,
            None => bad_access(addr, len),
        }
    }
}

#[cold]
#[inline(never)]
fn bad_access(addr: u64, len: u32) -> ! {
    panic!("UMEM access {addr:#x}+{len} crosses a frame or the end of the UMEM")
}

/// Why [`MemRx::deliver`] dropped a frame (the kernel counts `rx_dropped`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Not enough frames on the fill ring.
    FillEmpty,
    /// Not enough room on the RX ring.
    RxFull,
}

/// The ingress socket: fill ring and RX ring.
#[derive(Debug)]
pub struct MemRx {
    fill: Fifo<u64>,
    rx: Fifo<Desc>,
    rx_cap: usize,
    headroom: u32,
    /// Per frame: on the fill ring or received and not yet consumed by the
    /// engine (the engine must not hand any of them back). Grows to the
    /// highest frame seen.
    owned: Vec<bool>,
    owned_count: usize,
    frame_size: u32,
    wakes: u64,
    dropped: u64,
}

impl MemRx {
    /// A fill ring of `fill_cap` and an RX ring of `rx_cap` entries for a
    /// UMEM of `frame_size`-byte frames, with [`DEFAULT_HEADROOM`].
    pub fn new(frame_size: u32, fill_cap: usize, rx_cap: usize) -> Self {
        Self {
            fill: Fifo::new(fill_cap),
            rx: Fifo::new(rx_cap),
            rx_cap,
            headroom: DEFAULT_HEADROOM,
            owned: Vec::new(),
            owned_count: 0,
            frame_size,
            wakes: 0,
            dropped: 0,
        }
    }

    /// Bytes one received buffer holds: `frame_size - headroom`.
    pub fn buffer_len(&self) -> u32 {
        self.frame_size - self.headroom
    }

    /// Receives `frame` as the kernel would: into frames taken from the fill
    /// ring, one buffer of [`Self::buffer_len`] bytes per frame, chained.
    /// Returns the number of descriptors, or why the frame was dropped
    /// (nothing is consumed then).
    pub fn deliver(&mut self, umem: &mut MemUmem, frame: &[u8]) -> Result<usize, Refused> {
        let buf = self.buffer_len() as usize;
        let mut lens = [0usize; 64];
        let n = frame.len().div_ceil(buf).clamp(1, lens.len());
        for (i, len) in lens[..n].iter_mut().enumerate() {
            *len = frame.len().min((i + 1) * buf) - (i * buf).min(frame.len());
        }
        self.deliver_split(umem, frame, &lens[..n])
    }

    /// Receives `frame` split into buffers of the given lengths (which sum
    /// to `frame.len()`, each at most [`Self::buffer_len`]).
    pub fn deliver_split(
        &mut self,
        umem: &mut MemUmem,
        frame: &[u8],
        lens: &[usize],
    ) -> Result<usize, Refused> {
        assert_eq!(lens.iter().sum::<usize>(), frame.len(), "split {lens:?}");
        assert!(lens.iter().all(|&l| l <= self.buffer_len() as usize));
        let n = lens.len();
        if self.fill.len() < n {
            self.dropped += 1;
            return Err(Refused::FillEmpty);
        }
        if self.rx_cap - self.rx.len() < n {
            self.dropped += 1;
            return Err(Refused::RxFull);
        }
        let mut at = 0;
        for (i, &len) in lens.iter().enumerate() {
            let base = self.fill.pop().unwrap();
            let addr = base + u64::from(self.headroom);
            umem.bytes_mut(addr, len as u32)
                .copy_from_slice(&frame[at..at + len]);
            at += len;
            self.rx.push(Desc {
                addr,
                len: len as u32,
                options: if i + 1 < n { XDP_PKT_CONTD } else { 0 },
            });
        }
        Ok(n)
    }

    /// Receives a packet of buffers of the given lengths whose bytes are
    /// already in place at each fill frame's data offset (`headroom`):
    /// nothing is copied, for benchmarks that prepared every frame.
    #[inline]
    pub fn deliver_in_place(&mut self, lens: &[u32]) -> Result<usize, Refused> {
        let n = lens.len();
        if self.fill.len() < n {
            self.dropped += 1;
            return Err(Refused::FillEmpty);
        }
        if self.rx_cap - self.rx.len() < n {
            self.dropped += 1;
            return Err(Refused::RxFull);
        }
        // Room and frames are known: each buffer is the front of the fill
        // ring moved to the back of the RX ring, no per-buffer checks.
        let headroom = u64::from(self.headroom);
        if let Some((&last, chained)) = lens.split_last() {
            for &len in chained {
                let addr = self.fill.take_front() + headroom;
                self.rx.push(Desc {
                    addr,
                    len,
                    options: XDP_PKT_CONTD,
                });
            }
            let addr = self.fill.take_front() + headroom;
            self.rx.push(Desc {
                addr,
                len: last,
                options: 0,
            });
        }
        Ok(n)
    }

    /// Whether the "kernel" holds the frame containing `addr` (on the fill
    /// ring, or received and not yet consumed).
    pub fn holds(&self, addr: u64) -> bool {
        let frame = addr / u64::from(self.frame_size);
        usize::try_from(frame)
            .ok()
            .and_then(|f| self.owned.get(f))
            .copied()
            .unwrap_or(false)
    }

    /// Puts an arbitrary descriptor on the RX ring (a misbehaving kernel).
    pub fn push_raw(&mut self, desc: Desc) {
        self.rx.force_push(desc);
    }

    /// Frames on the fill ring.
    pub fn fill_len(&self) -> usize {
        self.fill.len()
    }

    /// Descriptors waiting on the RX ring.
    pub fn rx_len(&self) -> usize {
        self.rx.len()
    }

    /// Frames the "kernel" holds: on the fill ring or received and not yet
    /// consumed.
    pub fn owned_frames(&self) -> usize {
        self.owned_count
    }

    /// Calls to [`RxPort::wake`].
    pub fn wakes(&self) -> u64 {
        self.wakes
    }

    /// Frames [`Self::deliver`] refused.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }
}

impl RxPort for MemRx {
    fn receive(&mut self, out: &mut [Desc]) -> usize {
        // Whole packets only: up to the end of the last chain that fits.
        let max = out.len().min(self.rx.len());
        let Some(n) = (0..max).rev().find(|&i| !self.rx.get(i).continues()) else {
            return 0;
        };
        let out = &mut out[..n + 1];
        self.rx.pop_into(out);
        for d in out.iter() {
            let frame = (d.addr / u64::from(self.frame_size)) as usize;
            if let Some(owned) = self.owned.get_mut(frame)
                && *owned
            {
                *owned = false;
                self.owned_count -= 1;
            }
        }
        out.len()
    }

    fn fill(&mut self, frames: &[u64]) -> usize {
        let n = frames.len().min(self.fill.room());
        let fs = u64::from(self.frame_size);
        // Into the ring in contiguous runs: its cursor is not recomputed
        // per frame.
        let mut rest = &frames[..n];
        while !rest.is_empty() {
            let run = self.fill.free_run(rest.len());
            let k = run.len();
            for (slot, &addr) in run.iter_mut().zip(rest) {
                let frame = addr / fs;
                let f = frame as usize;
                if f >= self.owned.len() {
                    self.owned.resize(f + 1, false);
                }
                assert!(
                    !self.owned[f],
                    "frame {frame} filled while the kernel already holds it"
                );
                self.owned[f] = true;
                *slot = frame * fs;
            }
            self.fill.len += k;
            self.owned_count += k;
            rest = &rest[k..];
        }
        n
    }

    fn wake(&mut self) {
        self.wakes += 1;
    }
}

/// One egress socket: TX ring, the wire, completion ring.
#[derive(Debug)]
pub struct MemTx {
    tx: Fifo<Desc>,
    /// Flushed descriptors not yet taken by [`Self::take`].
    wire: VecDeque<Desc>,
    /// Addresses taken off the wire and not completed yet.
    in_flight: Vec<u64>,
    comp: Fifo<u64>,
    refuse: bool,
    auto_complete: bool,
    flush_budget: Option<usize>,
    flushes: u64,
    transmitted: u64,
}

impl MemTx {
    /// A TX ring of `tx_cap` and a completion ring of `comp_cap` entries.
    pub fn new(tx_cap: usize, comp_cap: usize) -> Self {
        Self {
            tx: Fifo::new(tx_cap),
            wire: VecDeque::new(),
            in_flight: Vec::new(),
            comp: Fifo::new(comp_cap),
            refuse: false,
            auto_complete: false,
            flush_budget: None,
            flushes: 0,
            transmitted: 0,
        }
    }

    /// While set, [`TxPort::transmit`] takes nothing (a link that is gone).
    pub fn set_refuse(&mut self, refuse: bool) {
        self.refuse = refuse;
    }

    /// While set, [`TxPort::flush`] sends and completes at once (completion
    /// ring room permitting), as a fast NIC would: for benchmarks.
    pub fn set_auto_complete(&mut self, on: bool) {
        self.auto_complete = on;
    }

    /// At most this many descriptors leave the TX ring per flush, as in
    /// copy mode (32 per system call); `None`: all of them.
    pub fn set_flush_budget(&mut self, budget: Option<usize>) {
        self.flush_budget = budget;
    }

    /// Takes the next flushed packet off the wire: its chain of descriptors,
    /// now in flight until [`Self::complete`] returns their addresses.
    pub fn take(&mut self) -> Option<Vec<Desc>> {
        let len = self.wire.iter().position(|d| !d.continues())? + 1;
        let chain: Vec<Desc> = self.wire.drain(..len).collect();
        self.in_flight.extend(chain.iter().map(|d| d.addr));
        Some(chain)
    }

    /// Takes every flushed packet off the wire.
    pub fn take_all(&mut self) -> Vec<Vec<Desc>> {
        std::iter::from_fn(|| self.take()).collect()
    }

    /// Puts the addresses of taken descriptors on the completion ring, in
    /// the given order; returns how many fit (the rest stay in flight).
    /// Panics on an address that is not in flight.
    pub fn complete(&mut self, addrs: &[u64]) -> usize {
        let n = addrs.len().min(self.comp.room());
        for &addr in &addrs[..n] {
            let i = self
                .in_flight
                .iter()
                .position(|&a| a == addr)
                .unwrap_or_else(|| panic!("completing {addr:#x}, which is not in flight"));
            self.in_flight.swap_remove(i);
            self.comp.push(addr);
        }
        n
    }

    /// Puts any address on the completion ring (a misbehaving kernel).
    pub fn push_raw_completion(&mut self, addr: u64) {
        self.comp.force_push(addr);
    }

    /// Completes every descriptor of `chain` (see [`Self::complete`]).
    pub fn complete_chain(&mut self, chain: &[Desc]) -> usize {
        let addrs: Vec<u64> = chain.iter().map(|d| d.addr).collect();
        self.complete(&addrs)
    }

    /// Descriptors waiting on the TX ring (not flushed).
    pub fn tx_len(&self) -> usize {
        self.tx.len()
    }

    /// Descriptors flushed and not taken.
    pub fn wire_len(&self) -> usize {
        self.wire.len()
    }

    /// Descriptors taken and not completed.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Addresses on the completion ring, not yet reaped.
    pub fn comp_len(&self) -> usize {
        self.comp.len()
    }

    /// Calls to [`TxPort::flush`].
    pub fn flushes(&self) -> u64 {
        self.flushes
    }

    /// Descriptors accepted by [`TxPort::transmit`] since creation.
    pub fn transmitted(&self) -> u64 {
        self.transmitted
    }
}

impl TxPort for MemTx {
    fn tx_free(&mut self) -> usize {
        if self.refuse { 0 } else { self.tx.room() }
    }

    fn transmit(&mut self, descs: &[Desc]) -> usize {
        if self.refuse {
            return 0;
        }
        let room = self.tx.room().min(descs.len());
        // Whole packets only: stop at the end of the last chain that fits.
        let n = descs[..room]
            .iter()
            .rposition(|d| !d.continues())
            .map_or(0, |i| i + 1);
        self.tx.push_slice(&descs[..n]);
        self.transmitted += n as u64;
        n
    }

    fn flush(&mut self) {
        self.flushes += 1;
        let mut n = self.flush_budget.unwrap_or(usize::MAX).min(self.tx.len());
        if self.auto_complete {
            // The wire is a queue: what waits there completes first.
            while self.comp.room() > 0 {
                let Some(d) = self.wire.pop_front() else {
                    break;
                };
                self.comp.push(d.addr);
            }
            if self.wire.is_empty() {
                // Straight from the TX ring to the completion ring, one
                // contiguous run of both at a time.
                let mut direct = n.min(self.comp.room());
                n -= direct;
                while direct > 0 {
                    let (run, _) = self.tx.as_slices();
                    let dst = self.comp.free_run(direct.min(run.len()));
                    let k = dst.len();
                    for (a, d) in dst.iter_mut().zip(run) {
                        *a = d.addr;
                    }
                    self.comp.len += k;
                    self.tx.discard(k);
                    direct -= k;
                }
            }
        }
        for _ in 0..n {
            let d = self.tx.get(0);
            self.tx.discard(1);
            self.wire.push_back(d);
        }
    }

    fn completions(&mut self, out: &mut [u64]) -> usize {
        let n = out.len().min(self.comp.len());
        self.comp.pop_into(&mut out[..n]);
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fixed-array FIFO against a `VecDeque`, across wrap-arounds.
    #[test]
    fn fifo_matches_a_vecdeque() {
        let mut f = Fifo::<u64>::new(7);
        let mut model = VecDeque::new();
        let mut next = 0u64;
        for round in 0..200usize {
            let push = (round * 5) % 8;
            let k = push.min(f.room());
            let items: Vec<u64> = (next..next + k as u64).collect();
            next += k as u64;
            match round % 3 {
                0 => f.push_slice(&items),
                1 => items.iter().for_each(|&x| f.push(x)),
                _ => {
                    let mut left = k;
                    let mut it = items.iter();
                    while left > 0 {
                        let run = f.free_run(left);
                        let m = run.len();
                        assert!(m > 0);
                        for (slot, &x) in run.iter_mut().zip(it.by_ref()) {
                            *slot = x;
                        }
                        f.len += m;
                        left -= m;
                    }
                }
            }
            model.extend(&items);
            assert_eq!(f.len(), model.len());
            for (i, &m) in model.iter().enumerate() {
                assert_eq!(f.get(i), m);
            }
            let pop = (round * 3) % 6;
            let k = pop.min(f.len());
            let mut out = vec![0; k];
            if round % 2 == 0 {
                f.pop_into(&mut out);
            } else {
                for (i, o) in out.iter_mut().enumerate() {
                    *o = if i % 2 == 0 {
                        f.pop().unwrap()
                    } else {
                        f.take_front()
                    };
                }
            }
            let expected: Vec<u64> = model.drain(..k).collect();
            assert_eq!(out, expected);
        }
        f.force_push(1);
        for _ in 0..10 {
            f.force_push(2);
        }
        assert_eq!(f.len(), model.len() + 11);
    }

    /// Auto-complete hands out completions in wire order, also when the
    /// completion ring fills and the rest waits on the wire.
    #[test]
    fn auto_complete_keeps_wire_order() {
        let mut tx = MemTx::new(16, 5);
        tx.set_auto_complete(true);
        let descs: Vec<Desc> = (0..12u64)
            .map(|i| Desc {
                addr: i * 64,
                len: 10,
                options: 0,
            })
            .collect();
        assert_eq!(tx.transmit(&descs), 12);
        tx.flush();
        let mut out = [0u64; 16];
        let mut seen = Vec::new();
        for _ in 0..4 {
            let n = tx.completions(&mut out);
            seen.extend_from_slice(&out[..n]);
            tx.flush();
        }
        let expected: Vec<u64> = descs.iter().map(|d| d.addr).collect();
        assert_eq!(seen, expected);
        assert_eq!(tx.wire_len(), 0);
    }
}
