//! The log line format of the Python SSM, which operators grep and parse:
//! `%(asctime)s - %(name)s - %(levelname)s - %(message)s`, e.g.
//!
//! ```text
//! 2026-11-25 11:08:40,123 - ssm.receiver.commit - INFO - stored md5=5d41… signer=/C=UK/CN=site
//! ```
//!
//! `asctime` is local time with milliseconds after a comma (Python's default), the name is the
//! Rust module path with dots, the level is Python's name (`WARNING`, not `WARN`), and the
//! message is followed by the event's fields as `key=value`.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// Formats events as the Python SSM's logging did.
pub(crate) struct PythonFormat;

impl<S, N> FormatEvent<S, N> for PythonFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        write!(
            writer,
            "{} - {} - {} - ",
            asctime(SystemTime::now()),
            meta.target().replace("::", "."),
            level_name(meta.level())
        )?;
        ctx.field_format().format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}

/// Python's `levelname` for a tracing level.
fn level_name(level: &Level) -> &'static str {
    match *level {
        Level::ERROR => "ERROR",
        Level::WARN => "WARNING",
        Level::INFO => "INFO",
        Level::DEBUG => "DEBUG",
        Level::TRACE => "TRACE",
    }
}

/// `YYYY-MM-DD HH:MM:SS,mmm` in local time (UTC if the local time cannot be had).
fn asctime(at: SystemTime) -> String {
    let since = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = libc::time_t::try_from(since.as_secs()).unwrap_or(libc::time_t::MAX);
    // SAFETY: all-zero is a valid `tm` (integers and, on glibc, a null zone name pointer).
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: localtime_r is the thread-safe variant; both pointers are valid for the call and
    // `tm` is only read after it returned non-null.
    let local = unsafe { !libc::localtime_r(&secs, &mut tm).is_null() };
    // SAFETY: as above, for gmtime_r.
    if !local && unsafe { libc::gmtime_r(&secs, &mut tm).is_null() } {
        return format!("{}.{:03}", since.as_secs(), since.subsec_millis());
    }
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02},{:03}",
        i64::from(tm.tm_year) + 1900,
        tm.tm_mon + 1,
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec,
        since.subsec_millis()
    )
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use tracing_subscriber::fmt::MakeWriter;

    use super::*;

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Captured {
        type Writer = Captured;
        fn make_writer(&'a self) -> Captured {
            self.clone()
        }
    }

    #[test]
    fn lines_look_like_the_python_ones() {
        let out = Captured::default();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .event_format(PythonFormat)
            .with_writer(out.clone())
            .with_max_level(Level::DEBUG)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::warn!(count = 2, "released stale locks");
            tracing::info!(md5 = "abc", "stored");
        });
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        for (line, rest) in lines.iter().zip([
            " - ssm.logging.format.tests - WARNING - released stale locks count=2",
            " - ssm.logging.format.tests - INFO - stored md5=\"abc\"",
        ]) {
            // `YYYY-MM-DD HH:MM:SS,mmm` then the rest.
            let (stamp, tail) = line.split_at(23);
            assert_eq!(tail, rest, "{line}");
            let b = stamp.as_bytes();
            for (i, c) in b.iter().enumerate() {
                let want_digit = !matches!(i, 4 | 7 | 10 | 13 | 16 | 19);
                assert_eq!(c.is_ascii_digit(), want_digit, "{stamp}");
            }
            assert_eq!(
                (b[4], b[10], b[13], b[19]),
                (b'-', b' ', b':', b','),
                "{stamp}"
            );
        }
    }

    #[test]
    fn asctime_has_the_milliseconds_after_a_comma() {
        let at = UNIX_EPOCH + Duration::from_millis(1_764_068_920_045);
        let s = asctime(at);
        assert_eq!(s.len(), 23, "{s}");
        assert!(s.ends_with(",045"), "{s}");
        assert!(s.starts_with("2025-11-2"), "{s}");
    }
}
