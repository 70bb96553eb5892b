//! AF_XDP sockets over one shared UMEM, written directly against the
//! kernel ABI (`linux/if_xdp.h`): the only module with `unsafe` ring and
//! UMEM code.
//!
//! Contract: [`XskUmem::new`] maps the packet memory (frames of
//! [`FRAME_SIZE`] bytes, the largest chunk the kernel accepts) and
//! registers it on an owner socket. [`XskUmem::bind_rx`] binds that owner
//! socket to the ingress queue with `XDP_USE_SG` and `XDP_USE_NEED_WAKEUP`,
//! asking for zero-copy first and falling back to copy mode on `EOPNOTSUPP`
//! (logged once, kept as [`BindMode`]); it yields the [`RxSocket`] (RX +
//! fill rings) and, on request, a [`TxSocket`] on the same queue.
//! [`XskUmem::bind_tx`] then adds TX-only sockets on other interfaces with
//! `XDP_SHARED_UMEM`, each with its own completion ring (and an unused fill
//! ring, which the kernel requires). The sockets implement the engine's
//! [`RxPort`]/[`TxPort`] and the UMEM its [`Umem`]; ring operations move
//! whole packets only (chains linked by `XDP_PKT_CONTD`), never allocate,
//! never log and never fail: trouble is counted. Descriptor addresses may
//! point anywhere inside a frame (a header slot, a payload offset).
//!
//! Wakeups: by default the sockets follow `need_wakeup` (a `recvfrom` or
//! `sendto` only when the kernel's ring flag asks for one; copy-mode TX
//! always asks). [`RxSocket::set_busy_poll`] / [`TxSocket::set_busy_poll`]
//! switch a socket to preferred busy polling instead (`SO_PREFER_BUSY_POLL`,
//! `SO_BUSY_POLL`, `SO_BUSY_POLL_BUDGET`; opt-in: `[engine] busy_poll_us`):
//! the RX side then calls `recvfrom` on every [`RxPort::wake`], which runs
//! the ingress queue's NAPI poll in the caller's thread, and the TX side
//! kicks whenever descriptors are pending, flags or not.
//!
//! Not here: which frames are free, references per frame, and when to
//! refill: that is the engine's accounting.
#![allow(unsafe_code)]

mod ring;
pub mod sys;

use std::fmt;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::Arc;

use crate::xdp::worker::ring::{Desc, RxPort, TxPort, Umem};
pub use ring::{ConsumerRing, Layout, ProducerRing, ReadBatch, WriteBatch};
use sys::Mmap;

/// Bytes per UMEM frame: the kernel refuses chunks above the page size.
pub const FRAME_SIZE: u32 = 4096;

/// Errors of socket and UMEM set-up, naming the call, interface and queue.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("AF_XDP {call} failed (ifindex {ifindex}, queue {queue}): {source}")]
    Sys {
        call: &'static str,
        ifindex: u32,
        queue: u32,
        #[source]
        source: io::Error,
    },
    #[error("UMEM {call} failed ({frames} frames of {frame_size} bytes): {source}")]
    Umem {
        call: &'static str,
        frames: u32,
        frame_size: u32,
        #[source]
        source: io::Error,
    },
    #[error("invalid AF_XDP setting {what}: {value} ({reason})")]
    Config {
        what: &'static str,
        value: u64,
        reason: &'static str,
    },
    #[error("the UMEM's owner socket is {0}")]
    State(&'static str),
}

/// How the owner socket was bound (every shared socket inherits it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BindMode {
    /// `XDP_ZEROCOPY`: the NIC DMAs into the UMEM.
    ZeroCopy,
    /// `XDP_COPY`: the kernel copies between skb/xdp buffers and the UMEM.
    Copy,
}

impl fmt::Display for BindMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BindMode::ZeroCopy => "zero-copy",
            BindMode::Copy => "copy",
        })
    }
}

/// Entries per ring (each a power of two), and what a TX socket's wakeup
/// sends in copy mode.
#[derive(Debug, Clone, Copy)]
pub struct RingSizes {
    pub fill: u32,
    pub completion: u32,
    pub rx: u32,
    pub tx: u32,
    /// TX descriptors one copy-mode wakeup sends (`XDP_MAX_TX_SKB_BUDGET`):
    /// `None` the whole TX ring, `Some(0)` the kernel's own
    /// [`KERNEL_TX_BUDGET`], else that many (at least 32, at most the ring).
    pub tx_budget: Option<u32>,
}

impl Default for RingSizes {
    fn default() -> Self {
        RingSizes {
            fill: 2048,
            completion: 2048,
            rx: 2048,
            tx: 2048,
            tx_budget: None,
        }
    }
}

impl RingSizes {
    fn check(&self) -> Result<(), Error> {
        for (what, v) in [
            ("fill ring size", self.fill),
            ("completion ring size", self.completion),
            ("rx ring size", self.rx),
            ("tx ring size", self.tx),
        ] {
            if !v.is_power_of_two() {
                return Err(Error::Config {
                    what,
                    value: v.into(),
                    reason: "must be a power of two",
                });
            }
        }
        Ok(())
    }
}

/// The bound owner socket.
#[derive(Debug)]
struct Owner {
    fd: Arc<OwnedFd>,
    ifindex: u32,
    queue: u32,
    mode: BindMode,
}

/// The packet memory shared by the sockets of one engine worker.
#[derive(Debug)]
pub struct XskUmem {
    mem: Mmap,
    frame_count: u32,
    /// The socket the UMEM is registered on, until it is bound.
    unbound: Option<OwnedFd>,
    owner: Option<Owner>,
}

impl XskUmem {
    /// Maps `frame_count` frames of [`FRAME_SIZE`] bytes and registers them
    /// (`XDP_UMEM_REG`, aligned chunks, no headroom) on a new AF_XDP socket.
    pub fn new(frame_count: u32) -> Result<XskUmem, Error> {
        let fail = |call, source| Error::Umem {
            call,
            frames: frame_count,
            frame_size: FRAME_SIZE,
            source,
        };
        if frame_count == 0 {
            return Err(Error::Config {
                what: "frame count",
                value: 0,
                reason: "must be at least 1",
            });
        }
        let len = frame_count as usize * FRAME_SIZE as usize;
        let mem = Mmap::anonymous(len).map_err(|e| fail("mmap", e))?;
        let fd = sys::xsk_socket().map_err(|e| fail("socket(AF_XDP)", e))?;
        let reg = libc::xdp_umem_reg {
            addr: mem.as_ptr() as u64,
            len: len as u64,
            chunk_size: FRAME_SIZE,
            headroom: 0,
            flags: 0,
            tx_metadata_len: 0,
        };
        sys::set_opt(fd.as_fd(), libc::XDP_UMEM_REG, &reg)
            .map_err(|e| fail("setsockopt(XDP_UMEM_REG)", e))?;
        Ok(XskUmem {
            mem,
            frame_count,
            unbound: Some(fd),
            owner: None,
        })
    }

    /// The rung reached by [`bind_rx`](Self::bind_rx), once bound.
    pub fn mode(&self) -> Option<BindMode> {
        self.owner.as_ref().map(|o| o.mode)
    }

    /// Binds the owner socket to `queue` of interface `ifindex` for
    /// receiving (RX + fill rings), with `XDP_USE_SG` and need_wakeup;
    /// zero-copy first, copy on `EOPNOTSUPP`. With `with_tx`, the same
    /// socket also gets a TX ring, returned as a [`TxSocket`] that owns the
    /// UMEM's completion ring. Call once, before [`bind_tx`](Self::bind_tx).
    pub fn bind_rx(
        &mut self,
        ifindex: u32,
        queue: u32,
        sizes: RingSizes,
        with_tx: bool,
    ) -> Result<(RxSocket, Option<TxSocket>), Error> {
        sizes.check()?;
        let fd = self.unbound.take().ok_or(Error::State("already bound"))?;
        let sys_err = |call, source| Error::Sys {
            call,
            ifindex,
            queue,
            source,
        };
        let rings = Rings::create(fd.as_fd(), sizes, true, true, with_tx)
            .map_err(|(call, e)| sys_err(call, e))?;
        let base = libc::XDP_USE_SG | libc::XDP_USE_NEED_WAKEUP;
        let mode = match sys::bind(fd.as_fd(), ifindex, queue, base | libc::XDP_ZEROCOPY, None) {
            Ok(()) => {
                log::info!("AF_XDP ifindex {ifindex} queue {queue}: zero-copy");
                BindMode::ZeroCopy
            }
            Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => {
                sys::bind(fd.as_fd(), ifindex, queue, base | libc::XDP_COPY, None)
                    .map_err(|e| sys_err("bind(XDP_COPY)", e))?;
                log::info!(
                    "AF_XDP ifindex {ifindex} queue {queue}: copy mode (zero-copy refused: {e})"
                );
                BindMode::Copy
            }
            Err(e) => {
                self.unbound = Some(fd);
                return Err(sys_err("bind(XDP_ZEROCOPY)", e));
            }
        };
        let fd = Arc::new(fd);
        self.owner = Some(Owner {
            fd: fd.clone(),
            ifindex,
            queue,
            mode,
        });
        let Rings { fill, comp, rx, tx } = rings;
        let rx_socket = RxSocket {
            fd: fd.clone(),
            rx: rx.expect("rx ring requested"),
            fill: fill.expect("fill ring requested"),
            stats: RxStats::default(),
            busy_poll: Wakeups::default(),
        };
        let tx_socket = tx.map(|tx| TxSocket {
            budget: raise_tx_budget(fd.as_fd(), &sizes),
            fd,
            tx,
            comp: comp.expect("completion ring requested"),
            _fill: None,
            stats: TxStats::default(),
            zero_copy: mode == BindMode::ZeroCopy,
            busy_poll: Wakeups::default(),
        });
        Ok((rx_socket, tx_socket))
    }

    /// A TX-only socket on `queue` of another interface, sharing this UMEM
    /// (`XDP_SHARED_UMEM`; it inherits the owner's mode and `XDP_USE_SG`)
    /// with its own completion ring.
    pub fn bind_tx(&self, ifindex: u32, queue: u32, sizes: RingSizes) -> Result<TxSocket, Error> {
        sizes.check()?;
        let owner = self.owner.as_ref().ok_or(Error::State("not bound yet"))?;
        if (owner.ifindex, owner.queue) == (ifindex, queue) {
            return Err(Error::State(
                "on that queue already: ask bind_rx for its TX ring instead",
            ));
        }
        let sys_err = |call, source| Error::Sys {
            call,
            ifindex,
            queue,
            source,
        };
        let fd = sys::xsk_socket().map_err(|e| sys_err("socket(AF_XDP)", e))?;
        let rings = Rings::create(fd.as_fd(), sizes, true, false, true)
            .map_err(|(call, e)| sys_err(call, e))?;
        sys::bind(
            fd.as_fd(),
            ifindex,
            queue,
            libc::XDP_SHARED_UMEM,
            Some(owner.fd.as_fd()),
        )
        .map_err(|e| sys_err("bind(XDP_SHARED_UMEM)", e))?;
        let Rings { fill, comp, tx, .. } = rings;
        Ok(TxSocket {
            budget: raise_tx_budget(fd.as_fd(), &sizes),
            fd: Arc::new(fd),
            tx: tx.expect("tx ring requested"),
            comp: comp.expect("completion ring requested"),
            _fill: fill,
            stats: TxStats::default(),
            zero_copy: owner.mode == BindMode::ZeroCopy,
            busy_poll: Wakeups::default(),
        })
    }

    fn check_range(&self, addr: u64, len: u32) -> usize {
        let start = addr as usize;
        let end = start + len as usize;
        assert!(
            end <= self.mem.len(),
            "UMEM range {addr}+{len} outside {} bytes",
            self.mem.len()
        );
        debug_assert!(
            len == 0 || start / FRAME_SIZE as usize == (end - 1) / FRAME_SIZE as usize,
            "UMEM range {addr}+{len} crosses a frame boundary"
        );
        start
    }
}

impl Umem for XskUmem {
    fn frame_size(&self) -> u32 {
        FRAME_SIZE
    }

    fn frame_count(&self) -> u32 {
        self.frame_count
    }

    fn bytes(&self, addr: u64, len: u32) -> &[u8] {
        let start = self.check_range(addr, len);
        // SAFETY: the range lies inside the mapping (checked above), which
        // lives as long as `self`. By the ring protocol a range the engine
        // reads belongs to userspace (received, or not handed to the kernel),
        // so the kernel does not write it meanwhile.
        unsafe { std::slice::from_raw_parts(self.mem.as_ptr().add(start), len as usize) }
    }

    fn bytes_mut(&mut self, addr: u64, len: u32) -> &mut [u8] {
        let start = self.check_range(addr, len);
        // SAFETY: as in `bytes`; `&mut self` makes this the only Rust
        // reference into the UMEM.
        unsafe { std::slice::from_raw_parts_mut(self.mem.as_ptr().add(start), len as usize) }
    }
}

/// The rings of one socket, mapped after their sizes were set.
struct Rings {
    fill: Option<ProducerRing<u64>>,
    comp: Option<ConsumerRing<u64>>,
    rx: Option<ConsumerRing<Desc>>,
    tx: Option<ProducerRing<Desc>>,
}

impl Rings {
    /// Sets the ring sizes on `fd` (`setsockopt`), reads their offsets and
    /// maps them. Fill and completion rings always come together.
    fn create(
        fd: BorrowedFd<'_>,
        sizes: RingSizes,
        umem_rings: bool,
        rx: bool,
        tx: bool,
    ) -> Result<Rings, (&'static str, io::Error)> {
        if umem_rings {
            sys::set_opt(fd, libc::XDP_UMEM_FILL_RING, &sizes.fill)
                .map_err(|e| ("setsockopt(XDP_UMEM_FILL_RING)", e))?;
            sys::set_opt(fd, libc::XDP_UMEM_COMPLETION_RING, &sizes.completion)
                .map_err(|e| ("setsockopt(XDP_UMEM_COMPLETION_RING)", e))?;
        }
        if rx {
            sys::set_opt(fd, libc::XDP_RX_RING, &sizes.rx)
                .map_err(|e| ("setsockopt(XDP_RX_RING)", e))?;
        }
        if tx {
            sys::set_opt(fd, libc::XDP_TX_RING, &sizes.tx)
                .map_err(|e| ("setsockopt(XDP_TX_RING)", e))?;
        }
        let off = sys::mmap_offsets(fd).map_err(|e| ("getsockopt(XDP_MMAP_OFFSETS)", e))?;
        let map = |o: &libc::xdp_ring_offset, n: u32, entry: usize, pgoff: u64, call| {
            let len = o.desc as usize + n as usize * entry;
            Mmap::ring(fd, len, pgoff)
                .map(|m| (Arc::new(m), Layout::from(o)))
                .map_err(|e| (call, e))
        };
        let mut rings = Rings {
            fill: None,
            comp: None,
            rx: None,
            tx: None,
        };
        if umem_rings {
            let (m, l) = map(
                &off.fr,
                sizes.fill,
                8,
                libc::XDP_UMEM_PGOFF_FILL_RING,
                "mmap(fill ring)",
            )?;
            // SAFETY: the kernel laid this mapping out as `off.fr` says, with
            // `sizes.fill` u64 entries (the size we set above).
            rings.fill = Some(unsafe { ProducerRing::new(m, l, sizes.fill) });
            let (m, l) = map(
                &off.cr,
                sizes.completion,
                8,
                libc::XDP_UMEM_PGOFF_COMPLETION_RING,
                "mmap(completion ring)",
            )?;
            // SAFETY: as above, `off.cr` and `sizes.completion` u64 entries.
            rings.comp = Some(unsafe { ConsumerRing::new(m, l, sizes.completion) });
        }
        if rx {
            let (m, l) = map(
                &off.rx,
                sizes.rx,
                size_of::<Desc>(),
                libc::XDP_PGOFF_RX_RING as u64,
                "mmap(rx ring)",
            )?;
            // SAFETY: `off.rx`, `sizes.rx` entries of `struct xdp_desc`, whose
            // layout `Desc` repeats (`#[repr(C)]` u64, u32, u32).
            rings.rx = Some(unsafe { ConsumerRing::new(m, l, sizes.rx) });
        }
        if tx {
            let (m, l) = map(
                &off.tx,
                sizes.tx,
                size_of::<Desc>(),
                libc::XDP_PGOFF_TX_RING as u64,
                "mmap(tx ring)",
            )?;
            // SAFETY: `off.tx`, `sizes.tx` entries of `struct xdp_desc`.
            rings.tx = Some(unsafe { ProducerRing::new(m, l, sizes.tx) });
        }
        Ok(rings)
    }
}

/// Preferred busy polling of a socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BusyPoll {
    /// `SO_BUSY_POLL`: non-zero enables busy polling on the socket (a
    /// non-blocking `recvfrom` polls the NAPI once whatever the value);
    /// the engine also spins this long on an idle ring before it sleeps.
    pub usecs: u32,
    /// `SO_BUSY_POLL_BUDGET`: packets per busy NAPI poll (kernel default 8).
    pub budget: u16,
}

impl BusyPoll {
    /// Busy polling of `usecs` microseconds (`None` when 0: off) with
    /// `budget` packets per poll, `default_budget` when none is given (never
    /// 0). The engine's `[engine] busy_poll_us` and `busy_poll_budget`.
    pub fn new(usecs: u32, budget: Option<u16>, default_budget: u16) -> Option<Self> {
        let budget = budget.filter(|&b| b > 0).unwrap_or(default_budget.max(1));
        (usecs > 0).then_some(BusyPoll { usecs, budget })
    }
}

impl fmt::Display for BusyPoll {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "preferred busy polling (SO_BUSY_POLL {} us, SO_BUSY_POLL_BUDGET {})",
            self.usecs, self.budget
        )
    }
}

/// A busy-polling option the kernel refused.
#[derive(Debug, thiserror::Error)]
#[error("setsockopt({call}): {source}")]
pub struct BusyPollRefused {
    pub call: &'static str,
    #[source]
    pub source: io::Error,
}

/// Sets the three busy-polling options on `fd`; on a refusal, turns busy
/// polling off again (best effort) so that the socket stays on
/// `need_wakeup`, and says which option failed.
fn apply_busy_poll(fd: BorrowedFd<'_>, bp: BusyPoll) -> Result<(), BusyPollRefused> {
    let usecs = bp.usecs.min(i32::MAX as u32) as libc::c_int;
    let steps = [
        ("SO_PREFER_BUSY_POLL", libc::SO_PREFER_BUSY_POLL, 1),
        ("SO_BUSY_POLL", libc::SO_BUSY_POLL, usecs),
        (
            "SO_BUSY_POLL_BUDGET",
            libc::SO_BUSY_POLL_BUDGET,
            libc::c_int::from(bp.budget),
        ),
    ];
    for (call, opt, value) in steps {
        if let Err(source) = sys::set_socket_opt(fd, opt, value) {
            clear_busy_poll(fd);
            return Err(BusyPollRefused { call, source });
        }
    }
    Ok(())
}

/// Turns busy polling off again on `fd` (best effort: a socket whose
/// options cannot be reset only keeps polling nothing in its system calls).
fn clear_busy_poll(fd: BorrowedFd<'_>) {
    let _ = sys::set_socket_opt(fd, libc::SO_BUSY_POLL, 0);
    let _ = sys::set_socket_opt(fd, libc::SO_PREFER_BUSY_POLL, 0);
}

/// The wakeup strategy of one socket: `need_wakeup` (`None`), or the
/// preferred busy polling in force.
#[derive(Debug, Default, Clone, Copy)]
struct Wakeups(Option<BusyPoll>);

impl Wakeups {
    fn set(&mut self, fd: BorrowedFd<'_>, bp: BusyPoll) -> Result<(), BusyPollRefused> {
        apply_busy_poll(fd, bp)?;
        self.0 = Some(bp);
        Ok(())
    }

    fn clear(&mut self, fd: BorrowedFd<'_>) {
        if self.0.take().is_some() {
            clear_busy_poll(fd);
        }
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sockets_and_umem_move_to_worker_threads() {
        fn send<T: Send>() {}
        send::<XskUmem>();
        send::<RxSocket>();
        send::<TxSocket>();
    }

    #[test]
    fn ring_sizes_must_be_powers_of_two() {
        let bad = RingSizes {
            tx: 1000,
            ..RingSizes::default()
        };
        let e = bad.check().unwrap_err();
        assert!(e.to_string().contains("tx ring size: 1000"), "{e}");
        RingSizes::default().check().unwrap();
    }

    #[test]
    fn busy_poll_is_opt_in() {
        assert_eq!(BusyPoll::new(0, None, 64), None);
        assert_eq!(BusyPoll::new(0, Some(16), 64), None);
        assert_eq!(
            BusyPoll::new(50, None, 64),
            Some(BusyPoll {
                usecs: 50,
                budget: 64
            })
        );
        assert_eq!(
            BusyPoll::new(20, Some(16), 64),
            Some(BusyPoll {
                usecs: 20,
                budget: 16
            })
        );
        // A zero budget falls back to the default, never to 0.
        assert_eq!(BusyPoll::new(20, Some(0), 0).unwrap().budget, 1);
    }

    #[test]
    fn busy_poll_options_are_set_and_cleared_on_an_xsk_socket() {
        if !crate::lab::privileged("busy_poll_options_are_set_and_cleared_on_an_xsk_socket") {
            return;
        }
        let fd = sys::xsk_socket().unwrap();
        let get = |opt| {
            sys::get_socket_opt(fd.as_fd(), opt).unwrap_or_else(|e| panic!("getsockopt {opt}: {e}"))
        };
        let bp = BusyPoll {
            usecs: 50,
            budget: 16,
        };
        apply_busy_poll(fd.as_fd(), bp).unwrap();
        assert_eq!(get(libc::SO_PREFER_BUSY_POLL), 1);
        assert_eq!(get(libc::SO_BUSY_POLL), 50);
        // SO_BUSY_POLL_BUDGET cannot be read back (ENOPROTOOPT).
        clear_busy_poll(fd.as_fd());
        assert_eq!(get(libc::SO_PREFER_BUSY_POLL), 0);
        assert_eq!(get(libc::SO_BUSY_POLL), 0);
        // Unbound, it has no NAPI: what the engine checks before it keeps
        // busy polling.
        assert_eq!(get(libc::SO_INCOMING_NAPI_ID), 0);
    }
}
