//! The brokers a STOMP conformance test runs against: always a fresh embedded broker, plus every
//! real broker named in `SSM_TEST_BROKERS` (`name=host:port,...`, e.g.
//! `rabbitmq=127.0.0.1:61613,activemq=127.0.0.1:61614`). A name starting with `rabbitmq` or
//! `activemq` also says which broker software must answer. A named broker that does not answer
//! fails the test: nothing is skipped silently.
//!
//! Real brokers are logged into with `SSM_TEST_BROKER_LOGIN` / `SSM_TEST_BROKER_PASSCODE`
//! (default `guest` / `guest`). `SSM_TEST_BROKER_CTL` names a script run as
//! `$SSM_TEST_BROKER_CTL restart <name>` to restart a real broker.
#![allow(dead_code)] // each test binary uses a different subset

use std::time::Duration;

use ssm::broker::{self, BrokerConfig, BrokerHandle};
use ssm::stomp::{BrokerAddr, BrokerKind, Client, ClientConfig, Event, Frame, StompError};

/// How long any single expected message may take.
pub const WAIT: Duration = Duration::from_secs(10);

/// One broker under test.
pub struct Target {
    /// `embedded`, or the name given in `SSM_TEST_BROKERS`.
    pub name: String,
    /// Where it listens.
    pub addr: BrokerAddr,
    /// The software that must answer, when the name says.
    pub expect: Option<BrokerKind>,
    /// The running embedded broker (kept alive while the target lives).
    pub embedded: Option<BrokerHandle>,
}

impl Target {
    /// A client configuration for this broker: one attempt, short timeouts, no heart-beats.
    pub fn config(&self) -> ClientConfig {
        let mut c = ClientConfig::new(vec![self.addr.clone()]);
        if self.embedded.is_none() {
            c.login = Some(env_or("SSM_TEST_BROKER_LOGIN", "guest"));
            c.passcode = Some(env_or("SSM_TEST_BROKER_PASSCODE", "guest"));
        }
        c.heartbeat = (Duration::ZERO, Duration::ZERO);
        c.connect_timeout = Duration::from_secs(10);
        c.receipt_timeout = Duration::from_secs(20);
        c.max_rounds = Some(1);
        c
    }

    /// Connects with [`Target::config`]; failing to connect fails the test.
    pub async fn connect(&self) -> Client {
        self.connect_with(&self.config()).await
    }

    /// Connects with the given configuration; failing to connect fails the test.
    pub async fn connect_with(&self, cfg: &ClientConfig) -> Client {
        match Client::connect(cfg).await {
            Ok(c) => c,
            Err(e) => panic!(
                "[{}] broker at {} did not answer: {e}",
                self.name, self.addr
            ),
        }
    }

    /// Whether the client must SUBSCRIBE to its own `/temp-queue/…` to get replies (ActiveMQ
    /// and the embedded broker), or must not (RabbitMQ, where it is an error).
    pub fn subscribe_temp_queue(&self, kind: BrokerKind) -> bool {
        kind != BrokerKind::RabbitMq
    }
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

/// The embedded broker's test configuration: a free loopback port, 1 s heart-beats offered.
pub fn embedded_config() -> BrokerConfig {
    BrokerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        heartbeat: (Duration::from_secs(1), Duration::from_secs(1)),
        ..BrokerConfig::default()
    }
}

/// A fresh embedded broker as a target.
pub async fn embedded() -> Target {
    let handle = broker::start(embedded_config())
        .await
        .expect("embedded broker did not start");
    let a = handle.local_addr();
    Target {
        name: "embedded".into(),
        addr: BrokerAddr::new(a.ip().to_string(), a.port()),
        expect: Some(BrokerKind::Embedded),
        embedded: Some(handle),
    }
}

/// The `name=host:port,...` list in environment variable `var` (empty when unset).
pub fn named_brokers(var: &str) -> Vec<(String, BrokerAddr)> {
    match std::env::var(var) {
        Ok(list) => parse_named(var, &list),
        Err(_) => Vec::new(),
    }
}

/// Parses a `name=host:port,...` list; a malformed list fails the test.
pub fn parse_named(var: &str, list: &str) -> Vec<(String, BrokerAddr)> {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|item| {
            let (name, addr) = item
                .split_once('=')
                .unwrap_or_else(|| panic!("{var}: {item:?} is not name=host:port"));
            let addr: BrokerAddr = addr
                .parse()
                .unwrap_or_else(|e| panic!("{var}: {item:?}: {e}"));
            (name.trim().to_string(), addr)
        })
        .collect()
}

/// The broker software a target name promises.
pub fn expected_kind(name: &str) -> Option<BrokerKind> {
    let n = name.to_ascii_lowercase();
    if n.starts_with("rabbitmq") {
        Some(BrokerKind::RabbitMq)
    } else if n.starts_with("activemq") {
        Some(BrokerKind::ActiveMq)
    } else {
        None
    }
}

/// The real brokers named in `SSM_TEST_BROKERS`.
pub fn real() -> Vec<Target> {
    named_brokers("SSM_TEST_BROKERS")
        .into_iter()
        .map(|(name, addr)| Target {
            expect: expected_kind(&name),
            name,
            addr,
            embedded: None,
        })
        .collect()
}

/// A fresh embedded broker followed by every real broker named in `SSM_TEST_BROKERS`.
pub async fn targets() -> Vec<Target> {
    let mut all = vec![embedded().await];
    all.extend(real());
    all
}

/// A destination name no other test uses.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}ssm.test.{}", uuid::Uuid::new_v4().simple())
}

/// The next MESSAGE within [`WAIT`]; an ERROR, a lost connection or silence fails the test.
pub async fn next_message(name: &str, client: &mut Client) -> Frame {
    match tokio::time::timeout(WAIT, client.recv()).await {
        Ok(Ok(Event::Message(m))) => m,
        Ok(Ok(Event::Error(e))) => panic!("[{name}] ERROR instead of a message: {e:?}"),
        Ok(Ok(Event::Oversized(o))) => {
            panic!("[{name}] oversized frame instead of a message: {o:?}")
        }
        Ok(Err(e)) => panic!("[{name}] connection failed while waiting for a message: {e}"),
        Err(_) => panic!("[{name}] no message within {WAIT:?}"),
    }
}

/// Asserts nothing arrives for `quiet`.
pub async fn no_message(name: &str, client: &mut Client, quiet: Duration) {
    if let Ok(got) = tokio::time::timeout(quiet, client.recv()).await {
        panic!("[{name}] expected silence, got {got:?}");
    }
}

/// Whether an error says the connection is gone (what a broker restart looks like).
pub fn is_loss(e: &StompError) -> bool {
    matches!(
        e,
        StompError::ConnectionLost(_) | StompError::HeartbeatTimeout
    )
}
