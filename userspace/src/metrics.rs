//! The Prometheus view of a running engine: [`render`] turns a
//! [`Snapshot`] into the Prometheus text exposition format (version
//! 0.0.4), through prometheus-client.
//!
//! Contract: every counter of the snapshot is one sample, named after
//! Prometheus conventions (`fanout_` prefix, base units, `_total` for
//! counters, one metric per quantity with the reason as a label rather than
//! one metric per reason). Labels: `flow`, `output` (its name in the
//! stats), `destination`, `reason`, and for the XDP datapath `interface`,
//! `queue`, `socket` (`rx`, or the egress interface of a TX socket) and
//! `counter`. The engine of each flow is `fanout_flow_info{flow, engine}`
//! (1), the build `fanout_build_info{version, revision, xdp_program}`.
//! Nothing here reads the engine: `fanout run` serves what its last
//! snapshot says.

use std::borrow::Cow;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

use crate::stats::{DropReason, Snapshot};

/// What `fanout_build_info` says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildInfo {
    pub version: String,
    pub revision: String,
    /// `embedded sha256:HEX`, or `not embedded`.
    pub xdp_program: String,
}

/// The exposition of `snap` and `build`, as served on `/metrics`. Flows
/// and outputs removed while running are left out (their series end, as a
/// Prometheus target's do; one added again under the same name starts
/// again from zero, which Prometheus reads as a counter reset).
pub fn render(snap: &Snapshot, build: &BuildInfo) -> String {
    let mut snap = snap.clone();
    snap.flows.retain(|f| !f.removed);
    for f in &mut snap.flows {
        f.outputs.retain(|o| !o.removed);
    }
    let mut registry = Registry::default();
    registry.register_collector(Box::new(View {
        snap,
        build: build.clone(),
    }));
    let mut text = String::new();
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::prometheus_text::encode(&mut text, &registry);
    text
}

/// The `Content-Type` of [`render`]'s text.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

type Labels = Vec<(Cow<'static, str>, Cow<'static, str>)>;

fn labels<const N: usize>(pairs: [(&'static str, &str); N]) -> Labels {
    pairs
        .into_iter()
        .map(|(k, v)| (Cow::Borrowed(k), Cow::Owned(v.to_owned())))
        .collect()
}

/// One snapshot as a collector.
#[derive(Debug)]
struct View {
    snap: Snapshot,
    build: BuildInfo,
}

/// Encodes one counter family: `name` (without `_total`), its help and
/// its samples.
fn counters(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    samples: &[(Labels, u64)],
) -> Result<(), std::fmt::Error> {
    if samples.is_empty() {
        return Ok(());
    }
    let mut family =
        encoder.encode_descriptor(name, help, None, ConstCounter::new(0u64).metric_type())?;
    for (l, v) in samples {
        ConstCounter::new(*v).encode(family.encode_family(l)?)?;
    }
    Ok(())
}

/// Encodes one gauge family of samples that are all 1 (information).
fn infos(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    samples: &[Labels],
) -> Result<(), std::fmt::Error> {
    let mut family =
        encoder.encode_descriptor(name, help, None, ConstGauge::new(1i64).metric_type())?;
    for l in samples {
        ConstGauge::new(1i64).encode(family.encode_family(l)?)?;
    }
    Ok(())
}

impl Collector for View {
    fn encode(&self, mut e: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = &self.snap;
        let b = &self.build;
        infos(
            &mut e,
            "fanout_build_info",
            "The fanout build: version, source revision, XDP program built in.",
            &[labels([
                ("version", &b.version),
                ("revision", &b.revision),
                ("xdp_program", &b.xdp_program),
            ])],
        )?;
        let flows: Vec<Labels> = s
            .flows
            .iter()
            .map(|f| labels([("flow", &f.name), ("engine", &f.engine)]))
            .collect();
        infos(
            &mut e,
            "fanout_flow_info",
            "The engine each flow runs on (socket, xdp native copy, ...).",
            &flows,
        )?;
        let per_flow = |get: fn(&crate::stats::FlowSnapshot) -> u64| -> Vec<(Labels, u64)> {
            s.flows
                .iter()
                .map(|f| (labels([("flow", &f.name)]), get(f)))
                .collect()
        };
        counters(
            &mut e,
            "fanout_flow_received_datagrams",
            "Datagrams of the flow the engine received.",
            &per_flow(|f| f.received),
        )?;
        counters(
            &mut e,
            "fanout_flow_received_bytes",
            "UDP payload bytes of the flow the engine received.",
            &per_flow(|f| f.received_bytes),
        )?;
        counters(
            &mut e,
            "fanout_flow_checksums_completed",
            "Received datagrams whose unfinished UDP checksum the XDP worker completed.",
            &per_flow(|f| f.checksum_completed),
        )?;
        let not_replicated: Vec<(Labels, u64)> = s
            .flows
            .iter()
            .flat_map(|f| {
                [
                    ("source_rejected", f.source_rejected),
                    ("malformed", f.malformed),
                    ("ttl_expired", f.ttl_expired),
                    ("rate_limited", f.rate_limited),
                ]
                .map(|(r, v)| (labels([("flow", &f.name), ("reason", r)]), v))
            })
            .collect();
        counters(
            &mut e,
            "fanout_flow_not_replicated_datagrams",
            "Received datagrams not replicated, by reason.",
            &not_replicated,
        )?;
        let outputs = |get: fn(&crate::stats::OutputSnapshot) -> u64| -> Vec<(Labels, u64)> {
            s.flows
                .iter()
                .flat_map(|f| {
                    f.outputs.iter().map(move |o| {
                        (
                            labels([
                                ("flow", &f.name),
                                ("output", &o.name),
                                ("destination", &o.dest),
                            ]),
                            get(o),
                        )
                    })
                })
                .collect()
        };
        counters(
            &mut e,
            "fanout_output_sent_datagrams",
            "Replicas handed to the kernel or the NIC for the output.",
            &outputs(|o| o.sent),
        )?;
        counters(
            &mut e,
            "fanout_output_sent_bytes",
            "UDP payload bytes of the replicas sent to the output.",
            &outputs(|o| o.sent_bytes),
        )?;
        let dropped: Vec<(Labels, u64)> = s
            .flows
            .iter()
            .flat_map(|f| {
                f.outputs.iter().flat_map(move |o| {
                    DropReason::ALL.iter().map(move |&r| {
                        (
                            labels([
                                ("flow", &f.name),
                                ("output", &o.name),
                                ("destination", &o.dest),
                                ("reason", r.name()),
                            ]),
                            o.dropped(r),
                        )
                    })
                })
            })
            .collect();
        counters(
            &mut e,
            "fanout_output_dropped_datagrams",
            "Replicas of the output dropped, by reason.",
            &dropped,
        )?;
        self.encode_health(&mut e)?;
        self.encode_xdp(&mut e)
    }
}

impl View {
    /// Stream health of every flow whose check is not off: what was found
    /// (`fanout_stream_info`) and one counter per health counter, named as
    /// in the JSON (`fanout_stream_rtp_lost_total`).
    fn encode_health(&self, e: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let checked: Vec<&crate::stats::FlowSnapshot> = self
            .snap
            .flows
            .iter()
            .filter(|f| f.health.mode != crate::health::HealthMode::Off)
            .collect();
        if checked.is_empty() {
            return Ok(());
        }
        let info: Vec<Labels> = checked
            .iter()
            .map(|f| {
                labels([
                    ("flow", &f.name),
                    ("mode", f.health.mode.name()),
                    ("kind", f.health.counters.kind.name()),
                ])
            })
            .collect();
        infos(
            e,
            "fanout_stream_info",
            "The stream-health check of each flow (mode) and what it found (kind: none, ts, \
             rtp, rtp+ts).",
            &info,
        )?;
        let help = [
            ("rtp_packets", "RTP datagrams checked."),
            ("rtp_lost", "RTP sequence numbers that never arrived."),
            (
                "rtp_reordered",
                "RTP datagrams that arrived after a later one.",
            ),
            (
                "rtp_duplicates",
                "RTP datagrams that arrived more than once.",
            ),
            (
                "rtp_restarts",
                "RTP source restarts: a new SSRC or a sequence jump.",
            ),
            (
                "rtp_invalid",
                "Datagrams of an RTP flow without an RTP version 2 header.",
            ),
            ("ts_packets", "MPEG-TS packets checked."),
            ("ts_cc_errors", "MPEG-TS continuity-counter errors."),
            ("ts_duplicates", "MPEG-TS packets legally sent twice."),
            (
                "ts_transport_errors",
                "MPEG-TS packets with the transport error indicator set.",
            ),
            (
                "ts_sync_errors",
                "Datagrams of a TS flow that are not whole 188-byte packets in sync.",
            ),
        ];
        for (i, (field, help)) in help.iter().enumerate() {
            let values: Vec<(Labels, u64)> = checked
                .iter()
                .map(|f| {
                    let (name, v) = f.health.counters.fields()[i];
                    debug_assert_eq!(name, *field);
                    (labels([("flow", &f.name)]), v)
                })
                .collect();
            counters(e, &format!("fanout_stream_{field}"), help, &values)?;
        }
        Ok(())
    }

    /// The XDP datapath's own counters, when it runs.
    fn encode_xdp(&self, e: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = &self.snap;
        let mut redirected = Vec::new();
        let mut lost = Vec::new();
        let mut passed = Vec::new();
        for f in &s.flows {
            let Some(x) = &f.xdp else { continue };
            redirected.push((labels([("flow", &f.name)]), x.redirected));
            lost.push((labels([("flow", &f.name)]), x.lost_before_worker));
            for (reason, v) in &x.passed {
                passed.push((labels([("flow", &f.name), ("reason", reason)]), *v));
            }
        }
        counters(
            e,
            "fanout_xdp_flow_redirected_datagrams",
            "Datagrams of the flow the XDP program redirected to an AF_XDP socket.",
            &redirected,
        )?;
        counters(
            e,
            "fanout_xdp_flow_lost_before_worker_datagrams",
            "Redirected datagrams of the flow that never reached its worker (the kernel dropped them: rings full).",
            &lost,
        )?;
        counters(
            e,
            "fanout_xdp_flow_passed_datagrams",
            "Datagrams of the flow the XDP program passed to the kernel, by reason.",
            &passed,
        )?;
        let Some(xdp) = &s.xdp else { return Ok(()) };
        let mut program = Vec::new();
        let mut sockets = Vec::new();
        for i in &xdp.interfaces {
            for (counter, v) in &i.program {
                program.push((
                    labels([("interface", &i.interface), ("counter", counter)]),
                    *v,
                ));
            }
            for q in &i.queues {
                let queue = q.queue.to_string();
                let rx = std::iter::once(("rx", &q.rx_socket));
                let tx = q.tx_sockets.iter().map(|(dev, st)| (dev.as_str(), st));
                for (socket, stats) in rx.chain(tx) {
                    for (counter, v) in stats {
                        sockets.push((
                            labels([
                                ("interface", &i.interface),
                                ("queue", &queue),
                                ("socket", socket),
                                ("counter", counter),
                            ]),
                            *v,
                        ));
                    }
                }
            }
        }
        counters(
            e,
            "fanout_xdp_program_packets",
            "What the XDP program did with the frames of the interface, by counter.",
            &program,
        )?;
        counters(
            e,
            "fanout_xdp_socket_events",
            "The AF_XDP sockets' kernel statistics (XDP_STATISTICS), by counter.",
            &sockets,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::{FlowSnapshot, OutputSnapshot};

    fn snap() -> Snapshot {
        let output = OutputSnapshot {
            name: "a".into(),
            dest: "10.0.0.2:6000".into(),
            removed: false,
            offered: 10,
            sent: 7,
            sent_bytes: 700,
            dropped: DropReason::ALL
                .iter()
                .map(|&r| (r, u64::from(r == DropReason::NoSlot) * 3))
                .collect(),
        };
        Snapshot {
            engine: "socket".into(),
            flows: vec![FlowSnapshot {
                name: "tv".into(),
                removed: false,
                engine: "socket".into(),
                engine_reason: None,
                received: 10,
                received_bytes: 1000,
                source_rejected: 1,
                malformed: 0,
                checksum_completed: 0,
                ttl_expired: 0,
                rate_limited: 0,
                health: crate::stats::FlowHealth {
                    mode: crate::health::HealthMode::Auto,
                    counters: crate::health::HealthCounters {
                        kind: crate::health::StreamKind::RtpTs,
                        rtp_packets: 10,
                        rtp_lost: 2,
                        ts_cc_errors: 3,
                        ..Default::default()
                    },
                },
                xdp: None,
                outputs: vec![output],
            }],
            xdp: None,
        }
    }

    fn build() -> BuildInfo {
        BuildInfo {
            version: "0.1.0".into(),
            revision: "abc".into(),
            xdp_program: "not embedded".into(),
        }
    }

    /// Every counter once, with its labels, `_total` and `# TYPE`.
    #[test]
    fn the_exposition_has_every_counter() {
        let text = render(&snap(), &build());
        for line in [
            "# TYPE fanout_build_info gauge",
            "fanout_build_info{version=\"0.1.0\",revision=\"abc\",xdp_program=\"not embedded\"} 1",
            "fanout_flow_info{flow=\"tv\",engine=\"socket\"} 1",
            "# TYPE fanout_flow_received_datagrams_total counter",
            "fanout_flow_received_datagrams_total{flow=\"tv\"} 10",
            "fanout_flow_received_bytes_total{flow=\"tv\"} 1000",
            "fanout_flow_not_replicated_datagrams_total{flow=\"tv\",reason=\"source_rejected\"} 1",
            "fanout_flow_not_replicated_datagrams_total{flow=\"tv\",reason=\"malformed\"} 0",
            "fanout_output_sent_datagrams_total{flow=\"tv\",output=\"a\",destination=\"10.0.0.2:6000\"} 7",
            "fanout_output_sent_bytes_total{flow=\"tv\",output=\"a\",destination=\"10.0.0.2:6000\"} 700",
            "fanout_output_dropped_datagrams_total{flow=\"tv\",output=\"a\",destination=\"10.0.0.2:6000\",reason=\"no_slot\"} 3",
            "fanout_stream_info{flow=\"tv\",mode=\"auto\",kind=\"rtp+ts\"} 1",
            "# TYPE fanout_stream_rtp_lost_total counter",
            "fanout_stream_rtp_packets_total{flow=\"tv\"} 10",
            "fanout_stream_rtp_lost_total{flow=\"tv\"} 2",
            "fanout_stream_ts_cc_errors_total{flow=\"tv\"} 3",
            "fanout_stream_ts_sync_errors_total{flow=\"tv\"} 0",
        ] {
            assert!(text.lines().any(|l| l == line), "{line}\n{text}");
        }
        // One sample per reason, every reason.
        let dropped = text
            .lines()
            .filter(|l| l.starts_with("fanout_output_dropped_datagrams_total{"))
            .count();
        assert_eq!(dropped, DropReason::ALL.len(), "{text}");
        assert!(!text.contains("fanout_xdp_"), "no XDP section: {text}");
    }

    /// What was removed while running has no series: a removed output (or
    /// flow) beside a configured one of the same name would repeat its
    /// labels, which the text format forbids.
    #[test]
    fn removed_flows_and_outputs_are_left_out() {
        let mut s = snap();
        let mut old = s.flows[0].outputs[0].clone();
        old.removed = true;
        old.sent = 99;
        s.flows[0].outputs.push(old);
        let mut gone = s.flows[0].clone();
        gone.name = "radio".into();
        gone.removed = true;
        s.flows.push(gone);
        let text = render(&s, &build());
        let sent: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("fanout_output_sent_datagrams_total{"))
            .collect();
        assert_eq!(
            sent,
            [
                "fanout_output_sent_datagrams_total{flow=\"tv\",output=\"a\",destination=\"10.0.0.2:6000\"} 7"
            ]
        );
        assert!(!text.contains("radio"), "{text}");
    }
}
