//! The queues: CLI, concurrency, crash safety, Python `dirq` interop.
//!
//! One test binary, one module per former `tests/<module>.rs` (test names unchanged, now
//! prefixed by the module: `cargo test --test queue <module>::` runs one of them).

#[path = "../support/mod.rs"]
mod support;

mod queue_cli;
mod queue_concurrency;
mod queue_crash;
mod queue_dirq_interop;
