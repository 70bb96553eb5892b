//! The AF_XDP engine's loop over the in-memory rings: what one
//! `Worker::poll` costs per replica, payload bytes never touched.
//!
//! `engine/poll/b<batch>/<payload>/<outputs>`: a batch of 16 or 64 datagrams
//! received (64, 1472 or 8972-byte payloads; the jumbo one is a 3-buffer
//! chain), replicated to 1, 8 or 64 outputs over two TX ports that complete
//! on flush; throughput in replicas (`Throughput::Elements` = batch x
//! outputs), so criterion's "elem/s" is replicas per second. The fake kernel copies nothing (the frames are
//! written once, up front), so the numbers are the engine's own: completion
//! reaping, parsing, flow lookup, header writes, chain building, refcounts.
//!
//! Short mode (CI): `cargo bench -p fanout --bench engine -- --test`.
//! Instructions per replica (deterministic, also on a loaded machine): with
//! `FANOUT_CALLGRIND=BATCH,PAYLOAD,OUTPUTS,ROUNDS` the binary runs one cell
//! for ROUNDS polls instead of criterion; `cargo xtask bench --callgrind`
//! runs it under valgrind twice and prints instructions per replica.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group};
use fanout::wire::{Datagram, IpPair, ReplicaSpec, ReplicaTemplate, TosPolicy};
use fanout::xdp::worker::ring::Umem;
use fanout::xdp::worker::ring::mem::{DEFAULT_HEADROOM, MemRx, MemTx, MemUmem};
use fanout::xdp::worker::{FlowSpec, OutputSpec, PollResult, Worker, WorkerConfig};

/// Datagrams per poll: the engine's `batch_size` knob.
const BATCHES: [usize; 2] = [16, 64];
const PAYLOADS: [usize; 3] = [64, 1472, 8972];
const OUTPUTS: [usize; 3] = [1, 8, 64];
const FRAME: u32 = 4096;
const BUF: usize = (FRAME - DEFAULT_HEADROOM) as usize;
const GROUP: Ipv4Addr = Ipv4Addr::new(239, 1, 1, 1);
const SOURCE: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);

fn spec(src: Ipv4Addr, dst: Ipv4Addr, port: u16) -> ReplicaSpec {
    ReplicaSpec {
        dst_mac: [0x01, 0x00, 0x5e, 0x01, 0x01, 0x01],
        src_mac: [0x02, 0, 0, 0, 0, 1],
        vlan: None,
        src: src.into(),
        dst: dst.into(),
        ttl: 16,
        src_port: Some(5000),
        dst_port: port,
        tos: TosPolicy::CopyDscp,
    }
}

/// The headers of a received datagram (valid IPv4 header checksum; the
/// engine never verifies the UDP one).
fn rx_headers(payload_len: usize) -> Vec<u8> {
    let source = ReplicaTemplate::new(spec(SOURCE, GROUP, 5004)).unwrap();
    let dg = Datagram {
        outer_vlan: None,
        inner_vlan: None,
        addrs: IpPair::V4 {
            src: SOURCE,
            dst: GROUP,
        },
        tos: 0,
        ttl: 16,
        src_port: 5000,
        dst_port: 5004,
        udp_len: u16::try_from(8 + payload_len).unwrap(),
        udp_checksum: 0x1234,
        payload_offset: 42,
        payload_len,
    };
    let mut h = vec![0u8; source.header_len()];
    source.write(&dg, &mut h).unwrap();
    h
}

fn worker(
    batch: usize,
    payload_len: usize,
    outputs: usize,
) -> (Worker<MemUmem, MemRx, MemTx>, Vec<u32>) {
    let frame_len = 42 + payload_len;
    let lens: Vec<u32> = (0..frame_len.div_ceil(BUF))
        .map(|i| (frame_len.min((i + 1) * BUF) - i * BUF) as u32)
        .collect();
    let slots_per_frame = (FRAME / 128) as usize;
    let slot_frames = (2 * batch * outputs).div_ceil(slots_per_frame) as u32;
    let rx_frames = (4 * batch * lens.len()) as u32;
    let mut umem = MemUmem::new(FRAME, slot_frames + rx_frames);
    let headers = rx_headers(payload_len);
    for f in 0..u64::from(slot_frames + rx_frames) {
        let at = f * u64::from(FRAME) + u64::from(DEFAULT_HEADROOM);
        umem.bytes_mut(at, headers.len() as u32)
            .copy_from_slice(&headers);
    }
    let ring = 2 * batch * outputs * (lens.len() + 1);
    let mut tx: Vec<MemTx> = (0..2).map(|_| MemTx::new(ring, ring)).collect();
    for t in &mut tx {
        t.set_auto_complete(true);
    }
    let flow = FlowSpec {
        group: IpAddr::V4(GROUP),
        port: 5004,
        vlan: None,
        outer_vlan: None,
        source: None,
        limiter: None,
        health: Default::default(),
        outputs: (0..outputs)
            .map(|o| OutputSpec {
                tx: o % 2,
                mtu: 9000,
                template: Some(
                    ReplicaTemplate::new(spec(
                        Ipv4Addr::new(10, 1, 0, 1),
                        Ipv4Addr::new(10, 2, 0, (o + 2) as u8),
                        6000,
                    ))
                    .unwrap(),
                ),
            })
            .collect(),
    };
    let rx = MemRx::new(FRAME, rx_frames as usize, batch * lens.len());
    let cfg = WorkerConfig {
        tx_batch: ring,
        ..WorkerConfig::new(batch * lens.len(), slot_frames)
    };
    let w = Worker::new(umem, rx, tx, vec![flow], cfg).unwrap();
    (w, lens)
}

/// One round: `batch` datagrams delivered into the RX ring, one poll.
fn round(w: &mut Worker<MemUmem, MemRx, MemTx>, batch: usize, lens: &[u32]) -> PollResult {
    let (_, rx, _) = w.parts_mut();
    for _ in 0..batch {
        rx.deliver_in_place(lens).unwrap();
    }
    w.poll()
}

/// A worker in steady state (frames and slots have cycled, nothing dropped).
fn warm(batch: usize, payload: usize, outputs: usize) -> (Worker<MemUmem, MemRx, MemTx>, Vec<u32>) {
    let (mut w, lens) = worker(batch, payload, outputs);
    for _ in 0..8 {
        round(&mut w, batch, &lens);
    }
    let fc = &w.flow_counters()[0];
    assert_eq!(fc.received, 8 * batch as u64);
    assert!(fc.outputs.iter().all(|o| o.sent == fc.received), "{fc:?}");
    (w, lens)
}

fn poll(c: &mut Criterion) {
    for batch in BATCHES {
        let mut group = c.benchmark_group(format!("engine/poll/b{batch}"));
        for payload in PAYLOADS {
            for outputs in OUTPUTS {
                let (mut w, lens) = warm(batch, payload, outputs);
                group.throughput(Throughput::Elements((batch * outputs) as u64));
                group.bench_function(BenchmarkId::new(payload.to_string(), outputs), |b| {
                    b.iter(|| black_box(round(&mut w, batch, &lens)))
                });
                let fc = &w.flow_counters()[0];
                assert!(fc.received > 0);
                assert!(fc.outputs.iter().all(|o| o.sent == fc.received), "{fc:?}");
            }
        }
        group.finish();
    }
}

/// `FANOUT_CALLGRIND=BATCH,PAYLOAD,OUTPUTS,ROUNDS`: instead of criterion,
/// run ROUNDS rounds of one cell and exit, for instruction counts under
/// `valgrind --tool=callgrind`. Two runs with different ROUNDS give the
/// instructions per replica as the difference over the extra replicas
/// (setup cancels out). `cargo xtask bench --callgrind` does that.
fn callgrind_rounds() -> bool {
    let Ok(spec) = std::env::var("FANOUT_CALLGRIND") else {
        return false;
    };
    let v: Vec<usize> = spec
        .split(',')
        .map(|x| {
            x.trim()
                .parse()
                .expect("FANOUT_CALLGRIND=BATCH,PAYLOAD,OUTPUTS,ROUNDS")
        })
        .collect();
    let [batch, payload, outputs, rounds] = v[..] else {
        panic!("FANOUT_CALLGRIND=BATCH,PAYLOAD,OUTPUTS,ROUNDS, got {spec:?}");
    };
    let (mut w, lens) = warm(batch, payload, outputs);
    for _ in 0..rounds {
        black_box(round(&mut w, batch, &lens));
    }
    let fc = &w.flow_counters()[0];
    assert_eq!(fc.received, ((8 + rounds) * batch) as u64);
    assert!(fc.outputs.iter().all(|o| o.sent == fc.received), "{fc:?}");
    true
}

criterion_group!(benches, poll);

fn main() {
    if callgrind_rounds() {
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
