//! `Dirq`: the receiver's queues, compatible with Python `dirq.queue.Queue` and the schema
//! `body: string, signer: string?, empaid: string?` (plus `error: string?` for reject).
//!
//! Layout: `<path>/temporary/`, `<path>/obsolete/`, and intermediate directories `%08x`
//! counting from `00000000`, each holding at most 16000 element directories named
//! `%08x%05x%01x`. An element directory has one file per present field; dirq's `string` type is
//! the field's UTF-8 text written as is (no terminator, no newline translation). An element is
//! built in `temporary/` and `rename`d into its intermediate directory, so a reader never sees
//! it half-built. A lock is the directory `<element>/locked` (`mkdir` is atomic).
//!
//! Guarantees: when [`Dirq::add`] or [`Dirq::add_batch`] returns, the field files, the element
//! directory and every directory entry that changed are on disk. A batch reports one result
//! per record ([`Dirq::add_batch_partial`]): a record reported stored is durable, and a record
//! reported failed is not in the queue (a failed last fsync round takes its elements out
//! again, best effort), so that a disk that fills in the middle of a batch neither loses what
//! was stored nor gets it stored twice by a resend.

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::durable::{self, Modes};
use super::error::{io_err, QueueError};
use super::layout;
use super::naming;
use super::simple::is_older;
use super::{PurgeReport, DEFAULT_MAXLOCK, DEFAULT_MAXTEMP};

const TEMPORARY: &str = "temporary";
const OBSOLETE: &str = "obsolete";
const LOCKED: &str = "locked";
/// dirq's default maximum number of elements per intermediate directory.
pub const DEFAULT_MAXELTS: usize = 16000;
/// How many records one fsync round of [`Dirq::add_batch`] covers at most: a round holds
/// about five descriptors per record open, which must stay well under the usual 1024 limit.
const BATCH_CHUNK: usize = 64;

/// One element of the receiver's queues.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Record {
    /// The message (for incoming: the decrypted, verified bytes). Written raw: accounting
    /// records are UTF-8 text, and bytes that are not are still stored as received.
    pub body: Vec<u8>,
    /// The signer's DN in `/K=V/K=V` form.
    pub signer: Option<String>,
    /// The message id (`empa-id`).
    pub empaid: Option<String>,
    /// Why the message was rejected (reject queue only).
    pub error: Option<String>,
}

impl Record {
    fn fields(&self) -> Vec<(&'static str, &[u8])> {
        let mut v = vec![("body", self.body.as_slice())];
        for (k, val) in [
            ("signer", &self.signer),
            ("empaid", &self.empaid),
            ("error", &self.error),
        ] {
            if let Some(s) = val {
                v.push((k, s.as_bytes()));
            }
        }
        v
    }
}

/// A `dirq.queue.Queue`-compatible queue directory with the SSM schema.
#[derive(Debug, Clone)]
pub struct Dirq {
    path: PathBuf,
    modes: Modes,
    rndhex: u8,
    maxelts: usize,
    /// Test fault hook: the records of a batch from this index on fail as on a full disk.
    #[cfg(test)]
    pub(crate) fail_from: Option<usize>,
}

/// What [`Dirq::add_batch_partial`] did: one result per record.
#[derive(Debug)]
pub struct BatchAdded {
    /// The names of the records stored, in order: those of the first `stored.len()` records.
    pub stored: Vec<String>,
    /// Why the records after those are not stored (`None`: all are).
    pub error: Option<QueueError>,
}

/// An element built in `temporary/`, not yet in the queue.
struct Built {
    temp: PathBuf,
    files: Vec<(PathBuf, File)>,
}

impl Dirq {
    /// Opens the queue at `path`, creating it, `temporary/` and `obsolete/` if missing.
    pub fn open(path: &Path) -> Result<Dirq, QueueError> {
        Dirq::open_with(path, Modes::default(), DEFAULT_MAXELTS)
    }

    /// Opens the queue with explicit modes and maximum elements per intermediate directory.
    pub fn open_with(path: &Path, modes: Modes, maxelts: usize) -> Result<Dirq, QueueError> {
        durable::make_dir_all(&path.join(TEMPORARY), modes.dir)?;
        durable::make_dir_all(&path.join(OBSOLETE), modes.dir)?;
        Ok(Dirq {
            path: path.to_path_buf(),
            modes,
            rndhex: naming::random_hex(),
            maxelts: maxelts.max(1),
            #[cfg(test)]
            fail_from: None,
        })
    }

    /// The queue directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn element_path(&self, name: &str) -> Result<PathBuf, QueueError> {
        layout::element_path(&self.path, name)
    }

    /// Adds one record. Durable on return.
    pub fn add(&self, rec: &Record) -> Result<String, QueueError> {
        let mut names = self.add_batch(std::slice::from_ref(rec))?;
        // add_batch returns one name per record.
        names.pop().ok_or_else(|| QueueError::Io {
            op: "add to",
            path: self.path.clone(),
            err: io::Error::other("no element name returned"),
        })
    }

    /// Adds several records with one fsync round for all of them (group commit). Durable on
    /// return; names are returned in the order of `recs`.
    ///
    /// On error, the records before the one that failed may be stored all the same: a caller
    /// that must know which (the receiver acks what is stored) uses [`Dirq::add_batch_partial`].
    pub fn add_batch(&self, recs: &[Record]) -> Result<Vec<String>, QueueError> {
        let added = self.add_batch_partial(recs);
        match added.error {
            None => Ok(added.stored),
            Some(e) => Err(e),
        }
    }

    /// Adds several records like [`Dirq::add_batch`] and says which are stored: the first
    /// `stored.len()` records are in the queue, durably; the others are not, because of
    /// `error`. Records are added in order and the first failure stops the batch, so what is
    /// stored is always a prefix of `recs`.
    pub fn add_batch_partial(&self, recs: &[Record]) -> BatchAdded {
        let mut stored = Vec::with_capacity(recs.len());
        for chunk in recs.chunks(BATCH_CHUNK) {
            let (names, error) = self.add_chunk(chunk, stored.len());
            stored.extend(names);
            if let Some(error) = error {
                return BatchAdded {
                    stored,
                    error: Some(error),
                };
            }
        }
        BatchAdded {
            stored,
            error: None,
        }
    }

    /// Builds `rec` in `temporary/`; `index` is its place in the whole batch (for the test
    /// fault hook).
    fn build(&self, rec: &Record, index: usize) -> Result<Built, QueueError> {
        #[cfg(test)]
        if self.fail_from.is_some_and(|n| index >= n) {
            return Err(io_err("write", &self.path.join(TEMPORARY))(
                io::Error::from_raw_os_error(libc::ENOSPC),
            ));
        }
        #[cfg(not(test))]
        let _ = index;
        let tmp_root = self.path.join(TEMPORARY);
        let temp = loop {
            let temp = tmp_root.join(naming::element_name(self.rndhex));
            match durable::make_dir(&temp, self.modes.dir) {
                Ok(true) => break temp,
                Ok(false) => continue,
                Err(e) => return Err(io_err("create directory", &temp)(e)),
            }
        };
        let mut files = Vec::new();
        for (field, data) in rec.fields() {
            let p = temp.join(field);
            match durable::create_new_file(&p, data, self.modes.file) {
                Ok(f) => files.push((p, f)),
                Err(e) => {
                    drop(files);
                    let _ = delete_element_dir(&temp);
                    return Err(io_err("write", &p)(e));
                }
            }
        }
        Ok(Built { temp, files })
    }

    /// Adds one chunk; returns the names of the records stored (a prefix of `recs`) and why
    /// the others are not. `first` is the index of `recs[0]` in the whole batch.
    ///
    /// The records built before a failure (a full disk) are still committed. A record counts
    /// as stored only once its rename into the queue is durable; when that last fsync round
    /// fails, the renamed elements are taken out of the queue again (best effort), so that a
    /// failure reported here is one that a resend can repair without storing twice.
    fn add_chunk(&self, recs: &[Record], first: usize) -> (Vec<String>, Option<QueueError>) {
        let mut built: Vec<Built> = Vec::with_capacity(recs.len());
        let mut error = None;
        for (i, rec) in recs.iter().enumerate() {
            match self.build(rec, first + i) {
                Ok(b) => built.push(b),
                Err(e) => {
                    error = Some(e);
                    break;
                }
            }
        }
        let discard = |built: Vec<Built>| {
            // Best effort: leave nothing for purge to find; the error is what matters.
            for b in built {
                drop(b.files);
                let _ = delete_element_dir(&b.temp);
            }
        };
        // Round 1: the data and the element directories themselves, all at once.
        let mut round = Vec::with_capacity(built.len() * 5);
        for b in &mut built {
            round.append(&mut b.files);
            match durable::open_dir(&b.temp) {
                Ok(f) => round.push((b.temp.clone(), f)),
                Err(e) => {
                    discard(built);
                    return (Vec::new(), Some(e));
                }
            }
        }
        if let Err(e) = durable::sync_concurrently(round) {
            discard(built);
            return (Vec::new(), Some(e));
        }
        let mut built = built.into_iter();
        let (names, touched, created_dir) = match self.move_into_place(&mut built) {
            Ok((names, touched, created_dir, None)) => (names, touched, created_dir),
            Ok((names, touched, created_dir, Some(e))) => {
                error.get_or_insert(e);
                (names, touched, created_dir)
            }
            Err(e) => {
                discard(built.collect());
                return (Vec::new(), Some(e));
            }
        };
        discard(built.collect());
        // Round 2: every directory whose entries changed, at once.
        let mut dirs: Vec<PathBuf> = touched.iter().map(|d| self.path.join(d)).collect();
        dirs.push(self.path.join(TEMPORARY));
        if created_dir {
            dirs.push(self.path.clone());
        }
        let synced = dirs
            .into_iter()
            .map(|d| durable::open_dir(&d).map(|f| (d, f)))
            .collect::<Result<Vec<_>, _>>()
            .and_then(durable::sync_concurrently);
        if let Err(e) = synced {
            for name in &names {
                if let Ok(elt) = self.element_path(name) {
                    let _ = self.withdraw(&elt);
                }
            }
            return (Vec::new(), Some(e));
        }
        (names, error)
    }

    /// Renames built elements into the queue, in order, until one fails. Returns the names of
    /// those moved, the intermediate directories touched, whether one was created, and the
    /// failure that stopped it (the element that failed and those after it stay in `built`).
    #[allow(clippy::type_complexity)]
    fn move_into_place(
        &self,
        built: &mut std::vec::IntoIter<Built>,
    ) -> Result<(Vec<String>, Vec<String>, bool, Option<QueueError>), QueueError> {
        let (mut dir, mut used, mut created_dir) = self.insertion_directory()?;
        let mut touched = vec![dir.clone()];
        let mut names = Vec::new();
        let fail = |names, touched, created_dir, e| Ok((names, touched, created_dir, Some(e)));
        for b in built.by_ref() {
            if used >= self.maxelts {
                dir = next_directory(&dir);
                let p = self.path.join(&dir);
                match durable::make_dir(&p, self.modes.dir) {
                    Ok(c) => created_dir |= c,
                    Err(e) => {
                        discard_one(b);
                        return fail(
                            names,
                            touched,
                            created_dir,
                            io_err("create directory", &p)(e),
                        );
                    }
                }
                used = match self.subdirs(&dir) {
                    Ok(n) => n,
                    Err(e) => {
                        discard_one(b);
                        return fail(names, touched, created_dir, e);
                    }
                };
                touched.push(dir.clone());
            }
            loop {
                let name = format!("{dir}/{}", naming::element_name(self.rndhex));
                let dest = self.path.join(&name);
                match durable::rename_noreplace(&b.temp, &dest) {
                    Ok(()) => {
                        names.push(name);
                        used += 1;
                        break;
                    }
                    // RACE: the target name is taken (or a purge removed the directory).
                    Err(e) if matches!(e.raw_os_error(), Some(libc::ENOTEMPTY | libc::EEXIST)) => {
                        continue
                    }
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {
                        let p = self.path.join(&dir);
                        match durable::make_dir(&p, self.modes.dir) {
                            Ok(c) => created_dir |= c,
                            Err(e) => {
                                let e = io_err("create directory", &p)(e);
                                discard_one(b);
                                return fail(names, touched, created_dir, e);
                            }
                        }
                    }
                    Err(e) => {
                        let e = io_err("rename", &b.temp)(e);
                        discard_one(b);
                        return fail(names, touched, created_dir, e);
                    }
                }
            }
        }
        Ok((names, touched, created_dir, None))
    }

    /// Takes an element that never became durable out of the queue again.
    fn withdraw(&self, elt: &Path) -> Result<(), QueueError> {
        let obsolete = self.path.join(OBSOLETE);
        let temp = loop {
            let temp = obsolete.join(naming::element_name(self.rndhex));
            match durable::rename_noreplace(elt, &temp) {
                Ok(()) => break temp,
                Err(e) if matches!(e.raw_os_error(), Some(libc::ENOTEMPTY | libc::EEXIST)) => {
                    continue
                }
                Err(e) => return Err(io_err("rename", elt)(e)),
            }
        };
        delete_element_dir(&temp)
    }

    /// Number of element directories in an intermediate directory. Uses the link count like
    /// dirq where the file system keeps it (`st_nlink - 2`), and counts entries otherwise.
    fn subdirs(&self, dir: &str) -> Result<usize, QueueError> {
        use std::os::unix::fs::MetadataExt;
        let p = self.path.join(dir);
        let Some(md) = durable::stat_if_exists(&p)? else {
            return Ok(0);
        };
        if md.nlink() >= 2 {
            Ok((md.nlink() - 2) as usize)
        } else {
            layout::count_in(&p)
        }
    }

    /// dirq's `_insertion_directory`: the last intermediate directory if it has room, else the
    /// next number (`00000000` for an empty queue). Returns the name, how many elements it
    /// holds, and whether this call created it.
    fn insertion_directory(&self) -> Result<(String, usize, bool), QueueError> {
        let dirs = layout::intermediate_dirs(&self.path)?;
        let next = match dirs.last() {
            None => "00000000".to_string(),
            Some(last) => {
                let used = self.subdirs(last)?;
                if used < self.maxelts {
                    return Ok((last.clone(), used, false));
                }
                next_directory(last)
            }
        };
        let p = self.path.join(&next);
        let created =
            durable::make_dir(&p, self.modes.dir).map_err(io_err("create directory", &p))?;
        let used = self.subdirs(&next)?;
        Ok((next, used, created))
    }

    /// All element names (`dddddddd/eeeeeeeeeeeeee`), oldest first; junk names are ignored.
    pub fn names(&self) -> Result<Vec<String>, QueueError> {
        layout::element_names(&self.path)
    }

    /// Number of elements in the intermediate directories, locked or not. (dirq's own `count`
    /// also counts what is in `temporary/` and `obsolete/`; this one does not.)
    pub fn count(&self) -> Result<usize, QueueError> {
        layout::count_elements(&self.path)
    }

    fn read_field(&self, elt: &Path, field: &'static str) -> Result<Option<Vec<u8>>, QueueError> {
        let p = elt.join(field);
        match fs::read(&p) {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                // A missing element, rather than a missing field, is an I/O error on it.
                if !elt.is_dir() {
                    return Err(io_err("read", elt)(e));
                }
                Ok(None)
            }
            Err(e) => Err(io_err("read", &p)(e)),
        }
    }

    fn read_text(
        &self,
        elt: &Path,
        name: &str,
        field: &'static str,
    ) -> Result<Option<String>, QueueError> {
        match self.read_field(elt, field)? {
            None => Ok(None),
            Some(v) => String::from_utf8(v)
                .map(Some)
                .map_err(|_| QueueError::NotUtf8 {
                    queue: self.path.clone(),
                    name: name.to_string(),
                    field,
                }),
        }
    }

    /// Reads an element. `body` is mandatory; the other fields are optional.
    pub fn get(&self, name: &str) -> Result<Record, QueueError> {
        let elt = self.element_path(name)?;
        let body = self
            .read_field(&elt, "body")?
            .ok_or_else(|| QueueError::MissingField {
                queue: self.path.clone(),
                name: name.to_string(),
                field: "body",
            })?;
        Ok(Record {
            body,
            signer: self.read_text(&elt, name, "signer")?,
            empaid: self.read_text(&elt, name, "empaid")?,
            error: self.read_text(&elt, name, "error")?,
        })
    }

    /// Locks an element (`mkdir <element>/locked`). `Ok(false)` if already locked or gone.
    pub fn lock(&self, name: &str) -> Result<bool, QueueError> {
        let p = self.element_path(name)?.join(LOCKED);
        match durable::make_dir(&p, self.modes.dir) {
            Ok(true) => {}
            Ok(false) => return Ok(false),
            // AlreadyExists here means the lock existed and the element has gone since.
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::AlreadyExists
                ) =>
            {
                return Ok(false)
            }
            Err(e) => return Err(io_err("create lock directory", &p)(e)),
        }
        // RACE (as in dirq): another process may have locked and removed the element while our
        // mkdir was in progress.
        Ok(durable::stat_if_exists(&p)?.is_some())
    }

    /// Unlocks an element; unlocking an element that is not locked is not an error.
    pub fn unlock(&self, name: &str) -> Result<(), QueueError> {
        let p = self.element_path(name)?.join(LOCKED);
        match fs::remove_dir(&p) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err("remove lock directory", &p)(e)),
        }
    }

    /// Whether an element is currently locked (an indication only).
    pub fn is_locked(&self, name: &str) -> Result<bool, QueueError> {
        Ok(self.element_path(name)?.join(LOCKED).is_dir())
    }

    /// Removes a locked element: moves it to `obsolete/` (durable), then deletes it.
    pub fn remove(&self, name: &str) -> Result<(), QueueError> {
        let elt = self.element_path(name)?;
        if !elt.join(LOCKED).is_dir() {
            return Err(QueueError::NotLocked {
                queue: self.path.clone(),
                name: name.to_string(),
            });
        }
        let obsolete = self.path.join(OBSOLETE);
        let temp = loop {
            let temp = obsolete.join(naming::element_name(self.rndhex));
            match durable::rename_noreplace(&elt, &temp) {
                Ok(()) => break temp,
                Err(e) if matches!(e.raw_os_error(), Some(libc::ENOTEMPTY | libc::EEXIST)) => {
                    continue
                }
                Err(e) => return Err(io_err("rename", &elt)(e)),
            }
        };
        if let Some(parent) = elt.parent() {
            durable::sync_dir(parent)?;
        }
        delete_element_dir(&temp)
    }

    /// Purges with dirq's defaults (volatile elements older than 300 s, locks older than 600 s).
    pub fn purge(&self) -> Result<PurgeReport, QueueError> {
        self.purge_with(DEFAULT_MAXTEMP, DEFAULT_MAXLOCK)
    }

    /// dirq's `purge`: removes empty intermediate directories but the last, element directories
    /// in `temporary/` and `obsolete/` older than `maxtemp`, and unlocks elements whose lock is
    /// older than `maxlock` (zero disables either).
    pub fn purge_with(
        &self,
        maxtemp: Duration,
        maxlock: Duration,
    ) -> Result<PurgeReport, QueueError> {
        let mut report = PurgeReport::default();
        let dirs = layout::intermediate_dirs(&self.path)?;
        report.directories_removed = layout::remove_empty_but_last(&self.path, &dirs)?;
        let now = SystemTime::now();
        if !maxtemp.is_zero() {
            for vol in [TEMPORARY, OBSOLETE] {
                let vdir = self.path.join(vol);
                for n in durable::list_dir(&vdir)? {
                    if !naming::is_element(&n) {
                        continue;
                    }
                    let p = vdir.join(&n);
                    if let Some(md) = durable::stat_if_exists(&p)? {
                        if is_older(&md, now, maxtemp) {
                            delete_element_dir(&p)?;
                            report.temporary_removed += 1;
                        }
                    }
                }
            }
        }
        if !maxlock.is_zero() {
            for name in self.names()? {
                let elt = self.path.join(&name);
                if !elt.join(LOCKED).is_dir() {
                    continue;
                }
                // mkdir of `locked` set the element directory's mtime: that is the lock's age.
                if let Some(md) = durable::stat_if_exists(&elt)? {
                    if is_older(&md, now, maxlock) {
                        self.unlock(&name)?;
                        report.locks_released += 1;
                    }
                }
            }
        }
        Ok(report)
    }
}

/// Deletes a built element that will not be moved into the queue.
fn discard_one(b: Built) {
    drop(b.files);
    let _ = delete_element_dir(&b.temp);
}

/// The intermediate directory that follows `dir` when it is full (dirq counts them in hex).
fn next_directory(dir: &str) -> String {
    // `dir` passed `naming::is_directory`, so it parses; 0 is only a fallback for a broken caller.
    format!("{:08x}", u64::from_str_radix(dir, 16).unwrap_or(0) + 1)
}

/// Deletes an element directory that is out of the queue (in `temporary/` or `obsolete/`).
///
/// A consumer that lost the race for an element can still create `locked` inside it after it
/// was moved here: its `mkdir` resolved the element's old path just before the rename (the
/// RACE noted in [`Dirq::lock`]), and the directory itself moved, not its name. The final
/// `rmdir` then finds it not empty; everything in these two directories is meant to go, so it
/// is emptied again (a handful of times: each intrusion needs a new losing `lock` on a name
/// that is already gone from the queue).
fn delete_element_dir(dir: &Path) -> Result<(), QueueError> {
    const ATTEMPTS: usize = 8;
    let mut attempt = 1;
    loop {
        empty_element_dir(dir)?;
        match fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::ENOTEMPTY) && attempt < ATTEMPTS => {
                attempt += 1;
            }
            Err(e) => return Err(io_err("remove directory", dir)(e)),
        }
    }
}

/// Removes an element directory's files, then its `locked` directory.
fn empty_element_dir(dir: &Path) -> Result<(), QueueError> {
    for n in durable::list_dir(dir)? {
        if n == LOCKED {
            continue;
        }
        let p = dir.join(&n);
        durable::remove_if_exists(&p).map_err(io_err("remove", &p))?;
    }
    let locked = dir.join(LOCKED);
    match fs::remove_dir(&locked) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err("remove directory", &locked)(e)),
    }
}

/// The receiver's store: `<path>/incoming` and `<path>/reject`.
#[derive(Debug, Clone)]
pub struct MessageStore {
    /// Verified messages, for the accounting software to load.
    pub incoming: Dirq,
    /// Messages that failed verification, with the reason in `error`.
    pub reject: Dirq,
}

impl MessageStore {
    /// Opens (creating if needed) `<path>/incoming` and `<path>/reject`.
    pub fn open(path: &Path) -> Result<MessageStore, QueueError> {
        let layout = super::StoreLayout::new(path);
        Ok(MessageStore {
            incoming: Dirq::open(&layout.incoming())?,
            reject: Dirq::open(&layout.reject())?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn rec(body: &str) -> Record {
        Record {
            body: body.as_bytes().to_vec(),
            signer: Some("/C=UK/O=eScience/CN=host.example.org".into()),
            empaid: Some(format!("id-{body}")),
            error: None,
        }
    }

    fn backdate(path: &Path, secs: u64) {
        let f = File::open(path).unwrap();
        f.set_modified(SystemTime::now() - Duration::from_secs(secs))
            .unwrap();
    }

    #[test]
    fn layout_and_fields_match_dirq() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("incoming");
        let q = Dirq::open(&root).unwrap();
        assert!(root.join("temporary").is_dir());
        assert!(root.join("obsolete").is_dir());
        let n = q.add(&rec("hello")).unwrap();
        assert!(n.starts_with("00000000/"), "{n}");
        assert!(naming::split_full(&n).is_some());
        let elt = root.join(&n);
        let mut files = durable::list_dir(&elt).unwrap();
        files.sort();
        assert_eq!(files, vec!["body", "empaid", "signer"]);
        assert_eq!(fs::read(elt.join("body")).unwrap(), b"hello");
        assert_eq!(fs::read(elt.join("empaid")).unwrap(), b"id-hello");
        assert!(durable::list_dir(&root.join("temporary"))
            .unwrap()
            .is_empty());
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&elt), 0o700);
        assert_eq!(mode(&root.join("00000000")), 0o700);
        assert_eq!(mode(&elt.join("body")), 0o600);
        assert_eq!(q.get(&n).unwrap(), rec("hello"));
    }

    #[test]
    fn optional_fields_and_raw_body_round_trip() {
        let d = tempfile::tempdir().unwrap();
        let q = Dirq::open(d.path()).unwrap();
        let r = Record {
            body: vec![0xff, 0x00, b'\n', 0xfe],
            signer: None,
            empaid: None,
            error: Some("signer not allowed".into()),
        };
        let n = q.add(&r).unwrap();
        assert_eq!(q.get(&n).unwrap(), r);
        fs::write(d.path().join(&n).join("signer"), [0xffu8]).unwrap();
        assert!(matches!(
            q.get(&n),
            Err(QueueError::NotUtf8 {
                field: "signer",
                ..
            })
        ));
        fs::remove_file(d.path().join(&n).join("body")).unwrap();
        assert!(matches!(
            q.get(&n),
            Err(QueueError::MissingField { field: "body", .. })
        ));
        assert!(matches!(
            q.get("00000000/0000000000000z"),
            Err(QueueError::InvalidName { .. })
        ));
    }

    #[test]
    fn intermediate_directories_roll_over_at_maxelts() {
        let d = tempfile::tempdir().unwrap();
        let q = Dirq::open_with(d.path(), Modes::default(), 3).unwrap();
        let recs: Vec<Record> = (0..7).map(|i| rec(&i.to_string())).collect();
        let mut names = q.add_batch(&recs[..5]).unwrap();
        names.push(q.add(&recs[5]).unwrap());
        names.push(q.add(&recs[6]).unwrap());
        let dirs: Vec<&str> = names.iter().map(|n| &n[..8]).collect();
        assert_eq!(
            dirs,
            ["00000000", "00000000", "00000000", "00000001", "00000001", "00000001", "00000002"]
        );
        assert_eq!(q.names().unwrap(), names, "oldest first");
        for (n, r) in names.iter().zip(&recs) {
            assert_eq!(&q.get(n).unwrap(), r);
        }
        assert_eq!(q.count().unwrap(), 7);
    }

    #[test]
    fn batch_add_returns_names_in_order_and_leaves_no_temporaries() {
        let d = tempfile::tempdir().unwrap();
        let q = Dirq::open(d.path()).unwrap();
        let recs: Vec<Record> = (0..300).map(|i| rec(&format!("m{i}"))).collect();
        let names = q.add_batch(&recs).unwrap();
        assert_eq!(names.len(), 300);
        let mut sorted = names.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), 300, "names are unique");
        for (n, r) in names.iter().zip(&recs) {
            assert_eq!(&q.get(n).unwrap(), r);
        }
        assert!(durable::list_dir(&d.path().join("temporary"))
            .unwrap()
            .is_empty());
        assert_eq!(q.add_batch(&[]).unwrap(), Vec::<String>::new());
    }

    #[test]
    fn a_batch_that_fails_past_its_first_chunk_reports_what_it_stored() {
        // 200 records, a full disk from the 100th on: the first chunk of 64 and 36 of the
        // second are stored and must be reported so, the others not stored at all.
        let d = tempfile::tempdir().unwrap();
        let mut q = Dirq::open(d.path()).unwrap();
        q.fail_from = Some(100);
        let recs: Vec<Record> = (0..200).map(|i| rec(&format!("m{i}"))).collect();
        let added = q.add_batch_partial(&recs);
        assert_eq!(added.stored.len(), 100);
        let err = added.error.expect("the batch failed");
        assert_eq!(
            err.io_error().and_then(io::Error::raw_os_error),
            Some(libc::ENOSPC)
        );
        assert_eq!(
            q.names().unwrap(),
            added.stored,
            "exactly what was reported"
        );
        for (n, r) in added.stored.iter().zip(&recs) {
            assert_eq!(&q.get(n).unwrap(), r);
        }
        assert!(durable::list_dir(&d.path().join("temporary"))
            .unwrap()
            .is_empty());
        // add_batch still fails as a whole.
        q.fail_from = Some(0);
        assert!(q.add_batch(&recs[..1]).is_err());
        assert_eq!(q.count().unwrap(), 100);
    }

    #[test]
    fn lock_is_a_directory_and_remove_needs_it() {
        let d = tempfile::tempdir().unwrap();
        let q = Dirq::open(d.path()).unwrap();
        let n = q.add(&rec("x")).unwrap();
        assert!(matches!(q.remove(&n), Err(QueueError::NotLocked { .. })));
        assert!(q.lock(&n).unwrap());
        assert!(d.path().join(&n).join("locked").is_dir());
        assert!(!q.lock(&n).unwrap());
        q.unlock(&n).unwrap();
        q.unlock(&n).unwrap();
        assert!(q.lock(&n).unwrap());
        q.remove(&n).unwrap();
        assert_eq!(q.count().unwrap(), 0);
        assert!(durable::list_dir(&d.path().join("obsolete"))
            .unwrap()
            .is_empty());
        assert!(!q.lock(&n).unwrap());
    }

    #[test]
    fn purge_cleans_half_built_elements_stale_locks_and_old_directories() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        let q = Dirq::open_with(root, Modes::default(), 1).unwrap();
        let a = q.add(&rec("a")).unwrap();
        let b = q.add(&rec("b")).unwrap();
        assert_eq!((&a[..8], &b[..8]), ("00000000", "00000001"));
        // A writer killed while building: a half-built element in temporary/.
        let half = root.join("temporary/00000001000001");
        fs::create_dir(&half).unwrap();
        fs::write(half.join("body"), b"half").unwrap();
        let fresh = root.join("temporary/00000001000002");
        fs::create_dir(&fresh).unwrap();
        assert_eq!(q.names().unwrap(), vec![a.clone(), b.clone()]);
        backdate(&half, 301);
        // A consumer killed while holding a lock.
        assert!(q.lock(&b).unwrap());
        backdate(&root.join(&b), 601);
        // An emptied old intermediate directory.
        q.lock(&a).unwrap();
        q.remove(&a).unwrap();
        let r = q.purge().unwrap();
        assert_eq!(
            r,
            PurgeReport {
                temporary_removed: 1,
                locks_released: 1,
                directories_removed: 1
            }
        );
        assert!(!half.exists());
        assert!(fresh.exists());
        assert!(!q.is_locked(&b).unwrap());
        assert!(!root.join("00000000").exists());
        assert_eq!(q.names().unwrap(), vec![b]);
    }

    #[test]
    fn message_store_opens_incoming_and_reject() {
        let d = tempfile::tempdir().unwrap();
        let s = MessageStore::open(d.path()).unwrap();
        s.incoming.add(&rec("ok")).unwrap();
        let mut bad = rec("bad");
        bad.error = Some("no".into());
        s.reject.add(&bad).unwrap();
        assert_eq!(s.incoming.path(), d.path().join("incoming"));
        assert_eq!(s.reject.count().unwrap(), 1);
        assert!(d.path().join("reject/temporary").is_dir());
    }
}
