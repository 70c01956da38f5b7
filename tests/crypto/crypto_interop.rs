//! Interoperability with the `openssl smime` command line, both ways, for every cipher.

use crate::support::openssl_cli;

use base64::Engine;
use openssl_cli::*;
use ssm::crypto::{seal, Cipher};

fn sample() -> Vec<u8> {
    let mut msg = Vec::new();
    for i in 0..40 {
        msg.extend_from_slice(
            format!(
                "APEL-individual-job-message: v0.3\nSite: RAL-LCG2\nLocalJobId: {i}\n\
                 WallDuration: 3600\nCpuDuration: 3400\n%%\n"
            )
            .as_bytes(),
        );
    }
    msg.extend_from_slice(&[0, 0xff, 0xfe, b'\r', b'\n']);
    msg
}

#[test]
fn rust_seal_opens_with_openssl_cli_for_every_cipher() {
    let pki = pki();
    let signer = identity(&pki.client);
    let recipient = identity(&pki.server).cert;
    let msg = sample();
    for cipher in Cipher::ALL {
        let body = seal(&msg, &signer, &recipient, cipher).expect("seal");
        let text = String::from_utf8(body.clone()).expect("S/MIME is text");
        assert!(
            text.contains("application/x-pkcs7-mime") && text.contains("enveloped-data"),
            "{cipher}: {text}"
        );
        let content = cli_decrypt_verify(&body, &pki.server, &pki.capath);
        let compact: Vec<u8> = content
            .into_iter()
            .filter(|b| !b.is_ascii_whitespace())
            .collect();
        let compressed = base64::engine::general_purpose::STANDARD
            .decode(compact)
            .expect("base64");
        assert_eq!(py_zlib_decompress(&compressed), msg, "{cipher}");
    }
}

#[test]
fn rust_seal_is_multipart_signed_with_text_part() {
    let pki = pki();
    let body = seal(
        b"hello",
        &identity(&pki.client),
        &identity(&pki.server).cert,
        Cipher::Aes128,
    )
    .unwrap();
    let signed = openssl(
        &[
            "smime",
            "-decrypt",
            "-recip",
            path(&pki.server.cert),
            "-inkey",
            path(&pki.server.key),
        ],
        &body,
    );
    let signed = String::from_utf8(signed).unwrap();
    assert!(signed.contains("multipart/signed"), "{signed}");
    assert!(signed.contains("micalg=\"sha-256\""), "{signed}");
    assert!(signed.contains("Content-Type: text/plain"), "{signed}");
    // The envelope names the cipher the CLI would.
    let info = String::from_utf8(openssl(&["smime", "-pk7out"], &body)).unwrap();
    let asn1 = String::from_utf8(openssl(&["asn1parse"], info.as_bytes())).unwrap();
    assert!(asn1.contains("aes-128-cbc"), "{asn1}");
}

#[test]
fn openssl_cli_seal_opens_with_rust_for_every_cipher() {
    let pki = pki();
    let opener = opener(true);
    let msg = sample();
    let b64 = base64::engine::general_purpose::STANDARD.encode(py_zlib_compress(&msg));
    for cipher in Cipher::ALL {
        let body = cli_sign_encrypt(b64.as_bytes(), &pki.client, &pki.server.cert, cipher.name());
        let opened = opener.open(&body).expect("open");
        assert_eq!(opened.content, msg, "{cipher}");
        assert_eq!(opened.signer_dn, pki.client.dn);
        assert_eq!(opened.signer_dn, "/C=UK/O=ssm-test/CN=client.example.org");
    }
}

#[test]
fn python_style_wrapped_base64_opens() {
    let pki = pki();
    let msg = sample().repeat(5);
    let wrapped = py_b64_wrapped(&py_zlib_compress(&msg));
    assert!(wrapped.iter().filter(|&&b| b == b'\n').count() > 2);
    let body = cli_sign_encrypt(&wrapped, &pki.client, &pki.server.cert, "des3");
    assert_eq!(opener(false).open(&body).expect("open").content, msg);
}

#[test]
fn content_signed_without_text_flag_opens() {
    let pki = pki();
    let msg = b"signed without -text".to_vec();
    let b64 = base64::engine::general_purpose::STANDARD.encode(py_zlib_compress(&msg));
    let signed = openssl(
        &[
            "smime",
            "-sign",
            "-inkey",
            path(&pki.client.key),
            "-signer",
            path(&pki.client.cert),
        ],
        b64.as_bytes(),
    );
    let body = openssl(
        &["smime", "-encrypt", "-aes256", path(&pki.server.cert)],
        &signed,
    );
    let opened = opener(false).open(&body).expect("open");
    assert_eq!(opened.content, msg);
}

#[test]
fn opaque_signed_content_opens() {
    let pki = pki();
    let msg = b"opaque signature".to_vec();
    let b64 = base64::engine::general_purpose::STANDARD.encode(py_zlib_compress(&msg));
    let signed = openssl(
        &[
            "smime",
            "-sign",
            "-nodetach",
            "-text",
            "-inkey",
            path(&pki.client.key),
            "-signer",
            path(&pki.client.cert),
        ],
        b64.as_bytes(),
    );
    let body = openssl(
        &["smime", "-encrypt", "-des3", path(&pki.server.cert)],
        &signed,
    );
    assert_eq!(opener(false).open(&body).expect("open").content, msg);
}

#[test]
fn subject_dn_matches_openssl_cli() {
    let pki = pki();
    let cert = ssm::crypto::load_cert(&pki.server.cert).unwrap();
    let out = openssl(
        &[
            "x509",
            "-noout",
            "-subject",
            "-nameopt",
            "compat",
            "-in",
            path(&pki.server.cert),
        ],
        b"",
    );
    let cli = String::from_utf8(out).unwrap();
    assert_eq!(
        format!("subject={}", ssm::crypto::subject_dn(&cert)),
        cli.trim()
    );
}

#[test]
fn generated_capath_works_for_openssl_verify() {
    let pki = pki();
    let ok = openssl(
        &[
            "verify",
            "-CApath",
            path(&pki.capath),
            "-crl_check_all",
            path(&pki.client.cert),
        ],
        b"",
    );
    assert!(String::from_utf8_lossy(&ok).contains(": OK"));
    let status = std::process::Command::new("openssl")
        .args([
            "verify",
            "-CApath",
            path(&pki.capath),
            "-crl_check_all",
            path(&pki.revoked_client.cert),
        ])
        .output()
        .unwrap();
    assert!(!status.status.success());
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&status.stdout),
        String::from_utf8_lossy(&status.stderr)
    );
    assert!(said.contains("certificate revoked"), "{said}");
}
