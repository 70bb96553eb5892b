//! Per-flow rate caps (the amplification guard): `max_pps` and `max_mbps`,
//! enforced on received datagrams before they are replicated, in both
//! engines. A datagram over the cap is not replicated and is counted
//! `rate_limited` on its flow.
//!
//! Each cap is a token bucket that starts full, refills at the configured
//! rate and holds [`BURST`] of it (at least one datagram, so a cap never
//! starves a stream of datagrams larger than its burst). `max_mbps` counts
//! UDP payload bits (as `received_bytes` does), before replication: the
//! flow's input, not the sum of its outputs. The arithmetic is in integers
//! (units of 10^-9 token), so a burst is admitted or refused exactly.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How much of its rate a cap lets through at once after an idle period.
pub const BURST: Duration = Duration::from_millis(100);

/// The largest UDP payload, in bits: the least a bits bucket holds.
const MAX_DATAGRAM_BITS: u128 = 65_535 * 8;

const NANO: u128 = 1_000_000_000;

/// A flow's optional caps; both `None` (the default) is no cap.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct RateCap {
    /// Datagrams per second.
    pub max_pps: Option<u64>,
    /// UDP payload bits per second (`max_mbps` × 10^6).
    pub max_bps: Option<u64>,
}

impl RateCap {
    /// Whether no cap is set.
    pub fn is_none(&self) -> bool {
        self.max_pps.is_none() && self.max_bps.is_none()
    }

    /// A limiter for this cap, or `None` without one.
    pub fn limiter(&self) -> Option<Limiter> {
        (!self.is_none()).then(|| Limiter::new(*self))
    }
}

/// `max_pps 1000, max_mbps 20`; `none` without a cap.
impl std::fmt::Display for RateCap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut parts = Vec::new();
        if let Some(pps) = self.max_pps {
            parts.push(format!("max_pps {pps}"));
        }
        if let Some(bps) = self.max_bps {
            parts.push(format!("max_mbps {}", bps as f64 / 1e6));
        }
        if parts.is_empty() {
            return f.write_str("none");
        }
        write!(f, "{} (burst {} ms)", parts.join(", "), BURST.as_millis())
    }
}

/// One token bucket, in 10^-9 tokens.
#[derive(Debug, Clone)]
struct Bucket {
    /// Tokens per second, which is also 10^-9 tokens per nanosecond.
    rate: u128,
    depth: u128,
    level: u128,
}

impl Bucket {
    /// A full bucket of `rate` tokens per second holding [`BURST`] of it,
    /// and at least `least` tokens.
    fn new(rate: u64, least: u128) -> Self {
        let depth = (rate as u128 * BURST.as_nanos()).max(least * NANO);
        Bucket {
            rate: rate as u128,
            depth,
            level: depth,
        }
    }

    fn refill(&mut self, nanos: u128) {
        self.level = self
            .level
            .saturating_add(nanos.saturating_mul(self.rate))
            .min(self.depth);
    }

    fn has(&self, tokens: u128) -> bool {
        self.level >= tokens * NANO
    }

    fn take(&mut self, tokens: u128) {
        self.level -= tokens * NANO;
    }
}

/// The buckets of one flow's caps; a datagram is admitted only when every
/// bucket has room for it, and then taken from each.
#[derive(Debug, Clone)]
pub struct Limiter {
    packets: Option<Bucket>,
    bits: Option<Bucket>,
    last: Option<Instant>,
}

impl Limiter {
    pub fn new(cap: RateCap) -> Self {
        Limiter {
            packets: cap.max_pps.map(|r| Bucket::new(r, 1)),
            bits: cap.max_bps.map(|r| Bucket::new(r, MAX_DATAGRAM_BITS)),
            last: None,
        }
    }

    /// Whether a datagram of `payload` bytes received at `now` is within
    /// the caps (and if so, it is charged). Times may come from several
    /// threads slightly out of order: an earlier `now` than the last one
    /// refills nothing.
    pub fn admit(&mut self, now: Instant, payload: usize) -> bool {
        let nanos = match self.last {
            Some(last) => now.saturating_duration_since(last).as_nanos(),
            None => 0,
        };
        if self.last.is_none_or(|last| now > last) {
            self.last = Some(now);
        }
        let bits = payload as u128 * 8;
        for b in [&mut self.packets, &mut self.bits].into_iter().flatten() {
            b.refill(nanos);
        }
        let fits = self.packets.as_ref().is_none_or(|b| b.has(1))
            && self.bits.as_ref().is_none_or(|b| b.has(bits));
        if fits {
            if let Some(b) = &mut self.packets {
                b.take(1);
            }
            if let Some(b) = &mut self.bits {
                b.take(bits);
            }
        }
        fits
    }
}

/// A limiter shared by the workers that receive one flow (the XDP engine
/// runs a worker per rx queue, and a flow's datagrams may arrive on any).
pub type SharedLimiter = Arc<Mutex<Limiter>>;

/// A shared limiter for `cap`, or `None` without a cap.
pub fn shared(cap: RateCap) -> Option<SharedLimiter> {
    cap.limiter().map(|l| Arc::new(Mutex::new(l)))
}

/// Admits through a shared limiter (a poisoned lock still limits: the
/// buckets are plain numbers, valid whatever a panicking holder did).
pub fn admit_shared(limiter: &SharedLimiter, now: Instant, payload: usize) -> bool {
    limiter
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .admit(now, payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cap(pps: Option<u64>, bps: Option<u64>) -> RateCap {
        RateCap {
            max_pps: pps,
            max_bps: bps,
        }
    }

    /// Admitted datagrams out of `n` sent `every` apart from `t0`.
    fn admitted(l: &mut Limiter, t0: Instant, n: u32, every: Duration, len: usize) -> u32 {
        (0..n).filter(|&i| l.admit(t0 + every * i, len)).count() as u32
    }

    #[test]
    fn a_burst_is_cut_at_the_bucket_depth_exactly() {
        // 1000 pps holds 100 ms of it: 100 datagrams at once, not 101.
        let mut l = Limiter::new(cap(Some(1000), None));
        let t0 = Instant::now();
        assert_eq!(admitted(&mut l, t0, 250, Duration::ZERO, 64), 100);
        // 10 ms later, 10 more tokens.
        let t1 = t0 + Duration::from_millis(10);
        assert_eq!(admitted(&mut l, t1, 50, Duration::ZERO, 64), 10);
        // A long idle period refills to the depth, not beyond.
        let t2 = t1 + Duration::from_secs(60);
        assert_eq!(admitted(&mut l, t2, 500, Duration::ZERO, 64), 100);
    }

    #[test]
    fn a_steady_stream_under_the_cap_loses_nothing_and_over_it_keeps_the_rate() {
        let t0 = Instant::now();
        // 900 pps against a 1000 pps cap: every datagram for 10 s.
        let mut l = Limiter::new(cap(Some(1000), None));
        let every = Duration::from_nanos(1_000_000_000 / 900);
        assert_eq!(admitted(&mut l, t0, 9000, every, 1316), 9000);
        // 2000 pps for 10 s: the burst, then 1000 per second (the last
        // datagram arrives 9.9995 s after the first: 9999 tokens later).
        let mut l = Limiter::new(cap(Some(1000), None));
        let every = Duration::from_micros(500);
        assert_eq!(admitted(&mut l, t0, 20_000, every, 1316), 100 + 9999);
    }

    #[test]
    fn the_bits_cap_counts_payload_bits() {
        // 8 Mbit/s holds 800 kbit: 100 datagrams of 1000 bytes.
        let mut l = Limiter::new(cap(None, Some(8_000_000)));
        let t0 = Instant::now();
        assert_eq!(admitted(&mut l, t0, 300, Duration::ZERO, 1000), 100);
        // 1 ms later 8000 bits: one more of 1000 bytes, or eight of 125.
        let t1 = t0 + Duration::from_millis(1);
        assert!(l.admit(t1, 1000));
        assert!(!l.admit(t1, 1));
        let t2 = t1 + Duration::from_millis(1);
        assert_eq!(admitted(&mut l, t2, 20, Duration::ZERO, 125), 8);
    }

    #[test]
    fn a_tiny_bits_cap_still_passes_the_largest_datagram() {
        // 1 kbit/s holds only 100 bits per burst, but a bucket holds at
        // least one 65535-byte datagram, so the stream is slowed, not cut.
        let mut l = Limiter::new(cap(None, Some(1000)));
        let t0 = Instant::now();
        assert!(l.admit(t0, 65_535));
        assert!(!l.admit(t0, 1));
    }

    #[test]
    fn both_caps_must_have_room_and_a_refusal_charges_neither() {
        // 10 pps (burst 1) and 80 kbit/s (burst 8 kbit, but at least one
        // 65535-byte datagram: 524280 bits).
        let mut l = Limiter::new(cap(Some(10), Some(80_000)));
        let t0 = Instant::now();
        assert!(l.admit(t0, 65_000), "leaves 4280 bits");
        assert!(!l.admit(t0, 100), "the packet bucket is empty");
        // 100 ms: one packet token and 8000 bits, so 12280 bits: exactly
        // 1535 bytes, if the refusal above charged nothing.
        let t1 = t0 + Duration::from_millis(100);
        assert!(!l.admit(t1, 1536), "one bit short");
        assert!(l.admit(t1, 1535));
        assert!(!l.admit(t1, 1), "both empty");
    }

    #[test]
    fn times_out_of_order_refill_nothing() {
        let mut l = Limiter::new(cap(Some(10), None));
        let t0 = Instant::now() + Duration::from_secs(1);
        assert!(l.admit(t0, 1));
        assert!(!l.admit(t0 - Duration::from_millis(500), 1));
        assert!(!l.admit(t0 + Duration::from_millis(99), 1));
        assert!(l.admit(t0 + Duration::from_millis(100), 1));
    }

    #[test]
    fn display_names_the_caps_and_the_burst() {
        assert_eq!(RateCap::default().to_string(), "none");
        assert_eq!(
            cap(Some(5000), Some(2_500_000)).to_string(),
            "max_pps 5000, max_mbps 2.5 (burst 100 ms)"
        );
        assert!(RateCap::default().limiter().is_none());
    }
}
