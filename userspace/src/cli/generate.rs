//! TODO(skeleton): `fanout gen`.

use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct Args {}

pub fn main(_args: Args) -> ExitCode {
    eprintln!("fanout gen: not implemented yet");
    ExitCode::from(1)
}
