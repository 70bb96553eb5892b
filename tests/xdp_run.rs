//! The real `fanout run` in XDP mode, in the lab, for what an operator
//! counts on beyond delivery (which `tests/xdp_engine.rs` checks):
//!
//! - `killed_engine_fails_open_within_a_second`: while a stream flows to
//!   the engine (and, through it, to its output), the engine is SIGKILLed;
//!   a kernel socket on the edge host joined to the group receives the
//!   stream again within a second, byte-exact, and no XDP program is left
//!   on `in0`. Before the kill, that socket received nothing of the flow:
//!   the frames went through AF_XDP.
//! - `traffic_it_was_not_asked_for_is_untouched`: while the engine
//!   forwards the flow, ping and unicast UDP to the edge host and multicast
//!   to a group nobody configured reach the edge's kernel, byte-exact, and
//!   the program's counters say exactly what it matched and redirected.
//! - `accounting_balances_when_the_rings_fill`: an unpaced jumbo stream
//!   (`fanout gen --fast`) far above what the lab's copy-mode AF_XDP can
//!   carry, to 8 unicast outputs and 1 multicast output; after the run,
//!   for every output `sent + dropped by reason == received`, the rings did
//!   fill (replicas dropped as `ring_full`, or frames dropped by the kernel
//!   at the receive ring), and the engine received exactly what the
//!   program redirected minus what the kernel dropped before the engine
//!   saw it.
//!
//! Needs root and the XDP object (`FANOUT_EBPF_OBJ`, or the release build
//! in `xdp-ebpf/target`); skips loudly otherwise, fails under
//! `FANOUT_REQUIRE_PRIVILEGED=1`. Every namespace belongs to a `Lab` guard.

use std::fs;
use std::io::Write as _;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use fanout::lab::payload;
use fanout::lab::{self, Lab, Netns, Process, addr, iface};
use fanout::stats::{DropReason, Snapshot};
use socket2::{Domain, InterfaceIndexOrAddress, Protocol, Socket, Type};

const GROUP: Ipv4Addr = Ipv4Addr::new(239, 10, 0, 1);
/// Same port, a group nobody configured.
const OTHER_GROUP: Ipv4Addr = Ipv4Addr::new(239, 10, 0, 2);
const PORT: u16 = 5000;
const UNICAST_PORT: u16 = 7001;
const OUT_PORT: u16 = 6001;
const MCAST_OUT: Ipv4Addr = Ipv4Addr::new(239, 255, 10, 1);
const MCAST_OUT_PORT: u16 = 7000;
const DEADLINE: Duration = Duration::from_secs(10);
const FAIL_OPEN: Duration = Duration::from_secs(1);
/// Stream ids of `fanout::lab::payload`.
const FLOW_STREAM: u32 = 1;
const UNICAST_STREAM: u32 = 2;
const OTHER_STREAM: u32 = 3;

/// A scratch directory, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("{name}-files"));
        fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// `mode = "xdp"`, the flow on in0, `unicast` outputs 6001.. on out0, and
/// optionally the multicast re-emission on out1.
fn config(unicast: u16, multicast: bool) -> String {
    let mut toml = format!(
        "[engine]\nmode = \"xdp\"\n\n[[flow]]\nname = \"f\"\ninterface = \"{}\"\ngroup = \"{GROUP}\"\nport = {PORT}\n",
        iface::IN0
    );
    for port in OUT_PORT..OUT_PORT + unicast {
        toml += &format!(
            "\n  [[flow.output]]\n  name = \"u{port}\"\n  unicast = \"{}:{port}\"\n  interface = \"{}\"\n",
            addr::SNK0_V4,
            iface::OUT0
        );
    }
    if multicast {
        toml += &format!(
            "\n  [[flow.output]]\n  name = \"m\"\n  multicast = \"{MCAST_OUT}:{MCAST_OUT_PORT}\"\n  interface = \"{}\"\n",
            iface::OUT1
        );
    }
    toml
}

/// `fanout run` in the edge namespace, ready (its ready file exists).
fn start_engine(lab: &Lab, obj: &Path, files: &Scratch, config: &str) -> Process {
    let cfg = files.path("fanout.toml");
    fs::write(&cfg, config).unwrap();
    let ready = files.path("ready");
    let mut cmd = lab.edge.command(env!("CARGO_BIN_EXE_fanout"));
    cmd.arg("run")
        .arg("--config")
        .arg(&cfg)
        .arg("--stats-json")
        .arg(files.path("stats.json"))
        .arg("--ready-file")
        .arg(&ready)
        .env("FANOUT_EBPF_OBJ", obj)
        .env("RUST_LOG", "info");
    let mut engine = Process::spawn("fanout run", &mut cmd).expect("spawn fanout run");
    let up = lab::wait_until(DEADLINE, || {
        if ready.exists() {
            Some(true)
        } else if !engine.is_running() {
            Some(false)
        } else {
            None
        }
    });
    if up != Some(true) {
        let done = engine.finish(DEADLINE);
        panic!("fanout run never became ready: {done:?}");
    }
    engine
}

/// SIGTERM, a clean exit on the XDP rung, the final JSON counters.
fn stop_engine(mut engine: Process, files: &Scratch) -> (Snapshot, String) {
    engine.terminate().unwrap();
    let done = engine
        .finish(DEADLINE)
        .expect("fanout run stops on SIGTERM");
    assert!(done.status.success(), "fanout run: {done:?}");
    assert!(
        done.stderr.contains("fanout: engine xdp native copy"),
        "{}",
        done.stderr
    );
    let text = fs::read_to_string(files.path("stats.json")).unwrap();
    (serde_json::from_str(&text).unwrap(), done.stderr)
}

/// A UDP socket in `ns` bound to `group:port`, joined on `ifname`.
fn group_socket(ns: &Netns, group: Ipv4Addr, port: u16, ifname: &str) -> UdpSocket {
    ns.run_in(|| {
        let index = nix::net::if_::if_nametoindex(ifname).unwrap();
        let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).unwrap();
        s.set_reuse_address(true).unwrap();
        s.set_recv_buffer_size(8 << 20).unwrap();
        s.join_multicast_v4_n(&group, &InterfaceIndexOrAddress::Index(index))
            .unwrap();
        // Only this group, not every group joined on the host.
        s.set_multicast_all_v4(false).unwrap();
        s.bind(&SocketAddr::from((group, port)).into()).unwrap();
        s.into()
    })
}

fn unicast_socket(ns: &Netns, at: SocketAddrV4) -> UdpSocket {
    ns.run_in(|| {
        let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).unwrap();
        s.set_recv_buffer_size(8 << 20).unwrap();
        s.bind(&at.into()).unwrap();
        s.into()
    })
}

/// The source's sending socket (multicast out of src0, TTL 1, no loop).
fn source_socket(src: &Netns) -> UdpSocket {
    src.run_in(|| {
        let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).unwrap();
        s.set_multicast_if_v4(&addr::SRC0_V4).unwrap();
        s.set_multicast_ttl_v4(1).unwrap();
        s.set_multicast_loop_v4(false).unwrap();
        s.bind(&SocketAddr::from((addr::SRC0_V4, 4000)).into())
            .unwrap();
        s.into()
    })
}

fn datagram(stream: u32, seq: u64, len: usize) -> Vec<u8> {
    let mut d = vec![0u8; len];
    payload::fill(stream, seq, &mut d);
    d
}

/// The sequence number of an intact datagram of `stream`; panics on a
/// corrupt one.
fn check_exact(got: &[u8], stream: u32, what: &str) -> u64 {
    let seq = payload::check(got)
        .unwrap_or_else(|e| panic!("{what}: corrupt datagram of {} bytes: {e}", got.len()));
    assert_eq!(seq.0, stream, "{what}: datagram of another stream");
    seq.1
}

/// The next datagram on `sock` within `timeout`.
fn recv_within(sock: &UdpSocket, timeout: Duration, what: &str) -> Vec<u8> {
    sock.set_read_timeout(Some(timeout)).unwrap();
    let mut buf = vec![0u8; 65536];
    let n = sock
        .recv(&mut buf)
        .unwrap_or_else(|e| panic!("{what}: nothing within {timeout:?}: {e}"));
    buf.truncate(n);
    buf
}

/// Everything queued on `sock` now (non-blocking).
fn drain(sock: &UdpSocket) -> Vec<Vec<u8>> {
    sock.set_nonblocking(true).unwrap();
    let mut out = Vec::new();
    let mut buf = vec![0u8; 65536];
    while let Ok(n) = sock.recv(&mut buf) {
        out.push(buf[..n].to_vec());
    }
    sock.set_nonblocking(false).unwrap();
    out
}

/// Whether an XDP program is attached to `dev` in `ns`.
fn xdp_attached(ns: &Netns, dev: &str) -> bool {
    let out = ns.ip(&["-j", "-d", "link", "show", "dev", dev]).unwrap();
    let links: serde_json::Value = serde_json::from_str(&out).unwrap();
    links[0].get("xdp").is_some()
}

#[test]
fn killed_engine_fails_open_within_a_second() {
    let test = "killed_engine_fails_open_within_a_second";
    let Some(obj) = lab::xdp_ready(test) else {
        return;
    };
    let lab = Lab::up(&lab::unique_prefix("xk")).expect("lab up");
    let files = Scratch::new(lab.prefix());
    let output = unicast_socket(&lab.sink, SocketAddrV4::new(addr::SNK0_V4, OUT_PORT));
    // A kernel socket on the edge host, joined to the flow's group.
    let kernel = group_socket(&lab.edge, GROUP, PORT, iface::IN0);
    let engine = start_engine(&lab, &obj, &files, &config(1, false));
    assert!(xdp_attached(&lab.edge, iface::IN0));

    // The stream: one jumbo datagram per millisecond, bounded in count and
    // time, numbered so that what arrives after the kill is known.
    let stop = Arc::new(AtomicBool::new(false));
    let last_sent = Arc::new(AtomicU64::new(0));
    let source = source_socket(&lab.src);
    let sender = {
        let (stop, last_sent) = (stop.clone(), last_sent.clone());
        std::thread::spawn(move || {
            let start = Instant::now();
            for seq in 0..30_000u64 {
                if stop.load(Ordering::Relaxed) || start.elapsed() > Duration::from_secs(30) {
                    break;
                }
                let d = datagram(FLOW_STREAM, seq, 8972);
                source.send_to(&d, (GROUP, PORT)).unwrap();
                last_sent.store(seq, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(1));
            }
        })
    };

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

    let killed_after = last_sent.load(Ordering::Relaxed);
    let pid = nix::unistd::Pid::from_raw(engine.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL).unwrap();
    let killed_at = Instant::now();

    // The stream reaches the kernel socket again: the first datagram sent
    // after the kill arrives within a second, byte-exact (earlier ones may
    // still have been redirected while the process was dying).
    let back = loop {
        let left = FAIL_OPEN
            .checked_sub(killed_at.elapsed())
            .unwrap_or_else(|| panic!("the stream did not reach the kernel within {FAIL_OPEN:?}"));
        let got = recv_within(&kernel, left, "kernel socket after the kill");
        let seq = check_exact(&got, FLOW_STREAM, "kernel socket");
        assert_eq!(got.len(), 8972);
        if seq > killed_after {
            break killed_at.elapsed();
        }
    };
    stop.store(true, Ordering::Relaxed);
    sender.join().unwrap();
    let mut engine = engine;
    let done = engine
        .finish(DEADLINE)
        .expect("the killed engine is reaped");
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&done.status),
        Some(9),
        "{done:?}"
    );
    // No program left behind: the engine's link died with it.
    let gone = lab::wait_until(FAIL_OPEN, || {
        (!xdp_attached(&lab.edge, iface::IN0)).then_some(())
    });
    assert!(gone.is_some(), "an XDP program is still attached to in0");
    let _ = writeln!(
        std::io::stderr(),
        "{test}: the stream reached the kernel {back:?} after SIGKILL"
    );
}

#[test]
fn traffic_it_was_not_asked_for_is_untouched() {
    let test = "traffic_it_was_not_asked_for_is_untouched";
    let Some(obj) = lab::xdp_ready(test) else {
        return;
    };
    let lab = Lab::up(&lab::unique_prefix("xt")).expect("lab up");
    let files = Scratch::new(lab.prefix());
    let output = unicast_socket(&lab.sink, SocketAddrV4::new(addr::SNK0_V4, OUT_PORT));
    let flow_kernel = group_socket(&lab.edge, GROUP, PORT, iface::IN0);
    let other_kernel = group_socket(&lab.edge, OTHER_GROUP, PORT, iface::IN0);
    let unicast_kernel = unicast_socket(&lab.edge, SocketAddrV4::new(addr::IN0_V4, UNICAST_PORT));
    let engine = start_engine(&lab, &obj, &files, &config(1, false));
    let source = source_socket(&lab.src);
    let icmp = lab.src.run_in(|| {
        let s = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::ICMPV4)).unwrap();
        s.bind(&SocketAddr::from((addr::SRC0_V4, 0)).into())
            .unwrap();
        s
    });

    const N: u64 = 20;
    let sizes = [64usize, 1472, 8972];
    for seq in 0..N {
        let len = sizes[seq as usize % sizes.len()];
        // The configured flow: to the engine's output only.
        source
            .send_to(&datagram(FLOW_STREAM, seq, len), (GROUP, PORT))
            .unwrap();
        let got = recv_within(&output, DEADLINE, "engine output");
        assert_eq!(check_exact(&got, FLOW_STREAM, "engine output"), seq);
        assert_eq!(got.len(), len);
        // Multicast to a group nobody configured: the edge's kernel.
        source
            .send_to(&datagram(OTHER_STREAM, seq, len), (OTHER_GROUP, PORT))
            .unwrap();
        let got = recv_within(&other_kernel, DEADLINE, "unconfigured group");
        assert_eq!(check_exact(&got, OTHER_STREAM, "unconfigured group"), seq);
        assert_eq!(got.len(), len);
        // Unicast UDP to the edge host: the edge's kernel.
        source
            .send_to(
                &datagram(UNICAST_STREAM, seq, len),
                (addr::IN0_V4, UNICAST_PORT),
            )
            .unwrap();
        let got = recv_within(&unicast_kernel, DEADLINE, "unicast to the edge");
        assert_eq!(
            check_exact(&got, UNICAST_STREAM, "unicast to the edge"),
            seq
        );
        assert_eq!(got.len(), len);
        // Ping the edge host.
        let data = datagram(UNICAST_STREAM, seq, 56);
        let reply = lab::ping(&icmp, addr::IN0_V4, 0x4242, seq as u16, &data, DEADLINE).unwrap();
        assert_eq!(
            fanout::wire::checksum::data(&reply),
            0xffff,
            "reply checksum"
        );
        assert_eq!(&reply[..2], &[0, 0], "echo reply");
        assert_eq!(&reply[8..], &data[..], "echo data");
    }
    // The flow never reached the kernel, the other group never reached the
    // output.
    assert!(drain(&flow_kernel).is_empty(), "the kernel saw the flow");
    assert!(drain(&other_kernel).is_empty());
    assert!(drain(&unicast_kernel).is_empty());
    output
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    assert!(
        output.recv(&mut [0u8; 9000]).is_err(),
        "the output got more than the flow"
    );

    let (snap, _) = stop_engine(engine, &files);
    snap.check_accounting().unwrap();
    let flow = snap.flow("f").unwrap();
    assert_eq!((flow.received, flow.outputs[0].sent), (N, N));
    let xdp = snap.xdp.as_ref().expect("the XDP section");
    let program = &xdp.interfaces[0].program;
    assert_eq!(program["matched"], N, "{program:?}");
    assert_eq!(program["redirected"], N, "{program:?}");
    // Everything else the program saw went to the kernel: the other group,
    // the unicast datagrams, the pings, and whatever the stacks said to
    // each other (ARP, IGMP, ND): at least the 3 x N of this test.
    assert_eq!(program["seen"], program["matched"] + program["passed"]);
    assert!(program["passed"] >= 3 * N, "{program:?}");
}

#[test]
fn accounting_balances_when_the_rings_fill() {
    let test = "accounting_balances_when_the_rings_fill";
    let Some(obj) = lab::xdp_ready(test) else {
        return;
    };
    let lab = Lab::up(&lab::unique_prefix("xa")).expect("lab up");
    let files = Scratch::new(lab.prefix());
    let engine = start_engine(&lab, &obj, &files, &config(8, true));

    // Unpaced jumbo trains from the source: far more than copy-mode AF_XDP
    // on veth carries (bounded: 200 000 datagrams or 10 s).
    let generator = lab
        .src
        .command(env!("CARGO_BIN_EXE_fanout"))
        .args(["lab", "gen", "--fast", "--dest"])
        .arg(format!("{GROUP}:{PORT}"))
        .args(["--iface", iface::SRC0, "--sizes", "8972"])
        .args(["--count", "200000", "--max-seconds", "10"])
        .output()
        .expect("fanout gen");
    assert!(generator.status.success(), "{generator:?}");
    let offered = 200_000u64;

    // Let the engine finish what it has (nothing in flight), then stop it.
    let (snap, stderr) = stop_engine(engine, &files);
    snap.check_accounting()
        .unwrap_or_else(|e| panic!("{e}\n{snap}\n{stderr}"));
    let flow = snap.flow("f").unwrap();
    assert_eq!(flow.outputs.len(), 9);
    let xdp = snap.xdp.as_ref().expect("the XDP section");
    let i = &xdp.interfaces[0];
    let q = &i.queues[0];
    // What the program redirected either reached the engine or was dropped
    // by the kernel at the socket's receive side: its RX ring full
    // (`rx_ring_full`), or no fill frame or another reason (`rx_dropped`).
    let kernel_rx_drops = q.rx_socket["rx_dropped"] + q.rx_socket["rx_ring_full"];
    assert_eq!(
        i.program["redirected"],
        q.worker["rx_packets"] + kernel_rx_drops,
        "{i:?}"
    );
    assert_eq!(flow.received, q.worker["rx_packets"], "{snap}");
    assert_eq!(q.worker["replicas_in_flight"], 0, "{q:?}");
    assert!(
        i.program["matched"] <= offered,
        "more matched than sent: {i:?}"
    );
    // The rings did fill: replicas dropped for a full TX ring, or frames
    // dropped by the kernel before the engine (else the test proved nothing
    // about overload).
    let ring_full: u64 = flow
        .outputs
        .iter()
        .map(|o| o.dropped.get(&DropReason::RingFull).copied().unwrap_or(0))
        .sum();
    assert!(
        ring_full + kernel_rx_drops > 0,
        "nothing overflowed at {offered} unpaced datagrams: {snap}"
    );
    let _ = writeln!(
        std::io::stderr(),
        "{test}: offered {offered}, matched {}, engine received {}, kernel rx drops {kernel_rx_drops}, replicas dropped ring_full {ring_full}",
        i.program["matched"],
        flow.received
    );
}
