//! `cargo xtask bench`: the lab benchmark. fanout (socket mode, XDP mode)
//! against the kernel's own multicast routing (smcroute static routes), with
//! the same generator and the same sinks, over payload sizes and output counts.
//!
//! Contract: everything runs inside namespaces named `fo-bench<pid>-*`
//! (private addresses only, deleted by guards, also on error or Ctrl-C);
//! every cell is bounded in time (the generator's `--max-seconds`, deadlines
//! on every wait) and repeated; nothing is timed by a test. The full run
//! rewrites its section of `BENCHMARKS.md` (one per offered load: unpaced
//! or `--rate N`) and `docs/benchmarks-<load>.svg`;
//! `--quick` (CI) writes under `target/fanout-bench/` and fails unless every
//! available mode produced numbers. A mode that cannot start (XDP in a build
//! without the datapath) is reported as "not available", not as a failure.
//!
//! Topology (MTU 9000 everywhere; K = the largest output count):
//!
//! ```text
//!  src: src0 10.210.0.1 ---- in0 10.210.0.2  :edge   out{k} 10.211.k.1 ---- snk{k} 10.211.k.2 :sink
//! ```
//!
//! The generator (`fanout gen --fast`: GSO trains through sendmmsg) sends
//! 239.1.1.1:5004 with TTL 8 from `src0`; `src0` and every `out{k}` segment
//! in software (`tx-udp-segmentation off`), so every datagram crosses the
//! links as its own frame, as from a NIC. The sinks count per output with
//! the kernel's own interface counters (`rx_packets` of `snk{k}`, no socket,
//! no XDP); the frames then die in the sink's IP layer (group not joined).
//! `in0` has GRO on, hence a NAPI instance, made threaded and pinned.
//!
//! CPU: whole-machine and per-CPU busy time from the cpuidle residency
//! counters (`/sys/devices/system/cpu/cpu*/cpuidle/state*/time`, exact,
//! unlike the tick-sampled `/proc/stat`); the engine's and the NAPI thread's
//! own time from `/proc/PID/task/*/schedstat` (nanoseconds on CPU).

use std::{
    fmt::Write as _,
    fs,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use fanout::lab::{self, Netns, Process};

use crate::{cargo, ebpf, is_root, output_of, run_status, target_dir};

const GROUP: &str = "239.1.1.1";
const PORT: u16 = 5004;
/// Where fanout re-emits (a different group, so nothing loops back).
const OUT_GROUP: &str = "239.2.0.1";
const OUT_PORT: u16 = 6000;
/// Generator TTL: above the kernel's forwarding threshold of 1.
const GEN_TTL: &str = "8";
/// Markers of a generated section in BENCHMARKS.md (one per offered load:
/// `unpaced` or `rate-N`), with the tag in between.
const BEGIN: &str = "<!-- xtask bench begin:";
const END: &str = "<!-- xtask bench end:";

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Short mode (CI): one payload, 2 output counts, 1 repetition, 1 s cells.
    #[arg(long)]
    quick: bool,
    /// Modes to measure (socket, xdp, kernel).
    #[arg(long, value_delimiter = ',')]
    modes: Option<Vec<Mode>>,
    /// Payload sizes in bytes.
    #[arg(long, value_delimiter = ',')]
    payloads: Option<Vec<usize>>,
    /// Output counts (1..=32).
    #[arg(long, value_delimiter = ',')]
    outputs: Option<Vec<usize>>,
    /// Repetitions per cell (the median and the spread are reported).
    #[arg(long)]
    reps: Option<usize>,
    /// Seconds the generator sends per repetition.
    #[arg(long)]
    seconds: Option<f64>,
    /// Pace the generator at this many datagrams/s (default: unpaced, the
    /// edge overloaded; its ceiling is measured and reported).
    #[arg(long)]
    rate: Option<u64>,
    /// After each cell's repetitions, one more (unmeasured) pass with
    /// `perf record` on the edge CPU; the top symbols go to
    /// `target/fanout-bench/perf-<mode>-<payload>-<outputs>.txt`.
    #[arg(long)]
    perf: bool,
    /// Instead of the lab: instructions per replica of the in-memory engine
    /// under valgrind's callgrind (default: payloads 64, 1472, 8972; 8
    /// outputs; batch 64; `--payloads`, `--outputs`, `--batch` choose).
    #[arg(long)]
    callgrind: bool,
    /// Do not write BENCHMARKS.md / docs/benchmarks.svg (print only).
    #[arg(long)]
    no_write: bool,
    /// `[engine] batch_size` of fanout (default: fanout's own, 64).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=1024))]
    batch: Option<u16>,
    /// `napi_defer_hard_irqs` of `in0` in the bench's edge namespace (the
    /// preferred busy-polling recipe, with `--in0-gro-flush-timeout`;
    /// default: the kernel's, 0). Busy polling itself is the engine's
    /// `FANOUT_XSK_BUSY_POLL=<usecs>`, inherited from this environment.
    #[arg(long)]
    in0_napi_defer: Option<u32>,
    /// `gro_flush_timeout` of `in0` in nanoseconds (default: the kernel's, 0).
    #[arg(long)]
    in0_gro_flush_timeout: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// `fanout run`, `[engine] mode = "socket"`.
    Socket,
    /// `fanout run`, `[engine] mode = "xdp"`.
    Xdp,
    /// The kernel's multicast routing (smcrouted, static routes).
    Kernel,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Socket => "fanout socket",
            Mode::Xdp => "fanout xdp",
            Mode::Kernel => "kernel mroute",
        }
    }
    fn color(self) -> &'static str {
        match self {
            Mode::Socket => "#1f77b4",
            Mode::Xdp => "#d62728",
            Mode::Kernel => "#2ca02c",
        }
    }
}

/// The plan of a run, after defaults.
#[derive(Debug, Clone)]
struct Plan {
    modes: Vec<Mode>,
    payloads: Vec<usize>,
    outputs: Vec<usize>,
    reps: usize,
    seconds: f64,
    rate: Option<u64>,
    perf: bool,
}

impl Plan {
    fn from(args: &Args) -> Result<Plan> {
        let quick = args.quick;
        let plan = Plan {
            modes: args
                .modes
                .clone()
                .unwrap_or_else(|| vec![Mode::Xdp, Mode::Socket, Mode::Kernel]),
            payloads: args.payloads.clone().unwrap_or_else(|| {
                if quick {
                    vec![1472]
                } else {
                    vec![64, 1472, 8972]
                }
            }),
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
    fn max_outputs(&self) -> usize {
        self.outputs.iter().copied().max().unwrap_or(1)
    }
}

/// Which CPU does what (stated with the numbers).
#[derive(Debug, Clone, Copy)]
struct Layout {
    gen_cpu: usize,
    edge_cpu: usize,
    cpus: usize,
}

impl Layout {
    fn describe(&self) -> String {
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

/// The short mode of the criterion benchmarks that `cargo xtask test` runs:
/// every bench target compiled and each cell run once.
pub fn criterion_short() -> Result<String> {
    run_status(cargo().args(["bench", "-p", "fanout", "--bench", "*", "--", "--test"]))?;
    Ok("cargo bench -p fanout --bench '*' -- --test".to_owned())
}

/// The lab benchmark's short mode that `cargo xtask test` runs (root only).
pub fn lab_quick() -> Result<String> {
    if !is_root() {
        bail!("the lab benchmark needs root");
    }
    run(Args {
        quick: true,
        modes: None,
        payloads: None,
        outputs: None,
        reps: None,
        seconds: None,
        rate: None,
        perf: false,
        callgrind: false,
        no_write: true,
        batch: None,
        in0_napi_defer: None,
        in0_gro_flush_timeout: None,
    })?;
    Ok("cargo xtask bench --quick".to_owned())
}

pub fn run(args: Args) -> Result<()> {
    if args.callgrind {
        return callgrind(&args);
    }
    if !is_root() {
        bail!("the lab benchmark creates network namespaces: run it as root");
    }
    let plan = Plan::from(&args)?;
    let started = Instant::now();
    // The XDP program first: the fanout build embeds it when it exists.
    // Without it the XDP mode reports itself unavailable.
    let ebpf_object = if plan.modes.contains(&Mode::Xdp) {
        ebpf::build(true).ok()
    } else {
        None
    };
    let mut build = cargo();
    build.args([
        "build",
        "--release",
        "--quiet",
        "-p",
        "fanout",
        "--features",
        "lab",
        "--bin",
        "fanout",
    ]);
    if let Some(obj) = &ebpf_object {
        build.env(ebpf::OBJECT_ENV, obj);
    }
    run_status(&mut build)?;
    let bin = target_dir().join("release").join("fanout");
    let work = target_dir().join("fanout-bench");
    fs::create_dir_all(&work).with_context(|| format!("create {}", work.display()))?;

    let cpus = online_cpus()?;
    let layout = Layout {
        gen_cpu: cpus[0],
        edge_cpu: *cpus.get(1).unwrap_or(&cpus[0]),
        cpus: cpus.len(),
    };
    let prefix = format!("{}bench{}", lab::NAME_PREFIX, std::process::id());
    install_interrupt_handler(prefix.clone())?;
    let load_before = fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let napi = In0Napi {
        defer_hard_irqs: args.in0_napi_defer,
        gro_flush_timeout: args.in0_gro_flush_timeout,
    };
    let bench = BenchLab::up(&prefix, plan.max_outputs(), layout, napi)?;
    println!(
        "xtask bench: lab {prefix} up ({} egress veths, MTU 9000); layout: {}",
        plan.max_outputs(),
        layout.describe()
    );
    let ctx = Ctx {
        bench: &bench,
        bin: &bin,
        work: &work,
        ebpf_object: ebpf_object.as_deref(),
        plan: &plan,
        layout,
        batch: args.batch,
    };
    let ceiling = measure_ceiling(&ctx)?;
    let mut results: Vec<ModeResult> = Vec::new();
    for &mode in &plan.modes {
        results.push(measure_mode(&ctx, mode)?);
    }
    drop(bench);
    let load_after = fs::read_to_string("/proc/loadavg").unwrap_or_default();

    let command = command_line();
    let report = Report {
        plan: &plan,
        layout,
        ceiling: &ceiling,
        results: &results,
        command: &command,
        load: format!(
            "loadavg before {} / after {}",
            load_before
                .split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" "),
            load_after
                .split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        ),
    };
    let markdown = report.markdown();
    let svg = report.svg();
    println!("{markdown}");
    if args.quick || args.no_write {
        let md = work.join("quick.md");
        fs::write(&md, &markdown).with_context(|| format!("write {}", md.display()))?;
        let sv = work.join("quick.svg");
        fs::write(&sv, &svg).with_context(|| format!("write {}", sv.display()))?;
        println!("written: {} and {}", md.display(), sv.display());
    } else {
        let tag = plan
            .rate
            .map_or("unpaced".to_owned(), |r| format!("rate-{r}"));
        let svg_name = format!("benchmarks-{tag}.svg");
        write_benchmarks_md(&markdown, &tag, &svg_name)?;
        let sv = ebpf::repo_root().join("docs").join(&svg_name);
        fs::write(&sv, &svg).with_context(|| format!("write {}", sv.display()))?;
        println!(
            "written: BENCHMARKS.md (generated section) and {}",
            sv.display()
        );
    }
    // The short mode proves the machinery: every available mode delivered.
    let mut problems = Vec::new();
    for r in &results {
        match &r.outcome {
            Outcome::Unavailable(_) if r.mode == Mode::Xdp => {}
            Outcome::Unavailable(why) => problems.push(format!("{}: {why}", r.mode.name())),
            Outcome::Cells(cells) => {
                for c in cells {
                    if c.reps
                        .iter()
                        .any(|rep| rep.delivered == 0 || rep.offered == 0)
                    {
                        problems.push(format!(
                            "{} payload {} x{}: nothing delivered",
                            r.mode.name(),
                            c.payload,
                            c.outputs
                        ));
                    }
                }
            }
        }
    }
    if ceiling
        .iter()
        .any(|c| c.reps.iter().any(|r| r.offered == 0))
    {
        problems.push("the generator offered nothing".to_owned());
    }
    println!(
        "xtask bench: done in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    if !problems.is_empty() {
        bail!("benchmark produced no numbers for: {}", problems.join("; "));
    }
    Ok(())
}

/// What every measurement needs.
struct Ctx<'a> {
    bench: &'a BenchLab,
    bin: &'a Path,
    work: &'a Path,
    ebpf_object: Option<&'a Path>,
    plan: &'a Plan,
    layout: Layout,
    /// `[engine] batch_size`, when asked for.
    batch: Option<u16>,
}

// ---------------------------------------------------------------- the lab

/// NAPI settings of `in0` asked for on the command line (unset: the
/// kernel's defaults).
#[derive(Debug, Clone, Copy, Default)]
struct In0Napi {
    defer_hard_irqs: Option<u32>,
    gro_flush_timeout: Option<u64>,
}

/// The benchmark's own lab: source, edge with K egress links, sink.
struct BenchLab {
    src: Netns,
    edge: Netns,
    sink: Netns,
    /// NAPI kthreads that existed before the lab (not ours).
    foreign_napi: Vec<u32>,
    edge_cpu: usize,
    prefix: String,
}

impl BenchLab {
    fn up(prefix: &str, k: usize, layout: Layout, napi: In0Napi) -> Result<BenchLab> {
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
        for ns in [&src, &edge, &sink] {
            ns.sysctl("net/ipv4/conf/all/rp_filter", "0")?;
            ns.sysctl("net/ipv4/conf/default/rp_filter", "0")?;
        }
        edge.sysctl("net/ipv4/conf/in0/rp_filter", "0")?;
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
        // src0 keeps TX checksum offload (unlike `Lab::up`): the sinks count
        // frames at the interface, so the UDP checksum of a replica does not
        // change a count, and the generator's ceiling stays where it is. In
        // XDP mode the replicas of a CHECKSUM_PARTIAL frame carry an invalid
        // UDP checksum here; the tests check checksums, not this benchmark.
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
            run_quiet(Command::new("taskset").args([
                "-pc",
                &self.edge_cpu.to_string(),
                &pid.to_string(),
            ]))?;
        }
        Ok(ours)
    }

    /// The kernel threads whose time is the edge's receive work: our NAPI
    /// kthreads (pinned again first) and the edge CPU's `ksoftirqd`.
    fn kernel_threads(&self) -> Result<Vec<u32>> {
        let mut pids = self.pin_napi()?;
        pids.extend(threads_named(&format!("ksoftirqd/{}", self.edge_cpu)));
        Ok(pids)
    }

    /// Interface counters of `ns` by name: (rx_packets, tx_packets).
    fn link_stats(ns: &Netns) -> Result<Vec<(String, u64, u64)>> {
        let json = ns.ip(&["-s", "-j", "link", "show"])?;
        let v: serde_json::Value = serde_json::from_str(&json).context("parse ip -s -j link")?;
        let mut out = Vec::new();
        for link in v.as_array().into_iter().flatten() {
            let name = link["ifname"].as_str().unwrap_or_default().to_owned();
            let rx = link["stats64"]["rx"]["packets"].as_u64().unwrap_or(0);
            let tx = link["stats64"]["tx"]["packets"].as_u64().unwrap_or(0);
            out.push((name, rx, tx));
        }
        Ok(out)
    }

    /// Datagrams received per sink interface `snk0..snk{k-1}`.
    fn sink_rx(&self, k: usize) -> Result<Vec<u64>> {
        let stats = Self::link_stats(&self.sink)?;
        (0..k)
            .map(|i| {
                let name = format!("snk{i}");
                stats
                    .iter()
                    .find(|(n, _, _)| *n == name)
                    .map(|&(_, rx, _)| rx)
                    .with_context(|| format!("no interface {name} in {}", self.sink.name()))
            })
            .collect()
    }

    fn in0_rx(&self) -> Result<u64> {
        Self::link_stats(&self.edge)?
            .iter()
            .find(|(n, _, _)| n == "in0")
            .map(|&(_, rx, _)| rx)
            .context("no in0")
    }
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

/// Pids of the processes the benchmark started, for the interrupt handler.
static CHILDREN: std::sync::Mutex<Vec<u32>> = std::sync::Mutex::new(Vec::new());

fn spawn(name: &str, cmd: &mut Command) -> Result<Process> {
    let p = Process::spawn(name, cmd)?;
    CHILDREN
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(p.id());
    Ok(p)
}

fn install_interrupt_handler(prefix: String) -> Result<()> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])
        .context("install the SIGINT/SIGTERM handler")?;
    std::thread::spawn(move || {
        if let Some(signal) = signals.forever().next() {
            eprintln!("\ninterrupted (signal {signal}): stopping the benchmark and its lab");
            for &pid in CHILDREN.lock().unwrap_or_else(|e| e.into_inner()).iter() {
                let pid = nix::unistd::Pid::from_raw(pid as i32);
                let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            }
            if let Err(err) = lab::Lab::down(&prefix) {
                eprintln!("lab down failed: {err}; run `cargo xtask lab down --prefix {prefix}`");
            }
            std::process::exit(130);
        }
    });
    Ok(())
}

fn run_quiet(cmd: &mut Command) -> Result<()> {
    let out = cmd
        .output()
        .with_context(|| format!("could not start {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed: {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

// ---------------------------------------------------------------- CPU time

fn online_cpus() -> Result<Vec<usize>> {
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
fn idle_us(cpus: usize) -> Result<Vec<u64>> {
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
fn task_ns(pid: u32) -> u64 {
    let Ok(dir) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    dir.filter_map(|e| {
        let s = fs::read_to_string(e.ok()?.path().join("schedstat")).ok()?;
        s.split_whitespace().next()?.parse::<u64>().ok()
    })
    .sum()
}

/// Everything read before and after a repetition.
struct Sample {
    at: Instant,
    sink: Vec<u64>,
    in0: u64,
    idle: Vec<u64>,
    engine_ns: u64,
    napi_ns: u64,
}

fn sample(ctx: &Ctx, k: usize, engine: Option<u32>, napi: &[u32]) -> Result<Sample> {
    Ok(Sample {
        sink: ctx.bench.sink_rx(k)?,
        in0: ctx.bench.in0_rx()?,
        idle: idle_us(ctx.layout.cpus)?,
        engine_ns: engine.map_or(0, task_ns),
        napi_ns: napi.iter().map(|&p| task_ns(p)).sum(),
        at: Instant::now(),
    })
}

// ---------------------------------------------------------------- measuring

/// One repetition of one cell.
#[derive(Debug, Clone, Default)]
struct Rep {
    offered: u64,
    gen_secs: f64,
    arrived: u64,
    delivered: u64,
    machine_ns: f64,
    edge_cpu_ns: f64,
    engine_ns: Option<f64>,
    napi_ns: f64,
}

#[derive(Debug, Clone)]
struct Cell {
    payload: usize,
    outputs: usize,
    reps: Vec<Rep>,
}

#[derive(Debug)]
enum Outcome {
    Unavailable(String),
    Cells(Vec<Cell>),
}

#[derive(Debug)]
struct ModeResult {
    mode: Mode,
    outcome: Outcome,
}

/// Runs the generator for `seconds` (or `count` datagrams); (sent, seconds).
fn generate(
    ctx: &Ctx,
    payload: usize,
    count: u64,
    seconds: f64,
    rate: Option<u64>,
) -> Result<(u64, f64)> {
    let mut cmd = ctx.bench.src.command("taskset");
    cmd.args(["-c", &ctx.layout.gen_cpu.to_string()])
        .arg(ctx.bin)
        .args(["lab", "gen", "--fast", "--dest", &format!("{GROUP}:{PORT}")])
        .args(["--iface", "src0", "--ttl", GEN_TTL])
        .args([
            "--sizes",
            &payload.to_string(),
            "--count",
            &count.to_string(),
        ])
        .args(["--max-seconds", &seconds.to_string()]);
    if let Some(rate) = rate {
        cmd.args(["--rate", &rate.to_string()]);
    }
    let done =
        spawn("fanout gen --fast", &mut cmd)?.finish(Duration::from_secs_f64(seconds + 10.0))?;
    if !done.status.success() {
        bail!(
            "fanout gen failed ({}): {}",
            done.status,
            done.stderr.trim()
        );
    }
    parse_gen(&done.stdout).with_context(|| format!("parse the generator's line {:?}", done.stdout))
}

/// `fanout gen: sent N/COUNT datagrams (...) to ... in S s (...)`.
fn parse_gen(line: &str) -> Option<(u64, f64)> {
    let rest = line.split("sent ").nth(1)?;
    let sent = rest.split('/').next()?.parse().ok()?;
    let secs = rest.split(" in ").nth(1)?.split(' ').next()?.parse().ok()?;
    Some((sent, secs))
}

/// Waits until the sinks' counters stop moving (the queues drained).
fn settle(ctx: &Ctx, k: usize) -> Result<()> {
    let mut last = ctx.bench.sink_rx(k)?.iter().sum::<u64>();
    let mut stable = 0;
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline && stable < 2 {
        std::thread::sleep(Duration::from_millis(30));
        let now = ctx.bench.sink_rx(k)?.iter().sum::<u64>();
        stable = if now == last { stable + 1 } else { 0 };
        last = now;
    }
    Ok(())
}

fn one_rep(ctx: &Ctx, payload: usize, k: usize, engine: Option<u32>, napi: &[u32]) -> Result<Rep> {
    settle(ctx, k)?;
    let before = sample(ctx, k, engine, napi)?;
    let (offered, gen_secs) =
        generate(ctx, payload, u64::MAX / 2, ctx.plan.seconds, ctx.plan.rate)?;
    settle(ctx, k)?;
    let after = sample(ctx, k, engine, napi)?;
    let window = after.at.duration_since(before.at).as_secs_f64();
    let busy = |cpu: usize| {
        let idle = after.idle[cpu].saturating_sub(before.idle[cpu]) as f64 * 1e3;
        (window * 1e9 - idle).max(0.0)
    };
    let machine_ns: f64 = (0..ctx.layout.cpus).map(busy).sum();
    let delivered: u64 = after
        .sink
        .iter()
        .zip(&before.sink)
        .map(|(a, b)| a - b)
        .sum();
    Ok(Rep {
        offered,
        gen_secs,
        arrived: after.in0 - before.in0,
        delivered,
        machine_ns,
        edge_cpu_ns: busy(ctx.layout.edge_cpu),
        engine_ns: engine.map(|_| (after.engine_ns - before.engine_ns) as f64),
        napi_ns: (after.napi_ns - before.napi_ns) as f64,
    })
}

/// The generator's ceiling: no engine, in0 drops the stream (not joined).
fn measure_ceiling(ctx: &Ctx) -> Result<Vec<Cell>> {
    let mut cells = Vec::new();
    let napi = ctx.bench.kernel_threads()?;
    for &payload in &ctx.plan.payloads {
        let mut reps = Vec::new();
        for _ in 0..ctx.plan.reps {
            reps.push(one_rep(ctx, payload, 1, None, &napi)?);
        }
        let c = Cell {
            payload,
            outputs: 0,
            reps,
        };
        println!(
            "  generator alone, payload {payload}: {:.0} datagrams/s offered",
            median(c.reps.iter().map(|r| r.offered as f64 / r.gen_secs))
        );
        cells.push(c);
    }
    Ok(cells)
}

/// The `fanout run` configuration for K multicast outputs.
fn config(mode: Mode, k: usize, batch: Option<u16>) -> String {
    let mode = if mode == Mode::Xdp { "xdp" } else { "socket" };
    let batch = batch.map_or_else(String::new, |b| format!("batch_size = {b}\n"));
    let mut toml = format!(
        "# written by `cargo xtask bench`\n[engine]\nmode = \"{mode}\"\n{batch}\n\
         [[flow]]\nname = \"bench\"\ninterface = \"in0\"\ngroup = \"{GROUP}\"\nport = {PORT}\n"
    );
    for i in 0..k {
        let _ = write!(
            toml,
            "\n  [[flow.output]]\n  name = \"out{i}\"\n  multicast = \"{OUT_GROUP}:{OUT_PORT}\"\n  interface = \"out{i}\"\n  ttl = 16\n"
        );
    }
    toml
}

/// The smcroute configuration: a static route from in0 to out0..out{k-1}.
fn smcroute_config(k: usize) -> String {
    let mut conf = String::from("# written by `cargo xtask bench`\nphyint in0 enable\n");
    let outs: Vec<String> = (0..k).map(|i| format!("out{i}")).collect();
    for o in &outs {
        let _ = writeln!(conf, "phyint {o} enable");
    }
    let _ = writeln!(conf, "mroute from in0 group {GROUP} to {}", outs.join(" "));
    conf
}

/// Starts the replicator of `mode` for K outputs; `Err` text when it cannot.
fn start(ctx: &Ctx, mode: Mode, k: usize) -> Result<Result<Process, String>> {
    let tag = format!(
        "{}-{k}",
        if mode == Mode::Kernel {
            "smcroute"
        } else {
            "fanout"
        }
    );
    let ready = ctx.work.join(format!("{tag}.ready"));
    let _ = fs::remove_file(&ready);
    let mut cmd = ctx.bench.edge.command("taskset");
    cmd.args(["-c", &ctx.layout.edge_cpu.to_string()]);
    match mode {
        Mode::Kernel => {
            let conf = ctx.work.join(format!("{tag}.conf"));
            fs::write(&conf, smcroute_config(k))?;
            let ident = format!("{}-smcroute", ctx.bench.prefix);
            cmd.args(["smcrouted", "-n", "-N", "-l", "notice", "-i", &ident, "-f"])
                .arg(&conf)
                .arg("-u")
                .arg(ctx.work.join(format!("{ident}.sock")))
                .arg("-P")
                .arg(ctx.work.join(format!("{ident}.pid")));
        }
        Mode::Socket | Mode::Xdp => {
            let conf = ctx.work.join(format!("{tag}-{mode:?}.toml"));
            fs::write(&conf, config(mode, k, ctx.batch))?;
            cmd.arg(ctx.bin)
                .arg("run")
                .arg("--config")
                .arg(&conf)
                .arg("--ready-file")
                .arg(&ready);
            if let Some(obj) = ctx.ebpf_object {
                cmd.env(ebpf::OBJECT_ENV, obj);
            }
        }
    }
    let mut p = spawn(mode.name(), &mut cmd)?;
    // fanout says ready by file; smcrouted by answering on its socket.
    let ok = lab::wait_until(Duration::from_secs(15), || {
        if !p.is_running() {
            return Some(false);
        }
        let up = match mode {
            Mode::Kernel => smcroute_ready(ctx, &ident_of(ctx)),
            _ => ready.exists(),
        };
        up.then_some(true)
    });
    match ok {
        Some(true) => Ok(Ok(p)),
        Some(false) => {
            let done = p.finish(Duration::from_secs(2))?;
            let why = done
                .stderr
                .lines()
                .chain(done.stdout.lines())
                .find(|l| !l.trim().is_empty())
                .unwrap_or("exited")
                .trim()
                .to_owned();
            // "error: /path/to/config.toml: reason; advice" -> "reason".
            let why = why.rsplit(".toml: ").next().unwrap_or(&why);
            let why = why.split("; ").next().unwrap_or(why);
            Ok(Err(format!("{why} ({})", done.status)))
        }
        None => Ok(Err("not ready within 15 s".to_owned())),
    }
}

fn ident_of(ctx: &Ctx) -> String {
    format!("{}-smcroute", ctx.bench.prefix)
}

/// smcrouted answers on its control socket once it has read its config.
fn smcroute_ready(ctx: &Ctx, ident: &str) -> bool {
    let sock = ctx.work.join(format!("{ident}.sock"));
    sock.exists()
        && output_of(
            ctx.bench
                .edge
                .command("smcroutectl")
                .arg("-u")
                .arg(&sock)
                .arg("show"),
        )
        .is_some()
}

/// Sends a short burst until every output delivers (routes resolved, caches
/// warm); false when nothing arrives within the deadline.
fn warm_up(ctx: &Ctx, k: usize) -> Result<bool> {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        let before = ctx.bench.sink_rx(k)?;
        generate(ctx, 1472, 2000, 0.5, Some(100_000))?;
        settle(ctx, k)?;
        let after = ctx.bench.sink_rx(k)?;
        if after.iter().zip(&before).all(|(a, b)| a > b) {
            return Ok(true);
        }
    }
    Ok(false)
}

fn measure_mode(ctx: &Ctx, mode: Mode) -> Result<ModeResult> {
    let mut cells = Vec::new();
    for &k in &ctx.plan.outputs {
        let mut engine = match start(ctx, mode, k)? {
            Ok(p) => p,
            Err(why) => {
                println!("  {}: not available: {why}", mode.name());
                return Ok(ModeResult {
                    mode,
                    outcome: Outcome::Unavailable(why),
                });
            }
        };
        let napi = ctx.bench.kernel_threads()?;
        if !warm_up(ctx, k)? {
            let _ = engine.terminate();
            let done = engine.finish(Duration::from_secs(5))?;
            let why = format!(
                "no replica reached all {k} sinks during the warm-up; {}",
                done.stderr.lines().last().unwrap_or("").trim()
            );
            println!("  {}: {why}", mode.name());
            return Ok(ModeResult {
                mode,
                outcome: Outcome::Unavailable(why),
            });
        }
        let pid = (mode != Mode::Kernel).then(|| engine.id());
        for &payload in &ctx.plan.payloads {
            let mut reps = Vec::new();
            for _ in 0..ctx.plan.reps {
                reps.push(one_rep(ctx, payload, k, pid, &napi)?);
            }
            if ctx.plan.perf {
                profile(ctx, mode, payload, k)?;
            }
            let cell = Cell {
                payload,
                outputs: k,
                reps,
            };
            let s = Stats::of(&cell);
            println!(
                "  {:<13} payload {payload:>4} x{k:>2}: {:>10.0} replicas/s, loss {:>5.1} %, {:>6.0} ns machine CPU/replica",
                mode.name(),
                s.replicas.0,
                s.loss.0 * 100.0,
                s.machine.0
            );
            cells.push(cell);
        }
        if engine.is_running() {
            engine.terminate()?;
            let done = engine.finish(Duration::from_secs(10))?;
            // The engine's log (its rung, wakeup strategy, final report)
            // next to the other outputs.
            let log = ctx
                .work
                .join(format!("{}-{k}.log", mode.name().replace(' ', "-")));
            let _ = fs::write(&log, format!("{}{}", done.stdout, done.stderr));
            if mode != Mode::Kernel && !done.status.success() {
                bail!(
                    "{} exited with {} when stopped: {}",
                    mode.name(),
                    done.status,
                    done.stderr.trim()
                );
            }
        } else {
            let done = engine.finish(Duration::from_secs(1))?;
            bail!(
                "{} died during the measurement ({}): {}",
                mode.name(),
                done.status,
                done.stderr.trim()
            );
        }
    }
    Ok(ModeResult {
        mode,
        outcome: Outcome::Cells(cells),
    })
}

/// One unmeasured pass under `perf record -C <edge CPU> -g`; writes the
/// top symbols (self time) next to the other outputs.
fn profile(ctx: &Ctx, mode: Mode, payload: usize, k: usize) -> Result<()> {
    let name = format!("perf-{}-{payload}-{k}", mode.name().replace(' ', "-"));
    let data = ctx.work.join(format!("{name}.data"));
    let secs = ctx.plan.seconds;
    let mut perf = Command::new("perf");
    perf.args([
        "record",
        "-q",
        "-g",
        "-C",
        &ctx.layout.edge_cpu.to_string(),
        "-o",
    ])
    .arg(&data)
    .args(["--", "sleep", &(secs + 0.5).to_string()]);
    let mut recorder = spawn("perf record", &mut perf)?;
    generate(ctx, payload, u64::MAX / 2, secs, ctx.plan.rate)?;
    let done = recorder.finish(Duration::from_secs_f64(secs + 30.0))?;
    if !done.status.success() {
        bail!(
            "perf record failed ({}): {}",
            done.status,
            done.stderr.trim()
        );
    }
    let report = Command::new("perf")
        .args([
            "report",
            "--no-children",
            "--sort",
            "comm,dso,sym",
            "--stdio",
            "-g",
            "none",
            "-i",
        ])
        .arg(&data)
        .output()
        .context("perf report")?;
    let text: String = String::from_utf8_lossy(&report.stdout)
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .take(40)
        .map(|l| format!("{l}\n"))
        .collect();
    let out = ctx.work.join(format!("{name}.txt"));
    fs::write(&out, &text).with_context(|| format!("write {}", out.display()))?;
    println!("    perf: {}", out.display());
    Ok(())
}

// ---------------------------------------------------------------- statistics

fn median(values: impl Iterator<Item = f64>) -> f64 {
    let mut v: Vec<f64> = values.collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// (median, min, max).
type Spread = (f64, f64, f64);

fn spread(values: impl Iterator<Item = f64> + Clone) -> Spread {
    let min = values.clone().fold(f64::INFINITY, f64::min);
    let max = values.clone().fold(f64::NEG_INFINITY, f64::max);
    (median(values), min, max)
}

/// A cell's figures, each as (median, min, max) over the repetitions.
struct Stats {
    offered: Spread,
    replicas: Spread,
    gbps: Spread,
    loss: Spread,
    ingress_loss: Spread,
    machine: Spread,
    edge: Spread,
    engine: Option<Spread>,
    napi: Spread,
    attributed: Spread,
}

impl Stats {
    fn of(c: &Cell) -> Stats {
        let per = |f: fn(&Rep) -> f64| spread(c.reps.iter().map(f));
        let k = c.outputs.max(1) as f64;
        let p = c.payload as f64;
        let d = |r: &Rep| r.delivered.max(1) as f64;
        Stats {
            offered: per(|r| r.offered as f64 / r.gen_secs),
            replicas: per(|r| r.delivered as f64 / r.gen_secs),
            gbps: spread(
                c.reps
                    .iter()
                    .map(|r| r.delivered as f64 * p * 8.0 / r.gen_secs / 1e9),
            ),
            loss: spread(
                c.reps
                    .iter()
                    .map(|r| 1.0 - r.delivered as f64 / (r.offered as f64 * k).max(1.0)),
            ),
            ingress_loss: spread(
                c.reps
                    .iter()
                    .map(|r| 1.0 - r.arrived as f64 / (r.offered as f64).max(1.0)),
            ),
            machine: spread(c.reps.iter().map(|r| r.machine_ns / d(r))),
            edge: spread(c.reps.iter().map(|r| r.edge_cpu_ns / d(r))),
            engine: c
                .reps
                .iter()
                .all(|r| r.engine_ns.is_some())
                .then(|| spread(c.reps.iter().map(|r| r.engine_ns.unwrap_or(0.0) / d(r)))),
            napi: spread(c.reps.iter().map(|r| r.napi_ns / d(r))),
            attributed: spread(
                c.reps
                    .iter()
                    .map(|r| (r.engine_ns.unwrap_or(0.0) + r.napi_ns) / d(r)),
            ),
        }
    }
}

fn fmt_spread(s: Spread, scale: f64, digits: usize) -> String {
    // What rounds to zero prints as 0 (no "-0.0" from a late replica
    // counted in the next window).
    let f = |v: f64| {
        let x = v * scale;
        let x = if x.abs() < 0.5 * 10f64.powi(-(digits as i32)) {
            0.0
        } else {
            x
        };
        format!("{x:.digits$}")
    };
    if (s.2 - s.1).abs() <= f64::EPSILON * s.0.abs().max(1.0) {
        f(s.0)
    } else {
        format!("{} ({}–{})", f(s.0), f(s.1), f(s.2))
    }
}

// ---------------------------------------------------------------- report

struct Report<'a> {
    plan: &'a Plan,
    layout: Layout,
    ceiling: &'a [Cell],
    results: &'a [ModeResult],
    command: &'a str,
    load: String,
}

impl Report<'_> {
    fn markdown(&self) -> String {
        let mut md = String::new();
        let date =
            output_of(Command::new("date").args(["-u", "+%Y-%m-%d %H:%M UTC"])).unwrap_or_default();
        let kernel = output_of(Command::new("uname").arg("-r")).unwrap_or_default();
        let model = fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|c| {
                c.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split(':').nth(1))
                    .map(|s| s.trim().to_owned())
            })
            .unwrap_or_else(|| "unknown CPU".to_owned());
        let _ = writeln!(md, "### Lab benchmark: {}", date.trim());
        let _ = writeln!(md);
        let _ = writeln!(md, "- command: `{}`", self.command);
        let _ = writeln!(
            md,
            "- machine: {model}, {} online CPUs, kernel {}; {}",
            self.layout.cpus,
            kernel.trim(),
            self.load
        );
        let _ = writeln!(
            md,
            "- cells: {} repetitions of {} s of {} sending each; median, (min–max) when they differ",
            self.plan.reps,
            self.plan.seconds,
            self.plan
                .rate
                .map_or("unpaced (the edge overloaded)".to_owned(), |r| format!(
                    "{r} datagrams/s"
                ))
        );
        let _ = writeln!(md, "- layout: {}", self.layout.describe());
        let _ = writeln!(
            md,
            "- columns: *offered* = datagrams/s the generator sent; *replicas/s* = datagrams/s \
             counted on all sink interfaces together; *Gbps* = UDP payload bits delivered; \
             *loss* = 1 − delivered / (offered × outputs); *in0 loss* = the part of the offered datagrams that never entered the edge (dropped at in0's NAPI ring); *machine* = busy time of all CPUs \
             (cpuidle residency) per delivered replica, generator included; *edge CPU* = busy \
             time of the edge CPU per replica; *engine* = the fanout process's own CPU time \
             (schedstat) per replica; *kernel threads* = CPU time of the in0 NAPI kthread and the edge CPU's ksoftirqd \
             per replica (where the kernel mode replicates); *engine + kernel threads* is the \
             edge's work measured per thread (schedstat), immune to other processes on the \
             machine, unlike *machine* and *edge CPU* (idle residency counts every process)."
        );
        let _ = writeln!(md);
        let _ = writeln!(md, "Generator ceiling (no engine; in0 drops the stream):");
        let _ = writeln!(md);
        let _ = writeln!(md, "| payload | offered (datagrams/s) | Gbps offered |");
        let _ = writeln!(md, "|---:|---:|---:|");
        for c in self.ceiling {
            let s = Stats::of(c);
            let gbps = (
                s.offered.0 * c.payload as f64 * 8.0 / 1e9,
                s.offered.1 * c.payload as f64 * 8.0 / 1e9,
                s.offered.2 * c.payload as f64 * 8.0 / 1e9,
            );
            let _ = writeln!(
                md,
                "| {} | {} | {} |",
                c.payload,
                fmt_spread(s.offered, 1.0, 0),
                fmt_spread(gbps, 1.0, 2)
            );
        }
        let _ = writeln!(md);
        let _ = writeln!(
            md,
            "| mode | payload | outputs | offered (Mdgram/s) | replicas/s | Gbps | loss % | in0 loss % | machine ns/replica | edge CPU ns/replica | engine ns/replica | kernel threads ns/replica | engine + kernel threads ns/replica |"
        );
        let _ = writeln!(
            md,
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
        );
        for r in self.results {
            match &r.outcome {
                Outcome::Unavailable(why) => {
                    let _ = writeln!(
                        md,
                        "| {} | – | – | not available: {} | | | | | | | | | |",
                        r.mode.name(),
                        why.replace('|', "/")
                    );
                }
                Outcome::Cells(cells) => {
                    for c in cells {
                        let s = Stats::of(c);
                        let _ = writeln!(
                            md,
                            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                            r.mode.name(),
                            c.payload,
                            c.outputs,
                            fmt_spread(s.offered, 1e-6, 3),
                            fmt_spread(s.replicas, 1.0, 0),
                            fmt_spread(s.gbps, 1.0, 2),
                            fmt_spread(s.loss, 100.0, 1),
                            fmt_spread(s.ingress_loss, 100.0, 1),
                            fmt_spread(s.machine, 1.0, 0),
                            fmt_spread(s.edge, 1.0, 0),
                            s.engine.map_or("–".to_owned(), |e| fmt_spread(e, 1.0, 0)),
                            fmt_spread(s.napi, 1.0, 0),
                            fmt_spread(s.attributed, 1.0, 0),
                        );
                    }
                }
            }
        }
        md
    }

    /// Delivered replicas/s against outputs, one panel per payload, one line per mode.
    fn svg(&self) -> String {
        let (pw, ph, m) = (320.0, 240.0, 50.0);
        let panels = self.plan.payloads.len().max(1);
        let w = panels as f64 * (pw + m) + m;
        let h = ph + 2.0 * m + 30.0;
        let mut svg = format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"11\">\n\
             <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
             <text x=\"{}\" y=\"18\" text-anchor=\"middle\" font-size=\"14\">delivered replicas/s (median) vs outputs</text>\n",
            w / 2.0
        );
        let xs = &self.plan.outputs;
        let xmax = *xs.iter().max().unwrap_or(&1) as f64;
        for (pi, &payload) in self.plan.payloads.iter().enumerate() {
            let x0 = m + pi as f64 * (pw + m);
            let y0 = m;
            let series: Vec<(Mode, Vec<(usize, f64)>)> = self
                .results
                .iter()
                .filter_map(|r| match &r.outcome {
                    Outcome::Cells(cells) => Some((
                        r.mode,
                        cells
                            .iter()
                            .filter(|c| c.payload == payload)
                            .map(|c| (c.outputs, Stats::of(c).replicas.0))
                            .collect(),
                    )),
                    Outcome::Unavailable(_) => None,
                })
                .collect();
            let ymax = series
                .iter()
                .flat_map(|(_, pts)| pts.iter().map(|p| p.1))
                .fold(1.0f64, f64::max)
                * 1.1;
            let px = |x: f64| x0 + x / xmax * pw;
            let py = |y: f64| y0 + ph - y / ymax * ph;
            let _ = writeln!(
                svg,
                "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" font-size=\"12\">payload {payload} B</text>",
                x0 + pw / 2.0,
                y0 - 8.0
            );
            let _ = writeln!(
                svg,
                "<rect x=\"{x0}\" y=\"{y0}\" width=\"{pw}\" height=\"{ph}\" fill=\"none\" stroke=\"#888\"/>"
            );
            for t in 0..=4 {
                let y = ymax * t as f64 / 4.0;
                let _ = writeln!(
                    svg,
                    "<line x1=\"{x0}\" x2=\"{}\" y1=\"{yy}\" y2=\"{yy}\" stroke=\"#eee\"/><text x=\"{}\" y=\"{}\" text-anchor=\"end\">{:.2}M</text>",
                    x0 + pw,
                    x0 - 3.0,
                    py(y) + 4.0,
                    y / 1e6,
                    yy = py(y)
                );
            }
            for &x in xs {
                let _ = writeln!(
                    svg,
                    "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{x}</text>",
                    px(x as f64),
                    y0 + ph + 14.0
                );
            }
            let _ = writeln!(
                svg,
                "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">outputs</text>",
                x0 + pw / 2.0,
                y0 + ph + 28.0
            );
            for (mode, pts) in &series {
                let path: Vec<String> = pts
                    .iter()
                    .map(|&(x, y)| format!("{:.1},{:.1}", px(x as f64), py(y)))
                    .collect();
                let _ = writeln!(
                    svg,
                    "<polyline fill=\"none\" stroke=\"{c}\" stroke-width=\"2\" points=\"{}\"/>",
                    path.join(" "),
                    c = mode.color()
                );
                for &(x, y) in pts {
                    let _ = writeln!(
                        svg,
                        "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"{}\"/>",
                        px(x as f64),
                        py(y),
                        mode.color()
                    );
                }
            }
        }
        // Legend.
        let mut lx = m;
        for r in self.results {
            let label = match r.outcome {
                Outcome::Cells(_) => r.mode.name().to_owned(),
                Outcome::Unavailable(_) => format!("{} (not available)", r.mode.name()),
            };
            let _ = writeln!(
                svg,
                "<rect x=\"{lx}\" y=\"{}\" width=\"12\" height=\"12\" fill=\"{}\"/><text x=\"{}\" y=\"{}\">{label}</text>",
                h - 22.0,
                r.mode.color(),
                lx + 16.0,
                h - 12.0
            );
            lx += 200.0;
        }
        svg.push_str("</svg>\n");
        svg
    }
}

/// The command as typed (`cargo xtask bench ...`), for the report.
fn command_line() -> String {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) != Some("bench") {
        return "cargo xtask bench --quick (run by `cargo xtask test`)".to_owned();
    }
    format!("cargo xtask {}", args.join(" "))
}

/// Replaces the generated section `tag` of BENCHMARKS.md (or appends one).
fn write_benchmarks_md(markdown: &str, tag: &str, svg_name: &str) -> Result<()> {
    let path = ebpf::repo_root().join("BENCHMARKS.md");
    let old = fs::read_to_string(&path).unwrap_or_else(|_| "# Benchmarks\n".to_owned());
    let (begin, end) = (format!("{BEGIN} {tag} -->"), format!("{END} {tag} -->"));
    let section = format!(
        "{begin}\n{markdown}\n![delivered replicas/s vs outputs](docs/{svg_name})\n\n{end}"
    );
    let new = match (old.find(&begin), old.find(&end)) {
        (Some(b), Some(e)) if e > b => {
            format!("{}{section}{}", &old[..b], &old[e + end.len()..])
        }
        _ => format!("{}\n\n{section}\n", old.trim_end()),
    };
    fs::write(&path, new).with_context(|| format!("write {}", path.display()))
}

// ---------------------------------------------------------------- callgrind

/// Instructions per replica of the in-memory engine (`benches/engine.rs`
/// in its `FANOUT_CALLGRIND` mode): two runs of one cell with different
/// round counts under callgrind; the difference over the extra replicas.
fn callgrind(args: &Args) -> Result<()> {
    let out = cargo()
        .args([
            "bench",
            "-p",
            "fanout",
            "--bench",
            "engine",
            "--no-run",
            "--message-format=json",
        ])
        .output()
        .context("cargo bench --no-run")?;
    if !out.status.success() {
        bail!(
            "building the engine bench failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let exe = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["target"]["name"] == "engine")
        .find_map(|v| v["executable"].as_str().map(PathBuf::from))
        .context("no engine bench executable in cargo's output")?;
    let batch = args.batch.map_or(64, usize::from);
    let (r1, r2) = (20usize, 120usize);
    let payloads = args
        .payloads
        .clone()
        .unwrap_or_else(|| vec![64, 1472, 8972]);
    let outputs_list = args.outputs.clone().unwrap_or_else(|| vec![8]);
    println!("instructions per replica (valgrind callgrind, batch {batch}, rounds {r2} - {r1}):");
    for (outputs, payload) in outputs_list
        .iter()
        .flat_map(|&o| payloads.iter().map(move |&p| (o, p)))
    {
        let ir = |rounds: usize| -> Result<u64> {
            let out = Command::new("valgrind")
                .args(["--tool=callgrind", "--callgrind-out-file=/dev/null"])
                .arg(&exe)
                .env(
                    "FANOUT_CALLGRIND",
                    format!("{batch},{payload},{outputs},{rounds}"),
                )
                .output()
                .context("valgrind")?;
            let err = String::from_utf8_lossy(&out.stderr);
            if !out.status.success() {
                bail!("valgrind failed: {err}");
            }
            err.lines()
                .find_map(|l| l.split("Collected :").nth(1))
                .and_then(|n| n.trim().parse().ok())
                .with_context(|| format!("no 'Collected :' line in {err}"))
        };
        let (a, b) = (ir(r1)?, ir(r2)?);
        let replicas = ((r2 - r1) * batch * outputs) as f64;
        println!(
            "  {outputs:>2} outputs, payload {payload:>4}: {:.1} instructions per replica ({} - {} Ir over {} replicas)",
            (b - a) as f64 / replicas,
            b,
            a,
            replicas
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_generator_line() {
        let line = "fanout gen: sent 1796608/100000000 datagrams (114982912 bytes) to 239.1.1.1:5004 in 1.00 s (1796376 pps, 0 ENOBUFS retries; fast: 64 per GSO train, 3509 calls), time bound reached\n";
        assert_eq!(parse_gen(line), Some((1_796_608, 1.0)));
        assert_eq!(parse_gen("garbage"), None);
    }

    #[test]
    fn median_and_spread() {
        assert_eq!(median([3.0, 1.0, 2.0].into_iter()), 2.0);
        assert_eq!(median([4.0, 1.0, 2.0, 3.0].into_iter()), 2.5);
        assert_eq!(spread([3.0, 1.0, 2.0].into_iter()), (2.0, 1.0, 3.0));
        assert_eq!(fmt_spread((2.0, 2.0, 2.0), 1.0, 1), "2.0");
        assert_eq!(fmt_spread((2.0, 1.0, 3.0), 1.0, 0), "2 (1–3)");
        assert_eq!(fmt_spread((-1e-7, -1e-7, -1e-7), 100.0, 1), "0.0");
    }

    #[test]
    fn configs_name_every_output() {
        let c = config(Mode::Xdp, 3, None);
        assert!(c.contains("mode = \"xdp\""));
        assert_eq!(c.matches("[[flow.output]]").count(), 3);
        assert!(c.contains("interface = \"out2\""));
        assert!(!c.contains("batch_size"));
        let b = config(Mode::Socket, 1, Some(16));
        assert!(b.contains("mode = \"socket\"\nbatch_size = 16\n"), "{b}");
        let s = smcroute_config(2);
        assert!(s.contains("mroute from in0 group 239.1.1.1 to out0 out1"));
        assert!(s.contains("phyint out1 enable"));
    }
}
