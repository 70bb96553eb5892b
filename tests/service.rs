//! fanout as a service (issue 13): what systemd sees of `fanout run`, and
//! what SIGHUP does until plans change while running.
//!
//! The notify scenario runs once per engine: `fanout run` in the lab's
//! edge namespace with a `NOTIFY_SOCKET` of the test's own (a datagram
//! socket in the scratch directory) and `WATCHDOG_USEC=1000000`, forwarding
//! a stream; then one worker stalls on purpose (the lab's
//! `FANOUT_LAB_STALL_WORKER_AFTER_MS`) and the watchdog pings must stop
//! while the process still runs. Privileged: root and `ip netns`, as the
//! end-to-end suite.

mod common;

use std::net::SocketAddr;
use std::os::unix::net::UnixDatagram;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::engine::{Case, EngineKind, for_each_engine, run_command};
use common::traffic::{assert_stream, payloads, receive, send_all, sender, unicast_receiver};
use common::{DEADLINE, wait_for_file};
use fanout::lab::{Process, addr, iface};

/// The watchdog period the tests give (`WATCHDOG_USEC`).
const WATCHDOG: Duration = Duration::from_secs(1);

/// When the stalled worker stops, after its first turn.
const STALL_AFTER_MS: u64 = 3000;

/// Every notification `fanout run` sent, with when it arrived.
#[derive(Debug, Clone, Default)]
struct Notes(Arc<Mutex<Vec<(Instant, String)>>>);

impl Notes {
    /// Collects what arrives on `sock` until `until`.
    fn listen(sock: UnixDatagram, until: Instant) -> Notes {
        let notes = Notes::default();
        let into = notes.clone();
        sock.set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while Instant::now() < until {
                if let Ok(n) = sock.recv(&mut buf) {
                    let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                    into.0.lock().unwrap().push((Instant::now(), text));
                }
            }
        });
        notes
    }

    fn all(&self) -> Vec<(Instant, String)> {
        self.0.lock().unwrap().clone()
    }

    /// When each message with the line `line` arrived.
    fn times(&self, line: &str) -> Vec<Instant> {
        self.all()
            .into_iter()
            .filter(|(_, m)| m.lines().any(|l| l == line))
            .map(|(t, _)| t)
            .collect()
    }

    /// Waits until `f` holds for the messages so far.
    fn wait(&self, what: &str, f: impl Fn(&[(Instant, String)]) -> bool) {
        let deadline = Instant::now() + DEADLINE;
        while !f(&self.all()) {
            assert!(
                Instant::now() < deadline,
                "{what}: not within {DEADLINE:?}: {:?}",
                self.all()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn one_flow(kind: EngineKind, port: u16) -> (String, SocketAddr) {
    let a = SocketAddr::new(addr::SNK0_V4.into(), port);
    let config = format!(
        "[engine]\nmode = \"{}\"\n\n[[flow]]\nname = \"tv\"\ninterface = \"{}\"\n\
         group = \"239.7.3.1\"\nport = 5000\n\n  [[flow.output]]\n  name = \"a\"\n  \
         unicast = \"{a}\"\n",
        kind.mode(),
        iface::IN0,
    );
    (config, a)
}

/// `READY=1` with the engine of every flow in `STATUS=`, `WATCHDOG=1` every
/// half period while every worker moves (and the stream is forwarded),
/// no ping once a worker stalls while the process runs on (with the stall
/// said in `STATUS=` and the log), and `STOPPING=1` at the stop.
fn systemd_sees(test: &str, kind: EngineKind) {
    let Some(case) = Case::new(test, kind) else {
        return;
    };
    let lab = &case.lab;
    let sock_path = case.files.path("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    let notes = Notes::listen(sock, Instant::now() + DEADLINE * 3);
    let (config, a) = one_flow(kind, 6301);
    let rx = unicast_receiver(&lab.sink, a);
    let path = sock_path.to_str().unwrap();
    let stall = STALL_AFTER_MS.to_string();
    let watchdog = WATCHDOG.as_micros().to_string();
    let engine = case.start_env(
        &config,
        &[],
        &[
            ("NOTIFY_SOCKET", path),
            ("WATCHDOG_USEC", &watchdog),
            ("FANOUT_LAB_STALL_WORKER_AFTER_MS", &stall),
        ],
    );
    let started = Instant::now();
    // Ready, and the status names the engine of the flow.
    notes.wait("READY=1", |n| {
        n.iter().any(|(_, m)| m.lines().any(|l| l == "READY=1"))
    });
    let ready = notes
        .all()
        .into_iter()
        .find(|(_, m)| m.lines().any(|l| l == "READY=1"))
        .unwrap()
        .1;
    let status = format!("STATUS=running 1 flow(s): tv: {}", kind.rung());
    assert!(
        ready.lines().any(|l| l == status),
        "{status:?} with READY=1: {ready:?}"
    );
    // It forwards while the watchdog is fed.
    let want = payloads(3, 0, &[64, 1472, 8972], 20);
    let tx = sender(&lab.src, (addr::SRC0_V4, 0));
    send_all(
        &tx,
        SocketAddr::new("239.7.3.1".parse().unwrap(), 5000),
        &want,
    );
    assert_stream("output a", &receive(&rx, want.len()), &want);

    // The worker stalls 3 s after it started; the pings stop within the
    // stall limit (half the period) plus a period. Wait for a silence of
    // four periods while the process runs on.
    let silence = WATCHDOG * 4;
    notes.wait("the watchdog pings stop", |_| {
        let pings = notes.times("WATCHDOG=1");
        pings
            .last()
            .is_some_and(|last| last.elapsed() >= silence && started.elapsed() > silence)
    });
    assert!(
        nix::sys::signal::kill(pid(&engine.process), None).is_ok(),
        "fanout run still runs while its worker is stalled"
    );
    let pings = notes.times("WATCHDOG=1");
    let last = *pings.last().unwrap();
    // Fed regularly until the stall: at least one ping per 0.8 period from
    // the first to the last, and the last at or after the stall began.
    let fed = last.duration_since(pings[0]);
    assert!(
        pings.len() as u128 >= fed.as_millis() / (WATCHDOG.as_millis() * 8 / 10),
        "{} pings over {fed:?}: {pings:?}",
        pings.len()
    );
    for w in pings.windows(2) {
        assert!(
            w[1].duration_since(w[0]) <= WATCHDOG * 8 / 10,
            "a gap in the pings before the stall: {:?}",
            w[1].duration_since(w[0])
        );
    }
    assert!(
        last.duration_since(started) >= Duration::from_millis(STALL_AFTER_MS) - WATCHDOG,
        "pinged until about the stall: last ping {:?} after start",
        last.duration_since(started)
    );
    let stalled = notes
        .all()
        .into_iter()
        .any(|(_, m)| m.lines().any(|l| l.starts_with("STATUS=stalled: ")));
    assert!(stalled, "the stall in STATUS=: {:?}", notes.all());

    let (snap, f) = engine.stop();
    notes.wait("STOPPING=1", |n| {
        n.iter().any(|(_, m)| m.lines().any(|l| l == "STOPPING=1"))
    });
    assert!(
        f.stderr.contains("made no progress for")
            && f.stderr
                .contains("the systemd watchdog is no longer fed, systemd will restart fanout"),
        "the stall is logged:\n{}",
        f.stderr
    );
    assert!(
        f.stderr.contains("systemd: notify on, watchdog every 1s"),
        "{}",
        f.stderr
    );
    let flow = snap.flow("tv").unwrap();
    assert_eq!(flow.received, want.len() as u64, "{snap}");
    assert_eq!(flow.output("a").unwrap().sent, want.len() as u64, "{snap}");
}

for_each_engine!(systemd_sees:
    notify_and_watchdog,
    notify_and_watchdog_xdp_native,
    notify_and_watchdog_xdp_generic
);

fn pid(p: &Process) -> nix::unistd::Pid {
    nix::unistd::Pid::from_raw(p.id() as i32)
}

/// SIGHUP, until plans change while running: a clean stop with the final
/// counters and exit status 3 (the unit's `RestartForceExitStatus=3`
/// starts fanout again), `STOPPING=1` saying why, the ready file removed.
#[test]
fn sighup_stops_with_the_final_counters_to_be_restarted() {
    let test = "sighup_stops_with_the_final_counters_to_be_restarted";
    let Some(case) = Case::new(test, EngineKind::Socket) else {
        return;
    };
    let lab = &case.lab;
    let sock_path = case.files.path("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    let notes = Notes::listen(sock, Instant::now() + DEADLINE * 2);
    let (config, a) = one_flow(EngineKind::Socket, 6302);
    let rx = unicast_receiver(&lab.sink, a);
    let (mut cmd, files) = run_command(&lab.edge, &case.files, "hup", &config);
    cmd.env("NOTIFY_SOCKET", &sock_path);
    let mut p = Process::spawn("fanout run", &mut cmd).unwrap();
    assert!(wait_for_file(&mut p, &files.ready, DEADLINE), "never ready");
    let want = payloads(4, 0, &[1472], 10);
    let tx = sender(&lab.src, (addr::SRC0_V4, 0));
    send_all(
        &tx,
        SocketAddr::new("239.7.3.1".parse().unwrap(), 5000),
        &want,
    );
    assert_stream("output a", &receive(&rx, want.len()), &want);
    nix::sys::signal::kill(pid(&p), nix::sys::signal::Signal::SIGHUP).unwrap();
    let f = p.finish(DEADLINE).unwrap();
    assert_eq!(f.status.code(), Some(3), "exit 3 on SIGHUP:\n{}", f.stderr);
    assert!(
        f.stderr
            .contains("SIGHUP: plans cannot change while running yet"),
        "{}",
        f.stderr
    );
    assert!(f.stdout.contains("flow "), "final table:\n{}", f.stdout);
    assert!(!files.ready.exists(), "the ready file is removed");
    let snap: fanout::stats::Snapshot =
        serde_json::from_str(&std::fs::read_to_string(&files.stats).unwrap()).unwrap();
    assert_eq!(
        snap.flow("tv").unwrap().output("a").unwrap().sent,
        10,
        "{snap}"
    );
    notes.wait("STOPPING=1 with why", |n| {
        n.iter().any(|(_, m)| {
            m.lines().any(|l| l == "STOPPING=1")
                && m.lines()
                    .any(|l| l == "STATUS=stopping: SIGHUP, to be restarted")
        })
    });
}

/// The unit shipped in `userspace/dist` is one systemd accepts:
/// `systemd-analyze verify` with its `ExecStart=` pointed at this build
/// (the installed one is verified by the package test, man page included).
#[test]
fn the_unit_passes_systemd_analyze_verify() {
    let test = "the_unit_passes_systemd_analyze_verify";
    if std::process::Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        let reason = "systemd-analyze is not installed (cargo xtask setup installs systemd)";
        if std::env::var("FANOUT_REQUIRE_PRIVILEGED").is_ok_and(|v| v == "1") {
            panic!("{test}: {reason}");
        }
        fanout::lab::skip_loudly(test, reason);
        return;
    }
    let unit = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/dist/fanout.service"))
        .unwrap();
    for want in [
        "Type=notify",
        "WatchdogSec=",
        "RestartPreventExitStatus=2",
        "RestartForceExitStatus=3",
        "Restart=on-failure",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "LimitMEMLOCK=",
        "CapabilityBoundingSet=",
        "AmbientCapabilities=",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "RuntimeDirectory=fanout",
    ] {
        assert!(
            unit.lines().any(|l| l.starts_with(want)),
            "the unit sets {want}"
        );
    }
    let files = common::Scratch::new(&fanout::lab::unique_prefix("unit"));
    let path = files.path("fanout.service");
    std::fs::write(&path, unit.replace("/usr/bin/fanout", common::FANOUT)).unwrap();
    let out = std::process::Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.trim().is_empty(),
        "systemd-analyze verify: {:?}\n{stderr}",
        out.status
    );
}
