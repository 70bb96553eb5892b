//! `fanout top`: a live terminal view of a running `fanout run`, over its
//! control socket ([`fanout::control`]), refreshed every second (ratatui on
//! crossterm).
//!
//! One line per flow (group, ingress, engine, what it receives and at what
//! rate, what it does not replicate, its stream health) followed by one
//! line per output (destination, egress, replicas sent and their rates,
//! drops, their rate and reasons), sorted within each flow by name, by
//! rate or by drops (`s` cycles; `--sort`), scrollable when the outputs
//! outnumber the screen (arrows, `j`/`k`, PgUp/PgDn, space, Home/End,
//! `g`/`G`). `q`, Esc or Ctrl-C quits. When the engine cannot be reached
//! (stopped, restarting) the view says so and tries again every refresh.
//!
//! Exit codes: 0 after `q`; 1 without a terminal.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use fanout::control::{self, Request, Show};
use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
use ratatui::layout::{Constraint, Layout};
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use super::ctl::{bits, egress, per_second, reasons, uptime};
use super::journal;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The control socket of the fanout run to watch (default: the
    /// environment's FANOUT_CONTROL, else /run/fanout/fanout.sock).
    #[arg(long, value_name = "PATH")]
    pub control: Option<PathBuf>,
    /// Seconds between refreshes.
    #[arg(long, value_name = "SECS", default_value_t = 1.0)]
    pub interval: f64,
    /// How the outputs of each flow are sorted (`s` cycles).
    #[arg(long, value_enum, default_value_t = Sort::Name)]
    pub sort: Sort,
}

/// The order of the outputs within a flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Sort {
    /// By output name.
    Name,
    /// By replicas sent per second, highest first.
    Rate,
    /// By drops per second, then dropped in all, highest first.
    Drops,
}

impl Sort {
    fn next(self) -> Sort {
        match self {
            Sort::Name => Sort::Rate,
            Sort::Rate => Sort::Drops,
            Sort::Drops => Sort::Name,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Sort::Name => "name",
            Sort::Rate => "rate",
            Sort::Drops => "drops",
        }
    }
}

/// One line of the scrolled part: a flow's (bold) or an output's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub flow: bool,
    pub text: String,
}

/// The column heads of the output lines.
pub fn column_heads() -> String {
    format!(
        "  {:<24} {:<22} {:<8} {:>12} {:>9} {:>13} {:>9} {:>9}  reasons",
        "output", "destination", "egress", "sent", "rate", "bits", "dropped", "drops"
    )
}

/// The scrolled lines of `show`, outputs sorted by `sort`.
pub fn rows(show: &Show, sort: Sort) -> Vec<Row> {
    let mut out = Vec::new();
    for plan in &show.flows {
        let Some(stats) = show.stats.flow(&plan.name) else {
            continue;
        };
        let rates = show.rates.flow(&plan.name).cloned().unwrap_or_default();
        let h = &stats.health;
        let health = if h.mode == fanout::health::HealthMode::Off {
            "health off".to_owned()
        } else {
            format!(
                "health {} {} error(s) ({})",
                h.counters.kind.name(),
                h.counters.errors(),
                per_second(rates.health_errors_ps)
            )
        };
        let not_replicated =
            stats.source_rejected + stats.malformed + stats.ttl_expired + stats.rate_limited;
        out.push(Row {
            flow: true,
            text: format!(
                "{} {} on {} [{}]  received {} {} {}  not replicated {} ({})  {}",
                plan.name,
                plan.group,
                plan.ingress.split(' ').next().unwrap_or(""),
                stats.engine,
                stats.received,
                per_second(rates.received_pps),
                bits(rates.received_bps),
                not_replicated,
                per_second(rates.not_replicated_pps),
                health
            ),
        });
        let mut outputs: Vec<(
            &fanout::control::PlanOutput,
            &fanout::stats::OutputSnapshot,
            fanout::control::OutputRates,
        )> = plan
            .outputs
            .iter()
            .filter_map(|o| {
                let s = stats.output(&o.name)?;
                let r = rates
                    .outputs
                    .iter()
                    .find(|r| r.name == o.name)
                    .cloned()
                    .unwrap_or_default();
                Some((o, s, r))
            })
            .collect();
        match sort {
            Sort::Name => outputs.sort_by(|a, b| a.0.name.cmp(&b.0.name)),
            Sort::Rate => outputs.sort_by(|a, b| {
                b.2.sent_pps
                    .total_cmp(&a.2.sent_pps)
                    .then_with(|| a.0.name.cmp(&b.0.name))
            }),
            Sort::Drops => outputs.sort_by(|a, b| {
                b.2.dropped_pps
                    .total_cmp(&a.2.dropped_pps)
                    .then_with(|| b.1.dropped_total().cmp(&a.1.dropped_total()))
                    .then_with(|| a.0.name.cmp(&b.0.name))
            }),
        }
        for (o, s, r) in outputs {
            out.push(Row {
                flow: false,
                text: format!(
                    "  {:<24} {:<22} {:<8} {:>12} {:>9} {:>13} {:>9} {:>9}  {}",
                    o.name,
                    o.dest,
                    egress(&o.egress),
                    s.sent,
                    per_second(r.sent_pps),
                    bits(r.sent_bps),
                    s.dropped_total(),
                    per_second(r.dropped_pps),
                    reasons(s)
                ),
            });
        }
    }
    out
}

/// The header line of `show`.
pub fn header(show: &Show, sort: Sort) -> String {
    let (mut received, mut sent, mut dropped) = (0.0, 0.0, 0.0);
    for f in &show.rates.flows {
        received += f.received_pps;
        for o in &f.outputs {
            sent += o.sent_pps;
            dropped += o.dropped_pps;
        }
    }
    format!(
        "fanout top: fanout {} pid {}, {}, up {}, engine {} | {} flow(s): received {}, sent {}, \
         dropped {} | sort {}",
        show.version,
        show.pid,
        show.config,
        uptime(show.uptime_secs),
        show.stats.engine,
        show.flows.len(),
        per_second(received),
        per_second(sent),
        per_second(dropped),
        sort.name()
    )
}

/// What the screen shows: the last answer, or why there is none.
enum Latest {
    Show(Box<Show>),
    Error(String),
}

pub fn main(args: Args) -> ExitCode {
    let path = super::ctl::socket(args.control);
    let interval = Duration::from_secs_f64(args.interval.clamp(0.1, 3600.0));
    let mut terminal = match ratatui::try_init() {
        Ok(t) => t,
        Err(e) => {
            let why = format!("error: fanout top needs a terminal: {e}");
            eprintln!("{}", journal::line(journal::ERR, &why));
            return ExitCode::from(1);
        }
    };
    let mut sort = args.sort;
    let mut offset = 0usize;
    let mut latest = Latest::Error("connecting".to_owned());
    let mut fetched: Option<Instant> = None;
    let result = loop {
        if fetched.is_none_or(|t| t.elapsed() >= interval) {
            latest = match control::query(&path, &Request::Show) {
                Ok(r) => match (r.error, r.show) {
                    (None, Some(show)) => Latest::Show(show),
                    (Some(e), _) => Latest::Error(e),
                    (None, None) => Latest::Error("an answer without a plan".to_owned()),
                },
                Err(e) => Latest::Error(format!(
                    "{e} (trying again every {:.1} s)",
                    interval.as_secs_f64()
                )),
            };
            fetched = Some(Instant::now());
        }
        let mut page = 1usize;
        let drawn = terminal.draw(|frame| {
            let [top, heads, body, foot] = Layout::vertical([
                Constraint::Length(1),
                Constraint::Length(1),
                Constraint::Min(1),
                Constraint::Length(1),
            ])
            .areas(frame.area());
            page = usize::from(body.height).max(1);
            let bold = Style::default().add_modifier(Modifier::BOLD);
            match &latest {
                Latest::Error(e) => {
                    frame.render_widget(
                        Paragraph::new(format!("fanout top: {}", path.display())),
                        top,
                    );
                    frame.render_widget(Paragraph::new(format!("error: {e}")), body);
                }
                Latest::Show(show) => {
                    let all = rows(show, sort);
                    offset = offset.min(all.len().saturating_sub(page));
                    let lines: Vec<Line> = all
                        .iter()
                        .skip(offset)
                        .take(page)
                        .map(|r| {
                            if r.flow {
                                Line::from(Span::styled(r.text.clone(), bold))
                            } else {
                                Line::from(r.text.clone())
                            }
                        })
                        .collect();
                    frame.render_widget(Paragraph::new(header(show, sort)).style(bold), top);
                    frame.render_widget(Paragraph::new(column_heads()), heads);
                    frame.render_widget(Paragraph::new(lines), body);
                    let last = (offset + page).min(all.len());
                    frame.render_widget(
                        Paragraph::new(format!(
                            "rows {}-{} of {} | q quit, s sort, arrows/PgUp/PgDn/Home/End scroll",
                            if all.is_empty() { 0 } else { offset + 1 },
                            last,
                            all.len()
                        )),
                        foot,
                    );
                }
            }
        });
        if let Err(e) = drawn {
            break Err(e);
        }
        let wait = interval.saturating_sub(fetched.map_or(Duration::ZERO, |t| t.elapsed()));
        match event::poll(wait) {
            Ok(false) => continue,
            Ok(true) => {}
            Err(e) => break Err(e),
        }
        let key = match event::read() {
            Ok(Event::Key(k)) if k.kind == KeyEventKind::Press => k,
            Ok(_) => continue,
            Err(e) => break Err(e),
        };
        match key.code {
            KeyCode::Char('q') | KeyCode::Esc => break Ok(()),
            KeyCode::Char('c') if key.modifiers.contains(KeyModifiers::CONTROL) => break Ok(()),
            KeyCode::Char('s') => sort = sort.next(),
            KeyCode::Down | KeyCode::Char('j') => offset += 1,
            KeyCode::Up | KeyCode::Char('k') => offset = offset.saturating_sub(1),
            KeyCode::PageDown | KeyCode::Char(' ') => offset += page,
            KeyCode::PageUp => offset = offset.saturating_sub(page),
            KeyCode::Home | KeyCode::Char('g') => offset = 0,
            KeyCode::End | KeyCode::Char('G') => offset = usize::MAX,
            _ => {}
        }
    };
    ratatui::restore();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!(
                "{}",
                journal::line(journal::ERR, &format!("error: fanout top: {e}"))
            );
            ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fanout::control::{FlowRates, OutputRates, PlanFlow, PlanOutput, Rates};
    use fanout::stats::{DropReason, FlowSnapshot, OutputSnapshot, Snapshot};

    fn show() -> Show {
        let outputs = [
            ("b", 10u64, 5.0, 0.0),
            ("a", 3, 1.0, 2.0),
            ("c", 7, 9.0, 0.0),
        ];
        Show {
            version: "0.1.0".into(),
            pid: 7,
            config: "/etc/fanout/fanout.toml".into(),
            uptime_secs: 61.0,
            runtime_changes: Vec::new(),
            flows: vec![PlanFlow {
                name: "tv".into(),
                ingress: "in0 (index 4, mtu 9000)".into(),
                group: "239.1.1.1:5000".into(),
                vlan: None,
                outer_vlan: None,
                source: None,
                cap: "none".into(),
                health: "auto".into(),
                outputs: outputs
                    .iter()
                    .map(|(n, ..)| PlanOutput {
                        name: (*n).into(),
                        kind: "unicast".into(),
                        dest: format!("10.0.0.{}:6000", n.len()),
                        egress: "out0 (index 5, mtu 9000)".into(),
                        vlan: None,
                        ttl: 64,
                        source_port: None,
                    })
                    .collect(),
            }],
            stats: Snapshot {
                engine: "socket".into(),
                flows: vec![FlowSnapshot {
                    name: "tv".into(),
                    removed: false,
                    engine: "socket".into(),
                    engine_reason: None,
                    received: 10,
                    received_bytes: 10_000,
                    source_rejected: 0,
                    malformed: 0,
                    checksum_completed: 0,
                    ttl_expired: 0,
                    rate_limited: 0,
                    health: Default::default(),
                    xdp: None,
                    outputs: outputs
                        .iter()
                        .map(|(n, sent, _, _)| OutputSnapshot {
                            name: (*n).into(),
                            dest: "x".into(),
                            removed: false,
                            offered: 10,
                            sent: *sent,
                            sent_bytes: sent * 1000,
                            dropped: DropReason::ALL
                                .iter()
                                .map(|&r| {
                                    (
                                        r,
                                        if r == DropReason::WouldBlock {
                                            10 - sent
                                        } else {
                                            0
                                        },
                                    )
                                })
                                .collect(),
                        })
                        .collect(),
                }],
                xdp: None,
            },
            rates: Rates {
                secs: 1.0,
                flows: vec![FlowRates {
                    name: "tv".into(),
                    received_pps: 10.0,
                    received_bps: 80_000.0,
                    not_replicated_pps: 0.0,
                    health_errors_ps: 0.0,
                    outputs: outputs
                        .iter()
                        .map(|(n, _, pps, drops)| OutputRates {
                            name: (*n).into(),
                            sent_pps: *pps,
                            sent_bps: pps * 8000.0,
                            dropped_pps: *drops,
                            dropped_by_reason: Default::default(),
                        })
                        .collect(),
                }],
            },
        }
    }

    fn order(sort: Sort) -> Vec<String> {
        rows(&show(), sort)
            .iter()
            .filter(|r| !r.flow)
            .map(|r| r.text.split_whitespace().next().unwrap().to_owned())
            .collect()
    }

    #[test]
    fn outputs_sort_by_name_rate_and_drops() {
        assert_eq!(order(Sort::Name), ["a", "b", "c"]);
        assert_eq!(order(Sort::Rate), ["c", "b", "a"]);
        // a drops 2/s; then by dropped in all: c (3) before b (0).
        assert_eq!(order(Sort::Drops), ["a", "c", "b"]);
        assert_eq!(Sort::Drops.next(), Sort::Name);
    }

    #[test]
    fn a_flow_line_then_its_outputs_with_every_figure() {
        let r = rows(&show(), Sort::Name);
        assert!(r[0].flow);
        assert!(
            r[0].text
                .starts_with("tv 239.1.1.1:5000 on in0 [socket]  received 10 10/s 80.0 kbit/s"),
            "{}",
            r[0].text
        );
        let a: Vec<&str> = r[1].text.split_whitespace().collect();
        assert_eq!(
            a,
            [
                "a",
                "10.0.0.1:6000",
                "out0",
                "3",
                "1/s",
                "8.0",
                "kbit/s",
                "7",
                "2/s",
                "would_block=7"
            ]
        );
        let h = header(&show(), Sort::Rate);
        assert!(
            h.contains("1 flow(s): received 10/s, sent 15/s, dropped 2/s | sort rate"),
            "{h}"
        );
    }
}
