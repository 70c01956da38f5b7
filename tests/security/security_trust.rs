//! Trust, names and signatures under attack (issue #13): CRLs and CAs follow the CA directory
//! (SIGHUP, changes), a stale CRL of ours is never answered `REJECTED`, DNs are compared RDN by
//! RDN on both sides (receiver DN list, sender `server_dn`), a forged `certresp` is ignored, a
//! DN file is never reloaded half-written, and MD5/SHA-1 signatures are refused by default.
//!
//! The receiver-process scenarios run `ssm receive` (the real binary, to get SIGHUP handling)
//! against the embedded broker and every real broker in `SSM_TEST_BROKERS`.

use crate::support::e2e;
use crate::support::frames::SsmFrames;
use crate::support::openssl_cli;

use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use e2e::{message, pki, targets, tmp, topic, Peer, Target, WAIT};
use ssm::crypto::{self, CryptoError, Dn, DnFile, DnList, Identity, Opener, TrustStore};
use ssm::harness::pki::CertFiles;
use ssm::protocol::{AckOutcome, SsmMessage};
use ssm::queue::MessageStore;
use ssm::sender::SenderError;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Child;
use tokio::sync::mpsc;

const DAY: i64 = 24 * 3600;

use crate::support::process::p;

fn ident(files: &CertFiles) -> Identity {
    Identity::load(&files.cert, &files.key).unwrap()
}

/// The `openssl x509 -subject -nameopt compat` line of a certificate, without `subject=`.
fn openssl_compat_subject(cert: &Path) -> String {
    let out = openssl_cli::openssl(
        &[
            "x509",
            "-noout",
            "-subject",
            "-nameopt",
            "compat",
            "-in",
            openssl_cli::path(cert),
        ],
        b"",
    );
    let line = String::from_utf8(out).unwrap();
    line.trim()
        .strip_prefix("subject=")
        .unwrap_or_else(|| panic!("{line}"))
        .to_string()
}

/// Certificates from the trusted CA that pretend to be `/C=UK/O=ssmtest/CN=client-a.test`,
/// and the genuine one; issued once per test binary.
struct Spoofs {
    genuine: CertFiles,
    /// `C=UK, O="ssmtest/CN=client-a.test"`.
    slash: CertFiles,
    /// `C=UK, O=ssmtest+CN=client-a.test` (one multi-valued RDN).
    multi: CertFiles,
    /// `C=UK, O="ssmtest\", CN=client-a.test` (OpenSSL's compat output reads like `slash`).
    backslash: CertFiles,
}

fn spoofs() -> &'static Spoofs {
    static S: std::sync::OnceLock<Spoofs> = std::sync::OnceLock::new();
    S.get_or_init(|| {
        let pk = &pki().pki;
        Spoofs {
            genuine: pk
                .issue_client_named(
                    "client-a",
                    &[("C", "UK"), ("O", "ssmtest"), ("CN", "client-a.test")],
                )
                .unwrap(),
            slash: pk
                .issue_client_named(
                    "spoof-slash",
                    &[("C", "UK"), ("O", "ssmtest/CN=client-a.test")],
                )
                .unwrap(),
            multi: pk
                .issue_client_named(
                    "spoof-multi",
                    &[("C", "UK"), ("O", "ssmtest"), ("+CN", "client-a.test")],
                )
                .unwrap(),
            backslash: pk
                .issue_client_named(
                    "spoof-backslash",
                    &[("C", "UK"), ("O", "ssmtest\\"), ("CN", "client-a.test")],
                )
                .unwrap(),
        }
    })
}

// ---------------------------------------------------------------------------------------------
// 4. DN spoofing through the slash form

#[test]
fn spoofed_subjects_do_not_match_the_allowed_dn() {
    let s = spoofs();
    let allowed = "/C=UK/O=ssmtest/CN=client-a.test";
    assert_eq!(s.genuine.dn, allowed);
    let (list, warnings) = DnList::parse(&format!("{allowed}\n"));
    assert!(warnings.is_empty());
    let opener = Opener::new(pki().server.clone(), pki().trust.clone());
    for spoof in [&s.slash, &s.multi, &s.backslash] {
        let body = e2e::seal_as(b"x", &ident(spoof));
        let opened = opener.open(&body).expect("a trusted signer");
        assert!(
            !list.contains(&opened.signer_dn),
            "{} passed for {allowed}",
            opened.signer_dn
        );
        // Its own DN, as OpenSSL prints it, does match it (but not the genuine certificate).
        let compat = openssl_compat_subject(&spoof.cert);
        let (own, _) = DnList::parse(&format!("{compat}\n"));
        let cert = crypto::load_cert(&spoof.cert).unwrap();
        let name = Dn::of_name(cert.subject_name());
        if spoof.cert != s.backslash.cert {
            // (compat prints `ssmtest\` + `/` as `ssmtest\/`, which reads as an escaped slash:
            // that one line is ambiguous in OpenSSL's own output.)
            assert!(own.contains_dn(&name), "{compat} vs {name}");
        }
        let genuine = crypto::load_cert(&s.genuine.cert).unwrap();
        assert!(
            !own.contains_dn(&Dn::of_name(genuine.subject_name())),
            "{compat}"
        );
        // Our rendering is unambiguous and reads back to the same name.
        assert!(
            DnList::parse(&format!("{}\n", opened.signer_dn))
                .0
                .contains_dn(&name),
            "{}",
            opened.signer_dn
        );
    }
    // The genuine certificate matches its line, and OpenSSL's line for it.
    let opened = opener
        .open(&e2e::seal_as(b"x", &ident(&s.genuine)))
        .unwrap();
    assert!(list.contains(&opened.signer_dn));
    assert_eq!(openssl_compat_subject(&s.genuine.cert), allowed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_receiver_rejects_spoofed_dns_and_stores_the_genuine_one() {
    let s = spoofs();
    for t in targets().await {
        let dir = tmp();
        let topic = topic();
        let dns = dir.path().join("dns");
        std::fs::write(&dns, "/C=UK/O=ssmtest/CN=client-a.test\n").unwrap();
        let rx = e2e::start_receiver_with(
            &t,
            &topic,
            &dir.path().join("store"),
            e2e::client_config(&t),
            &dns,
        )
        .await;
        let mut peer = Peer::connect(&t).await;
        for (i, spoof) in [&s.slash, &s.multi, &s.backslash].into_iter().enumerate() {
            let sealed = e2e::seal_as(&message("spoof", i), &ident(spoof));
            peer.send_msg(&topic, &format!("spoof-{i}"), &sealed, None)
                .await;
            let (outcome, frame) = peer.next_ack().await;
            match outcome {
                AckOutcome::Rejected { reason } => assert!(
                    reason
                        .as_deref()
                        .is_some_and(|r| r.contains("not in the allowed-DN list")),
                    "[{}] {reason:?}",
                    t.name
                ),
                other => panic!("[{}] spoof {i} was {other:?}: {frame:?}", t.name),
            }
        }
        let body = message("genuine", 0);
        let sealed = e2e::seal_as(&body, &ident(&s.genuine));
        peer.send_msg(&topic, "genuine", &sealed, None).await;
        peer.expect_stored(&e2e::md5(&body)).await;
        let stats = rx.stop().await;
        assert_eq!(ssm::receiver::Stats::get(&stats.stored), 1, "[{}]", t.name);
    }
}

// ---------------------------------------------------------------------------------------------
// 4 (sender side) and W2: certresp checks

/// A fake receiver on `topic` that answers the sender's certreq with each of `certresps` in
/// order, then takes the sender's `msg`, opens it with the real server key and acks it.
/// Returns whether the `msg` could be opened with the server's key, and the sender's result.
async fn certreq_scenario(
    t: &Target,
    certresps: Vec<String>,
) -> (bool, Result<ssm::sender::Summary, SenderError>) {
    let dir = tmp();
    let topic = topic();
    let mut fake = Peer::listening(t, &topic).await;
    let mut settings = e2e::sender_settings(t, &topic, &pki().pki.client);
    settings.server_cert = None;
    settings.server_dn = Some(pki().pki.server.dn.clone());
    settings.ack_timeout = Duration::from_secs(20);
    settings.max_attempts = 1;
    let (mut sender, _, _) = e2e::sender_with(settings, dir.path(), &[message("certreq", 0)]);
    let run = tokio::spawn(async move { sender.run_once().await });

    let reply_to = loop {
        let frame = fake.next().await;
        if let Ok(SsmMessage::CertReq { reply_to, .. }) = SsmMessage::from_frame(&frame) {
            break reply_to;
        }
    };
    for pem in certresps {
        fake.send(SsmMessage::CertResp { cert_pem: pem }.to_frame(&reply_to))
            .await;
    }
    let opener = Opener::new(pki().server.clone(), pki().trust.clone());
    let mut opened_ok = false;
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        tokio::select! {
            result = fake.client.recv() => {
                let Ok(ssm::stomp::Event::Message(frame)) = result else { continue };
                if let Ok(SsmMessage::Msg { id, reply_to, body, .. }) = SsmMessage::from_frame(&frame) {
                    if let Ok(opened) = opener.open(&body) {
                        opened_ok = true;
                        let ack = SsmMessage::Ack {
                            outcome: AckOutcome::Stored(crypto::message_id(&opened.content)),
                            ack_for: Some(id),
                        };
                        if let Some(reply_to) = reply_to {
                            fake.send(ack.to_frame(&reply_to)).await;
                        }
                    }
                    break;
                }
            }
            _ = tokio::time::sleep_until(deadline) => break,
        }
    }
    let result = if opened_ok {
        tokio::time::timeout(WAIT, run)
            .await
            .expect("sender finished")
            .unwrap()
    } else {
        // Ended already (forged certresp) or waiting for an ack that will not come.
        run.abort();
        match run.await {
            Ok(r) => r,
            Err(_) => Ok(ssm::sender::Summary::default()),
        }
    };
    (opened_ok, result)
}

fn pem(files: &CertFiles) -> String {
    std::fs::read_to_string(&files.cert).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_forged_certresp_is_ignored_while_the_real_one_is_awaited() {
    let pk = &pki().pki;
    // A self-signed certificate carrying the server's DN exactly.
    let rogue_dir = tmp();
    let rogue_key = rogue_dir.path().join("k.pem");
    let rogue_cert = rogue_dir.path().join("c.pem");
    openssl_cli::openssl(
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "30",
            "-subj",
            &pk.server.dn,
            "-keyout",
            openssl_cli::path(&rogue_key),
            "-out",
            openssl_cli::path(&rogue_cert),
        ],
        b"",
    );
    for t in targets().await {
        let forged = vec![
            "not a certificate".to_string(),
            pem(&pk.untrusted_client),
            std::fs::read_to_string(&rogue_cert).unwrap(),
            pem(&pk.server),
        ];
        let (opened, result) = certreq_scenario(&t, forged).await;
        let summary = result.unwrap_or_else(|e| panic!("[{}] sender failed: {e}", t.name));
        assert!(opened, "[{}] the msg was not for the server", t.name);
        assert_eq!((summary.acked, summary.rejected), (1, 0), "[{}]", t.name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_certresp_with_a_spoofed_server_dn_is_not_used() {
    let pk = &pki().pki;
    assert_eq!(pk.server.dn, "/C=UK/O=ssm-test/CN=localhost");
    let slash = pk
        .issue_client_named(
            "spoof-server-slash",
            &[("C", "UK"), ("O", "ssm-test/CN=localhost")],
        )
        .unwrap();
    let multi = pk
        .issue_client_named(
            "spoof-server-multi",
            &[("C", "UK"), ("O", "ssm-test"), ("+CN", "localhost")],
        )
        .unwrap();
    for t in targets().await {
        let (opened, result) =
            certreq_scenario(&t, vec![pem(&slash), pem(&multi), pem(&pk.server)]).await;
        assert!(
            opened,
            "[{}] the sender encrypted to a spoofed certificate",
            t.name
        );
        let summary = result.unwrap_or_else(|e| panic!("[{}] sender failed: {e}", t.name));
        assert_eq!(summary.acked, 1, "[{}]", t.name);
    }
}

// ---------------------------------------------------------------------------------------------
// W3: weak digests

fn sign_encrypt_with_md(content: &[u8], md: &str) -> Vec<u8> {
    let pk = &pki().pki;
    let signed = openssl_cli::openssl(
        &[
            "smime",
            "-sign",
            "-md",
            md,
            "-inkey",
            openssl_cli::path(&pk.client.key),
            "-signer",
            openssl_cli::path(&pk.client.cert),
            "-text",
        ],
        content,
    );
    openssl_cli::openssl(
        &[
            "smime",
            "-encrypt",
            "-aes128",
            openssl_cli::path(&pk.server.cert),
        ],
        &signed,
    )
}

#[test]
fn sha1_and_md5_signatures_are_refused_unless_allowed() {
    let msg = b"APEL-summary-job-message: v0.2\n%%\n";
    // The signed content is base64(zlib(msg)), as senders make it.
    let compressed = openssl_cli::py_zlib_compress(msg);
    let content = openssl_cli::py_b64_wrapped(&compressed);
    let strict = Opener::new(pki().server.clone(), pki().trust.clone());
    let lenient = strict.clone().allow_weak_digests(true);
    for md in ["sha1", "md5"] {
        let body = sign_encrypt_with_md(&content, md);
        match strict.open(&body) {
            Err(CryptoError::WeakDigest { digest }) => {
                assert!(digest.to_lowercase().contains(md), "{md}: {digest}")
            }
            other => panic!("{md}: {other:?}"),
        }
        let err = strict.open(&body).unwrap_err().to_string();
        assert!(err.contains("weak digest"), "{err}");
        assert_eq!(lenient.open(&body).expect(md).content, msg);
    }
    let body = sign_encrypt_with_md(&content, "sha256");
    assert_eq!(strict.open(&body).unwrap().content, msg);
    // What this implementation seals opens under the strict default.
    let sealed = crypto::seal(
        msg,
        &pki().client,
        &pki().server.cert,
        crypto::Cipher::Aes128,
    )
    .unwrap();
    assert_eq!(strict.open(&sealed).unwrap().content, msg);
}

// ---------------------------------------------------------------------------------------------
// 3. CRLs and CAs follow the directory

#[test]
fn the_trust_store_follows_its_directory_and_keeps_the_old_one_on_failure() {
    let pk = &pki().pki;
    let dir = tmp();
    let later = pk.issue_client("later-revoked.example.org").unwrap();
    let later_cert = crypto::load_cert(&later.cert).unwrap();
    let capath = pk
        .capath_with_crl(
            &dir.path().join("capath"),
            &pk.crl_pem(&[], -DAY, 30 * DAY, 1).unwrap(),
        )
        .unwrap();
    let trust = TrustStore::new(Some(&capath), None, true).unwrap();
    let clone = trust.clone();
    trust.verify(&later_cert, &[]).unwrap();
    assert_eq!(trust.reload_if_changed().unwrap(), None, "nothing changed");

    // A new CRL (as fetch-crl installs it) is picked up without a restart, by every clone.
    pk.install_crl(&capath, &pk.crl_pem(&[&later], -DAY, 30 * DAY, 2).unwrap())
        .unwrap();
    let counts = trust.reload_if_changed().unwrap().expect("a change");
    assert_eq!((counts.cas, counts.crls), (1, 1));
    assert!(matches!(
        clone.verify(&later_cert, &[]),
        Err(CryptoError::Revoked { .. })
    ));

    // An expired CRL of ours is our fault, not the signer's.
    pk.install_crl(&capath, &pk.crl_pem(&[], -2 * DAY, -3600, 3).unwrap())
        .unwrap();
    trust.reload().unwrap();
    let err = trust.verify(&later_cert, &[]).unwrap_err();
    assert!(
        matches!(err, CryptoError::TrustUnavailable { .. }) && err.is_own_fault(),
        "{err}"
    );
    assert!(
        trust.crl_problems().iter().any(|p| p.contains("expired")),
        "{:?}",
        trust.crl_problems()
    );

    // A failed rebuild (the CA gone) keeps the store in use.
    pk.install_crl(&capath, &pk.crl_pem(&[&later], -DAY, 30 * DAY, 4).unwrap())
        .unwrap();
    trust.reload().unwrap();
    for entry in std::fs::read_dir(&capath).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "0") {
            std::fs::remove_file(path).unwrap();
        }
    }
    assert!(trust.reload_if_changed().is_err());
    assert!(trust.reload().is_err());
    assert_eq!(trust.ca_count(), 1);
    assert!(matches!(
        trust.verify(&later_cert, &[]),
        Err(CryptoError::Revoked { .. })
    ));
    trust
        .verify(&crypto::load_cert(&pk.client.cert).unwrap(), &[])
        .unwrap();
}

use crate::support::process::ssm_command as ssm;

/// A background `ssm receive` whose stderr is collected line by line.
struct Receiver {
    child: Child,
    stderr: Arc<Mutex<String>>,
    lines: mpsc::UnboundedReceiver<String>,
}

impl Receiver {
    /// Starts `ssm receive` with `capath` (CRLs checked) and `dn_file`; waits until subscribed.
    async fn start(t: &Target, topic: &str, store: &Path, capath: &Path, dn_file: &Path) -> Self {
        let pk = &pki().pki;
        let mut args: Vec<String> = vec!["receive".into()];
        args.extend(t.flags());
        args.extend([
            "--destination".into(),
            topic.to_string(),
            "--cert".into(),
            p(&pk.server.cert),
            "--key".into(),
            p(&pk.server.key),
            "--capath".into(),
            p(capath),
            "--crl-check".into(),
            "-d".into(),
            p(dn_file),
            "--path".into(),
            p(store),
        ]);
        let mut child = ssm(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let err = child.stderr.take().unwrap();
        let stderr = Arc::new(Mutex::new(String::new()));
        let (tx, lines) = mpsc::unbounded_channel();
        let all = stderr.clone();
        tokio::spawn(async move {
            let mut r = BufReader::new(err).lines();
            while let Ok(Some(line)) = r.next_line().await {
                all.lock().unwrap().push_str(&format!("{line}\n"));
                let _ = tx.send(line);
            }
        });
        let mut rx = Receiver {
            child,
            stderr,
            lines,
        };
        rx.wait_for(&["receiver subscribed"]).await;
        rx
    }

    /// Waits until a stderr line contains one of `needles`; returns that line.
    async fn wait_for(&mut self, needles: &[&str]) -> String {
        let found = tokio::time::timeout(WAIT * 2, async {
            while let Some(line) = self.lines.recv().await {
                if needles.iter().any(|n| line.contains(n)) {
                    return Some(line);
                }
            }
            None
        })
        .await;
        match found {
            Ok(Some(line)) => line,
            _ => panic!(
                "no stderr line with {needles:?}; stderr so far:\n{}",
                self.stderr.lock().unwrap()
            ),
        }
    }

    fn hup(&self) {
        let pid = self.child.id().expect("running") as libc::pid_t;
        // SAFETY: kill(2) on the pid of a child we spawned and have not reaped.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGHUP) }, 0);
    }

    async fn stop(mut self) -> String {
        let pid = self.child.id().expect("running") as libc::pid_t;
        // SAFETY: as in `hup`.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
        let status = tokio::time::timeout(WAIT, self.child.wait())
            .await
            .expect("receiver exits")
            .unwrap();
        let text = self.stderr.lock().unwrap().clone();
        assert!(status.success(), "{text}");
        text
    }
}

/// Sends one message signed by `cert` through an in-process sender; returns its summary.
async fn send_one(
    t: &Target,
    topic: &str,
    cert: &CertFiles,
    qdir: &Path,
    body: Vec<u8>,
    ack_timeout: Duration,
) -> Result<ssm::sender::Summary, SenderError> {
    let mut settings = e2e::sender_settings(t, topic, cert);
    settings.ack_timeout = ack_timeout;
    settings.max_attempts = 1;
    let (mut sender, _, _) = e2e::sender_with(settings, qdir, &[body]);
    sender.run_once().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_crl_refreshed_on_disk_is_honoured_after_sighup() {
    let pk = &pki().pki;
    let signer = pk.issue_client("revoked-later.example.org").unwrap();
    for t in targets().await {
        let dir = tmp();
        let topic = topic();
        let capath = pk
            .capath_with_crl(
                &dir.path().join("capath"),
                &pk.crl_pem(&[], -DAY, 30 * DAY, 1).unwrap(),
            )
            .unwrap();
        let dns = dir.path().join("dns");
        std::fs::write(&dns, format!("{}\n", signer.dn)).unwrap();
        let store = dir.path().join("store");
        let mut rx = Receiver::start(&t, &topic, &store, &capath, &dns).await;

        let before = send_one(
            &t,
            &topic,
            &signer,
            &dir.path().join("q1"),
            message("crl", 1),
            WAIT,
        )
        .await
        .unwrap();
        assert_eq!((before.acked, before.rejected), (1, 0), "[{}]", t.name);

        pk.install_crl(&capath, &pk.crl_pem(&[&signer], -60, 30 * DAY, 2).unwrap())
            .unwrap();
        rx.hup();
        // The trust store is rebuilt before the DN file is read again.
        rx.wait_for(&["allowed DNs loaded", "keeping the old DN list"])
            .await;
        let after = send_one(
            &t,
            &topic,
            &signer,
            &dir.path().join("q2"),
            message("crl", 2),
            WAIT,
        )
        .await
        .unwrap();
        assert_eq!(
            (after.acked, after.rejected),
            (0, 1),
            "[{}] a revoked signer was accepted",
            t.name
        );
        let err = rx.stop().await;
        assert!(err.contains("trust store reloaded"), "[{}] {err}", t.name);
        let stored = e2e::records(&MessageStore::open(&store).unwrap().incoming);
        assert_eq!(stored.len(), 1, "[{}]", t.name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_expired_crl_of_ours_is_not_answered_rejected() {
    let pk = &pki().pki;
    for t in targets().await {
        let dir = tmp();
        let topic = topic();
        // The start-up CRL's nextUpdate has passed (fetch-crl stopped running, say).
        let capath = pk
            .capath_with_crl(
                &dir.path().join("capath"),
                &pk.crl_pem(&[], -2 * DAY, -3600, 1).unwrap(),
            )
            .unwrap();
        let dns = dir.path().join("dns");
        std::fs::write(&dns, format!("{}\n", pk.client.dn)).unwrap();
        let store = dir.path().join("store");

        // `ssm check receive` warns about it.
        let mut args: Vec<String> = ["check", "receive", "--offline", "--crl-check"]
            .map(String::from)
            .to_vec();
        args.extend([
            "--broker".into(),
            t.addr.to_string(),
            "--destination".into(),
            topic.clone(),
            "--cert".into(),
            p(&pk.server.cert),
            "--key".into(),
            p(&pk.server.key),
            "--capath".into(),
            p(&capath),
            "-d".into(),
            p(&dns),
            "--path".into(),
            p(&store),
        ]);
        let out = ssm(&args).output().await.unwrap();
        let report = String::from_utf8_lossy(&out.stdout);
        assert!(
            report
                .lines()
                .any(|l| l.contains("CRL warning") && l.contains("expired")),
            "[{}] {report}",
            t.name
        );

        let mut rx = Receiver::start(&t, &topic, &store, &capath, &dns).await;
        let q = dir.path().join("q");
        let body = message("stale-crl", 0);
        let result = send_one(
            &t,
            &topic,
            &pk.client,
            &q,
            body.clone(),
            Duration::from_secs(5),
        )
        .await;
        match result {
            Err(SenderError::NoAck { .. }) => {}
            other => panic!("[{}] expected no ack, got {other:?}", t.name),
        }
        rx.wait_for(&["not acking", "rejecting message"]).await;
        let s = MessageStore::open(&store).unwrap();
        assert!(e2e::records(&s.reject).is_empty(), "[{}] rejected", t.name);
        assert!(e2e::records(&s.incoming).is_empty(), "[{}]", t.name);

        // A fresh CRL on disk: used after SIGHUP, and the queued message gets through.
        pk.install_crl(&capath, &pk.crl_pem(&[], -60, 30 * DAY, 2).unwrap())
            .unwrap();
        rx.hup();
        rx.wait_for(&["allowed DNs loaded", "keeping the old DN list"])
            .await;
        let settings = e2e::sender_settings(&t, &topic, &pk.client);
        let (mut sender, _, _) = e2e::sender_with(settings, &q, &[]);
        let summary = sender.run_once().await.unwrap();
        assert_eq!((summary.acked, summary.rejected), (1, 0), "[{}]", t.name);
        let err = rx.stop().await;
        assert!(
            err.contains("cannot judge the signer with our CRLs"),
            "[{}] {err}",
            t.name
        );
        let stored = e2e::records(&MessageStore::open(&store).unwrap().incoming);
        assert_eq!(stored.len(), 1, "[{}]", t.name);
        assert_eq!(stored[0].body, body);
    }
}

// ---------------------------------------------------------------------------------------------
// W1: the DN file is never reloaded half-written

/// 200 allowed DNs, the test client's last (so a file cut short loses it).
fn many_dns() -> String {
    let mut text = String::new();
    for i in 0..199 {
        text.push_str(&format!("/C=UK/O=ssm-test/CN=site{i:03}.example.org\n"));
    }
    text.push_str(&format!("{}\n", pki().pki.client.dn));
    text
}

#[test]
fn a_dn_file_reload_refuses_partial_files() {
    let dir = tmp();
    let path = dir.path().join("dns");
    let full = many_dns();
    std::fs::write(&path, &full).unwrap();
    let mut file = DnFile::new(&path);
    let current = file.load().unwrap();
    assert_eq!(current.len(), 200);

    // Cut mid-line: no final newline.
    std::fs::write(&path, &full[..full.len() / 2]).unwrap();
    let err = file.reload(&current).unwrap_err().to_string();
    assert!(err.contains("newline"), "{err}");
    // Empty (truncated, not yet written).
    std::fs::write(&path, "").unwrap();
    assert!(file.reload(&current).is_err());
    // Cut at a line end: most DNs gone. Refused once, accepted when seen again.
    let cut: String = full.lines().take(40).map(|l| format!("{l}\n")).collect();
    std::fs::write(&path, &cut).unwrap();
    let err = file.reload(&current).unwrap_err().to_string();
    assert!(err.contains("holds 40 DNs where 200 are in use"), "{err}");
    assert_eq!(file.reload(&current).unwrap().len(), 40);
    // A cut by a quarter or less, or a replacement, goes through at once.
    let most: String = full.lines().take(150).map(|l| format!("{l}\n")).collect();
    std::fs::write(&path, &most).unwrap();
    assert_eq!(file.reload(&current).unwrap().len(), 150);
    let one = DnList::parse("/CN=a\n").0;
    std::fs::write(&path, "/CN=b\n").unwrap();
    assert!(file.reload(&one).unwrap().contains("/CN=b"));
    // Ordinary edits go through at once.
    let mut edited = full.clone();
    edited.push_str("/C=UK/O=ssm-test/CN=new.example.org\n");
    std::fs::write(&path, &edited).unwrap();
    assert_eq!(file.reload(&current).unwrap().len(), 201);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sighup_during_an_in_place_rewrite_keeps_the_old_dn_list() {
    let pk = &pki().pki;
    for t in targets().await {
        let dir = tmp();
        let topic = topic();
        let dns = dir.path().join("dns");
        let full = many_dns();
        std::fs::write(&dns, &full).unwrap();
        let store = dir.path().join("store");
        let capath = pk
            .capath_with_crl(&dir.path().join("capath"), &std::fs::read(&pk.crl).unwrap())
            .unwrap();
        let mut rx = Receiver::start(&t, &topic, &store, &capath, &dns).await;

        // The file is being rewritten in place (truncated, then written slowly) when the
        // SIGHUP arrives: stopped once mid-line, once at a line end.
        let half = full.len() / 2;
        let line_end = full[..half].rfind('\n').unwrap() + 1;
        for (i, cut) in [half, line_end].into_iter().enumerate() {
            {
                use std::io::Write;
                let mut f = std::fs::OpenOptions::new()
                    .write(true)
                    .truncate(true)
                    .open(&dns)
                    .unwrap();
                f.write_all(&full.as_bytes()[..cut]).unwrap();
            }
            rx.hup();
            rx.wait_for(&["allowed DNs loaded", "keeping the old DN list"])
                .await;
            let r = send_one(
                &t,
                &topic,
                &pk.client,
                &dir.path().join(format!("q{i}")),
                message("dns", i),
                WAIT,
            )
            .await
            .unwrap();
            assert_eq!(
                (r.acked, r.rejected),
                (1, 0),
                "[{}] cut at {cut}: the client's DN was lost",
                t.name
            );
            // The writer finishes.
            std::fs::write(&dns, &full).unwrap();
        }
        let err = rx.stop().await;
        assert!(
            err.contains("keeping the old DN list"),
            "[{}] {err}",
            t.name
        );
    }
}
