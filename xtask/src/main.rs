//! `cargo xtask`: the project's task runner. xtask orchestrates; cargo builds.
//!
//! - `setup`: installs what the build and the lab need (idempotent, fast when done);
//! - `build-ebpf`: builds the XDP program (see `ebpf.rs`);
//! - `load` / `unload`: attach the XDP program to an interface and pin it,
//!   or remove the pins (see `load.rs`);
//! - `lab up|down`: leaves a lab running for manual work, or removes one;
//! - `demo`: the tour: lab, engine, generator, sinks, a table of what arrived;
//! - `package`: the Debian package of the product (cargo-deb, see `package.rs`);
//! - `test`: the CI tiers: fmt, clippy, the package, unit and privileged integration tests;
//! - `bench`: the lab benchmark (fanout socket/xdp vs kernel multicast routing, see `bench/mod.rs`).

use std::process::ExitCode;

use anyhow::{Context as _, Result};
use clap::{Parser, Subcommand};

mod bench;
mod children;
mod cmd;
mod demo;
mod ebpf;
mod load;
mod modules;
mod package;
mod setup;
mod test;

#[derive(Debug, Parser)]
#[command(name = "cargo xtask", about = "fanout's task runner")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Install system packages, nightly rust-src and bpf-linker (only what is missing).
    Setup,
    /// Build the XDP program and print the path of its object file.
    BuildEbpf {
        /// Build with the release profile.
        #[arg(long)]
        release: bool,
    },
    /// Build the XDP program, attach it to an interface with the config's flows, pin it and exit.
    Load(load::LoadArgs),
    /// Remove the pins made by `load` (the program detaches).
    Unload(load::UnloadArgs),
    /// Bring the lab up (left running) or take it down.
    Lab {
        #[command(subcommand)]
        action: LabAction,
    },
    /// Run the demo: lab up, engine, generator, sinks, results table, lab down.
    Demo(demo::Args),
    /// Build the Debian package (XDP program embedded, unit, config,
    /// man pages, completions) and print the path of the .deb.
    Package,
    /// Run the CI tiers: setup, fmt, clippy, the package, tests (privileged ones when root).
    Test,
    /// The lab benchmark: fanout socket / xdp against kernel multicast routing.
    Bench(bench::Args),
    /// The module graph: files and line counts per folder, and a check that
    /// no file imports another that imports it back.
    Modules,
}

#[derive(Debug, Subcommand)]
enum LabAction {
    /// Create the namespaces, links and addresses, and leave them running.
    Up {
        #[arg(long, default_value = "fo-lab")]
        prefix: String,
    },
    /// Remove every namespace named PREFIX-*.
    Down {
        #[arg(long, default_value = "fo-lab")]
        prefix: String,
    },
}

fn main() -> ExitCode {
    match dispatch(Cli::parse().cmd) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // The whole chain on one line: no backtrace noise for users.
            eprintln!("xtask: {err:#}");
            ExitCode::from(load::exit_code(&err))
        }
    }
}

fn dispatch(cmd: Cmd) -> Result<()> {
    match cmd {
        Cmd::Setup => setup::run().map(drop),
        Cmd::BuildEbpf { release } => {
            let object = ebpf::build(release)?;
            eprintln!(
                "XDP program built (tests and fanout's build read it from {}):",
                ebpf::OBJECT_ENV
            );
            println!("{}", object.display());
            Ok(())
        }
        Cmd::Load(args) => load::load(args),
        Cmd::Unload(args) => load::unload(args),
        Cmd::Lab { action } => lab(action),
        Cmd::Demo(args) => demo::run(args),
        Cmd::Package => package::run(),
        Cmd::Test => test::run(),
        Cmd::Bench(args) => bench::run(args),
        Cmd::Modules => modules::run(),
    }
}

fn lab(action: LabAction) -> Result<()> {
    use fanout::lab::{Lab, addr, iface};
    match action {
        LabAction::Up { prefix } => {
            let lab = Lab::up(&prefix).with_context(|| format!("lab up --prefix {prefix}"))?;
            println!("lab {prefix} is up (MTU 9000, private addresses only):");
            println!(
                "  {}: {} {}/24 {}/64",
                lab.src.name(),
                iface::SRC0,
                addr::SRC0_V4,
                addr::SRC0_V6
            );
            println!(
                "  {}: {} {} | {} {} | {} {}",
                lab.edge.name(),
                iface::IN0,
                addr::IN0_V4,
                iface::OUT0,
                addr::OUT0_V4,
                iface::OUT1,
                addr::OUT1_V4
            );
            println!(
                "  {}: {} {} | {} {}",
                lab.sink.name(),
                iface::SNK0,
                addr::SNK0_V4,
                iface::SNK1,
                addr::SNK1_V4
            );
            println!("enter one with `ip netns exec {} bash`;", lab.edge.name());
            println!("remove it with `cargo xtask lab down --prefix {prefix}`.");
            lab.persist();
        }
        LabAction::Down { prefix } => {
            let removed =
                Lab::down(&prefix).with_context(|| format!("lab down --prefix {prefix}"))?;
            if removed.is_empty() {
                println!("no namespace named {prefix}-*: nothing to remove");
            } else {
                println!("removed {}", removed.join(", "));
            }
        }
    }
    Ok(())
}
