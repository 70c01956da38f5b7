//! The S/MIME text the sender writes, written in Rust exactly as OpenSSL 3's `SMIME_write_PKCS7`
//! writes it: a detached `multipart/signed` (`openssl smime -sign -text`) and a single base64
//! `application/x-pkcs7-mime` part (`-encrypt`), with the line-end canonicalisation
//! (`SMIME_crlf_copy`) that `-sign -text` and `-encrypt` apply to their input.
//!
//! Why not OpenSSL's writer: it copies the text line by line through a chain of BIOs (twice
//! when signing, once more when enveloping) and writes base64 through a BIO. Written here, the
//! same bytes took 0.15M instructions off a sealed 10 KB message (7.93M → 7.78M, callgrind of
//! the timed iterations; `docs/performance.md`, third round): a small cut, kept because the
//! output is proven to be OpenSSL's byte for byte.
//!
//! Guarantees:
//! - Byte for byte what OpenSSL writes for the same PKCS#7 structure and content, except the
//!   `multipart/signed` boundary, which is random in both (32 hexadecimal digits from OpenSSL's
//!   random generator, as OpenSSL draws them). The tests compare the two writers on arbitrary
//!   content, CRs, empty lines and lines longer than OpenSSL's 1,023-byte reads included.
//! - [`canonical_text`] and [`crlf_copy`] are the bytes that OpenSSL digests or encrypts for
//!   `-text` and for `-encrypt`: the caller signs or envelopes exactly them (with
//!   `PKCS7_BINARY`, so that OpenSSL copies them unchanged), and writes the same bytes here.
//!   What is signed is therefore what is written, by construction.

use base64::Engine;

use super::mime::{strip_eol, MAX_LINE};

/// The header that `-text` puts before the content, as OpenSSL writes it.
const TEXT_HEADER: &[u8] = b"Content-Type: text/plain\r\n\r\n";

/// OpenSSL's `SMIME_crlf_copy` with flags 0 (what `-encrypt` does to the signed text): `input`
/// read in lines of at most 1,023 bytes as `BIO_gets` reads them, each line's trailing CR and
/// LF bytes removed, and CRLF written after each that ended with a LF. Appended to `out`.
pub(crate) fn crlf_copy(input: &[u8], out: &mut Vec<u8>) {
    let lines = input
        .split_inclusive(|&b| b == b'\n')
        .flat_map(|line| line.chunks(MAX_LINE));
    for line in lines {
        let (data, eol) = strip_eol(line);
        out.extend_from_slice(data);
        if eol {
            out.extend_from_slice(b"\r\n");
        }
    }
}

/// What `-sign -text` signs and writes as the first part: the `text/plain` header, then
/// `content` through [`crlf_copy`].
pub(crate) fn canonical_text(content: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(TEXT_HEADER.len() + content.len() + content.len() / 32 + 2);
    out.extend_from_slice(TEXT_HEADER);
    crlf_copy(content, &mut out);
    out
}

/// A `multipart/signed` boundary as OpenSSL draws one: 32 random bytes, each written as the
/// hexadecimal digit (uppercase) of its low four bits.
pub(crate) fn boundary(random: [u8; 32]) -> [u8; 32] {
    random.map(|b| b"0123456789ABCDEF"[usize::from(b & 0xf)])
}

/// The detached `multipart/signed` text that `SMIME_write_PKCS7` writes: `signed` (the output
/// of [`canonical_text`], written as it is) and the signature's DER in base64, with LF line
/// ends outside the signed part. `micalg` is the digest's MIME name (`sha-256`).
pub(crate) fn multipart_signed(
    signed: &[u8],
    signature_der: &[u8],
    micalg: &str,
    boundary: &[u8; 32],
) -> Vec<u8> {
    let bound = String::from_utf8_lossy(boundary);
    let mut out = Vec::with_capacity(signed.len() + signature_der.len() * 4 / 3 + 640);
    out.extend_from_slice(
        format!(
            "MIME-Version: 1.0\nContent-Type: multipart/signed; \
             protocol=\"application/x-pkcs7-signature\"; micalg=\"{micalg}\"; \
             boundary=\"----{bound}\"\n\nThis is an S/MIME signed message\n\n------{bound}\n"
        )
        .as_bytes(),
    );
    // Written as it is: OpenSSL digests and writes the same one copy of the content.
    out.extend_from_slice(signed);
    out.extend_from_slice(
        format!(
            "\n------{bound}\nContent-Type: application/x-pkcs7-signature; \
             name=\"smime.p7s\"\nContent-Transfer-Encoding: base64\n\
             Content-Disposition: attachment; filename=\"smime.p7s\"\n\n"
        )
        .as_bytes(),
    );
    base64_lines(signature_der, &mut out);
    out.extend_from_slice(format!("\n------{bound}--\n\n").as_bytes());
    out
}

/// The single-part `application/x-pkcs7-mime` text that `SMIME_write_PKCS7` writes for a
/// structure of `smime_type` (`enveloped-data`).
pub(crate) fn pkcs7_mime(der: &[u8], smime_type: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(der.len() * 4 / 3 + der.len() / 48 + 256);
    out.extend_from_slice(
        format!(
            "MIME-Version: 1.0\nContent-Disposition: attachment; filename=\"smime.p7m\"\n\
             Content-Type: application/x-pkcs7-mime; smime-type={smime_type}; \
             name=\"smime.p7m\"\nContent-Transfer-Encoding: base64\n\n"
        )
        .as_bytes(),
    );
    base64_lines(der, &mut out);
    out.push(b'\n');
    out
}

/// Base64 as OpenSSL's base64 BIO writes it: lines of 64 characters, each followed by a LF,
/// the last one too (none at all for empty input).
fn base64_lines(der: &[u8], out: &mut Vec<u8>) {
    let engine = &base64::engine::general_purpose::STANDARD;
    // 48 bytes of input are one line of 64 characters.
    for chunk in der.chunks(48) {
        let at = out.len();
        out.resize(at + chunk.len().div_ceil(3) * 4, 0);
        // The slice is sized for the padded encoding of the chunk, so this cannot fail; if it
        // ever did, the line would be left as zero bytes, which no reader accepts.
        let _ = engine.encode_slice(chunk, &mut out[at..]);
        out.push(b'\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crlf_copy_is_openssls() {
        let mut out = Vec::new();
        crlf_copy(b"a\nb\r\n\nc\r\r\nd", &mut out);
        assert_eq!(out, b"a\r\nb\r\n\r\nc\r\nd");
        // A line longer than 1,023 bytes is taken in pieces; a piece ending in CR loses it.
        let mut long = vec![b'x'; MAX_LINE - 1];
        long.extend_from_slice(b"\ry\n");
        let mut out = Vec::new();
        crlf_copy(&long, &mut out);
        let mut want = vec![b'x'; MAX_LINE - 1];
        want.extend_from_slice(b"y\r\n");
        assert_eq!(out, want);
    }

    #[test]
    fn base64_lines_are_64_columns_with_a_final_lf() {
        let mut out = Vec::new();
        base64_lines(&[0u8; 96], &mut out);
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.split_terminator('\n').collect();
        assert_eq!(lines.len(), 2);
        assert!(lines.iter().all(|l| l.len() == 64));
        assert!(text.ends_with('\n'));
        let mut out = Vec::new();
        base64_lines(b"ab", &mut out);
        assert_eq!(out, b"YWI=\n");
        let mut out = Vec::new();
        base64_lines(b"", &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn boundary_digits_are_openssls() {
        let b = boundary(std::array::from_fn(|i| (i as u8).wrapping_mul(17)));
        assert!(b
            .iter()
            .all(|c| c.is_ascii_digit() || (b'A'..=b'F').contains(c)));
        assert_eq!(&b[..4], b"0123");
    }
}
