//! The receiver's durable record of acked messages, used to store a resent message only once.
//!
//! A sender that misses an ack sends the same message again, so the receiver remembers every
//! `(signer DN, MD5)` it has stored and acked. An entry is forgotten when the sender confirms it
//! got the ack (`ssm-reack`) or when it is older than a configured age.
//!
//! The record is an append-only text file, one event per line, made durable (fsync) before the
//! acks it covers are sent:
//!
//! ```text
//! + <unix seconds> <md5> <reply-to> <signer DN>
//! - <md5> <signer DN>
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

/// Who sent a message and what it was: the duplicate-detection key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AckKey {
    /// The signer's subject DN.
    pub signer: String,
    /// MD5 of the message content, 32 lowercase hex digits.
    pub md5: String,
}

#[derive(Debug, Clone)]
struct Entry {
    at: u64,
    reply_to: String,
}

/// The durable set of acked messages.
#[derive(Debug)]
pub struct AckedLog {
    path: PathBuf,
    file: File,
    entries: HashMap<AckKey, Entry>,
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
        let mut entries = HashMap::new();
        let mut last_element = None;
        match File::open(path) {
            Ok(f) => {
                for line in BufReader::new(f).lines() {
                    let line = line?;
                    if let Some(name) = line.strip_prefix("@ ") {
                        last_element = Some(name.to_string());
                    } else {
                        apply_line(&mut entries, &line);
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let file = open_append(path)?;
        let mut log = AckedLog {
            path: path.to_path_buf(),
            file,
            entries,
            lines: 0,
            max_age,
            last_element,
            pending: String::new(),
        };
        log.expire();
        log.compact()?;
        Ok(log)
    }

    /// Whether this message was stored and acked before (and not yet confirmed by the sender).
    pub fn contains(&self, key: &AckKey) -> bool {
        self.entries.contains_key(key)
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
    /// durable when it returns. `reply_to` is kept so that a `ping` (which is not signed) can
    /// only clear entries made for the same reply queue.
    pub fn record(
        &mut self,
        items: &[(AckKey, String)],
        last_element: Option<&str>,
    ) -> std::io::Result<()> {
        if items.is_empty() {
            return Ok(());
        }
        let at = now_secs();
        let mut text = std::mem::take(&mut self.pending);
        for (key, reply_to) in items {
            text.push_str(&format!(
                "+ {at} {} {} {}\n",
                key.md5,
                clean_token(reply_to),
                clean(&key.signer)
            ));
            self.entries.insert(
                key.clone(),
                Entry {
                    at,
                    reply_to: reply_to.clone(),
                },
            );
        }
        if let Some(name) = last_element {
            text.push_str(&format!("@ {}\n", clean_token(name)));
            self.last_element = Some(clean_token(name));
        }
        self.append(&text)
    }

    /// Adds an entry found in the incoming queue at start-up, if it is not known yet.
    pub fn remember(&mut self, key: AckKey, reply_to: String) {
        self.entries.entry(key).or_insert(Entry {
            at: now_secs(),
            reply_to,
        });
    }

    /// Forgets a message the sender confirmed (`ssm-reack` on a signed message).
    pub fn forget(&mut self, key: &AckKey) -> std::io::Result<()> {
        if self.entries.remove(key).is_none() {
            return Ok(());
        }
        let mut text = std::mem::take(&mut self.pending);
        text.push_str(&format!("- {} {}\n", key.md5, clean(&key.signer)));
        self.append(&text)
    }

    /// Forgets a confirmed message like [`AckedLog::forget`], but the line is only written (and
    /// made durable) by the next [`AckedLog::record`] or [`AckedLog::flush`]: one fsync for
    /// both. Until then a crash may bring the entry back, which is what an unconfirmed entry
    /// looks like anyway.
    pub fn forget_buffered(&mut self, key: &AckKey) {
        if self.entries.remove(key).is_some() {
            self.pending
                .push_str(&format!("- {} {}\n", key.md5, clean(&key.signer)));
        }
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

    /// Drops entries older than the maximum age (in memory; the file follows at compaction).
    pub fn expire(&mut self) {
        let limit = now_secs().saturating_sub(self.max_age.as_secs());
        self.entries.retain(|_, e| e.at >= limit);
    }

    fn append(&mut self, text: &str) -> std::io::Result<()> {
        self.file.write_all(text.as_bytes())?;
        self.file.sync_data()?;
        self.lines += text.lines().count();
        if self.lines > 4 * self.entries.len() + 1024 {
            self.expire();
            self.compact()?;
        }
        Ok(())
    }

    /// Rewrites the file with only the live entries, atomically.
    fn compact(&mut self) -> std::io::Result<()> {
        let tmp = self.path.with_extension("tmp");
        let mut text = String::new();
        for (key, e) in &self.entries {
            text.push_str(&format!(
                "+ {} {} {} {}\n",
                e.at,
                key.md5,
                clean_token(&e.reply_to),
                clean(&key.signer)
            ));
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
        self.lines = self.entries.len();
        Ok(())
    }
}

#[cfg(test)]
impl AckedLog {
    /// Entries a fresh reader of the file would see (without compacting it).
    fn open_readonly_len(path: &Path) -> usize {
        let mut entries = HashMap::new();
        let text = std::fs::read_to_string(path).unwrap_or_default();
        for line in text.lines() {
            apply_line(&mut entries, line);
        }
        entries.len()
    }
}

fn open_append(path: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(path)
}

/// A reply-to name as one token: spaces would break the line format.
fn clean_token(s: &str) -> String {
    let s = clean(s).replace(' ', "_");
    if s.is_empty() {
        "-".to_string()
    } else {
        s
    }
}

fn apply_line(entries: &mut HashMap<AckKey, Entry>, line: &str) {
    let mut parts = line.splitn(5, ' ');
    match parts.next() {
        Some("+") => {
            let (Some(at), Some(md5), Some(reply_to), Some(signer)) =
                (parts.next(), parts.next(), parts.next(), parts.next())
            else {
                return;
            };
            let Ok(at) = at.parse() else { return };
            entries.insert(
                AckKey {
                    signer: signer.to_string(),
                    md5: md5.to_string(),
                },
                Entry {
                    at,
                    reply_to: reply_to.to_string(),
                },
            );
        }
        Some("-") => {
            let mut parts = line[2..].splitn(2, ' ');
            if let (Some(md5), Some(signer)) = (parts.next(), parts.next()) {
                entries.remove(&AckKey {
                    signer: signer.to_string(),
                    md5: md5.to_string(),
                });
            }
        }
        _ => {}
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
                    (key("/C=UK/CN=a b", A), "/temp-queue/x".into()),
                    (key("/CN=b", B), "/temp-queue/y".into()),
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
    fn buffered_forgets_are_written_with_the_next_record_or_flush() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("acked");
        let day = Duration::from_secs(86400);
        {
            let mut log = AckedLog::open(&path, day).unwrap();
            log.record(
                &[
                    (key("/CN=a", A), "/q/a".into()),
                    (key("/CN=b", B), "/q/b".into()),
                ],
                Some("00000000/a"),
            )
            .unwrap();
            log.forget_buffered(&key("/CN=a", A));
            assert!(!log.contains(&key("/CN=a", A)));
            // Not written yet: a reader of the file still sees the entry.
            assert_eq!(AckedLog::open_readonly_len(&path), 2);
            // Forgotten, then stored again in the same batch: the file says so, in that order.
            log.record(&[(key("/CN=a", A), "/q/a".into())], None)
                .unwrap();
            log.forget_buffered(&key("/CN=b", B));
            log.flush().unwrap();
        }
        let log = AckedLog::open(&path, day).unwrap();
        assert!(log.contains(&key("/CN=a", A)));
        assert!(!log.contains(&key("/CN=b", B)));
    }

    #[test]
    fn torn_lines_and_old_entries_are_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("acked.log");
        let now = now_secs();
        std::fs::write(
            &path,
            format!("+ {now} {A} /q /CN=a\n+ 1 {B} /q /CN=old\n+ {now} {B} /q"),
        )
        .unwrap();
        let log = AckedLog::open(&path, Duration::from_secs(3600)).unwrap();
        assert!(log.contains(&key("/CN=a", A)));
        assert!(!log.contains(&key("/CN=old", B)));
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
            log.record(&[(key("/CN=victim", A), "/q".into())], None)
                .unwrap();
            log.record(&[(key(&evil, B), "/q\nx".into())], None)
                .unwrap();
        }
        let log = AckedLog::open(&path, day).unwrap();
        assert!(log.contains(&key("/CN=victim", A)));
    }
}
