//! The seam between the engine and the kernel: AF_XDP rings and UMEM as the
//! engine sees them.
//!
//! Addresses are UMEM offsets, as in the kernel's `struct xdp_desc`. UMEM is
//! made of `frame_count` frames of `frame_size` bytes (aligned mode: a
//! descriptor never crosses a frame boundary, and the frame a descriptor
//! belongs to is `addr / frame_size`). A packet is one descriptor or a chain
//! of descriptors in which every one but the last carries [`XDP_PKT_CONTD`].
//! Ring operations move whole packets only: an implementation never splits a
//! chain across two calls.

/// `options` flag of a descriptor whose packet continues in the next one
/// (multi-buffer, `XDP_USE_SG`).
pub const XDP_PKT_CONTD: u32 = 1;

/// One AF_XDP descriptor, the same layout as the kernel's `struct xdp_desc`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[repr(C)]
pub struct Desc {
    pub addr: u64,
    pub len: u32,
    pub options: u32,
}

impl Desc {
    /// Whether the packet continues in the next descriptor.
    pub fn continues(&self) -> bool {
        self.options & XDP_PKT_CONTD != 0
    }
}

/// The packet buffer shared by every socket of one engine worker.
pub trait Umem {
    /// Size of one frame in bytes (4096 here: the kernel refuses larger).
    fn frame_size(&self) -> u32;
    /// Number of frames.
    fn frame_count(&self) -> u32;
    /// The bytes `addr .. addr + len`; they never cross a frame boundary.
    fn bytes(&self, addr: u64, len: u32) -> &[u8];
    /// The bytes `addr .. addr + len`, writable; they never cross a frame boundary.
    fn bytes_mut(&mut self, addr: u64, len: u32) -> &mut [u8];
}

/// The receive side of the ingress socket: its RX ring and the UMEM's fill ring.
pub trait RxPort {
    /// Moves up to `out.len()` received descriptors into `out`, whole packets
    /// only, and returns how many were written.
    fn receive(&mut self, out: &mut [Desc]) -> usize;
    /// Hands frames (any address inside each frame) to the kernel to receive
    /// into; returns how many it took (the fill ring may be full).
    fn fill(&mut self, frames: &[u64]) -> usize;
    /// Wakes the kernel when it asked for it (`need_wakeup` on the fill ring).
    fn wake(&mut self);
}

/// One transmit socket (an egress interface) sharing the UMEM.
pub trait TxPort {
    /// Free slots in the TX ring.
    fn tx_free(&mut self) -> usize;
    /// Enqueues descriptors, whole packets only, and returns how many
    /// descriptors were written (never part of a chain).
    fn transmit(&mut self, descs: &[Desc]) -> usize;
    /// Tells the kernel to send what was enqueued (when `need_wakeup` says so).
    fn flush(&mut self);
    /// Moves up to `out.len()` completed descriptor addresses into `out` (one
    /// per transmitted descriptor, chain members included) and returns how many.
    fn completions(&mut self, out: &mut [u64]) -> usize;
}

pub mod mem;
