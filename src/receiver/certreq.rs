//! The rate limit on `certresp` answers: a `certreq` costs a few hundred bytes and names any
//! queue as its `reply-to`; the answer is the receiver's certificate, several times larger. Left
//! unbounded, the receiver amplifies anyone's traffic towards any queue.
//!
//! Guarantees:
//! - One reply queue gets at most [`CERTRESP_BURST`] answers at once, and one more per
//!   [`CERTRESP_REFILL`] after that (a token bucket per `reply-to`). A genuine sender asks once
//!   per run (a few times when its attempts time out), so it is always answered.
//! - Memory is bounded: at most [`MAX_QUEUES`] reply queues are remembered, each by a keyed
//!   64-bit hash of its name (not the name, which the peer chooses and may make long). Queues
//!   whose bucket is full again are forgotten first (forgetting one changes nothing); when
//!   every remembered queue is still being limited, a request from a new queue is dropped.
//! - Dropped requests are counted; the count is reported at most once per [`LOG_INTERVAL`].

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::time::{Duration, Instant};

/// Answers one reply queue may get at once.
pub const CERTRESP_BURST: u32 = 3;

/// After the burst, one more answer per reply queue per this long (three a minute).
pub const CERTRESP_REFILL: Duration = Duration::from_secs(20);

/// Reply queues remembered at most.
const MAX_QUEUES: usize = 10_000;

/// Dropped requests are reported at most this often.
const LOG_INTERVAL: Duration = Duration::from_secs(60);

/// How often a full table may be scanned for queues to forget.
const PRUNE_INTERVAL: Duration = Duration::from_secs(1);

/// What to do with one `certreq`.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Send the `certresp`.
    Answer,
    /// Over the limit: drop it. `Some(n)` when it is time to report the `n` requests dropped
    /// since the last report (this one included).
    Drop(Option<u64>),
}

/// A token bucket: `tokens` as of `at`.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn tokens_at(&self, now: Instant, per_sec: f64, burst: f64) -> f64 {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        (self.tokens + elapsed * per_sec).min(burst)
    }
}

/// Token buckets per reply queue (see the module documentation).
pub(crate) struct Limiter {
    buckets: HashMap<u64, Bucket>,
    keys: RandomState,
    burst: f64,
    per_sec: f64,
    max_queues: usize,
    dropped: u64,
    last_report: Option<Instant>,
    last_prune: Option<Instant>,
}

impl Default for Limiter {
    fn default() -> Self {
        Limiter::new(CERTRESP_BURST, CERTRESP_REFILL, MAX_QUEUES)
    }
}

impl Limiter {
    fn new(burst: u32, refill: Duration, max_queues: usize) -> Limiter {
        Limiter {
            buckets: HashMap::new(),
            keys: RandomState::new(),
            burst: f64::from(burst.max(1)),
            per_sec: 1.0 / refill.as_secs_f64().max(f64::MIN_POSITIVE),
            max_queues: max_queues.max(1),
            dropped: 0,
            last_report: None,
            last_prune: None,
        }
    }

    /// Whether a `certreq` naming `reply_to` that arrived at `now` is answered.
    pub(crate) fn check(&mut self, reply_to: &str, now: Instant) -> Verdict {
        let key = self.keys.hash_one(reply_to);
        let (burst, per_sec) = (self.burst, self.per_sec);
        if !self.buckets.contains_key(&key) && self.buckets.len() >= self.max_queues {
            self.prune(now);
        }
        let room = self.buckets.len() < self.max_queues;
        let answered = match self.buckets.get_mut(&key) {
            Some(bucket) => {
                let tokens = bucket.tokens_at(now, per_sec, burst);
                *bucket = Bucket {
                    tokens: if tokens >= 1.0 { tokens - 1.0 } else { tokens },
                    at: now,
                };
                tokens >= 1.0
            }
            None if room => {
                self.buckets.insert(
                    key,
                    Bucket {
                        tokens: burst - 1.0,
                        at: now,
                    },
                );
                true
            }
            None => false,
        };
        if answered {
            return Verdict::Answer;
        }
        self.dropped += 1;
        let due = self
            .last_report
            .is_none_or(|at| now.saturating_duration_since(at) >= LOG_INTERVAL);
        if due {
            self.last_report = Some(now);
            Verdict::Drop(Some(std::mem::take(&mut self.dropped)))
        } else {
            Verdict::Drop(None)
        }
    }

    /// Forgets the queues whose bucket is full again (at most once per [`PRUNE_INTERVAL`], so
    /// that a flood from new queues cannot make every request scan the table).
    fn prune(&mut self, now: Instant) {
        if self
            .last_prune
            .is_some_and(|at| now.saturating_duration_since(at) < PRUNE_INTERVAL)
        {
            return;
        }
        self.last_prune = Some(now);
        let (burst, per_sec) = (self.burst, self.per_sec);
        self.buckets
            .retain(|_, b| b.tokens_at(now, per_sec, burst) < burst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answers(l: &mut Limiter, q: &str, n: usize, now: Instant) -> usize {
        (0..n)
            .filter(|_| l.check(q, now) == Verdict::Answer)
            .count()
    }

    #[test]
    fn a_burst_then_one_per_refill_per_queue() {
        let mut l = Limiter::default();
        let t0 = Instant::now();
        assert_eq!(answers(&mut l, "/temp-queue/a", 20, t0), 3);
        // Another queue is not affected.
        assert_eq!(answers(&mut l, "/temp-queue/b", 1, t0), 1);
        // One more per 20 s.
        let t1 = t0 + CERTRESP_REFILL;
        assert_eq!(answers(&mut l, "/temp-queue/a", 5, t1), 1);
        assert_eq!(
            answers(&mut l, "/temp-queue/a", 5, t1 + CERTRESP_REFILL / 2),
            0
        );
        // Idle long enough: the whole burst again, never more.
        let t2 = t1 + 100 * CERTRESP_REFILL;
        assert_eq!(answers(&mut l, "/temp-queue/a", 20, t2), 3);
    }

    #[test]
    fn drops_are_reported_at_most_once_per_interval_with_their_count() {
        let mut l = Limiter::default();
        let t0 = Instant::now();
        assert_eq!(answers(&mut l, "q", 3, t0), 3);
        assert_eq!(l.check("q", t0), Verdict::Drop(Some(1)));
        for _ in 0..9 {
            assert_eq!(
                l.check("q", t0 + Duration::from_secs(1)),
                Verdict::Drop(None)
            );
        }
        // Refilled by then: the first request is answered, the next ones dropped and reported.
        let later = t0 + LOG_INTERVAL;
        assert_eq!(answers(&mut l, "q", 3, later), 3);
        assert_eq!(l.check("q", later), Verdict::Drop(Some(10)));
    }

    #[test]
    fn the_table_is_bounded() {
        let mut l = Limiter::new(3, CERTRESP_REFILL, 4);
        let t0 = Instant::now();
        for q in ["a", "b", "c", "d"] {
            assert_eq!(answers(&mut l, q, 1, t0), 1);
        }
        // Full of queues still being limited: a new one is dropped, the known ones go on.
        assert_eq!(answers(&mut l, "e", 1, t0), 0);
        assert_eq!(l.buckets.len(), 4);
        assert_eq!(answers(&mut l, "a", 1, t0), 1);
        // Once their buckets are full again they are forgotten and the new one gets its turn.
        let later = t0 + 10 * CERTRESP_REFILL;
        assert_eq!(answers(&mut l, "e", 1, later), 1);
        assert!(l.buckets.len() <= 4);
        // A flood of new names never grows the table.
        for i in 0..1000 {
            l.check(&format!("flood-{i}"), later);
        }
        assert!(l.buckets.len() <= 4);
    }
}
