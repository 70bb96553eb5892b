//! Privileged tests of the lab itself: it comes up with the promised
//! topology, multicast from the source reaches a socket joined on `in0` in the
//! edge namespace (IPv4 and IPv6, jumbo datagrams byte-exact), the egress links
//! carry unicast, and nothing with the prefix remains once the guard is gone.

mod common;

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket},
    time::Duration,
};

use common::Scratch;
use common::traffic::{datagram, multicast_receiver, recv_from_within, sender, unicast_receiver};
use fanout::lab::{self, Lab, addr, iface};

/// How long a datagram may take across the lab.
const WITHIN: Duration = Duration::from_secs(5);

/// Namespaces currently present whose name starts with `{prefix}-`.
fn namespaces_with(prefix: &str) -> Vec<String> {
    let out = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip netns list");
    assert!(out.status.success(), "ip netns list: {out:?}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(&format!("{prefix}-")))
        .map(str::to_owned)
        .collect()
}

/// Sends `payloads` from the source namespace to `group:port` and checks that
/// each arrives byte-exact on a socket joined on `in0` in the edge namespace.
fn multicast_reaches_edge(group: IpAddr, port: u16, sizes: &[usize]) {
    let test = format!("lab_multicast_{group}");
    if !lab::privileged(&test) {
        return;
    }
    let prefix = lab::unique_prefix("t");
    let lab = Lab::up(&prefix).expect("lab up");
    let rx = multicast_receiver(&lab.edge, group, port, iface::IN0);
    let tx = lab.src.run_in(|| {
        let any: SocketAddr = match group {
            IpAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
            IpAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
        };
        UdpSocket::bind(any).unwrap()
    });
    for (i, &size) in sizes.iter().enumerate() {
        let sent = datagram(1, i as u64, size);
        assert_eq!(tx.send_to(&sent, (group, port)).unwrap(), size);
        let (got, from) = recv_from_within(&rx, WITHIN, &format!("datagram {i}"));
        assert_eq!(got.len(), size, "length of datagram {i}");
        assert!(got == sent, "payload of datagram {i} differs");
        let expected_from: IpAddr = match group {
            IpAddr::V4(_) => addr::SRC0_V4.into(),
            IpAddr::V6(_) => addr::SRC0_V6.into(),
        };
        assert_eq!(from.ip(), expected_from);
    }
    drop((rx, tx));
    drop(lab);
    assert_eq!(namespaces_with(&prefix), Vec::<String>::new());
}

#[test]
fn lab_multicast_ipv4_reaches_in0() {
    // 8972 = 9000 - 20 (IPv4) - 8 (UDP): the largest unfragmented datagram.
    multicast_reaches_edge(Ipv4Addr::new(239, 10, 0, 1).into(), 5000, &[64, 1472, 8972]);
}

#[test]
fn lab_multicast_ipv6_reaches_in0() {
    // 8952 = 9000 - 40 (IPv6) - 8 (UDP); 8972 is fragmented by the source.
    let group = Ipv6Addr::new(0xff3e, 0, 0, 0, 0, 0, 0x10, 1);
    multicast_reaches_edge(group.into(), 5000, &[64, 1452, 8952, 8972]);
}

#[test]
fn lab_topology_and_unicast_egress() {
    if !lab::privileged("lab_topology_and_unicast_egress") {
        return;
    }
    let prefix = lab::unique_prefix("t");
    let lab = Lab::up(&prefix).expect("lab up");
    assert_eq!(lab.prefix(), prefix);
    let mut names = namespaces_with(&prefix);
    names.sort();
    assert_eq!(
        names,
        ["-edge", "-sink", "-src"].map(|s| format!("{prefix}{s}"))
    );
    for (ns, dev) in [
        (&lab.src, iface::SRC0),
        (&lab.edge, iface::IN0),
        (&lab.edge, iface::OUT0),
        (&lab.edge, iface::OUT1),
        (&lab.sink, iface::SNK0),
        (&lab.sink, iface::SNK1),
    ] {
        let link = ns.ip(&["-o", "link", "show", "dev", dev]).unwrap();
        assert!(link.contains("mtu 9000"), "{dev}: {link}");
        assert!(link.contains(",UP"), "{dev}: {link}");
        let rp = ns.exec(&["cat", &format!("/proc/sys/net/ipv4/conf/{dev}/rp_filter")]);
        assert_eq!(rp.unwrap().trim(), lab::STRICT_RP_FILTER, "{dev} rp_filter");
    }
    // Unicast out of each egress link to the sink, both address families.
    for (dst, src) in [
        (IpAddr::from(addr::SNK0_V4), IpAddr::from(addr::OUT0_V4)),
        (addr::SNK1_V4.into(), addr::OUT1_V4.into()),
        (addr::SNK0_V6.into(), addr::OUT0_V6.into()),
        (addr::SNK1_V6.into(), addr::OUT1_V6.into()),
    ] {
        let rx = unicast_receiver(&lab.sink, (dst, 6001));
        let tx = sender(&lab.edge, (src, 0));
        let sent = datagram(2, 7, 8900);
        tx.send_to(&sent, (dst, 6001)).unwrap();
        let (got, from) = recv_from_within(&rx, WITHIN, "unicast");
        assert!(got == sent, "{src} -> {dst}");
        assert_eq!(from.ip(), src);
    }
    drop(lab);
    assert!(namespaces_with(&prefix).is_empty());
}

#[test]
fn lab_down_removes_leftovers_and_tolerates_nothing() {
    if !lab::privileged("lab_down_removes_leftovers_and_tolerates_nothing") {
        return;
    }
    let prefix = lab::unique_prefix("t");
    assert_eq!(Lab::down(&prefix).unwrap(), Vec::<String>::new());
    let lab = Lab::up(&prefix).expect("lab up");
    // A crash: the guard never runs.
    std::mem::forget(lab);
    let mut removed = Lab::down(&prefix).unwrap();
    removed.sort();
    assert_eq!(
        removed,
        ["-edge", "-sink", "-src"].map(|s| format!("{prefix}{s}"))
    );
    assert!(namespaces_with(&prefix).is_empty());
    assert!(
        Lab::down("not-a-lab").is_err(),
        "prefixes outside fo- are refused"
    );
}

#[test]
fn lab_guard_cleans_up_on_panic() {
    if !lab::privileged("lab_guard_cleans_up_on_panic") {
        return;
    }
    let prefix = lab::unique_prefix("t");
    let p = prefix.clone();
    let result = std::panic::catch_unwind(move || {
        let _lab = Lab::up(&p).expect("lab up");
        panic!("test body failed");
    });
    assert!(result.is_err());
    assert!(namespaces_with(&prefix).is_empty());
}

/// `fanout gen` in the source namespace to `fanout sink` in the edge
/// namespace over the lab's multicast route (IPv4 and IPv6 groups joined on
/// `in0`), and unicast from the edge to the sink namespace: every datagram
/// arrives intact, and the sink's report accounts for each one.
#[test]
fn lab_tools_gen_to_sink() {
    use fanout::lab::Process;
    use fanout::lab::SinkReport;

    if !lab::privileged("lab_tools_gen_to_sink") {
        return;
    }
    let bin = common::FANOUT;
    let prefix = lab::unique_prefix("t");
    let lab = Lab::up(&prefix).expect("lab up");
    let files = Scratch::new(&prefix);
    let count = 300u64;

    struct Case<'a> {
        tx_ns: &'a lab::Netns,
        rx_ns: &'a lab::Netns,
        dest: String,
        tx_if: &'static str,
        join: Option<String>,
        sizes: &'static str,
    }
    let cases = [
        Case {
            tx_ns: &lab.src,
            rx_ns: &lab.edge,
            dest: "239.10.0.1:5000".into(),
            tx_if: iface::SRC0,
            join: Some(format!("239.10.0.1@{}", iface::IN0)),
            sizes: "64,1472,8972",
        },
        Case {
            tx_ns: &lab.src,
            rx_ns: &lab.edge,
            dest: "[ff3e::10:1]:5000".into(),
            tx_if: iface::SRC0,
            join: Some(format!("ff3e::10:1@{}", iface::IN0)),
            sizes: "64,1452,8952",
        },
        Case {
            tx_ns: &lab.edge,
            rx_ns: &lab.sink,
            dest: format!("{}:6001", addr::SNK0_V4),
            tx_if: iface::OUT0,
            join: None,
            sizes: "24,8972",
        },
    ];
    for (i, case) in cases.iter().enumerate() {
        let Case {
            tx_ns,
            rx_ns,
            dest,
            tx_if,
            join,
            sizes,
        } = case;
        let report = files.path(&format!("report{i}.json"));
        let ready = files.path(&format!("ready{i}"));
        let mut cmd = rx_ns.command(bin);
        cmd.args([
            "lab",
            "sink",
            "--listen",
            dest,
            "--expect",
            &count.to_string(),
        ])
        .args(["--timeout", "5", "--max-seconds", "30"])
        .arg("--report")
        .arg(&report)
        .arg("--ready-file")
        .arg(&ready);
        if let Some(join) = join {
            cmd.args(["--join", join]);
        }
        let mut sink = Process::spawn("sink", &mut cmd).unwrap();
        lab::wait_until(Duration::from_secs(10), || ready.exists().then_some(()))
            .expect("sink ready within 10 s");
        let mut gen_cmd = tx_ns.command(bin);
        gen_cmd
            .args([
                "lab", "gen", "--dest", dest, "--iface", tx_if, "--sizes", sizes,
            ])
            .args([
                "--count",
                &count.to_string(),
                "--rate",
                "3000",
                "--stream",
                "7",
            ])
            .args(["--max-seconds", "20"]);
        let sent = Process::spawn("gen", &mut gen_cmd)
            .unwrap()
            .finish(Duration::from_secs(30))
            .unwrap();
        assert!(sent.status.success(), "gen to {dest}: {sent:?}");
        let done = sink.finish(Duration::from_secs(30)).unwrap();
        assert!(done.status.success(), "sink on {dest}: {done:?}");
        let report: SinkReport =
            serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
        assert_eq!(report.stopped, "complete", "{dest}");
        assert_eq!(report.outputs.len(), 1);
        let out = &report.outputs[0];
        let sizes: Vec<u64> = sizes.split(',').map(|s| s.parse().unwrap()).collect();
        let bytes: u64 = (0..count)
            .map(|s| sizes[(s % sizes.len() as u64) as usize])
            .sum();
        assert_eq!(
            (out.expected, out.received, out.missing, out.duplicated),
            (count, count, 0, 0),
            "{dest}"
        );
        assert_eq!(
            (out.corrupted, out.unexpected, out.bytes),
            (0, 0, bytes),
            "{dest}"
        );
        assert_eq!(out.status(), "ok");
    }
    drop(files);
    drop(lab);
    assert!(namespaces_with(&prefix).is_empty());
}

/// The sink reports loss honestly: 10 datagrams fewer than expected end in an
/// idle timeout, exit code 1, and a report naming the missing sequence numbers.
#[test]
fn lab_tools_sink_reports_loss() {
    use fanout::lab::Process;
    use fanout::lab::SinkReport;

    if !lab::privileged("lab_tools_sink_reports_loss") {
        return;
    }
    let bin = common::FANOUT;
    let prefix = lab::unique_prefix("t");
    let lab = Lab::up(&prefix).expect("lab up");
    let files = Scratch::new(&prefix);
    let (report, ready) = (files.path("report.json"), files.path("ready"));
    let dest = format!("{}:6001", addr::SNK1_V4);
    let mut cmd = lab.sink.command(bin);
    cmd.args([
        "lab",
        "sink",
        "--listen",
        &dest,
        "--expect",
        "110",
        "--timeout",
        "1",
    ])
    .arg("--report")
    .arg(&report)
    .arg("--ready-file")
    .arg(&ready);
    let mut sink = Process::spawn("sink", &mut cmd).unwrap();
    lab::wait_until(Duration::from_secs(10), || ready.exists().then_some(()))
        .expect("sink ready within 10 s");
    let mut gen_cmd = lab.edge.command(bin);
    gen_cmd.args([
        "lab", "gen", "--dest", &dest, "--count", "100", "--rate", "5000",
    ]);
    let sent = Process::spawn("gen", &mut gen_cmd)
        .unwrap()
        .finish(Duration::from_secs(30))
        .unwrap();
    assert!(sent.status.success(), "{sent:?}");
    let done = sink.finish(Duration::from_secs(30)).unwrap();
    assert_eq!(done.status.code(), Some(1), "{done:?}");
    assert!(done.stdout.contains("LOSS"), "{}", done.stdout);
    let report: SinkReport =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(report.stopped, "idle-timeout");
    let out = &report.outputs[0];
    assert_eq!(out.name, dest);
    assert_eq!((out.expected, out.received, out.missing), (110, 100, 10));
    assert_eq!((out.duplicated, out.corrupted, out.unexpected), (0, 0, 0));
    assert_eq!(out.bytes, 100 * 1472);
    assert_eq!(out.first_missing, (100..110).collect::<Vec<u64>>());
}
