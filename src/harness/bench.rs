//! `ssm bench`: end-to-end throughput, ack latency and memory of the whole protocol.
//!
//! The run is laid out like production, so that each side's memory can be measured alone:
//! - the broker is the embedded one, in this process (or a real one given by address);
//! - the receiver is a child process, the real `ssm receive` of this executable;
//! - the senders are a second child process (`ssm bench --role senders`), running every sender
//!   concurrently, each with its own certificate, outgoing queue and broker connection.
//!
//! The queues are filled before anything is timed. Throughput is measured by the senders' child
//! from its first send to its last ack; ack latency is, per message, the time from handing the
//! sealed message to the broker to its ack (the sender's `acked` log event). Peak resident
//! memory is each child's `VmHWM`: the senders report their own, the receiver's is read from
//! `/proc` before it is told to stop. The receiver's resident memory is also sampled while the
//! run goes on, so that growth (a leak) shows as a difference between the two halves of the run.
//! Every stored message is checked afterwards: each one exactly once, with its signer.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use tokio::io::AsyncReadExt;
use tokio::process::{Child, Command};

use crate::crypto::{self, Cipher, TrustStore};
use crate::harness::demo::{self, SenderCommon, Setup};
use crate::ops::filesystem;
use crate::protocol::SsmMessage;
use crate::stomp::{AckMode, BrokerAddr, BrokerKind, Client, Event};

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

    /// The report as one line of JSON (flat object; numbers and strings only).
    pub fn to_json(&self) -> String {
        format!(
            "{{\"senders\":{},\"messages\":{},\"size\":{},\"cipher\":\"{}\",\"broker\":\"{}\",\
             \"store_fs\":\"{}\",\"acked\":{},\"retried\":{},\"elapsed_s\":{:.3},\"msgs_per_s\":{:.1},\
             \"mb_per_s\":{:.3},\"p50_ms\":{:.2},\"p99_ms\":{:.2},\"max_ms\":{:.2},\
             \"sender_peak_rss_kb\":{},\"receiver_peak_rss_kb\":{},\
             \"receiver_rss_first_half_kb\":{},\"receiver_rss_second_half_kb\":{},\
             \"sender_cpu_ms\":{},\"receiver_cpu_ms\":{},\"broker_cpu_ms\":{}}}",
            self.senders,
            self.messages,
            self.size,
            self.cipher,
            json_escape(&self.broker),
            json_escape(&self.store_fs),
            self.acked,
            self.retried,
            self.elapsed.as_secs_f64(),
            self.msgs_per_s(),
            self.mb_per_s(),
            self.p50_ms,
            self.p99_ms,
            self.max_ms,
            self.sender_peak_rss_kb,
            self.receiver_peak_rss_kb,
            self.receiver_rss_first_half_kb,
            self.receiver_rss_second_half_kb,
            self.sender_cpu_ms,
            self.receiver_cpu_ms,
            self.broker_cpu_ms,
        )
    }
}

impl std::fmt::Display for BenchReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "broker:        {}", self.broker)?;
        writeln!(f, "store on:      {}", self.store_fs)?;
        writeln!(
            f,
            "acked:         {} ({} sender(s) x {} x {} bytes, {}; retried {})",
            self.acked, self.senders, self.messages, self.size, self.cipher, self.retried
        )?;
        writeln!(
            f,
            "throughput:    {:.1} messages/s, {:.2} MB/s in {:.2} s",
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
        let per = |ms: u64| ms as f64 / self.acked.max(1) as f64;
        write!(
            f,
            "\nCPU/message:   senders {:.2} ms, receiver {:.2} ms, broker {:.2} ms",
            per(self.sender_cpu_ms),
            per(self.receiver_cpu_ms),
            per(self.broker_cpu_ms),
        )
    }
}

fn json_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

/// The `q`-quantile (0..=1) of sorted values, nearest rank; 0 when empty.
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
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
    let setup = Setup::prepare(&opts.dir, opts.senders)?;
    setup.fill_queues(opts.messages, opts.size)?;

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

    let mut receiver = spawn_receiver(&opts, &setup, &addr)?;
    let result = drive(&opts, &setup, &addr, &mut receiver).await;
    // Whatever happened, the receiver goes: stopped politely, killed if it lingers.
    let receiver_peak = receiver.id().and_then(proc_memory).map(|(hwm, _)| hwm);
    let receiver_cpu_end = receiver.id().and_then(proc_cpu_ms).unwrap_or_default();
    stop_child(&mut receiver).await;
    if let Some(h) = embedded {
        h.shutdown().await;
    }
    let (senders, samples, cpu) = result?;
    let receiver_peak_rss_kb = receiver_peak
        .or_else(children_max_rss_kb)
        .unwrap_or_default();

    let stored = setup.check_stored(opts.messages, opts.size)?;
    let queued = (opts.messages * opts.senders) as u64;
    if senders.acked != queued || stored as u64 != queued {
        bail!(
            "{queued} messages queued but {} acked and {stored} stored",
            senders.acked
        );
    }

    let mut lat = senders.latencies_ms.clone();
    lat.sort_by(f64::total_cmp);
    let (first, second) = halves(&samples, senders.elapsed);
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
        p50_ms: quantile(&lat, 0.5),
        p99_ms: quantile(&lat, 0.99),
        max_ms: lat.last().copied().unwrap_or_default(),
        sender_peak_rss_kb: senders.peak_rss_kb,
        receiver_peak_rss_kb,
        receiver_rss_first_half_kb: first,
        receiver_rss_second_half_kb: second,
        sender_cpu_ms: senders.cpu_ms,
        receiver_cpu_ms: receiver_cpu_end.saturating_sub(cpu.receiver_start_ms),
        broker_cpu_ms: cpu.parent_ms,
    })
}

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
) -> anyhow::Result<(SendersResult, Samples, CpuMarks)> {
    wait_until_subscribed(opts, addr, receiver).await?;
    let receiver_start_ms = receiver.id().and_then(proc_cpu_ms).unwrap_or_default();
    let parent_start_ms = self_cpu_ms();

    let plan = setup.dir.join("bench-plan");
    write_plan(&plan, opts, setup, addr)?;
    let mut senders = Command::new(&opts.exe)
        .arg("bench")
        .arg("--role")
        .arg("senders")
        .arg("--plan")
        .arg(&plan)
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
        let pid = receiver.id();
        tokio::spawn(async move {
            let start = Instant::now();
            let Some(pid) = pid else { return };
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
    let cpu = CpuMarks {
        receiver_start_ms,
        parent_ms: self_cpu_ms().saturating_sub(parent_start_ms),
    };
    Ok((SendersResult::parse(&out)?, samples, cpu))
}

/// CPU readings taken around the timed part.
struct CpuMarks {
    /// The receiver's CPU time when it was subscribed.
    receiver_start_ms: u64,
    /// This process's CPU time while the senders ran (the embedded broker, mostly).
    parent_ms: u64,
}

fn spawn_receiver(opts: &BenchOptions, setup: &Setup, addr: &BrokerAddr) -> anyhow::Result<Child> {
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
    cmd.env("RUST_LOG", "warn")
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

/// Sends `certreq` until the receiver answers: then it is subscribed and senders may start
/// (a topic drops what is sent before the subscription).
async fn wait_until_subscribed(
    opts: &BenchOptions,
    addr: &BrokerAddr,
    receiver: &mut Child,
) -> anyhow::Result<()> {
    let client_cfg = demo::client_config(addr, opts.login.as_ref());
    let mut client = Client::connect(&client_cfg)
        .await
        .context("connecting to the broker")?;
    let reply_to = crate::sender::SenderSettings::new_reply_queue();
    if client.kind() != BrokerKind::RabbitMq {
        client
            .handle()
            .subscribe(&reply_to, AckMode::Auto, &[])
            .await?;
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = receiver.try_wait()? {
            bail!("the receiver exited before it subscribed ({status})");
        }
        if Instant::now() > deadline {
            bail!("the receiver did not answer within 60 s");
        }
        let req = SsmMessage::CertReq {
            reply_to: reply_to.clone(),
            reack: None,
        };
        client
            .handle()
            .send(req.to_frame(&opts.destination))
            .await?;
        let wait = tokio::time::sleep(Duration::from_millis(300));
        tokio::pin!(wait);
        loop {
            tokio::select! {
                () = &mut wait => break,
                ev = client.recv() => {
                    if let Event::Message(frame) = ev? {
                        if let Ok(SsmMessage::CertResp { .. }) = SsmMessage::from_frame(&frame) {
                            let _ = client.disconnect().await;
                            return Ok(());
                        }
                    }
                }
            }
        }
    }
}

/// The senders' instructions, one `key<TAB>value…` per line (paths may hold spaces).
fn write_plan(
    path: &Path,
    opts: &BenchOptions,
    setup: &Setup,
    addr: &BrokerAddr,
) -> anyhow::Result<()> {
    let mut text = String::new();
    let mut line = |fields: &[&str]| {
        text.push_str(&fields.join("\t"));
        text.push('\n');
    };
    line(&["broker", &addr.host, &addr.port.to_string()]);
    if let Some((login, passcode)) = &opts.login {
        line(&["login", login, passcode]);
    }
    line(&["destination", &opts.destination]);
    line(&["cipher", &opts.cipher.to_string()]);
    line(&["capath", &path_str(&setup.pki.capath)?]);
    line(&["server_cert", &path_str(&setup.pki.server.cert)?]);
    line(&["server_dn", &setup.pki.server.dn]);
    for (i, c) in setup.clients.iter().enumerate() {
        line(&[
            "sender",
            &path_str(&c.cert)?,
            &path_str(&c.key)?,
            &path_str(&setup.outgoing_dir(i))?,
        ]);
    }
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

fn path_str(p: &Path) -> anyhow::Result<String> {
    match p.to_str() {
        Some(s) if !s.contains(['\t', '\n']) => Ok(s.to_string()),
        _ => bail!("{} cannot be passed in a bench plan", p.display()),
    }
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
    /// Ack latency of every acked message, milliseconds.
    pub latencies_ms: Vec<f64>,
}

impl SendersResult {
    /// The child's stdout: `key value…` lines.
    fn to_text(&self) -> String {
        let mut s = format!(
            "acked {}\nretried {}\nelapsed_us {}\npeak_rss_kb {}\ncpu_ms {}\nlatencies_ms",
            self.acked,
            self.retried,
            self.elapsed.as_micros(),
            self.peak_rss_kb,
            self.cpu_ms
        );
        for l in &self.latencies_ms {
            let _ = write!(s, " {l}");
        }
        s.push('\n');
        s
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
                "latencies_ms" => {
                    r.latencies_ms = words
                        .map(str::parse)
                        .collect::<Result<_, _>>()
                        .context("bad latency")?
                }
                _ => continue,
            }
            seen += 1;
        }
        if seen < 6 {
            bail!("the senders' report is incomplete: {text:?}");
        }
        Ok(r)
    }
}

/// The `--role senders` side: runs every sender of `plan` at once and prints what it measured
/// on stdout. Installs its own log subscriber (warnings to stderr, `acked` events counted).
pub fn senders_main(plan: &Path) -> anyhow::Result<()> {
    let latencies = latency::install()?;
    let text =
        std::fs::read_to_string(plan).with_context(|| format!("cannot read {}", plan.display()))?;
    let mut fields: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    let mut senders = Vec::new();
    for line in text.lines() {
        let mut parts = line.split('\t');
        let key = parts.next().unwrap_or_default();
        let rest: Vec<&str> = parts.collect();
        if key == "sender" {
            if rest.len() != 3 {
                bail!("bad sender line in the plan: {line:?}");
            }
            senders.push(rest);
        } else {
            fields.insert(key, rest);
        }
    }
    let one = |key: &str| -> anyhow::Result<&str> {
        fields
            .get(key)
            .and_then(|v| v.first().copied())
            .with_context(|| format!("the plan has no {key}"))
    };
    let broker = fields
        .get("broker")
        .filter(|v| v.len() == 2)
        .context("the plan has no broker")?;
    let addr = BrokerAddr {
        host: broker[0].to_string(),
        port: broker[1].parse().context("bad broker port in the plan")?,
    };
    let login = fields
        .get("login")
        .filter(|v| v.len() == 2)
        .map(|v| (v[0].to_string(), v[1].to_string()));
    let cipher: Cipher = one("cipher")?
        .parse()
        .map_err(|e| anyhow::anyhow!("bad cipher in the plan: {e}"))?;
    let trust = TrustStore::new(Some(Path::new(one("capath")?)), None, false)?;
    let common = SenderCommon {
        client: demo::client_config(&addr, login.as_ref()),
        destination: one("destination")?.to_string(),
        trust,
        server_cert: Some(crypto::load_cert(Path::new(one("server_cert")?))?),
        server_dn: one("server_dn")?.to_string(),
        cipher,
    };
    let mut tasks = Vec::new();
    for s in &senders {
        tasks.push(demo::make_sender(
            &common,
            Path::new(s[0]),
            Path::new(s[1]),
            Path::new(s[2]),
        )?);
    }

    let rt = tokio::runtime::Runtime::new()?;
    let cpu_start = self_cpu_ms();
    let mut result = rt.block_on(async {
        let started = Instant::now();
        let handles: Vec<_> = tasks
            .into_iter()
            .map(|mut s| tokio::spawn(async move { s.run_once().await }))
            .collect();
        let mut r = SendersResult::default();
        for h in handles {
            let s = h.await?.context("a sender failed")?;
            r.acked += s.acked;
            r.retried += s.retried;
        }
        r.elapsed = started.elapsed();
        Ok::<_, anyhow::Error>(r)
    })?;
    result.cpu_ms = self_cpu_ms().saturating_sub(cpu_start);
    result.latencies_ms = latencies.lock().map(|l| l.clone()).unwrap_or_default();
    result.peak_rss_kb = proc_memory(std::process::id())
        .map(|(hwm, _)| hwm)
        .unwrap_or_default();
    print!("{}", result.to_text());
    Ok(())
}

/// Collects the ack latency of the sender's `acked` events.
mod latency {
    use std::sync::{Arc, Mutex};

    use tracing::field::{Field, Visit};
    use tracing::{Event, Subscriber};
    use tracing_subscriber::filter::{LevelFilter, Targets};
    use tracing_subscriber::layer::{Context, SubscriberExt};
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::Layer;

    /// Latencies in milliseconds, in the order the acks arrived.
    pub type Latencies = Arc<Mutex<Vec<f64>>>;

    struct Collect(Latencies);

    #[derive(Default)]
    struct Fields {
        acked: bool,
        ms: Option<f64>,
        us: Option<f64>,
    }

    impl Visit for Fields {
        fn record_u64(&mut self, field: &Field, value: u64) {
            match field.name() {
                "ms" => self.ms = Some(value as f64),
                "us" => self.us = Some(value as f64),
                _ => {}
            }
        }

        fn record_str(&mut self, field: &Field, value: &str) {
            if field.name() == "message" && value == "acked" {
                self.acked = true;
            }
        }

        fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
            if field.name() == "message" && format!("{value:?}") == "acked" {
                self.acked = true;
            }
        }
    }

    impl<S: Subscriber> Layer<S> for Collect {
        fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
            let mut f = Fields::default();
            event.record(&mut f);
            // Microseconds when the sender logs them, else milliseconds.
            let ms = f.us.map(|us| us / 1000.0).or(f.ms);
            if let (true, Some(ms)) = (f.acked, ms) {
                if let Ok(mut l) = self.0.lock() {
                    l.push(ms);
                }
            }
        }
    }

    /// Installs warnings-to-stderr plus the collector as the global subscriber.
    pub fn install() -> anyhow::Result<Latencies> {
        let lat = Latencies::default();
        let fmt = tracing_subscriber::fmt::layer()
            .fmt_fields(crate::logging::EscapedFields)
            .with_writer(std::io::stderr)
            .with_filter(LevelFilter::WARN);
        let collect = Collect(lat.clone())
            .with_filter(Targets::new().with_target("ssm::sender", tracing::Level::INFO));
        tracing_subscriber::registry()
            .with(fmt)
            .with(collect)
            .try_init()
            .map_err(|e| anyhow::anyhow!("cannot install the log subscriber: {e}"))?;
        Ok(lat)
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
    fn quantiles_use_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(quantile(&v, 0.5), 50.0);
        assert_eq!(quantile(&v, 0.99), 99.0);
        assert_eq!(quantile(&v, 1.0), 100.0);
        assert_eq!(quantile(&[7.0], 0.99), 7.0);
        assert_eq!(quantile(&[], 0.5), 0.0);
    }

    #[test]
    fn senders_result_round_trips() {
        let r = SendersResult {
            acked: 3,
            retried: 1,
            elapsed: Duration::from_micros(1_234_567),
            peak_rss_kb: 9000,
            cpu_ms: 77,
            latencies_ms: vec![1.5, 2.0, 30.25],
        };
        assert_eq!(SendersResult::parse(&r.to_text()).ok(), Some(r));
        assert!(SendersResult::parse("acked 3\n").is_err());
    }

    #[test]
    fn json_escapes_strings() {
        assert_eq!(json_escape("a\"b\\c\n"), "a\\\"b\\\\c\\u000a");
    }

    #[test]
    fn own_memory_is_readable() {
        let (hwm, rss) = proc_memory(std::process::id()).expect("/proc/self/status");
        assert!(hwm >= rss && rss > 0);
        assert!(proc_cpu_ms(std::process::id()).is_some());
    }
}
