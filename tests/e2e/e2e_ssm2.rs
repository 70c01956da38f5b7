//! End to end, SSM2 (version 2) into `ssm receive`: one-way messages with an `empa-id`, signed
//! and optionally encrypted, sent by a hand-driven peer (as the Python SSM 4.0 sends them) to
//! the topic a receiver listens on, beside SSM v1 senders on the same subscription.
//!
//! Runs against the embedded broker and every real broker in `SSM_TEST_BROKERS`.

use crate::support::e2e;

use std::time::Duration;

use bytes::Bytes;
use e2e::brokers::Target;
use e2e::{
    message, pki, records, sender_settings, sender_with, start_receiver, targets, tmp, topic,
    RunningReceiver,
};
use ssm::crypto::{self, Cipher, Identity};
use ssm::protocol::v2::Ssm2Message;
use ssm::queue::Record;
use ssm::stomp::Client;
use ssm::transport::stomp::frame_of;

/// Sends one SSM2 message (with a receipt), as the Python sender does.
async fn send_v2(client: &Client, topic: &str, empa_id: Option<&str>, body: &Bytes) {
    let envelope = match empa_id {
        Some(id) => Ssm2Message::new(id, body.clone()).to_envelope(topic),
        None => ssm::transport::Envelope::new(topic).with_body(body.clone()),
    };
    client
        .handle()
        .send_with_receipt(frame_of(envelope))
        .await
        .unwrap();
}

/// Seals as SSM2: signed by `signer`, encrypted for the test server when `encrypt`.
fn seal_v2(msg: &[u8], signer: &Identity, encrypt: bool) -> Bytes {
    let server = encrypt.then_some(&pki().server.cert);
    Bytes::from(crypto::seal_v2(msg, signer, server, Cipher::Aes128).unwrap())
}

/// Waits until the receiver has stored `stored` and rejected `rejected` elements.
async fn wait_for(t: &Target, rx: &RunningReceiver, stored: usize, rejected: usize) {
    let deadline = tokio::time::Instant::now() + e2e::WAIT;
    loop {
        let (s, r) = (rx.incoming().len(), rx.rejected().len());
        if (s, r) == (stored, rejected) {
            // Nothing more may arrive (a duplicate would show now).
            tokio::time::sleep(Duration::from_millis(300)).await;
            assert_eq!(
                (rx.incoming().len(), rx.rejected().len()),
                (stored, rejected),
                "[{}] more than expected",
                t.name
            );
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "[{}] stored {s} rejected {r}, expected {stored} and {rejected}",
            t.name
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn find<'a>(records: &'a [Record], empaid: &str) -> &'a Record {
    records
        .iter()
        .find(|r| r.empaid.as_deref() == Some(empaid))
        .unwrap_or_else(|| panic!("no record with empaid {empaid}: {records:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ssm2_messages_are_stored_as_the_python_receiver_stores_them() {
    for t in targets().await {
        let dir = tmp();
        let topic = topic();
        let rx = start_receiver(&t, &topic, &dir.path().join("store")).await;
        let client = t.connect_with(&e2e::client_config(&t)).await;
        let p = pki();
        // LF text with non-ASCII characters, signed only and signed + encrypted.
        let text = "APEL-individual-job-message: v0.3\nSite: café-ü\n%%\n".as_bytes();
        send_v2(
            &client,
            &topic,
            Some("a/1"),
            &seal_v2(text, &p.client, false),
        )
        .await;
        send_v2(
            &client,
            &topic,
            Some("a/2"),
            &seal_v2(text, &p.client, true),
        )
        .await;
        // No empa-id: stored as `noid`; `ping` is ignored.
        send_v2(&client, &topic, None, &seal_v2(b"no id\n", &p.client, true)).await;
        send_v2(&client, &topic, Some("ping"), &Bytes::from_static(b"ping")).await;
        wait_for(&t, &rx, 3, 0).await;
        let stored = rx.incoming();
        for id in ["a/1", "a/2"] {
            let r = find(&stored, id);
            assert_eq!(r.body, text, "[{}] {id}: body byte for byte", t.name);
            assert_eq!(r.signer.as_deref(), Some(p.pki.client.dn.as_str()));
            assert_eq!(r.error, None);
        }
        assert_eq!(find(&stored, "noid").body, b"no id\n");
        rx.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_ssm2_resend_is_stored_once_and_distinct_ids_are_distinct_messages() {
    for t in targets().await {
        let dir = tmp();
        let topic = topic();
        let rx = start_receiver(&t, &topic, &dir.path().join("store")).await;
        let client = t.connect_with(&e2e::client_config(&t)).await;
        let p = pki();
        let body = message("ssm2-resend", 0);
        let sealed = seal_v2(&body, &p.client, true);
        // The same bytes twice (a redelivery), the same message sealed again (a resend by
        // a sender that lost its receipt), and the same records sealed for another id.
        let copies = [
            ("r/1", sealed.clone()),
            ("r/1", sealed),
            ("r/1", seal_v2(&body, &p.client, true)),
            ("r/1", seal_v2(&body, &p.client, false)),
            ("r/2", seal_v2(&body, &p.client, true)),
        ];
        for (id, sealed) in &copies {
            send_v2(&client, &topic, Some(id), sealed).await;
        }
        wait_for(&t, &rx, 2, 0).await;
        let stats = rx.stop().await;
        assert_eq!(
            ssm::receiver::Stats::get(&stats.duplicates),
            3,
            "[{}] three copies of r/1",
            t.name
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hostile_ssm2_input_is_rejected_with_the_python_receivers_fields() {
    for t in targets().await {
        let dir = tmp();
        let topic = topic();
        let rx = start_receiver(&t, &topic, &dir.path().join("store")).await;
        let client = t.connect_with(&e2e::client_config(&t)).await;
        let p = pki();
        let stranger = Identity::load(&p.stranger.cert, &p.stranger.key).unwrap();
        let untrusted =
            Identity::load(&p.pki.untrusted_client.cert, &p.pki.untrusted_client.key).unwrap();
        let body = message("ssm2-hostile", 0);
        send_v2(
            &client,
            &topic,
            Some("h/garbage"),
            &Bytes::from_static(b"not s/mime at all"),
        )
        .await;
        send_v2(
            &client,
            &topic,
            Some("h/binary"),
            &Bytes::from_static(b"\x00\xff\xfe\x01"),
        )
        .await;
        send_v2(
            &client,
            &topic,
            Some("h/dn"),
            &seal_v2(&body, &stranger, true),
        )
        .await;
        send_v2(
            &client,
            &topic,
            Some("h/ca"),
            &seal_v2(&body, &untrusted, false),
        )
        .await;
        // A good one after them: the receiver keeps working.
        send_v2(
            &client,
            &topic,
            Some("h/good"),
            &seal_v2(&body, &p.client, true),
        )
        .await;
        wait_for(&t, &rx, 1, 4).await;
        let rejected = rx.rejected();
        for id in ["h/garbage", "h/binary", "h/ca"] {
            let r = find(&rejected, id);
            assert_eq!(
                r.signer.as_deref(),
                Some("Not available."),
                "[{}] {id}",
                t.name
            );
            assert!(r.error.as_deref().is_some_and(|e| !e.is_empty()));
        }
        let dn = find(&rejected, "h/dn");
        assert_eq!(dn.signer.as_deref(), Some(p.stranger.dn.as_str()));
        assert!(dn
            .error
            .as_deref()
            .is_some_and(|e| e.contains("not in the allowed-DN list")));
        assert_eq!(find(&rx.incoming(), "h/good").body, body);
        rx.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_receiver_takes_v1_and_ssm2_on_one_subscription() {
    for t in targets().await {
        let dir = tmp();
        let topic = topic();
        let rx = start_receiver(&t, &topic, &dir.path().join("store")).await;
        let client = t.connect_with(&e2e::client_config(&t)).await;
        let v1: Vec<Vec<u8>> = (0..5).map(|i| message("v1", i)).collect();
        let settings = sender_settings(&t, &topic, &pki().pki.client);
        let (mut sender, outgoing, _) = sender_with(settings, dir.path(), &v1);
        let v1_task = tokio::spawn(async move { sender.run_once().await });
        for i in 0..5 {
            let body = message("v2", i);
            send_v2(
                &client,
                &topic,
                Some(&format!("v2/{i}")),
                &seal_v2(&body, &pki().client, i % 2 == 0),
            )
            .await;
        }
        let summary = v1_task.await.unwrap().unwrap();
        assert_eq!(summary.acked, 5, "[{}] {summary}", t.name);
        assert_eq!(outgoing.count().unwrap(), 0);
        wait_for(&t, &rx, 10, 0).await;
        let bodies: Vec<Vec<u8>> = records(&rx.store().incoming)
            .into_iter()
            .map(|r| r.body)
            .collect();
        for i in 0..5 {
            assert!(bodies.contains(&message("v1", i)) && bodies.contains(&message("v2", i)));
        }
        rx.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_ssm2_sender_ships_its_queue_confirmed_by_receipts() {
    for t in targets().await {
        for (encrypt, window) in [(true, 8), (false, 1)] {
            let dir = tmp();
            let topic = topic();
            let rx = start_receiver(&t, &topic, &dir.path().join("store")).await;
            let msgs: Vec<Vec<u8>> = (0..30).map(|i| message("ssm2-sender", i)).collect();
            let mut settings = sender_settings(&t, &topic, &pki().pki.client);
            settings.version = ssm::protocol::Version::V2;
            settings.window = window;
            if !encrypt {
                settings.server_cert = None;
            }
            let (mut sender, outgoing, _) = sender_with(settings, dir.path(), &msgs);
            let names = outgoing.names().unwrap();
            let summary = sender
                .run_once()
                .await
                .unwrap_or_else(|e| panic!("[{}] sender: {e}", t.name));
            assert_eq!(
                (summary.sent, summary.acked, summary.retried),
                (30, 30, 0),
                "[{}] {summary}",
                t.name
            );
            assert_eq!(outgoing.count().unwrap(), 0, "[{}] queue emptied", t.name);
            assert_eq!(sender.stats.ack_latency.snapshot().count, 30);
            wait_for(&t, &rx, 30, 0).await;
            let stored = rx.incoming();
            for (name, body) in names.iter().zip(&msgs) {
                assert_eq!(&find(&stored, name).body, body, "[{}] {name}", t.name);
            }
            rx.stop().await;
        }
    }
}

/// A message above the receiver's frame limit is kept in reject/ (without its body) and
/// acknowledged at the broker: a new receiver on the same queue gets nothing again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_oversized_ssm2_message_is_rejected_and_acked_at_the_broker() {
    for t in targets().await {
        let dir = tmp();
        let queue = e2e::brokers::unique("/queue/e2e.");
        let store = dir.path().join("store");
        let mut cfg = e2e::client_config(&t);
        cfg.limits.max_body = 64 * 1024;
        let rx = e2e::start_receiver_with(&t, &queue, &store, cfg.clone(), &pki().dn_file).await;
        let client = t.connect_with(&e2e::client_config(&t)).await;
        let big = Bytes::from(vec![b'A'; 256 * 1024]);
        send_v2(&client, &queue, Some("o/big"), &big).await;
        let body = message("ssm2-after-big", 0);
        send_v2(
            &client,
            &queue,
            Some("o/good"),
            &seal_v2(&body, &pki().client, true),
        )
        .await;
        wait_for(&t, &rx, 1, 1).await;
        let r = &rx.rejected()[0];
        assert_eq!(r.empaid.as_deref(), Some("o/big"));
        assert_eq!(r.signer.as_deref(), Some("Not available."));
        assert!(r
            .error
            .as_deref()
            .is_some_and(|e| e.contains("frame limit")));
        let stats = rx.stop().await;
        assert_eq!(
            ssm::receiver::Stats::get(&stats.oversized),
            1,
            "[{}]",
            t.name
        );
        // Nothing comes again: both deliveries were acknowledged.
        let again = e2e::start_receiver_with(&t, &queue, &store, cfg, &pki().dn_file).await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let s = again.stop().await;
        assert_eq!(
            (
                ssm::receiver::Stats::get(&s.received),
                ssm::receiver::Stats::get(&s.oversized)
            ),
            (0, 0),
            "[{}] redelivered",
            t.name
        );
    }
}

/// A receiver started on a queue holding a backlog larger than its client's buffer (8 MiB)
/// drains it: the subscription's receipt comes behind the backlog on some brokers, and the
/// broker's prefetch (the embedded one's too) bounds what comes ahead of the acks.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_receiver_started_on_a_large_backlog_drains_it() {
    const N: usize = 700;
    for t in targets().await {
        let dir = tmp();
        let queue = e2e::brokers::unique("/queue/e2e.");
        let client = t.connect_with(&e2e::client_config(&t)).await;
        let padding = "x".repeat(16 * 1024);
        let mut bodies = Vec::new();
        for i in 0..N {
            let body = format!(
                "{}{padding}\n",
                String::from_utf8_lossy(&message("backlog", i))
            );
            let sealed = seal_v2(body.as_bytes(), &pki().client, false);
            send_v2(&client, &queue, Some(&format!("b/{i}")), &sealed).await;
            bodies.push(body.into_bytes());
        }
        let rx = start_receiver(&t, &queue, &dir.path().join("store")).await;
        rx.wait_incoming(&t.name, N, Duration::from_secs(120)).await;
        let stats = rx.stop().await;
        assert_eq!(
            ssm::receiver::Stats::get(&stats.stored),
            N as u64,
            "[{}]",
            t.name
        );
    }
}
