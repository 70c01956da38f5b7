//! The transport seam: what the SSM state machines need from a message service, whatever it
//! speaks on the wire.
//!
//! The protocol ([`crate::protocol`]) hands a transport an [`Envelope`] (a destination, named
//! headers, a body) and gets back [`Delivery`]s (an envelope, where answers go, and how to
//! acknowledge it). The sender and the receiver hold a [`Connection`] and clone [`Publisher`]s
//! from it; neither knows which transport is behind it: STOMP ([`stomp`]) or the ARGO
//! Messaging Service ([`ams`], no reply channel: SSM2 only).
//!
//! Guarantees:
//! - Enum dispatch, not trait objects: every future stays `Send` and nothing is boxed; adding a
//!   transport is adding a variant, and the compiler lists every place that must handle it.
//! - What differs between services lives in the adapter, once: for STOMP, the rule for
//!   subscribing to one's own reply queue (RabbitMQ creates it from `reply-to` and refuses the
//!   `SUBSCRIBE`; every other broker needs it), receipts, and the frame mapping.
//! - [`Publisher::send_confirmed`] returns only once the service has taken the envelope (a STOMP
//!   `RECEIPT`, an AMS `messageId`), or with an error: an `Ok` means the message left this
//!   process. A message the service refuses as too large is [`TransportError::TooLarge`].
//! - Errors are [`TransportError`]s: callers above this module see no wire types.

pub mod ams;
pub mod stomp;

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;

use crate::stomp::{BrokerKind, ClientConfig, StompError};

/// A message as the protocol sees it: where it goes, named headers in order, and a body.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Envelope {
    /// The topic or queue it is sent to (or arrived on).
    pub destination: String,
    /// Headers in order; when a name repeats, the first one counts. On a delivery they include
    /// whatever the service added.
    pub headers: Vec<(String, String)>,
    /// The body, possibly binary.
    pub body: Bytes,
}

impl Envelope {
    /// An envelope for `destination` with no headers and an empty body.
    pub fn new(destination: impl Into<String>) -> Envelope {
        Envelope {
            destination: destination.into(),
            headers: Vec::new(),
            body: Bytes::new(),
        }
    }

    /// Adds a header (builder style); an existing one of the same name is kept, and counts.
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Envelope {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sets the body (builder style).
    pub fn with_body(mut self, body: impl Into<Bytes>) -> Envelope {
        self.body = body.into();
        self
    }

    /// The value of the first header with this name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Replaces every header with this name by one with the given value.
    pub fn set_header(&mut self, name: &str, value: impl Into<String>) {
        self.headers.retain(|(k, _)| k != name);
        self.headers.push((name.to_string(), value.into()));
    }
}

/// How a delivery is acknowledged to the service once it is handled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AckToken {
    /// The service considers it delivered as soon as it sent it (a STOMP `ack:auto`
    /// subscription): nothing to acknowledge.
    Auto,
    /// A delivery on a client-acknowledged STOMP subscription.
    Stomp(stomp::StompAck),
    /// A message pulled from an AMS subscription.
    Ams(ams::AmsAck),
}

/// How a subscription's deliveries are acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acknowledge {
    /// The service forgets a message once it delivered it.
    Auto,
    /// Each delivery is acknowledged by [`Publisher::ack`] once handled; until then the
    /// service keeps it and delivers it again if the connection ends. At most `window`
    /// deliveries are unacknowledged at once (the broker's prefetch).
    Client {
        /// Unacknowledged deliveries the service may send ahead.
        window: u32,
    },
}

/// One message the service delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// What arrived.
    pub envelope: Envelope,
    /// Where answers go, when the transport has a reply channel and the sender named one.
    pub reply_to: Option<String>,
    /// How to acknowledge it to the service.
    pub ack: AckToken,
}

/// A delivery too large to take, skipped with the connection kept: its headers, for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// What it came with: its destination and headers (the body is empty).
    pub envelope: Envelope,
    /// Its body's size.
    pub size: usize,
    /// The limit it exceeded.
    pub max: usize,
    /// How to acknowledge it (it is not delivered again once acknowledged).
    pub ack: AckToken,
}

/// What a connection yields.
#[derive(Debug)]
pub enum Event {
    /// A message, on any subscription or on our reply channel.
    Delivery(Delivery),
    /// A message larger than the configured limit, skipped (the adapter has logged it).
    Skipped(Skipped),
    /// The service reported an error that is not the answer to a request of ours (the
    /// connection may close after it; the next [`Connection::recv`] says so).
    ServiceError(String),
}

/// What a transport can do; the protocol version chosen at set-up must fit it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    /// Answers can be sent to a queue the sender names (SSM v1 needs it).
    pub reply_channel: bool,
    /// The service confirms that it took a message (STOMP `RECEIPT`).
    pub receipts: bool,
    /// Deliveries can be acknowledged one by one after they are handled.
    pub broker_acks: bool,
}

/// What can go wrong talking to the service.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The STOMP connection failed, was refused, or ended.
    #[error(transparent)]
    Stomp(#[from] StompError),
    /// An acknowledgement for a delivery of an earlier connection: the service delivers that
    /// message again on the current one, so it is not sent.
    #[error("the delivery came on an earlier connection; it will be delivered again")]
    StaleAck,
    /// An AMS call failed (the message says what to fix where something can be).
    #[error(transparent)]
    Ams(#[from] ams::AmsError),
    /// The service refused this one message as too large; sending it again cannot help.
    #[error("{0}")]
    TooLarge(String),
    /// One failure answering several requests at once (an AMS publish of a batch).
    #[error(transparent)]
    Shared(Arc<TransportError>),
    /// Something this transport cannot do.
    #[error("{0}")]
    Unsupported(&'static str),
}

impl TransportError {
    /// The error for a connection that is not there (closed, or never made).
    pub fn closed() -> TransportError {
        TransportError::Stomp(StompError::Closed)
    }
}

/// How to reach the service: the transport chosen by configuration, with its settings.
#[derive(Debug, Clone)]
pub enum TransportConfig {
    /// STOMP brokers (RabbitMQ, ActiveMQ, the embedded broker).
    Stomp(stomp::StompSettings),
    /// The ARGO Messaging Service.
    Ams(ams::AmsSettings),
}

impl TransportConfig {
    /// STOMP to `client`'s brokers; `kind` overrides the broker kind read from `CONNECTED`.
    pub fn stomp(client: ClientConfig, kind: Option<BrokerKind>) -> TransportConfig {
        TransportConfig::Stomp(stomp::StompSettings { client, kind })
    }

    /// Bounds what a connection holds that the consumer has not taken yet, in body bytes
    /// (back-pressure on the service beyond it).
    pub fn with_buffer_limit(mut self, bytes: usize) -> TransportConfig {
        match &mut self {
            TransportConfig::Stomp(s) => s.client.max_buffered_bytes = Some(bytes),
            // A pull batch is bounded by its message count.
            TransportConfig::Ams(_) => {}
        }
        self
    }

    /// What this transport can do.
    pub fn capabilities(&self) -> Capabilities {
        match self {
            TransportConfig::Stomp(_) => stomp::CAPABILITIES,
            TransportConfig::Ams(_) => ams::adapter::CAPABILITIES,
        }
    }

    /// A fresh name for a sender's reply channel, unique to it.
    pub fn new_reply_queue(&self) -> String {
        match self {
            TransportConfig::Stomp(_) => stomp::new_reply_queue(),
            // No reply channel: the name is never used.
            TransportConfig::Ams(_) => String::new(),
        }
    }
}

/// One live connection to the service.
pub enum Connection {
    /// A STOMP connection.
    Stomp(stomp::StompConnection),
    /// An AMS client (with its publish batcher and pull task).
    Ams(ams::AmsConnection),
}

impl Connection {
    /// Connects, with the transport's own failover and backoff.
    pub async fn connect(cfg: &TransportConfig) -> Result<Connection, TransportError> {
        match cfg {
            TransportConfig::Stomp(s) => {
                Ok(Connection::Stomp(stomp::StompConnection::connect(s).await?))
            }
            TransportConfig::Ams(s) => Ok(Connection::Ams(ams::AmsConnection::connect(s).await?)),
        }
    }

    /// Makes sure that answers sent to `reply_to` reach this connection.
    pub async fn open_reply_channel(&mut self, reply_to: &str) -> Result<(), TransportError> {
        match self {
            Connection::Stomp(c) => c.open_reply_channel(reply_to).await,
            Connection::Ams(_) => Err(TransportError::Unsupported(
                "AMS has no reply channel (SSM v1 needs one)",
            )),
        }
    }

    /// Starts receiving what is sent to `destination`, acknowledged as `ack` says.
    pub async fn subscribe(
        &mut self,
        destination: &str,
        ack: Acknowledge,
    ) -> Result<(), TransportError> {
        match self {
            Connection::Stomp(c) => c.subscribe(destination, ack).await,
            Connection::Ams(c) => c.subscribe(destination, ack).await,
        }
    }

    /// A cheap handle that sends on this connection, usable from many tasks.
    pub fn publisher(&self) -> Publisher {
        match self {
            Connection::Stomp(c) => Publisher::Stomp(c.publisher()),
            Connection::Ams(c) => Publisher::Ams(c.publisher()),
        }
    }

    /// The next event. An error means the connection is gone: connect again.
    pub async fn recv(&mut self) -> Result<Event, TransportError> {
        match self {
            Connection::Stomp(c) => c.recv().await,
            Connection::Ams(c) => c.recv().await,
        }
    }

    /// Ends the connection politely.
    pub async fn close(self) -> Result<(), TransportError> {
        match self {
            Connection::Stomp(c) => c.close().await,
            Connection::Ams(c) => c.close().await,
        }
    }

    /// Who we are connected to, for logs.
    pub fn peer(&self) -> Peer<'_> {
        Peer(self)
    }
}

/// Displays the service a [`Connection`] talks to (see [`Connection::peer`]).
pub struct Peer<'a>(&'a Connection);

impl fmt::Display for Peer<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Connection::Stomp(c) => c.describe(f),
            Connection::Ams(c) => c.describe(f),
        }
    }
}

/// The sending side of a [`Connection`]: cheap to clone.
#[derive(Clone, Debug)]
pub enum Publisher {
    /// Sends STOMP frames.
    Stomp(stomp::StompPublisher),
    /// Publishes to AMS topics and settles pulled messages.
    Ams(ams::AmsPublisher),
}

impl Publisher {
    /// Sends an envelope; returns once it is written (not necessarily taken by the service).
    pub async fn send(&self, envelope: Envelope) -> Result<(), TransportError> {
        match self {
            Publisher::Stomp(p) => p.send(envelope).await,
            Publisher::Ams(p) => p.send_confirmed(envelope).await.map(|_| ()),
        }
    }

    /// Sends an envelope and returns once the service confirmed it took it.
    pub async fn send_confirmed(&self, envelope: Envelope) -> Result<(), TransportError> {
        self.send_confirmed_id(envelope).await.map(|_| ())
    }

    /// As [`Publisher::send_confirmed`], with the id the service gave the message when it
    /// gives one (AMS: the `messageId`, logged as the Argo ID).
    pub async fn send_confirmed_id(
        &self,
        envelope: Envelope,
    ) -> Result<Option<String>, TransportError> {
        match self {
            Publisher::Stomp(p) => p.send_confirmed(envelope).await.map(|()| None),
            Publisher::Ams(p) => p.send_confirmed(envelope).await.map(Some),
        }
    }

    /// Acknowledges a handled delivery to the service. [`AckToken::Auto`] needs nothing; a
    /// token of an earlier connection is [`TransportError::StaleAck`].
    pub async fn ack(&self, token: &AckToken) -> Result<(), TransportError> {
        match (self, token) {
            (_, AckToken::Auto) => Ok(()),
            (Publisher::Stomp(p), AckToken::Stomp(t)) => p.ack(t).await,
            (Publisher::Ams(p), AckToken::Ams(t)) => p.ack(t),
            // A token of another transport cannot be of this connection.
            (Publisher::Stomp(_), AckToken::Ams(_)) | (Publisher::Ams(_), AckToken::Stomp(_)) => {
                Err(TransportError::StaleAck)
            }
        }
    }
}
