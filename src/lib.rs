//! # ssm — the Secure STOMP Messenger
//!
//! `ssm` ships accounting records from grid sites to a central repository. A **sender** takes
//! messages from a durable outgoing queue on disk (the `dirq` format APEL writes), signs and
//! encrypts each one (S/MIME, readable by any OpenSSL peer) and publishes it; a **receiver**
//! decrypts and verifies it, stores it durably and only then confirms it. In SSM v1, the
//! acknowledged protocol, the receiver acks with the message's MD5 on the sender's reply queue
//! and the sender removes a message from its queue only once that ack arrived. The protocols
//! are described in `docs/protocol.md`.
//!
//! ## Map of the crate
//!
//! Dependencies point downwards only; every layer can be tested alone.
//!
//! ```text
//!   main ─ cli (clap: send │ receive │ check │ broker │ demo │ bench │ seal │ open │ queue …)
//!           │                                   \
//!         setup (config → live objects,        harness (demo, bench, throwaway PKI:
//!           │    start-up rules, SIGHUP)          drives the rest from outside)
//!           │
//!   config  sender (loop, prepare, deliver,    receiver (loop, dispatch, lanes, commit,
//!           │       certreq, stats)                      dedupe/acked, reply, stats)
//!           │             \                     /
//!           │              protocol (Version; v1 SsmMessage, v2 Ssm2Message ↔ Envelope)
//!           │                        │
//!           │              transport (Envelope, Delivery, AckToken, Connection, Publisher)
//!           │                        │  one adapter per service: stomp (reply-queue rule
//!           │                        │  once), ams (HTTPS/JSON client) ── ams_server
//!   queue (dirq formats,   crypto (smime primitives,   stomp (frame codec, vocab, client,
//!   depth, store layout;   payload framing, recipes    TLS) ── broker (embedded STOMP
//!   durable writes)        per version, trust, DNs)            broker: router + session)
//!   ops (pidfile, notify, metrics, histogram, filesystem)      logging      civil
//! ```
//!
//! - [`cli`] is the command line only: each command's `run()` is [`setup`] and then a run.
//! - [`setup`] is the one place where configuration becomes settings and live objects
//!   (identity, trust store, transport settings, DN list, queues, PID file). It holds the
//!   start-up rules as one list, which `ssm send` and `ssm receive` stop at and `ssm check`
//!   reports in full, and it reloads the trust store and the DN list on SIGHUP.
//! - [`config`] reads INI files and flags into typed settings; what both roles share (broker,
//!   identity, logging, daemon) lives once, in `config::CommonSettings`.
//! - [`sender`] is the client state machine: a pass over the queue, the next message prepared
//!   (locked, read, sealed) while the current one waits for its confirmation, `certreq` for the
//!   receiver's certificate, live counters whose snapshot is a run's summary.
//! - [`receiver`] is the server state machine: an event loop over transport deliveries,
//!   dispatch (per protocol version), lanes that open messages on every core in per-sender
//!   order, a group committer (the only writer of the store), duplicate detection behind a
//!   trait (the acked record is its file implementation), and the replies (SSM acks, service
//!   acknowledgements).
//! - [`protocol`] knows what an SSM message is — v1's `certreq`/`certresp`/`msg`/`ack`/`ping`
//!   and SSM2's one-way message with its `empa-id` — and maps it to and from a transport
//!   [`transport::Envelope`]; no I/O, and no wire format.
//! - [`transport`] is the seam between the protocols and the services that carry them: an
//!   envelope out, deliveries in with how to answer and acknowledge them, what a service can
//!   do ([`transport::Capabilities`]). Enum dispatch over two adapters: STOMP, where the
//!   reply-queue rule, receipts and broker-level `ACK`s live, and the ARGO Messaging Service
//!   (publish, pull, acknowledge over keep-alive HTTPS, retries, token exchange).
//! - [`crypto`] turns bytes into a protected body and back and says who signed it: S/MIME
//!   primitives over OpenSSL, v1's zlib + base64 framing, one seal/open recipe per protocol
//!   version, the reloadable trust store, DNs compared RDN by RDN.
//! - [`queue`] is the on-disk contract with the accounting software: the `dirq` formats, queue
//!   depth, and where a store keeps `incoming/`, `reject/` and the acked record.
//! - [`stomp`] moves frames over TCP/TLS; it knows nothing of SSM. Client and broker share its
//!   codec and vocabulary (header names, ack modes, heart-beat and version negotiation).
//! - [`broker`] is the embedded, in-memory STOMP broker: a pure router beside its I/O sessions.
//! - [`ams_server`] is an AMS-compatible HTTPS server (`ssm ams-server`) for the demo, the tests
//!   and trying the AMS path on one machine: pure in-memory state beside its HTTP routes, over
//!   the same wire types as the client in [`transport`]. Not a production service.
//! - [`ops`] is what running as a service needs: PID file, systemd notification, the metrics
//!   endpoint, latency histograms, file-system checks.
//! - [`logging`] sets up logs for the long-running commands (one escaping field formatter).
//! - [`civil`] dates Unix time (UTC) for the formats that spell dates out (DER, RFC 3339).
//! - [`harness`] is outside the core: `ssm demo` (the whole protocol on one machine), `ssm
//!   bench` (throughput, latency and memory, receiver and senders as processes of their own)
//!   and [`harness::pki`] (throwaway certificate authorities for both and for the tests).
//!   Nothing in the core depends on it.

pub mod ams_server;
pub mod broker;
pub mod civil;
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
