//! End to end with the real binaries: `ssm receive` in the background, `ssm enqueue` and
//! `ssm send` against it, exit codes, the summary lines on stderr, the incoming queue; SIGTERM
//! stops a receiver cleanly; bad configurations and mismatched keys refuse to start. Runs
//! against the embedded broker (in this test process) and every real broker in
//! `SSM_TEST_BROKERS`.

use crate::support::e2e;

use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};

use e2e::{message, pki, records, targets, tmp, topic, Target, WAIT};
use ssm::queue::{MessageStore, Outgoing, PathType};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

use crate::support::process::ssm_command as ssm;

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

use crate::support::process::p;

/// `ssm send` with the broker, topic, the test PKI's client identity, the server certificate
/// and the outgoing queue; callers add what the scenario needs.
fn send_args(t: &Target, topic: &str, outq: &Path) -> Vec<String> {
    let pk = &pki().pki;
    let mut a = s(&["send", "--ssm-version", "1"]);
    a.extend(t.flags());
    a.extend(s(&[
        "--destination",
        topic,
        "--cert",
        &p(&pk.client.cert),
        "--key",
        &p(&pk.client.key),
        "--capath",
        &p(&pk.capath),
        "--server-cert",
        &p(&pk.server.cert),
        "--path",
        &p(outq),
    ]));
    a
}

/// A background process whose stderr is collected line by line.
struct Background {
    child: Child,
    stderr: Arc<Mutex<String>>,
    lines: mpsc::UnboundedReceiver<String>,
    reader: tokio::task::JoinHandle<()>,
}

impl Background {
    fn spawn(mut cmd: Command) -> Background {
        let mut child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let err = child.stderr.take().unwrap();
        let stderr = Arc::new(Mutex::new(String::new()));
        let (tx, lines) = mpsc::unbounded_channel();
        let all = stderr.clone();
        let reader = tokio::spawn(async move {
            let mut r = BufReader::new(err).lines();
            while let Ok(Some(line)) = r.next_line().await {
                all.lock().unwrap().push_str(&format!("{line}\n"));
                let _ = tx.send(line);
            }
        });
        Background {
            child,
            stderr,
            lines,
            reader,
        }
    }

    /// Waits until a stderr line contains `needle`.
    async fn wait_for(&mut self, needle: &str) {
        let found = tokio::time::timeout(WAIT, async {
            while let Some(line) = self.lines.recv().await {
                if line.contains(needle) {
                    return true;
                }
            }
            false
        })
        .await;
        if found != Ok(true) {
            panic!(
                "no stderr line with {needle:?} (exited: {:?}); stderr so far:\n{}",
                self.child.try_wait(),
                self.stderr.lock().unwrap()
            );
        }
    }

    /// Waits for the exit; returns the status and the whole stderr.
    async fn finish(mut self) -> (ExitStatus, String) {
        let status = match tokio::time::timeout(WAIT, self.child.wait()).await {
            Ok(s) => s.unwrap(),
            Err(_) => panic!(
                "process did not exit within {WAIT:?}; stderr:\n{}",
                self.stderr.lock().unwrap()
            ),
        };
        let _ = self.reader.await;
        let text = self.stderr.lock().unwrap().clone();
        (status, text)
    }

    /// Waits for the process to exit 0 with `summary` in its stderr (a receiver's closing
    /// line). `name` names the broker in failures.
    async fn finish_ok(self, name: &str, summary: impl AsRef<str>) {
        let (status, err) = self.finish().await;
        assert_eq!(
            status.code(),
            Some(0),
            "[{name}] exit status; stderr:\n{err}"
        );
        let summary = summary.as_ref();
        assert!(
            err.contains(summary),
            "[{name}] no {summary:?} in stderr:\n{err}"
        );
    }
}

/// `ssm receive` on `topic` storing under `store`, plus `extra` arguments; waits until it is
/// subscribed.
async fn receiver(t: &Target, topic: &str, store: &Path, extra: &[&str]) -> Background {
    receiver_with_dns(t, topic, store, &pki().dn_file, extra).await
}

/// [`receiver`] with its own allowed-DN file.
async fn receiver_with_dns(
    t: &Target,
    topic: &str,
    store: &Path,
    dn_file: &Path,
    extra: &[&str],
) -> Background {
    let pk = &pki().pki;
    let mut args = s(&["receive"]);
    args.extend(t.flags());
    args.extend(s(&[
        "--destination",
        topic,
        "--cert",
        &p(&pk.server.cert),
        "--key",
        &p(&pk.server.key),
        "--capath",
        &p(&pk.capath),
        "-d",
        &p(dn_file),
        "--path",
        &p(store),
    ]));
    args.extend(s(extra));
    let mut bg = Background::spawn(ssm(&args));
    bg.wait_for("receiver subscribed").await;
    bg
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn enqueue_send_and_receive_as_processes() {
    const N: usize = 5;
    for t in targets().await {
        let dir = tmp();
        let topic = topic();
        let store = dir.path().join("store");
        let outq = dir.path().join("outq");
        let rx = receiver(&t, &topic, &store, &["--max-messages", &N.to_string()]).await;

        let mut files = Vec::new();
        let mut bodies = Vec::new();
        for i in 0..N {
            let f = dir.path().join(format!("m{i}"));
            let body = message("process", i);
            std::fs::write(&f, &body).unwrap();
            files.push(p(&f));
            bodies.push(body);
        }
        let mut args = s(&["enqueue", "--path", &p(&outq)]);
        args.extend(files);
        let out = ssm(&args).output().await.unwrap();
        assert!(out.status.success(), "[{}] enqueue: {out:?}", t.name);
        assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), N);

        let pk = &pki().pki;
        let mut args = send_args(&t, &topic, &outq);
        args.extend(s(&["--ack-timeout", "5", "--max-attempts", "2"]));
        let out = ssm(&args).output().await.unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "[{}] send:\n{err}", t.name);
        assert!(
            err.contains(&format!(
                "ssm send: sent {N}, acked {N}, rejected 0, retried 0 in "
            )),
            "[{}] send summary:\n{err}",
            t.name
        );

        rx.finish_ok(
            &t.name,
            format!(
                "ssm receive: received {N}, stored {N}, duplicates 0, rejected 0, store failures 0"
            ),
        )
        .await;
        let stored = records(&MessageStore::open(&store).unwrap().incoming);
        let got: Vec<Vec<u8>> = stored.iter().map(|r| r.body.clone()).collect();
        assert_eq!(got, bodies, "[{}] incoming, in order", t.name);
        assert!(stored
            .iter()
            .all(|r| r.signer.as_deref() == Some(pk.client.dn.as_str())));
        let outgoing = Outgoing::open(&outq, PathType::QueueSimple).unwrap();
        assert_eq!(outgoing.count().unwrap(), 0, "[{}] outgoing empty", t.name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_stops_a_receiver_with_exit_code_zero() {
    for t in targets().await {
        let dir = tmp();
        let rx = receiver(&t, &topic(), &dir.path().join("store"), &[]).await;
        let pid = rx.child.id().expect("running") as libc::pid_t;
        // SAFETY: kill(2) on the pid of a child we spawned and have not reaped.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
        rx.finish_ok(&t.name, "ssm receive: received 0, stored 0")
            .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn send_with_a_broken_config_names_the_option() {
    let dir = tmp();
    let pk = &pki().pki;
    let common = format!(
        "[broker]\nhost = 127.0.0.1\nport = 1\n[certificates]\ncertificate = {}\nkey = {}\n\
         capath = {}\nserver_cert = {}\n",
        p(&pk.client.cert),
        p(&pk.client.key),
        p(&pk.capath),
        p(&pk.server.cert),
    );
    let outq = p(&dir.path().join("outq"));
    let cases = [
        (
            format!(
                "{common}[messaging]\ndestination = /topic/x\npath = {outq}\nack_timeout = soon\n"
            ),
            "ack_timeout",
        ),
        (
            format!("{common}[messaging]\npath = {outq}\n"),
            "destination",
        ),
    ];
    for (text, option) in cases {
        let cfg = dir.path().join("sender.cfg");
        std::fs::write(&cfg, &text).unwrap();
        let out = ssm(&s(&["send", "-c", &p(&cfg)])).output().await.unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{option}: {err}");
        let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "{option}: one line, got:\n{err}");
        assert!(
            lines[0].starts_with("ssm: error:") && lines[0].contains(option),
            "{option}: {err}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_key_that_does_not_match_the_certificate_refuses_to_start() {
    let dir = tmp();
    let pk = &pki().pki;
    let mut send = s(&[
        "send",
        "--broker",
        "127.0.0.1:1",
        "--destination",
        "/topic/x",
        "--cert",
        &p(&pk.client.cert),
        "--key",
        &p(&pk.server.key),
        "--capath",
        &p(&pk.capath),
        "--server-cert",
        &p(&pk.server.cert),
        "--path",
    ]);
    send.push(p(&dir.path().join("outq")));
    let mut receive = s(&[
        "receive",
        "--broker",
        "127.0.0.1:1",
        "--destination",
        "/topic/x",
        "--cert",
        &p(&pk.server.cert),
        "--key",
        &p(&pk.client.key),
        "--capath",
        &p(&pk.capath),
        "-d",
        &p(&pki().dn_file),
        "--path",
    ]);
    receive.push(p(&dir.path().join("store")));
    for args in [send, receive] {
        let out = ssm(&args).output().await.unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{}: {err}", args[0]);
        assert!(
            err.contains("does not match certificate"),
            "{}: {err}",
            args[0]
        );
        assert!(
            !err.contains("connect"),
            "{} must not try the broker: {err}",
            args[0]
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sighup_rereads_the_allowed_dns() {
    for t in targets().await {
        let dir = tmp();
        let topic = topic();
        let store = dir.path().join("store");
        let dns = dir.path().join("dns");
        let pk = &pki().pki;
        std::fs::write(&dns, format!("{}\n", pki().stranger.dn)).unwrap();
        let mut rx = receiver_with_dns(&t, &topic, &store, &dns, &[]).await;

        let send = |tag: &'static str| {
            let settings = e2e::sender_settings(&t, &topic, &pk.client);
            let qdir = dir.path().join(tag);
            async move {
                let (mut sender, _, _) = e2e::sender_with(settings, &qdir, &[message(tag, 0)]);
                sender.run_once().await.unwrap()
            }
        };
        let before = send("before").await;
        assert_eq!(
            (before.acked, before.rejected),
            (0, 1),
            "[{}] {before}",
            t.name
        );

        std::fs::write(&dns, format!("{}\n", pk.client.dn)).unwrap();
        let pid = rx.child.id().expect("running") as libc::pid_t;
        // SAFETY: kill(2) on the pid of a child we spawned and have not reaped.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGHUP) }, 0);
        rx.wait_for("allowed DNs loaded").await;
        let after = send("after").await;
        assert_eq!(
            (after.acked, after.rejected),
            (1, 0),
            "[{}] {after}",
            t.name
        );

        // SAFETY: as above.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
        rx.finish_ok(
            &t.name,
            "ssm receive: received 2, stored 1, duplicates 0, rejected 1",
        )
        .await;
        let stored = records(&MessageStore::open(&store).unwrap().incoming);
        assert_eq!(stored.len(), 1);
        assert_eq!(stored[0].body, message("after", 0));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_send_daemon_ships_new_messages_and_stops_on_sigterm() {
    const N: usize = 3;
    for t in targets().await {
        let dir = tmp();
        let topic = topic();
        let rx = e2e::start_receiver(&t, &topic, &dir.path().join("store")).await;
        let outq = dir.path().join("outq");
        let mut args = send_args(&t, &topic, &outq);
        args.extend(s(&["--daemon"]));
        let mut daemon = Background::spawn(ssm(&args));
        daemon.wait_for("sender starting").await;
        // Messages appear after the daemon started.
        let feed = Outgoing::open(&outq, PathType::QueueSimple).unwrap();
        let bodies: Vec<Vec<u8>> = (0..N).map(|i| message("daemon-proc", i)).collect();
        for b in &bodies {
            feed.add(b).unwrap();
        }
        let deadline = tokio::time::Instant::now() + WAIT;
        while ssm::receiver::Stats::get(&rx.stats.stored) < N as u64 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "[{}] daemon did not deliver; stderr:\n{}",
                t.name,
                daemon.stderr.lock().unwrap()
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        let pid = daemon.child.id().expect("running") as libc::pid_t;
        // SAFETY: kill(2) on the pid of a child we spawned and have not reaped.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
        let (status, err) = daemon.finish().await;
        assert_eq!(status.code(), Some(0), "[{}] {err}", t.name);
        assert!(
            err.contains(&format!("ssm send: sent {N}, acked {N}, rejected 0")),
            "[{}] {err}",
            t.name
        );
        assert_eq!(feed.count().unwrap(), 0);
        let got: Vec<Vec<u8>> = rx.incoming().into_iter().map(|r| r.body).collect();
        assert_eq!(got, bodies, "[{}]", t.name);
        rx.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn max_messages_counts_rejected_malformed_messages() {
    for t in targets().await {
        let dir = tmp();
        let topic = topic();
        let store = dir.path().join("store");
        let rx = receiver(&t, &topic, &store, &["--max-messages", "2"]).await;
        let mut peer = e2e::Peer::connect(&t).await;
        // A msg of an unknown version: rejected as malformed (answered, as it names itself).
        let bad = ssm::stomp::Frame::new(ssm::stomp::Command::Send)
            .with_header("destination", topic.as_str())
            .with_header("ssm-msg-type", "msg-v9")
            .with_header("ssm-msg-id", "bad")
            .with_header("reply-to", peer.reply_queue.as_str())
            .with_body(e2e::seal(&message("max", 0)));
        peer.send(bad).await;
        let (outcome, _) = peer.next_ack().await;
        assert!(
            matches!(outcome, ssm::protocol::AckOutcome::Rejected { .. }),
            "[{}] {outcome:?}",
            t.name
        );
        let good = message("max", 1);
        peer.send_msg(&topic, "good", &e2e::seal(&good), None).await;
        peer.expect_stored(&e2e::md5(&good)).await;
        rx.finish_ok(&t.name, "stored 1, duplicates 0, rejected 1")
            .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn max_messages_does_not_count_duplicates() {
    for t in targets().await {
        let dir = tmp();
        let topic = topic();
        let store = dir.path().join("store");
        let rx = receiver(&t, &topic, &store, &["--max-messages", "2"]).await;
        let mut peer = e2e::Peer::connect(&t).await;
        let first = message("dup", 0);
        // The same message twice (a service delivering again, a sender resending): stored
        // once, acked twice, counted once.
        for _ in 0..2 {
            peer.send_msg(&topic, "dup-0", &e2e::seal(&first), None)
                .await;
            peer.expect_stored(&e2e::md5(&first)).await;
        }
        let second = message("dup", 1);
        peer.send_msg(&topic, "dup-1", &e2e::seal(&second), None)
            .await;
        peer.expect_stored(&e2e::md5(&second)).await;
        rx.finish_ok(&t.name, "stored 2, duplicates 1, rejected 0")
            .await;
        assert_eq!(
            records(&MessageStore::open(&store).unwrap().incoming).len(),
            2,
            "[{}]",
            t.name
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn crl_check_rejects_a_revoked_sender() {
    for t in targets().await {
        let dir = tmp();
        let topic = topic();
        let store = dir.path().join("store");
        let rx = receiver(&t, &topic, &store, &["--crl-check", "--max-messages", "2"]).await;
        let pk = &pki().pki;
        for (tag, cert, rejected) in [("revoked", &pk.revoked_client, 1), ("valid", &pk.client, 0)]
        {
            let settings = e2e::sender_settings(&t, &topic, cert);
            let (mut sender, _, reject) =
                e2e::sender_with(settings, &dir.path().join(tag), &[message(tag, 0)]);
            let summary = sender.run_once().await.unwrap();
            assert_eq!(summary.rejected, rejected, "[{}] {tag}: {summary}", t.name);
            if rejected == 1 {
                let why = records(&reject)[0].error.clone().unwrap_or_default();
                assert!(why.contains("revoked"), "[{}] {why}", t.name);
            }
        }
        rx.finish_ok(&t.name, "stored 1, duplicates 0, rejected 1")
            .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn for_secs_stops_the_receiver_by_itself() {
    for t in targets().await {
        let dir = tmp();
        let rx = receiver(&t, &topic(), &dir.path().join("store"), &["--for", "1"]).await;
        rx.finish_ok(&t.name, "ssm receive: received 0").await;
    }
}
