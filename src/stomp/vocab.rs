//! The STOMP vocabulary both ends of a connection share: header names, ack modes, and the
//! negotiation of heart-beats and of the protocol version. The client ([`super::client`]) and
//! the embedded broker (`crate::broker`) both speak it from here, so the two cannot drift apart
//! on a spelling or on a negotiation rule.
//!
//! Guarantees: every rule here is the STOMP 1.2 specification's (heart-beats: zero on either
//! side means none, otherwise the larger of the two periods; version: the highest both speak,
//! an absent header meaning 1.0); parsing is strict and leaves leniency to the caller.

use std::time::Duration;

use super::frame::Version;

/// Header names, as they appear on the wire.
pub mod header {
    /// The versions a client accepts (CONNECT).
    pub const ACCEPT_VERSION: &str = "accept-version";
    /// The ack mode of a subscription (SUBSCRIBE), or the ack id of a message (MESSAGE, 1.2).
    pub const ACK: &str = "ack";
    /// The byte length of the body.
    pub const CONTENT_LENGTH: &str = "content-length";
    /// The MIME type of the body.
    pub const CONTENT_TYPE: &str = "content-type";
    /// Where a frame goes or came from.
    pub const DESTINATION: &str = "destination";
    /// Heart-beat periods in milliseconds, `send,want` (CONNECT, CONNECTED).
    pub const HEART_BEAT: &str = "heart-beat";
    /// The virtual host (CONNECT).
    pub const HOST: &str = "host";
    /// A subscription's id (SUBSCRIBE, UNSUBSCRIBE), or the ack id (ACK, NACK, 1.2).
    pub const ID: &str = "id";
    /// The user name (CONNECT).
    pub const LOGIN: &str = "login";
    /// A short error text (ERROR).
    pub const MESSAGE: &str = "message";
    /// The broker's id of a message (MESSAGE; ACK and NACK before 1.2).
    pub const MESSAGE_ID: &str = "message-id";
    /// The password (CONNECT).
    pub const PASSCODE: &str = "passcode";
    /// A request for a RECEIPT naming this id.
    pub const RECEIPT: &str = "receipt";
    /// The id a RECEIPT (or an ERROR caused by a frame with a receipt) answers.
    pub const RECEIPT_ID: &str = "receipt-id";
    /// Set by a broker on a message delivered before (a broker-specific header).
    pub const REDELIVERED: &str = "redelivered";
    /// Where replies to a message should go (a broker convention, not in the specification).
    pub const REPLY_TO: &str = "reply-to";
    /// The broker's name and version (CONNECTED).
    pub const SERVER: &str = "server";
    /// The broker's id of the session (CONNECTED).
    pub const SESSION: &str = "session";
    /// The subscription a MESSAGE is delivered for (MESSAGE; ACK and NACK in 1.1).
    pub const SUBSCRIPTION: &str = "subscription";
    /// The transaction a frame belongs to.
    pub const TRANSACTION: &str = "transaction";
    /// The version chosen (CONNECTED), or the versions supported (ERROR refusing a version).
    pub const VERSION: &str = "version";
}

/// The versions this crate speaks, as an `accept-version` (or refusal `version`) value.
pub const SUPPORTED_VERSIONS: &str = "1.0,1.1,1.2";

/// Picks the highest version both sides speak from an `accept-version` value (absent means
/// 1.0, the only version without the header). `None`: no version in common.
pub fn negotiate_version(accept: Option<&str>) -> Option<Version> {
    match accept {
        None => Some(Version::V1_0),
        Some(list) => list.split(',').filter_map(Version::parse).max(),
    }
}

/// How messages of a subscription are acknowledged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AckMode {
    /// The broker considers a message acknowledged once sent.
    Auto,
    /// An ACK acknowledges the message and every earlier one of the subscription.
    Client,
    /// An ACK acknowledges that message only (STOMP 1.1+; sent as `client` to a 1.0 broker).
    ClientIndividual,
}

impl AckMode {
    /// The `ack` header value for this mode under `version`.
    pub fn header_value(self, version: Version) -> &'static str {
        match self {
            AckMode::Auto => "auto",
            AckMode::Client => "client",
            AckMode::ClientIndividual if version == Version::V1_0 => "client",
            AckMode::ClientIndividual => "client-individual",
        }
    }

    /// Parses the `ack` header of a SUBSCRIBE (exact spelling, as the specification has it).
    pub fn parse(s: &str) -> Option<AckMode> {
        match s {
            "auto" => Some(AckMode::Auto),
            "client" => Some(AckMode::Client),
            "client-individual" => Some(AckMode::ClientIndividual),
            _ => None,
        }
    }
}

/// Parses a `heart-beat` value `x,y` (milliseconds, spaces allowed around each number).
/// `None` if it is not two numbers.
pub fn parse_heart_beat(value: &str) -> Option<(Duration, Duration)> {
    let parse = |s: &str| s.trim().parse::<u64>().map(Duration::from_millis).ok();
    let (a, b) = value.split_once(',')?;
    Some((parse(a)?, parse(b)?))
}

/// The `heart-beat` value for `(can send every, want to receive every)`, in milliseconds
/// (capped at `u32::MAX`, which brokers parse as an int).
pub fn heart_beat_value(periods: (Duration, Duration)) -> String {
    let ms = |d: Duration| d.as_millis().min(u128::from(u32::MAX));
    format!("{},{}", ms(periods.0), ms(periods.1))
}

/// The heart-beat periods a connection settled on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeartBeats {
    /// How often this side writes something (`None`: never required).
    pub send: Option<Duration>,
    /// How often the peer must write something (`None`: never required).
    pub expect: Option<Duration>,
}

/// Negotiates heart-beats from this side's `(can send every, want every)` and the peer's:
/// each direction is off when either side says zero, otherwise the larger period.
pub fn negotiate_heart_beats(
    ours: (Duration, Duration),
    theirs: (Duration, Duration),
) -> HeartBeats {
    let pick = |ours: Duration, theirs: Duration| {
        (!ours.is_zero() && !theirs.is_zero()).then(|| ours.max(theirs))
    };
    HeartBeats {
        send: pick(ours.0, theirs.1),
        expect: pick(ours.1, theirs.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heart_beats_negotiate_both_ways() {
        let ms = Duration::from_millis;
        assert_eq!(parse_heart_beat("100, 200"), Some((ms(100), ms(200))));
        assert_eq!(parse_heart_beat("x,1"), None);
        assert_eq!(parse_heart_beat("100"), None);
        assert_eq!(heart_beat_value((ms(10_000), ms(0))), "10000,0");
        let hb = negotiate_heart_beats((ms(100), ms(100)), (ms(0), ms(500)));
        assert_eq!(hb.send, Some(ms(500)));
        assert_eq!(hb.expect, None);
    }

    #[test]
    fn versions_and_ack_modes() {
        assert_eq!(negotiate_version(None), Some(Version::V1_0));
        assert_eq!(
            negotiate_version(Some(SUPPORTED_VERSIONS)),
            Some(Version::V1_2)
        );
        assert_eq!(negotiate_version(Some("2.0")), None);
        for mode in [AckMode::Auto, AckMode::Client, AckMode::ClientIndividual] {
            assert_eq!(AckMode::parse(mode.header_value(Version::V1_2)), Some(mode));
        }
        assert_eq!(
            AckMode::ClientIndividual.header_value(Version::V1_0),
            "client"
        );
    }
}
