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
//! - Encoding always writes `content-length` on frames that may carry a body, because ActiveMQ
//!   drops the body length of a `SEND` that lacks it, and writes each frame as one contiguous
//!   buffer (one write per frame keeps latency low with `tcpNoDelay`).

use std::fmt;
use std::str::FromStr;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

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
}

/// Where the header section of a frame ends, and what it says.
struct Head {
    command: Command,
    headers: Vec<(String, String)>,
    /// Offset of the first body byte.
    body_start: usize,
}

impl StompCodec {
    /// Parses the command and headers if they are complete in `buf`.
    fn parse_head(&self, buf: &[u8]) -> Result<Option<Head>, FrameError> {
        let max_line = self.limits.max_header_line;
        let mut pos = 0;
        let mut command = None;
        let mut headers = Vec::new();
        loop {
            let rest = &buf[pos..];
            let Some(nl) = rest.iter().position(|&b| b == b'\n') else {
                if rest.len() > max_line {
                    return Err(FrameError::LineTooLong { max: max_line });
                }
                return Ok(None);
            };
            if nl > max_line {
                return Err(FrameError::LineTooLong { max: max_line });
            }
            let line = rest[..nl].strip_suffix(b"\r").unwrap_or(&rest[..nl]);
            pos += nl + 1;
            let line = std::str::from_utf8(line).map_err(|_| FrameError::NotUtf8)?;
            match command {
                None => command = Some(line.parse::<Command>()?),
                Some(cmd) => {
                    if line.is_empty() {
                        return Ok(Some(Head {
                            command: cmd,
                            headers,
                            body_start: pos,
                        }));
                    }
                    if headers.len() >= self.limits.max_headers {
                        return Err(FrameError::TooManyHeaders {
                            max: self.limits.max_headers,
                        });
                    }
                    let (k, v) = line
                        .split_once(':')
                        .ok_or_else(|| FrameError::MalformedHeader(truncate(line)))?;
                    if cmd.escapes_headers() && self.version >= Version::V1_1 {
                        headers.push((self.unescape(k)?, self.unescape(v)?));
                    } else {
                        headers.push((k.to_string(), v.to_string()));
                    }
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
        let Some(head) = self.parse_head(src)? else {
            return Ok(None);
        };
        let max = self.limits.max_body;
        let len_header = head
            .headers
            .iter()
            .find(|(k, _)| k == "content-length")
            .map(|(_, v)| v.trim());
        let body_len = match len_header {
            Some(v) => {
                let n: usize = v
                    .parse()
                    .map_err(|_| FrameError::BadContentLength(truncate(v)))?;
                if n > max {
                    return Err(FrameError::TooLarge { size: n, max });
                }
                let end = head.body_start + n;
                if src.len() <= end {
                    src.reserve(end + 1 - src.len());
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
                            return Err(FrameError::TooLarge {
                                size: self.scanned,
                                max,
                            });
                        }
                        return Ok(None);
                    }
                }
            }
        };
        if body_len > max {
            return Err(FrameError::TooLarge {
                size: body_len,
                max,
            });
        }
        self.scanned = 0;
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

impl Encoder<Item> for StompCodec {
    type Error = FrameError;

    fn encode(&mut self, item: Item, dst: &mut BytesMut) -> Result<(), FrameError> {
        match item {
            Item::HeartBeat => {
                dst.put_u8(b'\n');
                Ok(())
            }
            Item::Frame(frame) => self.encode(&frame, dst),
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
                if k == "content-length" {
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
                Item::HeartBeat => None,
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
