//! An embedded, in-memory STOMP 1.0–1.2 broker for tests, demos and single-machine use.
//!
//! **Not durable**: everything lives in memory and is lost when the broker stops. Production
//! deployments use ActiveMQ or RabbitMQ; this broker exists so that `ssm` can be tested end to
//! end, demonstrated, and run on one machine without installing one. It is built on the same
//! frame codec as the client ([`crate::stomp::StompCodec`]) and knows nothing of SSM.
//!
//! It behaves enough like the real brokers that the SSM sender and receiver (which adapt to the
//! broker kind, detected from the `server` header of CONNECTED: `ssm-broker/<version>`) work
//! against it unchanged: topics fan out and drop messages nobody listens to, queues keep
//! messages until consumed and let consumers compete, and temporary reply queues work in both
//! the ActiveMQ style (explicit SUBSCRIBE) and the RabbitMQ style (implicit, through
//! `reply-to`). See `docs/broker.md` for the full semantics.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! let cfg = ssm::broker::BrokerConfig {
//!     listen: "127.0.0.1:0".parse().unwrap(),
//!     ..Default::default()
//! };
//! let broker = ssm::broker::start(cfg).await?;
//! println!("STOMP on {}", broker.local_addr());
//! broker.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! Guarantees: the broker never panics on input; memory held in messages and in their copies
//! waiting for slow consumers is bounded by [`BrokerConfig::max_queued_bytes`] (each copy of a
//! topic message is charged, not only the message), connections by
//! [`BrokerConfig::max_connections`], subscriptions per connection by
//! [`BrokerConfig::max_subscriptions`], and topic copies waiting for one connection by
//! [`BrokerConfig::max_outstanding`] (a connection that stays at it for
//! [`BrokerConfig::slow_consumer_timeout`] is cut off). A connection that does not send CONNECT
//! within [`BrokerConfig::connect_timeout`], leaves a frame unfinished for
//! [`BrokerConfig::frame_timeout`], or (without heart-beats) stays idle for
//! [`BrokerConfig::idle_timeout`] is closed, so silent connections cannot hold every slot.

mod message;
mod router;
mod session;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::SinkExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::codec::FramedWrite;

pub use router::{temp_queue_key, RouterLimits, REMOTE_TEMP_QUEUE, TEMP_QUEUE};

use self::message::ByteBudget;
use self::router::Router;
use crate::stomp::vocab::header;
use crate::stomp::{Command, Frame, Item, Limits, StompCodec};

/// The value of the `server` header in CONNECTED.
pub const SERVER: &str = concat!("ssm-broker/", env!("CARGO_PKG_VERSION"));

/// How an embedded broker listens and what it bounds.
#[derive(Clone, Debug)]
pub struct BrokerConfig {
    /// Where to listen (default `127.0.0.1:61613`; port 0 picks a free port).
    pub listen: SocketAddr,
    /// Most simultaneous connections (default 1024). A connection beyond it is sent an ERROR
    /// frame saying `too many connections` and closed.
    pub max_connections: usize,
    /// Most bytes held in messages across the broker — queued, delivered but unacknowledged, or
    /// delivered but not yet written to a slow consumer (default 256 MiB). A SEND that would
    /// exceed it is answered with an ERROR (carrying its `receipt-id` if it asked for a
    /// receipt) and not queued; the connection stays open.
    pub max_queued_bytes: usize,
    /// Frame decoding limits (default: the codec's defaults with bodies up to 64 MiB).
    pub limits: Limits,
    /// The heart-beats the broker offers `(can send every, wants to receive every)`; default
    /// 10 s each. Zero disables that direction.
    pub heartbeat: (Duration, Duration),
    /// Most subscriptions one connection may hold (default 256); a SUBSCRIBE beyond it is
    /// answered with an ERROR and the connection closed.
    pub max_subscriptions: usize,
    /// Most copies of topic messages waiting to be written to one connection or acknowledged
    /// by it (default 1000). Beyond it the connection is a slow consumer: topic messages are
    /// dropped for it (not for other subscribers) until it catches up.
    pub max_outstanding: usize,
    /// How long a connection may stay a slow consumer before it is cut off (default 30 s).
    pub slow_consumer_timeout: Duration,
    /// How long a new connection may take to send CONNECT (default 30 s).
    pub connect_timeout: Duration,
    /// How long a frame may take from its first byte to its last (default 120 s).
    pub frame_timeout: Duration,
    /// How long a connection that negotiated no heart-beats from the client may stay without
    /// a byte read from it or a message written to it (default 600 s). Connections with
    /// heart-beats are closed after two missed heart-beat periods instead.
    pub idle_timeout: Duration,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 61613)),
            max_connections: 1024,
            max_queued_bytes: 256 * 1024 * 1024,
            limits: Limits {
                max_body: 64 * 1024 * 1024,
                ..Limits::default()
            },
            heartbeat: (Duration::from_secs(10), Duration::from_secs(10)),
            max_subscriptions: RouterLimits::default().max_subscriptions,
            max_outstanding: RouterLimits::default().max_outstanding,
            slow_consumer_timeout: RouterLimits::default().slow_consumer_timeout,
            connect_timeout: Duration::from_secs(30),
            frame_timeout: Duration::from_secs(120),
            idle_timeout: Duration::from_secs(600),
        }
    }
}

/// State shared by all connections of one broker.
pub(crate) struct Shared {
    config: BrokerConfig,
    router: Mutex<Router>,
    budget: Arc<ByteBudget>,
    next_session: AtomicU64,
    /// Random per broker instance, so session names (and the temp queue names built from them)
    /// are not reused by a restarted broker.
    nonce: String,
}

impl Shared {
    fn router(&self) -> MutexGuard<'_, Router> {
        // A panic while holding the lock would be a bug; the data stays usable, so carry on.
        self.router.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A running broker. Dropping it stops the broker, like [`BrokerHandle::shutdown`] without
/// waiting.
pub struct BrokerHandle {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for BrokerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BrokerHandle")
            .field("addr", &self.addr)
            .finish()
    }
}

impl BrokerHandle {
    /// The address the broker listens on (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Bytes currently held in messages (see [`BrokerConfig::max_queued_bytes`]).
    pub fn queued_bytes(&self) -> usize {
        self.shared.budget.used()
    }

    /// Messages waiting (not yet delivered) in a queue, by its full name (`/queue/x`, or the
    /// broker-wide name of a temp queue).
    pub fn queue_depth(&self, queue: &str) -> usize {
        self.shared.router().queue_depth(queue)
    }

    /// Stops accepting and closes every connection abruptly (no ERROR, no flush), then returns
    /// once all connection tasks have ended. Messages held are lost.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for BrokerHandle {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            // Dropping the accept task's JoinSet aborts every connection.
            task.abort();
        }
    }
}

/// Binds `cfg.listen` and serves STOMP on the current tokio runtime; returns at once.
pub async fn start(cfg: BrokerConfig) -> std::io::Result<BrokerHandle> {
    let listener = TcpListener::bind(cfg.listen).await?;
    let addr = listener.local_addr()?;
    let limits = RouterLimits {
        max_subscriptions: cfg.max_subscriptions,
        max_outstanding: cfg.max_outstanding,
        slow_consumer_timeout: cfg.slow_consumer_timeout,
    };
    let shared = Arc::new(Shared {
        budget: Arc::new(ByteBudget::new(cfg.max_queued_bytes)),
        config: cfg,
        router: Mutex::new(Router::new(limits)),
        next_session: AtomicU64::new(1),
        nonce: format!("{:08x}", rand::random::<u32>()),
    });
    let (stop, stopped) = oneshot::channel();
    let task = tokio::spawn(accept_loop(listener, shared.clone(), stopped));
    tracing::info!(%addr, "ssm-broker listening (in memory, not durable)");
    Ok(BrokerHandle {
        addr,
        stop: Some(stop),
        task: Some(task),
        shared,
    })
}

/// Most refused connections being sent their ERROR at once.
const MAX_REFUSING: usize = 64;

/// Counts live connections; the count drops when the connection task ends or is aborted.
struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut stopped: oneshot::Receiver<()>,
) {
    let mut conns = JoinSet::new();
    let live = Arc::new(AtomicUsize::new(0));
    let refusing = Arc::new(AtomicUsize::new(0));
    loop {
        tokio::select! {
            _ = &mut stopped => break,
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    if live.load(Ordering::Relaxed) >= shared.config.max_connections {
                        tracing::warn!(%peer, max = shared.config.max_connections, "too many connections; refusing");
                        // Explaining the refusal takes a task for a moment; under a flood of
                        // connections, stop explaining and just close them.
                        if refusing.load(Ordering::Relaxed) < MAX_REFUSING {
                            refusing.fetch_add(1, Ordering::Relaxed);
                            let slot = Slot(refusing.clone());
                            conns.spawn(async move {
                                let _slot = slot;
                                reject(stream).await;
                            });
                        }
                        continue;
                    }
                    live.fetch_add(1, Ordering::Relaxed);
                    let slot = Slot(live.clone());
                    let shared = shared.clone();
                    conns.spawn(async move {
                        let _slot = slot;
                        session::serve(stream, shared).await;
                    });
                }
                Err(e) => {
                    // Typically EMFILE: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
    drop(listener);
    conns.shutdown().await;
    tracing::info!("ssm-broker stopped");
}

/// Tells a connection beyond the limit why it is refused, then closes it.
async fn reject(stream: TcpStream) {
    let (rd, wr) = stream.into_split();
    let mut writer = FramedWrite::new(wr, StompCodec::default());
    let err = Frame::new(Command::Error)
        .with_header(header::MESSAGE, "too many connections")
        .with_body(&b"too many connections\n"[..]);
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        let _ = writer.send(&err).await;
        let _ = SinkExt::<Item>::close(&mut writer).await;
    })
    .await;
    drop(writer);
    session::drain(rd).await;
}
