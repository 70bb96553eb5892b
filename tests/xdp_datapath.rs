//! The XDP datapath in-process, on real veth pairs: the loader
//! (`fanout::xdp::program`) with the real program attached, and the AF_XDP
//! rings (`fanout::xdp::xsk`) through the engine's `RxPort`/`TxPort` traits.
//! No `fanout run` here (that is `tests/end_to_end.rs` and
//! `tests/xdp_run.rs`).
//!
//! - `xdp_redirects_flows_to_af_xdp_and_transmits_chains`, on
//!   `common::xdp::Pair` (two namespaces, IPv6 off): the program is attached
//!   to `ia` (natively, and only once) with a flow 239.7.7.7:5000; an
//!   AF_XDP socket (XDP_USE_SG) on `ia` queue 0 receives 64, 1472 and
//!   8972-byte payloads byte-exact (8972 as a 3-descriptor chain, never
//!   handed out cut); a datagram to port 5001 is not a flow and reaches a
//!   kernel socket in ns a; the counters are exact. Without a socket in
//!   `XSKS` the flow goes to the kernel (fail-open). Then the 8972-byte
//!   datagram is replicated without copying its payload: a header slot
//!   chained to the received descriptors, sent from a TX-only socket on
//!   `oa` sharing the UMEM; it arrives byte-exact at the kernel socket on
//!   `ob`, and its three completions come back with the addresses sent.
//!   Last, a frame goes out through the rx socket's own TX ring.
//! - `unconfigured_traffic_is_untouched`, in the lab (`fanout::lab::Lab`,
//!   IPv6 off, permanent neighbours): while the program and an AF_XDP socket
//!   redirect the configured flow, ping, unicast UDP to the edge host and
//!   multicast to an unconfigured group still reach the edge's kernel
//!   (exact payloads), the configured flow reaches the AF_XDP socket only
//!   (exact payloads), and the program's counters are exact.
//!
//! Needs root, `ip netns` and the XDP object (`FANOUT_EBPF_OBJ`, or the
//! release build in `xdp-ebpf/target`); otherwise skips loudly, or fails
//! under `FANOUT_REQUIRE_PRIVILEGED=1`.

mod common;

use std::net::Ipv4Addr;

use common::traffic::{
    SENDER_TTL, assert_empty, assert_ping, datagram, multicast_receiver, ping_socket, recv_within,
    sender, unicast_receiver,
};
use common::xdp::{Pair, fill_frames, frame_bytes, receive_packet};
use common::{DEADLINE, mac, mac_octets, pin_neighbour};
use fanout::lab::{self, Lab, addr, iface, unique_prefix, wait_until};
use fanout::plan::{FlowPlan, Interface};
use fanout::wire::{self, IpPair};
use fanout::xdp::program::{AttachMode, Counters, XdpProgram};
use fanout::xdp::worker::ring::{Desc, RxPort, TxPort, Umem};
use fanout::xdp::xsk::{BindMode, FRAME_SIZE, RingSizes, XskUmem};
use fanout_common::Counter;

/// The flow of the chain test.
const GROUP: Ipv4Addr = Ipv4Addr::new(239, 7, 7, 7);
const PORT: u16 = 5000;
/// Same group, a port nobody configured.
const OTHER_PORT: u16 = 5001;
/// The kernel sockets that receive what the AF_XDP sockets send.
const SINK_PORT: u16 = 6000;
/// The chain test's datagrams (`fanout::lab::payload` stream id).
const CHAIN_STREAM: u32 = 7;
const FRAMES: u32 = 64;
/// Frames 0..RX_FRAMES go to the fill ring; the header slot lives above.
const RX_FRAMES: u32 = 32;
const HEADER_FRAME: u32 = 40;
/// A header slot in the middle of a frame: any address inside a frame is
/// a valid TX descriptor.
const HEADER_SLOT_OFFSET: u64 = 128;

/// The flow of the untouched-traffic test, and a group nobody configured
/// (same port).
const FLOW_GROUP: Ipv4Addr = Ipv4Addr::new(239, 77, 0, 1);
const OTHER_GROUP: Ipv4Addr = Ipv4Addr::new(239, 77, 0, 2);
/// Unicast UDP port of the edge host.
const UNICAST_PORT: u16 = 7000;
const SOURCE_PORT: u16 = 4000;
/// Payload stream ids (see `fanout::lab::payload`).
const FLOW_STREAM: u32 = 1;
const UNICAST_STREAM: u32 = 2;
const OTHER_STREAM: u32 = 3;

/// An interface of the calling thread's namespace, by name and index.
fn interface(name: &str, index: u32) -> Interface {
    Interface {
        name: name.into(),
        index,
        mtu: lab::MTU,
        mac: None,
        ipv4: vec![],
        ipv6: vec![],
    }
}

/// A flow of `group:port` on `ingress` (any source, no VLAN, no outputs:
/// the program needs only its key).
fn flow(name: &str, ingress: Interface, group: Ipv4Addr, port: u16) -> FlowPlan {
    FlowPlan {
        name: name.into(),
        ingress,
        group: group.into(),
        port,
        vlan: None,
        outer_vlan: None,
        source: None,
        cap: Default::default(),
        health: Default::default(),
        outputs: vec![],
    }
}

/// Asserts every counter of the program: those of `nonzero` have their
/// value, every other one is 0.
fn assert_counters(c: &Counters, nonzero: &[(Counter, u64)]) {
    let value = |k: Counter| nonzero.iter().find(|(n, _)| *n == k).map_or(0, |&(_, v)| v);
    let got: Vec<(&str, u64)> = Counter::ALL.iter().map(|&k| (k.name(), c.get(k))).collect();
    let want: Vec<(&str, u64)> = Counter::ALL.iter().map(|&k| (k.name(), value(k))).collect();
    assert_eq!(got, want, "program counters");
}

/// Ethernet + IPv4 + UDP header of a replica (UDP checksum 0: none).
fn udp_header(
    (src_mac, dst_mac): ([u8; 6], [u8; 6]),
    src: Ipv4Addr,
    dst: Ipv4Addr,
    sport: u16,
    dport: u16,
    payload_len: u16,
) -> [u8; 42] {
    let mut h = [0u8; 42];
    h[..6].copy_from_slice(&dst_mac);
    h[6..12].copy_from_slice(&src_mac);
    h[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    let ip = &mut h[14..34];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&(20 + 8 + payload_len).to_be_bytes());
    ip[6] = 0x40; // DF
    ip[8] = 64;
    ip[9] = 17;
    ip[12..16].copy_from_slice(&src.octets());
    ip[16..20].copy_from_slice(&dst.octets());
    let sum = !wire::checksum::data(ip);
    ip[10..12].copy_from_slice(&sum.to_be_bytes());
    let udp = &mut h[34..42];
    udp[..2].copy_from_slice(&sport.to_be_bytes());
    udp[2..4].copy_from_slice(&dport.to_be_bytes());
    udp[4..6].copy_from_slice(&(8 + payload_len).to_be_bytes());
    h
}

#[test]
fn xdp_redirects_flows_to_af_xdp_and_transmits_chains() {
    let Some(obj) = lab::xdp_ready("xdp_redirects_flows_to_af_xdp_and_transmits_chains") else {
        return;
    };
    let pair = Pair::up("xd");
    let ia_mac = mac_octets(&pair.a, "ia");
    let ib_mac = mac_octets(&pair.b, "ib");
    let oa_mac = mac_octets(&pair.a, "oa");
    let ob_mac = mac_octets(&pair.b, "ob");
    pair.a.run_in(|| {
        let ia_index = nix::net::if_::if_nametoindex("ia").unwrap();
        let oa_index = nix::net::if_::if_nametoindex("oa").unwrap();

        // Load, attach, one flow.
        let mut prog = XdpProgram::load_file(&obj).unwrap();
        let attached = prog.attach("ia").unwrap();
        eprintln!("attached: {attached:?}");
        assert!(matches!(
            prog.attach("oa"),
            Err(fanout::xdp::program::Error::AlreadyAttached { .. })
        ));
        assert_eq!(
            attached.mode,
            AttachMode::Native,
            "veth supports native XDP with a frags-aware program"
        );
        prog.insert_flow(0, &flow("smoke", interface("ia", ia_index), GROUP, PORT))
            .unwrap();

        // UMEM, the rx socket on ia/0, a TX-only socket on oa/0.
        let mut umem = XskUmem::new(FRAMES).unwrap();
        let (mut rx, tx_in) = umem
            .bind_rx(ia_index, 0, RingSizes::default(), true)
            .unwrap();
        let mut tx_in = tx_in.expect("TX ring on the rx socket");
        assert_eq!(umem.mode(), Some(BindMode::Copy), "veth has no zero-copy");
        let fd = fanout::xdp::xsk::open_socket(oa_index, 0).unwrap();
        let mut tx = umem.bind_tx(fd, oa_index, 0, RingSizes::default()).unwrap();
        prog.insert_socket(0, &rx).unwrap();
        fill_frames(&mut rx, RX_FRAMES, umem.frame_size());

        // Kernel sockets: the non-flow port in ns a, the sink in ns b.
        let kernel = multicast_receiver(&pair.a, GROUP.into(), OTHER_PORT, "ia");
        let source = sender(&pair.b, (Pair::IB, 4000));
        let sink = unicast_receiver(&pair.b, (Pair::OB, SINK_PORT));
        let back = unicast_receiver(&pair.b, (Pair::IB, SINK_PORT));

        // 1. Flow traffic reaches the AF_XDP socket byte-exact.
        let mut jumbo: Vec<Desc> = Vec::new();
        for (i, len) in [64usize, 1472, 8972].into_iter().enumerate() {
            let data = datagram(CHAIN_STREAM, i as u64, len);
            source.send_to(&data, (GROUP, PORT)).unwrap();
            if len == 8972 {
                // A chain never comes out cut: with room for 2 of its 3
                // descriptors, receive returns nothing and leaves it queued.
                let start = std::time::Instant::now();
                while rx.available() < 3 {
                    assert!(rx.wait(DEADLINE).unwrap(), "jumbo datagram never arrived");
                    assert!(start.elapsed() < DEADLINE);
                }
                let mut small = [Desc::default(); 2];
                assert_eq!(rx.receive(&mut small), 0);
                assert_eq!(rx.available(), 3);
            }
            let chain = receive_packet(&mut rx, DEADLINE);
            let want_descs = if len == 8972 { 3 } else { 1 };
            assert_eq!(chain.len(), want_descs, "{len}-byte payload: {chain:?}");
            for (j, d) in chain.iter().enumerate() {
                assert_eq!(d.continues(), j + 1 < chain.len(), "{len}: {chain:?}");
                assert!(d.len > 0);
            }
            let frame = frame_bytes(&umem, &chain);
            assert_eq!(frame.len(), 42 + len, "{len}: {chain:?}");
            let dg = wire::parse(&frame).unwrap();
            assert_eq!(&frame[..6], &[0x01, 0x00, 0x5e, 0x07, 0x07, 0x07]);
            assert_eq!(&frame[6..12], &ib_mac);
            assert_eq!(
                dg.addrs,
                IpPair::V4 {
                    src: Pair::IB,
                    dst: GROUP
                }
            );
            assert_eq!((dg.src_port, dg.dst_port), (4000, PORT));
            assert_eq!(u32::from(dg.ttl), SENDER_TTL);
            assert_eq!(dg.payload_offset, 42);
            assert_eq!(&frame[dg.payload_range()], &data[..], "{len}-byte payload");
            eprintln!(
                "{len}-byte payload: descriptors {:?}",
                chain.iter().map(|d| d.len).collect::<Vec<_>>()
            );
            if len == 8972 {
                jumbo = chain;
            } else {
                // Back to the fill ring (the jumbo frames wait for their replica).
                let back: Vec<u64> = chain.iter().map(|d| d.addr).collect();
                assert_eq!(rx.fill(&back), back.len());
            }
        }

        // 2. Not a flow: the kernel socket gets it, untouched.
        let other = datagram(CHAIN_STREAM, 9, 100);
        source.send_to(&other, (GROUP, OTHER_PORT)).unwrap();
        assert_eq!(recv_within(&kernel, DEADLINE, "non-flow datagram"), other);
        let mut none = [Desc::default(); 4];
        assert_eq!(
            rx.receive(&mut none),
            0,
            "the non-flow datagram was redirected"
        );

        // 3. Counters, exactly. IPv6 is off and nothing unicasts on ia: no
        // ARP, no ND, so the four datagrams are all the program saw.
        let c = prog.counters().unwrap();
        eprintln!("counters: {:?}", Counter::ALL.map(|k| (k.name(), c.get(k))));
        assert_counters(
            &c,
            &[
                (Counter::Seen, 4),
                (Counter::Passed, 1),
                (Counter::Matched, 3),
                (Counter::Redirected, 3),
                (Counter::NoFlow, 1),
            ],
        );
        assert_eq!(
            c.get(Counter::Seen),
            c.get(Counter::Redirected) + c.get(Counter::Passed)
        );
        let verdicts = [
            Counter::Matched,
            Counter::SourceRejected,
            Counter::NoFlow,
            Counter::Malformed,
            Counter::Fragment,
            Counter::NotIp,
            Counter::NotUdp,
        ];
        assert_eq!(
            c.get(Counter::Seen),
            verdicts.iter().map(|&k| c.get(k)).sum::<u64>()
        );

        // 4. Fail-open: without a socket on the queue, flow traffic goes to
        // the kernel (and nothing redirected earlier reached it).
        let flow_kernel = multicast_receiver(&pair.a, GROUP.into(), PORT, "ia");
        prog.remove_socket(0).unwrap();
        let open = datagram(CHAIN_STREAM, 11, 200);
        source.send_to(&open, (GROUP, PORT)).unwrap();
        assert_eq!(
            recv_within(&flow_kernel, DEADLINE, "flow datagram without a socket"),
            open
        );
        assert_empty(
            &flow_kernel,
            "a redirected datagram also reached the kernel",
        );
        assert_eq!(rx.receive(&mut none), 0);
        let c = prog.counters().unwrap();
        assert_eq!(c.get(Counter::Matched), 4);
        assert_eq!(c.get(Counter::NoSocket), 1);
        assert_eq!(c.get(Counter::Redirected), 3);
        assert_eq!(c.get(Counter::Passed), 2);

        // 5. A replica of the jumbo datagram: header slot + the received
        // descriptors from the payload offset on, linked with XDP_PKT_CONTD.
        let payload_len = 8972u16;
        let slot = u64::from(HEADER_FRAME) * u64::from(umem.frame_size()) + HEADER_SLOT_OFFSET;
        let header = udp_header(
            (oa_mac, ob_mac),
            Pair::OA,
            Pair::OB,
            7000,
            SINK_PORT,
            payload_len,
        );
        umem.bytes_mut(slot, header.len() as u32)
            .copy_from_slice(&header);
        let mut replica = vec![Desc {
            addr: slot,
            len: header.len() as u32,
            options: fanout::xdp::worker::ring::XDP_PKT_CONTD,
        }];
        for (j, d) in jumbo.iter().enumerate() {
            let skip = if j == 0 { 42 } else { 0 };
            replica.push(Desc {
                addr: d.addr + skip,
                len: d.len - skip as u32,
                options: d.options,
            });
        }
        assert!(tx.tx_free() >= replica.len());
        assert_eq!(tx.transmit(&replica), replica.len());
        tx.flush();
        let got = recv_within(&sink, DEADLINE, "replica at the kernel sink");
        assert_eq!(got.len(), 8972);
        assert_eq!(got, datagram(CHAIN_STREAM, 2, 8972), "replica payload");

        // 6. Its completions: one per descriptor, the addresses we sent.
        let mut done = Vec::new();
        let mut out = [0u64; 16];
        let complete = wait_until(DEADLINE, || {
            let n = tx.completions(&mut out);
            done.extend_from_slice(&out[..n]);
            if done.len() >= replica.len() {
                return Some(());
            }
            if n == 0 {
                tx.flush();
            }
            None
        });
        assert!(complete.is_some(), "completions: {done:?} of {replica:?}");
        // The kernel returns each descriptor's address as it was sent
        // (offsets included), in order.
        let sent: Vec<u64> = replica.iter().map(|d| d.addr).collect();
        assert_eq!(done, sent);
        eprintln!("completions {done:?} for descriptors {sent:?}");

        // 7. The rx socket's own TX ring (the UMEM's completion ring): one
        // single-descriptor frame back out of ia, header and payload in one
        // frame at an offset.
        let small = datagram(CHAIN_STREAM, 5, 300);
        let at = u64::from(HEADER_FRAME + 1) * u64::from(umem.frame_size()) + 64;
        let header = udp_header((ia_mac, ib_mac), Pair::IA, Pair::IB, 7001, SINK_PORT, 300);
        umem.bytes_mut(at, 42).copy_from_slice(&header);
        umem.bytes_mut(at + 42, 300).copy_from_slice(&small);
        let one = Desc {
            addr: at,
            len: 342,
            options: 0,
        };
        assert_eq!(tx_in.transmit(&[one]), 1);
        tx_in.flush();
        assert_eq!(
            recv_within(&back, DEADLINE, "frame sent on the ingress socket"),
            small
        );
        let mut out = [0u64; 4];
        let completed = wait_until(DEADLINE, || match tx_in.completions(&mut out) {
            0 => {
                tx_in.flush();
                None
            }
            n => Some(out[..n].to_vec()),
        });
        assert_eq!(completed, Some(vec![at]), "the completion on ia");

        let st = tx.kernel_stats().unwrap();
        assert_eq!(st.tx_invalid_descs, 0);
        let st = rx.kernel_stats().unwrap();
        assert_eq!((st.rx_dropped, st.rx_invalid_descs), (0, 0));
    });
}

#[test]
fn unconfigured_traffic_is_untouched() {
    let test = "unconfigured_traffic_is_untouched";
    let Some(obj) = lab::xdp_ready(test) else {
        return;
    };
    let lab = Lab::up(&unique_prefix("xu")).unwrap();
    // Nothing but this test's packets on in0: no IPv6 (ND, MLD), no ARP
    // (permanent neighbours both ways).
    for ns in [&lab.src, &lab.edge] {
        ns.sysctl("net/ipv6/conf/all/disable_ipv6", "1").unwrap();
        ns.sysctl("net/ipv6/conf/default/disable_ipv6", "1")
            .unwrap();
    }
    let (src_mac, in_mac) = (mac(&lab.src, iface::SRC0), mac(&lab.edge, iface::IN0));
    pin_neighbour(&lab.src, addr::IN0_V4.into(), &in_mac, iface::SRC0);
    pin_neighbour(&lab.edge, addr::SRC0_V4.into(), &src_mac, iface::IN0);

    // Kernel sockets on the edge (created before the program: their IGMP
    // reports leave through in0 and are not seen by it anyway).
    let flow_kernel = multicast_receiver(&lab.edge, FLOW_GROUP.into(), PORT, iface::IN0);
    let other_kernel = multicast_receiver(&lab.edge, OTHER_GROUP.into(), PORT, iface::IN0);
    let unicast_kernel = unicast_receiver(&lab.edge, (addr::IN0_V4, UNICAST_PORT));
    let source = sender(&lab.src, (addr::SRC0_V4, SOURCE_PORT));
    let icmp = ping_socket(&lab.src, addr::SRC0_V4);

    lab.edge.run_in(|| {
        let index = nix::net::if_::if_nametoindex(iface::IN0).unwrap();
        let mut prog = XdpProgram::load_file(&obj).unwrap();
        let attached = prog.attach(iface::IN0).unwrap();
        eprintln!("attached: {attached:?}");
        let flow = flow("untouched", interface(iface::IN0, index), FLOW_GROUP, PORT);
        prog.insert_flow(0, &flow).unwrap();
        let mut umem = XskUmem::new(FRAMES).unwrap();
        let (mut rx, _) = umem.bind_rx(index, 0, RingSizes::default(), false).unwrap();
        prog.insert_socket(0, &rx).unwrap();
        fill_frames(&mut rx, FRAMES, FRAME_SIZE);

        // 1. Ping the edge host: the kernel answers with the same data.
        const PINGS: u16 = 3;
        for seq in 0..PINGS {
            let data = datagram(9, u64::from(seq), 56);
            assert_ping(&icmp, addr::IN0_V4, 0x464f, seq, &data);
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
            source.send_to(&data, (FLOW_GROUP, PORT)).unwrap();
            let chain = receive_packet(&mut rx, DEADLINE);
            let frame = frame_bytes(&umem, &chain);
            let dg = wire::parse(&frame).unwrap();
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
        assert_counters(
            &c,
            &[
                (Counter::Seen, k + u + m + f),
                (Counter::Passed, k + u + m),
                (Counter::NotUdp, k),
                (Counter::NoFlow, u + m),
                (Counter::Matched, f),
                (Counter::Redirected, f),
            ],
        );
        let st = rx.kernel_stats().unwrap();
        assert_eq!((st.rx_dropped, st.rx_invalid_descs), (0, 0));
    });
}
