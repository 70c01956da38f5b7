//! `ssm ams-server` as a separate process, driven by our [`AmsClient`] and by argo-ams-library
//! (PyPI, the Python client every producer uses): publish, pull, acknowledge, the errors and
//! their JSON, the pull timing, the certificate-for-token exchange and renewal after a 401.

use crate::support::ams_py;

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use bytes::Bytes;
use ssm::harness::pki::Pki;
use ssm::transport::ams::{with_retries, AmsClient, AmsConfig, AmsError, RetryPolicy};

pub(crate) fn pki() -> &'static Pki {
    static PKI: OnceLock<(tempfile::TempDir, Pki)> = OnceLock::new();
    &PKI.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::generate(dir.path()).unwrap();
        (dir, pki)
    })
    .1
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

pub(crate) struct Server {
    pub(crate) child: Child,
    pub(crate) port: u16,
    pub(crate) authn_port: u16,
}

impl Server {
    pub(crate) fn start(extra: &[&str]) -> Server {
        Server::start_on(free_port(), free_port(), extra)
    }

    pub(crate) fn start_on(port: u16, authn_port: u16, extra: &[&str]) -> Server {
        let p = pki();
        let mut child = Command::new(env!("CARGO_BIN_EXE_ssm"))
            .arg("ams-server")
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--authn-listen", &format!("127.0.0.1:{authn_port}")])
            .arg("--capath")
            .arg(&p.capath)
            .arg("--tls-cert")
            .arg(&p.server.cert)
            .arg("--tls-key")
            .arg(&p.server.key)
            .args(["--topic", "gLite-APEL", "--subscription", "apel=gLite-APEL"])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        for port in [port, authn_port] {
            let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
            while TcpStream::connect(addr).is_err() {
                if let Some(status) = child.try_wait().unwrap() {
                    panic!("ssm ams-server exited early: {status}");
                }
                assert!(Instant::now() < deadline, "ssm ams-server never listened");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        Server {
            child,
            port,
            authn_port,
        }
    }

    pub(crate) fn stop(&mut self) {
        // SAFETY: kill(2) on the pid of a child we own and have not reaped yet.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let _ = self.child.wait();
    }

    fn config(&self, token: Option<&str>) -> AmsConfig {
        let p = pki();
        let mut cfg = AmsConfig::new("localhost", "accounting");
        cfg.port = self.port;
        cfg.authn_port = self.authn_port;
        cfg.token = token.map(str::to_string);
        cfg.system_roots = false;
        cfg.tls.capath = Some(p.capath.clone());
        cfg.tls.cert = Some(p.client.cert.clone());
        cfg.tls.key = Some(p.client.key.clone());
        cfg.request_timeout = Duration::from_secs(20);
        cfg
    }

    pub(crate) fn client(&self, token: Option<&str>) -> AmsClient {
        AmsClient::new(self.config(token)).unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn msg(id: &str, body: &str) -> (BTreeMap<String, String>, Bytes) {
    (
        [("empaid".to_string(), id.to_string())].into(),
        Bytes::from(body.to_string()),
    )
}

#[tokio::test]
async fn publish_pull_redeliver_ack_with_our_client() {
    let server = Server::start(&["--token", "s3cret"]);
    let c = server.client(Some("s3cret"));
    let ids = c
        .publish(
            "gLite-APEL",
            &[
                msg("a", "first"),
                msg("b", "second\0binary\u{7f}"),
                msg("c", "third"),
            ],
        )
        .await
        .unwrap();
    assert_eq!(ids, ["0", "1", "2"]);

    let got = c.pull("apel", 2, true).await.unwrap();
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].ack_id, "projects/accounting/subscriptions/apel:0");
    assert_eq!(got[0].message_id, "0");
    assert_eq!(got[0].attributes["empaid"], "a");
    assert_eq!(
        got[1].body.as_ref().unwrap(),
        &Bytes::from("second\0binary\u{7f}")
    );
    assert!(got[0].publish_time.ends_with('Z'));
    // Not acknowledged: the same ones again.
    let again = c.pull("apel", 2, true).await.unwrap();
    assert_eq!(again, got);
    // Cumulative: acking the second acks both.
    c.acknowledge("apel", &[got[1].ack_id.clone()])
        .await
        .unwrap();
    let rest = c.pull("apel", 10, true).await.unwrap();
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0].attributes["empaid"], "c");
    c.acknowledge("apel", &[rest[0].ack_id.clone()])
        .await
        .unwrap();
    assert!(c.pull("apel", 10, true).await.unwrap().is_empty());
    let off = c.offsets("apel").await.unwrap();
    assert_eq!((off.min, off.max, off.current), (3, 3, 3));
    // The same ack again: nothing pending, refused for good (not worth retrying).
    let e = c
        .acknowledge("apel", &[rest[0].ack_id.clone()])
        .await
        .unwrap_err();
    assert!(matches!(e, AmsError::AckRefused { .. }), "{e}");
    assert!(!e.is_retryable());

    // The deprecated ?key= form works as well.
    let mut cfg = server.config(Some("s3cret"));
    cfg.key_in_url = true;
    let k = AmsClient::new(cfg).unwrap();
    assert_eq!(
        k.publish("gLite-APEL", &[msg("d", "x")]).await.unwrap(),
        ["3"]
    );
}

#[tokio::test]
async fn errors_say_what_to_fix() {
    let server = Server::start(&[
        "--token",
        "s3cret",
        "--max-message-bytes",
        "100",
        "--role-token",
        "publisher:pubonly",
    ]);
    let c = server.client(Some("s3cret"));
    let e = c.publish("nope", &[msg("a", "x")]).await.unwrap_err();
    assert!(matches!(e, AmsError::NotFound { .. }), "{e}");
    let text = e.to_string();
    assert!(text.contains("topic nope in project accounting"), "{text}");
    assert!(text.contains("[messaging] destination"), "{text}");
    let e = c.pull("nosub", 1, true).await.unwrap_err();
    assert!(e.to_string().contains("subscription nosub"), "{e}");
    assert_eq!(e.status(), Some(404));

    let wrong = server.client(Some("wrong"));
    let e = wrong
        .publish("gLite-APEL", &[msg("a", "x")])
        .await
        .unwrap_err();
    assert!(matches!(e, AmsError::Unauthorized { .. }), "{e}");
    assert!(e.to_string().contains("check [messaging] token"), "{e}");
    assert!(!e.is_retryable());

    let mut cfg = server.config(Some("s3cret"));
    cfg.project = "other".into();
    let e = AmsClient::new(cfg)
        .unwrap()
        .publish("gLite-APEL", &[msg("a", "x")])
        .await
        .unwrap_err();
    assert!(e.to_string().contains("ams_project"), "{e}");

    let big = "x".repeat(200);
    let e = c
        .publish("gLite-APEL", &[msg("big", &big)])
        .await
        .unwrap_err();
    assert!(matches!(e, AmsError::TooLarge { .. }), "{e}");
    assert!(!e.is_retryable());

    let publisher = server.client(Some("pubonly"));
    publisher
        .publish("gLite-APEL", &[msg("a", "x")])
        .await
        .unwrap();
    let e = publisher.pull("apel", 1, true).await.unwrap_err();
    assert!(matches!(e, AmsError::Forbidden { .. }), "{e}");

    // Nothing listens: a connection error, retryable, and the retry helper gives up in time.
    let mut cfg = server.config(Some("s3cret"));
    cfg.port = free_port();
    let gone = AmsClient::new(cfg).unwrap();
    let policy = RetryPolicy {
        attempts: 3,
        first_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(20),
    };
    let e = with_retries(&policy, || gone.pull("apel", 1, true))
        .await
        .unwrap_err();
    assert!(matches!(e, AmsError::Connect { .. }), "{e}");
    assert!(e.is_retryable());

    // A server certificate of a CA we do not trust: refused at the handshake.
    let mut cfg = server.config(Some("s3cret"));
    cfg.tls.capath = None;
    cfg.tls.cafile = Some(pki().untrusted_ca.cert.clone());
    let e = AmsClient::new(cfg)
        .unwrap()
        .pull("apel", 1, true)
        .await
        .unwrap_err();
    assert!(matches!(e, AmsError::Connect { .. }), "{e}");
    assert!(e.to_string().contains("certificate"), "{e}");
}

#[tokio::test]
async fn late_ack_gets_408_and_the_messages_come_again() {
    let server = Server::start(&["--token", "t", "--ack-deadline", "1"]);
    let c = server.client(Some("t"));
    c.publish("gLite-APEL", &[msg("a", "x"), msg("b", "y")])
        .await
        .unwrap();
    let got = c.pull("apel", 10, true).await.unwrap();
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let ids: Vec<String> = got.iter().map(|p| p.ack_id.clone()).collect();
    let e = c.acknowledge("apel", &ids).await.unwrap_err();
    assert!(matches!(e, AmsError::AckDeadlineExceeded { .. }), "{e}");
    assert!(!e.is_retryable());
    let again = c.pull("apel", 10, true).await.unwrap();
    assert_eq!(again, got);
    // A longer deadline, then an ack in time.
    c.modify_ack_deadline("apel", 30).await.unwrap();
    let again = c.pull("apel", 10, true).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let ids: Vec<String> = again.iter().map(|p| p.ack_id.clone()).collect();
    c.acknowledge("apel", &ids).await.unwrap();
}

#[tokio::test]
async fn pull_timing_follows_the_real_server() {
    let server = Server::start(&["--token", "t", "--pull-wait-ms", "1500"]);
    let c = server.client(Some("t"));
    // Nothing waiting: an empty answer at once, whatever returnImmediately says.
    let t = Instant::now();
    assert!(c.pull("apel", 10, false).await.unwrap().is_empty());
    assert!(
        t.elapsed() < Duration::from_millis(1000),
        "{:?}",
        t.elapsed()
    );
    c.publish("gLite-APEL", &[msg("a", "x")]).await.unwrap();
    // returnImmediately "true": what is waiting, at once.
    let t = Instant::now();
    assert_eq!(c.pull("apel", 10, true).await.unwrap().len(), 1);
    assert!(
        t.elapsed() < Duration::from_millis(1000),
        "{:?}",
        t.elapsed()
    );
    // "false" with fewer than maxMessages waiting: collects for the whole wait.
    let t = Instant::now();
    assert_eq!(c.pull("apel", 10, false).await.unwrap().len(), 1);
    assert!(
        t.elapsed() >= Duration::from_millis(1400),
        "{:?}",
        t.elapsed()
    );
    // ... and returns as soon as maxMessages are there.
    let c2 = c.clone();
    let publisher = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        c2.publish("gLite-APEL", &[msg("b", "y")]).await.unwrap();
    });
    let t = Instant::now();
    assert_eq!(c.pull("apel", 2, false).await.unwrap().len(), 2);
    assert!(
        t.elapsed() < Duration::from_millis(1400),
        "{:?}",
        t.elapsed()
    );
    publisher.await.unwrap();
}

#[tokio::test]
async fn token_exchange_and_renewal_after_401() {
    let p = pki();
    let dn_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(dn_file.path(), format!("{}\n", p.client.dn)).unwrap();
    let dn_arg = dn_file.path().to_str().unwrap().to_string();
    let mut server = Server::start(&["--token", "first", "--dn-file", &dn_arg]);
    let c = server.client(None);
    assert_eq!(c.token().await.unwrap(), "first");
    c.publish("gLite-APEL", &[msg("a", "x")]).await.unwrap();

    // A DN without a binding: 404, and the message points at GOCDB.
    let mut cfg = server.config(None);
    let other = p.issue_client("unbound").unwrap();
    cfg.tls.cert = Some(other.cert.clone());
    cfg.tls.key = Some(other.key.clone());
    let e = AmsClient::new(cfg).unwrap().token().await.unwrap_err();
    assert!(matches!(e, AmsError::Authn { status: 404, .. }), "{e}");
    let text = e.to_string();
    assert!(text.contains("GOCDB") && text.contains(&other.dn), "{text}");

    // A revoked certificate: the real service's 403.
    let mut cfg = server.config(None);
    cfg.tls.cert = Some(p.revoked_client.cert.clone());
    cfg.tls.key = Some(p.revoked_client.key.clone());
    let e = AmsClient::new(cfg).unwrap().token().await.unwrap_err();
    assert!(matches!(e, AmsError::Authn { status: 403, .. }), "{e}");

    // A certificate of an untrusted CA does not get through the handshake.
    let mut cfg = server.config(None);
    cfg.tls.cert = Some(p.untrusted_client.cert.clone());
    cfg.tls.key = Some(p.untrusted_client.key.clone());
    let e = AmsClient::new(cfg).unwrap().token().await.unwrap_err();
    assert!(matches!(e, AmsError::Connect { .. }), "{e}");

    // No token and no certificate: refused at set-up with what to configure.
    let mut cfg = server.config(None);
    cfg.tls.cert = None;
    cfg.tls.key = None;
    let e = AmsClient::new(cfg).unwrap_err();
    assert!(e.to_string().contains("[messaging] token"), "{e}");

    // The token is revoked (the server comes back with another one): the client's next call
    // gets 401, exchanges its certificate again and goes on.
    let (port, authn) = (server.port, server.authn_port);
    server.stop();
    let _server = Server::start_on(port, authn, &["--token", "second", "--dn-file", &dn_arg]);
    let policy = RetryPolicy {
        attempts: 3,
        first_delay: Duration::from_millis(50),
        max_delay: Duration::from_millis(100),
    };
    let batch = [msg("b", "y")];
    let ids = with_retries(&policy, || c.publish("gLite-APEL", &batch))
        .await
        .unwrap();
    assert_eq!(ids, ["0"]);
    assert_eq!(c.token().await.unwrap(), "second");

    // A configured token that is refused is not renewed: 401 ends it.
    let fixed = server_client_with(port, authn, "first");
    let e = fixed
        .publish("gLite-APEL", &[msg("c", "z")])
        .await
        .unwrap_err();
    assert!(matches!(e, AmsError::Unauthorized { .. }), "{e}");
}

fn server_client_with(port: u16, authn_port: u16, token: &str) -> AmsClient {
    let p = pki();
    let mut cfg = AmsConfig::new("localhost", "accounting");
    cfg.port = port;
    cfg.authn_port = authn_port;
    cfg.token = Some(token.to_string());
    cfg.system_roots = false;
    cfg.tls.capath = Some(p.capath.clone());
    AmsClient::new(cfg).unwrap()
}

/// argo-ams-library against the server: publish, pull, ack, offsets, errors (the exact JSON
/// of the real handler tests), the certificate exchange; and interop with our client.
const PY_SCRIPT: &str = r#"
import json, sys, time
import requests
from argo_ams_library import (ArgoMessagingService, AmsMessage, AmsServiceException,
                              AmsTimeoutException)

port, authn_port, cert, key = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
endpoint = "localhost:" + port
ams = ArgoMessagingService(endpoint=endpoint, token="s3cret", project="accounting")

def check(name, cond, detail=""):
    print(("ok " if cond else "FAIL ") + name + ("" if cond else " " + repr(detail)))

r = ams.publish("gLite-APEL", [AmsMessage(data="hello", attributes={"empaid": "m1"}),
                                AmsMessage(data="world", attributes={"empaid": "m2"})])
check("publish", r == {"messageIds": ["0", "1"]}, r)

msgs = ams.pull_sub("apel", 10, return_immediately=True)
check("pull", [m.get_data() for _, m in msgs] == [b"hello", b"world"], msgs)
check("pull_attrs", [m.get_attr()["empaid"] for _, m in msgs] == ["m1", "m2"])
check("pull_ids", [m.get_msgid() for _, m in msgs] == ["0", "1"])
check("ack_id", msgs[0][0] == "projects/accounting/subscriptions/apel:0", msgs[0][0])
again = ams.pull_sub("apel", 10, return_immediately=True)
check("redelivered", [i for i, _ in again] == [i for i, _ in msgs])
check("ack", ams.ack_sub("apel", [msgs[-1][0]]) is True)
check("empty_after_ack", ams.pull_sub("apel", 10, return_immediately=True) == [])
check("offsets", ams.getoffsets_sub("apel") == {"max": 2, "min": 2, "current": 2},
      ams.getoffsets_sub("apel"))

try:
    ams.publish("nope", AmsMessage(data="x"))
    check("publish_404", False)
except AmsServiceException as e:
    check("publish_404", e.code == 404 and "Topic doesn't exist" in e.msg, e.msg)

bad = ArgoMessagingService(endpoint=endpoint, token="wrong", project="accounting")
try:
    bad.pull_sub("apel", 1)
    check("pull_401", False)
except AmsServiceException as e:
    check("pull_401", e.code == 401 and e.status == "UNAUTHORIZED", e.msg)

try:
    ams.publish("gLite-APEL", AmsMessage(data="x" * 300))
    check("publish_413", False)
except AmsServiceException as e:
    check("publish_413", e.code == 413 and "Message size is too large" in e.msg, e.msg)

# Exact bytes of the real server (handlers/*_test.go) for errors the library cannot provoke.
url = "https://" + endpoint + "/v1/projects/accounting/subscriptions/apel:pull"
r = requests.post(url, data='{"maxMessages":1}', headers={"x-api-key": "s3cret"})
check("pull_numbers_400", r.status_code == 400 and r.text ==
      '{\n   "error": {\n      "code": 400,\n      "message": "Invalid Pull Parameters Arguments",\n      "status": "INVALID_ARGUMENT"\n   }\n}', r.text)
r = requests.post(url.replace("apel:pull", "foo:pull"), data='{}', headers={"x-api-key": "s3cret"})
check("sub_404_json", r.status_code == 404 and r.text ==
      '{\n   "error": {\n      "code": 404,\n      "message": "Subscription doesn\'t exist",\n      "status": "NOT_FOUND"\n   }\n}', r.text)
check("content_type", r.headers.get("content-type") == "application/json; charset=utf-8",
      r.headers.get("content-type"))
r = requests.post(url.replace(":pull", ":modifyAckDeadline"), data='{"ackDeadlineSeconds":700}',
                  headers={"x-api-key": "s3cret"})
check("modack_400", r.status_code == 400 and json.loads(r.text)["error"]["message"] ==
      "Invalid ackDeadlineSeconds(needs value between 0 and 600) Arguments", r.text)
r = requests.post(url.replace(":pull", ":modifyAckDeadline"), data='{"ackDeadlineSeconds":1}',
                  headers={"x-api-key": "s3cret"})
check("modack_200", r.status_code == 200 and r.text == "", r.text)
r = requests.get(url.replace(":pull", ":offsets") + "?key=s3cret")
check("key_param", r.status_code == 200, r.text)

# A late ack: 408, the library's timeout exception; the messages come again.
ams.publish("gLite-APEL", AmsMessage(data="late", attributes={"empaid": "m3"}))
late = ams.pull_sub("apel", 10, return_immediately=True)
time.sleep(2.1)
try:
    ams.ack_sub("apel", [late[-1][0]])
    check("ack_408", False)
except AmsTimeoutException as e:
    check("ack_408", e.code == 408 and "ack timeout" in e.msg, e.msg)
check("late_again", [i for i, _ in ams.pull_sub("apel", 10, return_immediately=True)] ==
      [i for i, _ in late])

# The certificate exchange, through the library's own code (its URL takes the bare host).
ams.endpoint, ams.authn_port = "localhost", authn_port
token = ams.auth_via_cert(cert, key)
check("authx509", token == "s3cret", token)
ams.endpoint = endpoint
r = requests.get("https://localhost:%d/v1/service-types/ams/hosts/localhost:authx509" % authn_port)
check("authx509_no_cert", r.status_code == 400 and r.text ==
      '{\n "error": {\n  "message": "No certificate provided",\n  "code": 400,\n  "status": "BAD REQUEST"\n }\n}', r.text)

# Interop: our client published "from-rust" before this script started.
got = ams.pull_sub("rust", 10, return_immediately=True)
check("from_rust", [m.get_data() for _, m in got] == [b"from-rust\x00\xff"], got)
ams.ack_sub("rust", [got[-1][0]])
ams.publish("interop", AmsMessage(data="from-python", attributes={"empaid": "py1"}))
print("done")
"#;

#[tokio::test]
async fn argo_ams_library_against_the_server() {
    let python = ams_py::python();
    let p = pki();
    let server = Server::start(&[
        "--token",
        "s3cret",
        "--max-message-bytes",
        "200",
        "--ack-deadline",
        "1",
        "--subscription",
        "rust=interop",
        "--subscription",
        "py=interop",
    ]);
    let c = server.client(Some("s3cret"));
    c.publish(
        "interop",
        &[(
            [("empaid".to_string(), "r1".to_string())].into(),
            Bytes::from_static(b"from-rust\x00\xff"),
        )],
    )
    .await
    .unwrap();
    let out = tokio::process::Command::new(&python)
        .arg("-c")
        .arg(PY_SCRIPT)
        .arg(server.port.to_string())
        .arg(server.authn_port.to_string())
        .arg(&p.client.cert)
        .arg(&p.client.key)
        .env("REQUESTS_CA_BUNDLE", &p.ca.cert)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.ends_with("done\n") && !stdout.contains("FAIL"),
        "script failed ({}):\nstdout:\n{stdout}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    // What the library published, our client reads (both on the "interop" topic).
    let got = c.pull("py", 10, true).await.unwrap();
    let bodies: Vec<_> = got.iter().map(|m| m.body.clone().unwrap()).collect();
    assert_eq!(
        bodies,
        [
            Bytes::from_static(b"from-rust\x00\xff"),
            Bytes::from("from-python")
        ]
    );
    assert_eq!(got[1].attributes["empaid"], "py1");
}

#[tokio::test]
async fn connections_are_kept_alive_in_process() {
    use ssm::ams_server::{self, AmsServerConfig, Role, StateConfig};
    let p = pki();
    let state = StateConfig {
        tokens: vec![("t".into(), Role::Both)],
        topics: vec!["gLite-APEL".into()],
        subscriptions: vec![("apel".into(), "gLite-APEL".into())],
        ..StateConfig::default()
    };
    let mut server_cfg = AmsServerConfig::new(
        "127.0.0.1:0".parse().unwrap(),
        p.server.cert.clone(),
        p.server.key.clone(),
        state,
    );
    server_cfg.fault_503_every = 3;
    let handle = ams_server::start(server_cfg).await.unwrap();
    let mut cfg = AmsConfig::new("localhost", "accounting");
    cfg.port = handle.local_addr().port();
    cfg.token = Some("t".into());
    cfg.system_roots = false;
    cfg.tls.capath = Some(p.capath.clone());
    let c = AmsClient::new(cfg).unwrap();
    // Every third request gets the balancer's HTML 503: the retry helper gets through.
    let policy = RetryPolicy {
        attempts: 3,
        first_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(5),
    };
    let mut storms = 0;
    for i in 0..30 {
        let batch = [msg(&i.to_string(), "x")];
        match c.publish("gLite-APEL", &batch).await {
            Ok(_) => {}
            Err(e) => {
                assert!(matches!(e, AmsError::Server { status: 503, .. }), "{e}");
                assert!(e.to_string().contains("503 Service Unavailable"), "{e}");
                storms += 1;
                with_retries(&policy, || c.publish("gLite-APEL", &batch))
                    .await
                    .unwrap();
            }
        }
    }
    assert!(storms >= 9, "{storms}");
    for _ in 0..10 {
        let got = with_retries(&policy, || c.pull("apel", 3, true))
            .await
            .unwrap();
        let ids: Vec<String> = got.iter().map(|m| m.ack_id.clone()).collect();
        with_retries(&policy, || c.acknowledge("apel", &ids))
            .await
            .unwrap();
    }
    assert_eq!(handle.connections(), 1, "one TLS connection for all calls");
    assert_eq!(handle.topic_max("gLite-APEL"), Some(30));
    handle.shutdown().await;
}

/// A load balancer's HTML 503 (every second request here) is what the library calls a
/// balancer error: raised without retries, retried through with them.
const PY_503: &str = r#"
import sys
from argo_ams_library import ArgoMessagingService, AmsMessage, AmsBalancerException
ams = ArgoMessagingService(endpoint="localhost:" + sys.argv[1], token="t", project="accounting")
ams.publish("gLite-APEL", AmsMessage(data="one"))          # request 1: through
try:
    ams.publish("gLite-APEL", AmsMessage(data="two"))      # request 2: 503
    print("FAIL no 503")
except AmsBalancerException as e:
    print("ok 503" if e.code == 503 and "503 Service Unavailable" in e.msg else "FAIL " + e.msg)
ams.publish("gLite-APEL", AmsMessage(data="three"))        # request 3: through
r = ams.publish("gLite-APEL", AmsMessage(data="four"), retry=2, retrysleep=0)  # 4: 503, 5: ok
print("ok retried" if r == {"messageIds": ["2"]} else "FAIL " + repr(r))
"#;

#[test]
fn argo_ams_library_meets_balancer_503s() {
    let python = ams_py::python();
    let server = Server::start(&["--token", "t", "--fault-503-every", "2"]);
    let out = Command::new(&python)
        .arg("-c")
        .arg(PY_503)
        .arg(server.port.to_string())
        .env("REQUESTS_CA_BUNDLE", &pki().ca.cert)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout == "ok 503\nok retried\n",
        "script failed ({}):\nstdout:\n{stdout}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The receiving adapter reads the subscription's deadline (here 2 s, not the service's
/// default 10 s) and extends it before it runs out: a batch held unsettled for 3 s is still
/// acknowledged in time, and the subscription's own deadline is set back on close.
#[tokio::test]
async fn the_adapter_extends_the_subscriptions_own_deadline_before_it_runs_out() {
    use ssm::transport::ams::{AmsConnection, AmsSettings};
    use ssm::transport::{AckToken, Acknowledge, Event};

    let server = Server::start(&["--token", "t", "--ack-deadline", "2"]);
    let c = server.client(Some("t"));
    assert_eq!(
        c.subscription("apel").await.unwrap().ack_deadline_seconds,
        2
    );
    c.publish("gLite-APEL", &[msg("a", "x"), msg("b", "y")])
        .await
        .unwrap();

    let mut conn = AmsConnection::connect(&AmsSettings::new(server.config(Some("t"))))
        .await
        .unwrap();
    conn.subscribe("apel", Acknowledge::Client { window: 10 })
        .await
        .unwrap();
    let publisher = conn.publisher();
    let mut acks = Vec::new();
    while acks.len() < 2 {
        match tokio::time::timeout(Duration::from_secs(10), conn.recv())
            .await
            .unwrap()
            .unwrap()
        {
            Event::Delivery(d) => match d.ack {
                AckToken::Ams(a) => acks.push(a),
                other => panic!("not an AMS ack: {other:?}"),
            },
            other => panic!("unexpected {other:?}"),
        }
    }
    // Past the subscription's 2 s: only an extension made in time keeps the ack valid.
    tokio::time::sleep(Duration::from_millis(3000)).await;
    let during = c.subscription("apel").await.unwrap().ack_deadline_seconds;
    assert!(during >= 60, "deadline in force while unsettled: {during}");
    for a in &acks {
        publisher.ack(a).unwrap();
    }
    // Acknowledged (not a 408): the subscription's offset moves past both messages.
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let o = c.offsets("apel").await.unwrap();
        if o.current == 2 {
            break;
        }
        assert!(Instant::now() < until, "never acknowledged: {o:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    conn.close().await.unwrap();
    assert_eq!(
        c.subscription("apel").await.unwrap().ack_deadline_seconds,
        2
    );
}

/// `GET` of a subscription and of a topic, as the real server answers them; unknown names 404.
#[tokio::test]
async fn subscription_and_topic_descriptions() {
    let server = Server::start(&["--token", "t"]);
    let c = server.client(Some("t"));
    let info = c.subscription("apel").await.unwrap();
    assert_eq!(info.name, "/projects/accounting/subscriptions/apel");
    assert_eq!(info.topic, "/projects/accounting/topics/gLite-APEL");
    assert_eq!(info.ack_deadline_seconds, 10);
    assert!(info.created_on.ends_with('Z'), "{}", info.created_on);
    assert_eq!(
        c.topic("gLite-APEL").await.unwrap().name,
        "/projects/accounting/topics/gLite-APEL"
    );
    let e = c.subscription("nope").await.unwrap_err();
    assert!(matches!(e, AmsError::NotFound { .. }), "{e}");
    assert!(e.to_string().contains("subscription nope"), "{e}");
    let e = c.topic("nope").await.unwrap_err();
    assert!(e.to_string().contains("topic nope"), "{e}");
    let e = server
        .client(Some("wrong"))
        .subscription("apel")
        .await
        .unwrap_err();
    assert!(matches!(e, AmsError::Unauthorized { .. }), "{e}");
}
