//! The real `ssm broker` binary serves the stock Python `stomp.py` client: request/reply through
//! a temporary queue, ActiveMQ style (the requester subscribes to `/temp-queue/x`, the
//! responder answers to the rewritten `reply-to`) and RabbitMQ style (no subscription; the
//! `reply-to` alone creates the temp queue). Also checks that SIGTERM stops it cleanly.

use crate::support::stomppy;

use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const SCRIPT: &str = r#"
import sys, threading, stomp

host, port = sys.argv[1], int(sys.argv[2])

class Responder(stomp.ConnectionListener):
    def __init__(self, conn):
        self.conn = conn
        self.reply_to = None
    def on_message(self, frame):
        self.reply_to = frame.headers["reply-to"]
        self.conn.send(destination=self.reply_to, body="pong:" + frame.body)

class Requester(stomp.ConnectionListener):
    def __init__(self):
        self.done = threading.Event()
        self.frame = None
    def on_message(self, frame):
        self.frame = frame
        self.done.set()

resp = stomp.Connection12([(host, port)])
rl = Responder(resp)
resp.set_listener("r", rl)
resp.connect(wait=True)
resp.subscribe("/queue/req", id="req", ack="auto")

req = stomp.Connection12([(host, port)])
ql = Requester()
req.set_listener("q", ql)
req.connect(wait=True)
req.subscribe("/temp-queue/x", id="replies", ack="auto")
req.send(destination="/queue/req", body="ping", headers={"reply-to": "/temp-queue/x"})

if not ql.done.wait(10):
    print("NO REPLY")
    sys.exit(1)
f = ql.frame
print("body=" + f.body)
print("subscription=" + f.headers["subscription"])
print("destination=" + f.headers["destination"])
print("reply_to=" + rl.reply_to)

# RabbitMQ style: no SUBSCRIBE, the reply-to alone makes the temp queue.
req2 = stomp.Connection12([(host, port)])
ql2 = Requester()
req2.set_listener("q", ql2)
req2.connect(wait=True)
req2.send(destination="/queue/req", body="ping2", headers={"reply-to": "/temp-queue/y"})
if not ql2.done.wait(10):
    print("NO IMPLICIT REPLY")
    sys.exit(1)
print("implicit_body=" + ql2.frame.body)
print("implicit_subscription=" + ql2.frame.headers["subscription"])
req2.disconnect()
req.disconnect()
resp.disconnect()
"#;

use crate::support::process::free_port;

#[test]
fn ssm_broker_binary_serves_stomp_py_request_reply() {
    let python = stomppy::python();
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut broker = Command::new(crate::support::process::SSM)
        .args(["broker", "--listen", &addr.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(addr).is_err() {
        if let Some(status) = broker.try_wait().unwrap() {
            let out = broker.wait_with_output().unwrap();
            panic!(
                "ssm broker exited early ({status}): {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        assert!(Instant::now() < deadline, "ssm broker never listened");
        std::thread::sleep(Duration::from_millis(20));
    }

    let out = Command::new(&python)
        .arg("-c")
        .arg(SCRIPT)
        .arg("127.0.0.1")
        .arg(port.to_string())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();

    // SIGTERM stops the broker cleanly.
    // SAFETY: sending a signal to the child process we spawned.
    unsafe { libc::kill(broker.id() as libc::pid_t, libc::SIGTERM) };
    let broker_out = broker.wait_with_output().unwrap();
    let broker_log = String::from_utf8_lossy(&broker_out.stderr);

    assert!(
        out.status.success(),
        "stomp.py script failed: {}\nstdout:\n{stdout}\nstderr:\n{}\nbroker log:\n{broker_log}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("body=pong:ping\n"), "{stdout}");
    assert!(stdout.contains("subscription=replies\n"), "{stdout}");
    assert!(stdout.contains("destination=/temp-queue/x\n"), "{stdout}");
    assert!(
        stdout.contains("reply_to=/remote-temp-queue/"),
        "reply-to not rewritten: {stdout}"
    );
    assert!(stdout.contains("implicit_body=pong:ping2\n"), "{stdout}");
    assert!(
        stdout.contains("implicit_subscription=/temp-queue/y\n"),
        "{stdout}"
    );
    assert!(
        broker_out.status.success(),
        "ssm broker did not exit cleanly on SIGTERM: {}\n{broker_log}",
        broker_out.status
    );
    assert!(broker_log.contains("listening"), "{broker_log}");
}
