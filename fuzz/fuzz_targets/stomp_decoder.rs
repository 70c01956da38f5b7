//! Fuzzes the STOMP frame decoder (`ssm::stomp::StompCodec`) with arbitrary bytes, fed whole and
//! in two pieces, under small limits.
//!
//! Checks, beyond "never panics":
//! - Progress: while the decoder says "need more bytes", what it holds never exceeds the most
//!   one frame may take under the limits (a decoder that stalls on some prefix would otherwise
//!   buffer without bound).
//! - Round trip: every decoded frame, encoded again, decodes to the same frame.
//! - Splitting the input does not change the outcome.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use ssm::stomp::{Frame, FrameError, Item, Limits, StompCodec};
use tokio_util::codec::{Decoder, Encoder};

const LIMITS: Limits = Limits {
    max_body: 256,
    max_headers: 8,
    max_header_line: 64,
};

/// The most bytes a single incomplete frame may occupy under `LIMITS` (command line, headers,
/// blank line, body, NUL), plus one pending CR.
const MAX_PENDING: usize =
    (LIMITS.max_headers + 2) * (LIMITS.max_header_line + 2) + LIMITS.max_body + 2;

/// Decodes everything, feeding `data` in two pieces; returns the frames and whether it ended in
/// an error.
fn decode(data: &[u8], split: usize) -> (Vec<Frame>, bool) {
    let mut codec = StompCodec::new(LIMITS);
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    for piece in [&data[..split], &data[split..]] {
        buf.extend_from_slice(piece);
        loop {
            match codec.decode(&mut buf) {
                Ok(Some(Item::Frame(f))) => frames.push(f),
                Ok(Some(Item::HeartBeat)) => {}
                Ok(None) => {
                    assert!(
                        buf.len() <= MAX_PENDING,
                        "decoder holds {} bytes without progress: {:?}",
                        buf.len(),
                        &buf[..buf.len().min(64)]
                    );
                    break;
                }
                Err(_) => return (frames, true),
            }
        }
    }
    (frames, false)
}

fuzz_target!(|data: &[u8]| {
    let split = data.first().map_or(0, |b| *b as usize % (data.len() + 1));
    let (whole, whole_err) = decode(data, data.len());
    let (pieces, pieces_err) = decode(data, split);
    assert_eq!(whole, pieces);
    assert_eq!(whole_err, pieces_err);

    for frame in whole {
        // Re-encoding adds content-length and escapes, so it may exceed the small limits.
        let mut codec = StompCodec::new(Limits {
            max_body: usize::MAX,
            max_headers: usize::MAX,
            max_header_line: usize::MAX,
        });
        let mut buf = BytesMut::new();
        match codec.encode(&frame, &mut buf) {
            Ok(()) => {}
            // Header bytes the version cannot carry (e.g. a lone CR decoded in a 1.2 frame
            // that escaping cannot express) are refused, not mangled.
            Err(FrameError::Unencodable(_)) => continue,
            Err(e) => panic!("cannot re-encode {frame:?}: {e}"),
        }
        let again = match codec.decode(&mut buf) {
            Ok(Some(Item::Frame(f))) => f,
            other => panic!("re-encoded {frame:?} decodes as {other:?}"),
        };
        let mut expected = frame.clone();
        expected.remove_header("content-length");
        let mut got = again;
        got.remove_header("content-length");
        // Repeated headers keep their order; content-length is rewritten from the body.
        assert_eq!(got, expected);
    }
});
