//! `ssm demo`: the whole protocol on one machine, with nothing installed.
//!
//! A throwaway PKI, the embedded broker (or a real one), a receiver and one or more senders run
//! in one process; the senders' outgoing queues are filled with APEL-style accounting records
//! and shipped through the full protocol. The report says what was sent, acked and stored, and
//! checks that every message arrived exactly once with its signer. The benchmark reuses it.
//!
//! The senders are configured as an operator would configure them: a `sender.cfg` each in the
//! run directory (kept, so `ssm send -c` can be tried on them), read by the configuration
//! loader and built by the code of `ssm send`. The receiver too: a `receiver.cfg`, read by the
//! loader and built by `setup` as `ssm receive -c` builds it; it runs in this process.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use tokio::sync::oneshot;

use crate::broker::{self, BrokerConfig, BrokerHandle};
use crate::config::{Loadable, ReceiverConfig, SenderConfig};
use crate::crypto::{self, Cipher};
use crate::harness::ams::AmsRun;
use crate::harness::pki::{CertFiles, Pki};
use crate::protocol::Version;
use crate::queue::{MessageStore, Outgoing, PathType};
use crate::receiver::{self, Control, Stats};
use crate::sender::{Sender, Summary};
use crate::setup::ReceiverRun;
use crate::stomp::BrokerAddr;

/// What to run.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Where everything goes (PKI, queues); kept afterwards.
    pub dir: PathBuf,
    /// Messages per sender.
    pub messages: usize,
    /// Concurrent senders, each with its own certificate and queue.
    pub senders: usize,
    /// Approximate size of each message, in bytes.
    pub size: usize,
    /// Envelope cipher.
    pub cipher: Cipher,
    /// A real broker; `None` starts the embedded one.
    pub broker: Option<BrokerAddr>,
    /// Broker login, for real brokers.
    pub login: Option<(String, String)>,
    /// The topic.
    pub destination: String,
    /// Over AMS (SSM2) through `ssm ams-server` in this process, instead of STOMP.
    pub ams: bool,
}

/// The AMS topic and subscription of `ssm demo --transport ams`.
const AMS_TOPIC: &str = "ssm-demo";
const AMS_SUBSCRIPTION: &str = "ssm-demo-sub";

/// What happened.
#[derive(Debug, Clone)]
pub struct DemoReport {
    /// Messages queued in all.
    pub queued: usize,
    /// The senders' summaries, added up.
    pub sent: Summary,
    /// Elements in the receiver's incoming queue.
    pub stored: usize,
    /// Messages the receiver rejected.
    pub rejected: u64,
    /// Resends stored once.
    pub duplicates: u64,
    /// From the first send to the last ack.
    pub elapsed: Duration,
    /// The receiver's incoming queue.
    pub incoming: PathBuf,
    /// Which broker carried the messages.
    pub broker: String,
}

impl std::fmt::Display for DemoReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let secs = self.elapsed.as_secs_f64().max(1e-9);
        writeln!(f, "broker:    {}", self.broker)?;
        writeln!(f, "queued:    {}", self.queued)?;
        writeln!(
            f,
            "sent:      {} (retried {})",
            self.sent.sent, self.sent.retried
        )?;
        writeln!(f, "acked:     {}", self.sent.acked)?;
        writeln!(
            f,
            "stored:    {} (duplicates acked again: {}, rejected: {})",
            self.stored, self.duplicates, self.rejected
        )?;
        writeln!(
            f,
            "time:      {:.2} s, {:.1} messages/s",
            secs,
            self.sent.acked as f64 / secs
        )?;
        write!(f, "incoming:  {}", self.incoming.display())
    }
}

/// An APEL-style individual job record message of about `size` bytes.
pub fn apel_message(seq: usize, size: usize) -> Vec<u8> {
    let mut out = String::from("APEL-individual-job-message: v0.3\n");
    let mut job = 0;
    while out.len() < size.max(1) {
        out.push_str(&format!(
            "Site: RAL-LCG2\nSubmitHost: ce{:02}.gridpp.rl.ac.uk:8443/cream-pbs-grid\n\
             LocalJobId: {seq}-{job}\nLocalUserId: pilot{:03}\n\
             GlobalUserName: /C=UK/O=eScience/OU=CLRC/L=RAL/CN=user {}\nFQAN: /atlas/Role=pilot\n\
             WallDuration: {}\nCpuDuration: {}\nProcessors: 1\nNodeCount: 1\n\
             StartTime: {}\nEndTime: {}\nMemoryReal: 2000000\nMemoryVirtual: 4000000\n\
             ServiceLevelType: HEPSPEC\nServiceLevel: 10.5\n%%\n",
            job % 7,
            job % 100,
            seq % 50,
            3600 + job,
            3000 + job,
            1_700_000_000 + seq * 10 + job,
            1_700_003_600 + seq * 10 + job,
        ));
        job += 1;
    }
    out.truncate(size.max(1));
    out.into_bytes()
}

/// The files a run needs: a throwaway PKI, one certificate and outgoing queue per sender, the
/// allowed-DN file and the receiver's store directory. Shared by `ssm demo` and `ssm bench`.
#[derive(Debug, Clone)]
pub struct Setup {
    /// The run's directory.
    pub dir: PathBuf,
    /// The PKI (CA, receiver certificate, first sender certificate).
    pub pki: Pki,
    /// One certificate per sender; the first is the PKI's client.
    pub clients: Vec<CertFiles>,
    /// The allowed-DN file listing every sender.
    pub dns_path: PathBuf,
    /// The receiver's store (`incoming/`, `reject/`, acked record).
    pub store_path: PathBuf,
}

impl Setup {
    /// Generates the PKI and one certificate per sender under `dir`, and writes the DN file.
    pub fn prepare(dir: &Path, senders: usize) -> anyhow::Result<Setup> {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let pki = Pki::generate(&dir.join("pki")).context("generating the throwaway PKI")?;
        let mut clients = vec![pki.client.clone()];
        for i in 1..senders.max(1) {
            clients.push(pki.issue_client(&format!("sender{i}.example.org"))?);
        }
        let dn_text: String = clients.iter().map(|c| format!("{}\n", c.dn)).collect();
        let dns_path = dir.join("dns");
        std::fs::write(&dns_path, &dn_text)
            .with_context(|| format!("cannot write {}", dns_path.display()))?;
        Ok(Setup {
            dir: dir.to_path_buf(),
            pki,
            clients,
            dns_path,
            store_path: dir.join("store"),
        })
    }

    /// The outgoing queue of sender `i`.
    pub fn outgoing_dir(&self, i: usize) -> PathBuf {
        self.dir.join(format!("outgoing-{i}"))
    }

    /// Puts `messages` APEL messages of `size` bytes in every sender's outgoing queue; sender
    /// `i` gets sequence numbers `i * messages ..`, so every message is distinct.
    pub fn fill_queues(&self, messages: usize, size: usize) -> anyhow::Result<()> {
        for i in 0..self.clients.len() {
            let outgoing = Outgoing::open(&self.outgoing_dir(i), PathType::QueueSimple)?;
            for m in 0..messages {
                outgoing.add(&apel_message(i * messages + m, size))?;
            }
        }
        Ok(())
    }

    /// Checks that every queued message is in the incoming queue exactly once, with the right
    /// signer; returns how many are stored.
    pub fn check_stored(&self, per_sender: usize, size: usize) -> anyhow::Result<usize> {
        let store = MessageStore::open(&self.store_path)?;
        check_stored(&store, &self.clients, per_sender, size)?;
        Ok(store.incoming.count()?)
    }

    /// Writes one `sender.cfg` per sender into the run directory, as an operator would write
    /// it (the format `ssm send -c` reads; see `conf/sender.cfg`), and returns their paths.
    pub fn write_sender_configs(&self, o: &SenderOptions<'_>) -> anyhow::Result<Vec<PathBuf>> {
        let mut paths = Vec::with_capacity(self.clients.len());
        for (i, client) in self.clients.iter().enumerate() {
            let mut text =
                String::from("# Written by ssm demo / ssm bench for one of its senders.\n");
            let mut section = |name: &str, options: &[(&str, String)]| -> anyhow::Result<()> {
                let _ = writeln!(text, "\n[{name}]");
                for (key, value) in options {
                    let _ = writeln!(text, "{key} = {}", ini_value(key, value)?);
                }
                Ok(())
            };
            let path_of = |p: &Path| p.display().to_string();
            section("sender", &[("protocol", "STOMP".into())])?;
            let mut broker = vec![
                ("brokers", o.broker.to_string()),
                ("use_ssl", "false".into()),
            ];
            if let Some((login, passcode)) = &o.login {
                broker.push(("login", login.clone()));
                broker.push(("passcode", passcode.clone()));
            }
            section("broker", &broker)?;
            // The receiver's certificate, or (certreq) the DN its answer must carry.
            let server = if i == 0 && o.certreq_first {
                ("server_dn", self.pki.server.dn.clone())
            } else {
                ("server_cert", path_of(&self.pki.server.cert))
            };
            section(
                "certificates",
                &[
                    ("certificate", path_of(&client.cert)),
                    ("key", path_of(&client.key)),
                    ("capath", path_of(&self.pki.capath)),
                    server,
                    ("verify_server_cert", "true".into()),
                ],
            )?;
            let mut messaging = vec![
                ("destination", o.destination.to_string()),
                ("path", path_of(&self.outgoing_dir(i))),
                ("path_type", "dirq".into()),
                // The demo uses the acknowledged protocol (v1); the bench says which.
                ("ssm_version", version_number(o.ssm_version).into()),
                ("cipher", o.cipher.to_string()),
                // What the harness always used; a healthy run never waits that long.
                ("ack_timeout", "30".into()),
                ("max_attempts", "3".into()),
            ];
            if o.ssm_version == Version::V2 {
                messaging.push(("window", o.window.max(1).to_string()));
            }
            section("messaging", &messaging)?;
            section(
                "logging",
                &[("level", "WARN".into()), ("console", "true".into())],
            )?;
            let path = self.dir.join(format!("sender-{i}.cfg"));
            std::fs::write(&path, text)
                .with_context(|| format!("cannot write {}", path.display()))?;
            paths.push(path);
        }
        Ok(paths)
    }

    /// Writes the receiver's `receiver.cfg` (the server certificate, the run's CA directory,
    /// its DN file and store), in the format `ssm receive -c` reads.
    pub fn write_receiver_config(
        &self,
        broker: &BrokerAddr,
        login: Option<&(String, String)>,
        destination: &str,
    ) -> anyhow::Result<PathBuf> {
        let path_of = |p: &Path| p.display().to_string();
        let mut text = String::from("# Written by ssm demo for its receiver.\n");
        let mut section = |name: &str, options: &[(&str, String)]| -> anyhow::Result<()> {
            let _ = writeln!(text, "\n[{name}]");
            for (key, value) in options {
                let _ = writeln!(text, "{key} = {}", ini_value(key, value)?);
            }
            Ok(())
        };
        section(
            "receiver",
            &[
                ("protocol", "STOMP".into()),
                ("dn_file", path_of(&self.dns_path)),
            ],
        )?;
        let mut broker_opts = vec![("brokers", broker.to_string()), ("use_ssl", "false".into())];
        if let Some((login, passcode)) = login {
            broker_opts.push(("login", login.clone()));
            broker_opts.push(("passcode", passcode.clone()));
        }
        section("broker", &broker_opts)?;
        section(
            "certificates",
            &[
                ("certificate", path_of(&self.pki.server.cert)),
                ("key", path_of(&self.pki.server.key)),
                ("capath", path_of(&self.pki.capath)),
            ],
        )?;
        section(
            "messaging",
            &[
                ("destination", destination.to_string()),
                ("path", path_of(&self.store_path)),
            ],
        )?;
        section(
            "logging",
            &[("level", "WARN".into()), ("console", "true".into())],
        )?;
        let path = self.dir.join("receiver.cfg");
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
        Ok(path)
    }
}

/// What every sender of a run is told in its `sender.cfg`, besides its own certificate and queue.
#[derive(Debug, Clone)]
pub struct SenderOptions<'a> {
    /// The broker.
    pub broker: &'a BrokerAddr,
    /// Broker login and passcode, for real brokers.
    pub login: Option<&'a (String, String)>,
    /// The topic.
    pub destination: &'a str,
    /// Envelope cipher.
    pub cipher: Cipher,
    /// The first sender asks the receiver for its certificate (`certreq`) instead of reading it.
    pub certreq_first: bool,
    /// The protocol the senders speak (`[messaging] ssm_version`).
    pub ssm_version: Version,
    /// SSM2 only: messages waiting for their broker receipt at once (`[messaging] window`).
    pub window: u32,
}

/// `[messaging] ssm_version` as written in a configuration file.
fn version_number(v: Version) -> &'static str {
    match v {
        Version::V1 => "1",
        Version::V2 => "2",
    }
}

/// A value as an INI line keeps it: one line, no surrounding blanks (they would be trimmed),
/// not empty (which means unset).
fn ini_value<'a>(key: &str, value: &'a str) -> anyhow::Result<&'a str> {
    if value.is_empty() || value.trim() != value || value.contains(['\n', '\r']) {
        bail!("{key} {value:?} cannot be written in a sender configuration");
    }
    Ok(value)
}

/// Starts the embedded broker on a free loopback port.
pub async fn start_embedded_broker() -> anyhow::Result<(BrokerHandle, BrokerAddr)> {
    let handle = broker::start(BrokerConfig {
        listen: "127.0.0.1:0".parse()?,
        ..BrokerConfig::default()
    })
    .await
    .context("starting the embedded broker")?;
    let local = handle.local_addr();
    let addr = BrokerAddr {
        host: local.ip().to_string(),
        port: local.port(),
    };
    Ok((handle, addr))
}

/// Builds the live sender a loaded `sender.cfg` describes; the command line passes the one
/// `ssm send` uses, so that the demo's senders are made exactly as production's are.
pub type BuildSender<'a> = &'a (dyn Fn(&SenderConfig) -> anyhow::Result<Sender> + Sync);

/// Runs the demo and returns its report. Fails if any message was lost or stored twice.
/// Each sender is written a `sender.cfg` in the run directory, loaded with the configuration
/// loader and built by `build`; the receiver runs in this process.
pub async fn run(opts: DemoOptions, build: BuildSender<'_>) -> anyhow::Result<DemoReport> {
    let setup = Setup::prepare(&opts.dir, opts.senders)?;

    let mut embedded = None;
    let mut ams_server = None;
    let addr = match &opts.broker {
        Some(addr) => addr.clone(),
        None if opts.ams => {
            let run = AmsRun::start(&setup, AMS_TOPIC, AMS_SUBSCRIPTION).await?;
            let addr = run.addr().clone();
            ams_server = Some(run);
            addr
        }
        None => {
            let (handle, addr) = start_embedded_broker().await?;
            embedded = Some(handle);
            addr
        }
    };
    // The receiver is configured and built as `ssm receive -c` builds it.
    let rcfg_path = match &ams_server {
        Some(run) => run.write_receiver_config(&setup)?,
        None => setup.write_receiver_config(&addr, opts.login.as_ref(), &opts.destination)?,
    };
    let (rcfg, _warnings) = ReceiverConfig::load(&rcfg_path)?;
    let rsettings = crate::setup::start_receiver(&rcfg, ReceiverRun::default())?.settings;
    let store_path = setup.store_path.clone();
    let stats = Arc::new(Stats::default());
    let (ready_tx, ready_rx) = oneshot::channel();
    let control = Control {
        shutdown: tokio_util::sync::CancellationToken::new(),
        ready: Some(ready_tx),
        stats: stats.clone(),
    };
    let shutdown = control.shutdown.clone();
    let receiver = tokio::spawn(receiver::run(rsettings, control));
    tokio::select! {
        r = ready_rx => r.context("the receiver stopped before it was ready")?,
        () = tokio::time::sleep(Duration::from_secs(60)) => bail!("the receiver did not subscribe within 60 s"),
    }

    // Fill the queues, then send from every sender at once.
    setup.fill_queues(opts.messages, opts.size)?;
    let configs = match &ams_server {
        Some(run) => {
            run.write_sender_configs(&setup, opts.cipher, crate::config::DEFAULT_WINDOW)?
        }
        None => setup.write_sender_configs(&SenderOptions {
            broker: &addr,
            login: opts.login.as_ref(),
            destination: &opts.destination,
            cipher: opts.cipher,
            // The first sender asks for the server certificate with certreq; the others have it.
            certreq_first: true,
            ssm_version: Version::V1,
            window: 1,
        })?,
    };
    let mut tasks = Vec::new();
    for path in &configs {
        let (cfg, _warnings) = SenderConfig::load(path)?;
        tasks.push(build(&cfg).with_context(|| format!("sender of {}", path.display()))?);
    }
    let started = Instant::now();
    let handles: Vec<_> = tasks
        .into_iter()
        .map(|mut s| tokio::spawn(async move { s.run_once().await }))
        .collect();
    let mut total = Summary::default();
    let mut failure = None;
    for h in handles {
        match h.await? {
            Ok(s) => {
                total.sent += s.sent;
                total.acked += s.acked;
                total.rejected += s.rejected;
                total.retried += s.retried;
            }
            Err(e) => failure = Some(e),
        }
    }
    if ams_server.is_some() && failure.is_none() {
        // SSM2: a sender is done once the service has its messages, not once the receiver
        // stored them; wait for the receiver (bounded).
        let queued = (opts.messages * setup.clients.len()) as u64;
        let until = Instant::now() + Duration::from_secs(120);
        while Stats::get(&stats.stored)
            + Stats::get(&stats.rejected)
            + Stats::get(&stats.duplicates)
            < queued
            && Instant::now() < until
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let elapsed = started.elapsed();
    total.elapsed = elapsed;
    shutdown.cancel();
    receiver.await??;
    if let Some(h) = embedded {
        h.shutdown().await;
    }
    let ams_label = ams_server.as_ref().map(AmsRun::label);
    if let Some(run) = ams_server {
        run.shutdown().await;
    }
    if let Some(e) = failure {
        return Err(e).context("a sender failed");
    }

    let stored = setup.check_stored(opts.messages, opts.size)?;
    Ok(DemoReport {
        queued: opts.messages * setup.clients.len(),
        stored,
        rejected: Stats::get(&stats.rejected),
        duplicates: Stats::get(&stats.duplicates),
        sent: total,
        elapsed,
        incoming: store_path.join("incoming"),
        broker: match (ams_label, embedded_label(&opts.broker)) {
            (Some(l), _) | (None, Some(l)) => l,
            (None, None) => addr.to_string(),
        },
    })
}

fn embedded_label(broker: &Option<BrokerAddr>) -> Option<String> {
    broker
        .is_none()
        .then(|| "embedded (in-process)".to_string())
}

/// Every queued message is in the incoming queue exactly once, with the right signer.
fn check_stored(
    store: &MessageStore,
    clients: &[CertFiles],
    per_sender: usize,
    size: usize,
) -> anyhow::Result<()> {
    let mut expected = std::collections::HashMap::new();
    for (i, c) in clients.iter().enumerate() {
        for m in 0..per_sender {
            let body = apel_message(i * per_sender + m, size);
            expected.insert(crypto::message_id(&body), (c.dn.clone(), false));
        }
    }
    for name in store.incoming.names()? {
        let rec = store.incoming.get(&name)?;
        let md5 = crypto::message_id(&rec.body);
        match expected.get_mut(&md5) {
            None => bail!("stored message {name} was never queued"),
            Some((_, true)) => bail!("message {md5} was stored twice"),
            Some((dn, seen)) => {
                if rec.signer.as_deref() != Some(dn.as_str()) {
                    bail!(
                        "message {md5} stored with signer {:?}, sent by {dn}",
                        rec.signer
                    );
                }
                *seen = true;
            }
        }
    }
    let missing = expected.values().filter(|(_, seen)| !seen).count();
    if missing > 0 {
        bail!("{missing} queued messages were not stored");
    }
    Ok(())
}

/// A directory for a demo run that is kept afterwards.
pub fn fresh_dir() -> anyhow::Result<PathBuf> {
    let dir = tempfile::Builder::new().prefix("ssm-demo-").tempdir()?;
    Ok(dir.keep())
}

/// Whether `path` looks like a directory a demo may use.
pub fn usable_dir(path: &Path) -> bool {
    !path.exists()
        || path
            .read_dir()
            .map(|mut d| d.next().is_none())
            .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ini_values_must_survive_the_file() {
        assert_eq!(
            ini_value("k", "/a path/with # and ;").ok(),
            Some("/a path/with # and ;")
        );
        for bad in ["", " lead", "trail ", "two\nlines", "cr\r"] {
            assert!(ini_value("k", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn sender_configs_load_as_written() {
        let dir = tempfile::tempdir().unwrap();
        let setup = Setup::prepare(&dir.path().join("run"), 2).unwrap();
        let broker = BrokerAddr {
            host: "::1".into(),
            port: 61613,
        };
        let login = ("ssm".to_string(), "pass#word;".to_string());
        let paths = setup
            .write_sender_configs(&SenderOptions {
                broker: &broker,
                login: Some(&login),
                destination: "/topic/t",
                cipher: Cipher::Aes256,
                certreq_first: true,
                ssm_version: Version::V1,
                window: 1,
            })
            .unwrap();
        assert_eq!(paths.len(), 2);
        for (i, path) in paths.iter().enumerate() {
            let (cfg, warnings) = SenderConfig::load(path).unwrap();
            assert!(warnings.is_empty(), "{warnings:?}");
            assert_eq!(cfg.common.broker.brokers, vec![("::1".to_string(), 61613)]);
            assert!(!cfg.common.broker.use_ssl);
            assert_eq!(cfg.common.broker.login.as_deref(), Some("ssm"));
            assert_eq!(cfg.common.broker.passcode.as_deref(), Some("pass#word;"));
            assert_eq!(cfg.common.identity.certificate, setup.clients[i].cert);
            assert_eq!(cfg.path, setup.outgoing_dir(i));
            assert_eq!(cfg.destination, "/topic/t");
            assert_eq!(cfg.cipher, Cipher::Aes256);
            assert_eq!(cfg.ack_timeout, Duration::from_secs(30));
            assert_eq!(cfg.max_attempts, 3);
            if i == 0 {
                assert_eq!(cfg.server_dn.as_deref(), Some(setup.pki.server.dn.as_str()));
                assert_eq!(cfg.server_cert, None);
            } else {
                assert_eq!(cfg.server_cert.as_ref(), Some(&setup.pki.server.cert));
            }
        }
    }
}
