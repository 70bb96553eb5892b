//! TODO(skeleton): `fanout run`.

use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct Args {}

pub fn main(_args: Args) -> ExitCode {
    eprintln!("fanout run: not implemented yet");
    ExitCode::from(1)
}
