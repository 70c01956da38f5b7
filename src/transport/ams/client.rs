//! [`AmsClient`]: the calls the SSM makes to the ARGO Messaging Service, over kept-alive HTTPS
//! connections (hyper + OpenSSL): publish, pull, acknowledge, modifyAckDeadline, offsets, and
//! the descriptions of a subscription and a topic (for the ack deadline and `ssm check`).
//!
//! Guarantees:
//! - One client holds a pool of kept-alive connections (hyper-util's): a TLS handshake per
//!   connection, not per request; it is cheap to clone and safe to share between tasks.
//! - The server certificate is verified (chain and host name) against the system roots, unless
//!   [`AmsConfig::system_roots`] is off, plus the CA file and the hashed CA directory of
//!   [`AmsConfig::tls`]; the client certificate is only ever presented to the authentication
//!   service, for the token exchange.
//! - The token is the configured one, or else exchanged for the client certificate at
//!   `https://{host}:{authn_port}/v1/service-types/ams/hosts/{host}:authx509`; an exchanged token
//!   that the service answers 401 to is exchanged again (once per refusal, by one task while the
//!   others wait) and the call made again once.
//! - Every call has a deadline ([`AmsConfig::request_timeout`], plus the server's 300 s of
//!   collecting for a pull with `return_immediately` false); answers are bounded by
//!   [`AmsConfig::max_answer_bytes`].
//! - A call does not retry by itself (except after a token renewal): [`with_retries`] does,
//!   with exponential backoff and jitter, for the errors [`AmsError::is_retryable`] says may
//!   pass. Publishing again after a lost answer may publish twice: receivers must deduplicate.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::{Method, Request, StatusCode};
use hyper_openssl::client::legacy::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use openssl::ssl::{SslConnector, SslConnectorBuilder, SslFiletype, SslMethod};
use openssl::x509::store::{X509Lookup, X509StoreBuilder};
use openssl::x509::X509;
use rand::Rng;

use super::wire::{
    self, AckRequest, Attributes, ErrorAnswer, Message, ModifyAckDeadlineRequest, Offsets,
    PublishAnswer, PublishRequest, PullAnswer, PullRequest, SubscriptionInfo, TokenAnswer,
    TopicInfo,
};
use crate::stomp::TlsConfig;

/// How long the real server collects for a pull with `"returnImmediately":"false"`.
pub const SERVER_PULL_WAIT: Duration = Duration::from_secs(300);

/// How to reach the service. Its `Debug` leaves the token out (it is a password).
#[derive(Clone)]
pub struct AmsConfig {
    /// The AMS host (`[broker] host`), e.g. `msg.argo.grnet.gr`.
    pub host: String,
    /// Its HTTPS port (443).
    pub port: u16,
    /// The authentication service's port on the same host (8443).
    pub authn_port: u16,
    /// The project (`[messaging] ams_project`), e.g. `accounting`.
    pub project: String,
    /// The token (`[messaging] token`); `None`: exchange the client certificate for one.
    pub token: Option<String>,
    /// CA file and directory, client certificate and key, verification on or off.
    pub tls: TlsConfig,
    /// Trust the system's default CA store too (the real service has a commercial
    /// certificate; grid CA directories do not hold its CA).
    pub system_roots: bool,
    /// Send the token as the deprecated `?key=` URL parameter instead of the `x-api-key`
    /// header (what ARC does; only for services that need it).
    pub key_in_url: bool,
    /// How long a TCP connection may take.
    pub connect_timeout: Duration,
    /// How long a call may take (connection, request and answer).
    pub request_timeout: Duration,
    /// The largest answer accepted, in bytes.
    pub max_answer_bytes: usize,
}

impl fmt::Debug for AmsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AmsConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("authn_port", &self.authn_port)
            .field("project", &self.project)
            .field("token", &self.token.as_ref().map(|_| "<hidden>"))
            .field("tls", &self.tls)
            .field("system_roots", &self.system_roots)
            .field("key_in_url", &self.key_in_url)
            .field("connect_timeout", &self.connect_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("max_answer_bytes", &self.max_answer_bytes)
            .finish()
    }
}

impl AmsConfig {
    /// Settings for `host` and `project` with the defaults of the real service.
    pub fn new(host: impl Into<String>, project: impl Into<String>) -> AmsConfig {
        AmsConfig {
            host: host.into(),
            port: 443,
            authn_port: 8443,
            project: project.into(),
            token: None,
            tls: TlsConfig::default(),
            system_roots: true,
            key_in_url: false,
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(60),
            max_answer_bytes: 256 * 1024 * 1024,
        }
    }
}

/// Where the token in use came from (it decides what a 401 means).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenSource {
    /// `[messaging] token`.
    Configured,
    /// Exchanged for the client certificate at the authentication service.
    Exchanged,
}

impl fmt::Display for TokenSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TokenSource::Configured => "the configured token",
            TokenSource::Exchanged => "the token exchanged for the host certificate",
        })
    }
}

/// What can go wrong talking to AMS. Each message says what to fix where something can be.
#[derive(Debug, thiserror::Error)]
pub enum AmsError {
    /// 401: the token is wrong, expired or revoked.
    #[error("AMS {host}: {token} was refused for {call} (401 {message}): {}",
        match token {
            TokenSource::Configured => "check [messaging] token",
            TokenSource::Exchanged => "check that the host certificate's DN is registered for AMS in GOCDB, or set [messaging] token",
        })]
    Unauthorized {
        /// The AMS host.
        host: String,
        /// Where the token came from.
        token: TokenSource,
        /// The call, e.g. `publish to topic gLite-APEL`.
        call: String,
        /// The service's message.
        message: String,
    },
    /// 403: the token's user may not do this.
    #[error("AMS {host}: {call} is forbidden to this token's user (403 {message}): ask the AMS administrators for the publisher or consumer role on it")]
    Forbidden {
        /// The AMS host.
        host: String,
        /// The call.
        call: String,
        /// The service's message.
        message: String,
    },
    /// 404: the project, topic or subscription does not exist.
    #[error("AMS {host}: {what} does not exist (404 {message}): {hint}")]
    NotFound {
        /// The AMS host.
        host: String,
        /// What is missing, e.g. `topic gLite-APEL in project accounting`.
        what: String,
        /// The service's message.
        message: String,
        /// The setting to check.
        hint: &'static str,
    },
    /// 413: a message is larger than the service takes.
    #[error("AMS {host}: {call}: a message is too large for the service (413 {message})")]
    TooLarge {
        /// The AMS host.
        host: String,
        /// The call.
        call: String,
        /// The service's message.
        message: String,
    },
    /// 408 (other than on an ack) or a load balancer's 504: try again.
    #[error("AMS {host}: {call} timed out on the service side ({status} {message})")]
    Timeout {
        /// The AMS host.
        host: String,
        /// The call.
        call: String,
        /// 408 or 504.
        status: u16,
        /// The service's message or body.
        message: String,
    },
    /// 408 on an acknowledgement: it came later than the subscription's ack deadline. The
    /// messages will be delivered again; acking again does not help.
    #[error("AMS {host}: the ack on subscription {subscription} came after its deadline (408 {message}): the messages will be delivered again")]
    AckDeadlineExceeded {
        /// The AMS host.
        host: String,
        /// The subscription.
        subscription: String,
        /// The service's message.
        message: String,
    },
    /// 500 `no ack pending` / `wrong ack`: the ack ids are not those of the last pull (another
    /// consumer pulled since, or this ack was already taken). Acking again does not help.
    #[error("AMS {host}: the ack on subscription {subscription} was refused ({message}): the ack ids are not those of the subscription's last pull")]
    AckRefused {
        /// The AMS host.
        host: String,
        /// The subscription.
        subscription: String,
        /// The service's message.
        message: String,
    },
    /// 5xx, including a load balancer's non-JSON 502/503/504: try again.
    #[error("AMS {host}: {call} failed on the service side ({status} {message})")]
    Server {
        /// The AMS host.
        host: String,
        /// The call.
        call: String,
        /// The HTTP status.
        status: u16,
        /// The service's message, or the start of a non-JSON body.
        message: String,
    },
    /// Another 4xx (400 invalid arguments, 409…): a bug on one side, not worth retrying.
    #[error("AMS {host}: {call} was refused ({status} {message})")]
    Refused {
        /// The AMS host.
        host: String,
        /// The call.
        call: String,
        /// The HTTP status.
        status: u16,
        /// The service's message.
        message: String,
    },
    /// No connection: DNS, TCP, TLS (certificate verification), or the connection broke.
    #[error("AMS: cannot reach {target}: {reason}")]
    Connect {
        /// `host:port`.
        target: String,
        /// What failed, with OpenSSL's verification result for TLS.
        reason: String,
    },
    /// No answer within the call's deadline.
    #[error("AMS {host}: no answer to {call} within {after:?}")]
    NoAnswer {
        /// The AMS host.
        host: String,
        /// The call.
        call: String,
        /// The deadline.
        after: Duration,
    },
    /// A 200 answer that is not what the API promises.
    #[error("AMS {host}: unexpected answer to {call}: {reason}")]
    BadAnswer {
        /// The AMS host.
        host: String,
        /// The call.
        call: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The certificate-for-token exchange was refused.
    #[error("AMS authentication service {target}: no token for the host certificate{dn} ({status} {message}): {hint}")]
    Authn {
        /// `host:port`.
        target: String,
        /// ` (DN …)` when the certificate could be read, else empty.
        dn: String,
        /// The HTTP status.
        status: u16,
        /// The service's message.
        message: String,
        /// What to fix.
        hint: &'static str,
    },
    /// The client cannot be set up (TLS files, missing credentials).
    #[error("AMS client setup: {0}")]
    Setup(String),
}

impl AmsError {
    /// Whether trying the same call again later may succeed: connection failures, missing
    /// answers, 408 (except on an ack) and 5xx.
    pub fn is_retryable(&self) -> bool {
        match self {
            AmsError::Connect { .. }
            | AmsError::NoAnswer { .. }
            | AmsError::Timeout { .. }
            | AmsError::Server { .. } => true,
            AmsError::Authn { status, .. } => *status >= 500,
            _ => false,
        }
    }

    /// The HTTP status of the answer, when there was one.
    pub fn status(&self) -> Option<u16> {
        match self {
            AmsError::Unauthorized { .. } => Some(401),
            AmsError::Forbidden { .. } => Some(403),
            AmsError::NotFound { .. } => Some(404),
            AmsError::TooLarge { .. } => Some(413),
            AmsError::AckDeadlineExceeded { .. } => Some(408),
            AmsError::AckRefused { .. } => Some(500),
            AmsError::Timeout { status, .. }
            | AmsError::Server { status, .. }
            | AmsError::Refused { status, .. }
            | AmsError::Authn { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// A pulled message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pulled {
    /// What to acknowledge it with.
    pub ack_id: String,
    /// Its id (topic offset).
    pub message_id: String,
    /// Its attributes (empty when it came without any).
    pub attributes: Attributes,
    /// Its body, or why its `data` is not base64 (the message should then be rejected, and
    /// acknowledged like any other).
    pub body: Result<Bytes, String>,
    /// When the service took it.
    pub publish_time: String,
}

/// Backoff for [`with_retries`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Tries in all (1 = no retry).
    pub attempts: u32,
    /// The delay before the first retry (then doubled each time, up to `max_delay`); each
    /// delay is drawn between half of it and all of it.
    pub first_delay: Duration,
    /// The longest delay.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 6,
            first_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// The delay before retry number `retry` (0 = the first retry), with jitter.
    pub fn delay(&self, retry: u32) -> Duration {
        let base = self
            .first_delay
            .saturating_mul(1u32 << retry.min(20))
            .min(self.max_delay);
        let half = base / 2;
        let jitter = rand::thread_rng().gen_range(0..=half.as_millis() as u64);
        half + Duration::from_millis(jitter)
    }
}

/// Runs `op` until it succeeds, fails with an error that is not retryable, or has been tried
/// `policy.attempts` times; logs each retry. Returns the last error.
pub async fn with_retries<T, F, Fut>(policy: &RetryPolicy, mut op: F) -> Result<T, AmsError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, AmsError>>,
{
    let mut retry = 0;
    loop {
        match op().await {
            Ok(v) => return Ok(v),
            Err(e) if e.is_retryable() && retry + 1 < policy.attempts.max(1) => {
                let delay = policy.delay(retry);
                tracing::warn!("{e}; trying again in {:.1} s", delay.as_secs_f64());
                tokio::time::sleep(delay).await;
                retry += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

type Https = HttpsConnector<HttpConnector>;

struct TokenState {
    current: Option<String>,
    generation: u64,
}

struct Inner {
    cfg: AmsConfig,
    http: Client<Https, Full<Bytes>>,
    source: TokenSource,
    token: tokio::sync::Mutex<TokenState>,
}

/// A client of one AMS project (see the module documentation). Cheap to clone.
#[derive(Clone)]
pub struct AmsClient {
    inner: Arc<Inner>,
}

impl fmt::Debug for AmsClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AmsClient")
            .field("host", &self.inner.cfg.host)
            .field("port", &self.inner.cfg.port)
            .field("project", &self.inner.cfg.project)
            .finish_non_exhaustive()
    }
}

fn setup_err(
    what: &str,
    path: &std::path::Path,
) -> impl Fn(openssl::error::ErrorStack) -> AmsError {
    let what = what.to_string();
    let path = path.to_path_buf();
    move |e| {
        AmsError::Setup(format!(
            "{what} {}: {}",
            path.display(),
            crate::crypto::openssl_reason(&e)
        ))
    }
}

fn ssl_builder(cfg: &AmsConfig, with_client_cert: bool) -> Result<SslConnectorBuilder, AmsError> {
    let generic = |e: openssl::error::ErrorStack| {
        AmsError::Setup(format!("TLS: {}", crate::crypto::openssl_reason(&e)))
    };
    let mut b = SslConnector::builder(SslMethod::tls_client()).map_err(generic)?;
    let tls = &cfg.tls;
    if !cfg.system_roots {
        // A fresh store: the defaults `builder` loaded are not trusted then.
        b.set_cert_store(X509StoreBuilder::new().map_err(generic)?.build());
    }
    if let Some(file) = &tls.cafile {
        let pem = std::fs::read(file)
            .map_err(|e| AmsError::Setup(format!("CA file {}: {e}", file.display())))?;
        let certs = X509::stack_from_pem(&pem).map_err(setup_err("CA file", file))?;
        if certs.is_empty() {
            return Err(AmsError::Setup(format!(
                "CA file {} holds no PEM certificate",
                file.display()
            )));
        }
        for c in certs {
            b.cert_store_mut()
                .add_cert(c)
                .map_err(setup_err("CA file", file))?;
        }
    }
    if let Some(dir) = &tls.capath {
        // The hash lookup is lazy and would take a missing directory silently.
        std::fs::read_dir(dir)
            .map_err(|e| AmsError::Setup(format!("CA directory {}: {e}", dir.display())))?;
        let dir_str = dir.to_str().ok_or_else(|| {
            AmsError::Setup(format!(
                "CA directory {} is not a UTF-8 path",
                dir.display()
            ))
        })?;
        b.cert_store_mut()
            .add_lookup(X509Lookup::hash_dir())
            .map_err(generic)?
            .add_dir(dir_str, SslFiletype::PEM)
            .map_err(setup_err("CA directory", dir))?;
    }
    if with_client_cert {
        let Some(cert) = &tls.cert else {
            return Err(AmsError::Setup(
                "no [messaging] token and no host certificate to exchange for one: set [certificates] certificate and key, or [messaging] token".into(),
            ));
        };
        b.set_certificate_chain_file(cert)
            .map_err(setup_err("certificate", cert))?;
        let key: &PathBuf = tls.key.as_ref().unwrap_or(cert);
        b.set_private_key_file(key, SslFiletype::PEM)
            .map_err(setup_err("key", key))?;
        b.check_private_key()
            .map_err(setup_err("key (does not match the certificate)", key))?;
    }
    if !tls.verify {
        b.set_verify(openssl::ssl::SslVerifyMode::NONE);
    }
    Ok(b)
}

fn connector(cfg: &AmsConfig, with_client_cert: bool) -> Result<Https, AmsError> {
    let b = ssl_builder(cfg, with_client_cert)?;
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(cfg.connect_timeout));
    let mut https = HttpsConnector::with_connector(http, b)
        .map_err(|e| AmsError::Setup(format!("TLS: {}", crate::crypto::openssl_reason(&e))))?;
    if !cfg.tls.verify {
        https.set_callback(|conf, _| {
            conf.set_verify_hostname(false);
            Ok(())
        });
    }
    Ok(https)
}

fn authority(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// The chain of an error's causes, for a one-line reason.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cur = s.source();
    }
    out
}

/// Adds what to fix to the usual TLS failures.
fn with_tls_hint(reason: String) -> String {
    let hint = if reason.contains("certificate verify failed") {
        " (the server's certificate is not trusted or not for this host name: check [broker] host and [certificates] capath)"
    } else if reason.contains("alert unknown ca") || reason.contains("alert certificate") {
        " (the server refused our certificate: check [certificates] certificate and key, and that its CA is one the service trusts)"
    } else {
        ""
    };
    reason + hint
}

/// Percent-encodes a token for the `?key=` parameter.
fn encode_query(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// What a call is about, for messages.
enum Call<'a> {
    Publish(&'a str),
    Pull(&'a str),
    Ack(&'a str),
    ModAck(&'a str),
    Offsets(&'a str),
    Subscription(&'a str),
    Topic(&'a str),
}

impl Call<'_> {
    fn describe(&self) -> String {
        match self {
            Call::Publish(t) => format!("publish to topic {t}"),
            Call::Pull(s) => format!("pull from subscription {s}"),
            Call::Ack(s) => format!("acknowledge on subscription {s}"),
            Call::ModAck(s) => format!("modifyAckDeadline of subscription {s}"),
            Call::Offsets(s) => format!("offsets of subscription {s}"),
            Call::Subscription(s) => format!("the description of subscription {s}"),
            Call::Topic(t) => format!("the description of topic {t}"),
        }
    }

    fn subscription(&self) -> Option<&str> {
        match self {
            Call::Publish(_) | Call::Topic(_) => None,
            Call::Pull(s)
            | Call::Ack(s)
            | Call::ModAck(s)
            | Call::Offsets(s)
            | Call::Subscription(s) => Some(s),
        }
    }
}

/// The message of an error answer: the JSON's, or the start of a non-JSON body.
fn error_message(body: &[u8]) -> String {
    if let Ok(e) = serde_json::from_slice::<ErrorAnswer>(body) {
        return e.error.message;
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    let mut short: String = text.chars().take(200).collect();
    if short.len() < text.len() {
        short.push('…');
    }
    crate::logging::escape_controls(format_args!("{short}")).to_string()
}

impl AmsClient {
    /// A client; connects lazily, on the first call.
    pub fn new(cfg: AmsConfig) -> Result<AmsClient, AmsError> {
        let https = connector(&cfg, false)?;
        let http = Client::builder(TokioExecutor::new())
            // Below the idle timeouts of usual servers and balancers, so that a kept
            // connection is not closed under a request.
            .pool_idle_timeout(Duration::from_secs(20))
            .pool_max_idle_per_host(32)
            .build(https);
        if cfg.token.is_none() {
            // Fail now, not at the first call, if there is nothing to exchange for a token.
            ssl_builder(&cfg, true)?;
        }
        let source = if cfg.token.is_some() {
            TokenSource::Configured
        } else {
            TokenSource::Exchanged
        };
        let token = tokio::sync::Mutex::new(TokenState {
            current: cfg.token.clone(),
            generation: 0,
        });
        Ok(AmsClient {
            inner: Arc::new(Inner {
                cfg,
                http,
                source,
                token,
            }),
        })
    }

    /// The settings.
    pub fn config(&self) -> &AmsConfig {
        &self.inner.cfg
    }

    /// The current token, exchanged first if there is none yet.
    pub async fn token(&self) -> Result<String, AmsError> {
        Ok(self.current_token().await?.0)
    }

    async fn current_token(&self) -> Result<(String, u64), AmsError> {
        let mut st = self.inner.token.lock().await;
        if let Some(t) = &st.current {
            return Ok((t.clone(), st.generation));
        }
        let t = self.exchange().await?;
        st.current = Some(t.clone());
        st.generation += 1;
        Ok((t, st.generation))
    }

    /// After a 401 with the token of `generation`: a new token, exchanged by whoever comes
    /// first; `None` when the token is the configured one (nothing to renew).
    async fn renew(&self, generation: u64) -> Result<Option<String>, AmsError> {
        if self.inner.source == TokenSource::Configured {
            return Ok(None);
        }
        let mut st = self.inner.token.lock().await;
        if st.generation == generation {
            tracing::info!(
                host = %self.inner.cfg.host,
                "AMS refused the exchanged token (401); exchanging the host certificate again"
            );
            let t = self.exchange().await?;
            st.current = Some(t);
            st.generation += 1;
        }
        Ok(st.current.clone())
    }

    /// Exchanges the client certificate for a token at the authentication service.
    pub async fn exchange(&self) -> Result<String, AmsError> {
        let cfg = &self.inner.cfg;
        let target = authority(&cfg.host, cfg.authn_port);
        let https = connector(cfg, true)?;
        // A client of its own: the certificate is presented here only, and the exchange is
        // rare enough that its connection need not be kept.
        let http: Client<Https, Full<Bytes>> = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(0)
            .build(https);
        let uri = format!("https://{target}{}", wire::authx509_path(&cfg.host));
        let req = Request::get(&uri)
            .header("user-agent", concat!("ssm/", env!("CARGO_PKG_VERSION")))
            .body(Full::new(Bytes::new()))
            .map_err(|e| AmsError::Setup(format!("request to {uri}: {e}")))?;
        let call = "the token exchange".to_string();
        let (status, body) = self
            .send(&http, req, cfg.request_timeout, &call, &target)
            .await?;
        if status == StatusCode::OK {
            return match serde_json::from_slice::<TokenAnswer>(&body) {
                Ok(t) if !t.token.is_empty() => Ok(t.token),
                _ => Err(AmsError::BadAnswer {
                    host: target,
                    call,
                    reason: format!("no token in {:?}", error_message(&body)),
                }),
            };
        }
        let message = serde_json::from_slice::<wire::AuthnErrorAnswer>(&body)
            .map(|e| e.error.message)
            .unwrap_or_else(|_| error_message(&body));
        let dn = cfg
            .tls
            .cert
            .as_ref()
            .and_then(|c| crate::crypto::load_cert(c).ok())
            .map(|c| format!(" (DN {})", crate::crypto::subject_dn(&c)))
            .unwrap_or_default();
        let hint = match (status.as_u16(), message.as_str()) {
            (404, m) if m.starts_with("Binding") => {
                "register the host certificate's DN for AMS in GOCDB (it takes a while to reach AMS), or set [messaging] token"
            }
            (404, m) if m.starts_with("Host") => {
                "this host is not an AMS host of the authentication service: check [broker] host"
            }
            (400, _) => "no client certificate was presented: check [certificates] certificate and key",
            (403, _) => "the certificate was refused (expired, revoked, not yet valid or of an untrusted CA): renew it",
            _ => "try again later, or set [messaging] token",
        };
        Err(AmsError::Authn {
            target,
            dn,
            status: status.as_u16(),
            message,
            hint,
        })
    }

    /// Sends a request with a deadline; returns the status and the (bounded) body.
    async fn send(
        &self,
        http: &Client<Https, Full<Bytes>>,
        req: Request<Full<Bytes>>,
        timeout: Duration,
        call: &str,
        target: &str,
    ) -> Result<(StatusCode, Bytes), AmsError> {
        let max = self.inner.cfg.max_answer_bytes;
        let work = async {
            let resp = http.request(req).await.map_err(|e| AmsError::Connect {
                target: target.to_string(),
                reason: with_tls_hint(chain(&e)),
            })?;
            let status = resp.status();
            let body = Limited::new(resp.into_body(), max)
                .collect()
                .await
                .map_err(|e| AmsError::Connect {
                    target: target.to_string(),
                    reason: format!("reading the answer to {call}: {e}"),
                })?
                .to_bytes();
            Ok((status, body))
        };
        match tokio::time::timeout(timeout, work).await {
            Ok(r) => r,
            Err(_) => Err(AmsError::NoAnswer {
                host: self.inner.cfg.host.clone(),
                call: call.to_string(),
                after: timeout,
            }),
        }
    }

    /// One API call with the token, renewed once after a 401 when it was exchanged.
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
        timeout: Duration,
        what: &Call<'_>,
    ) -> Result<Bytes, AmsError> {
        let cfg = &self.inner.cfg;
        let target = authority(&cfg.host, cfg.port);
        let body = Bytes::from(body.unwrap_or_default());
        let (mut token, generation) = self.current_token().await?;
        let mut renewed = false;
        loop {
            let mut uri = format!("https://{target}{path}");
            if cfg.key_in_url {
                uri.push_str("?key=");
                uri.push_str(&encode_query(&token));
            }
            let mut req = Request::builder()
                .method(method.clone())
                .uri(&uri)
                .header("content-type", "application/json")
                .header("accept", "application/json")
                .header("user-agent", concat!("ssm/", env!("CARGO_PKG_VERSION")));
            if !cfg.key_in_url {
                req = req.header("x-api-key", &token);
            }
            let req = req
                .body(Full::new(body.clone()))
                .map_err(|e| AmsError::Setup(format!("request to {path}: {e}")))?;
            let (status, answer) = self
                .send(&self.inner.http, req, timeout, &what.describe(), &target)
                .await?;
            if status == StatusCode::OK {
                return Ok(answer);
            }
            if status == StatusCode::UNAUTHORIZED && !renewed {
                if let Some(t) = self.renew(generation).await? {
                    token = t;
                    renewed = true;
                    continue;
                }
            }
            return Err(self.error_for(status, &answer, what));
        }
    }

    fn error_for(&self, status: StatusCode, body: &[u8], what: &Call<'_>) -> AmsError {
        let cfg = &self.inner.cfg;
        let host = cfg.host.clone();
        let message = error_message(body);
        let call = what.describe();
        match status.as_u16() {
            401 => AmsError::Unauthorized {
                host,
                token: self.inner.source,
                call,
                message,
            },
            403 => AmsError::Forbidden {
                host,
                call,
                message,
            },
            404 => {
                let (what, hint) = if message.starts_with("project") {
                    (
                        format!("project {}", cfg.project),
                        "check [messaging] ams_project",
                    )
                } else if message.starts_with("Topic") {
                    (
                        format!("topic {} in project {}", topic_of(what), cfg.project),
                        "check [messaging] destination (the topic) and ams_project",
                    )
                } else if message.starts_with("Subscription") {
                    (
                        format!(
                            "subscription {} in project {}",
                            what.subscription().unwrap_or(""),
                            cfg.project
                        ),
                        "check [messaging] destination (the subscription) and ams_project",
                    )
                } else {
                    (
                        format!("the API path for {call}"),
                        "check [broker] host: is it an AMS host?",
                    )
                };
                AmsError::NotFound {
                    host,
                    what,
                    message,
                    hint,
                }
            }
            413 => AmsError::TooLarge {
                host,
                call,
                message,
            },
            408 => match what {
                Call::Ack(s) => AmsError::AckDeadlineExceeded {
                    host,
                    subscription: s.to_string(),
                    message,
                },
                _ => AmsError::Timeout {
                    host,
                    call,
                    status: 408,
                    message,
                },
            },
            504 => AmsError::Timeout {
                host,
                call,
                status: 504,
                message,
            },
            500 if matches!(what, Call::Ack(_))
                && (message == "no ack pending" || message == "wrong ack") =>
            {
                AmsError::AckRefused {
                    host,
                    subscription: what.subscription().unwrap_or("").to_string(),
                    message,
                }
            }
            s if s >= 500 => AmsError::Server {
                host,
                call,
                status: s,
                message,
            },
            s => AmsError::Refused {
                host,
                call,
                status: s,
                message,
            },
        }
    }

    fn bad_answer(&self, what: &Call<'_>, reason: impl Into<String>) -> AmsError {
        AmsError::BadAnswer {
            host: self.inner.cfg.host.clone(),
            call: what.describe(),
            reason: reason.into(),
        }
    }

    /// Publishes messages (attributes, body) to `topic` in one request; returns their ids
    /// (offsets), one per message, in order.
    pub async fn publish(
        &self,
        topic: &str,
        messages: &[(Attributes, Bytes)],
    ) -> Result<Vec<String>, AmsError> {
        let what = Call::Publish(topic);
        let b64 = base64::engine::general_purpose::STANDARD;
        let req = PublishRequest {
            messages: messages
                .iter()
                .map(|(attributes, body)| Message {
                    attributes: attributes.clone(),
                    data: b64.encode(body),
                    ..Message::default()
                })
                .collect(),
        };
        let body = serde_json::to_vec(&req).map_err(|e| self.bad_answer(&what, e.to_string()))?;
        let path = wire::topic_path(&self.inner.cfg.project, topic, "publish");
        let answer = self
            .call(
                Method::POST,
                &path,
                Some(body),
                self.inner.cfg.request_timeout,
                &what,
            )
            .await?;
        let parsed: PublishAnswer = serde_json::from_slice(&answer)
            .map_err(|e| self.bad_answer(&what, format!("not a publish answer: {e}")))?;
        if parsed.message_ids.len() != messages.len() {
            return Err(self.bad_answer(
                &what,
                format!(
                    "{} message ids for {} messages",
                    parsed.message_ids.len(),
                    messages.len()
                ),
            ));
        }
        Ok(parsed.message_ids)
    }

    /// Pulls up to `max` messages from `subscription`. With `return_immediately` false the
    /// real server holds the request for up to 300 s whenever fewer than `max` are waiting:
    /// pull batches with it true and back off when the answer is empty.
    pub async fn pull(
        &self,
        subscription: &str,
        max: u32,
        return_immediately: bool,
    ) -> Result<Vec<Pulled>, AmsError> {
        let what = Call::Pull(subscription);
        let body = serde_json::to_vec(&PullRequest::new(max.max(1), return_immediately))
            .map_err(|e| self.bad_answer(&what, e.to_string()))?;
        let path = wire::subscription_path(&self.inner.cfg.project, subscription, "pull");
        let mut timeout = self.inner.cfg.request_timeout;
        if !return_immediately {
            timeout += SERVER_PULL_WAIT;
        }
        let answer = self
            .call(Method::POST, &path, Some(body), timeout, &what)
            .await?;
        let parsed: PullAnswer = serde_json::from_slice(&answer)
            .map_err(|e| self.bad_answer(&what, format!("not a pull answer: {e}")))?;
        let b64 = base64::engine::general_purpose::STANDARD;
        Ok(parsed
            .received_messages
            .into_iter()
            .map(|r| Pulled {
                ack_id: r.ack_id,
                message_id: r.message.message_id,
                attributes: r.message.attributes,
                body: b64
                    .decode(r.message.data.as_bytes())
                    .map(Bytes::from)
                    .map_err(|e| format!("the message's data is not base64: {e}")),
                publish_time: r.message.publish_time,
            })
            .collect())
    }

    /// Acknowledges pulled messages (cumulatively: the service keeps the highest).
    pub async fn acknowledge(
        &self,
        subscription: &str,
        ack_ids: &[String],
    ) -> Result<(), AmsError> {
        let body = AckRequest {
            ack_ids: Some(ack_ids.to_vec()),
        };
        self.subscription_post(Call::Ack(subscription), "acknowledge", &body)
            .await
    }

    /// Sets the subscription's ack deadline (0–600 s). The service checks an ack against the
    /// deadline in force when the ack arrives, so this extends the pending pull's too.
    pub async fn modify_ack_deadline(
        &self,
        subscription: &str,
        seconds: u32,
    ) -> Result<(), AmsError> {
        let body = ModifyAckDeadlineRequest {
            ack_deadline_seconds: i64::from(seconds),
        };
        self.subscription_post(Call::ModAck(subscription), "modifyAckDeadline", &body)
            .await
    }

    /// A `POST …/subscriptions/{s}:{action}` whose answer carries nothing the SSM reads.
    async fn subscription_post(
        &self,
        what: Call<'_>,
        action: &str,
        body: &impl serde::Serialize,
    ) -> Result<(), AmsError> {
        let body = serde_json::to_vec(body).map_err(|e| self.bad_answer(&what, e.to_string()))?;
        let sub = what.subscription().unwrap_or("");
        let path = wire::subscription_path(&self.inner.cfg.project, sub, action);
        self.call(
            Method::POST,
            &path,
            Some(body),
            self.inner.cfg.request_timeout,
            &what,
        )
        .await?;
        Ok(())
    }

    /// A `GET` of `path` whose answer is the JSON of `T`.
    async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        what: Call<'_>,
        kind: &str,
    ) -> Result<T, AmsError> {
        let answer = self
            .call(
                Method::GET,
                path,
                None,
                self.inner.cfg.request_timeout,
                &what,
            )
            .await?;
        serde_json::from_slice(&answer)
            .map_err(|e| self.bad_answer(&what, format!("not {kind}: {e}")))
    }

    /// The subscription's description: its topic and its ack deadline.
    pub async fn subscription(&self, subscription: &str) -> Result<SubscriptionInfo, AmsError> {
        let path = wire::subscription_info_path(&self.inner.cfg.project, subscription);
        self.get_json(&path, Call::Subscription(subscription), "a subscription")
            .await
    }

    /// The topic's description (it exists, and the token may see it).
    pub async fn topic(&self, topic: &str) -> Result<TopicInfo, AmsError> {
        let path = wire::topic_info_path(&self.inner.cfg.project, topic);
        self.get_json(&path, Call::Topic(topic), "a topic").await
    }

    /// The subscription's offsets (min, max and current).
    pub async fn offsets(&self, subscription: &str) -> Result<Offsets, AmsError> {
        let path = wire::subscription_path(&self.inner.cfg.project, subscription, "offsets");
        self.get_json(&path, Call::Offsets(subscription), "an offsets answer")
            .await
    }
}

fn topic_of<'a>(what: &Call<'a>) -> &'a str {
    match what {
        Call::Publish(t) | Call::Topic(t) => t,
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delays_grow_with_jitter_and_a_cap() {
        let p = RetryPolicy {
            attempts: 10,
            first_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(1000),
        };
        for _ in 0..50 {
            let d0 = p.delay(0);
            assert!(d0 >= Duration::from_millis(50) && d0 <= Duration::from_millis(100));
            let d3 = p.delay(3);
            assert!(d3 >= Duration::from_millis(400) && d3 <= Duration::from_millis(800));
            let d9 = p.delay(30);
            assert!(d9 >= Duration::from_millis(500) && d9 <= Duration::from_millis(1000));
        }
    }

    #[test]
    fn retryable_errors() {
        let host = String::from("h");
        let server = AmsError::Server {
            host: host.clone(),
            call: "c".into(),
            status: 503,
            message: "<html>".into(),
        };
        assert!(server.is_retryable());
        let late = AmsError::AckDeadlineExceeded {
            host: host.clone(),
            subscription: "s".into(),
            message: "ack timeout".into(),
        };
        assert!(!late.is_retryable());
        let nf = AmsError::NotFound {
            host,
            what: "topic t in project p".into(),
            message: "Topic doesn't exist".into(),
            hint: "check [messaging] destination (the topic) and ams_project",
        };
        assert!(!nf.is_retryable());
        assert!(nf.to_string().contains("check [messaging] destination"));
        assert_eq!(encode_query("a b+/"), "a%20b%2B%2F");
        assert_eq!(authority("::1", 443), "[::1]:443");
        let mut cfg = AmsConfig::new("h", "p");
        cfg.token = Some("sekrit".into());
        assert!(!format!("{cfg:?}").contains("sekrit"));
        assert_eq!(
            error_message(b"<html>\n502 Bad Gateway</html>"),
            "<html>\n502 Bad Gateway</html>".replace('\n', "\\n")
        );
    }

    #[tokio::test]
    async fn with_retries_stops_at_a_final_error_or_after_the_attempts() {
        let p = RetryPolicy {
            attempts: 3,
            first_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(2),
        };
        let mut n = 0;
        let r: Result<(), _> = with_retries(&p, || {
            n += 1;
            async {
                Err(AmsError::Connect {
                    target: "x:1".into(),
                    reason: "refused".into(),
                })
            }
        })
        .await;
        assert!(r.is_err());
        assert_eq!(n, 3);
        let mut n = 0;
        let r: Result<(), _> = with_retries(&p, || {
            n += 1;
            async { Err(AmsError::Setup("x".into())) }
        })
        .await;
        assert!(r.is_err());
        assert_eq!(n, 1);
    }
}
