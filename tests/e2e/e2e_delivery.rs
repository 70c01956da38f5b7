//! End to end, sender → broker → receiver: every message arrives exactly once, with its body,
//! signer and MD5, from one sender and from many at once. Runs against the embedded broker and
//! every real broker in `SSM_TEST_BROKERS`.

use crate::support::e2e;

use std::collections::HashMap;

use e2e::{md5, message, pki, sender_settings, sender_with, start_receiver, targets, tmp, topic};
use ssm::crypto::message_id;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_message_arrives_once_with_body_signer_and_md5() {
    const N: usize = 200;
    for t in targets().await {
        let dir = tmp();
        let topic = topic();
        let rx = start_receiver(&t, &topic, &dir.path().join("store")).await;
        let msgs: Vec<Vec<u8>> = (0..N).map(|i| message("one-sender", i)).collect();
        let settings = sender_settings(&t, &topic, &pki().pki.client);
        let (mut sender, outgoing, reject) = sender_with(settings, dir.path(), &msgs);
        let names = outgoing.names().unwrap();
        let summary = sender
            .run_once()
            .await
            .unwrap_or_else(|e| panic!("[{}] sender: {e}", t.name));
        assert_eq!(summary.acked, N as u64, "[{}] {summary}", t.name);
        assert_eq!(summary.rejected, 0, "[{}] {summary}", t.name);
        assert_eq!(
            outgoing.count().unwrap(),
            0,
            "[{}] outgoing not empty",
            t.name
        );
        assert_eq!(reject.count().unwrap(), 0, "[{}]", t.name);

        // Expected: element name (the sender's ssm-msg-id, kept as empaid) → body.
        let mut expected: HashMap<String, Vec<u8>> = names.into_iter().zip(msgs).collect();
        let stored = rx.incoming();
        assert_eq!(stored.len(), N, "[{}] incoming count", t.name);
        for rec in stored {
            let empaid = rec.empaid.clone().expect("empaid");
            let body = expected
                .remove(&empaid)
                .unwrap_or_else(|| panic!("[{}] {empaid} unexpected or stored twice", t.name));
            assert_eq!(rec.body, body, "[{}] body of {empaid}", t.name);
            assert_eq!(message_id(&rec.body), md5(&body));
            assert_eq!(rec.signer.as_deref(), Some(pki().pki.client.dn.as_str()));
            assert_eq!(rec.error, None);
        }
        assert!(
            expected.is_empty(),
            "[{}] missing {:?}",
            t.name,
            expected.keys()
        );
        let stats = rx.stop().await;
        assert_eq!(
            ssm::receiver::Stats::get(&stats.stored),
            N as u64,
            "[{}]",
            t.name
        );
        assert_eq!(
            ssm::receiver::Stats::get(&stats.duplicates),
            0,
            "[{}]",
            t.name
        );
        assert_eq!(
            ssm::receiver::Stats::get(&stats.rejected),
            0,
            "[{}]",
            t.name
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_senders_at_once_lose_nothing() {
    for t in targets().await {
        // Ten each on the embedded broker, five on real ones (they are shared and slower here).
        let per = if t.embedded.is_some() { 10 } else { 5 };
        let dir = tmp();
        let topic = topic();
        let rx = e2e::start_receiver_with(
            &t,
            &topic,
            &dir.path().join("store"),
            e2e::client_config(&t),
            &e2e::senders().dn_file,
        )
        .await;
        let mut expected = HashMap::new();
        let mut tasks = Vec::new();
        for (s, cert) in e2e::senders().certs.iter().enumerate() {
            let msgs: Vec<Vec<u8>> = (0..per)
                .map(|i| message(&format!("sender{s}"), i))
                .collect();
            for m in &msgs {
                expected.insert(md5(m), (cert.dn.clone(), m.clone()));
            }
            let settings = sender_settings(&t, &topic, cert);
            let (mut sender, outgoing, _) =
                sender_with(settings, &dir.path().join(format!("s{s}")), &msgs);
            tasks.push(tokio::spawn(async move {
                let r = sender.run_once().await;
                (r, outgoing.count().unwrap())
            }));
        }
        for task in tasks {
            let (r, left) = task.await.unwrap();
            let summary = r.unwrap_or_else(|e| panic!("[{}] a sender failed: {e}", t.name));
            assert_eq!(summary.acked, per as u64, "[{}] {summary}", t.name);
            assert_eq!(left, 0, "[{}]", t.name);
        }
        let stored = rx.incoming();
        assert_eq!(stored.len(), expected.len(), "[{}] incoming count", t.name);
        for rec in stored {
            let (dn, body) = expected
                .remove(&md5(&rec.body))
                .unwrap_or_else(|| panic!("[{}] unexpected or duplicate message", t.name));
            assert_eq!(rec.body, body);
            assert_eq!(rec.signer, Some(dn), "[{}]", t.name);
        }
        assert!(expected.is_empty());
        rx.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_cipher_is_delivered() {
    use ssm::crypto::Cipher;
    for t in targets().await {
        let dir = tmp();
        let topic = topic();
        let rx = start_receiver(&t, &topic, &dir.path().join("store")).await;
        let mut want = Vec::new();
        for (i, cipher) in Cipher::ALL.into_iter().enumerate() {
            let body = message(&format!("cipher-{}", cipher.name()), i);
            let mut settings = sender_settings(&t, &topic, &pki().pki.client);
            settings.cipher = cipher;
            let (mut sender, _, _) = sender_with(
                settings,
                &dir.path().join(cipher.name()),
                std::slice::from_ref(&body),
            );
            let summary = sender
                .run_once()
                .await
                .unwrap_or_else(|e| panic!("[{}] {}: {e}", t.name, cipher.name()));
            assert_eq!(summary.acked, 1, "[{}] {}", t.name, cipher.name());
            want.push(body);
        }
        let got: Vec<Vec<u8>> = rx.incoming().into_iter().map(|r| r.body).collect();
        assert_eq!(got, want, "[{}]", t.name);
        rx.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn odd_contents_arrive_byte_for_byte() {
    let contents: Vec<Vec<u8>> = vec![
        b"".to_vec(),
        b"x".to_vec(),
        vec![0, 1, 2, 0xff, 0xfe, b'\n', 0],
        b"line\r\nwith CRLF\r\n".to_vec(),
        b"trailing spaces   \n\n\n".to_vec(),
        "accents: é ü ß — ☃\n".as_bytes().to_vec(),
        (0..=255u8).cycle().take(70_000).collect(),
    ];
    for t in targets().await {
        let dir = tmp();
        let topic = topic();
        let rx = start_receiver(&t, &topic, &dir.path().join("store")).await;
        let settings = sender_settings(&t, &topic, &pki().pki.client);
        let (mut sender, outgoing, _) = sender_with(settings, dir.path(), &contents);
        let summary = sender
            .run_once()
            .await
            .unwrap_or_else(|e| panic!("[{}] sender: {e}", t.name));
        assert_eq!(
            (summary.acked, summary.rejected),
            (contents.len() as u64, 0),
            "[{}] {summary}",
            t.name
        );
        assert_eq!(outgoing.count().unwrap(), 0);
        let got: Vec<Vec<u8>> = rx.incoming().into_iter().map(|r| r.body).collect();
        assert_eq!(got, contents, "[{}]", t.name);
        rx.stop().await;
    }
}
