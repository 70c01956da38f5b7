//! Where a configuration comes from: the loading plumbing `sender.cfg` and `receiver.cfg` share.
//!
//! Each configuration says how its text is read and how its flags apply on their own
//! ([`Loadable::from_ini_str_with`], [`Loadable::from_overrides`]); the provided methods decide
//! which file is read (the `-c` flag, else the default file if it exists, else none) and pass
//! the flags along, the same way for both commands.

use std::path::{Path, PathBuf};

use super::{read_file, ConfigError};

/// A configuration that loads from an INI file, command-line flags, or both (flags win).
///
/// Every method returns the configuration with the warnings (unknown options, options of older
/// versions, a missing `protocol`…) for the caller to log; [`Loadable::from_overrides`] has
/// none to give.
pub trait Loadable: Sized {
    /// The command-line flags that override the file.
    type Overrides: Default;

    /// The file [`Loadable::resolve`] reads when `-c` is not given, if it exists
    /// ([`super::DEFAULT_SENDER_CFG`] or [`super::DEFAULT_RECEIVER_CFG`]).
    const DEFAULT_FILE: &'static str;

    /// The `-c FILE` flag.
    fn config_flag(o: &Self::Overrides) -> &Option<PathBuf>;

    /// Reads configuration text, then applies the flags; required options may come from
    /// either. `origin` names the file in messages.
    fn from_ini_str_with(
        text: &str,
        origin: &str,
        o: &Self::Overrides,
    ) -> Result<(Self, Vec<String>), ConfigError>;

    /// Builds the configuration from flags alone (no file). TLS is off unless `--tls` is given.
    fn from_overrides(o: &Self::Overrides) -> Result<Self, ConfigError>;

    /// Reads configuration text (no flags); `origin` names the file in messages.
    fn from_ini_str(text: &str, origin: &str) -> Result<(Self, Vec<String>), ConfigError> {
        Self::from_ini_str_with(text, origin, &Self::Overrides::default())
    }

    /// Reads a configuration file (no flags).
    fn load(path: &Path) -> Result<(Self, Vec<String>), ConfigError> {
        Self::load_with(path, &Self::Overrides::default())
    }

    /// Reads a configuration file, then applies the flags; required options may come from
    /// either.
    fn load_with(path: &Path, o: &Self::Overrides) -> Result<(Self, Vec<String>), ConfigError> {
        let text = read_file(path)?;
        Self::from_ini_str_with(&text, &path.display().to_string(), o)
    }

    /// What the command uses: the `-c` file, else [`Loadable::DEFAULT_FILE`] if it exists, else
    /// the flags alone; flags win over the file.
    fn resolve(o: &Self::Overrides) -> Result<(Self, Vec<String>), ConfigError> {
        Self::resolve_with_default(o, Path::new(Self::DEFAULT_FILE))
    }

    /// [`Loadable::resolve`] with another default file (for tests and packagers).
    fn resolve_with_default(
        o: &Self::Overrides,
        default: &Path,
    ) -> Result<(Self, Vec<String>), ConfigError> {
        match Self::config_flag(o) {
            Some(path) => Self::load_with(path, o),
            None if default.exists() => Self::load_with(default, o),
            None => Ok((Self::from_overrides(o)?, Vec::new())),
        }
    }
}
