//! The payload framings inside the signature, per protocol version.
//!
//! Version 1 (`SSM` 1): the message is zlib-compressed (fastest level; Python's
//! `zlib.compress` uses the default, and either reads the other's) then base64-encoded on one
//! padded line; [`encode`] makes it, [`unpack`]
//! reads it back. Version 2 (`SSM2`): no framing, the message is the signed `text/plain` part
//! itself; [`unpack_v2`] takes it out of what the signature covers.
//!
//! Guarantees:
//! - Decompression is a bounded read: a zlib bomb costs at most the cap (`max + 1` bytes of
//!   output) before [`CryptoError::TooLarge`]; a version 2 text over the cap is refused too.
//! - Reading is lenient where senders differ: base64 wrapped at any column, with CRLF or LF, with
//!   or without padding; content signed with or without the `-text` header.
//! - [`encode`] gives the same bytes as a fresh compressor for every message (one compressor per
//!   thread, reset before and after each use).

use std::cell::RefCell;
use std::io::Read;

use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine;
use flate2::read::ZlibDecoder;
use flate2::{Compress, Compression, FlushCompress, Status};

use super::error::CryptoError;

/// The default cap on an opened message (decompressed, for version 1): 64 MiB.
pub const DEFAULT_MAX_SIZE: usize = 64 * 1024 * 1024;

/// Standard alphabet; padding optional (some encoders drop it), whitespace removed beforehand.
const LENIENT_B64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

thread_local! {
    /// One compressor per thread, reset before each message. A new one is a zeroed allocation
    /// of about 300 KB whose page faults (and the unmapping when it is freed) cost more CPU
    /// than compressing a 10 KB message. The fastest level: any zlib stream is valid to every
    /// receiver, and the default level (Python's) cost a sender 4.4M instructions per 10 KB of
    /// APEL text (miniz), two thirds of its RSA signature, for output a quarter smaller
    /// (level 1 with zlib-rs: 0.9M instructions; `docs/performance.md`).
    static DEFLATE: RefCell<Compress> = RefCell::new(Compress::new(Compression::fast(), true));
}

/// The version 1 framing: zlib (fastest level) then base64.
pub(crate) fn encode(msg: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let compressed = DEFLATE.with_borrow_mut(|z| {
        // Whatever the last message left (an error half-way), this one starts clean.
        z.reset();
        deflate(z, msg)
    })?;
    Ok(base64::engine::general_purpose::STANDARD
        .encode(compressed)
        .into_bytes())
}

/// Compresses all of `msg` as one zlib stream with `z`.
fn deflate(z: &mut Compress, msg: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let err = |reason: String| CryptoError::Seal {
        step: "compressing",
        reason,
    };
    let mut out = Vec::with_capacity(msg.len() / 2 + 64);
    loop {
        let consumed = usize::try_from(z.total_in()).map_err(|e| err(e.to_string()))?;
        let rest = msg.get(consumed..).unwrap_or_default();
        if out.len() == out.capacity() {
            out.reserve(out.capacity().max(64));
        }
        match z
            .compress_vec(rest, &mut out, FlushCompress::Finish)
            .map_err(|e| err(e.to_string()))?
        {
            Status::StreamEnd => return Ok(out),
            // Out of room in `out` (grown above), or more input to take.
            Status::Ok | Status::BufError => {}
        }
    }
}

/// The version 1 framing read back, on verified signed content: drops the `-text` MIME
/// header if there is one, base64-decodes (ignoring whitespace) and zlib-decompresses, refusing
/// output over `max` bytes. Public so that it can be fuzzed on its own (the
/// last steps of [`Opener::open`](super::Opener::open)).
pub fn unpack(content: &[u8], max: usize) -> Result<Vec<u8>, CryptoError> {
    decode(strip_text_header(content), max)
}

/// Removes the MIME header `-text` signing adds (`Content-Type: text/plain` then a blank line).
/// Base64 never contains `:`, so a first line with a colon can only be a header.
fn strip_text_header(content: &[u8]) -> &[u8] {
    let first_line_end = content
        .iter()
        .position(|&b| b == b'\n')
        .unwrap_or(content.len());
    if !content[..first_line_end].contains(&b':') {
        return content;
    }
    // The header ends at the first empty line (CRLF or LF line ends).
    let mut pos = 0;
    while pos < content.len() {
        let end = content[pos..]
            .iter()
            .position(|&b| b == b'\n')
            .map(|i| pos + i + 1)
            .unwrap_or(content.len());
        let line = &content[pos..end];
        if line == b"\r\n" || line == b"\n" {
            return &content[end..];
        }
        pos = end;
    }
    // A header with no body: nothing was signed.
    &[]
}

/// Base64-decodes (ignoring all whitespace) and zlib-decompresses, reading at most `max + 1`
/// bytes so that a decompression bomb costs no more than the cap.
fn decode(text: &[u8], max: usize) -> Result<Vec<u8>, CryptoError> {
    let compact: Vec<u8> = text
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    let compressed = LENIENT_B64
        .decode(&compact)
        .map_err(|e| CryptoError::NotBase64 {
            reason: e.to_string(),
        })?;
    let mut out = Vec::with_capacity(compressed.len().saturating_mul(4).min(max));
    let limit = u64::try_from(max).unwrap_or(u64::MAX).saturating_add(1);
    ZlibDecoder::new(compressed.as_slice())
        .take(limit)
        .read_to_end(&mut out)
        .map_err(|e| CryptoError::NotZlib {
            reason: e.to_string(),
        })?;
    if out.len() > max {
        return Err(CryptoError::TooLarge { max });
    }
    Ok(out)
}

/// The version 2 message out of verified signed content: the `-text` MIME header removed (if
/// the content starts with one), and the CRLF line ends `-text` signing writes (MIME canonical
/// text) turned back into LF, so that a sender's LF text comes back byte for byte. A sender's
/// own CRLF is indistinguishable from canonicalisation and comes back as LF too. Refuses content
/// over `max` bytes.
pub(crate) fn unpack_v2(content: &[u8], max: usize) -> Result<Vec<u8>, CryptoError> {
    let text = strip_mime_header(content);
    if text.len() > max {
        return Err(CryptoError::TooLarge { max });
    }
    let mut out = Vec::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.windows(2).position(|w| w == b"\r\n") {
        out.extend_from_slice(&rest[..i]);
        out.push(b'\n');
        rest = &rest[i + 2..];
    }
    out.extend_from_slice(rest);
    Ok(out)
}

/// Removes a leading MIME header (`Content-Type: text/plain`, up to the first empty line) when
/// the content starts with a `Content-Type` line. Unlike [`strip_text_header`], a colon on the
/// first line is not enough: a version 2 message is text that may well start with `Key: value`
/// (APEL's `APEL-individual-job-message: v0.3`).
fn strip_mime_header(content: &[u8]) -> &[u8] {
    const NAME: &[u8] = b"content-type:";
    match content.get(..NAME.len()) {
        Some(first) if first.eq_ignore_ascii_case(NAME) => strip_text_header(content),
        _ => content,
    }
}

#[cfg(test)]
mod tests {
    use base64::Engine;
    use flate2::Compression;

    use super::*;

    /// What a new compressor, used as `encode` uses one, makes of `msg`.
    fn fresh(msg: &[u8]) -> Vec<u8> {
        let mut z = Compress::new(Compression::fast(), true);
        base64::engine::general_purpose::STANDARD
            .encode(deflate(&mut z, msg).unwrap())
            .into_bytes()
    }

    #[test]
    fn a_reused_compressor_gives_what_a_fresh_one_gives() {
        // Incompressible bytes make the output larger than the input (the buffer must grow).
        let mut noise = Vec::with_capacity(1 << 20);
        let mut x: u32 = 0x9e37_79b9;
        while noise.len() < 1 << 20 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            noise.extend_from_slice(&x.to_le_bytes());
        }
        let text: Vec<u8> = b"Site: EXAMPLE\nWallDuration: 1234\n%%\n".repeat(300);
        for msg in [
            &b""[..],
            b"x",
            &text,
            &noise,
            &text[..100],
            &noise[..70_000],
        ] {
            // Twice each: the second use starts from the state the first one left.
            assert_eq!(encode(msg).unwrap(), fresh(msg), "{} bytes", msg.len());
            assert_eq!(
                decode(&encode(msg).unwrap(), 2 << 20).unwrap(),
                msg,
                "{} bytes round trip",
                msg.len()
            );
            assert_eq!(
                encode(msg).unwrap(),
                fresh(msg),
                "{} bytes again",
                msg.len()
            );
        }
    }

    #[test]
    fn unpack_v2_strips_the_text_header_and_restores_lf() {
        let signed = b"Content-Type: text/plain\r\n\r\nAPEL-individual-job-message: v0.3\r\n%%\r\n";
        assert_eq!(
            unpack_v2(signed, 100).unwrap(),
            b"APEL-individual-job-message: v0.3\n%%\n"
        );
        // No header: a first line with a colon is content, not a header.
        assert_eq!(
            unpack_v2(b"Site: X\r\nrest", 100).unwrap(),
            b"Site: X\nrest"
        );
        assert_eq!(unpack_v2(b"", 100).unwrap(), b"");
        assert!(matches!(
            unpack_v2(&[b'x'; 11], 10),
            Err(CryptoError::TooLarge { max: 10 })
        ));
    }

    #[test]
    fn strips_text_header_crlf_and_lf() {
        assert_eq!(
            strip_text_header(b"Content-Type: text/plain\r\n\r\neJwDAAAAAAE=\r\n"),
            b"eJwDAAAAAAE=\r\n"
        );
        assert_eq!(
            strip_text_header(b"Content-Type: text/plain\n\nabc"),
            b"abc"
        );
        assert_eq!(strip_text_header(b"eJwDAAAAAAE=\r\n"), b"eJwDAAAAAAE=\r\n");
        assert_eq!(strip_text_header(b""), b"");
        assert_eq!(strip_text_header(b"Content-Type: text/plain\r\n"), b"");
    }

    #[test]
    fn decode_accepts_wrapped_base64_and_caps_size() {
        let encoded = encode(&vec![b'x'; 1000]).unwrap();
        let wrapped: Vec<u8> = encoded
            .chunks(76)
            .flat_map(|c| c.iter().copied().chain(*b"\r\n"))
            .collect();
        assert_eq!(decode(&wrapped, 1000).unwrap(), vec![b'x'; 1000]);
        assert!(matches!(
            decode(&wrapped, 999),
            Err(CryptoError::TooLarge { max: 999 })
        ));
        assert!(matches!(
            decode(b"%%%", 10),
            Err(CryptoError::NotBase64 { .. })
        ));
        assert!(matches!(
            decode(b"aGVsbG8=", 10),
            Err(CryptoError::NotZlib { .. })
        ));
    }
}
