//! End to end: sender → broker → receiver, in process and with the real binaries.
//!
//! One test binary, one module per former `tests/<module>.rs` (test names unchanged, now
//! prefixed by the module: `cargo test --test e2e <module>::` runs one of them).

#[path = "../support/mod.rs"]
mod support;

mod e2e_certreq;
mod e2e_delivery;
mod e2e_dropin;
mod e2e_duplicates;
mod e2e_process;
mod e2e_queues;
mod e2e_reject;
mod e2e_resilience;
mod e2e_ssm2;
mod e2e_ssm2_peer;
