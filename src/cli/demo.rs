//! `ssm demo`.

/// Arguments of `ssm demo`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Runs `ssm demo`.
pub fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("`ssm demo` is not implemented yet")
}
