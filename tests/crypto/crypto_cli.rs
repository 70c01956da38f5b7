//! The `ssm seal` and `ssm open` commands, run as a user would.

use crate::support::openssl_cli;

use std::process::Output;

use openssl_cli::*;

fn ssm(args: &[&str], input: &[u8]) -> Output {
    crate::support::process::ssm_output(args, Some(input))
}

#[test]
fn seal_then_open_through_the_binary_and_openssl() {
    let pki = pki();
    let msg = b"APEL-individual-job-message: v0.3\nSite: TEST\n%%\n";
    let sealed = ssm(
        &[
            "seal",
            "--cert",
            path(&pki.client.cert),
            "--key",
            path(&pki.client.key),
            "--server-cert",
            path(&pki.server.cert),
            "--cipher",
            "aes128",
        ],
        msg,
    );
    assert!(
        sealed.status.success(),
        "{}",
        String::from_utf8_lossy(&sealed.stderr)
    );
    // The reference receiver's tools can read it.
    let signed_content = cli_decrypt_verify(&sealed.stdout, &pki.server, &pki.capath);
    assert!(!signed_content.is_empty());

    // `ssm open` from a file to a file.
    let dir = tempfile::tempdir().unwrap();
    let body_path = dir.path().join("body.smime");
    let out_path = dir.path().join("msg.out");
    std::fs::write(&body_path, &sealed.stdout).unwrap();
    let opened = ssm(
        &[
            "open",
            "--cert",
            path(&pki.server.cert),
            "--key",
            path(&pki.server.key),
            "--capath",
            path(&pki.capath),
            "--crl-check",
            path(&body_path),
            "-o",
            path(&out_path),
        ],
        b"",
    );
    assert!(
        opened.status.success(),
        "{}",
        String::from_utf8_lossy(&opened.stderr)
    );
    assert_eq!(std::fs::read(&out_path).unwrap(), msg);
    assert_eq!(
        String::from_utf8_lossy(&opened.stderr).trim(),
        format!("signer: {}", pki.client.dn)
    );
}

#[test]
fn open_failure_is_one_line_and_exit_1() {
    let pki = pki();
    let sealed = ssm(
        &[
            "seal",
            "--cert",
            path(&pki.revoked_client.cert),
            "--key",
            path(&pki.revoked_client.key),
            "--server-cert",
            path(&pki.server.cert),
        ],
        b"from a revoked sender",
    );
    assert!(sealed.status.success());
    let opened = ssm(
        &[
            "open",
            "--cert",
            path(&pki.server.cert),
            "--key",
            path(&pki.server.key),
            "--cafile",
            path(&pki.ca.cert),
            "--capath",
            path(&pki.capath),
            "--crl-check",
        ],
        &sealed.stdout,
    );
    assert_eq!(opened.status.code(), Some(1));
    assert!(opened.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&opened.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("ssm: error: "), "{stderr}");
    assert!(
        stderr.contains("revoked") && stderr.contains("revoked.example.org"),
        "{stderr}"
    );
}

#[test]
fn seal_with_mismatched_key_fails() {
    let pki = pki();
    let out = ssm(
        &[
            "seal",
            "--cert",
            path(&pki.client.cert),
            "--key",
            path(&pki.server.key),
            "--server-cert",
            path(&pki.server.cert),
        ],
        b"x",
    );
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("does not match"), "{stderr}");
}

#[test]
fn open_requires_a_trust_source() {
    let pki = pki();
    let out = ssm(
        &[
            "open",
            "--cert",
            path(&pki.server.cert),
            "--key",
            path(&pki.server.key),
        ],
        b"",
    );
    assert!(!out.status.success());
}
