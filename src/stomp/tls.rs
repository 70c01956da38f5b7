//! TLS for broker connections (OpenSSL through `tokio-openssl`).
//!
//! Guarantees:
//! - Verification is on unless [`TlsConfig::verify`] is `false`: the broker's certificate must
//!   chain to a trusted CA and match the host name (or IP literal) we dialled.
//! - When `cafile` or `capath` is given, only those CAs are trusted (`openssl -CAfile` /
//!   `-CApath` semantics: `capath` is a hashed directory such as `/etc/grid-security/certificates`);
//!   otherwise the system's default store is used.
//! - A client certificate and key, when given, are checked to match before any connection.

use std::path::{Path, PathBuf};

use openssl::error::ErrorStack;
use openssl::ssl::{SslConnector, SslFiletype, SslMethod, SslVerifyMode};
use openssl::x509::store::{X509Lookup, X509StoreBuilder};
use openssl::x509::X509;
use tokio::net::TcpStream;
use tokio_openssl::SslStream;

/// How to protect a broker connection with TLS.
#[derive(Clone, Debug)]
pub struct TlsConfig {
    /// A hashed directory of trusted CA certificates (`-CApath`).
    pub capath: Option<PathBuf>,
    /// A PEM file of trusted CA certificates (`-CAfile`).
    pub cafile: Option<PathBuf>,
    /// Our certificate (PEM, may hold the chain) for mutual TLS.
    pub cert: Option<PathBuf>,
    /// The private key of `cert` (PEM); when absent, the key is read from the `cert` file.
    pub key: Option<PathBuf>,
    /// Verify the broker's certificate and host name. `true` by default; turning it off makes
    /// the connection open to interception and is only meant for tests.
    pub verify: bool,
}

impl Default for TlsConfig {
    fn default() -> Self {
        TlsConfig {
            capath: None,
            cafile: None,
            cert: None,
            key: None,
            verify: true,
        }
    }
}

/// Why a TLS connection could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A configured file or directory could not be used.
    #[error("TLS setup: cannot use {what} {path:?}: {source}")]
    Config {
        /// Which setting.
        what: &'static str,
        /// The path given.
        path: PathBuf,
        /// OpenSSL's reason.
        source: ErrorStack,
    },
    /// A configured file or directory could not be read.
    #[error("TLS setup: cannot read {what} {path:?}: {source}")]
    Read {
        /// Which setting.
        what: &'static str,
        /// The path given.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A CA file holds no certificate.
    #[error("TLS setup: CA file {0:?} holds no PEM certificate")]
    EmptyCaFile(PathBuf),
    /// A path is not valid UTF-8, which OpenSSL's directory lookup needs.
    #[error("TLS setup: CA directory {0:?} is not a UTF-8 path")]
    NonUtf8Path(PathBuf),
    /// A key was given without a certificate.
    #[error("TLS setup: a client key needs a client certificate")]
    KeyWithoutCert,
    /// The configuration was rejected by OpenSSL for another reason.
    #[error("TLS setup: {0}")]
    Setup(#[from] ErrorStack),
    /// The handshake with the broker failed (untrusted or mismatched certificate, refused
    /// client certificate, protocol error).
    #[error("TLS handshake with {host} failed: {reason}")]
    Handshake {
        /// The host we dialled.
        host: String,
        /// OpenSSL's reason, including certificate verification results.
        reason: String,
    },
}

/// A reusable TLS connector built from a [`TlsConfig`].
#[derive(Clone)]
pub struct TlsConnector {
    inner: SslConnector,
    verify: bool,
}

impl std::fmt::Debug for TlsConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsConnector")
            .field("verify", &self.verify)
            .finish_non_exhaustive()
    }
}

fn config_err(what: &'static str, path: &Path) -> impl FnOnce(ErrorStack) -> TlsError {
    let path = path.to_path_buf();
    move |source| TlsError::Config { what, path, source }
}

impl TlsConnector {
    /// Loads the CAs and client credentials the configuration names.
    pub fn new(cfg: &TlsConfig) -> Result<TlsConnector, TlsError> {
        let mut b = SslConnector::builder(SslMethod::tls_client())?;
        if cfg.cafile.is_some() || cfg.capath.is_some() {
            // A fresh store, so that the system defaults loaded by `builder` are not trusted too.
            let mut store = X509StoreBuilder::new()?;
            if let Some(file) = &cfg.cafile {
                let pem = std::fs::read(file).map_err(|source| TlsError::Read {
                    what: "CA file",
                    path: file.clone(),
                    source,
                })?;
                let certs = X509::stack_from_pem(&pem).map_err(config_err("CA file", file))?;
                if certs.is_empty() {
                    return Err(TlsError::EmptyCaFile(file.clone()));
                }
                for c in certs {
                    store.add_cert(c).map_err(config_err("CA file", file))?;
                }
            }
            if let Some(dir) = &cfg.capath {
                // The hash lookup is lazy and would accept a missing directory silently.
                std::fs::read_dir(dir).map_err(|source| TlsError::Read {
                    what: "CA directory",
                    path: dir.clone(),
                    source,
                })?;
                let dir_str = dir
                    .to_str()
                    .ok_or_else(|| TlsError::NonUtf8Path(dir.clone()))?;
                store
                    .add_lookup(X509Lookup::hash_dir())?
                    .add_dir(dir_str, SslFiletype::PEM)
                    .map_err(config_err("CA directory", dir))?;
            }
            b.set_cert_store(store.build());
        }
        match (&cfg.cert, &cfg.key) {
            (Some(cert), key) => {
                b.set_certificate_chain_file(cert)
                    .map_err(config_err("client certificate", cert))?;
                let key = key.as_deref().unwrap_or(cert);
                b.set_private_key_file(key, SslFiletype::PEM)
                    .map_err(config_err("client key", key))?;
                b.check_private_key().map_err(config_err(
                    "client key (does not match the certificate)",
                    key,
                ))?;
            }
            (None, Some(_)) => return Err(TlsError::KeyWithoutCert),
            (None, None) => {}
        }
        if !cfg.verify {
            b.set_verify(SslVerifyMode::NONE);
        }
        Ok(TlsConnector {
            inner: b.build(),
            verify: cfg.verify,
        })
    }

    /// Runs the TLS handshake over an open TCP connection to `host`.
    pub async fn connect(
        &self,
        host: &str,
        tcp: TcpStream,
    ) -> Result<SslStream<TcpStream>, TlsError> {
        let handshake = |reason: String| TlsError::Handshake {
            host: host.to_string(),
            reason,
        };
        let mut conf = self.inner.configure()?;
        if !self.verify {
            conf.set_verify_hostname(false);
        }
        let ssl = conf.into_ssl(host)?;
        let mut stream = SslStream::new(ssl, tcp)?;
        if let Err(e) = std::pin::Pin::new(&mut stream).connect().await {
            let verify = stream.ssl().verify_result();
            let reason = if verify != openssl::x509::X509VerifyResult::OK {
                format!("{e}: certificate verification: {}", verify.error_string())
            } else {
                e.to_string()
            };
            return Err(handshake(reason));
        }
        Ok(stream)
    }
}
