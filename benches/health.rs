//! The per-datagram cost of stream health ([`fanout::health`]), paid once
//! per received datagram at ingress, never per replica.
//!
//! - `stream_health/rtp_ts_1328`: MPEG-TS in RTP (12 + 7 x 188 bytes), the
//!   usual IPTV datagram: the RTP window and 7 continuity checks.
//! - `stream_health/ts_8836_in_3`: MPEG-TS in a jumbo UDP datagram (47
//!   packets), read across three buffers as an XDP chain holds it.
//! - `stream_health/rtp_200`: RTP audio (Opus-sized): the window only.
//! - `stream_health/auto_other_1472`: `auto` on a stream that is neither
//!   (market data): what every datagram costs while nothing is found.
//! - `stream_health/off`: the check turned off.
//!
//! Each iteration checks the next datagram of an endless, clean stream (16
//! datagrams whose continuity counters cycle; the RTP sequence number is
//! written into the datagram first, 2 bytes, included in the time).
//!
//! Short mode (CI): `cargo bench -p fanout --bench health -- --test`.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use fanout::health::{HealthCounters, HealthMode, Payload, StreamHealth};

const TS: usize = 188;

/// 16 datagrams of `packets` TS packets of PID 0x100 with running
/// continuity counters (16 datagrams bring every counter back), behind a
/// header of `header` bytes (12: an RTP header, SSRC 7).
fn ts_datagrams(packets: usize, header: usize) -> Vec<Vec<u8>> {
    (0..16)
        .map(|j| {
            let mut d = vec![0u8; header];
            if header == 12 {
                d[0] = 0x80;
                d[1] = 33;
                d[8..12].copy_from_slice(&7u32.to_be_bytes());
            }
            for k in 0..packets {
                let mut p = [0xA5u8; TS];
                p[0] = 0x47;
                p[1] = 0x01;
                p[2] = 0x00;
                p[3] = 0x10 | ((j * packets + k) % 16) as u8;
                d.extend_from_slice(&p);
            }
            d
        })
        .collect()
}

fn bench_health(c: &mut Criterion) {
    let mut g = c.benchmark_group("stream_health");
    g.throughput(Throughput::Elements(1));
    let rtp_audio: Vec<Vec<u8>> = (0..16)
        .map(|_| {
            let mut d = vec![0x5Au8; 200];
            d[0] = 0x80;
            d[1] = 97;
            d[8..12].copy_from_slice(&9u32.to_be_bytes());
            d
        })
        .collect();
    let other: Vec<Vec<u8>> = (0..16u8)
        .map(|j| {
            (0..1472)
                .map(|i| (i as u8).wrapping_mul(31) ^ j | 0x80)
                .collect()
        })
        .collect();
    // (name, mode, the 16 datagrams, whether RTP, where the payload is
    // cut into pieces)
    type Case = (
        &'static str,
        HealthMode,
        Vec<Vec<u8>>,
        bool,
        &'static [usize],
    );
    let cases: [Case; 5] = [
        (
            "rtp_ts_1328",
            HealthMode::Auto,
            ts_datagrams(7, 12),
            true,
            &[],
        ),
        (
            "ts_8836_in_3",
            HealthMode::Auto,
            ts_datagrams(47, 0),
            false,
            &[3800, 7600],
        ),
        ("rtp_200", HealthMode::Auto, rtp_audio, true, &[]),
        (
            "auto_other_1472",
            HealthMode::Auto,
            other.clone(),
            false,
            &[],
        ),
        ("off", HealthMode::Off, other, false, &[]),
    ];
    for (name, mode, mut stream, rtp, cuts) in cases {
        let mut h = StreamHealth::new(mode);
        let mut counts = HealthCounters::default();
        let mut seq = 0u16;
        let mut next = |h: &mut StreamHealth, counts: &mut HealthCounters| {
            let d = &mut stream[usize::from(seq % 16)];
            if rtp {
                d[2..4].copy_from_slice(&seq.to_be_bytes());
            }
            seq = seq.wrapping_add(1);
            let mut p = Payload::new();
            let mut from = 0;
            for &cut in cuts {
                p.push(&d[from..cut]);
                from = cut;
            }
            p.push(&d[from..]);
            if h.wants() {
                h.observe(black_box(&p), counts);
            }
        };
        // Warm up the detection, then check that the stream is clean.
        for _ in 0..64 {
            next(&mut h, &mut counts);
        }
        assert_eq!(counts.errors(), 0, "{name}: {counts:?}");
        g.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter(|| next(&mut h, &mut counts))
        });
        assert_eq!(counts.errors(), 0, "{name}: {counts:?}");
    }
    g.finish();
}

criterion_group!(benches, bench_health);
criterion_main!(benches);
