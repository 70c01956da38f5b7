//! `ssm enqueue`.

/// Arguments of `ssm enqueue`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Runs `ssm enqueue`.
pub fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("`ssm enqueue` is not implemented yet")
}
