//! Command-line flags of `ssm send` and `ssm receive` that override the configuration file.
//!
//! The CLI flattens these structs into its argument structs (`#[command(flatten)]`). Flag names
//! are a public interface: scripts rely on them. Values are checked by clap as they are parsed
//! (ports, counts, names, with the parsers of [`super::values`]), so applying them to a configuration cannot fail.

use std::num::{NonZeroU32, NonZeroU64};
use std::path::PathBuf;

use super::common::Protocol;
use super::values::{self, KindChoice};
use crate::crypto::Cipher;
use crate::queue::PathType;

/// Flags of `ssm send`.
#[derive(clap::Args, Debug, Default, Clone)]
pub struct SenderOverrides {
    /// Configuration file [default: /etc/apel/sender.cfg if it exists, else flags only].
    #[arg(short = 'c', long = "config", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// A broker to connect to; repeat for a failover list (replaces the file's brokers).
    #[arg(long = "broker", value_name = "HOST:PORT", value_parser = values::parse_broker)]
    pub broker: Vec<(String, u16)>,
    /// Topic (or queue) to send to ([messaging] destination).
    #[arg(long, value_name = "TOPIC")]
    pub destination: Option<String>,
    /// This host's certificate and key, and the trusted CAs (the same flags for both commands).
    #[command(flatten)]
    pub identity: IdentityOverrides,
    /// The receiver's certificate: encrypt to it without asking ([certificates] server_cert).
    #[arg(long, value_name = "FILE", conflicts_with = "server_dn")]
    pub server_cert: Option<PathBuf>,
    /// Ask the receiver for its certificate and require this subject DN
    /// ([certificates] server_dn).
    #[arg(long, value_name = "DN")]
    pub server_dn: Option<String>,
    /// Outgoing queue directory ([messaging] path).
    #[arg(long, value_name = "OUTQ")]
    pub path: Option<PathBuf>,
    /// Outgoing queue layout: dirq or directory ([messaging] path_type) [default: dirq].
    #[arg(long, value_name = "TYPE", value_parser = values::parse_path_type)]
    pub path_type: Option<PathType>,
    /// Encryption cipher: des3, aes128, aes192 or aes256 ([messaging] cipher) [default: aes128
    /// for SSM2, des3 for version 1].
    #[arg(long, value_name = "CIPHER", value_parser = values::parse_cipher)]
    pub cipher: Option<Cipher>,
    /// Protocol: 2 (SSM2, one-way, confirmed by broker receipts: what the Python SSM 4.0
    /// speaks) or 1 (acknowledged by the receiver: certreq, acks, reack)
    /// ([messaging] ssm_version) [default: 2].
    #[arg(long, value_name = "N", value_parser = values::parse_ssm_version)]
    pub ssm_version: Option<crate::protocol::Version>,
    /// SSM2: messages waiting for their broker receipt at once; 1 sends one at a time as the
    /// Python SSM does ([messaging] window) [default: 64].
    #[arg(long, value_name = "N")]
    pub window: Option<NonZeroU32>,
    /// Seconds to wait for an ack before resending ([messaging] ack_timeout) [default: 60].
    #[arg(long, value_name = "SECS")]
    pub ack_timeout: Option<NonZeroU64>,
    /// Sends of one message before giving up on it for this run ([messaging] max_attempts)
    /// [default: 5].
    #[arg(long, value_name = "N")]
    pub max_attempts: Option<NonZeroU32>,
    /// Keep running and send new messages as they appear in the queue.
    #[arg(long)]
    pub daemon: bool,
    /// PID file: refuse to start while it names a live process; removed on exit
    /// ([daemon] pidfile).
    #[arg(long, value_name = "FILE")]
    pub pidfile: Option<PathBuf>,
    /// Serve Prometheus metrics on this address, e.g. 127.0.0.1:9464 ([daemon] metrics); with --daemon only.
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<String>,
    /// Broker login, passcode, TLS and kind (the same flags for both commands).
    #[command(flatten)]
    pub broker_opts: BrokerOverrides,
    /// The transport and the AMS settings (the same flags for both commands).
    #[command(flatten)]
    pub ams: AmsOverrides,
}

/// Flags of `ssm receive`.
#[derive(clap::Args, Debug, Default, Clone)]
pub struct ReceiverOverrides {
    /// Configuration file [default: /etc/apel/receiver.cfg if it exists, else flags only].
    #[arg(short = 'c', long = "config", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// File of allowed sender DNs, one per line ([receiver] dn_file) [default: /etc/apel/dns].
    #[arg(short = 'd', long = "dn-file", value_name = "DNFILE")]
    pub dn_file: Option<PathBuf>,
    /// A broker to connect to; repeat for a failover list (replaces the file's brokers).
    #[arg(long = "broker", value_name = "HOST:PORT", value_parser = values::parse_broker)]
    pub broker: Vec<(String, u16)>,
    /// Topic (or queue) to receive from ([messaging] destination).
    #[arg(long, value_name = "TOPIC")]
    pub destination: Option<String>,
    /// This host's certificate and key, and the trusted CAs (the same flags for both commands).
    #[command(flatten)]
    pub identity: IdentityOverrides,
    /// Check senders' certificates against CRLs ([certificates] check_crls = true).
    #[arg(long)]
    pub crl_check: bool,
    /// Message store: parent of incoming/ and reject/ ([messaging] path).
    #[arg(long, value_name = "STORE")]
    pub path: Option<PathBuf>,
    /// Stop after storing or rejecting this many messages.
    #[arg(long, value_name = "N")]
    pub max_messages: Option<NonZeroU64>,
    /// Stop after this many seconds.
    #[arg(long = "for", value_name = "SECS")]
    pub for_secs: Option<NonZeroU64>,
    /// PID file: refuse to start while it names a live process; removed on exit
    /// ([daemon] pidfile).
    #[arg(long, value_name = "FILE")]
    pub pidfile: Option<PathBuf>,
    /// Serve Prometheus metrics on this address, e.g. 127.0.0.1:9464 ([daemon] metrics).
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<String>,
    /// Broker login, passcode, TLS and kind (the same flags for both commands).
    #[command(flatten)]
    pub broker_opts: BrokerOverrides,
    /// The transport and the AMS settings (the same flags for both commands).
    #[command(flatten)]
    pub ams: AmsOverrides,
}

/// Certificate flags `ssm send` and `ssm receive` share, flattened where they stood in both
/// (after `--destination`), so that `--help` keeps its order.
#[derive(clap::Args, Debug, Default, Clone)]
pub struct IdentityOverrides {
    /// This host's certificate, PEM ([certificates] certificate).
    #[arg(long, value_name = "FILE")]
    pub cert: Option<PathBuf>,
    /// This host's private key, PEM ([certificates] key).
    #[arg(long, value_name = "FILE")]
    pub key: Option<PathBuf>,
    /// Directory of trusted CA certificates ([certificates] capath).
    #[arg(long, value_name = "DIR")]
    pub capath: Option<PathBuf>,
    /// File of trusted CA certificates, PEM ([certificates] cafile).
    #[arg(long, value_name = "FILE")]
    pub cafile: Option<PathBuf>,
}

/// Broker flags `ssm send` and `ssm receive` share, flattened last into both (clap lists flags
/// in declaration order, so they stay at the end of `--help`). `--broker` itself is not here:
/// it comes second in both commands' help.
#[derive(clap::Args, Debug, Default, Clone)]
pub struct BrokerOverrides {
    /// Broker login ([broker] login).
    #[arg(long, value_name = "L")]
    pub login: Option<String>,
    /// Broker passcode ([broker] passcode).
    #[arg(long, value_name = "P")]
    pub passcode: Option<String>,
    /// Connect to the broker with TLS ([broker] use_ssl = true; a file's default is already on).
    #[arg(long)]
    pub tls: bool,
    /// Directory of CA certificates trusted for the broker's TLS certificate
    /// ([broker] capath).
    #[arg(long, value_name = "DIR")]
    pub broker_capath: Option<PathBuf>,
    /// Broker kind, for its quirks: auto, rabbitmq, activemq or embedded ([broker] kind)
    /// [default: auto].
    #[arg(long, value_name = "KIND", value_parser = values::parse_broker_kind)]
    pub broker_kind: Option<KindChoice>,
}

/// The transport and the ARGO Messaging Service settings `ssm send` and `ssm receive` share,
/// flattened after the broker flags. With AMS, `--broker HOST[:PORT]` (or `[broker] host`) is
/// the AMS host and `--destination` the topic (send) or the subscription (receive).
#[derive(clap::Args, Debug, Default, Clone)]
pub struct AmsOverrides {
    /// Transport: stomp (brokers) or ams (the ARGO Messaging Service)
    /// ([sender] protocol / [receiver] protocol) [default: STOMP].
    #[arg(long, value_name = "PROTOCOL", value_parser = parse_protocol)]
    pub protocol: Option<Protocol>,
    /// AMS project, e.g. accounting ([messaging] ams_project); with protocol AMS.
    #[arg(long, value_name = "NAME")]
    pub ams_project: Option<String>,
    /// AMS token ([messaging] token); with protocol AMS; without one the host certificate is
    /// exchanged for a token. Other users may see a command line: prefer the file.
    #[arg(long, value_name = "TOKEN")]
    pub token: Option<String>,
    /// Port of the AMS certificate-for-token exchange on the AMS host
    /// ([messaging] ams_authn_port) [default: 8443].
    #[arg(long, value_name = "PORT", value_parser = values::parse_port)]
    pub ams_authn_port: Option<u16>,
}

/// `stomp` or `ams`, in any case (as `[sender] protocol` takes them).
fn parse_protocol(s: &str) -> Result<Protocol, String> {
    if s.eq_ignore_ascii_case("stomp") {
        Ok(Protocol::Stomp)
    } else if s.eq_ignore_ascii_case("ams") {
        Ok(Protocol::Ams)
    } else {
        Err(format!("'{s}' is not a protocol: stomp or ams"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Loadable, ReceiverConfig, SenderConfig};
    use clap::Parser;

    #[derive(Parser)]
    struct Send {
        #[command(flatten)]
        o: SenderOverrides,
    }

    #[derive(Parser)]
    struct Receive {
        #[command(flatten)]
        o: ReceiverOverrides,
    }

    const STOMP_SENDER: &str =
        "[sender]\nprotocol: STOMP\n\n[broker]\nhost: mq.example.org\nport: 61613\n\n\
        [certificates]\ncertificate: /c\nkey: /k\ncapath: /ca\nserver_cert: /s\n\n\
        [messaging]\ndestination: gLite-APEL\npath: /q\n";

    const AMS_RECEIVER: &str = "[receiver]\nprotocol: AMS\n\n[broker]\nhost: msg.argo.grnet.gr\n\n\
        [certificates]\ncertificate: /c\nkey: /k\ncapath: /ca\n\n\
        [messaging]\nams_project: accounting\ntoken: file-token\ndestination: sub\npath: /s\n";

    fn send(args: &[&str]) -> SenderOverrides {
        Send::try_parse_from(std::iter::once("send").chain(args.iter().copied()))
            .unwrap()
            .o
    }

    fn receive(args: &[&str]) -> ReceiverOverrides {
        Receive::try_parse_from(std::iter::once("receive").chain(args.iter().copied()))
            .unwrap()
            .o
    }

    #[test]
    fn ams_flags_override_the_file() {
        // A STOMP sender.cfg turned to AMS by flags: the host is the AMS host (443).
        let o = send(&["--protocol", "AMS", "--ams-project", "p", "--token", "t"]);
        let (c, _) = SenderConfig::from_ini_str_with(STOMP_SENDER, "sender.cfg", &o).unwrap();
        let ams = c.common.ams.as_ref().unwrap();
        assert_eq!(
            (ams.project.as_str(), ams.token.as_deref()),
            ("p", Some("t"))
        );
        assert_eq!(ams.authn_port, 8443);
        assert_eq!(
            c.common.broker.brokers,
            vec![("mq.example.org".to_string(), 443)]
        );

        // An AMS receiver.cfg: the token, project and port flags replace the file's.
        let o = receive(&[
            "--token",
            "flag-token",
            "--ams-project",
            "q",
            "--ams-authn-port",
            "9443",
        ]);
        let (c, _) = ReceiverConfig::from_ini_str_with(AMS_RECEIVER, "receiver.cfg", &o).unwrap();
        let ams = c.common.ams.as_ref().unwrap();
        assert_eq!(ams.token.as_deref(), Some("flag-token"));
        assert_eq!((ams.project.as_str(), ams.authn_port), ("q", 9443));
        // ... and --protocol stomp turns it back to STOMP, without a warning about the AMS
        // options (they are the file's, read and unused).
        let o = receive(&["--protocol", "stomp"]);
        let file = AMS_RECEIVER.replace("grnet.gr\n", "grnet.gr\nport: 61613\n");
        let (c, warnings) = ReceiverConfig::from_ini_str_with(&file, "receiver.cfg", &o).unwrap();
        assert!(c.common.ams.is_none());
        assert!(warnings.is_empty(), "{warnings:?}");
        // Without flags the file holds.
        let (c, _) =
            ReceiverConfig::from_ini_str_with(AMS_RECEIVER, "receiver.cfg", &receive(&[])).unwrap();
        assert_eq!(c.common.ams.unwrap().token.as_deref(), Some("file-token"));
    }

    #[test]
    fn ams_from_flags_only_needs_the_project() {
        let base = [
            "--broker",
            "localhost:8443",
            "--destination",
            "sub",
            "--cert",
            "/c",
            "--key",
            "/k",
            "--capath",
            "/ca",
            "--path",
            "/s",
            "--protocol",
            "ams",
        ];
        let e = ReceiverConfig::from_overrides(&receive(&base)).unwrap_err();
        assert!(e.to_string().contains("--ams-project"), "{e}");
        let mut args = base.to_vec();
        args.extend(["--ams-project", "accounting"]);
        let c = ReceiverConfig::from_overrides(&receive(&args)).unwrap();
        let ams = c.common.ams.unwrap();
        assert_eq!((ams.project.as_str(), ams.token), ("accounting", None));
        assert!(Send::try_parse_from(["send", "--protocol", "amqp"]).is_err());
    }
}
