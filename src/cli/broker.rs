//! `ssm broker`.

/// Arguments of `ssm broker`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Runs `ssm broker`.
pub fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("`ssm broker` is not implemented yet")
}
