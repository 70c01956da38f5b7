//! Group commit: the one writer of the receiver's store.
//!
//! Lanes hand verified messages here; the committer takes every request that is waiting, checks
//! each against the acked record (after applying its `ssm-reack`), stores the new ones in one
//! batched, fsynced add, records them as acked (fsynced), and only then tells each lane its
//! outcome so that the lane may ack. Disk work runs on the blocking pool, never on the I/O
//! threads. A single writer also makes the duplicate check and the store one atomic step.
//! Requests are applied in arrival order (a confirmation never overtakes an earlier store), and
//! the `ssm-reack` confirmations of a batch share its fsync of the acked record. The batch's
//! fsyncs are issued together (`Dirq::add_batch`): fsync latency, not disk bandwidth, is what
//! limits a batch.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, oneshot};
use tracing::{error, info, warn};

use super::acked::{AckKey, Acked, AckedLog};
use super::Outcome;
use crate::crypto::message_id;
use crate::queue::{Dirq, MessageStore, Record};

/// Most requests committed in one batch.
const MAX_BATCH: usize = 256;

pub(crate) struct StoreRequest {
    pub key: AckKey,
    pub reply_to: String,
    pub reack: Option<String>,
    pub record: Record,
    pub done: oneshot::Sender<Outcome>,
}

enum Request {
    Store(StoreRequest),
    Reject(Record, oneshot::Sender<()>),
    Forget { md5: String, reply_to: String },
    Recover(oneshot::Sender<()>),
}

struct State {
    store: MessageStore,
    acked: AckedLog,
}

/// A cheap handle to the committer task.
#[derive(Clone)]
pub(crate) struct Committer {
    tx: mpsc::UnboundedSender<Request>,
    task: Arc<Mutex<Option<tokio::task::JoinHandle<()>>>>,
}

impl Committer {
    pub fn start(store: MessageStore, acked: AckedLog) -> Committer {
        let (tx, rx) = mpsc::unbounded_channel();
        let state = Arc::new(Mutex::new(State { store, acked }));
        let task = tokio::spawn(run(rx, state));
        Committer {
            tx,
            task: Arc::new(Mutex::new(Some(task))),
        }
    }

    /// Rebuilds acked entries from the incoming queue, for messages stored just before a crash
    /// whose entry never became durable.
    pub async fn recover(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Request::Recover(tx)).is_ok() {
            let _ = rx.await;
        }
    }

    /// Asks to store a verified message; the outcome arrives on `req.done`.
    pub fn store(&self, req: StoreRequest) {
        if let Err(mpsc::error::SendError(Request::Store(req))) = self.tx.send(Request::Store(req))
        {
            let _ = req
                .done
                .send(Outcome::StoreFailed("receiver is shutting down".into()));
        }
    }

    /// Keeps a rejected message, with its reason, in the reject queue; returns once it is
    /// written (or could not be), so that the `REJECTED` answer follows the record.
    pub async fn reject(&self, record: Record) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Request::Reject(record, tx)).is_ok() {
            let _ = rx.await;
        }
    }

    /// Applies an `ssm-reack` that came without a signature.
    pub async fn forget_for_reply_to(&self, md5: String, reply_to: String) {
        let _ = self.tx.send(Request::Forget { md5, reply_to });
    }

    /// Commits what is queued, then stops the task.
    pub async fn finish(self) {
        let task = self.task.lock().ok().and_then(|mut t| t.take());
        drop(self.tx);
        if let Some(task) = task {
            let _ = task.await;
        }
    }
}

async fn run(mut rx: mpsc::UnboundedReceiver<Request>, state: Arc<Mutex<State>>) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(req) => batch.push(req),
                Err(_) => break,
            }
        }
        let state = state.clone();
        let result = tokio::task::spawn_blocking(move || {
            let mut guard = match state.lock() {
                Ok(g) => g,
                Err(poisoned) => poisoned.into_inner(),
            };
            commit(&mut guard, batch)
        })
        .await;
        if let Err(err) = result {
            error!(%err, "commit task failed");
        }
    }
}

/// Commits one batch; runs on the blocking pool.
fn commit(state: &mut State, batch: Vec<Request>) {
    let mut stores = Vec::new();
    let mut rejects = Vec::new();
    let mut rejects_done = Vec::new();
    for req in batch {
        match req {
            Request::Store(r) => stores.push(r),
            Request::Reject(rec, done) => {
                rejects.push(rec);
                rejects_done.push(done);
            }
            Request::Forget { md5, reply_to } => {
                // Stores queued before this confirmation come first: a resend among them is
                // still a duplicate of what the confirmation is about.
                commit_stores(state, std::mem::take(&mut stores));
                if let Err(err) = state.acked.forget_for_reply_to(&md5, &reply_to) {
                    warn!(%err, "could not update the acked record");
                }
            }
            Request::Recover(done) => {
                commit_stores(state, std::mem::take(&mut stores));
                recover(state);
                let _ = done.send(());
            }
        }
    }
    if !rejects.is_empty() {
        if let Err(err) = state.store.reject.add_batch(&rejects) {
            error!(%err, count = rejects.len(), "could not keep rejected messages");
        }
    }
    for done in rejects_done {
        let _ = done.send(());
    }
    commit_stores(state, stores);
}

/// Stores verified messages (in arrival order) and tells each its outcome.
fn commit_stores(state: &mut State, stores: Vec<StoreRequest>) {
    if stores.is_empty() {
        return;
    }

    // Reacks first, then the duplicate check, in arrival order: a sender that sends the same
    // bytes again after confirming the first ack means a second message. The confirmations
    // are written with the batch's entries (one fsync), or flushed before any ack goes out.
    let mut new = Vec::new();
    let mut dups = Vec::new();
    let mut seen = HashSet::new();
    for req in stores {
        if let Some(md5) = &req.reack {
            let old = AckKey {
                signer: req.key.signer.clone(),
                md5: md5.clone(),
            };
            seen.remove(&old);
            state.acked.forget_buffered(&old);
        }
        let id = req.record.empaid.as_deref().unwrap_or("");
        if state.acked.contains(&req.key)
            || state.acked.is_late_copy(&req.key, id)
            || !seen.insert(req.key.clone())
        {
            dups.push(req);
        } else {
            new.push(req);
        }
    }

    let records: Vec<Record> = new.iter().map(|r| r.record.clone()).collect();
    let results = store_batch(&state.store.incoming, &records);
    let mut stored_keys = Vec::new();
    let mut last: Option<&str> = None;
    for (req, result) in new.iter().zip(&results) {
        if let Ok(name) = result {
            stored_keys.push(Acked {
                key: req.key.clone(),
                reply_to: req.reply_to.clone(),
                id: req.record.empaid.clone().unwrap_or_default(),
            });
            if last.is_none_or(|l| name.as_str() > l) {
                last = Some(name.as_str());
            }
        }
    }
    let recorded = if stored_keys.is_empty() {
        Ok(())
    } else {
        state.acked.record(&stored_keys, last)
    };
    if let Err(err) = state.acked.flush() {
        warn!(%err, "could not update the acked record");
    }
    for (req, result) in new.into_iter().zip(results) {
        let outcome = match (&recorded, result) {
            (Ok(()), Ok(name)) => {
                info!(
                    element = %name,
                    md5 = %req.key.md5,
                    signer = %req.key.signer,
                    "stored"
                );
                Outcome::Stored(req.key.md5)
            }
            (Err(e), Ok(_)) => {
                let reason = format!("stored, but the acked record failed: {e}");
                error!(%reason, "not acking");
                Outcome::StoreFailed(reason)
            }
            (_, Err(reason)) => {
                error!(%reason, md5 = %req.key.md5, "storing failed; not acking");
                Outcome::StoreFailed(reason)
            }
        };
        let _ = req.done.send(outcome);
    }
    for req in dups {
        info!(md5 = %req.key.md5, signer = %req.key.signer, "duplicate: acking again");
        let _ = req.done.send(Outcome::Duplicate(req.key.md5));
    }
}

/// Stores `records` in `queue` with one fsynced batch; the result of each, in order.
fn store_batch(queue: &Dirq, records: &[Record]) -> Vec<Result<String, String>> {
    match queue.add_batch(records) {
        Ok(names) => names.into_iter().map(Ok).collect(),
        Err(e) => vec![Err(e.to_string()); records.len()],
    }
}

fn recover(state: &mut State) {
    let names = match state.store.incoming.names() {
        Ok(n) => n,
        Err(err) => {
            warn!(%err, "cannot list the incoming queue to rebuild the acked record");
            return;
        }
    };
    // Only elements newer than the last one the record covers can be stored-but-unrecorded;
    // older ones may have been confirmed by `ssm-reack` and must not come back.
    let after = state.acked.last_element().map(str::to_string);
    let mut found = 0;
    for name in names {
        if after.as_deref().is_some_and(|last| name.as_str() <= last) {
            continue;
        }
        if let Ok(rec) = state.store.incoming.get(&name) {
            if let Some(signer) = rec.signer {
                let key = AckKey {
                    signer,
                    md5: message_id(&rec.body),
                };
                if !state.acked.contains(&key) {
                    state
                        .acked
                        .remember(key, rec.empaid.as_deref().unwrap_or(""));
                    found += 1;
                }
            }
        }
    }
    if found > 0 {
        info!(
            found,
            "rebuilt acked entries from the incoming queue after an unclean stop"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const X: &str = "0123456789abcdef0123456789abcdef";
    const SIGNER: &str = "/C=UK/O=ssm-test/CN=client.example.org";
    const REPLY: &str = "/temp-queue/ssm.a";

    fn state(dir: &std::path::Path) -> State {
        State {
            store: MessageStore::open(&dir.join("store")).unwrap(),
            acked: AckedLog::open(&dir.join("acked"), Duration::from_secs(86400)).unwrap(),
        }
    }

    fn key() -> AckKey {
        AckKey {
            signer: SIGNER.into(),
            md5: X.into(),
        }
    }

    fn store(reack: Option<&str>, id: &str) -> (Request, oneshot::Receiver<Outcome>) {
        let (tx, rx) = oneshot::channel();
        let req = StoreRequest {
            key: key(),
            reply_to: REPLY.into(),
            reack: reack.map(str::to_string),
            record: Record {
                body: b"body".to_vec(),
                signer: Some(SIGNER.into()),
                empaid: Some(id.into()),
                error: None,
            },
            done: tx,
        };
        (Request::Store(req), rx)
    }

    fn forget() -> Request {
        Request::Forget {
            md5: X.into(),
            reply_to: REPLY.into(),
        }
    }

    #[test]
    fn a_resend_before_a_confirmation_in_one_batch_is_still_a_duplicate() {
        let dir = tempfile::tempdir().unwrap();
        let mut st = state(dir.path());
        let (first, mut rx) = store(None, "id");
        commit(&mut st, vec![first]);
        assert!(matches!(rx.try_recv(), Ok(Outcome::Stored(_))));

        // The resend was queued before the ping that confirms the first ack.
        let (resend, mut rx) = store(None, "id");
        commit(&mut st, vec![resend, forget()]);
        assert!(matches!(rx.try_recv(), Ok(Outcome::Duplicate(_))));
        assert!(!st.acked.contains(&key()));
        assert_eq!(st.store.incoming.count().unwrap(), 1);
    }

    #[test]
    fn the_same_bytes_after_a_confirmation_are_a_new_message() {
        let dir = tempfile::tempdir().unwrap();
        let mut st = state(dir.path());
        let (first, _rx) = store(None, "id");
        commit(&mut st, vec![first]);
        // Queued again by the sender: a new element, so a new id.
        let (again, mut rx) = store(None, "id-again");
        commit(&mut st, vec![forget(), again]);
        assert!(matches!(rx.try_recv(), Ok(Outcome::Stored(_))));
        assert_eq!(st.store.incoming.count().unwrap(), 2);
    }

    #[test]
    fn a_late_copy_after_a_confirmation_is_a_duplicate() {
        let dir = tempfile::tempdir().unwrap();
        let mut st = state(dir.path());
        let (first, _rx) = store(None, "id");
        commit(&mut st, vec![first]);
        // A copy of the same message (same id) from a cut connection, after the confirmation.
        let (late, mut rx) = store(None, "id");
        commit(&mut st, vec![forget(), late]);
        assert!(matches!(rx.try_recv(), Ok(Outcome::Duplicate(_))));
        assert_eq!(st.store.incoming.count().unwrap(), 1);
    }

    #[test]
    fn a_reack_on_the_next_message_is_durable_with_its_batch() {
        let dir = tempfile::tempdir().unwrap();
        let mut st = state(dir.path());
        let (first, _rx) = store(None, "id");
        commit(&mut st, vec![first]);
        // The next message (another MD5) confirms the first.
        let (tx, mut rx) = oneshot::channel();
        let next = Request::Store(StoreRequest {
            key: AckKey {
                signer: SIGNER.into(),
                md5: "fedcba9876543210fedcba9876543210".into(),
            },
            reply_to: REPLY.into(),
            reack: Some(X.into()),
            record: Record {
                body: b"other".to_vec(),
                signer: Some(SIGNER.into()),
                empaid: Some("id2".into()),
                error: None,
            },
            done: tx,
        });
        commit(&mut st, vec![next]);
        assert!(matches!(rx.try_recv(), Ok(Outcome::Stored(_))));
        drop(st);
        let reopened =
            AckedLog::open(&dir.path().join("acked"), Duration::from_secs(86400)).unwrap();
        assert!(!reopened.contains(&key()));
        assert_eq!(reopened.len(), 1);
    }
}
