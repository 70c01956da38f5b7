//! STOMP frames and their wire codec, shared by the client ([`crate::stomp`]) and the embedded
//! broker ([`crate::broker`]).
//!
//! We write the codec ourselves because STOMP is small and no crate on crates.io offers a
//! STOMP 1.0–1.2 codec with configurable limits on `tokio-util`'s codec traits.
//!
//! Guarantees:
//! - Decoding follows STOMP 1.0, 1.1 and 1.2: header escaping per version (never in `CONNECT`
//!   and `CONNECTED`), repeated headers kept in order with the first one winning on lookup,
//!   bodies framed by `content-length` (and so may hold NUL bytes) or by the first NUL byte,
//!   LF or CRLF line ends, and end-of-line heart-beats between frames.
//! - Every limit ([`Limits`]) is checked before memory is committed to a frame: bad or hostile
//!   input yields a [`FrameError`], never a panic or an unbounded allocation.
//! - Decoding is linear in the input however it is split across reads: the header block and a
//!   NUL-terminated body are each scanned once (the decoder remembers how far it got).
//! - With [`StompCodec::set_skip_oversized`], a frame whose body exceeds [`Limits::max_body`] is
//!   discarded as it arrives (at most one read's bytes held) and reported as
//!   [`Item::Oversized`], and decoding goes on with the next frame.
//! - Encoding always writes `content-length` on frames that may carry a body, because ActiveMQ
//!   drops the body length of a `SEND` that lacks it, and writes each frame as one contiguous
//!   buffer (one write per frame keeps latency low with `tcpNoDelay`).

use std::fmt;
use std::str::FromStr;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

use super::vocab::header;

/// A STOMP command: the first line of a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Command {
    /// Client opens a session (all versions).
    Connect,
    /// Client opens a session (1.1+ spelling).
    Stomp,
    /// Broker accepts a session.
    Connected,
    /// Client sends a message to a destination.
    Send,
    /// Client subscribes to a destination.
    Subscribe,
    /// Client ends a subscription.
    Unsubscribe,
    /// Client acknowledges a message.
    Ack,
    /// Client refuses a message (1.1+).
    Nack,
    /// Client starts a transaction.
    Begin,
    /// Client commits a transaction.
    Commit,
    /// Client aborts a transaction.
    Abort,
    /// Client closes the session.
    Disconnect,
    /// Broker delivers a message to a subscriber.
    Message,
    /// Broker confirms a frame that asked for a receipt.
    Receipt,
    /// Broker reports an error (and usually closes the connection).
    Error,
}

impl Command {
    /// The command as it is written on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Command::Connect => "CONNECT",
            Command::Stomp => "STOMP",
            Command::Connected => "CONNECTED",
            Command::Send => "SEND",
            Command::Subscribe => "SUBSCRIBE",
            Command::Unsubscribe => "UNSUBSCRIBE",
            Command::Ack => "ACK",
            Command::Nack => "NACK",
            Command::Begin => "BEGIN",
            Command::Commit => "COMMIT",
            Command::Abort => "ABORT",
            Command::Disconnect => "DISCONNECT",
            Command::Message => "MESSAGE",
            Command::Receipt => "RECEIPT",
            Command::Error => "ERROR",
        }
    }

    /// Whether header values of this command are escaped (the spec exempts the handshake).
    fn escapes_headers(self) -> bool {
        !matches!(self, Command::Connect | Command::Stomp | Command::Connected)
    }

    /// Whether frames of this command may carry a body, so that `content-length` is written.
    fn carries_body(self) -> bool {
        matches!(self, Command::Send | Command::Message | Command::Error)
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Command {
    type Err = FrameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "CONNECT" => Command::Connect,
            "STOMP" => Command::Stomp,
            "CONNECTED" => Command::Connected,
            "SEND" => Command::Send,
            "SUBSCRIBE" => Command::Subscribe,
            "UNSUBSCRIBE" => Command::Unsubscribe,
            "ACK" => Command::Ack,
            "NACK" => Command::Nack,
            "BEGIN" => Command::Begin,
            "COMMIT" => Command::Commit,
            "ABORT" => Command::Abort,
            "DISCONNECT" => Command::Disconnect,
            "MESSAGE" => Command::Message,
            "RECEIPT" => Command::Receipt,
            "ERROR" => Command::Error,
            other => return Err(FrameError::UnknownCommand(truncate(other))),
        })
    }
}

/// One STOMP frame: a command, ordered headers (repeats allowed) and a binary body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The command.
    pub command: Command,
    /// Headers in wire order; when a name repeats, the first one counts.
    pub headers: Vec<(String, String)>,
    /// The body, possibly empty, possibly binary.
    pub body: Bytes,
}

impl Frame {
    /// A frame with no headers and an empty body.
    pub fn new(command: Command) -> Frame {
        Frame {
            command,
            headers: Vec::new(),
            body: Bytes::new(),
        }
    }

    /// Adds a header (builder style). Does not replace an existing one: see [`Frame::set_header`].
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Frame {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sets the body (builder style).
    pub fn with_body(mut self, body: impl Into<Bytes>) -> Frame {
        self.body = body.into();
        self
    }

    /// The value of the first header with this name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Replaces every header with this name by one with the given value.
    pub fn set_header(&mut self, name: &str, value: impl Into<String>) {
        self.remove_header(name);
        self.headers.push((name.to_string(), value.into()));
    }

    /// Removes every header with this name.
    pub fn remove_header(&mut self, name: &str) {
        self.headers.retain(|(k, _)| k != name);
    }
}

/// A protocol version; it decides how header values are escaped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum Version {
    /// STOMP 1.0: no escaping (a newline in a header cannot be sent).
    V1_0,
    /// STOMP 1.1: `\n`, `\c` and `\\` escapes.
    V1_1,
    /// STOMP 1.2: as 1.1 plus `\r`.
    #[default]
    V1_2,
}

impl Version {
    /// The version as written in `accept-version` and `version` headers.
    pub fn as_str(self) -> &'static str {
        match self {
            Version::V1_0 => "1.0",
            Version::V1_1 => "1.1",
            Version::V1_2 => "1.2",
        }
    }

    /// Parses `1.0`, `1.1` or `1.2`.
    pub fn parse(s: &str) -> Option<Version> {
        match s.trim() {
            "1.0" => Some(Version::V1_0),
            "1.1" => Some(Version::V1_1),
            "1.2" => Some(Version::V1_2),
            _ => None,
        }
    }
}

/// Bounds on what the decoder accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest body, in bytes.
    pub max_body: usize,
    /// Most headers in one frame.
    pub max_headers: usize,
    /// Longest command or header line, in bytes.
    pub max_header_line: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body: 16 * 1024 * 1024,
            max_headers: 256,
            max_header_line: 64 * 1024,
        }
    }
}

/// Why bytes could not be decoded into a frame, or a frame could not be encoded.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The first line is not a STOMP command.
    #[error("unknown STOMP command {0:?}")]
    UnknownCommand(String),
    /// A header line has no `:`.
    #[error("malformed header line {0:?}")]
    MalformedHeader(String),
    /// A header uses an escape sequence its version does not define.
    #[error("invalid escape sequence in header {0:?}")]
    BadEscape(String),
    /// A 1.0 header value holds a character that 1.0 cannot carry.
    #[error("header {0:?} holds a line break, which STOMP 1.0 cannot carry")]
    Unencodable(String),
    /// The command or a header is not UTF-8.
    #[error("frame header is not UTF-8")]
    NotUtf8,
    /// `content-length` is not a number.
    #[error("invalid content-length {0:?}")]
    BadContentLength(String),
    /// The byte after a `content-length` body is not NUL.
    #[error("frame body is not terminated by NUL")]
    MissingNul,
    /// The body is larger than [`Limits::max_body`].
    #[error("frame body of {size} bytes or more exceeds the limit of {max} bytes")]
    TooLarge {
        /// Bytes seen or announced.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// A line is longer than [`Limits::max_header_line`].
    #[error("header line longer than {max} bytes")]
    LineTooLong {
        /// The limit.
        max: usize,
    },
    /// More headers than [`Limits::max_headers`].
    #[error("more than {max} headers in one frame")]
    TooManyHeaders {
        /// The limit.
        max: usize,
    },
    /// An [`Item::Oversized`] report was given to the encoder.
    #[error("an oversized-frame report is not a frame and cannot be sent")]
    NotAFrame,
    /// A carriage return between frames is not followed by a line feed.
    #[error("carriage return without line feed between frames")]
    BareCr,
    /// The transport failed.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}

/// What the decoder yields, and what the encoder writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// A complete frame.
    Frame(Frame),
    /// One or more end-of-line bytes between frames: a heart-beat.
    HeartBeat,
    /// A frame whose body exceeded the limit, skipped (only with
    /// [`StompCodec::set_skip_oversized`]); never encoded.
    Oversized(Oversized),
}

/// A frame skipped because its body exceeded [`Limits::max_body`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Oversized {
    /// The frame's command and headers (so that it can be logged, and acknowledged when its
    /// subscription needs it); the body is empty.
    pub frame: Frame,
    /// The body's size: its `content-length`, or the bytes counted up to its NUL.
    pub size: usize,
    /// The limit it exceeded.
    pub max: usize,
}

impl From<Frame> for Item {
    fn from(frame: Frame) -> Item {
        Item::Frame(frame)
    }
}

/// The STOMP codec for `tokio_util::codec::Framed`.
///
/// Starts at version 1.2 escaping rules (the handshake frames are never escaped, so the version
/// only matters once it is negotiated); call [`StompCodec::set_version`] after `CONNECTED`.
#[derive(Debug, Clone, Default)]
pub struct StompCodec {
    version: Version,
    limits: Limits,
    /// How far a NUL-terminated body has been searched, so that a large body arriving in many
    /// reads is scanned once, not once per read.
    scanned: usize,
    /// The header block parsed so far, so that a large header block arriving in many reads is
    /// scanned once, not once per read.
    head: HeadScan,
    /// A complete header block whose body has not fully arrived.
    ready: Option<Head>,
    /// Whether a frame whose body exceeds the limit is skipped and reported
    /// ([`Item::Oversized`]) rather than an error.
    skip_oversized: bool,
    /// The oversized frame being skipped.
    skipping: Option<Skip>,
    /// Bytes examined while looking for line ends in header blocks (tests check it is linear).
    #[cfg(test)]
    head_work: usize,
}

/// The part of a frame's header block already parsed (offsets into the decoder's buffer, which
/// is not advanced until the frame is complete).
#[derive(Debug, Clone, Default)]
struct HeadScan {
    /// Offset of the first byte of the line not yet complete.
    line_start: usize,
    /// Offset up to which that line was searched for its LF.
    searched: usize,
    command: Option<Command>,
    headers: Vec<(String, String)>,
}

impl HeadScan {
    /// Whether no byte of a header block was seen yet (so end-of-lines are heart-beats).
    fn is_empty(&self) -> bool {
        self.line_start == 0 && self.searched == 0 && self.command.is_none()
    }
}

/// An oversized frame being discarded.
#[derive(Debug, Clone)]
struct Skip {
    frame: Frame,
    size: usize,
    /// Bytes still to discard, NUL included, when the length is known.
    remaining: Option<usize>,
}

impl StompCodec {
    /// A codec with the given limits.
    pub fn new(limits: Limits) -> StompCodec {
        StompCodec {
            limits,
            ..StompCodec::default()
        }
    }

    /// The version whose escaping rules apply.
    pub fn version(&self) -> Version {
        self.version
    }

    /// Switches escaping rules after the handshake negotiated a version.
    pub fn set_version(&mut self, version: Version) {
        self.version = version;
    }

    /// The limits in force.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Makes a frame whose body exceeds [`Limits::max_body`] be skipped instead of failing the
    /// stream: its body is discarded as it arrives (never buffered) and the frame is reported as
    /// [`Item::Oversized`] once its end was read. The header limits still fail the stream.
    pub fn set_skip_oversized(&mut self, skip: bool) {
        self.skip_oversized = skip;
    }
}

/// Where the header section of a frame ends, and what it says.
#[derive(Debug, Clone)]
struct Head {
    command: Command,
    headers: Vec<(String, String)>,
    /// Offset of the first body byte.
    body_start: usize,
}

impl StompCodec {
    /// Parses the command and headers if they are complete in `buf`, resuming where the last
    /// call stopped: every byte of a header block is examined once however it is split.
    fn parse_head(&mut self, buf: &[u8]) -> Result<Option<Head>, FrameError> {
        let r = self.scan_head(buf);
        if r.is_err() {
            self.head = HeadScan::default();
        }
        r
    }

    fn scan_head(&mut self, buf: &[u8]) -> Result<Option<Head>, FrameError> {
        let max_line = self.limits.max_header_line;
        loop {
            let start = self.head.line_start;
            let from = self.head.searched.max(start);
            let Some(i) = buf[from..].iter().position(|&b| b == b'\n') else {
                #[cfg(test)]
                {
                    self.head_work += buf.len() - from;
                }
                self.head.searched = buf.len();
                if buf.len() - start > max_line {
                    return Err(FrameError::LineTooLong { max: max_line });
                }
                return Ok(None);
            };
            #[cfg(test)]
            {
                self.head_work += i + 1;
            }
            let nl = from + i;
            if nl - start > max_line {
                return Err(FrameError::LineTooLong { max: max_line });
            }
            let line = &buf[start..nl];
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            self.head.line_start = nl + 1;
            self.head.searched = nl + 1;
            let line = std::str::from_utf8(line).map_err(|_| FrameError::NotUtf8)?;
            match self.head.command {
                None => self.head.command = Some(line.parse::<Command>()?),
                Some(cmd) => {
                    if line.is_empty() {
                        let head = std::mem::take(&mut self.head);
                        return Ok(Some(Head {
                            command: cmd,
                            headers: head.headers,
                            body_start: nl + 1,
                        }));
                    }
                    if self.head.headers.len() >= self.limits.max_headers {
                        return Err(FrameError::TooManyHeaders {
                            max: self.limits.max_headers,
                        });
                    }
                    let (k, v) = line
                        .split_once(':')
                        .ok_or_else(|| FrameError::MalformedHeader(truncate(line)))?;
                    let header = if cmd.escapes_headers() && self.version >= Version::V1_1 {
                        (self.unescape(k)?, self.unescape(v)?)
                    } else {
                        (k.to_string(), v.to_string())
                    };
                    self.head.headers.push(header);
                }
            }
        }
    }

    fn unescape(&self, s: &str) -> Result<String, FrameError> {
        if !s.contains('\\') {
            return Ok(s.to_string());
        }
        let mut out = String::with_capacity(s.len());
        let mut chars = s.chars();
        while let Some(c) = chars.next() {
            if c != '\\' {
                out.push(c);
                continue;
            }
            match chars.next() {
                Some('n') => out.push('\n'),
                Some('c') => out.push(':'),
                Some('\\') => out.push('\\'),
                Some('r') if self.version >= Version::V1_2 => out.push('\r'),
                _ => return Err(FrameError::BadEscape(truncate(s))),
            }
        }
        Ok(out)
    }

    fn escape_into(&self, s: &str, escape: bool, dst: &mut BytesMut) -> Result<(), FrameError> {
        if !escape || self.version == Version::V1_0 {
            if s.contains(['\n', '\r']) {
                return Err(FrameError::Unencodable(truncate(s)));
            }
            dst.put_slice(s.as_bytes());
            return Ok(());
        }
        for c in s.chars() {
            match c {
                '\n' => dst.put_slice(b"\\n"),
                ':' => dst.put_slice(b"\\c"),
                '\\' => dst.put_slice(b"\\\\"),
                '\r' if self.version >= Version::V1_2 => dst.put_slice(b"\\r"),
                '\r' => return Err(FrameError::Unencodable(truncate(s))),
                c => {
                    let mut tmp = [0u8; 4];
                    dst.put_slice(c.encode_utf8(&mut tmp).as_bytes());
                }
            }
        }
        Ok(())
    }
}

impl Decoder for StompCodec {
    type Item = Item;
    type Error = FrameError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Item>, FrameError> {
        if self.skipping.is_some() {
            return self.continue_skip(src);
        }
        if self.ready.is_none() && self.head.is_empty() {
            // End-of-line bytes (LF or CRLF) before a frame are heart-beats.
            let mut eol = 0;
            while eol < src.len() {
                match (src[eol], src.get(eol + 1)) {
                    (b'\n', _) => eol += 1,
                    (b'\r', Some(b'\n')) => eol += 2,
                    // A lone trailing CR may be the start of a CRLF: keep it until more arrives.
                    (b'\r', None) => break,
                    (b'\r', Some(_)) => return Err(FrameError::BareCr),
                    _ => break,
                }
            }
            if eol > 0 {
                src.advance(eol);
                return Ok(Some(Item::HeartBeat));
            }
            if src.first() == Some(&b'\r') {
                return Ok(None);
            }
        }
        let head = match self.ready.take() {
            Some(head) => head,
            None => match self.parse_head(src)? {
                Some(head) => head,
                None => return Ok(None),
            },
        };
        let max = self.limits.max_body;
        let len_header = head
            .headers
            .iter()
            .find(|(k, _)| k == header::CONTENT_LENGTH)
            .map(|(_, v)| v.trim());
        let body_len = match len_header {
            Some(v) => {
                let n: usize = v
                    .parse()
                    .map_err(|_| FrameError::BadContentLength(truncate(v)))?;
                if n > max {
                    if self.skip_oversized {
                        return self.start_skip(src, head, n, Some(n + 1));
                    }
                    return Err(FrameError::TooLarge { size: n, max });
                }
                let end = head.body_start + n;
                if src.len() <= end {
                    src.reserve(end + 1 - src.len());
                    self.ready = Some(head);
                    return Ok(None);
                }
                if src[end] != 0 {
                    return Err(FrameError::MissingNul);
                }
                n
            }
            None => {
                let from = head.body_start + self.scanned;
                match src[from..].iter().position(|&b| b == 0) {
                    Some(i) => self.scanned + i,
                    None => {
                        self.scanned = src.len() - head.body_start;
                        if self.scanned > max {
                            let seen = std::mem::take(&mut self.scanned);
                            if self.skip_oversized {
                                // Drop what was seen of the body; look for its NUL from here.
                                return self.start_skip(src, head, seen, None);
                            }
                            return Err(FrameError::TooLarge { size: seen, max });
                        }
                        self.ready = Some(head);
                        return Ok(None);
                    }
                }
            }
        };
        self.scanned = 0;
        if body_len > max {
            if self.skip_oversized {
                // The NUL is in the buffer: skip the body and the NUL at once.
                return self.start_skip(src, head, body_len, Some(body_len + 1));
            }
            return Err(FrameError::TooLarge {
                size: body_len,
                max,
            });
        }
        src.advance(head.body_start);
        let body = src.split_to(body_len).freeze();
        src.advance(1); // the NUL
        Ok(Some(Item::Frame(Frame {
            command: head.command,
            headers: head.headers,
            body,
        })))
    }
}

impl StompCodec {
    /// Starts discarding the body of an oversized frame: `size` body bytes are known so far,
    /// and `remaining` bytes from the body's start (body and NUL) are left to discard when its
    /// length is known (`None`: discard up to the next NUL). Nothing of the body is kept.
    fn start_skip(
        &mut self,
        src: &mut BytesMut,
        head: Head,
        size: usize,
        remaining: Option<usize>,
    ) -> Result<Option<Item>, FrameError> {
        let to_discard = match remaining {
            Some(_) => head.body_start,
            // Everything after the headers was searched and holds no NUL.
            None => src.len(),
        };
        src.advance(to_discard);
        self.skipping = Some(Skip {
            frame: Frame {
                command: head.command,
                headers: head.headers,
                body: Bytes::new(),
            },
            size,
            remaining,
        });
        self.continue_skip(src)
    }

    /// Discards what arrived of a skipped frame; reports it once its NUL was reached.
    fn continue_skip(&mut self, src: &mut BytesMut) -> Result<Option<Item>, FrameError> {
        let Some(skip) = self.skipping.as_mut() else {
            return Ok(None);
        };
        match skip.remaining {
            Some(rem) => {
                let take = rem.min(src.len());
                if take == rem && rem > 0 && src[rem - 1] != 0 {
                    self.skipping = None;
                    return Err(FrameError::MissingNul);
                }
                src.advance(take);
                skip.remaining = Some(rem - take);
                if take < rem {
                    return Ok(None);
                }
            }
            None => match src.iter().position(|&b| b == 0) {
                Some(i) => {
                    skip.size += i;
                    src.advance(i + 1);
                }
                None => {
                    skip.size += src.len();
                    src.clear();
                    return Ok(None);
                }
            },
        }
        let Some(skip) = self.skipping.take() else {
            return Ok(None);
        };
        Ok(Some(Item::Oversized(Oversized {
            frame: skip.frame,
            size: skip.size,
            max: self.limits.max_body,
        })))
    }
}

impl Encoder<Item> for StompCodec {
    type Error = FrameError;

    fn encode(&mut self, item: Item, dst: &mut BytesMut) -> Result<(), FrameError> {
        match item {
            Item::HeartBeat => {
                dst.put_u8(b'\n');
                Ok(())
            }
            Item::Frame(frame) => self.encode(&frame, dst),
            Item::Oversized(_) => Err(FrameError::NotAFrame),
        }
    }
}

impl Encoder<Frame> for StompCodec {
    type Error = FrameError;

    fn encode(&mut self, frame: Frame, dst: &mut BytesMut) -> Result<(), FrameError> {
        self.encode(&frame, dst)
    }
}

impl Encoder<&Frame> for StompCodec {
    type Error = FrameError;

    fn encode(&mut self, frame: &Frame, dst: &mut BytesMut) -> Result<(), FrameError> {
        let escape = frame.command.escapes_headers();
        let start = dst.len();
        dst.reserve(64 + frame.body.len());
        dst.put_slice(frame.command.as_str().as_bytes());
        dst.put_u8(b'\n');
        let result = (|| {
            for (k, v) in &frame.headers {
                if k == header::CONTENT_LENGTH {
                    continue; // written below from the real body length
                }
                self.escape_into(k, escape, dst)?;
                dst.put_u8(b':');
                self.escape_into(v, escape, dst)?;
                dst.put_u8(b'\n');
            }
            Ok(())
        })();
        if let Err(e) = result {
            dst.truncate(start);
            return Err(e);
        }
        if frame.command.carries_body() || !frame.body.is_empty() {
            dst.put_slice(format!("content-length:{}\n", frame.body.len()).as_bytes());
        }
        dst.put_u8(b'\n');
        dst.put_slice(&frame.body);
        dst.put_u8(0);
        Ok(())
    }
}

/// Cuts a string for an error message, so that hostile input cannot make error text huge.
fn truncate(s: &str) -> String {
    const MAX: usize = 80;
    if s.len() <= MAX {
        return s.to_string();
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn decode_all(codec: &mut StompCodec, bytes: &[u8]) -> Result<Vec<Item>, FrameError> {
        let mut buf = BytesMut::from(bytes);
        let mut out = Vec::new();
        while let Some(item) = codec.decode(&mut buf)? {
            out.push(item);
        }
        Ok(out)
    }

    fn frames(items: Vec<Item>) -> Vec<Frame> {
        items
            .into_iter()
            .filter_map(|i| match i {
                Item::Frame(f) => Some(f),
                Item::HeartBeat | Item::Oversized(_) => None,
            })
            .collect()
    }

    #[test]
    fn decodes_nul_terminated_frame_with_crlf() {
        let mut c = StompCodec::default();
        let got = decode_all(&mut c, b"SEND\r\ndestination:/queue/a\r\n\r\nhello\0").unwrap();
        assert_eq!(
            got,
            vec![Item::Frame(
                Frame::new(Command::Send)
                    .with_header("destination", "/queue/a")
                    .with_body(&b"hello"[..])
            )]
        );
    }

    #[test]
    fn content_length_body_may_hold_nul() {
        let mut c = StompCodec::default();
        let got = frames(
            decode_all(
                &mut c,
                b"MESSAGE\ncontent-length:5\n\na\0b\0c\0\nSEND\n\nx\0",
            )
            .unwrap(),
        );
        assert_eq!(&got[0].body[..], b"a\0b\0c");
        assert_eq!(&got[1].body[..], b"x");
    }

    #[test]
    fn heartbeats_between_frames_are_reported() {
        let mut c = StompCodec::default();
        let got = decode_all(&mut c, b"\n\r\n\nRECEIPT\nreceipt-id:1\n\n\0\n").unwrap();
        assert_eq!(got[0], Item::HeartBeat);
        assert!(matches!(&got[1], Item::Frame(f) if f.header("receipt-id") == Some("1")));
        assert_eq!(got[2], Item::HeartBeat);
        assert_eq!(got.len(), 3);
    }

    #[test]
    fn lone_cr_waits_for_its_lf() {
        let mut c = StompCodec::default();
        let mut buf = BytesMut::from(&b"\r"[..]);
        assert!(c.decode(&mut buf).unwrap().is_none());
        buf.put_slice(b"\n");
        assert_eq!(c.decode(&mut buf).unwrap(), Some(Item::HeartBeat));
    }

    #[test]
    fn bare_cr_between_frames_is_an_error_not_a_stall() {
        let mut c = StompCodec::default();
        let mut buf = BytesMut::from(&b"\rSEND\n\n\0"[..]);
        assert!(matches!(c.decode(&mut buf), Err(FrameError::BareCr)));
        let mut buf = BytesMut::from(&b"\n\rX"[..]);
        assert!(matches!(c.decode(&mut buf), Err(FrameError::BareCr)));
    }

    #[test]
    fn first_repeated_header_wins() {
        let mut c = StompCodec::default();
        let f = frames(decode_all(&mut c, b"MESSAGE\nfoo:1\nfoo:2\n\n\0").unwrap());
        assert_eq!(f[0].header("foo"), Some("1"));
        assert_eq!(f[0].headers.len(), 2);
    }

    #[test]
    fn escaping_follows_version() {
        let frame = Frame::new(Command::Send).with_header("k:x", "a\nb:c\\d\re");
        let mut c = StompCodec::default();
        let mut buf = BytesMut::new();
        c.encode(&frame, &mut buf).unwrap();
        assert!(buf.starts_with(b"SEND\nk\\cx:a\\nb\\cc\\\\d\\re\n"));
        let mut back = frames(decode_all(&mut c, &buf).unwrap());
        back[0].remove_header("content-length");
        assert_eq!(back, vec![frame.clone()]);

        let mut c11 = StompCodec::default();
        c11.set_version(Version::V1_1);
        assert!(matches!(
            c11.encode(&frame, &mut BytesMut::new()),
            Err(FrameError::Unencodable(_))
        ));
        assert!(matches!(
            decode_all(&mut c11, b"SEND\nk:a\\rb\n\n\0"),
            Err(FrameError::BadEscape(_))
        ));

        let mut c10 = StompCodec::default();
        c10.set_version(Version::V1_0);
        let f = frames(decode_all(&mut c10, b"SEND\nk:a\\nb\n\n\0").unwrap());
        assert_eq!(f[0].header("k"), Some("a\\nb"));
    }

    #[test]
    fn connect_headers_are_not_escaped() {
        let mut c = StompCodec::default();
        let f = frames(decode_all(&mut c, b"CONNECT\npasscode:a\\b\n\n\0").unwrap());
        assert_eq!(f[0].header("passcode"), Some("a\\b"));
        let mut buf = BytesMut::new();
        c.encode(&f[0], &mut buf).unwrap();
        assert_eq!(&buf[..], b"CONNECT\npasscode:a\\b\n\n\0");
    }

    #[test]
    fn always_writes_content_length_on_send() {
        let mut c = StompCodec::default();
        let mut buf = BytesMut::new();
        let f = Frame::new(Command::Send)
            .with_header("content-length", "999")
            .with_body(&b"abc"[..]);
        c.encode(&f, &mut buf).unwrap();
        assert_eq!(&buf[..], b"SEND\ncontent-length:3\n\nabc\0");
    }

    #[test]
    fn errors_on_malformed_input() {
        type Check = fn(&FrameError) -> bool;
        let cases: &[(&[u8], Check)] = &[
            (b"HELLO\n\n\0", |e| {
                matches!(e, FrameError::UnknownCommand(_))
            }),
            (b"SEND\nnocolon\n\n\0", |e| {
                matches!(e, FrameError::MalformedHeader(_))
            }),
            (b"SEND\ncontent-length:x\n\n\0", |e| {
                matches!(e, FrameError::BadContentLength(_))
            }),
            (b"SEND\ncontent-length:1\n\nab\0", |e| {
                matches!(e, FrameError::MissingNul)
            }),
            (b"SEND\nk:\xff\n\n\0", |e| matches!(e, FrameError::NotUtf8)),
        ];
        for (input, check) in cases {
            let err = decode_all(&mut StompCodec::default(), input).unwrap_err();
            assert!(check(&err), "{input:?} gave {err:?}");
        }
    }

    #[test]
    fn limits_are_enforced_before_buffering() {
        let limits = Limits {
            max_body: 10,
            max_headers: 2,
            max_header_line: 24,
        };
        let err =
            decode_all(&mut StompCodec::new(limits), b"SEND\ncontent-length:11\n\n").unwrap_err();
        assert!(matches!(err, FrameError::TooLarge { size: 11, max: 10 }));
        let err = decode_all(&mut StompCodec::new(limits), b"SEND\n\n0123456789a").unwrap_err();
        assert!(matches!(err, FrameError::TooLarge { .. }));
        let err = decode_all(&mut StompCodec::new(limits), &[b'S'; 25]).unwrap_err();
        assert!(matches!(err, FrameError::LineTooLong { max: 24 }));
        let err =
            decode_all(&mut StompCodec::new(limits), b"SEND\na:1\nb:2\nc:3\n\n\0").unwrap_err();
        assert!(matches!(err, FrameError::TooManyHeaders { max: 2 }));
    }

    #[test]
    fn frames_split_across_reads_decode_once_complete() {
        let wire = b"MESSAGE\ndestination:/topic/x\n\nsome body without length\0";
        let mut c = StompCodec::default();
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        for b in wire.iter() {
            buf.put_u8(*b);
            if let Some(item) = c.decode(&mut buf).unwrap() {
                got.push(item);
            }
        }
        let f = frames(got);
        assert_eq!(f.len(), 1);
        assert_eq!(&f[0].body[..], b"some body without length");
    }

    /// A header block of `lines` headers of 60 bytes each, then a body.
    fn big_head(lines: usize) -> Vec<u8> {
        let mut wire = b"SEND\n".to_vec();
        for i in 0..lines {
            wire.extend_from_slice(format!("h{i:08}:{}\n", "v".repeat(49)).as_bytes());
        }
        wire.extend_from_slice(b"\nbody\0");
        wire
    }

    #[test]
    fn a_header_block_arriving_in_small_pieces_is_scanned_once() {
        // 16 384 lines of 60 bytes: about 1 MiB of headers, fed 16 bytes at a time.
        let lines = 16 * 1024;
        let wire = big_head(lines);
        let mut c = StompCodec::new(Limits {
            max_headers: lines + 1,
            ..Limits::default()
        });
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        for chunk in wire.chunks(16) {
            buf.put_slice(chunk);
            while let Some(item) = c.decode(&mut buf).unwrap() {
                got.push(item);
            }
        }
        let f = frames(got);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].headers.len(), lines);
        assert_eq!(&f[0].body[..], b"body");
        // Linear: each header byte examined once (a quadratic decoder examines ~32 GiB here).
        assert!(
            c.head_work <= wire.len(),
            "{} bytes examined for a {} byte frame",
            c.head_work,
            wire.len()
        );
    }

    #[test]
    fn a_body_arriving_in_small_pieces_does_not_rescan_the_headers() {
        let mut wire = big_head(1000);
        wire.truncate(wire.len() - b"body\0".len());
        let head_len = wire.len();
        let body = vec![b'x'; 64 * 1024];
        wire.splice(5..5, format!("content-length:{}\n", body.len()).bytes());
        wire.extend_from_slice(&body);
        wire.push(0);
        let mut c = StompCodec::new(Limits {
            max_headers: 1001,
            ..Limits::default()
        });
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        for chunk in wire.chunks(16) {
            buf.put_slice(chunk);
            while let Some(item) = c.decode(&mut buf).unwrap() {
                got.push(item);
            }
        }
        let f = frames(got);
        assert_eq!(f[0].body.len(), body.len());
        assert!(
            c.head_work <= head_len + 32,
            "{} bytes examined",
            c.head_work
        );
    }

    fn skipping(max_body: usize) -> StompCodec {
        let mut c = StompCodec::new(Limits {
            max_body,
            ..Limits::default()
        });
        c.set_skip_oversized(true);
        c
    }

    /// Feeds `wire` in pieces of `step` bytes; returns the items and the most bytes held.
    fn feed(c: &mut StompCodec, wire: &[u8], step: usize) -> (Vec<Item>, usize) {
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        let mut most = 0;
        for chunk in wire.chunks(step) {
            buf.put_slice(chunk);
            while let Some(item) = c.decode(&mut buf).unwrap() {
                got.push(item);
            }
            most = most.max(buf.len());
        }
        (got, most)
    }

    #[test]
    fn oversized_frames_are_skipped_without_buffering_and_reported() {
        let big = vec![b'A'; 10_000];
        let mut wire = Vec::new();
        // One with content-length (and NULs in its body), one framed by its NUL.
        let mut with_len = big.clone();
        with_len[10] = 0;
        wire.extend_from_slice(
            b"MESSAGE\nmessage-id:m1\ndestination:/topic/t\ncontent-length:10000\n\n",
        );
        wire.extend_from_slice(&with_len);
        wire.extend_from_slice(b"\0\nMESSAGE\nmessage-id:m2\n\n");
        wire.extend_from_slice(&big);
        wire.extend_from_slice(b"\0MESSAGE\nmessage-id:ok\n\nsmall\0");
        for step in [1, 7, 100, 4096, wire.len()] {
            let mut c = skipping(1000);
            let (got, most) = feed(&mut c, &wire, step);
            let reports: Vec<&Oversized> = got
                .iter()
                .filter_map(|i| match i {
                    Item::Oversized(o) => Some(o),
                    _ => None,
                })
                .collect();
            assert_eq!(reports.len(), 2, "step {step}: {got:?}");
            assert_eq!(reports[0].frame.header("message-id"), Some("m1"));
            assert_eq!(reports[0].frame.header("destination"), Some("/topic/t"));
            assert_eq!((reports[0].size, reports[0].max), (10_000, 1000));
            assert_eq!(reports[1].frame.header("message-id"), Some("m2"));
            assert_eq!(reports[1].size, 10_000);
            assert!(reports.iter().all(|o| o.frame.body.is_empty()));
            let f = frames(got.clone());
            assert_eq!(f.len(), 1, "step {step}");
            assert_eq!(&f[0].body[..], b"small");
            // Never more than one read's worth (or the limit) held for the skipped bodies.
            if step < wire.len() {
                assert!(most <= 1000 + 200 + step, "step {step}: held {most} bytes");
            }
        }
    }

    #[test]
    fn without_skipping_an_oversized_frame_is_an_error() {
        let mut c = StompCodec::new(Limits {
            max_body: 10,
            ..Limits::default()
        });
        let err = decode_all(&mut c, b"MESSAGE\ncontent-length:11\n\n").unwrap_err();
        assert!(matches!(err, FrameError::TooLarge { size: 11, max: 10 }));
        let mut c = skipping(10);
        let err = decode_all(&mut c, b"MESSAGE\ncontent-length:11\n\n01234567890X").unwrap_err();
        assert!(matches!(err, FrameError::MissingNul), "{err:?}");
        assert!(matches!(
            StompCodec::default().encode(
                Item::Oversized(Oversized {
                    frame: Frame::new(Command::Message),
                    size: 1,
                    max: 0
                }),
                &mut BytesMut::new()
            ),
            Err(FrameError::NotAFrame)
        ));
    }

    fn arb_frame() -> impl Strategy<Value = Frame> {
        let cmd = prop::sample::select(vec![
            Command::Send,
            Command::Message,
            Command::Subscribe,
            Command::Error,
            Command::Receipt,
            Command::Ack,
        ]);
        let header = ("[a-z:\\\\\n\r-]{1,12}", "[ -~\n\r\\\\:é]{0,20}");
        (
            cmd,
            prop::collection::vec(header, 0..6),
            prop::collection::vec(any::<u8>(), 0..200),
        )
            .prop_map(|(command, headers, body)| {
                let headers = headers
                    .into_iter()
                    .filter(|(k, _)| k != "content-length")
                    .collect();
                Frame {
                    command,
                    headers,
                    body: Bytes::from(body),
                }
            })
    }

    proptest! {
        #[test]
        fn encode_then_decode_is_identity(frames_in in prop::collection::vec(arb_frame(), 1..4)) {
            let mut c = StompCodec::default();
            let mut buf = BytesMut::new();
            for f in &frames_in {
                c.encode(f, &mut buf).unwrap();
                buf.put_slice(b"\n");
            }
            let mut got = frames(decode_all(&mut c, &buf).unwrap());
            for f in &mut got {
                if !f.body.is_empty() || f.command.carries_body() {
                    assert_eq!(f.header("content-length"), Some(f.body.len().to_string().as_str()));
                    f.remove_header("content-length");
                }
            }
            prop_assert_eq!(got, frames_in);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
            let mut c = StompCodec::new(Limits { max_body: 64, max_headers: 4, max_header_line: 32 });
            let mut buf = BytesMut::from(&bytes[..]);
            while let Ok(Some(_)) = c.decode(&mut buf) {}
        }
    }
}
