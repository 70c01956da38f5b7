//! The plain-directory outgoing queue (`path_type = directory`).
//!
//! Every regular file directly in the directory whose name does not start with `.` is a
//! message; messages are taken oldest modification time first (ties by name). This is the
//! layout of Python SSM's `MessageDirectory`, which other tools fill by dropping files in.
//!
//! What this module adds to make it safe:
//! - `add` writes `<path>/.tmp/<name>` (exclusive create), syncs it, hard-links it to
//!   `<path>/<name>` (which fails rather than overwrite) and removes the temporary name, then
//!   syncs both directories. Hidden subdirectories are not regular files, so readers that list
//!   regular files never see a partial message.
//! - a lock is the file `<path>/.lock/<name>`, created with `O_CREAT|O_EXCL`: exactly one
//!   process wins it. It lives in a subdirectory so that it is not itself taken for a message.
//!   Locks older than 600 s, and locks whose message is gone, are removed by `purge`.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::durable::{self, Modes};
use super::error::{io_err, QueueError};
use super::naming;
use super::simple::is_older;
use super::{ElementInfo, PurgeReport, DEFAULT_MAXLOCK, DEFAULT_MAXTEMP};

const TEMP_DIR: &str = ".tmp";
const LOCK_DIR: &str = ".lock";

/// An outgoing queue that is one plain directory of message files.
#[derive(Debug, Clone)]
pub struct PlainDirectory {
    path: PathBuf,
    modes: Modes,
    rndhex: u8,
}

impl PlainDirectory {
    /// Opens the directory, creating it and its `.tmp/` and `.lock/` subdirectories if missing.
    pub fn open(path: &Path) -> Result<PlainDirectory, QueueError> {
        PlainDirectory::open_with(path, Modes::default())
    }

    /// Opens the directory with explicit permission bits for what it creates.
    pub fn open_with(path: &Path, modes: Modes) -> Result<PlainDirectory, QueueError> {
        durable::make_dir_all(&path.join(TEMP_DIR), modes.dir)?;
        durable::make_dir_all(&path.join(LOCK_DIR), modes.dir)?;
        Ok(PlainDirectory {
            path: path.to_path_buf(),
            modes,
            rndhex: naming::random_hex(),
        })
    }

    /// The queue directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn check(&self, name: &str) -> Result<(), QueueError> {
        if name.is_empty() || name.starts_with('.') || name.contains('/') || name.contains('\0') {
            return Err(QueueError::InvalidName {
                queue: self.path.clone(),
                name: name.to_string(),
            });
        }
        Ok(())
    }

    fn message_path(&self, name: &str) -> Result<PathBuf, QueueError> {
        self.check(name)?;
        Ok(self.path.join(name))
    }

    fn lock_path(&self, name: &str) -> Result<PathBuf, QueueError> {
        self.check(name)?;
        Ok(self.path.join(LOCK_DIR).join(name))
    }

    /// Adds a message and returns its file name. Durable on return.
    pub fn add(&self, data: &[u8]) -> Result<String, QueueError> {
        let tmp_dir = self.path.join(TEMP_DIR);
        let (tmp, file) = loop {
            let tmp = tmp_dir.join(naming::element_name(self.rndhex));
            match durable::create_new_file(&tmp, data, self.modes.file) {
                Ok(f) => break (tmp, f),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => {
                    let _ = durable::remove_if_exists(&tmp);
                    return Err(io_err("write", &tmp)(e));
                }
            }
        };
        file.sync_all().map_err(io_err("fsync", &tmp))?;
        drop(file);
        let name = loop {
            let name = naming::element_name(self.rndhex);
            let dest = self.path.join(&name);
            match fs::hard_link(&tmp, &dest) {
                Ok(()) => break name,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(io_err("link", &dest)(e)),
            }
        };
        fs::remove_file(&tmp).map_err(io_err("remove", &tmp))?;
        durable::sync_dir(&self.path)?;
        durable::sync_dir(&tmp_dir)?;
        Ok(name)
    }

    fn entries(&self) -> Result<Vec<(SystemTime, String, u64)>, QueueError> {
        let mut out = Vec::new();
        for name in durable::list_dir(&self.path)? {
            if name.starts_with('.') {
                continue;
            }
            let p = self.path.join(&name);
            // None: taken by someone else between the listing and now.
            let Some(md) = durable::stat_if_exists(&p)? else {
                continue;
            };
            if !md.is_file() {
                continue;
            }
            let mtime = md.modified().map_err(io_err("stat", &p))?;
            out.push((mtime, name, md.len()));
        }
        out.sort();
        Ok(out)
    }

    /// All message names, oldest modification time first.
    pub fn names(&self) -> Result<Vec<String>, QueueError> {
        Ok(self.entries()?.into_iter().map(|(_, n, _)| n).collect())
    }

    /// Number of messages.
    pub fn count(&self) -> Result<usize, QueueError> {
        Ok(self.entries()?.len())
    }

    /// Locks a message. `Ok(false)` if it is locked by someone else or gone.
    pub fn lock(&self, name: &str) -> Result<bool, QueueError> {
        let lock = self.lock_path(name)?;
        let msg = self.message_path(name)?;
        match durable::create_new_file(&lock, b"", self.modes.file) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(false),
            Err(e) => return Err(io_err("create lock", &lock)(e)),
        }
        // The message may have been removed between someone's listing and our lock.
        match durable::stat_if_exists(&msg)? {
            Some(md) if md.is_file() => Ok(true),
            _ => {
                durable::remove_if_exists(&lock).map_err(io_err("remove", &lock))?;
                Ok(false)
            }
        }
    }

    /// Unlocks a message; unlocking a message that is not locked is not an error.
    pub fn unlock(&self, name: &str) -> Result<(), QueueError> {
        let lock = self.lock_path(name)?;
        durable::remove_if_exists(&lock).map_err(io_err("remove", &lock))?;
        Ok(())
    }

    /// Whether a message is currently locked (an indication only).
    pub fn is_locked(&self, name: &str) -> Result<bool, QueueError> {
        Ok(self.lock_path(name)?.exists())
    }

    /// Reads a message.
    pub fn get(&self, name: &str) -> Result<Vec<u8>, QueueError> {
        let p = self.message_path(name)?;
        fs::read(&p).map_err(io_err("read", &p))
    }

    /// Size, modification time and lock state of a message.
    pub fn info(&self, name: &str) -> Result<ElementInfo, QueueError> {
        let p = self.message_path(name)?;
        // `is_locked` can only fail on a bad name, which `message_path` has already refused.
        ElementInfo::of_file(name, &p, self.is_locked(name)?)
    }

    /// Removes a locked message and its lock. Durable on return.
    pub fn remove(&self, name: &str) -> Result<(), QueueError> {
        let msg = self.message_path(name)?;
        let lock = self.lock_path(name)?;
        if !lock.exists() {
            return Err(QueueError::NotLocked {
                queue: self.path.clone(),
                name: name.to_string(),
            });
        }
        fs::remove_file(&msg).map_err(io_err("remove", &msg))?;
        durable::sync_dir(&self.path)?;
        // The message goes first: a crash in between leaves an orphan lock, which purge removes,
        // never an unlocked message that was already sent.
        durable::remove_if_exists(&lock).map_err(io_err("remove", &lock))?;
        Ok(())
    }

    /// Purges with the defaults (temporary files older than 300 s, locks older than 600 s).
    pub fn purge(&self) -> Result<PurgeReport, QueueError> {
        self.purge_with(DEFAULT_MAXTEMP, DEFAULT_MAXLOCK)
    }

    /// Removes temporary files older than `maxtemp`, locks older than `maxlock` and locks whose
    /// message is gone (zero disables the age-based removals).
    pub fn purge_with(
        &self,
        maxtemp: Duration,
        maxlock: Duration,
    ) -> Result<PurgeReport, QueueError> {
        let mut report = PurgeReport::default();
        let now = SystemTime::now();
        let tmp_dir = self.path.join(TEMP_DIR);
        if !maxtemp.is_zero() {
            for name in durable::list_dir(&tmp_dir)? {
                let p = tmp_dir.join(&name);
                if let Some(md) = durable::stat_if_exists(&p)? {
                    if is_older(&md, now, maxtemp)
                        && durable::remove_if_exists(&p).map_err(io_err("remove", &p))?
                    {
                        report.temporary_removed += 1;
                    }
                }
            }
        }
        let lock_dir = self.path.join(LOCK_DIR);
        for name in durable::list_dir(&lock_dir)? {
            let p = lock_dir.join(&name);
            let Some(md) = durable::stat_if_exists(&p)? else {
                continue;
            };
            let stale = !maxlock.is_zero() && is_older(&md, now, maxlock);
            // An orphan lock is only removed once it is a little old: a fresh one may belong to
            // a lock() that is about to notice the message is gone and remove it itself.
            let orphan =
                !self.path.join(&name).exists() && is_older(&md, now, Duration::from_secs(1));
            if (stale || orphan) && durable::remove_if_exists(&p).map_err(io_err("remove", &p))? {
                report.locks_released += 1;
            }
        }
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::File;

    fn set_mtime(path: &Path, t: SystemTime) {
        File::options()
            .write(true)
            .open(path)
            .unwrap()
            .set_modified(t)
            .unwrap();
    }

    #[test]
    fn every_regular_visible_file_is_a_message_oldest_first() {
        let d = tempfile::tempdir().unwrap();
        let q = PlainDirectory::open(d.path()).unwrap();
        let now = SystemTime::now();
        fs::write(d.path().join("zzz"), b"oldest").unwrap();
        set_mtime(&d.path().join("zzz"), now - Duration::from_secs(100));
        fs::write(d.path().join("aaa"), b"middle").unwrap();
        set_mtime(&d.path().join("aaa"), now - Duration::from_secs(50));
        fs::write(d.path().join(".hidden"), b"not a message").unwrap();
        fs::create_dir(d.path().join("subdir")).unwrap();
        let n = q.add(b"newest").unwrap();
        assert_eq!(q.names().unwrap(), vec!["zzz".to_string(), "aaa".into(), n]);
        assert_eq!(q.count().unwrap(), 3);
    }

    #[test]
    fn locking_is_exclusive_and_purge_cleans_stale_and_orphan_locks() {
        let d = tempfile::tempdir().unwrap();
        let q = PlainDirectory::open(d.path()).unwrap();
        let a = q.add(b"a").unwrap();
        let b = q.add(b"b").unwrap();
        assert!(q.lock(&a).unwrap());
        assert!(!q.lock(&a).unwrap());
        assert!(!q.lock("missing").unwrap());
        assert!(!d.path().join(LOCK_DIR).join("missing").exists());
        assert!(matches!(q.remove(&b), Err(QueueError::NotLocked { .. })));
        assert!(matches!(
            q.lock("../x"),
            Err(QueueError::InvalidName { .. })
        ));
        assert_eq!(q.get(&a).unwrap(), b"a");
        q.remove(&a).unwrap();
        assert_eq!(q.names().unwrap(), vec![b.clone()]);
        // stale lock
        assert!(q.lock(&b).unwrap());
        set_mtime(
            &d.path().join(LOCK_DIR).join(&b),
            SystemTime::now() - Duration::from_secs(601),
        );
        // orphan lock
        let orphan = d.path().join(LOCK_DIR).join("gone");
        fs::write(&orphan, b"").unwrap();
        set_mtime(&orphan, SystemTime::now() - Duration::from_secs(5));
        // stale temporary
        let tmp = d.path().join(TEMP_DIR).join("half");
        fs::write(&tmp, b"ha").unwrap();
        set_mtime(&tmp, SystemTime::now() - Duration::from_secs(301));
        let r = q.purge().unwrap();
        assert_eq!(r.locks_released, 2);
        assert_eq!(r.temporary_removed, 1);
        assert!(!q.is_locked(&b).unwrap());
        assert_eq!(q.count().unwrap(), 1);
    }
}
