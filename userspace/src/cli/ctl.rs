//! `fanout ctl show [--json]` and `fanout ctl reload`: a running `fanout
//! run`, through its control socket ([`fanout::control`]).
//!
//! - `show`: the running plan (flows, interfaces, outputs, the engine of
//!   each flow) with every counter and the rates of the last second;
//!   `--json` prints the answer as it came ([`fanout::control::Show`]).
//! - `reload`: `fanout run` reads its configuration again, as on SIGHUP: a
//!   bad file is refused with the file's own message (exit 2) and the
//!   running plan stays; an unchanged one changes nothing; a change it
//!   cannot apply while running makes it stop to be restarted.
//!
//! The socket: `--control PATH`, else `FANOUT_CONTROL`, else
//! `/run/fanout/fanout.sock`. Exit codes: 0 done, 1 no answer (the message
//! says why, and what to check), 2 a refused configuration.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use fanout::config::edit::{Edit, Field, Fields};
use fanout::control::{self, Request, Response, Show};

use super::journal;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The control socket of the fanout run to talk to (default: the
    /// environment's FANOUT_CONTROL, else /run/fanout/fanout.sock).
    #[arg(long, global = true, value_name = "PATH")]
    pub control: Option<PathBuf>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, clap::Subcommand)]
enum Cmd {
    /// The running plan with its counters and rates.
    Show {
        /// Print the answer as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Read the configuration file again and apply it (as SIGHUP does);
    /// it replaces every change made with fanout ctl.
    Reload,
    /// Add an output to a running flow (runtime-only: the file is not
    /// changed, and a reload returns to it).
    AddOutput {
        /// The flow, by name.
        #[arg(long)]
        flow: String,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Remove an output from a running flow (runtime-only).
    RemoveOutput {
        /// The flow, by name.
        #[arg(long)]
        flow: String,
        /// The output, as fanout ctl show names it (`unicast 10.0.0.2:6000`
        /// when the configuration gives it no name).
        #[arg(long)]
        output: String,
    },
    /// Add a flow, with the fields of a [[flow]] table (runtime-only).
    AddFlow(FlowArgs),
    /// Remove a flow (runtime-only).
    RemoveFlow {
        /// The flow, by name.
        #[arg(long)]
        flow: String,
    },
}

/// The fields of a [[flow.output]] table.
#[derive(Debug, clap::Args)]
struct OutputArgs {
    /// A unicast receiver, IP:PORT.
    #[arg(
        long,
        value_name = "IP:PORT",
        required_unless_present = "multicast",
        conflicts_with = "multicast"
    )]
    unicast: Option<String>,
    /// A multicast group to send to, GROUP:PORT (needs --interface).
    #[arg(long, value_name = "GROUP:PORT")]
    multicast: Option<String>,
    /// The egress interface.
    #[arg(long, value_name = "IF")]
    interface: Option<String>,
    /// The output's name (default: `unicast IP:PORT` / `multicast GROUP:PORT`).
    #[arg(long)]
    name: Option<String>,
    /// TTL (hop limit) of the replicas.
    #[arg(long)]
    ttl: Option<i64>,
    /// 802.1Q VLAN id the replicas leave tagged with.
    #[arg(long)]
    vlan: Option<i64>,
    /// UDP source port of the replicas.
    #[arg(long)]
    source_port: Option<i64>,
}

/// The fields of a [[flow]] table, and its outputs.
#[derive(Debug, clap::Args)]
struct FlowArgs {
    #[arg(long)]
    name: String,
    /// The ingress interface.
    #[arg(long, value_name = "IF")]
    interface: String,
    /// The multicast group.
    #[arg(long)]
    group: String,
    #[arg(long)]
    port: i64,
    #[arg(long)]
    vlan: Option<i64>,
    #[arg(long)]
    outer_vlan: Option<i64>,
    /// Source-specific: the one sender.
    #[arg(long)]
    source: Option<String>,
    #[arg(long)]
    max_pps: Option<i64>,
    #[arg(long)]
    max_mbps: Option<f64>,
    /// auto, rtp, ts or off.
    #[arg(long)]
    health: Option<String>,
    /// An output, as the fields of a [[flow.output]] table:
    /// `unicast=10.0.0.2:6000,ttl=8` (repeat for more).
    #[arg(long = "output", value_name = "KEY=VALUE,...", required = true)]
    outputs: Vec<String>,
}

impl OutputArgs {
    fn fields(self) -> Fields {
        let mut f = Fields::new();
        let mut put = |k: &str, v: Option<Field>| {
            if let Some(v) = v {
                f.insert(k.to_owned(), v);
            }
        };
        put("unicast", self.unicast.map(Field::Str));
        put("multicast", self.multicast.map(Field::Str));
        put("interface", self.interface.map(Field::Str));
        put("name", self.name.map(Field::Str));
        put("ttl", self.ttl.map(Field::Int));
        put("vlan", self.vlan.map(Field::Int));
        put("source_port", self.source_port.map(Field::Int));
        f
    }
}

impl FlowArgs {
    fn edit(self) -> Result<Edit, String> {
        let mut f = Fields::new();
        let mut put = |k: &str, v: Option<Field>| {
            if let Some(v) = v {
                f.insert(k.to_owned(), v);
            }
        };
        put("name", Some(Field::Str(self.name)));
        put("interface", Some(Field::Str(self.interface)));
        put("group", Some(Field::Str(self.group)));
        put("port", Some(Field::Int(self.port)));
        put("vlan", self.vlan.map(Field::Int));
        put("outer_vlan", self.outer_vlan.map(Field::Int));
        put("source", self.source.map(Field::Str));
        put("max_pps", self.max_pps.map(Field::Int));
        put("max_mbps", self.max_mbps.map(Field::Float));
        put("health", self.health.map(Field::Str));
        let outputs = self
            .outputs
            .iter()
            .map(|o| output_fields(o))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Edit::AddFlow { flow: f, outputs })
    }
}

/// `unicast=10.0.0.2:6000,ttl=8`: integers as integers, the rest as
/// strings (the configuration's rules judge them).
fn output_fields(spec: &str) -> Result<Fields, String> {
    let mut f = Fields::new();
    for part in spec.split(',').filter(|p| !p.is_empty()) {
        let Some((k, v)) = part.split_once('=') else {
            return Err(format!(
                "error: --output {spec:?}: {part:?} is not KEY=VALUE (e.g. \
                 unicast=10.0.0.2:6000,ttl=8)"
            ));
        };
        let value = v
            .parse::<i64>()
            .map_or_else(|_| Field::Str(v.to_owned()), Field::Int);
        f.insert(k.trim().to_owned(), value);
    }
    Ok(f)
}

/// The socket the client talks to.
pub fn socket(given: Option<PathBuf>) -> PathBuf {
    given
        .or_else(|| {
            std::env::var_os("FANOUT_CONTROL")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        })
        .unwrap_or_else(|| PathBuf::from(control::DEFAULT_SOCKET))
}

pub fn main(args: Args) -> ExitCode {
    let path = socket(args.control);
    let (request, cmd) = match args.cmd {
        Cmd::Show { json } => (Request::Show, Cmd::Show { json }),
        Cmd::Reload => (Request::Reload, Cmd::Reload),
        Cmd::AddOutput { flow, output } => (
            Request::Change(Edit::AddOutput {
                flow,
                output: output.fields(),
            }),
            Cmd::Reload,
        ),
        Cmd::RemoveOutput { flow, output } => (
            Request::Change(Edit::RemoveOutput { flow, output }),
            Cmd::Reload,
        ),
        Cmd::AddFlow(flow) => match flow.edit() {
            Ok(edit) => (Request::Change(edit), Cmd::Reload),
            Err(why) => {
                eprintln!("{}", journal::line(journal::ERR, &why));
                return ExitCode::from(2);
            }
        },
        Cmd::RemoveFlow { flow } => (Request::Change(Edit::RemoveFlow { flow }), Cmd::Reload),
    };
    let answer = match control::query(&path, &request) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{}", journal::line(journal::ERR, &format!("error: {e}")));
            return ExitCode::from(1);
        }
    };
    if let Some(why) = &answer.error {
        eprintln!("{}", journal::line(journal::ERR, why));
        return ExitCode::from(answer.status.max(1));
    }
    match (cmd, answer) {
        (
            Cmd::Show { json },
            Response {
                show: Some(show), ..
            },
        ) => {
            if json {
                match serde_json::to_string_pretty(&show) {
                    Ok(text) => println!("{text}"),
                    Err(e) => {
                        eprintln!("error: {e}");
                        return ExitCode::from(1);
                    }
                }
            } else {
                print!("{}", render(&show));
            }
        }
        (Cmd::Show { .. }, _) => {
            eprintln!("error: {}: the answer has no plan", path.display());
            return ExitCode::from(1);
        }
        (_, answer) => {
            println!("{}", answer.message.unwrap_or_default());
        }
    }
    ExitCode::SUCCESS
}

/// `12.3k/s`, `950/s`.
pub fn per_second(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.1}M/s", v / 1e6)
    } else if v >= 1e4 {
        format!("{:.1}k/s", v / 1e3)
    } else {
        format!("{v:.0}/s")
    }
}

/// `1.23 Gbit/s`, `45.6 Mbit/s`.
pub fn bits(v: f64) -> String {
    if v >= 1e9 {
        format!("{:.2} Gbit/s", v / 1e9)
    } else if v >= 1e6 {
        format!("{:.1} Mbit/s", v / 1e6)
    } else {
        format!("{:.1} kbit/s", v / 1e3)
    }
}

/// `would_block=3 ring_full=1`: the reasons an output dropped for, with
/// their counts; `-` for none.
pub fn reasons(o: &fanout::stats::OutputSnapshot) -> String {
    let all: Vec<String> = o
        .dropped
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(reason, n)| format!("{}={n}", reason.name()))
        .collect();
    if all.is_empty() {
        "-".to_owned()
    } else {
        all.join(" ")
    }
}

/// The egress column: the interface's name, or `route` where the kernel's
/// route chooses.
pub fn egress(e: &str) -> &str {
    if e == "by route" {
        "route"
    } else {
        e.split(' ').next().unwrap_or("")
    }
}

/// `1h02m03s`.
pub fn uptime(secs: f64) -> String {
    let s = secs as u64;
    format!("{}h{:02}m{:02}s", s / 3600, s / 60 % 60, s % 60)
}

/// The human form of `show`.
pub fn render(show: &Show) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "fanout {} (pid {}): {}, up {}, engine {}",
        show.version,
        show.pid,
        show.config,
        uptime(show.uptime_secs),
        show.stats.engine
    );
    if !show.runtime_changes.is_empty() {
        let _ = writeln!(
            out,
            "runtime changes (fanout ctl; not in {}: a reload returns to the file):",
            show.config
        );
        for c in &show.runtime_changes {
            let _ = writeln!(out, "  {c}");
        }
    }
    for plan in &show.flows {
        let Some(stats) = show.stats.flow(&plan.name) else {
            continue;
        };
        let rates = show.rates.flow(&plan.name).cloned().unwrap_or_default();
        let _ = write!(
            out,
            "flow {}: {} on {}",
            plan.name, plan.group, plan.ingress
        );
        if let Some(v) = plan.vlan {
            let _ = write!(out, ", vlan {v}");
        }
        if let Some(o) = plan.outer_vlan {
            let _ = write!(out, " in outer vlan {o}");
        }
        if let Some(s) = &plan.source {
            let _ = write!(out, ", source {s}");
        }
        let _ = writeln!(out, ", cap {}, engine {}", plan.cap, stats.engine);
        let not_replicated =
            stats.source_rejected + stats.malformed + stats.ttl_expired + stats.rate_limited;
        let _ = writeln!(
            out,
            "  received {} ({}, {}), not replicated {} ({})",
            stats.received,
            per_second(rates.received_pps),
            bits(rates.received_bps),
            not_replicated,
            per_second(rates.not_replicated_pps)
        );
        if stats.health.mode != fanout::health::HealthMode::Off {
            let _ = writeln!(out, "  health: {}", stats.health);
        }
        let name_w = plan
            .outputs
            .iter()
            .map(|o| o.name.len())
            .max()
            .unwrap_or(0)
            .max("output".len());
        let _ = writeln!(
            out,
            "  {:<name_w$}  {:<10}  {:>12}  {:>9}  {:>13}  {:>9}  {:>9}  reasons",
            "output", "egress", "sent", "rate", "bits", "dropped", "drops"
        );
        for o in &plan.outputs {
            let Some(s) = stats.output(&o.name) else {
                continue;
            };
            let r = rates
                .outputs
                .iter()
                .find(|r| r.name == o.name)
                .cloned()
                .unwrap_or_default();

            let _ = writeln!(
                out,
                "  {:<name_w$}  {:<10}  {:>12}  {:>9}  {:>13}  {:>9}  {:>9}  {}",
                o.name,
                egress(&o.egress),
                s.sent,
                per_second(r.sent_pps),
                bits(r.sent_bps),
                s.dropped_total(),
                per_second(r.dropped_pps),
                reasons(s)
            );
        }
        for s in stats.outputs.iter().filter(|o| o.removed) {
            let _ = writeln!(
                out,
                "  {:<name_w$}  {:<10}  {:>12}  {:>9}  {:>13}  {:>9}  {:>9}  {}",
                s.name,
                "(removed)",
                s.sent,
                "-",
                "-",
                s.dropped_total(),
                "-",
                reasons(s)
            );
        }
    }
    for f in show.stats.flows.iter().filter(|f| f.removed) {
        let _ = writeln!(
            out,
            "flow {} (removed): received {}, {} output(s)",
            f.name,
            f.received,
            f.outputs.len()
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_read_as_an_operator_writes_them() {
        assert_eq!(per_second(950.0), "950/s");
        assert_eq!(per_second(12_345.0), "12.3k/s");
        assert_eq!(per_second(2_500_000.0), "2.5M/s");
        assert_eq!(bits(1.234e9), "1.23 Gbit/s");
        assert_eq!(bits(45.6e6), "45.6 Mbit/s");
        assert_eq!(bits(800.0), "0.8 kbit/s");
        assert_eq!(uptime(3723.9), "1h02m03s");
    }
}
