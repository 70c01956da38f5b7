//! Our own certificate and key: loading, checking they belong together, checking validity.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use openssl::asn1::Asn1Time;
use openssl::pkey::{PKey, Private};
use openssl::x509::X509;

use super::dn::subject_dn;
use super::error::{ssl_reason, CryptoError};

/// A certificate with its private key: what a sender signs with and a receiver decrypts with.
///
/// Cloning is cheap (OpenSSL reference counts).
#[derive(Clone)]
pub struct Identity {
    /// The certificate.
    pub cert: X509,
    /// Its private key.
    pub key: PKey<Private>,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the key.
        f.debug_struct("Identity")
            .field("dn", &self.dn())
            .finish_non_exhaustive()
    }
}

impl Identity {
    /// Loads a certificate and its unencrypted private key (PEM or DER).
    ///
    /// Fails with [`CryptoError::KeyMismatch`] if the key does not belong to the certificate.
    pub fn load(cert_path: &Path, key_path: &Path) -> Result<Identity, CryptoError> {
        let cert = load_cert(cert_path)?;
        let key = load_key(key_path)?;
        if !key_matches(&cert, &key) {
            return Err(CryptoError::KeyMismatch {
                cert: cert_path.to_path_buf(),
                key: key_path.to_path_buf(),
            });
        }
        Ok(Identity { cert, key })
    }

    /// The certificate's subject DN in slash form (see [`subject_dn`]).
    pub fn dn(&self) -> String {
        subject_dn(&self.cert)
    }
}

/// Loads an X.509 certificate (PEM, the first one in the file; or DER).
pub fn load_cert(path: &Path) -> Result<X509, CryptoError> {
    let err = |reason: String| CryptoError::LoadCert {
        path: path.to_path_buf(),
        reason,
    };
    let bytes = std::fs::read(path).map_err(|e| err(e.to_string()))?;
    if bytes.windows(11).any(|w| w == b"-----BEGIN ") {
        X509::from_pem(&bytes).map_err(|e| err(ssl_reason(&e)))
    } else {
        X509::from_der(&bytes).map_err(|e| err(format!("neither PEM nor DER: {}", ssl_reason(&e))))
    }
}

/// Loads an unencrypted private key (PEM in any of the usual forms, or DER).
pub fn load_key(path: &Path) -> Result<PKey<Private>, CryptoError> {
    let err = |reason: String| CryptoError::LoadKey {
        path: path.to_path_buf(),
        reason,
    };
    let bytes = std::fs::read(path).map_err(|e| err(e.to_string()))?;
    if bytes.windows(11).any(|w| w == b"-----BEGIN ") {
        if bytes.windows(9).any(|w| w == b"ENCRYPTED") {
            return Err(err(
                "the key is encrypted; a key without a passphrase is needed".into(),
            ));
        }
        PKey::private_key_from_pem(&bytes).map_err(|e| err(ssl_reason(&e)))
    } else {
        PKey::private_key_from_der(&bytes)
            .map_err(|e| err(format!("neither PEM nor DER: {}", ssl_reason(&e))))
    }
}

/// Whether `key` is the private key of `cert`'s public key.
pub fn key_matches(cert: &X509, key: &PKey<Private>) -> bool {
    match cert.public_key() {
        Ok(public) => public.public_eq(key),
        Err(_) => false,
    }
}

/// Checks that `cert` is valid now and stays valid for at least `min_remaining`.
///
/// Errors: [`CryptoError::NotYetValid`], [`CryptoError::Expired`], [`CryptoError::ExpiresSoon`].
pub fn check_validity(cert: &X509, min_remaining: Duration) -> Result<(), CryptoError> {
    let now_secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let asn1 = |secs: u64| {
        let t = libc::time_t::try_from(secs).unwrap_or(libc::time_t::MAX);
        Asn1Time::from_unix(t).map_err(|e| CryptoError::LoadCert {
            path: Default::default(),
            reason: format!("cannot represent time {secs}: {}", ssl_reason(&e)),
        })
    };
    let now = asn1(now_secs)?;
    if cert.not_before() > now {
        return Err(CryptoError::NotYetValid {
            dn: subject_dn(cert),
            not_before: cert.not_before().to_string(),
        });
    }
    if cert.not_after() <= now {
        return Err(CryptoError::Expired {
            dn: subject_dn(cert),
            not_after: cert.not_after().to_string(),
        });
    }
    let horizon = asn1(now_secs.saturating_add(min_remaining.as_secs()))?;
    if cert.not_after() < horizon {
        return Err(CryptoError::ExpiresSoon {
            dn: subject_dn(cert),
            not_after: cert.not_after().to_string(),
            min_remaining,
        });
    }
    Ok(())
}
