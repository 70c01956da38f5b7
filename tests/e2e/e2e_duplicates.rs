//! End to end: lost acks and resends. A resent message is stored once and acked again (even
//! across a receiver restart); `ssm-reack` (or `ssm-react`, on a `msg` or a `ping` from the same
//! reply queue) clears the record so that the same content sent again is a new message; the real
//! sender resends after its ack timeout. Runs against the embedded broker and every real broker
//! in `SSM_TEST_BROKERS`.

use crate::support::e2e;
use crate::support::frames::SsmFrames;

use std::time::Duration;

use e2e::{
    md5, message, pki, seal, sender_settings, sender_with, start_receiver, targets, tmp, topic,
    Peer,
};
use ssm::protocol::{AckOutcome, SsmMessage};
use ssm::receiver::Stats;
use ssm::stomp::{Command, Frame};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_same_sealed_message_twice_is_stored_once_and_acked_twice() {
    for t in targets().await {
        let dir = tmp();
        let topic = topic();
        let rx = start_receiver(&t, &topic, &dir.path().join("store")).await;
        let mut peer = Peer::connect(&t).await;
        let body = message("dup", 0);
        let sealed = seal(&body);
        peer.send_msg(&topic, "dup-1", &sealed, None).await;
        peer.expect_stored(&md5(&body)).await;
        peer.send_msg(&topic, "dup-1", &sealed, None).await;
        peer.expect_stored(&md5(&body)).await;
        let stored = rx.incoming();
        assert_eq!(stored.len(), 1, "[{}] stored once", t.name);
        assert_eq!(stored[0].body, body);
        let stats = rx.stop().await;
        assert_eq!(Stats::get(&stats.stored), 1, "[{}]", t.name);
        assert_eq!(Stats::get(&stats.duplicates), 1, "[{}]", t.name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sender_resends_after_a_lost_ack() {
    for t in targets().await {
        let dir = tmp();
        let topic = topic();
        let body = message("lost-ack", 0);
        let digest = md5(&body);
        // A fake receiver that ignores the first msg and acks the second.
        let mut fake = Peer::listening(&t, &topic).await;
        let name = t.name.clone();
        let d = digest.clone();
        let faker = tokio::spawn(async move {
            let mut ids = Vec::new();
            while ids.len() < 2 {
                let frame = fake.next().await;
                match SsmMessage::from_frame(&frame) {
                    Ok(SsmMessage::Msg { id, reply_to, .. }) => {
                        ids.push(id);
                        if ids.len() == 2 {
                            let ack = SsmMessage::Ack {
                                outcome: AckOutcome::Stored(d.clone()),
                                ack_for: None,
                            };
                            let reply_to = reply_to.expect("msg without reply-to");
                            fake.send(ack.to_frame(&reply_to)).await;
                        }
                    }
                    Ok(SsmMessage::Ping { .. }) => {}
                    other => panic!("[{name}] unexpected {other:?}"),
                }
            }
            // Then the closing ping carries the reack of the acked message.
            loop {
                let frame = fake.next().await;
                if let Ok(SsmMessage::Ping { reack }) = SsmMessage::from_frame(&frame) {
                    return (ids, reack);
                }
            }
        });
        let mut settings = sender_settings(&t, &topic, &pki().pki.client);
        settings.ack_timeout = Duration::from_secs(1);
        let (mut sender, outgoing, _) = sender_with(settings, dir.path(), &[body]);
        let name = outgoing.names().unwrap()[0].clone();
        let summary = sender
            .run_once()
            .await
            .unwrap_or_else(|e| panic!("[{}] sender: {e}", t.name));
        assert_eq!(
            (summary.sent, summary.acked, summary.retried),
            (2, 1, 1),
            "[{}] {summary}",
            t.name
        );
        assert_eq!(outgoing.count().unwrap(), 0, "[{}]", t.name);
        let (ids, reack) = tokio::time::timeout(e2e::WAIT, faker)
            .await
            .expect("fake receiver saw no ping")
            .unwrap();
        assert_eq!(
            ids,
            vec![name.clone(), name],
            "[{}] same id on the resend",
            t.name
        );
        assert_eq!(reack, Some(digest), "[{}] ping reacks the message", t.name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn same_content_twice_with_reack_between_is_stored_twice() {
    for t in targets().await {
        let dir = tmp();
        let topic = topic();
        let rx = start_receiver(&t, &topic, &dir.path().join("store")).await;
        let body = message("twice", 0);
        let settings = sender_settings(&t, &topic, &pki().pki.client);
        let (mut sender, outgoing, _) =
            sender_with(settings, dir.path(), &[body.clone(), body.clone()]);
        let summary = sender
            .run_once()
            .await
            .unwrap_or_else(|e| panic!("[{}] sender: {e}", t.name));
        assert_eq!(summary.acked, 2, "[{}] {summary}", t.name);
        assert_eq!(outgoing.count().unwrap(), 0);
        let stored = rx.incoming();
        assert_eq!(stored.len(), 2, "[{}] stored twice", t.name);
        assert!(stored.iter().all(|r| r.body == body));
        let stats = rx.stop().await;
        assert_eq!(Stats::get(&stats.duplicates), 0, "[{}]", t.name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_resend_after_a_receiver_restart_is_still_a_duplicate() {
    for t in targets().await {
        let dir = tmp();
        let topic = topic();
        let store = dir.path().join("store");
        let rx = start_receiver(&t, &topic, &store).await;
        let mut peer = Peer::connect(&t).await;
        let body = message("restart", 0);
        let sealed = seal(&body);
        peer.send_msg(&topic, "restart-1", &sealed, None).await;
        peer.expect_stored(&md5(&body)).await;
        rx.stop().await;

        let rx = start_receiver(&t, &topic, &store).await;
        peer.send_msg(&topic, "restart-1", &sealed, None).await;
        peer.expect_stored(&md5(&body)).await;
        assert_eq!(rx.incoming().len(), 1, "[{}] stored once", t.name);
        let stats = rx.stop().await;
        assert_eq!(Stats::get(&stats.duplicates), 1, "[{}]", t.name);
        assert_eq!(Stats::get(&stats.stored), 0, "[{}]", t.name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reack_on_a_later_msg_clears_the_record() {
    for spelling in ["ssm-reack", "ssm-react"] {
        for t in targets().await {
            let dir = tmp();
            let topic = topic();
            let rx = start_receiver(&t, &topic, &dir.path().join("store")).await;
            let mut peer = Peer::connect(&t).await;
            let (a, b) = (message("reack-a", 0), message("reack-b", 0));
            let sealed_a = seal(&a);
            peer.send_msg(&topic, "a", &sealed_a, None).await;
            peer.expect_stored(&md5(&a)).await;
            // B confirms A's ack, with the header spelt by hand.
            let frame = Frame::new(Command::Send)
                .with_header("destination", topic.as_str())
                .with_header("ssm-msg-type", "msg")
                .with_header("ssm-msg-id", "b")
                .with_header("reply-to", peer.reply_queue.as_str())
                .with_header(spelling, md5(&a))
                .with_body(seal(&b));
            peer.send(frame).await;
            peer.expect_stored(&md5(&b)).await;
            // A again is a new message now (sealed again, as the sender seals every send: the
            // same sealed bytes again would be a replay, a duplicate whatever its headers).
            peer.send_msg(&topic, "a2", &seal(&a), None).await;
            peer.expect_stored(&md5(&a)).await;
            let stored: Vec<Vec<u8>> = rx.incoming().into_iter().map(|r| r.body).collect();
            assert_eq!(stored, vec![a.clone(), b, a], "[{}] {spelling}", t.name);
            let stats = rx.stop().await;
            assert_eq!(Stats::get(&stats.duplicates), 0, "[{}] {spelling}", t.name);
        }
    }
}

/// A `ping` from `reacker` carrying `ssm-reack: md5(a)`, then a `msg` from it whose ack proves
/// the ping was handled (one connection's frames are handled in order).
async fn ping_reack(reacker: &mut Peer, topic: &str, a: &[u8], tag: &str) {
    let ping = SsmMessage::Ping {
        reack: Some(md5(a)),
    }
    .to_frame(topic)
    .with_header("reply-to", reacker.reply_queue.as_str());
    reacker.send(ping).await;
    let marker = message(tag, 99);
    reacker.send_msg(topic, tag, &seal(&marker), None).await;
    reacker.expect_stored(&md5(&marker)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reack_on_a_ping_clears_the_record_only_for_its_reply_queue() {
    for t in targets().await {
        let dir = tmp();
        let topic = topic();
        let rx = start_receiver(&t, &topic, &dir.path().join("store")).await;
        let mut peer = Peer::connect(&t).await;
        let mut other = Peer::connect(&t).await;
        let a = message("ping-a", 0);
        let sealed_a = seal(&a);
        peer.send_msg(&topic, "a", &sealed_a, None).await;
        peer.expect_stored(&md5(&a)).await;

        // Another reply queue cannot clear it: A is still a duplicate.
        ping_reack(&mut other, &topic, &a, "other-marker").await;
        peer.send_msg(&topic, "a", &sealed_a, None).await;
        peer.expect_stored(&md5(&a)).await;
        assert_eq!(rx.incoming().len(), 2, "[{}] A once + marker", t.name);
        assert_eq!(Stats::get(&rx.stats.duplicates), 1, "[{}]", t.name);

        // The sender's own ping clears it. A late copy of that same message (same id) is
        // still a duplicate; the same bytes queued again (a new id) are stored again.
        ping_reack(&mut peer, &topic, &a, "own-marker").await;
        peer.send_msg(&topic, "a", &sealed_a, None).await;
        peer.expect_stored(&md5(&a)).await;
        assert_eq!(
            Stats::get(&rx.stats.duplicates),
            2,
            "[{}] late copy",
            t.name
        );
        // Sealed again, as the sender does (the same sealed bytes would be a replay).
        peer.send_msg(&topic, "a-again", &seal(&a), None).await;
        peer.expect_stored(&md5(&a)).await;
        let bodies: Vec<Vec<u8>> = rx.incoming().into_iter().map(|r| r.body).collect();
        assert_eq!(
            bodies.iter().filter(|b| **b == a).count(),
            2,
            "[{}]",
            t.name
        );
        assert_eq!(bodies.len(), 4, "[{}]", t.name);
        let stats = rx.stop().await;
        assert_eq!(Stats::get(&stats.duplicates), 2, "[{}]", t.name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_late_answer_to_a_resend_is_not_taken_for_the_next_message() {
    for t in targets().await {
        let dir = tmp();
        let topic = topic();
        let (m1, m2) = (message("late", 1), message("late", 2));
        let d2 = md5(&m2);
        // A fake receiver, slow on the first message: it answers only the resend, then also
        // the first send (late, REJECTED both times), and acks the second message normally.
        let mut fake = Peer::listening(&t, &topic).await;
        let name = t.name.clone();
        let faker = tokio::spawn(async move {
            let mut sends = 0;
            loop {
                let frame = fake.next().await;
                let Ok(SsmMessage::Msg { id, reply_to, .. }) = SsmMessage::from_frame(&frame)
                else {
                    continue;
                };
                let reply_to = reply_to.expect("reply-to");
                sends += 1;
                let reply = |outcome| {
                    SsmMessage::Ack {
                        outcome,
                        ack_for: Some(id.clone()),
                    }
                    .to_frame(&reply_to)
                };
                let rejected = || AckOutcome::Rejected {
                    reason: Some("late".into()),
                };
                match sends {
                    1 => {}
                    2 => {
                        fake.send(reply(rejected())).await;
                        fake.send(reply(rejected())).await;
                    }
                    3 => {
                        fake.send(reply(AckOutcome::Stored(d2.clone()))).await;
                        return;
                    }
                    _ => panic!("[{name}] unexpected send {sends}"),
                }
            }
        });
        let mut settings = sender_settings(&t, &topic, &pki().pki.client);
        settings.ack_timeout = Duration::from_secs(1);
        let (mut sender, outgoing, reject) = sender_with(settings, dir.path(), &[m1.clone(), m2]);
        let summary = sender
            .run_once()
            .await
            .unwrap_or_else(|e| panic!("[{}] sender: {e}", t.name));
        assert_eq!(
            (summary.acked, summary.rejected, summary.retried),
            (1, 1, 1),
            "[{}] {summary}",
            t.name
        );
        assert_eq!(outgoing.count().unwrap(), 0);
        let rejected = e2e::records(&reject);
        assert_eq!(rejected.len(), 1);
        assert_eq!(
            rejected[0].body, m1,
            "[{}] only the first was rejected",
            t.name
        );
        faker.await.unwrap();
    }
}
