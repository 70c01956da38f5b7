//! A raw STOMP test client for the broker tests: `Framed<TcpStream, StompCodec>` plus helpers
//! that fail the test (with context) when the broker does not answer as expected.
#![allow(dead_code)] // each test binary uses a different subset

use std::net::SocketAddr;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use ssm::broker::{self, BrokerConfig, BrokerHandle};
use ssm::stomp::{Command, Frame, Item, StompCodec, Version};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_util::codec::Framed;

/// How long any single expected frame may take.
pub const WAIT: Duration = Duration::from_secs(5);

/// A broker configuration on a free loopback port.
pub fn config() -> BrokerConfig {
    super::brokers::loopback_config()
}

/// Starts a broker with the default test configuration.
pub async fn broker() -> BrokerHandle {
    broker::start(config()).await.unwrap()
}

/// A raw test connection.
pub struct Client {
    pub framed: Framed<TcpStream, StompCodec>,
    pub connected: Frame,
    receipts: u64,
    /// MESSAGE frames that arrived while waiting for a RECEIPT.
    early: std::collections::VecDeque<Frame>,
}

/// Opens a TCP connection without any handshake.
pub async fn raw(addr: SocketAddr) -> Framed<TcpStream, StompCodec> {
    let stream = TcpStream::connect(addr).await.unwrap();
    Framed::new(stream, StompCodec::default())
}

/// Connects with STOMP 1.2 and no heart-beats.
pub async fn connect(addr: SocketAddr) -> Client {
    connect_with(addr, &[("accept-version", "1.2"), ("host", "localhost")]).await
}

/// Connects with the given CONNECT headers and expects CONNECTED.
pub async fn connect_with(addr: SocketAddr, headers: &[(&str, &str)]) -> Client {
    let mut framed = raw(addr).await;
    let mut f = Frame::new(Command::Connect);
    for (k, v) in headers {
        f = f.with_header(*k, *v);
    }
    framed.send(&f).await.unwrap();
    let connected = next_frame(&mut framed).await.expect("connection closed");
    assert_eq!(connected.command, Command::Connected, "{connected:?}");
    let version = connected
        .header("version")
        .and_then(Version::parse)
        .unwrap_or(Version::V1_0);
    framed.codec_mut().set_version(version);
    Client {
        framed,
        connected,
        receipts: 0,
        early: Default::default(),
    }
}

/// The next frame (heart-beats skipped), `None` on end of stream; panics after [`WAIT`].
pub async fn next_frame(framed: &mut Framed<TcpStream, StompCodec>) -> Option<Frame> {
    tokio::time::timeout(WAIT, async {
        loop {
            match framed.next().await {
                None => return None,
                Some(Ok(Item::HeartBeat | Item::Oversized(_))) => continue,
                Some(Ok(Item::Frame(f))) => return Some(f),
                Some(Err(e)) => panic!("client read failed: {e}"),
            }
        }
    })
    .await
    .expect("no frame from the broker in time")
}

/// Asserts the broker closes the connection (end of stream or reset) within [`WAIT`],
/// returning the frames it sent before.
pub async fn expect_closed(framed: &mut Framed<TcpStream, StompCodec>) -> Vec<Frame> {
    let mut got = Vec::new();
    tokio::time::timeout(WAIT, async {
        loop {
            match framed.next().await {
                None | Some(Err(_)) => return,
                Some(Ok(Item::HeartBeat | Item::Oversized(_))) => continue,
                Some(Ok(Item::Frame(f))) => got.push(f),
            }
        }
    })
    .await
    .expect("broker did not close the connection");
    got
}

impl Client {
    /// Sends a frame.
    pub async fn send(&mut self, f: Frame) {
        self.framed.send(&f).await.unwrap();
    }

    /// Writes raw bytes.
    pub async fn write_raw(&mut self, bytes: &[u8]) {
        self.framed.get_mut().write_all(bytes).await.unwrap();
    }

    /// The next frame; panics if the connection closes or nothing comes in time.
    pub async fn recv(&mut self) -> Frame {
        next_frame(&mut self.framed)
            .await
            .expect("connection closed by the broker")
    }

    /// The next frame if one comes within `d`.
    pub async fn recv_within(&mut self, d: Duration) -> Option<Frame> {
        tokio::time::timeout(d, self.recv()).await.ok()
    }

    /// Sends `f` with a fresh `receipt` header and waits for its RECEIPT.
    pub async fn request(&mut self, f: Frame) {
        self.receipts += 1;
        let id = format!("r-{}", self.receipts);
        self.send(f.with_header("receipt", &id)).await;
        loop {
            let r = self.recv().await;
            if r.command == Command::Message {
                self.early.push_back(r);
                continue;
            }
            assert_eq!(r.command, Command::Receipt, "{:?}", r.headers);
            assert_eq!(r.header("receipt-id"), Some(id.as_str()));
            return;
        }
    }

    /// Subscribes (with a receipt) with the given ack mode.
    pub async fn subscribe(&mut self, dest: &str, id: &str, ack: &str) {
        let f = Frame::new(Command::Subscribe)
            .with_header("destination", dest)
            .with_header("id", id)
            .with_header("ack", ack);
        self.request(f).await;
    }

    /// Sends a message (with a receipt).
    pub async fn publish(&mut self, dest: &str, body: &[u8], headers: &[(&str, &str)]) {
        let mut f = Frame::new(Command::Send)
            .with_header("destination", dest)
            .with_body(body.to_vec());
        for (k, v) in headers {
            f = f.with_header(*k, *v);
        }
        self.request(f).await;
    }

    /// Receives a MESSAGE.
    pub async fn message(&mut self) -> Frame {
        if let Some(m) = self.early.pop_front() {
            return m;
        }
        let m = self.recv().await;
        assert_eq!(m.command, Command::Message, "{:?}", m.headers);
        m
    }

    /// Asserts nothing arrives for a short while.
    pub async fn expect_nothing(&mut self) {
        assert!(self.early.is_empty(), "unexpected early messages");
        if let Some(f) = self.recv_within(Duration::from_millis(200)).await {
            panic!("unexpected frame {} {:?}", f.command, f.headers);
        }
    }
}
