//! The broker's frame decoder: [`StompCodec`] plus a guard against a bare carriage return.
//!
//! Work-around: `StompCodec::decode` keeps a lone trailing `\r` between frames until the `\n`
//! that should follow arrives, but when another byte follows instead it keeps returning
//! `Ok(None)` forever, so a client sending `\r` then anything makes the read buffer grow without
//! bound. A CR between frames must be followed by LF, so the guard rejects anything else as a
//! malformed frame. (The fix belongs in `StompCodec::decode`: return an error when the byte
//! after the trailing CR is present and is not LF.)

use bytes::BytesMut;
use tokio_util::codec::Decoder;

use crate::stomp::{FrameError, Item, StompCodec, Version};

/// Decodes client frames for the broker.
#[derive(Debug)]
pub(crate) struct GuardedCodec(StompCodec);

impl GuardedCodec {
    /// Wraps a codec.
    pub(crate) fn new(inner: StompCodec) -> GuardedCodec {
        GuardedCodec(inner)
    }

    /// Switches escaping rules after the handshake.
    pub(crate) fn set_version(&mut self, version: Version) {
        self.0.set_version(version);
    }
}

impl Decoder for GuardedCodec {
    type Item = Item;
    type Error = FrameError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Item>, FrameError> {
        let eols = src
            .iter()
            .take_while(|&&b| b == b'\n' || b == b'\r')
            .count();
        if eols > 0 && eols < src.len() && src[eols - 1] == b'\r' {
            return Err(FrameError::MalformedHeader("\r".to_string()));
        }
        self.0.decode(src)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_cr_is_an_error_not_a_stall() {
        let mut c = GuardedCodec::new(StompCodec::default());
        let mut buf = BytesMut::from(&b"\rSEND\n\n\0"[..]);
        assert!(matches!(
            c.decode(&mut buf),
            Err(FrameError::MalformedHeader(_))
        ));
        let mut ok = BytesMut::from(&b"\r"[..]);
        assert!(c.decode(&mut ok).unwrap().is_none());
        ok.extend_from_slice(b"\nSEND\n\n\0");
        assert_eq!(c.decode(&mut ok).unwrap(), Some(Item::HeartBeat));
        assert!(matches!(c.decode(&mut ok).unwrap(), Some(Item::Frame(_))));
    }
}
