//! `ssm bench`: end-to-end throughput, ack latency and memory of the whole protocol.
//!
//! The run is laid out like production, so that each side's memory can be measured alone:
//! - the broker is the embedded one, in this process (or a real one given by address);
//! - the receiver is a child process, the real `ssm receive` of this executable;
//! - the senders are a second child process (`ssm bench --role senders`), running every sender
//!   concurrently, each with its own certificate, outgoing queue and broker connection.
//!
//! Both children are configured as in production: the receiver with `ssm receive`'s flags, each
//! sender with a `sender.cfg` of its own in the run directory, read by the same loader and built
//! by the same code as `ssm send -c`. The receiver says it is subscribed with a systemd-style
//! `READY=1` on the `NOTIFY_SOCKET` the bench gives it (`ops::notify`); only then do the senders
//! start, as a topic drops what is sent before the subscription.
//!
//! The queues are filled before anything is timed. Throughput is measured by the senders' child
//! from its first send to its last ack; ack latency is, per message, the time from handing the
//! sealed message to the broker to its ack, as each sender records it in its own statistics
//! ([`crate::sender::SenderStats::ack_latency`]; quantiles by nearest rank, to within 1/32).
//! Peak resident memory is each child's `VmHWM`: the senders report their own, the receiver's
//! is read from `/proc` before it is told to stop. The receiver's resident memory is also sampled while the
//! run goes on, so that growth (a leak) shows as a difference between the two halves of the run.
//! Every stored message is checked afterwards: each one exactly once, with its signer.
//!
//! Guarantees:
//! - A report is returned only if every queued message was acked and stored exactly once with
//!   its signer, and both children succeeded; otherwise the run is an error.
//! - The senders start only after the receiver's `READY=1`; a receiver that exits first, or is
//!   not ready within 60 s, fails the run with that reason (no silent wait).
//! - The receiver is always stopped (SIGTERM, then SIGKILL after 20 s), whatever happened.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use tokio::io::AsyncReadExt;
use tokio::net::UnixDatagram;
use tokio::process::{Child, Command};

use crate::crypto::Cipher;
use crate::harness::demo::{self, SenderOptions, Setup};
use crate::ops::filesystem;
use crate::ops::histogram::Histogram;
use crate::protocol::Version;
use crate::sender::Sender;
use crate::stomp::BrokerAddr;

/// What to run.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// Where the PKI, queues and store go.
    pub dir: PathBuf,
    /// Concurrent senders.
    pub senders: usize,
    /// Messages per sender.
    pub messages: usize,
    /// Size of each message, in bytes.
    pub size: usize,
    /// Envelope cipher.
    pub cipher: Cipher,
    /// A real broker; `None` starts the embedded one in this process.
    pub broker: Option<BrokerAddr>,
    /// Broker login, for real brokers.
    pub login: Option<(String, String)>,
    /// The topic.
    pub destination: String,
    /// The `ssm` executable to run the receiver and the senders with.
    pub exe: PathBuf,
    /// The protocol the senders speak (the receiver takes both).
    pub version: Version,
    /// SSM2: messages waiting for their broker receipt at once, per sender.
    pub window: u32,
    /// What is timed: the live round trip, or the receiver draining a filled queue.
    pub mode: Mode,
}

/// What a benchmark times.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Mode {
    /// Receiver and senders run together; throughput from the first send to the last ack.
    #[default]
    Live,
    /// The senders fill the destination (a queue) with no receiver running; then the receiver
    /// starts and the time it takes to store every message is measured. Needs a version that
    /// is confirmed without the receiver (SSM2: the broker's receipt).
    Drain,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Live => "live",
            Mode::Drain => "drain",
        }
    }
}

/// The protocol version as a number (the JSON and the text report).
fn version_number(v: Version) -> u8 {
    match v {
        Version::V1 => 1,
        Version::V2 => 2,
    }
}

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
    /// The cryptographic bound, measured in this run with its own keys.
    pub costs: CryptoCosts,
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

    /// The receiver's CPU per message, milliseconds.
    pub fn receiver_cpu_per_msg_ms(&self) -> f64 {
        self.receiver_cpu_ms as f64 / self.acked.max(1) as f64
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
                }),
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
            "acked:         {} ({} sender(s) x {} x {} bytes, {}, SSM v{}{}; retried {})",
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
            self.retried
        )?;
        let into = match self.mode {
            Mode::Live => "",
            Mode::Drain => " (into the broker, no receiver)",
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
            per(self.receiver_cpu_ms),
            per(self.broker_cpu_ms),
        )?;
        let c = &self.costs;
        write!(
            f,
            "\nbound (CPU):   RSA-2048 sign {:.3} ms (sender key), decrypt {:.3} ms (server key); \
             per {} bytes: {} {:.3} ms, MD5 {:.3} ms, zlib {:.3} ms, base64 {:.3} ms\
             \nvs RSA:        senders {:.2}x one signature, receiver {:.2}x one decryption",
            c.rsa_sign_ms,
            c.rsa_decrypt_ms,
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
    aes_ms: f64,
    md5_ms: f64,
    zlib_ms: f64,
    base64_ms: f64,
    sender_rsa_ratio: f64,
    receiver_rsa_ratio: f64,
    /// Drain mode only.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    drain: Option<JsonDrain>,
}

/// The drain-mode keys of [`JsonReport`].
#[derive(serde::Serialize)]
struct JsonDrain {
    drain_elapsed_s: f64,
    drain_msgs_per_s: f64,
    drain_ready_s: f64,
    drain_broker_cpu_ms: u64,
}

/// `x` rounded to `places` decimals (what the report's figures mean, not float noise).
fn round(x: f64, places: i32) -> f64 {
    let scale = 10f64.powi(places);
    (x * scale).round() / scale
}

/// Parses a size such as `10240`, `10k`, `10KB`, `1M` or `1MB` (k = 1024).
pub fn parse_size(text: &str) -> Result<usize, String> {
    let t = text.trim().to_ascii_lowercase();
    let t = t.strip_suffix('b').unwrap_or(&t);
    let (num, mult) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 1024),
        Some('m') => (&t[..t.len() - 1], 1024 * 1024),
        _ => (t, 1),
    };
    let n: usize = num
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a size (e.g. 10240, 10k, 1M)"))?;
    n.checked_mul(mult)
        .ok_or_else(|| format!("{text:?} is too large"))
}

/// Peak (`VmHWM`) and current (`VmRSS`) resident memory of a live process, KiB.
pub fn proc_memory(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse::<u64>().ok())
    };
    Some((field("VmHWM:")?, field("VmRSS:")?))
}

/// CPU time (user + system) of a live process, milliseconds.
pub fn proc_cpu_ms(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let hz = u64::try_from(hz).ok().filter(|&h| h > 0)?;
    Some(ticks * 1000 / hz)
}

/// CPU time (user + system) of this process so far, milliseconds.
fn self_cpu_ms() -> u64 {
    // SAFETY: getrusage only writes the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return 0;
    }
    let ms = |t: libc::timeval| t.tv_sec as u64 * 1000 + t.tv_usec as u64 / 1000;
    ms(usage.ru_utime) + ms(usage.ru_stime)
}

/// Runs a benchmark and returns its report. Fails if any message was lost, stored twice or
/// not acked, or if a child process failed.
pub async fn run(opts: BenchOptions) -> anyhow::Result<BenchReport> {
    if opts.senders == 0 || opts.messages == 0 {
        bail!("senders and messages must be at least 1");
    }
    if opts.mode == Mode::Drain && opts.version == Version::V1 {
        bail!(
            "the drain mode needs SSM2 (--ssm-version 2): a v1 sender waits for the receiver's ack"
        );
    }
    let setup = Setup::prepare(&opts.dir, opts.senders)?;
    setup.fill_queues(opts.messages, opts.size)?;
    // Measured before anything else runs, so that nothing competes with it for the CPU.
    let costs = {
        let (setup, size, cipher) = (setup.clone(), opts.size, opts.cipher);
        tokio::task::spawn_blocking(move || CryptoCosts::measure(&setup, size, cipher, COST_BUDGET))
            .await
            .context("measuring the cryptographic bound")??
    };

    let mut embedded = None;
    let addr = match &opts.broker {
        Some(addr) => addr.clone(),
        None => {
            let (handle, addr) = demo::start_embedded_broker().await?;
            embedded = Some(handle);
            addr
        }
    };
    let broker_label = match &opts.broker {
        None => "embedded (in-process)".to_string(),
        Some(a) => a.to_string(),
    };

    let queued = (opts.messages * opts.senders) as u64;
    // Drain mode: the destination is filled before the receiver exists.
    let filled = match opts.mode {
        Mode::Live => None,
        Mode::Drain => {
            let parent_start_ms = self_cpu_ms();
            let senders = match run_senders(&opts, &setup, &addr, None).await {
                Ok((senders, _)) => senders,
                Err(e) => {
                    if let Some(h) = embedded {
                        h.shutdown().await;
                    }
                    return Err(e);
                }
            };
            if senders.acked != queued {
                bail!(
                    "{queued} messages queued but {} confirmed by the broker",
                    senders.acked
                );
            }
            // Said now, as the drain may still fail: the senders' figure into the broker alone.
            eprintln!(
                "ssm bench: filled: {} messages in {:.2} s ({:.1} messages/s into the broker), \
                 sender CPU {:.2} ms/message",
                senders.acked,
                senders.elapsed.as_secs_f64(),
                senders.acked as f64 / senders.elapsed.as_secs_f64().max(1e-9),
                senders.cpu_ms as f64 / senders.acked.max(1) as f64,
            );
            Some((senders, self_cpu_ms().saturating_sub(parent_start_ms)))
        }
    };

    // Bound before the receiver starts, and kept until it has exited: it notifies
    // `STOPPING=1` on its way out, and would warn if nobody listened.
    let notify = ReadySocket::bind(&setup.dir)?;
    let spawned_at = Instant::now();
    let mut receiver = spawn_receiver(&opts, &setup, &addr, &notify)?;
    let result = match filled {
        None => drive(&opts, &setup, &addr, &mut receiver, &notify)
            .await
            .map(|(senders, samples, cpu)| (senders, samples, cpu, None)),
        Some((senders, fill_cpu_ms)) => drain(&setup, queued, &mut receiver, &notify, spawned_at)
            .await
            .map(|(samples, drain)| {
                let cpu = CpuMarks {
                    receiver_start_ms: 0,
                    parent_ms: fill_cpu_ms,
                };
                (senders, samples, cpu, Some(drain))
            }),
    };
    // Whatever happened, the receiver goes: stopped politely, killed if it lingers.
    let receiver_peak = receiver.id().and_then(proc_memory).map(|(hwm, _)| hwm);
    let receiver_cpu_end = receiver.id().and_then(proc_cpu_ms).unwrap_or_default();
    stop_child(&mut receiver).await;
    drop(notify);
    if let Some(h) = embedded {
        h.shutdown().await;
    }
    let (senders, samples, cpu, drained) = result?;
    let receiver_peak_rss_kb = receiver_peak
        .or_else(children_max_rss_kb)
        .unwrap_or_default();

    let stored = setup.check_stored(opts.messages, opts.size)?;
    if senders.acked != queued || stored as u64 != queued {
        bail!(
            "{queued} messages queued but {} acked and {stored} stored",
            senders.acked
        );
    }

    let timed = drained.as_ref().map_or(senders.elapsed, |d| d.elapsed);
    let (first, second) = halves(&samples, timed);
    Ok(BenchReport {
        senders: opts.senders,
        messages: opts.messages,
        size: opts.size,
        cipher: opts.cipher,
        broker: broker_label,
        store_fs: filesystem::describe(&opts.dir).to_string(),
        acked: senders.acked,
        retried: senders.retried,
        elapsed: senders.elapsed,
        p50_ms: senders.p50_ms,
        p99_ms: senders.p99_ms,
        max_ms: senders.max_ms,
        sender_peak_rss_kb: senders.peak_rss_kb,
        receiver_peak_rss_kb,
        receiver_rss_first_half_kb: first,
        receiver_rss_second_half_kb: second,
        sender_cpu_ms: senders.cpu_ms,
        receiver_cpu_ms: receiver_cpu_end.saturating_sub(cpu.receiver_start_ms),
        broker_cpu_ms: cpu.parent_ms,
        version: opts.version,
        window: match opts.version {
            Version::V1 => 1,
            Version::V2 => opts.window.max(1),
        },
        mode: opts.mode,
        drain: drained,
        costs,
    })
}

/// CPU time spent measuring each operation of the bound.
const COST_BUDGET: Duration = Duration::from_millis(150);

/// How often the drain mode counts the stored messages.
const DRAIN_POLL: Duration = Duration::from_millis(10);

/// Drain mode: waits until the receiver (just started at `spawned_at`) has stored `queued`
/// messages, sampling its memory; fails if it exits first or makes no progress for 60 s.
async fn drain(
    setup: &Setup,
    queued: u64,
    receiver: &mut Child,
    notify: &ReadySocket,
    spawned_at: Instant,
) -> anyhow::Result<(Samples, DrainReport)> {
    notify.wait_until_ready(receiver, READY_TIMEOUT).await?;
    let ready = spawned_at.elapsed();
    let parent_start_ms = self_cpu_ms();
    let samples: Samples = Arc::default();
    // The receiver created its store before it subscribed; what it stored before it said
    // READY=1 is not counted in the rate.
    let store = crate::queue::MessageStore::open(&setup.store_path)?;
    let at_ready = store.incoming.count()? as u64;
    wait_stored(&store, queued, receiver, &samples, spawned_at).await?;
    Ok((
        samples,
        DrainReport {
            elapsed: spawned_at.elapsed(),
            ready,
            stored_at_ready: at_ready,
            broker_cpu_ms: self_cpu_ms().saturating_sub(parent_start_ms),
        },
    ))
}

/// Waits until the store holds `queued` messages, sampling the receiver's memory (times from
/// `start`); fails if the receiver exits first or stores nothing for [`STALL_TIMEOUT`].
async fn wait_stored(
    store: &crate::queue::MessageStore,
    queued: u64,
    receiver: &mut Child,
    samples: &Samples,
    start: Instant,
) -> anyhow::Result<()> {
    let pid = receiver.id();
    let mut last = (0u64, Instant::now());
    let mut next_sample = Instant::now();
    loop {
        let stored = store.incoming.count()? as u64;
        if stored >= queued {
            return Ok(());
        }
        let now = Instant::now();
        if stored > last.0 {
            last = (stored, now);
        } else if now.duration_since(last.1) > STALL_TIMEOUT {
            bail!(
                "the receiver stored {stored} of {queued} messages and none for {} s",
                STALL_TIMEOUT.as_secs()
            );
        }
        if now >= next_sample {
            if let Some((_, rss)) = pid.and_then(proc_memory) {
                if let Ok(mut s) = samples.lock() {
                    s.push((start.elapsed(), rss));
                }
            }
            next_sample = now + Duration::from_millis(100);
        }
        tokio::select! {
            status = receiver.wait() => {
                let status = status.context("waiting for the receiver")?;
                bail!("the receiver exited with {stored} of {queued} messages stored ({status})");
            }
            () = tokio::time::sleep(DRAIN_POLL) => {}
        }
    }
}

/// How long the drain may go without a message stored before the run fails.
const STALL_TIMEOUT: Duration = Duration::from_secs(60);

/// Largest resident set among the waited-for children, KiB (Linux reports KiB).
fn children_max_rss_kb() -> Option<u64> {
    // SAFETY: getrusage only writes the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) };
    (rc == 0).then_some(usage.ru_maxrss as u64)
}

/// The receiver's resident memory over time: (time since the senders started, VmRSS KiB).
type Samples = Arc<Mutex<Vec<(Duration, u64)>>>;

/// Largest sample in the first and in the second half of `elapsed`.
fn halves(samples: &Samples, elapsed: Duration) -> (u64, u64) {
    let samples = samples.lock().map(|s| s.clone()).unwrap_or_default();
    let mid = elapsed / 2;
    let max = |keep: &dyn Fn(Duration) -> bool| {
        samples
            .iter()
            .filter(|(t, _)| keep(*t))
            .map(|(_, kb)| *kb)
            .max()
            .unwrap_or_default()
    };
    (max(&|t| t <= mid), max(&|t| t > mid))
}

/// Waits for the receiver, runs the senders' child and returns what it measured.
async fn drive(
    opts: &BenchOptions,
    setup: &Setup,
    addr: &BrokerAddr,
    receiver: &mut Child,
    notify: &ReadySocket,
) -> anyhow::Result<(SendersResult, Samples, CpuMarks)> {
    notify.wait_until_ready(receiver, READY_TIMEOUT).await?;
    let receiver_start_ms = receiver.id().and_then(proc_cpu_ms).unwrap_or_default();
    let parent_start_ms = self_cpu_ms();
    let (mut senders, samples) = run_senders(opts, setup, addr, receiver.id()).await?;
    if opts.version == Version::V2 {
        // An SSM2 sender is done at the broker's receipt; the run is done when the receiver
        // has stored everything, so the time it still takes is added to the senders' elapsed.
        let done = Instant::now();
        let store = crate::queue::MessageStore::open(&setup.store_path)?;
        let queued = (opts.messages * opts.senders) as u64;
        // Samples are timed from the senders' start, as the sampler's are.
        let started = done.checked_sub(senders.elapsed).unwrap_or(done);
        wait_stored(&store, queued, receiver, &samples, started).await?;
        senders.elapsed += done.elapsed();
    }
    let cpu = CpuMarks {
        receiver_start_ms,
        parent_ms: self_cpu_ms().saturating_sub(parent_start_ms),
    };
    Ok((senders, samples, cpu))
}

/// Runs the senders' child to its end and returns what it measured; samples the resident
/// memory of `sample_pid` (the receiver) meanwhile.
async fn run_senders(
    opts: &BenchOptions,
    setup: &Setup,
    addr: &BrokerAddr,
    sample_pid: Option<u32>,
) -> anyhow::Result<(SendersResult, Samples)> {
    let mut senders = Command::new(&opts.exe);
    senders.arg("bench").arg("--role").arg("senders");
    let configs = setup.write_sender_configs(&SenderOptions {
        broker: addr,
        login: opts.login.as_ref(),
        destination: &opts.destination,
        cipher: opts.cipher,
        certreq_first: false,
        ssm_version: opts.version,
        window: opts.window,
    })?;
    for config in configs {
        senders.arg("--sender-config").arg(config);
    }
    let mut senders = senders
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot start {} bench --role senders", opts.exe.display()))?;

    let samples: Samples = Arc::default();
    let sampler = {
        let samples = samples.clone();
        tokio::spawn(async move {
            let start = Instant::now();
            let Some(pid) = sample_pid else { return };
            loop {
                if let Some((_, rss)) = proc_memory(pid) {
                    if let Ok(mut s) = samples.lock() {
                        s.push((start.elapsed(), rss));
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };

    let mut out = String::new();
    if let Some(mut stdout) = senders.stdout.take() {
        stdout
            .read_to_string(&mut out)
            .await
            .context("reading the senders' report")?;
    }
    let status = senders.wait().await?;
    sampler.abort();
    if !status.success() {
        bail!("the senders failed ({status})");
    }
    Ok((SendersResult::parse(&out)?, samples))
}

/// CPU readings taken around the timed part.
struct CpuMarks {
    /// The receiver's CPU time when it was subscribed.
    receiver_start_ms: u64,
    /// This process's CPU time while the senders ran (the embedded broker, mostly).
    parent_ms: u64,
}

fn spawn_receiver(
    opts: &BenchOptions,
    setup: &Setup,
    addr: &BrokerAddr,
    notify: &ReadySocket,
) -> anyhow::Result<Child> {
    let mut cmd = Command::new(&opts.exe);
    cmd.arg("receive")
        .arg("--broker")
        .arg(addr.to_string())
        .arg("--destination")
        .arg(&opts.destination)
        .arg("--cert")
        .arg(&setup.pki.server.cert)
        .arg("--key")
        .arg(&setup.pki.server.key)
        .arg("--capath")
        .arg(&setup.pki.capath)
        .arg("--dn-file")
        .arg(&setup.dns_path)
        .arg("--path")
        .arg(&setup.store_path);
    if let Some((login, passcode)) = &opts.login {
        cmd.arg("--login")
            .arg(login)
            .arg("--passcode")
            .arg(passcode);
    }
    // The receiver logs a line per message at INFO; that is not what is being measured.
    // Our socket, and no watchdog: a bench run under systemd must not hand its own down.
    cmd.env("RUST_LOG", "warn")
        .env("NOTIFY_SOCKET", &notify.name)
        .env_remove("WATCHDOG_USEC")
        .env_remove("WATCHDOG_PID")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    cmd.spawn()
        .with_context(|| format!("cannot start {} receive", opts.exe.display()))
}

/// Stops a child with SIGTERM (it finishes what is in flight), then SIGKILL after 20 s.
async fn stop_child(child: &mut Child) {
    if let Some(pid) = child.id() {
        if let Ok(pid) = libc::pid_t::try_from(pid) {
            // SAFETY: plain syscall on our own child's pid, which is not reaped yet.
            unsafe {
                libc::kill(pid, libc::SIGTERM);
            }
        }
    }
    if tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .is_err()
    {
        let _ = child.kill().await;
    }
}

/// How long the receiver may take to connect and subscribe.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// The socket a receiver child announces its readiness on (`NOTIFY_SOCKET`, systemd's
/// protocol); the file, if any, is removed when dropped.
struct ReadySocket {
    socket: UnixDatagram,
    /// What `NOTIFY_SOCKET` says: a path, or `@name` for an abstract socket.
    name: String,
    path: Option<PathBuf>,
}

impl ReadySocket {
    /// Binds `dir/notify`; an abstract socket when that path is too long for a socket address
    /// (a deep `--dir`) or not valid UTF-8.
    fn bind(dir: &Path) -> anyhow::Result<ReadySocket> {
        let path = dir.join("notify");
        // sun_path holds 108 bytes, the final NUL included.
        if let Some(name) = path.to_str().filter(|p| p.len() < 108) {
            let socket = UnixDatagram::bind(&path)
                .with_context(|| format!("cannot bind the notify socket {}", path.display()))?;
            return Ok(ReadySocket {
                socket,
                name: name.to_string(),
                path: Some(path),
            });
        }
        use std::os::linux::net::SocketAddrExt;
        let name = format!("ssm-bench-{}", uuid::Uuid::new_v4());
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
        let socket = std::os::unix::net::UnixDatagram::bind_addr(&addr)
            .context("cannot bind an abstract notify socket")?;
        socket.set_nonblocking(true)?;
        Ok(ReadySocket {
            socket: UnixDatagram::from_std(socket)?,
            name: format!("@{name}"),
            path: None,
        })
    }

    /// Waits for a `READY=1` datagram; fails if `child` exits first or `timeout` passes.
    async fn wait_until_ready(&self, child: &mut Child, timeout: Duration) -> anyhow::Result<()> {
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        let mut buf = vec![0u8; 4096];
        loop {
            tokio::select! {
                () = &mut deadline => {
                    bail!("the receiver did not report READY=1 within {} s", timeout.as_secs())
                }
                status = child.wait() => {
                    let status = status.context("waiting for the receiver")?;
                    bail!("the receiver exited before it was ready ({status})");
                }
                got = self.socket.recv(&mut buf) => {
                    let len = got.context("reading the notify socket")?;
                    if is_ready(&buf[..len]) {
                        return Ok(());
                    }
                }
            }
        }
    }
}

impl Drop for ReadySocket {
    fn drop(&mut self) {
        if let Some(path) = &self.path {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Whether a notification (newline-separated `KEY=VALUE` lines) holds `READY=1`.
fn is_ready(datagram: &[u8]) -> bool {
    datagram
        .split(|b| *b == b'\n')
        .any(|line| line == b"READY=1")
}

/// What the senders' child measured.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SendersResult {
    /// Messages acked.
    pub acked: u64,
    /// Resends.
    pub retried: u64,
    /// From the first send to the last sender's end.
    pub elapsed: Duration,
    /// Peak resident memory, KiB.
    pub peak_rss_kb: u64,
    /// CPU time while sending, milliseconds.
    pub cpu_ms: u64,
    /// Median ack latency over every sender, milliseconds (to the microsecond).
    pub p50_ms: f64,
    /// 99th percentile ack latency, milliseconds.
    pub p99_ms: f64,
    /// Largest ack latency, milliseconds.
    pub max_ms: f64,
}

impl SendersResult {
    /// The child's stdout: `key value…` lines.
    fn to_text(&self) -> String {
        let us = |ms: f64| (ms * 1000.0).round() as u64;
        format!(
            "acked {}\nretried {}\nelapsed_us {}\npeak_rss_kb {}\ncpu_ms {}\n\
             p50_us {}\np99_us {}\nmax_us {}\n",
            self.acked,
            self.retried,
            self.elapsed.as_micros(),
            self.peak_rss_kb,
            self.cpu_ms,
            us(self.p50_ms),
            us(self.p99_ms),
            us(self.max_ms),
        )
    }

    fn parse(text: &str) -> anyhow::Result<SendersResult> {
        let mut r = SendersResult::default();
        let mut seen = 0;
        for line in text.lines() {
            let mut words = line.split_whitespace();
            let key = words.next().unwrap_or_default();
            let mut num =
                || -> anyhow::Result<u64> { Ok(words.next().unwrap_or_default().parse()?) };
            match key {
                "acked" => r.acked = num()?,
                "retried" => r.retried = num()?,
                "elapsed_us" => r.elapsed = Duration::from_micros(num()?),
                "peak_rss_kb" => r.peak_rss_kb = num()?,
                "cpu_ms" => r.cpu_ms = num()?,
                "p50_us" => r.p50_ms = num()? as f64 / 1000.0,
                "p99_us" => r.p99_ms = num()? as f64 / 1000.0,
                "max_us" => r.max_ms = num()? as f64 / 1000.0,
                _ => continue,
            }
            seen += 1;
        }
        if seen < 8 {
            bail!("the senders' report is incomplete: {text:?}");
        }
        Ok(r)
    }
}

/// The `--role senders` side: runs every sender at once (each a single pass, as `ssm send`
/// without `--daemon`) and prints what they measured on stdout. The caller built them from
/// their configuration files and set up logging.
pub fn senders_main(senders: Vec<Sender>) -> anyhow::Result<()> {
    let rt = tokio::runtime::Runtime::new()?;
    let cpu_start = self_cpu_ms();
    let latency = Histogram::default();
    let mut result = rt.block_on(async {
        let started = Instant::now();
        let handles: Vec<_> = senders
            .into_iter()
            .map(|mut s| {
                let stats = s.stats.clone();
                (stats, tokio::spawn(async move { s.run_once().await }))
            })
            .collect();
        let mut r = SendersResult::default();
        for (stats, h) in handles {
            let s = h.await?.context("a sender failed")?;
            r.acked += s.acked;
            r.retried += s.retried;
            latency.merge(&stats.ack_latency);
        }
        r.elapsed = started.elapsed();
        Ok::<_, anyhow::Error>(r)
    })?;
    result.cpu_ms = self_cpu_ms().saturating_sub(cpu_start);
    let ms = |d: Option<Duration>| d.unwrap_or_default().as_micros() as f64 / 1000.0;
    result.p50_ms = ms(latency.quantile(0.5));
    result.p99_ms = ms(latency.quantile(0.99));
    result.max_ms = ms(Some(latency.max()));
    result.peak_rss_kb = proc_memory(std::process::id())
        .map(|(hwm, _)| hwm)
        .unwrap_or_default();
    print!("{}", result.to_text());
    Ok(())
}

/// The cryptographic bound of a run (issue #17): the CPU time of one operation, milliseconds,
/// measured in this process before anything else runs, with the run's own keys and message
/// size. Each is the CPU time of the measuring thread (not wall time), so that other work on a
/// shared machine does not inflate it, as the children's CPU per message is not.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CryptoCosts {
    /// One RSA signature (SHA-256) with the first sender's private key: the sender's one
    /// private-key operation per message.
    pub rsa_sign_ms: f64,
    /// One RSA private-key decryption (PKCS #1 v1.5, as a CMS key transport) with the
    /// server's key: the receiver's one private-key operation per message.
    pub rsa_decrypt_ms: f64,
    /// Encrypting one message with the run's cipher (CBC).
    pub aes_ms: f64,
    /// MD5 of one message (its id).
    pub md5_ms: f64,
    /// zlib (default level) of one message, with a compressor reused as the sender does.
    pub zlib_ms: f64,
    /// base64 of one message.
    pub base64_ms: f64,
}

/// CPU time of the calling thread, nanoseconds.
fn thread_cpu_ns() -> u64 {
    // SAFETY: clock_gettime only writes the struct it is given.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    if unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) } != 0 {
        return 0;
    }
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// CPU milliseconds per call of `op`: run until `budget` of CPU time and at least 20 calls, after
/// a few warm-up calls. The first error stops the measurement.
fn per_call_ms(
    budget: Duration,
    mut op: impl FnMut() -> anyhow::Result<()>,
) -> anyhow::Result<f64> {
    for _ in 0..3 {
        op()?;
    }
    let budget = budget.as_nanos() as u64;
    let start = thread_cpu_ns();
    let mut calls = 0u64;
    loop {
        op()?;
        calls += 1;
        let spent = thread_cpu_ns().saturating_sub(start);
        if calls >= 20 && spent >= budget {
            return Ok(spent as f64 / calls as f64 / 1e6);
        }
    }
}

impl CryptoCosts {
    /// Measures each operation with the keys of `setup` and a message of `size` bytes (the
    /// bench's own APEL text). Takes about `6 x budget` of CPU.
    pub fn measure(
        setup: &Setup,
        size: usize,
        cipher: Cipher,
        budget: Duration,
    ) -> anyhow::Result<CryptoCosts> {
        use base64::Engine as _;
        use md5::Digest as _;
        use openssl::encrypt::{Decrypter, Encrypter};
        use openssl::hash::MessageDigest;
        use openssl::sign::Signer;

        let sender_key = crate::crypto::load_key(&setup.pki.client.key)?;
        let server_key = crate::crypto::load_key(&setup.pki.server.key)?;
        let server_cert = crate::crypto::load_cert(&setup.pki.server.cert)?;
        let message = demo::apel_message(0, size);

        let rsa_sign_ms = per_call_ms(budget, || {
            let mut signer = Signer::new(MessageDigest::sha256(), &sender_key)?;
            signer.update(&message[..message.len().min(64)])?;
            std::hint::black_box(signer.sign_to_vec()?);
            Ok(())
        })?;

        // A content key wrapped for the server, as a CMS recipient info carries it.
        let public = server_cert.public_key()?;
        let encrypter = Encrypter::new(&public)?;
        let mut wrapped = vec![0u8; encrypter.encrypt_len(&[0u8; 16])?];
        let n = encrypter.encrypt(&[7u8; 16], &mut wrapped)?;
        wrapped.truncate(n);
        let rsa_decrypt_ms = per_call_ms(budget, || {
            let decrypter = Decrypter::new(&server_key)?;
            let mut out = vec![0u8; decrypter.decrypt_len(&wrapped)?];
            std::hint::black_box(decrypter.decrypt(&wrapped, &mut out)?);
            Ok(())
        })?;

        let key = vec![0x42u8; cipher.openssl().key_len()];
        let iv = vec![0x24u8; cipher.openssl().iv_len().unwrap_or(0)];
        let aes_ms = per_call_ms(budget, || {
            let iv = (!iv.is_empty()).then_some(iv.as_slice());
            std::hint::black_box(openssl::symm::encrypt(
                cipher.openssl(),
                &key,
                iv,
                &message,
            )?);
            Ok(())
        })?;

        let md5_ms = per_call_ms(budget, || {
            std::hint::black_box(md5::Md5::digest(&message));
            Ok(())
        })?;

        let mut deflate = flate2::Compress::new(flate2::Compression::default(), true);
        let mut out = Vec::with_capacity(message.len() + 1024);
        let zlib_ms = per_call_ms(budget, || {
            deflate.reset();
            out.clear();
            deflate.compress_vec(&message, &mut out, flate2::FlushCompress::Finish)?;
            std::hint::black_box(&out);
            Ok(())
        })?;

        let base64_ms = per_call_ms(budget, || {
            std::hint::black_box(base64::engine::general_purpose::STANDARD.encode(&message));
            Ok(())
        })?;

        Ok(CryptoCosts {
            rsa_sign_ms,
            rsa_decrypt_ms,
            aes_ms,
            md5_ms,
            zlib_ms,
            base64_ms,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("10240"), Ok(10240));
        assert_eq!(parse_size("10k"), Ok(10240));
        assert_eq!(parse_size("10KB"), Ok(10240));
        assert_eq!(parse_size("1M"), Ok(1 << 20));
        assert!(parse_size("ten").is_err());
        assert!(parse_size("").is_err());
    }

    #[test]
    fn readiness_is_a_ready_line() {
        assert!(is_ready(
            b"READY=1\nSTATUS=subscribed to /topic/x\nMAINPID=7"
        ));
        assert!(is_ready(b"STATUS=x\nREADY=1"));
        assert!(!is_ready(b"STOPPING=1"));
        assert!(!is_ready(b"READY=10"));
        assert!(!is_ready(b"WATCHDOG=1"));
    }

    #[tokio::test]
    async fn readiness_comes_from_the_notify_socket() {
        let dir = tempfile::tempdir().unwrap();
        let socket = ReadySocket::bind(dir.path()).unwrap();
        let mut child = Command::new("sleep")
            .arg("30")
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let notifier =
            crate::ops::notify::Notifier::from_vars(Some(socket.name.clone()), None, None);
        notifier.notify("STATUS=starting").unwrap();
        notifier.ready("subscribed").unwrap();
        socket
            .wait_until_ready(&mut child, Duration::from_secs(10))
            .await
            .unwrap();
        drop(socket);
        assert!(
            !dir.path().join("notify").exists(),
            "the socket file is removed"
        );

        // A child that exits first is an error, not a wait for the timeout.
        let socket = ReadySocket::bind(dir.path()).unwrap();
        let mut gone = Command::new("true").spawn().unwrap();
        let err = socket
            .wait_until_ready(&mut gone, Duration::from_secs(30))
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("exited before it was ready"),
            "{err}"
        );
        let err = socket
            .wait_until_ready(&mut child, Duration::from_millis(50))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("did not report READY=1"), "{err}");
    }

    #[test]
    fn long_run_dirs_get_an_abstract_socket() {
        let dir = tempfile::tempdir().unwrap();
        let deep = dir.path().join("d".repeat(120));
        std::fs::create_dir(&deep).unwrap();
        let rt = tokio::runtime::Runtime::new().unwrap();
        let _guard = rt.enter();
        let socket = ReadySocket::bind(&deep).unwrap();
        assert!(socket.name.starts_with("@ssm-bench-"), "{}", socket.name);
    }

    #[test]
    fn senders_result_round_trips() {
        let r = SendersResult {
            acked: 3,
            retried: 1,
            elapsed: Duration::from_micros(1_234_567),
            peak_rss_kb: 9000,
            cpu_ms: 77,
            p50_ms: 1.5,
            p99_ms: 2.125,
            max_ms: 30.25,
        };
        assert_eq!(SendersResult::parse(&r.to_text()).ok(), Some(r));
        assert!(SendersResult::parse("acked 3\n").is_err());
    }

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

    #[test]
    fn own_memory_is_readable() {
        let (hwm, rss) = proc_memory(std::process::id()).expect("/proc/self/status");
        assert!(hwm >= rss && rss > 0);
        assert!(proc_cpu_ms(std::process::id()).is_some());
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
    fn the_drain_rate_counts_from_ready() {
        let r = report(Mode::Drain);
        // 80 messages stored in the 0.2 s after READY=1.
        let rate = r.drain_msgs_per_s().unwrap();
        assert!((rate - 400.0).abs() < 1e-6, "{rate}");
        let json = r.to_json();
        assert!(json.contains("\"mode\":\"drain\""), "{json}");
        assert!(json.contains("\"drain_msgs_per_s\":400.0,"), "{json}");
        assert!(json.contains("\"drain_elapsed_s\":0.3,"), "{json}");
        assert!(report(Mode::Live).drain_msgs_per_s().is_none());
    }

    #[test]
    fn the_bound_is_measured_with_the_run_keys() {
        let dir = tempfile::tempdir().unwrap();
        let setup = Setup::prepare(dir.path(), 1).unwrap();
        let c =
            CryptoCosts::measure(&setup, 10240, Cipher::Aes128, Duration::from_millis(5)).unwrap();
        for (name, ms) in [
            ("sign", c.rsa_sign_ms),
            ("decrypt", c.rsa_decrypt_ms),
            ("aes", c.aes_ms),
            ("md5", c.md5_ms),
            ("zlib", c.zlib_ms),
            ("base64", c.base64_ms),
        ] {
            assert!(ms > 0.0 && ms < 100.0, "{name}: {ms} ms");
        }
        // A private-key operation costs far more than hashing 10 KB.
        assert!(
            c.rsa_sign_ms > c.md5_ms && c.rsa_decrypt_ms > c.md5_ms,
            "{c:?}"
        );
    }
}
