//! A Python virtual environment with the stock `stomp.py` client, for interoperability tests.
//!
//! The venv lives under `CARGO_TARGET_TMPDIR/pyenv-stomp` and is built once by
//! [`super::pyenv::venv`] (one builder at a time across test binaries). Any failure (no
//! `python3`, no network for pip…) fails the test loudly: interop tests never skip silently.
#![allow(dead_code)]

use std::path::PathBuf;

/// The path of a Python interpreter that can `import stomp`, creating the venv if needed.
pub fn python() -> PathBuf {
    super::pyenv::venv("pyenv-stomp", &["stomp.py"], "import stomp")
}
