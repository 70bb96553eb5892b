//! The socket engine end to end: the real `fanout run` binary in the edge
//! namespace of a lab, real multicast from the source namespace, real
//! receivers in the sink namespace.
//!
//! Every test checks every byte and the order of what each receiver got, and
//! the engine's own JSON counters (`sent + dropped == received` per output).
//! Privileged tests need root and `ip netns`: they fail under
//! `FANOUT_REQUIRE_PRIVILEGED=1` and otherwise skip loudly. The tests at the
//! end (bad configuration, xdp mode) need no privileges.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use fanout::lab::{self, Lab, Netns, Process, addr, iface};
use fanout::stats::{DropReason, Snapshot};
use fanout::tools::payload;
use socket2::{Domain, InterfaceIndexOrAddress, Protocol, Socket, Type};

const FANOUT: &str = env!("CARGO_BIN_EXE_fanout");
/// How long anything may take before the test fails.
const DEADLINE: Duration = Duration::from_secs(15);

/// A scratch directory for one test's files, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(prefix: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("{prefix}-files"));
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A running `fanout run` in the edge namespace.
struct Engine {
    process: Process,
    stats: PathBuf,
}

impl Engine {
    /// Writes `config`, starts the engine in `ns` and waits for its ready file.
    fn start(ns: &Netns, files: &Scratch, config: &str) -> Engine {
        let cfg = files.path("fanout.toml");
        std::fs::write(&cfg, config).unwrap();
        let ready = files.path("ready");
        let stats = files.path("stats.json");
        let mut cmd = ns.command(FANOUT);
        cmd.arg("run")
            .arg("--config")
            .arg(&cfg)
            .arg("--stats-json")
            .arg(&stats)
            .arg("--ready-file")
            .arg(&ready)
            .env("RUST_LOG", "info");
        let mut process = Process::spawn("fanout run", &mut cmd).expect("spawn fanout run");
        let deadline = Instant::now() + DEADLINE;
        while !ready.exists() {
            if !process.is_running() {
                let f = process.finish(Duration::from_secs(1)).unwrap();
                panic!(
                    "fanout run exited before ready: {:?}\n{}",
                    f.status, f.stderr
                );
            }
            assert!(
                Instant::now() < deadline,
                "fanout run not ready within {DEADLINE:?}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        Engine { process, stats }
    }

    /// SIGTERM, clean exit, the final counters (which must balance).
    fn stop(mut self) -> (Snapshot, String) {
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
        assert_eq!(
            f.stderr
                .matches("fanout: engine socket (mode = \"socket\")")
                .count(),
            1,
            "the engine choice is said exactly once:\n{}",
            f.stderr
        );
        let json = std::fs::read_to_string(&self.stats).expect("stats JSON written on stop");
        let snap: Snapshot = serde_json::from_str(&json).expect("stats JSON parses");
        assert_eq!(snap.engine, "socket");
        snap.check_accounting()
            .unwrap_or_else(|e| panic!("{e}\n{snap}"));
        assert!(
            f.stdout.contains("flow "),
            "final table on stdout:\n{}",
            f.stdout
        );
        (snap, f.stderr)
    }
}

/// Pins the sinks' MAC addresses on the edge, so that no replica waits for
/// (or is dropped during) neighbour resolution.
fn pin_neighbours(lab: &Lab) {
    for (sink_if, edge_if, v4, v6) in [
        (iface::SNK0, iface::OUT0, addr::SNK0_V4, addr::SNK0_V6),
        (iface::SNK1, iface::OUT1, addr::SNK1_V4, addr::SNK1_V6),
    ] {
        let link = lab
            .sink
            .ip(&["-o", "link", "show", "dev", sink_if])
            .unwrap();
        let mac = link
            .split_whitespace()
            .skip_while(|w| *w != "link/ether")
            .nth(1)
            .unwrap_or_else(|| panic!("no MAC in {link}"))
            .to_owned();
        for ip in [v4.to_string(), v6.to_string()] {
            lab.edge
                .ip(&[
                    "neigh",
                    "replace",
                    &ip,
                    "lladdr",
                    &mac,
                    "dev",
                    edge_if,
                    "nud",
                    "permanent",
                ])
                .unwrap();
        }
    }
}

fn udp_socket(family: IpAddr) -> Socket {
    let domain = if family.is_ipv4() {
        Domain::IPV4
    } else {
        Domain::IPV6
    };
    let s = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP)).unwrap();
    if !family.is_ipv4() {
        s.set_only_v6(true).unwrap();
    }
    // Room for a whole test stream: nothing is lost in the receiver.
    let _ = nix::sys::socket::setsockopt(&s, nix::sys::socket::sockopt::RcvBufForce, &(32 << 20));
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    s
}

/// A unicast receiver on `at`, created in `ns`.
fn unicast_receiver(ns: &Netns, at: SocketAddr) -> UdpSocket {
    ns.run_in(|| {
        let s = udp_socket(at.ip());
        s.bind(&at.into()).unwrap();
        s.into()
    })
}

/// A receiver of `group:port` joined on `ifname`, created in `ns`.
fn multicast_receiver(ns: &Netns, group: IpAddr, port: u16, ifname: &str) -> UdpSocket {
    ns.run_in(|| {
        let index = nix::net::if_::if_nametoindex(ifname).unwrap();
        let s = udp_socket(group);
        s.set_reuse_address(true).unwrap();
        match group {
            IpAddr::V4(g) => s
                .join_multicast_v4_n(&g, &InterfaceIndexOrAddress::Index(index))
                .unwrap(),
            IpAddr::V6(g) => s.join_multicast_v6(&g, index).unwrap(),
        }
        s.bind(&SocketAddr::new(group, port).into()).unwrap();
        s.into()
    })
}

/// A sender bound to `from` (port 0) in `ns`.
fn sender(ns: &Netns, from: IpAddr) -> UdpSocket {
    ns.run_in(|| {
        let s = udp_socket(from);
        s.bind(&SocketAddr::new(from, 0).into()).unwrap();
        s.into()
    })
}

/// Numbered, self-checking payloads of `stream`: `count` of each size, in
/// size order, sequence numbers from `first_seq`.
fn payloads(stream: u32, first_seq: u64, sizes: &[usize], count: usize) -> Vec<Vec<u8>> {
    let mut seq = first_seq;
    let mut out = Vec::new();
    for &size in sizes {
        for _ in 0..count {
            let mut p = vec![0u8; size];
            payload::fill(stream, seq, &mut p);
            seq += 1;
            out.push(p);
        }
    }
    out
}

/// Sends every datagram (bounded: the list is finite), yielding every 16 so
/// the stream stays a stream, not one burst.
fn send_all(tx: &UdpSocket, to: SocketAddr, datagrams: &[Vec<u8>]) {
    for (i, d) in datagrams.iter().enumerate() {
        assert_eq!(tx.send_to(d, to).unwrap(), d.len(), "send datagram {i}");
        if i % 16 == 15 {
            std::thread::sleep(Duration::from_micros(500));
        }
    }
}

/// Receives until `want` datagrams arrived or the deadline passed; returns
/// them with their senders.
fn receive(rx: &UdpSocket, want: usize) -> Vec<(Vec<u8>, SocketAddr)> {
    let deadline = Instant::now() + DEADLINE;
    let mut got = Vec::new();
    let mut buf = vec![0u8; 65536];
    while got.len() < want && Instant::now() < deadline {
        match rx.recv_from(&mut buf) {
            Ok((n, from)) => got.push((buf[..n].to_vec(), from)),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => panic!("recv: {e}"),
        }
    }
    got
}

/// Whatever is still queued on `rx` (non-blocking).
fn drain(rx: &UdpSocket) -> Vec<Vec<u8>> {
    rx.set_nonblocking(true).unwrap();
    let mut buf = vec![0u8; 65536];
    let mut got = Vec::new();
    while let Ok(n) = rx.recv(&mut buf) {
        got.push(buf[..n].to_vec());
    }
    got
}

/// Asserts that `got` is exactly `want`, byte for byte and in order.
fn assert_stream(label: &str, got: &[(Vec<u8>, SocketAddr)], want: &[Vec<u8>]) {
    for (i, ((g, _), w)) in got.iter().zip(want).enumerate() {
        if g != w {
            let what = payload::check(g).map(|(s, q)| format!("stream {s} seq {q}"));
            panic!(
                "{label}: datagram {i} differs: got {} bytes ({what:?}), want {} bytes",
                g.len(),
                w.len()
            );
        }
    }
    assert_eq!(got.len(), want.len(), "{label}: datagram count");
}

fn privileged(test: &str) -> Option<(Lab, Scratch)> {
    if !lab::privileged(test) {
        return None;
    }
    let prefix = lab::unique_prefix("se");
    let lab = Lab::up(&prefix).expect("lab up");
    pin_neighbours(&lab);
    Some((lab, Scratch::new(&prefix)))
}

/// One flow, three outputs (unicast with a fixed source port on out0,
/// unicast routed via out1, multicast re-emission on out1): every datagram
/// of every size reaches every output intact and in order.
fn every_datagram_reaches_every_output(test: &str, group: IpAddr, sizes: &[usize]) {
    let Some((lab, files)) = privileged(test) else {
        return;
    };
    let v4 = group.is_ipv4();
    let (snk0, snk1, src): (IpAddr, IpAddr, IpAddr) = if v4 {
        (
            addr::SNK0_V4.into(),
            addr::SNK1_V4.into(),
            addr::SRC0_V4.into(),
        )
    } else {
        (
            addr::SNK0_V6.into(),
            addr::SNK1_V6.into(),
            addr::SRC0_V6.into(),
        )
    };
    let regroup: IpAddr = if v4 {
        Ipv4Addr::new(239, 255, 0, 1).into()
    } else {
        "ff05::2:1".parse::<Ipv6Addr>().unwrap().into()
    };
    let a = SocketAddr::new(snk0, 6001);
    let b = SocketAddr::new(snk1, 6002);
    let m = SocketAddr::new(regroup, 7000);
    let config = format!(
        r#"
[engine]
mode = "socket"
batch_size = 32

[[flow]]
name = "tv"
interface = "{in0}"
group = "{group}"
port = 5000

  [[flow.output]]
  name = "a"
  unicast = "{a}"
  interface = "{out0}"
  source_port = 5555

  [[flow.output]]
  name = "b"
  unicast = "{b}"

  [[flow.output]]
  name = "m"
  multicast = "{m}"
  interface = "{out1}"
"#,
        in0 = iface::IN0,
        out0 = iface::OUT0,
        out1 = iface::OUT1,
    );
    let rx_a = unicast_receiver(&lab.sink, a);
    let rx_b = unicast_receiver(&lab.sink, b);
    let rx_m = multicast_receiver(&lab.sink, regroup, 7000, iface::SNK1);
    let engine = Engine::start(&lab.edge, &files, &config);

    let want = payloads(1, 0, sizes, 40);
    let tx = sender(&lab.src, src);
    send_all(&tx, SocketAddr::new(group, 5000), &want);

    let got_a = receive(&rx_a, want.len());
    let got_b = receive(&rx_b, want.len());
    let got_m = receive(&rx_m, want.len());
    let (snap, _) = engine.stop();
    assert_stream("output a", &got_a, &want);
    assert_stream("output b", &got_b, &want);
    assert_stream("output m", &got_m, &want);
    for (rx, name) in [(&rx_a, "a"), (&rx_b, "b"), (&rx_m, "m")] {
        assert!(
            drain(rx).is_empty(),
            "output {name}: datagrams beyond the stream"
        );
    }
    // The configured source port, and the egress addresses.
    let out0: IpAddr = if v4 {
        addr::OUT0_V4.into()
    } else {
        addr::OUT0_V6.into()
    };
    let out1: IpAddr = if v4 {
        addr::OUT1_V4.into()
    } else {
        addr::OUT1_V6.into()
    };
    assert!(
        got_a
            .iter()
            .all(|(_, from)| *from == SocketAddr::new(out0, 5555)),
        "a: {:?}",
        got_a[0].1
    );
    assert!(
        got_b.iter().all(|(_, from)| from.ip() == out1),
        "b: {:?}",
        got_b[0].1
    );
    assert!(
        got_m.iter().all(|(_, from)| from.ip() == out1),
        "m: {:?}",
        got_m[0].1
    );

    let bytes: u64 = want.iter().map(|d| d.len() as u64).sum();
    let flow = snap.flow("tv").unwrap();
    assert_eq!(flow.received, want.len() as u64, "{snap}");
    assert_eq!(flow.received_bytes, bytes, "{snap}");
    assert_eq!((flow.source_rejected, flow.malformed), (0, 0), "{snap}");
    for name in ["a", "b", "m"] {
        let o = flow.output(name).unwrap();
        assert_eq!(o.sent, want.len() as u64, "output {name}\n{snap}");
        assert_eq!(o.sent_bytes, bytes, "output {name}\n{snap}");
        assert_eq!(o.dropped_total(), 0, "output {name}\n{snap}");
    }
}

#[test]
fn ipv4_every_datagram_reaches_every_output_in_order() {
    // 8972 = 9000 - 20 - 8: the largest unfragmented IPv4 datagram on the lab links.
    every_datagram_reaches_every_output(
        "ipv4_every_datagram_reaches_every_output_in_order",
        Ipv4Addr::new(239, 1, 1, 1).into(),
        &[64, 1472, 8972],
    );
}

#[test]
fn ipv6_every_datagram_reaches_every_output_in_order() {
    // 8952 = 9000 - 40 - 8 is the largest unfragmented IPv6 datagram; 8972
    // is fragmented by the source and again by the engine.
    every_datagram_reaches_every_output(
        "ipv6_every_datagram_reaches_every_output_in_order",
        "ff3e::8000:1".parse::<Ipv6Addr>().unwrap().into(),
        &[64, 1452, 8952, 8972],
    );
}

/// A source that sends UDP GSO trains hands them to the engine's GRO-enabled
/// socket unsegmented (veth keeps GSO packets whole): the engine must split
/// every train back into the datagrams it carries, byte for byte.
#[test]
fn gro_trains_are_split_back_into_datagrams() {
    let Some((lab, files)) = privileged("gro_trains_are_split_back_into_datagrams") else {
        return;
    };
    // A GSO train crosses veth whole only when src0 offloads checksums,
    // which `Lab::up` turns off (for the XDP engine's sake): on again here.
    lab.src
        .exec(&["ethtool", "-K", iface::SRC0, "tx", "on"])
        .expect("ethtool -K src0 tx on");
    let a = SocketAddr::new(addr::SNK0_V4.into(), 6001);
    let config = format!(
        r#"
[engine]
mode = "socket"

[[flow]]
name = "tv"
interface = "{in0}"
group = "239.1.1.1"
port = 5000

  [[flow.output]]
  name = "a"
  unicast = "{a}"
"#,
        in0 = iface::IN0,
    );
    let rx = unicast_receiver(&lab.sink, a);
    let engine = Engine::start(&lab.edge, &files, &config);
    let tx = sender(&lab.src, addr::SRC0_V4.into());
    let group = nix::sys::socket::SockaddrIn::from(std::net::SocketAddrV4::new(
        Ipv4Addr::new(239, 1, 1, 1),
        5000,
    ));
    // Trains of equal-size datagrams plus a shorter tail, each sent as one
    // GSO message (at most 64 segments and 64 KiB).
    let mut want = Vec::new();
    for (train, (size, count)) in [(1472usize, 40usize), (1000, 48), (8972, 6), (64, 48)]
        .into_iter()
        .enumerate()
    {
        let stream = train as u32 + 1;
        let mut datagrams = payloads(stream, 0, &[size], count);
        let mut tail = vec![0u8; size / 2 + 24];
        payload::fill(stream, count as u64, &mut tail);
        datagrams.push(tail);
        let iov: Vec<std::io::IoSlice<'_>> =
            datagrams.iter().map(|d| std::io::IoSlice::new(d)).collect();
        let seg = size as u16;
        let cmsg = [nix::sys::socket::ControlMessage::UdpGsoSegments(&seg)];
        let sent = nix::sys::socket::sendmsg(
            std::os::fd::AsRawFd::as_raw_fd(&tx),
            &iov,
            &cmsg,
            nix::sys::socket::MsgFlags::empty(),
            Some(&group),
        )
        .expect("GSO send from the source");
        assert_eq!(sent, datagrams.iter().map(Vec::len).sum::<usize>());
        want.extend(datagrams);
    }
    let got = receive(&rx, want.len());
    let (snap, stderr) = engine.stop();
    assert_stream("output a", &got, &want);
    assert!(drain(&rx).is_empty());
    let flow = snap.flow("tv").unwrap();
    assert_eq!(flow.received, want.len() as u64, "{snap}");
    assert_eq!(flow.output("a").unwrap().sent, want.len() as u64, "{snap}");
    assert!(
        stderr.contains("coalesces with UDP GRO"),
        "the engine never saw a GRO train:\n{stderr}"
    );
}

#[test]
fn source_specific_flow_forwards_only_its_source() {
    let Some((lab, files)) = privileged("source_specific_flow_forwards_only_its_source") else {
        return;
    };
    // A second sender on the source link: 10.201.0.9 (private, lab only).
    let rogue = Ipv4Addr::new(10, 201, 0, 9);
    lab.src
        .ip(&["addr", "add", &format!("{rogue}/24"), "dev", iface::SRC0])
        .unwrap();
    let a = SocketAddr::new(addr::SNK0_V4.into(), 6001);
    let config = format!(
        r#"
[engine]
mode = "socket"

[[flow]]
name = "ssm"
interface = "{in0}"
group = "232.1.1.1"
port = 5000
source = "{src}"

  [[flow.output]]
  name = "a"
  unicast = "{a}"
"#,
        in0 = iface::IN0,
        src = addr::SRC0_V4,
    );
    let rx = unicast_receiver(&lab.sink, a);
    let engine = Engine::start(&lab.edge, &files, &config);
    let good_tx = sender(&lab.src, addr::SRC0_V4.into());
    let bad_tx = sender(&lab.src, rogue.into());
    let group: SocketAddr = "232.1.1.1:5000".parse().unwrap();
    let good = payloads(1, 0, &[64, 1472, 8972], 30);
    let bad = payloads(666, 0, &[64, 1472, 8972], 30);
    for (g, b) in good.iter().zip(&bad) {
        bad_tx.send_to(b, group).unwrap();
        good_tx.send_to(g, group).unwrap();
    }
    let got = receive(&rx, good.len());
    let (snap, _) = engine.stop();
    assert_stream("ssm output", &got, &good);
    assert!(
        drain(&rx).is_empty(),
        "the rogue source's datagrams were forwarded"
    );
    let flow = snap.flow("ssm").unwrap();
    assert_eq!(flow.received, good.len() as u64, "{snap}");
    let o = flow.output("a").unwrap();
    assert_eq!(
        (o.sent, o.dropped_total()),
        (good.len() as u64, 0),
        "{snap}"
    );
}

#[test]
fn groups_sharing_a_mac_are_told_apart() {
    let Some((lab, files)) = privileged("groups_sharing_a_mac_are_told_apart") else {
        return;
    };
    // 239.1.1.1 and 239.129.1.1 both map to 01:00:5e:01:01:01; same port too.
    let a = SocketAddr::new(addr::SNK0_V4.into(), 6001);
    let b = SocketAddr::new(addr::SNK0_V4.into(), 6002);
    let config = format!(
        r#"
[engine]
mode = "socket"

[[flow]]
name = "low"
interface = "{in0}"
group = "239.1.1.1"
port = 5000

  [[flow.output]]
  name = "a"
  unicast = "{a}"

[[flow]]
name = "high"
interface = "{in0}"
group = "239.129.1.1"
port = 5000

  [[flow.output]]
  name = "b"
  unicast = "{b}"
"#,
        in0 = iface::IN0,
    );
    let rx_a = unicast_receiver(&lab.sink, a);
    let rx_b = unicast_receiver(&lab.sink, b);
    let engine = Engine::start(&lab.edge, &files, &config);
    let tx = sender(&lab.src, addr::SRC0_V4.into());
    let low = payloads(1, 0, &[64, 1472, 8972], 30);
    let high = payloads(2, 0, &[8972, 1472, 64], 30);
    for (l, h) in low.iter().zip(&high) {
        tx.send_to(l, "239.1.1.1:5000".parse::<SocketAddr>().unwrap())
            .unwrap();
        tx.send_to(h, "239.129.1.1:5000".parse::<SocketAddr>().unwrap())
            .unwrap();
    }
    let got_a = receive(&rx_a, low.len());
    let got_b = receive(&rx_b, high.len());
    let (snap, _) = engine.stop();
    assert_stream("239.1.1.1 -> a", &got_a, &low);
    assert_stream("239.129.1.1 -> b", &got_b, &high);
    assert!(
        drain(&rx_a).is_empty() && drain(&rx_b).is_empty(),
        "a group leaked into the other flow"
    );
    assert_eq!(
        snap.flow("low").unwrap().received,
        low.len() as u64,
        "{snap}"
    );
    assert_eq!(
        snap.flow("high").unwrap().received,
        high.len() as u64,
        "{snap}"
    );
}

#[test]
fn vanished_receiver_costs_only_its_own_replicas() {
    let Some((lab, files)) = privileged("vanished_receiver_costs_only_its_own_replicas") else {
        return;
    };
    let a = SocketAddr::new(addr::SNK0_V4.into(), 6001);
    let b = SocketAddr::new(addr::SNK1_V4.into(), 6002);
    let config = format!(
        r#"
[engine]
mode = "socket"
batch_size = 16

[[flow]]
name = "tv"
interface = "{in0}"
group = "239.1.1.1"
port = 5000

  [[flow.output]]
  name = "a"
  unicast = "{a}"

  [[flow.output]]
  name = "b"
  unicast = "{b}"
"#,
        in0 = iface::IN0,
    );
    let rx_a = unicast_receiver(&lab.sink, a);
    let rx_b = unicast_receiver(&lab.sink, b);
    let engine = Engine::start(&lab.edge, &files, &config);
    let tx = sender(&lab.src, addr::SRC0_V4.into());
    let group: SocketAddr = "239.1.1.1:5000".parse().unwrap();
    let first = payloads(1, 0, &[1472], 100);
    let second = payloads(1, 100, &[1472, 8972, 64], 100);

    send_all(&tx, group, &first);
    let got_b = receive(&rx_b, first.len());
    assert_stream("b before it vanished", &got_b, &first);
    drop(rx_b); // the sink now answers with ICMP port unreachable
    send_all(&tx, group, &second);

    let all: Vec<Vec<u8>> = first.iter().chain(&second).cloned().collect();
    let got_a = receive(&rx_a, all.len());
    let (snap, stderr) = engine.stop();
    assert_stream("a (healthy output)", &got_a, &all);
    let flow = snap.flow("tv").unwrap();
    assert_eq!(flow.received, all.len() as u64, "{snap}");
    let oa = flow.output("a").unwrap();
    assert_eq!(
        (oa.sent, oa.dropped_total()),
        (all.len() as u64, 0),
        "{snap}"
    );
    let ob = flow.output("b").unwrap();
    // Balanced (checked in stop); the errors that surfaced are unreachable ones.
    assert_eq!(
        ob.dropped_total(),
        ob.dropped(DropReason::Unreachable),
        "{snap}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn vlan_flow_without_subinterface_is_refused_with_the_fix() {
    let Some((lab, files)) = privileged("vlan_flow_without_subinterface_is_refused_with_the_fix")
    else {
        return;
    };
    let config = format!(
        r#"
[engine]
mode = "socket"

[[flow]]
name = "tagged"
interface = "{in0}"
group = "239.1.1.1"
port = 5000
vlan = 200

  [[flow.output]]
  unicast = "{a}"
"#,
        in0 = iface::IN0,
        a = SocketAddr::new(addr::SNK0_V4.into(), 6001),
    );
    let cfg = files.path("fanout.toml");
    std::fs::write(&cfg, config).unwrap();
    let out = lab
        .edge
        .command(FANOUT)
        .arg("run")
        .arg("--config")
        .arg(&cfg)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("VLAN 200"), "{stderr}");
    assert!(
        stderr.contains("ip link add link in0 name in0.200 type vlan id 200"),
        "{stderr}"
    );
}

#[test]
fn vlan_flow_is_received_on_the_subinterface() {
    let Some((lab, files)) = privileged("vlan_flow_is_received_on_the_subinterface") else {
        return;
    };
    for (ns, parent, ip) in [
        (&lab.src, iface::SRC0, "10.210.0.1/24"),
        (&lab.edge, iface::IN0, "10.210.0.2/24"),
    ] {
        let sub = format!("{parent}.200");
        if let Err(e) = ns.ip(&[
            "link", "add", "link", parent, "name", &sub, "type", "vlan", "id", "200",
        ]) {
            // Not a privilege problem: this kernel has no 802.1Q (8021q) support.
            if e.to_string().contains("Unknown device type") {
                fanout::lab::skip_loudly(
                    "vlan_flow_is_received_on_the_subinterface",
                    &format!(
                        "the kernel cannot create VLAN devices (CONFIG_VLAN_8021Q unset): {e}"
                    ),
                );
                return;
            }
            panic!("{e}");
        }
        ns.ip(&["addr", "add", ip, "dev", &sub]).unwrap();
        ns.ip(&["link", "set", &sub, "up"]).unwrap();
    }
    lab.src
        .ip(&["route", "add", "239.2.2.2/32", "dev", "src0.200"])
        .unwrap();
    let a = SocketAddr::new(addr::SNK0_V4.into(), 6001);
    let config = format!(
        r#"
[engine]
mode = "socket"

[[flow]]
name = "tagged"
interface = "{in0}"
group = "239.2.2.2"
port = 5000
vlan = 200

  [[flow.output]]
  unicast = "{a}"
  name = "a"
"#,
        in0 = iface::IN0,
    );
    let rx = unicast_receiver(&lab.sink, a);
    let engine = Engine::start(&lab.edge, &files, &config);
    let tx = sender(&lab.src, "10.210.0.1".parse().unwrap());
    let want = payloads(3, 0, &[64, 1472, 8000], 20);
    send_all(&tx, "239.2.2.2:5000".parse().unwrap(), &want);
    let got = receive(&rx, want.len());
    let (snap, _) = engine.stop();
    assert_stream("vlan output", &got, &want);
    assert_eq!(
        snap.flow("tagged").unwrap().received,
        want.len() as u64,
        "{snap}"
    );
}

// ---- unprivileged: refusals before any socket exists -------------------

fn run_unprivileged(config: &str, tag: &str) -> (Option<i32>, String) {
    let files = Scratch::new(&format!("fanout-se-{tag}-{}", std::process::id()));
    let cfg = files.path("fanout.toml");
    std::fs::write(&cfg, config).unwrap();
    let out = Command::new(FANOUT)
        .arg("run")
        .arg("--config")
        .arg(&cfg)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const LO_FLOW: &str = r#"
[[flow]]
name = "tv"
interface = "lo"
group = "239.1.1.1"
port = 5000

  [[flow.output]]
  unicast = "127.0.0.1:6001"
"#;

#[test]
fn bad_configuration_exits_2_with_the_config_error() {
    let (code, stderr) = run_unprivileged(&LO_FLOW.replace("5000", "70000"), "bad");
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("fanout.toml"), "{stderr}");
    assert!(stderr.contains("70000"), "{stderr}");
    assert!(
        !stderr.contains("socket engine"),
        "no engine is announced for a bad config: {stderr}"
    );
}

#[test]
fn missing_configuration_file_exits_2() {
    let out = Command::new(FANOUT)
        .args(["run", "--config"])
        .arg(Path::new("/nonexistent/fanout-socket-engine-test.toml"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("/nonexistent/fanout-socket-engine-test.toml"),
        "{stderr}"
    );
}

#[test]
fn xdp_mode_is_refused_with_exit_1() {
    let (code, stderr) = run_unprivileged(&format!("[engine]\nmode = \"xdp\"\n{LO_FLOW}"), "xdp");
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("mode = \"xdp\""), "{stderr}");
    // The reason: lo has no MAC address for replicas (or, in a build
    // without the XDP object, the program is missing). Either way nothing
    // was attached: the outputs are checked before any program is loaded.
    assert!(
        stderr.contains("the XDP datapath cannot start")
            && stderr.contains("refusing to start")
            && (stderr.contains("egress interface lo has no MAC address")
                || stderr.contains("XDP program not built into this binary")),
        "{stderr}"
    );
}
