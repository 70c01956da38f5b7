//! A Python virtualenv with `argo-ams-library` (the AMS client every Python producer uses, with
//! `requests`) from PyPI, for the AMS interoperability tests.
//!
//! Use it as `crate::support::ams_py` and call [`python`]. Built once in
//! `$CARGO_TARGET_TMPDIR/pyenv-ams`, like `pyenv.rs` builds its own: an exclusive `flock`
//! serialises builders across test binaries, a `.ready` marker written last says a build
//! completed (a half-built venv is thrown away and redone). If it cannot be built (no
//! `python3`, no network to PyPI) this panics with pip's output: the tests never skip silently.
#![allow(dead_code)]

use std::fs::{self, File};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The packages installed in the venv, in one pip run.
pub const PACKAGES: &[&str] = &["argo-ams-library", "requests"];

/// Path of the venv's `python`, building the venv first if needed.
pub fn python() -> PathBuf {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON.get_or_init(build).clone()
}

fn run(cmd: &mut Command, what: &str) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("ams_py: cannot run {what}: {e}"));
    assert!(
        out.status.success(),
        "ams_py: {what} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn build() -> PathBuf {
    let base = Path::new(env!("CARGO_TARGET_TMPDIR"));
    fs::create_dir_all(base).expect("ams_py: create CARGO_TARGET_TMPDIR");
    let venv = base.join("pyenv-ams");
    let ready = venv.join(".ready");
    let python = venv.join("bin").join("python");
    let lock = File::create(base.join("pyenv-ams.lock")).expect("ams_py: create lock file");
    // SAFETY: flock on a file descriptor we own for the duration of the call; the lock is
    // released when `lock` is dropped at the end of this function.
    let rc = unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) };
    assert_eq!(rc, 0, "ams_py: flock: {}", std::io::Error::last_os_error());
    if ready.exists() && python.exists() {
        return python;
    }
    if venv.exists() {
        fs::remove_dir_all(&venv).expect("ams_py: remove a half-built venv");
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
        "pip install argo-ams-library requests",
    );
    run(
        Command::new(&python).args(["-c", "import argo_ams_library, requests"]),
        "import argo_ams_library, requests",
    );
    fs::write(&ready, b"ok\n").expect("ams_py: write .ready marker");
    drop(lock);
    python
}
