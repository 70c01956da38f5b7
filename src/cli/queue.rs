//! `ssm queue`: lets an operator inspect (`ls`, `count`) or clean (`purge`) an outgoing queue.

use std::io::Write;
use std::path::PathBuf;
use std::time::SystemTime;

use anyhow::Context;

use crate::queue::{Outgoing, PathType};

/// Arguments of `ssm queue`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// What to do.
    #[command(subcommand)]
    pub action: Action,
}

/// Where the queue is.
#[derive(Debug, clap::Args)]
pub struct QueueArgs {
    /// The outgoing queue directory.
    #[arg(long)]
    pub path: PathBuf,
    /// The queue layout: `dirq` (dirq.QueueSimple) or `directory` (one file per message).
    #[arg(long, default_value = "dirq")]
    pub path_type: PathType,
}

/// The `ssm queue` actions.
#[derive(Debug, clap::Subcommand)]
pub enum Action {
    /// List the elements, oldest first: name, size in bytes, age in seconds, locked or not.
    Ls(QueueArgs),
    /// Print the number of elements.
    Count(QueueArgs),
    /// Remove stale temporary files (older than 300 s), release stale locks (older than 600 s)
    /// and remove empty old intermediate directories.
    Purge(QueueArgs),
}

fn open(q: &QueueArgs) -> anyhow::Result<Outgoing> {
    if !q.path.is_dir() {
        anyhow::bail!("queue directory {} does not exist", q.path.display());
    }
    Outgoing::open(&q.path, q.path_type)
        .with_context(|| format!("cannot open queue {}", q.path.display()))
}

/// Runs `ssm queue`.
pub fn run(args: Args) -> anyhow::Result<()> {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    match args.action {
        Action::Ls(q) => {
            let queue = open(&q)?;
            let now = SystemTime::now();
            for name in queue.names()? {
                let info = match queue.info(&name) {
                    Ok(info) => info,
                    // Taken by a sender since the listing: not in the queue any more.
                    Err(e)
                        if e.io_error().map(|e| e.kind()) == Some(std::io::ErrorKind::NotFound) =>
                    {
                        continue
                    }
                    Err(e) => return Err(e.into()),
                };
                let age = now
                    .duration_since(info.modified)
                    .map(|d| d.as_secs())
                    .unwrap_or(0);
                let locked = if info.locked { "locked" } else { "-" };
                writeln!(out, "{}\t{}\t{}\t{}", info.name, info.size, age, locked)?;
            }
        }
        Action::Count(q) => {
            writeln!(out, "{}", open(&q)?.count()?)?;
        }
        Action::Purge(q) => {
            let r = open(&q)?.purge()?;
            writeln!(
                out,
                "removed {} temporary files, released {} stale locks, removed {} empty directories",
                r.temporary_removed, r.locks_released, r.directories_removed
            )?;
        }
    }
    out.flush()?;
    Ok(())
}
