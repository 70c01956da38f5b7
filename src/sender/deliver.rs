//! Delivering one sealed message: publish it, then wait for its confirmation; resend on a
//! timeout or a lost connection.
//!
//! Guarantees:
//! - A message leaves the outgoing queue only when its confirmation came: for SSM v1, an ack
//!   carrying its MD5 (see [`answers`] for which acks count). A `REJECTED` naming it moves it
//!   to the local reject queue first, with the reason.
//! - Nothing said about one message carries over to the next: acks naming another message are
//!   ignored (counted, logged once).
//! - After `max_attempts` sends without a confirmation the message stays queued; the error
//!   says whether the broker or the receiver failed last.

use std::time::Instant;

use bytes::Bytes;
use tracing::{debug, info, warn};

use super::prepare::{wire_id, Preparing};
use super::reack;
use super::stats::SenderStats;
use super::{Sender, SenderError};
use crate::protocol::{AckOutcome, SsmMessage};
use crate::queue::Record;
use crate::transport::{Event, TransportError};

/// How waiting for a confirmation ended.
enum Wait {
    Acked,
    Rejected(String),
    TimedOut,
    Lost(TransportError),
}

impl Sender {
    /// Sends one sealed message until it is acked, rejected or given up on.
    pub(super) async fn deliver(&mut self, prepared: Preparing) -> Result<(), SenderError> {
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
        let reack = self.reacks.for_next(&md5).await?;
        let started = Instant::now();
        let mut attempts = 0;
        let mut sends = 0;
        // Why the latest attempt failed when it was the broker, not the receiver: giving up
        // then reports the broker, not a missing ack for a message that never left.
        let mut broker_error: Option<TransportError> = None;
        while attempts < self.settings.max_attempts {
            attempts += 1;
            let msg = SsmMessage::Msg {
                id: msg_id.clone(),
                reply_to: Some(self.settings.reply_queue.clone()),
                reack: reack.clone(),
                body: body.clone(),
            };
            let envelope = msg.to_envelope(&self.settings.destination);
            let conn = match self.connect().await {
                Ok(c) => c,
                Err(SenderError::Broker(err)) => {
                    warn!(%err, "cannot reach a broker");
                    broker_error = Some(err);
                    continue;
                }
                Err(e) => return Err(e),
            };
            if let Err(err) = conn.publisher().send_confirmed(envelope).await {
                warn!(%err, %name, "send failed; reconnecting");
                self.conn = None;
                broker_error = Some(err);
                continue;
            }
            broker_error = None;
            if sends > 0 {
                SenderStats::bump(&self.stats.retried);
            }
            sends += 1;
            SenderStats::bump(&self.stats.sent);
            match self.wait_for_ack(&msg_id, &md5).await {
                Wait::Acked => {
                    // Send to ack, without the removal's fsync.
                    let latency = started.elapsed();
                    self.stats.ack_latency.observe(latency);
                    self.reacks.confirmed(reack.as_deref());
                    // Runs while the next message is sent; confirmed only once it is done.
                    self.reacks.remove_acked(&self.outgoing, name, &md5).await?;
                    SenderStats::bump(&self.stats.acked);
                    info!(
                        id = %name,
                        %md5,
                        ms = latency.as_millis() as u64,
                        us = latency.as_micros() as u64,
                        attempts,
                        // `Sent <id>` as the Python SSM logs it (operators grep it); "acked"
                        // says this was confirmed by the receiver, not only by the broker.
                        "Sent {name} (acked)"
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
                    SenderStats::bump(&self.stats.rejected);
                    return Ok(());
                }
                Wait::TimedOut => {
                    warn!(id = %name, attempts, "no ack in {:?}; sending again", self.settings.ack_timeout);
                }
                Wait::Lost(err) => {
                    warn!(%err, id = %name, "connection lost waiting for the ack; reconnecting");
                    self.conn = None;
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

    /// Removes a delivered element (a rejected one, an SSM2 one), awaited, on the blocking
    /// pool.
    pub(super) async fn remove(&self, name: &str) -> Result<(), SenderError> {
        reack::finish_removal(reack::start_removal(&self.outgoing, name)).await
    }

    /// Waits for the ack of the `msg` sent with `ssm-msg-id: msg_id`.
    async fn wait_for_ack(&mut self, msg_id: &str, md5: &str) -> Wait {
        let deadline = tokio::time::Instant::now() + self.settings.ack_timeout;
        let Some(conn) = self.conn.as_mut() else {
            return Wait::Lost(TransportError::closed());
        };
        // Acks that were not for this message: each at debug level, their number once (a
        // forger can send any number of them; the log must not grow with each).
        let mut ignored = 0u64;
        let wait = loop {
            let event = match tokio::time::timeout_at(deadline, conn.recv()).await {
                Err(_) => break Wait::TimedOut,
                Ok(Err(err)) => break Wait::Lost(err),
                Ok(Ok(event)) => event,
            };
            let delivery = match event {
                Event::Delivery(delivery) => delivery,
                Event::Skipped(_) => continue, // logged by the transport; not an ack we can read
                Event::ServiceError(message) => {
                    warn!(%message, "broker error");
                    continue;
                }
            };
            match SsmMessage::from_envelope(&delivery.envelope) {
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

#[cfg(test)]
mod tests {
    use super::{answers, Answer};
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
}
