//! Privileged end-to-end tests of the XDP datapath: the real `fanout run`
//! with `mode = "xdp"` in the lab's edge namespace.
//!
//! Per case (IPv4 / IPv6, native / generic attach): a flow on `in0` with 8
//! unicast outputs to the sink on `out0` (ports 6001..6008) and 1 multicast
//! re-emission on `out1`. The source sends numbered datagrams of 64, 1472
//! and jumbo size (8972 for IPv4, 8952 for IPv6: the largest unfragmented
//! at MTU 9000), and every output must receive every one of them,
//! byte-exact, in order, once. Then the engine is stopped and its JSON
//! stats are checked: the rung (`xdp native copy` / `xdp generic copy`),
//! per output `sent == received == datagrams` with nothing dropped,
//! `check_accounting`, and the XDP section: the program redirected exactly
//! the datagrams sent (so AF_XDP carried them) and the AF_XDP sockets
//! dropped nothing.
//!
//! `Lab::up` turns the source veth's TX checksum offload off: with it on, a
//! datagram a local socket sends over veth carries only the pseudo-header
//! sum in its UDP checksum field (CHECKSUM_PARTIAL), and an incremental
//! update of that field cannot produce a valid checksum. A real NIC
//! delivers complete checksums. The sinks' kernels count UDP checksum
//! errors, and every case checks that count stays at zero.
//!
//! Needs root and the XDP object (`FANOUT_EBPF_OBJ`, or the release build
//! in `xdp-ebpf/target`); skips loudly otherwise, fails under
//! `FANOUT_REQUIRE_PRIVILEGED=1`.

use std::fs;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::path::Path;
use std::time::Duration;

use fanout::lab::{self, Lab, Process, addr, iface};
use fanout::stats::Snapshot;
use nix::sys::socket::{setsockopt, sockopt};
use socket2::{Domain, InterfaceIndexOrAddress, Protocol, Socket, Type};

const PORT: u16 = 5000;
const UNICAST_PORTS: std::ops::RangeInclusive<u16> = 6001..=6008;
const MCAST_PORT: u16 = 7000;
/// Unicast outputs above this port have no `interface`: the route decides.
const ROUTED_FROM: u16 = 6004;
/// Datagrams per size.
const PER_SIZE: u64 = 20;
const DEADLINE: Duration = Duration::from_secs(10);

#[derive(Clone, Copy, Debug, PartialEq)]
enum Family {
    V4,
    V6,
}

impl Family {
    fn group(self) -> IpAddr {
        match self {
            Family::V4 => Ipv4Addr::new(239, 10, 0, 1).into(),
            Family::V6 => Ipv6Addr::new(0xff3e, 0, 0, 0, 0, 0, 0x10, 1).into(),
        }
    }
    fn mcast_out(self) -> IpAddr {
        match self {
            Family::V4 => Ipv4Addr::new(239, 255, 10, 1).into(),
            Family::V6 => Ipv6Addr::new(0xff3e, 0, 0, 0, 0, 0, 0x20, 1).into(),
        }
    }
    fn sink(self) -> IpAddr {
        match self {
            Family::V4 => addr::SNK0_V4.into(),
            Family::V6 => addr::SNK0_V6.into(),
        }
    }
    fn source(self) -> IpAddr {
        match self {
            Family::V4 => addr::SRC0_V4.into(),
            Family::V6 => addr::SRC0_V6.into(),
        }
    }
    fn sizes(self) -> [usize; 3] {
        match self {
            Family::V4 => [64, 1472, 8972],
            Family::V6 => [64, 1452, 8952],
        }
    }
}

fn config(family: Family) -> String {
    let mut toml = format!(
        "[engine]\nmode = \"xdp\"\n\n[[flow]]\nname = \"f\"\ninterface = \"{}\"\ngroup = \"{}\"\nport = {PORT}\n",
        iface::IN0,
        family.group()
    );
    // Half the unicast outputs name their interface, half leave it to the
    // routing table (which sends the sink's subnet out of out0).
    for port in UNICAST_PORTS {
        let interface = if port <= ROUTED_FROM {
            format!("  interface = \"{}\"\n", iface::OUT0)
        } else {
            String::new()
        };
        toml += &format!(
            "\n  [[flow.output]]\n  name = \"u{port}\"\n  unicast = \"{}\"\n{interface}  source_port = 4000\n",
            SocketAddr::new(family.sink(), port),
        );
    }
    toml += &format!(
        "\n  [[flow.output]]\n  name = \"m\"\n  multicast = \"{}\"\n  interface = \"{}\"\n  ttl = 4\n",
        SocketAddr::new(family.mcast_out(), MCAST_PORT),
        iface::OUT1
    );
    toml
}

/// The payload of datagram `seq`: the sequence number, the size, then a
/// pattern that differs at every offset.
fn payload(seq: u64, len: usize) -> Vec<u8> {
    let mut p: Vec<u8> = (0..len)
        .map(|i| (i as u8).wrapping_mul(31) ^ (seq as u8).wrapping_mul(7) ^ ((i >> 8) as u8))
        .collect();
    p[..8].copy_from_slice(&seq.to_be_bytes());
    p
}

fn big_rcvbuf(s: &Socket) {
    setsockopt(s, sockopt::RcvBufForce, &(16 << 20)).expect("SO_RCVBUFFORCE");
}

fn unicast_sink(ip: IpAddr, port: u16) -> UdpSocket {
    let domain = if ip.is_ipv4() {
        Domain::IPV4
    } else {
        Domain::IPV6
    };
    let s = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP)).unwrap();
    big_rcvbuf(&s);
    s.bind(&SocketAddr::new(ip, port).into()).unwrap();
    s.into()
}

fn multicast_sink(group: IpAddr, port: u16, ifname: &str) -> UdpSocket {
    let index = nix::net::if_::if_nametoindex(ifname).unwrap();
    let domain = if group.is_ipv4() {
        Domain::IPV4
    } else {
        Domain::IPV6
    };
    let s = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP)).unwrap();
    big_rcvbuf(&s);
    s.set_reuse_address(true).unwrap();
    match group {
        IpAddr::V4(g) => s
            .join_multicast_v4_n(&g, &InterfaceIndexOrAddress::Index(index))
            .unwrap(),
        IpAddr::V6(g) => {
            s.set_only_v6(true).unwrap();
            s.join_multicast_v6(&g, index).unwrap();
        }
    }
    s.bind(&SocketAddr::new(group, port).into()).unwrap();
    s.into()
}

fn source_socket(family: Family) -> UdpSocket {
    let index = nix::net::if_::if_nametoindex(iface::SRC0).unwrap();
    let domain = match family {
        Family::V4 => Domain::IPV4,
        Family::V6 => Domain::IPV6,
    };
    let s = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP)).unwrap();
    match family {
        Family::V4 => {
            s.set_multicast_if_v4(&addr::SRC0_V4).unwrap();
            s.set_multicast_ttl_v4(1).unwrap();
            s.set_multicast_loop_v4(false).unwrap();
        }
        Family::V6 => {
            s.set_only_v6(true).unwrap();
            s.set_multicast_if_v6(index).unwrap();
            s.set_multicast_hops_v6(1).unwrap();
            s.set_multicast_loop_v6(false).unwrap();
        }
    }
    s.bind(&SocketAddr::new(family.source(), 0).into()).unwrap();
    s.into()
}

/// Receives `expected` datagrams in order, byte-exact, from `from_ip`
/// (and `from_port` when given), then checks that nothing more comes.
fn expect_stream(
    sock: &UdpSocket,
    what: &str,
    expected: &[(u64, usize)],
    from_ip: IpAddr,
    from_port: Option<u16>,
) {
    sock.set_read_timeout(Some(DEADLINE)).unwrap();
    let mut buf = vec![0u8; 65536];
    for &(seq, len) in expected {
        let (n, from) = sock
            .recv_from(&mut buf)
            .unwrap_or_else(|e| panic!("{what}: datagram {seq} ({len} bytes) missing: {e}"));
        let got_seq = u64::from_be_bytes(buf[..8.min(n)].try_into().unwrap_or([0xff; 8]));
        assert_eq!(
            (got_seq, n),
            (seq, len),
            "{what}: expected datagram {seq} of {len} bytes"
        );
        assert!(
            buf[..n] == payload(seq, len)[..],
            "{what}: datagram {seq} corrupted"
        );
        assert_eq!(from.ip(), from_ip, "{what}: source address");
        if let Some(port) = from_port {
            assert_eq!(from.port(), port, "{what}: source port");
        }
    }
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    if let Ok((n, _)) = sock.recv_from(&mut buf) {
        panic!("{what}: an unexpected extra datagram of {n} bytes");
    }
}

fn wait_for_file(engine: &mut Process, path: &Path) {
    let ok = lab::wait_until(DEADLINE, || {
        if path.exists() {
            Some(true)
        } else if !engine.is_running() {
            Some(false)
        } else {
            None
        }
    });
    if ok != Some(true) {
        let done = engine.finish(Duration::from_secs(2));
        panic!("fanout run never became ready: {done:?}");
    }
}

/// Runs one case; returns the final snapshot.
fn run_case(test: &str, family: Family, generic: bool) {
    let Some(obj) = lab::xdp_ready(test) else {
        return;
    };
    let lab = Lab::up(&lab::unique_prefix("x")).expect("lab up");
    let dir = std::env::temp_dir().join(format!("{}-{test}", lab.prefix()));
    fs::create_dir_all(&dir).unwrap();
    let config_path = dir.join("config.toml");
    fs::write(&config_path, config(family)).unwrap();
    let stats_path = dir.join("stats.json");
    let ready = dir.join("ready");

    // Sinks first (the multicast one joins on snk1).
    let sinks: Vec<(String, UdpSocket)> = lab.sink.run_in(|| {
        let mut v: Vec<(String, UdpSocket)> = UNICAST_PORTS
            .map(|p| (format!("u{p}"), unicast_sink(family.sink(), p)))
            .collect();
        v.push((
            "m".into(),
            multicast_sink(family.mcast_out(), MCAST_PORT, iface::SNK1),
        ));
        v
    });

    let mut cmd = lab.edge.command(env!("CARGO_BIN_EXE_fanout"));
    cmd.arg("run")
        .arg("--config")
        .arg(&config_path)
        .arg("--stats-json")
        .arg(&stats_path)
        .arg("--ready-file")
        .arg(&ready)
        .env("FANOUT_EBPF_OBJ", &obj)
        .env("FANOUT_XDP_MODE", if generic { "generic" } else { "auto" })
        .env("RUST_LOG", "info");
    let mut engine = Process::spawn("fanout run", &mut cmd).expect("spawn fanout run");
    wait_for_file(&mut engine, &ready);

    // Numbered datagrams, sizes interleaved, paced so that no socket
    // buffer on the way overflows.
    let sizes = family.sizes();
    let mut sent = Vec::new();
    let src = lab.src.run_in(|| source_socket(family));
    for seq in 0..PER_SIZE * sizes.len() as u64 {
        let len = sizes[(seq % sizes.len() as u64) as usize];
        let p = payload(seq, len);
        assert_eq!(src.send_to(&p, (family.group(), PORT)).unwrap(), len);
        sent.push((seq, len));
        std::thread::sleep(Duration::from_millis(2));
    }
    let (out0, out1): (IpAddr, IpAddr) = match family {
        Family::V4 => (addr::OUT0_V4.into(), addr::OUT1_V4.into()),
        Family::V6 => (addr::OUT0_V6.into(), addr::OUT1_V6.into()),
    };
    for (name, sock) in &sinks {
        let (ip, port) = if name == "m" {
            (out1, None)
        } else {
            (out0, Some(4000))
        };
        expect_stream(sock, &format!("{test} output {name}"), &sent, ip, port);
    }

    // Every replica's UDP checksum was valid: the sink's kernel counted
    // no checksum error (it would have dropped the datagram).
    let snmp = lab
        .sink
        .exec(&["cat", "/proc/net/snmp", "/proc/net/snmp6"])
        .unwrap();
    assert_eq!(csum_errors(&snmp), 0, "{snmp}");

    engine.terminate().unwrap();
    let done = engine
        .finish(DEADLINE)
        .expect("fanout run stops on SIGTERM");
    eprintln!("fanout run stderr:\n{}", done.stderr);
    assert!(done.status.success(), "fanout run: {:?}", done);
    let want_rung = if generic {
        "xdp generic copy"
    } else {
        "xdp native copy"
    };
    assert!(
        done.stderr.contains(&format!("fanout: engine {want_rung}")),
        "rung not said aloud: {}",
        done.stderr
    );
    assert!(
        done.stdout.contains(&format!("engine: {want_rung}")),
        "{}",
        done.stdout
    );
    for port in UNICAST_PORTS.filter(|p| *p > ROUTED_FROM) {
        let said = format!(
            "output \"u{port}\": no interface configured; the route to {} leaves by {}",
            family.sink(),
            iface::OUT0
        );
        assert!(done.stderr.contains(&said), "not said: {said}");
    }

    let snap: Snapshot = serde_json::from_str(&fs::read_to_string(&stats_path).unwrap()).unwrap();
    let _ = fs::remove_dir_all(&dir);
    assert_eq!(snap.engine, want_rung);
    let n = sent.len() as u64;
    let bytes: u64 = sent.iter().map(|&(_, l)| l as u64).sum();
    let flow = snap.flow("f").expect("flow f in the stats");
    assert_eq!(
        (
            flow.received,
            flow.received_bytes,
            flow.source_rejected,
            flow.malformed
        ),
        (n, bytes, 0, 0)
    );
    assert_eq!(flow.outputs.len(), 9);
    for o in &flow.outputs {
        assert_eq!(
            (o.sent, o.dropped_total()),
            (n, 0),
            "output {}: {:?}",
            o.name,
            o.dropped
        );
        // UDP payload bytes, as in the socket engine (the worker counts
        // whole frames; the stats take the headers off).
        assert_eq!(o.sent_bytes, bytes, "output {} bytes", o.name);
    }
    snap.check_accounting().unwrap();

    let xdp = snap.xdp.as_ref().expect("the XDP section of the stats");
    assert_eq!(xdp.interfaces.len(), 1);
    let i = &xdp.interfaces[0];
    assert_eq!(i.interface, iface::IN0);
    assert_eq!(i.attach, if generic { "generic" } else { "native" });
    assert_eq!(i.bind, "copy", "veth has no zero-copy");
    let c = |k: &str| {
        *i.program
            .get(k)
            .unwrap_or_else(|| panic!("counter {k}: {i:?}"))
    };
    assert_eq!(c("matched"), n, "{i:?}");
    assert_eq!(c("redirected"), n, "AF_XDP carried every datagram: {i:?}");
    assert_eq!(c("no_socket"), 0);
    assert_eq!(c("malformed"), 0);
    assert_eq!(i.queues.len(), 1);
    let q = &i.queues[0];
    assert_eq!(q.worker["rx_packets"], n, "{q:?}");
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
    assert_eq!(q.tx_sockets.len(), 2, "{q:?}");
    for (dev, st) in &q.tx_sockets {
        assert_eq!(st["tx_invalid_descs"], 0, "{dev}: {st:?}");
    }
}

/// UDP checksum errors in `/proc/net/snmp` + `/proc/net/snmp6` text
/// (`Udp: ... InCsumErrors` table and `Udp6InCsumErrors`).
fn csum_errors(text: &str) -> u64 {
    let mut total = 0;
    let lines: Vec<&str> = text.lines().collect();
    for w in lines.windows(2) {
        if w[0].starts_with("Udp: ") && w[1].starts_with("Udp: ") {
            let keys = w[0].split_whitespace();
            let values = w[1].split_whitespace();
            for (k, v) in keys.zip(values) {
                if k == "InCsumErrors" {
                    total += v.parse::<u64>().unwrap();
                }
            }
        }
    }
    for l in &lines {
        let mut f = l.split_whitespace();
        if f.next() == Some("Udp6InCsumErrors") {
            total += f.next().unwrap().parse::<u64>().unwrap();
        }
    }
    total
}

#[test]
fn xdp_native_ipv4() {
    run_case("xdp_native_ipv4", Family::V4, false);
}

#[test]
fn xdp_native_ipv6() {
    run_case("xdp_native_ipv6", Family::V6, false);
}

#[test]
fn xdp_generic_ipv4() {
    run_case("xdp_generic_ipv4", Family::V4, true);
}

#[test]
fn xdp_generic_ipv6() {
    run_case("xdp_generic_ipv6", Family::V6, true);
}

/// Without a loadable XDP object, `mode = "xdp"` refuses to start (exit 1,
/// the reason on stderr) and `mode = "auto"` says why and runs the socket
/// engine.
#[test]
fn xdp_refuses_and_auto_falls_back_without_the_program() {
    let test = "xdp_refuses_and_auto_falls_back_without_the_program";
    if !lab::privileged(test) {
        return;
    }
    let lab = Lab::up(&lab::unique_prefix("x")).expect("lab up");
    let dir = std::env::temp_dir().join(format!("{}-{test}", lab.prefix()));
    fs::create_dir_all(&dir).unwrap();
    let missing = dir.join("no-such-object");
    let run = |mode: &str| {
        let path = dir.join(format!("{mode}.toml"));
        fs::write(
            &path,
            config(Family::V4).replace("mode = \"xdp\"", &format!("mode = \"{mode}\"")),
        )
        .unwrap();
        let ready = dir.join(format!("{mode}.ready"));
        let stats = dir.join(format!("{mode}.json"));
        let mut cmd = lab.edge.command(env!("CARGO_BIN_EXE_fanout"));
        cmd.arg("run")
            .arg("--config")
            .arg(&path)
            .arg("--ready-file")
            .arg(&ready)
            .arg("--stats-json")
            .arg(&stats)
            .env("FANOUT_EBPF_OBJ", &missing);
        let mut p = Process::spawn("fanout run", &mut cmd).unwrap();
        let ok = lab::wait_until(DEADLINE, || {
            if ready.exists() {
                Some(true)
            } else if !p.is_running() {
                Some(false)
            } else {
                None
            }
        });
        if ok == Some(true) {
            p.terminate().unwrap();
        }
        let done = p.finish(DEADLINE).unwrap();
        let snap = fs::read_to_string(&stats).ok();
        (done, snap)
    };

    let (done, snap) = run("xdp");
    assert_eq!(done.status.code(), Some(1), "{done:?}");
    assert!(
        done.stderr
            .contains("mode = \"xdp\", but the XDP datapath cannot start: loading the XDP program")
            && done.stderr.contains("no-such-object"),
        "{}",
        done.stderr
    );
    assert!(snap.is_none(), "a refused engine wrote stats");

    let (done, snap) = run("auto");
    assert!(done.status.success(), "{done:?}");
    assert!(
        done.stderr.contains(
            "fanout: engine socket (mode = \"auto\"; XDP refused: loading the XDP program"
        ) && done.stderr.contains("no-such-object"),
        "{}",
        done.stderr
    );
    let snap: Snapshot = serde_json::from_str(&snap.expect("stats of the socket engine")).unwrap();
    assert_eq!(snap.engine, "socket");
    assert!(snap.xdp.is_none());
    snap.check_accounting().unwrap();
    let _ = fs::remove_dir_all(&dir);
}

/// A unicast receiver whose next hop does not answer yet: its replicas are
/// counted as `next_hop_unresolved` (the accounting balances), the engine
/// keeps asking the kernel to resolve it, and once the address appears on
/// the sink the replicas flow, without a restart.
#[test]
fn unresolved_next_hop_is_counted_then_followed() {
    let test = "unresolved_next_hop_is_counted_then_followed";
    let Some(obj) = lab::xdp_ready(test) else {
        return;
    };
    let lab = Lab::up(&lab::unique_prefix("x")).expect("lab up");
    let late = Ipv4Addr::new(10, 202, 0, 99);
    let dir = std::env::temp_dir().join(format!("{}-{test}", lab.prefix()));
    fs::create_dir_all(&dir).unwrap();
    let config_path = dir.join("config.toml");
    fs::write(
        &config_path,
        format!(
            "[engine]\nmode = \"xdp\"\n\n[[flow]]\nname = \"f\"\ninterface = \"{}\"\ngroup = \"{}\"\nport = {PORT}\n\
             \n  [[flow.output]]\n  name = \"late\"\n  unicast = \"{late}:6001\"\n  interface = \"{}\"\n",
            iface::IN0,
            Family::V4.group(),
            iface::OUT0
        ),
    )
    .unwrap();
    let stats_path = dir.join("stats.json");
    let ready = dir.join("ready");
    let mut cmd = lab.edge.command(env!("CARGO_BIN_EXE_fanout"));
    cmd.arg("run")
        .arg("--config")
        .arg(&config_path)
        .arg("--stats-json")
        .arg(&stats_path)
        .arg("--stats-interval")
        .arg("1")
        .arg("--ready-file")
        .arg(&ready)
        .env("FANOUT_EBPF_OBJ", &obj);
    let mut engine = Process::spawn("fanout run", &mut cmd).expect("spawn fanout run");
    wait_for_file(&mut engine, &ready);
    let src = lab.src.run_in(|| source_socket(Family::V4));
    let send = |seq: u64| {
        let p = payload(seq, 100);
        src.send_to(&p, (Family::V4.group(), PORT)).unwrap();
    };
    let read_stats = || -> Option<Snapshot> {
        serde_json::from_str(&fs::read_to_string(&stats_path).ok()?).ok()
    };

    // 1. Nobody owns the address: counted, not sent.
    for seq in 0..5 {
        send(seq);
    }
    let unresolved = lab::wait_until(DEADLINE, || {
        let s = read_stats()?;
        let f = s.flow("f")?;
        let o = f.output("late")?;
        (f.received == 5).then(|| o.dropped(fanout::stats::DropReason::NextHopUnresolved))
    });
    assert_eq!(unresolved, Some(5), "{:?}", read_stats());

    // 2. The address appears on the sink: the engine follows.
    lab.sink
        .ip(&["addr", "add", &format!("{late}/24"), "dev", iface::SNK0])
        .unwrap();
    let sink = lab.sink.run_in(|| unicast_sink(late.into(), 6001));
    sink.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut buf = vec![0u8; 2048];
    let mut seq = 5;
    let mut first = None;
    while first.is_none() && seq < 5 + 150 {
        send(seq);
        seq += 1;
        if let Ok((n, _)) = sink.recv_from(&mut buf) {
            let got = u64::from_be_bytes(buf[..8].try_into().unwrap());
            assert_eq!(&buf[..n], &payload(got, 100)[..]);
            first = Some(got);
        }
    }
    let first = first.expect("the next hop was never followed");
    for _ in 0..10 {
        send(seq);
        seq += 1;
        std::thread::sleep(Duration::from_millis(2));
    }
    // Everything after the first delivered datagram arrives, in order.
    let mut received = 1;
    for want in first + 1..seq {
        sink.set_read_timeout(Some(DEADLINE)).unwrap();
        let (n, _) = sink.recv_from(&mut buf).expect("datagram after resolution");
        assert_eq!(&buf[..n], &payload(want, 100)[..], "datagram {want}");
        received += 1;
    }

    engine.terminate().unwrap();
    let done = engine.finish(DEADLINE).unwrap();
    assert!(done.status.success(), "{done:?}");
    assert!(
        done.stderr
            .contains(&format!("next hop of {late} via {}", iface::OUT0)),
        "{}",
        done.stderr
    );
    let snap = read_stats().unwrap();
    let _ = fs::remove_dir_all(&dir);
    snap.check_accounting().unwrap();
    let f = snap.flow("f").unwrap();
    let o = f.output("late").unwrap();
    assert_eq!(f.received, seq);
    assert_eq!(o.sent, received, "{o:?}");
    assert_eq!(
        o.dropped(fanout::stats::DropReason::NextHopUnresolved),
        seq - received
    );
    eprintln!(
        "resolved after {} datagrams; {} of {seq} sent",
        first, received
    );
}
