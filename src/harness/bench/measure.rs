//! CPU time and resident memory of processes: the children's from `/proc`, this process's
//! and its reaped children's from `getrusage`, and the receiver's memory sampled over a run.
//!
//! Guarantees:
//! - Nothing here fails a run: a figure that cannot be read (the process is gone, `/proc` is
//!   missing) is `None` or 0, and the report shows it as such.
//! - Memory is in KiB as Linux reports it; CPU time is user + system, in milliseconds.

use std::sync::{Arc, Mutex};
use std::time::Duration;

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
pub(super) fn self_cpu_ms() -> u64 {
    // SAFETY: getrusage only writes the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return 0;
    }
    let ms = |t: libc::timeval| t.tv_sec as u64 * 1000 + t.tv_usec as u64 / 1000;
    ms(usage.ru_utime) + ms(usage.ru_stime)
}

/// Largest resident set among the waited-for children, KiB (Linux reports KiB).
pub(super) fn children_max_rss_kb() -> Option<u64> {
    // SAFETY: getrusage only writes the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) };
    (rc == 0).then_some(usage.ru_maxrss as u64)
}

/// The receiver's resident memory over time: (time since the senders started, VmRSS KiB).
pub(super) type Samples = Arc<Mutex<Vec<(Duration, u64)>>>;

/// Largest sample in the first and in the second half of `elapsed`.
pub(super) fn halves(samples: &Samples, elapsed: Duration) -> (u64, u64) {
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
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_memory_is_readable() {
        let (hwm, rss) = proc_memory(std::process::id()).expect("/proc/self/status");
        assert!(hwm >= rss && rss > 0);
        assert!(proc_cpu_ms(std::process::id()).is_some());
    }
}
