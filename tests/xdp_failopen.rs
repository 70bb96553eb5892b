//! Fail-open (docs/architecture.md, decision 5): when the process that loaded the XDP
//! program is gone, the traffic flows to the kernel again; a program stays
//! behind only where it was pinned on purpose. In the lab
//! (`fanout::lab::Lab`, one per test, unique prefix).
//!
//! - `killed_socket_holder_fails_open_within_a_second`: a child process
//!   holds the program (a bpf_link it owns, not pinned) and an AF_XDP socket
//!   in `XSKS` for the configured flow while a bounded stream flows from the
//!   source; the child is SIGKILLed; the stream reaches a kernel socket
//!   joined to the group on the edge host within 1 second, byte-exact and in
//!   order, and no XDP program is left on `in0`.
//! - `killed_engine_fails_open_within_a_second`: the same for the real
//!   `fanout run` (`mode = "xdp"`): while a jumbo stream flows through the
//!   engine to its output, the kernel socket gets nothing of it (AF_XDP
//!   carries it); after SIGKILL the first datagram sent after the kill
//!   reaches the kernel socket within a second, byte-exact, and no XDP
//!   program is left on `in0`.
//! - `pinned_program_outlives_its_loader_until_unloaded`: a child does what
//!   `cargo xtask load` does through the library (load, attach, the
//!   configuration's flows, pin) and exits; the program stays attached and
//!   counts the flow it passes to the kernel (no socket: fail-open); removing
//!   the pins (what `cargo xtask unload` does) detaches it, and traffic still
//!   reaches the kernel, now unseen by the program.
//!
//! The children of the first and the last are this test binary re-executed
//! in the edge namespace (`ip netns exec`) running the ignored
//! `helper_process` test, which acts only when `FANOUT_FAILOPEN_HELPER` is
//! set.
//!
//! Needs root, `ip netns` and the XDP object (`FANOUT_EBPF_OBJ`, or the
//! release build in `xdp-ebpf/target`); otherwise skips loudly, or fails
//! under `FANOUT_REQUIRE_PRIVILEGED=1`.

mod common;

use std::io::Write as _;
use std::net::Ipv4Addr;
use std::os::unix::process::ExitStatusExt as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use aya::maps::{Map, MapData, PerCpuArray};
use common::engine::{Case, EngineKind};
use common::traffic::{
    Stream, assert_empty, check_exact, datagram, drain, multicast_receiver, recv_within, sender,
    unicast_receiver,
};
use common::xdp::{Bpffs, fill_frames, frame_bytes, wait_detached, xdp_attached};
use common::{DEADLINE, Scratch, sigkill};
use fanout::lab::{self, Lab, Process, addr, iface, payload, unique_prefix, wait_until};
use fanout::plan::Plan;
use fanout::xdp::program::{Counters, XdpProgram};
use fanout::xdp::worker::ring::{Desc, RxPort};
use fanout::xdp::xsk::{FRAME_SIZE, RingSizes, XskUmem};
use fanout_common::Counter;

/// The configured flow.
const GROUP: Ipv4Addr = Ipv4Addr::new(239, 77, 0, 1);
const PORT: u16 = 5000;
/// The flow's one output (unicast to the sink, out of out0).
const OUT_PORT: u16 = 6000;
const SOURCE_PORT: u16 = 4000;
/// The fail-open deadline.
const FAIL_OPEN: Duration = Duration::from_secs(1);
/// Payload stream id (see `fanout::lab::payload`).
const FLOW_STREAM: u32 = 1;

/// Helper process mode (`hold` or `pin`); unset: the helper does nothing.
const HELPER_ENV: &str = "FANOUT_FAILOPEN_HELPER";
const CONFIG_ENV: &str = "FANOUT_FAILOPEN_CONFIG";
/// `hold`: the file where the helper writes "received corrupt".
const STATUS_ENV: &str = "FANOUT_FAILOPEN_STATUS";
/// `pin`: the pin directory.
const PIN_ENV: &str = "FANOUT_FAILOPEN_PIN";
/// The longest a `hold` helper lives (it is normally killed long before).
const HELPER_LIFETIME: Duration = Duration::from_secs(60);
const HELPER_FRAMES: u32 = 64;

/// The configuration every test (and helper) uses: one flow on `in0`, one
/// unicast output to the sink.
fn config() -> String {
    format!(
        "[engine]\nmode = \"xdp\"\n\n[[flow]]\nname = \"failopen\"\ninterface = \"{}\"\n\
         group = \"{GROUP}\"\nport = {PORT}\n\n  [[flow.output]]\n  unicast = \"{}:{OUT_PORT}\"\n  \
         interface = \"{}\"\n",
        iface::IN0,
        addr::SNK0_V4,
        iface::OUT0
    )
}

/// [`config`] written to `fanout.toml` in `files`.
fn write_config(files: &Scratch) -> PathBuf {
    let path = files.path("fanout.toml");
    std::fs::write(&path, config()).unwrap();
    path
}

/// Starts this test binary's `helper_process` in the edge namespace.
fn spawn_helper(lab: &Lab, mode: &str, envs: &[(&str, &Path)]) -> Process {
    let exe = std::env::current_exe().unwrap();
    let mut cmd = lab.edge.command(exe);
    cmd.args([
        "helper_process",
        "--exact",
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ])
    .env(HELPER_ENV, mode)
    .env("FANOUT_EBPF_OBJ", lab::xdp_object_path());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    Process::spawn(&format!("helper {mode}"), &mut cmd).unwrap()
}

/// The `COUNTERS` values of a pinned map, summed over the CPUs.
fn pinned_counters(map: &PerCpuArray<MapData, u64>) -> Counters {
    let mut out = Counters::default();
    for c in Counter::ALL {
        out.0[c.index() as usize] = map.get(&c.index(), 0).unwrap().iter().sum();
    }
    out
}

#[test]
fn killed_socket_holder_fails_open_within_a_second() {
    let test = "killed_socket_holder_fails_open_within_a_second";
    let Some(_obj) = lab::xdp_ready(test) else {
        return;
    };
    let lab = Lab::up(&unique_prefix("xf")).unwrap();
    let files = Scratch::new(lab.prefix());
    let config = write_config(&files);
    let status = files.path("status");

    let kernel = multicast_receiver(&lab.edge, GROUP.into(), PORT, iface::IN0);
    let mut child = spawn_helper(
        &lab,
        "hold",
        &[(CONFIG_ENV, &config), (STATUS_ENV, &status)],
    );
    let read_status = || -> Option<(u64, u64)> {
        let s = std::fs::read_to_string(&status).ok()?;
        let mut it = s.split_whitespace().map(|w| w.parse::<u64>().unwrap());
        Some((it.next()?, it.next()?))
    };
    if wait_until(DEADLINE, read_status).is_none() {
        let out = child.finish(Duration::from_secs(1));
        panic!("the helper never became ready: {out:?}");
    }
    assert!(
        xdp_attached(&lab.edge, iface::IN0),
        "helper attached nothing"
    );

    // The stream flows into the helper's AF_XDP socket, not the kernel.
    let source = sender(&lab.src, (addr::SRC0_V4, SOURCE_PORT));
    let stream = Stream::start(
        source,
        (GROUP, PORT),
        (FLOW_STREAM, 1000),
        20_000,
        Duration::from_secs(20),
    );
    let (received, corrupt) = wait_until(DEADLINE, || read_status().filter(|s| s.0 >= 50))
        .unwrap_or_else(|| panic!("the helper received {:?}", read_status()));
    assert_eq!(corrupt, 0, "the helper saw corrupt datagrams");
    assert!(received <= stream.sent());
    assert_empty(
        &kernel,
        "kernel socket while the AF_XDP socket holds the flow",
    );

    // SIGKILL: no clean-up code runs in the child.
    sigkill(&child);
    let killed_at = Instant::now();
    let got = recv_within(&kernel, FAIL_OPEN, "stream at the kernel after SIGKILL");
    let took = killed_at.elapsed();
    assert!(took < FAIL_OPEN, "fail-open took {took:?}");
    let first = check_exact(&got, FLOW_STREAM, "stream at the kernel");
    eprintln!("fail-open after {took:?}: seq {first} at the kernel (helper saw {received})");
    // And it keeps flowing, in order, byte-exact.
    let mut last = first;
    for _ in 0..20 {
        let got = recv_within(&kernel, FAIL_OPEN, "stream");
        let seq = check_exact(&got, FLOW_STREAM, "stream");
        assert!(seq > last, "seq {seq} after {last}");
        last = seq;
    }

    let done = child.finish(DEADLINE).unwrap();
    assert_eq!(done.status.signal(), Some(libc::SIGKILL), "{done:?}");
    // The link was the child's (not pinned): gone with it.
    assert!(
        wait_detached(&lab.edge, iface::IN0, DEADLINE),
        "an XDP program is still attached to in0 after the engine died"
    );
    stream.stop();
}

#[test]
fn killed_engine_fails_open_within_a_second() {
    let test = "killed_engine_fails_open_within_a_second";
    let Some(case) = Case::unpinned(test, EngineKind::XdpNative) else {
        return;
    };
    let lab = &case.lab;
    let output = unicast_receiver(&lab.sink, (addr::SNK0_V4, OUT_PORT));
    // A kernel socket on the edge host, joined to the flow's group.
    let kernel = multicast_receiver(&lab.edge, GROUP.into(), PORT, iface::IN0);
    let mut engine = case.start(&config());
    assert!(xdp_attached(&lab.edge, iface::IN0));

    // The stream: one jumbo datagram per millisecond, bounded in count and
    // time, numbered so that what arrives after the kill is known.
    let source = sender(&lab.src, (addr::SRC0_V4, SOURCE_PORT));
    let stream = Stream::start(
        source,
        (GROUP, PORT),
        (FLOW_STREAM, 8972),
        30_000,
        Duration::from_secs(30),
    );

    // Under load: 300 datagrams through the engine, in order and intact.
    for want in 0..300u64 {
        let got = recv_within(&output, DEADLINE, "engine output");
        assert_eq!(check_exact(&got, FLOW_STREAM, "engine output"), want);
        assert_eq!(got.len(), 8972);
    }
    // None of them reached the edge's kernel socket: AF_XDP took them.
    assert_eq!(
        drain(&kernel).len(),
        0,
        "the kernel saw the redirected flow"
    );

    // Every datagram numbered from here on was sent after the kill.
    let sent_before_kill = stream.sent();
    sigkill(&engine.process);
    let killed_at = Instant::now();

    // The stream reaches the kernel socket again: the first datagram sent
    // after the kill arrives within a second, byte-exact (earlier ones may
    // still have been redirected while the process was dying).
    let back = loop {
        let left = FAIL_OPEN
            .checked_sub(killed_at.elapsed())
            .filter(|left| !left.is_zero())
            .unwrap_or_else(|| panic!("the stream did not reach the kernel within {FAIL_OPEN:?}"));
        let got = recv_within(&kernel, left, "kernel socket after the kill");
        let seq = check_exact(&got, FLOW_STREAM, "kernel socket");
        assert_eq!(got.len(), 8972);
        if seq >= sent_before_kill {
            break killed_at.elapsed();
        }
    };
    stream.stop();
    let done = engine
        .process
        .finish(DEADLINE)
        .expect("the killed engine is reaped");
    assert_eq!(done.status.signal(), Some(libc::SIGKILL), "{done:?}");
    // No program left behind: the engine's link died with it.
    assert!(
        wait_detached(&lab.edge, iface::IN0, FAIL_OPEN),
        "an XDP program is still attached to in0"
    );
    let _ = writeln!(
        std::io::stderr(),
        "{test}: the stream reached the kernel {back:?} after SIGKILL"
    );
}

#[test]
fn pinned_program_outlives_its_loader_until_unloaded() {
    let test = "pinned_program_outlives_its_loader_until_unloaded";
    let Some(_obj) = lab::xdp_ready(test) else {
        return;
    };
    let lab = Lab::up(&unique_prefix("xp")).unwrap();
    let files = Scratch::new(lab.prefix());
    let config = write_config(&files);
    let bpffs = Bpffs::mount(files.path("bpffs"));
    let dir = bpffs.dir().join("fanout").join(iface::IN0);

    let mut child = spawn_helper(&lab, "pin", &[(CONFIG_ENV, &config), (PIN_ENV, &dir)]);
    let done = child.finish(DEADLINE).unwrap();
    assert!(done.status.success(), "pin helper: {done:?}");
    assert!(
        xdp_attached(&lab.edge, iface::IN0),
        "the pinned program detached when its loader exited"
    );
    for name in ["link", "FLOWS", "XSKS", "COUNTERS"] {
        assert!(dir.join(name).exists(), "{name} not pinned in {dir:?}");
    }
    let counters = MapData::from_pin(dir.join("COUNTERS")).unwrap();
    let counters = PerCpuArray::<MapData, u64>::try_from(Map::from_map_data(counters).unwrap())
        .expect("COUNTERS is a per-CPU array");

    // No AF_XDP socket: the flow is matched, not redirected, and passed.
    let kernel = multicast_receiver(&lab.edge, GROUP.into(), PORT, iface::IN0);
    let source = sender(&lab.src, (addr::SRC0_V4, SOURCE_PORT));
    for seq in 0..5 {
        source
            .send_to(&datagram(FLOW_STREAM, seq, 512), (GROUP, PORT))
            .unwrap();
        let got = recv_within(&kernel, DEADLINE, "flow while pinned");
        assert_eq!(check_exact(&got, FLOW_STREAM, "flow while pinned"), seq);
    }
    let c = pinned_counters(&counters);
    assert_eq!(c.get(Counter::Matched), 5);
    assert_eq!(c.get(Counter::NoSocket), 5);
    assert_eq!(c.get(Counter::Redirected), 0);
    assert_eq!(c.get(Counter::SourceRejected), 0);

    // Unload: the pins go, the program detaches.
    assert!(
        fanout::xdp::program::unpin(&dir).unwrap(),
        "nothing was pinned"
    );
    assert!(!dir.exists());
    assert!(
        wait_detached(&lab.edge, iface::IN0, DEADLINE),
        "still attached after unpin"
    );
    assert!(
        !fanout::xdp::program::unpin(&dir).unwrap(),
        "second unpin found pins"
    );
    for seq in 5..10 {
        source
            .send_to(&datagram(FLOW_STREAM, seq, 512), (GROUP, PORT))
            .unwrap();
        let got = recv_within(&kernel, DEADLINE, "flow after unload");
        assert_eq!(check_exact(&got, FLOW_STREAM, "flow after unload"), seq);
    }
    // The program no longer sees the traffic (our map handle outlives it).
    assert_eq!(pinned_counters(&counters), c);
}

/// The child process of the tests above; does nothing unless
/// `FANOUT_FAILOPEN_HELPER` is set (`hold` or `pin`).
#[test]
#[ignore = "helper process of the fail-open tests (runs only with FANOUT_FAILOPEN_HELPER set)"]
fn helper_process() {
    let Ok(mode) = std::env::var(HELPER_ENV) else {
        return;
    };
    let env_path = |k: &str| PathBuf::from(std::env::var_os(k).unwrap_or_else(|| panic!("{k}")));
    let plan = Plan::load(&env_path(CONFIG_ENV)).unwrap();
    let mut prog = XdpProgram::load_file(&lab::xdp_object_path()).unwrap();
    let ingress = plan.flows[0].ingress.clone();
    prog.attach(&ingress.name).unwrap();
    for (id, flow) in plan.flows.iter().enumerate() {
        if flow.ingress.name == ingress.name {
            prog.insert_flow(id as u32, flow).unwrap();
        }
    }
    match mode.as_str() {
        "pin" => prog.pin(&env_path(PIN_ENV)).unwrap(),
        "hold" => hold(&mut prog, ingress.index, &env_path(STATUS_ENV)),
        other => panic!("unknown helper mode {other:?}"),
    }
}

/// Keeps an AF_XDP socket in `XSKS`, receiving and checking the flow,
/// writing "received corrupt" to `status` (atomically), until killed or
/// [`HELPER_LIFETIME`] has passed.
fn hold(prog: &mut XdpProgram, ifindex: u32, status: &Path) {
    let mut umem = XskUmem::new(HELPER_FRAMES).unwrap();
    let (mut rx, _) = umem
        .bind_rx(ifindex, 0, RingSizes::default(), false)
        .unwrap();
    prog.insert_socket(0, &rx).unwrap();
    fill_frames(&mut rx, HELPER_FRAMES, FRAME_SIZE);
    let tmp = status.with_extension("tmp");
    let write = |received: u64, corrupt: u64| {
        std::fs::write(&tmp, format!("{received} {corrupt}\n")).unwrap();
        std::fs::rename(&tmp, status).unwrap();
    };
    write(0, 0);
    let (mut received, mut corrupt) = (0u64, 0u64);
    let mut out = [Desc::default(); 64];
    let start = Instant::now();
    while start.elapsed() < HELPER_LIFETIME {
        if !rx.wait(Duration::from_millis(100)).unwrap() {
            continue;
        }
        let n = rx.receive(&mut out);
        // One packet per chain: receive hands out whole chains only.
        for chain in out[..n].split_inclusive(|d| !d.continues()) {
            if chain.last().is_some_and(Desc::continues) {
                continue;
            }
            received += 1;
            let frame = frame_bytes(&umem, chain);
            let intact = fanout::wire::parse(&frame).is_ok_and(|dg| {
                let p = &frame[dg.payload_range()];
                payload::check(p).is_ok_and(|(s, seq)| {
                    s == FLOW_STREAM && p == datagram(FLOW_STREAM, seq, p.len())
                })
            });
            corrupt += u64::from(!intact);
        }
        let back: Vec<u64> = out[..n].iter().map(|d| d.addr).collect();
        assert_eq!(rx.fill(&back), back.len());
        if n > 0 {
            write(received, corrupt);
        }
    }
}
