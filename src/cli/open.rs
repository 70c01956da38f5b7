//! `ssm open`.

/// Arguments of `ssm open`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Runs `ssm open`.
pub fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("`ssm open` is not implemented yet")
}
