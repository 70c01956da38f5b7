//! End to end: what the receiver must refuse is answered `REJECTED`, never stored, kept with
//! its reason in the receiver's reject queue, and moved by the sender to its own reject queue.
//! Runs against the embedded broker and every real broker in `SSM_TEST_BROKERS`.

use crate::support::e2e;

use e2e::{
    message, pki, seal, sender_settings, sender_with, start_receiver, targets, tmp, topic, Peer,
};
use ssm::harness::pki::CertFiles;
use ssm::protocol::AckOutcome;
use ssm::receiver::Stats;

/// A real sender signing with `cert` is rejected with a reason containing `why`.
async fn sender_is_rejected(cert: &CertFiles, why: &str) {
    for t in targets().await {
        let dir = tmp();
        let topic = topic();
        let rx = start_receiver(&t, &topic, &dir.path().join("store")).await;
        let body = message("rejected", 0);
        let settings = sender_settings(&t, &topic, cert);
        let (mut sender, outgoing, reject) =
            sender_with(settings, dir.path(), std::slice::from_ref(&body));
        let name = outgoing.names().unwrap()[0].clone();
        let summary = sender
            .run_once()
            .await
            .unwrap_or_else(|e| panic!("[{}] sender: {e}", t.name));
        assert_eq!(
            (summary.acked, summary.rejected),
            (0, 1),
            "[{}] {summary}",
            t.name
        );
        assert_eq!(
            outgoing.count().unwrap(),
            0,
            "[{}] outgoing must end empty",
            t.name
        );
        let local = e2e::records(&reject);
        assert_eq!(local.len(), 1, "[{}] sender's reject queue", t.name);
        assert_eq!(local[0].body, body);
        assert_eq!(local[0].empaid.as_deref(), Some(name.as_str()));
        let reason = local[0].error.clone().unwrap_or_default();
        assert!(
            reason.contains(why),
            "[{}] sender's reason {reason:?} lacks {why:?}",
            t.name
        );

        assert!(rx.incoming().is_empty(), "[{}] nothing stored", t.name);
        let theirs = rx.rejected();
        assert_eq!(theirs.len(), 1, "[{}] receiver's reject queue", t.name);
        let reason = theirs[0].error.clone().unwrap_or_default();
        assert!(
            reason.contains(why),
            "[{}] receiver's reason {reason:?} lacks {why:?}",
            t.name
        );
        assert_eq!(theirs[0].empaid.as_deref(), Some(name.as_str()));
        let stats = rx.stop().await;
        assert_eq!(Stats::get(&stats.rejected), 1, "[{}]", t.name);
        assert_eq!(Stats::get(&stats.stored), 0, "[{}]", t.name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unknown_dn_is_rejected() {
    sender_is_rejected(&pki().stranger, "not in the allowed-DN list").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn untrusted_ca_is_rejected() {
    sender_is_rejected(&pki().pki.untrusted_client, "is not trusted").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn expired_certificate_is_rejected() {
    sender_is_rejected(&pki().pki.expired_client, "expired").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tampered_body_is_rejected() {
    for t in targets().await {
        let dir = tmp();
        let topic = topic();
        let rx = start_receiver(&t, &topic, &dir.path().join("store")).await;
        let mut peer = Peer::connect(&t).await;
        let sealed = seal(&message("tampered", 0));
        // Flip bytes in the middle of the base64 of the envelope: still a well-formed frame,
        // no longer a message anyone sealed.
        let mut bytes = sealed.to_vec();
        let mid = bytes.len() / 2;
        for b in &mut bytes[mid..mid + 8] {
            *b = if *b == b'A' { b'B' } else { b'A' };
        }
        peer.send_msg(&topic, "tampered-1", &bytes.into(), None)
            .await;
        let (outcome, frame) = peer.next_ack().await;
        match outcome {
            AckOutcome::Rejected { reason } => {
                assert!(
                    reason.is_some_and(|r| !r.is_empty()),
                    "[{}] {frame:?}",
                    t.name
                )
            }
            other => panic!("[{}] expected REJECTED, got {other:?}", t.name),
        }
        assert_eq!(frame.header("ssm-msg-id"), Some("REJECTED"));
        assert!(rx.incoming().is_empty(), "[{}] nothing stored", t.name);
        // The record is written before the REJECTED answer.
        let theirs = rx.rejected();
        assert_eq!(theirs.len(), 1, "[{}] receiver's reject queue", t.name);
        let stats = rx.stop().await;
        assert_eq!(Stats::get(&stats.rejected), 1);
        assert_eq!(theirs[0].empaid.as_deref(), Some("tampered-1"));
        assert!(theirs[0].error.as_ref().is_some_and(|e| !e.is_empty()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_msg_without_an_id_is_kept_with_the_reason_but_not_answered() {
    for t in targets().await {
        let dir = tmp();
        let topic = topic();
        let rx = start_receiver(&t, &topic, &dir.path().join("store")).await;
        let mut peer = Peer::connect(&t).await;
        let frame = ssm::stomp::Frame::new(ssm::stomp::Command::Send)
            .with_header("destination", topic.as_str())
            .with_header("ssm-msg-type", "msg")
            .with_header("reply-to", peer.reply_queue.as_str())
            .with_body(seal(&message("no-id", 0)));
        peer.send(frame).await;
        // An answer naming no message could serve only a forger (issue #13): the next answer
        // on this reply queue is the one for the next message.
        let good = message("no-id", 1);
        peer.send_msg(&topic, "good", &seal(&good), None).await;
        peer.expect_stored(&e2e::md5(&good)).await;
        let stats = rx.stop().await;
        assert_eq!(Stats::get(&stats.rejected), 1);
        let store = ssm::queue::MessageStore::open(&dir.path().join("store")).unwrap();
        assert_eq!(store.incoming.count().unwrap(), 1);
        assert_eq!(store.reject.count().unwrap(), 1, "[{}]", t.name);
        let kept = e2e::records(&store.reject);
        assert!(
            kept[0]
                .error
                .as_deref()
                .is_some_and(|e| e.contains("ssm-msg-id")),
            "[{}] {:?}",
            t.name,
            kept[0].error
        );
    }
}
