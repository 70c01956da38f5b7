//! Which file system a queue lives on, as far as it matters for the store's speed: its type and,
//! for ext4, whether it has a journal.
//!
//! Why it matters: ext4 *without* a journal will not reuse an inode freed in the last minute
//! (five more while its inode-table block is dirty), and finds that out by reading every free
//! inode of the group in turn, from the start, on each allocation (`recently_deleted` in the
//! kernel's `find_inode_bit`). A receiver store creates four inodes per message (a dirq element
//! is a directory and three files) while the consumer, or a sender on the same machine, frees
//! them as fast: each creation then costs up to a millisecond of CPU, and the store, not the
//! crypto, bounds the receiver. `ssm bench` reports the file system so that its figures can be
//! read; `ssm check receive` says so for the message store. See `docs/performance.md`.
//!
//! Read from `/proc/self/mountinfo` (the mount whose device is the path's) and, for ext4, from
//! `/proc/fs/ext4/<dev>` and `/proc/fs/jbd2/<dev>-<inode>` (present exactly while that file
//! system has a journal). Linux only; elsewhere the type is unknown.

use std::fmt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// The file system under a path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FsInfo {
    /// The type as the kernel names it (`ext4`, `xfs`, `tmpfs`…), `unknown` if not found.
    pub fs_type: String,
    /// For ext4: whether it has a journal, when that can be told.
    pub journal: Option<bool>,
}

impl FsInfo {
    /// True for ext4 known to run without a journal: the case the module doc describes.
    pub fn slow_inode_reuse(&self) -> bool {
        self.fs_type == "ext4" && self.journal == Some(false)
    }

    /// What to tell an operator about storing here, if anything (the bench's note, `ssm check`).
    pub fn caution(&self) -> Option<&'static str> {
        self.slow_inode_reuse().then_some(
            "creating a file there costs up to a millisecond of CPU while other files are being \
             deleted, and that bounds the receiver's store; a journaled file system (or tmpfs) \
             is faster (see docs/performance.md)",
        )
    }
}

impl fmt::Display for FsInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.fs_type)?;
        match self.journal {
            Some(true) => f.write_str(" (journal)"),
            Some(false) => f.write_str(" (no journal)"),
            None => Ok(()),
        }
    }
}

/// Describes the file system holding `path` (or its nearest existing ancestor).
pub fn describe(path: &Path) -> FsInfo {
    let unknown = FsInfo {
        fs_type: "unknown".into(),
        journal: None,
    };
    let Some(dev) = path
        .ancestors()
        .find_map(|p| p.metadata().ok())
        .map(|m| m.dev())
    else {
        return unknown;
    };
    let Ok(mountinfo) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return unknown;
    };
    let Some((fs_type, source)) = mount_of(&mountinfo, libc::major(dev), libc::minor(dev)) else {
        return unknown;
    };
    let journal = (fs_type == "ext4")
        .then(|| ext4_journal(Path::new("/proc/fs"), source))
        .flatten();
    FsInfo {
        fs_type: fs_type.to_string(),
        journal,
    }
}

/// The type and source of the mount of device `major:minor` in a `mountinfo` text.
fn mount_of(mountinfo: &str, major: u32, minor: u32) -> Option<(&str, &str)> {
    let want = format!("{major}:{minor}");
    mountinfo.lines().find_map(|line| {
        let mut fields = line.split(' ');
        if fields.nth(2)? != want {
            return None;
        }
        // Optional fields end at a lone "-"; the type and the source follow.
        let mut after = fields.skip_while(|f| *f != "-").skip(1);
        Some((after.next()?, after.next()?))
    })
}

/// Whether the ext4 file system mounted from `source` has a journal: `None` when `/proc` does
/// not say (an unusual source, or no such entry).
fn ext4_journal(proc_fs: &Path, source: &str) -> Option<bool> {
    let dev = Path::new(source).file_name()?.to_str()?;
    if !proc_fs.join("ext4").join(dev).exists() {
        return None;
    }
    let prefix = format!("{dev}-");
    let journal = std::fs::read_dir(proc_fs.join("jbd2"))
        .map(|entries| {
            entries.flatten().any(|e| {
                e.file_name()
                    .to_str()
                    .is_some_and(|n| n.starts_with(&prefix))
            })
        })
        // No jbd2 directory at all: no journaled file system is mounted.
        .unwrap_or(false);
    Some(journal)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
22 27 0:21 / /proc rw,relatime - proc proc rw
25 24 0:23 / /dev/shm rw,relatime - tmpfs tmpfs rw,size=24684084k
27 1 254:0 / / rw,relatime shared:1 master:2 - ext4 /dev/vda rw,discard
40 27 7:0 / /mnt/x rw,relatime - ext4 /dev/loop0 rw
";

    #[test]
    fn finds_the_mount_by_device_past_optional_fields() {
        assert_eq!(mount_of(MOUNTINFO, 254, 0), Some(("ext4", "/dev/vda")));
        assert_eq!(mount_of(MOUNTINFO, 0, 23), Some(("tmpfs", "tmpfs")));
        assert_eq!(mount_of(MOUNTINFO, 7, 0), Some(("ext4", "/dev/loop0")));
        assert_eq!(mount_of(MOUNTINFO, 8, 1), None);
        assert_eq!(mount_of("garbage\n\n1 2\n", 8, 1), None);
    }

    #[test]
    fn tells_an_ext4_journal_from_proc() {
        let proc_fs = tempfile::tempdir().unwrap();
        for d in ["ext4/vda", "ext4/loop0", "jbd2/loop0-8"] {
            std::fs::create_dir_all(proc_fs.path().join(d)).unwrap();
        }
        assert_eq!(ext4_journal(proc_fs.path(), "/dev/loop0"), Some(true));
        assert_eq!(ext4_journal(proc_fs.path(), "/dev/vda"), Some(false));
        assert_eq!(ext4_journal(proc_fs.path(), "/dev/sdz"), None);
        std::fs::remove_dir_all(proc_fs.path().join("jbd2")).unwrap();
        assert_eq!(ext4_journal(proc_fs.path(), "/dev/loop0"), Some(false));
    }

    #[test]
    fn describes_real_paths_and_formats() {
        // Whatever this machine has, the root is some known type and a missing path is
        // described by its nearest existing ancestor.
        let root = describe(Path::new("/"));
        assert_ne!(root.fs_type, "unknown");
        assert_eq!(describe(Path::new("/no/such/dir/below/root")), root);
        let info = FsInfo {
            fs_type: "ext4".into(),
            journal: Some(false),
        };
        assert_eq!(info.to_string(), "ext4 (no journal)");
        assert!(info.slow_inode_reuse());
        assert!(info.caution().is_some_and(|c| c.contains("journaled")));
        let tmpfs = FsInfo {
            fs_type: "tmpfs".into(),
            journal: None,
        };
        assert_eq!(tmpfs.to_string(), "tmpfs");
        assert!(!tmpfs.slow_inode_reuse());
        assert_eq!(tmpfs.caution(), None);
    }
}
