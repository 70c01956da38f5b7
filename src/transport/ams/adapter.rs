//! The AMS adapter: [`Envelope`]s as AMS messages over [`AmsClient`], behind the transport
//! seam ([`crate::transport::Connection::Ams`], [`crate::transport::Publisher::Ams`]).
//!
//! Guarantees:
//! - A confirmed send returns only once the service answered the publish with the message's
//!   `messageId` (returned to the caller, for the `Argo ID` log line). Concurrent confirmed
//!   sends on one connection are coalesced into one publish request, bounded by
//!   [`AmsSettings::max_batch`] messages and [`AmsSettings::max_batch_bytes`] body bytes.
//! - A `413` answers only the message that is too large, as
//!   [`TransportError::TooLarge`]: the real service publishes a batch in order and stops at
//!   the first message too large without returning ids, so after a `413` on a batch every
//!   message of it is published again on its own (those before the culprit then exist twice
//!   on the service; receivers recognise the duplicates).
//! - The receiving side pulls batches with `"returnImmediately":"true"` and backs off while
//!   nothing is waiting (no busy loop). A pulled batch is acknowledged (cumulatively, with its
//!   last ack id) only once every delivery of it was settled by [`AmsPublisher::ack`], and
//!   nothing is pulled again before that: AMS acks count only against the last pull.
//! - The ack deadline is the subscription's own, read when subscribing (`GET` of the
//!   subscription; a failure other than 401/404 is logged and the service's default of
//!   10 s assumed — a 403 too: a consumer's token may pull without reading the settings). A batch still unsettled at half the deadline in force gets it extended
//!   (`modifyAckDeadline`: doubled, at least 60 s, at most the service's 600 s), so the ack
//!   lands inside it; the subscription's own deadline is set back when the connection closes.
//!   A connection dropped with a batch unsettled acknowledges nothing: the service delivers it
//!   again on the next pull (the receiver's redelivery request).
//! - A `408` on acknowledge (too late) is logged and the run goes on: the messages come again
//!   and the receiver's dedupe stores them once. `401`/`403`/`404` end the connection with the
//!   client's message, which says what to fix.
//! - Pulling and acknowledging run in a task of the connection, so [`AmsConnection::recv`] is
//!   cancel-safe (the receiver polls it in a `select!`); the task ends with the connection.
//! - A message without an `empaid` attribute is delivered with `empa-id: N/A`, as the Python
//!   receiver stores it.

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot, Notify};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{debug, warn};

use super::client::{with_retries, AmsClient, AmsConfig, AmsError, Pulled, RetryPolicy};
use super::wire::{Attributes, SubscriptionInfo, EMPAID};
use crate::protocol::v2::EMPA_ID;
use crate::transport::{
    AckToken, Acknowledge, Capabilities, Delivery, Envelope, Event, TransportError,
};

/// What AMS can do: no reply channel (so no SSM v1), confirmed publishes, acknowledgements.
pub const CAPABILITIES: Capabilities = Capabilities {
    reply_channel: false,
    receipts: true,
    broker_acks: true,
};

/// The `empa-id` of a message that came without attributes (the Python receiver's default).
pub const NO_EMPAID: &str = "N/A";

/// Default messages per publish and per pull.
pub const DEFAULT_MAX_BATCH: u32 = 100;
/// Default body bytes per publish (before base64).
pub const DEFAULT_MAX_BATCH_BYTES: usize = 4 * 1024 * 1024;

/// Pause after an empty pull, doubled on each further empty one up to [`IDLE_MAX`].
const IDLE_MIN: Duration = Duration::from_millis(50);
const IDLE_MAX: Duration = Duration::from_secs(2);
/// How long closing a connection waits for the acknowledgement of its last, settled batch.
const CLOSE_WAIT: Duration = Duration::from_secs(10);

/// The real service's default ack deadline, assumed when the subscription cannot be read.
pub const DEFAULT_ACK_DEADLINE: u32 = 10;
/// The longest ack deadline the service accepts.
pub const MAX_ACK_DEADLINE: u32 = 600;
/// The shortest extended deadline: one extension should cover a slow batch.
const MIN_EXTENDED_DEADLINE: u32 = 60;

/// When a batch pulled at `pulled_at` under a deadline of `seconds` gets it extended: at half
/// of it, which leaves the other half for the `modifyAckDeadline` call to arrive.
fn extend_at(pulled_at: Instant, seconds: u32) -> Instant {
    pulled_at + Duration::from_millis(u64::from(seconds) * 500)
}

/// The deadline an extension sets after `seconds`: doubled, at least
/// [`MIN_EXTENDED_DEADLINE`]; `None` once the service's maximum is in force.
fn extended(seconds: u32) -> Option<u32> {
    (seconds < MAX_ACK_DEADLINE).then(|| {
        seconds
            .saturating_mul(2)
            .clamp(MIN_EXTENDED_DEADLINE, MAX_ACK_DEADLINE)
    })
}

/// What the `GET` of the subscription at subscribe gives: its deadline, or — for a failure
/// that says nothing about the settings (connection, 5xx, an odd answer) — the default, with
/// a warning; a 403 too (a token may pull without reading the subscription's settings). 401,
/// 404 and the token exchange's refusals end the run: they need a fix.
fn deadline_from(
    subscription: &str,
    got: Result<SubscriptionInfo, AmsError>,
) -> Result<u32, AmsError> {
    match got {
        Ok(info) => {
            let secs = u32::try_from(
                info.ack_deadline_seconds
                    .clamp(1, i64::from(MAX_ACK_DEADLINE)),
            )
            .unwrap_or(DEFAULT_ACK_DEADLINE);
            Ok(secs)
        }
        Err(
            e @ (AmsError::Unauthorized { .. } | AmsError::NotFound { .. } | AmsError::Setup(_)),
        ) => Err(e),
        // A consumer's token may be allowed to pull and ack but not to read the subscription's
        // settings (the Python SSM never reads them): the pulls decide, not this.
        Err(err @ AmsError::Forbidden { .. }) => {
            warn!(
                %err,
                subscription,
                seconds = DEFAULT_ACK_DEADLINE,
                "this token may not read the subscription's settings; assuming the service's default ack deadline"
            );
            Ok(DEFAULT_ACK_DEADLINE)
        }
        Err(e @ AmsError::Authn { .. }) if !e.is_retryable() => Err(e),
        Err(err) => {
            warn!(
                %err,
                subscription,
                seconds = DEFAULT_ACK_DEADLINE,
                "could not read the subscription's ack deadline; assuming the service's default"
            );
            Ok(DEFAULT_ACK_DEADLINE)
        }
    }
}

/// How to reach AMS.
#[derive(Debug, Clone)]
pub struct AmsSettings {
    /// Host, project, token, TLS.
    pub client: AmsConfig,
    /// Messages per publish request and per pull.
    pub max_batch: u32,
    /// Body bytes per publish request (a single larger message still goes alone).
    pub max_batch_bytes: usize,
    /// Retries of one call (connection errors, 408, 5xx).
    pub retry: RetryPolicy,
}

impl AmsSettings {
    /// Settings with the default batch bounds and retries.
    pub fn new(client: AmsConfig) -> AmsSettings {
        AmsSettings {
            client,
            max_batch: DEFAULT_MAX_BATCH,
            max_batch_bytes: DEFAULT_MAX_BATCH_BYTES,
            retry: RetryPolicy::default(),
        }
    }
}

/// Numbers connections, so that a settlement never counts for another connection's batch.
static CONNECTIONS: AtomicU64 = AtomicU64::new(1);

/// What acknowledging one pulled message takes: its place in its connection's batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AmsAck {
    connection: u64,
    batch: u64,
    index: usize,
}

/// The batch being handled: which deliveries are settled.
struct Batch {
    number: u64,
    settled: Vec<bool>,
    left: usize,
}

/// What the connection's pull task and its publishers share.
#[derive(Default)]
struct Shared {
    batch: Mutex<Option<Batch>>,
    settled: Notify,
    /// Set by [`AmsConnection::close`]: pull no more; acknowledge a batch only if it is settled.
    closing: std::sync::atomic::AtomicBool,
}

impl Shared {
    fn closing(&self) -> bool {
        self.closing.load(std::sync::atomic::Ordering::Acquire)
    }
}

/// One confirmed send waiting for its publish.
struct Job {
    envelope: Envelope,
    done: oneshot::Sender<Result<String, TransportError>>,
}

/// A "connection" to AMS: HTTP is connectionless, but a connection here is one client (with
/// its kept-alive pool), one publish batcher and, once subscribed, one pull task.
pub struct AmsConnection {
    client: AmsClient,
    settings: AmsSettings,
    id: u64,
    shared: Arc<Shared>,
    jobs: mpsc::Sender<Job>,
    batcher: JoinHandle<()>,
    events: Option<mpsc::Receiver<Result<Event, TransportError>>>,
    puller: Option<JoinHandle<()>>,
    subscription: Option<String>,
}

impl Drop for AmsConnection {
    fn drop(&mut self) {
        self.batcher.abort();
        if let Some(p) = &self.puller {
            p.abort();
        }
    }
}

impl AmsConnection {
    /// Makes the client (no request yet: HTTP connects on the first call).
    pub async fn connect(settings: &AmsSettings) -> Result<AmsConnection, TransportError> {
        let client = AmsClient::new(settings.client.clone())?;
        let (jobs, rx) = mpsc::channel(settings.max_batch.max(1) as usize * 2);
        let batcher = tokio::spawn(batcher(client.clone(), rx, settings.clone()));
        Ok(AmsConnection {
            client,
            settings: settings.clone(),
            id: CONNECTIONS.fetch_add(1, Ordering::Relaxed),
            shared: Arc::new(Shared::default()),
            jobs,
            batcher,
            events: None,
            puller: None,
            subscription: None,
        })
    }

    /// Starts pulling from the subscription `destination`. The subscription is read first
    /// (for its ack deadline), so that a wrong token, project or name ends the run here.
    pub async fn subscribe(
        &mut self,
        destination: &str,
        _ack: Acknowledge,
    ) -> Result<(), TransportError> {
        if self.puller.is_some() {
            return Err(TransportError::Unsupported(
                "one AMS connection pulls from one subscription",
            ));
        }
        let info = with_retries(&self.settings.retry, || {
            self.client.subscription(destination)
        })
        .await;
        let ack_deadline = deadline_from(destination, info)?;
        debug!(subscription = destination, ack_deadline, "subscribed");
        let (tx, rx) = mpsc::channel(self.settings.max_batch.max(1) as usize);
        let puller = Puller {
            client: self.client.clone(),
            subscription: destination.to_string(),
            settings: self.settings.clone(),
            connection: self.id,
            shared: self.shared.clone(),
            events: tx,
            ack_deadline,
        };
        self.puller = Some(tokio::spawn(puller.run()));
        self.events = Some(rx);
        self.subscription = Some(destination.to_string());
        Ok(())
    }

    /// A cheap handle that publishes on this connection and settles its deliveries.
    pub fn publisher(&self) -> AmsPublisher {
        AmsPublisher {
            connection: self.id,
            shared: self.shared.clone(),
            jobs: self.jobs.clone(),
        }
    }

    /// The next delivery. Without a subscription nothing ever arrives (AMS has no reply
    /// channel).
    pub async fn recv(&mut self) -> Result<Event, TransportError> {
        match &mut self.events {
            None => std::future::pending().await,
            Some(rx) => match rx.recv().await {
                Some(event) => event,
                None => Err(TransportError::closed()),
            },
        }
    }

    /// Ends the connection: a batch whose deliveries are all settled is acknowledged first
    /// (waiting up to [`CLOSE_WAIT`]), an unsettled one is not (it comes again).
    pub async fn close(mut self) -> Result<(), TransportError> {
        self.shared
            .closing
            .store(true, std::sync::atomic::Ordering::Release);
        self.shared.settled.notify_one();
        if let Some(puller) = self.puller.take() {
            if tokio::time::timeout(CLOSE_WAIT, puller).await.is_err() {
                warn!("the last acknowledgement did not finish in time; those messages come again");
            }
        }
        Ok(())
    }

    /// `https://host:port/project`, for logs.
    pub fn describe(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = self.client.config();
        write!(f, "ams://{}:{}/{}", c.host, c.port, c.project)?;
        if let Some(s) = &self.subscription {
            write!(f, " subscription {s}")?;
        }
        Ok(())
    }
}

/// The publishing (and settling) side of an [`AmsConnection`]: cheap to clone.
#[derive(Clone)]
pub struct AmsPublisher {
    connection: u64,
    shared: Arc<Shared>,
    jobs: mpsc::Sender<Job>,
}

impl fmt::Debug for AmsPublisher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AmsPublisher")
            .field("connection", &self.connection)
            .finish_non_exhaustive()
    }
}

impl AmsPublisher {
    /// Publishes `envelope` (to the topic `envelope.destination`), coalesced with concurrent
    /// sends; returns the service's `messageId`.
    pub async fn send_confirmed(&self, envelope: Envelope) -> Result<String, TransportError> {
        let (done, answer) = oneshot::channel();
        self.jobs
            .send(Job { envelope, done })
            .await
            .map_err(|_| TransportError::closed())?;
        answer.await.map_err(|_| TransportError::closed())?
    }

    /// Settles one delivery; the batch is acknowledged once all of its deliveries are.
    pub fn ack(&self, token: &AmsAck) -> Result<(), TransportError> {
        if token.connection != self.connection {
            return Err(TransportError::StaleAck);
        }
        let mut guard = self
            .shared
            .batch
            .lock()
            .map_err(|_| TransportError::closed())?;
        let Some(batch) = guard.as_mut().filter(|b| b.number == token.batch) else {
            return Err(TransportError::StaleAck);
        };
        if let Some(s) = batch.settled.get_mut(token.index) {
            if !*s {
                *s = true;
                batch.left -= 1;
                if batch.left == 0 {
                    self.shared.settled.notify_one();
                }
            }
        }
        Ok(())
    }
}

/// The attributes an envelope is published with: its `empa-id` as `empaid`.
fn attributes_of(envelope: &Envelope) -> Attributes {
    let mut a = Attributes::new();
    if let Some(id) = envelope.header(EMPA_ID) {
        a.insert(EMPAID.to_string(), id.to_string());
    }
    a
}

/// Takes confirmed sends off the channel and publishes them in batches.
async fn batcher(client: AmsClient, mut rx: mpsc::Receiver<Job>, settings: AmsSettings) {
    let max = settings.max_batch.max(1) as usize;
    let mut carry: Option<Job> = None;
    loop {
        let first = match carry.take() {
            Some(j) => j,
            None => match rx.recv().await {
                Some(j) => j,
                None => return,
            },
        };
        let topic = first.envelope.destination.clone();
        let mut bytes = first.envelope.body.len();
        let mut jobs = vec![first];
        while jobs.len() < max {
            match rx.try_recv() {
                Ok(j) => {
                    if j.envelope.destination != topic
                        || bytes + j.envelope.body.len() > settings.max_batch_bytes
                    {
                        carry = Some(j);
                        break;
                    }
                    bytes += j.envelope.body.len();
                    jobs.push(j);
                }
                Err(_) => break,
            }
        }
        publish(&client, &settings.retry, &topic, jobs).await;
    }
}

/// Publishes one batch and answers each of its sends.
async fn publish(client: &AmsClient, retry: &RetryPolicy, topic: &str, jobs: Vec<Job>) {
    let messages: Vec<(Attributes, Bytes)> = jobs
        .iter()
        .map(|j| (attributes_of(&j.envelope), j.envelope.body.clone()))
        .collect();
    match with_retries(retry, || client.publish(topic, &messages)).await {
        Ok(ids) => {
            for (job, id) in jobs.into_iter().zip(ids) {
                let _ = job.done.send(Ok(id));
            }
        }
        Err(AmsError::TooLarge { .. }) if jobs.len() > 1 => {
            // Partly published, without ids (see the module guarantees): each on its own.
            warn!(
                messages = jobs.len(),
                "413 on a batch: publishing its messages one by one"
            );
            for (job, message) in jobs.into_iter().zip(messages) {
                let one = [message];
                let result = match with_retries(retry, || client.publish(topic, &one)).await {
                    Ok(mut ids) => ids.pop().ok_or_else(TransportError::closed),
                    Err(e) => Err(map_publish_error(e)),
                };
                let _ = job.done.send(result);
            }
        }
        Err(e) if jobs.len() == 1 => {
            if let Some(job) = jobs.into_iter().next() {
                let _ = job.done.send(Err(map_publish_error(e)));
            }
        }
        Err(e) => {
            let shared = Arc::new(map_publish_error(e));
            for job in jobs {
                let _ = job
                    .done
                    .send(Err(TransportError::Shared(Arc::clone(&shared))));
            }
        }
    }
}

fn map_publish_error(e: AmsError) -> TransportError {
    match e {
        AmsError::TooLarge { .. } => TransportError::TooLarge(e.to_string()),
        e => TransportError::from(e),
    }
}

/// The pull loop of one subscribed connection.
struct Puller {
    client: AmsClient,
    subscription: String,
    settings: AmsSettings,
    connection: u64,
    shared: Arc<Shared>,
    events: mpsc::Sender<Result<Event, TransportError>>,
    /// The subscription's own deadline, read at subscribe.
    ack_deadline: u32,
}

impl Puller {
    async fn run(self) {
        let mut in_force = self.ack_deadline;
        let result = self.pull_loop(&mut in_force).await;
        if in_force != self.ack_deadline {
            // Best effort: the subscription's own setting is the operator's, not ours.
            match self
                .client
                .modify_ack_deadline(&self.subscription, self.ack_deadline)
                .await
            {
                Ok(()) => debug!(seconds = self.ack_deadline, "ack deadline set back"),
                Err(err) => {
                    warn!(%err, seconds = self.ack_deadline, "could not set the ack deadline back")
                }
            }
        }
        if let Err(e) = result {
            let _ = self.events.send(Err(e)).await;
        }
    }

    /// `in_force`: the deadline the service applies now (raised by extensions).
    async fn pull_loop(&self, in_force: &mut u32) -> Result<(), TransportError> {
        let mut idle = IDLE_MIN;
        let mut number = 0u64;
        loop {
            if self.shared.closing() {
                return Ok(());
            }
            let pulled = with_retries(&self.settings.retry, || {
                self.client
                    .pull(&self.subscription, self.settings.max_batch, true)
            })
            .await?;
            let Some(last) = pulled.last() else {
                tokio::time::sleep(idle).await;
                idle = (idle * 2).min(IDLE_MAX);
                continue;
            };
            idle = IDLE_MIN;
            number += 1;
            let last_ack_id = last.ack_id.clone();
            let count = pulled.len();
            if let Ok(mut guard) = self.shared.batch.lock() {
                *guard = Some(Batch {
                    number,
                    settled: vec![false; count],
                    left: count,
                });
            }
            let pulled_at = Instant::now();
            let deliveries: VecDeque<Delivery> = pulled
                .into_iter()
                .enumerate()
                .map(|(index, p)| self.delivery(p, number, index))
                .collect();
            for d in deliveries {
                if self.events.send(Ok(Event::Delivery(d))).await.is_err() {
                    return Ok(());
                }
            }
            // Wait until every delivery is settled; extend the deadline if that takes long.
            let mut stuck = false;
            loop {
                let notified = self.shared.settled.notified();
                let left = match self.shared.batch.lock() {
                    Ok(g) => g.as_ref().map_or(0, |b| b.left),
                    Err(_) => return Err(TransportError::closed()),
                };
                if left == 0 {
                    break;
                }
                if self.shared.closing() {
                    return Ok(()); // unsettled: not acknowledged, delivered again
                }
                let Some(next) = extended(*in_force).filter(|_| !stuck) else {
                    notified.await;
                    continue;
                };
                tokio::select! {
                    () = notified => {}
                    () = tokio::time::sleep_until(extend_at(pulled_at, *in_force)) => {
                        match self.client.modify_ack_deadline(&self.subscription, next).await {
                            Ok(()) => {
                                debug!(seconds = next, "ack deadline extended");
                                *in_force = next;
                            }
                            Err(err) => {
                                // Not again for this deadline: the ack may come late (408),
                                // and the messages then come again and are stored once.
                                warn!(%err, "could not extend the ack deadline");
                                stuck = true;
                            }
                        }
                    }
                }
            }
            if let Ok(mut g) = self.shared.batch.lock() {
                *g = None;
            }
            let ack = [last_ack_id];
            match with_retries(&self.settings.retry, || {
                self.client.acknowledge(&self.subscription, &ack)
            })
            .await
            {
                Ok(()) => debug!(messages = count, "acknowledged"),
                Err(err @ AmsError::AckDeadlineExceeded { .. }) => warn!(
                    %err,
                    messages = count,
                    "acknowledged after the deadline: the service delivers these again (stored ones are recognised)"
                ),
                Err(err @ AmsError::AckRefused { .. }) => warn!(
                    %err,
                    messages = count,
                    "acknowledgement refused (another consumer pulled, or a retried ack got through): the service may deliver these again"
                ),
                Err(err) => return Err(err.into()),
            }
        }
    }

    fn delivery(&self, p: Pulled, batch: u64, index: usize) -> Delivery {
        let envelope = envelope_of(p, &self.subscription);
        Delivery {
            envelope,
            reply_to: None,
            ack: AckToken::Ams(AmsAck {
                connection: self.connection,
                batch,
                index,
            }),
        }
    }
}

/// The envelope a pulled message is delivered as: its `empaid` attribute as `empa-id`
/// ([`NO_EMPAID`] without one), its AMS id as `ams-message-id`, its data as the body (empty
/// when it is not base64: the receiver refuses it, and acknowledges it).
pub fn envelope_of(p: Pulled, subscription: &str) -> Envelope {
    let mut envelope = Envelope::new(subscription);
    let empaid = p
        .attributes
        .get(EMPAID)
        .cloned()
        .unwrap_or_else(|| NO_EMPAID.to_string());
    envelope.headers.push((EMPA_ID.to_string(), empaid));
    envelope
        .headers
        .push(("ams-message-id".to_string(), p.message_id.clone()));
    envelope.body = match p.body {
        Ok(b) => b,
        Err(reason) => {
            warn!(message_id = %p.message_id, %reason, "message data is not base64");
            Bytes::new()
        }
    };
    envelope
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pulled(attributes: &[(&str, &str)], body: Result<Bytes, String>) -> Pulled {
        Pulled {
            ack_id: "projects/accounting/subscriptions/s:3".into(),
            message_id: "3".into(),
            attributes: attributes
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            body,
            publish_time: String::new(),
        }
    }

    #[test]
    fn a_message_without_attributes_has_empa_id_n_a() {
        let e = envelope_of(pulled(&[], Ok(Bytes::from_static(b"x"))), "s");
        assert_eq!(e.header(EMPA_ID), Some(NO_EMPAID));
        assert_eq!(e.header("ams-message-id"), Some("3"));
        assert_eq!(e.body, Bytes::from_static(b"x"));
        let e = envelope_of(pulled(&[("empaid", "q/e1")], Err("bad".into())), "s");
        assert_eq!(e.header(EMPA_ID), Some("q/e1"));
        assert!(e.body.is_empty());
    }

    #[test]
    fn published_attributes_carry_the_empa_id() {
        let e = Envelope::new("t").with_header(EMPA_ID, "q/e1");
        assert_eq!(
            attributes_of(&e).get(EMPAID).map(String::as_str),
            Some("q/e1")
        );
        assert!(attributes_of(&Envelope::new("t")).is_empty());
    }

    #[tokio::test]
    async fn settling_counts_only_for_this_connection_and_batch() {
        let shared = Arc::new(Shared::default());
        let (jobs, _rx) = mpsc::channel(1);
        let p = AmsPublisher {
            connection: 7,
            shared: shared.clone(),
            jobs,
        };
        *shared.batch.lock().unwrap() = Some(Batch {
            number: 2,
            settled: vec![false; 2],
            left: 2,
        });
        let token = |connection, batch, index| AmsAck {
            connection,
            batch,
            index,
        };
        assert!(matches!(
            p.ack(&token(6, 2, 0)),
            Err(TransportError::StaleAck)
        ));
        assert!(matches!(
            p.ack(&token(7, 1, 0)),
            Err(TransportError::StaleAck)
        ));
        p.ack(&token(7, 2, 0)).unwrap();
        p.ack(&token(7, 2, 0)).unwrap(); // twice counts once
        assert_eq!(shared.batch.lock().unwrap().as_ref().unwrap().left, 1);
        p.ack(&token(7, 2, 1)).unwrap();
        assert_eq!(shared.batch.lock().unwrap().as_ref().unwrap().left, 0);
        // The pull task is told.
        tokio::time::timeout(Duration::from_secs(1), shared.settled.notified())
            .await
            .unwrap();
    }

    #[test]
    fn extensions_come_at_half_the_deadline_and_grow_to_the_maximum() {
        let t = Instant::now();
        assert_eq!(extend_at(t, 10), t + Duration::from_secs(5));
        assert_eq!(extend_at(t, 0), t);
        assert_eq!(extended(0), Some(60));
        assert_eq!(extended(10), Some(60));
        assert_eq!(extended(60), Some(120));
        assert_eq!(extended(400), Some(600));
        assert_eq!(extended(600), None);
    }

    #[test]
    fn the_deadline_falls_back_only_for_failures_that_need_no_fix() {
        let info = |secs| SubscriptionInfo {
            ack_deadline_seconds: secs,
            ..SubscriptionInfo::default()
        };
        assert_eq!(deadline_from("s", Ok(info(33))).unwrap(), 33);
        assert_eq!(deadline_from("s", Ok(info(-1))).unwrap(), 1);
        assert_eq!(deadline_from("s", Ok(info(9999))).unwrap(), 600);
        let server = AmsError::Server {
            host: "h".into(),
            call: "c".into(),
            status: 503,
            message: "<html>".into(),
        };
        assert_eq!(
            deadline_from("s", Err(server)).unwrap(),
            DEFAULT_ACK_DEADLINE
        );
        let odd = AmsError::BadAnswer {
            host: "h".into(),
            call: "c".into(),
            reason: "not a subscription".into(),
        };
        assert_eq!(deadline_from("s", Err(odd)).unwrap(), DEFAULT_ACK_DEADLINE);
        // A token that may pull but not read the settings: the pulls decide.
        let forbidden = AmsError::Forbidden {
            host: "h".into(),
            call: "c".into(),
            message: "Access to this resource is forbidden".into(),
        };
        assert_eq!(
            deadline_from("s", Err(forbidden)).unwrap(),
            DEFAULT_ACK_DEADLINE
        );
        for e in [
            AmsError::Unauthorized {
                host: "h".into(),
                token: super::super::TokenSource::Configured,
                call: "c".into(),
                message: "Unauthorized".into(),
            },
            AmsError::NotFound {
                host: "h".into(),
                what: "subscription s".into(),
                message: "Subscription doesn't exist".into(),
                hint: "check",
            },
            AmsError::Authn {
                target: "h:8443".into(),
                dn: String::new(),
                status: 404,
                message: "Binding was not found".into(),
                hint: "register",
            },
        ] {
            assert!(deadline_from("s", Err(e)).is_err());
        }
    }
}
