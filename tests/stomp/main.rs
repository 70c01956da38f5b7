//! STOMP: the embedded broker's protocol and routing, `stomp.py` against `ssm broker`, client conformance against every broker target, TLS.
//!
//! One test binary, one module per former `tests/<module>.rs` (test names unchanged, now
//! prefixed by the module: `cargo test --test stomp <module>::` runs one of them).

#[path = "../support/mod.rs"]
mod support;

mod broker_protocol;
mod broker_python;
mod broker_routing;
mod stomp_conformance;
mod stomp_tls;
