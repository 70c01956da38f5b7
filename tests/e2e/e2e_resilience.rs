//! End to end, when things go wrong: no receiver (the message stays queued, unlocked), no
//! certresp, an ack to a sender that already left (ActiveMQ answers with an ERROR the receiver
//! must shrug off), the closing `ping` of a pass clearing the receiver's record, a large
//! message, and a broker restart in the middle of a pass (embedded broker only: restarting a
//! shared real broker would break tests running beside this one; `stomp_restart.rs` covers the
//! client's reconnects on real brokers).

use crate::support::e2e;
use crate::support::messages::assert_exactly_once;

use std::time::Duration;

use e2e::{
    md5, message, pki, seal, sender_settings, sender_with, start_receiver, targets, tmp, topic,
    Peer,
};
use ssm::broker;
use ssm::receiver::Stats;
use ssm::sender::SenderError;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn without_a_receiver_the_message_stays_queued_and_unlocked() {
    for t in targets().await {
        let dir = tmp();
        let mut settings = sender_settings(&t, &topic(), &pki().pki.client);
        settings.ack_timeout = Duration::from_millis(500);
        settings.max_attempts = 2;
        let (mut sender, outgoing, reject) =
            sender_with(settings, dir.path(), &[message("nobody", 0)]);
        let name = outgoing.names().unwrap()[0].clone();
        match sender.run_once().await {
            Err(SenderError::NoAck { id, attempts }) => {
                assert_eq!((id.as_str(), attempts), (name.as_str(), 2), "[{}]", t.name)
            }
            other => panic!("[{}] expected NoAck, got {other:?}", t.name),
        }
        assert_eq!(outgoing.count().unwrap(), 1, "[{}]", t.name);
        assert!(
            !outgoing.is_locked(&name).unwrap(),
            "[{}] left locked",
            t.name
        );
        assert_eq!(reject.count().unwrap(), 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn without_a_certresp_the_sender_fails_clearly() {
    for t in targets().await {
        let dir = tmp();
        let mut settings = sender_settings(&t, &topic(), &pki().pki.client);
        settings.server_cert = None;
        settings.ack_timeout = Duration::from_millis(500);
        settings.max_attempts = 2;
        let (mut sender, outgoing, _) = sender_with(settings, dir.path(), &[message("nocert", 0)]);
        match sender.run_once().await {
            Err(SenderError::ServerCert(why)) => {
                assert!(
                    why.contains("no certresp after 2 attempts"),
                    "[{}] {why}",
                    t.name
                )
            }
            other => panic!("[{}] expected ServerCert, got {other:?}", t.name),
        }
        assert_eq!(outgoing.count().unwrap(), 1, "[{}]", t.name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_ack_to_a_departed_sender_does_not_stop_the_receiver() {
    for t in targets().await {
        let dir = tmp();
        let topic = topic();
        let rx = start_receiver(&t, &topic, &dir.path().join("store")).await;
        // A sender that leaves before its ack can reach it.
        let gone = Peer::connect(&t).await;
        let first = message("departed", 0);
        gone.send_msg(&topic, "gone-1", &seal(&first), None).await;
        gone.client.disconnect().await.unwrap();
        // The receiver keeps serving others.
        let mut peer = Peer::connect(&t).await;
        let second = message("departed", 1);
        peer.send_msg(&topic, "here-1", &seal(&second), None).await;
        peer.expect_stored(&md5(&second)).await;
        // The departed sender's message is stored too, exactly once; in either order, as the
        // two senders' messages are opened in different lanes.
        let mut bodies: Vec<Vec<u8>> = rx
            .wait_incoming(&t.name, 2, e2e::WAIT)
            .await
            .into_iter()
            .map(|r| r.body)
            .collect();
        bodies.sort();
        let mut want = vec![first, second];
        want.sort();
        assert_eq!(bodies, want, "[{}]", t.name);
        let stats = rx.stop().await;
        assert_eq!(
            Stats::get(&stats.reconnects),
            0,
            "[{}] kept its connection",
            t.name
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_closing_ping_of_a_pass_clears_the_record() {
    for t in targets().await {
        let dir = tmp();
        let topic = topic();
        let rx = start_receiver(&t, &topic, &dir.path().join("store")).await;
        let body = message("next-run", 0);
        for run in 0..2 {
            let settings = sender_settings(&t, &topic, &pki().pki.client);
            let (mut sender, outgoing, _) = sender_with(
                settings,
                &dir.path().join(format!("run{run}")),
                std::slice::from_ref(&body),
            );
            let summary = sender
                .run_once()
                .await
                .unwrap_or_else(|e| panic!("[{}] sender: {e}", t.name));
            assert_eq!(summary.acked, 1, "[{}]", t.name);
            assert_eq!(outgoing.count().unwrap(), 0);
        }
        // The second run's message is a new message: the first run's ping confirmed the first.
        assert_eq!(rx.incoming().len(), 2, "[{}] stored twice", t.name);
        let stats = rx.stop().await;
        assert_eq!(Stats::get(&stats.duplicates), 0, "[{}]", t.name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_large_message_arrives_intact() {
    for t in targets().await {
        let dir = tmp();
        let topic = topic();
        let rx = start_receiver(&t, &topic, &dir.path().join("store")).await;
        let body = ssm::harness::demo::apel_message(7, 2 * 1024 * 1024);
        let mut settings = sender_settings(&t, &topic, &pki().pki.client);
        settings.ack_timeout = Duration::from_secs(20);
        let (mut sender, outgoing, _) =
            sender_with(settings, dir.path(), std::slice::from_ref(&body));
        let summary = sender
            .run_once()
            .await
            .unwrap_or_else(|e| panic!("[{}] sender: {e}", t.name));
        assert_eq!(summary.acked, 1, "[{}]", t.name);
        assert_eq!(outgoing.count().unwrap(), 0);
        let stored = rx.incoming();
        assert_eq!(stored.len(), 1);
        assert!(stored[0].body == body, "[{}] body differs", t.name);
        rx.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_broker_restart_mid_pass_loses_nothing() {
    const N: usize = 40;
    let mut t = e2e::brokers::embedded().await;
    let addr = t.embedded.as_ref().unwrap().local_addr();
    let dir = tmp();
    let topic = topic();
    // Both roles must outlast the outage.
    let mut cfg = e2e::client_config(&t);
    cfg.max_rounds = Some(100);
    cfg.initial_backoff = Duration::from_millis(50);
    cfg.max_backoff = Duration::from_millis(200);
    let rx = e2e::start_receiver_with(
        &t,
        &topic,
        &dir.path().join("store"),
        cfg.clone(),
        &pki().dn_file,
    )
    .await;
    let msgs: Vec<Vec<u8>> = (0..N).map(|i| message("restart", i)).collect();
    let mut settings = sender_settings(&t, &topic, &pki().pki.client);
    settings.transport = ssm::transport::TransportConfig::stomp(cfg, None);
    settings.ack_timeout = Duration::from_secs(2);
    settings.max_attempts = 5;
    let (mut sender, outgoing, _) = sender_with(settings, dir.path(), &msgs);
    let task = tokio::spawn(async move { sender.run_once().await });

    let deadline = tokio::time::Instant::now() + e2e::WAIT;
    while Stats::get(&rx.stats.stored) < 10 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no progress before the restart"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    t.embedded.take().unwrap().shutdown().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _again = broker::start(broker::BrokerConfig {
        listen: addr,
        ..e2e::brokers::embedded_config()
    })
    .await
    .expect("restarting the embedded broker on the same port");

    let summary = tokio::time::timeout(Duration::from_secs(40), task)
        .await
        .expect("sender did not finish after the restart")
        .unwrap()
        .expect("sender failed");
    assert_eq!(summary.acked, N as u64, "{summary}");
    assert_eq!(outgoing.count().unwrap(), 0);
    assert_exactly_once(
        "every message exactly once:",
        &msgs,
        rx.incoming().into_iter().map(|r| r.body),
    );
    let stats = rx.stop().await;
    assert!(Stats::get(&stats.reconnects) >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unreachable_broker_is_reported_as_such() {
    // A loopback port nobody listens on.
    let port = crate::support::process::free_port();
    let t = e2e::Target::at("nobody", ([127, 0, 0, 1], port).into());
    for with_cert in [true, false] {
        let dir = tmp();
        let mut settings = sender_settings(&t, &topic(), &pki().pki.client);
        if !with_cert {
            settings.server_cert = None;
        }
        settings.max_attempts = 2;
        let (mut sender, outgoing, _) = sender_with(settings, dir.path(), &[message("nobody", 0)]);
        match sender.run_once().await {
            Err(SenderError::Broker(err)) => {
                assert!(err.to_string().contains("refused"), "{err}")
            }
            other => panic!("server cert {with_cert}: expected a broker error, got {other:?}"),
        }
        let name = outgoing.names().unwrap()[0].clone();
        assert!(!outgoing.is_locked(&name).unwrap());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stopping_the_receiver_mid_stream_keeps_every_promise() {
    const N: usize = 40;
    for t in targets().await {
        let dir = tmp();
        let topic = topic();
        let store = dir.path().join("store");
        let rx = start_receiver(&t, &topic, &store).await;
        let msgs: Vec<Vec<u8>> = (0..N).map(|i| message("stop", i)).collect();
        let mut settings = sender_settings(&t, &topic, &pki().pki.client);
        settings.ack_timeout = Duration::from_secs(1);
        settings.max_attempts = 1;
        let (mut sender, outgoing, _) = sender_with(settings, dir.path(), &msgs);
        let task = tokio::spawn(async move { sender.run_once().await });
        let deadline = tokio::time::Instant::now() + e2e::WAIT;
        while Stats::get(&rx.stats.stored) < 10 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "[{}] no progress",
                t.name
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        rx.stop().await;
        // The sender runs out of attempts on the message the receiver never answered.
        let first = task.await.unwrap();
        assert!(
            matches!(first, Err(SenderError::NoAck { .. })),
            "[{}] {first:?}",
            t.name
        );
        // Every message that left the queue (was acked) is stored.
        let left: Vec<Vec<u8>> = outgoing
            .names()
            .unwrap()
            .iter()
            .map(|n| outgoing.get(n).unwrap())
            .collect();
        let stored: Vec<Vec<u8>> =
            e2e::records(&ssm::queue::MessageStore::open(&store).unwrap().incoming)
                .into_iter()
                .map(|r| r.body)
                .collect();
        for m in &msgs {
            assert!(
                left.contains(m) || stored.contains(m),
                "[{}] acked but not stored: {}",
                t.name,
                String::from_utf8_lossy(m)
            );
        }

        // A new receiver on the same store, a new pass: everything exactly once.
        let rx = start_receiver(&t, &topic, &store).await;
        let settings = sender_settings(&t, &topic, &pki().pki.client);
        let mut sender = ssm::sender::Sender::new(
            settings,
            ssm::queue::Outgoing::open(
                &dir.path().join("outgoing"),
                ssm::queue::PathType::QueueSimple,
            )
            .unwrap(),
            ssm::queue::Dirq::open(&dir.path().join("outgoing").join("reject")).unwrap(),
        );
        sender
            .run_once()
            .await
            .unwrap_or_else(|e| panic!("[{}] second pass: {e}", t.name));
        assert_eq!(outgoing.count().unwrap(), 0);
        let got: Vec<Vec<u8>> = rx.incoming().into_iter().map(|r| r.body).collect();
        assert_eq!(got.len(), N, "[{}] exactly once", t.name);
        assert_exactly_once(&format!("[{}]", t.name), &msgs, got);
        rx.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_storage_failure_is_neither_acked_nor_rejected() {
    for t in targets().await {
        let dir = tmp();
        let topic = topic();
        let store = dir.path().join("store");
        let rx = start_receiver(&t, &topic, &store).await;
        // Break the incoming queue under the running receiver: its directory becomes a file.
        let incoming = store.join("incoming");
        let aside = store.join("incoming.aside");
        std::fs::rename(&incoming, &aside).unwrap();
        std::fs::write(&incoming, b"not a directory").unwrap();

        let body = message("disk", 0);
        let mut settings = sender_settings(&t, &topic, &pki().pki.client);
        settings.ack_timeout = Duration::from_millis(500);
        settings.max_attempts = 1;
        let (mut sender, outgoing, reject) =
            sender_with(settings, dir.path(), std::slice::from_ref(&body));
        let first = sender.run_once().await;
        assert!(
            matches!(first, Err(SenderError::NoAck { .. })),
            "[{}] {first:?}",
            t.name
        );
        assert_eq!(outgoing.count().unwrap(), 1, "[{}] still queued", t.name);
        assert_eq!(reject.count().unwrap(), 0, "[{}] not rejected", t.name);
        assert_eq!(Stats::get(&rx.stats.store_failures), 1, "[{}]", t.name);
        assert_eq!(Stats::get(&rx.stats.rejected), 0, "[{}]", t.name);

        // Repaired, the next pass delivers it.
        std::fs::remove_file(&incoming).unwrap();
        std::fs::rename(&aside, &incoming).unwrap();
        let settings = sender_settings(&t, &topic, &pki().pki.client);
        let (mut sender, outgoing, _) = sender_with(settings, dir.path(), &[]);
        let summary = sender
            .run_once()
            .await
            .unwrap_or_else(|e| panic!("[{}] second pass: {e}", t.name));
        assert_eq!(summary.acked, 1, "[{}] {summary}", t.name);
        assert_eq!(outgoing.count().unwrap(), 0);
        let stored: Vec<Vec<u8>> = rx.incoming().into_iter().map(|r| r.body).collect();
        assert_eq!(stored, vec![body], "[{}]", t.name);
        rx.stop().await;
    }
}
