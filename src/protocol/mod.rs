//! The SSM protocols: what a message is and how it maps to a transport [`Envelope`] (no I/O).
//!
//! Two versions exist, chosen once at set-up ([`Version`]):
//! - [`v1`], SSM v1, the acknowledged protocol this crate has spoken from the start: the
//!   receiver answers every `msg` with an `ack` carrying its MD5 (or `REJECTED`) on the sender's
//!   reply queue; `certreq`, `ping` and `ssm-reack` around it.
//! - [`v2`], SSM2 as the Python SSM 4.0 speaks it: one-way messages with an `empa-id`,
//!   confirmed by the service (a broker `RECEIPT`) rather than by the receiver, and
//!   acknowledged to the service (a broker-level `ACK`) once stored. The mapping lives here; the
//!   state machines' strategies for it land with SSM2 support.
//!
//! Guarantees:
//! - Reading a delivery never panics, whatever its headers and body; every problem is a
//!   precise error of the version that read it.
//! - Nothing here knows the transport's wire format: the same envelope goes over STOMP or any
//!   other transport whose [`Capabilities`] fit the version ([`Version::fits`]).

pub mod v1;
pub mod v2;

use crate::transport::{Capabilities, Envelope};

pub use v1::{
    headers, is_md5_hex, named_id, sanitize_reason, AckOutcome, ProtocolError, SsmMessage,
    MAX_REASON_LEN, NOID, PING_ID, REJECTED,
};

/// Which SSM protocol a sender or receiver speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Version {
    /// SSM v1: confirmation by the receiver's `ack` on the sender's reply queue.
    #[default]
    V1,
    /// SSM2: confirmation by the service's receipt; the receiver acknowledges to the service.
    V2,
}

/// How a sender learns that a message may leave its queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Confirmation {
    /// The receiver's SSM `ack` with the message's MD5 (v1).
    SsmAck,
    /// The service's receipt for the send (v2).
    Receipt,
}

/// How a receiver answers a message it has handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    /// An SSM `ack` (MD5 or `REJECTED`) to the sender's reply queue (v1).
    SsmAck,
    /// A broker-level acknowledgement of the delivery (v2).
    BrokerAck,
}

impl Version {
    /// How the sender of this version confirms a message.
    pub fn confirmation(self) -> Confirmation {
        match self {
            Version::V1 => Confirmation::SsmAck,
            Version::V2 => Confirmation::Receipt,
        }
    }

    /// How the receiver of this version answers a handled message.
    pub fn reply(self) -> Reply {
        match self {
            Version::V1 => Reply::SsmAck,
            Version::V2 => Reply::BrokerAck,
        }
    }

    /// Whether a transport can carry this version; `Err` says what it lacks.
    pub fn fits(self, caps: Capabilities) -> Result<(), &'static str> {
        match self {
            Version::V1 if !caps.reply_channel => {
                Err("SSM v1 needs a reply channel for its acks, which this transport does not have")
            }
            Version::V2 if !caps.receipts => {
                Err("SSM2 needs the service to confirm each message, which this transport does not")
            }
            _ => Ok(()),
        }
    }
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Version::V1 => "1",
            Version::V2 => "2",
        })
    }
}

/// Reads an envelope as the version whose marks it carries, so that one receiver takes both on
/// one subscription: `ssm-msg-type` is v1; else an `empa-id` is SSM2; else an `ssm-msg-id` is
/// a v1 message without its type (malformed v1, answered `REJECTED` as such); anything else is
/// SSM2 without an id (stored as `noid`, as the Python receiver does).
pub fn version_of(envelope: &Envelope) -> Version {
    if envelope.header(headers::MSG_TYPE).is_some() {
        Version::V1
    } else if envelope.header(v2::EMPA_ID).is_some() {
        Version::V2
    } else if envelope.header(headers::MSG_ID).is_some() {
        Version::V1
    } else {
        Version::V2
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NO_REPLY: Capabilities = Capabilities {
        reply_channel: false,
        receipts: true,
        broker_acks: true,
    };

    #[test]
    fn v1_needs_a_reply_channel_v2_does_not() {
        assert!(Version::V1.fits(NO_REPLY).is_err());
        assert!(Version::V2.fits(NO_REPLY).is_ok());
        assert!(Version::V1
            .fits(crate::transport::stomp::CAPABILITIES)
            .is_ok());
    }

    #[test]
    fn each_version_has_its_confirmation_and_reply() {
        assert_eq!(Version::V1.confirmation(), Confirmation::SsmAck);
        assert_eq!(Version::V2.confirmation(), Confirmation::Receipt);
        assert_eq!(Version::V1.reply(), Reply::SsmAck);
        assert_eq!(Version::V2.reply(), Reply::BrokerAck);
    }

    #[test]
    fn deliveries_are_told_apart_by_their_headers() {
        let v1 = SsmMessage::Ping { reack: None }.to_envelope("/topic/t");
        assert_eq!(version_of(&v1), Version::V1);
        let v2 = v2::Ssm2Message::new("5ba24c88/5ba24c8f0f129d", "x").to_envelope("/topic/t");
        assert_eq!(version_of(&v2), Version::V2);
        assert_eq!(version_of(&Envelope::new("/topic/t")), Version::V2);
        // An ssm-msg-id without a type is a broken v1 message, not an SSM2 one.
        let broken = Envelope::new("/topic/t").with_header(headers::MSG_ID, "x");
        assert_eq!(version_of(&broken), Version::V1);
    }
}
