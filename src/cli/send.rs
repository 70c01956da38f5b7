//! `ssm send`: ship the outgoing queue to the receiver (see [`crate::sender`]).
//!
//! Once (a cron job or a systemd timer) or as a daemon (`--daemon`). Both honour the PID file;
//! the daemon also serves the optional metrics endpoint, tells systemd when it is up and
//! stopping, and reopens its log file on SIGHUP.

use std::time::Duration;

use anyhow::{bail, Context};
use tracing::{info, warn};

use super::common;
use crate::config::{Loadable, SenderConfig, SenderOverrides};
use crate::crypto::{self, TrustStore};
use crate::ops::metrics::{self, SenderMetrics};
use crate::ops::notify::Notifier;
use crate::queue::{Dirq, Outgoing};
use crate::sender::{Sender, SenderSettings};

/// Rounds over the broker list a single pass makes before giving up on connecting.
pub const ONE_PASS_ROUNDS: u32 = 5;

/// Arguments of `ssm send`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    o: SenderOverrides,
}

/// Runs `ssm send`.
pub fn run(args: Args) -> anyhow::Result<()> {
    let (cfg, warnings) = SenderConfig::resolve(&args.o)?;
    common::init_logging(&cfg.logging)?;
    info!("ssm {} sender starting", env!("CARGO_PKG_VERSION"));
    for w in warnings {
        warn!("{w}");
    }
    if cfg.metrics.is_some() && !args.o.daemon {
        bail!(
            "--metrics (or [daemon] metrics) needs --daemon: a single pass has nothing to scrape"
        );
    }
    let _pidfile = common::take_pidfile(cfg.pidfile.as_deref())?;
    let (mut sender, cert_not_after) = build(&cfg, args.o.daemon)?;
    let rt = tokio::runtime::Runtime::new()?;
    let notifier = Notifier::from_env();
    let summary = rt.block_on(async {
        if args.o.daemon {
            let shutdown = common::shutdown_on_signals()?;
            if let Some(addr) = &cfg.metrics {
                let listener = metrics::bind(addr).await?;
                info!(addr = %listener.local_addr()?, "metrics endpoint listening");
                let source = SenderMetrics {
                    stats: sender.stats.clone(),
                    outgoing: cfg.path.clone(),
                    path_type: cfg.path_type,
                    reject: cfg.path.join("reject"),
                    cert_not_after,
                    scrape_errors: Default::default(),
                };
                metrics::spawn(listener, std::sync::Arc::new(source), shutdown.clone());
            }
            reopen_log_on_sighup()?;
            notifier.spawn_watchdog(shutdown.clone());
            if let Err(err) = notifier.ready("sending") {
                warn!(%err, "cannot notify systemd");
            }
            let result = sender
                .run_daemon(shutdown.clone(), Duration::from_secs(1))
                .await;
            shutdown.cancel();
            if let Err(err) = notifier.stopping() {
                warn!(%err, "cannot notify systemd");
            }
            Ok::<_, anyhow::Error>(result?)
        } else {
            Ok(sender.run_once().await?)
        }
    })?;
    info!("{summary}");
    eprintln!("ssm send: {summary}");
    Ok(())
}

/// The live sender `cfg` describes, after the start-up checks of `ssm send` (identity and its
/// expiry, trust store, server certificate), with the time its certificate expires (epoch
/// seconds, for the metrics). A single pass (`daemon` false) gives up on unreachable brokers
/// after [`ONE_PASS_ROUNDS`]. `ssm bench` builds its senders here too.
pub fn build(cfg: &SenderConfig, daemon: bool) -> anyhow::Result<(Sender, Option<i64>)> {
    let identity = common::load_identity(&cfg.certificate, &cfg.key)?;
    let cert_not_after = metrics::not_after_epoch(&identity.cert);
    let trust = if cfg.capath.is_some() || cfg.cafile.is_some() {
        TrustStore::new(cfg.capath.as_deref(), cfg.cafile.as_deref(), false)?
    } else {
        bail!("[certificates] capath or cafile is required (or give --capath DIR)");
    };
    let server_cert = match &cfg.server_cert {
        Some(path) => {
            let cert = crypto::load_cert(path)?;
            if cert.to_der()? == identity.cert.to_der()? {
                bail!(
                    "[certificates] server_cert {} is this host's own certificate",
                    path.display()
                );
            }
            if cfg.verify_server_cert {
                trust
                    .verify(&cert, &[])
                    .with_context(|| format!("server certificate {}", path.display()))?;
            }
            crypto::check_validity(&cert, common::MIN_VALIDITY)
                .with_context(|| format!("server certificate {}", path.display()))?;
            Some(cert)
        }
        None => None,
    };
    if server_cert.is_none() && cfg.server_dn.is_none() {
        bail!("[certificates] server_cert or server_dn is required (or give --server-cert S or --server-dn DN)");
    }
    let mut client = common::client_config(
        &cfg.broker,
        (cfg.capath.as_deref(), cfg.cafile.as_deref()),
        (&cfg.certificate, &cfg.key),
    )?;
    if !daemon {
        // A cron or timer pass must end: give up on unreachable brokers after a few rounds
        // (about 15 s of backoff); the next run tries again. The daemon retries forever.
        client.max_rounds = Some(ONE_PASS_ROUNDS);
    }
    let settings = SenderSettings {
        transport: crate::transport::TransportConfig::stomp(client, cfg.broker.kind),
        destination: cfg.destination.clone(),
        identity,
        trust,
        server_cert,
        server_dn: cfg.server_dn.clone(),
        verify_server_cert: cfg.verify_server_cert,
        cipher: cfg.cipher,
        ack_timeout: cfg.ack_timeout,
        max_attempts: cfg.max_attempts,
        reply_queue: cfg
            .reply_queue
            .clone()
            .unwrap_or_else(SenderSettings::new_reply_queue),
    };
    let outgoing = Outgoing::open(&cfg.path, cfg.path_type)?;
    let reject = Dirq::open(&cfg.path.join("reject"))?;
    Ok((Sender::new(settings, outgoing, reject), cert_not_after))
}

/// Reopens the log file on SIGHUP (logrotate's `postrotate`).
fn reopen_log_on_sighup() -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hup = signal(SignalKind::hangup()).context("cannot watch SIGHUP")?;
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            common::reopen_log();
        }
    });
    Ok(())
}
