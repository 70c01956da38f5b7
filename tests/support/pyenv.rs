//! The tests' Python virtualenvs, built from PyPI and shared by the test binaries.
//!
//! [`venv`] builds one named venv once in `$CARGO_TARGET_TMPDIR/<name>`: an exclusive `flock`
//! on `<name>.lock` serialises builders across test binaries running at the same time, and a
//! `.ready` marker written last tells later callers that a build completed (a build interrupted
//! half-way is thrown away and redone). If a venv cannot be built (no `python3`, no network to
//! PyPI, the check fails), this panics with pip's output: these tests never skip silently.
//!
//! [`python`] is the venv with `dirq` and `stomp.py` that the queue interop tests read our
//! queues with; the other venvs (`ams_py`, `ssm2peer`, `stomppy`) name their own packages.
#![allow(dead_code)]

use std::collections::HashMap;
use std::fs::{self, File};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

/// The packages of the default venv, in one pip run.
pub const PACKAGES: &[&str] = &["dirq", "stomp.py"];

/// Path of the default venv's `python` (`dirq`, `stomp.py`), building it first if needed.
pub fn python() -> PathBuf {
    venv("pyenv", PACKAGES, "import dirq, stomp")
}

/// Path of the `python` of venv `name` holding `packages`, built once (per machine, and per
/// process) and accepted only when the Python statement `check` runs.
pub fn venv(name: &str, packages: &[&str], check: &str) -> PathBuf {
    static BUILT: Memo = OnceLock::new();
    once(&BUILT, name, || build(name, packages, check))
}

/// Paths made once per process, by name.
type Memo = OnceLock<Mutex<HashMap<String, PathBuf>>>;

/// `make()` the first time `name` is asked of `memo` in this process, the same path after.
fn once(memo: &Memo, name: &str, make: impl FnOnce() -> PathBuf) -> PathBuf {
    let mut made = memo
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    made.entry(name.to_string()).or_insert_with(make).clone()
}

/// A file in `$CARGO_TARGET_TMPDIR` holding `content`, written once per process (atomically:
/// other test binaries may be running the one written before).
pub fn file(name: &str, content: &str) -> PathBuf {
    static WRITTEN: Memo = OnceLock::new();
    once(&WRITTEN, name, || write(name, content))
}

fn write(name: &str, content: &str) -> PathBuf {
    let base = Path::new(env!("CARGO_TARGET_TMPDIR"));
    fs::create_dir_all(base).expect("pyenv: create CARGO_TARGET_TMPDIR");
    let path = base.join(name);
    let tmp = base.join(format!(".{name}.{}", std::process::id()));
    fs::write(&tmp, content).unwrap_or_else(|e| panic!("pyenv: write {tmp:?}: {e}"));
    fs::rename(&tmp, &path).unwrap_or_else(|e| panic!("pyenv: rename to {path:?}: {e}"));
    path
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

fn build(name: &str, packages: &[&str], check: &str) -> PathBuf {
    let base = Path::new(env!("CARGO_TARGET_TMPDIR"));
    fs::create_dir_all(base).expect("pyenv: create CARGO_TARGET_TMPDIR");
    let venv = base.join(name);
    let ready = venv.join(".ready");
    let python = venv.join("bin").join("python");
    let lock = File::create(base.join(format!("{name}.lock"))).expect("pyenv: create lock file");
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
        &format!("python3 -m venv {name}"),
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
            .args(packages),
        &format!("pip install {}", packages.join(" ")),
    );
    run(Command::new(&python).args(["-c", check]), check);
    fs::write(&ready, b"ok\n").expect("pyenv: write .ready marker");
    drop(lock);
    python
}
