//! The run itself: the broker (or `ssm ams-server`), the receiver and senders' children, the
//! drain, and the checks after it.
//!
//! Guarantees:
//! - A report is returned only if every queued message was acked and stored exactly once with
//!   its signer, and both children succeeded; otherwise the run is an error.
//! - The senders start only after the receiver's `READY=1` (live mode); in drain mode the
//!   receiver starts only after the senders' child has exited with every message confirmed.
//! - The receiver is always stopped (SIGTERM, then SIGKILL after 20 s), and the broker or AMS
//!   server shut down, whatever happened.
//! - STOMP and AMS runs differ only in what carries the messages (`Carrier`): the same
//!   children, the same measurements, the same checks.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use tokio::io::AsyncReadExt;
use tokio::process::{Child, Command};

use super::measure::{children_max_rss_kb, halves, proc_cpu_ms, proc_memory, self_cpu_ms, Samples};
use super::ready::ReadySocket;
use super::{BenchOptions, BenchReport, CryptoCosts, DrainReport, Mode, SendersResult, Transport};
use crate::broker::BrokerHandle;
use crate::harness::ams::AmsRun;
use crate::harness::demo::{self, SenderOptions, Setup};
use crate::ops::filesystem;
use crate::protocol::Version;
use crate::stomp::BrokerAddr;

/// What carries a run's messages, started for the run.
enum Carrier {
    /// A STOMP broker: the embedded one (its handle) or a real one (`None`).
    Stomp {
        embedded: Option<BrokerHandle>,
        addr: BrokerAddr,
    },
    /// `ssm ams-server` in this process.
    Ams(AmsRun),
}

impl Carrier {
    /// Starts the embedded broker or the AMS server, or takes the given broker.
    async fn start(opts: &BenchOptions, setup: &Setup) -> anyhow::Result<Carrier> {
        match (opts.transport, &opts.broker) {
            (Transport::Ams, Some(_)) => {
                bail!("the AMS bench runs its own ssm ams-server; --broker is for STOMP")
            }
            (Transport::Ams, None) => {
                let subscription = format!("{}-sub", opts.destination);
                Ok(Carrier::Ams(
                    AmsRun::start(setup, &opts.destination, &subscription).await?,
                ))
            }
            (Transport::Stomp, Some(addr)) => Ok(Carrier::Stomp {
                embedded: None,
                addr: addr.clone(),
            }),
            (Transport::Stomp, None) => {
                let (handle, addr) = demo::start_embedded_broker().await?;
                Ok(Carrier::Stomp {
                    embedded: Some(handle),
                    addr,
                })
            }
        }
    }

    /// Which broker carried the messages, for the report.
    fn label(&self) -> String {
        match self {
            Carrier::Stomp {
                embedded: Some(_), ..
            } => "embedded (in-process)".to_string(),
            Carrier::Stomp {
                embedded: None,
                addr,
            } => addr.to_string(),
            Carrier::Ams(run) => run.label(),
        }
    }

    /// Writes every sender's `sender.cfg` and returns their paths.
    fn sender_configs(&self, opts: &BenchOptions, setup: &Setup) -> anyhow::Result<Vec<PathBuf>> {
        match self {
            Carrier::Stomp { addr, .. } => setup.write_sender_configs(&SenderOptions {
                broker: addr,
                login: opts.login.as_ref(),
                destination: &opts.destination,
                cipher: opts.cipher,
                certreq_first: false,
                ssm_version: opts.version,
                window: opts.window,
            }),
            Carrier::Ams(run) => run.write_sender_configs(setup, opts.cipher, opts.window),
        }
    }

    /// The receiver's command line after `ssm receive`: its flags for STOMP (as before AMS),
    /// a `receiver.cfg` for AMS (which has no flags of its own).
    fn receiver_args(
        &self,
        opts: &BenchOptions,
        setup: &Setup,
        cmd: &mut Command,
    ) -> anyhow::Result<()> {
        let addr = match self {
            Carrier::Ams(run) => {
                cmd.arg("-c").arg(run.write_receiver_config(setup)?);
                return Ok(());
            }
            Carrier::Stomp { addr, .. } => addr,
        };
        cmd.arg("--broker")
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
        Ok(())
    }

    /// Stops what this process started.
    async fn shutdown(self) {
        match self {
            Carrier::Stomp {
                embedded: Some(h), ..
            } => h.shutdown().await,
            Carrier::Stomp { embedded: None, .. } => {}
            Carrier::Ams(run) => run.shutdown().await,
        }
    }
}

/// Runs a benchmark and returns its report. Fails if any message was lost, stored twice or
/// not acked, or if a child process failed.
pub async fn run(opts: BenchOptions) -> anyhow::Result<BenchReport> {
    if opts.senders == 0 || opts.messages == 0 {
        bail!("senders and messages must be at least 1");
    }
    if opts.transport == Transport::Ams && opts.version != Version::V2 {
        bail!("AMS carries SSM2 only (--ssm-version 2)");
    }
    if opts.mode == Mode::Drain && opts.version == Version::V1 {
        bail!(
            "the drain mode needs SSM2 (--ssm-version 2): a v1 sender waits for the receiver's ack"
        );
    }
    let setup = Setup::prepare(&opts.dir, opts.senders)?;
    setup.fill_queues(opts.messages, opts.size)?;
    // Measured before anything else runs, so that nothing competes with it for the CPU, and
    // again once everything has stopped.
    let costs_before = measure_costs(&opts, &setup).await?;

    let carrier = Carrier::start(&opts, &setup).await?;
    let broker_label = carrier.label();

    let queued = (opts.messages * opts.senders) as u64;
    // Drain mode: the destination is filled before the receiver exists.
    let filled = match opts.mode {
        Mode::Live => None,
        Mode::Drain => {
            let parent_start_ms = self_cpu_ms();
            let senders = match run_senders(&opts, &setup, &carrier, None).await {
                Ok((senders, _)) => senders,
                Err(e) => {
                    carrier.shutdown().await;
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
    let mut receiver = match spawn_receiver(&opts, &setup, &carrier, &notify) {
        Ok(child) => child,
        Err(e) => {
            carrier.shutdown().await;
            return Err(e);
        }
    };
    let result = match filled {
        None => drive(&opts, &setup, &carrier, &mut receiver, &notify)
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
    carrier.shutdown().await;
    let (senders, samples, cpu, drained) = result?;
    let receiver_peak_rss_kb = receiver_peak
        .or_else(children_max_rss_kb)
        .unwrap_or_default();

    let costs_after = measure_costs(&opts, &setup).await?;

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
        costs: costs_before.mean(&costs_after),
        rsa_measured: [
            (costs_before.rsa_sign_ms, costs_after.rsa_sign_ms),
            (costs_before.rsa_decrypt_ms, costs_after.rsa_decrypt_ms),
        ],
        transport: opts.transport,
    })
}

/// The cryptographic bound with the run's keys, size and cipher, measured on the blocking pool
/// while nothing else of the bench runs.
async fn measure_costs(opts: &BenchOptions, setup: &Setup) -> anyhow::Result<CryptoCosts> {
    let (setup, size, cipher) = (setup.clone(), opts.size, opts.cipher);
    tokio::task::spawn_blocking(move || CryptoCosts::measure(&setup, size, cipher, COST_BUDGET))
        .await
        .context("measuring the cryptographic bound")?
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
    let ready_cpu_ms = receiver.id().and_then(proc_cpu_ms).unwrap_or_default();
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
            ready_cpu_ms,
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

/// Waits for the receiver, runs the senders' child and returns what it measured.
async fn drive(
    opts: &BenchOptions,
    setup: &Setup,
    carrier: &Carrier,
    receiver: &mut Child,
    notify: &ReadySocket,
) -> anyhow::Result<(SendersResult, Samples, CpuMarks)> {
    notify.wait_until_ready(receiver, READY_TIMEOUT).await?;
    let receiver_start_ms = receiver.id().and_then(proc_cpu_ms).unwrap_or_default();
    let parent_start_ms = self_cpu_ms();
    let (mut senders, samples) = run_senders(opts, setup, carrier, receiver.id()).await?;
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
    carrier: &Carrier,
    sample_pid: Option<u32>,
) -> anyhow::Result<(SendersResult, Samples)> {
    let mut senders = Command::new(&opts.exe);
    senders.arg("bench").arg("--role").arg("senders");
    for config in carrier.sender_configs(opts, setup)? {
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

/// Starts the receiver child, `ssm receive` as configured for the carrier.
fn spawn_receiver(
    opts: &BenchOptions,
    setup: &Setup,
    carrier: &Carrier,
    notify: &ReadySocket,
) -> anyhow::Result<Child> {
    let mut cmd = Command::new(&opts.exe);
    cmd.arg("receive");
    carrier.receiver_args(opts, setup, &mut cmd)?;
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
