//! The one support tree of the integration tests. Every test binary (`tests/<group>/main.rs`)
//! mounts all of it as `crate::support`, so each helper exists once:
//!
//! - [`brokers`]: the broker targets (a fresh embedded broker plus every real broker named in
//!   `SSM_TEST_BROKERS` / `SSM_TEST_TLS_BROKERS`; a named broker that does not answer fails the
//!   test, it is never skipped) and the STOMP client helpers run against them;
//! - [`stomp_raw`]: a raw `Framed<TcpStream, StompCodec>` client for the embedded broker's own
//!   protocol tests;
//! - [`e2e`]: the in-process sender/receiver harness and its PKI;
//! - [`peer`]: the hand-driven SSM peer (sends `msg` frames, reads the acks);
//! - [`faults`]: the real-process harness (`ssm broker|send|receive` spawned, killed, starved);
//! - [`messages`]: the message generator and the exactly-once check;
//! - [`process`]: the `ssm` binary as a process (output, tokio command), free ports, kills;
//! - [`openssl_cli`], [`pyenv`], [`stomppy`]: the `openssl` command line, the Python `dirq`
//!   and `stomp.py` venvs;
//! - [`tmpfs`]: a small tmpfs mounted on a directory to fill a disk (root);
//! - [`serial`]: the lock of tests that must not overlap inside one binary.
#![allow(dead_code, unused_imports)] // each test binary uses a different subset

pub mod ams_py;
pub mod brokers;
pub mod e2e;
pub mod faults;
pub mod frames;
pub mod messages;
pub mod openssl_cli;
pub mod peer;
pub mod process;
pub mod pyenv;
pub mod python_cfg;
pub mod ssm2peer;
pub mod stomp_raw;
pub mod stomppy;
pub mod tmpfs;

/// Held by every test that restarts a real broker: such a test must never overlap another one
/// (before the binaries were folded, each ran alone in its own binary). A test that panicked
/// while holding it does not poison the others.
pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}
