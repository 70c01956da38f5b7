//! The embedded broker's side of the STOMP protocol: handshake, receipts, heart-beats, errors on
//! bad input, and its limits (connections, queued bytes), and shutdown.

use crate::support::stomp_raw;

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use ssm::broker::{self, BrokerConfig};
use ssm::stomp::{Command, Frame, Item, Limits};
use stomp_raw::*;
use tokio::io::AsyncWriteExt;

#[tokio::test]
async fn handshake_negotiates_the_highest_common_version() {
    let b = broker().await;
    let cases: &[(Option<&str>, &str)] = &[
        (Some("1.0,1.1,1.2"), "1.2"),
        (Some("1.1,1.0"), "1.1"),
        (Some("1.0"), "1.0"),
        (None, "1.0"),
        (Some("1.2,9.9"), "1.2"),
    ];
    let mut sessions = std::collections::HashSet::new();
    for (accept, want) in cases {
        let headers: Vec<(&str, &str)> = accept.iter().map(|a| ("accept-version", *a)).collect();
        let c = connect_with(b.local_addr(), &headers).await;
        let f = &c.connected;
        assert_eq!(
            f.header("version"),
            Some(*want),
            "accept-version {accept:?}"
        );
        let server = f.header("server").unwrap();
        assert_eq!(server, broker::SERVER);
        assert!(server.starts_with("ssm-broker/"));
        assert_eq!(f.header("heart-beat"), Some("10000,10000"));
        assert!(sessions.insert(f.header("session").unwrap().to_string()));
    }
    // The STOMP command works like CONNECT; login and passcode are ignored.
    let mut framed = raw(b.local_addr()).await;
    framed
        .send(
            &Frame::new(Command::Stomp)
                .with_header("accept-version", "1.2")
                .with_header("login", "guest")
                .with_header("passcode", "whatever"),
        )
        .await
        .unwrap();
    assert_eq!(
        next_frame(&mut framed).await.unwrap().command,
        Command::Connected
    );
}

#[tokio::test]
async fn unsupported_version_is_refused() {
    let b = broker().await;
    let mut framed = raw(b.local_addr()).await;
    framed
        .send(&Frame::new(Command::Connect).with_header("accept-version", "2.0,3.1"))
        .await
        .unwrap();
    let frames = expect_closed(&mut framed).await;
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0].command, Command::Error);
    assert_eq!(frames[0].header("message"), Some("unsupported version"));
    assert_eq!(frames[0].header("version"), Some("1.0,1.1,1.2"));
}

#[tokio::test]
async fn receipts_for_every_frame_and_disconnect() {
    let b = broker().await;
    let mut c = connect(b.local_addr()).await;
    c.subscribe("/queue/r", "s", "client-individual").await;
    c.publish("/queue/r", b"x", &[]).await;
    let m = c.message().await;
    c.request(Frame::new(Command::Ack).with_header("id", m.header("ack").unwrap()))
        .await;
    c.request(Frame::new(Command::Unsubscribe).with_header("id", "s"))
        .await;
    c.send(Frame::new(Command::Disconnect).with_header("receipt", "last"))
        .await;
    let frames = expect_closed(&mut c.framed).await;
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0].command, Command::Receipt);
    assert_eq!(frames[0].header("receipt-id"), Some("last"));
}

fn fast_heartbeats() -> BrokerConfig {
    BrokerConfig {
        heartbeat: (Duration::from_millis(50), Duration::from_millis(50)),
        ..config()
    }
}

#[tokio::test]
async fn broker_sends_heartbeats_when_asked() {
    let b = broker::start(fast_heartbeats()).await.unwrap();
    let mut c = connect_with(
        b.local_addr(),
        &[("accept-version", "1.2"), ("heart-beat", "0,60")],
    )
    .await;
    assert_eq!(c.connected.header("heart-beat"), Some("50,50"));
    let mut beats = 0;
    let started = tokio::time::Instant::now();
    while beats < 3 {
        match tokio::time::timeout(WAIT, c.framed.next()).await {
            Ok(Some(Ok(Item::HeartBeat))) => beats += 1,
            other => panic!("expected heart-beats, got {other:?}"),
        }
    }
    // Three beats at 60 ms take about 180 ms; far less would mean the period is ignored.
    assert!(started.elapsed() >= Duration::from_millis(150));
    // A client that does not ask for heart-beats gets none.
    let mut quiet = connect_with(
        b.local_addr(),
        &[("accept-version", "1.2"), ("heart-beat", "0,0")],
    )
    .await;
    assert!(
        tokio::time::timeout(Duration::from_millis(300), quiet.framed.next())
            .await
            .is_err()
    );
}

#[tokio::test]
async fn broker_closes_a_silent_client_but_not_a_beating_one() {
    let b = broker::start(fast_heartbeats()).await.unwrap();
    let mut silent = connect_with(
        b.local_addr(),
        &[("accept-version", "1.2"), ("heart-beat", "50,0")],
    )
    .await;
    let mut beating = connect_with(
        b.local_addr(),
        &[("accept-version", "1.2"), ("heart-beat", "50,0")],
    )
    .await;
    let started = tokio::time::Instant::now();
    while started.elapsed() < Duration::from_millis(400) {
        beating.write_raw(b"\n").await;
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    let frames = expect_closed(&mut silent.framed).await;
    assert!(frames.is_empty(), "{frames:?}");
    beating.subscribe("/topic/alive", "s", "auto").await;
}

/// Connects, writes `bytes`, and expects an ERROR whose message contains `reason`, then EOF.
async fn expect_error(cfg: BrokerConfig, handshake: bool, bytes: &[u8], reason: &str) {
    let b = broker::start(cfg).await.unwrap();
    let mut framed = if handshake {
        connect(b.local_addr()).await.framed
    } else {
        raw(b.local_addr()).await
    };
    framed.get_mut().write_all(bytes).await.unwrap();
    let frames = expect_closed(&mut framed).await;
    assert_eq!(
        frames.len(),
        1,
        "input {:?}",
        String::from_utf8_lossy(bytes)
    );
    assert_eq!(frames[0].command, Command::Error);
    let message = frames[0].header("message").unwrap();
    assert!(
        message.contains(reason),
        "{message:?} should contain {reason:?}"
    );
}

#[tokio::test]
async fn malformed_input_gets_an_error_then_close() {
    let small = BrokerConfig {
        limits: Limits {
            max_body: 1000,
            ..Limits::default()
        },
        ..config()
    };
    let cases: &[(bool, &[u8], &str)] = &[
        (true, b"HELLO\n\n\0", "unknown STOMP command"),
        (
            true,
            b"\rSEND\ndestination:/queue/a\n\n\0",
            "carriage return without line feed",
        ),
        (false, b"garbage\n\n\0", "unknown STOMP command"),
        (
            false,
            b"SEND\ndestination:/queue/a\n\nx\0",
            "expected CONNECT",
        ),
        (true, b"SEND\n\nno destination\0", "without destination"),
        (true, b"SEND\nno colon here\n\n\0", "malformed header"),
        (
            true,
            b"SEND\ndestination:/queue/a\ncontent-length:5000\n\n",
            "exceeds the limit",
        ),
        (
            true,
            b"SEND\ndestination:/queue/a\ncontent-length:zz\n\n\0",
            "invalid content-length",
        ),
        (
            true,
            b"SEND\ndestination:/queue/a\ncontent-length:1\n\nab\0",
            "not terminated by NUL",
        ),
        (
            true,
            b"SEND\ndestination:/bogus/a\n\n\0",
            "unsupported destination",
        ),
        (
            true,
            b"SUBSCRIBE\ndestination:/queue/a\nid:1\nack:sometimes\n\n\0",
            "unknown ack mode",
        ),
        (true, b"UNSUBSCRIBE\nid:nope\n\n\0", "no subscription"),
        (
            true,
            b"BEGIN\ntransaction:t\n\n\0",
            "transactions are not supported",
        ),
        (true, b"MESSAGE\ndestination:/queue/a\n\n\0", "server frame"),
        (
            true,
            b"CONNECT\naccept-version:1.2\n\n\0",
            "already connected",
        ),
        (
            false,
            b"CONNECT\naccept-version:1.2\nheart-beat:x\n\n\0",
            "malformed heart-beat",
        ),
    ];
    for (handshake, bytes, reason) in cases {
        expect_error(small.clone(), *handshake, bytes, reason).await;
    }
    // A body larger than the limit without content-length is refused too.
    let mut big = b"SEND\ndestination:/queue/a\n\n".to_vec();
    big.extend(vec![b'x'; 2000]);
    expect_error(small, true, &big, "exceeds the limit").await;
}

#[tokio::test]
async fn error_carries_the_receipt_id_of_the_refused_frame() {
    let b = broker().await;
    let mut c = connect(b.local_addr()).await;
    c.send(
        Frame::new(Command::Subscribe)
            .with_header("destination", "/nowhere")
            .with_header("receipt", "r9"),
    )
    .await;
    let frames = expect_closed(&mut c.framed).await;
    assert_eq!(frames[0].command, Command::Error);
    assert_eq!(frames[0].header("receipt-id"), Some("r9"));
}

#[tokio::test]
async fn too_many_connections_are_refused() {
    let cfg = BrokerConfig {
        max_connections: 2,
        ..config()
    };
    let b = broker::start(cfg).await.unwrap();
    let c1 = connect(b.local_addr()).await;
    let _c2 = connect(b.local_addr()).await;
    let mut third = raw(b.local_addr()).await;
    third
        .send(&Frame::new(Command::Connect).with_header("accept-version", "1.2"))
        .await
        .unwrap();
    let frames = expect_closed(&mut third).await;
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0].command, Command::Error);
    assert_eq!(frames[0].header("message"), Some("too many connections"));
    // A slot frees up when a connection ends.
    drop(c1);
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let mut f = raw(b.local_addr()).await;
        f.send(&Frame::new(Command::Connect).with_header("accept-version", "1.2"))
            .await
            .unwrap();
        let got = next_frame(&mut f).await.unwrap();
        if got.command == Command::Connected {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "slot never freed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn sends_beyond_the_queued_bytes_bound_are_refused_not_queued() {
    let cfg = BrokerConfig {
        max_queued_bytes: 10_000,
        ..config()
    };
    let b = broker::start(cfg).await.unwrap();
    let mut c = connect(b.local_addr()).await;
    let body = vec![7u8; 6000];
    c.publish("/queue/full", &body, &[]).await;
    assert!(b.queued_bytes() >= 6000);
    c.send(
        Frame::new(Command::Send)
            .with_header("destination", "/queue/full")
            .with_header("receipt", "over")
            .with_body(body.clone()),
    )
    .await;
    let e = c.recv().await;
    assert_eq!(e.command, Command::Error);
    assert_eq!(e.header("receipt-id"), Some("over"));
    assert!(e.header("message").unwrap().contains("broker full"));
    assert_eq!(b.queue_depth("/queue/full"), 1);
    // The connection survives; once the queue drains, sends are accepted again.
    c.subscribe("/queue/full", "s", "auto").await;
    assert_eq!(c.message().await.body.len(), 6000);
    c.publish("/queue/other", &body, &[]).await;
    assert_eq!(b.queue_depth("/queue/other"), 1);
}

#[tokio::test]
async fn unwritten_deliveries_to_a_slow_consumer_count_against_the_bound() {
    let cfg = BrokerConfig {
        max_queued_bytes: 4 * 1024 * 1024,
        ..config()
    };
    let b = broker::start(cfg).await.unwrap();
    // A subscriber that never reads.
    let mut slow = connect(b.local_addr()).await;
    slow.subscribe("/topic/firehose", "s", "auto").await;
    let mut p = connect(b.local_addr()).await;
    let body = vec![1u8; 256 * 1024];
    let mut refused = false;
    for i in 0..200 {
        p.send(
            Frame::new(Command::Send)
                .with_header("destination", "/topic/firehose")
                .with_header("receipt", format!("{i}"))
                .with_body(body.clone()),
        )
        .await;
        let r = p.recv().await;
        if r.command == Command::Error {
            refused = true;
            break;
        }
    }
    assert!(
        refused,
        "the broker kept buffering for a consumer that never reads"
    );
    assert!(b.queued_bytes() <= 4 * 1024 * 1024);
}

#[tokio::test]
async fn shutdown_closes_every_connection() {
    let b = broker().await;
    let addr = b.local_addr();
    let mut c1 = connect(addr).await;
    let mut c2 = connect(addr).await;
    c1.subscribe("/queue/x", "s", "auto").await;
    b.shutdown().await;
    expect_closed(&mut c1.framed).await;
    expect_closed(&mut c2.framed).await;
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn dropping_the_handle_stops_the_broker() {
    let b = broker().await;
    let addr = b.local_addr();
    let mut c = connect(addr).await;
    drop(b);
    expect_closed(&mut c.framed).await;
}

#[tokio::test]
async fn a_client_that_never_reads_its_receipts_is_not_read_either() {
    let b = broker().await;
    let mut c = connect(b.local_addr()).await;
    // Large receipt ids make large RECEIPTs, so socket buffers fill quickly.
    let id = "r".repeat(16 * 1024);
    let frame = format!("ACK\nid:0\nreceipt:{id}\n\n\0").into_bytes();
    let mut sent = 0;
    let blocked = loop {
        let write = c.framed.get_mut().write_all(&frame);
        match tokio::time::timeout(std::time::Duration::from_millis(500), write).await {
            Err(_) => break true,
            Ok(r) => r.unwrap(),
        }
        sent += 1;
        if sent == 5000 {
            break false;
        }
    };
    assert!(
        blocked,
        "the broker kept reading and queueing replies without bound"
    );
}
