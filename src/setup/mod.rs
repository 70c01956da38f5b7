//! Configuration becomes settings and live objects here, and only here: this host's identity,
//! the trust store, the STOMP client configuration, the allowed-DN list, the receiver's
//! certificate, the queues, the PID file, logging and the signals `ssm send` and `ssm receive`
//! answer.
//!
//! Guarantees:
//! - The start-up rules are one list ([`Rule`], [`SENDER_RULES`], [`RECEIVER_RULES`]), evaluated
//!   by one piece of code per role ([`sender`], [`receiver`]) in one of two modes ([`Checks`]):
//!   `ssm send` / `ssm receive` stop at the first failed rule with its error; `ssm check`
//!   evaluates every rule and reports each as an `OK` or `FAIL` line. A rule the daemons do not
//!   evaluate (because they find out by doing: the broker, a writable directory) says so
//!   ([`Rule::stops_start`]).
//! - Our certificate, and the receiver's, must stay valid for at least [`MIN_VALIDITY`].
//! - The broker's TLS certificate is checked against `[broker] capath` when given, else against
//!   the `[certificates]` CAs; the TLS client certificate is our own.
//! - SIGHUP in the receiver reopens the log file, rebuilds the trust store, then re-reads the
//!   allowed-DN list, and the CA directory is polled for changes ([`Reloader`]); a failed rebuild
//!   or an incomplete DN file keeps what is in use.

mod probe;
mod receiver;
mod reload;
mod rules;
mod sender;

use std::path::Path;
use std::time::Duration;

use anyhow::Context;

use crate::config::{BrokerSettings, LoggingSettings};
use crate::crypto::{self, Identity};
use crate::ops::pidfile::Pidfile;
use crate::stomp::{BrokerAddr, ClientConfig, TlsConfig};

pub use receiver::{receiver, start_receiver, ReceiverRun, ReceiverSetup};
pub use reload::{Reloader, TRUST_POLL};
pub use rules::{Checks, Failure, Report, Rule, RECEIVER_RULES, SENDER_RULES};
pub use sender::{sender, start_sender, SenderSetup, ONE_PASS_ROUNDS};

/// Certificates must stay valid at least this long for a daemon or cron job to start.
pub const MIN_VALIDITY: Duration = Duration::from_secs(24 * 3600);

/// Loads our certificate and key, refusing a key that does not match or a certificate that
/// expires within a day.
pub fn load_identity(cert: &Path, key: &Path) -> anyhow::Result<Identity> {
    let identity = Identity::load(cert, key)?;
    crypto::check_validity(&identity.cert, MIN_VALIDITY)
        .with_context(|| format!("certificate {}", cert.display()))?;
    Ok(identity)
}

/// The AMS transport when the configuration says `protocol: AMS` (`None` for STOMP): the
/// first `[broker]` host, the project and token of `[messaging]`; the service's certificate is
/// checked against the system roots and `[broker] capath` or the `[certificates]` CAs, and our
/// certificate is what a missing token is exchanged for.
pub fn ams_transport(
    common: &crate::config::CommonSettings,
) -> Option<crate::transport::TransportConfig> {
    use crate::transport::ams::{AmsConfig, AmsSettings};
    let ams = common.ams.as_ref()?;
    let (host, port) = common.broker.brokers.first()?;
    let id = &common.identity;
    let mut cfg = AmsConfig::new(host.clone(), ams.project.clone());
    cfg.port = *port;
    cfg.token.clone_from(&ams.token);
    cfg.authn_port = ams.authn_port;
    cfg.key_in_url = ams.token_in_url;
    let (capath, cafile) = match &common.broker.broker_capath {
        Some(dir) => (Some(dir.clone()), None),
        None => (id.capath.clone(), id.cafile.clone()),
    };
    cfg.tls = TlsConfig {
        capath,
        cafile,
        cert: Some(id.certificate.clone()),
        key: Some(id.key.clone()),
        verify: true,
    };
    Some(crate::transport::TransportConfig::Ams(AmsSettings::new(
        cfg,
    )))
}

/// The STOMP client settings for the configured broker(s). `ca_fallback` is the
/// `[certificates]` trust store, used for the broker's TLS certificate unless
/// `[broker] capath` says otherwise; the client certificate for TLS is our own.
pub fn client_config(
    broker: &BrokerSettings,
    ca_fallback: (Option<&Path>, Option<&Path>),
    identity_files: (&Path, &Path),
) -> ClientConfig {
    let brokers = broker
        .brokers
        .iter()
        .map(|(host, port)| BrokerAddr {
            host: host.clone(),
            port: *port,
        })
        .collect();
    let mut cfg = ClientConfig::new(brokers);
    cfg.login = broker.login.clone();
    cfg.passcode = broker.passcode.clone();
    if broker.use_ssl {
        let (capath, cafile) = match &broker.broker_capath {
            Some(dir) => (Some(dir.clone()), None),
            None => (
                ca_fallback.0.map(Path::to_path_buf),
                ca_fallback.1.map(Path::to_path_buf),
            ),
        };
        cfg.tls = Some(TlsConfig {
            capath,
            cafile,
            cert: Some(identity_files.0.to_path_buf()),
            key: Some(identity_files.1.to_path_buf()),
            verify: true,
        });
    }
    cfg
}

/// Starts logging as configured.
pub fn init_logging(logging: &LoggingSettings) -> anyhow::Result<()> {
    crate::logging::init(
        &logging.level,
        logging.logfile.as_deref(),
        logging.console || logging.logfile.is_none(),
    )
}

/// Takes the PID file when one is configured; a stale file taken over is logged.
pub fn take_pidfile(path: Option<&Path>) -> anyhow::Result<Option<Pidfile>> {
    let Some(path) = path else {
        return Ok(None);
    };
    let (pidfile, warning) = Pidfile::acquire(path)?;
    if let Some(w) = warning {
        tracing::warn!("{w}");
    }
    tracing::info!(pidfile = %path.display(), "pidfile written");
    Ok(Some(pidfile))
}

/// Reopens the log file (SIGHUP after logrotate); a failure is logged and the old file kept.
pub fn reopen_log() {
    match crate::logging::reopen() {
        Ok(Some(path)) => tracing::info!(file = %path.display(), "SIGHUP: log file reopened"),
        Ok(None) => {}
        Err(err) => tracing::warn!("SIGHUP: keeping the old log file: {err:#}"),
    }
}

/// Reopens the log file on every SIGHUP (logrotate's `postrotate`): the sender's SIGHUP. The
/// receiver's does more ([`Reloader`]). Must be called inside a Tokio runtime.
pub fn reopen_log_on_sighup() -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hup = signal(SignalKind::hangup()).context("cannot watch SIGHUP")?;
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            reopen_log();
        }
    });
    Ok(())
}

/// A cancellation token cancelled by SIGTERM or SIGINT. Must be called inside a Tokio runtime.
pub fn shutdown_on_signals() -> anyhow::Result<tokio_util::sync::CancellationToken> {
    use tokio::signal::unix::{signal, SignalKind};
    let token = tokio_util::sync::CancellationToken::new();
    let mut term = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
    let t = token.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: finishing messages in flight"),
            _ = int.recv() => tracing::info!("SIGINT: finishing messages in flight"),
        }
        t.cancel();
    });
    Ok(token)
}

#[cfg(test)]
mod tests;
