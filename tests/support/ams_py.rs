//! A Python virtualenv with `argo-ams-library` (the AMS client every Python producer uses, with
//! `requests`) from PyPI, for the AMS interoperability tests.
//!
//! Use it as `crate::support::ams_py` and call [`python`]. Built once in
//! `$CARGO_TARGET_TMPDIR/pyenv-ams` by [`super::pyenv::venv`] (one builder at a time across
//! test binaries; no `python3` or no PyPI fails the test loudly: it never skips).
#![allow(dead_code)]

use std::path::PathBuf;

/// The packages installed in the venv, in one pip run.
pub const PACKAGES: &[&str] = &["argo-ams-library", "requests"];

/// Path of the venv's `python`, building the venv first if needed.
pub fn python() -> PathBuf {
    super::pyenv::venv("pyenv-ams", PACKAGES, "import argo_ams_library, requests")
}
