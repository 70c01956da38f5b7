//! `ssm-reack` bookkeeping for SSM v1: which acked messages the receiver may forget, and the
//! removals from the outgoing queue that must be durable before it is told so.
//!
//! Guarantees:
//! - An MD5 goes out in `ssm-reack` only once its message's removal from the outgoing queue is
//!   durable: the receiver forgets a message only when this sender can no longer send it again.
//! - The removal of the message just acked runs on the blocking pool while the next message is
//!   sent and waits for its ack, so that on a disk its fsync is not one more round on every
//!   message's path. That message therefore confirms the one acked before the last (one
//!   message later than the removal would allow if it were awaited).
//! - A message with the same content (MD5) as one acked earlier whose confirmation has not
//!   gone out yet waits for that removal and carries that MD5: the receiver applies the
//!   `ssm-reack` before its duplicate check, so it stores the message again, as the sender
//!   means (the protocol's "same content twice, acked in between").
//! - No confirmation is skipped: one that waits goes out on a later message, and the pass
//!   ends with a `ping` for each one still due (oldest first).
//! - A confirmation counts as delivered when a message that carried it is acked (the ack
//!   proves the receiver applied it); until then it is carried again (resends, the next pass).

use tokio::task::JoinHandle;

use super::SenderError;
use crate::queue::{Outgoing, QueueError};

/// Starts removing `name` from `outgoing` on the blocking pool, so that its fsync does not
/// hold a runtime thread that other senders of the process (the bench's, a daemon's) need.
pub(super) fn start_removal(outgoing: &Outgoing, name: &str) -> JoinHandle<Result<(), QueueError>> {
    let outgoing = outgoing.clone();
    let name = name.to_string();
    tokio::task::spawn_blocking(move || outgoing.remove(&name))
}

/// Waits for a removal that [`start_removal`] started.
pub(super) async fn finish_removal(
    task: JoinHandle<Result<(), QueueError>>,
) -> Result<(), SenderError> {
    task.await
        .map_err(|e| SenderError::Task("remove", e.to_string()))??;
    Ok(())
}

/// The removal of an acked message, running on the blocking pool.
struct Removal {
    md5: String,
    task: JoinHandle<Result<(), QueueError>>,
}

/// The confirmations due to the receiver and the removal they may wait for.
#[derive(Default)]
pub(super) struct Reacks {
    /// The removal of the last acked message, if it may still be running.
    removing: Option<Removal>,
    /// MD5s of acked messages whose removal is durable and that no acked message has
    /// confirmed yet, oldest first. At most two in steady state.
    due: Vec<String>,
}

impl Reacks {
    /// Starts removing `name`, just acked with content `md5`, from `outgoing` on the blocking
    /// pool, once the previous removal is finished (so that at most one runs).
    pub async fn remove_acked(
        &mut self,
        outgoing: &Outgoing,
        name: &str,
        md5: &str,
    ) -> Result<(), SenderError> {
        self.settle().await?;
        self.removing = Some(Removal {
            md5: md5.to_string(),
            task: start_removal(outgoing, name),
        });
        Ok(())
    }

    /// Waits for the running removal, if any; its MD5 is then due for confirmation.
    pub async fn settle(&mut self) -> Result<(), SenderError> {
        if let Some(removal) = self.removing.take() {
            finish_removal(removal.task).await?;
            self.due.push(removal.md5);
        }
        Ok(())
    }

    /// The `ssm-reack` for the next message, whose content is `md5`: the confirmation of an
    /// earlier message with the same content if one is due (waiting for its removal first),
    /// otherwise the oldest one due.
    pub async fn for_next(&mut self, md5: &str) -> Result<Option<String>, SenderError> {
        if self.removing.as_ref().is_some_and(|r| r.md5 == md5) {
            self.settle().await?;
        }
        Ok(self
            .due
            .iter()
            .find(|m| *m == md5)
            .or_else(|| self.due.first())
            .cloned())
    }

    /// What a message that is not acked (a `certreq`) may carry: the oldest confirmation due.
    pub fn oldest(&self) -> Option<String> {
        self.due.first().cloned()
    }

    /// A message that carried `carried` was acked: the receiver has applied it.
    pub fn confirmed(&mut self, carried: Option<&str>) {
        if let Some(carried) = carried {
            if let Some(i) = self.due.iter().position(|m| m == carried) {
                self.due.remove(i);
            }
        }
    }

    /// The confirmations due, oldest first: what the closing `ping`s of a pass carry (after
    /// [`Reacks::settle`]).
    pub fn due(&self) -> &[String] {
        &self.due
    }

    /// The first `sent` of [`Reacks::due`] went out on `ping`s. A ping is not answered, so
    /// the newest stays due all the same: the next pass's first message carries it again,
    /// should the pings be lost.
    pub fn pinged(&mut self, sent: usize) {
        let gone = sent.min(self.due.len().saturating_sub(1));
        self.due.drain(..gone);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::PathType;

    const A: &str = "0cc175b9c0f1b6a831c399e269772661";
    const B: &str = "92eb5ffee6ae2fec3ad71c777531578f";
    const C: &str = "4a8a08f09d37b73795649038408b5f33";

    fn queue(dir: &std::path::Path, n: usize) -> (Outgoing, Vec<String>) {
        let q = Outgoing::open(dir, PathType::QueueSimple).unwrap();
        let names: Vec<String> = (0..n)
            .map(|i| q.add(format!("m{i}").as_bytes()).unwrap())
            .collect();
        for name in &names {
            assert!(q.lock(name).unwrap());
        }
        (q, names)
    }

    /// Acks `name` (content `md5`) after it carried `carried`, as `deliver` does.
    async fn ack(r: &mut Reacks, q: &Outgoing, name: &str, md5: &str, carried: Option<&str>) {
        r.confirmed(carried);
        r.remove_acked(q, name, md5).await.unwrap();
    }

    #[tokio::test]
    async fn each_message_confirms_the_one_acked_before_the_last_once_it_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        let (q, names) = queue(dir.path(), 3);
        let mut r = Reacks::default();
        assert_eq!(r.for_next(A).await.unwrap(), None);
        ack(&mut r, &q, &names[0], A, None).await;
        // The first removal may still run: the second message confirms nothing yet.
        assert_eq!(r.for_next(B).await.unwrap(), None);
        ack(&mut r, &q, &names[1], B, None).await;
        // The first removal was awaited before the second started: its MD5 is due, and the
        // element is gone (the second's may be running still).
        let left = q.names().unwrap();
        assert!(
            !left.contains(&names[0]) && left.contains(&names[2]),
            "{left:?}"
        );
        assert_eq!(r.for_next(C).await.unwrap().as_deref(), Some(A));
        ack(&mut r, &q, &names[2], C, Some(A)).await;
        // The end of the pass: both left are due, oldest first; every removal is done.
        r.settle().await.unwrap();
        assert_eq!(r.due(), [B.to_string(), C.to_string()]);
        assert_eq!(q.count().unwrap(), 0);
        r.pinged(2);
        // The newest is carried again by the next pass's first message.
        assert_eq!(r.for_next(A).await.unwrap().as_deref(), Some(C));
    }

    #[tokio::test]
    async fn the_same_content_again_waits_for_the_removal_and_carries_its_md5() {
        let dir = tempfile::tempdir().unwrap();
        let (q, names) = queue(dir.path(), 3);
        let mut r = Reacks::default();
        ack(&mut r, &q, &names[0], A, None).await;
        ack(&mut r, &q, &names[1], B, None).await;
        // A is due, B's removal may run; the next message has B's content.
        assert_eq!(r.for_next(B).await.unwrap().as_deref(), Some(B));
        assert_eq!(
            q.names().unwrap(),
            [names[2].clone()],
            "B's removal was awaited"
        );
        ack(&mut r, &q, &names[2], B, Some(B)).await;
        // A was not skipped: it is carried next.
        assert_eq!(r.for_next(C).await.unwrap().as_deref(), Some(A));
    }

    #[tokio::test]
    async fn a_confirmation_stays_due_until_a_message_carrying_it_is_acked() {
        let dir = tempfile::tempdir().unwrap();
        let (q, names) = queue(dir.path(), 2);
        let mut r = Reacks::default();
        ack(&mut r, &q, &names[0], A, None).await;
        ack(&mut r, &q, &names[1], B, None).await;
        // Carried by a message that got no ack (or a REJECTED): still due.
        assert_eq!(r.for_next(C).await.unwrap().as_deref(), Some(A));
        assert_eq!(r.oldest().as_deref(), Some(A));
        assert_eq!(r.for_next(C).await.unwrap().as_deref(), Some(A));
        r.confirmed(Some(A));
        assert_eq!(r.oldest(), None);
    }

    #[tokio::test]
    async fn a_failed_removal_is_reported_and_not_confirmed() {
        let dir = tempfile::tempdir().unwrap();
        let (q, names) = queue(dir.path(), 1);
        q.unlock(&names[0]).unwrap();
        let mut r = Reacks::default();
        // Not locked: the queue refuses to remove it.
        r.remove_acked(&q, &names[0], A).await.unwrap();
        assert!(matches!(r.settle().await, Err(SenderError::Queue(_))));
        assert!(r.due().is_empty());
        assert_eq!(q.count().unwrap(), 1);
    }
}
