//! # ssm — the Secure STOMP Messenger
//!
//! `ssm` ships accounting records from grid sites to a central repository through a network of
//! STOMP message brokers. A **sender** takes messages from a durable outgoing queue on disk, signs
//! and encrypts each one (S/MIME, readable by any OpenSSL peer) and sends it to a broker topic; a
//! **receiver** decrypts and verifies it, stores it durably and acks it with its MD5 on the
//! sender's temporary reply queue. The sender removes a message from its queue only once the
//! matching ack arrived. The wire protocol is described in `PROTOCOL.md`.
//!
//! ## Map of the crate
//!
//! Dependencies point downwards only; every layer can be tested alone.
//!
//! ```text
//!   bin: ssm (clap) ─ send │ receive │ broker │ demo │ seal │ open │ enqueue │ queue
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
//! - [`pki`] makes throwaway certificate authorities and certificates (tests and `ssm demo`).
//! - [`stomp`] moves frames over TCP/TLS to a broker; it knows nothing of SSM.
//! - [`broker`] is an embedded, in-memory STOMP broker built on the same frame codec.
//! - [`queue`] is the on-disk contract (the `dirq` format) with the accounting software.
//! - [`protocol`] knows what an SSM message is and maps it to and from STOMP frames.
//! - [`config`] reads INI files and flags into typed settings.
//! - [`sender`] and [`receiver`] are the two state machines of the protocol.
//! - [`demo`] runs the whole protocol in one process (`ssm demo`, benchmarks).
//! - [`logging`] sets up logs for the long-running commands.
//! - [`cli`] is the command line.

pub mod ams_server;
pub mod bench;
pub mod broker;
pub mod cli;
pub mod config;
pub mod crypto;
pub mod demo;
pub mod logging;
pub mod ops;
pub mod pki;
pub mod protocol;
pub mod queue;
pub mod receiver;
pub mod sender;
pub mod stomp;
pub mod transport;
