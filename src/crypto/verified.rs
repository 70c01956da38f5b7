//! The signers whose chain the trust store has verified lately, so that the next message of the
//! same signer does not pay for the chain again.
//!
//! Every SSM message carries its signer's certificate, and a site sends thousands of messages
//! with one certificate: building and checking its chain (the CA's signature on it, the CRLs'
//! signatures and dates) cost about a fifth of one RSA decryption per message (measured with
//! callgrind; `docs/performance.md`). The verdict depends only on the certificates, the store
//! and the clock, so it is remembered — for successes only, and briefly.
//!
//! Guarantees:
//! - Only a chain that verified is remembered; every failure is checked again each time, with
//!   its exact error.
//! - A verdict is keyed by the exact DER of the signer's certificate and of every certificate
//!   the message brought along (its untrusted chain): a different certificate, or the same one
//!   with a different chain, is verified again.
//! - A verdict lives at most [`TTL`], and never past the `notAfter` of any certificate of the
//!   verified chain: an expired certificate is refused on time, and a CRL that runs out (the
//!   verifier's own problem) is noticed within [`TTL`].
//! - The cache belongs to one build of the store: a reload (new CAs, new CRLs: a revocation)
//!   starts with an empty one, so no verdict outlives the CRLs it was made with.
//! - At most [`CAPACITY`] verdicts are kept (only signers that chain to a trusted CA get in, so
//!   this bounds memory against senders with many real certificates, not against forgers).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use openssl::asn1::Asn1Time;
use openssl::x509::{X509Ref, X509};

/// How long a verdict is trusted at most.
pub const TTL: Duration = Duration::from_secs(60);

/// How many verdicts are kept at most.
pub const CAPACITY: usize = 4096;

/// Verified chains, keyed by their certificates' DER.
#[derive(Default)]
pub struct Verified {
    until: Mutex<HashMap<Vec<u8>, Instant>>,
}

/// The cache key of a signer and its untrusted chain: the DER of each, length-prefixed (so
/// that no two different lists give the same key). `None` if a certificate cannot be encoded
/// (then nothing is cached).
pub fn key(cert: &X509Ref, untrusted: &[X509]) -> Option<Vec<u8>> {
    let mut key = Vec::with_capacity(2048 * (1 + untrusted.len()));
    for c in std::iter::once(cert).chain(untrusted.iter().map(|c| c.as_ref())) {
        let der = c.to_der().ok()?;
        key.extend_from_slice(&(der.len() as u64).to_be_bytes());
        key.extend_from_slice(&der);
    }
    Some(key)
}

impl Verified {
    /// Whether `key` verified less than its lifetime ago.
    pub fn holds(&self, key: &[u8]) -> bool {
        let map = self.until.lock().unwrap_or_else(|e| e.into_inner());
        map.get(key).is_some_and(|until| Instant::now() < *until)
    }

    /// Remembers that `key` verified, with `chain` the chain the store built for it.
    pub fn remember(&self, key: Vec<u8>, chain: &[&X509Ref]) {
        let Some(life) = lifetime(chain) else { return };
        let now = Instant::now();
        let mut map = self.until.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= CAPACITY {
            map.retain(|_, until| now < *until);
            if map.len() >= CAPACITY {
                map.clear();
            }
        }
        map.insert(key, now + life);
    }

    /// The number of verdicts held (expired ones included until they are swept).
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.until.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Whether no verdict is held.
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// [`TTL`], or less if a certificate of `chain` expires sooner; `None` if a date cannot be
/// read (then nothing is cached).
fn lifetime(chain: &[&X509Ref]) -> Option<Duration> {
    let now = Asn1Time::days_from_now(0).ok()?;
    let mut life = TTL;
    for cert in chain {
        let left = now.diff(cert.not_after()).ok()?;
        let secs = i64::from(left.days) * 86_400 + i64::from(left.secs);
        let secs = u64::try_from(secs).ok()?;
        life = life.min(Duration::from_secs(secs));
    }
    Some(life)
}

#[cfg(test)]
mod tests {
    use super::*;
    use openssl::ec::{EcGroup, EcKey};
    use openssl::hash::MessageDigest;
    use openssl::nid::Nid;
    use openssl::pkey::PKey;
    use openssl::x509::{X509Builder, X509NameBuilder};

    /// A self-signed certificate valid from an hour ago for `secs` seconds from now.
    fn cert(cn: &str, secs: i64) -> X509 {
        let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
        let key = PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap();
        let mut name = X509NameBuilder::new().unwrap();
        name.append_entry_by_text("CN", cn).unwrap();
        let name = name.build();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let mut b = X509Builder::new().unwrap();
        b.set_version(2).unwrap();
        b.set_subject_name(&name).unwrap();
        b.set_issuer_name(&name).unwrap();
        b.set_pubkey(&key).unwrap();
        b.set_not_before(&Asn1Time::from_unix(now - 3600).unwrap())
            .unwrap();
        b.set_not_after(&Asn1Time::from_unix(now + secs).unwrap())
            .unwrap();
        b.sign(&key, MessageDigest::sha256()).unwrap();
        b.build()
    }

    #[test]
    fn a_verdict_is_kept_for_the_exact_certificates_only() {
        let (a, b) = (cert("a", 86_400), cert("b", 86_400));
        let v = Verified::default();
        let ka = key(&a, &[]).unwrap();
        assert!(!v.holds(&ka));
        v.remember(ka.clone(), &[&a]);
        assert!(v.holds(&ka));
        // Another signer, or the same signer bringing another chain, is not covered.
        assert!(!v.holds(&key(&b, &[]).unwrap()));
        assert!(!v.holds(&key(&a, std::slice::from_ref(&b)).unwrap()));
        // Length prefixes: [a, b] and [b] after a's bytes cannot collide with one certificate.
        assert_ne!(key(&a, std::slice::from_ref(&b)), key(&a, &[]));
    }

    #[test]
    fn a_verdict_never_outlives_a_certificate_of_its_chain() {
        let long = cert("ca", 86_400);
        let short = cert("leaf", 30);
        let life = lifetime(&[&short, &long]).unwrap();
        assert!(life <= Duration::from_secs(30), "{life:?}");
        assert!(life >= Duration::from_secs(25), "{life:?}");
        assert_eq!(lifetime(&[&long]).unwrap(), TTL);
        // Expiring within the second: remembered for (almost) nothing.
        let gone = cert("gone", 1);
        let v = Verified::default();
        let k = key(&gone, &[]).unwrap();
        v.remember(k.clone(), &[&gone]);
        std::thread::sleep(Duration::from_millis(1100));
        assert!(!v.holds(&k));
    }

    #[test]
    fn the_cache_is_bounded() {
        let c = cert("c", 86_400);
        let v = Verified::default();
        for i in 0..CAPACITY + 10 {
            let mut k = key(&c, &[]).unwrap();
            k.extend_from_slice(&i.to_be_bytes());
            v.remember(k, &[&c]);
        }
        assert!(v.len() <= CAPACITY, "{}", v.len());
        assert!(!v.is_empty());
    }
}
