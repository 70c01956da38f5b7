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
//!
//! Guarantees:
//! - One event is one line. The message and every field value are written through
//!   [`Escaper`]: line breaks, every other control character (C0, DEL, C1), the Unicode line
//!   and paragraph separators and the bidirectional-text controls come out as `\n`, `\r`,
//!   `\t`, `\x1b`, `\u{2028}`..., so that nothing a peer sends (a certificate DN, a header,
//!   an error text quoting either) can start a line of its own, forge a log line or drive the
//!   terminal that shows the log. Backslashes are written as they are.
//! - [`EscapedFields`] does this for any `tracing_subscriber` format: every command's logs
//!   use it (the Python format here, and the default format of `ssm broker` and `ssm bench`).

use std::error::Error;
use std::fmt::{self, Write as _};
use std::time::{SystemTime, UNIX_EPOCH};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::field::{MakeVisitor, VisitFmt, VisitOutput};
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
        _ctx: &FmtContext<'_, S, N>,
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
        // Always escaped, whatever field formatter the subscriber was built with.
        EscapedFields.format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}

/// Whether `c` is written escaped in a log line (see the module documentation).
fn needs_escape(c: char) -> bool {
    // `is_control` is Unicode's Cc: U+0000..=U+001F, U+007F..=U+009F (C0, DEL, C1; NEL too).
    c.is_control()
        || matches!(
            c,
            '\u{2028}' | '\u{2029}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
        )
}

/// A [`fmt::Write`] that passes text on with the characters of [`needs_escape`] escaped:
/// `\n`, `\r`, `\t`, `\xNN` for the other ASCII ones, `\u{NNNN}` for the rest.
pub(crate) struct Escaper<'a, W: fmt::Write + ?Sized>(pub(crate) &'a mut W);

impl<W: fmt::Write + ?Sized> fmt::Write for Escaper<'_, W> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let mut rest = s;
        while let Some((at, c)) = rest.char_indices().find(|&(_, c)| needs_escape(c)) {
            self.0.write_str(&rest[..at])?;
            match c {
                '\n' => self.0.write_str("\\n")?,
                '\r' => self.0.write_str("\\r")?,
                '\t' => self.0.write_str("\\t")?,
                c if c.is_ascii() => write!(self.0, "\\x{:02x}", u32::from(c))?,
                c => write!(self.0, "\\u{{{:x}}}", u32::from(c))?,
            }
            rest = &rest[at + c.len_utf8()..];
        }
        self.0.write_str(rest)
    }
}

/// The field formatter of every log: `message key=value ...` as `tracing_subscriber`'s
/// default writes it (strings and `?` values in `Debug` form, `%` values in `Display` form,
/// an error followed by its sources), with every value written through [`Escaper`].
#[derive(Debug, Clone, Copy, Default)]
pub struct EscapedFields;

impl<'a> MakeVisitor<Writer<'a>> for EscapedFields {
    type Visitor = EscapingVisitor<'a>;

    fn make_visitor(&self, writer: Writer<'a>) -> EscapingVisitor<'a> {
        EscapingVisitor {
            writer,
            is_empty: true,
            result: Ok(()),
        }
    }
}

/// Writes one event's (or span's) fields for [`EscapedFields`].
pub struct EscapingVisitor<'a> {
    writer: Writer<'a>,
    is_empty: bool,
    result: fmt::Result,
}

/// An error's sources, `[first, second]`.
struct Sources<'a>(&'a (dyn Error + 'static));

impl fmt::Display for Sources<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_char('[')?;
        let mut next = self.0.source();
        let mut first = true;
        while let Some(e) = next {
            if !first {
                f.write_str(", ")?;
            }
            first = false;
            write!(f, "{e}")?;
            next = e.source();
        }
        f.write_char(']')
    }
}

impl Visit for EscapingVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.record_debug(field, &format_args!("{value}"))
        } else {
            self.record_debug(field, &value)
        }
    }

    fn record_error(&mut self, field: &Field, value: &(dyn Error + 'static)) {
        if value.source().is_some() {
            let name = field.name();
            self.record_debug(
                field,
                &format_args!("{value} {name}.sources={}", Sources(value)),
            )
        } else {
            self.record_debug(field, &format_args!("{value}"))
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if self.result.is_err() {
            return;
        }
        let name = field.name();
        // Metadata of events that came from the `log` crate, shown elsewhere.
        if name.starts_with("log.") {
            return;
        }
        let name = name.strip_prefix("r#").unwrap_or(name);
        self.result = (|| {
            if !std::mem::take(&mut self.is_empty) {
                self.writer.write_char(' ')?;
            }
            if name != "message" {
                // Field names are identifiers in our own code; only they may be styled.
                if self.writer.has_ansi_escapes() {
                    write!(self.writer, "\x1b[3m{name}\x1b[0m\x1b[2m=\x1b[0m")?;
                } else {
                    write!(self.writer, "{name}=")?;
                }
            }
            write!(Escaper(&mut self.writer), "{value:?}")
        })();
    }
}

impl VisitOutput<fmt::Result> for EscapingVisitor<'_> {
    fn finish(self) -> fmt::Result {
        self.result
    }
}

impl VisitFmt for EscapingVisitor<'_> {
    fn writer(&mut self) -> &mut dyn fmt::Write {
        &mut self.writer
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
    use std::fmt::Write as _;
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

    fn escaped(s: &str) -> String {
        let mut out = String::new();
        write!(Escaper(&mut out), "{s}").unwrap();
        out
    }

    #[test]
    fn escaper_rules() {
        assert_eq!(
            escaped("plain text, /C=UK/CN=a\\b"),
            "plain text, /C=UK/CN=a\\b"
        );
        assert_eq!(escaped("a\nb\rc\td"), r"a\nb\rc\td");
        assert_eq!(
            escaped("\u{1b}[31m\u{7}\u{0}\u{7f}"),
            r"\x1b[31m\x07\x00\x7f"
        );
        assert_eq!(escaped("nel\u{85}csi\u{9b}"), r"nel\u{85}csi\u{9b}");
        assert_eq!(escaped("ls\u{2028}ps\u{2029}"), r"ls\u{2028}ps\u{2029}");
        assert_eq!(escaped("\u{202e}evil\u{2066}"), r"\u{202e}evil\u{2066}");
        // Printable text outside ASCII stays as it is.
        assert_eq!(escaped("café ☃ Łódź"), "café ☃ Łódź");
        assert_eq!(escaped(""), "");
    }

    #[derive(Debug, thiserror::Error)]
    #[error("outer\nfailure")]
    struct Outer(#[source] Inner);

    #[derive(Debug, thiserror::Error)]
    #[error("inner\u{1b}]0;title\u{7}")]
    struct Inner;

    struct Shown(&'static str);

    impl std::fmt::Display for Shown {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }

    fn capture(ansi: bool, python: bool, log: impl FnOnce()) -> String {
        let out = Captured::default();
        let builder = tracing_subscriber::fmt()
            .with_ansi(ansi)
            .fmt_fields(EscapedFields)
            .with_writer(out.clone())
            .with_max_level(Level::DEBUG);
        if python {
            let subscriber = builder.event_format(PythonFormat).finish();
            tracing::subscriber::with_default(subscriber, log);
        } else {
            tracing::subscriber::with_default(builder.finish(), log);
        }
        let bytes = out.0.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap()
    }

    /// What a hostile peer's certificate DN would put in the receiver's log.
    const FORGED: &str =
        "/CN=x\n2026-01-01 00:00:00,000 - ssm.receiver - INFO - Stored\u{1b}[2K\u{7}\u{85}\u{2028}";

    fn log_hostile_events() {
        let dn = FORGED.to_string();
        tracing::warn!(signer = %dn, "rejecting {}", dn);
        tracing::info!(signer = dn.as_str(), debug = ?dn, "handled");
        tracing::error!(
            err = &Outer(Inner) as &(dyn std::error::Error + 'static),
            "failed"
        );
        tracing::info!(shown = %Shown("a\r\nb"), "{}", Shown("line\none"));
    }

    fn assert_no_raw_controls(text: &str, allow_esc: bool) {
        for c in text.chars() {
            let ok = c == '\n' || (allow_esc && c == '\u{1b}') || !super::needs_escape(c);
            assert!(ok, "raw {c:?} in {text:?}");
        }
    }

    #[test]
    fn every_value_is_escaped_and_each_event_is_one_line() {
        let text = capture(false, true, log_hostile_events);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        assert!(text.ends_with('\n'));
        assert_no_raw_controls(&text, false);
        for line in &lines {
            assert!(line.contains(" - ssm.logging.format.tests - "), "{line}");
        }
        let forged = r"/CN=x\n2026-01-01 00:00:00,000 - ssm.receiver - INFO - Stored\x1b[2K\x07\u{85}\u{2028}";
        assert!(
            lines[0].ends_with(&format!(" - WARNING - rejecting {forged} signer={forged}")),
            "{}",
            lines[0]
        );
        // `Debug` forms keep their own escapes (`\n`, `\u{1b}`); nothing is escaped twice.
        assert!(
            lines[1].contains(r#"signer="/CN=x\n2026-01-01"#),
            "{}",
            lines[1]
        );
        assert!(lines[1].contains(r"Stored\u{1b}[2K\u{7}"), "{}", lines[1]);
        assert!(
            lines[2].ends_with(
                r" - ERROR - failed err=outer\nfailure err.sources=[inner\x1b]0;title\x07]"
            ),
            "{}",
            lines[2]
        );
        assert!(
            lines[3].ends_with(r" - INFO - line\none shown=a\r\nb"),
            "{}",
            lines[3]
        );
    }

    #[test]
    fn the_default_format_is_escaped_too() {
        // What `ssm broker` and `ssm bench` use.
        let text = capture(false, false, log_hostile_events);
        assert_eq!(text.lines().count(), 4, "{text}");
        assert_no_raw_controls(&text, false);
        assert!(text.contains(r"rejecting /CN=x\n2026-01-01"), "{text}");
    }

    #[test]
    fn on_a_terminal_only_field_names_are_styled() {
        let text = capture(true, true, || {
            let dn = FORGED.to_string();
            tracing::warn!(signer = %dn, "rejecting");
        });
        assert_eq!(text.lines().count(), 1, "{text}");
        assert_no_raw_controls(&text, true);
        let unstyled = text.replace("\u{1b}[3msigner\u{1b}[0m\u{1b}[2m=\u{1b}[0m", "signer=");
        assert!(!unstyled.contains('\u{1b}'), "{text:?}");
        assert!(unstyled.contains(r"Stored\x1b[2K\x07"), "{text:?}");
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
