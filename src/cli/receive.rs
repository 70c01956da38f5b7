//! `ssm receive`: take messages off the broker, verify and store them (see
//! [`crate::receiver`]).

use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::Context;
use tracing::{info, warn};

use super::common;
use crate::config::{ReceiverConfig, ReceiverOverrides};
use crate::crypto::{DnList, Opener, TrustStore};
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
    let identity = common::load_identity(&cfg.certificate, &cfg.key)?;
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
    let rt = tokio::runtime::Runtime::new()?;
    let stats = rt.block_on(async {
        let shutdown = common::shutdown_on_signals()?;
        reload_dns_on_sighup(cfg.dn_file.clone(), dns)?;
        let control = Control {
            shutdown,
            ready: None,
            stats: Arc::new(Stats::default()),
        };
        Ok::<_, anyhow::Error>(receiver::run(settings, control).await?)
    })?;
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

/// Re-reads the allowed-DN file on SIGHUP; a broken file keeps the old list.
fn reload_dns_on_sighup(path: std::path::PathBuf, dns: Arc<RwLock<DnList>>) -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hup = signal(SignalKind::hangup()).context("cannot watch SIGHUP")?;
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
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
