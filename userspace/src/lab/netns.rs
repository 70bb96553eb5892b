//! Network namespaces and veth links: the lab's topology ([`Lab::up`]),
//! created with `ip(8)` and entered with `setns(2)`.
//!
//! Contract: every namespace is named `fo-...` ([`NAME_PREFIX`]) and
//! owned by a [`Netns`] guard that deletes it on drop, also while a test
//! panics; interfaces are created directly inside their namespaces, never in
//! the caller's; only the lab's private addresses ([`addr`]) are
//! configured, only inside them. [`Lab::down`] removes what a crashed run
//! left behind.

use std::{
    fs::File,
    io,
    path::PathBuf,
    process::{Command, Output},
};

use nix::sched::{CloneFlags, setns};

/// Every namespace the lab creates starts with this.
pub const NAME_PREFIX: &str = "fo-";

/// The MTU of every lab link.
pub const MTU: u32 = 9000;

/// Interface names inside the lab namespaces.
pub mod iface {
    /// Source side of the ingress link (source namespace).
    pub const SRC0: &str = "src0";
    /// Edge side of the ingress link (edge namespace).
    pub const IN0: &str = "in0";
    /// Edge side of the first egress link (edge namespace).
    pub const OUT0: &str = "out0";
    /// Sink side of the first egress link (sink namespace).
    pub const SNK0: &str = "snk0";
    /// Edge side of the second egress link (edge namespace).
    pub const OUT1: &str = "out1";
    /// Sink side of the second egress link (sink namespace).
    pub const SNK1: &str = "snk1";
}

/// The private addresses of the lab (IPv4 /24, IPv6 /64 with `nodad`).
pub mod addr {
    use std::net::{Ipv4Addr, Ipv6Addr};

    /// IPv4 prefix length of every lab link.
    pub const PREFIX_V4: u8 = 24;
    /// IPv6 prefix length of every lab link.
    pub const PREFIX_V6: u8 = 64;

    pub const SRC0_V4: Ipv4Addr = Ipv4Addr::new(10, 201, 0, 1);
    pub const SRC0_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x201, 0, 0, 0, 0, 0, 1);
    pub const IN0_V4: Ipv4Addr = Ipv4Addr::new(10, 201, 0, 2);
    pub const IN0_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x201, 0, 0, 0, 0, 0, 2);
    pub const OUT0_V4: Ipv4Addr = Ipv4Addr::new(10, 202, 0, 1);
    pub const OUT0_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x202, 0, 0, 0, 0, 0, 1);
    pub const SNK0_V4: Ipv4Addr = Ipv4Addr::new(10, 202, 0, 2);
    pub const SNK0_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x202, 0, 0, 0, 0, 0, 2);
    pub const OUT1_V4: Ipv4Addr = Ipv4Addr::new(10, 203, 0, 1);
    pub const OUT1_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x203, 0, 0, 0, 0, 0, 1);
    pub const SNK1_V4: Ipv4Addr = Ipv4Addr::new(10, 203, 0, 2);
    pub const SNK1_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x203, 0, 0, 0, 0, 0, 2);
}

/// Errors of the lab. Each names the command or namespace involved.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// A command ran and exited unsuccessfully.
    #[error("`{command}` failed ({status}): {stderr}")]
    Command {
        /// The command line, as run.
        command: String,
        /// Its exit status.
        status: String,
        /// Its standard error, trimmed.
        stderr: String,
    },
    /// A command could not be started at all.
    #[error("could not start `{command}`: {source}")]
    Spawn {
        /// The command line.
        command: String,
        /// Why it could not start.
        #[source]
        source: io::Error,
    },
    /// A namespace name or lab prefix the lab refuses to use.
    #[error("invalid lab name {name:?}: {reason}")]
    Name {
        /// The rejected name.
        name: String,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// The namespace file could not be opened.
    #[error("open network namespace {}: {source}", path.display())]
    Open {
        /// The namespace file.
        path: PathBuf,
        /// Why it could not be opened.
        #[source]
        source: io::Error,
    },
    /// `setns(CLONE_NEWNET)` into the namespace failed.
    #[error("setns(CLONE_NEWNET) into {name}: {source}")]
    Setns {
        /// The namespace.
        name: String,
        /// The errno.
        #[source]
        source: nix::Error,
    },
    /// A signal could not be sent to a lab process.
    #[error("signal {name}: {source}")]
    Signal {
        /// The process's label.
        name: String,
        /// The errno.
        #[source]
        source: nix::Error,
    },
    /// Something did not happen in time.
    #[error("timed out after {timeout:?} waiting for {what}")]
    Timeout {
        /// What was awaited.
        what: String,
        /// How long.
        timeout: std::time::Duration,
    },
    /// A protocol counter the lab reads is not in the namespace's `/proc`.
    #[error("no counter {name} in /proc/net of namespace {namespace}")]
    Counter {
        /// The namespace.
        namespace: String,
        /// The counter (`Udp InCsumErrors`...).
        name: String,
    },
    /// A sysctl inside a namespace could not be written.
    #[error("write {key} in namespace {name}: {source}")]
    Sysctl {
        /// The namespace.
        name: String,
        /// The /proc/sys path.
        key: String,
        /// Why the write failed.
        #[source]
        source: io::Error,
    },
}

/// `rp_filter` value of every lab interface: strict reverse-path filtering.
pub const STRICT_RP_FILTER: &str = "1";

/// Directory where `ip netns` keeps its named namespaces.
const NETNS_DIR: &str = "/run/netns";

/// Runs a command to completion; its stdout on success, its stderr in the error.
pub(super) fn run(cmd: &mut Command) -> Result<String, LabError> {
    let command = describe(cmd);
    let Output {
        status,
        stdout,
        stderr,
    } = cmd.output().map_err(|source| LabError::Spawn {
        command: command.clone(),
        source,
    })?;
    if status.success() {
        Ok(String::from_utf8_lossy(&stdout).into_owned())
    } else {
        Err(LabError::Command {
            command,
            status: status.to_string(),
            stderr: String::from_utf8_lossy(&stderr).trim().to_owned(),
        })
    }
}

/// The command line of `cmd`, for error messages.
pub(super) fn describe(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|s| s.to_string_lossy())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs `ip ARGS...` in the caller's namespace.
pub(super) fn ip(args: &[&str]) -> Result<String, LabError> {
    run(Command::new("ip").args(args))
}

/// Deletes the named namespace; gone already (a concurrent delete) is fine.
fn delete(name: &str) -> Result<(), LabError> {
    match ip(&["netns", "delete", name]) {
        Err(_) if !PathBuf::from(NETNS_DIR).join(name).exists() => Ok(()),
        result => result.map(drop),
    }
}

/// Checks that `name` is safe to use as (part of) a lab namespace name.
pub(crate) fn check_name(name: &str) -> Result<(), LabError> {
    let reason = if !name.starts_with(NAME_PREFIX) || name.len() <= NAME_PREFIX.len() {
        Some("lab names start with \"fo-\" and have something after it")
    } else if name.len() > 64 {
        Some("longer than 64 characters")
    } else if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        Some("only ASCII letters, digits, '-' and '_' are allowed")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(LabError::Name {
            name: name.to_owned(),
            reason,
        }),
        None => Ok(()),
    }
}

/// A named network namespace (`ip netns add`), deleted when dropped.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates the namespace `name` (which must start with `fo-`) and brings
    /// its `lo` up.
    pub fn new(name: &str) -> Result<Netns, LabError> {
        check_name(name)?;
        ip(&["netns", "add", name])?;
        // From here on the guard owns the namespace: an error below deletes it.
        let ns = Netns {
            name: name.to_owned(),
        };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// The namespace's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs `ip netns exec NAME ARGS...` to completion and returns its stdout;
    /// the error carries the command line and stderr.
    pub fn exec(&self, args: &[&str]) -> Result<String, LabError> {
        let (program, rest) = args.split_first().ok_or_else(|| LabError::Command {
            command: format!("ip netns exec {}", self.name),
            status: "not run".to_owned(),
            stderr: "no program given".to_owned(),
        })?;
        run(self.command(program).args(rest))
    }

    /// Runs `ip -n NAME ARGS...` (no mount-namespace setup: cheaper than
    /// [`Netns::exec`] for iproute2 itself).
    pub fn ip(&self, args: &[&str]) -> Result<String, LabError> {
        run(Command::new("ip").args(["-n", &self.name]).args(args))
    }

    /// A command that runs `program` inside the namespace
    /// (`ip netns exec NAME program`); add arguments, then spawn it.
    /// `ip netns exec` execs the program, so the child's pid is the program's.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name]).arg(program);
        cmd
    }

    /// Runs `f` on a scoped thread that entered the namespace with
    /// `setns(CLONE_NEWNET)`. Sockets created by `f` belong to the namespace
    /// for their whole life, also after `f` returns.
    ///
    /// # Panics
    ///
    /// If the namespace cannot be entered (see [`Netns::try_run_in`]), and
    /// re-raises a panic of `f`.
    pub fn run_in<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        match self.try_run_in(f) {
            Ok(value) => value,
            Err(err) => panic!("run_in: {err}"),
        }
    }

    /// Like [`Netns::run_in`], but an error when the namespace cannot be entered.
    pub fn try_run_in<T: Send>(&self, f: impl FnOnce() -> T + Send) -> Result<T, LabError> {
        let path = PathBuf::from(NETNS_DIR).join(&self.name);
        let file = File::open(&path).map_err(|source| LabError::Open { path, source })?;
        std::thread::scope(|scope| {
            let thread = scope.spawn(move || {
                setns(&file, CloneFlags::CLONE_NEWNET).map_err(|source| LabError::Setns {
                    name: self.name.clone(),
                    source,
                })?;
                Ok(f())
            });
            match thread.join() {
                Ok(result) => result,
                Err(panic) => std::panic::resume_unwind(panic),
            }
        })
    }

    /// Writes `value` to `/proc/sys/KEY` inside the namespace (`key` with
    /// slashes, e.g. `net/ipv4/conf/all/rp_filter`).
    pub fn sysctl(&self, key: &str, value: &str) -> Result<(), LabError> {
        let path = format!("/proc/sys/{key}");
        self.try_run_in(|| std::fs::write(&path, value))?
            .map_err(|source| LabError::Sysctl {
                name: self.name.clone(),
                key: path.clone(),
                source,
            })
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Never panic in drop (we may be unwinding already); say it loudly,
        // unless someone else (`Lab::down`) removed it first.
        if let Err(err) = delete(&self.name) {
            eprintln!(
                "lab: could not delete network namespace {}: {err}",
                self.name
            );
        }
    }
}

/// Creates a veth pair directly inside two namespaces (`a_if` in `a`, `b_if`
/// in `b`), sets both ends' MTU and brings them up.
pub fn veth(a: &Netns, a_if: &str, b: &Netns, b_if: &str, mtu: u32) -> Result<(), LabError> {
    let mtu = mtu.to_string();
    ip(&[
        "link", "add", "name", a_if, "netns", &a.name, "mtu", &mtu, "type", "veth", "peer", "name",
        b_if, "netns", &b.name, "mtu", &mtu,
    ])?;
    a.ip(&["link", "set", a_if, "up"])?;
    b.ip(&["link", "set", b_if, "up"])?;
    Ok(())
}

/// The three-namespace lab (source, edge, sink); see the module docs for the
/// topology. Dropping it deletes the namespaces, which destroys the links.
#[derive(Debug)]
pub struct Lab {
    /// The multicast source (`src0`).
    pub src: Netns,
    /// The edge host where the engine runs (`in0`, `out0`, `out1`).
    pub edge: Netns,
    /// The receivers (`snk0`, `snk1`).
    pub sink: Netns,
    prefix: String,
}

impl Lab {
    /// Brings the lab up with namespaces `{prefix}-src`, `{prefix}-edge`,
    /// `{prefix}-sink`. Fails (and leaves nothing behind) if any step fails,
    /// including when namespaces of that prefix already exist (see [`Lab::down`]).
    pub fn up(prefix: &str) -> Result<Lab, LabError> {
        use addr::*;
        use iface::*;

        check_name(prefix)?;
        let src = Netns::new(&format!("{prefix}-src"))?;
        let edge = Netns::new(&format!("{prefix}-edge"))?;
        let sink = Netns::new(&format!("{prefix}-sink"))?;

        veth(&src, SRC0, &edge, IN0, MTU)?;
        veth(&edge, OUT0, &sink, SNK0, MTU)?;
        veth(&edge, OUT1, &sink, SNK1, MTU)?;

        let links = [
            (&src, SRC0, SRC0_V4, SRC0_V6),
            (&edge, IN0, IN0_V4, IN0_V6),
            (&edge, OUT0, OUT0_V4, OUT0_V6),
            (&sink, SNK0, SNK0_V4, SNK0_V6),
            (&edge, OUT1, OUT1_V4, OUT1_V6),
            (&sink, SNK1, SNK1_V4, SNK1_V6),
        ];
        for (ns, dev, v4, v6) in links {
            ns.ip(&["addr", "add", &format!("{v4}/{PREFIX_V4}"), "dev", dev])?;
            ns.ip(&[
                "addr",
                "add",
                &format!("{v6}/{PREFIX_V6}"),
                "dev",
                dev,
                "nodad",
            ])?;
            ns.sysctl(&format!("net/ipv4/conf/{dev}/rp_filter"), STRICT_RP_FILTER)?;
        }
        // Strict reverse-path filtering, as a hardened host has it (RHEL's
        // default; Debian's systemd sets the looser 2): the engines must
        // work with it on, so the lab never turns it off.
        for ns in [&src, &edge, &sink] {
            ns.sysctl("net/ipv4/conf/all/rp_filter", STRICT_RP_FILTER)?;
            ns.sysctl("net/ipv4/conf/default/rp_filter", STRICT_RP_FILTER)?;
        }
        src.ip(&["route", "add", "224.0.0.0/4", "dev", SRC0])?;
        src.ip(&["-6", "route", "add", "ff00::/8", "dev", SRC0])?;

        Ok(Lab {
            src,
            edge,
            sink,
            prefix: prefix.to_owned(),
        })
    }

    /// Gives up the guard: the namespaces stay until [`Lab::down`] (for
    /// `cargo xtask lab up`, which leaves a lab running for manual work).
    pub fn persist(self) -> String {
        let prefix = self.prefix.clone();
        std::mem::forget(self);
        prefix
    }

    /// The prefix this lab was brought up with.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Deletes every namespace named `{prefix}-*` (what a crashed run left
    /// behind) and returns their names. Nothing there is not an error.
    pub fn down(prefix: &str) -> Result<Vec<String>, LabError> {
        check_name(prefix)?;
        let start = format!("{prefix}-");
        let mut removed = Vec::new();
        for line in ip(&["netns", "list"])?.lines() {
            // Lines look like "fo-demo-src (id: 3)" or just "fo-demo-src".
            let Some(name) = line.split_whitespace().next() else {
                continue;
            };
            if name.starts_with(&start) {
                delete(name)?;
                removed.push(name.to_owned());
            }
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        assert!(check_name("fo-t1").is_ok());
        assert!(check_name("fo-demo-src").is_ok());
        for bad in ["", "fo-", "foo", "x-fo-1", "fo-a b", "fo-a/b", "fo-a.b"] {
            assert!(check_name(bad).is_err(), "{bad:?} accepted");
        }
        assert!(check_name(&format!("fo-{}", "a".repeat(62))).is_err());
    }
}
