//! What the receiver re-reads while it runs: the trust store (on SIGHUP and when the CA
//! directory changes) and the allowed-DN list (on SIGHUP).
//!
//! Guarantees:
//! - The trust store follows `capath`/`cafile`: rebuilt on SIGHUP and whenever a hashed file
//!   changes (polled every [`TRUST_POLL`]); a failed rebuild keeps the store in use (logged as
//!   an error). Stale CRLs are warned about after each rebuild.
//! - A re-read allowed-DN list is used only when whole (see [`DnFile`]); otherwise the list in
//!   use is kept and the reason logged. On SIGHUP the log file is reopened, then the trust store
//!   is rebuilt, then the DN file is read, so "allowed DNs loaded" means all three are done.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::Context;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::crypto::{DnFile, DnList, TrustStore};

/// How often the CA directory is checked for changes.
pub const TRUST_POLL: Duration = Duration::from_secs(60);

/// The receiver's live trust store and DN list, with the file they are re-read from.
#[derive(Debug)]
pub struct Reloader {
    pub(super) dn_file: DnFile,
    pub(super) dns: Arc<RwLock<DnList>>,
    pub(super) trust: TrustStore,
}

impl Reloader {
    /// Watches SIGHUP and polls the CA directory until `shutdown`. Must be called inside a
    /// Tokio runtime.
    pub fn start(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        on_sighup(self.dn_file, self.dns, self.trust.clone())?;
        poll_trust(self.trust, shutdown);
        Ok(())
    }
}

/// Warns about every CA whose CRL is missing or stale.
pub(super) fn warn_crl_problems(trust: &TrustStore) {
    for problem in trust.crl_problems() {
        warn!("{problem}; messages from its signers are not acked until it is fixed");
    }
}

/// Reads the allowed-DN file at start-up.
pub(super) fn load_dns(file: &DnFile) -> anyhow::Result<DnList> {
    let path = file.path();
    let dns = file
        .load()
        .with_context(|| format!("allowed-DN file {}", path.display()))?;
    info!(count = dns.len(), file = %path.display(), "allowed DNs loaded");
    Ok(dns)
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
fn poll_trust(trust: TrustStore, shutdown: CancellationToken) {
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
            super::reopen_log();
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
