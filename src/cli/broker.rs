//! `ssm broker`: runs the embedded in-memory STOMP broker ([`crate::broker`]) until SIGINT or
//! SIGTERM. Not durable: for tests, demos and single-machine use.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;

use crate::broker::{self, BrokerConfig};

/// Arguments of `ssm broker`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Address to listen on (port 0 picks a free port, logged at start).
    #[arg(long, default_value = "127.0.0.1:61613")]
    pub listen: SocketAddr,
    /// Most simultaneous connections; more are sent an ERROR and closed.
    #[arg(long, default_value_t = 1024)]
    pub max_connections: usize,
    /// Most bytes held in messages (queued, unacknowledged or unwritten); a SEND beyond it is
    /// refused with an ERROR.
    #[arg(long, default_value_t = 256 * 1024 * 1024)]
    pub max_queued_bytes: usize,
    /// Largest frame body accepted, in bytes; a larger frame is answered with an ERROR and the
    /// connection closed.
    #[arg(long, default_value_t = 64 * 1024 * 1024)]
    pub max_frame_size: usize,
    /// Heart-beat period the broker offers in both directions, in milliseconds (0 disables).
    #[arg(long, default_value_t = 10_000)]
    pub heartbeat_ms: u64,
    /// Most subscriptions per connection; a SUBSCRIBE beyond it is refused with an ERROR.
    #[arg(long, default_value_t = 256)]
    pub max_subscriptions: usize,
    /// Most copies of topic messages waiting to be written to one connection or acknowledged
    /// by it; beyond it topic messages are dropped for that (slow) consumer only.
    #[arg(long, default_value_t = 1000)]
    pub max_outstanding: usize,
    /// Seconds a consumer may stay slow (at --max-outstanding) before it is cut off.
    #[arg(long, default_value_t = 30)]
    pub slow_consumer_timeout_secs: u64,
    /// Seconds a new connection may take to send CONNECT.
    #[arg(long, default_value_t = 30)]
    pub connect_timeout_secs: u64,
    /// Seconds a frame may take from its first byte to its last.
    #[arg(long, default_value_t = 120)]
    pub frame_timeout_secs: u64,
    /// Seconds a connection without client heart-beats may stay idle (nothing read from it,
    /// nothing written to it) before it is closed.
    #[arg(long, default_value_t = 600)]
    pub idle_timeout_secs: u64,
}

/// Runs `ssm broker`.
pub fn run(args: Args) -> anyhow::Result<()> {
    crate::logging::init_stderr();

    let mut cfg = BrokerConfig {
        listen: args.listen,
        max_connections: args.max_connections,
        max_queued_bytes: args.max_queued_bytes,
        heartbeat: (
            Duration::from_millis(args.heartbeat_ms),
            Duration::from_millis(args.heartbeat_ms),
        ),
        max_subscriptions: args.max_subscriptions,
        max_outstanding: args.max_outstanding,
        slow_consumer_timeout: Duration::from_secs(args.slow_consumer_timeout_secs),
        connect_timeout: Duration::from_secs(args.connect_timeout_secs),
        frame_timeout: Duration::from_secs(args.frame_timeout_secs),
        idle_timeout: Duration::from_secs(args.idle_timeout_secs),
        ..BrokerConfig::default()
    };
    cfg.limits.max_body = args.max_frame_size;

    let rt = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    rt.block_on(async move {
        let handle = broker::start(cfg)
            .await
            .with_context(|| format!("cannot listen on {}", args.listen))?;
        tracing::info!(addr = %handle.local_addr(), "press Ctrl-C to stop; messages are kept in memory only");
        super::wait_for_signal().await?;
        tracing::info!("stopping");
        handle.shutdown().await;
        Ok(())
    })
}
