//! The real `fanout run` in the lab's edge namespace, for either engine.
//!
//! Contract: a [`Case`] owns one scenario's world (a lab, a scratch
//! directory, the engine kind, for XDP the program object) and exists only
//! where the scenario can run: otherwise the test skips loudly, or fails
//! under `FANOUT_REQUIRE_PRIVILEGED=1`. An [`Engine`] is a `fanout run` that
//! became ready (its ready file exists); [`Engine::stop`] stops it with
//! SIGTERM and checks what every run must satisfy (a clean exit, the engine
//! said aloud exactly once, stats that name it and balance), and
//! [`assert_xdp_carried`] what every XDP run must (AF_XDP carried each
//! datagram exactly once, nothing dropped or invalid on the way).

use std::path::{Path, PathBuf};
use std::process::Command;

use fanout::lab::{self, Finished, Lab, Netns, Process, addr, iface};
use fanout::stats::{Snapshot, XdpInterfaceSnapshot};

use super::{DEADLINE, FANOUT, Scratch, wait_for_file};

/// The engine a scenario runs with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EngineKind {
    /// `mode = "socket"`.
    Socket,
    /// `mode = "xdp"`, native attach (`FANOUT_XDP_MODE=auto` takes it on veth).
    XdpNative,
    /// `mode = "xdp"`, generic attach (`FANOUT_XDP_MODE=generic`).
    XdpGeneric,
}

impl EngineKind {
    /// Whether this is the XDP datapath.
    pub fn is_xdp(self) -> bool {
        self != EngineKind::Socket
    }

    /// The `[engine] mode` of the configuration.
    pub fn mode(self) -> &'static str {
        match self {
            EngineKind::Socket => "socket",
            EngineKind::XdpNative | EngineKind::XdpGeneric => "xdp",
        }
    }

    /// The engine's name in the stats (`snap.engine`); veth has no zero-copy.
    pub fn rung(self) -> &'static str {
        match self {
            EngineKind::Socket => "socket",
            EngineKind::XdpNative => "xdp native copy",
            EngineKind::XdpGeneric => "xdp generic copy",
        }
    }

    /// The start of the one line where `fanout run` says which engine runs.
    pub fn announcement(self) -> String {
        match self {
            EngineKind::Socket => "fanout: engine socket (mode = \"socket\")".to_owned(),
            _ => format!("fanout: engine {}", self.rung()),
        }
    }
}

/// Generates the three tests of one scenario: `$socket` (the socket
/// engine), `$native` and `$generic` (the XDP datapath), each calling
/// `$body(test name, kind)`.
#[allow(
    unused_macros,
    reason = "only the binaries that run a scenario for every engine use it"
)]
macro_rules! for_each_engine {
    ($body:ident: $socket:ident, $native:ident, $generic:ident) => {
        #[test]
        fn $socket() {
            $body(
                stringify!($socket),
                $crate::common::engine::EngineKind::Socket,
            );
        }

        $crate::common::engine::for_each_xdp!($body: $native, $generic);
    };
}
#[allow(
    unused_imports,
    reason = "only the binaries that run a scenario for every engine use it"
)]
pub(crate) use for_each_engine;

/// Generates the two XDP tests of a scenario the socket engine does not
/// run: `$native` and `$generic`, each calling `$body(test name, kind)`.
#[allow(
    unused_macros,
    reason = "only the binaries with XDP-only scenarios use it"
)]
macro_rules! for_each_xdp {
    ($body:ident: $native:ident, $generic:ident) => {
        #[test]
        fn $native() {
            $body(
                stringify!($native),
                $crate::common::engine::EngineKind::XdpNative,
            );
        }

        #[test]
        fn $generic() {
            $body(
                stringify!($generic),
                $crate::common::engine::EngineKind::XdpGeneric,
            );
        }
    };
}
#[allow(
    unused_imports,
    reason = "only the binaries with XDP-only scenarios use it"
)]
pub(crate) use for_each_xdp;

/// One privileged scenario's world: the lab, a scratch directory, the
/// engine kind (and for XDP, the program object).
#[derive(Debug)]
pub struct Case {
    /// The lab (source, edge, sinks).
    pub lab: Lab,
    /// The scenario's files.
    pub files: Scratch,
    /// The engine it runs.
    pub kind: EngineKind,
    object: Option<PathBuf>,
}

impl Case {
    /// `fanout ctl --control SOCKET ARGS...` in the edge namespace: exit
    /// status, stdout, stderr.
    pub fn ctl(&self, socket: &Path, args: &[&str]) -> (Option<i32>, String, String) {
        let out = self
            .lab
            .edge
            .command(FANOUT)
            .arg("ctl")
            .arg("--control")
            .arg(socket)
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// [`Case::unpinned`], with the sinks' neighbours pinned on the edge
    /// ([`pin_neighbours`]).
    pub fn new(test: &str, kind: EngineKind) -> Option<Case> {
        let case = Case::unpinned(test, kind)?;
        pin_neighbours(&case.lab);
        Some(case)
    }

    /// Root, `ip netns` and (for XDP) the program object; otherwise skips
    /// loudly, or fails under `FANOUT_REQUIRE_PRIVILEGED=1`. Brings the lab
    /// up; the engine resolves the sinks' addresses itself.
    pub fn unpinned(test: &str, kind: EngineKind) -> Option<Case> {
        let object = if kind.is_xdp() {
            Some(lab::xdp_ready(test)?)
        } else {
            if !lab::privileged(test) {
                return None;
            }
            None
        };
        let prefix = lab::unique_prefix("se");
        let lab = Lab::up(&prefix).expect("lab up");
        Some(Case {
            lab,
            files: Scratch::new(&prefix),
            kind,
            object,
        })
    }

    /// The XDP program object of an XDP case.
    pub fn object(&self) -> Option<&Path> {
        self.object.as_deref()
    }

    /// Starts the engine of this case on `config` in the edge namespace.
    pub fn start(&self, config: &str) -> Engine {
        self.start_with(config, &[])
    }

    /// [`Case::start`] with more arguments for `fanout run`.
    pub fn start_with(&self, config: &str, args: &[&str]) -> Engine {
        self.start_env(config, args, &[])
    }

    /// [`Case::start_with`] with environment variables set last (they
    /// override the engine kind's, e.g. `FANOUT_XDP_MODE`).
    pub fn start_env(&self, config: &str, args: &[&str], env: &[(&str, &str)]) -> Engine {
        Engine::start(
            &self.lab.edge,
            &self.files,
            self.kind,
            self.object.as_deref(),
            config,
            args,
            env,
        )
    }

    /// [`Case::start_env`] run through `wrapper` (a program and its
    /// arguments, e.g. `setpriv ...`, that then executes `fanout run`), with
    /// the files in `files`.
    pub fn start_wrapped(
        &self,
        files: &Scratch,
        wrapper: &[&str],
        config: &str,
        env: &[(&str, &str)],
    ) -> Engine {
        Engine::start_in(
            &self.lab.edge,
            files,
            self.kind,
            self.object.as_deref(),
            config,
            (wrapper, &[]),
            env,
        )
    }
}

/// Every scenario ends with the receivers' verdict: the sinks' kernels,
/// which verify every checksum, counted no error (a replica counted there
/// was dropped, not delivered). Not checked while a test already panics.
impl Drop for Case {
    fn drop(&mut self) {
        if std::thread::panicking() {
            return;
        }
        let errors = super::checksum_errors(&self.lab.sink);
        assert!(
            errors.iter().all(|(_, n)| *n == 0),
            "the sinks' kernels rejected replicas for bad checksums: {errors:?}"
        );
    }
}

/// The files of one `fanout run` in a scratch directory.
#[derive(Debug, Clone)]
pub struct RunFiles {
    /// `--config`.
    pub config: PathBuf,
    /// `--ready-file`.
    pub ready: PathBuf,
    /// `--stats-json`.
    pub stats: PathBuf,
    /// `--control`.
    pub control: PathBuf,
}

/// Writes `config` to `{tag}.toml` in `files` and returns `fanout run
/// --config {tag}.toml --stats-json {tag}.json --ready-file {tag}.ready
/// --control {tag}.sock` in `ns`, with `RUST_LOG=info`; add arguments and
/// environment, then spawn.
pub fn run_command(ns: &Netns, files: &Scratch, tag: &str, config: &str) -> (Command, RunFiles) {
    let paths = RunFiles {
        config: files.path(&format!("{tag}.toml")),
        ready: files.path(&format!("{tag}.ready")),
        stats: files.path(&format!("{tag}.json")),
        control: files.path(&format!("{tag}.sock")),
    };
    std::fs::write(&paths.config, config).unwrap();
    let mut cmd = ns.command(FANOUT);
    cmd.arg("run")
        .arg("--config")
        .arg(&paths.config)
        .arg("--stats-json")
        .arg(&paths.stats)
        .arg("--ready-file")
        .arg(&paths.ready)
        .arg("--control")
        .arg(&paths.control)
        .env("RUST_LOG", "info");
    (cmd, paths)
}

/// A running `fanout run` in the edge namespace.
#[derive(Debug)]
pub struct Engine {
    /// The `fanout run` process.
    pub process: Process,
    /// Its control socket (`--control`).
    pub control: PathBuf,
    stats: PathBuf,
    ready: PathBuf,
    /// The engine's name in the stats (`snap.engine`).
    rung: String,
    /// The start of the line that says which engine runs.
    announcement: String,
    /// Whether the stats have an XDP section.
    xdp: bool,
}

impl Engine {
    /// Writes `config`, starts the engine of `kind` in `ns` (XDP: with the
    /// program `object`) with `args` and then `env` added, and waits for
    /// its ready file.
    pub fn start(
        ns: &Netns,
        files: &Scratch,
        kind: EngineKind,
        object: Option<&Path>,
        config: &str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Engine {
        Engine::start_in(ns, files, kind, object, config, (&[], args), env)
    }

    /// [`Engine::start`], `fanout run` executed by the wrapper of
    /// `wrapped.0` (none when empty) with `wrapped.1` its arguments.
    fn start_in(
        ns: &Netns,
        files: &Scratch,
        kind: EngineKind,
        object: Option<&Path>,
        config: &str,
        wrapped: (&[&str], &[&str]),
        env: &[(&str, &str)],
    ) -> Engine {
        let (wrapper, args) = wrapped;
        let (cmd, paths) = run_command(ns, files, "fanout", config);
        let mut cmd = if wrapper.is_empty() {
            cmd
        } else {
            // `ip netns exec NS WRAPPER... FANOUT run ...` (the command's
            // arguments after `netns exec NS`), the same environment.
            let mut wrapped = ns.command(wrapper[0]);
            wrapped.args(&wrapper[1..]).args(cmd.get_args().skip(3));
            for (k, v) in cmd.get_envs() {
                if let Some(v) = v {
                    wrapped.env(k, v);
                }
            }
            wrapped
        };
        cmd.args(args);
        if kind.is_xdp() {
            let generic = kind == EngineKind::XdpGeneric;
            cmd.env("FANOUT_EBPF_OBJ", object.expect("the XDP object"))
                .env("FANOUT_XDP_MODE", if generic { "generic" } else { "auto" });
        }
        cmd.envs(env.iter().copied());
        let mut process = Process::spawn("fanout run", &mut cmd).expect("spawn fanout run");
        if !wait_for_file(&mut process, &paths.ready, DEADLINE) {
            let f = process.finish(std::time::Duration::from_secs(2));
            panic!("fanout run never became ready within {DEADLINE:?}: {f:?}");
        }
        Engine {
            process,
            control: paths.control,
            stats: paths.stats,
            ready: paths.ready,
            rung: kind.rung().to_owned(),
            announcement: kind.announcement(),
            xdp: kind.is_xdp(),
        }
    }

    /// Expects, on [`Engine::stop`], the engine named `rung` in the stats
    /// and announced by a line starting with `announcement` (`mode =
    /// "auto"` splitting the flows between the engines), with an XDP
    /// section in the stats when `xdp`.
    pub fn expecting(mut self, rung: &str, announcement: &str, xdp: bool) -> Engine {
        rung.clone_into(&mut self.rung);
        announcement.clone_into(&mut self.announcement);
        self.xdp = xdp;
        self
    }

    /// The stats JSON the engine wrote last, if any (`--stats-interval`).
    pub fn stats(&self) -> Option<Snapshot> {
        serde_json::from_str(&std::fs::read_to_string(&self.stats).ok()?).ok()
    }

    /// SIGTERM, a clean exit, the engine said exactly once, the ready file
    /// gone, and the final counters (which must balance and name the
    /// engine); returns them and what the process wrote.
    pub fn stop(mut self) -> (Snapshot, Finished) {
        self.process.terminate().unwrap();
        let f = self
            .process
            .finish(DEADLINE)
            .expect("fanout run stops on SIGTERM");
        assert!(
            f.status.success(),
            "fanout run: {:?}\n{}",
            f.status,
            f.stderr
        );
        // Said exactly once, and it is the engine asked for.
        let said: Vec<&str> = f
            .stderr
            .lines()
            .filter(|l| l.starts_with("fanout: engine "))
            .collect();
        assert!(
            said.len() == 1 && said[0].starts_with(&self.announcement),
            "the engine choice ({}) is said exactly once:\n{}",
            self.announcement,
            f.stderr
        );
        assert!(
            !self.ready.exists(),
            "the ready file is removed at exit: {}",
            self.ready.display()
        );
        let json = std::fs::read_to_string(&self.stats).expect("stats JSON written on stop");
        let snap: Snapshot = serde_json::from_str(&json).expect("stats JSON parses");
        assert_eq!(snap.engine, self.rung, "{snap}");
        assert_eq!(snap.xdp.is_some(), self.xdp, "{snap}");
        snap.check_accounting()
            .unwrap_or_else(|e| panic!("{e}\n{snap}"));
        assert!(
            f.stdout.contains("flow "),
            "final table on stdout:\n{}",
            f.stdout
        );
        (snap, f)
    }
}

/// Under XDP: the counters that prove AF_XDP carried exactly `carried`
/// datagrams on `in0` (the program matched and redirected each once, the
/// worker received each once, nothing was dropped or invalid on the way),
/// through `egress` TX sockets. Returns the interface's counters for the
/// scenario's own checks; `None` for the socket engine.
pub fn assert_xdp_carried(
    snap: &Snapshot,
    kind: EngineKind,
    carried: u64,
    egress: usize,
) -> Option<&XdpInterfaceSnapshot> {
    if !kind.is_xdp() {
        assert!(snap.xdp.is_none(), "{snap}");
        return None;
    }
    let xdp = snap.xdp.as_ref().expect("the XDP section of the stats");
    assert_eq!(xdp.interfaces.len(), 1, "{xdp:?}");
    let i = &xdp.interfaces[0];
    assert_eq!(i.interface, iface::IN0);
    let attach = if kind == EngineKind::XdpGeneric {
        "generic"
    } else {
        "native"
    };
    assert_eq!(i.attach, attach, "{i:?}");
    assert_eq!(i.bind, "copy", "veth has no zero-copy");
    let c = program_counter(i);
    assert_eq!(c("matched"), carried, "{i:?}");
    assert_eq!(
        c("redirected"),
        carried,
        "AF_XDP carried every datagram: {i:?}"
    );
    for k in ["no_socket", "malformed", "fragment"] {
        assert_eq!(c(k), 0, "{k}: {i:?}");
    }
    assert_eq!(i.queues.len(), 1, "{i:?}");
    let q = &i.queues[0];
    assert_eq!(q.worker["rx_packets"], carried, "{q:?}");
    for k in [
        "malformed",
        "no_flow",
        "bad_rx_desc",
        "bad_completion",
        "fill_short",
        "replicas_in_flight",
    ] {
        assert_eq!(q.worker[k], 0, "{k}: {q:?}");
    }
    for k in ["rx_dropped", "rx_invalid_descs"] {
        assert_eq!(q.rx_socket[k], 0, "{k}: {q:?}");
    }
    // Per flow: the program's redirects of each flow reached its worker,
    // every one, and they add up to the interface's.
    let mut redirected = 0;
    for f in &snap.flows {
        let Some(x) = &f.xdp else {
            continue;
        };
        assert_eq!(x.redirected, f.seen_by_worker(), "flow {}: {snap}", f.name);
        assert_eq!(x.lost_before_worker, 0, "flow {}: {snap}", f.name);
        redirected += x.redirected;
    }
    assert_eq!(redirected, carried, "the flows' redirects: {snap}");
    assert_eq!(q.tx_sockets.len(), egress, "{q:?}");
    for (dev, st) in &q.tx_sockets {
        assert_eq!(st["tx_invalid_descs"], 0, "{dev}: {st:?}");
    }
    Some(i)
}

/// A reader of the program's counters of `i` (`matched`, `source_rejected`...).
pub fn program_counter(i: &XdpInterfaceSnapshot) -> impl Fn(&str) -> u64 + '_ {
    move |k| {
        *i.program
            .get(k)
            .unwrap_or_else(|| panic!("program counter {k}: {i:?}"))
    }
}

/// Pins the sinks' MAC addresses on the edge, so that no replica waits for
/// (or is dropped during) neighbour resolution.
pub fn pin_neighbours(lab: &Lab) {
    for (sink_if, edge_if, v4, v6) in [
        (iface::SNK0, iface::OUT0, addr::SNK0_V4, addr::SNK0_V6),
        (iface::SNK1, iface::OUT1, addr::SNK1_V4, addr::SNK1_V6),
    ] {
        let mac = super::mac(&lab.sink, sink_if);
        for ip in [v4.into(), v6.into()] {
            super::pin_neighbour(&lab.edge, ip, &mac, edge_if);
        }
    }
}
