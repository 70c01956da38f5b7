//! The rules that look at the machine rather than at files' contents: writable directories and
//! files, the PID file, the metrics address, the broker. `ssm check` probes without creating or
//! sending anything; the daemons take the PID file for real.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::Duration;

use openssl::x509::X509;

use super::rules::{Checks, Failure, Rule};
use crate::config::{BrokerSettings, IdentitySettings};
use crate::crypto;
use crate::ops::pidfile::{self, Pidfile};
use crate::ops::{filesystem, metrics};
use crate::stomp::{AckMode, Client};

/// Validity for at least [`super::MIN_VALIDITY`]; the daemon's error names `context`, the
/// check line gives the days left.
pub(super) fn expiry(
    checks: &mut Checks,
    rule: Rule,
    cert: &X509,
    context: impl FnOnce() -> String,
) -> anyhow::Result<()> {
    match crypto::check_validity(cert, super::MIN_VALIDITY) {
        Err(e) => {
            let reason = e.to_string();
            let error = anyhow::Error::new(e).context(context());
            checks.fail(rule, Failure::new(error).reason(reason))
        }
        Ok(()) => {
            if checks.reporting() {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs() as i64);
                let days = metrics::not_after_epoch(cert).map_or(0, |t| (t - now) / 86_400);
                checks.ok(
                    rule,
                    format!("{days} days left (notAfter {})", cert.not_after()),
                );
            }
            Ok(())
        }
    }
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

/// A directory that must exist and be writable, or be creatable in a writable parent
/// (reported only: the daemon creates it).
pub(super) fn writable_dir(checks: &mut Checks, rule: Rule, path: &Path) -> anyhow::Result<()> {
    if !checks.reporting() {
        return Ok(());
    }
    if path.is_dir() {
        return match may_write(path) {
            Ok(()) => checks.pass(rule, format!("{} writable", path.display())),
            Err(e) => checks.fail(
                rule,
                Failure::msg(format!("{} not writable: {e}", path.display())),
            ),
        };
    }
    if path.exists() {
        return checks.fail(
            rule,
            Failure::msg(format!("{} is not a directory", path.display())),
        );
    }
    let parent = parent_of(path);
    match may_write(parent) {
        Ok(()) => checks.pass(rule, format!("{} will be created", path.display())),
        Err(e) => checks.fail(
            rule,
            Failure::msg(format!(
                "{} does not exist and {} is not writable: {e}",
                path.display(),
                parent.display()
            )),
        ),
    }
}

fn parent_of(path: &Path) -> &Path {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// The message store's file system: reported, and a caution (not a failure) for ext4 without
/// a journal, where storing is slow while the consumer deletes (`ops::filesystem`).
pub(super) fn store_filesystem(checks: &mut Checks, path: &Path) {
    if !checks.reporting() {
        return;
    }
    let fs = filesystem::describe(path);
    match fs.caution() {
        Some(caution) => checks.ok_as("message store file system", format!("{fs}: {caution}")),
        None => checks.ok_as("message store file system", fs),
    }
}

/// A file the daemon will create or append to.
fn writable_file(checks: &mut Checks, rule: Rule, path: &Path) -> anyhow::Result<()> {
    if path.exists() {
        let writable = std::fs::OpenOptions::new().append(true).open(path);
        return match writable {
            Ok(_) => checks.pass(rule, format!("{} writable", path.display())),
            Err(e) => checks.fail(rule, Failure::msg(format!("{}: {e}", path.display()))),
        };
    }
    let parent = parent_of(path);
    match may_write(parent) {
        Ok(()) => checks.pass(rule, format!("{} can be created", path.display())),
        Err(e) => checks.fail(
            rule,
            Failure::msg(format!(
                "{}: cannot create in {}: {e}",
                path.display(),
                parent.display()
            )),
        ),
    }
}

/// The log file (reported only: logging is started before the rules, so that they are
/// logged).
pub(super) fn log_file(checks: &mut Checks, logfile: Option<&Path>) -> anyhow::Result<()> {
    match logfile {
        Some(log) if checks.reporting() => writable_file(checks, Rule::LogFile, log),
        _ => Ok(()),
    }
}

/// The PID file: taken when starting (refused while it names a live process), probed when
/// reporting (a running process is reported, not failed: `ssm check` may run beside it).
pub(super) fn pidfile(checks: &mut Checks, path: Option<&Path>) -> anyhow::Result<Option<Pidfile>> {
    let Some(path) = path else {
        return Ok(None);
    };
    if !checks.reporting() {
        return super::take_pidfile(Some(path));
    }
    match pidfile::read_pid(path) {
        Ok(Some(pid)) if pidfile::process_alive(pid) => checks.ok(
            Rule::Pidfile,
            format!(
                "{}: process {pid} is running (a second copy would refuse to start)",
                path.display()
            ),
        ),
        _ => writable_file(checks, Rule::Pidfile, path)?,
    }
    Ok(None)
}

/// The metrics address resolves (reported only: the daemon binds it).
pub(super) fn metrics_addr(checks: &mut Checks, addr: Option<&str>) -> anyhow::Result<()> {
    use std::net::ToSocketAddrs;
    let Some(addr) = addr.filter(|_| checks.reporting()) else {
        return Ok(());
    };
    let rule = Rule::MetricsAddress;
    match addr.to_socket_addrs().map(|a| a.count()) {
        Ok(n) if n > 0 => checks.pass(rule, addr),
        Ok(_) => checks.fail(rule, Failure::msg(format!("{addr}: resolves to nothing"))),
        Err(e) => checks.fail(rule, Failure::msg(format!("{addr}: {e}"))),
    }
}

/// Connects to every configured broker once and probes the destination on the first that
/// answers (`ssm check` without `--offline` only). The probe is harmless: SUBSCRIBE and
/// UNSUBSCRIBE with receipts, in `client-individual` mode without ever acking, so that even on
/// a queue destination nothing is consumed; nothing is ever SENT.
pub(super) fn broker(
    checks: &mut Checks,
    settings: &BrokerSettings,
    identity: &IdentitySettings,
    destination: &str,
) -> anyhow::Result<()> {
    if !checks.probe_broker() {
        return Ok(());
    }
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(failure) => return checks.fail(Rule::Broker, failure),
    };
    let mut probed = false;
    for (host, port) in &settings.brokers {
        let one = BrokerSettings {
            brokers: vec![(host.clone(), *port)],
            ..settings.clone()
        };
        let what = format!("broker {host}:{port}");
        let mut cfg = super::client_config(
            &one,
            (identity.capath.as_deref(), identity.cafile.as_deref()),
            (&identity.certificate, &identity.key),
        );
        cfg.max_rounds = Some(1);
        cfg.connect_timeout = Duration::from_secs(10);
        cfg.receipt_timeout = Duration::from_secs(10);
        let tls = if one.use_ssl { "TLS" } else { "plain TCP" };
        rt.block_on(async {
            let client = match Client::connect(&cfg).await {
                Ok(c) => c,
                Err(e) => return checks.fail_as(&what, Failure::msg(e)),
            };
            checks.ok_as(
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
                        Ok(()) => checks.ok_as(
                            &dest_what,
                            "SUBSCRIBE and UNSUBSCRIBE acknowledged (nothing sent)",
                        ),
                        Err(e) => {
                            checks.fail_as(&dest_what, Failure::msg(format!("UNSUBSCRIBE: {e}")))?
                        }
                    },
                    Err(e) => checks
                        .fail_as(&dest_what, Failure::msg(format!("SUBSCRIBE refused: {e}")))?,
                }
            }
            let _ = client.disconnect().await;
            Ok(())
        })?;
    }
    Ok(())
}

/// What the AMS probe looks for: the sender's topic or the receiver's subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AmsResource {
    /// `[messaging] destination` of a sender.
    Topic,
    /// `[messaging] destination` of a receiver.
    Subscription,
}

/// For `protocol: AMS` (`ssm check` without `--offline` only): that the token works — the
/// configured one, or the one the host certificate is exchanged for — and that the topic or
/// subscription exists, each reported as the STOMP probe reports the broker and the
/// destination. Harmless: it only reads (the exchange, and a `GET` of the topic or the
/// subscription); nothing is published, pulled or acknowledged.
pub(super) fn ams(
    checks: &mut Checks,
    common: &crate::config::CommonSettings,
    name: &str,
    resource: AmsResource,
) -> anyhow::Result<()> {
    use crate::transport::ams::{AmsClient, AmsError};
    use crate::transport::TransportConfig;

    if !checks.probe_broker() {
        return Ok(());
    }
    let Some(TransportConfig::Ams(settings)) = super::ams_transport(common) else {
        return checks.fail(
            Rule::Broker,
            Failure::msg("protocol: AMS needs a [broker] host"),
        );
    };
    let mut cfg = settings.client;
    cfg.request_timeout = Duration::from_secs(15);
    cfg.connect_timeout = Duration::from_secs(10);
    let service = format!("AMS {}:{}", cfg.host, cfg.port);
    let project = cfg.project.clone();
    let exchanged = cfg.token.is_none();
    let authn = format!("AMS token exchange {}:{}", cfg.host, cfg.authn_port);
    let what = match resource {
        AmsResource::Topic => format!("topic {name}"),
        AmsResource::Subscription => format!("subscription {name}"),
    };
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(failure) => return checks.fail(Rule::Broker, failure),
    };
    let client = match AmsClient::new(cfg) {
        Ok(c) => c,
        Err(e) => return checks.fail_as(&service, Failure::msg(e)),
    };
    rt.block_on(async {
        if exchanged {
            // A refusal here says what to fix (the DN in GOCDB, the certificate); without a
            // token nothing else can be looked at.
            match client.exchange().await {
                Ok(_) => checks.ok_as(&authn, "a token for the host certificate"),
                Err(e) => return checks.fail_as(&authn, Failure::msg(e)),
            }
        }
        let token = if exchanged {
            "the exchanged token"
        } else {
            "[messaging] token"
        };
        let found = match resource {
            AmsResource::Topic => client
                .topic(name)
                .await
                .map(|_| format!("exists in project {project}")),
            AmsResource::Subscription => client.subscription(name).await.map(|s| {
                format!(
                    "exists in project {project} (topic {}, ack deadline {} s)",
                    s.topic.rsplit('/').next().unwrap_or(""),
                    s.ack_deadline_seconds
                )
            }),
        };
        match found {
            Ok(detail) => {
                checks.ok_as(&service, format!("HTTPS, {token} accepted"));
                checks.ok_as(&what, detail);
                Ok(())
            }
            // The service checks the token before the resource: it was accepted.
            Err(e @ AmsError::NotFound { .. }) if missing_resource(&e) => {
                checks.ok_as(&service, format!("HTTPS, {token} accepted"));
                checks.fail_as(&what, Failure::msg(e))
            }
            Err(e @ AmsError::Forbidden { .. }) if resource == AmsResource::Topic => {
                // Seeing a topic's description is a right of its own on the real service
                // (`topics:show`); a publisher may lack it and still publish.
                checks.ok_as(&service, format!("HTTPS, {token} accepted"));
                checks.ok_as(
                    &what,
                    format!(
                        "not checked: {e} (publishing may still be allowed; the first send tells)"
                    ),
                );
                Ok(())
            }
            Err(e) => checks.fail_as(&service, Failure::msg(e)),
        }
    })
}

/// A 404 about the topic or the subscription itself (not the project, nor a host that is no
/// AMS host).
fn missing_resource(e: &crate::transport::ams::AmsError) -> bool {
    matches!(e, crate::transport::ams::AmsError::NotFound { what, .. }
        if what.starts_with("topic ") || what.starts_with("subscription "))
}

/// The single-threaded runtime a probe runs its network checks on.
fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::msg(format!("cannot start the runtime: {e}")))
}
