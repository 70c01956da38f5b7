//! `ssmsend` and `ssmreceive` as a site and a repository run them after switching from the
//! Python SSM 4.0: the binary called through symlinks of those names, with unchanged
//! Python-style `sender.cfg` / `receiver.cfg` files (protocol STOMP, `key: value` lines, no key
//! of ours), against the embedded broker. Checks the exit codes, `-v`, the missing-file refusal,
//! and the log lines operators grep (`Sent <id>`, `Message saved to incoming queue as <name>`,
//! `Message rejected: <reason>`).

use crate::support::e2e;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use bytes::Bytes;
use e2e::{message, pki, queue_with, topic, Target, WAIT};
use ssm::protocol::v2::Ssm2Message;
use ssm::queue::{Dirq, MessageStore};
use ssm::stomp::Client;
use ssm::transport::stomp::frame_of;
use tokio::process::Command;

use crate::support::process::{p, SSM};
use crate::support::python_cfg::PythonCfg;

/// A directory holding `ssmsend` and `ssmreceive`, symlinks to the binary under test.
fn links(dir: &Path) -> (PathBuf, PathBuf) {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let send = bin.join("ssmsend");
    let receive = bin.join("ssmreceive");
    std::os::unix::fs::symlink(SSM, &send).unwrap();
    std::os::unix::fs::symlink(SSM, &receive).unwrap();
    (send, receive)
}

fn command(program: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(program);
    c.args(args)
        .env_remove("RUST_LOG")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    c
}

/// A receiver.cfg as the Python SSM 4.0 ships it, with this test's values.
fn receiver_cfg(t: &Target, topic: &str, dir: &Path) -> String {
    let pk = &pki().pki;
    let (store, log) = (dir.join("store"), dir.join("ssmreceive.log"));
    PythonCfg {
        broker: t.socket_addr(),
        cert: &pk.server.cert,
        key: &pk.server.key,
        capath: &pk.capath,
        destination: topic,
        path: &store,
        logfile: &log,
    }
    .receiver(&dir.join("ssmreceive.pid"))
}

/// A sender.cfg as the Python SSM 4.0 ships it, with this test's values (encrypting to the
/// test server), sending to `port`.
fn sender_cfg(t: &Target, port: u16, topic: &str, dir: &Path) -> String {
    let pk = &pki().pki;
    let (outgoing, log) = (dir.join("outgoing"), dir.join("ssmsend.log"));
    PythonCfg {
        broker: SocketAddr::new(t.socket_addr().ip(), port),
        cert: &pk.client.cert,
        key: &pk.client.key,
        capath: &pk.capath,
        destination: topic,
        path: &outgoing,
        logfile: &log,
    }
    .sender(Some(&pk.server.cert), false)
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// Waits until `path` holds `needle` `count` times.
async fn wait_log(path: &Path, needle: &str, count: usize) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while read(path).matches(needle).count() < count {
        if tokio::time::Instant::now() > deadline {
            panic!(
                "{} has not {count} × {needle:?}:\n{}",
                path.display(),
                read(path)
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ssmsend_and_ssmreceive_run_unchanged_python_configs() {
    let t = e2e::brokers::embedded().await;
    let topic = topic();
    let dir = e2e::tmp();
    let (ssmsend, ssmreceive) = links(dir.path());
    let rcfg = dir.path().join("receiver.cfg");
    let scfg = dir.path().join("sender.cfg");
    std::fs::write(&rcfg, receiver_cfg(&t, &topic, dir.path())).unwrap();
    std::fs::write(
        &scfg,
        sender_cfg(&t, t.socket_addr().port(), &topic, dir.path()),
    )
    .unwrap();
    let rlog = dir.path().join("ssmreceive.log");
    let slog = dir.path().join("ssmsend.log");

    // -v as the Python commands: the version on stdout, status 0.
    for program in [&ssmsend, &ssmreceive] {
        let out = command(program, &["-v"]).output().await.unwrap();
        assert_eq!(out.status.code(), Some(0));
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            format!("SSM {}\n", env!("CARGO_PKG_VERSION"))
        );
    }

    let receiver = command(
        &ssmreceive,
        &[
            "-c",
            &p(&rcfg),
            "-d",
            &p(&pki().dn_file),
            "-l",
            "/x/logging.cfg",
        ],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    wait_log(&rlog, "receiver subscribed", 1).await;
    assert!(dir.path().join("ssmreceive.pid").exists());

    // Three records queued by the accounting client; ssmsend ships them all: status 0.
    let messages: Vec<Vec<u8>> = (0..3).map(|i| message("dropin", i)).collect();
    let (out, _) = queue_with(dir.path(), &messages);
    let ids = out.names().unwrap();
    assert_eq!(ids.len(), 3);
    let sent = command(&ssmsend, &["--config", &p(&scfg)])
        .output()
        .await
        .unwrap();
    assert_eq!(
        sent.status.code(),
        Some(0),
        "ssmsend: {}\n{}",
        String::from_utf8_lossy(&sent.stderr),
        read(&slog)
    );
    assert_eq!(out.names().unwrap(), Vec::<String>::new());
    let text = read(&slog);
    for id in &ids {
        assert!(
            text.contains(&format!("Sent {id}")),
            "no 'Sent {id}':\n{text}"
        );
    }

    // Stored, each named in the receiver's log as the Python receiver names it.
    wait_log(&rlog, "Message saved to incoming queue as ", 3).await;
    let store = MessageStore::open(&dir.path().join("store")).unwrap();
    let names = store.incoming.names().unwrap();
    assert_eq!(names.len(), 3);
    let text = read(&rlog);
    for name in &names {
        assert!(
            text.contains(&format!("Message saved to incoming queue as {name}")),
            "no line for {name}:\n{text}"
        );
        let rec = store.incoming.get(name).unwrap();
        assert!(messages.contains(&rec.body));
        assert!(ids.contains(rec.empaid.as_ref().unwrap()));
    }

    // A message that is not S/MIME: rejected, in the Python receiver's words.
    let client = Client::connect(&e2e::client_config(&t)).await.unwrap();
    let garbage = Ssm2Message::new("garbage-1", Bytes::from_static(b"not a signed message"));
    client
        .handle()
        .send_with_receipt(frame_of(garbage.to_envelope(&topic)))
        .await
        .unwrap();
    wait_log(&rlog, "Message saved to reject queue as ", 1).await;
    let text = read(&rlog);
    assert_eq!(text.matches("Message rejected: ").count(), 1, "{text}");
    let reject = Dirq::open(&dir.path().join("store").join("reject")).unwrap();
    let rejected = reject.names().unwrap();
    assert_eq!(rejected.len(), 1);
    assert!(text.contains(&format!("Message saved to reject queue as {}", rejected[0])));
    assert_eq!(
        reject.get(&rejected[0]).unwrap().signer.as_deref(),
        Some("Not available.")
    );

    // Nothing queued: status 0 again.
    let again = command(&ssmsend, &["-c", &p(&scfg)])
        .output()
        .await
        .unwrap();
    assert_eq!(again.status.code(), Some(0));

    // Stopped by SIGTERM: a clean stop, status 0, the pidfile removed. -l was warned about.
    let pid = receiver.id().unwrap() as libc::pid_t;
    // SAFETY: signalling our own child, still running.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let done = tokio::time::timeout(WAIT, receiver.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let stderr = String::from_utf8_lossy(&done.stderr);
    assert_eq!(done.status.code(), Some(0), "{stderr}\n{}", read(&rlog));
    assert!(
        stderr.contains("-l/--log_config /x/logging.cfg is ignored"),
        "{stderr}"
    );
    assert!(!dir.path().join("ssmreceive.pid").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ssmsend_fails_with_status_1() {
    let t = e2e::brokers::embedded().await;
    let dir = e2e::tmp();
    let (ssmsend, ssmreceive) = links(dir.path());

    // No configuration file: refused as the Python commands refuse, on stdout, status 1.
    for program in [&ssmsend, &ssmreceive] {
        let missing = dir.path().join("nowhere.cfg");
        let out = command(program, &["-c", &p(&missing)])
            .output()
            .await
            .unwrap();
        assert_eq!(out.status.code(), Some(1));
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            format!("Config file not found at {}\n", missing.display())
        );
    }
    // A flag the Python commands do not have is a usage error (status 2).
    let out = command(&ssmsend, &["--daemon"]).output().await.unwrap();
    assert_eq!(out.status.code(), Some(2));

    // A message queued and no broker listening: status 1, the message still queued.
    let port = crate::support::process::free_port();
    let scfg = dir.path().join("sender.cfg");
    // One connection attempt (an option of ours), so that the failure comes in seconds.
    let cfg = sender_cfg(&t, port, &topic(), dir.path())
        .replace("path_type: dirq\n", "path_type: dirq\nmax_attempts: 1\n");
    std::fs::write(&scfg, cfg).unwrap();
    let (out, _) = queue_with(dir.path(), &[message("dropin-fail", 0)]);
    let sent = command(&ssmsend, &["-c", &p(&scfg)])
        .output()
        .await
        .unwrap();
    assert_eq!(
        sent.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&sent.stderr)
    );
    assert!(String::from_utf8_lossy(&sent.stderr).contains("ssmsend: error:"));
    assert_eq!(out.names().unwrap().len(), 1);
}
