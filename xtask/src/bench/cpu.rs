//! The CPUs: which one does what ([`Layout`], stated with the numbers in
//! the report) and the clocks that charge work to them. Whole-machine and
//! per-CPU busy time come from the cpuidle residency counters (exact,
//! unlike the tick-sampled `/proc/stat`, which is the fallback on a host
//! without a cpuidle driver, said in the report); a process's own time from
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
    pub(super) idle: IdleClock,
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

/// Where idle time is read from: the cpuidle residency counters where the
/// kernel has a cpuidle driver, otherwise `/proc/stat` (some hosts, VMs
/// and containers among them, expose no `cpuidle` directory).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum IdleClock {
    /// `/sys/devices/system/cpu/cpuN/cpuidle/state*/time`, microseconds.
    Cpuidle,
    /// `/proc/stat` idle + iowait, in USER_HZ ticks (10 ms each).
    ProcStat,
}

impl IdleClock {
    pub(super) fn detect() -> IdleClock {
        if std::path::Path::new("/sys/devices/system/cpu/cpu0/cpuidle").is_dir() {
            IdleClock::Cpuidle
        } else {
            IdleClock::ProcStat
        }
    }

    pub(super) fn describe(self) -> &'static str {
        match self {
            IdleClock::Cpuidle => "cpuidle residency",
            IdleClock::ProcStat => {
                "/proc/stat idle + iowait, 10 ms ticks: this host has no cpuidle driver"
            }
        }
    }
}

/// USER_HZ: the unit of `/proc/stat`, fixed at 100 by the kernel's ABI on
/// every architecture we build for (not the kernel's internal HZ).
const USER_HZ: u64 = 100;

/// Idle time of every online CPU, in microseconds, from `clock`.
pub(super) fn idle_us(clock: IdleClock, cpus: usize) -> Result<Vec<u64>> {
    match clock {
        IdleClock::Cpuidle => (0..cpus).map(cpuidle_us).collect(),
        IdleClock::ProcStat => {
            let text = fs::read_to_string("/proc/stat").context("read /proc/stat")?;
            proc_stat_idle_us(&text, cpus)
        }
    }
}

fn cpuidle_us(cpu: usize) -> Result<u64> {
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
}

/// The idle + iowait columns (4th and 5th) of the `cpuN` lines, in µs.
fn proc_stat_idle_us(text: &str, cpus: usize) -> Result<Vec<u64>> {
    (0..cpus)
        .map(|cpu| {
            let tag = format!("cpu{cpu}");
            let line = text
                .lines()
                .find(|l| l.split_whitespace().next() == Some(tag.as_str()))
                .with_context(|| format!("/proc/stat has no {tag} line"))?;
            let cols: Vec<u64> = line
                .split_whitespace()
                .skip(1)
                .map(str::parse)
                .collect::<Result<_, _>>()
                .with_context(|| format!("parse /proc/stat line {line:?}"))?;
            if cols.len() < 5 {
                bail!("/proc/stat line {line:?} has fewer than 5 counters");
            }
            Ok((cols[3] + cols[4]) * (1_000_000 / USER_HZ))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_stat_idle_is_idle_plus_iowait_in_microseconds() {
        let text = "cpu  10 0 5 900 7 0 1 0 0 0\n\
                    cpu0 4 0 2 400 3 0 1 0 0 0\n\
                    cpu1 6 0 3 500 4 0 0 0 0 0\n\
                    intr 1 2 3\n";
        assert_eq!(
            proc_stat_idle_us(text, 2).unwrap(),
            vec![403 * 10_000, 504 * 10_000]
        );
        let err = proc_stat_idle_us(text, 3).unwrap_err().to_string();
        assert!(err.contains("no cpu2 line"), "{err}");
        assert!(proc_stat_idle_us("cpu0 1 2 3\n", 1).is_err());
    }
}
