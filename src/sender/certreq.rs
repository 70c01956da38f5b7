//! Asking the receiver for its certificate (`certreq`, SSM v1 only) and checking the answer.
//!
//! Guarantees:
//! - A `certresp` is used only if it is a PEM certificate carrying the configured server DN
//!   (compared RDN by RDN), chained to a trusted CA (unless verification is off), and valid
//!   now. Anyone can send to our reply queue: any other `certresp` is ignored while the real
//!   one is waited for, and the last refusal is reported if none comes.
//! - The answer is asked for at most `max_attempts` times, each waiting `ack_timeout`.

use std::time::Duration;

use openssl::x509::X509;
use tracing::{info, warn};

use super::{Sender, SenderError};
use crate::crypto::{self, TrustStore};
use crate::protocol::SsmMessage;
use crate::transport::{Event, TransportError};

impl Sender {
    /// The receiver's certificate: configured, obtained earlier, or asked for now.
    pub(super) async fn server_cert(&mut self) -> Result<X509, SenderError> {
        if let Some(cert) = &self.server_cert {
            return Ok(cert.clone());
        }
        let Some(want_dn) = self.settings.server_dn.clone() else {
            return Err(SenderError::ServerCert(
                "no server certificate configured and no server DN to check a certreq answer against".into(),
            ));
        };
        let mut broker_error: Option<TransportError> = None;
        let mut refused: Option<SenderError> = None;
        let trust = self
            .settings
            .verify_server_cert
            .then(|| self.settings.trust.clone());
        for attempt in 1..=self.settings.max_attempts {
            let req = SsmMessage::CertReq {
                reply_to: self.settings.reply_queue.clone(),
                reack: self.reacks.oldest(),
            };
            let envelope = req.to_envelope(&self.settings.destination);
            let timeout = self.settings.ack_timeout;
            let conn = self.connect().await?;
            if let Err(err) = conn.publisher().send_confirmed(envelope).await {
                warn!(%err, attempt, "certreq not sent; reconnecting");
                self.conn = None;
                broker_error = Some(err);
                continue;
            }
            broker_error = None;
            let deadline = tokio::time::Instant::now() + timeout;
            loop {
                match tokio::time::timeout_at(deadline, conn.recv()).await {
                    Err(_) => {
                        warn!(attempt, "no certresp in time");
                        break;
                    }
                    Ok(Err(err)) => {
                        warn!(%err, "connection lost waiting for certresp");
                        self.conn = None;
                        broker_error = Some(err);
                        break;
                    }
                    Ok(Ok(Event::Delivery(delivery))) => {
                        if let Ok(SsmMessage::CertResp { cert_pem }) =
                            SsmMessage::from_envelope(&delivery.envelope)
                        {
                            match check_server_cert(&cert_pem, &want_dn, trust.as_ref()) {
                                Ok(cert) => {
                                    info!(dn = %want_dn, "got the server certificate by certreq");
                                    self.server_cert = Some(cert.clone());
                                    return Ok(cert);
                                }
                                Err(err) => {
                                    warn!(%err, "ignoring a certresp");
                                    refused = Some(err);
                                }
                            }
                        }
                    }
                    Ok(Ok(Event::ServiceError(message))) => {
                        warn!(%message, "broker error");
                    }
                    // Logged by the transport; not a certresp.
                    Ok(Ok(Event::Skipped(_))) => {}
                }
            }
        }
        match broker_error {
            Some(err) => Err(SenderError::Broker(err)),
            None => Err(SenderError::ServerCert(match refused {
                None => format!("no certresp after {} attempts", self.settings.max_attempts),
                Some(e) => format!(
                    "no usable certresp after {} attempts (last refused: {e})",
                    self.settings.max_attempts
                ),
            })),
        }
    }
}

/// Checks a `certresp` certificate: PEM, the wanted DN (RDN by RDN), chained to `trust` when
/// given, valid now.
fn check_server_cert(
    pem: &str,
    want_dn: &str,
    trust: Option<&TrustStore>,
) -> Result<X509, SenderError> {
    let cert = X509::from_pem(pem.as_bytes())
        .map_err(|e| SenderError::ServerCert(format!("certresp is not a PEM certificate: {e}")))?;
    // RDN by RDN: a `/` or `+` inside a value must not pass for a separator.
    let dn = crypto::Dn::of_name(cert.subject_name());
    if crypto::Dn::parse(want_dn).as_ref() != Some(&dn) {
        return Err(SenderError::ServerCert(format!(
            "certresp certificate is for {dn}, expected {want_dn}"
        )));
    }
    if let Some(trust) = trust {
        trust.verify(&cert, &[])?;
    }
    crypto::check_validity(&cert, Duration::ZERO)?;
    Ok(cert)
}
