//! `receiver.cfg` and the flags of `ssm receive`, as a [`ReceiverConfig`].

use std::path::PathBuf;
use std::time::Duration;

use super::ini::IniReader;
use super::load::Loadable;
use super::{
    common::CommonFlags, missing, set_required, CommonSettings, ConfigError, ReceiverOverrides,
    DEFAULT_DN_FILE, DEFAULT_RECEIVER_CFG,
};

/// Default time the receiver keeps the record of a message it acked (for duplicates and
/// reacks).
pub const DEFAULT_REACK_MAX_AGE: Duration = Duration::from_secs(7 * 24 * 3600);

/// Everything `ssm receive` needs to know, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiverConfig {
    /// Broker, identity (senders encrypt to this host's certificate, which is sent in
    /// `certresp`; the CAs verify signers), logging, daemon options.
    pub common: CommonSettings,
    /// Check signers' certificates against CRLs; default off.
    pub check_crls: bool,
    /// Topic (or queue) to receive from.
    pub destination: String,
    /// Message store: parent of `incoming/` and `reject/`.
    pub path: PathBuf,
    /// Allowed sender DNs, one per line; default `/etc/apel/dns`.
    pub dn_file: PathBuf,
    /// Accept messages signed with MD5 or SHA-1 digests (`[receiver] allow_weak_digests`);
    /// default off: they are rejected.
    pub allow_weak_digests: bool,
    /// How long the record of acked MD5s is kept; default 7 days.
    pub reack_max_age: Duration,
}

impl ReceiverConfig {
    /// Applies flags over this configuration: every flag given replaces the setting, a
    /// `--broker` list replaces the whole broker list, `--crl-check` turns CRL checks on. Run
    /// options (`-c`, `--max-messages`, `--for`) are not settings and are left to the caller.
    pub fn apply(&mut self, o: &ReceiverOverrides) {
        self.common.apply(CommonFlags {
            ams: &o.ams,
            broker: &o.broker,
            broker_opts: &o.broker_opts,
            identity: &o.identity,
            pidfile: &o.pidfile,
            metrics: &o.metrics,
        });
        if o.crl_check {
            self.check_crls = true;
        }
        set_required(&mut self.destination, &o.destination);
        set_required(&mut self.path, &o.path);
        set_required(&mut self.dn_file, &o.dn_file);
    }

    /// A configuration with defaults and the required settings empty, to be filled.
    fn unset(common: CommonSettings) -> ReceiverConfig {
        ReceiverConfig {
            common,
            check_crls: false,
            destination: String::new(),
            path: PathBuf::new(),
            dn_file: PathBuf::from(DEFAULT_DN_FILE),
            allow_weak_digests: false,
            reack_max_age: DEFAULT_REACK_MAX_AGE,
        }
    }

    /// Checks that every required setting is there.
    fn check(&self, origin: Option<&str>) -> Result<(), ConfigError> {
        // Every signer is checked against the CAs.
        self.common.check(origin, true)?;
        if self.destination.is_empty() {
            return Err(missing(
                origin,
                "messaging",
                "destination",
                "--destination TOPIC",
            ));
        }
        if self.path.as_os_str().is_empty() {
            return Err(missing(origin, "messaging", "path", "--path STORE"));
        }
        if self.dn_file.as_os_str().is_empty() {
            return Err(missing(origin, "receiver", "dn_file", "-d DNFILE"));
        }
        Ok(())
    }
}

impl Loadable for ReceiverConfig {
    type Overrides = ReceiverOverrides;
    const DEFAULT_FILE: &'static str = DEFAULT_RECEIVER_CFG;

    fn config_flag(o: &ReceiverOverrides) -> &Option<PathBuf> {
        &o.config
    }

    fn from_ini_str_with(
        text: &str,
        origin: &str,
        o: &ReceiverOverrides,
    ) -> Result<(ReceiverConfig, Vec<String>), ConfigError> {
        let mut r = IniReader::parse(text, origin)?;
        let mut warnings = Vec::new();
        let common = CommonSettings::read(&mut r, "receiver", &o.ams, &mut warnings)?;
        let mut c = ReceiverConfig::unset(common);
        if let Some(dn_file) = r.path("receiver", "dn_file")? {
            c.dn_file = dn_file;
        }
        if let Some(v) = r.bool("receiver", "allow_weak_digests")? {
            c.allow_weak_digests = v;
        }

        if let Some(v) = r.bool("certificates", "check_crls")? {
            c.check_crls = v;
        }

        const MSG: &str = "messaging";
        c.destination = r.plain(MSG, "destination")?.unwrap_or_default();
        c.path = r.path(MSG, "path")?.unwrap_or_default();
        if let Some(d) = r.duration(MSG, "reack_max_age")? {
            c.reack_max_age = d;
        }
        warnings.extend(r.leftovers());

        c.apply(o);
        c.check(Some(r.origin()))?;
        Ok((c, warnings))
    }

    fn from_overrides(o: &ReceiverOverrides) -> Result<ReceiverConfig, ConfigError> {
        let mut c = ReceiverConfig::unset(CommonSettings::empty());
        c.apply(o);
        c.check(None)?;
        Ok(c)
    }
}
