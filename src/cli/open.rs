//! `ssm open`: decrypt and verify a message as a receiver does (`openssl smime` compatible).

use std::path::PathBuf;

use crate::cli::seal::{read_input, write_output};
use crate::crypto::{Identity, Opener, TrustStore, DEFAULT_MAX_SIZE};

/// Arguments of `ssm open`.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("trust").required(true).multiple(true).args(["capath", "cafile"])))]
pub struct Args {
    /// The receiver's certificate (PEM): the message must be encrypted for it.
    #[arg(long, value_name = "FILE")]
    pub cert: PathBuf,
    /// The receiver's private key (PEM, unencrypted).
    #[arg(long, value_name = "FILE")]
    pub key: PathBuf,
    /// Hashed directory of trusted CA certificates and CRLs (like `openssl -CApath`).
    #[arg(long, value_name = "DIR")]
    pub capath: Option<PathBuf>,
    /// PEM bundle of trusted CA certificates (and CRLs) (like `openssl -CAfile`).
    #[arg(long, value_name = "FILE")]
    pub cafile: Option<PathBuf>,
    /// Check CRLs for every certificate of the signer's chain (a missing CRL is an error).
    #[arg(long)]
    pub crl_check: bool,
    /// Refuse messages that decompress to more than this many bytes.
    #[arg(long, default_value_t = DEFAULT_MAX_SIZE, value_name = "BYTES")]
    pub max_size: usize,
    /// The sealed message (default: standard input).
    #[arg(value_name = "IN")]
    pub input: Option<PathBuf>,
    /// Where to write the original message (default: standard output).
    #[arg(short = 'o', long = "out", value_name = "OUT")]
    pub output: Option<PathBuf>,
}

/// Runs `ssm open`: writes the message and prints `signer: <DN>` on standard error.
pub fn run(args: Args) -> anyhow::Result<()> {
    let identity = Identity::load(&args.cert, &args.key)?;
    let trust = TrustStore::new(
        args.capath.as_deref(),
        args.cafile.as_deref(),
        args.crl_check,
    )?;
    let opener = Opener::new(identity, trust).with_max_size(args.max_size);
    let body = read_input(args.input.as_ref())?;
    let opened = opener.open(&body)?;
    write_output(args.output.as_ref(), &opened.content)?;
    eprintln!("signer: {}", opened.signer_dn);
    Ok(())
}
