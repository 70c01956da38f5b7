//! Every way opening or loading can fail maps to its own error variant.

use crate::support::openssl_cli;

use std::time::Duration;

use base64::Engine;
use openssl_cli::*;
use ssm::crypto::{
    check_validity, key_matches, load_cert, load_key, seal, Cipher, CryptoError, DnList, Identity,
    Opener, TrustStore,
};

fn sealed_by(files: &ssm::harness::pki::CertFiles, msg: &[u8]) -> Vec<u8> {
    let pki = pki();
    seal(
        msg,
        &identity(files),
        &identity(&pki.server).cert,
        Cipher::Aes128,
    )
    .expect("seal")
}

#[test]
fn tampered_body_is_rejected() {
    let body = sealed_by(&pki().client, b"payload");
    let text = String::from_utf8(body).unwrap();
    // Flip one base64 character in the middle of the encrypted content.
    let (head, b64) = text.split_once("\n\n").unwrap();
    let mut b64 = b64.as_bytes().to_vec();
    let mid = b64.len() - 40;
    b64[mid] = if b64[mid] == b'A' { b'B' } else { b'A' };
    let tampered = [head.as_bytes(), b"\n\n", &b64].concat();
    let err = opener(false).open(&tampered).unwrap_err();
    assert!(
        matches!(
            err,
            CryptoError::Decrypt { .. } | CryptoError::BadSignature { .. }
        ),
        "{err}"
    );
}

#[test]
fn tampered_signed_content_is_a_bad_signature() {
    let pki = pki();
    let b64 = base64::engine::general_purpose::STANDARD.encode(py_zlib_compress(b"original"));
    let signed = openssl(
        &[
            "smime",
            "-sign",
            "-inkey",
            path(&pki.client.key),
            "-signer",
            path(&pki.client.cert),
            "-text",
        ],
        b64.as_bytes(),
    );
    let forged_b64 =
        base64::engine::general_purpose::STANDARD.encode(py_zlib_compress(b"forgedxx"));
    let forged = String::from_utf8(signed)
        .unwrap()
        .replace(&b64, &forged_b64);
    let body = openssl(
        &["smime", "-encrypt", "-aes128", path(&pki.server.cert)],
        forged.as_bytes(),
    );
    let err = opener(false).open(&body).unwrap_err();
    assert!(matches!(err, CryptoError::BadSignature { .. }), "{err}");
}

#[test]
fn untrusted_ca_is_rejected() {
    let pki = pki();
    let err = opener(false)
        .open(&sealed_by(&pki.untrusted_client, b"x"))
        .unwrap_err();
    match err {
        CryptoError::UntrustedSigner { dn, reason } => {
            assert_eq!(dn, pki.untrusted_client.dn);
            assert!(reason.contains("local issuer"), "{reason}");
        }
        other => panic!("unexpected {other}"),
    }
}

#[test]
fn expired_signer_is_rejected() {
    let pki = pki();
    let err = opener(false)
        .open(&sealed_by(&pki.expired_client, b"x"))
        .unwrap_err();
    match err {
        CryptoError::Expired { dn, .. } => assert_eq!(dn, pki.expired_client.dn),
        other => panic!("unexpected {other}"),
    }
}

#[test]
fn revoked_signer_is_rejected_with_crl_check_only() {
    let pki = pki();
    let body = sealed_by(&pki.revoked_client, b"x");
    let err = opener(true).open(&body).unwrap_err();
    match err {
        CryptoError::Revoked { dn, reason } => {
            assert_eq!(dn, pki.revoked_client.dn);
            assert!(reason.contains("revoked"), "{reason}");
        }
        other => panic!("unexpected {other}"),
    }
    // Without CRL checking the same message is accepted.
    assert_eq!(opener(false).open(&body).unwrap().content, b"x");
}

#[test]
fn crl_check_without_crl_is_untrusted() {
    let pki = pki();
    // The CA as a bundle without its CRL: with CRL checking nothing can be verified.
    let trust = TrustStore::new(None, Some(&pki.ca.cert), true).unwrap();
    let opener = Opener::new(identity(&pki.server), trust);
    let err = opener.open(&sealed_by(&pki.client, b"x")).unwrap_err();
    match err {
        CryptoError::UntrustedSigner { reason, .. } => assert!(reason.contains("CRL"), "{reason}"),
        other => panic!("unexpected {other}"),
    }
}

#[test]
fn cafile_bundle_with_crl_works() {
    let pki = pki();
    let bundle = pki.dir.join("bundle-with-crl.pem");
    let mut pem = std::fs::read(&pki.ca.cert).unwrap();
    pem.extend(std::fs::read(&pki.crl).unwrap());
    std::fs::write(&bundle, pem).unwrap();
    let trust = TrustStore::new(None, Some(&bundle), true).unwrap();
    let opener = Opener::new(identity(&pki.server), trust);
    assert_eq!(
        opener.open(&sealed_by(&pki.client, b"ok")).unwrap().content,
        b"ok"
    );
    assert!(matches!(
        opener.open(&sealed_by(&pki.revoked_client, b"x")),
        Err(CryptoError::Revoked { .. })
    ));
}

#[test]
fn wrong_recipient_cannot_decrypt() {
    let pki = pki();
    let body = sealed_by(&pki.client, b"for the server");
    // The client tries to open a message meant for the server.
    let trust = TrustStore::new(Some(&pki.capath), None, false).unwrap();
    let err = Opener::new(identity(&pki.client), trust)
        .open(&body)
        .unwrap_err();
    assert!(matches!(err, CryptoError::Decrypt { .. }), "{err}");
}

#[test]
fn encrypted_but_unsigned_is_not_signed() {
    let pki = pki();
    let body = openssl(
        &["smime", "-encrypt", "-aes128", path(&pki.server.cert)],
        b"eJwDAAAAAAE=",
    );
    let err = opener(false).open(&body).unwrap_err();
    assert!(matches!(err, CryptoError::NotSigned { .. }), "{err}");
}

#[test]
fn signed_but_not_encrypted_is_not_encrypted() {
    let pki = pki();
    let signed = openssl(
        &[
            "smime",
            "-sign",
            "-inkey",
            path(&pki.client.key),
            "-signer",
            path(&pki.client.cert),
            "-text",
        ],
        b"eJwDAAAAAAE=",
    );
    let err = opener(false).open(&signed).unwrap_err();
    assert!(matches!(err, CryptoError::NotEncrypted { .. }), "{err}");
    let err = opener(false).open(b"just some text").unwrap_err();
    assert!(matches!(err, CryptoError::NotEncrypted { .. }), "{err}");
    let err = opener(false).open(b"").unwrap_err();
    assert!(matches!(err, CryptoError::NotEncrypted { .. }), "{err}");
    // Found by the `opener` fuzz target: a header with bytes that are not UTF-8 made the
    // `openssl` crate panic while reporting OpenSSL's error. A clear error, no panic.
    let err = opener(false)
        .open(b"content-type:-d\xe1t\xaca\xff\xb4\xb4\xc8")
        .unwrap_err();
    assert!(matches!(err, CryptoError::NotEncrypted { .. }), "{err}");
}

#[test]
fn signed_content_not_base64() {
    let pki = pki();
    let body = cli_sign_encrypt(
        b"this is %%% not base64",
        &pki.client,
        &pki.server.cert,
        "aes128",
    );
    let err = opener(false).open(&body).unwrap_err();
    assert!(matches!(err, CryptoError::NotBase64 { .. }), "{err}");
}

#[test]
fn signed_content_not_zlib() {
    let pki = pki();
    let b64 = base64::engine::general_purpose::STANDARD.encode(b"plain, not compressed");
    let body = cli_sign_encrypt(b64.as_bytes(), &pki.client, &pki.server.cert, "aes128");
    let err = opener(false).open(&body).unwrap_err();
    assert!(matches!(err, CryptoError::NotZlib { .. }), "{err}");
}

#[test]
fn decompression_bomb_stops_at_the_cap() {
    let pki = pki();
    // 8 MiB of zeros seal to about 150 KiB at our (fastest) zlib level: a ratio over 50.
    let bomb = vec![0u8; 8 * 1024 * 1024];
    let body = sealed_by(&pki.client, &bomb);
    assert!(body.len() < 160 * 1024, "{} bytes", body.len());
    let opener = opener(false).with_max_size(1024 * 1024);
    let err = opener.open(&body).unwrap_err();
    assert!(
        matches!(err, CryptoError::TooLarge { max } if max == 1024 * 1024),
        "{err}"
    );
    // Exactly at the cap is fine.
    let body = sealed_by(&pki.client, &bomb[..1024 * 1024]);
    assert_eq!(opener.open(&body).unwrap().content.len(), 1024 * 1024);
}

#[test]
fn key_mismatch_is_detected() {
    let pki = pki();
    let err = Identity::load(&pki.client.cert, &pki.server.key).unwrap_err();
    assert!(matches!(err, CryptoError::KeyMismatch { .. }), "{err}");
    assert!(err.to_string().contains("server.key"), "{err}");
    let cert = load_cert(&pki.client.cert).unwrap();
    assert!(key_matches(&cert, &load_key(&pki.client.key).unwrap()));
    assert!(!key_matches(&cert, &load_key(&pki.server.key).unwrap()));
}

#[test]
fn unloadable_files_name_the_path() {
    let pki = pki();
    let missing = pki.dir.join("does-not-exist.pem");
    let err = load_cert(&missing).unwrap_err();
    assert!(
        matches!(err, CryptoError::LoadCert { .. }) && err.to_string().contains("does-not-exist")
    );
    let err = load_key(&missing).unwrap_err();
    assert!(matches!(err, CryptoError::LoadKey { .. }), "{err}");
    // A certificate is not a key and a key is not a certificate.
    assert!(matches!(
        load_key(&pki.client.cert),
        Err(CryptoError::LoadKey { .. })
    ));
    assert!(matches!(
        load_cert(&pki.client.key),
        Err(CryptoError::LoadCert { .. })
    ));
    let garbage = pki.dir.join("garbage.bin");
    std::fs::write(&garbage, b"\x00\x01garbage").unwrap();
    assert!(matches!(
        load_cert(&garbage),
        Err(CryptoError::LoadCert { .. })
    ));
}

#[test]
fn trust_store_needs_a_usable_source() {
    let pki = pki();
    assert!(matches!(
        TrustStore::new(None, None, false),
        Err(CryptoError::TrustStore { .. })
    ));
    let missing = pki.dir.join("no-such-dir");
    let err = TrustStore::new(Some(&missing), None, false).unwrap_err();
    assert!(
        matches!(err, CryptoError::TrustStore { .. }) && err.to_string().contains("no-such-dir")
    );
    let empty = pki.dir.join("empty-capath");
    std::fs::create_dir_all(&empty).unwrap();
    assert!(matches!(
        TrustStore::new(Some(&empty), None, false),
        Err(CryptoError::TrustStore { .. })
    ));
    assert!(matches!(
        TrustStore::new(None, Some(&pki.client.key), false),
        Err(CryptoError::TrustStore { .. })
    ));
}

#[test]
fn damaged_file_in_capath_is_skipped() {
    let pki = pki();
    let dir = pki.dir.join("capath-with-junk");
    std::fs::create_dir_all(&dir).unwrap();
    for entry in std::fs::read_dir(&pki.capath).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.join(entry.file_name())).unwrap();
    }
    std::fs::write(
        dir.join("deadbeef.0"),
        "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    std::fs::write(dir.join("README.txt"), "not a hashed name, ignored").unwrap();
    let trust = TrustStore::new(Some(&dir), None, true).unwrap();
    assert_eq!(trust.ca_count(), 1);
    let opener = Opener::new(identity(&pki.server), trust);
    assert_eq!(
        opener.open(&sealed_by(&pki.client, b"ok")).unwrap().content,
        b"ok"
    );
}

#[test]
fn error_messages_say_what_failed() {
    let pki = pki();
    let cases = [
        (
            sealed_by(&pki.untrusted_client, b"x"),
            "signer /C=UK/O=ssm-rogue/CN=untrusted.example.org is not trusted",
        ),
        (
            sealed_by(&pki.expired_client, b"x"),
            "certificate /C=UK/O=ssm-test/CN=expired.example.org expired on",
        ),
        (b"hello".to_vec(), "the message is not encrypted"),
    ];
    for (body, expected) in cases {
        let err = opener(true).open(&body).unwrap_err().to_string();
        assert!(err.contains(expected), "{err}");
        assert!(!err.contains('\n'), "{err}");
    }
}

#[test]
fn validity_checks() {
    let pki = pki();
    let client = load_cert(&pki.client.cert).unwrap();
    check_validity(&client, Duration::from_secs(24 * 3600)).unwrap();
    let err = check_validity(&client, Duration::from_secs(20 * 365 * 24 * 3600)).unwrap_err();
    assert!(matches!(err, CryptoError::ExpiresSoon { .. }), "{err}");
    let expired = load_cert(&pki.expired_client.cert).unwrap();
    let err = check_validity(&expired, Duration::ZERO).unwrap_err();
    assert!(
        matches!(err, CryptoError::Expired { ref dn, .. } if *dn == pki.expired_client.dn),
        "{err}"
    );
}

#[test]
fn not_yet_valid_signer_is_rejected() {
    use openssl::asn1::Asn1Time;
    use openssl::hash::MessageDigest;
    use openssl::x509::{X509Builder, X509NameBuilder};
    let pki = pki();
    // Re-issue the client's key with a validity starting tomorrow.
    let key = load_key(&pki.client.key).unwrap();
    let ca_key = load_key(&pki.ca.key).unwrap();
    let ca = load_cert(&pki.ca.cert).unwrap();
    let mut name = X509NameBuilder::new().unwrap();
    name.append_entry_by_text("CN", "future.example.org")
        .unwrap();
    let name = name.build();
    let mut b = X509Builder::new().unwrap();
    b.set_version(2).unwrap();
    b.set_subject_name(&name).unwrap();
    b.set_issuer_name(ca.subject_name()).unwrap();
    b.set_pubkey(&key).unwrap();
    b.set_not_before(&Asn1Time::days_from_now(1).unwrap())
        .unwrap();
    b.set_not_after(&Asn1Time::days_from_now(2).unwrap())
        .unwrap();
    b.sign(&ca_key, MessageDigest::sha256()).unwrap();
    let future = Identity {
        cert: b.build(),
        key,
    };
    assert!(matches!(
        check_validity(&future.cert, Duration::ZERO),
        Err(CryptoError::NotYetValid { .. })
    ));
    let body = seal(b"x", &future, &identity(&pki.server).cert, Cipher::Des3).unwrap();
    let err = opener(false).open(&body).unwrap_err();
    assert!(
        matches!(err, CryptoError::NotYetValid { ref dn, .. } if dn == "/CN=future.example.org"),
        "{err}"
    );
}

#[test]
fn dn_list_parsing() {
    let text = "# allowed senders\n\n  /C=UK/O=eScience/OU=CLRC/L=RAL/CN=host.example.org  \n\
                not a dn\n/C=UK/O=ssm-test/CN=client.example.org\n   # indented comment\n\
                /C=UK/O=eScience/OU=CLRC/L=RAL/CN=host.example.org\n";
    let (list, warnings) = DnList::parse(text);
    assert_eq!(list.len(), 2);
    assert!(!list.is_empty());
    assert_eq!(warnings.len(), 1);
    assert!(warnings[0].contains("line 4"), "{warnings:?}");
    assert!(list.contains("/C=UK/O=eScience/OU=CLRC/L=RAL/CN=host.example.org"));
    assert!(list.contains("/C=UK/O=ssm-test/CN=client.example.org"));
    // Exact match only: case and whitespace matter.
    assert!(!list.contains("/C=UK/O=ssm-test/CN=CLIENT.example.org"));
    assert!(!list.contains("/C=UK/O=ssm-test/CN=client.example.org "));
    assert!(!list.contains("/C=UK/O=ssm-test"));

    let (empty, warnings) = DnList::parse("# nothing\n\n");
    assert!(empty.is_empty() && warnings.is_empty());
}

#[test]
fn dn_list_load() {
    let pki = pki();
    let good = pki.dir.join("dns-good");
    std::fs::write(&good, format!("# test\n{}\n", pki.client.dn)).unwrap();
    let list = DnList::load(&good).unwrap();
    assert!(list.contains(&pki.client.dn));
    let none = pki.dir.join("dns-none");
    std::fs::write(&none, "# only comments\nnot a dn\n").unwrap();
    assert!(matches!(
        DnList::load(&none),
        Err(CryptoError::DnList { .. })
    ));
    let err = DnList::load(&pki.dir.join("dns-missing")).unwrap_err();
    assert!(matches!(err, CryptoError::DnList { .. }) && err.to_string().contains("dns-missing"));
}

#[test]
fn cipher_names_parse() {
    for (cipher, name) in Cipher::ALL.iter().zip(Cipher::NAMES) {
        assert_eq!(name.parse::<Cipher>().unwrap(), *cipher);
    }
    assert!("blowfish".parse::<Cipher>().is_err());
}
