//! `sender.cfg` (with the flags of `ssm send`) to a ready [`SenderSetup`].

use openssl::x509::X509;

use super::probe;
use super::rules::{Checks, Failure, Rule};
use crate::config::SenderConfig;
use crate::crypto::{self, Identity, TrustStore};
use crate::ops::metrics;
use crate::ops::pidfile::Pidfile;
use crate::protocol::Version;
use crate::queue::{Dirq, Outgoing};
use crate::sender::{Sender, SenderSettings};
use crate::transport::TransportConfig;

/// Rounds over the broker list a single pass makes before giving up on connecting.
pub const ONE_PASS_ROUNDS: u32 = 5;

/// Everything `ssm send` runs with.
pub struct SenderSetup {
    /// The sender's settings.
    pub settings: SenderSettings,
    /// The outgoing queue.
    pub outgoing: Outgoing,
    /// Where messages the receiver refused go (`<path>/reject`).
    pub reject: Dirq,
    /// The PID file, held until dropped.
    pub pidfile: Option<Pidfile>,
    /// Our certificate's notAfter (Unix time), for the metrics.
    pub cert_not_after: Option<i64>,
}

impl SenderSetup {
    /// The sender, for a run that needs neither the PID file nor the metrics (the harness).
    pub fn into_sender(self) -> Sender {
        Sender::new(self.settings, self.outgoing, self.reject)
    }
}

/// The sender's setup for `ssm send`, or the first failed rule's error.
pub fn start_sender(cfg: &SenderConfig, daemon: bool) -> anyhow::Result<SenderSetup> {
    sender(cfg, daemon, &mut Checks::start())?
        .ok_or_else(|| anyhow::anyhow!("internal: the sender's rules passed without a setup"))
}

/// Evaluates the sender's rules ([`super::SENDER_RULES`], in that order) for `cfg`; `daemon`
/// is `--daemon`. When starting, the first failed rule is the error and the result is the
/// setup; when reporting, every rule is a line and the result is `None`.
pub fn sender(
    cfg: &SenderConfig,
    daemon: bool,
    checks: &mut Checks,
) -> anyhow::Result<Option<SenderSetup>> {
    let common = &cfg.common;
    let id = &common.identity;
    if common.daemon.metrics.is_some() && !daemon {
        checks.fail(
            Rule::MetricsNeedDaemon,
            Failure::msg(
                "--metrics (or [daemon] metrics) needs --daemon: a single pass has nothing to scrape",
            ),
        )?;
    }
    let (cert, identity) = identity(checks, &id.certificate, &id.key)?;
    // The sender holds a trust store whether or not it verifies the receiver's certificate.
    let trust = match (&id.capath, &id.cafile) {
        (None, None) => {
            checks.fail(
                Rule::TrustedCas,
                Failure::msg("[certificates] capath or cafile is required (or give --capath DIR)"),
            )?;
            None
        }
        _ => trust_store(checks, id.capath.as_deref(), id.cafile.as_deref(), false)?,
    };
    own_chain(checks, cert.as_ref(), trust.as_ref())?;
    let server_cert = server_cert(checks, cfg, cert.as_ref(), trust.as_ref())?;
    probe::writable_dir(checks, Rule::OutgoingQueue, &cfg.path)?;
    probe::log_file(checks, common.logging.logfile.as_deref())?;
    let pidfile = probe::pidfile(checks, common.daemon.pidfile.as_deref())?;
    probe::metrics_addr(checks, common.daemon.metrics.as_deref())?;
    if common.ams.is_none() {
        probe::broker(checks, &common.broker, id, &cfg.destination)?;
    } else {
        probe::ams(checks, common, &cfg.destination, probe::AmsResource::Topic)?;
    }
    if checks.reporting() {
        return Ok(None);
    }
    // Starting: every rule passed, so every value is there.
    let (Some(identity), Some(trust), Some(server_cert)) = (identity, trust, server_cert) else {
        anyhow::bail!("internal: a start-up rule failed without an error");
    };
    let cert_not_after = metrics::not_after_epoch(&identity.cert);
    let mut client = super::client_config(
        &common.broker,
        (id.capath.as_deref(), id.cafile.as_deref()),
        (&id.certificate, &id.key),
    );
    if !daemon {
        // A cron or timer pass must end: give up on unreachable brokers after a few rounds
        // (about 15 s of backoff); the next run tries again. The daemon retries forever.
        client.max_rounds = Some(ONE_PASS_ROUNDS);
    }
    let mut transport = super::ams_transport(common)
        .unwrap_or_else(|| TransportConfig::stomp(client, common.broker.kind));
    if let (TransportConfig::Ams(ams), false) = (&mut transport, daemon) {
        // As for STOMP above: a pass gives up on an unreachable service sooner (the sender
        // itself sends each message up to max_attempts times).
        ams.retry.attempts = 3;
    }
    if let Err(why) = cfg.ssm_version.fits(transport.capabilities()) {
        anyhow::bail!("ssm_version {}: {why}", cfg.ssm_version);
    }
    let reply_queue = cfg
        .reply_queue
        .clone()
        .unwrap_or_else(|| transport.new_reply_queue());
    let settings = SenderSettings {
        transport,
        destination: cfg.destination.clone(),
        identity,
        trust,
        server_cert,
        server_dn: cfg.server_dn.clone(),
        verify_server_cert: cfg.verify_server_cert,
        cipher: cfg.cipher,
        ack_timeout: cfg.ack_timeout,
        max_attempts: cfg.max_attempts,
        reply_queue,
        version: cfg.ssm_version,
        window: cfg.window as usize,
    };
    let outgoing = Outgoing::open(&cfg.path, cfg.path_type)?;
    let reject = Dirq::open(&crate::queue::sender_reject(&cfg.path))?;
    Ok(Some(SenderSetup {
        settings,
        outgoing,
        reject,
        pidfile,
        cert_not_after,
    }))
}

/// Our certificate and key: loadable, matching, valid for a day (rules `Certificate` to
/// `CertificateExpiry`). The daemon's errors are those of [`super::load_identity`]. Returns
/// the certificate when it loads (the later rules look at it even when the key is wrong) and
/// the identity when every rule passed.
pub(super) fn identity(
    checks: &mut Checks,
    cert_path: &std::path::Path,
    key_path: &std::path::Path,
) -> anyhow::Result<(Option<X509>, Option<Identity>)> {
    let cert = checks.rule(
        Rule::Certificate,
        crypto::load_cert(cert_path).map_err(Failure::new),
        |c| format!("{} ({})", crypto::subject_dn(c), cert_path.display()),
    )?;
    let key = checks.rule(
        Rule::PrivateKey,
        crypto::load_key(key_path).map_err(Failure::new),
        |_| format!("{} readable", key_path.display()),
    )?;
    let mut matching = false;
    if let (Some(cert), Some(key)) = (&cert, &key) {
        if crypto::key_matches(cert, key) {
            matching = true;
            checks.ok(Rule::KeyMatches, "yes");
        } else {
            let error = crypto::CryptoError::KeyMismatch {
                cert: cert_path.to_path_buf(),
                key: key_path.to_path_buf(),
            };
            checks.fail(
                Rule::KeyMatches,
                Failure::new(error).reason(format!(
                    "{} is not the key of {}",
                    key_path.display(),
                    cert_path.display()
                )),
            )?;
        }
    }
    if let Some(cert) = &cert {
        probe::expiry(checks, Rule::CertificateExpiry, cert, || {
            format!("certificate {}", cert_path.display())
        })?;
    }
    let identity = match (&cert, key) {
        (Some(cert), Some(key)) if matching => Some(Identity {
            cert: cert.clone(),
            key,
        }),
        _ => None,
    };
    Ok((cert, identity))
}

/// The trusted CAs (rule `TrustedCas`).
pub(super) fn trust_store(
    checks: &mut Checks,
    capath: Option<&std::path::Path>,
    cafile: Option<&std::path::Path>,
    crls: bool,
) -> anyhow::Result<Option<TrustStore>> {
    let Some(trust) = checks.rule(
        Rule::TrustedCas,
        TrustStore::new(capath, cafile, crls).map_err(Failure::new),
        |t| {
            let place = capath
                .or(cafile)
                .map_or(String::new(), |p| format!(" in {}", p.display()));
            format!("{} CA certificate(s){place}", t.ca_count())
        },
    )?
    else {
        return Ok(None);
    };
    if trust.ca_count() == 0 {
        checks.fail(Rule::TrustedCas, Failure::msg("no CA certificate found"))?;
        return Ok(None);
    }
    Ok(Some(trust))
}

/// Our certificate chains to our CAs (rule `CertificateChain`, reported only).
pub(super) fn own_chain(
    checks: &mut Checks,
    cert: Option<&X509>,
    trust: Option<&TrustStore>,
) -> anyhow::Result<()> {
    if let (true, Some(cert), Some(trust)) = (checks.reporting(), cert, trust) {
        checks.rule(
            Rule::CertificateChain,
            trust.verify(cert, &[]).map_err(Failure::new),
            |()| "chains to a trusted CA".to_string(),
        )?;
    }
    Ok(())
}

/// The receiver's certificate, or the DN to ask for (rules `ServerCertificate` to
/// `ServerCertificateExpiry`). `Some(None)` = ask for it with a `certreq`.
fn server_cert(
    checks: &mut Checks,
    cfg: &SenderConfig,
    ours: Option<&X509>,
    trust: Option<&TrustStore>,
) -> anyhow::Result<Option<Option<X509>>> {
    let v2 = cfg.ssm_version == Version::V2;
    let path = match (&cfg.server_cert, &cfg.server_dn) {
        (Some(path), _) => path,
        (None, Some(_)) if v2 => {
            checks.fail(
                Rule::ServerCertificate,
                Failure::msg("server_dn asks for the receiver's certificate with a certreq, which SSM2 does not have: give server_cert (or nothing: signed, not encrypted), or ssm_version = 1"),
            )?;
            return Ok(None);
        }
        (None, None) if v2 => {
            checks.ok(
                Rule::ServerCertificate,
                "none: SSM2 messages are signed, not encrypted".to_string(),
            );
            return Ok(Some(None));
        }
        (None, Some(dn)) if crypto::Dn::parse(dn).is_none() => {
            checks.fail(
                Rule::ServerCertificate,
                Failure::msg(format!(
                    "server_dn {dn:?} is not a DN in slash form (/C=../O=../CN=..)"
                )),
            )?;
            return Ok(None);
        }
        (None, Some(dn)) => {
            checks.ok(
                Rule::ServerCertificate,
                format!("asked for by certreq, must be {dn}"),
            );
            return Ok(Some(None));
        }
        (None, None) => {
            checks.fail(
                Rule::ServerCertificate,
                Failure::msg("[certificates] server_cert or server_dn is required (or give --server-cert S or --server-dn DN)")
                    .reason("[certificates] server_cert or server_dn is required"),
            )?;
            return Ok(None);
        }
    };
    let Some(server) = checks.rule(
        Rule::ServerCertificate,
        crypto::load_cert(path).map_err(Failure::new),
        |c| format!("{} ({})", crypto::subject_dn(c), path.display()),
    )?
    else {
        return Ok(None);
    };
    let mut good = true;
    let same = ours.is_some_and(|o| o.to_der().ok() == server.to_der().ok());
    if same {
        good = false;
        checks.fail(
            Rule::ServerCertificate,
            Failure::msg(format!(
                "[certificates] server_cert {} is this host's own certificate",
                path.display()
            ))
            .reason(format!("{} is this host's own certificate", path.display())),
        )?;
    }
    if cfg.verify_server_cert {
        if let Some(trust) = trust {
            let result = trust.verify(&server, &[]).map_err(|e| {
                let reason = e.to_string();
                Failure::new(
                    anyhow::Error::new(e).context(format!("server certificate {}", path.display())),
                )
                .reason(reason)
            });
            good &= checks
                .rule(Rule::ServerCertificateChain, result, |()| {
                    "chains to a trusted CA".to_string()
                })?
                .is_some();
        }
    }
    probe::expiry(checks, Rule::ServerCertificateExpiry, &server, || {
        format!("server certificate {}", path.display())
    })?;
    Ok(good.then_some(Some(server)))
}
