//! Parsers for single option values, shared by the INI reader and the command-line flags.
//!
//! Each parser takes the text as written and returns the typed value or a short reason (one
//! line, no option name) that the caller wraps with the file, section and option, or that clap
//! prints after the flag name.

use std::time::Duration;

use crate::crypto::Cipher;
use crate::queue::PathType;
use crate::stomp::BrokerKind;

/// The accepted `[broker] kind` / `--broker-kind` names, in documentation order.
pub const BROKER_KINDS: &[&str] = &["auto", "rabbitmq", "activemq", "embedded"];

/// A `[broker] kind` / `--broker-kind` choice: a broker kind to assume, or `None` for `auto`
/// (find out from the broker's `CONNECTED` frame).
///
/// A newtype rather than `Option<BrokerKind>` because clap gives `Option<Option<T>>` fields a
/// meaning of their own (a flag with an optional value).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KindChoice(pub Option<BrokerKind>);

/// An encryption cipher name: `des3`, `aes128`, `aes192` or `aes256`, in any case (OpenSSL's
/// long names such as `aes-256-cbc` are accepted too, as everywhere a cipher is named).
pub fn parse_cipher(s: &str) -> Result<Cipher, String> {
    s.parse::<Cipher>().map_err(|_| {
        format!(
            "'{}' is not a cipher (one of {})",
            excerpt(s),
            Cipher::NAMES.join(", ")
        )
    })
}

/// An SSM protocol version: `1` (the acknowledged protocol) or `2` (SSM2, the Python SSM's).
pub fn parse_ssm_version(s: &str) -> Result<crate::protocol::Version, String> {
    match s.trim() {
        "1" => Ok(crate::protocol::Version::V1),
        "2" => Ok(crate::protocol::Version::V2),
        _ => Err(format!("'{}' is not an SSM version (1 or 2)", excerpt(s))),
    }
}

/// An outgoing queue layout: `dirq` or `directory`, in any case.
pub fn parse_path_type(s: &str) -> Result<PathType, String> {
    s.parse::<PathType>().map_err(|_| {
        format!(
            "'{}' is not a queue type (one of {})",
            excerpt(s),
            PathType::NAMES.join(", ")
        )
    })
}

/// A broker kind: `auto` (detect), `rabbitmq`, `activemq` or `embedded`, in any case.
pub fn parse_broker_kind(s: &str) -> Result<KindChoice, String> {
    if s.trim().eq_ignore_ascii_case("auto") {
        return Ok(KindChoice(None));
    }
    match s.parse::<BrokerKind>() {
        // `other` is what detection says of an unknown broker, not something to ask for.
        Ok(BrokerKind::Other) | Err(_) => Err(format!(
            "'{}' is not a broker kind (one of {})",
            excerpt(s),
            BROKER_KINDS.join(", ")
        )),
        Ok(kind) => Ok(KindChoice(Some(kind))),
    }
}

/// The log level names accepted in `[logging] level` (Python's names, plus `TRACE` and `WARN`).
pub const LEVELS: &[&str] = &[
    "TRACE", "DEBUG", "INFO", "WARN", "WARNING", "ERROR", "CRITICAL",
];

/// A boolean as Python's configparser spells it: `true/false`, `yes/no`, `on/off`, `1/0`, in any
/// case.
pub fn parse_bool(s: &str) -> Result<bool, String> {
    let t = s.trim();
    for yes in ["true", "yes", "on", "1"] {
        if t.eq_ignore_ascii_case(yes) {
            return Ok(true);
        }
    }
    for no in ["false", "no", "off", "0"] {
        if t.eq_ignore_ascii_case(no) {
            return Ok(false);
        }
    }
    Err(format!(
        "'{}' is not a boolean (true/false, yes/no, on/off, 1/0)",
        excerpt(s)
    ))
}

/// A TCP port number, 1 to 65535.
pub fn parse_port(s: &str) -> Result<u16, String> {
    match s.trim().parse::<u16>() {
        Ok(0) | Err(_) => Err(format!("'{}' is not a port number (1-65535)", excerpt(s))),
        Ok(port) => Ok(port),
    }
}

/// A broker host name or address: non-empty, no whitespace, no `/`, `,` or control characters.
pub fn parse_host(s: &str) -> Result<String, String> {
    let t = s.trim();
    if t.is_empty() {
        return Err("empty host name".to_string());
    }
    if t.chars()
        .any(|c| c.is_whitespace() || c.is_control() || c == '/' || c == ',')
    {
        return Err(format!("'{}' is not a host name", excerpt(s)));
    }
    Ok(t.to_string())
}

/// One broker as `HOST:PORT`; an IPv6 address is written in brackets, `[::1]:61613`.
pub fn parse_broker(s: &str) -> Result<(String, u16), String> {
    let t = s.trim();
    let (host, port) = match t.rsplit_once(':') {
        Some(parts) => parts,
        None => return Err(format!("'{}' is not HOST:PORT", excerpt(t))),
    };
    let host = match host.strip_prefix('[') {
        Some(inner) => match inner.strip_suffix(']') {
            Some(addr) if !addr.is_empty() => addr,
            _ => return Err(format!("'{}' is not HOST:PORT", excerpt(t))),
        },
        // A bare IPv6 address is ambiguous: ask for the bracketed form.
        None if host.contains(':') => {
            return Err(format!(
                "'{}' is not HOST:PORT (write an IPv6 address as [ADDR]:PORT)",
                excerpt(t)
            ))
        }
        None => host,
    };
    Ok((parse_host(host)?, parse_port(port)?))
}

/// A comma-separated failover list of `HOST:PORT`, in order of preference; at least one.
pub fn parse_broker_list(s: &str) -> Result<Vec<(String, u16)>, String> {
    let mut out = Vec::new();
    for item in s.split(',') {
        if item.trim().is_empty() {
            return Err("empty entry in the broker list".to_string());
        }
        out.push(parse_broker(item)?);
    }
    Ok(out)
}

/// A positive duration: a whole number of seconds, or a number with a unit `s`, `m`, `h` or `d`
/// (`60`, `90s`, `10m`, `7d`).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let bad = || {
        format!(
            "'{}' is not a duration (seconds, or a number with s, m, h or d)",
            excerpt(s)
        )
    };
    let (digits, unit) = match t.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => t.split_at(i),
        None => (t, "s"),
    };
    let n: u64 = digits.parse().map_err(|_| bad())?;
    let scale = match unit.trim() {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(bad()),
    };
    let secs = n.checked_mul(scale).ok_or_else(bad)?;
    if secs == 0 {
        return Err("the duration must be more than zero".to_string());
    }
    Ok(Duration::from_secs(secs))
}

/// A positive whole number that fits in a `u32`.
pub fn parse_positive(s: &str) -> Result<u32, String> {
    match s.trim().parse::<u32>() {
        Ok(0) | Err(_) => Err(format!("'{}' is not a positive whole number", excerpt(s))),
        Ok(n) => Ok(n),
    }
}

/// A log level name, case-insensitive, returned in upper case.
pub fn parse_level(s: &str) -> Result<String, String> {
    let upper = s.trim().to_ascii_uppercase();
    if LEVELS.contains(&upper.as_str()) {
        Ok(upper)
    } else {
        Err(format!(
            "'{}' is not a log level (one of {})",
            excerpt(s),
            LEVELS.join(", ")
        ))
    }
}

/// A value quoted back in an error: at most 64 characters, control characters shown as `?`.
pub(crate) fn excerpt(s: &str) -> String {
    let mut out: String = s
        .chars()
        .take(64)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if s.chars().count() > 64 {
        out.push_str("...");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bool_spellings() {
        for t in [
            "true", "TRUE", "True", "yes", "Yes", "on", "ON", "1", " true ",
        ] {
            assert_eq!(parse_bool(t), Ok(true), "{t}");
        }
        for f in ["false", "False", "no", "NO", "off", "Off", "0"] {
            assert_eq!(parse_bool(f), Ok(false), "{f}");
        }
        for bad in ["", "2", "y", "t", "enabled", "truee"] {
            let e = parse_bool(bad).unwrap_err();
            assert!(e.contains("not a boolean"), "{e}");
        }
    }

    #[test]
    fn ports() {
        assert_eq!(parse_port("61613"), Ok(61613));
        assert_eq!(parse_port("1"), Ok(1));
        assert_eq!(parse_port("65535"), Ok(65535));
        for bad in ["0", "65536", "-1", "abc", "", "6161 3"] {
            assert!(parse_port(bad).is_err(), "{bad}");
        }
        assert_eq!(
            parse_port("abc").unwrap_err(),
            "'abc' is not a port number (1-65535)"
        );
    }

    #[test]
    fn brokers() {
        assert_eq!(
            parse_broker("mq.example.org:61613"),
            Ok(("mq.example.org".to_string(), 61613))
        );
        assert_eq!(parse_broker("[::1]:6163"), Ok(("::1".to_string(), 6163)));
        assert_eq!(
            parse_broker(" 10.0.0.1:1 "),
            Ok(("10.0.0.1".to_string(), 1))
        );
        for bad in [
            "host",
            "host:",
            ":61613",
            "::1:61613",
            "[]:1",
            "a b:1",
            "h:0",
            "h/x:1",
        ] {
            assert!(parse_broker(bad).is_err(), "{bad}");
        }
        assert_eq!(
            parse_broker_list("a:1, b:2 ,[fe80::1]:3"),
            Ok(vec![
                ("a".to_string(), 1),
                ("b".to_string(), 2),
                ("fe80::1".to_string(), 3)
            ])
        );
        assert_eq!(parse_broker_list("a:1"), Ok(vec![("a".to_string(), 1)]));
        assert!(parse_broker_list("a:1,,b:2").is_err());
        assert!(parse_broker_list("").is_err());
        assert!(parse_broker_list("a:1, b:x").unwrap_err().contains("'x'"));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("60"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(604_800)));
        assert_eq!(parse_duration("7 d"), Ok(Duration::from_secs(604_800)));
        for bad in [
            "0",
            "0s",
            "",
            "s",
            "1w",
            "-1",
            "1.5",
            "99999999999999999999d",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn names() {
        assert_eq!(parse_cipher("AES256"), Ok(Cipher::Aes256));
        assert_eq!(parse_cipher("des3"), Ok(Cipher::Des3));
        assert_eq!(
            parse_cipher("rc4").unwrap_err(),
            "'rc4' is not a cipher (one of des3, aes128, aes192, aes256)"
        );
        assert_eq!(parse_path_type("Directory"), Ok(PathType::Directory));
        assert_eq!(parse_path_type("dirQ"), Ok(PathType::QueueSimple));
        assert_eq!(
            parse_path_type("queue").unwrap_err(),
            "'queue' is not a queue type (one of dirq, directory)"
        );
        assert_eq!(
            parse_broker_kind("RabbitMQ"),
            Ok(KindChoice(Some(BrokerKind::RabbitMq)))
        );
        assert_eq!(
            parse_broker_kind("activemq"),
            Ok(KindChoice(Some(BrokerKind::ActiveMq)))
        );
        assert_eq!(
            parse_broker_kind("Embedded"),
            Ok(KindChoice(Some(BrokerKind::Embedded)))
        );
        assert_eq!(parse_broker_kind("AUTO"), Ok(KindChoice(None)));
        for bad in ["artemis", "other", ""] {
            assert_eq!(
                parse_broker_kind(bad).unwrap_err(),
                format!("'{bad}' is not a broker kind (one of auto, rabbitmq, activemq, embedded)")
            );
        }
        for c in Cipher::NAMES {
            assert_eq!(parse_cipher(c).map(Cipher::name), Ok(c));
        }
        for t in PathType::NAMES {
            assert_eq!(parse_path_type(t).map(|t| t.to_string()), Ok(t.to_string()));
        }
        for k in BROKER_KINDS {
            let choice = parse_broker_kind(k).unwrap();
            let name = choice.0.map_or("auto", BrokerKind::as_str);
            assert_eq!(name, *k);
        }
        assert_eq!(parse_level("debug"), Ok("DEBUG".to_string()));
        assert!(parse_level("verbose").is_err());
        assert_eq!(parse_positive("5"), Ok(5));
        assert!(parse_positive("0").is_err());
        assert!(parse_positive("-3").is_err());
    }

    #[test]
    fn excerpts_are_bounded_and_printable() {
        assert_eq!(excerpt("a\nb"), "a?b");
        assert_eq!(excerpt(&"x".repeat(100)).len(), 67);
    }
}
