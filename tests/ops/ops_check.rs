//! `ssm check send|receive` through the real binary: every line `OK` on a good configuration
//! against a live (embedded) broker, and the right `FAIL` lines and exit status 1 on broken
//! ones.

use std::path::Path;
use std::process::{Command, Output};

use ssm::broker::BrokerHandle;
use ssm::harness::pki::Pki;

use crate::support::process::SSM;

struct Setup {
    _dir: tempfile::TempDir,
    dir: std::path::PathBuf,
    pki: Pki,
    rt: tokio::runtime::Runtime,
    broker: Option<BrokerHandle>,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    let pki = Pki::generate(&d.join("pki")).unwrap();
    std::fs::write(d.join("dns"), format!("# senders\n{}\n", pki.client.dn)).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let broker = crate::support::brokers::start_blocking(&rt);
    Setup {
        _dir: dir,
        dir: d,
        pki,
        rt,
        broker: Some(broker),
    }
}

impl Setup {
    fn broker(&self) -> String {
        self.broker.as_ref().unwrap().local_addr().to_string()
    }

    fn receiver_cfg(&self, cert: &Path, key: &Path, dns: &Path) -> std::path::PathBuf {
        let path = self.dir.join("receiver.cfg");
        std::fs::write(
            &path,
            format!(
                "[receiver]\nprotocol = STOMP\ndn_file = {}\n[broker]\nbrokers = {}\nuse_ssl = false\n\
                 [certificates]\ncertificate = {}\nkey = {}\ncapath = {}\n\
                 [messaging]\ndestination = /topic/check\npath = {}\n[daemon]\npidfile = {}\n",
                dns.display(),
                self.broker(),
                cert.display(),
                key.display(),
                self.pki.capath.display(),
                self.dir.join("store").display(),
                self.dir.join("r.pid").display(),
            ),
        )
        .unwrap();
        path
    }
}

fn run(args: &[&str]) -> (Output, String) {
    let out = Command::new(SSM).args(args).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    (out, text)
}

fn lines_of<'a>(text: &'a str, prefix: &str) -> Vec<&'a str> {
    text.lines().filter(|l| l.starts_with(prefix)).collect()
}

#[test]
fn a_good_receiver_configuration_is_all_ok() {
    let s = setup();
    let cfg = s.receiver_cfg(&s.pki.server.cert, &s.pki.server.key, &s.dir.join("dns"));
    let (out, text) = run(&["check", "receive", "-c", cfg.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(lines_of(&text, "FAIL").is_empty(), "{text}");
    for expected in [
        "OK   key matches certificate: yes",
        "OK   certificate chain: chains to a trusted CA",
        "OK   allowed DNs: 1 DN(s) in ",
        "OK   message store: ",
        "OK   message store file system: ",
        &format!(
            "OK   broker {}: STOMP 1.2 handshake over plain TCP, server ssm-broker/",
            s.broker()
        ),
        "OK   destination /topic/check: SUBSCRIBE and UNSUBSCRIBE acknowledged (nothing sent)",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in\n{text}");
    }
    let expiry = lines_of(&text, "OK   certificate expiry: ");
    assert_eq!(expiry.len(), 1, "{text}");
    assert!(expiry[0].contains(" days left (notAfter "), "{text}");
}

#[test]
fn a_broken_receiver_configuration_fails_with_reasons() {
    let mut s = setup();
    let missing_dns = s.dir.join("no-such-dns");
    // The client's key with the server's certificate.
    let cfg = s.receiver_cfg(&s.pki.server.cert, &s.pki.client.key, &missing_dns);
    // And no broker any more.
    let broker = s.broker();
    s.rt.block_on(s.broker.take().unwrap().shutdown());
    let (out, text) = run(&["check", "receive", "-c", cfg.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{text}");
    let fails = lines_of(&text, "FAIL");
    assert_eq!(fails.len(), 3, "{text}");
    assert!(
        fails[0].starts_with("FAIL key matches certificate: "),
        "{text}"
    );
    assert!(
        fails[0].contains(&format!(
            " is not the key of {}",
            s.pki.server.cert.display()
        )),
        "{text}"
    );
    assert!(
        fails[1].starts_with(&format!("FAIL allowed DNs: {}: ", missing_dns.display())),
        "{text}"
    );
    assert!(
        fails[2].starts_with(&format!("FAIL broker {broker}: ")),
        "{text}"
    );
    assert!(fails[2].contains("Connection refused"), "{text}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("3 check(s) failed"), "{stderr}");

    // --offline skips the broker: only the two local failures remain.
    let (out, text) = run(&["check", "receive", "-c", cfg.to_str().unwrap(), "--offline"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(lines_of(&text, "FAIL").len(), 2, "{text}");
    assert!(!text.contains("broker"), "{text}");
}

#[test]
fn sender_checks_use_the_send_flags() {
    let s = setup();
    let p = |x: &Path| x.display().to_string();
    let base = [
        "check".to_string(),
        "send".into(),
        "--ssm-version".into(),
        "1".into(),
        "--broker".into(),
        s.broker(),
        "--destination".into(),
        "/topic/check".into(),
        "--cert".into(),
        p(&s.pki.client.cert),
        "--key".into(),
        p(&s.pki.client.key),
        "--capath".into(),
        p(&s.pki.capath),
        "--path".into(),
        p(&s.dir.join("outgoing")),
    ];
    let mut good: Vec<String> = base.to_vec();
    good.extend(["--server-cert".into(), p(&s.pki.server.cert)]);
    let good: Vec<&str> = good.iter().map(String::as_str).collect();
    let (out, text) = run(&good);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains("OK   server certificate chain: chains to a trusted CA"),
        "{text}"
    );
    assert!(text.contains("OK   outgoing queue: "), "{text}");
    assert!(
        !s.dir.join("outgoing").exists(),
        "check must not create the queue"
    );

    // Our own certificate as the server's, and an expired one: both refused.
    let mut own: Vec<String> = base.to_vec();
    own.extend(["--server-cert".into(), p(&s.pki.client.cert)]);
    let own: Vec<&str> = own.iter().map(String::as_str).collect();
    let (out, text) = run(&own);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("is this host's own certificate"), "{text}");

    let mut expired: Vec<String> = base.to_vec();
    expired.extend(["--server-cert".into(), p(&s.pki.expired_client.cert)]);
    let expired: Vec<&str> = expired.iter().map(String::as_str).collect();
    let (out, text) = run(&expired);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        lines_of(&text, "FAIL server certificate expiry: ").len() == 1,
        "{text}"
    );

    // A configuration that does not load is one FAIL line.
    let (out, text) = run(&["check", "send", "-c", "/nonexistent/sender.cfg"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text.starts_with("FAIL configuration: /nonexistent/sender.cfg: cannot read: "),
        "{text}"
    );
}
