//! The receiver's live counters: what it took, stored, rejected (and why), and how long opening
//! and storing took.
//!
//! Guarantees:
//! - Everything is atomics: readable from another task (the metrics endpoint) while the
//!   receiver runs, never blocking it.
//! - Every rejection goes through [`Stats::reject`], which bumps the total and exactly one
//!   reason, so the per-reason counters always add up to [`Stats::rejected`] (as of any moment
//!   between two rejections).
//! - The latency histograms are [`Histogram`]s (`ops::histogram`, shared with the sender): fixed
//!   buckets, cumulative snapshots whose count equals the observations made.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::crypto::CryptoError;
pub use crate::ops::histogram::{Histogram, HistogramSnapshot};

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
}
