//! The S/MIME primitives, as the `openssl smime` steps name them: sign (`-sign -text`),
//! encrypt (`-encrypt -<cipher>`), decrypt (`-decrypt`) and verify (`-verify`, then our own
//! chain check). They know nothing of a payload format: the recipes of each protocol version
//! ([`super::seal`], [`super::open`]) put them together.
//!
//! Guarantees:
//! - Output is byte-compatible with the `openssl smime` command line (S/MIME text, detached
//!   `multipart/signed` with a `text/plain` part, `application/x-pkcs7-mime` envelopes).
//! - Only ASCII input reaches OpenSSL's S/MIME reader (S/MIME is ASCII; the `openssl` crate has
//!   panicked on other bytes quoted in OpenSSL's error data): other input is refused first.
//! - [`verify`] returns content only if the signature is valid, every signer chains to the
//!   trust store, and (unless allowed) no signer used a digest weaker than SHA-2.

use openssl::nid::Nid;
use openssl::pkcs7::{Pkcs7, Pkcs7Flags};
use openssl::stack::Stack;
use openssl::x509::X509;

use super::carried::{self, Carried};
use super::cipher::Cipher;
use super::error::{ssl_reason, CryptoError};
use super::identity::Identity;
use super::mime;
use super::mime_write;
use super::signed_template;
use super::trust::TrustStore;

/// `openssl smime -sign -text`: a detached signature, content wrapped in a text/plain part
/// (and its line ends made CRLF, as MIME canonical text).
///
/// The text is canonicalised and written by [`mime_write`], byte for byte as OpenSSL's writer
/// would; the canonical bytes are signed unchanged (`BINARY`), so what is signed is what is
/// written. The signature is OpenSSL's, filled in from the signer's [`signed_template`].
pub(crate) fn sign(content: &[u8], signer: &Identity) -> Result<Vec<u8>, CryptoError> {
    let err = |e: openssl::error::ErrorStack| CryptoError::Seal {
        step: "signing",
        reason: ssl_reason(&e),
    };
    let signed = mime_write::canonical_text(content);
    let der = signed_template::signature_der(&signed, signer).map_err(err)?;
    let mut random = [0u8; 32];
    openssl::rand::rand_bytes(&mut random).map_err(err)?;
    // The default digest of every key type OpenSSL's PKCS#7 signs with is SHA-256; `micalg`
    // only informs a reader (OpenSSL's ignores it).
    Ok(mime_write::multipart_signed(
        &signed,
        &der,
        "sha-256",
        &mime_write::boundary(random),
    ))
}

/// `openssl smime -encrypt -<cipher> CERT`: the whole signed message is the enveloped content,
/// with its line ends made CRLF as `-encrypt` makes them ([`mime_write::crlf_copy`], then
/// enveloped unchanged with `BINARY`); the envelope is written by [`mime_write`].
pub(crate) fn encrypt(
    signed: &[u8],
    recipient: &X509,
    cipher: Cipher,
) -> Result<Vec<u8>, CryptoError> {
    let err = |e: openssl::error::ErrorStack| CryptoError::Seal {
        step: "encrypting",
        reason: ssl_reason(&e),
    };
    let mut recipients = Stack::new().map_err(err)?;
    recipients.push(recipient.clone()).map_err(err)?;
    let mut content = Vec::with_capacity(signed.len() + signed.len() / 32 + 2);
    mime_write::crlf_copy(signed, &mut content);
    let p7 =
        Pkcs7::encrypt(&recipients, &content, cipher.openssl(), Pkcs7Flags::BINARY).map_err(err)?;
    let der = p7.to_der().map_err(err)?;
    Ok(mime_write::pkcs7_mime(&der, "enveloped-data"))
}

/// Whether `body` announces itself as an S/MIME envelope in its MIME header: the rule of the
/// Python SSM's receiver (`application/pkcs7-mime` or `application/x-pkcs7-mime`), except that a
/// body naming `smime-type=signed-data` (opaque signing, `-nodetach`) is not an envelope.
pub(crate) fn looks_enveloped(body: &[u8]) -> bool {
    let head = String::from_utf8_lossy(&body[..body.len().min(4096)]).to_ascii_lowercase();
    (head.contains("application/pkcs7-mime") || head.contains("application/x-pkcs7-mime"))
        && !head.contains("signed-data")
}

/// `openssl smime -decrypt`: opens the envelope `body` with `identity`, returning its content
/// (for SSM, the signed message). Refuses anything that is not enveloped-data.
pub(crate) fn decrypt(body: &[u8], identity: &Identity) -> Result<Vec<u8>, CryptoError> {
    // S/MIME is ASCII (headers and base64). Checked first because the `openssl` crate
    // panics (`Error::get` unwraps UTF-8) when OpenSSL's error data quotes a header with
    // other bytes: a 23-byte body found by the `opener` fuzz target.
    if !body.is_ascii() {
        return Err(CryptoError::NotEncrypted {
            reason: "not an S/MIME message: it holds bytes that are not ASCII".into(),
        });
    }
    let envelope = match read_envelope(body) {
        Ok(p7) => p7,
        Err(e) => {
            // A damaged envelope still says what it is in its MIME header.
            let head = String::from_utf8_lossy(&body[..body.len().min(4096)]).to_lowercase();
            return Err(if head.contains("enveloped-data") {
                CryptoError::Decrypt {
                    reason: format!("cannot read the S/MIME envelope: {}", ssl_reason(&e)),
                }
            } else {
                CryptoError::NotEncrypted {
                    reason: format!("not an S/MIME enveloped message: {}", ssl_reason(&e)),
                }
            });
        }
    };
    match envelope.type_().map(|t| t.nid()) {
        Some(Nid::PKCS7_ENVELOPED) => {}
        Some(Nid::PKCS7_SIGNED) => {
            return Err(CryptoError::NotEncrypted {
                reason: "the message is signed but not encrypted".into(),
            })
        }
        other => {
            return Err(CryptoError::NotEncrypted {
                reason: format!(
                    "the S/MIME message is of type {}, not enveloped-data",
                    other.and_then(|n| n.short_name().ok()).unwrap_or("unknown")
                ),
            })
        }
    }
    envelope
        .decrypt(&identity.key, &identity.cert, Pkcs7Flags::empty())
        .map_err(|e| CryptoError::Decrypt {
            reason: ssl_reason(&e),
        })
}

/// Reads an S/MIME envelope: the common form is read by [`mime`] (one decode of the whole
/// text), anything else by OpenSSL's reader. The PKCS#7 structure is OpenSSL's own DER parse
/// either way.
fn read_envelope(body: &[u8]) -> Result<Pkcs7, openssl::error::ErrorStack> {
    if let Some(p7) = mime::pkcs7_mime_der(body).and_then(|der| Pkcs7::from_der(&der).ok()) {
        return Ok(p7);
    }
    Pkcs7::from_smime(body).map(|(p7, _)| p7)
}

/// The DER of the S/MIME envelope `body`, read as [`decrypt`] reads it (the common form by
/// [`mime`], anything else by OpenSSL's reader); `None` if it is not one.
pub(crate) fn envelope_der(body: &[u8]) -> Option<Vec<u8>> {
    if !body.is_ascii() {
        return None;
    }
    mime::pkcs7_mime_der(body).or_else(|| {
        Pkcs7::from_smime(body)
            .ok()
            .and_then(|(p7, _)| p7.to_der().ok())
    })
}

/// What a signed message may hold besides its (always ASCII) MIME headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Content {
    /// ASCII only: a version 1 payload is base64 text.
    Ascii,
    /// Any bytes (SSM2 signs the records as they are: UTF-8 text, or anything).
    Any,
}

/// Whether the MIME header block (up to the first empty line) is ASCII: OpenSSL's error data
/// quotes headers, and the `openssl` crate panics on error data that is not UTF-8.
fn headers_are_ascii(body: &[u8]) -> bool {
    mime::split_header(body)
        .map_or(body, |(head, _)| head)
        .is_ascii()
}

/// `openssl smime -verify -noverify`, then the signer's chain against `trust` (ours, so that
/// CRLs and the absence of a purpose requirement are as configured). Returns the signed content
/// exactly as signed (with a `-text` header, if any) and the first signer's certificate.
pub(crate) fn verify(
    signed: &[u8],
    carried: &Carried,
    trust: &TrustStore,
    allow_weak_digests: bool,
    content: Content,
) -> Result<(Vec<u8>, X509), CryptoError> {
    // Anyone can encrypt to our certificate: the same ASCII check as for the envelope, on
    // the whole message when its content must be ASCII anyway, else on its headers (the
    // caller's panic guard covers what OpenSSL might quote from further in).
    let ascii = match content {
        Content::Ascii => signed.is_ascii(),
        Content::Any => headers_are_ascii(signed),
    };
    if !ascii {
        return Err(CryptoError::NotSigned {
            reason: match content {
                Content::Ascii => "the decrypted content holds bytes that are not ASCII",
                Content::Any => "the message's MIME headers hold bytes that are not ASCII",
            }
            .into(),
        });
    }
    // The common forms are read by `mime` (one decode of the whole text); if that fails to
    // give a verified message, OpenSSL's reader has the last word (and gives the error).
    let fast = mime::multipart_signed(signed)
        .map(|(content, der)| (der, Some(content)))
        .or_else(|| mime::pkcs7_mime_der(signed).map(|der| (der, None)));
    if let Some((der, detached)) = fast {
        if let Some(verified) = verify_der(
            &der,
            detached.as_deref(),
            carried,
            trust,
            allow_weak_digests,
        ) {
            return Ok(verified);
        }
    }
    let (p7, detached) = Pkcs7::from_smime(signed).map_err(|e| CryptoError::NotSigned {
        reason: format!("not an S/MIME message ({})", ssl_reason(&e)),
    })?;
    verify_parsed(&p7, detached.as_deref(), None, trust, allow_weak_digests)
}

/// [`verify`] of the DER of a signature read by `mime`, its certificates taken from `carried`
/// when it has them (see [`super::carried`]); `None` if it does not verify this way.
fn verify_der(
    der: &[u8],
    detached: Option<&[u8]>,
    carried: &Carried,
    trust: &TrustStore,
    allow_weak_digests: bool,
) -> Option<(Vec<u8>, X509)> {
    let Some(split) = carried::split(der) else {
        let p7 = Pkcs7::from_der(der).ok()?;
        return verify_parsed(&p7, detached, None, trust, allow_weak_digests).ok();
    };
    let (certs, cached) = carried.get(split.certs)?;
    let p7 = Pkcs7::from_der(&split.without_certs).ok()?;
    let verified = verify_parsed(&p7, detached, Some(&certs), trust, allow_weak_digests).ok()?;
    if !cached {
        carried.keep(split.certs, certs);
    }
    Some(verified)
}

/// [`verify`] of a parsed message and its detached content. The signer is looked for in
/// `certs` (the certificates the message carried, parsed apart) or, if `None`, in the
/// certificates inside `p7`; either list is the untrusted chain.
fn verify_parsed(
    p7: &Pkcs7,
    detached: Option<&[u8]>,
    certs: Option<&[X509]>,
    trust: &TrustStore,
    allow_weak_digests: bool,
) -> Result<(Vec<u8>, X509), CryptoError> {
    if p7.type_().map(|t| t.nid()) != Some(Nid::PKCS7_SIGNED) {
        return Err(CryptoError::NotSigned {
            reason: "an S/MIME message of another type than signed-data".into(),
        });
    }
    let bad = |e: openssl::error::ErrorStack| CryptoError::BadSignature {
        reason: ssl_reason(&e),
    };
    let mut given = Stack::new().map_err(bad)?;
    for cert in certs.unwrap_or_default() {
        given.push(cert.clone()).map_err(bad)?;
    }
    let mut content = Vec::new();
    p7.verify(
        &given,
        &trust.store(),
        detached,
        Some(&mut content),
        Pkcs7Flags::NOVERIFY,
    )
    .map_err(bad)?;
    if !allow_weak_digests {
        for nid in signer_digests(p7) {
            if !STRONG_DIGESTS.contains(&nid) {
                let digest = Nid::from_raw(nid)
                    .short_name()
                    .map(str::to_string)
                    .unwrap_or_else(|_| format!("NID {nid}"));
                return Err(CryptoError::WeakDigest { digest });
            }
        }
    }
    let signers = p7.signers(&given, Pkcs7Flags::empty()).map_err(bad)?;
    let embedded: Vec<X509> = match certs {
        Some(certs) => certs.to_vec(),
        None => p7
            .signed()
            .and_then(|s| s.certificates())
            .map(|certs| certs.iter().map(|c| c.to_owned()).collect())
            .unwrap_or_default(),
    };
    let mut first = None;
    for signer in &signers {
        let signer = signer.to_owned();
        trust.verify(&signer, &embedded)?;
        first.get_or_insert(signer);
    }
    let signer = first.ok_or_else(|| CryptoError::NotSigned {
        reason: "the signed message has no signer".into(),
    })?;
    Ok((content, signer))
}

/// The digests a signature may use unless weak ones are allowed: SHA-2 and SHA-3.
const STRONG_DIGESTS: [i32; 8] = [
    openssl_sys::NID_sha224,
    openssl_sys::NID_sha256,
    openssl_sys::NID_sha384,
    openssl_sys::NID_sha512,
    openssl_sys::NID_sha3_224,
    openssl_sys::NID_sha3_256,
    openssl_sys::NID_sha3_384,
    openssl_sys::NID_sha3_512,
];

/// The digest algorithm (NID) of each signer of a signed-data PKCS#7. The `openssl` crate does
/// not expose signer infos, hence the FFI.
fn signer_digests(p7: &Pkcs7) -> Vec<i32> {
    use foreign_types::ForeignType;
    let mut out = Vec::new();
    // SAFETY: `p7` is a valid signed-data PKCS7 for the whole block; every pointer read here
    // is owned by it (get0/get_signer_info return internal pointers, nothing is freed), and
    // each is checked for NULL before use.
    unsafe {
        let infos = openssl_sys::PKCS7_get_signer_info(p7.as_ptr());
        if infos.is_null() {
            return out;
        }
        let stack = infos as *const openssl_sys::OPENSSL_STACK;
        for i in 0..openssl_sys::OPENSSL_sk_num(stack) {
            let si = openssl_sys::OPENSSL_sk_value(stack, i) as *mut openssl_sys::PKCS7_SIGNER_INFO;
            if si.is_null() {
                out.push(openssl_sys::NID_undef);
                continue;
            }
            let mut digest: *mut openssl_sys::X509_ALGOR = std::ptr::null_mut();
            openssl_sys::PKCS7_SIGNER_INFO_get0_algs(
                si,
                std::ptr::null_mut(),
                &mut digest,
                std::ptr::null_mut(),
            );
            if digest.is_null() {
                out.push(openssl_sys::NID_undef);
                continue;
            }
            let mut object: *const openssl_sys::ASN1_OBJECT = std::ptr::null();
            openssl_sys::X509_ALGOR_get0(
                &mut object,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                digest,
            );
            out.push(if object.is_null() {
                openssl_sys::NID_undef
            } else {
                openssl_sys::OBJ_obj2nid(object)
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::harness::pki::Pki;

    #[test]
    fn envelopes_read_here_are_what_openssl_reads() {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::generate(dir.path()).unwrap();
        let server = Identity::load(&pki.server.cert, &pki.server.key).unwrap();
        let body = encrypt(b"signed text\n", &server.cert, Cipher::Aes128).unwrap();
        let ours = mime::pkcs7_mime_der(&body).expect("the common form is read here");
        let theirs = Pkcs7::from_smime(&body).unwrap().0.to_der().unwrap();
        assert_eq!(ours, theirs);
        // CRLF line ends, as some senders write them: the same DER.
        let crlf = String::from_utf8(body.clone())
            .unwrap()
            .replace('\n', "\r\n");
        assert_eq!(
            mime::pkcs7_mime_der(crlf.as_bytes()).as_deref(),
            Some(&theirs[..])
        );
        assert_eq!(
            decrypt(crlf.as_bytes(), &server).unwrap(),
            decrypt(&body, &server).unwrap()
        );

        // Other shapes are left to OpenSSL's reader.
        let text = String::from_utf8(body).unwrap();
        let continued = text.replacen("Content-Type:", "Content-Type:\n ", 1);
        assert_eq!(mime::pkcs7_mime_der(continued.as_bytes()), None);
        let other = text.replacen("base64", "quoted-printable", 1);
        assert_eq!(mime::pkcs7_mime_der(other.as_bytes()), None);
        assert_eq!(mime::pkcs7_mime_der(b"no header at all"), None);
        let broken = text.replacen("MII", "M!I", 1);
        assert_eq!(mime::pkcs7_mime_der(broken.as_bytes()), None);
        assert!(decrypt(broken.as_bytes(), &server).is_err());
    }

    #[test]
    fn signed_messages_read_here_are_what_openssl_reads() {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::generate(dir.path()).unwrap();
        let client = Identity::load(&pki.client.cert, &pki.client.key).unwrap();
        let trust = TrustStore::new(Some(&pki.capath), None, false).unwrap();
        let carried = Carried::default();
        // Version 1 signs its base64 payload as one line of thousands of bytes.
        let long_line = format!("{}\n", "QUJD".repeat(1500));
        let texts: [&[u8]; 5] = [
            b"APEL-summary-job-message: v0.2\nSite: A\n%%\n",
            "Site: caf\u{e9} \u{2713}\r\n\r\n\n%%".as_bytes(),
            b"no final newline",
            b"",
            long_line.as_bytes(),
        ];
        for text in texts {
            let signed = sign(text, &client).unwrap();
            let crlf = String::from_utf8(signed.clone())
                .unwrap()
                .replace("\r\n", "\n")
                .replace('\n', "\r\n");
            for body in [signed.as_slice(), crlf.as_bytes()] {
                let (content, der) = mime::multipart_signed(body).expect("read here");
                let (p7, theirs) = Pkcs7::from_smime(body).unwrap();
                assert_eq!(Some(&content), theirs.as_ref(), "{text:?}");
                assert_eq!(der, p7.to_der().unwrap());
                let ours = Pkcs7::from_der(&der).unwrap();
                let (verified, _) =
                    verify_parsed(&ours, Some(&content), None, &trust, false).unwrap();
                assert_eq!(
                    verify(body, &carried, &trust, false, Content::Any)
                        .unwrap()
                        .0,
                    verified
                );
                let (by_openssl, _) =
                    verify_parsed(&p7, theirs.as_deref(), None, &trust, false).unwrap();
                assert_eq!(verified, by_openssl);
            }
        }
        // Content changed after signing: refused by both readers, with OpenSSL's reason.
        let signed = String::from_utf8(sign(b"Site: A\n", &client).unwrap()).unwrap();
        let forged = signed.replacen("Site: A", "Site: B", 1);
        assert!(matches!(
            verify(forged.as_bytes(), &carried, &trust, false, Content::Any),
            Err(CryptoError::BadSignature { .. })
        ));
    }

    #[test]
    fn carried_certificates_are_parsed_once_and_only_kept_after_a_verified_message() {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::generate(dir.path()).unwrap();
        let client = Identity::load(&pki.client.cert, &pki.client.key).unwrap();
        let trust = TrustStore::new(Some(&pki.capath), None, false).unwrap();
        let carried = Carried::default();

        let signed = sign(b"Site: A\n", &client).unwrap();
        let (_, der) = mime::multipart_signed(&signed).unwrap();
        let split = carried::split(&der).expect("OpenSSL's signatures are split");
        assert_eq!(split.certs, &client.cert.to_der().unwrap()[..]);
        let bare = Pkcs7::from_der(&split.without_certs).unwrap();
        assert!(bare.signed().and_then(|s| s.certificates()).is_none());
        assert!(der.len() > split.without_certs.len());

        // A forgery carrying the same certificate does not get it kept.
        let forged = String::from_utf8(signed.clone())
            .unwrap()
            .replacen("Site: A", "Site: B", 1);
        assert!(verify(forged.as_bytes(), &carried, &trust, false, Content::Any).is_err());
        assert_eq!(carried.len(), 0);
        // Nor does a signer the store does not trust.
        let other = Pki::generate(&dir.path().join("other")).unwrap();
        let stranger = Identity::load(&other.client.cert, &other.client.key).unwrap();
        let foreign = sign(b"Site: A\n", &stranger).unwrap();
        assert!(matches!(
            verify(&foreign, &carried, &trust, false, Content::Any),
            Err(CryptoError::UntrustedSigner { .. })
        ));
        assert_eq!(carried.len(), 0);

        // A good message: kept, and the next one with the same certificate gives the same.
        let (first, signer) = verify(&signed, &carried, &trust, false, Content::Any).unwrap();
        assert_eq!(carried.len(), 1);
        assert_eq!(signer.to_der().unwrap(), client.cert.to_der().unwrap());
        let again = sign(b"Site: C\n", &client).unwrap();
        let (second, signer) = verify(&again, &carried, &trust, false, Content::Any).unwrap();
        assert_eq!(carried.len(), 1);
        assert_eq!(signer.to_der().unwrap(), client.cert.to_der().unwrap());
        assert_ne!(first, second);
        assert!(second.ends_with(b"Site: C\r\n"), "{second:?}");
        // And a forgery now, with the certificate in the cache: still refused.
        let forged = String::from_utf8(again)
            .unwrap()
            .replacen("Site: C", "Site: D", 1);
        assert!(matches!(
            verify(forged.as_bytes(), &carried, &trust, false, Content::Any),
            Err(CryptoError::BadSignature { .. })
        ));
    }

    /// The `boundary` parameter's 32 digits in a `multipart/signed` text.
    fn boundary_of(text: &[u8]) -> String {
        let text = String::from_utf8_lossy(text);
        let at = text.find("boundary=\"----").expect("a boundary") + "boundary=\"----".len();
        text[at..at + 32].to_string()
    }

    /// Asserts `ours == theirs`, showing where they first differ (the texts are long).
    fn assert_same(ours: &[u8], theirs: &[u8], what: &str) {
        if ours == theirs {
            return;
        }
        let at = ours.iter().zip(theirs).take_while(|(a, b)| a == b).count();
        let around = |t: &[u8]| {
            String::from_utf8_lossy(&t[at.saturating_sub(40)..(at + 40).min(t.len())]).into_owned()
        };
        panic!(
            "{what}: {} bytes here, {} by OpenSSL, first difference at {at}:\n here:    {:?}\n OpenSSL: {:?}",
            ours.len(),
            theirs.len(),
            around(ours),
            around(theirs)
        );
    }

    /// What OpenSSL's `-encrypt` envelopes for `signed` (flags 0: its own line-end copy).
    fn enveloped_by_openssl(signed: &[u8], server: &Identity) -> Vec<u8> {
        let mut recipients = Stack::new().unwrap();
        recipients.push(server.cert.clone()).unwrap();
        let p7 = Pkcs7::encrypt(
            &recipients,
            signed,
            Cipher::Aes128.openssl(),
            Pkcs7Flags::empty(),
        )
        .unwrap();
        p7.decrypt(&server.key, &server.cert, Pkcs7Flags::empty())
            .unwrap()
    }

    #[test]
    fn signed_and_enveloped_text_is_written_byte_for_byte_as_openssl_writes_it() {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::generate(dir.path()).unwrap();
        let client = Identity::load(&pki.client.cert, &pki.client.key).unwrap();
        let server = Identity::load(&pki.server.cert, &pki.server.key).unwrap();
        let check = |text: &[u8]| {
            let ours = sign(text, &client).unwrap();
            // The same structure written by OpenSSL (`REUSE_DIGEST`: written as it is, not
            // signed again), with the text canonicalised by OpenSSL's own copy.
            let (_, der) = mime::multipart_signed(&ours).expect("read here");
            let p7 = Pkcs7::from_der(&der).unwrap();
            let flags = Pkcs7Flags::TEXT | Pkcs7Flags::DETACHED | Pkcs7Flags::REUSE_DIGEST;
            let theirs = p7.to_smime(text, flags).unwrap();
            let theirs = String::from_utf8(theirs.clone())
                .unwrap()
                .replace(&boundary_of(&theirs), &boundary_of(&ours));
            assert_same(&ours, theirs.as_bytes(), "signed");

            let sealed = encrypt(&ours, &server.cert, Cipher::Aes128).unwrap();
            let der = mime::pkcs7_mime_der(&sealed).expect("read here");
            let theirs = Pkcs7::from_der(&der)
                .unwrap()
                .to_smime(&[], Pkcs7Flags::empty())
                .unwrap();
            assert_same(&sealed, &theirs, "enveloped");
            assert_same(
                &decrypt(&sealed, &server).unwrap(),
                &enveloped_by_openssl(&ours, &server),
                "enveloped content",
            );
        };
        let long_line = "QUJD".repeat(1500);
        let mut cr_at_a_piece_end = vec![b'x'; mime::MAX_LINE - 1];
        cr_at_a_piece_end.extend_from_slice(b"\ry\n");
        let texts: [&[u8]; 7] = [
            b"APEL-summary-job-message: v0.2\nSite: A\n%%\n",
            b"",
            b"no final newline",
            b"\r\n\r\n\n\r",
            long_line.as_bytes(),
            &cr_at_a_piece_end,
            "caf\u{e9}\r\r\n".as_bytes(),
        ];
        for text in texts {
            check(text);
        }
        // Runs of one byte, short and long, so that lines come both short and longer than
        // OpenSSL's 1,023-byte reads, and CRs fall anywhere, piece ends included.
        let run = (proptest::sample::select(b"ab \r\n".to_vec()), 1..1100usize);
        let runs = proptest::collection::vec(run, 0..12);
        let lines = proptest::strategy::Strategy::prop_map(runs, |runs| {
            runs.into_iter()
                .flat_map(|(byte, n)| std::iter::repeat_n(byte, n))
                .collect::<Vec<u8>>()
        });
        let mut runner =
            proptest::test_runner::TestRunner::new(proptest::test_runner::Config::with_cases(48));
        runner
            .run(&lines, |text| {
                check(&text);
                Ok(())
            })
            .unwrap();
    }
}
