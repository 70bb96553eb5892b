//! The checker against streams built here byte by byte, with every kind of
//! damage put in on purpose, and the counts each must give.

use super::*;

/// An RTP datagram: version 2, `csrcs` CSRCs, an optional extension of
/// `ext` words, optional padding of `pad` bytes, and `payload`.
fn rtp(seq: u16, ssrc: u32, csrcs: u8, ext: Option<u16>, pad: u8, payload: &[u8]) -> Vec<u8> {
    let mut b0 = 0x80 | csrcs;
    if ext.is_some() {
        b0 |= 0x10;
    }
    if pad > 0 {
        b0 |= 0x20;
    }
    let mut d = vec![b0, 33];
    d.extend_from_slice(&seq.to_be_bytes());
    d.extend_from_slice(&90_000u32.wrapping_mul(u32::from(seq)).to_be_bytes());
    d.extend_from_slice(&ssrc.to_be_bytes());
    for i in 0..csrcs {
        d.extend_from_slice(&u32::from(i).to_be_bytes());
    }
    if let Some(words) = ext {
        d.extend_from_slice(&[0xBE, 0xDE]);
        d.extend_from_slice(&words.to_be_bytes());
        d.extend(std::iter::repeat_n(0xEE, 4 * words as usize));
    }
    d.extend_from_slice(payload);
    if pad > 0 {
        d.extend(std::iter::repeat_n(0, pad as usize - 1));
        d.push(pad);
    }
    d
}

/// A TS packet of `pid` with continuity counter `cc`: payload only, or an
/// adaptation field only (`af_only`), with the discontinuity indicator.
fn ts(pid: u16, cc: u8, af_only: bool, discontinuity: bool, tei: bool) -> Vec<u8> {
    let mut p = vec![0xFFu8; TS_PACKET];
    p[0] = TS_SYNC;
    p[1] = (pid >> 8) as u8 & 0x1F | if tei { 0x80 } else { 0 };
    p[2] = pid as u8;
    let afc = if af_only {
        0x20
    } else if discontinuity {
        0x30
    } else {
        0x10
    };
    p[3] = afc | (cc & 0x0F);
    if af_only || discontinuity {
        p[4] = 183 - if af_only { 0 } else { 10 };
        p[5] = if discontinuity { 0x80 } else { 0 };
    }
    p
}

fn observe_all(mode: HealthMode, datagrams: &[Vec<u8>]) -> (HealthCounters, StreamHealth) {
    let mut h = StreamHealth::new(mode);
    let mut c = HealthCounters::default();
    for d in datagrams {
        if h.wants() {
            h.observe(&Payload::one(d), &mut c);
        }
    }
    (c, h)
}

fn finished(mode: HealthMode, datagrams: &[Vec<u8>]) -> HealthCounters {
    let (mut c, mut h) = observe_all(mode, datagrams);
    h.finish(&mut c);
    c
}

fn rtp_stream(seqs: impl IntoIterator<Item = u16>) -> Vec<Vec<u8>> {
    seqs.into_iter()
        .map(|s| rtp(s, 0x1234_5678, 0, None, 0, &[s as u8; 100]))
        .collect()
}

#[test]
fn a_clean_rtp_stream_across_the_wrap_counts_nothing_but_its_packets() {
    let c = finished(
        HealthMode::Rtp,
        &rtp_stream((0..1000).map(|i| 65_000u16.wrapping_add(i))),
    );
    assert_eq!(
        c,
        HealthCounters {
            kind: StreamKind::Rtp,
            rtp_packets: 1000,
            ..HealthCounters::default()
        }
    );
    assert_eq!(c.errors(), 0);
}

#[test]
fn rtp_loss_duplicates_and_reordering_are_counted_exactly() {
    // 0..2000 with: 100 and 101 lost, 300 twice, 500/501 swapped, 700
    // arriving after 750, 1200..1500 lost (longer than the window), 1990
    // lost near the end (counted when the engine stops).
    let mut seqs: Vec<u16> = Vec::new();
    for s in 0u16..2000 {
        match s {
            100 | 101 | 1200..1500 | 1990 | 700 => {}
            300 => seqs.extend([300, 300]),
            500 => {}
            501 => seqs.extend([501, 500]),
            750 => seqs.extend([750, 700]),
            _ => seqs.push(s),
        }
    }
    let stream = rtp_stream(seqs.iter().copied());
    let (before, _) = observe_all(HealthMode::Rtp, &stream);
    assert_eq!(before.rtp_lost, 2 + 300, "1990 is still in the window");
    let c = finished(HealthMode::Rtp, &stream);
    assert_eq!(
        c,
        HealthCounters {
            kind: StreamKind::Rtp,
            rtp_packets: seqs.len() as u64,
            rtp_lost: 2 + 300 + 1,
            rtp_reordered: 2,
            rtp_duplicates: 1,
            ..HealthCounters::default()
        }
    );
}

#[test]
fn every_gap_size_around_the_window_is_exact() {
    for gap in [1u16, 2, 126, 127, 128, 129, 130, 255, 256, 2998] {
        let seqs = (0u16..50).chain(50 + gap..50 + gap + 300);
        let c = finished(HealthMode::Rtp, &rtp_stream(seqs));
        assert_eq!(
            (c.rtp_lost, c.rtp_restarts, c.rtp_reordered),
            (u64::from(gap), 0, 0),
            "gap {gap}"
        );
    }
}

#[test]
fn a_late_datagram_fills_its_hole_at_any_depth_of_the_window() {
    for depth in [1u16, 2, 64, 126, 127] {
        let mut seqs: Vec<u16> = (0..400).filter(|&s| s != 200).collect();
        let at = seqs.iter().position(|&s| s == 200 + depth).unwrap();
        seqs.insert(at + 1, 200);
        let c = finished(HealthMode::Rtp, &rtp_stream(seqs));
        assert_eq!(
            (c.rtp_lost, c.rtp_reordered, c.rtp_duplicates),
            (0, 1, 0),
            "depth {depth}"
        );
    }
}

#[test]
fn a_new_ssrc_or_a_big_jump_restarts_and_settles_the_old_run() {
    let mut stream = rtp_stream((0u16..100).filter(|&s| s != 98));
    stream.extend((0u16..50).map(|s| rtp(s, 0xABCD, 0, None, 0, b"x")));
    stream.extend(rtp_stream(10_000u16..10_050).into_iter().map(|mut d| {
        d[8..12].copy_from_slice(&0xABCDu32.to_be_bytes());
        d
    }));
    let c = finished(HealthMode::Rtp, &stream);
    assert_eq!(
        (c.rtp_packets, c.rtp_lost, c.rtp_restarts, c.rtp_reordered),
        (199, 1, 2, 0)
    );
}

#[test]
fn rtp_headers_with_csrcs_extensions_and_padding_are_read_whole() {
    let ts_payload: Vec<u8> = (0..7u8)
        .flat_map(|i| ts(256, i, false, false, false))
        .collect();
    let stream: Vec<Vec<u8>> = (0u16..7)
        .map(|s| {
            rtp(
                s,
                7,
                (s % 3) as u8,
                (s % 2 == 0).then_some(s),
                (s % 4) as u8 * 3,
                &ts_payload,
            )
        })
        .collect();
    // A clean stream: the TS inside continues datagram to datagram only if
    // every header was skipped exactly.
    let stream: Vec<Vec<u8>> = stream
        .into_iter()
        .enumerate()
        .map(|(i, mut d)| {
            let at = d.len()
                - 7 * TS_PACKET
                - if d[0] & 0x20 != 0 {
                    *d.last().unwrap() as usize
                } else {
                    0
                };
            for k in 0..7 {
                d[at + k * TS_PACKET + 3] = 0x10 | ((i * 7 + k) % 16) as u8;
            }
            d
        })
        .collect();
    let c = finished(HealthMode::Rtp, &stream);
    assert_eq!(
        c,
        HealthCounters {
            kind: StreamKind::RtpTs,
            rtp_packets: 7,
            ts_packets: 49,
            ..HealthCounters::default()
        }
    );
    // Not RTP: version 1, too short, padding longer than the datagram,
    // extension past the end.
    let bad = vec![
        vec![0x40; 20],
        vec![0x80; 11],
        {
            let mut d = rtp(1, 7, 0, None, 0, b"abc");
            d[0] |= 0x20;
            *d.last_mut().unwrap() = 200;
            d
        },
        {
            let mut d = rtp(1, 7, 0, Some(1), 0, b"");
            d.truncate(d.len() - 2);
            d
        },
        Vec::new(),
    ];
    let c = finished(HealthMode::Rtp, &bad);
    assert_eq!((c.rtp_invalid, c.rtp_packets), (5, 0));
}

/// `n` datagrams of 7 TS packets over PIDs 0 (PAT), 256 (video) and 257
/// (audio), an adaptation-field-only packet on 256 every 10th, and null
/// packets: continuity as a muxer writes it.
fn ts_stream(n: usize) -> Vec<Vec<u8>> {
    let mut cc = [0u8; 3];
    let pids = [0u16, 256, 257];
    let mut out = Vec::new();
    let mut k = 0usize;
    for _ in 0..n {
        let mut d = Vec::new();
        for _ in 0..7 {
            k += 1;
            let p = match k % 9 {
                0 => ts(0x1FFF, 0, false, false, false),
                1 => {
                    cc[0] = (cc[0] + 1) & 0xF;
                    ts(pids[0], cc[0], false, false, false)
                }
                2..=5 => {
                    if k.is_multiple_of(10) {
                        ts(pids[1], cc[1], true, false, false)
                    } else {
                        cc[1] = (cc[1] + 1) & 0xF;
                        ts(pids[1], cc[1], false, false, false)
                    }
                }
                _ => {
                    cc[2] = (cc[2] + 1) & 0xF;
                    ts(pids[2], cc[2], false, false, false)
                }
            };
            d.extend(p);
        }
        out.push(d);
    }
    out
}

/// The PIDs with a payload (checked ones) in a datagram of TS packets.
fn payload_pids(d: &[u8]) -> std::collections::BTreeSet<u16> {
    d.chunks(TS_PACKET)
        .filter(|p| p[3] & 0x10 != 0)
        .map(|p| u16::from(p[1] & 0x1F) << 8 | u16::from(p[2]))
        .filter(|&pid| pid != 0x1FFF)
        .collect()
}

#[test]
fn a_clean_ts_stream_counts_nothing_but_its_packets() {
    let c = finished(HealthMode::Ts, &ts_stream(500));
    assert_eq!(
        c,
        HealthCounters {
            kind: StreamKind::Ts,
            ts_packets: 3500,
            ..HealthCounters::default()
        }
    );
}

#[test]
fn a_lost_datagram_is_one_cc_error_per_pid_it_carried() {
    let mut stream = ts_stream(500);
    let mut want = 0;
    for i in [100usize, 250, 251, 400] {
        if i != 251 {
            want += payload_pids(&stream[i]).len() as u64;
        }
        stream[i].clear();
    }
    stream.retain(|d| !d.is_empty());
    let c = finished(HealthMode::Ts, &stream);
    assert!(want >= 8, "{want}");
    assert_eq!((c.ts_cc_errors, c.ts_packets), (want, 496 * 7));
}

#[test]
fn ts_duplicates_discontinuities_transport_errors_and_sync() {
    let one = |pid, cc| ts(pid, cc, false, false, false);
    let packets = [
        one(256, 0),
        one(256, 1),
        one(256, 1), // a legal duplicate
        one(256, 2),
        one(256, 2),                    // legal
        one(256, 2),                    // a second repeat: error
        ts(256, 2, true, false, false), // AF only: stays
        ts(256, 3, true, false, false), // AF only but moved: error
        ts(256, 9, false, true, false), // discontinuity: may jump
        one(256, 10),
        ts(256, 11, false, false, true), // TEI, continuous
        one(0x1FFF, 5),                  // null: unchecked
        one(0x1FFF, 9),
        {
            let mut p = one(300, 0);
            p[3] &= 0x0F; // reserved afc: unchecked
            p
        },
        one(256, 12),
    ];
    let stream: Vec<Vec<u8>> = packets.to_vec();
    let c = finished(HealthMode::Ts, &stream);
    assert_eq!(
        (
            c.ts_packets,
            c.ts_duplicates,
            c.ts_cc_errors,
            c.ts_transport_errors,
            c.ts_sync_errors
        ),
        (15, 2, 2, 1, 0)
    );
    // Lost sync: a bad sync byte in the third packet, a datagram of 200
    // bytes, an empty one: each is one error and is not read.
    let mut bad = ts_stream(1).remove(0);
    bad[2 * TS_PACKET] = 0x48;
    let c = finished(HealthMode::Ts, &[bad, vec![TS_SYNC; 200], Vec::new()]);
    assert_eq!((c.ts_sync_errors, c.ts_packets), (3, 0));
}

#[test]
fn a_payload_in_pieces_reads_as_one() {
    let mut stream = ts_stream(60);
    stream.remove(30);
    let whole = finished(HealthMode::Ts, &stream);
    for cuts in [
        [1usize, 2, 3],
        [4, 188, 189],
        [5, 600, 1000],
        [187, 375, 1315],
    ] {
        let mut h = StreamHealth::new(HealthMode::Ts);
        let mut c = HealthCounters::default();
        for d in &stream {
            let mut p = Payload::new();
            let mut from = 0;
            for &cut in &cuts {
                p.push(&d[from..cut]);
                from = cut;
            }
            p.push(&d[from..]);
            if h.wants() {
                h.observe(&p, &mut c);
            }
        }
        h.finish(&mut c);
        assert_eq!(c, whole, "cuts {cuts:?}");
    }
    assert!(whole.ts_cc_errors > 0);
}

#[test]
fn auto_finds_each_kind_and_counts_from_its_first_datagram() {
    let c = finished(HealthMode::Auto, &ts_stream(100));
    assert_eq!((c.kind, c.ts_packets, c.errors()), (StreamKind::Ts, 700, 0));

    let mut rtp_seqs = rtp_stream(0u16..100);
    rtp_seqs.remove(50);
    let c = finished(HealthMode::Auto, &rtp_seqs);
    assert_eq!(
        (c.kind, c.rtp_packets, c.rtp_lost),
        (StreamKind::Rtp, 99, 1)
    );

    let rtp_ts: Vec<Vec<u8>> = ts_stream(100)
        .iter()
        .enumerate()
        .map(|(i, d)| rtp(i as u16, 9, 0, None, 0, d))
        .collect();
    let c = finished(HealthMode::Auto, &rtp_ts);
    assert_eq!(
        (c.kind, c.rtp_packets, c.ts_packets, c.errors()),
        (StreamKind::RtpTs, 100, 700, 0)
    );
}

#[test]
fn auto_never_counts_a_stream_that_is_neither() {
    // Market-data-like datagrams whose first byte often looks like RTP v2,
    // with numbers that do not follow: never locked, nothing counted.
    let mut x = 0x9E37_79B9u32;
    let mut rand = || {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        x
    };
    let stream: Vec<Vec<u8>> = (0..2000)
        .map(|_| (0..64).map(|_| rand() as u8).map(|b| b | 0x80).collect())
        .collect();
    let c = finished(HealthMode::Auto, &stream);
    assert_eq!(c, HealthCounters::default());
    let c = finished(HealthMode::Off, &ts_stream(10));
    assert_eq!(c, HealthCounters::default());
}

#[test]
fn auto_looks_again_when_the_stream_changes_kind() {
    let mut stream = ts_stream(50);
    stream.extend(rtp_stream(0u16..100));
    let c = finished(HealthMode::Auto, &stream);
    // The TS run, the RTP datagrams while still locked on TS (sync
    // errors), then RTP from the datagram after the unlock.
    assert_eq!(c.ts_packets, 350);
    assert_eq!(c.ts_sync_errors, u64::from(UNLOCK));
    assert_eq!(c.rtp_packets, 100 - u64::from(UNLOCK));
    assert_eq!((c.rtp_lost, c.kind), (0, StreamKind::Rtp));
}

#[test]
fn counters_of_two_workers_add_up() {
    let a = finished(HealthMode::Ts, &ts_stream(10));
    let mut sum = HealthCounters::default();
    sum.add(&a);
    sum.add(&HealthCounters::default());
    sum.add(&a);
    assert_eq!((sum.kind, sum.ts_packets), (StreamKind::Ts, 140));
    assert_eq!(a.fields().iter().map(|f| f.1).sum::<u64>(), 70);
}

#[test]
fn ts_inside_rtp_counts_only_what_rtp_does_not_explain() {
    let inner = ts_stream(300);
    let wrapped = |i: usize, d: &[u8]| rtp(i as u16, 5, 0, None, 0, d);
    // RTP 100 lost, 200 after 201, 150 twice: RTP counts them; TS, which
    // starts again after each RTP gap, counts none.
    let mut stream = Vec::new();
    for (i, d) in inner.iter().enumerate() {
        match i {
            100 | 200 => {}
            150 => stream.extend([wrapped(i, d), wrapped(i, d)]),
            201 => stream.extend([wrapped(201, d), wrapped(200, &inner[200])]),
            _ => stream.push(wrapped(i, d)),
        }
    }
    let c = finished(HealthMode::Rtp, &stream);
    assert_eq!(
        (
            c.rtp_lost,
            c.rtp_reordered,
            c.rtp_duplicates,
            c.ts_cc_errors
        ),
        (1, 1, 1, 0)
    );
    assert_eq!(c.ts_packets, 7 * (300 - 2));
    // A TS packet missing inside an RTP payload (before the packetizer)
    // with the RTP numbers running on: one continuity error, no RTP loss.
    let mut stream: Vec<Vec<u8>> = inner
        .iter()
        .enumerate()
        .map(|(i, d)| wrapped(i, d))
        .collect();
    let k = (0..7)
        .find(|&k| {
            let p = &inner[50][k * TS_PACKET..];
            p[3] & 0x10 != 0 && (u16::from(p[1] & 0x1F) << 8 | u16::from(p[2])) != 0x1FFF
        })
        .unwrap();
    stream[50].drain(12 + k * TS_PACKET..12 + (k + 1) * TS_PACKET);
    let c = finished(HealthMode::Rtp, &stream);
    assert_eq!(
        (c.rtp_lost, c.ts_cc_errors, c.ts_packets),
        (0, 1, 7 * 300 - 1)
    );
}

#[test]
fn auto_idles_on_a_stream_that_is_neither_and_still_finds_one_that_starts_later() {
    let mut h = StreamHealth::new(HealthMode::Auto);
    let mut c = HealthCounters::default();
    // 6400 datagrams that look like RTP but never follow: after IDLE of
    // them, one in IDLE is looked at (and the few after it).
    let mut looked = 0;
    for i in 0..6400u32 {
        let d = rtp((i * 7919) as u16, i, 0, None, 0, b"quote");
        if h.wants() {
            looked += 1;
            h.observe(&Payload::one(&d), &mut c);
        }
    }
    assert_eq!(c, HealthCounters::default());
    assert!(looked < 64 + 100 * (1 + 2 * LOCK as usize), "{looked}");
    // A real stream begins: found within IDLE + LOCK datagrams, counted
    // from the datagram its run began with.
    let stream = rtp_stream(1000u16..1200);
    let mut first_looked = None;
    for (i, d) in stream.iter().enumerate() {
        if h.wants() {
            first_looked.get_or_insert(i);
            h.observe(&Payload::one(d), &mut c);
        }
    }
    h.finish(&mut c);
    let from = first_looked.unwrap();
    assert!(from < IDLE as usize, "{from}");
    assert_eq!(c.kind, StreamKind::Rtp);
    assert_eq!((c.rtp_packets, c.rtp_lost), ((200 - from) as u64, 0));
}

/// Datagrams that are mostly RTP and TS, damaged at random: a byte
/// flipped anywhere (sync bytes, headers, lengths, padding counts).
fn damaged_datagrams() -> impl proptest::strategy::Strategy<Value = Vec<Vec<u8>>> {
    use proptest::prelude::*;
    let base: Vec<Vec<u8>> = ts_stream(40)
        .iter()
        .enumerate()
        .map(|(i, d)| {
            if i % 2 == 0 {
                rtp(i as u16, 3, 0, None, 0, d)
            } else {
                d.clone()
            }
        })
        .collect();
    proptest::collection::vec((0usize..40, 0usize..1400, any::<u8>(), 0usize..1400), 1..60)
        .prop_map(move |edits| {
            edits
                .into_iter()
                .map(|(i, at, byte, cut)| {
                    let mut d = base[i].clone();
                    if let Some(b) = d.get_mut(at) {
                        *b ^= byte;
                    }
                    d.truncate(cut.max(1));
                    d
                })
                .collect()
        })
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

    /// Whatever arrives, in whatever pieces: no panic, and a payload in
    /// pieces counts exactly as the same payload whole.
    #[test]
    fn any_input_in_any_pieces_counts_as_whole(
        stream in damaged_datagrams(),
        cuts in proptest::collection::vec(0usize..1400, 0..4),
        mode in proptest::sample::select(vec![HealthMode::Auto, HealthMode::Rtp, HealthMode::Ts]),
    ) {
        let whole = finished(mode, &stream);
        let mut h = StreamHealth::new(mode);
        let mut c = HealthCounters::default();
        for d in &stream {
            let mut cuts: Vec<usize> = cuts.iter().map(|&x| x.min(d.len())).collect();
            cuts.sort_unstable();
            let mut p = Payload::new();
            let mut from = 0;
            for &cut in &cuts {
                p.push(&d[from..cut]);
                from = cut;
            }
            p.push(&d[from..]);
            if h.wants() {
                h.observe(&p, &mut c);
            }
        }
        h.finish(&mut c);
        proptest::prop_assert_eq!(c, whole);
        // Every TS packet counted was whole, every RTP one a datagram.
        proptest::prop_assert!(whole.rtp_packets <= stream.len() as u64);
        proptest::prop_assert!(whole.ts_packets <= stream.iter().map(|d| (d.len() / TS_PACKET) as u64).sum());
    }
}
