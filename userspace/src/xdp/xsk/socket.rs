//! The two sockets the engine sees: [`RxSocket`] (the owner socket's RX
//! and fill rings) and [`TxSocket`] (a TX and a completion ring), as the
//! worker's [`RxPort`] and [`TxPort`]. Ring operations move whole packets
//! only, never allocate, never log and never fail: trouble is counted.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::Arc;

use super::busy_poll::{BusyPoll, BusyPollRefused, Wakeups};
use super::ring::{ConsumerRing, ProducerRing};
use super::setup::RingSizes;
use super::sys;
use crate::xdp::worker::ring::{Desc, RxPort, TxPort};

/// Counters of an [`RxSocket`] (never errors on the hot path).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RxStats {
    /// Wakeup system calls made for the fill ring.
    pub wakeups: u64,
    /// Wakeups that failed with an unexpected error.
    pub wakeup_errors: u64,
}

/// Counters of a [`TxSocket`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TxStats {
    pub wakeups: u64,
    pub wakeup_errors: u64,
}

/// The receive side of the owner socket: its RX ring and the fill ring.
#[derive(Debug)]
pub struct RxSocket {
    fd: Arc<OwnedFd>,
    rx: ConsumerRing<Desc>,
    fill: ProducerRing<u64>,
    stats: RxStats,
    /// Preferred busy polling in force (`None`: `need_wakeup`).
    busy_poll: Wakeups,
}

impl RxSocket {
    /// The owner socket `fd` with its RX and fill rings, on `need_wakeup`.
    pub(super) fn new(fd: Arc<OwnedFd>, rx: ConsumerRing<Desc>, fill: ProducerRing<u64>) -> Self {
        RxSocket {
            fd,
            rx,
            fill,
            stats: RxStats::default(),
            busy_poll: Wakeups::default(),
        }
    }

    /// Switches the socket to preferred busy polling: from now on every
    /// [`RxPort::wake`] calls `recvfrom`, which runs the ingress NAPI poll
    /// in this thread. On a refusal the socket keeps `need_wakeup`.
    pub fn set_busy_poll(&mut self, bp: BusyPoll) -> Result<(), BusyPollRefused> {
        self.busy_poll.set(self.fd.as_fd(), bp)
    }

    /// Preferred busy polling in force, if any.
    pub fn busy_poll(&self) -> Option<BusyPoll> {
        self.busy_poll.0
    }

    /// Back to `need_wakeup` (see [`set_busy_poll`](Self::set_busy_poll)).
    pub fn clear_busy_poll(&mut self) {
        self.busy_poll.clear(self.fd.as_fd());
    }

    /// The NAPI instance busy polling drives (`SO_INCOMING_NAPI_ID`; 0:
    /// none, so a busy poll polls nothing). Linux 6.13+ sets it at bind,
    /// and only for a zero-copy socket on a driver that links its queues
    /// to NAPIs; older kernels set it on the first packet delivered.
    pub fn napi_id(&self) -> io::Result<u32> {
        sys::get_socket_opt(self.fd.as_fd(), libc::SO_INCOMING_NAPI_ID).map(|v| v as u32)
    }

    /// Descriptors ready in the RX ring (chain members counted).
    pub fn available(&mut self) -> usize {
        self.rx.available() as usize
    }

    /// Blocks until the RX ring has descriptors or `timeout` passes (an
    /// idle worker's wait); returns whether it became readable.
    pub fn wait(&self, timeout: std::time::Duration) -> io::Result<bool> {
        let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
        sys::poll_in(self.fd.as_fd(), ms)
    }

    /// Counters of this side.
    pub fn stats(&self) -> RxStats {
        self.stats
    }

    /// The kernel's `XDP_STATISTICS` for the socket (drops, invalid
    /// descriptors, full/empty rings).
    pub fn kernel_stats(&self) -> io::Result<libc::xdp_statistics> {
        sys::statistics(self.fd.as_fd())
    }
}

impl AsFd for RxSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsRawFd for RxSocket {
    /// The socket to insert in the `XSKS` map.
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl RxPort for RxSocket {
    /// Whole packets only: a chain longer than what is left of `out` stays
    /// in the ring for the next call, so `out` must hold at least the
    /// longest chain (the kernel caps one at 18: `MAX_SKB_FRAGS` + 1).
    fn receive(&mut self, out: &mut [Desc]) -> usize {
        let max = out.len().min(u32::MAX as usize) as u32;
        let batch = self.rx.peek(max);
        // Copy up to the end of the last whole packet: a chain the batch
        // cuts stays in the ring for the next call.
        let mut whole = 0;
        for i in 0..batch.len() {
            let d = batch.get(i);
            out[i as usize] = d;
            if !d.continues() {
                whole = i + 1;
            }
        }
        batch.release(whole);
        whole as usize
    }

    fn fill(&mut self, frames: &[u64]) -> usize {
        let mut batch = self
            .fill
            .reserve(frames.len().min(u32::MAX as usize) as u32);
        let n = batch.len();
        for i in 0..n {
            batch.set(i, frames[i as usize]);
        }
        batch.commit(n);
        n as usize
    }

    fn wake(&mut self) {
        // Busy polling: the `recvfrom` is what runs the NAPI poll (the
        // kernel skips its interrupt-driven path while we keep calling).
        if self.busy_poll.0.is_some() || self.fill.needs_wakeup() {
            self.stats.wakeups += 1;
            if sys::wake_rx(self.fd.as_fd()).is_err() {
                self.stats.wakeup_errors += 1;
            }
        }
    }
}

/// `XDP_MAX_TX_SKB_BUDGET` (Linux 6.17+): how many TX descriptors one
/// wakeup of a copy-mode socket sends (the kernel's default is 32). Not
/// in the libc crate yet.
const XDP_MAX_TX_SKB_BUDGET: libc::c_int = 9;
/// The kernel's own per-wakeup TX budget in copy mode (`TX_BATCH_SIZE`).
pub const KERNEL_TX_BUDGET: u32 = 32;
/// Raises the TX budget per wakeup of `fd` to its whole TX ring (or to
/// what [`RingSizes::tx_budget`] asks), so that one `sendto` in copy mode
/// sends what a poll submitted rather than 32 descriptors of it. Returns the
/// budget in force; an older kernel (no such option) keeps 32.
fn raise_tx_budget(fd: BorrowedFd<'_>, sizes: &RingSizes) -> u32 {
    let wanted = match sizes.tx_budget {
        Some(0) => return KERNEL_TX_BUDGET,
        Some(n) => n.clamp(KERNEL_TX_BUDGET, sizes.tx),
        None => sizes.tx,
    };
    match sys::set_opt(fd, XDP_MAX_TX_SKB_BUDGET, &wanted) {
        Ok(()) => wanted,
        Err(e) => {
            log::debug!("XDP_MAX_TX_SKB_BUDGET {wanted}: {e}; the kernel's 32 per wakeup");
            KERNEL_TX_BUDGET
        }
    }
}

/// One transmit socket: its TX ring and its completion ring.
#[derive(Debug)]
pub struct TxSocket {
    fd: Arc<OwnedFd>,
    tx: ProducerRing<Desc>,
    comp: ConsumerRing<u64>,
    /// The fill ring a shared socket on another device must have; unused.
    _fill: Option<ProducerRing<u64>>,
    stats: TxStats,
    /// Descriptors one copy-mode wakeup sends (see [`raise_tx_budget`]).
    budget: u32,
    /// Bound in zero-copy mode (the driver's NAPI sends and completes).
    zero_copy: bool,
    /// Preferred busy polling in force (`None`: `need_wakeup`).
    busy_poll: Wakeups,
}

impl TxSocket {
    /// The bound socket `fd` with its TX and completion rings (and the fill
    /// ring a shared socket must have), on `need_wakeup`, its copy-mode TX
    /// budget raised as `sizes` asks.
    pub(super) fn new(
        fd: Arc<OwnedFd>,
        tx: ProducerRing<Desc>,
        comp: ConsumerRing<u64>,
        fill: Option<ProducerRing<u64>>,
        sizes: &RingSizes,
        zero_copy: bool,
    ) -> Self {
        TxSocket {
            budget: raise_tx_budget(fd.as_fd(), sizes),
            fd,
            tx,
            comp,
            _fill: fill,
            stats: TxStats::default(),
            zero_copy,
            busy_poll: Wakeups::default(),
        }
    }

    /// Switches the socket to preferred busy polling: [`TxPort::flush`]
    /// then kicks whenever descriptors are pending, flag or not, and in
    /// zero-copy mode on every call (the `sendto` runs the driver's NAPI,
    /// which also reaps completions). In copy mode the `sendto` sends as
    /// before; the socket has no NAPI of its own to poll. On a refusal the
    /// socket keeps `need_wakeup`.
    pub fn set_busy_poll(&mut self, bp: BusyPoll) -> Result<(), BusyPollRefused> {
        self.busy_poll.set(self.fd.as_fd(), bp)
    }

    /// Preferred busy polling in force, if any.
    pub fn busy_poll(&self) -> Option<BusyPoll> {
        self.busy_poll.0
    }

    /// Back to `need_wakeup` (see [`set_busy_poll`](Self::set_busy_poll)).
    pub fn clear_busy_poll(&mut self) {
        self.busy_poll.clear(self.fd.as_fd());
    }

    /// Descriptors one wakeup sends in copy mode: the TX ring's size where
    /// the kernel has `XDP_MAX_TX_SKB_BUDGET`, else its default of 32.
    pub fn budget(&self) -> u32 {
        self.budget
    }

    pub fn stats(&self) -> TxStats {
        self.stats
    }

    /// Descriptors in the TX ring the kernel has not taken yet.
    pub fn pending(&self) -> u32 {
        self.tx.pending()
    }

    /// The kernel's `XDP_STATISTICS` for the socket.
    pub fn kernel_stats(&self) -> io::Result<libc::xdp_statistics> {
        sys::statistics(self.fd.as_fd())
    }
}

impl AsFd for TxSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl TxPort for TxSocket {
    /// Every descriptor must have `len > 0` and stay inside its frame: the
    /// kernel skips others and counts them in `tx_invalid_descs`.
    fn tx_free(&mut self) -> usize {
        self.tx.free() as usize
    }

    fn transmit(&mut self, descs: &[Desc]) -> usize {
        let mut batch = self.tx.reserve(descs.len().min(u32::MAX as usize) as u32);
        let mut whole = 0;
        for i in 0..batch.len() {
            let d = descs[i as usize];
            batch.set(i, d);
            if !d.continues() {
                whole = i + 1;
            }
        }
        batch.commit(whole);
        whole as usize
    }

    fn flush(&mut self) {
        // Copy mode sends only from the system call (`budget` descriptors
        // per call); zero-copy drivers clear the flag while they poll the
        // ring. Busy polling ignores the flag: the system call drives the
        // NAPI (zero-copy: also for completions, so every call).
        let kick = match self.busy_poll.0 {
            Some(_) if self.zero_copy => true,
            Some(_) => self.tx.pending() > 0,
            None => self.tx.pending() > 0 && self.tx.needs_wakeup(),
        };
        if kick {
            self.stats.wakeups += 1;
            if sys::wake_tx(self.fd.as_fd()).is_err() {
                self.stats.wakeup_errors += 1;
            }
        }
    }

    fn completions(&mut self, out: &mut [u64]) -> usize {
        let batch = self.comp.peek(out.len().min(u32::MAX as usize) as u32);
        let n = batch.len();
        for i in 0..n {
            out[i as usize] = batch.get(i);
        }
        batch.release(n);
        n as usize
    }
}
