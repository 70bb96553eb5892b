//! `cargo xtask demo`: the first thing a new user runs. It brings the lab up,
//! runs the engine in the edge namespace on a built-in configuration (one
//! IPv4 multicast flow in, 8 unicast receivers and 1 multicast re-emission
//! out), sends numbered jumbo and standard datagrams from the source
//! namespace, checks every byte each output received in the sink namespace,
//! prints a table, and takes the lab down (also on failure). It fails when any
//! output lost, duplicated or corrupted a datagram.

use std::{
    fs,
    path::Path,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use fanout::{
    lab::{self, Lab, Process, SinkReport, addr, iface},
    stats::Snapshot,
};

use crate::children::{build_fanout, on_interrupt, spawn};
use crate::cmd::{is_root, target_dir};
use crate::{ebpf, setup};

/// Namespace prefix of the demo lab.
const PREFIX: &str = "fo-demo";
const GROUP: &str = "239.10.0.1";
const PORT: u16 = 5000;
const UNICAST_PORTS: std::ops::RangeInclusive<u16> = 6001..=6008;
const MCAST_OUT: &str = "239.255.10.1";
const MCAST_OUT_PORT: u16 = 7000;
const SIZES: &str = "1472,8972";

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Datagrams to send.
    #[arg(long, default_value_t = 2000)]
    count: u64,
    /// Datagrams per second.
    #[arg(long, default_value_t = 1000)]
    rate: u64,
    /// Run this program as the engine instead of the fanout just built (to
    /// try the demo against another build); it gets the same arguments.
    #[arg(long)]
    engine: Option<std::path::PathBuf>,
    /// Skip `cargo xtask setup`.
    #[arg(long)]
    skip_setup: bool,
    /// The engine mode of the demo's configuration: `auto` (XDP where it
    /// runs, on the lab it does), `xdp` or `socket` (to compare).
    #[arg(long, default_value = "auto", value_parser = ["auto", "xdp", "socket"])]
    mode: String,
}

/// The built-in configuration: the flow and its nine outputs.
fn config(mode: &str) -> String {
    let mut toml = format!(
        "# fanout demo: written by `cargo xtask demo`.\n\
         [engine]\n\
         mode = \"{mode}\"\n\
         \n\
         [[flow]]\n\
         name = \"demo\"\n\
         interface = \"{in0}\"\n\
         group = \"{GROUP}\"\n\
         port = {PORT}\n",
        in0 = iface::IN0,
    );
    for port in UNICAST_PORTS {
        toml += &format!(
            "\n  [[flow.output]]\n  name = \"rx{n}\"\n  unicast = \"{ip}:{port}\"\n  interface = \"{out0}\"\n",
            n = port - UNICAST_PORTS.start() + 1,
            ip = addr::SNK0_V4,
            out0 = iface::OUT0
        );
    }
    toml += &format!(
        "\n  [[flow.output]]\n  name = \"site-b\"\n  multicast = \"{MCAST_OUT}:{MCAST_OUT_PORT}\"\n  interface = \"{out1}\"\n  ttl = 16\n",
        out1 = iface::OUT1
    );
    toml
}

/// The sink's listen addresses, in table order, with a label for each.
fn outputs() -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = UNICAST_PORTS
        .map(|p| {
            (
                format!("{}:{p}", addr::SNK0_V4),
                format!("unicast via {}", iface::OUT0),
            )
        })
        .collect();
    out.push((
        format!("{MCAST_OUT}:{MCAST_OUT_PORT}"),
        format!("multicast via {} ttl 16", iface::OUT1),
    ));
    out
}

fn stage(n: usize, text: &str) {
    println!("[{n}/7] {text}");
}

pub fn run(args: Args) -> Result<()> {
    if !is_root() {
        bail!("the demo creates network namespaces: run it as root");
    }
    println!(
        "fanout demo: one multicast stream in, {} copies out",
        outputs().len()
    );
    println!();

    stage(1, "setup");
    if args.skip_setup {
        println!("      skipped (--skip-setup)");
    } else {
        setup::run()?;
    }

    stage(2, "build the XDP program and fanout (release)");
    let t = Instant::now();
    // The program first: fanout's build script embeds it, and the demo's
    // `mode = "auto"` then runs the XDP datapath. Without it the demo still
    // runs, on the socket engine, and says so.
    let object = match ebpf::build(true) {
        Ok(object) => {
            println!("      XDP program {}", object.display());
            Some(object)
        }
        Err(err) => {
            println!(
                "      XDP program not built ({err:#}): fanout will fall back to the socket engine"
            );
            None
        }
    };
    let bin = build_fanout(object.as_deref())?;
    println!(
        "      {} ({:.1} s)",
        bin.display(),
        t.elapsed().as_secs_f64()
    );

    let work = target_dir().join("fanout-demo");
    fs::create_dir_all(&work).with_context(|| format!("create {}", work.display()))?;
    for stale in [
        "engine.ready",
        "sink.ready",
        "sink-report.json",
        "stats.json",
    ] {
        let _ = fs::remove_file(work.join(stale));
    }

    stage(3, "lab up");
    on_interrupt("demo", PREFIX.to_owned())?;
    let removed = Lab::down(PREFIX)?;
    if !removed.is_empty() {
        println!(
            "      removed leftovers of an earlier run: {}",
            removed.join(", ")
        );
    }
    let lab = Lab::up(PREFIX).context("lab up")?;
    println!(
        "      {src} [{src0} {s4}] ==> [{in0} {i4}] {edge} [{out0} | {out1}] ==> [{snk0} | {snk1}] {sink}",
        src = lab.src.name(),
        src0 = iface::SRC0,
        s4 = addr::SRC0_V4,
        in0 = iface::IN0,
        i4 = addr::IN0_V4,
        edge = lab.edge.name(),
        out0 = iface::OUT0,
        out1 = iface::OUT1,
        snk0 = iface::SNK0,
        snk1 = iface::SNK1,
        sink = lab.sink.name(),
    );
    println!("      veth pairs, MTU 9000, private addresses, all inside the namespaces");

    // The lab guard outlives everything below: whatever fails, it goes down.
    let result = run_in_lab(&args, &lab, &bin, &work);
    drop(lab);
    println!();
    println!("lab {PREFIX} taken down; files kept in {}", work.display());
    result
}

fn run_in_lab(args: &Args, lab: &Lab, bin: &Path, work: &Path) -> Result<()> {
    let config_path = work.join("config.toml");
    fs::write(&config_path, config(&args.mode))
        .with_context(|| format!("write {}", config_path.display()))?;
    let stats = work.join("stats.json");
    let engine_ready = work.join("engine.ready");

    stage(4, &format!("engine: fanout run in {}", lab.edge.name()));
    println!(
        "      config {} (flow {GROUP}:{PORT} on {}, 8 unicast + 1 multicast outputs)",
        config_path.display(),
        iface::IN0
    );
    let mut check_cmd = lab.edge.command(bin);
    check_cmd.arg("check").arg("--config").arg(&config_path);
    let checked = spawn("fanout check", &mut check_cmd)?.finish(Duration::from_secs(30))?;
    if !checked.status.success() {
        bail!(
            "fanout check refused the demo configuration ({}):\n{}{}",
            checked.status,
            checked.stdout,
            checked.stderr
        );
    }
    println!("      fanout check: configuration valid");
    let mut engine_cmd = lab.edge.command(args.engine.as_deref().unwrap_or(bin));
    engine_cmd
        .arg("run")
        .arg("--config")
        .arg(&config_path)
        .arg("--stats-json")
        .arg(&stats)
        .arg("--ready-file")
        .arg(&engine_ready);
    let mut engine = spawn("fanout run", &mut engine_cmd)?;
    wait_ready(&mut engine, &engine_ready, "engine")?;

    stage(
        5,
        &format!("sinks: fanout sink in {} on 9 addresses", lab.sink.name()),
    );
    let report_path = work.join("sink-report.json");
    let sink_ready = work.join("sink.ready");
    let listen: Vec<String> = outputs().into_iter().map(|(l, _)| l).collect();
    let mut sink_cmd = lab.sink.command(bin);
    sink_cmd
        .args(["lab", "sink", "--listen", &listen.join(",")])
        .args(["--join", &format!("{MCAST_OUT}@{}", iface::SNK1)])
        .args(["--expect", &args.count.to_string(), "--timeout", "3"])
        .args([
            "--max-seconds",
            &(args.count / args.rate.max(1) + 60).to_string(),
        ])
        .arg("--report")
        .arg(&report_path)
        .arg("--ready-file")
        .arg(&sink_ready);
    let mut sink = spawn("fanout sink", &mut sink_cmd)?;
    wait_ready(&mut sink, &sink_ready, "sink")?;

    stage(
        6,
        &format!(
            "generator: {} datagrams of {} bytes (alternating) at {}/s to {GROUP}:{PORT} from {}",
            args.count,
            SIZES.replace(',', "/"),
            args.rate,
            iface::SRC0
        ),
    );
    let mut gen_cmd = lab.src.command(bin);
    gen_cmd
        .args([
            "lab",
            "gen",
            "--dest",
            &format!("{GROUP}:{PORT}"),
            "--iface",
            iface::SRC0,
        ])
        .args(["--sizes", SIZES, "--count", &args.count.to_string()])
        .args(["--rate", &args.rate.to_string(), "--ttl", "8"]);
    let budget = Duration::from_secs(args.count / args.rate.max(1) + 30);
    let sent = spawn("fanout gen", &mut gen_cmd)?.finish(budget)?;
    print!("{}", indent(&sent.stdout));
    if !sent.status.success() {
        bail!(
            "fanout gen failed ({}): {}",
            sent.status,
            sent.stderr.trim()
        );
    }

    // The sink stops once every output has everything, or 3 s after the last datagram.
    let received = sink.finish(Duration::from_secs(60))?;

    stage(7, "stop the engine (SIGTERM)");
    let stopped = if engine.is_running() {
        engine.terminate()?;
        engine.finish(Duration::from_secs(10))?
    } else {
        let done = engine.finish(Duration::from_secs(1))?;
        bail!(
            "the engine exited before it was stopped ({}):\n{}",
            done.status,
            done.stderr.trim()
        );
    };

    let report: SinkReport =
        serde_json::from_str(&fs::read_to_string(&report_path).with_context(|| {
            format!(
                "read {} (sink said: {})",
                report_path.display(),
                received.stderr.trim()
            )
        })?)
        .context("parse the sink report")?;

    println!();
    println!(
        "What each output received ({} datagrams sent, every byte checked):",
        args.count
    );
    println!(
        "  {:<22} {:<26} {:>8} {:>8} {:>7} {:>5} {:>7} {:>7}  status",
        "output", "path", "expected", "received", "missing", "dup", "reorder", "corrupt"
    );
    let labels = outputs();
    for (o, (_, path)) in report.outputs.iter().zip(&labels) {
        println!(
            "  {:<22} {:<26} {:>8} {:>8} {:>7} {:>5} {:>7} {:>7}  {}",
            o.name,
            path,
            o.expected,
            o.received,
            o.missing,
            o.duplicated,
            o.reordered,
            o.corrupted,
            o.status()
        );
    }
    let total_rx: u64 = report.outputs.iter().map(|o| o.received).sum();
    let total_bytes: u64 = report.outputs.iter().map(|o| o.bytes).sum();
    println!(
        "  total: {total_rx} of {} replicas, {:.1} MB; sink stopped: {}",
        args.count * labels.len() as u64,
        total_bytes as f64 / 1e6,
        report.stopped
    );

    // What the sink's kernel refused: a replica with a bad IP or UDP
    // checksum is dropped before any socket sees it, so it is not in the
    // table above; these counters say whether any was.
    let csum_errors = lab::snmp::checksum_errors(&lab.sink)?;
    let rejected: u64 = csum_errors.iter().map(|(_, n)| n).sum();
    println!(
        "  rejected by the sinks' kernel for bad checksums: {rejected} ({})",
        csum_errors
            .iter()
            .map(|(name, n)| format!("{name} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    );

    println!();
    println!("The engine's own counters (fanout run, on SIGTERM):");
    print!("{}", indent(&stopped.stdout));
    if !stopped.status.success() {
        println!(
            "      (engine exit status {}; stderr: {})",
            stopped.status,
            stopped.stderr.trim()
        );
    }
    // The engine's side of the books: every received datagram is accounted
    // for at every output (sent + dropped = received), and it received them all.
    let accounting = engine_accounting(&stats, args.count);
    match &accounting {
        Ok(line) => println!("      {line}"),
        Err(err) => println!("      ACCOUNTING: {err:#}"),
    }
    println!("      machine-readable: {}", stats.display());
    let rung = fs::read_to_string(&stats)
        .ok()
        .and_then(|t| serde_json::from_str::<Snapshot>(&t).ok())
        .map_or_else(|| String::from("unknown"), |snap| snap.engine);
    println!("      engine rung: {rung}");

    println!();
    if report.is_clean() && rejected == 0 && stopped.status.success() && accounting.is_ok() {
        println!(
            "PASS: all {} outputs received all {} datagrams, byte-exact, no duplicates (engine: {rung})",
            labels.len(),
            args.count
        );
        Ok(())
    } else {
        let mut bad: Vec<String> = report
            .outputs
            .iter()
            .filter(|o| !o.is_clean())
            .map(|o| {
                format!(
                    "{} {} (missing {}, corrupt {}, dup {})",
                    o.name,
                    o.status(),
                    o.missing,
                    o.corrupted,
                    o.duplicated
                )
            })
            .collect();
        if rejected > 0 {
            bad.push(format!(
                "{rejected} replica(s) rejected by the sinks' kernel for bad checksums"
            ));
        }
        bail!(
            "FAIL: {}{}",
            if bad.is_empty() {
                "all outputs clean but the engine did not exit cleanly or its accounting is off"
                    .to_owned()
            } else {
                bad.join("; ")
            },
            if stopped.status.success() {
                String::new()
            } else {
                format!(" [engine: {}]", stopped.status)
            }
        )
    }
}

/// Reads the engine's `--stats-json` and checks its books: one flow that
/// received `count` datagrams, and `sent + dropped = received` at every output.
fn engine_accounting(path: &Path, count: u64) -> Result<String> {
    let json = fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?;
    let snapshot: Snapshot =
        serde_json::from_str(&json).with_context(|| format!("parse {}", path.display()))?;
    snapshot
        .check_accounting()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let [flow] = snapshot.flows.as_slice() else {
        bail!(
            "expected 1 flow in {}, found {}",
            path.display(),
            snapshot.flows.len()
        );
    };
    if flow.received != count {
        bail!("the engine received {} of {count} datagrams", flow.received);
    }
    let sent: u64 = flow.outputs.iter().map(|o| o.sent).sum();
    let dropped: u64 = flow.outputs.iter().map(|o| o.dropped_total()).sum();
    Ok(format!(
        "accounting ({} engine): received {count} of {count}; sent {sent} + dropped {dropped} = {count} x {} outputs",
        snapshot.engine,
        flow.outputs.len()
    ))
}

/// Waits (with a deadline) for `process` to create `ready`; fails early, with
/// its stderr, if it exits first.
fn wait_ready(process: &mut Process, ready: &Path, what: &str) -> Result<()> {
    let t = Instant::now();
    let outcome = lab::wait_until(Duration::from_secs(15), || {
        if ready.exists() {
            Some(true)
        } else if !process.is_running() {
            Some(false)
        } else {
            None
        }
    });
    match outcome {
        Some(true) => {
            println!(
                "      {what} ready in {:.2} s (pid {})",
                t.elapsed().as_secs_f64(),
                process.id()
            );
            // fanout run writes its engine announcement (the rung and why
            // each higher rung was skipped) into the ready file.
            let said = std::fs::read_to_string(ready).unwrap_or_default();
            let said = said.trim();
            if !said.is_empty() && said != "ready" {
                println!("      fanout: {said}");
            }
            Ok(())
        }
        Some(false) => {
            let done = process.finish(Duration::from_secs(1))?;
            bail!(
                "{what} exited before it was ready ({}):\n{}{}",
                done.status,
                done.stdout,
                done.stderr
            )
        }
        None => bail!(
            "{what} was not ready within 15 s ({} missing)",
            ready.display()
        ),
    }
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("      {l}\n")).collect()
}
