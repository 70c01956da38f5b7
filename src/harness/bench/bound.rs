//! The cryptographic bound of a run (issue #17): what one RSA private-key operation (and
//! AES, MD5, zlib and base64 of one message) costs with the run's own keys and message size,
//! measured in the same run, so that each side's CPU per message can be read as a multiple of
//! it on any machine.
//!
//! Guarantees:
//! - Each figure is the CPU time of the measuring thread (not wall time), after warm-up calls,
//!   over at least 20 calls and a given CPU budget; the first failing call fails the
//!   measurement (no made-up figure).

use std::time::Duration;

use crate::crypto::Cipher;
use crate::harness::demo::{self, Setup};

/// The cryptographic bound of a run (issue #17): the CPU time of one operation, milliseconds,
/// measured in this process before anything else runs, with the run's own keys and message
/// size. Each is the CPU time of the measuring thread (not wall time), so that other work on a
/// shared machine does not inflate it, as the children's CPU per message is not.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CryptoCosts {
    /// One RSA signature (SHA-256) with the first sender's private key: the sender's one
    /// private-key operation per message.
    pub rsa_sign_ms: f64,
    /// One RSA private-key decryption (PKCS #1 v1.5, as a CMS key transport) with the
    /// server's key: the receiver's one private-key operation per message.
    pub rsa_decrypt_ms: f64,
    /// Encrypting one message with the run's cipher (CBC).
    pub aes_ms: f64,
    /// MD5 of one message (its id).
    pub md5_ms: f64,
    /// zlib (the fastest level, as `crypto::payload` seals) of one message, with a compressor
    /// reused as the sender does.
    pub zlib_ms: f64,
    /// base64 of one message.
    pub base64_ms: f64,
}

/// CPU time of the calling thread, nanoseconds.
fn thread_cpu_ns() -> u64 {
    // SAFETY: clock_gettime only writes the struct it is given.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    if unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) } != 0 {
        return 0;
    }
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// CPU milliseconds per call of `op`: run until `budget` of CPU time and at least 20 calls, after
/// a few warm-up calls. The first error stops the measurement.
fn per_call_ms(
    budget: Duration,
    mut op: impl FnMut() -> anyhow::Result<()>,
) -> anyhow::Result<f64> {
    for _ in 0..3 {
        op()?;
    }
    let budget = budget.as_nanos() as u64;
    let start = thread_cpu_ns();
    let mut calls = 0u64;
    loop {
        op()?;
        calls += 1;
        let spent = thread_cpu_ns().saturating_sub(start);
        if calls >= 20 && spent >= budget {
            return Ok(spent as f64 / calls as f64 / 1e6);
        }
    }
}

impl CryptoCosts {
    /// The mean of two measurements, field by field: the bench measures before the children
    /// start and again after they stop, because this virtual machine's speed drifts within
    /// minutes (one RSA operation 0.27–0.43 ms in one hour) and a single measurement before
    /// the run moved the ratios by as much as the changes they were to show.
    pub fn mean(&self, other: &CryptoCosts) -> CryptoCosts {
        let m = |a: f64, b: f64| (a + b) / 2.0;
        CryptoCosts {
            rsa_sign_ms: m(self.rsa_sign_ms, other.rsa_sign_ms),
            rsa_decrypt_ms: m(self.rsa_decrypt_ms, other.rsa_decrypt_ms),
            aes_ms: m(self.aes_ms, other.aes_ms),
            md5_ms: m(self.md5_ms, other.md5_ms),
            zlib_ms: m(self.zlib_ms, other.zlib_ms),
            base64_ms: m(self.base64_ms, other.base64_ms),
        }
    }

    /// Measures each operation with the keys of `setup` and a message of `size` bytes (the
    /// bench's own APEL text). Takes about `6 x budget` of CPU.
    pub fn measure(
        setup: &Setup,
        size: usize,
        cipher: Cipher,
        budget: Duration,
    ) -> anyhow::Result<CryptoCosts> {
        use base64::Engine as _;
        use md5::Digest as _;
        use openssl::encrypt::{Decrypter, Encrypter};
        use openssl::hash::MessageDigest;
        use openssl::sign::Signer;

        let sender_key = crate::crypto::load_key(&setup.pki.client.key)?;
        let server_key = crate::crypto::load_key(&setup.pki.server.key)?;
        let server_cert = crate::crypto::load_cert(&setup.pki.server.cert)?;
        let message = demo::apel_message(0, size);

        let rsa_sign_ms = per_call_ms(budget, || {
            let mut signer = Signer::new(MessageDigest::sha256(), &sender_key)?;
            signer.update(&message[..message.len().min(64)])?;
            std::hint::black_box(signer.sign_to_vec()?);
            Ok(())
        })?;

        // A content key wrapped for the server, as a CMS recipient info carries it.
        let public = server_cert.public_key()?;
        let encrypter = Encrypter::new(&public)?;
        let mut wrapped = vec![0u8; encrypter.encrypt_len(&[0u8; 16])?];
        let n = encrypter.encrypt(&[7u8; 16], &mut wrapped)?;
        wrapped.truncate(n);
        let rsa_decrypt_ms = per_call_ms(budget, || {
            let decrypter = Decrypter::new(&server_key)?;
            let mut out = vec![0u8; decrypter.decrypt_len(&wrapped)?];
            std::hint::black_box(decrypter.decrypt(&wrapped, &mut out)?);
            Ok(())
        })?;

        let key = vec![0x42u8; cipher.openssl().key_len()];
        let iv = vec![0x24u8; cipher.openssl().iv_len().unwrap_or(0)];
        let aes_ms = per_call_ms(budget, || {
            let iv = (!iv.is_empty()).then_some(iv.as_slice());
            std::hint::black_box(openssl::symm::encrypt(
                cipher.openssl(),
                &key,
                iv,
                &message,
            )?);
            Ok(())
        })?;

        let md5_ms = per_call_ms(budget, || {
            std::hint::black_box(md5::Md5::digest(&message));
            Ok(())
        })?;

        let mut deflate = flate2::Compress::new(flate2::Compression::fast(), true);
        let mut out = Vec::with_capacity(message.len() + 1024);
        let zlib_ms = per_call_ms(budget, || {
            deflate.reset();
            out.clear();
            deflate.compress_vec(&message, &mut out, flate2::FlushCompress::Finish)?;
            std::hint::black_box(&out);
            Ok(())
        })?;

        let base64_ms = per_call_ms(budget, || {
            std::hint::black_box(base64::engine::general_purpose::STANDARD.encode(&message));
            Ok(())
        })?;

        Ok(CryptoCosts {
            rsa_sign_ms,
            rsa_decrypt_ms,
            aes_ms,
            md5_ms,
            zlib_ms,
            base64_ms,
        })
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bound_is_measured_with_the_run_keys() {
        let dir = tempfile::tempdir().unwrap();
        let setup = Setup::prepare(dir.path(), 1).unwrap();
        let c =
            CryptoCosts::measure(&setup, 10240, Cipher::Aes128, Duration::from_millis(5)).unwrap();
        for (name, ms) in [
            ("sign", c.rsa_sign_ms),
            ("decrypt", c.rsa_decrypt_ms),
            ("aes", c.aes_ms),
            ("md5", c.md5_ms),
            ("zlib", c.zlib_ms),
            ("base64", c.base64_ms),
        ] {
            assert!(ms > 0.0 && ms < 100.0, "{name}: {ms} ms");
        }
        let twice = c.mean(&CryptoCosts {
            rsa_sign_ms: c.rsa_sign_ms * 3.0,
            ..c.clone()
        });
        assert!((twice.rsa_sign_ms - 2.0 * c.rsa_sign_ms).abs() < 1e-12);
        assert!((twice.md5_ms - c.md5_ms).abs() < 1e-12);
        // A private-key operation costs far more than hashing 10 KB.
        assert!(
            c.rsa_sign_ms > c.md5_ms && c.rsa_decrypt_ms > c.md5_ms,
            "{c:?}"
        );
    }
}
