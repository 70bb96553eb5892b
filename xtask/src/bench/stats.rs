//! Statistics over a cell's repetitions: each figure as (median, min, max),
//! computed from the raw counts of [`Rep`] and nothing else, and printed
//! so that what rounds to zero reads as zero. Pure functions, no I/O.

/// One repetition of one cell.
#[derive(Debug, Clone, Default)]
pub(super) struct Rep {
    pub(super) offered: u64,
    pub(super) gen_secs: f64,
    pub(super) arrived: u64,
    pub(super) delivered: u64,
    pub(super) machine_ns: f64,
    pub(super) edge_cpu_ns: f64,
    pub(super) engine_ns: Option<f64>,
    pub(super) napi_ns: f64,
}

#[derive(Debug, Clone)]
pub(super) struct Cell {
    pub(super) payload: usize,
    pub(super) outputs: usize,
    pub(super) reps: Vec<Rep>,
}

fn median(values: impl Iterator<Item = f64>) -> f64 {
    let mut v: Vec<f64> = values.collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// (median, min, max).
pub(super) type Spread = (f64, f64, f64);

fn spread(values: impl Iterator<Item = f64> + Clone) -> Spread {
    let min = values.clone().fold(f64::INFINITY, f64::min);
    let max = values.clone().fold(f64::NEG_INFINITY, f64::max);
    (median(values), min, max)
}

/// A cell's figures, each as (median, min, max) over the repetitions.
pub(super) struct Stats {
    pub(super) offered: Spread,
    pub(super) replicas: Spread,
    pub(super) gbps: Spread,
    pub(super) loss: Spread,
    pub(super) ingress_loss: Spread,
    pub(super) machine: Spread,
    pub(super) edge: Spread,
    pub(super) engine: Option<Spread>,
    pub(super) napi: Spread,
    pub(super) attributed: Spread,
}

impl Stats {
    pub(super) fn of(c: &Cell) -> Stats {
        let per = |f: &dyn Fn(&Rep) -> f64| spread(c.reps.iter().map(f));
        let k = c.outputs.max(1) as f64;
        let p = c.payload as f64;
        let d = |r: &Rep| r.delivered.max(1) as f64;
        Stats {
            offered: per(&|r| r.offered as f64 / r.gen_secs),
            replicas: per(&|r| r.delivered as f64 / r.gen_secs),
            gbps: per(&|r| r.delivered as f64 * p * 8.0 / r.gen_secs / 1e9),
            loss: per(&|r| 1.0 - r.delivered as f64 / (r.offered as f64 * k).max(1.0)),
            ingress_loss: per(&|r| 1.0 - r.arrived as f64 / (r.offered as f64).max(1.0)),
            machine: per(&|r| r.machine_ns / d(r)),
            edge: per(&|r| r.edge_cpu_ns / d(r)),
            engine: c
                .reps
                .iter()
                .all(|r| r.engine_ns.is_some())
                .then(|| per(&|r| r.engine_ns.unwrap_or(0.0) / d(r))),
            napi: per(&|r| r.napi_ns / d(r)),
            attributed: per(&|r| (r.engine_ns.unwrap_or(0.0) + r.napi_ns) / d(r)),
        }
    }
}

pub(super) fn fmt_spread(s: Spread, scale: f64, digits: usize) -> String {
    // What rounds to zero prints as 0 (no "-0.0" from a late replica
    // counted in the next window).
    let f = |v: f64| {
        let x = v * scale;
        let x = if x.abs() < 0.5 * 10f64.powi(-(digits as i32)) {
            0.0
        } else {
            x
        };
        format!("{x:.digits$}")
    };
    if (s.2 - s.1).abs() <= f64::EPSILON * s.0.abs().max(1.0) {
        f(s.0)
    } else {
        format!("{} ({}–{})", f(s.0), f(s.1), f(s.2))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_spread() {
        assert_eq!(median([3.0, 1.0, 2.0].into_iter()), 2.0);
        assert_eq!(median([4.0, 1.0, 2.0, 3.0].into_iter()), 2.5);
        assert_eq!(spread([3.0, 1.0, 2.0].into_iter()), (2.0, 1.0, 3.0));
        assert_eq!(fmt_spread((2.0, 2.0, 2.0), 1.0, 1), "2.0");
        assert_eq!(fmt_spread((2.0, 1.0, 3.0), 1.0, 0), "2 (1–3)");
        assert_eq!(fmt_spread((-1e-7, -1e-7, -1e-7), 100.0, 1), "0.0");
    }

    #[test]
    fn stats_of_a_cell() {
        let rep = |offered, gen_secs, arrived, delivered, machine_ns, engine_ns, napi_ns| Rep {
            offered,
            gen_secs,
            arrived,
            delivered,
            machine_ns,
            edge_cpu_ns: delivered as f64,
            engine_ns,
            napi_ns,
        };
        let mut cell = Cell {
            payload: 100,
            outputs: 2,
            reps: vec![
                rep(1000, 1.0, 900, 1800, 3600.0, Some(900.0), 900.0),
                rep(4000, 2.0, 4000, 8000, 8000.0, Some(8000.0), 0.0),
            ],
        };
        let close = |got: Spread, want: Spread| {
            let near = |a: f64, b: f64| (a - b).abs() < 1e-9 * b.abs().max(1.0);
            assert!(
                near(got.0, want.0) && near(got.1, want.1) && near(got.2, want.2),
                "{got:?} != {want:?}"
            );
        };
        let s = Stats::of(&cell);
        close(s.offered, (1500.0, 1000.0, 2000.0));
        close(s.replicas, (2900.0, 1800.0, 4000.0));
        close(s.gbps, (2.32e-3, 1.44e-3, 3.2e-3));
        close(s.loss, (0.05, 0.0, 0.1));
        close(s.ingress_loss, (0.05, 0.0, 0.1));
        close(s.machine, (1.5, 1.0, 2.0));
        close(s.edge, (1.0, 1.0, 1.0));
        close(s.engine.unwrap(), (0.75, 0.5, 1.0));
        close(s.napi, (0.25, 0.0, 0.5));
        close(s.attributed, (1.0, 1.0, 1.0));
        // A repetition without the engine's time (the kernel mode): no
        // engine column, and the kernel threads alone are attributed.
        cell.reps[1].engine_ns = None;
        let s = Stats::of(&cell);
        assert!(s.engine.is_none());
        close(s.attributed, (0.5, 0.0, 1.0));
    }
}
