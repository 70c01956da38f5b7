//! `ssm check send|receive`: validate a configuration without starting.
//!
//! Takes exactly the flags of `ssm send` / `ssm receive` (so `ssm check send -c sender.cfg`
//! checks what `ssm send -c sender.cfg` would run with) and prints one line per check,
//! `OK   what: detail` or `FAIL what: reason`, then exits 1 if anything failed. The checks
//! are the start-up rules of [`crate::setup`], every one evaluated and reported, where
//! `ssm send` / `ssm receive` stop at the first that fails.
//!
//! The broker probe is harmless: it connects (TLS when configured), then SUBSCRIBEs to the
//! destination and UNSUBSCRIBEs, both with receipts, in `client-individual` mode without ever
//! acking, so that even on a queue destination nothing is consumed (an unacked message is
//! redelivered). Nothing is ever SENT: a probe message on the real topic would reach every
//! receiver. `--offline` skips the broker.
//!
//! With `protocol: AMS` the probe reads only: the certificate-for-token exchange when no
//! `[messaging] token` is set, then a `GET` of the topic (sender) or the subscription
//! (receiver). A refused token says to check the token or the host DN in GOCDB, a missing
//! topic or subscription to check `[messaging] destination`.

use std::path::Path;

use crate::config::{Loadable, ReceiverConfig, ReceiverOverrides, SenderConfig, SenderOverrides};
use crate::setup::{self, Checks, ReceiverRun};

pub use crate::setup::Report;

/// Arguments of `ssm check`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Which configuration.
    #[command(subcommand)]
    pub what: What,
}

/// The configurations `ssm check` knows.
#[derive(Debug, clap::Subcommand)]
pub enum What {
    /// Check a sender configuration (takes the flags of `ssm send`).
    Send(SendCheck),
    /// Check a receiver configuration (takes the flags of `ssm receive`).
    Receive(ReceiveCheck),
}

/// `ssm check send`.
#[derive(Debug, clap::Args)]
pub struct SendCheck {
    #[command(flatten)]
    o: SenderOverrides,
    /// Do not contact the broker.
    #[arg(long)]
    offline: bool,
}

/// `ssm check receive`.
#[derive(Debug, clap::Args)]
pub struct ReceiveCheck {
    #[command(flatten)]
    o: ReceiverOverrides,
    /// Do not contact the broker.
    #[arg(long)]
    offline: bool,
}

/// Runs `ssm check`.
pub fn run(args: Args) -> anyhow::Result<()> {
    let mut report = Report {
        echo: true,
        ..Report::default()
    };
    match args.what {
        What::Send(a) => {
            let origin = config_origin(&a.o.config, crate::config::DEFAULT_SENDER_CFG);
            if let Some((cfg, warnings)) =
                configuration(&mut report, SenderConfig::resolve(&a.o), origin)
            {
                warn_lines(&mut report, &warnings);
                report = check_sender(report, &cfg, a.o.daemon, a.offline)?;
            }
        }
        What::Receive(a) => {
            let origin = config_origin(&a.o.config, crate::config::DEFAULT_RECEIVER_CFG);
            if let Some((cfg, warnings)) =
                configuration(&mut report, ReceiverConfig::resolve(&a.o), origin)
            {
                warn_lines(&mut report, &warnings);
                report = check_receiver(report, &cfg, a.offline)?;
            }
        }
    }
    if report.failures > 0 {
        anyhow::bail!("{} check(s) failed", report.failures);
    }
    Ok(())
}

fn config_origin(given: &Option<std::path::PathBuf>, default: &str) -> String {
    match given {
        Some(p) => format!("{} loaded", p.display()),
        None if Path::new(default).exists() => format!("{default} loaded"),
        None => "from flags only".to_string(),
    }
}

/// Unknown or obsolete options: reported, not failed (the daemons only warn about them).
fn warn_lines(report: &mut Report, warnings: &[String]) {
    for w in warnings {
        report.ok("configuration warning", w);
    }
}

/// Reports every sender rule ([`setup::SENDER_RULES`]) for `cfg`; `daemon` is `--daemon`.
pub fn check_sender(
    report: Report,
    cfg: &SenderConfig,
    daemon: bool,
    offline: bool,
) -> anyhow::Result<Report> {
    let mut checks = Checks::check(report, offline);
    setup::sender(cfg, daemon, &mut checks)?;
    Ok(checks.into_report())
}

/// Reports every receiver rule ([`setup::RECEIVER_RULES`]) for `cfg`.
pub fn check_receiver(
    report: Report,
    cfg: &ReceiverConfig,
    offline: bool,
) -> anyhow::Result<Report> {
    let mut checks = Checks::check(report, offline);
    setup::receiver(cfg, ReceiverRun::default(), &mut checks)?;
    Ok(checks.into_report())
}

/// The `configuration` line: where it came from, or why it did not load.
fn configuration<T>(
    report: &mut Report,
    loaded: Result<T, crate::config::ConfigError>,
    origin: String,
) -> Option<T> {
    match loaded {
        Ok(v) => {
            report.ok("configuration", origin);
            Some(v)
        }
        Err(e) => {
            report.fail("configuration", e);
            None
        }
    }
}
