//! SSM2 between our processes and the tests' own SSM2 peer (`support::ssm2peer`: stomp.py
//! 4.1.24 and the `openssl smime` CLI, as the Python SSM 4.0 works):
//!
//! - the peer sends to a running `ssm receive` (configured by an unchanged Python SSM 4.0
//!   `receiver.cfg` and `-d`), signed only and signed + encrypted, with
//!   non-ASCII UTF-8 text; `incoming/` holds `{body, signer, empaid}` byte for byte, read both
//!   with our reader and with the Python `dirq` package (what APEL's loader uses);
//! - a running `ssm send`, configured by an unchanged Python SSM 4.0 `sender.cfg` (protocol
//!   STOMP), ships a dirq the peer receives, with and without `server_cert` (encryption).
//!
//! Runs on a fresh `ssm broker` process and on every real broker in `SSM_TEST_BROKERS`.

use crate::support::faults::{self, on_every_broker, wait_child, ReceiverProc, Target, World};
use crate::support::python_cfg::PythonCfg;
use crate::support::ssm2peer::{py_dirq_read, Msg, Peer, Seal};

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use ssm::queue::{MessageStore, Outgoing, PathType};

/// Non-ASCII APEL-like text, unique per `i`.
fn text(i: usize) -> Vec<u8> {
    format!(
        "APEL-summary-job-message: v0.3\nSite: Université-Çà-{i}\nVO: ñandú ☃ 漢字\nLocalUserId: ü{i}\n%%\n"
    )
    .into_bytes()
}

fn wait_stored(w: &World, b: &Target, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let st = MessageStore::open(&w.store).unwrap();
        let (i, r) = (st.incoming.count().unwrap(), st.reject.count().unwrap());
        if i + r >= n {
            std::thread::sleep(Duration::from_millis(500));
            return;
        }
        assert!(
            Instant::now() < deadline,
            "[{}] {i} stored and {r} rejected, {n} expected",
            b.name
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn the_stomppy_peer_sends_ssm2_to_ssm_receive() {
    on_every_broker(&[], |b| {
        let w = World::new("ssm2peer-rx");
        let cfg = w.path("receiver.cfg");
        let log = w.path("ssmreceive.log");
        let file =
            python_cfg(&w, b, true, &w.topic, &w.store, &log).receiver(&w.path("ssmreceive.pid"));
        std::fs::write(&cfg, file).unwrap();
        let mut r = ReceiverProc::from_config(&w, b, &cfg, &log);
        let peer = Peer::new(&w.path("peer"), b);
        let p = &w.pki;
        let mut msgs = Vec::new();
        for i in 0..6 {
            let seal = if i % 2 == 0 {
                Seal::Sign(p.client.clone())
            } else {
                Seal::Encrypt(p.client.clone(), p.server.cert.clone(), "aes128")
            };
            msgs.push(Msg {
                id: Some(format!("5ba24c88/5ba24c8f0f12{i:02}")),
                body: text(i),
                seal,
            });
        }
        // No empa-id: stored as `noid`; `ping` is ignored.
        msgs.push(Msg {
            id: None,
            body: text(100),
            seal: Seal::Encrypt(p.client.clone(), p.server.cert.clone(), "aes256"),
        });
        msgs.push(Msg {
            id: Some("ping".into()),
            body: b"ping".to_vec(),
            seal: Seal::Raw,
        });
        peer.send(&w.topic, &msgs);
        wait_stored(&w, b, 7);
        r.stop();
        let st = MessageStore::open(&w.store).unwrap();
        assert_eq!(st.reject.count().unwrap(), 0, "[{}] rejected", b.name);
        let ours: Vec<_> = st
            .incoming
            .names()
            .unwrap()
            .into_iter()
            .map(|n| st.incoming.get(&n).unwrap())
            .collect();
        let python = py_dirq_read(&w.store.join("incoming"));
        assert_eq!(ours.len(), 7, "[{}] stored: {ours:?}", b.name);
        assert_eq!(python.len(), 7, "[{}] python dirq reads them all", b.name);
        for m in &msgs[..7] {
            let id = m.id.clone().unwrap_or_else(|| "noid".into());
            let rec = ours
                .iter()
                .find(|r| r.empaid.as_deref() == Some(&id))
                .unwrap_or_else(|| panic!("[{}] {id} not stored", b.name));
            assert_eq!(rec.body, m.body, "[{}] {id}: byte for byte", b.name);
            assert_eq!(rec.signer.as_deref(), Some(p.client.dn.as_str()));
            assert_eq!(rec.error, None);
            let (body, signer, _, error) = python
                .iter()
                .find(|(_, _, e, _)| *e == id)
                .unwrap_or_else(|| panic!("[{}] {id} not read by python dirq", b.name));
            assert_eq!(
                body, &m.body,
                "[{}] {id}: python reads the UTF-8 text",
                b.name
            );
            assert_eq!(signer, &p.client.dn);
            assert_eq!(error, "");
        }
    });
}

/// The Python SSM 4.0's files with this world's values: its server's credentials and store
/// (receiver.cfg) or its client's (sender.cfg).
fn python_cfg<'a>(
    w: &'a World,
    b: &Target,
    server: bool,
    destination: &'a str,
    path: &'a Path,
    logfile: &'a Path,
) -> PythonCfg<'a> {
    let who = if server { &w.pki.server } else { &w.pki.client };
    PythonCfg {
        broker: b.socket_addr(),
        cert: &who.cert,
        key: &who.key,
        capath: &w.pki.capath,
        destination,
        path,
        logfile,
    }
}

#[test]
fn ssm_send_with_a_python_sender_cfg_ships_ssm2_to_the_stomppy_peer() {
    on_every_broker(&[], |b| {
        for encrypt in [true, false] {
            let w = World::new("ssm2peer-tx");
            // A queue: what is sent before the peer subscribes waits for it.
            let dest = w.topic.replacen("/topic/", "/queue/", 1);
            let outq = w.path("outgoing");
            let q = Outgoing::open(&outq, PathType::QueueSimple).unwrap();
            let mut want = Vec::new();
            for i in 0..20 {
                let body = text(i);
                let name = q.add(&body).unwrap();
                want.push((name, body));
            }
            let cfg = w.path("sender.cfg");
            let log = w.path("ssmsend.log");
            let server_cert = encrypt.then_some(w.pki.server.cert.as_path());
            let file = python_cfg(&w, b, false, &dest, &outq, &log).sender(server_cert, true);
            std::fs::write(&cfg, file).unwrap();
            let recv = Peer::new(&w.path("peer"), b).spawn_recv(
                &dest,
                &w.pki.capath,
                Some(&w.pki.server),
                want.len(),
                Duration::from_secs(90),
            );
            let mut send = Command::new(faults::ssm_bin());
            send.arg("send")
                .arg("-c")
                .arg(&cfg)
                .args(b.python_cfg_login_flags());
            let mut child = send
                .env("NO_COLOR", "1")
                .stderr(std::fs::File::create(w.path("send.err")).unwrap())
                .spawn()
                .unwrap();
            let st = wait_child(&mut child, Duration::from_secs(60), "ssm send");
            let log =
                faults::read_text(&w.path("ssmsend.log")) + &faults::read_text(&w.path("send.err"));
            assert!(st.success(), "[{}] ssm send -c: {st}\n{log}", b.name);
            assert_eq!(q.count().unwrap(), 0, "[{}] queue emptied", b.name);
            for (name, _) in &want {
                assert!(
                    log.contains(&format!("Sent {name}")),
                    "[{}] no `Sent {name}` in the log:\n{log}",
                    b.name
                );
            }
            let got = recv.wait();
            assert_eq!(got.len(), want.len(), "[{}] got {got:?}", b.name);
            for (name, body) in &want {
                let g = got
                    .iter()
                    .find(|g| &g.empaid == name)
                    .unwrap_or_else(|| panic!("[{}] {name} not received: {got:?}", b.name));
                assert_eq!(
                    g.signer.as_deref(),
                    Ok(w.pki.client.dn.as_str()),
                    "[{}] {name}",
                    b.name
                );
                assert_eq!(&g.body, body, "[{}] {name}: byte for byte", b.name);
            }
            if !encrypt {
                // Signed only: what the Python receiver takes as is (no pkcs7-mime).
                eprintln!("[{}] signed-only SSM2 received by the peer", b.name);
            }
        }
    });
}
