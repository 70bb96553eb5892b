//! What a benchmark run measures: its command line ([`Args`]), the
//! replicators it compares ([`Mode`]), the cells after defaults ([`Plan`]),
//! and what every measurement needs ([`Ctx`]).

use std::path::Path;

use anyhow::{Result, bail};

use super::cpu::Layout;
use super::lab::BenchLab;

/// The payloads measured by default: small, the largest UDP payload of a
/// 1500-byte MTU, the largest of the lab's 9000.
pub(super) const PAYLOADS: [usize; 3] = [64, 1472, 8972];

#[derive(Debug, Default, clap::Args)]
pub(crate) struct Args {
    /// Short mode (CI): one payload, 2 output counts, 1 repetition, 1 s cells.
    #[arg(long)]
    pub(super) quick: bool,
    /// Modes to measure (socket, xdp, kernel).
    #[arg(long, value_delimiter = ',')]
    pub(super) modes: Option<Vec<Mode>>,
    /// Payload sizes in bytes.
    #[arg(long, value_delimiter = ',')]
    pub(super) payloads: Option<Vec<usize>>,
    /// Output counts (1..=32).
    #[arg(long, value_delimiter = ',')]
    pub(super) outputs: Option<Vec<usize>>,
    /// Repetitions per cell (the median and the spread are reported).
    #[arg(long)]
    pub(super) reps: Option<usize>,
    /// Seconds the generator sends per repetition.
    #[arg(long)]
    pub(super) seconds: Option<f64>,
    /// Pace the generator at this many datagrams/s (default: unpaced, the
    /// edge overloaded; its ceiling is measured and reported).
    #[arg(long)]
    pub(super) rate: Option<u64>,
    /// After each cell's repetitions, one more (unmeasured) pass with
    /// `perf record` on the edge CPU; the top symbols go to
    /// `target/fanout-bench/perf-<mode>-<payload>-<outputs>.txt`.
    #[arg(long)]
    pub(super) perf: bool,
    /// Instead of the lab: instructions per replica of the in-memory engine
    /// under valgrind's callgrind (default: payloads 64, 1472, 8972; 8
    /// outputs; batch 64; `--payloads`, `--outputs`, `--batch` choose).
    #[arg(long)]
    pub(super) callgrind: bool,
    /// Do not write BENCHMARKS.md / docs/benchmarks.svg (print only).
    #[arg(long)]
    pub(super) no_write: bool,
    /// `[engine] batch_size` of fanout (default: fanout's own, 64).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub(super) batch: Option<u16>,
    /// `napi_defer_hard_irqs` of `in0` in the bench's edge namespace (the
    /// preferred busy-polling recipe, with `--in0-gro-flush-timeout`;
    /// default: the kernel's, 0). Busy polling itself is the engine's
    /// `FANOUT_XSK_BUSY_POLL=<usecs>`, inherited from this environment.
    #[arg(long)]
    pub(super) in0_napi_defer: Option<u32>,
    /// `gro_flush_timeout` of `in0` in nanoseconds (default: the kernel's, 0).
    #[arg(long)]
    pub(super) in0_gro_flush_timeout: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(super) enum Mode {
    /// `fanout run`, `[engine] mode = "socket"`.
    Socket,
    /// `fanout run`, `[engine] mode = "xdp"`.
    Xdp,
    /// The kernel's multicast routing (smcrouted, static routes).
    Kernel,
}

impl Mode {
    pub(super) fn name(self) -> &'static str {
        match self {
            Mode::Socket => "fanout socket",
            Mode::Xdp => "fanout xdp",
            Mode::Kernel => "kernel mroute",
        }
    }
    /// The name in file names: `fanout-socket`, `kernel-mroute`.
    pub(super) fn slug(self) -> String {
        self.name().replace(' ', "-")
    }
    pub(super) fn color(self) -> &'static str {
        match self {
            Mode::Socket => "#1f77b4",
            Mode::Xdp => "#d62728",
            Mode::Kernel => "#2ca02c",
        }
    }
}

/// The plan of a run, after defaults.
#[derive(Debug, Clone)]
pub(super) struct Plan {
    pub(super) modes: Vec<Mode>,
    pub(super) payloads: Vec<usize>,
    pub(super) outputs: Vec<usize>,
    pub(super) reps: usize,
    pub(super) seconds: f64,
    pub(super) rate: Option<u64>,
    pub(super) perf: bool,
}

impl Plan {
    pub(super) fn from(args: &Args) -> Result<Plan> {
        let quick = args.quick;
        let plan = Plan {
            modes: args
                .modes
                .clone()
                .unwrap_or_else(|| vec![Mode::Xdp, Mode::Socket, Mode::Kernel]),
            payloads: args
                .payloads
                .clone()
                .unwrap_or_else(|| if quick { vec![1472] } else { PAYLOADS.to_vec() }),
            outputs: args
                .outputs
                .clone()
                .unwrap_or_else(|| if quick { vec![1, 4] } else { vec![1, 4, 8, 16] }),
            reps: args.reps.unwrap_or(if quick { 1 } else { 3 }),
            seconds: args.seconds.unwrap_or(if quick { 1.0 } else { 2.0 }),
            rate: args.rate,
            perf: args.perf,
        };
        if let Some(p) = plan.payloads.iter().find(|&&p| !(24..=8972).contains(&p)) {
            bail!("--payloads: {p} is outside 24..=8972 (MTU 9000)");
        }
        if let Some(k) = plan.outputs.iter().find(|&&k| !(1..=32).contains(&k)) {
            bail!("--outputs: {k} is outside 1..=32");
        }
        if !(1..=20).contains(&plan.reps) {
            bail!("--reps: {} is outside 1..=20", plan.reps);
        }
        if !(plan.seconds > 0.0 && plan.seconds <= 60.0) {
            bail!("--seconds: {} is outside (0, 60]", plan.seconds);
        }
        Ok(plan)
    }
    pub(super) fn max_outputs(&self) -> usize {
        self.outputs.iter().copied().max().unwrap_or(1)
    }
}

/// What every measurement needs.
pub(super) struct Ctx<'a> {
    pub(super) bench: &'a BenchLab,
    pub(super) bin: &'a Path,
    pub(super) work: &'a Path,
    pub(super) ebpf_object: Option<&'a Path>,
    pub(super) plan: &'a Plan,
    pub(super) layout: Layout,
    /// `[engine] batch_size`, when asked for.
    pub(super) batch: Option<u16>,
}
