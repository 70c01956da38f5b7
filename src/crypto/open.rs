//! Opening: decrypt, verify the signature, check the signer's chain, base64-decode,
//! zlib-decompress (with a size cap). The reverse of [`super::seal`].
//!
//! Guarantees (besides those of the module [`super`]):
//! - A signature made with a digest other than SHA-2 or SHA-3 (MD5, SHA-1, anything unknown)
//!   is refused with [`CryptoError::WeakDigest`], unless the opener was built
//!   [`Opener::allow_weak_digests`] for old peers.
//! - A panic inside OpenSSL's bindings on hostile bytes is caught and becomes
//!   [`CryptoError::Decrypt`] ("internal error"): opening never unwinds into the caller.

use std::io::Read;

use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine;
use flate2::read::ZlibDecoder;
use openssl::nid::Nid;
use openssl::pkcs7::{Pkcs7, Pkcs7Flags};
use openssl::stack::Stack;
use openssl::x509::X509;

use super::dn::subject_dn;
use super::error::{ssl_reason, CryptoError};
use super::identity::Identity;
use super::trust::TrustStore;

/// The default cap on a decompressed message: 64 MiB.
pub const DEFAULT_MAX_SIZE: usize = 64 * 1024 * 1024;

/// Standard alphabet; padding optional (some encoders drop it), whitespace removed beforehand.
const LENIENT_B64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// What came out of an opened message.
#[derive(Clone)]
pub struct Opened {
    /// The original message bytes.
    pub content: Vec<u8>,
    /// The signer's subject DN in slash form.
    pub signer_dn: String,
    /// The signer's certificate.
    pub signer_cert: X509,
}

impl std::fmt::Debug for Opened {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Opened")
            .field("content_len", &self.content.len())
            .field("signer_dn", &self.signer_dn)
            .finish_non_exhaustive()
    }
}

/// Opens messages addressed to one identity, trusting one store. Cheap to clone, shareable
/// between threads; holds everything in memory so opening does no file I/O.
#[derive(Clone, Debug)]
pub struct Opener {
    identity: Identity,
    trust: TrustStore,
    max_size: usize,
    allow_weak_digests: bool,
}

impl Opener {
    /// An opener that decrypts with `identity` and requires signers to chain to `trust`, with
    /// the [`DEFAULT_MAX_SIZE`] cap.
    pub fn new(identity: Identity, trust: TrustStore) -> Opener {
        Opener {
            identity,
            trust,
            max_size: DEFAULT_MAX_SIZE,
            allow_weak_digests: false,
        }
    }

    /// Accepts signatures made with MD5 or SHA-1 digests too (refused by default), for peers
    /// whose OpenSSL still signs with SHA-1.
    pub fn allow_weak_digests(mut self, allow: bool) -> Opener {
        self.allow_weak_digests = allow;
        self
    }

    /// Sets the cap on the decompressed size of a message (bigger ones fail with
    /// [`CryptoError::TooLarge`] without being decompressed further).
    pub fn with_max_size(mut self, max: usize) -> Opener {
        self.max_size = max;
        self
    }

    /// The identity messages are decrypted with.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// The trust store signers are checked against.
    pub fn trust(&self) -> &TrustStore {
        &self.trust
    }

    /// Opens a sealed message body.
    ///
    /// Errors, by step: [`CryptoError::NotEncrypted`] / [`CryptoError::Decrypt`] (envelope),
    /// [`CryptoError::NotSigned`] / [`CryptoError::BadSignature`] (signature),
    /// [`CryptoError::UntrustedSigner`] / [`CryptoError::Expired`] /
    /// [`CryptoError::NotYetValid`] / [`CryptoError::Revoked`] (signer's chain),
    /// [`CryptoError::NotBase64`], [`CryptoError::NotZlib`], [`CryptoError::TooLarge`].
    pub fn open(&self, body: &[u8]) -> Result<Opened, CryptoError> {
        // Second line of defence: the `openssl` crate has panicked on hostile bytes before
        // (UTF-8 unwraps in its error reporting); a panic must be a refusal, not a crash.
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.open_inner(body))) {
            Ok(result) => result,
            Err(panic) => {
                let what = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "unknown".into());
                Err(CryptoError::Decrypt {
                    reason: format!("internal error while opening (panic: {what})"),
                })
            }
        }
    }

    fn open_inner(&self, body: &[u8]) -> Result<Opened, CryptoError> {
        let signed = self.decrypt(body)?;
        let (text, signer_cert) = self.verify(&signed)?;
        let content = unpack(&text, self.max_size)?;
        Ok(Opened {
            content,
            signer_dn: subject_dn(&signer_cert),
            signer_cert,
        })
    }

    fn decrypt(&self, body: &[u8]) -> Result<Vec<u8>, CryptoError> {
        // S/MIME is ASCII (headers and base64). Checked first because the `openssl` crate
        // panics (`Error::get` unwraps UTF-8) when OpenSSL's error data quotes a header with
        // other bytes: a 23-byte body found by the `opener` fuzz target.
        if !body.is_ascii() {
            return Err(CryptoError::NotEncrypted {
                reason: "not an S/MIME message: it holds bytes that are not ASCII".into(),
            });
        }
        let envelope = match Pkcs7::from_smime(body) {
            Ok((p7, _)) => p7,
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
            .decrypt(&self.identity.key, &self.identity.cert, Pkcs7Flags::empty())
            .map_err(|e| CryptoError::Decrypt {
                reason: ssl_reason(&e),
            })
    }

    /// Verifies the signature (not the chain: `NOVERIFY`), then the signer's chain against the
    /// trust store. Returns the signed content and the signer's certificate.
    fn verify(&self, signed: &[u8]) -> Result<(Vec<u8>, X509), CryptoError> {
        // Anyone can encrypt to our certificate: the same ASCII check as for the envelope.
        if !signed.is_ascii() {
            return Err(CryptoError::NotSigned {
                reason: "the decrypted content holds bytes that are not ASCII".into(),
            });
        }
        let (p7, detached) = Pkcs7::from_smime(signed).map_err(|e| CryptoError::NotSigned {
            reason: format!("not an S/MIME message ({})", ssl_reason(&e)),
        })?;
        if p7.type_().map(|t| t.nid()) != Some(Nid::PKCS7_SIGNED) {
            return Err(CryptoError::NotSigned {
                reason: "an S/MIME message of another type than signed-data".into(),
            });
        }
        let bad = |e: openssl::error::ErrorStack| CryptoError::BadSignature {
            reason: ssl_reason(&e),
        };
        let no_certs = Stack::new().map_err(bad)?;
        let mut content = Vec::new();
        p7.verify(
            &no_certs,
            &self.trust.store(),
            detached.as_deref(),
            Some(&mut content),
            Pkcs7Flags::NOVERIFY,
        )
        .map_err(bad)?;
        if !self.allow_weak_digests {
            for nid in signer_digests(&p7) {
                if !STRONG_DIGESTS.contains(&nid) {
                    let digest = Nid::from_raw(nid)
                        .short_name()
                        .map(str::to_string)
                        .unwrap_or_else(|_| format!("NID {nid}"));
                    return Err(CryptoError::WeakDigest { digest });
                }
            }
        }
        let signers = p7.signers(&no_certs, Pkcs7Flags::empty()).map_err(bad)?;
        let embedded: Vec<X509> = p7
            .signed()
            .and_then(|s| s.certificates())
            .map(|certs| certs.iter().map(|c| c.to_owned()).collect())
            .unwrap_or_default();
        let mut first = None;
        for signer in &signers {
            let signer = signer.to_owned();
            self.trust.verify(&signer, &embedded)?;
            first.get_or_insert(signer);
        }
        let signer = first.ok_or_else(|| CryptoError::NotSigned {
            reason: "the signed message has no signer".into(),
        })?;
        Ok((content, signer))
    }
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

/// The last steps of [`Opener::open`], on verified signed content: drops the `-text` MIME
/// header if there is one, base64-decodes (ignoring whitespace) and zlib-decompresses, refusing
/// output over `max` bytes. Public so that it can be fuzzed on its own.
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

#[cfg(test)]
mod tests {
    use super::*;

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
        let encoded = crate::crypto::seal::encode(&vec![b'x'; 1000]).unwrap();
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
