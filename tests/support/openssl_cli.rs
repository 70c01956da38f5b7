//! Shared helpers for the crypto tests: one throwaway PKI per test binary, and running the
//! `openssl` command line (the reference implementation's tool) for interoperability checks.
#![allow(dead_code)]

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use ssm::crypto::{Identity, Opener, TrustStore};
use ssm::harness::pki::{CertFiles, Pki};

/// The PKI shared by all tests of one binary (RSA key generation is the slow part).
pub fn pki() -> &'static Pki {
    static PKI: OnceLock<Pki> = OnceLock::new();
    PKI.get_or_init(|| {
        // Kept on purpose (a static is never dropped): under cargo's per-target temporary
        // directory, not /tmp, so `cargo clean` removes it.
        let dir = tempfile::Builder::new()
            .prefix("crypto-pki-")
            .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
            .expect("tempdir")
            .keep();
        Pki::generate(&dir).expect("generate PKI")
    })
}

pub fn identity(files: &CertFiles) -> Identity {
    Identity::load(&files.cert, &files.key).expect("load identity")
}

/// An opener for the server identity trusting the PKI's capath.
pub fn opener(crl_check: bool) -> Opener {
    let pki = pki();
    let trust = TrustStore::new(Some(&pki.capath), None, crl_check).expect("trust store");
    Opener::new(identity(&pki.server), trust)
}

/// Runs `openssl <args>` with `input` on stdin; returns stdout, panicking with stderr on failure.
pub fn openssl(args: &[&str], input: &[u8]) -> Vec<u8> {
    run("openssl", args, input)
}

/// Runs a program with `input` on stdin; returns stdout, panicking with stderr on failure.
pub fn run(program: &str, args: &[&str], input: &[u8]) -> Vec<u8> {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    let mut stdin = child.stdin.take().expect("stdin");
    let input = input.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let out = child.wait_with_output().expect("wait");
    writer.join().expect("writer");
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// zlib-compress with Python's `zlib.compress` (what the reference senders use).
pub fn py_zlib_compress(data: &[u8]) -> Vec<u8> {
    run(
        "python3",
        &[
            "-c",
            "import sys,zlib; sys.stdout.buffer.write(zlib.compress(sys.stdin.buffer.read()))",
        ],
        data,
    )
}

/// zlib-decompress with Python.
pub fn py_zlib_decompress(data: &[u8]) -> Vec<u8> {
    run(
        "python3",
        &[
            "-c",
            "import sys,zlib; sys.stdout.buffer.write(zlib.decompress(sys.stdin.buffer.read()))",
        ],
        data,
    )
}

/// base64 as Python's old `base64.encodestring` wrote it: 76-column lines, each ending in "\n".
pub fn py_b64_wrapped(data: &[u8]) -> Vec<u8> {
    run(
        "python3",
        &["-c", "import sys,base64; sys.stdout.buffer.write(base64.encodebytes(sys.stdin.buffer.read()))"],
        data,
    )
}

/// The reference sender's pipeline done with the `openssl` CLI:
/// `openssl smime -sign -text` then `openssl smime -encrypt -<cipher>`.
pub fn cli_sign_encrypt(
    content: &[u8],
    signer: &CertFiles,
    recipient: &Path,
    cipher: &str,
) -> Vec<u8> {
    let signed = openssl(
        &[
            "smime",
            "-sign",
            "-inkey",
            path(&signer.key),
            "-signer",
            path(&signer.cert),
            "-text",
        ],
        content,
    );
    openssl(
        &["smime", "-encrypt", &format!("-{cipher}"), path(recipient)],
        &signed,
    )
}

/// The reference receiver's pipeline with the CLI: decrypt, verify (`-noverify`: chain checked
/// separately), which also strips the `-text` header. Returns the signed content.
pub fn cli_decrypt_verify(body: &[u8], recipient: &CertFiles, capath: &Path) -> Vec<u8> {
    let signed = openssl(
        &[
            "smime",
            "-decrypt",
            "-recip",
            path(&recipient.cert),
            "-inkey",
            path(&recipient.key),
        ],
        body,
    );
    openssl(
        &[
            "smime",
            "-verify",
            "-CApath",
            path(capath),
            "-noverify",
            "-text",
        ],
        &signed,
    )
}

pub use super::process::path_str as path;
