//! `ssm receive`: take messages off the broker, verify and store them (see
//! [`crate::receiver`]).
//!
//! Around the receiver itself this runs what a production daemon needs: the PID file, the
//! systemd notifications (`READY=1` only once subscribed, `STOPPING=1`, watchdog pings), the
//! optional metrics endpoint, and SIGHUP (re-read the allowed-DN file, reopen the log file).

use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::Context;
use tracing::{info, warn};

use super::common;
use crate::config::{Loadable, ReceiverConfig, ReceiverOverrides};
use crate::crypto::{DnList, Opener, TrustStore};
use crate::ops::metrics::{self, ReceiverMetrics};
use crate::ops::notify::Notifier;
use crate::receiver::{self, Control, ReceiverSettings, Stats};

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
    let dns = load_dns(&cfg.dn_file)?;
    let cert_pem = String::from_utf8(identity.cert.to_pem()?)?;
    let client = common::client_config(
        &cfg.broker,
        (cfg.capath.as_deref(), cfg.cafile.as_deref()),
        (&cfg.certificate, &cfg.key),
    )?;
    let dns = Arc::new(RwLock::new(dns));
    let settings = ReceiverSettings {
        client,
        destination: cfg.destination.clone(),
        opener: Opener::new(identity, trust),
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
        on_sighup(cfg.dn_file.clone(), dns)?;
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
        "received {}, stored {}, duplicates {}, rejected {}, store failures {}",
        Stats::get(&stats.received),
        Stats::get(&stats.stored),
        Stats::get(&stats.duplicates),
        Stats::get(&stats.rejected),
        Stats::get(&stats.store_failures),
    );
    info!("{line}");
    eprintln!("ssm receive: {line}");
    Ok(())
}

fn load_dns(path: &std::path::Path) -> anyhow::Result<DnList> {
    let dns = DnList::load(path).with_context(|| format!("allowed-DN file {}", path.display()))?;
    info!(count = dns.len(), file = %path.display(), "allowed DNs loaded");
    Ok(dns)
}

/// On SIGHUP: reopens the log file (logrotate) and re-reads the allowed-DN file; a broken DN
/// file keeps the old list, a log file that cannot be reopened keeps the old one.
fn on_sighup(path: std::path::PathBuf, dns: Arc<RwLock<DnList>>) -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hup = signal(SignalKind::hangup()).context("cannot watch SIGHUP")?;
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            common::reopen_log();
            match load_dns(&path) {
                Ok(list) => {
                    if let Ok(mut d) = dns.write() {
                        *d = list;
                    }
                }
                Err(err) => warn!("SIGHUP: keeping the old DN list: {err:#}"),
            }
        }
    });
    Ok(())
}
