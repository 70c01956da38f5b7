//! `ssmsend` and `ssmreceive`: the Python SSM 4.0's two commands, run by `ssm`, so that a site
//! or a repository switches without touching its cron lines, units or scripts.
//!
//! Guarantees:
//! - The binary acts as one of them only when it is called by that name: the file name of
//!   `argv[0]` is exactly `ssmsend` or `ssmreceive` (the packaged symlinks to `ssm`, or a copy).
//!   Called by any other name, `ssm`'s own command line is unchanged.
//! - They take the Python commands' flags and no others: `-c/--config` (default
//!   `/etc/apel/sender.cfg` resp. `/etc/apel/receiver.cfg`), `-d/--dn_file` (receiver),
//!   `-v/--version`, `-l/--log_config` (accepted and ignored with a warning: logging comes from
//!   the file's `[logging]`), `-h/--help`; long flags may be abbreviated as argparse allows.
//! - They run exactly what `ssm send -c FILE` and `ssm receive -c FILE [-d DNFILE]` run: the
//!   same configuration rules and the same setup path ([`crate::setup`]).
//! - Exit status as the Python SSM's: 0 when the sender sent everything or found nothing to
//!   send, 1 on any failure (a missing configuration file, which is reported on stdout as
//!   there, included); 2 for a command-line error (argparse's and clap's status). The receiver
//!   exits 1 when it cannot start or fails, and 0 when stopped by a signal (the Python receiver
//!   exits 1 then too: a clean stop is not a failure for systemd).

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};

use clap::{ArgAction, Parser};

use super::{receive, send};
use crate::config::{ReceiverOverrides, SenderOverrides};

/// The Python sender's default configuration file.
pub const SENDER_CONFIG: &str = "/etc/apel/sender.cfg";
/// The Python receiver's default configuration file.
pub const RECEIVER_CONFIG: &str = "/etc/apel/receiver.cfg";
/// The separate logging configuration of SSM before 2.x; the Python SSM warns when it exists.
const OLD_LOG_CONFIG: &str = "/etc/apel/logging.cfg";

/// Which of the two commands the binary was called as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropIn {
    /// `ssmsend`: `ssm send -c FILE`.
    Send,
    /// `ssmreceive`: `ssm receive -c FILE [-d DNFILE]`.
    Receive,
}

impl DropIn {
    /// The command `argv0` names, if it names one of them (by its file name only, so that a
    /// path or a symlink works and `ssm` itself stays `ssm`).
    pub fn from_argv0(argv0: &OsStr) -> Option<DropIn> {
        match Path::new(argv0).file_name()?.to_str()? {
            "ssmsend" => Some(DropIn::Send),
            "ssmreceive" => Some(DropIn::Receive),
            _ => None,
        }
    }

    /// The command's name.
    pub fn name(self) -> &'static str {
        match self {
            DropIn::Send => "ssmsend",
            DropIn::Receive => "ssmreceive",
        }
    }
}

/// Send every message of the outgoing queue once, then exit (the Python SSM's `ssmsend`, run by
/// `ssm send`).
#[derive(Debug, Parser, PartialEq, Eq)]
#[command(name = "ssmsend", disable_version_flag = true, infer_long_args = true)]
pub struct SendArgs {
    /// The sender's configuration file.
    #[arg(short = 'c', long = "config", value_name = "CONFIG", default_value = SENDER_CONFIG)]
    pub config: PathBuf,
    /// Deprecated and ignored: logging is configured by the file's [logging] section.
    #[arg(short = 'l', long = "log_config", value_name = "LOG_CONFIG")]
    pub log_config: Option<PathBuf>,
    /// Print the version and exit.
    #[arg(short = 'v', long = "version", action = ArgAction::SetTrue)]
    pub version: bool,
}

/// Receive messages from the broker and store them until stopped (the Python SSM's
/// `ssmreceive`, run by `ssm receive`). Runs in the foreground.
#[derive(Debug, Parser, PartialEq, Eq)]
#[command(
    name = "ssmreceive",
    disable_version_flag = true,
    infer_long_args = true
)]
pub struct ReceiveArgs {
    /// The receiver's configuration file.
    #[arg(short = 'c', long = "config", value_name = "CONFIG", default_value = RECEIVER_CONFIG)]
    pub config: PathBuf,
    /// Deprecated and ignored: logging is configured by the file's [logging] section.
    #[arg(short = 'l', long = "log_config", value_name = "LOG_CONFIG")]
    pub log_config: Option<PathBuf>,
    /// File of the senders' DNs allowed, one per line [default: the file's [receiver] dn_file,
    /// else /etc/apel/dns].
    #[arg(short = 'd', long = "dn_file", value_name = "DN_FILE")]
    pub dn_file: Option<PathBuf>,
    /// Print the version and exit.
    #[arg(short = 'v', long = "version", action = ArgAction::SetTrue)]
    pub version: bool,
}

/// What `-v` prints: the Python SSM prints `SSM 4.0.0`; this is the same line with our
/// version, so that a script that reads it sees which implementation runs.
pub fn version_line() -> String {
    format!("SSM {}", env!("CARGO_PKG_VERSION"))
}

/// Parses `args` (the whole command line, `argv[0]` first) as `role` does, runs it and returns
/// the exit status. A command-line error or `--help` exits here, as argparse does.
pub fn main(role: DropIn, args: impl IntoIterator<Item = OsString>) -> i32 {
    match role {
        DropIn::Send => run_send(SendArgs::parse_from(args)),
        DropIn::Receive => run_receive(ReceiveArgs::parse_from(args)),
    }
}

fn run_send(args: SendArgs) -> i32 {
    if args.version {
        println!("{}", version_line());
        return 0;
    }
    match sender_overrides(args, Path::new(OLD_LOG_CONFIG).exists()) {
        Ok(o) => finish(DropIn::Send, send::run(send::Args { o })),
        Err(status) => status,
    }
}

fn run_receive(args: ReceiveArgs) -> i32 {
    if args.version {
        println!("{}", version_line());
        return 0;
    }
    match receiver_overrides(args, Path::new(OLD_LOG_CONFIG).exists()) {
        Ok(o) => finish(DropIn::Receive, receive::run(receive::Args { o })),
        Err(status) => status,
    }
}

/// `ssm send`'s flags for these arguments, or the exit status when there is nothing to run.
fn sender_overrides(args: SendArgs, old_log_config: bool) -> Result<SenderOverrides, i32> {
    warn_log_config(DropIn::Send, args.log_config.as_deref(), old_log_config);
    require_file(&args.config)?;
    Ok(SenderOverrides {
        config: Some(args.config),
        ..Default::default()
    })
}

/// `ssm receive`'s flags for these arguments, or the exit status when there is nothing to run.
fn receiver_overrides(args: ReceiveArgs, old_log_config: bool) -> Result<ReceiverOverrides, i32> {
    warn_log_config(DropIn::Receive, args.log_config.as_deref(), old_log_config);
    require_file(&args.config)?;
    Ok(ReceiverOverrides {
        config: Some(args.config),
        // Absolute, as the Python receiver makes it: the DN file is read again on SIGHUP.
        dn_file: args.dn_file.map(|p| std::path::absolute(&p).unwrap_or(p)),
        ..Default::default()
    })
}

/// `ssm send` falls back to flags alone without a file; the Python commands refuse to start,
/// with this line on stdout, and so do these.
fn require_file(config: &Path) -> Result<(), i32> {
    if config.is_file() {
        Ok(())
    } else {
        println!("Config file not found at {}", config.display());
        Err(1)
    }
}

/// The Python SSM warns, before logging is set up (so on stderr), when `-l` is given or the old
/// logging file exists; so do we, and say what is used instead.
fn warn_log_config(role: DropIn, flag: Option<&Path>, old_file_exists: bool) {
    if let Some(text) = log_config_warning(flag, old_file_exists) {
        eprintln!("{}: warning: {text}", role.name());
    }
}

fn log_config_warning(flag: Option<&Path>, old_file_exists: bool) -> Option<String> {
    let what = match flag {
        Some(path) => format!("-l/--log_config {}", path.display()),
        None if old_file_exists => OLD_LOG_CONFIG.to_string(),
        None => return None,
    };
    Some(format!(
        "{what} is ignored (a separate logging configuration is deprecated): logging is \
         configured by the [logging] section of the configuration file"
    ))
}

fn finish(role: DropIn, result: anyhow::Result<()>) -> i32 {
    match result {
        Ok(()) => 0,
        Err(err) => {
            // The error may quote a peer (a DN, a header): escaped like a log line.
            let text = crate::logging::escape_controls(format_args!("{err:#}"));
            eprintln!("{}: error: {text}", role.name());
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn send(args: &[&str]) -> Result<SendArgs, clap::Error> {
        SendArgs::try_parse_from(std::iter::once("ssmsend").chain(args.iter().copied()))
    }

    fn receive(args: &[&str]) -> Result<ReceiveArgs, clap::Error> {
        ReceiveArgs::try_parse_from(std::iter::once("ssmreceive").chain(args.iter().copied()))
    }

    #[test]
    fn the_name_it_is_called_by_decides() {
        for (argv0, want) in [
            ("ssmsend", Some(DropIn::Send)),
            ("/usr/bin/ssmsend", Some(DropIn::Send)),
            ("./ssmreceive", Some(DropIn::Receive)),
            ("/opt/x/bin/ssmreceive", Some(DropIn::Receive)),
            ("ssm", None),
            ("/usr/bin/ssm", None),
            ("ssmsend.sh", None),
            ("/usr/bin/ssmsend/", Some(DropIn::Send)),
            ("ssmsend-old", None),
            ("xssmreceive", None),
            ("", None),
        ] {
            assert_eq!(DropIn::from_argv0(OsStr::new(argv0)), want, "{argv0:?}");
        }
    }

    #[test]
    fn defaults_are_the_python_paths() {
        let a = send(&[]).unwrap();
        assert_eq!(a.config, PathBuf::from("/etc/apel/sender.cfg"));
        assert_eq!((a.log_config, a.version), (None, false));
        let a = receive(&[]).unwrap();
        assert_eq!(a.config, PathBuf::from("/etc/apel/receiver.cfg"));
        assert_eq!(a.dn_file, None);
    }

    #[test]
    fn short_long_and_abbreviated_flags() {
        for args in [
            &["-c", "/x/s.cfg"][..],
            &["--config", "/x/s.cfg"],
            &["--config=/x/s.cfg"],
            &["-c/x/s.cfg"],
            &["--conf", "/x/s.cfg"],
        ] {
            assert_eq!(
                send(args).unwrap().config,
                PathBuf::from("/x/s.cfg"),
                "{args:?}"
            );
        }
        let a = receive(&["-c", "r.cfg", "-d", "dns", "-l", "log.cfg"]).unwrap();
        assert_eq!(a.config, PathBuf::from("r.cfg"));
        assert_eq!(a.dn_file, Some(PathBuf::from("dns")));
        assert_eq!(a.log_config, Some(PathBuf::from("log.cfg")));
        let a = receive(&["--dn_file", "d", "--log_config", "l", "--version"]).unwrap();
        assert_eq!(a.dn_file, Some(PathBuf::from("d")));
        assert!(a.version);
        assert!(send(&["-v"]).unwrap().version);
        assert!(send(&["--version"]).unwrap().version);
    }

    #[test]
    fn other_flags_are_usage_errors() {
        // `ssm send`'s own flags are not the Python command's: refused, status 2.
        for args in [
            &["--daemon"][..],
            &["-d", "dns"],
            &["--broker", "h:1"],
            &["extra"],
            &["-c"],
        ] {
            let err = send(args).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{args:?}");
        }
        assert_eq!(
            receive(&["--max-messages", "1"]).unwrap_err().exit_code(),
            2
        );
        // --help is not an error: status 0, as argparse.
        assert_eq!(send(&["--help"]).unwrap_err().exit_code(), 0);
    }

    #[test]
    fn the_version_line() {
        assert_eq!(version_line(), format!("SSM {}", env!("CARGO_PKG_VERSION")));
    }

    #[test]
    fn a_missing_config_file_is_status_1() {
        let a = send(&["-c", "/nonexistent/sender.cfg"]).unwrap();
        assert_eq!(sender_overrides(a, false).unwrap_err(), 1);
        let dir = tempfile::tempdir().unwrap();
        // A directory is not a configuration file either.
        let a = receive(&["-c", dir.path().to_str().unwrap()]).unwrap();
        assert_eq!(receiver_overrides(a, false).unwrap_err(), 1);
    }

    #[test]
    fn they_map_onto_ssm_send_and_receive() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("x.cfg");
        std::fs::write(&cfg, "[sender]\nprotocol: STOMP\n").unwrap();
        let a = send(&["-c", cfg.to_str().unwrap(), "-l", "/etc/apel/logging.cfg"]).unwrap();
        let o = sender_overrides(a, false).unwrap();
        assert_eq!(o.config.as_deref(), Some(cfg.as_path()));
        assert!(!o.daemon);
        assert!(o.broker.is_empty());

        let a = receive(&["-c", cfg.to_str().unwrap(), "-d", "relative/dns"]).unwrap();
        let o = receiver_overrides(a, false).unwrap();
        assert_eq!(o.config.as_deref(), Some(cfg.as_path()));
        let dn = o.dn_file.unwrap();
        assert!(dn.is_absolute() && dn.ends_with("relative/dns"), "{dn:?}");
        assert_eq!(o.max_messages, None);
        let a = receive(&["-c", cfg.to_str().unwrap()]).unwrap();
        assert_eq!(receiver_overrides(a, false).unwrap().dn_file, None);
    }

    #[test]
    fn the_log_config_warning() {
        assert_eq!(log_config_warning(None, false), None);
        let w = log_config_warning(Some(Path::new("/x/log.cfg")), false).unwrap();
        assert!(w.contains("-l/--log_config /x/log.cfg is ignored"), "{w}");
        assert!(w.contains("[logging]"), "{w}");
        let w = log_config_warning(None, true).unwrap();
        assert!(w.starts_with("/etc/apel/logging.cfg is ignored"), "{w}");
    }
}
