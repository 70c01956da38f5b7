//! The socket a receiver child says `READY=1` on: systemd's `NOTIFY_SOCKET` protocol, as
//! `ssm receive` speaks it under systemd ([`crate::ops::notify`]).
//!
//! Guarantees:
//! - Waiting ends with `READY=1`, or with an error when the child exits first or the timeout
//!   passes (never a silent wait).
//! - The socket's file, if any, is removed when the socket is dropped; a run directory too deep
//!   for a socket path gets an abstract socket instead.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use tokio::net::UnixDatagram;
use tokio::process::Child;

/// The socket a receiver child announces its readiness on (`NOTIFY_SOCKET`, systemd's
/// protocol); the file, if any, is removed when dropped.
pub(super) struct ReadySocket {
    socket: UnixDatagram,
    /// What `NOTIFY_SOCKET` says: a path, or `@name` for an abstract socket.
    pub(super) name: String,
    path: Option<PathBuf>,
}

impl ReadySocket {
    /// Binds `dir/notify`; an abstract socket when that path is too long for a socket address
    /// (a deep `--dir`) or not valid UTF-8.
    pub(super) fn bind(dir: &Path) -> anyhow::Result<ReadySocket> {
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
    pub(super) async fn wait_until_ready(
        &self,
        child: &mut Child,
        timeout: Duration,
    ) -> anyhow::Result<()> {
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
#[cfg(test)]
mod tests {
    use super::*;
    use tokio::process::Command;

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
}
