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
use crate::support::ssm2peer::{py_dirq_read, Msg, Peer, Seal};

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
        std::fs::write(&cfg, python_receiver_cfg(&w, b)).unwrap();
        let mut r = ReceiverProc::from_config(&w, b, &cfg, &w.path("ssmreceive.log"));
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

/// An unchanged Python SSM 4.0 `receiver.cfg` (protocol STOMP, the layout of apel/ssm's
/// conf/receiver.cfg; no `ssm_version`: version 2 is the default there and here).
fn python_receiver_cfg(w: &World, b: &Target) -> String {
    let addr = b.socket_addr();
    format!(
        "[receiver]\n# Either 'STOMP' for STOMP message brokers or 'AMS' for Argo Messaging Service\n\
         protocol: STOMP\n\n[broker]\nhost: {}\nport: {}\nuse_ssl: false\n\n[certificates]\n\
         certificate: {}\nkey: {}\ncapath: {}\ncheck_crls: false\n\n[messaging]\n\
         ams_project: accounting\ndestination: {}\n#token:\npath: {}\n\n\
         [logging]\nlogfile: {}\nlevel: INFO\nconsole: false\n\n[daemon]\npidfile: {}\n",
        addr.ip(),
        addr.port(),
        w.pki.server.cert.display(),
        w.pki.server.key.display(),
        w.pki.capath.display(),
        w.topic,
        w.store.display(),
        w.path("ssmreceive.log").display(),
        w.path("ssmreceive.pid").display(),
    )
}

/// An unchanged Python SSM 4.0 `sender.cfg` (protocol STOMP, the layout and `:` separators
/// of apel/ssm's conf/sender.cfg).
fn python_sender_cfg(w: &World, b: &Target, dest: &str, outq: &str, encrypt: bool) -> String {
    let addr = b.socket_addr();
    let server_cert = if encrypt {
        format!("server_cert: {}\n", w.pki.server.cert.display())
    } else {
        "#server_cert: /etc/grid-security/servercert.pem\n".into()
    };
    format!(
        "[sender]\n# Either 'STOMP' for STOMP message brokers or 'AMS' for Argo Messaging Service\n\
         protocol: STOMP\n\n[broker]\nhost: {}\nport: {}\nuse_ssl: false\n\n[certificates]\n\
         certificate: {}\nkey: {}\ncapath: {}\n{server_cert}\n[messaging]\n\
         ams_project: accounting\ndestination: {dest}\n#token:\npath: {outq}\npath_type: dirq\n\n\
         [logging]\nlogfile: {}\nlevel: INFO\nconsole: true\n",
        addr.ip(),
        addr.port(),
        w.pki.client.cert.display(),
        w.pki.client.key.display(),
        w.pki.capath.display(),
        w.path("ssmsend.log").display(),
    )
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
            std::fs::write(
                &cfg,
                python_sender_cfg(&w, b, &dest, &outq.display().to_string(), encrypt),
            )
            .unwrap();
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
