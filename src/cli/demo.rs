//! `ssm demo`: the README's first command (see [`crate::harness::demo`]).

use std::path::PathBuf;

use anyhow::bail;

use crate::config::SenderConfig;
use crate::crypto::Cipher;
use crate::harness::demo::{self, DemoOptions};
use crate::stomp::BrokerAddr;

/// Arguments of `ssm demo`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Messages each sender sends.
    #[arg(long, default_value_t = 100)]
    pub messages: usize,
    /// Senders running at once, each with its own certificate and queue.
    #[arg(long, default_value_t = 1)]
    pub senders: usize,
    /// Size of each message in bytes (at least 256).
    #[arg(long, default_value_t = 2048)]
    pub size: usize,
    /// Envelope cipher: des3, aes128, aes192 or aes256.
    #[arg(long, default_value = "des3")]
    pub cipher: Cipher,
    /// Use this broker instead of starting the embedded one.
    #[arg(long, value_name = "HOST:PORT")]
    pub broker: Option<BrokerAddr>,
    /// Broker login (real brokers).
    #[arg(long, default_value = "guest", requires = "broker")]
    pub login: Option<String>,
    /// Broker passcode (real brokers).
    #[arg(long, default_value = "guest", requires = "broker")]
    pub passcode: Option<String>,
    /// The topic.
    #[arg(long, default_value = "/topic/ssm.demo")]
    pub destination: String,
    /// Where to put the PKI and the queues (must be empty or absent) [default: a new
    /// temporary directory, kept afterwards].
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// The transport: stomp (the embedded broker or --broker) or ams (SSM2 through
    /// `ssm ams-server` in this process).
    #[arg(long, default_value = "stomp", value_parser = ["stomp", "ams"], conflicts_with = "broker")]
    pub transport: String,
    /// Log level (error, warn, info, debug).
    #[arg(long, default_value = "warn")]
    pub log_level: String,
}

/// Runs `ssm demo`.
pub fn run(args: Args) -> anyhow::Result<()> {
    crate::logging::init(&args.log_level, None, true)?;
    if args.size < 256 {
        bail!("--size must be at least 256 bytes");
    }
    if args.messages == 0 || args.senders == 0 {
        bail!("--messages and --senders must be at least 1");
    }
    let dir = match args.dir {
        Some(d) if !demo::usable_dir(&d) => bail!("{} is not empty", d.display()),
        Some(d) => d,
        None => demo::fresh_dir()?,
    };
    let opts = DemoOptions {
        dir: dir.clone(),
        messages: args.messages,
        senders: args.senders,
        size: args.size,
        cipher: args.cipher,
        login: args.broker.as_ref().and(args.login.zip(args.passcode)),
        broker: args.broker,
        destination: args.destination,
        ams: args.transport == "ams",
    };
    println!(
        "ssm demo: {} sender(s) x {} messages of {} bytes, cipher {}, in {}",
        opts.senders,
        opts.messages,
        opts.size,
        opts.cipher,
        dir.display()
    );
    let rt = tokio::runtime::Runtime::new()?;
    // The senders are built as `ssm send` builds them (a single pass).
    let build = |cfg: &SenderConfig| Ok(crate::setup::start_sender(cfg, false)?.into_sender());
    let report = rt.block_on(demo::run(opts, &build))?;
    println!("{report}");
    println!("every message was stored exactly once and acked");
    Ok(())
}
