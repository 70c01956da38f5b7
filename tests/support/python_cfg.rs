//! The Python SSM 4.0's configuration files as it ships them (the layout of apel/ssm's
//! conf/sender.cfg and conf/receiver.cfg, `:` separators, its comments and commented-out
//! options), filled in with a test's values: the one template every test that runs `ssm` from
//! an unchanged Python file writes.

use std::net::SocketAddr;
use std::path::Path;

use super::process::p;

/// What a test puts in the Python SSM's files.
pub struct PythonCfg<'a> {
    /// The broker (`host`, `port`).
    pub broker: SocketAddr,
    /// `[certificates] certificate`, `key`, `capath`.
    pub cert: &'a Path,
    pub key: &'a Path,
    pub capath: &'a Path,
    /// `[messaging] destination`.
    pub destination: &'a str,
    /// `[messaging] path`: the outgoing queue (sender) or the message store (receiver).
    pub path: &'a Path,
    /// `[logging] logfile`.
    pub logfile: &'a Path,
}

impl PythonCfg<'_> {
    /// The sections both files share, `[broker]` to the `[messaging]` header's first lines.
    fn broker_and_certificates(&self, extra_certificates: &str) -> String {
        format!(
            "protocol: STOMP\n\n[broker]\nhost: {}\nport: {}\nuse_ssl: false\n\n\
             [certificates]\ncertificate: {}\nkey: {}\ncapath: {}\n{extra_certificates}\n\
             [messaging]\nams_project: accounting\ndestination: {}\n#token:\npath: {}\n",
            self.broker.ip(),
            self.broker.port(),
            p(self.cert),
            p(self.key),
            p(self.capath),
            self.destination,
            p(self.path),
        )
    }

    /// receiver.cfg (no `ssm_version`: version 2 is the default there and here).
    pub fn receiver(&self, pidfile: &Path) -> String {
        format!(
            "[receiver]\n{COMMENT}{}\n[logging]\nlogfile: {}\nlevel: INFO\nconsole: false\n\n\
             [daemon]\npidfile: {}\n",
            self.broker_and_certificates("check_crls: false\n"),
            p(self.logfile),
            p(pidfile),
        )
    }

    /// sender.cfg, encrypting to `server_cert` if given (else the option is left commented
    /// out, as shipped), logging to the console too if `console`.
    pub fn sender(&self, server_cert: Option<&Path>, console: bool) -> String {
        let server_cert = match server_cert {
            Some(cert) => format!("server_cert: {}\n", p(cert)),
            None => "#server_cert: /etc/grid-security/servercert.pem\n".into(),
        };
        format!(
            "[sender]\n{COMMENT}{}path_type: dirq\n\n[logging]\nlogfile: {}\nlevel: INFO\n\
             console: {console}\n",
            self.broker_and_certificates(&server_cert),
            p(self.logfile),
        )
    }
}

/// The comment above `protocol` in both shipped files.
const COMMENT: &str =
    "# Either 'STOMP' for STOMP message brokers or 'AMS' for Argo Messaging Service\n";
