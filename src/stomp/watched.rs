//! A reader that remembers when bytes last arrived, shared by the client and the embedded
//! broker's sessions.
//!
//! Guarantees: it passes every read through unchanged; `last_read` is the time of the last read
//! that returned bytes (any byte counts as a sign of life for heart-beat and idle checks, so a
//! large frame arriving slowly is not taken for silence), and `pending_since` is the time of the
//! first read since the owner last cleared it (the broker's session does once its decoder has
//! consumed everything, so that `pending_since` dates the oldest unfinished frame).

use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, ReadBuf};
use tokio::time::Instant;

/// `inner`, with the times of its reads.
pub struct Watched<R> {
    inner: R,
    /// When a read last returned bytes (the creation time before the first).
    pub last_read: Instant,
    /// When the first read since the owner last cleared this returned bytes.
    pub pending_since: Option<Instant>,
}

impl<R> Watched<R> {
    /// Watches `inner`, starting now.
    pub fn new(inner: R) -> Watched<R> {
        Watched {
            inner,
            last_read: Instant::now(),
            pending_since: None,
        }
    }

    /// The reader itself, to drain or close it.
    pub fn into_inner(self) -> R {
        self.inner
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for Watched<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let poll = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            let now = Instant::now();
            self.last_read = now;
            self.pending_since.get_or_insert(now);
        }
        poll
    }
}
