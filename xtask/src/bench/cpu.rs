//! The CPUs: which one does what ([`Layout`], stated with the numbers in
//! the report) and the clocks that charge work to them. Whole-machine and
//! per-CPU busy time come from the cpuidle residency counters (exact,
//! unlike the tick-sampled `/proc/stat`); a process's own time from
//! `/proc/PID/task/*/schedstat` (nanoseconds on CPU). It only reads `/sys`
//! and `/proc`; pinning is the lab's.

use std::fs;

use anyhow::{Context as _, Result, bail};

/// Which CPU does what (stated with the numbers).
#[derive(Debug, Clone, Copy)]
pub(super) struct Layout {
    pub(super) gen_cpu: usize,
    pub(super) edge_cpu: usize,
    pub(super) cpus: usize,
}

impl Layout {
    pub(super) fn describe(&self) -> String {
        format!(
            "{} CPUs. Generator (`fanout gen --fast`) pinned to CPU {g} (with the \
             software segmentation of its GSO trains on `src0`). Edge: the engine \
             process (`taskset -c {e}`; smcrouted for the kernel mode) and the \
             threaded NAPI of `in0` (its kthread pinned to CPU {e}) on CPU {e}; \
             the replicas' transmit and the sinks' receive backlog therefore run \
             on CPU {e} too (veth delivers in the sender's context). The sinks \
             count with interface counters, no sockets.",
            self.cpus,
            g = self.gen_cpu,
            e = self.edge_cpu
        )
    }
}

pub(super) fn online_cpus() -> Result<Vec<usize>> {
    let text = fs::read_to_string("/sys/devices/system/cpu/online")
        .context("read /sys/devices/system/cpu/online")?;
    let mut cpus = Vec::new();
    for part in text.trim().split(',') {
        match part.split_once('-') {
            Some((a, b)) => cpus.extend(a.parse::<usize>()?..=b.parse::<usize>()?),
            None => cpus.push(part.parse()?),
        }
    }
    if cpus.is_empty() {
        bail!("no online CPU in {text:?}");
    }
    Ok(cpus)
}

/// Idle residency of every online CPU, in microseconds (all states summed).
pub(super) fn idle_us(cpus: usize) -> Result<Vec<u64>> {
    (0..cpus)
        .map(|cpu| {
            let dir = format!("/sys/devices/system/cpu/cpu{cpu}/cpuidle");
            let mut total = 0u64;
            for e in fs::read_dir(&dir).with_context(|| format!("read {dir}"))? {
                let p = e?.path().join("time");
                if p.exists() {
                    total += fs::read_to_string(&p)
                        .with_context(|| format!("read {}", p.display()))?
                        .trim()
                        .parse::<u64>()
                        .with_context(|| format!("parse {}", p.display()))?;
                }
            }
            Ok(total)
        })
        .collect()
}

/// Nanoseconds on CPU of every thread of `pid` (`/proc/PID/task/*/schedstat`).
pub(super) fn task_ns(pid: u32) -> u64 {
    let Ok(dir) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    dir.filter_map(|e| {
        let s = fs::read_to_string(e.ok()?.path().join("schedstat")).ok()?;
        s.split_whitespace().next()?.parse::<u64>().ok()
    })
    .sum()
}
