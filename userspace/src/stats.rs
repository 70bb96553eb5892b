//! Per-flow and per-output counters, shared by every engine.
//!
//! The datapath owns a [`Stats`] built from the plan (one [`FlowCounters`]
//! per flow, one [`OutputCounters`] per output) and bumps plain atomics with
//! `Relaxed` ordering: no locks, no allocation, each counter block on its own
//! cache line so that two worker threads never false-share. Readers take a
//! [`Snapshot`] (serde, JSON-ready) at any time; it is printed as a table by
//! its `Display` impl.
//!
//! Accounting contract: `received` counts the datagrams a flow accepted for
//! replication (after the source check and the sanity checks, which are
//! counted in `source_rejected` and `malformed` instead). Every accepted
//! datagram ends, for every output, either in `sent` or in exactly one
//! `dropped` reason, so `sent + sum(dropped) == received` for each output once
//! the engine has stopped ([`Snapshot::check_accounting`]).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use crate::plan::Plan;

/// Why a replica was not sent. The socket engine uses the first five; the
/// AF_XDP engine adds its own (the enum is shared so that a snapshot reads the
/// same whichever engine ran).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DropReason {
    /// The egress socket or queue was full (EAGAIN): the engine never waits.
    WouldBlock,
    /// The receiver or its network is unreachable (ECONNREFUSED,
    /// EHOSTUNREACH, ENETUNREACH).
    Unreachable,
    /// The replica does not fit the egress path (EMSGSIZE).
    MessageTooBig,
    /// The kernel ran out of buffers (ENOBUFS).
    NoBuffer,
    /// XDP engine: the MAC address of the next hop is not known (yet).
    NextHopUnresolved,
    /// XDP engine: the TX ring of the egress interface was full.
    RingFull,
    /// Anything else.
    Other,
    /// XDP engine: every header slot was in flight (completions late).
    NoSlot,
    /// XDP engine: the replica headers could not be written (e.g. an IPv6
    /// datagram for an IPv4 output).
    HeaderError,
    /// XDP engine: the replica would need more descriptors than the device
    /// sends per packet.
    ChainTooLong,
}

impl DropReason {
    /// Number of reasons (size of the per-output counter array).
    pub const COUNT: usize = 10;
    /// Every reason, in counter-array order.
    pub const ALL: [DropReason; Self::COUNT] = [
        DropReason::WouldBlock,
        DropReason::Unreachable,
        DropReason::MessageTooBig,
        DropReason::NoBuffer,
        DropReason::NextHopUnresolved,
        DropReason::RingFull,
        DropReason::Other,
        DropReason::NoSlot,
        DropReason::HeaderError,
        DropReason::ChainTooLong,
    ];

    /// The reason for a failed send, from its errno.
    pub fn from_errno(errno: i32) -> Self {
        match errno {
            libc::EAGAIN => DropReason::WouldBlock,
            libc::ECONNREFUSED | libc::EHOSTUNREACH | libc::ENETUNREACH => DropReason::Unreachable,
            libc::EMSGSIZE => DropReason::MessageTooBig,
            libc::ENOBUFS => DropReason::NoBuffer,
            _ => DropReason::Other,
        }
    }

    /// The snake_case name used in JSON and in the table.
    pub fn name(self) -> &'static str {
        match self {
            DropReason::WouldBlock => "would_block",
            DropReason::Unreachable => "unreachable",
            DropReason::MessageTooBig => "message_too_big",
            DropReason::NoBuffer => "no_buffer",
            DropReason::NextHopUnresolved => "next_hop_unresolved",
            DropReason::RingFull => "ring_full",
            DropReason::Other => "other",
            DropReason::NoSlot => "no_slot",
            DropReason::HeaderError => "header_error",
            DropReason::ChainTooLong => "chain_too_long",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Counters of one flow (the receive side). One cache line per flow.
#[derive(Debug, Default)]
#[repr(align(64))]
pub struct FlowCounters {
    received: AtomicU64,
    received_bytes: AtomicU64,
    source_rejected: AtomicU64,
    malformed: AtomicU64,
}

impl FlowCounters {
    /// `n` datagrams totalling `bytes` accepted for replication.
    #[inline]
    pub fn add_received(&self, n: u64, bytes: u64) {
        self.received.fetch_add(n, Ordering::Relaxed);
        self.received_bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// `n` datagrams from a sender other than the configured source.
    #[inline]
    pub fn add_source_rejected(&self, n: u64) {
        self.source_rejected.fetch_add(n, Ordering::Relaxed);
    }

    /// `n` datagrams that were malformed or truncated.
    #[inline]
    pub fn add_malformed(&self, n: u64) {
        self.malformed.fetch_add(n, Ordering::Relaxed);
    }
}

/// Counters of one output (the send side). One cache line or two per output.
#[derive(Debug, Default)]
#[repr(align(64))]
pub struct OutputCounters {
    sent: AtomicU64,
    sent_bytes: AtomicU64,
    dropped: [AtomicU64; DropReason::COUNT],
}

impl OutputCounters {
    /// `n` replicas totalling `bytes` handed to the kernel or the NIC.
    #[inline]
    pub fn add_sent(&self, n: u64, bytes: u64) {
        self.sent.fetch_add(n, Ordering::Relaxed);
        self.sent_bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// `n` replicas dropped for `reason`.
    #[inline]
    pub fn add_dropped(&self, reason: DropReason, n: u64) {
        self.dropped[reason.index()].fetch_add(n, Ordering::Relaxed);
    }
}

/// Counters of one output, with its name for reports.
#[derive(Debug)]
pub struct OutputStats {
    pub name: String,
    pub dest: String,
    pub counters: OutputCounters,
}

/// Counters of one flow and of its outputs, in plan order.
#[derive(Debug)]
pub struct FlowStats {
    pub name: String,
    pub counters: FlowCounters,
    pub outputs: Vec<OutputStats>,
}

/// Every counter of a running engine, indexed like the plan
/// (`flows[f].outputs[o]` belongs to `plan.flows[f].outputs[o]`).
#[derive(Debug)]
pub struct Stats {
    pub engine: String,
    pub flows: Vec<FlowStats>,
}

impl Stats {
    /// Zeroed counters for every flow and output of `plan`.
    pub fn for_plan(plan: &Plan, engine: &str) -> Self {
        let flows = plan
            .flows
            .iter()
            .map(|f| FlowStats {
                name: f.name.clone(),
                counters: FlowCounters::default(),
                outputs: f
                    .outputs
                    .iter()
                    .map(|o| OutputStats {
                        name: o.name.clone(),
                        dest: o.dest.to_string(),
                        counters: OutputCounters::default(),
                    })
                    .collect(),
            })
            .collect();
        Stats {
            engine: engine.to_owned(),
            flows,
        }
    }

    /// A consistent-enough copy of every counter (each counter is read once;
    /// take it after the engine stopped for an exact account).
    pub fn snapshot(&self) -> Snapshot {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Snapshot {
            engine: self.engine.clone(),
            flows: self
                .flows
                .iter()
                .map(|f| FlowSnapshot {
                    name: f.name.clone(),
                    received: load(&f.counters.received),
                    received_bytes: load(&f.counters.received_bytes),
                    source_rejected: load(&f.counters.source_rejected),
                    malformed: load(&f.counters.malformed),
                    outputs: f
                        .outputs
                        .iter()
                        .map(|o| OutputSnapshot {
                            name: o.name.clone(),
                            dest: o.dest.clone(),
                            sent: load(&o.counters.sent),
                            sent_bytes: load(&o.counters.sent_bytes),
                            dropped: DropReason::ALL
                                .iter()
                                .map(|r| (*r, load(&o.counters.dropped[r.index()])))
                                .collect(),
                        })
                        .collect(),
                })
                .collect(),
            xdp: None,
        }
    }
}

/// Plain copy of [`Stats`], serialisable (`--stats-json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Which engine produced the numbers (`socket`, `xdp`).
    pub engine: String,
    pub flows: Vec<FlowSnapshot>,
    /// The XDP datapath's own counters (program, AF_XDP sockets, workers);
    /// absent when the socket engine ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub xdp: Option<XdpSnapshot>,
}

/// The XDP datapath's counters, per ingress interface.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct XdpSnapshot {
    pub interfaces: Vec<XdpInterfaceSnapshot>,
}

/// One ingress interface of the XDP datapath.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct XdpInterfaceSnapshot {
    pub interface: String,
    /// `native` or `generic` XDP.
    pub attach: String,
    /// `zero-copy` or `copy` AF_XDP.
    pub bind: String,
    /// The program's `COUNTERS` (seen, matched, redirected, passed, ...),
    /// summed over the CPUs.
    pub program: BTreeMap<String, u64>,
    pub queues: Vec<XdpQueueSnapshot>,
}

/// One rx queue of an ingress interface: its worker and its sockets.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct XdpQueueSnapshot {
    pub queue: u32,
    /// The worker's frame counters (rx_packets, malformed, no_flow, ...).
    pub worker: BTreeMap<String, u64>,
    /// The kernel's `XDP_STATISTICS` of the receiving socket.
    pub rx_socket: BTreeMap<String, u64>,
    /// The kernel's `XDP_STATISTICS` of each transmitting socket, by egress
    /// interface.
    pub tx_sockets: BTreeMap<String, BTreeMap<String, u64>>,
}

/// One flow in a [`Snapshot`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowSnapshot {
    pub name: String,
    /// Datagrams accepted for replication.
    pub received: u64,
    pub received_bytes: u64,
    /// Datagrams from a sender other than the configured source (not replicated).
    pub source_rejected: u64,
    /// Malformed or truncated datagrams (not replicated).
    pub malformed: u64,
    pub outputs: Vec<OutputSnapshot>,
}

/// One output in a [`Snapshot`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputSnapshot {
    pub name: String,
    pub dest: String,
    pub sent: u64,
    /// UDP payload bytes of the replicas sent (headers not counted), in
    /// every engine: comparable with the flow's `received_bytes`.
    pub sent_bytes: u64,
    /// Every reason, zeros included.
    pub dropped: BTreeMap<DropReason, u64>,
}

impl OutputSnapshot {
    /// Replicas dropped, all reasons together.
    pub fn dropped_total(&self) -> u64 {
        self.dropped.values().sum()
    }

    /// Replicas dropped for `reason`.
    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.dropped.get(&reason).copied().unwrap_or(0)
    }
}

impl Snapshot {
    /// Checks `sent + dropped == received` for every output; the error names
    /// every output that does not balance.
    pub fn check_accounting(&self) -> Result<(), String> {
        let mut bad = Vec::new();
        for f in &self.flows {
            for o in &f.outputs {
                let accounted = o.sent + o.dropped_total();
                if accounted != f.received {
                    bad.push(format!(
                        "flow {:?} output {:?}: sent {} + dropped {} = {} != received {}",
                        f.name,
                        o.name,
                        o.sent,
                        o.dropped_total(),
                        accounted,
                        f.received
                    ));
                }
            }
        }
        if bad.is_empty() {
            Ok(())
        } else {
            Err(bad.join("; "))
        }
    }

    /// The flow named `name`.
    pub fn flow(&self, name: &str) -> Option<&FlowSnapshot> {
        self.flows.iter().find(|f| f.name == name)
    }
}

impl FlowSnapshot {
    /// The output named `name`.
    pub fn output(&self, name: &str) -> Option<&OutputSnapshot> {
        self.outputs.iter().find(|o| o.name == name)
    }
}

/// The human-readable counter table.
impl fmt::Display for Snapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "engine: {}", self.engine)?;
        for flow in &self.flows {
            writeln!(
                f,
                "flow {}: received {} datagrams ({} bytes), source-rejected {}, malformed {}",
                flow.name, flow.received, flow.received_bytes, flow.source_rejected, flow.malformed
            )?;
            let name_w = flow
                .outputs
                .iter()
                .map(|o| o.name.len())
                .max()
                .unwrap_or(0)
                .max("output".len());
            writeln!(
                f,
                "  {:<name_w$}  {:>12}  {:>14}  {:>10}  reasons",
                "output", "sent", "bytes", "dropped"
            )?;
            for o in &flow.outputs {
                write!(
                    f,
                    "  {:<name_w$}  {:>12}  {:>14}  {:>10}  ",
                    o.name,
                    o.sent,
                    o.sent_bytes,
                    o.dropped_total()
                )?;
                let mut any = false;
                for (reason, n) in o.dropped.iter().filter(|(_, n)| **n > 0) {
                    write!(f, "{}{}={}", if any { " " } else { "" }, reason.name(), n)?;
                    any = true;
                }
                if !any {
                    write!(f, "-")?;
                }
                writeln!(f)?;
            }
        }
        if let Some(xdp) = &self.xdp {
            let join = |m: &BTreeMap<String, u64>| {
                m.iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            };
            for i in &xdp.interfaces {
                writeln!(
                    f,
                    "xdp {} ({} {}): program {}",
                    i.interface,
                    i.attach,
                    i.bind,
                    join(&i.program)
                )?;
                for q in &i.queues {
                    writeln!(f, "  queue {}: worker {}", q.queue, join(&q.worker))?;
                    writeln!(f, "  queue {}: rx socket {}", q.queue, join(&q.rx_socket))?;
                    for (dev, st) in &q.tx_sockets {
                        writeln!(f, "  queue {}: tx socket {dev} {}", q.queue, join(st))?;
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{FlowPlan, Interface, Mode, OutputKind, OutputPlan};

    fn plan() -> Plan {
        let lo = Interface {
            name: "lo".into(),
            index: 1,
            mtu: 65536,
            mac: None,
            ipv4: vec![],
            ipv6: vec![],
        };
        let out = |name: &str, port| OutputPlan {
            name: name.into(),
            kind: OutputKind::Unicast,
            dest: format!("10.0.0.1:{port}").parse().unwrap(),
            interface: None,
            source_port: None,
            ttl: 16,
        };
        Plan {
            mode: Mode::Socket,
            batch_size: 32,
            flows: vec![FlowPlan {
                name: "tv".into(),
                ingress: lo,
                group: "239.1.1.1".parse().unwrap(),
                port: 5000,
                vlan: None,
                source: None,
                outputs: vec![out("a", 1), out("b", 2)],
            }],
        }
    }

    #[test]
    fn snapshot_counts_and_balances() {
        let stats = Stats::for_plan(&plan(), "socket");
        let f = &stats.flows[0];
        f.counters.add_received(10, 1000);
        f.counters.add_source_rejected(3);
        f.counters.add_malformed(1);
        f.outputs[0].counters.add_sent(10, 1000);
        f.outputs[1].counters.add_sent(7, 700);
        f.outputs[1].counters.add_dropped(DropReason::WouldBlock, 2);
        f.outputs[1]
            .counters
            .add_dropped(DropReason::Unreachable, 1);
        let s = stats.snapshot();
        assert_eq!(s.engine, "socket");
        let fs = s.flow("tv").unwrap();
        assert_eq!(
            (
                fs.received,
                fs.received_bytes,
                fs.source_rejected,
                fs.malformed
            ),
            (10, 1000, 3, 1)
        );
        let b = fs.output("b").unwrap();
        assert_eq!((b.sent, b.sent_bytes, b.dropped_total()), (7, 700, 3));
        assert_eq!(b.dropped(DropReason::WouldBlock), 2);
        assert_eq!(b.dropped(DropReason::Unreachable), 1);
        assert_eq!(b.dropped(DropReason::RingFull), 0);
        assert_eq!(b.dropped.len(), DropReason::COUNT);
        s.check_accounting().unwrap();

        f.outputs[0].counters.add_dropped(DropReason::Other, 1);
        let err = stats.snapshot().check_accounting().unwrap_err();
        assert!(err.contains("output \"a\""), "{err}");
        assert!(err.contains("11 != received 10"), "{err}");
    }

    #[test]
    fn snapshot_json_round_trip() {
        let stats = Stats::for_plan(&plan(), "socket");
        stats.flows[0].outputs[0]
            .counters
            .add_dropped(DropReason::MessageTooBig, 5);
        let s = stats.snapshot();
        let json = serde_json::to_string(&s).unwrap();
        assert!(json.contains("\"message_too_big\":5"), "{json}");
        assert!(json.contains("\"next_hop_unresolved\":0"), "{json}");
        let back: Snapshot = serde_json::from_str(&json).unwrap();
        assert_eq!(back, s);
    }

    #[test]
    fn table_names_flows_outputs_and_reasons() {
        let stats = Stats::for_plan(&plan(), "socket");
        let f = &stats.flows[0];
        f.counters.add_received(4, 400);
        f.outputs[0].counters.add_sent(4, 400);
        f.outputs[1].counters.add_sent(1, 100);
        f.outputs[1].counters.add_dropped(DropReason::NoBuffer, 3);
        let table = stats.snapshot().to_string();
        assert!(
            table.contains("flow tv: received 4 datagrams (400 bytes)"),
            "{table}"
        );
        assert!(table.contains("no_buffer=3"), "{table}");
        let line_a = table
            .lines()
            .find(|l| l.trim_start().starts_with("a "))
            .unwrap();
        assert!(line_a.trim_end().ends_with('-'), "{table}");
    }

    #[test]
    fn errno_maps_to_reasons() {
        assert_eq!(DropReason::from_errno(libc::EAGAIN), DropReason::WouldBlock);
        assert_eq!(
            DropReason::from_errno(libc::ECONNREFUSED),
            DropReason::Unreachable
        );
        assert_eq!(
            DropReason::from_errno(libc::EHOSTUNREACH),
            DropReason::Unreachable
        );
        assert_eq!(
            DropReason::from_errno(libc::ENETUNREACH),
            DropReason::Unreachable
        );
        assert_eq!(
            DropReason::from_errno(libc::EMSGSIZE),
            DropReason::MessageTooBig
        );
        assert_eq!(DropReason::from_errno(libc::ENOBUFS), DropReason::NoBuffer);
        assert_eq!(DropReason::from_errno(libc::EPERM), DropReason::Other);
        for (i, r) in DropReason::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
        }
    }

    #[test]
    fn counters_are_cache_line_aligned() {
        assert_eq!(std::mem::align_of::<FlowCounters>(), 64);
        assert_eq!(std::mem::align_of::<OutputCounters>(), 64);
    }
}
