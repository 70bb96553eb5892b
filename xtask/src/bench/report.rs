//! The report: a run's results as Markdown (the machine, the load, the
//! layout, the columns explained, then the generator's ceiling and one row
//! per cell) and as SVG (delivered replicas/s against outputs, a panel per
//! payload, a line per mode). It owns the markers of BENCHMARKS.md's
//! generated sections, one per offered load, and replaces only between
//! them; everything else in that file is left as it is.

use std::{fmt::Write as _, fs, process::Command};

use anyhow::{Context as _, Result};

use super::{
    cpu::Layout,
    measure::{ModeResult, Outcome},
    plan::{Mode, Plan},
    stats::{Cell, Stats, fmt_spread},
};
use crate::cmd::output_of;

/// Markers of a generated section in BENCHMARKS.md (one per offered load:
/// `unpaced` or `rate-N`), with the tag in between.
const BEGIN: &str = "<!-- xtask bench begin:";
const END: &str = "<!-- xtask bench end:";

pub(super) struct Report<'a> {
    pub(super) plan: &'a Plan,
    pub(super) layout: Layout,
    pub(super) ceiling: &'a [Cell],
    pub(super) results: &'a [ModeResult],
    pub(super) command: &'a str,
    pub(super) load: String,
}

impl Report<'_> {
    pub(super) fn markdown(&self) -> String {
        let mut md = String::new();
        let date =
            output_of(Command::new("date").args(["-u", "+%Y-%m-%d %H:%M UTC"])).unwrap_or_default();
        let kernel = output_of(Command::new("uname").arg("-r")).unwrap_or_default();
        let model = fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|c| {
                c.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split(':').nth(1))
                    .map(|s| s.trim().to_owned())
            })
            .unwrap_or_else(|| "unknown CPU".to_owned());
        let _ = writeln!(md, "### Lab benchmark: {}", date.trim());
        let _ = writeln!(md);
        let _ = writeln!(md, "- command: `{}`", self.command);
        let _ = writeln!(
            md,
            "- machine: {model}, {} online CPUs, kernel {}; {}",
            self.layout.cpus,
            kernel.trim(),
            self.load
        );
        let _ = writeln!(
            md,
            "- cells: {} repetitions of {} s of {} sending each; median, (min–max) when they differ",
            self.plan.reps,
            self.plan.seconds,
            self.plan
                .rate
                .map_or("unpaced (the edge overloaded)".to_owned(), |r| format!(
                    "{r} datagrams/s"
                ))
        );
        let _ = writeln!(md, "- layout: {}", self.layout.describe());
        let _ = writeln!(
            md,
            "- columns: *offered* = datagrams/s the generator sent; *replicas/s* = datagrams/s \
             counted on all sink interfaces together; *Gbps* = UDP payload bits delivered; \
             *loss* = 1 − delivered / (offered × outputs); *in0 loss* = the part of the offered datagrams that never entered the edge (dropped at in0's NAPI ring); *machine* = busy time of all CPUs \
             ({idle}) per delivered replica, generator included; *edge CPU* = busy \
             time of the edge CPU per replica; *engine* = the fanout process's own CPU time \
             (schedstat) per replica; *kernel threads* = CPU time of the in0 NAPI kthread and the edge CPU's ksoftirqd \
             per replica (where the kernel mode replicates); *engine + kernel threads* is the \
             edge's work measured per thread (schedstat), immune to other processes on the \
             machine, unlike *machine* and *edge CPU* (idle time counts every process).",
            idle = self.layout.idle.describe()
        );
        let _ = writeln!(md);
        let _ = writeln!(md, "Generator ceiling (no engine; in0 drops the stream):");
        let _ = writeln!(md);
        let _ = writeln!(md, "| payload | offered (datagrams/s) | Gbps offered |");
        let _ = writeln!(md, "|---:|---:|---:|");
        for c in self.ceiling {
            let s = Stats::of(c);
            let gbps = (
                s.offered.0 * c.payload as f64 * 8.0 / 1e9,
                s.offered.1 * c.payload as f64 * 8.0 / 1e9,
                s.offered.2 * c.payload as f64 * 8.0 / 1e9,
            );
            let _ = writeln!(
                md,
                "| {} | {} | {} |",
                c.payload,
                fmt_spread(s.offered, 1.0, 0),
                fmt_spread(gbps, 1.0, 2)
            );
        }
        let _ = writeln!(md);
        let _ = writeln!(
            md,
            "| mode | payload | outputs | offered (Mdgram/s) | replicas/s | Gbps | loss % | in0 loss % | machine ns/replica | edge CPU ns/replica | engine ns/replica | kernel threads ns/replica | engine + kernel threads ns/replica |"
        );
        let _ = writeln!(
            md,
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
        );
        for r in self.results {
            match &r.outcome {
                Outcome::Unavailable(why) => {
                    let _ = writeln!(
                        md,
                        "| {} | – | – | not available: {} | | | | | | | | | |",
                        r.mode.name(),
                        why.replace('|', "/")
                    );
                }
                Outcome::Cells(cells) => {
                    for c in cells {
                        let s = Stats::of(c);
                        let _ = writeln!(
                            md,
                            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                            r.mode.name(),
                            c.payload,
                            c.outputs,
                            fmt_spread(s.offered, 1e-6, 3),
                            fmt_spread(s.replicas, 1.0, 0),
                            fmt_spread(s.gbps, 1.0, 2),
                            fmt_spread(s.loss, 100.0, 1),
                            fmt_spread(s.ingress_loss, 100.0, 1),
                            fmt_spread(s.machine, 1.0, 0),
                            fmt_spread(s.edge, 1.0, 0),
                            s.engine.map_or("–".to_owned(), |e| fmt_spread(e, 1.0, 0)),
                            fmt_spread(s.napi, 1.0, 0),
                            fmt_spread(s.attributed, 1.0, 0),
                        );
                    }
                }
            }
        }
        md
    }

    /// Delivered replicas/s against outputs, one panel per payload, one line per mode.
    pub(super) fn svg(&self) -> String {
        let (pw, ph, m) = (320.0, 240.0, 50.0);
        let panels = self.plan.payloads.len().max(1);
        let w = panels as f64 * (pw + m) + m;
        let h = ph + 2.0 * m + 30.0;
        let mut svg = format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"11\">\n\
             <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
             <text x=\"{}\" y=\"18\" text-anchor=\"middle\" font-size=\"14\">delivered replicas/s (median) vs outputs</text>\n",
            w / 2.0
        );
        let xs = &self.plan.outputs;
        let xmax = *xs.iter().max().unwrap_or(&1) as f64;
        for (pi, &payload) in self.plan.payloads.iter().enumerate() {
            let x0 = m + pi as f64 * (pw + m);
            let y0 = m;
            let series: Vec<(Mode, Vec<(usize, f64)>)> = self
                .results
                .iter()
                .filter_map(|r| match &r.outcome {
                    Outcome::Cells(cells) => Some((
                        r.mode,
                        cells
                            .iter()
                            .filter(|c| c.payload == payload)
                            .map(|c| (c.outputs, Stats::of(c).replicas.0))
                            .collect(),
                    )),
                    Outcome::Unavailable(_) => None,
                })
                .collect();
            let ymax = series
                .iter()
                .flat_map(|(_, pts)| pts.iter().map(|p| p.1))
                .fold(1.0f64, f64::max)
                * 1.1;
            let px = |x: f64| x0 + x / xmax * pw;
            let py = |y: f64| y0 + ph - y / ymax * ph;
            let _ = writeln!(
                svg,
                "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" font-size=\"12\">payload {payload} B</text>",
                x0 + pw / 2.0,
                y0 - 8.0
            );
            let _ = writeln!(
                svg,
                "<rect x=\"{x0}\" y=\"{y0}\" width=\"{pw}\" height=\"{ph}\" fill=\"none\" stroke=\"#888\"/>"
            );
            for t in 0..=4 {
                let y = ymax * t as f64 / 4.0;
                let _ = writeln!(
                    svg,
                    "<line x1=\"{x0}\" x2=\"{}\" y1=\"{yy}\" y2=\"{yy}\" stroke=\"#eee\"/><text x=\"{}\" y=\"{}\" text-anchor=\"end\">{:.2}M</text>",
                    x0 + pw,
                    x0 - 3.0,
                    py(y) + 4.0,
                    y / 1e6,
                    yy = py(y)
                );
            }
            for &x in xs {
                let _ = writeln!(
                    svg,
                    "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{x}</text>",
                    px(x as f64),
                    y0 + ph + 14.0
                );
            }
            let _ = writeln!(
                svg,
                "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">outputs</text>",
                x0 + pw / 2.0,
                y0 + ph + 28.0
            );
            for (mode, pts) in &series {
                let path: Vec<String> = pts
                    .iter()
                    .map(|&(x, y)| format!("{:.1},{:.1}", px(x as f64), py(y)))
                    .collect();
                let _ = writeln!(
                    svg,
                    "<polyline fill=\"none\" stroke=\"{c}\" stroke-width=\"2\" points=\"{}\"/>",
                    path.join(" "),
                    c = mode.color()
                );
                for &(x, y) in pts {
                    let _ = writeln!(
                        svg,
                        "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"{}\"/>",
                        px(x as f64),
                        py(y),
                        mode.color()
                    );
                }
            }
        }
        // Legend.
        let mut lx = m;
        for r in self.results {
            let label = match r.outcome {
                Outcome::Cells(_) => r.mode.name().to_owned(),
                Outcome::Unavailable(_) => format!("{} (not available)", r.mode.name()),
            };
            let _ = writeln!(
                svg,
                "<rect x=\"{lx}\" y=\"{}\" width=\"12\" height=\"12\" fill=\"{}\"/><text x=\"{}\" y=\"{}\">{label}</text>",
                h - 22.0,
                r.mode.color(),
                lx + 16.0,
                h - 12.0
            );
            lx += 200.0;
        }
        svg.push_str("</svg>\n");
        svg
    }
}

/// The command as typed (`cargo xtask bench ...`), for the report.
pub(super) fn command_line() -> String {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) != Some("bench") {
        return "cargo xtask bench --quick (run by `cargo xtask test`)".to_owned();
    }
    format!("cargo xtask {}", args.join(" "))
}

/// Replaces the generated section `tag` of BENCHMARKS.md (or appends one).
pub(super) fn write_benchmarks_md(markdown: &str, tag: &str, svg_name: &str) -> Result<()> {
    let path = crate::cmd::repo_root().join("BENCHMARKS.md");
    let old = fs::read_to_string(&path).unwrap_or_else(|_| "# Benchmarks\n".to_owned());
    let (begin, end) = (format!("{BEGIN} {tag} -->"), format!("{END} {tag} -->"));
    let section = format!(
        "{begin}\n{markdown}\n![delivered replicas/s vs outputs](docs/{svg_name})\n\n{end}"
    );
    let new = match (old.find(&begin), old.find(&end)) {
        (Some(b), Some(e)) if e > b => {
            format!("{}{section}{}", &old[..b], &old[e + end.len()..])
        }
        _ => format!("{}\n\n{section}\n", old.trim_end()),
    };
    fs::write(&path, new).with_context(|| format!("write {}", path.display()))
}
