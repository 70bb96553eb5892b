//! `fanout xdp attach|detach|status`: the XDP program an operator leaves
//! attached on purpose, with the program built into this binary (no source
//! tree, nightly or bpf-linker on the host; `cargo xtask load` stays for
//! developers).
//!
//! - `attach --interface IF [--config FILE]`: loads the program (the
//!   embedded one, or `[engine] xdp_object`), attaches it to IF (as
//!   `[engine] xdp_attach` says: native, generic when refused), writes the
//!   configuration's flows on IF and pins it under `[engine] xdp_pin_dir`
//!   (`/sys/fs/bpf/fanout/IF`). It stays attached after the command: its
//!   flows go to the kernel (fail-open) until `fanout run` drives it, and
//!   again after `fanout run` stops or dies (a restart never detaches it).
//! - `detach --interface IF`: removes the pins (the program detaches),
//!   unless a running `fanout run` drives it.
//! - `status [--interface IF]`: what is pinned, attached and counted, and
//!   whether `fanout run` would drive it.
//!
//! Exit codes: 0 done; 2 a bad configuration, interface or argument (the
//! message names it); 1 a failure of the system (or, for `detach`, a
//! running engine holds the program); `status` exits 3 when nothing is
//! pinned for the interface asked about (or for any, without one).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use fanout::config::{EngineConfig, XdpAttach};
use fanout::plan::Plan;
use fanout::xdp::ObjectSource;
use fanout::xdp::pinned::{self, Detached};
use fanout::xdp::program::Error as ProgramError;

use super::journal;
use super::run::DEFAULT_CONFIG;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, clap::Subcommand)]
enum Cmd {
    /// Attach the XDP program to an interface with the configuration's
    /// flows and pin it: it stays attached, failing open, until detached.
    Attach(AttachArgs),
    /// Remove a pinned program (it detaches), unless fanout run drives it.
    Detach(IfaceArgs),
    /// Show the pinned programs, their counters, and whether an engine
    /// drives them.
    Status(StatusArgs),
}

#[derive(Debug, clap::Args)]
struct AttachArgs {
    /// The ingress interface.
    #[arg(long, short, value_name = "IF")]
    interface: String,
    /// The configuration whose flows on IF are written into the program
    /// (its [engine] says the object, the attach mode and the pin directory).
    #[arg(long, short, value_name = "FILE", default_value = DEFAULT_CONFIG)]
    config: PathBuf,
}

#[derive(Debug, clap::Args)]
struct IfaceArgs {
    /// The interface.
    #[arg(long, short, value_name = "IF")]
    interface: String,
    /// The configuration whose [engine] xdp_pin_dir says where the pins are
    /// (the default directory when the file does not exist).
    #[arg(long, short, value_name = "FILE", default_value = DEFAULT_CONFIG)]
    config: PathBuf,
}

#[derive(Debug, clap::Args)]
struct StatusArgs {
    /// Only this interface (default: every pinned one).
    #[arg(long, short, value_name = "IF")]
    interface: Option<String>,
    /// As for detach.
    #[arg(long, short, value_name = "FILE", default_value = DEFAULT_CONFIG)]
    config: PathBuf,
}

pub fn main(args: Args) -> ExitCode {
    let result = match args.cmd {
        Cmd::Attach(a) => attach(&a),
        Cmd::Detach(a) => detach(&a),
        Cmd::Status(a) => status(&a),
    };
    match result {
        Ok(code) => code,
        Err((code, message)) => {
            // Configuration errors say `error:` themselves.
            let message = if message.starts_with("error: ") {
                message
            } else {
                format!("error: {message}")
            };
            eprintln!("{}", journal::line(journal::ERR, &message));
            ExitCode::from(code)
        }
    }
}

/// A failure: the exit code and the message.
type Failed = (u8, String);

fn check_iface_name(iface: &str) -> Result<(), Failed> {
    if !pinned::valid_iface_name(iface) {
        return Err((2, format!("invalid interface name {iface:?}")));
    }
    Ok(())
}

/// The `[engine]` of `config` (with the environment's overrides), or the
/// defaults when the default file does not exist.
fn engine_of(config: &Path) -> Result<EngineConfig, Failed> {
    if config == Path::new(DEFAULT_CONFIG) && !config.exists() {
        let mut engine = EngineConfig::default();
        engine
            .apply_env(|k| std::env::var(k).ok())
            .map_err(|(knob, value, why)| (2, format!("{}={value}: {why}", knob.env)))?;
        return Ok(engine);
    }
    fanout::config::Config::load(config)
        .map(|c| c.engine)
        .map_err(|e| (e.exit_code(), e.to_string()))
}

fn attach(args: &AttachArgs) -> Result<ExitCode, Failed> {
    check_iface_name(&args.interface)?;
    let plan = Plan::load(&args.config).map_err(|e| (e.exit_code(), e.to_string()))?;
    let ifname = args.interface.as_str();
    let flows: Vec<&fanout::plan::FlowPlan> = plan
        .flows
        .iter()
        .filter(|f| f.ingress.name == ifname)
        .collect();
    let Some(first) = flows.first() else {
        let mut others: Vec<&str> = plan.flows.iter().map(|f| f.ingress.name.as_str()).collect();
        others.sort_unstable();
        others.dedup();
        return Err((
            2,
            format!(
                "{}: no flow arrives on {ifname} (flows arrive on: {})",
                args.config.display(),
                others.join(", ")
            ),
        ));
    };
    let dir = plan.engine.xdp_pin_dir.join(ifname);
    if let Some(s) = pinned::status(&dir, ifname, None).map_err(system)? {
        return Err((
            2,
            format!(
                "a program is pinned for {ifname} already ({}{}): `fanout xdp detach --interface \
                 {ifname}` first",
                dir.display(),
                if s.attached() { "" } else { ", stale" }
            ),
        ));
    }
    let object =
        ObjectSource::find(plan.engine.xdp_object.as_deref()).map_err(|e| (1, e.to_string()))?;
    let mut program = object.load().map_err(|e| (1, e.to_string()))?;
    let entries: Vec<(u32, &fanout::plan::FlowPlan)> =
        (0u32..).zip(flows.iter().copied()).collect();
    let generic = plan.engine.xdp_attach == XdpAttach::Generic;
    let attached = pinned::attach_and_pin(
        &mut program,
        ifname,
        generic,
        &entries,
        first.ingress.mac,
        &dir,
    )
    .map_err(system)?;
    let mode = match (&attached.mode, &attached.native_refused) {
        (fanout::xdp::program::AttachMode::Native, _) => "native XDP".to_owned(),
        (_, Some(why)) => format!("generic XDP (native: {why})"),
        (_, None) => "generic XDP".to_owned(),
    };
    if plan.engine.xdp_attach == XdpAttach::Native
        && attached.mode != fanout::xdp::program::AttachMode::Native
    {
        let _ = pinned::detach(&dir);
        return Err((
            1,
            format!("{ifname}: native XDP refused and [engine] xdp_attach = \"native\": {mode}"),
        ));
    }
    println!(
        "attached to {ifname}: {mode}, {} from {}",
        object.describe(),
        args.config.display()
    );
    for (id, flow) in &entries {
        println!("{}", pinned::flow_line(*id, flow));
    }
    println!(
        "pinned under {}: the program stays attached; until fanout run drives it, its flows go \
         to the kernel (fail-open)",
        dir.display()
    );
    println!("remove it with `fanout xdp detach --interface {ifname}`");
    Ok(ExitCode::SUCCESS)
}

fn system(e: ProgramError) -> Failed {
    (1, e.to_string())
}

fn detach(args: &IfaceArgs) -> Result<ExitCode, Failed> {
    check_iface_name(&args.interface)?;
    let engine = engine_of(&args.config)?;
    let dir = engine.xdp_pin_dir.join(&args.interface);
    match pinned::detach(&dir) {
        Ok(Detached::Removed) => {
            println!(
                "removed the pins under {}: the program is detached from {}",
                dir.display(),
                args.interface
            );
            Ok(ExitCode::SUCCESS)
        }
        Ok(Detached::NothingPinned) => {
            println!(
                "nothing pinned for {} under {}: nothing to remove",
                args.interface,
                dir.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e @ ProgramError::PinnedInUse { .. }) => Err((
            1,
            format!("{e}: stop it first (systemctl stop fanout), then detach"),
        )),
        Err(e) => Err(system(e)),
    }
}

fn status(args: &StatusArgs) -> Result<ExitCode, Failed> {
    if let Some(i) = &args.interface {
        check_iface_name(i)?;
    }
    let engine = engine_of(&args.config)?;
    let root = &engine.xdp_pin_dir;
    let names = match &args.interface {
        Some(i) => vec![i.clone()],
        None => pinned::pinned_interfaces(root),
    };
    // This binary's program tag: whether fanout run would drive a pin.
    let our_tag = ObjectSource::find(engine.xdp_object.as_deref())
        .ok()
        .and_then(|o| o.load().ok())
        .and_then(|mut p| p.tag().ok());
    let mut found = 0;
    for name in &names {
        match pinned::status(&root.join(name), name, our_tag.clone()).map_err(system)? {
            Some(s) => {
                found += 1;
                print!("{s}");
            }
            None => println!(
                "{name}: no program pinned under {}",
                root.join(name).display()
            ),
        }
    }
    if names.is_empty() {
        println!("no program pinned under {}", root.display());
    }
    Ok(if found > 0 && found == names.len() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(3)
    })
}
