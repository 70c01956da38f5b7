//! The in-memory state of `ssm ams-server`: one project, its topics and subscriptions, with the
//! semantics of the real ARGO Messaging Service. No I/O and no clock of its own (the caller
//! passes `now`), so every rule is unit-tested directly.
//!
//! Guarantees (each as the real server's handlers and stores do it):
//! - Offsets: every topic message has an offset (0, 1, 2…), its `messageId`. A subscription has
//!   one offset: the next message it will get.
//! - A pull always reads from the subscription's offset and records `next_offset` (offset + the
//!   number returned) and the time of the pull; until an ack moves the offset, every pull
//!   delivers the same messages again (redelivery from the old offset).
//! - Acks are cumulative: the highest offset among the ack ids + 1 becomes the offset. An ack
//!   with no pull pending gets `500 no ack pending`, one outside the pending range `500 wrong
//!   ack`, one later than the ack deadline `408 ack timeout` (the messages then come again).
//!   The deadline is compared with the exact elapsed time; the real server compares
//!   whole-second timestamps, so it may accept an ack up to one second later than this one.
//! - A published message whose base64 `data` is longer than `max_message_bytes` gets `413
//!   Message size is too large`; the messages before it in the same request stay published,
//!   as on the real server (it publishes one by one).
//! - Errors are the real error objects, in the real order of checks (name syntax, token,
//!   project, role, resource, body).
//! - Memory: messages that every subscription of their topic has acknowledged are dropped (the
//!   topic's `min` offset moves up), as Kafka's retention would eventually do. A topic without
//!   subscriptions keeps everything: this is a test server.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant, SystemTime};

use crate::transport::ams::wire::{
    self, AckRequest, ErrorAnswer, Message, ModifyAckDeadlineRequest, Offsets, PublishAnswer,
    PublishRequest, PullAnswer, PullRequest, PushConfig, ReceivedMessage, SubscriptionInfo,
    TopicInfo,
};

/// An error answer: the HTTP status is its `code`.
pub type ApiError = ErrorAnswer;

/// `401 Unauthorized`.
pub fn unauthorized() -> ApiError {
    ErrorAnswer::new(401, "Unauthorized", "UNAUTHORIZED")
}

/// `403 Access to this resource is forbidden`.
pub fn forbidden() -> ApiError {
    ErrorAnswer::new(403, "Access to this resource is forbidden", "FORBIDDEN")
}

/// `404 {what} doesn't exist`.
pub fn not_found(what: &str) -> ApiError {
    ErrorAnswer::new(404, format!("{what} doesn't exist"), "NOT_FOUND")
}

fn invalid_argument(resource: &str) -> ApiError {
    ErrorAnswer::new(
        400,
        format!("Invalid {resource} Arguments"),
        "INVALID_ARGUMENT",
    )
}

fn invalid_data(msg: &str) -> ApiError {
    ErrorAnswer::new(400, msg, "INVALID_ARGUMENT")
}

fn internal(msg: &str) -> ApiError {
    ErrorAnswer::new(500, msg, "INTERNAL_SERVER_ERROR")
}

/// `400 Invalid {key} name` for a URL part the server does not accept.
pub fn invalid_name(key: &str) -> ApiError {
    ErrorAnswer::new(400, format!("Invalid {key} name"), "INVALID_ARGUMENT")
}

/// The message of a 413, as the real server writes it.
pub const TOO_LARGE: &str = "Message size is too large";

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// May publish and consume (what `--token` gives).
    Both,
    /// May only publish.
    Publisher,
    /// May only pull, acknowledge, change the deadline and read offsets.
    Consumer,
}

impl Role {
    fn allows(self, needed: Role) -> bool {
        self == Role::Both || self == needed
    }
}

/// How the state is set up.
#[derive(Debug, Clone)]
pub struct StateConfig {
    /// The one project served.
    pub project: String,
    /// Tokens and what they may do.
    pub tokens: Vec<(String, Role)>,
    /// Topic names.
    pub topics: Vec<String>,
    /// `(subscription, topic)` pairs; a topic named only here is created too.
    pub subscriptions: Vec<(String, String)>,
    /// The ack deadline of every subscription at start, in seconds.
    pub ack_deadline: u32,
    /// The longest base64 `data` of one published message, in bytes.
    pub max_message_bytes: usize,
}

impl Default for StateConfig {
    fn default() -> Self {
        StateConfig {
            project: "accounting".into(),
            tokens: Vec::new(),
            topics: Vec::new(),
            subscriptions: Vec::new(),
            ack_deadline: 10,
            max_message_bytes: 1024 * 1024,
        }
    }
}

#[derive(Debug)]
struct Stored {
    attributes: BTreeMap<String, String>,
    data: String,
    publish_time: String,
}

#[derive(Debug, Default)]
struct Topic {
    /// The offset of `messages[0]`.
    min: u64,
    messages: VecDeque<Stored>,
}

impl Topic {
    fn max(&self) -> u64 {
        self.min + self.messages.len() as u64
    }
}

#[derive(Debug)]
struct Subscription {
    topic: String,
    offset: u64,
    /// `offset + n` after a pull of `n`; 0 means no ack pending (the real store's encoding).
    next_offset: u64,
    pulled_at: Option<Instant>,
    ack_deadline: u32,
}

/// What a validated pull asks for; [`State::available`] and [`State::complete_pull`] finish it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullPlan {
    /// The subscription.
    pub subscription: String,
    /// Its topic.
    pub topic: String,
    /// The offset read from.
    pub start: u64,
    /// The most messages to return.
    pub max: usize,
    /// Whether the answer goes back as soon as what is waiting has been read.
    pub return_immediately: bool,
}

/// The state of one project (see the module documentation).
#[derive(Debug)]
pub struct State {
    project: String,
    tokens: HashMap<String, Role>,
    topics: HashMap<String, Topic>,
    subs: HashMap<String, Subscription>,
    max_message_bytes: usize,
}

/// The time as the server stamps `publishTime`: RFC 3339 UTC, nanoseconds, trailing zeros cut
/// (Go's `2006-01-02T15:04:05.999999999Z`).
pub fn publish_time(at: SystemTime) -> String {
    let d = at
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, day) = crate::civil::from_days(days);
    let mut out = format!(
        "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    );
    let nanos = d.subsec_nanos();
    if nanos != 0 {
        let frac = format!("{nanos:09}");
        out.push('.');
        out.push_str(frac.trim_end_matches('0'));
    }
    out.push('Z');
    out
}

impl State {
    /// A project with the configured topics and subscriptions, all empty.
    pub fn new(cfg: &StateConfig) -> State {
        let mut topics: HashMap<String, Topic> = cfg
            .topics
            .iter()
            .map(|t| (t.clone(), Topic::default()))
            .collect();
        let mut subs = HashMap::new();
        for (name, topic) in &cfg.subscriptions {
            topics.entry(topic.clone()).or_default();
            subs.insert(
                name.clone(),
                Subscription {
                    topic: topic.clone(),
                    offset: 0,
                    next_offset: 0,
                    pulled_at: None,
                    ack_deadline: cfg.ack_deadline,
                },
            );
        }
        State {
            project: cfg.project.clone(),
            tokens: cfg.tokens.iter().cloned().collect(),
            topics,
            subs,
            max_message_bytes: cfg.max_message_bytes,
        }
    }

    /// The project's name.
    pub fn project(&self) -> &str {
        &self.project
    }

    /// The topics, for set-up and logs.
    pub fn topic_names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.topics.keys().cloned().collect();
        v.sort();
        v
    }

    /// The checks every call goes through, in the real server's order: URL names (sorted by
    /// their key), the token's presence, the project, the token, the role.
    pub fn authorize(
        &self,
        project: &str,
        names: &[(&str, &str)],
        token: Option<&str>,
        needed: Role,
    ) -> Result<(), ApiError> {
        let mut keys: Vec<(&str, &str)> = vec![("project", project)];
        keys.extend_from_slice(names);
        keys.sort();
        for (key, value) in keys {
            if !wire::valid_name(value) {
                return Err(invalid_name(key));
            }
        }
        let token = token.filter(|t| !t.is_empty()).ok_or_else(unauthorized)?;
        if project != self.project {
            return Err(not_found("project"));
        }
        let role = self.tokens.get(token).ok_or_else(unauthorized)?;
        if !role.allows(needed) {
            return Err(forbidden());
        }
        Ok(())
    }

    /// Publishes a request body to `topic`; returns the ids and the topic's new `max`.
    pub fn publish(
        &mut self,
        topic: &str,
        body: &[u8],
        now: SystemTime,
    ) -> Result<(PublishAnswer, u64), ApiError> {
        let max_bytes = self.max_message_bytes;
        let t = self
            .topics
            .get_mut(topic)
            .ok_or_else(|| not_found("Topic"))?;
        let req: PublishRequest =
            serde_json::from_slice(body).map_err(|_| invalid_argument("Message"))?;
        let stamp = publish_time(now);
        let mut ids = Vec::with_capacity(req.messages.len());
        for m in req.messages {
            if m.data.len() > max_bytes {
                // Earlier messages of this request stay published: the real server publishes
                // them one by one and stops at the first the broker refuses.
                return Err(ErrorAnswer::new(413, TOO_LARGE, "INVALID_ARGUMENT"));
            }
            ids.push(t.max().to_string());
            t.messages.push_back(Stored {
                attributes: m.attributes,
                data: m.data,
                publish_time: stamp.clone(),
            });
        }
        Ok((PublishAnswer { message_ids: ids }, t.max()))
    }

    /// Validates a pull: subscription, then body (as the real handler: 404 before 400).
    pub fn plan_pull(&self, sub: &str, body: &[u8]) -> Result<PullPlan, ApiError> {
        let s = self
            .subs
            .get(sub)
            .ok_or_else(|| not_found("Subscription"))?;
        let t = self.topics.get(&s.topic).ok_or_else(|| {
            ErrorAnswer::new(409, "Subscription's topic doesn't exist", "CONFLICT")
        })?;
        let req: PullRequest =
            serde_json::from_slice(body).map_err(|_| invalid_argument("Pull Parameters"))?;
        // As the real server: an unparsable or absent maxMessages means 1; anything but
        // "false" means return immediately.
        let max = req
            .max_messages
            .as_deref()
            .and_then(|m| m.parse::<i64>().ok())
            .unwrap_or(1);
        // Zero or negative: the real consumer stops after its first message.
        let max = usize::try_from(max).unwrap_or(1).max(1);
        Ok(PullPlan {
            subscription: sub.to_string(),
            topic: s.topic.clone(),
            start: s.offset.max(t.min),
            max,
            return_immediately: req.return_immediately.as_deref() != Some("false"),
        })
    }

    /// How many messages a pull could return now (from its start offset, at most its max).
    pub fn available(&self, plan: &PullPlan) -> usize {
        self.topics
            .get(&plan.topic)
            .map(|t| t.max().saturating_sub(plan.start.max(t.min)) as usize)
            .unwrap_or(0)
            .min(plan.max)
    }

    /// Ends a pull: what is waiting from the start offset, at most `max`, recorded as pending
    /// acknowledgement at `now` (even when empty, as the real server does).
    pub fn complete_pull(&mut self, plan: &PullPlan, now: Instant) -> PullAnswer {
        let n = self.available(plan);
        let project = self.project.clone();
        let Some(t) = self.topics.get(&plan.topic) else {
            return PullAnswer::default();
        };
        let start = plan.start.max(t.min);
        let skip = (start - t.min) as usize;
        let received = t
            .messages
            .iter()
            .skip(skip)
            .take(n)
            .enumerate()
            .map(|(i, m)| {
                let offset = start + i as u64;
                ReceivedMessage {
                    ack_id: wire::ack_id(&project, &plan.subscription, offset),
                    message: Message {
                        message_id: offset.to_string(),
                        attributes: m.attributes.clone(),
                        data: m.data.clone(),
                        publish_time: m.publish_time.clone(),
                    },
                }
            })
            .collect::<Vec<_>>();
        if let Some(s) = self.subs.get_mut(&plan.subscription) {
            s.offset = start;
            s.next_offset = start + received.len() as u64;
            s.pulled_at = Some(now);
        }
        PullAnswer {
            received_messages: received,
        }
    }

    /// Acknowledges (cumulatively) what a pull returned.
    pub fn acknowledge(&mut self, sub: &str, body: &[u8], now: Instant) -> Result<(), ApiError> {
        let req: AckRequest =
            serde_json::from_slice(body).map_err(|_| invalid_data("Invalid ack parameter"))?;
        let project = self.project.clone();
        let s = self
            .subs
            .get_mut(sub)
            .ok_or_else(|| not_found("Subscription"))?;
        let ids = req.ack_ids.ok_or_else(|| invalid_data("Invalid ack id"))?;
        let mut max: Option<i64> = None;
        for id in &ids {
            let off = wire::parse_ack_id(&project, sub, id)
                .ok_or_else(|| invalid_data("Invalid ack id"))?;
            max = Some(max.map_or(off, |m: i64| m.max(off)));
        }
        // An empty list: the real server fails to read an offset from "" and says so.
        let max = max.ok_or_else(|| invalid_data("Invalid ack id"))?;
        if s.next_offset == 0 {
            return Err(internal("no ack pending"));
        }
        let new_offset = max.saturating_add(1);
        if new_offset <= s.offset as i64 || new_offset > s.next_offset as i64 {
            return Err(internal("wrong ack"));
        }
        let deadline = Duration::from_secs(u64::from(s.ack_deadline));
        if s.pulled_at
            .is_none_or(|at| now.saturating_duration_since(at) > deadline)
        {
            return Err(ErrorAnswer::new(408, "ack timeout", "TIMEOUT"));
        }
        s.offset = new_offset as u64;
        s.next_offset = 0;
        s.pulled_at = None;
        let topic = s.topic.clone();
        self.trim(&topic);
        Ok(())
    }

    /// Drops the messages every subscription of `topic` has acknowledged.
    fn trim(&mut self, topic: &str) {
        let Some(low) = self
            .subs
            .values()
            .filter(|s| s.topic == topic)
            .map(|s| s.offset)
            .min()
        else {
            return;
        };
        if let Some(t) = self.topics.get_mut(topic) {
            while t.min < low && t.messages.pop_front().is_some() {
                t.min += 1;
            }
        }
    }

    /// Changes a subscription's ack deadline (0–600 s) for the pulls that follow.
    pub fn modify_ack_deadline(&mut self, sub: &str, body: &[u8]) -> Result<(), ApiError> {
        let bad = || invalid_argument("ackDeadlineSeconds(needs value between 0 and 600)");
        let req: ModifyAckDeadlineRequest = serde_json::from_slice(body).map_err(|_| bad())?;
        let secs = u32::try_from(req.ack_deadline_seconds)
            .ok()
            .filter(|s| *s <= 600)
            .ok_or_else(bad)?;
        let s = self
            .subs
            .get_mut(sub)
            .ok_or_else(|| not_found("Subscription"))?;
        s.ack_deadline = secs;
        Ok(())
    }

    /// A subscription's description (`GET …/subscriptions/{s}`): its topic and the ack
    /// deadline in force; `created_on` is the server's start.
    pub fn subscription_info(
        &self,
        sub: &str,
        created_on: &str,
    ) -> Result<SubscriptionInfo, ApiError> {
        let s = self
            .subs
            .get(sub)
            .ok_or_else(|| not_found("Subscription"))?;
        Ok(SubscriptionInfo {
            name: format!("/projects/{}/subscriptions/{sub}", self.project),
            topic: format!("/projects/{}/topics/{}", self.project, s.topic),
            push_config: PushConfig::default(),
            ack_deadline_seconds: i64::from(s.ack_deadline),
            created_on: created_on.to_string(),
        })
    }

    /// A topic's description (`GET …/topics/{t}`).
    pub fn topic_info(&self, topic: &str, created_on: &str) -> Result<TopicInfo, ApiError> {
        if !self.topics.contains_key(topic) {
            return Err(not_found("Topic"));
        }
        Ok(TopicInfo {
            name: format!("/projects/{}/topics/{topic}", self.project),
            created_on: created_on.to_string(),
        })
    }

    /// A subscription's offsets.
    pub fn offsets(&mut self, sub: &str) -> Result<Offsets, ApiError> {
        let s = self
            .subs
            .get_mut(sub)
            .ok_or_else(|| not_found("Subscription"))?;
        let (min, max) = self
            .topics
            .get(&s.topic)
            .map(|t| (t.min, t.max()))
            .unwrap_or((0, 0));
        s.offset = s.offset.max(min);
        Ok(Offsets {
            max: max as i64,
            min: min as i64,
            current: s.offset as i64,
        })
    }

    /// A topic's next offset (to wake pulls waiting for it), if the topic exists.
    pub fn topic_max(&self, topic: &str) -> Option<u64> {
        self.topics.get(topic).map(Topic::max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> State {
        State::new(&StateConfig {
            project: "ARGO".into(),
            tokens: vec![("tok".into(), Role::Both), ("pub".into(), Role::Publisher)],
            topics: vec!["topic1".into()],
            subscriptions: vec![("sub1".into(), "topic1".into())],
            ack_deadline: 10,
            max_message_bytes: 100,
        })
    }

    fn publish(s: &mut State, n: usize) -> Vec<String> {
        let msgs: Vec<String> = (0..n)
            .map(|i| format!(r#"{{"attributes":{{"empaid":"m{i}"}},"data":"YQ=="}}"#))
            .collect();
        let body = format!(r#"{{"messages":[{}]}}"#, msgs.join(","));
        s.publish("topic1", body.as_bytes(), SystemTime::now())
            .unwrap()
            .0
            .message_ids
    }

    fn pull(s: &mut State, max: &str, now: Instant) -> Vec<String> {
        let body = format!(r#"{{"maxMessages":"{max}","returnImmediately":"true"}}"#);
        let plan = s.plan_pull("sub1", body.as_bytes()).unwrap();
        s.complete_pull(&plan, now)
            .received_messages
            .into_iter()
            .map(|m| m.ack_id)
            .collect()
    }

    fn ack(s: &mut State, ids: &[String], now: Instant) -> Result<(), ApiError> {
        let body = serde_json::to_vec(&AckRequest {
            ack_ids: Some(ids.to_vec()),
        })
        .unwrap();
        s.acknowledge("sub1", &body, now)
    }

    #[test]
    fn ids_are_offsets_and_pull_redelivers_until_acked() {
        let mut s = state();
        assert_eq!(publish(&mut s, 3), ["0", "1", "2"]);
        let t0 = Instant::now();
        let first = pull(&mut s, "2", t0);
        assert_eq!(
            first,
            [
                "projects/ARGO/subscriptions/sub1:0",
                "projects/ARGO/subscriptions/sub1:1"
            ]
        );
        // No ack: the same messages again, from the old offset.
        assert_eq!(pull(&mut s, "2", t0), first);
        // Cumulative: acking only the highest acks both.
        ack(&mut s, &first[1..], t0).unwrap();
        assert_eq!(
            pull(&mut s, "5", t0),
            ["projects/ARGO/subscriptions/sub1:2"]
        );
        let off = s.offsets("sub1").unwrap();
        assert_eq!((off.min, off.max, off.current), (2, 3, 2));
    }

    #[test]
    fn late_ack_gets_408_and_the_messages_come_again() {
        let mut s = state();
        publish(&mut s, 2);
        let t0 = Instant::now();
        let ids = pull(&mut s, "10", t0);
        let err = ack(&mut s, &ids, t0 + Duration::from_millis(10_001)).unwrap_err();
        let json = String::from_utf8(wire::to_pretty(&err)).unwrap();
        // handlers/subscriptions_test.go TestSubAck
        assert_eq!(
            json,
            "{\n   \"error\": {\n      \"code\": 408,\n      \"message\": \"ack timeout\",\n      \"status\": \"TIMEOUT\"\n   }\n}"
        );
        let t1 = t0 + Duration::from_secs(11);
        let again = pull(&mut s, "10", t1);
        assert_eq!(again, ids);
        // A longer deadline set with modifyAckDeadline holds for the next pull.
        s.modify_ack_deadline("sub1", br#"{"ackDeadlineSeconds":60}"#)
            .unwrap();
        let again = pull(&mut s, "10", t1);
        ack(&mut s, &again, t1 + Duration::from_secs(30)).unwrap();
    }

    #[test]
    fn acks_without_a_pending_pull_or_out_of_range_are_refused() {
        let mut s = state();
        publish(&mut s, 3);
        let t0 = Instant::now();
        let id0 = wire::ack_id("ARGO", "sub1", 0);
        let e = ack(&mut s, std::slice::from_ref(&id0), t0).unwrap_err();
        assert_eq!(
            (e.error.code, e.error.message.as_str()),
            (500, "no ack pending")
        );
        pull(&mut s, "1", t0);
        let id2 = wire::ack_id("ARGO", "sub1", 2);
        let e = ack(&mut s, &[id2], t0).unwrap_err();
        assert_eq!((e.error.code, e.error.message.as_str()), (500, "wrong ack"));
        ack(&mut s, std::slice::from_ref(&id0), t0).unwrap();
        // The same ack again: nothing pending any more.
        let e = ack(&mut s, &[id0], t0).unwrap_err();
        assert_eq!(e.error.message, "no ack pending");
        // Ids of another subscription, empty lists, bodies without the field: 400.
        for body in [
            r#"{"ackIds":["projects/ARGO/subscriptions/sub2:1"]}"#,
            r#"{"ackIds":[]}"#,
            r#"{}"#,
        ] {
            let e = s.acknowledge("sub1", body.as_bytes(), t0).unwrap_err();
            assert_eq!(
                (e.error.code, e.error.message.as_str()),
                (400, "Invalid ack id")
            );
        }
        let e = s.acknowledge("sub1", b"nonsense", t0).unwrap_err();
        assert_eq!(e.error.message, "Invalid ack parameter");
        let e = s.acknowledge("nosub", br#"{"ackIds":[]}"#, t0).unwrap_err();
        assert_eq!(e.error.code, 404);
    }

    #[test]
    fn too_large_is_413_and_keeps_the_earlier_messages() {
        let mut s = state();
        let big = "A".repeat(101);
        let body = format!(r#"{{"messages":[{{"data":"YQ=="}},{{"data":"{big}"}}]}}"#);
        let e = s
            .publish("topic1", body.as_bytes(), SystemTime::now())
            .unwrap_err();
        assert_eq!(
            String::from_utf8(wire::to_pretty(&e)).unwrap(),
            "{\n   \"error\": {\n      \"code\": 413,\n      \"message\": \"Message size is too large\",\n      \"status\": \"INVALID_ARGUMENT\"\n   }\n}"
        );
        assert_eq!(s.topic_max("topic1"), Some(1));
    }

    #[test]
    fn pull_parameters_must_be_strings() {
        let s = state();
        for body in [
            r#"{"maxMessages":1}"#,
            r#"{"returnImmediately":true}"#,
            "",
            "[",
        ] {
            let e = s.plan_pull("sub1", body.as_bytes()).unwrap_err();
            assert_eq!(
                String::from_utf8(wire::to_pretty(&e)).unwrap(),
                "{\n   \"error\": {\n      \"code\": 400,\n      \"message\": \"Invalid Pull Parameters Arguments\",\n      \"status\": \"INVALID_ARGUMENT\"\n   }\n}",
                "{body}"
            );
        }
        // Defaults: one message, and returnImmediately unless it says "false".
        let p = s.plan_pull("sub1", b"{}").unwrap();
        assert_eq!((p.max, p.return_immediately), (1, true));
        for zero in ["0", "-5"] {
            let body = format!(r#"{{"maxMessages":"{zero}"}}"#);
            assert_eq!(s.plan_pull("sub1", body.as_bytes()).unwrap().max, 1);
        }
        let p = s
            .plan_pull(
                "sub1",
                br#"{"maxMessages":"x","returnImmediately":"false"}"#,
            )
            .unwrap();
        assert_eq!((p.max, p.return_immediately), (1, false));
        // 404 comes before the body is read.
        assert_eq!(s.plan_pull("nosub", b"[").unwrap_err().error.code, 404);
    }

    #[test]
    fn auth_order_and_roles() {
        let s = state();
        let names = [("topic", "topic1")];
        assert_eq!(
            s.authorize("ARGO", &names, None, Role::Publisher)
                .unwrap_err()
                .error
                .code,
            401
        );
        let e = s
            .authorize("nope", &names, Some("tok"), Role::Publisher)
            .unwrap_err();
        assert_eq!(e.error.message, "project doesn't exist");
        let e = s
            .authorize("ARGO", &names, Some("bad"), Role::Publisher)
            .unwrap_err();
        assert_eq!(e, unauthorized());
        let e = s
            .authorize(
                "ARGO",
                &[("subscription", "sub1")],
                Some("pub"),
                Role::Consumer,
            )
            .unwrap_err();
        assert_eq!(e.error.code, 403);
        let e = s
            .authorize("ARGO", &[("topic", "a.b")], Some("tok"), Role::Publisher)
            .unwrap_err();
        assert_eq!(e.error.message, "Invalid topic name");
        s.authorize("ARGO", &names, Some("tok"), Role::Publisher)
            .unwrap();
    }

    #[test]
    fn descriptions_show_the_deadline_in_force_and_404_for_unknown_names() {
        let mut s = state();
        let info = s.subscription_info("sub1", "2026-01-01T00:00:00Z").unwrap();
        assert_eq!(info.ack_deadline_seconds, 10);
        assert_eq!(info.name, "/projects/ARGO/subscriptions/sub1");
        assert_eq!(info.topic, "/projects/ARGO/topics/topic1");
        s.modify_ack_deadline("sub1", br#"{"ackDeadlineSeconds":77}"#)
            .unwrap();
        assert_eq!(
            s.subscription_info("sub1", "")
                .unwrap()
                .ack_deadline_seconds,
            77
        );
        let e = s.subscription_info("nope", "").unwrap_err();
        assert_eq!(
            (e.error.code, e.error.message.as_str()),
            (404, "Subscription doesn't exist")
        );
        assert_eq!(
            s.topic_info("topic1", "x").unwrap().name,
            "/projects/ARGO/topics/topic1"
        );
        let e = s.topic_info("nope", "").unwrap_err();
        assert_eq!(
            (e.error.code, e.error.message.as_str()),
            (404, "Topic doesn't exist")
        );
    }

    #[test]
    fn modify_ack_deadline_range_and_offsets_trim() {
        let mut s = state();
        for body in [
            r#"{"ackDeadlineSeconds":700}"#,
            r#"{"ackDeadlineSeconds":-22}"#,
            r#"{"ackDeadlineSeconds":"5"}"#,
        ] {
            let e = s.modify_ack_deadline("sub1", body.as_bytes()).unwrap_err();
            assert_eq!(
                e.error.message,
                "Invalid ackDeadlineSeconds(needs value between 0 and 600) Arguments"
            );
        }
        publish(&mut s, 4);
        let t0 = Instant::now();
        let ids = pull(&mut s, "3", t0);
        ack(&mut s, &ids, t0).unwrap();
        let off = s.offsets("sub1").unwrap();
        assert_eq!((off.min, off.max, off.current), (3, 4, 3));
        assert_eq!(publish(&mut s, 1), ["4"]);
    }

    #[test]
    fn publish_time_is_go_rfc3339_nano() {
        let t = SystemTime::UNIX_EPOCH + Duration::new(1_456_314_909, 786_127_994);
        assert_eq!(publish_time(t), "2016-02-24T11:55:09.786127994Z");
        let t = SystemTime::UNIX_EPOCH + Duration::new(1_456_314_909, 500_000_000);
        assert_eq!(publish_time(t), "2016-02-24T11:55:09.5Z");
        let t = SystemTime::UNIX_EPOCH + Duration::new(951_782_400, 0);
        assert_eq!(publish_time(t), "2000-02-29T00:00:00Z");
    }
}
