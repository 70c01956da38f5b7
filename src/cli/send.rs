//! `ssm send`: ship the outgoing queue to the receiver (see [`crate::sender`]).
//!
//! Once (a cron job or a systemd timer) or as a daemon (`--daemon`). Both honour the PID file;
//! the daemon also serves the optional metrics endpoint, tells systemd when it is up and
//! stopping, and reopens its log file on SIGHUP.

use std::time::Duration;

use tracing::{info, warn};

use crate::config::{Loadable, SenderConfig, SenderOverrides};
use crate::ops::metrics::{self, SenderMetrics};
use crate::ops::notify::Notifier;
use crate::sender::Sender;
use crate::setup;

/// Arguments of `ssm send`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    // pub(crate): `ssmsend`/`ssmreceive` (cli::dropin) run this command with their flags.
    pub(crate) o: SenderOverrides,
}

/// Runs `ssm send`.
pub fn run(args: Args) -> anyhow::Result<()> {
    let (cfg, warnings) = SenderConfig::resolve(&args.o)?;
    setup::init_logging(&cfg.common.logging)?;
    info!("ssm {} sender starting", env!("CARGO_PKG_VERSION"));
    for w in warnings {
        warn!("{w}");
    }
    let ready = setup::start_sender(&cfg, args.o.daemon)?;
    let cert_not_after = ready.cert_not_after;
    let _pidfile = ready.pidfile;
    let mut sender = Sender::new(ready.settings, ready.outgoing, ready.reject);
    let rt = tokio::runtime::Runtime::new()?;
    let notifier = Notifier::from_env();
    let summary = rt.block_on(async {
        if args.o.daemon {
            let shutdown = setup::shutdown_on_signals()?;
            if let Some(addr) = &cfg.common.daemon.metrics {
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
            setup::reopen_log_on_sighup()?;
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
