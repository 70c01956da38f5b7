//! Just enough DER to read the things the `openssl` crate does not expose: how a Name's
//! attributes are grouped into RDNs (for comparing DNs RDN by RDN, `dn`), the encrypted
//! content keys of an enveloped message (the receiver's seal ids, `receiver::acked`) and the
//! fields of a signed-data message (its certificates apart, `carried`).
//!
//! Guarantees: every function reads only inside the slice it is given and returns `None` on
//! anything it does not understand (indefinite or over-long lengths, multi-byte tags, short
//! input); nothing panics on hostile bytes. Input is what OpenSSL itself wrote (`to_der`), so
//! definite lengths are all that is needed.

pub(crate) const SEQUENCE: u8 = 0x30;
pub(crate) const SET: u8 = 0x31;
const OCTET_STRING: u8 = 0x04;
pub(crate) const INTEGER: u8 = 0x02;
pub(crate) const OID: u8 = 0x06;
pub(crate) const CONTEXT_0: u8 = 0xa0;
pub(crate) const CONTEXT_1: u8 = 0xa1;
/// 1.2.840.113549.1.7.3, enveloped-data.
const ENVELOPED_DATA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x03];

/// One element: (tag, contents, what follows). Single-byte tags only (all we read use them);
/// lengths up to four bytes.
pub(crate) fn element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        (len, &rest[n..])
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

/// The contents of an element tagged `want`, and what follows it.
pub(crate) fn expect(input: &[u8], want: u8) -> Option<(&[u8], &[u8])> {
    let (tag, inner, rest) = element(input)?;
    (tag == want).then_some((inner, rest))
}

/// The `encryptedKey` of every `RecipientInfo` of a PKCS#7 enveloped-data message, or `None`
/// if this is not one.
pub(crate) fn encrypted_keys(der: &[u8]) -> Option<Vec<&[u8]>> {
    let (content_info, _) = expect(der, SEQUENCE)?;
    let (oid, rest) = expect(content_info, OID)?;
    if oid != ENVELOPED_DATA {
        return None;
    }
    let (explicit, _) = expect(rest, CONTEXT_0)?;
    let (enveloped, _) = expect(explicit, SEQUENCE)?;
    let (_, rest) = expect(enveloped, INTEGER)?;
    let (mut infos, _) = expect(rest, SET)?;
    let mut keys = Vec::new();
    while !infos.is_empty() {
        let (info, next) = expect(infos, SEQUENCE)?;
        infos = next;
        let (_, rest) = expect(info, INTEGER)?;
        let (_, rest) = expect(rest, SEQUENCE)?; // issuerAndSerialNumber
        let (_, rest) = expect(rest, SEQUENCE)?; // keyEncryptionAlgorithm
        let (key, _) = expect(rest, OCTET_STRING)?;
        keys.push(key);
    }
    Some(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elements_are_read_within_their_slice_and_bad_lengths_are_none() {
        assert_eq!(
            element(&[0x30, 0x01, 0xaa, 0xbb]),
            Some((0x30, &[0xaa][..], &[0xbb][..]))
        );
        assert_eq!(
            element(&[0x04, 0x81, 0x02, 1, 2]),
            Some((0x04, &[1, 2][..], &[][..]))
        );
        assert_eq!(element(&[0x30, 0x05, 1]), None); // short
        assert_eq!(element(&[0x30, 0x80]), None); // indefinite
        assert_eq!(element(&[0x30, 0x85, 1, 1, 1, 1, 1]), None); // too long a length
        assert_eq!(element(&[0x30]), None);
        assert_eq!(encrypted_keys(&[0x30, 0x00]), None);
    }
}
