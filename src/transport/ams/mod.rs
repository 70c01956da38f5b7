//! The ARGO Messaging Service (AMS): an HTTPS/JSON publish–pull service, EGI's way into the
//! accounting repository.
//!
//! - [`wire`]: the JSON of every call, shared with `ssm ams-server` ([`crate::ams_server`]).
//! - [`adapter`]: the transport seam's AMS variant (batched confirmed publishes, pull batches
//!   acknowledged once every delivery is settled).
//! - [`client`]: [`AmsClient`] (publish, pull, acknowledge, modifyAckDeadline, offsets, the
//!   certificate-for-token exchange), [`AmsError`] and the retry helper [`with_retries`].
//!
//! Guarantees:
//! - TLS is OpenSSL's: the server's certificate is verified against the system roots and the
//!   configured hashed CA directory (`capath`), and its host name checked.
//! - Connections are kept alive and reused (one TLS handshake, not one per request).
//! - Every failure is an [`AmsError`] that says what to fix, and [`AmsError::is_retryable`]
//!   says whether trying again can help.
//!
//! Nothing of the sender or the receiver is in it: they see it through [`crate::transport`].

pub mod adapter;
pub mod client;
pub mod wire;

pub use adapter::{AmsAck, AmsConnection, AmsPublisher, AmsSettings};
pub use client::{with_retries, AmsClient, AmsConfig, AmsError, Pulled, RetryPolicy, TokenSource};
