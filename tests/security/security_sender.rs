//! Security of the sender's side of the exchange (issue #13): forged `REJECTED` answers must
//! not cost a sender its message, the receiver must not be usable as a reflector of forged
//! answers or of `certresp`s, and hostile text must not forge log lines.
//!
//! The protocol scenarios run against a fresh embedded broker and every real broker named in
//! `SSM_TEST_BROKERS`; the log scenario runs `ssm receive` as a process on an embedded broker
//! process and reads its log file.

use crate::support::e2e;
use crate::support::frames::SsmFrames;

use e2e::{
    md5, message, pki, seal, sender_settings, sender_with, start_receiver, targets, tmp, topic,
    Peer,
};
use ssm::protocol::{AckOutcome, SsmMessage};
use ssm::receiver::{RejectReason, Stats};
use ssm::stomp::{Command, Frame};

/// A `msg` frame naming no message (`ssm-msg-id` missing) with `reply_to` as its reply queue:
/// what a forger sends to make the receiver answer `REJECTED` to a victim.
fn forged_msg(topic: &str, reply_to: &str) -> Frame {
    Frame::new(Command::Send)
        .with_header("destination", topic)
        .with_header("ssm-msg-type", "msg")
        .with_header("reply-to", reply_to)
        .with_body(&b"forged"[..])
}

/// Listens on `topic` until a `msg` arrives and returns its `reply-to` as the broker delivers it
/// (RabbitMQ rewrites a `/temp-queue/` name into a `/reply-queue/` one that others can send to).
async fn victims_reply_to(spy: &mut Peer) -> String {
    loop {
        let frame = spy.next().await;
        if let Ok(SsmMessage::Msg {
            reply_to: Some(r), ..
        }) = SsmMessage::from_frame(&frame)
        {
            return r;
        }
    }
}

// --- 6. Forged REJECTEDs -----------------------------------------------------------------

/// A fake receiver answers every `msg` first with forged and stale `REJECTED`s (naming no
/// message, naming another one, naming the message before) and then acks it: the sender must
/// set nothing aside.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rejected_that_does_not_name_the_message_in_flight_is_ignored() {
    for t in targets().await {
        let dir = tmp();
        let topic = topic();
        let msgs: Vec<Vec<u8>> = (0..3).map(|i| message("forged-rejected", i)).collect();
        let digests: Vec<String> = msgs.iter().map(|m| md5(m)).collect();
        let mut fake = Peer::listening(&t, &topic).await;
        let name = t.name.clone();
        let faker = tokio::spawn(async move {
            let mut acked = 0;
            let mut previous: Option<String> = None;
            while acked < digests.len() {
                let frame = fake.next().await;
                let Ok(SsmMessage::Msg { id, reply_to, .. }) = SsmMessage::from_frame(&frame)
                else {
                    continue;
                };
                let reply_to = reply_to.unwrap_or_else(|| panic!("[{name}] no reply-to"));
                let rejected = |ack_for: Option<String>| {
                    SsmMessage::Ack {
                        outcome: AckOutcome::Rejected {
                            reason: Some("forged".into()),
                        },
                        ack_for,
                    }
                    .to_frame(&reply_to)
                };
                fake.send(rejected(None)).await;
                fake.send(rejected(Some(format!("not-{id}")))).await;
                if let Some(p) = previous.replace(id.clone()) {
                    fake.send(rejected(Some(p))).await;
                }
                let ack = SsmMessage::Ack {
                    outcome: AckOutcome::Stored(digests[acked].clone()),
                    ack_for: Some(id),
                };
                fake.send(ack.to_frame(&reply_to)).await;
                acked += 1;
            }
        });
        let settings = sender_settings(&t, &topic, &pki().pki.client);
        let (mut sender, outgoing, reject) = sender_with(settings, dir.path(), &msgs);
        let summary = sender
            .run_once()
            .await
            .unwrap_or_else(|e| panic!("[{}] sender: {e}", t.name));
        faker.await.unwrap();
        assert_eq!(
            (summary.acked, summary.rejected, summary.retried),
            (3, 0, 0),
            "[{}] {summary}",
            t.name
        );
        assert_eq!(outgoing.count().unwrap(), 0, "[{}]", t.name);
        assert_eq!(reject.count().unwrap(), 0, "[{}] set aside", t.name);
    }
}

/// A `REJECTED` that names the message in flight still sets it aside (the feature is kept).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rejected_that_names_the_message_in_flight_sets_it_aside() {
    for t in targets().await {
        let dir = tmp();
        let topic = topic();
        let msg = message("named-rejected", 0);
        let mut fake = Peer::listening(&t, &topic).await;
        let name = t.name.clone();
        let faker = tokio::spawn(async move {
            loop {
                let frame = fake.next().await;
                if let Ok(SsmMessage::Msg { id, reply_to, .. }) = SsmMessage::from_frame(&frame) {
                    let reply_to = reply_to.unwrap_or_else(|| panic!("[{name}] no reply-to"));
                    let ack = SsmMessage::Ack {
                        outcome: AckOutcome::Rejected {
                            reason: Some("really rejected".into()),
                        },
                        ack_for: Some(id),
                    };
                    fake.send(ack.to_frame(&reply_to)).await;
                    return;
                }
            }
        });
        let settings = sender_settings(&t, &topic, &pki().pki.client);
        let (mut sender, outgoing, reject) =
            sender_with(settings, dir.path(), std::slice::from_ref(&msg));
        let summary = sender
            .run_once()
            .await
            .unwrap_or_else(|e| panic!("[{}] sender: {e}", t.name));
        faker.await.unwrap();
        assert_eq!((summary.acked, summary.rejected), (0, 1), "[{}]", t.name);
        assert_eq!(outgoing.count().unwrap(), 0);
        let set_aside = e2e::records(&reject);
        assert_eq!(set_aside.len(), 1, "[{}]", t.name);
        assert_eq!(set_aside[0].body, msg);
        assert_eq!(set_aside[0].error.as_deref(), Some("really rejected"));
    }
}

/// The receiver does not answer a `msg` that names no message: the answer could not tell a
/// genuine sender anything and lets anyone send `REJECTED`s to anyone. The frame is still kept
/// in the reject queue and counted. What follows from the same reply queue is answered first.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_receiver_sends_no_rejected_for_a_msg_that_names_no_message() {
    for t in targets().await {
        let dir = tmp();
        let topic = topic();
        let rx = start_receiver(&t, &topic, &dir.path().join("store")).await;
        let mut spy = Peer::listening(&t, &topic).await;
        let mut victim = Peer::connect(&t).await;
        let first = message("victim", 0);
        victim
            .send_msg(&topic, "victim-0", &seal(&first), None)
            .await;
        let reply_to = victims_reply_to(&mut spy).await;
        victim.expect_stored(&md5(&first)).await;

        let forger = Peer::connect(&t).await;
        for _ in 0..20 {
            forger.send(forged_msg(&topic, &reply_to)).await;
        }
        // The same reply queue, so the same lane: answered after the forged frames were handled.
        let second = message("victim", 1);
        victim
            .send_msg(&topic, "victim-1", &seal(&second), None)
            .await;
        let (outcome, frame) = victim.next_ack().await;
        assert_eq!(
            outcome,
            AckOutcome::Stored(md5(&second)),
            "[{}] the first answer after 20 forged frames: {frame:?}",
            t.name
        );
        let stats = rx.stop().await;
        assert_eq!(Stats::get(&stats.stored), 2, "[{}]", t.name);
        assert_eq!(
            stats.rejected_for(RejectReason::Malformed),
            20,
            "[{}] the forged frames are still counted",
            t.name
        );
        let store = ssm::queue::MessageStore::open(&dir.path().join("store")).unwrap();
        assert_eq!(store.reject.count().unwrap(), 20, "[{}] and kept", t.name);
    }
}

/// A malformed frame that does name a message is answered `REJECTED` naming it, so that the
/// sender of that id can act on it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_malformed_frame_with_an_id_is_rejected_naming_it() {
    for t in targets().await {
        let dir = tmp();
        let topic = topic();
        let rx = start_receiver(&t, &topic, &dir.path().join("store")).await;
        let mut peer = Peer::connect(&t).await;
        let frame = Frame::new(Command::Send)
            .with_header("destination", topic.as_str())
            .with_header("ssm-msg-type", "msg-v9")
            .with_header("ssm-msg-id", "odd-1")
            .with_header("reply-to", peer.reply_queue.as_str());
        peer.send(frame).await;
        let (outcome, frame) = peer.next_ack().await;
        assert!(
            matches!(outcome, AckOutcome::Rejected { .. }),
            "[{}] {outcome:?}",
            t.name
        );
        assert_eq!(
            frame.header("ssm-ack-for"),
            Some("odd-1"),
            "[{}] {frame:?}",
            t.name
        );
        rx.stop().await;
    }
}

/// The attack as reported: while a sender sends 20 messages, a forger that reads the topic
/// answers each `msg` it sees with three `msg` frames naming no message and that message's
/// reply queue (so the receiver's answers to them race the genuine ack). Every message must be
/// acked and stored, none set aside.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn forged_frames_after_each_message_cost_the_sender_nothing() {
    for t in targets().await {
        let dir = tmp();
        let topic = topic();
        let rx = start_receiver(&t, &topic, &dir.path().join("store")).await;
        let mut spy = Peer::listening(&t, &topic).await;
        let forger = Peer::connect(&t).await;
        let stop = tokio_util::sync::CancellationToken::new();
        let stopped = stop.clone();
        let topic2 = topic.clone();
        let flood = tokio::spawn(async move {
            let mut forged = 0u64;
            loop {
                let reply_to = tokio::select! {
                    _ = stopped.cancelled() => return forged,
                    r = victims_reply_to(&mut spy) => r,
                };
                for _ in 0..3 {
                    forger.send(forged_msg(&topic2, &reply_to)).await;
                    forged += 1;
                }
            }
        });
        let msgs: Vec<Vec<u8>> = (0..20).map(|i| message("flooded", i)).collect();
        let settings = sender_settings(&t, &topic, &pki().pki.client);
        let (mut sender, outgoing, reject) = sender_with(settings, dir.path(), &msgs);
        let summary = sender.run_once().await;
        stop.cancel();
        let forged = flood.await.unwrap();
        let summary = summary.unwrap_or_else(|e| panic!("[{}] sender: {e}", t.name));
        assert!(forged >= 3, "[{}] the forger sent {forged}", t.name);
        assert_eq!(
            (summary.acked, summary.rejected),
            (20, 0),
            "[{}] {summary} while {forged} forged frames were sent",
            t.name
        );
        assert_eq!(outgoing.count().unwrap(), 0);
        assert_eq!(reject.count().unwrap(), 0, "[{}] set aside", t.name);
        assert_eq!(rx.incoming().len(), 20, "[{}] stored", t.name);
        rx.stop().await;
    }
}

// --- 7. Log injection --------------------------------------------------------------------

/// A self-signed identity whose subject carries a forged log line, terminal escapes and
/// Unicode line breaks: what anyone can make, no CA needed.
fn hostile_identity(cn: &str, ou: &str) -> ssm::crypto::Identity {
    use openssl::asn1::Asn1Time;
    use openssl::bn::BigNum;
    use openssl::hash::MessageDigest;
    use openssl::pkey::PKey;
    use openssl::rsa::Rsa;
    use openssl::x509::{X509Builder, X509NameBuilder};

    let key = PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap();
    let mut name = X509NameBuilder::new().unwrap();
    name.append_entry_by_text("C", "UK").unwrap();
    name.append_entry_by_text("OU", ou).unwrap();
    name.append_entry_by_text("CN", cn).unwrap();
    let name = name.build();
    let mut b = X509Builder::new().unwrap();
    b.set_version(2).unwrap();
    let serial = BigNum::from_u32(4242).unwrap().to_asn1_integer().unwrap();
    b.set_serial_number(&serial).unwrap();
    b.set_subject_name(&name).unwrap();
    b.set_issuer_name(&name).unwrap();
    b.set_pubkey(&key).unwrap();
    b.set_not_before(&Asn1Time::days_from_now(0).unwrap())
        .unwrap();
    b.set_not_after(&Asn1Time::days_from_now(30).unwrap())
        .unwrap();
    b.sign(&key, MessageDigest::sha256()).unwrap();
    ssm::crypto::Identity {
        cert: b.build(),
        key,
    }
}

/// `ssm receive` as a process logging to a file (DEBUG, no console), on `t` (the in-process
/// embedded broker). Returns once it is subscribed.
fn spawn_receiver_logging_to(
    t: &e2e::Target,
    dir: &std::path::Path,
    topic: &str,
    log: &std::path::Path,
) -> std::process::Child {
    let p = pki();
    let cfg = dir.join("receiver.cfg");
    std::fs::write(
        &cfg,
        format!(
            "[broker]\nuse_ssl = false\n\n[logging]\nlogfile = {}\nlevel = DEBUG\nconsole = false\n",
            log.display()
        ),
    )
    .unwrap();
    let mut child = std::process::Command::new(crate::support::process::SSM)
        .arg("receive")
        .arg("-c")
        .arg(&cfg)
        .args(["--broker", &t.addr.to_string(), "--destination", topic])
        .arg("--cert")
        .arg(&p.pki.server.cert)
        .arg("--key")
        .arg(&p.pki.server.key)
        .arg("--capath")
        .arg(&p.pki.capath)
        .arg("--path")
        .arg(dir.join("store"))
        .arg("--dn-file")
        .arg(&p.dn_file)
        .env_remove("RUST_LOG")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn ssm receive");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if text.contains("receiver subscribed") {
            return child;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("ssm receive exited ({status}) before subscribing:\n{text}");
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("ssm receive did not subscribe within 60 s:\n{text}");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Whether `line` opens as the formatter writes every line: `YYYY-MM-DD HH:MM:SS,mmm - `.
fn opens_like_a_log_line(line: &str) -> bool {
    let b = line.as_bytes();
    b.len() > 26
        && b[..23].iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            10 => *c == b' ',
            13 | 16 => *c == b':',
            19 => *c == b',',
            _ => c.is_ascii_digit(),
        })
        && &line[23..26] == " - "
}

/// A message signed by a self-signed certificate whose CN holds a newline and a fake "Stored"
/// line (plus ESC and BEL), and whose OU holds NEL and a Unicode line separator, reaches a
/// receiver logging at DEBUG to a file: the log shows them escaped, on the real line, and no
/// line of it is forged.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hostile_signer_dn_cannot_forge_log_lines() {
    let t = targets()
        .await
        .into_iter()
        .find(|t| t.embedded.is_some())
        .expect("the embedded broker is always a target");
    let dir = tmp();
    let topic = topic();
    let log = dir.path().join("receiver.log");
    let mut child = spawn_receiver_logging_to(&t, dir.path(), &topic, &log);

    let forged = "\n1999-01-01 00:00:00,000 - ssm.receiver - INFO - Stored";
    let cn = format!("{forged}\u{1b}[8m\u{7}");
    let ou = "ou\u{85}1999-02-02\u{2028}1999-03-03";
    let evil = hostile_identity(&cn, ou);
    let mut peer = Peer::connect(&t).await;
    let sealed = e2e::seal_as(&message("log-injection", 0), &evil);
    peer.send_msg(&topic, "evil-1", &sealed, None).await;
    // The rejection is logged before it is answered.
    let (outcome, frame) = peer.next_ack().await;
    let text = std::fs::read_to_string(&log).unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        matches!(outcome, AckOutcome::Rejected { .. }),
        "{outcome:?} {frame:?}"
    );

    for line in text.lines() {
        assert!(
            opens_like_a_log_line(line) && !line.starts_with("1999-"),
            "a line not written by the formatter (forged?): {line:?}\n--- log:\n{text}"
        );
    }
    for c in ['\u{1b}', '\u{7}', '\u{85}', '\u{2028}', '\r'] {
        assert!(!text.contains(c), "raw {c:?} in the log:\n{text}");
    }
    let escaped_cn = r"\n1999-01-01 00:00:00,000 - ssm.receiver - INFO - Stored\x1b[8m\x07";
    let rejecting = text
        .lines()
        .find(|l| l.contains("rejecting message") && l.contains("evil-1"))
        .unwrap_or_else(|| panic!("no 'rejecting message' line for evil-1:\n{text}"));
    assert!(
        rejecting.contains(escaped_cn),
        "the DN is not shown escaped: {rejecting}"
    );
    assert!(
        rejecting.contains(r"ou\u{85}1999-02-02\u{2028}1999-03-03"),
        "{rejecting}"
    );
}

// --- W. certreq amplification -------------------------------------------------------------

/// A `certreq` naming `reply_to`.
fn certreq(topic: &str, reply_to: &str) -> Frame {
    SsmMessage::CertReq {
        reply_to: reply_to.to_string(),
        reack: None,
    }
    .to_frame(topic)
}

/// Twenty `certreq`s naming one reply queue get only the limited number of answers (the
/// burst, plus one per refill period that passed while they were sent); another reply queue
/// still gets its answer, and so does the first one's next message.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn certreq_answers_are_limited_per_reply_queue() {
    use ssm::receiver::{CERTRESP_BURST, CERTRESP_REFILL};
    for t in targets().await {
        let dir = tmp();
        let topic = topic();
        let rx = start_receiver(&t, &topic, &dir.path().join("store")).await;
        let mut target = Peer::connect(&t).await;
        let started = std::time::Instant::now();
        for _ in 0..20 {
            target.send(certreq(&topic, &target.reply_queue)).await;
        }
        // The receiver handles the topic in order and answers certreqs as it reads them: by
        // the time this message is acked, every certresp it sent has been sent.
        let good = message("certreq-flood", 0);
        target
            .send_msg(&topic, "after-certreqs", &seal(&good), None)
            .await;
        let mut certresps = 0u32;
        loop {
            let frame = target.next().await;
            match SsmMessage::from_frame(&frame) {
                Ok(SsmMessage::CertResp { .. }) => certresps += 1,
                Ok(SsmMessage::Ack { outcome, .. }) => {
                    assert_eq!(outcome, AckOutcome::Stored(md5(&good)), "[{}]", t.name);
                    break;
                }
                other => panic!("[{}] unexpected {other:?}", t.name),
            }
        }
        let refills = (started.elapsed().as_secs_f64() / CERTRESP_REFILL.as_secs_f64()) as u32;
        assert!(
            certresps >= CERTRESP_BURST && certresps <= CERTRESP_BURST + refills + 1,
            "[{}] {certresps} certresps for 20 certreqs (burst {CERTRESP_BURST}, {refills} refills)",
            t.name
        );

        let mut other = Peer::connect(&t).await;
        other.send(certreq(&topic, &other.reply_queue)).await;
        let frame = other.next().await;
        match SsmMessage::from_frame(&frame) {
            Ok(SsmMessage::CertResp { cert_pem }) => assert!(
                cert_pem.contains("BEGIN CERTIFICATE"),
                "[{}] {cert_pem}",
                t.name
            ),
            got => panic!("[{}] another queue got {got:?}", t.name),
        }
        let stats = rx.stop().await;
        assert_eq!(Stats::get(&stats.certreqs), 21, "[{}]", t.name);
    }
}
