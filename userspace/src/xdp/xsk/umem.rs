//! The packet memory of one engine worker and the binding of its sockets:
//! [`XskUmem`] maps the frames, registers them on an owner socket, binds it
//! to the ingress queue (zero-copy asked, copy taken when refused) and adds
//! TX sockets on other interfaces that share it; it is the worker's
//! [`Umem`]. `Rings` maps the rings of one socket.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Arc;

use super::ring::{ConsumerRing, Layout, MappedRing, ProducerRing};
use super::setup::{BindMode, Error, FRAME_SIZE, RingSizes};
use super::socket::{RxSocket, TxSocket};
use super::sys::{self, Mmap};
use crate::xdp::worker::ring::{Desc, Umem};

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
        let rx_socket = RxSocket::new(
            fd.clone(),
            rx.expect("rx ring requested"),
            fill.expect("fill ring requested"),
        );
        let tx_socket = tx.map(|tx| {
            let comp = comp.expect("completion ring requested");
            TxSocket::new(fd, tx, comp, None, &sizes, mode == BindMode::ZeroCopy)
        });
        Ok((rx_socket, tx_socket))
    }

    /// A TX-only socket on `queue` of another interface, sharing this UMEM
    /// (`XDP_SHARED_UMEM`; it inherits the owner's mode and `XDP_USE_SG`)
    /// with its own completion ring, on `fd` from [`open_socket`] (so that a
    /// thread without `CAP_NET_RAW`, a running worker, binds what one with
    /// it opened).
    pub fn bind_tx(
        &self,
        fd: OwnedFd,
        ifindex: u32,
        queue: u32,
        sizes: RingSizes,
    ) -> Result<TxSocket, Error> {
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
        Ok(TxSocket::new(
            Arc::new(fd),
            tx.expect("tx ring requested"),
            comp.expect("completion ring requested"),
            fill,
            &sizes,
            owner.mode == BindMode::ZeroCopy,
        ))
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

/// An AF_XDP socket for [`XskUmem::bind_tx`] (`ifindex` and `queue` name
/// it in the error). Needs `CAP_NET_RAW`.
pub fn open_socket(ifindex: u32, queue: u32) -> Result<OwnedFd, Error> {
    sys::xsk_socket().map_err(|source| Error::Sys {
        call: "socket(AF_XDP)",
        ifindex,
        queue,
        source,
    })
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
        for (wanted, opt, size, call) in [
            (
                umem_rings,
                libc::XDP_UMEM_FILL_RING,
                sizes.fill,
                "setsockopt(XDP_UMEM_FILL_RING)",
            ),
            (
                umem_rings,
                libc::XDP_UMEM_COMPLETION_RING,
                sizes.completion,
                "setsockopt(XDP_UMEM_COMPLETION_RING)",
            ),
            (rx, libc::XDP_RX_RING, sizes.rx, "setsockopt(XDP_RX_RING)"),
            (tx, libc::XDP_TX_RING, sizes.tx, "setsockopt(XDP_TX_RING)"),
        ] {
            if wanted {
                sys::set_opt(fd, opt, &size).map_err(|e| (call, e))?;
            }
        }
        let off = sys::mmap_offsets(fd).map_err(|e| ("getsockopt(XDP_MMAP_OFFSETS)", e))?;
        let fill = umem_rings.then(|| {
            map_ring(
                fd,
                &off.fr,
                sizes.fill,
                libc::XDP_UMEM_PGOFF_FILL_RING,
                "mmap(fill ring)",
            )
        });
        let comp = umem_rings.then(|| {
            map_ring(
                fd,
                &off.cr,
                sizes.completion,
                libc::XDP_UMEM_PGOFF_COMPLETION_RING,
                "mmap(completion ring)",
            )
        });
        let rx = rx.then(|| {
            map_ring(
                fd,
                &off.rx,
                sizes.rx,
                libc::XDP_PGOFF_RX_RING as u64,
                "mmap(rx ring)",
            )
        });
        let tx = tx.then(|| {
            map_ring(
                fd,
                &off.tx,
                sizes.tx,
                libc::XDP_PGOFF_TX_RING as u64,
                "mmap(tx ring)",
            )
        });
        Ok(Rings {
            fill: fill.transpose()?,
            comp: comp.transpose()?,
            rx: rx.transpose()?,
            tx: tx.transpose()?,
        })
    }
}

/// Maps the ring of `fd` at page offset `pgoff`, laid out as `o` says with
/// `entries` entries of the ring's own entry type (the size set on `fd`
/// before, as [`Rings::create`] does).
fn map_ring<R: MappedRing>(
    fd: BorrowedFd<'_>,
    o: &libc::xdp_ring_offset,
    entries: u32,
    pgoff: u64,
    call: &'static str,
) -> Result<R, (&'static str, io::Error)> {
    let len = o.desc as usize + entries as usize * size_of::<R::Entry>();
    let map = Mmap::ring(fd, len, pgoff).map_err(|e| (call, e))?;
    // SAFETY: the kernel laid this mapping out as `o` (its offsets for this
    // ring) says, with `entries` entries (the size set on `fd`), and it is
    // `len` bytes long, room for `entries` entries of `R::Entry` after
    // `o.desc`. The callers pair each ring with its kernel entry type: `u64`
    // addresses for fill and completion, `struct xdp_desc` (whose layout
    // `Desc` repeats: `#[repr(C)]` u64, u32, u32) for RX and TX.
    Ok(unsafe { R::from_map(Arc::new(map), Layout::from(o), entries) })
}
