//! Subcommands of the `fanout` binary. Each module owns its `Args` and a
//! `main` that returns the process exit code: 0 success, 1 runtime failure,
//! 2 bad configuration or bad arguments.

pub mod check;
pub mod control;
pub mod ctl;
pub mod docs;
pub mod journal;
#[cfg(feature = "lab")]
pub mod lab;
pub mod metrics;
pub mod notify;
pub mod run;
pub mod top;
pub mod xdp;
