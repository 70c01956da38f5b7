//! Network cuts and stalls between the senders and the broker (docs/security.md).
use crate::support::faults;

use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

use faults::*;

/// The senders reach the broker through a proxy that cuts every connection at random moments
/// and stalls all traffic (longer than the ack timeout) once.
///
/// This once exposed a double store: a copy sent on a connection that was then cut could be
/// handled after the resend's ack and the next message's `ssm-reack`. The receiver's tombstones
/// of confirmed messages (src/receiver/acked.rs) now recognise such late copies.
/// Scenarios per broker: the race this guards against showed in about one run in seven.
const RUNS: usize = 2;

#[test]
fn network_cut_and_stall_between_sender_and_broker() {
    on_every_broker(&[], |b| {
        for _ in 0..RUNS {
            network_cut_scenario("netcut", b);
        }
    });
}

pub fn network_cut_scenario(tag: &str, b: &Target) {
    {
        let w = World::new(tag);
        let senders = w.senders(3, 100);
        let mut r = w.receiver(b, &[]);
        let proxy = Proxy::start(b.socket_addr());
        let via = b.via(proxy.addr);
        let drained = AtomicBool::new(false);
        thread::scope(|s| {
            s.spawn(|| {
                for i in 0..6 {
                    if drained.load(Ordering::SeqCst) {
                        break;
                    }
                    sleep_ms(200, 700);
                    if i == 2 {
                        proxy.stall(true);
                        thread::sleep(Duration::from_secs(3));
                        proxy.stall(false);
                    } else {
                        proxy.cut();
                    }
                }
            });
            w.drain(&via, &senders, 20);
            drained.store(true, Ordering::SeqCst);
        });
        r.stop();
        w.check_exactly_once(&b.name, &senders);
    }
}
