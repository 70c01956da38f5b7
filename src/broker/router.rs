//! Destinations and subscriptions: where each message goes.
//!
//! The router is plain data behind one mutex, shared by all connections; every operation is
//! short and never awaits. It knows four kinds of destination:
//!
//! - `/topic/<name>`: fanned out to the current subscribers, dropped when there is none.
//! - `/queue/<name>`: kept until consumed; subscribers compete (round-robin).
//! - `/temp-queue/<name>`: a queue private to the connection that names it. Its broker-wide name
//!   is `/remote-temp-queue/<session>.<name>` ([`temp_queue_key`]); only its owner can consume
//!   it, anyone can send to the broker-wide name, and it vanishes with its owner.
//! - `/remote-temp-queue/<session>.<name>`: the broker-wide name of a temp queue.
//!
//! Guarantees:
//! - A queue message is removed only when it is acknowledged (or written, for `auto`
//!   subscriptions); unacknowledged messages go back to the head of their queue, marked
//!   redelivered, when they are NACKed or their subscription or connection ends.
//! - A connection has at most [`RouterLimits::max_subscriptions`] subscriptions.
//! - A topic message is fanned out only if the broker's byte budget can pay for every copy
//!   (each copy is charged while it waits to be written, and while it waits for its ACK);
//!   otherwise the SEND is refused ([`RouteError::BrokerFull`]) and nobody gets it.
//! - A connection never has more than [`RouterLimits::max_outstanding`] topic copies waiting to
//!   be written or acknowledged: beyond it, topic messages are dropped for that connection
//!   only (it is a slow consumer; other subscribers still get them), and a connection that
//!   stays slow for [`RouterLimits::slow_consumer_timeout`] is cut off (its connection task is
//!   told through its cancellation token). Both are logged.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc::UnboundedSender;
use tokio_util::sync::CancellationToken;

use super::message::{Charge, Message};
use crate::stomp::Frame;

/// Prefix of topics.
pub const TOPIC: &str = "/topic/";
/// Prefix of queues.
pub const QUEUE: &str = "/queue/";
/// Prefix of a connection's private temporary queues.
pub const TEMP_QUEUE: &str = "/temp-queue/";
/// Prefix of the broker-wide names of temporary queues.
pub const REMOTE_TEMP_QUEUE: &str = "/remote-temp-queue/";

/// The broker-wide name of the temp queue `name` (the part after `/temp-queue/`) of `session`.
pub fn temp_queue_key(session: &str, name: &str) -> String {
    format!("{REMOTE_TEMP_QUEUE}{session}.{name}")
}

/// What a connection's writer is asked to write.
#[derive(Debug)]
pub enum Out {
    /// A frame built by the connection itself (RECEIPT, ERROR…).
    Frame(Frame),
    /// A message delivery; the writer builds the MESSAGE frame.
    Deliver(Delivery),
    /// Flush, close the write side, and stop.
    Close,
}

/// What one topic copy costs while it waits in a consumer's channel (beyond the shared
/// message): the channel slot, the delivery, the `MESSAGE` headers the writer builds from it,
/// with allocator slack.
pub const DELIVERY_COST: usize = std::mem::size_of::<Out>() + 192;
/// What one unacknowledged topic copy costs (its record and map node).
pub const PENDING_COST: usize = std::mem::size_of::<Pending>() + 64;

/// The bounds the router keeps per connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouterLimits {
    /// Most subscriptions per connection.
    pub max_subscriptions: usize,
    /// Most topic copies per connection waiting to be written or acknowledged.
    pub max_outstanding: usize,
    /// How long a connection may stay at `max_outstanding` before it is cut off.
    pub slow_consumer_timeout: Duration,
}

impl Default for RouterLimits {
    fn default() -> Self {
        RouterLimits {
            max_subscriptions: 256,
            max_outstanding: 1000,
            slow_consumer_timeout: Duration::from_secs(30),
        }
    }
}

/// Held by a topic copy until the writer takes it: pays for it in the budget and counts it
/// in its connection's outstanding copies.
#[derive(Debug)]
pub struct Ticket {
    _charge: Charge,
    unwritten: Arc<AtomicUsize>,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.unwritten.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One delivery of a message to one subscription.
#[derive(Debug)]
pub struct Delivery {
    /// The message.
    pub msg: Arc<Message>,
    /// The `destination` header, as the consumer knows the destination.
    pub destination: Arc<str>,
    /// The `subscription` header.
    pub subscription: Arc<str>,
    /// The `ack` id, for subscriptions that must acknowledge.
    pub ack: Option<u64>,
    /// Whether the message was delivered before.
    pub redelivered: bool,
    /// For topic copies: their charge and place in the connection's outstanding count, given
    /// back when the writer is done with the delivery.
    pub _ticket: Option<Ticket>,
}

pub use crate::stomp::vocab::AckMode;

/// Why the router refused an operation; the connection answers with an ERROR frame.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RouteError {
    /// The destination has no prefix the broker knows.
    #[error(
        "unsupported destination {0:?} (use /topic/, /queue/, /temp-queue/ or /remote-temp-queue/)"
    )]
    UnsupportedDestination(String),
    /// The subscription id is already used on this connection.
    #[error("subscription id {0:?} is already in use")]
    DuplicateSubscription(String),
    /// No subscription has this id.
    #[error("no subscription with id {0:?}")]
    NoSuchSubscription(String),
    /// A connection tried to consume another connection's temp queue.
    #[error("temporary queue {0:?} belongs to another connection")]
    NotOwner(String),
    /// The connection has as many subscriptions as allowed.
    #[error("too many subscriptions on this connection (at most {0})")]
    TooManySubscriptions(usize),
    /// The byte budget cannot pay for every copy of a topic message; it was not sent.
    #[error("broker full: the copies of this message for {copies} subscriber(s) exceed max_queued_bytes; message not sent")]
    BrokerFull {
        /// The copies it would have taken.
        copies: usize,
    },
}

/// Identifies a connection inside the router.
pub type SessionKey = u64;

struct Consumer {
    session: SessionKey,
    sub: Arc<str>,
    ack: AckMode,
    /// Most unacknowledged messages this consumer is given at once (its `prefetch-count`);
    /// none for `ack:auto` or when it asked for no limit.
    prefetch: Option<usize>,
    /// Created by a SEND with `reply-to` (RabbitMQ style), not by a SUBSCRIBE.
    implicit: bool,
}

struct Queue {
    /// The name shown in `destination` on delivery.
    shown: Arc<str>,
    items: VecDeque<(Arc<Message>, bool)>,
    consumers: Vec<Consumer>,
    next: usize,
    /// The owning connection of a temp queue.
    owner: Option<SessionKey>,
}

impl Queue {
    fn new(shown: Arc<str>, owner: Option<SessionKey>) -> Queue {
        Queue {
            shown,
            items: VecDeque::new(),
            consumers: Vec::new(),
            next: 0,
            owner,
        }
    }
}

struct TopicSub {
    session: SessionKey,
    sub: Arc<str>,
    ack: AckMode,
}

struct Topic {
    shown: Arc<str>,
    subs: Vec<TopicSub>,
}

enum Target {
    Topic(String),
    Queue(String),
}

struct Subscription {
    target: Target,
}

struct Pending {
    msg: Arc<Message>,
    sub: Arc<str>,
    mode: AckMode,
    /// The queue to return the message to if it is not acknowledged (none for topics).
    queue: Option<String>,
    /// What an unacknowledged topic copy costs, paid while it waits.
    _charge: Option<Charge>,
}

struct Session {
    name: Arc<str>,
    tx: UnboundedSender<Out>,
    subs: HashMap<Arc<str>, Subscription>,
    pending: BTreeMap<u64, Pending>,
    next_ack: u64,
    temp_queues: Vec<String>,
    /// Topic copies handed to the writer and not yet taken by it.
    unwritten: Arc<AtomicUsize>,
    /// Unacknowledged topic copies.
    pending_topic: usize,
    /// Since when the connection has had `max_outstanding` topic copies outstanding.
    slow_since: Option<Instant>,
    /// Topic copies dropped for it since it became slow.
    dropped: u64,
    /// Cancelled to cut the connection off.
    cut: CancellationToken,
}

impl Session {
    fn outstanding(&self) -> usize {
        self.unwritten.load(Ordering::Relaxed) + self.pending_topic
    }
}

/// How an ACK or NACK names the message it is about.
#[derive(Debug, Clone, Copy)]
pub enum AckRef<'a> {
    /// STOMP 1.2: the `id` header, the `ack` header of the MESSAGE.
    AckId(&'a str),
    /// STOMP 1.0/1.1: the `message-id` header, with the `subscription` header when given.
    MessageId(&'a str, Option<&'a str>),
}

/// Where every message goes. See the module documentation.
#[derive(Default)]
pub struct Router {
    limits: RouterLimits,
    sessions: HashMap<SessionKey, Session>,
    topics: HashMap<String, Topic>,
    queues: HashMap<String, Queue>,
}

impl Router {
    /// A router keeping `limits`.
    pub fn new(limits: RouterLimits) -> Router {
        Router {
            limits,
            ..Router::default()
        }
    }

    /// Registers a connection that completed its handshake; `cut` is cancelled if it must be
    /// cut off as a slow consumer.
    pub fn add_session(
        &mut self,
        key: SessionKey,
        name: Arc<str>,
        tx: UnboundedSender<Out>,
        cut: CancellationToken,
    ) {
        self.sessions.insert(
            key,
            Session {
                name,
                tx,
                subs: HashMap::new(),
                pending: BTreeMap::new(),
                next_ack: 1,
                temp_queues: Vec::new(),
                unwritten: Arc::new(AtomicUsize::new(0)),
                pending_topic: 0,
                slow_since: None,
                dropped: 0,
                cut,
            },
        );
    }

    /// Forgets a connection: ends its subscriptions, deletes its temp queues (and what they
    /// hold), and returns its unacknowledged queue messages to their queues.
    pub fn remove_session(&mut self, key: SessionKey) {
        let Some(mut session) = self.sessions.remove(&key) else {
            return;
        };
        for (id, sub) in session.subs.drain() {
            self.detach(key, &id, &sub.target);
        }
        for name in session.temp_queues.drain(..) {
            if let Some(q) = self.queues.remove(&name) {
                if !q.items.is_empty() {
                    tracing::debug!(queue = %name, dropped = q.items.len(), "temp queue deleted with its connection");
                }
            }
        }
        let pending = std::mem::take(&mut session.pending);
        self.requeue(pending.into_values());
    }

    /// Subscribes `sub` of connection `key` to `destination`.
    #[cfg(test)]
    pub fn subscribe(
        &mut self,
        key: SessionKey,
        sub: &str,
        destination: &str,
        ack: AckMode,
    ) -> Result<(), RouteError> {
        self.subscribe_with_prefetch(key, sub, destination, ack, None)
    }

    /// [`Router::subscribe`], with a prefetch limit for a queue subscription that
    /// acknowledges: at most `prefetch` of its messages are unacknowledged at once, the rest
    /// wait in the queue (RabbitMQ's `prefetch-count`, ActiveMQ's `activemq.prefetchSize`).
    pub fn subscribe_with_prefetch(
        &mut self,
        key: SessionKey,
        sub: &str,
        destination: &str,
        ack: AckMode,
        prefetch: Option<usize>,
    ) -> Result<(), RouteError> {
        let Some(session) = self.sessions.get(&key) else {
            return Ok(());
        };
        if session.subs.contains_key(sub) {
            return Err(RouteError::DuplicateSubscription(sub.to_string()));
        }
        if session.subs.len() >= self.limits.max_subscriptions {
            return Err(RouteError::TooManySubscriptions(
                self.limits.max_subscriptions,
            ));
        }
        let sub: Arc<str> = Arc::from(sub);
        let target = if destination.starts_with(TOPIC) {
            let topic = self
                .topics
                .entry(destination.to_string())
                .or_insert_with(|| Topic {
                    shown: Arc::from(destination),
                    subs: Vec::new(),
                });
            topic.subs.push(TopicSub {
                session: key,
                sub: sub.clone(),
                ack,
            });
            Target::Topic(destination.to_string())
        } else {
            let qkey = self.queue_for_consumer(key, destination)?;
            let Some(q) = self.queues.get_mut(&qkey) else {
                return Ok(()); // queue_for_consumer created it
            };
            // An explicit subscription replaces the implicit, RabbitMQ-style one.
            q.consumers.retain(|c| !c.implicit);
            q.consumers.push(Consumer {
                session: key,
                sub: sub.clone(),
                ack,
                prefetch: prefetch.filter(|_| ack != AckMode::Auto),
                implicit: false,
            });
            Target::Queue(qkey)
        };
        let pump = match &target {
            Target::Queue(q) => Some(q.clone()),
            Target::Topic(_) => None,
        };
        if let Some(session) = self.sessions.get_mut(&key) {
            session.subs.insert(sub, Subscription { target });
        }
        if let Some(q) = pump {
            self.pump(&q);
        }
        Ok(())
    }

    /// Ends subscription `sub` of connection `key`; its unacknowledged queue messages go back to
    /// their queue.
    pub fn unsubscribe(&mut self, key: SessionKey, sub: &str) -> Result<(), RouteError> {
        let Some(session) = self.sessions.get_mut(&key) else {
            return Ok(());
        };
        let Some((id, subscription)) = session.subs.remove_entry(sub) else {
            return Err(RouteError::NoSuchSubscription(sub.to_string()));
        };
        let ids: Vec<u64> = session
            .pending
            .iter()
            .filter(|(_, p)| p.sub == id)
            .map(|(k, _)| *k)
            .collect();
        let back: Vec<Pending> = ids
            .iter()
            .filter_map(|k| session.pending.remove(k))
            .collect();
        let topic_back = back.iter().filter(|p| p.queue.is_none()).count();
        session.pending_topic = session.pending_topic.saturating_sub(topic_back);
        self.detach(key, &id, &subscription.target);
        self.requeue(back.into_iter());
        Ok(())
    }

    /// Routes a message sent by connection `key` to `destination`. Returns `Ok(false)` when the
    /// destination is a departed connection's temp queue (the message is dropped).
    pub fn send(
        &mut self,
        key: SessionKey,
        destination: &str,
        msg: Arc<Message>,
    ) -> Result<bool, RouteError> {
        if destination.starts_with(TOPIC) {
            self.publish(destination, msg)?;
            return Ok(true);
        }
        let qkey = if let Some(name) = destination.strip_prefix(TEMP_QUEUE) {
            self.ensure_temp_queue(key, name)
        } else if destination.starts_with(REMOTE_TEMP_QUEUE) {
            if !self.queues.contains_key(destination) {
                return Ok(false);
            }
            destination.to_string()
        } else if destination.starts_with(QUEUE) {
            self.queues
                .entry(destination.to_string())
                .or_insert_with(|| Queue::new(Arc::from(destination), None));
            destination.to_string()
        } else {
            return Err(RouteError::UnsupportedDestination(destination.to_string()));
        };
        if let Some(q) = self.queues.get_mut(&qkey) {
            q.items.push_back((msg, false));
        }
        self.pump(&qkey);
        Ok(true)
    }

    /// RabbitMQ style: a SEND with `reply-to: /temp-queue/<name>` makes that temp queue exist
    /// and, unless the connection subscribed to it, delivers it to the connection with
    /// `subscription: /temp-queue/<name>`. Returns the broker-wide name to put in `reply-to`.
    pub fn implicit_temp_queue(&mut self, key: SessionKey, name: &str) -> String {
        let qkey = self.ensure_temp_queue(key, name);
        if let Some(q) = self.queues.get_mut(&qkey) {
            if q.consumers.is_empty() {
                q.consumers.push(Consumer {
                    session: key,
                    sub: q.shown.clone(),
                    ack: AckMode::Auto,
                    prefetch: None,
                    implicit: true,
                });
            }
        }
        self.pump(&qkey);
        qkey
    }

    /// Handles an ACK (`ack == true`) or NACK from connection `key`. Returns `false` if no
    /// unacknowledged message matches.
    pub fn ack(&mut self, key: SessionKey, which: AckRef<'_>, ack: bool) -> bool {
        let Some(session) = self.sessions.get_mut(&key) else {
            return false;
        };
        let found = match which {
            AckRef::AckId(id) => id
                .parse::<u64>()
                .ok()
                .filter(|id| session.pending.contains_key(id)),
            AckRef::MessageId(mid, sub) => session
                .pending
                .iter()
                .find(|(_, p)| p.msg.id == mid && sub.is_none_or(|s| &*p.sub == s))
                .map(|(k, _)| *k),
        };
        let Some(id) = found else {
            return false;
        };
        let Some(target) = session.pending.get(&id) else {
            return false;
        };
        let ids: Vec<u64> = if target.mode == AckMode::Client {
            let sub = target.sub.clone();
            session
                .pending
                .range(..=id)
                .filter(|(_, p)| p.sub == sub)
                .map(|(k, _)| *k)
                .collect()
        } else {
            vec![id]
        };
        let done: Vec<Pending> = ids
            .iter()
            .filter_map(|k| session.pending.remove(k))
            .collect();
        let topic_done = done.iter().filter(|p| p.queue.is_none()).count();
        session.pending_topic = session.pending_topic.saturating_sub(topic_done);
        let queues: Vec<String> = if ack {
            let mut q: Vec<String> = done.iter().filter_map(|p| p.queue.clone()).collect();
            q.dedup();
            q
        } else {
            Vec::new()
        };
        if !ack {
            self.requeue(done.into_iter());
        }
        // Acknowledged queue messages free prefetch room: hand out what waits.
        for q in queues {
            self.pump(&q);
        }
        true
    }

    /// Number of messages waiting in `queue` (for tests and diagnostics).
    pub fn queue_depth(&self, queue: &str) -> usize {
        self.queues.get(queue).map_or(0, |q| q.items.len())
    }

    /// The key of the queue a SUBSCRIBE to `destination` by `key` consumes.
    fn queue_for_consumer(
        &mut self,
        key: SessionKey,
        destination: &str,
    ) -> Result<String, RouteError> {
        if let Some(name) = destination.strip_prefix(TEMP_QUEUE) {
            Ok(self.ensure_temp_queue(key, name))
        } else if destination.starts_with(REMOTE_TEMP_QUEUE) {
            match self.queues.get(destination) {
                Some(q) if q.owner == Some(key) => Ok(destination.to_string()),
                _ => Err(RouteError::NotOwner(destination.to_string())),
            }
        } else if destination.starts_with(QUEUE) {
            self.queues
                .entry(destination.to_string())
                .or_insert_with(|| Queue::new(Arc::from(destination), None));
            Ok(destination.to_string())
        } else {
            Err(RouteError::UnsupportedDestination(destination.to_string()))
        }
    }

    fn ensure_temp_queue(&mut self, key: SessionKey, name: &str) -> String {
        let Some(session) = self.sessions.get_mut(&key) else {
            return String::new();
        };
        let qkey = temp_queue_key(&session.name, name);
        if !self.queues.contains_key(&qkey) {
            session.temp_queues.push(qkey.clone());
            let shown: Arc<str> = Arc::from(format!("{TEMP_QUEUE}{name}"));
            self.queues
                .insert(qkey.clone(), Queue::new(shown, Some(key)));
        }
        qkey
    }

    /// Removes subscription `sub` of `key` from its topic or queue.
    fn detach(&mut self, key: SessionKey, sub: &Arc<str>, target: &Target) {
        match target {
            Target::Topic(name) => {
                if let Some(t) = self.topics.get_mut(name) {
                    t.subs.retain(|s| !(s.session == key && s.sub == *sub));
                    if t.subs.is_empty() {
                        self.topics.remove(name);
                    }
                }
            }
            Target::Queue(name) => {
                if let Some(q) = self.queues.get_mut(name) {
                    q.consumers.retain(|c| !(c.session == key && c.sub == *sub));
                    if q.consumers.is_empty() {
                        q.next = 0;
                    } else {
                        q.next %= q.consumers.len();
                    }
                    if q.owner.is_none() && q.consumers.is_empty() && q.items.is_empty() {
                        self.queues.remove(name);
                    }
                }
            }
        }
    }

    /// Returns unacknowledged messages to the head of their queues, in their original order.
    fn requeue(&mut self, pending: impl DoubleEndedIterator<Item = Pending>) {
        let mut touched: Vec<String> = Vec::new();
        for p in pending.rev() {
            let Some(qname) = p.queue else { continue };
            // An idle queue is forgotten even while its messages await acks; bring it back.
            // A temp queue is gone for good with its owner, and its messages with it.
            if !qname.starts_with(REMOTE_TEMP_QUEUE) && !self.queues.contains_key(&qname) {
                let q = Queue::new(Arc::from(qname.as_str()), None);
                self.queues.insert(qname.clone(), q);
            }
            if let Some(q) = self.queues.get_mut(&qname) {
                q.items.push_front((p.msg, true));
                if !touched.contains(&qname) {
                    touched.push(qname);
                }
            }
        }
        for q in touched {
            self.pump(&q);
        }
    }

    /// Delivers a topic message to every current subscriber that is not too slow, if the
    /// budget pays for every copy (else nobody gets it).
    fn publish(&mut self, destination: &str, msg: Arc<Message>) -> Result<(), RouteError> {
        let Some(topic) = self.topics.get(destination) else {
            return Ok(()); // no subscriber: dropped, as real brokers do
        };
        let limits = self.limits;
        let now = Instant::now();
        // Who gets a copy, counting this message's copies against each connection's cap.
        let mut planned: HashMap<SessionKey, usize> = HashMap::new();
        let mut targets: Vec<usize> = Vec::with_capacity(topic.subs.len());
        let mut costs: Vec<usize> = Vec::with_capacity(topic.subs.len() * 2);
        for (i, s) in topic.subs.iter().enumerate() {
            let Some(session) = self.sessions.get_mut(&s.session) else {
                continue;
            };
            if session.cut.is_cancelled() {
                continue;
            }
            let extra = planned.entry(s.session).or_insert(0);
            if session.outstanding() + *extra >= limits.max_outstanding {
                slow_consumer(session, &limits, now, destination);
                continue;
            }
            if let Some(since) = session.slow_since.take() {
                tracing::info!(session = %session.name, dropped = session.dropped, slow_for = ?now.duration_since(since), "slow consumer caught up");
                session.dropped = 0;
            }
            *extra += 1;
            targets.push(i);
            costs.push(DELIVERY_COST);
            if s.ack != AckMode::Auto {
                costs.push(PENDING_COST);
            }
        }
        if targets.is_empty() {
            return Ok(());
        }
        let Some(charges) = msg.budget().charge_all(&costs) else {
            return Err(RouteError::BrokerFull {
                copies: targets.len(),
            });
        };
        let mut charges = charges.into_iter();
        for i in targets {
            let s = &topic.subs[i];
            let (Some(session), Some(charge)) = (self.sessions.get_mut(&s.session), charges.next())
            else {
                continue;
            };
            let pending_charge = if s.ack == AckMode::Auto {
                None
            } else {
                charges.next()
            };
            session.unwritten.fetch_add(1, Ordering::Relaxed);
            let ticket = Ticket {
                _charge: charge,
                unwritten: session.unwritten.clone(),
            };
            deliver(
                session,
                Copy {
                    msg: &msg,
                    shown: &topic.shown,
                    sub: &s.sub,
                    mode: s.ack,
                    redelivered: false,
                    queue: None,
                    ticket: Some(ticket),
                    pending_charge,
                },
                destination,
            );
        }
        Ok(())
    }

    /// Hands waiting messages of queue `qkey` to its consumers, round-robin.
    fn pump(&mut self, qkey: &str) {
        let Some(q) = self.queues.get_mut(qkey) else {
            return;
        };
        while !q.items.is_empty() && !q.consumers.is_empty() {
            let n = q.consumers.len();
            let mut delivered = false;
            for _ in 0..n {
                let idx = q.next % n;
                q.next = (idx + 1) % n;
                let c = &q.consumers[idx];
                let Some(session) = self.sessions.get_mut(&c.session) else {
                    continue;
                };
                if let Some(limit) = c.prefetch {
                    let unacked = session.pending.values().filter(|p| p.sub == c.sub).count();
                    if unacked >= limit {
                        continue; // full: its next message waits for an ack
                    }
                }
                let Some((msg, redelivered)) = q.items.front() else {
                    break;
                };
                let copy = Copy {
                    msg,
                    shown: &q.shown,
                    sub: &c.sub,
                    mode: c.ack,
                    redelivered: *redelivered,
                    queue: Some(qkey),
                    ticket: None,
                    pending_charge: None,
                };
                if deliver(session, copy, qkey) {
                    q.items.pop_front();
                    delivered = true;
                    break;
                }
            }
            if !delivered {
                // Every consumer is full (prefetch) or its connection is going away: keep
                // the messages.
                break;
            }
        }
    }
}

/// A connection had a topic copy dropped because it has `max_outstanding` copies waiting: it
/// is slow, and cut off once it stayed slow for `slow_consumer_timeout`.
fn slow_consumer(session: &mut Session, limits: &RouterLimits, now: Instant, destination: &str) {
    session.dropped += 1;
    match session.slow_since {
        None => {
            session.slow_since = Some(now);
            tracing::warn!(
                session = %session.name,
                destination = %destination,
                outstanding = session.outstanding(),
                "slow consumer: topic messages are dropped for it until it catches up"
            );
        }
        Some(since) if now.duration_since(since) >= limits.slow_consumer_timeout => {
            tracing::warn!(
                session = %session.name,
                dropped = session.dropped,
                slow_for = ?now.duration_since(since),
                "slow consumer cut off"
            );
            session.cut.cancel();
        }
        Some(_) => {}
    }
}

/// One copy of a message for one subscription.
struct Copy<'a> {
    msg: &'a Arc<Message>,
    shown: &'a Arc<str>,
    sub: &'a Arc<str>,
    mode: AckMode,
    redelivered: bool,
    /// The queue it came from (none for topics).
    queue: Option<&'a str>,
    ticket: Option<Ticket>,
    /// Pays for the unacknowledged record of a topic copy.
    pending_charge: Option<Charge>,
}

/// Sends one delivery to a connection's writer, recording it as pending if it needs an ACK.
/// Returns `false` if the connection's writer is gone.
fn deliver(session: &mut Session, copy: Copy<'_>, log_dest: &str) -> bool {
    let ack = if copy.mode == AckMode::Auto {
        None
    } else {
        let id = session.next_ack;
        session.next_ack += 1;
        Some(id)
    };
    let out = Out::Deliver(Delivery {
        msg: copy.msg.clone(),
        destination: copy.shown.clone(),
        subscription: copy.sub.clone(),
        ack,
        redelivered: copy.redelivered,
        _ticket: copy.ticket,
    });
    if session.tx.send(out).is_err() {
        tracing::debug!(destination = %log_dest, "consumer connection closing; delivery skipped");
        return false;
    }
    if let Some(id) = ack {
        if copy.queue.is_none() {
            session.pending_topic += 1;
        }
        session.pending.insert(
            id,
            Pending {
                msg: copy.msg.clone(),
                sub: copy.sub.clone(),
                mode: copy.mode,
                queue: copy.queue.map(str::to_string),
                _charge: copy.pending_charge,
            },
        );
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::message::ByteBudget;
    use bytes::Bytes;
    use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};
    use tokio_util::sync::CancellationToken;

    struct Fixture {
        router: Router,
        budget: Arc<ByteBudget>,
        n: u64,
    }

    impl Fixture {
        fn new() -> Fixture {
            Fixture {
                router: Router::default(),
                budget: Arc::new(ByteBudget::new(1 << 20)),
                n: 0,
            }
        }

        fn session(&mut self, key: SessionKey) -> UnboundedReceiver<Out> {
            let (tx, rx) = unbounded_channel();
            self.router.add_session(
                key,
                Arc::from(format!("s{key}")),
                tx,
                CancellationToken::new(),
            );
            rx
        }

        fn msg(&mut self, body: &str) -> Arc<Message> {
            self.n += 1;
            Message::new(
                format!("m{}", self.n),
                vec![],
                Bytes::from(body.to_string()),
                &self.budget,
            )
            .unwrap()
        }

        fn send(&mut self, from: SessionKey, dest: &str, body: &str) -> bool {
            let m = self.msg(body);
            self.router.send(from, dest, m).unwrap()
        }
    }

    fn deliveries(rx: &mut UnboundedReceiver<Out>) -> Vec<Delivery> {
        let mut out = Vec::new();
        while let Ok(o) = rx.try_recv() {
            if let Out::Deliver(d) = o {
                out.push(d);
            }
        }
        out
    }

    fn bodies(ds: &[Delivery]) -> Vec<&[u8]> {
        ds.iter().map(|d| &d.msg.body[..]).collect()
    }

    #[test]
    fn a_prefetch_limit_holds_back_the_rest_until_acks() {
        let mut f = Fixture::new();
        let mut a = f.session(1);
        f.router
            .subscribe_with_prefetch(1, "a", "/queue/p", AckMode::ClientIndividual, Some(2))
            .unwrap();
        for body in ["0", "1", "2", "3", "4"] {
            assert!(f.send(3, "/queue/p", body));
        }
        let first = deliveries(&mut a);
        assert_eq!(bodies(&first), vec![b"0", b"1"]);
        assert_eq!(f.router.queue_depth("/queue/p"), 3);
        let id = first[0].ack.unwrap();
        assert!(f.router.ack(1, AckRef::AckId(&id.to_string()), true));
        assert_eq!(bodies(&deliveries(&mut a)), vec![b"2"]);
        assert_eq!(f.router.queue_depth("/queue/p"), 2);
    }

    #[test]
    fn round_robin_and_requeue_in_order_on_disconnect() {
        let mut f = Fixture::new();
        let mut a = f.session(1);
        let mut b = f.session(2);
        f.router
            .subscribe(1, "a", "/queue/q", AckMode::ClientIndividual)
            .unwrap();
        f.router
            .subscribe(2, "b", "/queue/q", AckMode::Auto)
            .unwrap();
        for body in ["0", "1", "2", "3"] {
            assert!(f.send(3, "/queue/q", body));
        }
        let da = deliveries(&mut a);
        let db = deliveries(&mut b);
        assert_eq!(bodies(&da), vec![b"0", b"2"]);
        assert_eq!(bodies(&db), vec![b"1", b"3"]);
        assert!(da.iter().all(|d| d.ack.is_some()));
        assert!(db.iter().all(|d| d.ack.is_none()));
        f.router.remove_session(1);
        let again = deliveries(&mut b);
        assert_eq!(bodies(&again), vec![b"0", b"2"]);
        assert!(again.iter().all(|d| d.redelivered));
        drop((da, db, again));
        assert_eq!(
            f.budget.used(),
            0,
            "every message is released once consumed"
        );
    }

    #[test]
    fn messages_wait_for_a_consumer_and_topics_do_not() {
        let mut f = Fixture::new();
        f.send(1, "/queue/w", "kept");
        f.send(1, "/topic/t", "dropped");
        assert_eq!(f.router.queue_depth("/queue/w"), 1);
        let mut c = f.session(2);
        f.router
            .subscribe(2, "s", "/queue/w", AckMode::Auto)
            .unwrap();
        f.router
            .subscribe(2, "t", "/topic/t", AckMode::Auto)
            .unwrap();
        assert_eq!(bodies(&deliveries(&mut c)), vec![b"kept"]);
        assert_eq!(f.router.queue_depth("/queue/w"), 0);
    }

    #[test]
    fn temp_queues_are_per_connection_and_vanish_with_it() {
        let mut f = Fixture::new();
        let mut owner = f.session(1);
        let mut other = f.session(2);
        let wide = f.router.implicit_temp_queue(1, "x");
        assert_eq!(wide, "/remote-temp-queue/s1.x");
        assert_eq!(
            f.router.subscribe(2, "steal", &wide, AckMode::Auto),
            Err(RouteError::NotOwner(wide.clone()))
        );
        f.router
            .subscribe(2, "own", "/temp-queue/x", AckMode::Auto)
            .unwrap();
        assert!(f.send(2, &wide, "reply"));
        let d = deliveries(&mut owner);
        assert_eq!(bodies(&d), vec![b"reply"]);
        assert_eq!(&*d[0].subscription, "/temp-queue/x");
        assert_eq!(&*d[0].destination, "/temp-queue/x");
        assert!(deliveries(&mut other).is_empty());
        drop(d);
        f.router.remove_session(1);
        assert!(!f.send(2, &wide, "too late"), "departed temp queue");
        assert_eq!(f.budget.used(), 0);
    }

    #[test]
    fn client_ack_is_cumulative_per_subscription() {
        let mut f = Fixture::new();
        let mut c = f.session(1);
        f.router
            .subscribe(1, "s", "/queue/c", AckMode::Client)
            .unwrap();
        for body in ["0", "1", "2"] {
            f.send(2, "/queue/c", body);
        }
        let ds = deliveries(&mut c);
        let id = ds[1].ack.unwrap().to_string();
        drop(ds);
        assert!(f.router.ack(1, AckRef::AckId(&id), true));
        assert!(!f.router.ack(1, AckRef::AckId(&id), true), "already acked");
        f.router.unsubscribe(1, "s").unwrap();
        assert_eq!(f.router.queue_depth("/queue/c"), 1);
    }

    fn limited(max_subscriptions: usize, max_outstanding: usize, budget: usize) -> Fixture {
        Fixture {
            router: Router::new(RouterLimits {
                max_subscriptions,
                max_outstanding,
                slow_consumer_timeout: Duration::ZERO,
            }),
            budget: Arc::new(ByteBudget::new(budget)),
            n: 0,
        }
    }

    #[test]
    fn subscriptions_per_connection_are_capped() {
        let mut f = limited(3, 1000, 1 << 20);
        let _c = f.session(1);
        for i in 0..3 {
            f.router
                .subscribe(1, &format!("s{i}"), "/topic/t", AckMode::Auto)
                .unwrap();
        }
        assert_eq!(
            f.router.subscribe(1, "s3", "/topic/t", AckMode::Auto),
            Err(RouteError::TooManySubscriptions(3))
        );
        f.router.unsubscribe(1, "s0").unwrap();
        f.router
            .subscribe(1, "s3", "/queue/q", AckMode::Auto)
            .unwrap();
    }

    #[test]
    fn every_topic_copy_is_charged_until_written() {
        let mut f = limited(100, 1000, 1 << 20);
        let mut c = f.session(1);
        for i in 0..10 {
            f.router
                .subscribe(1, &format!("s{i}"), "/topic/t", AckMode::Auto)
                .unwrap();
        }
        f.send(2, "/topic/t", "x");
        let one = Message::new("m1".into(), vec![], Bytes::from("x"), &f.budget).unwrap();
        let msg_cost = one.size();
        drop(one);
        assert_eq!(f.budget.used(), msg_cost + 10 * DELIVERY_COST);
        let ds = deliveries(&mut c);
        assert_eq!(ds.len(), 10);
        drop(ds);
        assert_eq!(f.budget.used(), 0);
    }

    #[test]
    fn a_fan_out_the_budget_cannot_pay_for_is_refused_whole() {
        let mut f = limited(1000, 1000, 50 * DELIVERY_COST);
        let mut c = f.session(1);
        for i in 0..100 {
            f.router
                .subscribe(1, &format!("s{i}"), "/topic/t", AckMode::Auto)
                .unwrap();
        }
        let m = f.msg("x");
        assert_eq!(
            f.router.send(2, "/topic/t", m),
            Err(RouteError::BrokerFull { copies: 100 })
        );
        assert!(deliveries(&mut c).is_empty());
        assert_eq!(f.budget.used(), 0);
    }

    #[test]
    fn a_slow_consumer_loses_topic_copies_beyond_its_cap_then_is_cut_off() {
        let mut f = limited(1000, 5, 1 << 20);
        let (tx, mut slow) = unbounded_channel();
        let cut = CancellationToken::new();
        f.router.add_session(1, Arc::from("slow"), tx, cut.clone());
        let mut fast = f.session(2);
        for i in 0..4 {
            f.router
                .subscribe(1, &format!("s{i}"), "/topic/t", AckMode::Auto)
                .unwrap();
        }
        f.router
            .subscribe(1, "acked", "/topic/t", AckMode::Client)
            .unwrap();
        f.router
            .subscribe(2, "f", "/topic/t", AckMode::Auto)
            .unwrap();
        f.send(3, "/topic/t", "0");
        assert!(!cut.is_cancelled());
        // At its cap (5 outstanding): the next message goes to the fast consumer only, and
        // the slow one (timeout zero here) is cut off.
        f.send(3, "/topic/t", "1");
        assert!(cut.is_cancelled());
        assert_eq!(bodies(&deliveries(&mut fast)), vec![b"0", b"1"]);
        let got = deliveries(&mut slow);
        assert_eq!(got.len(), 5);
        assert!(got.iter().all(|d| &d.msg.body[..] == b"0"));
        // Written (taken by the writer) but one is still unacknowledged: 1 outstanding.
        let ack = got.iter().find_map(|d| d.ack).unwrap().to_string();
        drop(got);
        assert_eq!(f.router.sessions[&1].outstanding(), 1);
        assert!(f.router.ack(1, AckRef::AckId(&ack), true));
        assert_eq!(f.router.sessions[&1].outstanding(), 0);
        f.router.remove_session(1);
        assert_eq!(f.budget.used(), 0);
    }

    #[test]
    fn unsupported_destinations_and_duplicate_ids_are_refused() {
        let mut f = Fixture::new();
        let _c = f.session(1);
        let m = f.msg("x");
        assert!(matches!(
            f.router.send(1, "/exchange/x", m),
            Err(RouteError::UnsupportedDestination(_))
        ));
        f.router
            .subscribe(1, "s", "/topic/a", AckMode::Auto)
            .unwrap();
        assert_eq!(
            f.router.subscribe(1, "s", "/topic/b", AckMode::Auto),
            Err(RouteError::DuplicateSubscription("s".into()))
        );
        assert_eq!(
            f.router.unsubscribe(1, "nope"),
            Err(RouteError::NoSuchSubscription("nope".into()))
        );
    }
}
