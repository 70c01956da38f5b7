//! The receiver (SSM server): takes messages off a broker topic, opens and verifies them, stores
//! them durably and acks them on the sender's reply queue.
//!
//! Guarantees:
//! - A message is acked with its MD5 only after it is stored durably in the incoming queue and
//!   recorded as acked (both fsynced). A storage failure sends no ack at all, so the sender keeps
//!   the message and sends it again later; it is never answered `REJECTED` for a fault of ours.
//! - Anything that cannot be accepted (undecryptable, bad or untrusted signature, signer not in
//!   the allowed-DN list, corrupt payload, malformed SSM headers) is kept with the reason in the
//!   reject queue and then answered `REJECTED` when it names a reply queue and a message (a
//!   usable `ssm-msg-id`, named back in `ssm-ack-for`); nothing of it reaches the incoming
//!   queue. A frame that names no message is not answered (the answer could only serve a forger).
//! - A message whose signer our own trust store cannot judge (our CRL for its CA is expired
//!   or not yet valid) is neither stored nor rejected: it is logged, counted in
//!   [`Stats::trust_unavailable`] and not acked, so that the sender sends it again.
//! - A resent message (same signer and MD5, not yet confirmed by `ssm-reack`) is stored once and
//!   acked again. The `ssm-reack` of a message is applied before that message is checked. A
//!   replay of a stored message's sealed bytes (within `reack_max_age`) is a duplicate whatever
//!   its `ssm-msg-id` and `ssm-reack` say (they are not signed).
//! - A `certreq` is answered at most [`CERTRESP_BURST`] times at once per reply queue, then
//!   once per [`CERTRESP_REFILL`]; the rest are dropped (counted, reported once a minute), so
//!   that the receiver cannot be used to send its certificate to a queue over and over.
//! - What waits in the receiver is bounded by bytes, not frames: beyond the budget it stops
//!   reading from the broker (back-pressure) rather than dropping anything.
//! - Messages from different senders (different reply queues) are opened concurrently on a pool
//!   of lanes, one per core; the messages of one sender are handled in the order they arrived.
//!   Stores that are ready together are committed together (one fsync round per batch).
//!
//! Layout: this file holds the event loop (connection, reconnects, shutdown); `dispatch` turns
//! each delivery into a job (or an answer); `lanes` opens and verifies messages; `commit`
//! stores them in batches; `dedupe` is what the committer asks to store each message once, and
//! `acked` its durable file implementation; `reply` decides and sends the answers; `certreq`
//! limits certificate answers; `stats` holds the live counters and latency histograms.

mod acked;
mod certreq;
mod commit;
mod dedupe;
mod dispatch;
mod lanes;
mod reply;
mod stats;

pub use acked::{AckKey, Acked, AckedLog, TOMBSTONE_AGE};
pub use certreq::{CERTRESP_BURST, CERTRESP_REFILL};
pub use stats::{Histogram, HistogramSnapshot, RejectReason, Stats};

use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::crypto::{DnList, Opener};
use crate::queue::{MessageStore, QueueError};
use crate::transport::{Acknowledge, Connection, Event, TransportConfig, TransportError};
use dispatch::{Dispatched, Dispatcher};
use reply::Replies;

/// Everything the receiver needs, already loaded and checked.
pub struct ReceiverSettings {
    /// How to reach the service (the broker(s)).
    pub transport: TransportConfig,
    /// The topic (or queue) senders send to.
    pub destination: String,
    /// Decrypts with our key and verifies signers against the trust store.
    pub opener: Opener,
    /// Our certificate, PEM, sent in answer to `certreq`.
    pub cert_pem: String,
    /// The allowed signer DNs; shared so that SIGHUP can swap in a re-read list.
    pub dns: Arc<RwLock<DnList>>,
    /// The directory holding `incoming/`, `reject/` and the acked record.
    pub store_path: PathBuf,
    /// How long an acked MD5 is remembered when the sender never confirms it.
    pub reack_max_age: Duration,
    /// Stop after this many messages were stored or rejected (malformed SSM messages
    /// included). Duplicates acked again do not count, nor messages that could not be stored
    /// (they come again): a service that delivers a message twice does not end the run early.
    pub max_messages: Option<u64>,
    /// Stop after this long.
    pub run_for: Option<Duration>,
    /// Number of lanes opening messages concurrently (0 = one per core).
    pub lanes: usize,
}

/// How the outside world steers a running receiver.
#[derive(Default)]
pub struct Control {
    /// Cancelled to stop: in-flight messages are finished, then the receiver returns.
    pub shutdown: CancellationToken,
    /// Told once the receiver is subscribed (senders may start).
    pub ready: Option<oneshot::Sender<()>>,
    /// Counters, readable while it runs.
    pub stats: Arc<Stats>,
}

/// Why the receiver stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ReceiverError {
    /// The message store could not be opened.
    #[error("cannot open the message store: {0}")]
    Store(#[from] QueueError),
    /// The acked record could not be opened.
    #[error("cannot open the acked-message record {path}: {source}")]
    AckedLog {
        /// The record's path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The broker could not be reached or refused the subscription.
    #[error("broker: {0}")]
    Broker(#[from] TransportError),
}

/// Deliveries the broker may send ahead of our acknowledgements: enough to keep every lane and
/// the committer's batches full, within the lanes' own bounds.
const PREFETCH: u32 = 200;

/// Pause before reconnecting to have an unstored SSM2 message delivered again.
const REDELIVERY_PAUSE: Duration = Duration::from_secs(5);

/// Runs the receiver until `control.shutdown` is cancelled, `max_messages` were stored or
/// rejected, or `run_for` elapsed. Returns the counters.
pub async fn run(
    settings: ReceiverSettings,
    control: Control,
) -> Result<Arc<Stats>, ReceiverError> {
    let Control {
        shutdown,
        mut ready,
        stats,
    } = control;
    let store = MessageStore::open(&settings.store_path)?;
    let log_path = crate::queue::StoreLayout::new(&settings.store_path).acked_log();
    let acked = AckedLog::open(&log_path, settings.reack_max_age).map_err(|source| {
        ReceiverError::AckedLog {
            path: log_path.clone(),
            source,
        }
    })?;
    let committer = commit::Committer::start(store, acked);
    committer.recover().await;

    let mut conn = connect(&settings).await?;
    let replies = Arc::new(Replies::new(conn.publisher()));
    let lane_count = if settings.lanes == 0 {
        std::thread::available_parallelism().map_or(2, |n| n.get())
    } else {
        settings.lanes
    };
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<lanes::Handled>();
    let lanes = lanes::Lanes::start(
        lane_count,
        lanes::LaneContext {
            opener: settings.opener.clone(),
            dns: settings.dns.clone(),
            committer: committer.clone(),
            replies: replies.clone(),
            stats: stats.clone(),
            done: done_tx,
        },
    );
    info!(
        destination = %settings.destination,
        broker = %conn.peer(),
        lanes = lane_count,
        "receiver subscribed"
    );
    if let Some(tx) = ready.take() {
        let _ = tx.send(());
    }

    let deadline = settings.run_for.map(|d| tokio::time::Instant::now() + d);
    let mut dispatcher = Dispatcher {
        cert_pem: &settings.cert_pem,
        lanes: &lanes,
        committer: &committer,
        replies: &replies,
        stats: &stats,
        certreqs: certreq::Limiter::default(),
    };
    let mut handled = 0u64;
    let mut dispatched = 0u64;
    loop {
        if settings.max_messages.is_some_and(|max| handled >= max) {
            break;
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = sleep_until(deadline) => break,
            Some(h) = done_rx.recv() => match h {
                lanes::Handled::Counted => handled += 1,
                // Frees its place among the deliveries taken, so that one more is received.
                lanes::Handled::NotCounted => dispatched = dispatched.saturating_sub(1),
            },
            () = replies.redelivery_requested() => {
                // An SSM2 message could not be stored (full disk, our CRL): only the broker
                // holds it now. A new connection makes the broker deliver again everything not
                // acknowledged; the pause keeps a lasting fault from turning into a busy loop.
                warn!(
                    "a message could not be stored; reconnecting in {:?} so that the broker delivers it again",
                    REDELIVERY_PAUSE
                );
                Stats::bump(&stats.reconnects);
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    () = tokio::time::sleep(REDELIVERY_PAUSE) => {}
                }
                let old = std::mem::replace(&mut conn, tokio::select! {
                    _ = shutdown.cancelled() => break,
                    c = connect(&settings) => c?,
                });
                replies.set_publisher(conn.publisher());
                if let Err(err) = old.close().await {
                    debug!(%err, "closing the old connection");
                }
            }
            event = conn.recv(), if settings.max_messages.is_none_or(|max| dispatched < max) => match event {
                Ok(Event::Delivery(delivery)) => {
                    match dispatcher.dispatch(delivery).await {
                        Dispatched::ToLane => dispatched += 1,
                        Dispatched::Rejected => {
                            dispatched += 1;
                            handled += 1;
                        }
                        Dispatched::NotCounted => {}
                    }
                }
                Ok(Event::Skipped(o)) => dispatcher.skipped(o).await,
                Ok(Event::ServiceError(message)) => warn!(
                    %message,
                    "broker reported an error (for example an ack to a sender that left); carrying on"
                ),
                Err(err) => {
                    warn!(%err, "lost the broker connection; reconnecting");
                    Stats::bump(&stats.reconnects);
                    conn = tokio::select! {
                        _ = shutdown.cancelled() => break,
                        c = connect(&settings) => c?,
                    };
                    replies.set_publisher(conn.publisher());
                }
            },
        }
    }
    info!("receiver stopping: finishing messages in flight");
    drop(dispatcher);
    lanes.finish().await;
    committer.finish().await;
    if let Err(err) = conn.close().await {
        debug!(%err, "disconnect");
    }
    Ok(stats)
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

async fn connect(settings: &ReceiverSettings) -> Result<Connection, TransportError> {
    // Messages the lanes cannot take yet wait in the transport, bounded too (see `lanes`).
    let cfg = settings
        .transport
        .clone()
        .with_buffer_limit(lanes::MAX_CLIENT_BYTES);
    let mut conn = Connection::connect(&cfg).await?;
    conn.subscribe(
        &settings.destination,
        Acknowledge::Client { window: PREFETCH },
    )
    .await?;
    Ok(conn)
}
