//! `sender.cfg` and the flags of `ssm send`, as a [`SenderConfig`].

use std::path::PathBuf;
use std::time::Duration;

use crate::crypto::Cipher;
use crate::protocol::Version;
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
/// Default SSM2 window: messages waiting for their broker receipt at once.
pub const DEFAULT_WINDOW: u32 = 64;

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
    /// Encryption cipher: `des3`, `aes128`, `aes192` or `aes256`; default `aes128` for SSM2
    /// (as the Python SSM), `des3` for version 1.
    pub cipher: Cipher,
    /// The protocol: 2 (SSM2, default, as an unchanged Python SSM 4.0 `sender.cfg` means) or
    /// 1 (the acknowledged protocol).
    pub ssm_version: Version,
    /// SSM2: messages waiting for their receipt at once; default [`DEFAULT_WINDOW`].
    pub window: u32,
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
            ams: &o.ams,
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
        set_required(&mut self.ssm_version, &o.ssm_version);
        if let Some(n) = o.window {
            self.window = n.get();
        }
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
            cipher: Cipher::Aes128,
            ssm_version: Version::V2,
            window: DEFAULT_WINDOW,
            ack_timeout: DEFAULT_ACK_TIMEOUT,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            reply_queue: None,
        }
    }

    /// The cipher when none was given: the one the protocol's peers expect (the Python SSM
    /// encrypts with AES-128; version 1 peers with triple DES).
    fn default_cipher(&mut self, given: bool) {
        if !given {
            self.cipher = match self.ssm_version {
                Version::V1 => Cipher::Des3,
                Version::V2 => Cipher::Aes128,
            };
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
        let common = CommonSettings::read(&mut r, "sender", &o.ams, &mut warnings)?;
        let mut c = SenderConfig::unset(common);

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
        let cipher = r.parsed(MSG, "cipher", values::parse_cipher)?;
        if let Some(cipher) = cipher {
            c.cipher = cipher;
        }
        if let Some(v) = r.parsed(MSG, "ssm_version", values::parse_ssm_version)? {
            c.ssm_version = v;
        }
        if let Some(n) = r.parsed(MSG, "window", values::parse_positive)? {
            c.window = n;
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
        c.default_cipher(cipher.is_some() || o.cipher.is_some());
        c.check(Some(r.origin()))?;
        if c.common.ams.is_some() {
            // SSM v1 needs a reply channel, which AMS does not have.
            c.ssm_version
                .fits(crate::transport::ams::adapter::CAPABILITIES)
                .map_err(|why| {
                    r.invalid(
                        "messaging",
                        "ssm_version",
                        format!("1 cannot be used with protocol AMS: {why}"),
                    )
                })?;
        }
        Ok((c, warnings))
    }

    fn from_overrides(o: &SenderOverrides) -> Result<SenderConfig, ConfigError> {
        let mut c = SenderConfig::unset(CommonSettings::empty());
        c.apply(o);
        c.default_cipher(o.cipher.is_some());
        c.check(None)?;
        Ok(c)
    }
}
