//! Fault injection (kills, full disks, lost and duplicated frames, network cuts) and hostile input to a running receiver.
//!
//! One test binary, one module per former `tests/<module>.rs` (test names unchanged, now
//! prefixed by the module: `cargo test --test faults <module>::` runs one of them).

#[path = "../support/mod.rs"]
mod support;

mod faults;
mod faults_netcut;
mod hostile;
mod ssm2_faults;
