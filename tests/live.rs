//! Live changes of a running `fanout run`, per engine: outputs added and
//! removed 100 times with `fanout ctl` while a paced stream runs, flows
//! added and removed, bad changes refused with the file's messages, and
//! SIGHUP applying the file's difference.
//!
//! What each test asserts, every datagram checked byte for byte:
//!
//! - the untouched outputs receive every datagram of the stream, in
//!   order, across all the changes (a kernel socket that verifies
//!   checksums accepts each);
//! - each output added receives a contiguous run of the stream from its
//!   first datagram on (no gap, no reordering), exactly as many as the
//!   engine counts sent for it, and nothing after it was removed (the
//!   stream runs on past each removal);
//! - after every change, `fanout ctl show --json` balances (sent + dropped
//!   == offered per output) and lists what is configured; the removed
//!   outputs stay in the final report, marked removed, with their counts;
//! - a bad change (`--ttl 300`, an unknown flow or output) exits 2 with
//!   the file's message located at the command, and nothing changes;
//! - a flow added with `fanout ctl add-flow` forwards at once and stops on
//!   `remove-flow`, on every engine; the XDP engine refuses (exit 1, and
//!   nothing changes) a flow on an ingress interface it did not start on;
//! - an output added on an egress interface the flow did not use at start
//!   (on XDP: a TX socket bound live) receives a contiguous run to the
//!   stream's end while the untouched output misses nothing;
//! - `ctl show` says which changes are runtime-only, and SIGHUP returns to
//!   the file, applying its difference live.
//!
//! Needs root and `ip netns`; the XDP runs the program
//! (`FANOUT_EBPF_OBJ`, or the release build). Otherwise they skip loudly,
//! or fail under `FANOUT_REQUIRE_PRIVILEGED=1`.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::DEADLINE;
use common::engine::{Case, EngineKind, for_each_engine};
use common::traffic::{Stream, check_exact, payloads, send_all, sender, unicast_receiver};
use fanout::lab::{addr, iface, wait_until};

const GROUP: &str = "239.7.4.1";
const RADIO: &str = "239.7.4.2";
/// The stream's id in the lab payloads, and its datagrams' size.
const STREAM: u32 = 41;
const LEN: usize = 1000;
/// Outputs added (and each removed again): 2 changes each.
const ADDED: usize = 50;

/// `ctl add-flow` of the radio flow on `interface` with one `--output`.
fn add_radio<'a>(interface: &'a str, output: &'a str) -> [&'a str; 11] {
    [
        "add-flow",
        "--name",
        "radio",
        "--interface",
        interface,
        "--group",
        RADIO,
        "--port",
        "5000",
        "--output",
        output,
    ]
}

/// The tv stream from the source, paced at about 1000 datagrams/s, at most
/// `count` datagrams and `max` long.
fn tv_stream(lab: &fanout::lab::Lab, count: u64, max: Duration) -> Stream {
    let tx = sender(&lab.src, (addr::SRC0_V4, 0));
    Stream::start(
        tx,
        SocketAddr::new(GROUP.parse().unwrap(), 5000),
        (STREAM, LEN),
        count,
        max,
    )
}

/// `ctl add-output` of unicast output `name` to `at` on flow tv (through
/// `interface`, else where the route says): exits 0 and says so.
fn add_output(
    case: &Case,
    sock: &std::path::Path,
    name: &str,
    at: SocketAddr,
    interface: Option<&str>,
) {
    let at_text = at.to_string();
    let mut args = vec!["add-output", "--flow", "tv", "--unicast", &at_text];
    if let Some(i) = interface {
        args.extend(["--interface", i]);
    }
    args.extend(["--name", name]);
    let (code, out, err) = case.ctl(sock, &args);
    assert_eq!(code, Some(0), "add {name}: {out}{err}");
    assert!(
        out.starts_with(&format!(
            "flow \"tv\": output \"{name}\" added (unicast {at})\n(runtime-only: "
        )),
        "{out}"
    );
}

/// `ctl show --json`.
fn show(case: &Case, socket: &std::path::Path) -> fanout::control::Show {
    let (code, out, err) = case.ctl(socket, &["show", "--json"]);
    assert_eq!(code, Some(0), "{err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

/// A receiver that collects on a thread of its own until stopped (so that
/// no socket buffer overflows while the test drives the changes).
struct Collector {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Vec<Vec<u8>>>,
}

impl Collector {
    fn start(sock: UdpSocket) -> Collector {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let thread = std::thread::spawn(move || {
            sock.set_read_timeout(Some(Duration::from_millis(50)))
                .unwrap();
            let mut got = Vec::new();
            let mut buf = vec![0u8; 65536];
            // Bounded by the stop flag, which the test sets before its end.
            loop {
                match sock.recv(&mut buf) {
                    Ok(n) => got.push(buf[..n].to_vec()),
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        ) =>
                    {
                        if s.load(Ordering::Relaxed) {
                            return got;
                        }
                    }
                    Err(e) => panic!("receive: {e}"),
                }
            }
        });
        Collector { stop, thread }
    }

    fn finish(self) -> Vec<Vec<u8>> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("the collector")
    }
}

/// The sequence numbers of `got`, each datagram checked byte for byte.
fn seqs(got: &[Vec<u8>], what: &str) -> Vec<u64> {
    got.iter().map(|d| check_exact(d, STREAM, what)).collect()
}

/// Asserts that `seqs` is one contiguous run; returns its first number.
fn contiguous(seqs: &[u64], what: &str) -> Option<u64> {
    let first = *seqs.first()?;
    for (i, s) in seqs.iter().enumerate() {
        assert_eq!(*s, first + i as u64, "{what}: datagram {i} out of the run");
    }
    Some(first)
}

fn config(kind: EngineKind) -> String {
    format!(
        r#"
[engine]
mode = "{mode}"
batch_size = 32

[[flow]]
name = "tv"
interface = "{in0}"
group = "{GROUP}"
port = 5000

  [[flow.output]]
  name = "a"
  unicast = "{snk0}:6401"
  interface = "{out0}"

  [[flow.output]]
  name = "b"
  unicast = "{snk1}:6402"
"#,
        mode = kind.mode(),
        in0 = iface::IN0,
        out0 = iface::OUT0,
        snk0 = addr::SNK0_V4,
        snk1 = addr::SNK1_V4,
    )
}

fn live_changes(test: &str, kind: EngineKind) {
    let Some(case) = Case::new(test, kind) else {
        return;
    };
    let lab = &case.lab;
    let a = Collector::start(unicast_receiver(&lab.sink, (addr::SNK0_V4, 6401)));
    let b = Collector::start(unicast_receiver(&lab.sink, (addr::SNK1_V4, 6402)));
    let added: Vec<(String, SocketAddr, Collector)> = (0..ADDED)
        .map(|j| {
            let at = SocketAddr::new(addr::SNK0_V4.into(), 6500 + j as u16);
            let rx = Collector::start(unicast_receiver(&lab.sink, at));
            (format!("c{j}"), at, rx)
        })
        .collect();
    let base = config(kind);
    let engine = case.start(&base);
    let sock = engine.control.clone();

    // About 1000 datagrams/s while the changes are made; bounded.
    let stream = tv_stream(lab, 200_000, Duration::from_secs(90));
    wait_until(DEADLINE, || (stream.sent() > 50).then_some(())).expect("the stream starts");

    // c{j} is added, then c{j-1} removed: two outputs overlap at each step.
    for (j, (name, at, _)) in added.iter().enumerate() {
        add_output(&case, &sock, name, *at, Some(iface::OUT0));
        if j > 0 {
            let gone = &added[j - 1].0;
            let (code, out, err) =
                case.ctl(&sock, &["remove-output", "--flow", "tv", "--output", gone]);
            assert_eq!(code, Some(0), "remove {gone}: {err}");
            assert!(
                out.starts_with(&format!("flow \"tv\": output \"{gone}\" removed\n")),
                "{out}"
            );
        }
        let s = show(&case, &sock);
        s.stats
            .check_accounting()
            .unwrap_or_else(|e| panic!("after change {j}: {e}"));
        let configured: Vec<&str> = s.flows[0].outputs.iter().map(|o| o.name.as_str()).collect();
        assert_eq!(configured, ["a", "b", name.as_str()], "after change {j}");
        assert_eq!(
            s.runtime_changes,
            [format!(
                "flow \"tv\": output \"{name}\" added (unicast {at})"
            )],
            "after change {j}"
        );
        // Each output gets a few datagrams before the next change.
        let f = s.stats.flow("tv").unwrap();
        let now = f.received;
        wait_until(DEADLINE, || {
            let s = show(&case, &sock);
            let o = s.stats.flow("tv")?.output(name)?.clone();
            (o.sent >= 3 && s.stats.flow("tv")?.received > now).then_some(())
        })
        .unwrap_or_else(|| panic!("{name} is sent to"));
    }
    let last = &added[ADDED - 1].0;
    let (code, _, err) = case.ctl(&sock, &["remove-output", "--flow", "tv", "--output", last]);
    assert_eq!(code, Some(0), "{err}");

    // Bad changes: the file's messages, exit 2, nothing changes.
    let before = show(&case, &sock);
    let (code, _, err) = case.ctl(
        &sock,
        &[
            "add-output",
            "--flow",
            "tv",
            "--unicast",
            "10.202.0.2:6999",
            "--ttl",
            "300",
        ],
    );
    assert_eq!(code, Some(2), "{err}");
    assert_eq!(
        err.trim_end(),
        "error: fanout ctl add-output: flow[0].output[2].ttl = 300: out of range (1..=255)"
    );
    let (code, _, err) = case.ctl(
        &sock,
        &[
            "add-output",
            "--flow",
            "nope",
            "--unicast",
            "10.202.0.2:6999",
        ],
    );
    assert_eq!(code, Some(2), "{err}");
    assert_eq!(
        err.trim_end(),
        "error: fanout ctl add-output: --flow = \"nope\": no such flow in the running \
         configuration (its flows: \"tv\")"
    );
    let (code, _, err) = case.ctl(&sock, &["remove-output", "--flow", "tv", "--output", "c0"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.starts_with(
            "error: fanout ctl remove-output: --output = \"c0\": flow \"tv\" has no \
                         such output (its outputs: \"a\", \"b\")"
        ),
        "{err}"
    );
    let after = show(&case, &sock);
    assert_eq!(
        after.flows, before.flows,
        "a refused change changes nothing"
    );
    assert!(
        after.runtime_changes.is_empty(),
        "{:?}",
        after.runtime_changes
    );

    let sent = stream.stop();
    // Everything sent is counted received, and reaches a and b.
    let mut s = show(&case, &sock);
    wait_until(DEADLINE, || {
        s = show(&case, &sock);
        let f = s.stats.flow("tv")?;
        (f.received == sent && f.output("a")?.sent == sent && f.output("b")?.sent == sent)
            .then_some(())
    })
    .unwrap_or_else(|| panic!("{sent} sent: {}", s.stats));

    // A flow added and removed while running.
    let output = format!("unicast={}:6403,ttl=9", addr::SNK1_V4);
    let add_flow = add_radio(iface::IN0, &output);
    let radio_rx = unicast_receiver(&lab.sink, (addr::SNK1_V4, 6403));
    let (code, out, err) = case.ctl(&sock, &add_flow);
    let radio = payloads(STREAM, 0, &[LEN], 20);
    let to_radio = SocketAddr::new(RADIO.parse().unwrap(), 5000);
    let radio_tx = sender(&lab.src, (addr::SRC0_V4, 0));
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.starts_with(&format!(
            "flow \"radio\" added ({RADIO}:5000 on {}, 1 output(s))\n",
            iface::IN0
        )),
        "{out}"
    );
    send_all(&radio_tx, to_radio, &radio);
    let got = common::traffic::receive(&radio_rx, radio.len());
    common::traffic::assert_stream("radio", &got, &radio);
    let (code, _, err) = case.ctl(&sock, &["remove-flow", "--flow", "radio"]);
    assert_eq!(code, Some(0), "{err}");
    let s = show(&case, &sock);
    assert_eq!(s.flows.len(), 1);
    let gone = s.stats.flows.iter().find(|f| f.name == "radio").unwrap();
    assert!(gone.removed, "{}", s.stats);
    assert_eq!(gone.received, 20, "{}", s.stats);
    let o = &gone.outputs[0];
    assert_eq!((o.sent, o.dropped_total()), (20, 0), "{}", s.stats);
    if kind.is_xdp() {
        // The program redirected exactly its datagrams to the workers.
        let xdp = gone.xdp.as_ref().expect("the program's counters");
        assert_eq!(
            (xdp.redirected, xdp.lost_before_worker),
            (20, 0),
            "{}",
            s.stats
        );
        // A flow on an interface the program does not run on is refused
        // whole, and the running plan stays.
        let (code, out, err) = case.ctl(&sock, &add_radio(iface::OUT0, &output));
        assert_eq!(code, Some(1), "{out}{err}");
        assert!(
            err.contains(&format!(
                "flow \"radio\" added on {}: the XDP engine attaches to its ingress \
                 interfaces ({}) only at start",
                iface::OUT0,
                iface::IN0
            )) && err.trim_end().ends_with("; the running plan stays"),
            "{err}"
        );
        assert_eq!(show(&case, &sock).flows.len(), 1);
    }
    // Not forwarded (any more): the group is left, or never joined. The
    // tv stream proves the path is up meanwhile.
    send_all(&radio_tx, to_radio, &radio);
    // The next datagram of the tv stream, after the reload.
    let probe = payloads(STREAM, sent, &[LEN], 1);
    let tv_rx_path = unicast_receiver(&lab.sink, (addr::SNK0_V4, 6404));
    // SIGHUP with an output added to the file: applied live, from the file.
    let with_d = base.replace(
        "  [[flow.output]]\n  name = \"b\"",
        &format!(
            "  [[flow.output]]\n  name = \"d\"\n  unicast = \"{}:6404\"\n  interface = \"{}\"\n\n  \
             [[flow.output]]\n  name = \"b\"",
            addr::SNK0_V4,
            iface::OUT0
        ),
    );
    std::fs::write(case.files.path("fanout.toml"), &with_d).unwrap();
    let pid = nix::unistd::Pid::from_raw(engine.process.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).unwrap();
    wait_until(DEADLINE, || {
        let s = show(&case, &sock);
        (s.flows[0].outputs.len() == 3 && s.runtime_changes.is_empty()).then_some(())
    })
    .expect("the reload adds d");
    let tv_tx = sender(&lab.src, (addr::SRC0_V4, 0));
    send_all(
        &tv_tx,
        SocketAddr::new(GROUP.parse().unwrap(), 5000),
        &probe,
    );
    let got = common::traffic::receive(&tv_rx_path, 1);
    common::traffic::assert_stream("d", &got, &probe);
    common::traffic::assert_empty(&radio_rx, "radio after its removal");

    let (snap, f) = engine.stop();
    assert!(
        f.stderr
            .contains("reload: flow \"tv\": output \"d\" added (unicast 10.202.0.2:6404)"),
        "{}",
        f.stderr
    );

    // The untouched outputs: every datagram, in order, byte-exact.
    let total = sent + 1;
    for (name, c) in [("a", a), ("b", b)] {
        let got = seqs(&c.finish(), name);
        assert_eq!(got, (0..total).collect::<Vec<_>>(), "{name}");
    }
    let tv = snap.flow("tv").unwrap();
    assert_eq!(tv.received, total, "{snap}");
    // Each added output: a contiguous run, as many as counted, then no more.
    for (name, _, c) in added {
        let got = seqs(&c.finish(), &name);
        let o = tv
            .outputs
            .iter()
            .find(|o| o.name == name)
            .unwrap_or_else(|| panic!("{name} in the final report\n{snap}"));
        assert!(o.removed, "{name}\n{snap}");
        assert_eq!(o.dropped_total(), 0, "{name}\n{snap}");
        assert_eq!(got.len() as u64, o.sent, "{name}\n{snap}");
        assert_eq!(o.offered, o.sent, "{name}\n{snap}");
        assert!(o.sent >= 3, "{name}\n{snap}");
        let first = contiguous(&got, &name).unwrap();
        assert!(first + o.sent <= sent, "{name}: beyond the stream");
    }
}

for_each_engine!(live_changes:
    outputs_and_flows_change_while_a_stream_runs,
    outputs_and_flows_change_while_a_stream_runs_xdp_native,
    outputs_and_flows_change_while_a_stream_runs_xdp_generic);

/// `mode = "auto"` with every flow on XDP: a flow added while running
/// starts the socket engine beside it (said in the log and in the engine's
/// name), forwards at once, and is removed again; the XDP flow's stream is
/// untouched throughout.
#[test]
fn auto_adds_a_flow_on_the_socket_engine_beside_xdp() {
    let test = "auto_adds_a_flow_on_the_socket_engine_beside_xdp";
    let Some(case) = Case::new(test, EngineKind::XdpNative) else {
        return;
    };
    let lab = &case.lab;
    let rx_a = unicast_receiver(&lab.sink, (addr::SNK0_V4, 6401));
    let config = config(EngineKind::XdpNative).replace("mode = \"xdp\"", "mode = \"auto\"");
    let engine = case.start(&config).expecting(
        "xdp native copy + socket",
        "fanout: engine xdp native copy",
        true,
    );
    let sock = engine.control.clone();
    let tv = SocketAddr::new(GROUP.parse().unwrap(), 5000);
    let tx = sender(&lab.src, (addr::SRC0_V4, 0));
    let first = payloads(STREAM, 0, &[LEN], 20);
    send_all(&tx, tv, &first);
    common::traffic::assert_stream("a", &common::traffic::receive(&rx_a, 20), &first);

    let radio_rx = unicast_receiver(&lab.sink, (addr::SNK1_V4, 6403));
    let output = format!("unicast={}:6403", addr::SNK1_V4);
    let (code, out, err) = case.ctl(&sock, &add_radio(iface::IN0, &output));
    assert_eq!(code, Some(0), "{err}");
    assert!(out.starts_with("flow \"radio\" added ("), "{out}");
    let s = show(&case, &sock);
    let engines: Vec<(&str, &str)> = s
        .stats
        .flows
        .iter()
        .map(|f| (f.name.as_str(), f.engine.as_str()))
        .collect();
    assert_eq!(
        engines,
        [("tv", "xdp native copy"), ("radio", "socket")],
        "{}",
        s.stats
    );
    assert_eq!(s.stats.engine, "xdp native copy + socket");
    let radio = payloads(STREAM, 0, &[LEN], 20);
    let to_radio = SocketAddr::new(RADIO.parse().unwrap(), 5000);
    send_all(&tx, to_radio, &radio);
    common::traffic::assert_stream("radio", &common::traffic::receive(&radio_rx, 20), &radio);
    let second = payloads(STREAM, 20, &[LEN], 20);
    send_all(&tx, tv, &second);
    common::traffic::assert_stream("a", &common::traffic::receive(&rx_a, 20), &second);

    let (code, _, err) = case.ctl(&sock, &["remove-flow", "--flow", "radio"]);
    assert_eq!(code, Some(0), "{err}");
    let (snap, f) = engine.stop();
    assert!(
        f.stderr.contains(
            "engine xdp native copy + socket (mode = \"auto\"; socket for the flows added while \
             running)"
        ),
        "{}",
        f.stderr
    );
    let radio = snap.flows.iter().find(|f| f.name == "radio").unwrap();
    assert!(radio.removed, "{snap}");
    assert_eq!((radio.received, radio.outputs[0].sent), (20, 20), "{snap}");
    let tv = snap.flow("tv").unwrap();
    assert_eq!(
        (tv.received, tv.output("a").unwrap().sent),
        (40, 40),
        "{snap}"
    );
}

/// A flow whose fields change (here its `health`) is removed and added
/// again: reloaded three times while a paced stream runs, its untouched
/// outputs still receive every datagram, in order, byte-exact (on XDP its
/// keys never leave `FLOWS`, so no datagram passes to the kernel), and its
/// four incarnations in the final report add up to the stream.
fn flow_changed_in_place(test: &str, kind: EngineKind) {
    let Some(case) = Case::new(test, kind) else {
        return;
    };
    let lab = &case.lab;
    let a = Collector::start(unicast_receiver(&lab.sink, (addr::SNK0_V4, 6401)));
    let b = Collector::start(unicast_receiver(&lab.sink, (addr::SNK1_V4, 6402)));
    let base = config(kind);
    let engine = case.start(&base);
    let sock = engine.control.clone();
    let stream = tv_stream(lab, 20_000, Duration::from_secs(60));
    let health_off = base.replace("port = 5000\n", "port = 5000\nhealth = \"off\"\n");
    assert_ne!(health_off, base);
    for (k, file) in [&health_off, &base, &health_off].into_iter().enumerate() {
        let at = stream.sent();
        wait_until(DEADLINE, || (stream.sent() > at + 200).then_some(())).expect("the stream runs");
        std::fs::write(case.files.path("fanout.toml"), file).unwrap();
        let (code, out, err) = case.ctl(&sock, &["reload"]);
        assert_eq!(code, Some(0), "reload {k}: {out}{err}");
        let s = show(&case, &sock);
        let tvs = s.stats.flows.iter().filter(|f| f.name == "tv").count();
        assert_eq!(tvs, k + 2, "reload {k}: {out}\n{}", s.stats);
    }
    let at = stream.sent();
    wait_until(DEADLINE, || (stream.sent() > at + 200).then_some(())).expect("the stream runs");
    let sent = stream.stop();
    let tv_sent = |s: &fanout::control::Show, name: &str| -> u64 {
        s.stats
            .flows
            .iter()
            .filter(|f| f.name == "tv")
            .filter_map(|f| f.output(name).map(|o| o.sent))
            .sum()
    };
    let mut s = show(&case, &sock);
    wait_until(DEADLINE, || {
        s = show(&case, &sock);
        (tv_sent(&s, "a") == sent && tv_sent(&s, "b") == sent).then_some(())
    })
    .unwrap_or_else(|| panic!("{sent} sent: {}", s.stats));
    let (snap, _) = engine.stop();
    for (name, c) in [("a", a), ("b", b)] {
        let got = seqs(&c.finish(), name);
        assert_eq!(got, (0..sent).collect::<Vec<_>>(), "{name}\n{snap}");
    }
    let tvs: Vec<_> = snap.flows.iter().filter(|f| f.name == "tv").collect();
    assert_eq!(tvs.len(), 4, "{snap}");
    assert_eq!(tvs.iter().filter(|f| f.removed).count(), 3, "{snap}");
    assert_eq!(tvs.iter().map(|f| f.received).sum::<u64>(), sent, "{snap}");
    for f in &tvs {
        assert!(f.received > 0, "{snap}");
        for o in &f.outputs {
            assert_eq!((o.sent, o.dropped_total()), (f.received, 0), "{snap}");
        }
    }
}

for_each_engine!(flow_changed_in_place:
    a_flow_changed_in_place_loses_nothing,
    a_flow_changed_in_place_loses_nothing_xdp_native,
    a_flow_changed_in_place_loses_nothing_xdp_generic);

/// Outputs added on egress interfaces that none of the flow's outputs used
/// at start: `b` routed through out1, and `back` through in0, the ingress
/// itself. On XDP every worker of the flow first gets a TX port there (a
/// socket bound live on out1, the receiving socket's own TX ring on in0;
/// said in the log, their kernel statistics in the snapshot). While a paced
/// stream runs, `a` receives every datagram in order, byte-exact, and each
/// added one a contiguous run from its first datagram to the stream's end,
/// exactly as many as counted sent.
fn output_on_a_new_egress(test: &str, kind: EngineKind) {
    let Some(case) = Case::new(test, kind) else {
        return;
    };
    let lab = &case.lab;
    let a = Collector::start(unicast_receiver(&lab.sink, (addr::SNK0_V4, 6401)));
    let added = [
        ("b", SocketAddr::new(addr::SNK1_V4.into(), 6402), &lab.sink),
        (
            "back",
            SocketAddr::new(addr::SRC0_V4.into(), 6409),
            &lab.src,
        ),
    ]
    .map(|(name, at, ns)| (name, at, Collector::start(unicast_receiver(ns, at))));
    let full = config(kind);
    let only_a = full
        .split("\n  [[flow.output]]\n  name = \"b\"")
        .next()
        .unwrap()
        .to_owned();
    assert_ne!(only_a, full);
    let engine = case.start(&only_a);
    let sock = engine.control.clone();
    let stream = tv_stream(lab, 20_000, Duration::from_secs(60));
    for (name, at, _) in &added {
        let at_stream = stream.sent();
        wait_until(DEADLINE, || (stream.sent() > at_stream + 200).then_some(()))
            .expect("the stream runs");
        add_output(&case, &sock, name, *at, None);
    }
    if kind.is_xdp() {
        // Every queue's snapshot (refreshed every 200 ms) lists the three.
        let mut s = show(&case, &sock);
        wait_until(DEADLINE, || {
            s = show(&case, &sock);
            let xdp = s.stats.xdp.as_ref()?;
            xdp.interfaces[0]
                .queues
                .iter()
                .all(|q| {
                    q.tx_sockets
                        .keys()
                        .eq([iface::IN0, iface::OUT0, iface::OUT1])
                })
                .then_some(())
        })
        .unwrap_or_else(|| panic!("TX sockets on in0, out0 and out1\n{}", s.stats));
    }
    let at = stream.sent();
    wait_until(DEADLINE, || (stream.sent() > at + 500).then_some(())).expect("the stream runs");
    let sent = stream.stop();
    let mut s = show(&case, &sock);
    wait_until(DEADLINE, || {
        s = show(&case, &sock);
        let f = s.stats.flow("tv")?;
        let done = |name| f.output(name).is_some_and(|o| o.sent == o.offered);
        (f.received == sent && f.output("a")?.sent == sent && done("b") && done("back"))
            .then_some(())
    })
    .unwrap_or_else(|| panic!("{sent} sent: {}", s.stats));
    let (snap, f) = engine.stop();
    if kind.is_xdp() {
        for (port, ifname) in [(1, iface::OUT1), (2, iface::IN0)] {
            let said = format!(
                "{} queue 0: TX port {port} added on {ifname} for a live change",
                iface::IN0
            );
            assert!(f.stderr.contains(&said), "{said}\n{}", f.stderr);
        }
    }
    let got = seqs(&a.finish(), "a");
    assert_eq!(got, (0..sent).collect::<Vec<_>>(), "a\n{snap}");
    let tv = snap.flow("tv").unwrap();
    for (name, _, c) in added {
        let o = tv.output(name).unwrap();
        assert_eq!(o.dropped_total(), 0, "{name}\n{snap}");
        assert!(o.sent >= 500, "{name}\n{snap}");
        let got = seqs(&c.finish(), name);
        assert_eq!(got.len() as u64, o.sent, "{name}\n{snap}");
        let first = contiguous(&got, name).unwrap();
        assert_eq!(first + o.sent, sent, "{name}: to the stream's end\n{snap}");
    }
}

for_each_engine!(output_on_a_new_egress:
    an_output_on_a_new_egress_interface_is_added_live,
    an_output_on_a_new_egress_interface_is_added_live_xdp_native,
    an_output_on_a_new_egress_interface_is_added_live_xdp_generic);
