//! The `fanout` binary: `check` a configuration and `run` the engine. Built
//! with the cargo feature `lab`, it also has the hidden `fanout lab gen|sink`
//! traffic tools of the lab (the tests, the demo and the benchmarks use them).

use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

mod cli;

#[derive(Debug, Parser)]
#[command(
    name = "fanout",
    version,
    long_version = long_version(),
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
    /// Run the engine on a configuration until SIGINT/SIGTERM (SIGHUP: read
    /// the configuration again; a change it cannot apply live stops it with
    /// exit 3, to be restarted).
    #[command(after_help = fanout::config::env_help())]
    Run(cli::run::Args),
    /// Attach, detach or look at the XDP program left attached on purpose.
    Xdp(cli::xdp::Args),
    /// Talk to a running fanout run through its control socket: show the
    /// running plan with its counters and rates, reload the configuration.
    Ctl(cli::ctl::Args),
    /// A live terminal view of a running fanout run: rates, drops and
    /// stream health per flow and output, refreshed every second.
    Top(cli::top::Args),
    /// Print the shell completion script for SHELL on stdout.
    Completions(cli::docs::CompletionsArgs),
    /// Write the man pages (fanout.1 and one per subcommand) into a
    /// directory (the package does).
    #[command(hide = true)]
    Man(cli::docs::ManArgs),
    /// The lab's traffic tools (developers only: built with the feature `lab`).
    #[cfg(feature = "lab")]
    #[command(hide = true)]
    Lab(cli::lab::Args),
}

/// `fanout --version`: the version, the source revision and the XDP
/// program built in (its SHA-256, to compare with `sha256sum` of the
/// object that `cargo xtask build-ebpf --release` made).
fn long_version() -> &'static str {
    static TEXT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    TEXT.get_or_init(|| {
        let program = match (
            fanout::xdp::program::embedded_object(),
            env!("FANOUT_EBPF_SHA256"),
        ) {
            (Some(b), sha) if !sha.is_empty() => {
                format!("embedded, {} bytes, sha256 {sha}", b.len())
            }
            _ => "not embedded (the XDP engine needs [engine] xdp_object or FANOUT_EBPF_OBJ)"
                .to_owned(),
        };
        format!(
            "{}\nrevision: {}\nxdp program: {program}",
            env!("CARGO_PKG_VERSION"),
            env!("FANOUT_REVISION")
        )
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    cli::journal::init(cli.log_level);
    match cli.cmd {
        Cmd::Check(args) => cli::check::main(args),
        Cmd::Run(args) => cli::run::main(args),
        Cmd::Xdp(args) => cli::xdp::main(args),
        Cmd::Ctl(args) => cli::ctl::main(args),
        Cmd::Top(args) => cli::top::main(args),
        Cmd::Completions(args) => cli::docs::completions(args, Cli::command()),
        Cmd::Man(args) => cli::docs::man(args, Cli::command()),
        #[cfg(feature = "lab")]
        Cmd::Lab(args) => cli::lab::main(args),
    }
}
