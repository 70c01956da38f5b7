//! Operations through the real binary: `ssm check`, the receiver daemon, `ssm bench`.
//!
//! One test binary, one module per former `tests/<module>.rs` (test names unchanged, now
//! prefixed by the module: `cargo test --test ops <module>::` runs one of them).

#[path = "../support/mod.rs"]
mod support;

mod bench_cli;
mod ops_check;
mod ops_daemon;
