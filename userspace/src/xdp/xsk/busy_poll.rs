//! Preferred busy polling of AF_XDP sockets (`SO_PREFER_BUSY_POLL`,
//! `SO_BUSY_POLL`, `SO_BUSY_POLL_BUDGET`), opt-in through `[engine]
//! busy_poll_us`: set on a socket or refused whole (the socket then stays on
//! `need_wakeup`), and cleared again.

use std::fmt;
use std::io;
use std::os::fd::BorrowedFd;

use super::sys;

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
pub(super) fn apply_busy_poll(fd: BorrowedFd<'_>, bp: BusyPoll) -> Result<(), BusyPollRefused> {
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
pub(super) fn clear_busy_poll(fd: BorrowedFd<'_>) {
    let _ = sys::set_socket_opt(fd, libc::SO_BUSY_POLL, 0);
    let _ = sys::set_socket_opt(fd, libc::SO_PREFER_BUSY_POLL, 0);
}

/// The wakeup strategy of one socket: `need_wakeup` (`None`), or the
/// preferred busy polling in force.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Wakeups(pub(super) Option<BusyPoll>);

impl Wakeups {
    pub(super) fn set(&mut self, fd: BorrowedFd<'_>, bp: BusyPoll) -> Result<(), BusyPollRefused> {
        apply_busy_poll(fd, bp)?;
        self.0 = Some(bp);
        Ok(())
    }

    pub(super) fn clear(&mut self, fd: BorrowedFd<'_>) {
        if self.0.take().is_some() {
            clear_busy_poll(fd);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

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
