//! The control socket's protocol: what `fanout ctl` and `fanout top` ask a
//! running `fanout run`, and what it answers.
//!
//! Contract: one request per connection on a Unix stream socket, one line
//! of JSON each way ([`Request`], then [`Response`]), the connection closed
//! after the answer. [`query`] is the client side. The server (in the
//! binary) answers [`Request::Show`] from the counters of the last second
//! ([`Show`]: the running plan, every counter, and the rates over the last
//! interval, [`Rates::between`]).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::stats::{DropReason, Snapshot};

/// Where `fanout run` serves the control socket unless told otherwise.
pub const DEFAULT_SOCKET: &str = "/run/fanout/fanout.sock";
/// The longest request or answer line read.
pub const MAX_LINE: usize = 64 << 20;
/// How long either side waits for the other.
pub const TIMEOUT: Duration = Duration::from_secs(5);

/// What a client asks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "request", rename_all = "snake_case")]
pub enum Request {
    /// The running plan, its counters and rates.
    Show,
    /// Read the configuration file again and apply it (as SIGHUP does).
    Reload,
    /// Change the running configuration (runtime-only: the file stays as
    /// it is, and a reload returns to it).
    Change(crate::config::edit::Edit),
}

/// What `fanout run` answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response {
    /// `None` when the request was carried out; else why not, as the
    /// command line says it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The exit status the client should end with on `error` (2: a bad
    /// configuration, 1: anything else).
    #[serde(default)]
    pub status: u8,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub show: Option<Box<Show>>,
    /// What a reload did, for the operator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl Response {
    /// A refusal with exit status `status`.
    pub fn error(status: u8, why: impl Into<String>) -> Self {
        Response {
            error: Some(why.into()),
            status,
            show: None,
            message: None,
        }
    }

    /// Done, with `message` for the operator.
    pub fn done(message: impl Into<String>) -> Self {
        Response {
            error: None,
            status: 0,
            show: None,
            message: Some(message.into()),
        }
    }
}

/// The answer to [`Request::Show`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Show {
    /// `fanout_build_info`'s version.
    pub version: String,
    pub pid: u32,
    /// The configuration file it runs.
    pub config: String,
    /// Seconds since the engine started.
    pub uptime_secs: f64,
    /// The running plan, flow by flow.
    pub flows: Vec<PlanFlow>,
    /// How the running plan differs from the configuration file, changed
    /// with `fanout ctl` (runtime-only: a reload returns to the file).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub runtime_changes: Vec<String>,
    /// Every counter, as the stats JSON has them.
    pub stats: Snapshot,
    /// Rates over the last interval (about a second).
    pub rates: Rates,
}

/// One flow of the running plan, as configured and resolved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanFlow {
    pub name: String,
    /// `in0 (index 4, mtu 9000)`.
    pub ingress: String,
    /// `239.1.1.1:5000`.
    pub group: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vlan: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outer_vlan: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// `none`, or the caps.
    pub cap: String,
    /// `auto`, `rtp`, `ts`, `off`.
    pub health: String,
    pub outputs: Vec<PlanOutput>,
}

/// One output of the running plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanOutput {
    pub name: String,
    /// `unicast` or `multicast`.
    pub kind: String,
    pub dest: String,
    /// The egress interface; `by route` when the kernel's route decides.
    pub egress: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vlan: Option<u16>,
    pub ttl: u8,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_port: Option<u16>,
}

impl PlanFlow {
    /// The flows of `plan`, for [`Show`].
    pub fn of(plan: &crate::plan::Plan) -> Vec<PlanFlow> {
        let iface =
            |i: &crate::plan::Interface| format!("{} (index {}, mtu {})", i.name, i.index, i.mtu);
        plan.flows
            .iter()
            .map(|f| PlanFlow {
                name: f.name.clone(),
                ingress: iface(&f.ingress),
                group: std::net::SocketAddr::new(f.group, f.port).to_string(),
                vlan: f.vlan,
                outer_vlan: f.outer_vlan,
                source: f.source.map(|s| s.to_string()),
                cap: f.cap.to_string(),
                health: f.health.name().to_owned(),
                outputs: f
                    .outputs
                    .iter()
                    .map(|o| PlanOutput {
                        name: o.name.clone(),
                        kind: o.kind.to_string(),
                        dest: o.dest.to_string(),
                        egress: o.interface.as_ref().map_or("by route".to_owned(), iface),
                        vlan: o.vlan,
                        ttl: o.ttl,
                        source_port: o.source_port,
                    })
                    .collect(),
            })
            .collect()
    }
}

/// Rates over one interval, per flow and per output (in the snapshot's
/// order).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Rates {
    /// The interval, in seconds (0 before there were two snapshots).
    pub secs: f64,
    pub flows: Vec<FlowRates>,
}

/// One flow's rates.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct FlowRates {
    pub name: String,
    /// Datagrams received per second.
    pub received_pps: f64,
    /// Payload bits received per second.
    pub received_bps: f64,
    /// Datagrams not replicated (source, malformed, TTL, rate cap) per
    /// second.
    pub not_replicated_pps: f64,
    /// Stream-health errors per second ([`crate::health::HealthCounters::errors`]).
    pub health_errors_ps: f64,
    pub outputs: Vec<OutputRates>,
}

/// One output's rates.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct OutputRates {
    pub name: String,
    pub sent_pps: f64,
    /// Payload bits sent per second.
    pub sent_bps: f64,
    pub dropped_pps: f64,
    /// Drops per second by reason, the reasons that dropped any only.
    pub dropped_by_reason: BTreeMap<DropReason, f64>,
}

impl Rates {
    /// The rates from `before` to `now`, `secs` apart. A flow or output of
    /// `now` that `before` lacks (or that counted backwards, as after a
    /// restart) starts from zero.
    pub fn between(before: &Snapshot, now: &Snapshot, secs: f64) -> Rates {
        let per = |a: u64, b: u64| {
            if secs > 0.0 {
                a.saturating_sub(b) as f64 / secs
            } else {
                0.0
            }
        };
        let flows = now
            .flows
            .iter()
            .map(|f| {
                let b = before.flow(&f.name);
                let was = |get: fn(&crate::stats::FlowSnapshot) -> u64| b.map_or(0, get);
                let not_replicated = |f: &crate::stats::FlowSnapshot| {
                    f.source_rejected + f.malformed + f.ttl_expired + f.rate_limited
                };
                FlowRates {
                    name: f.name.clone(),
                    received_pps: per(f.received, was(|f| f.received)),
                    received_bps: 8.0 * per(f.received_bytes, was(|f| f.received_bytes)),
                    not_replicated_pps: per(not_replicated(f), was(not_replicated)),
                    health_errors_ps: per(
                        f.health.counters.errors(),
                        was(|f| f.health.counters.errors()),
                    ),
                    outputs: f
                        .outputs
                        .iter()
                        .map(|o| {
                            let bo = b.and_then(|b| b.output(&o.name));
                            let dropped_by_reason = o
                                .dropped
                                .iter()
                                .map(|(&r, &n)| (r, per(n, bo.map_or(0, |bo| bo.dropped(r)))))
                                .filter(|(_, v)| *v > 0.0)
                                .collect();
                            OutputRates {
                                name: o.name.clone(),
                                sent_pps: per(o.sent, bo.map_or(0, |bo| bo.sent)),
                                sent_bps: 8.0 * per(o.sent_bytes, bo.map_or(0, |bo| bo.sent_bytes)),
                                dropped_pps: per(
                                    o.dropped_total(),
                                    bo.map_or(0, |bo| bo.dropped_total()),
                                ),
                                dropped_by_reason,
                            }
                        })
                        .collect(),
                }
            })
            .collect();
        Rates { secs, flows }
    }

    /// The flow named `name`.
    pub fn flow(&self, name: &str) -> Option<&FlowRates> {
        self.flows.iter().find(|f| f.name == name)
    }
}

/// Why [`query`] got no answer.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error(
        "cannot reach fanout run at {path}: {source} (is it running? its socket is [engine] \
         control, default {DEFAULT_SOCKET}; --control PATH chooses another)"
    )]
    Connect {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: not an answer of fanout run: {why}")]
    Garbled { path: String, why: String },
}

/// Sends `request` to the control socket at `path` and returns the answer.
pub fn query(path: &Path, request: &Request) -> Result<Response, QueryError> {
    let shown = path.display().to_string();
    let io = |source| QueryError::Io {
        path: shown.clone(),
        source,
    };
    let mut stream = UnixStream::connect(path).map_err(|source| QueryError::Connect {
        path: shown.clone(),
        source,
    })?;
    stream.set_read_timeout(Some(TIMEOUT)).map_err(io)?;
    stream.set_write_timeout(Some(TIMEOUT)).map_err(io)?;
    let mut line = serde_json::to_string(request).map_err(|e| QueryError::Garbled {
        path: shown.clone(),
        why: e.to_string(),
    })?;
    line.push('\n');
    stream.write_all(line.as_bytes()).map_err(io)?;
    let mut answer = String::new();
    let mut reader = BufReader::new(std::io::Read::take(&stream, MAX_LINE as u64));
    reader.read_line(&mut answer).map_err(io)?;
    serde_json::from_str(&answer).map_err(|e| QueryError::Garbled {
        path: shown,
        why: if answer.is_empty() {
            "the connection closed without an answer".to_owned()
        } else {
            e.to_string()
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::{FlowSnapshot, OutputSnapshot};

    fn snap(received: u64, sent: u64, full: u64) -> Snapshot {
        Snapshot {
            engine: "socket".into(),
            flows: vec![FlowSnapshot {
                name: "tv".into(),
                removed: false,
                engine: "socket".into(),
                engine_reason: None,
                received,
                received_bytes: received * 1000,
                source_rejected: 0,
                malformed: 0,
                checksum_completed: 0,
                ttl_expired: 0,
                rate_limited: received / 10,
                health: Default::default(),
                xdp: None,
                outputs: vec![OutputSnapshot {
                    name: "a".into(),
                    dest: "10.0.0.2:6000".into(),
                    removed: false,
                    offered: received,
                    sent,
                    sent_bytes: sent * 1000,
                    dropped: DropReason::ALL
                        .iter()
                        .map(|&r| (r, if r == DropReason::RingFull { full } else { 0 }))
                        .collect(),
                }],
            }],
            xdp: None,
        }
    }

    #[test]
    fn rates_are_the_differences_over_the_interval() {
        let r = Rates::between(&snap(100, 90, 10), &snap(300, 250, 50), 2.0);
        let f = r.flow("tv").unwrap();
        assert_eq!(
            (f.received_pps, f.received_bps, f.not_replicated_pps),
            (100.0, 800_000.0, 10.0)
        );
        let o = &f.outputs[0];
        assert_eq!(
            (o.sent_pps, o.sent_bps, o.dropped_pps),
            (80.0, 640_000.0, 20.0)
        );
        assert_eq!(
            o.dropped_by_reason,
            BTreeMap::from([(DropReason::RingFull, 20.0)])
        );
        // Nothing before, or backwards: from zero, never negative.
        let r = Rates::between(&snap(500, 500, 0), &snap(300, 250, 50), 1.0);
        assert_eq!(r.flow("tv").unwrap().received_pps, 0.0);
        let empty = Snapshot {
            flows: vec![],
            ..snap(0, 0, 0)
        };
        assert_eq!(
            Rates::between(&empty, &snap(10, 10, 0), 1.0)
                .flow("tv")
                .unwrap()
                .received_pps,
            10.0
        );
        assert_eq!(
            Rates::between(&empty, &snap(10, 10, 0), 0.0)
                .flow("tv")
                .unwrap()
                .received_pps,
            0.0
        );
    }

    #[test]
    fn requests_and_answers_are_one_json_line_each() {
        assert_eq!(
            serde_json::to_string(&Request::Show).unwrap(),
            r#"{"request":"show"}"#
        );
        assert_eq!(
            serde_json::from_str::<Request>(r#"{"request":"reload"}"#).unwrap(),
            Request::Reload
        );
        let r = Response::error(2, "error: x");
        let line = serde_json::to_string(&r).unwrap();
        assert!(!line.contains('\n'));
        assert_eq!(serde_json::from_str::<Response>(&line).unwrap(), r);
    }

    #[test]
    fn a_socket_nobody_serves_names_the_fix() {
        let e = query(Path::new("/nonexistent/fanout.sock"), &Request::Show).unwrap_err();
        let text = e.to_string();
        assert!(
            text.starts_with("cannot reach fanout run at /nonexistent/fanout.sock: "),
            "{text}"
        );
        assert!(text.contains("[engine] control"), "{text}");
    }
}
