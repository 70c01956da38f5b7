//! `ssm receive`: take messages off the broker, verify and store them (see
//! [`crate::receiver`]).
//!
//! Around the receiver itself this runs what a production daemon needs: the PID file, the
//! systemd notifications (`READY=1` only once subscribed, `STOPPING=1`, watchdog pings), the
//! optional metrics endpoint, and SIGHUP (reopen the log file, rebuild the trust store, re-read
//! the allowed-DN file).
//!
//! The start-up rules, and what SIGHUP re-reads, are in [`crate::setup`].

use std::sync::Arc;
use std::time::Duration;

use tracing::{info, warn};

use crate::config::{Loadable, ReceiverConfig, ReceiverOverrides};
use crate::ops::metrics::{self, ReceiverMetrics};
use crate::ops::notify::Notifier;
use crate::receiver::{self, Control, Stats};
use crate::setup::{self, ReceiverRun};

/// Arguments of `ssm receive`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    // pub(crate): `ssmsend`/`ssmreceive` (cli::dropin) run this command with their flags.
    pub(crate) o: ReceiverOverrides,
}

/// Runs `ssm receive`.
pub fn run(args: Args) -> anyhow::Result<()> {
    let (cfg, warnings) = ReceiverConfig::resolve(&args.o)?;
    setup::init_logging(&cfg.common.logging)?;
    info!("ssm {} receiver starting", env!("CARGO_PKG_VERSION"));
    for w in warnings {
        warn!("{w}");
    }
    let run = ReceiverRun {
        max_messages: args.o.max_messages.map(|n| n.get()),
        run_for: args.o.for_secs.map(|s| Duration::from_secs(s.get())),
    };
    let ready = setup::start_receiver(&cfg, run)?;
    let _pidfile = ready.pidfile;
    let cert_not_after = ready.cert_not_after;
    let settings = ready.settings;
    let reloader = ready.reloader;
    let notifier = Notifier::from_env();
    let rt = tokio::runtime::Runtime::new()?;
    let result = rt.block_on(async {
        let shutdown = setup::shutdown_on_signals()?;
        let stats = Arc::new(Stats::default());
        if let Some(addr) = &cfg.common.daemon.metrics {
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
        reloader.start(shutdown.clone())?;
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
        // On a worker thread, not this one: the dispatcher, the lanes and the committer then
        // hand messages to each other within the runtime's workers (a task woken by a task of
        // the same worker runs there next), where from `block_on`'s thread every message
        // crossed threads twice more (measured with one sender: 2 of 28 context switches per
        // message on the main thread, and 3 more on the workers).
        let result = match tokio::spawn(receiver::run(settings, control)).await {
            Ok(result) => result,
            Err(join) if join.is_panic() => std::panic::resume_unwind(join.into_panic()),
            Err(join) => anyhow::bail!("the receiver's task ended: {join}"),
        };
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
