//! `ssm bench`: end-to-end throughput, ack latency and memory (see [`crate::harness::bench`]).

use std::path::PathBuf;

use anyhow::{bail, Context};

use crate::config::{Loadable, SenderConfig};
use crate::crypto::Cipher;
use crate::harness::bench::{self, BenchOptions, Mode, Transport};
use crate::protocol::Version;
use crate::stomp::BrokerAddr;

/// Which part of a benchmark this process plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Role {
    /// Runs the benchmark: broker, receiver and senders as child processes, then the report.
    Bench,
    /// Internal: the senders' child process (needs `--sender-config`).
    Senders,
}

/// Arguments of `ssm bench`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Concurrent senders, each with its own certificate, queue and connection.
    #[arg(long, default_value_t = 1)]
    pub senders: usize,
    /// Messages each sender sends.
    #[arg(long, default_value_t = 300)]
    pub messages: usize,
    /// Size of each message: bytes, or with a k/M suffix (1k, 10k, 100k, 1M; k = 1024).
    #[arg(long, default_value = "10k", value_parser = bench::parse_size)]
    pub size: usize,
    /// Envelope cipher: des3, aes128, aes192 or aes256.
    #[arg(long, default_value = "aes128")]
    pub cipher: Cipher,
    /// What carries the messages: `stomp` (the embedded broker, or --broker) or `ams` (SSM2
    /// through `ssm ams-server` in this process; implies --ssm-version 2).
    #[arg(long, value_enum, default_value = "stomp", conflicts_with = "broker")]
    pub transport: Transport,
    /// Use this broker instead of starting the embedded one.
    #[arg(long, value_name = "HOST:PORT")]
    pub broker: Option<BrokerAddr>,
    /// Broker login (real brokers).
    #[arg(long, default_value = "guest", requires = "broker")]
    pub login: Option<String>,
    /// Broker passcode (real brokers).
    #[arg(long, default_value = "guest", requires = "broker")]
    pub passcode: Option<String>,
    /// The destination [default: /topic/ssm.bench for v1; /queue/ssm.bench for SSM2, as a
    /// topic keeps nothing for a receiver that is not subscribed or lags behind; over AMS the
    /// topic ssm-bench, with its subscription ssm-bench-sub].
    #[arg(long)]
    pub destination: Option<String>,
    /// The protocol the senders speak: 1 (each message acked by the receiver) or 2 (SSM2: each
    /// confirmed by the broker's receipt, many in flight). The receiver takes both. [default:
    /// 1; 2 over AMS]
    #[arg(long, value_name = "N", value_parser = crate::config::values::parse_ssm_version)]
    pub ssm_version: Option<Version>,
    /// SSM2: messages each sender has waiting for their broker receipt at once.
    #[arg(long, default_value_t = crate::config::DEFAULT_WINDOW)]
    pub window: u32,
    /// What is timed: `live` (senders and receiver together, from the first send to the last
    /// ack) or `drain` (SSM2: the senders fill a queue first, then the receiver is started and
    /// timed until it has stored every message).
    #[arg(long, value_enum, default_value = "live")]
    pub mode: Mode,
    /// Where to put the PKI, queues and store (must be empty or absent) [default: a temporary
    /// directory, removed afterwards].
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Print only the JSON line.
    #[arg(long)]
    pub json: bool,
    /// Internal: which part this process plays.
    #[arg(long, value_enum, default_value = "bench", hide = true)]
    pub role: Role,
    /// Internal: one `sender.cfg` per sender (with `--role senders`; repeat the flag).
    #[arg(
        long,
        hide = true,
        value_name = "FILE",
        required_if_eq("role", "senders")
    )]
    pub sender_config: Vec<PathBuf>,
}

/// Runs `ssm bench`.
pub fn run(args: Args) -> anyhow::Result<()> {
    if args.role == Role::Senders {
        return senders(&args.sender_config);
    }
    crate::logging::init("warn", None, true)?;
    if args.size == 0 {
        bail!("--size must be at least 1 byte");
    }
    if args.messages == 0 || args.senders == 0 {
        bail!("--messages and --senders must be at least 1");
    }
    if args.window == 0 {
        bail!("--window must be at least 1");
    }
    let version = match (args.transport, args.ssm_version) {
        (Transport::Ams, Some(Version::V1)) => {
            bail!("--transport ams carries SSM2 only (--ssm-version 2)")
        }
        (Transport::Ams, _) => Version::V2,
        (Transport::Stomp, v) => v.unwrap_or(Version::V1),
    };
    if args.mode == Mode::Drain && version == Version::V1 {
        bail!("--mode drain needs --ssm-version 2: a v1 sender waits for the receiver's ack");
    }
    let destination = args.destination.unwrap_or_else(|| {
        match (args.transport, version) {
            (Transport::Ams, _) => "ssm-bench",
            (Transport::Stomp, Version::V1) => "/topic/ssm.bench",
            (Transport::Stomp, Version::V2) => "/queue/ssm.bench",
        }
        .to_string()
    });
    // The temporary directory lives until the end of the run; a given one is kept.
    let (dir, _temp) = match args.dir {
        Some(d) if !crate::harness::demo::usable_dir(&d) => bail!("{} is not empty", d.display()),
        Some(d) => (d, None),
        None => {
            let t = tempfile::Builder::new().prefix("ssm-bench-").tempdir()?;
            (t.path().to_path_buf(), Some(t))
        }
    };
    let opts = BenchOptions {
        dir: dir.clone(),
        senders: args.senders,
        messages: args.messages,
        size: args.size,
        cipher: args.cipher,
        login: args.broker.as_ref().and(args.login.zip(args.passcode)),
        broker: args.broker,
        destination,
        version,
        window: args.window,
        mode: args.mode,
        transport: args.transport,
        exe: std::env::current_exe().context("cannot find the ssm executable")?,
    };
    if !args.json {
        println!(
            "ssm bench: {} sender(s) x {} messages of {} bytes, cipher {}, SSM v{}, {} mode, to {}, in {}",
            opts.senders,
            opts.messages,
            opts.size,
            opts.cipher,
            match opts.version {
                Version::V1 => 1,
                Version::V2 => 2,
            },
            match opts.mode {
                Mode::Live => "live",
                Mode::Drain => "drain",
            },
            match opts.transport {
                Transport::Stomp => opts.destination.clone(),
                Transport::Ams => format!(
                    "AMS topic {} (subscription {}-sub) on ssm ams-server",
                    opts.destination, opts.destination
                ),
            },
            dir.display()
        );
    }
    let fs = crate::ops::filesystem::describe(&dir);
    if let Some(caution) = fs.caution() {
        eprintln!("note: {} is on {fs}: {caution}", dir.display());
    }
    let rt = tokio::runtime::Runtime::new()?;
    let report = rt.block_on(bench::run(opts))?;
    if !args.json {
        println!("{report}");
    }
    println!("{}", report.to_json());
    Ok(())
}

/// The `--role senders` child: every file through the loader `ssm send -c` uses, every sender
/// built as `ssm send` builds it (a single pass), then all of them run at once.
fn senders(configs: &[PathBuf]) -> anyhow::Result<()> {
    if configs.is_empty() {
        bail!("--role senders needs --sender-config");
    }
    let mut senders = Vec::with_capacity(configs.len());
    for (i, path) in configs.iter().enumerate() {
        let (cfg, warnings) = SenderConfig::load(path)?;
        if i == 0 {
            // The bench writes the same [logging] into every file.
            crate::setup::init_logging(&cfg.common.logging)?;
        }
        for w in warnings {
            tracing::warn!("{}: {w}", path.display());
        }
        let sender = crate::setup::start_sender(&cfg, false)
            .with_context(|| format!("sender of {}", path.display()))?
            .into_sender();
        senders.push(sender);
    }
    bench::senders_main(senders)
}
