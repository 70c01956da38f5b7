//! The metrics endpoint (`--metrics ADDR`): `GET /metrics` served by axum on hyper, the
//! exposition written by the `prometheus-client` crate, and the metric sets of the receiver
//! and the sender.
//!
//! Guarantees:
//! - Each scrape renders fresh values (counters read atomically, queues listed on disk): the
//!   metric sets are `prometheus-client` [`Collector`]s read at scrape time, not copies. A
//!   queue that cannot be read is left out of that scrape and counted in
//!   `ssm_scrape_errors_total`; it never fails the daemon.
//! - The body is OpenMetrics 1.0 text (`# EOF` last), served as
//!   `application/openmetrics-text; version=1.0.0`, which Prometheus asks for and parses;
//!   the sample lines are those of the Prometheus text format, so scrapers of either read them.
//! - A scraper cannot tie up the daemon: one request per connection (`connection: close`), at
//!   most 8 KiB of request head (431 above), 5 s to send the head (a slowloris is dropped)
//!   and 5 s for the whole exchange, at most 64 connections at once (more are closed unread).
//! - Only `GET`/`HEAD` of `/metrics` (or `/`) get 200; another method there gets 405, any
//!   other path 404.
//! - The endpoint stops accepting when the shutdown token is cancelled; an exchange under
//!   way ends within its 5 s.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use openssl::asn1::Asn1Time;
use openssl::x509::X509Ref;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeLabelValue, EncodeMetric, LabelValueEncoder, NoLabelSet,
};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::queue::depth;
use crate::queue::PathType;
use crate::receiver::{HistogramSnapshot, RejectReason, Stats};
use crate::sender::SenderStats;

/// The content type of the exposition (`prometheus-client` writes OpenMetrics text).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Every metric name starts with this (`ssm_…`), added by the registry.
const PREFIX: &str = "ssm";

/// A label value escaped as the text formats want (`\\`, `\"`, `\n`): `prometheus-client`
/// writes label values as given.
#[derive(Debug, Clone, Copy)]
pub struct Escaped<'a>(pub &'a str);

impl EncodeLabelValue for Escaped<'_> {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> std::fmt::Result {
        for c in self.0.chars() {
            match c {
                '\\' => encoder.write_str("\\\\")?,
                '"' => encoder.write_str("\\\"")?,
                '\n' => encoder.write_str("\\n")?,
                c => encoder.write_char(c)?,
            }
        }
        Ok(())
    }
}

/// An unlabelled counter; `name` without the `_total` that the encoder adds.
pub fn counter(e: &mut DescriptorEncoder, name: &str, help: &str, value: u64) -> std::fmt::Result {
    ConstCounter::new(value).encode(e.encode_descriptor(name, help, None, MetricType::Counter)?)
}

/// An unlabelled gauge.
pub fn gauge(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: impl prometheus_client::encoding::EncodeGaugeValue,
) -> std::fmt::Result {
    ConstGauge::new(value).encode(e.encode_descriptor(name, help, None, MetricType::Gauge)?)
}

/// A histogram (`_sum`, `_count`, cumulative `_bucket{le=…}`), in seconds, from a snapshot.
pub fn histogram(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    h: &HistogramSnapshot,
) -> std::fmt::Result {
    // The encoder takes per-bucket counts and accumulates them itself; it writes `+Inf` for
    // the bound `f64::MAX`, as its own histograms use.
    let mut below = 0;
    let buckets: Vec<(f64, u64)> = h
        .buckets
        .iter()
        .map(|&(le, cumulative)| {
            let n = cumulative.saturating_sub(below);
            below = cumulative;
            (if le.is_infinite() { f64::MAX } else { le }, n)
        })
        .collect();
    e.encode_descriptor(name, help, None, MetricType::Histogram)?
        .encode_histogram::<NoLabelSet>(h.sum_seconds, h.count, &buckets, None)
}

/// Seconds since the Epoch of a certificate's `notAfter`.
pub fn not_after_epoch(cert: &X509Ref) -> Option<i64> {
    let epoch = Asn1Time::from_unix(0).ok()?;
    let diff = epoch.diff(cert.not_after()).ok()?;
    Some(i64::from(diff.days) * 86_400 + i64::from(diff.secs))
}

/// Counters and queues of `ssm receive`.
#[derive(Debug)]
pub struct ReceiverMetrics {
    /// The running receiver's counters.
    pub stats: Arc<Stats>,
    /// The store (parent of `incoming/` and `reject/`).
    pub store: PathBuf,
    /// Our certificate's `notAfter`, seconds since the Epoch.
    pub cert_not_after: Option<i64>,
    /// Scrapes that could not read a queue.
    pub scrape_errors: AtomicU64,
}

/// Counters, queues and certificate of `ssm send --daemon`.
#[derive(Debug)]
pub struct SenderMetrics {
    /// The running sender's counters.
    pub stats: Arc<SenderStats>,
    /// The outgoing queue.
    pub outgoing: PathBuf,
    /// Its layout.
    pub path_type: PathType,
    /// The local reject queue.
    pub reject: PathBuf,
    /// Our certificate's `notAfter`, seconds since the Epoch.
    pub cert_not_after: Option<i64>,
    /// Scrapes that could not read a queue.
    pub scrape_errors: AtomicU64,
}

fn common(e: &mut DescriptorEncoder, role: &str, cert_not_after: Option<i64>) -> std::fmt::Result {
    let mut m = e.encode_descriptor(
        "build_info",
        "Version and role of this ssm process.",
        None,
        MetricType::Gauge,
    )?;
    let labels = [
        ("version", Escaped(env!("CARGO_PKG_VERSION"))),
        ("role", Escaped(role)),
    ];
    ConstGauge::new(1i64).encode(m.encode_family(&labels)?)?;
    if let Some(t) = cert_not_after {
        gauge(
            e,
            "certificate_not_after_seconds",
            "Expiry time (notAfter) of this host's certificate, seconds since the Epoch.",
            t,
        )?;
    }
    Ok(())
}

fn queue_metrics(
    e: &mut DescriptorEncoder,
    depths: Vec<Result<depth::Depth, depth::DepthError>>,
    errors: &AtomicU64,
) -> std::fmt::Result {
    let now = SystemTime::now();
    let mut ok = Vec::new();
    for d in depths {
        match d {
            Ok(d) => ok.push(d),
            Err(err) => {
                tracing::warn!(%err, "metrics: queue not readable");
                errors.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    let mut m = e.encode_descriptor(
        "queue_messages",
        "Messages waiting in a queue (locked ones included).",
        None,
        MetricType::Gauge,
    )?;
    for d in &ok {
        let count = i64::try_from(d.count).unwrap_or(i64::MAX);
        ConstGauge::new(count).encode(m.encode_family(&[("queue", Escaped(d.name))])?)?;
    }
    let mut m = e.encode_descriptor(
        "queue_oldest_message_age_seconds",
        "Age of the oldest message in a queue (0 when empty).",
        None,
        MetricType::Gauge,
    )?;
    for d in &ok {
        let age = d.oldest_age(now).map_or(0.0, |a| a.as_secs_f64());
        ConstGauge::new(age).encode(m.encode_family(&[("queue", Escaped(d.name))])?)?;
    }
    counter(
        e,
        "scrape_errors",
        "Scrapes that could not read a queue.",
        errors.load(Ordering::Relaxed),
    )
}

impl Collector for ReceiverMetrics {
    fn encode(&self, mut e: DescriptorEncoder) -> std::fmt::Result {
        common(&mut e, "receiver", self.cert_not_after)?;
        let s = &self.stats;
        let counters: [(&str, &str, &AtomicU64); 8] = [
            (
                "received",
                "msg messages taken off the broker.",
                &s.received,
            ),
            (
                "stored",
                "Messages stored in the incoming queue and acked.",
                &s.stored,
            ),
            (
                "duplicates",
                "Resent messages acked again without storing.",
                &s.duplicates,
            ),
            (
                "store_failures",
                "Messages not stored because storage failed (not acked).",
                &s.store_failures,
            ),
            (
                "trust_unavailable",
                "Messages not acked because our own CRLs could not judge the signer (expired or not yet valid CRL).",
                &s.trust_unavailable,
            ),
            (
                "certreqs",
                "certreq messages answered.",
                &s.certreqs,
            ),
            (
                "reconnects",
                "Reconnections to the broker.",
                &s.reconnects,
            ),
            (
                "oversized_frames",
                "Frames from the broker above the frame limit, skipped (connection kept).",
                &s.oversized,
            ),
        ];
        for (name, help, value) in counters {
            counter(&mut e, name, help, Stats::get(value))?;
        }
        // Labelled only (no unlabelled total beside them), so that sum() is the total.
        let mut m = e.encode_descriptor(
            "rejected",
            "Messages answered REJECTED (kept in the reject queue), by reason.",
            None,
            MetricType::Counter,
        )?;
        for reason in RejectReason::ALL {
            ConstCounter::new(s.rejected_for(reason))
                .encode(m.encode_family(&[("reason", Escaped(reason.label()))])?)?;
        }
        histogram(
            &mut e,
            "open_duration_seconds",
            "Time to decrypt and verify a message.",
            &s.open_latency.snapshot(),
        )?;
        histogram(
            &mut e,
            "store_duration_seconds",
            "Time from a verified message to its durable store outcome.",
            &s.store_latency.snapshot(),
        )?;
        let depths = match depth::store(&self.store) {
            Ok([a, b]) => vec![Ok(a), Ok(b)],
            Err(err) => vec![Err(err)],
        };
        queue_metrics(&mut e, depths, &self.scrape_errors)
    }
}

impl Collector for SenderMetrics {
    fn encode(&self, mut e: DescriptorEncoder) -> std::fmt::Result {
        common(&mut e, "sender", self.cert_not_after)?;
        let s = &self.stats;
        let counters: [(&str, &str, &AtomicU64); 4] = [
            ("sent", "msg frames sent, resends included.", &s.sent),
            (
                "acked",
                "Messages acked by the receiver and removed from the queue.",
                &s.acked,
            ),
            (
                "sent_rejected",
                "Messages the receiver rejected (moved to the local reject queue).",
                &s.rejected,
            ),
            (
                "retried",
                "Resends of a message already sent once.",
                &s.retried,
            ),
        ];
        for (name, help, value) in counters {
            counter(&mut e, name, help, SenderStats::get(value))?;
        }
        let depths = vec![
            depth::outgoing(&self.outgoing, self.path_type),
            depth::dirq("reject", &self.reject),
        ];
        queue_metrics(&mut e, depths, &self.scrape_errors)
    }
}

/// A registry holding `source` under the `ssm_` prefix.
pub fn registry(source: impl Collector) -> Registry {
    let mut registry = Registry::with_prefix(PREFIX);
    registry.register_collector(Box::new(source));
    registry
}

/// One scrape of `registry`: the exposition text, `# EOF` last.
pub fn render(registry: &Registry) -> Result<String, std::fmt::Error> {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, registry)?;
    Ok(text)
}

/// Why the endpoint could not start.
#[derive(Debug, thiserror::Error)]
#[error("metrics endpoint {addr}: {error}")]
pub struct MetricsError {
    /// The address asked for.
    pub addr: String,
    /// Why.
    pub error: std::io::Error,
}

/// Binds the endpoint (so that a taken port fails the start-up, not a later scrape).
pub async fn bind(addr: &str) -> Result<TcpListener, MetricsError> {
    TcpListener::bind(addr).await.map_err(|error| MetricsError {
        addr: addr.to_string(),
        error,
    })
}

/// How long a client may take and how many may be served at once.
#[derive(Debug, Clone, Copy)]
struct Limits {
    /// To send the request head.
    head: Duration,
    /// For the whole exchange, response included.
    exchange: Duration,
    /// Connections served at once.
    connections: usize,
}

impl Limits {
    const DEFAULT: Limits = Limits {
        head: Duration::from_secs(5),
        exchange: Duration::from_secs(5),
        connections: 64,
    };
}

/// The request head hyper buffers at most (its smallest allowed buffer).
const MAX_HEAD: usize = 8192;

/// Serves scrapes of `source` on `listener` until `shutdown` is cancelled.
pub fn spawn(listener: TcpListener, source: impl Collector, shutdown: CancellationToken) {
    spawn_with(listener, source, shutdown, Limits::DEFAULT);
}

fn spawn_with(
    listener: TcpListener,
    source: impl Collector,
    shutdown: CancellationToken,
    limits: Limits,
) {
    let app = router(Arc::new(registry(source)));
    let slots = Arc::new(Semaphore::new(limits.connections));
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        let Ok(slot) = slots.clone().try_acquire_owned() else {
                            tracing::debug!(%peer, "metrics endpoint: too many connections");
                            continue;
                        };
                        let app = app.clone();
                        tokio::spawn(async move {
                            serve_connection(stream, app, limits).await;
                            drop(slot);
                        });
                    }
                    Err(err) => {
                        tracing::warn!(%err, "metrics endpoint: accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
            }
        }
    });
}

/// The routes: the exposition at `/metrics` and `/`, 404 elsewhere.
fn router(registry: Arc<Registry>) -> Router {
    Router::new()
        .route("/metrics", get(scrape))
        .route("/", get(scrape))
        .fallback(|| async { (StatusCode::NOT_FOUND, "not found; try /metrics\n") })
        .with_state(registry)
}

async fn scrape(
    axum::extract::State(registry): axum::extract::State<Arc<Registry>>,
) -> axum::response::Response {
    match render(&registry) {
        Ok(text) => ([(header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response(),
        Err(err) => {
            tracing::warn!(%err, "metrics: exposition failed");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

/// One HTTP/1.1 exchange on `stream`, within `limits`.
async fn serve_connection(stream: TcpStream, app: Router, limits: Limits) {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.head)
        .max_buf_size(MAX_HEAD)
        .keep_alive(false);
    let conn = http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(app));
    match tokio::time::timeout(limits.exchange, conn).await {
        Ok(Ok(())) => {}
        Ok(Err(err)) => tracing::debug!(%err, "metrics request"),
        Err(_) => tracing::debug!("metrics request: too slow, dropped"),
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[derive(Debug)]
    struct Fixed;
    impl Collector for Fixed {
        fn encode(&self, mut e: DescriptorEncoder) -> std::fmt::Result {
            counter(&mut e, "x", "X.", 3)?;
            let mut m = e.encode_descriptor("q", "Q.", None, MetricType::Gauge)?;
            ConstGauge::new(1.5).encode(m.encode_family(&[("queue", Escaped("a\"b\\\n"))])?)
        }
    }

    async fn get(addr: std::net::SocketAddr, request: &str) -> String {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(request.as_bytes()).await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    /// Like [`get`], but a refused or reset connection reads as what came before it.
    async fn try_get(addr: std::net::SocketAddr, request: &[u8]) -> String {
        let mut out = Vec::new();
        if let Ok(mut s) = TcpStream::connect(addr).await {
            let _ = s.write_all(request).await;
            let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
        }
        String::from_utf8_lossy(&out).into_owned()
    }

    async fn start(limits: Limits) -> (std::net::SocketAddr, CancellationToken) {
        let listener = bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = CancellationToken::new();
        spawn_with(listener, Fixed, stop.clone(), limits);
        (addr, stop)
    }

    #[tokio::test]
    async fn serves_metrics_and_refuses_the_rest() {
        let (addr, stop) = start(Limits::DEFAULT).await;
        let ok = get(addr, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
        let lower = ok.to_ascii_lowercase();
        assert!(
            lower.contains(&format!("\r\ncontent-type: {CONTENT_TYPE}\r\n")),
            "{ok}"
        );
        // One request per connection: the server says so and closes (read_to_string ended).
        assert!(lower.contains("\r\nconnection: close\r\n"), "{ok}");
        assert!(
            ok.contains("\r\n\r\n# HELP ssm_x X.\n# TYPE ssm_x counter\nssm_x_total 3\n"),
            "{ok}"
        );
        assert!(
            ok.contains("\nssm_q{queue=\"a\\\"b\\\\\\n\"} 1.5\n"),
            "{ok}"
        );
        assert!(ok.ends_with("\n# EOF\n"), "{ok}");
        let root = get(addr, "GET /?x=1 HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(root.contains("\nssm_x_total 3\n"), "{root}");
        let head = get(addr, "HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        assert!(head.ends_with("\r\n\r\n"), "a body after HEAD: {head}");
        let missing = get(addr, "GET /other HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(missing.starts_with("HTTP/1.1 404 "), "{missing}");
        let post = get(addr, "POST /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(post.starts_with("HTTP/1.1 405 "), "{post}");
        stop.cancel();
    }

    #[tokio::test]
    async fn a_slow_or_oversized_request_head_is_refused() {
        let limits = Limits {
            head: Duration::from_millis(300),
            exchange: Duration::from_secs(2),
            connections: 64,
        };
        let (addr, stop) = start(limits).await;
        // A slowloris: half a head, then nothing. The server gives up after `head`.
        let started = std::time::Instant::now();
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        let mut out = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
        assert!(read.is_ok(), "the connection was kept open");
        assert!(started.elapsed() < Duration::from_secs(2));
        assert!(!String::from_utf8_lossy(&out).contains("ssm_x_total"));
        // A head above 8 KiB.
        let big = format!(
            "GET /metrics HTTP/1.1\r\nHost: x\r\nX-Pad: {}\r\n\r\n",
            "a".repeat(MAX_HEAD + 100)
        );
        // The server answers 431 and closes; the unread rest of the head may reset the
        // connection before the answer is read, so either is accepted, never a scrape.
        let out = try_get(addr, big.as_bytes()).await;
        assert!(out.is_empty() || out.starts_with("HTTP/1.1 431 "), "{out}");
        // And the endpoint still serves.
        let ok = get(addr, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(ok.contains("\nssm_x_total 3\n"), "{ok}");
        stop.cancel();
    }

    #[tokio::test]
    async fn connections_beyond_the_limit_are_closed_and_shutdown_stops_accepting() {
        let limits = Limits {
            head: Duration::from_secs(2),
            exchange: Duration::from_secs(2),
            connections: 1,
        };
        let (addr, stop) = start(limits).await;
        let mut first = TcpStream::connect(addr).await.unwrap();
        first.write_all(b"GET /metrics HTTP/1.1\r\n").await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        let second = try_get(addr, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert_eq!(second, "", "a second connection was served");
        first.write_all(b"Host: x\r\n\r\n").await.unwrap();
        let mut out = String::new();
        first.read_to_string(&mut out).await.unwrap();
        assert!(out.contains("\nssm_x_total 3\n"), "{out}");
        // Its slot is free again.
        let third = get(addr, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(third.contains("\nssm_x_total 3\n"), "{third}");
        stop.cancel();
        tokio::time::sleep(Duration::from_millis(100)).await;
        let after = TcpStream::connect(addr).await;
        assert!(after.is_err(), "still accepting after shutdown");
    }

    #[tokio::test]
    async fn a_taken_port_fails_to_bind() {
        let first = bind("127.0.0.1:0").await.unwrap();
        let addr = first.local_addr().unwrap().to_string();
        let err = bind(&addr).await.unwrap_err();
        assert!(
            err.to_string()
                .starts_with(&format!("metrics endpoint {addr}: ")),
            "{err}"
        );
    }

    #[test]
    fn receiver_exports_rejections_by_reason_and_latency_histograms() {
        let stats = Arc::new(Stats::default());
        stats.reject(RejectReason::DnNotAllowed);
        stats.reject(RejectReason::Malformed);
        stats.reject(RejectReason::DnNotAllowed);
        stats.open_latency.observe(Duration::from_micros(1500));
        stats.open_latency.observe(Duration::from_millis(30));
        stats.store_latency.observe(Duration::from_secs(2));
        let dir = tempfile::tempdir().unwrap();
        let m = ReceiverMetrics {
            stats,
            store: dir.path().to_path_buf(),
            cert_not_after: None,
            scrape_errors: AtomicU64::new(0),
        };
        let text = render(&registry(m)).unwrap();
        for line in [
            "# TYPE ssm_rejected counter\n",
            "\nssm_rejected_total{reason=\"dn_not_allowed\"} 2\n",
            "\nssm_rejected_total{reason=\"malformed\"} 1\n",
            "\nssm_rejected_total{reason=\"untrusted_signer\"} 0\n",
            "\nssm_rejected_total{reason=\"other\"} 0\n",
            "\nssm_trust_unavailable_total 0\n",
            "# TYPE ssm_open_duration_seconds histogram\n",
            "\nssm_open_duration_seconds_bucket{le=\"0.001\"} 0\n",
            "\nssm_open_duration_seconds_bucket{le=\"0.002\"} 1\n",
            "\nssm_open_duration_seconds_bucket{le=\"0.02\"} 1\n",
            "\nssm_open_duration_seconds_bucket{le=\"0.05\"} 2\n",
            "\nssm_open_duration_seconds_bucket{le=\"+Inf\"} 2\n",
            "\nssm_open_duration_seconds_sum 0.0315\n",
            "\nssm_open_duration_seconds_count 2\n",
            "\nssm_store_duration_seconds_bucket{le=\"1.0\"} 0\n",
            "\nssm_store_duration_seconds_bucket{le=\"+Inf\"} 1\n",
            "\nssm_store_duration_seconds_count 1\n",
        ] {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
        // No unlabelled total beside the labelled series: sum() over reasons is the total.
        assert!(!text.contains("\nssm_rejected_total "), "{text}");
    }

    #[test]
    fn sender_exports_its_live_counters() {
        let stats = Arc::new(SenderStats::default());
        stats.sent.store(5, Ordering::Relaxed);
        stats.acked.store(3, Ordering::Relaxed);
        stats.rejected.store(1, Ordering::Relaxed);
        stats.retried.store(1, Ordering::Relaxed);
        let dir = tempfile::tempdir().unwrap();
        let m = SenderMetrics {
            stats,
            outgoing: dir.path().join("outgoing"),
            path_type: PathType::QueueSimple,
            reject: dir.path().join("reject"),
            cert_not_after: None,
            scrape_errors: AtomicU64::new(0),
        };
        let text = render(&registry(m)).unwrap();
        for line in [
            "\nssm_sent_total 5\n",
            "\nssm_acked_total 3\n",
            "\nssm_sent_rejected_total 1\n",
            "\nssm_retried_total 1\n",
        ] {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
    }

    #[test]
    fn certificate_expiry_in_epoch_seconds() {
        let key =
            openssl::pkey::PKey::from_rsa(openssl::rsa::Rsa::generate(2048).unwrap()).unwrap();
        let mut b = openssl::x509::X509Builder::new().unwrap();
        b.set_pubkey(&key).unwrap();
        b.set_not_before(&Asn1Time::from_unix(1_000_000_000).unwrap())
            .unwrap();
        b.set_not_after(&Asn1Time::from_unix(1_900_000_123).unwrap())
            .unwrap();
        b.sign(&key, openssl::hash::MessageDigest::sha256())
            .unwrap();
        assert_eq!(not_after_epoch(&b.build()), Some(1_900_000_123));
    }
}
