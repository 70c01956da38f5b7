//! The one hand-driven SSM peer of every suite: a plain STOMP connection with its own reply
//! queue, set up the way the broker needs (subscribed on ActiveMQ and the embedded broker, named
//! only in `reply-to` on RabbitMQ), that sends `msg`/`ping` frames and reads the acks. A broker
//! that does not answer, an ERROR frame or a lost connection fails the test with the broker's
//! name; nothing here retries or skips.

use crate::support::frames::SsmFrames;
use std::time::Duration;

use bytes::Bytes;
use ssm::protocol::{AckOutcome, SsmMessage};
use ssm::sender::SenderSettings;
use ssm::stomp::{AckMode, BrokerKind, Client, ClientConfig, Command, Event, Frame};

use super::brokers::Target;
use super::e2e::{client_config, WAIT};

/// What came back for one message, as [`Peer::answer`] reads it.
#[derive(Debug, PartialEq, Eq)]
pub enum Answer {
    /// Acked as stored, with this MD5.
    Stored(String),
    /// Answered `REJECTED`, with this reason.
    Rejected(String),
    /// No ack in time.
    Nothing,
}

/// A hand-driven SSM peer.
pub struct Peer {
    /// `[broker name]` for messages.
    pub name: String,
    /// The connection.
    pub client: Client,
    /// Our reply queue, as we name it (empty for a [`Peer::listening`] peer).
    pub reply_queue: String,
    /// The topic [`Peer::frame`] and [`Peer::msg`] address (empty unless given).
    pub topic: String,
    /// Acks read so far by [`Peer::read_acks`]: (ack-for, outcome).
    pub acks: Vec<(Option<String>, AckOutcome)>,
}

impl Peer {
    /// Connects with `cfg` and gets replies on `reply_queue`; [`Peer::frame`] and
    /// [`Peer::msg`] address `topic`.
    pub async fn connect_with(
        t: &Target,
        cfg: &ClientConfig,
        reply_queue: String,
        topic: &str,
    ) -> Peer {
        let client = t.connect_with(cfg).await;
        if ssm::transport::stomp::subscribes_to_reply_queue(client.kind()) {
            client
                .handle()
                .subscribe(&reply_queue, AckMode::Auto, &[])
                .await
                .unwrap();
        }
        Peer {
            name: t.name.clone(),
            client,
            reply_queue,
            topic: topic.to_string(),
            acks: Vec::new(),
        }
    }

    /// Connects a peer of the in-process suites (`e2e::client_config`) that gets replies on a
    /// reply queue named the way the sender names its own.
    pub async fn connect(t: &Target) -> Peer {
        Peer::connect_with(
            t,
            &client_config(t),
            ssm::transport::stomp::new_reply_queue(),
            "",
        )
        .await
    }

    /// Connects a peer of the real-process suites ([`Target::config_with_heartbeats`]) that
    /// sends to `topic` and gets replies on `/temp-queue/ssm.<tag>.<uuid>`.
    pub async fn on_topic(t: &Target, topic: &str, tag: &str) -> Peer {
        let reply = format!("/temp-queue/ssm.{tag}.{}", uuid::Uuid::new_v4().simple());
        Peer::connect_with(t, &t.config_with_heartbeats(), reply, topic).await
    }

    /// Connects a peer that listens on `topic` (a fake receiver).
    pub async fn listening(t: &Target, topic: &str) -> Peer {
        let client = t.connect_with(&client_config(t)).await;
        client
            .handle()
            .subscribe(topic, AckMode::Auto, &[])
            .await
            .unwrap();
        Peer {
            name: t.name.clone(),
            client,
            reply_queue: String::new(),
            topic: String::new(),
            acks: Vec::new(),
        }
    }

    /// Sends a frame and waits for the broker's receipt.
    pub async fn send(&self, frame: Frame) {
        self.client
            .handle()
            .send_with_receipt(frame)
            .await
            .unwrap_or_else(|e| panic!("[{}] send: {e}", self.name));
    }

    /// Sends a `msg` to `topic` with this sealed body, our reply queue and an optional
    /// `ssm-reack`.
    pub async fn send_msg(&self, topic: &str, id: &str, sealed: &Bytes, reack: Option<&str>) {
        let frame = SsmMessage::Msg {
            id: id.to_string(),
            reply_to: Some(self.reply_queue.clone()),
            reack: reack.map(str::to_string),
            body: sealed.clone(),
        }
        .to_frame(topic);
        self.send(frame).await;
    }

    /// A bare SEND to our topic with our reply queue (for hand-made hostile frames).
    pub fn frame(&self) -> Frame {
        Frame::new(Command::Send)
            .with_header("destination", self.topic.as_str())
            .with_header("reply-to", self.reply_queue.as_str())
    }

    /// A `msg` to our topic with our reply queue and an optional `ssm-reack`.
    pub fn msg(&self, id: &str, reack: Option<&str>, body: Vec<u8>) -> Frame {
        SsmMessage::Msg {
            id: id.to_string(),
            reply_to: Some(self.reply_queue.clone()),
            reack: reack.map(str::to_string),
            body: Bytes::from(body),
        }
        .to_frame(&self.topic)
    }

    /// The next MESSAGE within [`WAIT`].
    pub async fn next(&mut self) -> Frame {
        match tokio::time::timeout(WAIT, self.client.recv()).await {
            Ok(Ok(Event::Message(m))) => m,
            Ok(Ok(Event::Error(e))) => panic!("[{}] ERROR frame: {e:?}", self.name),
            Ok(Ok(Event::Oversized(o))) => panic!("[{}] oversized frame: {o:?}", self.name),
            Ok(Err(e)) => panic!("[{}] connection lost: {e}", self.name),
            Err(_) => panic!("[{}] nothing within {WAIT:?}", self.name),
        }
    }

    /// The next SSM `ack` (other messages are skipped).
    pub async fn next_ack(&mut self) -> (AckOutcome, Frame) {
        loop {
            let frame = self.next().await;
            if let Ok(SsmMessage::Ack { outcome, .. }) = SsmMessage::from_frame(&frame) {
                return (outcome, frame);
            }
        }
    }

    /// Waits for an ack that stores a message with `md5`.
    pub async fn expect_stored(&mut self, md5: &str) {
        let (outcome, frame) = self.next_ack().await;
        assert_eq!(
            outcome,
            AckOutcome::Stored(md5.to_string()),
            "[{}] ack {frame:?}",
            self.name
        );
    }

    /// Asserts no message arrives for `quiet`.
    pub async fn silent(&mut self, quiet: Duration) {
        if let Ok(got) = tokio::time::timeout(quiet, self.client.recv()).await {
            panic!("[{}] expected silence, got {got:?}", self.name);
        }
    }

    /// The next ack (for `id` when the ack names what it answers), or `Nothing` after `wait`.
    pub async fn answer(&mut self, id: Option<&str>, wait: Duration) -> Answer {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let ev = match tokio::time::timeout_at(deadline, self.client.recv()).await {
                Err(_) => return Answer::Nothing,
                Ok(Err(e)) => panic!("[{}] connection lost waiting for an ack: {e}", self.name),
                Ok(Ok(ev)) => ev,
            };
            let Event::Message(f) = ev else { continue };
            if let Ok(SsmMessage::Ack { outcome, ack_for }) = SsmMessage::from_frame(&f) {
                if let (Some(want), Some(got)) = (id, ack_for.as_deref()) {
                    if want != got {
                        continue;
                    }
                }
                return match outcome {
                    AckOutcome::Stored(md5) => Answer::Stored(md5),
                    AckOutcome::Rejected { reason } => Answer::Rejected(reason.unwrap_or_default()),
                };
            }
        }
    }

    /// Reads acks into [`Peer::acks`] until `until` says stop or `wait` passed; returns whether
    /// `until` did.
    pub async fn read_acks(
        &mut self,
        wait: Duration,
        until: impl Fn(&[(Option<String>, AckOutcome)]) -> bool,
    ) -> bool {
        let deadline = tokio::time::Instant::now() + wait;
        while !until(&self.acks) {
            let ev = match tokio::time::timeout_at(deadline, self.client.recv()).await {
                Err(_) => return false,
                Ok(Err(e)) => panic!("[{}] connection lost waiting for acks: {e}", self.name),
                Ok(Ok(ev)) => ev,
            };
            let Event::Message(f) = ev else { continue };
            if let Ok(SsmMessage::Ack { outcome, ack_for }) = SsmMessage::from_frame(&f) {
                self.acks.push((ack_for, outcome));
            }
        }
        true
    }

    /// The MD5s acked as stored for `id` among [`Peer::acks`].
    pub fn stored_acks(&self, id: &str) -> Vec<String> {
        self.acks
            .iter()
            .filter(|(f, _)| f.as_deref() == Some(id))
            .filter_map(|(_, o)| match o {
                AckOutcome::Stored(md5) => Some(md5.clone()),
                AckOutcome::Rejected { .. } => None,
            })
            .collect()
    }
}
