//! Attacks on the embedded broker and the STOMP client (issue #13): fan-out to a consumer that
//! never reads, connections that say nothing or leave a frame unfinished, and frames above the
//! receiver's frame limit.

use crate::support::e2e;
use crate::support::faults;
use crate::support::stomp_raw;

use std::net::SocketAddr;
use std::process::{Child, Command as Process, Stdio};
use std::time::{Duration, Instant};

use futures::StreamExt;
use ssm::broker::{self, BrokerConfig};
use ssm::receiver::Stats;
use ssm::stomp::{Command, Frame, Item};
use stomp_raw::{connect, next_frame, raw};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// `ssm broker` as a process of this test, killed when dropped.
struct BrokerChild {
    child: Child,
    addr: SocketAddr,
    log: std::path::PathBuf,
}

impl BrokerChild {
    fn start(dir: &std::path::Path, flags: &[&str]) -> BrokerChild {
        let addr: SocketAddr = format!("127.0.0.1:{}", faults::free_port())
            .parse()
            .unwrap();
        let log = dir.join("broker.log");
        let child = Process::new(faults::ssm_bin())
            .args(["broker", "--listen", &addr.to_string()])
            .args(flags)
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("spawn ssm broker");
        faults::wait_listening(addr, Duration::from_secs(30));
        BrokerChild { child, addr, log }
    }

    /// The most resident memory the process has had (VmHWM), in KiB.
    fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM in /proc/<pid>/status")
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for BrokerChild {
    fn drop(&mut self) {
        faults::kill9(&mut self.child);
    }
}

/// Issue #13, item 8: one connection that never reads, 4 000 subscriptions to a topic, 300
/// messages of 1 KB, `--max-queued-bytes` 1 MB. The broker used to grow from 7 to 93 MiB
/// (per-subscriber copies were not charged); now its copies for the slow consumer are capped
/// and charged, a normal consumer on the same topic gets every message, and the slow consumer
/// is cut off once it stayed slow.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fan_out_to_a_consumer_that_never_reads_stays_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let b = BrokerChild::start(
        dir.path(),
        &[
            "--max-queued-bytes",
            "1048576",
            "--max-subscriptions",
            "5000",
            "--slow-consumer-timeout-secs",
            "2",
        ],
    );
    let topic = "/topic/fan";

    // The attacker: 4 000 subscriptions (the last one with a receipt), then never reads.
    let mut slow = connect(b.addr).await;
    let mut subs = Vec::new();
    for i in 0..4000 {
        let f = Frame::new(Command::Subscribe)
            .with_header("destination", topic)
            .with_header("id", format!("s{i}"))
            .with_header("ack", "auto");
        let mut buf = bytes::BytesMut::new();
        tokio_util::codec::Encoder::encode(slow.framed.codec_mut(), &f, &mut buf).unwrap();
        subs.extend_from_slice(&buf);
    }
    slow.write_raw(&subs).await;
    slow.subscribe(topic, "last", "auto").await;

    let mut normal = connect(b.addr).await;
    normal.subscribe(topic, "n", "auto").await;
    let reader = tokio::spawn(async move {
        let mut got = Vec::new();
        while got.len() < 300 {
            let m = normal.message().await;
            got.push(String::from_utf8_lossy(&m.body[..8]).into_owned());
        }
        (normal, got)
    });

    let mut publisher = connect(b.addr).await;
    let mut refused = 0;
    for i in 0..300 {
        let mut body = format!("{i:08}").into_bytes();
        body.resize(1024, b'x');
        publisher
            .send(
                Frame::new(Command::Send)
                    .with_header("destination", topic)
                    .with_header("receipt", format!("p{i}"))
                    .with_body(body),
            )
            .await;
        let r = publisher.recv().await;
        if r.command == Command::Error {
            refused += 1;
        }
    }
    assert_eq!(
        refused, 0,
        "SENDs refused although the normal consumer keeps up"
    );
    let (mut normal, got) = tokio::time::timeout(Duration::from_secs(60), reader)
        .await
        .expect("the normal consumer did not get its 300 messages")
        .unwrap();
    let want: Vec<String> = (0..300).map(|i| format!("{i:08}")).collect();
    assert_eq!(got, want, "the normal consumer missed messages");

    let peak = b.peak_rss_kib();
    eprintln!("broker peak RSS: {peak} KiB");
    assert!(
        peak < 48 * 1024,
        "broker peak RSS {peak} KiB: memory not bounded under fan-out"
    );

    // It stays slow: keep publishing until the broker cuts it off (logged), then its socket
    // ends once what the kernel buffered is read.
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut i = 300;
    while !b.log_text().contains("slow consumer cut off") {
        assert!(
            Instant::now() < deadline,
            "slow consumer never cut off:\n{}",
            b.log_text()
        );
        publisher
            .publish(topic, format!("{i:08}").as_bytes(), &[])
            .await;
        normal.message().await;
        i += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(b
        .log_text()
        .contains("slow consumer: topic messages are dropped"));
    tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(Ok(_)) = slow.framed.next().await {}
    })
    .await
    .expect("the cut-off consumer's connection did not end");
}

/// The default cap on subscriptions per connection refuses the 257th SUBSCRIBE.
#[tokio::test]
async fn subscriptions_beyond_the_cap_are_refused() {
    let b = broker::start(stomp_raw::config()).await.unwrap();
    let mut c = connect(b.local_addr()).await;
    for i in 0..256 {
        c.subscribe("/topic/many", &format!("s{i}"), "auto").await;
    }
    c.send(
        Frame::new(Command::Subscribe)
            .with_header("destination", "/topic/many")
            .with_header("id", "s256")
            .with_header("receipt", "over"),
    )
    .await;
    let e = c.recv().await;
    assert_eq!(e.command, Command::Error, "{e:?}");
    assert!(
        e.header("message")
            .unwrap()
            .contains("too many subscriptions"),
        "{e:?}"
    );
}

/// Issue #13, weakness 1: connections that never send CONNECT, send half of it, connect and
/// then say nothing (no heart-beats), or leave a frame unfinished (with and without
/// heart-beats) used to hold their slots for good: with all slots taken, every other client
/// was refused. Each is now closed by a timeout, and a normal client gets in.
#[tokio::test]
async fn silent_and_half_sent_connections_are_timed_out() {
    let cfg = BrokerConfig {
        max_connections: 5,
        connect_timeout: Duration::from_secs(1),
        frame_timeout: Duration::from_secs(1),
        idle_timeout: Duration::from_secs(1),
        heartbeat: (Duration::from_secs(1), Duration::from_secs(1)),
        ..stomp_raw::config()
    };
    let b = broker::start(cfg).await.unwrap();
    let addr = b.local_addr();

    let silent = TcpStream::connect(addr).await.unwrap();
    let mut half_connect = TcpStream::connect(addr).await.unwrap();
    half_connect
        .write_all(b"CONNECT\naccept-version:1.2\n")
        .await
        .unwrap();
    let idle = connect(addr).await;
    let mut half_frame = connect(addr).await;
    half_frame
        .write_raw(b"SEND\ndestination:/queue/x\ncontent-length:100\n\nabc")
        .await;
    let mut half_frame_hb =
        stomp_raw::connect_with(addr, &[("accept-version", "1.2"), ("heart-beat", "1000,0")]).await;
    half_frame_hb
        .write_raw(b"SEND\ndestination:/queue/x\n")
        .await;

    // Every slot is taken.
    let mut refused = raw(addr).await;
    let e = next_frame(&mut refused).await.expect("an ERROR");
    assert_eq!(e.header("message"), Some("too many connections"));

    let ended = |s: TcpStream| async move {
        let mut framed = tokio_util::codec::Framed::new(s, ssm::stomp::StompCodec::default());
        tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(Ok(_)) = framed.next().await {}
        })
        .await
    };
    assert!(ended(silent).await.is_ok(), "silent connection kept");
    assert!(ended(half_connect).await.is_ok(), "half CONNECT kept");
    for (mut c, what) in [
        (idle, "idle connection without heart-beats"),
        (half_frame, "unfinished frame"),
        (half_frame_hb, "unfinished frame with heart-beats"),
    ] {
        let closed = tokio::time::timeout(Duration::from_secs(30), async {
            loop {
                match c.framed.next().await {
                    None | Some(Err(_)) => return,
                    Some(Ok(Item::Frame(f))) if f.command == Command::Error => {}
                    Some(Ok(_)) => {}
                }
            }
        })
        .await;
        assert!(closed.is_ok(), "{what} kept");
    }

    // The slots are given back as the connection tasks end: a normal client gets in.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut framed = raw(addr).await;
        futures::SinkExt::send(
            &mut framed,
            &Frame::new(Command::Connect).with_header("accept-version", "1.2"),
        )
        .await
        .unwrap();
        match next_frame(&mut framed).await {
            Some(f) if f.command == Command::Connected => break,
            other => {
                assert!(
                    Instant::now() < deadline,
                    "a normal client is still refused: {other:?}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Issue #13, weakness 4: a frame above the receiver's frame limit used to drop its broker
/// connection (any publisher could repeat it). The receiver's client now skips it without
/// buffering it and counts it; the valid message after it is stored, without a reconnect.
/// The receiver is given a 64 KiB frame limit, so that the 256 KiB frame passes every broker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_above_the_receivers_limit_is_skipped_and_the_connection_kept() {
    for t in e2e::targets().await {
        let topic = e2e::topic();
        let store = e2e::tmp();
        let mut cfg = e2e::client_config(&t);
        cfg.limits.max_body = 64 * 1024;
        let r = e2e::start_receiver_with(&t, &topic, store.path(), cfg, &e2e::pki().dn_file).await;
        let mut peer = e2e::Peer::connect(&t).await;

        let big = Frame::new(Command::Send)
            .with_header("destination", topic.as_str())
            .with_header("ssm-msg-type", "msg")
            .with_header("ssm-msg-id", "too-big")
            .with_header("reply-to", peer.reply_queue.as_str())
            .with_body(vec![b'A'; 256 * 1024]);
        peer.send(big).await;
        let content = e2e::message("oversized", 1);
        peer.send_msg(&topic, "after-big", &e2e::seal(&content), None)
            .await;
        peer.expect_stored(&e2e::md5(&content)).await;

        let stats = r.stop().await;
        assert_eq!(
            Stats::get(&stats.oversized),
            1,
            "[{}] oversized frame not counted",
            t.name
        );
        assert_eq!(
            Stats::get(&stats.reconnects),
            0,
            "[{}] the receiver lost its connection",
            t.name
        );
        assert_eq!(Stats::get(&stats.stored), 1, "[{}]", t.name);
    }
}
