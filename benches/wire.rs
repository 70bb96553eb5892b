//! Per-packet costs of the `wire` hot path.
//!
//! - `parse/{ipv4,ipv6,ipv4_vlan}`: one received frame parsed.
//! - `replica_write/{ipv4,ipv6}`: the headers of one replica written.
//! - `udp_checksum/{incremental,full}/<payload>`: a replica's headers with
//!   the UDP checksum adjusted (RFC 1624, payload untouched) against the same
//!   headers with the checksum recomputed over the whole payload, for 64,
//!   1472 and 8972-byte payloads (throughput in payload bytes);
//!   `udp_checksum/complete/<payload>`: a partial checksum completed over
//!   the UDP header and payload, once per datagram (not per replica).
//!
//! Short mode (CI): `cargo bench -p fanout --bench wire -- --test`.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use fanout::wire::{
    self, Datagram, IpPair, ReplicaSpec, ReplicaTemplate, TosPolicy, checksum,
    replica::MAX_HEADER_LEN, udp,
};

const PAYLOADS: [usize; 3] = [64, 1472, 8972];

fn spec(src: IpAddr, dst: IpAddr, vlan: Option<u16>) -> ReplicaSpec {
    ReplicaSpec {
        dst_mac: [0x02, 0, 0, 0, 0, 2],
        src_mac: [0x02, 0, 0, 0, 0, 1],
        vlan,
        src,
        dst,
        ttl: 64,
        src_port: Some(7000),
        dst_port: 6000,
        tos: TosPolicy::CopyDscp,
    }
}

fn v4() -> (IpAddr, IpAddr) {
    (
        Ipv4Addr::new(10, 0, 0, 1).into(),
        Ipv4Addr::new(239, 1, 1, 1).into(),
    )
}

fn v6() -> (IpAddr, IpAddr) {
    (
        "fd00::1".parse::<Ipv6Addr>().unwrap().into(),
        "ff3e::8000:1".parse::<Ipv6Addr>().unwrap().into(),
    )
}

/// A received frame, built with the library itself: a "source" template
/// writes the headers of a datagram, then the UDP checksum is filled in.
fn rx_frame((src, dst): (IpAddr, IpAddr), vlan: Option<u16>, payload_len: usize) -> Vec<u8> {
    let source = ReplicaTemplate::new(ReplicaSpec {
        src_port: Some(5000),
        ..spec(src, dst, vlan)
    })
    .unwrap();
    let udp_len = u16::try_from(8 + payload_len).unwrap();
    let addrs = source.addrs();
    // A fake "received" datagram of the source's own family, checksum
    // present, from which the source template writes its headers.
    let seed = Datagram {
        outer_vlan: None,
        inner_vlan: None,
        addrs,
        tos: 0xb8,
        ttl: 64,
        src_port: 5000,
        dst_port: 6000,
        udp_len,
        udp_checksum: 0xffff,
        payload_offset: 0,
        payload_len,
    };
    let mut frame = vec![0u8; MAX_HEADER_LEN];
    let n = source.write(&seed, &mut frame).unwrap();
    frame.truncate(n);
    frame.extend((0..payload_len).map(|i| i as u8));
    udp::Packet::new_unchecked(&mut frame[n - 8..]).fill_checksum(&addrs);
    frame
}

fn bench_parse(c: &mut Criterion) {
    let mut g = c.benchmark_group("parse");
    g.throughput(Throughput::Elements(1));
    for (name, frame) in [
        ("ipv4", rx_frame(v4(), None, 1316)),
        ("ipv6", rx_frame(v6(), None, 1316)),
        ("ipv4_vlan", rx_frame(v4(), Some(42), 1316)),
    ] {
        assert!(wire::parse(&frame).is_ok());
        g.bench_with_input(BenchmarkId::from_parameter(name), &frame, |b, f| {
            b.iter(|| wire::parse(black_box(f)))
        });
    }
    g.finish();
}

fn bench_replica_write(c: &mut Criterion) {
    let mut g = c.benchmark_group("replica_write");
    g.throughput(Throughput::Elements(1));
    for (name, rx_addrs, (src, dst)) in [
        (
            "ipv4",
            v4(),
            (
                Ipv4Addr::new(192, 168, 1, 1).into(),
                Ipv4Addr::new(192, 168, 1, 2).into(),
            ),
        ),
        (
            "ipv6",
            v6(),
            ("fd00::2".parse().unwrap(), "fd00::3".parse().unwrap()),
        ),
    ] {
        let frame = rx_frame(rx_addrs, None, 1316);
        let rx = wire::parse(&frame).unwrap();
        let t = ReplicaTemplate::new(spec(src, dst, Some(42))).unwrap();
        let mut out = [0u8; MAX_HEADER_LEN];
        g.bench_function(name, |b| {
            b.iter(|| t.write(black_box(&rx), black_box(&mut out)))
        });
    }
    g.finish();
}

fn bench_udp_checksum(c: &mut Criterion) {
    let mut g = c.benchmark_group("udp_checksum");
    let (src, dst) = (
        Ipv4Addr::new(192, 168, 1, 1).into(),
        Ipv4Addr::new(192, 168, 1, 2).into(),
    );
    let t = ReplicaTemplate::new(spec(src, dst, None)).unwrap();
    let addrs = IpPair::new(src, dst).unwrap();
    for len in PAYLOADS {
        let frame = rx_frame(v4(), None, len);
        let rx = wire::parse(&frame).unwrap();
        // The replica as it would leave: headers, then the same payload.
        let mut replica = vec![0u8; t.header_len()];
        replica.extend_from_slice(&frame[rx.payload_range()]);
        let h = t.header_len();
        g.throughput(Throughput::Bytes(len as u64));
        g.bench_with_input(BenchmarkId::new("incremental", len), &len, |b, _| {
            b.iter(|| t.write(black_box(&rx), black_box(&mut replica[..h])))
        });
        g.bench_with_input(BenchmarkId::new("full", len), &len, |b, _| {
            b.iter(|| {
                let n = t.write(black_box(&rx), &mut replica[..h]).unwrap();
                udp::Packet::new_unchecked(&mut replica[n - 8..]).fill_checksum(black_box(&addrs));
            })
        });
        // A partial checksum (a local sender's CHECKSUM_PARTIAL) completed
        // as the XDP worker does it, once per datagram for all replicas:
        // the UDP header and the payload summed piece by piece, in the
        // pieces a multi-buffer frame of 4096-byte UMEM chunks has.
        let udp_and_payload = &frame[rx.payload_offset - 8..];
        g.bench_with_input(BenchmarkId::new("complete", len), &len, |b, _| {
            b.iter(|| {
                let mut sum = checksum::Sum::default();
                for piece in black_box(udp_and_payload).chunks(4096) {
                    sum.add(piece);
                }
                checksum::complete_partial(sum.folded())
            })
        });
        // Both ways give the same bytes.
        t.write(&rx, &mut replica[..h]).unwrap();
        let incremental = replica[h - 2..h].to_vec();
        udp::Packet::new_unchecked(&mut replica[h - 8..]).fill_checksum(&addrs);
        assert_eq!(incremental, &replica[h - 2..h]);
    }
    g.finish();
}

criterion_group!(
    benches,
    bench_parse,
    bench_replica_write,
    bench_udp_checksum
);
criterion_main!(benches);
