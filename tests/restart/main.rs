//! Broker restarts while clients work. These tests restart the real brokers named in
//! `SSM_TEST_BROKERS`, so they live in a binary of their own (cargo runs test binaries one after
//! the other, so no other test sees a real broker go away under it), and each holds
//! [`support::serial`] so that they do not restart brokers under each other.
//!
//! One test binary, one module per former `tests/<module>.rs` (test names unchanged, now
//! prefixed by the module: `cargo test --test restart <module>::` runs one of them).

#[path = "../support/mod.rs"]
mod support;

mod faults_restart;
mod ssm2_restart;
mod stomp_restart;
