//! The real `fanout run` on the XDP datapath (`mode = "xdp"`, native attach)
//! in the lab, for what only that datapath does. Delivery, the scenarios
//! both engines share, and the engine choice are in `tests/end_to_end.rs`;
//! what happens when the engine is killed, in `tests/xdp_failopen.rs`.
//!
//! - `traffic_it_was_not_asked_for_is_untouched`: while the engine
//!   forwards the flow, ping and unicast UDP to the edge host and multicast
//!   to a group nobody configured reach the edge's kernel, byte-exact, and
//!   the program's counters say exactly what it matched and redirected.
//! - `accounting_balances_when_the_rings_fill`: an unpaced jumbo stream
//!   (`fanout lab gen --fast`) far above what the lab's copy-mode AF_XDP
//!   can carry, to 8 unicast outputs and 1 multicast output; after the run,
//!   for every output `sent + dropped by reason == received`, the rings did
//!   fill (replicas dropped as `ring_full`, or frames dropped by the kernel
//!   at the receive ring), and the engine received exactly what the
//!   program redirected minus what the kernel dropped before the engine
//!   saw it.
//! - `unresolved_next_hop_is_counted_then_followed`: a unicast receiver
//!   whose next hop does not answer yet: its replicas are counted as
//!   `next_hop_unresolved` (the accounting balances), the engine keeps
//!   asking the kernel to resolve it, and once the address appears on the
//!   sink the replicas flow, without a restart.
//!
//! Needs root and the XDP object (`FANOUT_EBPF_OBJ`, or the release build
//! in `xdp-ebpf/target`); skips loudly otherwise, fails under
//! `FANOUT_REQUIRE_PRIVILEGED=1`. Every namespace belongs to a `Lab` guard
//! (`common::engine::Case`).

mod common;

use std::io::Write as _;
use std::net::Ipv4Addr;
use std::time::Duration;

use common::engine::{Case, EngineKind};
use common::traffic::{
    assert_ping, check_exact, datagram, drain, multicast_receiver, ping_socket, recv_within,
    sender, unicast_receiver,
};
use common::{DEADLINE, FANOUT};
use fanout::lab::{addr, iface, wait_until};
use fanout::stats::DropReason;

const GROUP: Ipv4Addr = Ipv4Addr::new(239, 10, 0, 1);
/// Same port, a group nobody configured.
const OTHER_GROUP: Ipv4Addr = Ipv4Addr::new(239, 10, 0, 2);
const PORT: u16 = 5000;
const UNICAST_PORT: u16 = 7001;
const OUT_PORT: u16 = 6001;
const MCAST_OUT: Ipv4Addr = Ipv4Addr::new(239, 255, 10, 1);
const MCAST_OUT_PORT: u16 = 7000;
/// Stream ids of `fanout::lab::payload`.
const FLOW_STREAM: u32 = 1;
const UNICAST_STREAM: u32 = 2;
const OTHER_STREAM: u32 = 3;

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

#[test]
fn traffic_it_was_not_asked_for_is_untouched() {
    let test = "traffic_it_was_not_asked_for_is_untouched";
    let Some(case) = Case::unpinned(test, EngineKind::XdpNative) else {
        return;
    };
    let lab = &case.lab;
    let output = unicast_receiver(&lab.sink, (addr::SNK0_V4, OUT_PORT));
    let flow_kernel = multicast_receiver(&lab.edge, GROUP.into(), PORT, iface::IN0);
    let other_kernel = multicast_receiver(&lab.edge, OTHER_GROUP.into(), PORT, iface::IN0);
    let unicast_kernel = unicast_receiver(&lab.edge, (addr::IN0_V4, UNICAST_PORT));
    let engine = case.start(&config(1, false));
    let source = sender(&lab.src, (addr::SRC0_V4, 4000));
    let icmp = ping_socket(&lab.src, addr::SRC0_V4);

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
        assert_ping(&icmp, addr::IN0_V4, 0x4242, seq as u16, &data);
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

    let (snap, _) = engine.stop();
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

/// A second configured group, for the overload test's second flow.
const SECOND_GROUP: Ipv4Addr = Ipv4Addr::new(239, 10, 0, 3);

/// Under overload from two flows at once, every datagram is accounted for,
/// per flow: what the program redirected for a flow reached its worker or
/// was dropped by the kernel at the socket (`lost_before_worker`), and the
/// flows' losses add up to the socket's own drop counters.
#[test]
fn accounting_balances_when_the_rings_fill() {
    let test = "accounting_balances_when_the_rings_fill";
    let Some(case) = Case::unpinned(test, EngineKind::XdpNative) else {
        return;
    };
    let lab = &case.lab;
    let config = config(8, true)
        + &format!(
            "\n[[flow]]\nname = \"g\"\ninterface = \"{}\"\ngroup = \"{SECOND_GROUP}\"\nport = {PORT}\n\n  [[flow.output]]\n  unicast = \"{}:7101\"\n  interface = \"{}\"\n",
            iface::IN0,
            addr::SNK0_V4,
            iface::OUT0
        );
    let engine = case.start(&config);

    // Unpaced jumbo trains from the source to both groups at once: far more
    // than copy-mode AF_XDP on veth carries (bounded: 100 000 datagrams or
    // 10 s each).
    let generate = |group: Ipv4Addr| {
        lab.src
            .command(FANOUT)
            .args(["lab", "gen", "--fast", "--dest"])
            .arg(format!("{group}:{PORT}"))
            .args(["--iface", iface::SRC0, "--sizes", "8972"])
            .args(["--count", "100000", "--max-seconds", "10"])
            .spawn()
            .expect("fanout gen")
    };
    let generators = [generate(GROUP), generate(SECOND_GROUP)];
    for g in generators {
        let out = g.wait_with_output().expect("fanout gen");
        assert!(out.status.success(), "{out:?}");
    }
    let offered = 200_000u64;

    // Stopping takes the sockets out of XSKS, lets the workers empty their
    // rings, then the counters are final.
    let (snap, done) = engine.stop();
    snap.check_accounting()
        .unwrap_or_else(|e| panic!("{e}\n{snap}\n{}", done.stderr));
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
    assert_eq!(q.worker["replicas_in_flight"], 0, "{q:?}");
    assert!(
        i.program["matched"] <= offered,
        "more matched than sent: {i:?}"
    );
    // Per flow: redirected = what its worker saw + what the kernel dropped
    // before it; the flows' add up to the interface's and the socket's.
    let (mut redirected, mut seen, mut lost) = (0, 0, 0);
    for name in ["f", "g"] {
        let f = snap.flow(name).unwrap();
        let x = f.xdp.as_ref().expect("the flow's XDP counters");
        assert!(x.redirected >= f.seen_by_worker(), "flow {name}: {snap}");
        assert_eq!(
            x.redirected,
            f.seen_by_worker() + x.lost_before_worker,
            "flow {name}: {snap}"
        );
        assert!(x.passed.values().all(|&n| n == 0), "flow {name}: {snap}");
        redirected += x.redirected;
        seen += f.seen_by_worker();
        lost += x.lost_before_worker;
    }
    assert_eq!(redirected, i.program["redirected"], "{snap}");
    assert_eq!(seen, q.worker["rx_packets"], "{snap}");
    assert_eq!(
        lost, kernel_rx_drops,
        "the flows' losses are the socket's: {snap}"
    );
    // The rings did fill: replicas dropped for a full TX ring, or frames
    // dropped by the kernel before the engine (else the test proved nothing
    // about overload).
    let ring_full: u64 = snap
        .flows
        .iter()
        .flat_map(|f| &f.outputs)
        .map(|o| o.dropped(DropReason::RingFull))
        .sum();
    assert!(
        ring_full + kernel_rx_drops > 0,
        "nothing overflowed at {offered} unpaced datagrams: {snap}"
    );
    if kernel_rx_drops > 0 {
        assert!(
            done.stderr
                .contains("were dropped by the kernel before the worker saw them"),
            "the operator is told:\n{}",
            done.stderr
        );
    }
    let (f, g) = (snap.flow("f").unwrap(), snap.flow("g").unwrap());
    let lost_of = |f: &fanout::stats::FlowSnapshot| f.xdp.as_ref().unwrap().lost_before_worker;
    let _ = writeln!(
        std::io::stderr(),
        "{test}: offered {offered}, matched {}, engine received f {} g {}, kernel rx drops {kernel_rx_drops} (f {} g {}), replicas dropped ring_full {ring_full}",
        i.program["matched"],
        f.received,
        g.received,
        lost_of(f),
        lost_of(g),
    );
}

#[test]
fn unresolved_next_hop_is_counted_then_followed() {
    let test = "unresolved_next_hop_is_counted_then_followed";
    let Some(case) = Case::unpinned(test, EngineKind::XdpNative) else {
        return;
    };
    let lab = &case.lab;
    let late = Ipv4Addr::new(10, 202, 0, 99);
    let config = format!(
        "[engine]\nmode = \"xdp\"\n\n[[flow]]\nname = \"f\"\ninterface = \"{}\"\ngroup = \"{GROUP}\"\nport = {PORT}\n\
         \n  [[flow.output]]\n  name = \"late\"\n  unicast = \"{late}:{OUT_PORT}\"\n  interface = \"{}\"\n",
        iface::IN0,
        iface::OUT0
    );
    let engine = case.start_with(&config, &["--stats-interval", "1"]);
    let src = sender(&lab.src, (addr::SRC0_V4, 0));
    let send = |seq: u64| {
        src.send_to(&datagram(FLOW_STREAM, seq, 100), (GROUP, PORT))
            .unwrap();
    };

    // 1. Nobody owns the address: counted, not sent.
    for seq in 0..5 {
        send(seq);
    }
    let unresolved = wait_until(DEADLINE, || {
        let s = engine.stats()?;
        let f = s.flow("f")?;
        let o = f.output("late")?;
        (f.received == 5).then(|| o.dropped(DropReason::NextHopUnresolved))
    });
    assert_eq!(unresolved, Some(5), "{:?}", engine.stats());

    // 2. The address appears on the sink: the engine follows.
    lab.sink
        .ip(&["addr", "add", &format!("{late}/24"), "dev", iface::SNK0])
        .unwrap();
    let sink = unicast_receiver(&lab.sink, (late, OUT_PORT));
    sink.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut buf = vec![0u8; 2048];
    let mut seq = 5;
    let mut first = None;
    // One datagram every 100 ms at most until the first replica arrives:
    // bounded (150 datagrams), not a bare sleep.
    while first.is_none() && seq < 5 + 150 {
        send(seq);
        seq += 1;
        if let Ok((n, _)) = sink.recv_from(&mut buf) {
            assert_eq!(n, 100, "the first replica's length");
            first = Some(check_exact(&buf[..n], FLOW_STREAM, "the first replica"));
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
        let got = recv_within(&sink, DEADLINE, "datagram after resolution");
        assert_eq!(got.len(), 100, "datagram {want}");
        assert_eq!(check_exact(&got, FLOW_STREAM, "after resolution"), want);
        received += 1;
    }

    let (snap, done) = engine.stop();
    assert!(
        done.stderr
            .contains(&format!("next hop of {late} via {}", iface::OUT0)),
        "{}",
        done.stderr
    );
    snap.check_accounting().unwrap();
    let f = snap.flow("f").unwrap();
    let o = f.output("late").unwrap();
    assert_eq!(f.received, seq);
    assert_eq!(o.sent, received, "{o:?}");
    assert_eq!(o.dropped(DropReason::NextHopUnresolved), seq - received);
    eprintln!("resolved after {first} datagrams; {received} of {seq} sent");
}
