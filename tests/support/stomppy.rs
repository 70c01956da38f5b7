//! A Python virtual environment with the stock `stomp.py` client, for interoperability tests.
//!
//! The venv lives under `CARGO_TARGET_TMPDIR/pyenv-stomp` and is created once; a lock file
//! (`flock`) keeps parallel test binaries from creating it at the same time. Any failure (no
//! `python3`, no network for pip…) fails the test loudly: interop tests never skip silently.
#![allow(dead_code)]

use std::fs::File;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Holds an exclusive `flock` on a file until dropped.
struct Lock(File);

impl Lock {
    fn acquire(path: &Path) -> Lock {
        let f = File::create(path).unwrap_or_else(|e| panic!("cannot create {path:?}: {e}"));
        // SAFETY: flock on a file descriptor we own and keep open for the lock's lifetime.
        let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) };
        assert_eq!(
            rc,
            0,
            "flock {path:?} failed: {}",
            std::io::Error::last_os_error()
        );
        Lock(f)
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        // SAFETY: as above; closing the file would release the lock anyway.
        unsafe { libc::flock(self.0.as_raw_fd(), libc::LOCK_UN) };
    }
}

fn run(cmd: &mut Command, what: &str) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The path of a Python interpreter that can `import stomp`, creating the venv if needed.
pub fn python() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    std::fs::create_dir_all(&root).unwrap();
    let venv = root.join("pyenv-stomp");
    let python = venv.join("bin").join("python");
    let _lock = Lock::acquire(&root.join("pyenv-stomp.lock"));
    let ready = venv.join(".ready");
    if !ready.exists() {
        let _ = std::fs::remove_dir_all(&venv);
        run(
            Command::new("python3").arg("-m").arg("venv").arg(&venv),
            "creating the Python venv",
        );
        run(
            Command::new(&python).args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "stomp.py",
            ]),
            "pip install stomp.py",
        );
        run(
            Command::new(&python).args(["-c", "import stomp"]),
            "importing stomp.py",
        );
        std::fs::write(&ready, b"ok\n").unwrap();
    }
    python
}
