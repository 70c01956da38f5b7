//! A latency histogram updated with atomics: what the receiver's open and store latencies and
//! the sender's ack latency are recorded in, for the metrics endpoint and the benchmark alike.
//!
//! Guarantees:
//! - Recording never blocks and never allocates: readable from another task (the metrics
//!   endpoint, the benchmark) while the component runs.
//! - The exported buckets are fixed ([`Histogram::BOUNDS_MS`]); their snapshot is cumulative,
//!   as Prometheus wants, and its count equals the observations made.
//! - [`Histogram::quantile`] is the nearest-rank quantile of the observations, rounded up to
//!   within 1/32 (3.1 %) of the true value (for times up to some 19 hours) and never above the
//!   largest observation; the quantile 1 is exactly [`Histogram::max`]. Values are kept to the
//!   microsecond.
//!
//! It sits in `ops`, beside the metrics endpoint that exports it, and depends on nothing, so
//! that the sender and the receiver can both record into it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Number of finite exported buckets.
const BOUNDS: usize = 11;

/// Sub-buckets per power of two of microseconds, for quantiles (relative error 1/`SUB`).
const SUB_BITS: u32 = 5;
const SUB: usize = 1 << SUB_BITS;
/// The largest power of two (of microseconds) told apart; longer times (above 2^36 µs, some
/// 19 hours) all count in the last fine bucket.
const MAX_EXP: u32 = 35;
/// Fine buckets: the values below `SUB` exactly, then `SUB` per power of two.
const FINE: usize = SUB * (MAX_EXP as usize - SUB_BITS as usize + 2);

/// A latency histogram with fixed buckets, updated with atomics.
#[derive(Debug)]
pub struct Histogram {
    /// Observations per exported bucket (not cumulative); the last one is `+Inf`.
    buckets: [AtomicU64; BOUNDS + 1],
    sum_micros: AtomicU64,
    /// Observations per fine (log-linear) bucket, for quantiles.
    fine: [AtomicU64; FINE],
    max_micros: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Histogram {
        Histogram {
            buckets: [const { AtomicU64::new(0) }; BOUNDS + 1],
            sum_micros: AtomicU64::new(0),
            fine: [const { AtomicU64::new(0) }; FINE],
            max_micros: AtomicU64::new(0),
        }
    }
}

/// A histogram as read at one moment, in Prometheus' terms.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSnapshot {
    /// Upper bound in seconds (`f64::INFINITY` last) and cumulative count.
    pub buckets: Vec<(f64, u64)>,
    /// Sum of all observations, seconds.
    pub sum_seconds: f64,
    /// Number of observations.
    pub count: u64,
}

/// The fine bucket of `micros`.
fn fine_index(micros: u64) -> usize {
    if micros < SUB as u64 {
        return micros as usize;
    }
    let exp = (63 - micros.leading_zeros()).min(MAX_EXP);
    if exp == MAX_EXP && micros >> MAX_EXP > 1 {
        return FINE - 1;
    }
    let shift = exp - SUB_BITS;
    let sub = (micros >> shift) as usize - SUB;
    SUB * (exp - SUB_BITS + 1) as usize + sub
}

/// The largest value (microseconds) that falls in fine bucket `i`.
fn fine_upper(i: usize) -> u64 {
    if i < SUB {
        return i as u64;
    }
    let shift = (i / SUB - 1) as u32;
    let lower = ((SUB + i % SUB) as u64) << shift;
    lower + (1u64 << shift) - 1
}

impl Histogram {
    /// Upper bounds of the exported buckets, milliseconds (a last `+Inf` bucket catches the
    /// rest).
    pub const BOUNDS_MS: [f64; BOUNDS] = [
        0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 250.0, 500.0, 1000.0,
    ];

    /// Records one observation.
    pub fn observe(&self, d: Duration) {
        let ms = d.as_secs_f64() * 1000.0;
        let i = Self::BOUNDS_MS
            .iter()
            .position(|b| ms <= *b)
            .unwrap_or(Self::BOUNDS_MS.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
        self.fine[fine_index(micros)].fetch_add(1, Ordering::Relaxed);
        self.max_micros.fetch_max(micros, Ordering::Relaxed);
    }

    /// Adds every observation of `other` to this one (to report several senders as one).
    pub fn merge(&self, other: &Histogram) {
        let add = |to: &AtomicU64, from: &AtomicU64| {
            to.fetch_add(from.load(Ordering::Relaxed), Ordering::Relaxed);
        };
        for (to, from) in self.buckets.iter().zip(&other.buckets) {
            add(to, from);
        }
        for (to, from) in self.fine.iter().zip(&other.fine) {
            add(to, from);
        }
        add(&self.sum_micros, &other.sum_micros);
        self.max_micros
            .fetch_max(other.max_micros.load(Ordering::Relaxed), Ordering::Relaxed);
    }

    /// Reads the exported buckets. Cumulative counts come from the buckets, and the count is
    /// the last of them, so a scrape racing an observation is still self-consistent.
    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut total = 0;
        let mut buckets = Vec::with_capacity(Self::BOUNDS_MS.len() + 1);
        for (i, b) in self.buckets.iter().enumerate() {
            total += b.load(Ordering::Relaxed);
            let le = Self::BOUNDS_MS
                .get(i)
                .map_or(f64::INFINITY, |ms| ms / 1000.0);
            buckets.push((le, total));
        }
        HistogramSnapshot {
            buckets,
            sum_seconds: self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6,
            count: total,
        }
    }

    /// The largest observation; zero when there is none.
    pub fn max(&self) -> Duration {
        Duration::from_micros(self.max_micros.load(Ordering::Relaxed))
    }

    /// The `q`-quantile (0..=1) by nearest rank, as the guarantees above say; `None` when
    /// nothing was observed.
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        let counts: Vec<u64> = self
            .fine
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).clamp(1, total);
        let mut seen = 0;
        let mut upper = u64::MAX;
        for (i, c) in counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                upper = fine_upper(i);
                break;
            }
        }
        let max = self.max_micros.load(Ordering::Relaxed);
        Some(Duration::from_micros(upper.min(max)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_cumulative_with_bounds_inclusive() {
        let h = Histogram::default();
        h.observe(Duration::from_micros(300)); // <= 0.5 ms
        h.observe(Duration::from_millis(1)); // exactly on the 1 ms bound
        h.observe(Duration::from_millis(7)); // 10 ms bucket
        h.observe(Duration::from_secs(3)); // +Inf
        let s = h.snapshot();
        assert_eq!(s.count, 4);
        assert_eq!(s.buckets.len(), 12);
        assert_eq!(s.buckets[0], (0.0005, 1));
        assert_eq!(s.buckets[1], (0.001, 2));
        assert_eq!(s.buckets[3], (0.005, 2));
        assert_eq!(s.buckets[4], (0.01, 3));
        assert_eq!(s.buckets[10], (1.0, 3));
        assert_eq!(s.buckets[11], (f64::INFINITY, 4));
        assert!((s.sum_seconds - 3.0083).abs() < 1e-9, "{}", s.sum_seconds);
    }

    #[test]
    fn fine_buckets_tile_every_value() {
        // Consecutive buckets meet exactly: each value is in the bucket whose bounds hold it.
        for i in 1..FINE {
            assert_eq!(
                fine_upper(i - 1) + 1,
                fine_upper(i) + 1 - (fine_width(i)),
                "{i}"
            );
        }
        for v in (0..5000u64).chain([1 << 20, (1 << 36) - 1, 1 << 36, u64::MAX]) {
            let i = fine_index(v);
            assert!(i < FINE, "{v}");
            if i < FINE - 1 {
                assert!(
                    v <= fine_upper(i) && v + fine_width(i) > fine_upper(i),
                    "{v} in {i}"
                );
                assert!(
                    fine_width(i) as f64 <= (v.max(1) as f64) / SUB as f64 + 1.0,
                    "{v}"
                );
            }
        }
        assert_eq!(fine_index(u64::MAX), FINE - 1);
    }

    fn fine_width(i: usize) -> u64 {
        if i < SUB {
            1
        } else {
            1 << (i / SUB - 1)
        }
    }

    #[test]
    fn quantiles_are_nearest_rank_within_a_fine_bucket() {
        let h = Histogram::default();
        assert_eq!(h.quantile(0.5), None);
        assert_eq!(h.max(), Duration::ZERO);
        // 1..=100 ms: nearest rank gives 50 ms and 99 ms exactly.
        for ms in 1..=100 {
            h.observe(Duration::from_millis(ms));
        }
        let close = |got: Option<Duration>, want_ms: f64| {
            let got = got.expect("observations").as_secs_f64() * 1000.0;
            assert!(
                got >= want_ms && got <= want_ms * (1.0 + 1.0 / SUB as f64),
                "{got} for {want_ms}"
            );
        };
        close(h.quantile(0.5), 50.0);
        close(h.quantile(0.99), 99.0);
        assert_eq!(h.quantile(1.0), Some(Duration::from_millis(100)));
        assert_eq!(h.max(), Duration::from_millis(100));
        // Small values are exact, and a quantile never exceeds the largest observation.
        let one = Histogram::default();
        one.observe(Duration::from_micros(7));
        assert_eq!(one.quantile(0.5), Some(Duration::from_micros(7)));
        let odd = Histogram::default();
        odd.observe(Duration::from_micros(1001));
        assert_eq!(odd.quantile(0.99), Some(Duration::from_micros(1001)));
    }

    #[test]
    fn merged_histograms_count_both() {
        let a = Histogram::default();
        let b = Histogram::default();
        a.observe(Duration::from_millis(2));
        b.observe(Duration::from_millis(40));
        b.observe(Duration::from_millis(3));
        a.merge(&b);
        assert_eq!(a.snapshot().count, 3);
        assert_eq!(a.max(), Duration::from_millis(40));
        assert_eq!(a.quantile(1.0), Some(Duration::from_millis(40)));
        let p50 = a.quantile(0.5).expect("three observations");
        assert!(p50 >= Duration::from_millis(3) && p50 < Duration::from_micros(3100));
        assert!((a.snapshot().sum_seconds - 0.045).abs() < 1e-9);
    }
}
