//! `ssm enqueue`: adds files (or stdin) to an outgoing queue, as the accounting client does.
//!
//! Each added element is durable before its name is printed (one name per line, in the order of
//! the files), so a script can trust a printed name.

use std::io::{Read, Write};
use std::path::PathBuf;

use anyhow::Context;

use crate::queue::{Outgoing, PathType};

/// Arguments of `ssm enqueue`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The outgoing queue directory (created if missing).
    #[arg(long)]
    pub path: PathBuf,
    /// The queue layout: `dirq` (dirq.QueueSimple) or `directory` (one file per message).
    #[arg(long, default_value = "dirq")]
    pub path_type: PathType,
    /// Files to add, one message each; stdin is read as one message when none is given.
    pub files: Vec<PathBuf>,
}

/// Runs `ssm enqueue`.
pub fn run(args: Args) -> anyhow::Result<()> {
    let queue = Outgoing::open(&args.path, args.path_type)
        .with_context(|| format!("cannot open queue {}", args.path.display()))?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    if args.files.is_empty() {
        let mut data = Vec::new();
        std::io::stdin()
            .read_to_end(&mut data)
            .context("cannot read stdin")?;
        writeln!(out, "{}", queue.add(&data)?)?;
    } else {
        for file in &args.files {
            let data =
                std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
            writeln!(out, "{}", queue.add(&data)?)?;
        }
    }
    out.flush()?;
    Ok(())
}
