//! The `fanout` binary: `check` a configuration and `run` the engine. Built
//! with the cargo feature `lab`, it also has the hidden `fanout lab gen|sink`
//! traffic tools of the lab (the tests, the demo and the benchmarks use them).

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cli;

#[derive(Debug, Parser)]
#[command(
    name = "fanout",
    version,
    about = "One multicast stream in, many copies out."
)]
struct Cli {
    /// Log verbosity: error, warn, info, debug or trace (default: RUST_LOG,
    /// else info). Under systemd every line carries its syslog priority.
    #[arg(long, global = true, value_name = "LEVEL")]
    log_level: Option<log::LevelFilter>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Validate a configuration and print the resolved plan.
    Check(cli::check::Args),
    /// Run the engine on a configuration until SIGINT/SIGTERM.
    #[command(after_help = fanout::config::env_help())]
    Run(cli::run::Args),
    /// The lab's traffic tools (developers only: built with the feature `lab`).
    #[cfg(feature = "lab")]
    #[command(hide = true)]
    Lab(cli::lab::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    cli::journal::init(cli.log_level);
    match cli.cmd {
        Cmd::Check(args) => cli::check::main(args),
        Cmd::Run(args) => cli::run::main(args),
        #[cfg(feature = "lab")]
        Cmd::Lab(args) => cli::lab::main(args),
    }
}
