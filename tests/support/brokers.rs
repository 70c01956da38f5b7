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

use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use ssm::broker::{self, BrokerConfig, BrokerHandle};
use ssm::stomp::{BrokerAddr, BrokerKind, Client, ClientConfig, Event, Frame, StompError};

/// How long any single expected message may take.
pub const WAIT: Duration = Duration::from_secs(10);

/// One broker under test: the one broker-target type of every suite. An in-process embedded
/// broker ([`embedded`]), an `ssm broker` process (see `support::faults::BrokerProc`), or a
/// real broker named in `SSM_TEST_BROKERS` ([`real`], [`real_answering`]).
pub struct Target {
    /// `embedded`, or the name given in `SSM_TEST_BROKERS`.
    pub name: String,
    /// Where it listens.
    pub addr: BrokerAddr,
    /// The software that must answer, when the name says.
    pub expect: Option<BrokerKind>,
    /// Login and passcode (real brokers: `SSM_TEST_BROKER_LOGIN` / `SSM_TEST_BROKER_PASSCODE`,
    /// default `guest` / `guest`); `None` for the embedded broker, which needs none.
    pub login: Option<(String, String)>,
    /// The running in-process embedded broker (kept alive while the target lives).
    pub embedded: Option<BrokerHandle>,
}

impl Target {
    /// A target at `addr` that needs no login and is kept alive by someone else (an `ssm broker`
    /// process, or nobody at all).
    pub fn at(name: &str, addr: SocketAddr) -> Target {
        Target {
            name: name.to_string(),
            addr: BrokerAddr::new(addr.ip().to_string(), addr.port()),
            expect: None,
            login: None,
            embedded: None,
        }
    }

    /// The same broker reached at another address (a proxy in front of it).
    pub fn via(&self, addr: SocketAddr) -> Target {
        Target {
            name: self.name.clone(),
            addr: BrokerAddr::new(addr.ip().to_string(), addr.port()),
            expect: self.expect,
            login: self.login.clone(),
            embedded: None,
        }
    }

    /// A client configuration for this broker: one attempt, short timeouts, no heart-beats.
    pub fn config(&self) -> ClientConfig {
        let mut c = self.config_with_heartbeats();
        c.heartbeat = (Duration::ZERO, Duration::ZERO);
        c
    }

    /// [`Target::config`] with the client's default heart-beats (what the real-process
    /// suites' hand-driven clients use).
    pub fn config_with_heartbeats(&self) -> ClientConfig {
        let mut c = ClientConfig::new(vec![self.addr.clone()]);
        if let Some((l, p)) = &self.login {
            c.login = Some(l.clone());
            c.passcode = Some(p.clone());
        }
        c.connect_timeout = Duration::from_secs(10);
        c.receipt_timeout = Duration::from_secs(20);
        c.max_rounds = Some(1);
        c
    }

    /// The `--broker` (and `--login`/`--passcode`) flags of `ssm send`/`receive`/`check`.
    pub fn flags(&self) -> Vec<String> {
        let mut v = vec!["--broker".to_string(), self.addr.to_string()];
        if let Some((l, p)) = &self.login {
            v.extend(["--login".into(), l.clone(), "--passcode".into(), p.clone()]);
        }
        v
    }

    /// The login flags to add to a command configured by an unchanged Python SSM file: such a
    /// file has no login (the brokers here take none), but a CI that names credentials in
    /// `SSM_TEST_BROKER_LOGIN` gets them as flags, which win over the file.
    pub fn python_cfg_login_flags(&self) -> Vec<String> {
        match &self.login {
            Some((l, p)) if std::env::var_os("SSM_TEST_BROKER_LOGIN").is_some() => {
                vec!["--login".into(), l.clone(), "--passcode".into(), p.clone()]
            }
            _ => Vec::new(),
        }
    }

    /// The socket address (loopback brokers only; anything else fails the test).
    pub fn socket_addr(&self) -> SocketAddr {
        self.addr
            .to_string()
            .parse()
            .unwrap_or_else(|e| panic!("[{}] {}: {e}", self.name, self.addr))
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
        ssm::transport::stomp::subscribes_to_reply_queue(kind)
    }
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

/// An embedded broker's configuration on a free loopback port, the rest the defaults.
pub fn loopback_config() -> BrokerConfig {
    BrokerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..BrokerConfig::default()
    }
}

/// An embedded broker with [`loopback_config`] started on `rt`, for the tests that drive the
/// real binary from plain threads.
pub fn start_blocking(rt: &tokio::runtime::Runtime) -> BrokerHandle {
    rt.block_on(broker::start(loopback_config()))
        .expect("embedded broker did not start")
}

/// The embedded broker's test configuration: a free loopback port, 1 s heart-beats offered.
pub fn embedded_config() -> BrokerConfig {
    BrokerConfig {
        heartbeat: (Duration::from_secs(1), Duration::from_secs(1)),
        ..loopback_config()
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
        login: None,
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
    let login = (
        env_or("SSM_TEST_BROKER_LOGIN", "guest"),
        env_or("SSM_TEST_BROKER_PASSCODE", "guest"),
    );
    named_brokers("SSM_TEST_BROKERS")
        .into_iter()
        .map(|(name, addr)| Target {
            expect: expected_kind(&name),
            name,
            addr,
            login: Some(login.clone()),
            embedded: None,
        })
        .collect()
}

/// [`real`], each of which must accept TCP connections now (on a loopback address): a named
/// broker that does not answer fails the test, it is never skipped.
pub fn real_answering() -> Vec<Target> {
    let all = real();
    for b in &all {
        let a = b.socket_addr();
        if TcpStream::connect_timeout(&a, Duration::from_secs(5)).is_err() {
            panic!(
                "[{}] broker named in SSM_TEST_BROKERS does not answer at {a}",
                b.name
            );
        }
    }
    all
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
