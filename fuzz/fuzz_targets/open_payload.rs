//! Fuzzes the hand-written part of opening a message: MIME text-header stripping, lenient
//! base64 and capped zlib (`ssm::crypto::unpack`). Checks, beyond "never panics", that the cap
//! holds: no output is ever larger than the limit.
#![no_main]

use libfuzzer_sys::fuzz_target;

const MAX: usize = 64 * 1024;

fuzz_target!(|data: &[u8]| {
    if let Ok(out) = ssm::crypto::unpack(data, MAX) {
        assert!(out.len() <= MAX);
    }
});
