//! `ssm queue`.

/// Arguments of `ssm queue`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Runs `ssm queue`.
pub fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("`ssm queue` is not implemented yet")
}
