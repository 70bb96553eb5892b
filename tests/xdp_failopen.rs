//! Fail-open, pinning and untouched traffic of the XDP datapath, in the lab
//! (`fanout::lab::Lab`, one per test, unique prefix).
//!
//! - `killed_engine_fails_open_within_a_second`: a child process holds the
//!   program (a bpf_link it owns, not pinned) and an AF_XDP socket in `XSKS`
//!   for the configured flow while a bounded stream flows from the source;
//!   the child is SIGKILLed; the stream reaches a kernel socket joined to
//!   the group on the edge host within 1 second, byte-exact, and no XDP
//!   program is left on `in0`.
//! - `pinned_program_outlives_its_loader_until_unloaded`: a child does what
//!   `cargo xtask load` does through the library (load, attach, the
//!   configuration's flows, pin) and exits; the program stays attached and
//!   counts the flow it passes to the kernel (no socket: fail-open); removing
//!   the pins (what `cargo xtask unload` does) detaches it, and traffic still
//!   reaches the kernel, now unseen by the program.
//! - `unconfigured_traffic_is_untouched`: while the program and an AF_XDP
//!   socket redirect the configured flow, ping, unicast UDP to the edge host
//!   and multicast to an unconfigured group still reach the edge's kernel
//!   (exact payloads), the configured flow reaches the AF_XDP socket only
//!   (exact payloads), and the program's counters are exact.
//!
//! The children are this test binary re-executed in the edge namespace
//! (`ip netns exec`) running the ignored `helper_process` test, which acts
//! only when `FANOUT_FAILOPEN_HELPER` is set.
//!
//! Needs root, `ip netns` and the XDP object (`FANOUT_EBPF_OBJ`, or the
//! release build in `xdp-ebpf/target`); otherwise skips loudly, or fails
//! under `FANOUT_REQUIRE_PRIVILEGED=1`.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::os::unix::process::ExitStatusExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use aya::maps::{Map, MapData, PerCpuArray};
use fanout::lab::payload;
use fanout::lab::{self, Lab, Netns, Process, addr, iface, unique_prefix, wait_until};
use fanout::plan::Plan;
use fanout::xdp::program::{Counters, XdpProgram};
use fanout::xdp::worker::ring::{Desc, RxPort, Umem as _};
use fanout::xdp::xsk::{FRAME_SIZE, RingSizes, XskUmem};
use fanout_common::Counter;
use socket2::{Domain, Protocol, Socket, Type};

/// The configured flow.
const GROUP: Ipv4Addr = Ipv4Addr::new(239, 77, 0, 1);
/// A group nobody configured (same port as the flow).
const OTHER_GROUP: Ipv4Addr = Ipv4Addr::new(239, 77, 0, 2);
const PORT: u16 = 5000;
/// Unicast UDP port of the edge host.
const UNICAST_PORT: u16 = 7000;
const SOURCE_PORT: u16 = 4000;
/// Generous deadline for set-up steps; the fail-open deadline is 1 second.
const DEADLINE: Duration = Duration::from_secs(10);
const FAIL_OPEN: Duration = Duration::from_secs(1);
/// Payload stream ids (see `fanout::lab::payload`).
const FLOW_STREAM: u32 = 1;
const UNICAST_STREAM: u32 = 2;
const OTHER_STREAM: u32 = 3;

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

/// A scratch directory, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A private BPF filesystem on a fresh directory; unmounted on drop.
struct Bpffs(PathBuf);

impl Bpffs {
    fn mount(dir: PathBuf) -> Bpffs {
        std::fs::create_dir_all(&dir).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "bpf", "bpf"])
            .arg(&dir)
            .status()
            .unwrap();
        assert!(ok.success(), "mount -t bpf on {}", dir.display());
        Bpffs(dir)
    }
}

impl Drop for Bpffs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
        let _ = std::fs::remove_dir(&self.0);
    }
}

/// The configuration every test (and helper) uses: one flow on `in0`.
fn write_config(dir: &Path) -> PathBuf {
    let path = dir.join("fanout.toml");
    std::fs::write(
        &path,
        format!(
            "[engine]\nmode = \"xdp\"\n\n[[flow]]\nname = \"failopen\"\ninterface = \"{}\"\n\
             group = \"{GROUP}\"\nport = {PORT}\n\n  [[flow.output]]\n  unicast = \"{}:6000\"\n  \
             interface = \"{}\"\n",
            iface::IN0,
            addr::SNK0_V4,
            iface::OUT0
        ),
    )
    .unwrap();
    path
}

fn datagram(stream: u32, seq: u64, len: usize) -> Vec<u8> {
    let mut buf = vec![0u8; len];
    payload::fill(stream, seq, &mut buf);
    buf
}

/// Checks that `got` is exactly datagram (stream, seq) of its own length;
/// returns its seq.
fn check_exact(got: &[u8], stream: u32) -> u64 {
    let (s, seq) = payload::check(got).unwrap_or_else(|e| panic!("corrupt datagram: {e}"));
    assert_eq!(s, stream, "datagram of another stream");
    assert_eq!(got, datagram(stream, seq, got.len()), "seq {seq}");
    seq
}

/// Whether an XDP program is attached to `dev` (`ip -j link show`).
fn xdp_attached(ns: &Netns, dev: &str) -> bool {
    let json = ns.ip(&["-j", "link", "show", dev]).unwrap();
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let link = &v[0];
    assert_eq!(link["ifname"], dev, "{json}");
    link.get("xdp").is_some()
}

fn mac(ns: &Netns, dev: &str) -> String {
    let json = ns.ip(&["-j", "link", "show", dev]).unwrap();
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    v[0]["address"].as_str().unwrap().to_owned()
}

/// A kernel UDP socket on the edge bound to `group:PORT` and joined to it
/// on `in0` (what the engine's membership socket does).
fn group_socket(edge: &Netns, group: Ipv4Addr) -> UdpSocket {
    edge.run_in(|| {
        let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).unwrap();
        s.set_reuse_address(true).unwrap();
        s.bind(&SocketAddr::from((group, PORT)).into()).unwrap();
        s.join_multicast_v4(&group, &addr::IN0_V4).unwrap();
        s.into()
    })
}

/// The multicast (and unicast) sender in the source namespace.
fn source_socket(src: &Netns, port: u16) -> UdpSocket {
    src.run_in(|| {
        let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).unwrap();
        s.bind(&SocketAddr::from((addr::SRC0_V4, port)).into())
            .unwrap();
        s.set_multicast_if_v4(&addr::SRC0_V4).unwrap();
        s.set_multicast_ttl_v4(1).unwrap();
        s.set_multicast_loop_v4(false).unwrap();
        s.into()
    })
}

/// Receives one datagram within `timeout`.
fn recv_within(sock: &UdpSocket, timeout: Duration, what: &str) -> Vec<u8> {
    sock.set_nonblocking(false).unwrap();
    sock.set_read_timeout(Some(timeout)).unwrap();
    let mut buf = vec![0u8; 65536];
    let n = sock
        .recv(&mut buf)
        .unwrap_or_else(|e| panic!("{what}: nothing within {timeout:?}: {e}"));
    buf.truncate(n);
    buf
}

/// Asserts that nothing is queued on `sock`.
fn assert_empty(sock: &UdpSocket, what: &str) {
    sock.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 16];
    match sock.recv(&mut buf) {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        other => panic!("{what}: expected nothing, got {other:?}"),
    }
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

/// A bounded paced stream from the source: `FLOW_STREAM` datagrams of 1000
/// bytes every millisecond, at most 20000 or 20 seconds, until stopped.
struct Stream {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Stream {
    fn start(sock: UdpSocket) -> Stream {
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let (s, n) = (stop.clone(), sent.clone());
        let thread = std::thread::spawn(move || {
            let start = Instant::now();
            let mut buf = [0u8; 1000];
            for seq in 0..20_000u64 {
                if s.load(Ordering::Relaxed) || start.elapsed() > Duration::from_secs(20) {
                    break;
                }
                payload::fill(FLOW_STREAM, seq, &mut buf);
                sock.send_to(&buf, (GROUP, PORT)).unwrap();
                n.store(seq + 1, Ordering::Relaxed);
                // Pacing, not waiting for a condition.
                std::thread::sleep(Duration::from_millis(1));
            }
        });
        Stream {
            stop,
            sent,
            thread: Some(thread),
        }
    }

    fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[test]
fn killed_engine_fails_open_within_a_second() {
    let test = "killed_engine_fails_open_within_a_second";
    let Some(_obj) = lab::xdp_ready(test) else {
        return;
    };
    let lab = Lab::up(&unique_prefix("xf")).unwrap();
    let scratch = Scratch::new(lab.prefix());
    let config = write_config(&scratch.0);
    let status = scratch.0.join("status");

    let kernel = group_socket(&lab.edge, GROUP);
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
    let stream = Stream::start(source_socket(&lab.src, SOURCE_PORT));
    let (received, corrupt) = wait_until(DEADLINE, || read_status().filter(|s| s.0 >= 50))
        .unwrap_or_else(|| panic!("the helper received {:?}", read_status()));
    assert_eq!(corrupt, 0, "the helper saw corrupt datagrams");
    assert!(received <= stream.sent());
    assert_empty(
        &kernel,
        "kernel socket while the AF_XDP socket holds the flow",
    );

    // SIGKILL: no clean-up code runs in the child.
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL).unwrap();
    let killed_at = Instant::now();
    let got = recv_within(&kernel, FAIL_OPEN, "stream at the kernel after SIGKILL");
    let took = killed_at.elapsed();
    assert!(took < FAIL_OPEN, "fail-open took {took:?}");
    let first = check_exact(&got, FLOW_STREAM);
    eprintln!("fail-open after {took:?}: seq {first} at the kernel (helper saw {received})");
    // And it keeps flowing, in order, byte-exact.
    let mut last = first;
    for _ in 0..20 {
        let seq = check_exact(&recv_within(&kernel, FAIL_OPEN, "stream"), FLOW_STREAM);
        assert!(seq > last, "seq {seq} after {last}");
        last = seq;
    }

    let done = child.finish(DEADLINE).unwrap();
    assert_eq!(done.status.signal(), Some(libc::SIGKILL), "{done:?}");
    // The link was the child's (not pinned): gone with it.
    assert!(
        wait_until(DEADLINE, || (!xdp_attached(&lab.edge, iface::IN0))
            .then_some(()))
        .is_some(),
        "an XDP program is still attached to in0 after the engine died"
    );
    drop(stream);
}

#[test]
fn pinned_program_outlives_its_loader_until_unloaded() {
    let test = "pinned_program_outlives_its_loader_until_unloaded";
    let Some(_obj) = lab::xdp_ready(test) else {
        return;
    };
    let lab = Lab::up(&unique_prefix("xp")).unwrap();
    let scratch = Scratch::new(lab.prefix());
    let config = write_config(&scratch.0);
    let bpffs = Bpffs::mount(scratch.0.join("bpffs"));
    let dir = bpffs.0.join("fanout").join(iface::IN0);

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
    let kernel = group_socket(&lab.edge, GROUP);
    let source = source_socket(&lab.src, SOURCE_PORT);
    for seq in 0..5 {
        source
            .send_to(&datagram(FLOW_STREAM, seq, 512), (GROUP, PORT))
            .unwrap();
        let got = recv_within(&kernel, DEADLINE, "flow while pinned");
        assert_eq!(check_exact(&got, FLOW_STREAM), seq);
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
        wait_until(DEADLINE, || (!xdp_attached(&lab.edge, iface::IN0))
            .then_some(()))
        .is_some(),
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
        assert_eq!(check_exact(&got, FLOW_STREAM), seq);
    }
    // The program no longer sees the traffic (our map handle outlives it).
    assert_eq!(pinned_counters(&counters), c);
}

/// The plan of `config` with interfaces resolved by `if_nametoindex` only
/// (namespace-correct on a thread that entered one with `setns`).
fn flows_only_plan(config: &Path) -> Plan {
    let config = fanout::config::Config::load(config).unwrap();
    Plan::resolve_with(&config, |name| {
        Ok(nix::net::if_::if_nametoindex(name)
            .ok()
            .map(|index| fanout::plan::Interface {
                name: name.to_owned(),
                index,
                mtu: 0,
                mac: None,
                ipv4: vec![],
                ipv6: vec![],
            }))
    })
    .unwrap()
}

#[test]
fn unconfigured_traffic_is_untouched() {
    let test = "unconfigured_traffic_is_untouched";
    let Some(obj) = lab::xdp_ready(test) else {
        return;
    };
    let lab = Lab::up(&unique_prefix("xu")).unwrap();
    let scratch = Scratch::new(lab.prefix());
    let config = write_config(&scratch.0);
    // Nothing but this test's packets on in0: no IPv6 (ND, MLD), no ARP
    // (permanent neighbours both ways).
    for ns in [&lab.src, &lab.edge] {
        ns.sysctl("net/ipv6/conf/all/disable_ipv6", "1").unwrap();
        ns.sysctl("net/ipv6/conf/default/disable_ipv6", "1")
            .unwrap();
    }
    let (src_mac, in_mac) = (mac(&lab.src, iface::SRC0), mac(&lab.edge, iface::IN0));
    lab.src
        .ip(&[
            "neigh",
            "replace",
            &addr::IN0_V4.to_string(),
            "lladdr",
            &in_mac,
            "dev",
            iface::SRC0,
            "nud",
            "permanent",
        ])
        .unwrap();
    lab.edge
        .ip(&[
            "neigh",
            "replace",
            &addr::SRC0_V4.to_string(),
            "lladdr",
            &src_mac,
            "dev",
            iface::IN0,
            "nud",
            "permanent",
        ])
        .unwrap();

    // Kernel sockets on the edge (created before the program: their IGMP
    // reports leave through in0 and are not seen by it anyway).
    let flow_kernel = group_socket(&lab.edge, GROUP);
    let other_kernel = group_socket(&lab.edge, OTHER_GROUP);
    let unicast_kernel = lab
        .edge
        .run_in(|| UdpSocket::bind(SocketAddrV4::new(addr::IN0_V4, UNICAST_PORT)).unwrap());
    let source = source_socket(&lab.src, SOURCE_PORT);
    let icmp = lab
        .src
        .run_in(|| Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::ICMPV4)).unwrap());

    lab.edge.run_in(|| {
        // `Plan::load` reads /sys/class/net, which on a setns thread still
        // shows the caller's namespace: resolve by index only.
        let plan = flows_only_plan(&config);
        let flow = &plan.flows[0];
        let mut prog = XdpProgram::load_file(&obj).unwrap();
        let attached = prog.attach(iface::IN0).unwrap();
        eprintln!("attached: {attached:?}");
        prog.insert_flow(0, flow).unwrap();
        let mut umem = XskUmem::new(HELPER_FRAMES).unwrap();
        let (mut rx, _) = umem
            .bind_rx(flow.ingress.index, 0, RingSizes::default(), false)
            .unwrap();
        prog.insert_socket(0, &rx).unwrap();
        let frames: Vec<u64> = (0..HELPER_FRAMES)
            .map(|f| u64::from(f) * u64::from(FRAME_SIZE))
            .collect();
        assert_eq!(rx.fill(&frames), frames.len());
        rx.wake();

        // 1. Ping the edge host: the kernel answers with the same data.
        const PINGS: u16 = 3;
        for seq in 0..PINGS {
            let data = datagram(9, u64::from(seq), 56);
            let reply = lab::ping(&icmp, addr::IN0_V4, 0x464f, seq, &data, DEADLINE).unwrap();
            assert_eq!(
                fanout::wire::checksum::data(&reply),
                0xffff,
                "reply checksum"
            );
            assert_eq!(&reply[..2], &[0, 0], "echo reply");
            assert_eq!(&reply[4..8], &[0x46, 0x4f, 0, seq as u8]);
            assert_eq!(&reply[8..], &data[..], "echo data");
        }

        // 2. Unicast UDP to the edge host.
        const UNICAST: u64 = 3;
        for seq in 0..UNICAST {
            let data = datagram(UNICAST_STREAM, seq, 300 + seq as usize);
            source.send_to(&data, (addr::IN0_V4, UNICAST_PORT)).unwrap();
            assert_eq!(recv_within(&unicast_kernel, DEADLINE, "unicast UDP"), data);
        }

        // 3. Multicast to an unconfigured group, same port as the flow.
        const OTHER: u64 = 3;
        for seq in 0..OTHER {
            let data = datagram(OTHER_STREAM, seq, 1400);
            source.send_to(&data, (OTHER_GROUP, PORT)).unwrap();
            assert_eq!(
                recv_within(&other_kernel, DEADLINE, "unconfigured group"),
                data
            );
        }

        // 4. The configured flow: to the AF_XDP socket only, byte-exact
        // (the 8972-byte one as a chain of descriptors).
        let sizes = [64usize, 1472, 8972];
        for (seq, len) in sizes.into_iter().enumerate() {
            let data = datagram(FLOW_STREAM, seq as u64, len);
            source.send_to(&data, (GROUP, PORT)).unwrap();
            let chain = receive_packet(&mut rx);
            let mut frame = Vec::new();
            for d in &chain {
                frame.extend_from_slice(umem.bytes(d.addr, d.len));
            }
            let dg = fanout::wire::parse(&frame).unwrap();
            assert_eq!((dg.src_port, dg.dst_port), (SOURCE_PORT, PORT));
            assert_eq!(&frame[dg.payload_range()], &data[..], "flow seq {seq}");
            let back: Vec<u64> = chain.iter().map(|d| d.addr).collect();
            assert_eq!(rx.fill(&back), back.len());
        }
        assert_empty(&flow_kernel, "kernel socket of the redirected flow");
        for (sock, what) in [
            (&other_kernel, "unconfigured group (extra)"),
            (&unicast_kernel, "unicast (extra)"),
        ] {
            assert_empty(sock, what);
        }

        // 5. Counters, exactly: nothing else crossed in0.
        let c = prog.counters().unwrap();
        eprintln!("counters: {:?}", Counter::ALL.map(|k| (k.name(), c.get(k))));
        let (k, u, m, f) = (u64::from(PINGS), UNICAST, OTHER, sizes.len() as u64);
        assert_eq!(c.get(Counter::Seen), k + u + m + f);
        assert_eq!(c.get(Counter::Passed), k + u + m);
        assert_eq!(c.get(Counter::NotIp), 0);
        assert_eq!(c.get(Counter::NotUdp), k);
        assert_eq!(c.get(Counter::NoFlow), u + m);
        assert_eq!(c.get(Counter::Matched), f);
        assert_eq!(c.get(Counter::Redirected), f);
        assert_eq!(c.get(Counter::NoSocket), 0);
        assert_eq!(c.get(Counter::Malformed), 0);
        assert_eq!(c.get(Counter::SourceRejected), 0);
        assert_eq!(c.get(Counter::Fragment), 0);
        let st = rx.kernel_stats().unwrap();
        assert_eq!((st.rx_dropped, st.rx_invalid_descs), (0, 0));
    });
}

/// Receives one whole packet (a chain of descriptors) within the deadline.
fn receive_packet(rx: &mut impl RxPort) -> Vec<Desc> {
    let start = Instant::now();
    let mut out = [Desc::default(); 32];
    loop {
        let n = rx.receive(&mut out);
        if n > 0 {
            return out[..n].to_vec();
        }
        rx.wake();
        assert!(start.elapsed() < DEADLINE, "no packet on the AF_XDP socket");
        std::thread::sleep(Duration::from_millis(1));
    }
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
    let frames: Vec<u64> = (0..HELPER_FRAMES)
        .map(|f| u64::from(f) * u64::from(FRAME_SIZE))
        .collect();
    assert_eq!(rx.fill(&frames), frames.len());
    rx.wake();
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
        let mut frame = Vec::new();
        for d in &out[..n] {
            frame.extend_from_slice(umem.bytes(d.addr, d.len));
            if d.continues() {
                continue;
            }
            received += 1;
            let intact = fanout::wire::parse(&frame).is_ok_and(|dg| {
                let p = &frame[dg.payload_range()];
                payload::check(p).is_ok_and(|(s, seq)| {
                    s == FLOW_STREAM && p == datagram(FLOW_STREAM, seq, p.len())
                })
            });
            corrupt += u64::from(!intact);
            frame.clear();
        }
        let back: Vec<u64> = out[..n].iter().map(|d| d.addr).collect();
        assert_eq!(rx.fill(&back), back.len());
        if n > 0 {
            write(received, corrupt);
        }
    }
}
