//! Tests of configuration loading: the example files, flags over files, flags alone, errors.

use std::num::{NonZeroU32, NonZeroU64};
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{CommandFactory, Parser};

use super::*;
use crate::crypto::Cipher;
use crate::queue::PathType;
use crate::stomp::BrokerKind;

const SENDER_CFG: &str = include_str!("../../conf/sender.cfg");
const RECEIVER_CFG: &str = include_str!("../../conf/receiver.cfg");

/// `ssm send`'s flags as the CLI will flatten them.
#[derive(Parser, Debug)]
struct SendCli {
    #[command(flatten)]
    o: SenderOverrides,
}

/// `ssm receive`'s flags as the CLI will flatten them.
#[derive(Parser, Debug)]
struct ReceiveCli {
    #[command(flatten)]
    o: ReceiverOverrides,
}

fn send_flags(args: &[&str]) -> SenderOverrides {
    let mut all = vec!["ssm-send"];
    all.extend_from_slice(args);
    match SendCli::try_parse_from(all) {
        Ok(cli) => cli.o,
        Err(e) => panic!("{args:?}: {e}"),
    }
}

fn receive_flags(args: &[&str]) -> ReceiverOverrides {
    let mut all = vec!["ssm-receive"];
    all.extend_from_slice(args);
    match ReceiveCli::try_parse_from(all) {
        Ok(cli) => cli.o,
        Err(e) => panic!("{args:?}: {e}"),
    }
}

fn sender(text: &str) -> Result<(SenderConfig, Vec<String>), ConfigError> {
    SenderConfig::from_ini_str(text, "sender.cfg")
}

fn receiver(text: &str) -> Result<(ReceiverConfig, Vec<String>), ConfigError> {
    ReceiverConfig::from_ini_str(text, "receiver.cfg")
}

fn sender_err(text: &str) -> String {
    match sender(text) {
        Ok(c) => panic!("expected an error, got {c:?}"),
        Err(e) => e.to_string(),
    }
}

fn receiver_err(text: &str) -> String {
    match receiver(text) {
        Ok(c) => panic!("expected an error, got {c:?}"),
        Err(e) => e.to_string(),
    }
}

/// The example file with one line replaced (the line must exist).
fn edit(text: &str, line: &str, with: &str) -> String {
    assert!(
        text.lines().any(|l| l == line),
        "no line {line:?} in the example"
    );
    text.lines()
        .map(|l| if l == line { with } else { l })
        .collect::<Vec<_>>()
        .join("\n")
}

const MINIMAL_SENDER: &str = "\
[sender]
protocol = STOMP
[broker]
host = mq.example.org
port = 61613
[certificates]
certificate = /c.pem
key = /k.pem
capath = /ca
[messaging]
destination = /topic/t
path = /q
";

#[test]
fn example_sender_cfg_gives_the_defaults() {
    let (c, warnings) = sender(SENDER_CFG).unwrap();
    assert_eq!(warnings, Vec::<String>::new());
    assert_eq!(
        c,
        SenderConfig {
            common: CommonSettings {
                broker: BrokerSettings {
                    brokers: vec![("localhost".into(), 61613)],
                    use_ssl: true,
                    login: None,
                    passcode: None,
                    kind: None,
                    broker_capath: None,
                },
                identity: IdentitySettings {
                    certificate: "/etc/grid-security/hostcert.pem".into(),
                    key: "/etc/grid-security/hostkey.pem".into(),
                    capath: Some("/etc/grid-security/certificates".into()),
                    cafile: None,
                },
                logging: LoggingSettings {
                    logfile: None,
                    level: "INFO".into(),
                    console: true,
                },
                daemon: DaemonSettings {
                    pidfile: None,
                    metrics: None,
                },
                ams: None,
            },
            server_cert: None,
            server_dn: None,
            verify_server_cert: true,
            destination: "/topic/global.accounting.test".into(),
            path: "/var/spool/apel/outgoing".into(),
            path_type: PathType::QueueSimple,
            cipher: Cipher::Aes128,
            ssm_version: crate::protocol::Version::V2,
            window: 64,
            ack_timeout: Duration::from_secs(60),
            max_attempts: 5,
            reply_queue: None,
        }
    );
    // The values the example writes out are the defaults: a minimal file gives the same.
    let (minimal, _) = sender(MINIMAL_SENDER).unwrap();
    assert_eq!(minimal.path_type, c.path_type);
    assert_eq!(minimal.cipher, c.cipher);
    assert_eq!(minimal.ack_timeout, c.ack_timeout);
    assert_eq!(minimal.max_attempts, c.max_attempts);
    assert_eq!(minimal.verify_server_cert, c.verify_server_cert);
    assert_eq!(minimal.common.broker.use_ssl, c.common.broker.use_ssl);
    assert_eq!(minimal.common.logging, c.common.logging);
}

#[test]
fn example_receiver_cfg_gives_the_defaults() {
    let (c, warnings) = receiver(RECEIVER_CFG).unwrap();
    assert_eq!(warnings, Vec::<String>::new());
    assert_eq!(
        c,
        ReceiverConfig {
            common: CommonSettings {
                broker: BrokerSettings {
                    brokers: vec![("localhost".into(), 61613)],
                    use_ssl: true,
                    login: None,
                    passcode: None,
                    kind: None,
                    broker_capath: None,
                },
                identity: IdentitySettings {
                    certificate: "/etc/grid-security/hostcert.pem".into(),
                    key: "/etc/grid-security/hostkey.pem".into(),
                    capath: Some("/etc/grid-security/certificates".into()),
                    cafile: None,
                },
                logging: LoggingSettings::default(),
                daemon: DaemonSettings {
                    pidfile: None,
                    metrics: None,
                },
                ams: None,
            },
            check_crls: false,
            destination: "/topic/global.accounting.test".into(),
            path: "/var/spool/apel".into(),
            dn_file: DEFAULT_DN_FILE.into(),
            allow_weak_digests: false,
            reack_max_age: Duration::from_secs(7 * 24 * 3600),
        }
    );
}

#[test]
fn commented_out_example_options_parse_when_enabled() {
    // Uncomment every `# option = value` line of the examples: each must be understood.
    for (text, is_sender) in [(SENDER_CFG, true), (RECEIVER_CFG, false)] {
        let mut uncommented = String::new();
        for line in text.lines() {
            let opt = line.strip_prefix("# ").filter(|rest| {
                let name = rest.split([' ', '=']).next().unwrap_or("");
                rest.contains(" = ")
                    && !name.is_empty()
                    && name.chars().all(|c| c.is_ascii_lowercase() || c == '_')
            });
            match opt {
                // One of server_cert/server_dn and of brokers/host+port at a time.
                Some(o) if o.starts_with("server_cert") || o.starts_with("brokers") => {}
                Some(o) => uncommented.push_str(o),
                None => uncommented.push_str(line),
            }
            uncommented.push('\n');
        }
        let warnings = if is_sender {
            let (c, w) = sender(&uncommented).unwrap();
            assert_eq!(c.common.broker.login.as_deref(), Some("ssm"));
            // `kind = auto` means: find out from the broker.
            assert_eq!(c.common.broker.kind, None);
            assert_eq!(
                c.common.broker.broker_capath.as_deref(),
                Some(Path::new("/etc/grid-security/certificates"))
            );
            assert!(c.server_dn.is_some());
            assert!(c.common.identity.cafile.is_some());
            assert_eq!(c.reply_queue.as_deref(), Some("/temp-queue/ssm.site-a"));
            assert!(c.common.logging.logfile.is_some());
            assert!(c.common.daemon.pidfile.is_some());
            w
        } else {
            let (c, w) = receiver(&uncommented).unwrap();
            assert_eq!(c.common.broker.passcode.as_deref(), Some("secret"));
            assert!(c.common.identity.cafile.is_some());
            assert!(c.common.logging.logfile.is_some());
            assert!(c.common.daemon.pidfile.is_some());
            w
        };
        assert_eq!(warnings, Vec::<String>::new());
    }
}

#[test]
fn flags_win_over_the_file() {
    let o = send_flags(&[
        "--broker",
        "b1.example.org:6162",
        "--broker",
        "[::1]:6163",
        "--destination",
        "/topic/other",
        "--cert",
        "/flag/cert.pem",
        "--key",
        "/flag/key.pem",
        "--capath",
        "/flag/ca",
        "--cafile",
        "/flag/ca.pem",
        "--server-dn",
        "/CN=receiver",
        "--path",
        "/flag/q",
        "--path-type",
        "directory",
        "--cipher",
        "aes256",
        "--ack-timeout",
        "5",
        "--max-attempts",
        "2",
        "--daemon",
        "--login",
        "u",
        "--passcode",
        "p#;",
        "--tls",
        "--broker-capath",
        "/flag/bca",
        "--broker-kind",
        "rabbitmq",
    ]);
    assert!(o.daemon);
    let text = edit(
        &edit(SENDER_CFG, "use_ssl = true", "use_ssl = false"),
        "# server_cert = /etc/grid-security/servercert.pem",
        "server_cert = /file/server.pem",
    );
    let (c, _) = SenderConfig::from_ini_str_with(&text, "sender.cfg", &o).unwrap();
    assert_eq!(
        c.common.broker.brokers,
        vec![
            ("b1.example.org".to_string(), 6162),
            ("::1".to_string(), 6163)
        ]
    );
    assert!(c.common.broker.use_ssl);
    assert_eq!(c.common.broker.login.as_deref(), Some("u"));
    assert_eq!(c.common.broker.passcode.as_deref(), Some("p#;"));
    assert_eq!(c.common.broker.kind, Some(BrokerKind::RabbitMq));
    assert_eq!(
        c.common.broker.broker_capath,
        Some(PathBuf::from("/flag/bca"))
    );
    assert_eq!(c.destination, "/topic/other");
    assert_eq!(
        c.common.identity.certificate,
        PathBuf::from("/flag/cert.pem")
    );
    assert_eq!(c.common.identity.key, PathBuf::from("/flag/key.pem"));
    assert_eq!(c.common.identity.capath, Some(PathBuf::from("/flag/ca")));
    assert_eq!(
        c.common.identity.cafile,
        Some(PathBuf::from("/flag/ca.pem"))
    );
    // --server-dn replaces the file's server_cert rather than adding to it.
    assert_eq!(c.server_cert, None);
    assert_eq!(c.server_dn.as_deref(), Some("/CN=receiver"));
    assert_eq!(c.path, PathBuf::from("/flag/q"));
    assert_eq!(c.path_type, PathType::Directory);
    assert_eq!(c.cipher, Cipher::Aes256);
    assert_eq!(c.ack_timeout, Duration::from_secs(5));
    assert_eq!(c.max_attempts, 2);

    // And the same through apply() on a loaded configuration.
    let (mut c2, _) = sender(SENDER_CFG).unwrap();
    c2.apply(&o);
    assert_eq!(c2.common.broker, c.common.broker);
    assert_eq!(c2.cipher, Cipher::Aes256);
    assert_eq!(c2.server_dn.as_deref(), Some("/CN=receiver"));
}

#[test]
fn flags_left_out_keep_the_file() {
    let (before, _) = sender(SENDER_CFG).unwrap();
    let mut after = before.clone();
    after.apply(&send_flags(&[]));
    assert_eq!(after, before);
    let (before, _) = receiver(RECEIVER_CFG).unwrap();
    let mut after = before.clone();
    after.apply(&receive_flags(&[]));
    assert_eq!(after, before);
}

#[test]
fn names_are_case_insensitive_and_auto_means_detect() {
    let text = edit(
        &edit(
            &edit(SENDER_CFG, "# kind = auto", "kind = RabbitMQ"),
            "path_type = dirq",
            "path_type = Directory",
        ),
        "cipher = aes128",
        "cipher = AES192",
    );
    let (c, _) = sender(&text).unwrap();
    assert_eq!(c.common.broker.kind, Some(BrokerKind::RabbitMq));
    assert_eq!(c.path_type, PathType::Directory);
    assert_eq!(c.cipher, Cipher::Aes192);
    // `--broker-kind auto` undoes the file's kind: detect again.
    let o = send_flags(&["--broker-kind", "AUTO", "--path-type", "DIRQ"]);
    assert_eq!(o.broker_opts.broker_kind, Some(KindChoice(None)));
    let (c, _) = SenderConfig::from_ini_str_with(&text, "sender.cfg", &o).unwrap();
    assert_eq!(c.common.broker.kind, None);
    assert_eq!(c.path_type, PathType::QueueSimple);
    assert_eq!(c.cipher, Cipher::Aes192);
    let o = receive_flags(&["--broker-kind", "Embedded"]);
    assert_eq!(
        o.broker_opts.broker_kind,
        Some(KindChoice(Some(BrokerKind::Embedded)))
    );
}

#[test]
fn receiver_flags_win_over_the_file() {
    let o = receive_flags(&[
        "-d",
        "/flag/dns",
        "--broker",
        "r.example.org:61614",
        "--destination",
        "/topic/r",
        "--cert",
        "/c",
        "--key",
        "/k",
        "--capath",
        "/ca",
        "--cafile",
        "/ca.pem",
        "--crl-check",
        "--path",
        "/store",
        "--max-messages",
        "10",
        "--for",
        "30",
        "--login",
        "l",
        "--passcode",
        "p",
        "--tls",
        "--broker-capath",
        "/bca",
        "--broker-kind",
        "activemq",
    ]);
    assert_eq!(o.max_messages, NonZeroU64::new(10));
    assert_eq!(o.for_secs, NonZeroU64::new(30));
    let (c, _) = ReceiverConfig::from_ini_str_with(RECEIVER_CFG, "receiver.cfg", &o).unwrap();
    assert_eq!(c.dn_file, PathBuf::from("/flag/dns"));
    assert_eq!(
        c.common.broker.brokers,
        vec![("r.example.org".to_string(), 61614)]
    );
    assert_eq!(c.common.broker.kind, Some(BrokerKind::ActiveMq));
    assert_eq!(c.common.broker.login.as_deref(), Some("l"));
    assert_eq!(c.common.broker.broker_capath, Some(PathBuf::from("/bca")));
    assert_eq!(c.destination, "/topic/r");
    assert_eq!(c.common.identity.certificate, PathBuf::from("/c"));
    assert_eq!(c.common.identity.key, PathBuf::from("/k"));
    assert_eq!(c.common.identity.capath, Some(PathBuf::from("/ca")));
    assert_eq!(c.common.identity.cafile, Some(PathBuf::from("/ca.pem")));
    assert!(c.check_crls);
    assert_eq!(c.path, PathBuf::from("/store"));
    let long = receive_flags(&["--dn-file", "/x", "--config", "/r.cfg"]);
    assert_eq!(long.dn_file, Some(PathBuf::from("/x")));
    assert_eq!(long.config, Some(PathBuf::from("/r.cfg")));
}

#[test]
fn flags_alone_make_a_configuration() {
    let o = send_flags(&[
        "--broker",
        "127.0.0.1:61613",
        "--destination",
        "/topic/t",
        "--cert",
        "/c",
        "--key",
        "/k",
        "--cafile",
        "/ca.pem",
        "--path",
        "/q",
    ]);
    let c = SenderConfig::from_overrides(&o).unwrap();
    assert_eq!(
        c.common.broker.brokers,
        vec![("127.0.0.1".to_string(), 61613)]
    );
    assert!(
        !c.common.broker.use_ssl,
        "TLS is off with flags only unless --tls"
    );
    // SSM2 by default, with its cipher; version 1 keeps triple DES.
    assert_eq!(c.ssm_version, crate::protocol::Version::V2);
    assert_eq!(c.cipher, Cipher::Aes128);
    assert_eq!(c.path_type, PathType::QueueSimple);
    assert_eq!(c.ack_timeout, DEFAULT_ACK_TIMEOUT);
    assert_eq!(c.max_attempts, 5);
    assert!(c.verify_server_cert);
    assert_eq!(c.common.logging, LoggingSettings::default());
    let mut with_tls = o.clone();
    with_tls.broker_opts.tls = true;
    assert!(
        SenderConfig::from_overrides(&with_tls)
            .unwrap()
            .common
            .broker
            .use_ssl
    );

    let o = receive_flags(&[
        "--broker",
        "localhost:61613",
        "--destination",
        "/topic/t",
        "--cert",
        "/c",
        "--key",
        "/k",
        "--capath",
        "/ca",
        "--path",
        "/store",
    ]);
    let c = ReceiverConfig::from_overrides(&o).unwrap();
    assert_eq!(c.dn_file, PathBuf::from(DEFAULT_DN_FILE));
    assert!(!c.check_crls);
    assert_eq!(c.reack_max_age, Duration::from_secs(604_800));
}

#[test]
fn missing_flags_are_named() {
    let full = [
        "--broker",
        "h:1",
        "--destination",
        "/topic/t",
        "--cert",
        "/c",
        "--key",
        "/k",
        "--capath",
        "/ca",
        "--path",
        "/q",
    ];
    let without = |flag: &str| {
        let i = full.iter().position(|a| *a == flag).unwrap();
        let mut args = full.to_vec();
        args.drain(i..i + 2);
        args
    };
    for (flag, sender_error, receiver_error) in [
        ("--broker", "--broker HOST:PORT", "--broker HOST:PORT"),
        (
            "--destination",
            "--destination TOPIC",
            "--destination TOPIC",
        ),
        ("--cert", "--cert C", "--cert C"),
        ("--key", "--key K", "--key K"),
        (
            "--capath",
            "--capath DIR or --cafile F",
            "--capath DIR or --cafile F",
        ),
        ("--path", "--path OUTQ", "--path STORE"),
    ] {
        let e = SenderConfig::from_overrides(&send_flags(&without(flag))).unwrap_err();
        assert!(matches!(e, ConfigError::MissingFlag { .. }), "{e:?}");
        let e = e.to_string();
        assert!(
            e.starts_with(&format!("{sender_error} is required (no configuration file was read; or give -c FILE with [")),
            "{e}"
        );
        let e = ReceiverConfig::from_overrides(&receive_flags(&without(flag)))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with(&format!("{receiver_error} is required")),
            "{e}"
        );
    }
    assert!(SenderConfig::from_overrides(&send_flags(&full)).is_ok());
    assert!(ReceiverConfig::from_overrides(&receive_flags(&full)).is_ok());
}

#[test]
fn missing_options_are_named_with_their_flag() {
    for (line, expected) in [
        (
            "host = localhost",
            "sender.cfg: [broker] host is required (or give --broker HOST:PORT)",
        ),
        (
            "certificate = /etc/grid-security/hostcert.pem",
            "sender.cfg: [certificates] certificate is required (or give --cert C)",
        ),
        (
            "key = /etc/grid-security/hostkey.pem",
            "sender.cfg: [certificates] key is required (or give --key K)",
        ),
        (
            "capath = /etc/grid-security/certificates",
            "sender.cfg: [certificates] capath is required (or give --capath DIR or --cafile F)",
        ),
        (
            "destination = /topic/global.accounting.test",
            "sender.cfg: [messaging] destination is required (or give --destination TOPIC)",
        ),
        (
            "path = /var/spool/apel/outgoing",
            "sender.cfg: [messaging] path is required (or give --path OUTQ)",
        ),
    ] {
        let mut text = edit(SENDER_CFG, line, "");
        if line.starts_with("host") {
            text = edit(&text, "port = 61613", "");
        }
        assert_eq!(sender_err(&text), expected);
        // An empty value counts as missing.
        let name = line.split(" = ").next().unwrap_or_default();
        if name != "host" {
            assert_eq!(
                sender_err(&edit(SENDER_CFG, line, &format!("{name} ="))),
                expected
            );
        }
    }
    for (line, expected) in [
        (
            "certificate = /etc/grid-security/hostcert.pem",
            "receiver.cfg: [certificates] certificate is required (or give --cert C)",
        ),
        (
            "capath = /etc/grid-security/certificates",
            "receiver.cfg: [certificates] capath is required (or give --capath DIR or --cafile F)",
        ),
        (
            "destination = /topic/global.accounting.test",
            "receiver.cfg: [messaging] destination is required (or give --destination TOPIC)",
        ),
        (
            "path = /var/spool/apel",
            "receiver.cfg: [messaging] path is required (or give --path STORE)",
        ),
    ] {
        assert_eq!(receiver_err(&edit(RECEIVER_CFG, line, "")), expected);
    }
    // A sender that does not verify the receiver's certificate needs no CA.
    let text = edit(
        &edit(SENDER_CFG, "capath = /etc/grid-security/certificates", ""),
        "verify_server_cert = true",
        "verify_server_cert = false",
    );
    assert!(sender(&text).is_ok());
    // A flag can supply what the file lacks.
    let text = edit(SENDER_CFG, "path = /var/spool/apel/outgoing", "");
    let (c, _) =
        SenderConfig::from_ini_str_with(&text, "sender.cfg", &send_flags(&["--path", "/q"]))
            .unwrap();
    assert_eq!(c.path, PathBuf::from("/q"));
}

#[test]
fn each_bad_value_names_its_option() {
    for (line, with, expected) in [
        ("port = 61613", "port = abc", "sender.cfg: [broker] port: 'abc' is not a port number (1-65535)"),
        ("port = 61613", "port = 0", "sender.cfg: [broker] port: '0' is not a port number (1-65535)"),
        ("port = 61613", "port = 70000", "sender.cfg: [broker] port: '70000' is not a port number (1-65535)"),
        ("host = localhost", "host = two words", "sender.cfg: [broker] host: 'two words' is not a host name"),
        ("use_ssl = true", "use_ssl = maybe", "sender.cfg: [broker] use_ssl: 'maybe' is not a boolean (true/false, yes/no, on/off, 1/0)"),
        ("# kind = auto", "kind = artemis", "sender.cfg: [broker] kind: 'artemis' is not a broker kind (one of auto, rabbitmq, activemq, embedded)"),
        ("verify_server_cert = true", "verify_server_cert = 2", "sender.cfg: [certificates] verify_server_cert: '2' is not a boolean (true/false, yes/no, on/off, 1/0)"),
        ("path_type = dirq", "path_type = queue", "sender.cfg: [messaging] path_type: 'queue' is not a queue type (one of dirq, directory)"),
        ("cipher = aes128", "cipher = rc4", "sender.cfg: [messaging] cipher: 'rc4' is not a cipher (one of des3, aes128, aes192, aes256)"),
        ("ack_timeout = 60", "ack_timeout = 0", "sender.cfg: [messaging] ack_timeout: the duration must be more than zero"),
        ("ack_timeout = 60", "ack_timeout = soon", "sender.cfg: [messaging] ack_timeout: 'soon' is not a duration (seconds, or a number with s, m, h or d)"),
        ("max_attempts = 5", "max_attempts = 0", "sender.cfg: [messaging] max_attempts: '0' is not a positive whole number"),
        ("level = INFO", "level = LOUD", "sender.cfg: [logging] level: 'LOUD' is not a log level (one of TRACE, DEBUG, INFO, WARN, WARNING, ERROR, CRITICAL)"),
        ("console = true", "console = sometimes", "sender.cfg: [logging] console: 'sometimes' is not a boolean (true/false, yes/no, on/off, 1/0)"),
        ("protocol = STOMP", "protocol = MQTT", "sender.cfg: [sender] protocol: 'MQTT' is not supported (STOMP or AMS)"),
        ("# server_dn = /C=UK/O=eScience/OU=CLRC/L=RAL/CN=receiver.example.org", "server_dn = /CN=x\nserver_cert = /s.pem", "sender.cfg: [certificates] server_dn: give either server_cert or server_dn, not both"),
        ("port = 61613", "port = 61613\nbrokers = a:1", "sender.cfg: [broker] brokers: give either brokers or host and port, not both"),
        ("port = 61613", "", "sender.cfg: [broker] port: missing, though host is set"),
        ("path = /var/spool/apel/outgoing", "path", "sender.cfg: [messaging] path: has no value (write option = value)"),
    ] {
        let e = sender_err(&edit(SENDER_CFG, line, with));
        assert_eq!(e, expected);
        assert!(!e.contains('\n'));
    }
    for (line, with, expected) in [
        ("check_crls = false", "check_crls = perhaps", "receiver.cfg: [certificates] check_crls: 'perhaps' is not a boolean (true/false, yes/no, on/off, 1/0)"),
        ("reack_max_age = 7d", "reack_max_age = 1w", "receiver.cfg: [messaging] reack_max_age: '1w' is not a duration (seconds, or a number with s, m, h or d)"),
        ("port = 61613", "port = -5", "receiver.cfg: [broker] port: '-5' is not a port number (1-65535)"),
        ("protocol = STOMP", "protocol = stompy", "receiver.cfg: [receiver] protocol: 'stompy' is not supported (STOMP or AMS)"),
    ] {
        assert_eq!(receiver_err(&edit(RECEIVER_CFG, line, with)), expected);
    }
    let e = sender_err("[broker\nhost = x\n");
    assert!(e.starts_with("sender.cfg: line 1:"), "{e}");
}

#[test]
fn bool_spellings_in_files() {
    for (spelling, value) in [
        ("true", true),
        ("True", true),
        ("YES", true),
        ("on", true),
        ("1", true),
        ("false", false),
        ("FALSE", false),
        ("no", false),
        ("Off", false),
        ("0", false),
    ] {
        let text = edit(
            SENDER_CFG,
            "use_ssl = true",
            &format!("use_ssl = {spelling}"),
        );
        assert_eq!(
            sender(&text).unwrap().0.common.broker.use_ssl,
            value,
            "{spelling}"
        );
        let text = edit(
            RECEIVER_CFG,
            "check_crls = false",
            &format!("check_crls: {spelling}"),
        );
        assert_eq!(receiver(&text).unwrap().0.check_crls, value, "{spelling}");
    }
}

#[test]
fn broker_lists() {
    let text = edit(
        &edit(SENDER_CFG, "host = localhost", ""),
        "port = 61613",
        "brokers = mq1.example.org:61613, mq2.example.org:61614,[2001:db8::1]:6163",
    );
    let (c, _) = sender(&text).unwrap();
    assert_eq!(
        c.common.broker.brokers,
        vec![
            ("mq1.example.org".to_string(), 61613),
            ("mq2.example.org".to_string(), 61614),
            ("2001:db8::1".to_string(), 6163),
        ]
    );
    let bad = edit(
        &edit(SENDER_CFG, "host = localhost", ""),
        "port = 61613",
        "brokers = mq1:61613, mq2",
    );
    assert_eq!(
        sender_err(&bad),
        "sender.cfg: [broker] brokers: 'mq2' is not HOST:PORT"
    );
    // --broker replaces the whole list, in the order given.
    let (c, _) = SenderConfig::from_ini_str_with(
        &text,
        "sender.cfg",
        &send_flags(&["--broker", "z:9", "--broker", "y:8"]),
    )
    .unwrap();
    assert_eq!(
        c.common.broker.brokers,
        vec![("z".to_string(), 9), ("y".to_string(), 8)]
    );
}

#[test]
fn syntax_is_python_configparser_like() {
    let text = "\
; a comment
# another
[SENDER]
Protocol: stomp
[broker]
HOST: mq.example.org
port:61613
passcode = se#cr;et
use_ssl = no
broker_capath = /bca
[certificates]
certificate=/c
key = /k
capath = /ca
[messaging]
destination = /topic/t # not a comment
path = /q
ack_timeout = 2m
";
    let (c, warnings) = sender(text).unwrap();
    assert_eq!(warnings, Vec::<String>::new());
    let (with_bom, warnings) = sender(&format!("\u{feff}{text}\r\n")).unwrap();
    assert_eq!(warnings, Vec::<String>::new());
    assert_eq!(with_bom, c);
    assert_eq!(
        c.common.broker.brokers,
        vec![("mq.example.org".to_string(), 61613)]
    );
    assert_eq!(c.common.broker.passcode.as_deref(), Some("se#cr;et"));
    assert_eq!(c.common.broker.broker_capath, Some(PathBuf::from("/bca")));
    assert!(!c.common.broker.use_ssl);
    assert_eq!(c.destination, "/topic/t # not a comment");
    assert_eq!(c.common.identity.certificate, PathBuf::from("/c"));
    assert_eq!(c.ack_timeout, Duration::from_secs(120));
}

#[test]
fn unknown_and_obsolete_options_are_warned_about() {
    let text = format!(
        "stray = 1\n{}\n[broker]\nbdii = ldap://bdii.example.org:2170\nnetwork = PROD\nhots = typo\n[extra]\nx = 1\n",
        edit(SENDER_CFG, "protocol = STOMP", "")
    );
    let (_, warnings) = sender(&text).unwrap();
    assert_eq!(
        warnings,
        vec![
            "sender.cfg: [sender] protocol not set, using STOMP",
            "sender.cfg: [broker] bdii is no longer used: list the brokers in [broker] brokers",
            "sender.cfg: [broker] hots: unknown option ignored",
            "sender.cfg: [broker] network is no longer used: list the brokers in [broker] brokers",
            "sender.cfg: options before the first [section] are ignored: stray",
            "sender.cfg: unknown section [extra] ignored",
        ]
    );
    // A receiver-only option in a sender file is unknown there.
    let text = edit(SENDER_CFG, "verify_server_cert = true", "check_crls = true");
    let (_, warnings) = sender(&text).unwrap();
    assert_eq!(
        warnings,
        vec!["sender.cfg: [certificates] check_crls: unknown option ignored"]
    );
}

#[test]
fn clap_flags_are_well_formed_and_checked() {
    SendCli::command().debug_assert();
    ReceiveCli::command().debug_assert();
    for bad in [
        vec!["--broker", "nohost"],
        vec!["--broker", "h:0"],
        vec!["--cipher", "rc4"],
        vec!["--path-type", "queue"],
        vec!["--broker-kind", "artemis"],
        vec!["--broker-kind", "other"],
        vec!["--broker-kind"],
        vec!["--ack-timeout", "0"],
        vec!["--max-attempts", "0"],
        vec!["--max-attempts", "-1"],
        vec!["--server-cert", "/s", "--server-dn", "/CN=x"],
    ] {
        let mut args = vec!["ssm-send"];
        args.extend_from_slice(&bad);
        assert!(SendCli::try_parse_from(args).is_err(), "{bad:?}");
    }
    for bad in [
        vec!["--max-messages", "0"],
        vec!["--for", "x"],
        vec!["--daemon"],
        vec!["--cipher", "des3"],
    ] {
        let mut args = vec!["ssm-receive"];
        args.extend_from_slice(&bad);
        assert!(ReceiveCli::try_parse_from(args).is_err(), "{bad:?}");
    }
    // clap prints the parsers' reasons after the flag, and the help lists the names.
    for (flag, value, reason) in [
        (
            "--cipher",
            "rc4",
            "'rc4' is not a cipher (one of des3, aes128, aes192, aes256)",
        ),
        (
            "--path-type",
            "queue",
            "'queue' is not a queue type (one of dirq, directory)",
        ),
        (
            "--broker-kind",
            "artemis",
            "'artemis' is not a broker kind (one of auto, rabbitmq, activemq, embedded)",
        ),
    ] {
        let e = SendCli::try_parse_from(["ssm-send", flag, value])
            .unwrap_err()
            .to_string();
        assert!(e.contains(flag) && e.contains(reason), "{e}");
    }
    let help = SendCli::command().render_long_help().to_string();
    for names in [
        "des3, aes128, aes192 or aes256",
        "dirq or directory",
        "auto, rabbitmq, activemq or embedded",
    ] {
        assert!(help.contains(names), "{names}: {help}");
    }
    let help = ReceiveCli::command().render_long_help().to_string();
    assert!(
        help.contains("auto, rabbitmq, activemq or embedded"),
        "{help}"
    );
    let o = send_flags(&["-c", "/s.cfg", "--cipher", "AES128"]);
    assert_eq!(o.config, Some(PathBuf::from("/s.cfg")));
    assert_eq!(o.cipher, Some(Cipher::Aes128));
    assert_eq!(
        send_flags(&["--max-attempts", "3"]).max_attempts,
        NonZeroU32::new(3)
    );
}

#[test]
fn resolve_picks_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let default = dir.path().join("sender.cfg");
    let flags_only = [
        "--broker",
        "h:1",
        "--destination",
        "/topic/t",
        "--cert",
        "/c",
        "--key",
        "/k",
        "--capath",
        "/ca",
        "--path",
        "/q",
    ];
    // No -c and no default file: flags alone.
    let (c, w) = SenderConfig::resolve_with_default(&send_flags(&flags_only), &default).unwrap();
    assert_eq!(c.common.broker.brokers, vec![("h".to_string(), 1)]);
    assert!(w.is_empty());
    // The default file exists: it is read, flags still win.
    std::fs::write(&default, SENDER_CFG).unwrap();
    let (c, _) =
        SenderConfig::resolve_with_default(&send_flags(&["--cipher", "aes128"]), &default).unwrap();
    assert_eq!(c.destination, "/topic/global.accounting.test");
    assert_eq!(c.cipher, Cipher::Aes128);
    // -c names another file, which wins over the default.
    let other = dir.path().join("other.cfg");
    std::fs::write(
        &other,
        edit(
            SENDER_CFG,
            "destination = /topic/global.accounting.test",
            "destination = /topic/o",
        ),
    )
    .unwrap();
    let c_flag = other.to_str().unwrap();
    let (c, _) =
        SenderConfig::resolve_with_default(&send_flags(&["-c", c_flag]), &default).unwrap();
    assert_eq!(c.destination, "/topic/o");
    // A missing -c file is an error naming it; errors inside it name it too.
    let gone = dir.path().join("gone.cfg");
    let e =
        SenderConfig::resolve_with_default(&send_flags(&["-c", gone.to_str().unwrap()]), &default)
            .unwrap_err();
    assert!(matches!(e, ConfigError::Read { .. }));
    assert!(e
        .to_string()
        .starts_with(&format!("{}: cannot read", gone.display())));
    std::fs::write(&other, edit(SENDER_CFG, "port = 61613", "port = x")).unwrap();
    let e = SenderConfig::load(&other).unwrap_err().to_string();
    assert_eq!(
        e,
        format!(
            "{}: [broker] port: 'x' is not a port number (1-65535)",
            other.display()
        )
    );

    let rdefault = dir.path().join("receiver.cfg");
    std::fs::write(&rdefault, RECEIVER_CFG).unwrap();
    let (c, _) =
        ReceiverConfig::resolve_with_default(&receive_flags(&["-d", "/d"]), &rdefault).unwrap();
    assert_eq!(c.dn_file, PathBuf::from("/d"));
    let (c, _) = ReceiverConfig::load(&rdefault).unwrap();
    assert_eq!(c.dn_file, PathBuf::from(DEFAULT_DN_FILE));
}

#[test]
fn unreadable_file_names_the_path() {
    let e = read_file(Path::new("/nonexistent/ssm/sender.cfg")).unwrap_err();
    let text = e.to_string();
    assert!(
        text.starts_with("/nonexistent/ssm/sender.cfg: cannot read: "),
        "{text}"
    );
    assert!(!text.contains('\n'));
}

#[test]
fn daemon_section_and_flags_give_pidfile_and_metrics() {
    let text = "[broker]\nhost = b\nport = 61613\n[certificates]\ncertificate = c\nkey = k\ncapath = /ca\n[messaging]\ndestination = /topic/t\npath = /q\n[daemon]\npidfile = /run/ssm.pid\nmetrics = 127.0.0.1:9464\n";
    let (c, _) = ReceiverConfig::from_ini_str(text, "r.cfg").unwrap();
    assert_eq!(
        c.common.daemon.pidfile.as_deref(),
        Some(std::path::Path::new("/run/ssm.pid"))
    );
    assert_eq!(c.common.daemon.metrics.as_deref(), Some("127.0.0.1:9464"));
    let o = send_flags(&["--pidfile", "/tmp/s.pid", "--metrics", "127.0.0.1:1"]);
    let (s, _) = SenderConfig::from_ini_str_with(text, "s.cfg", &o).unwrap();
    assert_eq!(
        s.common.daemon.pidfile.as_deref(),
        Some(std::path::Path::new("/tmp/s.pid"))
    );
    assert_eq!(s.common.daemon.metrics.as_deref(), Some("127.0.0.1:1"));
}

#[test]
fn receiver_allow_weak_digests_is_read_and_off_by_default() {
    let on = edit(
        RECEIVER_CFG,
        "allow_weak_digests = false",
        "allow_weak_digests = yes",
    );
    let (c, warnings) = receiver(&on).unwrap();
    assert!(c.allow_weak_digests);
    assert!(warnings.is_empty(), "{warnings:?}");
    let absent = edit(RECEIVER_CFG, "allow_weak_digests = false", "");
    assert!(!receiver(&absent).unwrap().0.allow_weak_digests);
    let bad = edit(
        RECEIVER_CFG,
        "allow_weak_digests = false",
        "allow_weak_digests = maybe",
    );
    assert!(receiver_err(&bad).contains("allow_weak_digests"));
}

#[test]
fn the_protocol_version_decides_the_default_cipher() {
    let v1 = edit(SENDER_CFG, "ssm_version = 2", "ssm_version = 1");
    let v1 = edit(&v1, "cipher = aes128", "");
    let (c, _) = sender(&v1).unwrap();
    assert_eq!(c.ssm_version, crate::protocol::Version::V1);
    assert_eq!(c.cipher, Cipher::Des3);
    let given = edit(&v1, "window = 64", "cipher = aes256");
    let (c, _) = sender(&given).unwrap();
    assert_eq!(c.cipher, Cipher::Aes256, "a given cipher wins");
    let bad = edit(SENDER_CFG, "ssm_version = 2", "ssm_version = 3");
    let err = sender_err(&bad);
    assert!(
        err.contains("ssm_version") && err.contains("1 or 2"),
        "{err}"
    );
}

/// The Python SSM 4.0's `sender.cfg` for AMS, as it ships (values filled in).
const PY_AMS_SENDER: &str = "[sender]
protocol: AMS

[broker]
host: msg.argo.grnet.gr
#port: 443

[certificates]
certificate: /etc/grid-security/hostcert.pem
key: /etc/grid-security/hostkey.pem
capath: /etc/grid-security/certificates
server_cert: /etc/grid-security/servercert.pem
verify_server_cert: true

[messaging]
ams_project: accounting
token: abc
destination: gLite-APEL
path: /var/spool/apel/outgoing
path_type: dirq

[logging]
logfile: /var/log/apel/ssmsend.log
level: INFO
console: true
";

#[test]
fn an_ams_sender_cfg_of_the_python_ssm_loads() {
    let (c, warnings) = sender(PY_AMS_SENDER).unwrap();
    assert_eq!(warnings, Vec::<String>::new());
    assert_eq!(
        c.common.broker.brokers,
        vec![("msg.argo.grnet.gr".to_string(), 443)]
    );
    let ams = c.common.ams.as_ref().unwrap();
    assert_eq!(ams.project, "accounting");
    assert_eq!(ams.token.as_deref(), Some("abc"));
    assert_eq!(ams.authn_port, 8443);
    assert!(!ams.token_in_url, "the x-api-key header unless asked");
    let (c, _) =
        sender(&PY_AMS_SENDER.replace("token: abc\n", "token: abc\nams_token_in_url: yes\n"))
            .unwrap();
    let transport = crate::setup::ams_transport(&c.common).unwrap();
    let crate::transport::TransportConfig::Ams(a) = transport else {
        panic!("not AMS: {transport:?}")
    };
    assert!(a.client.key_in_url, "ams_token_in_url reaches the client");
    assert!(
        !format!("{ams:?}").contains("abc"),
        "the token stays out of logs"
    );
    assert_eq!(c.destination, "gLite-APEL");
    assert_eq!(c.ssm_version, crate::protocol::Version::V2);
    // A port given is unused (as in the Python SSM); HOST:PORT names one.
    let (c, _) = sender(&PY_AMS_SENDER.replace("#port: 443", "port: 61613")).unwrap();
    assert_eq!(c.common.broker.brokers[0].1, 443);
    let (c, _) = sender(&PY_AMS_SENDER.replace("grnet.gr\n", "grnet.gr:8444\n")).unwrap();
    assert_eq!(
        c.common.broker.brokers,
        vec![("msg.argo.grnet.gr".to_string(), 8444)]
    );
    // No token: the certificate is exchanged for one.
    let (c, _) = sender(&PY_AMS_SENDER.replace("token: abc\n", "")).unwrap();
    assert_eq!(c.common.ams.unwrap().token, None);
    assert_eq!(
        sender_err(&PY_AMS_SENDER.replace("ams_project: accounting\n", "")),
        "sender.cfg: [messaging] ams_project: is required with protocol AMS"
    );
    let e =
        sender_err(&PY_AMS_SENDER.replace("path_type: dirq", "path_type: dirq\nssm_version: 1"));
    assert!(
        e.contains("ssm_version: 1 cannot be used with protocol AMS"),
        "{e}"
    );
    // STOMP files have no AMS settings.
    assert_eq!(sender(SENDER_CFG).unwrap().0.common.ams, None);
}

#[test]
fn an_ams_receiver_cfg_of_the_python_ssm_loads() {
    let text = "[receiver]\nprotocol: AMS\n[broker]\nhost: msg.argo.grnet.gr\n\
                [certificates]\ncertificate: /c\nkey: /k\ncapath: /ca\ncheck_crls: false\n\
                [messaging]\nams_project: accounting\ntoken: t\ndestination: apel-sub\n\
                path: /var/spool/apel\n";
    let (c, _) = receiver(text).unwrap();
    assert_eq!(c.destination, "apel-sub");
    assert_eq!(c.common.ams.unwrap().project, "accounting");
}
