//! The receiver's durable record of acked messages, used to store a resent message only once.
//!
//! A sender that misses an ack sends the same message again, so the receiver remembers every
//! `(signer DN, MD5)` it has stored and acked, with the sender's message id. An entry is
//! forgotten when the sender confirms it got the ack (`ssm-reack`) or when it is older than a
//! configured age.
//!
//! A forgotten entry leaves a tombstone `(signer, MD5, message id)` for [`TOMBSTONE_AGE`]: a copy
//! of that very message that the broker accepted before a connection cut can reach us after the
//! sender's next message confirmed the first one, and must not be stored again. A sender that
//! queues the same content again sends it under a new message id, so that one is stored, as the
//! protocol wants.
//!
//! Replays: `ssm-msg-id` and `ssm-reack` are not covered by the signature, so a copy of a stored
//! message re-sent by anyone with a fresh id and a `ssm-reack` of its own MD5 would pass the
//! checks above. The record therefore also keeps the [`SealId`]s of every stored message (a
//! digest of what its sender sealed, see [`seal_ids`]) for the same maximum age as the entries,
//! and is never cleared by `ssm-reack`: an exact replay of a stored message is a duplicate,
//! whatever headers it carries. A genuine resend is sealed again (a new content key), so it
//! has new seal ids and goes through the `(signer, MD5)` checks as before.
//!
//! The record is an append-only text file, one event per line, made durable (fsync) before the
//! acks it covers are sent:
//!
//! ```text
//! + <unix seconds> <md5> <reply-to> <message id> <signer DN>
//! - <unix seconds> <md5> <message id> <signer DN>
//! = <unix seconds> <seal id, 32 hex digits>
//! @ <name of the last incoming element these entries cover>
//! ```
//!
//! Forgetting can be buffered ([`AckedLog::forget_buffered`]) so that a confirmation and the
//! entries of the next stored batch share one fsync; the buffered lines always reach the file
//! before any later line, so the file's order is the order of events.
//!
//! It is compacted (rewritten to a temporary file, fsynced and renamed over the old one) when it
//! is opened and when it has grown to several times its live size. Lines that cannot be parsed
//! (a torn last line after a crash) are skipped. A message that was stored but whose entry was
//! not yet durable when the receiver died is found again at start-up: the receiver looks at the
//! incoming elements newer than [`AckedLog::last_element`] and [`AckedLog::remember`]s them.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How long a confirmed message's tombstone is kept. Late copies come from messages in flight
/// at a connection cut, so they arrive within seconds; an hour leaves a wide margin.
pub const TOMBSTONE_AGE: Duration = Duration::from_secs(3600);

/// One sealing of a message: 128 bits of the SHA-256 of a content-encryption key as encrypted
/// for one recipient (see [`seal_ids`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SealId(pub u128);

impl SealId {
    fn of(bytes: &[u8]) -> SealId {
        let digest = openssl::sha::sha256(bytes);
        let mut first = [0u8; 16];
        first.copy_from_slice(&digest[..16]);
        SealId(u128::from_be_bytes(first))
    }

    fn parse(s: &str) -> Option<SealId> {
        (s.len() == 32)
            .then(|| u128::from_str_radix(s, 16).ok())
            .flatten()
            .map(SealId)
    }
}

impl std::fmt::Display for SealId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

/// The seal ids of a sealed (S/MIME enveloped) message body: one per recipient, from the
/// content-encryption key as encrypted to it.
///
/// Why the encrypted key and not the body's bytes: the MIME headers, the base64 wrapping and
/// the DER encoding of the envelope can all be changed without changing what decrypts, and the
/// CBC-encrypted content can be changed in blocks that only garble the signed message's
/// preamble; the encrypted key cannot be changed without breaking decryption (RSA, leading
/// zero bytes aside, which are dropped here). Every sealing picks a new random key, so two
/// sealings of the same content never share an id. A body that cannot be parsed that far
/// (never the case for a message that opened) is identified by the digest of its bytes.
pub fn seal_ids(body: &[u8]) -> Vec<SealId> {
    // Read as opening read it: the common form at once (OpenSSL's line-by-line reader cost a
    // sixth of an RSA decryption here, per message), the same DER either way.
    let ids = crate::crypto::envelope_der(body)
        .as_deref()
        .and_then(crate::crypto::der::encrypted_keys)
        .map(|keys| {
            keys.into_iter()
                .map(|k| {
                    let start = k.iter().position(|&b| b != 0).unwrap_or(k.len());
                    SealId::of(&k[start..])
                })
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    if ids.is_empty() {
        vec![SealId::of(body)]
    } else {
        ids
    }
}

/// Who sent a message and what it was: the duplicate-detection key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AckKey {
    /// The signer's subject DN.
    pub signer: String,
    /// MD5 of the message content, 32 lowercase hex digits.
    pub md5: String,
}

/// One stored and acked message, as [`AckedLog::record`] takes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acked {
    /// Signer and MD5.
    pub key: AckKey,
    /// The reply queue the ack went to (so that an unsigned `ping` can only clear its own).
    pub reply_to: String,
    /// The sender's `ssm-msg-id`.
    pub id: String,
    /// The seal ids of the body it came in ([`seal_ids`]).
    pub seals: Vec<SealId>,
}

#[derive(Debug, Clone)]
struct Entry {
    at: u64,
    reply_to: String,
    id: String,
}

/// The durable set of acked messages.
#[derive(Debug)]
pub struct AckedLog {
    path: PathBuf,
    file: File,
    entries: HashMap<AckKey, Entry>,
    /// Confirmed messages: `(key, message id)` → when they were confirmed.
    tombstones: HashMap<(AckKey, String), u64>,
    /// Seal ids of stored messages → when they were stored.
    seals: HashMap<SealId, u64>,
    lines: usize,
    max_age: Duration,
    last_element: Option<String>,
    /// `-` lines of [`AckedLog::forget_buffered`], written with the next record or flush.
    pending: String,
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Keeps DNs and reply-to names on one line: they are ASCII in practice, but a hostile value
/// must not be able to forge a second line.
fn clean(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

impl AckedLog {
    /// Opens (creating if needed) the record at `path`, drops entries older than `max_age`, and
    /// compacts the file.
    pub fn open(path: &Path, max_age: Duration) -> std::io::Result<AckedLog> {
        let file = open_append(path)?;
        let mut log = AckedLog {
            path: path.to_path_buf(),
            file,
            entries: HashMap::new(),
            tombstones: HashMap::new(),
            seals: HashMap::new(),
            lines: 0,
            max_age,
            last_element: None,
            pending: String::new(),
        };
        for line in BufReader::new(File::open(path)?).lines() {
            log.apply_line(&line?);
        }
        log.expire();
        log.compact()?;
        Ok(log)
    }

    /// Whether this message was stored and acked before (and not yet confirmed by the sender).
    pub fn contains(&self, key: &AckKey) -> bool {
        self.entries.contains_key(key)
    }

    /// Whether this is a late copy of a message the sender already confirmed (same signer,
    /// content and message id, within [`TOMBSTONE_AGE`]).
    pub fn is_late_copy(&self, key: &AckKey, id: &str) -> bool {
        self.tombstones
            .contains_key(&(key.clone(), clean_token(id)))
    }

    /// Whether a message sealed as `seal` was stored (within the maximum age): a replay.
    pub fn has_seal(&self, seal: SealId) -> bool {
        self.seals.contains_key(&seal)
    }

    /// Number of live entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no live entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The newest incoming element that the durable entries cover.
    pub fn last_element(&self) -> Option<&str> {
        self.last_element.as_deref()
    }

    /// Records stored messages, and the name of the newest element they were stored as;
    /// durable when it returns.
    pub fn record(&mut self, items: &[Acked], last_element: Option<&str>) -> std::io::Result<()> {
        if items.is_empty() {
            return Ok(());
        }
        let at = now_secs();
        let mut text = std::mem::take(&mut self.pending);
        for item in items {
            let entry = Entry {
                at,
                reply_to: clean_token(&item.reply_to),
                id: clean_token(&item.id),
            };
            text.push_str(&entry_line(&item.key, &entry));
            self.entries.insert(item.key.clone(), entry);
            for seal in &item.seals {
                text.push_str(&seal_line(*seal, at));
                self.seals.insert(*seal, at);
            }
        }
        if let Some(name) = last_element {
            text.push_str(&format!("@ {}\n", clean_token(name)));
            self.last_element = Some(clean_token(name));
        }
        self.append(&text)
    }

    /// Adds an entry found in the incoming queue at start-up, if it is not known yet.
    pub fn remember(&mut self, key: AckKey, id: &str) {
        self.entries.entry(key).or_insert(Entry {
            at: now_secs(),
            reply_to: clean_token(""),
            id: clean_token(id),
        });
    }

    /// Forgets a message the sender confirmed (`ssm-reack` on a signed message), leaving a
    /// tombstone for late copies.
    pub fn forget(&mut self, key: &AckKey) -> std::io::Result<()> {
        self.forget_buffered(key);
        self.flush()
    }

    /// Forgets a confirmed message like [`AckedLog::forget`], but the line is only written (and
    /// made durable) by the next [`AckedLog::record`] or [`AckedLog::flush`]: one fsync for
    /// both. Until then a crash may bring the entry back, which is what an unconfirmed entry
    /// looks like anyway.
    pub fn forget_buffered(&mut self, key: &AckKey) {
        let Some(entry) = self.entries.remove(key) else {
            return;
        };
        let at = now_secs();
        self.pending.push_str(&tombstone_line(key, &entry.id, at));
        self.tombstones.insert((key.clone(), entry.id), at);
    }

    /// Writes and syncs what [`AckedLog::forget_buffered`] left pending, if anything.
    pub fn flush(&mut self) -> std::io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let text = std::mem::take(&mut self.pending);
        self.append(&text)
    }

    /// Forgets entries with this MD5 made for this reply queue (`ssm-reack` on an unsigned
    /// `ping` or `certreq`).
    pub fn forget_for_reply_to(&mut self, md5: &str, reply_to: &str) -> std::io::Result<()> {
        let reply_to = clean_token(reply_to);
        let keys: Vec<AckKey> = self
            .entries
            .iter()
            .filter(|(k, e)| k.md5 == md5 && e.reply_to == reply_to)
            .map(|(k, _)| k.clone())
            .collect();
        for key in keys {
            self.forget(&key)?;
        }
        Ok(())
    }

    /// Drops entries older than the maximum age and old tombstones (in memory; the file follows
    /// at compaction).
    pub fn expire(&mut self) {
        let now = now_secs();
        let limit = now.saturating_sub(self.max_age.as_secs());
        self.entries.retain(|_, e| e.at >= limit);
        self.seals.retain(|_, at| *at >= limit);
        let limit = now.saturating_sub(TOMBSTONE_AGE.as_secs());
        self.tombstones.retain(|_, at| *at >= limit);
    }

    fn append(&mut self, text: &str) -> std::io::Result<()> {
        self.file.write_all(text.as_bytes())?;
        self.file.sync_data()?;
        self.lines += text.lines().count();
        if self.lines > 4 * self.live() + 1024 {
            self.expire();
            self.compact()?;
        }
        Ok(())
    }

    /// Lines a compacted file holds.
    fn live(&self) -> usize {
        self.entries.len() + self.tombstones.len() + self.seals.len()
    }

    /// Rewrites the file with only the live entries and tombstones, atomically (pending lines
    /// are already reflected in memory, so they are written too).
    fn compact(&mut self) -> std::io::Result<()> {
        self.pending.clear();
        let tmp = self.path.with_extension("tmp");
        let mut text = String::new();
        for (key, e) in &self.entries {
            text.push_str(&entry_line(key, e));
        }
        for ((key, id), at) in &self.tombstones {
            text.push_str(&tombstone_line(key, id, *at));
        }
        for (seal, at) in &self.seals {
            text.push_str(&seal_line(*seal, *at));
        }
        if let Some(name) = &self.last_element {
            text.push_str(&format!("@ {name}\n"));
        }
        {
            let mut f = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(text.as_bytes())?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, &self.path)?;
        if let Some(dir) = self.path.parent() {
            File::open(dir)?.sync_all()?;
        }
        self.file = open_append(&self.path)?;
        self.lines = self.live();
        Ok(())
    }

    fn apply_line(&mut self, line: &str) {
        if let Some(name) = line.strip_prefix("@ ") {
            self.last_element = Some(name.to_string());
            return;
        }
        if let Some(rest) = line.strip_prefix("= ") {
            if let Some((Ok(at), Some(seal))) = rest
                .split_once(' ')
                .map(|(at, seal)| (at.parse(), SealId::parse(seal)))
            {
                self.seals.insert(seal, at);
            }
            return;
        }
        if let Some(rest) = line.strip_prefix("+ ") {
            let mut p = rest.splitn(5, ' ');
            let (Some(at), Some(md5), Some(reply_to), Some(id), Some(signer)) =
                (p.next(), p.next(), p.next(), p.next(), p.next())
            else {
                return;
            };
            let Ok(at) = at.parse() else { return };
            self.entries.insert(
                AckKey {
                    signer: signer.to_string(),
                    md5: md5.to_string(),
                },
                Entry {
                    at,
                    reply_to: reply_to.to_string(),
                    id: id.to_string(),
                },
            );
        } else if let Some(rest) = line.strip_prefix("- ") {
            let mut p = rest.splitn(4, ' ');
            let (Some(at), Some(md5), Some(id), Some(signer)) =
                (p.next(), p.next(), p.next(), p.next())
            else {
                return;
            };
            let Ok(at) = at.parse() else { return };
            let key = AckKey {
                signer: signer.to_string(),
                md5: md5.to_string(),
            };
            self.entries.remove(&key);
            self.tombstones.insert((key, id.to_string()), at);
        }
    }
}

fn entry_line(key: &AckKey, e: &Entry) -> String {
    format!(
        "+ {} {} {} {} {}\n",
        e.at,
        key.md5,
        e.reply_to,
        e.id,
        clean(&key.signer)
    )
}

fn tombstone_line(key: &AckKey, id: &str, at: u64) -> String {
    format!("- {at} {} {id} {}\n", key.md5, clean(&key.signer))
}

fn seal_line(seal: SealId, at: u64) -> String {
    format!("= {at} {seal}\n")
}

fn open_append(path: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(path)
}

/// A value as one token: spaces would break the line format.
fn clean_token(s: &str) -> String {
    let s = clean(s).replace(' ', "_");
    if s.is_empty() {
        "-".to_string()
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(dn: &str, md5: &str) -> AckKey {
        AckKey {
            signer: dn.to_string(),
            md5: md5.to_string(),
        }
    }

    fn acked(dn: &str, md5: &str, reply_to: &str, id: &str) -> Acked {
        Acked {
            key: key(dn, md5),
            reply_to: reply_to.to_string(),
            id: id.to_string(),
            seals: Vec::new(),
        }
    }

    const A: &str = "0123456789abcdef0123456789abcdef";
    const B: &str = "fedcba9876543210fedcba9876543210";

    #[test]
    fn survives_reopen_and_forgets() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("acked.log");
        let day = Duration::from_secs(86400);
        {
            let mut log = AckedLog::open(&path, day).unwrap();
            log.record(
                &[
                    acked("/C=UK/CN=a b", A, "/temp-queue/x", "id1"),
                    acked("/CN=b", B, "/temp-queue/y", "id2"),
                ],
                Some("00000000/abc"),
            )
            .unwrap();
            log.forget(&key("/CN=b", B)).unwrap();
        }
        let mut log = AckedLog::open(&path, day).unwrap();
        assert_eq!(log.last_element(), Some("00000000/abc"));
        assert!(log.contains(&key("/C=UK/CN=a b", A)));
        assert!(!log.contains(&key("/CN=b", B)));
        assert!(!log.contains(&key("/CN=other", A)));
        log.forget_for_reply_to(A, "/temp-queue/other").unwrap();
        assert!(log.contains(&key("/C=UK/CN=a b", A)));
        log.forget_for_reply_to(A, "/temp-queue/x").unwrap();
        assert!(!log.contains(&key("/C=UK/CN=a b", A)));
        drop(log);
        assert!(AckedLog::open(&path, day).unwrap().is_empty());
    }

    #[test]
    fn a_confirmed_message_leaves_a_durable_tombstone_for_its_id_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("acked.log");
        let day = Duration::from_secs(86400);
        {
            let mut log = AckedLog::open(&path, day).unwrap();
            log.record(&[acked("/CN=a", A, "/q", "0000/elt1")], None)
                .unwrap();
            assert!(!log.is_late_copy(&key("/CN=a", A), "0000/elt1"));
            log.forget(&key("/CN=a", A)).unwrap();
            assert!(log.is_late_copy(&key("/CN=a", A), "0000/elt1"));
        }
        let log = AckedLog::open(&path, day).unwrap();
        assert!(log.is_late_copy(&key("/CN=a", A), "0000/elt1"));
        // The same content queued again is a new message.
        assert!(!log.is_late_copy(&key("/CN=a", A), "0000/elt2"));
        assert!(!log.is_late_copy(&key("/CN=b", A), "0000/elt1"));
        assert!(!log.contains(&key("/CN=a", A)));
    }

    #[test]
    fn buffered_forgets_are_written_with_the_next_record_or_flush() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("acked");
        let day = Duration::from_secs(86400);
        let lines = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
        {
            let mut log = AckedLog::open(&path, day).unwrap();
            log.record(
                &[
                    acked("/CN=a", A, "/q/a", "ia"),
                    acked("/CN=b", B, "/q/b", "ib"),
                ],
                Some("00000000/a"),
            )
            .unwrap();
            log.forget_buffered(&key("/CN=a", A));
            assert!(!log.contains(&key("/CN=a", A)));
            // Not written yet.
            assert!(!lines(&path).contains("- "));
            // Forgotten, then stored again (new id) in the same batch: in that order on disk.
            log.record(&[acked("/CN=a", A, "/q/a", "ia2")], None)
                .unwrap();
            log.forget_buffered(&key("/CN=b", B));
            log.flush().unwrap();
        }
        let log = AckedLog::open(&path, day).unwrap();
        assert!(log.contains(&key("/CN=a", A)));
        assert!(!log.contains(&key("/CN=b", B)));
        assert!(log.is_late_copy(&key("/CN=b", B), "ib"));
    }

    #[test]
    fn torn_lines_and_old_entries_are_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("acked.log");
        let now = now_secs();
        std::fs::write(
            &path,
            format!(
                "+ {now} {A} /q i1 /CN=a\n+ 1 {B} /q i2 /CN=old\n- 1 {B} i3 /CN=oldtomb\n+ {now} {B} /q"
            ),
        )
        .unwrap();
        let log = AckedLog::open(&path, Duration::from_secs(3600)).unwrap();
        assert!(log.contains(&key("/CN=a", A)));
        assert!(!log.contains(&key("/CN=old", B)));
        assert!(!log.is_late_copy(&key("/CN=oldtomb", B), "i3"));
        assert_eq!(log.len(), 1);
    }

    #[test]
    fn control_characters_cannot_forge_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("acked.log");
        let day = Duration::from_secs(86400);
        let evil = format!("/CN=x\n- {A} /CN=victim");
        {
            let mut log = AckedLog::open(&path, day).unwrap();
            log.record(&[acked("/CN=victim", A, "/q", "i")], None)
                .unwrap();
            log.record(&[acked(&evil, B, "/q\nx", "i\n- 1 x")], None)
                .unwrap();
        }
        let log = AckedLog::open(&path, day).unwrap();
        assert!(log.contains(&key("/CN=victim", A)));
    }

    #[test]
    fn seal_ids_survive_re_encoding_and_differ_between_sealings() {
        use crate::crypto::{seal, Cipher, Identity};
        let dir = tempfile::tempdir().unwrap();
        let pki = crate::harness::pki::Pki::generate(&dir.path().join("pki")).unwrap();
        let signer = Identity::load(&pki.client.cert, &pki.client.key).unwrap();
        let server = crate::crypto::load_cert(&pki.server.cert).unwrap();
        let msg = b"APEL-summary-job-message: v0.2\n";
        let body = seal(msg, &signer, &server, Cipher::Aes128).unwrap();
        let ids = seal_ids(&body);
        assert_eq!(ids.len(), 1, "one recipient");
        assert_ne!(ids, vec![SealId::of(&body)], "not the digest of the bytes");

        // The same envelope with other MIME line ends and base64 line lengths.
        let text = String::from_utf8(body.clone()).unwrap();
        let (head, b64) = text.split_once("\n\n").unwrap();
        let joined: String = b64.split_whitespace().collect();
        let wrapped: Vec<&str> = joined
            .as_bytes()
            .chunks(40)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect();
        let rewritten = format!(
            "{}\r\n\r\n{}\r\n",
            head.replace('\n', "\r\n"),
            wrapped.join("\r\n")
        );
        assert_ne!(rewritten.as_bytes(), &body[..]);
        assert_eq!(seal_ids(rewritten.as_bytes()), ids);
        // The ids are durable (the acked record): the same as when OpenSSL's reader read them.
        for form in [&body[..], rewritten.as_bytes()] {
            let theirs = openssl::pkcs7::Pkcs7::from_smime(form).unwrap().0;
            assert_eq!(
                crate::crypto::envelope_der(form),
                Some(theirs.to_der().unwrap())
            );
        }

        // Sealed again (a genuine resend): a new content key, a new id.
        let again = seal(msg, &signer, &server, Cipher::Aes128).unwrap();
        assert_ne!(seal_ids(&again), ids);
        // What is not an envelope is known by its bytes.
        assert_eq!(seal_ids(b"garbage"), vec![SealId::of(b"garbage")]);
        assert_eq!(SealId::parse(&ids[0].to_string()), Some(ids[0]));
    }

    #[test]
    fn seal_ids_are_durable_and_age_with_the_entries() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("acked.log");
        let day = Duration::from_secs(86400);
        {
            let mut log = AckedLog::open(&path, day).unwrap();
            let mut a = acked("/CN=a", A, "/q", "i");
            a.seals = vec![SealId(1), SealId(2)];
            log.record(&[a], None).unwrap();
            // Confirming the message does not forget how it was sealed.
            log.forget(&key("/CN=a", A)).unwrap();
            assert!(log.has_seal(SealId(2)));
        }
        let now = now_secs();
        let mut text = std::fs::read_to_string(&path).unwrap();
        text.push_str(&format!("= 1 {}\n= {now} zz\n", SealId(3)));
        std::fs::write(&path, text).unwrap();
        let log = AckedLog::open(&path, day).unwrap();
        assert!(log.has_seal(SealId(1)) && log.has_seal(SealId(2)));
        assert!(!log.has_seal(SealId(3)), "older than the maximum age");
        assert!(!log.contains(&key("/CN=a", A)));
    }
}
