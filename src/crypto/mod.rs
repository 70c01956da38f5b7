//! Message protection: `encrypt(sign(base64(zlib(msg))))` and back (version 1), or
//! `sign(msg)` then optionally `encrypt` (version 2, SSM2), via OpenSSL's PKCS#7.
//!
//! The layers: `smime` holds the S/MIME primitives (sign, encrypt, decrypt, verify), `payload`
//! the framing inside the signature (version 1: zlib + base64, with its bomb limit), and `seal` /
//! `open` the recipes of each protocol version ([`Recipe`]) built from them.
//!
//! [`seal`] produces exactly what the `openssl smime` pipeline of the protocol produces
//! (`-sign -text`, then `-encrypt -<cipher>`), and [`Opener::open`] accepts what that pipeline or
//! the older Python senders produce (76-column base64, CRLF line ends, content signed with or
//! without `-text`). Opening guarantees that the returned content was signed by the returned
//! certificate, that the certificate chains to the [`TrustStore`] (validity, and CRLs when
//! enabled; no S/MIME purpose required), and that it is no larger than the opener's cap.
//! [`seal_v2`] and [`Opener::open_v2`] keep the same guarantees for SSM2 bodies, signed and
//! optionally encrypted, with no framing inside the signature.
//!
//! Whether the signer is *allowed* is the caller's decision: compare [`Opened::signer_dn`] with a
//! [`DnList`] (exact match, RDN by RDN).
//!
//! Everything here is synchronous CPU work (a few RSA operations per message); the key material
//! and trust store are loaded once and shared.

mod carried;
mod cipher;
pub(crate) mod der;
mod dn;
mod error;
mod identity;
mod mime;
mod mime_write;
mod open;
mod payload;
mod seal;
mod signed_template;
mod smime;
mod trust;
mod verified;

use md5::{Digest, Md5};

pub use cipher::{Cipher, UnknownCipher};
pub use dn::{name_to_slash, subject_dn, Dn, DnFile, DnList};
pub use error::CryptoError;
pub use identity::{check_validity, key_matches, load_cert, load_key, Identity};
pub use open::{Opened, Opener};
pub use payload::{unpack, DEFAULT_MAX_SIZE};
pub use seal::{seal, seal_v2, Recipe};
pub use trust::TrustStore;

/// OpenSSL's reasons for an error, in one short line (for other modules' error messages).
pub fn openssl_reason(err: &openssl::error::ErrorStack) -> String {
    error::ssl_reason(err)
}

/// The DER of an S/MIME envelope (`application/pkcs7-mime`), read as opening reads it: the
/// common form decoded at once, anything else by OpenSSL's reader; `None` if `body` is not one.
pub fn envelope_der(body: &[u8]) -> Option<Vec<u8>> {
    smime::envelope_der(body)
}

/// The protocol's message id: the MD5 of the original message bytes, 32 lowercase hex digits.
pub fn message_id(msg: &[u8]) -> String {
    let digest = Md5::digest(msg);
    let mut out = String::with_capacity(32);
    for byte in digest {
        out.push_str(&format!("{byte:02x}"));
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn message_id_is_md5_hex() {
        assert_eq!(super::message_id(b""), "d41d8cd98f00b204e9800998ecf8427e");
        assert_eq!(
            super::message_id(b"hello"),
            "5d41402abc4b2a76b9719d911017c592"
        );
    }
}
