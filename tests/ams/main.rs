//! The ARGO Messaging Service: `ssm ams-server` against our client and argo-ams-library.
//!
//! One test binary, one module per area (`cargo test --test ams <module>::` runs one).

#[path = "../support/mod.rs"]
mod support;

mod ams_check;
mod ams_server;
mod ams_wire;
