//! INI configuration files and command-line overrides, as typed settings.
