//! The benchmark's lab: three namespaces `<prefix>-{src,edge,sink}` joined
//! by veths (`src0`–`in0`, and K pairs `out{k}`–`snk{k}`, MTU 9000, private
//! addresses only), with software segmentation on the senders and `in0`'s
//! threaded NAPI pinned to the edge CPU. It owns the lab's life: dropping a
//! [`BenchLab`] deletes its namespaces, and the interrupt handler kills
//! every process started through [`spawn`] and takes the lab down on
//! SIGINT/SIGTERM, so nothing outlives the run. It reads the sinks' and
//! `in0`'s interface counters and finds the kernel threads that do the
//! edge's receive work; it measures nothing by itself.

use std::{fs, process::Command};

use anyhow::{Context as _, Result};
use fanout::lab::{self, Netns};

use super::cpu::Layout;

/// The namespace prefix of this run: `fo-bench<pid>`.
pub(super) fn prefix() -> String {
    format!("{}bench{}", lab::NAME_PREFIX, std::process::id())
}

/// NAPI settings of `in0` asked for on the command line (unset: the
/// kernel's defaults).
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct In0Napi {
    pub(super) defer_hard_irqs: Option<u32>,
    pub(super) gro_flush_timeout: Option<u64>,
}

/// The benchmark's own lab: source, edge with K egress links, sink.
pub(super) struct BenchLab {
    pub(super) src: Netns,
    pub(super) edge: Netns,
    sink: Netns,
    /// NAPI kthreads that existed before the lab (not ours).
    foreign_napi: Vec<u32>,
    edge_cpu: usize,
    pub(super) prefix: String,
}

impl BenchLab {
    pub(super) fn up(prefix: &str, k: usize, layout: Layout, napi: In0Napi) -> Result<BenchLab> {
        let _ = lab::Lab::down(prefix);
        let foreign_napi = napi_threads("in0");
        let src = Netns::new(&format!("{prefix}-src"))?;
        let edge = Netns::new(&format!("{prefix}-edge"))?;
        let sink = Netns::new(&format!("{prefix}-sink"))?;
        lab::veth(&src, "src0", &edge, "in0", lab::MTU)?;
        src.ip(&["addr", "add", "10.210.0.1/24", "dev", "src0"])?;
        edge.ip(&["addr", "add", "10.210.0.2/24", "dev", "in0"])?;
        src.ip(&["route", "add", "224.0.0.0/4", "dev", "src0"])?;
        for i in 0..k {
            let (out, snk) = (format!("out{i}"), format!("snk{i}"));
            lab::veth(&edge, &out, &sink, &snk, lab::MTU)?;
            edge.ip(&["addr", "add", &format!("10.211.{i}.1/24"), "dev", &out])?;
            sink.ip(&["addr", "add", &format!("10.211.{i}.2/24"), "dev", &snk])?;
            edge.exec(&["ethtool", "-K", &out, "tx-udp-segmentation", "off"])?;
        }
        // Strict reverse-path filtering, as in `Lab::up`: what a hardened
        // host has, for every replicator alike.
        for ns in [&src, &edge, &sink] {
            ns.sysctl("net/ipv4/conf/all/rp_filter", lab::STRICT_RP_FILTER)?;
            ns.sysctl("net/ipv4/conf/default/rp_filter", lab::STRICT_RP_FILTER)?;
        }
        edge.sysctl("net/ipv4/conf/in0/rp_filter", lab::STRICT_RP_FILTER)?;
        // No TSO on src0: veth hands a frame to in0's NAPI (rather than to
        // the sender's backlog) only when the sender cannot do TSO or in0
        // does UDP GRO forwarding (which would merge the kernel mode's frames).
        src.exec(&[
            "ethtool",
            "-K",
            "src0",
            "tx-udp-segmentation",
            "off",
            "tso",
            "off",
        ])?;
        // src0 keeps TX checksum offload, as `Lab::up` does: the source's
        // UDP checksums arrive partial (CHECKSUM_PARTIAL), and the XDP
        // worker completes each once per datagram, a cost this benchmark
        // includes. The sinks count frames at the interface; the tests and
        // the demo check that receivers accept every replica's checksums.
        // GRO gives in0 a NAPI instance; threaded, its kthread is pinnable.
        edge.exec(&["ethtool", "-K", "in0", "gro", "on"])?;
        edge.exec(&["sh", "-c", "echo 1 > /sys/class/net/in0/threaded"])?;
        // Preferred busy polling's recipe: NAPI completions defer the
        // "interrupt" (veth: the sender's napi_schedule) to a timer, so
        // that the engine's busy polls do the receive work.
        for (file, value) in [
            ("napi_defer_hard_irqs", napi.defer_hard_irqs.map(u64::from)),
            ("gro_flush_timeout", napi.gro_flush_timeout),
        ] {
            if let Some(v) = value {
                edge.exec(&["sh", "-c", &format!("echo {v} > /sys/class/net/in0/{file}")])?;
                println!("xtask bench: in0 {file} = {v}");
            }
        }
        let lab = BenchLab {
            src,
            edge,
            sink,
            foreign_napi,
            edge_cpu: layout.edge_cpu,
            prefix: prefix.to_owned(),
        };
        lab.pin_napi()?;
        Ok(lab)
    }

    /// Our `napi/in0-*` kthreads (re-created when XDP attaches): pinned to
    /// the edge CPU; returns their pids.
    fn pin_napi(&self) -> Result<Vec<u32>> {
        let ours: Vec<u32> = napi_threads("in0")
            .into_iter()
            .filter(|p| !self.foreign_napi.contains(p))
            .collect();
        for pid in &ours {
            crate::cmd::captured(Command::new("taskset").args([
                "-pc",
                &self.edge_cpu.to_string(),
                &pid.to_string(),
            ]))?;
        }
        Ok(ours)
    }

    /// The kernel threads whose time is the edge's receive work: our NAPI
    /// kthreads (pinned again first) and the edge CPU's `ksoftirqd`.
    pub(super) fn kernel_threads(&self) -> Result<Vec<u32>> {
        let mut pids = self.pin_napi()?;
        pids.extend(threads_named(&format!("ksoftirqd/{}", self.edge_cpu)));
        Ok(pids)
    }

    /// `rx_packets` of every interface of `ns`, by name.
    fn rx_packets(ns: &Netns) -> Result<Vec<(String, u64)>> {
        let json = ns.ip(&["-s", "-j", "link", "show"])?;
        let v: serde_json::Value = serde_json::from_str(&json).context("parse ip -s -j link")?;
        let mut out = Vec::new();
        for link in v.as_array().into_iter().flatten() {
            let name = link["ifname"].as_str().unwrap_or_default().to_owned();
            let rx = link["stats64"]["rx"]["packets"].as_u64().unwrap_or(0);
            out.push((name, rx));
        }
        Ok(out)
    }

    /// Datagrams received per sink interface `snk0..snk{k-1}`.
    pub(super) fn sink_rx(&self, k: usize) -> Result<Vec<u64>> {
        let links = Self::rx_packets(&self.sink)?;
        (0..k)
            .map(|i| {
                let name = format!("snk{i}");
                rx_of(&links, &name)
                    .with_context(|| format!("no interface {name} in {}", self.sink.name()))
            })
            .collect()
    }

    /// Datagrams received on `in0` (what entered the edge).
    pub(super) fn in0_rx(&self) -> Result<u64> {
        rx_of(&Self::rx_packets(&self.edge)?, "in0").context("no in0")
    }
}

/// The count of interface `name` in a [`BenchLab::rx_packets`] list.
fn rx_of(links: &[(String, u64)], name: &str) -> Option<u64> {
    links.iter().find(|(n, _)| n == name).map(|&(_, rx)| rx)
}

/// Pids of kernel threads named `napi/{iface}-*`.
fn napi_threads(iface: &str) -> Vec<u32> {
    threads_named(&format!("napi/{iface}-"))
}

/// Pids of processes whose name starts with `want`.
fn threads_named(want: &str) -> Vec<u32> {
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| {
        let e = e.ok()?;
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let comm = fs::read_to_string(e.path().join("comm")).ok()?;
        let comm = comm.trim_end();
        (comm == want || (want.ends_with('-') && comm.starts_with(want))).then_some(pid)
    })
    .collect()
}
