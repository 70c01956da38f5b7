//! STOMP 1.0–1.2 transport: the frame codec and an async client connection.
//!
//! This module knows nothing of SSM: it moves [`Frame`]s to and from a broker.
//!
//! - [`frame`]: frames and their wire codec (shared with the embedded broker).
//! - [`addr`]: `host:port` broker addresses.
//! - [`tls`]: OpenSSL client configuration for TLS and mutual TLS.
//! - [`vocab`]: header names, ack modes, heart-beat and version negotiation (shared with the
//!   embedded broker).
//! - [`client`]: the connection — failover, receipts, heart-beats, reader/writer tasks.

pub mod addr;
pub mod client;
pub mod frame;
pub mod tls;
pub mod vocab;
pub mod watched;

pub use addr::{AddrError, BrokerAddr};
pub use client::{
    AckMode, BrokerKind, Client, ClientConfig, ClientHandle, Event, StompError, UnknownBrokerKind,
};
pub use frame::{Command, Frame, FrameError, Item, Limits, Oversized, StompCodec, Version};
pub use tls::{TlsConfig, TlsConnector, TlsError};
pub use watched::Watched;
