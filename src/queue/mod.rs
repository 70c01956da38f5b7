//! Durable message queues on disk in the `dirq` format.
//!
//! This is the on-disk contract with the accounting software on both ends:
//! - the sender's **outgoing** queue ([`Outgoing`]) is either a [`QueueSimple`] (Python
//!   `dirq.QueueSimple` layout, `path_type = dirq`) or a [`PlainDirectory`] of message files
//!   (`path_type = directory`);
//! - the receiver's **incoming** and **reject** queues ([`MessageStore`]) are [`Dirq`]s
//!   (Python `dirq.queue.Queue` layout with the schema `body`, `signer?`, `empaid?`, `error?`).
//!
//! Guarantees: an element becomes visible atomically (never half-written), and `add` returns
//! only once the data and every changed directory entry are on disk (`fsync`), because the
//! receiver acks a message as soon as `add` returns. Files are created 0600 and directories 0700
//! regardless of the umask, unless other [`Modes`] are given. Locks are exclusive between
//! processes (and interoperate with Python `dirq` processes). The format is described in
//! `docs/queue.md`.
//!
//! Also here: [`StoreLayout`], the one place that names the store's parts (`incoming/`,
//! `reject/`, the acked record), and [`depth`], how full a queue is (read-only).

pub mod depth;
mod directory;
mod dirq;
mod durable;
mod error;
mod layout;
pub mod naming;
mod simple;
mod store;

use std::fmt;
use std::path::Path;
use std::str::FromStr;
use std::time::{Duration, SystemTime};

pub use self::directory::PlainDirectory;
pub use self::dirq::{BatchAdded, Dirq, MessageStore, Record, DEFAULT_MAXELTS};
pub use self::durable::Modes;
pub use self::error::QueueError;
pub use self::simple::QueueSimple;
pub use self::store::{sender_reject, StoreLayout, ACKED_LOG, INCOMING, REJECT};

/// How long a temporary element may live before `purge` removes it (dirq's default).
pub const DEFAULT_MAXTEMP: Duration = Duration::from_secs(300);
/// How long a lock may be held before `purge` releases it (dirq's default).
pub const DEFAULT_MAXLOCK: Duration = Duration::from_secs(600);

/// The layout of an outgoing queue (`[messaging] path_type`).
///
/// The variant is named after the format, not the INI spelling: `path_type = dirq` is Python's
/// `dirq.QueueSimple` layout ([`QueueSimple`]), which is *not* the layout of [`Dirq`] (Python's
/// `dirq.queue.Queue`, the receiver's store).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PathType {
    /// `dirq` (the INI and flag spelling): a `dirq.QueueSimple` directory.
    #[default]
    QueueSimple,
    /// `directory`: every regular file in one directory is a message.
    Directory,
}

impl PathType {
    /// The accepted names, in documentation order.
    pub const NAMES: [&'static str; 2] = ["dirq", "directory"];
}

impl FromStr for PathType {
    type Err = QueueError;

    /// Accepts `dirq` or `directory`, in any case (as `[messaging] path_type` always has).
    fn from_str(s: &str) -> Result<PathType, QueueError> {
        let name = s.trim();
        if name.eq_ignore_ascii_case("dirq") {
            Ok(PathType::QueueSimple)
        } else if name.eq_ignore_ascii_case("directory") {
            Ok(PathType::Directory)
        } else {
            Err(QueueError::UnknownPathType(s.to_string()))
        }
    }
}

impl fmt::Display for PathType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PathType::QueueSimple => "dirq",
            PathType::Directory => "directory",
        })
    }
}

/// What a `purge` did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PurgeReport {
    /// Stale temporary (or obsolete) elements removed.
    pub temporary_removed: usize,
    /// Stale locks released.
    pub locks_released: usize,
    /// Empty intermediate directories removed.
    pub directories_removed: usize,
}

/// What `ssm queue ls` shows about an element.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElementInfo {
    /// The element name.
    pub name: String,
    /// Its size in bytes.
    pub size: u64,
    /// Its modification time (for a locked `QueueSimple` element: when it was locked).
    pub modified: SystemTime,
    /// Whether it is locked.
    pub locked: bool,
}

impl ElementInfo {
    /// The info of an element stored as the one file `path` (both outgoing layouts).
    pub(crate) fn of_file(
        name: &str,
        path: &Path,
        locked: bool,
    ) -> Result<ElementInfo, QueueError> {
        let md = std::fs::metadata(path).map_err(error::io_err("stat", path))?;
        Ok(ElementInfo {
            name: name.to_string(),
            size: md.len(),
            modified: md.modified().map_err(error::io_err("stat", path))?,
            locked,
        })
    }
}

/// The sender's outgoing queue, of either layout.
#[derive(Debug, Clone)]
pub enum Outgoing {
    /// `path_type = dirq`: Python's `dirq.QueueSimple` layout.
    QueueSimple(QueueSimple),
    /// `path_type = directory`.
    Directory(PlainDirectory),
}

macro_rules! delegate {
    ($self:ident, $q:ident => $e:expr) => {
        match $self {
            Outgoing::QueueSimple($q) => $e,
            Outgoing::Directory($q) => $e,
        }
    };
}

impl Outgoing {
    /// Opens (creating the directory if missing) an outgoing queue of the given layout.
    pub fn open(path: &Path, kind: PathType) -> Result<Outgoing, QueueError> {
        Outgoing::open_with(path, kind, Modes::default())
    }

    /// Opens an outgoing queue with explicit permission bits for what it creates.
    pub fn open_with(path: &Path, kind: PathType, modes: Modes) -> Result<Outgoing, QueueError> {
        Ok(match kind {
            PathType::QueueSimple => Outgoing::QueueSimple(QueueSimple::open_with(path, modes)?),
            PathType::Directory => Outgoing::Directory(PlainDirectory::open_with(path, modes)?),
        })
    }

    /// The queue directory.
    pub fn path(&self) -> &Path {
        delegate!(self, q => q.path())
    }

    /// Adds a message and returns its element name. Durable on return.
    pub fn add(&self, data: &[u8]) -> Result<String, QueueError> {
        delegate!(self, q => q.add(data))
    }

    /// Element names, oldest first.
    pub fn names(&self) -> Result<Vec<String>, QueueError> {
        delegate!(self, q => q.names())
    }

    /// Locks an element; `Ok(false)` if it is already locked or gone.
    pub fn lock(&self, name: &str) -> Result<bool, QueueError> {
        delegate!(self, q => q.lock(name))
    }

    /// Unlocks an element (no error if it was not locked).
    pub fn unlock(&self, name: &str) -> Result<(), QueueError> {
        delegate!(self, q => q.unlock(name))
    }

    /// Whether an element is locked (an indication only).
    pub fn is_locked(&self, name: &str) -> Result<bool, QueueError> {
        delegate!(self, q => q.is_locked(name))
    }

    /// Reads an element.
    pub fn get(&self, name: &str) -> Result<Vec<u8>, QueueError> {
        delegate!(self, q => q.get(name))
    }

    /// Size, time and lock state of an element.
    pub fn info(&self, name: &str) -> Result<ElementInfo, QueueError> {
        delegate!(self, q => q.info(name))
    }

    /// Removes a locked element. Durable on return.
    pub fn remove(&self, name: &str) -> Result<(), QueueError> {
        delegate!(self, q => q.remove(name))
    }

    /// Number of elements.
    pub fn count(&self) -> Result<usize, QueueError> {
        delegate!(self, q => q.count())
    }

    /// Removes stale temporaries and locks (defaults 300 s and 600 s) and empty directories.
    pub fn purge(&self) -> Result<PurgeReport, QueueError> {
        delegate!(self, q => q.purge())
    }

    /// `purge` with explicit ages (zero disables either).
    pub fn purge_with(
        &self,
        maxtemp: Duration,
        maxlock: Duration,
    ) -> Result<PurgeReport, QueueError> {
        delegate!(self, q => q.purge_with(maxtemp, maxlock))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_type_parses_and_defaults_to_dirq() {
        assert_eq!("dirq".parse::<PathType>().unwrap(), PathType::QueueSimple);
        assert_eq!(
            "directory".parse::<PathType>().unwrap(),
            PathType::Directory
        );
        assert_eq!(PathType::default(), PathType::QueueSimple);
        assert_eq!("DirQ".parse::<PathType>().unwrap(), PathType::QueueSimple);
        assert_eq!(
            " Directory ".parse::<PathType>().unwrap(),
            PathType::Directory
        );
        for name in PathType::NAMES {
            assert_eq!(name.parse::<PathType>().unwrap().to_string(), name);
        }
        let err = "queue".parse::<PathType>().unwrap_err();
        assert!(err.to_string().contains("\"queue\""), "{err}");
        assert_eq!(PathType::Directory.to_string(), "directory");
    }

    #[test]
    fn outgoing_delegates_to_both_layouts() {
        for kind in [PathType::QueueSimple, PathType::Directory] {
            let d = tempfile::tempdir().unwrap();
            let q = Outgoing::open(&d.path().join("out"), kind).unwrap();
            let a = q.add(b"first").unwrap();
            std::thread::sleep(Duration::from_millis(5));
            let b = q.add(b"second").unwrap();
            assert_eq!(q.names().unwrap(), vec![a.clone(), b.clone()], "{kind}");
            assert_eq!(q.count().unwrap(), 2);
            assert!(q.lock(&a).unwrap());
            assert!(!q.lock(&a).unwrap());
            let info = q.info(&a).unwrap();
            assert!(info.locked);
            assert_eq!(info.size, 5);
            assert_eq!(q.get(&a).unwrap(), b"first");
            q.remove(&a).unwrap();
            assert_eq!(q.names().unwrap(), vec![b]);
            assert_eq!(q.purge().unwrap(), PurgeReport::default());
        }
    }
}
