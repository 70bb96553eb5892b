//! The real XDP program alone: loaded into the kernel and fed crafted
//! frames through `BPF_PROG_TEST_RUN`, and attached to, detached from and
//! pinned on a veth in a namespace of its own.
//!
//! Contract checked through `BPF_PROG_TEST_RUN`: for every frame in the
//! corpus, the action the program returns, the frame it hands on (byte for
//! byte unchanged) and the delta of every per-CPU counter. No socket is put
//! in `XSKS`, so a matched datagram falls back to `XDP_PASS` (fail-open) and
//! is told apart from an unmatched one by the `matched`/`no_socket`
//! counters.
//!
//! Contract checked on a veth (`common::xdp::Pair`): dropping the loaded
//! program detaches it; a pinned link keeps it attached after the program
//! is dropped, with its maps pinned beside it, until `unpin` removes the
//! pins (and a second `unpin` finds none). Across processes (a loader that
//! exits) see `tests/xdp_failopen.rs`.
//!
//! The object comes from `FANOUT_EBPF_OBJ`, else from the default output of
//! `cargo xtask build-ebpf --release` (`fanout::lab::xdp_object_path`).
//! Without the object or the privileges to load it, each test fails when
//! `FANOUT_REQUIRE_PRIVILEGED=1` and is skipped loudly otherwise. A verifier
//! rejection always fails.

mod common;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use common::xdp::{Bpffs, Pair, wait_detached, xdp_attached};
use fanout::lab;
use fanout::xdp::program::XdpProgram;
use fanout::xdp::worker::{Claim, layout};
use fanout_common::parse::{
    ETHERTYPE_IPV4, ETHERTYPE_IPV6, ETHERTYPE_QINQ, ETHERTYPE_VLAN, IPV6_DEST_OPTS,
    IPV6_HOP_BY_HOP, Passed as PassedStream, Verdict, classify,
};
use fanout_common::{
    COUNTERS_MAP, Counter, FLOW_COUNTERS_MAP, FLOWS_MAP, FlowCounter, FlowKey, FlowValue,
    INGRESS_MAP, Ingress, PROGRAM_NAME,
};
use libbpf_rs::{ErrorKind, MapCore, MapFlags, Object, ObjectBuilder, ProgramInput};

const XDP_PASS: u32 = 2;

const G4: Ipv4Addr = Ipv4Addr::new(239, 1, 1, 1);
const G4_SSM: Ipv4Addr = Ipv4Addr::new(232, 1, 1, 1);
const G6: Ipv6Addr = Ipv6Addr::new(0xff3e, 0, 0, 0, 0, 0, 0, 0x10);
const G6_SSM: Ipv6Addr = Ipv6Addr::new(0xff3e, 0, 0, 0, 0, 0, 0, 0x20);
const S4: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
/// The source of a second channel on `G4_SSM`.
const S4_OTHER_CHANNEL: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 3);
const S6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1);
const PORT: u16 = 5000;
const VLAN: u16 = 100;
/// The outer tag of the corpus's double-tagged flow (VLAN 100 inside 7).
const OUTER_VLAN: u16 = 7;

// ---------------------------------------------------------------- harness --

/// A test that cannot run: it fails under `FANOUT_REQUIRE_PRIVILEGED=1`,
/// else it is skipped loudly.
fn cannot_run(test: &str, reason: &str) -> Option<Harness> {
    let required = std::env::var("FANOUT_REQUIRE_PRIVILEGED").is_ok_and(|v| v == "1");
    assert!(!required, "{test}: {reason} (FANOUT_REQUIRE_PRIVILEGED=1)");
    lab::skip_loudly(test, reason);
    None
}

/// The loaded object with the flows of the corpus configured.
struct Harness {
    obj: Object,
}

impl Harness {
    fn load(test: &str) -> Option<Self> {
        let path = lab::xdp_object_path();
        if !path.is_file() {
            return cannot_run(
                test,
                &format!(
                    "no XDP object at {} (set FANOUT_EBPF_OBJ or run cargo xtask build-ebpf --release)",
                    path.display()
                ),
            );
        }
        let open = ObjectBuilder::default()
            .open_file(&path)
            .unwrap_or_else(|e| panic!("opening {}: {e}", path.display()));
        let obj = match open.load() {
            Ok(obj) => obj,
            Err(e) if e.kind() == ErrorKind::PermissionDenied => {
                return cannot_run(
                    test,
                    &format!("loading {} needs CAP_BPF: {e}", path.display()),
                );
            }
            Err(e) => panic!("the kernel refused {}: {e}", path.display()),
        };
        let h = Self { obj };
        for (key, value) in Self::flows() {
            h.add_flow(key, value);
        }
        Some(h)
    }

    /// The flows of the corpus, laid out by the engine's own
    /// [`layout`]: any-source flows on IPv4, IPv6 and a VLAN, and
    /// source-specific channels, two of them sharing `G4_SSM`.
    fn flows() -> Vec<(FlowKey, FlowValue)> {
        let claim = |id, group: IpAddr, vlan, source: Option<IpAddr>| Claim {
            id,
            group,
            port: PORT,
            vlan,
            outer_vlan: None,
            source,
        };
        layout(&[
            claim(1, G4.into(), None, None),
            claim(2, G6.into(), None, None),
            claim(3, G4.into(), Some(VLAN), None),
            claim(4, G4_SSM.into(), None, Some(S4.into())),
            claim(5, G6_SSM.into(), None, Some(S6.into())),
            claim(6, G4_SSM.into(), None, Some(S4_OTHER_CHANNEL.into())),
            Claim {
                outer_vlan: Some(OUTER_VLAN),
                ..claim(7, G4.into(), Some(VLAN), None)
            },
        ])
        .expect("the corpus's flows do not overlap")
    }

    /// The program's verdict for a datagram of `key` from `source`, as the
    /// flow table says it.
    fn verdict(flows: &[(FlowKey, FlowValue)], key: FlowKey, source: [u8; 16]) -> Outcome {
        let find = |k: FlowKey| flows.iter().find(|(e, _)| *e == k).map(|(_, v)| *v);
        match find(key) {
            None => Passed(Counter::NoFlow),
            Some(v) if v.is_by_source() && find(key.with_source(source)).is_none() => {
                Passed(Counter::SourceRejected)
            }
            Some(_) => Matched,
        }
    }

    fn add_flow(&self, key: FlowKey, value: FlowValue) {
        let map = self.map(FLOWS_MAP);
        map.update(&key.to_ne_bytes(), &value.to_ne_bytes(), MapFlags::ANY)
            .unwrap_or_else(|e| panic!("adding {key:?}: {e}"));
    }

    fn map(&self, name: &str) -> libbpf_rs::Map<'_> {
        self.obj
            .maps()
            .find(|m| m.name() == name)
            .unwrap_or_else(|| panic!("map {name} missing from the object"))
    }

    /// Every counter, summed over the CPUs.
    fn counters(&self) -> [u64; Counter::COUNT as usize] {
        let map = self.map(COUNTERS_MAP);
        Counter::ALL.map(|c| {
            let per_cpu = map
                .lookup_percpu(&c.index().to_ne_bytes(), MapFlags::ANY)
                .unwrap_or_else(|e| panic!("reading counter {}: {e}", c.name()))
                .unwrap_or_else(|| panic!("counter {} missing", c.name()));
            per_cpu
                .iter()
                .map(|v| u64::from_ne_bytes(v[..8].try_into().unwrap()))
                .sum()
        })
    }

    /// Every flow's counters (flow ids 0..=7: the corpus's and a few more),
    /// summed over the CPUs.
    fn flow_counters(&self) -> Vec<(u32, &'static str, u64)> {
        let map = self.map(FLOW_COUNTERS_MAP);
        let mut out = Vec::new();
        for flow in 0..8 {
            for c in FlowCounter::ALL {
                let slot = c.slot(flow).unwrap();
                let per_cpu = map
                    .lookup_percpu(&slot.to_ne_bytes(), MapFlags::ANY)
                    .unwrap_or_else(|e| panic!("reading flow {flow} {}: {e}", c.name()))
                    .unwrap_or_else(|| panic!("flow {flow} {} missing", c.name()));
                let n = per_cpu
                    .iter()
                    .map(|v| u64::from_ne_bytes(v[..8].try_into().unwrap()))
                    .sum();
                out.push((flow, c.name(), n));
            }
        }
        out
    }

    /// The flow counter a frame with `outcome` moves: its flow's, as the
    /// corpus's table says it (a first fragment and a datagram behind IPv6
    /// extension headers name their stream; later fragments none).
    fn flow_effect(frame: &[u8], outcome: Outcome) -> Option<(u32, FlowCounter)> {
        let flows = Self::flows();
        let find = |k: FlowKey| flows.iter().find(|(e, _)| *e == k).map(|(_, v)| *v);
        let flow = |p: PassedStream| {
            let v = find(p.key)?;
            if v.is_by_source() {
                find(p.key.with_source(p.source)).map(|c| c.flow_id)
            } else {
                Some(v.flow_id)
            }
        };
        let (stream, counter) = match (classify(frame), outcome) {
            (Verdict::Udp(d), Matched) => (d, FlowCounter::NoSocket),
            (Verdict::Udp(d), Passed(Counter::OtherHost)) => (d, FlowCounter::OtherHost),
            (Verdict::Udp(d), Passed(Counter::Oversize)) => (d, FlowCounter::Oversize),
            (Verdict::Fragment(Some(p)), _) => return flow(p).map(|f| (f, FlowCounter::Fragment)),
            (Verdict::ExtHeaders(p), _) => return flow(p).map(|f| (f, FlowCounter::ExtHeaders)),
            _ => return None,
        };
        let p = PassedStream {
            key: stream.key,
            source: stream.source,
        };
        flow(p).map(|f| (f, counter))
    }

    /// Runs the program once on `frame`; returns its action and the frame it
    /// handed on.
    fn run(&self, frame: &[u8]) -> libbpf_rs::Result<(u32, Vec<u8>)> {
        let prog = self
            .obj
            .progs_mut()
            .find(|p| p.name() == PROGRAM_NAME)
            .unwrap_or_else(|| panic!("program {PROGRAM_NAME} missing from the object"));
        let mut out = vec![0u8; frame.len() + 256];
        let input = ProgramInput {
            data_in: Some(frame),
            data_out: Some(&mut out),
            repeat: 1,
            ..Default::default()
        };
        let output = prog.test_run(input)?;
        let action = output.return_value;
        let data = output.data.map(|d| d.to_vec()).unwrap_or_default();
        Ok((action, data))
    }

    /// Runs `frame` and asserts: `XDP_PASS`, the frame unchanged, and the
    /// counters moved by exactly `seen`, `passed` and those of `outcome`.
    fn expect(&self, what: &str, frame: &[u8], outcome: Outcome) {
        let effect = Self::flow_effect(frame, outcome);
        self.expect_flow(what, frame, outcome, effect);
    }

    /// [`Harness::expect`], and of the flows' counters exactly `effect`
    /// moved by one.
    fn expect_flow(
        &self,
        what: &str,
        frame: &[u8],
        outcome: Outcome,
        effect: Option<(u32, FlowCounter)>,
    ) {
        let flows_before = self.flow_counters();
        let before = self.counters();
        let (action, out) = self
            .run(frame)
            .unwrap_or_else(|e| panic!("{what}: test run failed: {e}"));
        let after = self.counters();
        assert_eq!(action, XDP_PASS, "{what}: action");
        assert_eq!(out.len(), frame.len(), "{what}: output length");
        assert!(out == frame, "{what}: the program changed the frame");
        let mut want = [0u64; Counter::COUNT as usize];
        want[Counter::Seen.index() as usize] = 1;
        want[Counter::Passed.index() as usize] = 1;
        for c in outcome.counters() {
            want[c.index() as usize] += 1;
        }
        let got: Vec<(&str, u64)> = Counter::ALL
            .iter()
            .map(|c| {
                (
                    c.name(),
                    after[c.index() as usize] - before[c.index() as usize],
                )
            })
            .collect();
        let want: Vec<(&str, u64)> = Counter::ALL
            .iter()
            .map(|c| (c.name(), want[c.index() as usize]))
            .collect();
        assert_eq!(got, want, "{what}: counter deltas");
        let moved: Vec<(u32, &str, u64)> = self
            .flow_counters()
            .into_iter()
            .zip(flows_before)
            .filter(|(a, b)| a.2 != b.2)
            .map(|(a, b)| (a.0, a.1, a.2 - b.2))
            .collect();
        let want: Vec<(u32, &str, u64)> =
            effect.map(|(f, c)| (f, c.name(), 1)).into_iter().collect();
        assert_eq!(moved, want, "{what}: flow counter deltas");
    }
}

/// What the program should make of a frame (the action is always `XDP_PASS`
/// here, since no AF_XDP socket is registered).
#[derive(Debug, Clone, Copy)]
enum Outcome {
    /// Matched a flow; no socket on queue 0, so passed (fail-open).
    Matched,
    /// Passed for this reason.
    Passed(Counter),
}

impl Outcome {
    fn counters(self) -> Vec<Counter> {
        match self {
            Outcome::Matched => vec![Counter::Matched, Counter::NoSocket],
            Outcome::Passed(c) => vec![c],
        }
    }
}

// ---------------------------------------------------------- frame builder --

/// A tiny frame builder: Ethernet, VLAN tags, IPv4 (IHL, flags) or IPv6, UDP.
#[derive(Debug, Clone)]
struct Spec {
    tags: Vec<(u16, u16)>,
    src: IpAddr,
    dst: IpAddr,
    dport: u16,
    payload: usize,
    ihl: u8,
    protocol: u8,
    frag: u16,
    /// IPv6 extension headers between the IPv6 and UDP headers.
    ext: Vec<u8>,
}

impl Spec {
    fn v4(dst: Ipv4Addr) -> Self {
        Self {
            tags: vec![],
            src: S4.into(),
            dst: dst.into(),
            dport: PORT,
            payload: 32,
            ihl: 5,
            protocol: 17,
            frag: 0x4000, // don't fragment
            ext: vec![],
        }
    }

    fn v6(dst: Ipv6Addr) -> Self {
        Self {
            src: S6.into(),
            dst: dst.into(),
            frag: 0,
            ..Self::v4(G4)
        }
    }

    fn src(mut self, src: impl Into<IpAddr>) -> Self {
        self.src = src.into();
        self
    }
    fn tag(mut self, tpid: u16, vid: u16) -> Self {
        self.tags.push((tpid, vid));
        self
    }
    fn port(mut self, port: u16) -> Self {
        self.dport = port;
        self
    }
    fn payload(mut self, len: usize) -> Self {
        self.payload = len;
        self
    }
    fn ihl(mut self, ihl: u8) -> Self {
        self.ihl = ihl;
        self
    }
    fn protocol(mut self, protocol: u8) -> Self {
        self.protocol = protocol;
        self
    }
    fn frag(mut self, frag: u16) -> Self {
        self.frag = frag;
        self
    }
    /// IPv6: `ext` (whole headers, UDP last) behind the IPv6 header, whose
    /// next header becomes `first`.
    fn ext(mut self, first: u8, ext: &[u8]) -> Self {
        self.protocol = first;
        self.ext = ext.to_vec();
        self
    }

    fn build(&self) -> Vec<u8> {
        let mut f = Vec::with_capacity(self.payload + 100);
        f.extend_from_slice(&multicast_mac(self.dst));
        f.extend_from_slice(&[0x02, 0, 0, 0, 0, 0x01]);
        for &(tpid, vid) in &self.tags {
            f.extend_from_slice(&tpid.to_be_bytes());
            f.extend_from_slice(&vid.to_be_bytes());
        }
        let udp_len = u16::try_from(8 + self.payload).unwrap();
        let mut udp = Vec::with_capacity(8 + self.payload);
        udp.extend_from_slice(&4000u16.to_be_bytes());
        udp.extend_from_slice(&self.dport.to_be_bytes());
        udp.extend_from_slice(&udp_len.to_be_bytes());
        udp.extend_from_slice(&[0, 0]);
        udp.extend((0..self.payload).map(|i| (i * 7) as u8));
        match (self.src, self.dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                let hlen = usize::from(self.ihl.max(5)) * 4;
                let mut h = vec![0u8; hlen];
                h[0] = 0x40 | self.ihl;
                h[2..4].copy_from_slice(&u16::try_from(hlen + udp.len()).unwrap().to_be_bytes());
                h[4..6].copy_from_slice(&0x1234u16.to_be_bytes());
                h[6..8].copy_from_slice(&self.frag.to_be_bytes());
                h[8] = 16;
                h[9] = self.protocol;
                h[12..16].copy_from_slice(&s.octets());
                h[16..20].copy_from_slice(&d.octets());
                h[20..].fill(1); // NOP options
                let c = !fold(sum(&h));
                h[10..12].copy_from_slice(&c.to_be_bytes());
                let mut pseudo = Vec::new();
                pseudo.extend_from_slice(&s.octets());
                pseudo.extend_from_slice(&d.octets());
                pseudo.extend_from_slice(&[0, 17]);
                pseudo.extend_from_slice(&udp_len.to_be_bytes());
                udp_checksum(&pseudo, &mut udp);
                f.extend_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
                f.extend_from_slice(&h);
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                let mut pseudo = Vec::new();
                pseudo.extend_from_slice(&s.octets());
                pseudo.extend_from_slice(&d.octets());
                pseudo.extend_from_slice(&u32::from(udp_len).to_be_bytes());
                pseudo.extend_from_slice(&[0, 0, 0, 17]);
                udp_checksum(&pseudo, &mut udp);
                f.extend_from_slice(&ETHERTYPE_IPV6.to_be_bytes());
                f.extend_from_slice(&[0x60, 0, 0, 0]);
                let payload = udp_len + u16::try_from(self.ext.len()).unwrap();
                f.extend_from_slice(&payload.to_be_bytes());
                f.extend_from_slice(&[self.protocol, 64]);
                f.extend_from_slice(&s.octets());
                f.extend_from_slice(&d.octets());
                f.extend_from_slice(&self.ext);
            }
            _ => panic!("mixed address families"),
        }
        f.extend_from_slice(&udp);
        f
    }
}

fn multicast_mac(group: IpAddr) -> [u8; 6] {
    match group {
        IpAddr::V4(g) => {
            let o = g.octets();
            [0x01, 0x00, 0x5e, o[1] & 0x7f, o[2], o[3]]
        }
        IpAddr::V6(g) => {
            let o = g.octets();
            [0x33, 0x33, o[12], o[13], o[14], o[15]]
        }
    }
}

fn sum(bytes: &[u8]) -> u32 {
    bytes
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum()
}

fn fold(mut s: u32) -> u16 {
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    s as u16
}

fn udp_checksum(pseudo: &[u8], udp: &mut [u8]) {
    let c = !fold(sum(pseudo) + sum(udp));
    let c = if c == 0 { 0xffff } else { c };
    udp[6..8].copy_from_slice(&c.to_be_bytes());
}

// ------------------------------------------------------------------ tests --

use Outcome::{Matched, Passed};

#[test]
fn matches_configured_ipv4_and_ipv6_flows() {
    let Some(h) = Harness::load("matches_configured_ipv4_and_ipv6_flows") else {
        return;
    };
    h.expect("ipv4", &Spec::v4(G4).build(), Matched);
    h.expect("ipv6", &Spec::v6(G6).build(), Matched);
    h.expect(
        "ipv4 empty payload",
        &Spec::v4(G4).payload(0).build(),
        Matched,
    );
    // Ethernet minimum-size padding after the datagram does not matter.
    let mut padded = Spec::v4(G4).payload(1).build();
    padded.resize(60, 0);
    h.expect("ipv4 padded to 60 bytes", &padded, Matched);
}

#[test]
fn vlan_tags_match_exactly_inner_and_outer() {
    let Some(h) = Harness::load("vlan_tags_match_exactly_inner_and_outer") else {
        return;
    };
    let one = Spec::v4(G4).tag(ETHERTYPE_VLAN, VLAN);
    h.expect("802.1Q vid 100", &one.build(), Matched);
    // Priority bits are not part of the VID.
    h.expect(
        "802.1Q pcp 5 vid 100",
        &Spec::v4(G4).tag(ETHERTYPE_VLAN, 0xa000 | VLAN).build(),
        Matched,
    );
    h.expect(
        "802.1Q vid 101",
        &Spec::v4(G4).tag(ETHERTYPE_VLAN, 101).build(),
        Passed(Counter::NoFlow),
    );
    // A priority tag (VID 0) is untagged.
    h.expect(
        "802.1Q vid 0",
        &Spec::v4(G4).tag(ETHERTYPE_VLAN, 0).build(),
        Matched,
    );
    // The outer tag is part of the key: S-VLAN 7 / C-VLAN 100 is the
    // double-tagged flow (id 7), not plain VLAN 100 (id 3); another outer
    // tag is no flow. An outer 802.1Q tag counts as an S-tag does.
    let two = Spec::v4(G4)
        .tag(ETHERTYPE_QINQ, OUTER_VLAN)
        .tag(ETHERTYPE_VLAN, VLAN);
    h.expect_flow(
        "QinQ 7/100",
        &two.build(),
        Matched,
        Some((7, FlowCounter::NoSocket)),
    );
    let two = Spec::v4(G4)
        .tag(ETHERTYPE_VLAN, OUTER_VLAN)
        .tag(ETHERTYPE_VLAN, VLAN);
    h.expect_flow(
        "802.1Q 7/100",
        &two.build(),
        Matched,
        Some((7, FlowCounter::NoSocket)),
    );
    let two = Spec::v4(G4)
        .tag(ETHERTYPE_QINQ, 8)
        .tag(ETHERTYPE_VLAN, VLAN);
    h.expect("QinQ 8/100", &two.build(), Passed(Counter::NoFlow));
    h.expect_flow(
        "802.1Q 100 alone",
        &Spec::v4(G4).tag(ETHERTYPE_VLAN, VLAN).build(),
        Matched,
        Some((3, FlowCounter::NoSocket)),
    );
    let two = Spec::v4(G4)
        .tag(ETHERTYPE_VLAN, VLAN)
        .tag(ETHERTYPE_VLAN, 200);
    h.expect("QinQ 100/200", &two.build(), Passed(Counter::NoFlow));
    // No VLAN-0 fallback: the IPv6 flow is configured untagged only.
    h.expect(
        "ipv6 vid 100",
        &Spec::v6(G6).tag(ETHERTYPE_VLAN, VLAN).build(),
        Passed(Counter::NoFlow),
    );
    let three = Spec::v4(G4)
        .tag(ETHERTYPE_QINQ, 1)
        .tag(ETHERTYPE_VLAN, 2)
        .tag(ETHERTYPE_VLAN, VLAN);
    h.expect("three tags", &three.build(), Passed(Counter::NotIp));
}

/// The inner tag of a double-tagged frame must be 802.1Q, as the engine's
/// parser requires: an 802.1ad tag there, innermost VID 100 of a configured
/// flow, used to be redirected and then refused by the engine (a silent
/// loss); it passes to the kernel.
#[test]
fn an_s_tag_inside_a_tag_passes() {
    let Some(h) = Harness::load("an_s_tag_inside_a_tag_passes") else {
        return;
    };
    for outer in [ETHERTYPE_VLAN, ETHERTYPE_QINQ] {
        let f = Spec::v4(G4).tag(outer, 7).tag(ETHERTYPE_QINQ, VLAN).build();
        assert!(fanout::wire::parse(&f).is_err());
        h.expect(&format!("{outer:#x}/0x88a8"), &f, Passed(Counter::NotIp));
        let f = Spec::v4(G4).tag(outer, 7).tag(ETHERTYPE_VLAN, VLAN).build();
        h.expect(&format!("{outer:#x}/0x8100"), &f, Matched);
    }
}

/// UDP over IPv6 without a checksum (RFC 8200 forbids it; the engine refuses
/// it) used to be redirected for a configured flow: it passes as malformed.
#[test]
fn ipv6_udp_without_checksum_passes_as_malformed() {
    let Some(h) = Harness::load("ipv6_udp_without_checksum_passes_as_malformed") else {
        return;
    };
    let good = Spec::v6(G6).build();
    h.expect("ipv6 with checksum", &good, Matched);
    let mut zero = good;
    zero[14 + 40 + 6..14 + 40 + 8].fill(0);
    assert!(fanout::wire::parse(&zero).is_err());
    h.expect("ipv6 zero checksum", &zero, Passed(Counter::Malformed));
    let mut zero4 = Spec::v4(G4).build();
    zero4[14 + 20 + 6..14 + 20 + 8].fill(0);
    h.expect("ipv4 zero checksum (none)", &zero4, Matched);
}

/// A configured flow's datagram in a frame to another host's MAC is passed,
/// not matched (the kernel would drop it); one to the interface's own MAC
/// or to any multicast MAC is matched; and before userspace wrote the
/// interface's MAC, nothing is judged by it.
#[test]
fn frames_to_another_hosts_mac_are_passed() {
    let Some(h) = Harness::load("frames_to_another_hosts_mac_are_passed") else {
        return;
    };
    let own = [0x02, 0, 0, 0, 0, 0x10];
    let other = [0x02, 0, 0, 0, 0, 0x99];
    let to = |mac: [u8; 6], spec: Spec| {
        let mut f = spec.build();
        f[..6].copy_from_slice(&mac);
        f
    };
    h.expect("no MAC known yet", &to(other, Spec::v4(G4)), Matched);
    let map = h.map(INGRESS_MAP);
    let entry = Ingress::new(Some(own));
    let mut bytes = [0u8; 8];
    bytes[..6].copy_from_slice(&entry.mac);
    bytes[6..].copy_from_slice(&entry.flags.to_ne_bytes());
    map.update(&0u32.to_ne_bytes(), &bytes, MapFlags::ANY)
        .expect("writing INGRESS");
    h.expect("multicast MAC", &Spec::v4(G4).build(), Matched);
    h.expect("own MAC", &to(own, Spec::v4(G4)), Matched);
    h.expect("own MAC, ipv6", &to(own, Spec::v6(G6)), Matched);
    h.expect("broadcast", &to([0xff; 6], Spec::v4(G4)), Matched);
    h.expect(
        "another host's MAC",
        &to(other, Spec::v4(G4)),
        Passed(Counter::OtherHost),
    );
    h.expect(
        "another host's MAC, ipv6, tagged",
        &to(other, Spec::v6(G6).tag(ETHERTYPE_VLAN, 7)),
        Passed(Counter::NoFlow),
    );
    h.expect(
        "another host's MAC, ipv4 vlan flow",
        &to(other, Spec::v4(G4).tag(ETHERTYPE_VLAN, VLAN)),
        Passed(Counter::OtherHost),
    );
    // Unmatched traffic keeps its own verdict (the MAC is judged last).
    h.expect(
        "another host's MAC, no flow",
        &to(other, Spec::v4(Ipv4Addr::new(239, 9, 9, 9))),
        Passed(Counter::NoFlow),
    );
}

#[test]
fn source_specific_flows_reject_other_sources() {
    let Some(h) = Harness::load("source_specific_flows_reject_other_sources") else {
        return;
    };
    h.expect("ipv4 ssm right source", &Spec::v4(G4_SSM).build(), Matched);
    h.expect(
        "ipv4 ssm wrong source",
        &Spec::v4(G4_SSM).src(Ipv4Addr::new(10, 0, 0, 2)).build(),
        Passed(Counter::SourceRejected),
    );
    // A second channel on the same group and port: its source matches too.
    h.expect(
        "ipv4 ssm second channel",
        &Spec::v4(G4_SSM).src(S4_OTHER_CHANNEL).build(),
        Matched,
    );
    h.expect("ipv6 ssm right source", &Spec::v6(G6_SSM).build(), Matched);
    h.expect(
        "ipv6 ssm wrong source",
        &Spec::v6(G6_SSM)
            .src(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 2))
            .build(),
        Passed(Counter::SourceRejected),
    );
    // Any-source flows take every source.
    h.expect(
        "asm other source",
        &Spec::v4(G4).src(Ipv4Addr::new(10, 9, 9, 9)).build(),
        Matched,
    );
}

#[test]
fn unconfigured_ports_and_groups_pass_even_when_they_share_the_mac() {
    let Some(h) = Harness::load("unconfigured_ports_and_groups_pass_even_when_they_share_the_mac")
    else {
        return;
    };
    h.expect(
        "ipv4 port 5001",
        &Spec::v4(G4).port(PORT + 1).build(),
        Passed(Counter::NoFlow),
    );
    h.expect(
        "ipv6 port 5001",
        &Spec::v6(G6).port(PORT + 1).build(),
        Passed(Counter::NoFlow),
    );
    h.expect(
        "ipv4 group 239.1.1.2",
        &Spec::v4(Ipv4Addr::new(239, 1, 1, 2)).build(),
        Passed(Counter::NoFlow),
    );
    h.expect(
        "ipv6 group ff3e::11",
        &Spec::v6(Ipv6Addr::new(0xff3e, 0, 0, 0, 0, 0, 0, 0x11)).build(),
        Passed(Counter::NoFlow),
    );
    let twin = Ipv4Addr::new(239, 129, 1, 1);
    let frame = Spec::v4(twin).build();
    assert_eq!(
        frame[..6],
        multicast_mac(G4.into()),
        "239.129.1.1 and 239.1.1.1 share a MAC"
    );
    h.expect(
        "239.129.1.1 (same MAC as 239.1.1.1)",
        &frame,
        Passed(Counter::NoFlow),
    );
    // Unicast to a configured port is not a flow either.
    h.expect(
        "unicast",
        &Spec::v4(Ipv4Addr::new(10, 0, 0, 9)).build(),
        Passed(Counter::NoFlow),
    );
}

#[test]
fn every_truncation_of_a_valid_frame_is_malformed() {
    let Some(h) = Harness::load("every_truncation_of_a_valid_frame_is_malformed") else {
        return;
    };
    let frames = [
        ("ipv4", Spec::v4(G4).payload(6).build(), Matched),
        (
            "ipv4 ihl 15 vid 100",
            Spec::v4(G4)
                .ihl(15)
                .tag(ETHERTYPE_VLAN, VLAN)
                .payload(3)
                .build(),
            Matched,
        ),
        (
            "ipv6 qinq 1/2",
            Spec::v6(G6)
                .tag(ETHERTYPE_QINQ, 1)
                .tag(ETHERTYPE_VLAN, 2)
                .payload(5)
                .build(),
            Passed(Counter::NoFlow),
        ),
    ];
    for (name, frame, whole) in &frames {
        h.expect(&format!("{name} whole"), frame, *whole);
        for len in 0..frame.len() {
            let what = format!("{name} cut at {len} of {}", frame.len());
            if len < 14 {
                // The kernel refuses to run XDP on less than an Ethernet header.
                let before = h.counters();
                let err = h.run(&frame[..len]).expect_err(&what);
                assert_eq!(err.kind(), ErrorKind::InvalidInput, "{what}: {err}");
                assert_eq!(h.counters(), before, "{what}: counters moved");
            } else {
                h.expect(&what, &frame[..len], Passed(Counter::Malformed));
            }
        }
    }
}

#[test]
fn bad_ihl_and_inconsistent_lengths_are_malformed() {
    let Some(h) = Harness::load("bad_ihl_and_inconsistent_lengths_are_malformed") else {
        return;
    };
    for ihl in 0..5 {
        h.expect(
            &format!("ihl {ihl}"),
            &Spec::v4(G4).ihl(ihl).build(),
            Passed(Counter::Malformed),
        );
    }
    for ihl in [6, 10, 15] {
        h.expect(
            &format!("ihl {ihl}"),
            &Spec::v4(G4).ihl(ihl).build(),
            Matched,
        );
    }
    let good = Spec::v4(G4).payload(16).build();
    let ip = 14;
    let udp = ip + 20;
    let with = |at: usize, bytes: &[u8]| {
        let mut f = good.clone();
        f[at..at + bytes.len()].copy_from_slice(bytes);
        f
    };
    h.expect(
        "ip version 6 in an IPv4 ethertype",
        &with(ip, &[0x65]),
        Passed(Counter::Malformed),
    );
    h.expect(
        "ip total length < ihl",
        &with(ip + 2, &19u16.to_be_bytes()),
        Passed(Counter::Malformed),
    );
    h.expect(
        "ip total length > frame",
        &with(ip + 2, &61u16.to_be_bytes()),
        Passed(Counter::Malformed),
    );
    h.expect(
        "udp length 7",
        &with(udp + 4, &7u16.to_be_bytes()),
        Passed(Counter::Malformed),
    );
    h.expect(
        "udp length > ip payload",
        &with(udp + 4, &25u16.to_be_bytes()),
        Passed(Counter::Malformed),
    );
    // A shorter UDP length than the IP payload is legal (trailing bytes).
    h.expect(
        "udp length < ip payload",
        &with(udp + 4, &8u16.to_be_bytes()),
        Matched,
    );
    // ihl 15 but total length covering only 40 bytes of it.
    let f = Spec::v4(G4).ihl(15).build();
    let mut cut = f.clone();
    cut[ip + 2..ip + 4].copy_from_slice(&40u16.to_be_bytes());
    h.expect("ihl 15, total length 40", &cut, Passed(Counter::Malformed));

    let good6 = Spec::v6(G6).payload(16).build();
    let mut f = good6.clone();
    f[ip] = 0x40;
    h.expect(
        "ip version 4 in an IPv6 ethertype",
        &f,
        Passed(Counter::Malformed),
    );
    let mut f = good6.clone();
    f[ip + 4..ip + 6].copy_from_slice(&25u16.to_be_bytes());
    h.expect(
        "ipv6 payload length > frame",
        &f,
        Passed(Counter::Malformed),
    );
    let mut f = good6.clone();
    f[ip + 40 + 4..ip + 40 + 6].copy_from_slice(&25u16.to_be_bytes());
    h.expect("ipv6 udp length > payload", &f, Passed(Counter::Malformed));
}

#[test]
fn fragments_pass_untouched() {
    let Some(h) = Harness::load("fragments_pass_untouched") else {
        return;
    };
    h.expect(
        "ipv4 first fragment (MF)",
        &Spec::v4(G4).frag(0x2000).build(),
        Passed(Counter::Fragment),
    );
    h.expect(
        "ipv4 later fragment",
        &Spec::v4(G4).frag(0x0010).build(),
        Passed(Counter::Fragment),
    );
    h.expect(
        "ipv4 last fragment",
        &Spec::v4(G4).frag(0x0200).protocol(17).build(),
        Passed(Counter::Fragment),
    );
    h.expect("ipv4 DF only", &Spec::v4(G4).frag(0x4000).build(), Matched);
    h.expect(
        "ipv6 fragment header",
        &Spec::v6(G6).protocol(44).build(),
        Passed(Counter::Fragment),
    );
}

/// The flow counter a frame moves: `(flow id, counter)`, or none.
type FlowEffect = Option<(u32, FlowCounter)>;

/// Each flow's counters say what became of its datagrams: a first
/// fragment and a datagram behind IPv6 extension headers count for their
/// flow (the channel's, for a source-specific one), a later fragment for
/// none; a matched datagram without a socket is its flow's `no_socket`.
#[test]
fn passed_datagrams_count_for_their_flow() {
    let Some(h) = Harness::load("passed_datagrams_count_for_their_flow") else {
        return;
    };
    let dest_opts = [17, 0, 1, 4, 0, 0, 0, 0];
    let hop_then_dest = [IPV6_DEST_OPTS, 0, 1, 4, 0, 0, 0, 0, 17, 0, 1, 4, 0, 0, 0, 0];
    let cases: [(&str, Spec, Counter, FlowEffect); 8] = [
        (
            "ipv4 first fragment",
            Spec::v4(G4).frag(0x2000),
            Counter::Fragment,
            Some((1, FlowCounter::Fragment)),
        ),
        (
            "ipv4 later fragment",
            Spec::v4(G4).frag(0x0010),
            Counter::Fragment,
            None,
        ),
        (
            "first fragment of a channel",
            Spec::v4(G4_SSM).src(S4_OTHER_CHANNEL).frag(0x2000),
            Counter::Fragment,
            Some((6, FlowCounter::Fragment)),
        ),
        (
            "first fragment from no channel's source",
            Spec::v4(G4_SSM)
                .src(Ipv4Addr::new(10, 9, 9, 9))
                .frag(0x2000),
            Counter::Fragment,
            None,
        ),
        (
            "ipv6 behind destination options",
            Spec::v6(G6).ext(IPV6_DEST_OPTS, &dest_opts),
            Counter::ExtHeaders,
            Some((2, FlowCounter::ExtHeaders)),
        ),
        (
            "ipv6 channel behind hop-by-hop and destination options",
            Spec::v6(G6_SSM).ext(IPV6_HOP_BY_HOP, &hop_then_dest),
            Counter::ExtHeaders,
            Some((5, FlowCounter::ExtHeaders)),
        ),
        (
            "ipv6 behind destination options, no flow",
            Spec::v6(G6).port(PORT + 1).ext(IPV6_DEST_OPTS, &dest_opts),
            Counter::ExtHeaders,
            None,
        ),
        (
            "ipv6 first fragment",
            Spec::v6(G6).ext(44, &[17, 0, 0, 1, 0, 0, 0, 9]),
            Counter::Fragment,
            Some((2, FlowCounter::Fragment)),
        ),
    ];
    for (what, spec, counter, effect) in cases {
        h.expect_flow(what, &spec.build(), Passed(counter), effect);
    }
    h.expect_flow(
        "a matched datagram, no socket",
        &Spec::v4(G4).tag(ETHERTYPE_VLAN, VLAN).build(),
        Matched,
        Some((3, FlowCounter::NoSocket)),
    );
}

#[test]
fn non_udp_and_non_ip_pass() {
    let Some(h) = Harness::load("non_udp_and_non_ip_pass") else {
        return;
    };
    h.expect(
        "ipv4 tcp",
        &Spec::v4(G4).protocol(6).build(),
        Passed(Counter::NotUdp),
    );
    h.expect(
        "ipv4 igmp",
        &Spec::v4(G4).protocol(2).build(),
        Passed(Counter::NotUdp),
    );
    h.expect(
        "ipv6 hop-by-hop",
        &Spec::v6(G6).protocol(0).build(),
        Passed(Counter::NotUdp),
    );
    h.expect(
        "ipv6 icmpv6",
        &Spec::v6(G6).protocol(58).build(),
        Passed(Counter::NotUdp),
    );
    let mut arp = Spec::v4(G4).build();
    arp[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
    h.expect("arp", &arp, Passed(Counter::NotIp));
    let mut short = vec![0xffu8; 14];
    short[12..14].copy_from_slice(&0x88ccu16.to_be_bytes());
    h.expect("lldp header only", &short, Passed(Counter::NotIp));
}

#[test]
fn jumbo_multi_buffer_frames_match_whole() {
    let Some(h) = Harness::load("jumbo_multi_buffer_frames_match_whole") else {
        return;
    };
    // A 9000-byte IP packet (MTU 9000): 8972 bytes of UDP payload, 9014 bytes
    // of frame, more than a page, so the kernel spreads it over fragments.
    let jumbo = Spec::v4(G4).payload(8972).build();
    assert_eq!(jumbo.len(), 9014);
    h.expect("ipv4 jumbo", &jumbo, Matched);
    let jumbo6 = Spec::v6(G6).payload(8952).tag(ETHERTYPE_VLAN, 0).build();
    h.expect("ipv6 jumbo", &jumbo6, Matched);
    // Lengths are checked against the whole frame, not just the first buffer.
    h.expect(
        "jumbo cut to 5000",
        &jumbo[..5000],
        Passed(Counter::Malformed),
    );
    h.expect(
        "jumbo cut by one byte",
        &jumbo[..jumbo.len() - 1],
        Passed(Counter::Malformed),
    );
    let mut long_udp = jumbo.clone();
    long_udp[14 + 20 + 4..14 + 20 + 6].copy_from_slice(&8981u16.to_be_bytes());
    h.expect(
        "jumbo udp length > ip payload",
        &long_udp,
        Passed(Counter::Malformed),
    );
}

/// The loaded program decides as `fanout_common::parse::classify` run here:
/// random corruptions of valid frames get the verdict it and the flow table
/// give them, frame by frame. And what it redirects, the engine's parser
/// takes with the same key, or refuses for a bad IPv4 header checksum only
/// (the full differential test is `userspace/src/wire/differential.rs`).
#[test]
fn the_loaded_program_decides_as_classify_on_corrupted_frames() {
    use fanout_common::parse::{Verdict, classify};
    let Some(h) = Harness::load("the_loaded_program_decides_as_classify_on_corrupted_frames")
    else {
        return;
    };
    let flows = Harness::flows();
    let seeds = [
        Spec::v4(G4).build(),
        Spec::v4(G4_SSM).ihl(7).build(),
        Spec::v4(G4).tag(ETHERTYPE_VLAN, VLAN).build(),
        Spec::v6(G6)
            .tag(ETHERTYPE_QINQ, 3)
            .tag(ETHERTYPE_VLAN, 4)
            .build(),
        Spec::v6(G6_SSM).build(),
    ];
    // xorshift64*: deterministic, so a failure names a reproducible case.
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        state.wrapping_mul(0x2545_f491_4f6c_dd1d)
    };
    let mut seen = std::collections::BTreeMap::new();
    for case in 0..400 {
        let seed = &seeds[case % seeds.len()];
        let mut f = seed.clone();
        for _ in 0..1 + next() % 3 {
            let at = (next() % 70) as usize % f.len();
            f[at] = next() as u8;
        }
        if next() % 4 == 0 {
            let len = 14 + (next() as usize) % (f.len() - 14);
            f.truncate(len);
        }
        let verdict = classify(&f[..]);
        if let Verdict::Udp(d) = verdict {
            match fanout::wire::parse(&f) {
                Ok(dg) => assert_eq!(dg.flow_key(), d.key, "case {case}: {f:02x?}"),
                Err(e) => assert_eq!(
                    e,
                    fanout::wire::ParseError::BadChecksum,
                    "case {case}: {f:02x?}"
                ),
            }
        }
        let outcome = match verdict {
            Verdict::Udp(d) => Harness::verdict(&flows, d.key, d.source),
            Verdict::Malformed => Passed(Counter::Malformed),
            Verdict::Fragment(_) => Passed(Counter::Fragment),
            Verdict::ExtHeaders(_) => Passed(Counter::ExtHeaders),
            Verdict::NotIp => Passed(Counter::NotIp),
            Verdict::NotUdp => Passed(Counter::NotUdp),
        };
        h.expect(&format!("case {case}: {f:02x?}"), &f, outcome);
        *seen.entry(format!("{outcome:?}")).or_insert(0) += 1;
    }
    eprintln!("outcomes: {seen:?}");
    // The corruptions reach every branch that matters, not just one.
    for o in [
        "Matched",
        "Passed(Malformed)",
        "Passed(NoFlow)",
        "Passed(NotIp)",
        "Passed(NotUdp)",
    ] {
        assert!(seen.contains_key(o), "no case ended as {o}: {seen:?}");
    }
}

// ------------------------------------------------- attach, detach, pins --

/// How long the kernel may take to detach a program whose link is gone.
const DETACH: std::time::Duration = std::time::Duration::from_secs(5);

#[test]
fn pinned_link_outlives_the_program_until_unpinned() {
    let Some(obj) = lab::xdp_ready("pinned_link_outlives_the_program_until_unpinned") else {
        return;
    };
    let pair = Pair::up("xpn");
    let bpffs = Bpffs::mount(std::env::temp_dir().join(format!("{}-bpffs", pair.a.name())));
    let dir = bpffs.dir().join("fanout").join("ia");

    pair.a.run_in(|| {
        let mut prog = XdpProgram::load_file(&obj).unwrap();
        // Pinning needs an attachment.
        assert!(matches!(
            prog.pin(&dir),
            Err(fanout::xdp::program::Error::NotAttached)
        ));
        prog.attach("ia").unwrap();
        assert!(xdp_attached(&pair.a, "ia"));
        prog.pin(&dir).unwrap();
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "the pin directory is root's only");
        drop(prog);
    });
    assert!(xdp_attached(&pair.a, "ia"), "the pinned link detached");
    for name in ["link", "FLOWS", "XSKS", "COUNTERS"] {
        assert!(dir.join(name).exists(), "{name} not pinned");
    }
    assert!(fanout::xdp::program::unpin(&dir).unwrap());
    assert!(!dir.exists());
    // The link's last reference is gone: the program is detached.
    assert!(
        wait_detached(&pair.a, "ia", DETACH),
        "still attached after unpin"
    );
    assert!(
        !fanout::xdp::program::unpin(&dir).unwrap(),
        "second unpin found pins"
    );
}

#[test]
fn dropping_the_program_detaches_it() {
    let Some(obj) = lab::xdp_ready("dropping_the_program_detaches_it") else {
        return;
    };
    let pair = Pair::up("xpn");
    pair.a.run_in(|| {
        let mut prog = XdpProgram::load_file(&obj).unwrap();
        prog.attach("ia").unwrap();
        assert!(xdp_attached(&pair.a, "ia"));
        drop(prog);
    });
    assert!(
        wait_detached(&pair.a, "ia", DETACH),
        "still attached after drop"
    );
}
