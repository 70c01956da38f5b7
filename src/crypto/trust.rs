//! The trust store: which CAs (and CRLs) a signer's certificate must chain to.
//!
//! Built once from an OpenSSL hashed CA directory (`-CApath`: files named `<hash>.<n>` hold CA
//! certificates, `<hash>.r<n>` CRLs) and/or a PEM bundle (`-CAfile`), then shared by all threads.
//! Every hashed file is read when the store is built, so verifying a message does no file I/O;
//! rebuild the store to pick up new CAs or CRLs (the receiver does so when it re-reads its
//! allowed-DN list).
//!
//! The chain is checked without any purpose (grid host certificates carry serverAuth/clientAuth,
//! not S/MIME): signatures along the chain, validity times and, when enabled, CRLs for every
//! certificate in the chain (`CRL_CHECK | CRL_CHECK_ALL`: a missing CRL is then an error, as
//! with `openssl verify -crl_check_all`).

use std::path::Path;
use std::sync::Arc;

use openssl::stack::Stack;
use openssl::x509::store::{X509Lookup, X509Store, X509StoreBuilder};
use openssl::x509::verify::X509VerifyFlags;
use openssl::x509::{X509Crl, X509StoreContext, X509};

use super::dn::subject_dn;
use super::error::{ssl_reason, CryptoError};

// X509_V_ERR_* codes from <openssl/x509_vfy.h>; stable across OpenSSL 1.0–3.x.
const X509_V_ERR_CERT_NOT_YET_VALID: i32 = 9;
const X509_V_ERR_CERT_HAS_EXPIRED: i32 = 10;
const X509_V_ERR_CERT_REVOKED: i32 = 23;

/// Trusted CAs and CRLs, built once and shared (cloning is cheap).
#[derive(Clone)]
pub struct TrustStore {
    inner: Arc<Inner>,
}

struct Inner {
    store: X509Store,
    crl_check: bool,
    cas: usize,
    crls: usize,
}

impl std::fmt::Debug for TrustStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrustStore")
            .field("cas", &self.inner.cas)
            .field("crls", &self.inner.crls)
            .field("crl_check", &self.inner.crl_check)
            .finish()
    }
}

/// Whether a file name is an OpenSSL hashed name: 8 hex digits, a dot, then `<n>` (certificate)
/// or `r<n>` (CRL). Returns `Some(true)` for a CRL, `Some(false)` for a certificate.
fn hashed_name(name: &str) -> Option<bool> {
    let (hash, suffix) = name.split_once('.')?;
    if hash.len() != 8 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let (is_crl, digits) = match suffix.strip_prefix('r') {
        Some(rest) => (true, rest),
        None => (false, suffix),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(is_crl)
}

/// Splits a PEM file into its certificates and CRLs (other blocks are ignored).
fn read_pem(path: &Path) -> Result<(Vec<X509>, Vec<X509Crl>), CryptoError> {
    let err = |reason: String| CryptoError::TrustStore {
        reason: format!("{}: {reason}", path.display()),
    };
    let bytes = std::fs::read(path).map_err(|e| err(e.to_string()))?;
    let text = String::from_utf8_lossy(&bytes);
    let mut certs = Vec::new();
    let mut crls = Vec::new();
    let mut rest: &str = &text;
    while let Some(start) = rest.find("-----BEGIN ") {
        let block = &rest[start..];
        let Some(end_marker) = block.find("-----END ") else {
            return Err(err("unterminated PEM block".into()));
        };
        let end = block[end_marker + 9..]
            .find("-----")
            .map(|i| end_marker + 9 + i + 5)
            .ok_or_else(|| err("unterminated PEM END line".into()))?;
        let pem = &block[..end];
        if pem.starts_with("-----BEGIN CERTIFICATE-----")
            || pem.starts_with("-----BEGIN TRUSTED CERTIFICATE-----")
        {
            certs.push(X509::from_pem(pem.as_bytes()).map_err(|e| err(ssl_reason(&e)))?);
        } else if pem.starts_with("-----BEGIN X509 CRL-----") {
            crls.push(X509Crl::from_pem(pem.as_bytes()).map_err(|e| err(ssl_reason(&e)))?);
        }
        rest = &block[end..];
    }
    Ok((certs, crls))
}

impl TrustStore {
    /// Builds the store from a hashed CA directory and/or a PEM bundle of CA certificates (and
    /// CRLs). With `crl_check`, every certificate of a chain must have a valid CRL from its
    /// issuer that does not list it.
    ///
    /// Fails with [`CryptoError::TrustStore`] if neither source is given, the directory or the
    /// bundle cannot be read, or no CA certificate was found. A damaged file inside the
    /// directory is skipped with a warning (as `-CApath` lookups ignore it).
    pub fn new(
        capath: Option<&Path>,
        cafile: Option<&Path>,
        crl_check: bool,
    ) -> Result<TrustStore, CryptoError> {
        let err = |reason: String| CryptoError::TrustStore { reason };
        if capath.is_none() && cafile.is_none() {
            return Err(err("neither a CA directory nor a CA file was given".into()));
        }
        let mut certs = Vec::new();
        let mut crls = Vec::new();
        if let Some(dir) = capath {
            let entries = std::fs::read_dir(dir)
                .map_err(|e| err(format!("cannot read CA directory {}: {e}", dir.display())))?;
            let mut names = Vec::new();
            for entry in entries {
                let entry = entry.map_err(|e| err(format!("{}: {e}", dir.display())))?;
                if let Some(name) = entry.file_name().to_str() {
                    if let Some(is_crl) = hashed_name(name) {
                        names.push((name.to_string(), is_crl));
                    }
                }
            }
            // Deterministic order: the same files give the same store.
            names.sort();
            for (name, is_crl) in names {
                if is_crl && !crl_check {
                    continue;
                }
                // A damaged file in a shared CA directory must not stop the service: skipping
                // it only makes the chains that need it fail (a skipped CRL, with CRL checking,
                // makes its CA's certificates fail), which is the safe direction.
                match read_pem(&dir.join(&name)) {
                    Ok((c, r)) => {
                        certs.extend(c);
                        crls.extend(r);
                    }
                    Err(e) => tracing::warn!("skipping unreadable file in CA directory: {e}"),
                }
            }
        }
        if let Some(file) = cafile {
            let (c, r) = read_pem(file)?;
            if c.is_empty() {
                return Err(err(format!(
                    "{}: no certificate in the file",
                    file.display()
                )));
            }
            certs.extend(c);
            if crl_check {
                crls.extend(r);
            }
        }
        if certs.is_empty() {
            let where_ = capath.map(|p| p.display().to_string()).unwrap_or_default();
            return Err(err(format!("no CA certificate found in {where_}")));
        }
        let ssl = |e: openssl::error::ErrorStack| err(ssl_reason(&e));
        let mut builder = X509StoreBuilder::new().map_err(ssl)?;
        let (cas, ncrls) = (certs.len(), crls.len());
        for cert in certs {
            // Duplicates (the same CA in the directory and the bundle) are harmless.
            if let Err(e) = builder.add_cert(cert) {
                let reason = ssl_reason(&e);
                if !reason.contains("already in hash table") {
                    return Err(err(reason));
                }
            }
        }
        if !crls.is_empty() {
            // The store builder has no `add_crl`; a file lookup loads CRLs from a PEM file, so
            // write them to a private temporary file once.
            let mut pem = Vec::new();
            for crl in &crls {
                pem.extend(crl.to_pem().map_err(ssl)?);
            }
            let tmp = tempfile::NamedTempFile::new()
                .map_err(|e| err(format!("temporary file for CRLs: {e}")))?;
            std::fs::write(tmp.path(), &pem)
                .map_err(|e| err(format!("temporary file for CRLs: {e}")))?;
            // The crate's lookup panics on a path that is not UTF-8: refuse it instead.
            let tmp_path = tmp
                .path()
                .to_str()
                .ok_or_else(|| err("the temporary directory's path is not UTF-8".into()))?;
            let lookup = builder.add_lookup(X509Lookup::file()).map_err(ssl)?;
            lookup
                .load_crl_file(tmp_path, openssl::ssl::SslFiletype::PEM)
                .map_err(ssl)?;
        }
        if crl_check {
            builder
                .set_flags(X509VerifyFlags::CRL_CHECK | X509VerifyFlags::CRL_CHECK_ALL)
                .map_err(ssl)?;
        }
        Ok(TrustStore {
            inner: Arc::new(Inner {
                store: builder.build(),
                crl_check,
                cas,
                crls: ncrls,
            }),
        })
    }

    /// Whether CRLs are checked.
    pub fn crl_check(&self) -> bool {
        self.inner.crl_check
    }

    /// The number of CA certificates loaded.
    pub fn ca_count(&self) -> usize {
        self.inner.cas
    }

    /// The underlying OpenSSL store.
    pub fn store(&self) -> &X509Store {
        &self.inner.store
    }

    /// Verifies that `cert` chains to a trusted CA, using `untrusted_chain` for intermediates.
    ///
    /// Errors: [`CryptoError::Expired`] / [`CryptoError::NotYetValid`] for a certificate of the
    /// chain out of its validity, [`CryptoError::Revoked`] if one is in its issuer's CRL,
    /// [`CryptoError::UntrustedSigner`] for anything else, with OpenSSL's reason.
    pub fn verify(&self, cert: &X509, untrusted_chain: &[X509]) -> Result<(), CryptoError> {
        let dn = subject_dn(cert);
        let internal = |e: openssl::error::ErrorStack| CryptoError::UntrustedSigner {
            dn: dn.clone(),
            reason: ssl_reason(&e),
        };
        let mut chain = Stack::new().map_err(internal)?;
        for c in untrusted_chain {
            chain.push(c.clone()).map_err(internal)?;
        }
        let mut ctx = X509StoreContext::new().map_err(internal)?;
        let outcome = ctx
            .init(&self.inner.store, cert, &chain, |c| {
                let ok = c.verify_cert()?;
                let failing = c.current_cert().map(|x| {
                    (
                        subject_dn(x),
                        x.not_before().to_string(),
                        x.not_after().to_string(),
                    )
                });
                Ok((ok, c.error(), c.error_depth(), failing))
            })
            .map_err(internal)?;
        let (ok, result, depth, failing) = outcome;
        if ok {
            return Ok(());
        }
        let (failing_dn, not_before, not_after) =
            failing.unwrap_or_else(|| (dn.clone(), String::new(), String::new()));
        let reason = format!(
            "{} (at depth {depth}, certificate {failing_dn})",
            result.error_string()
        );
        Err(match result.as_raw() {
            X509_V_ERR_CERT_HAS_EXPIRED => CryptoError::Expired {
                dn: failing_dn,
                not_after,
            },
            X509_V_ERR_CERT_NOT_YET_VALID => CryptoError::NotYetValid {
                dn: failing_dn,
                not_before,
            },
            X509_V_ERR_CERT_REVOKED => CryptoError::Revoked {
                dn: failing_dn,
                reason,
            },
            _ => CryptoError::UntrustedSigner { dn, reason },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::hashed_name;

    #[test]
    fn hashed_names() {
        assert_eq!(hashed_name("1a2b3c4d.0"), Some(false));
        assert_eq!(hashed_name("1a2b3c4d.12"), Some(false));
        assert_eq!(hashed_name("1a2b3c4d.r0"), Some(true));
        assert_eq!(hashed_name("1a2b3c4d.pem"), None);
        assert_eq!(hashed_name("1a2b3c4.0"), None);
        assert_eq!(hashed_name("ca.pem"), None);
        assert_eq!(hashed_name("1a2b3c4d.r"), None);
    }
}
