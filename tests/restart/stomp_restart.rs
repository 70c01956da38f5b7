//! Reconnection after a broker restart, against the embedded broker and every real broker named
//! in `SSM_TEST_BROKERS` (restarted with `$SSM_TEST_BROKER_CTL restart <name>`, which must be
//! set when real brokers are named).
//!
//! This lives in the `restart` test binary, not with the conformance tests, because restarting a
//! real broker would break those running in parallel against it; cargo runs test binaries one
//! after another. It holds `support::serial` against the other restart test.

use crate::support::brokers;

use std::time::Duration;

use brokers::{embedded, embedded_config, is_loss, next_message, real, unique, Target};
use ssm::broker;
use ssm::stomp::{AckMode, Client, ClientConfig, Command, Frame};

/// A client connected before the restart sees the loss; `Client::connect` with backoff then
/// finds the broker again once it is back, and messages flow.
/// Returns what `restart` returned (a restarted embedded broker must live until the end).
async fn check_reconnect<R>(t: &Target, restart: impl std::future::Future<Output = R>) -> R {
    let mut before = t.connect().await;
    let queue = unique("/queue/");
    let (lost, restarted) = tokio::join!(
        tokio::time::timeout(Duration::from_secs(120), before.recv()),
        restart
    );
    match lost {
        Ok(Err(e)) if is_loss(&e) => {}
        other => panic!(
            "[{}] expected the restart to end the connection: {other:?}",
            t.name
        ),
    }
    assert!(before.handle().is_closed());
    let err = before
        .handle()
        .send(Frame::new(Command::Send).with_header("destination", queue.as_str()))
        .await
        .unwrap_err();
    assert!(is_loss(&err), "[{}] {err:?}", t.name);

    let mut cfg: ClientConfig = t.config();
    cfg.max_rounds = Some(60);
    cfg.initial_backoff = Duration::from_millis(100);
    cfg.max_backoff = Duration::from_secs(2);
    let mut after = match Client::connect(&cfg).await {
        Ok(c) => c,
        Err(e) => panic!("[{}] no reconnect after the restart: {e}", t.name),
    };
    let h = after.handle();
    h.subscribe(&queue, AckMode::ClientIndividual, &[])
        .await
        .unwrap();
    h.send_with_receipt(
        Frame::new(Command::Send)
            .with_header("destination", queue.as_str())
            .with_body(&b"after restart"[..]),
    )
    .await
    .unwrap();
    let m = next_message(&t.name, &mut after).await;
    assert_eq!(&m.body[..], b"after restart");
    h.ack(&m).await.unwrap();
    after.disconnect().await.unwrap();
    restarted
}

#[tokio::test]
// The lock is held across the whole test on purpose: it only orders the restart tests.
#[allow(clippy::await_holding_lock)]
async fn reconnects_after_a_broker_restart() {
    let _serial = crate::support::serial();
    let mut t = embedded().await;
    let handle = t.embedded.take().expect("embedded target has a broker");
    let addr = handle.local_addr();
    let restart = async move {
        handle.shutdown().await;
        // Down for a while, so that the first reconnect attempts fail and back off.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let cfg = broker::BrokerConfig {
            listen: addr,
            ..embedded_config()
        };
        broker::start(cfg).await.expect("restart on the same port")
    };
    let restarted = check_reconnect(&t, restart).await;
    restarted.shutdown().await;

    // Then every real broker named in SSM_TEST_BROKERS.
    let targets = real();
    if targets.is_empty() {
        return;
    }
    let ctl = std::env::var("SSM_TEST_BROKER_CTL").unwrap_or_else(|_| {
        panic!("SSM_TEST_BROKERS names real brokers but SSM_TEST_BROKER_CTL (the script that restarts them) is not set")
    });
    for t in &targets {
        let ctl = ctl.clone();
        let name = t.name.clone();
        let restart = async move {
            let status = tokio::process::Command::new(&ctl)
                .arg("restart")
                .arg(&name)
                .kill_on_drop(true)
                .status()
                .await
                .unwrap_or_else(|e| panic!("cannot run {ctl}: {e}"));
            assert!(status.success(), "{ctl} restart {name}: {status}");
        };
        check_reconnect(t, restart).await;
    }
}
