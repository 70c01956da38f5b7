//! `ssm check send|receive` with `protocol: AMS` against `ssm ams-server`: the token (given,
//! or exchanged for the host certificate) and the topic or subscription, each on its own
//! line, a failure saying what to fix.

use std::path::Path;

use crate::ams_server::{pki, Server};
use crate::ams_wire::{p, receiver_cfg, sender_cfg, ssm, TOKEN};

/// `ssm check <what> -c cfg`: (exit code, stdout).
fn check(what: &str, cfg: &Path, extra: &[&str]) -> (Option<i32>, String) {
    let mut args = vec!["check", what, "-c"];
    let cfg = p(cfg);
    args.push(&cfg);
    args.extend_from_slice(extra);
    let out = ssm(&args);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}

fn line<'a>(text: &'a str, start: &str) -> &'a str {
    text.lines()
        .find(|l| l.starts_with(start))
        .unwrap_or_else(|| panic!("no line starting {start:?} in:\n{text}"))
}

fn edit(f: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(f).unwrap();
    assert!(text.contains(from), "{from:?} not in {}", f.display());
    std::fs::write(f, text.replace(from, to)).unwrap();
}

#[test]
fn check_send_probes_the_token_and_the_topic() {
    let server = Server::start(&["--token", TOKEN]);
    let dir = tempfile::tempdir().unwrap();
    let cfg = sender_cfg(dir.path(), &server, TOKEN, &dir.path().join("outq"));
    let (code, out) = check("send", &cfg, &[]);
    assert_eq!(code, Some(0), "{out}");
    let service = format!(
        "OK   AMS localhost:{}: HTTPS, [messaging] token accepted",
        server.port
    );
    line(&out, &service);
    assert!(line(&out, "OK   topic gLite-APEL:").contains("exists in project accounting"));

    // A topic the service does not have: the token passed, the topic line says what to fix.
    edit(
        &cfg,
        "destination: gLite-APEL",
        "destination: gLite-APEL-typo",
    );
    let (code, out) = check("send", &cfg, &[]);
    assert_eq!(code, Some(1), "{out}");
    line(&out, &service);
    let l = line(&out, "FAIL topic gLite-APEL-typo:");
    assert!(
        l.contains("does not exist") && l.contains("[messaging] destination"),
        "{l}"
    );

    // A wrong token: the service line fails, naming the setting.
    edit(&cfg, &format!("token: {TOKEN}"), "token: wrong");
    let (code, out) = check("send", &cfg, &[]);
    assert_eq!(code, Some(1), "{out}");
    let l = line(&out, &format!("FAIL AMS localhost:{}:", server.port));
    assert!(
        l.contains("401") && l.contains("check [messaging] token"),
        "{l}"
    );

    // --offline does not contact the service at all.
    let (code, out) = check("send", &cfg, &["--offline"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(!out.contains("AMS localhost"), "{out}");
}

#[test]
fn check_receive_probes_the_subscription_and_the_certificate_exchange() {
    let dir = tempfile::tempdir().unwrap();
    let pk = pki();
    let bound = dir.path().join("bound-dns");
    std::fs::write(&bound, format!("{}\n", pk.server.dn)).unwrap();
    let server = Server::start(&["--token", TOKEN, "--dn-file", &p(&bound)]);
    let cfg = receiver_cfg(dir.path(), &server, TOKEN, &dir.path().join("store"));
    let dns = p(&dir.path().join("dns"));
    let (code, out) = check("receive", &cfg, &["-d", &dns]);
    assert_eq!(code, Some(0), "{out}");
    let l = line(&out, "OK   subscription apel:");
    assert!(
        l.contains("topic gLite-APEL") && l.contains("ack deadline 10 s"),
        "{l}"
    );

    edit(&cfg, "destination: apel", "destination: nope");
    let (code, out) = check("receive", &cfg, &["-d", &dns]);
    assert_eq!(code, Some(1), "{out}");
    let l = line(&out, "FAIL subscription nope:");
    assert!(
        l.contains("[messaging] destination (the subscription)"),
        "{l}"
    );
    edit(&cfg, "destination: nope", "destination: apel");

    // No token: the host certificate (the server's, bound) is exchanged for one.
    edit(
        &cfg,
        &format!("token: {TOKEN}\n"),
        &format!("ams_authn_port: {}\n", server.authn_port),
    );
    let (code, out) = check("receive", &cfg, &["-d", &dns]);
    assert_eq!(code, Some(0), "{out}");
    line(
        &out,
        &format!("OK   AMS token exchange localhost:{}:", server.authn_port),
    );
    line(
        &out,
        &format!(
            "OK   AMS localhost:{}: HTTPS, the exchanged token accepted",
            server.port
        ),
    );

    // A certificate whose DN is not bound: the exchange fails saying to register it in GOCDB.
    std::fs::write(&bound, format!("{}\n", pk.client.dn)).unwrap();
    drop(server);
    let server = Server::start(&["--token", TOKEN, "--dn-file", &p(&bound)]);
    let text = std::fs::read_to_string(&cfg).unwrap();
    let text = text
        .lines()
        .map(|l| {
            if l.starts_with("host: ") {
                format!("host: localhost:{}", server.port)
            } else if l.starts_with("ams_authn_port: ") {
                format!("ams_authn_port: {}", server.authn_port)
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(&cfg, text).unwrap();
    let (code, out) = check("receive", &cfg, &["-d", &dns]);
    assert_eq!(code, Some(1), "{out}");
    let l = line(
        &out,
        &format!("FAIL AMS token exchange localhost:{}:", server.authn_port),
    );
    assert!(l.contains("GOCDB"), "{l}");
}

/// The AMS flags replace the file's settings: a wrong token and project in the file, the
/// right ones on the command line.
#[test]
fn ams_flags_override_the_file() {
    let server = Server::start(&["--token", TOKEN]);
    let dir = tempfile::tempdir().unwrap();
    let cfg = sender_cfg(dir.path(), &server, "wrong", &dir.path().join("outq"));
    edit(&cfg, "ams_project: accounting", "ams_project: nope");
    edit(&cfg, "protocol: AMS", "protocol: STOMP");
    let flags = [
        "--protocol",
        "ams",
        "--ams-project",
        "accounting",
        "--token",
        TOKEN,
    ];
    let broker = format!("localhost:{}", server.port);
    let mut args = flags.to_vec();
    args.extend(["--broker", &broker]);
    let (code, out) = check("send", &cfg, &args);
    assert_eq!(code, Some(0), "{out}");
    line(&out, "OK   topic gLite-APEL:");
    // Without them the file's STOMP holds (and its broker is no STOMP broker).
    let (code, out) = check("send", &cfg, &[]);
    assert_eq!(code, Some(1), "{out}");
    assert!(!out.contains("OK   topic"), "{out}");
}
