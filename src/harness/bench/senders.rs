//! The senders' child (`ssm bench --role senders`): every sender of the run at once, each a
//! single pass as `ssm send` without `--daemon`, and the figures it prints for the parent.
//!
//! Guarantees:
//! - The child reports only if every sender finished; a failed sender fails the child.
//! - Its report is `key value` lines the parent parses back exactly
//!   (`SendersResult::parse`); an incomplete one is an error, not zeros.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use super::measure::{proc_memory, self_cpu_ms};
use crate::ops::histogram::Histogram;
use crate::sender::Sender;

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

    pub(super) fn parse(text: &str) -> anyhow::Result<SendersResult> {
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
#[cfg(test)]
mod tests {
    use super::*;

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
}
