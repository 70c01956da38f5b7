//! The receiver's live counters: what it took, stored, rejected (and why), and how long opening
//! and storing took.
//!
//! Guarantees:
//! - Everything is atomics: readable from another task (the metrics endpoint) while the
//!   receiver runs, never blocking it.
//! - Every rejection goes through [`Stats::reject`], which bumps the total and exactly one
//!   reason, so the per-reason counters always add up to [`Stats::rejected`] (as of any moment
//!   between two rejections).
//! - A [`Histogram`] has fixed buckets ([`Histogram::BOUNDS_MS`]); its snapshot is cumulative,
//!   as Prometheus wants, and its count equals the observations made.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::crypto::CryptoError;

/// Why a message was rejected: a small fixed set, so that it can be a metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectReason {
    /// The frame is not a well-formed SSM message (bad or missing SSM headers).
    Malformed,
    /// The envelope could not be decrypted, or the message is not encrypted.
    Undecryptable,
    /// The signature does not match the content, or the content is not signed.
    BadSignature,
    /// The signer's certificate is not trusted: unknown CA, expired, not yet valid, revoked.
    UntrustedSigner,
    /// The signer is trusted but not in the allowed-DN list.
    DnNotAllowed,
    /// The signed content is not base64 of zlib data, or is too large once decompressed.
    BadPayload,
    /// Anything else (an internal error while opening).
    Other,
}

impl RejectReason {
    /// Every reason, in the order they are exported.
    pub const ALL: [RejectReason; 7] = [
        RejectReason::Malformed,
        RejectReason::Undecryptable,
        RejectReason::BadSignature,
        RejectReason::UntrustedSigner,
        RejectReason::DnNotAllowed,
        RejectReason::BadPayload,
        RejectReason::Other,
    ];

    /// The metric label value.
    pub fn label(self) -> &'static str {
        match self {
            RejectReason::Malformed => "malformed",
            RejectReason::Undecryptable => "undecryptable",
            RejectReason::BadSignature => "bad_signature",
            RejectReason::UntrustedSigner => "untrusted_signer",
            RejectReason::DnNotAllowed => "dn_not_allowed",
            RejectReason::BadPayload => "bad_payload",
            RejectReason::Other => "other",
        }
    }

    /// The reason an opening failure stands for.
    pub fn of(err: &CryptoError) -> RejectReason {
        match err {
            CryptoError::Decrypt { .. } | CryptoError::NotEncrypted { .. } => {
                RejectReason::Undecryptable
            }
            CryptoError::BadSignature { .. }
            | CryptoError::NotSigned { .. }
            | CryptoError::WeakDigest { .. } => RejectReason::BadSignature,
            // Never a rejection (the receiver does not ack it); listed for completeness.
            CryptoError::TrustUnavailable { .. }
            | CryptoError::UntrustedSigner { .. }
            | CryptoError::Expired { .. }
            | CryptoError::NotYetValid { .. }
            | CryptoError::Revoked { .. } => RejectReason::UntrustedSigner,
            CryptoError::NotBase64 { .. }
            | CryptoError::NotZlib { .. }
            | CryptoError::TooLarge { .. } => RejectReason::BadPayload,
            _ => RejectReason::Other,
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Number of finite histogram buckets.
const BOUNDS: usize = 11;

/// A latency histogram with fixed buckets, updated with atomics.
#[derive(Debug, Default)]
pub struct Histogram {
    /// Observations per bucket (not cumulative); the last one is `+Inf`.
    buckets: [AtomicU64; BOUNDS + 1],
    sum_micros: AtomicU64,
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

impl Histogram {
    /// Upper bounds of the buckets, milliseconds (a last `+Inf` bucket catches the rest).
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
    }

    /// Reads the histogram. Cumulative counts come from the buckets, and the count is the
    /// last of them, so a scrape racing an observation is still self-consistent.
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
}

/// Counters of what the receiver did; shared with whoever wants to watch it run.
#[derive(Debug, Default)]
pub struct Stats {
    /// `msg` messages taken off the broker.
    pub received: AtomicU64,
    /// Messages stored in the incoming queue (and acked).
    pub stored: AtomicU64,
    /// Resent messages acked again without storing.
    pub duplicates: AtomicU64,
    /// Messages answered `REJECTED` (the sum of [`Stats::rejected_for`] over every reason).
    pub rejected: AtomicU64,
    /// Messages neither stored nor rejected because storage failed (no ack sent).
    pub store_failures: AtomicU64,
    /// Messages neither stored nor rejected because our own trust store could not judge the
    /// signer (its CRL is expired or not yet valid): no ack sent.
    pub trust_unavailable: AtomicU64,
    /// `certreq` messages answered.
    pub certreqs: AtomicU64,
    /// Reconnections to the broker.
    pub reconnects: AtomicU64,
    /// Frames from the broker skipped for exceeding the frame limit (the connection is kept).
    pub oversized: AtomicU64,
    /// Rejections per [`RejectReason`], indexed in [`RejectReason::ALL`] order.
    rejected_by: [AtomicU64; RejectReason::ALL.len()],
    /// Time to decrypt and verify a message (successful or not).
    pub open_latency: Histogram,
    /// Time from handing a verified message to the committer to its outcome (stored,
    /// duplicate or failed): the durable-store part of the latency.
    pub store_latency: Histogram,
}

impl Stats {
    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Reads a counter.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    /// Counts one rejection: the total and its reason.
    pub fn reject(&self, reason: RejectReason) {
        Stats::bump(&self.rejected_by[reason.index()]);
        Stats::bump(&self.rejected);
    }

    /// Rejections for one reason.
    pub fn rejected_for(&self, reason: RejectReason) -> u64 {
        Stats::get(&self.rejected_by[reason.index()])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_indexed_in_export_order() {
        for (i, r) in RejectReason::ALL.iter().enumerate() {
            assert_eq!(r.index(), i, "{r:?}");
        }
        let labels: std::collections::HashSet<_> =
            RejectReason::ALL.iter().map(|r| r.label()).collect();
        assert_eq!(labels.len(), RejectReason::ALL.len());
    }

    #[test]
    fn crypto_errors_map_to_their_reasons() {
        let s = || String::from("x");
        let cases = [
            (CryptoError::Decrypt { reason: s() }, "undecryptable"),
            (CryptoError::NotEncrypted { reason: s() }, "undecryptable"),
            (CryptoError::BadSignature { reason: s() }, "bad_signature"),
            (CryptoError::NotSigned { reason: s() }, "bad_signature"),
            (
                CryptoError::UntrustedSigner {
                    dn: s(),
                    reason: s(),
                },
                "untrusted_signer",
            ),
            (
                CryptoError::Expired {
                    dn: s(),
                    not_after: s(),
                },
                "untrusted_signer",
            ),
            (
                CryptoError::NotYetValid {
                    dn: s(),
                    not_before: s(),
                },
                "untrusted_signer",
            ),
            (
                CryptoError::Revoked {
                    dn: s(),
                    reason: s(),
                },
                "untrusted_signer",
            ),
            (CryptoError::NotBase64 { reason: s() }, "bad_payload"),
            (CryptoError::NotZlib { reason: s() }, "bad_payload"),
            (CryptoError::TooLarge { max: 1 }, "bad_payload"),
            (
                CryptoError::LoadCert {
                    path: "p".into(),
                    reason: s(),
                },
                "other",
            ),
        ];
        for (err, label) in cases {
            assert_eq!(RejectReason::of(&err).label(), label, "{err}");
        }
    }

    #[test]
    fn rejections_add_up_per_reason() {
        let stats = Stats::default();
        stats.reject(RejectReason::DnNotAllowed);
        stats.reject(RejectReason::DnNotAllowed);
        stats.reject(RejectReason::Malformed);
        assert_eq!(Stats::get(&stats.rejected), 3);
        assert_eq!(stats.rejected_for(RejectReason::DnNotAllowed), 2);
        assert_eq!(stats.rejected_for(RejectReason::Malformed), 1);
        assert_eq!(stats.rejected_for(RejectReason::Other), 0);
        let sum: u64 = RejectReason::ALL
            .iter()
            .map(|r| stats.rejected_for(*r))
            .sum();
        assert_eq!(sum, 3);
    }

    #[test]
    fn histogram_buckets_are_cumulative_with_bounds_inclusive() {
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
}
