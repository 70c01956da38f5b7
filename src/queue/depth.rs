//! How full a queue is: element count and the age of the oldest element, for `ssm status` and
//! the metrics endpoint.
//!
//! Reading a depth only lists directories (and stats the oldest element of a plain-directory
//! queue); it never creates, locks or changes anything, so it is safe to run next to a live
//! sender or receiver and against a queue owned by another user (read permission suffices).

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::{naming, PathType, StoreLayout};

/// One queue's depth.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Depth {
    /// What the queue is (`outgoing`, `incoming`, `reject`).
    pub name: &'static str,
    /// Its directory.
    pub path: PathBuf,
    /// Elements in it (locked ones included); 0 when the directory does not exist yet.
    pub count: usize,
    /// When the oldest element was queued, if there is one.
    pub oldest: Option<SystemTime>,
}

impl Depth {
    /// Age of the oldest element at `now`.
    pub fn oldest_age(&self, now: SystemTime) -> Option<Duration> {
        self.oldest
            .map(|t| now.duration_since(t).unwrap_or(Duration::ZERO))
    }
}

/// Why a depth could not be read.
#[derive(Debug, thiserror::Error)]
#[error("cannot read queue {}: {error}", path.display())]
pub struct DepthError {
    /// The directory.
    pub path: PathBuf,
    /// Why.
    pub error: std::io::Error,
}

fn list(path: &Path) -> Result<Vec<String>, DepthError> {
    let entries = match std::fs::read_dir(path) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => {
            return Err(DepthError {
                path: path.to_path_buf(),
                error,
            })
        }
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|error| DepthError {
            path: path.to_path_buf(),
            error,
        })?;
        if let Some(name) = entry.file_name().to_str() {
            names.push(name.to_string());
        }
    }
    names.sort();
    Ok(names)
}

/// The time encoded in a dirq element name (`%08x` seconds, `%05x` microseconds).
fn element_time(name: &str) -> Option<SystemTime> {
    let secs = u64::from_str_radix(name.get(0..8)?, 16).ok()?;
    let micros = u64::from_str_radix(name.get(8..13)?, 16).ok()?;
    Some(UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_micros(micros))
}

/// Depth of a dirq-format queue (`dirq.Queue` or `dirq.QueueSimple`: both keep elements in
/// `%08x` intermediate directories under names that start with their creation time).
pub fn dirq(name: &'static str, path: &Path) -> Result<Depth, DepthError> {
    let mut count = 0;
    let mut oldest = None;
    for dir in list(path)?.into_iter().filter(|d| naming::is_directory(d)) {
        let elements: Vec<String> = list(&path.join(&dir))?
            .into_iter()
            .filter(|e| naming::is_element(e))
            .collect();
        if oldest.is_none() {
            oldest = elements.first().and_then(|e| element_time(e));
        }
        count += elements.len();
    }
    Ok(Depth {
        name,
        path: path.to_path_buf(),
        count,
        oldest,
    })
}

/// Depth of a plain directory of message files (`path_type = directory`): every regular,
/// non-hidden file is a message; the oldest is the one modified longest ago.
pub fn directory(name: &'static str, path: &Path) -> Result<Depth, DepthError> {
    let mut count = 0;
    let mut oldest: Option<SystemTime> = None;
    for file in list(path)? {
        if file.starts_with('.') {
            continue;
        }
        let Ok(meta) = std::fs::metadata(path.join(&file)) else {
            continue; // Taken by a sender since the listing.
        };
        if !meta.is_file() {
            continue;
        }
        count += 1;
        if let Ok(modified) = meta.modified() {
            oldest = Some(oldest.map_or(modified, |o| o.min(modified)));
        }
    }
    Ok(Depth {
        name,
        path: path.to_path_buf(),
        count,
        oldest,
    })
}

/// Depth of an outgoing queue of either layout.
pub fn outgoing(path: &Path, kind: PathType) -> Result<Depth, DepthError> {
    match kind {
        PathType::QueueSimple => dirq("outgoing", path),
        PathType::Directory => directory("outgoing", path),
    }
}

/// Depths of a receiver's store: `incoming/` and `reject/`.
pub fn store(path: &Path) -> Result<[Depth; 2], DepthError> {
    let layout = StoreLayout::new(path);
    Ok([
        dirq("incoming", &layout.incoming())?,
        dirq("reject", &layout.reject())?,
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::{Dirq, Outgoing, Record};

    #[test]
    fn counts_and_dates_real_queues() {
        let d = tempfile::tempdir().unwrap();
        let before = SystemTime::now() - Duration::from_secs(1);
        for kind in [PathType::QueueSimple, PathType::Directory] {
            let path = d.path().join(kind.to_string());
            assert_eq!(outgoing(&path, kind).unwrap().count, 0);
            let q = Outgoing::open(&path, kind).unwrap();
            q.add(b"a").unwrap();
            q.add(b"b").unwrap();
            let depth = outgoing(&path, kind).unwrap();
            assert_eq!(depth.count, 2, "{kind}");
            let oldest = depth.oldest.unwrap();
            assert!(oldest >= before && oldest <= SystemTime::now(), "{kind}");
        }
        let store_path = d.path().join("store");
        let incoming = Dirq::open(&StoreLayout::new(&store_path).incoming()).unwrap();
        incoming
            .add(&Record {
                body: b"x".to_vec(),
                signer: None,
                empaid: None,
                error: None,
            })
            .unwrap();
        let [inc, rej] = store(&store_path).unwrap();
        assert_eq!((inc.count, rej.count), (1, 0));
        assert!(inc.oldest.is_some() && rej.oldest.is_none());
    }
}
