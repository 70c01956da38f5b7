//! The certificates a signed message carries, parsed once per distinct set instead of once per
//! message.
//!
//! Every SSM message carries its signer's certificate inside the PKCS#7 signature, and a site
//! sends thousands of messages with the same one. Parsing a certificate with OpenSSL 3.0 decodes
//! its public key through the provider decoders, fetched anew for every key: about 1.2 million
//! instructions per message, a fifth of the RSA decryption that is the receiver's one necessary
//! expensive step (callgrind, `docs/performance.md`). So the signature is parsed *without* its
//! `certificates` field (the DER is rewritten without it, [`split`]), and the certificates are
//! taken from this cache, keyed by the exact bytes of that field.
//!
//! Guarantees:
//! - The parse is a pure function of the bytes: the same bytes give certificates equal to a
//!   fresh parse, and nothing about trust is decided or remembered here (the chain is checked
//!   for every message by the trust store, with its own cache of verdicts, `super::verified`).
//! - Only sets that were part of a message that verified completely are kept
//!   ([`Carried::keep`] is called after the signature and the chain are checked), so a forger
//!   cannot fill the cache; at most [`CAPACITY`] sets are kept.
//! - [`split`] reads only definite-length DER of the exact shape OpenSSL writes, and returns
//!   `None` on anything else: the caller then parses the message as it is, as before.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use openssl::x509::X509;

use super::der::{self, expect, CONTEXT_0, CONTEXT_1, INTEGER, OID, SEQUENCE, SET};

/// How many certificate sets are kept at most.
pub const CAPACITY: usize = 1024;

/// 1.2.840.113549.1.7.2, signed-data.
const SIGNED_DATA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x02];

/// A signed-data PKCS#7 taken apart: the DER without its certificates, and the bytes of its
/// `certificates` field (the certificates' DER one after the other).
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Split<'a> {
    /// The same signed-data, re-encoded without the `certificates` field.
    pub without_certs: Vec<u8>,
    /// The contents of the `certificates` field.
    pub certs: &'a [u8],
}

/// Takes `der` (a PKCS#7 ContentInfo) apart if it is a signed-data carrying certificates, in the
/// shape OpenSSL writes (definite lengths; version, digest algorithms, content, certificates,
/// optional CRLs, signer infos).
pub(crate) fn split(der: &[u8]) -> Option<Split<'_>> {
    let (content_info, trailing) = expect(der, SEQUENCE)?;
    let (oid, rest) = expect(content_info, OID)?;
    let (explicit, after) = expect(rest, CONTEXT_0)?;
    let (signed, inside) = expect(explicit, SEQUENCE)?;
    if oid != SIGNED_DATA || !(trailing.is_empty() && after.is_empty() && inside.is_empty()) {
        return None;
    }
    // version, digestAlgorithms, contentInfo: kept as they are.
    let mut at = signed;
    for want in [INTEGER, SET, SEQUENCE] {
        at = expect(at, want)?.1;
    }
    let head = &signed[..signed.len() - at.len()];
    let (certs, tail) = expect(at, CONTEXT_0)?;
    // What follows must be [crls] and signerInfos, nothing else.
    let signer_infos = expect(tail, CONTEXT_1).map_or(tail, |(_, rest)| rest);
    if certs.is_empty() || !expect(signer_infos, SET)?.1.is_empty() {
        return None;
    }
    let mut body = Vec::with_capacity(head.len() + tail.len());
    body.extend_from_slice(head);
    body.extend_from_slice(tail);
    let signed = wrap(SEQUENCE, &body);
    let explicit = wrap(CONTEXT_0, &signed);
    let mut inner = wrap(OID, oid);
    inner.extend_from_slice(&explicit);
    Some(Split {
        without_certs: wrap(SEQUENCE, &inner),
        certs,
    })
}

/// One DER element: `tag`, the definite length of `contents`, `contents`.
fn wrap(tag: u8, contents: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(contents.len() + 6);
    out.push(tag);
    push_len(&mut out, contents.len());
    out.extend_from_slice(contents);
    out
}

/// A DER length, in its shortest form.
fn push_len(out: &mut Vec<u8>, len: usize) {
    if len < 0x80 {
        out.push(len as u8);
        return;
    }
    let bytes = len.to_be_bytes();
    let skip = bytes.iter().take_while(|&&b| b == 0).count();
    out.push(0x80 | (bytes.len() - skip) as u8);
    out.extend_from_slice(&bytes[skip..]);
}

/// The certificates of `field` (the contents of a `certificates` field), each parsed by
/// OpenSSL; `None` if any is not a certificate.
fn parse(field: &[u8]) -> Option<Vec<X509>> {
    let mut certs = Vec::new();
    let mut at = field;
    while !at.is_empty() {
        let (tag, _, rest) = der::element(at)?;
        if tag != SEQUENCE {
            return None;
        }
        certs.push(X509::from_der(&at[..at.len() - rest.len()]).ok()?);
        at = rest;
    }
    Some(certs)
}

/// Certificate sets already parsed, keyed by the bytes they were parsed from.
#[derive(Default)]
pub(crate) struct Carried {
    sets: Mutex<HashMap<Vec<u8>, Arc<[X509]>>>,
}

impl std::fmt::Debug for Carried {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let held = self.sets.lock().map(|s| s.len()).unwrap_or_default();
        f.debug_struct("Carried").field("sets", &held).finish()
    }
}

impl Carried {
    /// The certificates of `field`: from the cache, or parsed now (and not yet kept: see
    /// [`Carried::keep`]). The flag says whether they came from the cache.
    pub fn get(&self, field: &[u8]) -> Option<(Arc<[X509]>, bool)> {
        let sets = self.sets.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(certs) = sets.get(field) {
            return Some((certs.clone(), true));
        }
        drop(sets);
        Some((parse(field)?.into(), false))
    }

    /// Keeps `certs`, parsed from `field`, for the next message that carries the same bytes.
    pub fn keep(&self, field: &[u8], certs: Arc<[X509]>) {
        let mut sets = self.sets.lock().unwrap_or_else(|e| e.into_inner());
        if sets.len() >= CAPACITY {
            sets.clear();
        }
        sets.insert(field.to_vec(), certs);
    }

    /// The number of sets held.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.sets.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_are_shortest_der() {
        for (len, want) in [
            (0usize, vec![0x00]),
            (0x7f, vec![0x7f]),
            (0x80, vec![0x81, 0x80]),
            (0xff, vec![0x81, 0xff]),
            (0x100, vec![0x82, 0x01, 0x00]),
            (0x1_0000, vec![0x83, 0x01, 0x00, 0x00]),
        ] {
            let mut out = Vec::new();
            push_len(&mut out, len);
            assert_eq!(out, want, "{len}");
            let element = wrap(0x04, &vec![7; len]);
            assert_eq!(der::element(&element).map(|(_, c, _)| c.len()), Some(len));
        }
    }

    #[test]
    fn other_shapes_are_not_split() {
        assert_eq!(split(&[]), None);
        assert_eq!(split(&[0x30, 0x00]), None);
        assert_eq!(split(&[0x30, 0x80, 0x00, 0x00]), None);
        // signed-data OID, but nothing inside.
        let mut bare = vec![OID, SIGNED_DATA.len() as u8];
        bare.extend_from_slice(SIGNED_DATA);
        assert_eq!(split(&wrap(SEQUENCE, &bare)), None);
    }
}
