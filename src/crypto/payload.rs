//! Sealing: `encrypt(sign(base64(zlib(msg))))`, byte-compatible with the `openssl smime` steps
//! `-sign -inkey KEY -signer CERT -text` then `-encrypt -<cipher> SERVERCERT`.

use std::cell::RefCell;

use base64::Engine;
use flate2::{Compress, Compression, FlushCompress, Status};
use openssl::pkcs7::{Pkcs7, Pkcs7Flags};
use openssl::stack::Stack;
use openssl::x509::X509;

use super::cipher::Cipher;
use super::error::{ssl_reason, CryptoError};
use super::identity::Identity;

/// Seals `msg` for `recipient`: zlib-compress, base64 (one line, padded), sign as a detached
/// `multipart/signed` S/MIME message with a `text/plain` part (as `-text` does), then envelope
/// the signed message for `recipient` with `cipher`. Returns the S/MIME text
/// (`application/x-pkcs7-mime; smime-type=enveloped-data`).
pub fn seal(
    msg: &[u8],
    signer: &Identity,
    recipient: &X509,
    cipher: Cipher,
) -> Result<Vec<u8>, CryptoError> {
    let b64 = encode(msg)?;
    let signed = sign(&b64, signer)?;
    encrypt(&signed, recipient, cipher)
}

thread_local! {
    /// One compressor per thread, reset between messages. A new one is a zeroed allocation of
    /// about 300 KB whose page faults (and the unmapping when it is freed) cost more CPU than
    /// compressing a 10 KB message.
    static DEFLATE: RefCell<Compress> = RefCell::new(Compress::new(Compression::default(), true));
}

/// The first two steps: zlib (default level, as Python's `zlib.compress`) then base64.
pub(crate) fn encode(msg: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let compressed = DEFLATE.with_borrow_mut(|z| {
        z.reset();
        let result = deflate(z, msg);
        // Whatever happened, the next message starts from a clean state.
        z.reset();
        result
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

/// `openssl smime -sign -text`: a detached signature, content wrapped in a text/plain part.
fn sign(content: &[u8], signer: &Identity) -> Result<Vec<u8>, CryptoError> {
    let err = |e: openssl::error::ErrorStack| CryptoError::Seal {
        step: "signing",
        reason: ssl_reason(&e),
    };
    // STREAM, as the CLI sets for detached S/MIME output: the signature is computed while the
    // message is written. Without it, `to_smime` costs about as much again as `sign` (measured:
    // seal 590 µs → 380 µs), for the same output.
    let flags = Pkcs7Flags::TEXT | Pkcs7Flags::DETACHED | Pkcs7Flags::STREAM;
    let no_extra_certs = Stack::new().map_err(err)?;
    let p7 =
        Pkcs7::sign(&signer.cert, &signer.key, &no_extra_certs, content, flags).map_err(err)?;
    p7.to_smime(content, flags).map_err(err)
}

/// `openssl smime -encrypt -<cipher> CERT`: the whole signed message is the enveloped content.
fn encrypt(signed: &[u8], recipient: &X509, cipher: Cipher) -> Result<Vec<u8>, CryptoError> {
    let err = |e: openssl::error::ErrorStack| CryptoError::Seal {
        step: "encrypting",
        reason: ssl_reason(&e),
    };
    let mut recipients = Stack::new().map_err(err)?;
    recipients.push(recipient.clone()).map_err(err)?;
    let flags = Pkcs7Flags::empty();
    let p7 = Pkcs7::encrypt(&recipients, signed, cipher.openssl(), flags).map_err(err)?;
    p7.to_smime(&[], flags).map_err(err)
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use base64::Engine;
    use flate2::write::ZlibEncoder;
    use flate2::Compression;

    use super::encode;

    fn fresh(msg: &[u8]) -> Vec<u8> {
        let mut z = ZlibEncoder::new(Vec::new(), Compression::default());
        z.write_all(msg).unwrap();
        base64::engine::general_purpose::STANDARD
            .encode(z.finish().unwrap())
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
                encode(msg).unwrap(),
                fresh(msg),
                "{} bytes again",
                msg.len()
            );
        }
    }
}
