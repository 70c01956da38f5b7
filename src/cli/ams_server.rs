//! `ssm ams-server`: runs the AMS-compatible test server ([`crate::ams_server`]) until SIGINT
//! or SIGTERM. In memory, one project: for the demo, the tests and trying the AMS path on one
//! machine, not a production service.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;

use crate::ams_server::{self, AmsServerConfig, AuthnConfig, Role, StateConfig};
use crate::crypto::DnList;

/// Arguments of `ssm ams-server`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Address of the AMS API (port 0 picks a free port, logged at start).
    #[arg(long, value_name = "HOST:PORT")]
    pub listen: SocketAddr,
    /// The server certificate (PEM; may hold the chain).
    #[arg(long, value_name = "FILE")]
    pub tls_cert: PathBuf,
    /// The server certificate's private key (PEM).
    #[arg(long, value_name = "FILE")]
    pub tls_key: PathBuf,
    /// Address of the authentication service (`authx509`, port 8443 on the real host).
    #[arg(long, value_name = "HOST:PORT", requires = "capath")]
    pub authn_listen: Option<SocketAddr>,
    /// Hashed CA directory that client certificates of the token exchange must chain to
    /// (CRLs in it are checked).
    #[arg(long, value_name = "DIR", requires = "authn_listen")]
    pub capath: Option<PathBuf>,
    /// Only client certificates with a DN in this file (one per line, slash form) get a token;
    /// others get `404 Binding was not found`. Without it every trusted certificate does.
    #[arg(long, value_name = "FILE", requires = "authn_listen")]
    pub dn_file: Option<PathBuf>,
    /// The project served.
    #[arg(long, value_name = "NAME", default_value = "accounting")]
    pub project: String,
    /// A token accepted for publishing and consuming (repeatable; the token exchange hands out
    /// the first). Without any, one is made up and logged.
    #[arg(long = "token", value_name = "TOKEN")]
    pub tokens: Vec<String>,
    /// A topic (repeatable).
    #[arg(long = "topic", value_name = "NAME")]
    pub topics: Vec<String>,
    /// A subscription to a topic (repeatable); the topic is created if not given with --topic.
    #[arg(long = "subscription", value_name = "NAME=TOPIC", value_parser = parse_subscription)]
    pub subscriptions: Vec<(String, String)>,
    /// The ack deadline of every subscription at start, in seconds (modifyAckDeadline changes
    /// it).
    #[arg(long, value_name = "SECS", default_value_t = 10, value_parser = clap::value_parser!(u32).range(0..=600))]
    pub ack_deadline: u32,
    /// The largest message accepted (its base64 data, in bytes); larger ones get `413 Message
    /// size is too large`.
    #[arg(long, value_name = "N", default_value_t = 1024 * 1024)]
    pub max_message_bytes: usize,
    /// Tokens with one role only, `publisher:TOKEN` or `consumer:TOKEN` (tests of 403).
    #[arg(long = "role-token", value_name = "ROLE:TOKEN", hide = true, value_parser = parse_role_token)]
    pub role_tokens: Vec<(String, Role)>,
    /// How long a pull with returnImmediately "false" collects, in milliseconds (the real
    /// server: 300000).
    #[arg(long, value_name = "MS", default_value_t = 300_000, hide = true)]
    pub pull_wait_ms: u64,
    /// The largest request body, in bytes.
    #[arg(long, value_name = "N", default_value_t = 256 * 1024 * 1024, hide = true)]
    pub max_request_bytes: usize,
    /// Answer every N-th API request with a load balancer's HTML 503 (0: never).
    #[arg(long, value_name = "N", default_value_t = 0, hide = true)]
    pub fault_503_every: u64,
}

fn parse_subscription(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((sub, topic)) if !sub.is_empty() && !topic.is_empty() => {
            Ok((sub.to_string(), topic.to_string()))
        }
        _ => Err(format!("{s:?} is not NAME=TOPIC")),
    }
}

fn parse_role_token(s: &str) -> Result<(String, Role), String> {
    match s.split_once(':') {
        Some(("publisher", t)) if !t.is_empty() => Ok((t.to_string(), Role::Publisher)),
        Some(("consumer", t)) if !t.is_empty() => Ok((t.to_string(), Role::Consumer)),
        _ => Err(format!("{s:?} is not publisher:TOKEN or consumer:TOKEN")),
    }
}

/// Runs `ssm ams-server`.
pub fn run(args: Args) -> anyhow::Result<()> {
    crate::logging::init_stderr();

    let mut tokens: Vec<(String, Role)> = args
        .tokens
        .iter()
        .map(|t| (t.clone(), Role::Both))
        .collect();
    if tokens.is_empty() {
        let made = uuid::Uuid::new_v4().simple().to_string();
        tracing::info!(token = %made, "no --token given: made one up");
        tokens.push((made, Role::Both));
    }
    tokens.extend(args.role_tokens.iter().cloned());
    let dns = match &args.dn_file {
        Some(f) => Some(DnList::load(f).with_context(|| format!("DN file {}", f.display()))?),
        None => None,
    };
    let authn = match (args.authn_listen, &args.capath) {
        (Some(listen), Some(capath)) => Some(AuthnConfig {
            listen,
            capath: capath.clone(),
            dns,
        }),
        _ => None,
    };
    let cfg = AmsServerConfig {
        listen: args.listen,
        tls_cert: args.tls_cert,
        tls_key: args.tls_key,
        authn,
        state: StateConfig {
            project: args.project,
            tokens,
            topics: args.topics,
            subscriptions: args.subscriptions,
            ack_deadline: args.ack_deadline,
            max_message_bytes: args.max_message_bytes,
        },
        pull_wait: Duration::from_millis(args.pull_wait_ms),
        max_request_bytes: args.max_request_bytes,
        fault_503_every: args.fault_503_every,
    };
    let project = cfg.state.project.clone();
    let rt = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    rt.block_on(async move {
        let handle = ams_server::start(cfg).await?;
        match handle.authn_addr() {
            Some(a) => tracing::info!(addr = %handle.local_addr(), authn = %a, %project, "AMS API listening; press Ctrl-C to stop; messages are kept in memory only"),
            None => tracing::info!(addr = %handle.local_addr(), %project, "AMS API listening; press Ctrl-C to stop; messages are kept in memory only"),
        }
        super::wait_for_signal().await?;
        tracing::info!("stopping");
        handle.shutdown().await;
        Ok(())
    })
}
