//! SSM message types and headers, and their mapping to STOMP frames (no I/O).
//!
//! [`SsmMessage`] is the closed set of messages of the SSM protocol (`docs/protocol.md`): `certreq`,
//! `certresp`, `msg`, `ack` and `ping`. [`SsmMessage::to_frame`] turns one into a STOMP `SEND`
//! frame; [`SsmMessage::from_frame`] reads one back from a delivered `MESSAGE` (or a `SEND`).
//!
//! Guarantees:
//! - Every message survives a round trip: `from_frame(&m.to_frame(d)) == Ok(m)` for any message
//!   whose header values are plain printable ASCII (ids, queues and MD5s always are) and whose
//!   rejection reason is already sanitised (see [`sanitize_reason`]).
//! - [`SsmMessage::from_frame`] never panics on hostile input. A missing or unknown
//!   `ssm-msg-type`, a `msg` without `ssm-msg-id`, an `ack` whose id is neither an MD5 nor
//!   `REJECTED`, and a protocol header value holding non-ASCII or control characters are all
//!   [`ProtocolError`]s.
//! - Informational headers never cost a message: an `ssm-reack` that is not an MD5 is dropped
//!   (`None`), an `ack`'s rejection reason is sanitised, and an `ssm-ack-for` that is not plain
//!   ASCII is dropped. Unknown headers are ignored, as peers ignore ours.
//! - `ssm-reack` is sent with that spelling; on reading, `ssm-reack` is preferred and the
//!   historical `ssm-react` is used only when `ssm-reack` is absent.

use bytes::Bytes;

use crate::stomp::{Command, Frame};

/// Header names used by the SSM protocol.
pub mod headers {
    /// The STOMP destination of a frame.
    pub const DESTINATION: &str = "destination";
    /// What the message is: `certreq`, `certresp`, `msg`, `ack` or `ping`.
    pub const MSG_TYPE: &str = "ssm-msg-type";
    /// The message id: the client's id of a `msg`, an MD5 or `REJECTED` on an `ack`, `noid` on a
    /// `certreq`, `ping` on a `ping`.
    pub const MSG_ID: &str = "ssm-msg-id";
    /// MD5 of an earlier message whose ack the client received.
    pub const REACK: &str = "ssm-reack";
    /// The historical misspelling of [`REACK`], accepted on input only.
    pub const REACK_ALT: &str = "ssm-react";
    /// The client's temporary queue, where the server sends its replies.
    pub const REPLY_TO: &str = "reply-to";
    /// Why a message was rejected (our extension; peers ignore it).
    pub const REASON: &str = "ssm-reason";
    /// The `ssm-msg-id` of the `msg` an `ack` answers (our extension; peers ignore it).
    pub const ACK_FOR: &str = "ssm-ack-for";
}

/// `ssm-msg-id` of a `certreq`.
pub const NOID: &str = "noid";
/// `ssm-msg-id` of a `ping`.
pub const PING_ID: &str = "ping";
/// `ssm-msg-id` of an `ack` that refuses a message.
pub const REJECTED: &str = "REJECTED";
/// Longest rejection reason put in or read from an `ssm-reason` header, in characters.
pub const MAX_REASON_LEN: usize = 200;

/// The longest excerpt of a bad value quoted back in a [`ProtocolError`].
const MAX_QUOTED: usize = 64;

/// One message of the SSM protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SsmMessage {
    /// Client asks the server for its certificate (`ssm-msg-id: noid`).
    CertReq {
        /// Where the server sends the `certresp`.
        reply_to: String,
        /// MD5 of an earlier message whose ack arrived.
        reack: Option<String>,
    },
    /// Server answers a `certreq` with its certificate.
    CertResp {
        /// The server's X.509 certificate, PEM.
        cert_pem: String,
    },
    /// A protected message from a client.
    Msg {
        /// The client's unique id of this message.
        id: String,
        /// Where the server sends the `ack`.
        reply_to: Option<String>,
        /// MD5 of an earlier message whose ack arrived.
        reack: Option<String>,
        /// The sealed body (`encrypt(sign(base64(zlib(msg))))`), opaque here.
        body: Bytes,
    },
    /// Server's answer to a `msg`.
    Ack {
        /// Stored (with the MD5) or rejected.
        outcome: AckOutcome,
        /// The `ssm-msg-id` of the `msg` this answers, sent as `ssm-ack-for` (our extension).
        ack_for: Option<String>,
    },
    /// Keep-alive that may carry a reack (`ssm-msg-id: ping`).
    Ping {
        /// MD5 of an earlier message whose ack arrived.
        reack: Option<String>,
    },
}

/// What the server did with a `msg`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AckOutcome {
    /// Stored durably; the MD5 (32 lowercase hex digits) of the message.
    Stored(String),
    /// Not stored (`ssm-msg-id: REJECTED`).
    Rejected {
        /// Why, as sent in `ssm-reason`: printable ASCII, at most [`MAX_REASON_LEN`] characters.
        reason: Option<String>,
    },
}

/// Why a frame is not a valid SSM message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// The frame is neither a `MESSAGE` nor a `SEND`.
    #[error("a {0} frame is not an SSM message")]
    WrongCommand(String),
    /// No `ssm-msg-type` header.
    #[error("no ssm-msg-type header")]
    MissingType,
    /// An `ssm-msg-type` this implementation does not know (quoted, shortened, sanitised).
    #[error("unknown ssm-msg-type '{0}'")]
    UnknownType(String),
    /// A header the message type requires is absent.
    #[error("{0} header missing")]
    MissingHeader(&'static str),
    /// A header has a value the protocol does not allow.
    #[error("bad {name} header: {reason}")]
    BadHeader {
        /// The header name.
        name: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The body does not fit the message type.
    #[error("bad {kind} body: {reason}")]
    BadBody {
        /// The message type.
        kind: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}

impl SsmMessage {
    /// The value of `ssm-msg-type` for this message: `certreq`, `certresp`, `msg`, `ack`, `ping`.
    pub fn kind(&self) -> &'static str {
        match self {
            SsmMessage::CertReq { .. } => "certreq",
            SsmMessage::CertResp { .. } => "certresp",
            SsmMessage::Msg { .. } => "msg",
            SsmMessage::Ack { .. } => "ack",
            SsmMessage::Ping { .. } => "ping",
        }
    }

    /// A `SEND` frame to `destination` carrying this message: its SSM headers and its body
    /// (the certificate for `certresp`, the sealed bytes for `msg`, empty otherwise).
    ///
    /// A rejection reason is passed through [`sanitize_reason`] and left out when nothing
    /// printable remains. Other values are written as given: they come from this program (ids,
    /// MD5s) or from a broker header that was checked by [`SsmMessage::from_frame`].
    pub fn to_frame(&self, destination: &str) -> Frame {
        let frame = Frame::new(Command::Send)
            .with_header(headers::DESTINATION, destination)
            .with_header(headers::MSG_TYPE, self.kind());
        match self {
            SsmMessage::CertReq { reply_to, reack } => {
                let frame = frame
                    .with_header(headers::MSG_ID, NOID)
                    .with_header(headers::REPLY_TO, reply_to.as_str());
                with_reack(frame, reack)
            }
            SsmMessage::CertResp { cert_pem } => frame.with_body(cert_pem.clone().into_bytes()),
            SsmMessage::Msg {
                id,
                reply_to,
                reack,
                body,
            } => {
                let mut frame = frame.with_header(headers::MSG_ID, id.as_str());
                if let Some(reply_to) = reply_to {
                    frame = frame.with_header(headers::REPLY_TO, reply_to.as_str());
                }
                with_reack(frame, reack).with_body(body.clone())
            }
            SsmMessage::Ack { outcome, ack_for } => {
                let mut frame = match outcome {
                    AckOutcome::Stored(md5) => frame.with_header(headers::MSG_ID, md5.as_str()),
                    AckOutcome::Rejected { reason } => {
                        let frame = frame.with_header(headers::MSG_ID, REJECTED);
                        match reason.as_deref().map(sanitize_reason) {
                            Some(reason) if !reason.is_empty() => {
                                frame.with_header(headers::REASON, reason)
                            }
                            _ => frame,
                        }
                    }
                };
                if let Some(ack_for) = ack_for {
                    frame = frame.with_header(headers::ACK_FOR, ack_for.as_str());
                }
                frame
            }
            SsmMessage::Ping { reack } => {
                with_reack(frame.with_header(headers::MSG_ID, PING_ID), reack)
            }
        }
    }

    /// Reads an SSM message from a `MESSAGE` frame (or a `SEND` frame, as a broker receives it).
    ///
    /// See the module documentation for what is accepted and what is an error.
    pub fn from_frame(frame: &Frame) -> Result<SsmMessage, ProtocolError> {
        if !matches!(frame.command, Command::Message | Command::Send) {
            return Err(ProtocolError::WrongCommand(frame.command.to_string()));
        }
        let kind = match frame.header(headers::MSG_TYPE) {
            None => return Err(ProtocolError::MissingType),
            Some(kind) => kind,
        };
        match kind {
            "certreq" => {
                let reply_to = required(frame, headers::REPLY_TO)?;
                Ok(SsmMessage::CertReq {
                    reply_to,
                    reack: reack(frame)?,
                })
            }
            "certresp" => {
                let cert_pem =
                    String::from_utf8(frame.body.to_vec()).map_err(|_| ProtocolError::BadBody {
                        kind: "certresp",
                        reason: "the certificate is not UTF-8 text".to_string(),
                    })?;
                Ok(SsmMessage::CertResp { cert_pem })
            }
            "msg" => Ok(SsmMessage::Msg {
                id: required(frame, headers::MSG_ID)?,
                reply_to: optional(frame, headers::REPLY_TO)?,
                reack: reack(frame)?,
                body: frame.body.clone(),
            }),
            "ack" => {
                let id = required(frame, headers::MSG_ID)?;
                let outcome = if id == REJECTED {
                    let reason = frame
                        .header(headers::REASON)
                        .map(sanitize_reason)
                        .filter(|r| !r.is_empty());
                    AckOutcome::Rejected { reason }
                } else if is_md5_hex(&id) {
                    AckOutcome::Stored(id)
                } else {
                    return Err(ProtocolError::BadHeader {
                        name: headers::MSG_ID,
                        reason: format!(
                            "'{}' is neither an MD5 (32 lowercase hex digits) nor {REJECTED}",
                            quote(&id)
                        ),
                    });
                };
                // Informational only: a bad value must not cost the sender its ack.
                let ack_for = optional(frame, headers::ACK_FOR).ok().flatten();
                Ok(SsmMessage::Ack { outcome, ack_for })
            }
            "ping" => Ok(SsmMessage::Ping {
                reack: reack(frame)?,
            }),
            other => Err(ProtocolError::UnknownType(quote(other))),
        }
    }
}

/// The `ssm-msg-id` a frame names, when it is one an answer can name (present, non-empty,
/// plain printable ASCII), whatever else is wrong with the frame.
///
/// The receiver answers a frame it cannot accept only when this is `Some`: an answer that names
/// no message tells a genuine sender nothing, and lets anyone have `REJECTED`s sent to any
/// reply queue.
pub fn named_id(frame: &Frame) -> Option<String> {
    optional(frame, headers::MSG_ID).ok().flatten()
}

/// Adds `ssm-reack` when there is one.
fn with_reack(frame: Frame, reack: &Option<String>) -> Frame {
    match reack {
        Some(md5) => frame.with_header(headers::REACK, md5.as_str()),
        None => frame,
    }
}

/// Whether `s` is an MD5 digest as the protocol writes it: exactly 32 lowercase hex digits.
pub fn is_md5_hex(s: &str) -> bool {
    s.len() == 32 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Makes a rejection reason safe to put in a header and a log line: whitespace (tabs, line
/// breaks) becomes a single space, every other character outside printable ASCII becomes `?`,
/// leading and trailing spaces go, and the result is cut to [`MAX_REASON_LEN`] characters.
pub fn sanitize_reason(s: &str) -> String {
    let mut out = String::with_capacity(s.len().min(MAX_REASON_LEN));
    let mut pending_space = false;
    for c in s.chars() {
        if c.is_whitespace() {
            pending_space = !out.is_empty();
            continue;
        }
        let c = if c.is_ascii_graphic() { c } else { '?' };
        if pending_space {
            if out.len() + 2 > MAX_REASON_LEN {
                break;
            }
            out.push(' ');
            pending_space = false;
        }
        if out.len() + 1 > MAX_REASON_LEN {
            break;
        }
        out.push(c);
    }
    out
}

/// Whether a header value is plain printable ASCII (space included, no control characters).
fn check_value(name: &'static str, value: &str) -> Result<(), ProtocolError> {
    match value.chars().find(|c| !(c.is_ascii_graphic() || *c == ' ')) {
        None => Ok(()),
        Some(c) => Err(ProtocolError::BadHeader {
            name,
            reason: format!("character {:?} is not plain printable ASCII", c),
        }),
    }
}

/// A header that must be present, non-empty and plain ASCII.
fn required(frame: &Frame, name: &'static str) -> Result<String, ProtocolError> {
    optional(frame, name)?.ok_or(ProtocolError::MissingHeader(name))
}

/// A header that may be absent; when present it must be non-empty and plain ASCII.
fn optional(frame: &Frame, name: &'static str) -> Result<Option<String>, ProtocolError> {
    match frame.header(name) {
        None => Ok(None),
        Some("") => Err(ProtocolError::BadHeader {
            name,
            reason: "empty value".to_string(),
        }),
        Some(value) => {
            check_value(name, value)?;
            Ok(Some(value.to_string()))
        }
    }
}

/// The reack of a frame: `ssm-reack` if present, else `ssm-react`; a value that is not an MD5 is
/// dropped, one with control or non-ASCII characters is an error like any protocol header.
fn reack(frame: &Frame) -> Result<Option<String>, ProtocolError> {
    let (name, value) = match frame.header(headers::REACK) {
        Some(v) => (headers::REACK, v),
        None => match frame.header(headers::REACK_ALT) {
            Some(v) => (headers::REACK_ALT, v),
            None => return Ok(None),
        },
    };
    check_value(name, value)?;
    Ok(is_md5_hex(value).then(|| value.to_string()))
}

/// A shortened, sanitised excerpt of a bad value, for error messages.
fn quote(s: &str) -> String {
    let mut out: String = s
        .chars()
        .take(MAX_QUOTED)
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .collect();
    if s.chars().count() > MAX_QUOTED {
        out.push_str("...");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const MD5_A: &str = "0123456789abcdef0123456789abcdef";
    const MD5_B: &str = "fedcba9876543210fedcba9876543210";
    const TOPIC: &str = "/topic/global.accounting.test";

    fn round_trip(m: SsmMessage) {
        let frame = m.to_frame(TOPIC);
        assert_eq!(frame.command, Command::Send);
        assert_eq!(frame.header(headers::DESTINATION), Some(TOPIC));
        assert_eq!(frame.header(headers::MSG_TYPE), Some(m.kind()));
        assert_eq!(SsmMessage::from_frame(&frame), Ok(m.clone()));
        // The broker delivers it as a MESSAGE, with headers of its own.
        let mut delivered = frame.clone();
        delivered.command = Command::Message;
        delivered
            .headers
            .push(("message-id".into(), "ID:x-1".into()));
        delivered.headers.push(("subscription".into(), "0".into()));
        assert_eq!(SsmMessage::from_frame(&delivered), Ok(m));
    }

    fn message(headers: &[(&str, &str)]) -> Frame {
        headers
            .iter()
            .fold(Frame::new(Command::Message), |f, (k, v)| {
                f.with_header(*k, *v)
            })
    }

    #[test]
    fn every_type_round_trips() {
        round_trip(SsmMessage::CertReq {
            reply_to: "/temp-queue/ssm.1".into(),
            reack: None,
        });
        round_trip(SsmMessage::CertReq {
            reply_to: "/reply-queue/amq.gen-abc".into(),
            reack: Some(MD5_A.into()),
        });
        round_trip(SsmMessage::CertResp {
            cert_pem: "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n".into(),
        });
        round_trip(SsmMessage::Msg {
            id: "6b069670/6b069679736414".into(),
            reply_to: Some("/temp-queue/ssm.1".into()),
            reack: Some(MD5_B.into()),
            body: Bytes::from_static(b"MIME-Version: 1.0\r\n\0binary\xff"),
        });
        round_trip(SsmMessage::Msg {
            id: "x".into(),
            reply_to: None,
            reack: None,
            body: Bytes::new(),
        });
        round_trip(SsmMessage::Ack {
            outcome: AckOutcome::Stored(MD5_A.into()),
            ack_for: Some("6b069670/6b069679736414".into()),
        });
        round_trip(SsmMessage::Ack {
            outcome: AckOutcome::Stored(MD5_A.into()),
            ack_for: None,
        });
        round_trip(SsmMessage::Ack {
            outcome: AckOutcome::Rejected {
                reason: Some("signer not trusted: /C=UK/CN=x".into()),
            },
            ack_for: Some("id-1".into()),
        });
        round_trip(SsmMessage::Ack {
            outcome: AckOutcome::Rejected { reason: None },
            ack_for: None,
        });
        round_trip(SsmMessage::Ping { reack: None });
        round_trip(SsmMessage::Ping {
            reack: Some(MD5_B.into()),
        });
    }

    #[test]
    fn frames_carry_the_protocol_ids() {
        let f = SsmMessage::CertReq {
            reply_to: "/temp-queue/q".into(),
            reack: Some(MD5_A.into()),
        }
        .to_frame(TOPIC);
        assert_eq!(f.header(headers::MSG_ID), Some(NOID));
        assert_eq!(f.header(headers::REPLY_TO), Some("/temp-queue/q"));
        assert_eq!(f.header(headers::REACK), Some(MD5_A));
        assert_eq!(f.header(headers::REACK_ALT), None);
        assert!(f.body.is_empty());

        let f = SsmMessage::Ping { reack: None }.to_frame("/temp-queue/q");
        assert_eq!(f.header(headers::MSG_ID), Some(PING_ID));
        assert_eq!(f.header(headers::REACK), None);

        let f = SsmMessage::Ack {
            outcome: AckOutcome::Rejected { reason: None },
            ack_for: None,
        }
        .to_frame("/temp-queue/q");
        assert_eq!(f.header(headers::MSG_ID), Some(REJECTED));
        assert_eq!(f.header(headers::REASON), None);
        assert!(f.body.is_empty());

        let pem = "-----BEGIN CERTIFICATE-----\n";
        let f = SsmMessage::CertResp {
            cert_pem: pem.into(),
        }
        .to_frame("/temp-queue/q");
        assert_eq!(&f.body[..], pem.as_bytes());
        assert_eq!(f.header(headers::MSG_ID), None);
    }

    #[test]
    fn both_reack_spellings_are_accepted_and_reack_wins() {
        let base = [(headers::MSG_TYPE, "ping")];
        let only_alt = message(&[base[0], (headers::REACK_ALT, MD5_A)]);
        assert_eq!(
            SsmMessage::from_frame(&only_alt),
            Ok(SsmMessage::Ping {
                reack: Some(MD5_A.into())
            })
        );
        let both = message(&[
            base[0],
            (headers::REACK_ALT, MD5_A),
            (headers::REACK, MD5_B),
        ]);
        assert_eq!(
            SsmMessage::from_frame(&both),
            Ok(SsmMessage::Ping {
                reack: Some(MD5_B.into())
            })
        );
        let msg = message(&[
            (headers::MSG_TYPE, "msg"),
            (headers::MSG_ID, "m1"),
            (headers::REACK_ALT, MD5_B),
        ]);
        match SsmMessage::from_frame(&msg) {
            Ok(SsmMessage::Msg { reack, .. }) => assert_eq!(reack.as_deref(), Some(MD5_B)),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn a_reack_that_is_not_an_md5_is_ignored() {
        for junk in [
            "",
            "abc",
            "0123456789ABCDEF0123456789ABCDEF",
            "0123456789abcdef0123456789abcdeg",
            "0123456789abcdef0123456789abcdef0",
            " 0123456789abcdef0123456789abcdef",
        ] {
            let f = message(&[(headers::MSG_TYPE, "ping"), (headers::REACK, junk)]);
            assert_eq!(
                SsmMessage::from_frame(&f),
                Ok(SsmMessage::Ping { reack: None }),
                "{junk:?}"
            );
        }
    }

    #[test]
    fn type_errors() {
        assert_eq!(
            SsmMessage::from_frame(&message(&[(headers::MSG_ID, "x")])),
            Err(ProtocolError::MissingType)
        );
        assert_eq!(
            SsmMessage::from_frame(&message(&[(headers::MSG_TYPE, "MSG")])),
            Err(ProtocolError::UnknownType("MSG".into()))
        );
        let long = "y".repeat(1000);
        match SsmMessage::from_frame(&message(&[(headers::MSG_TYPE, &long)])) {
            Err(ProtocolError::UnknownType(t)) => assert!(t.len() < 80, "{t}"),
            other => panic!("unexpected {other:?}"),
        }
        match SsmMessage::from_frame(&message(&[(headers::MSG_TYPE, "a\u{1b}[31m")])) {
            Err(ProtocolError::UnknownType(t)) => assert_eq!(t, "a?[31m"),
            other => panic!("unexpected {other:?}"),
        }
        let receipt = Frame::new(Command::Receipt).with_header(headers::MSG_TYPE, "ping");
        assert_eq!(
            SsmMessage::from_frame(&receipt),
            Err(ProtocolError::WrongCommand("RECEIPT".into()))
        );
    }

    #[test]
    fn required_headers() {
        assert_eq!(
            SsmMessage::from_frame(&message(&[(headers::MSG_TYPE, "msg")])),
            Err(ProtocolError::MissingHeader(headers::MSG_ID))
        );
        assert_eq!(
            SsmMessage::from_frame(&message(&[(headers::MSG_TYPE, "certreq")])),
            Err(ProtocolError::MissingHeader(headers::REPLY_TO))
        );
        assert_eq!(
            SsmMessage::from_frame(&message(&[(headers::MSG_TYPE, "ack")])),
            Err(ProtocolError::MissingHeader(headers::MSG_ID))
        );
        assert!(matches!(
            SsmMessage::from_frame(&message(&[
                (headers::MSG_TYPE, "msg"),
                (headers::MSG_ID, "")
            ])),
            Err(ProtocolError::BadHeader {
                name: headers::MSG_ID,
                ..
            })
        ));
    }

    #[test]
    fn ack_ids_must_be_md5_or_rejected() {
        for bad in [
            "rejected",
            "0123456789ABCDEF0123456789ABCDEF",
            "noid",
            "abc",
        ] {
            let f = message(&[(headers::MSG_TYPE, "ack"), (headers::MSG_ID, bad)]);
            match SsmMessage::from_frame(&f) {
                Err(
                    e @ ProtocolError::BadHeader {
                        name: headers::MSG_ID,
                        ..
                    },
                ) => {
                    assert!(e.to_string().contains(bad), "{e}")
                }
                other => panic!("{bad}: unexpected {other:?}"),
            }
        }
    }

    #[test]
    fn control_and_non_ascii_characters_in_headers_are_errors() {
        for bad in ["a\nb", "a\rb", "a\0b", "a\tb", "caf\u{e9}", "x\u{7f}"] {
            for (kind, name) in [
                ("msg", headers::MSG_ID),
                ("msg", headers::REPLY_TO),
                ("certreq", headers::REPLY_TO),
                ("ping", headers::REACK),
                ("ping", headers::REACK_ALT),
            ] {
                let mut f = message(&[
                    (headers::MSG_TYPE, kind),
                    (headers::MSG_ID, "id"),
                    (headers::REPLY_TO, "/temp-queue/q"),
                ]);
                f.set_header(name, bad);
                match SsmMessage::from_frame(&f) {
                    Err(ProtocolError::BadHeader { name: n, .. }) => assert_eq!(n, name),
                    other => panic!("{kind} {name}={bad:?}: unexpected {other:?}"),
                }
            }
        }
    }

    #[test]
    fn junk_and_unknown_headers_are_ignored() {
        let f = message(&[
            ("x-junk", "\u{0}\u{1}binary\u{ff}"),
            (headers::MSG_TYPE, "msg"),
            (headers::MSG_ID, "m1"),
            ("receipt", "r-7"),
            (headers::MSG_TYPE, "ack"),
            (headers::MSG_ID, "second id loses"),
        ])
        .with_body(&b"payload"[..]);
        assert_eq!(
            SsmMessage::from_frame(&f),
            Ok(SsmMessage::Msg {
                id: "m1".into(),
                reply_to: None,
                reack: None,
                body: Bytes::from_static(b"payload"),
            })
        );
    }

    #[test]
    fn informational_ack_headers_never_cost_the_ack() {
        let f = message(&[
            (headers::MSG_TYPE, "ack"),
            (headers::MSG_ID, MD5_A),
            (headers::ACK_FOR, "bad\nid"),
        ]);
        assert_eq!(
            SsmMessage::from_frame(&f),
            Ok(SsmMessage::Ack {
                outcome: AckOutcome::Stored(MD5_A.into()),
                ack_for: None
            })
        );
        let f = message(&[
            (headers::MSG_TYPE, "ack"),
            (headers::MSG_ID, REJECTED),
            (headers::REASON, "bad\r\nsignature\u{0}\u{e9}"),
        ]);
        assert_eq!(
            SsmMessage::from_frame(&f),
            Ok(SsmMessage::Ack {
                outcome: AckOutcome::Rejected {
                    reason: Some("bad signature??".into())
                },
                ack_for: None
            })
        );
        let f = message(&[
            (headers::MSG_TYPE, "ack"),
            (headers::MSG_ID, REJECTED),
            (headers::REASON, " \t "),
        ]);
        assert_eq!(
            SsmMessage::from_frame(&f),
            Ok(SsmMessage::Ack {
                outcome: AckOutcome::Rejected { reason: None },
                ack_for: None
            })
        );
    }

    #[test]
    fn rejection_reasons_are_sanitised_on_the_way_out() {
        let reason = format!("line one\nline two\t\u{1b}[1m{}", "z".repeat(500));
        let f = SsmMessage::Ack {
            outcome: AckOutcome::Rejected {
                reason: Some(reason),
            },
            ack_for: None,
        }
        .to_frame("/temp-queue/q");
        let sent = f.header(headers::REASON).unwrap_or_default();
        assert!(sent.starts_with("line one line two ?[1mzzz"), "{sent}");
        assert_eq!(sent.len(), MAX_REASON_LEN);
        assert!(sent.bytes().all(|b| (0x20..0x7f).contains(&b)));

        let f = SsmMessage::Ack {
            outcome: AckOutcome::Rejected {
                reason: Some("\n\n".into()),
            },
            ack_for: None,
        }
        .to_frame("/temp-queue/q");
        assert_eq!(f.header(headers::REASON), None);
    }

    #[test]
    fn sanitize_reason_rules() {
        assert_eq!(sanitize_reason("plain"), "plain");
        assert_eq!(sanitize_reason("  a \r\n\t b  "), "a b");
        assert_eq!(sanitize_reason("\u{0}x\u{7f}y\u{2603}"), "?x?y?");
        assert_eq!(sanitize_reason(""), "");
        let long = sanitize_reason(&"ab ".repeat(300));
        assert!(long.len() <= MAX_REASON_LEN);
        assert!(long.len() >= MAX_REASON_LEN - 1);
        assert!(!long.ends_with(' '));
        // Sanitising is idempotent, so a received reason survives a resend unchanged.
        assert_eq!(sanitize_reason(&long), long);
        let multibyte = sanitize_reason(&"\u{e9}".repeat(400));
        assert_eq!(multibyte, "?".repeat(MAX_REASON_LEN));
    }

    #[test]
    fn md5_hex() {
        assert!(is_md5_hex(MD5_A));
        assert!(is_md5_hex(&"0".repeat(32)));
        assert!(!is_md5_hex(&"0".repeat(31)));
        assert!(!is_md5_hex(&"0".repeat(33)));
        assert!(!is_md5_hex("0123456789abcdef0123456789abcdeF"));
        assert!(!is_md5_hex("\u{e9}123456789abcdef0123456789abcd"));
    }

    #[test]
    fn certresp_body_must_be_text() {
        let f = message(&[(headers::MSG_TYPE, "certresp")]).with_body(&b"\xff\xfe"[..]);
        assert!(matches!(
            SsmMessage::from_frame(&f),
            Err(ProtocolError::BadBody {
                kind: "certresp",
                ..
            })
        ));
    }

    #[test]
    fn errors_read_as_one_line() {
        let e = ProtocolError::BadHeader {
            name: headers::REPLY_TO,
            reason: "empty value".into(),
        };
        assert_eq!(e.to_string(), "bad reply-to header: empty value");
        assert_eq!(
            ProtocolError::MissingHeader(headers::MSG_ID).to_string(),
            "ssm-msg-id header missing"
        );
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        fn printable() -> impl Strategy<Value = String> {
            "[ -~]{1,80}"
        }

        fn md5() -> impl Strategy<Value = String> {
            "[0-9a-f]{32}"
        }

        fn any_message() -> impl Strategy<Value = SsmMessage> {
            prop_oneof![
                (printable(), proptest::option::of(md5()))
                    .prop_map(|(reply_to, reack)| SsmMessage::CertReq { reply_to, reack }),
                "[ -~\n]{0,200}".prop_map(|cert_pem| SsmMessage::CertResp { cert_pem }),
                (
                    printable(),
                    proptest::option::of(printable()),
                    proptest::option::of(md5()),
                    proptest::collection::vec(any::<u8>(), 0..256)
                )
                    .prop_map(|(id, reply_to, reack, body)| SsmMessage::Msg {
                        id,
                        reply_to,
                        reack,
                        body: Bytes::from(body),
                    }),
                (md5(), proptest::option::of(printable())).prop_map(|(m, ack_for)| {
                    SsmMessage::Ack {
                        outcome: AckOutcome::Stored(m),
                        ack_for,
                    }
                }),
                (
                    proptest::option::of(".{0,300}"),
                    proptest::option::of(printable())
                )
                    .prop_map(|(reason, ack_for)| SsmMessage::Ack {
                        outcome: AckOutcome::Rejected {
                            reason: reason
                                .map(|r| sanitize_reason(&r))
                                .filter(|r| !r.is_empty()),
                        },
                        ack_for,
                    }),
                proptest::option::of(md5()).prop_map(|reack| SsmMessage::Ping { reack }),
            ]
        }

        proptest! {
            #[test]
            fn round_trip(m in any_message()) {
                prop_assert_eq!(SsmMessage::from_frame(&m.to_frame(TOPIC)), Ok(m));
            }

            #[test]
            fn hostile_frames_never_panic(
                headers in proptest::collection::vec(
                    (
                        prop_oneof![
                            Just(headers::MSG_TYPE.to_string()),
                            Just(headers::MSG_ID.to_string()),
                            Just(headers::REPLY_TO.to_string()),
                            Just(headers::REACK.to_string()),
                            Just(headers::REACK_ALT.to_string()),
                            Just(headers::REASON.to_string()),
                            Just(headers::ACK_FOR.to_string()),
                            ".{0,10}",
                        ],
                        prop_oneof![
                            Just("certreq".to_string()),
                            Just("certresp".to_string()),
                            Just("msg".to_string()),
                            Just("ack".to_string()),
                            Just("ping".to_string()),
                            Just(REJECTED.to_string()),
                            md5(),
                            ".{0,40}",
                        ],
                    ),
                    0..8,
                ),
                body in proptest::collection::vec(any::<u8>(), 0..64),
            ) {
                let mut frame = Frame::new(Command::Message).with_body(body);
                frame.headers = headers;
                if let Ok(m) = SsmMessage::from_frame(&frame) {
                    // Whatever was accepted is clean enough to send on.
                    prop_assert_eq!(SsmMessage::from_frame(&m.to_frame(TOPIC)), Ok(m));
                }
            }
        }
    }
}
