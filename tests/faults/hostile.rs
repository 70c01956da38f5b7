//! Hostile input to a running `ssm receive` (a real process, `--crl-check`, debug logging):
//! frames sent with `ssm::stomp::Client` straight to the topic it listens on. Every case that
//! names a reply queue and a message must be answered `REJECTED` and kept in the reject queue
//! (what names no message is kept unanswered; what cannot be answered is logged), nothing of it may reach the incoming queue, and the receiver
//! must keep working: a good message is sent, stored and acked after every case.
//!
//! Runs against a fresh embedded broker process (allowed 200 MiB frames, so that the 100 MiB
//! frame reaches the receiver) and every real broker named in `SSM_TEST_BROKERS`.
//! The outcomes are tabulated in docs/security.md.

use crate::support::faults;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use faults::*;
use openssl::pkcs7::{Pkcs7, Pkcs7Flags};
use openssl::stack::Stack;
use openssl::x509::X509;
use ssm::crypto::{message_id, seal, Cipher, Identity};
use ssm::harness::pki::CertFiles;
use ssm::stomp::{AckMode, Client, Command, Event, Frame};

const WAIT: Duration = Duration::from_secs(20);

use crate::support::peer::{Answer, Peer};

/// Everything a hostile case needs.
struct Ctx {
    w: World,
    server: X509,
    good: Identity,
    other_site: CertFiles,
    intruder: CertFiles,
}

impl Ctx {
    fn new(b: &Target) -> Ctx {
        let w = World::new("hostile");
        let server = X509::from_pem(&std::fs::read(&w.pki.server.cert).unwrap()).unwrap();
        let good = Identity::load(&w.pki.client.cert, &w.pki.client.key).unwrap();
        let other_site = w.pki.issue_client("other-site.example.org").unwrap();
        let intruder = w.pki.issue_client("intruder.example.org").unwrap();
        // Allowed: the good client and another site; and the untrusted, expired and revoked
        // clients, so that it is the chain check, not the DN list, that refuses them.
        let dns: String = [
            &w.pki.client.dn,
            &other_site.dn,
            &w.pki.untrusted_client.dn,
            &w.pki.expired_client.dn,
            &w.pki.revoked_client.dn,
        ]
        .iter()
        .map(|d| format!("{d}\n"))
        .collect();
        // The intruder's DN in another case only: the match is exact and case-sensitive.
        let dns = format!("{dns}{}\n", intruder.dn.to_uppercase());
        std::fs::write(&w.dn_file, dns).unwrap();
        let _ = b;
        Ctx {
            w,
            server,
            good,
            other_site,
            intruder,
        }
    }

    fn sealed_by(&self, who: &CertFiles, content: &[u8]) -> Vec<u8> {
        let id = Identity::load(&who.cert, &who.key).unwrap();
        seal(content, &id, &self.server, Cipher::Des3).unwrap()
    }

    fn good_msg(&self, content: &[u8]) -> Vec<u8> {
        seal(content, &self.good, &self.server, Cipher::Aes256).unwrap()
    }
}

fn sign_only(id: &Identity, content: &[u8]) -> Vec<u8> {
    let flags = Pkcs7Flags::TEXT | Pkcs7Flags::DETACHED | Pkcs7Flags::STREAM;
    let p7 = Pkcs7::sign(&id.cert, &id.key, &Stack::new().unwrap(), content, flags).unwrap();
    p7.to_smime(content, flags).unwrap()
}

fn encrypt_only(server: &X509, content: &[u8]) -> Vec<u8> {
    let mut st = Stack::new().unwrap();
    st.push(server.clone()).unwrap();
    let p7 = Pkcs7::encrypt(
        &st,
        content,
        openssl::symm::Cipher::aes_256_cbc(),
        Pkcs7Flags::empty(),
    )
    .unwrap();
    p7.to_smime(&[], Pkcs7Flags::empty()).unwrap()
}

fn b64(data: &[u8]) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .encode(data)
        .into_bytes()
}

/// A zlib stream of `n` zero bytes (n = 1 + 258 k), built by hand with fixed-Huffman
/// length-258 matches: about 1.6 bytes per KiB, so no need to compress the bytes for real.
fn zlib_zeros(k: usize) -> Vec<u8> {
    struct Bits {
        out: Vec<u8>,
        acc: u64,
        n: u32,
    }
    impl Bits {
        fn put(&mut self, v: u64, len: u32) {
            self.acc |= v << self.n;
            self.n += len;
            while self.n >= 8 {
                self.out.push(self.acc as u8);
                self.acc >>= 8;
                self.n -= 8;
            }
        }
        /// A Huffman code, most significant bit first.
        fn code(&mut self, c: u64, len: u32) {
            for i in (0..len).rev() {
                self.put((c >> i) & 1, 1);
            }
        }
    }
    let mut b = Bits {
        out: vec![0x78, 0x01],
        acc: 0,
        n: 0,
    };
    b.put(1, 1); // BFINAL
    b.put(1, 2); // fixed Huffman
    b.code(0x30, 8); // literal 0
    for _ in 0..k {
        b.code(0xC5, 8); // length 258
        b.code(0, 5); // distance 1
    }
    b.code(0, 7); // end of block
    if b.n > 0 {
        b.put(0, 8 - b.n);
    }
    let total = 1 + 258 * k as u64;
    let adler = (((total % 65521) << 16) | 1) as u32;
    let mut out = b.out;
    out.extend_from_slice(&adler.to_be_bytes());
    out
}

/// One row of the outcome table.
struct Row {
    case: &'static str,
    answer: String,
}

/// Sends a good message and asserts it is stored: the receiver still works.
async fn still_works(ctx: &Ctx, peer: &mut Peer, after: &str) {
    let content = message(0, rand_between(0, 1 << 40) as usize);
    let id = format!("good-after-{}", uuid::Uuid::new_v4().simple());
    peer.send(peer.msg(&id, None, ctx.good_msg(&content))).await;
    let got = peer.answer(Some(&id), WAIT).await;
    assert_eq!(
        got,
        Answer::Stored(message_id(&content)),
        "[{}] a good message after '{after}' was not stored and acked",
        peer.name
    );
}

async fn expect_rejected(
    ctx: &Ctx,
    peer: &mut Peer,
    rows: &mut Vec<Row>,
    case: &'static str,
    f: Frame,
    id: Option<&str>,
) {
    let before = stored_records(&ctx.w.store).len();
    peer.send(f).await;
    let got = peer.answer(id, WAIT).await;
    let Answer::Rejected(reason) = &got else {
        panic!("[{}] {case}: expected REJECTED, got {got:?}", peer.name);
    };
    assert_eq!(
        stored_records(&ctx.w.store).len(),
        before,
        "[{}] {case}: something was stored",
        peer.name
    );
    rows.push(Row {
        case,
        answer: format!("REJECTED: {reason}"),
    });
    still_works(ctx, peer, case).await;
}

/// A frame that names no message: not answered (an answer naming nothing could serve only a
/// forger, issue #13), but kept in the reject queue; the next answer is the next message's.
async fn expect_unanswered(
    ctx: &Ctx,
    peer: &mut Peer,
    rows: &mut Vec<Row>,
    case: &'static str,
    f: Frame,
) {
    let before = stored_records(&ctx.w.store).len();
    let kept = rejected_records(&ctx.w.store).len();
    peer.send(f).await;
    // An unnamed REJECTED would be taken by `answer` as the good message's answer.
    still_works(ctx, peer, case).await;
    assert_eq!(
        stored_records(&ctx.w.store).len(),
        before + 1,
        "[{}] {case}: something else was stored",
        peer.name
    );
    assert_eq!(
        rejected_records(&ctx.w.store).len(),
        kept + 1,
        "[{}] {case}: not kept in the reject queue",
        peer.name
    );
    rows.push(Row {
        case,
        answer: "not answered (it names no message); kept in the reject queue".into(),
    });
}

fn run_all(b: &Target) {
    let ctx = Ctx::new(b);
    let mut r = ReceiverProc::start_with_env(&ctx.w, b, &["--crl-check"], &[("RUST_LOG", "debug")]);
    let rt = runtime();
    let mut rows = Vec::new();
    rt.block_on(async {
        let mut peer = Peer::on_topic(b, &ctx.w.topic, "hostile").await;
        still_works(&ctx, &mut peer, "start").await;
        let good_content = message(0, 1);

        let f = peer.msg(
            "garbage",
            None,
            b"\x00\x01hello, this is not S/MIME\xff".to_vec(),
        );
        expect_rejected(
            &ctx,
            &mut peer,
            &mut rows,
            "garbage body",
            f,
            Some("garbage"),
        )
        .await;

        let mut t = ctx.good_msg(&good_content);
        t.truncate(t.len() / 2);
        let f = peer.msg("truncated", None, t);
        expect_rejected(
            &ctx,
            &mut peer,
            &mut rows,
            "truncated S/MIME",
            f,
            Some("truncated"),
        )
        .await;

        for (case, who) in [
            ("signed by an untrusted CA", &ctx.w.pki.untrusted_client),
            (
                "signed with an expired certificate",
                &ctx.w.pki.expired_client,
            ),
            (
                "signed with a revoked certificate (--crl-check)",
                &ctx.w.pki.revoked_client,
            ),
            (
                "allowed CA, DN not in the list (only an upper-case variant is)",
                &ctx.intruder,
            ),
        ] {
            let id = uuid::Uuid::new_v4().simple().to_string();
            let f = peer.msg(&id, None, ctx.sealed_by(who, &good_content));
            expect_rejected(&ctx, &mut peer, &mut rows, case, f, Some(&id)).await;
        }

        let f = peer.msg(
            "unsigned",
            None,
            encrypt_only(&ctx.server, &b64(b"x\x9c\x03\x00\x00\x00\x00\x01")),
        );
        expect_rejected(
            &ctx,
            &mut peer,
            &mut rows,
            "encrypted, not signed",
            f,
            Some("unsigned"),
        )
        .await;

        let f = peer.msg("cleartext", None, sign_only(&ctx.good, &b64(&good_content)));
        expect_rejected(
            &ctx,
            &mut peer,
            &mut rows,
            "signed, not encrypted",
            f,
            Some("cleartext"),
        )
        .await;

        // 80 MiB of zeros in ~530 KB: over the 64 MiB cap on a message.
        let bomb = b64(&zlib_zeros(80 * 1024 * 1024 / 258));
        let bomb = seal_raw(&ctx, &bomb);
        let f = peer.msg("bomb", None, bomb);
        expect_rejected(
            &ctx,
            &mut peer,
            &mut rows,
            "zlib bomb (80 MiB of zeros)",
            f,
            Some("bomb"),
        )
        .await;

        let f = peer
            .frame()
            .with_header("ssm-msg-id", "x")
            .with_body(&b"no type"[..]);
        expect_rejected(&ctx, &mut peer, &mut rows, "missing ssm-msg-type", f, None).await;
        let f = peer
            .frame()
            .with_header("ssm-msg-type", "gimme-your-key")
            .with_header("ssm-msg-id", "x");
        expect_rejected(&ctx, &mut peer, &mut rows, "unknown ssm-msg-type", f, None).await;
        let f = peer
            .frame()
            .with_header("ssm-msg-type", "msg")
            .with_body(ctx.good_msg(&good_content));
        expect_unanswered(&ctx, &mut peer, &mut rows, "msg without ssm-msg-id", f).await;

        let f = peer.msg(
            "ctl\u{1b}[31mred\u{7}\u{1}",
            None,
            ctx.good_msg(&message(0, 2)),
        );
        expect_unanswered(
            &ctx,
            &mut peer,
            &mut rows,
            "control characters in ssm-msg-id",
            f,
        )
        .await;

        // Replays. The exact sealed bytes of a stored message again (another id, another
        // connection's reply queue): a duplicate, None, acked again, not stored again.
        let content = message(0, 3);
        let sealed = ctx.good_msg(&content);
        peer.send(peer.msg("orig", None, sealed.clone())).await;
        assert_eq!(
            peer.answer(Some("orig"), WAIT).await,
            Answer::Stored(message_id(&content))
        );
        let n = stored_records(&ctx.w.store).len();
        let mut replayer = Peer::on_topic(b, &ctx.w.topic, "hostile").await;
        replayer.send(replayer.msg("replay", None, sealed)).await;
        let got = replayer.answer(Some("replay"), WAIT).await;
        assert_eq!(
            got,
            Answer::Stored(message_id(&content)),
            "[{}] replay",
            b.name
        );
        assert_eq!(
            stored_records(&ctx.w.store).len(),
            n,
            "[{}] a replay was stored again",
            b.name
        );
        rows.push(Row {
            case: "replay of a stored message (same sealed bytes)",
            answer: "acked as a duplicate (MD5), not stored again".into(),
        });
        // The same content re-signed by another allowed site: a message of that site.
        replayer
            .send(replayer.msg("resigned", None, ctx.sealed_by(&ctx.other_site, &content)))
            .await;
        let got = replayer.answer(Some("resigned"), WAIT).await;
        assert_eq!(got, Answer::Stored(message_id(&content)));
        let signers: Vec<String> = stored_records(&ctx.w.store)
            .into_iter()
            .filter(|(_, m)| *m == message_id(&content))
            .map(|(s, _)| s)
            .collect();
        assert_eq!(signers.len(), 2);
        assert!(signers.contains(&ctx.other_site.dn) && signers.contains(&ctx.w.pki.client.dn));
        rows.push(Row {
            case: "same content re-signed by another allowed site",
            answer: "stored once more, attributed to the re-signer's DN".into(),
        });

        // reply-to naming someone else's queue: the attacker learns a victim's (broker-
        // rewritten) reply queue by listening on the topic, then sends junk naming it.
        let mut victim = Peer::on_topic(b, &ctx.w.topic, "hostile").await;
        let mut spy = Client::connect(&b.config_with_heartbeats()).await.unwrap();
        spy.handle()
            .subscribe(&ctx.w.topic, AckMode::Auto, &[])
            .await
            .unwrap();
        let vcontent = message(0, 4);
        victim
            .send(victim.msg("victim-1", None, ctx.good_msg(&vcontent)))
            .await;
        assert_eq!(
            victim.answer(Some("victim-1"), WAIT).await,
            Answer::Stored(message_id(&vcontent))
        );
        let seen_reply = loop {
            match tokio::time::timeout(WAIT, spy.recv()).await {
                Ok(Ok(Event::Message(f))) if f.header("ssm-msg-id") == Some("victim-1") => {
                    break f.header("reply-to").unwrap().to_string()
                }
                Ok(Ok(_)) => continue,
                other => panic!("[{}] the spy saw nothing: {other:?}", b.name),
            }
        };
        let f = Frame::new(Command::Send)
            .with_header("destination", ctx.w.topic.as_str())
            .with_header("reply-to", seen_reply.as_str())
            .with_header("ssm-msg-type", "msg")
            .with_header("ssm-msg-id", "victim-2")
            .with_body(&b"junk"[..]);
        peer.send(f).await;
        let got = victim.answer(Some("victim-2"), WAIT).await;
        assert!(
            matches!(got, Answer::Rejected(_)),
            "[{}] victim got {got:?}",
            b.name
        );
        rows.push(Row {
            case: "reply-to naming someone else's queue",
            answer: "REJECTED delivered to that queue (the victim)".into(),
        });
        still_works(&ctx, &mut peer, "reply-to elsewhere").await;

        // Control characters in a header of a ping (which gets no answer when it is well formed).
        let f = peer
            .frame()
            .with_header("ssm-msg-type", "ping")
            .with_header("ssm-msg-id", "ping")
            .with_header("ssm-reack", "\u{1b}]0;pwned\u{7}");
        expect_rejected(
            &ctx,
            &mut peer,
            &mut rows,
            "control characters in ssm-reack of a ping",
            f,
            None,
        )
        .await;
        let _ = spy.disconnect().await;
    });
    let log = r.log_text();
    assert!(r.is_running(), "[{}] the receiver died", b.name);
    assert!(
        !log.contains('\u{1b}') && !log.contains('\u{7}'),
        "[{}] a control character reached the log",
        b.name
    );

    // Nothing hostile was stored; everything rejected is in the reject queue with a reason.
    let rejected = rejected_records(&ctx.w.store);
    assert!(
        rejected.len()
            >= rows
                .iter()
                .filter(|r| r.answer.starts_with("REJECTED:"))
                .count(),
        "[{}] only {} reject-queue entries",
        b.name,
        rejected.len()
    );
    assert!(rejected.iter().all(|(e, _)| !e.is_empty()));
    for (signer, _) in stored_records(&ctx.w.store) {
        assert!(
            signer == ctx.w.pki.client.dn || signer == ctx.other_site.dn,
            "[{}] stored a message signed by {signer}",
            b.name
        );
    }
    check_modes(&ctx.w.store, &b.name);
    check_no_key_in(&log, &ctx.w.pki.server.key, &b.name);
    r.stop();
    eprintln!("[{}] hostile input outcomes:", b.name);
    for row in &rows {
        eprintln!("  | {} | {} |", row.case, row.answer);
    }
}

/// `sign` then `encrypt` of a given base64 text: a message whose payload is not made by `seal`.
fn seal_raw(ctx: &Ctx, b64_payload: &[u8]) -> Vec<u8> {
    encrypt_only(&ctx.server, &sign_only(&ctx.good, b64_payload))
}

/// Every file of the store (incoming and reject elements, the acked record) is 0600 or
/// stricter; directories are not open to others.
fn check_modes(store: &Path, name: &str) {
    let mut files = 0;
    let mut stack = vec![store.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let md = e.metadata().unwrap();
            let mode = md.permissions().mode() & 0o777;
            if md.is_dir() {
                assert_eq!(
                    mode & 0o077,
                    0,
                    "[{name}] directory {} has mode {mode:o}",
                    e.path().display()
                );
                stack.push(e.path());
            } else {
                assert_eq!(
                    mode & 0o077,
                    0,
                    "[{name}] file {} has mode {mode:o}",
                    e.path().display()
                );
                files += 1;
            }
        }
    }
    assert!(store.join("ssm-acked.log").exists());
    assert!(files >= 3, "[{name}] only {files} files checked");
}

/// No line of the private key's PEM appears in `log`.
fn check_no_key_in(log: &str, key: &Path, name: &str) {
    assert!(
        !log.contains("PRIVATE KEY"),
        "[{name}] a PEM private key header is in the log"
    );
    let pem = std::fs::read_to_string(key).unwrap();
    for line in pem
        .lines()
        .filter(|l| l.len() >= 40 && !l.starts_with("-----"))
    {
        assert!(
            !log.contains(line),
            "[{name}] a line of the private key is in the log"
        );
    }
}

#[test]
fn hostile_input_is_rejected_and_the_receiver_keeps_working() {
    on_every_broker(&[], run_all);
}

/// Sends a new good message every few seconds until one is stored and acked, and says whether
/// one was within `limit`: what follows an overload may be dropped or arrive late, one good
/// message need not get through, but one of them must.
async fn stored_within(ctx: &Ctx, peer: &mut Peer, limit: Duration) -> bool {
    let deadline = std::time::Instant::now() + limit;
    let mut sent = Vec::new();
    loop {
        let content = message(9, rand_between(0, 1 << 40) as usize);
        let id = uuid::Uuid::new_v4().simple().to_string();
        peer.send(peer.msg(&id, None, ctx.good_msg(&content))).await;
        sent.push(message_id(&content));
        // Any of them will do: an answer to an earlier one means the receiver got through.
        let slice = std::time::Instant::now() + Duration::from_secs(5);
        while let Some(left) = slice.checked_duration_since(std::time::Instant::now()) {
            match peer.answer(None, left).await {
                Answer::Stored(m) if sent.contains(&m) => return true,
                Answer::Nothing => break,
                _ => {}
            }
        }
        if std::time::Instant::now() >= deadline {
            eprintln!(
                "[{}] none of {} good messages stored",
                peer.name,
                sent.len()
            );
            return false;
        }
    }
}

/// A 100 MiB frame and then 100 000 tiny frames: the receiver may lose its connection (its
/// client refuses bodies over 64 MiB) but must reconnect and keep storing good messages.
fn flood(b: &Target) {
    let ctx = Ctx::new(b);
    let mut r = ctx.w.receiver(b, &[]);
    let rt = runtime();
    rt.block_on(async {
        let mut peer = Peer::on_topic(b, &ctx.w.topic, "hostile").await;
        still_works(&ctx, &mut peer, "start").await;
        {
            // Its own connection: a broker may well drop a sender of 100 MiB frames.
            let big = Client::connect(&b.config_with_heartbeats()).await.unwrap();
            let f = Frame::new(Command::Send)
                .with_header("destination", ctx.w.topic.as_str())
                .with_header("ssm-msg-type", "msg")
                .with_header("ssm-msg-id", "huge")
                .with_body(vec![b'A'; 100 * 1024 * 1024]);
            let res = big.handle().send(f).await;
            eprintln!("[{}] 100 MiB frame sent: {res:?}", b.name);
            let _ = big.disconnect().await;
        }
        // Give the receiver time to choke on it and reconnect (or reject it).
        assert!(
            stored_within(&ctx, &mut peer, Duration::from_secs(60)).await,
            "[{}] no good message stored within 60 s of the 100 MiB frame",
            b.name
        );
        assert!(
            r.is_running(),
            "[{}] the receiver died of a 100 MiB frame",
            b.name
        );

        // 100 000 tiny frames: pings carrying a reack (they go through the lanes, the
        // committer and a broker ack each). The bound below is for liveness, not speed: on a
        // loaded two-core CI machine a real broker takes 20–90 s to pass them all through.
        let flood_start = std::time::Instant::now();
        let h = peer.client.handle();
        for i in 0..100_000u32 {
            let f = peer
                .frame()
                .with_header("ssm-msg-type", "ping")
                .with_header("ssm-msg-id", "ping")
                .with_header("ssm-reack", format!("{:032x}", i));
            h.send(f).await.unwrap();
        }
        // The receiver may be far behind here: a broker that caps a slow topic consumer's
        // outstanding copies (ours does, at 1000) drops messages for it meanwhile, so one good
        // message may never arrive. Liveness is that one of several is stored.
        let stored = stored_within(&ctx, &mut peer, Duration::from_secs(300)).await;
        if !stored {
            let log = r.log_text();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            eprintln!(
                "[{}] receiver alive: {}; last lines of its log:\n{}",
                b.name,
                r.is_running(),
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        assert!(
            stored,
            "[{}] no good message stored within 300 s of 100 000 tiny frames",
            b.name
        );
        eprintln!(
            "[{}] 100 000 pings, then a message stored, in {:.1} s",
            b.name,
            flood_start.elapsed().as_secs_f64()
        );
    });
    assert!(
        r.is_running(),
        "[{}] the receiver died of the flood",
        b.name
    );
    let log = r.log_text();
    eprintln!(
        "[{}] flood: receiver reconnected {} times",
        b.name,
        log.matches("lost the broker connection").count()
    );
    r.stop();
}

#[test]
fn huge_frame_and_frame_flood() {
    on_every_broker(
        &[
            "--max-frame-size",
            "209715200",
            "--max-queued-bytes",
            "536870912",
        ],
        flood,
    );
}

/// Neither the receiver nor the sender logs its private key, even at debug level.
#[test]
fn keys_are_never_logged_at_debug_level() {
    let dir = tempfile::tempdir().unwrap();
    let embedded = BrokerProc::start(dir.path(), &[]);
    let b = embedded.target();
    let w = World::new("keys");
    let senders = w.senders(1, 5);
    let mut r = ReceiverProc::start_with_env(&w, &b, &[], &[("RUST_LOG", "trace")]);
    let mut c = std::process::Command::new(ssm_bin())
        .arg("send")
        .args(["--ssm-version", "1"])
        .args(b.flags())
        .args(["--destination", &w.topic])
        .arg("--cert")
        .arg(&senders[0].cert.cert)
        .arg("--key")
        .arg(&senders[0].cert.key)
        .arg("--capath")
        .arg(&w.pki.capath)
        .arg("--server-cert")
        .arg(&w.pki.server.cert)
        .arg("--path")
        .arg(&senders[0].queue)
        .env("RUST_LOG", "trace")
        .env("NO_COLOR", "1")
        .stderr(std::fs::File::create(&senders[0].log).unwrap())
        .spawn()
        .unwrap();
    assert!(wait_child(&mut c, Duration::from_secs(60), "ssm send").success());
    r.stop();
    w.check_exactly_once("embedded", &senders);
    let rlog = r.log_text();
    let slog = read_text(&senders[0].log);
    assert!(
        rlog.contains("DEBUG") || rlog.contains("TRACE"),
        "receiver log not at debug level"
    );
    // The sender ran with RUST_LOG=trace too; a clean pass simply emits no debug events.
    assert!(slog.contains("acked"), "sender log empty:\n{slog}");
    check_no_key_in(&rlog, &w.pki.server.key, "receiver");
    check_no_key_in(&slog, &senders[0].cert.key, "sender");
}
