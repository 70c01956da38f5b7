//! Fuzzes the whole message opener (`ssm::crypto::Opener::open`: S/MIME envelope, signature,
//! signer chain, payload) with arbitrary bodies, as hostile senders on the broker network could
//! send them. A throwaway PKI is generated once per fuzzing process.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use ssm::crypto::{Identity, Opener, TrustStore};
use ssm::harness::pki::Pki;

fn opener() -> &'static Opener {
    static OPENER: OnceLock<Opener> = OnceLock::new();
    OPENER.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("ssm-fuzz-pki-{}", std::process::id()));
        let pki = Pki::generate(&dir).expect("generate the fuzzing PKI");
        let identity = Identity::load(&pki.server.cert, &pki.server.key).expect("server identity");
        let trust = TrustStore::new(Some(&pki.capath), None, true).expect("trust store");
        Opener::new(identity, trust).with_max_size(1024 * 1024)
    })
}

fuzz_target!(|data: &[u8]| {
    if let Ok(opened) = opener().open(data) {
        // Only a message signed by a trusted, unrevoked signer may ever open.
        assert!(opened.content.len() <= 1024 * 1024);
        assert!(!opened.signer_dn.is_empty());
    }
});
