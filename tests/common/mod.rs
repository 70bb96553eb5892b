//! What the integration tests share, written once. A test binary says
//! `mod common;` and uses the part it needs:
//!
//! - [`traffic`]: kernel UDP sockets in lab namespaces and the numbered,
//!   self-checking datagrams of `fanout::lab::payload` (send, receive with
//!   deadlines, compare byte for byte);
//! - [`engine`]: the real `fanout run` in the lab's edge namespace, for the
//!   socket engine and the XDP datapath alike, and the checks of its stats;
//! - [`xdp`]: the XDP program and AF_XDP sockets driven in-process
//!   (attachment, pins, rings), and the two-namespace topology of those
//!   tests;
//! - here: scratch directories, links and neighbours, child processes.
//!
//! Contract: every namespace belongs to a `fanout::lab` guard (`Lab` or
//! `Netns`) that deletes it also when a test panics; every child is a
//! `fanout::lab::Process`, killed if dropped while running; every wait has a
//! deadline (a `sleep` here only paces a sender, it never stands in for a
//! condition); every helper panics with a message that names what failed.
#![allow(
    dead_code,
    reason = "every test binary compiles all of `common` and uses only its own part"
)]

pub mod engine;
pub mod traffic;
pub mod xdp;

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use fanout::lab::{Netns, Process, wait_until};

/// The `fanout` binary of this build.
pub const FANOUT: &str = env!("CARGO_BIN_EXE_fanout");

/// How long anything that should happen may take before a test fails.
pub const DEADLINE: Duration = Duration::from_secs(15);

/// A scratch directory for one test's files, `$TMPDIR/{prefix}-files`,
/// removed when dropped (also when the test panics).
#[derive(Debug)]
pub struct Scratch(PathBuf);

impl Scratch {
    /// Creates the directory (`prefix` is usually the lab's prefix).
    pub fn new(prefix: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("{prefix}-files"));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        Scratch(dir)
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.0
    }

    /// The path of `name` inside the directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs `fanout ARGS` in the caller's namespace to completion: its exit
/// code and its stderr.
pub fn fanout(args: &[&str]) -> (Option<i32>, String) {
    let out = std::process::Command::new(FANOUT)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run fanout {args:?}: {e}"));
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `ip -j -d link show dev DEV` in `ns`: the link's JSON object (its
/// `ifname` checked to be `dev`).
pub fn link(ns: &Netns, dev: &str) -> serde_json::Value {
    let json = ns
        .ip(&["-j", "-d", "link", "show", "dev", dev])
        .unwrap_or_else(|e| panic!("{dev} in {}: {e}", ns.name()));
    let links: serde_json::Value = serde_json::from_str(&json)
        .unwrap_or_else(|e| panic!("ip -j link show {dev}: {e}: {json}"));
    let link = links[0].clone();
    assert_eq!(link["ifname"], dev, "{json}");
    link
}

/// The MAC address of `dev` in `ns`, as `ip` writes it (`02:00:...`).
pub fn mac(ns: &Netns, dev: &str) -> String {
    let link = link(ns, dev);
    link["address"]
        .as_str()
        .unwrap_or_else(|| panic!("no MAC address for {dev}: {link}"))
        .to_owned()
}

/// The MAC address of `dev` in `ns`, as bytes.
pub fn mac_octets(ns: &Netns, dev: &str) -> [u8; 6] {
    let text = mac(ns, dev);
    let octets: Vec<u8> = text
        .split(':')
        .map(|h| u8::from_str_radix(h, 16).unwrap_or_else(|e| panic!("MAC {text}: {e}")))
        .collect();
    octets
        .try_into()
        .unwrap_or_else(|_| panic!("MAC {text} is not 6 bytes"))
}

/// A permanent neighbour entry in `ns` (`ip neigh replace IP lladdr MAC dev
/// DEV nud permanent`): no resolution traffic, no replica waiting for one.
pub fn pin_neighbour(ns: &Netns, ip: IpAddr, mac: &str, dev: &str) {
    ns.ip(&[
        "neigh",
        "replace",
        &ip.to_string(),
        "lladdr",
        mac,
        "dev",
        dev,
        "nud",
        "permanent",
    ])
    .unwrap_or_else(|e| panic!("pin neighbour {ip} on {dev}: {e}"));
}

/// Waits up to `timeout` for `path` to appear while `p` runs: `true` once
/// it exists, `false` as soon as `p` has exited without writing it, or when
/// the time is up.
pub fn wait_for_file(p: &mut Process, path: &Path, timeout: Duration) -> bool {
    let seen = wait_until(timeout, || {
        if path.exists() {
            Some(true)
        } else if !p.is_running() {
            Some(false)
        } else {
            None
        }
    });
    seen == Some(true)
}

/// SIGKILL to `p`: no clean-up code runs in it (reap it with `finish`).
pub fn sigkill(p: &Process) {
    let pid = nix::unistd::Pid::from_raw(i32::try_from(p.id()).expect("a pid fits an i32"));
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL)
        .unwrap_or_else(|e| panic!("SIGKILL {pid}: {e}"));
}

/// The counter `name` of the `Udp:` table in `/proc/net/snmp` of `ns`
/// (`NoPorts`: datagrams for a port with no socket; `InCsumErrors`).
pub fn udp_counter(ns: &Netns, name: &str) -> u64 {
    proc_counter(ns, "/proc/net/snmp", "Udp", name)
}

/// The counter `name` of the table `table` in `file` of `ns`, a file of
/// header and value line pairs (`/proc/net/snmp`, `/proc/net/netstat`).
pub fn proc_counter(ns: &Netns, file: &str, table: &str, name: &str) -> u64 {
    let text = ns.exec(&["cat", file]).unwrap();
    fanout::lab::snmp::table_counter(&text, table, name)
        .unwrap_or_else(|| panic!("no {table} {name} in {file}: {text}"))
}

/// The checksum errors the kernel of `ns` counted on what it received
/// ([`fanout::lab::snmp::checksum_errors`]).
pub fn checksum_errors(ns: &Netns) -> [(&'static str, u64); 3] {
    fanout::lab::snmp::checksum_errors(ns).unwrap_or_else(|e| panic!("{e}"))
}
