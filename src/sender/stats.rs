//! The sender's counters: one set, live, and the [`Summary`] of a run as a snapshot of it.
//!
//! Guarantees:
//! - [`SenderStats`] can be read (by the metrics endpoint, the bench) while the sender runs;
//!   it counts from the sender's creation and is never reset between passes.
//! - A [`Summary`] is what the live counters said when it was taken, plus the wall time: the
//!   two can never disagree.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::ops::histogram::Histogram;

/// What a pass (or a daemon run) did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// `msg` frames sent, resends included.
    pub sent: u64,
    /// Messages acked and removed from the queue.
    pub acked: u64,
    /// Messages the receiver rejected (moved to the local reject queue).
    pub rejected: u64,
    /// Resends of a message already sent once (after a timeout or a lost connection).
    pub retried: u64,
    /// Wall time.
    pub elapsed: Duration,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let secs = self.elapsed.as_secs_f64();
        let rate = if secs > 0.0 {
            self.acked as f64 / secs
        } else {
            0.0
        };
        write!(
            f,
            "sent {}, acked {}, rejected {}, retried {} in {:.2} s ({:.1} msg/s)",
            self.sent, self.acked, self.rejected, self.retried, secs, rate
        )
    }
}

/// Live counters of a sender, since it was created; shared with whoever watches it run.
#[derive(Debug, Default)]
pub struct SenderStats {
    /// `msg` frames sent, resends included.
    pub sent: AtomicU64,
    /// Messages acked and removed from the queue.
    pub acked: AtomicU64,
    /// Messages the receiver rejected (moved to the local reject queue).
    pub rejected: AtomicU64,
    /// Resends of a message already sent once.
    pub retried: AtomicU64,
    /// From the first send of a message to its ack (before its removal from the queue).
    pub ack_latency: Histogram,
}

impl SenderStats {
    pub(super) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Reads a counter.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    /// The counters now, with `elapsed` as the run's wall time.
    pub fn summary(&self, elapsed: Duration) -> Summary {
        Summary {
            sent: Self::get(&self.sent),
            acked: Self::get(&self.acked),
            rejected: Self::get(&self.rejected),
            retried: Self::get(&self.retried),
            elapsed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_summary_is_a_snapshot_of_the_counters() {
        let stats = SenderStats::default();
        SenderStats::bump(&stats.sent);
        SenderStats::bump(&stats.sent);
        SenderStats::bump(&stats.retried);
        SenderStats::bump(&stats.acked);
        let s = stats.summary(Duration::from_secs(2));
        assert_eq!((s.sent, s.acked, s.rejected, s.retried), (2, 1, 0, 1));
        assert_eq!(
            s.to_string(),
            "sent 2, acked 1, rejected 0, retried 1 in 2.00 s (0.5 msg/s)"
        );
    }
}
