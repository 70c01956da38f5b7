//! The settings `sender.cfg` and `receiver.cfg` share, in one place: the broker(s), this host's
//! identity and trusted CAs, logging and the daemon options. [`super::SenderConfig`] and
//! [`super::ReceiverConfig`] embed a [`CommonSettings`] and add what is theirs.
//!
//! Guarantees:
//! - The shared options are read, overridden by flags and checked by the same code for both
//!   roles, so their INI keys, defaults, flags and error messages cannot drift apart.
//! - Only what really differs is a parameter: whether trusted CAs are required (always for the
//!   receiver, while `verify_server_cert` is on for the sender) and the role's flag names.

use std::path::PathBuf;

use super::flags::AmsOverrides;
use super::ini::IniReader;
use super::values::KindChoice;
use super::{missing, set, set_required, BrokerOverrides, ConfigError, IdentityOverrides};
use crate::stomp::BrokerKind;

/// Log level when `[logging] level` is not given.
pub const DEFAULT_LEVEL: &str = "INFO";

/// How to reach the broker(s).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerSettings {
    /// Brokers as `(host, port)`, in failover order; never empty in a loaded configuration.
    pub brokers: Vec<(String, u16)>,
    /// Connect with TLS. Default: on when a file is read (as the Python SSM), off with flags
    /// only; `--tls` turns it on.
    pub use_ssl: bool,
    /// STOMP login, if the broker wants one.
    pub login: Option<String>,
    /// STOMP passcode, if the broker wants one.
    pub passcode: Option<String>,
    /// The broker kind to assume for its quirks; `None` = find out from the broker (`auto`, or
    /// not said).
    pub kind: Option<BrokerKind>,
    /// CA directory for the broker's TLS certificate; `None` = the caller's choice (normally
    /// the `[certificates]` trust store).
    pub broker_capath: Option<PathBuf>,
}

/// Where and how much to log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggingSettings {
    /// Log file; `None` = no log file.
    pub logfile: Option<PathBuf>,
    /// Level name in upper case (one of [`super::values::LEVELS`]); default `INFO`.
    pub level: String,
    /// Also log to the console (stderr); default on.
    pub console: bool,
}

impl Default for LoggingSettings {
    fn default() -> Self {
        LoggingSettings {
            logfile: None,
            level: DEFAULT_LEVEL.to_string(),
            console: true,
        }
    }
}

/// This host's certificate and key, and the CAs it trusts (`[certificates]`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct IdentitySettings {
    /// This host's certificate (signs messages; senders encrypt to a receiver's).
    pub certificate: PathBuf,
    /// This host's private key.
    pub key: PathBuf,
    /// Directory of trusted CA certificates (hashed, as `openssl rehash` makes it).
    pub capath: Option<PathBuf>,
    /// File of trusted CA certificates.
    pub cafile: Option<PathBuf>,
}

/// Options of a long-running process (`[daemon]`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DaemonSettings {
    /// PID file; the process refuses to start while it names a live process.
    pub pidfile: Option<PathBuf>,
    /// Address of the Prometheus metrics endpoint (`[daemon] metrics`); `None` = off.
    pub metrics: Option<String>,
}

/// Which transport a configuration uses (`[sender] protocol` / `[receiver] protocol`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Protocol {
    /// STOMP brokers (the default when not given).
    #[default]
    Stomp,
    /// The ARGO Messaging Service.
    Ams,
}

/// The AMS settings of `[messaging]` (with `protocol: AMS`).
#[derive(Clone, PartialEq, Eq)]
pub struct AmsMessaging {
    /// `[messaging] ams_project`.
    pub project: String,
    /// `[messaging] token`; `None`: exchange this host's certificate for one.
    pub token: Option<String>,
    /// `[messaging] ams_authn_port` (ours, not the Python SSM's): the port of the
    /// certificate-for-token exchange on the same host; default 8443, as the service has it.
    pub authn_port: u16,
    /// `[messaging] ams_token_in_url` (ours): send the token as the deprecated `?key=` URL
    /// parameter instead of the `x-api-key` header, for a service that needs it. Off by
    /// default: a URL ends up in proxies' and servers' access logs, a header does not.
    pub token_in_url: bool,
}

impl std::fmt::Debug for AmsMessaging {
    // The token is a password: never in a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AmsMessaging")
            .field("project", &self.project)
            .field("token", &self.token.as_ref().map(|_| "<hidden>"))
            .field("authn_port", &self.authn_port)
            .field("token_in_url", &self.token_in_url)
            .finish()
    }
}

/// What both configurations hold: broker, identity, logging, daemon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommonSettings {
    /// The broker(s).
    pub broker: BrokerSettings,
    /// This host's certificate, key and trusted CAs.
    pub identity: IdentitySettings,
    /// Logging.
    pub logging: LoggingSettings,
    /// PID file and metrics endpoint.
    pub daemon: DaemonSettings,
    /// `Some` with `protocol: AMS`: the broker's first host is the AMS host.
    pub ams: Option<AmsMessaging>,
}

/// The flags both commands share, borrowed from either command's overrides.
pub(crate) struct CommonFlags<'a> {
    pub ams: &'a AmsOverrides,
    pub broker: &'a [(String, u16)],
    pub broker_opts: &'a BrokerOverrides,
    pub identity: &'a IdentityOverrides,
    pub pidfile: &'a Option<PathBuf>,
    pub metrics: &'a Option<String>,
}

impl CommonSettings {
    /// Settings before any file or flag: no broker (TLS off), default logging, no identity.
    pub(crate) fn empty() -> CommonSettings {
        CommonSettings {
            broker: BrokerSettings::empty(),
            identity: IdentitySettings::default(),
            logging: LoggingSettings::default(),
            daemon: DaemonSettings::default(),
            ams: None,
        }
    }

    /// Reads `[{role}] protocol` (unless `--protocol` gives it), `[broker]`, `[logging]`, the
    /// identity options of `[certificates]` and `[daemon]`, and for AMS `[messaging]
    /// ams_project` (required, unless `--ams-project` gives it) and `token`. The AMS options
    /// are read (so not reported as unknown) with STOMP too, whether the file or a flag says so.
    pub(crate) fn read(
        r: &mut IniReader,
        role: &'static str,
        flags: &AmsOverrides,
        warnings: &mut Vec<String>,
    ) -> Result<CommonSettings, ConfigError> {
        let protocol = match flags.protocol {
            None => r.protocol(role, warnings)?,
            Some(p) => {
                // The flag wins, even over a value the file could not have run with.
                let _ = r.protocol(role, &mut Vec::new());
                p
            }
        };
        let broker = r.broker(protocol)?;
        if protocol == Protocol::Stomp {
            // Known options that STOMP does not use: the Python SSM's shipped STOMP files carry
            // `ams_project` too, and switching `protocol` back must not make them warnings.
            for key in ["ams_project", "token", "ams_authn_port", "ams_token_in_url"] {
                let _ = r.plain("messaging", key);
            }
        }
        let ams = match protocol {
            Protocol::Stomp => None,
            Protocol::Ams => {
                let project = match r.plain("messaging", "ams_project")? {
                    Some(p) => p,
                    None if flags.ams_project.is_some() => String::new(),
                    None => {
                        return Err(r.invalid(
                            "messaging",
                            "ams_project",
                            "is required with protocol AMS",
                        ))
                    }
                };
                Some(AmsMessaging {
                    project,
                    token: r.plain("messaging", "token")?,
                    authn_port: r
                        .parsed("messaging", "ams_authn_port", super::values::parse_port)?
                        .unwrap_or(8443),
                    token_in_url: r.bool("messaging", "ams_token_in_url")?.unwrap_or(false),
                })
            }
        };
        let logging = r.logging()?;
        const CERTS: &str = "certificates";
        let identity = IdentitySettings {
            certificate: r.path(CERTS, "certificate")?.unwrap_or_default(),
            key: r.path(CERTS, "key")?.unwrap_or_default(),
            capath: r.path(CERTS, "capath")?,
            cafile: r.path(CERTS, "cafile")?,
        };
        let daemon = DaemonSettings {
            pidfile: r.path("daemon", "pidfile")?,
            metrics: r.plain("daemon", "metrics")?,
        };
        Ok(CommonSettings {
            broker,
            identity,
            logging,
            daemon,
            ams,
        })
    }

    /// Applies the shared flags: every flag given replaces the setting, a `--broker` list
    /// replaces the whole broker list.
    pub(crate) fn apply(&mut self, f: CommonFlags<'_>) {
        self.broker.apply(f.broker, f.broker_opts);
        let id = &mut self.identity;
        set_required(&mut id.certificate, &f.identity.cert);
        set_required(&mut id.key, &f.identity.key);
        set(&mut id.capath, &f.identity.capath);
        set(&mut id.cafile, &f.identity.cafile);
        set(&mut self.daemon.pidfile, f.pidfile);
        set(&mut self.daemon.metrics, f.metrics);
        match f.ams.protocol {
            Some(Protocol::Stomp) => self.ams = None,
            Some(Protocol::Ams) if self.ams.is_none() => {
                self.ams = Some(AmsMessaging {
                    project: String::new(),
                    token: None,
                    authn_port: 8443,
                    token_in_url: false,
                });
            }
            _ => {}
        }
        if let Some(ams) = &mut self.ams {
            set_required(&mut ams.project, &f.ams.ams_project);
            set(&mut ams.token, &f.ams.token);
            set_required(&mut ams.authn_port, &f.ams.ams_authn_port);
        }
    }

    /// Checks the shared required settings, in the order their errors are reported: broker,
    /// certificate, key, then (when `cas_required`) `capath` or `cafile`.
    pub(crate) fn check(
        &self,
        origin: Option<&str>,
        cas_required: bool,
    ) -> Result<(), ConfigError> {
        self.broker.check(origin)?;
        if self.ams.as_ref().is_some_and(|a| a.project.is_empty()) {
            return Err(missing(
                origin,
                "messaging",
                "ams_project",
                "--ams-project NAME",
            ));
        }
        let id = &self.identity;
        if id.certificate.as_os_str().is_empty() {
            return Err(missing(origin, "certificates", "certificate", "--cert C"));
        }
        if id.key.as_os_str().is_empty() {
            return Err(missing(origin, "certificates", "key", "--key K"));
        }
        if cas_required && id.capath.is_none() && id.cafile.is_none() {
            return Err(missing(
                origin,
                "certificates",
                "capath",
                "--capath DIR or --cafile F",
            ));
        }
        Ok(())
    }
}

impl BrokerSettings {
    /// Settings before any file or flag: no broker, TLS off.
    pub(crate) fn empty() -> BrokerSettings {
        BrokerSettings {
            brokers: Vec::new(),
            use_ssl: false,
            login: None,
            passcode: None,
            kind: None,
            broker_capath: None,
        }
    }

    /// Applies the broker flags: a `--broker` list replaces the brokers, `--tls` turns TLS on.
    fn apply(&mut self, broker: &[(String, u16)], f: &BrokerOverrides) {
        if !broker.is_empty() {
            self.brokers = broker.to_vec();
        }
        if f.tls {
            self.use_ssl = true;
        }
        set(&mut self.login, &f.login);
        set(&mut self.passcode, &f.passcode);
        set(&mut self.broker_capath, &f.broker_capath);
        if let Some(KindChoice(kind)) = f.broker_kind {
            self.kind = kind;
        }
    }

    /// Checks that there is a broker.
    fn check(&self, origin: Option<&str>) -> Result<(), ConfigError> {
        if self.brokers.is_empty() {
            return Err(missing(origin, "broker", "host", "--broker HOST:PORT"));
        }
        Ok(())
    }
}
