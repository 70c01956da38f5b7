//! The two S/MIME text forms every SSM peer writes, read in Rust: a single base64
//! `application/(x-)pkcs7-mime` part (an envelope, or opaque signed data) and a detached
//! `multipart/signed` (`openssl smime -sign`). Anything else is left to OpenSSL's reader.
//!
//! Why not only OpenSSL's reader: it reads line by line through a chain of BIOs and decodes
//! base64 a line at a time, which cost the receiver more than a tenth of one RSA decryption per
//! 10 KB message (callgrind; `docs/performance.md`), where one decode of the whole text costs
//! almost nothing.
//!
//! Guarantees:
//! - What is returned here is what OpenSSL's `SMIME_read_PKCS7` would hand over for the same
//!   text: the DER to parse, and for `multipart/signed` the content part byte for byte as its
//!   `multi_split` builds it (every line's trailing CR and LF removed, lines joined with CRLF,
//!   lines longer than 1,023 bytes taken in pieces of that size as OpenSSL takes them).
//! - A shape not read exactly here (a continued header, another encoding, a missing closing
//!   boundary, more or fewer than two parts) gives `None`: callers then use OpenSSL's reader,
//!   so nothing is accepted or refused here that OpenSSL decides.
//! - Nothing here verifies anything: the caller checks the signature over exactly the content
//!   returned, so a difference could only make a good message fail (and fall back), never let
//!   unsigned content through.

use base64::Engine;

/// OpenSSL's S/MIME reader takes lines of at most this many bytes at a time (`MAX_SMLEN - 1`).
pub(super) const MAX_LINE: usize = 1023;

/// The MIME header block of `body` (without its final empty line) and what follows it.
pub(crate) fn split_header(body: &[u8]) -> Option<(&[u8], &[u8])> {
    // One pass over the line ends: the first that closes an empty line, in either form. (A
    // header block is short; the body after it, thousands of bytes, is never scanned.)
    let mut from = 0;
    while let Some(at) = body[from..].iter().position(|&b| b == b'\n') {
        let lf = from + at;
        if body.get(lf + 1) == Some(&b'\n') {
            return Some((&body[..lf], &body[lf + 2..]));
        }
        if lf > 0 && body[lf - 1] == b'\r' && body.get(lf + 1..lf + 3) == Some(b"\r\n") {
            return Some((&body[..lf - 1], &body[lf + 3..]));
        }
        from = lf + 1;
    }
    None
}

/// What the headers of a part say that matters here.
#[derive(Debug, Default, PartialEq, Eq)]
struct Header {
    /// The MIME type, lowercase, without parameters.
    mime: String,
    /// The `boundary` parameter, as written.
    boundary: Option<String>,
    /// `Content-Transfer-Encoding: base64`.
    base64: bool,
}

/// Parses a header block; `None` for a continued header or a line without a colon.
fn header(head: &[u8]) -> Option<Header> {
    let head = std::str::from_utf8(head).ok()?;
    let mut out = Header::default();
    for line in head.lines() {
        if line.starts_with([' ', '\t']) {
            return None;
        }
        let (name, value) = line.split_once(':')?;
        match name.trim().to_ascii_lowercase().as_str() {
            "content-type" => {
                let mut params = value.split(';');
                out.mime = params.next().unwrap_or("").trim().to_ascii_lowercase();
                for param in params {
                    if let Some((k, v)) = param.split_once('=') {
                        if k.trim().eq_ignore_ascii_case("boundary") {
                            let v = v.trim();
                            let v = v
                                .strip_prefix('"')
                                .and_then(|v| v.strip_suffix('"'))
                                .unwrap_or(v);
                            out.boundary = Some(v.to_string());
                        }
                    }
                }
            }
            "content-transfer-encoding" => {
                out.base64 = value.trim().eq_ignore_ascii_case("base64");
            }
            _ => {}
        }
    }
    Some(out)
}

/// The DER of a single base64 part whose MIME type is one of `types` (lowercase), or `None`.
fn base64_part(part: &[u8], types: &[&str]) -> Option<Vec<u8>> {
    let (head, rest) = split_header(part)?;
    let h = header(head)?;
    if !(h.base64 && types.contains(&h.mime.as_str())) {
        return None;
    }
    // Copied line by line (a byte-by-byte filter cost as much as the decoding).
    let mut text = Vec::with_capacity(rest.len());
    for piece in rest.split(u8::is_ascii_whitespace) {
        text.extend_from_slice(piece);
    }
    base64::engine::general_purpose::STANDARD.decode(text).ok()
}

/// The DER inside a single-part base64 `application/(x-)pkcs7-mime` body (an envelope, or
/// opaque signed data), or `None` for any other shape.
pub(crate) fn pkcs7_mime_der(body: &[u8]) -> Option<Vec<u8>> {
    base64_part(
        body,
        &["application/pkcs7-mime", "application/x-pkcs7-mime"],
    )
}

/// A detached `multipart/signed` body split as OpenSSL splits it: the signed content (the
/// first part, byte for byte as OpenSSL builds it) and the signature's DER (the second part,
/// `application/(x-)pkcs7-signature` in base64). `None` for any other shape.
pub(crate) fn multipart_signed(body: &[u8]) -> Option<(Vec<u8>, Vec<u8>)> {
    let (head, rest) = split_header(body)?;
    let h = header(head)?;
    if h.mime != "multipart/signed" {
        return None;
    }
    let parts = split_parts(rest, h.boundary?.as_bytes())?;
    let [content, signature] = <[Vec<u8>; 2]>::try_from(parts).ok()?;
    let der = base64_part(
        &signature,
        &[
            "application/pkcs7-signature",
            "application/x-pkcs7-signature",
        ],
    )?;
    Some((content, der))
}

/// OpenSSL's `multi_split` (flags 0): the parts between `--boundary` lines, each line's
/// trailing CR and LF removed and the lines joined with CRLF; up to the closing
/// `--boundary--`, which must be there.
fn split_parts(body: &[u8], boundary: &[u8]) -> Option<Vec<Vec<u8>>> {
    if boundary.is_empty() {
        return None;
    }
    let mut dashed = b"--".to_vec();
    dashed.extend_from_slice(boundary);
    let mut parts = Vec::new();
    let mut current: Option<Vec<u8>> = None;
    let (mut in_part, mut first, mut eol) = (false, false, false);
    // OpenSSL's `BIO_gets` hands a longer line over in pieces of `MAX_LINE` bytes, and each
    // piece is a "line" to the splitter (without a LF, it gets no CRLF after it).
    let lines = body
        .split_inclusive(|&b| b == b'\n')
        .flat_map(|line| line.chunks(MAX_LINE));
    for line in lines {
        // OpenSSL's mime_bound_check: a line that starts with `--boundary` (and is at least
        // two bytes longer than the boundary) is a boundary, whatever follows.
        if line.len() >= boundary.len() + 2 && line.starts_with(&dashed) {
            if line[dashed.len()..].starts_with(b"--") {
                parts.extend(current);
                return Some(parts);
            }
            in_part = true;
            first = true;
            continue;
        }
        if !in_part {
            continue;
        }
        let (data, next_eol) = strip_eol(line);
        if first {
            first = false;
            parts.extend(current.take());
            current = Some(Vec::with_capacity(body.len()));
        } else if eol {
            if let Some(part) = current.as_mut() {
                part.extend_from_slice(b"\r\n");
            }
        }
        eol = next_eol;
        if let Some(part) = current.as_mut() {
            part.extend_from_slice(data);
        }
    }
    None
}

/// OpenSSL's `strip_eol` (flags 0): the line without its trailing CR and LF bytes, and whether
/// it ended with a LF.
pub(super) fn strip_eol(line: &[u8]) -> (&[u8], bool) {
    let mut len = line.len();
    let mut eol = false;
    while len > 0 {
        match line[len - 1] {
            b'\n' => eol = true,
            b'\r' => {}
            _ => break,
        }
        len -= 1;
    }
    (&line[..len], eol)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_read_with_their_boundary_as_written() {
        let h = header(
            b"MIME-Version: 1.0\r\nContent-Type: multipart/signed; protocol=\"application/x-pkcs7-signature\"; micalg=\"sha-256\"; boundary=\"----AbC\"",
        )
        .unwrap();
        assert_eq!(h.mime, "multipart/signed");
        assert_eq!(h.boundary.as_deref(), Some("----AbC"));
        assert!(!h.base64);
        assert_eq!(header(b"Content-Type: a/b\n continued"), None);
        assert_eq!(header(b"no colon"), None);
    }

    #[test]
    fn parts_are_split_as_openssl_splits_them() {
        let body = b"preamble\n--b\nline one\r\n\nline\r\r\nthree\n--b\nsecond\n--b--\nafter\n";
        let parts = split_parts(body, b"b").unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0], b"line one\r\n\r\nline\r\nthree");
        assert_eq!(parts[1], b"second");
        // No closing boundary: OpenSSL refuses it, so it is not read here.
        assert_eq!(split_parts(b"--b\nx\n--b\ny\n", b"b"), None);
        // A line longer than OpenSSL's reader takes at once comes in pieces: joined as they
        // were, but a piece ending in CR loses it, as in OpenSSL.
        let mut long = b"--b\n".to_vec();
        long.extend(vec![b'a'; 2000]);
        long.extend_from_slice(b"\n--b--\n");
        assert_eq!(split_parts(&long, b"b").unwrap(), vec![vec![b'a'; 2000]]);
        let mut cr = b"--b\n".to_vec();
        cr.extend(vec![b'a'; MAX_LINE - 1]);
        cr.extend_from_slice(b"\rz\n--b--\n");
        let mut want = vec![b'a'; MAX_LINE - 1];
        want.push(b'z');
        assert_eq!(split_parts(&cr, b"b").unwrap(), vec![want]);
    }

    proptest::proptest! {
        /// The first empty line in either form: the earliest `\n\n` or `\r\n\r\n`.
        #[test]
        fn split_header_finds_the_first_empty_line(
            body in proptest::collection::vec(proptest::sample::select(b"ab\r\n".to_vec()), 0..40)
        ) {
            let lf = body.windows(2).position(|w| w == b"\n\n").map(|i| (i, i + 2));
            let crlf = body.windows(4).position(|w| w == b"\r\n\r\n").map(|i| (i, i + 4));
            let want = lf.into_iter().chain(crlf).min().map(|(end, start)| (&body[..end], &body[start..]));
            proptest::prop_assert_eq!(split_header(&body), want);
        }
    }

    #[test]
    fn strip_eol_removes_every_trailing_cr_and_lf() {
        assert_eq!(strip_eol(b"ab\r\r\n"), (&b"ab"[..], true));
        assert_eq!(strip_eol(b"ab"), (&b"ab"[..], false));
        assert_eq!(strip_eol(b"\n"), (&b""[..], true));
        assert_eq!(strip_eol(b"a\rb\r"), (&b"a\rb"[..], false));
    }
}
