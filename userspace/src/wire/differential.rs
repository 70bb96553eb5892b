//! The differential test of fanout's two frame decoders: the XDP program's
//! `fanout_common::parse::classify` (what is redirected to the engine) and
//! [`parse_head`] (what the worker replicates). They must agree on every
//! frame, or a frame is lost silently (redirected, then refused) or missed
//! (passed to the kernel, although the engine would have replicated it).
//!
//! Agreement, as [`agree`] checks it on every input:
//!
//! * kernel `Udp` and userspace `Ok`: the same flow key (group, port,
//!   innermost VLAN, as [`Datagram::flow_key`] gives it to the worker), source
//!   address and port, payload offset and length;
//! * kernel `Udp` and userspace `BadChecksum`: **the one allowed difference**.
//!   The kernel does not verify the IPv4 header checksum; userspace does and
//!   counts the frame (`malformed`), as the kernel's own stack would drop it.
//!   With the checksum repaired the two agree exactly;
//! * both refuse: the userspace reason maps to the kernel verdict by
//!   [`kernel_verdict_of`] (the table below); one more exception, for reasons
//!   only: when the first buffer of a multi-buffer frame ends inside the IPv4
//!   header, userspace says `Truncated` where the kernel, which reads the
//!   fragment and protocol fields first, may say `Fragment` or `NotUdp`;
//! * anything else fails: userspace accepting a frame the kernel passes, or
//!   refusing for another reason a frame the kernel redirects.
//!
//! | userspace [`ParseError`]                             | kernel `Verdict` |
//! |------------------------------------------------------|------------------|
//! | `Truncated` `BadVersion` `BadIhl` `BadLength` `ZeroChecksumV6` | `Malformed` |
//! | `BadVlan` `NotIp`                                    | `NotIp`          |
//! | `Fragment` (IPv4 MF or offset, IPv6 fragment header) | `Fragment`       |
//! | `NotUdp`                                             | `NotUdp`         |
//! | `BadChecksum`                                        | its verdict with the checksum repaired, `Udp` included |
//!
//! Inputs, 8192 cases per property: structured frames ([`arb_frame`]: 0..=3
//! VLAN tags of any TPID, IPv4 with any IHL, options, flags, fragment offset,
//! lengths and checksum, IPv6 with and without extension headers, UDP with
//! any length and checksum, trailing padding), each checked at every
//! truncation (the first 200 and last 32 of a longer frame) and with its
//! first buffer cut anywhere; the same frames with bytes overwritten; random
//! bytes, bare or behind a plausible Ethernet/IP start.
//! [`the_structured_frames_reach_every_row`] checks that the inputs reach
//! every row of the table, and most of them the datagram comparison.

use super::error::ParseError;
use super::parse::{Datagram, parse_head};
use super::testutil::ref_sum;
use fanout_common::FlowKey;
use fanout_common::parse::{ETHERTYPE_IPV4, ETHERTYPE_QINQ, ETHERTYPE_VLAN};
use fanout_common::parse::{Frame, Verdict, classify};
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::strategy::ValueTree;
use proptest::test_runner::{TestCaseError, TestRunner};
use std::collections::HashMap;

/// A frame of `total` bytes of which the first buffer, `head`, is readable:
/// what the XDP program sees of a multi-buffer frame.
struct Split<'a> {
    head: &'a [u8],
    total: usize,
}

impl Frame for Split<'_> {
    fn total_len(&self) -> usize {
        self.total
    }

    fn load<const N: usize>(&self, offset: usize) -> Option<[u8; N]> {
        self.head.load(offset)
    }
}

/// The kernel's verdict without its datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    Udp,
    Malformed,
    Fragment,
    NotIp,
    NotUdp,
}

fn kind(v: &Verdict) -> Kind {
    match v {
        Verdict::Udp(_) => Kind::Udp,
        Verdict::Malformed => Kind::Malformed,
        Verdict::Fragment(_) => Kind::Fragment,
        Verdict::NotIp => Kind::NotIp,
        // Passed either way, and the engine refuses both the same way.
        Verdict::NotUdp | Verdict::ExtHeaders(_) => Kind::NotUdp,
    }
}

/// The mapping of refusals: the kernel verdict that goes with a userspace
/// error. `None` for `BadChecksum`, which the kernel does not check.
fn kernel_verdict_of(e: ParseError) -> Option<Kind> {
    use ParseError::*;
    match e {
        Truncated | BadVersion(_) | BadIhl(_) | BadLength | ZeroChecksumV6 => Some(Kind::Malformed),
        BadVlan | NotIp(_) => Some(Kind::NotIp),
        Fragment => Some(Kind::Fragment),
        NotUdp(_) => Some(Kind::NotUdp),
        BadChecksum => None,
    }
}

/// What both decoders said about one input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Outcome {
    kernel: Kind,
    user: Result<(), ParseError>,
}

/// Offset of layer 3 under the tag rule both decoders share: an outer
/// 802.1Q or 802.1ad tag, then an 802.1Q tag. Only called on frames both
/// have walked past the tags.
fn ref_l3(frame: &[u8]) -> usize {
    let ethertype = |at: usize| u16::from_be_bytes([frame[at], frame[at + 1]]);
    if ![ETHERTYPE_VLAN, ETHERTYPE_QINQ].contains(&ethertype(12)) {
        14
    } else if ethertype(16) != ETHERTYPE_VLAN {
        18
    } else {
        22
    }
}

/// `frame` with its IPv4 header checksum recomputed (the slow way).
fn with_ipv4_checksum_repaired(frame: &[u8]) -> Vec<u8> {
    let mut f = frame.to_vec();
    let l3 = ref_l3(&f);
    let hl = usize::from(f[l3] & 0x0f) * 4;
    f[l3 + 10..l3 + 12].fill(0);
    let c = !ref_sum(&[&f[l3..l3 + hl]]);
    f[l3 + 10..l3 + 12].copy_from_slice(&c.to_be_bytes());
    f
}

/// Runs both decoders on `frame` received with a first buffer of `head_len`
/// bytes and checks that they agree (module documentation).
fn agree(frame: &[u8], head_len: usize) -> Result<Outcome, TestCaseError> {
    let head = &frame[..head_len];
    let total = frame.len();
    let kernel = classify(&Split { head, total });
    let user = parse_head(head, total);
    let outcome = Outcome {
        kernel: kind(&kernel),
        user: user.map(|_| ()),
    };
    let what = || format!("{outcome:?}: head {head_len} of {total}: {frame:02x?}");
    match (kernel, user) {
        (Verdict::Udp(k), Ok(u)) => {
            prop_assert_eq!(k.key, u.flow_key(), "flow key: {}", what());
            let source = FlowKey::new(u.addrs.src(), 0, 0).group;
            prop_assert_eq!(k.source, source, "source: {}", what());
            prop_assert_eq!(k.source_port, u.src_port, "source port: {}", what());
            prop_assert_eq!(k.payload_offset, u.payload_offset, "offset: {}", what());
            prop_assert_eq!(k.payload_len, u.payload_len, "length: {}", what());
            prop_assert_eq!(usize::from(u.udp_len), u.payload_len + 8, "{}", what());
            prop_assert!(u.payload_range().end <= total, "{}", what());
        }
        (_, Ok(_)) => {
            prop_assert!(
                false,
                "userspace accepts what the kernel passes: {}",
                what()
            );
        }
        (k, Err(ParseError::BadChecksum)) => {
            // Everything else agrees: with the checksum repaired, the kernel
            // says the same (it never reads it) and the pair is one of the
            // other rows.
            let repaired = with_ipv4_checksum_repaired(frame);
            let again = agree(&repaired, head_len)?;
            prop_assert_eq!(again.kernel, kind(&k), "repaired: {}", what());
            prop_assert_ne!(again.user, Err(ParseError::BadChecksum), "{}", what());
        }
        (Verdict::Udp(_), Err(e)) => {
            prop_assert!(
                false,
                "silent loss: redirected, then refused ({:?}): {}",
                e,
                what()
            );
        }
        (k, Err(e)) if kernel_verdict_of(e) == Some(kind(&k)) => {}
        (Verdict::Fragment(_) | Verdict::NotUdp, Err(ParseError::Truncated)) => {
            // The first buffer ends inside the IPv4 header; with the whole
            // frame in it, userspace reaches the kernel's verdict.
            let l3 = ref_l3(frame);
            let ihl_end = l3 + usize::from(frame[l3] & 0x0f) * 4;
            prop_assert!(head_len < ihl_end, "{}", what());
            let whole = agree(frame, total)?;
            prop_assert_eq!(whole.kernel, outcome.kernel, "{}", what());
            prop_assert_ne!(whole.user, Err(ParseError::Truncated), "{}", what());
        }
        (_, Err(_)) => {
            prop_assert!(false, "refusal reasons do not map: {}", what());
        }
    }
    Ok(outcome)
}

/// [`agree`] on a frame at every truncation (the first 200 and the last 32
/// lengths of a longer one), and with its first buffer cut at `split`.
fn agree_cut_anywhere(frame: &[u8], split: Index) -> Result<(), TestCaseError> {
    let n = frame.len();
    let cuts = (0..=n.min(200)).chain(n.saturating_sub(32).max(201)..=n);
    for len in cuts {
        agree(&frame[..len], len)?;
    }
    agree(frame, split.index(n + 1))?;
    Ok(())
}

// ------------------------------------------------------------ generators --

/// A length field: the right value, one a few bytes off, or anything.
#[derive(Debug, Clone, Copy)]
enum Len {
    Exact,
    Delta(i16),
    Any(u16),
}

impl Len {
    fn of(self, exact: usize) -> u16 {
        let exact = i64::try_from(exact).unwrap_or(i64::MAX);
        match self {
            Len::Exact => u16::try_from(exact).unwrap_or(u16::MAX),
            Len::Delta(d) => u16::try_from((exact + i64::from(d)).clamp(0, 0xffff)).unwrap(),
            Len::Any(v) => v,
        }
    }
}

/// `valid` in a clean frame; in a hostile one, `hostile` (whose values
/// include valid ones).
fn field<T: core::fmt::Debug + Clone + 'static>(
    hostile: bool,
    valid: impl Strategy<Value = T> + 'static,
    other: impl Strategy<Value = T> + 'static,
) -> BoxedStrategy<T> {
    if hostile {
        other.boxed()
    } else {
        valid.boxed()
    }
}

fn arb_len(hostile: bool) -> BoxedStrategy<Len> {
    let other = prop_oneof![
        6 => Just(Len::Exact),
        3 => (-9i16..=9).prop_map(Len::Delta),
        1 => any::<u16>().prop_map(Len::Any),
    ];
    field(hostile, Just(Len::Exact), other)
}

#[derive(Debug, Clone)]
struct V4 {
    version: u8,
    /// `None`: the IHL that covers the options.
    ihl: Option<u8>,
    options: Vec<u8>,
    tos: u8,
    total: Len,
    ident: u16,
    flags_frag: u16,
    ttl: u8,
    protocol: u8,
    /// `None`: the right one.
    checksum: Option<u16>,
    addrs: [u8; 8],
}

fn arb_v4(hostile: bool) -> impl Strategy<Value = V4> {
    let words = (1..=10usize).prop_flat_map(|w| proptest::collection::vec(any::<u8>(), 4 * w));
    let options = prop_oneof![
        4 => Just(vec![]),
        2 => words.clone(),
        1 => proptest::collection::vec(any::<u8>(), 0..=41),
    ];
    let flags_frag = prop_oneof![
        4 => Just(0x4000u16), // DF
        3 => Just(0),
        1 => Just(0x2000), // MF
        1 => Just(0x8000), // reserved bit
        1 => 1..0x2000u16, // an offset
        1 => any::<u16>(),
    ];
    (
        field(
            hostile,
            Just(4u8),
            prop_oneof![9 => Just(4u8), 1 => 0..16u8],
        ),
        field(
            hostile,
            Just(None),
            prop_oneof![8 => Just(None), 2 => (0..16u8).prop_map(Some)],
        ),
        field(hostile, prop_oneof![Just(vec![]), words], options),
        any::<u8>(),
        arb_len(hostile),
        any::<u16>(),
        field(hostile, prop_oneof![Just(0x4000u16), Just(0)], flags_frag),
        any::<u8>(),
        field(
            hostile,
            Just(17u8),
            prop_oneof![8 => Just(17u8), 1 => Just(6), 1 => any::<u8>()],
        ),
        field(
            hostile,
            Just(None),
            prop_oneof![8 => Just(None), 2 => any::<u16>().prop_map(Some)],
        ),
        any::<[u8; 8]>(),
    )
        .prop_map(
            |(
                version,
                ihl,
                options,
                tos,
                total,
                ident,
                flags_frag,
                ttl,
                protocol,
                checksum,
                addrs,
            )| {
                V4 {
                    version,
                    ihl,
                    options,
                    tos,
                    total,
                    ident,
                    flags_frag,
                    ttl,
                    protocol,
                    checksum,
                    addrs,
                }
            },
        )
}

#[derive(Debug, Clone)]
struct V6 {
    version: u8,
    word0_rest: u32,
    payload_len: Len,
    /// Extension headers in front of the last next header: (type, body).
    ext: Vec<(u8, [u8; 7])>,
    next_header: u8,
    hop_limit: u8,
    addrs: [u8; 32],
}

fn arb_v6(hostile: bool) -> impl Strategy<Value = V6> {
    let ext_type = prop_oneof![Just(0u8), Just(43), Just(44), Just(60), any::<u8>()];
    let ext = prop_oneof![
        3 => Just(vec![]),
        1 => proptest::collection::vec((ext_type, any::<[u8; 7]>()), 1..=2),
    ];
    (
        field(
            hostile,
            Just(6u8),
            prop_oneof![9 => Just(6u8), 1 => 0..16u8],
        ),
        any::<u32>(),
        arb_len(hostile),
        field(hostile, Just(vec![]), ext),
        field(
            hostile,
            Just(17u8),
            prop_oneof![8 => Just(17u8), 1 => Just(44), 1 => any::<u8>()],
        ),
        any::<u8>(),
        any::<[u8; 32]>(),
    )
        .prop_map(
            |(version, word0_rest, payload_len, ext, next_header, hop_limit, addrs)| V6 {
                version,
                word0_rest,
                payload_len,
                ext,
                next_header,
                hop_limit,
                addrs,
            },
        )
}

#[derive(Debug, Clone)]
enum Ip {
    V4(V4),
    V6(V6),
}

#[derive(Debug, Clone)]
enum Padding {
    None,
    /// Zeros up to the 60-byte Ethernet minimum.
    To60,
    Bytes(Vec<u8>),
}

#[derive(Debug, Clone)]
struct Spec {
    macs: [u8; 12],
    /// (TPID, TCI), outermost first.
    tags: Vec<(u16, u16)>,
    /// `None`: the ethertype of `ip`.
    ethertype: Option<u16>,
    ip: Ip,
    ports: (u16, u16),
    udp_len: Len,
    udp_checksum: u16,
    payload: Vec<u8>,
    padding: Padding,
}

impl Spec {
    fn build(&self) -> Vec<u8> {
        let mut f = self.macs.to_vec();
        for &(tpid, tci) in &self.tags {
            f.extend_from_slice(&tpid.to_be_bytes());
            f.extend_from_slice(&tci.to_be_bytes());
        }
        let mut udp = Vec::new();
        udp.extend_from_slice(&self.ports.0.to_be_bytes());
        udp.extend_from_slice(&self.ports.1.to_be_bytes());
        let udp_len = self.udp_len.of(8 + self.payload.len());
        udp.extend_from_slice(&udp_len.to_be_bytes());
        udp.extend_from_slice(&self.udp_checksum.to_be_bytes());
        udp.extend_from_slice(&self.payload);
        match &self.ip {
            Ip::V4(ip) => {
                let ethertype = self.ethertype.unwrap_or(ETHERTYPE_IPV4);
                f.extend_from_slice(&ethertype.to_be_bytes());
                let hl = 20 + ip.options.len();
                let ihl = ip.ihl.unwrap_or(u8::try_from(hl / 4).unwrap());
                let mut h = vec![(ip.version << 4) | (ihl & 0x0f), ip.tos];
                h.extend_from_slice(&ip.total.of(hl + udp.len()).to_be_bytes());
                h.extend_from_slice(&ip.ident.to_be_bytes());
                h.extend_from_slice(&ip.flags_frag.to_be_bytes());
                h.extend_from_slice(&[ip.ttl, ip.protocol, 0, 0]);
                h.extend_from_slice(&ip.addrs);
                h.extend_from_slice(&ip.options);
                let c = ip.checksum.unwrap_or_else(|| !ref_sum(&[&h]));
                h[10..12].copy_from_slice(&c.to_be_bytes());
                f.extend_from_slice(&h);
            }
            Ip::V6(ip) => {
                let ethertype = self.ethertype.unwrap_or(0x86dd);
                f.extend_from_slice(&ethertype.to_be_bytes());
                let mut ext = Vec::new();
                for (i, (_, body)) in ip.ext.iter().enumerate() {
                    ext.push(ip.ext.get(i + 1).map_or(ip.next_header, |e| e.0));
                    ext.extend_from_slice(body);
                }
                let first = ip.ext.first().map_or(ip.next_header, |e| e.0);
                let w0 = (u32::from(ip.version) << 28) | (ip.word0_rest & 0x0fff_ffff);
                f.extend_from_slice(&w0.to_be_bytes());
                let len = ip.payload_len.of(ext.len() + udp.len());
                f.extend_from_slice(&len.to_be_bytes());
                f.extend_from_slice(&[first, ip.hop_limit]);
                f.extend_from_slice(&ip.addrs);
                f.extend_from_slice(&ext);
            }
        }
        f.extend_from_slice(&udp);
        match &self.padding {
            Padding::None => {}
            Padding::To60 => f.resize(f.len().max(60), 0),
            Padding::Bytes(b) => f.extend_from_slice(b),
        }
        f
    }
}

/// A clean frame (a valid datagram, lengths cut by truncation only) or a
/// hostile one (any field may be wrong).
fn arb_spec() -> impl Strategy<Value = Spec> {
    prop_oneof![1 => arb_spec_of(false), 2 => arb_spec_of(true)]
}

fn arb_spec_of(hostile: bool) -> impl Strategy<Value = Spec> {
    let tpid = prop_oneof![
        4 => Just(ETHERTYPE_VLAN),
        3 => Just(ETHERTYPE_QINQ),
        1 => Just(0x9100u16),
        1 => any::<u16>(),
    ];
    let valid_tags = prop_oneof![
        Just(vec![]),
        Just(vec![ETHERTYPE_VLAN]),
        Just(vec![ETHERTYPE_QINQ]),
        Just(vec![ETHERTYPE_QINQ, ETHERTYPE_VLAN]),
        Just(vec![ETHERTYPE_VLAN, ETHERTYPE_VLAN]),
    ];
    let valid_tags = valid_tags.prop_flat_map(|tpids| {
        let n = tpids.len();
        (Just(tpids), proptest::collection::vec(any::<u16>(), n))
            .prop_map(|(tpids, tcis)| tpids.into_iter().zip(tcis).collect::<Vec<_>>())
    });
    let payload = prop_oneof![
        4 => proptest::collection::vec(any::<u8>(), 0..48),
        1 => proptest::collection::vec(any::<u8>(), 48..1500),
        1 => (1500..9000usize).prop_map(|n| vec![0x5a; n]),
    ];
    let padding = prop_oneof![
        4 => Just(Padding::None),
        2 => Just(Padding::To60),
        1 => proptest::collection::vec(any::<u8>(), 1..48).prop_map(Padding::Bytes),
    ];
    (
        any::<[u8; 12]>(),
        field(
            hostile,
            valid_tags,
            proptest::collection::vec((tpid, any::<u16>()), 0..=3),
        ),
        field(
            hostile,
            Just(None),
            prop_oneof![9 => Just(None), 1 => any::<u16>().prop_map(Some)],
        ),
        prop_oneof![
            arb_v4(hostile).prop_map(Ip::V4),
            arb_v6(hostile).prop_map(Ip::V6)
        ],
        any::<(u16, u16)>(),
        arb_len(hostile),
        field(
            hostile,
            1..=u16::MAX,
            prop_oneof![1 => Just(0u16), 4 => any::<u16>()],
        ),
        payload,
        padding,
    )
        .prop_map(
            |(macs, tags, ethertype, ip, ports, udp_len, udp_checksum, payload, padding)| Spec {
                macs,
                tags,
                ethertype,
                ip,
                ports,
                udp_len,
                udp_checksum,
                payload,
                padding,
            },
        )
}

fn arb_frame() -> impl Strategy<Value = Vec<u8>> {
    arb_spec().prop_map(|s| s.build())
}

/// Random bytes behind a plausible start: an IP or VLAN ethertype, maybe a
/// tag, an IPv4 or IPv6 first byte.
fn arb_noise() -> impl Strategy<Value = Vec<u8>> {
    let ethertype = prop_oneof![
        Just(ETHERTYPE_IPV4),
        Just(0x86dd),
        Just(ETHERTYPE_VLAN),
        Just(ETHERTYPE_QINQ),
    ];
    let first = prop_oneof![(0x40..0x50u8), Just(0x60), any::<u8>()];
    (
        proptest::collection::vec(any::<u8>(), 14..200),
        ethertype,
        prop_oneof![Just(ETHERTYPE_IPV4), Just(0x86dd), Just(ETHERTYPE_VLAN)],
        first,
    )
        .prop_map(|(mut f, outer, inner, first)| {
            f[12..14].copy_from_slice(&outer.to_be_bytes());
            let l3 = if outer == ETHERTYPE_VLAN || outer == ETHERTYPE_QINQ {
                if let Some(b) = f.get_mut(16..18) {
                    b.copy_from_slice(&inner.to_be_bytes());
                }
                18
            } else {
                14
            };
            if let Some(b) = f.get_mut(l3) {
                *b = first;
            }
            f
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(8192))]

    /// Structured frames, at every truncation and every first-buffer cut.
    #[test]
    fn decoders_agree_on_structured_frames(frame in arb_frame(), split in any::<Index>()) {
        agree_cut_anywhere(&frame, split)?;
    }

    /// Structured frames with up to 6 bytes of their headers overwritten.
    #[test]
    fn decoders_agree_on_mutated_frames(
        frame in arb_frame(),
        flips in proptest::collection::vec((0..100usize, any::<u8>()), 1..=6),
        split in any::<Index>(),
    ) {
        let mut frame = frame;
        for (at, v) in flips {
            if let Some(b) = frame.get_mut(at) {
                *b = v;
            }
        }
        agree_cut_anywhere(&frame, split)?;
    }

    /// Random bytes, bare and behind a plausible start.
    #[test]
    fn decoders_agree_on_random_bytes(
        bytes in proptest::collection::vec(any::<u8>(), 0..256),
        noise in arb_noise(),
        split in any::<Index>(),
    ) {
        agree_cut_anywhere(&bytes, split)?;
        agree_cut_anywhere(&noise, split)?;
    }
}

/// The generator reaches every row of the agreement, so the properties
/// above are not passing vacuously.
#[test]
fn the_structured_frames_reach_every_row() {
    let mut runner = TestRunner::deterministic();
    let strategy = arb_frame();
    let mut seen = HashMap::new();
    for _ in 0..4000 {
        let frame = strategy.new_tree(&mut runner).unwrap().current();
        let mut outcome = agree(&frame, frame.len()).unwrap();
        // Counted by reason, whatever the ethertype or protocol.
        outcome.user = outcome.user.map_err(|e| match e {
            ParseError::BadVersion(_) => ParseError::BadVersion(0),
            ParseError::BadIhl(_) => ParseError::BadIhl(0),
            ParseError::NotIp(_) => ParseError::NotIp(0),
            ParseError::NotUdp(_) => ParseError::NotUdp(0),
            e => e,
        });
        *seen.entry(outcome).or_insert(0u32) += 1;
    }
    use ParseError::*;
    let rows = [
        (Kind::Udp, Ok(())),
        (Kind::Udp, Err(BadChecksum)),
        (Kind::Malformed, Err(Truncated)),
        (Kind::Malformed, Err(BadVersion(0))),
        (Kind::Malformed, Err(BadIhl(0))),
        (Kind::Malformed, Err(BadLength)),
        (Kind::Malformed, Err(ZeroChecksumV6)),
        (Kind::Malformed, Err(BadChecksum)),
        (Kind::NotIp, Err(BadVlan)),
        (Kind::NotIp, Err(NotIp(0))),
        (Kind::Fragment, Err(Fragment)),
        (Kind::Fragment, Err(BadChecksum)),
        (Kind::NotUdp, Err(NotUdp(0))),
        (Kind::NotUdp, Err(BadChecksum)),
    ];
    let mut table: Vec<_> = seen.iter().map(|(o, n)| (format!("{o:?}"), n)).collect();
    table.sort();
    eprintln!("outcomes of 4000 structured frames: {table:#?}");
    for (kernel, user) in rows {
        assert!(
            seen.contains_key(&Outcome { kernel, user }),
            "no frame was ({kernel:?}, {user:?}): {seen:?}"
        );
    }
    // Most frames are datagrams, so the field comparison is well exercised.
    let udp = seen[&Outcome {
        kernel: Kind::Udp,
        user: Ok(()),
    }];
    assert!(
        udp > 1000,
        "only {udp} of 4000 frames were datagrams: {seen:?}"
    );
}

// ---------------------------------------------------------- golden cases --
//
// One test per input on which the decoders disagreed (or disagree, for the
// allowed difference), bytes written out: Ethernet 01:00:5e:01:01:01 <-
// 02:00:00:00:00:01, IPv4 10.0.0.1 -> 239.1.1.1 or IPv6 fd00::1 -> ff3e::1,
// UDP 5000 -> 5004, payload "hi".

/// Both decoders' verdicts on a golden frame, after checking they agree.
fn both(frame: &[u8]) -> (Verdict, Result<Datagram, ParseError>) {
    agree(frame, frame.len()).unwrap();
    (classify(frame), parse_head(frame, frame.len()))
}

/// An 802.1ad TPID in the second (inner) tag: userspace has always refused
/// it (`BadVlan`); the kernel used to redirect it keyed on VLAN 20, a
/// silent loss. It now passes it (`NotIp`, like a third tag).
#[test]
fn golden_s_tag_inside_a_c_tag() {
    #[rustfmt::skip]
    let frame = [
        0x01, 0x00, 0x5e, 0x01, 0x01, 0x01, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01,
        0x81, 0x00, 0x00, 0x0a, // 802.1Q, VID 10
        0x88, 0xa8, 0x00, 0x14, // 802.1ad, VID 20
        0x08, 0x00,
        0x45, 0x00, 0x00, 0x1e, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x40, 0xcc,
        0x0a, 0x00, 0x00, 0x01, 0xef, 0x01, 0x01, 0x01,
        0x13, 0x88, 0x13, 0x8c, 0x00, 0x0a, 0x12, 0x34, b'h', b'i',
    ];
    assert_eq!(both(&frame), (Verdict::NotIp, Err(ParseError::BadVlan)));
}

/// Two 802.1ad tags: the same case with an S-tag outside.
#[test]
fn golden_s_tag_inside_an_s_tag() {
    #[rustfmt::skip]
    let frame = [
        0x01, 0x00, 0x5e, 0x01, 0x01, 0x01, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01,
        0x88, 0xa8, 0x00, 0x64, // 802.1ad, VID 100
        0x88, 0xa8, 0x00, 0xc8, // 802.1ad, VID 200
        0x08, 0x00,
        0x45, 0x00, 0x00, 0x1e, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x40, 0xcc,
        0x0a, 0x00, 0x00, 0x01, 0xef, 0x01, 0x01, 0x01,
        0x13, 0x88, 0x13, 0x8c, 0x00, 0x0a, 0x12, 0x34, b'h', b'i',
    ];
    assert_eq!(both(&frame), (Verdict::NotIp, Err(ParseError::BadVlan)));
}

/// The accepted double tag, for contrast: S-tag then C-tag, keyed on the
/// C-tag's VID by both.
#[test]
fn golden_c_tag_inside_an_s_tag() {
    #[rustfmt::skip]
    let frame = [
        0x01, 0x00, 0x5e, 0x01, 0x01, 0x01, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01,
        0x88, 0xa8, 0x00, 0x64, // 802.1ad, VID 100
        0x81, 0x00, 0x00, 0xc8, // 802.1Q, VID 200
        0x08, 0x00,
        0x45, 0x00, 0x00, 0x1e, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x40, 0xcc,
        0x0a, 0x00, 0x00, 0x01, 0xef, 0x01, 0x01, 0x01,
        0x13, 0x88, 0x13, 0x8c, 0x00, 0x0a, 0x12, 0x34, b'h', b'i',
    ];
    let (Verdict::Udp(k), Ok(u)) = both(&frame) else {
        panic!("not a datagram for both: {:?}", both(&frame));
    };
    let key = FlowKey::new("239.1.1.1".parse().unwrap(), 5004, 200).with_outer_vlan(100);
    assert_eq!((k.key, u.flow_key()), (key, key));
    assert_eq!((u.outer_vlan, u.inner_vlan), (Some(100), Some(200)));
    assert_eq!(&frame[u.payload_range()], b"hi");
}

/// UDP over IPv6 with a zero checksum: userspace refuses it (RFC 8200,
/// section 8.1); the kernel used to redirect it, a silent loss. It now
/// passes it as `Malformed`, for the kernel's stack to judge.
#[test]
fn golden_ipv6_zero_udp_checksum() {
    #[rustfmt::skip]
    let frame = [
        0x33, 0x33, 0x00, 0x00, 0x00, 0x01, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x86, 0xdd,
        0x60, 0x00, 0x00, 0x00, 0x00, 0x0a, 0x11, 0x40,
        0xfd, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01,
        0xff, 0x3e, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01,
        0x13, 0x88, 0x13, 0x8c, 0x00, 0x0a, 0x00, 0x00, b'h', b'i',
    ];
    assert_eq!(
        both(&frame),
        (Verdict::Malformed, Err(ParseError::ZeroChecksumV6))
    );
    // With a checksum (not verified by either), both take it.
    let mut with = frame;
    with[60..62].copy_from_slice(&[0x12, 0x34]);
    assert!(matches!(both(&with), (Verdict::Udp(_), Ok(_))));
}

/// A bad IPv4 header checksum: the allowed difference. The kernel redirects
/// (it does not verify the checksum); userspace refuses and the worker
/// counts it `malformed`, as the kernel's stack would have dropped it.
#[test]
fn golden_ipv4_bad_header_checksum() {
    #[rustfmt::skip]
    let frame = [
        0x01, 0x00, 0x5e, 0x01, 0x01, 0x01, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x08, 0x00,
        0x45, 0x00, 0x00, 0x1e, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x40, 0xcd, // 0x40cc
        0x0a, 0x00, 0x00, 0x01, 0xef, 0x01, 0x01, 0x01,
        0x13, 0x88, 0x13, 0x8c, 0x00, 0x0a, 0x12, 0x34, b'h', b'i',
    ];
    let (kernel, user) = both(&frame);
    assert!(matches!(kernel, Verdict::Udp(_)), "{kernel:?}");
    assert_eq!(user, Err(ParseError::BadChecksum));
    let mut good = frame;
    good[25] = 0xcc;
    assert!(matches!(both(&good), (Verdict::Udp(_), Ok(_))));
}

/// An IPv6 fragment header: both refuse it; userspace used to call it
/// `NotUdp(44)` where the kernel says `Fragment`, now both say fragment.
#[test]
fn golden_ipv6_fragment_header() {
    #[rustfmt::skip]
    let frame = [
        0x33, 0x33, 0x00, 0x00, 0x00, 0x01, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x86, 0xdd,
        0x60, 0x00, 0x00, 0x00, 0x00, 0x12, 0x2c, 0x40, // next header 44
        0xfd, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01,
        0xff, 0x3e, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01,
        0x11, 0x00, 0x00, 0x01, 0x12, 0x34, 0x56, 0x78, // first fragment, MF
        0x13, 0x88, 0x13, 0x8c, 0x00, 0x0a, 0x12, 0x34, b'h', b'i',
    ];
    assert!(matches!(
        both(&frame),
        (Verdict::Fragment(_), Err(ParseError::Fragment))
    ));
}

/// Three tags: both refuse, with reasons the mapping pairs (`NotIp` in the
/// kernel, `BadVlan` in userspace).
#[test]
fn golden_three_tags() {
    #[rustfmt::skip]
    let frame = [
        0x01, 0x00, 0x5e, 0x01, 0x01, 0x01, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01,
        0x88, 0xa8, 0x00, 0x01, 0x81, 0x00, 0x00, 0x02, 0x81, 0x00, 0x00, 0x03,
        0x08, 0x00,
        0x45, 0x00, 0x00, 0x1e, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x40, 0xcc,
        0x0a, 0x00, 0x00, 0x01, 0xef, 0x01, 0x01, 0x01,
        0x13, 0x88, 0x13, 0x8c, 0x00, 0x0a, 0x12, 0x34, b'h', b'i',
    ];
    assert_eq!(both(&frame), (Verdict::NotIp, Err(ParseError::BadVlan)));
}

/// A multi-buffer frame whose first buffer ends inside the IPv4 options of
/// a fragment: the one case where the reasons differ beyond the table
/// (`Truncated` in userspace, `Fragment` in the kernel); both refuse.
#[test]
fn golden_first_buffer_ends_inside_ipv4_options() {
    #[rustfmt::skip]
    let frame = [
        0x01, 0x00, 0x5e, 0x01, 0x01, 0x01, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x08, 0x00,
        0x46, 0x00, 0x00, 0x22, 0x00, 0x00, 0x20, 0x00, 0x40, 0x11, 0x5d, 0xc6, // MF
        0x0a, 0x00, 0x00, 0x01, 0xef, 0x01, 0x01, 0x01,
        0x01, 0x01, 0x01, 0x01, // NOP options
        0x13, 0x88, 0x13, 0x8c, 0x00, 0x0a, 0x12, 0x34, b'h', b'i',
    ];
    let head = &frame[..36];
    assert_eq!(
        agree(&frame, head.len()).unwrap(),
        Outcome {
            kernel: Kind::Fragment,
            user: Err(ParseError::Truncated)
        }
    );
    assert_eq!(parse_head(&frame, frame.len()), Err(ParseError::Fragment));
}
