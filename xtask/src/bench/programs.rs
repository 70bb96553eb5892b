//! The programs the lab runs, and the only place that speaks their command
//! lines and configuration files: the `fanout` binary (built here in
//! release, with the XDP program embedded when asked; run as
//! `fanout lab gen --fast`, the generator, and `fanout run`, the engine under
//! test) and `smcrouted` (the kernel-routing baseline). Every process is
//! started through [`crate::children::spawn`], so an interrupt stops it; every wait
//! has a deadline. A replicator that cannot start is an answer (`Err`
//! text: "not available"), not a failure of the run.

use std::{fmt::Write as _, fs, path::PathBuf, time::Duration};

use anyhow::{Context as _, Result, bail};
use fanout::lab::{Process, wait_until};

use super::plan::{Ctx, Mode};
use crate::children::spawn;
use crate::cmd::output_of;
use crate::ebpf;

/// The group and port the generator sends to and the engines replicate.
const GROUP: &str = "239.1.1.1";
const PORT: u16 = 5004;
/// Where fanout re-emits (a different group, so nothing loops back).
const OUT_GROUP: &str = "239.2.0.1";
const OUT_PORT: u16 = 6000;
/// Generator TTL: above the kernel's forwarding threshold of 1.
const GEN_TTL: &str = "8";

/// Builds `fanout` in release (with `xdp`, the XDP program too); returns the
/// binary and the program's object when it was built.
pub(super) fn build_fanout(xdp: bool) -> Result<(PathBuf, Option<PathBuf>)> {
    // The XDP program first: the fanout build embeds it when it exists.
    // Without it the XDP mode reports itself unavailable.
    let ebpf_object = if xdp { ebpf::build(true).ok() } else { None };
    let bin = crate::children::build_fanout(ebpf_object.as_deref())?;
    Ok((bin, ebpf_object))
}

/// Runs the generator for `seconds` (or `count` datagrams); (sent, seconds).
pub(super) fn generate(
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
pub(super) fn start(ctx: &Ctx, mode: Mode, k: usize) -> Result<Result<Process, String>> {
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
            let ident = smcroute_ident(ctx);
            cmd.args(["smcrouted", "-n", "-N", "-l", "notice", "-i", &ident, "-f"])
                .arg(&conf)
                .arg("-u")
                .arg(smcroute_socket(ctx))
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
    let ok = wait_until(Duration::from_secs(15), || {
        if !p.is_running() {
            return Some(false);
        }
        let up = match mode {
            Mode::Kernel => smcroute_ready(ctx),
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

/// smcrouted's identity (`-i`): names its control socket and pid file.
fn smcroute_ident(ctx: &Ctx) -> String {
    format!("{}-smcroute", ctx.bench.prefix)
}

fn smcroute_socket(ctx: &Ctx) -> PathBuf {
    ctx.work.join(format!("{}.sock", smcroute_ident(ctx)))
}

/// smcrouted answers on its control socket once it has read its config.
fn smcroute_ready(ctx: &Ctx) -> bool {
    let sock = smcroute_socket(ctx);
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
