//! The errors of the on-disk queues.
//!
//! Every error names the operation and the path it concerns, so that an operator reading a log
//! line knows which file to look at without a backtrace.

use std::io;
use std::path::{Path, PathBuf};

/// What went wrong with a queue on disk.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// A system call on a queue file or directory failed.
    #[error("cannot {op} {}: {err}", path.display())]
    Io {
        /// The operation, e.g. `create`, `link`, `rename`, `fsync`.
        op: &'static str,
        /// The file or directory it was applied to.
        path: PathBuf,
        /// What the operating system said.
        err: io::Error,
    },
    /// An element name that this queue could never have produced (wrong pattern, or a path
    /// trying to escape the queue directory).
    #[error("invalid element name {name:?} for queue {}", queue.display())]
    InvalidName {
        /// The queue directory.
        queue: PathBuf,
        /// The rejected name.
        name: String,
    },
    /// `remove` was called on an element that is not locked.
    #[error("cannot remove {name} from queue {}: not locked", queue.display())]
    NotLocked {
        /// The queue directory.
        queue: PathBuf,
        /// The element name.
        name: String,
    },
    /// A mandatory field file of a `dirq.queue.Queue` element is missing.
    #[error("element {name} of queue {} has no {field} file", queue.display())]
    MissingField {
        /// The queue directory.
        queue: PathBuf,
        /// The element name.
        name: String,
        /// The missing field.
        field: &'static str,
    },
    /// A text field (`signer`, `empaid`, `error`) is not valid UTF-8.
    #[error("field {field} of element {name} in queue {} is not valid UTF-8", queue.display())]
    NotUtf8 {
        /// The queue directory.
        queue: PathBuf,
        /// The element name.
        name: String,
        /// The field.
        field: &'static str,
    },
    /// A `path_type` that is neither `dirq` nor `directory`.
    #[error("unknown path type {0:?}: expected \"dirq\" or \"directory\"")]
    UnknownPathType(String),
}

impl QueueError {
    /// The underlying operating-system error, if this is an I/O failure.
    pub fn io_error(&self) -> Option<&io::Error> {
        match self {
            QueueError::Io { err, .. } => Some(err),
            _ => None,
        }
    }
}

/// Builds a closure that wraps an `io::Error` with the operation and the path.
pub(crate) fn io_err(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> QueueError {
    let path = path.to_path_buf();
    move |err| QueueError::Io { op, path, err }
}
