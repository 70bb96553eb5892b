//! `fanout check`: validate a configuration, resolve its interfaces on this
//! host and print the plan an engine would run, with the engine each flow
//! would run on (and why not XDP). Changes nothing on the system.
//! Exit 0 when the plan is good, 2 when the configuration is at fault (the
//! message, naming file, line, field and value, goes to stderr), 1 when the
//! system could not be queried.

use std::path::PathBuf;
use std::process::ExitCode;

use fanout::plan::Plan;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The configuration file (TOML).
    #[arg(short, long, value_name = "FILE", default_value = super::run::DEFAULT_CONFIG)]
    pub config: PathBuf,
}

pub fn main(args: Args) -> ExitCode {
    match Plan::load(&args.config) {
        Ok(plan) => {
            println!("{}: OK", args.config.display());
            print!("{plan}");
            let engines = fanout::runtime::preview(&plan);
            print!("{engines}");
            for w in plan.warnings().into_iter().chain(engines.warnings()) {
                println!("warning: {w}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(e.exit_code())
        }
    }
}
