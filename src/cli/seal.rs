//! `ssm seal`: sign and encrypt a message as a sender does (`openssl smime` compatible).

use std::io::{Read, Write};
use std::path::PathBuf;

use anyhow::Context;

use crate::crypto::{load_cert, seal, Cipher, Identity};

/// Arguments of `ssm seal`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The sender's certificate (PEM), used to sign.
    #[arg(long, value_name = "FILE")]
    pub cert: PathBuf,
    /// The sender's private key (PEM, unencrypted).
    #[arg(long, value_name = "FILE")]
    pub key: PathBuf,
    /// The receiver's certificate (PEM): the message is encrypted for it.
    #[arg(long, value_name = "FILE")]
    pub server_cert: PathBuf,
    /// Content cipher: des3 (protocol default, legacy), aes128, aes192 or aes256.
    #[arg(long, default_value_t = Cipher::Des3, value_name = "CIPHER")]
    pub cipher: Cipher,
    /// The message to seal (default: standard input).
    #[arg(value_name = "IN")]
    pub input: Option<PathBuf>,
    /// Where to write the sealed S/MIME message (default: standard output).
    #[arg(short = 'o', long = "out", value_name = "OUT")]
    pub output: Option<PathBuf>,
}

/// Reads a whole file, or standard input when `path` is `None`.
pub(crate) fn read_input(path: Option<&PathBuf>) -> anyhow::Result<Vec<u8>> {
    match path {
        Some(p) => std::fs::read(p).with_context(|| format!("cannot read {}", p.display())),
        None => {
            let mut buf = Vec::new();
            std::io::stdin()
                .read_to_end(&mut buf)
                .context("cannot read standard input")?;
            Ok(buf)
        }
    }
}

/// Writes `bytes` to a file, or standard output when `path` is `None`.
pub(crate) fn write_output(path: Option<&PathBuf>, bytes: &[u8]) -> anyhow::Result<()> {
    match path {
        Some(p) => {
            std::fs::write(p, bytes).with_context(|| format!("cannot write {}", p.display()))
        }
        None => {
            let mut out = std::io::stdout().lock();
            out.write_all(bytes)
                .and_then(|()| out.flush())
                .context("cannot write standard output")
        }
    }
}

/// Runs `ssm seal`.
pub fn run(args: Args) -> anyhow::Result<()> {
    let signer = Identity::load(&args.cert, &args.key)?;
    let recipient = load_cert(&args.server_cert)?;
    let msg = read_input(args.input.as_ref())?;
    let body = seal(&msg, &signer, &recipient, args.cipher)?;
    write_output(args.output.as_ref(), &body)
}
