//! STOMP conformance: the client against the embedded broker and every real broker named in
//! `SSM_TEST_BROKERS` (see `support/brokers.rs`). Each test runs its scenario against every
//! target in turn; a failure names the broker. Destinations are unique per test, so the tests
//! may run in parallel against one real broker.

use crate::support::brokers;

use std::time::Duration;

use brokers::{next_message, no_message, targets, unique};
use bytes::Bytes;
use ssm::stomp::{AckMode, BrokerKind, Command, Frame, Version};

fn send(dest: &str, body: impl Into<Bytes>) -> Frame {
    Frame::new(Command::Send)
        .with_header("destination", dest)
        .with_body(body)
}

#[tokio::test]
async fn connects_and_detects_the_broker() {
    for t in targets().await {
        let client = t.connect().await;
        if let Some(kind) = t.expect {
            assert_eq!(
                client.kind(),
                kind,
                "[{}] server {:?}",
                t.name,
                client.server()
            );
        }
        assert_eq!(client.version(), Version::V1_2, "[{}]", t.name);
        assert_eq!(client.broker(), &t.addr);
        client
            .disconnect()
            .await
            .unwrap_or_else(|e| panic!("[{}] disconnect: {e}", t.name));
    }
}

#[tokio::test]
async fn topic_messages_fan_out_to_every_subscriber() {
    for t in targets().await {
        let topic = unique("/topic/");
        let mut subs = Vec::new();
        for _ in 0..2 {
            let c = t.connect().await;
            c.handle()
                .subscribe(&topic, AckMode::Auto, &[])
                .await
                .unwrap_or_else(|e| panic!("[{}] subscribe: {e}", t.name));
            subs.push(c);
        }
        let publisher = t.connect().await;
        publisher
            .handle()
            .send_with_receipt(send(&topic, &b"fan-out"[..]).with_header("x-test", "1"))
            .await
            .unwrap_or_else(|e| panic!("[{}] send: {e}", t.name));
        for sub in &mut subs {
            let m = next_message(&t.name, sub).await;
            assert_eq!(&m.body[..], b"fan-out", "[{}]", t.name);
            assert_eq!(m.header("x-test"), Some("1"), "[{}]", t.name);
            assert_eq!(m.header("content-length"), Some("7"), "[{}]", t.name);
        }
        for sub in &mut subs {
            no_message(&t.name, sub, Duration::from_millis(200)).await;
        }
    }
}

#[tokio::test]
async fn queues_keep_messages_until_acked() {
    for t in targets().await {
        let queue = unique("/queue/");
        let producer = t.connect().await;
        // Sent before anyone subscribes: a queue keeps them.
        for i in 0..3 {
            producer
                .handle()
                .send_with_receipt(send(&queue, format!("m{i}")))
                .await
                .unwrap_or_else(|e| panic!("[{}] send: {e}", t.name));
        }
        // The first consumer takes one message and leaves without acking it.
        let mut c1 = t.connect().await;
        c1.handle()
            .subscribe(
                &queue,
                AckMode::ClientIndividual,
                &[("prefetch-count", "1")],
            )
            .await
            .unwrap();
        let first = next_message(&t.name, &mut c1).await;
        assert_eq!(&first.body[..], b"m0", "[{}]", t.name);
        drop(c1);

        // The second gets all three, the unacked one again, and acks each.
        let mut c2 = t.connect().await;
        let h2 = c2.handle();
        h2.subscribe(&queue, AckMode::ClientIndividual, &[])
            .await
            .unwrap();
        let mut bodies = Vec::new();
        for _ in 0..3 {
            let m = next_message(&t.name, &mut c2).await;
            h2.ack(&m)
                .await
                .unwrap_or_else(|e| panic!("[{}] ack: {e}", t.name));
            bodies.push(String::from_utf8_lossy(&m.body).into_owned());
        }
        bodies.sort();
        assert_eq!(bodies, ["m0", "m1", "m2"], "[{}]", t.name);
        // Acked messages are gone.
        c2.disconnect().await.unwrap();
        let mut c3 = t.connect().await;
        c3.handle()
            .subscribe(&queue, AckMode::ClientIndividual, &[])
            .await
            .unwrap();
        no_message(&t.name, &mut c3, Duration::from_millis(500)).await;
    }
}

/// The SSM exchange: a request to a topic carrying `reply-to: /temp-queue/…`, answered to the
/// `reply-to` exactly as the responder received it.
#[tokio::test]
async fn temp_queue_request_reply() {
    for t in targets().await {
        let topic = unique("/topic/");
        let temp = unique("/temp-queue/");
        let mut responder = t.connect().await;
        responder
            .handle()
            .subscribe(&topic, AckMode::ClientIndividual, &[])
            .await
            .unwrap();

        let mut requester = t.connect().await;
        let kind = requester.kind();
        if t.subscribe_temp_queue(kind) {
            requester
                .handle()
                .subscribe(&temp, AckMode::Auto, &[])
                .await
                .unwrap_or_else(|e| panic!("[{}] subscribe to temp queue: {e}", t.name));
        }
        requester
            .handle()
            .send_with_receipt(
                send(&topic, &b"ping"[..])
                    .with_header("reply-to", temp.as_str())
                    .with_header("ssm-msg-type", "ping"),
            )
            .await
            .unwrap();

        let request = next_message(&t.name, &mut responder).await;
        responder.handle().ack(&request).await.unwrap();
        let reply_to = request
            .header("reply-to")
            .unwrap_or_else(|| panic!("[{}] request lost its reply-to", t.name))
            .to_string();
        match kind {
            BrokerKind::RabbitMq => assert!(reply_to.starts_with("/reply-queue/"), "{reply_to}"),
            BrokerKind::ActiveMq | BrokerKind::Embedded => {
                assert!(reply_to.starts_with("/remote-temp-queue/"), "{reply_to}")
            }
            BrokerKind::Other => {}
        }
        responder
            .handle()
            .send_with_receipt(send(&reply_to, &b"pong"[..]).with_header("ssm-msg-type", "ack"))
            .await
            .unwrap_or_else(|e| panic!("[{}] reply to {reply_to}: {e}", t.name));

        let reply = next_message(&t.name, &mut requester).await;
        assert_eq!(&reply.body[..], b"pong", "[{}]", t.name);
        assert_eq!(reply.header("ssm-msg-type"), Some("ack"), "[{}]", t.name);
        // Nobody else got it.
        no_message(&t.name, &mut responder, Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn receipts_for_concurrent_senders() {
    for t in targets().await {
        let topic = unique("/topic/");
        let client = t.connect().await;
        let mut tasks = Vec::new();
        for i in 0..20 {
            let h = client.handle();
            let topic = topic.clone();
            tasks.push(tokio::spawn(async move {
                h.send_with_receipt(send(&topic, format!("{i}"))).await
            }));
        }
        for task in tasks {
            task.await
                .unwrap()
                .unwrap_or_else(|e| panic!("[{}] receipt: {e}", t.name));
        }
        let h = client.handle();
        let id = h.subscribe(&topic, AckMode::Auto, &[]).await.unwrap();
        h.unsubscribe(&id)
            .await
            .unwrap_or_else(|e| panic!("[{}] unsubscribe: {e}", t.name));
        client.disconnect().await.unwrap();
    }
}

#[tokio::test]
async fn heartbeats_keep_an_idle_connection_alive() {
    for t in targets().await {
        let mut cfg = t.config();
        cfg.heartbeat = (Duration::from_secs(1), Duration::from_secs(1));
        let mut client = t.connect_with(&cfg).await;
        let (send_every, expect_every) = client.heartbeat();
        if t.embedded.is_some() {
            assert_eq!(
                (send_every, expect_every),
                (Duration::from_secs(1), Duration::from_secs(1))
            );
        }
        assert!(
            !send_every.is_zero() || !expect_every.is_zero(),
            "[{}] broker negotiated no heart-beats",
            t.name
        );
        // Idle for three intervals: the broker would drop us without our heart-beats, and we
        // would drop it without its.
        no_message(&t.name, &mut client, Duration::from_secs(3)).await;
        let topic = unique("/topic/");
        client
            .handle()
            .send_with_receipt(send(&topic, &b"still here"[..]))
            .await
            .unwrap_or_else(|e| panic!("[{}] after idling: {e}", t.name));
    }
}

#[tokio::test]
async fn ten_mib_binary_body_with_nuls() {
    let body: Bytes = (0..10 * 1024 * 1024usize)
        .map(|i| (i % 251) as u8)
        .collect::<Vec<u8>>()
        .into();
    assert!(body.contains(&0));
    for t in targets().await {
        let queue = unique("/queue/");
        let mut consumer = t.connect().await;
        consumer
            .handle()
            .subscribe(&queue, AckMode::ClientIndividual, &[])
            .await
            .unwrap();
        let producer = t.connect().await;
        producer
            .handle()
            .send_with_receipt(send(&queue, body.clone()))
            .await
            .unwrap_or_else(|e| panic!("[{}] send 10 MiB: {e}", t.name));
        let m = next_message(&t.name, &mut consumer).await;
        assert_eq!(m.body.len(), body.len(), "[{}]", t.name);
        assert!(m.body == body, "[{}] body differs", t.name);
        consumer.handle().ack(&m).await.unwrap();
    }
}

#[tokio::test]
async fn a_departed_temp_queue_does_not_break_the_sender() {
    for t in targets().await {
        let temp = unique("/temp-queue/");
        let topic = unique("/topic/");
        let mut responder = t.connect().await;
        responder
            .handle()
            .subscribe(&topic, AckMode::Auto, &[])
            .await
            .unwrap();
        let requester = t.connect().await;
        if t.subscribe_temp_queue(requester.kind()) {
            requester
                .handle()
                .subscribe(&temp, AckMode::Auto, &[])
                .await
                .unwrap();
        }
        requester
            .handle()
            .send_with_receipt(send(&topic, &b"req"[..]).with_header("reply-to", temp.as_str()))
            .await
            .unwrap();
        let request = next_message(&t.name, &mut responder).await;
        let reply_to = request.header("reply-to").unwrap().to_string();
        requester.disconnect().await.unwrap();
        // ActiveMQ answers this SEND with an asynchronous ERROR; others drop it. Either way the
        // responder's connection stays usable.
        let h = responder.handle();
        let _ = h.send(send(&reply_to, &b"late"[..])).await;
        if let Ok(Ok(ev)) = tokio::time::timeout(Duration::from_millis(500), responder.recv()).await
        {
            assert!(
                matches!(ev, ssm::stomp::Event::Error(_)),
                "[{}] unexpected {ev:?}",
                t.name
            );
        }
        h.send_with_receipt(send(&topic, &b"still fine"[..]))
            .await
            .unwrap_or_else(|e| panic!("[{}] after the departed reply: {e}", t.name));
    }
}

#[test]
fn named_brokers_list_parses() {
    // The variable format the suite relies on.
    let list = "rabbitmq=127.0.0.1:61613, activemq=[::1]:61614";
    let parsed = brokers::parse_named("SSM_TEST_BROKERS", list);
    assert_eq!(parsed.len(), 2);
    assert_eq!(parsed[1].0, "activemq");
    assert_eq!(parsed[1].1.host, "::1");
    assert_eq!(
        brokers::expected_kind("rabbitmq-tls"),
        Some(BrokerKind::RabbitMq)
    );
    assert_eq!(brokers::expected_kind("other"), None);
}

#[test]
#[should_panic(expected = "not name=host:port")]
fn a_malformed_broker_list_fails_loudly() {
    brokers::parse_named("SSM_TEST_BROKERS", "127.0.0.1:61613");
}
