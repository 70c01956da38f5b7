//! Client tests against an in-test fake broker (a `Framed` codec on a loopback port).

use super::*;
use std::time::Instant as StdInstant;
use tokio::net::TcpListener;
use tokio_util::codec::Framed;

type Conn = Framed<TcpStream, StompCodec>;

/// A listening fake broker on 127.0.0.1 with an OS-chosen port.
async fn listener() -> (TcpListener, BrokerAddr) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    (l, BrokerAddr::new("127.0.0.1", port))
}

/// A port nothing listens on.
async fn dead_port() -> BrokerAddr {
    let (l, addr) = listener().await;
    drop(l);
    addr
}

fn cfg(brokers: Vec<BrokerAddr>) -> ClientConfig {
    let mut c = ClientConfig::new(brokers);
    c.heartbeat = (Duration::ZERO, Duration::ZERO);
    c.receipt_timeout = Duration::from_secs(5);
    c.connect_timeout = Duration::from_secs(5);
    c.max_rounds = Some(1);
    c
}

/// The next frame the client sent, skipping heart-beats.
async fn next_frame(conn: &mut Conn) -> Frame {
    loop {
        match conn
            .next()
            .await
            .expect("client closed")
            .expect("bad frame")
        {
            Item::Frame(f) => return f,
            Item::HeartBeat | Item::Oversized(_) => continue,
        }
    }
}

/// Accepts one connection, reads CONNECT and answers CONNECTED with these headers.
async fn accept(l: &TcpListener, connected: &[(&str, &str)]) -> (Conn, Frame) {
    let (sock, _) = l.accept().await.unwrap();
    let mut conn = Framed::new(sock, StompCodec::default());
    let connect = next_frame(&mut conn).await;
    let mut reply = Frame::new(Command::Connected);
    for (k, v) in connected {
        reply = reply.with_header(*k, *v);
    }
    conn.send(Item::Frame(reply)).await.unwrap();
    (conn, connect)
}

const V12: &[(&str, &str)] = &[("version", "1.2"), ("server", "ssm-broker/0.1")];

async fn reply_receipt(conn: &mut Conn, frame: &Frame) {
    let id = frame.header("receipt").expect("no receipt header");
    conn.send(Item::Frame(
        Frame::new(Command::Receipt).with_header("receipt-id", id),
    ))
    .await
    .unwrap();
}

#[tokio::test]
async fn handshake_sends_expected_headers_and_reads_connected() {
    let (l, addr) = listener().await;
    let server = tokio::spawn(async move {
        accept(
            &l,
            &[
                ("version", "1.2"),
                ("server", "RabbitMQ/3.10.7"),
                ("heart-beat", "4000,20000"),
            ],
        )
        .await
    });
    let mut c = cfg(vec![addr.clone()]);
    c.login = Some("guest".into());
    c.passcode = Some("pa:ss".into());
    c.heartbeat = (Duration::from_secs(10), Duration::from_secs(2));
    let client = Client::connect(&c).await.unwrap();
    let (_conn, connect) = server.await.unwrap();
    assert_eq!(connect.command, Command::Connect);
    assert_eq!(connect.header("accept-version"), Some("1.0,1.1,1.2"));
    assert_eq!(connect.header("host"), Some("/"));
    assert_eq!(connect.header("login"), Some("guest"));
    assert_eq!(connect.header("passcode"), Some("pa:ss"));
    assert_eq!(connect.header("heart-beat"), Some("10000,2000"));
    assert_eq!(client.server(), Some("RabbitMQ/3.10.7"));
    assert_eq!(client.kind(), BrokerKind::RabbitMq);
    assert_eq!(client.version(), Version::V1_2);
    assert_eq!(client.broker(), &addr);
    // We send every max(10 s, 20 s); we expect every max(2 s, 4 s).
    assert_eq!(
        client.heartbeat(),
        (Duration::from_secs(20), Duration::from_secs(4))
    );
}

#[tokio::test]
async fn vhost_and_version_fallbacks() {
    let (l, addr) = listener().await;
    // No `version` header: STOMP 1.0. No `server`: Other.
    let server = tokio::spawn(async move { accept(&l, &[]).await });
    let mut c = cfg(vec![addr]);
    c.vhost = Some("ssm".into());
    let client = Client::connect(&c).await.unwrap();
    let (_conn, connect) = server.await.unwrap();
    assert_eq!(connect.header("host"), Some("ssm"));
    assert_eq!(connect.header("heart-beat"), Some("0,0"));
    assert!(connect.header("login").is_none());
    assert_eq!(client.version(), Version::V1_0);
    assert_eq!(client.kind(), BrokerKind::Other);
    assert_eq!(client.heartbeat(), (Duration::ZERO, Duration::ZERO));
}

#[test]
fn client_types_can_move_between_tasks() {
    fn send<T: Send>() {}
    fn send_sync<T: Send + Sync>() {}
    send::<Client>();
    send_sync::<ClientHandle>();
    send_sync::<StompError>();
}

#[test]
fn config_defaults_and_debug_hides_the_passcode() {
    let mut c = ClientConfig::new(vec![BrokerAddr::new("h", 1)]);
    assert_eq!(
        c.heartbeat,
        (Duration::from_secs(10), Duration::from_secs(10))
    );
    assert_eq!(c.connect_timeout, Duration::from_secs(10));
    assert_eq!(c.receipt_timeout, Duration::from_secs(30));
    assert_eq!(c.initial_backoff, Duration::from_millis(500));
    assert_eq!(c.max_backoff, Duration::from_secs(30));
    assert_eq!(c.max_rounds, None);
    assert_eq!(c.limits.max_body, 64 * 1024 * 1024);
    assert!(c.vhost.is_none() && c.tls.is_none());
    c.passcode = Some("s3cr3t".into());
    let shown = format!("{c:?}");
    assert!(
        !shown.contains("s3cr3t") && shown.contains("<hidden>"),
        "{shown}"
    );
}

#[test]
fn broker_kinds() {
    for (server, kind) in [
        (Some("RabbitMQ/3.10.0"), BrokerKind::RabbitMq),
        (Some("ActiveMQ/5.17.6"), BrokerKind::ActiveMq),
        (Some("ssm-broker/0.1.0"), BrokerKind::Embedded),
        (Some("Apache ActiveMQ Artemis/2.30"), BrokerKind::Other),
        (None, BrokerKind::Other),
    ] {
        assert_eq!(BrokerKind::from_server(server), kind, "{server:?}");
    }
    for kind in [
        BrokerKind::RabbitMq,
        BrokerKind::ActiveMq,
        BrokerKind::Embedded,
        BrokerKind::Other,
    ] {
        assert_eq!(kind.to_string().parse::<BrokerKind>().unwrap(), kind);
    }
    assert_eq!(
        "RabbitMQ".parse::<BrokerKind>().unwrap(),
        BrokerKind::RabbitMq
    );
    assert!("qpid".parse::<BrokerKind>().is_err());
}

#[test]
fn heartbeat_header_parsing() {
    assert_eq!(
        parse_heartbeat(Some("100, 200")),
        (Duration::from_millis(100), Duration::from_millis(200))
    );
    for bad in [None, Some(""), Some("1"), Some("x,1"), Some("-1,0")] {
        assert_eq!(parse_heartbeat(bad), (Duration::ZERO, Duration::ZERO));
    }
}

#[tokio::test]
async fn receipts_reach_their_callers_in_any_order() {
    let (l, addr) = listener().await;
    let server = tokio::spawn(async move {
        let (mut conn, _) = accept(&l, V12).await;
        let a = next_frame(&mut conn).await;
        let b = next_frame(&mut conn).await;
        // A MESSAGE carrying a copied `receipt` header must not be taken for anything but a
        // message.
        conn.send(Item::Frame(
            Frame::new(Command::Message)
                .with_header("receipt", a.header("receipt").unwrap())
                .with_header("destination", "/queue/x")
                .with_body(&b"m"[..]),
        ))
        .await
        .unwrap();
        reply_receipt(&mut conn, &b).await;
        reply_receipt(&mut conn, &a).await;
        (a, b, conn)
    });
    let mut client = Client::connect(&cfg(vec![addr])).await.unwrap();
    let h = client.handle();
    let send = |body: &'static [u8]| {
        let h = h.clone();
        async move {
            h.send_with_receipt(
                Frame::new(Command::Send)
                    .with_header("destination", "/queue/x")
                    .with_header("receipt", "caller-chosen")
                    .with_body(body),
            )
            .await
        }
    };
    let (ra, rb) = tokio::join!(send(b"a"), send(b"b"));
    ra.unwrap();
    rb.unwrap();
    let (a, b, _conn) = server.await.unwrap();
    assert_ne!(a.header("receipt"), b.header("receipt"));
    assert_ne!(a.header("receipt"), Some("caller-chosen"));
    assert_eq!(a.header("content-length"), Some("1"));
    match client.recv().await.unwrap() {
        Event::Message(m) => assert_eq!(&m.body[..], b"m"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn receipt_timeout_when_broker_is_silent() {
    let (l, addr) = listener().await;
    let server = tokio::spawn(async move {
        let (mut conn, _) = accept(&l, V12).await;
        let f = next_frame(&mut conn).await;
        // Answer late: the caller has given up, and the late RECEIPT must be harmless.
        tokio::time::sleep(Duration::from_millis(400)).await;
        reply_receipt(&mut conn, &f).await;
        let f2 = next_frame(&mut conn).await;
        reply_receipt(&mut conn, &f2).await;
        conn
    });
    let mut c = cfg(vec![addr]);
    c.receipt_timeout = Duration::from_millis(200);
    let client = Client::connect(&c).await.unwrap();
    let h = client.handle();
    let err = h
        .send_with_receipt(Frame::new(Command::Send).with_header("destination", "/q/a"))
        .await
        .unwrap_err();
    assert!(matches!(err, StompError::ReceiptTimeout), "{err:?}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!h.is_closed());
    // The late RECEIPT was harmless and the connection still works.
    h.send_with_receipt(Frame::new(Command::Send).with_header("destination", "/q/b"))
        .await
        .unwrap();
    server.await.unwrap();
}

#[tokio::test]
async fn errors_surface_to_the_right_place() {
    let (l, addr) = listener().await;
    let server = tokio::spawn(async move {
        let (mut conn, _) = accept(&l, V12).await;
        // An ERROR for a receipt goes to that caller.
        let f = next_frame(&mut conn).await;
        conn.send(Item::Frame(
            Frame::new(Command::Error)
                .with_header("receipt-id", f.header("receipt").unwrap())
                .with_header("message", "not allowed")
                .with_body(&b"details"[..]),
        ))
        .await
        .unwrap();
        // An ERROR without a receipt goes to recv; the connection stays.
        conn.send(Item::Frame(
            Frame::new(Command::Error)
                .with_header("message", "DestinationDoesNotExistException")
                .with_body(&b"temp queue gone"[..]),
        ))
        .await
        .unwrap();
        conn.send(Item::Frame(
            Frame::new(Command::Message).with_header("destination", "/topic/t"),
        ))
        .await
        .unwrap();
        // Then a fatal ERROR and the socket closes.
        conn.send(Item::Frame(
            Frame::new(Command::Error).with_header("message", "bye now"),
        ))
        .await
        .unwrap();
    });
    let mut client = Client::connect(&cfg(vec![addr])).await.unwrap();
    let h = client.handle();
    let err = h
        .send_with_receipt(Frame::new(Command::Send).with_header("destination", "/q/a"))
        .await
        .unwrap_err();
    match err {
        StompError::Broker { message, body } => {
            assert_eq!(message, "not allowed");
            assert_eq!(body, "details");
        }
        other => panic!("{other:?}"),
    }
    match client.recv().await.unwrap() {
        Event::Error(f) => {
            assert_eq!(
                f.header("message"),
                Some("DestinationDoesNotExistException")
            )
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(client.recv().await.unwrap(), Event::Message(_)));
    assert!(matches!(client.recv().await.unwrap(), Event::Error(_)));
    server.await.unwrap();
    match client.recv().await.unwrap_err() {
        StompError::ConnectionLost(reason) => assert!(reason.contains("bye now"), "{reason}"),
        other => panic!("{other:?}"),
    }
    assert!(h.is_closed());
    let err = h
        .send(Frame::new(Command::Send).with_header("destination", "/q/a"))
        .await
        .unwrap_err();
    assert!(matches!(err, StompError::ConnectionLost(_)), "{err:?}");
}

#[tokio::test]
async fn connection_loss_wakes_every_waiter() {
    let (l, addr) = listener().await;
    let server = tokio::spawn(async move {
        let (mut conn, _) = accept(&l, V12).await;
        next_frame(&mut conn).await;
        next_frame(&mut conn).await;
        drop(conn);
    });
    let mut client = Client::connect(&cfg(vec![addr])).await.unwrap();
    let h = client.handle();
    let s = |h: ClientHandle| async move {
        h.send_with_receipt(Frame::new(Command::Send).with_header("destination", "/q/a"))
            .await
    };
    let started = StdInstant::now();
    let (a, b, r) = tokio::join!(s(h.clone()), s(h.clone()), client.recv());
    server.await.unwrap();
    for res in [a, b] {
        assert!(matches!(res, Err(StompError::ConnectionLost(_))), "{res:?}");
    }
    assert!(matches!(r, Err(StompError::ConnectionLost(_))), "{r:?}");
    // Woken by the loss, not by the 5 s receipt timeout.
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(matches!(
        h.send_with_receipt(Frame::new(Command::Send)).await,
        Err(StompError::ConnectionLost(_))
    ));
}

#[tokio::test]
async fn sends_heartbeats_when_idle() {
    let (l, addr) = listener().await;
    let server = tokio::spawn(async move {
        let (mut conn, _) = accept(&l, &[("version", "1.2"), ("heart-beat", "0,100")]).await;
        let until = tokio::time::Instant::now() + Duration::from_millis(650);
        let mut beats = 0;
        while let Ok(Some(item)) = tokio::time::timeout_at(until, conn.next()).await {
            match item.unwrap() {
                Item::HeartBeat => beats += 1,
                other => panic!("unexpected {other:?}"),
            }
        }
        beats
    });
    let mut c = cfg(vec![addr]);
    c.heartbeat = (Duration::from_millis(50), Duration::ZERO);
    let client = Client::connect(&c).await.unwrap();
    assert_eq!(
        client.heartbeat(),
        (Duration::from_millis(100), Duration::ZERO)
    );
    let beats = server.await.unwrap();
    assert!(
        (4..=8).contains(&beats),
        "{beats} heart-beats in 650 ms at 100 ms"
    );
}

#[tokio::test]
async fn detects_missing_heartbeats_and_tolerates_present_ones() {
    let (l, addr) = listener().await;
    let server = tokio::spawn(async move {
        let (mut conn, _) = accept(&l, &[("version", "1.2"), ("heart-beat", "100,0")]).await;
        // Beat for 600 ms (well past 2.5 intervals), then go silent but keep the socket open.
        for _ in 0..12 {
            conn.send(Item::HeartBeat).await.unwrap();
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
        conn
    });
    let mut c = cfg(vec![addr]);
    c.heartbeat = (Duration::ZERO, Duration::from_millis(100));
    let mut client = Client::connect(&c).await.unwrap();
    let h = client.handle();
    let started = StdInstant::now();
    let pending = tokio::spawn(async move {
        h.send_with_receipt(Frame::new(Command::Send).with_header("destination", "/q/a"))
            .await
    });
    let err = client.recv().await.unwrap_err();
    let took = started.elapsed();
    assert!(matches!(err, StompError::HeartbeatTimeout), "{err:?}");
    assert!(
        took >= Duration::from_millis(600) && took < Duration::from_millis(2500),
        "{took:?}"
    );
    let r = pending.await.unwrap();
    assert!(matches!(r, Err(StompError::HeartbeatTimeout)), "{r:?}");
    server.abort();
}

#[tokio::test]
async fn an_abandoned_receipt_wait_is_forgotten() {
    let (l, addr) = listener().await;
    let server = tokio::spawn(async move {
        let (mut conn, _) = accept(&l, V12).await;
        let f = next_frame(&mut conn).await;
        (conn, f)
    });
    let client = Client::connect(&cfg(vec![addr])).await.unwrap();
    let h = client.handle();
    let r = timeout(
        Duration::from_millis(200),
        h.send_with_receipt(Frame::new(Command::Send).with_header("destination", "/q/a")),
    )
    .await;
    assert!(r.is_err(), "the fake broker never answers");
    let (_conn, f) = server.await.unwrap();
    assert!(f.header("receipt").is_some());
    assert!(h.shared.lock().pending.is_empty());
}

#[tokio::test]
async fn a_slow_large_frame_is_not_a_missed_heartbeat() {
    let (l, addr) = listener().await;
    let server = tokio::spawn(async move {
        let (conn, _) = accept(&l, &[("version", "1.2"), ("heart-beat", "100,0")]).await;
        let mut sock = conn.into_inner();
        let body = vec![b'x'; 4000];
        let mut wire = format!(
            "MESSAGE\ndestination:/q/slow\ncontent-length:{}\n\n",
            body.len()
        )
        .into_bytes();
        wire.extend_from_slice(&body);
        wire.push(0);
        // 800 ms for one frame, with no heart-beat in between: far beyond 2.5 x 100 ms.
        for chunk in wire.chunks(wire.len() / 16 + 1) {
            tokio::io::AsyncWriteExt::write_all(&mut sock, chunk)
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    });
    let mut c = cfg(vec![addr]);
    c.heartbeat = (Duration::ZERO, Duration::from_millis(100));
    let mut client = Client::connect(&c).await.unwrap();
    match client.recv().await {
        Ok(Event::Message(m)) => assert_eq!(m.body.len(), 4000),
        other => panic!("{other:?}"),
    }
    // After the frame, silence is detected again.
    assert!(matches!(
        client.recv().await,
        Err(StompError::HeartbeatTimeout)
    ));
    server.abort();
}

#[tokio::test]
async fn fails_over_to_the_next_broker() {
    let dead = dead_port().await;
    // A broker that refuses the login with an ERROR is also skipped.
    let (refusing, refusing_addr) = listener().await;
    let refuse = tokio::spawn(async move {
        let (sock, _) = refusing.accept().await.unwrap();
        let mut conn = Framed::new(sock, StompCodec::default());
        next_frame(&mut conn).await;
        conn.send(Item::Frame(
            Frame::new(Command::Error).with_header("message", "Access refused"),
        ))
        .await
        .unwrap();
    });
    let (l, good) = listener().await;
    let server = tokio::spawn(async move { accept(&l, V12).await });
    let client = Client::connect(&cfg(vec![dead, refusing_addr, good.clone()]))
        .await
        .unwrap();
    assert_eq!(client.broker(), &good);
    refuse.await.unwrap();
    server.await.unwrap();
}

#[tokio::test]
async fn backs_off_between_rounds_and_gives_up() {
    let a = dead_port().await;
    let b = dead_port().await;
    let mut c = cfg(vec![a.clone(), b]);
    c.max_rounds = Some(3);
    c.initial_backoff = Duration::from_millis(150);
    c.max_backoff = Duration::from_millis(200);
    let started = StdInstant::now();
    let err = Client::connect(&c).await.unwrap_err();
    let took = started.elapsed();
    match err {
        StompError::AllBrokersFailed { rounds, last } => {
            assert_eq!(rounds, 3);
            assert!(matches!(*last, StompError::Connect { .. }), "{last:?}");
        }
        other => panic!("{other:?}"),
    }
    // Two pauses: 150 ms, then 300 ms capped to 200 ms (each with up to 25% jitter).
    assert!(
        took >= Duration::from_millis(350) && took < Duration::from_secs(3),
        "{took:?}"
    );
    assert!(matches!(
        Client::connect(&cfg(vec![])).await,
        Err(StompError::NoBrokers)
    ));
}

#[tokio::test]
async fn retries_until_a_broker_appears() {
    let (l, addr) = listener().await;
    drop(l);
    let mut c = cfg(vec![addr.clone()]);
    c.max_rounds = None;
    c.initial_backoff = Duration::from_millis(50);
    c.max_backoff = Duration::from_millis(100);
    let server = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let l = TcpListener::bind(("127.0.0.1", addr.port)).await.unwrap();
        accept(&l, V12).await
    });
    let client = timeout(Duration::from_secs(5), Client::connect(&c))
        .await
        .expect("connect kept failing")
        .unwrap();
    assert_eq!(client.version(), Version::V1_2);
    server.await.unwrap();
}

#[tokio::test]
async fn connect_timeout_bounds_a_silent_broker() {
    let (l, silent) = listener().await;
    let hold = tokio::spawn(async move {
        let (sock, _) = l.accept().await.unwrap();
        tokio::time::sleep(Duration::from_secs(5)).await;
        drop(sock);
    });
    let mut c = cfg(vec![silent]);
    c.connect_timeout = Duration::from_millis(200);
    let started = StdInstant::now();
    let err = Client::connect(&c).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(2));
    match err {
        StompError::AllBrokersFailed { last, .. } => {
            assert!(matches!(*last, StompError::Connect { .. }), "{last:?}")
        }
        other => panic!("{other:?}"),
    }
    hold.abort();
}

#[tokio::test]
async fn subscribe_ack_nack_frames() {
    let (l, addr) = listener().await;
    let server = tokio::spawn(async move {
        let (mut conn, _) = accept(&l, V12).await;
        let sub = next_frame(&mut conn).await;
        reply_receipt(&mut conn, &sub).await;
        let ack = next_frame(&mut conn).await;
        let nack = next_frame(&mut conn).await;
        let unsub = next_frame(&mut conn).await;
        reply_receipt(&mut conn, &unsub).await;
        let disc = next_frame(&mut conn).await;
        reply_receipt(&mut conn, &disc).await;
        // The client closes after the receipt.
        assert!(conn.next().await.is_none());
        (sub, ack, nack, unsub, disc)
    });
    let client = Client::connect(&cfg(vec![addr])).await.unwrap();
    let h = client.handle();
    let id = h
        .subscribe(
            "/queue/in",
            AckMode::ClientIndividual,
            &[("prefetch-count", "5")],
        )
        .await
        .unwrap();
    let msg = Frame::new(Command::Message)
        .with_header("message-id", "m-1")
        .with_header("subscription", id.as_str())
        .with_header("ack", "ack-7");
    h.ack(&msg).await.unwrap();
    h.nack(&msg).await.unwrap();
    h.unsubscribe(&id).await.unwrap();
    client.disconnect().await.unwrap();
    let (sub, ack, nack, unsub, disc) = server.await.unwrap();
    assert_eq!(sub.command, Command::Subscribe);
    assert_eq!(sub.header("destination"), Some("/queue/in"));
    assert_eq!(sub.header("id"), Some(id.as_str()));
    assert_eq!(sub.header("ack"), Some("client-individual"));
    assert_eq!(sub.header("prefetch-count"), Some("5"));
    assert_eq!(
        (ack.command, ack.header("id")),
        (Command::Ack, Some("ack-7"))
    );
    assert_eq!(
        (nack.command, nack.header("id")),
        (Command::Nack, Some("ack-7"))
    );
    assert_eq!(unsub.header("id"), Some(id.as_str()));
    assert_eq!(disc.command, Command::Disconnect);
    assert!(h.is_closed());
}

#[tokio::test]
async fn ack_headers_follow_the_version() {
    for (version, expect) in [("1.1", true), ("1.0", false)] {
        let (l, addr) = listener().await;
        let server = tokio::spawn(async move {
            let (mut conn, _) = accept(&l, &[("version", version)]).await;
            next_frame(&mut conn).await
        });
        let client = Client::connect(&cfg(vec![addr])).await.unwrap();
        let h = client.handle();
        let msg = Frame::new(Command::Message)
            .with_header("message-id", "m-1")
            .with_header("subscription", "s-9");
        if expect {
            h.nack(&msg).await.unwrap();
        } else {
            assert!(matches!(
                h.nack(&msg).await,
                Err(StompError::Unsupported { .. })
            ));
            h.ack(&msg).await.unwrap();
        }
        assert!(matches!(
            h.ack(&Frame::new(Command::Message)).await,
            Err(StompError::NotAckable(_))
        ));
        let f = server.await.unwrap();
        assert_eq!(f.header("message-id"), Some("m-1"));
        assert_eq!(f.header("subscription").is_some(), expect);
        assert!(f.header("id").is_none());
    }
}

#[tokio::test]
async fn unencodable_frame_is_refused_without_closing() {
    let (l, addr) = listener().await;
    let server = tokio::spawn(async move {
        let (mut conn, _) = accept(&l, &[("version", "1.1")]).await;
        next_frame(&mut conn).await
    });
    let client = Client::connect(&cfg(vec![addr])).await.unwrap();
    let h = client.handle();
    // 1.1 cannot carry a CR in a header value.
    let err = h
        .send(Frame::new(Command::Send).with_header("x", "a\rb"))
        .await
        .unwrap_err();
    assert!(matches!(err, StompError::Frame(_)), "{err:?}");
    h.send(Frame::new(Command::Send).with_header("destination", "/q/ok"))
        .await
        .unwrap();
    assert_eq!(server.await.unwrap().header("destination"), Some("/q/ok"));
}

#[tokio::test]
async fn dropping_the_client_closes_the_connection() {
    let (l, addr) = listener().await;
    let server = tokio::spawn(async move {
        let (mut conn, _) = accept(&l, V12).await;
        timeout(Duration::from_secs(3), conn.next()).await
    });
    let client = Client::connect(&cfg(vec![addr])).await.unwrap();
    let h = client.handle();
    drop(client);
    assert!(matches!(server.await.unwrap(), Ok(None)));
    assert!(matches!(
        h.send(Frame::new(Command::Send)).await,
        Err(StompError::Closed)
    ));
}

#[tokio::test]
async fn a_bounded_message_buffer_delivers_in_order_and_still_disconnects() {
    let (l, addr) = listener().await;
    let server = tokio::spawn(async move {
        let (mut conn, _) = accept(&l, V12).await;
        for i in 0..4 {
            let msg = Frame::new(Command::Message)
                .with_header("destination", "/topic/t")
                .with_header("message-id", format!("m{i}"))
                .with_body(vec![b'x'; 1000]);
            conn.send(Item::Frame(msg)).await.unwrap();
        }
        // The DISCONNECT comes while the client's buffer is full: its RECEIPT must still be read.
        let disconnect = next_frame(&mut conn).await;
        assert_eq!(disconnect.command, Command::Disconnect);
        reply_receipt(&mut conn, &disconnect).await;
        // Keep the connection open until the client is done with it.
        let _ = conn.next().await;
    });
    let mut c = cfg(vec![addr]);
    // Room for one body and a half: the reader waits for every second message.
    c.max_buffered_bytes = Some(1500);
    let mut client = Client::connect(&c).await.unwrap();
    for i in 0..2 {
        match client.recv().await.unwrap() {
            Event::Message(f) => assert_eq!(f.header("message-id"), Some(format!("m{i}").as_str())),
            other => panic!("unexpected {other:?}"),
        }
    }
    client.disconnect().await.unwrap();
    server.await.unwrap();
}
