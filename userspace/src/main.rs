//! The `fanout` binary: `check` and `run` the engine, plus the lab tools
//! `gen` (numbered-datagram generator) and `sink` (checking receiver).

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
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Validate a configuration and print the resolved plan.
    Check(cli::check::Args),
    /// Run the engine on a configuration until SIGINT/SIGTERM.
    Run(cli::run::Args),
    /// Lab tool: send numbered, verifiable datagrams to a group or address.
    Gen(cli::generate::Args),
    /// Lab tool: receive numbered datagrams and report loss, order and corruption.
    Sink(cli::sink::Args),
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .format_target(false)
        .init();
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Check(args) => cli::check::main(args),
        Cmd::Run(args) => cli::run::main(args),
        Cmd::Gen(args) => cli::generate::main(args),
        Cmd::Sink(args) => cli::sink::main(args),
    }
}
