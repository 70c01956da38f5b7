//! `ssm receive`: take messages off the broker, verify and store them (see
//! [`crate::receiver`]).
//!
//! Around the receiver itself this runs what a production daemon needs: the PID file, the
//! systemd notifications (`READY=1` only once subscribed, `STOPPING=1`, watchdog pings), the
//! optional metrics endpoint, and SIGHUP (reopen the log file, rebuild the trust store, re-read
//! the allowed-DN file).
//!
//! Guarantees:
//! - The trust store follows `capath`/`cafile`: rebuilt on SIGHUP and whenever a hashed file
//!   changes (polled every [`TRUST_POLL`]); a failed rebuild keeps the store in use (logged as
//!   an error). Stale CRLs are warned about at start-up and after each rebuild.
//! - A re-read allowed-DN list is used only when whole (see [`DnFile`]); otherwise the list in
//!   use is kept and the reason logged. On SIGHUP the trust store is rebuilt before the DN file
//!   is read, so "allowed DNs loaded" means both are done.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::Context;
use tracing::{error, info, warn};

use super::common;
use crate::config::{Loadable, ReceiverConfig, ReceiverOverrides};
use crate::crypto::{DnFile, DnList, Opener, TrustStore};
use crate::ops::metrics::{self, ReceiverMetrics};
use crate::ops::notify::Notifier;
use crate::receiver::{self, Control, ReceiverSettings, Stats};
use crate::transport::TransportConfig;

/// Arguments of `ssm receive`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    o: ReceiverOverrides,
}

/// Runs `ssm receive`.
pub fn run(args: Args) -> anyhow::Result<()> {
    let (cfg, warnings) = ReceiverConfig::resolve(&args.o)?;
    common::init_logging(&cfg.logging)?;
    info!("ssm {} receiver starting", env!("CARGO_PKG_VERSION"));
    for w in warnings {
        warn!("{w}");
    }
    let _pidfile = common::take_pidfile(cfg.pidfile.as_deref())?;
    let identity = common::load_identity(&cfg.certificate, &cfg.key)?;
    let cert_not_after = metrics::not_after_epoch(&identity.cert);
    let trust = TrustStore::new(cfg.capath.as_deref(), cfg.cafile.as_deref(), cfg.check_crls)?;
    warn_crl_problems(&trust);
    let dn_file = DnFile::new(&cfg.dn_file);
    let dns = load_dns(&dn_file)?;
    let cert_pem = String::from_utf8(identity.cert.to_pem()?)?;
    let client = common::client_config(
        &cfg.broker,
        (cfg.capath.as_deref(), cfg.cafile.as_deref()),
        (&cfg.certificate, &cfg.key),
    )?;
    let dns = Arc::new(RwLock::new(dns));
    let settings = ReceiverSettings {
        transport: TransportConfig::stomp(client, None),
        destination: cfg.destination.clone(),
        opener: Opener::new(identity, trust.clone()).allow_weak_digests(cfg.allow_weak_digests),
        cert_pem,
        dns: dns.clone(),
        store_path: cfg.path.clone(),
        reack_max_age: cfg.reack_max_age,
        max_messages: args.o.max_messages.map(|n| n.get()),
        run_for: args.o.for_secs.map(|s| Duration::from_secs(s.get())),
        lanes: 0,
    };
    let notifier = Notifier::from_env();
    let rt = tokio::runtime::Runtime::new()?;
    let result = rt.block_on(async {
        let shutdown = common::shutdown_on_signals()?;
        let stats = Arc::new(Stats::default());
        if let Some(addr) = &cfg.metrics {
            let listener = metrics::bind(addr).await?;
            info!(addr = %listener.local_addr()?, "metrics endpoint listening");
            let source = ReceiverMetrics {
                stats: stats.clone(),
                store: cfg.path.clone(),
                cert_not_after,
                scrape_errors: Default::default(),
            };
            metrics::spawn(listener, Arc::new(source), shutdown.clone());
        }
        on_sighup(dn_file, dns, trust.clone())?;
        poll_trust(trust, shutdown.clone());
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let n = notifier.clone();
        let destination = cfg.destination.clone();
        let stop_pings = shutdown.clone();
        // READY=1 only once subscribed; the watchdog pings start then (TimeoutStartSec covers
        // a start-up that never gets there).
        tokio::spawn(async move {
            if ready_rx.await.is_ok() {
                if let Err(err) = n.ready(&format!("subscribed to {destination}")) {
                    warn!(%err, "cannot notify systemd");
                }
                n.spawn_watchdog(stop_pings);
            }
        });
        let control = Control {
            shutdown: shutdown.clone(),
            ready: Some(ready_tx),
            stats,
        };
        let result = receiver::run(settings, control).await;
        shutdown.cancel();
        Ok::<_, anyhow::Error>(result?)
    });
    if let Err(err) = notifier.stopping() {
        warn!(%err, "cannot notify systemd");
    }
    let stats = result?;
    let line = format!(
        "received {}, stored {}, duplicates {}, rejected {}, store failures {}, not judged (our CRL) {}",
        Stats::get(&stats.received),
        Stats::get(&stats.stored),
        Stats::get(&stats.duplicates),
        Stats::get(&stats.rejected),
        Stats::get(&stats.store_failures),
        Stats::get(&stats.trust_unavailable),
    );
    info!("{line}");
    eprintln!("ssm receive: {line}");
    Ok(())
}

/// How often the CA directory is checked for changes.
pub const TRUST_POLL: Duration = Duration::from_secs(60);

fn load_dns(file: &DnFile) -> anyhow::Result<DnList> {
    let path = file.path();
    let dns = file
        .load()
        .with_context(|| format!("allowed-DN file {}", path.display()))?;
    info!(count = dns.len(), file = %path.display(), "allowed DNs loaded");
    Ok(dns)
}

fn warn_crl_problems(trust: &TrustStore) {
    for problem in trust.crl_problems() {
        warn!("{problem}; messages from its signers are not acked until it is fixed");
    }
}

/// Rebuilds the trust store on the blocking pool; a failure keeps the old one.
async fn reload_trust(trust: &TrustStore, changed_only: bool) {
    let t = trust.clone();
    let result = tokio::task::spawn_blocking(move || {
        if changed_only {
            t.reload_if_changed()
        } else {
            t.reload().map(Some)
        }
    })
    .await;
    match result {
        Ok(Ok(Some(counts))) => {
            info!(cas = counts.cas, crls = counts.crls, "trust store reloaded");
            warn_crl_problems(trust);
        }
        Ok(Ok(None)) => {}
        Ok(Err(err)) => error!("keeping the previous trust store: {err}"),
        Err(err) => error!("keeping the previous trust store: the reload task failed: {err}"),
    }
}

/// Checks the CA directory every [`TRUST_POLL`] and rebuilds the store when it changed.
fn poll_trust(trust: TrustStore, shutdown: tokio_util::sync::CancellationToken) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(TRUST_POLL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tick.tick() => reload_trust(&trust, true).await,
            }
        }
    });
}

/// On SIGHUP: reopens the log file (logrotate), rebuilds the trust store, then re-reads the
/// allowed-DN file; a DN file that is not whole (see [`DnFile`]) keeps the old list, a trust
/// store or log file that cannot be rebuilt or reopened keeps the old one.
fn on_sighup(mut file: DnFile, dns: Arc<RwLock<DnList>>, trust: TrustStore) -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hup = signal(SignalKind::hangup()).context("cannot watch SIGHUP")?;
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            common::reopen_log();
            reload_trust(&trust, false).await;
            let current = dns.read().map(|d| d.clone()).unwrap_or_default();
            let reread = tokio::task::spawn_blocking(move || {
                let result = file.reload(&current);
                (file, result)
            })
            .await;
            let (back, result) = match reread {
                Ok(pair) => pair,
                Err(err) => {
                    error!("SIGHUP: the DN reload task failed: {err}; stopping DN reloads");
                    return;
                }
            };
            file = back;
            match result {
                Ok(list) => {
                    info!(count = list.len(), file = %file.path().display(), "allowed DNs loaded");
                    if let Ok(mut d) = dns.write() {
                        *d = list;
                    }
                }
                Err(err) => error!("SIGHUP: keeping the old DN list: {err}"),
            }
        }
    });
    Ok(())
}
