//! `fanout lab ...`: the lab's traffic tools, built only with the cargo
//! feature `lab` and hidden from the product's `--help`: `gen` sends
//! numbered, self-checking datagrams, `sink` receives them and reports what
//! arrived ([`fanout::lab`]). The demo, the tests and the benchmarks run them
//! inside the lab's namespaces.

use std::process::ExitCode;

use clap::Subcommand;

pub mod generate;
pub mod sink;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Send numbered, verifiable datagrams to a group or address.
    #[command(name = "gen")]
    Generate(generate::Args),
    /// Receive numbered datagrams and report loss, order and corruption.
    Sink(sink::Args),
}

pub fn main(args: Args) -> ExitCode {
    match args.cmd {
        Cmd::Generate(args) => generate::main(args),
        Cmd::Sink(args) => sink::main(args),
    }
}
