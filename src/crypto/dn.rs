//! Distinguished names: the slash form of a certificate subject, and the allowed-DN list.
//!
//! The slash form is `/K=V/K=V...` with OpenSSL's short names (`C`, `ST`, `L`, `O`, `OU`, `CN`,
//! `emailAddress`, `DC`...) in the order the components appear in the certificate, values as
//! UTF-8 without escaping — what `openssl x509 -subject -nameopt compat` prints and what grid
//! allowed-DN files contain.
//!
//! Matching rule: a signer is allowed when its DN is **exactly** (byte for byte, case-sensitive)
//! one of the listed DNs, as the current reference implementation does (the older v1 compared
//! case-insensitively). Leading and trailing whitespace of a line is not part of the DN.

use std::collections::HashSet;
use std::path::Path;

use openssl::x509::{X509NameRef, X509Ref};

use super::error::CryptoError;

/// The subject DN of `cert` in slash form, e.g. `/C=UK/O=eScience/CN=host.example.org`.
pub fn subject_dn(cert: &X509Ref) -> String {
    name_to_slash(cert.subject_name())
}

/// An X.509 name in slash form (see the module documentation).
pub fn name_to_slash(name: &X509NameRef) -> String {
    let mut out = String::new();
    for entry in name.entries() {
        let object = entry.object();
        let key = match object.nid().short_name() {
            Ok(short) => short.to_string(),
            // An attribute OpenSSL has no name for: use its dotted OID, as OpenSSL does.
            Err(_) => object.to_string(),
        };
        let value = match entry.data().to_string() {
            Ok(v) => v,
            Err(_) => String::from_utf8_lossy(entry.data().as_slice()).into_owned(),
        };
        out.push('/');
        out.push_str(&key);
        out.push('=');
        out.push_str(&value);
    }
    out
}

/// The list of DNs allowed to send messages (the receiver's allowed-DN file).
#[derive(Clone, Debug, Default)]
pub struct DnList {
    dns: HashSet<String>,
}

impl DnList {
    /// Parses allowed-DN text: one DN per line in slash form; blank lines and lines starting with
    /// `#` are skipped; surrounding whitespace is trimmed. A line that does not start with `/` is
    /// not a DN: it is left out and reported in the returned warnings (one per line, with its
    /// line number).
    pub fn parse(text: &str) -> (DnList, Vec<String>) {
        let mut dns = HashSet::new();
        let mut warnings = Vec::new();
        for (number, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if line.starts_with('/') && line.contains('=') {
                dns.insert(line.to_string());
            } else {
                warnings.push(format!("line {}: not a DN: {line:?}", number + 1));
            }
        }
        (DnList { dns }, warnings)
    }

    /// Reads and parses an allowed-DN file, logging a warning for each line that is not a DN.
    ///
    /// Fails with [`CryptoError::DnList`] if the file cannot be read or holds no valid DN.
    pub fn load(path: &Path) -> Result<DnList, CryptoError> {
        let err = |reason: String| CryptoError::DnList {
            path: path.to_path_buf(),
            reason,
        };
        let bytes = std::fs::read(path).map_err(|e| err(e.to_string()))?;
        let text = String::from_utf8(bytes).map_err(|e| err(format!("not UTF-8: {e}")))?;
        let (list, warnings) = DnList::parse(&text);
        for warning in &warnings {
            tracing::warn!("allowed-DN list {}: {warning}", path.display());
        }
        if list.is_empty() {
            return Err(err("no valid DN in the file".into()));
        }
        Ok(list)
    }

    /// Whether `dn` is in the list: an exact, case-sensitive comparison (see the module docs).
    pub fn contains(&self, dn: &str) -> bool {
        self.dns.contains(dn)
    }

    /// The number of distinct DNs.
    pub fn len(&self) -> usize {
        self.dns.len()
    }

    /// Whether the list holds no DN.
    pub fn is_empty(&self) -> bool {
        self.dns.is_empty()
    }

    /// The DNs, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.dns.iter().map(String::as_str)
    }
}

impl FromIterator<String> for DnList {
    fn from_iter<I: IntoIterator<Item = String>>(iter: I) -> Self {
        DnList {
            dns: iter.into_iter().collect(),
        }
    }
}
