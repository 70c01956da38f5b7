//! The trust store: which CAs (and CRLs) a signer's certificate must chain to.
//!
//! Built from an OpenSSL hashed CA directory (`-CApath`: files named `<hash>.<n>` hold CA
//! certificates, `<hash>.r<n>` CRLs) and/or a PEM bundle (`-CAfile`), then shared by all threads.
//! Every hashed file is read when the store is built, so verifying a message does no file I/O.
//!
//! Guarantees:
//! - The store follows its sources: [`TrustStore::reload`] rebuilds it from the same directory
//!   and file, and [`TrustStore::reload_if_changed`] does so when a hashed file or the bundle
//!   was added, removed or changed (name, size, mtime, inode). Every clone sees the new store at
//!   once (clones share it); a verification in progress finishes with the store it started with.
//! - A failed rebuild (unreadable directory, no CA left, broken bundle) changes nothing: the
//!   previous store stays in use and the error is returned for the caller to log.
//! - The chain is checked without any purpose (grid host certificates carry
//!   serverAuth/clientAuth, not S/MIME): signatures along the chain, validity times and, when
//!   enabled, CRLs for every certificate in the chain (`CRL_CHECK | CRL_CHECK_ALL`: a missing
//!   CRL is then an error, as with `openssl verify -crl_check_all`).
//! - A CRL problem that is the verifier's own (its CRL for a CA of the chain is expired or not
//!   yet valid) is [`CryptoError::TrustUnavailable`], never a verdict on the signer: callers
//!   must not answer it as a rejection. A CA with no CRL at all still makes its signers
//!   untrusted (a sender could provoke that case with an invented intermediate CA);
//!   [`TrustStore::crl_problems`] reports it.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use openssl::asn1::Asn1Time;
use openssl::stack::Stack;
use openssl::x509::store::{X509Lookup, X509Store, X509StoreBuilder};
use openssl::x509::verify::X509VerifyFlags;
use openssl::x509::{X509Crl, X509StoreContext, X509};

use super::dn::subject_dn;
use super::error::{ssl_reason, CryptoError};
use super::verified::{self, Verified};

// X509_V_ERR_* codes from <openssl/x509_vfy.h>; stable across OpenSSL 1.0–3.x.
const X509_V_ERR_CERT_NOT_YET_VALID: i32 = 9;
const X509_V_ERR_CERT_HAS_EXPIRED: i32 = 10;
const X509_V_ERR_CERT_REVOKED: i32 = 23;
/// The verifier's own CRL problems: a CRL not yet valid or expired, or with broken time fields.
/// Only the state of our own CRLs decides these. Not in the list, because a sender can provoke
/// them with a chain of its own making (OpenSSL checks revocation before the signatures along
/// the chain): no CRL for an issuer (3; an invented intermediate has none) and a CRL whose
/// signature does not verify (5, 8; an invented CA named like a real one).
const OWN_CRL_ERRORS: [i32; 4] = [11, 12, 15, 16];

/// Trusted CAs and CRLs, shared (cloning is cheap, and clones share reloads).
#[derive(Clone)]
pub struct TrustStore {
    current: Arc<RwLock<Arc<Inner>>>,
    source: Arc<Source>,
}

/// Where the store is built from, and what the sources looked like when it last was.
struct Source {
    capath: Option<PathBuf>,
    cafile: Option<PathBuf>,
    crl_check: bool,
    seen: Mutex<Option<Fingerprint>>,
}

/// The name, size, mtime and inode of every hashed file and of the bundle: a change to any
/// means the store must be rebuilt.
type Fingerprint = Vec<(String, u64, i64, i64, u64)>;

struct Inner {
    store: X509Store,
    crl_check: bool,
    certs: Vec<X509>,
    crls: Vec<X509Crl>,
    /// Chains this build of the store verified lately (a reload starts afresh).
    verified: Verified,
}

/// A snapshot of the OpenSSL store (kept alive while in use, even across a reload).
pub struct StoreSnapshot(Arc<Inner>);

impl std::ops::Deref for StoreSnapshot {
    type Target = X509Store;
    fn deref(&self) -> &X509Store {
        &self.0.store
    }
}

/// What a (re)built store holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrustCounts {
    /// CA certificates.
    pub cas: usize,
    /// CRLs (0 unless CRLs are checked).
    pub crls: usize,
}

impl std::fmt::Debug for TrustStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let inner = self.inner();
        f.debug_struct("TrustStore")
            .field("cas", &inner.certs.len())
            .field("crls", &inner.crls.len())
            .field("crl_check", &inner.crl_check)
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
        let source = Source {
            capath: capath.map(Path::to_path_buf),
            cafile: cafile.map(Path::to_path_buf),
            crl_check,
            seen: Mutex::new(None),
        };
        // Taken before reading, so that a change made while building is seen next time.
        let seen = source.fingerprint().ok();
        let inner = build(capath, cafile, crl_check)?;
        if let Ok(mut s) = source.seen.lock() {
            *s = seen;
        }
        Ok(TrustStore {
            current: Arc::new(RwLock::new(Arc::new(inner))),
            source: Arc::new(source),
        })
    }

    /// Rebuilds the store from its directory and bundle and puts it in use. On failure the
    /// previous store stays in use and the error says why.
    pub fn reload(&self) -> Result<TrustCounts, CryptoError> {
        let src = &self.source;
        let seen = src.fingerprint().ok();
        let inner = build(src.capath.as_deref(), src.cafile.as_deref(), src.crl_check)?;
        let counts = TrustCounts {
            cas: inner.certs.len(),
            crls: inner.crls.len(),
        };
        if let Ok(mut current) = self.current.write() {
            *current = Arc::new(inner);
        }
        if let Ok(mut s) = src.seen.lock() {
            *s = seen;
        }
        Ok(counts)
    }

    /// Rebuilds the store (as [`TrustStore::reload`]) if a hashed file of the directory or the
    /// bundle changed since it was last built; `Ok(None)` when nothing changed.
    pub fn reload_if_changed(&self) -> Result<Option<TrustCounts>, CryptoError> {
        let now = self.source.fingerprint()?;
        let unchanged = self
            .source
            .seen
            .lock()
            .map(|seen| seen.as_ref() == Some(&now))
            .unwrap_or(false);
        if unchanged {
            return Ok(None);
        }
        self.reload().map(Some)
    }

    fn inner(&self) -> Arc<Inner> {
        match self.current.read() {
            Ok(current) => current.clone(),
            // A writer cannot panic while holding the lock (it only swaps an Arc).
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// The CRL problems that stop signers from being judged right now, one line each: a CRL
    /// past its nextUpdate or before its lastUpdate, a CA with no CRL. Empty when CRLs are not
    /// checked.
    pub fn crl_problems(&self) -> Vec<String> {
        let inner = self.inner();
        if !inner.crl_check {
            return Vec::new();
        }
        let mut problems = Vec::new();
        let Ok(now) = Asn1Time::days_from_now(0) else {
            return problems;
        };
        for crl in &inner.crls {
            let issuer = super::dn::name_to_slash(crl.issuer_name());
            if crl.last_update() > now {
                problems.push(format!(
                    "the CRL of {issuer} is not valid before {}",
                    crl.last_update()
                ));
            }
            match crl.next_update() {
                Some(next) if next < now => problems.push(format!(
                    "the CRL of {issuer} expired on {next} (nextUpdate): install a fresh one"
                )),
                _ => {}
            }
        }
        for ca in &inner.certs {
            let has_crl = inner.crls.iter().any(|crl| {
                crl.issuer_name()
                    .try_cmp(ca.subject_name())
                    .is_ok_and(|o| o.is_eq())
            });
            if !has_crl {
                problems.push(format!(
                    "no CRL for CA {}: its signers cannot be checked",
                    super::dn::subject_dn(ca)
                ));
            }
        }
        problems
    }
}

impl Source {
    fn fingerprint(&self) -> Result<Fingerprint, CryptoError> {
        use std::os::unix::fs::MetadataExt;
        let err = |reason: String| CryptoError::TrustStore { reason };
        let mut out = Vec::new();
        let entry = |name: String, m: &std::fs::Metadata| {
            (
                name,
                m.len(),
                m.mtime().saturating_mul(1_000_000_000) + m.mtime_nsec(),
                m.ctime().saturating_mul(1_000_000_000) + m.ctime_nsec(),
                m.ino(),
            )
        };
        if let Some(dir) = &self.capath {
            let entries = std::fs::read_dir(dir)
                .map_err(|e| err(format!("cannot read CA directory {}: {e}", dir.display())))?;
            for e in entries {
                let e = e.map_err(|e| err(format!("{}: {e}", dir.display())))?;
                let Some(name) = e.file_name().to_str().map(str::to_string) else {
                    continue;
                };
                if hashed_name(&name).is_none() {
                    continue;
                }
                // Followed: grid CA directories hold symlinks to the real files.
                match std::fs::metadata(e.path()) {
                    Ok(m) => out.push(entry(name, &m)),
                    Err(_) => out.push((name, 0, 0, 0, 0)),
                }
            }
        }
        if let Some(file) = &self.cafile {
            let m = std::fs::metadata(file).map_err(|e| err(format!("{}: {e}", file.display())))?;
            out.push(entry(format!("cafile:{}", file.display()), &m));
        }
        out.sort();
        Ok(out)
    }
}

/// Builds an OpenSSL store from the sources (see [`TrustStore::new`]).
fn build(
    capath: Option<&Path>,
    cafile: Option<&Path>,
    crl_check: bool,
) -> Result<Inner, CryptoError> {
    {
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
        for cert in certs.iter().cloned() {
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
        Ok(Inner {
            store: builder.build(),
            crl_check,
            certs,
            crls,
            verified: Verified::default(),
        })
    }
}

impl TrustStore {
    /// Whether CRLs are checked.
    pub fn crl_check(&self) -> bool {
        self.source.crl_check
    }

    /// The number of CA certificates loaded.
    pub fn ca_count(&self) -> usize {
        self.inner().certs.len()
    }

    /// The number of CRLs loaded (0 unless CRLs are checked).
    pub fn crl_count(&self) -> usize {
        self.inner().crls.len()
    }

    /// The OpenSSL store now in use.
    pub fn store(&self) -> StoreSnapshot {
        StoreSnapshot(self.inner())
    }

    /// Verifies that `cert` chains to a trusted CA, using `untrusted_chain` for intermediates.
    ///
    /// Errors: [`CryptoError::Expired`] / [`CryptoError::NotYetValid`] for a certificate of the
    /// chain out of its validity, [`CryptoError::Revoked`] if one is in its issuer's CRL,
    /// [`CryptoError::TrustUnavailable`] when this store's own CRL for the chain is expired or
    /// not yet valid (not the signer's fault), [`CryptoError::UntrustedSigner`] for
    /// anything else, with OpenSSL's reason.
    ///
    /// A chain that verified is remembered for a while ([`super::verified`]): the same
    /// certificates are then accepted without building the chain again.
    pub fn verify(&self, cert: &X509, untrusted_chain: &[X509]) -> Result<(), CryptoError> {
        let inner = self.inner();
        let key = verified::key(cert, untrusted_chain);
        if key.as_deref().is_some_and(|k| inner.verified.holds(k)) {
            return Ok(());
        }
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
            .init(&inner.store, cert, &chain, |c| {
                let ok = c.verify_cert()?;
                if let (true, Some(key), Some(built)) = (ok, key, c.chain()) {
                    let built: Vec<&openssl::x509::X509Ref> = built.iter().collect();
                    inner.verified.remember(key, &built);
                }
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
            code if OWN_CRL_ERRORS.contains(&code) => CryptoError::TrustUnavailable { dn, reason },
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
