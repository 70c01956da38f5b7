//! Group commit: the one writer of the receiver's store.
//!
//! Lanes hand verified messages here; the committer takes every request that is waiting, checks
//! each against the acked record (after applying its `ssm-reack`), stores the new ones in one
//! batched, fsynced add, records them as acked (fsynced), and only then tells each lane its
//! outcome so that the lane may ack. Disk work runs on the blocking pool, never on the I/O
//! threads. A single writer also makes the duplicate check and the store one atomic step.
//! Requests are applied in arrival order (a confirmation never overtakes an earlier store), and
//! the `ssm-reack` confirmations of a batch share its fsync of the acked record. The batch's
//! fsyncs are issued together (`Dirq::add_batch_partial`): fsync latency, not disk bandwidth,
//! is what limits a batch.
//!
//! Guarantees:
//! - `Stored` and `Duplicate` (the outcomes that are acked) are only given for a message that
//!   is durably stored and recorded: a copy of a message in the same batch as its first copy
//!   (a resend, a redelivery, a replay) gets the first copy's fate, so when that one could not
//!   be stored, neither is acked.
//! - One outcome per message even when the disk fills in the middle of a batch: what was
//!   stored is recorded and acked, what was not is not acked (the sender resends it), so
//!   nothing is stored twice.
//! - A replay of the sealed bytes of a stored message (same [`SealId`]) is a duplicate whatever
//!   its unsigned headers say, and its `ssm-reack` is not applied.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, oneshot};
use tracing::{error, info, warn};

use super::acked::{AckKey, Acked, SealId};
use super::dedupe::{key_for, Dedupe};
use super::reply::Outcome;
use crate::protocol::Version;
use crate::queue::{MessageStore, Record};

/// Most requests committed in one batch.
const MAX_BATCH: usize = 256;

pub(crate) struct StoreRequest {
    pub key: AckKey,
    pub reply_to: String,
    pub reack: Option<String>,
    /// The seal ids of the body the message came in ([`super::acked::seal_ids`]).
    pub seals: Vec<SealId>,
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
    acked: Box<dyn Dedupe>,
}

/// A cheap handle to the committer task.
#[derive(Clone)]
pub(crate) struct Committer {
    tx: mpsc::UnboundedSender<Request>,
    task: Arc<Mutex<Option<tokio::task::JoinHandle<()>>>>,
}

impl Committer {
    pub fn start(store: MessageStore, acked: impl Dedupe + 'static) -> Committer {
        info!(remembered = acked.len(), "acked record loaded");
        let (tx, rx) = mpsc::unbounded_channel();
        let state = Arc::new(Mutex::new(State {
            store,
            acked: Box::new(acked),
        }));
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
        // One "Message rejected: <reason>" line per rejected message, in the Python SSM's
        // words (operators grep them), whether it came from a lane or the dispatcher.
        for rec in &rejects {
            warn!(
                "Message rejected: {}",
                rec.error.as_deref().unwrap_or("no reason given")
            );
        }
        match state.store.reject.add_batch(&rejects) {
            Ok(names) => {
                for name in names {
                    info!("Message saved to reject queue as {name}");
                }
            }
            Err(err) => error!(%err, count = rejects.len(), "could not keep rejected messages"),
        }
    }
    for done in rejects_done {
        let _ = done.send(());
    }
    commit_stores(state, stores);
}

/// Why a request is not stored as a new message.
enum Dup {
    /// Stored before, durably: acked again at once.
    Known,
    /// A replay of a stored message (same sealed bytes): acked again at once, and its unsigned
    /// `ssm-reack` is ignored.
    Replay,
    /// A copy of the `new[i]` of this batch: its outcome follows that one's, since it may be
    /// acked only once that copy is durably stored and recorded.
    Of(usize),
}

/// Stores verified messages (in arrival order) and tells each its outcome.
fn commit_stores(state: &mut State, stores: Vec<StoreRequest>) {
    if stores.is_empty() {
        return;
    }

    // A replay of stored sealed bytes first: its headers are not signed, so its `ssm-reack`
    // must not clear anything. Then reacks, then the duplicate check, in arrival order: a
    // sender that sends the same bytes again after confirming the first ack means a second
    // message. The confirmations are written with the batch's entries (one fsync), or flushed
    // before any ack goes out.
    let mut new: Vec<StoreRequest> = Vec::new();
    let mut dups: Vec<(StoreRequest, Dup)> = Vec::new();
    let mut seen: HashMap<AckKey, usize> = HashMap::new();
    let mut seen_seals: HashMap<SealId, usize> = HashMap::new();
    for req in stores {
        if req.seals.iter().any(|s| state.acked.has_seal(*s)) {
            dups.push((req, Dup::Replay));
            continue;
        }
        if let Some(&i) = req.seals.iter().find_map(|s| seen_seals.get(s)) {
            dups.push((req, Dup::Of(i)));
            continue;
        }
        if let Some(md5) = &req.reack {
            let old = AckKey {
                signer: req.key.signer.clone(),
                md5: md5.clone(),
            };
            seen.remove(&old);
            state.acked.forget_buffered(&old);
        }
        let id = req.record.empaid.as_deref().unwrap_or("");
        if state.acked.contains(&req.key) || state.acked.is_late_copy(&req.key, id) {
            dups.push((req, Dup::Known));
        } else if let Some(&i) = seen.get(&req.key) {
            dups.push((req, Dup::Of(i)));
        } else {
            let i = new.len();
            seen.insert(req.key.clone(), i);
            for s in &req.seals {
                seen_seals.insert(*s, i);
            }
            new.push(req);
        }
    }

    let records: Vec<Record> = new.iter().map(|r| r.record.clone()).collect();
    let added = state.store.incoming.add_batch_partial(&records);
    let failure = added.error.as_ref().map(|e| e.to_string());
    let stored_keys: Vec<Acked> = new
        .iter()
        .zip(&added.stored)
        .map(|(req, _)| Acked {
            key: req.key.clone(),
            reply_to: req.reply_to.clone(),
            id: req.record.empaid.clone().unwrap_or_default(),
            seals: req.seals.clone(),
        })
        .collect();
    // Names grow within a batch, so the last stored is the newest.
    let last = added.stored.last().map(String::as_str);
    let recorded = if stored_keys.is_empty() {
        Ok(())
    } else {
        state.acked.record(&stored_keys, last)
    };
    if let Err(err) = state.acked.flush() {
        warn!(%err, "could not update the acked record");
    }
    let mut durable = vec![false; new.len()];
    for (i, req) in new.into_iter().enumerate() {
        let outcome = match (&recorded, added.stored.get(i)) {
            (Ok(()), Some(name)) => {
                durable[i] = true;
                info!(
                    element = %name,
                    md5 = %req.key.md5,
                    signer = %req.key.signer,
                    "stored"
                );
                // The element's name goes with the outcome: the lane logs it in the Python
                // SSM's words, which operators grep.
                Outcome::Stored(req.key.md5, name.clone())
            }
            (Err(e), Some(_)) => {
                let reason = format!("stored, but the acked record failed: {e}");
                error!(%reason, "not acking");
                Outcome::StoreFailed(reason)
            }
            (_, None) => {
                let reason = failure
                    .clone()
                    .unwrap_or_else(|| "no result for the record".into());
                error!(%reason, md5 = %req.key.md5, "storing failed; not acking");
                Outcome::StoreFailed(reason)
            }
        };
        let _ = req.done.send(outcome);
    }
    for (req, why) in dups {
        let outcome = match why {
            Dup::Known => {
                info!(md5 = %req.key.md5, signer = %req.key.signer, "duplicate: acking again");
                Outcome::Duplicate(req.key.md5)
            }
            Dup::Replay => {
                warn!(
                    md5 = %req.key.md5,
                    signer = %req.key.signer,
                    id = req.record.empaid.as_deref().unwrap_or(""),
                    "replay of a stored message (same sealed bytes): acking it as a duplicate, its headers ignored"
                );
                Outcome::Duplicate(req.key.md5)
            }
            Dup::Of(i) if durable.get(i).copied().unwrap_or(false) => {
                info!(md5 = %req.key.md5, signer = %req.key.signer, "duplicate: acking again");
                Outcome::Duplicate(req.key.md5)
            }
            Dup::Of(_) => {
                let reason = "its first copy in the same batch was not stored".to_string();
                error!(%reason, md5 = %req.key.md5, "storing failed; not acking");
                Outcome::StoreFailed(reason)
            }
        };
        let _ = req.done.send(outcome);
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
                // The element does not say which protocol brought it: remember it under
                // both keys, so that neither a v1 resend nor an SSM2 redelivery of it is
                // stored again. (The other key names a message that was never sent.)
                let id = rec.empaid.as_deref().unwrap_or("");
                let keys = [Version::V1, Version::V2].map(|v| key_for(v, &signer, id, &rec.body));
                if !keys.iter().any(|k| state.acked.contains(k)) {
                    for key in keys {
                        state.acked.remember(key, id);
                    }
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
    use crate::crypto::message_id;
    use crate::receiver::acked::AckedLog;
    use std::time::Duration;

    const X: &str = "0123456789abcdef0123456789abcdef";
    const SIGNER: &str = "/C=UK/O=ssm-test/CN=client.example.org";
    const REPLY: &str = "/temp-queue/ssm.a";

    fn state(dir: &std::path::Path) -> State {
        State {
            store: MessageStore::open(&dir.join("store")).unwrap(),
            acked: Box::new(
                AckedLog::open(&dir.join("acked"), Duration::from_secs(86400)).unwrap(),
            ),
        }
    }

    fn key() -> AckKey {
        AckKey {
            signer: SIGNER.into(),
            md5: X.into(),
        }
    }

    fn store(reack: Option<&str>, id: &str) -> (Request, oneshot::Receiver<Outcome>) {
        sealed(reack, id, 0)
    }

    /// A store request for the message `X` that came sealed as `seal` (0: no seal id).
    fn sealed(reack: Option<&str>, id: &str, seal: u128) -> (Request, oneshot::Receiver<Outcome>) {
        let (tx, rx) = oneshot::channel();
        let req = StoreRequest {
            key: key(),
            reply_to: REPLY.into(),
            reack: reack.map(str::to_string),
            seals: if seal == 0 {
                vec![]
            } else {
                vec![SealId(seal)]
            },
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
    fn a_stored_outcome_names_its_incoming_element() {
        let dir = tempfile::tempdir().unwrap();
        let mut st = state(dir.path());
        let (first, mut rx) = store(None, "id");
        commit(&mut st, vec![first]);
        let Ok(Outcome::Stored(md5, name)) = rx.try_recv() else {
            panic!("not stored");
        };
        assert_eq!(md5, X);
        assert_eq!(st.store.incoming.names().unwrap(), vec![name.clone()]);
        assert_eq!(st.store.incoming.get(&name).unwrap().body, b"body");
    }

    #[test]
    fn a_resend_before_a_confirmation_in_one_batch_is_still_a_duplicate() {
        let dir = tempfile::tempdir().unwrap();
        let mut st = state(dir.path());
        let (first, mut rx) = store(None, "id");
        commit(&mut st, vec![first]);
        assert!(matches!(rx.try_recv(), Ok(Outcome::Stored(..))));

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
        assert!(matches!(rx.try_recv(), Ok(Outcome::Stored(..))));
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
            seals: vec![],
            record: Record {
                body: b"other".to_vec(),
                signer: Some(SIGNER.into()),
                empaid: Some("id2".into()),
                error: None,
            },
            done: tx,
        });
        commit(&mut st, vec![next]);
        assert!(matches!(rx.try_recv(), Ok(Outcome::Stored(..))));
        drop(st);
        let reopened =
            AckedLog::open(&dir.path().join("acked"), Duration::from_secs(86400)).unwrap();
        assert!(!reopened.contains(&key()));
        assert_eq!(reopened.len(), 1);
    }

    /// A request for message number `i` of a batch (its own MD5 and seal id).
    fn numbered(i: usize) -> (Request, oneshot::Receiver<Outcome>) {
        let (tx, rx) = oneshot::channel();
        let body = format!("message {i}").into_bytes();
        let req = StoreRequest {
            key: AckKey {
                signer: SIGNER.into(),
                md5: message_id(&body),
            },
            reply_to: REPLY.into(),
            reack: None,
            seals: vec![SealId(i as u128 + 1)],
            record: Record {
                body,
                signer: Some(SIGNER.into()),
                empaid: Some(format!("id{i}")),
                error: None,
            },
            done: tx,
        };
        (Request::Store(req), rx)
    }

    fn stored(rx: &mut oneshot::Receiver<Outcome>) -> bool {
        matches!(rx.try_recv(), Ok(Outcome::Stored(..)))
    }

    fn acked(rx: &mut oneshot::Receiver<Outcome>) -> bool {
        matches!(
            rx.try_recv(),
            Ok(Outcome::Stored(..) | Outcome::Duplicate(_))
        )
    }

    #[test]
    fn a_copy_in_the_same_batch_is_not_acked_when_the_first_copy_failed() {
        // Issue 13, defect 1: the disk is full; two copies of one message (a resend, a
        // redelivery or a replay: same sealed bytes, id and reply-to) in one batch.
        let dir = tempfile::tempdir().unwrap();
        let mut st = state(dir.path());
        st.store.incoming.fail_from = Some(0);
        let (first, mut rx1) = sealed(None, "id", 7);
        let (copy, mut rx2) = sealed(None, "id", 7);
        commit(&mut st, vec![first, copy]);
        assert!(matches!(rx1.try_recv(), Ok(Outcome::StoreFailed(_))));
        assert!(matches!(rx2.try_recv(), Ok(Outcome::StoreFailed(_))));
        // A resend (sealed again) in the same batch as a failed first copy: not acked either.
        let (first, mut rx1) = sealed(None, "id", 7);
        let (resend, mut rx2) = sealed(None, "id", 8);
        commit(&mut st, vec![first, resend]);
        assert!(!acked(&mut rx1) && !acked(&mut rx2));
        assert!(!st.acked.contains(&key()));

        // Space returns: the next copy is stored, and a copy in its batch is a duplicate.
        st.store.incoming.fail_from = None;
        let (first, mut rx1) = sealed(None, "id", 7);
        let (copy, mut rx2) = sealed(None, "id", 7);
        commit(&mut st, vec![first, copy]);
        assert!(stored(&mut rx1));
        assert!(matches!(rx2.try_recv(), Ok(Outcome::Duplicate(_))));
        assert_eq!(st.store.incoming.count().unwrap(), 1);
    }

    #[test]
    fn a_batch_that_fills_the_disk_acks_and_records_what_it_stored() {
        // Issue 13, defect 2: a batch of 200, the disk full from the 100th record on (past the
        // first dirq chunk of 64).
        let dir = tempfile::tempdir().unwrap();
        let mut st = state(dir.path());
        st.store.incoming.fail_from = Some(100);
        let (reqs, mut rxs): (Vec<_>, Vec<_>) = (0..200).map(numbered).unzip();
        commit(&mut st, reqs);
        let acked_now: Vec<bool> = rxs.iter_mut().map(stored).collect();
        let in_queue = st.store.incoming.count().unwrap();
        assert_eq!(in_queue, 100);
        assert_eq!(
            acked_now.iter().filter(|&&a| a).count(),
            in_queue,
            "every stored message is acked, no other"
        );
        assert!(acked_now[..100].iter().all(|&a| a));
        assert_eq!(st.acked.len(), 100);

        // Every message is sent again once space returns: each stored exactly once.
        st.store.incoming.fail_from = None;
        let (reqs, mut rxs): (Vec<_>, Vec<_>) = (0..200).map(numbered).unzip();
        commit(&mut st, reqs);
        assert!(rxs.iter_mut().all(acked));
        assert_eq!(st.store.incoming.count().unwrap(), 200);
    }

    #[test]
    fn a_replay_of_stored_sealed_bytes_is_a_duplicate_whatever_its_headers() {
        // Issue 13, defect 5: the stored message again, with a fresh id and a `ssm-reack` of
        // its own MD5 (neither is signed).
        let dir = tempfile::tempdir().unwrap();
        let mut st = state(dir.path());
        let (first, mut rx) = sealed(None, "id", 7);
        commit(&mut st, vec![first]);
        assert!(stored(&mut rx));
        for n in 0..3 {
            let (replay, mut rx) = sealed(Some(X), &format!("fresh-{n}"), 7);
            commit(&mut st, vec![replay]);
            assert!(matches!(rx.try_recv(), Ok(Outcome::Duplicate(_))));
        }
        // Several at once, too.
        let (reqs, mut rxs): (Vec<_>, Vec<_>) = (0..3)
            .map(|n| sealed(Some(X), &format!("batch-{n}"), 7))
            .unzip();
        commit(&mut st, reqs);
        assert!(rxs
            .iter_mut()
            .all(|rx| matches!(rx.try_recv(), Ok(Outcome::Duplicate(_)))));
        assert_eq!(st.store.incoming.count().unwrap(), 1);
        // The replays' reacks cleared nothing; the sender's own confirmation still does, and
        // the same content queued again (sealed again) is then a new message.
        assert!(st.acked.contains(&key()));
        let (again, mut rx) = sealed(Some(X), "id-again", 9);
        commit(&mut st, vec![again]);
        assert!(stored(&mut rx));
        assert_eq!(st.store.incoming.count().unwrap(), 2);
        // The seal ids are durable.
        drop(st);
        let reopened =
            AckedLog::open(&dir.path().join("acked"), Duration::from_secs(86400)).unwrap();
        assert!(reopened.has_seal(SealId(7)) && reopened.has_seal(SealId(9)));
    }
}
