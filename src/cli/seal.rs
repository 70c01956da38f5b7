//! `ssm seal`.

/// Arguments of `ssm seal`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Runs `ssm seal`.
pub fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("`ssm seal` is not implemented yet")
}
