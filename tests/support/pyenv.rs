//! A Python virtualenv with `dirq` and `stomp.py` from PyPI, shared by the test binaries.
//!
//! Use it from a test file with `#[path = "support/pyenv.rs"] mod pyenv;` and call
//! [`python`]. The venv lives in `$CARGO_TARGET_TMPDIR/pyenv` and is built once: an exclusive
//! `flock` on `pyenv.lock` serialises builders across test binaries running at the same time,
//! and a `.ready` marker written last tells later callers that a build completed (a build
//! interrupted half-way is thrown away and redone). If the venv cannot be built (no `python3`,
//! no network to PyPI), this panics with pip's output: these tests never skip silently.
#![allow(dead_code)]

use std::fs::{self, File};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The packages installed in the venv, in one pip run.
pub const PACKAGES: &[&str] = &["dirq", "stomp.py"];

/// Path of the venv's `python`, building the venv first if needed.
pub fn python() -> PathBuf {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON.get_or_init(build).clone()
}

fn run(cmd: &mut Command, what: &str) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("pyenv: cannot run {what}: {e}"));
    assert!(
        out.status.success(),
        "pyenv: {what} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn build() -> PathBuf {
    let base = Path::new(env!("CARGO_TARGET_TMPDIR"));
    fs::create_dir_all(base).expect("pyenv: create CARGO_TARGET_TMPDIR");
    let venv = base.join("pyenv");
    let ready = venv.join(".ready");
    let python = venv.join("bin").join("python");
    let lock = File::create(base.join("pyenv.lock")).expect("pyenv: create lock file");
    // SAFETY: flock on a file descriptor we own for the duration of the call; the lock is
    // released when `lock` is dropped at the end of this function.
    let rc = unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) };
    assert_eq!(rc, 0, "pyenv: flock: {}", std::io::Error::last_os_error());
    if ready.exists() && python.exists() {
        return python;
    }
    if venv.exists() {
        fs::remove_dir_all(&venv).expect("pyenv: remove a half-built venv");
    }
    run(
        Command::new("python3").args(["-m", "venv"]).arg(&venv),
        "python3 -m venv",
    );
    run(
        Command::new(&python)
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
            ])
            .args(PACKAGES),
        "pip install dirq stomp.py",
    );
    run(
        Command::new(&python).args(["-c", "import dirq, stomp"]),
        "import dirq, stomp",
    );
    fs::write(&ready, b"ok\n").expect("pyenv: write .ready marker");
    drop(lock);
    python
}
