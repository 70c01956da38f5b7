//! The version 2 (SSM2) recipe: `sign -text`, then optionally `encrypt`; no zlib, no base64.
//! Round trips, and both ways with the `openssl smime` command line.

use crate::support::openssl_cli::*;
use ssm::crypto::{seal_v2, Cipher, CryptoError, Recipe};

const AES: [Cipher; 3] = [Cipher::Aes128, Cipher::Aes192, Cipher::Aes256];

fn apel() -> Vec<u8> {
    let mut msg = b"APEL-individual-job-message: v0.3\n".to_vec();
    for i in 0..20 {
        msg.extend_from_slice(
            format!("Site: RAL-LCG2\nLocalJobId: {i}\nWallDuration: 3600\n%%\n").as_bytes(),
        );
    }
    msg
}

#[test]
fn seal_v2_then_open_v2_is_identity_encrypted_or_not() {
    let pki = pki();
    let signer = identity(&pki.client);
    let server = identity(&pki.server).cert;
    let opener = opener(true);
    for msg in [
        apel(),
        Vec::new(),
        b"no final newline".to_vec(),
        b"\n\n".to_vec(),
    ] {
        let plain = seal_v2(&msg, &signer, None, Cipher::Aes128).unwrap();
        let text = String::from_utf8(plain.clone()).unwrap();
        assert!(text.contains("multipart/signed"), "{text}");
        assert!(!text.contains("pkcs7-mime;"), "{text}");
        let opened = opener.open_v2(&plain).unwrap();
        assert_eq!(opened.content, msg);
        assert_eq!(opened.signer_dn, pki.client.dn);
        for cipher in AES {
            let body = seal_v2(&msg, &signer, Some(&server), cipher).unwrap();
            assert!(String::from_utf8_lossy(&body).contains("enveloped-data"));
            assert_eq!(opener.open_v2(&body).unwrap().content, msg, "{cipher}");
            assert_eq!(
                opener.open_with(Recipe::V2, &body).unwrap().content,
                msg,
                "{cipher}"
            );
        }
    }
}

#[test]
fn recipes_dispatch_and_version_1_needs_a_recipient() {
    let pki = pki();
    let signer = identity(&pki.client);
    let server = identity(&pki.server).cert;
    let opener = opener(false);
    let msg = apel();
    let v1 = Recipe::V1
        .seal(&msg, &signer, Some(&server), Cipher::Des3)
        .unwrap();
    assert_eq!(opener.open_with(Recipe::V1, &v1).unwrap().content, msg);
    assert!(matches!(
        Recipe::V1.seal(&msg, &signer, None, Cipher::Des3),
        Err(CryptoError::Seal { .. })
    ));
    let v2 = Recipe::V2
        .seal(&msg, &signer, None, Cipher::Aes128)
        .unwrap();
    // A version 1 opener wants an envelope; version 2 is read by its own recipe only.
    assert!(matches!(
        opener.open(&v2),
        Err(CryptoError::NotEncrypted { .. })
    ));
    assert_eq!(opener.open_with(Recipe::V2, &v2).unwrap().content, msg);
    assert_eq!(Recipe::default(), Recipe::V1);
}

#[test]
fn open_v2_refuses_what_it_must() {
    let pki = pki();
    let opener = opener(false);
    let body = seal_v2(&apel(), &identity(&pki.client), None, Cipher::Aes128).unwrap();
    let mut tampered = body.clone();
    let at = tampered
        .windows(5)
        .position(|w| w == b"Site:")
        .expect("content in clear");
    tampered[at] = b's';
    assert!(matches!(
        opener.open_v2(&tampered),
        Err(CryptoError::BadSignature { .. })
    ));
    assert!(matches!(
        opener.open_v2(b"plain text, not S/MIME"),
        Err(CryptoError::NotSigned { .. })
    ));
    assert!(matches!(
        opener.open_v2("caf\u{e9}".as_bytes()),
        Err(CryptoError::NotSigned { .. })
    ));
    let small = opener.clone().with_max_size(10);
    assert!(matches!(
        small.open_v2(&body),
        Err(CryptoError::TooLarge { max: 10 })
    ));
}

#[test]
fn openssl_cli_ssm2_bodies_open_with_rust() {
    let pki = pki();
    let opener = opener(true);
    let msg = apel();
    // Signed only, as ARC and the AUDITOR plugin send.
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
        &msg,
    );
    let opened = opener.open_v2(&signed).unwrap();
    assert_eq!(opened.content, msg);
    assert_eq!(opened.signer_dn, pki.client.dn);
    // Signed then encrypted, as the Python SSM sends with a server certificate.
    for cipher in AES {
        let body = cli_sign_encrypt(&msg, &pki.client, &pki.server.cert, cipher.name());
        assert_eq!(opener.open_v2(&body).unwrap().content, msg, "{cipher}");
    }
}

#[test]
fn rust_ssm2_bodies_open_with_openssl_cli() {
    let pki = pki();
    let signer = identity(&pki.client);
    let msg = apel();
    let crlf: Vec<u8> = String::from_utf8(msg.clone())
        .unwrap()
        .replace('\n', "\r\n")
        .into_bytes();
    for cipher in AES {
        let body = seal_v2(&msg, &signer, Some(&identity(&pki.server).cert), cipher).unwrap();
        // `-verify -text` gives the canonical (CRLF) text, what the signature covers.
        assert_eq!(
            cli_decrypt_verify(&body, &pki.server, &pki.capath),
            crlf,
            "{cipher}"
        );
    }
    let signed = seal_v2(&msg, &signer, None, Cipher::Aes128).unwrap();
    let out = openssl(
        &[
            "smime",
            "-verify",
            "-CApath",
            path(&pki.capath),
            "-noverify",
            "-text",
        ],
        &signed,
    );
    assert_eq!(out, crlf);
}
