//! `ssm send` / `ssm receive` over AMS through `ssm ams-server`, with Python SSM 4.0 style
//! configuration files (`protocol: AMS`, `[broker] host`, `[messaging] ams_project`,
//! `destination`, `token`).

use std::path::Path;
use std::process::{Command, Output};

use crate::ams_server::{pki, Server};
use crate::support::e2e::records;
use crate::support::faults::report;
use crate::support::messages::{assert_exactly_once, Tally};
use ssm::queue::MessageStore;

pub(crate) const TOKEN: &str = "s3cret-token";

pub(crate) fn p(path: &Path) -> String {
    path.to_str().unwrap().to_string()
}

pub(crate) fn sender_cfg(
    dir: &Path,
    server: &Server,
    token: &str,
    outq: &Path,
) -> std::path::PathBuf {
    let pk = pki();
    // As the Python SSM 4.0's sender.cfg has it (port given and unused).
    let text = format!(
        "[sender]\nprotocol: AMS\n\n[broker]\nhost: localhost:{}\nport: 443\n\n[certificates]\n\
         certificate: {}\nkey: {}\ncapath: {}\n\n[messaging]\nams_project: accounting\n\
         token: {token}\ndestination: gLite-APEL\npath: {}\npath_type: dirq\n\n[logging]\n\
         logfile: {}\nlevel: INFO\nconsole: true\n",
        server.port,
        p(&pk.client.cert),
        p(&pk.client.key),
        p(&pk.capath),
        p(outq),
        p(&dir.join("sender.log")),
    );
    let f = dir.join("sender.cfg");
    std::fs::write(&f, text).unwrap();
    f
}

pub(crate) fn receiver_cfg(
    dir: &Path,
    server: &Server,
    token: &str,
    store: &Path,
) -> std::path::PathBuf {
    let pk = pki();
    let text = format!(
        "[receiver]\nprotocol: AMS\n\n[broker]\nhost: localhost:{}\nport: 443\n\n[certificates]\n\
         certificate: {}\nkey: {}\ncapath: {}\ncheck_crls: false\n\n[messaging]\n\
         ams_project: accounting\ntoken: {token}\ndestination: apel\npath: {}\n\n[logging]\n\
         logfile: {}\nlevel: INFO\nconsole: true\n",
        server.port,
        p(&pk.server.cert),
        p(&pk.server.key),
        p(&pk.capath),
        p(store),
        p(&dir.join("receiver.log")),
    );
    let f = dir.join("receiver.cfg");
    std::fs::write(&f, text).unwrap();
    std::fs::write(dir.join("dns"), format!("{}\n", pk.client.dn)).unwrap();
    f
}

pub(crate) fn ssm(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ssm"))
        .args(args)
        .output()
        .unwrap()
}

fn enqueue(dir: &Path, outq: &Path, n: usize, size: usize) -> Vec<Vec<u8>> {
    let mut bodies = Vec::new();
    let mut args = vec!["enqueue".to_string(), "--path".to_string(), p(outq)];
    for i in 0..n {
        let f = dir.join(format!("m{i}"));
        let mut body = format!("APEL-individual-job-message: v0.3\nSite: ams-{i}\n").into_bytes();
        body.resize(body.len() + size, b'x');
        std::fs::write(&f, &body).unwrap();
        args.push(p(&f));
        bodies.push(body);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = ssm(&args);
    assert!(out.status.success(), "enqueue: {out:?}");
    bodies
}

/// A fault-report line (`fault=<name> broker=ams-server ...`) for what was queued and what was
/// stored, then the exactly-once check.
fn report_and_check(fault: &str, bodies: &[Vec<u8>], stored: Vec<Vec<u8>>) {
    let t = Tally::of(bodies.iter().cloned(), stored.iter().cloned());
    report(&t.line(fault, "ams-server"));
    assert_exactly_once(&format!("[{fault}]"), bodies, stored);
}

fn stored(store: &Path) -> Vec<Vec<u8>> {
    records(&MessageStore::open(store).unwrap().incoming)
        .into_iter()
        .map(|r| r.body)
        .collect()
}

#[test]
fn send_and_receive_with_python_style_configs() {
    const N: usize = 30;
    let server = Server::start(&["--token", TOKEN]);
    let dir = tempfile::tempdir().unwrap();
    let outq = dir.path().join("outq");
    let store = dir.path().join("store");
    let bodies = enqueue(dir.path(), &outq, N, 2000);

    let scfg = sender_cfg(dir.path(), &server, TOKEN, &outq);
    let out = ssm(&["send", "-c", &p(&scfg)]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "send:\n{err}");
    assert!(err.contains(", Argo ID: "), "send log:\n{err}");
    assert!(
        err.contains(&format!("sent {N}, acked {N}, rejected 0")),
        "send:\n{err}"
    );

    let rcfg = receiver_cfg(dir.path(), &server, TOKEN, &store);
    let out = ssm(&[
        "receive",
        "-c",
        &p(&rcfg),
        "-d",
        &p(&dir.path().join("dns")),
        "--max-messages",
        &N.to_string(),
        "--for",
        "60",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "receive:\n{err}");
    if std::env::var_os("AMS_WIRE_SHOW").is_some() {
        eprintln!("{err}");
    }
    assert_exactly_once("[ams]", &bodies, stored(&store));

    // Everything was acknowledged: a second receiver gets nothing.
    let store2 = dir.path().join("store2");
    let rcfg = receiver_cfg(dir.path(), &server, TOKEN, &store2);
    let out = ssm(&[
        "receive",
        "-c",
        &p(&rcfg),
        "-d",
        &p(&dir.path().join("dns")),
        "--for",
        "2",
    ]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(stored(&store2).is_empty());
}

#[test]
fn a_message_too_large_goes_to_the_reject_queue_and_the_rest_are_sent() {
    let server = Server::start(&["--token", TOKEN, "--max-message-bytes", "20000"]);
    let dir = tempfile::tempdir().unwrap();
    let outq = dir.path().join("outq");
    let small = enqueue(dir.path(), &outq, 5, 1000);
    let big_dir = dir.path().join("big");
    std::fs::create_dir(&big_dir).unwrap();
    enqueue(&big_dir, &outq, 1, 40000);
    let scfg = sender_cfg(dir.path(), &server, TOKEN, &outq);
    let out = ssm(&["send", "-c", &p(&scfg)]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("too large"), "send:\n{err}");
    let reject = ssm::queue::Dirq::open(&outq.join("reject")).unwrap();
    assert_eq!(records(&reject).len(), 1, "send:\n{err}");

    let store = dir.path().join("store");
    let rcfg = receiver_cfg(dir.path(), &server, TOKEN, &store);
    let out = ssm(&[
        "receive",
        "-c",
        &p(&rcfg),
        "-d",
        &p(&dir.path().join("dns")),
        "--max-messages",
        "5",
        "--for",
        "30",
    ]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    // Published one by one after the 413, the earlier ones of the batch may exist twice on
    // the service; the receiver stores each once.
    report_and_check("ams-413", &small, stored(&store));
}

#[test]
fn a_wrong_token_ends_the_run_saying_what_to_fix() {
    let server = Server::start(&["--token", TOKEN]);
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let rcfg = receiver_cfg(dir.path(), &server, "wrong", &store);
    let out = ssm(&[
        "receive",
        "-c",
        &p(&rcfg),
        "-d",
        &p(&dir.path().join("dns")),
        "--for",
        "30",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("token"), "{err}");
}

#[test]
fn ssm_v1_over_ams_is_a_configuration_error() {
    let server = Server::start(&["--token", TOKEN]);
    let dir = tempfile::tempdir().unwrap();
    let outq = dir.path().join("outq");
    let scfg = sender_cfg(dir.path(), &server, TOKEN, &outq);
    let mut text = std::fs::read_to_string(&scfg).unwrap();
    text = text.replace("path_type: dirq", "path_type: dirq\nssm_version: 1");
    std::fs::write(&scfg, text).unwrap();
    let out = ssm(&["send", "-c", &p(&scfg)]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("reply channel"), "{err}");
}

fn receive_for(dir: &Path, cfg: &Path, secs: u64) -> Output {
    ssm(&[
        "receive",
        "-c",
        &p(cfg),
        "-d",
        &p(&dir.join("dns")),
        "--for",
        &secs.to_string(),
    ])
}

#[test]
fn storms_of_503_and_acks_after_the_deadline_lose_nothing_and_store_once() {
    const N: usize = 150;
    // Every third request a balancer's 503; a 1 s deadline that batch settling outlasts.
    let server = Server::start(&[
        "--token",
        TOKEN,
        "--fault-503-every",
        "3",
        "--ack-deadline",
        "1",
    ]);
    let dir = tempfile::tempdir().unwrap();
    let outq = dir.path().join("outq");
    let store = dir.path().join("store");
    let bodies = enqueue(dir.path(), &outq, N, 5000);
    let scfg = sender_cfg(dir.path(), &server, TOKEN, &outq);
    let out = ssm(&["send", "-c", &p(&scfg)]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "send:\n{err}");
    let rcfg = receiver_cfg(dir.path(), &server, TOKEN, &store);
    let out = ssm(&[
        "receive",
        "-c",
        &p(&rcfg),
        "-d",
        &p(&dir.path().join("dns")),
        "--max-messages",
        &N.to_string(),
        "--for",
        "120",
    ]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    // Whatever came again after a late ack is recognised; a second run finds nothing new.
    let out = receive_for(dir.path(), &rcfg, 3);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    report_and_check("ams-503-late-ack", &bodies, stored(&store));
}

#[test]
fn a_receiver_killed_between_store_and_ack_stores_each_once_after_restart() {
    const N: usize = 200;
    let server = Server::start(&["--token", TOKEN]);
    let dir = tempfile::tempdir().unwrap();
    let outq = dir.path().join("outq");
    let store = dir.path().join("store");
    let bodies = enqueue(dir.path(), &outq, N, 5000);
    let scfg = sender_cfg(dir.path(), &server, TOKEN, &outq);
    let out = ssm(&["send", "-c", &p(&scfg)]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let rcfg = receiver_cfg(dir.path(), &server, TOKEN, &store);
    let mut child = Command::new(env!("CARGO_BIN_EXE_ssm"))
        .args([
            "receive",
            "-c",
            &p(&rcfg),
            "-d",
            &p(&dir.path().join("dns")),
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let incoming = MessageStore::open(&store).unwrap().incoming;
    while incoming.names().map_or(0, |n| n.len()) < 30 {
        assert!(std::time::Instant::now() < deadline, "nothing stored");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let killed_at = stored(&store).len();
    assert!(killed_at < N, "all stored before the kill");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while stored(&store).len() < N && std::time::Instant::now() < deadline {
        let out = receive_for(dir.path(), &rcfg, 5);
        assert_eq!(out.status.code(), Some(0), "{out:?}");
    }
    report_and_check("ams-receiver-kill9", &bodies, stored(&store));
}

#[test]
fn the_server_killed_and_restarted_leaves_the_queue_and_sends_later() {
    const N: usize = 20;
    let mut server = Server::start(&["--token", TOKEN]);
    let dir = tempfile::tempdir().unwrap();
    let outq = dir.path().join("outq");
    let store = dir.path().join("store");
    let bodies = enqueue(dir.path(), &outq, N, 1000);
    let scfg = sender_cfg(dir.path(), &server, TOKEN, &outq);
    let (port, authn_port) = (server.port, server.authn_port);
    server.stop();
    let out = ssm(&["send", "-c", &p(&scfg)]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let outgoing = ssm::queue::Outgoing::open(&outq, ssm::queue::PathType::QueueSimple).unwrap();
    assert_eq!(outgoing.count().unwrap(), N, "queue kept");
    let server = Server::start_on(port, authn_port, &["--token", TOKEN]);
    let out = ssm(&["send", "-c", &p(&scfg)]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(outgoing.count().unwrap(), 0);
    let rcfg = receiver_cfg(dir.path(), &server, TOKEN, &store);
    let out = receive_for(dir.path(), &rcfg, 4);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    report_and_check("ams-server-restart", &bodies, stored(&store));
}

#[test]
fn certificate_auth_exchanges_the_host_certificate_for_a_token() {
    const N: usize = 10;
    let dir = tempfile::tempdir().unwrap();
    let pk = pki();
    // Both hosts' DNs bound on the service (as GOCDB would have them).
    let dns = dir.path().join("server-dns");
    std::fs::write(&dns, format!("{}\n{}\n", pk.client.dn, pk.server.dn)).unwrap();
    let server = Server::start(&["--token", TOKEN, "--dn-file", &p(&dns)]);
    let outq = dir.path().join("outq");
    let store = dir.path().join("store");
    let bodies = enqueue(dir.path(), &outq, N, 1000);
    let no_token = |f: &Path| {
        let text = std::fs::read_to_string(f).unwrap().replace(
            &format!("token: {TOKEN}\n"),
            &format!("ams_authn_port: {}\n", server.authn_port),
        );
        std::fs::write(f, text).unwrap();
    };
    let scfg = sender_cfg(dir.path(), &server, TOKEN, &outq);
    no_token(&scfg);
    let out = ssm(&["send", "-c", &p(&scfg)]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let rcfg = receiver_cfg(dir.path(), &server, TOKEN, &store);
    no_token(&rcfg);
    let out = receive_for(dir.path(), &rcfg, 4);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_exactly_once("[ams authx509]", &bodies, stored(&store));
}

#[test]
fn a_401_after_the_service_renewed_its_tokens_is_met_by_a_new_exchange() {
    const N: usize = 10;
    let dir = tempfile::tempdir().unwrap();
    let pk = pki();
    let dns = dir.path().join("server-dns");
    std::fs::write(&dns, format!("{}\n{}\n", pk.client.dn, pk.server.dn)).unwrap();
    let mut server = Server::start(&["--token", "first", "--dn-file", &p(&dns)]);
    let (port, authn_port) = (server.port, server.authn_port);
    let outq = dir.path().join("outq");
    let store = dir.path().join("store");
    let no_token = |f: &Path| {
        let text = std::fs::read_to_string(f).unwrap().replace(
            &format!("token: {TOKEN}\n"),
            &format!("ams_authn_port: {authn_port}\n"),
        );
        std::fs::write(f, text).unwrap();
    };
    let rcfg = receiver_cfg(dir.path(), &server, TOKEN, &store);
    no_token(&rcfg);
    let child = Command::new(env!("CARGO_BIN_EXE_ssm"))
        .args([
            "receive",
            "-c",
            &p(&rcfg),
            "-d",
            &p(&dir.path().join("dns")),
        ])
        .args(["--max-messages", &N.to_string(), "--for", "90"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_secs(2));
    // The service comes back with other tokens: the receiver's token now gets 401.
    server.stop();
    let _server = Server::start_on(
        port,
        authn_port,
        &["--token", "second", "--dn-file", &p(&dns)],
    );
    let bodies = enqueue(dir.path(), &outq, N, 1000);
    let scfg = sender_cfg(dir.path(), &_server, TOKEN, &outq);
    no_token(&scfg);
    let out = ssm(&["send", "-c", &p(&scfg)]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    report_and_check("ams-401-renewal", &bodies, stored(&store));
}

#[test]
fn the_demo_runs_over_ams() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let out = ssm(&[
        "demo",
        "--transport",
        "ams",
        "--messages",
        "40",
        "--senders",
        "2",
        "--dir",
        &p(&run),
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(text.contains("SSM2 over AMS"), "{text}");
    assert!(
        text.contains("stored:    80 (duplicates acked again: 0"),
        "{text}"
    );
    assert!(
        text.contains("every message was stored exactly once"),
        "{text}"
    );
}
