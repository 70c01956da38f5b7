//! SSM2 across a broker restart: three `ssm send` passes (SSM2, as cron runs them) ship
//! their dirqs into a `/queue/` while `ssm receive` takes them, and the broker is restarted
//! mid-stream (the embedded broker process SIGKILLed and started again; each real broker with
//! `$SSM_TEST_BROKER_CTL restart <name>`, one at a time, under `support::serial`).
//!
//! What SSM2 can promise: an element leaves the sender's queue only after the broker's
//! RECEIPT, and everything not receipted is sent again; the receiver acks only what it stored
//! and stores a redelivery or a resend once. What it cannot promise: a message the broker
//! receipted and then lost in its restart (the embedded broker is in memory, the test ActiveMQ
//! is configured non-persistent, whatever the `persistent: true` our sends carry) — broker
//! durability, not ours. So the check is: nothing stored twice; nothing lost whose RECEIPT came
//! after the broker was back; what the broker dropped (receipted before or while it went
//! down) is reported as `broker_dropped`, not as `lost`.

use crate::support::faults::{self, *};
use crate::support::messages::Tally;

use std::collections::HashMap;
use std::fs;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ssm::crypto::message_id;
use ssm::queue::{MessageStore, Outgoing, PathType};

/// `SystemTime` as the log stamps it (`2026-12-02 01:43:58,971`, UTC: the processes run
/// with `TZ=UTC`), so that the two compare as strings.
fn stamp(t: SystemTime) -> String {
    let ms = t.duration_since(UNIX_EPOCH).unwrap().as_millis() as i64;
    let (days, rem) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000));
    let (y, m, d) = ssm::civil::from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02},{:03}",
        rem / 3_600_000,
        rem / 60_000 % 60,
        rem / 1000 % 60,
        rem % 1000
    )
}

struct Queue {
    path: std::path::PathBuf,
    /// Element name → MD5 of its body.
    names: HashMap<String, String>,
}

impl Queue {
    fn count(&self) -> usize {
        Outgoing::open(&self.path, PathType::QueueSimple)
            .unwrap()
            .count()
            .unwrap()
    }
}

fn spawn_send(w: &World, b: &Target, q: &Queue, log: &std::path::Path) -> Child {
    Command::new(ssm_bin())
        .arg("send")
        .args(["--ssm-version", "2", "--window", "4"])
        .args(b.flags())
        .arg("--destination")
        .arg(&w.topic)
        .arg("--cert")
        .arg(&w.pki.client.cert)
        .arg("--key")
        .arg(&w.pki.client.key)
        .arg("--capath")
        .arg(&w.pki.capath)
        .arg("--server-cert")
        .arg(&w.pki.server.cert)
        .arg("--path")
        .arg(&q.path)
        .env("NO_COLOR", "1")
        .env("TZ", "UTC")
        .stdout(Stdio::null())
        .stderr(
            fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(log)
                .unwrap(),
        )
        .spawn()
        .expect("spawn ssm send")
}

/// When each element was receipted (`Sent <name>` in the sender logs): its last stamp.
fn sent_stamps(w: &World) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for i in 0..3 {
        for line in read_text(&w.path(&format!("ssm2-sender-{i}.log"))).lines() {
            if let Some(pos) = line.find("Sent ") {
                let name = line[pos + 5..].split_whitespace().next().unwrap_or("");
                out.insert(name.to_string(), line.get(..23).unwrap_or("").to_string());
            }
        }
    }
    out
}

fn ssm2_restart_mid_stream(b: &Target, restart: impl FnOnce() + Send) {
    let mut w = World::new("ssm2-brestart");
    w.topic = w.topic.replacen("/topic/", "/queue/", 1);
    let queues: Vec<Queue> = (0..3)
        .map(|i| {
            let path = w.path(&format!("outgoing-{i}"));
            let q = Outgoing::open(&path, PathType::QueueSimple).unwrap();
            let names = (0..200)
                .map(|m| {
                    let body = faults::message(i, m);
                    (q.add(&body).unwrap(), message_id(&body))
                })
                .collect();
            Queue { path, names }
        })
        .collect();
    let mut r = w.receiver(b, &[]);
    let done = AtomicBool::new(false);
    let window = Mutex::new(None);
    thread::scope(|s| {
        s.spawn(|| {
            // Mid-stream by construction: once a random number of the 600 messages has left
            // the senders' queues (a random delay alone could outlast the whole stream).
            let after = rand_between(20, 300) as usize;
            while !done.load(Ordering::SeqCst) {
                let left: usize = queues.iter().map(Queue::count).sum();
                if 600 - left.min(600) >= after {
                    let t0 = SystemTime::now();
                    restart();
                    *window.lock().unwrap() = Some((t0, SystemTime::now()));
                    return;
                }
                thread::sleep(Duration::from_millis(5));
            }
        });
        // Cron: passes until every queue is empty (a pass fails while the broker is away).
        for round in 0..90 {
            let pending: Vec<usize> = (0..3).filter(|&i| queues[i].count() > 0).collect();
            if pending.is_empty() {
                break;
            }
            let mut children: Vec<Child> = pending
                .iter()
                .map(|&i| spawn_send(&w, b, &queues[i], &w.path(&format!("ssm2-sender-{i}.log"))))
                .collect();
            for c in &mut children {
                wait_child(c, Duration::from_secs(120), "ssm send");
            }
            if round > 0 {
                thread::sleep(Duration::from_millis(500));
            }
        }
        done.store(true, Ordering::SeqCst);
    });
    let left: Vec<usize> = queues.iter().map(Queue::count).collect();
    assert!(
        left.iter().all(|&n| n == 0),
        "[{}] queues not empty: {left:?} (logs in {})",
        b.name,
        w.dir.display()
    );
    let (t0, t1) = window
        .lock()
        .unwrap()
        .unwrap_or_else(|| panic!("[{}] the stream ended before the restart", b.name));
    // The receiver is back on the broker (its reconnect backs off up to tens of seconds),
    // takes what is left, then nothing more may come.
    let deadline = Instant::now() + Duration::from_secs(120);
    while r.log_text().matches("connected to broker").count() < 2 {
        assert!(
            Instant::now() < deadline,
            "[{}] the receiver did not connect again (logs in {})",
            b.name,
            w.dir.display()
        );
        thread::sleep(Duration::from_millis(100));
    }
    let mut last = (usize::MAX, Instant::now());
    loop {
        let n = MessageStore::open(&w.store)
            .unwrap()
            .incoming
            .count()
            .unwrap();
        if n != last.0 {
            last = (n, Instant::now());
        } else if last.1.elapsed() > Duration::from_secs(4) {
            break;
        }
        thread::sleep(Duration::from_millis(100));
    }
    assert!(
        r.is_running(),
        "[{}] the receiver died with the broker",
        b.name
    );
    r.stop();
    assert!(
        r.log_text().contains("lost the broker connection"),
        "[{}] the receiver never saw the broker go",
        b.name
    );
    let want: Vec<(String, String)> = queues
        .iter()
        .flat_map(|q| {
            q.names
                .values()
                .map(|md5| (w.pki.client.dn.clone(), md5.clone()))
        })
        .collect();
    let t = Tally::of(want, stored_records(&w.store));
    // A lost message receipted before the broker was back (plus a second for the clocks of
    // two processes) was dropped by the broker; one receipted later is ours.
    let by_md5: HashMap<&String, &String> = queues
        .iter()
        .flat_map(|q| q.names.iter().map(|(n, m)| (m, n)))
        .collect();
    let stamps = sent_stamps(&w);
    let back = stamp(t1 + Duration::from_secs(1));
    let (mut dropped, mut ours) = (0, Vec::new());
    for (_, md5) in &t.lost {
        let name = by_md5[md5];
        match stamps.get(name) {
            Some(st) if *st <= back => dropped += 1,
            other => ours.push((name.clone(), other.cloned())),
        }
    }
    report(&format!(
        "fault=ssm2-broker-restart broker={} sent={} stored={} duplicated={} lost={} unknown={} broker_dropped={dropped}",
        b.name,
        t.sent,
        t.stored(),
        t.duplicated(),
        ours.len(),
        t.unknown.len()
    ));
    assert!(
        t.twice.is_empty() && t.unknown.is_empty() && ours.is_empty(),
        "[{}] twice {:?}, unknown {:?}, lost after the broker was back ({} .. {}): {ours:?}; logs in {}",
        b.name,
        t.twice,
        t.unknown,
        stamp(t0),
        stamp(t1),
        w.dir.display()
    );
    eprintln!(
        "[{}] broker restarted {} .. {}; {} stored once each, {dropped} dropped by the broker",
        b.name,
        stamp(t0),
        stamp(t1),
        t.stored()
    );
}

#[test]
fn ssm2_broker_restarted_mid_stream() {
    let _serial = crate::support::serial();
    let dir = tempfile::tempdir().unwrap();
    let broker = Mutex::new(BrokerProc::start(dir.path(), &[]));
    let b = broker.lock().unwrap().target();
    ssm2_restart_mid_stream(&b, || {
        let mut broker = broker.lock().unwrap();
        broker.kill9();
        thread::sleep(Duration::from_millis(rand_between(200, 800)));
        broker.restart();
    });
    let real = real_brokers();
    if real.is_empty() {
        return;
    }
    let ctl = std::env::var("SSM_TEST_BROKER_CTL").unwrap_or_else(|_| {
        panic!("SSM_TEST_BROKERS names real brokers but SSM_TEST_BROKER_CTL is not set")
    });
    for b in &real {
        ssm2_restart_mid_stream(b, || {
            let st = Command::new(&ctl)
                .arg("restart")
                .arg(&b.name)
                .stdout(Stdio::null())
                .status()
                .unwrap_or_else(|e| panic!("cannot run {ctl}: {e}"));
            assert!(st.success(), "{ctl} restart {}: {st}", b.name);
        });
    }
}
