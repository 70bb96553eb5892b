//! The lab: network namespaces that the project creates for itself, so the
//! engine, the demo, the tests and the benchmarks have interfaces and a
//! multicast source on any Linux machine.
//!
//! Contract: everything the lab creates lives inside namespaces whose names
//! start with `fo-`; only private addresses ([`addr`]) are configured, only
//! inside them; interfaces are created directly inside their namespaces (never
//! in the caller's); every namespace is owned by a [`Netns`] guard that deletes
//! it on drop, also while a test panics. [`Lab::down`] removes what a crashed
//! run left behind. The lab never touches the host's own interfaces, routes or
//! sysctls. It drives `ip(8)` (iproute2) and `setns(2)`; it needs root.
//! [`Process`] runs the lab's programs (engine, `fanout gen`, `fanout sink`)
//! inside it and kills them if dropped while running; [`privileged`] decides
//! whether a privileged test runs, fails or skips loudly.
//!
//! Topology of [`Lab::up`] (MTU 9000 on every link, `lo` up everywhere):
//!
//! ```text
//!  {prefix}-src          {prefix}-edge                 {prefix}-sink
//!  src0 10.201.0.1 ----- in0  10.201.0.2
//!       fd00:201::1           fd00:201::2
//!                        out0 10.202.0.1 ------------- snk0 10.202.0.2
//!                             fd00:202::1                   fd00:202::2
//!                        out1 10.203.0.1 ------------- snk1 10.203.0.2
//!                             fd00:203::1                   fd00:203::2
//! ```
//!
//! In the source namespace 224.0.0.0/4 and ff00::/8 route via `src0`, so a
//! generator's multicast stream reaches `in0`; `rp_filter` is off everywhere.

use std::{
    fs::File,
    io,
    path::PathBuf,
    process::{Command, Output},
    sync::{
        OnceLock,
        atomic::{AtomicU32, Ordering},
    },
};

use nix::sched::{CloneFlags, setns};

/// Directory where `ip netns` keeps its named namespaces.
const NETNS_DIR: &str = "/run/netns";

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

/// Runs a command to completion; its stdout on success, its stderr in the error.
fn run(cmd: &mut Command) -> Result<String, LabError> {
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
fn describe(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|s| s.to_string_lossy())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs `ip ARGS...` in the caller's namespace.
fn ip(args: &[&str]) -> Result<String, LabError> {
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
fn check_name(name: &str) -> Result<(), LabError> {
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
            ns.sysctl(&format!("net/ipv4/conf/{dev}/rp_filter"), "0")?;
        }
        for ns in [&src, &edge, &sink] {
            ns.sysctl("net/ipv4/conf/all/rp_filter", "0")?;
            ns.sysctl("net/ipv4/conf/default/rp_filter", "0")?;
        }
        src.ip(&["route", "add", "224.0.0.0/4", "dev", SRC0])?;
        src.ip(&["-6", "route", "add", "ff00::/8", "dev", SRC0])?;
        // A datagram a local socket sends over veth leaves with only the
        // pseudo-header sum in its UDP checksum (CHECKSUM_PARTIAL, to be
        // completed by "hardware" that veth does not have). The XDP engine
        // adjusts that field incrementally and would forward an invalid
        // checksum. A real source's NIC puts complete checksums on the wire:
        // so does src0, with TX checksum offload off.
        src.exec(&["ethtool", "-K", SRC0, "tx", "off"])?;

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

/// A child process started by a lab user (engine, generator, sink), with its
/// stdout and stderr collected on background threads (so a chatty child never
/// blocks on a full pipe). Dropping a still-running `Process` kills it
/// (SIGKILL, by its pid) and reaps it: nothing outlives a test or the demo.
#[derive(Debug)]
pub struct Process {
    name: String,
    child: std::process::Child,
    stdout: Option<std::thread::JoinHandle<String>>,
    stderr: Option<std::thread::JoinHandle<String>>,
}

/// What a finished [`Process`] left behind.
#[derive(Debug, Clone)]
pub struct Finished {
    /// Its exit status.
    pub status: std::process::ExitStatus,
    /// Everything it wrote to stdout.
    pub stdout: String,
    /// Everything it wrote to stderr.
    pub stderr: String,
}

impl Process {
    /// Spawns `cmd` with stdout and stderr piped; `name` labels errors.
    pub fn spawn(name: &str, cmd: &mut Command) -> Result<Process, LabError> {
        use std::{io::Read, process::Stdio};
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| LabError::Spawn {
                command: describe(cmd),
                source,
            })?;
        let collect = |mut pipe: Box<dyn Read + Send>| {
            std::thread::spawn(move || {
                let mut bytes = Vec::new();
                let _ = pipe.read_to_end(&mut bytes);
                String::from_utf8_lossy(&bytes).into_owned()
            })
        };
        let stdout = child.stdout.take().map(|p| collect(Box::new(p)));
        let stderr = child.stderr.take().map(|p| collect(Box::new(p)));
        Ok(Process {
            name: name.to_owned(),
            child,
            stdout,
            stderr,
        })
    }

    /// The child's pid (with [`Netns::command`], the program's own pid).
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Whether the child is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Sends SIGTERM to the child (by pid).
    pub fn terminate(&self) -> Result<(), LabError> {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).map_err(|source| {
            LabError::Signal {
                name: self.name.clone(),
                source,
            }
        })
    }

    /// Waits up to `timeout` for the child to exit and returns its status and
    /// output; on timeout it is an error (and dropping `self` kills it).
    pub fn finish(&mut self, timeout: std::time::Duration) -> Result<Finished, LabError> {
        let name = self.name.clone();
        let status =
            wait_until(timeout, || self.child.try_wait().ok().flatten()).ok_or_else(|| {
                LabError::Timeout {
                    what: format!("{name} to exit"),
                    timeout,
                }
            })?;
        let join = |h: Option<std::thread::JoinHandle<String>>| {
            h.map(|h| h.join().unwrap_or_default()).unwrap_or_default()
        };
        Ok(Finished {
            status,
            stdout: join(self.stdout.take()),
            stderr: join(self.stderr.take()),
        })
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Polls `probe` every 10 ms until it returns `Some`, or `timeout` passes.
pub fn wait_until<T>(
    timeout: std::time::Duration,
    mut probe: impl FnMut() -> Option<T>,
) -> Option<T> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if let Some(value) = probe() {
            return Some(value);
        }
        if std::time::Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// A lab prefix unique to this process and call: `fo-{tag}{pid}{n}`.
/// Tests use `unique_prefix("t")`.
pub fn unique_prefix(tag: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{NAME_PREFIX}{tag}{}{n}", std::process::id())
}

/// Whether a privileged (root + `ip netns`) test can run.
///
/// Returns `true` when running as root with a usable `ip netns`. Otherwise,
/// with `FANOUT_REQUIRE_PRIVILEGED=1` in the environment, it panics with the
/// reason (the test fails); without it, it prints `SKIPPED {test_name}: {reason}`
/// to stderr and returns `false` (the test should return early).
pub fn privileged(test_name: &str) -> bool {
    static PROBE: OnceLock<Result<(), String>> = OnceLock::new();
    let probe = PROBE.get_or_init(|| {
        if !nix::unistd::geteuid().is_root() {
            return Err("not running as root".to_owned());
        }
        ip(&["netns", "list"])
            .map(drop)
            .map_err(|err| format!("`ip netns` is not usable: {err}"))
    });
    match probe {
        Ok(()) => true,
        Err(reason) => {
            if std::env::var("FANOUT_REQUIRE_PRIVILEGED").is_ok_and(|v| v == "1") {
                panic!("{test_name}: FANOUT_REQUIRE_PRIVILEGED=1 but {reason}");
            }
            skip_loudly(test_name, reason);
            false
        }
    }
}

/// Where tests and tools find the XDP object: `FANOUT_EBPF_OBJ` when set,
/// else the release build of `cargo xtask build-ebpf` in this checkout.
pub fn xdp_object_path() -> PathBuf {
    match std::env::var_os("FANOUT_EBPF_OBJ") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../xdp-ebpf/target/bpfel-unknown-none/release/fanout-ebpf"),
    }
}

/// [`privileged`], and the XDP object ([`xdp_object_path`]) exists: its
/// path. Otherwise the test fails under `FANOUT_REQUIRE_PRIVILEGED=1`, or
/// skips loudly and gets `None`.
pub fn xdp_ready(test_name: &str) -> Option<PathBuf> {
    if !privileged(test_name) {
        return None;
    }
    let obj = xdp_object_path();
    if obj.is_file() {
        return Some(obj);
    }
    let reason = format!(
        "no XDP object at {} (set FANOUT_EBPF_OBJ or run cargo xtask build-ebpf --release)",
        obj.display()
    );
    if std::env::var("FANOUT_REQUIRE_PRIVILEGED").is_ok_and(|v| v == "1") {
        panic!("{test_name}: {reason}");
    }
    skip_loudly(test_name, &reason);
    None
}

/// An ICMP echo request (type 8) with a valid checksum.
pub fn echo_request(id: u16, seq: u16, data: &[u8]) -> Vec<u8> {
    let mut m = vec![8u8, 0, 0, 0];
    m.extend_from_slice(&id.to_be_bytes());
    m.extend_from_slice(&seq.to_be_bytes());
    m.extend_from_slice(data);
    let sum = !crate::wire::checksum::data(&m);
    m[2..4].copy_from_slice(&sum.to_be_bytes());
    m
}

/// Pings `to` from `sock` (a raw ICMPv4 socket, made inside the namespace
/// that pings) and waits up to `timeout` for the echo reply with this `id`
/// and `seq`; returns the reply's ICMP message (header and data), or an
/// error naming what is missing.
pub fn ping(
    sock: &socket2::Socket,
    to: std::net::Ipv4Addr,
    id: u16,
    seq: u16,
    data: &[u8],
    timeout: std::time::Duration,
) -> io::Result<Vec<u8>> {
    use std::io::Read as _;
    sock.send_to(
        &echo_request(id, seq, data),
        &std::net::SocketAddr::from((to, 0)).into(),
    )?;
    let deadline = std::time::Instant::now() + timeout;
    let mut buf = vec![0u8; 65536];
    loop {
        let left = deadline
            .checked_duration_since(std::time::Instant::now())
            .filter(|d| !d.is_zero())
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("no echo reply {seq} from {to} within {timeout:?}"),
                )
            })?;
        sock.set_read_timeout(Some(left))?;
        let n = match (&*sock).read(&mut buf) {
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                continue;
            }
            Err(e) => return Err(e),
        };
        // A raw socket hands over the IP header too.
        let Some(&first) = buf[..n].first() else {
            continue;
        };
        let ihl = usize::from(first & 0x0f) * 4;
        let Some(icmp) = buf.get(ihl..n) else {
            continue;
        };
        if icmp.len() >= 8
            && icmp[0] == 0
            && icmp[4..6] == id.to_be_bytes()
            && icmp[6..8] == seq.to_be_bytes()
        {
            return Ok(icmp.to_vec());
        }
    }
}

/// Environment variable naming a file to which [`skip_loudly`] appends one
/// line per skipped test (`cargo xtask test` sets it and lists the skips
/// in its summary: a skipped test counts as passed for libtest).
pub const SKIP_LOG_ENV: &str = "FANOUT_SKIP_LOG";

/// Prints `SKIPPED {test_name}: {reason}` straight to the process's stderr,
/// and appends `{test_name}: {reason}` to the file `FANOUT_SKIP_LOG` names.
///
/// `eprintln!` inside a test is captured by the test harness and shown only
/// when the test fails, which would hide the skip of a passing test; a write
/// to the stderr handle itself is not captured.
pub fn skip_loudly(test_name: &str, reason: &str) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr().lock(), "SKIPPED {test_name}: {reason}");
    if let Some(path) = std::env::var_os(SKIP_LOG_ENV)
        && let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
    {
        let _ = writeln!(f, "{test_name}: {reason}");
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

    #[test]
    fn echo_requests_carry_a_valid_checksum() {
        let m = echo_request(0x4242, 7, b"abc");
        assert_eq!(&m[..2], &[8, 0]);
        assert_eq!(&m[4..8], &[0x42, 0x42, 0, 7]);
        assert_eq!(&m[8..], b"abc");
        // The one's complement sum over a message with its checksum is 0.
        assert_eq!(crate::wire::checksum::data(&m), 0xffff);
    }

    #[test]
    fn unique_prefixes_differ_and_are_valid() {
        let a = unique_prefix("t");
        let b = unique_prefix("t");
        assert_ne!(a, b);
        assert!(check_name(&a).is_ok());
        assert!(a.starts_with(&format!("fo-t{}", std::process::id())));
    }
}
