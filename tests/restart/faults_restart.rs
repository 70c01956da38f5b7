//! Broker restarts while messages flow: the embedded broker process is SIGKILLed (losing every
//! message it held) and started again on the same port; every real broker named in
//! `SSM_TEST_BROKERS` is restarted with `$SSM_TEST_BROKER_CTL restart <name>` (which must be set
//! when real brokers are named). Afterwards the senders are run again as cron would, and every
//! queued message must be stored exactly once.
//!
//! A real-broker restart cuts every connection on that broker, so this lives in the `restart`
//! test binary (cargo runs test binaries one after another), holds `support::serial` against
//! the other restart test, and restarts one broker at a time.

use crate::support::faults;

use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

use faults::*;

/// Three senders ship 100 messages each while `restart` runs once, after a random number of
/// them has been sent.
fn restart_mid_stream(w: &World, b: &Target, restart: impl FnOnce() + Send) {
    let senders = w.senders(3, 100);
    let mut r = w.receiver(b, &[]);
    let drained = AtomicBool::new(false);
    thread::scope(|s| {
        s.spawn(|| {
            // Mid-stream by construction: once a random number of the 300 messages has left
            // the senders' queues (a random delay alone could outlast the whole stream).
            let after = rand_between(10, 150) as usize;
            while !drained.load(Ordering::SeqCst) {
                let left: usize = senders.iter().map(|s| s.count()).sum();
                if 300 - left.min(300) >= after {
                    restart();
                    return;
                }
                thread::sleep(Duration::from_millis(5));
            }
        });
        w.drain(b, &senders, 20);
        drained.store(true, Ordering::SeqCst);
    });
    assert!(
        r.is_running(),
        "[{}] the receiver died with the broker",
        b.name
    );
    r.stop();
    assert!(
        r.log_text().contains("lost the broker connection"),
        "[{}] the receiver never saw the broker go: it was not restarted mid-stream",
        b.name
    );
    let n = w.check_exactly_once(&b.name, &senders);
    eprintln!(
        "[{}] broker restarted mid-stream; {n} stored once each",
        b.name
    );
}

#[test]
fn broker_restarted_mid_stream() {
    let _serial = crate::support::serial();
    let w = World::new("brestart");
    let broker = std::sync::Mutex::new(BrokerProc::start(&w.dir, &[]));
    let b = broker.lock().unwrap().target();
    restart_mid_stream(&w, &b, || {
        let mut broker = broker.lock().unwrap();
        broker.kill9();
        thread::sleep(Duration::from_millis(rand_between(200, 800)));
        broker.restart();
    });
    drop(w);

    let real = real_brokers();
    if real.is_empty() {
        return;
    }
    let ctl = std::env::var("SSM_TEST_BROKER_CTL").unwrap_or_else(|_| {
        panic!("SSM_TEST_BROKERS names real brokers but SSM_TEST_BROKER_CTL (the script that restarts them) is not set")
    });
    for b in &real {
        let w = World::new("brestart");
        restart_mid_stream(&w, b, || {
            let st = std::process::Command::new(&ctl)
                .arg("restart")
                .arg(&b.name)
                .stdout(std::process::Stdio::null())
                .status()
                .unwrap_or_else(|e| panic!("cannot run {ctl}: {e}"));
            assert!(st.success(), "{ctl} restart {}: {st}", b.name);
        });
    }
}
