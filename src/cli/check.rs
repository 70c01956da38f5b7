//! `ssm check send|receive`: validate a configuration without starting.
//!
//! Takes exactly the flags of `ssm send` / `ssm receive` (so `ssm check send -c sender.cfg`
//! checks what `ssm send -c sender.cfg` would run with) and prints one line per check,
//! `OK   what: detail` or `FAIL what: reason`, then exits 1 if anything failed.
//!
//! The broker probe is harmless: it connects (TLS when configured), then SUBSCRIBEs to the
//! destination and UNSUBSCRIBEs, both with receipts, in `client-individual` mode without ever
//! acking, so that even on a queue destination nothing is consumed (an unacked message is
//! redelivered). Nothing is ever SENT: a probe message on the real topic would reach every
//! receiver. `--offline` skips the broker.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::Duration;

use openssl::x509::X509;

use super::common;
use crate::config::{
    BrokerSettings, Loadable, LoggingSettings, ReceiverConfig, ReceiverOverrides, SenderConfig,
    SenderOverrides,
};
use crate::crypto::{self, DnList, TrustStore};
use crate::ops::{filesystem, metrics, pidfile};
use crate::stomp::{AckMode, Client};

/// Arguments of `ssm check`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Which configuration.
    #[command(subcommand)]
    pub what: What,
}

/// The configurations `ssm check` knows.
#[derive(Debug, clap::Subcommand)]
pub enum What {
    /// Check a sender configuration (takes the flags of `ssm send`).
    Send(SendCheck),
    /// Check a receiver configuration (takes the flags of `ssm receive`).
    Receive(ReceiveCheck),
}

/// `ssm check send`.
#[derive(Debug, clap::Args)]
pub struct SendCheck {
    #[command(flatten)]
    o: SenderOverrides,
    /// Do not contact the broker.
    #[arg(long)]
    offline: bool,
}

/// `ssm check receive`.
#[derive(Debug, clap::Args)]
pub struct ReceiveCheck {
    #[command(flatten)]
    o: ReceiverOverrides,
    /// Do not contact the broker.
    #[arg(long)]
    offline: bool,
}

/// The result lines of a check, printed as they come.
#[derive(Debug, Default)]
pub struct Report {
    /// Every line, in order.
    pub lines: Vec<String>,
    /// How many failed.
    pub failures: usize,
    /// Print lines to stdout as they are added.
    pub echo: bool,
}

impl Report {
    fn push(&mut self, line: String) {
        if self.echo {
            println!("{line}");
        }
        self.lines.push(line);
    }

    /// Records a passed check.
    pub fn ok(&mut self, what: &str, detail: impl std::fmt::Display) {
        self.push(format!("OK   {what}: {detail}"));
    }

    /// Records a failed check.
    pub fn fail(&mut self, what: &str, reason: impl std::fmt::Display) {
        self.failures += 1;
        self.push(format!("FAIL {what}: {reason}"));
    }

    /// Records `r` as OK with its value or FAIL with its error; returns the value.
    pub fn record<T, E: std::fmt::Display>(
        &mut self,
        what: &str,
        r: Result<T, E>,
        detail: impl FnOnce(&T) -> String,
    ) -> Option<T> {
        match r {
            Ok(v) => {
                let d = detail(&v);
                self.ok(what, d);
                Some(v)
            }
            Err(e) => {
                self.fail(what, e);
                None
            }
        }
    }
}

/// Runs `ssm check`.
pub fn run(args: Args) -> anyhow::Result<()> {
    let mut report = Report {
        echo: true,
        ..Report::default()
    };
    match args.what {
        What::Send(a) => {
            if let Some((cfg, warnings)) =
                report.record("configuration", SenderConfig::resolve(&a.o), |_| {
                    config_origin(&a.o.config, crate::config::DEFAULT_SENDER_CFG)
                })
            {
                warn_lines(&mut report, &warnings);
                check_sender(&mut report, &cfg, a.offline);
            }
        }
        What::Receive(a) => {
            if let Some((cfg, warnings)) =
                report.record("configuration", ReceiverConfig::resolve(&a.o), |_| {
                    config_origin(&a.o.config, crate::config::DEFAULT_RECEIVER_CFG)
                })
            {
                warn_lines(&mut report, &warnings);
                check_receiver(&mut report, &cfg, a.offline);
            }
        }
    }
    if report.failures > 0 {
        anyhow::bail!("{} check(s) failed", report.failures);
    }
    Ok(())
}

fn config_origin(given: &Option<std::path::PathBuf>, default: &str) -> String {
    match given {
        Some(p) => format!("{} loaded", p.display()),
        None if Path::new(default).exists() => format!("{default} loaded"),
        None => "from flags only".to_string(),
    }
}

/// Unknown or obsolete options: reported, not failed (the daemons only warn about them).
fn warn_lines(report: &mut Report, warnings: &[String]) {
    for w in warnings {
        report.ok("configuration warning", w);
    }
}

/// Checks a sender configuration.
pub fn check_sender(report: &mut Report, cfg: &SenderConfig, offline: bool) {
    let ours = identity(report, &cfg.certificate, &cfg.key);
    let trust = trust_store(report, cfg.capath.as_deref(), cfg.cafile.as_deref(), false);
    if let (Some(cert), Some(trust)) = (&ours, &trust) {
        chains(report, "certificate chain", cert, trust);
    }
    match (&cfg.server_cert, &cfg.server_dn) {
        (Some(path), _) => {
            if let Some(server) =
                report.record("server certificate", crypto::load_cert(path), |c| {
                    format!("{} ({})", crypto::subject_dn(c), path.display())
                })
            {
                let same = ours
                    .as_ref()
                    .is_some_and(|o| o.to_der().ok() == server.to_der().ok());
                if same {
                    report.fail(
                        "server certificate",
                        format!("{} is this host's own certificate", path.display()),
                    );
                }
                if cfg.verify_server_cert {
                    if let Some(trust) = &trust {
                        chains(report, "server certificate chain", &server, trust);
                    }
                }
                expiry(report, "server certificate expiry", &server);
            }
        }
        (None, Some(dn)) if crypto::Dn::parse(dn).is_none() => report.fail(
            "server certificate",
            format!("server_dn {dn:?} is not a DN in slash form (/C=../O=../CN=..)"),
        ),
        (None, Some(dn)) => report.ok(
            "server certificate",
            format!("asked for by certreq, must be {dn}"),
        ),
        (None, None) => report.fail(
            "server certificate",
            "[certificates] server_cert or server_dn is required",
        ),
    }
    writable_dir(report, "outgoing queue", &cfg.path);
    files(report, &cfg.logging, cfg.pidfile.as_deref());
    if let Some(addr) = &cfg.metrics {
        metrics_addr(report, addr);
    }
    if !offline {
        broker(report, &cfg.broker, cfg, &cfg.destination);
    }
}

/// Checks a receiver configuration.
pub fn check_receiver(report: &mut Report, cfg: &ReceiverConfig, offline: bool) {
    let ours = identity(report, &cfg.certificate, &cfg.key);
    let trust = trust_store(
        report,
        cfg.capath.as_deref(),
        cfg.cafile.as_deref(),
        cfg.check_crls,
    );
    if let (Some(cert), Some(trust)) = (&ours, &trust) {
        chains(report, "certificate chain", cert, trust);
    }
    if let Some(trust) = &trust {
        // Reported, not failed: the receiver runs, but does not ack (nor reject) messages it
        // cannot check until a fresh CRL is installed.
        for problem in trust.crl_problems() {
            report.ok(
                "CRL warning",
                format!("{problem} (messages from its signers would not be acked)"),
            );
        }
    }
    match std::fs::read_to_string(&cfg.dn_file) {
        Err(e) => report.fail("allowed DNs", format!("{}: {e}", cfg.dn_file.display())),
        Ok(text) => {
            let (list, warnings) = DnList::parse(&text);
            if list.is_empty() {
                report.fail(
                    "allowed DNs",
                    format!(
                        "{}: no valid DN (the receiver would refuse to start)",
                        cfg.dn_file.display()
                    ),
                );
            } else {
                report.ok(
                    "allowed DNs",
                    format!("{} DN(s) in {}", list.len(), cfg.dn_file.display()),
                );
            }
            for w in warnings {
                report.ok(
                    "allowed DNs warning",
                    format!("{}: {w} (ignored)", cfg.dn_file.display()),
                );
            }
        }
    }
    writable_dir(report, "message store", &cfg.path);
    store_filesystem(report, &cfg.path);
    files(report, &cfg.logging, cfg.pidfile.as_deref());
    if let Some(addr) = &cfg.metrics {
        metrics_addr(report, addr);
    }
    if !offline {
        let files = IdentityFiles {
            cert: &cfg.certificate,
            key: &cfg.key,
            capath: cfg.capath.as_deref(),
            cafile: cfg.cafile.as_deref(),
        };
        broker(report, &cfg.broker, files, &cfg.destination);
    }
}

/// Loads and checks our certificate and key; returns the certificate.
fn identity(report: &mut Report, cert_path: &Path, key_path: &Path) -> Option<X509> {
    let cert = report.record("certificate", crypto::load_cert(cert_path), |c| {
        format!("{} ({})", crypto::subject_dn(c), cert_path.display())
    });
    let key = report.record("private key", crypto::load_key(key_path), |_| {
        format!("{} readable", key_path.display())
    });
    if let (Some(cert), Some(key)) = (&cert, &key) {
        if crypto::key_matches(cert, key) {
            report.ok("key matches certificate", "yes");
        } else {
            report.fail(
                "key matches certificate",
                format!(
                    "{} is not the key of {}",
                    key_path.display(),
                    cert_path.display()
                ),
            );
        }
    }
    if let Some(cert) = &cert {
        expiry(report, "certificate expiry", cert);
    }
    cert
}

/// Days left, failing within [`common::MIN_VALIDITY`] (when the daemons refuse to start).
fn expiry(report: &mut Report, what: &str, cert: &X509) {
    match crypto::check_validity(cert, common::MIN_VALIDITY) {
        Err(e) => report.fail(what, e),
        Ok(()) => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64);
            let days = metrics::not_after_epoch(cert).map_or(0, |t| (t - now) / 86_400);
            report.ok(
                what,
                format!("{days} days left (notAfter {})", cert.not_after()),
            );
        }
    }
}

fn trust_store(
    report: &mut Report,
    capath: Option<&Path>,
    cafile: Option<&Path>,
    crls: bool,
) -> Option<TrustStore> {
    let trust = report.record("trusted CAs", TrustStore::new(capath, cafile, crls), |t| {
        let place = capath
            .or(cafile)
            .map_or(String::new(), |p| format!(" in {}", p.display()));
        format!("{} CA certificate(s){place}", t.ca_count())
    })?;
    if trust.ca_count() == 0 {
        report.fail("trusted CAs", "no CA certificate found");
        return None;
    }
    Some(trust)
}

fn chains(report: &mut Report, what: &str, cert: &X509, trust: &TrustStore) {
    report.record(what, trust.verify(cert, &[]), |()| {
        "chains to a trusted CA".to_string()
    });
}

/// Whether this process may write in `path` (without creating anything there).
fn may_write(path: &Path) -> std::io::Result<()> {
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "NUL in path"))?;
    // SAFETY: `c` is a valid NUL-terminated path; access() only reads it.
    if unsafe { libc::access(c.as_ptr(), libc::W_OK | libc::X_OK) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// A directory that must exist and be writable, or be creatable in a writable parent.
fn writable_dir(report: &mut Report, what: &str, path: &Path) {
    if path.is_dir() {
        match may_write(path) {
            Ok(()) => report.ok(what, format!("{} writable", path.display())),
            Err(e) => report.fail(what, format!("{} not writable: {e}", path.display())),
        }
        return;
    }
    if path.exists() {
        report.fail(what, format!("{} is not a directory", path.display()));
        return;
    }
    let parent = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    match may_write(parent) {
        Ok(()) => report.ok(what, format!("{} will be created", path.display())),
        Err(e) => report.fail(
            what,
            format!(
                "{} does not exist and {} is not writable: {e}",
                path.display(),
                parent.display()
            ),
        ),
    }
}

/// The message store's file system: reported, and a caution (not a failure) for ext4 without
/// a journal, where storing is slow while the consumer deletes (`ops::filesystem`).
fn store_filesystem(report: &mut Report, path: &Path) {
    let fs = filesystem::describe(path);
    match fs.caution() {
        Some(caution) => report.ok("message store file system", format!("{fs}: {caution}")),
        None => report.ok("message store file system", fs),
    }
}

/// A file the daemon will create or append to.
fn writable_file(report: &mut Report, what: &str, path: &Path) {
    if path.exists() {
        let writable = std::fs::OpenOptions::new().append(true).open(path);
        match writable {
            Ok(_) => report.ok(what, format!("{} writable", path.display())),
            Err(e) => report.fail(what, format!("{}: {e}", path.display())),
        }
        return;
    }
    let parent = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    match may_write(parent) {
        Ok(()) => report.ok(what, format!("{} can be created", path.display())),
        Err(e) => report.fail(
            what,
            format!(
                "{}: cannot create in {}: {e}",
                path.display(),
                parent.display()
            ),
        ),
    }
}

fn files(report: &mut Report, logging: &LoggingSettings, pidfile_path: Option<&Path>) {
    if let Some(log) = &logging.logfile {
        writable_file(report, "log file", log);
    }
    if let Some(path) = pidfile_path {
        match pidfile::read_pid(path) {
            Ok(Some(pid)) if pidfile::process_alive(pid) => report.ok(
                "pidfile",
                format!(
                    "{}: process {pid} is running (a second copy would refuse to start)",
                    path.display()
                ),
            ),
            _ => writable_file(report, "pidfile", path),
        }
    }
}

fn metrics_addr(report: &mut Report, addr: &str) {
    use std::net::ToSocketAddrs;
    match addr.to_socket_addrs().map(|a| a.count()) {
        Ok(n) if n > 0 => report.ok("metrics address", addr),
        Ok(_) => report.fail("metrics address", format!("{addr}: resolves to nothing")),
        Err(e) => report.fail("metrics address", format!("{addr}: {e}")),
    }
}

/// Where the client certificate and CAs for TLS to the broker come from.
struct IdentityFiles<'a> {
    cert: &'a Path,
    key: &'a Path,
    capath: Option<&'a Path>,
    cafile: Option<&'a Path>,
}

impl<'a> From<&'a SenderConfig> for IdentityFiles<'a> {
    fn from(c: &'a SenderConfig) -> Self {
        IdentityFiles {
            cert: &c.certificate,
            key: &c.key,
            capath: c.capath.as_deref(),
            cafile: c.cafile.as_deref(),
        }
    }
}

/// Connects to every configured broker once and probes the destination on the first that
/// answers (see the module documentation for why the probe is harmless).
fn broker<'a>(
    report: &mut Report,
    settings: &BrokerSettings,
    files: impl Into<IdentityFiles<'a>>,
    destination: &str,
) {
    let files = files.into();
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return report.fail("broker", format!("cannot start the runtime: {e}")),
    };
    let mut probed = false;
    for (host, port) in &settings.brokers {
        let one = BrokerSettings {
            brokers: vec![(host.clone(), *port)],
            ..settings.clone()
        };
        let what = format!("broker {host}:{port}");
        let mut cfg = match common::client_config(
            &one,
            (files.capath, files.cafile),
            (files.cert, files.key),
        ) {
            Ok(c) => c,
            Err(e) => return report.fail(&what, format!("{e:#}")),
        };
        cfg.max_rounds = Some(1);
        cfg.connect_timeout = Duration::from_secs(10);
        cfg.receipt_timeout = Duration::from_secs(10);
        let tls = if one.use_ssl { "TLS" } else { "plain TCP" };
        rt.block_on(async {
            let client = match Client::connect(&cfg).await {
                Ok(c) => c,
                Err(e) => return report.fail(&what, e),
            };
            report.ok(
                &what,
                format!(
                    "STOMP {} handshake over {tls}, server {}",
                    client.version().as_str(),
                    client.server().unwrap_or("(unnamed)")
                ),
            );
            if !probed {
                probed = true;
                let dest_what = format!("destination {destination}");
                let handle = client.handle();
                match handle
                    .subscribe(
                        destination,
                        AckMode::ClientIndividual,
                        &[("prefetch-count", "1")],
                    )
                    .await
                {
                    Ok(id) => match handle.unsubscribe(&id).await {
                        Ok(()) => report.ok(
                            &dest_what,
                            "SUBSCRIBE and UNSUBSCRIBE acknowledged (nothing sent)",
                        ),
                        Err(e) => report.fail(&dest_what, format!("UNSUBSCRIBE: {e}")),
                    },
                    Err(e) => report.fail(&dest_what, format!("SUBSCRIBE refused: {e}")),
                }
            }
            let _ = client.disconnect().await;
        });
    }
}
