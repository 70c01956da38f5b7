//! Duplicate detection, as a trait in front of the durable record of what was acked.
//!
//! The committer asks one [`Dedupe`] whether a message was stored already and tells it what it
//! stored; [`AckedLog`](super::AckedLog) (one file beside the store, one receiver) is today's
//! implementation. A record shared by receivers on several machines is a second one.
//!
//! Guarantees every implementation keeps:
//! - [`Dedupe::record`] returns `Ok` only once what it recorded is durable: a message is acked
//!   only after that, so a restart never forgets an acked message within the record's age.
//! - A key stays known until the sender confirms it (`forget_for_reply_to`), its record ages
//!   out, or it is forgotten because its store failed.

use md5::{Digest, Md5};

use super::acked::{AckKey, Acked, AckedLog, SealId};
use crate::protocol::Version;

/// The key a message is stored under.
///
/// Version 1: the signer and the MD5 of the content, which is what the sender's ack and its
/// `ssm-reack` name. Version 2 has no ack and no reack: the signer and the MD5 of the
/// `empa-id`, a NUL and the content, so that a redelivery or a resend of one message is one
/// message, and two messages that happen to hold the same records under different ids are
/// two.
pub(crate) fn key_for(version: Version, signer: &str, id: &str, content: &[u8]) -> AckKey {
    let md5 = match version {
        Version::V1 => crate::crypto::message_id(content),
        Version::V2 => {
            let digest = Md5::new()
                .chain_update(id.as_bytes())
                .chain_update([0u8])
                .chain_update(content)
                .finalize();
            digest.iter().map(|b| format!("{b:02x}")).collect()
        }
    };
    AckKey {
        signer: signer.to_string(),
        md5,
    }
}

/// What the committer needs to store each message once.
pub(crate) trait Dedupe: Send {
    /// Whether `key` was stored and is not yet confirmed.
    fn contains(&self, key: &AckKey) -> bool;
    /// Whether `key`, sent as `id`, was confirmed recently: a late copy of a stored message.
    fn is_late_copy(&self, key: &AckKey, id: &str) -> bool;
    /// Whether a message sealed as `seal` was stored recently.
    fn has_seal(&self, seal: SealId) -> bool;
    /// Messages known.
    fn len(&self) -> usize;
    /// The incoming element last recorded (where recovery starts after a crash).
    fn last_element(&self) -> Option<&str>;
    /// Records stored messages durably, with the last incoming element.
    fn record(&mut self, items: &[Acked], last_element: Option<&str>) -> std::io::Result<()>;
    /// Knows `key`, stored as incoming element `id`, without writing (recovery after a crash
    /// rebuilds what the file lost).
    fn remember(&mut self, key: AckKey, id: &str);
    /// Forgets `key` with the next write (its store failed).
    fn forget_buffered(&mut self, key: &AckKey);
    /// Makes buffered changes durable.
    fn flush(&mut self) -> std::io::Result<()>;
    /// The sender behind `reply_to` confirmed `md5`: it is not needed any more.
    fn forget_for_reply_to(&mut self, md5: &str, reply_to: &str) -> std::io::Result<()>;
}

impl Dedupe for AckedLog {
    fn contains(&self, key: &AckKey) -> bool {
        AckedLog::contains(self, key)
    }
    fn is_late_copy(&self, key: &AckKey, id: &str) -> bool {
        AckedLog::is_late_copy(self, key, id)
    }
    fn has_seal(&self, seal: SealId) -> bool {
        AckedLog::has_seal(self, seal)
    }
    fn len(&self) -> usize {
        AckedLog::len(self)
    }
    fn last_element(&self) -> Option<&str> {
        AckedLog::last_element(self)
    }
    fn record(&mut self, items: &[Acked], last_element: Option<&str>) -> std::io::Result<()> {
        AckedLog::record(self, items, last_element)
    }
    fn remember(&mut self, key: AckKey, id: &str) {
        AckedLog::remember(self, key, id)
    }
    fn forget_buffered(&mut self, key: &AckKey) {
        AckedLog::forget_buffered(self, key)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        AckedLog::flush(self)
    }
    fn forget_for_reply_to(&mut self, md5: &str, reply_to: &str) -> std::io::Result<()> {
        AckedLog::forget_for_reply_to(self, md5, reply_to)
    }
}
