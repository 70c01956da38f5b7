//! Where a receiver's store keeps its parts, in one place: every caller that needs the path of
//! `incoming/`, `reject/` or the acked record asks [`StoreLayout`] rather than joining names by
//! hand, so the layout the accounting software reads (`<path>/incoming`, `<path>/reject`, as the
//! Python SSM has it) cannot drift between the receiver, `ssm status`, the metrics endpoint and
//! the tools. Paths only: nothing here touches the disk.

use std::path::{Path, PathBuf};

/// The directory of verified messages under a store's root.
pub const INCOMING: &str = "incoming";
/// The directory of refused messages under a store's root (and under a sender's outgoing queue).
pub const REJECT: &str = "reject";
/// The receiver's record of acked message ids under a store's root.
pub const ACKED_LOG: &str = "ssm-acked.log";

/// The layout of a receiver's store under its root (`[messaging] path` of the receiver).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreLayout {
    root: PathBuf,
}

impl StoreLayout {
    /// The layout of the store at `root`.
    pub fn new(root: &Path) -> StoreLayout {
        StoreLayout {
            root: root.to_path_buf(),
        }
    }

    /// The store's root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `<root>/incoming`: the dirq of verified messages.
    pub fn incoming(&self) -> PathBuf {
        self.root.join(INCOMING)
    }

    /// `<root>/reject`: the dirq of refused messages.
    pub fn reject(&self) -> PathBuf {
        self.root.join(REJECT)
    }

    /// `<root>/ssm-acked.log`: the record of acked ids (it must share the store's file system:
    /// it is written in the same commit as the stored messages).
    pub fn acked_log(&self) -> PathBuf {
        self.root.join(ACKED_LOG)
    }
}

/// A sender's reject queue: `<outgoing>/reject`, under its outgoing queue's directory.
pub fn sender_reject(outgoing: &Path) -> PathBuf {
    outgoing.join(REJECT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_those_the_python_ssm_uses() {
        let l = StoreLayout::new(Path::new("/var/spool/apel"));
        assert_eq!(l.root(), Path::new("/var/spool/apel"));
        assert_eq!(l.incoming(), Path::new("/var/spool/apel/incoming"));
        assert_eq!(l.reject(), Path::new("/var/spool/apel/reject"));
        assert_eq!(l.acked_log(), Path::new("/var/spool/apel/ssm-acked.log"));
        assert_eq!(
            sender_reject(Path::new("/q/outgoing")),
            Path::new("/q/outgoing/reject")
        );
    }
}
