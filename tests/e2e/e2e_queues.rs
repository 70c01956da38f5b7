//! End to end from the other queue layout and the other sender mode: a `directory` outgoing
//! queue (files dropped by other tools, whatever their names), and a sender daemon that ships
//! messages as they appear. Runs against the embedded broker and every real broker in
//! `SSM_TEST_BROKERS`.

use crate::support::e2e;
use crate::support::messages::assert_exactly_once;

use std::time::Duration;

use e2e::{message, pki, sender_settings, start_receiver, targets, tmp, topic};
use ssm::queue::{Dirq, Outgoing, PathType};
use ssm::receiver::Stats;
use ssm::sender::Sender;
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_directory_queue_with_any_file_names_is_shipped() {
    for t in targets().await {
        let dir = tmp();
        let topic = topic();
        let rx = start_receiver(&t, &topic, &dir.path().join("store")).await;
        let qdir = dir.path().join("outgoing");
        let outgoing = Outgoing::open(&qdir, PathType::Directory).unwrap();
        // Files as other tools name them: spaces, non-ASCII, punctuation.
        let names = ["plain.txt", "with space.txt", "café-ü.txt", "a:b;c=d"];
        let mut bodies = Vec::new();
        for (i, n) in names.iter().enumerate() {
            let body = message("directory", i);
            std::fs::write(qdir.join(n), &body).unwrap();
            bodies.push(body);
        }
        assert_eq!(outgoing.count().unwrap(), names.len());
        let reject = Dirq::open(&dir.path().join("reject")).unwrap();
        let settings = sender_settings(&t, &topic, &pki().pki.client);
        let mut sender = Sender::new(
            settings,
            Outgoing::open(&qdir, PathType::Directory).unwrap(),
            reject,
        );
        let summary = sender
            .run_once()
            .await
            .unwrap_or_else(|e| panic!("[{}] sender: {e}", t.name));
        assert_eq!(
            (summary.acked, summary.rejected),
            (names.len() as u64, 0),
            "[{}] {summary}",
            t.name
        );
        assert_eq!(outgoing.count().unwrap(), 0, "[{}]", t.name);
        assert_exactly_once(
            &format!("[{}]", t.name),
            &bodies,
            rx.incoming().into_iter().map(|r| r.body),
        );
        rx.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_daemon_ships_messages_as_they_appear() {
    for t in targets().await {
        let dir = tmp();
        let topic = topic();
        let rx = start_receiver(&t, &topic, &dir.path().join("store")).await;
        let qdir = dir.path().join("outgoing");
        let feed = Outgoing::open(&qdir, PathType::QueueSimple).unwrap();
        let settings = sender_settings(&t, &topic, &pki().pki.client);
        let mut sender = Sender::new(
            settings,
            Outgoing::open(&qdir, PathType::QueueSimple).unwrap(),
            Dirq::open(&qdir.join("reject")).unwrap(),
        );
        let shutdown = CancellationToken::new();
        let stop = shutdown.clone();
        let daemon =
            tokio::spawn(async move { sender.run_daemon(stop, Duration::from_millis(100)).await });
        let mut bodies = Vec::new();
        for batch in 0..3 {
            for i in 0..3 {
                let body = message(&format!("daemon{batch}"), i);
                feed.add(&body).unwrap();
                bodies.push(body);
            }
            let want = bodies.len() as u64;
            let deadline = tokio::time::Instant::now() + e2e::WAIT;
            while Stats::get(&rx.stats.stored) < want {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "[{}] batch {batch} not delivered",
                    t.name
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        shutdown.cancel();
        let summary = tokio::time::timeout(e2e::WAIT, daemon)
            .await
            .expect("daemon did not stop")
            .unwrap()
            .unwrap_or_else(|e| panic!("[{}] daemon: {e}", t.name));
        assert_eq!(summary.acked, 9, "[{}] {summary}", t.name);
        assert_eq!(feed.count().unwrap(), 0);
        let got: Vec<Vec<u8>> = rx.incoming().into_iter().map(|r| r.body).collect();
        assert_eq!(got, bodies, "[{}]", t.name);
        rx.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_senders_on_one_queue_send_each_message_once() {
    const N: usize = 40;
    for t in targets().await {
        let dir = tmp();
        let topic = topic();
        let rx = start_receiver(&t, &topic, &dir.path().join("store")).await;
        let qdir = dir.path().join("outgoing");
        let feed = Outgoing::open(&qdir, PathType::QueueSimple).unwrap();
        let bodies: Vec<Vec<u8>> = (0..N).map(|i| message("shared-queue", i)).collect();
        for b in &bodies {
            feed.add(b).unwrap();
        }
        let tasks: Vec<_> = (0..2)
            .map(|_| {
                let settings = sender_settings(&t, &topic, &pki().pki.client);
                let mut sender = Sender::new(
                    settings,
                    Outgoing::open(&qdir, PathType::QueueSimple).unwrap(),
                    Dirq::open(&qdir.join("reject")).unwrap(),
                );
                tokio::spawn(async move { sender.run_once().await })
            })
            .collect();
        let mut acked = 0;
        for task in tasks {
            let summary = task
                .await
                .unwrap()
                .unwrap_or_else(|e| panic!("[{}] a sender failed: {e}", t.name));
            acked += summary.acked;
        }
        assert_eq!(acked, N as u64, "[{}] each message acked once", t.name);
        assert_eq!(feed.count().unwrap(), 0);
        assert_exactly_once(
            &format!("[{}]", t.name),
            &bodies,
            rx.incoming().into_iter().map(|r| r.body),
        );
        let stats = rx.stop().await;
        assert_eq!(
            Stats::get(&stats.duplicates),
            0,
            "[{}] nothing sent twice",
            t.name
        );
    }
}
