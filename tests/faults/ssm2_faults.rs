//! SSM2 faults and hostile SSM2 input against a running `ssm receive`, fed by the tests' own
//! SSM2 peer (`support::ssm2peer`: stomp.py 4.1.24 + the `openssl smime` CLI).
//!
//! - `kill -9` of the receiver while the peer streams: every message stored once (the
//!   receiver acks the broker only once a message is stored, so the broker redelivers what a
//!   dead receiver held; a redelivery of what it had stored is recognised). A `/queue/`
//!   destination: on a `/topic/` the brokers drop the unacked messages of a dead subscriber
//!   (broker semantics, not ours), so a topic cannot show this.
//! - hostile SSM2 input (unsigned, untrusted signer, DN not allowed, garbage, binary) goes to
//!   `reject/` with the Python receiver's fields and is acked at the broker: after a receiver
//!   restart nothing comes again, and the broker queue ends empty.
//!
//! Every scenario runs on a fresh `ssm broker` process, then on every real broker.

use crate::support::faults::{self, *};
use crate::support::messages::Tally;
use crate::support::ssm2peer::{Msg, Peer, Seal};

use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use ssm::crypto::message_id;
use ssm::queue::MessageStore;

/// A world whose destination is a queue.
fn queue_world(tag: &str) -> World {
    let mut w = World::new(tag);
    w.topic = w.topic.replacen("/topic/", "/queue/", 1);
    w
}

fn counts(w: &World) -> (usize, usize) {
    let st = MessageStore::open(&w.store).unwrap();
    (st.incoming.count().unwrap(), st.reject.count().unwrap())
}

/// Waits until `incoming + reject` holds `n`, then a little longer (a duplicate would show).
fn wait_for(w: &World, b: &Target, n: usize, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let (i, r) = counts(w);
        if i + r >= n {
            thread::sleep(Duration::from_secs(2));
            return;
        }
        assert!(
            Instant::now() < deadline,
            "[{}] {i} stored and {r} rejected of {n} (logs in {})",
            b.name,
            w.dir.display()
        );
        thread::sleep(Duration::from_millis(50));
    }
}

/// A unique non-ASCII APEL-like record.
fn record(i: usize) -> Vec<u8> {
    let mut m = faults::message(7, i);
    m.extend_from_slice(format!("Comment: Zürich ☃ {i}\n").as_bytes());
    m
}

#[test]
fn ssm2_receiver_killed_mid_stream() {
    faults::on_every_broker(&[], |b| {
        let w = queue_world("ssm2-rkill");
        let mut r = w.receiver(b, &[]);
        let p = &w.pki;
        let msgs: Vec<Msg> = (0..200)
            .map(|i| Msg {
                id: Some(format!("5ba24c88/{i:014x}")),
                body: record(i),
                seal: if i % 2 == 0 {
                    Seal::Encrypt(p.client.clone(), p.server.cert.clone(), "aes128")
                } else {
                    Seal::Sign(p.client.clone())
                },
            })
            .collect();
        let want: Vec<(String, String)> = msgs
            .iter()
            .map(|m| (p.client.dn.clone(), message_id(&m.body)))
            .collect();
        let peer = Peer::new(&w.path("peer"), b);
        let mut sender = peer
            .send_cmd(&w.topic, &msgs, 5)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(w.path("peer-send.log")).unwrap())
            .spawn()
            .unwrap();
        let done = AtomicBool::new(false);
        let kills = thread::scope(|s| {
            let killer = s.spawn(|| {
                let mut kills = 0;
                while kills < 4 && !done.load(Ordering::SeqCst) {
                    sleep_ms(300, 1200);
                    r.restart();
                    kills += 1;
                }
                kills
            });
            let st = wait_child(&mut sender, Duration::from_secs(180), "ssm2peer send");
            done.store(true, Ordering::SeqCst);
            assert!(
                st.success(),
                "[{}] the peer's stream failed: {}",
                b.name,
                read_text(&w.path("peer-send.log"))
            );
            killer.join().unwrap()
        });
        assert!(kills > 0, "[{}] the receiver was never killed", b.name);
        wait_for(&w, b, msgs.len(), Duration::from_secs(120));
        r.stop();
        let t = Tally::of(want, stored_records(&w.store));
        report(&t.line("ssm2-receiver-kill9", &b.name));
        assert!(
            t.is_exact(),
            "[{}] {} lost, {} twice (logs in {})",
            b.name,
            t.lost.len(),
            t.twice.len(),
            w.dir.display()
        );
        assert_eq!(counts(&w).1, 0, "[{}] rejected", b.name);
        eprintln!("[{}] receiver killed {kills} times mid-stream", b.name);
    });
}

/// Whatever is still on the broker queue `dest` (the peer takes it, within a few seconds).
fn left_on_queue(w: &World, b: &Target) -> usize {
    Peer::new(&w.path("drain"), b)
        .spawn_recv(&w.topic, &w.pki.capath, None, 0, Duration::from_secs(4))
        .wait()
        .len()
}

#[test]
fn hostile_ssm2_input_is_rejected_and_acked() {
    faults::on_every_broker(&[], |b| {
        let w = queue_world("ssm2-hostile");
        let mut r = w.receiver(b, &[]);
        let p = &w.pki;
        // Trusted CA, but its DN is not in the DN file.
        let outsider = p.issue_client("outsider.example.org").unwrap();
        let body = record(1);
        let msg = |id: &str, body: &[u8], seal: Seal| Msg {
            id: Some(id.into()),
            body: body.to_vec(),
            seal,
        };
        let enc = |c: &ssm::harness::pki::CertFiles| {
            Seal::Encrypt(c.clone(), p.server.cert.clone(), "aes128")
        };
        let msgs = vec![
            msg("h/unsigned", &body, Seal::Raw),
            msg(
                "h/garbage",
                b"MIME-Version: 1.0\nContent-Type: application/pkcs7-mime\n\n%%%%",
                Seal::Raw,
            ),
            msg("h/binary", b"\x00\xff\xfe\x01\x80", Seal::Raw),
            msg("h/untrusted", &body, enc(&p.untrusted_client)),
            msg("h/dn", &body, enc(&outsider)),
            msg("h/good", &body, enc(&p.client)),
        ];
        Peer::new(&w.path("peer"), b).send(&w.topic, &msgs);
        wait_for(&w, b, msgs.len(), Duration::from_secs(60));
        assert_eq!(counts(&w), (1, 5), "[{}]", b.name);
        let st = MessageStore::open(&w.store).unwrap();
        let rejected: Vec<_> = st
            .reject
            .names()
            .unwrap()
            .into_iter()
            .map(|n| st.reject.get(&n).unwrap())
            .collect();
        let find = |id: &str| {
            rejected
                .iter()
                .find(|r| r.empaid.as_deref() == Some(id))
                .unwrap_or_else(|| panic!("[{}] {id} not in reject/: {rejected:?}", b.name))
        };
        for id in ["h/unsigned", "h/garbage", "h/binary", "h/untrusted"] {
            let rec = find(id);
            assert_eq!(
                rec.signer.as_deref(),
                Some("Not available."),
                "[{}] {id}",
                b.name
            );
            assert!(
                rec.error.as_deref().is_some_and(|e| !e.is_empty()),
                "[{}] {id}: an error",
                b.name
            );
            assert!(!rec.body.is_empty(), "[{}] {id}: the body kept", b.name);
        }
        let dn = find("h/dn");
        assert_eq!(
            dn.signer.as_deref(),
            Some(outsider.dn.as_str()),
            "[{}]",
            b.name
        );
        assert!(
            dn.error
                .as_deref()
                .is_some_and(|e| e.contains(&outsider.dn)),
            "[{}] the DN error names the DN: {:?}",
            b.name,
            dn.error
        );
        // Acked at the broker: a restarted receiver gets nothing again, the queue is empty.
        r.restart();
        thread::sleep(Duration::from_secs(3));
        assert_eq!(
            counts(&w),
            (1, 5),
            "[{}] redelivered after a restart",
            b.name
        );
        r.stop();
        assert_eq!(
            left_on_queue(&w, b),
            0,
            "[{}] left on the broker queue",
            b.name
        );
        report(&format!(
            "fault=ssm2-hostile broker={} sent=6 stored=1 rejected=5 duplicated=0 lost=0 unknown=0",
            b.name
        ));
    });
}

/// An SSM2 message above the receiver's frame limit (64 MiB): rejected into `reject/` (its
/// headers kept, the body not) and acked, so that it is not redelivered forever; the next
/// message is stored. The embedded broker takes frames up to 200 MiB here, the real ones
/// 128 MiB (scripts/brokers.sh).
#[test]
fn oversized_ssm2_input_is_rejected_and_acked() {
    faults::on_every_broker(&["--max-frame-size", "209715200"], |b| {
        let w = queue_world("ssm2-oversized");
        let mut r = w.receiver(b, &[]);
        let p = &w.pki;
        let huge = vec![b'A'; 70 * 1024 * 1024];
        let good = record(2);
        let msgs = vec![
            Msg {
                id: Some("o/huge".into()),
                body: huge,
                seal: Seal::Raw,
            },
            Msg {
                id: Some("o/good".into()),
                body: good.clone(),
                seal: Seal::Sign(p.client.clone()),
            },
        ];
        Peer::new(&w.path("peer"), b).send(&w.topic, &msgs);
        wait_for(&w, b, 2, Duration::from_secs(120));
        assert_eq!(counts(&w), (1, 1), "[{}]", b.name);
        let st = MessageStore::open(&w.store).unwrap();
        let name = st.reject.names().unwrap().remove(0);
        let rec = st.reject.get(&name).unwrap();
        assert_eq!(rec.empaid.as_deref(), Some("o/huge"), "[{}]", b.name);
        assert_eq!(rec.signer.as_deref(), Some("Not available."));
        r.restart();
        thread::sleep(Duration::from_secs(3));
        assert_eq!(
            counts(&w),
            (1, 1),
            "[{}] redelivered after a restart",
            b.name
        );
        r.stop();
        assert_eq!(
            left_on_queue(&w, b),
            0,
            "[{}] left on the broker queue",
            b.name
        );
    });
}
