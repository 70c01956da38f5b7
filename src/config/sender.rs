//! `sender.cfg` and the flags of `ssm send`, as a [`SenderConfig`].

use std::path::PathBuf;
use std::time::Duration;

use crate::crypto::Cipher;
use crate::queue::PathType;

use super::ini::IniReader;
use super::load::Loadable;
use super::values;
use super::{
    common::CommonFlags, missing, set_required, CommonSettings, ConfigError, SenderOverrides,
    DEFAULT_SENDER_CFG,
};

/// Default time to wait for an ack before sending a message again.
pub const DEFAULT_ACK_TIMEOUT: Duration = Duration::from_secs(60);
/// Default number of sends of one message before the sender gives up on it for this run.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 5;

/// Everything `ssm send` needs to know, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SenderConfig {
    /// Broker, identity (this host's certificate signs messages), logging, daemon options.
    pub common: CommonSettings,
    /// The receiver's certificate; `None` = ask for it with a `certreq`.
    pub server_cert: Option<PathBuf>,
    /// The subject DN the receiver's certificate must have (when it is asked for).
    pub server_dn: Option<String>,
    /// Check the receiver's certificate against the trusted CAs; default on.
    pub verify_server_cert: bool,
    /// Topic (or queue) messages are sent to.
    pub destination: String,
    /// Outgoing queue directory.
    pub path: PathBuf,
    /// Outgoing queue layout: `dirq` (default) or `directory`.
    pub path_type: PathType,
    /// Encryption cipher: `des3` (default), `aes128`, `aes192` or `aes256`.
    pub cipher: Cipher,
    /// How long to wait for an ack before sending the message again; default 60 s.
    pub ack_timeout: Duration,
    /// Sends of one message before giving up on it for this run; default 5.
    pub max_attempts: u32,
    /// Reply queue to name in `reply-to`; `None` = a fresh `/temp-queue/ssm.<uuid>`.
    pub reply_queue: Option<String>,
}

impl SenderConfig {
    /// Applies flags over this configuration: every flag given replaces the setting, a
    /// `--broker` list replaces the whole broker list, and `--server-cert` / `--server-dn`
    /// replace both `server_cert` and `server_dn`. Run options (`-c`, `--daemon`) are not
    /// settings and are left to the caller.
    pub fn apply(&mut self, o: &SenderOverrides) {
        self.common.apply(CommonFlags {
            broker: &o.broker,
            broker_opts: &o.broker_opts,
            identity: &o.identity,
            pidfile: &o.pidfile,
            metrics: &o.metrics,
        });
        if o.server_cert.is_some() || o.server_dn.is_some() {
            self.server_cert.clone_from(&o.server_cert);
            self.server_dn.clone_from(&o.server_dn);
        }
        set_required(&mut self.destination, &o.destination);
        set_required(&mut self.path, &o.path);
        set_required(&mut self.path_type, &o.path_type);
        set_required(&mut self.cipher, &o.cipher);
        if let Some(secs) = o.ack_timeout {
            self.ack_timeout = Duration::from_secs(secs.get());
        }
        if let Some(n) = o.max_attempts {
            self.max_attempts = n.get();
        }
    }

    /// A configuration with defaults and the required settings empty, to be filled.
    fn unset(common: CommonSettings) -> SenderConfig {
        SenderConfig {
            common,
            server_cert: None,
            server_dn: None,
            verify_server_cert: true,
            destination: String::new(),
            path: PathBuf::new(),
            path_type: PathType::QueueSimple,
            cipher: Cipher::Des3,
            ack_timeout: DEFAULT_ACK_TIMEOUT,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            reply_queue: None,
        }
    }

    /// Checks that every required setting is there.
    fn check(&self, origin: Option<&str>) -> Result<(), ConfigError> {
        // The receiver's certificate is the only thing the sender checks against its CAs.
        self.common.check(origin, self.verify_server_cert)?;
        if self.destination.is_empty() {
            return Err(missing(
                origin,
                "messaging",
                "destination",
                "--destination TOPIC",
            ));
        }
        if self.path.as_os_str().is_empty() {
            return Err(missing(origin, "messaging", "path", "--path OUTQ"));
        }
        Ok(())
    }
}

impl Loadable for SenderConfig {
    type Overrides = SenderOverrides;
    const DEFAULT_FILE: &'static str = DEFAULT_SENDER_CFG;

    fn config_flag(o: &SenderOverrides) -> &Option<PathBuf> {
        &o.config
    }

    fn from_ini_str_with(
        text: &str,
        origin: &str,
        o: &SenderOverrides,
    ) -> Result<(SenderConfig, Vec<String>), ConfigError> {
        let mut r = IniReader::parse(text, origin)?;
        let mut warnings = Vec::new();
        r.protocol("sender", &mut warnings)?;
        let mut c = SenderConfig::unset(CommonSettings::read(&mut r)?);

        const CERTS: &str = "certificates";
        c.server_cert = r.path(CERTS, "server_cert")?;
        c.server_dn = r.plain(CERTS, "server_dn")?;
        if c.server_cert.is_some() && c.server_dn.is_some() {
            return Err(r.invalid(
                CERTS,
                "server_dn",
                "give either server_cert or server_dn, not both",
            ));
        }
        if let Some(v) = r.bool(CERTS, "verify_server_cert")? {
            c.verify_server_cert = v;
        }

        const MSG: &str = "messaging";
        c.destination = r.plain(MSG, "destination")?.unwrap_or_default();
        c.path = r.path(MSG, "path")?.unwrap_or_default();
        if let Some(t) = r.parsed(MSG, "path_type", values::parse_path_type)? {
            c.path_type = t;
        }
        if let Some(cipher) = r.parsed(MSG, "cipher", values::parse_cipher)? {
            c.cipher = cipher;
        }
        if let Some(d) = r.duration(MSG, "ack_timeout")? {
            c.ack_timeout = d;
        }
        if let Some(n) = r.parsed(MSG, "max_attempts", values::parse_positive)? {
            c.max_attempts = n;
        }
        c.reply_queue = r.plain(MSG, "reply_queue")?;
        warnings.extend(r.leftovers());

        c.apply(o);
        c.check(Some(r.origin()))?;
        Ok((c, warnings))
    }

    fn from_overrides(o: &SenderOverrides) -> Result<SenderConfig, ConfigError> {
        let mut c = SenderConfig::unset(CommonSettings::empty());
        c.apply(o);
        c.check(None)?;
        Ok(c)
    }
}
