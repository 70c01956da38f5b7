//! `ssm send`: ship the outgoing queue to the receiver (see [`crate::sender`]).

use std::time::Duration;

use anyhow::{bail, Context};
use tracing::{info, warn};

use super::common;
use crate::config::{SenderConfig, SenderOverrides};
use crate::crypto::{self, TrustStore};
use crate::queue::{Dirq, Outgoing};
use crate::sender::{Sender, SenderSettings};

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
    let identity = common::load_identity(&cfg.certificate, &cfg.key)?;
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
    let client = common::client_config(
        &cfg.broker,
        (cfg.capath.as_deref(), cfg.cafile.as_deref()),
        (&cfg.certificate, &cfg.key),
    )?;
    let settings = SenderSettings {
        client,
        kind: cfg.broker.kind,
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
    let mut sender = Sender::new(settings, outgoing, reject);
    let rt = tokio::runtime::Runtime::new()?;
    let summary = rt.block_on(async {
        if args.o.daemon {
            let shutdown = common::shutdown_on_signals()?;
            Ok::<_, anyhow::Error>(sender.run_daemon(shutdown, Duration::from_secs(1)).await?)
        } else {
            Ok(sender.run_once().await?)
        }
    })?;
    info!("{summary}");
    eprintln!("ssm send: {summary}");
    Ok(())
}
