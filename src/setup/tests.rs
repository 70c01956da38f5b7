//! The rules evaluated both ways on a throwaway PKI: starting stops at the first failure with
//! the daemon's message, checking reports every rule in list order.

use std::path::Path;

use super::*;
use crate::config::{
    IdentityOverrides, Loadable, ReceiverConfig, ReceiverOverrides, SenderConfig, SenderOverrides,
};
use crate::harness::pki::Pki;

fn sender_cfg(pki: &Pki, dir: &Path, cert: &Path, key: &Path, server: &Path) -> SenderConfig {
    let o = SenderOverrides {
        broker: vec![("127.0.0.1".into(), 1)],
        destination: Some("/topic/t".into()),
        identity: IdentityOverrides {
            cert: Some(cert.into()),
            key: Some(key.into()),
            capath: Some(pki.capath.clone()),
            cafile: None,
        },
        server_cert: Some(server.into()),
        path: Some(dir.join("outgoing")),
        ..SenderOverrides::default()
    };
    SenderConfig::from_overrides(&o).unwrap()
}

fn receiver_cfg(pki: &Pki, dir: &Path, dn_file: &Path) -> ReceiverConfig {
    let o = ReceiverOverrides {
        broker: vec![("127.0.0.1".into(), 1)],
        destination: Some("/topic/t".into()),
        identity: IdentityOverrides {
            cert: Some(pki.server.cert.clone()),
            key: Some(pki.server.key.clone()),
            capath: Some(pki.capath.clone()),
            cafile: None,
        },
        dn_file: Some(dn_file.into()),
        path: Some(dir.join("store")),
        ..ReceiverOverrides::default()
    };
    ReceiverConfig::from_overrides(&o).unwrap()
}

/// The rules named by a report's lines, in order (warnings and the file-system note are no
/// rules).
fn rules_of(report: &Report, list: &[Rule]) -> Vec<usize> {
    report
        .lines
        .iter()
        .filter_map(|line| {
            let what = line[5..].split(": ").next().unwrap_or("");
            list.iter().position(|r| r.what() == what)
        })
        .collect()
}

#[test]
fn a_good_sender_passes_every_rule_in_list_order_and_starts() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::generate(&dir.path().join("pki")).unwrap();
    let cfg = sender_cfg(
        &pki,
        dir.path(),
        &pki.client.cert,
        &pki.client.key,
        &pki.server.cert,
    );
    let mut checks = Checks::check(Report::default(), true);
    assert!(sender(&cfg, false, &mut checks).unwrap().is_none());
    let report = checks.into_report();
    assert_eq!(report.failures, 0, "{:#?}", report.lines);
    let order = rules_of(&report, SENDER_RULES);
    assert!(
        order.windows(2).all(|w| w[0] <= w[1]),
        "{:#?}",
        report.lines
    );
    assert!(
        !dir.path().join("outgoing").exists(),
        "check must not create the queue"
    );

    let ready = sender(&cfg, false, &mut Checks::start()).unwrap().unwrap();
    let crate::transport::TransportConfig::Stomp(stomp) = &ready.settings.transport else {
        panic!("not STOMP");
    };
    assert_eq!(stomp.client.max_rounds, Some(ONE_PASS_ROUNDS));
    assert!(ready.settings.server_cert.is_some());
    assert!(dir.path().join("outgoing").is_dir());
}

#[test]
fn starting_stops_at_the_first_failure_checking_reports_them_all() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::generate(&dir.path().join("pki")).unwrap();
    // The server's key with our certificate, and our own certificate as the server's.
    let cfg = sender_cfg(
        &pki,
        dir.path(),
        &pki.client.cert,
        &pki.server.key,
        &pki.client.cert,
    );
    let err = sender(&cfg, false, &mut Checks::start()).err().unwrap();
    assert_eq!(
        format!("{err:#}"),
        format!(
            "private key {} does not match certificate {}",
            pki.server.key.display(),
            pki.client.cert.display()
        )
    );
    let mut checks = Checks::check(Report::default(), true);
    sender(&cfg, false, &mut checks).unwrap();
    let report = checks.into_report();
    let fails: Vec<_> = report
        .lines
        .iter()
        .filter(|l| l.starts_with("FAIL"))
        .collect();
    assert_eq!(report.failures, 2, "{:#?}", report.lines);
    assert!(
        fails[0].starts_with("FAIL key matches certificate: "),
        "{fails:?}"
    );
    assert!(
        fails[1].ends_with("is this host's own certificate"),
        "{fails:?}"
    );

    // --metrics without --daemon is the first rule.
    let mut with_metrics = cfg.clone();
    with_metrics.common.daemon.metrics = Some("127.0.0.1:0".into());
    let err = sender(&with_metrics, false, &mut Checks::start())
        .err()
        .unwrap();
    assert!(err.to_string().contains("needs --daemon"), "{err:#}");
}

#[test]
fn a_receiver_without_its_dn_file_does_not_start() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::generate(&dir.path().join("pki")).unwrap();
    let dns = dir.path().join("dns");
    let cfg = receiver_cfg(&pki, dir.path(), &dns);
    let err = receiver(&cfg, ReceiverRun::default(), &mut Checks::start())
        .err()
        .unwrap();
    assert!(
        format!("{err:#}").starts_with(&format!("allowed-DN file {}", dns.display())),
        "{err:#}"
    );
    let mut checks = Checks::check(Report::default(), true);
    receiver(&cfg, ReceiverRun::default(), &mut checks).unwrap();
    let report = checks.into_report();
    assert_eq!(report.failures, 1, "{:#?}", report.lines);
    let order = rules_of(&report, RECEIVER_RULES);
    assert!(
        order.windows(2).all(|w| w[0] <= w[1]),
        "{:#?}",
        report.lines
    );

    std::fs::write(&dns, format!("{}\n", pki.client.dn)).unwrap();
    let ready = receiver(&cfg, ReceiverRun::default(), &mut Checks::start())
        .unwrap()
        .unwrap();
    assert_eq!(ready.settings.dns.read().unwrap().len(), 1);
}
