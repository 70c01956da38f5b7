//! Fuzzes the queue readers against hostile on-disk state: the input describes files (names
//! and contents) planted in a dirq `QueueSimple` (outgoing) and a dirq `Queue` (incoming); then
//! every reader operation (`names`, `count`, `get`, `lock`, `unlock`, `purge`) must return a
//! value or an error, never panic, and only list names that `get` can read or report missing.
//!
//! Input format: records separated by NUL bytes, alternating a relative path (components made
//! safe: no `..`, no absolute paths) and the file's contents.
#![no_main]

use std::path::{Component, Path, PathBuf};

use libfuzzer_sys::fuzz_target;
use ssm::queue::{Dirq, Outgoing, PathType};

fn safe_relative(raw: &[u8]) -> Option<PathBuf> {
    let text = String::from_utf8_lossy(raw);
    let path = Path::new(text.as_ref());
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(p) => out.push(p),
            _ => return None,
        }
    }
    (out.components().count() > 0 && out.components().count() <= 4).then_some(out)
}

fn plant(root: &Path, data: &[u8]) {
    let mut parts = data.split(|&b| b == 0);
    while let (Some(name), Some(content)) = (parts.next(), parts.next()) {
        let Some(rel) = safe_relative(name) else { continue };
        let path = root.join(rel);
        if let Some(parent) = path.parent() {
            let _ = std::fs::create_dir_all(parent);
        }
        let _ = std::fs::write(&path, content);
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(dir) = tempfile::tempdir() else { return };
    let (first, second) = data.split_at(data.len() / 2);

    let out_path = dir.path().join("outgoing");
    let _ = std::fs::create_dir_all(&out_path);
    plant(&out_path, first);
    if let Ok(q) = Outgoing::open(&out_path, PathType::QueueSimple) {
        let _ = q.count();
        if let Ok(names) = q.names() {
            for name in names.iter().take(16) {
                if let Ok(true) = q.lock(name) {
                    let _ = q.get(name);
                    let _ = q.unlock(name);
                }
            }
        }
        let _ = q.purge();
    }

    let in_path = dir.path().join("incoming");
    let _ = std::fs::create_dir_all(&in_path);
    plant(&in_path, second);
    if let Ok(q) = Dirq::open(&in_path) {
        let _ = q.count();
        if let Ok(names) = q.names() {
            for name in names.iter().take(16) {
                let _ = q.get(name);
                if let Ok(true) = q.lock(name) {
                    let _ = q.unlock(name);
                }
            }
        }
        let _ = q.purge();
    }
});
