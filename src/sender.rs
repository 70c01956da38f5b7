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
//! - Each `msg` carries the MD5 of the previous acked message in `ssm-reack`; a final `ping`
//!   carries the last one, so that the receiver can forget its bookkeeping.
//! - [`Sender::stats`] counts what [`Summary`] counts, live: it can be read (by the metrics
//!   endpoint) while the sender runs, and it is never reset between passes.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use openssl::x509::X509;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::crypto::{self, Cipher, CryptoError, Identity, TrustStore};
use crate::protocol::{AckOutcome, SsmMessage};
use crate::queue::{Dirq, Outgoing, QueueError, Record};
use crate::stomp::{AckMode, BrokerKind, Client, ClientConfig, Event, StompError};

/// Everything the sender needs, already loaded and checked.
pub struct SenderSettings {
    /// How to reach the broker(s).
    pub client: ClientConfig,
    /// Overrides the broker kind detected from `CONNECTED` (temp-queue rules differ).
    pub kind: Option<BrokerKind>,
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
    /// Our reply queue, e.g. `/temp-queue/ssm.<uuid>`.
    pub reply_queue: String,
}

impl SenderSettings {
    /// A fresh reply-queue name, unique to this sender.
    pub fn new_reply_queue() -> String {
        format!("/temp-queue/ssm.{}", uuid::Uuid::new_v4())
    }
}

/// What a pass (or a daemon run) did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// `msg` frames sent, resends included.
    pub sent: u64,
    /// Messages acked and removed from the queue.
    pub acked: u64,
    /// Messages the receiver rejected (moved to the local reject queue).
    pub rejected: u64,
    /// Resends of a message already sent once (after a timeout or a lost connection).
    pub retried: u64,
    /// Wall time.
    pub elapsed: Duration,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let secs = self.elapsed.as_secs_f64();
        let rate = if secs > 0.0 {
            self.acked as f64 / secs
        } else {
            0.0
        };
        write!(
            f,
            "sent {}, acked {}, rejected {}, retried {} in {:.2} s ({:.1} msg/s)",
            self.sent, self.acked, self.rejected, self.retried, secs, rate
        )
    }
}

/// Live counters of a sender, since it was created; shared with whoever watches it run.
#[derive(Debug, Default)]
pub struct SenderStats {
    /// `msg` frames sent, resends included.
    pub sent: AtomicU64,
    /// Messages acked and removed from the queue.
    pub acked: AtomicU64,
    /// Messages the receiver rejected (moved to the local reject queue).
    pub rejected: AtomicU64,
    /// Resends of a message already sent once.
    pub retried: AtomicU64,
    /// Time from handing a sealed message to the broker to its ack (the `acked` log line's).
    pub ack_latency: crate::ops::histogram::Histogram,
}

impl SenderStats {
    fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Reads a counter.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

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
    Broker(#[from] StompError),
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
    reack: Option<String>,
    client: Option<Client>,
    server_cert: Option<X509>,
    summary: Summary,
    /// Live counters, readable while the sender runs.
    pub stats: Arc<SenderStats>,
}

/// A locked message whose sealing runs on the blocking pool.
struct Preparing {
    name: String,
    data: Vec<u8>,
    md5: String,
    task: tokio::task::JoinHandle<Result<Vec<u8>, CryptoError>>,
}

/// How waiting for an ack ended.
enum Wait {
    Acked,
    Rejected(String),
    TimedOut,
    Lost(StompError),
}

impl Sender {
    /// A sender for `outgoing`; rejected messages go to `reject`.
    pub fn new(settings: SenderSettings, outgoing: Outgoing, reject: Dirq) -> Sender {
        let server_cert = settings.server_cert.clone();
        Sender {
            settings,
            outgoing,
            reject,
            reack: None,
            client: None,
            server_cert,
            summary: Summary::default(),
            stats: Arc::default(),
        }
    }

    /// Sends everything queued, then a `ping`, then disconnects. What a cron job runs.
    pub async fn run_once(&mut self) -> Result<Summary, SenderError> {
        let start = Instant::now();
        let result = self.pass(&CancellationToken::new()).await;
        self.finish().await;
        self.summary.elapsed = start.elapsed();
        result.map(|()| self.summary.clone())
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
        self.summary.elapsed = start.elapsed();
        result.map(|()| self.summary.clone())
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
        let total = names.len();
        let mut names = names.into_iter();
        let mut done = 0;
        // One message in flight; the next one is locked and sealed meanwhile.
        let mut next = self.prepare_next(&mut names).await?;
        while let Some(current) = next.take() {
            if shutdown.is_cancelled() {
                current.task.abort();
                self.unlock(&current.name);
                break;
            }
            let name = current.name.clone();
            next = match self.prepare_next(&mut names).await {
                Ok(n) => n,
                Err(e) => {
                    current.task.abort();
                    self.unlock(&name);
                    return Err(e);
                }
            };
            let result = self.deliver(current).await;
            if result.is_err() {
                self.unlock(&name);
                if let Some(n) = next.take() {
                    n.task.abort();
                    self.unlock(&n.name);
                }
            }
            result?;
            done += 1;
            if total >= 100 && done % 100 == 0 {
                info!("progress: {}/{} messages", done, total);
            }
        }
        if let Some(client) = &self.client {
            let ping = SsmMessage::Ping {
                reack: self.reack.clone(),
            };
            let frame = ping
                .to_frame(&self.settings.destination)
                .with_header("reply-to", self.settings.reply_queue.clone());
            if let Err(err) = client.handle().send(frame).await {
                debug!(%err, "ping not sent");
            }
        }
        Ok(())
    }

    async fn finish(&mut self) {
        if let Some(client) = self.client.take() {
            if let Err(err) = client.disconnect().await {
                debug!(%err, "disconnect");
            }
        }
    }

    /// Connects (and subscribes to the reply queue where the broker needs it) unless connected.
    async fn connect(&mut self) -> Result<&mut Client, SenderError> {
        if self.client.is_none() {
            let client = Client::connect(&self.settings.client).await?;
            let kind = self.settings.kind.unwrap_or(client.kind());
            // RabbitMQ refuses a SUBSCRIBE to one's own temp queue: naming it in reply-to is
            // what creates it. Everyone else needs the explicit subscription.
            if kind != BrokerKind::RabbitMq {
                client
                    .handle()
                    .subscribe(&self.settings.reply_queue, AckMode::Auto, &[])
                    .await?;
            }
            info!(broker = %client.broker(), ?kind, "connected");
            self.client = Some(client);
        }
        match self.client.as_mut() {
            Some(c) => Ok(c),
            None => Err(SenderError::Broker(StompError::Closed)),
        }
    }

    async fn server_cert(&mut self) -> Result<X509, SenderError> {
        if let Some(cert) = &self.server_cert {
            return Ok(cert.clone());
        }
        let Some(want_dn) = self.settings.server_dn.clone() else {
            return Err(SenderError::ServerCert(
                "no server certificate configured and no server DN to check a certreq answer against".into(),
            ));
        };
        let mut broker_error: Option<StompError> = None;
        let mut refused: Option<SenderError> = None;
        let trust = self
            .settings
            .verify_server_cert
            .then(|| self.settings.trust.clone());
        for attempt in 1..=self.settings.max_attempts {
            let req = SsmMessage::CertReq {
                reply_to: self.settings.reply_queue.clone(),
                reack: self.reack.clone(),
            };
            let frame = req.to_frame(&self.settings.destination);
            let timeout = self.settings.ack_timeout;
            let client = self.connect().await?;
            if let Err(err) = client.handle().send_with_receipt(frame).await {
                warn!(%err, attempt, "certreq not sent; reconnecting");
                self.client = None;
                broker_error = Some(err);
                continue;
            }
            broker_error = None;
            let deadline = tokio::time::Instant::now() + timeout;
            loop {
                match tokio::time::timeout_at(deadline, client.recv()).await {
                    Err(_) => {
                        warn!(attempt, "no certresp in time");
                        break;
                    }
                    Ok(Err(err)) => {
                        warn!(%err, "connection lost waiting for certresp");
                        self.client = None;
                        broker_error = Some(err);
                        break;
                    }
                    Ok(Ok(Event::Message(frame))) => {
                        if let Ok(SsmMessage::CertResp { cert_pem }) =
                            SsmMessage::from_frame(&frame)
                        {
                            // Anyone can send to our reply queue: a certresp that fails the
                            // checks is ignored, and the real one is still waited for.
                            match check_server_cert(&cert_pem, &want_dn, trust.as_ref()) {
                                Ok(cert) => {
                                    info!(dn = %want_dn, "got the server certificate by certreq");
                                    self.server_cert = Some(cert.clone());
                                    return Ok(cert);
                                }
                                Err(err) => {
                                    warn!(%err, "ignoring a certresp");
                                    refused = Some(err);
                                }
                            }
                        }
                    }
                    Ok(Ok(Event::Error(frame))) => {
                        warn!(
                            message = frame.header("message").unwrap_or(""),
                            "broker error"
                        );
                    }
                    // Logged by the client; not a certresp.
                    Ok(Ok(Event::Oversized(_))) => {}
                }
            }
        }
        match broker_error {
            Some(err) => Err(SenderError::Broker(err)),
            None => Err(SenderError::ServerCert(match refused {
                None => format!("no certresp after {} attempts", self.settings.max_attempts),
                Some(e) => format!(
                    "no usable certresp after {} attempts (last refused: {e})",
                    self.settings.max_attempts
                ),
            })),
        }
    }

    /// Locks the next lockable element of `names` and starts sealing it on the blocking pool,
    /// so that it is ready when the message in flight is acked. `None` when there is none left.
    async fn prepare_next(
        &mut self,
        names: &mut impl Iterator<Item = String>,
    ) -> Result<Option<Preparing>, SenderError> {
        for name in names.by_ref() {
            if !self.outgoing.lock(&name)? {
                debug!(%name, "locked by someone else or gone; skipping");
                continue;
            }
            match self.start_sealing(&name).await {
                Ok(p) => return Ok(Some(p)),
                Err(e) => {
                    self.unlock(&name);
                    return Err(e);
                }
            }
        }
        Ok(None)
    }

    async fn start_sealing(&mut self, name: &str) -> Result<Preparing, SenderError> {
        let data = self.outgoing.get(name)?;
        let md5 = crypto::message_id(&data);
        let cert = self.server_cert().await?;
        let identity = self.settings.identity.clone();
        let cipher = self.settings.cipher;
        let to_seal = data.clone();
        let task =
            tokio::task::spawn_blocking(move || crypto::seal(&to_seal, &identity, &cert, cipher));
        Ok(Preparing {
            name: name.to_string(),
            data,
            md5,
            task,
        })
    }

    /// Removes a delivered element. Its fsync runs on the blocking pool so that it does not
    /// hold a runtime thread that other senders of the process (the bench's, a daemon's) need.
    /// Awaited before anything else happens: the next message's `ssm-reack` for this one must
    /// mean that it is gone from the queue.
    async fn remove(&self, name: &str) -> Result<(), SenderError> {
        let outgoing = self.outgoing.clone();
        let name = name.to_string();
        tokio::task::spawn_blocking(move || outgoing.remove(&name))
            .await
            .map_err(|e| SenderError::Task("remove", e.to_string()))??;
        Ok(())
    }

    fn unlock(&self, name: &str) {
        if let Err(err) = self.outgoing.unlock(name) {
            warn!(%err, %name, "could not unlock");
        }
    }

    /// Sends one sealed message until it is acked, rejected or given up on.
    async fn deliver(&mut self, prepared: Preparing) -> Result<(), SenderError> {
        let Preparing {
            name,
            data,
            md5,
            task,
        } = prepared;
        let name = name.as_str();
        let sealed = task
            .await
            .map_err(|e| SenderError::Task("seal", e.to_string()))??;
        let body = Bytes::from(sealed);
        let msg_id = wire_id(name);
        let started = Instant::now();
        let mut attempts = 0;
        let mut sends = 0;
        // Why the latest attempt failed when it was the broker, not the receiver: giving up
        // then reports the broker, not a missing ack for a message that never left.
        let mut broker_error: Option<StompError> = None;
        while attempts < self.settings.max_attempts {
            attempts += 1;
            let msg = SsmMessage::Msg {
                id: msg_id.clone(),
                reply_to: Some(self.settings.reply_queue.clone()),
                reack: self.reack.clone(),
                body: body.clone(),
            };
            let frame = msg.to_frame(&self.settings.destination);
            let client = match self.connect().await {
                Ok(c) => c,
                Err(SenderError::Broker(err)) => {
                    warn!(%err, "cannot reach a broker");
                    broker_error = Some(err);
                    continue;
                }
                Err(e) => return Err(e),
            };
            if let Err(err) = client.handle().send_with_receipt(frame).await {
                warn!(%err, %name, "send failed; reconnecting");
                self.client = None;
                broker_error = Some(err);
                continue;
            }
            broker_error = None;
            if sends > 0 {
                self.summary.retried += 1;
                SenderStats::bump(&self.stats.retried);
            }
            sends += 1;
            self.summary.sent += 1;
            SenderStats::bump(&self.stats.sent);
            match self.wait_for_ack(&msg_id, &md5).await {
                Wait::Acked => {
                    // Send to ack, without the removal's fsync below.
                    let latency = started.elapsed();
                    self.remove(name).await?;
                    self.reack = Some(md5.clone());
                    self.summary.acked += 1;
                    SenderStats::bump(&self.stats.acked);
                    self.stats.ack_latency.observe(latency);
                    info!(
                        id = %name,
                        %md5,
                        ms = latency.as_millis() as u64,
                        us = latency.as_micros() as u64,
                        attempts,
                        "acked"
                    );
                    return Ok(());
                }
                Wait::Rejected(reason) => {
                    warn!(id = %name, %md5, %reason, "rejected by the receiver; moving to the reject queue");
                    self.reject.add(&Record {
                        body: data,
                        signer: None,
                        empaid: Some(name.to_string()),
                        error: Some(reason),
                    })?;
                    self.remove(name).await?;
                    self.summary.rejected += 1;
                    SenderStats::bump(&self.stats.rejected);
                    return Ok(());
                }
                Wait::TimedOut => {
                    warn!(id = %name, attempts, "no ack in {:?}; sending again", self.settings.ack_timeout);
                }
                Wait::Lost(err) => {
                    warn!(%err, id = %name, "connection lost waiting for the ack; reconnecting");
                    self.client = None;
                    broker_error = Some(err);
                }
            }
        }
        match broker_error {
            Some(err) => Err(SenderError::Broker(err)),
            None => Err(SenderError::NoAck {
                id: name.to_string(),
                attempts,
            }),
        }
    }

    /// Waits for the ack of the `msg` sent with `ssm-msg-id: msg_id`.
    async fn wait_for_ack(&mut self, msg_id: &str, md5: &str) -> Wait {
        let deadline = tokio::time::Instant::now() + self.settings.ack_timeout;
        let Some(client) = self.client.as_mut() else {
            return Wait::Lost(StompError::Closed);
        };
        // Acks that were not for this message: each at debug level, their number once (a
        // forger can send any number of them; the log must not grow with each).
        let mut ignored = 0u64;
        let wait = loop {
            let event = match tokio::time::timeout_at(deadline, client.recv()).await {
                Err(_) => break Wait::TimedOut,
                Ok(Err(err)) => break Wait::Lost(err),
                Ok(Ok(event)) => event,
            };
            let frame = match event {
                Event::Message(frame) => frame,
                Event::Oversized(_) => continue, // logged by the client; not an ack we can read
                Event::Error(frame) => {
                    warn!(
                        message = frame.header("message").unwrap_or(""),
                        "broker error"
                    );
                    continue;
                }
            };
            match SsmMessage::from_frame(&frame) {
                Ok(SsmMessage::Ack { outcome, ack_for }) => {
                    match answers(msg_id, md5, outcome, ack_for.as_deref()) {
                        Answer::Acked => break Wait::Acked,
                        Answer::Rejected(reason) => break Wait::Rejected(reason),
                        Answer::NotOurs(why) => {
                            ignored += 1;
                            debug!(id = %msg_id, ?ack_for, "ignoring an ack: {why}");
                        }
                    }
                }
                Ok(other) => debug!(kind = other.kind(), "ignoring"),
                Err(err) => debug!(%err, "ignoring a malformed reply"),
            }
        };
        if ignored > 0 {
            info!(
                id = %msg_id,
                ignored,
                "ignored acks that did not answer this message (late answers to an earlier one, or forged)"
            );
        }
        wait
    }
}

/// What an `ack` on the reply queue means for the message in flight.
#[derive(Debug, PartialEq, Eq)]
enum Answer {
    /// Stored: the ack carries the message's MD5.
    Acked,
    /// Refused, with the reason: the ack names the message by its `ssm-msg-id`.
    Rejected(String),
    /// Not an answer to this message (why, for the log).
    NotOurs(&'static str),
}

/// Decides what an ack means for the message in flight, sent as `msg_id` with content `md5`.
///
/// A stored ack counts when its MD5 is the message's (the MD5 is the proof: it is not known
/// before the receiver has opened the message). A `REJECTED` counts only when its
/// `ssm-ack-for` names `msg_id`: anyone who can publish to the topic can make the receiver
/// answer `REJECTED` to any reply queue (a frame that names no message, or another one), and
/// a late answer to an earlier message must not carry over to this one. An ack naming another
/// message is never ours, whatever it says.
fn answers(msg_id: &str, md5: &str, outcome: AckOutcome, ack_for: Option<&str>) -> Answer {
    let names_us = ack_for == Some(msg_id);
    if ack_for.is_some() && !names_us {
        return Answer::NotOurs("it answers another message");
    }
    match outcome {
        AckOutcome::Stored(got) if got == md5 => Answer::Acked,
        AckOutcome::Stored(_) => Answer::NotOurs("its MD5 is another message's"),
        AckOutcome::Rejected { reason } if names_us => {
            Answer::Rejected(reason.unwrap_or_else(|| "REJECTED".into()))
        }
        AckOutcome::Rejected { .. } => {
            Answer::NotOurs("a REJECTED that does not name the message (forged or not for us)")
        }
    }
}

/// The `ssm-msg-id` for a queue element: its name, with every byte that is not printable
/// ASCII (and `%`, and space) written as `%XX`.
///
/// Receivers refuse header values outside printable ASCII, and a `directory` queue takes
/// whatever file names other tools chose; the encoding is stable across resends and keeps
/// distinct names distinct. Dirq element names are left as they are.
fn wire_id(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_graphic() && b != b'%' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Checks a `certresp` certificate: PEM, the wanted DN (RDN by RDN), chained to `trust` when
/// given, valid now.
fn check_server_cert(
    pem: &str,
    want_dn: &str,
    trust: Option<&TrustStore>,
) -> Result<X509, SenderError> {
    let cert = X509::from_pem(pem.as_bytes())
        .map_err(|e| SenderError::ServerCert(format!("certresp is not a PEM certificate: {e}")))?;
    // RDN by RDN: a `/` or `+` inside a value must not pass for a separator.
    let dn = crypto::Dn::of_name(cert.subject_name());
    if crypto::Dn::parse(want_dn).as_ref() != Some(&dn) {
        return Err(SenderError::ServerCert(format!(
            "certresp certificate is for {dn}, expected {want_dn}"
        )));
    }
    if let Some(trust) = trust {
        trust.verify(&cert, &[])?;
    }
    crypto::check_validity(&cert, Duration::ZERO)?;
    Ok(cert)
}

#[cfg(test)]
mod tests {
    use super::{answers, wire_id, Answer};
    use crate::protocol::AckOutcome;

    const MD5: &str = "5d41402abc4b2a76b9719d911017c592";
    const OTHER_MD5: &str = "7d793037a0760186574b0282f2f435e7";

    fn rejected() -> AckOutcome {
        AckOutcome::Rejected {
            reason: Some("bad signature".into()),
        }
    }

    #[test]
    fn only_a_rejected_naming_the_message_sets_it_aside() {
        assert_eq!(
            answers("m2", MD5, rejected(), Some("m2")),
            Answer::Rejected("bad signature".into())
        );
        assert_eq!(
            answers("m2", MD5, AckOutcome::Rejected { reason: None }, Some("m2")),
            Answer::Rejected("REJECTED".into())
        );
        // Forged (names nothing), stale (names the message before), or someone else's.
        for ack_for in [None, Some("m1"), Some("m2 "), Some("")] {
            assert!(
                matches!(answers("m2", MD5, rejected(), ack_for), Answer::NotOurs(_)),
                "{ack_for:?}"
            );
        }
    }

    #[test]
    fn a_stored_ack_counts_by_its_md5_unless_it_names_another_message() {
        for ack_for in [None, Some("m2")] {
            assert_eq!(
                answers("m2", MD5, AckOutcome::Stored(MD5.into()), ack_for),
                Answer::Acked
            );
        }
        assert!(matches!(
            answers("m2", MD5, AckOutcome::Stored(OTHER_MD5.into()), Some("m2")),
            Answer::NotOurs(_)
        ));
        // A late ack for the message before, even with our MD5 (same content sent twice).
        assert!(matches!(
            answers("m2", MD5, AckOutcome::Stored(MD5.into()), Some("m1")),
            Answer::NotOurs(_)
        ));
    }

    #[test]
    fn wire_ids_are_printable_ascii_and_distinct() {
        assert_eq!(
            wire_id("6b06a840/6b06a85987a6c8"),
            "6b06a840/6b06a85987a6c8"
        );
        assert_eq!(wire_id("a:b;c=d"), "a:b;c=d");
        assert_eq!(wire_id("with space"), "with%20space");
        assert_eq!(wire_id("café"), "caf%C3%A9");
        assert_eq!(wire_id("a\nb"), "a%0Ab");
        assert_ne!(wire_id("%20"), wire_id(" "));
    }
}
