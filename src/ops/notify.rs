//! The systemd notification protocol (`sd_notify`), written out: one datagram per state
//! change to the unix socket named by `NOTIFY_SOCKET`.
//!
//! Guarantees:
//! - Without `NOTIFY_SOCKET` (not started by systemd with `Type=notify`) every call does
//!   nothing and succeeds, so the daemons call it unconditionally.
//! - Abstract socket names (`@…`) and paths are both understood, as systemd hands out either.
//! - [`Notifier::watchdog_interval`] is half of `WATCHDOG_USEC` (what `sd_watchdog_enabled`
//!   recommends), and only when `WATCHDOG_PID` is unset or names this process.

use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

/// Where to send notifications; `None` inside when not run under systemd.
#[derive(Debug, Clone, Default)]
pub struct Notifier {
    socket: Option<String>,
    watchdog: Option<Duration>,
}

impl Notifier {
    /// Reads `NOTIFY_SOCKET`, `WATCHDOG_USEC` and `WATCHDOG_PID` from the environment.
    pub fn from_env() -> Notifier {
        Notifier::from_vars(
            std::env::var("NOTIFY_SOCKET").ok(),
            std::env::var("WATCHDOG_USEC").ok(),
            std::env::var("WATCHDOG_PID").ok(),
        )
    }

    /// As [`Notifier::from_env`], from given values (for tests).
    pub fn from_vars(
        socket: Option<String>,
        watchdog_usec: Option<String>,
        watchdog_pid: Option<String>,
    ) -> Notifier {
        let socket = socket.filter(|s| !s.is_empty());
        let for_us = match watchdog_pid.as_deref().map(str::trim) {
            None | Some("") => true,
            Some(pid) => pid.parse::<u32>().ok() == Some(std::process::id()),
        };
        let watchdog = watchdog_usec
            .and_then(|u| u.trim().parse::<u64>().ok())
            .filter(|u| *u > 0 && for_us)
            .map(|u| Duration::from_micros(u / 2));
        Notifier { socket, watchdog }
    }

    /// Whether systemd is listening.
    pub fn enabled(&self) -> bool {
        self.socket.is_some()
    }

    /// How often to send `WATCHDOG=1`, when the unit has a watchdog.
    pub fn watchdog_interval(&self) -> Option<Duration> {
        self.socket.as_ref().and(self.watchdog)
    }

    /// Sends one notification (`READY=1`, `STOPPING=1`, `STATUS=…`, newline-separated).
    ///
    /// Never blocks: it is called from the async runtime, and a listener that stopped reading
    /// (its socket's queue full) must not wedge a runtime thread. Such a notification is
    /// dropped with an error of kind [`std::io::ErrorKind::WouldBlock`].
    pub fn notify(&self, state: &str) -> std::io::Result<()> {
        let Some(name) = &self.socket else {
            return Ok(());
        };
        let addr = socket_addr(name)?;
        let sock = UnixDatagram::unbound()?;
        sock.set_nonblocking(true)?;
        sock.send_to_addr(state.as_bytes(), &addr)?;
        Ok(())
    }

    /// Tells systemd the service is up (after the receiver subscribed).
    pub fn ready(&self, status: &str) -> std::io::Result<()> {
        self.notify(&format!(
            "READY=1\nSTATUS={status}\nMAINPID={}",
            std::process::id()
        ))
    }

    /// Tells systemd the service is shutting down.
    pub fn stopping(&self) -> std::io::Result<()> {
        self.notify("STOPPING=1")
    }

    /// Pings the watchdog.
    pub fn watchdog(&self) -> std::io::Result<()> {
        self.notify("WATCHDOG=1")
    }

    /// Spawns a task pinging the watchdog at [`Notifier::watchdog_interval`] until `stop` is
    /// cancelled; does nothing without a watchdog. Must run inside a tokio runtime. The pings
    /// come from the runtime, so a wedged runtime stops them and systemd restarts the service.
    pub fn spawn_watchdog(&self, stop: tokio_util::sync::CancellationToken) {
        let Some(every) = self.watchdog_interval() else {
            return;
        };
        let me = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tick.tick() => {
                        match me.watchdog() {
                            Ok(()) => {}
                            // The listener is not reading: a ping lost, not worth a line
                            // every interval.
                            Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => {
                                tracing::debug!("systemd watchdog socket full; ping dropped")
                            }
                            Err(err) => tracing::warn!(%err, "cannot notify the systemd watchdog"),
                        }
                    }
                }
            }
        });
    }
}

fn socket_addr(name: &str) -> std::io::Result<SocketAddr> {
    if let Some(abstract_name) = name.strip_prefix('@') {
        use std::os::linux::net::SocketAddrExt;
        SocketAddr::from_abstract_name(abstract_name.as_bytes())
    } else {
        SocketAddr::from_pathname(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silent_without_a_socket() {
        let n = Notifier::from_vars(None, Some("1000000".into()), None);
        assert!(!n.enabled());
        assert_eq!(n.watchdog_interval(), None);
        n.ready("x").unwrap();
    }

    #[test]
    fn sends_datagrams_to_a_path_socket() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("notify");
        let listener = UnixDatagram::bind(&path).unwrap();
        let n = Notifier::from_vars(
            Some(path.display().to_string()),
            Some("4000000".into()),
            Some(std::process::id().to_string()),
        );
        assert_eq!(n.watchdog_interval(), Some(Duration::from_secs(2)));
        n.ready("subscribed").unwrap();
        n.stopping().unwrap();
        let mut buf = [0u8; 256];
        let len = listener.recv(&mut buf).unwrap();
        let first = std::str::from_utf8(&buf[..len]).unwrap();
        assert!(first.starts_with("READY=1\nSTATUS=subscribed\n"), "{first}");
        let len = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"STOPPING=1");
    }

    #[test]
    fn a_listener_that_stops_reading_never_blocks_the_sender() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("notify");
        let _listener = UnixDatagram::bind(&path).unwrap();
        let n = Notifier::from_vars(Some(path.display().to_string()), None, None);
        // Far more than a datagram queue holds; before the fix the send blocked once full.
        let started = std::time::Instant::now();
        let mut dropped = 0;
        for _ in 0..5000 {
            match n.watchdog() {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => dropped += 1,
                Err(e) => panic!("{e}"),
            }
        }
        assert!(dropped > 0, "the queue never filled");
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn abstract_sockets_and_foreign_watchdogs() {
        let name = format!("ssm-test-{}", uuid::Uuid::new_v4());
        use std::os::linux::net::SocketAddrExt;
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let listener = UnixDatagram::bind_addr(&addr).unwrap();
        let n = Notifier::from_vars(
            Some(format!("@{name}")),
            Some("10".into()),
            Some("1".into()),
        );
        assert_eq!(
            n.watchdog_interval(),
            None,
            "WATCHDOG_PID names another process"
        );
        n.watchdog().unwrap();
        let mut buf = [0u8; 64];
        let len = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"WATCHDOG=1");
    }
}
