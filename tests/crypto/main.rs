//! Crypto: `ssm seal`/`ssm open`, error variants, `openssl smime` interop, round trips.
//!
//! One test binary, one module per former `tests/<module>.rs` (test names unchanged, now
//! prefixed by the module: `cargo test --test crypto <module>::` runs one of them).

#[path = "../support/mod.rs"]
mod support;

mod crypto_cli;
mod crypto_errors;
mod crypto_interop;
mod crypto_roundtrip;
mod crypto_v2;
