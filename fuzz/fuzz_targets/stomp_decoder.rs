//! Fuzzes the STOMP frame decoder (`ssm::stomp::StompCodec`) with arbitrary bytes, fed whole and
//! in two pieces, under small limits, with and without skipping oversized frames (as the
//! client does).
//!
//! Checks, beyond "never panics":
//! - Progress: while the decoder says "need more bytes", what it holds never exceeds the most
//!   one frame may take under the limits (a decoder that stalls on some prefix would otherwise
//!   buffer without bound).
//! - Round trip: every decoded frame, encoded again, decodes to the same frame.
//! - Splitting the input does not change the outcome (frames, skipped-frame reports, error).
//! - Skipping oversized frames changes nothing before the first oversized frame.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use ssm::stomp::{Frame, FrameError, Item, Limits, Oversized, StompCodec};
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

/// What decoding produced.
#[derive(Debug, PartialEq)]
struct Outcome {
    frames: Vec<Frame>,
    skipped: Vec<Oversized>,
    error: bool,
}

/// Decodes everything, feeding `data` in two pieces.
fn decode(data: &[u8], split: usize, skip: bool) -> Outcome {
    let mut codec = StompCodec::new(LIMITS);
    codec.set_skip_oversized(skip);
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    let mut skipped = Vec::new();
    for piece in [&data[..split], &data[split..]] {
        buf.extend_from_slice(piece);
        loop {
            match codec.decode(&mut buf) {
                Ok(Some(Item::Frame(f))) => frames.push(f),
                Ok(Some(Item::HeartBeat)) => {}
                Ok(Some(Item::Oversized(o))) => {
                    assert!(skip, "a frame skipped without skipping turned on");
                    assert!(o.size > LIMITS.max_body && o.frame.body.is_empty());
                    skipped.push(o);
                }
                Ok(None) => {
                    assert!(
                        buf.len() <= MAX_PENDING,
                        "decoder holds {} bytes without progress: {:?}",
                        buf.len(),
                        &buf[..buf.len().min(64)]
                    );
                    break;
                }
                Err(_) => {
                    return Outcome {
                        frames,
                        skipped,
                        error: true,
                    }
                }
            }
        }
    }
    Outcome {
        frames,
        skipped,
        error: false,
    }
}

fuzz_target!(|data: &[u8]| {
    let split = data.first().map_or(0, |b| *b as usize % (data.len() + 1));
    let whole = decode(data, data.len(), false);
    assert_eq!(whole, decode(data, split, false));
    let skipping = decode(data, data.len(), true);
    assert_eq!(skipping, decode(data, split, true));
    // Input the strict decoder takes without error holds no oversized frame: both agree.
    if !whole.error {
        assert_eq!(skipping, whole);
    }
    // Skipping only ever adds frames after the first skipped one.
    assert!(skipping.frames.len() >= whole.frames.len());
    assert_eq!(skipping.frames[..whole.frames.len()], whole.frames[..]);

    for frame in whole.frames {
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
