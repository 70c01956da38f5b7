//! The JSON of the ARGO Messaging Service (AMS) API v1: one set of types for the client
//! ([`super::client`]) and for `ssm ams-server` ([`crate::ams_server`]), so that both sides
//! speak exactly one codec.
//!
//! Guarantees:
//! - Every request and answer the SSM needs has a type here: publish, pull, acknowledge,
//!   modifyAckDeadline, offsets, a subscription's and a topic's description, the `authx509`
//!   token answer and the error object, with the
//!   field names and the optional fields of the real service (ARGOeu/argo-messaging,
//!   `messages/message.go`, `subscriptions/subscription.go`, `handlers/errors.go`).
//! - The pull parameters are JSON **strings** (`"maxMessages":"10"`): a number there is refused
//!   when parsing, as the real server refuses it with `400 Invalid Pull Parameters Arguments`.
//! - [`to_pretty`] writes JSON as the Go server's `json.MarshalIndent(v, "", "   ")` does (three
//!   spaces, `": "`), and [`to_pretty_authn`] as the authentication service's one-space indent,
//!   so the bytes match the handler tests' expected answers. Go additionally writes `<`, `>` and
//!   `&` as `\u003c`…; serde does not, which no JSON reader can tell apart.
//! - Attributes are a sorted map, as the Go server sorts them on output.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The attributes of a message: string keys to string values, sorted by key.
pub type Attributes = BTreeMap<String, String>;

/// The attribute the SSM puts on every message: its message id (empaid = "EMPA id").
pub const EMPAID: &str = "empaid";

/// A message as published, and as held inside a pulled [`ReceivedMessage`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// The message's offset in its topic, as a decimal string (only on pulled messages).
    #[serde(
        rename = "messageId",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub message_id: String,
    /// Key/value attributes (left out of the JSON when empty, as the server does).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attributes: Attributes,
    /// The body, base64 (standard alphabet, padded).
    #[serde(default)]
    pub data: String,
    /// When the server took it, RFC 3339 UTC with nanoseconds (only on pulled messages).
    #[serde(
        rename = "publishTime",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub publish_time: String,
}

/// `POST /v1/projects/{p}/topics/{t}:publish` body.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishRequest {
    /// The messages, published in order.
    #[serde(default)]
    pub messages: Vec<Message>,
}

/// The answer to a publish: one id (the offset) per message, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishAnswer {
    /// The ids, decimal offsets.
    #[serde(rename = "messageIds", default)]
    pub message_ids: Vec<String>,
}

/// `POST /v1/projects/{p}/subscriptions/{s}:pull` body. Both values are JSON strings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PullRequest {
    /// The most messages to return, as a decimal string (the server's default: `"1"`).
    #[serde(
        rename = "maxMessages",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub max_messages: Option<String>,
    /// `"true"` or `"false"` (the default, anything but `"false"` counts as true on the server).
    #[serde(
        rename = "returnImmediately",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub return_immediately: Option<String>,
}

impl PullRequest {
    /// A request for up to `max` messages.
    pub fn new(max: u32, return_immediately: bool) -> PullRequest {
        PullRequest {
            max_messages: Some(max.to_string()),
            return_immediately: Some(return_immediately.to_string()),
        }
    }
}

/// One pulled message and the id to acknowledge it with.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceivedMessage {
    /// `projects/{p}/subscriptions/{s}:{offset}`.
    #[serde(rename = "ackId", default)]
    pub ack_id: String,
    /// The message.
    pub message: Message,
}

/// The answer to a pull (`receivedMessages` is `[]`, never absent, when nothing is waiting).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PullAnswer {
    /// The messages, in offset order.
    #[serde(rename = "receivedMessages", default)]
    pub received_messages: Vec<ReceivedMessage>,
}

/// `POST …/subscriptions/{s}:acknowledge` body. The server keeps only the highest offset:
/// acks are cumulative.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AckRequest {
    /// Ack ids from pulled messages. `None` is a body without the field (refused: `400`).
    #[serde(rename = "ackIds", alias = "AckIds", default)]
    pub ack_ids: Option<Vec<String>>,
}

/// `POST …/subscriptions/{s}:modifyAckDeadline` body (0–600 seconds; it changes the
/// subscription's deadline for every later pull).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModifyAckDeadlineRequest {
    /// The new deadline in seconds.
    #[serde(rename = "ackDeadlineSeconds", default)]
    pub ack_deadline_seconds: i64,
}

/// `GET …/subscriptions/{s}:offsets` answer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Offsets {
    /// The topic's next offset (one past its newest message).
    pub max: i64,
    /// The topic's oldest offset still held.
    pub min: i64,
    /// The subscription's offset: the next message it will get.
    pub current: i64,
}

/// A subscription's push settings, as `GET …/subscriptions/{s}` shows them (empty for a pull
/// subscription, which is all the SSM uses; kept so the answer has the real server's fields).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushConfig {
    /// `""` for a pull subscription.
    #[serde(rename = "type", default)]
    pub kind: String,
    /// Where a push subscription sends.
    #[serde(rename = "pushEndpoint", default)]
    pub push_endpoint: String,
    /// Messages per push.
    #[serde(rename = "maxMessages", default)]
    pub max_messages: i64,
    /// The push's authorisation header (`{}` when none).
    #[serde(rename = "authorizationHeader", default)]
    pub authorization_header: BTreeMap<String, String>,
    /// The push's retry policy (`{}` when none).
    #[serde(rename = "retryPolicy", default)]
    pub retry_policy: BTreeMap<String, serde_json::Value>,
    /// The endpoint's verification hash.
    #[serde(rename = "verificationHash", default)]
    pub verification_hash: String,
    /// Whether the endpoint is verified.
    #[serde(default)]
    pub verified: bool,
    /// Mattermost settings of a push subscription.
    #[serde(rename = "mattermostUrl", default)]
    pub mattermost_url: String,
    /// Mattermost settings of a push subscription.
    #[serde(rename = "mattermostUsername", default)]
    pub mattermost_username: String,
    /// Mattermost settings of a push subscription.
    #[serde(rename = "mattermostChannel", default)]
    pub mattermost_channel: String,
    /// Whether pushed data is decoded first.
    #[serde(rename = "base64Decode", default)]
    pub base64_decode: bool,
}

/// `GET /v1/projects/{p}/subscriptions/{s}` answer (`handlers/subscriptions_test.go`,
/// `TestSubListOne`). The client reads only the deadline; unknown fields are ignored, missing
/// ones defaulted, so a newer server's answer still parses.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubscriptionInfo {
    /// `/projects/{p}/subscriptions/{s}`.
    #[serde(default)]
    pub name: String,
    /// `/projects/{p}/topics/{t}`.
    #[serde(default)]
    pub topic: String,
    /// Push settings (empty for pull).
    #[serde(rename = "pushConfig", default)]
    pub push_config: PushConfig,
    /// How long after a pull its acknowledgement is accepted, in seconds.
    #[serde(rename = "ackDeadlineSeconds")]
    pub ack_deadline_seconds: i64,
    /// When it was made (`2020-11-19T00:00:00Z`).
    #[serde(rename = "createdOn", default)]
    pub created_on: String,
}

/// `GET /v1/projects/{p}/topics/{t}` answer (`handlers/topics_test.go`, `TestTopicListOne`;
/// `created_on` in snake case there, as the real server writes it).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicInfo {
    /// `/projects/{p}/topics/{t}`.
    #[serde(default)]
    pub name: String,
    /// When it was made.
    #[serde(default)]
    pub created_on: String,
}

/// The answer of `GET https://{host}:8443/v1/service-types/ams/hosts/{host}:authx509`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenAnswer {
    /// The AMS token of the user bound to the client certificate's DN.
    pub token: String,
}

/// The error object of every failed call: `{"error":{"code":…,"message":…,"status":…}}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorAnswer {
    /// The error.
    pub error: ErrorBody,
}

/// The inside of an [`ErrorAnswer`], fields in the AMS order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The HTTP status, repeated.
    #[serde(default)]
    pub code: u16,
    /// What went wrong, e.g. `Topic doesn't exist`.
    #[serde(default)]
    pub message: String,
    /// A symbolic status: `NOT_FOUND`, `UNAUTHORIZED`, `TIMEOUT`…
    #[serde(default)]
    pub status: String,
}

impl ErrorAnswer {
    /// An error object.
    pub fn new(code: u16, message: impl Into<String>, status: impl Into<String>) -> ErrorAnswer {
        ErrorAnswer {
            error: ErrorBody {
                code,
                message: message.into(),
                status: status.into(),
            },
        }
    }
}

/// The error object of the authentication service (argo-api-authn): the same fields in
/// another order (`message`, `code`, `status`), statuses with spaces (`NOT FOUND`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthnErrorAnswer {
    /// The error.
    pub error: AuthnErrorBody,
}

/// The inside of an [`AuthnErrorAnswer`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthnErrorBody {
    /// What went wrong, e.g. `Binding was not found`.
    #[serde(default)]
    pub message: String,
    /// The HTTP status, repeated.
    #[serde(default)]
    pub code: u16,
    /// A symbolic status: `NOT FOUND`, `ACCESS_FORBIDDEN`, `BAD REQUEST`…
    #[serde(default)]
    pub status: String,
}

impl AuthnErrorAnswer {
    /// An error object.
    pub fn new(code: u16, message: impl Into<String>, status: impl Into<String>) -> Self {
        AuthnErrorAnswer {
            error: AuthnErrorBody {
                message: message.into(),
                code,
                status: status.into(),
            },
        }
    }
}

fn pretty_with(value: &impl Serialize, indent: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    let fmt = serde_json::ser::PrettyFormatter::with_indent(indent);
    let mut ser = serde_json::Serializer::with_formatter(&mut out, fmt);
    // Serialising these types into memory cannot fail: every key is a string and there is no
    // custom `Serialize`; an empty object is still valid JSON should it ever happen.
    if value.serialize(&mut ser).is_err() {
        return b"{}".to_vec();
    }
    out
}

/// JSON as the AMS server writes it (`json.MarshalIndent(v, "", "   ")`).
pub fn to_pretty(value: &impl Serialize) -> Vec<u8> {
    pretty_with(value, b"   ")
}

/// JSON as the authentication service writes it (one-space indent).
pub fn to_pretty_authn(value: &impl Serialize) -> Vec<u8> {
    pretty_with(value, b" ")
}

/// The ack id of the message at `offset` pulled from `sub` of `project`.
pub fn ack_id(project: &str, sub: &str, offset: u64) -> String {
    format!("projects/{project}/subscriptions/{sub}:{offset}")
}

/// The offset in an ack id of `sub` in `project`, if it is one (the server's `ValidAckID`).
pub fn parse_ack_id(project: &str, sub: &str, id: &str) -> Option<i64> {
    let mut parts = id.split('/');
    let (Some("projects"), Some(p), Some("subscriptions"), Some(last), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return None;
    };
    if p != project {
        return None;
    }
    let (s, offset) = last.split_once(':')?;
    if s != sub || offset.contains(':') {
        return None;
    }
    offset.parse::<i64>().ok()
}

/// Whether a project, topic or subscription name is one the server accepts in a URL
/// (`^[a-zA-Z0-9_-]+$`); others get `400 Invalid … name`.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// The path of a topic call: `/v1/projects/{project}/topics/{topic}:{action}`.
pub fn topic_path(project: &str, topic: &str, action: &str) -> String {
    format!("/v1/projects/{project}/topics/{topic}:{action}")
}

/// The path of a subscription call: `/v1/projects/{project}/subscriptions/{sub}:{action}`.
pub fn subscription_path(project: &str, sub: &str, action: &str) -> String {
    format!("/v1/projects/{project}/subscriptions/{sub}:{action}")
}

/// The path of a topic itself (no action): `/v1/projects/{project}/topics/{topic}`.
pub fn topic_info_path(project: &str, topic: &str) -> String {
    format!("/v1/projects/{project}/topics/{topic}")
}

/// The path of a subscription itself (no action): `/v1/projects/{project}/subscriptions/{sub}`.
pub fn subscription_info_path(project: &str, sub: &str) -> String {
    format!("/v1/projects/{project}/subscriptions/{sub}")
}

/// The path of the certificate-for-token exchange on the authentication service.
pub fn authx509_path(host: &str) -> String {
    format!("/v1/service-types/ams/hosts/{host}:authx509")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pull_parameters_are_strings_and_numbers_are_refused() {
        let body = serde_json::to_string(&PullRequest::new(10, true)).unwrap();
        assert_eq!(body, r#"{"maxMessages":"10","returnImmediately":"true"}"#);
        assert!(serde_json::from_str::<PullRequest>(r#"{"maxMessages":1}"#).is_err());
        assert!(serde_json::from_str::<PullRequest>(r#"{"returnImmediately":true}"#).is_err());
        let empty: PullRequest = serde_json::from_str("{}").unwrap();
        assert_eq!(empty, PullRequest::default());
    }

    #[test]
    fn error_json_matches_the_handler_tests() {
        // handlers/subscriptions_test.go TestSubError
        let expected = "{\n   \"error\": {\n      \"code\": 404,\n      \"message\": \"Subscription doesn't exist\",\n      \"status\": \"NOT_FOUND\"\n   }\n}";
        let got = to_pretty(&ErrorAnswer::new(
            404,
            "Subscription doesn't exist",
            "NOT_FOUND",
        ));
        assert_eq!(String::from_utf8(got).unwrap(), expected);
        // argo-api-authn handlers/certificate_handlers_test.go
        let expected = "{\n \"error\": {\n  \"message\": \"Binding was not found\",\n  \"code\": 404,\n  \"status\": \"NOT FOUND\"\n }\n}";
        let got = to_pretty_authn(&AuthnErrorAnswer::new(
            404,
            "Binding was not found",
            "NOT FOUND",
        ));
        assert_eq!(String::from_utf8(got).unwrap(), expected);
        let expected = "{\n \"token\": \"some-value\"\n}";
        let got = to_pretty_authn(&TokenAnswer {
            token: "some-value".into(),
        });
        assert_eq!(String::from_utf8(got).unwrap(), expected);
    }

    #[test]
    fn pull_answer_matches_the_handler_tests() {
        // handlers/subscriptions_test.go TestSubPullOne
        let expected = r#"{
   "receivedMessages": [
      {
         "ackId": "projects/ARGO/subscriptions/sub1:0",
         "message": {
            "messageId": "0",
            "attributes": {
               "foo": "bar"
            },
            "data": "YmFzZTY0ZW5jb2RlZA==",
            "publishTime": "2016-02-24T11:55:09.786127994Z"
         }
      }
   ]
}"#;
        let answer = PullAnswer {
            received_messages: vec![ReceivedMessage {
                ack_id: ack_id("ARGO", "sub1", 0),
                message: Message {
                    message_id: "0".into(),
                    attributes: [("foo".to_string(), "bar".to_string())].into(),
                    data: "YmFzZTY0ZW5jb2RlZA==".into(),
                    publish_time: "2016-02-24T11:55:09.786127994Z".into(),
                },
            }],
        };
        assert_eq!(String::from_utf8(to_pretty(&answer)).unwrap(), expected);
        let parsed: PullAnswer = serde_json::from_str(expected).unwrap();
        assert_eq!(parsed, answer);
        let empty = String::from_utf8(to_pretty(&PullAnswer::default())).unwrap();
        assert_eq!(empty, "{\n   \"receivedMessages\": []\n}");
    }

    #[test]
    fn publish_and_offsets_match_the_handler_tests() {
        let expected = "{\n   \"messageIds\": [\n      \"1\",\n      \"2\",\n      \"3\"\n   ]\n}";
        let answer = PublishAnswer {
            message_ids: vec!["1".into(), "2".into(), "3".into()],
        };
        assert_eq!(String::from_utf8(to_pretty(&answer)).unwrap(), expected);
        let expected = "{\n   \"max\": 2,\n   \"min\": 1,\n   \"current\": 1\n}";
        let offsets = Offsets {
            max: 2,
            min: 1,
            current: 1,
        };
        assert_eq!(String::from_utf8(to_pretty(&offsets)).unwrap(), expected);
        // A published message without attributes leaves the field out, as the Python client.
        let req = PublishRequest {
            messages: vec![Message {
                data: "eA==".into(),
                ..Message::default()
            }],
        };
        assert_eq!(
            serde_json::to_string(&req).unwrap(),
            r#"{"messages":[{"data":"eA=="}]}"#
        );
    }

    #[test]
    fn ack_ids_parse_only_for_their_subscription() {
        assert_eq!(
            parse_ack_id("p", "s", "projects/p/subscriptions/s:12"),
            Some(12)
        );
        assert_eq!(
            parse_ack_id("p", "s", "projects/p/subscriptions/t:12"),
            None
        );
        assert_eq!(
            parse_ack_id("p", "s", "projects/q/subscriptions/s:12"),
            None
        );
        assert_eq!(parse_ack_id("p", "s", "projects/p/subscriptions/s:x"), None);
        assert_eq!(
            parse_ack_id("p", "s", "projects/p/subscriptions/s:1:2"),
            None
        );
        assert_eq!(
            parse_ack_id("p", "s", "projects/p/subscriptions/s/x:1"),
            None
        );
        assert!(valid_name("gLite-APEL") && valid_name("a_b") && !valid_name("a.b"));
        assert!(!valid_name(""));
    }

    #[test]
    fn subscription_and_topic_info_match_the_handler_tests() {
        // TestSubListOne and TestTopicListOne (handlers/*_test.go), byte for byte.
        let expected = r#"{
   "name": "/projects/ARGO/subscriptions/sub1",
   "topic": "/projects/ARGO/topics/topic1",
   "pushConfig": {
      "type": "",
      "pushEndpoint": "",
      "maxMessages": 0,
      "authorizationHeader": {},
      "retryPolicy": {},
      "verificationHash": "",
      "verified": false,
      "mattermostUrl": "",
      "mattermostUsername": "",
      "mattermostChannel": "",
      "base64Decode": false
   },
   "ackDeadlineSeconds": 10,
   "createdOn": "2020-11-19T00:00:00Z"
}"#;
        let info = SubscriptionInfo {
            name: "/projects/ARGO/subscriptions/sub1".into(),
            topic: "/projects/ARGO/topics/topic1".into(),
            push_config: PushConfig::default(),
            ack_deadline_seconds: 10,
            created_on: "2020-11-19T00:00:00Z".into(),
        };
        assert_eq!(String::from_utf8(to_pretty(&info)).unwrap(), expected);
        assert_eq!(
            serde_json::from_str::<SubscriptionInfo>(expected).unwrap(),
            info
        );
        // A push subscription's settings (TestSubListAll's sub4) still parse.
        let push = r#"{"name":"n","topic":"t","pushConfig":{"type":"http_endpoint","maxMessages":1,
            "authorizationHeader":{"type":"autogen","value":"h"},"retryPolicy":{"type":"linear","period":300}},
            "ackDeadlineSeconds":33,"extra":1}"#;
        assert_eq!(
            serde_json::from_str::<SubscriptionInfo>(push)
                .unwrap()
                .ack_deadline_seconds,
            33
        );
        // Without the deadline the answer is not one to trust.
        assert!(serde_json::from_str::<SubscriptionInfo>(r#"{"name":"n"}"#).is_err());
        let expected = "{\n   \"name\": \"/projects/ARGO/topics/topic1\",\n   \"created_on\": \"2020-11-22T00:00:00Z\"\n}";
        let topic = TopicInfo {
            name: "/projects/ARGO/topics/topic1".into(),
            created_on: "2020-11-22T00:00:00Z".into(),
        };
        assert_eq!(String::from_utf8(to_pretty(&topic)).unwrap(), expected);
    }
}
