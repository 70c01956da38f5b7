//! The receiver as a production daemon, through the real binary: systemd notifications
//! (READY only once subscribed, STOPPING on SIGTERM), the PID file (written, refused to a
//! second copy, removed on exit), the metrics endpoint (counters, rejections by reason and
//! latency histograms match the messages sent; the sender daemon's live counters match what
//! it sent) and `ssm status`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use ssm::harness::pki::{CertFiles, Pki};
use ssm::queue::{Outgoing, PathType};

use crate::support::process::SSM;

/// Kills the child if the test fails half-way, so that no receiver outlives it.
struct Reaper(std::process::Child);

impl Drop for Reaper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

use crate::support::process::free_port;

fn scrape(port: u16) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert!(out.starts_with("HTTP/1.1 200 OK\r\n"), "{out}");
    out
}

/// Sends one STOMP frame (which asks for a receipt) on a fresh connection, and waits for the
/// receipt.
fn publish_raw(broker: &str, frame: &str) {
    let mut s = TcpStream::connect(broker).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let read_frame = |s: &mut TcpStream| {
        let mut got = Vec::new();
        let mut byte = [0u8; 1];
        while s.read(&mut byte).unwrap() == 1 && byte[0] != 0 {
            got.push(byte[0]);
        }
        String::from_utf8_lossy(&got).into_owned()
    };
    s.write_all(b"CONNECT\naccept-version:1.2\nhost:localhost\n\n\0")
        .unwrap();
    let connected = read_frame(&mut s);
    assert!(connected.starts_with("CONNECTED\n"), "{connected}");
    s.write_all(frame.as_bytes()).unwrap();
    let receipt = read_frame(&mut s);
    assert!(receipt.trim_start().starts_with("RECEIPT\n"), "{receipt}");
}

/// One `ssm send` pass of the queue at `path`, signed by `signer`; it must succeed (a message
/// the receiver rejects is still a successful pass).
fn send_once(broker: &str, signer: &CertFiles, pki: &Pki, path: &Path) {
    let sent = Command::new(SSM)
        .args([
            "send",
            "--ssm-version",
            "1",
            "--broker",
            broker,
            "--destination",
            "/topic/ops.test",
        ])
        .arg("--cert")
        .arg(&signer.cert)
        .arg("--key")
        .arg(&signer.key)
        .arg("--capath")
        .arg(&pki.capath)
        .arg("--server-cert")
        .arg(&pki.server.cert)
        .arg("--path")
        .arg(path)
        .output()
        .unwrap();
    assert!(
        sent.status.success(),
        "{}",
        String::from_utf8_lossy(&sent.stderr)
    );
}

fn recv_datagram(sock: &UnixDatagram) -> String {
    let mut buf = [0u8; 512];
    let n = sock.recv(&mut buf).expect("no notification in time");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

fn receiver_args(pki: &Pki, dir: &Path, broker: &str) -> Vec<String> {
    let p = |x: &Path| x.display().to_string();
    vec![
        "receive".into(),
        "--broker".into(),
        broker.into(),
        "--cert".into(),
        p(&pki.server.cert),
        "--key".into(),
        p(&pki.server.key),
        "--capath".into(),
        p(&pki.capath),
        "-d".into(),
        p(&dir.join("dns")),
        "--destination".into(),
        "/topic/ops.test".into(),
        "--path".into(),
        p(&dir.join("store")),
        "--pidfile".into(),
        p(&dir.join("receiver.pid")),
    ]
}

#[test]
fn receiver_daemon_notifies_holds_its_pidfile_and_counts_what_it_stores() {
    const N: usize = 4;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let pki = Pki::generate(&d.join("pki")).unwrap();
    std::fs::write(d.join("dns"), format!("{}\n", pki.client.dn)).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let broker = crate::support::brokers::start_blocking(&rt);
    let broker_addr = broker.local_addr().to_string();

    let notify_path = d.join("notify.sock");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    notify
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let metrics_port = free_port();
    let mut args = receiver_args(&pki, d, &broker_addr);
    args.extend(["--metrics".into(), format!("127.0.0.1:{metrics_port}")]);
    let mut receiver = Reaper(
        Command::new(SSM)
            .args(&args)
            .env("NOTIFY_SOCKET", &notify_path)
            .env("WATCHDOG_USEC", "200000")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );

    // READY=1 comes only once subscribed; watchdog pings follow every 100 ms.
    let ready = recv_datagram(&notify);
    assert!(ready.starts_with("READY=1\n"), "{ready}");
    assert!(
        ready.contains("STATUS=subscribed to /topic/ops.test"),
        "{ready}"
    );
    assert_eq!(recv_datagram(&notify), "WATCHDOG=1");
    let pid_text = std::fs::read_to_string(d.join("receiver.pid")).unwrap();
    assert_eq!(pid_text.trim(), receiver.0.id().to_string());

    // A second copy with the same pidfile refuses to start and leaves the file alone.
    let second = Command::new(SSM)
        .args(receiver_args(&pki, d, &broker_addr))
        .output()
        .unwrap();
    assert_eq!(second.status.code(), Some(1));
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(
        err.contains(&format!("already running as process {}", receiver.0.id())),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(d.join("receiver.pid")).unwrap(),
        pid_text
    );

    let before = scrape(metrics_port);
    assert!(before.contains("\nssm_received_total 0\n"), "{before}");

    let out = Outgoing::open(&d.join("outgoing"), PathType::QueueSimple).unwrap();
    for i in 0..N {
        out.add(format!("record {i}").as_bytes()).unwrap();
    }
    let status = Command::new(SSM)
        .args(["status", "--path"])
        .arg(d.join("outgoing"))
        .arg("--json")
        .output()
        .unwrap();
    let json = String::from_utf8_lossy(&status.stdout);
    assert!(json.contains(&format!("\"messages\":{N},")), "{json}");

    // A malformed `msg` (no `ssm-msg-id`) first: the receiver handles the topic's frames in
    // order, so it is counted by the time the senders below are answered.
    publish_raw(
        &broker_addr,
        "SEND\ndestination:/topic/ops.test\nssm-msg-type:msg\nreceipt:r1\n\nno id\0",
    );
    send_once(&broker_addr, &pki.client, &pki, &d.join("outgoing"));
    // One message by a trusted signer missing from the allowed-DN list, one by a signer whose
    // CA is not trusted: each rejected, for its own reason.
    let stranger = pki.issue_client("stranger.example.org").unwrap();
    for (signer, queue) in [
        (&stranger, "stranger"),
        (&pki.untrusted_client, "untrusted"),
    ] {
        let q = d.join(queue);
        Outgoing::open(&q, PathType::QueueSimple)
            .unwrap()
            .add(b"not welcome")
            .unwrap();
        send_once(&broker_addr, signer, &pki, &q);
    }

    // Acks are sent after the counters move, so the sender finishing means they are final.
    let metrics = scrape(metrics_port);
    for line in [
        format!("\nssm_received_total {}\n", N + 3),
        format!("\nssm_stored_total {N}\n"),
        "\nssm_rejected_total{reason=\"dn_not_allowed\"} 1\n".to_string(),
        "\nssm_rejected_total{reason=\"untrusted_signer\"} 1\n".to_string(),
        "\nssm_rejected_total{reason=\"malformed\"} 1\n".to_string(),
        "\nssm_rejected_total{reason=\"bad_signature\"} 0\n".to_string(),
        "\nssm_duplicates_total 0\n".to_string(),
        "\nssm_store_failures_total 0\n".to_string(),
        format!("\nssm_open_duration_seconds_count {}\n", N + 2),
        format!(
            "\nssm_open_duration_seconds_bucket{{le=\"+Inf\"}} {}\n",
            N + 2
        ),
        format!("\nssm_store_duration_seconds_count {N}\n"),
        format!("\nssm_store_duration_seconds_bucket{{le=\"+Inf\"}} {N}\n"),
        format!("\nssm_queue_messages{{queue=\"incoming\"}} {N}\n"),
        "\nssm_queue_messages{queue=\"reject\"} 3\n".to_string(),
        "\nssm_build_info{version=\"".to_string(),
    ] {
        assert!(metrics.contains(&line), "missing {line:?} in\n{metrics}");
    }
    let cert = ssm::crypto::load_cert(&pki.server.cert).unwrap();
    let not_after = ssm::ops::metrics::not_after_epoch(&cert).unwrap();
    assert!(
        metrics.contains(&format!(
            "\nssm_certificate_not_after_seconds {not_after}\n"
        )),
        "{metrics}"
    );

    let status = Command::new(SSM)
        .args(["status", "--store", "--path"])
        .arg(d.join("store"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(
        text.starts_with(&format!("incoming  {N} messages, oldest ")),
        "{text}"
    );
    assert!(text.contains("\nreject    3 messages, oldest "), "{text}");

    // SIGTERM: STOPPING=1, clean exit, pidfile gone.
    // SAFETY: plain kill(2) on our own child.
    unsafe { libc::kill(receiver.0.id() as i32, libc::SIGTERM) };
    let exit = receiver.0.wait().unwrap();
    assert!(exit.success(), "{exit:?}");
    let mut last = String::new();
    while let Ok(msg) = {
        notify
            .set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        let mut buf = [0u8; 512];
        notify
            .recv(&mut buf)
            .map(|n| String::from_utf8_lossy(&buf[..n]).into_owned())
    } {
        last = msg;
    }
    assert_eq!(last, "STOPPING=1");
    assert!(!d.join("receiver.pid").exists());
    rt.block_on(broker.shutdown());
}

#[test]
fn a_stale_pidfile_is_taken_over() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let pki = Pki::generate(&d.join("pki")).unwrap();
    std::fs::write(d.join("dns"), format!("{}\n", pki.client.dn)).unwrap();
    let mut gone = Command::new("true").spawn().unwrap();
    let dead = gone.id();
    gone.wait().unwrap();
    std::fs::write(d.join("receiver.pid"), format!("{dead}\n")).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let broker = crate::support::brokers::start_blocking(&rt);
    let out = Command::new(SSM)
        .args(receiver_args(&pki, d, &broker.local_addr().to_string()))
        .args(["--for", "1"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "process {dead} is gone; taking over the stale file"
        )),
        "{err}"
    );
    assert!(!d.join("receiver.pid").exists(), "{err}");
}

fn wait_for(path: &Path, needle: &str) -> bool {
    for _ in 0..300 {
        if std::fs::read_to_string(path).is_ok_and(|t| t.contains(needle)) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

#[test]
fn sighup_reopens_the_log_file_after_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let pki = Pki::generate(&d.join("pki")).unwrap();
    std::fs::write(d.join("dns"), format!("{}\n", pki.client.dn)).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let broker = crate::support::brokers::start_blocking(&rt);
    let log = d.join("receiver.log");
    let cfg = d.join("receiver.cfg");
    std::fs::write(
        &cfg,
        format!(
            "[broker]\nbrokers = {}\nuse_ssl = false\n[certificates]\ncertificate = {}\nkey = {}\n\
             capath = {}\n[messaging]\ndestination = /topic/ops.log\npath = {}\n[receiver]\n\
             dn_file = {}\n[logging]\nlogfile = {}\nconsole = false\n",
            broker.local_addr(),
            pki.server.cert.display(),
            pki.server.key.display(),
            pki.capath.display(),
            d.join("store").display(),
            d.join("dns").display(),
            log.display()
        ),
    )
    .unwrap();
    let receiver = Reaper(
        Command::new(SSM)
            .arg("receive")
            .arg("-c")
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    assert!(wait_for(&log, "receiver subscribed"), "no start in the log");
    let rotated = d.join("receiver.log.1");
    std::fs::rename(&log, &rotated).unwrap();
    // SAFETY: plain kill(2) on our own child.
    unsafe { libc::kill(receiver.0.id() as i32, libc::SIGHUP) };
    assert!(wait_for(&log, "SIGHUP: log file reopened"), "no reopen");
    assert!(wait_for(&log, "allowed DNs loaded"), "DN file not re-read");
    let old = std::fs::read_to_string(&rotated).unwrap();
    assert!(!old.contains("reopened"), "{old}");
}

#[test]
fn sender_daemon_serves_live_counters_and_queue_metrics_and_notifies() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let pki = Pki::generate(&d.join("pki")).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let broker = crate::support::brokers::start_blocking(&rt);
    let port = free_port();
    let common: Vec<String> = vec![
        "send".into(),
        "--ssm-version".into(),
        "1".into(),
        "--broker".into(),
        broker.local_addr().to_string(),
        "--destination".into(),
        "/topic/ops.test".into(),
        "--cert".into(),
        pki.client.cert.display().to_string(),
        "--key".into(),
        pki.client.key.display().to_string(),
        "--capath".into(),
        pki.capath.display().to_string(),
        "--server-cert".into(),
        pki.server.cert.display().to_string(),
        "--path".into(),
        d.join("outgoing").display().to_string(),
        "--metrics".into(),
        format!("127.0.0.1:{port}"),
    ];
    // Without --daemon there is nothing to scrape: refused.
    let once = Command::new(SSM).args(&common).output().unwrap();
    assert_eq!(once.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&once.stderr)
            .contains("--metrics (or [daemon] metrics) needs --daemon"),
        "{once:?}"
    );

    // A receiver to ack what the daemon sends; it is up once it says READY.
    std::fs::write(d.join("dns"), format!("{}\n", pki.client.dn)).unwrap();
    let receiver_notify_path = d.join("receiver-notify.sock");
    let receiver_notify = UnixDatagram::bind(&receiver_notify_path).unwrap();
    receiver_notify
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let _receiver = Reaper(
        Command::new(SSM)
            .args(receiver_args(&pki, d, &broker.local_addr().to_string()))
            .env("NOTIFY_SOCKET", &receiver_notify_path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    assert!(recv_datagram(&receiver_notify).starts_with("READY=1\n"));
    const N: usize = 3;
    let out = Outgoing::open(&d.join("outgoing"), PathType::QueueSimple).unwrap();
    for i in 0..N {
        out.add(format!("record {i}").as_bytes()).unwrap();
    }

    let notify_path = d.join("notify.sock");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    notify
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut sender = Reaper(
        Command::new(SSM)
            .args(&common)
            .arg("--daemon")
            .env("NOTIFY_SOCKET", &notify_path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    assert!(recv_datagram(&notify).starts_with("READY=1\nSTATUS=sending\n"));
    // The counters move while the daemon runs: wait until every message is acked.
    let acked = format!("\nssm_acked_total {N}\n");
    let mut metrics = scrape(port);
    for _ in 0..300 {
        if metrics.contains(&acked) {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
        metrics = scrape(port);
    }
    for line in [
        &format!("\nssm_sent_total {N}\n"),
        &acked,
        "\nssm_sent_rejected_total 0\n",
        "\nssm_retried_total 0\n",
        "\nssm_queue_messages{queue=\"outgoing\"} 0\n",
        "\nssm_queue_messages{queue=\"reject\"} 0\n",
        "role=\"sender\"} 1\n",
        "\nssm_certificate_not_after_seconds ",
    ] {
        assert!(metrics.contains(line), "missing {line:?} in\n{metrics}");
    }
    // SAFETY: plain kill(2) on our own child.
    unsafe { libc::kill(sender.0.id() as i32, libc::SIGTERM) };
    assert!(sender.0.wait().unwrap().success());
    assert_eq!(recv_datagram(&notify), "STOPPING=1");
}
