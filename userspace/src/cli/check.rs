//! TODO(skeleton): `fanout check`.

use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct Args {}

pub fn main(_args: Args) -> ExitCode {
    eprintln!("fanout check: not implemented yet");
    ExitCode::from(1)
}
