//! Log set-up for the long-running commands: level from the configuration (or `RUST_LOG`),
//! to a log file and/or the console (stderr), one line per event in the Python SSM's format
//! (`time - module - LEVEL - message fields`, see [`format`]), which operators already grep.
//! Control characters in messages and field values are escaped ([`EscapedFields`]), so that one
//! event is always one line, whatever a peer sent.
//!
//! The log file can be reopened ([`reopen`], called on SIGHUP) so that logrotate can move it
//! away and have the daemon write to a fresh file without a restart (no `copytruncate`
//! needed). Lines written while the file is swapped are never split between the two files.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use anyhow::Context;
use tracing_subscriber::EnvFilter;

mod format;

pub use format::EscapedFields;

/// `value` as text with control characters escaped the way log lines escape them, for the few
/// places that write peer-supplied text outside the logs (the CLI's final error line).
pub fn escape_controls(value: impl std::fmt::Display) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = write!(format::Escaper(&mut out), "{value}");
    out
}

/// The open log file, shared by the subscriber's writer and [`reopen`].
#[derive(Clone)]
struct LogFile {
    path: PathBuf,
    file: Arc<Mutex<File>>,
    tee: bool,
}

/// The log file of this process, once [`init`] opened one.
static LOG_FILE: OnceLock<LogFile> = OnceLock::new();

fn open_append(path: &Path) -> anyhow::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("cannot open log file {}", path.display()))
}

/// Installs the global subscriber. `level` is a Python-style or tracing level name
/// (`DEBUG`, `INFO`, `WARNING`/`WARN`, `ERROR`, `CRITICAL`); `RUST_LOG` wins when set.
/// Calling it twice is harmless (the second call does nothing).
pub fn init(level: &str, logfile: Option<&Path>, console: bool) -> anyhow::Result<()> {
    let level = match level.to_ascii_uppercase().as_str() {
        "DEBUG" => "debug",
        "WARNING" | "WARN" => "warn",
        "ERROR" | "CRITICAL" => "error",
        "TRACE" => "trace",
        _ => "info",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    // Colours (of the field names) only on a terminal: under systemd, stderr goes to the
    // journal, and escape codes there or in a file make the logs unreadable and ungreppable.
    let ansi = logfile.is_none() && console && std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .fmt_fields(EscapedFields)
        .event_format(format::PythonFormat);
    let result = match logfile {
        Some(path) => {
            let log = LogFile {
                path: path.to_path_buf(),
                file: Arc::new(Mutex::new(open_append(path)?)),
                tee: console,
            };
            let result = builder.with_writer(log.clone()).try_init();
            if result.is_ok() {
                let _ = LOG_FILE.set(log);
            }
            result
        }
        None if console => builder.with_writer(std::io::stderr).try_init(),
        None => builder.with_writer(std::io::sink).try_init(),
    };
    // An already installed subscriber (tests, `ssm demo` calling in twice) is fine.
    let _ = result;
    Ok(())
}

/// Logging of the servers that take no configuration file (`ssm broker`, `ssm ams-server`):
/// `RUST_LOG` or else `info`, to stderr, fields escaped as everywhere. Another subscriber may
/// already be installed (e.g. when a server is embedded in a test or the demo): it is kept.
pub fn init_stderr() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .fmt_fields(EscapedFields)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Reopens the log file at its configured path (after logrotate moved it). Returns the path,
/// or `None` when no log file is in use. On failure the old file stays in use.
pub fn reopen() -> anyhow::Result<Option<PathBuf>> {
    let Some(log) = LOG_FILE.get() else {
        return Ok(None);
    };
    log.reopen()?;
    Ok(Some(log.path.clone()))
}

impl LogFile {
    fn reopen(&self) -> anyhow::Result<()> {
        let fresh = open_append(&self.path)?;
        match self.file.lock() {
            Ok(mut f) => *f = fresh,
            Err(poisoned) => *poisoned.into_inner() = fresh,
        }
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogFile {
    type Writer = LogWriter<'a>;

    fn make_writer(&'a self) -> LogWriter<'a> {
        LogWriter(self)
    }
}

/// Writes one formatted event to the current log file (and stderr when teeing).
struct LogWriter<'a>(&'a LogFile);

impl std::io::Write for LogWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.0.tee {
            let _ = std::io::stderr().write_all(buf);
        }
        // A full disk must not take the daemon down: the line is lost, the work goes on.
        match self.0.file.lock() {
            Ok(mut f) => {
                let _ = f.write_all(buf);
            }
            Err(poisoned) => {
                let _ = poisoned.into_inner().write_all(buf);
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use tracing_subscriber::fmt::MakeWriter;

    #[test]
    fn escape_controls_escapes_like_the_logs() {
        assert_eq!(
            escape_controls(format_args!("bad DN /CN=x\n2026 - INFO - Stored\u{1b}[8m")),
            r"bad DN /CN=x\n2026 - INFO - Stored\x1b[8m"
        );
        assert_eq!(escape_controls("plain /C=UK/CN=a"), "plain /C=UK/CN=a");
    }

    #[test]
    fn reopen_follows_a_rotated_file() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("ssm.log");
        let log = LogFile {
            path: path.clone(),
            file: Arc::new(Mutex::new(open_append(&path).unwrap())),
            tee: false,
        };
        log.make_writer().write_all(b"before\n").unwrap();
        let rotated = d.path().join("ssm.log.1");
        std::fs::rename(&path, &rotated).unwrap();
        log.make_writer().write_all(b"still old\n").unwrap();
        log.reopen().unwrap();
        log.make_writer().write_all(b"after\n").unwrap();
        assert_eq!(
            std::fs::read_to_string(&rotated).unwrap(),
            "before\nstill old\n"
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "after\n");
    }

    #[test]
    fn reopen_failure_keeps_the_old_file() {
        let d = tempfile::tempdir().unwrap();
        let sub = d.path().join("logs");
        std::fs::create_dir(&sub).unwrap();
        let path = sub.join("ssm.log");
        let log = LogFile {
            path: path.clone(),
            file: Arc::new(Mutex::new(open_append(&path).unwrap())),
            tee: false,
        };
        std::fs::rename(&sub, d.path().join("gone")).unwrap();
        let err = log.reopen().unwrap_err();
        assert!(
            format!("{err:#}").contains("cannot open log file"),
            "{err:#}"
        );
        log.make_writer().write_all(b"kept\n").unwrap();
        assert_eq!(
            std::fs::read_to_string(d.path().join("gone/ssm.log")).unwrap(),
            "kept\n"
        );
    }
}
