//! Statistics over a cell's repetitions: each figure as (median, min, max),
//! computed from the raw counts of [`Rep`] and nothing else, and printed
//! so that what rounds to zero reads as zero. Pure functions, no I/O.

use super::measure::{Cell, Rep};

pub(super) fn median(values: impl Iterator<Item = f64>) -> f64 {
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
        let per = |f: fn(&Rep) -> f64| spread(c.reps.iter().map(f));
        let k = c.outputs.max(1) as f64;
        let p = c.payload as f64;
        let d = |r: &Rep| r.delivered.max(1) as f64;
        Stats {
            offered: per(|r| r.offered as f64 / r.gen_secs),
            replicas: per(|r| r.delivered as f64 / r.gen_secs),
            gbps: spread(
                c.reps
                    .iter()
                    .map(|r| r.delivered as f64 * p * 8.0 / r.gen_secs / 1e9),
            ),
            loss: spread(
                c.reps
                    .iter()
                    .map(|r| 1.0 - r.delivered as f64 / (r.offered as f64 * k).max(1.0)),
            ),
            ingress_loss: spread(
                c.reps
                    .iter()
                    .map(|r| 1.0 - r.arrived as f64 / (r.offered as f64).max(1.0)),
            ),
            machine: spread(c.reps.iter().map(|r| r.machine_ns / d(r))),
            edge: spread(c.reps.iter().map(|r| r.edge_cpu_ns / d(r))),
            engine: c
                .reps
                .iter()
                .all(|r| r.engine_ns.is_some())
                .then(|| spread(c.reps.iter().map(|r| r.engine_ns.unwrap_or(0.0) / d(r)))),
            napi: spread(c.reps.iter().map(|r| r.napi_ns / d(r))),
            attributed: spread(
                c.reps
                    .iter()
                    .map(|r| (r.engine_ns.unwrap_or(0.0) + r.napi_ns) / d(r)),
            ),
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
}
