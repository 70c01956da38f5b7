//! `ssm ams-server`: an ARGO Messaging Service (AMS) compatible HTTPS server for the demo, the
//! tests and anyone who wants to try the AMS path on one machine. **Not a production service**:
//! one project, everything in memory (lost when it stops), no users API, no push, no metrics.
//!
//! It follows the real service's behaviour as its handler tests and the Python client
//! (argo-ams-library) show it; the rules live in [`state`] (pure, unit-tested), the HTTP and TLS
//! in this module and [`routes`]:
//! - `POST /v1/projects/{p}/topics/{t}:publish`, `POST …/subscriptions/{s}:pull`,
//!   `:acknowledge`, `:modifyAckDeadline`, `GET …/subscriptions/{s}:offsets`, `GET
//!   …/subscriptions/{s}` (its ack deadline in force), `GET …/topics/{t}`, with the real JSON
//!   answers and error objects (shared with the client: [`crate::transport::ams::wire`]).
//! - The token comes from the `x-api-key` header or else the `?key=` URL parameter.
//! - Pull timing as the real server's Kafka consumer: nothing waiting → `[]` at once;
//!   `returnImmediately` not `"false"` → what is waiting (up to `maxMessages`) at once;
//!   `"false"` → collects until `maxMessages` or for [`AmsServerConfig::pull_wait`] (300 s as on
//!   the real server).
//! - An optional second listener serves the certificate-for-token exchange of the
//!   authentication service (`GET /v1/service-types/ams/hosts/{host}:authx509`): the client
//!   certificate must chain to a CA of the hashed `capath` (a revoked one, when `capath` holds
//!   CRLs, gets the real `403 Your certificate has been revoked`), its DN must be in the DN list
//!   when one is given (else `404 Binding was not found`), and the answer is the first token.
//! - Guarantees of the server itself: it never panics on input; each TLS handshake and each
//!   request head must arrive within [`HANDSHAKE_TIMEOUT`]; request bodies are bounded by
//!   [`AmsServerConfig::max_request_bytes`]; connections are kept alive (HTTP/1.1).
//! - For fault tests, [`AmsServerConfig::fault_503_every`] makes every n-th API request get a
//!   load balancer's HTML `503`, as HAProxy in front of the real service answers.

pub mod routes;
pub mod state;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use openssl::ssl::{SslAcceptor, SslFiletype, SslMethod, SslVerifyMode};
use openssl::x509::store::{X509Lookup, X509StoreBuilder};
use openssl::x509::verify::X509VerifyFlags;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_openssl::SslStream;

use crate::crypto::DnList;
pub use state::{Role, State, StateConfig};

/// How long a TLS handshake, and the head of each request, may take.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

/// The authentication-service listener.
#[derive(Debug, Clone)]
pub struct AuthnConfig {
    /// Where it listens (the real one is on port 8443 of the AMS host).
    pub listen: SocketAddr,
    /// The hashed CA directory client certificates must chain to.
    pub capath: PathBuf,
    /// When given, only these DNs (slash form) get a token.
    pub dns: Option<DnList>,
}

/// How to run the server.
#[derive(Debug, Clone)]
pub struct AmsServerConfig {
    /// Where the AMS API listens.
    pub listen: SocketAddr,
    /// The server certificate (PEM, may hold the chain).
    pub tls_cert: PathBuf,
    /// Its private key (PEM).
    pub tls_key: PathBuf,
    /// The optional authentication service.
    pub authn: Option<AuthnConfig>,
    /// Project, tokens, topics, subscriptions, deadline, size limit.
    pub state: StateConfig,
    /// How long a pull with `"returnImmediately":"false"` collects (300 s on the real server).
    pub pull_wait: Duration,
    /// The largest request body taken, in bytes (a larger one gets 413 before it is parsed).
    pub max_request_bytes: usize,
    /// Every this many API requests, answer one with a load balancer's non-JSON `503` instead
    /// (0: never). For tests of the clients' retries.
    pub fault_503_every: u64,
}

impl AmsServerConfig {
    /// A server on `listen` with the real service's timing and a 256 MiB request limit.
    pub fn new(
        listen: SocketAddr,
        tls_cert: PathBuf,
        tls_key: PathBuf,
        state: StateConfig,
    ) -> AmsServerConfig {
        AmsServerConfig {
            listen,
            tls_cert,
            tls_key,
            authn: None,
            state,
            pull_wait: Duration::from_secs(300),
            max_request_bytes: 256 * 1024 * 1024,
            fault_503_every: 0,
        }
    }
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum AmsServerError {
    /// The certificate, key or CA directory could not be used.
    #[error("TLS setup: {what} {path:?}: {reason}")]
    Tls {
        /// Which file.
        what: &'static str,
        /// Its path.
        path: PathBuf,
        /// OpenSSL's reason.
        reason: String,
    },
    /// A listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The configuration cannot work.
    #[error("{0}")]
    Config(String),
}

/// What the handlers share.
pub(crate) struct Shared {
    state: Mutex<State>,
    /// Per topic, its next offset: pulls waiting for more watch it.
    wakers: HashMap<String, watch::Sender<u64>>,
    pull_wait: Duration,
    authn_token: String,
    dns: Option<DnList>,
    /// TLS connections accepted on the API listener (to check that clients keep them alive).
    connections: AtomicU64,
    /// API requests seen, and how often one gets a 503 (0: never).
    requests: AtomicU64,
    fault_503_every: u64,
    /// The `createdOn` of every topic and subscription: the server's start, in seconds.
    created_on: String,
}

impl Shared {
    /// The state; a panic elsewhere while holding the lock cannot leave it half-changed (every
    /// change is a few assignments), so a poisoned lock is taken over.
    pub(crate) fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A running server. Dropping it stops the server like [`AmsServerHandle::shutdown`].
pub struct AmsServerHandle {
    addr: SocketAddr,
    authn_addr: Option<SocketAddr>,
    token: String,
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    tasks: JoinSet<()>,
}

impl AmsServerHandle {
    /// Where the AMS API listens.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Where the authentication service listens, if it runs.
    pub fn authn_addr(&self) -> Option<SocketAddr> {
        self.authn_addr
    }

    /// The token the authentication service hands out (the first configured one).
    pub fn token(&self) -> &str {
        &self.token
    }

    /// How many connections the API listener has accepted so far.
    pub fn connections(&self) -> u64 {
        self.shared.connections.load(Ordering::Relaxed)
    }

    /// A topic's next offset (how many messages it ever took), if it exists.
    pub fn topic_max(&self, topic: &str) -> Option<u64> {
        self.shared.state().topic_max(topic)
    }

    /// Stops listening and closes every connection.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        while self.tasks.join_next().await.is_some() {}
    }
}

impl Drop for AmsServerHandle {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        self.tasks.abort_all();
    }
}

fn tls_err(
    what: &'static str,
    path: &Path,
) -> impl Fn(openssl::error::ErrorStack) -> AmsServerError {
    let path = path.to_path_buf();
    move |e| AmsServerError::Tls {
        what,
        path: path.clone(),
        reason: crate::crypto::openssl_reason(&e),
    }
}

fn acceptor(
    cfg: &AmsServerConfig,
    authn: Option<&AuthnConfig>,
) -> Result<SslAcceptor, AmsServerError> {
    for (what, path) in [("certificate", &cfg.tls_cert), ("key", &cfg.tls_key)] {
        // OpenSSL's own reason for a missing file is "system library".
        std::fs::File::open(path).map_err(|e| AmsServerError::Tls {
            what,
            path: path.clone(),
            reason: e.to_string(),
        })?;
    }
    let setup = tls_err("setting up", Path::new(""));
    let mut b = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls_server()).map_err(&setup)?;
    b.set_certificate_chain_file(&cfg.tls_cert)
        .map_err(tls_err("certificate", &cfg.tls_cert))?;
    b.set_private_key_file(&cfg.tls_key, SslFiletype::PEM)
        .map_err(tls_err("key", &cfg.tls_key))?;
    b.check_private_key().map_err(tls_err(
        "key (does not match the certificate)",
        &cfg.tls_key,
    ))?;
    if let Some(a) = authn {
        let dir = &a.capath;
        let entries = std::fs::read_dir(dir).map_err(|e| AmsServerError::Tls {
            what: "CA directory",
            path: dir.clone(),
            reason: e.to_string(),
        })?;
        // CRLs in the directory (`<hash>.r0`) turn revocation checking on, as the real
        // service checks the CRLs of the certificates it is shown.
        let has_crls = entries.flatten().any(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            name.rsplit_once('.')
                .is_some_and(|(_, ext)| ext.starts_with('r') && ext[1..].parse::<u32>().is_ok())
        });
        let dir_str = dir.to_str().ok_or_else(|| AmsServerError::Tls {
            what: "CA directory",
            path: dir.clone(),
            reason: "not a UTF-8 path".into(),
        })?;
        let mut store = X509StoreBuilder::new().map_err(&setup)?;
        store
            .add_lookup(X509Lookup::hash_dir())
            .map_err(&setup)?
            .add_dir(dir_str, SslFiletype::PEM)
            .map_err(tls_err("CA directory", dir))?;
        if has_crls {
            store
                .set_flags(X509VerifyFlags::CRL_CHECK)
                .map_err(&setup)?;
        }
        b.set_cert_store(store.build());
        // A client certificate is asked for, not required: without one the request gets the
        // real `400 No certificate provided`. A revoked one is let through the handshake so
        // that it gets the real 403 (the real service checks revocation after TLS).
        b.set_verify_callback(SslVerifyMode::PEER, |ok, ctx| {
            ok || ctx.error().as_raw() == openssl_sys::X509_V_ERR_CERT_REVOKED
        });
    }
    Ok(b.build())
}

/// Starts the server on the configured listeners.
pub async fn start(cfg: AmsServerConfig) -> Result<AmsServerHandle, AmsServerError> {
    let mut st = cfg.state.clone();
    if st.tokens.is_empty() {
        return Err(AmsServerError::Config(
            "at least one token is needed (--token)".into(),
        ));
    }
    if !crate::transport::ams::wire::valid_name(&st.project) {
        return Err(AmsServerError::Config(format!(
            "{:?} is not a valid project name (letters, digits, '_' and '-')",
            st.project
        )));
    }
    for name in st
        .topics
        .iter()
        .chain(st.subscriptions.iter().map(|(s, _)| s))
    {
        if !crate::transport::ams::wire::valid_name(name) {
            return Err(AmsServerError::Config(format!(
                "{name:?} is not a valid topic or subscription name (letters, digits, '_' and '-')"
            )));
        }
    }
    st.topics.dedup();
    let state = State::new(&st);
    let wakers = state
        .topic_names()
        .into_iter()
        .map(|t| {
            let max = state.topic_max(&t).unwrap_or(0);
            (t, watch::channel(max).0)
        })
        .collect();
    let token = st
        .tokens
        .iter()
        .find(|(_, r)| *r == Role::Both)
        .or(st.tokens.first())
        .map(|(t, _)| t.clone())
        .unwrap_or_default();
    let shared = Arc::new(Shared {
        state: Mutex::new(state),
        wakers,
        pull_wait: cfg.pull_wait,
        authn_token: token.clone(),
        dns: cfg.authn.as_ref().and_then(|a| a.dns.clone()),
        connections: AtomicU64::new(0),
        created_on: state::publish_time(
            std::time::UNIX_EPOCH
                + Duration::from_secs(
                    std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .unwrap_or_default()
                        .as_secs(),
                ),
        ),
        requests: AtomicU64::new(0),
        fault_503_every: cfg.fault_503_every,
    });
    let (stop, stop_rx) = watch::channel(false);
    let mut tasks = JoinSet::new();

    let api = acceptor(&cfg, None)?;
    let listener =
        TcpListener::bind(cfg.listen)
            .await
            .map_err(|source| AmsServerError::Listen {
                addr: cfg.listen,
                source,
            })?;
    let addr = listener
        .local_addr()
        .map_err(|source| AmsServerError::Listen {
            addr: cfg.listen,
            source,
        })?;
    let router = routes::api(shared.clone(), cfg.max_request_bytes);
    tasks.spawn(serve(
        listener,
        api,
        router,
        Some(shared.clone()),
        stop_rx.clone(),
    ));

    let mut authn_addr = None;
    if let Some(a) = &cfg.authn {
        let acc = acceptor(&cfg, Some(a))?;
        let listener =
            TcpListener::bind(a.listen)
                .await
                .map_err(|source| AmsServerError::Listen {
                    addr: a.listen,
                    source,
                })?;
        authn_addr = Some(
            listener
                .local_addr()
                .map_err(|source| AmsServerError::Listen {
                    addr: a.listen,
                    source,
                })?,
        );
        let router = routes::authn(shared.clone());
        tasks.spawn(serve(listener, acc, router, None, stop_rx.clone()));
    }
    Ok(AmsServerHandle {
        addr,
        authn_addr,
        token,
        shared,
        stop,
        tasks,
    })
}

async fn serve(
    listener: TcpListener,
    acceptor: SslAcceptor,
    router: axum::Router,
    // The API listener counts its connections; the authentication listener (None) passes
    // the client certificate to its handler instead.
    api: Option<Arc<Shared>>,
    mut stop: watch::Receiver<bool>,
) {
    let with_peer = api.is_none();
    let mut conns = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.changed() => break,
        };
        // Reap finished connections so the set does not grow with every one ever served.
        while conns.try_join_next().is_some() {}
        let (tcp, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // EMFILE and the like: wait a little instead of spinning.
                tracing::warn!("ams-server: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        if let Some(shared) = &api {
            shared.connections.fetch_add(1, Ordering::Relaxed);
        }
        let acceptor = acceptor.clone();
        let router = router.clone();
        conns.spawn(async move {
            if let Err(e) = connection(tcp, &acceptor, router, with_peer).await {
                tracing::debug!(%peer, "ams-server: connection ended: {e}");
            }
        });
    }
    conns.abort_all();
    while conns.join_next().await.is_some() {}
}

/// Who is on the other end of an authentication-service connection.
#[derive(Debug, Clone)]
pub(crate) struct PeerCert {
    /// The client certificate's subject DN, slash form, if it sent one.
    pub dn: Option<String>,
    /// Whether it is revoked (let through the handshake for the 403).
    pub revoked: bool,
}

async fn connection(
    tcp: TcpStream,
    acceptor: &SslAcceptor,
    router: axum::Router,
    with_peer: bool,
) -> Result<(), String> {
    let ssl = openssl::ssl::Ssl::new(acceptor.context()).map_err(|e| e.to_string())?;
    let mut tls = SslStream::new(ssl, tcp).map_err(|e| e.to_string())?;
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, std::pin::Pin::new(&mut tls).accept()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(format!("TLS handshake: {e}")),
        Err(_) => return Err("TLS handshake timed out".into()),
    }
    let router = if with_peer {
        let cert = tls.ssl().peer_certificate();
        let peer = PeerCert {
            dn: cert.as_ref().map(|c| crate::crypto::subject_dn(c)),
            revoked: tls.ssl().verify_result().as_raw() == openssl_sys::X509_V_ERR_CERT_REVOKED,
        };
        router.layer(axum::Extension(peer))
    } else {
        router
    };
    let service = TowerToHyperService::new(router);
    hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HANDSHAKE_TIMEOUT)
        .keep_alive(true)
        .serve_connection(TokioIo::new(tls), service)
        .await
        .map_err(|e| e.to_string())
}
