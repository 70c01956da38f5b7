//! `ssm send`.

/// Arguments of `ssm send`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Runs `ssm send`.
pub fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("`ssm send` is not implemented yet")
}
