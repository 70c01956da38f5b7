//! `ssm bench`.

/// Arguments of `ssm bench`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Runs `ssm bench`.
pub fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("`ssm bench` is not implemented yet")
}
