//! Throwaway certificate authorities and certificates for tests and `ssm demo`.
//!
//! [`Pki::generate`] writes, under one directory, a trusted CA, a server (receiver) and a client
//! (sender) certificate it signed, an untrusted CA with a client of its own, an expired client, a
//! revoked client with the CA's CRL listing it, and an OpenSSL hashed CA directory
//! (`capath/<hash>.0` for the trusted CA, `capath/<hash>.r0` for its CRL) usable as `-CApath`.
//!
//! Keys are RSA-2048, signatures SHA-256. End-entity certificates look like grid host
//! certificates: `serverAuth, clientAuth` extended key usage and no S/MIME purpose. Private keys
//! are written unencrypted with mode 0600. Nothing here is meant for production use.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use openssl::asn1::{Asn1Integer, Asn1Object, Asn1OctetString, Asn1Time};
use openssl::bn::{BigNum, MsbOption};
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private};
use openssl::rsa::Rsa;
use openssl::x509::extension::{
    AuthorityKeyIdentifier, BasicConstraints, CrlNumber, ExtendedKeyUsage, KeyUsage,
    SubjectAlternativeName, SubjectKeyIdentifier,
};
use openssl::x509::{
    X509Builder, X509Crl, X509CrlBuilder, X509Extension, X509NameBuilder, X509RevokedBuilder, X509,
};

use crate::crypto::{subject_dn, CryptoError};

/// A certificate and its key on disk, with the certificate's subject DN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertFiles {
    /// The PEM certificate.
    pub cert: PathBuf,
    /// The PEM private key (unencrypted, mode 0600).
    pub key: PathBuf,
    /// The certificate's subject DN in slash form.
    pub dn: String,
}

/// A generated throwaway PKI (see the module documentation).
#[derive(Debug, Clone)]
pub struct Pki {
    /// The directory everything was written to.
    pub dir: PathBuf,
    /// The hashed CA directory: the trusted CA and its CRL only.
    pub capath: PathBuf,
    /// The trusted CA.
    pub ca: CertFiles,
    /// The receiver's certificate, `CN=localhost`, signed by the CA.
    pub server: CertFiles,
    /// A sender's certificate, signed by the CA.
    pub client: CertFiles,
    /// A CA that is not in `capath`.
    pub untrusted_ca: CertFiles,
    /// A sender certificate signed by the untrusted CA.
    pub untrusted_client: CertFiles,
    /// A sender certificate signed by the CA whose validity ended in the past.
    pub expired_client: CertFiles,
    /// A sender certificate signed by the CA and listed in the CA's CRL.
    pub revoked_client: CertFiles,
    /// The CA's CRL (PEM), also in `capath` as `<hash>.r0`.
    pub crl: PathBuf,
}

/// Something that went wrong while making the PKI.
fn pki_err(step: impl Into<String>) -> impl Fn(openssl::error::ErrorStack) -> CryptoError {
    let step = step.into();
    move |e| CryptoError::Pki {
        step: step.clone(),
        reason: crate::crypto::openssl_reason(&e),
    }
}

fn io_err(step: impl Into<String>) -> impl Fn(std::io::Error) -> CryptoError {
    let step = step.into();
    move |e| CryptoError::Pki {
        step: step.clone(),
        reason: e.to_string(),
    }
}

const DAY: i64 = 24 * 3600;

fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn time(offset_secs: i64) -> Result<Asn1Time, CryptoError> {
    let t = now_unix().saturating_add(offset_secs);
    Asn1Time::from_unix(libc::time_t::try_from(t).unwrap_or(libc::time_t::MAX))
        .map_err(pki_err("setting a validity time"))
}

fn new_key() -> Result<PKey<Private>, CryptoError> {
    let rsa = Rsa::generate(2048).map_err(pki_err("generating an RSA key"))?;
    PKey::from_rsa(rsa).map_err(pki_err("wrapping an RSA key"))
}

fn random_serial() -> Result<Asn1Integer, CryptoError> {
    let err = pki_err("making a serial number");
    let mut bn = BigNum::new().map_err(&err)?;
    bn.rand(63, MsbOption::MAYBE_ZERO, false).map_err(&err)?;
    bn.to_asn1_integer().map_err(&err)
}

/// What a certificate is for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Ca,
    Server,
    Client,
}

/// An issued certificate with its key, kept in memory for signing others.
struct Issued {
    cert: X509,
    key: PKey<Private>,
}

#[allow(clippy::too_many_arguments)]
fn make_cert(
    subject: &[(&str, &str)],
    kind: Kind,
    key: &PKey<Private>,
    issuer: Option<&Issued>,
    not_before: i64,
    not_after: i64,
) -> Result<X509, CryptoError> {
    let err = pki_err("building a certificate");
    let name = build_name(subject)?;
    let mut b = X509Builder::new().map_err(&err)?;
    b.set_version(2).map_err(&err)?;
    b.set_serial_number(&*random_serial()?).map_err(&err)?;
    b.set_subject_name(&name).map_err(&err)?;
    match issuer {
        Some(i) => b.set_issuer_name(i.cert.subject_name()).map_err(&err)?,
        None => b.set_issuer_name(&name).map_err(&err)?,
    }
    b.set_pubkey(key).map_err(&err)?;
    b.set_not_before(&*time(not_before)?).map_err(&err)?;
    b.set_not_after(&*time(not_after)?).map_err(&err)?;
    match kind {
        Kind::Ca => {
            b.append_extension(
                BasicConstraints::new()
                    .critical()
                    .ca()
                    .build()
                    .map_err(&err)?,
            )
            .map_err(&err)?;
            b.append_extension(
                KeyUsage::new()
                    .critical()
                    .key_cert_sign()
                    .crl_sign()
                    .build()
                    .map_err(&err)?,
            )
            .map_err(&err)?;
        }
        Kind::Server | Kind::Client => {
            b.append_extension(BasicConstraints::new().critical().build().map_err(&err)?)
                .map_err(&err)?;
            b.append_extension(
                KeyUsage::new()
                    .critical()
                    .digital_signature()
                    .key_encipherment()
                    .build()
                    .map_err(&err)?,
            )
            .map_err(&err)?;
            b.append_extension(
                ExtendedKeyUsage::new()
                    .server_auth()
                    .client_auth()
                    .build()
                    .map_err(&err)?,
            )
            .map_err(&err)?;
        }
    }
    let ski = SubjectKeyIdentifier::new()
        .build(&b.x509v3_context(issuer.map(|i| i.cert.as_ref()), None))
        .map_err(&err)?;
    b.append_extension(ski).map_err(&err)?;
    if let Some(i) = issuer {
        let aki = AuthorityKeyIdentifier::new()
            .keyid(true)
            .build(&b.x509v3_context(Some(&i.cert), None))
            .map_err(&err)?;
        b.append_extension(aki).map_err(&err)?;
    }
    if kind == Kind::Server {
        let cn = subject
            .iter()
            .find(|(k, _)| *k == "CN")
            .map(|(_, v)| *v)
            .unwrap_or("localhost");
        let san = SubjectAlternativeName::new()
            .dns(cn)
            .dns("localhost")
            .ip("127.0.0.1")
            .build(&b.x509v3_context(issuer.map(|i| i.cert.as_ref()), None))
            .map_err(&err)?;
        b.append_extension(san).map_err(&err)?;
    }
    let signing_key = issuer.map(|i| &i.key).unwrap_or(key);
    b.sign(signing_key, MessageDigest::sha256()).map_err(&err)?;
    Ok(b.build())
}

/// Builds a name from `(key, value)` pairs, one RDN each; a key written `+KEY` adds its
/// attribute to the RDN before it (a multi-valued RDN, which the `openssl` crate's builder
/// cannot make).
fn build_name(subject: &[(&str, &str)]) -> Result<openssl::x509::X509Name, CryptoError> {
    use foreign_types::ForeignType;
    let err = pki_err("building a name");
    let name = X509NameBuilder::new().map_err(&err)?.build();
    for (k, v) in subject {
        let (key, set) = match k.strip_prefix('+') {
            Some(key) => (key, -1),
            None => (*k, 0),
        };
        let bad = |what: &str| CryptoError::Pki {
            step: "building a name".into(),
            reason: format!("{what} in {key}={v}"),
        };
        let key_c = std::ffi::CString::new(key).map_err(|_| bad("NUL"))?;
        let len = libc::c_int::try_from(v.len()).map_err(|_| bad("too long a value"))?;
        // SAFETY: `name` is a valid X509_NAME we own; the key is NUL-terminated and the value
        // pointer/length pair describes `v`. OpenSSL copies both.
        let ok = unsafe {
            openssl_sys::X509_NAME_add_entry_by_txt(
                name.as_ptr(),
                key_c.as_ptr(),
                openssl_sys::MBSTRING_UTF8,
                v.as_ptr(),
                len,
                -1,
                set,
            )
        };
        if ok != 1 {
            return Err(err(openssl::error::ErrorStack::get()));
        }
    }
    Ok(name)
}

/// Writes `bytes` to `path` with the given mode (created fresh, so the mode holds from the start).
fn write_file(path: &Path, bytes: &[u8], mode: u32) -> Result<(), CryptoError> {
    use std::os::unix::fs::OpenOptionsExt;
    let err = io_err(format!("writing {}", path.display()));
    let _ = fs::remove_file(path);
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(&err)?;
    f.write_all(bytes).map_err(&err)?;
    f.sync_all().map_err(&err)
}

fn save(dir: &Path, stem: &str, issued: &Issued) -> Result<CertFiles, CryptoError> {
    let cert = dir.join(format!("{stem}.crt"));
    let key = dir.join(format!("{stem}.key"));
    let pem = issued
        .cert
        .to_pem()
        .map_err(pki_err("encoding a certificate"))?;
    write_file(&cert, &pem, 0o644)?;
    let key_pem = issued
        .key
        .private_key_to_pem_pkcs8()
        .map_err(pki_err("encoding a key"))?;
    write_file(&key, &key_pem, 0o600)?;
    Ok(CertFiles {
        cert,
        key,
        dn: subject_dn(&issued.cert),
    })
}

fn issue(
    subject: &[(&str, &str)],
    kind: Kind,
    issuer: Option<&Issued>,
    not_before: i64,
    not_after: i64,
) -> Result<Issued, CryptoError> {
    let key = new_key()?;
    let cert = make_cert(subject, kind, &key, issuer, not_before, not_after)?;
    Ok(Issued { cert, key })
}

fn make_crl(ca: &Issued, revoked: &[&X509]) -> Result<X509Crl, CryptoError> {
    make_crl_at(ca, revoked, -DAY, 365 * DAY, 1)
}

/// A CRL of `ca` listing `revoked`, with lastUpdate and nextUpdate `last`/`next` seconds from
/// now and CRL number `number`.
fn make_crl_at(
    ca: &Issued,
    revoked: &[&X509],
    last: i64,
    next: i64,
    number: u32,
) -> Result<X509Crl, CryptoError> {
    let err = pki_err("building the CRL");
    let mut b = X509CrlBuilder::new().map_err(&err)?;
    b.set_issuer_name(ca.cert.subject_name()).map_err(&err)?;
    b.set_last_update(&*time(last)?).map_err(&err)?;
    b.set_next_update(&*time(next)?).map_err(&err)?;
    for cert in revoked {
        let mut r = X509RevokedBuilder::new().map_err(&err)?;
        r.set_serial_number(cert.serial_number()).map_err(&err)?;
        r.set_revocation_date(&*time(-DAY)?).map_err(&err)?;
        b.add_revoked(r.build()).map_err(&err)?;
    }
    // AuthorityKeyIdentifier ::= SEQUENCE { keyIdentifier [0] IMPLICIT OCTET STRING }
    let ski = ca.cert.subject_key_id().ok_or_else(|| CryptoError::Pki {
        step: "building the CRL".into(),
        reason: "the CA has no subject key identifier".into(),
    })?;
    let id = ski.as_slice();
    let id_len = u8::try_from(id.len()).map_err(|_| CryptoError::Pki {
        step: "building the CRL".into(),
        reason: "the CA's key identifier is too long".into(),
    })?;
    let mut der = vec![0x30, id_len + 2, 0x80, id_len];
    der.extend_from_slice(id);
    let oid = Asn1Object::from_str("2.5.29.35").map_err(&err)?;
    let value = Asn1OctetString::new_from_bytes(&der).map_err(&err)?;
    b.append_extension(X509Extension::new_from_der(&oid, false, &value).map_err(&err)?)
        .map_err(&err)?;
    b.append_extension(
        CrlNumber::new(BigNum::from_u32(number).map_err(&err)?)
            .map_err(&err)?
            .build()
            .map_err(&err)?,
    )
    .map_err(&err)?;
    b.sort().map_err(&err)?;
    b.sign(&ca.key, MessageDigest::sha256()).map_err(&err)?;
    b.build().map_err(&err)
}

impl Pki {
    /// Generates the whole PKI under `dir` (created if missing). Takes a few hundred
    /// milliseconds: seven RSA-2048 keys.
    pub fn generate(dir: &Path) -> Result<Pki, CryptoError> {
        fs::create_dir_all(dir).map_err(io_err(format!("creating {}", dir.display())))?;
        let capath = dir.join("capath");
        fs::create_dir_all(&capath).map_err(io_err(format!("creating {}", capath.display())))?;
        let years = 10 * 365 * DAY;

        let ca = issue(
            &[("C", "UK"), ("O", "ssm-test"), ("CN", "ssm test CA")],
            Kind::Ca,
            None,
            -DAY,
            years,
        )?;
        let server = issue(
            &[("C", "UK"), ("O", "ssm-test"), ("CN", "localhost")],
            Kind::Server,
            Some(&ca),
            -DAY,
            years,
        )?;
        let client = issue(
            &[("C", "UK"), ("O", "ssm-test"), ("CN", "client.example.org")],
            Kind::Client,
            Some(&ca),
            -DAY,
            years,
        )?;
        let untrusted_ca = issue(
            &[("C", "UK"), ("O", "ssm-rogue"), ("CN", "untrusted CA")],
            Kind::Ca,
            None,
            -DAY,
            years,
        )?;
        let untrusted_client = issue(
            &[
                ("C", "UK"),
                ("O", "ssm-rogue"),
                ("CN", "untrusted.example.org"),
            ],
            Kind::Client,
            Some(&untrusted_ca),
            -DAY,
            years,
        )?;
        let expired_client = issue(
            &[
                ("C", "UK"),
                ("O", "ssm-test"),
                ("CN", "expired.example.org"),
            ],
            Kind::Client,
            Some(&ca),
            -60 * DAY,
            -30 * DAY,
        )?;
        let revoked_client = issue(
            &[
                ("C", "UK"),
                ("O", "ssm-test"),
                ("CN", "revoked.example.org"),
            ],
            Kind::Client,
            Some(&ca),
            -DAY,
            years,
        )?;
        let crl = make_crl(&ca, &[&revoked_client.cert])?;

        let crl_pem = crl.to_pem().map_err(pki_err("encoding the CRL"))?;
        let crl_path = dir.join("ca.crl");
        write_file(&crl_path, &crl_pem, 0o644)?;
        let hash = ca.cert.subject_name_hash();
        let ca_pem = ca.cert.to_pem().map_err(pki_err("encoding the CA"))?;
        write_file(&capath.join(format!("{hash:08x}.0")), &ca_pem, 0o644)?;
        write_file(&capath.join(format!("{hash:08x}.r0")), &crl_pem, 0o644)?;

        Ok(Pki {
            dir: dir.to_path_buf(),
            capath,
            ca: save(dir, "ca", &ca)?,
            server: save(dir, "server", &server)?,
            client: save(dir, "client", &client)?,
            untrusted_ca: save(dir, "untrusted-ca", &untrusted_ca)?,
            untrusted_client: save(dir, "untrusted-client", &untrusted_client)?,
            expired_client: save(dir, "expired-client", &expired_client)?,
            revoked_client: save(dir, "revoked-client", &revoked_client)?,
            crl: crl_path,
        })
    }

    fn ca_issued(&self) -> Result<Issued, CryptoError> {
        Ok(Issued {
            cert: crate::crypto::load_cert(&self.ca.cert)?,
            key: crate::crypto::load_key(&self.ca.key)?,
        })
    }

    /// Issues a client certificate signed by the CA with any subject: `(key, value)` pairs in
    /// order, one RDN each, a key written `+KEY` joining the RDN before it (multi-valued);
    /// values may hold any character (`/`, `+`, `\`...). Written as
    /// `<dir>/<stem>.{crt,key}` (`stem` must be usable in a file name).
    pub fn issue_client_named(
        &self,
        stem: &str,
        subject: &[(&str, &str)],
    ) -> Result<CertFiles, CryptoError> {
        if stem.is_empty() || stem.contains(['/', '\0']) || stem.starts_with('.') {
            return Err(CryptoError::Pki {
                step: "issuing a client certificate".into(),
                reason: format!("{stem:?} cannot be used in a file name"),
            });
        }
        let ca = self.ca_issued()?;
        let client = issue(subject, Kind::Client, Some(&ca), -DAY, 10 * 365 * DAY)?;
        save(&self.dir, stem, &client)
    }

    /// A CRL of the CA (PEM) listing `revoked`, valid from `last_update` to `next_update`
    /// seconds from now (negative: in the past), with CRL number `number`.
    pub fn crl_pem(
        &self,
        revoked: &[&CertFiles],
        last_update: i64,
        next_update: i64,
        number: u32,
    ) -> Result<Vec<u8>, CryptoError> {
        let ca = self.ca_issued()?;
        let certs = revoked
            .iter()
            .map(|c| crate::crypto::load_cert(&c.cert))
            .collect::<Result<Vec<_>, _>>()?;
        let refs: Vec<&X509> = certs.iter().collect();
        make_crl_at(&ca, &refs, last_update, next_update, number)?
            .to_pem()
            .map_err(pki_err("encoding the CRL"))
    }

    /// A copy of the hashed CA directory under `dir` (created) holding the CA and `crl_pem` as
    /// its CRL: a `capath` a test may change while a receiver uses it.
    pub fn capath_with_crl(&self, dir: &Path, crl_pem: &[u8]) -> Result<PathBuf, CryptoError> {
        fs::create_dir_all(dir).map_err(io_err(format!("creating {}", dir.display())))?;
        let ca = crate::crypto::load_cert(&self.ca.cert)?;
        let hash = ca.subject_name_hash();
        let ca_pem = ca.to_pem().map_err(pki_err("encoding the CA"))?;
        write_file(&dir.join(format!("{hash:08x}.0")), &ca_pem, 0o644)?;
        self.install_crl(dir, crl_pem)?;
        Ok(dir.to_path_buf())
    }

    /// Replaces the CA's CRL in the hashed directory `capath` with `crl_pem`, atomically (a
    /// new file renamed over `<hash>.r0`, as `fetch-crl` does).
    pub fn install_crl(&self, capath: &Path, crl_pem: &[u8]) -> Result<(), CryptoError> {
        let ca = crate::crypto::load_cert(&self.ca.cert)?;
        let hash = ca.subject_name_hash();
        let tmp = capath.join(format!(".{hash:08x}.r0.new"));
        write_file(&tmp, crl_pem, 0o644)?;
        let target = capath.join(format!("{hash:08x}.r0"));
        fs::rename(&tmp, &target).map_err(io_err(format!("renaming to {}", target.display())))
    }

    /// Issues one more client certificate signed by the CA, with DN `/C=UK/O=ssm-test/CN=<name>`,
    /// written as `<dir>/client-<name>.{crt,key}` (`name` must be usable in a file name).
    pub fn issue_client(&self, name: &str) -> Result<CertFiles, CryptoError> {
        if name.is_empty() || name.contains(['/', '\0']) || name.starts_with('.') {
            return Err(CryptoError::Pki {
                step: "issuing a client certificate".into(),
                reason: format!("{name:?} cannot be used in a file name"),
            });
        }
        let ca = self.ca_issued()?;
        let client = issue(
            &[("C", "UK"), ("O", "ssm-test"), ("CN", name)],
            Kind::Client,
            Some(&ca),
            -DAY,
            10 * 365 * DAY,
        )?;
        save(&self.dir, &format!("client-{name}"), &client)
    }
}
