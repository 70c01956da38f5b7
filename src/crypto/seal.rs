//! Sealing, one recipe per protocol version, over the primitives of [`super::smime`] and the
//! framings of [`super::payload`]:
//!
//! - version 1 ([`seal`]): `encrypt(sign(base64(zlib(msg))))`, byte-compatible with the
//!   `openssl smime` steps `-sign -inkey KEY -signer CERT -text` then
//!   `-encrypt -<cipher> SERVERCERT`;
//! - version 2 ([`seal_v2`], SSM2): `sign(msg)` with the same `-text` signing, then `encrypt`
//!   only when a recipient is given; no zlib, no base64.
//!
//! Guarantees: the output is S/MIME text that the `openssl smime` command line opens;
//! [`Opener`](super::Opener) opens what the recipe of the same version sealed and gives back
//! the message (for version 2, with LF line ends: see [`Opener::open_v2`](super::Opener::open_v2)).

use openssl::x509::X509;

use super::cipher::Cipher;
use super::error::CryptoError;
use super::identity::Identity;
use super::payload;
use super::smime;

/// The protection recipe of a protocol version: how a message becomes a body and back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Recipe {
    /// SSM version 1: `encrypt(sign(base64(zlib(msg))))`; always encrypted.
    #[default]
    V1,
    /// SSM2: `sign(msg)` with `-text`, then encrypted only if there is a recipient.
    V2,
}

impl Recipe {
    /// Seals `msg` with this recipe. Version 1 needs a `recipient` (without one it fails with
    /// [`CryptoError::Seal`]); version 2 encrypts only when given one.
    pub fn seal(
        self,
        msg: &[u8],
        signer: &Identity,
        recipient: Option<&X509>,
        cipher: Cipher,
    ) -> Result<Vec<u8>, CryptoError> {
        match (self, recipient) {
            (Recipe::V1, Some(recipient)) => seal(msg, signer, recipient, cipher),
            (Recipe::V1, None) => Err(CryptoError::Seal {
                step: "encrypting",
                reason: "version 1 messages are always encrypted, and no recipient was given"
                    .into(),
            }),
            (Recipe::V2, recipient) => seal_v2(msg, signer, recipient, cipher),
        }
    }
}

/// Seals `msg` for `recipient` (version 1): zlib-compress, base64 (one line, padded), sign as a
/// detached `multipart/signed` S/MIME message with a `text/plain` part (as `-text` does), then
/// envelope the signed message for `recipient` with `cipher`. Returns the S/MIME text
/// (`application/x-pkcs7-mime; smime-type=enveloped-data`).
pub fn seal(
    msg: &[u8],
    signer: &Identity,
    recipient: &X509,
    cipher: Cipher,
) -> Result<Vec<u8>, CryptoError> {
    let b64 = payload::encode(msg)?;
    let signed = smime::sign(&b64, signer)?;
    smime::encrypt(&signed, recipient, cipher)
}

/// Seals `msg` as SSM2 does (version 2): sign as a detached `multipart/signed` S/MIME message
/// with a `text/plain` part (`-text`: line ends become CRLF in the signed part), then, only if
/// `recipient` is given, envelope it with `cipher`. The protocol names AES ciphers for version
/// 2; refusing `des3` there is the configuration's rule, not this function's.
pub fn seal_v2(
    msg: &[u8],
    signer: &Identity,
    recipient: Option<&X509>,
    cipher: Cipher,
) -> Result<Vec<u8>, CryptoError> {
    let signed = smime::sign(msg, signer)?;
    match recipient {
        Some(recipient) => smime::encrypt(&signed, recipient, cipher),
        None => Ok(signed),
    }
}
