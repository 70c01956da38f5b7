//! Log set-up for the long-running commands: level from the configuration (or `RUST_LOG`),
//! to a log file and/or the console (stderr), one line per event with a timestamp, the level,
//! the module and the message, as operators of the Python SSM are used to.

use std::fs::OpenOptions;
use std::path::Path;
use std::sync::Mutex;

use anyhow::Context;
use tracing_subscriber::EnvFilter;

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
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let result = match logfile {
        Some(path) => {
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("cannot open log file {}", path.display()))?;
            if console {
                builder
                    .with_ansi(false)
                    .with_writer(Tee(Mutex::new(file)))
                    .try_init()
            } else {
                builder
                    .with_ansi(false)
                    .with_writer(Mutex::new(file))
                    .try_init()
            }
        }
        None if console => builder.with_writer(std::io::stderr).try_init(),
        None => builder.with_writer(std::io::sink).try_init(),
    };
    // An already installed subscriber (tests, `ssm demo` calling in twice) is fine.
    let _ = result;
    Ok(())
}

/// Writes every log line to the file and to stderr.
struct Tee(Mutex<std::fs::File>);

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Tee {
    type Writer = TeeWriter<'a>;

    fn make_writer(&'a self) -> TeeWriter<'a> {
        TeeWriter(&self.0)
    }
}

struct TeeWriter<'a>(&'a Mutex<std::fs::File>);

impl std::io::Write for TeeWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let _ = std::io::stderr().write_all(buf);
        match self.0.lock() {
            Ok(mut f) => f.write_all(buf).map(|()| buf.len()),
            Err(_) => Ok(buf.len()),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
