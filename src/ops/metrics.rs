//! A Prometheus text-format endpoint (`--metrics ADDR`): a tiny HTTP/1.1 responder for
//! `GET /metrics` on tokio, and the metric sets of the receiver and the sender.
//!
//! Guarantees:
//! - Each scrape renders fresh values (counters read atomically, queues listed on disk); a
//!   queue that cannot be read is left out of that scrape and counted in
//!   `ssm_scrape_errors_total`, it never fails the daemon.
//! - The responder answers one request per connection (`Connection: close`), reads at most
//!   8 KiB of request head and gives a slow client 5 s: a scraper cannot tie up the daemon.
//! - Only `GET`/`HEAD` of `/metrics` (or `/`) get 200; anything else gets 404 or 405.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use openssl::asn1::Asn1Time;
use openssl::x509::X509Ref;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use crate::queue::depth;
use crate::queue::PathType;
use crate::receiver::{HistogramSnapshot, RejectReason, Stats};
use crate::sender::SenderStats;

/// Builds a Prometheus text exposition (format 0.0.4).
#[derive(Debug, Default)]
pub struct Exposition {
    text: String,
}

impl Exposition {
    /// A metric with its `# HELP` and `# TYPE` lines and unlabelled value.
    pub fn metric(&mut self, name: &str, kind: &str, help: &str, value: f64) {
        self.header(name, kind, help);
        self.sample(name, &[], value);
    }

    /// The `# HELP` and `# TYPE` lines of a metric.
    pub fn header(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.text, "# HELP {name} {help}");
        let _ = writeln!(self.text, "# TYPE {name} {kind}");
    }

    /// One sample line with labels.
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.text.push_str(name);
        if !labels.is_empty() {
            self.text.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.text.push(',');
                }
                let v = v
                    .replace('\\', "\\\\")
                    .replace('"', "\\\"")
                    .replace('\n', "\\n");
                let _ = write!(self.text, "{k}=\"{v}\"");
            }
            self.text.push('}');
        }
        let _ = writeln!(self.text, " {value}");
    }

    /// A histogram (`_bucket{le=…}` cumulative, `_sum`, `_count`), in seconds.
    pub fn histogram(&mut self, name: &str, help: &str, h: &HistogramSnapshot) {
        self.header(name, "histogram", help);
        let bucket = format!("{name}_bucket");
        for (le, count) in &h.buckets {
            let le = if le.is_infinite() {
                "+Inf".to_string()
            } else {
                le.to_string()
            };
            self.sample(&bucket, &[("le", &le)], *count as f64);
        }
        self.sample(&format!("{name}_sum"), &[], h.sum_seconds);
        self.sample(&format!("{name}_count"), &[], h.count as f64);
    }

    /// The text.
    pub fn finish(self) -> String {
        self.text
    }
}

/// Seconds since the Epoch of a certificate's `notAfter`.
pub fn not_after_epoch(cert: &X509Ref) -> Option<i64> {
    let epoch = Asn1Time::from_unix(0).ok()?;
    let diff = epoch.diff(cert.not_after()).ok()?;
    Some(i64::from(diff.days) * 86_400 + i64::from(diff.secs))
}

/// What a scrape of a running daemon shows.
pub trait Source: Send + Sync + 'static {
    /// Renders every metric.
    fn render(&self) -> String;
}

/// Counters and queues of `ssm receive`.
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

fn common(e: &mut Exposition, role: &str, cert_not_after: Option<i64>) {
    e.header(
        "ssm_build_info",
        "gauge",
        "Version and role of this ssm process.",
    );
    e.sample(
        "ssm_build_info",
        &[("version", env!("CARGO_PKG_VERSION")), ("role", role)],
        1.0,
    );
    if let Some(t) = cert_not_after {
        e.metric(
            "ssm_certificate_not_after_seconds",
            "gauge",
            "Expiry time (notAfter) of this host's certificate, seconds since the Epoch.",
            t as f64,
        );
    }
}

fn queue_metrics(
    e: &mut Exposition,
    depths: Vec<Result<depth::Depth, depth::DepthError>>,
    errors: &AtomicU64,
) {
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
    e.header(
        "ssm_queue_messages",
        "gauge",
        "Messages waiting in a queue (locked ones included).",
    );
    for d in &ok {
        e.sample("ssm_queue_messages", &[("queue", d.name)], d.count as f64);
    }
    e.header(
        "ssm_queue_oldest_message_age_seconds",
        "gauge",
        "Age of the oldest message in a queue (0 when empty).",
    );
    for d in &ok {
        let age = d.oldest_age(now).map_or(0.0, |a| a.as_secs_f64());
        e.sample(
            "ssm_queue_oldest_message_age_seconds",
            &[("queue", d.name)],
            age,
        );
    }
    e.metric(
        "ssm_scrape_errors_total",
        "counter",
        "Scrapes that could not read a queue.",
        errors.load(Ordering::Relaxed) as f64,
    );
}

impl Source for ReceiverMetrics {
    fn render(&self) -> String {
        let mut e = Exposition::default();
        common(&mut e, "receiver", self.cert_not_after);
        let s = &self.stats;
        let counters: [(&str, &str, &AtomicU64); 8] = [
            (
                "ssm_received_total",
                "msg messages taken off the broker.",
                &s.received,
            ),
            (
                "ssm_stored_total",
                "Messages stored in the incoming queue and acked.",
                &s.stored,
            ),
            (
                "ssm_duplicates_total",
                "Resent messages acked again without storing.",
                &s.duplicates,
            ),
            (
                "ssm_store_failures_total",
                "Messages not stored because storage failed (not acked).",
                &s.store_failures,
            ),
            (
                "ssm_trust_unavailable_total",
                "Messages not acked because our own CRLs could not judge the signer (expired or not yet valid CRL).",
                &s.trust_unavailable,
            ),
            (
                "ssm_certreqs_total",
                "certreq messages answered.",
                &s.certreqs,
            ),
            (
                "ssm_reconnects_total",
                "Reconnections to the broker.",
                &s.reconnects,
            ),
            (
                "ssm_oversized_frames_total",
                "Frames from the broker above the frame limit, skipped (connection kept).",
                &s.oversized,
            ),
        ];
        for (name, help, counter) in counters {
            e.metric(name, "counter", help, Stats::get(counter) as f64);
        }
        // Labelled only (no unlabelled total beside them), so that sum() is the total.
        e.header(
            "ssm_rejected_total",
            "counter",
            "Messages answered REJECTED (kept in the reject queue), by reason.",
        );
        for reason in RejectReason::ALL {
            e.sample(
                "ssm_rejected_total",
                &[("reason", reason.label())],
                s.rejected_for(reason) as f64,
            );
        }
        e.histogram(
            "ssm_open_duration_seconds",
            "Time to decrypt and verify a message.",
            &s.open_latency.snapshot(),
        );
        e.histogram(
            "ssm_store_duration_seconds",
            "Time from a verified message to its durable store outcome.",
            &s.store_latency.snapshot(),
        );
        let depths = match depth::store(&self.store) {
            Ok([a, b]) => vec![Ok(a), Ok(b)],
            Err(err) => vec![Err(err)],
        };
        queue_metrics(&mut e, depths, &self.scrape_errors);
        e.finish()
    }
}

impl Source for SenderMetrics {
    fn render(&self) -> String {
        let mut e = Exposition::default();
        common(&mut e, "sender", self.cert_not_after);
        let s = &self.stats;
        let counters: [(&str, &str, &AtomicU64); 4] = [
            (
                "ssm_sent_total",
                "msg frames sent, resends included.",
                &s.sent,
            ),
            (
                "ssm_acked_total",
                "Messages acked by the receiver and removed from the queue.",
                &s.acked,
            ),
            (
                "ssm_sent_rejected_total",
                "Messages the receiver rejected (moved to the local reject queue).",
                &s.rejected,
            ),
            (
                "ssm_retried_total",
                "Resends of a message already sent once.",
                &s.retried,
            ),
        ];
        for (name, help, counter) in counters {
            e.metric(name, "counter", help, SenderStats::get(counter) as f64);
        }
        let depths = vec![
            depth::outgoing(&self.outgoing, self.path_type),
            depth::dirq("reject", &self.reject),
        ];
        queue_metrics(&mut e, depths, &self.scrape_errors);
        e.finish()
    }
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

/// Serves scrapes on `listener` until `shutdown` is cancelled.
pub fn spawn(listener: TcpListener, source: Arc<dyn Source>, shutdown: CancellationToken) {
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => {
                        let source = source.clone();
                        tokio::spawn(async move {
                            let r = tokio::time::timeout(Duration::from_secs(5), answer(stream, &*source)).await;
                            if let Ok(Err(err)) = r {
                                tracing::debug!(%err, "metrics request");
                            }
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

/// Reads one request head and writes one response.
async fn answer(mut stream: TcpStream, source: &dyn Source) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && !head.windows(2).any(|w| w == b"\n\n") {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
        if head.len() > 8192 {
            return respond(
                &mut stream,
                "431 Request Header Fields Too Large",
                "",
                false,
            )
            .await;
        }
    }
    let line = head.split(|b| *b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("");
    let target = parts.next().unwrap_or("");
    let path = target.split('?').next().unwrap_or("");
    match (method, path) {
        ("GET" | "HEAD", "/metrics" | "/") => {
            let body = source.render();
            respond(&mut stream, "200 OK", &body, method == "HEAD").await
        }
        ("GET" | "HEAD", _) => {
            respond(
                &mut stream,
                "404 Not Found",
                "not found; try /metrics\n",
                false,
            )
            .await
        }
        _ => respond(&mut stream, "405 Method Not Allowed", "only GET\n", false).await,
    }
}

async fn respond(
    stream: &mut TcpStream,
    status: &str,
    body: &str,
    head_only: bool,
) -> std::io::Result<()> {
    let header = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(header.as_bytes()).await?;
    if !head_only {
        stream.write_all(body.as_bytes()).await?;
    }
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed;
    impl Source for Fixed {
        fn render(&self) -> String {
            let mut e = Exposition::default();
            e.metric("x_total", "counter", "X.", 3.0);
            e.header("q", "gauge", "Q.");
            e.sample("q", &[("queue", "a\"b")], 1.5);
            e.finish()
        }
    }

    async fn get(addr: std::net::SocketAddr, request: &str) -> String {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(request.as_bytes()).await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn serves_metrics_and_refuses_the_rest() {
        let listener = bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = CancellationToken::new();
        spawn(listener, Arc::new(Fixed), stop.clone());
        let ok = get(addr, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
        assert!(
            ok.contains("\r\n\r\n# HELP x_total X.\n# TYPE x_total counter\nx_total 3\n"),
            "{ok}"
        );
        assert!(ok.contains("q{queue=\"a\\\"b\"} 1.5\n"), "{ok}");
        let missing = get(addr, "GET /other HTTP/1.1\r\n\r\n").await;
        assert!(missing.starts_with("HTTP/1.1 404 "), "{missing}");
        let post = get(addr, "POST /metrics HTTP/1.1\r\n\r\n").await;
        assert!(post.starts_with("HTTP/1.1 405 "), "{post}");
        stop.cancel();
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
        let text = m.render();
        for line in [
            "# TYPE ssm_rejected_total counter\n",
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
            "\nssm_store_duration_seconds_bucket{le=\"1\"} 0\n",
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
        let text = m.render();
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
