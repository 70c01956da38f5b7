//! Names of intermediate directories and elements, as `dirq` forms and recognises them.
//!
//! An element name is `%08x%05x%01x`: seconds since the Epoch, the microseconds, and one random
//! hexadecimal digit chosen once per queue object; an intermediate directory name is `%08x`.
//! Names sort lexically in time order, which is how both queue kinds iterate oldest first.

use std::time::{SystemTime, UNIX_EPOCH};

/// Length of an element name (`%08x%05x%01x`).
pub const ELEMENT_LEN: usize = 14;
/// Length of an intermediate directory name (`%08x`).
pub const DIRECTORY_LEN: usize = 8;

fn is_lower_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Whether `s` matches dirq's element pattern `^[0-9a-f]{14}$`.
pub fn is_element(s: &str) -> bool {
    is_lower_hex(s, ELEMENT_LEN)
}

/// Whether `s` matches dirq's intermediate directory pattern `^[0-9a-f]{8}$`.
pub fn is_directory(s: &str) -> bool {
    is_lower_hex(s, DIRECTORY_LEN)
}

/// Splits a full element name `dddddddd/eeeeeeeeeeeeee` into its two parts, if well formed.
pub fn split_full(name: &str) -> Option<(&str, &str)> {
    let (dir, elt) = name.split_once('/')?;
    (is_directory(dir) && is_element(elt)).then_some((dir, elt))
}

/// Seconds and microseconds since the Epoch, now.
pub fn now() -> (u64, u32) {
    // A clock before 1970 is a broken machine; treating it as the Epoch keeps names valid.
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    (d.as_secs(), d.subsec_micros())
}

/// A new element name for the given random digit (dirq's `_name`).
pub fn element_name(rndhex: u8) -> String {
    let (secs, micros) = now();
    format!("{:08x}{:05x}{:01x}", secs, micros, rndhex & 0xf)
}

/// A random hexadecimal digit, fixed per queue object as dirq does.
pub fn random_hex() -> u8 {
    rand::random::<u8>() & 0xf
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn element_names_match_the_pattern_and_carry_the_digit() {
        let n = element_name(0xb);
        assert!(is_element(&n), "{n}");
        assert!(n.ends_with('b'));
        let (secs, _) = now();
        let got = u64::from_str_radix(&n[..8], 16).unwrap();
        assert!(secs.abs_diff(got) <= 1);
    }

    #[test]
    fn patterns_reject_junk() {
        assert!(is_element("6b069679736414"));
        assert!(!is_element("6b069679736414.tmp"));
        assert!(!is_element("6B069679736414"));
        assert!(!is_element("6b06967973641"));
        assert!(is_directory("6b069670"));
        assert!(!is_directory("temporary"));
        assert!(!is_directory("6b06967g"));
        assert_eq!(
            split_full("6b069670/6b069679736414"),
            Some(("6b069670", "6b069679736414"))
        );
        assert_eq!(split_full("../6b069679736414"), None);
        assert_eq!(split_full("6b069670/6b069679736414/x"), None);
        assert_eq!(split_full("6b069670"), None);
    }

    #[test]
    fn names_sort_in_time_order() {
        let a = element_name(0xf);
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = element_name(0x0);
        assert!(a < b);
    }
}
