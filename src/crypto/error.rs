//! The errors of the message security pipeline.
//!
//! Every variant names the step that failed and carries the reason, with OpenSSL's own reason
//! text where OpenSSL was involved, so a rejected message can be explained in one log line.

use std::path::PathBuf;
use std::time::Duration;

use openssl::error::ErrorStack;

/// Why sealing, opening or loading key material failed.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    /// The envelope could not be decrypted (wrong recipient, corrupt envelope, bad padding...).
    #[error("decrypting the message failed: {reason}")]
    Decrypt {
        /// What OpenSSL or the parser said.
        reason: String,
    },
    /// The signature does not match the content (tampered content or signature).
    #[error("the message's signature is not valid: {reason}")]
    BadSignature {
        /// What OpenSSL said.
        reason: String,
    },
    /// The signer's certificate does not chain to a trusted CA (or the CRL check failed).
    #[error("signer {dn} is not trusted: {reason}")]
    UntrustedSigner {
        /// Subject DN of the signer's certificate.
        dn: String,
        /// Why the chain was refused.
        reason: String,
    },
    /// The signer cannot be judged because of the verifier's own trust store: its CRL for a
    /// CA of the chain is past its nextUpdate or before its lastUpdate. Not the signer's
    /// fault: a receiver must not answer it `REJECTED` (see [`CryptoError::is_own_fault`]).
    #[error("cannot check signer {dn} with our own CRLs: {reason}")]
    TrustUnavailable {
        /// Subject DN of the signer's certificate.
        dn: String,
        /// What OpenSSL said (which certificate, which CRL problem).
        reason: String,
    },
    /// The message was signed with a digest that is refused (MD5, SHA-1...).
    #[error("the message is signed with the weak digest {digest}, which is refused (allow_weak_digests allows it)")]
    WeakDigest {
        /// The digest's name.
        digest: String,
    },
    /// A certificate (the signer's, or one in its chain, or our own) has expired.
    #[error("certificate {dn} expired on {not_after}")]
    Expired {
        /// Subject DN of the expired certificate.
        dn: String,
        /// Its notAfter time.
        not_after: String,
    },
    /// A certificate is not valid yet.
    #[error("certificate {dn} is not valid before {not_before}")]
    NotYetValid {
        /// Subject DN of the certificate.
        dn: String,
        /// Its notBefore time.
        not_before: String,
    },
    /// A certificate expires within the required margin.
    #[error("certificate {dn} expires on {not_after}, within {} hours", .min_remaining.as_secs() / 3600)]
    ExpiresSoon {
        /// Subject DN of the certificate.
        dn: String,
        /// Its notAfter time.
        not_after: String,
        /// The margin it had to satisfy.
        min_remaining: Duration,
    },
    /// A certificate in the signer's chain is listed in its issuer's CRL.
    #[error("certificate {dn} is revoked: {reason}")]
    Revoked {
        /// Subject DN of the revoked certificate.
        dn: String,
        /// What OpenSSL said.
        reason: String,
    },
    /// The decrypted content is not a signed S/MIME message.
    #[error("the decrypted message is not signed: {reason}")]
    NotSigned {
        /// What was found instead.
        reason: String,
    },
    /// The message is not an S/MIME enveloped (encrypted) message.
    #[error("the message is not encrypted: {reason}")]
    NotEncrypted {
        /// What was found instead.
        reason: String,
    },
    /// The signed content is not base64.
    #[error("the signed content is not base64: {reason}")]
    NotBase64 {
        /// What the decoder said.
        reason: String,
    },
    /// The base64-decoded content is not a zlib stream.
    #[error("the signed content is not zlib-compressed data: {reason}")]
    NotZlib {
        /// What the decompressor said.
        reason: String,
    },
    /// The decompressed message is larger than the configured cap.
    #[error("the decompressed message is larger than the limit of {max} bytes")]
    TooLarge {
        /// The cap, in bytes.
        max: usize,
    },
    /// A private key does not belong to the certificate it was given with.
    #[error("private key {key} does not match certificate {cert}")]
    KeyMismatch {
        /// Where the certificate came from.
        cert: PathBuf,
        /// Where the key came from.
        key: PathBuf,
    },
    /// A certificate file could not be read or parsed.
    #[error("cannot load certificate {path}: {reason}")]
    LoadCert {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A private key file could not be read or parsed.
    #[error("cannot load private key {path}: {reason}")]
    LoadKey {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The trust store could not be built.
    #[error("cannot build the trust store: {reason}")]
    TrustStore {
        /// Why.
        reason: String,
    },
    /// The allowed-DN file could not be read or holds no valid DN.
    #[error("allowed-DN list {path}: {reason}")]
    DnList {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// Signing or encrypting failed (should not happen with a usable identity).
    #[error("sealing the message failed while {step}: {reason}")]
    Seal {
        /// The step: "compressing", "signing", "encrypting"...
        step: &'static str,
        /// What OpenSSL said.
        reason: String,
    },
    /// Making the throwaway PKI failed.
    #[error("making the test PKI failed while {step}: {reason}")]
    Pki {
        /// What was being made.
        step: String,
        /// Why.
        reason: String,
    },
}

impl CryptoError {
    /// Whether the failure is the verifier's own (its trust store cannot judge the signer)
    /// rather than something wrong with the message: such a message must be neither stored
    /// nor rejected, so that its sender sends it again once the trust store is fixed.
    pub fn is_own_fault(&self) -> bool {
        matches!(self, CryptoError::TrustUnavailable { .. })
    }
}

/// Formats an OpenSSL error stack as a short reason: each error's reason text, with the library
/// name, joined by "; " (the full `ErrorStack` display also has file names and line numbers).
pub(crate) fn ssl_reason(err: &ErrorStack) -> String {
    let parts: Vec<String> = err
        .errors()
        .iter()
        .map(|e| {
            let reason = e.reason().unwrap_or("unknown reason");
            match e.library() {
                Some(lib) => format!("{reason} ({lib})"),
                None => reason.to_string(),
            }
        })
        .collect();
    if parts.is_empty() {
        "unknown OpenSSL error".to_string()
    } else {
        parts.join("; ")
    }
}
