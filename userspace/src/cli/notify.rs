//! systemd's notify protocol for `fanout run` (the unit is `Type=notify`),
//! and the watch on the workers' heartbeats that feeds its watchdog.
//!
//! Contract: with `NOTIFY_SOCKET` in the environment, `fanout run` sends
//! `READY=1` with a `STATUS=` naming the engine of every flow once every
//! socket is bound and every group joined (when the ready file appears),
//! refreshes `STATUS=` with the totals and rates every [`STATUS_EVERY`],
//! and sends `STOPPING=1` when it starts to stop. With `WATCHDOG_USEC`
//! (`WatchdogSec=` in the unit) it sends `WATCHDOG=1` every half of that
//! period, but only while every worker's heartbeat
//! ([`fanout::stats::Heartbeat`]) moves: a worker whose count stood still
//! for [`Liveness::limit`] is stuck inside its loop, the pings stop, and
//! systemd kills and restarts the service (the XDP program fails open in
//! the meantime: the sockets close with the process). A stall is logged
//! as an error once, and again when the worker moves again, with or
//! without systemd, and `fanout run` then has the engine fail the worker's
//! traffic open ([`fanout::engine::Engine::fail_open`]). Without
//! `NOTIFY_SOCKET` nothing is sent.

use std::time::{Duration, Instant};

use fanout::stats::{Heartbeat, Snapshot};
use sd_notify::NotifyState;

/// How often `STATUS=` is refreshed with totals and rates.
pub const STATUS_EVERY: Duration = Duration::from_secs(5);

/// Without a watchdog period: how long a worker's heartbeat may stand still
/// before it counts as stalled (20 times the idle poll of
/// [`fanout::engine::STOP_POLL`]).
const STALLED_AFTER: Duration = Duration::from_secs(2);

/// The workers' heartbeats over time: which ones stand still, since when.
#[derive(Debug)]
pub struct Liveness {
    limit: Duration,
    /// Per worker: the last count seen and when it last changed.
    seen: Vec<(Heartbeat, Instant)>,
    /// The workers said to be stalled (to say each once, and the recovery).
    told: Vec<String>,
}

/// What [`Liveness::look`] found changed since the last look.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Change {
    /// Workers that stand still now and did not at the last look, with how
    /// long they have.
    pub stalled: Vec<(String, Duration)>,
    /// Workers that were stalled and moved again.
    pub recovered: Vec<String>,
}

impl Liveness {
    /// Tracks `beats` (the engine's heartbeats at the start); a worker
    /// stalls after `limit` without a beat.
    pub fn new(beats: Vec<Heartbeat>, limit: Duration, now: Instant) -> Self {
        Self {
            limit,
            seen: beats.into_iter().map(|b| (b, now)).collect(),
            told: Vec::new(),
        }
    }

    /// How long a heartbeat may stand still: half the watchdog period when
    /// there is one (so that systemd sees a stall within about 1.5 periods),
    /// never less than 5 idle polls, at most [`STALLED_AFTER`].
    pub fn limit(watchdog: Option<Duration>) -> Duration {
        let floor = fanout::engine::STOP_POLL * 5;
        watchdog.map_or(STALLED_AFTER, |w| (w / 2).clamp(floor, STALLED_AFTER))
    }

    /// Takes the heartbeats as they are `now`; returns what changed.
    pub fn look(&mut self, beats: &[Heartbeat], now: Instant) -> Change {
        for b in beats {
            match self.seen.iter_mut().find(|(s, _)| s.worker == b.worker) {
                Some((s, at)) if s.beats != b.beats => {
                    s.beats = b.beats;
                    *at = now;
                }
                Some(_) => {}
                None => self.seen.push((b.clone(), now)),
            }
        }
        let mut change = Change::default();
        for (s, at) in &self.seen {
            let still = now.saturating_duration_since(*at);
            let told = self.told.contains(&s.worker);
            if still >= self.limit && !told {
                change.stalled.push((s.worker.clone(), still));
            } else if still < self.limit && told {
                change.recovered.push(s.worker.clone());
            }
        }
        self.told.retain(|w| !change.recovered.contains(w));
        self.told
            .extend(change.stalled.iter().map(|(w, _)| w.clone()));
        change
    }

    /// Whether every worker moved within the limit at the last look.
    pub fn alive(&self) -> bool {
        self.told.is_empty()
    }

    /// The workers stalled at the last look.
    pub fn stalled(&self) -> &[String] {
        &self.told
    }
}

/// The notify side of `fanout run`: what it tells systemd, when.
#[derive(Debug)]
pub struct Notifier {
    /// Whether `NOTIFY_SOCKET` is set.
    enabled: bool,
    /// `WATCHDOG_USEC`, when set for this process.
    watchdog: Option<Duration>,
    fed_at: Option<Instant>,
    status_at: Instant,
    status_of: Snapshot,
    liveness: Liveness,
    /// `tv: xdp native copy, rec: socket`: the engine of every flow.
    engines: String,
}

impl Notifier {
    /// Reads the environment; `start` is the running engine's first
    /// snapshot, `beats` its heartbeats.
    pub fn new(start: Snapshot, beats: Vec<Heartbeat>) -> Self {
        let enabled = std::env::var_os("NOTIFY_SOCKET").is_some_and(|s| !s.is_empty());
        let watchdog = sd_notify::watchdog_enabled().filter(|w| !w.is_zero());
        let engines = start
            .flows
            .iter()
            .map(|f| format!("{}: {}", f.name, f.engine))
            .collect::<Vec<_>>()
            .join(", ");
        let now = Instant::now();
        Self {
            enabled,
            watchdog,
            fed_at: None,
            status_at: now,
            liveness: Liveness::new(beats, Liveness::limit(watchdog), now),
            status_of: start,
            engines,
        }
    }

    /// Says what systemd will see: whether the protocol is on, the
    /// watchdog period and the stall limit.
    pub fn describe(&self) -> Option<String> {
        self.enabled.then(|| match self.watchdog {
            Some(w) => format!(
                "systemd: notify on, watchdog every {:?} (pinged every {:?} while every worker's \
                 heartbeat moves; a worker still for {:?} stops the pings)",
                w,
                w / 2,
                self.liveness.limit
            ),
            None => "systemd: notify on, no watchdog (WatchdogSec= not set)".to_owned(),
        })
    }

    /// `READY=1` and the first `STATUS=`.
    pub fn ready(&mut self) {
        let status = format!(
            "running {} flow(s): {}",
            self.status_of.flows.len(),
            self.engines
        );
        self.send(&[NotifyState::Ready, NotifyState::Status(&status)]);
        self.feed(Instant::now());
    }

    /// One look, every turn of the supervision loop (about every 100 ms):
    /// logs stalls and recoveries, pings the watchdog when due and every
    /// worker moves, refreshes the status when due. `snap` is called only
    /// when the status is due. Returns the workers that stalled since the
    /// last look.
    pub fn tick(&mut self, beats: &[Heartbeat], snap: impl FnOnce() -> Snapshot) -> Vec<String> {
        let now = Instant::now();
        let change = self.liveness.look(beats, now);
        for (worker, still) in &change.stalled {
            log::error!(
                "worker {worker} made no progress for {:.1} s (stuck inside its loop){}",
                still.as_secs_f64(),
                if self.watchdog.is_some() {
                    ": the systemd watchdog is no longer fed, systemd will restart fanout"
                } else {
                    ""
                }
            );
        }
        for worker in &change.recovered {
            log::warn!("worker {worker} makes progress again");
        }
        if !change.stalled.is_empty() {
            let status = format!("stalled: {}", self.liveness.stalled().join(", "));
            self.send(&[NotifyState::Status(&status)]);
        }
        if self.liveness.alive() {
            self.feed(now);
        }
        if now.duration_since(self.status_at) >= STATUS_EVERY {
            let secs = now.duration_since(self.status_at).as_secs_f64();
            let snap = snap();
            if self.liveness.alive() {
                let summary = snap.summary_since(&self.status_of, secs);
                let status = format!(
                    "{}; {}",
                    self.engines,
                    summary.strip_prefix("stats: ").unwrap_or(&summary)
                );
                self.send(&[NotifyState::Status(&status)]);
            }
            self.status_at = now;
            self.status_of = snap;
        }
        change.stalled.into_iter().map(|(w, _)| w).collect()
    }

    /// `STOPPING=1`, with why.
    pub fn stopping(&mut self, why: &str) {
        let status = format!("stopping: {why}");
        self.send(&[NotifyState::Stopping, NotifyState::Status(&status)]);
    }

    /// `WATCHDOG=1` when half the period has passed since the last one.
    fn feed(&mut self, now: Instant) {
        let Some(period) = self.watchdog else { return };
        if self
            .fed_at
            .is_some_and(|at| now.duration_since(at) < period / 2)
        {
            return;
        }
        self.send(&[NotifyState::Watchdog]);
        self.fed_at = Some(now);
    }

    fn send(&self, states: &[NotifyState]) {
        if !self.enabled {
            return;
        }
        if let Err(e) = sd_notify::notify(states) {
            log::warn!("systemd notify: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn beat(worker: &str, beats: u64) -> Heartbeat {
        Heartbeat {
            worker: worker.to_owned(),
            beats,
        }
    }

    #[test]
    fn a_worker_that_stands_still_is_stalled_once_and_recovers() {
        let t0 = Instant::now();
        let s = Duration::from_millis;
        let mut l = Liveness::new(vec![beat("a", 0), beat("b", 0)], s(1000), t0);
        // Both move.
        assert_eq!(
            l.look(&[beat("a", 3), beat("b", 1)], t0 + s(400)),
            Change::default()
        );
        assert!(l.alive());
        // b stands still: not yet stalled at 999 ms since its last beat...
        assert_eq!(
            l.look(&[beat("a", 9), beat("b", 1)], t0 + s(1399)),
            Change::default()
        );
        // ...stalled at 1000 ms, said once.
        let c = l.look(&[beat("a", 12), beat("b", 1)], t0 + s(1400));
        assert_eq!(c.stalled, [("b".to_owned(), s(1000))]);
        assert!(c.recovered.is_empty());
        assert!(!l.alive());
        assert_eq!(l.stalled(), ["b".to_owned()]);
        assert_eq!(
            l.look(&[beat("a", 15), beat("b", 1)], t0 + s(3000)),
            Change::default()
        );
        // It moves again: recovered, alive.
        let c = l.look(&[beat("a", 16), beat("b", 2)], t0 + s(3100));
        assert_eq!(c.recovered, ["b".to_owned()]);
        assert!(c.stalled.is_empty());
        assert!(l.alive());
        // A worker that appears later is tracked from then on.
        assert_eq!(
            l.look(&[beat("a", 17), beat("b", 3), beat("c", 0)], t0 + s(3200)),
            Change::default()
        );
        let c = l.look(&[beat("a", 18), beat("b", 4), beat("c", 0)], t0 + s(4200));
        assert_eq!(c.stalled, [("c".to_owned(), s(1000))]);
    }

    #[test]
    fn the_limit_follows_the_watchdog_within_bounds() {
        let s = Duration::from_millis;
        assert_eq!(Liveness::limit(None), STALLED_AFTER);
        assert_eq!(Liveness::limit(Some(s(2000))), s(1000));
        assert_eq!(Liveness::limit(Some(s(100))), s(500));
        assert_eq!(Liveness::limit(Some(s(60_000))), STALLED_AFTER);
    }
}
