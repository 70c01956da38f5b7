//! What a handled message gets back: its [`Outcome`], and the answer that follows from it.
//!
//! Guarantees:
//! - Only `Stored` and `Duplicate` are answered with the message's MD5, and only `Rejected`
//!   with `REJECTED`: a fault of ours (`StoreFailed`, `TrustUnavailable`) is never answered,
//!   so the sender keeps the message and sends it again ([`Outcome::answer`]).
//! - Answers go out on the current connection: after a reconnect, [`Replies::set_publisher`]
//!   points every lane at the new one. A failed answer is logged, never fatal (the sender
//!   resends and is answered again).

use std::sync::RwLock;

use tokio::sync::Notify;
use tracing::{debug, error, warn};

use super::stats::RejectReason;
use crate::protocol::{AckOutcome, SsmMessage};
use crate::transport::{AckToken, Publisher, TransportError};

/// What happened to one `msg`: decides the answer.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// Stored as a new element: the message's MD5 and the element's name in `incoming`.
    Stored(String, String),
    Duplicate(String),
    Rejected(String, RejectReason),
    StoreFailed(String),
    /// Our own trust store cannot judge the signer (stale CRL): no ack, the sender resends.
    TrustUnavailable(String),
}

impl Outcome {
    /// The SSM v1 answer to the sender, or `None` when the sender must resend.
    pub fn answer(&self) -> Option<AckOutcome> {
        match self {
            Outcome::Stored(md5, _) | Outcome::Duplicate(md5) => {
                Some(AckOutcome::Stored(md5.clone()))
            }
            Outcome::Rejected(reason, _) => Some(AckOutcome::Rejected {
                reason: Some(reason.clone()),
            }),
            Outcome::StoreFailed(_) | Outcome::TrustUnavailable(_) => None,
        }
    }
}

/// Sends answers on the receiver's current connection; shared by the dispatcher and the lanes.
pub(crate) struct Replies {
    publisher: RwLock<Publisher>,
    redeliver: Notify,
}

impl Replies {
    /// Answers on `publisher`'s connection.
    pub fn new(publisher: Publisher) -> Replies {
        Replies {
            publisher: RwLock::new(publisher),
            redeliver: Notify::new(),
        }
    }

    /// Answers on a new connection from now on (after a reconnect).
    pub fn set_publisher(&self, publisher: Publisher) {
        if let Ok(mut p) = self.publisher.write() {
            *p = publisher;
        }
    }

    fn publisher(&self) -> Option<Publisher> {
        self.publisher.read().ok().map(|p| p.clone())
    }

    /// Sends an `ack` to `reply_to`, naming the message `ack_for`.
    pub async fn ack(&self, reply_to: &str, outcome: AckOutcome, ack_for: Option<String>) {
        self.send(reply_to, SsmMessage::Ack { outcome, ack_for }, "ack")
            .await
    }

    /// Sends our certificate to `reply_to`.
    pub async fn certresp(&self, reply_to: &str, cert_pem: String) {
        self.send(reply_to, SsmMessage::CertResp { cert_pem }, "certresp")
            .await
    }

    /// Acknowledges a handled delivery to the service: it is stored or rejected durably, or
    /// (SSM v1) its sender will send it again. A delivery of an earlier connection is not
    /// acknowledged: the service delivers it again and the duplicate check finds it.
    pub async fn settle(&self, token: &AckToken) {
        let Some(publisher) = self.publisher() else {
            return;
        };
        match publisher.ack(token).await {
            Ok(()) => {}
            Err(TransportError::StaleAck) => {
                debug!("not acknowledging a delivery of an earlier connection")
            }
            Err(err) => warn!(%err, "could not acknowledge a delivery; it will come again"),
        }
    }

    /// Asks the receiver's loop to reconnect, so that the service delivers again what was
    /// not acknowledged (an SSM2 message we could not store: only the broker holds it).
    pub fn request_redelivery(&self) {
        self.redeliver.notify_one();
    }

    /// Resolves when a redelivery was asked for.
    pub async fn redelivery_requested(&self) {
        self.redeliver.notified().await
    }

    async fn send(&self, reply_to: &str, message: SsmMessage, what: &str) {
        let Some(publisher) = self.publisher() else {
            return;
        };
        if let Err(err) = publisher.send(message.to_envelope(reply_to)).await {
            error!(%err, %reply_to, "could not send {what}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_faults_are_never_answered() {
        assert_eq!(Outcome::StoreFailed("disk full".into()).answer(), None);
        assert_eq!(
            Outcome::TrustUnavailable("CRL expired".into()).answer(),
            None
        );
        let md5 = "0123456789abcdef0123456789abcdef".to_string();
        assert_eq!(
            Outcome::Duplicate(md5.clone()).answer(),
            Some(AckOutcome::Stored(md5))
        );
        assert!(matches!(
            Outcome::Rejected("bad".into(), RejectReason::Other).answer(),
            Some(AckOutcome::Rejected { .. })
        ));
    }
}
