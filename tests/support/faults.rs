//! Helpers of the fault-injection and hostile-input suites: a throwaway PKI, `ssm broker`,
//! `ssm receive` and `ssm send` run as real processes (so that they can be killed with
//! SIGKILL), outgoing queues filled with unique messages, and the exactly-once check that
//! compares what was queued with what the receiver stored.
//!
//! Brokers: a fresh embedded broker process always, plus every real broker named in
//! `SSM_TEST_BROKERS` (`name=host:port,...`). A named broker that does not answer fails the test.
#![allow(dead_code)] // each test binary uses a different subset

use std::collections::HashMap;
use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

pub use super::brokers::Target;
use ssm::crypto::message_id;

use super::messages::Tally;
use ssm::harness::pki::{CertFiles, Pki};
use ssm::queue::{MessageStore, Outgoing, PathType};

pub use super::process::{free_port, kill9, ssm_bin, terminate, wait_child, wait_listening};

/// `ssm broker` as a process on a fixed port, so that it can be killed and restarted there.
pub struct BrokerProc {
    /// Where it listens.
    pub addr: SocketAddr,
    child: Option<Child>,
    log: PathBuf,
    extra: Vec<String>,
}

impl BrokerProc {
    /// Starts `ssm broker` on a free loopback port; `extra` are more `ssm broker` flags.
    pub fn start(dir: &Path, extra: &[&str]) -> BrokerProc {
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let mut b = BrokerProc {
            addr,
            child: None,
            log: dir.join("broker.log"),
            extra: extra.iter().map(|s| s.to_string()).collect(),
        };
        b.spawn();
        b
    }

    fn spawn(&mut self) {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(ssm_bin())
            .arg("broker")
            .arg("--listen")
            .arg(self.addr.to_string())
            .args(&self.extra)
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn ssm broker");
        self.child = Some(child);
        wait_listening(self.addr, Duration::from_secs(20));
    }

    /// SIGKILL: every message it held is gone, every connection cut.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            kill9(&mut c);
        }
    }

    /// Starts it again on the same port.
    pub fn restart(&mut self) {
        self.kill9();
        self.spawn();
    }
}

impl Drop for BrokerProc {
    fn drop(&mut self) {
        self.kill9();
    }
}

impl BrokerProc {
    /// This broker process as a target (named `embedded`, no login).
    pub fn target(&self) -> Target {
        Target::at("embedded", self.addr)
    }
}

/// Runs `scenario` on a fresh `ssm broker` process (with `broker_flags`), stopped before the
/// real brokers' turn, then on every real broker named in `SSM_TEST_BROKERS` (each must answer).
pub fn on_every_broker(broker_flags: &[&str], mut scenario: impl FnMut(&Target)) {
    let dir = tempfile::tempdir().unwrap();
    let embedded = BrokerProc::start(dir.path(), broker_flags);
    scenario(&embedded.target());
    drop(embedded);
    for b in real_brokers() {
        scenario(&b);
    }
}

/// The runtime a scenario drives its hand-made clients on: two workers.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// The real brokers named in `SSM_TEST_BROKERS`; each must answer now.
pub fn real_brokers() -> Vec<Target> {
    super::brokers::real_answering()
}

/// One scenario's world: a directory, a PKI, a topic of its own.
pub struct World {
    /// Everything goes under here (removed at the end unless the test failed).
    pub dir: PathBuf,
    /// The throwaway PKI.
    pub pki: Pki,
    /// The topic senders send to, unique to this world.
    pub topic: String,
    /// The allowed-DN file of the receiver.
    pub dn_file: PathBuf,
    /// The receiver's store.
    pub store: PathBuf,
    /// The scenario's name, for the fault report.
    pub tag: String,
}

impl World {
    /// A new world with a fresh PKI; the DN file lists the PKI's client.
    pub fn new(tag: &str) -> World {
        let dir = tempfile::Builder::new()
            .prefix(&format!("ssm-{tag}-"))
            .tempdir()
            .unwrap()
            .keep();
        let pki = Pki::generate(&dir.join("pki")).expect("PKI");
        let dn_file = dir.join("dns");
        fs::write(&dn_file, format!("{}\n", pki.client.dn)).unwrap();
        let store = dir.join("store");
        World {
            topic: format!("/topic/ssm.{tag}.{}", uuid::Uuid::new_v4().simple()),
            dir,
            pki,
            dn_file,
            store,
            tag: tag.to_string(),
        }
    }

    /// A path under the world's directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// `n` senders, each with its own certificate (added to the DN file) and queue holding
    /// `per_sender` unique messages.
    pub fn senders(&self, n: usize, per_sender: usize) -> Vec<SenderSpec> {
        let mut out = Vec::new();
        let mut dns = fs::read_to_string(&self.dn_file).unwrap();
        for i in 0..n {
            let cert = self
                .pki
                .issue_client(&format!("site{i}.{}.example.org", &self.topic[13..21]))
                .unwrap();
            dns.push_str(&format!("{}\n", cert.dn));
            let queue = self.path(&format!("outgoing-{i}"));
            let q = Outgoing::open(&queue, PathType::QueueSimple).unwrap();
            let mut expected = Vec::new();
            for m in 0..per_sender {
                let body = message(i, m);
                q.add(&body).unwrap();
                expected.push(message_id(&body));
            }
            out.push(SenderSpec {
                cert,
                queue,
                expected,
                log: self.path(&format!("sender-{i}.log")),
            });
        }
        fs::write(&self.dn_file, dns).unwrap();
        out
    }

    /// The flags of an `ssm receive` of this world (after the broker's): its topic, the server
    /// identity, the CAs, the store and the DN file.
    pub fn receiver_flags(&self) -> Vec<String> {
        let mut args = Vec::new();
        for (flag, val) in [
            ("--destination", self.topic.clone()),
            ("--cert", self.pki.server.cert.display().to_string()),
            ("--key", self.pki.server.key.display().to_string()),
            ("--capath", self.pki.capath.display().to_string()),
            ("--path", self.store.display().to_string()),
            ("--dn-file", self.dn_file.display().to_string()),
        ] {
            args.push(flag.into());
            args.push(val);
        }
        args
    }

    /// Spawns `ssm receive` on `broker` with this world's store; `extra` are more flags.
    /// Returns once it is subscribed.
    pub fn receiver(&self, broker: &Target, extra: &[&str]) -> ReceiverProc {
        ReceiverProc::start(self, broker, extra)
    }

    /// Spawns one `ssm send` pass (what cron runs) for `s`; `extra` are more flags.
    pub fn spawn_sender(&self, broker: &Target, s: &SenderSpec, extra: &[&str]) -> Child {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&s.log)
            .unwrap();
        Command::new(ssm_bin())
            .arg("send")
            .args(["--ssm-version", "1"])
            .args(broker.flags())
            .arg("--destination")
            .arg(&self.topic)
            .arg("--cert")
            .arg(&s.cert.cert)
            .arg("--key")
            .arg(&s.cert.key)
            .arg("--capath")
            .arg(&self.pki.capath)
            .arg("--server-cert")
            .arg(&self.pki.server.cert)
            .arg("--path")
            .arg(&s.queue)
            .args(["--ack-timeout", "2", "--max-attempts", "3"])
            .args(extra)
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn ssm send")
    }

    /// Runs `ssm send` passes for every sender (concurrently) until every outgoing queue is
    /// empty, as cron would; fails after `max_rounds` rounds. `before_round` runs before each
    /// round (e.g. to release the locks a killed sender left, once they are stale).
    pub fn drain(&self, broker: &Target, senders: &[SenderSpec], max_rounds: usize) {
        for round in 0..max_rounds {
            let pending: Vec<&SenderSpec> = senders.iter().filter(|s| s.count() > 0).collect();
            if pending.is_empty() {
                return;
            }
            let mut children: Vec<Child> = pending
                .iter()
                .map(|s| self.spawn_sender(broker, s, &[]))
                .collect();
            for c in &mut children {
                wait_child(c, Duration::from_secs(120), "ssm send");
            }
            eprintln!(
                "[{}] drain round {round}: {:?} left",
                broker.name,
                senders.iter().map(|s| s.count()).collect::<Vec<_>>()
            );
        }
        let left: Vec<usize> = senders.iter().map(|s| s.count()).collect();
        assert!(
            left.iter().all(|&n| n == 0),
            "[{}] outgoing queues not empty after {max_rounds} cron rounds: {left:?} (logs in {})",
            broker.name,
            self.dir.display()
        );
    }

    /// The exactly-once check (also reported, see [`report`]): every queued message is stored once, with its sender's DN;
    /// nothing else is stored; every outgoing queue is empty.
    pub fn check_exactly_once(&self, broker: &str, senders: &[SenderSpec]) -> usize {
        let mut want = Vec::new();
        for s in senders {
            assert_eq!(
                s.count(),
                0,
                "[{broker}] outgoing queue {} not empty",
                s.queue.display()
            );
            want.extend(
                s.expected
                    .iter()
                    .map(|md5| (s.cert.dn.clone(), md5.clone())),
            );
        }
        let stored = stored_records(&self.store);
        let t = Tally::of(want, stored.iter().cloned());
        report(&t.line(&self.tag, broker));
        assert!(
            t.is_exact(),
            "[{broker}] {} lost, {} stored more than once, {} never queued (of {}); logs in {}\nlost: {:?}\ntwice: {:?}",
            t.lost.len(),
            t.twice.len(),
            t.unknown.len(),
            t.sent,
            self.dir.display(),
            t.lost,
            t.twice
        );
        stored.len()
    }
}

impl Drop for World {
    fn drop(&mut self) {
        // A failed test keeps its logs and queues for a post-mortem (the path is in the panic).
        if !std::thread::panicking() {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// Every message in the incoming queue of `store`, as (signer DN, MD5 of the body).
pub fn stored_records(store: &Path) -> Vec<(String, String)> {
    let st = MessageStore::open(store).unwrap();
    st.incoming
        .names()
        .unwrap()
        .into_iter()
        .map(|n| {
            let r = st.incoming.get(&n).unwrap();
            (r.signer.unwrap_or_default(), message_id(&r.body))
        })
        .collect()
}

/// Every record in the reject queue of `store`: (error, signer).
pub fn rejected_records(store: &Path) -> Vec<(String, Option<String>)> {
    let st = MessageStore::open(store).unwrap();
    st.reject
        .names()
        .unwrap()
        .into_iter()
        .filter_map(|n| st.reject.get(&n).ok())
        .map(|r| (r.error.unwrap_or_default(), r.signer))
        .collect()
}

/// A unique message of about 600 bytes.
pub fn message(sender: usize, seq: usize) -> Vec<u8> {
    super::messages::job_record(&format!("SITE{sender}"), seq, true)
}

/// One sender: its certificate, queue and what it queued.
pub struct SenderSpec {
    /// Its certificate (signs its messages).
    pub cert: CertFiles,
    /// Its outgoing queue.
    pub queue: PathBuf,
    /// MD5s of what it queued.
    pub expected: Vec<String>,
    /// Where its `ssm send` runs log.
    pub log: PathBuf,
}

impl SenderSpec {
    /// Messages still in its outgoing queue.
    pub fn count(&self) -> usize {
        Outgoing::open(&self.queue, PathType::QueueSimple)
            .unwrap()
            .count()
            .unwrap()
    }

    /// Makes every lock in its queue look `age` old, as if that much time had passed since a
    /// killed sender took it (the lock's age is the element's mtime).
    pub fn age_locks(&self, age: Duration) -> usize {
        let when = SystemTime::now() - age;
        let mut n = 0;
        for dir in fs::read_dir(&self.queue).unwrap().flatten() {
            if !dir.path().is_dir() {
                continue;
            }
            for f in fs::read_dir(dir.path()).unwrap().flatten() {
                if f.file_name().to_string_lossy().ends_with(".lck") {
                    let file = fs::OpenOptions::new().write(true).open(f.path()).unwrap();
                    file.set_modified(when).unwrap();
                    n += 1;
                }
            }
        }
        n
    }
}

/// `ssm receive` as a process.
pub struct ReceiverProc {
    child: Option<Child>,
    /// Its log (stderr), appended to across restarts.
    pub log: PathBuf,
    args: Vec<String>,
    envs: Vec<(String, String)>,
}

impl ReceiverProc {
    fn start(w: &World, broker: &Target, extra: &[&str]) -> ReceiverProc {
        let mut args = vec!["receive".to_string()];
        args.extend(broker.flags());
        args.extend(w.receiver_flags());
        args.extend(extra.iter().map(|s| s.to_string()));
        ReceiverProc::spawned(args, w.path("receiver.log"))
    }

    /// `ssm` with `args`, started, its stderr appended to `log`.
    fn spawned(args: Vec<String>, log: PathBuf) -> ReceiverProc {
        let mut r = ReceiverProc {
            child: None,
            log,
            args,
            envs: Vec::new(),
        };
        r.spawn();
        r
    }

    /// `ssm receive -c <cfg> -d <the world's DN file>`: configured by a file only (plus
    /// [`Target::python_cfg_login_flags`]), as a repository runs it; `log` is the file's
    /// `logfile`, which also takes the process's stderr.
    pub fn from_config(w: &World, broker: &Target, cfg: &Path, log: &Path) -> ReceiverProc {
        let mut args = vec![
            "receive".to_string(),
            "-c".into(),
            cfg.display().to_string(),
        ];
        args.extend(["-d".into(), w.dn_file.display().to_string()]);
        args.extend(broker.python_cfg_login_flags());
        ReceiverProc::spawned(args, log.to_path_buf())
    }

    /// Like [`World::receiver`] with more environment (e.g. `RUST_LOG=debug`).
    pub fn start_with_env(
        w: &World,
        broker: &Target,
        extra: &[&str],
        envs: &[(&str, &str)],
    ) -> ReceiverProc {
        let mut r = ReceiverProc::start_stopped(w, broker, extra);
        r.envs = envs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        r.spawn();
        r
    }

    fn start_stopped(w: &World, broker: &Target, extra: &[&str]) -> ReceiverProc {
        let mut r = ReceiverProc::start(w, broker, extra);
        r.kill9();
        r
    }

    fn spawn(&mut self) {
        let before = fs::read_to_string(&self.log)
            .map(|s| s.matches("receiver subscribed").count())
            .unwrap_or(0);
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let mut cmd = Command::new(ssm_bin());
        cmd.args(&self.args)
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(log);
        for (k, v) in &self.envs {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn ssm receive");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let n = fs::read_to_string(&self.log)
                .map(|s| s.matches("receiver subscribed").count())
                .unwrap_or(0);
            if n > before {
                break;
            }
            if let Some(st) = child.try_wait().unwrap() {
                panic!(
                    "ssm receive exited ({st}) before subscribing:\n{}",
                    fs::read_to_string(&self.log).unwrap_or_default()
                );
            }
            if Instant::now() > deadline {
                kill9(&mut child);
                panic!("ssm receive did not subscribe within 30 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.child = Some(child);
    }

    /// SIGKILL.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            kill9(&mut c);
        }
    }

    /// SIGKILL, then start again with the same store.
    pub fn restart(&mut self) {
        self.kill9();
        self.spawn();
    }

    /// Whether it is still running.
    pub fn is_running(&mut self) -> bool {
        match &mut self.child {
            Some(c) => c.try_wait().unwrap().is_none(),
            None => false,
        }
    }

    /// SIGTERM; asserts it finished cleanly.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            assert!(
                terminate(&mut c, Duration::from_secs(20)),
                "ssm receive did not stop cleanly on SIGTERM"
            );
        }
    }

    /// The log so far.
    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for ReceiverProc {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A small pseudo-random number in `lo..hi` (no seeding needed; timing is random anyway).
pub fn rand_between(lo: u64, hi: u64) -> u64 {
    use rand::Rng;
    rand::thread_rng().gen_range(lo..hi)
}

/// Sleeps a random time between `lo` and `hi` milliseconds (where a fault strikes).
pub fn sleep_ms(lo: u64, hi: u64) {
    std::thread::sleep(Duration::from_millis(rand_between(lo, hi)));
}

/// How a [`Proxy`] treats the frames going to the sender (broker → client).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AckFault {
    /// Forward as is.
    None,
    /// Drop one `ack` frame in `n` (the first one included).
    DropOneIn(u64),
    /// Send every `ack` frame twice.
    Duplicate,
}

/// A TCP proxy between a client and a broker that can cut or stall every connection, and
/// drop or duplicate SSM frames. Frames are split on NUL, which is safe here: nothing the SSM
/// sender sends or receives has a binary body.
pub struct Proxy {
    /// Where clients connect.
    pub addr: SocketAddr,
    state: Arc<ProxyState>,
    _rt: tokio::runtime::Runtime,
}

struct ProxyState {
    generation: AtomicU64,
    stalled: AtomicBool,
    ack_fault: Mutex<AckFault>,
    dup_msgs: AtomicBool,
    acks_seen: AtomicU64,
    acks_dropped: AtomicU64,
    acks_duplicated: AtomicU64,
    msgs_duplicated: AtomicU64,
}

impl Proxy {
    /// A proxy to `upstream`.
    pub fn start(upstream: SocketAddr) -> Proxy {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let state = Arc::new(ProxyState {
            generation: AtomicU64::new(0),
            stalled: AtomicBool::new(false),
            ack_fault: Mutex::new(AckFault::None),
            dup_msgs: AtomicBool::new(false),
            acks_seen: AtomicU64::new(0),
            acks_dropped: AtomicU64::new(0),
            acks_duplicated: AtomicU64::new(0),
            msgs_duplicated: AtomicU64::new(0),
        });
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let st = state.clone();
        rt.spawn(async move {
            loop {
                let Ok((down, _)) = listener.accept().await else {
                    return;
                };
                let st = st.clone();
                tokio::spawn(async move {
                    let Ok(up) = tokio::net::TcpStream::connect(upstream).await else {
                        return;
                    };
                    let _ = down.set_nodelay(true);
                    let _ = up.set_nodelay(true);
                    let gen = st.generation.load(Ordering::SeqCst);
                    let (dr, dw) = down.into_split();
                    let (ur, uw) = up.into_split();
                    let a = tokio::spawn(pump(dr, uw, st.clone(), gen, Direction::ToBroker));
                    let b = tokio::spawn(pump(ur, dw, st.clone(), gen, Direction::ToClient));
                    let _ = tokio::join!(a, b);
                });
            }
        });
        Proxy {
            addr,
            state,
            _rt: rt,
        }
    }

    /// Cuts every open connection (both sides see a reset/EOF); new ones are accepted.
    pub fn cut(&self) {
        self.state.generation.fetch_add(1, Ordering::SeqCst);
    }

    /// Stops (or resumes) forwarding bytes on every connection without closing them.
    pub fn stall(&self, on: bool) {
        self.state.stalled.store(on, Ordering::SeqCst);
    }

    /// Sets how `ack` frames to the client are treated.
    pub fn set_ack_fault(&self, f: AckFault) {
        *self.state.ack_fault.lock().unwrap() = f;
    }

    /// Sends every `msg` frame from the client twice (the copy without its receipt request),
    /// as a broker redelivery would.
    pub fn duplicate_msgs(&self, on: bool) {
        self.state.dup_msgs.store(on, Ordering::SeqCst);
    }

    /// (acks seen, dropped, duplicated, msgs duplicated).
    pub fn counters(&self) -> (u64, u64, u64, u64) {
        (
            self.state.acks_seen.load(Ordering::SeqCst),
            self.state.acks_dropped.load(Ordering::SeqCst),
            self.state.acks_duplicated.load(Ordering::SeqCst),
            self.state.msgs_duplicated.load(Ordering::SeqCst),
        )
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Direction {
    ToBroker,
    ToClient,
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    st: Arc<ProxyState>,
    gen: u64,
    dir: Direction,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; 64 * 1024];
    let mut pending: Vec<u8> = Vec::new();
    loop {
        if st.generation.load(Ordering::SeqCst) != gen {
            return; // dropping both halves closes the connection
        }
        if st.stalled.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        }
        let n = match tokio::time::timeout(Duration::from_millis(50), from.read(&mut buf)).await {
            Err(_) => continue,
            Ok(Ok(0)) | Ok(Err(_)) => return,
            Ok(Ok(n)) => n,
        };
        pending.extend_from_slice(&buf[..n]);
        let mut out = Vec::new();
        while let Some(pos) = pending.iter().position(|&b| b == 0) {
            let frame: Vec<u8> = pending.drain(..=pos).collect();
            out.extend(transform(&st, dir, frame));
        }
        // Heart-beat newlines with no frame after them yet: forward them as they are.
        if !pending.is_empty() && pending.iter().all(|&b| b == b'\n' || b == b'\r') {
            out.append(&mut pending);
        }
        if !out.is_empty() && to.write_all(&out).await.is_err() {
            return;
        }
    }
}

fn transform(st: &ProxyState, dir: Direction, frame: Vec<u8>) -> Vec<u8> {
    let text = String::from_utf8_lossy(&frame);
    let head = text.split("\n\n").next().unwrap_or("");
    match dir {
        Direction::ToClient if head.contains("\nssm-msg-type:ack") => {
            let n = st.acks_seen.fetch_add(1, Ordering::SeqCst);
            match *st.ack_fault.lock().unwrap() {
                AckFault::None => frame,
                AckFault::DropOneIn(k) if n % k == 0 => {
                    st.acks_dropped.fetch_add(1, Ordering::SeqCst);
                    // Keep the heart-beat newlines in front of the frame, drop the frame.
                    frame.iter().take_while(|&&b| b == b'\n').cloned().collect()
                }
                AckFault::DropOneIn(_) => frame,
                AckFault::Duplicate => {
                    st.acks_duplicated.fetch_add(1, Ordering::SeqCst);
                    let mut v = frame.clone();
                    v.extend_from_slice(&frame);
                    v
                }
            }
        }
        Direction::ToBroker
            if st.dup_msgs.load(Ordering::SeqCst)
                && head.trim_start().starts_with("SEND")
                && head.contains("\nssm-msg-type:msg") =>
        {
            st.msgs_duplicated.fetch_add(1, Ordering::SeqCst);
            // The copy without its `receipt` header line; the body is left byte for byte.
            let end = frame
                .windows(2)
                .position(|w| w == b"\n\n")
                .unwrap_or(frame.len());
            let (header, body) = frame.split_at(end);
            let mut v: Vec<u8> = Vec::with_capacity(frame.len() * 2);
            for line in header.split(|&b| b == b'\n') {
                if !line.starts_with(b"receipt:") {
                    v.extend_from_slice(line);
                    v.push(b'\n');
                }
            }
            v.pop(); // the split added one newline too many
            v.extend_from_slice(body);
            v.extend_from_slice(&frame);
            v
        }
        _ => frame,
    }
}

/// Reads a whole file as text, empty when absent.
pub fn read_text(p: &Path) -> String {
    let mut s = String::new();
    if let Ok(mut f) = fs::File::open(p) {
        let _ = f.read_to_string(&mut s);
    }
    s
}

/// Appends a line to a file (test notes next to the logs).
pub fn note(p: &Path, line: &str) {
    if let Ok(mut f) = fs::OpenOptions::new().create(true).append(true).open(p) {
        let _ = writeln!(f, "{line}");
    }
}

/// One line of the fault report: printed, and appended to the file named by `SSM_FAULT_REPORT`
/// when set (`.ci/run` prints that file after the tests, so that CI shows, for each fault,
/// messages sent / stored / duplicated / lost).
pub fn report(line: &str) {
    eprintln!("fault report: {line}");
    if let Ok(path) = std::env::var("SSM_FAULT_REPORT") {
        use std::io::Write;
        if let Ok(mut f) = fs::OpenOptions::new().create(true).append(true).open(path) {
            let _ = writeln!(f, "{line}");
        }
    }
}
