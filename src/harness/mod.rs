//! The harness: `ssm demo`, `ssm bench` and the throwaway PKI they (and the tests) run on.
//!
//! Nothing in the core (sender, receiver, protocol, transport, queue, crypto) depends on this
//! module; it sits beside the command line and drives the core from the outside, the way an
//! operator would: real configuration, real processes, real queues on disk.
//!
//! Guarantees:
//! - A run reports success only if every queued message was stored exactly once, with the
//!   signer that queued it, and acked ([`demo::Setup::check_stored`]); anything else is an error.
//! - Every file a run makes (PKI, queues, store, `sender-N.cfg`, the bench's notify socket)
//!   lives under the one directory it is given.
//! - Senders are configured as an operator configures them: one ordinary `sender.cfg` each
//!   ([`demo::Setup::write_sender_configs`]), read by the configuration loader and built by the
//!   same code as `ssm send -c`.
//! - The benchmark learns what it reports from the components themselves: ack latency from the
//!   senders' own statistics ([`crate::sender::SenderStats::ack_latency`]), a receiver's
//!   readiness from its systemd-style `READY=1` notification ([`crate::ops::notify`]). It never
//!   scrapes logs or speaks the wire protocol itself.
//! - The certificates of [`pki`] are throwaway: generated per run, keys unencrypted, never meant
//!   for production.
//!
//! - [`demo`]: the whole protocol in one process (`ssm demo`), and the run layout
//!   ([`demo::Setup`]: PKI, queues, DN file, store) the benchmark shares.
//! - [`bench`](mod@bench): throughput, ack latency, CPU and memory with the receiver and the senders as
//!   child processes of their own (`ssm bench`).
//! - [`ams`]: the in-process `ssm ams-server` and the configuration files said for it, shared
//!   by `ssm demo --transport ams` and `ssm bench --transport ams`.
//! - [`pki`]: throwaway certificate authorities and certificates.

pub mod ams;
pub mod bench;
pub mod demo;
pub mod pki;
