//! The sender (SSM client): ships every message of the outgoing queue to the receiver.
//!
//! Guarantees:
//! - Messages are sent oldest first, one at a time: the next message is sent only after the
//!   current one was acked, rejected or given up on. (The next one is locked and sealed while
//!   the current one waits for its ack; it is unlocked again if the pass stops.)
//! - A message leaves the outgoing queue only when an ack carrying its MD5 arrives (or when the
//!   receiver answers `REJECTED` naming it, in which case it is first kept, with the reason, in
//!   the local reject queue). A `REJECTED` counts only when its `ssm-ack-for` is the message's
//!   `ssm-msg-id`; an ack naming another message (a late answer to an earlier one) is ignored,
//!   whatever it says, so no answer carries over to the next message. Anyone who can publish
//!   to the topic can have `REJECTED`s sent to our reply queue: they cost nothing. A message that gets no ack after `max_attempts` attempts stays queued and
//!   the pass ends with [`SenderError::NoAck`], or with [`SenderError::Broker`] when the last
//!   attempt failed at the broker (unreachable, send refused, connection lost).
//! - A lost broker connection is re-established (with the client's failover and backoff) and
//!   the message in flight is sent again; the receiver stores resends once.
//! - Without a configured server certificate, the sender asks for it (`certreq`) and uses the
//!   answer only if it chains to a trusted CA and carries the configured server DN (compared
//!   RDN by RDN); any other `certresp` is ignored while the real one is waited for.
//! - A message left locked by a sender that died is sent again by the first pass after its
//!   lock went stale (the queue's default lock age, 600 s).
//! - A `msg`'s `ssm-msg-id` is its queue element's name (stable across resends), with bytes
//!   outside printable ASCII `%`-encoded so that any file name of a `directory` queue is a
//!   valid header value.
//! - `ssm-reack` names only a message whose removal from the outgoing queue is durable. The
//!   removal of the message just acked runs while the next one is sent, so a `msg` normally
//!   confirms the message acked before the last; one with the same content as a message not
//!   yet confirmed waits for that removal and confirms it (so that the receiver stores it
//!   again, as meant); the pass ends with a `ping` for each confirmation still due (see
//!   `reack`).
//! - [`Sender::stats`] counts what [`Summary`] counts, live: it can be read (by the metrics
//!   endpoint) while the sender runs, and it is never reset between passes; a run's summary is
//!   a snapshot of it.
//!
//! Layout: this file holds the runs (once, daemon) and a pass over the queue; `prepare` locks,
//! reads and seals the next message (no network); `deliver` publishes one and waits for its
//! confirmation; `reack` keeps which acked messages the receiver may forget and the removals
//! they wait for; `certreq` obtains the receiver's certificate; `stats` holds the counters.

mod certreq;
mod deliver;
mod prepare;
mod reack;
mod receipts;
mod stats;

pub use stats::{SenderStats, Summary};

use std::sync::Arc;
use std::time::{Duration, Instant};

use openssl::x509::X509;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::crypto::{Cipher, CryptoError, Identity, TrustStore};
use crate::protocol::{SsmMessage, Version};
use crate::queue::{Dirq, Outgoing, QueueError};
use crate::transport::{Connection, TransportConfig, TransportError};

/// Everything the sender needs, already loaded and checked.
pub struct SenderSettings {
    /// How to reach the service (the broker(s)).
    pub transport: TransportConfig,
    /// The topic the receiver listens on.
    pub destination: String,
    /// Our certificate and key: messages are signed with them.
    pub identity: Identity,
    /// Trusted CAs, to check a server certificate obtained by `certreq`.
    pub trust: TrustStore,
    /// The receiver's certificate; asked for with `certreq` when absent.
    pub server_cert: Option<X509>,
    /// The DN a `certresp` certificate must carry.
    pub server_dn: Option<String>,
    /// Whether a `certresp` certificate is checked against `trust`.
    pub verify_server_cert: bool,
    /// Envelope cipher.
    pub cipher: Cipher,
    /// How long to wait for an ack before sending again.
    pub ack_timeout: Duration,
    /// Sends of one message before giving up on it for this pass.
    pub max_attempts: u32,
    /// Our reply queue, e.g. `/temp-queue/ssm.<uuid>` (SSM v1 only).
    pub reply_queue: String,
    /// The protocol: v1 (confirmed by the receiver's ack) or SSM2 (by the service's receipt).
    pub version: Version,
    /// SSM2: messages sent and waiting for their receipt at once (1 = one at a time, as the
    /// Python SSM). SSM v1 always has one in flight.
    pub window: usize,
}

/// Messages in flight by default for SSM2.
pub const DEFAULT_WINDOW: usize = 64;

/// Why a pass failed.
#[derive(Debug, thiserror::Error)]
pub enum SenderError {
    /// The outgoing or reject queue failed.
    #[error("queue: {0}")]
    Queue(#[from] QueueError),
    /// Sealing failed, or the server certificate is unusable.
    #[error("crypto: {0}")]
    Crypto(#[from] CryptoError),
    /// The broker could not be reached.
    #[error("broker: {0}")]
    Broker(#[from] TransportError),
    /// No ack after every attempt; the message stays queued.
    #[error("no ack for message {id} after {attempts} attempts; it stays queued")]
    NoAck {
        /// The queue element.
        id: String,
        /// Sends made.
        attempts: u32,
    },
    /// `certreq` got no usable answer.
    #[error("server certificate: {0}")]
    ServerCert(String),
    /// A task on the blocking pool (sealing, removing) did not finish (it panicked).
    #[error("{0} task failed: {1}")]
    Task(&'static str, String),
}

/// The sender state machine over one outgoing queue.
pub struct Sender {
    settings: SenderSettings,
    outgoing: Outgoing,
    reject: Dirq,
    /// SSM v1's `ssm-reack` confirmations and the removal they wait for.
    reacks: reack::Reacks,
    conn: Option<Connection>,
    /// Numbers our connections, so that a late failure of an old one cannot close a new one.
    conn_id: u64,
    server_cert: Option<X509>,
    /// Live counters, readable while the sender runs.
    pub stats: Arc<SenderStats>,
}

impl Sender {
    /// A sender for `outgoing`; rejected messages go to `reject`.
    pub fn new(settings: SenderSettings, outgoing: Outgoing, reject: Dirq) -> Sender {
        let server_cert = settings.server_cert.clone();
        Sender {
            settings,
            outgoing,
            reject,
            reacks: reack::Reacks::default(),
            conn: None,
            conn_id: 0,
            server_cert,
            stats: Arc::default(),
        }
    }

    /// Sends everything queued, then a `ping`, then disconnects. What a cron job runs.
    pub async fn run_once(&mut self) -> Result<Summary, SenderError> {
        let start = Instant::now();
        let result = self.pass(&CancellationToken::new()).await;
        self.finish().await;
        result.map(|()| self.stats.summary(start.elapsed()))
    }

    /// Keeps sending what appears in the queue (checked every `poll`) until `shutdown`.
    pub async fn run_daemon(
        &mut self,
        shutdown: CancellationToken,
        poll: Duration,
    ) -> Result<Summary, SenderError> {
        let start = Instant::now();
        let mut result = Ok(());
        while !shutdown.is_cancelled() {
            if let Err(err) = self.pass(&shutdown).await {
                warn!(%err, "pass failed; trying again later");
                result = Err(err);
            } else {
                result = Ok(());
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(poll) => {}
            }
        }
        self.finish().await;
        result.map(|()| self.stats.summary(start.elapsed()))
    }

    async fn pass(&mut self, shutdown: &CancellationToken) -> Result<(), SenderError> {
        // A sender killed while a message was in flight leaves it locked: release locks old
        // enough to be stale (the queue's default age, as the Python sender's purge does), or
        // that message would never be sent.
        match self.outgoing.purge() {
            Ok(r) if r.locks_released > 0 => {
                warn!(
                    count = r.locks_released,
                    "released stale locks left by a dead sender"
                )
            }
            Ok(_) => {}
            Err(err) => warn!(%err, "could not purge the outgoing queue"),
        }
        let names = self.outgoing.names()?;
        if self.settings.version == Version::V2 {
            return self.pass_receipted(names, shutdown).await;
        }
        let result = self.pass_v1(names, shutdown).await;
        // The last removal may still run; a pass that failed reports its own error first.
        match (result, self.reacks.settle().await) {
            (Err(e), Err(removal)) => {
                warn!(err = %removal, "removal of an acked message failed");
                return Err(e);
            }
            (Err(e), Ok(())) | (Ok(()), Err(e)) => return Err(e),
            (Ok(()), Ok(())) => {}
        }
        // Closing pings, one per confirmation due (one without any when none is): the
        // receiver may forget what they confirm.
        let due = self.reacks.due();
        let reacks: Vec<Option<String>> = if due.is_empty() {
            vec![None]
        } else {
            due.iter().cloned().map(Some).collect()
        };
        let mut sent = 0;
        if let Some(conn) = &self.conn {
            for reack in reacks {
                let ping = SsmMessage::Ping { reack };
                let envelope = ping.to_envelope(&self.settings.destination).with_header(
                    crate::protocol::headers::REPLY_TO,
                    self.settings.reply_queue.clone(),
                );
                if let Err(err) = conn.publisher().send(envelope).await {
                    debug!(%err, "ping not sent");
                    break;
                }
                sent += 1;
            }
        }
        self.reacks.pinged(sent);
        Ok(())
    }

    /// SSM v1: one message in flight; the next one is locked and sealed meanwhile.
    async fn pass_v1(
        &mut self,
        names: Vec<String>,
        shutdown: &CancellationToken,
    ) -> Result<(), SenderError> {
        let total = names.len();
        let mut names = names.into_iter();
        let mut done = 0;
        let mut next = self.prepare_next(&mut names).await?;
        while let Some(current) = next.take() {
            if shutdown.is_cancelled() {
                self.abandon(current);
                break;
            }
            let name = current.name.clone();
            next = match self.prepare_next(&mut names).await {
                Ok(n) => n,
                Err(e) => {
                    self.abandon(current);
                    return Err(e);
                }
            };
            let result = self.deliver(current).await;
            if result.is_err() {
                self.unlock(&name);
                if let Some(n) = next.take() {
                    self.abandon(n);
                }
            }
            result?;
            done += 1;
            if total >= 100 && done % 100 == 0 {
                info!("progress: {}/{} messages", done, total);
            }
        }
        Ok(())
    }

    async fn finish(&mut self) {
        if let Some(conn) = self.conn.take() {
            if let Err(err) = conn.close().await {
                debug!(%err, "disconnect");
            }
        }
    }

    /// Connects, with our reply channel open, unless connected.
    async fn connect(&mut self) -> Result<&mut Connection, SenderError> {
        if self.conn.is_none() {
            let mut conn = Connection::connect(&self.settings.transport).await?;
            if self.settings.version == Version::V1 {
                conn.open_reply_channel(&self.settings.reply_queue).await?;
            }
            info!(broker = %conn.peer(), "connected");
            self.conn = Some(conn);
            self.conn_id += 1;
        }
        self.conn
            .as_mut()
            .ok_or_else(|| SenderError::Broker(TransportError::closed()))
    }
}
