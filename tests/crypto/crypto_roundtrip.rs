//! seal → open is the identity, for any bytes and every cipher; openers are shareable.

use crate::support::openssl_cli;

use openssl_cli::*;
use proptest::prelude::*;
use ssm::crypto::{message_id, seal, Cipher};

fn cipher_strategy() -> impl Strategy<Value = Cipher> {
    prop::sample::select(Cipher::ALL.to_vec())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]

    #[test]
    fn seal_then_open_is_identity(msg in prop::collection::vec(any::<u8>(), 0..4096), cipher in cipher_strategy()) {
        let pki = pki();
        let body = seal(&msg, &identity(&pki.client), &identity(&pki.server).cert, cipher).unwrap();
        let opened = opener(true).open(&body).unwrap();
        prop_assert_eq!(opened.content, msg);
        prop_assert_eq!(opened.signer_dn, pki.client.dn.clone());
    }
}

#[test]
fn empty_and_non_utf8_messages_round_trip() {
    let pki = pki();
    let opener = opener(false);
    for msg in [&b""[..], &[0xff, 0xfe, 0x00, 0x80][..], &b"\r\n\r\n"[..]] {
        let body = seal(
            msg,
            &identity(&pki.client),
            &identity(&pki.server).cert,
            Cipher::Des3,
        )
        .unwrap();
        assert_eq!(opener.open(&body).unwrap().content, msg);
    }
}

#[test]
fn opener_is_shared_between_threads() {
    let pki = pki();
    let opener = opener(true);
    let signer = identity(&pki.client);
    let server_cert = identity(&pki.server).cert;
    std::thread::scope(|s| {
        for t in 0..4 {
            let opener = opener.clone();
            let signer = signer.clone();
            let server_cert = server_cert.clone();
            s.spawn(move || {
                for i in 0..5 {
                    let msg = format!("thread {t} message {i}").into_bytes();
                    let body = seal(&msg, &signer, &server_cert, Cipher::Aes128).unwrap();
                    assert_eq!(opener.open(&body).unwrap().content, msg);
                }
            });
        }
    });
}

#[test]
fn many_senders_from_issue_client() {
    let pki = pki();
    let opener = opener(true);
    let files = pki.issue_client("site-42").unwrap();
    assert_eq!(files.dn, "/C=UK/O=ssm-test/CN=site-42");
    let body = seal(
        b"from site 42",
        &identity(&files),
        &identity(&pki.server).cert,
        Cipher::Aes256,
    )
    .unwrap();
    let opened = opener.open(&body).unwrap();
    assert_eq!(opened.signer_dn, files.dn);
    assert!(pki.issue_client("../escape").is_err());
}

#[test]
fn key_files_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let pki = pki();
    for files in [&pki.ca, &pki.server, &pki.client, &pki.revoked_client] {
        let mode = std::fs::metadata(&files.key).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", files.key.display());
    }
}

#[test]
fn message_id_is_md5_of_original_bytes() {
    assert_eq!(message_id(b"hello"), "5d41402abc4b2a76b9719d911017c592");
    let out = openssl(&["md5", "-r"], b"some record\n");
    let cli = String::from_utf8(out).unwrap();
    assert_eq!(
        cli.split_whitespace().next().unwrap(),
        message_id(b"some record\n")
    );
}

#[test]
fn shared_types_are_send_and_sync() {
    fn assert_send_sync<T: Send + Sync + Clone>() {}
    assert_send_sync::<ssm::crypto::Opener>();
    assert_send_sync::<ssm::crypto::TrustStore>();
    assert_send_sync::<ssm::crypto::Identity>();
    assert_send_sync::<ssm::crypto::DnList>();
    let pki = pki();
    assert_eq!(identity(&pki.server).dn(), "/C=UK/O=ssm-test/CN=localhost");
    assert_eq!(identity(&pki.ca).dn(), pki.ca.dn);
}
