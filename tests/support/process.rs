//! Running the `ssm` binary under test as a process: the one path to it, its output with a
//! given stdin, a tokio command with a predictable environment, free loopback ports, and
//! killing or stopping children. A child that does not do what is waited for fails the test.

use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

/// The `ssm` binary under test.
pub const SSM: &str = env!("CARGO_BIN_EXE_ssm");

/// The `ssm` binary under test.
pub fn ssm_bin() -> &'static str {
    SSM
}

/// A path as a command-line argument.
pub fn p(path: &std::path::Path) -> String {
    path.display().to_string()
}

/// A path as a UTF-8 `&str` (test paths are); anything else fails the test.
pub fn path_str(path: &std::path::Path) -> &str {
    path.to_str().expect("UTF-8 temp path")
}

/// `ssm <args>` run to the end with `stdin` written to it (then closed); its output.
pub fn ssm_output(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new(SSM)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run ssm");
    let mut input = child.stdin.take().unwrap();
    if let Some(data) = stdin {
        input.write_all(data).unwrap();
    }
    drop(input);
    child.wait_with_output().unwrap()
}

/// `ssm <args>` as a tokio command with a predictable environment (no `RUST_LOG`, no colours,
/// no stdin), killed when dropped.
pub fn ssm_command(args: &[String]) -> tokio::process::Command {
    let mut c = tokio::process::Command::new(SSM);
    c.args(args)
        .env_remove("RUST_LOG")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    c
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    l.local_addr().unwrap().port()
}

/// Waits until something accepts TCP connections on `addr`.
pub fn wait_listening(addr: SocketAddr, within: Duration) {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("nothing listens on {addr} after {within:?}");
}

/// Sends SIGKILL to a child and reaps it.
pub fn kill9(child: &mut Child) {
    let _ = child.kill(); // SIGKILL on Unix
    let _ = child.wait();
}

/// Sends SIGTERM to a child and waits for it (SIGKILL after `grace`). Returns whether it exited
/// by itself with success.
pub fn terminate(child: &mut Child, grace: Duration) -> bool {
    // SAFETY: plain kill(2) on the pid of a child we own and have not reaped yet.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
    }
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return status.success();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    kill9(child);
    false
}

/// Waits for a child; kills it and fails the test after `within`.
pub fn wait_child(c: &mut Child, within: Duration, what: &str) -> ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(st) = c.try_wait().unwrap() {
            return st;
        }
        if Instant::now() > deadline {
            kill9(c);
            panic!("{what} still running after {within:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
