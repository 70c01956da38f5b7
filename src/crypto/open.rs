//! Opening, one recipe per protocol version (the reverse of [`super::seal`]): version 1 is
//! decrypt, verify the signature, check the signer's chain, base64-decode, zlib-decompress (with
//! a size cap); version 2 decrypts only if the body is an envelope, and takes the signed text as
//! it is.
//!
//! Guarantees (besides those of the module [`super`]):
//! - A signature made with a digest other than SHA-2 or SHA-3 (MD5, SHA-1, anything unknown)
//!   is refused with [`CryptoError::WeakDigest`], unless the opener was built
//!   [`Opener::allow_weak_digests`] for old peers.
//! - A panic inside OpenSSL's bindings on hostile bytes is caught and becomes
//!   [`CryptoError::Decrypt`] ("internal error"): opening never unwinds into the caller.

use std::sync::Arc;

use openssl::x509::X509;

use super::carried::Carried;

use super::dn::subject_dn;
use super::error::CryptoError;
use super::identity::Identity;
use super::payload::{unpack, unpack_v2, DEFAULT_MAX_SIZE};
use super::seal::Recipe;
use super::smime;
use super::trust::TrustStore;

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
    /// Shared by the clones: the signers' certificates, parsed once ([`super::carried`]).
    carried: Arc<Carried>,
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
            carried: Arc::default(),
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
        self.guarded(|| self.open_inner(body))
    }

    /// Opens a body sealed by the recipe `recipe`: [`Opener::open`] for version 1,
    /// [`Opener::open_v2`] for version 2.
    pub fn open_with(&self, recipe: Recipe, body: &[u8]) -> Result<Opened, CryptoError> {
        match recipe {
            Recipe::V1 => self.open(body),
            Recipe::V2 => self.open_v2(body),
        }
    }

    /// Opens an SSM2 body (version 2): decrypted first if it is an S/MIME envelope (its MIME
    /// type is `application/pkcs7-mime` or `application/x-pkcs7-mime`, as the Python SSM
    /// decides), then verified as for version 1. The content is the signed text with its
    /// `-text` header removed and CRLF line ends turned back into LF (`-text` signing makes
    /// every line end CRLF, so the sender's LF text comes back byte for byte); over the cap it
    /// fails with [`CryptoError::TooLarge`]. The same errors as [`Opener::open`] but for
    /// [`CryptoError::NotEncrypted`], [`CryptoError::NotBase64`] and [`CryptoError::NotZlib`].
    pub fn open_v2(&self, body: &[u8]) -> Result<Opened, CryptoError> {
        self.guarded(|| {
            let decrypted;
            let signed = if smime::looks_enveloped(body) {
                decrypted = smime::decrypt(body, &self.identity)?;
                decrypted.as_slice()
            } else {
                body
            };
            let (text, signer_cert) = smime::verify(
                signed,
                &self.carried,
                &self.trust,
                self.allow_weak_digests,
                smime::Content::Any,
            )?;
            Ok(opened(unpack_v2(&text, self.max_size)?, signer_cert))
        })
    }

    /// Runs `open`, turning a panic inside OpenSSL's bindings into a refusal.
    fn guarded(
        &self,
        open: impl FnOnce() -> Result<Opened, CryptoError>,
    ) -> Result<Opened, CryptoError> {
        // Second line of defence: the `openssl` crate has panicked on hostile bytes before
        // (UTF-8 unwraps in its error reporting); a panic must be a refusal, not a crash.
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(open)) {
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
        let signed = smime::decrypt(body, &self.identity)?;
        let (text, signer_cert) = smime::verify(
            &signed,
            &self.carried,
            &self.trust,
            self.allow_weak_digests,
            smime::Content::Ascii,
        )?;
        Ok(opened(unpack(&text, self.max_size)?, signer_cert))
    }
}

fn opened(content: Vec<u8>, signer_cert: X509) -> Opened {
    Opened {
        content,
        signer_dn: subject_dn(&signer_cert),
        signer_cert,
    }
}
