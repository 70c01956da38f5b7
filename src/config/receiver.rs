//! `receiver.cfg` and the flags of `ssm receive`, as a [`ReceiverConfig`].

use std::path::PathBuf;
use std::time::Duration;

use super::ini::IniReader;
use super::load::Loadable;
use super::{
    missing, set, set_required, BrokerSettings, ConfigError, LoggingSettings, ReceiverOverrides,
    DEFAULT_DN_FILE, DEFAULT_RECEIVER_CFG,
};

/// Default time the receiver keeps the record of a message it acked (for duplicates and
/// reacks).
pub const DEFAULT_REACK_MAX_AGE: Duration = Duration::from_secs(7 * 24 * 3600);

/// Everything `ssm receive` needs to know, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiverConfig {
    /// The broker(s).
    pub broker: BrokerSettings,
    /// This host's certificate (senders encrypt to it; sent in `certresp`).
    pub certificate: PathBuf,
    /// This host's private key (decrypts messages).
    pub key: PathBuf,
    /// Directory of trusted CA certificates (verifies signers).
    pub capath: Option<PathBuf>,
    /// File of trusted CA certificates.
    pub cafile: Option<PathBuf>,
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
    /// Logging.
    pub logging: LoggingSettings,
    /// PID file; the receiver refuses to start while it names a live process.
    pub pidfile: Option<PathBuf>,
    /// Address of the Prometheus metrics endpoint (`[daemon] metrics`); `None` = off.
    pub metrics: Option<String>,
}

impl ReceiverConfig {
    /// Applies flags over this configuration: every flag given replaces the setting, a
    /// `--broker` list replaces the whole broker list, `--crl-check` turns CRL checks on. Run
    /// options (`-c`, `--max-messages`, `--for`) are not settings and are left to the caller.
    pub fn apply(&mut self, o: &ReceiverOverrides) {
        self.broker.apply(&o.broker, &o.broker_opts);
        o.identity.apply(
            &mut self.certificate,
            &mut self.key,
            &mut self.capath,
            &mut self.cafile,
        );
        set(&mut self.pidfile, &o.pidfile);
        set(&mut self.metrics, &o.metrics);
        if o.crl_check {
            self.check_crls = true;
        }
        set_required(&mut self.destination, &o.destination);
        set_required(&mut self.path, &o.path);
        set_required(&mut self.dn_file, &o.dn_file);
    }

    /// A configuration with defaults and the required settings empty, to be filled.
    fn unset(broker: BrokerSettings, logging: LoggingSettings) -> ReceiverConfig {
        ReceiverConfig {
            broker,
            certificate: PathBuf::new(),
            key: PathBuf::new(),
            capath: None,
            cafile: None,
            check_crls: false,
            destination: String::new(),
            path: PathBuf::new(),
            dn_file: PathBuf::from(DEFAULT_DN_FILE),
            allow_weak_digests: false,
            reack_max_age: DEFAULT_REACK_MAX_AGE,
            logging,
            pidfile: None,
            metrics: None,
        }
    }

    /// Checks that every required setting is there.
    fn check(&self, origin: Option<&str>) -> Result<(), ConfigError> {
        self.broker.check(origin)?;
        if self.certificate.as_os_str().is_empty() {
            return Err(missing(origin, "certificates", "certificate", "--cert C"));
        }
        if self.key.as_os_str().is_empty() {
            return Err(missing(origin, "certificates", "key", "--key K"));
        }
        if self.capath.is_none() && self.cafile.is_none() {
            return Err(missing(
                origin,
                "certificates",
                "capath",
                "--capath DIR or --cafile F",
            ));
        }
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
        r.protocol("receiver", &mut warnings)?;
        let mut c = ReceiverConfig::unset(r.broker()?, r.logging()?);
        if let Some(dn_file) = r.path("receiver", "dn_file")? {
            c.dn_file = dn_file;
        }
        if let Some(v) = r.bool("receiver", "allow_weak_digests")? {
            c.allow_weak_digests = v;
        }

        const CERTS: &str = "certificates";
        c.certificate = r.path(CERTS, "certificate")?.unwrap_or_default();
        c.key = r.path(CERTS, "key")?.unwrap_or_default();
        c.capath = r.path(CERTS, "capath")?;
        c.cafile = r.path(CERTS, "cafile")?;
        if let Some(v) = r.bool(CERTS, "check_crls")? {
            c.check_crls = v;
        }

        const MSG: &str = "messaging";
        c.destination = r.plain(MSG, "destination")?.unwrap_or_default();
        c.path = r.path(MSG, "path")?.unwrap_or_default();
        if let Some(d) = r.duration(MSG, "reack_max_age")? {
            c.reack_max_age = d;
        }
        c.pidfile = r.path("daemon", "pidfile")?;
        c.metrics = r.plain("daemon", "metrics")?;
        warnings.extend(r.leftovers());

        c.apply(o);
        c.check(Some(r.origin()))?;
        Ok((c, warnings))
    }

    fn from_overrides(o: &ReceiverOverrides) -> Result<ReceiverConfig, ConfigError> {
        let mut c = ReceiverConfig::unset(BrokerSettings::empty(), LoggingSettings::default());
        c.apply(o);
        c.check(None)?;
        Ok(c)
    }
}
