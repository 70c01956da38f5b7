//! `ssm status`.

/// Arguments of `ssm status`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Runs `ssm status`.
pub fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("`ssm status` is not implemented yet")
}
