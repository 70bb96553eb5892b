//! What `fanout run` drives: the choice of the engine for each flow.
//!
//! Contract: [`start`] takes a resolved [`Plan`] and returns a running
//! [`Engine`] together with the line that says which engine runs and why
//! (architecture.md decision 6: a silent fallback is a bug): `mode =
//! "socket"` runs the socket engine; `"xdp"` climbs the XDP ladder for
//! every flow and refuses to start when one flow cannot be served or a
//! rung cannot be climbed; `"auto"` judges the flows one by one
//! ([`xdp::judge`]) and runs the XDP datapath on those it can serve, the
//! socket engine on the rest (issue 10 item 9: per flow, not all or
//! nothing). A refusal met while XDP starts that names an interface
//! ([`xdp::touched_by`]) moves only the flows that use that interface;
//! any other moves every flow. Flows split between the engines run as one
//! [`Engine`] whose snapshot lists them in plan order, each with its
//! engine and, on sockets, why ([`FlowSnapshot::engine_reason`]).
//! [`preview`] says the same per flow for `fanout check`, without loading
//! anything. The one place that knows both engines.

use std::fmt;

use log::{info, warn};

use crate::config::Mode;
use crate::engine::{ApplyError, Engine};
use crate::plan::{FlowPlan, Plan};
use crate::socket::{self, SocketEngine};
use crate::stats::{FlowSnapshot, Heartbeat, Snapshot};
use crate::xdp::{self, XdpEngine};

/// What [`start`] started.
#[derive(Debug)]
pub struct Started {
    pub engine: Box<dyn Engine>,
    /// The line that says which engine runs and which rungs were skipped,
    /// e.g. `engine xdp native copy (skipped: in0 queue 0: ...)`,
    /// `engine socket (mode = "auto"; XDP refused: ...)` or
    /// `engine xdp native copy + socket (mode = "auto"; socket for flow
    /// "rec": ...)`.
    pub announce: String,
}

/// Why no engine started.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// `mode = "xdp"`, and a flow cannot be served or a rung of the XDP
    /// ladder could not be climbed.
    #[error("the XDP datapath cannot start: {0}")]
    XdpRequired(#[source] Box<xdp::Refused>),
    /// The socket engine could not open, bind or join a socket.
    #[error(transparent)]
    Socket(#[from] socket::Error),
}

/// Starts the engines `plan.engine.mode` asks for; see the module
/// documentation. `plan.flows` must not be empty.
pub fn start(plan: &Plan) -> Result<Started, StartError> {
    match plan.engine.mode {
        Mode::Socket => {
            let engine = SocketEngine::start(plan)?;
            Ok(Started {
                announce: format!("engine {} (mode = \"socket\")", engine.name()),
                engine: Box::new(engine),
            })
        }
        Mode::Xdp => {
            warn_vlan(plan);
            let flows = xdp::judge(plan)
                .into_iter()
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| StartError::XdpRequired(Box::new(e)))?;
            let routed = Plan {
                engine: plan.engine.clone(),
                flows,
            };
            let engine =
                XdpEngine::start(&routed).map_err(|e| StartError::XdpRequired(Box::new(e)))?;
            Ok(xdp_started(engine))
        }
        Mode::Auto => {
            warn_vlan(plan);
            start_auto(plan)
        }
    }
}

/// Logs [`xdp::vlan_warnings`] for the host's interfaces.
fn warn_vlan(plan: &Plan) {
    for w in xdp::vlan_warnings(plan, xdp::vlan_view) {
        warn!("{w}");
    }
}

/// The announcement of an XDP engine that serves every flow.
fn xdp_started(engine: XdpEngine) -> Started {
    Started {
        announce: format!("engine {}{}", engine.name(), skipped(&engine, " (", ")")),
        engine: Box::new(engine),
    }
}

/// The rungs `engine` skipped, between `open` and `close`; empty if none.
fn skipped(engine: &XdpEngine, open: &str, close: &str) -> String {
    if engine.notes().is_empty() {
        String::new()
    } else {
        format!("{open}skipped: {}{close}", engine.notes().join("; "))
    }
}

/// `mode = "auto"`: XDP for the flows it serves, sockets for the rest.
fn start_auto(plan: &Plan) -> Result<Started, StartError> {
    // Per flow: the flow as XDP would run it, or why it runs on sockets.
    let mut place: Vec<Result<FlowPlan, String>> = xdp::judge(plan)
        .into_iter()
        .map(|r| r.map_err(|e| e.to_string()))
        .collect();
    let mut on_xdp = None;
    // Each refusal moves at least one flow: at most one try per flow.
    loop {
        let (index, flows): (Vec<usize>, Vec<FlowPlan>) = place
            .iter()
            .enumerate()
            .filter_map(|(i, p)| p.as_ref().ok().map(|f| (i, f.clone())))
            .unzip();
        if index.is_empty() {
            break;
        }
        let sub = Plan {
            engine: plan.engine.clone(),
            flows,
        };
        match XdpEngine::start(&sub) {
            Ok(engine) => {
                on_xdp = Some((engine, index));
                break;
            }
            Err(e) => {
                let why = e.to_string();
                let moved = xdp::touched_by(&sub, &e).unwrap_or_else(|| (0..index.len()).collect());
                for k in moved {
                    place[index[k]] = Err(why.clone());
                }
            }
        }
    }
    let reasons: Vec<Option<String>> = place
        .iter()
        .map(|p| p.as_ref().err().map(|why| format!("XDP refused: {why}")))
        .collect();
    let on_socket: Vec<usize> = (0..place.len()).filter(|&i| place[i].is_err()).collect();
    // The flows on sockets, grouped by their reason, in plan order.
    let mut grouped: Vec<(Vec<String>, &str)> = Vec::new();
    for &i in &on_socket {
        let why = place[i].as_ref().err().map_or("", String::as_str);
        let flow = format!("flow {:?}", plan.flows[i].name);
        match grouped.iter_mut().find(|(_, w)| *w == why) {
            Some((flows, _)) => flows.push(flow),
            None => grouped.push((vec![flow], why)),
        }
    }
    let Some((xdp_engine, xdp_flows)) = on_xdp else {
        // Every flow on sockets: each distinct reason once.
        let engine = SocketEngine::start(plan)?;
        let reasons_said: Vec<&str> = grouped.iter().map(|(_, why)| *why).collect();
        let announce = format!(
            "engine {} (mode = \"auto\"; XDP refused: {})",
            engine.name(),
            reasons_said.join("; ")
        );
        let split = Split::new(
            engine.name().to_owned(),
            plan,
            vec![(Box::new(engine), on_socket)],
            &reasons,
            Some(0),
        );
        return Ok(Started {
            engine: Box::new(split),
            announce,
        });
    };
    if on_socket.is_empty() {
        // Driven as a split of one part, so that a flow added while
        // running can start the socket engine beside it.
        let Started { engine, announce } = xdp_started(xdp_engine);
        let name = engine.name().to_owned();
        let split = Split::new(name, plan, vec![(engine, xdp_flows)], &reasons, None);
        return Ok(Started {
            engine: Box::new(split),
            announce,
        });
    }
    let sockets = SocketEngine::start(&Plan {
        engine: plan.engine.clone(),
        flows: on_socket.iter().map(|&i| plan.flows[i].clone()).collect(),
    })?;
    let name = format!("{} + {}", xdp_engine.name(), sockets.name());
    let socket_for: Vec<String> = grouped
        .iter()
        .map(|(flows, why)| format!("socket for {}: XDP refused: {why}", flows.join(", ")))
        .collect();
    let announce = format!(
        "engine {name} (mode = \"auto\"; {}{})",
        socket_for.join("; "),
        skipped(&xdp_engine, "; ", "")
    );
    for (i, flow) in plan.flows.iter().enumerate() {
        match &reasons[i] {
            None => info!("flow {:?}: engine {}", flow.name, xdp_engine.name()),
            Some(why) => info!("flow {:?}: engine {} ({why})", flow.name, sockets.name()),
        }
    }
    let split = Split::new(
        name,
        plan,
        vec![
            (Box::new(xdp_engine), xdp_flows),
            (Box::new(sockets), on_socket),
        ],
        &reasons,
        Some(1),
    );
    Ok(Started {
        engine: Box::new(split),
        announce,
    })
}

/// The flows of one plan served by several engines, driven as one: each
/// part runs a plan of its own flows; the snapshot lists every flow in the
/// order of the whole plan, then those removed while running.
#[derive(Debug)]
struct Split {
    name: String,
    plan: Plan,
    /// Each engine and the plan it runs (its flows, in the whole plan's
    /// order).
    parts: Vec<(Box<dyn Engine>, Plan)>,
    /// The part that takes flows added while running (the socket engine).
    takes_new: Option<usize>,
    /// Per flow name: why it runs on sockets, if it does.
    reasons: Vec<(String, String)>,
}

impl Split {
    /// `parts`: each engine and the plan index of each of its flows;
    /// `reasons`: per flow of `plan`, why it runs on sockets, if it does.
    fn new(
        name: String,
        plan: &Plan,
        parts: Vec<(Box<dyn Engine>, Vec<usize>)>,
        reasons: &[Option<String>],
        takes_new: Option<usize>,
    ) -> Split {
        let parts = parts
            .into_iter()
            .map(|(engine, index)| {
                let sub = Plan {
                    engine: plan.engine.clone(),
                    flows: index.iter().map(|&i| plan.flows[i].clone()).collect(),
                };
                (engine, sub)
            })
            .collect();
        let reasons = plan
            .flows
            .iter()
            .zip(reasons)
            .filter_map(|(f, why)| why.clone().map(|why| (f.name.clone(), why)))
            .collect();
        Split {
            name,
            plan: plan.clone(),
            parts,
            takes_new,
            reasons,
        }
    }

    fn unsupported(&self, what: String) -> ApplyError {
        ApplyError::Unsupported {
            engine: self.name.clone(),
            what,
        }
    }
}

impl Engine for Split {
    fn name(&self) -> &str {
        &self.name
    }

    fn snapshot(&self) -> Snapshot {
        let mut live: Vec<FlowSnapshot> = Vec::new();
        let mut removed: Vec<FlowSnapshot> = Vec::new();
        let mut xdp = None;
        for (engine, _) in &self.parts {
            let snap = engine.snapshot();
            xdp = xdp.or(snap.xdp);
            for f in snap.flows {
                if f.removed {
                    removed.push(f);
                } else {
                    live.push(f);
                }
            }
        }
        let order = |f: &FlowSnapshot| self.plan.flows.iter().position(|p| p.name == f.name);
        live.sort_by_key(|f| order(f));
        live.extend(removed);
        for f in &mut live {
            f.engine_reason = self
                .reasons
                .iter()
                .find(|(name, _)| *name == f.name)
                .map(|(_, why)| why.clone())
                .filter(|_| !f.engine.starts_with("xdp"));
        }
        Snapshot {
            engine: self.name.clone(),
            flows: live,
            xdp,
        }
    }

    /// Each flow's change goes to the part that serves it; flows added go
    /// to the socket part. A part that refuses its share leaves the parts
    /// applied before it changed (said in the log).
    fn apply(&mut self, plan: &Plan) -> Result<(), ApplyError> {
        let change = self.plan.change_to(plan).map_err(|w| self.unsupported(w))?;
        if change.is_empty() {
            self.plan = plan.clone();
            return Ok(());
        }
        let serving = |parts: &[(Box<dyn Engine>, Plan)], name: &str| {
            parts
                .iter()
                .position(|(_, p)| p.flows.iter().any(|f| f.name == name))
        };
        // Which part each flow of the next plan runs on: its own, or the
        // one that takes new flows; under mode = "auto" without one, a
        // socket engine started for them (before anything else changes:
        // if it cannot start, nothing did).
        let mut place = Vec::with_capacity(plan.flows.len());
        let mut new_flows = Vec::new();
        for f in &plan.flows {
            match serving(&self.parts, &f.name).or(self.takes_new) {
                Some(part) => place.push(part),
                None if plan.engine.mode == Mode::Auto => {
                    place.push(self.parts.len());
                    new_flows.push(f.clone());
                }
                None => {
                    return Err(self.unsupported(format!(
                        "flow {:?} added: flows are added only to the socket engine while \
                         running, and none runs",
                        f.name
                    )));
                }
            }
        }
        let started = if new_flows.is_empty() {
            None
        } else {
            let sub = Plan {
                engine: plan.engine.clone(),
                flows: new_flows,
            };
            let engine =
                SocketEngine::start(&sub).map_err(|e| ApplyError::Failed(e.to_string()))?;
            Some((engine, sub))
        };
        let mut applied = 0;
        for k in 0..self.parts.len() {
            let sub = Plan {
                engine: plan.engine.clone(),
                flows: plan
                    .flows
                    .iter()
                    .zip(&place)
                    .filter(|(_, p)| **p == k)
                    .map(|(f, _)| f.clone())
                    .collect(),
            };
            if sub == self.parts[k].1 {
                continue;
            }
            if let Err(e) = self.parts[k].0.apply(&sub) {
                if let Some((mut engine, _)) = started {
                    let _ = engine.stop();
                }
                if applied > 0 {
                    log::warn!(
                        "{}: {e}: the other engines' part of the change stands",
                        self.name
                    );
                }
                self.rebuild(plan);
                return Err(e);
            }
            self.parts[k].1 = sub;
            applied += 1;
        }
        if let Some((engine, sub)) = started {
            self.name = format!("{} + {}", self.name, engine.name());
            log::info!(
                "engine {} (mode = \"auto\"; socket for the flows added while running)",
                self.name
            );
            self.takes_new = Some(self.parts.len());
            self.parts.push((Box::new(engine), sub));
        }
        for f in &change.added_flows {
            if !self.reasons.iter().any(|(n, _)| *n == f.name) {
                self.reasons
                    .push((f.name.clone(), "added while running".to_owned()));
            }
        }
        self.rebuild(plan);
        Ok(())
    }

    fn failed(&self) -> Option<String> {
        self.parts.iter().find_map(|(e, _)| e.failed())
    }

    fn heartbeats(&self) -> Vec<Heartbeat> {
        self.parts
            .iter()
            .flat_map(|(e, _)| e.heartbeats())
            .collect()
    }

    fn fail_open(&mut self, worker: &str) -> Option<String> {
        self.parts.iter_mut().find_map(|(e, _)| e.fail_open(worker))
    }

    /// What the XDP part keeps (the socket engine keeps nothing).
    fn kept(&self) -> &'static [crate::privileges::Capability] {
        self.parts
            .iter()
            .map(|(e, _)| e.kept())
            .find(|k| !k.is_empty())
            .unwrap_or(&[])
    }

    fn stop(&mut self) -> Result<(), String> {
        let errors: Vec<String> = self
            .parts
            .iter_mut()
            .filter_map(|(e, _)| e.stop().err())
            .collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors.join("; "))
        }
    }
}

impl Split {
    /// The whole running plan from its parts', in `next`'s order where it
    /// has the flow.
    fn rebuild(&mut self, next: &Plan) {
        let mut flows: Vec<FlowPlan> = self
            .parts
            .iter()
            .flat_map(|(_, p)| p.flows.iter().cloned())
            .collect();
        flows.sort_by_key(|f| next.flows.iter().position(|n| n.name == f.name));
        self.plan = Plan {
            engine: next.engine.clone(),
            flows,
        };
    }
}

/// Which engine each flow would run on, as `fanout check` says it; see
/// [`preview`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Preview {
    mode: Mode,
    /// What XDP would get wrong on this host's interfaces (VLAN offload).
    vlan: Vec<String>,
    /// Per flow: its name, and why XDP cannot serve it (`None`: it can).
    flows: Vec<(String, Option<String>)>,
}

/// Judges every flow as [`start`] would (routes looked up, nothing
/// loaded or attached): whether the XDP datapath can serve it, and why
/// not. Whether the program attaches is known only when `fanout run` tries.
pub fn preview(plan: &Plan) -> Preview {
    let judged: Vec<Option<String>> = match plan.engine.mode {
        Mode::Socket => vec![None; plan.flows.len()],
        Mode::Xdp | Mode::Auto => xdp::judge(plan)
            .into_iter()
            .map(|j| j.err().map(|e| e.to_string()))
            .collect(),
    };
    let flows = plan
        .flows
        .iter()
        .map(|f| f.name.clone())
        .zip(judged)
        .collect();
    let vlan = match plan.engine.mode {
        Mode::Socket => Vec::new(),
        Mode::Xdp | Mode::Auto => xdp::vlan_warnings(plan, xdp::vlan_view),
    };
    Preview {
        mode: plan.engine.mode,
        vlan,
        flows,
    }
}

impl Preview {
    /// What `fanout run` would refuse: under `mode = "xdp"`, each flow
    /// XDP cannot serve.
    pub fn warnings(&self) -> Vec<String> {
        if self.mode != Mode::Xdp {
            return self.vlan.clone();
        }
        let refused = self.flows.iter().filter_map(|(name, why)| {
            why.as_ref().map(|why| {
                format!(
                    "flow {name:?}: mode = \"xdp\" but the XDP datapath cannot serve it \
                     ({why}): fanout run will refuse to start; set mode = \"auto\" to run \
                     it on the socket engine and the other flows on XDP"
                )
            })
        });
        refused.chain(self.vlan.iter().cloned()).collect()
    }
}

/// `engines (mode = ...):` and one line per flow.
impl fmt::Display for Preview {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let head = match self.mode {
            Mode::Socket => "mode = \"socket\"",
            Mode::Xdp => "mode = \"xdp\": every flow on XDP, or fanout run refuses to start",
            Mode::Auto => {
                "mode = \"auto\": XDP for each flow it can serve (if the program attaches), \
                 sockets for the rest"
            }
        };
        writeln!(f, "engines ({head}):")?;
        for (name, why) in &self.flows {
            match (self.mode, why) {
                (Mode::Socket, _) => writeln!(f, "  flow {name:?}: socket")?,
                (_, None) => writeln!(f, "  flow {name:?}: xdp")?,
                (Mode::Xdp, Some(why)) => {
                    writeln!(f, "  flow {name:?}: none (XDP refused: {why})")?;
                }
                (Mode::Auto, Some(why)) => {
                    writeln!(f, "  flow {name:?}: socket (XDP refused: {why})")?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::EngineConfig;
    use crate::plan::fixtures::{flow, iface};
    use crate::stats::Stats;

    /// Flows `names`, each with one output; those named in `no_mac` leave
    /// by an interface without a MAC.
    fn plan(mode: Mode, names: &[&str], no_mac: &[&str]) -> Plan {
        let flows = names
            .iter()
            .zip(1u8..)
            .map(|(&name, i)| {
                let egress = if no_mac.contains(&name) {
                    iface("lo", 9, None)
                } else {
                    iface("out0", 2, Some([2, 0, 0, 0, 0, 2]))
                };
                flow(name, [239, 1, 1, i], None, egress)
            })
            .collect();
        Plan {
            engine: EngineConfig {
                mode,
                ..EngineConfig::default()
            },
            flows,
        }
    }

    /// An engine that only counts: its flows received `received` each.
    #[derive(Debug)]
    struct Fake {
        stats: Stats,
        received: u64,
        xdp: bool,
        stop: Result<(), String>,
    }

    impl Fake {
        fn new(plan: &Plan, name: &str, received: u64, xdp: bool) -> Fake {
            let stats = Stats::for_plan(plan, name);
            let flows: Vec<usize> = (0..plan.flows.len()).collect();
            let publisher = stats.publisher(name, &flows);
            let mut counters = publisher.counters();
            for c in &mut counters {
                c.received = received;
            }
            publisher.publish(&counters);
            Fake {
                stats,
                received,
                xdp,
                stop: Ok(()),
            }
        }
    }

    impl Engine for Fake {
        fn name(&self) -> &str {
            self.stats.engine()
        }
        fn snapshot(&self) -> Snapshot {
            let mut snap = self.stats.snapshot();
            snap.xdp = self.xdp.then(crate::stats::XdpSnapshot::default);
            snap
        }
        fn failed(&self) -> Option<String> {
            (self.received == 0).then(|| format!("{} failed", self.name()))
        }
        fn heartbeats(&self) -> Vec<Heartbeat> {
            self.stats.heartbeats()
        }
        fn apply(&mut self, _: &Plan) -> Result<(), ApplyError> {
            Ok(())
        }
        fn stop(&mut self) -> Result<(), String> {
            self.stop.clone()
        }
    }

    fn subplan(plan: &Plan, index: &[usize]) -> Plan {
        Plan {
            engine: plan.engine.clone(),
            flows: index.iter().map(|&i| plan.flows[i].clone()).collect(),
        }
    }

    #[test]
    fn a_split_lists_every_flow_in_plan_order_with_its_engine() {
        let whole = plan(Mode::Auto, &["a", "b", "c"], &["b"]);
        let xdp = Fake::new(&subplan(&whole, &[0, 2]), "xdp native copy", 7, true);
        let mut sockets = Fake::new(&subplan(&whole, &[1]), "socket", 5, false);
        sockets.stop = Err("thread x panicked".into());
        let mut split = Split::new(
            "xdp native copy + socket".into(),
            &whole,
            vec![(Box::new(xdp), vec![0, 2]), (Box::new(sockets), vec![1])],
            &[None, Some("XDP refused: no MAC".into()), None],
            Some(1),
        );
        let snap = split.snapshot();
        assert_eq!(snap.engine, "xdp native copy + socket");
        assert!(snap.xdp.is_some(), "the XDP part's section is kept");
        let each: Vec<(&str, &str, u64, Option<&str>)> = snap
            .flows
            .iter()
            .map(|f| {
                let why = f.engine_reason.as_deref();
                (f.name.as_str(), f.engine.as_str(), f.received, why)
            })
            .collect();
        assert_eq!(
            each,
            [
                ("a", "xdp native copy", 7, None),
                ("b", "socket", 5, Some("XDP refused: no MAC")),
                ("c", "xdp native copy", 7, None),
            ]
        );
        // The table names each flow's engine.
        let table = snap.to_string();
        assert!(
            table.contains("  engine: socket (XDP refused: no MAC)\n"),
            "{table}"
        );
        assert!(table.contains("  engine: xdp native copy\n"), "{table}");
        assert_eq!(split.failed(), None);
        assert_eq!(split.apply(&whole), Ok(()));
        let mut engine = whole.clone();
        engine.engine.batch_size += 1;
        assert_eq!(
            split.apply(&engine).unwrap_err().to_string(),
            "the xdp native copy + socket engine cannot apply this change while running \
             ([engine] changed); restart fanout"
        );
        // A flow added goes to the socket part; one removed leaves its part.
        let mut changed = whole.clone();
        changed.flows.remove(2);
        let mut d = whole.flows[0].clone();
        d.name = "d".into();
        changed.flows.push(d);
        assert_eq!(split.apply(&changed), Ok(()));
        let names = |p: &Plan| p.flows.iter().map(|f| f.name.clone()).collect::<Vec<_>>();
        assert_eq!(names(&split.parts[0].1), ["a"]);
        assert_eq!(names(&split.parts[1].1), ["b", "d"]);
        assert_eq!(names(&split.plan), ["a", "b", "d"]);
        assert!(
            split
                .reasons
                .contains(&("d".to_owned(), "added while running".to_owned()))
        );
        assert_eq!(split.stop(), Err("thread x panicked".into()));
    }

    #[test]
    fn a_failed_part_fails_the_split() {
        let whole = plan(Mode::Auto, &["a", "b"], &["b"]);
        let split = Split::new(
            "n".into(),
            &whole,
            vec![
                (
                    Box::new(Fake::new(&subplan(&whole, &[0]), "x", 1, true)),
                    vec![0],
                ),
                (
                    Box::new(Fake::new(&subplan(&whole, &[1]), "s", 0, false)),
                    vec![1],
                ),
            ],
            &[None, None],
            Some(1),
        );
        assert_eq!(split.failed(), Some("s failed".into()));
    }

    #[test]
    fn the_preview_names_each_flows_engine_per_mode() {
        let why = "flow \"b\" output \"o\": egress interface lo has no MAC address";
        let auto = preview(&plan(Mode::Auto, &["a", "b"], &["b"]));
        assert_eq!(
            auto.to_string(),
            format!(
                "engines (mode = \"auto\": XDP for each flow it can serve (if the program \
                 attaches), sockets for the rest):\n  flow \"a\": xdp\n  flow \"b\": socket \
                 (XDP refused: {why})\n"
            )
        );
        assert!(auto.warnings().is_empty());

        let xdp = preview(&plan(Mode::Xdp, &["a", "b"], &["b"]));
        assert!(
            xdp.to_string()
                .ends_with(&format!("  flow \"b\": none (XDP refused: {why})\n")),
            "{xdp}"
        );
        assert_eq!(
            xdp.warnings(),
            [format!(
                "flow \"b\": mode = \"xdp\" but the XDP datapath cannot serve it ({why}): \
                 fanout run will refuse to start; set mode = \"auto\" to run it on the socket \
                 engine and the other flows on XDP"
            )]
        );

        let socket = preview(&plan(Mode::Socket, &["a", "b"], &["b"]));
        assert_eq!(
            socket.to_string(),
            "engines (mode = \"socket\"):\n  flow \"a\": socket\n  flow \"b\": socket\n"
        );
        assert!(socket.warnings().is_empty());
    }
}
