//! What a benchmark measured: [`BenchReport`], its text report and its one-line JSON.
//!
//! Guarantees:
//! - The JSON is one flat object of numbers and strings, its keys in a fixed order: the
//!   original keys first (their meaning unchanged), then those added with SSM2 and the RSA
//!   bound, then the drain keys (drain mode only) and `transport` (AMS runs only). Scripts
//!   (`scripts/bench-guard.sh`) and docs read it by key.
//! - Figures are rounded as the text report shows them; derived figures (rates, CPU per
//!   message, ratios) are computed here from the measured ones, never measured twice.

use std::time::Duration;

use super::{version_number, CryptoCosts, Mode, Transport};
use crate::crypto::Cipher;
use crate::protocol::Version;

/// What a benchmark measured.
#[derive(Debug, Clone, PartialEq)]
pub struct BenchReport {
    /// Concurrent senders.
    pub senders: usize,
    /// Messages per sender.
    pub messages: usize,
    /// Bytes per message.
    pub size: usize,
    /// Envelope cipher.
    pub cipher: Cipher,
    /// Which broker carried the messages.
    pub broker: String,
    /// The file system of the queues and the store (e.g. `ext4 (journal)`, `tmpfs`): it bounds
    /// the receiver as much as the crypto does (`ops::filesystem`).
    pub store_fs: String,
    /// Messages acked (all of them, or the run fails).
    pub acked: u64,
    /// Resends (should be 0 on a healthy run).
    pub retried: u64,
    /// From the first send to the last ack.
    pub elapsed: Duration,
    /// Median ack latency, milliseconds.
    pub p50_ms: f64,
    /// 99th percentile ack latency, milliseconds.
    pub p99_ms: f64,
    /// Largest ack latency, milliseconds.
    pub max_ms: f64,
    /// Peak resident memory of the senders' process, KiB.
    pub sender_peak_rss_kb: u64,
    /// Peak resident memory of the receiver process, KiB.
    pub receiver_peak_rss_kb: u64,
    /// Largest resident memory of the receiver sampled in the first half of the run, KiB.
    pub receiver_rss_first_half_kb: u64,
    /// Largest resident memory of the receiver sampled in the second half of the run, KiB.
    pub receiver_rss_second_half_kb: u64,
    /// CPU time (user + system) of the senders' process while sending, milliseconds.
    pub sender_cpu_ms: u64,
    /// CPU time of the receiver process from its subscription to the last ack, milliseconds.
    pub receiver_cpu_ms: u64,
    /// CPU time of this process (the embedded broker) while the senders ran, milliseconds.
    pub broker_cpu_ms: u64,
    /// The protocol the senders spoke.
    pub version: Version,
    /// SSM2 window per sender (1 for v1, which has one message in flight).
    pub window: u32,
    /// What was timed.
    pub mode: Mode,
    /// Drain mode: the receiver's figures while it emptied the filled queue.
    pub drain: Option<DrainReport>,
    /// The cryptographic bound, measured in this run with its own keys: the mean of a
    /// measurement before the run and one after it.
    pub costs: CryptoCosts,
    /// The RSA signature's and decryption's cost as measured before and after the run, ms
    /// (their means are in `costs`).
    pub rsa_measured: [(f64, f64); 2],
    /// What carried the messages.
    pub transport: Transport,
}

/// The receiver emptying a filled queue (`--mode drain`).
#[derive(Debug, Clone, PartialEq)]
pub struct DrainReport {
    /// From starting the receiver process to the last message stored.
    pub elapsed: Duration,
    /// From starting the receiver process to its `READY=1` (included in `elapsed`).
    pub ready: Duration,
    /// Messages already stored when the receiver said `READY=1`.
    pub stored_at_ready: u64,
    /// CPU time of the receiver process up to its `READY=1` (start-up: keys, CA directory,
    /// connection), milliseconds; part of [`BenchReport::receiver_cpu_ms`], not of its CPU per
    /// message.
    pub ready_cpu_ms: u64,
    /// CPU time of this process (the embedded broker) while the receiver drained, milliseconds.
    pub broker_cpu_ms: u64,
}

impl BenchReport {
    /// Acked messages per second.
    pub fn msgs_per_s(&self) -> f64 {
        self.acked as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Acked payload megabytes (10^6 bytes) per second.
    pub fn mb_per_s(&self) -> f64 {
        self.msgs_per_s() * self.size as f64 / 1e6
    }

    /// Drain mode: messages stored per second by the receiver emptying the queue, from its
    /// `READY=1` (start-up, loading keys and CA directory, is not draining) to the last one.
    pub fn drain_msgs_per_s(&self) -> Option<f64> {
        self.drain.as_ref().map(|d| {
            let secs = d.elapsed.saturating_sub(d.ready).as_secs_f64().max(1e-9);
            self.acked.saturating_sub(d.stored_at_ready) as f64 / secs
        })
    }

    /// The senders' CPU per message, milliseconds.
    pub fn sender_cpu_per_msg_ms(&self) -> f64 {
        self.sender_cpu_ms as f64 / self.acked.max(1) as f64
    }

    /// The receiver's CPU per message, milliseconds. In drain mode, per message stored after
    /// its `READY=1`, with the CPU from then: the same window as
    /// [`BenchReport::drain_msgs_per_s`] (start-up is paid once per process, not per message).
    pub fn receiver_cpu_per_msg_ms(&self) -> f64 {
        match &self.drain {
            None => self.receiver_cpu_ms as f64 / self.acked.max(1) as f64,
            Some(d) => {
                let drained = self.acked.saturating_sub(d.stored_at_ready).max(1);
                self.receiver_cpu_ms.saturating_sub(d.ready_cpu_ms) as f64 / drained as f64
            }
        }
    }

    /// The senders' CPU per message as a multiple of one RSA signature with a sender's key
    /// (issue #17's bound for the sending side).
    pub fn sender_rsa_ratio(&self) -> f64 {
        self.sender_cpu_per_msg_ms() / self.costs.rsa_sign_ms.max(1e-9)
    }

    /// The receiver's CPU per message as a multiple of one RSA private-key decryption with the
    /// server's key (the receiving side's bound).
    pub fn receiver_rsa_ratio(&self) -> f64 {
        self.receiver_cpu_per_msg_ms() / self.costs.rsa_decrypt_ms.max(1e-9)
    }

    /// The report as one line of JSON (flat object; numbers and strings only), rounded as the
    /// text report is.
    pub fn to_json(&self) -> String {
        let json = JsonReport {
            senders: self.senders,
            messages: self.messages,
            size: self.size,
            cipher: self.cipher.to_string(),
            broker: &self.broker,
            store_fs: &self.store_fs,
            acked: self.acked,
            retried: self.retried,
            elapsed_s: round(self.elapsed.as_secs_f64(), 3),
            msgs_per_s: round(self.msgs_per_s(), 1),
            mb_per_s: round(self.mb_per_s(), 3),
            p50_ms: round(self.p50_ms, 2),
            p99_ms: round(self.p99_ms, 2),
            max_ms: round(self.max_ms, 2),
            sender_peak_rss_kb: self.sender_peak_rss_kb,
            receiver_peak_rss_kb: self.receiver_peak_rss_kb,
            receiver_rss_first_half_kb: self.receiver_rss_first_half_kb,
            receiver_rss_second_half_kb: self.receiver_rss_second_half_kb,
            sender_cpu_ms: self.sender_cpu_ms,
            receiver_cpu_ms: self.receiver_cpu_ms,
            broker_cpu_ms: self.broker_cpu_ms,
            ssm_version: version_number(self.version),
            window: self.window,
            mode: self.mode.name(),
            sender_cpu_per_msg_ms: round(self.sender_cpu_per_msg_ms(), 4),
            receiver_cpu_per_msg_ms: round(self.receiver_cpu_per_msg_ms(), 4),
            rsa_sign_ms: round(self.costs.rsa_sign_ms, 4),
            rsa_decrypt_ms: round(self.costs.rsa_decrypt_ms, 4),
            rsa_sign_before_ms: round(self.rsa_measured[0].0, 4),
            rsa_sign_after_ms: round(self.rsa_measured[0].1, 4),
            rsa_decrypt_before_ms: round(self.rsa_measured[1].0, 4),
            rsa_decrypt_after_ms: round(self.rsa_measured[1].1, 4),
            aes_ms: round(self.costs.aes_ms, 4),
            md5_ms: round(self.costs.md5_ms, 4),
            zlib_ms: round(self.costs.zlib_ms, 4),
            base64_ms: round(self.costs.base64_ms, 4),
            sender_rsa_ratio: round(self.sender_rsa_ratio(), 2),
            receiver_rsa_ratio: round(self.receiver_rsa_ratio(), 2),
            drain: self
                .drain
                .as_ref()
                .zip(self.drain_msgs_per_s())
                .map(|(d, rate)| JsonDrain {
                    drain_elapsed_s: round(d.elapsed.as_secs_f64(), 3),
                    drain_msgs_per_s: round(rate, 1),
                    drain_ready_s: round(d.ready.as_secs_f64(), 3),
                    drain_broker_cpu_ms: d.broker_cpu_ms,
                    drain_ready_cpu_ms: d.ready_cpu_ms,
                }),
            transport: (self.transport != Transport::Stomp).then_some(self.transport.name()),
        };
        // Numbers and strings only: serializing them cannot fail (a non-finite number would
        // be written `null`).
        serde_json::to_string(&json).unwrap_or_default()
    }
}

impl std::fmt::Display for BenchReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "broker:        {}", self.broker)?;
        writeln!(f, "store on:      {}", self.store_fs)?;
        writeln!(
            f,
            "acked:         {} ({} sender(s) x {} x {} bytes, {}, SSM v{}{}{}; retried {})",
            self.acked,
            self.senders,
            self.messages,
            self.size,
            self.cipher,
            version_number(self.version),
            match self.version {
                Version::V1 => String::new(),
                Version::V2 => format!(", window {}", self.window),
            },
            match self.transport {
                Transport::Stomp => "",
                Transport::Ams => ", over AMS",
            },
            self.retried
        )?;
        let into = match self.mode {
            Mode::Live => "",
            Mode::Drain => match self.transport {
                Transport::Stomp => " (into the broker, no receiver)",
                Transport::Ams => " (into ssm ams-server, no receiver)",
            },
        };
        writeln!(
            f,
            "throughput:    {:.1} messages/s, {:.2} MB/s in {:.2} s{into}",
            self.msgs_per_s(),
            self.mb_per_s(),
            self.elapsed.as_secs_f64()
        )?;
        writeln!(
            f,
            "ack latency:   p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            self.p50_ms, self.p99_ms, self.max_ms
        )?;
        write!(
            f,
            "peak RSS:      senders {:.1} MB, receiver {:.1} MB (receiver first/second half {:.1}/{:.1} MB)",
            self.sender_peak_rss_kb as f64 / 1024.0,
            self.receiver_peak_rss_kb as f64 / 1024.0,
            self.receiver_rss_first_half_kb as f64 / 1024.0,
            self.receiver_rss_second_half_kb as f64 / 1024.0,
        )?;
        if let (Some(d), Some(rate)) = (&self.drain, self.drain_msgs_per_s()) {
            write!(
                f,
                "\ndrain:         {:.1} messages/s from the receiver's READY=1: {} stored in {:.2} s \
                 from its start (ready after {:.3} s, {} stored by then)",
                rate,
                self.acked,
                d.elapsed.as_secs_f64(),
                d.ready.as_secs_f64(),
                d.stored_at_ready,
            )?;
        }
        let per = |ms: u64| ms as f64 / self.acked.max(1) as f64;
        let receiver_when = match self.mode {
            Mode::Live => "",
            Mode::Drain => " (draining)",
        };
        write!(
            f,
            "\nCPU/message:   senders {:.2} ms, receiver {:.2} ms{receiver_when}, broker {:.2} ms",
            per(self.sender_cpu_ms),
            self.receiver_cpu_per_msg_ms(),
            per(self.broker_cpu_ms),
        )?;
        let c = &self.costs;
        write!(
            f,
            "\nbound (CPU):   RSA-2048 sign {:.3} ms (sender key; {:.3} before the run, {:.3} \
             after), decrypt {:.3} ms (server key; {:.3}, {:.3}); \
             per {} bytes: {} {:.3} ms, MD5 {:.3} ms, zlib {:.3} ms, base64 {:.3} ms\
             \nvs RSA:        senders {:.2}x one signature, receiver {:.2}x one decryption",
            c.rsa_sign_ms,
            self.rsa_measured[0].0,
            self.rsa_measured[0].1,
            c.rsa_decrypt_ms,
            self.rsa_measured[1].0,
            self.rsa_measured[1].1,
            self.size,
            self.cipher,
            c.aes_ms,
            c.md5_ms,
            c.zlib_ms,
            c.base64_ms,
            self.sender_rsa_ratio(),
            self.receiver_rsa_ratio(),
        )
    }
}

/// The keys and types of `ssm bench --json`, in their order.
#[derive(serde::Serialize)]
struct JsonReport<'a> {
    senders: usize,
    messages: usize,
    size: usize,
    cipher: String,
    broker: &'a str,
    store_fs: &'a str,
    acked: u64,
    retried: u64,
    elapsed_s: f64,
    msgs_per_s: f64,
    mb_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    sender_peak_rss_kb: u64,
    receiver_peak_rss_kb: u64,
    receiver_rss_first_half_kb: u64,
    receiver_rss_second_half_kb: u64,
    sender_cpu_ms: u64,
    receiver_cpu_ms: u64,
    broker_cpu_ms: u64,
    // Added with SSM2 and the RSA bound, after the original keys (which keep their meaning).
    ssm_version: u8,
    window: u32,
    mode: &'static str,
    sender_cpu_per_msg_ms: f64,
    receiver_cpu_per_msg_ms: f64,
    rsa_sign_ms: f64,
    rsa_decrypt_ms: f64,
    rsa_sign_before_ms: f64,
    rsa_sign_after_ms: f64,
    rsa_decrypt_before_ms: f64,
    rsa_decrypt_after_ms: f64,
    aes_ms: f64,
    md5_ms: f64,
    zlib_ms: f64,
    base64_ms: f64,
    sender_rsa_ratio: f64,
    receiver_rsa_ratio: f64,
    /// Drain mode only.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    drain: Option<JsonDrain>,
    /// AMS runs only (the STOMP runs' keys are as they were before AMS).
    #[serde(skip_serializing_if = "Option::is_none")]
    transport: Option<&'static str>,
}

/// The drain-mode keys of [`JsonReport`].
#[derive(serde::Serialize)]
struct JsonDrain {
    drain_elapsed_s: f64,
    drain_msgs_per_s: f64,
    drain_ready_s: f64,
    drain_broker_cpu_ms: u64,
    drain_ready_cpu_ms: u64,
}

/// `x` rounded to `places` decimals (what the report's figures mean, not float noise).
fn round(x: f64, places: i32) -> f64 {
    let scale = 10f64.powi(places);
    (x * scale).round() / scale
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_has_the_keys_in_order_and_escapes_strings() {
        let mut report = report(Mode::Live);
        report.senders = 2;
        report.messages = 3;
        report.size = 1024;
        report.broker = "a\"b\\c\n".into();
        report.acked = 6;
        report.elapsed = Duration::from_millis(1500);
        report.p50_ms = 1.234;
        report.max_ms = 3.456;
        (report.sender_peak_rss_kb, report.receiver_peak_rss_kb) = (10, 11);
        report.receiver_rss_first_half_kb = 12;
        report.receiver_rss_second_half_kb = 13;
        (
            report.sender_cpu_ms,
            report.receiver_cpu_ms,
            report.broker_cpu_ms,
        ) = (14, 15, 16);
        let text = report.to_json();
        let original = format!(
            "{{\"senders\":2,\"messages\":3,\"size\":1024,\"cipher\":\"{}\",\
                 \"broker\":\"a\\\"b\\\\c\\n\",\"store_fs\":\"tmpfs\",\"acked\":6,\"retried\":0,\
                 \"elapsed_s\":1.5,\"msgs_per_s\":4.0,\"mb_per_s\":0.004,\"p50_ms\":1.23,\
                 \"p99_ms\":2.0,\"max_ms\":3.46,\"sender_peak_rss_kb\":10,\
                 \"receiver_peak_rss_kb\":11,\"receiver_rss_first_half_kb\":12,\
                 \"receiver_rss_second_half_kb\":13,\"sender_cpu_ms\":14,\
                 \"receiver_cpu_ms\":15,\"broker_cpu_ms\":16,",
            Cipher::Aes128
        );
        // The original keys first, in order; the added ones after them.
        assert!(text.starts_with(&original), "{text}");
        let back: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(back["broker"], "a\"b\\c\n");
    }

    fn report(mode: Mode) -> BenchReport {
        BenchReport {
            senders: 1,
            messages: 100,
            size: 10240,
            cipher: Cipher::Aes128,
            broker: "embedded".into(),
            store_fs: "tmpfs".into(),
            acked: 100,
            retried: 0,
            elapsed: Duration::from_millis(100),
            p50_ms: 1.0,
            p99_ms: 2.0,
            max_ms: 3.0,
            sender_peak_rss_kb: 1,
            receiver_peak_rss_kb: 2,
            receiver_rss_first_half_kb: 3,
            receiver_rss_second_half_kb: 4,
            sender_cpu_ms: 50,
            receiver_cpu_ms: 80,
            broker_cpu_ms: 5,
            version: Version::V2,
            window: 64,
            mode,
            drain: (mode == Mode::Drain).then_some(DrainReport {
                elapsed: Duration::from_millis(300),
                ready: Duration::from_millis(100),
                stored_at_ready: 20,
                ready_cpu_ms: 40,
                broker_cpu_ms: 7,
            }),
            costs: CryptoCosts {
                rsa_sign_ms: 0.25,
                rsa_decrypt_ms: 0.2,
                aes_ms: 0.01,
                md5_ms: 0.02,
                zlib_ms: 0.03,
                base64_ms: 0.004,
            },
            rsa_measured: [(0.2, 0.3), (0.15, 0.25)],
            transport: Transport::Stomp,
        }
    }

    #[test]
    fn json_keeps_its_keys_and_adds_the_bound() {
        let json = report(Mode::Live).to_json();
        for key in [
            "\"senders\":1,",
            "\"msgs_per_s\":1000.0,",
            "\"broker_cpu_ms\":5,",
            "\"ssm_version\":2,",
            "\"window\":64,",
            "\"mode\":\"live\"",
            "\"sender_cpu_per_msg_ms\":0.5,",
            "\"rsa_sign_ms\":0.25,",
            "\"rsa_sign_before_ms\":0.2,\"rsa_sign_after_ms\":0.3,",
            "\"rsa_decrypt_before_ms\":0.15,\"rsa_decrypt_after_ms\":0.25,",
            "\"sender_rsa_ratio\":2.0,",
            "\"receiver_rsa_ratio\":4.0",
        ] {
            assert!(json.contains(key), "{key} in {json}");
        }
        assert!(json.starts_with("{\"senders\":") && json.ends_with('}'));
        assert!(!json.contains("drain_"), "{json}");
        let text = report(Mode::Live).to_string();
        assert!(
            text.contains("senders 2.00x one signature, receiver 4.00x"),
            "{text}"
        );
    }

    #[test]
    fn only_an_ams_run_names_its_transport() {
        let stomp = report(Mode::Drain);
        assert!(
            !stomp.to_json().contains("transport"),
            "{}",
            stomp.to_json()
        );
        assert!(!stomp.to_string().contains("AMS"), "{stomp}");
        let ams = BenchReport {
            transport: Transport::Ams,
            ..report(Mode::Drain)
        };
        let json = ams.to_json();
        // The drain keys stay where they were; the transport comes last.
        assert!(json.contains("\"drain_msgs_per_s\":400.0,"), "{json}");
        // The receiver's CPU per message while draining: (80 - 40) ms over the 80 messages
        // stored after READY=1, as a multiple of the 0.2 ms decryption.
        assert!(json.contains("\"receiver_cpu_per_msg_ms\":0.5,"), "{json}");
        assert!(json.contains("\"receiver_rsa_ratio\":2.5,"), "{json}");
        assert!(json.contains("\"drain_ready_cpu_ms\":40"), "{json}");
        assert!(json.ends_with(",\"transport\":\"ams\"}"), "{json}");
        let text = ams.to_string();
        assert!(text.contains("window 64, over AMS;"), "{text}");
        assert!(
            text.contains("(into ssm ams-server, no receiver)"),
            "{text}"
        );
    }

    #[test]
    fn the_drain_rate_counts_from_ready() {
        let r = report(Mode::Drain);
        // 80 messages stored in the 0.2 s after READY=1.
        let rate = r.drain_msgs_per_s().unwrap();
        assert!((rate - 400.0).abs() < 1e-6, "{rate}");
        let json = r.to_json();
        assert!(json.contains("\"mode\":\"drain\""), "{json}");
        assert!(json.contains("\"drain_msgs_per_s\":400.0,"), "{json}");
        // The receiver's CPU per message while draining: (80 - 40) ms over the 80 messages
        // stored after READY=1, as a multiple of the 0.2 ms decryption.
        assert!(json.contains("\"receiver_cpu_per_msg_ms\":0.5,"), "{json}");
        assert!(json.contains("\"receiver_rsa_ratio\":2.5,"), "{json}");
        assert!(json.contains("\"drain_ready_cpu_ms\":40"), "{json}");
        assert!(json.contains("\"drain_elapsed_s\":0.3,"), "{json}");
        assert!(report(Mode::Live).drain_msgs_per_s().is_none());
    }
}
