//! PID files: the habit operators and init scripts rely on to find a daemon and to stop a
//! second copy from starting.
//!
//! Guarantees:
//! - [`Pidfile::acquire`] refuses to start while the file names a live process other than this
//!   one ([`PidfileError::Running`]); a file naming a dead process (or holding garbage) is
//!   stale and is taken over, and the caller gets a warning to log.
//! - The file is written atomically (a temporary file in the same directory, fsynced, then
//!   renamed over), so a reader never sees a half-written PID.
//! - Dropping the [`Pidfile`] removes the file, but only if it still names this process (a
//!   successor that took over a file we left behind is not disturbed).

use std::io::Write;
use std::path::{Path, PathBuf};

/// Why a PID file could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum PidfileError {
    /// Another live process holds it.
    #[error("pidfile {}: already running as process {pid}", path.display())]
    Running {
        /// The file.
        path: PathBuf,
        /// The live process named in it.
        pid: i32,
    },
    /// The file could not be read, written or renamed.
    #[error("pidfile {}: {error}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        error: std::io::Error,
    },
}

/// A PID file held by this process; removed on drop.
#[derive(Debug)]
pub struct Pidfile {
    path: PathBuf,
    pid: i32,
}

/// Whether a process with this PID exists (signal 0 probes without sending anything; EPERM
/// means it exists but belongs to someone else).
pub fn process_alive(pid: i32) -> bool {
    if pid <= 0 {
        return false;
    }
    // SAFETY: kill with signal 0 sends nothing; it only checks that the PID exists.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// Reads the PID named in a file, if the file holds one.
pub fn read_pid(path: &Path) -> std::io::Result<Option<i32>> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(text.trim().parse::<i32>().ok().filter(|p| *p > 0)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

impl Pidfile {
    /// Takes the PID file for this process. Returns the file and, when a stale file was taken
    /// over, a warning for the caller to log.
    pub fn acquire(path: &Path) -> Result<(Pidfile, Option<String>), PidfileError> {
        let io = |error| PidfileError::Io {
            path: path.to_path_buf(),
            error,
        };
        let me = std::process::id() as i32;
        let mut warning = None;
        if path.exists() {
            match read_pid(path).map_err(io)? {
                Some(pid) if pid != me && process_alive(pid) => {
                    return Err(PidfileError::Running {
                        path: path.to_path_buf(),
                        pid,
                    })
                }
                Some(pid) if pid != me => {
                    warning = Some(format!(
                        "pidfile {}: process {pid} is gone; taking over the stale file",
                        path.display()
                    ))
                }
                Some(_) => {}
                None => {
                    warning = Some(format!(
                        "pidfile {}: holds no PID; taking over the stale file",
                        path.display()
                    ))
                }
            }
        }
        write_atomically(path, &format!("{me}\n")).map_err(io)?;
        Ok((
            Pidfile {
                path: path.to_path_buf(),
                pid: me,
            },
            warning,
        ))
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Pidfile {
    fn drop(&mut self) {
        if let Ok(Some(pid)) = read_pid(&self.path) {
            if pid == self.pid {
                let _ = std::fs::remove_file(&self.path);
            }
        }
    }
}

/// Writes `text` to `path` through a temporary file in the same directory and a rename.
fn write_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".pidfile")
        .tempfile_in(dir)?;
    tmp.write_all(text.as_bytes())?;
    tmp.as_file().sync_all()?;
    // Readable by monitoring tools and init scripts, as PID files traditionally are.
    use std::os::unix::fs::PermissionsExt;
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(0o644))?;
    tmp.persist(path).map_err(|e| e.error)?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_read_and_removed() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("ssm.pid");
        let (pf, warning) = Pidfile::acquire(&path).unwrap();
        assert!(warning.is_none());
        assert_eq!(read_pid(&path).unwrap(), Some(std::process::id() as i32));
        drop(pf);
        assert!(!path.exists());
    }

    #[test]
    fn refuses_a_live_process_and_takes_over_a_dead_one() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("ssm.pid");
        // PID 1 is always alive.
        std::fs::write(&path, "1\n").unwrap();
        let err = Pidfile::acquire(&path).unwrap_err();
        assert!(matches!(err, PidfileError::Running { pid: 1, .. }), "{err}");
        assert!(err.to_string().contains("already running as process 1"));
        assert_eq!(read_pid(&path).unwrap(), Some(1));

        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id() as i32;
        child.wait().unwrap();
        std::fs::write(&path, format!("{dead}\n")).unwrap();
        let (_pf, warning) = Pidfile::acquire(&path).unwrap();
        assert!(warning.unwrap().contains("is gone"));

        std::fs::write(&path, "garbage").unwrap();
        let (_pf2, warning) = Pidfile::acquire(&path).unwrap();
        assert!(warning.unwrap().contains("holds no PID"));
    }

    #[test]
    fn leaves_a_successors_file_alone() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("ssm.pid");
        let (pf, _) = Pidfile::acquire(&path).unwrap();
        std::fs::write(&path, "1\n").unwrap();
        drop(pf);
        assert_eq!(read_pid(&path).unwrap(), Some(1));
    }
}
