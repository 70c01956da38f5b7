//! Where the embedded broker delivers messages: topics, queues, acks and redelivery, temporary
//! reply queues in both broker styles.

use crate::support::stomp_raw;

use std::collections::HashSet;

use ssm::stomp::{Command, Frame};
use stomp_raw::*;

#[tokio::test]
async fn topic_fans_out_to_every_subscriber_and_drops_unheard_messages() {
    let b = broker().await;
    let mut s1 = connect(b.local_addr()).await;
    let mut s2 = connect(b.local_addr()).await;
    let mut p = connect(b.local_addr()).await;
    p.publish("/topic/t", b"before anyone listens", &[]).await;
    s1.subscribe("/topic/t", "a", "auto").await;
    s2.subscribe("/topic/t", "b", "auto").await;
    p.publish("/topic/t", b"hello", &[("x-user", "1")]).await;
    for (s, id) in [(&mut s1, "a"), (&mut s2, "b")] {
        let m = s.message().await;
        assert_eq!(&m.body[..], b"hello");
        assert_eq!(m.header("destination"), Some("/topic/t"));
        assert_eq!(m.header("subscription"), Some(id));
        assert_eq!(m.header("x-user"), Some("1"));
        assert!(m.header("message-id").is_some());
        s.expect_nothing().await;
    }
    assert_eq!(b.queued_bytes(), 0, "topic messages are not kept");
}

#[tokio::test]
async fn queue_keeps_messages_until_consumed() {
    let b = broker().await;
    let mut p = connect(b.local_addr()).await;
    for i in 0..3 {
        let body = format!("m{i}");
        p.publish("/queue/q", body.as_bytes(), &[("k", "v")]).await;
    }
    assert_eq!(b.queue_depth("/queue/q"), 3);
    drop(p);
    let mut c = connect(b.local_addr()).await;
    c.subscribe("/queue/q", "s", "auto").await;
    let mut ids = HashSet::new();
    for i in 0..3 {
        let m = c.message().await;
        assert_eq!(m.body, format!("m{i}").as_bytes());
        assert_eq!(m.header("k"), Some("v"));
        assert_eq!(m.header("receipt"), None, "receipt must not be forwarded");
        assert_eq!(
            m.header("content-length"),
            Some(m.body.len().to_string().as_str())
        );
        assert!(ids.insert(m.header("message-id").unwrap().to_string()));
    }
    c.expect_nothing().await;
    assert_eq!(b.queue_depth("/queue/q"), 0);
}

#[tokio::test]
async fn competing_consumers_share_a_queue_round_robin() {
    let b = broker().await;
    let mut c1 = connect(b.local_addr()).await;
    let mut c2 = connect(b.local_addr()).await;
    c1.subscribe("/queue/work", "1", "auto").await;
    c2.subscribe("/queue/work", "2", "auto").await;
    let mut p = connect(b.local_addr()).await;
    for i in 0..10 {
        p.publish("/queue/work", format!("{i}").as_bytes(), &[])
            .await;
    }
    let mut seen = HashSet::new();
    for c in [&mut c1, &mut c2] {
        for _ in 0..5 {
            let m = c.message().await;
            assert!(seen.insert(m.body.clone()), "duplicate delivery");
        }
        c.expect_nothing().await;
    }
    assert_eq!(seen.len(), 10);
}

#[tokio::test]
async fn unacked_messages_are_redelivered_when_their_consumer_disconnects() {
    let b = broker().await;
    let mut p = connect(b.local_addr()).await;
    for i in 0..3 {
        p.publish("/queue/r", format!("m{i}").as_bytes(), &[]).await;
    }
    let mut a = connect(b.local_addr()).await;
    a.subscribe("/queue/r", "a", "client-individual").await;
    let mut got = Vec::new();
    for _ in 0..3 {
        got.push(a.message().await);
    }
    assert!(got.iter().all(|m| m.header("redelivered").is_none()));
    // Acknowledge only the middle one.
    a.request(Frame::new(Command::Ack).with_header("id", got[1].header("ack").unwrap()))
        .await;
    drop(a);

    let mut c = connect(b.local_addr()).await;
    c.subscribe("/queue/r", "c", "auto").await;
    for want in ["m0", "m2"] {
        let m = c.message().await;
        assert_eq!(m.body, want.as_bytes());
        assert_eq!(m.header("redelivered"), Some("true"));
    }
    c.expect_nothing().await;
}

#[tokio::test]
async fn client_ack_is_cumulative_and_unsubscribe_returns_the_rest() {
    let b = broker().await;
    let mut c = connect(b.local_addr()).await;
    c.subscribe("/queue/cum", "s", "client").await;
    let mut p = connect(b.local_addr()).await;
    for i in 0..3 {
        p.publish("/queue/cum", format!("m{i}").as_bytes(), &[])
            .await;
    }
    let ms: Vec<Frame> = [c.message().await, c.message().await, c.message().await].into();
    // Acking the second acknowledges the first too.
    c.request(Frame::new(Command::Ack).with_header("id", ms[1].header("ack").unwrap()))
        .await;
    c.request(Frame::new(Command::Unsubscribe).with_header("id", "s"))
        .await;
    c.subscribe("/queue/cum", "t", "auto").await;
    let m = c.message().await;
    assert_eq!(m.body, &b"m2"[..]);
    assert_eq!(m.header("subscription"), Some("t"));
    assert_eq!(m.header("redelivered"), Some("true"));
    c.expect_nothing().await;
}

#[tokio::test]
async fn nack_redelivers() {
    let b = broker().await;
    let mut c = connect(b.local_addr()).await;
    c.subscribe("/queue/n", "s", "client-individual").await;
    c.publish("/queue/n", b"again", &[]).await;
    let m = c.message().await;
    assert_eq!(m.header("redelivered"), None);
    c.send(Frame::new(Command::Nack).with_header("id", m.header("ack").unwrap()))
        .await;
    let m2 = c.message().await;
    assert_eq!(&m2.body[..], b"again");
    assert_eq!(m2.header("redelivered"), Some("true"));
    assert_eq!(m2.header("message-id"), m.header("message-id"));
    c.request(Frame::new(Command::Ack).with_header("id", m2.header("ack").unwrap()))
        .await;
    c.expect_nothing().await;
    assert_eq!(b.queued_bytes(), 0);
}

#[tokio::test]
async fn stomp_1_1_acks_by_message_id() {
    let b = broker().await;
    let mut c = connect_with(b.local_addr(), &[("accept-version", "1.1")]).await;
    c.subscribe("/queue/v11", "s", "client-individual").await;
    c.publish("/queue/v11", b"x", &[]).await;
    let m = c.message().await;
    c.request(
        Frame::new(Command::Ack)
            .with_header("message-id", m.header("message-id").unwrap())
            .with_header("subscription", "s"),
    )
    .await;
    drop(c);
    let mut d = connect(b.local_addr()).await;
    d.subscribe("/queue/v11", "s", "auto").await;
    d.expect_nothing().await;
}

/// Requester side of a request/reply; returns the `reply-to` the responder saw.
async fn request_reply(explicit: bool) {
    let b = broker().await;
    let mut responder = connect(b.local_addr()).await;
    responder.subscribe("/queue/req", "r", "auto").await;
    let mut requester = connect(b.local_addr()).await;
    if explicit {
        requester
            .subscribe("/temp-queue/x", "replies", "auto")
            .await;
    }
    requester
        .publish("/queue/req", b"ping", &[("reply-to", "/temp-queue/x")])
        .await;
    let req = responder.message().await;
    let reply_to = req.header("reply-to").unwrap().to_string();
    let session = requester.connected.header("session").unwrap();
    assert_eq!(reply_to, format!("/remote-temp-queue/{session}.x"));
    responder.publish(&reply_to, b"pong", &[]).await;
    let rep = requester.message().await;
    assert_eq!(&rep.body[..], b"pong");
    assert_eq!(rep.header("destination"), Some("/temp-queue/x"));
    let sub = if explicit { "replies" } else { "/temp-queue/x" };
    assert_eq!(rep.header("subscription"), Some(sub));
}

#[tokio::test]
async fn temp_queue_reply_activemq_style() {
    request_reply(true).await;
}

#[tokio::test]
async fn temp_queue_reply_rabbitmq_style() {
    request_reply(false).await;
}

#[tokio::test]
async fn temp_queues_are_private() {
    let b = broker().await;
    let mut owner = connect(b.local_addr()).await;
    owner.subscribe("/temp-queue/x", "mine", "auto").await;
    let mut other = connect(b.local_addr()).await;
    other.subscribe("/temp-queue/x", "theirs", "auto").await;
    let session = owner.connected.header("session").unwrap().to_string();
    let wide = format!("/remote-temp-queue/{session}.x");
    other.publish(&wide, b"for the owner", &[]).await;
    assert_eq!(&owner.message().await.body[..], b"for the owner");
    other.expect_nothing().await;
    // Sending to /temp-queue/x names the sender's own temp queue, never the owner's.
    other.publish("/temp-queue/x", b"own", &[]).await;
    let m = other.message().await;
    assert_eq!(m.header("subscription"), Some("theirs"));
    owner.expect_nothing().await;
    // Subscribing to the owner's broker-wide name is refused.
    other
        .send(
            Frame::new(Command::Subscribe)
                .with_header("destination", &wide)
                .with_header("id", "steal"),
        )
        .await;
    let frames = expect_closed(&mut other.framed).await;
    assert_eq!(frames.len(), 1, "{frames:?}");
    assert_eq!(frames[0].command, Command::Error);
    assert!(frames[0]
        .header("message")
        .unwrap()
        .contains("another connection"));
}

#[tokio::test]
async fn send_to_departed_temp_queue_is_dropped_with_a_receipt() {
    let b = broker().await;
    let mut requester = connect(b.local_addr()).await;
    requester.subscribe("/temp-queue/gone", "s", "auto").await;
    let wide = format!(
        "/remote-temp-queue/{}.gone",
        requester.connected.header("session").unwrap()
    );
    requester
        .send(Frame::new(Command::Disconnect).with_header("receipt", "bye"))
        .await;
    let frames = expect_closed(&mut requester.framed).await;
    assert_eq!(frames[0].header("receipt-id"), Some("bye"));
    let mut responder = connect(b.local_addr()).await;
    responder.publish(&wide, b"too late", &[]).await;
    // The sender's connection is still fine.
    responder.subscribe("/queue/still-alive", "s", "auto").await;
    responder.publish("/queue/still-alive", b"ok", &[]).await;
    assert_eq!(&responder.message().await.body[..], b"ok");
    assert_eq!(b.queued_bytes(), 0);
}

#[tokio::test]
async fn big_binary_body_goes_through_intact() {
    let b = broker().await;
    let mut c = connect(b.local_addr()).await;
    c.subscribe("/queue/big", "s", "auto").await;
    let body: Vec<u8> = (0..10 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .chain([0u8, 0, 0])
        .collect();
    assert!(body.contains(&0));
    c.publish("/queue/big", &body, &[]).await;
    let m = c.message().await;
    assert_eq!(m.body.len(), body.len());
    assert!(m.body == body[..]);
}
