//! The symmetric cipher of the S/MIME envelope.

use std::fmt;
use std::str::FromStr;

/// The content-encryption cipher used when sealing (opening accepts whatever the envelope names).
///
/// `Des3` is the default because the protocol specification names it; it is a legacy cipher
/// (64-bit blocks, slow): prefer an AES variant where both ends allow it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Cipher {
    /// Triple DES in CBC mode (`-des3`).
    #[default]
    Des3,
    /// AES-128 in CBC mode (`-aes128`).
    Aes128,
    /// AES-192 in CBC mode (`-aes192`).
    Aes192,
    /// AES-256 in CBC mode (`-aes256`).
    Aes256,
}

impl Cipher {
    /// All ciphers, in the order of their names in [`Cipher::NAMES`].
    pub const ALL: [Cipher; 4] = [Cipher::Des3, Cipher::Aes128, Cipher::Aes192, Cipher::Aes256];
    /// The accepted names, as `openssl smime` spells the flags without the dash.
    pub const NAMES: [&'static str; 4] = ["des3", "aes128", "aes192", "aes256"];

    /// The name used on the command line and in configuration (`des3`, `aes128`...).
    pub fn name(self) -> &'static str {
        match self {
            Cipher::Des3 => "des3",
            Cipher::Aes128 => "aes128",
            Cipher::Aes192 => "aes192",
            Cipher::Aes256 => "aes256",
        }
    }

    /// The OpenSSL cipher.
    pub fn openssl(self) -> openssl::symm::Cipher {
        match self {
            Cipher::Des3 => openssl::symm::Cipher::des_ede3_cbc(),
            Cipher::Aes128 => openssl::symm::Cipher::aes_128_cbc(),
            Cipher::Aes192 => openssl::symm::Cipher::aes_192_cbc(),
            Cipher::Aes256 => openssl::symm::Cipher::aes_256_cbc(),
        }
    }
}

impl fmt::Display for Cipher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The error of parsing a [`Cipher`] name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown cipher {0:?} (expected one of des3, aes128, aes192, aes256)")]
pub struct UnknownCipher(pub String);

impl FromStr for Cipher {
    type Err = UnknownCipher;

    /// Accepts `des3`, `aes128`, `aes192`, `aes256` (any case, an optional leading dash, and the
    /// OpenSSL long names `des-ede3-cbc`, `aes-128-cbc`...).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let name = s.trim().trim_start_matches('-').to_ascii_lowercase();
        match name.as_str() {
            "des3" | "des-ede3-cbc" | "3des" => Ok(Cipher::Des3),
            "aes128" | "aes-128-cbc" => Ok(Cipher::Aes128),
            "aes192" | "aes-192-cbc" => Ok(Cipher::Aes192),
            "aes256" | "aes-256-cbc" => Ok(Cipher::Aes256),
            _ => Err(UnknownCipher(s.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for (cipher, name) in Cipher::ALL.iter().zip(Cipher::NAMES) {
            assert_eq!(cipher.to_string(), name);
            assert_eq!(name.parse::<Cipher>(), Ok(*cipher));
        }
        assert_eq!("AES-256-CBC".parse::<Cipher>(), Ok(Cipher::Aes256));
        assert_eq!("-des3".parse::<Cipher>(), Ok(Cipher::Des3));
        assert!("rc2".parse::<Cipher>().is_err());
        assert_eq!(Cipher::default(), Cipher::Des3);
    }
}
