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

mod busy_poll;
mod ring;
mod setup;
mod socket;
pub mod sys;
mod umem;

pub use busy_poll::{BusyPoll, BusyPollRefused};
pub use ring::{ConsumerRing, Layout, ProducerRing, ReadBatch, WriteBatch};
pub use setup::{BindMode, Error, FRAME_SIZE, RingSizes};
pub use socket::{KERNEL_TX_BUDGET, RxSocket, RxStats, TxSocket, TxStats};
pub use umem::{XskUmem, open_socket};

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
}
