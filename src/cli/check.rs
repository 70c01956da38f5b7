//! `ssm check`.

/// Arguments of `ssm check`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Runs `ssm check`.
pub fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("`ssm check` is not implemented yet")
}
