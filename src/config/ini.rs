//! Reading an INI file option by option, with errors that name the file, section and option,
//! and warnings for everything the file holds that nobody read.
//!
//! Syntax is Python's configparser as the Python SSM used it: `[section]` headers, `key = value`
//! or `key: value`, whole-line `#` or `;` comments, names case-insensitive. Unlike the crate's
//! default, `#` and `;` inside a value are kept (a passcode may hold them), as in Python.

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Duration;

use configparser::ini::{Ini, IniDefault};

use super::values::{self, excerpt};
use super::{BrokerSettings, ConfigError, LoggingSettings, Protocol};

/// Options that older versions understood and this one ignores, with what replaces them.
const OBSOLETE: &[(&str, &str, &str)] = &[
    ("broker", "bdii", "list the brokers in [broker] brokers"),
    ("broker", "network", "list the brokers in [broker] brokers"),
];

/// A parsed INI file being read into typed settings.
pub(crate) struct IniReader {
    ini: Ini,
    origin: String,
    read: HashSet<(String, String)>,
}

impl IniReader {
    /// Parses `text`; `origin` names the file in every message.
    pub(crate) fn parse(text: &str, origin: &str) -> Result<IniReader, ConfigError> {
        let mut defaults = IniDefault::default();
        defaults.enable_inline_comments = false;
        defaults.comment_symbols = vec!['#', ';'];
        defaults.delimiters = vec!['=', ':'];
        let mut ini = Ini::new_from_defaults(defaults);
        // Editors on some systems start files with a byte-order mark; it is not part of the
        // first section header.
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        ini.read(text.to_string())
            .map_err(|message| ConfigError::Syntax {
                origin: origin.to_string(),
                message,
            })?;
        Ok(IniReader {
            ini,
            origin: origin.to_string(),
            read: HashSet::new(),
        })
    }

    /// The name of the file, for messages.
    pub(crate) fn origin(&self) -> &str {
        &self.origin
    }

    /// An error about one option.
    pub(crate) fn invalid(
        &self,
        section: &'static str,
        option: &'static str,
        reason: impl Into<String>,
    ) -> ConfigError {
        ConfigError::Invalid {
            origin: self.origin.clone(),
            section,
            option,
            reason: reason.into(),
        }
    }

    /// The trimmed text of an option; `None` when absent or empty (`key =` means unset).
    pub(crate) fn text(
        &mut self,
        section: &'static str,
        option: &'static str,
    ) -> Result<Option<String>, ConfigError> {
        self.read.insert((section.to_string(), option.to_string()));
        let present = self
            .ini
            .get_map_ref()
            .get(section)
            .and_then(|options| options.get(option));
        match present {
            None => Ok(None),
            Some(None) => Err(self.invalid(section, option, "has no value (write option = value)")),
            Some(Some(v)) if v.trim().is_empty() => Ok(None),
            Some(Some(v)) => Ok(Some(v.trim().to_string())),
        }
    }

    /// An option parsed with one of [`values`]' parsers.
    pub(crate) fn parsed<T>(
        &mut self,
        section: &'static str,
        option: &'static str,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Result<Option<T>, ConfigError> {
        match self.text(section, option)? {
            None => Ok(None),
            Some(v) => parse(&v)
                .map(Some)
                .map_err(|r| self.invalid(section, option, r)),
        }
    }

    /// A path option.
    pub(crate) fn path(
        &mut self,
        section: &'static str,
        option: &'static str,
    ) -> Result<Option<PathBuf>, ConfigError> {
        Ok(self.text(section, option)?.map(PathBuf::from))
    }

    /// A boolean option.
    pub(crate) fn bool(
        &mut self,
        section: &'static str,
        option: &'static str,
    ) -> Result<Option<bool>, ConfigError> {
        self.parsed(section, option, values::parse_bool)
    }

    /// A duration option.
    pub(crate) fn duration(
        &mut self,
        section: &'static str,
        option: &'static str,
    ) -> Result<Option<Duration>, ConfigError> {
        self.parsed(section, option, values::parse_duration)
    }

    /// A free-text option without control characters (names, DNs, passcodes).
    pub(crate) fn plain(
        &mut self,
        section: &'static str,
        option: &'static str,
    ) -> Result<Option<String>, ConfigError> {
        self.parsed(section, option, |v| {
            if v.chars().any(char::is_control) {
                Err(format!("'{}' holds control characters", excerpt(v)))
            } else {
                Ok(v.to_string())
            }
        })
    }

    /// `[<role>] protocol`: STOMP or AMS (any case); STOMP with a warning when missing.
    pub(crate) fn protocol(
        &mut self,
        role: &'static str,
        warnings: &mut Vec<String>,
    ) -> Result<Protocol, ConfigError> {
        match self.text(role, "protocol")? {
            None => warnings.push(format!(
                "{}: [{role}] protocol not set, using STOMP",
                self.origin
            )),
            Some(p) if p.eq_ignore_ascii_case("STOMP") => {}
            Some(p) if p.eq_ignore_ascii_case("AMS") => return Ok(Protocol::Ams),
            Some(p) => {
                return Err(self.invalid(
                    role,
                    "protocol",
                    format!("'{}' is not supported (STOMP or AMS)", excerpt(&p)),
                ))
            }
        }
        Ok(Protocol::Stomp)
    }

    /// The `[broker]` section. TLS (`use_ssl`) defaults to on, as in the Python SSM. For AMS
    /// only `host` counts (HTTPS on 443, or `HOST:PORT`); `port` is read and unused, as in
    /// the Python SSM.
    pub(crate) fn broker(&mut self, protocol: Protocol) -> Result<BrokerSettings, ConfigError> {
        const S: &str = "broker";
        let list = self.parsed(S, "brokers", values::parse_broker_list)?;
        let host = self.parsed(S, "host", values::parse_host)?;
        let port = self.parsed(S, "port", values::parse_port)?;
        let (host, port) = match (protocol, host) {
            (Protocol::Ams, Some(host)) => {
                let (h, p) = match host.rsplit_once(':') {
                    Some((h, p)) if !h.is_empty() && !h.ends_with(':') => match p.parse::<u16>() {
                        Ok(p) if p > 0 => (h.to_string(), p),
                        _ => {
                            return Err(self.invalid(
                                S,
                                "host",
                                format!("'{}' is not HOST or HOST:PORT", excerpt(&host)),
                            ))
                        }
                    },
                    _ => (host, 443),
                };
                (Some(h), Some(p))
            }
            (_, host) => (host, port),
        };
        let brokers = match (list, host, port) {
            (Some(_), Some(_), _) | (Some(_), _, Some(_)) => {
                return Err(self.invalid(
                    S,
                    "brokers",
                    "give either brokers or host and port, not both",
                ))
            }
            (Some(list), None, None) => list,
            (None, Some(host), Some(port)) => vec![(host, port)],
            (None, Some(_), None) => {
                return Err(self.invalid(S, "port", "missing, though host is set"));
            }
            (None, None, Some(_)) => {
                return Err(self.invalid(S, "host", "missing, though port is set"));
            }
            (None, None, None) => Vec::new(),
        };
        let capath = self.path(S, "capath")?;
        let capath_alias = self.path(S, "broker_capath")?;
        if capath.is_some() && capath_alias.is_some() {
            return Err(self.invalid(
                S,
                "broker_capath",
                "is another name for capath: give one of them",
            ));
        }
        Ok(BrokerSettings {
            brokers,
            use_ssl: self.bool(S, "use_ssl")?.unwrap_or(true),
            login: self.plain(S, "login")?,
            passcode: self.plain(S, "passcode")?,
            kind: self
                .parsed(S, "kind", values::parse_broker_kind)?
                .and_then(|choice| choice.0),
            broker_capath: capath.or(capath_alias),
        })
    }

    /// The `[logging]` section.
    pub(crate) fn logging(&mut self) -> Result<LoggingSettings, ConfigError> {
        const S: &str = "logging";
        Ok(LoggingSettings {
            logfile: self.path(S, "logfile")?,
            level: self
                .parsed(S, "level", values::parse_level)?
                .unwrap_or_else(|| super::DEFAULT_LEVEL.to_string()),
            console: self.bool(S, "console")?.unwrap_or(true),
        })
    }

    /// Warnings for sections and options present in the file that were never read.
    pub(crate) fn leftovers(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut sections: Vec<_> = self.ini.get_map_ref().iter().collect();
        sections.sort_by(|a, b| a.0.cmp(b.0));
        for (section, options) in sections {
            let known_section = self.read.iter().any(|(s, _)| s == section);
            let mut names: Vec<_> = options.keys().collect();
            names.sort();
            if !known_section {
                if section == "default" && !options.is_empty() {
                    out.push(format!(
                        "{}: options before the first [section] are ignored: {}",
                        self.origin,
                        join(&names)
                    ));
                } else {
                    out.push(format!(
                        "{}: unknown section [{section}] ignored",
                        self.origin
                    ));
                }
                continue;
            }
            for name in names {
                if self.read.contains(&(section.clone(), name.clone())) {
                    continue;
                }
                let obsolete = OBSOLETE.iter().find(|(s, o, _)| s == section && o == name);
                out.push(match obsolete {
                    Some((_, _, instead)) => format!(
                        "{}: [{section}] {name} is no longer used: {instead}",
                        self.origin
                    ),
                    None => format!(
                        "{}: [{section}] {name}: unknown option ignored",
                        self.origin
                    ),
                });
            }
        }
        out
    }
}

/// Option names for a message, quoted and bounded.
fn join(names: &[&String]) -> String {
    names
        .iter()
        .map(|n| excerpt(n))
        .collect::<Vec<_>>()
        .join(", ")
}
