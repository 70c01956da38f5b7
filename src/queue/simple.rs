//! `QueueSimple`: the outgoing queue, file-for-file compatible with Python `dirq.QueueSimple`.
//!
//! Layout: `<path>/<dddddddd>/<eeeeeeeeeeeeee>`, one file per element, in an intermediate
//! directory named after the insertion time rounded down to the granularity (60 s). An element
//! is written as `<elt>.tmp`, hard-linked to its final name and the `.tmp` removed, so a reader
//! never sees a partial element. A lock is a hard link `<elt>.lck`; whoever creates it owns the
//! element. Guarantee: when [`QueueSimple::add`] returns, the element's data and directory
//! entries are on disk.

use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::durable::{self, Modes};
use super::error::{io_err, QueueError};
use super::layout;
use super::naming;
use super::{ElementInfo, PurgeReport, DEFAULT_MAXLOCK, DEFAULT_MAXTEMP};

const TEMPORARY_SUFFIX: &str = ".tmp";
const LOCKED_SUFFIX: &str = ".lck";

/// A `dirq.QueueSimple`-compatible queue directory.
#[derive(Debug, Clone)]
pub struct QueueSimple {
    path: PathBuf,
    modes: Modes,
    rndhex: u8,
    granularity: u64,
}

impl QueueSimple {
    /// Opens the queue at `path`, creating the directory (mode 0700) if missing.
    pub fn open(path: &Path) -> Result<QueueSimple, QueueError> {
        QueueSimple::open_with(path, Modes::default())
    }

    /// Opens the queue with explicit permission bits for what it creates.
    pub fn open_with(path: &Path, modes: Modes) -> Result<QueueSimple, QueueError> {
        durable::make_dir_all(path, modes.dir)?;
        Ok(QueueSimple {
            path: path.to_path_buf(),
            modes,
            rndhex: naming::random_hex(),
            granularity: 60,
        })
    }

    /// The queue directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn add_dir(&self) -> String {
        let (mut now, _) = naming::now();
        if self.granularity > 1 {
            now -= now % self.granularity;
        }
        format!("{now:08x}")
    }

    /// Checks a full element name and returns the element's path.
    fn element_path(&self, name: &str) -> Result<PathBuf, QueueError> {
        layout::element_path(&self.path, name)
    }

    fn lock_path(path: &Path) -> PathBuf {
        let mut s = path.as_os_str().to_os_string();
        s.push(LOCKED_SUFFIX);
        PathBuf::from(s)
    }

    /// Adds an element and returns its name (`dddddddd/eeeeeeeeeeeeee`). Durable on return.
    pub fn add(&self, data: &[u8]) -> Result<String, QueueError> {
        let dir = self.add_dir();
        let dir_path = self.path.join(&dir);
        let (tmp, file) = loop {
            let tmp = dir_path.join(format!(
                "{}{}",
                naming::element_name(self.rndhex),
                TEMPORARY_SUFFIX
            ));
            match durable::create_new_file(&tmp, data, self.modes.file) {
                Ok(file) => break (tmp, file),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    // The intermediate directory does not exist yet, or a purge removed it.
                    if durable::make_dir(&dir_path, self.modes.dir)
                        .map_err(io_err("create directory", &dir_path))?
                    {
                        durable::sync_dir(&self.path)?;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => {
                    // Do not leave a partial temporary file behind if the write failed.
                    let _ = durable::remove_if_exists(&tmp);
                    return Err(io_err("write", &tmp)(e));
                }
            }
        };
        file.sync_all().map_err(io_err("fsync", &tmp))?;
        drop(file);
        let name = loop {
            let elt = naming::element_name(self.rndhex);
            let new = dir_path.join(&elt);
            match fs::hard_link(&tmp, &new) {
                Ok(()) => break format!("{dir}/{elt}"),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(io_err("link", &new)(e)),
            }
        };
        fs::remove_file(&tmp).map_err(io_err("remove", &tmp))?;
        // One directory sync covers both the new link and the removal of the `.tmp`.
        durable::sync_dir(&dir_path)?;
        Ok(name)
    }

    /// All element names, oldest first; files that do not match dirq's patterns are ignored.
    pub fn names(&self) -> Result<Vec<String>, QueueError> {
        layout::element_names(&self.path)
    }

    /// Number of elements, locked or not (temporary files are not elements).
    pub fn count(&self) -> Result<usize, QueueError> {
        layout::count_elements(&self.path)
    }

    /// Locks an element. `Ok(false)` if someone else holds the lock or the element is gone.
    pub fn lock(&self, name: &str) -> Result<bool, QueueError> {
        let path = self.element_path(name)?;
        let lock = Self::lock_path(&path);
        match fs::hard_link(&path, &lock) {
            Ok(()) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::AlreadyExists | io::ErrorKind::NotFound
                ) =>
            {
                return Ok(false)
            }
            Err(e) => return Err(io_err("link", &lock)(e)),
        }
        // The mtime is the lock's age for purge; it also detects the race where another process
        // locked and removed the element while our link was in progress.
        match durable::touch(&path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                durable::remove_if_exists(&lock).map_err(io_err("remove", &lock))?;
                Ok(false)
            }
            Err(e) => Err(io_err("utime", &path)(e)),
        }
    }

    /// Unlocks an element; unlocking an element that is not locked is not an error.
    pub fn unlock(&self, name: &str) -> Result<(), QueueError> {
        let lock = Self::lock_path(&self.element_path(name)?);
        durable::remove_if_exists(&lock).map_err(io_err("remove", &lock))?;
        Ok(())
    }

    /// Whether an element is currently locked (an indication only: others may change it).
    pub fn is_locked(&self, name: &str) -> Result<bool, QueueError> {
        let lock = Self::lock_path(&self.element_path(name)?);
        Ok(lock.exists())
    }

    /// Reads an element's data.
    pub fn get(&self, name: &str) -> Result<Vec<u8>, QueueError> {
        let path = self.element_path(name)?;
        fs::read(&path).map_err(io_err("read", &path))
    }

    /// Size, modification time and lock state of an element.
    pub fn info(&self, name: &str) -> Result<ElementInfo, QueueError> {
        let path = self.element_path(name)?;
        ElementInfo::of_file(name, &path, Self::lock_path(&path).exists())
    }

    /// Removes a locked element (the element file and its lock). Durable on return.
    pub fn remove(&self, name: &str) -> Result<(), QueueError> {
        let path = self.element_path(name)?;
        let lock = Self::lock_path(&path);
        if !lock.exists() {
            return Err(QueueError::NotLocked {
                queue: self.path.clone(),
                name: name.to_string(),
            });
        }
        fs::remove_file(&path).map_err(io_err("remove", &path))?;
        durable::remove_if_exists(&lock).map_err(io_err("remove", &lock))?;
        // A removal lost in a crash would resend the message: sync it.
        if let Some(dir) = path.parent() {
            durable::sync_dir(dir)?;
        }
        Ok(())
    }

    /// Purges with dirq's defaults: temporary files older than 300 s, locks older than 600 s.
    pub fn purge(&self) -> Result<PurgeReport, QueueError> {
        self.purge_with(DEFAULT_MAXTEMP, DEFAULT_MAXLOCK)
    }

    /// Removes `.tmp` files older than `maxtemp` and `.lck` links older than `maxlock` (zero
    /// disables either), then every empty intermediate directory but the newest.
    pub fn purge_with(
        &self,
        maxtemp: Duration,
        maxlock: Duration,
    ) -> Result<PurgeReport, QueueError> {
        let mut report = PurgeReport::default();
        let now = SystemTime::now();
        let dirs = layout::intermediate_dirs(&self.path)?;
        for dir in &dirs {
            let dir_path = self.path.join(dir);
            let mut changed = false;
            for name in durable::list_dir(&dir_path)? {
                let (limit, is_temp) = if name.ends_with(TEMPORARY_SUFFIX) {
                    (maxtemp, true)
                } else if name.ends_with(LOCKED_SUFFIX) {
                    (maxlock, false)
                } else {
                    continue;
                };
                if limit.is_zero() {
                    continue;
                }
                let p = dir_path.join(&name);
                let Some(md) = durable::stat_if_exists(&p)? else {
                    continue;
                };
                if !is_older(&md, now, limit) {
                    continue;
                }
                if durable::remove_if_exists(&p).map_err(io_err("remove", &p))? {
                    changed = true;
                    if is_temp {
                        report.temporary_removed += 1;
                    } else {
                        report.locks_released += 1;
                    }
                }
            }
            if changed {
                durable::sync_dir(&dir_path)?;
            }
        }
        report.directories_removed = layout::remove_empty_but_last(&self.path, &dirs)?;
        Ok(report)
    }
}

/// Whether a file's mtime is strictly older than `now - limit`.
pub(crate) fn is_older(md: &fs::Metadata, now: SystemTime, limit: Duration) -> bool {
    let mtime = SystemTime::UNIX_EPOCH
        + Duration::from_secs(md.mtime().max(0) as u64)
        + Duration::from_nanos(md.mtime_nsec().max(0) as u64);
    match now.checked_sub(limit) {
        Some(cutoff) => mtime < cutoff,
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::File;
    use std::os::unix::fs::PermissionsExt;

    fn backdate(path: &Path, secs: u64) {
        let f = File::options().write(true).open(path).unwrap();
        f.set_modified(SystemTime::now() - Duration::from_secs(secs))
            .unwrap();
    }

    #[test]
    fn add_names_files_like_dirq() {
        let d = tempfile::tempdir().unwrap();
        let q = QueueSimple::open(&d.path().join("q")).unwrap();
        let name = q.add(b"hello").unwrap();
        let (dir, elt) = naming::split_full(&name).unwrap();
        let dsecs = u64::from_str_radix(dir, 16).unwrap();
        assert_eq!(dsecs % 60, 0);
        let esecs = u64::from_str_radix(&elt[..8], 16).unwrap();
        assert!(esecs >= dsecs && esecs < dsecs + 61);
        assert_eq!(
            u8::from_str_radix(&elt[13..], 16).unwrap(),
            q.rndhex,
            "random digit fixed per queue"
        );
        assert_eq!(fs::read(d.path().join("q").join(&name)).unwrap(), b"hello");
        // nothing but the element in the directory: the .tmp is gone
        let entries = durable::list_dir(&d.path().join("q").join(dir)).unwrap();
        assert_eq!(entries, vec![elt.to_string()]);
    }

    #[test]
    fn modes_are_0600_and_0700() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("q");
        let q = QueueSimple::open(&root).unwrap();
        let name = q.add(b"x").unwrap();
        let mode = |p: PathBuf| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(root.clone()), 0o700);
        assert_eq!(mode(root.join(&name[..8])), 0o700);
        assert_eq!(mode(root.join(&name)), 0o600);
        let q2 = QueueSimple::open_with(
            &root,
            Modes {
                file: 0o640,
                dir: 0o750,
            },
        )
        .unwrap();
        let n2 = q2.add(b"y").unwrap();
        assert_eq!(mode(root.join(&n2)), 0o640);
    }

    #[test]
    fn names_are_oldest_first_and_skip_junk() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("q");
        let q = QueueSimple::open(&root).unwrap();
        // Hand-made older elements in an older directory.
        fs::create_dir(root.join("00000010")).unwrap();
        fs::write(root.join("00000010/00000011000001"), b"old").unwrap();
        fs::write(root.join("00000010/00000010000001"), b"older").unwrap();
        fs::write(root.join("00000010/00000012000001.tmp"), b"tmp").unwrap();
        fs::write(root.join("00000010/README"), b"junk").unwrap();
        fs::create_dir(root.join("junkdir")).unwrap();
        fs::write(root.join("junkdir/00000010000001"), b"junk").unwrap();
        let a = q.add(b"a").unwrap();
        std::thread::sleep(Duration::from_millis(2));
        let b = q.add(b"b").unwrap();
        assert_eq!(
            q.names().unwrap(),
            vec![
                "00000010/00000010000001".to_string(),
                "00000010/00000011000001".to_string(),
                a,
                b
            ]
        );
        assert_eq!(q.count().unwrap(), 4);
    }

    #[test]
    fn lock_is_exclusive_and_remove_needs_it() {
        let d = tempfile::tempdir().unwrap();
        let q = QueueSimple::open(d.path()).unwrap();
        let other = QueueSimple::open(d.path()).unwrap();
        let n = q.add(b"m").unwrap();
        assert!(matches!(q.remove(&n), Err(QueueError::NotLocked { .. })));
        assert!(q.lock(&n).unwrap());
        assert!(!other.lock(&n).unwrap(), "second lock must fail");
        assert!(q.is_locked(&n).unwrap());
        assert_eq!(q.count().unwrap(), 1, "a lock is not an element");
        q.unlock(&n).unwrap();
        q.unlock(&n).unwrap();
        assert!(other.lock(&n).unwrap());
        assert_eq!(other.get(&n).unwrap(), b"m");
        other.remove(&n).unwrap();
        assert_eq!(q.count().unwrap(), 0);
        assert!(!q.lock(&n).unwrap(), "a removed element cannot be locked");
        assert!(matches!(
            q.lock("../../etc/passwd"),
            Err(QueueError::InvalidName { .. })
        ));
    }

    #[test]
    fn purge_removes_stale_temporaries_locks_and_old_empty_dirs() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        let q = QueueSimple::open(root).unwrap();
        fs::create_dir(root.join("00000001")).unwrap(); // old, empty
        fs::create_dir(root.join("00000002")).unwrap();
        let stale_tmp = root.join("00000002/00000002000001.tmp");
        let fresh_tmp = root.join("00000002/00000002000002.tmp");
        fs::write(&stale_tmp, b"half").unwrap();
        fs::write(&fresh_tmp, b"half").unwrap();
        backdate(&stale_tmp, 301);
        let n_old = "00000002/00000002000003";
        fs::write(root.join(n_old), b"old locked").unwrap();
        assert!(q.lock(n_old).unwrap());
        backdate(&root.join(n_old), 601);
        let n_new = q.add(b"new").unwrap();
        assert!(q.lock(&n_new).unwrap());
        let r = q.purge().unwrap();
        assert_eq!(r.temporary_removed, 1);
        assert_eq!(r.locks_released, 1);
        assert_eq!(r.directories_removed, 1);
        assert!(!stale_tmp.exists());
        assert!(fresh_tmp.exists());
        assert!(!root.join("00000001").exists());
        assert!(!q.is_locked(n_old).unwrap());
        assert!(q.is_locked(&n_new).unwrap());
        assert_eq!(q.names().unwrap(), vec![n_old.to_string(), n_new]);
        // Once its temporaries are gone, an old directory goes too; the newest stays.
        fs::remove_file(&fresh_tmp).unwrap();
        q.lock(n_old).unwrap();
        q.remove(n_old).unwrap();
        let r = q.purge().unwrap();
        assert_eq!(r.directories_removed, 1);
        assert!(!root.join("00000002").exists());
        assert_eq!(q.count().unwrap(), 1);
    }

    #[test]
    fn add_recreates_a_purged_directory() {
        let d = tempfile::tempdir().unwrap();
        let q = QueueSimple::open(d.path()).unwrap();
        let n = q.add(b"1").unwrap();
        q.lock(&n).unwrap();
        q.remove(&n).unwrap();
        fs::remove_dir(d.path().join(&n[..8])).unwrap();
        let n2 = q.add(b"2").unwrap();
        assert_eq!(q.get(&n2).unwrap(), b"2");
    }
}
