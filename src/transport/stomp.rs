//! The STOMP adapter: [`Envelope`]s as STOMP frames over [`crate::stomp::Client`].
//!
//! Guarantees:
//! - The reply-queue rule is here and nowhere else: RabbitMQ creates a `/temp-queue/…` from
//!   the `reply-to` header that names it and refuses a `SUBSCRIBE` to it; ActiveMQ and the
//!   embedded broker deliver to it only after one (`docs/protocol.md`, broker behaviours).
//! - An outgoing envelope becomes a `SEND` with `destination` first, then its headers in order,
//!   then its body; a delivered `MESSAGE` (or a `SEND`, as a broker receives it) becomes an
//!   envelope with every header it carried, so that `frame_of(envelope_of(f))` keeps what the
//!   protocol reads. Other commands are not messages ([`envelope_of`] gives `None`).
//! - Confirmed sends wait for the broker's `RECEIPT` (bounded by the client's receipt timeout);
//!   an `ERROR` naming the receipt is an error, never a success. They are sent
//!   `persistent:true`, so that what a broker confirmed for a queue survives its restart.

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::stomp::{
    AckMode, BrokerKind, Client, ClientConfig, ClientHandle, Command, Event as StompEvent, Frame,
};

use super::{
    AckToken, Acknowledge, Capabilities, Delivery, Envelope, Event, Skipped, TransportError,
};

/// What STOMP brokers can do.
pub const CAPABILITIES: Capabilities = Capabilities {
    reply_channel: true,
    receipts: true,
    broker_acks: true,
};

/// The STOMP header naming where answers go.
const REPLY_TO: &str = "reply-to";

/// The header asking RabbitMQ and ActiveMQ to keep a message on disk.
const PERSISTENT: &str = "persistent";

/// How to reach STOMP brokers.
#[derive(Debug, Clone)]
pub struct StompSettings {
    /// Brokers, login, TLS, timeouts.
    pub client: ClientConfig,
    /// Overrides the broker kind detected from `CONNECTED` (temp-queue rules differ).
    pub kind: Option<BrokerKind>,
}

/// Whether a client must `SUBSCRIBE` to its own reply queue to get what is sent there: not on
/// RabbitMQ (which creates it from the `reply-to` naming it, and refuses the subscription),
/// on every other broker.
pub fn subscribes_to_reply_queue(kind: BrokerKind) -> bool {
    kind != BrokerKind::RabbitMq
}

/// A fresh reply-queue name, unique to one sender: `/temp-queue/ssm.<uuid>`.
pub fn new_reply_queue() -> String {
    format!("/temp-queue/ssm.{}", uuid::Uuid::new_v4())
}

/// The `SEND` frame carrying `envelope`.
pub fn frame_of(envelope: Envelope) -> Frame {
    let mut frame = Frame::new(Command::Send).with_header("destination", envelope.destination);
    frame.headers.extend(envelope.headers);
    frame.with_body(envelope.body)
}

/// The envelope a delivered `MESSAGE` (or a `SEND`) carries; `None` for any other command.
pub fn envelope_of(frame: Frame) -> Option<Envelope> {
    if !matches!(frame.command, Command::Message | Command::Send) {
        return None;
    }
    Some(Envelope {
        destination: frame.header("destination").unwrap_or_default().to_string(),
        headers: frame.headers,
        body: frame.body,
    })
}

/// Numbers connections, so that an acknowledgement never goes to a connection that did not
/// deliver the message (RabbitMQ closes the channel on an unknown delivery tag).
static CONNECTIONS: AtomicU64 = AtomicU64::new(1);

/// What acknowledging one delivery takes: the headers STOMP's `ACK` names it by, and the
/// connection it came on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StompAck {
    headers: Vec<(String, String)>,
    connection: u64,
}

/// A connection to one of the configured brokers.
pub struct StompConnection {
    client: Client,
    kind: BrokerKind,
    id: u64,
    /// Ids of our client-acknowledged subscriptions.
    client_acked: Vec<String>,
    /// Events that arrived while a subscription waited for its receipt, oldest first.
    early: VecDeque<StompEvent>,
}

impl StompConnection {
    /// Connects to the first broker of the list that answers.
    pub async fn connect(settings: &StompSettings) -> Result<StompConnection, TransportError> {
        let client = Client::connect(&settings.client).await?;
        let kind = settings.kind.unwrap_or(client.kind());
        Ok(StompConnection {
            client,
            kind,
            id: CONNECTIONS.fetch_add(1, Ordering::Relaxed),
            client_acked: Vec::new(),
            early: VecDeque::new(),
        })
    }

    /// Subscribes to our own reply queue where the broker needs it (see the module guarantees).
    pub async fn open_reply_channel(&mut self, reply_to: &str) -> Result<(), TransportError> {
        if subscribes_to_reply_queue(self.kind) {
            self.subscribe_taking_events(reply_to, AckMode::Auto, &[])
                .await?;
        }
        Ok(())
    }

    /// Subscribes and waits for the broker's receipt, taking the events that arrive meanwhile
    /// (kept for [`StompConnection::recv`]). A broker may send a backlog before the receipt;
    /// the client stops reading once its buffer is full, so without taking them the receipt
    /// would never be read. What is taken is bounded by the subscription's prefetch.
    async fn subscribe_taking_events(
        &mut self,
        destination: &str,
        mode: AckMode,
        headers: &[(&str, &str)],
    ) -> Result<String, TransportError> {
        let handle = self.client.handle();
        let subscribed = handle.subscribe(destination, mode, headers);
        tokio::pin!(subscribed);
        loop {
            tokio::select! {
                r = &mut subscribed => return Ok(r?),
                ev = self.client.recv() => self.early.push_back(ev?),
            }
        }
    }

    /// Subscribes to `destination`. Client acknowledgement is `client-individual` (each
    /// message on its own), with the window as both brokers' prefetch header (each ignores the
    /// other's).
    pub async fn subscribe(
        &mut self,
        destination: &str,
        ack: Acknowledge,
    ) -> Result<(), TransportError> {
        match ack {
            Acknowledge::Auto => {
                self.subscribe_taking_events(destination, AckMode::Auto, &[])
                    .await?;
            }
            Acknowledge::Client { window } => {
                let window = window.max(1).to_string();
                // Its deliveries are acknowledged from now on, even those that came before
                // the receipt (they carry its id).
                let id = self
                    .subscribe_taking_events(
                        destination,
                        AckMode::ClientIndividual,
                        &[
                            ("prefetch-count", window.as_str()),
                            ("activemq.prefetchSize", window.as_str()),
                        ],
                    )
                    .await?;
                self.client_acked.push(id);
            }
        }
        Ok(())
    }

    /// A sending handle.
    pub fn publisher(&self) -> StompPublisher {
        StompPublisher {
            handle: self.client.handle(),
            connection: self.id,
        }
    }

    /// The next delivery, skipped message or broker error.
    pub async fn recv(&mut self) -> Result<Event, TransportError> {
        let event = match self.early.pop_front() {
            Some(event) => event,
            None => self.client.recv().await?,
        };
        Ok(match event {
            StompEvent::Message(frame) => {
                let ack = self.ack_token(&frame);
                let reply_to = frame.header(REPLY_TO).map(str::to_string);
                match envelope_of(frame) {
                    Some(envelope) => Event::Delivery(Delivery {
                        envelope,
                        reply_to,
                        ack,
                    }),
                    None => Event::ServiceError("a MESSAGE event that is not a MESSAGE".into()),
                }
            }
            StompEvent::Error(frame) => {
                Event::ServiceError(frame.header("message").unwrap_or("").to_string())
            }
            StompEvent::Oversized(o) => Event::Skipped(Skipped {
                ack: self.ack_token(&o.frame),
                envelope: envelope_of(o.frame).unwrap_or_default(),
                size: o.size,
                max: o.max,
            }),
        })
    }

    /// How a delivered `MESSAGE` is acknowledged: by its `ACK` headers on a client-acknowledged
    /// subscription of ours, not at all otherwise (our reply queue, `ack:auto`).
    fn ack_token(&self, frame: &Frame) -> AckToken {
        match frame.header("subscription") {
            Some(sub) if self.client_acked.iter().any(|s| s == sub) => AckToken::Stomp(StompAck {
                headers: ["ack", "message-id", "subscription"]
                    .iter()
                    .filter_map(|name| {
                        frame
                            .header(name)
                            .map(|v| (name.to_string(), v.to_string()))
                    })
                    .collect(),
                connection: self.id,
            }),
            _ => AckToken::Auto,
        }
    }

    /// Disconnects (with a receipt, so that what was sent is flushed).
    pub async fn close(self) -> Result<(), TransportError> {
        Ok(self.client.disconnect().await?)
    }

    /// The broker's address and kind, for logs.
    pub fn describe(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.client.broker(), self.kind.as_str())
    }
}

/// Sends frames on a [`StompConnection`].
#[derive(Clone, Debug)]
pub struct StompPublisher {
    handle: ClientHandle,
    connection: u64,
}

impl StompPublisher {
    /// Writes the envelope as a `SEND`.
    pub async fn send(&self, envelope: Envelope) -> Result<(), TransportError> {
        Ok(self.handle.send(frame_of(envelope)).await?)
    }

    /// Writes the envelope as a `SEND` with a receipt and `persistent:true`, and waits for the
    /// `RECEIPT`. Persistent, because a confirmation is what lets the sender delete its copy:
    /// a broker that keeps the message on disk for a queue keeps it across its own restart
    /// (RabbitMQ and ActiveMQ keep only persistent messages then; others ignore the header).
    pub async fn send_confirmed(&self, envelope: Envelope) -> Result<(), TransportError> {
        let mut frame = frame_of(envelope);
        frame.set_header(PERSISTENT, "true");
        Ok(self.handle.send_with_receipt(frame).await?)
    }

    /// Sends the `ACK` for a delivery of this connection.
    pub async fn ack(&self, token: &StompAck) -> Result<(), TransportError> {
        if token.connection != self.connection {
            return Err(TransportError::StaleAck);
        }
        let mut message = Frame::new(Command::Message);
        message.headers.clone_from(&token.headers);
        Ok(self.handle.ack(&message).await?)
    }
}
