//! What binding AF_XDP sockets needs and what can go wrong: the frame size,
//! the ring sizes, the mode a bind reached, and the set-up errors (each
//! naming the call, the interface and the queue).

use std::fmt;
use std::io;

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
    /// Every ring size a power of two, as the kernel demands.
    pub(super) fn check(&self) -> Result<(), Error> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
