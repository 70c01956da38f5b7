//! An asynchronous STOMP client connection with broker failover, receipts and heart-beats.
//!
//! A connection is split in two: [`Client`] owns the reading side (it yields messages and
//! asynchronous errors through [`Client::recv`]) and [`ClientHandle`] is the writing side, which
//! any number of tasks may clone and use at once. Behind them run one reader task and one writer
//! task per connection.
//!
//! Guarantees:
//! - [`Client::connect`] tries the brokers in order, then again after a capped exponential
//!   backoff, for [`ClientConfig::max_rounds`] rounds (forever when `None`); every failure is
//!   logged with the broker it concerns.
//! - Every frame is written with one write (the codec encodes it into one buffer and the
//!   writer flushes it before taking the next), and always with `content-length`.
//! - A RECEIPT wakes exactly the caller waiting for it; an ERROR that names a receipt fails that
//!   caller with [`StompError::Broker`]; any other ERROR is handed to [`Client::recv`] as
//!   [`Event::Error`] without closing anything (ActiveMQ sends those for a SEND to a departed
//!   temporary queue).
//! - A `receipt` header on a MESSAGE is never taken as a request (RabbitMQ copies it from the
//!   SEND).
//! - When the connection ends for any reason (socket closed or failed, not a byte received for
//!   2.5 times the negotiated heart-beat interval, unreadable frame, [`Client`] dropped), every waiting
//!   caller is woken with the reason, [`Client::recv`] returns it after the events that came
//!   before, and later writes fail. Reconnecting is the caller's job: call
//!   [`Client::connect`] again and resubscribe.
//! - A frame whose body exceeds [`ClientConfig::limits`] does not end the connection: its body
//!   is discarded as it arrives (never buffered), it is logged and handed to [`Client::recv`]
//!   as [`Event::Oversized`] with its headers, and the next frame is read as usual.
//! - MESSAGE frames are buffered without bound until [`Client::recv`] takes them, so that a
//!   caller waiting for a receipt can never be blocked behind undelivered messages. Bound the
//!   flow with the broker's prefetch setting on the subscription (RabbitMQ `prefetch-count`,
//!   ActiveMQ `activemq.prefetchSize`) when that matters.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};
use tokio::time::{timeout, Instant};
use tokio_util::codec::{FramedRead, FramedWrite};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::addr::BrokerAddr;
use super::frame::{Command, Frame, FrameError, Item, Limits, Oversized, StompCodec, Version};
use super::tls::{TlsConfig, TlsConnector, TlsError};
use super::vocab::{self, header};
use super::watched::Watched;

/// The shortest pause between rounds, whatever the configuration says, so that a zero backoff
/// cannot spin on a dead broker list.
const MIN_BACKOFF: Duration = Duration::from_millis(10);

/// How to reach and talk to a set of brokers. Its `Debug` output hides the passcode.
#[derive(Clone)]
pub struct ClientConfig {
    /// Brokers in failover order.
    pub brokers: Vec<BrokerAddr>,
    /// `login` header of CONNECT.
    pub login: Option<String>,
    /// `passcode` header of CONNECT.
    pub passcode: Option<String>,
    /// `host` header of CONNECT (the virtual host); `None` sends `/`, RabbitMQ's default vhost
    /// (ActiveMQ ignores it).
    pub vhost: Option<String>,
    /// Heart-beats as (we send every, we want every); zero turns a direction off.
    pub heartbeat: (Duration, Duration),
    /// TLS settings; `None` for plain TCP.
    pub tls: Option<TlsConfig>,
    /// Limit on one connection attempt (TCP, TLS and the STOMP handshake).
    pub connect_timeout: Duration,
    /// How long [`ClientHandle::send_with_receipt`] waits for its RECEIPT.
    pub receipt_timeout: Duration,
    /// Pause after the first failed round over the broker list (plus up to 25% random jitter).
    pub initial_backoff: Duration,
    /// Longest pause between rounds (the pause doubles up to this).
    pub max_backoff: Duration,
    /// Rounds over the broker list before giving up; `None` retries forever.
    pub max_rounds: Option<u32>,
    /// Limits on frames received.
    pub limits: Limits,
    /// Most bytes of MESSAGE bodies received but not yet taken by [`Client::recv`]; `None`
    /// (the default) does not bound them. When they are reached the client stops reading from
    /// the broker until events are taken (back-pressure; a larger body passes alone). While it
    /// waits, RECEIPTs are not read either: only for a consumer that takes its events while it
    /// waits for receipts, such as the receiver.
    pub max_buffered_bytes: Option<usize>,
}

impl fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientConfig")
            .field("brokers", &self.brokers)
            .field("login", &self.login)
            .field("passcode", &self.passcode.as_ref().map(|_| "<hidden>"))
            .field("vhost", &self.vhost)
            .field("heartbeat", &self.heartbeat)
            .field("tls", &self.tls)
            .field("connect_timeout", &self.connect_timeout)
            .field("receipt_timeout", &self.receipt_timeout)
            .field("initial_backoff", &self.initial_backoff)
            .field("max_backoff", &self.max_backoff)
            .field("max_rounds", &self.max_rounds)
            .field("limits", &self.limits)
            .field("max_buffered_bytes", &self.max_buffered_bytes)
            .finish()
    }
}

impl ClientConfig {
    /// A configuration with the defaults: no login, vhost `/`, heart-beats (10 s, 10 s), no TLS,
    /// 10 s connect timeout, 30 s receipt timeout, backoff 0.5 s doubling to 30 s, retry forever,
    /// bodies up to 64 MiB.
    pub fn new(brokers: Vec<BrokerAddr>) -> ClientConfig {
        ClientConfig {
            brokers,
            login: None,
            passcode: None,
            vhost: None,
            heartbeat: (Duration::from_secs(10), Duration::from_secs(10)),
            tls: None,
            connect_timeout: Duration::from_secs(10),
            receipt_timeout: Duration::from_secs(30),
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
            max_rounds: None,
            limits: Limits {
                max_body: 64 * 1024 * 1024,
                ..Limits::default()
            },
            max_buffered_bytes: None,
        }
    }
}

/// Which broker software we talk to; it decides the temporary-queue rules (see `docs/protocol.md`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BrokerKind {
    /// RabbitMQ: never SUBSCRIBE to your own `/temp-queue/…`.
    RabbitMq,
    /// ActiveMQ: SUBSCRIBE to your `/temp-queue/…` before replies can arrive.
    ActiveMq,
    /// This crate's embedded broker (behaves like ActiveMQ for temporary queues).
    Embedded,
    /// Anything else.
    Other,
}

impl BrokerKind {
    /// Recognises the CONNECTED `server` header (`RabbitMQ/3.10.0`, `ActiveMQ/5.17.0`,
    /// `ssm-broker/0.1.0`).
    pub fn from_server(server: Option<&str>) -> BrokerKind {
        let Some(s) = server else {
            return BrokerKind::Other;
        };
        let name = s
            .split('/')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        match name.as_str() {
            "rabbitmq" => BrokerKind::RabbitMq,
            "activemq" => BrokerKind::ActiveMq,
            "ssm-broker" => BrokerKind::Embedded,
            _ => BrokerKind::Other,
        }
    }

    /// The name used in configuration files.
    pub fn as_str(self) -> &'static str {
        match self {
            BrokerKind::RabbitMq => "rabbitmq",
            BrokerKind::ActiveMq => "activemq",
            BrokerKind::Embedded => "embedded",
            BrokerKind::Other => "other",
        }
    }
}

impl fmt::Display for BrokerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A broker kind name that is not one of `rabbitmq`, `activemq`, `embedded`, `other`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown broker kind {0:?} (expected rabbitmq, activemq, embedded or other)")]
pub struct UnknownBrokerKind(pub String);

impl FromStr for BrokerKind {
    type Err = UnknownBrokerKind;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "rabbitmq" => Ok(BrokerKind::RabbitMq),
            "activemq" => Ok(BrokerKind::ActiveMq),
            "embedded" => Ok(BrokerKind::Embedded),
            "other" => Ok(BrokerKind::Other),
            _ => Err(UnknownBrokerKind(s.to_string())),
        }
    }
}

pub use super::vocab::AckMode;

/// Something the broker sent us that is not an answer to a request.
#[derive(Debug)]
pub enum Event {
    /// A MESSAGE, for any subscription (including ones the broker made for us, such as
    /// RabbitMQ's temporary reply queues).
    Message(Frame),
    /// An ERROR frame that named no pending receipt. The broker may or may not close the
    /// connection after it; if it does, the next [`Client::recv`] says so.
    Error(Frame),
    /// A frame whose body exceeded [`ClientConfig::limits`]: skipped without being buffered,
    /// the connection kept. Its headers are kept, so a MESSAGE of a subscription that must
    /// acknowledge can still be acknowledged ([`ClientHandle::ack`] on its `frame`).
    Oversized(Oversized),
}

/// What can go wrong with a broker connection.
#[derive(Debug, thiserror::Error)]
pub enum StompError {
    /// The configuration names no broker.
    #[error("no broker configured")]
    NoBrokers,
    /// One connection attempt failed.
    #[error("cannot connect to {broker}: {reason}")]
    Connect {
        /// The broker tried.
        broker: BrokerAddr,
        /// Why it failed.
        reason: String,
    },
    /// Every broker failed, [`ClientConfig::max_rounds`] times over.
    #[error("all brokers failed after {rounds} round(s); last error: {last}")]
    AllBrokersFailed {
        /// Rounds over the broker list.
        rounds: u32,
        /// The last attempt's error.
        last: Box<StompError>,
    },
    /// TLS could not be set up or the handshake failed.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The broker answered a request with an ERROR frame.
    #[error("broker error: {message}")]
    Broker {
        /// The ERROR's `message` header.
        message: String,
        /// The ERROR's body (lossily decoded as UTF-8).
        body: String,
    },
    /// No RECEIPT came in time.
    #[error("no RECEIPT from the broker in time")]
    ReceiptTimeout,
    /// The connection ended.
    #[error("connection to the broker lost: {0}")]
    ConnectionLost(String),
    /// The broker stopped sending heart-beats.
    #[error("broker heart-beats stopped: connection considered lost")]
    HeartbeatTimeout,
    /// A frame could not be encoded (it was not sent; the connection is still usable).
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// An I/O error.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    /// The connection was closed on our side ([`Client`] dropped or disconnected).
    #[error("connection closed")]
    Closed,
    /// The negotiated STOMP version cannot do this.
    #[error("{what} is not available in STOMP {version}", version = version.as_str())]
    Unsupported {
        /// The operation.
        what: &'static str,
        /// The negotiated version.
        version: Version,
    },
    /// A MESSAGE lacks the headers needed to acknowledge it.
    #[error("cannot acknowledge a message without {0} header")]
    NotAckable(&'static str),
}

/// Why a connection ended; kept so that every later caller learns the same reason.
#[derive(Clone, Debug)]
enum CloseReason {
    Lost(String),
    HeartbeatTimeout,
    Closed,
}

impl CloseReason {
    fn to_error(&self) -> StompError {
        match self {
            CloseReason::Lost(s) => StompError::ConnectionLost(s.clone()),
            CloseReason::HeartbeatTimeout => StompError::HeartbeatTimeout,
            CloseReason::Closed => StompError::Closed,
        }
    }
}

type Waiter = oneshot::Sender<Result<(), StompError>>;

#[derive(Default)]
struct State {
    /// Callers waiting for a RECEIPT, by receipt id.
    pending: HashMap<String, Waiter>,
    closed: Option<CloseReason>,
}

/// What the reader, the writer and every handle of one connection share.
struct Shared {
    state: Mutex<State>,
    /// Cancelled when the connection ends, to stop both tasks.
    cancel: CancellationToken,
    next_id: AtomicU64,
    version: Version,
    receipt_timeout: Duration,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the map inconsistent (single inserts and
        // removes), so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Ends the connection (the first reason wins) and wakes every waiter with it.
    fn close(&self, reason: CloseReason) {
        let (pending, reason) = {
            let mut st = self.lock();
            let reason = st.closed.get_or_insert(reason).clone();
            (std::mem::take(&mut st.pending), reason)
        };
        for (_, waiter) in pending {
            let _ = waiter.send(Err(reason.to_error()));
        }
        self.cancel.cancel();
    }

    /// The error that describes a closed connection.
    fn error(&self) -> StompError {
        self.lock()
            .closed
            .as_ref()
            .map_or(StompError::Closed, CloseReason::to_error)
    }

    fn register(&self, id: &str) -> Result<oneshot::Receiver<Result<(), StompError>>, StompError> {
        let mut st = self.lock();
        if let Some(reason) = &st.closed {
            return Err(reason.to_error());
        }
        let (tx, rx) = oneshot::channel();
        st.pending.insert(id.to_string(), tx);
        Ok(rx)
    }

    fn take(&self, id: &str) -> Option<Waiter> {
        self.lock().pending.remove(id)
    }

    fn next_id(&self, prefix: &str) -> String {
        format!("{prefix}-{}", self.next_id.fetch_add(1, Ordering::Relaxed))
    }
}

/// Removes a receipt waiter when dropped.
struct Forget<'a> {
    shared: &'a Shared,
    id: &'a str,
}

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        self.shared.take(self.id);
    }
}

/// A byte stream to a broker: TCP or TLS over TCP.
trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

type Reader = FramedRead<Watched<ReadHalf<Box<dyn Io>>>, StompCodec>;

type Writer = FramedWrite<WriteHalf<Box<dyn Io>>, StompCodec>;

struct WriteReq {
    frame: Frame,
    done: oneshot::Sender<Result<(), StompError>>,
}

/// The writing side of a connection: cheap to clone, usable from many tasks at once.
#[derive(Clone)]
pub struct ClientHandle {
    tx: mpsc::Sender<WriteReq>,
    shared: Arc<Shared>,
}

impl fmt::Debug for ClientHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientHandle")
            .field("version", &self.shared.version)
            .field("closed", &self.shared.lock().closed)
            .finish()
    }
}

impl ClientHandle {
    /// Writes a frame (normally a SEND with `destination` set) and returns once it is written.
    ///
    /// Dropping the future before it completes may or may not leave the frame written.
    pub async fn send(&self, frame: Frame) -> Result<(), StompError> {
        let (done, rx) = oneshot::channel();
        self.tx
            .send(WriteReq { frame, done })
            .await
            .map_err(|_| self.shared.error())?;
        rx.await.map_err(|_| self.shared.error())?
    }

    /// Writes a frame with a fresh `receipt` header (replacing any) and waits for the broker's
    /// RECEIPT, up to [`ClientConfig::receipt_timeout`]. An ERROR naming the receipt gives
    /// [`StompError::Broker`].
    pub async fn send_with_receipt(&self, mut frame: Frame) -> Result<(), StompError> {
        let id = self.shared.next_id("rcpt");
        frame.set_header(header::RECEIPT, id.clone());
        let rx = self.shared.register(&id)?;
        // Forgets the waiter however this call ends (error, timeout, or the caller dropping
        // the future), so unanswered receipts do not pile up.
        let _forget = Forget {
            shared: &self.shared,
            id: &id,
        };
        let exchange = async {
            self.send(frame).await?;
            rx.await.map_err(|_| self.shared.error())?
        };
        match timeout(self.shared.receipt_timeout, exchange).await {
            Ok(r) => r,
            Err(_) => Err(StompError::ReceiptTimeout),
        }
    }

    /// Subscribes to `destination` (waiting for the broker's receipt) and returns the
    /// subscription id. `extra_headers` are added as given (e.g. `prefetch-count`).
    pub async fn subscribe(
        &self,
        destination: &str,
        ack: AckMode,
        extra_headers: &[(&str, &str)],
    ) -> Result<String, StompError> {
        let id = self.shared.next_id("sub");
        let mut frame = Frame::new(Command::Subscribe)
            .with_header(header::DESTINATION, destination)
            .with_header(header::ID, id.clone())
            .with_header(header::ACK, ack.header_value(self.shared.version));
        for (k, v) in extra_headers {
            frame = frame.with_header(*k, *v);
        }
        self.send_with_receipt(frame).await?;
        Ok(id)
    }

    /// Ends a subscription (waiting for the broker's receipt).
    pub async fn unsubscribe(&self, id: &str) -> Result<(), StompError> {
        self.send_with_receipt(Frame::new(Command::Unsubscribe).with_header(header::ID, id))
            .await
    }

    /// Acknowledges a MESSAGE received on a `client` or `client-individual` subscription.
    pub async fn ack(&self, message: &Frame) -> Result<(), StompError> {
        self.send(self.ack_frame(Command::Ack, message)?).await
    }

    /// Refuses a MESSAGE (STOMP 1.1+).
    pub async fn nack(&self, message: &Frame) -> Result<(), StompError> {
        self.send(self.ack_frame(Command::Nack, message)?).await
    }

    /// Whether the connection has ended.
    pub fn is_closed(&self) -> bool {
        self.shared.lock().closed.is_some()
    }

    /// The negotiated STOMP version.
    pub fn version(&self) -> Version {
        self.shared.version
    }

    fn ack_frame(&self, command: Command, message: &Frame) -> Result<Frame, StompError> {
        let version = self.shared.version;
        let frame = Frame::new(command);
        match version {
            Version::V1_2 => {
                // RabbitMQ and ActiveMQ send `ack`; fall back to `message-id` for brokers that
                // do not.
                let id = message
                    .header(header::ACK)
                    .or_else(|| message.header(header::MESSAGE_ID))
                    .ok_or(StompError::NotAckable("an `ack` or `message-id`"))?;
                Ok(frame.with_header(header::ID, id))
            }
            Version::V1_1 => {
                let id = message
                    .header(header::MESSAGE_ID)
                    .ok_or(StompError::NotAckable("a `message-id`"))?;
                let sub = message
                    .header(header::SUBSCRIPTION)
                    .ok_or(StompError::NotAckable("a `subscription`"))?;
                Ok(frame
                    .with_header(header::MESSAGE_ID, id)
                    .with_header(header::SUBSCRIPTION, sub))
            }
            Version::V1_0 => {
                if command == Command::Nack {
                    return Err(StompError::Unsupported {
                        what: "NACK",
                        version,
                    });
                }
                let id = message
                    .header(header::MESSAGE_ID)
                    .ok_or(StompError::NotAckable("a `message-id`"))?;
                Ok(frame.with_header(header::MESSAGE_ID, id))
            }
        }
    }
}

/// A connection to one broker; owns the reading side. Dropping it closes the connection.
pub struct Client {
    handle: ClientHandle,
    events: mpsc::UnboundedReceiver<Buffered>,
    /// The `max_buffered_bytes` budget, if any.
    budget: Option<Arc<Semaphore>>,
    server: Option<String>,
    kind: BrokerKind,
    version: Version,
    broker: BrokerAddr,
    heartbeat: (Duration, Duration),
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("broker", &self.broker)
            .field("server", &self.server)
            .field("version", &self.version)
            .field("heartbeat", &self.heartbeat)
            .finish_non_exhaustive()
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.handle.shared.close(CloseReason::Closed);
    }
}

impl Client {
    /// Connects to the first broker of the list that accepts us, going round the list with a
    /// capped exponential backoff between rounds (see [`ClientConfig`]).
    pub async fn connect(cfg: &ClientConfig) -> Result<Client, StompError> {
        if cfg.brokers.is_empty() {
            return Err(StompError::NoBrokers);
        }
        // Bad TLS files will not get better by retrying: fail at once.
        let tls = cfg.tls.as_ref().map(TlsConnector::new).transpose()?;
        let mut backoff = cfg.initial_backoff.max(MIN_BACKOFF);
        let mut round = 0u32;
        loop {
            round += 1;
            let mut last = None;
            for broker in &cfg.brokers {
                let attempt = timeout(cfg.connect_timeout, connect_one(cfg, tls.as_ref(), broker));
                let err = match attempt.await {
                    Ok(Ok(client)) => return Ok(client),
                    Ok(Err(e)) => e,
                    Err(_) => StompError::Connect {
                        broker: broker.clone(),
                        reason: format!("no answer within {:?}", cfg.connect_timeout),
                    },
                };
                warn!(%broker, round, "broker connection failed: {err}");
                last = Some(err);
            }
            let last = last.unwrap_or(StompError::NoBrokers);
            if cfg.max_rounds.is_some_and(|max| round >= max) {
                return Err(StompError::AllBrokersFailed {
                    rounds: round,
                    last: Box::new(last),
                });
            }
            // Up to a quarter more, so that many clients cut off by one broker restart do not
            // all come back at the same instant.
            let jitter = backoff.mul_f64(rand::random::<f64>() / 4.0);
            warn!(
                round,
                "all brokers failed; retrying in {:?}",
                backoff + jitter
            );
            tokio::time::sleep(backoff + jitter).await;
            backoff = backoff
                .saturating_mul(2)
                .min(cfg.max_backoff)
                .max(MIN_BACKOFF);
        }
    }

    /// A writing handle for this connection.
    pub fn handle(&self) -> ClientHandle {
        self.handle.clone()
    }

    /// The CONNECTED `server` header, if the broker sent one.
    pub fn server(&self) -> Option<&str> {
        self.server.as_deref()
    }

    /// The broker software, from the `server` header.
    pub fn kind(&self) -> BrokerKind {
        self.kind
    }

    /// The negotiated STOMP version.
    pub fn version(&self) -> Version {
        self.version
    }

    /// The broker we are connected to.
    pub fn broker(&self) -> &BrokerAddr {
        &self.broker
    }

    /// Negotiated heart-beat intervals (we send every, we expect every); zero is off.
    pub fn heartbeat(&self) -> (Duration, Duration) {
        self.heartbeat
    }

    /// The next MESSAGE or unsolicited ERROR. Fails once the connection has ended and every
    /// event received before that was taken.
    ///
    /// Cancel-safe: dropping the future (e.g. in `select!` or a timeout) loses no event.
    pub async fn recv(&mut self) -> Result<Event, StompError> {
        match self.events.recv().await {
            // Dropping the permit lets the reader go on.
            Some((event, _permit)) => Ok(event),
            None => Err(self.handle.shared.error()),
        }
    }

    /// Sends DISCONNECT with a receipt, waits for it (up to the receipt timeout, at most 10 s)
    /// and closes the connection. A broker that closes the connection instead of answering is
    /// fine.
    pub async fn disconnect(self) -> Result<(), StompError> {
        // A reader waiting for buffer space would never read the RECEIPT.
        if let Some(budget) = &self.budget {
            budget.close();
        }
        let shared = &self.handle.shared;
        let id = shared.next_id("rcpt");
        let rx = shared.register(&id)?;
        self.handle
            .send(Frame::new(Command::Disconnect).with_header(header::RECEIPT, id.clone()))
            .await?;
        let wait = shared.receipt_timeout.min(Duration::from_secs(10));
        match timeout(wait, rx).await {
            Ok(Ok(Ok(()))) => Ok(()),
            Ok(Ok(Err(StompError::ConnectionLost(_)))) | Ok(Err(_)) => Ok(()),
            Ok(Ok(Err(e))) => Err(e),
            Err(_) => Err(StompError::ReceiptTimeout),
        }
        // Dropping `self` closes the socket.
    }
}

/// One attempt on one broker: TCP, TLS, CONNECT/CONNECTED, then start the two tasks.
async fn connect_one(
    cfg: &ClientConfig,
    tls: Option<&TlsConnector>,
    broker: &BrokerAddr,
) -> Result<Client, StompError> {
    let fail = |reason: String| StompError::Connect {
        broker: broker.clone(),
        reason,
    };
    let tcp = TcpStream::connect((broker.host.as_str(), broker.port))
        .await
        .map_err(|e| fail(e.to_string()))?;
    // Frames are written whole, so Nagle's algorithm would only add latency.
    let _ = tcp.set_nodelay(true);
    let io: Box<dyn Io> = match tls {
        Some(tls) => Box::new(tls.connect(&broker.host, tcp).await?),
        None => Box::new(tcp),
    };
    let (r, w) = tokio::io::split(io);
    let mut reader = FramedRead::new(Watched::new(r), StompCodec::new(cfg.limits));
    let mut writer = FramedWrite::new(w, StompCodec::new(cfg.limits));

    let mut connect = Frame::new(Command::Connect)
        .with_header(header::ACCEPT_VERSION, vocab::SUPPORTED_VERSIONS)
        .with_header(header::HOST, cfg.vhost.as_deref().unwrap_or("/"))
        .with_header(header::HEART_BEAT, vocab::heart_beat_value(cfg.heartbeat));
    if let Some(login) = &cfg.login {
        connect = connect.with_header(header::LOGIN, login.as_str());
    }
    if let Some(passcode) = &cfg.passcode {
        connect = connect.with_header(header::PASSCODE, passcode.as_str());
    }
    writer
        .send(Item::Frame(connect))
        .await
        .map_err(|e| fail(format!("sending CONNECT: {e}")))?;
    let connected = loop {
        match reader.next().await {
            None => return Err(fail("connection closed during the STOMP handshake".into())),
            Some(Err(e)) => return Err(fail(format!("reading CONNECTED: {e}"))),
            // Oversized frames are only skipped once connected; none comes before.
            Some(Ok(Item::HeartBeat | Item::Oversized(_))) => continue,
            Some(Ok(Item::Frame(f))) if f.command == Command::Connected => break f,
            Some(Ok(Item::Frame(f))) if f.command == Command::Error => {
                let message = f.header(header::MESSAGE).unwrap_or("(no message)");
                return Err(fail(format!("broker refused the connection: {message}")));
            }
            Some(Ok(Item::Frame(f))) => {
                return Err(fail(format!("expected CONNECTED, got {}", f.command)))
            }
        }
    };

    let version = match connected.header(header::VERSION) {
        None => Version::V1_0,
        Some(v) => Version::parse(v)
            .ok_or_else(|| fail(format!("broker chose an unknown STOMP version {v:?}")))?,
    };
    reader.decoder_mut().set_version(version);
    // A frame above our limit is the sender's problem, not a reason to lose the connection.
    reader.decoder_mut().set_skip_oversized(true);
    writer.encoder_mut().set_version(version);
    let theirs = parse_heartbeat(connected.header(header::HEART_BEAT));
    let agreed = vocab::negotiate_heart_beats(cfg.heartbeat, theirs);
    let heartbeat = (
        agreed.send.unwrap_or(Duration::ZERO),
        agreed.expect.unwrap_or(Duration::ZERO),
    );
    let server = connected.header(header::SERVER).map(str::to_string);
    let kind = BrokerKind::from_server(server.as_deref());
    info!(
        %broker,
        server = server.as_deref().unwrap_or("?"),
        version = version.as_str(),
        ?heartbeat,
        "connected to broker"
    );

    let shared = Arc::new(Shared {
        state: Mutex::new(State::default()),
        cancel: CancellationToken::new(),
        next_id: AtomicU64::new(0),
        version,
        receipt_timeout: cfg.receipt_timeout,
    });
    let (tx, rx) = mpsc::channel(64);
    let (events_tx, events) = mpsc::unbounded_channel();
    // A body at least as large as the whole budget waits until nothing else is buffered.
    let budget = cfg.max_buffered_bytes.map(|n| {
        let n = n.clamp(1, u32::MAX as usize);
        (Arc::new(Semaphore::new(n)), n)
    });
    tokio::spawn(writer_task(writer, rx, shared.clone(), heartbeat.0));
    tokio::spawn(reader_task(
        reader,
        events_tx,
        budget.clone(),
        shared.clone(),
        heartbeat.1,
    ));
    let budget = budget.map(|(sem, _)| sem);
    Ok(Client {
        handle: ClientHandle { tx, shared },
        events,
        budget,
        server,
        kind,
        version,
        broker: broker.clone(),
        heartbeat,
    })
}

/// An event and its share of `max_buffered_bytes`.
type Buffered = (Event, Option<OwnedSemaphorePermit>);

/// Parses a `heart-beat: x,y` header; anything unreadable counts as no heart-beats.
fn parse_heartbeat(value: Option<&str>) -> (Duration, Duration) {
    value
        .and_then(vocab::parse_heart_beat)
        .unwrap_or((Duration::ZERO, Duration::ZERO))
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Writes frames in arrival order, one flush each, and a heart-beat after `beat` of silence.
async fn writer_task(
    mut sink: Writer,
    mut rx: mpsc::Receiver<WriteReq>,
    shared: Arc<Shared>,
    beat: Duration,
) {
    let every = (!beat.is_zero()).then_some(beat);
    let mut next_beat = every.map(|d| Instant::now() + d);
    loop {
        let req = tokio::select! {
            _ = shared.cancel.cancelled() => break,
            req = rx.recv() => match req {
                Some(req) => Some(req),
                None => break,
            },
            _ = sleep_until(next_beat) => None,
        };
        let (item, done) = match req {
            Some(WriteReq { frame, done }) => (Item::Frame(frame), Some(done)),
            None => (Item::HeartBeat, None),
        };
        let result = tokio::select! {
            _ = shared.cancel.cancelled() => break,
            r = sink.send(item) => r,
        };
        next_beat = every.map(|d| Instant::now() + d);
        let reply = match result {
            Ok(()) => Ok(()),
            Err(FrameError::Io(e)) => {
                let reason = format!("writing to the broker failed: {e}");
                warn!("{reason}");
                shared.close(CloseReason::Lost(reason));
                Err(shared.error())
            }
            // An unencodable frame was not written; the connection is fine.
            Err(e) => Err(StompError::Frame(e)),
        };
        if let Some(done) = done {
            let _ = done.send(reply);
        }
        if shared.cancel.is_cancelled() {
            break;
        }
    }
    // Fail requests that were queued but never written.
    rx.close();
    while let Ok(req) = rx.try_recv() {
        let _ = req.done.send(Err(shared.error()));
    }
}

/// Reads frames, routes RECEIPTs to their waiters and the rest to [`Client::recv`], and watches
/// the broker's heart-beats.
async fn reader_task(
    mut stream: Reader,
    events: mpsc::UnboundedSender<Buffered>,
    budget: Option<(Arc<Semaphore>, usize)>,
    shared: Arc<Shared>,
    beat: Duration,
) {
    // Twice the interval, plus half of it as grace for scheduling and network delays.
    let limit = (!beat.is_zero()).then(|| beat * 2 + beat / 2);
    let mut last_error: Option<String> = None;
    let reason = loop {
        // Any byte counts as a sign of life, not only complete frames.
        let deadline = limit.map(|l| stream.get_ref().last_read + l);
        let next = async {
            match deadline {
                Some(at) => tokio::time::timeout_at(at, stream.next()).await.ok(),
                None => Some(stream.next().await),
            }
        };
        let item = tokio::select! {
            _ = shared.cancel.cancelled() => break None,
            item = next => item,
        };
        let frame = match item {
            None => {
                let silent = stream.get_ref().last_read.elapsed();
                if limit.is_some_and(|l| silent < l) {
                    continue; // bytes of an unfinished frame arrived meanwhile
                }
                warn!("nothing from the broker for {silent:?}: heart-beats lost");
                break Some(CloseReason::HeartbeatTimeout);
            }
            Some(None) => {
                let reason = match &last_error {
                    Some(e) => format!("broker closed the connection after ERROR: {e}"),
                    None => "broker closed the connection".to_string(),
                };
                break Some(CloseReason::Lost(reason));
            }
            Some(Some(Err(e))) => break Some(CloseReason::Lost(format!("reading: {e}"))),
            Some(Some(Ok(Item::HeartBeat))) => continue,
            Some(Some(Ok(Item::Oversized(o)))) => {
                warn!(
                    command = %o.frame.command,
                    size = o.size,
                    max = o.max,
                    destination = o.frame.header(header::DESTINATION).unwrap_or(""),
                    message_id = o.frame.header(header::MESSAGE_ID).unwrap_or(""),
                    "frame from the broker larger than the frame limit; skipped"
                );
                let _ = events.send((Event::Oversized(o), None));
                continue;
            }
            Some(Some(Ok(Item::Frame(frame)))) => frame,
        };
        match frame.command {
            Command::Receipt => match frame
                .header(header::RECEIPT_ID)
                .and_then(|id| shared.take(id))
            {
                Some(waiter) => {
                    let _ = waiter.send(Ok(()));
                }
                None => debug!(?frame, "RECEIPT nobody waits for"),
            },
            Command::Error => {
                let message = frame.header(header::MESSAGE).unwrap_or("").to_string();
                let waiter = frame
                    .header(header::RECEIPT_ID)
                    .and_then(|id| shared.take(id));
                if let Some(waiter) = waiter {
                    let body = String::from_utf8_lossy(&frame.body).into_owned();
                    let _ = waiter.send(Err(StompError::Broker { message, body }));
                } else {
                    warn!(message, "ERROR frame from the broker");
                    last_error = Some(message);
                    let _ = events.send((Event::Error(frame), None));
                }
            }
            Command::Message => {
                let permit = match &budget {
                    None => None,
                    Some((budget, size)) => {
                        let want = frame.body.len().clamp(1, *size);
                        let want = u32::try_from(want).unwrap_or(u32::MAX);
                        tokio::select! {
                            _ = shared.cancel.cancelled() => break None,
                            // Closed (by `disconnect`): no more waiting.
                            p = budget.clone().acquire_many_owned(want) => p.ok(),
                        }
                    }
                };
                let _ = events.send((Event::Message(frame), permit));
            }
            other => debug!(command = %other, "ignoring unexpected frame from the broker"),
        }
    };
    if let Some(reason) = reason {
        shared.close(reason);
    }
}

#[cfg(test)]
mod tests;
