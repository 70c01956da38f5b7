//! One client connection: handshake, heart-beats, and dispatch of the client's frames.
//!
//! Each connection is one task. Inside it, a reader loop decodes the client's frames and acts on
//! them through the [`Router`], and a writer loop drains the connection's channel of [`Out`]
//! items (its own RECEIPTs and ERRORs, and deliveries other connections route to it), batching
//! writes and flushing when the channel is momentarily empty. Because both loops live in the
//! connection's task, aborting the task (broker shutdown) tears down the whole connection.
//!
//! Guarantees:
//! - Bad input never panics: any decoding error, unknown or out-of-place command, missing
//!   header or refused destination is answered with an ERROR frame whose `message` header says
//!   why, after which the connection is closed (the exception is a SEND refused because the
//!   broker's byte budget is exhausted: ERROR, message not queued, connection kept).
//! - Before the connection is closed after an ERROR, the socket is drained for a moment so the
//!   client reads the ERROR instead of a TCP reset.
//! - When the connection ends for any reason, the router forgets it (see
//!   [`Router::remove_session`]) even if the task is aborted.
//! - No connection holds its slot by saying nothing: it is closed when CONNECT does not come
//!   within `connect_timeout`, when a frame stays unfinished for `frame_timeout` after its
//!   first byte, when heart-beats from the client were negotiated and nothing came for two
//!   periods, and otherwise when nothing was read from it nor written to it for
//!   `idle_timeout`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use tokio::io::AsyncReadExt;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::mpsc::{self, UnboundedReceiver, UnboundedSender};
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_util::codec::{FramedRead, FramedWrite};
use tokio_util::sync::CancellationToken;

use super::message::Message;
use super::router::{AckMode, AckRef, Delivery, Out, RouteError, Router, SessionKey, TEMP_QUEUE};
use super::Shared;
use crate::stomp::vocab::{
    header, heart_beat_value, negotiate_heart_beats, parse_heart_beat, SUPPORTED_VERSIONS,
};
use crate::stomp::vocab::{negotiate_version, HeartBeats};
use crate::stomp::{Command, Frame, FrameError, Item, StompCodec, Version, Watched};

/// How long the writer may take to flush a final ERROR or RECEIPT.
const CLOSE_FLUSH_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the socket is drained after a final frame, so the client is not sent a TCP reset.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(1);
/// Most items written before a flush.
const WRITE_BATCH: usize = 64;
/// Bytes buffered for writing before the writer waits for the socket.
const WRITE_BUFFER: usize = 64 * 1024;
/// Most of its own frames (RECEIPTs, non-fatal ERRORs) a connection may have waiting to be
/// written; beyond it the broker stops reading from that client until it reads its answers.
const MAX_UNWRITTEN_REPLIES: usize = 1024;

/// Headers of a SEND that are not copied into the MESSAGE (they are the broker's to set, or
/// requests to the broker, like `receipt`).
const DROPPED_HEADERS: &[&str] = &[
    header::DESTINATION,
    header::CONTENT_LENGTH,
    header::RECEIPT,
    header::TRANSACTION,
    header::MESSAGE_ID,
    header::SUBSCRIPTION,
    header::ACK,
    header::REDELIVERED,
];

type Reader = FramedRead<Watched<OwnedReadHalf>, StompCodec>;

/// When the writer last wrote frames to the client (heart-beats excepted).
struct Activity {
    start: Instant,
    last_write_ms: AtomicU64,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            start: Instant::now(),
            last_write_ms: AtomicU64::new(0),
        }
    }

    fn wrote(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_write_ms.store(ms, Ordering::Relaxed);
    }

    fn last_write(&self) -> Instant {
        self.start + Duration::from_millis(self.last_write_ms.load(Ordering::Relaxed))
    }
}
type Writer = FramedWrite<OwnedWriteHalf, StompCodec>;

/// Removes the connection from the router when dropped, including when the task is aborted.
struct Registration {
    shared: Arc<Shared>,
    key: SessionKey,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.shared.router().remove_session(self.key);
    }
}

/// How the reader loop ended.
#[derive(Debug, PartialEq, Eq)]
enum End {
    /// The client closed the connection or the socket failed.
    Gone,
    /// A final frame (ERROR or RECEIPT) and a close request were queued for the writer.
    Closing,
    /// The client stayed silent longer than heart-beats allow.
    Silent,
    /// The router cut the connection off as a slow consumer.
    SlowConsumer,
}

/// Negotiates heart-beats from the client's `heart-beat: cx,cy` and the broker's offer `(sx, sy)`.
pub(crate) fn negotiate_heartbeats(
    header: Option<&str>,
    offer: (Duration, Duration),
) -> Result<HeartBeats, String> {
    let theirs = match header {
        None => (Duration::ZERO, Duration::ZERO),
        Some(h) => {
            parse_heart_beat(h).ok_or_else(|| format!("malformed heart-beat header {h:?}"))?
        }
    };
    Ok(negotiate_heart_beats(offer, theirs))
}

/// An ERROR frame saying `message`, answering `cause` (so it carries its `receipt-id`).
fn error_frame(message: &str, cause: Option<&Frame>) -> Frame {
    // Header values cannot carry line breaks in STOMP 1.0.
    let line: String = message
        .chars()
        .map(|c| if c == '\n' || c == '\r' { ' ' } else { c })
        .collect();
    let mut f = Frame::new(Command::Error)
        .with_header(header::MESSAGE, line)
        .with_header(header::CONTENT_TYPE, "text/plain");
    if let Some(r) = cause.and_then(|c| c.header(header::RECEIPT)) {
        f = f.with_header(header::RECEIPT_ID, r);
    }
    f.with_body(format!("{message}\n"))
}

fn receipt_frame(id: &str) -> Frame {
    Frame::new(Command::Receipt).with_header(header::RECEIPT_ID, id)
}

/// Serves one accepted connection until it ends.
pub(crate) async fn serve(stream: TcpStream, shared: Arc<Shared>) {
    let peer = stream.peer_addr().ok();
    let _ = stream.set_nodelay(true);
    let limits = shared.config.limits;
    let (rd, wr) = stream.into_split();
    let mut reader = FramedRead::new(Watched::new(rd), StompCodec::new(limits));
    let mut writer = FramedWrite::new(wr, StompCodec::new(limits));
    // Let a batch of frames build up before the sink insists on writing (one flush per batch).
    writer.set_backpressure_boundary(WRITE_BUFFER);

    let handshake = shared.config.connect_timeout;
    let connect = match tokio::time::timeout(handshake, next_frame(&mut reader)).await {
        Err(_) => {
            tracing::debug!(?peer, "no CONNECT in time; closing");
            return;
        }
        Ok(Ok(Some(f))) => f,
        Ok(Ok(None)) => return,
        Ok(Err(e)) => return refuse(reader, writer, error_frame(&e.to_string(), None)).await,
    };
    if !matches!(connect.command, Command::Connect | Command::Stomp) {
        let msg = format!("expected CONNECT or STOMP, got {}", connect.command);
        return refuse(reader, writer, error_frame(&msg, Some(&connect))).await;
    }
    let Some(version) = negotiate_version(connect.header(header::ACCEPT_VERSION)) else {
        let err = error_frame("unsupported version", Some(&connect))
            .with_header(header::VERSION, SUPPORTED_VERSIONS);
        return refuse(reader, writer, err).await;
    };
    let hb = match negotiate_heartbeats(connect.header(header::HEART_BEAT), shared.config.heartbeat)
    {
        Ok(hb) => hb,
        Err(e) => return refuse(reader, writer, error_frame(&e, Some(&connect))).await,
    };

    let key = shared.next_session.fetch_add(1, Ordering::Relaxed);
    let name: Arc<str> = Arc::from(format!("{}-{key}", shared.nonce));
    let offer = shared.config.heartbeat;
    let connected = Frame::new(Command::Connected)
        .with_header(header::VERSION, version.as_str())
        .with_header(header::HEART_BEAT, heart_beat_value(offer))
        .with_header(header::SESSION, &*name)
        .with_header(
            header::SERVER,
            concat!("ssm-broker/", env!("CARGO_PKG_VERSION")),
        );
    if writer.send(&connected).await.is_err() {
        return;
    }
    reader.decoder_mut().set_version(version);
    writer.encoder_mut().set_version(version);
    tracing::debug!(?peer, session = %name, version = version.as_str(), "connected");

    let (tx, rx) = mpsc::unbounded_channel();
    let cut = CancellationToken::new();
    shared
        .router()
        .add_session(key, name.clone(), tx.clone(), cut.clone());
    let registration = Registration {
        shared: shared.clone(),
        key,
    };
    let replies = Arc::new(Semaphore::new(MAX_UNWRITTEN_REPLIES));
    let mut ctx = Ctx {
        shared: &shared,
        key,
        name: &name,
        version,
        tx,
        replies: replies.clone(),
        next_msg: 1,
    };

    let end = {
        let activity = Activity::new();
        let rfut = ctx.read_loop(&mut reader, hb.expect, &activity);
        let wfut = write_loop(&mut writer, rx, hb.send, &replies, &activity);
        tokio::pin!(rfut, wfut);
        tokio::select! {
            end = &mut rfut => {
                if end == End::Closing {
                    let _ = tokio::time::timeout(CLOSE_FLUSH_TIMEOUT, &mut wfut).await;
                }
                end
            }
            _ = &mut wfut => End::Gone,
            // The router logged why; what is waiting for this consumer goes with it.
            _ = cut.cancelled() => End::SlowConsumer,
        }
    };
    drop(registration);
    tracing::debug!(?peer, session = %name, ?end, "connection ended");
    if end == End::Closing {
        drop(writer);
        drain(reader.into_inner().into_inner()).await;
    }
}

/// Reads the next frame, skipping heart-beats.
async fn next_frame(reader: &mut Reader) -> Result<Option<Frame>, FrameError> {
    loop {
        match reader.next().await {
            None => return Ok(None),
            Some(Err(e)) => return Err(e),
            // The broker's codec never skips frames, so `Oversized` does not occur.
            Some(Ok(Item::HeartBeat | Item::Oversized(_))) => continue,
            Some(Ok(Item::Frame(f))) => return Ok(Some(f)),
        }
    }
}

/// Answers a connection that failed its handshake with `error` and closes it.
async fn refuse(reader: Reader, mut writer: Writer, error: Frame) {
    tracing::debug!(message = ?error.header(header::MESSAGE), "refusing connection");
    let _ = tokio::time::timeout(CLOSE_FLUSH_TIMEOUT, async {
        let _ = writer.send(&error).await;
        let _ = SinkExt::<Item>::close(&mut writer).await;
    })
    .await;
    drop(writer);
    drain(reader.into_inner().into_inner()).await;
}

/// Reads and discards what the client still sends, until it closes or a moment passed, so that
/// closing the socket does not reset the connection before the client read our last frame.
pub(crate) async fn drain(mut rd: impl tokio::io::AsyncRead + Unpin) {
    let mut buf = vec![0u8; 16 * 1024];
    let _ = tokio::time::timeout(DRAIN_TIMEOUT, async {
        while let Ok(n) = rd.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
}

/// Writes what the connection's channel carries until told to close or the socket fails.
async fn write_loop(
    writer: &mut Writer,
    mut rx: UnboundedReceiver<Out>,
    heartbeat: Option<Duration>,
    replies: &Semaphore,
    activity: &Activity,
) -> Result<(), FrameError> {
    loop {
        let next = match heartbeat {
            Some(every) => match tokio::time::timeout(every, rx.recv()).await {
                Ok(next) => next,
                Err(_) => {
                    writer.send(Item::HeartBeat).await?;
                    continue;
                }
            },
            None => rx.recv().await,
        };
        let Some(mut out) = next else {
            return SinkExt::<Item>::close(writer).await;
        };
        let mut written = 0;
        loop {
            let item = match out {
                Out::Close => {
                    SinkExt::<Item>::flush(writer).await?;
                    return SinkExt::<Item>::close(writer).await;
                }
                Out::Frame(f) => {
                    replies.add_permits(1);
                    Item::Frame(f)
                }
                Out::Deliver(d) => Item::Frame(message_frame(d)),
            };
            match writer.feed(item).await {
                Ok(()) => {}
                Err(FrameError::Unencodable(h)) => {
                    // A 1.2 sender's header value holds a line break that this 1.0 consumer
                    // cannot receive; skip the message rather than drop the connection.
                    tracing::warn!(header = %h, "message not deliverable in STOMP 1.0; skipped");
                }
                Err(e) => return Err(e),
            }
            written += 1;
            if written >= WRITE_BATCH {
                break;
            }
            match rx.try_recv() {
                Ok(o) => out = o,
                Err(_) => break,
            }
        }
        SinkExt::<Item>::flush(writer).await?;
        activity.wrote();
    }
}

/// The MESSAGE frame for one delivery.
fn message_frame(d: Delivery) -> Frame {
    let mut headers = Vec::with_capacity(5 + d.msg.headers.len());
    headers.push((header::DESTINATION.to_string(), d.destination.to_string()));
    headers.push((header::MESSAGE_ID.to_string(), d.msg.id.clone()));
    headers.push((header::SUBSCRIPTION.to_string(), d.subscription.to_string()));
    if let Some(ack) = d.ack {
        headers.push((header::ACK.to_string(), ack.to_string()));
    }
    if d.redelivered {
        headers.push((header::REDELIVERED.to_string(), "true".to_string()));
    }
    headers.extend(d.msg.headers.iter().cloned());
    Frame {
        command: Command::Message,
        headers,
        body: d.msg.body.clone(),
    }
}

/// A refused frame: what to tell the client, and whether to close the connection.
struct Refusal {
    message: String,
    close: bool,
}

impl Refusal {
    fn fatal(message: impl Into<String>) -> Refusal {
        Refusal {
            message: message.into(),
            close: true,
        }
    }
}

impl From<RouteError> for Refusal {
    fn from(e: RouteError) -> Refusal {
        Refusal::fatal(e.to_string())
    }
}

/// The state of one connected session that the reader loop needs.
struct Ctx<'a> {
    shared: &'a Arc<Shared>,
    key: SessionKey,
    name: &'a Arc<str>,
    version: Version,
    tx: UnboundedSender<Out>,
    /// Bounds this connection's own unwritten frames (see [`MAX_UNWRITTEN_REPLIES`]).
    replies: Arc<Semaphore>,
    next_msg: u64,
}

impl Ctx<'_> {
    fn router(&self) -> std::sync::MutexGuard<'_, Router> {
        self.shared.router()
    }

    /// Queues one of the connection's own frames, waiting (and so not reading from the client)
    /// while too many are still unwritten.
    async fn reply(&self, frame: Frame) {
        if let Ok(permit) = self.replies.acquire().await {
            // The writer gives the permit back once the frame is written.
            permit.forget();
        }
        let _ = self.tx.send(Out::Frame(frame));
    }

    /// Queues the final frame and a close request, after removing the connection from the
    /// router so that nothing more is delivered to it.
    fn finish(&self, last: Frame) -> End {
        self.router().remove_session(self.key);
        let _ = self.tx.send(Out::Frame(last));
        let _ = self.tx.send(Out::Close);
        End::Closing
    }

    async fn read_loop(
        &mut self,
        reader: &mut Reader,
        expect: Option<Duration>,
        activity: &Activity,
    ) -> End {
        let config = &self.shared.config;
        // Wake this often at least, so that a frame begun during a long wait is timed.
        let check = (config.frame_timeout / 4).max(Duration::from_millis(10));
        loop {
            let next = loop {
                let w = reader.get_ref();
                let (mut deadline, mut why) = match expect {
                    Some(every) => (w.last_read + every * 2, "no heart-beat from client"),
                    None => (
                        w.last_read.max(activity.last_write()) + config.idle_timeout,
                        "idle connection without heart-beats",
                    ),
                };
                if let Some(since) = w.pending_since {
                    if since + config.frame_timeout < deadline {
                        deadline = since + config.frame_timeout;
                        why = "frame left unfinished";
                    }
                }
                let now = Instant::now();
                if now >= deadline {
                    tracing::info!(session = %self.name, reason = why, "closing");
                    return End::Silent;
                }
                if let Ok(n) =
                    tokio::time::timeout_at(deadline.min(now + check), reader.next()).await
                {
                    break n;
                }
            };
            // Bytes left over belong to a frame that starts now.
            let rest = !reader.read_buffer().is_empty();
            reader.get_mut().pending_since = rest.then(Instant::now);
            let frame = match next {
                None => return End::Gone,
                Some(Err(FrameError::Io(e))) => {
                    tracing::debug!(session = %self.name, error = %e, "read failed");
                    return End::Gone;
                }
                Some(Err(e)) => {
                    tracing::info!(session = %self.name, error = %e, "malformed frame; closing");
                    return self.finish(error_frame(&e.to_string(), None));
                }
                Some(Ok(Item::HeartBeat | Item::Oversized(_))) => continue,
                Some(Ok(Item::Frame(f))) => f,
            };
            if frame.command == Command::Disconnect {
                tracing::debug!(session = %self.name, "disconnect");
                return match frame.header(header::RECEIPT) {
                    Some(r) => self.finish(receipt_frame(r)),
                    None => End::Gone,
                };
            }
            match self.handle(&frame) {
                Ok(()) => {
                    if let Some(r) = frame.header(header::RECEIPT) {
                        self.reply(receipt_frame(r)).await;
                    }
                }
                Err(refusal) if refusal.close => {
                    tracing::info!(session = %self.name, reason = %refusal.message, "refusing frame; closing");
                    return self.finish(error_frame(&refusal.message, Some(&frame)));
                }
                Err(refusal) => {
                    self.reply(error_frame(&refusal.message, Some(&frame)))
                        .await;
                }
            }
        }
    }

    fn handle(&mut self, frame: &Frame) -> Result<(), Refusal> {
        match frame.command {
            Command::Send => self.send(frame),
            Command::Subscribe => {
                let dest = required(frame, header::DESTINATION)?;
                let id = frame.header(header::ID).unwrap_or(dest);
                let mode = match frame.header(header::ACK) {
                    None => AckMode::Auto,
                    Some(a) => AckMode::parse(a)
                        .ok_or_else(|| Refusal::fatal(format!("unknown ack mode {a:?}")))?,
                };
                // RabbitMQ's header, or ActiveMQ's; a value that is not a count means none.
                let prefetch = frame
                    .header("prefetch-count")
                    .or_else(|| frame.header("activemq.prefetchSize"))
                    .and_then(|v| v.trim().parse::<usize>().ok())
                    .filter(|n| *n > 0);
                Ok(self
                    .router()
                    .subscribe_with_prefetch(self.key, id, dest, mode, prefetch)?)
            }
            Command::Unsubscribe => {
                let id = match frame.header(header::ID) {
                    Some(id) => id,
                    None => required(frame, header::DESTINATION)?,
                };
                Ok(self.router().unsubscribe(self.key, id)?)
            }
            Command::Ack | Command::Nack => {
                let which = match (self.version, frame.header(header::ID)) {
                    (Version::V1_2, Some(id)) => AckRef::AckId(id),
                    _ => AckRef::MessageId(
                        required(frame, header::MESSAGE_ID)?,
                        frame.header(header::SUBSCRIPTION),
                    ),
                };
                let ack = frame.command == Command::Ack;
                if !self.router().ack(self.key, which, ack) {
                    // Late or repeated acks are harmless; real brokers differ here.
                    tracing::debug!(session = %self.name, ?which, "ack for no pending message; ignored");
                }
                Ok(())
            }
            Command::Begin | Command::Commit | Command::Abort => Err(Refusal::fatal(
                "transactions are not supported by ssm-broker",
            )),
            Command::Connect | Command::Stomp => Err(Refusal::fatal("already connected")),
            other => Err(Refusal::fatal(format!(
                "{other} is a server frame, not accepted from clients"
            ))),
        }
    }

    fn send(&mut self, frame: &Frame) -> Result<(), Refusal> {
        let dest = required(frame, header::DESTINATION)?;
        if frame.header(header::TRANSACTION).is_some() {
            return Err(Refusal::fatal(
                "transactions are not supported by ssm-broker",
            ));
        }
        let mut headers: Vec<(String, String)> = Vec::with_capacity(frame.headers.len());
        let mut reply_temp: Option<&str> = None;
        for (k, v) in &frame.headers {
            if DROPPED_HEADERS.contains(&k.as_str()) || headers.iter().any(|(h, _)| h == k) {
                continue; // the first of repeated headers wins, as on decoding
            }
            if k == header::REPLY_TO {
                if let Some(name) = v.strip_prefix(TEMP_QUEUE) {
                    reply_temp = Some(name);
                }
            }
            headers.push((k.clone(), v.clone()));
        }
        let id = format!("{}-{}", self.name, self.next_msg);
        self.next_msg += 1;
        let mut router = self.router();
        if let Some(name) = reply_temp {
            let wide = router.implicit_temp_queue(self.key, name);
            if let Some(h) = headers.iter_mut().find(|(k, _)| k == header::REPLY_TO) {
                h.1 = wide;
            }
        }
        let Some(msg) = Message::new(id, headers, frame.body.clone(), &self.shared.budget) else {
            tracing::warn!(session = %self.name, destination = %dest, "broker full; SEND refused");
            return Err(Refusal {
                message: format!(
                    "broker full: messages held exceed max_queued_bytes ({} bytes); message not queued",
                    self.shared.config.max_queued_bytes
                ),
                close: false,
            });
        };
        let routed = match router.send(self.key, dest, msg) {
            Ok(routed) => routed,
            Err(e @ RouteError::BrokerFull { .. }) => {
                tracing::warn!(session = %self.name, destination = %dest, "broker full (copies for subscribers); SEND refused");
                return Err(Refusal {
                    message: e.to_string(),
                    close: false,
                });
            }
            Err(e) => return Err(e.into()),
        };
        if !routed {
            tracing::warn!(session = %self.name, destination = %dest, "temporary queue of a departed connection; message dropped");
        }
        Ok(())
    }
}

fn required<'f>(frame: &'f Frame, name: &str) -> Result<&'f str, Refusal> {
    frame
        .header(name)
        .ok_or_else(|| Refusal::fatal(format!("{} frame without {name} header", frame.command)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_negotiation() {
        assert_eq!(negotiate_version(None), Some(Version::V1_0));
        assert_eq!(negotiate_version(Some("1.0,1.1")), Some(Version::V1_1));
        assert_eq!(negotiate_version(Some("1.2,1.0")), Some(Version::V1_2));
        assert_eq!(negotiate_version(Some("2.0")), None);
    }

    #[test]
    fn heartbeat_negotiation() {
        let offer = (Duration::from_millis(100), Duration::from_millis(200));
        let hb = negotiate_heartbeats(Some("0,500"), offer).unwrap();
        assert_eq!(hb.send, Some(Duration::from_millis(500)));
        assert_eq!(hb.expect, None);
        let hb = negotiate_heartbeats(Some("50,0"), offer).unwrap();
        assert_eq!(hb.send, None);
        assert_eq!(hb.expect, Some(Duration::from_millis(200)));
        assert_eq!(
            negotiate_heartbeats(None, offer).unwrap(),
            HeartBeats {
                send: None,
                expect: None
            }
        );
        assert!(negotiate_heartbeats(Some("x,1"), offer).is_err());
    }
}
