//! The outside attack (issue #13): broker, sender, store and trust.
//!
//! One test binary, one module per former `tests/<module>.rs` (test names unchanged, now
//! prefixed by the module: `cargo test --test security <module>::` runs one of them).

#[path = "../support/mod.rs"]
mod support;

mod security_broker;
mod security_sender;
mod security_store;
mod security_trust;
