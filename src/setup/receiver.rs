//! `receiver.cfg` (with the flags of `ssm receive`) to a ready [`ReceiverSetup`].

use std::sync::{Arc, RwLock};
use std::time::Duration;

use super::probe;
use super::reload::{self, Reloader};
use super::rules::{Checks, Failure, Rule};
use super::sender::{identity, own_chain, trust_store};
use crate::config::ReceiverConfig;
use crate::crypto::{DnFile, DnList, Opener};
use crate::ops::metrics;
use crate::ops::pidfile::Pidfile;
use crate::receiver::ReceiverSettings;

/// The run options of `ssm receive` that are not configuration.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReceiverRun {
    /// Stop after storing or rejecting this many messages.
    pub max_messages: Option<u64>,
    /// Stop after this long.
    pub run_for: Option<Duration>,
}

/// Everything `ssm receive` runs with.
pub struct ReceiverSetup {
    /// The receiver's settings.
    pub settings: ReceiverSettings,
    /// Re-reads the trust store and the DN list in `settings` while running.
    pub reloader: Reloader,
    /// The PID file, held until dropped.
    pub pidfile: Option<Pidfile>,
    /// Our certificate's notAfter (Unix time), for the metrics.
    pub cert_not_after: Option<i64>,
}

/// The receiver's setup for `ssm receive`, or the first failed rule's error.
pub fn start_receiver(cfg: &ReceiverConfig, run: ReceiverRun) -> anyhow::Result<ReceiverSetup> {
    receiver(cfg, run, &mut Checks::start())?
        .ok_or_else(|| anyhow::anyhow!("internal: the receiver's rules passed without a setup"))
}

/// Evaluates the receiver's rules ([`super::RECEIVER_RULES`], in that order) for `cfg`. When
/// starting, the first failed rule is the error and the result is the setup; when reporting,
/// every rule is a line and the result is `None`.
pub fn receiver(
    cfg: &ReceiverConfig,
    run: ReceiverRun,
    checks: &mut Checks,
) -> anyhow::Result<Option<ReceiverSetup>> {
    let common = &cfg.common;
    let id = &common.identity;
    let (cert, identity) = identity(checks, &id.certificate, &id.key)?;
    let trust = trust_store(
        checks,
        id.capath.as_deref(),
        id.cafile.as_deref(),
        cfg.check_crls,
    )?;
    own_chain(checks, cert.as_ref(), trust.as_ref())?;
    if let Some(trust) = &trust {
        // Warned, not failed: the receiver runs, but does not ack (nor reject) messages it
        // cannot check until a fresh CRL is installed.
        if checks.reporting() {
            for problem in trust.crl_problems() {
                checks.ok_as(
                    "CRL warning",
                    format!("{problem} (messages from its signers would not be acked)"),
                );
            }
        } else {
            reload::warn_crl_problems(trust);
        }
    }
    let dn_file = DnFile::new(&cfg.dn_file);
    let dns = allowed_dns(checks, &dn_file)?;
    probe::writable_dir(checks, Rule::MessageStore, &cfg.path)?;
    probe::store_filesystem(checks, &cfg.path);
    probe::log_file(checks, common.logging.logfile.as_deref())?;
    let pidfile = probe::pidfile(checks, common.daemon.pidfile.as_deref())?;
    probe::metrics_addr(checks, common.daemon.metrics.as_deref())?;
    if common.ams.is_none() {
        probe::broker(checks, &common.broker, id, &cfg.destination)?;
    } else {
        probe::ams(
            checks,
            common,
            &cfg.destination,
            probe::AmsResource::Subscription,
        )?;
    }
    if checks.reporting() {
        return Ok(None);
    }
    // Starting: every rule passed, so every value is there.
    let (Some(identity), Some(trust), Some(dns)) = (identity, trust, dns) else {
        anyhow::bail!("internal: a start-up rule failed without an error");
    };
    let cert_not_after = metrics::not_after_epoch(&identity.cert);
    let cert_pem = String::from_utf8(identity.cert.to_pem()?)?;
    let client = super::client_config(
        &common.broker,
        (id.capath.as_deref(), id.cafile.as_deref()),
        (&id.certificate, &id.key),
    );
    let dns = Arc::new(RwLock::new(dns));
    let settings = ReceiverSettings {
        transport: super::ams_transport(common)
            .unwrap_or_else(|| crate::transport::TransportConfig::stomp(client, None)),
        destination: cfg.destination.clone(),
        opener: Opener::new(identity, trust.clone()).allow_weak_digests(cfg.allow_weak_digests),
        cert_pem,
        dns: dns.clone(),
        store_path: cfg.path.clone(),
        reack_max_age: cfg.reack_max_age,
        max_messages: run.max_messages,
        run_for: run.run_for,
        lanes: 0,
    };
    Ok(Some(ReceiverSetup {
        settings,
        reloader: Reloader {
            dn_file,
            dns,
            trust,
        },
        pidfile,
        cert_not_after,
    }))
}

/// The allowed-DN list (rule `AllowedDns`): at least one valid DN; ignored lines are reported
/// as warnings.
fn allowed_dns(checks: &mut Checks, file: &DnFile) -> anyhow::Result<Option<DnList>> {
    if !checks.reporting() {
        return reload::load_dns(file).map(Some);
    }
    let path = file.path();
    match std::fs::read_to_string(path) {
        Err(e) => checks.fail(
            Rule::AllowedDns,
            Failure::msg(format!("{}: {e}", path.display())),
        )?,
        Ok(text) => {
            let (list, warnings) = DnList::parse(&text);
            if list.is_empty() {
                checks.fail(
                    Rule::AllowedDns,
                    Failure::msg(format!(
                        "{}: no valid DN (the receiver would refuse to start)",
                        path.display()
                    )),
                )?;
            } else {
                checks.ok(
                    Rule::AllowedDns,
                    format!("{} DN(s) in {}", list.len(), path.display()),
                );
            }
            for w in warnings {
                checks.ok_as(
                    "allowed DNs warning",
                    format!("{}: {w} (ignored)", path.display()),
                );
            }
        }
    }
    Ok(None)
}
