//! `ssm bench`: end-to-end throughput, ack latency, CPU and memory of the whole protocol,
//! over STOMP (v1 or SSM2) or over AMS (SSM2).
//!
//! The run is laid out like production, so that each side's memory can be measured alone:
//! - the broker is the embedded one, in this process (or a real one given by address); over
//!   AMS it is `ssm ams-server`, in this process too ([`crate::harness::ams`]);
//! - the receiver is a child process, the real `ssm receive` of this executable;
//! - the senders are a second child process (`ssm bench --role senders`), running every sender
//!   concurrently, each with its own certificate, outgoing queue and broker connection.
//!
//! Both children are configured as in production: the receiver with `ssm receive`'s flags
//! (over AMS with a `receiver.cfg`, as `ssm receive -c`), each sender with a `sender.cfg` of
//! its own in the run directory, read by the same loader and built by the same code as
//! `ssm send -c`. The receiver says it is subscribed with a systemd-style `READY=1` on the
//! `NOTIFY_SOCKET` the bench gives it (`ops::notify`); only then do the senders start, as a
//! topic drops what is sent before the subscription.
//!
//! The queues are filled before anything is timed. Throughput is measured by the senders' child
//! from its first send to its last ack; ack latency is, per message, the time from handing the
//! sealed message to the broker to its ack, as each sender records it in its own statistics
//! ([`crate::sender::SenderStats::ack_latency`]; quantiles by nearest rank, to within 1/32).
//! Peak resident memory is each child's `VmHWM`: the senders report their own, the receiver's
//! is read from `/proc` before it is told to stop. The receiver's resident memory is also
//! sampled while the run goes on, so that growth (a leak) shows as a difference between the
//! two halves of the run. Every stored message is checked afterwards: each one exactly once,
//! with its signer.
//!
//! Guarantees:
//! - A report is returned only if every queued message was acked and stored exactly once with
//!   its signer, and both children succeeded; otherwise the run is an error.
//! - The senders start only after the receiver's `READY=1`; a receiver that exits first, or is
//!   not ready within 60 s, fails the run with that reason (no silent wait).
//! - The receiver is always stopped (SIGTERM, then SIGKILL after 20 s), whatever happened.
//! - The STOMP runs' text report and JSON keys stay as they were; an AMS run adds
//!   `"transport":"ams"` to the JSON and says so in the text.
//!
//! One concern a file:
//! - [`run`](mod@run): the run itself (broker or AMS server, children, drain, checks);
//! - [`measure`]: CPU and memory of processes, from `/proc` and `getrusage`;
//! - [`report`]: [`BenchReport`], its text and its JSON;
//! - [`bound`]: [`CryptoCosts`], the cryptographic bound measured in the same run (issue #17);
//! - `ready`: the `NOTIFY_SOCKET` a receiver child says `READY=1` on;
//! - [`senders`]: the senders' child (`--role senders`) and what it reports.

use std::path::PathBuf;

use crate::crypto::Cipher;
use crate::protocol::Version;
use crate::stomp::BrokerAddr;

pub mod bound;
pub mod measure;
mod ready;
pub mod report;
pub mod run;
pub mod senders;

pub use bound::CryptoCosts;
pub use measure::{proc_cpu_ms, proc_memory};
pub use report::{BenchReport, DrainReport};
pub use run::run;
pub use senders::{senders_main, SendersResult};

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
    /// What carries the messages. AMS: SSM2 only, through `ssm ams-server` in this process;
    /// `destination` is then the topic (its subscription is `<topic>-sub`) and `broker` and
    /// `login` must be `None`.
    pub transport: Transport,
}

/// What carries a benchmark's messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Transport {
    /// STOMP: the embedded broker, or a real one.
    #[default]
    Stomp,
    /// The ARGO Messaging Service: `ssm ams-server` in this process (SSM2).
    Ams,
}

impl Transport {
    /// Its name on the command line and in the JSON.
    pub fn name(self) -> &'static str {
        match self {
            Transport::Stomp => "stomp",
            Transport::Ams => "ams",
        }
    }
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
    /// Its name on the command line and in the JSON.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Live => "live",
            Mode::Drain => "drain",
        }
    }
}

/// The protocol version as a number (the JSON and the text report).
pub(crate) fn version_number(v: Version) -> u8 {
    match v {
        Version::V1 => 1,
        Version::V2 => 2,
    }
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
}
