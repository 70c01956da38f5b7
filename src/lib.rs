//! # ssm — the Secure STOMP Messenger
//!
//! `ssm` ships accounting records from grid sites to a central repository through a network of
//! STOMP message brokers. A **sender** takes messages from a durable outgoing queue on disk, signs
//! and encrypts each one (S/MIME, readable by any OpenSSL peer) and sends it to a broker topic; a
//! **receiver** decrypts and verifies it, stores it durably and acks it with its MD5 on the
//! sender's temporary reply queue. The sender removes a message from its queue only once the
//! matching ack arrived. The wire protocol is described in `docs/protocol.md`.
//!
//! ## Map of the crate
//!
//! Dependencies point downwards only; every layer can be tested alone.
//!
//! ```text
//!   bin: ssm (clap) ─ send │ receive │ broker │ demo │ bench │ seal │ open │ enqueue │ queue
//!        │            harness (demo, bench, throwaway PKI: drives the rest from outside)
//!        │
//!   config ── sender (client state machine)     receiver (server state machine)
//!        │            \                         /           │
//!        │             protocol (SSM message types, headers, ids — no I/O)
//!        │                          │
//!   queue (dirq-compatible      crypto (seal / open:       stomp (frame codec,
//!   outgoing, incoming,         zlib, base64, S/MIME       client connection, TLS)
//!   reject; durable writes)     via openssl; trust store)        │
//!                                                          broker (embedded STOMP broker)
//! ```
//!
//! - [`crypto`] turns bytes into a protected body and back, and says who signed it.
//! - [`stomp`] moves frames over TCP/TLS to a broker; it knows nothing of SSM.
//! - [`broker`] is an embedded, in-memory STOMP broker built on the same frame codec.
//! - [`queue`] is the on-disk contract (the `dirq` format) with the accounting software.
//! - [`protocol`] knows what an SSM message is and maps it to and from STOMP frames.
//! - [`config`] reads INI files and flags into typed settings; the options both roles share
//!   (broker, identity, logging, daemon) live once, in `config::CommonSettings`.
//! - [`setup`] is the one place where configuration becomes settings and live objects
//!   (identity, trust store, STOMP client configuration, DN list, queues, PID file); it holds
//!   the start-up rules as one list, which `ssm send` / `ssm receive` stop at and `ssm check`
//!   reports in full, and what SIGHUP re-reads (trust store and DN list).
//! - [`sender`] and [`receiver`] are the two state machines of the protocol.
//! - [`harness`] is outside the core: `ssm demo` (the whole protocol in one process), `ssm bench`
//!   (throughput, latency and memory, with the receiver and senders as processes of their own)
//!   and [`harness::pki`] (throwaway certificate authorities and certificates for both and the
//!   tests). Nothing in the core depends on it (unit tests may use its PKI).
//! - [`logging`] sets up logs for the long-running commands.
//! - [`cli`] is the command line.

pub mod broker;
pub mod cli;
pub mod config;
pub mod crypto;
pub mod harness;
pub mod logging;
pub mod ops;
pub mod protocol;
pub mod queue;
pub mod receiver;
pub mod sender;
pub mod setup;
pub mod stomp;
pub mod transport;

// Transitional: `tests/` still name the harness at the crate root.
pub use harness::{demo, pki};
