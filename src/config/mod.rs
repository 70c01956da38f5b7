//! INI configuration files and command-line overrides, as typed settings.
//!
//! `ssm send` reads `sender.cfg` and `ssm receive` reads `receiver.cfg`, INI files laid out as
//! the Python SSM's (`docs/configuration.md` lists every option). Flags given on the command
//! line ([`SenderOverrides`], [`ReceiverOverrides`]) win over the file; with no file at all,
//! everything comes from flags. [`Loadable`] (in scope to call `SenderConfig::resolve` and the
//! other loaders) picks the file the same way for both.
//!
//! Guarantees:
//! - A configuration that loads is complete and valid as far as can be told without touching
//!   the network or reading certificates: required options present, ports in range, names from
//!   their lists, durations and counts positive. (Whether the key matches the certificate, or
//!   the certificate is about to expire, is a start-up rule of `crate::setup`.)
//! - Every error is one line that names the file, the `[section]` and the option (and the flag
//!   that can supply it when it is missing), e.g.
//!   `sender.cfg: [broker] port: 'abc' is not a port number (1-65535)`.
//! - Nothing in a file is silently ignored: unknown sections and options, and options of older
//!   versions, come back as warnings for the caller to log.
//! - Loading does no I/O besides reading the one file; paths are not checked for existence.

mod common;
mod flags;
mod ini;
mod load;
mod receiver;
mod sender;
pub mod values;

use std::path::PathBuf;

pub use common::{
    AmsMessaging, BrokerSettings, CommonSettings, DaemonSettings, IdentitySettings,
    LoggingSettings, Protocol, DEFAULT_LEVEL,
};
pub use flags::{BrokerOverrides, IdentityOverrides, ReceiverOverrides, SenderOverrides};
pub use load::Loadable;
pub use receiver::{ReceiverConfig, DEFAULT_REACK_MAX_AGE};
pub use sender::{SenderConfig, DEFAULT_ACK_TIMEOUT, DEFAULT_MAX_ATTEMPTS, DEFAULT_WINDOW};
pub use values::KindChoice;

/// Where `ssm send` looks for its configuration when `-c` is not given.
pub const DEFAULT_SENDER_CFG: &str = "/etc/apel/sender.cfg";
/// Where `ssm receive` looks for its configuration when `-c` is not given.
pub const DEFAULT_RECEIVER_CFG: &str = "/etc/apel/receiver.cfg";
/// The allowed-DN file of the receiver when neither `-d` nor `[receiver] dn_file` is given.
pub const DEFAULT_DN_FILE: &str = "/etc/apel/dns";

/// Why a configuration could not be loaded. Every message is one line.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    // `error` rather than `source`: the reason is already in the message, and an error chain
    // printed with `{:#}` would repeat it.
    #[error("{}: cannot read: {error}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        error: std::io::Error,
    },
    /// The file is not INI.
    #[error("{origin}: {message}")]
    Syntax {
        /// The file.
        origin: String,
        /// What the INI parser said (with the line number).
        message: String,
    },
    /// An option has a value that is not allowed.
    #[error("{origin}: [{section}] {option}: {reason}")]
    Invalid {
        /// The file.
        origin: String,
        /// The section.
        section: &'static str,
        /// The option.
        option: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// A required option is in neither the file nor the flags.
    #[error("{origin}: [{section}] {option} is required (or give {flag})")]
    Missing {
        /// The file.
        origin: String,
        /// The section.
        section: &'static str,
        /// The option.
        option: &'static str,
        /// The flag that can supply it.
        flag: &'static str,
    },
    /// No file was read and a required flag is missing.
    #[error("{flag} is required (no configuration file was read; or give -c FILE with [{section}] {option})")]
    MissingFlag {
        /// The flag.
        flag: &'static str,
        /// The section of the equivalent file option.
        section: &'static str,
        /// The equivalent file option.
        option: &'static str,
    },
}

/// The error for a required option, depending on whether a file was read.
fn missing(
    origin: Option<&str>,
    section: &'static str,
    option: &'static str,
    flag: &'static str,
) -> ConfigError {
    match origin {
        Some(origin) => ConfigError::Missing {
            origin: origin.to_string(),
            section,
            option,
            flag,
        },
        None => ConfigError::MissingFlag {
            flag,
            section,
            option,
        },
    }
}

/// Reads a whole configuration file as text.
fn read_file(path: &std::path::Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
        path: path.to_path_buf(),
        error,
    })
}

/// Replaces `slot` when the flag was given.
fn set<T: Clone>(slot: &mut Option<T>, flag: &Option<T>) {
    if let Some(v) = flag {
        *slot = Some(v.clone());
    }
}

/// Replaces `slot` when the flag was given (for required values).
fn set_required<T: Clone>(slot: &mut T, flag: &Option<T>) {
    if let Some(v) = flag {
        *slot = v.clone();
    }
}

#[cfg(test)]
mod tests;
