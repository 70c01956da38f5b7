//! Delivering SSM2 messages: many in flight, each confirmed by the service's receipt.
//!
//! Guarantees:
//! - An element leaves the outgoing queue only after the service confirmed its message (a
//!   STOMP `RECEIPT` for its `SEND`); nothing else removes it.
//! - At most `window` messages wait for their receipt at once, and as many are sealed ahead
//!   (on the blocking pool, in parallel), so a sender is bound by the service's round trip
//!   divided by the window, not by one round trip per message (`window = 1` is the Python
//!   SSM's behaviour).
//! - A receipt that does not come within the client's receipt timeout is a failed send, not a
//!   hang. After a failed send (lost connection, timeout, a refusal) the message is sent again
//!   on a new connection, as is everything else that was not confirmed; after `max_attempts`
//!   sends it stays queued (unlocked) and the pass ends with the last error.
//! - A failure reported by an earlier connection never closes a newer one.
//! - A message the service refuses as too large (an AMS `413`) goes to the local reject queue
//!   with the service's reason, and the pass goes on with the others.

use std::collections::VecDeque;
use std::time::Instant;

use bytes::Bytes;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::prepare::Preparing;
use super::stats::SenderStats;
use super::{Sender, SenderError};
use crate::protocol::v2::Ssm2Message;
use crate::transport::TransportError;

/// One sealed message, with how often it was sent.
struct Sealed {
    name: String,
    // #16 (AMS): the content as queued, for the reject queue after a 413.
    data: Vec<u8>,
    body: Bytes,
    sends: u32,
    first_sent: Option<Instant>,
}

/// What a send task reports: the message, the connection it went on, how it ended.
type Sent = (Sealed, u64, Result<Option<String>, TransportError>);

impl Sender {
    /// Sends every element of `names` as SSM2 (see the module guarantees).
    pub(super) async fn pass_receipted(
        &mut self,
        names: Vec<String>,
        shutdown: &CancellationToken,
    ) -> Result<(), SenderError> {
        let window = self.settings.window.max(1);
        let total = names.len();
        let mut names = names.into_iter();
        let mut sealing: VecDeque<Preparing> = VecDeque::new();
        let mut again: VecDeque<Sealed> = VecDeque::new();
        let mut in_flight: JoinSet<Sent> = JoinSet::new();
        let mut failure: Option<SenderError> = None;
        let mut done = 0usize;
        loop {
            // Keep `window` messages sealing ahead of the sends.
            while failure.is_none()
                && !shutdown.is_cancelled()
                && sealing.len() + again.len() < window
            {
                match self.prepare_next(&mut names).await {
                    Ok(Some(p)) => sealing.push_back(p),
                    Ok(None) => break,
                    Err(e) => {
                        failure = Some(e);
                        break;
                    }
                }
            }
            // Send while the window has room.
            while failure.is_none() && !shutdown.is_cancelled() && in_flight.len() < window {
                let message = match again.pop_front() {
                    Some(m) => m,
                    None => match sealing.pop_front() {
                        None => break,
                        Some(p) => match self.sealed(p).await {
                            Ok(m) => m,
                            Err(e) => {
                                failure = Some(e);
                                break;
                            }
                        },
                    },
                };
                if let Err(e) = self.send_one(message, &mut in_flight, &mut again).await {
                    failure = Some(e);
                }
            }
            let Some(joined) = in_flight.join_next().await else {
                break;
            };
            let (message, connection, result) = match joined {
                Ok(sent) => sent,
                Err(e) => {
                    // A send task that panicked: its message stays locked until the lock goes
                    // stale, and is sent again then.
                    failure.get_or_insert(SenderError::Task("send", e.to_string()));
                    continue;
                }
            };
            match result {
                Ok(service_id) => {
                    if let Some(at) = message.first_sent {
                        self.stats.ack_latency.observe(at.elapsed());
                    }
                    if let Err(e) = self.remove(&message.name).await {
                        // Confirmed but still queued: it is sent again by a later pass and
                        // stored once by the receiver.
                        warn!(%e, id = %message.name, "confirmed, but could not be removed");
                        self.unlock(&message.name);
                        failure.get_or_insert(e);
                        continue;
                    }
                    SenderStats::bump(&self.stats.acked);
                    match service_id {
                        // #16: the Python SSM's AMS line, which operators grep.
                        Some(argo) => {
                            info!(id = %message.name, sends = message.sends, "Sent {}, Argo ID: {}", message.name, argo)
                        }
                        None => {
                            info!(id = %message.name, sends = message.sends, "Sent {}", message.name)
                        }
                    }
                    done += 1;
                    if total >= 100 && done % 100 == 0 {
                        info!("progress: {}/{} messages", done, total);
                    }
                }
                // #16 (AMS 413): sending it again cannot help; set it aside, go on.
                Err(TransportError::TooLarge(reason)) => {
                    warn!(id = %message.name, %reason, "refused by the service as too large; moving to the reject queue");
                    self.reject.add(&crate::queue::Record {
                        body: message.data,
                        signer: None,
                        empaid: Some(message.name.clone()),
                        error: Some(reason),
                    })?;
                    self.remove(&message.name).await?;
                    SenderStats::bump(&self.stats.rejected);
                    done += 1;
                }
                Err(err) => {
                    warn!(%err, id = %message.name, "no receipt; sending again on a new connection");
                    if connection == self.conn_id {
                        self.conn = None;
                    }
                    if message.sends >= self.settings.max_attempts {
                        warn!(id = %message.name, sends = message.sends, "giving up for this pass; it stays queued");
                        self.unlock(&message.name);
                        failure.get_or_insert(SenderError::Broker(err));
                    } else {
                        again.push_back(message);
                    }
                }
            }
        }
        // Whatever was not sent goes back to the queue.
        for p in sealing {
            self.abandon(p);
        }
        for m in again {
            self.unlock(&m.name);
        }
        match failure {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Waits for a prepared message's sealing.
    async fn sealed(&mut self, p: Preparing) -> Result<Sealed, SenderError> {
        let name = p.name.clone();
        match p.task.await {
            Ok(Ok(body)) => Ok(Sealed {
                name: p.name,
                data: p.data,
                body: Bytes::from(body),
                sends: 0,
                first_sent: None,
            }),
            Ok(Err(e)) => {
                self.unlock(&name);
                Err(e.into())
            }
            Err(e) => {
                self.unlock(&name);
                Err(SenderError::Task("seal", e.to_string()))
            }
        }
    }

    /// Starts sending `message` (connecting first if needed); a connection failure puts it
    /// back in `again`, or gives up on the pass after `max_attempts` connection failures.
    async fn send_one(
        &mut self,
        mut message: Sealed,
        in_flight: &mut JoinSet<Sent>,
        again: &mut VecDeque<Sealed>,
    ) -> Result<(), SenderError> {
        let publisher = match self.connect().await {
            Ok(conn) => conn.publisher(),
            Err(SenderError::Broker(err)) => {
                message.sends += 1;
                warn!(%err, "cannot reach a broker");
                if message.sends >= self.settings.max_attempts {
                    self.unlock(&message.name);
                    return Err(SenderError::Broker(err));
                }
                again.push_back(message);
                return Ok(());
            }
            Err(e) => {
                self.unlock(&message.name);
                return Err(e);
            }
        };
        if message.sends > 0 {
            SenderStats::bump(&self.stats.retried);
        }
        message.sends += 1;
        message.first_sent.get_or_insert_with(Instant::now);
        SenderStats::bump(&self.stats.sent);
        let envelope =
            Ssm2Message::new(super::prepare::wire_id(&message.name), message.body.clone())
                .to_envelope(&self.settings.destination);
        let connection = self.conn_id;
        in_flight.spawn(async move {
            let result = publisher.send_confirmed_id(envelope).await;
            (message, connection, result)
        });
        Ok(())
    }
}
