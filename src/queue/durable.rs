//! File-system helpers that make writes durable and permissions exact.
//!
//! A message is acknowledged to its sender as soon as it is in a queue, so "in the queue" must
//! mean "on the disk": the helpers here create files exclusively, set their modes explicitly
//! (independently of the process umask) and `fsync` files and the directories whose entries
//! changed.

use std::ffi::CString;
use std::fs::{self, DirBuilder, File, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use super::error::{io_err, QueueError};

/// Permission bits given to what a queue creates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Modes {
    /// Mode of element and field files (default `0o600`).
    pub file: u32,
    /// Mode of directories (default `0o700`).
    pub dir: u32,
}

impl Default for Modes {
    fn default() -> Self {
        Modes {
            file: 0o600,
            dir: 0o700,
        }
    }
}

/// Creates `path` exclusively (`O_CREAT|O_EXCL`) with exactly `mode` and writes `data` to it.
/// The file is not synced: the caller decides when (alone or in a batch).
pub(crate) fn create_new_file(path: &Path, data: &[u8], mode: u32) -> io::Result<File> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)?;
    // The umask may have removed bits from `mode`; fchmod is not subject to it.
    file.set_permissions(Permissions::from_mode(mode))?;
    file.write_all(data)?;
    Ok(file)
}

/// Creates one directory with exactly `mode`. Returns `Ok(false)` if it already exists.
pub(crate) fn make_dir(path: &Path, mode: u32) -> io::Result<bool> {
    match DirBuilder::new().mode(mode).create(path) {
        Ok(()) => {
            fs::set_permissions(path, Permissions::from_mode(mode))?;
            Ok(true)
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && path.is_dir() => Ok(false),
        Err(e) => Err(e),
    }
}

/// Creates a directory and its missing parents, each with exactly `mode`; syncs the parent of
/// every directory it created so that the new entries survive a crash.
pub(crate) fn make_dir_all(path: &Path, mode: u32) -> Result<(), QueueError> {
    if path.is_dir() {
        return Ok(());
    }
    if let Some(parent) = path.parent() {
        if !parent.as_os_str().is_empty() {
            make_dir_all(parent, mode)?;
        }
    }
    if make_dir(path, mode).map_err(io_err("create directory", path))? {
        if let Some(parent) = path.parent() {
            let parent = if parent.as_os_str().is_empty() {
                Path::new(".")
            } else {
                parent
            };
            sync_dir(parent)?;
        }
    }
    Ok(())
}

/// Flushes a directory's entries to disk.
pub(crate) fn sync_dir(path: &Path) -> Result<(), QueueError> {
    open_dir(path)?
        .sync_all()
        .map_err(io_err("fsync directory", path))
}

/// Opens a directory so that it can be synced (see [`sync_concurrently`]).
pub(crate) fn open_dir(path: &Path) -> Result<File, QueueError> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
        .open(path)
        .map_err(io_err("open directory", path))
}

/// A file or directory to sync, with its path for the error message.
pub(crate) type SyncItem = (PathBuf, File);

/// Threads of the sync pool, besides the calling thread.
const SYNC_WORKERS: usize = 7;

/// An `fsync` that returns within this did not wait for a disk (tmpfs; nothing to write).
const QUICK: Duration = Duration::from_micros(50);

/// Whether every sync of the last batch returned within [`QUICK`]: then the next batch is
/// synced by the calling thread alone, for as long as its syncs stay quick. Waking helper
/// threads costs more than syncs that do not wait (about eight context switches per stored
/// message, measured with one sender on tmpfs); where syncs wait, the first slow one sends the
/// rest of its batch to the pool. Starts `false`: concurrent, the right choice on a disk.
static QUICK_SYNCS: AtomicBool = AtomicBool::new(false);

/// One [`sync_concurrently`] call, shared by the threads that work on it.
struct SyncBatch {
    items: Vec<SyncItem>,
    next: AtomicUsize,
    failed: Mutex<Option<(usize, io::Error)>>,
    /// Set when one of its syncs took longer than [`QUICK`].
    slow: AtomicBool,
}

impl SyncBatch {
    /// Syncs items until none is left (or one failed: the batch fails as a whole). With
    /// `until_slow`, stops after the first sync that took longer than [`QUICK`].
    fn work(&self, until_slow: bool) {
        loop {
            let i = self.next.fetch_add(1, Ordering::Relaxed);
            let Some((_, file)) = self.items.get(i) else {
                return;
            };
            let started = Instant::now();
            if let Err(e) = file.sync_all() {
                self.next.store(self.items.len(), Ordering::Relaxed);
                if let Ok(mut first) = self.failed.lock() {
                    first.get_or_insert((i, e));
                }
            }
            if started.elapsed() > QUICK {
                self.slow.store(true, Ordering::Relaxed);
                if until_slow {
                    return;
                }
            }
        }
    }

    /// Whether every item has been taken.
    fn taken(&self) -> bool {
        self.next.load(Ordering::Relaxed) >= self.items.len()
    }
}

type SyncJob = (Arc<SyncBatch>, mpsc::Sender<()>);

/// The pool's queue of jobs, or `None` if no thread could be started. The threads live as long
/// as the process: starting threads per batch cost about as much as the syncs on a fast disk.
fn sync_pool() -> Option<&'static Mutex<mpsc::Sender<SyncJob>>> {
    static POOL: OnceLock<Option<Mutex<mpsc::Sender<SyncJob>>>> = OnceLock::new();
    POOL.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<SyncJob>();
        let rx = Arc::new(Mutex::new(rx));
        let mut started = 0;
        for i in 0..SYNC_WORKERS {
            let rx = rx.clone();
            let worker = move || loop {
                // The lock is held only while waiting for a job, not while syncing.
                let job = match rx.lock() {
                    Ok(rx) => rx.recv(),
                    Err(_) => return,
                };
                let Ok((batch, done)) = job else { return };
                batch.work(false);
                let _ = done.send(());
            };
            let spawned = std::thread::Builder::new()
                .name(format!("ssm-fsync-{i}"))
                .spawn(worker);
            started += usize::from(spawned.is_ok());
        }
        (started > 0).then_some(Mutex::new(tx))
    })
    .as_ref()
}

/// `fsync`s every file (or directory) of `items`, several at once, and returns the first
/// failure, naming its path.
///
/// Why concurrently: an `fsync` mostly waits — for the journal commit and the disk's cache
/// flush — and file systems fold the syncs that wait together into one commit and one flush
/// (ext4's jbd2, XFS's log force, the block layer's flush sequencing). One after another, a
/// batch of N elements of four inodes each waits for 4N commits; issued together it waits for
/// about one. The calling thread takes part; without a pool it does all the work itself.
pub(crate) fn sync_concurrently(items: Vec<SyncItem>) -> Result<(), QueueError> {
    let batch = Arc::new(SyncBatch {
        items,
        next: AtomicUsize::new(0),
        failed: Mutex::new(None),
        slow: AtomicBool::new(false),
    });
    if QUICK_SYNCS.load(Ordering::Relaxed) {
        batch.work(true);
    }
    let left = batch.items.len() - batch.next.load(Ordering::Relaxed).min(batch.items.len());
    let helpers = left.saturating_sub(1).min(SYNC_WORKERS);
    let (done_tx, done_rx) = mpsc::channel();
    let mut queued = 0;
    if helpers > 0 {
        if let Some(Ok(pool)) = sync_pool().map(Mutex::lock) {
            for _ in 0..helpers {
                if pool.send((batch.clone(), done_tx.clone())).is_ok() {
                    queued += 1;
                }
            }
        }
    }
    drop(done_tx);
    if !batch.taken() {
        batch.work(false);
    }
    // Every helper must be done with the batch before its result is known.
    for _ in 0..queued {
        if done_rx.recv().is_err() {
            break;
        }
    }
    QUICK_SYNCS.store(!batch.slow.load(Ordering::Relaxed), Ordering::Relaxed);
    let failed = match batch.failed.lock() {
        Ok(mut f) => f.take(),
        Err(poisoned) => poisoned.into_inner().take(),
    };
    match failed {
        None => Ok(()),
        Some((i, err)) => {
            let path = batch
                .items
                .get(i)
                .map_or_else(PathBuf::new, |(p, _)| p.clone());
            Err(QueueError::Io {
                op: "fsync",
                path,
                err,
            })
        }
    }
}

/// Sets the access and modification times of `path` to now (like `os.utime(path, None)`).
pub(crate) fn touch(path: &Path) -> io::Result<()> {
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    // SAFETY: `c` is a valid NUL-terminated string that outlives the call; a null `times`
    // pointer means "now" per utimensat(2).
    let rc = unsafe { libc::utimensat(libc::AT_FDCWD, c.as_ptr(), std::ptr::null(), 0) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Renames `from` to `to` unless `to` exists (`renameat2` with `RENAME_NOREPLACE`: an
/// `EEXIST` error then). A plain `rename` replaces an *empty* directory at `to`: two writers
/// that picked the same time-based name could then move an element into a directory another
/// one is emptying, whose final `rmdir` would fail with the element inside. Where the file
/// system or kernel lacks the flag, the plain `rename` (which never replaces a non-empty
/// directory) is used.
pub(crate) fn rename_noreplace(from: &Path, to: &Path) -> io::Result<()> {
    let f = CString::new(from.as_os_str().as_bytes())?;
    let t = CString::new(to.as_os_str().as_bytes())?;
    // SAFETY: both are valid NUL-terminated paths that outlive the call; renameat2 only reads
    // them, and AT_FDCWD makes them relative to the working directory as `rename` does.
    let r = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            f.as_ptr(),
            libc::AT_FDCWD,
            t.as_ptr(),
            libc::RENAME_NOREPLACE,
        )
    };
    if r == 0 {
        return Ok(());
    }
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::EINVAL) | Some(libc::ENOSYS) => fs::rename(from, to),
        _ => Err(e),
    }
}

/// Removes a file, treating "already gone" as success. Returns whether it removed something.
pub(crate) fn remove_if_exists(path: &Path) -> io::Result<bool> {
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// `lstat`s `path`; a path that is gone (taken or removed by another process since it was
/// listed) is `Ok(None)` rather than an error.
pub(crate) fn stat_if_exists(path: &Path) -> Result<Option<fs::Metadata>, QueueError> {
    match fs::symlink_metadata(path) {
        Ok(md) => Ok(Some(md)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err("stat", path)(e)),
    }
}

/// Lists the names of a directory's entries; a missing directory lists as empty.
pub(crate) fn list_dir(path: &Path) -> Result<Vec<String>, QueueError> {
    let rd = match fs::read_dir(path) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err("list directory", path)(e)),
    };
    let mut names = Vec::new();
    for entry in rd {
        let entry = entry.map_err(io_err("list directory", path))?;
        // Names that are not UTF-8 cannot be queue names; skipping them is what the patterns
        // would do anyway.
        if let Ok(name) = entry.file_name().into_string() {
            names.push(name);
        }
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn a_rename_never_replaces_an_empty_directory() {
        // The race it closes: another remover's element directory, emptied but not yet
        // removed, under the name this one picked. A plain rename would take its place.
        let d = tempfile::tempdir().unwrap();
        let (elt, taken) = (d.path().join("elt"), d.path().join("taken"));
        fs::create_dir(&elt).unwrap();
        fs::write(elt.join("body"), b"m").unwrap();
        fs::create_dir(&taken).unwrap();
        let err = rename_noreplace(&elt, &taken).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EEXIST));
        assert!(elt.join("body").is_file() && list_dir(&taken).unwrap().is_empty());
        rename_noreplace(&elt, &d.path().join("free")).unwrap();
        assert!(d.path().join("free/body").is_file());
    }

    #[test]
    fn modes_are_exact_whatever_the_umask() {
        let dir = tempfile::tempdir().unwrap();
        // SAFETY: umask is process-wide; the restored value is the previous one. Other tests in
        // this binary set modes explicitly, so a momentary umask change cannot affect them.
        let old = unsafe { libc::umask(0o077) };
        let f = dir.path().join("f");
        create_new_file(&f, b"x", 0o640).unwrap();
        let d = dir.path().join("a/b");
        make_dir_all(&d, 0o750).unwrap();
        unsafe { libc::umask(old) };
        assert_eq!(fs::metadata(&f).unwrap().mode() & 0o777, 0o640);
        assert_eq!(fs::metadata(&d).unwrap().mode() & 0o777, 0o750);
        assert_eq!(
            fs::metadata(dir.path().join("a")).unwrap().mode() & 0o777,
            0o750
        );
    }

    #[test]
    fn stat_if_exists_tells_gone_from_failed() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("f");
        fs::write(&f, b"abc").unwrap();
        assert_eq!(stat_if_exists(&f).unwrap().unwrap().len(), 3);
        assert!(stat_if_exists(&dir.path().join("gone")).unwrap().is_none());
        // A regular file used as a directory is ENOTDIR: a real error, named with its path.
        let err = stat_if_exists(&f.join("x")).unwrap_err();
        assert!(
            matches!(err, QueueError::Io { op: "stat", ref path, .. } if path == &f.join("x")),
            "{err}"
        );
    }

    #[test]
    fn sync_concurrently_syncs_all_and_names_the_one_that_failed() {
        let dir = tempfile::tempdir().unwrap();
        let mut items: Vec<(PathBuf, File)> = (0..20)
            .map(|i| {
                let p = dir.path().join(format!("f{i}"));
                let f = create_new_file(&p, b"data", 0o600).unwrap();
                (p, f)
            })
            .collect();
        items.push((dir.path().to_path_buf(), open_dir(dir.path()).unwrap()));
        let reopen = |items: &[SyncItem]| -> Vec<SyncItem> {
            items
                .iter()
                .map(|(p, f)| (p.clone(), f.try_clone().unwrap()))
                .collect()
        };
        sync_concurrently(reopen(&items)).unwrap();
        sync_concurrently(reopen(&items[..1])).unwrap();
        sync_concurrently(Vec::new()).unwrap();
        // fsync(2) on /dev/null is EINVAL: a sync that fails, wherever it sits in the batch,
        // whether the calling thread syncs alone (quick syncs) or with the pool.
        let null = Path::new("/dev/null");
        items.insert(7, (null.to_path_buf(), File::open(null).unwrap()));
        for quick in [true, false, true] {
            QUICK_SYNCS.store(quick, Ordering::Relaxed);
            let err = sync_concurrently(reopen(&items)).unwrap_err();
            assert!(
                matches!(err, QueueError::Io { op: "fsync", ref path, .. } if path == null),
                "{err}"
            );
        }
        for quick in [true, false] {
            QUICK_SYNCS.store(quick, Ordering::Relaxed);
            sync_concurrently(reopen(&items[8..])).unwrap();
        }
    }

    #[test]
    fn create_new_file_refuses_to_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("f");
        create_new_file(&f, b"one", 0o600).unwrap();
        let err = create_new_file(&f, b"two", 0o600).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(fs::read(&f).unwrap(), b"one");
    }
}
