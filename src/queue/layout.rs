//! The intermediate-directory layout that [`QueueSimple`](super::QueueSimple) and
//! [`Dirq`](super::Dirq) share: `<path>/<dddddddd>/<eeeeeeeeeeeeee>`.
//!
//! Both queue kinds list, count, address and purge their elements the same way; the rules live
//! here once. Guarantees: only names matching dirq's patterns ([`naming::is_directory`],
//! [`naming::is_element`]) are taken for directories and elements, everything else in the tree
//! is ignored; listings are oldest first; a full element name is checked before it becomes a
//! path, so it can never leave the queue directory.

use std::fs;
use std::path::{Path, PathBuf};

use super::durable;
use super::error::{io_err, QueueError};
use super::naming;

/// The intermediate directories of the queue at `root`, sorted (that is, oldest first).
pub(crate) fn intermediate_dirs(root: &Path) -> Result<Vec<String>, QueueError> {
    let mut dirs: Vec<String> = durable::list_dir(root)?
        .into_iter()
        .filter(|n| naming::is_directory(n))
        .collect();
    dirs.sort();
    Ok(dirs)
}

/// Number of entries of the directory `dir` that are elements by name.
pub(crate) fn count_in(dir: &Path) -> Result<usize, QueueError> {
    Ok(durable::list_dir(dir)?
        .iter()
        .filter(|n| naming::is_element(n))
        .count())
}

/// All full element names (`dddddddd/eeeeeeeeeeeeee`) of the queue at `root`, oldest first.
pub(crate) fn element_names(root: &Path) -> Result<Vec<String>, QueueError> {
    let mut out = Vec::new();
    for dir in intermediate_dirs(root)? {
        let mut elts: Vec<String> = durable::list_dir(&root.join(&dir))?
            .into_iter()
            .filter(|n| naming::is_element(n))
            .collect();
        elts.sort();
        out.extend(elts.into_iter().map(|e| format!("{dir}/{e}")));
    }
    Ok(out)
}

/// Number of elements in all intermediate directories of the queue at `root`.
pub(crate) fn count_elements(root: &Path) -> Result<usize, QueueError> {
    let mut n = 0;
    for dir in intermediate_dirs(root)? {
        n += count_in(&root.join(&dir))?;
    }
    Ok(n)
}

/// Checks a full element name and returns the element's path in the queue at `root`.
pub(crate) fn element_path(root: &Path, name: &str) -> Result<PathBuf, QueueError> {
    match naming::split_full(name) {
        Some(_) => Ok(root.join(name)),
        None => Err(QueueError::InvalidName {
            queue: root.to_path_buf(),
            name: name.to_string(),
        }),
    }
}

/// Removes every empty directory of `dirs` (intermediate directories of `root`, sorted) but the
/// last, which is where elements are being added. Returns how many it removed; syncs `root` if
/// any.
pub(crate) fn remove_empty_but_last(root: &Path, dirs: &[String]) -> Result<usize, QueueError> {
    let mut removed = 0;
    if let Some((_last, older)) = dirs.split_last() {
        for dir in older {
            let p = root.join(dir);
            match fs::remove_dir(&p) {
                Ok(()) => removed += 1,
                // Not empty, or already removed by someone else: both are fine.
                Err(e)
                    if matches!(
                        e.raw_os_error(),
                        Some(libc::ENOTEMPTY | libc::EEXIST | libc::ENOENT)
                    ) => {}
                Err(e) => return Err(io_err("remove directory", &p)(e)),
            }
        }
        if removed > 0 {
            durable::sync_dir(root)?;
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listing_and_counting_skip_junk_and_sort_oldest_first() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        fs::create_dir(root.join("00000002")).unwrap();
        fs::create_dir(root.join("00000001")).unwrap();
        fs::create_dir(root.join("junkdir")).unwrap();
        fs::write(root.join("junkdir/00000001000001"), b"").unwrap();
        fs::write(root.join("00000002/00000002000001"), b"").unwrap();
        fs::write(root.join("00000001/00000001000002"), b"").unwrap();
        fs::write(root.join("00000001/00000001000001"), b"").unwrap();
        fs::write(root.join("00000001/00000001000003.tmp"), b"").unwrap();
        fs::write(root.join("00000001/00000001000001.lck"), b"").unwrap();
        assert_eq!(intermediate_dirs(root).unwrap(), ["00000001", "00000002"]);
        assert_eq!(
            element_names(root).unwrap(),
            [
                "00000001/00000001000001",
                "00000001/00000001000002",
                "00000002/00000002000001"
            ]
        );
        assert_eq!(count_elements(root).unwrap(), 3);
        assert_eq!(count_in(&root.join("00000001")).unwrap(), 2);
        assert_eq!(count_in(&root.join("missing")).unwrap(), 0);
        assert!(element_names(&root.join("missing")).unwrap().is_empty());
    }

    #[test]
    fn element_path_refuses_names_outside_the_pattern() {
        let root = Path::new("/q");
        assert_eq!(
            element_path(root, "00000001/00000001000001").unwrap(),
            Path::new("/q/00000001/00000001000001")
        );
        for bad in ["../etc/passwd", "00000001", "00000001/00000001000001/x", ""] {
            assert!(
                matches!(
                    element_path(root, bad),
                    Err(QueueError::InvalidName { ref name, .. }) if name == bad
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn only_empty_directories_but_the_last_are_removed() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        for dir in ["00000001", "00000002", "00000003"] {
            fs::create_dir(root.join(dir)).unwrap();
        }
        fs::write(root.join("00000002/00000002000001"), b"").unwrap();
        let dirs = intermediate_dirs(root).unwrap();
        // One listed directory is already gone: not an error, not counted.
        let mut listed = dirs.clone();
        listed.insert(0, "00000000".to_string());
        assert_eq!(remove_empty_but_last(root, &listed).unwrap(), 1);
        assert!(!root.join("00000001").exists());
        assert!(root.join("00000002").exists());
        assert!(root.join("00000003").exists(), "the last one stays");
        assert_eq!(remove_empty_but_last(root, &[]).unwrap(), 0);
    }
}
