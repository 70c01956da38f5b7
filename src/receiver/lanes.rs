//! Lanes: where messages are opened and verified, concurrently across senders and in order
//! within one sender.
//!
//! A message goes to the lane chosen by hashing its `reply-to` (unique per sender connection),
//! so one sender's messages are handled one after the other while different senders' messages
//! use every core. Decryption and verification of a large message run on the blocking pool;
//! a small one (at most [`INLINE_OPEN_BYTES`] sealed, about a millisecond of CPU) is opened
//! by the lane's task itself, as a hand-over to the pool and back would cost an eighth to a
//! quarter of the whole message's CPU in wake-ups. A lane hands a verified message to the
//! committer (whose queue keeps arrival order) and goes on with the next message at once; a
//! task per message waits for the committer's outcome and then acks, so that the messages of
//! many senders are committed together. At most
//! [`MAX_PENDING`] messages wait for their outcome at once, and the frames queued in or handled
//! by all lanes hold at most [`MAX_WAITING_BYTES`] (a larger frame passes alone): beyond that
//! [`Lanes::submit`] waits, so the receiver stops reading from the broker (back-pressure; the
//! STOMP client's own buffer is bounded too) and no message is dropped.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, RwLock};

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;
use tracing::{error, info, warn};

use super::acked::seal_ids;
use super::commit::{Committer, StoreRequest};
use super::dedupe::key_for;
use super::reply::{Outcome, Replies};
use super::stats::{RejectReason, Stats};
use crate::crypto::{DnList, Opener, Recipe};
use crate::protocol::Version;
use crate::queue::Record;
use crate::transport::AckToken;

/// The signer recorded with an SSM2 message rejected before its signer was known, as the
/// Python receiver writes it (APEL's loader reads it).
pub(super) const NO_SIGNER: &str = "Not available.";

/// Messages waiting per lane before the dispatcher waits (back-pressure on the broker).
const LANE_DEPTH: usize = 64;

/// Messages opened and waiting for their store outcome and ack, across all lanes.
const MAX_PENDING: u32 = 256;

/// Sealed bodies up to this size are opened by the lane's own task, larger ones on the
/// blocking pool. Opening 64 KiB costs about 1 ms of CPU at most (one RSA decryption, AES,
/// a digest and inflate over the body), which the runtime's other workers absorb (they steal
/// the tasks queued behind it); the hand-over to the pool and back costs two thread wake-ups,
/// which measured 12–28 % of the receiver's CPU per 10 KB message (docs/performance.md,
/// "Fourth round"). A larger body would hold a worker for longer and goes to the pool. The
/// worst a small body can do is inflate to about a thousand times its size before the size
/// cap refuses it (some 50 ms), and only once its signature verified against a trusted CA:
/// the content is inflated after the signature check.
const INLINE_OPEN_BYTES: usize = 64 * 1024;

/// Bytes of frames queued in or handled by the lanes at once (sealed bodies as received).
pub(crate) const MAX_WAITING_BYTES: usize = 32 * 1024 * 1024;

/// Bytes of messages the transport may hold that the dispatcher has not taken yet.
pub(crate) const MAX_CLIENT_BYTES: usize = 8 * 1024 * 1024;

/// One message to handle: an SSM v1 `msg` or an SSM2 message.
pub(crate) struct Job {
    /// Which protocol it came in: decides how it is opened, keyed and answered.
    pub version: Version,
    /// Its `ssm-msg-id` (v1) or `empa-id` (v2).
    pub id: String,
    pub reply_to: Option<String>,
    pub reack: Option<String>,
    pub body: Bytes,
    /// Set for a `ping`'s `ssm-reack`: no message, only this MD5 to forget for `reply_to`. It
    /// goes through the sender's lane so that it is applied after that sender's earlier
    /// messages (a resend still queued here must still be found a duplicate).
    pub forget: Option<String>,
    /// How to acknowledge the delivery to the service once handled.
    pub ack: AckToken,
}

impl Job {
    /// What picks the lane: v1 messages of one sender (one reply queue) stay in order; SSM2
    /// messages carry no order, so they spread over the lanes by id.
    fn lane_key(&self) -> Option<&str> {
        match self.version {
            Version::V1 => self.reply_to.as_deref(),
            Version::V2 => Some(self.id.as_str()),
        }
    }
}

/// What every lane shares.
pub(crate) struct LaneContext {
    pub opener: Opener,
    pub dns: Arc<RwLock<DnList>>,
    pub committer: Committer,
    pub replies: Arc<Replies>,
    pub stats: Arc<Stats>,
    pub done: mpsc::UnboundedSender<Handled>,
}

struct Shared {
    opener: Opener,
    dns: Arc<RwLock<DnList>>,
    committer: Committer,
    replies: Arc<Replies>,
    stats: Arc<Stats>,
    done: mpsc::UnboundedSender<Handled>,
    pending: Arc<Semaphore>,
}

/// What became of a job, for the receiver's `max_messages` count, which counts what was
/// stored or rejected: a duplicate stores nothing new, and a message not stored comes again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Handled {
    /// Stored, or rejected into the reject queue.
    Counted,
    /// Acked again as a duplicate, or not stored (it comes again).
    NotCounted,
}

impl Handled {
    fn of(outcome: &Outcome) -> Handled {
        match outcome {
            Outcome::Stored(..) | Outcome::Rejected(..) => Handled::Counted,
            Outcome::Duplicate(_) | Outcome::StoreFailed(_) | Outcome::TrustUnavailable(_) => {
                Handled::NotCounted
            }
        }
    }
}

/// A job and its share of [`MAX_WAITING_BYTES`], released when it is handled.
type Queued = (Job, OwnedSemaphorePermit);

/// The pool of lanes.
pub(crate) struct Lanes {
    senders: Vec<mpsc::Sender<Queued>>,
    bytes: Arc<Semaphore>,
    tasks: Vec<JoinHandle<()>>,
    shared: Arc<Shared>,
}

impl Lanes {
    pub fn start(count: usize, ctx: LaneContext) -> Lanes {
        let shared = Arc::new(Shared {
            opener: ctx.opener,
            dns: ctx.dns,
            committer: ctx.committer,
            replies: ctx.replies,
            stats: ctx.stats,
            done: ctx.done,
            pending: Arc::new(Semaphore::new(MAX_PENDING as usize)),
        });
        let mut senders = Vec::new();
        let mut tasks = Vec::new();
        for _ in 0..count.max(1) {
            let (tx, mut rx) = mpsc::channel::<Queued>(LANE_DEPTH);
            let shared = shared.clone();
            senders.push(tx);
            tasks.push(tokio::spawn(async move {
                while let Some((job, bytes)) = rx.recv().await {
                    handle_job(&shared, job, bytes).await;
                }
            }));
        }
        Lanes {
            senders,
            bytes: Arc::new(Semaphore::new(MAX_WAITING_BYTES)),
            tasks,
            shared,
        }
    }

    /// Hands a message to its sender's lane; waits while that lane is full or the lanes hold
    /// [`MAX_WAITING_BYTES`] already.
    pub async fn submit(&self, job: Job) {
        let mut h = DefaultHasher::new();
        job.lane_key().hash(&mut h);
        let lane = (h.finish() % self.senders.len() as u64) as usize;
        // A frame bigger than the whole budget waits until it is alone.
        let share = job.body.len().clamp(1, MAX_WAITING_BYTES);
        let Ok(bytes) = self
            .bytes
            .clone()
            .acquire_many_owned(u32::try_from(share).unwrap_or(u32::MAX))
            .await
        else {
            error!("receiver lanes closed; message dropped unacked (the sender will resend)");
            return;
        };
        if self.senders[lane].send((job, bytes)).await.is_err() {
            error!("a receiver lane stopped; message dropped unacked (the sender will resend)");
        }
    }

    /// Finishes every queued message, then stops the lanes.
    pub async fn finish(self) {
        drop(self.senders);
        for task in self.tasks {
            let _ = task.await;
        }
        // Every permit back: no message is still waiting for its outcome or ack.
        let _ = self.shared.pending.acquire_many(MAX_PENDING).await;
    }
}

async fn handle_job(shared: &Arc<Shared>, job: Job, bytes: OwnedSemaphorePermit) {
    if let Some(md5) = job.forget {
        // Queued behind this sender's earlier messages, which the committer handles first.
        if let Some(reply_to) = &job.reply_to {
            shared
                .committer
                .forget_for_reply_to(md5, reply_to.clone())
                .await;
        }
        shared.replies.settle(&job.ack).await;
        return;
    }
    let started = std::time::Instant::now();
    let opener = shared.opener.clone();
    let body = job.body.clone();
    let recipe = match job.version {
        Version::V1 => Recipe::V1,
        Version::V2 => Recipe::V2,
    };
    // The seal ids are only needed (and the envelope only parsed again) for a message that
    // opened.
    let open = move || {
        opener
            .open_with(recipe, &body)
            .map(|opened| (opened, seal_ids(&body)))
    };
    let opened = if job.body.len() <= INLINE_OPEN_BYTES {
        Ok(open())
    } else {
        tokio::task::spawn_blocking(open).await
    };
    shared.stats.open_latency.observe(started.elapsed());
    if let Ok(Err(err)) = &opened {
        if err.is_own_fault() {
            let outcome = Outcome::TrustUnavailable(err.to_string());
            finish_job(shared, job, outcome, None, started).await;
            return;
        }
    }
    let verdict = match opened {
        Ok(Ok((opened, seals))) => {
            let allowed = shared
                .dns
                .read()
                .map(|dns| dns.contains(&opened.signer_dn))
                .unwrap_or(false);
            if allowed {
                Ok((opened, seals))
            } else {
                Err((
                    format!("signer {} is not in the allowed-DN list", opened.signer_dn),
                    Some(opened.signer_dn),
                    RejectReason::DnNotAllowed,
                ))
            }
        }
        Ok(Err(err)) => Err((err.to_string(), None, RejectReason::of(&err))),
        Err(err) => Err((
            format!("internal error while opening: {err}"),
            None,
            RejectReason::Other,
        )),
    };

    let Ok(permit) = shared.pending.clone().acquire_owned().await else {
        error!(id = %job.id, "receiver lanes closed; message dropped unacked (the sender will resend)");
        return;
    };
    let signer = match &verdict {
        Ok((opened, _)) => Some(opened.signer_dn.clone()),
        Err((_, signer, _)) => signer.clone(),
    };
    let outcome = match verdict {
        Ok((opened, seals)) => {
            let (tx, rx) = oneshot::channel();
            let submitted = std::time::Instant::now();
            // Queued now, in this lane's order; the outcome is awaited off the lane.
            shared.committer.store(StoreRequest {
                key: key_for(job.version, &opened.signer_dn, &job.id, &opened.content),
                reply_to: job.reply_to.clone().unwrap_or_default(),
                reack: job.reack.clone(),
                seals,
                record: Record {
                    body: opened.content,
                    signer: Some(opened.signer_dn),
                    empaid: Some(job.id.clone()),
                    error: None,
                },
                done: tx,
            });
            Pending::Store(rx, submitted)
        }
        Err((reason, signer, kind)) => {
            warn!(id = %job.id, %reason, "rejecting message");
            let signer = match job.version {
                Version::V1 => signer,
                Version::V2 => signer.or_else(|| Some(NO_SIGNER.to_string())),
            };
            shared
                .committer
                .reject(Record {
                    body: job.body.to_vec(),
                    signer,
                    empaid: Some(job.id.clone()),
                    error: Some(reason.clone()),
                })
                .await;
            Pending::Done(Outcome::Rejected(reason, kind))
        }
    };
    let shared = shared.clone();
    tokio::spawn(async move {
        let outcome = match outcome {
            Pending::Store(rx, submitted) => {
                let outcome = rx
                    .await
                    .unwrap_or_else(|_| Outcome::StoreFailed("store task ended".into()));
                shared.stats.store_latency.observe(submitted.elapsed());
                outcome
            }
            Pending::Done(outcome) => outcome,
        };
        finish_job(&shared, job, outcome, signer, started).await;
        drop(permit);
        drop(bytes);
    });
}

/// An outcome known now, or one the committer will give.
enum Pending {
    /// Handed to the committer at that instant.
    Store(oneshot::Receiver<Outcome>, std::time::Instant),
    Done(Outcome),
}

/// Acks (or not) according to the outcome, and reports the message handled.
async fn finish_job(
    shared: &Shared,
    job: Job,
    outcome: Outcome,
    signer: Option<String>,
    started: std::time::Instant,
) {
    match &outcome {
        Outcome::Stored(_, name) => {
            Stats::bump(&shared.stats.stored);
            // The Python SSM's line, word for word: operators and their scripts grep it.
            info!("Message saved to incoming queue as {name}");
        }
        Outcome::Duplicate(_) => Stats::bump(&shared.stats.duplicates),
        Outcome::Rejected(_, kind) => shared.stats.reject(*kind),
        Outcome::StoreFailed(reason) => {
            // No ack: the sender keeps the message and sends it again once we can store it.
            error!(id = %job.id, %reason, "not stored; not acking");
            Stats::bump(&shared.stats.store_failures);
        }
        Outcome::TrustUnavailable(reason) => {
            // Not the sender's fault: no ack, so that it sends the message again later.
            error!(id = %job.id, %reason, "cannot judge the signer with our CRLs; not acking");
            Stats::bump(&shared.stats.trust_unavailable);
        }
    }
    match (outcome.answer(), &job.reply_to) {
        (Some(ack), Some(reply_to)) => {
            shared
                .replies
                .ack(reply_to, ack, Some(job.id.clone()))
                .await
        }
        (Some(_), None) if job.version == Version::V1 => {
            warn!(id = %job.id, "message has no reply-to: cannot ack")
        }
        _ => {}
    }
    // At the service: acknowledged once stored or rejected durably. An SSM2 message we could
    // not store is held by the service only: it must come again, which a new connection
    // makes it do. (An SSM v1 sender keeps its message until our ack, so the delivery itself
    // can go.)
    match (job.version, outcome.answer()) {
        (Version::V2, None) => shared.replies.request_redelivery(),
        _ => shared.replies.settle(&job.ack).await,
    }
    info!(
        id = %job.id,
        signer = signer.as_deref().unwrap_or("-"),
        outcome = ?outcome,
        ms = started.elapsed().as_millis() as u64,
        "handled message"
    );
    let _ = shared.done.send(Handled::of(&outcome));
}
