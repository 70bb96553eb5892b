//! Stream health end to end, once per engine: real streams made by ffmpeg
//! (MPEG-TS in RTP, MPEG-TS in jumbo UDP datagrams, Opus in RTP), captured
//! in the lab's source namespace, then sent to the edge with damage put in
//! on purpose (datagrams dropped, duplicated, reordered; a TS packet cut
//! out of an RTP payload; the transport error indicator set). The engine
//! must replicate every datagram as it came, byte for byte and in order, and
//! count exactly the damage the test put in: the expected counts are worked
//! out here from the streams' own bytes, not by the checker's code.
//!
//! Privileged (root, `ip netns`): skips loudly without, fails under
//! `FANOUT_REQUIRE_PRIVILEGED=1`. ffmpeg comes with `cargo xtask setup`; a
//! machine without it fails, naming the fix.

mod common;

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::DEADLINE;
use common::engine::{Case, EngineKind, assert_xdp_carried, for_each_engine};
use common::traffic::{drain, receive, send_all, sender, unicast_receiver};
use fanout::health::{HealthCounters, HealthMode, StreamKind};
use fanout::lab::{Netns, addr, iface};
use fanout::stats::Snapshot;

const TS: usize = 188;

/// Runs ffmpeg in `ns` with `args`, its output sent to `127.0.0.1:port`
/// there, and returns the datagrams it sent, in order.
fn ffmpeg_capture(ns: &Netns, args: &[&str], url: &str, port: u16) -> Vec<Vec<u8>> {
    let rx = unicast_receiver(ns, SocketAddr::from((Ipv4Addr::LOCALHOST, port)));
    let mut child = ns
        .command("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-nostdin"])
        .args(args)
        .arg(url)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("ffmpeg: {e} (cargo xtask setup installs it)"));
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("ffmpeg {args:?} ran for more than 60 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert!(status.success(), "ffmpeg {args:?}: {status}\n{err}");
    drain(&rx)
}

/// The ffmpeg input: 4 s of a test picture and a tone.
const AV: &[&str] = &[
    "-f",
    "lavfi",
    "-i",
    "testsrc=size=320x240:rate=25",
    "-f",
    "lavfi",
    "-i",
    "sine=frequency=1000:sample_rate=48000",
    "-t",
    "4",
    "-c:v",
    "mpeg2video",
    "-b:v",
    "2M",
    "-c:a",
    "mp2",
];

/// An RTP datagram's sequence number and payload (ffmpeg writes no CSRC,
/// extension or padding: checked).
fn rtp(d: &[u8]) -> (u16, &[u8]) {
    assert!(d.len() >= 12 && d[0] >> 6 == 2, "RTP v2: {:02x?}", &d[..4]);
    assert_eq!(d[0] & 0x3F, 0, "no padding, extension or CSRC");
    (u16::from_be_bytes([d[2], d[3]]), &d[12..])
}

fn pid(p: &[u8]) -> u16 {
    u16::from(p[1] & 0x1F) << 8 | u16::from(p[2])
}

/// Packets with a payload (their continuity counter counts), by PID, in
/// `ts` (whole packets): the null PID left out.
fn payload_packets(ts: &[u8]) -> Vec<(u16, usize)> {
    let mut counts = std::collections::BTreeMap::new();
    for p in ts.chunks(TS) {
        if p[3] & 0x10 != 0 && pid(p) != 0x1FFF {
            *counts.entry(pid(p)).or_insert(0usize) += 1;
        }
    }
    counts.into_iter().collect()
}

fn pids_after(stream: &[Vec<u8>], from: usize, ts_at: usize) -> BTreeSet<u16> {
    stream[from..]
        .iter()
        .flat_map(|d| d[ts_at..].chunks(TS).map(pid).collect::<Vec<_>>())
        .collect()
}

/// A datagram at or after `from` whose loss every continuity check sees
/// exactly: each PID it carries payload of has 1 to 14 such packets in it
/// (a loss of 0 or 15 modulo 16 looks continuous or like a legal
/// duplicate), and comes again later. Returns it and its PIDs.
fn cleanly_lost(stream: &[Vec<u8>], from: usize, ts_at: usize) -> (usize, usize) {
    (from..stream.len() / 2)
        .find_map(|i| {
            let pids = payload_packets(&stream[i][ts_at..]);
            let later = pids_after(stream, i + 1, ts_at);
            let clean = !pids.is_empty()
                && pids
                    .iter()
                    .all(|&(p, n)| !matches!(n % 16, 0 | 15) && later.contains(&p));
            clean.then_some((i, pids.len()))
        })
        .expect("a datagram to lose")
}

/// The picture and tone as MPEG-TS in RTP (12 + 7 x 188 bytes) and as
/// MPEG-TS in jumbo UDP datagrams (up to 47 packets), captured in `ns`.
fn av_captures(ns: &Netns) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let iptv = ffmpeg_capture(
        ns,
        &[AV, &["-f", "rtp_mpegts"]].concat(),
        "rtp://127.0.0.1:15004?pkt_size=1328",
        15004,
    );
    let jumbo = ffmpeg_capture(
        ns,
        &[AV, &["-f", "mpegts"]].concat(),
        "udp://127.0.0.1:15006?pkt_size=8836",
        15006,
    );
    (iptv, jumbo)
}

fn health(snap: &Snapshot, flow: &str) -> HealthCounters {
    snap.flow(flow).unwrap().health.counters
}

/// The scenario: three flows, each with its own damage.
fn damaged_streams(test: &str, kind: EngineKind) {
    let Some(case) = Case::new(test, kind) else {
        return;
    };
    let lab = &case.lab;

    // Real streams from ffmpeg, captured whole in the source namespace.
    let (iptv, jumbo) = av_captures(&lab.src);
    let opus = ffmpeg_capture(
        &lab.src,
        &[
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:sample_rate=48000",
            "-t",
            "4",
            "-c:a",
            "libopus",
            "-f",
            "rtp",
        ],
        "rtp://127.0.0.1:15008",
        15008,
    );
    // The captures are whole: consecutive RTP numbers, whole TS packets.
    for (name, s) in [("iptv", &iptv), ("opus", &opus)] {
        let first = rtp(&s[0]).0;
        for (i, d) in s.iter().enumerate() {
            assert_eq!(
                rtp(d).0,
                first.wrapping_add(i as u16),
                "{name} capture: datagram {i}"
            );
        }
    }
    assert!(
        iptv.len() >= 300 && opus.len() >= 150,
        "{} {}",
        iptv.len(),
        opus.len()
    );
    assert!(iptv.iter().all(|d| d.len() == 12 + 7 * TS && d[12] == 0x47));
    assert!(jumbo.iter().all(|d| d.len() % TS == 0 && d[0] == 0x47));
    assert!(
        jumbo.iter().any(|d| d.len() == 47 * TS),
        "jumbo datagrams: {:?}",
        jumbo.iter().map(Vec::len).collect::<BTreeSet<_>>()
    );

    // iptv (MPEG-TS in RTP, health = auto): 40 and 90 lost, 60 twice, 121
    // before 120, one TS packet cut out of 150's payload (upstream of the
    // RTP: the RTP numbers run on), the transport error indicator in 170.
    let cut_at = (0..7)
        .find(|&k| {
            let p = &iptv[150][12 + k * TS..12 + (k + 1) * TS];
            p[3] & 0x10 != 0 && pid(p) != 0x1FFF && pids_after(&iptv, 151, 12).contains(&pid(p))
        })
        .expect("a TS packet to cut");
    let mut sent_iptv: Vec<Vec<u8>> = Vec::new();
    let mut ts_checked = 0u64;
    for (i, d) in iptv.iter().enumerate() {
        let mut d = d.clone();
        match i {
            40 | 90 => continue,
            150 => {
                d.drain(12 + cut_at * TS..12 + (cut_at + 1) * TS);
            }
            170 => d[12 + 3 * TS + 1] |= 0x80,
            _ => {}
        }
        // What the TS check reads: each RTP datagram that is new (not
        // the duplicate, not the late 120).
        if i != 120 {
            ts_checked += ((d.len() - 12) / TS) as u64;
        }
        match i {
            60 => sent_iptv.extend([d.clone(), d]),
            120 => {}
            121 => sent_iptv.extend([d, iptv[120].clone()]),
            _ => sent_iptv.push(d),
        }
    }
    let want_iptv = HealthCounters {
        kind: StreamKind::RtpTs,
        rtp_packets: sent_iptv.len() as u64,
        rtp_lost: 2,
        rtp_reordered: 1,
        rtp_duplicates: 1,
        ts_packets: ts_checked,
        ts_cc_errors: 1,
        ts_transport_errors: 1,
        ..HealthCounters::default()
    };

    // jumbo (MPEG-TS in UDP up to 8836 bytes, health = ts): one datagram
    // lost (one error per PID it carried), the transport error indicator
    // set in another.
    let (lost, lost_pids) = cleanly_lost(&jumbo, 20, 0);
    let tei = lost + 5;
    let sent_jumbo: Vec<Vec<u8>> = jumbo
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != lost)
        .map(|(i, d)| {
            let mut d = d.clone();
            if i == tei {
                d[1] |= 0x80;
            }
            d
        })
        .collect();
    let want_jumbo = HealthCounters {
        kind: StreamKind::Ts,
        ts_packets: sent_jumbo.iter().map(|d| (d.len() / TS) as u64).sum(),
        ts_cc_errors: lost_pids as u64,
        ts_transport_errors: 1,
        ..HealthCounters::default()
    };

    // opus (RTP, health = auto): 30 and 31 lost, 50 three times, 80 after
    // 85.
    let mut sent_opus: Vec<Vec<u8>> = Vec::new();
    for (i, d) in opus.iter().enumerate() {
        match i {
            30 | 31 | 80 => {}
            50 => sent_opus.extend([d.clone(), d.clone(), d.clone()]),
            85 => sent_opus.extend([d.clone(), opus[80].clone()]),
            _ => sent_opus.push(d.clone()),
        }
    }
    let want_opus = HealthCounters {
        kind: StreamKind::Rtp,
        rtp_packets: sent_opus.len() as u64,
        rtp_lost: 2,
        rtp_reordered: 1,
        rtp_duplicates: 2,
        ..HealthCounters::default()
    };

    let flows = [
        (
            "iptv",
            Ipv4Addr::new(239, 5, 0, 1),
            6001u16,
            "auto",
            &sent_iptv,
        ),
        (
            "jumbo",
            Ipv4Addr::new(239, 5, 0, 2),
            6002,
            "ts",
            &sent_jumbo,
        ),
        (
            "opus",
            Ipv4Addr::new(239, 5, 0, 3),
            6003,
            "auto",
            &sent_opus,
        ),
    ];
    let mut config = format!("[engine]\nmode = \"{}\"\n", kind.mode());
    for (name, group, port, health, _) in &flows {
        config += &format!(
            "\n[[flow]]\nname = \"{name}\"\ninterface = \"{}\"\ngroup = \"{group}\"\n\
             port = 5004\nhealth = \"{health}\"\n\n  [[flow.output]]\n  unicast = \"{}:{port}\"\n",
            iface::IN0,
            addr::SNK0_V4,
        );
    }
    let engine = case.start_with(&config, &["--stats-interval", "1"]);
    let tx = sender(&lab.src, (addr::SRC0_V4, 0));
    for (name, group, port, _, sent) in &flows {
        let rx = unicast_receiver(&lab.sink, SocketAddr::new(addr::SNK0_V4.into(), *port));
        send_all(&tx, SocketAddr::new(IpAddr::V4(*group), 5004), sent);
        // Every datagram replicated as it came: byte for byte, in order.
        let got = receive(&rx, sent.len());
        assert_eq!(got.len(), sent.len(), "{name}: replicas");
        for (i, ((g, _), s)) in got.iter().zip(sent.iter()).enumerate() {
            assert!(g == s, "{name}: replica {i} differs");
        }
        assert!(
            drain(&rx).is_empty(),
            "{name}: more replicas than datagrams"
        );
        // Until the engine has counted them all (its JSON, every second).
        let deadline = Instant::now() + DEADLINE;
        while !engine
            .stats()
            .and_then(|s| s.flow(name).map(|f| f.received == sent.len() as u64))
            .unwrap_or(false)
        {
            assert!(Instant::now() < deadline, "{name}: {:?}", engine.stats());
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    // While it runs, what the window has settled shows in the JSON.
    let live = engine.stats().unwrap();
    assert_eq!(health(&live, "jumbo"), want_jumbo, "{live}");
    assert_eq!(health(&live, "opus").rtp_duplicates, 2, "{live}");

    let (snap, done) = engine.stop();
    for (name, want) in [
        ("iptv", want_iptv),
        ("jumbo", want_jumbo),
        ("opus", want_opus),
    ] {
        let f = snap.flow(name).unwrap();
        assert_eq!(f.health.counters, want, "{name}:\n{snap}");
        assert_eq!(
            f.health.mode,
            if name == "jumbo" {
                HealthMode::Ts
            } else {
                HealthMode::Auto
            }
        );
        assert!(
            done.stdout
                .contains(&format!("  health: {} (", want.kind.name())),
            "the table shows it:\n{}",
            done.stdout
        );
        // The operator is told, in the log.
        assert!(
            done.stderr.lines().any(|l| l.contains(&format!(
                "flow {name}: the {} stream arrived damaged: ",
                want.kind.name()
            ))),
            "{name}: told in the log:\n{}",
            done.stderr
        );
    }
    let total: u64 = flows.iter().map(|f| f.4.len() as u64).sum();
    assert_xdp_carried(&snap, kind, total, 1);
}

for_each_engine!(damaged_streams:
    damaged_streams_are_counted_exactly,
    damaged_streams_are_counted_exactly_xdp_native,
    damaged_streams_are_counted_exactly_xdp_generic);

/// The same three real streams, sent whole: every health counter but the
/// packet counts is zero, and the log says nothing of damage.
fn clean_streams(test: &str, kind: EngineKind) {
    let Some(case) = Case::new(test, kind) else {
        return;
    };
    let lab = &case.lab;
    let (iptv, jumbo) = av_captures(&lab.src);
    let flows = [
        ("iptv", Ipv4Addr::new(239, 5, 0, 1), 6001u16, &iptv),
        ("jumbo", Ipv4Addr::new(239, 5, 0, 2), 6002, &jumbo),
    ];
    let mut config = format!("[engine]\nmode = \"{}\"\n", kind.mode());
    for (name, group, port, _) in &flows {
        config += &format!(
            "\n[[flow]]\nname = \"{name}\"\ninterface = \"{}\"\ngroup = \"{group}\"\n\
             port = 5004\n\n  [[flow.output]]\n  unicast = \"{}:{port}\"\n",
            iface::IN0,
            addr::SNK0_V4,
        );
    }
    let engine = case.start(&config);
    let tx = sender(&lab.src, (addr::SRC0_V4, 0));
    for (name, group, port, sent) in &flows {
        let rx = unicast_receiver(&lab.sink, SocketAddr::new(addr::SNK0_V4.into(), *port));
        send_all(&tx, SocketAddr::new(IpAddr::V4(*group), 5004), sent);
        let got = receive(&rx, sent.len());
        assert_eq!(got.len(), sent.len(), "{name}: replicas");
        assert!(
            got.iter().zip(sent.iter()).all(|((g, _), s)| g == s),
            "{name}: bytes"
        );
    }
    let (snap, done) = engine.stop();
    let ts_packets =
        |s: &[Vec<u8>], at: usize| s.iter().map(|d| ((d.len() - at) / TS) as u64).sum();
    assert_eq!(
        health(&snap, "iptv"),
        HealthCounters {
            kind: StreamKind::RtpTs,
            rtp_packets: iptv.len() as u64,
            ts_packets: ts_packets(&iptv, 12),
            ..HealthCounters::default()
        },
        "{snap}"
    );
    assert_eq!(
        health(&snap, "jumbo"),
        HealthCounters {
            kind: StreamKind::Ts,
            ts_packets: ts_packets(&jumbo, 0),
            ..HealthCounters::default()
        },
        "{snap}"
    );
    assert!(!done.stderr.contains("arrived damaged"), "{}", done.stderr);
    assert_xdp_carried(&snap, kind, (iptv.len() + jumbo.len()) as u64, 1);
}

for_each_engine!(clean_streams:
    clean_streams_count_no_damage,
    clean_streams_count_no_damage_xdp_native,
    clean_streams_count_no_damage_xdp_generic);
