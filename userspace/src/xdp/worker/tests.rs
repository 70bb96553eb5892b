//! The worker against the in-memory rings: the test plays the kernel.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};

use proptest::prelude::*;

use super::ring::mem::{MemRx, MemTx, MemUmem, Refused};
use super::ring::{Desc, Umem, XDP_PKT_CONTD};
use super::*;
use crate::stats::DropReason;
use crate::wire::ethernet::ethertype;
use crate::wire::testutil::{FrameSpec, build_frame, make_partial, ref_udp_checksum};
use crate::wire::{self, IpPair, ReplicaSpec, ReplicaTemplate, TosPolicy};

type W = Worker<MemUmem, MemRx, MemTx>;

const FS: u32 = 4096;
const HEADROOM: u64 = 256;
const GROUP4: Ipv4Addr = Ipv4Addr::new(239, 1, 2, 3);
const SRC4: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const PORT: u16 = 5004;

fn group6() -> IpAddr {
    "ff3e::8000:1".parse().unwrap()
}

fn src6() -> IpAddr {
    "fd00::1".parse().unwrap()
}

/// A datagram of the v4 test flow (or of `group` / `src` when changed).
fn frame_v4(payload: &[u8]) -> Vec<u8> {
    frame_from(SRC4.into(), GROUP4.into(), PORT, vec![], payload)
}

fn frame_from(
    src: IpAddr,
    dst: IpAddr,
    port: u16,
    tags: Vec<(u16, u16)>,
    payload: &[u8],
) -> Vec<u8> {
    let spec = FrameSpec {
        tags,
        addrs: IpPair::new(src, dst).unwrap(),
        tos: 0xb9,
        ttl: 16,
        ipv4_options: vec![],
        src_port: 40000,
        dst_port: port,
        zero_checksum: false,
    };
    build_frame(&spec, payload).0
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(7).wrapping_add(seed))
        .collect()
}

fn template(dst: &str, port: u16, vlan: Option<u16>) -> ReplicaTemplate {
    let dst: IpAddr = dst.parse().unwrap();
    let src: IpAddr = if dst.is_ipv4() {
        "10.1.0.1".parse().unwrap()
    } else {
        "fd01::1".parse().unwrap()
    };
    let dst_mac = wire::ethernet::multicast_mac(dst).unwrap_or([0x02, 0xdd, 0, 0, 0, 2]);
    ReplicaTemplate::new(ReplicaSpec {
        dst_mac,
        src_mac: [0x02, 0xee, 0, 0, 0, 1],
        vlan,
        src,
        dst,
        ttl: 64,
        src_port: Some(4000),
        dst_port: port,
        tos: TosPolicy::CopyDscp,
    })
    .unwrap()
}

/// Flow 0: IPv4 239.1.2.3:5004 -> unicast 10.1.0.2:6000 on port 0 and
/// multicast 239.9.9.9:7000 VLAN 7 on port 1.
/// Flow 1: IPv6 [ff3e::8000:1]:5004 -> unicast [fd01::2]:6000 on port 1.
fn flows() -> Vec<FlowSpec> {
    vec![
        FlowSpec {
            group: GROUP4.into(),
            port: PORT,
            vlan: None,
            outer_vlan: None,
            source: None,
            limiter: None,
            health: Default::default(),
            outputs: vec![
                OutputSpec {
                    tx: 0,
                    mtu: 9000,
                    template: Some(template("10.1.0.2", 6000, None)),
                },
                OutputSpec {
                    tx: 1,
                    mtu: 9000,
                    template: Some(template("239.9.9.9", 7000, Some(7))),
                },
            ],
        },
        FlowSpec {
            group: group6(),
            port: PORT,
            vlan: None,
            outer_vlan: None,
            source: None,
            limiter: None,
            health: Default::default(),
            outputs: vec![OutputSpec {
                tx: 1,
                mtu: 9000,
                template: Some(template("fd01::2", 6000, None)),
            }],
        },
    ]
}

#[derive(Debug, Clone)]
struct Setup {
    frames: u32,
    slot_frames: u32,
    batch: usize,
    fill_cap: usize,
    rx_cap: usize,
    /// (TX ring, completion ring) capacity per port.
    ports: Vec<(usize, usize)>,
    flows: Vec<FlowSpec>,
    max_tx_chain: usize,
    inline_max: u32,
}

impl Default for Setup {
    fn default() -> Self {
        Self {
            frames: 64,
            slot_frames: 2,
            batch: 64,
            fill_cap: 64,
            rx_cap: 64,
            ports: vec![(256, 256), (256, 256)],
            flows: flows(),
            max_tx_chain: MAX_TX_CHAIN,
            inline_max: 0,
        }
    }
}

impl Setup {
    fn build(self) -> W {
        let cfg = WorkerConfig {
            batch_size: self.batch,
            slot_size: DEFAULT_SLOT_SIZE,
            slot_frames: self.slot_frames,
            tx_batch: 256,
            max_tx_chain: self.max_tx_chain,
            inline_max: self.inline_max,
        };
        let tx = self.ports.iter().map(|&(t, c)| MemTx::new(t, c)).collect();
        Worker::new(
            MemUmem::new(FS, self.frames),
            MemRx::new(FS, self.fill_cap, self.rx_cap),
            tx,
            self.flows,
            cfg,
        )
        .unwrap()
    }
}

fn deliver(w: &mut W, frame: &[u8]) -> Result<usize, Refused> {
    let (umem, rx, _) = w.parts_mut();
    rx.deliver(umem, frame)
}

fn deliver_split(w: &mut W, frame: &[u8], lens: &[usize]) -> Result<usize, Refused> {
    let (umem, rx, _) = w.parts_mut();
    rx.deliver_split(umem, frame, lens)
}

fn take_all(w: &mut W, port: usize) -> Vec<Vec<Desc>> {
    w.parts_mut().2[port].take_all()
}

fn complete(w: &mut W, port: usize, addrs: &[u64]) {
    assert_eq!(w.parts_mut().2[port].complete(addrs), addrs.len());
}

fn complete_chain(w: &mut W, port: usize, chain: &[Desc]) {
    let addrs: Vec<u64> = chain.iter().map(|d| d.addr).collect();
    complete(w, port, &addrs);
}

fn chain_bytes(w: &W, chain: &[Desc]) -> Vec<u8> {
    chain
        .iter()
        .flat_map(|d| w.umem().bytes(d.addr, d.len).to_vec())
        .collect()
}

/// The replica `template` makes of `frame`: its headers, then the payload.
fn expected(template: &ReplicaTemplate, frame: &[u8]) -> Vec<u8> {
    let dg = wire::parse(frame).unwrap();
    let mut h = [0u8; 128];
    let n = template.write(&dg, &mut h).unwrap();
    [&h[..n], &frame[dg.payload_range()]].concat()
}

/// Independent of the template: the replica parses, goes where the
/// template says, carries `payload` and a valid UDP checksum.
fn check_replica(bytes: &[u8], t: &ReplicaTemplate, payload: &[u8]) {
    let dg = wire::parse(bytes).unwrap();
    assert_eq!(dg.addrs, t.addrs());
    assert_eq!(dg.dst_port, t.spec().dst_port);
    assert_eq!(dg.outer_vlan, t.spec().vlan);
    assert_eq!(&bytes[dg.payload_range()], payload);
    assert_eq!(bytes.len(), dg.payload_offset + payload.len());
    let udp = &bytes[dg.payload_offset - 8..];
    assert_eq!(dg.udp_checksum, ref_udp_checksum(&dg.addrs, udp));
}

/// Chains are well formed: CONTD on every descriptor but the last; the
/// first is a header slot in the slot frames.
fn check_chain(chain: &[Desc], slot_frames: u32) {
    let (last, init) = chain.split_last().unwrap();
    assert!(init.iter().all(|d| d.options == XDP_PKT_CONTD), "{chain:?}");
    assert_eq!(last.options, 0, "{chain:?}");
    assert!(chain[0].addr < u64::from(slot_frames * FS), "{chain:?}");
    assert_eq!(chain[0].addr % u64::from(DEFAULT_SLOT_SIZE), 0);
}

fn assert_balanced(w: &W) {
    for (f, fc) in w.flow_counters().iter().enumerate() {
        for (o, oc) in fc.outputs.iter().enumerate() {
            assert_eq!(
                oc.sent + oc.dropped_total(),
                oc.offered(fc.received),
                "flow {f} output {o}: {oc:?}, received {}",
                fc.received
            );
        }
    }
}

/// Takes and completes everything until nothing is in flight (completion
/// rings permitting, a few descriptors per poll); then every frame is back
/// with the kernel or waiting for the fill ring.
fn settle(w: &mut W) {
    let mut backlog: Vec<Vec<u64>> = vec![Vec::new(); w.tx().len()];
    for _ in 0..10_000 {
        let mut busy = w.poll().received > 0 || w.rx().rx_len() > 0;
        for (p, backlog) in backlog.iter_mut().enumerate() {
            for chain in take_all(w, p) {
                backlog.extend(chain.iter().map(|d| d.addr));
            }
            let n = w.parts_mut().2[p].complete(backlog);
            backlog.drain(..n);
            busy |= !backlog.is_empty() || w.tx()[p].comp_len() > 0 || w.tx()[p].tx_len() > 0;
        }
        if !busy && w.census().referenced == 0 && w.census().slots_in_flight == 0 {
            assert_eq!(w.poll(), PollResult::default());
            let census = w.census();
            assert!(census.is_idle(), "{census:?}");
            assert_balanced(w);
            return;
        }
    }
    panic!("never settled: {:?}", w.census());
}

fn sent(w: &W, flow: usize, output: usize) -> u64 {
    w.flow_counters()[flow].outputs[output].sent
}

fn dropped(w: &W, flow: usize, output: usize, reason: DropReason) -> u64 {
    w.flow_counters()[flow].outputs[output].dropped(reason)
}

#[test]
fn outputs_added_and_removed_between_polls_keep_every_count_and_frame() {
    let mut w = Setup::default().build();
    let frames: Vec<Vec<u8>> = (0..6).map(|i| frame_v4(&pattern(900, i))).collect();
    for f in &frames[..3] {
        deliver(&mut w, f).unwrap();
    }
    w.poll();
    settle(&mut w);
    // One more datagram, its replicas still in the TX rings when output 0
    // (slot 0) is removed: they complete, their frames come back.
    deliver(&mut w, &frames[3]).unwrap();
    w.poll();
    assert!(w.replicas_in_flight() > 0);
    w.remove_output(0, 0);
    let port0 = take_all(&mut w, 0);
    assert_eq!(
        port0.len(),
        1,
        "the in-flight replica of the removed output"
    );
    assert_eq!(
        chain_bytes(&w, &port0[0]),
        expected(&template("10.1.0.2", 6000, None), &frames[3])
    );
    complete_chain(&mut w, 0, &port0[0]);
    settle(&mut w);
    // A template for the removed slot is ignored; slot 2 joins on port 0.
    w.set_template(0, 0, Some(template("10.1.0.9", 6000, None)));
    let t2 = template("10.1.0.3", 6100, None);
    let spec = OutputSpec {
        tx: 0,
        mtu: 9000,
        template: Some(t2.clone()),
    };
    assert_eq!(
        w.add_output(0, 1, spec.clone()),
        Err(WorkerError::SlotTaken { flow: 0, slot: 1 })
    );
    assert_eq!(
        w.add_output(
            0,
            2,
            OutputSpec {
                tx: 2,
                ..spec.clone()
            }
        ),
        Err(WorkerError::NoSuchPort {
            flow: 0,
            output: 2,
            tx: 2,
            ports: 2
        })
    );
    assert_eq!(
        w.add_output(7, 2, spec.clone()),
        Err(WorkerError::NoSuchFlow(7))
    );
    w.add_output(0, 2, spec).unwrap();
    for f in &frames[4..] {
        deliver(&mut w, f).unwrap();
    }
    w.poll();
    // Port 0 carries only the added output now, byte-exact, in order.
    let port0 = take_all(&mut w, 0);
    assert_eq!(port0.len(), 2);
    for (chain, frame) in port0.iter().zip(&frames[4..]) {
        check_chain(chain, 2);
        assert_eq!(chain_bytes(&w, chain), expected(&t2, frame));
        complete_chain(&mut w, 0, chain);
    }
    // The untouched output got all six, in order.
    settle(&mut w);
    let c = &w.flow_counters()[0];
    assert_eq!(c.received, 6);
    let o = &c.outputs;
    assert_eq!(o.len(), 3);
    assert_eq!((o[0].sent, o[0].joined_at, o[0].left_at), (4, 0, Some(4)));
    assert_eq!((o[1].sent, o[1].joined_at, o[1].left_at), (6, 0, None));
    assert_eq!((o[2].sent, o[2].joined_at, o[2].left_at), (2, 4, None));
    assert_eq!(o[2].sent_bytes, 2 * 900);
    assert!(o.iter().all(|o| o.dropped_total() == 0), "{o:?}");
    // Removing again and unknown slots change nothing.
    w.remove_output(0, 0);
    w.remove_output(0, 9);
    assert_eq!(w.flow_counters()[0].outputs[0].left_at, Some(4));
}

#[test]
fn flows_added_and_removed_between_polls_keep_every_count_and_frame() {
    let mut w = Setup::default().build();
    let radio: IpAddr = "239.1.2.4".parse().unwrap();
    let tv = |i: u8| frame_v4(&pattern(700, i));
    let on_radio = |i: u8| frame_from(SRC4.into(), radio, PORT, vec![], &pattern(300, i));
    // Before it is added, the radio datagram belongs to no flow.
    deliver(&mut w, &on_radio(0)).unwrap();
    deliver(&mut w, &tv(0)).unwrap();
    settle(&mut w);
    assert_eq!(w.counters().no_flow, 1);
    let t = template("10.1.0.7", 6300, None);
    let spec = FlowSpec {
        group: radio,
        port: PORT,
        vlan: None,
        outer_vlan: None,
        source: None,
        limiter: None,
        health: Default::default(),
        outputs: vec![OutputSpec {
            tx: 1,
            mtu: 9000,
            template: Some(t.clone()),
        }],
    };
    // Only as the next id, on ports that exist, claiming its own traffic.
    assert_eq!(
        w.add_flow(3, spec.clone()),
        Err(WorkerError::NotNextFlow { id: 3, next: 2 })
    );
    let no_port = FlowSpec {
        outputs: vec![OutputSpec {
            tx: 2,
            ..spec.outputs[0].clone()
        }],
        ..spec.clone()
    };
    assert!(matches!(
        w.add_flow(2, no_port),
        Err(WorkerError::NoSuchPort { tx: 2, .. })
    ));
    let twice = FlowSpec {
        group: GROUP4.into(),
        ..spec.clone()
    };
    assert!(matches!(
        w.add_flow(2, twice),
        Err(WorkerError::DuplicateFlow {
            flow: 2,
            other: 0,
            ..
        })
    ));
    assert_eq!(w.flow_counters().len(), 2, "a refused flow changes nothing");
    w.add_flow(2, spec.clone()).unwrap();
    for i in 1..4 {
        deliver(&mut w, &on_radio(i)).unwrap();
        deliver(&mut w, &tv(i)).unwrap();
    }
    w.poll();
    // Port 1: the tv multicast replicas and the radio ones, in order.
    let port1 = take_all(&mut w, 1);
    assert_eq!(port1.len(), 6);
    for (k, chain) in port1.iter().enumerate() {
        let i = 1 + (k / 2) as u8;
        let bytes = chain_bytes(&w, chain);
        if k % 2 == 0 {
            assert_eq!(bytes, expected(&t, &on_radio(i)), "radio {i}");
        } else {
            assert_eq!(
                bytes,
                expected(&template("239.9.9.9", 7000, Some(7)), &tv(i)),
                "tv {i}"
            );
        }
        complete_chain(&mut w, 1, chain);
    }
    settle(&mut w);
    // Removed with a datagram of it still in the RX ring: that one belongs
    // to no flow any more; the tv flow goes on untouched.
    deliver(&mut w, &on_radio(4)).unwrap();
    w.remove_flow(2);
    deliver(&mut w, &tv(4)).unwrap();
    settle(&mut w);
    let c = w.flow_counters();
    assert_eq!(c.len(), 3);
    assert_eq!(c[0].received, 5);
    assert!(
        c[0].outputs
            .iter()
            .all(|o| o.sent == 5 && o.left_at.is_none())
    );
    assert_eq!(c[2].received, 3);
    let o = &c[2].outputs[0];
    assert_eq!(
        (o.sent, o.sent_bytes, o.joined_at, o.left_at),
        (3, 900, 0, Some(3))
    );
    assert_eq!(w.counters().no_flow, 2);
    // Removing again is ignored; the next flow takes id 3, not 2.
    w.remove_flow(2);
    assert_eq!(
        w.add_flow(2, spec.clone()),
        Err(WorkerError::NotNextFlow { id: 2, next: 3 })
    );
    w.add_flow(3, spec).unwrap();
    deliver(&mut w, &on_radio(5)).unwrap();
    settle(&mut w);
    let c = w.flow_counters();
    assert_eq!((c[2].received, c[3].received), (3, 1));
    assert_eq!(c[3].outputs[0].sent, 1);
}

#[test]
fn a_port_added_between_polls_carries_an_output_added_on_it() {
    let mut w = Setup::default().build();
    let frames: Vec<Vec<u8>> = (0..4).map(|i| frame_v4(&pattern(900, i))).collect();
    deliver(&mut w, &frames[0]).unwrap();
    w.poll();
    // Port 2 does not exist yet: refused, nothing changes.
    let t = template("10.3.0.2", 6200, None);
    let spec = OutputSpec {
        tx: 2,
        mtu: 9000,
        template: Some(t.clone()),
    };
    assert_eq!(
        w.add_output(0, 2, spec.clone()),
        Err(WorkerError::NoSuchPort {
            flow: 0,
            output: 2,
            tx: 2,
            ports: 2
        })
    );
    // Added while a replica of the first datagram is still in port 0's ring.
    assert!(w.replicas_in_flight() > 0);
    assert_eq!(w.add_port(MemTx::new(256, 256)), 2);
    assert_eq!(w.tx().len(), 3);
    w.add_output(0, 2, spec).unwrap();
    for f in &frames[1..] {
        deliver(&mut w, f).unwrap();
    }
    w.poll();
    let port2 = take_all(&mut w, 2);
    assert_eq!(port2.len(), 3, "the datagrams received after the add");
    for (chain, frame) in port2.iter().zip(&frames[1..]) {
        check_chain(chain, 2);
        assert_eq!(chain_bytes(&w, chain), expected(&t, frame));
        complete_chain(&mut w, 2, chain);
    }
    settle(&mut w);
    let c = &w.flow_counters()[0];
    assert_eq!(c.received, 4);
    let o = &c.outputs;
    assert_eq!(o.len(), 3);
    assert_eq!((o[0].sent, o[1].sent), (4, 4), "untouched outputs");
    assert_eq!((o[2].sent, o[2].joined_at, o[2].left_at), (3, 1, None));
    assert_eq!(o[2].sent_bytes, 3 * 900);
    assert!(w.census().is_consistent());
}

#[test]
fn an_output_added_past_a_slot_never_seen_is_offered_nothing_there() {
    let mut w = Setup::default().build();
    deliver(&mut w, &frame_v4(&pattern(100, 1))).unwrap();
    w.poll();
    settle(&mut w);
    let spec = OutputSpec {
        tx: 1,
        mtu: 9000,
        template: Some(template("10.1.0.4", 6200, None)),
    };
    // Slot 2 was another worker's (or lost): slot 3 joins.
    w.add_output(0, 3, spec).unwrap();
    deliver(&mut w, &frame_v4(&pattern(100, 2))).unwrap();
    w.poll();
    settle(&mut w);
    let o = &w.flow_counters()[0].outputs;
    assert_eq!(o.len(), 4);
    assert_eq!((o[2].offered(2), o[2].sent), (0, 0));
    assert_eq!((o[3].offered(2), o[3].sent), (1, 1));
}

#[test]
fn replicates_byte_exact_with_payload_by_reference() {
    let mut w = Setup::default().build();
    let f = &flows();
    let payload = pattern(1000, 1);
    let frame = frame_v4(&payload);
    let dg = wire::parse(&frame).unwrap();
    assert_eq!(deliver(&mut w, &frame), Ok(1));
    assert_eq!(w.poll().received, 1);

    let mut rx_frame = None;
    for (o, out) in f[0].outputs.iter().enumerate() {
        let chains = take_all(&mut w, out.tx);
        let [chain] = &chains[..] else {
            panic!("{chains:?}")
        };
        check_chain(chain, 2);
        assert_eq!(chain.len(), 2);
        // The payload descriptor points into the received frame.
        assert_eq!(
            chain[1].addr % u64::from(FS),
            HEADROOM + dg.payload_offset as u64
        );
        assert_eq!(chain[1].len, 1000);
        assert!(rx_frame.is_none_or(|a| a == chain[1].addr));
        rx_frame = Some(chain[1].addr);
        let t = out.template.as_ref().unwrap();
        let bytes = chain_bytes(&w, chain);
        assert_eq!(bytes, expected(t, &frame));
        check_replica(&bytes, t, &payload);
        assert_eq!(u64::from(chain[0].len), t.header_len() as u64);
        let oc = &w.flow_counters()[0].outputs[o];
        // UDP payload bytes, as in every engine's stats.
        assert_eq!((oc.sent, oc.sent_bytes), (1, 1000));
        assert_eq!(oc.dropped_total(), 0);
    }
    let fc = &w.flow_counters()[0];
    assert_eq!(
        (fc.received, fc.received_bytes, fc.source_rejected),
        (1, 1000, 0)
    );
    assert_eq!(w.tx()[0].flushes(), 1);
    assert_eq!(w.tx()[1].flushes(), 1);

    // IPv6, one output.
    let payload6 = pattern(333, 9);
    let frame6 = frame_from(src6(), group6(), PORT, vec![], &payload6);
    deliver(&mut w, &frame6).unwrap();
    w.poll();
    assert!(take_all(&mut w, 0).is_empty());
    let chains = take_all(&mut w, 1);
    let [chain] = &chains[..] else {
        panic!("{chains:?}")
    };
    check_chain(chain, 2);
    let t = f[1].outputs[0].template.as_ref().unwrap();
    let bytes = chain_bytes(&w, chain);
    assert_eq!(bytes, expected(t, &frame6));
    check_replica(&bytes, t, &payload6);
    assert_eq!(w.flow_counters()[1].received_bytes, 333);
    assert_eq!(
        *w.counters(),
        FrameCounters {
            rx_packets: 2,
            ..Default::default()
        }
    );
    assert_balanced(&w);
}

#[test]
fn tiny_payloads_are_copied_behind_the_headers_and_free_their_frame_at_once() {
    // Whatever fits in a 128-byte slot: flow 0's longest header is 46 bytes
    // (IPv4 with a VLAN tag), so up to 82 payload bytes; flow 1's is 62
    // (IPv6), so up to 66.
    let mut w = Setup {
        inline_max: MAX_INLINE,
        ..Setup::default()
    }
    .build();
    let f = &flows();
    let mut want_bytes = [0u64; 2];
    for (k, (len, seed)) in [(1usize, 3u8), (40, 4), (82, 5)].into_iter().enumerate() {
        let payload = pattern(len, seed);
        let frame = frame_v4(&payload);
        let fill_before = w.rx().fill_len();
        assert_eq!(deliver(&mut w, &frame), Ok(1));
        assert_eq!(w.poll().received, 1);
        // No replica points into the received frame: it went back to the
        // fill ring in the same poll.
        assert_eq!(w.rx().fill_len(), fill_before, "payload {len}");
        assert_eq!(w.census().referenced, 0);
        assert_eq!(w.census().slots_in_flight, 2);
        for (o, out) in f[0].outputs.iter().enumerate() {
            let chains = take_all(&mut w, out.tx);
            let [chain] = &chains[..] else {
                panic!("{chains:?}")
            };
            let [one] = &chain[..] else {
                panic!("payload {len}: a chain of {chain:?}")
            };
            check_chain(chain, 2);
            let t = out.template.as_ref().unwrap();
            assert_eq!(one.len as usize, t.header_len() + len);
            let bytes = chain_bytes(&w, chain);
            assert_eq!(bytes, expected(t, &frame), "payload {len} output {o}");
            check_replica(&bytes, t, &payload);
            want_bytes[o] += len as u64;
            let oc = &w.flow_counters()[0].outputs[o];
            assert_eq!((oc.sent, oc.sent_bytes), (k as u64 + 1, want_bytes[o]));
            complete_chain(&mut w, out.tx, chain);
        }
        w.poll();
        assert!(w.census().is_idle(), "{:?}", w.census());
    }
    let mut in_flight = vec![];
    // One byte over what fits behind the VLAN output's header: the usual
    // chain, by reference, for both outputs.
    deliver(&mut w, &frame_v4(&pattern(83, 6))).unwrap();
    w.poll();
    for p in 0..2 {
        let chains = take_all(&mut w, p);
        assert_eq!(chains[0].len(), 2, "{chains:?}");
        assert_eq!(chains[0][1].len, 83);
        in_flight.extend(chains.into_iter().map(|c| (p, c)));
    }
    assert_eq!(w.census().referenced, 1);
    // IPv6 (62-byte headers): 66 bytes inline, 67 by reference.
    for (len, descs) in [(66usize, 1usize), (67, 2)] {
        let payload6 = pattern(len, 8);
        let frame6 = frame_from(src6(), group6(), PORT, vec![], &payload6);
        deliver(&mut w, &frame6).unwrap();
        w.poll();
        let chains = take_all(&mut w, 1);
        let [chain] = &chains[..] else {
            panic!("{chains:?}")
        };
        assert_eq!(chain.len(), descs, "{chain:?}");
        let t = f[1].outputs[0].template.as_ref().unwrap();
        assert_eq!(chain_bytes(&w, chain), expected(t, &frame6));
        in_flight.push((1, chain.clone()));
    }
    // Without the VLAN output (next hop unresolved), flow 0's longest
    // header is 42 bytes: 86 payload bytes fit.
    w.set_template(0, 1, None);
    let payload = pattern(86, 9);
    let frame = frame_v4(&payload);
    deliver(&mut w, &frame).unwrap();
    w.poll();
    let chains = take_all(&mut w, 0);
    let [chain] = &chains[..] else {
        panic!("{chains:?}")
    };
    assert_eq!(chain.len(), 1, "{chain:?}");
    let t = f[0].outputs[0].template.as_ref().unwrap();
    assert_eq!(chain_bytes(&w, chain), expected(t, &frame));
    assert!(take_all(&mut w, 1).is_empty());
    assert_eq!(dropped(&w, 0, 1, DropReason::NextHopUnresolved), 1);
    in_flight.push((0, chain.clone()));

    for (p, chain) in &in_flight {
        complete_chain(&mut w, *p, chain);
    }
    settle(&mut w);
    assert_eq!(w.counters().bad_completion, 0);
}

#[test]
fn frame_returns_to_fill_after_its_last_replica_only() {
    let mut w = Setup::default().build();
    let frame = frame_v4(&pattern(100, 2));
    deliver(&mut w, &frame).unwrap();
    w.poll();
    let c0 = take_all(&mut w, 0).remove(0);
    let c1 = take_all(&mut w, 1).remove(0);
    let addr = c0[1].addr;
    assert_eq!(w.frame_refs(addr), 2);
    assert!(!w.rx().holds(addr));
    let idle = w.census();
    assert!(idle.is_consistent(), "{idle:?}");
    assert_eq!((idle.referenced, idle.slots_in_flight), (1, 2));

    // Second output first (out of order), the payload before the header.
    complete(&mut w, 1, &[c1[1].addr]);
    w.poll();
    assert_eq!(w.frame_refs(addr), 1);
    assert!(!w.rx().holds(addr));
    assert_eq!(w.census().slots_in_flight, 2);
    complete(&mut w, 1, &[c1[0].addr]);
    w.poll();
    assert_eq!(w.census().slots_in_flight, 1);
    assert!(!w.rx().holds(addr));
    complete_chain(&mut w, 0, &c0);
    let fill_before = w.rx().fill_len();
    w.poll();
    assert_eq!(w.frame_refs(addr), 0);
    assert!(w.rx().holds(addr));
    assert_eq!(w.rx().fill_len(), fill_before + 1);
    assert!(w.census().is_idle());
    assert_eq!(w.counters().bad_completion, 0);
}

#[test]
fn jumbo_multi_buffer_chains_and_out_of_order_completions() {
    let mut w = Setup::default().build();
    let payload = pattern(8972, 3);
    let frame = frame_v4(&payload);
    assert_eq!(frame.len(), 9014);
    // The kernel's split: 3840 + 3840 + the rest.
    assert_eq!(deliver(&mut w, &frame), Ok(3));
    // An odd split: the first buffer holds the headers and 10 payload bytes.
    assert_eq!(
        deliver_split(&mut w, &frame, &[52, 3840, 3840, 1282]),
        Ok(4)
    );
    assert_eq!(w.poll().received, 2);

    let f = flows();
    let mut chains = Vec::new();
    for (o, out) in f[0].outputs.iter().enumerate() {
        let taken = take_all(&mut w, out.tx);
        assert_eq!(taken.len(), 2);
        let t = out.template.as_ref().unwrap();
        for chain in &taken {
            check_chain(chain, 2);
            let bytes = chain_bytes(&w, chain);
            assert_eq!(bytes, expected(t, &frame));
            check_replica(&bytes, t, &payload);
        }
        let lens: Vec<Vec<u32>> = taken
            .iter()
            .map(|c| c.iter().skip(1).map(|d| d.len).collect())
            .collect();
        assert_eq!(
            lens,
            [vec![3840 - 42, 3840, 1334], vec![10, 3840, 3840, 1282]]
        );
        assert_eq!(sent(&w, 0, o), 2);
        chains.push(taken);
    }
    // Every payload frame is referenced once per output.
    let frames: Vec<u64> = chains[0]
        .iter()
        .flat_map(|c| c[1..].iter().map(|d| d.addr))
        .collect();
    assert_eq!(frames.len(), 7);
    for &a in &frames {
        assert_eq!(w.frame_refs(a), 2, "{a:#x}");
    }
    // Output 1's chains complete in reverse, descriptor by descriptor.
    for chain in chains[1].iter().rev() {
        for d in chain.iter().rev() {
            complete(&mut w, 1, &[d.addr]);
            w.poll();
        }
    }
    for &a in &frames {
        assert_eq!(w.frame_refs(a), 1);
        assert!(!w.rx().holds(a));
    }
    // Output 0's: one frame at a time; each goes back exactly when its
    // last reference completes, and the others stay out.
    let mut order: Vec<Desc> = chains[0].iter().flatten().copied().collect();
    order.reverse();
    order.swap(1, 5);
    let mut returned = BTreeSet::new();
    for d in order {
        complete(&mut w, 0, &[d.addr]);
        w.poll();
        if d.addr >= u64::from(2 * FS) {
            returned.insert(d.addr);
        }
        for &a in &frames {
            assert_eq!(w.rx().holds(a), returned.contains(&a), "{a:#x}");
            assert_eq!(w.frame_refs(a), u32::from(!returned.contains(&a)));
        }
    }
    assert!(w.census().is_idle());
    assert_balanced(&w);
}

#[test]
fn ethernet_padding_and_empty_payloads_are_not_sent() {
    let mut w = Setup::default().build();
    let mut short = frame_v4(b"abcd");
    assert_eq!(short.len(), 46);
    short.resize(60, 0xee); // minimum Ethernet frame
    let empty = frame_v4(b"");
    deliver(&mut w, &short).unwrap();
    deliver(&mut w, &empty).unwrap();
    w.poll();
    let t = flows()[0].outputs[0].template.clone().unwrap();
    let chains = take_all(&mut w, 0);
    assert_eq!(chains.len(), 2);
    assert_eq!(chains[0].len(), 2);
    assert_eq!(chains[0][1].len, 4);
    let bytes = chain_bytes(&w, &chains[0]);
    check_replica(&bytes, &t, b"abcd");
    assert_eq!(chains[1].len(), 1, "an empty payload is the header alone");
    assert_eq!(chains[1][0].options, 0);
    check_replica(&chain_bytes(&w, &chains[1]), &t, b"");
    // The empty datagram's frame was not referenced by its replicas.
    assert_eq!(w.census().referenced, 1);
    for c in &chains {
        complete_chain(&mut w, 0, c);
    }
    settle(&mut w);
}

/// A sender's unfinished checksum (CHECKSUM_PARTIAL, what a local socket
/// over veth delivers) is completed once per datagram: every replica of
/// every size, family and split (odd-length first buffers included, by
/// reference and inline) leaves with a valid checksum, and the flow counts
/// each completion. Complete checksums are left alone and not counted.
#[test]
fn partial_checksums_are_completed_once_for_all_replicas() {
    for inline_max in [0, 86] {
        let mut w = Setup {
            inline_max,
            frames: 256,
            fill_cap: 256,
            rx_cap: 256,
            ..Setup::default()
        }
        .build();
        let f = flows();
        let mut want: Vec<Vec<Vec<u8>>> = vec![Vec::new(); 2]; // per port
        let mut partial = [0u64; 2];
        let cases: [(usize, IpAddr, IpAddr, usize); 8] = [
            (0, SRC4.into(), GROUP4.into(), 1),
            (0, SRC4.into(), GROUP4.into(), 64),
            (0, SRC4.into(), GROUP4.into(), 1472),
            (0, SRC4.into(), GROUP4.into(), 8972),
            (1, src6(), group6(), 1),
            (1, src6(), group6(), 64),
            (1, src6(), group6(), 1452),
            (1, src6(), group6(), 8952),
        ];
        for (i, &(flow, src, dst, size)) in cases.iter().enumerate() {
            let payload = pattern(size, i as u8);
            let mut frame = frame_from(src, dst, PORT, vec![], &payload);
            let complete = frame.clone();
            make_partial(&mut frame);
            assert_ne!(frame, complete, "case {i}");
            // The kernel's split, and an odd one: an odd-length first
            // buffer (one payload byte, or 11), then the rest in odd pieces.
            let head = frame.len() - payload.len();
            let odd = head + size.min(11) - usize::from(size > 1 && size < 11);
            let mut lens = vec![odd];
            let mut rest = frame.len() - odd;
            while rest > 0 {
                lens.push(rest.min(3001));
                rest -= rest.min(3001);
            }
            for split in [None, Some(lens)] {
                match &split {
                    None => deliver(&mut w, &frame).unwrap(),
                    Some(lens) => deliver_split(&mut w, &frame, lens).unwrap(),
                };
                partial[flow] += 1;
                for out in &f[flow].outputs {
                    let t = out.template.as_ref().unwrap();
                    want[out.tx].push(expected(t, &complete));
                }
            }
            // One datagram with a complete checksum: not counted.
            deliver(&mut w, &complete).unwrap();
            for out in &f[flow].outputs {
                want[out.tx].push(expected(out.template.as_ref().unwrap(), &complete));
            }
            w.poll();
        }
        for (port, want) in want.iter().enumerate() {
            let got: Vec<Vec<u8>> = take_all(&mut w, port)
                .iter()
                .map(|c| chain_bytes(&w, c))
                .collect();
            assert_eq!(got.len(), want.len(), "port {port}");
            for (k, (got, want)) in got.iter().zip(want).enumerate() {
                assert_eq!(got, want, "inline {inline_max} port {port} replica {k}");
                let d = wire::parse(got).unwrap();
                let udp = &got[d.payload_offset - 8..];
                assert_eq!(d.udp_checksum, ref_udp_checksum(&d.addrs, udp));
            }
        }
        for (flow, n) in partial.iter().enumerate() {
            let fc = &w.flow_counters()[flow];
            assert_eq!(fc.checksum_completed, *n, "inline {inline_max} flow {flow}");
            assert_eq!(fc.received, n + 4, "inline {inline_max} flow {flow}");
        }
        assert_balanced(&w);
    }
}

#[test]
fn header_slots_are_recycled_and_never_reused_in_flight() {
    let mut w = Setup {
        slot_frames: 1, // 32 slots of 128 bytes
        ..Setup::default()
    }
    .build();
    assert_eq!(w.census().slots, 32);
    for i in 0..17 {
        deliver(&mut w, &frame_v4(&pattern(64, i))).unwrap();
    }
    w.poll();
    let c0 = take_all(&mut w, 0);
    let c1 = take_all(&mut w, 1);
    assert_eq!((c0.len(), c1.len()), (16, 16));
    let slots: BTreeSet<u64> = c0.iter().chain(&c1).map(|c| c[0].addr).collect();
    assert_eq!(slots.len(), 32, "every slot once");
    assert!(slots.iter().all(|a| a % 128 == 0 && *a < u64::from(FS)));
    for o in 0..2 {
        assert_eq!(sent(&w, 0, o), 16);
        assert_eq!(dropped(&w, 0, o, DropReason::NoSlot), 1);
    }
    assert_eq!(w.census().slots_in_flight, 32);

    // Output 0's slots come back; output 1's stay in flight.
    for c in &c0 {
        complete_chain(&mut w, 0, c);
    }
    w.poll();
    assert_eq!(w.census().slots_in_flight, 16);
    let busy: BTreeSet<u64> = c1.iter().map(|c| c[0].addr).collect();
    for i in 0..8 {
        deliver(&mut w, &frame_v4(&pattern(64, 100 + i))).unwrap();
    }
    w.poll();
    let n0 = take_all(&mut w, 0);
    let n1 = take_all(&mut w, 1);
    let reused: Vec<u64> = n0.iter().chain(&n1).map(|c| c[0].addr).collect();
    assert_eq!(reused.len(), 16);
    assert!(reused.iter().all(|a| !busy.contains(a)), "{reused:?}");
    // And the in-flight headers were not overwritten.
    let t1 = flows()[0].outputs[1].template.clone().unwrap();
    for (i, c) in c1.iter().enumerate() {
        assert_eq!(
            chain_bytes(&w, c),
            expected(&t1, &frame_v4(&pattern(64, i as u8)))
        );
    }
    for c in n0 {
        complete_chain(&mut w, 0, &c);
    }
    for c in n1.iter().chain(&c1) {
        complete_chain(&mut w, 1, c);
    }
    settle(&mut w);
    assert_eq!(w.census().slots_in_flight, 0);
}

#[test]
fn batch_sizes_bound_each_poll() {
    for batch in [1usize, 16, 64] {
        let mut w = Setup {
            frames: 8 + 256,
            slot_frames: 8, // 256 slots: two batches of 64 for two outputs
            batch,
            fill_cap: 256,
            rx_cap: 256,
            ..Setup::default()
        }
        .build();
        for p in 0..2 {
            w.parts_mut().2[p].set_auto_complete(true);
        }
        for i in 0..100u8 {
            deliver(&mut w, &frame_v4(&pattern(200, i))).unwrap();
        }
        let mut left = 100;
        let mut polls = 0;
        while left > 0 {
            let r = w.poll();
            assert_eq!(r.received, left.min(batch), "batch {batch}");
            left -= r.received;
            polls += 1;
            assert_eq!(w.tx()[0].flushes(), polls, "one flush per poll");
            assert_eq!(w.tx()[1].flushes(), polls, "one flush per poll");
        }
        assert_eq!(polls, 100usize.div_ceil(batch) as u64);
        let fc = &w.flow_counters()[0];
        assert_eq!(fc.received, 100);
        assert_eq!((sent(&w, 0, 0), sent(&w, 0, 1)), (100, 100));
        // Chains leave in arrival order.
        let chains = take_all(&mut w, 0);
        // auto-complete: the chains went straight to completion.
        assert!(chains.is_empty());
        w.poll();
        w.poll();
        assert!(w.census().is_idle(), "{:?}", w.census());
        assert_balanced(&w);
    }
}

#[test]
fn batch_of_one_still_takes_a_whole_jumbo_chain() {
    let mut w = Setup {
        batch: 1,
        ..Setup::default()
    }
    .build();
    let frame = frame_v4(&pattern(8972, 5));
    deliver(&mut w, &frame).unwrap();
    deliver(&mut w, &frame).unwrap();
    // The 3-descriptor chain does not fit a batch of one descriptor: the
    // poll takes whole packets, up to MAX_RX_CHAIN descriptors.
    assert_eq!(w.poll().received, 2);
    assert_eq!(w.poll().received, 0);
    assert_eq!(w.flow_counters()[0].received, 2);
    assert_eq!(w.counters().bad_rx_desc, 0);
    assert_eq!((sent(&w, 0, 0), sent(&w, 0, 1)), (2, 2));
    settle(&mut w);
}

#[test]
fn more_packets_than_the_rx_ring_holds() {
    let mut w = Setup {
        rx_cap: 32,
        batch: 16,
        ..Setup::default()
    }
    .build();
    let mut refused = 0;
    for i in 0..40u8 {
        match deliver(&mut w, &frame_v4(&pattern(100, i))) {
            Ok(1) => {}
            Err(Refused::RxFull) => refused += 1,
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(refused, 8);
    assert_eq!(w.poll().received, 16);
    assert_eq!(w.poll().received, 16);
    assert_eq!(w.poll().received, 0);
    assert_eq!(w.flow_counters()[0].received, 32);
    settle(&mut w);
}

#[test]
fn full_tx_ring_costs_only_its_own_replicas() {
    let mut w = Setup {
        ports: vec![(256, 256), (4, 256)], // port 1 takes two 2-descriptor chains
        ..Setup::default()
    }
    .build();
    for i in 0..10 {
        deliver(&mut w, &frame_v4(&pattern(300, i))).unwrap();
    }
    assert_eq!(w.poll().received, 10);
    assert_eq!(sent(&w, 0, 0), 10);
    assert_eq!(sent(&w, 0, 1), 2);
    assert_eq!(dropped(&w, 0, 1, DropReason::RingFull), 8);
    assert_eq!(dropped(&w, 0, 0, DropReason::RingFull), 0);
    assert_balanced(&w);
    let c0 = take_all(&mut w, 0);
    let c1 = take_all(&mut w, 1);
    assert_eq!((c0.len(), c1.len()), (10, 2));
    // Refused replicas released their slots and references at once.
    assert_eq!(w.census().slots_in_flight, 12);
    for (i, c) in c0.iter().enumerate() {
        assert_eq!(w.frame_refs(c[1].addr), if i < 2 { 2 } else { 1 });
    }
    let t = flows()[0].outputs[0].template.clone().unwrap();
    for (i, c) in c0.iter().enumerate() {
        assert_eq!(
            chain_bytes(&w, c),
            expected(&t, &frame_v4(&pattern(300, i as u8)))
        );
    }
    for c in &c0 {
        complete_chain(&mut w, 0, c);
    }
    for c in &c1 {
        complete_chain(&mut w, 1, c);
    }
    settle(&mut w);

    // A port that refuses everything: only its output drops.
    w.parts_mut().2[0].set_refuse(true);
    deliver(&mut w, &frame_v4(b"x")).unwrap();
    w.poll();
    assert_eq!(dropped(&w, 0, 0, DropReason::RingFull), 1);
    assert_eq!(sent(&w, 0, 1), 3);
    assert_eq!(w.tx()[1].tx_len() + w.tx()[1].wire_len(), 2);
    w.parts_mut().2[0].set_refuse(false);
    settle(&mut w);
}

#[test]
fn tx_rings_are_kicked_until_drained_without_new_traffic() {
    // Copy mode sends 32 descriptors per kick: what is left goes out on
    // the following polls, with no new datagram to trigger them.
    let mut w = Setup {
        slot_frames: 4,
        ..Setup::default()
    }
    .build();
    for p in 0..2 {
        w.parts_mut().2[p].set_flush_budget(Some(32));
    }
    for i in 0..40 {
        deliver(&mut w, &frame_v4(&pattern(100, i))).unwrap();
    }
    assert_eq!(w.poll().received, 40);
    assert_eq!(w.replicas_in_flight(), 80);
    assert_eq!((w.tx()[0].wire_len(), w.tx()[0].tx_len()), (32, 48));
    w.poll();
    assert_eq!((w.tx()[0].wire_len(), w.tx()[0].tx_len()), (64, 16));
    w.poll();
    assert_eq!((w.tx()[0].wire_len(), w.tx()[0].tx_len()), (80, 0));
    for p in 0..2 {
        let chains = take_all(&mut w, p);
        assert_eq!(chains.len(), 40);
        for c in &chains {
            complete_chain(&mut w, p, c);
        }
    }
    assert_eq!(w.replicas_in_flight(), 80, "completions not reaped yet");
    w.poll();
    assert_eq!(w.replicas_in_flight(), 0);
    assert_eq!((sent(&w, 0, 0), sent(&w, 0, 1)), (40, 40));
    settle(&mut w);
}

#[test]
fn full_fill_ring_keeps_frames_queued_and_cycles() {
    let mut w = Setup {
        fill_cap: 8,
        ..Setup::default()
    }
    .build();
    for p in 0..2 {
        w.parts_mut().2[p].set_auto_complete(true);
    }
    let c = w.census();
    assert_eq!((c.in_kernel, c.to_fill, c.rx_frames), (8, 54, 62));
    assert!(w.counters().fill_short >= 1);
    let mut delivered = 0;
    for round in 0..30u8 {
        while deliver(&mut w, &frame_v4(&pattern(80, round))).is_ok() {
            delivered += 1;
        }
        w.poll();
        let c = w.census();
        assert!(c.is_consistent(), "{c:?}");
        assert_balanced(&w);
    }
    assert!(delivered >= 8 * 29, "{delivered}");
    w.poll();
    assert_eq!(w.flow_counters()[0].received, delivered);
    assert!(w.census().is_idle());
    assert_eq!(w.rx().fill_len(), 8);
}

#[test]
fn umem_exhaustion_stalls_receive_and_recovers() {
    let mut w = Setup {
        frames: 2 + 4,
        ..Setup::default()
    }
    .build();
    for i in 0..4 {
        deliver(&mut w, &frame_v4(&pattern(10, i))).unwrap();
    }
    assert_eq!(deliver(&mut w, &frame_v4(b"late")), Err(Refused::FillEmpty));
    assert_eq!(w.poll().received, 4);
    // Every frame is referenced by replicas in flight: nothing to fill.
    assert_eq!(w.rx().fill_len(), 0);
    assert_eq!(w.census().referenced, 4);
    assert_eq!(deliver(&mut w, &frame_v4(b"late")), Err(Refused::FillEmpty));
    w.poll();
    let c0 = take_all(&mut w, 0);
    let c1 = take_all(&mut w, 1);
    for c in &c0 {
        complete_chain(&mut w, 0, c);
    }
    w.poll();
    assert_eq!(w.rx().fill_len(), 0, "output 1 still holds every frame");
    for c in &c1 {
        complete_chain(&mut w, 1, c);
    }
    w.poll();
    assert_eq!(w.rx().fill_len(), 4);
    deliver(&mut w, &frame_v4(b"again")).unwrap();
    w.poll();
    assert_eq!(w.flow_counters()[0].received, 5);
    settle(&mut w);
    assert_eq!(w.rx().dropped(), 2);
}

#[test]
fn malformed_frames_are_counted_and_recycled_at_once() {
    let mut w = Setup::default().build();
    let good = frame_v4(&pattern(100, 0));
    let mut bad_checksum = good.clone();
    bad_checksum[14 + 10] ^= 0xff;
    let mut not_udp = frame_v4(b"abc");
    not_udp[14 + 9] = 6; // TCP, checksum now wrong too: either way malformed
    let truncated = good[..good.len() - 20].to_vec();
    let garbage = pattern(60, 77);
    let cases: [&[u8]; 5] = [&bad_checksum, &not_udp, &truncated, &garbage, &[0u8; 1]];
    let full = w.rx().fill_len();
    for (i, case) in cases.iter().enumerate() {
        deliver(&mut w, case).unwrap();
        assert_eq!(w.rx().fill_len(), full - 1);
        w.poll();
        assert_eq!(w.counters().malformed, i as u64 + 1);
        assert_eq!(
            w.rx().fill_len(),
            full,
            "case {i}: frame back on the fill ring"
        );
        assert!(w.census().is_idle());
    }
    // Headers split across two buffers: malformed (the head must hold them).
    deliver_split(&mut w, &good, &[30, good.len() - 30]).unwrap();
    w.poll();
    assert_eq!(w.counters().malformed, 6);
    assert_eq!(w.rx().fill_len(), full);
    assert_eq!(w.flow_counters()[0].received, 0);
    assert!(take_all(&mut w, 0).is_empty() && take_all(&mut w, 1).is_empty());
    assert_eq!(w.counters().rx_packets, 6);
    assert_balanced(&w);
}

#[test]
fn flow_matching_by_group_port_vlan_and_source() {
    let only = |group: IpAddr, vlan: Option<u16>, source: Option<IpAddr>| FlowSpec {
        group,
        port: PORT,
        vlan,
        outer_vlan: None,
        source,
        limiter: None,
        health: Default::default(),
        outputs: vec![OutputSpec {
            tx: 0,
            mtu: 9000,
            template: Some(template("10.1.0.2", 6000, None)),
        }],
    };
    let g2: IpAddr = "239.1.2.4".parse().unwrap();
    let mut w = Setup {
        flows: vec![
            only(GROUP4.into(), None, Some(SRC4.into())),
            only(GROUP4.into(), Some(42), None),
            FlowSpec {
                outer_vlan: Some(100),
                ..only(g2, Some(4094), None)
            },
        ],
        ..Setup::default()
    }
    .build();
    let other_src: IpAddr = "10.0.0.99".parse().unwrap();
    let cases = [
        // (frame, flow expected to receive, source-rejected by, no_flow)
        (frame_v4(b"a"), Some(0)),
        (
            frame_from(other_src, GROUP4.into(), PORT, vec![], b"b"),
            None,
        ),
        (
            frame_from(SRC4.into(), GROUP4.into(), PORT + 1, vec![], b"c"),
            None,
        ),
        (
            frame_from(
                other_src,
                GROUP4.into(),
                PORT,
                vec![(ethertype::VLAN, 42)],
                b"d",
            ),
            Some(1),
        ),
        (
            frame_from(
                SRC4.into(),
                GROUP4.into(),
                PORT,
                vec![(ethertype::VLAN, 43)],
                b"e",
            ),
            None,
        ),
        // Double-tagged: both tags count (S-VLAN 100 / C-VLAN 4094, not
        // plain 4094 nor another outer tag).
        (
            frame_from(
                SRC4.into(),
                g2,
                PORT,
                vec![(ethertype::QINQ, 100), (ethertype::VLAN, 4094)],
                b"f",
            ),
            Some(2),
        ),
        (
            frame_from(
                SRC4.into(),
                g2,
                PORT,
                vec![(ethertype::QINQ, 101), (ethertype::VLAN, 4094)],
                b"i",
            ),
            None,
        ),
        (
            frame_from(SRC4.into(), g2, PORT, vec![(ethertype::VLAN, 4094)], b"j"),
            None,
        ),
        (
            frame_from(SRC4.into(), g2, PORT, vec![(ethertype::VLAN, 100)], b"g"),
            None,
        ),
        (frame_from(SRC4.into(), g2, PORT, vec![], b"h"), None),
    ];
    for (frame, _) in &cases {
        deliver(&mut w, frame).unwrap();
    }
    w.poll();
    let received: Vec<u64> = w.flow_counters().iter().map(|f| f.received).collect();
    assert_eq!(received, [1, 1, 1]);
    assert_eq!(w.flow_counters()[0].source_rejected, 1);
    assert_eq!(w.counters().no_flow, 6);
    let chains = take_all(&mut w, 0);
    let payloads: Vec<Vec<u8>> = chains.iter().map(|c| chain_bytes(&w, &c[1..])).collect();
    assert_eq!(payloads, [b"a".to_vec(), b"d".to_vec(), b"f".to_vec()]);
    for c in &chains {
        complete_chain(&mut w, 0, c);
    }
    settle(&mut w);
}

/// IPTV SSM channels on one group and port, told apart by source: each
/// source's datagrams reach its own flow's outputs only, a third source is
/// rejected (counted on the stream's first channel), and the same group
/// on a VLAN is another stream.
#[test]
fn ssm_channels_sharing_a_group_are_told_apart_by_source() {
    let s2: IpAddr = "10.0.0.2".parse().unwrap();
    let channel = |source: IpAddr, tx: usize, vlan: Option<u16>| FlowSpec {
        group: GROUP4.into(),
        port: PORT,
        vlan,
        outer_vlan: None,
        source: Some(source),
        limiter: None,
        health: Default::default(),
        outputs: vec![OutputSpec {
            tx,
            mtu: 9000,
            template: Some(template("10.1.0.2", 6000 + tx as u16, None)),
        }],
    };
    let mut w = Setup {
        flows: vec![
            channel(SRC4.into(), 0, None),
            channel(s2, 1, None),
            channel(s2, 0, Some(7)),
        ],
        ..Setup::default()
    }
    .build();
    let third: IpAddr = "10.0.0.3".parse().unwrap();
    for (src, vlan, body) in [
        (IpAddr::from(SRC4), vec![], b"a1"),
        (s2, vec![], b"b1"),
        (third, vec![], b"x1"),
        (s2, vec![], b"b2"),
        (IpAddr::from(SRC4), vec![], b"a2"),
        (s2, vec![(ethertype::VLAN, 7)], b"c1"),
        (IpAddr::from(SRC4), vec![(ethertype::VLAN, 7)], b"x2"),
    ] {
        deliver(&mut w, &frame_from(src, GROUP4.into(), PORT, vlan, body)).unwrap();
    }
    w.poll();
    let fc = w.flow_counters();
    let got: Vec<(u64, u64)> = fc.iter().map(|f| (f.received, f.source_rejected)).collect();
    assert_eq!(got, [(2, 1), (2, 0), (1, 1)]);
    assert_eq!(w.counters().no_flow, 0);
    let on = |w: &mut W, port| -> Vec<Vec<u8>> {
        let chains = take_all(w, port);
        let p = chains.iter().map(|c| chain_bytes(w, &c[1..])).collect();
        for c in &chains {
            complete_chain(w, port, c);
        }
        p
    };
    assert_eq!(
        on(&mut w, 0),
        [b"a1".to_vec(), b"a2".to_vec(), b"c1".to_vec()]
    );
    assert_eq!(on(&mut w, 1), [b"b1".to_vec(), b"b2".to_vec()]);
    settle(&mut w);
}

/// A replica longer than its egress MTU is counted `message_too_big` on
/// that output only, never handed to the kernel (which would drop it
/// unseen): IPv4 at MTU 1500 takes 1472 payload bytes, not 1473; a VLAN
/// output's tag does not count against the MTU.
#[test]
fn replicas_over_the_egress_mtu_are_counted_not_sent() {
    let out = |tx, mtu, vlan| OutputSpec {
        tx,
        mtu,
        template: Some(template("10.1.0.2", 6000, vlan)),
    };
    let mut w = Setup {
        flows: vec![FlowSpec {
            group: GROUP4.into(),
            port: PORT,
            vlan: None,
            outer_vlan: None,
            source: None,
            limiter: None,
            health: Default::default(),
            outputs: vec![
                out(0, 1500, None),
                out(1, 9000, None),
                out(1, 1500, Some(7)),
            ],
        }],
        frames: 128,
        fill_cap: 128,
        rx_cap: 128,
        ..Setup::default()
    }
    .build();
    for len in [1472usize, 1473, 8972] {
        let body: Vec<u8> = (0..len).map(|i| i as u8).collect();
        deliver(
            &mut w,
            &frame_from(SRC4.into(), GROUP4.into(), PORT, vec![], &body),
        )
        .unwrap();
    }
    w.poll();
    let fc = &w.flow_counters()[0];
    assert_eq!(fc.received, 3);
    let by_output: Vec<(u64, u64)> = fc
        .outputs
        .iter()
        .map(|o| (o.sent, o.dropped[DropReason::MessageTooBig as usize]))
        .collect();
    assert_eq!(by_output, [(1, 2), (3, 0), (1, 2)]);
    assert_eq!(take_all(&mut w, 0).len(), 1);
    assert_eq!(take_all(&mut w, 1).len(), 4);
}

thread_local! {
    /// The time the rate caps read in [`rate_clock`]: the test moves it.
    static NOW: std::cell::Cell<Option<std::time::Instant>> = const { std::cell::Cell::new(None) };
}

fn rate_clock() -> std::time::Instant {
    NOW.with(|n| n.get()).expect("the test sets NOW")
}

/// Two rx queues' workers share a flow's cap: what one admits, the other
/// cannot; a datagram over it is counted `rate_limited` and has no replica.
#[test]
fn a_rate_cap_is_shared_by_the_queues_and_counted_exactly() {
    use crate::rate::{RateCap, shared};
    use std::time::Duration;
    let t0 = std::time::Instant::now();
    NOW.with(|n| n.set(Some(t0)));
    // 100 datagrams/s: a burst of 10, then one every 10 ms.
    let limiter = shared(RateCap {
        max_pps: Some(100),
        max_bps: None,
    });
    let worker = || {
        let mut flows = flows();
        flows[0].limiter = limiter.clone();
        let mut w = Setup {
            flows,
            ..Setup::default()
        }
        .build();
        w.set_clock(rate_clock);
        w
    };
    let (mut q0, mut q1) = (worker(), worker());
    let body = pattern(64, 3);
    for _ in 0..8 {
        deliver(&mut q0, &frame_v4(&body)).unwrap();
        deliver(&mut q1, &frame_v4(&body)).unwrap();
    }
    q0.poll();
    q1.poll();
    let counts = |w: &W| {
        let f = &w.flow_counters()[0];
        (f.received, f.rate_limited, sent(w, 0, 0), sent(w, 0, 1))
    };
    assert_eq!(counts(&q0), (8, 0, 8, 8));
    assert_eq!(counts(&q1), (2, 6, 2, 2));
    // 50 ms later: five more, whichever queue asks.
    NOW.with(|n| n.set(Some(t0 + Duration::from_millis(50))));
    for _ in 0..7 {
        deliver(&mut q1, &frame_v4(&body)).unwrap();
    }
    q1.poll();
    assert_eq!(counts(&q1), (7, 8, 7, 7));
    // The uncapped IPv6 flow is not limited.
    for _ in 0..20 {
        deliver(&mut q0, &frame_from(src6(), group6(), PORT, vec![], &body)).unwrap();
    }
    q0.poll();
    let v6 = &q0.flow_counters()[1];
    assert_eq!((v6.received, v6.rate_limited), (20, 0));
    for w in [&mut q0, &mut q1] {
        settle(w);
        assert_eq!(
            w.counters().rx_packets,
            w.flow_counters()
                .iter()
                .map(|f| f.received + f.rate_limited)
                .sum::<u64>()
        );
    }
}

#[test]
fn unresolved_next_hop_and_header_errors_are_counted_per_replica() {
    let mut flows = flows();
    flows[0].outputs[1].template = None;
    // An IPv6 template on an IPv4 flow: every replica is a header error.
    flows[0].outputs.push(OutputSpec {
        tx: 0,
        mtu: 9000,
        template: Some(template("fd01::9", 1, None)),
    });
    let mut w = Setup {
        flows,
        ..Setup::default()
    }
    .build();
    for i in 0..3 {
        deliver(&mut w, &frame_v4(&pattern(50, i))).unwrap();
    }
    w.poll();
    assert_eq!(sent(&w, 0, 0), 3);
    assert_eq!(dropped(&w, 0, 1, DropReason::NextHopUnresolved), 3);
    assert_eq!(dropped(&w, 0, 2, DropReason::HeaderError), 3);
    assert_eq!(
        w.census().slots_in_flight,
        3,
        "refused headers gave their slots back"
    );
    assert_balanced(&w);
    // The next hop resolves.
    let t = template("239.9.9.9", 7000, Some(7));
    w.set_template(0, 1, Some(t.clone()));
    let frame = frame_v4(b"resolved");
    deliver(&mut w, &frame).unwrap();
    w.poll();
    assert_eq!(sent(&w, 0, 1), 1);
    let chains = take_all(&mut w, 1);
    assert_eq!(chain_bytes(&w, &chains[0]), expected(&t, &frame));
    complete_chain(&mut w, 1, &chains[0]);
    settle(&mut w);
    assert_eq!(w.flow_counters()[0].received, 4);
}

#[test]
fn chains_longer_than_the_device_takes_are_dropped_and_counted() {
    // A zero-copy device taking 3 descriptors per packet: a slot and two
    // payload pieces.
    let mut w = Setup {
        max_tx_chain: 3,
        ..Setup::default()
    }
    .build();
    let jumbo = frame_v4(&pattern(8972, 1)); // 3 payload pieces
    let two = frame_v4(&pattern(4000, 2)); // 2 payload pieces
    deliver(&mut w, &jumbo).unwrap();
    deliver(&mut w, &two).unwrap();
    w.poll();
    for o in 0..2 {
        assert_eq!(dropped(&w, 0, o, DropReason::ChainTooLong), 1);
        assert_eq!(sent(&w, 0, o), 1);
    }
    let chains = take_all(&mut w, 0);
    assert_eq!(chains.len(), 1);
    assert_eq!(chains[0].len(), 3);
    let t = flows()[0].outputs[0].template.clone().unwrap();
    assert_eq!(chain_bytes(&w, &chains[0]), expected(&t, &two));
    complete_chain(&mut w, 0, &chains[0]);
    settle(&mut w);
}

#[test]
fn the_loop_keeps_its_preallocated_buffers() {
    // Every buffer the loop writes to keeps the capacity Worker::new gave
    // it, through full rings, drops, jumbo chains and malformed frames: the
    // loop does not allocate (the fakes do, they are not the loop).
    let mut w = Setup {
        batch: 16,
        ports: vec![(256, 256), (6, 256)],
        ..Setup::default()
    }
    .build();
    w.set_template(0, 1, None);
    let caps = w.buffer_capacities();
    for round in 0..20u8 {
        for i in 0..10u8 {
            let frame = match i % 4 {
                0 => frame_v4(&pattern(8972, round)),
                1 => pattern(70, i),
                2 => frame_from(src6(), group6(), PORT, vec![], &pattern(900, i)),
                _ => frame_v4(&pattern(usize::from(i) * 100, round)),
            };
            let _ = deliver(&mut w, &frame);
        }
        if round == 10 {
            w.set_template(0, 1, Some(template("239.9.9.9", 7000, Some(7))));
        }
        for _ in 0..4 {
            w.poll();
        }
        for p in 0..2 {
            for c in take_all(&mut w, p) {
                complete_chain(&mut w, p, &c);
            }
        }
        assert_eq!(w.buffer_capacities(), caps, "round {round}");
    }
    settle(&mut w);
    assert_eq!(w.buffer_capacities(), caps);
    assert!(w.flow_counters()[0].outputs[1].dropped(DropReason::RingFull) > 0);
}

#[test]
fn bad_descriptors_and_completions_are_counted_not_trusted() {
    let mut w = Setup::default().build();
    let before = w.census();
    let rx_frame = u64::from(10 * FS);
    let pushes = [
        Desc {
            addr: 64,
            len: 60,
            options: 0,
        }, // a slot frame
        Desc {
            addr: u64::from(64 * FS),
            len: 60,
            options: 0,
        }, // beyond the UMEM
        Desc {
            addr: rx_frame + 4000,
            len: 200,
            options: 0,
        }, // crosses a frame
    ];
    for d in pushes {
        w.parts_mut().1.push_raw(d);
    }
    w.poll();
    assert_eq!(w.counters().bad_rx_desc, 3);
    // The frame of the third was the kernel's: it stays the kernel's.
    assert_eq!(w.census(), before);

    // A receive frame the kernel never had (it is being received twice).
    deliver(&mut w, &frame_v4(b"once")).unwrap();
    w.poll();
    let c0 = take_all(&mut w, 0);
    let held = c0[0][1].addr;
    w.parts_mut().1.push_raw(Desc {
        addr: held,
        len: 60,
        options: 0,
    });
    w.poll();
    assert_eq!(w.counters().bad_rx_desc, 4);
    assert_eq!(w.frame_refs(held), 2);

    for addr in [64, held, u64::from(64 * FS), 4] {
        w.parts_mut().2[0].push_raw_completion(addr);
    }
    // `held` really has references: that one is (wrongly) taken, the others not.
    w.poll();
    assert_eq!(w.counters().bad_completion, 3);
    assert_eq!(w.frame_refs(held), 1);
    assert!(w.census().is_consistent());
}

#[test]
fn worker_refuses_bad_configurations() {
    let build = |cfg: WorkerConfig, flows: Vec<FlowSpec>| {
        Worker::new(
            MemUmem::new(FS, 8),
            MemRx::new(FS, 8, 8),
            vec![MemTx::new(8, 8)],
            flows,
            cfg,
        )
        .map(|_| ())
    };
    let ok = WorkerConfig::new(16, 1);
    assert_eq!(build(ok, vec![]), Ok(()));
    assert_eq!(
        build(
            WorkerConfig {
                batch_size: 0,
                ..ok
            },
            vec![]
        ),
        Err(WorkerError::ZeroBatch)
    );
    for slot_size in [64, 100, 8192] {
        assert_eq!(
            build(WorkerConfig { slot_size, ..ok }, vec![]),
            Err(WorkerError::BadSlotSize {
                slot_size,
                frame_size: FS
            })
        );
    }
    assert_eq!(
        Worker::new(
            MemUmem::new(3000, 8),
            MemRx::new(3000, 8, 8),
            vec![MemTx::new(8, 8)],
            vec![],
            ok,
        )
        .map(|_| ()),
        Err(WorkerError::BadFrameSize(3000))
    );
    for max_tx_chain in [0, MAX_TX_CHAIN + 1] {
        assert_eq!(
            build(WorkerConfig { max_tx_chain, ..ok }, vec![]),
            Err(WorkerError::BadMaxTxChain(max_tx_chain))
        );
    }
    assert_eq!(
        build(
            WorkerConfig {
                inline_max: MAX_INLINE + 1,
                ..ok
            },
            vec![]
        ),
        Err(WorkerError::BadInlineMax(MAX_INLINE + 1))
    );
    for slot_frames in [0, 8] {
        assert_eq!(
            build(WorkerConfig { slot_frames, ..ok }, vec![]),
            Err(WorkerError::BadSlotFrames {
                slot_frames,
                frame_count: 8
            })
        );
    }
    let f = flows();
    assert_eq!(
        build(ok, f.clone()),
        Err(WorkerError::NoSuchPort {
            flow: 0,
            output: 1,
            tx: 1,
            ports: 1
        })
    );
    let mut one = f[0].clone();
    one.outputs.truncate(1);
    assert_eq!(
        build(ok, vec![one.clone(), one]),
        Err(WorkerError::DuplicateFlow {
            flow: 1,
            other: 0,
            group: GROUP4.into(),
            port: PORT,
            vlan: None
        })
    );
}

/// One step of the randomised kernel.
#[derive(Debug, Clone)]
enum Op {
    /// 0: small v4, 1: jumbo v4, 2: v6, 3: malformed, 4: no flow.
    Deliver(u8, u8),
    Poll,
    Take(usize),
    /// Complete (part of) the chain at this index of the port's taken ones,
    /// in reverse descriptor order when set.
    Complete(usize, usize, bool),
    Refuse(usize, bool),
    /// Descriptors sent per kick on a port (copy mode: 32).
    Budget(usize, Option<usize>),
    Resolve(bool),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u8..5, any::<u8>()).prop_map(|(k, s)| Op::Deliver(k, s)),
        4 => Just(Op::Poll),
        2 => (0usize..2).prop_map(Op::Take),
        4 => (0usize..2, any::<usize>(), any::<bool>()).prop_map(|(p, i, r)| Op::Complete(p, i, r)),
        1 => (0usize..2, any::<bool>()).prop_map(|(p, r)| Op::Refuse(p, r)),
        1 => (0usize..2, proptest::option::of(1usize..8)).prop_map(|(p, b)| Op::Budget(p, b)),
        1 => any::<bool>().prop_map(Op::Resolve),
    ]
}

/// A chain the test took off a port and has not completed entirely.
#[derive(Debug)]
struct Taken {
    descs: Vec<Desc>,
    /// The bytes of each descriptor when it was taken.
    bytes: Vec<Vec<u8>>,
    /// Descriptors completed so far (in `order`).
    done: usize,
    reverse: bool,
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    /// Random interleavings of receive, transmit, completion (in any order,
    /// partly), refusing ports and next-hop changes: no frame leaks, none is
    /// recycled while a replica in flight points into it, no slot is reused
    /// in flight, and the accounting balances after every step.
    #[test]
    fn random_kernel_never_leaks_or_double_frees(
        ops in proptest::collection::vec(op(), 1..120),
        inline_max in prop_oneof![Just(0u32), Just(MAX_INLINE)],
    ) {
        let mut w = Setup {
            inline_max,
            frames: 2 + 16,
            batch: 4,
            fill_cap: 16,
            rx_cap: 16,
            ports: vec![(8, 16), (8, 16)],
            ..Setup::default()
        }
        .build();
        let t1 = template("239.9.9.9", 7000, Some(7));
        let mut taken: [Vec<Taken>; 2] = [Vec::new(), Vec::new()];
        let mut expect = [0u64; 2];
        for op in ops {
            match op {
                Op::Deliver(kind, seed) => {
                    let (frame, flow) = match kind {
                        0 => (frame_v4(&pattern(usize::from(seed) * 3, seed)), Some(0)),
                        1 => (frame_v4(&pattern(8000 + usize::from(seed), seed)), Some(0)),
                        2 => (frame_from(src6(), group6(), PORT, vec![], &pattern(usize::from(seed), seed)), Some(1)),
                        3 => (pattern(40 + usize::from(seed), seed), None),
                        _ => (frame_from(SRC4.into(), GROUP4.into(), 9, vec![], b"x"), None),
                    };
                    if deliver(&mut w, &frame).is_ok() && let Some(f) = flow {
                        expect[f] += 1;
                    }
                }
                Op::Poll => {
                    w.poll();
                }
                Op::Take(p) => {
                    for descs in take_all(&mut w, p) {
                        check_chain(&descs, 2);
                        let bytes = descs.iter().map(|d| w.umem().bytes(d.addr, d.len).to_vec()).collect();
                        taken[p].push(Taken { descs, bytes, done: 0, reverse: false });
                    }
                }
                Op::Complete(p, i, reverse) => {
                    if !taken[p].is_empty() {
                        let i = i % taken[p].len();
                        let t = &mut taken[p][i];
                        if t.done == 0 {
                            t.reverse = reverse;
                        }
                        let mut order: Vec<u64> = t.descs.iter().map(|d| d.addr).collect();
                        if t.reverse {
                            order.reverse();
                        }
                        let n = w.parts_mut().2[p].complete(&order[t.done..]);
                        t.done += n;
                        if t.done == t.descs.len() {
                            taken[p].remove(i);
                        }
                    }
                }
                Op::Refuse(p, on) => w.parts_mut().2[p].set_refuse(on),
                Op::Budget(p, budget) => w.parts_mut().2[p].set_flush_budget(budget),
                Op::Resolve(yes) => w.set_template(0, 1, yes.then(|| t1.clone())),
            }

            let census = w.census();
            prop_assert!(census.is_consistent(), "{:?}", census);
            assert_balanced(&w);
            // Whatever is in flight is intact and not the kernel's.
            let mut slots = BTreeSet::new();
            let mut refs: BTreeMap<u64, u32> = BTreeMap::new();
            for t in taken.iter().flatten() {
                let pending: Vec<usize> = if t.reverse {
                    (0..t.descs.len() - t.done).collect()
                } else {
                    (t.done..t.descs.len()).collect()
                };
                for k in pending {
                    let d = t.descs[k];
                    prop_assert_eq!(w.umem().bytes(d.addr, d.len), &t.bytes[k][..]);
                    if k == 0 {
                        prop_assert!(slots.insert(d.addr), "slot {:#x} twice in flight", d.addr);
                    } else {
                        prop_assert!(!w.rx().holds(d.addr), "frame of {:#x} recycled in flight", d.addr);
                        *refs.entry(d.addr / u64::from(FS)).or_default() += 1;
                    }
                }
            }
            for (frame, n) in refs {
                prop_assert!(w.frame_refs(frame * u64::from(FS)) >= n);
            }
        }

        // Let the kernel finish everything it holds.
        for (p, taken) in taken.iter_mut().enumerate() {
            w.parts_mut().2[p].set_refuse(false);
            for t in std::mem::take(taken) {
                let mut order: Vec<u64> = t.descs.iter().map(|d| d.addr).collect();
                if t.reverse {
                    order.reverse();
                }
                let mut done = t.done;
                while done < order.len() {
                    done += w.parts_mut().2[p].complete(&order[done..]);
                    w.poll();
                }
            }
        }
        settle(&mut w);
        prop_assert_eq!(w.rx().owned_frames(), 16);
        let received: Vec<u64> = w.flow_counters().iter().map(|f| f.received).collect();
        prop_assert_eq!(received, expect.to_vec());
        prop_assert_eq!(w.counters().bad_completion, 0);
        prop_assert_eq!(w.counters().bad_rx_desc, 0);
    }
}

#[test]
fn the_worker_fits_the_real_sockets_and_moves_to_a_thread() {
    // Type-level: the AF_XDP sockets implement the seam the worker needs,
    // and the worker can move to its queue's thread. (Running them needs
    // root and the XDP program: tests/.)
    use crate::xdp::xsk::{RxSocket, TxSocket, XskUmem};
    type Real = Worker<XskUmem, RxSocket, TxSocket>;
    fn build(
        umem: XskUmem,
        rx: RxSocket,
        tx: Vec<TxSocket>,
        flows: Vec<FlowSpec>,
    ) -> Result<Real, WorkerError> {
        Worker::new(umem, rx, tx, flows, WorkerConfig::new(64, 8))
    }
    fn send<T: Send>() {}
    send::<Real>();
    send::<W>();
    let _ = build;
}

/// Stream health reads each datagram's payload once, in place, across the
/// buffers of a jumbo chain, before the TTL check: a TS stream of 40
/// packets per datagram (7520 bytes, three buffers split inside packets;
/// not 47: a loss of 47 packets of one PID, 15 modulo 16, looks like a
/// legal duplicate to any continuity check),
/// one datagram lost, one arriving with TTL 1 (checked, not replicated),
/// one packet with the transport error indicator; and a datagram from
/// another sender on a source-specific flow is not checked.
#[test]
fn stream_health_reads_jumbo_chains_in_place_once_per_datagram() {
    let mut flows = flows();
    flows[0].health = crate::health::HealthMode::Ts;
    let mut w = Setup {
        flows,
        ..Setup::default()
    }
    .build();
    let mut cc = 0u8;
    let mut datagram = |tei: bool| {
        let mut d = Vec::with_capacity(40 * 188);
        for k in 0..40 {
            let mut p = vec![0x5Au8; 188];
            p[0] = 0x47;
            p[1] = 0x01 | if tei && k == 5 { 0x80 } else { 0 };
            p[2] = 0x00;
            p[3] = 0x10 | cc;
            cc = (cc + 1) & 0x0F;
            d.extend(p);
        }
        d
    };
    let with_ttl = |ttl: u8, payload: &[u8]| {
        let spec = FrameSpec {
            tags: vec![],
            addrs: IpPair::new(SRC4.into(), GROUP4.into()).unwrap(),
            tos: 0,
            ttl,
            ipv4_options: vec![],
            src_port: 40000,
            dst_port: PORT,
            zero_checksum: false,
        };
        build_frame(&spec, payload).0
    };
    let mut sent_frames = 0;
    for i in 0..12 {
        let d = datagram(i == 7);
        if i == 4 {
            continue; // lost upstream: one CC error on PID 0x100
        }
        let frame = with_ttl(if i == 9 { 1 } else { 16 }, &d);
        deliver_split(&mut w, &frame, &[100, 3840, frame.len() - 3940]).unwrap();
        sent_frames += 1;
        w.poll();
        settle(&mut w);
    }
    w.finish_health();
    let f = &w.flow_counters()[0];
    assert_eq!((f.received, f.ttl_expired), (sent_frames - 1, 1));
    assert_eq!(
        f.health,
        crate::health::HealthCounters {
            kind: crate::health::StreamKind::Ts,
            ts_packets: 40 * sent_frames,
            ts_cc_errors: 1,
            ts_transport_errors: 1,
            ..Default::default()
        }
    );
    // The IPv6 flow's check (auto) found nothing in no datagram.
    assert_eq!(w.flow_counters()[1].health, Default::default());
    assert_balanced(&w);
}
