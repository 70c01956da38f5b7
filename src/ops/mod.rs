//! What an operator expects from a production daemon, kept out of the protocol code: PID files,
//! systemd notifications and a Prometheus metrics endpoint (queue depths are read by
//! [`crate::queue::depth`]).
//!
//! - [`pidfile`]: refuse a second copy, take over a stale file, remove it on exit.
//! - [`notify`]: `READY=1`, `STOPPING=1` and watchdog pings over `NOTIFY_SOCKET`.
//! - [`metrics`]: `GET /metrics` in the Prometheus text format.
//! - [`filesystem`]: the file system under a queue (ext4 without a journal is slow to store).
//! - [`histogram`]: latency histograms (receiver open and store, sender ack) with quantiles.

pub mod filesystem;
pub mod histogram;
pub mod metrics;
pub mod notify;
pub mod pidfile;
