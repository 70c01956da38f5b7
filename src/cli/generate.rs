//! Hidden `ssm generate-man DIR` and `ssm completions SHELL`: man pages and shell completions
//! made from the clap definitions themselves, so that they can never drift from the binary.
//! Packaging runs them (see `scripts/package-check.sh`); they need nothing but the binary.

use std::path::PathBuf;

use anyhow::Context;
use clap::CommandFactory;

use super::Cli;

/// Arguments of `ssm generate-man`.
#[derive(Debug, clap::Args)]
pub struct ManArgs {
    /// Directory to write `ssm.1` and `ssm-<command>.1` into (created if missing).
    pub dir: PathBuf,
}

/// Arguments of `ssm completions`.
#[derive(Debug, clap::Args)]
pub struct CompletionArgs {
    /// bash, zsh, fish, elvish or powershell.
    pub shell: clap_complete::Shell,
}

/// Writes one man page per command and subcommand.
pub fn man(args: ManArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("cannot create {}", args.dir.display()))?;
    let cmd = Cli::command();
    write_pages(&args.dir, cmd, "ssm")?;
    Ok(())
}

fn write_pages(dir: &std::path::Path, cmd: clap::Command, name: &str) -> anyhow::Result<()> {
    let cmd = cmd
        .display_name(name.to_string())
        .bin_name(name.replace('-', " "));
    let path = dir.join(format!("{name}.1"));
    let mut out = Vec::new();
    clap_mangen::Man::new(cmd.clone()).render(&mut out)?;
    std::fs::write(&path, out).with_context(|| format!("cannot write {}", path.display()))?;
    for sub in cmd.get_subcommands() {
        if sub.is_hide_set() || sub.get_name() == "help" {
            continue;
        }
        write_pages(dir, sub.clone(), &format!("{name}-{}", sub.get_name()))?;
    }
    Ok(())
}

/// Prints the completion script for a shell on stdout.
pub fn completions(args: CompletionArgs) -> anyhow::Result<()> {
    let mut cmd = Cli::command();
    clap_complete::generate(args.shell, &mut cmd, "ssm", &mut std::io::stdout());
    Ok(())
}
