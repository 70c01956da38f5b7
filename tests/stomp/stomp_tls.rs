//! TLS: the client against an in-test TLS STOMP server that requires a client certificate (a
//! throwaway PKI made with the openssl crate), and against every real TLS broker named in
//! `SSM_TEST_TLS_BROKERS` (`name=host:port,...`) with the test PKI in `SSM_TEST_TLS_DIR`
//! (`ca.pem`, `capath/`, `client.pem`, `client.key`).

use crate::support::brokers;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use openssl::asn1::Asn1Time;
use openssl::bn::{BigNum, MsbOption};
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::ssl::{SslAcceptor, SslMethod, SslVerifyMode};
use openssl::x509::extension::{
    BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectAlternativeName,
};
use openssl::x509::{X509NameBuilder, X509};
use ssm::stomp::{
    AckMode, BrokerAddr, Client, ClientConfig, Command, Frame, Item, StompCodec, StompError,
    TlsConfig, TlsConnector, TlsError,
};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_openssl::SslStream;
use tokio_util::codec::Framed;

struct Issued {
    cert: X509,
    key: PKey<Private>,
}

fn key() -> PKey<Private> {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
    PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap()
}

/// A certificate for `cn`, signed by `issuer` (self-signed CA when `None`).
fn issue(cn: &str, issuer: Option<&Issued>, sans: &[&str]) -> Issued {
    let key = key();
    let mut name = X509NameBuilder::new().unwrap();
    name.append_entry_by_text("O", "ssm test").unwrap();
    name.append_entry_by_text("CN", cn).unwrap();
    let name = name.build();
    let mut b = X509::builder().unwrap();
    b.set_version(2).unwrap();
    let mut serial = BigNum::new().unwrap();
    serial.rand(64, MsbOption::MAYBE_ZERO, false).unwrap();
    b.set_serial_number(&serial.to_asn1_integer().unwrap())
        .unwrap();
    b.set_subject_name(&name).unwrap();
    b.set_issuer_name(issuer.map_or(&*name, |i| i.cert.subject_name()))
        .unwrap();
    b.set_pubkey(&key).unwrap();
    b.set_not_before(&Asn1Time::days_from_now(0).unwrap())
        .unwrap();
    b.set_not_after(&Asn1Time::days_from_now(30).unwrap())
        .unwrap();
    match issuer {
        None => {
            b.append_extension(BasicConstraints::new().critical().ca().build().unwrap())
                .unwrap();
            b.append_extension(
                KeyUsage::new()
                    .critical()
                    .key_cert_sign()
                    .crl_sign()
                    .build()
                    .unwrap(),
            )
            .unwrap();
        }
        Some(ca) => {
            b.append_extension(BasicConstraints::new().build().unwrap())
                .unwrap();
            b.append_extension(
                ExtendedKeyUsage::new()
                    .server_auth()
                    .client_auth()
                    .build()
                    .unwrap(),
            )
            .unwrap();
            if !sans.is_empty() {
                let mut san = SubjectAlternativeName::new();
                for s in sans {
                    if s.parse::<std::net::IpAddr>().is_ok() {
                        san.ip(s);
                    } else {
                        san.dns(s);
                    }
                }
                let ext = san.build(&b.x509v3_context(Some(&ca.cert), None)).unwrap();
                b.append_extension(ext).unwrap();
            }
        }
    }
    let signer = issuer.map_or(&key, |i| &i.key);
    b.sign(signer, MessageDigest::sha256()).unwrap();
    Issued {
        cert: b.build(),
        key,
    }
}

/// A throwaway PKI on disk.
struct Pki {
    dir: tempfile::TempDir,
    ca: Issued,
}

impl Pki {
    fn new() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let ca = issue("ssm test CA", None, &[]);
        let wrong = issue("some other CA", None, &[]);
        let client = issue("ssm test client", Some(&ca), &[]);
        let p = dir.path();
        std::fs::write(p.join("ca.pem"), ca.cert.to_pem().unwrap()).unwrap();
        std::fs::write(p.join("wrong-ca.pem"), wrong.cert.to_pem().unwrap()).unwrap();
        std::fs::create_dir(p.join("capath")).unwrap();
        let hash = format!("{:08x}.0", ca.cert.subject_name_hash());
        std::fs::write(p.join("capath").join(hash), ca.cert.to_pem().unwrap()).unwrap();
        std::fs::write(p.join("client.pem"), client.cert.to_pem().unwrap()).unwrap();
        std::fs::write(
            p.join("client.key"),
            client.key.private_key_to_pem_pkcs8().unwrap(),
        )
        .unwrap();
        // A key that does not belong to client.pem.
        std::fs::write(
            p.join("other.key"),
            key().private_key_to_pem_pkcs8().unwrap(),
        )
        .unwrap();
        Pki { dir, ca }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Trust our CA file and present our client certificate.
    fn tls(&self) -> TlsConfig {
        TlsConfig {
            cafile: Some(self.path("ca.pem")),
            cert: Some(self.path("client.pem")),
            key: Some(self.path("client.key")),
            ..TlsConfig::default()
        }
    }
}

/// A TLS STOMP server that requires a client certificate from `pki`'s CA, answers CONNECT with
/// CONNECTED and SEND-with-receipt with RECEIPT, and reports each client's certificate CN.
async fn tls_server(pki: &Pki, sans: &[&str]) -> (BrokerAddr, mpsc::UnboundedReceiver<String>) {
    let server = issue("ssm test server", Some(&pki.ca), sans);
    let mut b = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls_server()).unwrap();
    b.set_private_key(&server.key).unwrap();
    b.set_certificate(&server.cert).unwrap();
    b.cert_store_mut().add_cert(pki.ca.cert.clone()).unwrap();
    b.set_verify(SslVerifyMode::PEER | SslVerifyMode::FAIL_IF_NO_PEER_CERT);
    let acceptor = Arc::new(b.build());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = BrokerAddr::new("127.0.0.1", listener.local_addr().unwrap().port());
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                let ssl = openssl::ssl::Ssl::new(acceptor.context()).unwrap();
                let mut stream = SslStream::new(ssl, tcp).unwrap();
                if std::pin::Pin::new(&mut stream).accept().await.is_err() {
                    return;
                }
                let cn = stream
                    .ssl()
                    .peer_certificate()
                    .and_then(|c| {
                        c.subject_name()
                            .entries_by_nid(Nid::COMMONNAME)
                            .next()
                            .and_then(|e| e.data().to_string().ok())
                    })
                    .unwrap_or_default();
                let mut conn = Framed::new(stream, StompCodec::default());
                while let Some(Ok(item)) = conn.next().await {
                    let Item::Frame(f) = item else { continue };
                    let reply = match f.command {
                        Command::Connect => {
                            let _ = tx.send(cn.clone());
                            Frame::new(Command::Connected)
                                .with_header("version", "1.2")
                                .with_header("server", "ssm-broker/tls-test")
                        }
                        _ => match f.header("receipt") {
                            Some(r) => Frame::new(Command::Receipt).with_header("receipt-id", r),
                            None => continue,
                        },
                    };
                    if conn.send(Item::Frame(reply)).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, rx)
}

fn config(addr: &BrokerAddr, tls: TlsConfig) -> ClientConfig {
    let mut c = ClientConfig::new(vec![addr.clone()]);
    c.tls = Some(tls);
    c.max_rounds = Some(1);
    c.connect_timeout = Duration::from_secs(5);
    c.receipt_timeout = Duration::from_secs(5);
    c
}

fn last_error(e: StompError) -> StompError {
    match e {
        StompError::AllBrokersFailed { last, .. } => *last,
        other => other,
    }
}

#[tokio::test]
async fn mutual_tls_with_a_ca_file_or_a_hashed_ca_directory() {
    let pki = Pki::new();
    let (addr, mut seen) = tls_server(&pki, &["127.0.0.1"]).await;
    let client = Client::connect(&config(&addr, pki.tls())).await.unwrap();
    assert_eq!(seen.recv().await.as_deref(), Some("ssm test client"));
    client
        .handle()
        .send_with_receipt(Frame::new(Command::Send).with_header("destination", "/topic/t"))
        .await
        .unwrap();
    client.disconnect().await.unwrap();

    let capath = TlsConfig {
        cafile: None,
        capath: Some(pki.path("capath")),
        ..pki.tls()
    };
    let client = Client::connect(&config(&addr, capath)).await.unwrap();
    assert_eq!(seen.recv().await.as_deref(), Some("ssm test client"));
    // The key may also live in the certificate file.
    let mut both = std::fs::read(pki.path("client.pem")).unwrap();
    both.extend(std::fs::read(pki.path("client.key")).unwrap());
    std::fs::write(pki.path("both.pem"), both).unwrap();
    let one_file = TlsConfig {
        cert: Some(pki.path("both.pem")),
        key: None,
        ..pki.tls()
    };
    let client2 = Client::connect(&config(&addr, one_file)).await.unwrap();
    assert_eq!(seen.recv().await.as_deref(), Some("ssm test client"));
    drop((client, client2));

    real_tls_brokers().await;
}

#[tokio::test]
async fn verification_is_on_by_default() {
    assert!(TlsConfig::default().verify);
    let pki = Pki::new();
    let (addr, mut seen) = tls_server(&pki, &["127.0.0.1"]).await;

    // A server whose certificate comes from a CA we do not trust.
    let wrong_ca = TlsConfig {
        cafile: Some(pki.path("wrong-ca.pem")),
        ..pki.tls()
    };
    let err = last_error(
        Client::connect(&config(&addr, wrong_ca.clone()))
            .await
            .unwrap_err(),
    );
    match &err {
        StompError::Tls(TlsError::Handshake { reason, .. }) => {
            assert!(reason.contains("certificate"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    // Turning verification off (tests only) gets through.
    let unverified = TlsConfig {
        verify: false,
        ..wrong_ca
    };
    Client::connect(&config(&addr, unverified)).await.unwrap();
    assert_eq!(seen.recv().await.as_deref(), Some("ssm test client"));
}

#[tokio::test]
async fn host_name_must_match_the_certificate() {
    let pki = Pki::new();
    let (addr, _seen) = tls_server(&pki, &["broker.example.org"]).await;
    let err = last_error(
        Client::connect(&config(&addr, pki.tls()))
            .await
            .unwrap_err(),
    );
    assert!(
        matches!(err, StompError::Tls(TlsError::Handshake { .. })),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_server_that_wants_a_client_certificate_refuses_us_without_one() {
    let pki = Pki::new();
    let (addr, mut seen) = tls_server(&pki, &["127.0.0.1"]).await;
    let anonymous = TlsConfig {
        cert: None,
        key: None,
        ..pki.tls()
    };
    // With TLS 1.3 the refusal may come after our side of the handshake, while reading
    // CONNECTED: either way connecting fails.
    let err = last_error(
        Client::connect(&config(&addr, anonymous))
            .await
            .unwrap_err(),
    );
    assert!(
        matches!(
            err,
            StompError::Tls(TlsError::Handshake { .. }) | StompError::Connect { .. }
        ),
        "{err:?}"
    );
    assert!(seen.try_recv().is_err(), "server accepted a CONNECT");
}

#[tokio::test]
async fn bad_tls_files_fail_at_once() {
    let pki = Pki::new();
    let addr = BrokerAddr::new("127.0.0.1", 9); // never dialled
    type Check = fn(&TlsError) -> bool;
    let cases: Vec<(TlsConfig, Check)> = vec![
        (
            TlsConfig {
                cafile: Some(pki.path("missing.pem")),
                ..pki.tls()
            },
            |e| matches!(e, TlsError::Read { .. }),
        ),
        (
            TlsConfig {
                cafile: Some(pki.path("client.key")),
                ..pki.tls()
            },
            |e| matches!(e, TlsError::EmptyCaFile(_) | TlsError::Config { .. }),
        ),
        (
            TlsConfig {
                cafile: None,
                capath: Some(pki.path("no-such-dir")),
                ..pki.tls()
            },
            |e| matches!(e, TlsError::Read { .. }),
        ),
        (
            TlsConfig {
                key: Some(pki.path("other.key")),
                ..pki.tls()
            },
            |e| matches!(e, TlsError::Config { .. }),
        ),
        (
            TlsConfig {
                cert: None,
                ..pki.tls()
            },
            |e| matches!(e, TlsError::KeyWithoutCert),
        ),
    ];
    for (tls, check) in cases {
        assert!(check(&TlsConnector::new(&tls).unwrap_err()), "{tls:?}");
        let mut cfg = config(&addr, tls.clone());
        cfg.max_rounds = None; // would retry forever if the error were not reported at once
        let err = tokio::time::timeout(Duration::from_secs(5), Client::connect(&cfg))
            .await
            .expect("a configuration error must not be retried")
            .unwrap_err();
        assert!(matches!(&err, StompError::Tls(e) if check(e)), "{err:?}");
    }
}

/// Every real broker in `SSM_TEST_TLS_BROKERS`, with the test PKI in `SSM_TEST_TLS_DIR`:
/// mutual TLS with the hashed CA directory, a message round trip, and refusal without a client
/// certificate. Run at the end of the mutual TLS test.
async fn real_tls_brokers() {
    let targets = brokers::named_brokers("SSM_TEST_TLS_BROKERS");
    if targets.is_empty() {
        return;
    }
    let dir = std::env::var_os("SSM_TEST_TLS_DIR")
        .map(PathBuf::from)
        .expect("SSM_TEST_TLS_BROKERS is set, so SSM_TEST_TLS_DIR must name the test PKI");
    let p = |n: &str| -> PathBuf { Path::new(&dir).join(n) };
    for (name, addr) in targets {
        let tls = TlsConfig {
            capath: Some(p("capath")),
            cafile: None,
            cert: Some(p("client.pem")),
            key: Some(p("client.key")),
            verify: true,
        };
        let mut cfg = config(&addr, tls.clone());
        cfg.login = Some("guest".into());
        cfg.passcode = Some("guest".into());
        cfg.receipt_timeout = Duration::from_secs(20);
        let mut client = Client::connect(&cfg)
            .await
            .unwrap_or_else(|e| panic!("[{name}] TLS broker at {addr} did not answer: {e}"));
        if let Some(kind) = brokers::expected_kind(&name) {
            assert_eq!(client.kind(), kind, "[{name}]");
        }
        let queue = brokers::unique("/queue/");
        let h = client.handle();
        h.subscribe(&queue, AckMode::ClientIndividual, &[])
            .await
            .unwrap();
        h.send_with_receipt(
            Frame::new(Command::Send)
                .with_header("destination", queue.as_str())
                .with_body(&b"over tls"[..]),
        )
        .await
        .unwrap();
        let m = brokers::next_message(&name, &mut client).await;
        assert_eq!(&m.body[..], b"over tls");
        h.ack(&m).await.unwrap();
        client.disconnect().await.unwrap();

        let mut anonymous = cfg.clone();
        anonymous.tls = Some(TlsConfig {
            cert: None,
            key: None,
            ..tls
        });
        assert!(
            Client::connect(&anonymous).await.is_err(),
            "[{name}] accepted a client without a certificate"
        );
    }
}
