//! SSM2, the one-way protocol of the Python SSM 4.0: a message and its `empa-id` (no I/O).
//!
//! An SSM2 message is a body (signed S/MIME text, optionally encrypted: see
//! `crypto`'s version 2 recipe) and the `empa-id` header naming it: the sender's queue element
//! name. There is no SSM-level answer: the sender is confirmed by the service, the receiver
//! acknowledges to the service.
//!
//! Guarantees:
//! - [`Ssm2Message::from_envelope`] never fails and never panics: a missing `empa-id` is
//!   [`NOID`], as the Python receiver stores it; each character of an `empa-id` outside
//!   printable ASCII becomes `?`, so that the id can be logged and stored as it is.
//! - `empa-id: ping` is a keep-alive, not a message ([`Ssm2Message::is_ping`]).

use bytes::Bytes;

use crate::transport::Envelope;

/// The header naming an SSM2 message.
pub const EMPA_ID: &str = "empa-id";

/// The `empa-id` the Python receiver stores for a message that carried none.
pub const NOID: &str = "noid";

/// The `empa-id` of a keep-alive, ignored by receivers.
pub const PING: &str = "ping";

/// One SSM2 message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ssm2Message {
    /// Its id: the sender's queue element name, or [`NOID`].
    pub empa_id: String,
    /// The protected body, as sent.
    pub body: Bytes,
}

impl Ssm2Message {
    /// A message named `empa_id` with this body.
    pub fn new(empa_id: impl Into<String>, body: impl Into<Bytes>) -> Ssm2Message {
        Ssm2Message {
            empa_id: empa_id.into(),
            body: body.into(),
        }
    }

    /// The envelope for `destination`.
    pub fn to_envelope(&self, destination: &str) -> Envelope {
        Envelope::new(destination)
            .with_header(EMPA_ID, self.empa_id.as_str())
            .with_body(self.body.clone())
    }

    /// Reads a delivered envelope (see the module guarantees).
    pub fn from_envelope(envelope: &Envelope) -> Ssm2Message {
        let empa_id = match envelope.header(EMPA_ID) {
            None | Some("") => NOID.to_string(),
            Some(id) => id
                .chars()
                .map(|c| if c.is_ascii_graphic() { c } else { '?' })
                .collect(),
        };
        Ssm2Message {
            empa_id,
            body: envelope.body.clone(),
        }
    }

    /// Whether this is a keep-alive (`empa-id: ping`).
    pub fn is_ping(&self) -> bool {
        self.empa_id == PING
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_defaults() {
        let m = Ssm2Message::new("5ba24c88/5ba24c8f0f129d", "signed text");
        assert_eq!(Ssm2Message::from_envelope(&m.to_envelope("/queue/q")), m);
        let none = Ssm2Message::from_envelope(&Envelope::new("/queue/q").with_body("b"));
        assert_eq!(none.empa_id, NOID);
        assert!(!none.is_ping());
        let ping = Ssm2Message::from_envelope(&Envelope::new("/q").with_header(EMPA_ID, "ping"));
        assert!(ping.is_ping());
        let odd = Envelope::new("/q").with_header(EMPA_ID, "a\u{1b}b c");
        assert_eq!(Ssm2Message::from_envelope(&odd).empa_id, "a?b?c");
    }
}
