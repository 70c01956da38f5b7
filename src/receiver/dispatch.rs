//! Dispatch: what the receiver does with each delivery from the topic, before any crypto.
//!
//! Guarantees:
//! - A `msg` goes to its sender's lane (opened, verified, stored, answered there); a `ping`'s
//!   `ssm-reack` goes through the same lane, so that it is applied after that sender's earlier
//!   messages.
//! - A delivery that is not a valid SSM v1 message is kept in the reject queue with the reason,
//!   and answered `REJECTED` only when it names a reply queue and a message: an answer naming
//!   nothing is of no use to a genuine sender and lets anyone send `REJECTED`s to any queue.
//! - A `certreq` is answered within the per-reply-queue limit of [`super::certreq`]; the rest
//!   are dropped and reported.
//! - Both protocols share one subscription: a delivery with `ssm-msg-type` is SSM v1, any
//!   other is SSM2 (`empa-id`, or none: stored as `noid`); `empa-id: ping` is a keep-alive.
//! - Every delivery that does not reach a lane is acknowledged to the service here, once what
//!   it needed is done (a malformed one: once it is kept in the reject queue).

use tracing::{debug, info, warn};

use super::certreq::{self, CERTRESP_BURST, CERTRESP_REFILL};
use super::commit::Committer;
use super::lanes::{Job, Lanes};
use super::reply::Replies;
use super::stats::{RejectReason, Stats};
use crate::protocol::v2::Ssm2Message;
use crate::protocol::{self, AckOutcome, SsmMessage, Version};
use crate::queue::Record;
use crate::transport::{Delivery, Skipped};

/// What [`dispatch`] did with a delivery, for the `max_messages` count.
pub(super) enum Dispatched {
    /// A `msg` handed to a lane, which reports when it is handled.
    ToLane,
    /// A malformed message, rejected on the spot: handled already.
    Rejected,
    /// A `certreq`, `ping` or a message meant for senders: not counted.
    NotCounted,
}

/// What dispatching needs, borrowed from the receiver's loop.
pub(super) struct Dispatcher<'a> {
    /// Our certificate, PEM, sent in answer to `certreq`.
    pub cert_pem: &'a str,
    pub lanes: &'a Lanes,
    pub committer: &'a Committer,
    pub replies: &'a Replies,
    pub stats: &'a Stats,
    pub certreqs: certreq::Limiter,
}

impl Dispatcher<'_> {
    /// A message larger than the frame limit, which the transport skipped without reading
    /// its body: kept in the reject queue with its headers' id and the reason (the body is not
    /// there to keep), then acknowledged at the service so that it does not come back. Not
    /// answered: a v1 sender sends it again, and stops only when its operator looks.
    pub async fn skipped(&mut self, skipped: Skipped) {
        let Skipped {
            envelope,
            size,
            max,
            ack,
        } = skipped;
        Stats::bump(&self.stats.oversized);
        let v2 = protocol::version_of(&envelope) == Version::V2;
        let id = if v2 {
            Ssm2Message::from_envelope(&envelope).empa_id
        } else {
            envelope
                .header(protocol::headers::MSG_ID)
                .unwrap_or_default()
                .to_string()
        };
        warn!(
            size,
            max,
            %id,
            reply_to = ?envelope.header(protocol::headers::REPLY_TO),
            "message larger than the frame limit skipped; connection kept"
        );
        let record = Record {
            body: Vec::new(),
            signer: v2.then(|| super::lanes::NO_SIGNER.to_string()),
            empaid: Some(id),
            error: Some(format!(
                "a message of {size} bytes is larger than the frame limit of {max} bytes; its body was not kept"
            )),
        };
        self.committer.reject(record).await;
        self.replies.settle(&ack).await;
    }

    /// Handles one delivery from the topic.
    pub async fn dispatch(&mut self, delivery: Delivery) -> Dispatched {
        let Delivery {
            envelope,
            reply_to,
            ack,
        } = delivery;
        if protocol::version_of(&envelope) == Version::V2 {
            let message = Ssm2Message::from_envelope(&envelope);
            if message.is_ping() {
                debug!("SSM2 ping");
                self.replies.settle(&ack).await;
                return Dispatched::NotCounted;
            }
            Stats::bump(&self.stats.received);
            self.lanes
                .submit(Job {
                    version: Version::V2,
                    id: message.empa_id,
                    reply_to: None,
                    reack: None,
                    body: message.body,
                    forget: None,
                    ack,
                })
                .await;
            return Dispatched::ToLane;
        }
        let dispatched = match SsmMessage::from_envelope(&envelope) {
            Ok(SsmMessage::Msg {
                id,
                reply_to,
                reack,
                body,
            }) => {
                Stats::bump(&self.stats.received);
                self.lanes
                    .submit(Job {
                        version: Version::V1,
                        id,
                        reply_to,
                        reack,
                        body,
                        forget: None,
                        ack,
                    })
                    .await;
                return Dispatched::ToLane;
            }
            Ok(SsmMessage::CertReq { reply_to, reack }) => {
                Stats::bump(&self.stats.certreqs);
                if let Some(md5) = reack {
                    self.committer
                        .forget_for_reply_to(md5, reply_to.clone())
                        .await;
                }
                match self.certreqs.check(&reply_to, std::time::Instant::now()) {
                    certreq::Verdict::Answer => {}
                    certreq::Verdict::Drop(report) => {
                        if let Some(dropped) = report {
                            warn!(
                                %reply_to,
                                dropped,
                                "certreqs over the limit ({} at once, then one per {:?}, per reply queue) dropped unanswered",
                                CERTRESP_BURST,
                                CERTRESP_REFILL
                            );
                        }
                        self.replies.settle(&ack).await;
                        return Dispatched::NotCounted;
                    }
                }
                info!(%reply_to, "answering certreq");
                self.replies
                    .certresp(&reply_to, self.cert_pem.to_string())
                    .await;
                Dispatched::NotCounted
            }
            Ok(SsmMessage::Ping { reack }) => {
                debug!(?reack, ?reply_to, "ping");
                if let (Some(md5), Some(reply_to)) = (reack, reply_to) {
                    // Acknowledged by its lane, once the reack is applied.
                    self.lanes
                        .submit(Job {
                            version: Version::V1,
                            id: protocol::PING_ID.to_string(),
                            reply_to: Some(reply_to),
                            reack: None,
                            body: bytes::Bytes::new(),
                            forget: Some(md5),
                            ack,
                        })
                        .await;
                    return Dispatched::NotCounted;
                }
                Dispatched::NotCounted
            }
            Ok(other) => {
                debug!(kind = other.kind(), "ignoring a message meant for senders");
                Dispatched::NotCounted
            }
            Err(err) => {
                warn!(%err, ?reply_to, "malformed SSM message");
                if envelope.header(protocol::headers::MSG_TYPE) == Some("msg") {
                    Stats::bump(&self.stats.received);
                }
                self.stats.reject(RejectReason::Malformed);
                let reason = err.to_string();
                let record = Record {
                    body: envelope.body.to_vec(),
                    signer: None,
                    empaid: envelope
                        .header(protocol::headers::MSG_ID)
                        .map(str::to_string),
                    error: Some(reason.clone()),
                };
                self.committer.reject(record).await;
                match (reply_to, protocol::named_id(&envelope)) {
                    (Some(reply_to), Some(id)) => {
                        let outcome = AckOutcome::Rejected {
                            reason: Some(reason),
                        };
                        self.replies.ack(&reply_to, outcome, Some(id)).await;
                    }
                    (Some(_), None) => debug!("not answering: the frame names no message"),
                    (None, _) => {}
                }
                Dispatched::Rejected
            }
        };
        self.replies.settle(&ack).await;
        dispatched
    }
}
