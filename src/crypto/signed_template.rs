//! The detached PKCS#7 signature of a signer, made once by OpenSSL and then filled in per
//! message: the signing time, the content's digest and the RSA signature over the signed
//! attributes are the only bytes of a signature that change from one message to the next.
//!
//! Why: OpenSSL 3.0's `PKCS7_sign` builds the whole structure anew for every message, fetching
//! each S/MIME capability's cipher and digest from its providers and encoding the signer's
//! issuer, serial and certificate again; `perf` put that at about a seventh of the sender's
//! CPU per 10 KB message beside its RSA operation (`docs/performance.md`). Filled in here, a
//! signature costs its two SHA-256 digests and the RSA operation.
//!
//! Guarantees:
//! - A template is used only if, when it is made, filling it in for OpenSSL's own content and
//!   signing time gives back OpenSSL's signature byte for byte (RSA PKCS#1 v1.5 signatures are
//!   deterministic); otherwise, and for keys other than RSA or signing times that DER writes
//!   otherwise (from 2050), [`signature_der`] is OpenSSL's `PKCS7_sign`. So the output is what
//!   OpenSSL would have written for the same content and second.
//! - A template is kept per signer certificate and used only with the private key it was made
//!   with; at most [`MAX_TEMPLATES`] are kept.

use std::ops::Range;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use openssl::error::ErrorStack;
use openssl::hash::MessageDigest;
use openssl::pkcs7::{Pkcs7, Pkcs7Flags};
use openssl::pkey::{Id, PKey, Private};
use openssl::sign::Signer;
use openssl::stack::Stack;

use super::der::{element, expect, CONTEXT_0, CONTEXT_1, INTEGER, OID, SEQUENCE, SET};
use super::identity::Identity;

/// How many signers' templates a process keeps (a sender has one; the bench one per sender).
const MAX_TEMPLATES: usize = 64;
const OCTET_STRING: u8 = 0x04;
const UTC_TIME: u8 = 0x17;
/// 1.2.840.113549.1.9.4, messageDigest.
const MESSAGE_DIGEST: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x04];
/// 1.2.840.113549.1.9.5, signingTime.
const SIGNING_TIME: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x05];

/// Templates made so far, by signer certificate.
static TEMPLATES: Mutex<Vec<Arc<Template>>> = Mutex::new(Vec::new());

/// The DER of a detached PKCS#7 signature of `content` by `signer` (SHA-256), exactly as
/// `PKCS7_sign` with `DETACHED | BINARY` writes it.
pub(crate) fn signature_der(content: &[u8], signer: &Identity) -> Result<Vec<u8>, ErrorStack> {
    let time = utc_time(SystemTime::now());
    if let Some((time, template)) = time.zip(template_for(signer)) {
        if let Ok(der) = template.fill(content, &time) {
            return Ok(der);
        }
    }
    // No template, or filling it in failed: OpenSSL's own signature, with OpenSSL's errors.
    openssl_signature(content, signer)
}

/// OpenSSL's own signature, as the template is made from.
fn openssl_signature(content: &[u8], signer: &Identity) -> Result<Vec<u8>, ErrorStack> {
    let flags = Pkcs7Flags::DETACHED | Pkcs7Flags::BINARY;
    let no_extra_certs = Stack::new()?;
    Pkcs7::sign(&signer.cert, &signer.key, &no_extra_certs, content, flags)?.to_der()
}

/// The template of `signer`, made on first use; `None` if it cannot have one.
fn template_for(signer: &Identity) -> Option<Arc<Template>> {
    let cert = signer.cert.to_der().ok()?;
    {
        let templates = TEMPLATES.lock().ok()?;
        if let Some(found) = templates.iter().find(|t| t.cert == cert) {
            return found.key.public_eq(&signer.key).then(|| found.clone());
        }
    }
    let made = Arc::new(Template::make(signer, cert)?);
    let mut templates = TEMPLATES.lock().ok()?;
    if templates.len() >= MAX_TEMPLATES {
        templates.remove(0);
    }
    templates.push(made.clone());
    Some(made)
}

/// An OpenSSL-made signature and where the bytes that change are in it.
struct Template {
    /// The signer's certificate (DER), which the template is for.
    cert: Vec<u8>,
    key: PKey<Private>,
    der: Vec<u8>,
    /// The signed attributes, `[0] IMPLICIT SET OF Attribute` as a whole element.
    attributes: Range<usize>,
    /// The signing time's 13 characters (`YYMMDDHHMMSSZ`).
    time: Range<usize>,
    /// The message digest's 32 bytes.
    digest: Range<usize>,
    /// The RSA signature's bytes.
    signature: Range<usize>,
}

impl Template {
    /// Makes the template from a signature by OpenSSL, and keeps it only if filling it in
    /// for the same content and time gives back OpenSSL's bytes.
    fn make(signer: &Identity, cert: Vec<u8>) -> Option<Template> {
        if signer.key.id() != Id::RSA {
            return None;
        }
        let content = b"ssm signature template\r\n";
        let der = openssl_signature(content, signer).ok()?;
        let places = Places::find(&der)?;
        let template = Template {
            cert,
            key: signer.key.clone(),
            attributes: places.attributes,
            time: places.time.clone(),
            digest: places.digest,
            signature: places.signature,
            der: der.clone(),
        };
        let time: [u8; 13] = der.get(places.time)?.try_into().ok()?;
        (template.fill(content, &time).ok()? == der).then_some(template)
    }

    /// The signature of `content` at `time`.
    fn fill(&self, content: &[u8], time: &[u8; 13]) -> Result<Vec<u8>, ErrorStack> {
        let mut der = self.der.clone();
        der[self.time.clone()].copy_from_slice(time);
        der[self.digest.clone()].copy_from_slice(&openssl::sha::sha256(content));
        // What is signed is the attributes' DER as a SET OF, not as the [0] they are written as.
        let mut attributes = der[self.attributes.clone()].to_vec();
        attributes[0] = SET;
        let mut signer = Signer::new(MessageDigest::sha256(), &self.key)?;
        let signature = signer.sign_oneshot_to_vec(&attributes)?;
        if signature.len() != self.signature.len() {
            // Cannot happen with the RSA key the template was made with; refuse rather than
            // write a length that the DER around it does not say (the caller then signs with
            // `PKCS7_sign`).
            return Err(ErrorStack::get());
        }
        der[self.signature.clone()].copy_from_slice(&signature);
        Ok(der)
    }
}

/// Where the changing bytes of a signature are.
struct Places {
    attributes: Range<usize>,
    time: Range<usize>,
    digest: Range<usize>,
    signature: Range<usize>,
}

impl Places {
    /// Reads the places from an OpenSSL-made detached signature with one signer; `None` for
    /// any other shape.
    fn find(der: &[u8]) -> Option<Places> {
        let at = |part: &[u8]| part.as_ptr() as usize - der.as_ptr() as usize;
        let range = |part: &[u8]| at(part)..at(part) + part.len();
        let (content_info, _) = expect(der, SEQUENCE)?;
        let (_, rest) = expect(content_info, OID)?;
        let (explicit, _) = expect(rest, CONTEXT_0)?;
        let (signed, _) = expect(explicit, SEQUENCE)?;
        let mut rest = signed;
        for want in [INTEGER, SET, SEQUENCE] {
            rest = expect(rest, want)?.1;
        }
        for optional in [CONTEXT_0, CONTEXT_1] {
            if let Some((_, after)) = expect(rest, optional) {
                rest = after;
            }
        }
        let (infos, _) = expect(rest, SET)?;
        let (info, others) = expect(infos, SEQUENCE)?;
        if !others.is_empty() {
            return None;
        }
        let mut rest = info;
        for want in [INTEGER, SEQUENCE, SEQUENCE] {
            rest = expect(rest, want)?.1;
        }
        let (attributes, after) = expect(rest, CONTEXT_0)?;
        let attributes_element = at(rest)..at(after);
        let (_, after) = expect(after, SEQUENCE)?; // digestEncryptionAlgorithm
        let (signature, _) = expect(after, OCTET_STRING)?;

        let (mut time, mut digest) = (None, None);
        let mut rest = attributes;
        while !rest.is_empty() {
            let (attribute, next) = expect(rest, SEQUENCE)?;
            rest = next;
            let (oid, values) = expect(attribute, OID)?;
            let (values, _) = expect(values, SET)?;
            let (tag, value, _) = element(values)?;
            match (oid, tag, value.len()) {
                (SIGNING_TIME, UTC_TIME, 13) => time = Some(range(value)),
                (MESSAGE_DIGEST, OCTET_STRING, 32) => digest = Some(range(value)),
                _ => {}
            }
        }
        Some(Places {
            attributes: attributes_element,
            time: time?,
            digest: digest?,
            signature: range(signature),
        })
    }
}

/// `t` as DER's UTCTime (`YYMMDDHHMMSSZ`), as OpenSSL writes a signing time; `None` outside
/// 1950–2049, where it writes a GeneralizedTime.
fn utc_time(t: SystemTime) -> Option<[u8; 13]> {
    let secs = t.duration_since(UNIX_EPOCH).ok()?.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = crate::civil::from_days(i64::try_from(days).ok()?);
    if year >= 2050 {
        return None;
    }
    let fields = [
        u64::try_from(year % 100).ok()?,
        u64::from(month),
        u64::from(day),
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
    ];
    let mut out = [b'Z'; 13];
    for (i, field) in fields.into_iter().enumerate() {
        out[2 * i] = b'0' + (field / 10) as u8;
        out[2 * i + 1] = b'0' + (field % 10) as u8;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::harness::pki::Pki;
    use std::time::Duration;

    #[test]
    fn utc_time_is_ders() {
        let at = |secs| utc_time(UNIX_EPOCH + Duration::from_secs(secs)).map(|t| t.to_vec());
        assert_eq!(at(0).unwrap(), b"700101000000Z");
        // 2026-12-03 13:45:07 UTC and the last second of a leap day.
        assert_eq!(at(1_796_305_507).unwrap(), b"261203134507Z");
        assert_eq!(at(951_868_799).unwrap(), b"000229235959Z");
        assert_eq!(at(2_524_607_999).unwrap(), b"491231235959Z");
        assert_eq!(at(2_524_608_000), None); // 2050: a GeneralizedTime
    }

    #[test]
    fn filled_signatures_are_openssls_for_the_same_second() {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::generate(dir.path()).unwrap();
        let client = Identity::load(&pki.client.cert, &pki.client.key).unwrap();
        let template = template_for(&client).expect("an RSA signer has a template");
        for content in [
            &b""[..],
            b"Content-Type: text/plain\r\n\r\nSite: A\r\n",
            &[7u8; 5000],
        ] {
            let theirs = openssl_signature(content, &client).unwrap();
            let time: [u8; 13] = theirs[template.time.clone()].try_into().unwrap();
            assert_eq!(template.fill(content, &time).unwrap(), theirs);
        }
        // A key that is not the certificate's gets no template.
        let other = Identity::load(&pki.server.cert, &pki.server.key).unwrap();
        let mismatched = Identity {
            cert: client.cert.clone(),
            key: other.key.clone(),
        };
        assert!(template_for(&mismatched).is_none());
    }
}
