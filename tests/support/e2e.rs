//! Shared pieces of the end-to-end tests of the SSM protocol (sender → broker → receiver).
//!
//! Every scenario runs against a fresh embedded broker and against every real broker named in
//! `SSM_TEST_BROKERS` (see `support/brokers.rs`); a named broker that does not answer fails the
//! test. Each scenario uses its own topic, so tests may share a real broker and run in parallel.
//! The PKI is generated once per test binary (and shared by its modules; none changes it).
#![allow(dead_code)] // each test binary uses a different subset

pub use super::brokers;

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;

use bytes::Bytes;
use ssm::crypto::{self, Cipher, DnList, Identity, Opener, TrustStore};
use ssm::harness::pki::{CertFiles, Pki};
use ssm::protocol::{AckOutcome, SsmMessage};
use ssm::queue::{Dirq, MessageStore, Outgoing, PathType, Record};
use ssm::receiver::{self, Control, ReceiverError, ReceiverSettings, Stats};
use ssm::sender::{Sender, SenderSettings};
use ssm::stomp::{AckMode, BrokerKind, Client, ClientConfig, Event, Frame};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use super::peer::Peer;
pub use brokers::{targets, Target};

/// How long any single expected reply may take.
pub const WAIT: Duration = Duration::from_secs(15);

/// The test PKI plus extra client certificates, made once per test binary.
pub struct TestPki {
    /// CA, server, client, untrusted, expired and revoked certificates.
    pub pki: Pki,
    /// A certificate from the trusted CA whose DN is in no DN list.
    pub stranger: CertFiles,
    /// The trusted CAs.
    pub trust: TrustStore,
    /// The server's identity.
    pub server: Identity,
    /// The client's identity.
    pub client: Identity,
    /// A DN file allowing the client, and the untrusted, expired and revoked clients (so that those are refused for their certificates, not their DNs).
    pub dn_file: PathBuf,
}

/// The PKI of this test binary.
pub fn pki() -> &'static TestPki {
    static PKI: OnceLock<TestPki> = OnceLock::new();
    PKI.get_or_init(|| {
        // One directory per test binary, regenerated on each run (so runs do not pile up).
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join("e2e-pki")
            .join(env!("CARGO_CRATE_NAME"));
        let _ = std::fs::remove_dir_all(&dir);
        let pki = Pki::generate(&dir).unwrap();
        let stranger = pki.issue_client("stranger.example.org").unwrap();
        let dns = [
            pki.client.dn.clone(),
            pki.untrusted_client.dn.clone(),
            pki.expired_client.dn.clone(),
            pki.revoked_client.dn.clone(),
        ];
        let dn_file = dir.join("dns");
        std::fs::write(&dn_file, dns.join("\n") + "\n").unwrap();
        let trust = TrustStore::new(Some(&pki.capath), None, false).unwrap();
        let server = Identity::load(&pki.server.cert, &pki.server.key).unwrap();
        let client = Identity::load(&pki.client.cert, &pki.client.key).unwrap();
        TestPki {
            pki,
            stranger,
            trust,
            server,
            client,
            dn_file,
        }
    })
}

/// Twenty more senders' certificates and a DN file allowing them and the client; made on
/// first use (issuing them takes seconds, so only the binaries that need them pay).
pub struct Senders {
    /// The certificates.
    pub certs: Vec<CertFiles>,
    /// The DN file.
    pub dn_file: PathBuf,
}

/// The twenty senders of this test binary.
pub fn senders() -> &'static Senders {
    static SENDERS: OnceLock<Senders> = OnceLock::new();
    SENDERS.get_or_init(|| {
        let p = &pki().pki;
        let certs: Vec<CertFiles> = (0..20)
            .map(|i| {
                p.issue_client(&format!("sender{i:02}.example.org"))
                    .unwrap()
            })
            .collect();
        let mut dns = vec![p.client.dn.clone()];
        dns.extend(certs.iter().map(|c| c.dn.clone()));
        let dn_file = p.dir.join("dns-senders");
        std::fs::write(&dn_file, dns.join("\n") + "\n").unwrap();
        Senders { certs, dn_file }
    })
}

/// A unique topic for one scenario on one broker.
pub fn topic() -> String {
    brokers::unique("/topic/e2e.")
}

/// A fresh temporary directory (removed when dropped).
pub fn tmp() -> tempfile::TempDir {
    tempfile::Builder::new().prefix("e2e-").tempdir().unwrap()
}

/// A receiver running in this process.
pub struct RunningReceiver {
    /// The store it writes (`incoming/`, `reject/`).
    pub store_path: PathBuf,
    /// Its counters.
    pub stats: Arc<Stats>,
    shutdown: CancellationToken,
    task: JoinHandle<Result<Arc<Stats>, ReceiverError>>,
}

impl RunningReceiver {
    /// Stops it (finishing what is in flight) and returns its counters.
    pub async fn stop(self) -> Arc<Stats> {
        self.shutdown.cancel();
        match tokio::time::timeout(WAIT, self.task).await {
            Ok(r) => r.unwrap().unwrap(),
            Err(_) => panic!("receiver did not stop within {WAIT:?}"),
        }
    }

    /// The store, opened afresh.
    pub fn store(&self) -> MessageStore {
        MessageStore::open(&self.store_path).unwrap()
    }

    /// Elements in the incoming queue.
    pub fn incoming(&self) -> Vec<Record> {
        records(&self.store().incoming)
    }

    /// Elements in the incoming queue once there are at least `n` (messages of different
    /// senders are opened in different lanes, so one may be stored after another sender's
    /// message was acked, and a backlog takes a while); fails the test, naming `target`, after
    /// `within`.
    pub async fn wait_incoming(&self, target: &str, n: usize, within: Duration) -> Vec<Record> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let got = self.incoming();
            if got.len() >= n {
                return got;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "[{target}] only {} of {n} messages stored within {within:?}",
                got.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Elements in the reject queue.
    pub fn rejected(&self) -> Vec<Record> {
        records(&self.store().reject)
    }
}

/// Every record of a dirq, oldest first.
pub fn records(q: &Dirq) -> Vec<Record> {
    q.names()
        .unwrap()
        .iter()
        .map(|n| q.get(n).unwrap())
        .collect()
}

/// A client configuration for a target with the retry and timeout settings the protocol
/// roles use in these tests.
pub fn client_config(t: &Target) -> ClientConfig {
    let mut c = t.config();
    c.max_rounds = Some(2);
    c.initial_backoff = Duration::from_millis(100);
    c
}

/// Starts a receiver on `topic` storing under `store_path`, and waits until it is subscribed.
pub async fn start_receiver(t: &Target, topic: &str, store_path: &Path) -> RunningReceiver {
    start_receiver_with(t, topic, store_path, client_config(t), &pki().dn_file).await
}

/// [`start_receiver`] with its own broker client settings and allowed-DN file.
pub async fn start_receiver_with(
    t: &Target,
    topic: &str,
    store_path: &Path,
    client: ClientConfig,
    dn_file: &Path,
) -> RunningReceiver {
    let p = pki();
    let cert_pem = String::from_utf8(p.server.cert.to_pem().unwrap()).unwrap();
    let dns = DnList::load(dn_file).unwrap();
    let settings = ReceiverSettings {
        transport: ssm::transport::TransportConfig::stomp(client, None),
        destination: topic.to_string(),
        opener: Opener::new(p.server.clone(), p.trust.clone()),
        cert_pem,
        dns: Arc::new(RwLock::new(dns)),
        store_path: store_path.to_path_buf(),
        reack_max_age: Duration::from_secs(86400),
        max_messages: None,
        run_for: None,
        lanes: 2,
    };
    let (ready_tx, ready_rx) = oneshot::channel();
    let stats = Arc::new(Stats::default());
    let control = Control {
        shutdown: CancellationToken::new(),
        ready: Some(ready_tx),
        stats: stats.clone(),
    };
    let shutdown = control.shutdown.clone();
    let task = tokio::spawn(receiver::run(settings, control));
    match tokio::time::timeout(WAIT, ready_rx).await {
        Ok(Ok(())) => {}
        Ok(Err(_)) => panic!(
            "[{}] receiver stopped before subscribing: {:?}",
            t.name,
            task.await
        ),
        Err(_) => panic!("[{}] receiver did not subscribe within {WAIT:?}", t.name),
    }
    RunningReceiver {
        store_path: store_path.to_path_buf(),
        stats,
        shutdown,
        task,
    }
}

/// Sender settings for `cert` to a receiver on `topic`: the server certificate given, 3 s
/// ack timeout, 3 attempts.
pub fn sender_settings(t: &Target, topic: &str, cert: &CertFiles) -> SenderSettings {
    let p = pki();
    SenderSettings {
        transport: ssm::transport::TransportConfig::stomp(client_config(t), None),
        destination: topic.to_string(),
        identity: Identity::load(&cert.cert, &cert.key).unwrap(),
        trust: p.trust.clone(),
        server_cert: Some(p.server.cert.clone()),
        server_dn: Some(p.pki.server.dn.clone()),
        verify_server_cert: true,
        cipher: Cipher::Des3,
        ack_timeout: Duration::from_secs(3),
        max_attempts: 3,
        reply_queue: ssm::transport::stomp::new_reply_queue(),
        version: ssm::protocol::Version::V1,
        window: 1,
    }
}

/// An outgoing queue (dirq) under `dir` holding `messages`, and its reject queue.
pub fn queue_with(dir: &Path, messages: &[Vec<u8>]) -> (Outgoing, Dirq) {
    let out = Outgoing::open(&dir.join("outgoing"), PathType::QueueSimple).unwrap();
    for m in messages {
        out.add(m).unwrap();
    }
    let reject = Dirq::open(&dir.join("outgoing").join("reject")).unwrap();
    (out, reject)
}

/// A sender with `settings` over a queue under `dir` holding `messages`; returns the queues
/// too, reopened, so that the test can look at them afterwards.
pub fn sender_with(
    settings: SenderSettings,
    dir: &Path,
    messages: &[Vec<u8>],
) -> (Sender, Outgoing, Dirq) {
    let (out, reject) = queue_with(dir, messages);
    let out2 = Outgoing::open(&dir.join("outgoing"), PathType::QueueSimple).unwrap();
    let reject2 = Dirq::open(&dir.join("outgoing").join("reject")).unwrap();
    (Sender::new(settings, out, reject), out2, reject2)
}

/// A small distinct message, the same for the same arguments.
pub fn message(tag: &str, i: usize) -> Vec<u8> {
    super::messages::job_record(tag, i, false)
}

/// Seals `msg` as the test client for the test server.
pub fn seal(msg: &[u8]) -> Bytes {
    seal_as(msg, &pki().client)
}

/// Seals `msg` as `signer` for the test server.
pub fn seal_as(msg: &[u8], signer: &Identity) -> Bytes {
    Bytes::from(crypto::seal(msg, signer, &pki().server.cert, Cipher::Des3).unwrap())
}

/// The MD5 the protocol uses.
pub fn md5(msg: &[u8]) -> String {
    crypto::message_id(msg)
}
