//! Command-line flags of `ssm send` and `ssm receive` that override the configuration file.
//!
//! The CLI flattens these structs into its argument structs (`#[command(flatten)]`). Flag names
//! are a public interface: scripts rely on them. Values are checked by clap as they are parsed
//! (ports, counts, names, with the parsers of [`super::values`]), so applying them to a configuration cannot fail.

use std::num::{NonZeroU32, NonZeroU64};
use std::path::PathBuf;

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
