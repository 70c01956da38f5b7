//! End to end: a sender without the server certificate gets it by `certreq`/`certresp`, and
//! refuses a `certresp` carrying the wrong DN. Runs against the embedded broker and every real
//! broker in `SSM_TEST_BROKERS`.

use crate::support::e2e;
use crate::support::frames::SsmFrames;

use e2e::{message, pki, sender_settings, sender_with, start_receiver, targets, tmp, topic, Peer};
use ssm::protocol::SsmMessage;
use ssm::receiver::Stats;
use ssm::sender::SenderError;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sender_gets_the_server_certificate_by_certreq() {
    for t in targets().await {
        let dir = tmp();
        let topic = topic();
        let rx = start_receiver(&t, &topic, &dir.path().join("store")).await;
        let mut settings = sender_settings(&t, &topic, &pki().pki.client);
        settings.server_cert = None;
        let msgs: Vec<Vec<u8>> = (0..3).map(|i| message("certreq", i)).collect();
        let (mut sender, outgoing, _) = sender_with(settings, dir.path(), &msgs);
        let summary = sender
            .run_once()
            .await
            .unwrap_or_else(|e| panic!("[{}] sender: {e}", t.name));
        assert_eq!(summary.acked, 3, "[{}] {summary}", t.name);
        assert_eq!(outgoing.count().unwrap(), 0, "[{}]", t.name);
        let bodies: Vec<Vec<u8>> = rx.incoming().into_iter().map(|r| r.body).collect();
        assert_eq!(bodies, msgs, "[{}]", t.name);
        let stats = rx.stop().await;
        assert_eq!(Stats::get(&stats.certreqs), 1, "[{}] one certreq", t.name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn certresp_with_the_wrong_dn_is_refused_and_the_message_stays_queued() {
    for t in targets().await {
        let dir = tmp();
        let topic = topic();
        // A fake receiver that answers certreq with a certificate for another DN.
        let mut fake = Peer::listening(&t, &topic).await;
        let client_pem = String::from_utf8(pki().client.cert.to_pem().unwrap()).unwrap();
        let name = t.name.clone();
        let faker = tokio::spawn(async move {
            let frame = fake.next().await;
            let Ok(SsmMessage::CertReq { reply_to, .. }) = SsmMessage::from_frame(&frame) else {
                panic!("[{name}] fake receiver got {frame:?} before any certreq");
            };
            let resp = SsmMessage::CertResp {
                cert_pem: client_pem,
            };
            fake.send(resp.to_frame(&reply_to)).await;
            fake
        });
        let mut settings = sender_settings(&t, &topic, &pki().pki.client);
        settings.server_cert = None;
        let (mut sender, outgoing, reject) = sender_with(settings, dir.path(), &[message("dn", 0)]);
        let err = sender
            .run_once()
            .await
            .expect_err("a certresp with the wrong DN must fail the pass");
        let text = err.to_string();
        assert!(
            matches!(err, SenderError::ServerCert(_)),
            "[{}] {err:?}",
            t.name
        );
        assert!(
            text.contains(&pki().pki.client.dn) && text.contains(&pki().pki.server.dn),
            "[{}] the error names both DNs: {text}",
            t.name
        );
        assert_eq!(
            outgoing.count().unwrap(),
            1,
            "[{}] message still queued",
            t.name
        );
        assert_eq!(reject.count().unwrap(), 0, "[{}]", t.name);
        let name = &outgoing.names().unwrap()[0];
        assert!(
            !outgoing.is_locked(name).unwrap(),
            "[{}] left locked",
            t.name
        );
        // Only certreqs (the sender kept asking) reached the topic: the message was never sent
        // to the wrong server.
        let mut fake = faker.await.unwrap();
        while let Ok(Ok(ssm::stomp::Event::Message(frame))) =
            tokio::time::timeout(std::time::Duration::from_millis(300), fake.client.recv()).await
        {
            assert!(
                matches!(
                    SsmMessage::from_frame(&frame),
                    Ok(SsmMessage::CertReq { .. })
                ),
                "[{}] {frame:?}",
                t.name
            );
        }
    }
}
