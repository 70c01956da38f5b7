//! The one message generator and the one exactly-once check of every suite.
//!
//! [`job_record`] makes APEL individual-job records: deterministic ones (same arguments, same
//! bytes, same MD5: what the duplicate tests need) or unique ones of about 600 bytes (a random
//! nonce: what the fault tests need, across runs sharing a real broker). [`Tally`] compares what
//! was sent with what was stored, by any key (the body, or signer and MD5): a key sent and not
//! stored is lost, a key stored twice is a duplicate, a key stored and never sent is unknown;
//! exactly once means none of the three.

use std::collections::BTreeMap;
use std::fmt::Debug;

/// One APEL individual-job record for `site` and job `job`, as a message body. Deterministic
/// unless `unique`, which adds a random `Nonce:` line and pads it to about 600 bytes (the size
/// of a real record).
pub fn job_record(site: &str, job: usize, unique: bool) -> Vec<u8> {
    if !unique {
        return format!("APEL-individual-job-message: v0.3\nSite: {site}\nLocalJobId: {job}\n%%\n")
            .into_bytes();
    }
    let mut s = format!(
        "APEL-individual-job-message: v0.3\nSite: {site}\nLocalJobId: {job}\nNonce: {}\n",
        uuid::Uuid::new_v4()
    );
    while s.len() < 600 {
        s.push_str("WallDuration: 3600\nCpuDuration: 3000\n");
    }
    s.into_bytes()
}

/// What an exactly-once comparison found.
#[derive(Debug)]
pub struct Tally<K> {
    /// How many distinct keys were sent.
    pub sent: usize,
    /// Sent, never stored.
    pub lost: Vec<K>,
    /// Stored more than once, with the number of copies.
    pub twice: Vec<(K, usize)>,
    /// Stored, never sent.
    pub unknown: Vec<K>,
}

impl<K: Ord + Clone + Debug> Tally<K> {
    /// The fault-report line of this tally (`.ci/run` prints these after the tests).
    pub fn line(&self, fault: &str, broker: &str) -> String {
        format!(
            "fault={fault} broker={broker} sent={} stored={} duplicated={} lost={} unknown={}",
            self.sent,
            self.stored(),
            self.duplicated(),
            self.lost.len(),
            self.unknown.len()
        )
    }

    /// Compares the keys `sent` (each counted once) with the keys `stored` (each copy counted).
    pub fn of(sent: impl IntoIterator<Item = K>, stored: impl IntoIterator<Item = K>) -> Tally<K> {
        let mut seen: BTreeMap<K, usize> = sent.into_iter().map(|k| (k, 0)).collect();
        let mut unknown = Vec::new();
        for k in stored {
            match seen.get_mut(&k) {
                Some(n) => *n += 1,
                None => unknown.push(k),
            }
        }
        Tally {
            sent: seen.len(),
            lost: seen
                .iter()
                .filter(|(_, &n)| n == 0)
                .map(|(k, _)| k.clone())
                .collect(),
            twice: seen
                .iter()
                .filter(|(_, &n)| n > 1)
                .map(|(k, &n)| (k.clone(), n))
                .collect(),
            unknown,
        }
    }

    /// Whether every key sent was stored exactly once and nothing else was.
    pub fn is_exact(&self) -> bool {
        self.lost.is_empty() && self.twice.is_empty() && self.unknown.is_empty()
    }

    /// Keys sent and stored (once or more).
    pub fn stored(&self) -> usize {
        self.sent - self.lost.len()
    }

    /// Extra copies stored of keys sent.
    pub fn duplicated(&self) -> usize {
        self.twice.iter().map(|(_, n)| n - 1).sum()
    }
}

/// Asserts that `stored` holds each message of `sent` exactly once and nothing else; `what`
/// (e.g. `[broker]`) opens the failure message. The messages sent must be distinct.
pub fn assert_exactly_once(
    what: &str,
    sent: &[Vec<u8>],
    stored: impl IntoIterator<Item = Vec<u8>>,
) {
    let t = Tally::of(sent.iter().cloned(), stored);
    assert_eq!(
        t.sent,
        sent.len(),
        "{what} the messages sent are not distinct"
    );
    let text = |v: &[Vec<u8>]| -> Vec<String> {
        v.iter()
            .map(|m| String::from_utf8_lossy(m).into_owned())
            .collect()
    };
    assert!(
        t.is_exact(),
        "{what} not exactly once: {} lost, {} stored more than once, {} never sent (of {})\nlost: {:?}\ntwice: {:?}\nunknown: {:?}",
        t.lost.len(),
        t.twice.len(),
        t.unknown.len(),
        t.sent,
        text(&t.lost),
        t.twice.iter().map(|(m, n)| (String::from_utf8_lossy(m).into_owned(), *n)).collect::<Vec<_>>(),
        text(&t.unknown),
    );
}
