//! What the demo and the benchmark share about the programs they run in a
//! lab: the release build of `fanout` they run, and the processes they
//! start, which an interrupt (Ctrl-C, SIGTERM) kills before it takes the
//! lab down, so that an interrupted run leaves nothing behind.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use anyhow::{Context as _, Result};
use fanout::lab::{Lab, Process};

use crate::cmd::{cargo, run_status, target_dir};
use crate::ebpf;

/// Pids of the processes started through [`spawn`], for the interrupt handler.
static CHILDREN: Mutex<Vec<u32>> = Mutex::new(Vec::new());

/// Builds `fanout` in release with the lab tools (`fanout lab gen|sink`),
/// embedding the XDP object `object` when given; returns the binary.
pub fn build_fanout(object: Option<&Path>) -> Result<PathBuf> {
    let mut build = cargo();
    build.args([
        "build",
        "--release",
        "--quiet",
        "-p",
        "fanout",
        "--features",
        "lab",
        "--bin",
        "fanout",
    ]);
    if let Some(object) = object {
        build.env(ebpf::OBJECT_ENV, object);
    }
    run_status(&mut build)?;
    Ok(target_dir().join("release").join("fanout"))
}

/// Spawns `cmd` (labelled `name`) and registers it for the interrupt handler.
pub fn spawn(name: &str, cmd: &mut Command) -> Result<Process> {
    let process = Process::spawn(name, cmd)?;
    CHILDREN
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(process.id());
    Ok(process)
}

/// On SIGINT or SIGTERM: says so (`what` names the run), kills every process
/// started through [`spawn`], takes down the lab `prefix` and exits 130.
pub fn on_interrupt(what: &'static str, prefix: String) -> Result<()> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])
        .context("install the SIGINT/SIGTERM handler")?;
    std::thread::spawn(move || {
        if let Some(signal) = signals.forever().next() {
            eprintln!("\ninterrupted (signal {signal}): stopping the {what} processes and the lab");
            for &pid in CHILDREN.lock().unwrap_or_else(|e| e.into_inner()).iter() {
                let pid = nix::unistd::Pid::from_raw(pid as i32);
                let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            }
            match Lab::down(&prefix) {
                Ok(removed) => eprintln!("removed {}", removed.join(", ")),
                Err(err) => eprintln!(
                    "lab down failed: {err}; run `cargo xtask lab down --prefix {prefix}`"
                ),
            }
            std::process::exit(130);
        }
    });
    Ok(())
}
