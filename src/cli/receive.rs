//! `ssm receive`.

/// Arguments of `ssm receive`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Runs `ssm receive`.
pub fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("`ssm receive` is not implemented yet")
}
